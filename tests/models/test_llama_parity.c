/* Llama-family CPU forward against transformers: for each checkpoint in
 * tests/golden/models (built by tests/oracle/make_tiny_models.py) compare
 * the prompt's last logits and the greedy continuation, then exercise the
 * KV cache (chunked prefill, trim + refeed, save/load, sliding window) and
 * the loader's errors. */
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "backend/backend.h"
#include "models/model.h"
#include "model_golden.h"
#include <stdlib.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static float range_of(const float *x, size_t n) {
    float lo = x[0], hi = x[0];
    for (size_t i = 1; i < n; i++) {
        if (x[i] < lo) lo = x[i];
        if (x[i] > hi) hi = x[i];
    }
    return hi - lo;
}

/* max|a-b| / range(ref) */
static double rel_err(const float *a, const float *ref, size_t n) {
    double mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates as a failure */
    }
    return mx / range_of(ref, n);
}

static int32_t argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

static lmc_status feed(lmc_model *m, lmc_kv_cache *c, const int32_t *ids, size_t n, float *lg) {
    return lmc_model_forward(m, c, ids, n, lg, false);
}

/* Greedy from the state after the prompt; one token per forward. */
static void greedy_run(lmc_model *m, lmc_kv_cache *c, float *lg, size_t n, int32_t *out) {
    for (size_t i = 0; i < n; i++) {
        out[i] = argmax(lg, (size_t)lmc_model_vocab(m));
        if (feed(m, c, &out[i], 1, lg)) {
            out[i] = -1;
            return;
        }
    }
}

static void test_checkpoint(const char *dir, const char *name) {
    golden g;
    loaded L;
    if (!open_checkpoint(dir, name, &g, &L)) return;
    lmc_model *m = L.model;
    size_t V = (size_t)lmc_model_vocab(m);
    CHECK_EQ_INT(V, g.vocab);
    double tol = g.half ? 2e-2 : 1e-4;
    float *lg = calloc(V, sizeof(float)), *lg2 = calloc(V, sizeof(float));
    float *prompt_lg = calloc(V, sizeof(float));
    lmc_kv_cache *c = NULL;
    CHECK(lmc_kv_cache_new(m, &c) == LMC_OK);

    /* 1. prompt logits */
    CHECK(feed(m, c, g.prompt, g.n_prompt, lg) == LMC_OK);
    memcpy(prompt_lg, lg, V * sizeof(float));
    double e = rel_err(lg, g.logits, V);
    printf("%-20s prompt logits   max|d|/range = %.3g (tol %.0g)\n", name, e, tol);
    CHECK_MSG(e <= tol, "%s: prompt logits rel err %g > %g", name, e, tol);

    /* 2. free-running greedy: identical up to the first reference near-tie
     * (a bf16 reference often has exact ties, which either pick breaks). */
    int32_t toks[MAX_TOK];
    greedy_run(m, c, lg, g.n_greedy, toks);
    CHECK_EQ_INT(lmc_kv_cache_len(c), g.n_prompt + g.n_greedy);
    size_t same = 0, must = g.n_greedy;
    double tie = g.half ? 1e-3 : 0.0;
    for (size_t i = 0; i < g.n_greedy; i++)
        if (g.margins[i] <= tie) {
            must = i;
            break;
        }
    while (same < g.n_greedy && toks[same] == g.greedy[same]) same++;
    printf("%-20s greedy          %zu/%zu tokens identical (reference has no tie before %zu)\n",
           name, same, g.n_greedy, must);
    CHECK_MSG(same >= must, "%s: greedy diverged at token %zu (got %d, want %d)", name, same,
              toks[same < g.n_greedy ? same : 0], g.greedy[same < g.n_greedy ? same : 0]);

    /* 3. teacher-forced along the reference tokens: every step whose
     * reference margin is clear of the tolerance must pick the same. */
    lmc_kv_cache_clear(c);
    CHECK_EQ_INT(lmc_kv_cache_len(c), 0);
    CHECK(feed(m, c, g.prompt, g.n_prompt, lg) == LMC_OK);
    size_t agree = 0, checked = 0;
    for (size_t i = 0; i < g.n_greedy; i++) {
        /* fp32: a margin beyond twice the tolerance; bf16/fp16 (computed with
         * the reference's rounding): anything but an exact tie. */
        double clear = g.half ? tie : 2 * tol * range_of(g.logits, V);
        if (g.margins[i] > clear) {
            checked++;
            if (argmax(lg, V) == g.greedy[i]) agree++;
            else
                CHECK_MSG(0, "%s: step %zu picks %d, reference %d (margin %g)", name, i,
                          argmax(lg, V), g.greedy[i], g.margins[i]);
        }
        CHECK(feed(m, c, &g.greedy[i], 1, lg) == LMC_OK);
    }
    printf("%-20s teacher-forced  %zu/%zu clear steps agree\n", name, agree, checked);
    CHECK(checked >= g.n_greedy / 2);

    /* 4. one forward over prompt + greedy[:-1] (spans the sliding window). */
    int32_t seq[2 * MAX_TOK];
    size_t ns = g.n_prompt + g.n_greedy - 1;
    memcpy(seq, g.prompt, g.n_prompt * sizeof(int32_t));
    memcpy(seq + g.n_prompt, g.greedy, (g.n_greedy - 1) * sizeof(int32_t));
    lmc_kv_cache_clear(c);
    CHECK(feed(m, c, seq, ns, lg) == LMC_OK);
    e = rel_err(lg, g.full_logits, V);
    printf("%-20s %zu-token logits max|d|/range = %.3g\n", name, ns, e);
    CHECK_MSG(e <= tol, "%s: full-sequence logits rel err %g > %g", name, e, tol);

    /* 5. chunked prefill (two pieces) matches the one-shot prompt. */
    lmc_kv_cache_clear(c);
    size_t cut = g.n_prompt / 3;
    CHECK(feed(m, c, g.prompt, cut, lg) == LMC_OK);
    CHECK(feed(m, c, g.prompt + cut, g.n_prompt - cut, lg) == LMC_OK);
    e = rel_err(lg, g.logits, V);
    CHECK_MSG(e <= tol, "%s: chunked prefill rel err %g", name, e);
    CHECK_MSG(rel_err(lg, prompt_lg, V) <= 1e-5 + (g.half ? 2e-2 : 0), "%s: chunked vs one-shot",
              name);

    /* 6. trim + refeed gives the prompt logits again. */
    CHECK(lmc_kv_cache_trim(c, 5) == LMC_OK);
    CHECK_EQ_INT(lmc_kv_cache_len(c), g.n_prompt - 5);
    CHECK(feed(m, c, g.prompt + g.n_prompt - 5, 5, lg) == LMC_OK);
    e = rel_err(lg, g.logits, V);
    CHECK_MSG(e <= tol, "%s: trim+refeed rel err %g", name, e);
    CHECK_ERR(lmc_kv_cache_trim(c, 1000), LMC_ERR_INVALID_ARG, "1000 tokens requested");

    /* 7. save after prompt + 14 tokens, restore, both continue identically. */
    lmc_kv_cache_clear(c);
    CHECK(feed(m, c, g.prompt, g.n_prompt, lg) == LMC_OK);
    int32_t head[14]; /* past the rotating cache's wrap for the mistral model */
    greedy_run(m, c, lg, 14, head);
    char path[256];
    snprintf(path, sizeof path, "/tmp/lmc_test_kv_%d_%s.safetensors", (int)getpid(), name);
    const char *meta[] = {"note", "parity", NULL};
    lmc_status st = lmc_kv_cache_save(c, path, meta);
    CHECK_MSG(st == LMC_OK, "%s: save: %s", name, lmc_last_error());
    lmc_kv_cache *r = NULL;
    st = lmc_kv_cache_load(m, path, &r);
    CHECK_MSG(st == LMC_OK, "%s: load cache: %s", name, lmc_last_error());
    if (r) {
        CHECK_EQ_INT(lmc_kv_cache_len(r), lmc_kv_cache_len(c));
        memcpy(lg2, lg, V * sizeof(float));
        int32_t a[16], b[16];
        greedy_run(m, c, lg, 16, a);
        greedy_run(m, r, lg2, 16, b);
        CHECK_MSG(!memcmp(a, b, sizeof a), "%s: restored cache continues differently", name);
        CHECK_MSG(!memcmp(lg, lg2, V * sizeof(float)), "%s: restored cache logits differ", name);
        bool ref_same = !memcmp(head, g.greedy, sizeof head);
        if (ref_same && !g.half)
            CHECK_MSG(!memcmp(a, g.greedy + 14, sizeof a), "%s: restored run leaves the reference",
                      name);
        lmc_kv_cache_free(r);
    }
    unlink(path);

    /* 7b. all_logits: every row is returned and the last is the prompt's. */
    {
        float *all = calloc(g.n_prompt * V, sizeof(float));
        lmc_kv_cache *c1 = NULL;
        CHECK(lmc_kv_cache_new(m, &c1) == LMC_OK);
        CHECK(lmc_model_forward(m, c1, g.prompt, g.n_prompt, all, true) == LMC_OK);
        lmc_kv_cache_free(c1);
        e = rel_err(all + (g.n_prompt - 1) * V, g.logits, V);
        CHECK_MSG(e <= tol, "%s: all_logits last row rel err %g", name, e);
        /* row i is what a prompt cut after token i predicts */
        lmc_kv_cache *c2 = NULL;
        CHECK(lmc_kv_cache_new(m, &c2) == LMC_OK);
        CHECK(feed(m, c2, g.prompt, 6, lg) == LMC_OK);
        /* (half dtypes: the two runs take different kernels, and one flipped
         * rounding moves a value by an ulp of that dtype) */
        CHECK_MSG(rel_err(all + 5 * V, lg, V) <= (g.half ? tol : 1e-5), "%s: all_logits row 5",
                  name);
        lmc_kv_cache_free(c2);
        free(all);
    }

    /* 7c. a prompt longer than one internal prefill chunk (512) equals the
     * same tokens fed in uneven pieces (fp32 only, to keep the test short). */
    if (!g.half) {
        enum { LONG = 700 };
        int32_t *ids = malloc(LONG * sizeof(int32_t));
        for (size_t i = 0; i < LONG; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
        lmc_kv_cache *c2 = NULL;
        CHECK(lmc_kv_cache_new(m, &c2) == LMC_OK);
        CHECK(feed(m, c2, ids, LONG, lg) == LMC_OK);
        lmc_kv_cache_clear(c2);
        CHECK(feed(m, c2, ids, 333, lg2) == LMC_OK);
        CHECK(feed(m, c2, ids + 333, 1, lg2) == LMC_OK);
        CHECK(feed(m, c2, ids + 334, LONG - 334, lg2) == LMC_OK);
        CHECK_EQ_INT(lmc_kv_cache_len(c2), LONG);
        e = rel_err(lg2, lg, V);
        CHECK_MSG(e <= 1e-5, "%s: 700-token prompt in pieces differs by %g", name, e);
        lmc_kv_cache_free(c2);
        free(ids);
    }

    /* 8. sliding window specifics: trims that need evicted tokens fail. */
    if (L.cfg.sliding_window > 0) {
        CHECK(lmc_kv_cache_len(c) > 2 * (size_t)L.cfg.sliding_window); /* wrapped */
        CHECK(lmc_kv_cache_trim(c, 1) == LMC_OK);
        CHECK_ERR(lmc_kv_cache_trim(c, 40), LMC_ERR_STATE, "evicted");
    }
    lmc_kv_cache_free(c);
    free(lg);
    free(lg2);
    free(prompt_lg);
    unload(&L);
    golden_free(&g);
}

/* Copy `src` weights to dir/model.safetensors, renaming or reshaping one. */
static lmc_status write_variant(const char *src, const char *dst_dir, const char *victim,
                                bool drop) {
    lmc_st_set *s = NULL;
    lmc_status st = lmc_st_set_open_dir(src, &s);
    if (st) return st;
    size_t n = lmc_st_set_count(s), k = 0;
    lmc_st_write_tensor *t = calloc(n, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        const lmc_tensor_view *v = lmc_st_set_at(s, i);
        if (!strcmp(v->name, victim) && drop) continue;
        t[k].name = v->name;
        t[k].dtype = v->dtype;
        t[k].ndim = v->ndim;
        memcpy(t[k].shape, v->shape, sizeof v->shape);
        t[k].data = v->data;
        if (!strcmp(v->name, victim) && v->ndim == 2) { /* same bytes, transposed shape */
            t[k].shape[0] = v->shape[1];
            t[k].shape[1] = v->shape[0];
        }
        k++;
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", dst_dir);
    st = lmc_st_write(path, t, k, NULL);
    free(t);
    lmc_st_set_free(s);
    return st;
}

static void test_errors(const char *gold) {
    char src[1100], tmp[256], cfg_src[1200], cfg_dst[300];
    snprintf(src, sizeof src, "%s/llama_linear-fp32", gold);
    snprintf(tmp, sizeof tmp, "/tmp/lmc_test_bad_%d", (int)getpid());
    if (mkdir(tmp, 0700) && !lmc_is_dir(tmp)) {
        CHECK_MSG(0, "cannot create %s", tmp);
        return;
    }
    snprintf(cfg_src, sizeof cfg_src, "%s/config.json", src);
    snprintf(cfg_dst, sizeof cfg_dst, "%s/config.json", tmp);
    char *cfg = NULL;
    size_t cfg_len = 0;
    CHECK(lmc_read_file(cfg_src, "config.json", 1 << 20, &cfg, &cfg_len) == LMC_OK);
    CHECK(lmc_write_file_atomic(cfg_dst, cfg, cfg_len) == LMC_OK);
    loaded L;

    /* wrong shape: q_proj [64, 64] stays square, so transpose k_proj [32, 64] */
    CHECK(write_variant(src, tmp, "model.layers.1.self_attn.k_proj.weight", false) == LMC_OK);
    CHECK_ERR(load_model(tmp, &L, NULL), LMC_ERR_FORMAT,
              "tensor 'model.layers.1.self_attn.k_proj.weight' has shape [64, 32], expected [32, 64]");
    unload(&L);
    /* missing tensor */
    CHECK(write_variant(src, tmp, "model.layers.0.mlp.up_proj.bias", true) == LMC_OK);
    CHECK_ERR(load_model(tmp, &L, NULL), LMC_ERR_NOT_FOUND,
              "missing tensor 'model.layers.0.mlp.up_proj.bias'");
    unload(&L);
    CHECK(write_variant(src, tmp, "lm_head.weight", true) == LMC_OK);
    CHECK_ERR(load_model(tmp, &L, NULL), LMC_ERR_NOT_FOUND, "missing tensor 'lm_head.weight'");
    unload(&L);

    /* config validation, on the intact weights */
    CHECK(write_variant(src, tmp, "", false) == LMC_OK);
    CHECK(load_model(tmp, &L, NULL) == LMC_OK);
    lmc_model_config bad = L.cfg;
    lmc_loaded_model lm = {.config = &bad, .weights = L.weights, .device = LMC_DEVICE_CPU};
    lmc_model *mm = NULL;
    bad.num_key_value_heads = 3;
    CHECK_ERR(lmc_model_create(&lm, &mm), LMC_ERR_FORMAT, "not a multiple of num_key_value_heads");
    bad = L.cfg;
    bad.hidden_size = 66; /* 66 / 4 heads, and the config names no head_dim */
    json_object *no_head_dim = json_object_new_object();
    lm.config_json = no_head_dim;
    CHECK_ERR(lmc_model_create(&lm, &mm), LMC_ERR_FORMAT,
              "hidden_size (66) is not a multiple of num_attention_heads (4)");
    lm.config_json = NULL;
    json_object_put(no_head_dim);
    /* Which layers slide: layer_types, else qwen's max_window_layers. A
     * mix runs on the CPU (per-layer windows over a full cache); CUDA
     * refuses it by name unless its preview kernels are asked for. */
    {
        static const struct {
            const char *type, *json;
            int64_t want; /* the cache window; -1: a mix of the two */
        } cases[] = {
            {"mistral", "{}", 16},
            {"mistral", "{\"layer_types\":[\"full_attention\",\"full_attention\"]}", 0},
            {"llama", "{\"layer_types\":[\"sliding_attention\",\"sliding_attention\"]}", 16},
            {"mistral", "{\"layer_types\":[\"sliding_attention\",\"full_attention\"]}", -1},
            {"qwen2", "{}", 0}, /* default max_window_layers 28 covers both layers */
            {"qwen2", "{\"max_window_layers\":0}", 16},
            {"qwen3", "{\"max_window_layers\":1}", -1},
        };
        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
            lmc_model_config wc = L.cfg;
            wc.num_hidden_layers = 2;
            wc.sliding_window = 16;
            wc.head_dim = 64; /* a head size CUDA's engine runs (mixed layers need it) */
            snprintf(wc.model_type, sizeof wc.model_type, "%s", cases[i].type);
            json_object *j = json_tokener_parse(cases[i].json);
            lmc_arch_plan p;
            CHECK(lmc_arch_plan_init(&wc, j, &p) == LMC_OK);
            CHECK_MSG(p.mixed_windows == (cases[i].want < 0), "window case %zu", i);
            if (cases[i].want >= 0)
                CHECK_MSG(p.cache_window == (size_t)cases[i].want, "window case %zu: %zu", i,
                          p.cache_window);
            else
                CHECK(p.layer_window[0] + p.layer_window[1] == 16);
            CHECK(lmc_backend_supports(LMC_DEVICE_CPU, &p, &wc) == LMC_OK);
            /* mixed layers were checked against transformers on a GPU */
            CHECK_MSG(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &wc) == LMC_OK,
                      "window case %zu on cuda: %s", i, lmc_last_error());
            lmc_arch_plan_free(&p);
            json_object_put(j);
        }
    }
    bad = L.cfg;
    bad.vocab_size = 0;
    CHECK_ERR(lmc_model_create(&lm, &mm), LMC_ERR_FORMAT, "vocab_size must be positive");
    bad = L.cfg;
    snprintf(bad.model_type, sizeof bad.model_type, "gpt2");
    CHECK_ERR(lmc_model_create(&lm, &mm), LMC_ERR_UNSUPPORTED, "model_type 'gpt2'");
    bad = L.cfg;
    snprintf(bad.rope_type, sizeof bad.rope_type, "dynamic");
    CHECK_ERR(lmc_model_create(&lm, &mm), LMC_ERR_UNSUPPORTED, "rope type 'dynamic'");
    bad = L.cfg;
    bad.hidden_size = 32; /* every tensor then disagrees; the first is named */
    CHECK_ERR(lmc_model_create(&lm, &mm), LMC_ERR_FORMAT,
              "'model.embed_tokens.weight' has shape [512, 64], expected [512, 32]");
#ifndef LMC_HAVE_CUDA
    lm.config = &L.cfg;
    lm.device = LMC_DEVICE_CUDA;
    CHECK_ERR(lmc_model_create(&lm, &mm), LMC_ERR_UNSUPPORTED, "without CUDA");
#endif
    CHECK(mm == NULL);

    /* A cache from another architecture or shape is refused by name. */
    loaded M;
    char mdir[1100];
    snprintf(mdir, sizeof mdir, "%s/mistral-fp32", gold);
    CHECK(load_model(mdir, &M, NULL) == LMC_OK);
    lmc_kv_cache *c = NULL, *r = NULL;
    if (M.model && L.model && lmc_kv_cache_new(M.model, &c) == LMC_OK) {
        int32_t ids[3] = {1, 5, 9};
        float *lg = calloc((size_t)lmc_model_vocab(M.model), sizeof(float));
        char empty[300];
        snprintf(empty, sizeof empty, "%s/empty.safetensors", tmp);
        CHECK_MSG(lmc_kv_cache_save(c, empty, NULL) == LMC_OK, "save empty: %s", lmc_last_error());
        CHECK_MSG(lmc_kv_cache_load(M.model, empty, &r) == LMC_OK, "load empty: %s",
                  lmc_last_error());
        CHECK_EQ_INT(lmc_kv_cache_len(r), 0);
        lmc_kv_cache_free(r);
        r = NULL;
        unlink(empty);
        CHECK(feed(M.model, c, ids, 3, lg) == LMC_OK);
        char kv[300];
        snprintf(kv, sizeof kv, "%s/kv.safetensors", tmp);
        CHECK(lmc_kv_cache_save(c, kv, NULL) == LMC_OK);
        CHECK_ERR(lmc_kv_cache_load(L.model, kv, &r), LMC_ERR_INVALID_ARG,
                  "made by a 'mistral' model, this model is 'llama'");
        CHECK(r == NULL);
        const char *reserved[] = {"offset", "7", NULL};
        CHECK_ERR(lmc_kv_cache_save(c, kv, reserved), LMC_ERR_INVALID_ARG, "reserved");
        /* Feeding a cache to a model of another shape is refused. */
        CHECK_ERR(lmc_model_forward(L.model, c, ids, 1, lg, false), LMC_ERR_INVALID_ARG,
                  "another shape");
        int32_t oob = 100000;
        size_t before = lmc_kv_cache_len(c);
        int32_t bad_ids[2] = {4, oob};
        CHECK_ERR(feed(M.model, c, bad_ids, 2, lg), LMC_ERR_INVALID_ARG,
                  "token id 100000 at index 1 is outside the vocabulary");
        CHECK_EQ_INT(lmc_kv_cache_len(c), before);
        unlink(kv);
        free(lg);
        lmc_kv_cache_free(c);
    }
    unload(&M);
    unload(&L);
    free(cfg);
    char p[400];
    snprintf(p, sizeof p, "%s/model.safetensors", tmp);
    unlink(p);
    unlink(cfg_dst);
    rmdir(tmp);
}

int main(void) {
    static const char *const names[] = {
        "llama-fp32", "llama-bf16",   "llama-fp16", "llama_linear-fp32", "mistral-fp32",
        "mistral-bf16", "qwen2-fp32", "qwen2-bf16", "qwen2-fp16",        "qwen3-fp32",
        "qwen3-bf16",
    };
    char gold[1024];
    snprintf(gold, sizeof gold, "%s/tests/golden/models", src_dir());
    if (!lmc_is_dir(gold)) CHECK_SKIP("no golden models in %s", gold);
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        char dir[1400];
        snprintf(dir, sizeof dir, "%s/%s", gold, names[i]);
        test_checkpoint(dir, names[i]);
    }
    test_errors(gold);
    return check_summary("test_llama_parity");
}
