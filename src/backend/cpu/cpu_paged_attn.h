/* Causal grouped-query attention over a paged KV cache (src/engine's block
 * pool): the keys and values of a sequence live in fixed-size blocks named
 * by its block table, so sequences of a batch share one pool and common
 * prefixes share blocks. Query rows are computed like lmc_cpu_attention's
 * row path (scores and probabilities rounded to round_dt the same way), so
 * a sequence run in a batch gets the results it gets alone. */
#ifndef LMC_BACKEND_CPU_PAGED_ATTN_H
#define LMC_BACKEND_CPU_PAGED_ATTN_H
#include "formats/safetensors.h"
#include "lmc.h"
#include <stddef.h>
#include <stdint.h>

/* One layer of one sequence's cache: block b of the table holds, at
 * pool + table[b] * block_floats + k_off, keys [kv_heads][block_tokens]
 * [head_dim] (values likewise at v_off) for positions [b*B, (b+1)*B). */
typedef struct {
    const float *pool;
    const uint32_t *table;
    size_t n_table, block_tokens, block_floats, k_off, v_off;
    size_t first_live; /* positions below are not held */
} lmc_cpu_paged_kv;

/* n query rows q[n][heads*head_dim] at positions pos0 .. pos0+n-1, whose
 * keys are already in the cache; row i sees positions j <= pos0 + i and,
 * with window > 0, j > pos0 + i - window. out: same shape as q. */
typedef struct {
    size_t n, heads, kv_heads, head_dim, pos0, window;
    float scale;
    lmc_dtype round_dt;
    float softcap; /* > 0: scores softcapped as in lmc_cpu_attention */
} lmc_cpu_paged_attn_args;

lmc_status lmc_cpu_paged_attention(const lmc_cpu_paged_kv *kv, const lmc_cpu_paged_attn_args *a,
                                   const float *q, float *out);

#endif
