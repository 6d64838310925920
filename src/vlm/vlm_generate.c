/* Running a loaded VLM: image files through the processor, the prompt
 * through its image-token expansion, the prefill through the model's
 * embeddings (image features spliced in), then the same decode as text
 * generation (sampler, stop strings, eos, max_tokens, callback). */
#include "base/buf.h"
#include "base/error.h"
#include "base/file.h"
#include "lm/generate.h"
#include "lm/sampler.h"
#include "vlm/vlm.h"
#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

void lmc_vlm_free_images(float **pixels, lmc_vlm_image *images, size_t n) {
    for (size_t i = 0; pixels && i < n; i++) free(pixels[i]);
    free(pixels);
    free(images);
}

lmc_status lmc_vlm_load_images(const lmc_vlm_context *ctx, const char *const *paths, size_t n,
                               float ***pixels_out, lmc_vlm_image **images_out) {
    *pixels_out = NULL;
    *images_out = NULL;
    if (!ctx || !ctx->processor) return lmc_err(LMC_ERR_INVALID_ARG, "vlm: no context");
    if (n && !paths) return lmc_err(LMC_ERR_INVALID_ARG, "vlm: no image paths given");
    if (n == 0) return LMC_OK;
    float **px = calloc(n, sizeof *px);
    lmc_vlm_image *im = calloc(n, sizeof *im);
    if (!px || !im) {
        free(px);
        free(im);
        return lmc_err(LMC_ERR_NOMEM, "vlm: out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        lmc_status st = LMC_OK;
        if (!paths[i] || !*paths[i])
            st = lmc_err(LMC_ERR_INVALID_ARG, "vlm: image path %zu is empty", i);
        else {
            char *data = NULL;
            size_t len = 0;
            st = lmc_read_file(paths[i], paths[i], LMC_IMAGE_MAX_FILE_BYTES, &data, &len);
            if (!st)
                st = lmc_image_preprocess_bytes(&ctx->processor->image, data, len, paths[i],
                                                &px[i], &im[i].c, &im[i].h, &im[i].w);
            free(data);
        }
        if (st) {
            lmc_vlm_free_images(px, im, n);
            return st;
        }
        im[i].pixels = px[i];
    }
    *pixels_out = px;
    *images_out = im;
    return LMC_OK;
}

static lmc_status check_runnable(const lmc_vlm_context *ctx) {
    if (!ctx || !ctx->model || !ctx->processor || !ctx->tok)
        return lmc_err(LMC_ERR_INVALID_ARG, "vlm: no loaded context");
    if (!ctx->model->text || !ctx->model->embed || !ctx->model->text->vt->forward_embeds ||
        !ctx->processor->encode)
        return lmc_err(LMC_ERR_UNSUPPORTED, "vlm: model type '%s' cannot generate",
                       ctx->cfg.model_type);
    return LMC_OK;
}

lmc_status lmc_vlm_prefill(lmc_vlm_context *ctx, lmc_kv_cache *cache, const int32_t *ids,
                           size_t n, const lmc_vlm_image *images, size_t n_images,
                           float *logits, bool all_logits) {
    lmc_status st = check_runnable(ctx);
    if (st) return st;
    if (!cache || !ids || !n || !logits)
        return lmc_err(LMC_ERR_INVALID_ARG, "vlm prefill: cache, ids and logits are required");
    float *emb = NULL;
    if ((st = ctx->model->embed(ctx->model, ids, n, images, n_images, &emb))) return st;
    lmc_model *t = ctx->model->text;
    st = t->vt->forward_embeds(t, cache, emb, n, logits, all_logits);
    free(emb);
    return st;
}

lmc_status lmc_vlm_generate_ids(lmc_vlm_context *ctx, const int32_t *ids, size_t n,
                                const lmc_vlm_image *images, size_t n_images,
                                const lmc_gen_params *params, lmc_gen_callback cb, void *user,
                                lmc_gen_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    lmc_status st = check_runnable(ctx);
    if (st) return st;
    if (!ids || n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "vlm generate: the prompt is empty");
    lmc_gen_params defaults;
    lmc_gen_params_default(&defaults);
    const lmc_gen_params *p = params ? params : &defaults;
    if (p->draft)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "vlm generate: speculative decoding is not supported for VLMs");
    lmc_model *m = ctx->model->text;
    size_t V = (size_t)lmc_model_vocab(m);
    lmc_sampler *s = NULL;
    lmc_kv_cache *kv = NULL;
    float *logits = NULL;
    lmc_ivec hist = {0};
    lmc_emitter e;
    lmc_gen_constraint con = {0};
    bool have_e = false;
    if ((st = lmc_sampler_new(&p->sampler, V, &s))) return st;
    if ((st = lmc_emitter_init(&e, ctx->tok, p, cb, user))) goto done;
    have_e = true;
    if ((st = lmc_constraint_init(&con, p, &e, V))) goto done;
    e.prompt_tokens = n;
    if ((st = lmc_gen_fit_context(m, p, 0, n, &e))) goto done;
    if ((st = lmc_gen_check_cancel(p, "prompt token", 0))) goto done;
    if ((st = lmc_kv_cache_new(m, &kv))) goto done;
    logits = malloc(V * sizeof *logits);
    if (!logits || !lmc_ivec_append(&hist, ids, n)) {
        st = lmc_err(LMC_ERR_NOMEM, "vlm generate: out of memory");
        goto done;
    }
    double t0 = lmc_now_s();
    if ((st = lmc_vlm_prefill(ctx, kv, ids, n, images, n_images, logits, false))) goto done;
    double t1 = lmc_now_s();
    e.prompt_tps = t1 > t0 ? (double)n / (t1 - t0) : 0.0;
    if (stats) stats->prompt_tokens = stats->prefill_tokens = n;
    int32_t top_n = lmc_sampler_top_logprobs(s);
    while (!e.finished) {
        if (e.max_tokens == 0) {
            e.finished = true;
            e.reason = LMC_FINISH_LENGTH;
            break;
        }
        int32_t tok;
        float lp;
        if ((st = lmc_constraint_sample(&con, s, logits, hist.v, hist.n, &tok, &lp))) goto done;
        if ((st = lmc_emitter_token(&e, tok, lp, logits, V, top_n, false))) goto done;
        if (e.finished) break;
        if (!lmc_ivec_push(&hist, tok)) {
            st = lmc_err(LMC_ERR_NOMEM, "vlm generate: out of memory");
            goto done;
        }
        if ((st = lmc_gen_check_cancel(p, "decode step", e.produced))) goto done;
        if ((st = lmc_model_forward(m, kv, &tok, 1, logits, false))) {
            lmc_err_prefix(st, "vlm decode step %zu", e.produced);
            goto done;
        }
    }
done:
    if (have_e) {
        if (st || e.cancelled) lmc_emitter_close(&e);
        lmc_emitter_fill_stats(&e, stats);
        if (stats) stats->prompt_tokens = n;
        lmc_emitter_free(&e);
    }
    lmc_constraint_free(&con);
    lmc_ivec_free(&hist);
    free(logits);
    lmc_kv_cache_free(kv);
    lmc_sampler_free(s);
    return st;
}

/* ------------------------------------------------------------ public API */

const char *lmc_vlm_image_token(const lmc_vlm_context *ctx) {
    return ctx && ctx->processor ? ctx->processor->image_token : NULL;
}

lmc_status lmc_vlm_chat_prompt(const lmc_vlm_context *ctx, const char *text, size_t n_images,
                               char **out) {
    if (out) *out = NULL;
    if (!ctx || !ctx->tok || !text || !out)
        return lmc_err(LMC_ERR_INVALID_ARG, "vlm chat prompt: context, text and out are required");
    if (n_images > 4096) return lmc_err(LMC_ERR_LIMIT, "vlm chat prompt: %zu images", n_images);
    /* [{"role": "user", "content": [{"type": "image"} x n, {"type": "text", "text": text}]}] */
    json_object *msgs = json_object_new_array(), *msg = json_object_new_object();
    json_object *content = json_object_new_array();
    lmc_status st = LMC_OK;
    if (!msgs || !msg || !content) {
        json_object_put(msgs), json_object_put(msg), json_object_put(content);
        return lmc_err(LMC_ERR_NOMEM, "vlm chat prompt: out of memory");
    }
    json_object_array_add(msgs, msg);
    json_object_object_add(msg, "role", json_object_new_string("user"));
    json_object_object_add(msg, "content", content);
    for (size_t i = 0; i < n_images; i++) {
        json_object *it = json_object_new_object();
        if (!it) {
            st = lmc_err(LMC_ERR_NOMEM, "vlm chat prompt: out of memory");
            goto done;
        }
        json_object_object_add(it, "type", json_object_new_string("image"));
        json_object_array_add(content, it);
    }
    json_object *tx = json_object_new_object();
    if (!tx) {
        st = lmc_err(LMC_ERR_NOMEM, "vlm chat prompt: out of memory");
        goto done;
    }
    json_object_object_add(tx, "type", json_object_new_string("text"));
    json_object_object_add(tx, "text", json_object_new_string(text));
    json_object_array_add(content, tx);
    const char *js = json_object_to_json_string_ext(msgs, JSON_C_TO_STRING_PLAIN);
    st = js ? lmc_tokenizer_apply_chat_template(ctx->tok, js, NULL, true, false, NULL, out)
            : lmc_err(LMC_ERR_NOMEM, "vlm chat prompt: out of memory");
done:
    json_object_put(msgs);
    return st;
}

lmc_status lmc_vlm_generate(lmc_vlm_context *ctx, const char *prompt,
                            const char *const *image_paths, size_t n_images,
                            const lmc_gen_params *p, lmc_gen_callback cb, void *user,
                            lmc_gen_stats *stats) {
    if (stats) memset(stats, 0, sizeof *stats);
    lmc_status st = check_runnable(ctx);
    if (st) return st;
    if (!prompt) return lmc_err(LMC_ERR_INVALID_ARG, "vlm generate: no prompt");
    float **px = NULL;
    lmc_vlm_image *im = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    if ((st = lmc_vlm_load_images(ctx, image_paths, n_images, &px, &im))) return st;
    st = ctx->processor->encode(ctx->processor, prompt, im, n_images, &ids, &n);
    if (!st) st = lmc_vlm_generate_ids(ctx, ids, n, im, n_images, p, cb, user, stats);
    free(ids);
    lmc_vlm_free_images(px, im, n_images);
    return st;
}

typedef struct {
    lmc_buf b;
    bool oom;
} collector;

static bool collect(void *user, const lmc_gen_response *r) {
    collector *c = user;
    if (r->text && !lmc_buf_puts(&c->b, r->text)) c->oom = true;
    return !c->oom;
}

lmc_status lmc_vlm_generate_text(lmc_vlm_context *ctx, const char *prompt,
                                 const char *const *image_paths, size_t n_images,
                                 const lmc_gen_params *p, char **out_text, lmc_gen_stats *stats) {
    if (!out_text) return lmc_err(LMC_ERR_INVALID_ARG, "vlm generate: no output pointer");
    *out_text = NULL;
    collector c = {0};
    lmc_status st = lmc_vlm_generate(ctx, prompt, image_paths, n_images, p, collect, &c, stats);
    if (!st && c.oom) st = lmc_err(LMC_ERR_NOMEM, "vlm generate: out of memory");
    if (st) {
        lmc_buf_free(&c.b);
        return st;
    }
    *out_text = c.b.p ? lmc_buf_take(&c.b) : strdup("");
    return *out_text ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "vlm generate: out of memory");
}
