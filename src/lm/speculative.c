/* Speculative decoding: a draft model sharing the tokenizer proposes up to
 * k tokens, the target verifies them in one all-positions forward pass and
 * keeps the longest agreeing run plus its own next token. Each kept token
 * is exactly what the target's sampler chose at that position, so greedy
 * output equals the target's plain greedy output. Rejected positions are
 * rolled back with lmc_kv_cache_trim. */
#include "base/error.h"
#include "lm/generate.h"
#include "lm/sampler.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    lmc_model *target, *draft;
    lmc_kv_cache *kv, *dkv;
    lmc_sampler *ts, *ds;
    size_t V, Vd;
    float *tlog;  /* (k+1) * V verification logits */
    float *dlog;  /* Vd draft logits */
    lmc_ivec hist;    /* every token so far (context, prompt, output) */
    lmc_ivec dpend;   /* tokens the draft cache still has to be fed */
    int32_t *drafts;
} spec_state;

static lmc_status draft_feed(spec_state *s, const int32_t *ids, size_t n,
                             const lmc_gen_params *p) {
    size_t step = p->prefill_step ? p->prefill_step : 512;
    for (size_t off = 0; off < n; off += step) {
        lmc_status st = lmc_gen_check_cancel(p, "draft prompt token", off);
        if (st) return st;
        size_t c = n - off < step ? n - off : step;
        st = lmc_model_forward(s->draft, s->dkv, ids + off, c, s->dlog, false);
        if (st) return lmc_err_prefix(st, "speculative: draft model forward");
    }
    return LMC_OK;
}

/* One round: draft k tokens after `y` (already emitted, in no cache yet),
 * verify, emit the accepted run and the target's own next token. */
static lmc_status spec_round(spec_state *s, const lmc_gen_params *p, lmc_emitter *e,
                             int32_t *y, lmc_gen_stats *stt) {
    size_t remaining = e->max_tokens > e->produced ? e->max_tokens - e->produced : 0;
    size_t k = p->num_draft_tokens;
    if (k + 1 > remaining) k = remaining ? remaining - 1 : 0;
    lmc_status st;
    size_t base = s->hist.n; /* hist holds everything up to and including y */
    /* 1. draft proposals */
    size_t nd = 0, dfed = 0; /* drafts proposed / fed to the draft cache */
    if (k > 0) {
        st = draft_feed(s, s->dpend.v, s->dpend.n, p);
        if (st) return st;
        s->dpend.n = 0;
        for (size_t i = 0; i < k; i++) {
            int32_t d;
            st = lmc_sampler_sample(s->ds, s->dlog, s->hist.v, s->hist.n, &d, NULL);
            if (st) return st;
            if (d < 0 || (size_t)d >= s->V) break; /* outside the target's vocabulary */
            s->drafts[nd++] = d;
            if (!lmc_ivec_push(&s->hist, d)) return lmc_err(LMC_ERR_NOMEM, "speculative: out of memory");
            if (i + 1 < k) {
                st = lmc_model_forward(s->draft, s->dkv, &d, 1, s->dlog, false);
                if (st) return lmc_err_prefix(st, "speculative: draft model forward");
                dfed++;
            }
        }
        s->hist.n = base;
    }
    /* 2. verification: y and the drafts in one pass, logits at every position */
    int32_t verify[1 + 64];
    verify[0] = *y;
    memcpy(verify + 1, s->drafts, nd * sizeof *verify);
    st = lmc_model_forward(s->target, s->kv, verify, nd + 1, s->tlog, true);
    if (st) return lmc_err_prefix(st, "speculative: target verification forward");
    size_t accepted = 0;
    int32_t next = -1;
    int32_t top_n = lmc_sampler_top_logprobs(s->ts);
    for (size_t i = 0; i <= nd; i++) {
        float *row = s->tlog + i * s->V;
        int32_t t;
        float lp;
        st = lmc_sampler_sample(s->ts, row, s->hist.v, s->hist.n, &t, &lp);
        if (st) return st;
        bool agree = i < nd && t == s->drafts[i];
        st = lmc_emitter_token(e, t, lp, row, s->V, top_n, agree);
        if (st) return st;
        if (!lmc_ivec_push(&s->hist, t)) return lmc_err(LMC_ERR_NOMEM, "speculative: out of memory");
        if (!agree) {
            next = t;
            break;
        }
        accepted++;
        if (e->finished) break;
    }
    if (stt) {
        stt->draft_proposed += nd;
        stt->draft_accepted += accepted;
    }
    if (e->finished) return LMC_OK;
    /* 3. roll back: the target cache keeps y and the accepted drafts */
    st = lmc_kv_cache_trim(s->kv, nd - accepted);
    if (st) return lmc_err_prefix(st, "speculative: rolling back the target cache");
    if (nd > 0) {
        /* the draft cache holds everything up to y plus drafts[0..dfed-1] */
        if (accepted <= dfed) {
            st = lmc_kv_cache_trim(s->dkv, dfed - accepted);
            if (st) return lmc_err_prefix(st, "speculative: rolling back the draft cache");
        } else if (!lmc_ivec_append(&s->dpend, s->drafts + dfed, accepted - dfed)) {
            return lmc_err(LMC_ERR_NOMEM, "speculative: out of memory");
        }
    }
    if (!lmc_ivec_push(&s->dpend, next)) return lmc_err(LMC_ERR_NOMEM, "speculative: out of memory");
    *y = next;
    return LMC_OK;
}

lmc_status lmc_speculative_loop(lmc_model *target, lmc_kv_cache *kv, lmc_model *draft,
                                lmc_kv_cache *draft_kv, const int32_t *context,
                                size_t n_context, const int32_t *feed, size_t n_feed,
                                const lmc_gen_params *p, lmc_emitter *e, lmc_gen_stats *stt) {
    if (n_feed == 0) return lmc_err(LMC_ERR_INVALID_ARG, "generate: the prompt is empty");
    if (p->grammar)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "generate: constrained decoding with a draft model is not supported");
    if (p->num_draft_tokens == 0 || p->num_draft_tokens > 64)
        return lmc_err(LMC_ERR_INVALID_ARG, "speculative: num_draft_tokens %zu must be in [1, 64]",
                       p->num_draft_tokens);
    if (lmc_kv_cache_len(kv) != lmc_kv_cache_len(draft_kv))
        return lmc_err(LMC_ERR_STATE,
                       "speculative: target cache holds %zu tokens but the draft cache %zu",
                       lmc_kv_cache_len(kv), lmc_kv_cache_len(draft_kv));
    spec_state s = {.target = target, .draft = draft, .kv = kv, .dkv = draft_kv};
    int64_t V = lmc_model_vocab(target), Vd = lmc_model_vocab(draft);
    if (V <= 0 || Vd <= 0)
        return lmc_err(LMC_ERR_STATE, "speculative: vocabulary sizes %lld / %lld", (long long)V,
                       (long long)Vd);
    s.V = (size_t)V;
    s.Vd = (size_t)Vd;
    for (size_t i = 0; i < n_feed; i++)
        if (feed[i] < 0 || (size_t)feed[i] >= s.V || (size_t)feed[i] >= s.Vd)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "speculative: prompt token %zu = %d is outside the vocabulary", i,
                           feed[i]);
    lmc_status st = lmc_gen_fit_context(target, p, lmc_kv_cache_len(kv), n_feed, e);
    if (st) return st;
    st = lmc_sampler_new(&p->sampler, s.V, &s.ts);
    if (!st) st = lmc_sampler_new(&p->sampler, s.Vd, &s.ds);
    if (st) goto done;
    s.tlog = malloc((p->num_draft_tokens + 1) * s.V * sizeof *s.tlog);
    s.dlog = malloc(s.Vd * sizeof *s.dlog);
    s.drafts = malloc(p->num_draft_tokens * sizeof *s.drafts);
    if (!s.tlog || !s.dlog || !s.drafts || !lmc_ivec_append(&s.hist, context, n_context) ||
        !lmc_ivec_append(&s.hist, feed, n_feed)) {
        st = lmc_err(LMC_ERR_NOMEM, "speculative: out of memory");
        goto done;
    }
    /* prefill both models; the target's last logits give the first token */
    double t0 = lmc_now_s();
    st = lmc_prefill(target, kv, feed, n_feed, p, s.tlog);
    if (st) goto done;
    st = draft_feed(&s, feed, n_feed, p);
    if (st) goto done;
    double t1 = lmc_now_s();
    e->prompt_tps = t1 > t0 ? (double)n_feed / (t1 - t0) : 0.0;
    if (stt) stt->prefill_tokens = n_feed;
    if (e->max_tokens == 0) {
        e->finished = true;
        e->reason = LMC_FINISH_LENGTH;
        goto done;
    }
    int32_t y;
    float lp;
    st = lmc_sampler_sample(s.ts, s.tlog, s.hist.v, s.hist.n, &y, &lp);
    if (st) goto done;
    st = lmc_emitter_token(e, y, lp, s.tlog, s.V, lmc_sampler_top_logprobs(s.ts), false);
    if (st) goto done;
    if (!lmc_ivec_push(&s.hist, y) || !lmc_ivec_push(&s.dpend, y)) {
        st = lmc_err(LMC_ERR_NOMEM, "speculative: out of memory");
        goto done;
    }
    while (!e->finished) {
        if ((st = lmc_gen_check_cancel(p, "decode step", e->produced))) break;
        st = spec_round(&s, p, e, &y, stt);
        if (st) break;
    }
done:
    lmc_emitter_fill_stats(e, stt);
    lmc_sampler_free(s.ts);
    lmc_sampler_free(s.ds);
    free(s.tlog);
    free(s.dlog);
    free(s.drafts);
    lmc_ivec_free(&s.hist);
    lmc_ivec_free(&s.dpend);
    return st;
}
