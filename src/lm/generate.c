/* Token generation: stop-string holdback, response emission, the decode loop
 * and prompt caches (KV state + the token ids it encodes). */
#include "lm/generate.h"
#include "base/error.h"
#include "formats/safetensors.h"
#include "lm/context.h"
#include "grammar/matcher.h"
#include "lm/sampler.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

/* ------------------------------------------------------------ helpers */
bool lmc_ivec_push(lmc_ivec *a, int32_t x) { return lmc_ivec_append(a, &x, 1); }

bool lmc_ivec_append(lmc_ivec *a, const int32_t *x, size_t n) {
    if (n == 0) return true;
    if (a->n + n > a->cap) {
        size_t cap = a->cap ? a->cap : 64;
        while (cap < a->n + n) cap *= 2;
        int32_t *v = realloc(a->v, cap * sizeof *v);
        if (!v) return false;
        a->v = v;
        a->cap = cap;
    }
    memcpy(a->v + a->n, x, n * sizeof *x);
    a->n += n;
    return true;
}

void lmc_ivec_free(lmc_ivec *a) {
    free(a->v);
    memset(a, 0, sizeof *a);
}

double lmc_now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

size_t lmc_peak_rss_bytes(void) {
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) return 0;
    return (size_t)ru.ru_maxrss * 1024u; /* Linux reports KiB */
}

/* ------------------------------------------------------------ stop strings */
lmc_status lmc_stop_filter_init(lmc_stop_filter *f, const char *const *stops, size_t n) {
    memset(f, 0, sizeof *f);
    if (n == 0) return LMC_OK;
    if (!stops) return lmc_err(LMC_ERR_INVALID_ARG, "stop strings: array is NULL");
    f->stops = calloc(n, sizeof *f->stops);
    if (!f->stops) return lmc_err(LMC_ERR_NOMEM, "stop strings: out of memory");
    for (size_t i = 0; i < n; i++) {
        if (!stops[i] || !stops[i][0]) {
            lmc_stop_filter_free(f);
            return lmc_err(LMC_ERR_INVALID_ARG, "stop string %zu is empty", i);
        }
        f->stops[f->n] = strdup(stops[i]);
        if (!f->stops[f->n]) {
            lmc_stop_filter_free(f);
            return lmc_err(LMC_ERR_NOMEM, "stop strings: out of memory");
        }
        f->n++;
    }
    return LMC_OK;
}

void lmc_stop_filter_free(lmc_stop_filter *f) {
    for (size_t i = 0; i < f->n; i++) free(f->stops[i]);
    free(f->stops);
    lmc_buf_free(&f->held);
    memset(f, 0, sizeof *f);
}

static char *dup_n(const char *s, size_t n) {
    char *r = malloc(n + 1);
    if (!r) return NULL;
    memcpy(r, s, n);
    r[n] = 0;
    return r;
}

lmc_status lmc_stop_filter_push(lmc_stop_filter *f, const char *text, char **out, bool *stopped) {
    *out = NULL;
    *stopped = false;
    if (f->n == 0) {
        *out = strdup(text ? text : "");
        return *out ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "stop strings: out of memory");
    }
    if (text && *text && !lmc_buf_puts(&f->held, text))
        return lmc_err(LMC_ERR_NOMEM, "stop strings: out of memory");
    const char *h = f->held.p ? f->held.p : "";
    size_t len = f->held.len;
    /* earliest complete stop string wins */
    size_t cut = SIZE_MAX;
    for (size_t i = 0; i < f->n; i++) {
        const char *m = strstr(h, f->stops[i]);
        if (m && (size_t)(m - h) < cut) cut = (size_t)(m - h);
    }
    if (cut != SIZE_MAX) {
        *stopped = true;
        *out = dup_n(h, cut);
        f->held.len = 0;
        if (f->held.p) f->held.p[0] = 0;
        return *out ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "stop strings: out of memory");
    }
    /* keep the longest suffix that is a proper prefix of some stop string */
    size_t keep = 0;
    for (size_t i = 0; i < f->n; i++) {
        size_t sl = strlen(f->stops[i]);
        size_t maxk = sl - 1 < len ? sl - 1 : len;
        for (size_t k = maxk; k > keep; k--) {
            if (!memcmp(h + len - k, f->stops[i], k)) {
                keep = k;
                break;
            }
        }
    }
    *out = dup_n(h, len - keep);
    if (!*out) return lmc_err(LMC_ERR_NOMEM, "stop strings: out of memory");
    if (f->held.p) {
        memmove(f->held.p, h + len - keep, keep);
        f->held.len = keep;
        f->held.p[keep] = 0;
    }
    return LMC_OK;
}

char *lmc_stop_filter_flush(lmc_stop_filter *f) {
    char *r = dup_n(f->held.p ? f->held.p : "", f->held.len);
    f->held.len = 0;
    if (f->held.p) f->held.p[0] = 0;
    return r;
}

/* ------------------------------------------------------------ emitter */
lmc_status lmc_emitter_init(lmc_emitter *e, const lmc_tokenizer *tok, const lmc_gen_params *p,
                            lmc_gen_callback cb, void *user) {
    memset(e, 0, sizeof *e);
    e->tok = tok;
    lmc_status st = lmc_detokenizer_new(tok, false, &e->detok);
    if (st) return lmc_err_prefix(st, "generate: streaming detokenizer");
    st = lmc_stop_filter_init(&e->stop, p->stop, p->n_stop);
    if (st) {
        lmc_detokenizer_free(e->detok);
        e->detok = NULL;
        return st;
    }
    e->n_eos = lmc_tokenizer_eos_ids(tok, &e->eos);
    e->max_tokens = p->max_tokens;
    e->cb = cb;
    e->user = user;
    return LMC_OK;
}

void lmc_emitter_free(lmc_emitter *e) {
    lmc_detokenizer_free(e->detok);
    lmc_stop_filter_free(&e->stop);
    lmc_buf_free(&e->reply);
    lmc_ivec_free(&e->generated);
    memset(e, 0, sizeof *e);
}

static bool is_eos(const lmc_emitter *e, int32_t t) {
    for (size_t i = 0; i < e->n_eos; i++)
        if (e->eos[i] == t) return true;
    return false;
}

lmc_status lmc_emitter_token(lmc_emitter *e, int32_t token, float logprob,
                             const float *logprobs, size_t vocab, int32_t top_n,
                             bool from_draft) {
    if (e->finished) return LMC_OK;
    if (e->produced == 0) e->t_first = lmc_now_s();
    if (!lmc_ivec_push(&e->generated, token))
        return lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
    e->produced++;
    lmc_status st;
    char *seg = NULL;
    lmc_finish_reason reason = LMC_FINISH_NONE;
    if (is_eos(e, token)) {
        /* the eos token itself is never detokenized */
        reason = LMC_FINISH_STOP;
    } else {
        st = lmc_detokenizer_push(e->detok, token, &seg);
        if (st) return lmc_err_prefix(st, "generate: detokenizing token %d", token);
        if (e->produced >= e->max_tokens) reason = LMC_FINISH_LENGTH;
    }
    lmc_buf text = {0};
    if (seg && !lmc_buf_puts(&text, seg)) {
        free(seg);
        return lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
    }
    free(seg);
    if (reason != LMC_FINISH_NONE) {
        char *tail = NULL;
        st = lmc_detokenizer_finish(e->detok, &tail);
        e->detok_done = true;
        if (st) {
            lmc_buf_free(&text);
            return lmc_err_prefix(st, "generate: finishing detokenizer");
        }
        if (tail && !lmc_buf_puts(&text, tail)) {
            free(tail);
            lmc_buf_free(&text);
            return lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
        }
        free(tail);
    }
    char *shown = NULL;
    bool stopped = false;
    st = lmc_stop_filter_push(&e->stop, text.p ? text.p : "", &shown, &stopped);
    lmc_buf_free(&text);
    if (st) return st;
    if (stopped) {
        reason = LMC_FINISH_STOP;
    } else if (reason != LMC_FINISH_NONE) {
        char *rest = lmc_stop_filter_flush(&e->stop);
        size_t a = strlen(shown), b = rest ? strlen(rest) : 0;
        char *both = rest ? realloc(shown, a + b + 1) : NULL;
        if (!both) {
            free(rest);
            free(shown);
            return lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
        }
        memcpy(both + a, rest, b + 1);
        free(rest);
        shown = both;
    }
    if (!lmc_buf_puts(&e->reply, shown)) {
        free(shown);
        return lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
    }
    if (reason != LMC_FINISH_NONE && !e->detok_done) {
        /* a stop string ended the text: close the detokenizer quietly */
        char *tail = NULL;
        if (lmc_detokenizer_finish(e->detok, &tail) == LMC_OK) free(tail);
        e->detok_done = true;
    }
    lmc_gen_response r = {0};
    int32_t top_ids[LMC_MAX_TOP_LOGPROBS];
    float top_vals[LMC_MAX_TOP_LOGPROBS];
    if (top_n > 0 && logprobs) {
        lmc_top_n(logprobs, vocab, (size_t)top_n, top_ids, top_vals);
        r.top_ids = top_ids;
        r.top_logprobs = top_vals;
        r.n_top = (size_t)top_n < vocab ? (size_t)top_n : vocab;
    }
    double now = lmc_now_s();
    r.text = shown;
    r.token = token;
    r.logprob = logprob;
    r.prompt_tokens = e->prompt_tokens;
    r.prompt_tps = e->prompt_tps;
    r.generation_tokens = e->produced;
    r.generation_tps = now > e->t_first ? (double)e->produced / (now - e->t_first) : 0.0;
    r.peak_memory_bytes = lmc_peak_rss_bytes();
    r.finish_reason = reason;
    r.from_draft = from_draft;
    bool go_on = e->cb ? e->cb(e->user, &r) : true;
    free(shown);
    if (reason != LMC_FINISH_NONE) {
        e->finished = true;
        e->reason = reason;
    } else if (!go_on) {
        e->finished = true;
        e->cancelled = true;
    }
    return LMC_OK;
}

void lmc_emitter_fill_stats(const lmc_emitter *e, lmc_gen_stats *stt) {
    if (!stt) return;
    stt->prompt_tps = e->prompt_tps;
    stt->generation_tokens = e->produced;
    double now = lmc_now_s();
    stt->generation_tps =
        e->produced && now > e->t_first ? (double)e->produced / (now - e->t_first) : 0.0;
    stt->peak_memory_bytes = lmc_peak_rss_bytes();
    stt->finish_reason = e->reason;
}

void lmc_emitter_close(lmc_emitter *e) {
    if (e->detok_done || !e->detok) return;
    char *tail = NULL;
    if (lmc_detokenizer_finish(e->detok, &tail) == LMC_OK && tail) lmc_buf_puts(&e->reply, tail);
    free(tail);
    e->detok_done = true;
}

/* ------------------------------------------------------------ constraint */
lmc_status lmc_constraint_init(lmc_gen_constraint *c, const lmc_gen_params *p,
                               const lmc_emitter *e, size_t vocab) {
    c->m = NULL;
    if (!p->grammar) return LMC_OK;
    if (p->draft)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "generate: constrained decoding with a draft model is not supported");
    const lmc_vocab_index *vi = NULL;
    lmc_status st = lmc_vocab_index_shared(e->tok, vocab, &vi);
    if (!st) st = lmc_matcher_new(p->grammar, vi, e->eos, e->n_eos, &c->m);
    return st;
}

lmc_status lmc_constraint_sample(lmc_gen_constraint *c, lmc_sampler *s, float *logits,
                                 const int32_t *recent, size_t n_recent, int32_t *token,
                                 float *logprob) {
    const uint32_t *allowed = NULL;
    lmc_status st = c->m ? lmc_matcher_mask(c->m, &allowed) : LMC_OK;
    if (!st) st = lmc_sampler_sample_masked(s, logits, recent, n_recent, allowed, token, logprob);
    if (!st && c->m) st = lmc_matcher_accept(c->m, *token);
    return st;
}

void lmc_constraint_free(lmc_gen_constraint *c) {
    lmc_matcher_free(c->m);
    c->m = NULL;
}

/* ------------------------------------------------------------ decode loop */
lmc_status lmc_gen_check_cancel(const lmc_gen_params *p, const char *where, size_t at) {
    if (p->cancel && p->cancel(p->cancel_user))
        return lmc_err(LMC_ERR_CANCELLED, "generate: cancelled at %s %zu", where, at);
    return LMC_OK;
}

size_t lmc_gen_context_len(const lmc_model *m, const lmc_gen_params *p) {
    if (p->max_context) return p->max_context;
    return m->cfg.max_position_embeddings > 0 ? (size_t)m->cfg.max_position_embeddings : 0;
}

lmc_status lmc_gen_fit_context(const lmc_model *m, const lmc_gen_params *p, size_t held,
                               size_t n_feed, lmc_emitter *e) {
    size_t n_ctx = lmc_gen_context_len(m, p);
    const char *what = p->max_context ? "max_context" : "the model's max_position_embeddings";
    if (n_ctx == 0) return LMC_OK; /* the config names no limit */
    size_t prompt = held + n_feed;
    if (prompt >= n_ctx)
        return lmc_err(LMC_ERR_LIMIT,
                       "generate: the prompt of %zu tokens leaves no room in the context of %zu "
                       "tokens (%s)",
                       prompt, n_ctx, what);
    if (e->max_tokens > n_ctx - prompt) e->max_tokens = n_ctx - prompt;
    return LMC_OK;
}

lmc_status lmc_prefill(lmc_model *m, lmc_kv_cache *kv, const int32_t *feed, size_t n,
                       const lmc_gen_params *p, float *logits) {
    size_t step = p->prefill_step ? p->prefill_step : 512;
    lmc_status st = LMC_OK;
    /* a chunk can take seconds on the CPU: the backend polls between layers */
    kv->cancel = p->cancel;
    kv->cancel_user = p->cancel_user;
    /* longrope picks its table by the whole prompt, as one forward would */
    kv->rope_len = lmc_kv_cache_len(kv) + n;
    for (size_t off = 0; off < n && !st; off += step) {
        if ((st = lmc_gen_check_cancel(p, "prompt token", off))) break;
        size_t c = n - off < step ? n - off : step;
        st = lmc_model_forward(m, kv, feed + off, c, logits, false);
        if (st) lmc_err_prefix(st, "prefill at prompt token %zu", off);
    }
    kv->cancel = NULL;
    kv->cancel_user = NULL;
    kv->rope_len = 0;
    return st;
}

lmc_status lmc_decode_loop(lmc_model *m, lmc_kv_cache *kv, const int32_t *context,
                           size_t n_context, const int32_t *feed, size_t n_feed,
                           const lmc_gen_params *p, lmc_emitter *e, lmc_gen_stats *stt) {
    if (n_feed == 0) return lmc_err(LMC_ERR_INVALID_ARG, "generate: the prompt is empty");
    int64_t V64 = lmc_model_vocab(m);
    if (V64 <= 0) return lmc_err(LMC_ERR_STATE, "generate: model vocabulary size %lld",
                                 (long long)V64);
    size_t V = (size_t)V64;
    for (size_t i = 0; i < n_feed; i++)
        if (feed[i] < 0 || (size_t)feed[i] >= V)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "generate: prompt token %zu = %d is outside the vocabulary (%zu)", i,
                           feed[i], V);
    lmc_status st = lmc_gen_fit_context(m, p, lmc_kv_cache_len(kv), n_feed, e);
    if (st) return st;
    lmc_sampler *s = NULL;
    lmc_gen_constraint con = {0};
    st = lmc_sampler_new(&p->sampler, V, &s);
    if (st) return st;
    float *logits = malloc(V * sizeof *logits);
    lmc_ivec hist = {0};
    if ((st = lmc_constraint_init(&con, p, e, V))) goto done;
    if (!logits || !lmc_ivec_append(&hist, context, n_context) ||
        !lmc_ivec_append(&hist, feed, n_feed)) {
        st = lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
        goto done;
    }
    int32_t top_n = lmc_sampler_top_logprobs(s);
    /* Greedy without processors or top logprobs on a backend that can
     * pick the token itself: only the id and its logprob cross over. */
    bool on_device = m->vt->forward_greedy && lmc_sampler_is_greedy(s) && top_n == 0 && !con.m;
    int32_t dev_tok = 0;
    float dev_lp = 0.f;
    double t0 = lmc_now_s();
    if (on_device) {
        size_t step = p->prefill_step ? p->prefill_step : 512, last = (n_feed - 1) / step * step;
        st = lmc_prefill(m, kv, feed, last, p, logits);
        if (!st) st = lmc_gen_check_cancel(p, "prompt token", last);
        if (!st) {
            st = m->vt->forward_greedy(m, kv, feed + last, n_feed - last, &dev_tok, &dev_lp);
            if (st) lmc_err_prefix(st, "prefill at prompt token %zu", last);
        }
    } else {
        st = lmc_prefill(m, kv, feed, n_feed, p, logits);
    }
    if (st) goto done;
    double t1 = lmc_now_s();
    e->prompt_tps = t1 > t0 ? (double)n_feed / (t1 - t0) : 0.0;
    if (stt) stt->prefill_tokens = n_feed;
    while (!e->finished) {
        if (e->max_tokens == 0) {
            e->finished = true;
            e->reason = LMC_FINISH_LENGTH;
            break;
        }
        int32_t tok = dev_tok;
        float lp = dev_lp;
        if (!on_device) {
            st = lmc_constraint_sample(&con, s, logits, hist.v, hist.n, &tok, &lp);
            if (st) goto done;
        }
        st = lmc_emitter_token(e, tok, lp, on_device ? NULL : logits, V, top_n, false);
        if (st) goto done;
        if (e->finished) break;
        if (!lmc_ivec_push(&hist, tok)) {
            st = lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
            goto done;
        }
        if ((st = lmc_gen_check_cancel(p, "decode step", e->produced))) goto done;
        st = on_device ? m->vt->forward_greedy(m, kv, &tok, 1, &dev_tok, &dev_lp)
                       : lmc_model_forward(m, kv, &tok, 1, logits, false);
        if (st) {
            lmc_err_prefix(st, "decode step %zu", e->produced);
            goto done;
        }
    }
done:
    lmc_emitter_fill_stats(e, stt);
    lmc_constraint_free(&con);
    lmc_ivec_free(&hist);
    free(logits);
    lmc_sampler_free(s);
    return st;
}

/* ------------------------------------------------------------ prompt cache */
lmc_status lmc_prompt_cache_create(lmc_model *m, lmc_prompt_cache **out) {
    *out = NULL;
    lmc_prompt_cache *c = calloc(1, sizeof *c);
    if (!c) return lmc_err(LMC_ERR_NOMEM, "prompt cache: out of memory");
    lmc_status st = lmc_kv_cache_new(m, &c->kv);
    if (st) {
        free(c);
        return st;
    }
    c->model = m;
    *out = c;
    return LMC_OK;
}

lmc_status lmc_prompt_cache_new(lmc_context *ctx, lmc_prompt_cache **out) {
    if (!ctx || !out) return lmc_err(LMC_ERR_INVALID_ARG, "prompt_cache_new: NULL argument");
    return lmc_prompt_cache_create(lmc_context_model(ctx), out);
}

void lmc_prompt_cache_free(lmc_prompt_cache *c) {
    if (!c) return;
    lmc_kv_cache_free(c->kv);
    lmc_ivec_free(&c->known);
    free(c);
}

size_t lmc_prompt_cache_len(const lmc_prompt_cache *c) { return c ? lmc_kv_cache_len(c->kv) : 0; }

size_t lmc_prompt_cache_tokens(const lmc_prompt_cache *c, const int32_t **ids) {
    if (ids) *ids = c ? c->known.v : NULL;
    return c ? c->known.n : 0;
}

lmc_status lmc_prompt_cache_settle(lmc_prompt_cache *c, const int32_t *prompt, size_t n_prompt,
                                   const int32_t *gen, size_t n_gen) {
    size_t len = lmc_kv_cache_len(c->kv);
    if (c->opaque > len) c->opaque = len;
    size_t want = len - c->opaque;
    c->known.n = 0;
    if (want > n_prompt + n_gen) {
        /* the cache holds more than we can name: all of it becomes opaque */
        c->opaque = len;
        return LMC_OK;
    }
    size_t from_prompt = want < n_prompt ? want : n_prompt;
    if (!lmc_ivec_append(&c->known, prompt, from_prompt) ||
        !lmc_ivec_append(&c->known, gen, want - from_prompt)) {
        c->known.n = 0;
        return lmc_err(LMC_ERR_NOMEM, "prompt cache: out of memory");
    }
    return LMC_OK;
}

#define META_TOKENS "lmc.prompt_cache.token_ids"
#define META_OPAQUE "lmc.prompt_cache.opaque_len"

lmc_status lmc_prompt_cache_save(const lmc_prompt_cache *c, const char *path) {
    if (!c || !path) return lmc_err(LMC_ERR_INVALID_ARG, "prompt_cache_save: NULL argument");
    lmc_buf ids = {0};
    bool ok = lmc_buf_puts(&ids, "");
    for (size_t i = 0; ok && i < c->known.n; i++)
        ok = lmc_buf_printf(&ids, i ? ",%d" : "%d", c->known.v[i]);
    char opaque[32];
    snprintf(opaque, sizeof opaque, "%zu", c->opaque);
    if (!ok) {
        lmc_buf_free(&ids);
        return lmc_err(LMC_ERR_NOMEM, "prompt cache %s: out of memory", path);
    }
    const char *meta[] = {META_TOKENS, ids.p, META_OPAQUE, opaque, NULL};
    lmc_status st = lmc_kv_cache_save(c->kv, path, meta);
    lmc_buf_free(&ids);
    return st;
}

/* Parse "1,2,3" strictly into `out`. */
static bool parse_ids(const char *s, lmc_ivec *out) {
    if (!*s) return true;
    for (;;) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v > INT32_MAX) return false;
        if (!lmc_ivec_push(out, (int32_t)v)) return false;
        if (*end == 0) return true;
        if (*end != ',') return false;
        s = end + 1;
    }
}

lmc_status lmc_prompt_cache_load(lmc_context *ctx, const char *path, lmc_prompt_cache **out) {
    if (!ctx || !path || !out) return lmc_err(LMC_ERR_INVALID_ARG, "prompt_cache_load: NULL argument");
    *out = NULL;
    lmc_prompt_cache *c = calloc(1, sizeof *c);
    if (!c) return lmc_err(LMC_ERR_NOMEM, "prompt cache: out of memory");
    c->model = lmc_context_model(ctx);
    lmc_status st = lmc_kv_cache_load(c->model, path, &c->kv);
    if (st) {
        free(c);
        return st;
    }
    size_t len = lmc_kv_cache_len(c->kv);
    /* token ids are optional: without them the whole cache is an opaque prefix */
    c->opaque = len;
    lmc_st_file *f = NULL;
    if (lmc_st_open(path, &f) == LMC_OK) {
        const char *ids = lmc_st_metadata(f, META_TOKENS);
        const char *op = lmc_st_metadata(f, META_OPAQUE);
        char *end = NULL;
        unsigned long long opq = op ? strtoull(op, &end, 10) : 0;
        bool op_ok = op && end && *end == 0 && end != op;
        if (ids && op_ok) {
            if (!parse_ids(ids, &c->known) || opq + c->known.n != len) {
                lmc_st_close(f);
                lmc_prompt_cache_free(c);
                return lmc_err(LMC_ERR_FORMAT,
                               "prompt cache %s: metadata %s does not describe the %zu cached "
                               "tokens",
                               path, META_TOKENS, len);
            }
            c->opaque = (size_t)opq;
        }
        lmc_st_close(f);
    }
    *out = c;
    return LMC_OK;
}

/* ------------------------------------------------------------ public generate */
lmc_status lmc_generate_ids(lmc_context *ctx, const int32_t *prompt, size_t n_prompt,
                            const lmc_gen_params *pp, lmc_prompt_cache *cache,
                            lmc_gen_callback cb, void *user, lmc_gen_stats *stats) {
    if (!ctx || (!prompt && n_prompt)) return lmc_err(LMC_ERR_INVALID_ARG, "generate: NULL argument");
    if (n_prompt == 0) return lmc_err(LMC_ERR_INVALID_ARG, "generate: the prompt is empty");
    lmc_gen_params p;
    if (pp) p = *pp;
    else lmc_gen_params_default(&p);
    lmc_model *m = lmc_context_model(ctx);
    const lmc_tokenizer *tok = lmc_context_tokenizer(ctx);
    if (cache && cache->model != m)
        return lmc_err(LMC_ERR_INVALID_ARG, "generate: the prompt cache belongs to another model");
    if (p.draft && cache)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "generate: a prompt cache cannot be combined with speculative decoding");
    lmc_gen_stats local = {0};
    lmc_gen_stats *st_out = stats ? stats : &local;
    memset(st_out, 0, sizeof *st_out);
    st_out->prompt_tokens = n_prompt;

    lmc_emitter e;
    lmc_status st = lmc_emitter_init(&e, tok, &p, cb, user);
    if (st) return st;
    e.prompt_tokens = n_prompt;
    lmc_kv_cache *kv = NULL, *dkv = NULL;
    size_t start = 0;
    if (cache) {
        kv = cache->kv;
        const int32_t *k = cache->known.v;
        size_t nk = cache->known.n;
        bool extends = n_prompt > nk && (nk == 0 || !memcmp(prompt, k, nk * sizeof *k));
        if (extends) {
            start = nk;
        } else {
            size_t lcp = 0;
            while (lcp < nk && lcp < n_prompt && k[lcp] == prompt[lcp]) lcp++;
            if (lcp >= n_prompt) lcp = n_prompt - 1; /* always feed at least one token */
            size_t len = lmc_kv_cache_len(kv);
            bool trimmed = cache->opaque == 0 &&
                           lmc_kv_cache_trim(kv, len - lcp) == LMC_OK;
            if (!trimmed) {
                lmc_err_clear();
                lmc_kv_cache_clear(kv);
                cache->opaque = 0;
                lcp = 0;
            }
            cache->known.n = lcp;
            start = lcp;
            st_out->cache_rebuilt = true;
        }
    } else {
        st = lmc_kv_cache_new(m, &kv);
        if (st) goto out;
    }
    if (p.draft) {
        lmc_model *dm = lmc_context_model(p.draft);
        st = lmc_kv_cache_new(dm, &dkv);
        if (st) goto out;
        st = lmc_speculative_loop(m, kv, dm, dkv, prompt, start, prompt + start, n_prompt - start,
                                  &p, &e, st_out);
    } else {
        st = lmc_decode_loop(m, kv, prompt, start, prompt + start, n_prompt - start, &p, &e,
                             st_out);
    }
    if (cache) {
        /* record what the cache now encodes, even after an error */
        lmc_status s2 =
            lmc_prompt_cache_settle(cache, prompt, n_prompt, e.generated.v, e.generated.n);
        if (!st) st = s2;
    }
out:
    if (!cache) lmc_kv_cache_free(kv);
    lmc_kv_cache_free(dkv);
    lmc_emitter_free(&e);
    return st;
}

typedef struct {
    lmc_buf out;
    bool oom;
} collect_ctx;

static bool collect_cb(void *user, const lmc_gen_response *r) {
    collect_ctx *c = user;
    if (!lmc_buf_puts(&c->out, r->text)) c->oom = true;
    return !c->oom;
}

lmc_status lmc_generate_text(lmc_context *ctx, const char *prompt, const lmc_gen_params *p,
                             char **out_text, lmc_gen_stats *stats) {
    if (!ctx || !prompt || !out_text) return lmc_err(LMC_ERR_INVALID_ARG, "generate: NULL argument");
    *out_text = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_status st = lmc_tokenizer_encode(lmc_context_tokenizer(ctx), prompt, strlen(prompt), true,
                                         &ids, &n);
    if (st) return lmc_err_prefix(st, "generate: encoding the prompt");
    collect_ctx c = {0};
    lmc_buf_puts(&c.out, "");
    st = lmc_generate_ids(ctx, ids, n, p, NULL, collect_cb, &c, stats);
    lmc_free(ids);
    if (!st && c.oom) st = lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
    if (st) {
        lmc_buf_free(&c.out);
        return st;
    }
    *out_text = lmc_buf_take(&c.out);
    return *out_text ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "generate: out of memory");
}
