/* Fuzz tokenizer.json (and tokenizer_config.json) loading.
 *
 * Input: tokenizer.json bytes, optionally followed by the separator line
 * "\n#tokenizer_config.json\n" and tokenizer_config.json bytes; both are
 * written into a directory and loaded with lmc_tokenizer_load. When the
 * tokenizer loads, a few fixed texts are encoded and decoded, arbitrary ids
 * are decoded, and every accessor is called. */
#include "fuzz_tokenizer_common.h"

#define CFG_SEP "\n#tokenizer_config.json\n"

static const char *const texts[] = {
    "Hello, world! It's 2024 -- naïve café, 日本語のテキスト 😀 \t\n  spaces  ",
    "<|endoftext|><s></s><|im_start|>user\nhi<|im_end|> [CLS] [SEP] <unk>",
    "  leading\r\n\r\ntrailing  \u00a0\u200b\u3000x ﬁ Å Ａ ǅ",
    "",
    "\xff\xfe invalid \xc3 utf-8 \xed\xa0\x80",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t tlen, clen;
    const unsigned char *cfg = fz_split(data, size, CFG_SEP, &tlen, &clen);
    fz_write("tokenizer.json", 0, data, tlen);
    if (cfg)
        fz_write("tokenizer_config.json", 1, cfg, clen);
    else
        fz_remove("tokenizer_config.json", 1);

    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load(fz_scratch(), &t);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("tokenizer", st);
    if (st != LMC_OK) {
        FZ_REQUIRE(t == NULL);
        return 0;
    }
    size_t vocab = lmc_tokenizer_vocab_size(t);
    for (size_t i = 0; i < vocab && i < 512; i++) {
        const char *tok = lmc_tokenizer_id_to_token(t, (int32_t)i);
        if (tok) (void)lmc_tokenizer_token_to_id(t, tok);
    }
    FZ_REQUIRE(lmc_tokenizer_id_to_token(t, -1) == NULL);
    FZ_REQUIRE(lmc_tokenizer_id_to_token(t, (int32_t)vocab) == NULL || vocab >= INT32_MAX);
    (void)lmc_tokenizer_bos_id(t);
    static const char *const keys[] = {"bos_token", "eos_token", "pad_token", "unk_token", "x"};
    for (size_t k = 0; k < 5; k++) (void)lmc_tokenizer_special_token(t, keys[k]);
    (void)lmc_tokenizer_chat_template(t, NULL);
    (void)lmc_tokenizer_chat_template(t, "tool_use");
    const int32_t *eos = NULL;
    size_t n_eos = lmc_tokenizer_eos_ids(t, &eos);
    for (size_t i = 0; i < n_eos; i++) FZ_REQUIRE(eos != NULL);

    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
        fz_exercise(t, texts[i], strlen(texts[i]), i % 2 == 0, false);
    fz_decode_raw(t, data, size);

    int32_t new_eos[2] = {0, (int32_t)(vocab ? vocab - 1 : 0)};
    FZ_REQUIRE_MESSAGE(lmc_tokenizer_set_eos_ids(t, new_eos, 2));
    lmc_tokenizer_free(t);
    return 0;
}
