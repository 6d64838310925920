/* Token-mask cost of constrained decoding:
 *   mask_bench [TOKENIZER_DIR] [DECODE_STEP_MS]
 * For a few JSON schemas, walks a seeded random path through the grammar
 * (each step: compute the mask, draw an allowed token) with the Qwen3
 * tokenizer's 151k-token vocabulary, and times per step:
 *   cold   the first pass over a fresh grammar (automaton states, byte
 *          transitions and masks built as they are met),
 *   warm   a second pass with another seed over the same grammar (what a
 *          server sees once a schema has been used),
 *   walk   the mask without the per-state cache, every transition built
 *          (the trie walk with JSON string slices),
 *   naive  the peer: an automaton run over every token's bytes (same
 *          automaton, no trie), on the same states in the same run.
 * Each is printed in microseconds and as a fraction of DECODE_STEP_MS (the
 * decode step the mask must hide behind; default 1.164 ms, the README's
 * Llama-3.2-1B figure on an H100: 859 tokens/s). */
#include "grammar/matcher.h"
#include "lm/sampler.h"
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const struct {
    const char *name, *schema;
} SCHEMAS[] = {
    {"person", "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":24},"
               "\"age\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":150},\"email\":{\"type\":\"string\","
               "\"pattern\":\"^[a-z0-9.]{1,12}@[a-z]{2,8}\\\\.(com|org)$\"},\"tags\":{\"type\":\"array\","
               "\"items\":{\"type\":\"string\",\"maxLength\":10},\"maxItems\":4}},\"required\":[\"name\",\"age\"]}"},
    {"tool-call", "{\"type\":\"object\",\"properties\":{\"name\":{\"enum\":[\"get_weather\",\"search\"]},"
                  "\"arguments\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"},\"unit\":"
                  "{\"enum\":[\"celsius\",\"fahrenheit\"]},\"days\":{\"type\":\"integer\",\"minimum\":1,"
                  "\"maximum\":14}},\"required\":[\"city\"]}},\"required\":[\"name\",\"arguments\"]}"},
    {"json-object", "{\"type\":\"object\"}"},
};

#define STEPS 48

typedef struct {
    double sum, max;
    size_t n;
} acc;
static void add(acc *a, double t) {
    a->sum += t;
    if (t > a->max) a->max = t;
    a->n++;
}

/* One path: returns steps taken; the states met are left in the grammar. */
static int run_path(lmc_grammar *g, const lmc_vocab_index *vi, const int32_t *eos, size_t n_eos,
                    uint64_t seed, size_t vocab, acc *normal, acc *walk, acc *naive) {
    lmc_matcher *m = NULL;
    if (lmc_matcher_new(g, vi, eos, n_eos, &m)) return -1;
    lmc_rng r;
    lmc_rng_seed(&r, seed);
    int32_t *allowed = malloc(vocab * sizeof *allowed);
    int steps = 0;
    for (; steps < STEPS; steps++) {
        const uint32_t *bits = NULL;
        double t0 = now();
        if (lmc_matcher_mask(m, &bits)) break;
        double t1 = now();
        if (normal) add(normal, t1 - t0);
        if (walk) {
            t0 = now();
            lmc_matcher_mask_uncached(m, false, &bits);
            add(walk, now() - t0);
        }
        if (naive) {
            t0 = now();
            lmc_matcher_mask_uncached(m, true, &bits);
            add(naive, now() - t0);
        }
        size_t n = 0;
        bool eos_ok = false;
        for (size_t t = 0; t < vocab; t++)
            if ((bits[t >> 5] >> (t & 31)) & 1u) {
                bool is_eos = false;
                for (size_t k = 0; k < n_eos; k++) is_eos |= eos[k] == (int32_t)t;
                if (is_eos) eos_ok = true;
                else allowed[n++] = (int32_t)t;
            }
        if (eos_ok && (n == 0 || lmc_rng_uniform(&r) < 0.3)) break;
        if (n == 0) break;
        /* prefer short tokens now and then, so strings and numbers end */
        int32_t tok = allowed[lmc_rng_next(&r) % n];
        if (lmc_matcher_accept(m, tok)) break;
    }
    free(allowed);
    lmc_matcher_free(m);
    return steps;
}

int main(int argc, char **argv) {
    const char *dir = argc > 1 ? argv[1] : ".cache/assets/tokenizers/qwen3";
    double step_ms = argc > 2 ? atof(argv[2]) : 1.164;
    lmc_tokenizer *tok = NULL;
    if (lmc_tokenizer_load(dir, &tok)) {
        fprintf(stderr, "mask_bench: %s\n", lmc_last_error());
        return 1;
    }
    size_t vocab = lmc_tokenizer_vocab_size(tok);
    const int32_t *eos = NULL;
    size_t n_eos = lmc_tokenizer_eos_ids(tok, &eos);
    double t0 = now();
    const lmc_vocab_index *vi = NULL;
    if (lmc_vocab_index_shared(tok, vocab, &vi)) {
        fprintf(stderr, "mask_bench: %s\n", lmc_last_error());
        return 1;
    }
    printf("tokenizer %s: %zu tokens, trie of %zu nodes built in %.1f ms (once per tokenizer)\n",
           dir, vocab, lmc_vocab_index_nodes(vi), 1e3 * (now() - t0));
    printf("decode step %.3f ms; per-step mask time (mean / max), %% of the decode step\n", step_ms);
    printf("%-12s %6s | %-22s | %-22s | %-22s | %-22s | %s\n", "schema", "steps", "cold",
           "warm (new path)", "mask, no state cache", "naive per-token (peer)", "naive/walk");
    double worst_warm = 0;
    for (size_t i = 0; i < sizeof SCHEMAS / sizeof SCHEMAS[0]; i++) {
        lmc_grammar *g = NULL;
        if (lmc_grammar_from_json_schema(SCHEMAS[i].schema, &g)) {
            fprintf(stderr, "mask_bench: %s\n", lmc_last_error());
            return 1;
        }
        acc cold = {0}, warm = {0}, walk = {0}, naive = {0};
        int steps = 0;
        for (uint64_t s = 1; s <= 4; s++) steps += run_path(g, vi, eos, n_eos, s, vocab, &cold, NULL, NULL);
        for (uint64_t s = 5; s <= 8; s++) run_path(g, vi, eos, n_eos, s, vocab, &warm, NULL, NULL);
        run_path(g, vi, eos, n_eos, 1, vocab, NULL, &walk, &naive);
        double us[4] = {1e6 * cold.sum / cold.n, 1e6 * warm.sum / warm.n, 1e6 * walk.sum / walk.n,
                        1e6 * naive.sum / naive.n};
        double mx[4] = {1e6 * cold.max, 1e6 * warm.max, 1e6 * walk.max, 1e6 * naive.max};
        printf("%-12s %6d |", SCHEMAS[i].name, steps);
        for (int k = 0; k < 4; k++)
            printf(" %7.1f / %7.1f us %5.1f%% |", us[k], mx[k], 100.0 * us[k] / (1e3 * step_ms));
        printf(" %.1fx\n", us[3] / us[2]);
        if (us[1] > worst_warm) worst_warm = us[1];
        lmc_grammar_free(g);
    }
    printf("worst warm mean: %.1f us = %.1f%% of a %.3f ms decode step\n", worst_warm,
           100.0 * worst_warm / (1e3 * step_ms), step_ms);
    lmc_tokenizer_free(tok);
    return 0;
}
