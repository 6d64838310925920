/* Shared helpers of the LoRA tests: golden files written by
 * tests/oracle/lora_goldens.py (transformers + PEFT) and error measures. */
#ifndef LMC_TEST_LORA_UTIL_H
#define LMC_TEST_LORA_UTIL_H
#include "base/error.h"
#include "check.h"
#include "formats/safetensors.h"
#include "lmc.h"
#include "train/lora.h"
#include "train_test_util.h"

/* Max |a - b| over max |b| (b the reference). */
__attribute__((unused)) static double rel_err(const float *a, const float *b, size_t n) {
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]), r = fabs((double)b[i]);
        num = d > num ? d : num;
        den = r > den ? r : den;
    }
    return den > 0 ? num / den : num;
}

__attribute__((unused)) static const char *lt_model_dir(const char *name) {
    static char bufs[4][1024];
    static int slot;
    char *p = bufs[slot++ % 4];
    snprintf(p, 1024, "%s/tests/golden/models/%s", tt_root(), name);
    return p;
}

__attribute__((unused)) static lmc_st_file *lt_golden(const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/tests/golden/train/%s.safetensors", tt_root(), name);
    lmc_st_file *f = NULL;
    if (lmc_st_open(p, &f)) CHECK_SKIP("%s: %s", p, lmc_last_error());
    return f;
}

__attribute__((unused)) static const char *lt_meta(lmc_st_file *f, const char *key) {
    const char *v = lmc_st_metadata(f, key);
    if (!v) {
        fprintf(stderr, "golden metadata '%s' missing\n", key);
        exit(1);
    }
    return v;
}

/* Parse "a,b,c" of size_t into out (returns count). */
__attribute__((unused)) static size_t lt_list(const char *s, size_t *out, size_t cap) {
    size_t n = 0;
    while (*s && n < cap) {
        out[n++] = (size_t)strtoull(s, NULL, 10);
        const char *c = strchr(s, ',');
        if (!c) break;
        s = c + 1;
    }
    return n;
}

/* Float tensor `prefix<key>` of the golden file (NULL when absent). */
__attribute__((unused)) static const float *lt_tensor(lmc_st_file *f, const char *prefix, const char *key, size_t *n) {
    char name[320];
    snprintf(name, sizeof name, "%s%s", prefix, key);
    const lmc_tensor_view *t = lmc_st_find(f, name);
    if (!t || t->dtype != LMC_DT_F32) return NULL;
    if (n) *n = (size_t)t->numel;
    return (const float *)t->data;
}

/* Options matching a golden case. */
__attribute__((unused)) static void lt_options(lmc_st_file *g, lmc_lora_options *o) {
    lmc_lora_options_init(o);
    o->rank = atoi(lt_meta(g, "r"));
    o->alpha = (float)atof(lt_meta(g, "alpha"));
    o->target_modules = lt_meta(g, "targets");
    o->num_layers = atoi(lt_meta(g, "num_layers"));
    o->learning_rate = (float)atof(lt_meta(g, "lr"));
    o->beta1 = (float)atof(lt_meta(g, "beta1"));
    o->beta2 = (float)atof(lt_meta(g, "beta2"));
    o->eps = (float)atof(lt_meta(g, "eps"));
    o->weight_decay = (float)atof(lt_meta(g, "weight_decay"));
    o->max_seq_length = 4096;
}

/* Put the golden's init.* values into every adapter; false if one is missing. */
__attribute__((unused)) static bool lt_set_init(lmc_lora_net *net, lmc_st_file *g) {
    char key[256];
    for (size_t i = 0; i < net->n_ad; i++) {
        lmc_lora_adapter *a = &net->ad[i];
        for (int b = 0; b < 2; b++) {
            lmc_lora_key(a, b, key, sizeof key);
            size_t n = 0;
            const float *v = lt_tensor(g, "init.", key, &n);
            size_t want = (size_t)net->shape.rank * (size_t)(b ? a->out : a->in);
            if (!v || n != want) {
                fprintf(stderr, "golden lacks init.%s (or its size differs)\n", key);
                return false;
            }
            memcpy(b ? a->B : a->A, v, n * sizeof(float));
        }
    }
    return true;
}

#endif
