/* Batched execution over the paged KV cache against each sequence run
 * alone through the model's standard path, on the CPU.
 *
 * For every checkpoint below, 18 sequences of mixed lengths (5-70 prompt
 * tokens, three shared stems so prefixes repeat) start at staggered steps;
 * each step is one forward_batch over every live sequence: prompts go in
 * chunks of up to 16 tokens (a long prompt spans steps) next to other
 * sequences' single decode tokens. A sequence whose stem was published
 * attaches the shared blocks and computes only the rest. Each sequence's
 * prompt logits and every greedy step's logits must match the sequence
 * run alone within 1e-5 of the logit range (fp32 checkpoints; bf16 at its
 * rounding tolerance) with identical greedy tokens; when all have ended
 * every block is back in the pool. Also: the pool running out is
 * LMC_ERR_LIMIT with nothing advanced, and bad batches are refused; and
 * longrope (phi3_longrope) picks each item's table by the length its own
 * call reaches, items on either side of the switch in one step. */
#include "batch_equiv.h"
#include "scratch.h"
#include "wide_model.h"

/* longrope's per-item tables (see check_longrope) on the phi3_longrope
 * recipe of tests/golden/wide, written at test time in fp32. */
static void check_longrope_recipe(const char *src) {
    char dir[1024], gp[1100], out[1200];
    snprintf(dir, sizeof dir, "%s/tests/golden/wide/phi3_longrope", src ? src : ".");
    snprintf(gp, sizeof gp, "%s/golden.json", dir);
    snprintf(out, sizeof out, "%s/phi3_longrope-fp32", scratch_root("batch"));
    json_object *o = NULL;
    lmc_status st = lmc_json_load_file(gp, "golden.json", 1 << 26, &o, NULL);
    if (!st) st = wide_build(dir, o, LMC_DT_F32, out);
    CHECK_MSG(!st, "phi3_longrope: %s", lmc_last_error());
    if (o) json_object_put(o);
    if (!st) check_longrope(out, "phi3_longrope", LMC_DEVICE_CPU, 1e-5, 1e-5);
    scratch_rm_tree(out);
}

int main(void) {
    const char *src = getenv("LMC_SOURCE_DIR");
    static const struct {
        const char *dir;
        double tol;
    } ckpts[] = {
        {"models/llama-fp32", 1e-5},   {"models/mistral-fp32", 1e-5},
        {"models/qwen2-fp32", 1e-5},   {"models/qwen3-fp32", 1e-5},
        {"phi3/phi3_partial-fp32", 1e-5}, {"gemma3/gemma3-fp32", 1e-5},
        {"models/llama-bf16", 2e-2},   {"models/qwen2-fp16", 5e-3},
    };
    for (size_t i = 0; i < sizeof ckpts / sizeof *ckpts; i++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/tests/golden/%s", src ? src : ".", ckpts[i].dir);
        check_model(dir, ckpts[i].dir, LMC_DEVICE_CPU, ckpts[i].tol);
    }
    check_longrope_recipe(src);
    return check_summary("test_batch");
}
