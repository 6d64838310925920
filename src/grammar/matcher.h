/* Constrained decoding: a compiled grammar's lazily built automaton, the
 * vocabulary index (a byte trie of the token strings, in depth-first
 * order) and the per-step matcher that turns the parser state into a token
 * mask. */
#ifndef LMC_GRAMMAR_MATCHER_H
#define LMC_GRAMMAR_MATCHER_H
#include "grammar/cfg.h"
#include "lmc.h"
#include <pthread.h>

/* The parser state is a set of threads (grammar position of the next byte
 * + an interned return stack); identical sets are one automaton state, and
 * a state's byte transitions and token mask are computed once, on first
 * use, then reused by every later step and request with this grammar. */
typedef struct lmc_pda lmc_pda;

struct lmc_grammar {
    lmc_cfg cfg;
    lmc_pda *pda;
    pthread_mutex_t mu; /* guards pda (shared by concurrent matchers) */
};

typedef struct lmc_vocab_index lmc_vocab_index;
/* Index tokens [0, model_vocab) of t: special tokens and tokens with no
 * bytes are never allowed by a grammar (eos is handled apart). */
lmc_status lmc_vocab_index_build(const lmc_tokenizer *t, size_t model_vocab, lmc_vocab_index **out);
void lmc_vocab_index_free(lmc_vocab_index *v);
size_t lmc_vocab_index_nodes(const lmc_vocab_index *v);
/* The index of t for model_vocab, built once and kept with the tokenizer. */
lmc_status lmc_vocab_index_shared(const lmc_tokenizer *t, size_t model_vocab,
                                  const lmc_vocab_index **out);

typedef struct lmc_matcher lmc_matcher;
/* g and v are borrowed for the matcher's life. */
lmc_status lmc_matcher_new(lmc_grammar *g, const lmc_vocab_index *v, const int32_t *eos,
                           size_t n_eos, lmc_matcher **out);
void lmc_matcher_free(lmc_matcher *m);
/* The tokens allowed next: bit i of (*bits)[i / 32]; borrowed until the
 * next call. eos is allowed exactly when the grammar accepts the text so
 * far. Fails with LMC_ERR_STATE when nothing is allowed (no eos token and
 * the grammar is complete). */
lmc_status lmc_matcher_mask(lmc_matcher *m, const uint32_t **bits);
/* The same mask without the per-state cache (for measurement): the trie
 * walk (with JSON string slices), or with per_token one automaton run over
 * every token's bytes. */
lmc_status lmc_matcher_mask_uncached(lmc_matcher *m, bool per_token, const uint32_t **bits);
/* Advance over a sampled token; one the mask forbids is LMC_ERR_INVALID_ARG. */
lmc_status lmc_matcher_accept(lmc_matcher *m, int32_t token);
bool lmc_matcher_accepting(const lmc_matcher *m);

/* Byte-level matching of a whole text (no vocabulary): *complete when the
 * grammar accepts text, *prefix when text can still be extended to a
 * sentence. */
lmc_status lmc_grammar_match_bytes(lmc_grammar *g, const char *text, size_t len, bool *complete,
                                   bool *prefix);
/* Free the automaton (lmc_grammar_free). */
void lmc_grammar_pda_free(lmc_grammar *g);
#endif
