/* The public LoRA trainer: options, batches drawn from a dataset, gradient
 * accumulation, AdamW steps, progress, and the adapter file entry points. */
#include "base/error.h"
#include "train/lora.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct lmc_lora_trainer {
    lmc_lora_options opts;
    char *targets;   /* owned copy of opts.target_modules */
    char *model_dir;
    lmc_lora_base base;
    lmc_lora_net net;
    lmc_adamw opt;
    uint64_t rng;
    int32_t steps_done;
};

void lmc_lora_options_init(lmc_lora_options *o) {
    memset(o, 0, sizeof *o);
    o->rank = 8;
    o->alpha = 16.0f;
    o->num_layers = 16;
    o->iters = 1000;
    o->batch_size = 4;
    o->grad_accumulation_steps = 1;
    o->max_seq_length = 2048;
    o->learning_rate = 1e-5f;
    o->beta1 = 0.9f;
    o->beta2 = 0.999f;
    o->eps = 1e-8f;
    o->weight_decay = 0.01f;
}

lmc_lora_net *lmc_lora_trainer_net(lmc_lora_trainer *t) { return t ? &t->net : NULL; }

void lmc_lora_trainer_free(lmc_lora_trainer *t) {
    if (!t) return;
    lmc_adamw_free(&t->opt);
    lmc_lora_net_free(&t->net);
    lmc_lora_base_close(&t->base);
    free(t->targets);
    free(t->model_dir);
    free(t);
}

lmc_status lmc_lora_trainer_new(const char *model_dir, const lmc_lora_options *opts,
                                lmc_lora_trainer **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "lora: out is required");
    *out = NULL;
    lmc_lora_options o;
    if (opts) o = *opts;
    else lmc_lora_options_init(&o);
    if (o.dropout != 0.0f)
        return lmc_err(LMC_ERR_UNSUPPORTED, "lora: dropout %g is not supported (use 0)",
                       (double)o.dropout);
    if (o.batch_size <= 0 || o.grad_accumulation_steps <= 0 || o.iters < 0)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "lora: batch_size and grad_accumulation_steps must be positive, iters >= 0");
    if (o.max_seq_length < 2)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: max_seq_length must be at least 2");
    lmc_lora_shape shape = {.rank = o.rank, .alpha = o.alpha, .num_layers = o.num_layers};
    const char *tl = o.target_modules ? o.target_modules : "q_proj,v_proj";
    lmc_status st = lmc_lora_parse_targets(tl, &shape.targets);
    if (st) return st;
    lmc_lora_trainer *t = calloc(1, sizeof *t);
    if (!t) return lmc_err(LMC_ERR_NOMEM, "lora: out of memory");
    t->targets = strdup(tl);
    t->model_dir = model_dir ? strdup(model_dir) : NULL;
    if (!t->targets || (model_dir && !t->model_dir)) {
        st = lmc_err(LMC_ERR_NOMEM, "lora: out of memory");
        goto fail;
    }
    t->opts = o;
    t->opts.target_modules = t->targets;
    t->rng = o.seed ^ 0x6C6F7261ull; /* shuffling stream, distinct from the init draw */
    char *dir = NULL; /* an org/name in the Hugging Face cache, resolved */
    if (model_dir && *model_dir && (st = lmc_model_dir_resolve(model_dir, &dir))) goto fail;
    st = lmc_lora_base_open(dir ? dir : model_dir, &t->base);
    free(dir);
    if (st) goto fail;
    if ((st = lmc_lora_net_init(&t->net, &t->base.cfg, t->base.config_json, t->base.weights,
                                &shape, o.seed)))
        goto fail;
    if ((st = lmc_adamw_init(&t->opt, lmc_lora_param_count(&t->net), o.learning_rate, o.beta1,
                             o.beta2, o.eps, o.weight_decay)))
        goto fail;
    *out = t;
    return LMC_OK;
fail:
    lmc_lora_trainer_free(t);
    return st;
}

/* Gradients of one micro-batch, scaled by `weight` / (its target tokens);
 * *loss gets the batch's mean loss. */
static lmc_status micro_batch(lmc_lora_trainer *t, const int32_t *const *seqs,
                              const size_t *lens, const size_t *offsets, size_t n, float weight,
                              float *loss, size_t *targets, size_t *tokens, size_t *truncated) {
    size_t max = t->opts.max_seq_length, N = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = lens[i] < max ? lens[i] : max;
        N += lmc_lora_count_targets(len, offsets ? offsets[i] : 0);
    }
    if (!N)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora: the batch has no target tokens (every token is "
                       "masked as prompt or sequences are shorter than 2)");
    double loss_sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        size_t len = lens[i] < max ? lens[i] : max;
        if (lens[i] > max && truncated) (*truncated)++;
        lmc_status st = lmc_lora_seq_grad(&t->net, seqs[i], len, offsets ? offsets[i] : 0,
                                          weight / (float)N, &loss_sum);
        if (st) return lmc_err_prefix(st, "batch record %zu", i);
        if (tokens) *tokens += len;
    }
    *loss = (float)(loss_sum / (double)weight);
    if (targets) *targets += N;
    return LMC_OK;
}

lmc_status lmc_lora_trainer_step(lmc_lora_trainer *t, const int32_t *const *seqs,
                                 const size_t *lens, const size_t *offsets, size_t n,
                                 float *loss) {
    if (!t || !seqs || !lens || !n)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora step: trainer and a non-empty batch are required");
    lmc_lora_zero_grad(&t->net);
    float l = 0.0f;
    lmc_status st = micro_batch(t, seqs, lens, offsets, n, 1.0f, &l, NULL, NULL, NULL);
    if (st) return st;
    lmc_adamw_step(&t->opt, &t->net);
    t->steps_done++;
    if (loss) *loss = l;
    return LMC_OK;
}

static uint64_t rng_next(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void shuffle(size_t *v, size_t n, uint64_t *rng) {
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)(rng_next(rng) % i);
        size_t x = v[i - 1];
        v[i - 1] = v[j];
        v[j] = x;
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

lmc_status lmc_lora_train(lmc_lora_trainer *t, lmc_dataset *train, lmc_lora_train_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    if (!t || !train) return lmc_err(LMC_ERR_INVALID_ARG, "lora train: trainer and dataset are required");
    const lmc_lora_options *o = &t->opts;
    size_t n_rec = lmc_dataset_len(train), bs = (size_t)o->batch_size;
    if (n_rec == 0) return lmc_err(LMC_ERR_INVALID_ARG, "lora train: the dataset is empty");
    if (n_rec < bs)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "lora train: the dataset has %zu records, fewer than the batch size %zu",
                       n_rec, bs);
    size_t *order = malloc(n_rec * sizeof *order);
    int32_t **seqs = calloc(bs, sizeof *seqs);
    size_t *lens = calloc(bs, sizeof *lens), *offs = calloc(bs, sizeof *offs);
    lmc_status st = LMC_OK;
    if (!order || !seqs || !lens || !offs) {
        st = lmc_err(LMC_ERR_NOMEM, "lora train: out of memory");
        goto done;
    }
    /* Keep records that have a target token after truncation. */
    size_t n_ok = 0, skipped = 0;
    for (size_t i = 0; i < n_rec; i++) {
        int32_t *ids = NULL;
        size_t n = 0, prompt = 0;
        if ((st = lmc_dataset_get(train, i, &ids, &n, &prompt))) goto done;
        lmc_free(ids);
        size_t len = n < o->max_seq_length ? n : o->max_seq_length;
        if (lmc_lora_count_targets(len, prompt)) order[n_ok++] = i;
        else skipped++;
    }
    if (n_ok < bs) {
        st = lmc_err(LMC_ERR_INVALID_ARG,
                     "lora train: only %zu of %zu records have a target token (the rest are "
                     "entirely prompt or shorter than 2 tokens after truncation to %zu); the "
                     "batch size is %zu",
                     n_ok, n_rec, o->max_seq_length, bs);
        goto done;
    }
    if (stats) stats->skipped_records = skipped;
    shuffle(order, n_ok, &t->rng);
    size_t pos = 0, targets = 0, truncated = 0;
    double t0 = now_s();
    float inv_acc = 1.0f / (float)o->grad_accumulation_steps;
    for (int32_t step = 0; step < o->iters; step++) {
        double ts = now_s();
        size_t tokens = 0;
        float step_loss = 0.0f;
        lmc_lora_zero_grad(&t->net);
        for (int32_t a = 0; a < o->grad_accumulation_steps; a++) {
            for (size_t b = 0; b < bs; b++) {
                if (pos == n_ok) {
                    shuffle(order, n_ok, &t->rng);
                    pos = 0;
                }
                if ((st = lmc_dataset_get(train, order[pos++], &seqs[b], &lens[b], &offs[b])))
                    goto done;
            }
            float l = 0.0f;
            st = micro_batch(t, (const int32_t *const *)seqs, lens, offs, bs, inv_acc, &l,
                             &targets, &tokens, &truncated);
            for (size_t b = 0; b < bs; b++) lmc_free(seqs[b]), seqs[b] = NULL;
            if (st) goto done;
            step_loss += l * inv_acc;
        }
        lmc_adamw_step(&t->opt, &t->net);
        t->steps_done++;
        double dt = now_s() - ts;
        if (stats) {
            stats->steps = step + 1;
            stats->final_loss = step_loss;
            stats->trained_tokens = targets;
            stats->truncated = truncated;
            stats->seconds = now_s() - t0;
        }
        if (!isfinite(step_loss)) {
            st = lmc_err(LMC_ERR_STATE, "lora train: the loss became %g at step %d", (double)step_loss,
                         (int)step + 1);
            goto done;
        }
        if (o->progress) {
            lmc_lora_progress p = {.step = step + 1, .iters = o->iters, .loss = step_loss,
                                   .tokens_per_sec = dt > 0 ? (double)tokens / dt : 0.0,
                                   .trained_tokens = targets, .truncated = truncated};
            if (!o->progress(o->progress_user, &p)) {
                st = lmc_err(LMC_ERR_CANCELLED, "lora train: cancelled after step %d", (int)step + 1);
                goto done;
            }
        }
    }
done:
    if (seqs)
        for (size_t b = 0; b < bs; b++) lmc_free(seqs[b]);
    free(order), free(seqs), free(lens), free(offs);
    return st;
}

lmc_status lmc_lora_trainer_save(const lmc_lora_trainer *t, const char *adapter_dir) {
    if (!t) return lmc_err(LMC_ERR_INVALID_ARG, "lora save: trainer is required");
    return lmc_lora_save(&t->net, adapter_dir, t->model_dir);
}

lmc_status lmc_lora_trainer_load(lmc_lora_trainer *t, const char *adapter_dir) {
    if (!t) return lmc_err(LMC_ERR_INVALID_ARG, "lora load: trainer is required");
    return lmc_lora_load(&t->net, adapter_dir);
}

lmc_status lmc_lora_fuse(const char *model_dir, const char *adapter_dir, const char *save_dir,
                         lmc_progress_fn progress, void *progress_user) {
    char *dir = NULL; /* an org/name in the Hugging Face cache, resolved */
    if (model_dir && *model_dir) {
        lmc_status st = lmc_model_dir_resolve(model_dir, &dir);
        if (st) return st;
    }
    lmc_status st = lmc_lora_fuse_dirs(dir ? dir : model_dir, adapter_dir, save_dir, progress,
                                       progress_user);
    free(dir);
    return st;
}
