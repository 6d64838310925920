/* Validation shared by every backend's batched forward (model.h): a bad
 * batch is refused whole, before any sequence reserves a block. */
#include <inttypes.h>

#include "base/error.h"
#include "engine/kv_pool.h"
#include "models/model.h"

lmc_status lmc_batch_check(const lmc_model *m, struct lmc_kv_pool *pool,
                           const lmc_batch_item *it, size_t ni, size_t *rows) {
    const lmc_model_config *cfg = &m->cfg;
    if (!pool || !it || !ni)
        return lmc_err(LMC_ERR_INVALID_ARG, "forward_batch: a pool and items are required");
    if (lmc_kv_pool_owner(pool) != m)
        return lmc_err(LMC_ERR_INVALID_ARG, "forward_batch: the pool was made for another model");
    *rows = 0;
    for (size_t i = 0; i < ni; i++) {
        if (!it[i].seq || (!it[i].ids == !it[i].embeds) || !it[i].n)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "forward_batch: item %zu has no tokens (ids or embeds, one of them)",
                           i);
        if ((it[i].all_logits && !it[i].logits) || (it[i].logprob && !it[i].next))
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "forward_batch: item %zu asks for all logits without a buffer or a "
                           "log-probability without its greedy id",
                           i);
        if (lmc_kv_seq_pool(it[i].seq) != pool)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "forward_batch: item %zu's sequence is of another pool", i);
        if (lmc_kv_seq_window(it[i].seq) != lmc_model_seq_window(m))
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "forward_batch: item %zu's sequence has window %zu, the model %zu", i,
                           lmc_kv_seq_window(it[i].seq), lmc_model_seq_window(m));
        for (size_t j = 0; j < i; j++)
            if (it[j].seq == it[i].seq)
                return lmc_err(LMC_ERR_INVALID_ARG,
                               "forward_batch: items %zu and %zu share a sequence", j, i);
        for (size_t k = 0; it[i].ids && k < it[i].n; k++)
            if (it[i].ids[k] < 0 || it[i].ids[k] >= cfg->vocab_size)
                return lmc_err(LMC_ERR_INVALID_ARG,
                               "forward_batch: item %zu: token id %d at index %zu is outside "
                               "the vocabulary (size %" PRId64 ")",
                               i, it[i].ids[k], k, cfg->vocab_size);
        *rows += it[i].n;
    }
    return LMC_OK;
}
