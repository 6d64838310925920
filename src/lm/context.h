/* Internal view of a loaded context, and the model_type registry the load
 * factory dispatches through. */
#ifndef LMC_LM_CONTEXT_H
#define LMC_LM_CONTEXT_H
#include "formats/config.h"
#include "formats/safetensors.h"
#include "lmc.h"
#include "models/model.h"
#include <json-c/json.h>

/* Everything lmc_context_load produced. Freed in reverse: the model (which
 * may hold views into the weights) before the weight set. */
struct lmc_context {
    lmc_model *model;
    lmc_tokenizer *tok;
    lmc_model_config cfg;     /* eos already resolved (see lmc_config_load) */
    json_object *config_json; /* parsed config.json */
    char *config_raw;         /* the bytes config_json and cfg came from */
    lmc_st_set *weights;
};

/* The tokenizer of a checkpoint: tokenizer.json in tok_dir (a missing one
 * is named, with a hint about a separate tokenizer directory unless one was
 * given), its eos set replaced by eos_ids when n_eos > 0. */
lmc_status lmc_load_model_tokenizer(const char *tok_dir, bool separate_dir, const int32_t *eos_ids,
                                    int n_eos, lmc_tokenizer **out);

/* Borrowed; live as long as the context. */
lmc_model *lmc_context_model(const lmc_context *ctx);
const lmc_model_config *lmc_context_config(const lmc_context *ctx);

/* ---- model_type aliases: a checkpoint whose model_type is an alias
 * ("mistral") is served by the canonical architecture ("llama"). Returns
 * the canonical id, or model_type itself when it is not an alias. */
const char *lmc_remap_model_type(const char *model_type);

/* ---- model_type -> constructor table. Ids are canonicalized with
 * lmc_remap_model_type on registration and lookup, so register canonical
 * ids and aliases resolve to them. */
typedef struct lmc_model_registry lmc_model_registry;
lmc_status lmc_registry_new(lmc_model_registry **out); /* empty */
void lmc_registry_free(lmc_model_registry *r);
/* Last writer wins: re-registering an id replaces its constructor; the one
 * replaced is returned through *displaced (NULL when there was none;
 * displaced itself may be NULL). */
lmc_status lmc_registry_register(lmc_model_registry *r, const char *model_type,
                                 lmc_model_ctor ctor, lmc_model_ctor *displaced);
bool lmc_registry_contains(const lmc_model_registry *r, const char *model_type);
/* Construct for lm->config->model_type; unregistered -> LMC_ERR_UNSUPPORTED
 * "unsupported model type 'x'". */
lmc_status lmc_registry_create(const lmc_model_registry *r, const lmc_loaded_model *lm,
                               lmc_model **out);
/* The built-in architectures: every description in models/arch (llama,
 * mistral, qwen2, qwen3, phi3, gemma3_text).
 * Shared and read-only. */
const lmc_model_registry *lmc_default_registry(void);

/* lmc_context_load with an explicit registry (tests, embedders adding
 * architectures). */
lmc_status lmc_context_load_with(const lmc_load_options *opts, const lmc_model_registry *reg,
                                 lmc_context **out);

#endif
