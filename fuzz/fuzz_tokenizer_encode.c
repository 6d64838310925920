/* Fuzz encode/decode with real tokenizers.
 *
 * Input byte 0 picks the tokenizer (low bits) and whether special tokens
 * are added (bit 7); the rest is the text. Each tokenizer is loaded once,
 * on first use. Encoded ids must be in range, decode must succeed or fail
 * with a message, and the streaming detokenizer must reproduce decode
 * exactly (its documented contract). Raw bytes are also decoded as ids. */
#include "fuzz_tokenizer_common.h"

#ifndef LMC_FUZZ_SOURCE_DIR
#define LMC_FUZZ_SOURCE_DIR "."
#endif

/* Byte-level BPE (two pre-tokenizer regexes), SentencePiece-style BPE with
 * byte fallback, Unigram and WordPiece. The first two come from
 * scripts/fetch_assets.sh; the last two are committed goldens. */
static const char *const dirs[] = {
    ".cache/assets/tokenizers/qwen3",
    ".cache/assets/tokenizers/llama3_1",
    ".cache/assets/tokenizers/llama2",
    ".cache/assets/tokenizers/deepseek_v3",
    "tests/golden/tokenizer/unigram",
    "tests/golden/tokenizer/bert",
};
#define N_TOK (sizeof dirs / sizeof dirs[0])

static lmc_tokenizer *toks[N_TOK];
static int tried[N_TOK];

static const lmc_tokenizer *get_tokenizer(size_t i) {
    if (tried[i]) return toks[i];
    tried[i] = 1;
    const char *root = getenv("LMC_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", root && *root ? root : LMC_FUZZ_SOURCE_DIR, dirs[i]);
    if (lmc_tokenizer_load(path, &toks[i]) != LMC_OK) {
        fprintf(stderr, "fuzz_tokenizer_encode: skipping %s: %s\n", dirs[i], lmc_last_error());
        toks[i] = NULL;
    }
    return toks[i];
}

static void free_all(void) {
    for (size_t i = 0; i < N_TOK; i++) lmc_tokenizer_free(toks[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int registered;
    if (!registered) {
        registered = 1;
        atexit(free_all);
    }
    if (size < 1) return 0;
    const lmc_tokenizer *t = get_tokenizer((data[0] & 0x7f) % N_TOK);
    if (!t) return 0;
    bool add_special = data[0] & 0x80;
    fz_exercise(t, (const char *)data + 1, size - 1, add_special, true);
    fz_decode_raw(t, data + 1, size - 1);
    return 0;
}
