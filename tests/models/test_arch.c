/* Architecture descriptions and plans (models/arch.h): the registry finds
 * every description (aliases too); plans resolve biases, rotary width,
 * layer windows, RoPE tables and scales from config.json; the older key
 * layout (rope_scaling + top-level rope_theta, torch_dtype,
 * rope_local_base_freq, top-level partial_rotary_factor) resolves exactly
 * as the newer one (rope_parameters, dtype, layer_types) for every
 * architecture; and the backends' capability checks refuse by name. */
#include "backend/backend.h"
#include "check.h"
#include "models/arch.h"
#include "models/rope.h"
#include <stdlib.h>
#include <json-c/json.h>

/* Parse text into cfg + plan; LMC_OK or the failing status. */
static lmc_status plan_of(const char *text, lmc_model_config *c, lmc_arch_plan *p) {
    json_object *j = NULL;
    lmc_status st = lmc_config_parse(text, strlen(text), "config.json", c, &j);
    if (!st) st = lmc_arch_plan_init(c, j, p);
    json_object_put(j);
    return st;
}

#define DIMS                                                                              \
    "\"hidden_size\": 64, \"intermediate_size\": 128, \"num_hidden_layers\": 6,"          \
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 16,"          \
    " \"vocab_size\": 512, \"max_position_embeddings\": 4096, "
/* the same at a head size the CUDA paged engine runs (64), for the
 * features CUDA runs there only */
#define DIMS_ENGINE                                                                       \
    "\"hidden_size\": 256, \"intermediate_size\": 688, \"num_hidden_layers\": 6,"        \
    " \"num_attention_heads\": 4, \"num_key_value_heads\": 2, \"head_dim\": 64,"          \
    " \"vocab_size\": 512, \"max_position_embeddings\": 4096, "

static void test_registry(void) {
    size_t n = 0;
    const lmc_arch_desc *const *all = lmc_arch_all(&n);
    CHECK(n >= 5);
    for (size_t i = 0; i < n; i++) {
        CHECK(lmc_arch_find(all[i]->model_type) == all[i]);
        CHECK(all[i]->names && all[i]->act_key);
    }
    static const char *const types[] = {"llama", "qwen2", "qwen3", "phi3", "gemma3_text"};
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        CHECK_MSG(lmc_arch_find(types[i]) != NULL, "%s", types[i]);
    CHECK(lmc_arch_find("mistral") == lmc_arch_find("llama"));
    CHECK(lmc_arch_find("gpt2") == NULL);
    lmc_model_config c;
    lmc_arch_plan p;
    CHECK_ERR(plan_of("{\"model_type\": \"gpt2\", " DIMS "\"x\": 0}", &c, &p),
              LMC_ERR_UNSUPPORTED, "model_type 'gpt2' has no architecture description");
}

/* Biases come from the description, or from the config where it says so. */
static void test_biases(void) {
    lmc_model_config c;
    lmc_arch_plan p;
    CHECK(!plan_of("{\"model_type\": \"qwen2\", " DIMS "\"attention_bias\": false}", &c, &p));
    CHECK(p.qkv_bias && !p.o_bias && !p.mlp_bias);
    lmc_arch_plan_free(&p);
    CHECK(!plan_of("{\"model_type\": \"llama\", " DIMS "\"attention_bias\": true,"
                   " \"mlp_bias\": true}", &c, &p));
    CHECK(p.qkv_bias && p.o_bias && p.mlp_bias);
    lmc_arch_plan_free(&p);
    CHECK(!plan_of("{\"model_type\": \"qwen3\", " DIMS "\"mlp_bias\": true}", &c, &p));
    CHECK(!p.qkv_bias && !p.o_bias && !p.mlp_bias);
    lmc_arch_plan_free(&p);
}

static bool same_rope(const lmc_arch_plan *a, const lmc_model_config *ca, const lmc_arch_plan *b,
                      const lmc_model_config *cb, bool local) {
    lmc_rope ra, rb;
    if (lmc_arch_rope_init(a, ca, local, &ra)) return false;
    if (lmc_arch_rope_init(b, cb, local, &rb)) {
        lmc_rope_free(&ra);
        return false;
    }
    bool same = ra.n == rb.n && ra.attn_factor == rb.attn_factor &&
                !memcmp(ra.inv_freq, rb.inv_freq, ra.n * sizeof *ra.inv_freq);
    lmc_rope_free(&ra);
    lmc_rope_free(&rb);
    return same;
}

/* The two key layouts of one checkpoint resolve to the same config fields,
 * plan and RoPE tables. */
static void check_same(const char *name, const char *older, const char *newer) {
    lmc_model_config a, b;
    lmc_arch_plan pa, pb;
    lmc_status sa = plan_of(older, &a, &pa), sb = plan_of(newer, &b, &pb);
    CHECK_MSG(!sa && !sb, "%s: %s", name, lmc_last_error());
    if (sa || sb) return;
    CHECK_MSG(a.rope_theta == b.rope_theta && a.rope_factor == b.rope_factor &&
                  !strcmp(a.rope_type, b.rope_type) &&
                  a.rope_original_max_position == b.rope_original_max_position &&
                  a.rope_low_freq_factor == b.rope_low_freq_factor &&
                  a.rope_high_freq_factor == b.rope_high_freq_factor &&
                  !strcmp(a.torch_dtype, b.torch_dtype) && a.torch_dtype[0],
              "%s: config fields differ (theta %g/%g, type '%s'/'%s', dtype '%s'/'%s')", name,
              a.rope_theta, b.rope_theta, a.rope_type, b.rope_type, a.torch_dtype, b.torch_dtype);
    CHECK_MSG(pa.rot_dim == pb.rot_dim && pa.attn_scale == pb.attn_scale &&
                  pa.local_rope == pb.local_rope && pa.local_rope_theta == pb.local_rope_theta &&
                  pa.cache_window == pb.cache_window && pa.mixed_windows == pb.mixed_windows &&
                  !memcmp(pa.layer_window, pb.layer_window,
                          pa.n_layers * sizeof *pa.layer_window),
              "%s: plans differ", name);
    CHECK_MSG(same_rope(&pa, &a, &pb, &b, false), "%s: RoPE tables differ", name);
    if (pa.local_rope) CHECK_MSG(same_rope(&pa, &a, &pb, &b, true), "%s: local RoPE differs", name);
    lmc_arch_plan_free(&pa);
    lmc_arch_plan_free(&pb);
}

static void test_key_layouts(void) {
    check_same("llama",
               "{\"model_type\": \"llama\", " DIMS "\"rope_theta\": 500000.0,"
               " \"torch_dtype\": \"bfloat16\", \"rope_scaling\": {\"rope_type\": \"llama3\","
               " \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
               " \"original_max_position_embeddings\": 1024}}",
               "{\"model_type\": \"llama\", " DIMS "\"dtype\": \"bfloat16\","
               " \"rope_parameters\": {\"rope_theta\": 500000.0, \"rope_type\": \"llama3\","
               " \"factor\": 8.0, \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
               " \"original_max_position_embeddings\": 1024}}");
    check_same("mistral",
               "{\"model_type\": \"mistral\", " DIMS "\"rope_theta\": 1000000.0,"
               " \"sliding_window\": 32, \"torch_dtype\": \"float16\"}",
               "{\"model_type\": \"mistral\", " DIMS "\"sliding_window\": 32, \"dtype\":"
               " \"float16\", \"rope_parameters\": {\"rope_theta\": 1000000.0,"
               " \"rope_type\": \"default\"}}");
    check_same("qwen2",
               "{\"model_type\": \"qwen2\", " DIMS "\"rope_theta\": 1000000.0,"
               " \"torch_dtype\": \"bfloat16\", \"rope_scaling\": {\"type\": \"yarn\","
               " \"factor\": 4.0, \"original_max_position_embeddings\": 1024},"
               " \"sliding_window\": 32, \"use_sliding_window\": true, \"max_window_layers\": 2}",
               "{\"model_type\": \"qwen2\", " DIMS "\"dtype\": \"bfloat16\","
               " \"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"yarn\","
               " \"factor\": 4.0, \"original_max_position_embeddings\": 1024},"
               " \"sliding_window\": 32, \"use_sliding_window\": true, \"layer_types\":"
               " [\"full_attention\", \"full_attention\", \"sliding_attention\","
               " \"sliding_attention\", \"sliding_attention\", \"sliding_attention\"]}");
    check_same("qwen3",
               "{\"model_type\": \"qwen3\", " DIMS "\"rope_theta\": 1000000.0,"
               " \"torch_dtype\": \"float32\", \"rope_scaling\": {\"rope_type\": \"linear\","
               " \"factor\": 2.0}}",
               "{\"model_type\": \"qwen3\", " DIMS "\"dtype\": \"float32\","
               " \"rope_parameters\": {\"rope_theta\": 1000000.0, \"rope_type\": \"linear\","
               " \"factor\": 2.0}}");
    check_same("phi3",
               "{\"model_type\": \"phi3\", " DIMS "\"rope_theta\": 10000.0,"
               " \"partial_rotary_factor\": 0.75, \"rope_scaling\": null,"
               " \"torch_dtype\": \"bfloat16\"}",
               "{\"model_type\": \"phi3\", " DIMS "\"dtype\": \"bfloat16\","
               " \"rope_parameters\": {\"rope_theta\": 10000.0, \"rope_type\": \"default\","
               " \"partial_rotary_factor\": 0.75}}");
    check_same("gemma3_text",
               "{\"model_type\": \"gemma3_text\", " DIMS "\"rope_theta\": 1000000.0,"
               " \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 8.0},"
               " \"rope_local_base_freq\": 10000.0, \"sliding_window\": 8,"
               " \"sliding_window_pattern\": 3, \"query_pre_attn_scalar\": 32,"
               " \"torch_dtype\": \"bfloat16\"}",
               "{\"model_type\": \"gemma3_text\", " DIMS "\"dtype\": \"bfloat16\","
               " \"rope_parameters\": {\"full_attention\": {\"rope_theta\": 1000000.0,"
               " \"rope_type\": \"linear\", \"factor\": 8.0}, \"sliding_attention\":"
               " {\"rope_theta\": 10000.0, \"rope_type\": \"default\"}}, \"sliding_window\": 8,"
               " \"query_pre_attn_scalar\": 32, \"layer_types\": [\"sliding_attention\","
               " \"sliding_attention\", \"full_attention\", \"sliding_attention\","
               " \"sliding_attention\", \"full_attention\"]}");
}

static void test_gemma3_plan(void) {
    lmc_model_config c;
    lmc_arch_plan p;
    CHECK(!plan_of("{\"model_type\": \"gemma3_text\", " DIMS "\"sliding_window\": 8,"
                   " \"query_pre_attn_scalar\": 32, \"final_logit_softcapping\": null,"
                   " \"attn_logit_softcapping\": null}",
                   &c, &p));
    /* every 6th layer (the default pattern) attends in full */
    for (size_t i = 0; i < 6; i++) CHECK_EQ_INT(p.layer_window[i], i == 5 ? 0 : 8);
    CHECK(p.mixed_windows && p.cache_window == 0 && p.local_rope);
    CHECK(p.local_rope_theta == 10000.0);
    CHECK(p.attn_scale == (float)(1.0 / sqrt(32.0)));
    CHECK(p.embed_scale == (float)sqrt(64.0));
    CHECK(p.act == LMC_GLU_GELU_TANH && p.final_softcap == 0.0f && p.attn_softcap == 0.0f);
    CHECK(lmc_backend_supports(LMC_DEVICE_CPU, &p, &c) == LMC_OK);
    lmc_arch_plan_free(&p);
    CHECK_ERR(plan_of("{\"model_type\": \"gemma3_text\", " DIMS "\"sliding_window\": 8,"
                      " \"attn_logit_softcapping\": -1}", &c, &p),
              LMC_ERR_FORMAT, "attn_logit_softcapping must be null or a positive number");
    CHECK_ERR(plan_of("{\"model_type\": \"gemma3_text\", " DIMS "\"sliding_window\": 8,"
                      " \"hidden_activation\": \"silu\"}", &c, &p),
              LMC_ERR_UNSUPPORTED, "hidden_activation 'silu' is not supported");
    CHECK_ERR(plan_of("{\"model_type\": \"llama\", " DIMS "\"hidden_act\": \"gelu\"}", &c, &p),
              LMC_ERR_UNSUPPORTED, "hidden_act 'gelu' is not supported (silu)");
}

/* Refusals come from the backends' checks and name the feature. */
static void test_capabilities(void) {
    lmc_model_config c;
    lmc_arch_plan p;
    /* Phi-4-mini's shape, scaled down: head_dim 64, a quarter of it rotated
     * (8 frequencies), longrope */
    CHECK(!plan_of("{\"model_type\": \"phi3\", \"hidden_size\": 256, \"intermediate_size\": "
                   "512, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                   "\"num_key_value_heads\": 2, \"vocab_size\": 512, "
                   "\"max_position_embeddings\": 4096, \"partial_rotary_factor\": 0.25, "
                   "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1, 1, 1, 1, 1,"
                   " 1, 1, 1], \"long_factor\": [2, 2, 2, 2, 2, 2, 2, 2]}, "
                   "\"original_max_position_embeddings\": 1024}",
                   &c, &p));
    /* longrope runs on the CPU and, through the paged engine, on CUDA
     * (checked against transformers on a GPU); LoRA training refuses it by
     * name (test_lora_errors) */
    CHECK(c.head_dim == 64 && p.rot_dim == 16);
    CHECK(lmc_arch_plan_features(&p, &c) & LMC_FEAT_LONGROPE);
    CHECK(lmc_backend_supports(LMC_DEVICE_CPU, &p, &c) == LMC_OK);
    CHECK_MSG(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c) == LMC_OK, "%s", lmc_last_error());
    lmc_arch_plan_free(&p);
#ifdef LMC_HAVE_CUDA
    /* a head size the batched attention does not run: the single-sequence
     * caches would take it, but they have one table per layer */
    CHECK(!plan_of("{\"model_type\": \"phi3\", " DIMS "\"rope_scaling\": {\"type\": \"longrope\","
                   " \"short_factor\": [1, 1, 1, 1, 1, 1, 1, 1], \"long_factor\": [2, 2, 2, 2, 2,"
                   " 2, 2, 2]}, \"original_max_position_embeddings\": 1024}",
                   &c, &p));
    CHECK_ERR(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c), LMC_ERR_UNSUPPORTED,
              "device cuda: longrope rope scaling (phi3) with head_dim 16");
    lmc_arch_plan_free(&p);
    /* head sizes only the paged engine runs (Phi-3-mini's 96, Gemma 3's
     * 256; checked against transformers on a GPU), in the groupings it
     * runs */
    CHECK(!plan_of("{\"model_type\": \"phi3\", \"hidden_size\": 384, \"intermediate_size\": "
                   "688, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, "
                   "\"num_key_value_heads\": 2, \"vocab_size\": 512}",
                   &c, &p));
    CHECK(c.head_dim == 96);
    CHECK(lmc_backend_supports(LMC_DEVICE_CPU, &p, &c) == LMC_OK);
    CHECK_MSG(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c) == LMC_OK, "%s", lmc_last_error());
    lmc_arch_plan_free(&p);
    static const struct {
        int hq, hkv, d;
        bool ok;
    } shapes[] = {{4, 1, 256, true}, {8, 4, 256, true}, {8, 1, 256, false}, {4, 2, 80, false},
                  {16, 1, 96, false}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        char js[512];
        snprintf(js, sizeof js,
                 "{\"model_type\": \"gemma3_text\", \"hidden_size\": 256, "
                 "\"intermediate_size\": 688, \"num_hidden_layers\": 2, "
                 "\"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d, "
                 "\"vocab_size\": 512, \"sliding_window\": 8}",
                 shapes[i].hq, shapes[i].hkv, shapes[i].d);
        CHECK(!plan_of(js, &c, &p));
        lmc_status st = lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c);
        if (shapes[i].ok)
            CHECK_MSG(st == LMC_OK, "%d/%d heads of %d: %s", shapes[i].hq, shapes[i].hkv,
                      shapes[i].d, lmc_last_error());
        else
            CHECK_MSG(st == LMC_ERR_UNSUPPORTED && strstr(lmc_last_error(), "head_dim"),
                      "%d/%d heads of %d: %d %s", shapes[i].hq, shapes[i].hkv, shapes[i].d, st,
                      lmc_last_error());
        lmc_arch_plan_free(&p);
    }
#endif
    /* one factor per rotated frequency: a partial rotary embedding rotates 8
     * of the 16 values, so 4 factors each */
    CHECK(!plan_of("{\"model_type\": \"phi3\", " DIMS "\"partial_rotary_factor\": 0.5, "
                   "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1, 1, 1, 1],"
                   " \"long_factor\": [2, 2, 2, 2]}, \"original_max_position_embeddings\": 1024}",
                   &c, &p));
    lmc_rope r;
    CHECK(lmc_arch_rope_init(&p, &c, false, &r) == LMC_OK && r.n == 4 && r.inv_freq_long);
    lmc_rope_free(&r);
    lmc_arch_plan_free(&p);
    CHECK_ERR(plan_of("{\"model_type\": \"phi3\", " DIMS "\"partial_rotary_factor\": 0.5, "
                      "\"rope_scaling\": {\"type\": \"longrope\", \"short_factor\": [1, 1, 1, 1,"
                      " 1, 1, 1, 1], \"long_factor\": [2, 2, 2, 2, 2, 2, 2, 2]}}",
                      &c, &p),
              LMC_ERR_FORMAT, "longrope short_factor and long_factor have 8 entries; 8 rotated");
    CHECK(!plan_of("{\"model_type\": \"phi3\", " DIMS "\"partial_rotary_factor\": 0.5}", &c, &p));
    CHECK(p.rot_dim == 8);
    CHECK(lmc_backend_supports(LMC_DEVICE_CPU, &p, &c) == LMC_OK);
#ifdef LMC_HAVE_CUDA
    /* CUDA runs it on the engine only, whose attention takes no head_dim 16 */
    CHECK_ERR(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c), LMC_ERR_UNSUPPORTED,
              "device cuda: a partial rotary embedding (partial_rotary_factor) (phi3) with "
              "head_dim 16");
#endif
    lmc_arch_plan_free(&p);
    /* checked against transformers on a GPU: CUDA runs it (on the engine) */
    CHECK(!plan_of("{\"model_type\": \"phi3\", " DIMS_ENGINE "\"partial_rotary_factor\": 0.5}",
                   &c, &p));
    CHECK(p.rot_dim == 32);
    CHECK(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c) == LMC_OK);
    lmc_arch_plan_free(&p);
    /* a full-rotary phi3 is the llama layer with fused weights, split at upload */
    CHECK(!plan_of("{\"model_type\": \"phi3\", " DIMS "\"x\": 0}", &c, &p));
    CHECK(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c) == LMC_OK);
    lmc_arch_plan_free(&p);
    CHECK(!plan_of("{\"model_type\": \"gemma3_text\", " DIMS "\"sliding_window\": 8,"
                   " \"final_logit_softcapping\": 30.0}", &c, &p));
    CHECK(p.final_softcap == 30.0f);
    CHECK(lmc_backend_supports(LMC_DEVICE_CPU, &p, &c) == LMC_OK);
#ifdef LMC_HAVE_CUDA
    /* gemma3_text runs on CUDA's paged engine, in its attention's head sizes */
    CHECK_ERR(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c), LMC_ERR_UNSUPPORTED,
              "(gemma3_text) with head_dim 16");
#endif
    lmc_arch_plan_free(&p);
    /* gemma3_text without softcapping runs on CUDA (checked on a GPU) */
    CHECK(!plan_of("{\"model_type\": \"gemma3_text\", " DIMS_ENGINE "\"sliding_window\": 8}",
                   &c, &p));
    CHECK(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c) == LMC_OK);
    lmc_arch_plan_free(&p);
    /* transformers' Gemma 3 attention takes no softcap: refused by name */
    CHECK_ERR(plan_of("{\"model_type\": \"gemma3_text\", " DIMS "\"sliding_window\": 8,"
                      " \"attn_logit_softcapping\": 50.0}", &c, &p),
              LMC_ERR_UNSUPPORTED, "attn_logit_softcapping 50 is set, but gemma3_text attention");
    /* every feature of gemma3_text runs on CUDA (final softcapping and
     * query_pre_attn_scalar checked against transformers on a GPU) */
    CHECK(!plan_of("{\"model_type\": \"gemma3_text\", " DIMS_ENGINE "\"sliding_window\": 8,"
                   " \"final_logit_softcapping\": 30.0, \"query_pre_attn_scalar\": 32}",
                   &c, &p));
    CHECK(p.final_softcap == 30.0f && p.attn_softcap == 0.0f);
    CHECK(lmc_arch_plan_features(&p, &c) & LMC_FEAT_FINAL_SOFTCAP);
    CHECK(lmc_arch_plan_features(&p, &c) & LMC_FEAT_ATTN_SCALE);
    CHECK_MSG(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c) == LMC_OK, "%s", lmc_last_error());
    lmc_arch_plan_free(&p);
    CHECK(!plan_of("{\"model_type\": \"llama\", " DIMS "\"quantization\": {\"group_size\": 64,"
                   " \"bits\": 4, \"mode\": \"mxfp4\"}}", &c, &p));
    CHECK_ERR(lmc_backend_supports(LMC_DEVICE_CPU, &p, &c), LMC_ERR_UNSUPPORTED,
              "device cpu: quantization mode 'mxfp4' is not supported (affine)");
    CHECK_ERR(lmc_backend_supports(LMC_DEVICE_CUDA, &p, &c), LMC_ERR_UNSUPPORTED,
              "device cuda: quantization mode 'mxfp4' is not supported (affine)");
    lmc_arch_plan_free(&p);
}

int main(void) {
    test_registry();
    test_biases();
    test_key_layouts();
    test_gemma3_plan();
    test_capabilities();
    return check_summary("test_arch");
}
