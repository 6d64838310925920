/* Batched execution on CUDA over the paged KV cache against each sequence
 * run alone through the CUDA model's standard path (see
 * tests/batch_equiv.h): the realistic-width llama, mistral, qwen2, qwen3,
 * gemma3_text (also with logit softcapping), partial-rotary phi3
 * (phi3_partial), longrope phi3 (phi3_longrope) and the head sizes only
 * the engine runs (phi3_hd96: 96 with longrope, gemma3_hd256: 256)
 * checkpoints of tests/golden/wide, written at test time in fp32
 * and bf16; logits within the bf16 tolerance (2e-2 of the range), greedy
 * picks identical wherever they are clear of it, blocks returned. The
 * longrope checkpoint also runs check_longrope: items past and below
 * original_max_position_embeddings in one step, each with its own table,
 * and greedy-only steps (a replayed graph) crossing the switch. Exits 77
 * without a GPU. */
#include <cuda_runtime.h>

#include "batch_equiv.h"
#include "scratch.h"
#include "wide_model.h"

int main(void) {
    int ndev = 0;
    if (cudaGetDeviceCount(&ndev) != cudaSuccess || ndev == 0) CHECK_SKIP("no CUDA device");
    /* each sequence alone runs through the API's caches, put on the
     * engine (its single-sequence path: one item a step); prompt chunks of
     * 16 rows or more through the flash kernel over their block table */
    setenv("LMC_CUDA_SINGLE_SEQ_CACHE", "0", 1);
    setenv("LMC_CUDA_PAGED_FA_MIN", "16", 1);
    const char *src = getenv("LMC_SOURCE_DIR");
    const char *scratch = scratch_root("cuda-batch");
    static const char *const names[] = {"llama",       "mistral",      "qwen2",
                                        "qwen3",       "gemma3_text",  "phi3_partial",
                                        "gemma3_text_softcap", "phi3_longrope",
                                        "phi3_hd96",   "gemma3_hd256"};
    static const lmc_dtype dts[] = {LMC_DT_F32, LMC_DT_BF16};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        for (size_t k = 0; k < 2; k++) {
            char dir[1024], gp[1100], out[1100], name[64];
            snprintf(dir, sizeof dir, "%s/tests/golden/wide/%s", src ? src : ".", names[i]);
            snprintf(gp, sizeof gp, "%s/golden.json", dir);
            snprintf(name, sizeof name, "%s-%s", names[i], wide_dtype_name(dts[k]));
            /* the first four and gemma3_text have goldens; the variants'
             * come with tests/oracle/wide_goldens.sh */
            if (i >= 5 && !lmc_is_dir(dir)) {
                if (k == 0) printf("%s: no golden yet (tests/oracle/wide_goldens.sh)\n", names[i]);
                continue;
            }
            snprintf(out, sizeof out, "%s/%s", scratch, name);
            json_object *o = NULL;
            lmc_status st = lmc_json_load_file(gp, "golden.json", 1 << 26, &o, NULL);
            if (!st) st = wide_build(dir, o, dts[k], out);
            CHECK_MSG(!st, "%s: %s", name, lmc_last_error());
            if (o) json_object_put(o);
            if (!st) check_model(out, name, LMC_DEVICE_CUDA, 2e-2);
            /* keys: the batched and the alone paths round differently
             * (bf16), a key rotated by the other table by more than 1 */
            if (!st && (!strcmp(names[i], "phi3_longrope") || !strcmp(names[i], "phi3_hd96")))
                check_longrope(out, name, LMC_DEVICE_CUDA, 2e-2, 0.1);
            scratch_rm_tree(out);
        }
    return check_summary("test_cuda_batch");
}
