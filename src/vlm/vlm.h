/* The VLM load factory: the minimal base config.json, processor-config
 * resolution, the model_type and processor_class registries, and the
 * loader that ties them together; the hooks an architecture fills in to
 * run (embeddings with image features, prompt expansion) and generation
 * over them. Registries made with *_registry_new start empty; the default
 * ones hold the built-in architecture (LLaVA). */
#ifndef LMC_VLM_VLM_H
#define LMC_VLM_VLM_H
#include "formats/config.h"
#include "formats/safetensors.h"
#include "lmc.h"
#include "models/model.h"
#include "vlm/image.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- base config.json: only what dispatch and the tokenizer need. Real
 * VLM checkpoints nest the text-model fields under text_config, so nothing
 * else is required; architectures read the rest from the parsed JSON. */
typedef struct {
    char model_type[64]; /* verbatim */
    /* eos after nested promotion and the generation_config.json override;
     * has_eos false: the tokenizer keeps its own eos. */
    bool has_eos;
    int32_t eos_ids[LMC_MAX_EOS];
    int n_eos;
    /* top-level "quantization" (carried, not applied) */
    bool quantized;
    int64_t q_group_size, q_bits;
} lmc_vlm_base_config;

/* Parse an in-memory config.json: model_type (string, required),
 * eos_token_id (id or list of ids; null = absent), quantization (object).
 * No nested promotion and no override happen here. */
lmc_status lmc_vlm_base_config_parse(const char *text, size_t len, const char *what,
                                     lmc_vlm_base_config *cfg, json_object **json_out);
/* Read <dir>/config.json once (bounded, FIFO-safe). When the top-level
 * eos_token_id is absent or null, the first of text_config / llm_config
 * that has an eos_token_id key supplies it if truthy (nonzero id or
 * non-empty list). Then a truthy generation_config.json eos_token_id
 * replaces it (a missing, malformed or non-regular generation_config.json
 * changes nothing). Either out may be NULL. */
lmc_status lmc_vlm_base_config_load(const char *dir, lmc_vlm_base_config *cfg,
                                    json_object **json_out, char **raw_out);


/* The VLM model_type alias table (independent of the LM one): returns the
 * canonical id, or model_type itself. */
const char *lmc_vlm_remap_model_type(const char *model_type);
/* processor_class override for a canonical model_type (NULL: none). */
const char *lmc_vlm_processor_class_override(const char *canonical_model_type);

/* ---- processor config: preprocessor_config.json is preferred over
 * processor_config.json (see lmc_vlm_processor_config_load). */
typedef struct {
    char *processor_class;     /* the dispatch key as found on disk */
    char *preprocessor_json;   /* body of preprocessor_config.json, or NULL */
    char *processor_json;      /* body of processor_config.json, or NULL */
    const char *filename;      /* the file the primary metadata came from */
    const char *class_source;  /* the file processor_class came from */
} lmc_vlm_processor_config;

/* Resolution, each file read at most once:
 *  - preprocessor_config.json present with processor_class: that class;
 *    processor_config.json is also read when it exists (body carried).
 *  - preprocessor_config.json present without processor_class:
 *    processor_config.json supplies it (missing file or missing key ->
 *    LMC_ERR_FORMAT naming processor_class).
 *  - preprocessor_config.json absent: processor_config.json must exist
 *    (LMC_ERR_NOT_FOUND naming both) and carry processor_class.
 * Both files must be JSON objects; processor_class must be a string (null
 * counts as absent). Non-regular or oversized files are errors, never
 * treated as absent. */
lmc_status lmc_vlm_processor_config_load(const char *dir, lmc_vlm_processor_config *out);
void lmc_vlm_processor_config_free(lmc_vlm_processor_config *pc);

/* ---- constructed objects. Architectures embed these as their first
 * member and free through the function pointer. The other members are
 * what generation needs; an architecture that leaves them NULL can be
 * loaded but not run. */

/* One preprocessed image: c x h x w floats, channel-major (borrowed). */
typedef struct {
    const float *pixels;
    size_t c, h, w;
} lmc_vlm_image;

typedef struct lmc_vlm_model lmc_vlm_model;
struct lmc_vlm_model {
    void (*free)(lmc_vlm_model *m);
    /* The language model (owned by the VLM model); its vtable must have
     * forward_embeds. */
    lmc_model *text;
    /* Input embeddings (n x text hidden_size floats, *embeds malloc'd) for
     * prompt ids whose image-token placeholders take the features of
     * `images`, in order. The placeholder count must match the images. */
    lmc_status (*embed)(lmc_vlm_model *m, const int32_t *ids, size_t n,
                        const lmc_vlm_image *images, size_t n_images, float **embeds);
};

typedef struct lmc_vlm_processor lmc_vlm_processor;
struct lmc_vlm_processor {
    void (*free)(lmc_vlm_processor *p);
    lmc_image_config image; /* what the model's vision encoder expects */
    const char *image_token; /* the placeholder text a prompt marks images with */
    /* Prompt text with one image_token per image (`images` preprocessed
     * with `image`) -> token ids, each image token expanded to the number
     * of features of its image and special tokens added. ids: malloc'd. */
    lmc_status (*encode)(const lmc_vlm_processor *p, const char *prompt,
                         const lmc_vlm_image *images, size_t n_images, int32_t **ids,
                         size_t *n_ids);
};

/* What a model constructor receives (no I/O left to do). */
typedef struct {
    const lmc_vlm_base_config *config;
    json_object *config_json; /* parsed config.json (text_config, vision_config, ...) */
    const char *config_raw;   /* the bytes config and config_json came from */
    lmc_st_set *weights;      /* borrowed; outlives the model */
    lmc_device device;
} lmc_vlm_loaded_model;

/* What a processor constructor receives. */
typedef struct {
    const lmc_vlm_base_config *config; /* the same instance the model saw */
    const char *config_raw;            /* the same config.json bytes */
    const char *processor_class;       /* the lookup key, override applied */
    const char *preprocessor_json;     /* NULL when the file is absent */
    const char *processor_json;        /* NULL when the file is absent */
    const char *processor_config_filename;
    const lmc_tokenizer *tokenizer;    /* built already; borrowed */
} lmc_vlm_loaded_processor;

typedef lmc_status (*lmc_vlm_model_ctor)(const lmc_vlm_loaded_model *lm, lmc_vlm_model **out);
typedef lmc_status (*lmc_vlm_processor_ctor)(const lmc_vlm_loaded_processor *lp,
                                             lmc_vlm_processor **out);

/* ---- model_type registry: ids canonicalized with lmc_vlm_remap_model_type
 * on registration and lookup. Last writer wins; the replaced constructor
 * comes back through *displaced (which may be NULL). */
typedef struct lmc_vlm_model_registry lmc_vlm_model_registry;
lmc_status lmc_vlm_model_registry_new(lmc_vlm_model_registry **out);
void lmc_vlm_model_registry_free(lmc_vlm_model_registry *r);
lmc_status lmc_vlm_model_registry_register(lmc_vlm_model_registry *r, const char *model_type,
                                           lmc_vlm_model_ctor ctor, lmc_vlm_model_ctor *displaced);
bool lmc_vlm_model_registry_contains(const lmc_vlm_model_registry *r, const char *model_type);
/* Unregistered -> LMC_ERR_UNSUPPORTED naming the model_type. */
lmc_status lmc_vlm_model_registry_create(const lmc_vlm_model_registry *r,
                                         const lmc_vlm_loaded_model *lm, lmc_vlm_model **out);

/* ---- processor_class registry: raw keys (no canonicalization; the
 * per-model_type override applies on the loader's lookup only). */
typedef struct lmc_vlm_processor_registry lmc_vlm_processor_registry;
lmc_status lmc_vlm_processor_registry_new(lmc_vlm_processor_registry **out);
void lmc_vlm_processor_registry_free(lmc_vlm_processor_registry *r);
lmc_status lmc_vlm_processor_registry_register(lmc_vlm_processor_registry *r,
                                               const char *processor_class,
                                               lmc_vlm_processor_ctor ctor,
                                               lmc_vlm_processor_ctor *displaced);
bool lmc_vlm_processor_registry_contains(const lmc_vlm_processor_registry *r,
                                         const char *processor_class);
lmc_status lmc_vlm_processor_registry_create(const lmc_vlm_processor_registry *r,
                                             const lmc_vlm_loaded_processor *lp,
                                             lmc_vlm_processor **out);

/* The built-in registries: model_type "llava"; processor classes
 * "LlavaProcessor" (and the CLIP image-processor class names a LLaVA
 * checkpoint may carry as its processor_class). Shared, read-only. */
const lmc_vlm_model_registry *lmc_vlm_default_model_registry(void);
const lmc_vlm_processor_registry *lmc_vlm_default_processor_registry(void);

/* ---- a loaded VLM. */
struct lmc_vlm_context {
    lmc_vlm_model *model;
    lmc_vlm_processor *processor;
    lmc_tokenizer *tok;
    lmc_vlm_base_config cfg;
    json_object *config_json;
    char *config_raw;
    lmc_vlm_processor_config proc;
    char *processor_class; /* the key the processor was built under */
    lmc_st_set *weights;
};

/* lmc_vlm_load with explicit registries (tests, embedders). */
lmc_status lmc_vlm_load_with(const lmc_load_options *opts, const lmc_vlm_model_registry *models,
                             const lmc_vlm_processor_registry *processors,
                             lmc_vlm_context **out);

/* ---- built-in architectures (llava.c, llava_processor.c) */
lmc_status lmc_llava_create(const lmc_vlm_loaded_model *lm, lmc_vlm_model **out);
lmc_status lmc_llava_processor_create(const lmc_vlm_loaded_processor *lp,
                                      lmc_vlm_processor **out);

/* ---- running a loaded VLM (vlm_generate.c) */
/* Preprocess image files with the context's processor (RGB, resize, crop,
 * normalize). *pixels[i] is malloc'd (free each, then the array). */
lmc_status lmc_vlm_load_images(const lmc_vlm_context *ctx, const char *const *paths, size_t n,
                               float ***pixels, lmc_vlm_image **images);
void lmc_vlm_free_images(float **pixels, lmc_vlm_image *images, size_t n);
/* Feed prompt ids (image tokens expanded) with their images into `cache`
 * (made for ctx->model->text); logits of the last position, or n x vocab
 * with all_logits. */
lmc_status lmc_vlm_prefill(lmc_vlm_context *ctx, lmc_kv_cache *cache, const int32_t *ids,
                           size_t n, const lmc_vlm_image *images, size_t n_images,
                           float *logits, bool all_logits);
/* Generate from prompt ids and images: prefill with the image features,
 * then decode like lmc_generate_ids (sampler, stop strings, eos, max_tokens,
 * callback). */
lmc_status lmc_vlm_generate_ids(lmc_vlm_context *ctx, const int32_t *ids, size_t n,
                                const lmc_vlm_image *images, size_t n_images,
                                const lmc_gen_params *p, lmc_gen_callback cb, void *user,
                                lmc_gen_stats *stats);

#endif
