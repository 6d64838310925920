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
            "access:\n"
            "  --api-key KEY              require \"Authorization: Bearer KEY\" (repeatable;\n"
            "                             also $LMC_API_KEY)\n"
            "  --api-key-file FILE        one key per line\n"
            "  --allow-origin ORIGIN      let browser pages from ORIGIN call the server (CORS;\n"
            "                             repeatable; '*' for any; default: none)\n"
            "limits:\n"
            "  --max-queue N              requests waiting for the model; more get 429 (16)\n"
            "  --max-tokens-cap N         clamp every request's max_tokens (default 16777216)\n"
            "  --cache-keep-tokens N      drop a prompt cache longer than this (8192)\n"
            "  --max-pending N            connections still sending a request (128)\n"
            "  --max-conns-per-ip N       open connections per client address (128)\n"
            "  --header-timeout S         seconds to send the headers (10)\n"
            "  --body-timeout S           seconds to send the body (60)\n"
            "  --quiet                    no access log on stderr\n"
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

/* The repeatable flags, taken out of argv before the shared parser sees it. */
typedef struct {
    const char **keys, **origins;
    size_t n_keys, n_origins;
} repeated;

static int take_repeated(int *argc, char **argv, repeated *r) {
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        bool key = !strcmp(argv[i], "--api-key"), origin = !strcmp(argv[i], "--allow-origin");
        if (!key && !origin) {
            argv[out++] = argv[i];
            continue;
        }
        if (i + 1 >= *argc || !argv[i + 1][0]) {
            fprintf(stderr, "lmc serve: %s needs a non-empty value\n", argv[i]);
            return 2;
        }
        const char ***list = key ? &r->keys : &r->origins;
        size_t *n = key ? &r->n_keys : &r->n_origins;
        const char **l = realloc(*list, (*n + 1) * sizeof *l);
        if (!l) return 2;
        l[(*n)++] = argv[++i];
        *list = l;
    }
    *argc = out;
    return -1;
}

/* The numeric limit flags: name, destination, range. */
typedef struct {
    const char *flag;
    long long lo, hi, value;
} limit_flag;

enum { L_QUEUE, L_CAP, L_KEEP, L_PENDING, L_PER_IP, L_HEADER, L_BODY, L_COUNT };

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
                 lmc_server_options *o, lmc_cli_gen_args *ga) {
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
    if (!o->model_name) o->model_name = base_name(model, nbuf, sizeof nbuf);
    o->defaults = &ga->gen;
    st = lmc_server_start(ctx, o, &srv);
    if (st) goto fail;
    fprintf(stderr, "lmc serve: %s on http://%s:%u (Ctrl-C to stop)\n", o->model_name, o->host,
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
    const char *tokenizer = NULL, *device = "cpu", *draft_dir = NULL, *key_file = NULL;
    const char *lim_s[L_COUNT] = {0};
    bool no_cache = false, quiet = false;
    limit_flag lim[L_COUNT] = {
        [L_QUEUE] = {"--max-queue", 1, 1 << 20, 0},
        [L_CAP] = {"--max-tokens-cap", 1, 1 << 24, 0},
        [L_KEEP] = {"--cache-keep-tokens", 1, INT32_MAX, 0},
        [L_PENDING] = {"--max-pending", 1, 1 << 16, 0},
        [L_PER_IP] = {"--max-conns-per-ip", 1, 1 << 16, 0},
        [L_HEADER] = {"--header-timeout", 1, 3600, 0},
        [L_BODY] = {"--body-timeout", 1, 3600, 0},
    };
    repeated rp = {0};
    const char *tool_parser = NULL;
    lmc_cli_gen_args ga;
    lmc_cli_gen_args_init(&ga);
    int prc = take_repeated(&argc, argv, &rp);
    const lmc_cli_opt opts[] = {
        {"-m", "--model", &model, NULL},
        {"--host", NULL, &host, NULL},
        {"--port", NULL, &port_s, NULL},
        {"--model-name", NULL, &name, NULL},
        {"--tokenizer", NULL, &tokenizer, NULL},
        {"--device", NULL, &device, NULL},
        {"--draft-model", NULL, &draft_dir, NULL},
        {"--no-prompt-cache", NULL, NULL, &no_cache},
        {"--api-key-file", NULL, &key_file, NULL},
        {"--quiet", NULL, NULL, &quiet},
        {lim[L_QUEUE].flag, NULL, &lim_s[L_QUEUE], NULL},
        {lim[L_CAP].flag, NULL, &lim_s[L_CAP], NULL},
        {lim[L_KEEP].flag, NULL, &lim_s[L_KEEP], NULL},
        {lim[L_PENDING].flag, NULL, &lim_s[L_PENDING], NULL},
        {lim[L_PER_IP].flag, NULL, &lim_s[L_PER_IP], NULL},
        {lim[L_HEADER].flag, NULL, &lim_s[L_HEADER], NULL},
        {lim[L_BODY].flag, NULL, &lim_s[L_BODY], NULL},
        {"--tool-parser", NULL, &tool_parser, NULL},
        {NULL, NULL, NULL, NULL},
    };
    if (prc < 0) prc = lmc_cli_parse("serve", argc, argv, opts, &ga, usage);
    long long port = 0;
    lmc_device dev;
    if (prc < 0 && !model) {
        fprintf(stderr, "lmc serve: need -m DIR\n");
        usage(stderr);
        prc = 2;
    }
    if (prc < 0 &&
        (!lmc_cli_int("--port", port_s, 0, 65535, &port) || !lmc_cli_parse_device(device, &dev)))
        prc = 2;
    for (int i = 0; prc < 0 && i < L_COUNT; i++)
        if (lim_s[i] && !lmc_cli_int(lim[i].flag, lim_s[i], lim[i].lo, lim[i].hi, &lim[i].value))
            prc = 2;
    if (prc < 0 && ga.gen.grammar) {
        fprintf(stderr, "lmc serve: --json-schema, --regex and --grammar apply to generate and "
                        "chat; requests constrain their output with response_format\n");
        prc = 2;
    }
    if (prc < 0 && ga.gen.max_tokens == 0) {
        fprintf(stderr, "lmc serve: --max-tokens must be at least 1\n");
        prc = 2;
    }
    const char *env_key = getenv("LMC_API_KEY");
    if (prc < 0 && env_key && *env_key) {
        const char **l = realloc(rp.keys, (rp.n_keys + 1) * sizeof *l);
        if (!l) prc = 1;
        else (rp.keys = l)[rp.n_keys++] = env_key;
    }
    if (prc >= 0) goto done;
#ifdef LMC_HAVE_SERVER
    lmc_server_options o = {.host = host,
                            .port = (uint16_t)port,
                            .model_name = name,
                            .no_prompt_cache = no_cache,
                            .api_keys = rp.keys,
                            .n_api_keys = rp.n_keys,
                            .api_key_file = key_file,
                            .allow_origins = rp.origins,
                            .n_allow_origins = rp.n_origins,
                            .max_queue = (size_t)lim[L_QUEUE].value,
                            .max_tokens_cap = (size_t)lim[L_CAP].value,
                            .cache_keep_tokens = (size_t)lim[L_KEEP].value,
                            .max_pending = (unsigned)lim[L_PENDING].value,
                            .max_per_ip = (unsigned)lim[L_PER_IP].value,
                            .header_timeout_s = (unsigned)lim[L_HEADER].value,
                            .body_timeout_s = (unsigned)lim[L_BODY].value,
                            .log = quiet ? NULL : stderr,
                            .tool_parser = tool_parser};
    prc = serve(model, tokenizer, draft_dir, dev, &o, &ga);
#else
    (void)tokenizer;
    (void)draft_dir;
    (void)name;
    (void)no_cache;
    (void)quiet;
    (void)key_file;
    (void)tool_parser;
    fprintf(stderr, "lmc serve: this lmc was built without libmicrohttpd, so the HTTP server is "
                    "unavailable (install libmicrohttpd-dev and reconfigure)\n");
    prc = 2;
#endif
done:
    free(rp.keys);
    free(rp.origins);
    lmc_cli_gen_args_free(&ga);
    return prc;
}
