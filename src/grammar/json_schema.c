/* JSON Schema -> GBNF text. Instances come out compact (no whitespace),
 * with object properties in the schema's order (required ones always,
 * optional ones may be left out). Supported: type (one or a list), enum,
 * const, properties, required, additionalProperties, items, minItems,
 * maxItems, minLength, maxLength, pattern, format (date, time, date-time,
 * uuid), minimum / maximum (and the exclusive forms for integers; integral
 * bounds for numbers), anyOf, $ref to #/$defs or #/definitions (recursion
 * allowed), and the annotations. Every other keyword is refused with its
 * name and path, since ignoring it would produce instances the schema
 * rejects. */
#include "base/buf.h"
#include "base/error.h"
#include "grammar/compile.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JS_MAX_DEPTH 64
#define JS_INT_LIMIT 999999999999999LL /* 15 digits: integers stay exact in a double */

typedef struct {
    lmc_buf out;      /* finished definitions, one "name ::= body" per line */
    lmc_buf *cur;     /* the body of the rule being written */
    json_object *root;
    const char *pfx;  /* prefix of every rule name (several schemas in one grammar) */
    char **refs;      /* ref string -> rule name "ref<k>" */
    size_t n_refs;
    int n_rules;
    int depth;
} js;

static const char *const ANNOTATIONS[] = {"title", "description", "$schema", "$id", "$comment",
                                          "default", "examples", "deprecated", "readOnly",
                                          "writeOnly", "$defs", "definitions", "strict"};
static const char *const KEYWORDS[] = {"type", "enum", "const", "properties", "required",
                                       "additionalProperties", "items", "minItems", "maxItems",
                                       "minLength", "maxLength", "pattern", "format", "minimum",
                                       "maximum", "exclusiveMinimum", "exclusiveMaximum",
                                       "anyOf", "$ref"};

static bool in_list(const char *k, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, list[i])) return true;
    return false;
}

static lmc_status oom(void) { return lmc_err(LMC_ERR_NOMEM, "json schema: out of memory"); }

static lmc_status refuse(const char *path, const char *kw, const char *why) {
    return lmc_err(LMC_ERR_UNSUPPORTED, "json schema: '%s' at %s is not supported%s%s", kw, path,
                   why ? ": " : "", why ? why : "");
}

/* GBNF string literal of bytes s[0..n). */
static bool put_lit(lmc_buf *b, const char *s, size_t n) {
    if (!lmc_buf_putc(b, '"')) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        bool ok;
        if (c == '"' || c == '\\') ok = lmc_buf_putc(b, '\\') && lmc_buf_putc(b, (char)c);
        else if (c < 0x20) ok = lmc_buf_printf(b, "\\x%02x", c);
        else ok = lmc_buf_putc(b, (char)c);
        if (!ok) return false;
    }
    return lmc_buf_putc(b, '"');
}

static const char *compact(json_object *v) {
    return json_object_to_json_string_ext(v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}


/* ---------------------------------------------------------- numbers */
static long long pow10ll(int k) {
    long long v = 1;
    while (k-- > 0) v *= 10;
    return v;
}
static int ndigits(long long v) {
    int d = 1;
    while (v >= 10) v /= 10, d++;
    return d;
}

/* Decimal strings a..b of equal length, as a GBNF alternation. */
static bool same_len(lmc_buf *b, const char *a, const char *z, size_t n) {
    if (n == 0) return lmc_buf_puts(b, "\"\"");
    if (!strncmp(a, z, n)) return put_lit(b, a, n);
    if (a[0] == z[0])
        return lmc_buf_printf(b, "\"%c\" (", a[0]) && same_len(b, a + 1, z + 1, n - 1) &&
               lmc_buf_putc(b, ')');
    bool a_zero = strspn(a + 1, "0") == n - 1, z_nine = strspn(z + 1, "9") == n - 1;
    if (a_zero && z_nine)
        return lmc_buf_printf(b, "[%c-%c]", a[0], z[0]) &&
               (n == 1 || lmc_buf_printf(b, " [0-9]{%zu}", n - 1));
    char nines[24], zeros[24];
    memset(nines, '9', n - 1);
    memset(zeros, '0', n - 1);
    bool ok = lmc_buf_putc(b, '(');
    char lo = a[0], hi = z[0];
    if (!a_zero) {
        ok = ok && lmc_buf_printf(b, "\"%c\" (", lo) && same_len(b, a + 1, nines, n - 1) &&
             lmc_buf_puts(b, ") | ");
        lo++;
    }
    if (!z_nine) hi--;
    if (lo <= hi)
        ok = ok && lmc_buf_printf(b, "[%c-%c]", lo, hi) &&
             (n == 1 || lmc_buf_printf(b, " [0-9]{%zu}", n - 1)) && lmc_buf_puts(b, " | ");
    if (!z_nine)
        ok = ok && lmc_buf_printf(b, "\"%c\" (", z[0]) && same_len(b, zeros, z + 1, n - 1) &&
             lmc_buf_puts(b, ") | ");
    if (ok) b->len -= 3, b->p[b->len] = 0; /* the last " | " */
    return ok && lmc_buf_putc(b, ')');
}

/* Non-negative integers lo..hi (no leading zeros), as a GBNF group. */
static bool range_expr(lmc_buf *b, long long lo, long long hi) {
    bool ok = lmc_buf_putc(b, '(');
    bool first = true;
    while (ok && lo <= hi) {
        int d = ndigits(lo);
        long long top = pow10ll(d) - 1;
        long long end = hi < top ? hi : top;
        char a[24], z[24];
        snprintf(a, sizeof a, "%lld", lo);
        snprintf(z, sizeof z, "%lld", end);
        ok = (first || lmc_buf_puts(b, " | ")) && same_len(b, a, z, strlen(a));
        first = false;
        lo = end + 1;
    }
    return ok && lmc_buf_putc(b, ')');
}

static lmc_status get_bound(json_object *s, const char *key, const char *path, bool *has, double *v) {
    json_object *x = NULL;
    *has = json_object_object_get_ex(s, key, &x) && x;
    if (!*has) return LMC_OK;
    if (!json_object_is_type(x, json_type_int) && !json_object_is_type(x, json_type_double))
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: '%s' at %s must be a number", key, path);
    *v = json_object_get_double(x);
    if (!isfinite(*v) || fabs(*v) > (double)JS_INT_LIMIT)
        return lmc_err(LMC_ERR_LIMIT, "json schema: '%s' at %s is beyond +-%lld", key, path,
                       JS_INT_LIMIT);
    return LMC_OK;
}

static lmc_status integer_rule(js *j, json_object *s, const char *path) {
    bool h1, h2, h3, h4;
    double mn, mx, xmn, xmx;
    lmc_status st;
    if ((st = get_bound(s, "minimum", path, &h1, &mn)) || (st = get_bound(s, "maximum", path, &h2, &mx)) ||
        (st = get_bound(s, "exclusiveMinimum", path, &h3, &xmn)) ||
        (st = get_bound(s, "exclusiveMaximum", path, &h4, &xmx)))
        return st;
    long long lo = -JS_INT_LIMIT, hi = JS_INT_LIMIT;
    if (h1 && ceil(mn) > lo) lo = (long long)ceil(mn);
    if (h3 && floor(xmn) + 1 > lo) lo = (long long)floor(xmn) + 1;
    if (h2 && floor(mx) < hi) hi = (long long)floor(mx);
    if (h4 && ceil(xmx) - 1 < hi) hi = (long long)ceil(xmx) - 1;
    if (lo > hi)
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: no integer satisfies the bounds at %s", path);
    bool ok = lmc_buf_putc(j->cur, '(');
    if (lo < 0) ok = ok && lmc_buf_puts(j->cur, "\"-\" ") && range_expr(j->cur, hi < 0 ? -hi : 1, -lo);
    if (lo < 0 && hi >= 0) ok = ok && lmc_buf_puts(j->cur, " | ");
    if (hi >= 0) ok = ok && range_expr(j->cur, lo > 0 ? lo : 0, hi);
    return ok && lmc_buf_putc(j->cur, ')') ? LMC_OK : oom();
}

static lmc_status number_rule(js *j, json_object *s, const char *path) {
    bool h1, h2, h3, h4;
    double mn = 0, mx = 0, x;
    lmc_status st;
    if ((st = get_bound(s, "minimum", path, &h1, &mn)) || (st = get_bound(s, "maximum", path, &h2, &mx)) ||
        (st = get_bound(s, "exclusiveMinimum", path, &h3, &x)) ||
        (st = get_bound(s, "exclusiveMaximum", path, &h4, &x)))
        return st;
    if (h3) return refuse(path, "exclusiveMinimum", "on numbers (integers only)");
    if (h4) return refuse(path, "exclusiveMaximum", "on numbers (integers only)");
    if ((h1 && mn != floor(mn)) || (h2 && mx != floor(mx)))
        return refuse(path, h1 && mn != floor(mn) ? "minimum" : "maximum",
                      "a fractional bound on a number (integral bounds only)");
    long long lo = h1 ? (long long)mn : -JS_INT_LIMIT, hi = h2 ? (long long)mx : JS_INT_LIMIT;
    if (lo > hi) return lmc_err(LMC_ERR_INVALID_ARG, "json schema: no number satisfies the bounds at %s", path);
    const char *frac = " (\".\" [0-9]{1,15})?", *zfrac = " (\".\" \"0\"{1,15})?";
    lmc_buf *b = j->cur;
    bool ok = lmc_buf_putc(b, '(');
    bool first = true;
    if (hi >= 0) {
        long long a = lo > 0 ? lo : 0;
        if (a <= hi - 1) ok = ok && range_expr(b, a, hi - 1) && lmc_buf_puts(b, frac) && lmc_buf_puts(b, " | ");
        ok = ok && lmc_buf_printf(b, "\"%lld\"%s", hi, zfrac);
        first = false;
    }
    if (lo < 0) {
        long long a = hi < 0 ? -hi : 0, m = -lo;
        ok = ok && (first || lmc_buf_puts(b, " | ")) && lmc_buf_puts(b, "\"-\" (");
        if (a <= m - 1) ok = ok && range_expr(b, a, m - 1) && lmc_buf_puts(b, frac) && lmc_buf_puts(b, " | ");
        ok = ok && lmc_buf_printf(b, "\"%lld\"%s)", m, zfrac);
    }
    return ok && lmc_buf_putc(b, ')') ? LMC_OK : oom();
}

/* ---------------------------------------------------------- strings */
static const struct {
    const char *name, *gbnf;
} FORMATS[] = {
    {"date", "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01])"},
    {"time", "([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"},
    {"date-time", "[0-9]{4} \"-\" (\"0\" [1-9] | \"1\" [0-2]) \"-\" (\"0\" [1-9] | [12] [0-9] | \"3\" [01]) \"T\" ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9] \":\" [0-5] [0-9] (\".\" [0-9]{1,6})? (\"Z\" | [+-] ([01] [0-9] | \"2\" [0-3]) \":\" [0-5] [0-9])"},
    {"uuid", "[0-9a-f]{8} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{4} \"-\" [0-9a-f]{12}"},
};

static lmc_status get_count(json_object *s, const char *key, const char *path, long *v) {
    json_object *x = NULL;
    if (!json_object_object_get_ex(s, key, &x) || !x) return LMC_OK;
    if (!json_object_is_type(x, json_type_int) || json_object_get_int64(x) < 0)
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: '%s' at %s must be a non-negative integer", key, path);
    if (json_object_get_int64(x) > CFG_MAX_REPEAT)
        return lmc_err(LMC_ERR_LIMIT, "json schema: '%s' at %s exceeds %d", key, path, CFG_MAX_REPEAT);
    *v = (long)json_object_get_int64(x);
    return LMC_OK;
}

static lmc_status string_rule(js *j, json_object *s, const char *path) {
    json_object *pat = NULL, *fmt = NULL;
    json_object_object_get_ex(s, "pattern", &pat);
    json_object_object_get_ex(s, "format", &fmt);
    long mn = -1, mx = -1;
    lmc_status st;
    if ((st = get_count(s, "minLength", path, &mn)) || (st = get_count(s, "maxLength", path, &mx))) return st;
    if (mn >= 0 && mx >= 0 && mx < mn)
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: maxLength < minLength at %s", path);
    if ((pat || fmt) && (mn >= 0 || mx >= 0))
        return refuse(path, mn >= 0 ? "minLength" : "maxLength", pat ? "together with pattern" : "together with format");
    if (pat && fmt) return refuse(path, "format", "together with pattern");
    lmc_buf *b = j->cur;
    if (fmt) {
        const char *f = json_object_get_string(fmt);
        for (size_t i = 0; i < sizeof FORMATS / sizeof FORMATS[0]; i++)
            if (!strcmp(f, FORMATS[i].name))
                return lmc_buf_printf(b, "\"\\\"\" %s \"\\\"\"", FORMATS[i].gbnf) ? LMC_OK : oom();
        char what[160];
        snprintf(what, sizeof what, "format '%.60s' (date, time, date-time and uuid are)", f);
        return refuse(path, "format", what);
    }
    if (pat) {
        if (!json_object_is_type(pat, json_type_string))
            return lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'pattern' at %s must be a string", path);
        /* JSON Schema patterns are unanchored: a missing ^ or $ allows any text there */
        const char *p = json_object_get_string(pat);
        size_t n = strlen(p);
        bool a0 = n && p[0] == '^', a1 = n > 1 && p[n - 1] == '$' && p[n - 2] != '\\';
        bool ok = lmc_buf_puts(b, "\"\\\"\" ") && (a0 || lmc_buf_puts(b, "str-char* ")) &&
                  lmc_buf_puts(b, "/");
        for (size_t i = 0; ok && i < n; i++) {
            if (p[i] == '/' ) ok = lmc_buf_puts(b, "\\/");
            else if (p[i] == '\\' && i + 1 < n) ok = lmc_buf_putc(b, p[i]) && lmc_buf_putc(b, p[++i]);
            else if (p[i] == '\n') ok = lmc_buf_puts(b, "\\n");
            else ok = lmc_buf_putc(b, p[i]);
        }
        ok = ok && lmc_buf_puts(b, "/j ") && (a1 || lmc_buf_puts(b, "str-char* ")) && lmc_buf_puts(b, "\"\\\"\"");
        return ok ? LMC_OK : oom();
    }
    bool ok;
    if (mn < 0 && mx < 0) ok = lmc_buf_puts(b, "string");
    else ok = lmc_buf_printf(b, "\"\\\"\" str-char{%ld,", mn < 0 ? 0 : mn) &&
              (mx < 0 || lmc_buf_printf(b, "%ld", mx)) && lmc_buf_puts(b, "} \"\\\"\"");
    return ok ? LMC_OK : oom();
}

/* ---------------------------------------------------------- composites */
static lmc_status gen(js *j, json_object *s, const char *path, char *name, size_t cap);

static lmc_status sub(js *j, json_object *s, const char *path, const char *suffix, char *name, size_t cap) {
    char p[512];
    snprintf(p, sizeof p, "%s%s", path, suffix);
    return gen(j, s, p, name, cap);
}

static lmc_status object_rule(js *j, json_object *s, const char *path) {
    json_object *props = NULL, *req = NULL, *addl = NULL;
    json_object_object_get_ex(s, "properties", &props);
    json_object_object_get_ex(s, "required", &req);
    json_object_object_get_ex(s, "additionalProperties", &addl);
    if (props && !json_object_is_type(props, json_type_object))
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'properties' at %s must be an object", path);
    if (req && !json_object_is_type(req, json_type_array))
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'required' at %s must be an array", path);
    size_t n = props ? (size_t)json_object_object_length(props) : 0;
    if (n == 0 && (!req || json_object_array_length(req) == 0)) {
        if (addl && json_object_is_type(addl, json_type_boolean) && !json_object_get_boolean(addl))
            return lmc_buf_puts(j->cur, "\"{}\"") ? LMC_OK : oom();
        char vr[32] = "value";
        if (addl && json_object_is_type(addl, json_type_object)) {
            lmc_status st = sub(j, addl, path, "/additionalProperties", vr, sizeof vr);
            if (st) return st;
        }
        return lmc_buf_printf(j->cur, "\"{\" (string \":\" %s (\",\" string \":\" %s)*)? \"}\"", vr, vr)
                   ? LMC_OK : oom();
    }
    /* names and value rules of the properties, in order */
    char (*rules)[32] = calloc(n ? n : 1, sizeof *rules);
    const char **keys = calloc(n ? n : 1, sizeof *keys);
    bool *required = calloc(n ? n : 1, sizeof *required);
    if (!rules || !keys || !required) {
        free(rules), free(keys), free(required);
        return oom();
    }
    lmc_status st = LMC_OK;
    size_t k = 0;
    json_object_object_foreach(props, key, val) {
        keys[k] = key;
        char p[512];
        snprintf(p, sizeof p, "%s/properties/%.200s", path, key);
        if (!val || (!json_object_is_type(val, json_type_object) && !json_object_is_type(val, json_type_boolean))) {
            st = lmc_err(LMC_ERR_INVALID_ARG, "json schema: %s must be a schema", p);
            break;
        }
        if ((st = gen(j, val, p, rules[k], sizeof rules[k]))) break;
        k++;
    }
    for (size_t r = 0; !st && req && r < json_object_array_length(req); r++) {
        json_object *x = json_object_array_get_idx(req, r);
        const char *name = x && json_object_is_type(x, json_type_string) ? json_object_get_string(x) : NULL;
        size_t i = 0;
        while (name && i < n && strcmp(keys[i], name)) i++;
        if (!name) st = lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'required' at %s must list strings", path);
        else if (i == n)
            st = lmc_err(LMC_ERR_UNSUPPORTED,
                         "json schema: required property '%.100s' at %s is not in 'properties'", name, path);
        else required[i] = true;
    }
    /* p<i>_<first>: properties i.. ; first: no comma before the next one */
    if (!st) {
        int base = j->n_rules;
        j->n_rules++;
        lmc_buf *o = &j->out;
        bool ok = lmc_buf_printf(j->cur, "\"{\" %sp%d_%zu_1 \"}\"", j->pfx, base, (size_t)0);
        for (size_t i = 0; ok && i <= n; i++)
            for (int first = 0; ok && first < 2; first++) {
                ok = lmc_buf_printf(o, "%sp%d_%zu_%d ::= ", j->pfx, base, i, first);
                if (i == n) {
                    ok = ok && lmc_buf_puts(o, "\"\"\n");
                    continue;
                }
                json_object *ks = json_object_new_string(keys[i]);
                const char *klit = ks ? compact(ks) : NULL;
                ok = ok && klit && lmc_buf_putc(o, '(') && (first || lmc_buf_puts(o, "\",\" ")) &&
                     put_lit(o, klit, strlen(klit)) &&
                     lmc_buf_printf(o, " \":\" %s %sp%d_%zu_0)", rules[i], j->pfx, base, i + 1) &&
                     (required[i] || lmc_buf_printf(o, " | %sp%d_%zu_%d", j->pfx, base, i + 1, first)) &&
                     lmc_buf_putc(o, '\n');
                json_object_put(ks);
            }
        if (!ok) st = oom();
    }
    free(rules), free(keys), free(required);
    return st;
}

static lmc_status array_rule(js *j, json_object *s, const char *path) {
    json_object *items = NULL;
    json_object_object_get_ex(s, "items", &items);
    long mn = -1, mx = -1;
    lmc_status st;
    if ((st = get_count(s, "minItems", path, &mn)) || (st = get_count(s, "maxItems", path, &mx))) return st;
    if (mn >= 0 && mx >= 0 && mx < mn)
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: maxItems < minItems at %s", path);
    char ir[32] = "value";
    if (items) {
        if (json_object_is_type(items, json_type_array))
            return refuse(path, "items", "as an array (tuple validation)");
        if ((st = sub(j, items, path, "/items", ir, sizeof ir))) return st;
    }
    lmc_buf *b = j->cur;
    bool ok;
    if (mx == 0) ok = lmc_buf_puts(b, "\"[]\"");
    else {
        long lo = mn > 0 ? mn - 1 : 0, hi = mx > 0 ? mx - 1 : -1;
        ok = lmc_buf_printf(b, "\"[\" (%s (\",\" %s){%ld,", ir, ir, lo) &&
             (hi < 0 || lmc_buf_printf(b, "%ld", hi)) && lmc_buf_puts(b, "})") &&
             (mn > 0 || lmc_buf_putc(b, '?')) && lmc_buf_puts(b, " \"]\"");
    }
    return ok ? LMC_OK : oom();
}

static const struct {
    const char *name;
    lmc_status (*fn)(js *, json_object *, const char *);
    const char *plain;
} TYPES[] = {
    {"string", string_rule, NULL},   {"integer", integer_rule, NULL},
    {"number", number_rule, NULL},   {"object", object_rule, NULL},
    {"array", array_rule, NULL},     {"boolean", NULL, "(\"true\" | \"false\")"},
    {"null", NULL, "\"null\""},
};

static lmc_status type_expr(js *j, json_object *s, const char *type, const char *path) {
    for (size_t i = 0; i < sizeof TYPES / sizeof TYPES[0]; i++) {
        if (strcmp(type, TYPES[i].name)) continue;
        if (TYPES[i].plain) return lmc_buf_puts(j->cur, TYPES[i].plain) ? LMC_OK : oom();
        return TYPES[i].fn(j, s, path);
    }
    return lmc_err(LMC_ERR_INVALID_ARG, "json schema: unknown type '%.60s' at %s", type, path);
}

static lmc_status alternation(js *j, json_object *arr, const char *path, const char *kw) {
    size_t n = json_object_array_length(arr);
    if (n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "json schema: '%s' at %s is empty", kw, path);
    bool ok = lmc_buf_putc(j->cur, '(');
    for (size_t i = 0; i < n && ok; i++) {
        char sfx[48], name[32];
        snprintf(sfx, sizeof sfx, "/%s/%zu", kw, i);
        lmc_status st = sub(j, json_object_array_get_idx(arr, i), path, sfx, name, sizeof name);
        if (st) return st;
        ok = (!i || lmc_buf_puts(j->cur, " | ")) && lmc_buf_puts(j->cur, name);
    }
    return ok && lmc_buf_putc(j->cur, ')') ? LMC_OK : oom();
}

static lmc_status resolve_ref(js *j, const char *ref, const char *path, char *name, size_t cap) {
    for (size_t i = 0; i < j->n_refs; i++)
        if (!strcmp(j->refs[i], ref)) {
            snprintf(name, cap, "%sref%zu", j->pfx, i);
            return LMC_OK;
        }
    const char *key = NULL;
    json_object *defs = NULL, *target = NULL;
    if (!strncmp(ref, "#/$defs/", 8)) key = ref + 8, json_object_object_get_ex(j->root, "$defs", &defs);
    else if (!strncmp(ref, "#/definitions/", 14)) key = ref + 14, json_object_object_get_ex(j->root, "definitions", &defs);
    else if (!strcmp(ref, "#")) target = j->root;
    if (!target && (!key || strchr(key, '/')))
        return refuse(path, "$ref", "only #, #/$defs/NAME and #/definitions/NAME are");
    if (!target && (!defs || !json_object_object_get_ex(defs, key, &target) || !target))
        return lmc_err(LMC_ERR_NOT_FOUND, "json schema: $ref '%.100s' at %s names no definition", ref, path);
    char **nr = realloc(j->refs, (j->n_refs + 1) * sizeof *nr);
    if (!nr) return oom();
    j->refs = nr;
    if (!(j->refs[j->n_refs] = strdup(ref))) return oom();
    size_t me = j->n_refs++;
    snprintf(name, cap, "%sref%zu", j->pfx, me);
    char inner[32];
    lmc_status st = gen(j, target, ref, inner, sizeof inner);
    if (!st && !lmc_buf_printf(&j->out, "%sref%zu ::= %s\n", j->pfx, me, inner)) st = oom();
    return st;
}

/* Writes the definitions of the rule for schema s (and its sub-rules) to
 * j->out, each line "name ::= body\n"; *name receives the rule's name. */
static lmc_status gen(js *j, json_object *s, const char *path, char *name, size_t cap) {
    if (++j->depth > JS_MAX_DEPTH) {
        j->depth--;
        return lmc_err(LMC_ERR_LIMIT, "json schema: nested deeper than %d at %s", JS_MAX_DEPTH, path);
    }
    lmc_status st = LMC_OK;
    if (json_object_is_type(s, json_type_boolean)) {
        if (!json_object_get_boolean(s)) st = refuse(path, "false", "a schema that matches nothing");
        else snprintf(name, cap, "value");
        j->depth--;
        return st;
    }
    if (!json_object_is_type(s, json_type_object)) {
        j->depth--;
        return lmc_err(LMC_ERR_INVALID_ARG, "json schema: %s must be an object or a boolean", path);
    }
    json_object_object_foreach(s, key, v) {
        (void)v;
        if (!in_list(key, ANNOTATIONS, sizeof ANNOTATIONS / sizeof *ANNOTATIONS) &&
            !in_list(key, KEYWORDS, sizeof KEYWORDS / sizeof *KEYWORDS)) {
            j->depth--;
            return refuse(path, key, NULL);
        }
    }
    json_object *ref = NULL, *en = NULL, *cn = NULL, *any = NULL, *type = NULL;
    json_object_object_get_ex(s, "$ref", &ref);
    json_object_object_get_ex(s, "enum", &en);
    json_object_object_get_ex(s, "const", &cn);
    json_object_object_get_ex(s, "anyOf", &any);
    json_object_object_get_ex(s, "type", &type);
    if (ref) {
        j->depth--;
        if (!json_object_is_type(ref, json_type_string))
            return lmc_err(LMC_ERR_INVALID_ARG, "json schema: '$ref' at %s must be a string", path);
        if (json_object_object_length(s) > 1)
            for (size_t i = 0; i < sizeof KEYWORDS / sizeof *KEYWORDS; i++)
                if (strcmp(KEYWORDS[i], "$ref") && json_object_object_get_ex(s, KEYWORDS[i], NULL))
                    return refuse(path, KEYWORDS[i], "next to $ref");
        return resolve_ref(j, json_object_get_string(ref), path, name, cap);
    }
    snprintf(name, cap, "%ss%d", j->pfx, j->n_rules++);
    lmc_buf body = {0}, *outer = j->cur;
    j->cur = &body;
    lmc_buf *b = &body;
    if (cn || en) {
        if (cn && en) st = refuse(path, "const", "together with enum");
        else if (en && (!json_object_is_type(en, json_type_array) || !json_object_array_length(en)))
            st = lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'enum' at %s must be a non-empty array", path);
        size_t n = cn ? 1 : en && !st ? json_object_array_length(en) : 0;
        bool ok = lmc_buf_putc(b, '(');
        for (size_t i = 0; ok && i < n; i++) {
            const char *lit = compact(cn ? cn : json_object_array_get_idx(en, i));
            ok = (!i || lmc_buf_puts(b, " | ")) && lit && put_lit(b, lit, strlen(lit));
        }
        if (!(ok && lmc_buf_putc(b, ')'))) st = st ? st : oom();
    } else if (any) {
        if (!json_object_is_type(any, json_type_array))
            st = lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'anyOf' at %s must be an array", path);
        else st = alternation(j, any, path, "anyOf");
    } else if (type && json_object_is_type(type, json_type_array)) {
        size_t n = json_object_array_length(type);
        if (!n) st = lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'type' at %s is empty", path);
        bool ok = lmc_buf_putc(b, '(');
        for (size_t i = 0; !st && ok && i < n; i++) {
            json_object *t = json_object_array_get_idx(type, i);
            if (!t || !json_object_is_type(t, json_type_string)) {
                st = lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'type' at %s must list strings", path);
                break;
            }
            ok = (!i || lmc_buf_puts(b, " | ")) && lmc_buf_putc(b, '(');
            if (ok) st = type_expr(j, s, json_object_get_string(t), path);
            ok = ok && lmc_buf_putc(b, ')');
        }
        if (!st && !(ok && lmc_buf_putc(b, ')'))) st = oom();
    } else if (type) {
        if (!json_object_is_type(type, json_type_string))
            st = lmc_err(LMC_ERR_INVALID_ARG, "json schema: 'type' at %s must be a string or an array", path);
        else st = type_expr(j, s, json_object_get_string(type), path);
    } else if (json_object_object_get_ex(s, "properties", NULL)) {
        st = object_rule(j, s, path);
    } else {
        if (!lmc_buf_puts(b, "value")) st = oom();
    }
    j->cur = outer;
    if (!st && !lmc_buf_printf(&j->out, "%s ::= %s\n", name, body.p ? body.p : "\"\"")) st = oom();
    lmc_buf_free(&body);
    j->depth--;
    return st;
}

static const char PRELUDE[] =
    "str-char ::= [^\"\\\\\\x00-\\x1f] | \"\\\\\" [\"\\\\/bfnrt]\n"
    "string ::= \"\\\"\" str-char* \"\\\"\"\n"
    "int ::= \"-\"? (\"0\" | [1-9] [0-9]{0,15})\n"
    "number ::= int (\".\" [0-9]{1,15})?\n"
    "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"
    "object ::= \"{\" (string \":\" value (\",\" string \":\" value)*)? \"}\"\n"
    "array ::= \"[\" (value (\",\" value)*)? \"]\"\n";

const char *json_schema_prelude(void) { return PRELUDE; }

lmc_status json_schema_rules(json_object *schema, const char *prefix, lmc_buf *out, char *top,
                             size_t cap) {
    js j = {.root = schema, .pfx = prefix};
    lmc_status st = gen(&j, schema, "#", top, cap);
    if (!st && !lmc_buf_append(out, j.out.p ? j.out.p : "", j.out.len)) st = oom();
    for (size_t i = 0; i < j.n_refs; i++) free(j.refs[i]);
    free(j.refs);
    lmc_buf_free(&j.out);
    return st;
}

lmc_status json_schema_to_gbnf(json_object *schema, char **out) {
    *out = NULL;
    lmc_buf b = {0};
    char top[64];
    lmc_status st = lmc_buf_puts(&b, PRELUDE) ? LMC_OK : oom();
    if (!st) st = json_schema_rules(schema, "", &b, top, sizeof top);
    if (!st && !lmc_buf_printf(&b, "root ::= %s\n", top)) st = oom();
    if (st) {
        lmc_buf_free(&b);
        return st;
    }
    *out = lmc_buf_take(&b);
    return *out ? LMC_OK : oom();
}
