/* lmc_context: ownership, accessors and thin tokenizer forwards. */
#include "base/error.h"
#include "lm/context.h"
#include <stdlib.h>

void lmc_context_free(lmc_context *ctx) {
    if (!ctx) return;
    lmc_model_free(ctx->model); /* may hold views into the weights */
    lmc_st_set_free(ctx->weights);
    lmc_tokenizer_free(ctx->tok);
    json_object_put(ctx->config_json);
    free(ctx->config_raw);
    free(ctx);
}

lmc_tokenizer *lmc_context_tokenizer(const lmc_context *ctx) { return ctx ? ctx->tok : NULL; }

lmc_model *lmc_context_model(const lmc_context *ctx) { return ctx ? ctx->model : NULL; }

const lmc_model_config *lmc_context_config(const lmc_context *ctx) {
    return ctx ? &ctx->cfg : NULL;
}

const char *lmc_context_model_type(const lmc_context *ctx) {
    return ctx ? ctx->cfg.model_type : NULL;
}

lmc_status lmc_context_encode(const lmc_context *ctx, const char *text, size_t len,
                              bool add_special_tokens, int32_t **ids, size_t *n_ids) {
    if (!ctx || !ctx->tok) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_context_encode: no context");
    return lmc_tokenizer_encode(ctx->tok, text, len, add_special_tokens, ids, n_ids);
}

lmc_status lmc_context_decode(const lmc_context *ctx, const int32_t *ids, size_t n_ids,
                              bool skip_special_tokens, char **text) {
    if (!ctx || !ctx->tok) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_context_decode: no context");
    return lmc_tokenizer_decode(ctx->tok, ids, n_ids, skip_special_tokens, text);
}

lmc_status lmc_context_apply_chat_template(const lmc_context *ctx, const char *messages_json,
                                           const char *tools_json, bool add_generation_prompt,
                                           bool continue_final_message,
                                           const char *extra_context_json, char **out) {
    if (!ctx || !ctx->tok)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_context_apply_chat_template: no context");
    return lmc_tokenizer_apply_chat_template(ctx->tok, messages_json, tools_json,
                                             add_generation_prompt, continue_final_message,
                                             extra_context_json, out);
}

lmc_status lmc_context_apply_chat_template_ids(const lmc_context *ctx, const char *messages_json,
                                               const char *tools_json,
                                               bool add_generation_prompt,
                                               bool continue_final_message,
                                               const char *extra_context_json, int32_t **ids,
                                               size_t *n_ids) {
    if (!ctx || !ctx->tok)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_context_apply_chat_template_ids: no context");
    return lmc_tokenizer_apply_chat_template_ids(ctx->tok, messages_json, tools_json,
                                                 add_generation_prompt, continue_final_message,
                                                 extra_context_json, ids, n_ids);
}
