/* Runs tests/server/openai_client.mjs: the official `openai` npm client
 * (pinned, installed by scripts/fetch_assets.sh into .cache/node) against
 * `lmc serve` over a tiny checkpoint with the Qwen3 tokenizer. The texts
 * the client must parse out of plain and streamed replies are computed
 * here with lmc_generate on the same checkpoint. Skipped (77) when node,
 * the package or the tokenizer is missing. */
#include "check.h"
#include "http_client.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include "serve_proc.h"

#define MAX_CONTEXT "64"

static bool collect(void *user, const lmc_gen_response *r) {
    lmc_buf_puts(user, r->text);
    return true;
}

/* The greedy reply to [{"role":"user","content":"Hello"}] as the server
 * renders it (chat template with the generation prompt). */
static char *chat_reference(lmc_context *ctx, const lmc_gen_params *p) {
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(lmc_tokenizer_apply_chat_template_ids(lmc_context_tokenizer(ctx),
                                                "[{\"role\":\"user\",\"content\":\"Hello\"}]",
                                                NULL, true, false, NULL, &ids, &n) == LMC_OK);
    lmc_buf out = {0};
    lmc_buf_puts(&out, "");
    CHECK(ids && lmc_generate_ids(ctx, ids, n, p, NULL, collect, &out, NULL) == LMC_OK);
    lmc_free(ids);
    return lmc_buf_take(&out);
}

int main(void) {
    tiny_single_thread();
    signal(SIGPIPE, SIG_IGN);
    const char *bd = getenv("LMC_BUILD_DIR");
    char lmc_bin[4096], module[4096], script[4096], tokdir[4096];
    snprintf(lmc_bin, sizeof lmc_bin, "%s/tools/lmc", bd && *bd ? bd : "build");
    tiny_asset(module, sizeof module, ".cache/node/node_modules/openai/index.mjs");
    tiny_asset(script, sizeof script, "tests/server/openai_client.mjs");
    tiny_asset(tokdir, sizeof tokdir, ".cache/assets/tokenizers/qwen3");
    if (access(lmc_bin, X_OK) != 0) CHECK_SKIP("%s not built", lmc_bin);
    if (system("node --version >/dev/null 2>&1") != 0) CHECK_SKIP("node is not installed");
    if (access(module, R_OK) != 0)
        CHECK_SKIP("%s missing; run scripts/fetch_assets.sh", module);

    char dir[1024];
    if (tiny_tmpdir(dir, sizeof dir, "openai")) return 1;
    tiny_spec spec = {"qwen3", 1, 32, 4, 2, 8, 64, 151936, 151645, 5, 0};
    lmc_context *ctx = tiny_load(dir, &spec, ".cache/assets/tokenizers/qwen3");
    CHECK(ctx != NULL);
    if (!ctx) return check_summary("test_openai_client");
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 8;
    char *completion = NULL;
    CHECK(lmc_generate_text(ctx, "Once upon a time", &p, &completion, NULL) == LMC_OK);
    char *chat = chat_reference(ctx, &p);
    lmc_context_free(ctx);

    const char *extra[] = {"--api-key", "sk-test", "--max-context", MAX_CONTEXT, "--quiet", NULL};
    uint16_t port = 0;
    pid_t pid = start_server(lmc_bin, dir, tokdir, extra, &port, NULL);
    CHECK(pid > 0 && port != 0);
    if (pid > 0 && port) {
        char url[64], mod_url[4200];
        snprintf(url, sizeof url, "http://127.0.0.1:%u/v1", (unsigned)port);
        snprintf(mod_url, sizeof mod_url, "file://%s", module);
        lmc_buf long_prompt = {0};
        for (int i = 0; i < 100; i++) lmc_buf_puts(&long_prompt, " cat");
        setenv("LMC_URL", url, 1);
        setenv("LMC_KEY", "sk-test", 1);
        setenv("OPENAI_MODULE", mod_url, 1);
        setenv("EXPECT_COMPLETION", completion ? completion : "", 1);
        setenv("EXPECT_CHAT", chat ? chat : "", 1);
        setenv("LONG_PROMPT", long_prompt.p, 1);
        char cmd[8192];
        snprintf(cmd, sizeof cmd, "timeout 300 node '%s'", script);
        int rc = system(cmd);
        CHECK_MSG(WIFEXITED(rc) && WEXITSTATUS(rc) == 0, "node exited with %d", rc);
        lmc_buf_free(&long_prompt);
    }
    if (pid > 0) {
        kill(pid, port ? SIGINT : SIGKILL);
        waitpid(pid, NULL, 0);
    }
    lmc_free(completion);
    lmc_free(chat);
    tiny_rmdir(dir);
    return check_summary("test_openai_client");
}
