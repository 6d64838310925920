/* jsonl splitting for the fine-tuning datasets: one JSON object per line,
 * every line checked before anything is tokenized. */
#ifndef LMC_TRAIN_JSONL_H
#define LMC_TRAIN_JSONL_H
#include "lmc.h"
#include <json-c/json.h>
#include <stddef.h>

/* One line of a jsonl text: bytes [off, off + len) (newline and a CR before
 * it excluded) at 1-based line number `line`. */
typedef struct {
    size_t off, len, line;
} lmc_jsonl_line;

/* Split `text` into lines. Each line must be at most max_line_bytes long
 * (LMC_ERR_LIMIT), valid UTF-8 without NUL bytes and not blank
 * (LMC_ERR_FORMAT); messages read "<name>:<line>: ...". A final line
 * without a newline counts; an empty text gives zero lines. *lines: free(). */
lmc_status lmc_jsonl_split(const char *text, size_t len, const char *name,
                           size_t max_line_bytes, lmc_jsonl_line **lines, size_t *n_lines);

/* Parse one line as a JSON object ("<name>:<line>: ..." on failure). */
lmc_status lmc_jsonl_parse_line(const char *text, const lmc_jsonl_line *l, const char *name,
                                json_object **out);

#endif
