/* Construction and checking of byte-level context-free grammars (cfg.h). */
#include "grammar/cfg.h"
#include "tokenizer/tok_internal.h" /* tk_utf8_enc */
#include "base/error.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 16;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

bool cfg_seq_push(cfg_seq *q, int32_t sym) {
    if (!grow((void **)&q->v, &q->cap, q->n + 1, sizeof *q->v)) return false;
    q->v[q->n++] = sym;
    return true;
}

void cfg_seq_free(cfg_seq *q) {
    free(q->v);
    memset(q, 0, sizeof *q);
}

void cfg_init(lmc_cfg *g, const char *what) {
    memset(g, 0, sizeof *g);
    g->root = -1;
    g->what = what;
}

void cfg_free(lmc_cfg *g) {
    for (size_t i = 0; i < g->n_rules; i++) {
        free(g->rules[i].name);
        free(g->rules[i].alts);
    }
    free(g->rules);
    free(g->sym);
    free(g->sets);
    free(g->nullable);
    memset(g, 0, sizeof *g);
}

static int32_t new_rule(lmc_cfg *g, char *name) {
    if (!name) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what), -1;
    if (g->n_rules >= CFG_MAX_RULES) {
        free(name);
        return lmc_err(LMC_ERR_LIMIT, "%s: more than %u rules", g->what, CFG_MAX_RULES), -1;
    }
    if (!grow((void **)&g->rules, &g->cap_rules, g->n_rules + 1, sizeof *g->rules)) {
        free(name);
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what), -1;
    }
    memset(&g->rules[g->n_rules], 0, sizeof g->rules[0]);
    g->rules[g->n_rules].name = name;
    return (int32_t)g->n_rules++;
}

int32_t cfg_rule_named(lmc_cfg *g, const char *name, size_t len) {
    for (size_t i = 0; i < g->n_rules; i++)
        if (strlen(g->rules[i].name) == len && !memcmp(g->rules[i].name, name, len))
            return (int32_t)i;
    return new_rule(g, strndup(name, len));
}

int32_t cfg_rule_anon(lmc_cfg *g) {
    char buf[32];
    snprintf(buf, sizeof buf, "(group %zu)", g->n_rules);
    return new_rule(g, strdup(buf));
}

lmc_status cfg_add_alt(lmc_cfg *g, int32_t rule, const int32_t *syms, size_t n) {
    if (g->n_sym + n + 1 > CFG_MAX_SYMS)
        return lmc_err(LMC_ERR_LIMIT, "%s: more than %u symbols", g->what, CFG_MAX_SYMS);
    cfg_rule *r = &g->rules[rule];
    if (!grow((void **)&g->sym, &g->cap_sym, g->n_sym + n + 1, sizeof *g->sym) ||
        !grow((void **)&r->alts, &r->cap_alts, r->n_alts + 1, sizeof *r->alts))
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what);
    r->alts[r->n_alts++] = (uint32_t)g->n_sym;
    if (n) memcpy(g->sym + g->n_sym, syms, n * sizeof *syms);
    g->n_sym += n;
    g->sym[g->n_sym++] = CFG_END;
    r->defined = true;
    return LMC_OK;
}

int32_t cfg_set_sym(lmc_cfg *g, const lmc_byteset *s) {
    for (size_t i = g->n_sets; i-- > 0 && i + 64 >= g->n_sets;) /* recent duplicates */
        if (!memcmp(&g->sets[i], s, sizeof *s)) return cfg_term((int32_t)i);
    if (!grow((void **)&g->sets, &g->cap_sets, g->n_sets + 1, sizeof *g->sets))
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what), 0;
    g->sets[g->n_sets] = *s;
    return cfg_term((int32_t)g->n_sets++);
}

lmc_status cfg_push_bytes(lmc_cfg *g, cfg_seq *q, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        lmc_byteset b = {{0}};
        lmc_byteset_add_range(&b, (unsigned char)s[i], (unsigned char)s[i]);
        int32_t t = cfg_set_sym(g, &b);
        if (!t) return LMC_ERR_NOMEM;
        if (!cfg_seq_push(q, t)) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what);
    }
    return LMC_OK;
}

/* ------------------------------------------------------------ classes */
bool cfg_class_add(cfg_class *c, uint32_t lo, uint32_t hi) {
    if (!grow((void **)&c->r, &c->cap, c->n + 1, sizeof *c->r)) return false;
    c->r[c->n][0] = lo;
    c->r[c->n][1] = hi;
    c->n++;
    return true;
}

void cfg_class_free(cfg_class *c) {
    free(c->r);
    memset(c, 0, sizeof *c);
}

static int cmp_range(const void *a, const void *b) {
    const uint32_t *x = a, *y = b;
    return (x[0] > y[0]) - (x[0] < y[0]);
}

/* Sorted, merged, surrogates removed (they have no UTF-8 encoding). */
bool cfg_class_normalize(cfg_class *c, bool negate) {
    cfg_class out = {0};
    qsort(c->r, c->n, sizeof *c->r, cmp_range);
    for (size_t i = 0; i < c->n; i++) {
        uint32_t lo = c->r[i][0], hi = c->r[i][1] > 0x10FFFF ? 0x10FFFF : c->r[i][1];
        if (lo > hi) continue;
        if (out.n && lo <= out.r[out.n - 1][1] + 1) {
            if (hi > out.r[out.n - 1][1]) out.r[out.n - 1][1] = hi;
        } else if (!cfg_class_add(&out, lo, hi)) {
            cfg_class_free(&out);
            return false;
        }
    }
    if (negate) {
        cfg_class neg = {0};
        uint32_t next = 0;
        bool ok = true;
        for (size_t i = 0; i < out.n && ok; i++) {
            if (out.r[i][0] > next) ok = cfg_class_add(&neg, next, out.r[i][0] - 1);
            next = out.r[i][1] + 1;
        }
        if (ok && next <= 0x10FFFF) ok = cfg_class_add(&neg, next, 0x10FFFF);
        cfg_class_free(&out);
        if (!ok) {
            cfg_class_free(&neg);
            return false;
        }
        out = neg;
    }
    /* cut out the surrogates */
    cfg_class fin = {0};
    for (size_t i = 0; i < out.n; i++) {
        uint32_t lo = out.r[i][0], hi = out.r[i][1];
        bool ok = true;
        if (lo < 0xD800 && hi >= 0xD800) {
            ok = cfg_class_add(&fin, lo, 0xD7FF);
            lo = 0xE000;
        } else if (lo >= 0xD800 && lo <= 0xDFFF) {
            lo = 0xE000;
        }
        if (ok && lo <= hi) ok = cfg_class_add(&fin, lo, hi);
        if (!ok) {
            cfg_class_free(&out);
            cfg_class_free(&fin);
            return false;
        }
    }
    cfg_class_free(&out);
    cfg_class_free(c);
    *c = fin;
    return true;
}

/* Split [lo, hi] into ranges whose encodings differ only by a byte range
 * at each position, adding one alternative per piece to `rule`. */
static lmc_status utf8_split(lmc_cfg *g, int32_t rule, uint32_t lo, uint32_t hi) {
    if (lo > hi) return LMC_OK;
    static const uint32_t bounds[] = {0x7F, 0x7FF, 0xFFFF};
    for (int i = 0; i < 3; i++)
        if (lo <= bounds[i] && hi > bounds[i]) {
            lmc_status st = utf8_split(g, rule, lo, bounds[i]);
            return st ? st : utf8_split(g, rule, bounds[i] + 1, hi);
        }
    if (hi >= 0x80) {
        for (int i = 1; i < 4; i++) {
            uint32_t m = (1u << (6 * i)) - 1;
            if ((lo & ~m) != (hi & ~m)) {
                if ((lo & m) != 0) {
                    lmc_status st = utf8_split(g, rule, lo, lo | m);
                    return st ? st : utf8_split(g, rule, (lo | m) + 1, hi);
                }
                if ((hi & m) != m) {
                    lmc_status st = utf8_split(g, rule, lo, (hi & ~m) - 1);
                    return st ? st : utf8_split(g, rule, hi & ~m, hi);
                }
            }
        }
    }
    unsigned char a[4], b[4];
    int n = tk_utf8_enc(lo, (char *)a);
    tk_utf8_enc(hi, (char *)b);
    int32_t seq[4];
    for (int k = 0; k < n; k++) {
        lmc_byteset s = {{0}};
        lmc_byteset_add_range(&s, a[k], b[k]);
        if (!(seq[k] = cfg_set_sym(g, &s))) return LMC_ERR_NOMEM;
    }
    return cfg_add_alt(g, rule, seq, (size_t)n);
}

lmc_status cfg_class_sym(lmc_cfg *g, cfg_class *c, bool negate, const char *where, int32_t *out) {
    if (!cfg_class_normalize(c, negate)) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what);
    if (c->n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "%s: %s matches no character", g->what, where);
    /* one byte set when every member is ASCII */
    if (c->r[c->n - 1][1] < 0x80) {
        lmc_byteset s = {{0}};
        for (size_t i = 0; i < c->n; i++) lmc_byteset_add_range(&s, c->r[i][0], c->r[i][1]);
        *out = cfg_set_sym(g, &s);
        return *out ? LMC_OK : LMC_ERR_NOMEM;
    }
    int32_t rule = cfg_rule_anon(g);
    if (rule < 0) return LMC_ERR_NOMEM;
    lmc_byteset ascii = {{0}};
    bool any_ascii = false;
    for (size_t i = 0; i < c->n; i++) {
        uint32_t lo = c->r[i][0], hi = c->r[i][1];
        if (lo < 0x80) {
            lmc_byteset_add_range(&ascii, lo, hi < 0x80 ? hi : 0x7F);
            any_ascii = true;
            lo = 0x80;
        }
        if (lo <= hi) {
            lmc_status st = utf8_split(g, rule, lo, hi);
            if (st) return st;
        }
    }
    if (any_ascii) {
        int32_t t = cfg_set_sym(g, &ascii);
        if (!t) return LMC_ERR_NOMEM;
        lmc_status st = cfg_add_alt(g, rule, &t, 1);
        if (st) return st;
    }
    *out = rule;
    return LMC_OK;
}

/* ------------------------------------------------------------ repetition */
lmc_status cfg_group(lmc_cfg *g, const cfg_seq *q, int32_t *out) {
    if (q->n == 1) {
        *out = q->v[0];
        return LMC_OK;
    }
    int32_t r = cfg_rule_anon(g);
    if (r < 0) return LMC_ERR_NOMEM;
    *out = r;
    return cfg_add_alt(g, r, q->v, q->n);
}

lmc_status cfg_repeat(lmc_cfg *g, int32_t x, long min, long max, int32_t *out) {
    if (min < 0 || (max >= 0 && max < min))
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: repetition {%ld,%ld} is empty", g->what, min, max);
    if (min > CFG_MAX_REPEAT || max > CFG_MAX_REPEAT)
        return lmc_err(LMC_ERR_LIMIT, "%s: repetition bound %ld exceeds %d", g->what,
                       max > min ? max : min, CFG_MAX_REPEAT);
    /* tail: X* as T ::= X T | ε, or X{0,k} as a chain of optionals */
    int32_t tail = -1;
    lmc_status st = LMC_OK;
    if (max < 0) {
        tail = cfg_rule_anon(g);
        if (tail < 0) return LMC_ERR_NOMEM;
        int32_t body[2] = {x, tail};
        if ((st = cfg_add_alt(g, tail, body, 2)) || (st = cfg_add_alt(g, tail, NULL, 0))) return st;
    } else {
        for (long k = 0; k < max - min; k++) {
            int32_t r = cfg_rule_anon(g);
            if (r < 0) return LMC_ERR_NOMEM;
            int32_t body[2] = {x, tail};
            if ((st = cfg_add_alt(g, r, body, tail < 0 ? 1 : 2)) || (st = cfg_add_alt(g, r, NULL, 0)))
                return st;
            tail = r;
        }
    }
    cfg_seq q = {0};
    for (long k = 0; k < min; k++)
        if (!cfg_seq_push(&q, x)) goto oom;
    if (tail >= 0 && !cfg_seq_push(&q, tail)) goto oom;
    if (q.n == 0) {
        int32_t r = cfg_rule_anon(g);
        if (r < 0 || (st = cfg_add_alt(g, r, NULL, 0))) {
            cfg_seq_free(&q);
            return r < 0 ? LMC_ERR_NOMEM : st;
        }
        *out = r;
    } else {
        st = cfg_group(g, &q, out);
    }
    cfg_seq_free(&q);
    return st;
oom:
    cfg_seq_free(&q);
    return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what);
}

/* ------------------------------------------------------------ finalize */
/* Fixpoints: nullable (every symbol of some alternative nullable) and
 * productive (every symbol of some alternative productive; terminals are). */
static void fixpoint(const lmc_cfg *g, bool *flag, bool terms_ok) {
    bool changed = true;
    while (changed) {
        changed = false;
        for (size_t r = 0; r < g->n_rules; r++) {
            if (flag[r]) continue;
            for (size_t a = 0; a < g->rules[r].n_alts && !flag[r]; a++) {
                uint32_t pos = g->rules[r].alts[a];
                bool ok = true;
                for (; g->sym[pos] != CFG_END && ok; pos++) {
                    int32_t s = g->sym[pos];
                    ok = cfg_is_term(s) ? terms_ok : flag[s];
                }
                if (ok) flag[r] = changed = true;
            }
        }
    }
}

/* Depth-first search over "can start with" edges (through nullable
 * prefixes); a back edge is left recursion. */
static lmc_status left_rec(const lmc_cfg *g, int32_t r, uint8_t *mark) {
    mark[r] = 1;
    for (size_t a = 0; a < g->rules[r].n_alts; a++) {
        for (uint32_t pos = g->rules[r].alts[a]; g->sym[pos] != CFG_END; pos++) {
            int32_t s = g->sym[pos];
            if (cfg_is_term(s)) break;
            if (mark[s] == 1)
                return lmc_err(LMC_ERR_UNSUPPORTED,
                               "%s: rule '%s' is left-recursive (through '%s'); rewrite it with "
                               "repetition or right recursion",
                               g->what, g->rules[s].name, g->rules[r].name);
            if (mark[s] == 0) {
                lmc_status st = left_rec(g, s, mark);
                if (st) return st;
            }
            if (!g->nullable[s]) break;
        }
    }
    mark[r] = 2;
    return LMC_OK;
}

lmc_status cfg_finalize(lmc_cfg *g) {
    if (g->root < 0) return lmc_err(LMC_ERR_INVALID_ARG, "%s: no root rule", g->what);
    for (size_t r = 0; r < g->n_rules; r++)
        if (!g->rules[r].defined)
            return lmc_err(LMC_ERR_INVALID_ARG, "%s: rule '%s' is used but never defined", g->what,
                           g->rules[r].name);
    free(g->nullable);
    g->nullable = calloc(g->n_rules ? g->n_rules : 1, sizeof *g->nullable);
    bool *prod = calloc(g->n_rules ? g->n_rules : 1, sizeof *prod);
    uint8_t *mark = calloc(g->n_rules ? g->n_rules : 1, 1);
    lmc_status st = LMC_OK;
    if (!g->nullable || !prod || !mark) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", g->what);
        goto out;
    }
    fixpoint(g, g->nullable, false);
    fixpoint(g, prod, true);
    for (size_t r = 0; r < g->n_rules; r++)
        if (!prod[r]) {
            st = lmc_err(LMC_ERR_INVALID_ARG,
                         "%s: rule '%s' can never finish (every alternative recurses forever)",
                         g->what, g->rules[r].name);
            goto out;
        }
    for (size_t r = 0; r < g->n_rules && !st; r++)
        if (!mark[r]) st = left_rec(g, (int32_t)r, mark);
out:
    free(prod);
    free(mark);
    return st;
}
