/* Test helper: synthesize a tiny random-weight qwen3 / llama checkpoint
 * (config.json + model.safetensors) in a temp directory, paired with a real
 * tokenizer from .cache/assets/tokenizers, and load it as an lmc_context. */
#ifndef LMC_TESTS_LM_TINY_MODEL_H
#define LMC_TESTS_LM_TINY_MODEL_H
#include "base/file.h"
#include "formats/safetensors.h"
#include "lm/sampler.h"
#include "lmc.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    const char *model_type; /* "qwen3" or "llama" */
    int layers, hidden, heads, kv_heads, head_dim, inter;
    int64_t vocab;
    int eos; /* eos_token_id */
    uint64_t seed;
    int window; /* sliding_window (0 = full attention) */
} tiny_spec;

static inline float tiny_gauss(lmc_rng *r) {
    double u1 = lmc_rng_uniform(r), u2 = lmc_rng_uniform(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

static inline float *tiny_rand(lmc_rng *r, size_t n, float scale) {
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = tiny_gauss(r) * scale;
    return p;
}

static inline float *tiny_const(size_t n, float v) {
    float *p = malloc(n * sizeof *p);
    if (!p) return NULL;
    for (size_t i = 0; i < n; i++) p[i] = v;
    return p;
}

/* Each tensor draws from its own stream, so two specs with the same seed
 * share every tensor they both have (a 1-layer draft is the 2-layer
 * target minus its last layer). */
static inline uint64_t tiny_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Writes <dir>/config.json (with the config.json members in `extra`,
 * "\"key\": value, ...", when not NULL) and <dir>/model.safetensors.
 * Returns 0 on success. */
static inline int tiny_write_cfg(const char *dir, const tiny_spec *s, const char *extra) {
    char path[4200], cfg[4096];
    bool qk_norm = !strcmp(s->model_type, "qwen3");
    /* mistral is served by the llama architecture: no q/k norms */
    snprintf(cfg, sizeof cfg,
             "{\"model_type\":\"%s\",\"vocab_size\":%lld,\"hidden_size\":%d,"
             "\"intermediate_size\":%d,\"num_hidden_layers\":%d,\"num_attention_heads\":%d,"
             "\"num_key_value_heads\":%d,\"head_dim\":%d,\"max_position_embeddings\":4096,"
             "\"rms_norm_eps\":1e-6,\"rope_theta\":10000.0,\"tie_word_embeddings\":false,"
             "\"hidden_act\":\"silu\",\"torch_dtype\":\"float32\",\"eos_token_id\":%d}",
             s->model_type, (long long)s->vocab, s->hidden, s->inter, s->layers, s->heads,
             s->kv_heads, s->head_dim, s->eos);
    if (s->window > 0) {
        size_t l = strlen(cfg);
        snprintf(cfg + l - 1, sizeof cfg - l + 1, ",\"sliding_window\":%d}", s->window);
    }
    if (extra) {
        size_t l = strlen(cfg);
        snprintf(cfg + l - 1, sizeof cfg - l + 1, ",%s}", extra);
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (lmc_write_file_atomic(path, cfg, strlen(cfg))) return -1;

    lmc_rng r;
    lmc_rng_seed(&r, s->seed);
    size_t per_layer = qk_norm ? 11 : 9;
    size_t nt = 3 + per_layer * (size_t)s->layers;
    lmc_st_write_tensor *t = calloc(nt, sizeof *t);
    char (*names)[96] = calloc(nt, sizeof *names);
    float **bufs = calloc(nt, sizeof *bufs);
    if (!t || !names || !bufs) return -1;
    size_t k = 0;
    int H = s->hidden, hd = s->head_dim, q = s->heads * hd, kv = s->kv_heads * hd, I = s->inter;
#define ADD(nm, scale, isconst, d0, d1)                                             \
    do {                                                                            \
        snprintf(names[k], sizeof names[k], "%s", nm);                              \
        size_t n_ = (size_t)(d0) * (size_t)((d1) ? (d1) : 1);                       \
        lmc_rng_seed(&r, s->seed * 1000003u + tiny_hash(nm));                        \
        bufs[k] = (isconst) ? tiny_const(n_, scale) : tiny_rand(&r, n_, scale);     \
        t[k].name = names[k];                                                       \
        t[k].dtype = LMC_DT_F32;                                                    \
        t[k].ndim = (d1) ? 2 : 1;                                                   \
        t[k].shape[0] = (d0);                                                       \
        if (d1) t[k].shape[1] = (d1);                                               \
        t[k].data = bufs[k];                                                        \
        k++;                                                                        \
    } while (0)
    ADD("model.embed_tokens.weight", 0.25f, 0, s->vocab, H);
    char nm[96];
    for (int l = 0; l < s->layers; l++) {
#define L(suffix) (snprintf(nm, sizeof nm, "model.layers.%d.%s", l, suffix), nm)
        ADD(L("input_layernorm.weight"), 1.0f, 1, H, 0);
        ADD(L("post_attention_layernorm.weight"), 1.0f, 1, H, 0);
        ADD(L("self_attn.q_proj.weight"), 3.0f / sqrtf((float)H), 0, q, H);
        ADD(L("self_attn.k_proj.weight"), 3.0f / sqrtf((float)H), 0, kv, H);
        ADD(L("self_attn.v_proj.weight"), 1.0f / sqrtf((float)H), 0, kv, H);
        ADD(L("self_attn.o_proj.weight"), 2.0f / sqrtf((float)q), 0, H, q);
        if (qk_norm) {
            ADD(L("self_attn.q_norm.weight"), 1.0f, 1, hd, 0);
            ADD(L("self_attn.k_norm.weight"), 1.0f, 1, hd, 0);
        }
        ADD(L("mlp.gate_proj.weight"), 1.0f / sqrtf((float)H), 0, I, H);
        ADD(L("mlp.up_proj.weight"), 1.0f / sqrtf((float)H), 0, I, H);
        ADD(L("mlp.down_proj.weight"), 2.0f / sqrtf((float)I), 0, H, I);
#undef L
    }
    ADD("model.norm.weight", 1.0f, 1, H, 0);
    /* untied: with tied embeddings a random model mostly repeats its input */
    ADD("lm_head.weight", 1.0f, 0, s->vocab, H);
#undef ADD
    int rc = 0;
    for (size_t i = 0; i < k; i++)
        if (!bufs[i]) rc = -1;
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (!rc && lmc_st_write(path, t, k, NULL)) rc = -1;
    for (size_t i = 0; i < k; i++) free(bufs[i]);
    free(bufs);
    free(names);
    free(t);
    return rc;
}

static inline int tiny_write(const char *dir, const tiny_spec *s) {
    return tiny_write_cfg(dir, s, NULL);
}

/* The tiny models gain nothing from threads, and on a loaded machine
 * thread hand-offs would dominate the run time (callers may override). */
static inline void tiny_single_thread(void) { setenv("OMP_NUM_THREADS", "1", 0); }

/* Repo-relative asset path (LMC_SOURCE_DIR set by ctest). */
static inline void tiny_asset(char *out, size_t n, const char *rel) {
    const char *root = getenv("LMC_SOURCE_DIR");
    snprintf(out, n, "%s/%s", root && *root ? root : ".", rel);
}

/* mkdtemp under $TMPDIR (or /tmp). */
static inline int tiny_tmpdir(char *out, size_t n, const char *tag) {
    const char *base = getenv("TMPDIR");
    snprintf(out, n, "%s/lmc_%s_XXXXXX", base && *base ? base : "/tmp", tag);
    return mkdtemp(out) ? 0 : -1;
}

static inline void tiny_rmdir(const char *dir) {
    const char *files[] = {"config.json", "model.safetensors"};
    char p[4200];
    for (size_t i = 0; i < 2; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

/* Synthesize and load; exits 77 when the tokenizer assets are missing. */
static inline lmc_context *tiny_load_cfg(const char *dir, const tiny_spec *s,
                                         const char *tokenizer, const char *extra) {
    char tokdir[4096], tj[4200];
    tiny_asset(tokdir, sizeof tokdir, tokenizer);
    snprintf(tj, sizeof tj, "%s/tokenizer.json", tokdir);
    if (access(tj, R_OK) != 0) {
        printf("SKIP: tokenizer assets missing (%s); run scripts/fetch_assets.sh\n", tj);
        exit(77);
    }
    /* the generation tests need a working tokenizer; without one there is
     * nothing meaningful to check here */
    lmc_tokenizer *probe = NULL;
    if (lmc_tokenizer_load(tokdir, &probe) != LMC_OK) {
        printf("SKIP: tokenizer %s does not load: %s\n", tokdir, lmc_last_error());
        exit(77);
    }
    lmc_tokenizer_free(probe);
    if (tiny_write_cfg(dir, s, extra)) {
        fprintf(stderr, "could not write the tiny checkpoint in %s\n", dir);
        return NULL;
    }
    /* LMC_TEST_DEVICE=cuda runs the same checks on the GPU backend */
    const char *dev = getenv("LMC_TEST_DEVICE");
    lmc_load_options o = {.model_dir = dir, .tokenizer_dir = tokdir,
                          .device = dev && !strcmp(dev, "cuda") ? LMC_DEVICE_CUDA : LMC_DEVICE_CPU};
    lmc_context *ctx = NULL;
    if (lmc_context_load(&o, &ctx)) {
        fprintf(stderr, "load %s: %s\n", dir, lmc_last_error());
        return NULL;
    }
    return ctx;
}

static inline lmc_context *tiny_load(const char *dir, const tiny_spec *s, const char *tokenizer) {
    return tiny_load_cfg(dir, s, tokenizer, NULL);
}

#endif
