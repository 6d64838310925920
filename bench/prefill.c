/* Prefill speed on the CUDA device.
 *   prefill MODEL_DIR [TOKENS=2048] [REPS=5]
 * Times one forward of TOKENS prompt tokens into an empty cache (last
 * position's logits copied back, as generation needs) and prints one JSON
 * line with the median seconds and the FLOPs it implies: 2 per weight
 * element per token for the layer matrices, the lm_head for one row, and
 * causal attention (2 matmuls of n^2/2 * head_dim per head and layer). */
#include "decode_common.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [TOKENS] [REPS]\n", argv[0]);
        return 2;
    }
    size_t n = argc > 2 ? (size_t)atol(argv[2]) : 2048;
    int reps = argc > 3 ? atoi(argv[3]) : 5;
    if (n < 2 || reps < 1 || reps > 50) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    bench_model b = {0};
    if (bench_load(argv[1], &b)) return 1;
    lmc_model *m = b.m;
    const lmc_model_config *cf = &b.cfg;
    int32_t *ids = malloc(n * sizeof *ids);
    float *logits = malloc((size_t)cf->vocab_size * sizeof *logits);
    bench_ids(ids, n, cf->vocab_size, 11);
    lmc_kv_cache *c = NULL;
    if (lmc_kv_cache_new(m, &c)) goto fail;
    double t[64];
    for (int r = 0; r < reps + 2; r++) {
        lmc_kv_cache_clear(c);
        double t0 = bench_now();
        if (lmc_model_forward(m, c, ids, n, logits, false)) goto fail;
        if (r >= 2) t[r - 2] = bench_now() - t0;
    }
    double med = bench_median(t, reps);
    double H = (double)cf->hidden_size, I = (double)cf->intermediate_size;
    double qd = (double)cf->num_attention_heads * cf->head_dim;
    double kvd = (double)cf->num_key_value_heads * cf->head_dim;
    double per_layer = H * (qd + 2 * kvd) + qd * H + 3 * H * I;
    double dn = (double)n;
    double flops = 2.0 * dn * per_layer * cf->num_hidden_layers +
                   2.0 * H * cf->vocab_size +
                   2.0 * 2.0 * (dn * dn / 2.0) * cf->head_dim * cf->num_attention_heads *
                       cf->num_hidden_layers;
    printf("{\"model\": \"%s\", \"tokens\": %zu, \"seconds\": %.6e, \"flops\": %.6e, "
           "\"tflops\": %.1f}\n",
           argv[1], n, med, flops, flops / med / 1e12);
    lmc_kv_cache_free(c);
    free(ids);
    free(logits);
    bench_unload(&b);
    return 0;
fail:
    fprintf(stderr, "prefill: %s\n", lmc_last_error());
    return 1;
}
