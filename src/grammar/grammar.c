/* The public constrained-decoding entry points (lmc.h): compile a GBNF
 * grammar, a regular expression or a JSON schema into one lmc_grammar. */
#include "base/error.h"
#include "base/json.h"
#include "grammar/compile.h"
#include "grammar/matcher.h"
#include <stdlib.h>
#include <string.h>

#define GRAMMAR_MAX_SOURCE ((size_t)16 << 20)

typedef lmc_status (*front_end)(lmc_cfg *g, const char *src, size_t n);

static lmc_status regex_front(lmc_cfg *g, const char *src, size_t n) {
    int32_t sym;
    lmc_status st = rx_compile(g, src, n, 0, &sym);
    if (st) return st;
    g->root = cfg_rule_anon(g);
    if (g->root < 0) return LMC_ERR_NOMEM;
    return cfg_add_alt(g, g->root, &sym, 1);
}

static lmc_status build(const char *what, front_end fe, const char *src, bool json, lmc_grammar **out) {
    *out = NULL;
    if (!src) return lmc_err(LMC_ERR_INVALID_ARG, "%s: source is NULL", what);
    size_t n = strlen(src);
    if (n > GRAMMAR_MAX_SOURCE)
        return lmc_err(LMC_ERR_LIMIT, "%s: source of %zu bytes exceeds %zu", what, n, GRAMMAR_MAX_SOURCE);
    lmc_grammar *g = calloc(1, sizeof *g);
    if (!g) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
    cfg_init(&g->cfg, what);
    g->cfg.json_strings = json;
    pthread_mutex_init(&g->mu, NULL);
    lmc_status st = fe(&g->cfg, src, n);
    if (!st) st = cfg_finalize(&g->cfg);
    /* build the start state now, so a grammar that matches nothing fails here */
    if (!st) st = lmc_grammar_match_bytes(g, "", 0, NULL, NULL);
    if (st) {
        lmc_grammar_free(g);
        return st;
    }
    *out = g;
    return LMC_OK;
}

lmc_status lmc_grammar_from_gbnf(const char *src, lmc_grammar **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "grammar: out is NULL");
    return build("grammar", gbnf_compile, src, false, out);
}

lmc_status lmc_grammar_from_json_gbnf(const char *src, lmc_grammar **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "grammar: out is NULL");
    return build("grammar", gbnf_compile, src, true, out);
}

lmc_status lmc_grammar_from_regex(const char *regex, lmc_grammar **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "regex: out is NULL");
    return build("regex", regex_front, regex, false, out);
}

lmc_status lmc_json_schema_to_gbnf(const char *schema_json, char **gbnf) {
    if (!schema_json || !gbnf) return lmc_err(LMC_ERR_INVALID_ARG, "json schema: NULL argument");
    *gbnf = NULL;
    json_object *root = NULL;
    lmc_status st = lmc_json_parse(schema_json, strlen(schema_json), "json schema", &root);
    if (st) return st;
    st = json_schema_to_gbnf(root, gbnf);
    json_object_put(root);
    return st;
}

lmc_status lmc_grammar_from_json_schema(const char *schema_json, lmc_grammar **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "json schema: out is NULL");
    *out = NULL;
    char *text = NULL;
    lmc_status st = lmc_json_schema_to_gbnf(schema_json, &text);
    if (st) return st;
    st = build("json schema", gbnf_compile, text, true, out);
    free(text);
    return st;
}

lmc_status lmc_grammar_json_object(lmc_grammar **out) {
    return lmc_grammar_from_json_schema("{\"type\":\"object\"}", out);
}

lmc_status lmc_grammar_match(lmc_grammar *g, const char *text, size_t len, bool *complete,
                             bool *prefix) {
    if (!g || (!text && len)) return lmc_err(LMC_ERR_INVALID_ARG, "grammar_match: NULL argument");
    return lmc_grammar_match_bytes(g, text ? text : "", len, complete, prefix);
}

void lmc_grammar_free(lmc_grammar *g) {
    if (!g) return;
    lmc_grammar_pda_free(g);
    cfg_free(&g->cfg);
    pthread_mutex_destroy(&g->mu);
    free(g);
}
