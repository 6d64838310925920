/* The VLM load factory and the public image-processor handle. The order is
 * chosen so cheap, recoverable failures (bad config, unsupported
 * model_type, unsupported processor_class) come before any weight or
 * tokenizer I/O. */
#include "base/error.h"
#include "base/file.h"
#include "base/hf_cache.h"
#include "lm/context.h"
#include "vlm/vlm.h"
#include <stdlib.h>
#include <string.h>

void lmc_vlm_free(lmc_vlm_context *ctx) {
    if (!ctx) return;
    /* Model and processor may hold views into weights / tokenizer. */
    if (ctx->processor) ctx->processor->free(ctx->processor);
    if (ctx->model) ctx->model->free(ctx->model);
    lmc_tokenizer_free(ctx->tok);
    lmc_st_set_free(ctx->weights);
    json_object_put(ctx->config_json);
    free(ctx->config_raw);
    free(ctx->processor_class);
    lmc_vlm_processor_config_free(&ctx->proc);
    free(ctx);
}

const char *lmc_vlm_model_type(const lmc_vlm_context *ctx) {
    return ctx ? ctx->cfg.model_type : NULL;
}

lmc_tokenizer *lmc_vlm_tokenizer(const lmc_vlm_context *ctx) { return ctx ? ctx->tok : NULL; }

lmc_status lmc_vlm_load_with(const lmc_load_options *opts, const lmc_vlm_model_registry *models,
                             const lmc_vlm_processor_registry *processors,
                             lmc_vlm_context **out) {
    if (out) *out = NULL;
    if (!opts || !opts->model_dir || !*opts->model_dir || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_vlm_load: model_dir is required");
    if (opts->device != LMC_DEVICE_CPU && opts->device != LMC_DEVICE_CUDA)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_vlm_load: unknown device %d", (int)opts->device);
    const char *dir = opts->model_dir;
    lmc_vlm_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
    lmc_status st;

    /* (1) config.json, read once: typed subset (eos resolved), parsed
     * document and raw bytes from the same read. */
    if (!lmc_is_dir(dir)) {
        st = lmc_err(LMC_ERR_NOT_FOUND, "%s: model directory not found", dir);
        goto fail;
    }
    if ((st = lmc_vlm_base_config_load(dir, &ctx->cfg, &ctx->config_json, &ctx->config_raw)))
        goto fail;

    /* (2) The architecture must be registered before anything heavy. */
    const char *mt = ctx->cfg.model_type, *canon = lmc_vlm_remap_model_type(mt);
    if (!lmc_vlm_model_registry_contains(models, mt)) {
        if (strcmp(canon, mt))
            st = lmc_err(LMC_ERR_UNSUPPORTED,
                         "%s: unsupported VLM model type '%s' (alias of '%s'): no VLM "
                         "architecture registered for it",
                         dir, mt, canon);
        else
            st = lmc_err(LMC_ERR_UNSUPPORTED,
                         "%s: unsupported VLM model type '%s': no VLM architecture registered "
                         "for it",
                         dir, mt);
        goto fail;
    }

    /* (3) Processor config (each file read at most once), the per-model
     * override, and the processor registry check, still before weights. */
    if ((st = lmc_vlm_processor_config_load(dir, &ctx->proc))) goto fail;
    const char *ov = lmc_vlm_processor_class_override(canon);
    ctx->processor_class = strdup(ov ? ov : ctx->proc.processor_class);
    if (!ctx->processor_class) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    if (!lmc_vlm_processor_registry_contains(processors, ctx->processor_class)) {
        if (ov)
            st = lmc_err(LMC_ERR_UNSUPPORTED,
                         "%s: unsupported VLM processor class '%s' (override for model type "
                         "'%s' of '%s' from %s)",
                         dir, ctx->processor_class, canon, ctx->proc.processor_class,
                         ctx->proc.class_source);
        else
            st = lmc_err(LMC_ERR_UNSUPPORTED, "%s: unsupported VLM processor class '%s' (from %s)",
                         dir, ctx->processor_class, ctx->proc.class_source);
        goto fail;
    }

    /* (4) Tokenizer directory: the separate one when given. */
    const char *tok_dir = opts->tokenizer_dir && *opts->tokenizer_dir ? opts->tokenizer_dir : dir;

    /* (5) Weights: discovered, mapped and validated. */
    if ((st = lmc_st_set_open_dir(dir, &ctx->weights))) goto fail;

    /* (6) Tokenizer, built once; the resolved eos set replaces its default. */
    if ((st = lmc_load_model_tokenizer(tok_dir, opts->tokenizer_dir != NULL, ctx->cfg.eos_ids,
                                       ctx->cfg.has_eos ? ctx->cfg.n_eos : 0, &ctx->tok)))
        goto fail;

    /* (7) Model. */
    lmc_vlm_loaded_model lm = {
        .config = &ctx->cfg,
        .config_json = ctx->config_json,
        .config_raw = ctx->config_raw,
        .weights = ctx->weights,
        .device = opts->device,
    };
    if ((st = lmc_vlm_model_registry_create(models, &lm, &ctx->model))) {
        lmc_err_prefix(st, "%s", dir);
        goto fail;
    }
    if (!ctx->model) {
        st = lmc_err(LMC_ERR_STATE, "%s: constructor for '%s' returned no model", dir, mt);
        goto fail;
    }

    /* (8) Processor: the same config instance and bytes the model saw. */
    lmc_vlm_loaded_processor lp = {
        .config = &ctx->cfg,
        .config_raw = ctx->config_raw,
        .processor_class = ctx->processor_class,
        .preprocessor_json = ctx->proc.preprocessor_json,
        .processor_json = ctx->proc.processor_json,
        .processor_config_filename = ctx->proc.filename,
        .tokenizer = ctx->tok,
    };
    if ((st = lmc_vlm_processor_registry_create(processors, &lp, &ctx->processor))) {
        lmc_err_prefix(st, "%s", dir);
        goto fail;
    }
    if (!ctx->processor) {
        st = lmc_err(LMC_ERR_STATE, "%s: constructor for processor '%s' returned nothing", dir,
                     ctx->processor_class);
        goto fail;
    }
    *out = ctx;
    return LMC_OK;
fail:
    lmc_vlm_free(ctx);
    return st;
}

lmc_status lmc_vlm_load(const lmc_load_options *opts, lmc_vlm_context **out) {
    const lmc_vlm_model_registry *models = lmc_vlm_default_model_registry();
    const lmc_vlm_processor_registry *procs = lmc_vlm_default_processor_registry();
    if (!opts || !opts->model_dir || !*opts->model_dir || !out)
        return lmc_vlm_load_with(opts, models, procs, out); /* reports the argument */
    lmc_load_options o;
    char *model, *tok;
    lmc_status st = lmc_load_options_resolve(opts, &o, &model, &tok);
    if (!st) st = lmc_vlm_load_with(&o, models, procs, out);
    else *out = NULL;
    free(model);
    free(tok);
    return st;
}

/* ------------------------------------------------------------ image processor */

struct lmc_image_processor {
    lmc_image_config cfg;
};

lmc_status lmc_image_processor_parse(const char *json, size_t len, lmc_image_processor **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "image processor: no output handle");
    *out = NULL;
    if (!json) return lmc_err(LMC_ERR_INVALID_ARG, "image processor: no JSON given");
    lmc_image_processor *p = calloc(1, sizeof *p);
    if (!p) return lmc_err(LMC_ERR_NOMEM, "image processor: out of memory");
    lmc_status st = lmc_image_config_parse(json, len, "processor config", &p->cfg);
    if (st) {
        free(p);
        return st;
    }
    *out = p;
    return LMC_OK;
}

lmc_status lmc_image_processor_load(const char *dir, lmc_image_processor **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "image processor: no output handle");
    *out = NULL;
    if (!dir || !*dir) return lmc_err(LMC_ERR_INVALID_ARG, "image processor: no directory given");
    static const char *const names[] = {"preprocessor_config.json", "processor_config.json"};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < 2; i++) {
        char *path = lmc_path_join(dir, names[i]), *text = NULL;
        size_t len = 0;
        if (!path) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        st = lmc_read_file(path, path, LMC_MAX_CONFIG_BYTES, &text, &len);
        if (st == LMC_ERR_NOT_FOUND && !lmc_path_exists(path)) {
            free(path);
            continue;
        }
        if (!st) {
            lmc_image_processor *p = calloc(1, sizeof *p);
            if (!p)
                st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
            else if ((st = lmc_image_config_parse(text, len, path, &p->cfg)))
                free(p);
            else
                *out = p;
        }
        free(text);
        free(path);
        return st;
    }
    return lmc_err(LMC_ERR_NOT_FOUND, "%s: neither preprocessor_config.json nor "
                                      "processor_config.json is present",
                   dir);
}

void lmc_image_processor_free(lmc_image_processor *p) { free(p); }

static lmc_status check_outs(const lmc_image_processor *p, float **pixels, size_t *c, size_t *h,
                             size_t *w) {
    if (!p || !pixels || !c || !h || !w)
        return lmc_err(LMC_ERR_INVALID_ARG, "image preprocess: missing argument");
    return LMC_OK;
}

lmc_status lmc_image_preprocess_memory(const lmc_image_processor *p, const void *bytes,
                                       size_t len, float **pixels, size_t *channels,
                                       size_t *height, size_t *width) {
    lmc_status st = check_outs(p, pixels, channels, height, width);
    if (st) return st;
    return lmc_image_preprocess_bytes(&p->cfg, bytes, len, "image", pixels, channels, height,
                                      width);
}

lmc_status lmc_image_preprocess_file(const lmc_image_processor *p, const char *path,
                                     float **pixels, size_t *channels, size_t *height,
                                     size_t *width) {
    lmc_status st = check_outs(p, pixels, channels, height, width);
    if (st) return st;
    *pixels = NULL;
    *channels = *height = *width = 0;
    if (!path || !*path) return lmc_err(LMC_ERR_INVALID_ARG, "image preprocess: no path given");
    char *data = NULL;
    size_t len = 0;
    if ((st = lmc_read_file(path, path, LMC_IMAGE_MAX_FILE_BYTES, &data, &len))) return st;
    st = lmc_image_preprocess_bytes(&p->cfg, data, len, path, pixels, channels, height, width);
    free(data);
    return st;
}
