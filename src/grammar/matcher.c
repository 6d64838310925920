/* The grammar automaton, the vocabulary trie and the token mask.
 *
 * Parsing is top-down over bytes with a set of threads, each a grammar
 * position (always at a byte-set symbol) and a return stack interned as a
 * node of a shared tree; a rule in tail position reuses its caller's
 * frame, so right-recursive repetition runs in constant stack. A set of
 * threads is interned as an automaton state, its 256 byte transitions are
 * filled in on demand, so after warm-up a step is one table lookup.
 *
 * The token mask of a state comes from one depth-first walk over the
 * vocabulary trie (token byte strings sorted, each trie node stored in
 * preorder with the index just past its subtree): a byte that leads to the
 * dead state skips the whole subtree, so a walk touches only the prefixes
 * the grammar allows. Each state's mask is kept, so a state seen again
 * (every step of a long string, every request with the same schema) costs
 * nothing. */
#include "grammar/matcher.h"
#include "base/buf.h"
#include "base/error.h"
#include "tokenizer/tok_bytes.h"
#include <stdlib.h>
#include <string.h>

#define PDA_MAX_STATES (1u << 16)
#define PDA_MAX_NODES (1u << 22)
#define PDA_MAX_DEPTH 1000  /* deeper stacks are dropped (the mask only narrows) */
#define PDA_MAX_MASKS 1024  /* token masks kept per grammar */

typedef struct {
    uint32_t ret, parent, depth;
} pnode;
typedef struct {
    uint32_t pos, stk;
} pthr;
typedef struct {
    uint32_t off, n;
    bool accept;
    uint32_t *mask;
    const void *mask_owner;
    int32_t cap; /* JSON string slice: plain characters the state takes (see slice_cap) */
} pstate;

#define CAP_UNKNOWN (-2)
#define CAP_NONE (-1)
#define CAP_INF INT32_MAX

struct lmc_pda {
    const lmc_cfg *g;
    pnode *nodes;
    size_t n_nodes, cap_nodes;
    uint32_t *node_ht; /* index + 1 */
    size_t node_ht_cap;
    pthr *pool;
    size_t n_pool, cap_pool;
    pstate **st;
    size_t n_st, cap_st;
    int32_t *trans; /* 256 per state: next state, -1 not computed yet, 0 dead */
    size_t cap_trans;
    uint32_t *st_ht;
    size_t st_ht_cap;
    pthr *scr;
    size_t n_scr, cap_scr;
    uint64_t *seen; /* closure visit keys (pos << 32 | stk) + 1 */
    size_t seen_cap, n_seen;
    size_t n_masks;
    uint8_t *str_start; /* per symbol: the first byte of a JSON string character (or NULL) */
};

static bool grow(void **p, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return true;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return false;
    *p = q;
    *cap = c;
    return true;
}

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* ---------------------------------------------------------- stack nodes */
static bool node_ht_rehash(lmc_pda *p) {
    size_t cap = p->node_ht_cap ? p->node_ht_cap * 2 : 1024;
    uint32_t *ht = calloc(cap, sizeof *ht);
    if (!ht) return false;
    for (size_t i = 1; i < p->n_nodes; i++) {
        size_t h = mix(((uint64_t)p->nodes[i].ret << 32) | p->nodes[i].parent) & (cap - 1);
        while (ht[h]) h = (h + 1) & (cap - 1);
        ht[h] = (uint32_t)i + 1;
    }
    free(p->node_ht);
    p->node_ht = ht;
    p->node_ht_cap = cap;
    return true;
}

/* 0 when dropped (too deep), UINT32_MAX on OOM or past the node cap */
static uint32_t node_intern(lmc_pda *p, uint32_t ret, uint32_t parent) {
    uint32_t depth = p->nodes[parent].depth + 1;
    if (depth > PDA_MAX_DEPTH) return 0;
    if ((p->n_nodes + 1) * 2 > p->node_ht_cap && !node_ht_rehash(p)) return UINT32_MAX;
    size_t h = mix(((uint64_t)ret << 32) | parent) & (p->node_ht_cap - 1);
    for (; p->node_ht[h]; h = (h + 1) & (p->node_ht_cap - 1)) {
        pnode *n = &p->nodes[p->node_ht[h] - 1];
        if (n->ret == ret && n->parent == parent) return p->node_ht[h] - 1;
    }
    if (p->n_nodes >= PDA_MAX_NODES ||
        !grow((void **)&p->nodes, &p->cap_nodes, p->n_nodes + 1, sizeof *p->nodes))
        return UINT32_MAX;
    p->nodes[p->n_nodes] = (pnode){ret, parent, depth};
    p->node_ht[h] = (uint32_t)p->n_nodes + 1;
    return (uint32_t)p->n_nodes++;
}

/* ---------------------------------------------------------- closure */
static bool seen_add(lmc_pda *p, uint32_t pos, uint32_t stk) {
    uint64_t key = (((uint64_t)pos << 32) | stk) + 1;
    if ((p->n_seen + 1) * 2 > p->seen_cap) {
        size_t cap = p->seen_cap ? p->seen_cap * 2 : 256;
        uint64_t *t = calloc(cap, sizeof *t);
        if (!t) return false; /* treated as seen: the caller stops (and reports OOM) */
        for (size_t i = 0; i < p->seen_cap; i++)
            if (p->seen[i]) {
                size_t h = mix(p->seen[i]) & (cap - 1);
                while (t[h]) h = (h + 1) & (cap - 1);
                t[h] = p->seen[i];
            }
        free(p->seen);
        p->seen = t;
        p->seen_cap = cap;
    }
    size_t h = mix(key) & (p->seen_cap - 1);
    for (; p->seen[h]; h = (h + 1) & (p->seen_cap - 1))
        if (p->seen[h] == key) return false;
    p->seen[h] = key;
    p->n_seen++;
    return true;
}

static void seen_clear(lmc_pda *p) {
    if (p->n_seen) memset(p->seen, 0, p->seen_cap * sizeof *p->seen);
    p->n_seen = 0;
}

/* Expand (pos, stk) until every thread stands at a byte set. */
static lmc_status closure(lmc_pda *p, uint32_t pos, uint32_t stk, bool *accept) {
    const lmc_cfg *g = p->g;
    for (;;) {
        int32_t s = g->sym[pos];
        if (cfg_is_term(s)) {
            if (!grow((void **)&p->scr, &p->cap_scr, p->n_scr + 1, sizeof *p->scr))
                return lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
            p->scr[p->n_scr++] = (pthr){pos, stk};
            return LMC_OK;
        }
        if (!seen_add(p, pos, stk)) return LMC_OK;
        if (s == CFG_END) {
            if (stk == 0) {
                *accept = true;
                return LMC_OK;
            }
            pos = p->nodes[stk].ret;
            stk = p->nodes[stk].parent;
            continue;
        }
        uint32_t inner = stk;
        if (g->sym[pos + 1] != CFG_END) {
            inner = node_intern(p, pos + 1, stk);
            if (inner == 0) return LMC_OK; /* too deep: this path is dropped */
            if (inner == UINT32_MAX)
                return lmc_err(LMC_ERR_LIMIT, "grammar: more than %u parser stack nodes", PDA_MAX_NODES);
        }
        const cfg_rule *r = &g->rules[s];
        for (size_t a = 0; a < r->n_alts; a++) {
            lmc_status st = closure(p, r->alts[a], inner, accept);
            if (st) return st;
        }
        return LMC_OK;
    }
}

static int cmp_thr(const void *a, const void *b) {
    const pthr *x = a, *y = b;
    if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
    return (x->stk > y->stk) - (x->stk < y->stk);
}

static bool st_ht_rehash(lmc_pda *p);

static uint64_t state_hash(const pthr *t, size_t n, bool accept) {
    uint64_t h = accept ? 0x9E3779B97F4A7C15ull : 1;
    for (size_t i = 0; i < n; i++) h = mix(h ^ (((uint64_t)t[i].pos << 32) | t[i].stk)) + i;
    return h;
}

/* Intern the scratch threads as a state; *out its index. */
static lmc_status intern_scratch(lmc_pda *p, bool accept, int32_t *out) {
    qsort(p->scr, p->n_scr, sizeof *p->scr, cmp_thr);
    size_t n = 0;
    for (size_t i = 0; i < p->n_scr; i++)
        if (!n || cmp_thr(&p->scr[n - 1], &p->scr[i])) p->scr[n++] = p->scr[i];
    p->n_scr = n;
    if (n == 0 && !accept) {
        *out = 0;
        return LMC_OK;
    }
    uint64_t h = state_hash(p->scr, n, accept);
    if ((p->n_st + 1) * 2 > p->st_ht_cap && !st_ht_rehash(p))
        return lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
    size_t mask = p->st_ht_cap - 1, k = h & mask;
    for (; p->st_ht[k]; k = (k + 1) & mask) {
        pstate *s = p->st[p->st_ht[k] - 1];
        if (s->accept == accept && s->n == n && !memcmp(p->pool + s->off, p->scr, n * sizeof *p->scr)) {
            *out = (int32_t)(p->st_ht[k] - 1);
            return LMC_OK;
        }
    }
    if (p->n_st >= PDA_MAX_STATES)
        return lmc_err(LMC_ERR_LIMIT, "grammar: more than %u parser states", PDA_MAX_STATES);
    pstate *s = malloc(sizeof *s);
    if (!s || !grow((void **)&p->st, &p->cap_st, p->n_st + 1, sizeof *p->st) ||
        !grow((void **)&p->trans, &p->cap_trans, (p->n_st + 1) * 256, sizeof *p->trans) ||
        !grow((void **)&p->pool, &p->cap_pool, p->n_pool + n, sizeof *p->pool)) {
        free(s);
        return lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
    }
    s->off = (uint32_t)p->n_pool;
    s->n = (uint32_t)n;
    s->accept = accept;
    s->mask = NULL;
    s->mask_owner = NULL;
    s->cap = CAP_UNKNOWN;
    for (int b = 0; b < 256; b++) p->trans[p->n_st * 256 + (size_t)b] = -1;
    if (n) memcpy(p->pool + p->n_pool, p->scr, n * sizeof *p->scr);
    p->n_pool += n;
    p->st[p->n_st] = s;
    p->st_ht[k] = (uint32_t)p->n_st + 1;
    *out = (int32_t)p->n_st++;
    return LMC_OK;
}

static bool st_ht_rehash(lmc_pda *p) {
    size_t cap = p->st_ht_cap ? p->st_ht_cap * 2 : 256;
    uint32_t *ht = calloc(cap, sizeof *ht);
    if (!ht) return false;
    for (size_t i = 1; i < p->n_st; i++) {
        pstate *s = p->st[i];
        size_t k = state_hash(p->pool + s->off, s->n, s->accept) & (cap - 1);
        while (ht[k]) k = (k + 1) & (cap - 1);
        ht[k] = (uint32_t)i + 1;
    }
    free(p->st_ht);
    p->st_ht = ht;
    p->st_ht_cap = cap;
    return true;
}

/* Mark the first terminals of rule r (through leading rule references). */
static void mark_first(const lmc_cfg *g, int32_t r, uint8_t *mark, uint8_t *busy) {
    if (busy[r]) return;
    busy[r] = 1;
    for (size_t a = 0; a < g->rules[r].n_alts; a++) {
        uint32_t pos = g->rules[r].alts[a];
        int32_t s = g->sym[pos];
        if (cfg_is_term(s)) mark[pos] = 1;
        else if (s != CFG_END) mark_first(g, s, mark, busy);
    }
}

/* JSON schema grammars spell string characters with the rule "str-char";
 * its first bytes let the mask take whole slices of the vocabulary. */
static void find_str_char(lmc_pda *p) {
    const lmc_cfg *g = p->g;
    if (!g->json_strings) return;
    int32_t r = -1;
    for (size_t i = 0; i < g->n_rules && r < 0; i++)
        if (!strcmp(g->rules[i].name, "str-char")) r = (int32_t)i;
    if (r < 0) return;
    uint8_t *busy = calloc(g->n_rules, 1);
    p->str_start = calloc(g->n_sym, 1);
    if (!busy || !p->str_start) {
        free(busy);
        free(p->str_start);
        p->str_start = NULL;
        return;
    }
    mark_first(g, r, p->str_start, busy);
    free(busy);
}

static lmc_status pda_new(const lmc_cfg *g, lmc_pda **out) {
    lmc_pda *p = calloc(1, sizeof *p);
    if (!p) return lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
    p->g = g;
    lmc_status st = LMC_OK;
    /* node 0 = the empty stack; state 0 = dead, state 1 = start */
    if (!grow((void **)&p->nodes, &p->cap_nodes, 1, sizeof *p->nodes) || !node_ht_rehash(p))
        st = lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
    p->nodes[0] = (pnode){0, 0, 0};
    p->n_nodes = 1;
    find_str_char(p);
    pstate *dead = st ? NULL : calloc(1, sizeof *dead);
    if (!st && (!dead || !grow((void **)&p->st, &p->cap_st, 1, sizeof *p->st) ||
                !grow((void **)&p->trans, &p->cap_trans, 256, sizeof *p->trans) || !st_ht_rehash(p))) {
        free(dead);
        st = lmc_err(LMC_ERR_NOMEM, "grammar: out of memory");
    }
    if (!st) {
        for (int b = 0; b < 256; b++) p->trans[b] = 0;
        p->st[p->n_st++] = dead;
        bool accept = false;
        const cfg_rule *r = &g->rules[g->root];
        p->n_scr = 0;
        for (size_t a = 0; a < r->n_alts && !st; a++) st = closure(p, r->alts[a], 0, &accept);
        seen_clear(p);
        int32_t s0 = 0;
        if (!st) st = intern_scratch(p, accept, &s0);
        if (!st && s0 != 1) st = lmc_err(LMC_ERR_INVALID_ARG, "grammar: the root rule matches nothing");
    }
    if (st) {
        *out = p;
        return st;
    }
    *out = p;
    return LMC_OK;
}

static void pda_free(lmc_pda *p) {
    if (!p) return;
    for (size_t i = 0; i < p->n_st; i++) {
        if (p->st[i]) free(p->st[i]->mask);
        free(p->st[i]);
    }
    free(p->st);
    free(p->st_ht);
    free(p->trans);
    free(p->nodes);
    free(p->node_ht);
    free(p->pool);
    free(p->scr);
    free(p->seen);
    free(p->str_start);
    free(p);
}

/* The state after byte b from state s (computed on first use). */
static lmc_status pda_step(lmc_pda *p, int32_t s, unsigned b, int32_t *out) {
    int32_t nx = p->trans[(size_t)s * 256 + b];
    if (nx >= 0) {
        *out = nx;
        return LMC_OK;
    }
    const lmc_cfg *g = p->g;
    bool accept = false;
    p->n_scr = 0;
    lmc_status st = LMC_OK;
    pstate *cur = p->st[s];
    for (uint32_t i = 0; i < cur->n && !st; i++) {
        pthr t = p->pool[cur->off + i];
        if (lmc_byteset_has(&g->sets[cfg_term_set(g->sym[t.pos])], b))
            st = closure(p, t.pos + 1, t.stk, &accept);
    }
    seen_clear(p);
    if (!st) st = intern_scratch(p, accept, &nx);
    if (st) return st;
    p->trans[(size_t)s * 256 + b] = nx;
    *out = nx;
    return LMC_OK;
}

/* ---------------------------------------------------------- vocabulary */
typedef struct {
    uint32_t skip; /* index just past the node's subtree */
    int32_t tok;   /* first token ending here, -1 */
    uint16_t depth; /* 1-based */
    uint8_t byte;
} vnode;

/* Tokens in depth-first order of their bytes. */
typedef struct {
    vnode *node;
    size_t n_nodes;
    int32_t *tok_next; /* per token: the next token with the same bytes, -1 */
} vtrie;

struct lmc_vocab_index {
    size_t vocab, words;      /* model vocabulary, 32-bit mask words */
    vtrie all;
    /* JSON string slices: a "plain" token is complete UTF-8 of code points
     * >= U+0020 other than '"' and '\\' (what a JSON string holds without
     * escapes); plain[k] is the mask of plain tokens of at most k code
     * points (k <= plain_max), and `rest` the trie of the other tokens. */
    vtrie rest;
    uint32_t *plain;
    size_t plain_max;
    uint32_t *tok_off;        /* per token: its bytes in blob (tok_off[t + 1] ends them) */
    uint8_t *blob;
};

typedef struct {
    char *b;
    uint32_t n;
    int32_t id;
} vent;

static int cmp_vent(const void *a, const void *b) {
    const vent *x = a, *y = b;
    uint32_t n = x->n < y->n ? x->n : y->n;
    int c = memcmp(x->b, y->b, n);
    if (c) return c;
    if (x->n != y->n) return x->n < y->n ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static void vtrie_free(vtrie *t) {
    free(t->node);
    free(t->tok_next);
}

void lmc_vocab_index_free(lmc_vocab_index *v) {
    if (!v) return;
    vtrie_free(&v->all);
    vtrie_free(&v->rest);
    free(v->plain);
    free(v->tok_off);
    free(v->blob);
    free(v);
}

size_t lmc_vocab_index_nodes(const lmc_vocab_index *v) { return v ? v->all.n_nodes : 0; }

/* The trie of e[0..n) (sorted by bytes). */
static bool vtrie_build(const vent *e, size_t n, size_t vocab, vtrie *t) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += e[i].n;
    t->node = malloc((total ? total : 1) * sizeof *t->node);
    t->tok_next = malloc(vocab * sizeof *t->tok_next);
    uint32_t *path = malloc((UINT16_MAX + 1) * sizeof *path); /* node index per depth */
    if (!t->node || !t->tok_next || !path) {
        free(path);
        return false;
    }
    for (size_t i = 0; i < vocab; i++) t->tok_next[i] = -1;
    size_t nn = 0, open = 0; /* open: depth of the current path */
    for (size_t i = 0; i < n; i++) {
        size_t common = 0;
        if (i) {
            size_t m = e[i - 1].n < e[i].n ? e[i - 1].n : e[i].n;
            while (common < m && e[i - 1].b[common] == e[i].b[common]) common++;
        }
        /* close nodes deeper than the common prefix */
        while (open > common) t->node[path[--open]].skip = (uint32_t)nn;
        if (common == e[i].n) { /* same bytes as the previous token */
            int32_t *slot = &t->node[path[common - 1]].tok;
            while (*slot >= 0) slot = &t->tok_next[*slot];
            *slot = e[i].id;
            continue;
        }
        for (size_t d = common; d < e[i].n; d++) {
            t->node[nn].byte = (uint8_t)e[i].b[d];
            t->node[nn].depth = (uint16_t)(d + 1);
            t->node[nn].tok = -1;
            path[open++] = (uint32_t)nn++;
        }
        t->node[nn - 1].tok = e[i].id;
    }
    while (open > 0) t->node[path[--open]].skip = (uint32_t)nn;
    t->n_nodes = nn;
    free(path);
    return true;
}

/* Code points of a plain token (see lmc_vocab_index), or -1. */
static long plain_chars(const unsigned char *s, size_t n) {
    long c = 0;
    for (size_t i = 0; i < n; c++) {
        unsigned x = s[i];
        size_t len = x < 0x80 ? 1 : x >= 0xF0 ? 4 : x >= 0xE0 ? 3 : x >= 0xC2 ? 2 : 0;
        if (!len || len > n - i || (len == 4 && x > 0xF4)) return -1;
        uint32_t cp = len == 1 ? x : x & (0x7F >> len);
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return -1;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        static const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
        if (cp < min_cp[len] || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return -1;
        if (cp < 0x20 || cp == '"' || cp == '\\') return -1;
        i += len;
    }
    return c;
}

/* plain masks and the trie of the other tokens; e in id order */
static bool build_slices(lmc_vocab_index *v, vent *e, size_t n) {
    long *chars = malloc((n ? n : 1) * sizeof *chars);
    vent *rest = malloc((n ? n : 1) * sizeof *rest);
    if (!chars || !rest) {
        free(chars), free(rest);
        return false;
    }
    size_t nr = 0;
    long mx = 0;
    for (size_t i = 0; i < n; i++) {
        chars[i] = plain_chars((const unsigned char *)e[i].b, e[i].n);
        if (chars[i] < 0) rest[nr++] = e[i];
        else if (chars[i] > mx) mx = chars[i];
    }
    v->plain_max = (size_t)mx;
    v->plain = calloc((v->plain_max + 1) * v->words, sizeof *v->plain);
    bool ok = v->plain != NULL;
    for (size_t i = 0; ok && i < n; i++)
        if (chars[i] >= 0) v->plain[(size_t)chars[i] * v->words + (e[i].id >> 5)] |= 1u << (e[i].id & 31);
    for (size_t k = 1; ok && k <= v->plain_max; k++) /* cumulative: at most k */
        for (size_t w = 0; w < v->words; w++) v->plain[k * v->words + w] |= v->plain[(k - 1) * v->words + w];
    if (ok) {
        qsort(rest, nr, sizeof *rest, cmp_vent);
        ok = vtrie_build(rest, nr, v->vocab, &v->rest);
    }
    free(chars);
    free(rest);
    return ok;
}

lmc_status lmc_vocab_index_build(const lmc_tokenizer *t, size_t model_vocab, lmc_vocab_index **out) {
    *out = NULL;
    if (!t || model_vocab == 0 || model_vocab > (size_t)INT32_MAX)
        return lmc_err(LMC_ERR_INVALID_ARG, "vocabulary index: bad vocabulary size %zu", model_vocab);
    lmc_vocab_index *v = calloc(1, sizeof *v);
    vent *e = calloc(model_vocab, sizeof *e);
    lmc_buf b = {0};
    lmc_status st = LMC_OK;
    if (!v || !e) {
        st = lmc_err(LMC_ERR_NOMEM, "vocabulary index: out of memory");
        goto fail;
    }
    v->vocab = model_vocab;
    v->words = (model_vocab + 31) / 32;
    size_t n = 0, total = 0;
    size_t tv = lmc_tokenizer_vocab_size(t);
    for (size_t id = 0; id < model_vocab && id < tv; id++) {
        if ((st = lmc_tokenizer_token_bytes(t, (int32_t)id, &b))) goto fail;
        if (b.len == 0 || b.len > UINT16_MAX) continue;
        e[n].b = malloc(b.len);
        if (!e[n].b) {
            st = lmc_err(LMC_ERR_NOMEM, "vocabulary index: out of memory");
            goto fail;
        }
        memcpy(e[n].b, b.p, b.len);
        e[n].n = (uint32_t)b.len;
        e[n].id = (int32_t)id;
        total += b.len;
        n++;
    }
    v->tok_off = calloc(model_vocab + 1, sizeof *v->tok_off);
    v->blob = malloc(total ? total : 1);
    if (!v->tok_off || !v->blob || !build_slices(v, e, n)) {
        st = lmc_err(LMC_ERR_NOMEM, "vocabulary index: out of memory");
        goto fail;
    }
    /* e is in id order here: lay the bytes out by id */
    for (size_t i = 0, at = 0, k = 0; i <= model_vocab; i++) {
        v->tok_off[i] = (uint32_t)at;
        if (i < model_vocab && k < n && e[k].id == (int32_t)i) {
            memcpy(v->blob + at, e[k].b, e[k].n);
            at += e[k++].n;
        }
    }
    qsort(e, n, sizeof *e, cmp_vent);
    if (!vtrie_build(e, n, model_vocab, &v->all)) {
        st = lmc_err(LMC_ERR_NOMEM, "vocabulary index: out of memory");
        goto fail;
    }
    for (size_t i = 0; i < n; i++) free(e[i].b);
    free(e);
    lmc_buf_free(&b);
    *out = v;
    return LMC_OK;
fail:
    if (e)
        for (size_t i = 0; i < model_vocab; i++) free(e[i].b);
    free(e);
    lmc_buf_free(&b);
    lmc_vocab_index_free(v);
    return st;
}

/* ---------------------------------------------------------- matcher */
struct lmc_matcher {
    lmc_grammar *g;
    const lmc_vocab_index *v;
    int32_t *eos;
    size_t n_eos;
    int32_t state;
    uint32_t *bits;     /* the mask handed out when the state's is not kept */
    int32_t *walk;      /* automaton state per trie depth */
};

static lmc_status ensure_pda(lmc_grammar *g) {
    if (g->pda) return LMC_OK;
    lmc_pda *p = NULL;
    lmc_status st = pda_new(&g->cfg, &p);
    if (st) {
        pda_free(p);
        return st;
    }
    g->pda = p;
    return LMC_OK;
}

lmc_status lmc_matcher_new(lmc_grammar *g, const lmc_vocab_index *v, const int32_t *eos,
                           size_t n_eos, lmc_matcher **out) {
    *out = NULL;
    if (!g || !v) return lmc_err(LMC_ERR_INVALID_ARG, "matcher: NULL argument");
    pthread_mutex_lock(&g->mu);
    lmc_status st = ensure_pda(g);
    pthread_mutex_unlock(&g->mu);
    if (st) return st;
    lmc_matcher *m = calloc(1, sizeof *m);
    if (!m) return lmc_err(LMC_ERR_NOMEM, "matcher: out of memory");
    m->g = g;
    m->v = v;
    m->state = 1;
    m->eos = malloc((n_eos ? n_eos : 1) * sizeof *m->eos);
    m->bits = malloc(v->words * sizeof *m->bits);
    m->walk = malloc((UINT16_MAX + 1) * sizeof *m->walk);
    if (!m->eos || !m->bits || !m->walk) {
        lmc_matcher_free(m);
        return lmc_err(LMC_ERR_NOMEM, "matcher: out of memory");
    }
    for (size_t i = 0; i < n_eos; i++)
        if (eos[i] >= 0 && (size_t)eos[i] < v->vocab) m->eos[m->n_eos++] = eos[i];
    *out = m;
    return LMC_OK;
}

void lmc_matcher_free(lmc_matcher *m) {
    if (!m) return;
    free(m->eos);
    free(m->bits);
    free(m->walk);
    free(m);
}

static lmc_status walk_trie(lmc_pda *p, const vtrie *t, int32_t s0, int32_t *walk, uint32_t *bits) {
    walk[0] = s0;
    const vnode *node = t->node;
    for (size_t i = 0, n = t->n_nodes; i < n;) {
        const vnode *x = &node[i];
        int32_t from = walk[x->depth - 1], to = p->trans[(size_t)from * 256 + x->byte];
        if (to < 0) {
            lmc_status st = pda_step(p, from, x->byte, &to);
            if (st) return st;
        }
        if (to == 0) {
            i = x->skip;
            continue;
        }
        walk[x->depth] = to;
        for (int32_t k = x->tok; k >= 0; k = t->tok_next[k]) bits[k >> 5] |= 1u << (k & 31);
        i++;
    }
    return LMC_OK;
}

/* Bytes a plain token (complete UTF-8, no '"', '\\' or control) may hold. */
static bool plain_byte(unsigned b) { return (b >= 0x20 && b != '"' && b != '\\') && b <= 0xF4; }

/* Every thread either starts a JSON string character or takes no plain
 * byte at all: then plain tokens can only be read as string characters. */
static bool pure(const lmc_pda *p, int32_t s) {
    const pstate *st = p->st[s];
    for (uint32_t i = 0; i < st->n; i++) {
        pthr t = p->pool[st->off + i];
        if (p->str_start[t.pos]) continue;
        const lmc_byteset *bs = &p->g->sets[cfg_term_set(p->g->sym[t.pos])];
        for (unsigned b = 0x20; b <= 0xF4; b++)
            if (plain_byte(b) && lmc_byteset_has(bs, b)) return false;
    }
    return true;
}

/* How many plain characters state s accepts in a row: after any one plain
 * character every string-character thread is where 'a' takes it (the
 * character rule ends the same way whichever alternative read it), so
 * stepping 'a' counts them. CAP_INF for a loop, CAP_NONE when the state
 * (or one on the way) is not pure. */
static lmc_status slice_cap(lmc_pda *p, int32_t s, int32_t *cap) {
    if (p->st[s]->cap != CAP_UNKNOWN) {
        *cap = p->st[s]->cap;
        return LMC_OK;
    }
    enum { MAX_RUN = 300 };
    int32_t seen[MAX_RUN + 1], cur = s;
    int32_t c = CAP_NONE;
    seen[0] = s;
    if (pure(p, s)) {
        for (int i = 1; i <= MAX_RUN; i++) {
            int32_t nx;
            lmc_status st = pda_step(p, cur, 'a', &nx);
            if (st) return st;
            if (nx == 0) {
                c = i - 1;
                break;
            }
            if (!pure(p, nx)) break;
            bool loop = false;
            for (int k = 0; k < i && !loop; k++) loop = seen[k] == nx;
            if (loop) {
                c = CAP_INF;
                break;
            }
            seen[i] = cur = nx;
        }
    }
    p->st[s]->cap = c;
    *cap = c;
    return LMC_OK;
}

/* The mask of state s (eos aside): one trie walk, or with JSON string
 * slices the walk over the non-plain tokens plus the plain ones that fit. */
static lmc_status state_mask(lmc_pda *p, const lmc_vocab_index *v, int32_t s, int32_t *walk,
                             uint32_t *bits) {
    memset(bits, 0, v->words * sizeof *bits);
    int32_t cap = CAP_NONE;
    lmc_status st = p->str_start && v->plain ? slice_cap(p, s, &cap) : LMC_OK;
    if (st) return st;
    if (cap == CAP_NONE) return walk_trie(p, &v->all, s, walk, bits);
    st = walk_trie(p, &v->rest, s, walk, bits);
    size_t k = cap == CAP_INF || (size_t)cap > v->plain_max ? v->plain_max : (size_t)cap;
    const uint32_t *m = v->plain + k * v->words;
    for (size_t w = 0; w < v->words; w++) bits[w] |= m[w];
    return st;
}

lmc_status lmc_matcher_mask(lmc_matcher *m, const uint32_t **bits) {
    lmc_grammar *g = m->g;
    pthread_mutex_lock(&g->mu);
    lmc_pda *p = g->pda;
    pstate *s = p->st[m->state];
    lmc_status st = LMC_OK;
    if (!(s->mask && s->mask_owner == m->v)) {
        bool keep = s->mask || p->n_masks < PDA_MAX_MASKS;
        if (keep && !s->mask) {
            if (!(s->mask = malloc(m->v->words * sizeof *s->mask)))
                st = lmc_err(LMC_ERR_NOMEM, "matcher: out of memory");
            else p->n_masks++;
        }
        s->mask_owner = NULL;
        if (!st) st = state_mask(p, m->v, m->state, m->walk, keep ? s->mask : m->bits);
        if (!st && keep) s->mask_owner = m->v;
    }
    if (!st && s->mask_owner == m->v) memcpy(m->bits, s->mask, m->v->words * sizeof *m->bits);
    bool accept = s->accept;
    pthread_mutex_unlock(&g->mu);
    if (st) return st;
    if (accept)
        for (size_t i = 0; i < m->n_eos; i++) m->bits[m->eos[i] >> 5] |= 1u << (m->eos[i] & 31);
    bool any = false;
    for (size_t i = 0; i < m->v->words && !any; i++) any = m->bits[i] != 0;
    if (!any)
        return lmc_err(LMC_ERR_STATE, "grammar: no token can continue the output (the grammar is "
                                      "complete and the model has no eos token, or no token "
                                      "spells the next allowed bytes)");
    *bits = m->bits;
    return LMC_OK;
}

lmc_status lmc_matcher_accept(lmc_matcher *m, int32_t token) {
    for (size_t i = 0; i < m->n_eos; i++)
        if (m->eos[i] == token) {
            if (!lmc_matcher_accepting(m))
                return lmc_err(LMC_ERR_INVALID_ARG, "grammar: eos token %d before the grammar is complete", token);
            return LMC_OK;
        }
    const lmc_vocab_index *v = m->v;
    if (token < 0 || (size_t)token >= v->vocab)
        return lmc_err(LMC_ERR_INVALID_ARG, "grammar: token %d outside the vocabulary", token);
    uint32_t a = v->tok_off[token], b = v->tok_off[token + 1];
    if (a == b)
        return lmc_err(LMC_ERR_INVALID_ARG, "grammar: token %d has no bytes a grammar can match", token);
    lmc_grammar *g = m->g;
    pthread_mutex_lock(&g->mu);
    lmc_status st = LMC_OK;
    int32_t s = m->state;
    for (uint32_t k = a; !st && k < b && s; k++) st = pda_step(g->pda, s, v->blob[k], &s);
    if (!st && s == 0) st = lmc_err(LMC_ERR_INVALID_ARG, "grammar: token %d is not allowed here", token);
    if (!st) m->state = s;
    pthread_mutex_unlock(&g->mu);
    return st;
}

lmc_status lmc_matcher_mask_uncached(lmc_matcher *m, bool per_token, const uint32_t **bits) {
    lmc_grammar *g = m->g;
    const lmc_vocab_index *v = m->v;
    pthread_mutex_lock(&g->mu);
    lmc_pda *p = g->pda;
    lmc_status st = LMC_OK;
    if (!per_token) {
        st = state_mask(p, v, m->state, m->walk, m->bits);
    } else {
        memset(m->bits, 0, v->words * sizeof *m->bits);
        for (size_t t = 0; t < v->vocab && !st; t++) {
            int32_t s = m->state;
            for (uint32_t k = v->tok_off[t]; k < v->tok_off[t + 1] && s && !st; k++) {
                int32_t nx = p->trans[(size_t)s * 256 + v->blob[k]];
                if (nx < 0) st = pda_step(p, s, v->blob[k], &nx);
                s = nx;
            }
            if (s && v->tok_off[t] < v->tok_off[t + 1]) m->bits[t >> 5] |= 1u << (t & 31);
        }
    }
    bool accept = p->st[m->state]->accept;
    pthread_mutex_unlock(&g->mu);
    if (st) return st;
    if (accept)
        for (size_t i = 0; i < m->n_eos; i++) m->bits[m->eos[i] >> 5] |= 1u << (m->eos[i] & 31);
    *bits = m->bits;
    return LMC_OK;
}

bool lmc_matcher_accepting(const lmc_matcher *m) {
    pthread_mutex_lock(&m->g->mu);
    bool a = m->g->pda->st[m->state]->accept;
    pthread_mutex_unlock(&m->g->mu);
    return a;
}

lmc_status lmc_grammar_match_bytes(lmc_grammar *g, const char *text, size_t len, bool *complete,
                                   bool *prefix) {
    pthread_mutex_lock(&g->mu);
    lmc_status st = ensure_pda(g);
    int32_t s = 1;
    for (size_t i = 0; !st && i < len && s; i++) st = pda_step(g->pda, s, (unsigned char)text[i], &s);
    if (!st) {
        if (complete) *complete = s && g->pda->st[s]->accept;
        if (prefix) *prefix = s != 0;
    }
    pthread_mutex_unlock(&g->mu);
    return st;
}

void lmc_grammar_pda_free(lmc_grammar *g) {
    pda_free(g->pda);
    g->pda = NULL;
}

static lmc_status vi_build(const lmc_tokenizer *t, size_t vocab, void **out) {
    lmc_vocab_index *v = NULL;
    lmc_status st = lmc_vocab_index_build(t, vocab, &v);
    *out = v;
    return st;
}
static void vi_destroy(void *p) { lmc_vocab_index_free(p); }

lmc_status lmc_vocab_index_shared(const lmc_tokenizer *t, size_t model_vocab,
                                  const lmc_vocab_index **out) {
    void *p = NULL;
    lmc_status st = lmc_tokenizer_derived(t, model_vocab, vi_build, vi_destroy, &p);
    *out = p;
    return st;
}
