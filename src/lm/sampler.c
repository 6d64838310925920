/* Logits processors (bias, repetition, presence and frequency penalties)
 * and the sampler (greedy or
 * temperature draw restricted by top-p / min-p / top-k masks). */
#include "lm/sampler.h"
#include "base/error.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

struct lmc_sampler {
    lmc_sampler_params p;
    size_t vocab;
    int32_t *bias_ids; /* owned copies of the borrowed bias arrays */
    float *bias_vals;
    lmc_rng rng;
    /* scratch, vocab entries each */
    struct ranked {
        float v;
        int32_t id;
    } *order;
    bool *keep;
    double *probs;
};

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void lmc_rng_seed(lmc_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lmc_rng_next(lmc_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double lmc_rng_uniform(lmc_rng *r) { return (double)(lmc_rng_next(r) >> 11) * 0x1.0p-53; }

void lmc_sampler_params_default(lmc_sampler_params *p) {
    memset(p, 0, sizeof *p);
    p->temperature = 0.0f;
    p->top_p = 1.0f;
    p->min_tokens_to_keep = 1;
    p->repetition_penalty = 1.0f;
    p->repetition_context_size = 20;
    p->penalty_context_size = 20;
}

lmc_status lmc_sampler_new(const lmc_sampler_params *p, size_t vocab, lmc_sampler **out) {
    *out = NULL;
    if (!p) return lmc_err(LMC_ERR_INVALID_ARG, "sampler: parameters are NULL");
    if (vocab == 0 || vocab > (size_t)INT32_MAX)
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: vocabulary size %zu out of range", vocab);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: temperature %g must be >= 0", p->temperature);
    if (!(p->top_p >= 0.0f && p->top_p <= 1.0f))
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: top_p %g must be in [0, 1]", p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: min_p %g must be in [0, 1]", p->min_p);
    if (p->top_k < 0)
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: top_k %d must be >= 0", p->top_k);
    if (p->min_tokens_to_keep < 0)
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: min_tokens_to_keep %d must be >= 0",
                       p->min_tokens_to_keep);
    if (!(p->repetition_penalty >= 0.0f) || !isfinite(p->repetition_penalty))
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: repetition_penalty %g must be >= 0",
                       p->repetition_penalty);
    if (p->repetition_context_size < 0)
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: repetition_context_size %d must be >= 0",
                       p->repetition_context_size);
    if (!isfinite(p->presence_penalty) || !isfinite(p->frequency_penalty))
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "sampler: presence_penalty %g and frequency_penalty %g must be finite",
                       p->presence_penalty, p->frequency_penalty);
    if (p->penalty_context_size < 0)
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: penalty_context_size %d must be >= 0",
                       p->penalty_context_size);
    if (p->top_logprobs < 0 || p->top_logprobs > LMC_MAX_TOP_LOGPROBS)
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: top_logprobs %d must be in [0, %d]",
                       p->top_logprobs, LMC_MAX_TOP_LOGPROBS);
    if (p->n_logit_bias && (!p->logit_bias_ids || !p->logit_bias_values))
        return lmc_err(LMC_ERR_INVALID_ARG, "sampler: logit bias arrays are NULL");
    for (size_t i = 0; i < p->n_logit_bias; i++) {
        if (p->logit_bias_ids[i] < 0 || (size_t)p->logit_bias_ids[i] >= vocab)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "sampler: logit bias entry %zu: token %d outside vocabulary of %zu",
                           i, p->logit_bias_ids[i], vocab);
        if (isnan(p->logit_bias_values[i]))
            return lmc_err(LMC_ERR_INVALID_ARG, "sampler: logit bias entry %zu is NaN", i);
    }
    lmc_sampler *s = calloc(1, sizeof *s);
    if (!s) return lmc_err(LMC_ERR_NOMEM, "sampler: out of memory");
    s->p = *p;
    s->vocab = vocab;
    s->order = malloc(vocab * sizeof *s->order);
    s->keep = malloc(vocab * sizeof *s->keep);
    s->probs = malloc(vocab * sizeof *s->probs);
    if (p->n_logit_bias) {
        s->bias_ids = malloc(p->n_logit_bias * sizeof *s->bias_ids);
        s->bias_vals = malloc(p->n_logit_bias * sizeof *s->bias_vals);
    }
    if (!s->order || !s->keep || !s->probs ||
        (p->n_logit_bias && (!s->bias_ids || !s->bias_vals))) {
        lmc_sampler_free(s);
        return lmc_err(LMC_ERR_NOMEM, "sampler: out of memory for a vocabulary of %zu", vocab);
    }
    if (p->n_logit_bias) {
        memcpy(s->bias_ids, p->logit_bias_ids, p->n_logit_bias * sizeof *s->bias_ids);
        memcpy(s->bias_vals, p->logit_bias_values, p->n_logit_bias * sizeof *s->bias_vals);
    }
    s->p.logit_bias_ids = s->bias_ids;
    s->p.logit_bias_values = s->bias_vals;
    lmc_rng_seed(&s->rng, p->seed);
    *out = s;
    return LMC_OK;
}

void lmc_sampler_free(lmc_sampler *s) {
    if (!s) return;
    free(s->bias_ids);
    free(s->bias_vals);
    free(s->order);
    free(s->keep);
    free(s->probs);
    free(s);
}

static bool has_count_penalty(const lmc_sampler *s) {
    return (s->p.presence_penalty != 0.0f || s->p.frequency_penalty != 0.0f) &&
           s->p.penalty_context_size > 0;
}

bool lmc_sampler_is_greedy(const lmc_sampler *s) {
    return s->p.temperature == 0.0f && s->p.n_logit_bias == 0 &&
           (s->p.repetition_penalty == 0.0f || s->p.repetition_penalty == 1.0f) &&
           !has_count_penalty(s);
}
size_t lmc_sampler_vocab(const lmc_sampler *s) { return s->vocab; }
int32_t lmc_sampler_top_logprobs(const lmc_sampler *s) { return s->p.top_logprobs; }

/* Descending by value, ties by lower id, so masks are deterministic. */
static int cmp_desc(const void *a, const void *b) {
    const struct ranked *x = a, *y = b;
    if (x->v > y->v) return -1;
    if (x->v < y->v) return 1;
    return (x->id > y->id) - (x->id < y->id);
}

void lmc_top_n(const float *logprobs, size_t vocab, size_t n, int32_t *ids, float *vals) {
    size_t k = 0;
    for (size_t i = 0; i < vocab; i++) {
        float v = logprobs[i];
        if (isnan(v)) continue;
        /* insertion into a short sorted list */
        size_t pos = k;
        while (pos > 0 && vals[pos - 1] < v) pos--;
        if (pos >= n) continue;
        size_t end = k < n ? k : n - 1;
        for (size_t m = end; m > pos; m--) {
            ids[m] = ids[m - 1];
            vals[m] = vals[m - 1];
        }
        ids[pos] = (int32_t)i;
        vals[pos] = v;
        if (k < n) k++;
    }
    for (; k < n; k++) {
        ids[k] = -1;
        vals[k] = -INFINITY;
    }
}

static void apply_processors(const lmc_sampler *s, float *logits, const int32_t *recent,
                             size_t n_recent) {
    for (size_t i = 0; i < s->p.n_logit_bias; i++) logits[s->bias_ids[i]] += s->bias_vals[i];
    float pen = s->p.repetition_penalty;
    if (pen > 0.0f && pen != 1.0f && recent && s->p.repetition_context_size > 0) {
        size_t ctx = (size_t)s->p.repetition_context_size;
        size_t start = n_recent > ctx ? n_recent - ctx : 0;
        /* each distinct token is penalised once, however often it recurs */
        bool *seen = s->keep;
        for (size_t i = start; i < n_recent; i++) {
            int32_t t = recent[i];
            if (t >= 0 && (size_t)t < s->vocab) seen[t] = false;
        }
        for (size_t i = start; i < n_recent; i++) {
            int32_t t = recent[i];
            if (t < 0 || (size_t)t >= s->vocab || seen[t]) continue;
            seen[t] = true;
            logits[t] = logits[t] < 0 ? logits[t] * pen : logits[t] / pen;
        }
    }
    if (has_count_penalty(s) && recent) {
        size_t ctx = (size_t)s->p.penalty_context_size;
        size_t start = n_recent > ctx ? n_recent - ctx : 0;
        /* counts in the probability scratch, which the draw rewrites later */
        double *count = s->probs;
        for (size_t i = start; i < n_recent; i++) {
            int32_t t = recent[i];
            if (t >= 0 && (size_t)t < s->vocab) count[t] = 0.0;
        }
        for (size_t i = start; i < n_recent; i++) {
            int32_t t = recent[i];
            if (t >= 0 && (size_t)t < s->vocab) count[t] += 1.0;
        }
        for (size_t i = start; i < n_recent; i++) {
            int32_t t = recent[i];
            if (t < 0 || (size_t)t >= s->vocab || count[t] == 0.0) continue;
            logits[t] -= (float)(s->p.presence_penalty + count[t] * s->p.frequency_penalty);
            count[t] = 0.0; /* once per distinct token */
        }
    }
}

static void log_softmax(float *x, size_t n) {
    float mx = -INFINITY;
    for (size_t i = 0; i < n; i++)
        if (x[i] > mx) mx = x[i];
    if (!isfinite(mx)) return; /* all -inf (or inf): leave as is */
    double sum = 0;
    for (size_t i = 0; i < n; i++) sum += exp((double)x[i] - mx);
    float lse = mx + (float)log(sum);
    for (size_t i = 0; i < n; i++) x[i] -= lse;
}

static int32_t argmax(const float *x, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
    return (int32_t)best;
}

/* Each mask is computed on the same (unmasked) distribution; the result is
 * their intersection, which always contains the most likely token. */
static void compute_mask(lmc_sampler *s, const float *lp, bool *keep) {
    size_t V = s->vocab;
    for (size_t i = 0; i < V; i++) keep[i] = !isnan(lp[i]) && lp[i] > -INFINITY;
    bool use_p = s->p.top_p > 0.0f && s->p.top_p < 1.0f;
    bool use_k = s->p.top_k > 0 && (size_t)s->p.top_k < V;
    bool use_min = s->p.min_p > 0.0f;
    if (!use_p && !use_k && !use_min) return;
    /* only drawable tokens are ranked (NaN would break the ordering) */
    size_t n = 0;
    float best = -INFINITY;
    for (size_t i = 0; i < V; i++)
        if (keep[i] && lp[i] > best) best = lp[i];
    /* Fast path: tokens more than CUT below the best carry at most
     * V * e^-CUT of the mass (< 2e-8 for any vocabulary here), so none of
     * them can pass a top-p below 1 - 1e-6 or a min-p above e^-CUT, and they
     * rank after every candidate for top-k; sort only the candidates when
     * that argument holds for every active filter. */
    const float CUT = 30.0f;
    for (size_t i = 0; i < V; i++)
        if (keep[i] && lp[i] >= best - CUT) s->order[n++] = (struct ranked){lp[i], (int32_t)i};
    bool fast = (!use_p || s->p.top_p < 1.0f - 1e-6f) &&
                (!use_k || n >= (size_t)s->p.top_k) &&
                (!use_min || (logf(s->p.min_p) > -CUT && n >= (size_t)s->p.min_tokens_to_keep));
    if (fast) {
        for (size_t i = 0; i < V; i++)
            if (keep[i] && lp[i] < best - CUT) keep[i] = false;
    } else {
        n = 0;
        for (size_t i = 0; i < V; i++)
            if (keep[i]) s->order[n++] = (struct ranked){lp[i], (int32_t)i};
    }
    if (n == 0) return;
    qsort(s->order, n, sizeof *s->order, cmp_desc);
    float top = s->order[0].v;
    double mass_before = 0;
    float min_cut = use_min ? top + logf(s->p.min_p) : -INFINITY;
    for (size_t r = 0; r < n; r++) {
        int32_t t = s->order[r].id;
        bool k = true;
        /* top-p: kept while the mass strictly ahead of it is below top_p */
        if (use_p && !(mass_before < (double)s->p.top_p)) k = false;
        if (use_k && r >= (size_t)s->p.top_k) k = false;
        if (use_min && lp[t] < min_cut && r >= (size_t)s->p.min_tokens_to_keep) k = false;
        keep[t] = k;
        mass_before += exp((double)lp[t]);
    }
}

lmc_status lmc_sampler_mask(const lmc_sampler *s, const float *logprobs, bool *keep) {
    if (!s || !logprobs || !keep) return lmc_err(LMC_ERR_INVALID_ARG, "sampler_mask: NULL argument");
    compute_mask((lmc_sampler *)s, logprobs, keep);
    return LMC_OK;
}

lmc_status lmc_sampler_sample(lmc_sampler *s, float *logits, const int32_t *recent,
                              size_t n_recent, int32_t *token, float *logprob) {
    return lmc_sampler_sample_masked(s, logits, recent, n_recent, NULL, token, logprob);
}

lmc_status lmc_sampler_sample_masked(lmc_sampler *s, float *logits, const int32_t *recent,
                                     size_t n_recent, const uint32_t *allowed, int32_t *token,
                                     float *logprob) {
    if (!s || !logits || !token) return lmc_err(LMC_ERR_INVALID_ARG, "sampler: NULL argument");
    size_t V = s->vocab;
    apply_processors(s, logits, recent, n_recent);
    if (allowed)
        for (size_t i = 0; i < V; i++)
            if (!((allowed[i >> 5] >> (i & 31)) & 1u)) logits[i] = -INFINITY;
    log_softmax(logits, V);
    int32_t chosen;
    if (s->p.temperature == 0.0f) {
        chosen = argmax(logits, V);
        if (allowed && !((allowed[chosen >> 5] >> (chosen & 31)) & 1u))
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "sampler: no allowed token has a finite logit");
    } else {
        bool *keep = s->keep;
        compute_mask(s, logits, keep);
        float mx = -INFINITY;
        for (size_t i = 0; i < V; i++)
            if (keep[i] && logits[i] > mx) mx = logits[i];
        if (!isfinite(mx))
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "sampler: no token can be drawn (every logit is -inf or NaN)");
        double inv_t = 1.0 / s->p.temperature, sum = 0;
        for (size_t i = 0; i < V; i++) {
            s->probs[i] = keep[i] ? exp(((double)logits[i] - mx) * inv_t) : 0.0;
            sum += s->probs[i];
        }
        double u = lmc_rng_uniform(&s->rng) * sum, acc = 0;
        chosen = -1;
        for (size_t i = 0; i < V; i++) {
            if (!keep[i]) continue;
            acc += s->probs[i];
            chosen = (int32_t)i;
            if (u < acc) break;
        }
    }
    *token = chosen;
    if (logprob) *logprob = logits[chosen];
    return LMC_OK;
}

const char *lmc_finish_reason_str(lmc_finish_reason r) {
    switch (r) {
    case LMC_FINISH_STOP: return "stop";
    case LMC_FINISH_LENGTH: return "length";
    default: return "";
    }
}

void lmc_gen_params_default(lmc_gen_params *p) {
    memset(p, 0, sizeof *p);
    lmc_sampler_params_default(&p->sampler);
    p->max_tokens = 256;
    p->prefill_step = 512;
    p->num_draft_tokens = 5;
}
