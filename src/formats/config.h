/* config.json (typed subset + raw body) and the generation_config.json eos
 * override, as the load factory reads them. */
#ifndef LMC_FORMATS_CONFIG_H
#define LMC_FORMATS_CONFIG_H
#include "lmc.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

#define LMC_MAX_CONFIG_BYTES (16u << 20)
#define LMC_MAX_EOS 64

/* longrope factor lists: one per rotated frequency (head_dim / 2). */
#define LMC_MAX_ROPE_FACTORS 512

typedef struct {
    char model_type[64];          /* verbatim from config.json */
    int64_t vocab_size;
    int64_t hidden_size;
    int64_t intermediate_size;
    int64_t num_hidden_layers;
    int64_t num_attention_heads;
    int64_t num_key_value_heads;  /* defaults to num_attention_heads */
    int64_t head_dim;             /* defaults to hidden_size / heads */
    int64_t max_position_embeddings;
    double rms_norm_eps;
    double rope_theta;            /* default 10000 */
    /* rope_scaling: type "" (none), "linear", "llama3", "dynamic", "yarn" */
    char rope_type[16];
    double rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int64_t rope_original_max_position;
    /* yarn: beta_fast / beta_slow (0 = absent: 32 / 1), attention_factor
     * (NAN = absent: derived from factor, mscale and mscale_all_dim, 0 =
     * absent), truncate (default true). A null yarn factor becomes
     * max_position_embeddings / original_max_position_embeddings. */
    double rope_beta_fast, rope_beta_slow, rope_attention_factor;
    double rope_mscale, rope_mscale_all_dim;
    bool rope_truncate;
    /* longrope (also the legacy type "su"): one factor per rotated
     * frequency for forwards within original_max_position_embeddings
     * (short) and past it (long), rope_n_factors each. A longrope config
     * without "factor" takes max_position_embeddings / original; its
     * attention_factor is rope_attention_factor as for yarn. */
    float rope_short_factor[LMC_MAX_ROPE_FACTORS], rope_long_factor[LMC_MAX_ROPE_FACTORS];
    int rope_n_factors;
    bool tie_word_embeddings;
    bool attention_bias;          /* as given (qwen2's q/k/v bias is its description's) */
    bool mlp_bias;
    int64_t sliding_window;       /* 0 = none (also 0 when use_sliding_window false) */
    char hidden_act[32];          /* "silu" */
    /* MLX quantization ("quantization": {"group_size", "bits", "mode"} plus
     * per-module entries "<module path>": false | true | {group_size, bits},
     * which are checked for form and counted; the weights binder reads
     * each module's setting off its tensor shapes when there are any). */
    bool quantized;
    int64_t q_group_size, q_bits;
    char q_mode[16];              /* "affine" unless given */
    int64_t q_n_overrides;
    /* eos after the generation_config.json override (truthy rule) */
    int32_t eos_ids[LMC_MAX_EOS];
    int n_eos;
    int64_t bos_token_id;         /* -1 when absent */
    char torch_dtype[16];
} lmc_model_config;

/* Read <dir>/config.json once (bounded, non-blocking, regular file only),
 * fill the typed subset, apply <dir>/generation_config.json's eos_token_id
 * when truthy (nonzero scalar or non-empty list; a malformed or non-regular
 * generation_config.json is ignored), and hand back the parsed JSON (for
 * architecture-specific keys) and the raw text. Either out may be NULL. */
lmc_status lmc_config_load(const char *dir, lmc_model_config *cfg, json_object **json_out,
                           char **raw_out);
/* The truthy eos rule shared by LM and VLM loading: a nonzero scalar id, or
 * a non-empty list (entries that are not valid ids dropped, the rest kept in
 * order, zeros included). Returns 1 and fills ids/n, 0 for "not truthy",
 * -1 when the list is longer than LMC_MAX_EOS. */
int lmc_eos_truthy(json_object *v, int32_t *ids, int *n);
/* <dir>/generation_config.json's eos_token_id: *override is true when it is
 * truthy, and only then are ids/n replaced by it (n may be 0 when no list
 * entry was a valid id).
 * Best effort: a missing, unreadable, non-regular or malformed file means no
 * override; only an over-long list is an error (LMC_ERR_LIMIT). */
lmc_status lmc_generation_eos(const char *dir, int32_t ids[LMC_MAX_EOS], int *n,
                              bool *override);
/* Parse from an in-memory document (`what` names it in errors). */
lmc_status lmc_config_parse(const char *text, size_t len, const char *what,
                            lmc_model_config *cfg, json_object **json_out);

#endif
