#include "base/json.h"
#include "base/error.h"
#include "base/file.h"
#include <ctype.h>
#include <stdlib.h>

/* JSON's own whitespace (RFC 8259): what strict documents may trail with. */
static bool json_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

lmc_status lmc_json_parse(const char *text, size_t len, const char *what,
                          json_object **out) {
    return lmc_json_parse_ex(text, len, what, false, out);
}

lmc_status lmc_json_parse_ex(const char *text, size_t len, const char *what, bool strict,
                             json_object **out) {
    *out = NULL;
    json_tokener *tok = json_tokener_new_ex(128);
    if (!tok) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
    if (strict) json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
    if (len > INT32_MAX) {
        json_tokener_free(tok);
        return lmc_err(LMC_ERR_LIMIT, "%s: document too large", what);
    }
    json_object *o = json_tokener_parse_ex(tok, text, (int)len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t off = json_tokener_get_parse_end(tok);
    if (e == json_tokener_continue && off == len) {
        /* a top-level number or literal ("12", "true") waits for a
         * delimiter that the end of the document provides */
        o = json_tokener_parse_ex(tok, " ", 1);
        e = json_tokener_get_error(tok);
    }
    json_tokener_free(tok);
    if (e == json_tokener_continue)
        return lmc_err(LMC_ERR_FORMAT, "%s: invalid JSON: unexpected end of input", what);
    if (!o && e == json_tokener_success)
        return lmc_err(LMC_ERR_FORMAT, "%s: invalid JSON: empty document", what);
    if (e != json_tokener_success)
        return lmc_err(LMC_ERR_FORMAT, "%s: invalid JSON at byte %zu: %s", what, off,
                       json_tokener_error_desc(e));
    for (size_t i = off; i < len; i++) {
        if (strict ? !json_space(text[i]) : !isspace((unsigned char)text[i])) {
            json_object_put(o);
            return lmc_err(LMC_ERR_FORMAT, "%s: invalid JSON at byte %zu: trailing data",
                           what, i);
        }
    }
    *out = o;
    return LMC_OK;
}

lmc_status lmc_json_load_file(const char *path, const char *what, size_t max_bytes,
                              json_object **out, char **raw_text) {
    char *text;
    size_t len;
    *out = NULL;
    if (raw_text) *raw_text = NULL;
    lmc_status st = lmc_read_file(path, what, max_bytes, &text, &len);
    if (st) return st;
    st = lmc_json_parse(text, len, what, out);
    if (st || !raw_text)
        free(text);
    else
        *raw_text = text;
    return st;
}

json_object *lmc_json_get(json_object *o, const char *key) {
    json_object *v = NULL;
    if (!o || !json_object_is_type(o, json_type_object)) return NULL;
    if (!json_object_object_get_ex(o, key, &v)) return NULL;
    return v; /* may be NULL for JSON null */
}

bool lmc_json_int(json_object *o, const char *key, int64_t *out, bool *bad) {
    json_object *v = lmc_json_get(o, key);
    if (!v) return false;
    if (json_object_is_type(v, json_type_int)) {
        *out = json_object_get_int64(v);
        return true;
    }
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        /* Range check first: casting an out-of-range double is undefined. */
        if (d >= -9.2e18 && d <= 9.2e18 && d == (double)(int64_t)d) {
            *out = (int64_t)d;
            return true;
        }
    }
    if (bad) *bad = true;
    return false;
}

bool lmc_json_double(json_object *o, const char *key, double *out, bool *bad) {
    json_object *v = lmc_json_get(o, key);
    if (!v) return false;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        *out = json_object_get_double(v);
        return true;
    }
    if (bad) *bad = true;
    return false;
}

bool lmc_json_bool(json_object *o, const char *key, bool *out, bool *bad) {
    json_object *v = lmc_json_get(o, key);
    if (!v) return false;
    if (json_object_is_type(v, json_type_boolean)) {
        *out = json_object_get_boolean(v);
        return true;
    }
    if (bad) *bad = true;
    return false;
}

const char *lmc_json_str(json_object *o, const char *key, bool *bad) {
    json_object *v = lmc_json_get(o, key);
    if (!v) return NULL;
    if (json_object_is_type(v, json_type_string)) return json_object_get_string(v);
    if (bad) *bad = true;
    return NULL;
}
