/* Rotary position embedding of the llama family, shared by the CPU model,
 * the CUDA model and LoRA training so that all three rotate alike.
 *
 * Supported rope types (config.json rope_scaling / rope_parameters):
 * default, linear, llama3, yarn and longrope. The angle of frequency i at
 * position p is p * inv_freq[i]; yarn and longrope also scale cos and sin
 * by attn_factor (so q and k both carry it), as transformers does.
 * longrope has a second table: transformers picks it for a forward whose
 * positions reach past original_max_position_embeddings (the longest
 * position + 1 > long_after), and keys already cached keep the rotation
 * they were written with. */
#ifndef LMC_MODELS_ROPE_H
#define LMC_MODELS_ROPE_H
#include "formats/config.h"
#include "lmc.h"
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    float *inv_freq;   /* head_dim / 2 entries, owned */
    size_t n;          /* head_dim / 2 */
    float attn_factor; /* multiplies cos and sin; 1 except for yarn and longrope */
    float *inv_freq_long; /* longrope's table past long_after positions, owned; else NULL */
    int64_t long_after;
} lmc_rope;

/* The table of a forward whose sequence reaches `len` positions. */
static inline const float *lmc_rope_table(const lmc_rope *r, size_t len) {
    return r->inv_freq_long && len > (size_t)r->long_after ? r->inv_freq_long : r->inv_freq;
}

/* The rope types whose tables lmc_rope_init computes (the backends'
 * capability checks refuse the others by name: dynamic, ...). */
#define LMC_ROPE_TYPES "default, linear, llama3, yarn, longrope"
bool lmc_rope_type_computed(const char *type);

/* Check the rope type and its parameters (a positive head_dim and
 * rope_theta are the caller's checks). Errors name config.json and the
 * field: an unsupported type (dynamic, ...) is
 * LMC_ERR_UNSUPPORTED, a bad value LMC_ERR_FORMAT. */
lmc_status lmc_rope_check(const lmc_model_config *c);

/* Check, then fill r with the frequencies and attention factor of the
 * config (free with lmc_rope_free; r is zeroed on failure). */
lmc_status lmc_rope_init(const lmc_model_config *c, lmc_rope *r);
void lmc_rope_free(lmc_rope *r);

#endif
