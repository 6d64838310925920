/* `lmc serve`: the OpenAI-compatible HTTP server (src/server) until
 * SIGINT/SIGTERM. The generation flags set the defaults each request can
 * override. LMC_HAVE_SERVER is defined when the server module is linked
 * (libmicrohttpd found at configure time). */
#include "cli_gen_args.h"
#include "lmc.h"
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lmc serve -m DIR [--host 127.0.0.1] [--port 8080] [options]\n"
            "  -m, --model DIR            model directory (config.json, *.safetensors)\n"
            "  --host ADDR                address to listen on (default 127.0.0.1)\n"
            "  --port N                   TCP port (default 8080; 0: any free port)\n"
            "  --model-name NAME          id reported to clients (default: DIR's name)\n"
            "  --tokenizer DIR            tokenizer directory (default: the model's)\n"
            "  --device cpu|cuda          (default cpu)\n"
            "  --draft-model DIR          speculative decoding with this draft model\n"
            "  --num-draft-tokens N       draft tokens per step (default 5)\n"
            "  --no-prompt-cache          don't reuse the KV cache between requests\n"
            "  --tool-parser NAME         tool-call format of replies: auto (from the chat\n"
            "                             template), none, hermes, llama3, mistral, harmony,\n"
            "                             deepseek (default auto)\n"
            "defaults for requests that leave a field out:\n"
            "%s"
            "endpoints: GET /health, GET /v1/models, POST /v1/chat/completions,\n"
            "POST /v1/completions (\"stream\": true for Server-Sent Events).\n"
            "Requests are served one at a time on the model.\n",
            LMC_CLI_GEN_HELP);
}

#ifdef LMC_HAVE_SERVER
static const char *base_name(const char *dir, char *buf, size_t n) {
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t b = len;
    while (b > 0 && dir[b - 1] != '/') b--;
    snprintf(buf, n, "%.*s", (int)(len - b), dir + b);
    return buf;
}

static int serve(const char *model, const char *tokenizer, const char *draft_dir, lmc_device dev,
                 const char *host, long long port, const char *name, bool no_cache,
                 const char *tool_parser, lmc_cli_gen_args *ga) {
    lmc_context *ctx = NULL, *draft = NULL;
    lmc_server *srv = NULL;
    int rc = 1;
    /* block the signals before any thread starts, so only sigwait sees them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    lmc_status st = lmc_cli_load_contexts(model, draft_dir, tokenizer, dev, &ctx, &draft);
    if (st) goto fail;
    ga->gen.draft = draft;
    char nbuf[256];
    lmc_server_options o = {.host = host,
                            .port = (uint16_t)port,
                            .model_name = name ? name : base_name(model, nbuf, sizeof nbuf),
                            .defaults = &ga->gen,
                            .no_prompt_cache = no_cache,
                            .tool_parser = tool_parser};
    st = lmc_server_start(ctx, &o, &srv);
    if (st) goto fail;
    fprintf(stderr, "lmc serve: %s on http://%s:%u (Ctrl-C to stop)\n", o.model_name, host,
            (unsigned)lmc_server_port(srv));
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "lmc serve: stopping\n");
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "lmc serve: %s\n", lmc_last_error());
out:
    lmc_server_stop(srv);
    lmc_context_free(draft);
    lmc_context_free(ctx);
    return rc;
}
#endif

int lmc_cmd_serve(int argc, char **argv) {
    const char *model = NULL, *host = "127.0.0.1", *port_s = "8080", *name = NULL;
    const char *tokenizer = NULL, *device = "cpu", *draft_dir = NULL;
    bool no_cache = false;
    const char *tool_parser = NULL;
    lmc_cli_gen_args ga;
    lmc_cli_gen_args_init(&ga);
    const lmc_cli_opt opts[] = {
        {"-m", "--model", &model, NULL},
        {"--host", NULL, &host, NULL},
        {"--port", NULL, &port_s, NULL},
        {"--model-name", NULL, &name, NULL},
        {"--tokenizer", NULL, &tokenizer, NULL},
        {"--device", NULL, &device, NULL},
        {"--draft-model", NULL, &draft_dir, NULL},
        {"--no-prompt-cache", NULL, NULL, &no_cache},
        {"--tool-parser", NULL, &tool_parser, NULL},
        {NULL, NULL, NULL, NULL},
    };
    int prc = lmc_cli_parse("serve", argc, argv, opts, &ga, usage);
    if (prc >= 0) {
        lmc_cli_gen_args_free(&ga);
        return prc;
    }
    long long port = 0;
    lmc_device dev;
    if (!model) {
        fprintf(stderr, "lmc serve: need -m DIR\n");
        usage(stderr);
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    if (!lmc_cli_int("--port", port_s, 0, 65535, &port) || !lmc_cli_parse_device(device, &dev)) {
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    if (ga.gen.grammar) {
        fprintf(stderr, "lmc serve: --json-schema, --regex and --grammar apply to generate and chat; "
                        "requests constrain their output with response_format\n");
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
    if (ga.gen.max_tokens == 0) {
        fprintf(stderr, "lmc serve: --max-tokens must be at least 1\n");
        lmc_cli_gen_args_free(&ga);
        return 2;
    }
#ifdef LMC_HAVE_SERVER
    int rc = serve(model, tokenizer, draft_dir, dev, host, port, name, no_cache, tool_parser, &ga);
#else
    (void)tokenizer;
    (void)draft_dir;
    (void)name;
    (void)no_cache;
    (void)tool_parser;
    fprintf(stderr, "lmc serve: this lmc was built without libmicrohttpd, so the HTTP server is "
                    "unavailable (install libmicrohttpd-dev and reconfigure)\n");
    int rc = 2;
#endif
    lmc_cli_gen_args_free(&ga);
    return rc;
}
