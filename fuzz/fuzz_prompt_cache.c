/* Fuzz prompt-cache / KV-cache restore: the input is a prompt-cache file
 * (a safetensors file of per-layer keys and values with the cache's
 * metadata: model_type, offset, window, num_layers, and the
 * lmc.prompt_cache token ids) for the tiny llama test model
 * (tests/golden/models/llama-fp32: 3 layers, 2 KV heads of 16). A file
 * lmc_prompt_cache_load refuses must come with a message; one it accepts
 * must hold only finite values, survive a save/re-load round trip (same
 * length and ids, and the saved file readable only by its owner), and
 * carry on generating from a prompt of its ids plus one token (or fail
 * with a message).
 * With LMC_FUZZ_MAKE_SEED=<path> set, the first run also writes a real
 * prompt cache there: the seed corpus's origin. */
#include "fuzz_util.h"
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>

static lmc_context *g_ctx;

static bool on_token(void *user, const lmc_gen_response *r) {
    (void)user;
    FZ_REQUIRE(r->text != NULL);
    return true;
}

static void teardown(void) {
    lmc_context_free(g_ctx);
    fz_tiny_tokenizer_remove();
}

static void make_seed(const char *path) {
    lmc_prompt_cache *pc = NULL;
    FZ_REQUIRE(lmc_prompt_cache_new(g_ctx, &pc) == LMC_OK);
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 2;
    p.sampler.temperature = 0;
    const int32_t prompt[3] = {0, 1, 2};
    FZ_REQUIRE(lmc_generate_ids(g_ctx, prompt, 3, &p, pc, on_token, NULL, NULL) == LMC_OK);
    FZ_REQUIRE(lmc_prompt_cache_save(pc, path) == LMC_OK);
    lmc_prompt_cache_free(pc);
}

static void init(void) {
    const char *root = getenv("LMC_SOURCE_DIR");
    char model[1024];
    snprintf(model, sizeof model, "%s/tests/golden/models/llama-fp32",
             root && *root ? root : LMC_FUZZ_SOURCE_DIR);
    lmc_load_options o = {.model_dir = model, .tokenizer_dir = fz_tiny_tokenizer_dir(),
                          .device = LMC_DEVICE_CPU};
    if (lmc_context_load(&o, &g_ctx) != LMC_OK) {
        fprintf(stderr, "fuzz: cannot load %s: %s\n", model, lmc_last_error());
        abort();
    }
    atexit(teardown); /* before the scratch cleanup */
    const char *seed = getenv("LMC_FUZZ_MAKE_SEED");
    if (seed && *seed) make_seed(seed);
}

/* Same length and ids after a save and a re-load. */
static void round_trip(const lmc_prompt_cache *pc) {
    const char *p2 = fz_path("again.safetensors", 1);
    lmc_status st = lmc_prompt_cache_save(pc, p2);
    FZ_REQUIRE_MESSAGE(st);
    if (st) return; /* e.g. a scratch disk that is full */
    struct stat sb;
    FZ_REQUIRE(stat(p2, &sb) == 0 && (sb.st_mode & 0777) == 0600);
    lmc_prompt_cache *rc = NULL;
    st = lmc_prompt_cache_load(g_ctx, p2, &rc);
    if (st) fprintf(stderr, "re-load failed: %s\n", lmc_last_error());
    FZ_REQUIRE(st == LMC_OK);
    const int32_t *a = NULL, *b = NULL;
    size_t na = lmc_prompt_cache_tokens(pc, &a), nb = lmc_prompt_cache_tokens(rc, &b);
    FZ_REQUIRE(lmc_prompt_cache_len(rc) == lmc_prompt_cache_len(pc));
    FZ_REQUIRE(na == nb && (!na || !memcmp(a, b, na * sizeof *a)));
    lmc_prompt_cache_free(rc);
    fz_remove("again.safetensors", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!g_ctx) init();
    const char *path = fz_write("cache.safetensors", 0, data, size);
    lmc_prompt_cache *pc = NULL;
    lmc_status st = lmc_prompt_cache_load(g_ctx, path, &pc);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("load", st);
    if (st) {
        FZ_REQUIRE(pc == NULL);
        return 0;
    }
    const int32_t *ids = NULL;
    size_t n = lmc_prompt_cache_tokens(pc, &ids), len = lmc_prompt_cache_len(pc);
    FZ_REQUIRE(n <= len);
    round_trip(pc);
    /* continue from the cache: its known ids (capped) and one more token */
    int32_t prompt[33];
    size_t np = n < 32 ? n : 32;
    if (np) memcpy(prompt, ids, np * sizeof *prompt);
    prompt[np++] = 1;
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 2;
    lmc_gen_stats stats;
    st = lmc_generate_ids(g_ctx, prompt, np, &p, pc, on_token, NULL, &stats);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("generate", st);
    lmc_prompt_cache_free(pc);
    return 0;
}
