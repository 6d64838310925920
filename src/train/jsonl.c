#include "train/jsonl.h"
#include "base/error.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Offset of the first byte that breaks UTF-8 (overlong forms, surrogates and
 * code points past U+10FFFF included), or len when the bytes are valid. */
static size_t utf8_invalid_at(const unsigned char *s, size_t len) {
    size_t i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            need = 1, cp = c & 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            need = 2, cp = c & 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            need = 3, cp = c & 0x07, min = 0x10000;
        } else {
            return i;
        }
        if (len - i <= need) return i;
        for (size_t k = 1; k <= need; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return i;
        i += need + 1;
    }
    return len;
}

static bool is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!s[i] || !strchr(" \t\r\f\v", s[i])) return false;
    return true;
}

lmc_status lmc_jsonl_split(const char *text, size_t len, const char *name,
                           size_t max_line_bytes, lmc_jsonl_line **lines, size_t *n_lines) {
    *lines = NULL;
    *n_lines = 0;
    lmc_jsonl_line *v = NULL;
    size_t n = 0, cap = 0, pos = 0, line = 0;
    lmc_status st = LMC_OK;
    while (pos < len) {
        line++;
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t end = nl ? (size_t)(nl - text) : len;
        size_t l = end - pos;
        if (nl && l > 0 && text[end - 1] == '\r') l--;
        const char *s = text + pos;
        if (l > max_line_bytes) {
            st = lmc_err(LMC_ERR_LIMIT, "%s:%zu: line is %zu bytes, over the %zu-byte line limit",
                         name, line, l, max_line_bytes);
            goto fail;
        }
        const char *nul = memchr(s, '\0', l);
        if (nul) {
            st = lmc_err(LMC_ERR_FORMAT, "%s:%zu: NUL byte at column %zu", name, line,
                         (size_t)(nul - s) + 1);
            goto fail;
        }
        size_t bad = utf8_invalid_at((const unsigned char *)s, l);
        if (bad < l) {
            st = lmc_err(LMC_ERR_FORMAT, "%s:%zu: invalid UTF-8 at column %zu", name, line,
                         bad + 1);
            goto fail;
        }
        /* A blank line is not skipped: dropping it would shift the index of
         * every later record away from its line. */
        if (is_blank(s, l)) {
            st = lmc_err(LMC_ERR_FORMAT, "%s:%zu: blank line (every line must hold one JSON record)",
                         name, line);
            goto fail;
        }
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 64;
            lmc_jsonl_line *nv = realloc(v, nc * sizeof *nv);
            if (!nv) {
                st = lmc_err(LMC_ERR_NOMEM, "%s:%zu: out of memory", name, line);
                goto fail;
            }
            v = nv;
            cap = nc;
        }
        v[n++] = (lmc_jsonl_line){pos, l, line};
        pos = nl ? end + 1 : len;
    }
    *lines = v;
    *n_lines = n;
    return LMC_OK;
fail:
    free(v);
    return st;
}

lmc_status lmc_jsonl_parse_line(const char *text, const lmc_jsonl_line *l, const char *name,
                                json_object **out) {
    /* json-c reads a bare null as "no object"; name it as what it is. */
    const char *s = text + l->off;
    size_t a = 0, b = l->len;
    while (a < b && s[a] && strchr(" \t\r\f\v", s[a])) a++;
    while (b > a && s[b - 1] && strchr(" \t\r\f\v", s[b - 1])) b--;
    if (b - a == 4 && !memcmp(s + a, "null", 4))
        return lmc_err(LMC_ERR_FORMAT, "%s:%zu: record must be a JSON object, got null", name,
                       l->line);
    /* Strict mode, as the reference's json.loads: no trailing commas or
     * comments. */
    json_tokener *tok = json_tokener_new_ex(128);
    if (!tok) return lmc_err(LMC_ERR_NOMEM, "%s:%zu: out of memory", name, l->line);
    json_tokener_set_flags(tok, JSON_TOKENER_STRICT);
    if (l->len > INT32_MAX) {
        json_tokener_free(tok);
        return lmc_err(LMC_ERR_LIMIT, "%s:%zu: line too long for the JSON parser", name, l->line);
    }
    json_object *o = json_tokener_parse_ex(tok, s, (int)l->len);
    enum json_tokener_error e = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (e == json_tokener_continue)
        return lmc_err(LMC_ERR_FORMAT, "%s:%zu: invalid JSON: unexpected end of line", name, l->line);
    if (e != json_tokener_success)
        return lmc_err(LMC_ERR_FORMAT, "%s:%zu: invalid JSON at column %zu: %s", name, l->line,
                       end + 1, json_tokener_error_desc(e));
    for (size_t k = end; k < l->len; k++) {
        if (!strchr(" \t\r\f\v", s[k])) {
            json_object_put(o);
            return lmc_err(LMC_ERR_FORMAT, "%s:%zu: invalid JSON at column %zu: trailing data "
                           "after the record", name, l->line, k + 1);
        }
    }
    if (!json_object_is_type(o, json_type_object)) {
        const char *kind = o ? json_type_to_name(json_object_get_type(o)) : "null";
        json_object_put(o);
        return lmc_err(LMC_ERR_FORMAT, "%s:%zu: record must be a JSON object, got %s", name,
                       l->line, kind);
    }
    *out = o;
    return LMC_OK;
}
