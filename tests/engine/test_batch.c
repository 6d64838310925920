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
 * LMC_ERR_LIMIT with nothing advanced, and bad batches are refused. */
#include "batch_equiv.h"

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
    return check_summary("test_batch");
}
