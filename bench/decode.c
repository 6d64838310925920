/* Batch-1 greedy decode speed on the CUDA device.
 *   decode MODEL_DIR [PROMPT_TOKENS=128] [NEW_TOKENS=256] [REPS=3]
 * Prefills a prompt, then generates NEW_TOKENS one at a time through the
 * on-device greedy hook (only the token id crosses to the host each step,
 * as a generation loop does). Prints one JSON line: the median seconds per
 * token, tokens/s, and the bytes a step must read (weights + the KV cache
 * at the mean context), from which bench/run_bench.py derives the fraction
 * of the bandwidth limit. */
#include "decode_common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [PROMPT] [NEW] [REPS]\n", argv[0]);
        return 2;
    }
    size_t np = argc > 2 ? (size_t)atol(argv[2]) : 128;
    size_t ng = argc > 3 ? (size_t)atol(argv[3]) : 256;
    int reps = argc > 4 ? atoi(argv[4]) : 3;
    if (np < 1 || ng < 2 || reps < 1 || reps > 50) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    bench_model b = {0};
    double t0 = bench_now();
    if (bench_load(argv[1], &b)) return 1;
    double t_load = bench_now() - t0;
    lmc_model *m = b.m;
    if (!m->vt->forward_greedy) {
        fprintf(stderr, "model has no device greedy hook\n");
        return 1;
    }
    int32_t *prompt = malloc(np * sizeof *prompt);
    bench_ids(prompt, np, b.cfg.vocab_size, 7);
    lmc_kv_cache *c = NULL;
    if (lmc_kv_cache_new(m, &c)) {
        fprintf(stderr, "cache: %s\n", lmc_last_error());
        return 1;
    }
    double per_tok[64];
    int32_t first_tokens[8] = {0};
    for (int r = 0; r < reps + 1; r++) { /* first round warms up */
        lmc_kv_cache_clear(c);
        int32_t next;
        if (m->vt->forward_greedy(m, c, prompt, np, &next, NULL)) goto fail;
        double ts = bench_now();
        for (size_t i = 0; i < ng; i++) {
            if (i < 8) first_tokens[i] = next;
            int32_t t = next;
            if (m->vt->forward_greedy(m, c, &t, 1, &next, NULL)) goto fail;
        }
        double dt = bench_now() - ts;
        if (r > 0) per_tok[r - 1] = dt / (double)ng;
    }
    double med = bench_median(per_tok, reps);
    const lmc_model_config *cf = &b.cfg;
    double kv_per_pos = 2.0 * cf->num_hidden_layers * cf->num_key_value_heads * cf->head_dim * 2;
    double mean_ctx = np + ng / 2.0;
    printf("{\"model\": \"%s\", \"prompt\": %zu, \"new_tokens\": %zu, \"load_s\": %.2f, "
           "\"s_per_token\": %.6e, \"tokens_per_s\": %.2f, \"weight_bytes\": %zu, "
           "\"kv_bytes_per_token\": %.0f, \"graph\": %d, \"first_tokens\": [%d, %d, %d, %d]}\n",
           argv[1], np, ng, t_load, med, 1.0 / med, lmc_llama_cuda_weight_bytes(m),
           kv_per_pos * mean_ctx, lmc_llama_cuda_graph_state(c), first_tokens[0], first_tokens[1], first_tokens[2],
           first_tokens[3]);
    lmc_kv_cache_free(c);
    free(prompt);
    bench_unload(&b);
    return 0;
fail:
    fprintf(stderr, "decode: %s\n", lmc_last_error());
    return 1;
}
