/* Regular expressions (the common ECMAScript / PCRE subset: alternation,
 * groups, classes, escapes, counted repetition) compiled into grammar
 * rules. Whole-match semantics; constructs that are not regular or need
 * look-around are refused by name. */
#include "base/error.h"
#include "grammar/compile.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    lmc_cfg *g;
    const char *s;
    size_t n, i;
    unsigned flags;
    int depth;
    lmc_status err; /* the last failure, for helpers that return a count */
} rx;

#define RX_MAX_DEPTH 200

static lmc_status rx_fail(rx *r, lmc_status st, const char *msg) {
    return r->err = lmc_err(st, "regex: %s at offset %zu", msg, r->i);
}

static int rx_oom(rx *r) {
    r->err = lmc_err(LMC_ERR_NOMEM, "regex: out of memory");
    return -1;
}

static lmc_status rx_alt(rx *r, int32_t *out);

static bool at_end(const rx *r) { return r->i >= r->n; }
static char peek(const rx *r) { return r->i < r->n ? r->s[r->i] : 0; }

/* One UTF-8 code point from the pattern. */
static uint32_t next_cp(rx *r) {
    const unsigned char *p = (const unsigned char *)r->s + r->i;
    size_t left = r->n - r->i;
    unsigned c = p[0];
    int len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if ((size_t)len > left) len = 1;
    uint32_t cp = len == 1 ? c : c & (0x3F >> (len - 1));
    for (int k = 1; k < len; k++) cp = (cp << 6) | (p[k] & 0x3F);
    r->i += (size_t)len;
    return cp;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static lmc_status read_hex(rx *r, int digits, uint32_t *cp) {
    uint32_t v = 0;
    bool braces = digits == 4 && peek(r) == '{';
    if (braces) r->i++;
    int k = 0;
    for (; braces ? peek(r) != '}' : k < digits; k++) {
        int h = hexval(peek(r));
        if (h < 0 || k >= 6) return rx_fail(r, LMC_ERR_INVALID_ARG, "bad hexadecimal escape");
        v = v * 16 + (uint32_t)h;
        r->i++;
    }
    if (braces) r->i++;
    if (v > 0x10FFFF) return rx_fail(r, LMC_ERR_INVALID_ARG, "escape beyond U+10FFFF");
    *cp = v;
    return LMC_OK;
}

static bool add_shorthand(cfg_class *c, char e) {
    switch (e) {
    case 'd': return cfg_class_add(c, '0', '9');
    case 'w':
        return cfg_class_add(c, '0', '9') && cfg_class_add(c, 'A', 'Z') &&
               cfg_class_add(c, 'a', 'z') && cfg_class_add(c, '_', '_');
    case 's':
        return cfg_class_add(c, '\t', '\r') && cfg_class_add(c, ' ', ' ');
    }
    return false;
}

/* Escape after '\': either a shorthand class added to c (returns 1) or a
 * single code point (returns 0), -1 after an error. */
static int escape(rx *r, cfg_class *c, uint32_t *cp, bool in_class) {
    if (at_end(r)) return rx_fail(r, LMC_ERR_INVALID_ARG, "pattern ends with '\\'"), -1;
    char e = r->s[r->i++];
    static const char simple[] = "nrtfv0";
    static const uint32_t simple_cp[] = {'\n', '\r', '\t', '\f', '\v', 0};
    const char *k = strchr(simple, e);
    if (k && e) {
        *cp = simple_cp[k - simple];
        return 0;
    }
    if (strchr("dws", e)) return add_shorthand(c, e) ? 1 : rx_oom(r);
    if (strchr("DWS", e)) {
        cfg_class t = {0};
        if (!add_shorthand(&t, (char)(e + 32)) || !cfg_class_normalize(&t, true)) {
            cfg_class_free(&t);
            return rx_oom(r);
        }
        bool ok = true;
        for (size_t i = 0; i < t.n && ok; i++) ok = cfg_class_add(c, t.r[i][0], t.r[i][1]);
        cfg_class_free(&t);
        return ok ? 1 : rx_oom(r);
    }
    if (e == 'x') return read_hex(r, 2, cp) ? -1 : 0;
    if (e == 'u') return read_hex(r, 4, cp) ? -1 : 0;
    if (e == 'b' && in_class) {
        *cp = '\b';
        return 0;
    }
    if ((e >= '1' && e <= '9') || e == 'k')
        return rx_fail(r, LMC_ERR_UNSUPPORTED, "back-references are not supported"), -1;
    if (e == 'b' || e == 'B' || e == 'A' || e == 'z' || e == 'Z' || e == 'G')
        return rx_fail(r, LMC_ERR_UNSUPPORTED, "anchors and word boundaries (\\b, \\B, \\A, \\z) are not supported"), -1;
    if (e == 'p' || e == 'P')
        return rx_fail(r, LMC_ERR_UNSUPPORTED, "Unicode property classes (\\p) are not supported"), -1;
    if ((unsigned char)e < 0x80 && !((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') || (e >= '0' && e <= '9'))) {
        *cp = (uint32_t)(unsigned char)e;
        return 0;
    }
    return rx_fail(r, LMC_ERR_UNSUPPORTED, "unknown escape"), -1;
}

/* The characters a JSON string may hold without an escape. */
static bool json_restrict(cfg_class *c) {
    static const uint32_t ok[3][2] = {{0x20, 0x21}, {0x23, 0x5B}, {0x5D, 0x10FFFF}};
    cfg_class out = {0};
    bool good = true;
    for (size_t i = 0; i < c->n && good; i++)
        for (int k = 0; k < 3 && good; k++) {
            uint32_t lo = c->r[i][0] > ok[k][0] ? c->r[i][0] : ok[k][0];
            uint32_t hi = c->r[i][1] < ok[k][1] ? c->r[i][1] : ok[k][1];
            if (lo <= hi) good = cfg_class_add(&out, lo, hi);
        }
    cfg_class_free(c);
    *c = out;
    return good;
}

static lmc_status class_to_sym(rx *r, cfg_class *c, bool negate, const char *what, int32_t *out) {
    if (!cfg_class_normalize(c, negate)) return lmc_err(LMC_ERR_NOMEM, "regex: out of memory");
    if ((r->flags & RX_JSON_STRING) && !json_restrict(c))
        return lmc_err(LMC_ERR_NOMEM, "regex: out of memory");
    return cfg_class_sym(r->g, c, false, what, out);
}

static lmc_status parse_class(rx *r, int32_t *out) {
    bool negate = false;
    if (peek(r) == '^') {
        negate = true;
        r->i++;
    }
    cfg_class c = {0};
    lmc_status st = LMC_OK;
    bool first = true;
    while (!st) {
        if (at_end(r)) {
            st = rx_fail(r, LMC_ERR_INVALID_ARG, "unterminated character class");
            break;
        }
        if (peek(r) == ']' && !first) {
            r->i++;
            break;
        }
        first = false;
        uint32_t lo;
        if (peek(r) == '[' && r->i + 1 < r->n && r->s[r->i + 1] == ':') {
            st = rx_fail(r, LMC_ERR_UNSUPPORTED, "POSIX classes ([:alpha:]) are not supported");
            break;
        }
        if (peek(r) == '\\') {
            r->i++;
            int k = escape(r, &c, &lo, true);
            if (k < 0) {
                st = r->err;
                break;
            }
            if (k == 1) continue;
        } else {
            lo = next_cp(r);
        }
        uint32_t hi = lo;
        if (peek(r) == '-' && r->i + 1 < r->n && r->s[r->i + 1] != ']') {
            r->i++;
            if (peek(r) == '\\') {
                r->i++;
                int k = escape(r, &c, &hi, true);
                if (k != 0) {
                    st = k < 0 ? r->err
                               : rx_fail(r, LMC_ERR_INVALID_ARG, "a class shorthand cannot end a range");
                    break;
                }
            } else {
                hi = next_cp(r);
            }
            if (hi < lo) {
                st = rx_fail(r, LMC_ERR_INVALID_ARG, "character range out of order");
                break;
            }
        }
        if (!cfg_class_add(&c, lo, hi)) st = lmc_err(LMC_ERR_NOMEM, "regex: out of memory");
    }
    if (!st) st = class_to_sym(r, &c, negate, "a character class", out);
    cfg_class_free(&c);
    return st;
}

static lmc_status one_cp(rx *r, uint32_t cp, int32_t *out) {
    cfg_class c = {0};
    lmc_status st = cfg_class_add(&c, cp, cp) ? class_to_sym(r, &c, false, "a literal", out)
                                             : lmc_err(LMC_ERR_NOMEM, "regex: out of memory");
    cfg_class_free(&c);
    return st;
}

static lmc_status parse_atom(rx *r, int32_t *out) {
    char c = peek(r);
    if (c == '(') {
        r->i++;
        if (peek(r) == '?') {
            if (r->i + 1 < r->n && r->s[r->i + 1] == ':') {
                r->i += 2;
            } else {
                return rx_fail(r, LMC_ERR_UNSUPPORTED,
                               "look-around and named or flagged groups ((?=, (?!, (?<, (?i) are not supported");
            }
        }
        if (++r->depth > RX_MAX_DEPTH) return rx_fail(r, LMC_ERR_LIMIT, "groups nested too deeply");
        lmc_status st = rx_alt(r, out);
        r->depth--;
        if (st) return st;
        if (peek(r) != ')') return rx_fail(r, LMC_ERR_INVALID_ARG, "missing ')'");
        r->i++;
        return LMC_OK;
    }
    if (c == '[') {
        r->i++;
        return parse_class(r, out);
    }
    if (c == '.') {
        r->i++;
        cfg_class k = {0};
        lmc_status st = cfg_class_add(&k, '\n', '\n') ? class_to_sym(r, &k, true, "'.'", out)
                                                     : lmc_err(LMC_ERR_NOMEM, "regex: out of memory");
        cfg_class_free(&k);
        return st;
    }
    if (c == '\\') {
        r->i++;
        cfg_class k = {0};
        uint32_t cp = 0;
        int e = escape(r, &k, &cp, false);
        lmc_status st;
        if (e < 0) st = r->err;
        else if (e == 1) st = class_to_sym(r, &k, false, "a class escape", out);
        else st = one_cp(r, cp, out);
        cfg_class_free(&k);
        return st;
    }
    if (c == '*' || c == '+' || c == '?' || c == '{')
        return rx_fail(r, LMC_ERR_INVALID_ARG, "nothing to repeat");
    return one_cp(r, next_cp(r), out);
}

static bool read_num(rx *r, long *v) {
    size_t start = r->i;
    long x = 0;
    while (peek(r) >= '0' && peek(r) <= '9') {
        if (x > 100000) return false;
        x = x * 10 + (peek(r) - '0');
        r->i++;
    }
    *v = x;
    return r->i > start;
}

static lmc_status parse_repeat(rx *r, int32_t *sym) {
    for (;;) {
        char c = peek(r);
        long lo, hi;
        if (c == '*') lo = 0, hi = -1;
        else if (c == '+') lo = 1, hi = -1;
        else if (c == '?') lo = 0, hi = 1;
        else if (c == '{') {
            size_t save = r->i++;
            if (!read_num(r, &lo)) {
                r->i = save;
                return rx_fail(r, LMC_ERR_INVALID_ARG, "bad counted repetition");
            }
            hi = lo;
            if (peek(r) == ',') {
                r->i++;
                if (!read_num(r, &hi)) hi = -1;
            }
            if (peek(r) != '}') return rx_fail(r, LMC_ERR_INVALID_ARG, "bad counted repetition");
        } else {
            return LMC_OK;
        }
        r->i++;
        if (peek(r) == '?' || peek(r) == '+') r->i++; /* lazy / possessive: same language */
        lmc_status st = cfg_repeat(r->g, *sym, lo, hi, sym);
        if (st) return st;
    }
}

static lmc_status parse_concat(rx *r, cfg_seq *q) {
    while (!at_end(r) && peek(r) != '|' && peek(r) != ')') {
        if (peek(r) == '^' || peek(r) == '$') {
            bool start = peek(r) == '^' && r->i == 0;
            bool end = peek(r) == '$' && r->i + 1 == r->n;
            if (!start && !end)
                return rx_fail(r, LMC_ERR_UNSUPPORTED, "anchors are supported only at the ends");
            r->i++;
            continue;
        }
        int32_t sym;
        lmc_status st = parse_atom(r, &sym);
        if (!st) st = parse_repeat(r, &sym);
        if (st) return st;
        if (!cfg_seq_push(q, sym)) return lmc_err(LMC_ERR_NOMEM, "regex: out of memory");
    }
    return LMC_OK;
}

static lmc_status rx_alt(rx *r, int32_t *out) {
    int32_t rule = cfg_rule_anon(r->g);
    if (rule < 0) return LMC_ERR_NOMEM;
    for (;;) {
        cfg_seq q = {0};
        lmc_status st = parse_concat(r, &q);
        if (!st) st = cfg_add_alt(r->g, rule, q.v, q.n);
        cfg_seq_free(&q);
        if (st) return st;
        if (peek(r) != '|') break;
        r->i++;
    }
    *out = rule;
    return LMC_OK;
}

lmc_status rx_compile(lmc_cfg *g, const char *src, size_t n, unsigned flags, int32_t *out) {
    rx r = {g, src, n, 0, flags, 0, LMC_OK};
    lmc_status st = rx_alt(&r, out);
    if (st) return st;
    if (!at_end(&r)) return rx_fail(&r, LMC_ERR_INVALID_ARG, "unbalanced ')'");
    return LMC_OK;
}
