/* `lmc generate`: stream a completion for one prompt. */
#include "cli_gen_args.h"
#include "lmc.h"
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lmc generate -m DIR (-p TEXT | --prompt-ids 1,2,3) [options]\n"
            "  -m, --model DIR            model directory (config.json, *.safetensors)\n"
            "  -p, --prompt TEXT          prompt text\n"
            "  --prompt-ids LIST          prompt as comma-separated token ids\n"
            "  --chat                     render the prompt with the chat template\n"
            "  --system TEXT              system message (with --chat)\n"
            "  --tokenizer DIR            tokenizer directory (default: the model's)\n"
            "  --device cpu|cuda          (default cpu)\n"
            "  --draft-model DIR          speculative decoding with this draft model\n"
            "  --num-draft-tokens N       draft tokens per step (default 5)\n"
            "  --print-ids                after the text, print the generated ids on stderr\n"
            "%s",
            LMC_CLI_GEN_HELP);
}

static void add_msg(json_object *arr, const char *role, const char *content) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_new_string(content));
    json_object_array_add(arr, m);
}

static lmc_status render_chat(lmc_context *ctx, const char *system, const char *prompt,
                              int32_t **ids, size_t *n) {
    json_object *arr = json_object_new_array();
    if (system) add_msg(arr, "system", system);
    add_msg(arr, "user", prompt);
    char *text = NULL;
    lmc_status st = lmc_tokenizer_apply_chat_template(
        lmc_context_tokenizer(ctx),
        json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE),
        NULL, true, false, NULL, &text);
    json_object_put(arr);
    if (st) return st;
    st = lmc_context_encode(ctx, text, strlen(text), false, ids, n);
    lmc_free(text);
    return st;
}

/* Streams the text and, for --print-ids, echoes each id to stderr at the end
 * (collected here so the text on stdout stays uninterrupted). */
typedef struct {
    bool print_ids, oom;
    int32_t *ids;
    size_t n, cap;
} gen_out;

static bool on_token(void *user, const lmc_gen_response *r) {
    gen_out *o = user;
    if (o->print_ids && o->n == o->cap) {
        size_t cap = o->cap ? o->cap * 2 : 64;
        int32_t *p = realloc(o->ids, cap * sizeof *p);
        if (!p) return !(o->oom = true);
        o->ids = p;
        o->cap = cap;
    }
    if (o->print_ids) o->ids[o->n++] = r->token;
    return lmc_cli_print_cb(NULL, r);
}

static void print_ids(const gen_out *o) {
    fputs("[generated ids", stderr);
    for (size_t i = 0; i < o->n; i++) fprintf(stderr, "%c%d", i ? ',' : ' ', o->ids[i]);
    fputs("]\n", stderr);
}

int lmc_cmd_generate(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *prompt_ids = NULL, *system = NULL;
    const char *tokenizer = NULL, *device = "cpu", *draft_dir = NULL;
    bool chat = false;
    gen_out go = {0};
    lmc_cli_gen_args ga;
    lmc_cli_gen_args_init(&ga);
    const lmc_cli_opt opts[] = {
        {"-m", "--model", &model, NULL},
        {"-p", "--prompt", &prompt, NULL},
        {"--prompt-ids", NULL, &prompt_ids, NULL},
        {"--system", NULL, &system, NULL},
        {"--tokenizer", NULL, &tokenizer, NULL},
        {"--device", NULL, &device, NULL},
        {"--draft-model", NULL, &draft_dir, NULL},
        {"--chat", NULL, NULL, &chat},
        {"--print-ids", NULL, NULL, &go.print_ids},
        {NULL, NULL, NULL, NULL},
    };
    int prc = lmc_cli_parse("generate", argc, argv, opts, &ga, usage);
    if (prc >= 0) {
        lmc_cli_gen_args_free(&ga);
        return prc;
    }
    if (!model || (!prompt && !prompt_ids) || (prompt && prompt_ids)) {
        fprintf(stderr, "lmc generate: need -m DIR and exactly one of -p TEXT or --prompt-ids\n");
        usage(stderr);
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    if (prompt_ids && chat) {
        fprintf(stderr, "lmc generate: --chat needs a text prompt (-p)\n");
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    lmc_device dev;
    if (!lmc_cli_parse_device(device, &dev)) {
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    int rc = 1;
    lmc_context *ctx = NULL, *draft = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_status st = lmc_cli_load_contexts(model, draft_dir, tokenizer, dev, &ctx, &draft);
    ga.gen.draft = draft;
    if (st) goto fail;
    if (prompt_ids) {
        if (lmc_cli_parse_ids(prompt_ids, &ids, &n)) {
            rc = 2;
            goto out;
        }
    } else if (chat) {
        st = render_chat(ctx, system, prompt, &ids, &n);
    } else {
        st = lmc_context_encode(ctx, prompt, strlen(prompt), true, &ids, &n);
    }
    if (st) goto fail;
    lmc_gen_stats stats;
    st = lmc_generate_ids(ctx, ids, n, &ga.gen, NULL, on_token, &go, &stats);
    if (st) goto fail;
    fputc('\n', stdout);
    fflush(stdout);
    if (go.oom) {
        fprintf(stderr, "lmc generate: out of memory collecting the generated ids\n");
        goto out;
    }
    if (go.print_ids) print_ids(&go);
    lmc_cli_print_stats(stderr, &stats);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "lmc generate: %s\n", lmc_last_error());
out:
    free(go.ids);
    lmc_free(ids);
    lmc_context_free(draft);
    lmc_context_free(ctx);
    lmc_cli_gen_args_free(&ga);
    return rc;
}
