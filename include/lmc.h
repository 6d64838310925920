/* lmc — load, run, chat with, serve and fine-tune Hugging Face-format
 * language models from a local directory.
 *
 * Conventions
 *  - Every fallible call returns lmc_status; on failure lmc_last_error()
 *    holds a message (per thread) naming the file, key or limit involved.
 *  - Handles are opaque. Whoever creates a handle (lmc_x_load / lmc_x_new)
 *    frees it with the matching lmc_x_free. Freeing NULL is a no-op.
 *  - Buffers returned through out-parameters (char **, int32_t **) belong to
 *    the caller and are released with lmc_free().
 *  - Pointers passed in are borrowed for the duration of the call only,
 *    unless a function's comment says otherwise.
 */
#ifndef LMC_H
#define LMC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMC_VERSION "0.1.0"

typedef enum {
    LMC_OK = 0,
    LMC_ERR_INVALID_ARG, /* caller passed something unusable */
    LMC_ERR_NOT_FOUND,   /* a file, key or name does not exist */
    LMC_ERR_IO,          /* open/read/write failed, or not a regular file */
    LMC_ERR_FORMAT,      /* malformed JSON, safetensors, jsonl, ... */
    LMC_ERR_UNSUPPORTED, /* well-formed but not supported (model_type, dtype) */
    LMC_ERR_LIMIT,       /* a size, depth or count cap was hit */
    LMC_ERR_NOMEM,
    LMC_ERR_TEMPLATE,    /* chat-template syntax or runtime error */
    LMC_ERR_STATE,       /* call not valid in the object's current state */
    LMC_ERR_DEVICE,      /* CUDA or other accelerator failure */
    LMC_ERR_CANCELLED,   /* a callback asked to stop */
} lmc_status;

/* Message for the last failure on this thread ("" if none). Borrowed. */
const char *lmc_last_error(void);
const char *lmc_status_str(lmc_status st);
const char *lmc_version(void);
/* Release a buffer returned by any lmc function. */
void lmc_free(void *p);

typedef enum { LMC_DEVICE_CPU = 0, LMC_DEVICE_CUDA = 1 } lmc_device;

/* Progress for long work (loading, training). `stage` is a short label;
 * fraction in [0,1]. Return false to cancel (the call fails with
 * LMC_ERR_CANCELLED). */
typedef bool (*lmc_progress_fn)(void *user, const char *stage, double fraction);

/* ======================= tokenizer (src/tokenizer) ======================= */
typedef struct lmc_tokenizer lmc_tokenizer;

/* Load <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json
 * (special tokens, add_bos_token, chat_template). */
lmc_status lmc_tokenizer_load(const char *dir, lmc_tokenizer **out);
/* Same, from explicit paths (config_path may be NULL). */
lmc_status lmc_tokenizer_load_files(const char *tokenizer_json_path,
                                    const char *tokenizer_config_path, lmc_tokenizer **out);
void lmc_tokenizer_free(lmc_tokenizer *t);

/* ids: caller frees with lmc_free. */
lmc_status lmc_tokenizer_encode(const lmc_tokenizer *t, const char *text, size_t len,
                                bool add_special_tokens, int32_t **ids, size_t *n_ids);
lmc_status lmc_tokenizer_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n_ids,
                                bool skip_special_tokens, char **text);
size_t lmc_tokenizer_vocab_size(const lmc_tokenizer *t);
/* Borrowed token string, or NULL when out of range. */
const char *lmc_tokenizer_id_to_token(const lmc_tokenizer *t, int32_t id);
int32_t lmc_tokenizer_token_to_id(const lmc_tokenizer *t, const char *token); /* -1 if none */
bool lmc_tokenizer_is_special(const lmc_tokenizer *t, int32_t id);

/* The eos set. Defaults to tokenizer_config.json's eos_token; the load
 * factory replaces it with config/generation_config's eos_token_id. */
size_t lmc_tokenizer_eos_ids(const lmc_tokenizer *t, const int32_t **ids);
lmc_status lmc_tokenizer_set_eos_ids(lmc_tokenizer *t, const int32_t *ids, size_t n);
int32_t lmc_tokenizer_bos_id(const lmc_tokenizer *t); /* -1 if none */
/* tokenizer_config.json special token strings by key ("bos_token",
 * "eos_token", "pad_token", "unk_token"); borrowed, NULL when absent. */
const char *lmc_tokenizer_special_token(const lmc_tokenizer *t, const char *key);
/* Chat template source: name NULL -> "default" (or the only/string one). */
const char *lmc_tokenizer_chat_template(const lmc_tokenizer *t, const char *name);

/* Streaming detokenizer: push ids one at a time; each push yields the text
 * that became complete (possibly ""); finish flushes the tail. The
 * concatenation equals lmc_tokenizer_decode of all ids. */
typedef struct lmc_detokenizer lmc_detokenizer;
lmc_status lmc_detokenizer_new(const lmc_tokenizer *t, bool skip_special_tokens,
                               lmc_detokenizer **out);
lmc_status lmc_detokenizer_push(lmc_detokenizer *d, int32_t id, char **segment);
lmc_status lmc_detokenizer_finish(lmc_detokenizer *d, char **tail);
void lmc_detokenizer_reset(lmc_detokenizer *d);
void lmc_detokenizer_free(lmc_detokenizer *d);
/* ===================== end tokenizer (src/tokenizer) ===================== */

/* ===================== chat template (src/template) ====================== */
/* =================== end chat template (src/template) ==================== */

/* ============== model loading and context (src/lm, src/models) =========== */
/* ============ end model loading and context (src/lm, src/models) ========= */

/* ================= generation and chat session (src/lm) ================== */
/* =============== end generation and chat session (src/lm) ================ */

#ifdef __cplusplus
}
#endif
#endif
