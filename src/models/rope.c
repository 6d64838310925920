/* Rotary frequencies and the yarn attention factor for the llama family.
 * The default, linear and llama3 tables are computed in double and rounded
 * once; yarn follows transformers' fp32 arithmetic step by step, since its
 * blend of two tables would otherwise round differently. */
#include "models/rope.h"
#include "base/error.h"
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* yarn's beta_fast / beta_slow after their defaults (absent or 0). */
static double beta_fast(const lmc_model_config *c) {
    return c->rope_beta_fast != 0.0 ? c->rope_beta_fast : 32.0;
}
static double beta_slow(const lmc_model_config *c) {
    return c->rope_beta_slow != 0.0 ? c->rope_beta_slow : 1.0;
}

/* The yarn paper's magnitude correction 0.1 * m * ln(scale) + 1. */
static double yarn_mscale(double scale, double m) {
    return scale <= 1.0 ? 1.0 : 0.1 * m * log(scale) + 1.0;
}

/* An explicit attention_factor, else the ratio of the two mscales when
 * both mscale and mscale_all_dim are given (nonzero), else mscale(factor). */
static double yarn_attn_factor(const lmc_model_config *c) {
    if (!isnan(c->rope_attention_factor)) return c->rope_attention_factor;
    double f = c->rope_factor;
    if (c->rope_mscale != 0.0 && c->rope_mscale_all_dim != 0.0)
        return yarn_mscale(f, c->rope_mscale) / yarn_mscale(f, c->rope_mscale_all_dim);
    return yarn_mscale(f, 1.0);
}

static lmc_status check_yarn(const lmc_model_config *c) {
    if (!(c->rope_factor > 0.0) || !isfinite(c->rope_factor))
        return lmc_err(LMC_ERR_FORMAT, "config.json: yarn rope factor must be positive, got %g",
                       c->rope_factor);
    if (c->rope_original_max_position <= 0)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: yarn rope original_max_position_embeddings must be "
                       "positive, got %" PRId64,
                       c->rope_original_max_position);
    if (!(c->rope_theta > 1.0))
        return lmc_err(LMC_ERR_FORMAT, "config.json: yarn rope needs rope_theta > 1, got %g",
                       c->rope_theta);
    double bf = beta_fast(c), bs = beta_slow(c);
    if (!(bf > 0.0) || !isfinite(bf) || !(bs > 0.0) || !isfinite(bs))
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: yarn rope beta_fast (%g) and beta_slow (%g) must be "
                       "positive",
                       bf, bs);
    if (!(bf > bs))
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: yarn rope beta_fast (%g) must be greater than beta_slow (%g)",
                       bf, bs);
    if (!isnan(c->rope_attention_factor) &&
        (!(c->rope_attention_factor > 0.0) || !isfinite(c->rope_attention_factor)))
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: yarn rope attention_factor must be positive, got %g",
                       c->rope_attention_factor);
    if (!isfinite(c->rope_mscale) || !isfinite(c->rope_mscale_all_dim))
        return lmc_err(LMC_ERR_FORMAT, "config.json: yarn rope mscale and mscale_all_dim must be "
                                       "finite numbers");
    double af = yarn_attn_factor(c);
    if (!(af > 0.0) || !isfinite(af) || af > 1e3)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: yarn rope attention factor from factor %g, mscale %g and "
                       "mscale_all_dim %g is %g, outside (0, 1000]",
                       c->rope_factor, c->rope_mscale, c->rope_mscale_all_dim, af);
    return LMC_OK;
}

/* longrope's factor for the default attention factor: the given one, else
 * max / original positions (transformers 5; config.c resolves it). */
static double longrope_attn_factor(const lmc_model_config *c) {
    if (!isnan(c->rope_attention_factor)) return c->rope_attention_factor;
    double f = c->rope_factor;
    if (f <= 1.0) return 1.0;
    return sqrt(1.0 + log(f) / log((double)c->rope_original_max_position));
}

static lmc_status check_longrope(const lmc_model_config *c) {
    if (c->rope_original_max_position <= 1)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: longrope rope needs original_max_position_embeddings > 1, "
                       "got %" PRId64,
                       c->rope_original_max_position);
    if (!(c->rope_factor > 0.0) || !isfinite(c->rope_factor))
        return lmc_err(LMC_ERR_FORMAT, "config.json: longrope rope factor must be positive, got %g",
                       c->rope_factor);
    double af = longrope_attn_factor(c);
    if (!(af > 0.0) || !isfinite(af) || af > 1e3)
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: longrope rope attention factor %g is outside (0, 1000]", af);
    return LMC_OK;
}

/* transformers' longrope table in fp32: 1 / (factor[i] * base^(2i/dim)). */
static void longrope_freqs(const lmc_model_config *c, const float *factors, float *f,
                           size_t half) {
    float dim = (float)c->head_dim, base = (float)c->rope_theta;
    for (size_t i = 0; i < half; i++) {
        float pos = (float)pow((double)base, (double)((float)(2 * i) / dim));
        f[i] = 1.0f / (factors[i] * pos);
    }
}

bool lmc_rope_type_computed(const char *type) {
    static const char *const types[] = {"", "default", "linear", "llama3", "yarn", "longrope"};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (!strcmp(type, types[i])) return true;
    return false;
}

lmc_status lmc_rope_check(const lmc_model_config *c) {
    const char *rt = c->rope_type;
    bool yarn = !strcmp(rt, "yarn"), llama3 = !strcmp(rt, "llama3");
    if (!lmc_rope_type_computed(rt))
        return lmc_err(LMC_ERR_UNSUPPORTED, "config.json: rope type '%s' is not supported (%s)",
                       rt, LMC_ROPE_TYPES);
    if (yarn) return check_yarn(c);
    if (!strcmp(rt, "longrope")) return check_longrope(c);
    if ((!strcmp(rt, "linear") || llama3) && !(c->rope_factor > 0.0))
        return lmc_err(LMC_ERR_FORMAT, "config.json: %s rope factor must be positive, got %g", rt,
                       c->rope_factor);
    if (llama3 && (!(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
                   !(c->rope_low_freq_factor > 0.0) || c->rope_original_max_position <= 0))
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: llama3 rope needs high_freq_factor > low_freq_factor > 0 "
                       "and original_max_position_embeddings > 0");
    return LMC_OK;
}

/* transformers' _compute_yarn_parameters in fp32: each table entry blends
 * the interpolated (divided by factor) and extrapolated (unchanged)
 * frequency by a linear ramp over the dimensions between the correction
 * bounds of beta_fast and beta_slow rotations in the original context. */
static void yarn_freqs(const lmc_model_config *c, float *f, size_t half) {
    double dim = (double)c->head_dim, base = c->rope_theta;
    double ctx = (double)c->rope_original_max_position;
    double lo = dim * log(ctx / (beta_fast(c) * 2.0 * M_PI)) / (2.0 * log(base));
    double hi = dim * log(ctx / (beta_slow(c) * 2.0 * M_PI)) / (2.0 * log(base));
    if (c->rope_truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    if (lo < 0.0) lo = 0.0;
    if (hi > dim - 1.0) hi = dim - 1.0;
    if (lo == hi) hi += 0.001; /* keeps the ramp finite */
    float flo = (float)lo, span = (float)(hi - lo), factor = (float)c->rope_factor;
    for (size_t i = 0; i < half; i++) {
        float expo = (float)(2 * i) / (float)dim;
        float pos = (float)pow((double)(float)base, (double)expo);
        float extra = 1.0f / pos, inter = 1.0f / (factor * pos);
        float ramp = ((float)i - flo) / span;
        ramp = ramp < 0.0f ? 0.0f : ramp > 1.0f ? 1.0f : ramp;
        float keep = 1.0f - ramp; /* share of the unscaled frequency */
        float a = inter * (1.0f - keep), b = extra * keep;
        f[i] = a + b;
    }
}

lmc_status lmc_rope_init(const lmc_model_config *c, lmc_rope *r) {
    memset(r, 0, sizeof *r);
    lmc_status st = lmc_rope_check(c);
    if (st) return st;
    if (c->head_dim <= 0 || c->head_dim % 2 || !(c->rope_theta > 0.0))
        return lmc_err(LMC_ERR_FORMAT,
                       "config.json: rope needs an even positive head_dim and rope_theta > 0");
    size_t half = (size_t)c->head_dim / 2;
    float *f = malloc(half * sizeof(float));
    if (!f) return lmc_err(LMC_ERR_NOMEM, "rope: no memory for %zu frequencies", half);
    const char *t = c->rope_type;
    r->attn_factor = 1.0f;
    if (!strcmp(t, "yarn")) {
        yarn_freqs(c, f, half);
        r->attn_factor = (float)yarn_attn_factor(c);
    } else if (!strcmp(t, "longrope")) {
        if ((size_t)c->rope_n_factors != half) {
            free(f);
            return lmc_err(LMC_ERR_FORMAT,
                           "config.json: longrope short_factor and long_factor have %d entries; "
                           "%zu rotated values need %zu",
                           c->rope_n_factors, 2 * half, half);
        }
        float *fl = malloc(half * sizeof(float));
        if (!fl) {
            free(f);
            return lmc_err(LMC_ERR_NOMEM, "rope: no memory for %zu frequencies", half);
        }
        longrope_freqs(c, c->rope_short_factor, f, half);
        longrope_freqs(c, c->rope_long_factor, fl, half);
        r->inv_freq_long = fl;
        r->long_after = c->rope_original_max_position;
        r->attn_factor = (float)longrope_attn_factor(c);
    } else {
        for (size_t i = 0; i < half; i++)
            f[i] = (float)(1.0 / pow(c->rope_theta, (double)(2 * i) / (double)c->head_dim));
    }
    if (!strcmp(t, "linear")) {
        for (size_t i = 0; i < half; i++) f[i] = (float)(f[i] / c->rope_factor);
    } else if (!strcmp(t, "llama3")) {
        /* Long wavelengths are slowed by `factor`, short ones kept, and the
         * band between low_freq and high_freq wavelengths interpolated. */
        double old_ctx = (double)c->rope_original_max_position;
        double low_wl = old_ctx / c->rope_low_freq_factor;
        double high_wl = old_ctx / c->rope_high_freq_factor;
        for (size_t i = 0; i < half; i++) {
            double inv = f[i], wl = 2.0 * M_PI / inv;
            double scaled = wl > low_wl ? inv / c->rope_factor : inv;
            if (!(wl < high_wl) && !(wl > low_wl)) {
                double smooth = (old_ctx / wl - c->rope_low_freq_factor) /
                                (c->rope_high_freq_factor - c->rope_low_freq_factor);
                scaled = (1.0 - smooth) * scaled / c->rope_factor + smooth * scaled;
            }
            f[i] = (float)scaled;
        }
    }
    r->inv_freq = f;
    r->n = half;
    return LMC_OK;
}

void lmc_rope_free(lmc_rope *r) {
    if (!r) return;
    free(r->inv_freq);
    free(r->inv_freq_long);
    r->inv_freq = r->inv_freq_long = NULL;
    r->n = 0;
}
