/* Generation on the CUDA backend: greedy decoding without processors runs
 * on the device (only the token id and its logprob cross over each step);
 * it must produce exactly the tokens and logprobs of the host path, which
 * the same greedy request takes when it asks for top logprobs. Exits 77
 * without a GPU or without the tokenizer assets. */
#include <cuda_runtime.h>

#include "check.h"
#include "../lm/lm_test_util.h"

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
    return check_summary("test_cuda_generate");
}
