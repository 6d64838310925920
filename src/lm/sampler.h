/* Internal sampler helpers shared by generation and speculative decoding. */
#ifndef LMC_LM_SAMPLER_H
#define LMC_LM_SAMPLER_H
#include "lmc.h"

/* Deterministic PRNG (xoshiro256** seeded through splitmix64). */
typedef struct {
    uint64_t s[4];
} lmc_rng;
void lmc_rng_seed(lmc_rng *r, uint64_t seed);
uint64_t lmc_rng_next(lmc_rng *r);
double lmc_rng_uniform(lmc_rng *r); /* [0, 1) with 53 random bits */

/* The n best entries of `logprobs` (descending, ties by lower id). */
void lmc_top_n(const float *logprobs, size_t vocab, size_t n, int32_t *ids, float *vals);

/* Plain argmax: temperature 0, no logit bias, no repetition penalty. */
bool lmc_sampler_is_greedy(const lmc_sampler *s);
size_t lmc_sampler_vocab(const lmc_sampler *s);
int32_t lmc_sampler_top_logprobs(const lmc_sampler *s);

/* lmc_sampler_sample restricted to the tokens whose bit is set in
 * `allowed` (bit i of allowed[i / 32]; NULL: all): the others get -inf
 * after the logits processors, so the reported log-probabilities are those
 * of the constrained distribution. */
lmc_status lmc_sampler_sample_masked(lmc_sampler *s, float *logits, const int32_t *recent,
                                     size_t n_recent, const uint32_t *allowed, int32_t *token,
                                     float *logprob);

#endif
