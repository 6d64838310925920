/* `lmc serve` as a process: flag errors exit 2; with a tiny checkpoint it
 * listens on the port it reports, answers like lmc_generate on the same
 * checkpoint, honours --max-tokens as the default, --api-key (also from
 * $LMC_API_KEY and --api-key-file), writes one access-log line per
 * request, and exits 0 on SIGINT; SIGTERM in the middle of a long prefill
 * ends it within a second. Needs the lmc binary ($LMC_BUILD_DIR/tools/lmc);
 * skipped without it. */
#include "base/json.h"
#include "check.h"
#include "http_client.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include "serve_proc.h"

static char lmc_bin[4096];

/* SIGTERM mid-prefill must end the server within a second; a sanitizer
 * build runs everything (the chunk in flight, teardown, its own exit
 * checks) several times slower, so it gets three. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define STOP_LIMIT_S 3.0
#else
#define STOP_LIMIT_S 1.0
#endif

static int run_status(const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s serve %s >/dev/null 2>&1", lmc_bin, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Keys from the flag, the environment and a file; the access log. */
static void test_keys_and_log(const char *dir, const char *tokdir) {
    char keyfile[1200];
    snprintf(keyfile, sizeof keyfile, "%s/keys", dir);
    FILE *f = fopen(keyfile, "w");
    fputs("file-key\n", f);
    fclose(f);
    setenv("LMC_API_KEY", "env-key", 1);
    const char *extra[] = {"--api-key", "flag-key", "--api-key-file", keyfile, NULL};
    uint16_t port = 0;
    int err = -1;
    pid_t pid = start_server(lmc_bin, dir, tokdir, extra, &port, &err);
    unsetenv("LMC_API_KEY");
    CHECK(pid > 0 && port != 0);
    if (pid <= 0) return;
    static const struct {
        const char *hdr;
        int status;
    } cases[] = {{NULL, 401},
                 {"Authorization: Bearer nope\r\n", 401},
                 {"Authorization: Bearer flag-key\r\n", 200},
                 {"Authorization: Bearer env-key\r\n", 200},
                 {"Authorization: Bearer file-key\r\n", 200}};
    for (size_t i = 0; port && i < sizeof cases / sizeof *cases; i++) {
        http_reply r;
        http_request(port, "GET", "/v1/models", NULL, 0, cases[i].hdr, &r);
        CHECK_EQ_INT(r.status, cases[i].status);
        http_reply_free(&r);
    }
    kill(pid, port ? SIGINT : SIGKILL);
    waitpid(pid, NULL, 0);
    lmc_buf log = {0};
    if (err >= 0) drain(err, &log);
    int lines = 0;
    for (const char *p = log.p; p && (p = strstr(p, "\"GET /v1/models\" ")); p++) lines++;
    CHECK_MSG(lines == 5, "log: %s", log.p ? log.p : "");
    CHECK(log.p && strstr(log.p, "\"GET /v1/models\" 401 "));
    lmc_buf_free(&log);
    unlink(keyfile);
}

/* SIGTERM while a 60k-token prompt is being prefilled: exit 0 within a
 * second. Returns the seconds it took. */
static double test_sigterm_prefill(const char *dir, const char *tokdir) {
    const char *extra[] = {"--max-context", "1000000", "--quiet", NULL};
    uint16_t port = 0;
    pid_t pid = start_server(lmc_bin, dir, tokdir, extra, &port, NULL);
    CHECK(pid > 0 && port != 0);
    if (pid <= 0) return -1;
    if (!port) {
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        return -1;
    }
    lmc_buf body = {0};
    lmc_buf_puts(&body, "{\"max_tokens\":4,\"prompt\":\"");
    for (int i = 0; i < 60000; i++) lmc_buf_puts(&body, " cat");
    lmc_buf_puts(&body, "\"}");
    int fd = http_connect(port);
    CHECK(fd >= 0);
    lmc_buf req = {0};
    lmc_buf_printf(&req, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   "Content-Length: %zu\r\n\r\n", body.len);
    lmc_buf_append(&req, body.p, body.len);
    http_send_all(fd, req.p, req.len);
    struct timespec ts = {1, 0}; /* encoded and well into the prefill */
    nanosleep(&ts, NULL);
    /* no reply yet: the prompt is still being fed */
    struct pollfd pf = {.fd = fd, .events = POLLIN};
    CHECK(poll(&pf, 1, 0) == 0);
    double t0 = now_s();
    kill(pid, SIGTERM);
    int status = 0;
    waitpid(pid, &status, 0);
    double dt = now_s() - t0;
    CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
    CHECK_MSG(dt < STOP_LIMIT_S, "SIGTERM took %.3f s", dt);
    close(fd);
    lmc_buf_free(&req);
    lmc_buf_free(&body);
    return dt;
}

int main(void) {
    tiny_single_thread();
    const char *bd = getenv("LMC_BUILD_DIR");
    snprintf(lmc_bin, sizeof lmc_bin, "%s/tools/lmc", bd && *bd ? bd : "build");
    if (access(lmc_bin, X_OK) != 0) CHECK_SKIP("%s not built", lmc_bin);

    CHECK_EQ_INT(run_status(""), 2);                        /* no -m */
    CHECK_EQ_INT(run_status("-m x --port 70000"), 2);       /* bad port */
    CHECK_EQ_INT(run_status("-m x --device tpu"), 2);       /* bad device */
    CHECK_EQ_INT(run_status("-m x --max-tokens 0"), 2);     /* no room to answer */
    CHECK_EQ_INT(run_status("-m x --max-queue 0"), 2);      /* limits are checked */
    CHECK_EQ_INT(run_status("-m x --header-timeout soon"), 2);
    CHECK_EQ_INT(run_status("-m x --api-key"), 2);          /* a key needs a value */
    CHECK_EQ_INT(run_status("-m x --allow-origin ''"), 2);
    CHECK_EQ_INT(run_status("--help"), 0);
    CHECK_EQ_INT(run_status("-m /nonexistent/model"), 1);   /* load failure */

    char dir[1024], tokdir[4096];
    if (tiny_tmpdir(dir, sizeof dir, "cli_serve")) return 1;
    tiny_spec spec = {"qwen3", 1, 32, 4, 2, 8, 64, 151936, 151645, 5, 0};
    lmc_context *ctx = tiny_load(dir, &spec, ".cache/assets/tokenizers/qwen3");
    CHECK(ctx != NULL);
    tiny_asset(tokdir, sizeof tokdir, ".cache/assets/tokenizers/qwen3");
    if (ctx) {
        lmc_gen_params p;
        lmc_gen_params_default(&p);
        p.max_tokens = 5;
        char *want = NULL;
        lmc_gen_stats stats;
        CHECK(lmc_generate_text(ctx, "Hello", &p, &want, &stats) == LMC_OK);
        uint16_t port = 0;
        pid_t pid = start_server(lmc_bin, dir, tokdir, NULL, &port, NULL);
        CHECK(pid > 0 && port != 0);
        if (pid > 0 && port) {
            http_reply r;
            http_request(port, "GET", "/v1/models", NULL, 0, NULL, &r);
            CHECK_EQ_INT(r.status, 200);
            CHECK(r.body.p && strstr(r.body.p, "\"id\":\"cli-tiny\""));
            http_reply_free(&r);
            http_post(port, "/v1/completions", "{\"prompt\":\"Hello\"}", &r);
            CHECK_EQ_INT(r.status, 200);
            json_object *o = NULL;
            CHECK(r.body.p && lmc_json_parse(r.body.p, r.body.len, "reply", &o) == LMC_OK);
            json_object *c0 = json_object_array_get_idx(lmc_json_get(o, "choices"), 0);
            CHECK_STREQ(lmc_json_str(c0, "text", NULL), want);
            int64_t n = -1;
            lmc_json_int(lmc_json_get(o, "usage"), "completion_tokens", &n, NULL);
            CHECK_EQ_INT(n, stats.generation_tokens);
            json_object_put(o);
            http_reply_free(&r);
        }
        if (pid > 0) {
            if (!port) kill(pid, SIGKILL);
            else kill(pid, SIGINT);
            int status = 0;
            waitpid(pid, &status, 0);
            if (port) CHECK_MSG(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
        }
        lmc_free(want);
        lmc_context_free(ctx);
        test_keys_and_log(dir, tokdir);
        double dt = test_sigterm_prefill(dir, tokdir);
        printf("exit %.1f ms after SIGTERM during a 60k-token prefill\n", dt * 1e3);
    }
    tiny_rmdir(dir);
    return check_summary("test_cli_serve");
}
