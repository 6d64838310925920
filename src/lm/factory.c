/* The load factory: a model directory -> lmc_context. The order is chosen
 * so cheap, recoverable failures (bad config, unsupported model_type) come
 * before anything heavy is read. */
#include "base/error.h"
#include "base/file.h"
#include "base/hf_cache.h"
#include "lm/context.h"
#include <stdlib.h>
#include <string.h>

static lmc_status report(const lmc_load_options *o, const char *stage, double frac) {
    if (o->progress && !o->progress(o->progress_user, stage, frac))
        return lmc_err(LMC_ERR_CANCELLED, "load cancelled during '%s'", stage);
    return LMC_OK;
}

lmc_status lmc_context_load_with(const lmc_load_options *opts, const lmc_model_registry *reg,
                                 lmc_context **out) {
    if (out) *out = NULL;
    if (!opts || !opts->model_dir || !*opts->model_dir || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_context_load: model_dir is required");
    if (opts->device != LMC_DEVICE_CPU && opts->device != LMC_DEVICE_CUDA)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_context_load: unknown device %d",
                       (int)opts->device);
    const char *dir = opts->model_dir;
    lmc_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
    lmc_status st;

    /* (1) config.json, read once: typed subset (eos override applied),
     * parsed document and raw bytes all come from the same read. */
    if ((st = report(opts, "config", 0.0))) goto fail;
    if (!lmc_is_dir(dir)) {
        st = lmc_err(LMC_ERR_NOT_FOUND, "%s: model directory not found", dir);
        goto fail;
    }
    if ((st = lmc_config_load(dir, &ctx->cfg, &ctx->config_json, &ctx->config_raw))) goto fail;

    /* (2) An unsupported architecture fails here, before weight or
     * tokenizer I/O (and so never hides behind a weight error). */
    if (!lmc_registry_contains(reg, ctx->cfg.model_type)) {
        const char *canon = lmc_remap_model_type(ctx->cfg.model_type);
        if (strcmp(canon, ctx->cfg.model_type))
            st = lmc_err(LMC_ERR_UNSUPPORTED, "%s: unsupported model type '%s' (alias of '%s')",
                         dir, ctx->cfg.model_type, canon);
        else
            st = lmc_err(LMC_ERR_UNSUPPORTED, "%s: unsupported model type '%s'", dir,
                         ctx->cfg.model_type);
        goto fail;
    }

    /* (3) Tokenizer directory: the separate one when given. */
    const char *tok_dir = opts->tokenizer_dir && *opts->tokenizer_dir ? opts->tokenizer_dir : dir;

    /* (4) Weights: discovered, mapped and validated. */
    if ((st = report(opts, "weights", 0.0))) goto fail;
    if ((st = lmc_st_set_open_dir(dir, &ctx->weights))) goto fail;

    /* (5) Tokenizer, built exactly once; the checkpoint's eos ids (config +
     * generation_config) replace the tokenizer_config default. */
    if ((st = report(opts, "tokenizer", 0.0))) goto fail;
    if ((st = lmc_load_model_tokenizer(tok_dir, opts->tokenizer_dir != NULL, ctx->cfg.eos_ids,
                                       ctx->cfg.n_eos, &ctx->tok)))
        goto fail;

    /* (6) Construct through the registry. */
    if ((st = report(opts, "model", 0.0))) goto fail;
    lmc_loaded_model lm = {
        .config = &ctx->cfg,
        .config_json = ctx->config_json,
        .config_raw = ctx->config_raw,
        .weights = ctx->weights,
        .device = opts->device,
    };
    if ((st = lmc_registry_create(reg, &lm, &ctx->model))) goto fail;
    if (!ctx->model) {
        st = lmc_err(LMC_ERR_STATE, "%s: constructor for '%s' returned no model", dir,
                     ctx->cfg.model_type);
        goto fail;
    }
    if ((st = report(opts, "model", 1.0))) goto fail;
    *out = ctx;
    return LMC_OK;
fail:
    lmc_context_free(ctx);
    return st;
}

lmc_status lmc_load_model_tokenizer(const char *tok_dir, bool separate_dir, const int32_t *eos_ids,
                                    int n_eos, lmc_tokenizer **out) {
    *out = NULL;
    char *tj = lmc_path_join(tok_dir, "tokenizer.json");
    if (!tj) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", tok_dir);
    lmc_status st = LMC_OK;
    if (!lmc_path_exists(tj))
        st = lmc_err(LMC_ERR_NOT_FOUND, "%s not found%s", tj,
                     separate_dir ? "" : " (set a separate tokenizer directory if the "
                                         "tokenizer lives elsewhere)");
    free(tj);
    if (st || (st = lmc_tokenizer_load(tok_dir, out))) return st;
    if (n_eos > 0 && (st = lmc_tokenizer_set_eos_ids(*out, eos_ids, (size_t)n_eos))) {
        lmc_tokenizer_free(*out);
        *out = NULL;
    }
    return st;
}

lmc_status lmc_context_load(const lmc_load_options *opts, lmc_context **out) {
    const lmc_model_registry *reg = lmc_default_registry();
    if (!reg) {
        if (out) *out = NULL;
        return lmc_err(LMC_ERR_NOMEM, "model registry: out of memory");
    }
    if (!opts || !opts->model_dir || !*opts->model_dir || !out)
        return lmc_context_load_with(opts, reg, out); /* reports the argument */
    lmc_load_options o;
    char *model, *tok;
    lmc_status st = lmc_load_options_resolve(opts, &o, &model, &tok);
    if (!st) st = lmc_context_load_with(&o, reg, out);
    else *out = NULL;
    free(model);
    free(tok);
    return st;
}
