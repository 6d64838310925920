/* `lmc generate` and `lmc chat` end to end on a tiny random-weight qwen3:
 * the streamed stdout equals the library's greedy output, the speed and
 * memory report lands on stderr, bad flags fail with a message, and the
 * chat REPL runs turns and its /save, /load, /clear, /quit commands.
 * Needs the lmc binary ($LMC_BUILD_DIR/tools/lmc); skipped without it. */
#include "check.h"
#include "lm_test_util.h"
#include "tiny_model.h"
#include <sys/wait.h>

/* Run `cmd`, capture stdout (stderr goes to errpath). Returns exit code. */
static int run(const char *cmd, lmc_buf *out) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char buf[4096];
    size_t n;
    lmc_buf_puts(out, "");
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) lmc_buf_append(out, buf, n);
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *slurp(const char *path) {
    char *s = NULL;
    size_t n;
    if (lmc_read_file(path, "stderr", 1 << 20, &s, &n)) return strdup("");
    return s;
}

int main(void) {
    tiny_single_thread();
    const char *bd = getenv("LMC_BUILD_DIR");
    char lmc[1200];
    snprintf(lmc, sizeof lmc, "%s/tools/lmc", bd && *bd ? bd : "build");
    if (access(lmc, X_OK) != 0) CHECK_SKIP("%s not built", lmc);
    char dir[1024];
    if (tiny_tmpdir(dir, sizeof dir, "cli")) return 1;
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 41, 0};
    lmc_context *ctx = tiny_load(dir, &spec, ".cache/assets/tokenizers/qwen3");
    CHECK(ctx != NULL);
    if (!ctx) {
        tiny_rmdir(dir);
        return check_summary("test_cli_generate");
    }
    char tok[1200], err[1200], cmd[16384];
    tiny_asset(tok, sizeof tok, ".cache/assets/tokenizers/qwen3");
    snprintf(err, sizeof err, "%s/stderr.txt", dir);

    /* library reference: greedy, 8 tokens */
    int32_t ids[4] = {785, 3974, 13876, 38835};
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 8;
    collected ref = {0};
    CHECK(lmc_generate_ids(ctx, ids, 4, &p, NULL, collect_cb, &ref, NULL) == LMC_OK);

    lmc_buf out = {0};
    snprintf(cmd, sizeof cmd,
             "'%s' generate -m '%s' --tokenizer '%s' --prompt-ids 785,3974,13876,38835 "
             "--max-tokens 8 2>'%s'",
             lmc, dir, tok, err);
    CHECK_EQ_INT(run(cmd, &out), 0);
    lmc_buf want = {0};
    lmc_buf_puts(&want, ref.text.p ? ref.text.p : "");
    lmc_buf_puts(&want, "\n");
    CHECK_MSG(out.p && !strcmp(out.p, want.p), "stdout \"%s\" want \"%s\"", out.p, want.p);
    char *e = slurp(err);
    CHECK_MSG(strstr(e, "Prompt: 4 tokens") && strstr(e, "Generation: ") &&
                  strstr(e, "tokens-per-sec") && strstr(e, "Peak memory:"),
              "stderr: %s", e);
    free(e);
    lmc_buf_free(&out);
    lmc_buf_free(&want);

    /* text prompt through the chat template, sampling flags accepted */
    snprintf(cmd, sizeof cmd,
             "'%s' generate -m '%s' --tokenizer '%s' -p hello --chat --system 'Be brief' "
             "--max-tokens 4 --temp 0.7 --top-p 0.9 --top-k 20 --min-p 0.05 "
             "--repetition-penalty 1.1 --presence-penalty -0.5 --frequency-penalty 0.25 "
             "--penalty-context-size 8 --seed 3 --stop zzz 2>'%s'",
             lmc, dir, tok, err);
    lmc_buf o2 = {0};
    CHECK_EQ_INT(run(cmd, &o2), 0);
    e = slurp(err);
    int32_t *cids = NULL;
    size_t cn = 0;
    CHECK(lmc_tokenizer_apply_chat_template_ids(
              lmc_context_tokenizer(ctx),
              "[{\"role\":\"system\",\"content\":\"Be brief\"},"
              "{\"role\":\"user\",\"content\":\"hello\"}]",
              NULL, true, false, NULL, &cids, &cn) == LMC_OK);
    char want_p[64];
    snprintf(want_p, sizeof want_p, "Prompt: %zu tokens", cn);
    CHECK_MSG(cn > 10 && strstr(e, want_p) != NULL, "stderr: %s (want %s)", e, want_p);
    lmc_free(cids);
    free(e);
    lmc_buf_free(&o2);

    /* bad flags: exit 2 and a message naming the flag */
    snprintf(cmd, sizeof cmd, "'%s' generate -m '%s' -p hi --top-p 3 2>'%s'", lmc, dir, err);
    lmc_buf o3 = {0};
    CHECK_EQ_INT(run(cmd, &o3), 2);
    e = slurp(err);
    CHECK_MSG(strstr(e, "--top-p") != NULL, "stderr: %s", e);
    free(e);
    snprintf(cmd, sizeof cmd, "'%s' generate -m '%s/missing' -p hi 2>'%s'", lmc, dir, err);
    CHECK_EQ_INT(run(cmd, &o3), 1);
    e = slurp(err);
    CHECK_MSG(strstr(e, "missing") != NULL, "stderr: %s", e);
    free(e);
    /* a prompt past --max-context: exit 1 and a message naming both lengths */
    snprintf(cmd, sizeof cmd,
             "'%s' generate -m '%s' --tokenizer '%s' -p 'one two three four five six' "
             "--max-context 3 2>'%s'",
             lmc, dir, tok, err);
    CHECK_EQ_INT(run(cmd, &o3), 1);
    e = slurp(err);
    CHECK_MSG(strstr(e, "context of 3 tokens (max_context)") != NULL, "stderr: %s", e);
    free(e);
    lmc_buf_free(&o3);

    /* chat REPL: two turns, save, clear, load, quit */
    char cache[1200];
    snprintf(cache, sizeof cache, "%s/chat_cache.safetensors", dir);
    snprintf(cmd, sizeof cmd,
             "printf 'hello\\n/save %s\\nagain\\n/clear\\n/save %s.x\\n/load %s\\nmore\\n/quit\\n' | "
             "'%s' chat -m '%s' --tokenizer '%s' --max-tokens 3 2>'%s'",
             cache, cache, cache, lmc, dir, tok, err);
    lmc_buf o4 = {0};
    CHECK_EQ_INT(run(cmd, &o4), 0);
    e = slurp(err);
    CHECK_MSG(strstr(e, "[cache saved to") && strstr(e, "[conversation cleared]") &&
                  strstr(e, "no KV cache") && strstr(e, "[continuing from"),
              "stderr: %s", e);
    free(e);
    CHECK(access(cache, R_OK) == 0);
    unlink(cache);
    unlink(err);
    lmc_buf_free(&o4);
    collected_free(&ref);
    lmc_context_free(ctx);
    tiny_rmdir(dir);
    return check_summary("test_cli_generate");
}
