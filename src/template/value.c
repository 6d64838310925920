/* Runtime values of the template interpreter: arena, constructors, and the
 * Python-compatible conversions (str, repr, json.dumps, ==, <) that decide
 * byte-exact output. */
#include "template/tpl.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ arena */
struct tpl_chunk {
    tpl_chunk *next;
    size_t cap, used;
    max_align_t data[];
};

void *tpl_alloc(tpl_arena *a, size_t n) {
    if (a->failed) return NULL;
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    tpl_chunk *h = a->head;
    if (!h || h->cap - h->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        if (a->limit && a->used_total + cap > a->limit) {
            a->failed = a->over_limit = true;
            return NULL;
        }
        h = malloc(sizeof *h + cap);
        if (!h) {
            a->failed = true;
            return NULL;
        }
        h->cap = cap;
        h->used = 0;
        h->next = a->head;
        a->head = h;
        a->used_total += cap;
    }
    void *p = (char *)h->data + h->used;
    h->used += n;
    memset(p, 0, n);
    return p;
}

void tpl_arena_free(tpl_arena *a) {
    tpl_chunk *h = a->head;
    while (h) {
        tpl_chunk *n = h->next;
        free(h);
        h = n;
    }
    a->head = NULL;
    a->used_total = 0;
    a->failed = a->over_limit = false;
}

/* ------------------------------------------------------------ constructors */
tval tv_undef(tv_str *hint) { return (tval){.k = TV_UNDEF, .s = hint}; }
tval tv_none(void) { return (tval){.k = TV_NONE}; }
tval tv_bool(bool b) { return (tval){.k = TV_BOOL, .b = b}; }
tval tv_int(int64_t i) { return (tval){.k = TV_INT, .i = i}; }
tval tv_float(double f) { return (tval){.k = TV_FLOAT, .f = f}; }
tval tv_strv(tv_str *s) { return (tval){.k = TV_STR, .s = s}; }

tv_str *tv_str_new(tpl_arena *a, const char *p, size_t n) {
    tv_str *s = tpl_alloc(a, sizeof *s + n + 1);
    if (!s) return NULL;
    s->len = n;
    if (n) memcpy(s->p, p, n);
    s->p[n] = '\0';
    return s;
}

tv_str *tv_str_cat(tpl_arena *a, const tv_str *x, const tv_str *y) {
    tv_str *s = tpl_alloc(a, sizeof *s + x->len + y->len + 1);
    if (!s) return NULL;
    s->len = x->len + y->len;
    memcpy(s->p, x->p, x->len);
    memcpy(s->p + x->len, y->p, y->len);
    s->p[s->len] = '\0';
    return s;
}

tv_str *tv_str_fmt(tpl_arena *a, const char *fmt, ...) {
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0) n = 0;
    if ((size_t)n >= sizeof tmp) n = sizeof tmp - 1;
    return tv_str_new(a, tmp, (size_t)n);
}

tv_str *tv_str_escape(tpl_arena *a, const tv_str *s) {
    size_t n = 0;
    for (size_t i = 0; i < s->len; i++) {
        char ch = s->p[i];
        n += ch == '&' ? 5 : ch == '<' || ch == '>' ? 4 : ch == '"' || ch == '\'' ? 5 : 1;
    }
    tv_str *r = tpl_alloc(a, sizeof *r + n + 1);
    if (!r) return NULL;
    char *o = r->p;
    for (size_t i = 0; i < s->len; i++) {
        const char *rep = NULL;
        switch (s->p[i]) {
        case '&': rep = "&amp;"; break;
        case '<': rep = "&lt;"; break;
        case '>': rep = "&gt;"; break;
        case '"': rep = "&#34;"; break;
        case '\'': rep = "&#39;"; break;
        }
        if (rep) {
            memcpy(o, rep, strlen(rep));
            o += strlen(rep);
        } else {
            *o++ = s->p[i];
        }
    }
    r->len = n;
    r->markup = true;
    return r;
}

tv_list *tv_list_new(tpl_arena *a, size_t cap) {
    tv_list *l = tpl_alloc(a, sizeof *l);
    if (!l) return NULL;
    if (cap) {
        l->v = tpl_alloc(a, cap * sizeof(tval));
        if (!l->v) return NULL;
        l->cap = cap;
    }
    return l;
}

bool tv_list_push(tpl_arena *a, tv_list *l, tval v) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 4;
        tval *nv = tpl_alloc(a, cap * sizeof(tval));
        if (!nv) return false;
        if (l->n) memcpy(nv, l->v, l->n * sizeof(tval));
        l->v = nv;
        l->cap = cap;
    }
    l->v[l->n++] = v;
    return true;
}

tv_dict *tv_dict_new(tpl_arena *a, size_t cap) {
    tv_dict *d = tpl_alloc(a, sizeof *d);
    if (!d) return NULL;
    if (cap) {
        d->keys = tpl_alloc(a, cap * sizeof(tv_str *));
        d->vals = tpl_alloc(a, cap * sizeof(tval));
        if (!d->keys || !d->vals) return NULL;
        d->cap = cap;
    }
    return d;
}

tval *tv_dict_get(const tv_dict *d, const char *key, size_t klen) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i]->len == klen && !memcmp(d->keys[i]->p, key, klen)) return &d->vals[i];
    return NULL;
}

bool tv_dict_set(tpl_arena *a, tv_dict *d, tv_str *key, tval v) {
    tval *slot = tv_dict_get(d, key->p, key->len);
    if (slot) {
        *slot = v;
        return true;
    }
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 4;
        tv_str **nk = tpl_alloc(a, cap * sizeof(tv_str *));
        tval *nv = tpl_alloc(a, cap * sizeof(tval));
        if (!nk || !nv) return false;
        if (d->n) {
            memcpy(nk, d->keys, d->n * sizeof(tv_str *));
            memcpy(nv, d->vals, d->n * sizeof(tval));
        }
        d->keys = nk;
        d->vals = nv;
        d->cap = cap;
    }
    d->keys[d->n] = key;
    d->vals[d->n] = v;
    d->n++;
    return true;
}

bool tv_truthy(tval v) {
    switch (v.k) {
    case TV_UNDEF: case TV_NONE: return false;
    case TV_BOOL: return v.b;
    case TV_INT: return v.i != 0;
    case TV_FLOAT: return v.f != 0.0;
    case TV_STR: return v.s->len != 0;
    case TV_LIST: return v.l->n != 0;
    case TV_DICT: return v.d->kind != TD_PLAIN || v.d->n != 0;
    case TV_FUNC: return true;
    }
    return false;
}

const char *tv_type_name(tval v) {
    switch (v.k) {
    case TV_UNDEF: return "Undefined";
    case TV_NONE: return "NoneType";
    case TV_BOOL: return "bool";
    case TV_INT: return "int";
    case TV_FLOAT: return "float";
    case TV_STR: return "str";
    case TV_LIST: return v.l->tuple ? "tuple" : "list";
    case TV_DICT: return v.d->kind == TD_NAMESPACE ? "Namespace" : v.d->kind == TD_LOOP ? "LoopContext" : "dict";
    case TV_FUNC: return "function";
    }
    return "object";
}

/* ------------------------------------------------------------ UTF-8 */
size_t tpl_utf8_next(const char *p, size_t n, size_t i, uint32_t *cp) {
    const unsigned char *s = (const unsigned char *)p;
    unsigned c = s[i];
    size_t len = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + len > n) len = 1;
    uint32_t v = len == 1 ? c : len == 2 ? c & 0x1f : len == 3 ? c & 0x0f : c & 0x07;
    for (size_t k = 1; k < len; k++) {
        if ((s[i + k] & 0xc0) != 0x80) {
            len = 1;
            v = c;
            break;
        }
        v = (v << 6) | (s[i + k] & 0x3f);
    }
    *cp = v;
    return i + len;
}

size_t tpl_utf8_len(const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] & 0xc0) != 0x80) k++;
    return k;
}

bool tpl_is_py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* ------------------------------------------------------------ str / repr */
void tv_py_float(double f, char *buf, size_t n) {
    if (isnan(f)) {
        snprintf(buf, n, "nan");
        return;
    }
    if (isinf(f)) {
        snprintf(buf, n, f < 0 ? "-inf" : "inf");
        return;
    }
    /* shortest round-trip digits, then Python's repr layout */
    char tmp[40];
    int prec;
    for (prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    char digits[24];
    int nd = 0, exp10;
    const char *q = tmp;
    bool neg = false;
    if (*q == '-') {
        neg = true;
        q++;
    }
    for (; *q && *q != 'e'; q++)
        if (*q >= '0' && *q <= '9') digits[nd++] = *q;
    exp10 = atoi(q + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = '\0';
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp10 < -4 || exp10 >= 16) {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++) out[o++] = digits[i];
        }
        o += (size_t)snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', abs(exp10));
    } else if (exp10 < 0) {
        out[o++] = '0';
        out[o++] = '.';
        for (int i = 0; i < -exp10 - 1; i++) out[o++] = '0';
        for (int i = 0; i < nd; i++) out[o++] = digits[i];
    } else {
        for (int i = 0; i <= exp10; i++) out[o++] = i < nd ? digits[i] : '0';
        out[o++] = '.';
        if (nd > exp10 + 1)
            for (int i = exp10 + 1; i < nd; i++) out[o++] = digits[i];
        else
            out[o++] = '0';
    }
    out[o] = '\0';
    snprintf(buf, n, "%s", out);
}

static bool repr_str(lmc_buf *b, const tv_str *s) {
    bool has_sq = memchr(s->p, '\'', s->len) != NULL, has_dq = memchr(s->p, '"', s->len) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    if (!lmc_buf_putc(b, q)) return false;
    for (size_t i = 0; i < s->len;) {
        uint32_t cp;
        size_t nx = tpl_utf8_next(s->p, s->len, i, &cp);
        bool ok = true;
        if (cp == (uint32_t)q || cp == '\\') {
            ok = lmc_buf_putc(b, '\\') && lmc_buf_putc(b, (char)cp);
        } else if (cp == '\n') ok = lmc_buf_puts(b, "\\n");
        else if (cp == '\r') ok = lmc_buf_puts(b, "\\r");
        else if (cp == '\t') ok = lmc_buf_puts(b, "\\t");
        else if (cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp < 0xa0))
            ok = lmc_buf_printf(b, "\\x%02x", cp);
        else
            ok = lmc_buf_append(b, s->p + i, nx - i);
        if (!ok) return false;
        i = nx;
    }
    return lmc_buf_putc(b, q);
}

/* Containers nested deeper than this print as "..." (Python does the same
 * for self-referencing containers); keeps recursion bounded. */
#define REPR_MAX_DEPTH 100

static bool repr_d(lmc_buf *b, tval v, int depth);
bool tv_repr(lmc_buf *b, tval v) { return repr_d(b, v, 0); }

static bool repr_d(lmc_buf *b, tval v, int depth) {
    if ((v.k == TV_LIST || v.k == TV_DICT) && depth > REPR_MAX_DEPTH) return lmc_buf_puts(b, "...");
    switch (v.k) {
    case TV_STR: return repr_str(b, v.s);
    case TV_LIST: {
        static const char *const views[] = {"", "dict_keys(", "dict_values(", "dict_items("};
        if (v.l->view && !lmc_buf_puts(b, views[v.l->view & 3])) return false;
        if (!lmc_buf_putc(b, v.l->tuple ? '(' : '[')) return false;
        for (size_t i = 0; i < v.l->n; i++) {
            if (i && !lmc_buf_puts(b, ", ")) return false;
            if (!repr_d(b, v.l->v[i], depth + 1)) return false;
        }
        if (v.l->tuple && v.l->n == 1 && !lmc_buf_putc(b, ',')) return false;
        if (!lmc_buf_putc(b, v.l->tuple ? ')' : ']')) return false;
        return v.l->view ? lmc_buf_putc(b, ')') : true;
    }
    case TV_DICT: {
        if (v.d->kind == TD_NAMESPACE && !lmc_buf_puts(b, "<Namespace ")) return false;
        if (!lmc_buf_putc(b, '{')) return false;
        for (size_t i = 0; i < v.d->n; i++) {
            if (i && !lmc_buf_puts(b, ", ")) return false;
            if (!repr_str(b, v.d->keys[i]) || !lmc_buf_puts(b, ": ") || !repr_d(b, v.d->vals[i], depth + 1))
                return false;
        }
        if (!lmc_buf_putc(b, '}')) return false;
        return v.d->kind == TD_NAMESPACE ? lmc_buf_putc(b, '>') : true;
    }
    case TV_UNDEF: return lmc_buf_puts(b, "Undefined"); /* inside containers */
    default: return tv_to_str(b, v);
    }
}

bool tv_to_str(lmc_buf *b, tval v) {
    char tmp[64];
    switch (v.k) {
    case TV_UNDEF: return true;
    case TV_NONE: return lmc_buf_puts(b, "None");
    case TV_BOOL: return lmc_buf_puts(b, v.b ? "True" : "False");
    case TV_INT: return lmc_buf_printf(b, "%lld", (long long)v.i);
    case TV_FLOAT: tv_py_float(v.f, tmp, sizeof tmp); return lmc_buf_puts(b, tmp);
    case TV_STR: return lmc_buf_append(b, v.s->p, v.s->len);
    case TV_LIST: case TV_DICT: return tv_repr(b, v);
    case TV_FUNC: return lmc_buf_printf(b, "<function %s>", v.fn->name ? v.fn->name : "?");
    }
    return true;
}

/* ------------------------------------------------------------ JSON */
bool tv_json_str(lmc_buf *b, const char *p, size_t n) {
    if (!lmc_buf_putc(b, '"')) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        bool ok;
        switch (c) {
        case '"': ok = lmc_buf_puts(b, "\\\""); break;
        case '\\': ok = lmc_buf_puts(b, "\\\\"); break;
        case '\n': ok = lmc_buf_puts(b, "\\n"); break;
        case '\r': ok = lmc_buf_puts(b, "\\r"); break;
        case '\t': ok = lmc_buf_puts(b, "\\t"); break;
        case '\b': ok = lmc_buf_puts(b, "\\b"); break;
        case '\f': ok = lmc_buf_puts(b, "\\f"); break;
        default: ok = c < 0x20 ? lmc_buf_printf(b, "\\u%04x", c) : lmc_buf_putc(b, (char)c);
        }
        if (!ok) return false;
    }
    return lmc_buf_putc(b, '"');
}

bool tv_json_float(lmc_buf *b, double f) {
    if (isnan(f)) return lmc_buf_puts(b, "NaN");
    if (isinf(f)) return lmc_buf_puts(b, f < 0 ? "-Infinity" : "Infinity");
    char tmp[64];
    tv_py_float(f, tmp, sizeof tmp);
    return lmc_buf_puts(b, tmp);
}

static bool json_nl(lmc_buf *b, const tv_json_opts *o, int level) {
    if (o->indent < 0) return true;
    if (!lmc_buf_putc(b, '\n')) return false;
    for (int i = 0; i < o->indent * level; i++)
        if (!lmc_buf_putc(b, ' ')) return false;
    return true;
}

static int key_cmp(const void *x, const void *y) {
    const tv_str *a = *(tv_str *const *)x, *c = *(tv_str *const *)y;
    size_t n = a->len < c->len ? a->len : c->len;
    int r = memcmp(a->p, c->p, n);
    return r ? r : (a->len > c->len) - (a->len < c->len);
}

bool tv_to_json(lmc_buf *b, tval v, const tv_json_opts *o, int level, const char **bad) {
    if (level > TPL_MAX_NEST) {
        *bad = "too deeply nested value";
        return false;
    }
    switch (v.k) {
    case TV_NONE: return lmc_buf_puts(b, "null");
    case TV_BOOL: return lmc_buf_puts(b, v.b ? "true" : "false");
    case TV_INT: return lmc_buf_printf(b, "%lld", (long long)v.i);
    case TV_FLOAT: return tv_json_float(b, v.f);
    case TV_STR: return tv_json_str(b, v.s->p, v.s->len);
    case TV_LIST:
        if (v.l->view) { /* Python's json can't serialise dict views */
            static const char *const names[] = {"", "dict_keys", "dict_values", "dict_items"};
            *bad = names[v.l->view & 3];
            return false;
        }
        if (v.l->n == 0) return lmc_buf_puts(b, "[]");
        if (!lmc_buf_putc(b, '[')) return false;
        for (size_t i = 0; i < v.l->n; i++) {
            if (i && !lmc_buf_puts(b, o->item_sep)) return false;
            if (!json_nl(b, o, level + 1) || !tv_to_json(b, v.l->v[i], o, level + 1, bad)) return false;
        }
        return json_nl(b, o, level) && lmc_buf_putc(b, ']');
    case TV_DICT: {
        if (v.d->kind != TD_PLAIN) break;
        if (v.d->n == 0) return lmc_buf_puts(b, "{}");
        size_t n = v.d->n;
        tv_str **order = malloc(n * sizeof *order);
        if (!order) return false;
        memcpy(order, v.d->keys, n * sizeof *order);
        if (o->sort_keys) qsort(order, n, sizeof *order, key_cmp);
        bool ok = lmc_buf_putc(b, '{');
        for (size_t i = 0; ok && i < n; i++) {
            if (i) ok = lmc_buf_puts(b, o->item_sep);
            ok = ok && json_nl(b, o, level + 1) && tv_json_str(b, order[i]->p, order[i]->len) &&
                 lmc_buf_puts(b, o->key_sep) &&
                 tv_to_json(b, *tv_dict_get(v.d, order[i]->p, order[i]->len), o, level + 1, bad);
        }
        free(order);
        return ok && json_nl(b, o, level) && lmc_buf_putc(b, '}');
    }
    default: break;
    }
    *bad = v.k == TV_UNDEF ? "Undefined" : tv_type_name(v);
    return false;
}

tval tv_from_json(tpl_arena *a, json_object *j, bool *ok) {
    switch (json_object_get_type(j)) {
    case json_type_null: return tv_none();
    case json_type_boolean: return tv_bool(json_object_get_boolean(j));
    case json_type_int: return tv_int(json_object_get_int64(j));
    case json_type_double: return tv_float(json_object_get_double(j));
    case json_type_string: {
        tv_str *s = tv_str_new(a, json_object_get_string(j), (size_t)json_object_get_string_len(j));
        if (!s) *ok = false;
        return s ? tv_strv(s) : tv_none();
    }
    case json_type_array: {
        size_t n = json_object_array_length(j);
        tv_list *l = tv_list_new(a, n);
        if (!l) {
            *ok = false;
            return tv_none();
        }
        for (size_t i = 0; i < n && *ok; i++) tv_list_push(a, l, tv_from_json(a, json_object_array_get_idx(j, i), ok));
        return (tval){.k = TV_LIST, .l = l};
    }
    case json_type_object: {
        tv_dict *d = tv_dict_new(a, (size_t)json_object_object_length(j));
        if (!d) {
            *ok = false;
            return tv_none();
        }
        json_object_object_foreach(j, key, val) {
            tv_str *k = tv_str_new(a, key, strlen(key));
            if (!k || !tv_dict_set(a, d, k, tv_from_json(a, val, ok))) *ok = false;
            if (!*ok) break;
        }
        return (tval){.k = TV_DICT, .d = d};
    }
    }
    return tv_none();
}

/* ------------------------------------------------------------ comparison */
static bool is_num(tval v) { return v.k == TV_INT || v.k == TV_FLOAT || v.k == TV_BOOL; }
static double num_val(tval v) { return v.k == TV_FLOAT ? v.f : v.k == TV_INT ? (double)v.i : v.b; }

static bool equal_d(tval x, tval y, int depth);
bool tv_equal(tval x, tval y) { return equal_d(x, y, 0); }

static bool equal_d(tval x, tval y, int depth) {
    if (depth > TPL_MAX_NEST) return false; /* absurdly deep: treat as different */
    if (is_num(x) && is_num(y)) {
        if (x.k != TV_FLOAT && y.k != TV_FLOAT) {
            int64_t a = x.k == TV_INT ? x.i : x.b, c = y.k == TV_INT ? y.i : y.b;
            return a == c;
        }
        return num_val(x) == num_val(y);
    }
    if (x.k != y.k) return false;
    switch (x.k) {
    case TV_UNDEF: case TV_NONE: return true;
    case TV_STR: return x.s->len == y.s->len && !memcmp(x.s->p, y.s->p, x.s->len);
    case TV_LIST:
        if (x.l->n != y.l->n || x.l->tuple != y.l->tuple) return false;
        for (size_t i = 0; i < x.l->n; i++)
            if (!equal_d(x.l->v[i], y.l->v[i], depth + 1)) return false;
        return true;
    case TV_DICT:
        if (x.d == y.d) return true;
        if (x.d->kind != TD_PLAIN || y.d->kind != TD_PLAIN || x.d->n != y.d->n) return false;
        for (size_t i = 0; i < x.d->n; i++) {
            tval *o = tv_dict_get(y.d, x.d->keys[i]->p, x.d->keys[i]->len);
            if (!o || !equal_d(x.d->vals[i], *o, depth + 1)) return false;
        }
        return true;
    case TV_FUNC: return x.fn == y.fn;
    default: return false;
    }
}

static int compare_d(tval x, tval y, bool *bad, int depth);
int tv_compare(tval x, tval y, bool *bad) { return compare_d(x, y, bad, 0); }

static int compare_d(tval x, tval y, bool *bad, int depth) {
    if (depth > TPL_MAX_NEST) {
        *bad = true;
        return 0;
    }
    if (is_num(x) && is_num(y)) {
        if (x.k != TV_FLOAT && y.k != TV_FLOAT) {
            int64_t a = x.k == TV_INT ? x.i : x.b, c = y.k == TV_INT ? y.i : y.b;
            return (a > c) - (a < c);
        }
        double a = num_val(x), c = num_val(y);
        return (a > c) - (a < c);
    }
    if (x.k == TV_STR && y.k == TV_STR) {
        size_t n = x.s->len < y.s->len ? x.s->len : y.s->len;
        int r = memcmp(x.s->p, y.s->p, n);
        if (r) return r < 0 ? -1 : 1;
        return (x.s->len > y.s->len) - (x.s->len < y.s->len);
    }
    if (x.k == TV_LIST && y.k == TV_LIST) {
        for (size_t i = 0; i < x.l->n && i < y.l->n; i++) {
            if (equal_d(x.l->v[i], y.l->v[i], depth + 1)) continue;
            return compare_d(x.l->v[i], y.l->v[i], bad, depth + 1);
        }
        return (x.l->n > y.l->n) - (x.l->n < y.l->n);
    }
    *bad = true;
    return 0;
}
