/* Architecture descriptions: what makes llama, qwen2, phi3, gemma3_text,
 * ... differ, stated once per architecture as data (src/models/arch/<name>.c)
 * and looked up by model_type in one registry table (arch/registry.c).
 *
 * A descriptor says which features the decoder has; lmc_arch_plan_init
 * resolves it against one checkpoint's config.json into a plan (per-layer
 * windows, rotary width, scales, biases). Backends execute plans and state
 * in one capability check each which plans they can run
 * (lmc_cpu_supports, lmc_cuda_supports). docs/adding-an-architecture.md
 * walks through the fields. */
#ifndef LMC_MODELS_ARCH_H
#define LMC_MODELS_ARCH_H
#include "formats/config.h"
#include "lmc.h"
#include "models/rope.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

/* RMSNorm weight form: x * rsqrt(mean(x^2) + eps) * w, or * (1 + w). */
typedef enum { LMC_NORM_W, LMC_NORM_ONE_PLUS_W } lmc_norm_form;

/* The gated MLP's activation: act(gate(x)) * up(x). */
typedef enum {
    LMC_GLU_SILU,      /* SwiGLU */
    LMC_GLU_GELU_TANH, /* GeGLU with GELU's tanh approximation */
} lmc_glu_act;

/* Whether a group of projections carries a bias. */
typedef enum {
    LMC_BIAS_NONE,   /* never */
    LMC_BIAS_ALWAYS, /* always (qwen2's q/k/v) */
    LMC_BIAS_CONFIG, /* when the config says so: attention_bias / mlp_bias */
} lmc_bias_rule;

/* Which layers use sliding-window attention. */
typedef enum {
    /* layer_types when given, else every layer when sliding_window > 0 */
    LMC_LAYERS_ALL,
    /* layer_types, else layers from max_window_layers (28) on (qwen2/3) */
    LMC_LAYERS_MAX_WINDOW,
    /* layer_types, else all but every sliding_window_pattern-th (6) layer,
     * which attends in full (gemma3) */
    LMC_LAYERS_PATTERN,
} lmc_layer_rule;

/* Tensor names inside one decoder layer ("<prefix>layers.N.<name>") and
 * around it. Modules are named without ".weight"; a fused module holds
 * its parts' rows stacked in the order given (qkv: q, k, v; gate_up:
 * gate, up). Unused entries (per the descriptor's features) may be NULL. */
typedef struct {
    const char *embed, *final_norm;          /* "embed_tokens", "norm.weight" */
    const char *in_norm, *post_attn_norm;    /* "input_layernorm.weight", ... */
    const char *pre_ff_norm, *post_ff_norm;  /* sandwich norms */
    const char *q, *k, *v, *o;               /* "self_attn.q_proj", ... */
    const char *qkv;                         /* fused q/k/v */
    const char *q_norm, *k_norm;             /* "self_attn.q_norm.weight", ... */
    const char *gate, *up, *down;            /* "mlp.gate_proj", ... */
    const char *gate_up;                     /* fused gate/up */
} lmc_arch_names;

/* The llama naming every architecture here shares (fused names included). */
extern const lmc_arch_names lmc_arch_hf_names;

typedef struct lmc_arch_plan lmc_arch_plan;
typedef struct lmc_arch_desc lmc_arch_desc;

struct lmc_arch_desc {
    const char *model_type;       /* canonical config.json model_type */
    const char *const *aliases;   /* other model_types it serves (NULL-ended), or NULL */
    lmc_norm_form norm;
    /* Sandwich norms: the attention output and the MLP output are normed
     * before their residual adds, and the MLP input has its own norm
     * (pre_ff_norm); post_attn_norm then follows the attention. Without
     * them, post_attn_norm is the MLP's input norm. */
    bool sandwich_norms;
    bool qk_norm;                 /* per-head RMSNorm of q and k before RoPE */
    bool fused_qkv, fused_gate_up;/* stored fused (names.qkv / names.gate_up) */
    lmc_bias_rule qkv_bias, o_bias, mlp_bias;
    lmc_glu_act act;              /* the activation, named by act_key */
    const char *act_key;          /* config key: "hidden_act" or "hidden_activation" */
    bool embed_scale;             /* embeddings times sqrt(hidden_size), in the model dtype */
    bool partial_rotary;          /* honours partial_rotary_factor */
    lmc_layer_rule layers;
    /* Sliding layers have their own (unscaled) RoPE table:
     * rope_parameters.sliding_attention, else rope_local_base_freq. */
    bool local_rope;
    /* Attention scale query_pre_attn_scalar^-1/2 (else head_dim^-1/2). */
    bool query_pre_attn_scalar;
    /* Honours final_logit_softcapping / attn_logit_softcapping (a non-null
     * value in any other architecture is ignored by transformers too). */
    bool softcap;
    /* attn_logit_softcapping is in the config but transformers' attention
     * for this architecture takes no softcap (Gemma 3): a non-null value is
     * refused by name rather than applied or silently dropped. */
    bool attn_softcap_refused;
    bool vlm_text;                /* may serve as a VLM's text model */
    const lmc_arch_names *names;
    /* Optional: check / read the architecture's own config keys into the
     * plan after the shared ones (e.g. gemma3's hidden_activation). */
    lmc_status (*parse)(const lmc_arch_desc *d, const lmc_model_config *c, json_object *raw,
                        lmc_arch_plan *p);
};

/* One checkpoint's resolved description, executed by a backend. */
struct lmc_arch_plan {
    const lmc_arch_desc *arch;
    size_t n_layers;
    bool qkv_bias, o_bias, mlp_bias;
    lmc_glu_act act;
    double partial_rotary_factor; /* 1 for a full rotary embedding */
    size_t rot_dim;               /* rotated leading values of each head */
    float attn_scale;
    float embed_scale;            /* 0: none (fp32; backends round to their dtype) */
    float final_softcap, attn_softcap; /* 0: none */
    size_t *layer_window;         /* per layer: the window, 0 for full attention */
    size_t cache_window;          /* the window when every layer slides, else 0 */
    bool mixed_windows;           /* some layers slide, others attend in full */
    bool local_rope;              /* sliding layers use the local table */
    double local_rope_theta;
};

/* Features a plan may use beyond the plain llama layer (RMSNorm weights as
 * stored, SwiGLU, one full-width RoPE table, head_dim^-1/2 attention scale,
 * one window for every layer, separate projections; q/k norms and biases
 * are plain). A backend's capability check passes the set it executes. */
typedef enum {
    LMC_FEAT_PARTIAL_ROTARY = 1u << 0, /* partial_rotary_factor < 1 */
    LMC_FEAT_FUSED = 1u << 1,          /* fused q/k/v or gate/up stored */
    LMC_FEAT_NORM_ONE_PLUS_W = 1u << 2,
    LMC_FEAT_SANDWICH_NORMS = 1u << 3,
    LMC_FEAT_GEGLU = 1u << 4,
    LMC_FEAT_EMBED_SCALE = 1u << 5,
    LMC_FEAT_ATTN_SCALE = 1u << 6,     /* query_pre_attn_scalar != head_dim */
    LMC_FEAT_LOCAL_ROPE = 1u << 7,     /* a second RoPE table (sliding layers) */
    LMC_FEAT_MIXED_WINDOWS = 1u << 8,  /* sliding and full layers in one model */
    LMC_FEAT_FINAL_SOFTCAP = 1u << 9,
    LMC_FEAT_ATTN_SOFTCAP = 1u << 10,
    LMC_FEAT_LONGROPE = 1u << 11,      /* two RoPE tables, picked per forward */
    LMC_FEAT_ALL = (1u << 12) - 1,
} lmc_arch_feature;

/* The features p uses (a set of lmc_arch_feature bits). */
unsigned lmc_arch_plan_features(const lmc_arch_plan *p, const lmc_model_config *c);
/* What a feature bit means, for messages ("longrope rope scaling", ...). */
const char *lmc_arch_feature_name(unsigned bit);
/* The shared part of every capability check: the rope type must be one
 * rope.c computes, a quantization mode affine, and every feature the plan
 * uses in `supported`. Else LMC_ERR_UNSUPPORTED "<who>: <what> (<model
 * type>) is not supported<hint>". */
lmc_status lmc_arch_require(const lmc_arch_plan *p, const lmc_model_config *c,
                            unsigned supported, const char *who, const char *hint);

/* The descriptor serving model_type (an alias included), NULL if none. */
const lmc_arch_desc *lmc_arch_find(const char *model_type);
/* Every registered descriptor (for the model registry and tests). */
const lmc_arch_desc *const *lmc_arch_all(size_t *n);

/* Validate the config for the architecture (dimensions, activation, RoPE
 * parameters, layer kinds) and resolve it into p (free with
 * lmc_arch_plan_free; p is zeroed on failure). raw may be NULL (no
 * architecture-specific keys). Errors name config.json and the key. */
lmc_status lmc_arch_plan_init(const lmc_model_config *c, json_object *raw, lmc_arch_plan *p);
lmc_status lmc_arch_plan_copy(const lmc_arch_plan *src, lmc_arch_plan *dst);
void lmc_arch_plan_free(lmc_arch_plan *p);

/* The RoPE table of the full-attention layers (local false) or of the
 * sliding layers (local true, when p->local_rope), over p->rot_dim. */
lmc_status lmc_arch_rope_init(const lmc_arch_plan *p, const lmc_model_config *c, bool local,
                              lmc_rope *r);

/* A number from config.json (int or double), fallback when absent/null;
 * *bad set when present but not a number. */
double lmc_arch_json_number(json_object *o, double fallback, bool *bad);

#endif
