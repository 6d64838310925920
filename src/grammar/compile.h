/* The grammar front ends: regular expressions, the GBNF-like grammar
 * syntax and JSON schemas, each compiling into an lmc_cfg. */
#ifndef LMC_GRAMMAR_COMPILE_H
#define LMC_GRAMMAR_COMPILE_H
#include "base/buf.h"
#include "grammar/cfg.h"
#include <json-c/json.h>

enum {
    RX_JSON_STRING = 1, /* only characters a JSON string holds unescaped */
};
/* Compile src[0..n) (whole-match semantics: ^ and $ are accepted at the
 * ends only) into one symbol of g. Unsupported constructs (look-around,
 * back-references, word boundaries) are refused by name. */
lmc_status rx_compile(lmc_cfg *g, const char *src, size_t n, unsigned flags, int32_t *out);

/* Parse a GBNF-like grammar (rules `name ::= alternatives`, "literals",
 * [classes], (groups), . , * + ? {m,n}, /regex/, # comments); its root is
 * the rule named "root". */
lmc_status gbnf_compile(lmc_cfg *g, const char *src, size_t n);

/* A JSON schema as GBNF text (*out malloc'd). Keywords that are not
 * supported are refused with a message naming them and their path. */
lmc_status json_schema_to_gbnf(json_object *schema, char **out);
/* The rules of one schema with every name prefixed by `prefix`, appended
 * to out (they use the shared prelude's str-char, string, value, ...);
 * *top names the schema's rule. */
lmc_status json_schema_rules(json_object *schema, const char *prefix, lmc_buf *out, char *top,
                             size_t cap);
const char *json_schema_prelude(void);
/* A GBNF grammar built on json_schema_prelude() (its str-char rule is the
 * JSON string character, which the token mask slices by). */
lmc_status lmc_grammar_from_json_gbnf(const char *src, lmc_grammar **out);
#endif
