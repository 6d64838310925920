/* CPU model speed on a synthetic llama-shaped bf16 checkpoint: prefill
 * tokens/s and single-token decode tokens/s (median of runs), per second
 * of wall time and per second of process CPU time (the steadier figure on
 * a shared machine; run with OMP_NUM_THREADS=1 to compare work). The
 * checkpoint (random weights, seeded) is written to DIR on first use, so
 * two builds can be timed on the same files; bench/cpu_decode.sh runs a
 * baseline build and this one alternately and prints the ratios.
 *   cpu_decode DIR [PREFILL=128] [DECODE=32] [RUNS=5] */
#include "formats/safetensors.h"
#include "models/model.h"
#if __has_include("backend/backend.h")
#include "backend/backend.h"
#define CREATE lmc_model_create
#else /* a build from before src/backend, as a baseline */
#define CREATE lmc_llama_create
#endif
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

enum { H = 1024, I = 2816, L = 8, NH = 16, NKV = 4, HD = 64, V = 16000 };

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static uint16_t *random_bf16(size_t n, float scale, uint32_t *seed) {
    uint16_t *p = malloc(n * sizeof *p);
    for (size_t i = 0; p && i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        float u = (float)(*seed >> 8) / 16777216.0f * 2.0f - 1.0f;
        p[i] = lmc_f32_to_bf16(u * scale);
    }
    return p;
}

static int write_checkpoint(const char *dir) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    struct stat sb;
    if (!stat(path, &sb)) return 0;
    mkdir(dir, 0755);
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fprintf(f, "{\"model_type\": \"llama\", \"hidden_size\": %d, \"intermediate_size\": %d,"
               " \"num_hidden_layers\": %d, \"num_attention_heads\": %d,"
               " \"num_key_value_heads\": %d, \"head_dim\": %d, \"vocab_size\": %d,"
               " \"max_position_embeddings\": 4096, \"rms_norm_eps\": 1e-5,"
               " \"rope_theta\": 10000.0, \"tie_word_embeddings\": false,"
               " \"torch_dtype\": \"bfloat16\"}\n",
            H, I, L, NH, NKV, HD, V);
    fclose(f);
    static const struct {
        const char *name;
        int64_t d0, d1;
    } per_layer[] = {
        {"input_layernorm.weight", H, 0},     {"post_attention_layernorm.weight", H, 0},
        {"self_attn.q_proj.weight", NH * HD, H}, {"self_attn.k_proj.weight", NKV * HD, H},
        {"self_attn.v_proj.weight", NKV * HD, H}, {"self_attn.o_proj.weight", H, NH * HD},
        {"mlp.gate_proj.weight", I, H},       {"mlp.up_proj.weight", I, H},
        {"mlp.down_proj.weight", H, I},
    };
    enum { PER = sizeof per_layer / sizeof per_layer[0] };
    lmc_st_write_tensor t[3 + L * PER];
    char names[3 + L * PER][96];
    uint32_t seed = 1;
    size_t n = 0;
    const struct {
        const char *name;
        int64_t d0, d1;
    } top[] = {{"model.embed_tokens.weight", V, H}, {"model.norm.weight", H, 0},
               {"lm_head.weight", V, H}};
    for (size_t i = 0; i < 3; i++, n++) {
        snprintf(names[n], sizeof names[n], "%s", top[i].name);
        size_t cnt = (size_t)top[i].d0 * (size_t)(top[i].d1 ? top[i].d1 : 1);
        t[n] = (lmc_st_write_tensor){names[n], LMC_DT_BF16, top[i].d1 ? 2 : 1,
                                     {top[i].d0, top[i].d1},
                                     random_bf16(cnt, top[i].d1 ? 0.05f : 1.0f, &seed)};
    }
    for (int l = 0; l < L; l++)
        for (size_t i = 0; i < PER; i++, n++) {
            snprintf(names[n], sizeof names[n], "model.layers.%d.%s", l, per_layer[i].name);
            size_t cnt = (size_t)per_layer[i].d0 * (size_t)(per_layer[i].d1 ? per_layer[i].d1 : 1);
            t[n] = (lmc_st_write_tensor){names[n], LMC_DT_BF16, per_layer[i].d1 ? 2 : 1,
                                         {per_layer[i].d0, per_layer[i].d1},
                                         random_bf16(cnt, per_layer[i].d1 ? 0.05f : 1.0f, &seed)};
        }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    lmc_status st = lmc_st_write(path, t, n, NULL);
    for (size_t i = 0; i < n; i++) free((void *)t[i].data);
    return st != LMC_OK;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: cpu_decode DIR [PREFILL] [DECODE] [RUNS]\n");
        return 2;
    }
    const char *dir = argv[1];
    int np = argc > 2 ? atoi(argv[2]) : 128, nd = argc > 3 ? atoi(argv[3]) : 32;
    int runs = argc > 4 ? atoi(argv[4]) : 5;
    if (np < 1 || nd < 1 || runs < 1 || runs > 64 || write_checkpoint(dir)) {
        fprintf(stderr, "cpu_decode: bad arguments or checkpoint\n");
        return 1;
    }
    lmc_model_config cfg;
    json_object *cj = NULL;
    lmc_st_set *w = NULL;
    lmc_model *m = NULL;
    if (lmc_config_load(dir, &cfg, &cj, NULL) || lmc_st_set_open_dir(dir, &w)) return 1;
    lmc_loaded_model lm = {.config = &cfg, .config_json = cj, .weights = w,
                           .device = LMC_DEVICE_CPU};
    if (CREATE(&lm, &m)) {
        fprintf(stderr, "cpu_decode: %s\n", lmc_last_error());
        return 1;
    }
    int32_t *ids = malloc((size_t)np * sizeof *ids);
    float *logits = malloc((size_t)V * sizeof *logits);
    for (int i = 0; i < np; i++) ids[i] = (i * 7919) % V;
    double tp[64], td[64], cp[64], cd[64];
    for (int r = 0; r < runs; r++) {
        lmc_kv_cache *c = NULL;
        if (lmc_kv_cache_new(m, &c)) return 1;
        double t0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        if (lmc_model_forward(m, c, ids, (size_t)np, logits, false)) return 1;
        double t1 = clock_s(CLOCK_MONOTONIC), c1 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        for (int i = 0; i < nd; i++) {
            int32_t best = 0;
            for (int j = 1; j < V; j++) best = logits[j] > logits[best] ? j : best;
            if (lmc_model_forward(m, c, &best, 1, logits, false)) return 1;
        }
        double t2 = clock_s(CLOCK_MONOTONIC), c2 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        tp[r] = np / (t1 - t0);
        td[r] = nd / (t2 - t1);
        cp[r] = np / (c1 - c0);
        cd[r] = nd / (c2 - c1);
        lmc_kv_cache_free(c);
    }
    qsort(tp, (size_t)runs, sizeof tp[0], cmp_double);
    qsort(td, (size_t)runs, sizeof td[0], cmp_double);
    qsort(cp, (size_t)runs, sizeof cp[0], cmp_double);
    qsort(cd, (size_t)runs, sizeof cd[0], cmp_double);
    printf("prefill_tok_s %.2f decode_tok_s %.3f prefill_tok_per_cpu_s %.2f "
           "decode_tok_per_cpu_s %.3f\n",
           tp[runs / 2], td[runs / 2], cp[runs / 2], cd[runs / 2]);
    lmc_model_free(m);
    lmc_st_set_free(w);
    json_object_put(cj);
    free(ids);
    free(logits);
    return 0;
}
