/* The raw bytes a token contributes to decoded text, for byte-level
 * consumers (the constrained-decoding vocabulary index). */
#ifndef LMC_TOKENIZER_TOK_BYTES_H
#define LMC_TOKENIZER_TOK_BYTES_H
#include "base/buf.h"
#include "lmc.h"

/* out receives the bytes of token `id`: byte-level stand-ins mapped back,
 * SentencePiece's U+2581 as a space, a <0xXX> byte-fallback piece as that
 * byte, a non-special added token as its content. Special tokens and ids
 * that name nothing give no bytes (out->len == 0). */
lmc_status lmc_tokenizer_token_bytes(const lmc_tokenizer *t, int32_t id, lmc_buf *out);

/* An object derived from the vocabulary (e.g. a byte trie of the tokens)
 * for `key`: built by `build` on first request, then shared, and released
 * with `destroy` when the tokenizer is freed. Thread-safe. */
lmc_status lmc_tokenizer_derived(const lmc_tokenizer *t, size_t key,
                                 lmc_status (*build)(const lmc_tokenizer *, size_t, void **),
                                 void (*destroy)(void *), void **out);
#endif
