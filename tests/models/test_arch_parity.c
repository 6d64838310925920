/* The architectures beyond llama/qwen on the CPU against transformers:
 * Gemma 3 text (tests/golden/gemma3, built by
 * tests/oracle/make_gemma3_models.py: sliding layers with a window shorter
 * than the sequence mixed with a full layer, two RoPE tables, an attention
 * scalar unlike head_dim, (1 + w) norms) and Phi-3 (tests/golden/phi3, from
 * make_phi3_models.py: fused q/k/v and gate/up weights, a partial rotary
 * embedding). For each checkpoint: the prompt's last logits, the greedy
 * continuation and the logits after prompt + continuation (one forward,
 * and prefill + decode steps); controls that must miss; the refusals (CUDA,
 * bad settings). */
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "formats/config.h"
#include "backend/backend.h"
#include "models/model.h"
#include "model_golden.h"
#include "scratch.h"
#include <stdlib.h>
#include <stdint.h>
#include <unistd.h>

/* max|a - ref| / range(ref) */

/* A copy of checkpoint dir in a new temporary directory (tmp, a mkdtemp
 * template) with one textual edit of config.json (from -> to; none when
 * from is NULL); false when from is not in config.json. */
static const char *const ckpt_files[] = {"config.json", "generation_config.json",
                                         "model.safetensors"};

static bool copy_edited(const char *dir, char *tmp, const char *from, const char *to) {
    if (!mkdtemp(tmp)) return false;
    for (size_t i = 0; i < 3; i++)
        if (lmc_copy_file(dir, tmp, ckpt_files[i], true)) return false;
    if (!from) return true;
    char path[1500];
    snprintf(path, sizeof path, "%s/config.json", tmp);
    char *text = NULL;
    size_t len = 0;
    if (lmc_read_file(path, "config.json", 1 << 20, &text, &len)) return false;
    char *at = strstr(text, from);
    if (at) {
        FILE *f = fopen(path, "w");
        fprintf(f, "%.*s%s%s", (int)(at - text), text, to, at + strlen(from));
        fclose(f);
    }
    free(text);
    return at != NULL;
}

static void remove_copy(const char *tmp) {
    char path[1500];
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", tmp, ckpt_files[i]);
        remove(path);
    }
    rmdir(tmp);
}

/* The prompt's last logits (g->vocab floats into lg) of the checkpoint
 * with config.json edited; false when the edit does not apply or the model
 * fails. */
static bool prompt_logits(const char *dir, const golden *g, const char *from, const char *to,
                          float *lg) {
    char tmp[] = "/tmp/lmc_gemma3_XXXXXX";
    bool ok = false;
    loaded L;
    if (copy_edited(dir, tmp, from, to) && !load_model(tmp, &L, NULL)) {
        lmc_kv_cache *c = NULL;
        ok = !lmc_kv_cache_new(L.model, &c) &&
             !lmc_model_forward(L.model, c, g->prompt, g->n_prompt, lg, false);
        if (c) lmc_kv_cache_free(c);
        unload(&L);
    }
    remove_copy(tmp);
    return ok;
}

/* The error of the prompt's last logits of the checkpoint with config.json
 * edited; < 0 when the edit does not apply or the model fails. */
static double prompt_err(const char *dir, const golden *g, const char *from, const char *to) {
    float *lg = calloc(g->vocab, sizeof(float));
    double e = prompt_logits(dir, g, from, to, lg) ? golden_rel_err(lg, g->logits, g->vocab) : -1;
    free(lg);
    return e;
}

/* Gemma's logit softcapping on the CPU: the final cap is c * tanh(x / c) of
 * the uncapped logits (fp32: to the bit); an attention cap far above the
 * scores leaves the logits where they were, a tight one moves them. */
static void test_gemma3_softcap(const char *dir) {
    golden g;
    if (!load_golden(dir, "gemma3-fp32", &g)) {
        CHECK_MSG(0, "gemma3-fp32: unreadable golden.json");
        return;
    }
    float *base = calloc(g.vocab, sizeof(float)), *lg = calloc(g.vocab, sizeof(float));
    CHECK(prompt_logits(dir, &g, NULL, NULL, base));
    float amax = 0;
    for (size_t i = 0; i < g.vocab; i++) amax = fmaxf(amax, fabsf(base[i]));
    const float cap = amax / 2;
    char to[64];
    snprintf(to, sizeof to, "\"final_logit_softcapping\": %.9g", cap);
    CHECK(prompt_logits(dir, &g, "\"final_logit_softcapping\": null", to, lg));
    size_t exact = 0;
    for (size_t i = 0; i < g.vocab; i++) exact += lg[i] == cap * tanhf(base[i] / cap);
    CHECK_MSG(exact == g.vocab, "final softcap: %zu of %zu logits as c * tanh(x / c)", exact,
              g.vocab);
    CHECK(fabsf(lg[0] - base[0]) > 0 || fabsf(base[0]) < 1e-3f);
    /* transformers' Gemma 3 attention takes no softcap, so a set
     * attn_logit_softcapping is refused by name, never dropped */
    CHECK(!prompt_logits(dir, &g, "\"attn_logit_softcapping\": null",
                         "\"attn_logit_softcapping\": 0.05", lg));
    CHECK_MSG(strstr(lmc_last_error(), "attn_logit_softcapping 0.05 is set") != NULL, "%s",
              lmc_last_error());
    free(base);
    free(lg);
    golden_free(&g);
}

/* A config.json edit that must move the prompt logits far off. */
typedef struct {
    const char *what, *from, *to;
} control;

static void test_checkpoint(const char *dir, const char *name, const char *model_type,
                            const control *controls, size_t n_controls) {
    golden g;
    loaded L;
    if (!open_checkpoint(dir, name, &g, &L)) return;
    CHECK_STREQ(L.cfg.model_type, model_type);
    lmc_model *m = L.model;
    size_t V = (size_t)lmc_model_vocab(m);
    CHECK_EQ_INT(V, g.vocab);
    const double tol = g.half ? 2e-2 : 1e-4;
    float *lg = calloc(V, sizeof(float));
    lmc_kv_cache *c = NULL;
    CHECK(lmc_kv_cache_new(m, &c) == LMC_OK);

    /* 1. prompt logits */
    CHECK(lmc_model_forward(m, c, g.prompt, g.n_prompt, lg, false) == LMC_OK);
    double e = golden_rel_err(lg, g.logits, V);
    printf("%-14s prompt logits   max|d|/range = %.3g (tol %.0g)\n", name, e, tol);
    CHECK_MSG(e <= tol, "%s: prompt logits err %g", name, e);

    /* 2. free-running greedy, identical up to the first reference near-tie */
    size_t must = g.n_greedy, same = 0;
    const double tie = g.half ? 0.05 : 1e-3;
    for (size_t i = 0; i < g.n_greedy; i++)
        if (g.margins[i] <= tie) {
            must = i;
            break;
        }
    int32_t toks[MAX_TOK];
    for (size_t i = 0; i < g.n_greedy; i++) {
        toks[i] = golden_argmax(lg, V);
        if (lmc_model_forward(m, c, &toks[i], 1, lg, false)) {
            toks[i] = -1;
            break;
        }
    }
    while (same < g.n_greedy && toks[same] == g.greedy[same]) same++;
    printf("%-14s greedy          %zu/%zu tokens identical (reference has no tie before %zu)\n",
           name, same, g.n_greedy, must);
    CHECK_MSG(same >= must, "%s: greedy diverged at token %zu", name, same);
    CHECK(must >= 5);

    /* 3. prompt + greedy[:-1] (51 positions; gemma3's window is 6): one
     * forward, then prefill + one token at a time */
    int32_t seq[2 * MAX_TOK];
    const size_t ns = g.n_prompt + g.n_greedy - 1;
    memcpy(seq, g.prompt, g.n_prompt * sizeof(int32_t));
    memcpy(seq + g.n_prompt, g.greedy, (g.n_greedy - 1) * sizeof(int32_t));
    lmc_kv_cache_clear(c);
    CHECK(lmc_model_forward(m, c, seq, ns, lg, false) == LMC_OK);
    e = golden_rel_err(lg, g.full_logits, V);
    printf("%-14s %zu-token logits max|d|/range = %.3g\n", name, ns, e);
    CHECK_MSG(e <= tol, "%s: full-sequence logits err %g", name, e);
    lmc_kv_cache_clear(c);
    lmc_status st = lmc_model_forward(m, c, seq, 9, lg, false);
    for (size_t i = 9; i < ns && !st; i++) st = lmc_model_forward(m, c, &seq[i], 1, lg, false);
    CHECK(st == LMC_OK);
    e = golden_rel_err(lg, g.full_logits, V);
    CHECK_MSG(e <= tol, "%s: decode-path full logits err %g", name, e);
    lmc_kv_cache_free(c);
    free(lg);
    unload(&L);

    /* 4. controls: each feature left out misses the reference by 5% of its
     * range at least, far beyond the tolerances above (or they could not
     * tell) */
    for (size_t i = 0; i < n_controls; i++) {
        double ec = prompt_err(dir, &g, controls[i].from, controls[i].to);
        printf("%-14s control (%s): max|d|/range = %.3g\n", name, controls[i].what, ec);
        CHECK_MSG(ec > 0.05, "%s: control '%s' err %g is not far off", name, controls[i].what,
                  ec);
    }
    golden_free(&g);
}

static void expect_load_error(const char *dir, const char *from, const char *to,
                              lmc_status want, const char *fragment) {
    char tmp[] = "/tmp/lmc_gemma3e_XXXXXX";
    CHECK_MSG(copy_edited(dir, tmp, from, to), "config.json has no '%s'", from);
    loaded L;
    CHECK_ERR(load_model(tmp, &L, NULL), want, fragment);
    unload(&L);
    remove_copy(tmp);
}

/* Phi-3's fused matrices quantized (8 bits, group 32): slices of the
 * packed words, scales and biases give the float reference's logits within
 * quantization error (a slice off by a row would not). */
static void test_phi3_quantized(void) {
    char in[1024], out[1100];
    snprintf(in, sizeof in, "%s/tests/golden/phi3/phi3-fp32", src_dir());
    snprintf(out, sizeof out, "%s/phi3-q8", scratch_root("arch"));
    CHECK_MSG(lmc_quantize_model(in, out, 8, 32, NULL, NULL) == LMC_OK, "quantize: %s",
              lmc_last_error());
    golden g;
    loaded L;
    if (!load_golden(in, "phi3-q8", &g)) {
        CHECK_MSG(0, "phi3-fp32: unreadable golden.json");
        return;
    }
    lmc_status st = load_model(out, &L, NULL);
    CHECK_MSG(st == LMC_OK, "phi3-q8: load: %s", lmc_last_error());
    if (!st) {
        const lmc_tensor_view *t =
            lmc_st_set_find(L.weights, "model.layers.0.self_attn.qkv_proj.weight");
        CHECK(t && t->dtype == LMC_DT_U32);
        float *lg = calloc(g.vocab, sizeof(float));
        lmc_kv_cache *c = NULL;
        CHECK(!lmc_kv_cache_new(L.model, &c));
        CHECK(c && !lmc_model_forward(L.model, c, g.prompt, g.n_prompt, lg, false));
        const double e = golden_rel_err(lg, g.logits, g.vocab);
        printf("phi3-q8        prompt logits   max|d|/range = %.3g against the float "
               "reference\n", e);
        CHECK_MSG(e > 1e-6 && e < 0.02, "phi3-q8: prompt logits err %g", e);
        if (c) lmc_kv_cache_free(c);
        free(lg);
    }
    unload(&L);
    golden_free(&g);
}

static const control gemma3_controls[] = {
    {"no attention scalar", "\"query_pre_attn_scalar\": 24", "\"query_pre_attn_scalar\": 32"},
    {"every layer full", "\"sliding_attention\",\n    \"sliding_attention\",",
     "\"full_attention\",\n    \"full_attention\","},
    {"one RoPE table", "\"rope_theta\": 10000.0", "\"rope_theta\": 1000000.0"},
};
static const control phi3_controls[] = {
    {"a sliding window", "\"sliding_window\": null", "\"sliding_window\": 4"},
};
static const control phi3_partial_controls[] = {
    {"full rotary", "\"partial_rotary_factor\": 0.5,\n    \"rope_theta\"",
     "\"partial_rotary_factor\": 1.0,\n    \"rope_theta\""},
};

/* The checkpoint in dir (config.json edited: from -> to, unless NULL)
 * loaded for CUDA: refused with `fragment` in the message, in builds with
 * or without CUDA. */
static void expect_cuda_refusal(const char *dir, const char *from, const char *to,
                                const char *fragment) {
    char tmp[] = "/tmp/lmc_cudaref_XXXXXX";
    CHECK(copy_edited(dir, tmp, from, to));
    loaded L;
    memset(&L, 0, sizeof L);
    CHECK(!lmc_config_load(tmp, &L.cfg, &L.cfg_json, &L.raw));
    CHECK(!lmc_st_set_open_dir(tmp, &L.weights));
    lmc_loaded_model lm = {.config = &L.cfg, .config_json = L.cfg_json, .config_raw = L.raw,
                           .weights = L.weights, .device = LMC_DEVICE_CUDA};
    CHECK_ERR(lmc_model_create(&lm, &L.model), LMC_ERR_UNSUPPORTED, fragment);
    CHECK(L.model == NULL);
    unload(&L);
    remove_copy(tmp);
}

int main(void) {
    char dir[1024];
    static const struct {
        const char *sub, *name, *model_type;
        const control *controls;
        size_t n_controls;
    } ckpts[] = {
        {"gemma3", "gemma3-fp32", "gemma3_text", gemma3_controls, 3},
        {"gemma3", "gemma3-bf16", "gemma3_text", gemma3_controls, 3},
        {"phi3", "phi3-fp32", "phi3", phi3_controls, 1},
        {"phi3", "phi3-bf16", "phi3", phi3_controls, 1},
        {"phi3", "phi3_partial-fp32", "phi3", phi3_partial_controls, 1},
    };
    for (size_t i = 0; i < sizeof ckpts / sizeof ckpts[0]; i++) {
        snprintf(dir, sizeof dir, "%s/tests/golden/%s/%s", src_dir(), ckpts[i].sub,
                 ckpts[i].name);
        test_checkpoint(dir, ckpts[i].name, ckpts[i].model_type, ckpts[i].controls,
                        ckpts[i].n_controls);
    }
    snprintf(dir, sizeof dir, "%s/tests/golden/gemma3/gemma3-fp32", src_dir());
    expect_load_error(dir, "\"hidden_activation\": \"gelu_pytorch_tanh\"",
                      "\"hidden_activation\": \"relu\"", LMC_ERR_UNSUPPORTED, "hidden_activation");
    test_gemma3_softcap(dir);
    expect_load_error(dir, "\"full_attention\",\n    \"sliding_attention\"\n",
                      "\"full_attention\"\n", LMC_ERR_FORMAT, "layer_types");
    expect_load_error(dir, "\"sliding_window\": 6", "\"sliding_window\": 0", LMC_ERR_FORMAT,
                      "sliding_window");
    expect_load_error(dir, "\"rope_theta\": 10000.0,\n      \"rope_type\": \"default\"",
                      "\"rope_theta\": 10000.0,\n      \"rope_type\": \"yarn\"",
                      LMC_ERR_UNSUPPORTED, "sliding_attention");
    /* CUDA runs gemma3_text on its paged engine only, whose attention takes
     * no head_dim 32: refused by name before any upload, with or without
     * final softcapping; and a shape its kernels do not take */
#ifdef LMC_HAVE_CUDA
    expect_cuda_refusal(dir, NULL, NULL, "with head_dim 32");
    expect_cuda_refusal(dir, "\"final_logit_softcapping\": null",
                        "\"final_logit_softcapping\": 30.0", "with head_dim 32");
#endif
    expect_cuda_refusal(dir, "\"intermediate_size\": 96", "\"intermediate_size\": 100",
                        "device cuda: hidden_size (48), intermediate_size (100)");
    test_phi3_quantized();
    snprintf(dir, sizeof dir, "%s/tests/golden/phi3/phi3_partial-fp32", src_dir());
    /* an architecture that rotates whole heads refuses the key */
    expect_load_error(dir, "\"model_type\": \"phi3\"", "\"model_type\": \"llama\"",
                      LMC_ERR_UNSUPPORTED, "partial_rotary_factor 0.5: llama rotates whole heads");
    snprintf(dir, sizeof dir, "%s/tests/golden/phi3/phi3_partial-fp32", src_dir());
    expect_load_error(dir, "\"partial_rotary_factor\": 0.5,\n    \"rope_theta\"",
                      "\"partial_rotary_factor\": 0.01,\n    \"rope_theta\"", LMC_ERR_FORMAT,
                      "partial_rotary_factor");
    return check_summary("test_arch_parity");
}
