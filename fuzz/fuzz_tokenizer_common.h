/* Exercise a loaded tokenizer with one text: encode (with and without
 * special tokens), look every id up, decode both ways, and stream the ids
 * through the detokenizer. `strict` also checks the documented contract
 * that the streamed pieces concatenate to the one-shot decode (only for
 * texts without NUL bytes: decoded text is a C string, so a NUL ends the
 * one-shot result while the streamed pieces carry on past it). */
#ifndef LMC_FUZZ_TOKENIZER_COMMON_H
#define LMC_FUZZ_TOKENIZER_COMMON_H
#include "fuzz_util.h"
#include <stdbool.h>
#include <stdint.h>

static inline void fz_stream_check(const lmc_tokenizer *t, const int32_t *ids, size_t n,
                                   bool skip, const char *oneshot, bool strict) {
    lmc_detokenizer *d = NULL;
    lmc_status st = lmc_detokenizer_new(t, skip, &d);
    FZ_REQUIRE_MESSAGE(st);
    if (st != LMC_OK) return;
    size_t cap = 64, len = 0;
    char *all = malloc(cap);
    FZ_REQUIRE(all);
    bool ok = true;
    for (size_t i = 0; i <= n && ok; i++) {
        char *seg = NULL;
        st = i < n ? lmc_detokenizer_push(d, ids[i], &seg) : lmc_detokenizer_finish(d, &seg);
        FZ_REQUIRE_MESSAGE(st);
        if (st != LMC_OK) {
            ok = false;
            break;
        }
        size_t sl = seg ? strlen(seg) : 0;
        if (len + sl + 1 > cap) {
            while (len + sl + 1 > cap) cap *= 2;
            all = realloc(all, cap);
            FZ_REQUIRE(all);
        }
        if (sl) memcpy(all + len, seg, sl);
        len += sl;
        lmc_free(seg);
    }
    all[len] = '\0';
    if (ok && strict && oneshot && strcmp(all, oneshot)) {
        fprintf(stderr, "streamed decode \"%s\" != decode \"%s\"\n", all, oneshot);
        FZ_REQUIRE(!"streamed decode differs from decode");
    }
    lmc_detokenizer_reset(d);
    lmc_detokenizer_free(d);
    free(all);
}

static inline void fz_exercise(const lmc_tokenizer *t, const char *text, size_t len,
                               bool add_special, bool strict) {
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_status st = lmc_tokenizer_encode(t, text, len, add_special, &ids, &n);
    FZ_REQUIRE_MESSAGE(st);
    if (st != LMC_OK) return;
    size_t vocab = lmc_tokenizer_vocab_size(t);
    for (size_t i = 0; i < n; i++) {
        FZ_REQUIRE(ids[i] >= 0 && (size_t)ids[i] < vocab);
        (void)lmc_tokenizer_id_to_token(t, ids[i]);
        (void)lmc_tokenizer_is_special(t, ids[i]);
    }
    if (memchr(text, 0, len)) strict = false;
    for (int skip = 0; skip < 2; skip++) {
        char *out = NULL;
        st = lmc_tokenizer_decode(t, ids, n, skip, &out);
        FZ_REQUIRE_MESSAGE(st);
        fz_stream_check(t, ids, n, skip, st == LMC_OK ? out : NULL, strict);
        lmc_free(out);
    }
    lmc_free(ids);
}

/* Ids taken from raw bytes (any value, in or out of range) must decode or
 * fail cleanly. */
static inline void fz_decode_raw(const lmc_tokenizer *t, const uint8_t *data, size_t size) {
    size_t n = size / 4 < 64 ? size / 4 : 64;
    int32_t ids[64];
    size_t vocab = lmc_tokenizer_vocab_size(t);
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, data + 4 * i, 4);
        /* mostly valid ids, sometimes arbitrary ones */
        ids[i] = (u & 0x80000000u) || !vocab ? (int32_t)u : (int32_t)(u % vocab);
    }
    for (int skip = 0; skip < 2; skip++) {
        char *out = NULL;
        lmc_status st = lmc_tokenizer_decode(t, ids, n, skip, &out);
        FZ_REQUIRE_MESSAGE(st);
        fz_stream_check(t, ids, n, skip, NULL, false);
        lmc_free(out);
    }
}

#endif
