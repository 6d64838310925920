/* Runs tests/server/openai_agent.mjs: the official `openai` npm client
 * (pinned, installed by scripts/fetch_assets.sh into .cache/node) against
 * an in-process server over a tiny random-weight qwen3 checkpoint: a tool
 * round trip, a json_schema request and Responses API requests. Skipped
 * (77) when node or the package is missing. */
#include "check.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include <signal.h>
#include <sys/wait.h>

int main(void) {
    tiny_single_thread();
    signal(SIGPIPE, SIG_IGN);
    char module[4096], script[4096];
    tiny_asset(module, sizeof module, ".cache/node/node_modules/openai/index.mjs");
    tiny_asset(script, sizeof script, "tests/server/openai_agent.mjs");
    if (system("node --version >/dev/null 2>&1") != 0) CHECK_SKIP("node is not installed");
    if (access(module, R_OK) != 0) CHECK_SKIP("%s missing; run scripts/fetch_assets.sh", module);
    char dir[1024];
    if (tiny_tmpdir(dir, sizeof dir, "agent")) return 1;
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 13, 0};
    lmc_context *ctx = tiny_load(dir, &spec, ".cache/assets/tokenizers/qwen3");
    CHECK(ctx != NULL);
    lmc_server *srv = NULL;
    lmc_server_options o = {.model_name = "tiny"};
    if (ctx) CHECK(lmc_server_start(ctx, &o, &srv) == LMC_OK);
    if (srv) {
        char cmd[12000];
        snprintf(cmd, sizeof cmd,
                 "LMC_URL=http://127.0.0.1:%u/v1 OPENAI_MODULE='file://%s' node '%s' 2>&1",
                 (unsigned)lmc_server_port(srv), module, script);
        FILE *f = popen(cmd, "r");
        char line[4096];
        bool done = false;
        while (f && fgets(line, sizeof line, f)) {
            fputs(line, stdout);
            if (strstr(line, "openai_agent: 6 checks passed")) done = true;
        }
        int st = f ? pclose(f) : -1;
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "node exited with %d", st);
        CHECK(done);
        lmc_server_stop(srv);
    }
    lmc_context_free(ctx);
    tiny_rmdir(dir);
    return check_summary("test_openai_agent");
}
