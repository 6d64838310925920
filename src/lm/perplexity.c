/* Sliding-window perplexity (lmc_perplexity_ids / _text in lmc.h). Each
 * window runs on a fresh KV cache in chunks, so only CHUNK rows of logits
 * are held at a time; log-softmax is taken in double. */
#include "base/error.h"
#include "lm/context.h"
#include <math.h>
#include <stdlib.h>

#define CHUNK 64

/* Sum over window positions [lo, hi) of -log p(ids[t] | ids[<t]) where the
 * model is fed window ids[0..wlen) from an empty cache. */
static lmc_status window_chunks(lmc_model *m, lmc_kv_cache *kv, const int32_t *w, size_t wlen,
                                size_t lo, float *logits, double *sum) {
    size_t vocab = (size_t)lmc_model_vocab(m);
    *sum = 0;
    lmc_kv_cache_clear(kv);
    /* Row r of a chunk fed at position p predicts token p + r + 1. */
    for (size_t p = 0; p + 1 < wlen; p += CHUNK) {
        size_t n = wlen - 1 - p < CHUNK ? wlen - 1 - p : CHUNK;
        lmc_status st = lmc_model_forward(m, kv, w + p, n, logits, true);
        if (st) return st;
        for (size_t r = 0; r < n; r++) {
            size_t t = p + r + 1;
            if (t < lo) continue;
            const float *row = logits + r * vocab;
            if (w[t] < 0 || (size_t)w[t] >= vocab)
                return lmc_err(LMC_ERR_INVALID_ARG,
                               "perplexity: token id %d at position %zu is outside the "
                               "vocabulary (%zu)",
                               w[t], t, vocab);
            double mx = row[0], z = 0;
            for (size_t v = 1; v < vocab; v++) mx = row[v] > mx ? row[v] : mx;
            for (size_t v = 0; v < vocab; v++) z += exp((double)row[v] - mx);
            *sum += mx + log(z) - (double)row[w[t]];
        }
    }
    return LMC_OK;
}

/* longrope picks its table as one forward of the whole window would. */
static lmc_status window_nll(lmc_model *m, lmc_kv_cache *kv, const int32_t *w, size_t wlen,
                             size_t lo, float *logits, double *sum) {
    kv->rope_len = wlen - 1;
    lmc_status st = window_chunks(m, kv, w, wlen, lo, logits, sum);
    kv->rope_len = 0;
    return st;
}

lmc_status lmc_perplexity_ids(lmc_context *ctx, const int32_t *ids, size_t n, size_t context,
                              size_t stride, lmc_progress_fn progress, void *user,
                              lmc_perplexity_result *out) {
    if (!ctx || !ids || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "perplexity: context, ids and result are required");
    if (context < 2 || stride < 1 || stride > context)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "perplexity: need context >= 2 and 1 <= stride <= context (got context "
                       "%zu, stride %zu)",
                       context, stride);
    if (n < 2)
        return lmc_err(LMC_ERR_INVALID_ARG, "perplexity: the text has %zu token%s; at least 2 "
                       "are needed", n, n == 1 ? "" : "s");
    lmc_model *m = lmc_context_model(ctx);
    int64_t maxpos = lmc_context_config(ctx)->max_position_embeddings;
    if (maxpos > 0 && context > (size_t)maxpos)
        return lmc_err(LMC_ERR_LIMIT, "perplexity: context %zu exceeds the model's "
                       "max_position_embeddings (%lld)", context, (long long)maxpos);
    float *logits = malloc((size_t)CHUNK * (size_t)lmc_model_vocab(m) * sizeof *logits);
    lmc_kv_cache *kv = NULL;
    lmc_status st = logits ? lmc_kv_cache_new(m, &kv)
                           : lmc_err(LMC_ERR_NOMEM, "perplexity: out of memory");
    double total = 0;
    size_t weight = 0, windows = 0, prev_end = 0, n_windows = (n + stride - 1) / stride;
    for (size_t begin = 0; !st && prev_end < n; begin += stride) {
        size_t end = begin + context < n ? begin + context : n, wlen = end - begin;
        size_t trg = end - prev_end, lo = wlen - trg < 1 ? 1 : wlen - trg;
        double sum;
        if ((st = window_nll(m, kv, ids + begin, wlen, lo, logits, &sum))) break;
        /* The recipe weights the window's mean by its new tokens minus one. */
        if (trg > 1) total += sum / (double)(wlen - lo) * (double)(trg - 1);
        weight += trg - 1;
        prev_end = end;
        windows++;
        if (progress && !progress(user, "perplexity", end == n ? 1.0 : (double)windows / n_windows))
            st = lmc_err(LMC_ERR_CANCELLED, "perplexity: cancelled");
    }
    lmc_kv_cache_free(kv);
    free(logits);
    if (st) return st;
    if (!weight)
        return lmc_err(LMC_ERR_INVALID_ARG, "perplexity: no token is scored (text of %zu tokens)",
                       n);
    out->nll = total / (double)weight;
    out->perplexity = exp(out->nll);
    out->n_tokens = n;
    out->n_scored = weight;
    out->n_windows = windows;
    return LMC_OK;
}

lmc_status lmc_perplexity_text(lmc_context *ctx, const char *text, size_t len, size_t context,
                               size_t stride, lmc_progress_fn progress, void *user,
                               lmc_perplexity_result *out) {
    if (!ctx || !text || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "perplexity: context, text and result are required");
    if (!context) {
        int64_t maxpos = lmc_context_config(ctx)->max_position_embeddings;
        if (maxpos < 2)
            return lmc_err(LMC_ERR_INVALID_ARG, "perplexity: the model's config has no "
                           "max_position_embeddings; give a context length");
        context = (size_t)maxpos;
    }
    if (!stride) stride = context;
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_status st = lmc_context_encode(ctx, text, len, true, &ids, &n);
    if (!st) st = lmc_perplexity_ids(ctx, ids, n, context, stride, progress, user, out);
    lmc_free(ids);
    return st;
}
