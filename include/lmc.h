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
