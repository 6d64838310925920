/* `lmc serve` as a process: flag errors exit 2; with a tiny checkpoint it
 * listens on the port it reports, answers like lmc_generate on the same
 * checkpoint, honours --max-tokens as the default, and exits 0 on SIGINT.
 * Needs the lmc binary ($LMC_BUILD_DIR/tools/lmc); skipped without it. */
#include "base/json.h"
#include "check.h"
#include "http_client.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>

static char lmc_bin[4096];

static int run_status(const char *args) {
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "%s serve %s >/dev/null 2>&1", lmc_bin, args);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Start `lmc serve` on an ephemeral port; returns the pid and the port
 * read from its banner (0 when none came within a minute). */
static pid_t start_server(const char *dir, const char *tokdir, uint16_t *port) {
    int p[2];
    *port = 0;
    if (pipe(p)) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 2);
        close(p[0]);
        close(p[1]);
        execl(lmc_bin, lmc_bin, "serve", "-m", dir, "--tokenizer", tokdir, "--port", "0",
              "--max-tokens", "5", "--model-name", "cli-tiny", (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    char buf[4096];
    size_t len = 0;
    for (;;) {
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (poll(&pf, 1, 60000) <= 0) break;
        ssize_t k = read(p[0], buf + len, sizeof buf - 1 - len);
        if (k <= 0) break;
        len += (size_t)k;
        buf[len] = 0;
        const char *at = strstr(buf, "http://127.0.0.1:");
        if (at && strchr(at, '\n')) {
            *port = (uint16_t)atoi(at + strlen("http://127.0.0.1:"));
            break;
        }
        if (len == sizeof buf - 1) break;
    }
    close(p[0]);
    if (!*port) fprintf(stderr, "lmc serve said: %.*s\n", (int)len, buf);
    return pid;
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
        pid_t pid = start_server(dir, tokdir, &port);
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
    }
    tiny_rmdir(dir);
    return check_summary("test_cli_serve");
}
