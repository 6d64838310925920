/* Containers, Unicode helpers and the PCRE2 pattern wrapper shared by the
 * tokenizer stages. */
#include "base/error.h"
#include "base/json.h"
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---------------------------------------------------------------- hashing */
uint64_t tk_hash(const void *p, size_t n) {
    const unsigned char *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xff51afd7ed558ccdull);
    while (n >= 8) {
        uint64_t k;
        memcpy(&k, s, 8);
        h = (h ^ (k * 0xc4ceb9fe1a85ec53ull)) * 0x100000001b3ull;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t k = 0;
    for (size_t i = 0; i < n; i++) k |= (uint64_t)s[i] << (8 * i);
    h = (h ^ (k * 0xc4ceb9fe1a85ec53ull)) * 0x100000001b3ull;
    h ^= h >> 32;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

/* A slot holds the entry index + 1 (low half) and the top half of the key's
 * hash, so a probe past another key rarely touches its entry or string. */
#define SLOT(h, idx) (((h) & 0xFFFFFFFF00000000ull) | (uint64_t)(idx))
#define SLOT_IDX(v) ((uint32_t)(v))
#define SLOT_TAG_MATCH(v, h) ((((v) ^ (h)) >> 32) == 0)

static bool strmap_resize(tk_strmap *m, size_t cap) {
    uint64_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return false;
    for (size_t i = 0; i < m->n; i++) {
        uint64_t h = tk_hash(m->ent[i].s, m->ent[i].len);
        size_t j = h & (cap - 1);
        while (slots[j]) j = (j + 1) & (cap - 1);
        slots[j] = SLOT(h, i + 1);
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return true;
}

static bool strmap_grow(tk_strmap *m) { return strmap_resize(m, m->cap ? m->cap * 2 : 64); }

bool tk_strmap_reserve(tk_strmap *m, size_t n) {
    size_t cap = m->cap ? m->cap : 64;
    while (cap < 2 * (m->n + n)) cap *= 2;
    if (cap != m->cap && !strmap_resize(m, cap)) return false;
    if (m->n + n > m->ent_cap) {
        tk_strent *ne = realloc(m->ent, (m->n + n) * sizeof *ne);
        if (!ne) return false;
        m->ent = ne;
        m->ent_cap = m->n + n;
    }
    return true;
}

bool tk_strmap_put(tk_strmap *m, const char *s, size_t len, int32_t val) {
    if ((m->n + 1) * 2 > m->cap && !strmap_grow(m)) return false;
    uint64_t h = tk_hash(s, len);
    size_t j = h & (m->cap - 1);
    while (m->slots[j]) {
        if (SLOT_TAG_MATCH(m->slots[j], h)) {
            tk_strent *e = &m->ent[SLOT_IDX(m->slots[j]) - 1];
            if (e->len == len && !memcmp(e->s, s, len)) {
                e->val = val;
                return true;
            }
        }
        j = (j + 1) & (m->cap - 1);
    }
    if (m->n == m->ent_cap) {
        size_t nc = m->ent_cap ? m->ent_cap * 2 : 64;
        tk_strent *ne = realloc(m->ent, nc * sizeof *ne);
        if (!ne) return false;
        m->ent = ne;
        m->ent_cap = nc;
    }
    m->ent[m->n] = (tk_strent){s, (uint32_t)len, val};
    m->slots[j] = SLOT(h, ++m->n);
    return true;
}

static int32_t strmap_get_h(const tk_strmap *m, const char *s, size_t len, uint64_t h) {
    size_t j = h & (m->cap - 1);
    while (m->slots[j]) {
        if (SLOT_TAG_MATCH(m->slots[j], h)) {
            const tk_strent *e = &m->ent[SLOT_IDX(m->slots[j]) - 1];
            if (e->len == len && !memcmp(e->s, s, len)) return e->val;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return -1;
}

int32_t tk_strmap_get(const tk_strmap *m, const char *s, size_t len) {
    return m->cap ? strmap_get_h(m, s, len, tk_hash(s, len)) : -1;
}

/* In groups of GET_MANY: every key's slot is requested from memory before
 * any is read, then each entry, then each string, so the cache misses of a
 * group overlap instead of following one another. */
#define GET_MANY 32
void tk_strmap_get_many(const tk_strmap *m, const char *const *s, const uint32_t *len, size_t n,
                        int32_t *out) {
    uint64_t h[GET_MANY];
    for (size_t base = 0; base < n; base += GET_MANY) {
        size_t k = n - base < GET_MANY ? n - base : GET_MANY;
        if (!m->cap) {
            for (size_t i = 0; i < k; i++) out[base + i] = -1;
            continue;
        }
        for (size_t i = 0; i < k; i++) {
            h[i] = tk_hash(s[base + i], len[base + i]);
            __builtin_prefetch(&m->slots[h[i] & (m->cap - 1)]);
        }
        for (size_t i = 0; i < k; i++) {
            uint64_t v = m->slots[h[i] & (m->cap - 1)];
            if (v && SLOT_TAG_MATCH(v, h[i])) __builtin_prefetch(&m->ent[SLOT_IDX(v) - 1]);
        }
        for (size_t i = 0; i < k; i++) {
            uint64_t v = m->slots[h[i] & (m->cap - 1)];
            if (v && SLOT_TAG_MATCH(v, h[i])) __builtin_prefetch(m->ent[SLOT_IDX(v) - 1].s);
        }
        for (size_t i = 0; i < k; i++)
            out[base + i] = strmap_get_h(m, s[base + i], len[base + i], h[i]);
    }
}

void tk_strmap_free(tk_strmap *m) {
    free(m->slots);
    free(m->ent);
    memset(m, 0, sizeof *m);
}

static size_t pair_slot(uint64_t key, size_t cap) {
    return tk_hash(&key, sizeof key) & (cap - 1);
}

static bool pairmap_resize(tk_pairmap *m, size_t cap) {
    uint64_t *k = malloc(cap * sizeof *k);
    uint32_t *r = malloc(cap * sizeof *r);
    int32_t *v = malloc(cap * sizeof *v);
    if (!k || !r || !v) {
        free(k), free(r), free(v);
        return false;
    }
    memset(k, 0xff, cap * sizeof *k);
    for (size_t i = 0; i < m->cap; i++) {
        if (m->keys[i] == UINT64_MAX) continue;
        size_t j = pair_slot(m->keys[i], cap);
        while (k[j] != UINT64_MAX) j = (j + 1) & (cap - 1);
        k[j] = m->keys[i], r[j] = m->rank[i], v[j] = m->id[i];
    }
    free(m->keys), free(m->rank), free(m->id);
    m->keys = k, m->rank = r, m->id = v, m->cap = cap;
    return true;
}

void tk_pairmap_prefetch(const tk_pairmap *m, uint64_t key) {
    if (!m->cap) return;
    size_t j = pair_slot(key, m->cap);
    __builtin_prefetch(&m->keys[j], 1);
    __builtin_prefetch(&m->rank[j], 1);
    __builtin_prefetch(&m->id[j], 1);
}

bool tk_pairmap_reserve(tk_pairmap *m, size_t n) {
    size_t cap = m->cap ? m->cap : 1024;
    while (cap < 2 * (m->n + n)) cap *= 2;
    return cap == m->cap || pairmap_resize(m, cap);
}

bool tk_pairmap_put(tk_pairmap *m, uint64_t key, uint32_t rank, int32_t id) {
    if ((m->n + 1) * 2 > m->cap && !pairmap_resize(m, m->cap ? m->cap * 2 : 1024))
        return false;
    size_t j = pair_slot(key, m->cap);
    while (m->keys[j] != UINT64_MAX && m->keys[j] != key) j = (j + 1) & (m->cap - 1);
    if (m->keys[j] == UINT64_MAX) m->n++;
    m->keys[j] = key, m->rank[j] = rank, m->id[j] = id;
    return true;
}

bool tk_pairmap_get(const tk_pairmap *m, uint64_t key, uint32_t *rank, int32_t *id) {
    if (!m->cap) return false;
    size_t j = pair_slot(key, m->cap);
    while (m->keys[j] != UINT64_MAX) {
        if (m->keys[j] == key) {
            *rank = m->rank[j];
            *id = m->id[j];
            return true;
        }
        j = (j + 1) & (m->cap - 1);
    }
    return false;
}

void tk_pairmap_free(tk_pairmap *m) {
    free(m->keys), free(m->rank), free(m->id);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ arena */
struct tk_block {
    tk_block *next;
    size_t used, cap;
    max_align_t data[];
};

char *tk_arena_alloc(tk_arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    tk_block *b = a->head;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > 60000 ? n : 60000;
        b = malloc(sizeof *b + cap);
        if (!b) return NULL;
        b->next = a->head;
        b->used = 0;
        b->cap = cap;
        a->head = b;
    }
    char *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

char *tk_arena_dup(tk_arena *a, const char *s, size_t n) {
    char *p = tk_arena_alloc(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void tk_arena_reset(tk_arena *a) {
    /* Keep the most recent block for reuse; drop the rest. */
    if (!a->head) return;
    tk_block *keep = a->head, *b = keep->next;
    while (b) {
        tk_block *n = b->next;
        free(b);
        b = n;
    }
    keep->next = NULL;
    keep->used = 0;
    if (keep->cap > (1u << 20)) { /* do not hold on to a huge one */
        free(keep);
        a->head = NULL;
    }
}

void tk_arena_free(tk_arena *a) {
    while (a->head) {
        tk_block *n = a->head->next;
        free(a->head);
        a->head = n;
    }
}

bool tk_ids_push(tk_ids *x, int32_t id) { return tk_ids_append(x, &id, 1); }

bool tk_ids_append(tk_ids *x, const int32_t *ids, size_t n) {
    if (x->n + n > x->cap) {
        size_t cap = x->cap ? x->cap : 64;
        while (cap < x->n + n) cap *= 2;
        int32_t *v = realloc(x->v, cap * sizeof *v);
        if (!v) return false;
        x->v = v;
        x->cap = cap;
    }
    if (n) memcpy(x->v + x->n, ids, n * sizeof *ids);
    x->n += n;
    return true;
}

bool tk_pieces_push(tk_pieces *x, tk_piece p) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 32;
        tk_piece *v = realloc(x->v, cap * sizeof *v);
        if (!v) return false;
        x->v = v;
        x->cap = cap;
    }
    x->v[x->n++] = p;
    return true;
}

/* ---------------------------------------------------------------- unicode */
int tk_utf8_dec(const char *s, size_t len, uint32_t *cp) {
    const unsigned char *u = (const unsigned char *)s;
    if (u[0] < 0x80 || len < 2) {
        *cp = u[0];
        return 1;
    }
    if (u[0] < 0xE0) {
        *cp = ((uint32_t)(u[0] & 0x1F) << 6) | (u[1] & 0x3F);
        return 2;
    }
    if (u[0] < 0xF0 || len < 4) {
        if (len < 3) {
            *cp = u[0];
            return 1;
        }
        *cp = ((uint32_t)(u[0] & 0x0F) << 12) | ((uint32_t)(u[1] & 0x3F) << 6) | (u[2] & 0x3F);
        return 3;
    }
    *cp = ((uint32_t)(u[0] & 0x07) << 18) | ((uint32_t)(u[1] & 0x3F) << 12) |
          ((uint32_t)(u[2] & 0x3F) << 6) | (u[3] & 0x3F);
    return 4;
}

int tk_utf8_enc(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Length of the well-formed sequence at s (0 if ill-formed); *sub gets the
 * length of the maximal ill-formed prefix to replace by one U+FFFD. */
static size_t utf8_seq(const unsigned char *s, size_t len, size_t *sub) {
    unsigned char c = s[0];
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) need = 1;
    else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else {
        *sub = 1;
        return 0;
    }
    size_t i = 1;
    for (; i <= need; i++) {
        if (i >= len) break;
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
    }
    if (i == need + 1) return i;
    *sub = i;
    return 0;
}

bool tk_utf8_valid(const char *s, size_t len, size_t *bad_at) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < len) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t sub, n = utf8_seq(u + i, len - i, &sub);
        if (!n) {
            if (bad_at) *bad_at = i;
            return false;
        }
        i += n;
    }
    return true;
}

bool tk_utf8_lossy(const char *s, size_t len, lmc_buf *out) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < len) {
        size_t sub = 0, n = u[i] < 0x80 ? 1 : utf8_seq(u + i, len - i, &sub);
        if (n) {
            i += n;
            continue;
        }
        if (!lmc_buf_append(out, s + run, i - run) || !lmc_buf_append(out, "\xEF\xBF\xBD", 3))
            return false;
        i += sub;
        run = i;
    }
    return lmc_buf_append(out, s + run, len - run);
}

bool tk_is_ws(uint32_t c) {
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

bool tk_is_punct(uint32_t c) {
    if (c < 128)
        return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
               (c >= 123 && c <= 126);
    switch (utf8proc_category((utf8proc_int32_t)c)) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        return true;
    default:
        return false;
    }
}

bool tk_is_numeric(uint32_t c) {
    if (c < 128) return c >= '0' && c <= '9';
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return k == UTF8PROC_CATEGORY_ND || k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

bool tk_is_alnum(uint32_t c) {
    if (c < 128) return (c | 32) >= 'a' && (c | 32) <= 'z' ? true : (c >= '0' && c <= '9');
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || k == UTF8PROC_CATEGORY_ND ||
           k == UTF8PROC_CATEGORY_NL || k == UTF8PROC_CATEGORY_NO;
}

/* ------------------------------------------------------------ json fields */
bool tk_json_flag(json_object *o, const char *key, bool def) {
    json_object *v = lmc_json_get(o, key);
    return v ? json_object_get_boolean(v) : def;
}

lmc_status tk_load_list(json_object *o, const char *key, const char *where, size_t size,
                        tk_item_loader load, void **items, size_t *n) {
    json_object *a = lmc_json_get(o, key);
    if (!json_object_is_type(a, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s.%s: missing or not an array", where, key);
    size_t cnt = json_object_array_length(a);
    char *v = calloc(cnt ? cnt : 1, size);
    *items = v;
    if (!v) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    char sub[256];
    for (size_t i = 0; i < cnt; i++) {
        snprintf(sub, sizeof sub, "%s.%s[%zu]", where, key, i);
        lmc_status st = load(v + i * size, json_object_array_get_idx(a, i), sub);
        *n = i + 1;
        if (st) return st;
    }
    return LMC_OK;
}

/* ---------------------------------------------------------------- pattern */
lmc_status tk_pattern_load(tk_pattern *p, json_object *o, const char *where) {
    memset(p, 0, sizeof *p);
    json_object *v;
    if (!o || !json_object_is_type(o, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s.pattern: missing or not an object", where);
    if (json_object_object_get_ex(o, "String", &v) && json_object_is_type(v, json_type_string)) {
        size_t n = (size_t)json_object_get_string_len(v);
        p->literal = malloc(n + 1);
        if (!p->literal) return lmc_err(LMC_ERR_NOMEM, "%s.pattern: out of memory", where);
        memcpy(p->literal, json_object_get_string(v), n + 1);
        p->literal_len = n;
        return LMC_OK;
    }
    if (!json_object_object_get_ex(o, "Regex", &v) || !json_object_is_type(v, json_type_string))
        return lmc_err(LMC_ERR_FORMAT, "%s.pattern: expected {\"String\": ...} or {\"Regex\": ...}",
                       where);
    int code;
    PCRE2_SIZE off;
    p->code = pcre2_compile((PCRE2_SPTR)json_object_get_string(v),
                            (PCRE2_SIZE)json_object_get_string_len(v), PCRE2_UTF | PCRE2_UCP,
                            &code, &off, NULL);
    if (!p->code) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(code, msg, sizeof msg);
        return lmc_err(LMC_ERR_FORMAT, "%s.pattern.Regex: invalid regex at offset %zu: %s", where,
                       (size_t)off, (const char *)msg);
    }
    p->jit = pcre2_jit_compile(p->code, PCRE2_JIT_COMPLETE) == 0; /* else interpreted */
    lmc_buf w = {0};
    if (!lmc_buf_printf(&w, "%s.pattern.Regex \"%.80s%s\"", where, json_object_get_string(v),
                        json_object_get_string_len(v) > 80 ? "..." : ""))
        return lmc_err(LMC_ERR_NOMEM, "%s.pattern: out of memory", where);
    p->where = w.p;
    return LMC_OK;
}

void tk_pattern_free(tk_pattern *p) {
    if (p->code) pcre2_code_free(p->code);
    free(p->literal);
    free(p->where);
    memset(p, 0, sizeof *p);
}

int tk_pattern_find(const tk_pattern *p, pcre2_match_data *md, const char *s, size_t len,
                    size_t from, size_t *ms, size_t *me, lmc_status *err) {
    if (!p->code) {
        if (!p->literal_len || from >= len) return 0;
        const char *f = memmem(s + from, len - from, p->literal, p->literal_len);
        if (!f) return 0;
        *ms = (size_t)(f - s);
        *me = *ms + p->literal_len;
        return 1;
    }
    if (from > len) return 0;
    int rc = p->jit ? pcre2_jit_match(p->code, (PCRE2_SPTR)s, len, from, 0, md, NULL)
                    : PCRE2_ERROR_JIT_STACKLIMIT;
    if (rc < 0 && rc != PCRE2_ERROR_NOMATCH) /* no JIT, or its stack ran out: interpret */
        rc = pcre2_match(p->code, (PCRE2_SPTR)s, len, from, PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, md,
                         NULL);
    if (rc == PCRE2_ERROR_NOMATCH) return 0;
    if (rc < 0) {
        PCRE2_UCHAR msg[160];
        pcre2_get_error_message(rc, msg, sizeof msg);
        *err = lmc_err(LMC_ERR_LIMIT, "%s: matching %zu bytes of input at offset %zu failed: %s",
                       p->where ? p->where : "regex", len, from, (const char *)msg);
        return -1;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    *ms = ov[0];
    *me = ov[1];
    return 1;
}

/* ------------------------------------------------------------------- trie */
typedef struct {
    int32_t first_child, next_sibling, idx;
    unsigned char byte;
} trie_node;
struct tk_trie {
    trie_node *n;
    size_t len, cap;
    uint64_t first[4];
};

tk_trie *tk_trie_new(void) {
    tk_trie *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->n = malloc(64 * sizeof *t->n);
    if (!t->n) {
        free(t);
        return NULL;
    }
    t->cap = 64;
    t->len = 1;
    t->n[0] = (trie_node){-1, -1, -1, 0};
    return t;
}

bool tk_trie_add(tk_trie *t, const char *s, size_t len, int32_t idx) {
    if (!len) return true;
    t->first[(unsigned char)s[0] >> 6] |= 1ull << ((unsigned char)s[0] & 63);
    int32_t cur = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t c = t->n[cur].first_child;
        while (c >= 0 && t->n[c].byte != b) c = t->n[c].next_sibling;
        if (c < 0) {
            if (t->len == t->cap) {
                trie_node *nn = realloc(t->n, t->cap * 2 * sizeof *nn);
                if (!nn) return false;
                t->n = nn;
                t->cap *= 2;
            }
            c = (int32_t)t->len++;
            t->n[c] = (trie_node){-1, t->n[cur].first_child, -1, b};
            t->n[cur].first_child = c;
        }
        cur = c;
    }
    if (t->n[cur].idx < 0) t->n[cur].idx = idx; /* first registration wins */
    return true;
}

bool tk_trie_first_byte(const tk_trie *t, unsigned char b) {
    return (t->first[b >> 6] >> (b & 63)) & 1;
}

int32_t tk_trie_longest(const tk_trie *t, const char *s, size_t len, size_t *mlen) {
    int32_t cur = 0, best = -1;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)s[i];
        int32_t c = t->n[cur].first_child;
        while (c >= 0 && t->n[c].byte != b) c = t->n[c].next_sibling;
        if (c < 0) break;
        cur = c;
        if (t->n[cur].idx >= 0) {
            best = t->n[cur].idx;
            *mlen = i + 1;
        }
    }
    return best;
}

void tk_trie_free(tk_trie *t) {
    if (!t) return;
    free(t->n);
    free(t);
}
