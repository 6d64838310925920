/* Generation on the CUDA backend: greedy decoding without processors runs
 * on the device (only the token id and its logprob cross over each step);
 * it must produce exactly the tokens and logprobs of the host path, which
 * the same greedy request takes when it asks for top logprobs. Full
 * prefill chunks replayed from a captured graph must give exactly the
 * logits of plain launches, also after the cache has moved. Exits 77
 * without a GPU or without the tokenizer assets. */
#include <cuda_runtime.h>

#include "check.h"
#include "../lm/lm_test_util.h"
#include "models/model.h"

#define PF_TOKENS 6144 /* three 2,048-row chunks; the cache grows past 4,096 */

/* Last-position logits of three prefills of the same tokens into one cache
 * (the first runs its first chunk plainly, captures the second and, after
 * the cache moves for the third, captures again; the others replay), and
 * of one more chunk appended after the third. */
static void prefill_runs(lmc_context *ctx, const int32_t *ids, float *out[4]) {
    lmc_model *m = lmc_context_model(ctx);
    lmc_kv_cache *c = NULL;
    CHECK(!lmc_kv_cache_new(m, &c));
    if (!c) return;
    for (int r = 0; r < 3; r++) {
        lmc_kv_cache_clear(c);
        CHECK_MSG(!lmc_model_forward(m, c, ids, PF_TOKENS, out[r], false), "prefill: %s",
                  lmc_last_error());
    }
    CHECK(!lmc_model_forward(m, c, ids, 2048, out[3], false));
    lmc_kv_cache_free(c);
}

/* One call of 2,100 tokens (its first chunk only fills the cache: the last
 * layer stops after its keys and values) against two calls of 2,048 and 52
 * (the first also carries its last row on to logits): the same cache, so
 * the same last logits bit for bit, then the same next decode step. */
static void test_prefill_chunk_rows(lmc_context *ctx, const int32_t *ids, size_t V) {
    lmc_model *m = lmc_context_model(ctx);
    lmc_kv_cache *c[2] = {NULL, NULL};
    float *lg[2] = {malloc(V * 4), malloc(V * 4)}, *dec[2] = {malloc(V * 4), malloc(V * 4)};
    const int32_t next = 1234;
    for (int k = 0; k < 2; k++) {
        CHECK(!lmc_kv_cache_new(m, &c[k]));
        if (!c[k]) break;
        if (k == 0)
            CHECK(!lmc_model_forward(m, c[k], ids, 2100, lg[k], false));
        else
            CHECK(!lmc_model_forward(m, c[k], ids, 2048, dec[k], false) &&
                  !lmc_model_forward(m, c[k], ids + 2048, 52, lg[k], false));
        CHECK(!lmc_model_forward(m, c[k], &next, 1, dec[k], false));
    }
    if (c[0] && c[1]) {
        const int same = memcmp(lg[0], lg[1], V * 4) == 0, same_dec = memcmp(dec[0], dec[1], V * 4) == 0;
        printf("prefill of 2,100 tokens in one call vs 2,048 + 52: last logits %s, next step %s\n",
               same ? "identical" : "DIFFER", same_dec ? "identical" : "DIFFERS");
        CHECK(same && same_dec);
    }
    for (int k = 0; k < 2; k++) {
        if (c[k]) lmc_kv_cache_free(c[k]);
        free(lg[k]), free(dec[k]);
    }
}

static void test_prefill_graph(const tiny_spec *spec) {
    char dir_g[1024], dir_e[1024];
    if (tiny_tmpdir(dir_g, sizeof dir_g, "cuda_pfg") || tiny_tmpdir(dir_e, sizeof dir_e, "cuda_pfe"))
        return;
    lmc_context *cg = tiny_load(dir_g, spec, ".cache/assets/tokenizers/qwen3");
    setenv("LMC_CUDA_GRAPHS", "0", 1);
    lmc_context *ce = tiny_load(dir_e, spec, ".cache/assets/tokenizers/qwen3");
    unsetenv("LMC_CUDA_GRAPHS");
    CHECK(cg && ce);
    const size_t V = (size_t)spec->vocab;
    int32_t *ids = malloc(PF_TOKENS * sizeof *ids);
    float *lg[4], *le[4];
    for (int i = 0; i < 4; i++) {
        lg[i] = malloc(V * 4);
        le[i] = malloc(V * 4);
    }
    for (size_t i = 0; i < PF_TOKENS; i++) ids[i] = (int32_t)((i * 104729 + 7) % 150000);
    if (cg && ce) {
        prefill_runs(cg, ids, lg);
        prefill_runs(ce, ids, le);
        test_prefill_chunk_rows(cg, ids, V);
        for (int r = 0; r < 4; r++) {
            size_t diff = 0;
            for (size_t i = 0; i < V; i++) diff += memcmp(&lg[r][i], &le[r][i], 4) != 0;
            printf("prefill run %d (%s): %zu of %zu logits differ from plain launches\n", r,
                   r == 0 ? "first: captured, cache moved, recaptured" : r == 3 ? "appended chunk" : "replayed", diff, V);
            CHECK_EQ_INT((int)diff, 0);
        }
        size_t moved = 0; /* the appended chunk sees a longer context */
        for (size_t i = 0; i < V; i++) moved += lg[3][i] != lg[2][i];
        CHECK(moved > V / 2);
        CHECK(memcmp(lg[0], lg[1], V * 4) == 0 && memcmp(lg[0], lg[2], V * 4) == 0);
    }
    for (int i = 0; i < 4; i++) free(lg[i]), free(le[i]);
    free(ids);
    if (cg) lmc_context_free(cg);
    if (ce) lmc_context_free(ce);
    tiny_rmdir(dir_g);
    tiny_rmdir(dir_e);
}

typedef struct {
    int32_t tok[64];
    float lp[64];
    size_t n;
} run_out;

static bool keep_cb(void *user, const lmc_gen_response *r) {
    run_out *o = user;
    if (o->n < 64) {
        o->tok[o->n] = r->token;
        o->lp[o->n] = r->logprob;
    }
    o->n++;
    return true;
}

static void run(lmc_context *ctx, const int32_t *prompt, size_t np, int32_t top, run_out *o) {
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 40;
    p.sampler.top_logprobs = top;
    memset(o, 0, sizeof *o);
    lmc_status st = lmc_generate_ids(ctx, prompt, np, &p, NULL, keep_cb, o, NULL);
    CHECK_MSG(!st, "generate: %s", lmc_last_error());
}

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    setenv("LMC_TEST_DEVICE", "cuda", 1);
    tiny_spec spec = {"qwen3", 2, 64, 4, 2, 16, 128, 151936, 151645, 21, 0};
    char dir[1024];
    if (tiny_tmpdir(dir, sizeof dir, "cuda_gen")) CHECK_SKIP("no temp dir");
    lmc_context *ctx = tiny_load(dir, &spec, ".cache/assets/tokenizers/qwen3");
    CHECK(ctx != NULL);
    if (ctx) {
        int32_t prompt[700];
        for (size_t i = 0; i < 700; i++) prompt[i] = (int32_t)((i * 7919 + 13) % 150000);
        /* a short prompt, and one longer than the prefill step (two chunks) */
        size_t lens[] = {5, 700};
        for (size_t k = 0; k < 2; k++) {
            run_out dev, host;
            run(ctx, prompt, lens[k], 0, &dev);
            run(ctx, prompt, lens[k], 1, &host);
            CHECK_EQ_INT((int)dev.n, 40);
            CHECK_EQ_INT((int)host.n, 40);
            size_t same = 0;
            float worst = 0.f;
            while (same < dev.n && same < 64 && dev.tok[same] == host.tok[same]) {
                float d = fabsf(dev.lp[same] - host.lp[same]);
                if (d > worst) worst = d;
                same++;
            }
            printf("prompt %zu: on-device greedy %zu/%zu tokens equal the host path, "
                   "logprob max diff %.2e\n", lens[k], same, dev.n, worst);
            CHECK_EQ_INT((int)same, (int)dev.n);
            CHECK_MSG(worst < 1e-3f, "logprob differs by %g", worst);
        }
        lmc_context_free(ctx);
    }
    tiny_rmdir(dir);
    test_prefill_graph(&spec);
    return check_summary("test_cuda_generate");
}
