/* Internal generation machinery shared by lmc_generate_*, the chat session
 * and speculative decoding: the stop-string filter, the token emitter
 * (detokenizer + eos / length / stop handling + responses) and the plain
 * decode loop over a model and a KV cache. */
#ifndef LMC_LM_GENERATE_H
#define LMC_LM_GENERATE_H
#include "base/buf.h"
#include "lmc.h"
#include "models/model.h"

/* ---- stop strings: text that may begin a stop string is held back until
 * it either completes one (generation ends, the stop string is dropped) or
 * can no longer do so. */
typedef struct {
    char **stops;
    size_t n;
    lmc_buf held;
} lmc_stop_filter;
lmc_status lmc_stop_filter_init(lmc_stop_filter *f, const char *const *stops, size_t n);
/* Append `text`; *out receives what is now safe to show (malloc'd, maybe "").
 * *stopped is set when a stop string completed (out = text before it). */
lmc_status lmc_stop_filter_push(lmc_stop_filter *f, const char *text, char **out, bool *stopped);
/* End of output: everything still held is plain text. */
char *lmc_stop_filter_flush(lmc_stop_filter *f);
void lmc_stop_filter_free(lmc_stop_filter *f);

/* ---- int32 vector */
typedef struct {
    int32_t *v;
    size_t n, cap;
} lmc_ivec;
bool lmc_ivec_push(lmc_ivec *a, int32_t x);
bool lmc_ivec_append(lmc_ivec *a, const int32_t *x, size_t n);
void lmc_ivec_free(lmc_ivec *a);

double lmc_now_s(void);
size_t lmc_peak_rss_bytes(void);

/* ---- emitter: turns sampled tokens into lmc_gen_response callbacks. */
typedef struct {
    const lmc_tokenizer *tok;
    lmc_detokenizer *detok;
    lmc_stop_filter stop;
    const int32_t *eos;
    size_t n_eos;
    size_t max_tokens;
    lmc_gen_callback cb;
    void *user;
    size_t prompt_tokens;
    double prompt_tps;
    double t_first; /* when the first token was sampled */
    size_t produced; /* tokens emitted (eos included) */
    lmc_buf reply;   /* all text shown so far */
    lmc_ivec generated;
    bool finished, cancelled, detok_done;
    lmc_finish_reason reason;
} lmc_emitter;

lmc_status lmc_emitter_init(lmc_emitter *e, const lmc_tokenizer *tok, const lmc_gen_params *p,
                            lmc_gen_callback cb, void *user);
/* Emit one sampled token; sets e->finished when generation must end.
 * logprobs (vocab floats, may be NULL) feeds the top-N report. */
lmc_status lmc_emitter_token(lmc_emitter *e, int32_t token, float logprob,
                             const float *logprobs, size_t vocab, int32_t top_n,
                             bool from_draft);
/* After an early stop or an error: flush the detokenizer's withheld tail
 * into `reply` (not shown) so the recorded text matches the tokens. */
void lmc_emitter_close(lmc_emitter *e);
void lmc_emitter_free(lmc_emitter *e);
/* Copy the emitter's totals (speeds, tokens, finish reason, peak memory)
 * into `stt` (may be NULL) when a decode loop ends. */
void lmc_emitter_fill_stats(const lmc_emitter *e, lmc_gen_stats *stt);

/* ---- constrained decoding: the grammar of p (if any) masks each draw. */
typedef struct lmc_matcher lmc_matcher;
typedef struct {
    lmc_matcher *m; /* NULL: unconstrained */
} lmc_gen_constraint;
/* vocab: the model's. Refuses a grammar together with a draft model. */
lmc_status lmc_constraint_init(lmc_gen_constraint *c, const lmc_gen_params *p,
                               const lmc_emitter *e, size_t vocab);
/* Sample (masked when constrained) and advance the grammar over the token. */
lmc_status lmc_constraint_sample(lmc_gen_constraint *c, lmc_sampler *s, float *logits,
                                 const int32_t *recent, size_t n_recent, int32_t *token,
                                 float *logprob);
void lmc_constraint_free(lmc_gen_constraint *c);

/* Forward `n` tokens over `kv` in chunks of p->prefill_step (0: 512),
 * polling p->cancel before each chunk and, through kv->cancel (set for the
 * call), between a chunk's layers where the backend can; `logits` receives
 * the last position's logits. A cancelled chunk leaves `kv` as it was. */
lmc_status lmc_prefill(lmc_model *m, lmc_kv_cache *kv, const int32_t *feed, size_t n,
                       const lmc_gen_params *p, float *logits);
/* LMC_ERR_CANCELLED when p->cancel asks to stop. */
lmc_status lmc_gen_check_cancel(const lmc_gen_params *p, const char *where, size_t at);
/* The context length generation must stay within: p->max_context, else
 * the model's max_position_embeddings (0: none given). */
size_t lmc_gen_context_len(const lmc_model *m, const lmc_gen_params *p);
/* The context budget: `held` tokens already in the KV cache plus `n_feed`
 * to feed must leave room for one generated token within p->max_context
 * (0: the model's max_position_embeddings); e->max_tokens is clamped to
 * the room left. LMC_ERR_LIMIT otherwise. */
lmc_status lmc_gen_fit_context(const lmc_model *m, const lmc_gen_params *p, size_t held,
                               size_t n_feed, lmc_emitter *e);

/* Prefill `feed` over `kv` (which already holds the tokens preceding it),
 * then decode until the emitter finishes. `context` (n_context tokens, may
 * be NULL) precedes `feed` for the repetition penalty. */
lmc_status lmc_decode_loop(lmc_model *m, lmc_kv_cache *kv, const int32_t *context,
                           size_t n_context, const int32_t *feed, size_t n_feed,
                           const lmc_gen_params *p, lmc_emitter *e, lmc_gen_stats *st);

/* Speculative counterpart (speculative.c): `draft_kv` must hold the same
 * tokens as `kv` (both typically empty). */
lmc_status lmc_speculative_loop(lmc_model *target, lmc_kv_cache *kv, lmc_model *draft,
                                lmc_kv_cache *draft_kv, const int32_t *context,
                                size_t n_context, const int32_t *feed, size_t n_feed,
                                const lmc_gen_params *p, lmc_emitter *e, lmc_gen_stats *st);

/* ---- prompt cache internals (used by the session) */
struct lmc_prompt_cache {
    lmc_model *model;   /* borrowed */
    lmc_kv_cache *kv;
    size_t opaque;      /* leading cached tokens whose ids are unknown */
    lmc_ivec known;     /* ids after the opaque prefix: opaque + known.n == kv len */
};
lmc_status lmc_prompt_cache_create(lmc_model *m, lmc_prompt_cache **out);
/* After a turn, record what the cache now holds: with `logical` = the
 * prompt's n_prompt ids followed by the n_gen generated ids, known = logical
 * truncated to kv len - opaque. */
lmc_status lmc_prompt_cache_settle(lmc_prompt_cache *c, const int32_t *prompt, size_t n_prompt,
                                   const int32_t *gen, size_t n_gen);

#endif
