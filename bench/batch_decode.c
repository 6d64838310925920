/* Batched greedy decode on the CUDA device over the paged KV cache.
 *   batch_decode MODEL_DIR [CONTEXT=512] [STEPS=32] [BATCHES=1,8,32,64,128]
 * For each batch size B: B sequences of CONTEXT prompt tokens are
 * prefilled (in batches of at most 2,048 rows), then STEPS decode steps of
 * B tokens each are timed (every step one forward_batch; only the greedy
 * ids cross to the host). Also measures the device copy bandwidth (bytes
 * read + written) in the same run. Prints one JSON line: per batch the
 * tokens/s, the step time, the bytes a step must read (weights + every
 * sequence's KV cache at its mean context) and that over the copy
 * bandwidth as a fraction of the step time (the memory-bound limit). */
#include <cuda_runtime.h>
#include <string.h>

#include "backend/cuda/cuda.h"
#include "copy_bandwidth.h"
#include "decode_common.h"
#include "engine/kv_pool.h"

#define BT 16

static int run_batch(lmc_model *m, const lmc_model_config *c, int B, size_t ctx, int steps,
                     double bw, size_t wbytes, int first) {
    size_t per_seq = (ctx + (size_t)steps + BT) / BT + 1;
    lmc_kv_pool *pool = NULL;
    if (m->vt->pool_new(m, (size_t)B * per_seq, BT, &pool)) {
        fprintf(stderr, "pool: %s\n", lmc_last_error());
        return 1;
    }
    lmc_kv_seq **seq = calloc((size_t)B, sizeof *seq);
    int32_t *prompt = malloc(ctx * sizeof *prompt), *next = calloc((size_t)B, sizeof *next);
    lmc_batch_item *it = calloc((size_t)B, sizeof *it);
    int rc = 1;
    for (int i = 0; i < B; i++)
        if (lmc_kv_seq_new(pool, lmc_model_seq_window(m), &seq[i])) goto out;
    /* prefill: whole prompts, as many sequences per step as fit 2,048 rows */
    for (int i = 0; i < B;) {
        int k = 0;
        size_t rows = 0;
        while (i + k < B && rows + ctx <= 2048) {
            bench_ids(prompt, ctx, c->vocab_size, 100u + (uint32_t)(i + k));
            int32_t *own = malloc(ctx * sizeof *own);
            memcpy(own, prompt, ctx * sizeof *own);
            it[k] = (lmc_batch_item){.seq = seq[i + k], .ids = own, .n = ctx, .next = &next[i + k]};
            rows += ctx;
            k++;
        }
        if (!k) {
            fprintf(stderr, "context %zu is over one step's 2048 rows\n", ctx);
            goto out;
        }
        lmc_status st = m->vt->forward_batch(m, pool, it, (size_t)k);
        for (int j = 0; j < k; j++) free((void *)it[j].ids);
        if (st) {
            fprintf(stderr, "prefill: %s\n", lmc_last_error());
            goto out;
        }
        i += k;
    }
    double ts[64];
    int timed = steps < 64 ? steps : 64;
    for (int s = 0; s < timed + 2; s++) { /* two warm-up steps */
        for (int i = 0; i < B; i++)
            it[i] = (lmc_batch_item){.seq = seq[i], .ids = &next[i], .n = 1, .next = &next[i]};
        double t0 = bench_now();
        if (m->vt->forward_batch(m, pool, it, (size_t)B)) {
            fprintf(stderr, "decode: %s\n", lmc_last_error());
            goto out;
        }
        if (s >= 2) ts[s - 2] = bench_now() - t0;
    }
    double step = bench_median(ts, timed);
    double kv_pos = 2.0 * c->num_hidden_layers * c->num_key_value_heads * c->head_dim * 2;
    double kv = kv_pos * (double)B * ((double)ctx + 2 + timed / 2.0);
    double limit = ((double)wbytes + kv) / bw;
    printf("%s{\"batch\": %d, \"step_s\": %.6e, \"tokens_per_s\": %.1f, \"weight_bytes\": %zu, "
           "\"kv_bytes\": %.0f, \"limit_s\": %.6e, \"fraction\": %.4f}",
           first ? "" : ", ", B, step, B / step, wbytes, kv, limit, limit / step);
    rc = 0;
out:
    for (int i = 0; i < B; i++) lmc_kv_seq_free(seq[i]);
    lmc_kv_pool_free(pool);
    free(seq);
    free(prompt);
    free(next);
    free(it);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s MODEL_DIR [CONTEXT] [STEPS] [BATCHES]\n", argv[0]);
        return 2;
    }
    size_t ctx = argc > 2 ? (size_t)atol(argv[2]) : 512;
    int steps = argc > 3 ? atoi(argv[3]) : 32;
    const char *list = argc > 4 ? argv[4] : "1,8,32,64,128";
    if (ctx < 1 || ctx > 2048 || steps < 1) {
        fprintf(stderr, "bad arguments\n");
        return 2;
    }
    bench_model b = {0};
    if (bench_load(argv[1], &b)) return 1;
    if (!b.m->vt->forward_batch) {
        fprintf(stderr, "this model has no batched path\n");
        return 1;
    }
    double bw = bench_copy_bandwidth();
    size_t wbytes = lmc_llama_cuda_weight_bytes(b.m);
    /* the embedding table is not streamed: one row per token */
    wbytes -= (size_t)b.cfg.vocab_size * b.cfg.hidden_size * 2 *
              (b.cfg.tie_word_embeddings ? 0 : 1);
    printf("{\"model\": \"%s\", \"context\": %zu, \"copy_bw\": %.4e, \"runs\": [", argv[1], ctx, bw);
    int first = 1, rc = 0;
    char *dup = strdup(list);
    for (char *tok = strtok(dup, ","); tok && !rc; tok = strtok(NULL, ",")) {
        rc = run_batch(b.m, &b.cfg, atoi(tok), ctx, steps, bw, wbytes, first);
        first = 0;
        fflush(stdout);
    }
    printf("]}\n");
    free(dup);
    bench_unload(&b);
    return rc;
}
