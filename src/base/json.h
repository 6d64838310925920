/* Thin helpers over json-c: parse with a located error, typed lookups. */
#ifndef LMC_BASE_JSON_H
#define LMC_BASE_JSON_H
#include "lmc.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stdint.h>

/* Parse `len` bytes as one JSON document; trailing non-space is an error.
 * Messages read "<what>: invalid JSON at byte N: <reason>". */
lmc_status lmc_json_parse(const char *text, size_t len, const char *what,
                          json_object **out);
/* As lmc_json_parse; `strict` also refuses what json-c otherwise tolerates
 * (comments, trailing commas, invalid UTF-8, non-JSON trailing space). */
lmc_status lmc_json_parse_ex(const char *text, size_t len, const char *what, bool strict,
                             json_object **out);
/* Read + parse a file with a size cap (see lmc_read_file). */
lmc_status lmc_json_load_file(const char *path, const char *what, size_t max_bytes,
                              json_object **out, char **raw_text);

/* Lookups: return false when the key is absent or null; set *bad when the
 * key is present with the wrong type (so callers can name the field). */
bool lmc_json_int(json_object *o, const char *key, int64_t *out, bool *bad);
bool lmc_json_double(json_object *o, const char *key, double *out, bool *bad);
bool lmc_json_bool(json_object *o, const char *key, bool *out, bool *bad);
const char *lmc_json_str(json_object *o, const char *key, bool *bad);
json_object *lmc_json_get(json_object *o, const char *key);

#endif
