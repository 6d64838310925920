/* `lmc chat`: an interactive multi-turn chat over a ChatSession. */
#include "cli_gen_args.h"
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lmc chat -m DIR [options]\n"
            "  -m, --model DIR            model directory\n"
            "  --system TEXT              system instructions\n"
            "  --draft-model DIR          speculative decoding with this draft model\n"
            "  --num-draft-tokens N       draft tokens per step (default 5)\n"
            "  --tokenizer DIR            tokenizer directory (default: the model's)\n"
            "  --device cpu|cuda          (default cpu)\n"
            "  --template-kwargs JSON     extra chat-template variables\n"
            "  --stats                    print speed figures after each reply\n"
            "%s"
            "commands: /clear (forget the conversation), /save FILE (save the KV cache),\n"
            "          /load FILE (continue from a saved cache), /quit\n",
            LMC_CLI_GEN_HELP);
}

typedef struct {
    lmc_context *ctx, *draft;
    const char *system, *kwargs;
    lmc_cli_gen_args *ga;
} chat_setup;

static lmc_status make_session(const chat_setup *c, lmc_prompt_cache *cache,
                               lmc_chat_session **out) {
    lmc_chat_options o = {0};
    o.instructions = c->system;
    o.gen = &c->ga->gen;
    o.draft = c->draft;
    o.num_draft_tokens = c->ga->gen.num_draft_tokens;
    o.template_kwargs_json = c->kwargs;
    o.cache = cache;
    return lmc_chat_session_new(c->ctx, &o, out);
}

int lmc_cmd_chat(int argc, char **argv) {
    const char *model = NULL, *tokenizer = NULL, *device = "cpu", *draft_dir = NULL;
    chat_setup c = {0};
    bool stats = false;
    lmc_cli_gen_args ga;
    lmc_cli_gen_args_init(&ga);
    c.ga = &ga;
    const lmc_cli_opt opts[] = {
        {"-m", "--model", &model, NULL},
        {"--system", NULL, &c.system, NULL},
        {"--draft-model", NULL, &draft_dir, NULL},
        {"--tokenizer", NULL, &tokenizer, NULL},
        {"--device", NULL, &device, NULL},
        {"--template-kwargs", NULL, &c.kwargs, NULL},
        {"--stats", NULL, NULL, &stats},
        {NULL, NULL, NULL, NULL},
    };
    int prc = lmc_cli_parse("chat", argc, argv, opts, &ga, usage);
    if (prc >= 0) {
        lmc_cli_gen_args_free(&ga);
        return prc;
    }
    if (!model) {
        fprintf(stderr, "lmc chat: need -m DIR\n");
        usage(stderr);
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    if (ga.n_stops) fprintf(stderr, "lmc chat: --stop is ignored (turns end on eos)\n");
    lmc_device dev;
    if (!lmc_cli_parse_device(device, &dev)) {
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    int rc = 1;
    lmc_chat_session *s = NULL;
    char *line = NULL;
    size_t cap = 0;
    lmc_status st = lmc_cli_load_contexts(model, draft_dir, tokenizer, dev, &c.ctx, &c.draft);
    if (!st) st = make_session(&c, NULL, &s);
    if (st) {
        fprintf(stderr, "lmc chat: %s\n", lmc_last_error());
        goto out;
    }
    fprintf(stderr, "[lmc chat: /clear, /save FILE, /load FILE, /quit]\n");
    for (;;) {
        fputs(">> ", stdout);
        fflush(stdout);
        ssize_t len = getline(&line, &cap, stdin);
        if (len < 0) break;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
        if (len == 0) continue;
        if (!strcmp(line, "/quit") || !strcmp(line, "/exit")) break;
        if (!strcmp(line, "/clear")) {
            lmc_chat_session_clear(s);
            fprintf(stderr, "[conversation cleared]\n");
            continue;
        }
        if (!strncmp(line, "/save ", 6) || !strcmp(line, "/save")) {
            const char *path = line[5] ? line + 6 : "";
            if (!*path) fprintf(stderr, "[usage: /save FILE]\n");
            else if (lmc_chat_session_save_cache(s, path))
                fprintf(stderr, "[save failed: %s]\n", lmc_last_error());
            else fprintf(stderr, "[cache saved to %s]\n", path);
            continue;
        }
        if (!strncmp(line, "/load ", 6) || !strcmp(line, "/load")) {
            const char *path = line[5] ? line + 6 : "";
            lmc_prompt_cache *pc = NULL;
            lmc_chat_session *ns = NULL;
            if (!*path) {
                fprintf(stderr, "[usage: /load FILE]\n");
            } else if (lmc_prompt_cache_load(c.ctx, path, &pc) || make_session(&c, pc, &ns)) {
                fprintf(stderr, "[load failed: %s]\n", lmc_last_error());
                lmc_prompt_cache_free(pc);
            } else {
                lmc_chat_session_free(s);
                s = ns;
                fprintf(stderr, "[continuing from %s: %zu cached tokens]\n", path,
                        lmc_prompt_cache_len(pc));
            }
            continue;
        }
        st = lmc_chat_session_stream(s, LMC_ROLE_USER, line, lmc_cli_print_cb, NULL);
        fputc('\n', stdout);
        fflush(stdout);
        if (st) {
            fprintf(stderr, "[error: %s]\n", lmc_last_error());
            continue;
        }
        if (stats) {
            lmc_gen_stats gs;
            lmc_chat_session_last_stats(s, &gs);
            fprintf(stderr, "[prompt %zu tokens (%zu fed) %.1f tok/s, generation %zu tokens %.1f tok/s",
                    gs.prompt_tokens, gs.prefill_tokens, gs.prompt_tps, gs.generation_tokens,
                    gs.generation_tps);
            if (gs.draft_proposed)
                fprintf(stderr, ", draft acceptance %.1f%%",
                        100.0 * (double)gs.draft_accepted / (double)gs.draft_proposed);
            fprintf(stderr, ", peak %.3f GB]\n", (double)gs.peak_memory_bytes / 1e9);
        }
    }
    rc = 0;
out:
    free(line);
    lmc_chat_session_free(s);
    lmc_context_free(c.draft);
    lmc_context_free(c.ctx);
    lmc_cli_gen_args_free(&ga);
    return rc;
}
