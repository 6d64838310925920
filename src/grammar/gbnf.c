/* The GBNF-like grammar syntax: `name ::= alternatives` rules over
 * "literals", [character classes], rule names, (groups), '.', /regex/
 * (/regex/j: restricted to the characters a JSON string holds unescaped),
 * with * + ? {m} {m,} {m,n} repetition and # comments. The rule "root" is
 * the start symbol. Errors name the line and column. */
#include "base/error.h"
#include "grammar/compile.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    lmc_cfg *g;
    const char *s;
    size_t n, i;
    int depth;
} gp;

#define GBNF_MAX_DEPTH 200

static lmc_status gfail(gp *p, lmc_status st, const char *msg) {
    size_t line = 1, col = 1;
    for (size_t k = 0; k < p->i && k < p->n; k++) {
        if (p->s[k] == '\n') line++, col = 1;
        else col++;
    }
    return lmc_err(st, "grammar: %s at line %zu, column %zu", msg, line, col);
}

static bool is_name_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-' || c == '.';
}
static bool is_name_start(char c) { return is_name_char(c) && c != '.'; }

static void skip_ws(gp *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c == '#') {
            while (p->i < p->n && p->s[p->i] != '\n') p->i++;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            p->i++;
        } else {
            break;
        }
    }
}

static size_t name_len(const gp *p, size_t at) {
    size_t k = at;
    if (k >= p->n || !is_name_start(p->s[k])) return 0;
    while (k < p->n && is_name_char(p->s[k])) k++;
    return k - at;
}

/* Does a rule definition (`name ::=`) start at p->i? */
static bool at_definition(gp *p) {
    size_t l = name_len(p, p->i);
    if (!l) return false;
    size_t k = p->i + l;
    while (k < p->n && (p->s[k] == ' ' || p->s[k] == '\t')) k++;
    return k + 3 <= p->n && !memcmp(p->s + k, "::=", 3);
}

static int hexv(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* One (possibly escaped) code point of a literal or class. */
static lmc_status read_char(gp *p, uint32_t *cp) {
    if (p->i >= p->n) return gfail(p, LMC_ERR_INVALID_ARG, "unexpected end");
    unsigned char c = (unsigned char)p->s[p->i];
    if (c == '\\') {
        p->i++;
        if (p->i >= p->n) return gfail(p, LMC_ERR_INVALID_ARG, "unexpected end after '\\'");
        char e = p->s[p->i++];
        int digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
        if (digits) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = p->i < p->n ? hexv(p->s[p->i]) : -1;
                if (h < 0) return gfail(p, LMC_ERR_INVALID_ARG, "bad hexadecimal escape");
                v = v * 16 + (uint32_t)h;
                p->i++;
            }
            if (v > 0x10FFFF) return gfail(p, LMC_ERR_INVALID_ARG, "escape beyond U+10FFFF");
            *cp = v;
            return LMC_OK;
        }
        switch (e) {
        case 'n': *cp = '\n'; return LMC_OK;
        case 'r': *cp = '\r'; return LMC_OK;
        case 't': *cp = '\t'; return LMC_OK;
        case '0': *cp = 0; return LMC_OK;
        case '\\': case '"': case '\'': case '[': case ']': case '-': case '^': case '/':
            *cp = (uint32_t)e;
            return LMC_OK;
        }
        p->i--;
        return gfail(p, LMC_ERR_INVALID_ARG, "unknown escape");
    }
    int len = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    if (p->i + (size_t)len > p->n) len = 1;
    uint32_t v = len == 1 ? c : c & (0x3F >> (len - 1));
    for (int k = 1; k < len; k++) v = (v << 6) | ((unsigned char)p->s[p->i + k] & 0x3F);
    p->i += (size_t)len;
    *cp = v;
    return LMC_OK;
}

static lmc_status literal(gp *p, cfg_seq *q) {
    p->i++; /* opening quote */
    for (;;) {
        if (p->i >= p->n) return gfail(p, LMC_ERR_INVALID_ARG, "unterminated string literal");
        if (p->s[p->i] == '"') {
            p->i++;
            return LMC_OK;
        }
        uint32_t cp;
        lmc_status st = read_char(p, &cp);
        if (st) return st;
        char buf[4];
        int k;
        if (cp < 0x80) buf[0] = (char)cp, k = 1;
        else if (cp < 0x800) buf[0] = (char)(0xC0 | (cp >> 6)), buf[1] = (char)(0x80 | (cp & 0x3F)), k = 2;
        else if (cp < 0x10000)
            buf[0] = (char)(0xE0 | (cp >> 12)), buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
            buf[2] = (char)(0x80 | (cp & 0x3F)), k = 3;
        else
            buf[0] = (char)(0xF0 | (cp >> 18)), buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
            buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), buf[3] = (char)(0x80 | (cp & 0x3F)), k = 4;
        if ((st = cfg_push_bytes(p->g, q, buf, (size_t)k))) return st;
    }
}

static lmc_status char_class(gp *p, int32_t *out) {
    p->i++; /* [ */
    bool negate = p->i < p->n && p->s[p->i] == '^';
    if (negate) p->i++;
    cfg_class c = {0};
    lmc_status st = LMC_OK;
    while (!st) {
        if (p->i >= p->n) {
            st = gfail(p, LMC_ERR_INVALID_ARG, "unterminated character class");
            break;
        }
        if (p->s[p->i] == ']') {
            p->i++;
            break;
        }
        uint32_t lo, hi;
        if ((st = read_char(p, &lo))) break;
        hi = lo;
        if (p->i + 1 < p->n && p->s[p->i] == '-' && p->s[p->i + 1] != ']') {
            p->i++;
            if ((st = read_char(p, &hi))) break;
            if (hi < lo) {
                st = gfail(p, LMC_ERR_INVALID_ARG, "character range out of order");
                break;
            }
        }
        if (!cfg_class_add(&c, lo, hi)) st = lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
    }
    if (!st) st = cfg_class_sym(p->g, &c, negate, "a character class", out);
    cfg_class_free(&c);
    return st;
}

static lmc_status alternatives(gp *p, int32_t rule);

static lmc_status regex_literal(gp *p, int32_t *out) {
    size_t start = ++p->i;
    while (p->i < p->n && p->s[p->i] != '/') {
        if (p->s[p->i] == '\\') p->i++;
        if (p->s[p->i] == '\n') return gfail(p, LMC_ERR_INVALID_ARG, "unterminated /regex/");
        p->i++;
    }
    if (p->i >= p->n) return gfail(p, LMC_ERR_INVALID_ARG, "unterminated /regex/");
    size_t end = p->i++;
    unsigned flags = 0;
    if (p->i < p->n && p->s[p->i] == 'j') { /* /re/j: characters a JSON string holds */
        flags = RX_JSON_STRING;
        p->i++;
    }
    lmc_status st = rx_compile(p->g, p->s + start, end - start, flags, out);
    return st ? lmc_err_prefix(st, "grammar: in the regex at byte %zu", start) : LMC_OK;
}

static bool read_count(gp *p, long *v) {
    size_t s = p->i;
    long x = 0;
    while (p->i < p->n && p->s[p->i] >= '0' && p->s[p->i] <= '9') {
        if (x > 100000) return false;
        x = x * 10 + (p->s[p->i++] - '0');
    }
    *v = x;
    return p->i > s;
}

static lmc_status repetition(gp *p, int32_t *sym) {
    for (;;) {
        if (p->i >= p->n) return LMC_OK;
        char c = p->s[p->i];
        long lo, hi;
        if (c == '*') lo = 0, hi = -1;
        else if (c == '+') lo = 1, hi = -1;
        else if (c == '?') lo = 0, hi = 1;
        else if (c == '{') {
            p->i++;
            skip_ws(p);
            if (!read_count(p, &lo)) return gfail(p, LMC_ERR_INVALID_ARG, "bad {m,n} repetition");
            skip_ws(p);
            hi = lo;
            if (p->i < p->n && p->s[p->i] == ',') {
                p->i++;
                skip_ws(p);
                if (!read_count(p, &hi)) hi = -1;
                skip_ws(p);
            }
            if (p->i >= p->n || p->s[p->i] != '}')
                return gfail(p, LMC_ERR_INVALID_ARG, "bad {m,n} repetition");
        } else {
            return LMC_OK;
        }
        p->i++;
        lmc_status st = cfg_repeat(p->g, *sym, lo, hi, sym);
        if (st) return st;
    }
}

static lmc_status sequence(gp *p, cfg_seq *q) {
    for (;;) {
        skip_ws(p);
        if (p->i >= p->n || at_definition(p)) return LMC_OK;
        char c = p->s[p->i];
        if (c == '|' || c == ')') return LMC_OK;
        int32_t sym = 0;
        lmc_status st = LMC_OK;
        if (c == '"') {
            cfg_seq lit = {0};
            st = literal(p, &lit);
            if (!st && p->i < p->n && strchr("*+?{", p->s[p->i])) st = cfg_group(p->g, &lit, &sym);
            else if (!st) {
                for (size_t k = 0; k < lit.n && !st; k++)
                    if (!cfg_seq_push(q, lit.v[k])) st = lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
                cfg_seq_free(&lit);
                if (st) return st;
                if (lit.n == 0 || p->i >= p->n || !strchr("*+?{", p->s[p->i])) continue;
            }
            cfg_seq_free(&lit);
        } else if (c == '[') {
            st = char_class(p, &sym);
        } else if (c == '/') {
            st = regex_literal(p, &sym);
        } else if (c == '.') {
            p->i++;
            cfg_class k = {0};
            st = cfg_class_add(&k, 0, 0x10FFFF) ? cfg_class_sym(p->g, &k, false, "'.'", &sym)
                                                : lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
            cfg_class_free(&k);
        } else if (c == '(') {
            p->i++;
            if (++p->depth > GBNF_MAX_DEPTH) return gfail(p, LMC_ERR_LIMIT, "groups nested too deeply");
            sym = cfg_rule_anon(p->g);
            if (sym < 0) return LMC_ERR_NOMEM;
            st = alternatives(p, sym);
            p->depth--;
            if (!st) {
                skip_ws(p);
                if (p->i >= p->n || p->s[p->i] != ')') return gfail(p, LMC_ERR_INVALID_ARG, "missing ')'");
                p->i++;
            }
        } else if (is_name_start(c)) {
            size_t l = name_len(p, p->i);
            sym = cfg_rule_named(p->g, p->s + p->i, l);
            if (sym < 0) return LMC_ERR_NOMEM;
            p->i += l;
        } else {
            return gfail(p, LMC_ERR_INVALID_ARG, "unexpected character");
        }
        if (!st) st = repetition(p, &sym);
        if (st) return st;
        if (!cfg_seq_push(q, sym)) return lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
    }
}

static lmc_status alternatives(gp *p, int32_t rule) {
    for (;;) {
        cfg_seq q = {0};
        lmc_status st = sequence(p, &q);
        if (!st) st = cfg_add_alt(p->g, rule, q.v, q.n);
        cfg_seq_free(&q);
        if (st) return st;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != '|') return LMC_OK;
        p->i++;
    }
}

lmc_status gbnf_compile(lmc_cfg *g, const char *src, size_t n) {
    gp p = {g, src, n, 0, 0};
    for (;;) {
        skip_ws(&p);
        if (p.i >= p.n) break;
        if (!at_definition(&p)) return gfail(&p, LMC_ERR_INVALID_ARG, "expected 'name ::='");
        size_t l = name_len(&p, p.i);
        int32_t r = cfg_rule_named(g, src + p.i, l);
        if (r < 0) return LMC_ERR_NOMEM;
        if (g->rules[r].defined) return gfail(&p, LMC_ERR_INVALID_ARG, "rule defined twice");
        p.i += l;
        skip_ws(&p);
        p.i += 3;
        lmc_status st = alternatives(&p, r);
        if (st) return st;
        skip_ws(&p);
        if (p.i < p.n && p.s[p.i] == ')') return gfail(&p, LMC_ERR_INVALID_ARG, "unbalanced ')'");
    }
    for (size_t r = 0; r < g->n_rules; r++)
        if (!strcmp(g->rules[r].name, "root")) g->root = (int32_t)r;
    if (g->root < 0) return lmc_err(LMC_ERR_INVALID_ARG, "grammar: no rule named 'root'");
    return LMC_OK;
}
