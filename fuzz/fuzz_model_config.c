/* Fuzz the load factory's handling of config.json: the fuzzed config.json
 * (optionally followed by "\n#generation_config.json\n" and a
 * generation_config.json) sits next to the real weights of a tiny test
 * model, and whatever loads generates two tokens. Size, head and rope
 * fields that disagree with the weights, or with each other, must end in
 * an error, never a crash, a division by zero or a huge allocation. The
 * weights are chosen by the config's model_type so that well-formed
 * mutations get past the shape checks. */
#include "fuzz_util.h"
#include <stdint.h>
#include <sys/stat.h>


#define GEN_SEP "\n#generation_config.json\n"

static bool has_word(const uint8_t *s, size_t n, const char *w) {
    size_t m = strlen(w);
    for (size_t i = 0; i + m + 2 <= n; i++)
        if (s[i] == '"' && !memcmp(s + i + 1, w, m) && s[i + m + 1] == '"') return true;
    return false;
}

/* A golden checkpoint, as its directory under tests/golden. */
static const char *weights_for(const uint8_t *cfg, size_t n) {
    if (has_word(cfg, n, "gemma3_text")) return "gemma3/gemma3-fp32";
    if (has_word(cfg, n, "phi3")) return "phi3/phi3_partial-fp32";
    if (has_word(cfg, n, "qwen3")) return "models/qwen3-fp32";
    if (has_word(cfg, n, "qwen2")) return "models/qwen2-fp32";
    if (has_word(cfg, n, "mistral")) return "models/mistral-fp32";
    if (has_word(cfg, n, "linear")) return "models/llama_linear-fp32"; /* the one with biases */
    return "models/llama-fp32";
}

/* Copy the chosen golden model's weights into the scratch directory (only
 * when the choice changes). */
static void place_weights(const char *model) {
    static char current[64];
    if (!strcmp(current, model)) return;
    char rel[128];
    snprintf(rel, sizeof rel, "tests/golden/%s/model.safetensors", model);
    size_t len = 0;
    char *buf = fz_read_source_file(rel, &len);
    fz_write("model.safetensors", 2, buf, len);
    free(buf);
    snprintf(current, sizeof current, "%s", model);
}

static bool on_token(void *user, const lmc_gen_response *r) {
    (void)user;
    FZ_REQUIRE(r->text != NULL);
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int init;
    if (!init) {
        init = 1;
        fz_tiny_tokenizer_dir();
        atexit(fz_tiny_tokenizer_remove); /* runs before the scratch cleanup */
    }
    size_t clen, glen;
    const unsigned char *gen = fz_split(data, size, GEN_SEP, &clen, &glen);
    place_weights(weights_for(data, clen));
    fz_write("config.json", 0, data, clen);
    if (gen)
        fz_write("generation_config.json", 1, gen, glen);
    else
        fz_remove("generation_config.json", 1);

    lmc_load_options o = {.model_dir = fz_scratch(), .tokenizer_dir = fz_tiny_tokenizer_dir(),
                          .device = LMC_DEVICE_CPU};
    lmc_context *ctx = NULL;
    lmc_status st = lmc_context_load(&o, &ctx);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("load", st);
    if (st != LMC_OK) {
        FZ_REQUIRE(ctx == NULL);
        return 0;
    }
    (void)lmc_context_model_type(ctx);
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 2;
    const int32_t prompt[3] = {0, 1, 2};
    lmc_gen_stats stats;
    st = lmc_generate_ids(ctx, prompt, 3, &p, NULL, on_token, NULL, &stats);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("generate", st);
    lmc_context_free(ctx);
    return 0;
}
