/* `lmc template`: render a chat template (a file, or a tokenizer directory's
 * template) over a messages JSON file, like apply_chat_template(tokenize=False). */
#include "cli_io.h"
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_JSON_FILE (64u << 20)

static void usage(FILE *f) {
    fprintf(f,
            "usage: lmc template (--template FILE | --model DIR) --messages FILE [options]\n"
            "       lmc template --template FILE --render CONTEXT.json\n"
            "  --template FILE          Jinja chat template source\n"
            "  --model DIR              tokenizer directory (tokenizer.json + tokenizer_config.json)\n"
            "  --messages FILE          JSON array of messages\n"
            "  --tools FILE             JSON array of tool definitions\n"
            "  --context FILE           JSON object of extra template variables\n"
            "                           (bos_token, enable_thinking, date_string, ...)\n"
            "  --add-generation-prompt  append the assistant header\n"
            "  --continue-final-message leave the final message open for continuation\n"
            "  --render FILE            render with exactly this JSON object as variables\n");
}

static int read_text(const char *path, char **out) {
    size_t len;
    *out = cli_read_file("lmc template", path, MAX_JSON_FILE, &len);
    return *out ? 0 : 1;
}

int lmc_cmd_template(int argc, char **argv) {
    const char *tpl_path = NULL, *model = NULL, *msgs_path = NULL, *tools_path = NULL, *ctx_path = NULL,
               *render_path = NULL;
    bool agp = false, cont = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = !strcmp(a, "--template") ? &tpl_path : !strcmp(a, "--model") ? &model
                            : !strcmp(a, "--messages") ? &msgs_path : !strcmp(a, "--tools") ? &tools_path
                            : !strcmp(a, "--context") ? &ctx_path : !strcmp(a, "--render") ? &render_path : NULL;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lmc template: %s needs a value\n", a);
                return 2;
            }
            *slot = argv[++i];
        } else if (!strcmp(a, "--add-generation-prompt")) {
            agp = true;
        } else if (!strcmp(a, "--continue-final-message")) {
            cont = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc template: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!tpl_path == !model || (!msgs_path && !render_path) || (render_path && !tpl_path)) {
        usage(stderr);
        return 2;
    }
    char *src = NULL, *msgs = NULL, *tools = NULL, *ctx = NULL, *out = NULL;
    lmc_tokenizer *tok = NULL;
    lmc_chat_template *tpl = NULL;
    int rc = 1;
    lmc_status st = LMC_OK;
    if ((msgs_path && read_text(msgs_path, &msgs)) ||
        (tools_path && read_text(tools_path, &tools)) ||
        (ctx_path && read_text(ctx_path, &ctx)) ||
        (render_path && read_text(render_path, &ctx)))
        goto done;
    if (model) {
        if ((st = lmc_tokenizer_load(model, &tok))) goto fail;
        st = lmc_tokenizer_apply_chat_template(tok, msgs, tools, agp, cont, ctx, &out);
    } else {
        if (read_text(tpl_path, &src)) goto done;
        if ((st = lmc_chat_template_compile(src, &tpl))) goto fail;
        st = render_path ? lmc_chat_template_render(tpl, ctx, &out)
                         : lmc_chat_template_apply(tpl, msgs, tools, agp, cont, ctx, &out);
    }
    if (st) goto fail;
    fwrite(out, 1, strlen(out), stdout);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lmc template: %s\n", lmc_last_error());
done:
    lmc_free(out);
    lmc_chat_template_free(tpl);
    lmc_tokenizer_free(tok);
    free(src);
    free(msgs);
    free(tools);
    free(ctx);
    return rc;
}
