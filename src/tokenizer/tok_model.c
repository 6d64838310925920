/* Tokenizer models ("model" field): BPE (merges applied by rank through a
 * priority queue, with a per-word cache), WordPiece, Unigram and WordLevel. */
#include "base/error.h"
#include "base/json.h"
#include "tok_internal.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define CACHE_MAX_ENTRIES 200000
#define CACHE_MAX_WORD 256

struct tk_cache {
    pthread_mutex_t mu;
    tk_strmap map; /* word -> index into ent */
    struct {
        const int32_t *ids;
        uint32_t n;
    } *ent;
    size_t n;
    tk_arena arena;
};

/* `s` must stay valid as long as the model (it lives in m->strings). */
static lmc_status set_token(tk_model *m, int64_t id, const char *s, size_t len,
                            const char *where) {
    if (id < 0 || id >= TK_MAX_ID)
        return lmc_err(id < 0 ? LMC_ERR_FORMAT : LMC_ERR_LIMIT,
                       "%s: token id %lld out of range (0..%lld)", where, (long long)id,
                       (long long)TK_MAX_ID - 1);
    if ((size_t)id >= m->tokens_cap) {
        size_t n = m->tokens_cap ? m->tokens_cap : 1024;
        while (n <= (size_t)id) n *= 2;
        char **t = realloc(m->tokens, n * sizeof *t);
        if (!t) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
        memset(t + m->tokens_cap, 0, (n - m->tokens_cap) * sizeof *t);
        m->tokens = t;
        uint32_t *l = realloc(m->token_lens, n * sizeof *l);
        if (!l) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
        m->token_lens = l;
        m->tokens_cap = n;
    }
    if ((size_t)id >= m->n_tokens) m->n_tokens = (size_t)id + 1;
    if (m->tokens[id]) return LMC_OK; /* first name for an id wins for id -> token */
    m->tokens[id] = (char *)s;
    m->token_lens[id] = (uint32_t)len;
    return LMC_OK;
}

/* {"token": id, ...}, captured by tok_json.c in file order. A key given
 * twice keeps its last id, as a JSON object does. */
static lmc_status load_vocab_map(tk_model *m, const tk_json_doc *d, const char *where) {
    if (!d->has_vocab)
        return lmc_err(LMC_ERR_FORMAT, "%s.vocab: missing or not an object", where);
    const tk_vocab_ent *v = d->vocab;
    for (size_t i = 0; i < d->n_vocab; i++)
        if (!v[i].is_int)
            return lmc_err(LMC_ERR_FORMAT, "%s.vocab[\"%s\"]: id is not an integer", where,
                           v[i].s);
    if (!tk_strmap_reserve(&m->vocab, d->n_vocab))
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    /* Usually every key is new: one insertion each, keys pointing at the
     * arena. Names sharing an id stay in the map as aliases. */
    for (size_t i = 0; i < d->n_vocab; i++)
        if (!tk_strmap_put(&m->vocab, v[i].s, v[i].len, (int32_t)v[i].id))
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    if (m->vocab.n == d->n_vocab) {
        for (size_t i = 0; i < d->n_vocab; i++) {
            lmc_status st = set_token(m, v[i].id, v[i].s, v[i].len, where);
            if (st) return st;
        }
        return LMC_OK;
    }
    /* A key given twice: map each key to its last entry, then ids. */
    for (size_t i = 0; i < d->n_vocab; i++)
        if (!tk_strmap_put(&m->vocab, v[i].s, v[i].len, (int32_t)i))
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    for (size_t i = 0; i < d->n_vocab; i++) {
        if (tk_strmap_get(&m->vocab, v[i].s, v[i].len) != (int32_t)i) continue;
        lmc_status st = set_token(m, v[i].id, v[i].s, v[i].len, where);
        if (st) return st;
    }
    /* Keys point at stable strings (the arena); a name sharing its id with
     * another stays in the map as an alias. */
    for (size_t i = 0; i < d->n_vocab; i++)
        if (tk_strmap_get(&m->vocab, v[i].s, v[i].len) == (int32_t)i &&
            !tk_strmap_put(&m->vocab, v[i].s, v[i].len, (int32_t)v[i].id))
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    return LMC_OK;
}

static lmc_status load_unk(tk_model *m, json_object *o, const char *where, bool required) {
    const char *u = lmc_json_str(o, "unk_token", NULL);
    m->unk_id = -1;
    if (!u) {
        if (required) return lmc_err(LMC_ERR_FORMAT, "%s.unk_token: missing", where);
        return LMC_OK;
    }
    m->unk_id = tk_strmap_get(&m->vocab, u, strlen(u));
    if (m->unk_id < 0)
        return lmc_err(LMC_ERR_FORMAT, "%s.unk_token: \"%s\" is not in the vocab", where, u);
    return LMC_OK;
}

/* Ids of the "<0xXX>" byte tokens used by byte_fallback (-1 when absent). */
static void find_byte_ids(tk_model *m) {
    for (int b = 0; b < 256; b++) {
        char t[8];
        snprintf(t, sizeof t, "<0x%02X>", b);
        m->byte_ids[b] = tk_strmap_get(&m->vocab, t, 6);
    }
}

#define MERGE_BLOCK 64

/* Merges [base, base + k): both sides of every merge are looked up, then
 * every merged token, each for the whole block at once (tk_strmap_get_many
 * overlaps their cache misses); the first bad entry in file order is the
 * one reported. */
static lmc_status merge_block(tk_model *m, const tk_merge_ent *e, size_t base, size_t k,
                              lmc_buf *joined, const char *where) {
    const char *side[2 * MERGE_BLOCK], *merged[MERGE_BLOCK];
    uint32_t side_len[2 * MERGE_BLOCK], merged_len[MERGE_BLOCK];
    int32_t side_id[2 * MERGE_BLOCK], merged_id[MERGE_BLOCK];
    size_t off[MERGE_BLOCK], plen = m->prefix ? strlen(m->prefix) : 0;
    bool malformed[MERGE_BLOCK];
    for (size_t i = 0; i < k; i++) {
        const char *a = e[i].a, *b = e[i].b, *sp = NULL;
        size_t al = e[i].al, bl = e[i].bl;
        if (e[i].kind == TK_MERGE_STRING && (sp = strchr(a, ' ')) && sp != a && sp[1])
            al = (size_t)(sp - a), b = sp + 1, bl = strlen(b);
        malformed[i] = e[i].kind == TK_MERGE_INVALID || (e[i].kind == TK_MERGE_STRING && !b);
        side[2 * i] = malformed[i] ? "" : a, side_len[2 * i] = malformed[i] ? 0 : (uint32_t)al;
        side[2 * i + 1] = malformed[i] ? "" : b;
        side_len[2 * i + 1] = malformed[i] ? 0 : (uint32_t)bl;
    }
    tk_strmap_get_many(&m->vocab, side, side_len, 2 * k, side_id);
    joined->len = 0;
    for (size_t i = 0; i < k; i++) {
        off[i] = joined->len, merged_len[i] = 0;
        if (malformed[i] || side_id[2 * i] < 0 || side_id[2 * i + 1] < 0) continue;
        const char *b = side[2 * i + 1];
        size_t bl = side_len[2 * i + 1];
        size_t skip = (plen && bl >= plen && !memcmp(b, m->prefix, plen)) ? plen : 0;
        if (!lmc_buf_append(joined, side[2 * i], side_len[2 * i]) ||
            !lmc_buf_append(joined, b + skip, bl - skip))
            return lmc_err(LMC_ERR_NOMEM, "%s.merges: out of memory", where);
        merged_len[i] = (uint32_t)(joined->len - off[i]);
    }
    for (size_t i = 0; i < k; i++) merged[i] = joined->p ? joined->p + off[i] : "";
    tk_strmap_get_many(&m->vocab, merged, merged_len, k, merged_id);
    for (size_t i = 0; i < k; i++)
        tk_pairmap_prefetch(&m->merges, ((uint64_t)(uint32_t)side_id[2 * i] << 32) |
                                            (uint32_t)side_id[2 * i + 1]);
    for (size_t i = 0; i < k; i++) {
        int32_t ia = side_id[2 * i], ib = side_id[2 * i + 1];
        if (malformed[i] && e[i].kind == TK_MERGE_STRING)
            return lmc_err(LMC_ERR_FORMAT, "%s.merges[%zu]: expected \"left right\", got \"%s\"",
                           where, base + i, e[i].a);
        if (malformed[i])
            return lmc_err(LMC_ERR_FORMAT, "%s.merges[%zu]: expected a string or a pair of strings",
                           where, base + i);
        if (ia < 0 || ib < 0)
            return lmc_err(LMC_ERR_FORMAT, "%s.merges[%zu]: token \"%.*s\" is not in the vocab",
                           where, base + i, (int)side_len[2 * i + (ia >= 0)],
                           side[2 * i + (ia >= 0)]);
        if (merged_id[i] < 0)
            return lmc_err(LMC_ERR_FORMAT,
                           "%s.merges[%zu]: merged token \"%.*s\" is not in the vocab", where,
                           base + i, (int)merged_len[i], merged[i]);
        if (!tk_pairmap_put(&m->merges, ((uint64_t)(uint32_t)ia << 32) | (uint32_t)ib,
                            (uint32_t)(base + i), merged_id[i]))
            return lmc_err(LMC_ERR_NOMEM, "%s.merges: out of memory", where);
    }
    return LMC_OK;
}

static lmc_status load_bpe(tk_model *m, json_object *o, const tk_json_doc *d,
                           const char *where) {
    lmc_status st = load_vocab_map(m, d, where);
    if (st) return st;
    const char *u = lmc_json_str(o, "unk_token", NULL);
    m->unk_id = u ? tk_strmap_get(&m->vocab, u, strlen(u)) : -1;
    if (u && m->unk_id < 0) m->unk_id = -2; /* named but absent: tokenizing an unknown char fails */
    const char *p = lmc_json_str(o, "continuing_subword_prefix", NULL);
    const char *s = lmc_json_str(o, "end_of_word_suffix", NULL);
    if (p && *p && !(m->prefix = strdup(p))) return lmc_err(LMC_ERR_NOMEM, "%s", where);
    if (s && *s && !(m->suffix = strdup(s))) return lmc_err(LMC_ERR_NOMEM, "%s", where);
    m->fuse_unk = tk_json_flag(o, "fuse_unk", false);
    m->byte_fallback = tk_json_flag(o, "byte_fallback", false);
    m->ignore_merges = tk_json_flag(o, "ignore_merges", false);
    json_object *dr;
    if (json_object_object_get_ex(o, "dropout", &dr) && dr && json_object_get_double(dr) > 0)
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s.dropout: BPE dropout is not supported", where);
    find_byte_ids(m);
    if (!d->has_merges)
        return lmc_err(LMC_ERR_FORMAT, "%s.merges: missing or not an array", where);
    if (!tk_pairmap_reserve(&m->merges, d->n_merges))
        return lmc_err(LMC_ERR_NOMEM, "%s.merges: out of memory", where);
    lmc_buf joined = {0};
    for (size_t base = 0; base < d->n_merges && !st; base += MERGE_BLOCK)
        st = merge_block(m, d->merges + base, base,
                         d->n_merges - base < MERGE_BLOCK ? d->n_merges - base : MERGE_BLOCK,
                         &joined, where);
    lmc_buf_free(&joined);
    return st;
}

static lmc_status load_unigram(tk_model *m, json_object *o, const char *where) {
    json_object *v;
    if (!json_object_object_get_ex(o, "vocab", &v) || !json_object_is_type(v, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s.vocab: missing or not an array", where);
    size_t n = json_object_array_length(v);
    m->scores = malloc((n ? n : 1) * sizeof *m->scores);
    if (!m->scores) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    m->min_score = INFINITY;
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(v, i), *t, *s;
        if (!json_object_is_type(e, json_type_array) || json_object_array_length(e) != 2 ||
            !json_object_is_type(t = json_object_array_get_idx(e, 0), json_type_string) ||
            !((s = json_object_array_get_idx(e, 1)) &&
              (json_object_is_type(s, json_type_double) || json_object_is_type(s, json_type_int))))
            return lmc_err(LMC_ERR_FORMAT, "%s.vocab[%zu]: expected [\"piece\", score]", where, i);
        size_t tl = (size_t)json_object_get_string_len(t);
        const char *piece = tk_arena_dup(&m->strings, json_object_get_string(t), tl);
        if (!piece) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
        lmc_status st = set_token(m, (int64_t)i, piece, tl, where);
        if (st) return st;
        m->scores[i] = json_object_get_double(s);
        if (m->scores[i] < m->min_score) m->min_score = m->scores[i];
        size_t l = (size_t)json_object_get_string_len(t);
        if (l > m->max_piece_len) m->max_piece_len = l;
        if (tk_strmap_get(&m->vocab, m->tokens[i], l) < 0 &&
            !tk_strmap_put(&m->vocab, m->tokens[i], l, (int32_t)i))
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    }
    m->unk_id = -1;
    json_object *u;
    if (json_object_object_get_ex(o, "unk_id", &u) && u) {
        int64_t id = json_object_get_int64(u);
        if (id < 0 || (size_t)id >= n)
            return lmc_err(LMC_ERR_FORMAT, "%s.unk_id: %lld is outside the vocab", where,
                           (long long)id);
        m->unk_id = (int32_t)id;
    }
    m->byte_fallback = tk_json_flag(o, "byte_fallback", false);
    m->fuse_unk = true;
    find_byte_ids(m);
    return LMC_OK;
}

static lmc_status model_load(tk_model *m, json_object *o, const tk_json_doc *d,
                             const char *where);

lmc_status tk_model_load(tk_model *m, json_object *o, tk_json_doc *d, const char *where) {
    memset(m, 0, sizeof *m);
    m->unk_id = -1;
    m->strings = d->strings; /* the captured strings become the model's */
    memset(&d->strings, 0, sizeof d->strings);
    m->cache = calloc(1, sizeof *m->cache);
    if (!m->cache) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    pthread_mutex_init(&m->cache->mu, NULL);
    return model_load(m, o, d, where);
}

static lmc_status model_load(tk_model *m, json_object *o, const tk_json_doc *d,
                             const char *where) {
    if (!o || !json_object_is_type(o, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: missing or not an object", where);
    const char *t = lmc_json_str(o, "type", NULL);
    json_object *tmp;
    if (!t) { /* older files omit the type; infer it from the fields */
        if (d->has_merges || json_object_object_get_ex(o, "merges", &tmp)) t = "BPE";
        else if (json_object_object_get_ex(o, "continuing_subword_prefix", &tmp)) t = "WordPiece";
        else if (json_object_object_get_ex(o, "unk_id", &tmp)) t = "Unigram";
        else return lmc_err(LMC_ERR_FORMAT, "%s.type: missing", where);
    }
    if (!strcmp(t, "BPE")) {
        m->type = TK_MODEL_BPE;
        return load_bpe(m, o, d, where);
    }
    if (!strcmp(t, "WordPiece")) {
        m->type = TK_MODEL_WORDPIECE;
        lmc_status st = load_vocab_map(m, d, where);
        if (st) return st;
        const char *p = lmc_json_str(o, "continuing_subword_prefix", NULL);
        if (!(m->prefix = strdup(p ? p : "##"))) return lmc_err(LMC_ERR_NOMEM, "%s", where);
        json_object *mx;
        m->max_chars = 100;
        if (json_object_object_get_ex(o, "max_input_chars_per_word", &mx) && mx)
            m->max_chars = (size_t)json_object_get_int64(mx);
        return load_unk(m, o, where, true);
    }
    if (!strcmp(t, "WordLevel")) {
        m->type = TK_MODEL_WORDLEVEL;
        lmc_status st = load_vocab_map(m, d, where);
        return st ? st : load_unk(m, o, where, false);
    }
    if (!strcmp(t, "Unigram")) {
        m->type = TK_MODEL_UNIGRAM;
        return load_unigram(m, o, where);
    }
    return lmc_err(LMC_ERR_UNSUPPORTED, "%s.type: unsupported model \"%s\"", where, t);
}

void tk_model_free(tk_model *m) {
    free(m->tokens);
    free(m->token_lens);
    tk_arena_free(&m->strings);
    tk_strmap_free(&m->vocab);
    tk_pairmap_free(&m->merges);
    free(m->prefix);
    free(m->suffix);
    free(m->scores);
    if (m->cache) {
        pthread_mutex_destroy(&m->cache->mu);
        tk_strmap_free(&m->cache->map);
        free(m->cache->ent);
        tk_arena_free(&m->cache->arena);
        free(m->cache);
    }
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------- BPE */
typedef struct {
    uint32_t rank, pos;
    int32_t id;
} merge_ent;

static bool merge_less(merge_ent a, merge_ent b) {
    return a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos;
}

typedef struct {
    merge_ent *v, *stack;
    size_t n, cap;
} heap;

static bool heap_push(heap *h, merge_ent e) {
    if (h->n == h->cap) {
        size_t cap = h->cap * 2;
        merge_ent *v = h->v;
        merge_ent *nv = malloc(cap * sizeof *nv);
        if (!nv) return false;
        memcpy(nv, v, h->n * sizeof *nv);
        if (v != h->stack) free(v);
        h->v = nv;
        h->cap = cap;
    }
    size_t i = h->n++;
    while (i && merge_less(e, h->v[(i - 1) / 2])) {
        h->v[i] = h->v[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    h->v[i] = e;
    return true;
}

static merge_ent heap_pop(heap *h) {
    merge_ent top = h->v[0], last = h->v[--h->n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        merge_ent cur = last;
        if (l < h->n && merge_less(h->v[l], cur)) m = l, cur = h->v[l];
        if (r < h->n && merge_less(h->v[r], cur)) m = r;
        if (m == i) break;
        h->v[i] = h->v[m];
        i = m;
    }
    if (h->n) h->v[i] = last;
    return top;
}

typedef struct {
    int32_t id, prev, next;
    uint32_t len;
} sym;

static bool sym_add(sym **s, size_t *n, size_t *cap, sym *stack, int32_t id, uint32_t len) {
    if (*n == *cap) {
        size_t nc = *cap * 2;
        sym *ns = malloc(nc * sizeof *ns);
        if (!ns) return false;
        memcpy(ns, *s, *n * sizeof *ns);
        if (*s != stack) free(*s);
        *s = ns;
        *cap = nc;
    }
    (*s)[*n] = (sym){id, (int32_t)*n - 1, (int32_t)*n + 1, len};
    (*n)++;
    return true;
}

static lmc_status bpe_word(const tk_model *m, tk_ctx *c, const char *w, size_t len, tk_ids *out) {
    sym stack[128], *s = stack;
    size_t n = 0, cap = 128;
    merge_ent hstack[128];
    heap h = {hstack, hstack, 0, 128};
    lmc_status st = LMC_OK;
    int32_t unk = -1;
    uint32_t unk_len = 0;
    size_t plen = m->prefix ? strlen(m->prefix) : 0, slen = m->suffix ? strlen(m->suffix) : 0;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t k = (size_t)tk_utf8_dec(w + i, len - i, &cp);
        bool first = i == 0, last = i + k == len;
        const char *piece = w + i;
        size_t pl = k;
        char *tmp = NULL;
        if ((!first && plen) || (last && slen)) {
            tmp = tk_arena_alloc(&c->arena, k + plen + slen + 1);
            if (!tmp) goto nomem;
            pl = 0;
            if (!first && plen) memcpy(tmp, m->prefix, plen), pl = plen;
            memcpy(tmp + pl, w + i, k);
            pl += k;
            if (last && slen) memcpy(tmp + pl, m->suffix, slen), pl += slen;
            piece = tmp;
        }
        int32_t id = tk_strmap_get(&m->vocab, piece, pl);
        if (id >= 0) {
            if (unk >= 0) {
                if (!sym_add(&s, &n, &cap, stack, unk, unk_len)) goto nomem;
                unk = -1;
            }
            if (!sym_add(&s, &n, &cap, stack, id, (uint32_t)k)) goto nomem;
        } else {
            bool done = false;
            if (m->byte_fallback) {
                bool all = true;
                for (size_t j = 0; j < pl; j++) all &= m->byte_ids[(unsigned char)piece[j]] >= 0;
                if (all) {
                    for (size_t j = 0; j < pl; j++)
                        if (!sym_add(&s, &n, &cap, stack, m->byte_ids[(unsigned char)piece[j]], 1))
                            goto nomem;
                    done = true;
                }
            }
            if (!done && m->unk_id == -2) {
                st = lmc_err(LMC_ERR_FORMAT, "tokenizer: unk_token is not in the vocab");
                goto out;
            }
            if (!done && m->unk_id >= 0) {
                if (unk >= 0 && m->fuse_unk) unk_len += (uint32_t)k;
                else {
                    if (unk >= 0 && !sym_add(&s, &n, &cap, stack, unk, unk_len)) goto nomem;
                    unk = m->unk_id;
                    unk_len = (uint32_t)k;
                }
            }
        }
        i += k;
    }
    if (unk >= 0 && !sym_add(&s, &n, &cap, stack, unk, unk_len)) goto nomem;
    if (n) s[n - 1].next = -1;
    for (size_t i = 0; i + 1 < n; i++) {
        uint32_t r;
        int32_t nid;
        if (tk_pairmap_get(&m->merges, ((uint64_t)(uint32_t)s[i].id << 32) | (uint32_t)s[i + 1].id,
                           &r, &nid) &&
            !heap_push(&h, (merge_ent){r, (uint32_t)i, nid}))
            goto nomem;
    }
    while (h.n) {
        merge_ent top = heap_pop(&h);
        sym *cur = &s[top.pos];
        if (!cur->len || cur->next < 0) continue;
        sym *right = &s[cur->next];
        uint32_t r;
        int32_t nid;
        if (!tk_pairmap_get(&m->merges, ((uint64_t)(uint32_t)cur->id << 32) | (uint32_t)right->id,
                            &r, &nid) ||
            nid != top.id)
            continue;
        cur->id = top.id;
        cur->len += right->len;
        cur->next = right->next;
        right->len = 0;
        if (cur->next >= 0) s[cur->next].prev = (int32_t)top.pos;
        if (cur->prev >= 0 &&
            tk_pairmap_get(&m->merges,
                           ((uint64_t)(uint32_t)s[cur->prev].id << 32) | (uint32_t)cur->id, &r,
                           &nid) &&
            !heap_push(&h, (merge_ent){r, (uint32_t)cur->prev, nid}))
            goto nomem;
        cur = &s[top.pos];
        if (cur->next >= 0 &&
            tk_pairmap_get(&m->merges,
                           ((uint64_t)(uint32_t)cur->id << 32) | (uint32_t)s[cur->next].id, &r,
                           &nid) &&
            !heap_push(&h, (merge_ent){r, top.pos, nid}))
            goto nomem;
    }
    for (size_t i = 0; i < n; i++)
        if (s[i].len && !tk_ids_push(out, s[i].id)) goto nomem;
    goto out;
nomem:
    st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
out:
    if (s != stack) free(s);
    if (h.v != hstack) free(h.v);
    return st;
}

typedef lmc_status (*word_fn)(const tk_model *, tk_ctx *, const char *, size_t, tk_ids *);

/* Words repeat a lot: remember each short word's ids (models are pure). */
static lmc_status cached(const tk_model *m, tk_ctx *c, const char *w, size_t len, tk_ids *out,
                         word_fn fn) {
    tk_cache *ca = m->cache;
    bool cacheable = ca && len <= CACHE_MAX_WORD;
    if (cacheable) {
        pthread_mutex_lock(&ca->mu);
        int32_t e = tk_strmap_get(&ca->map, w, len);
        if (e >= 0) {
            bool ok = tk_ids_append(out, ca->ent[e].ids, ca->ent[e].n);
            pthread_mutex_unlock(&ca->mu);
            return ok ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
        }
        pthread_mutex_unlock(&ca->mu);
    }
    size_t before = out->n;
    lmc_status st = fn(m, c, w, len, out);
    if (st || !cacheable) return st;
    pthread_mutex_lock(&ca->mu);
    if (ca->n < CACHE_MAX_ENTRIES && tk_strmap_get(&ca->map, w, len) < 0) {
        size_t cnt = out->n - before;
        char *key = tk_arena_dup(&ca->arena, w, len);
        int32_t *ids = (int32_t *)tk_arena_alloc(&ca->arena, (cnt ? cnt : 1) * sizeof *ids);
        if (!(ca->n & (ca->n + 1)) || !ca->ent) { /* grow at powers of two */
            size_t nc = ca->n ? (ca->n + 1) * 2 : 64;
            void *ne = realloc(ca->ent, nc * sizeof *ca->ent);
            if (ne) ca->ent = ne;
            else key = NULL;
        }
        if (key && ids) {
            if (cnt) memcpy(ids, out->v + before, cnt * sizeof *ids);
            ca->ent[ca->n].ids = ids;
            ca->ent[ca->n].n = (uint32_t)cnt;
            if (tk_strmap_put(&ca->map, key, len, (int32_t)ca->n)) ca->n++;
        }
    }
    pthread_mutex_unlock(&ca->mu);
    return LMC_OK;
}

static lmc_status bpe(const tk_model *m, tk_ctx *c, const char *w, size_t len, tk_ids *out) {
    if (m->ignore_merges) {
        int32_t id = tk_strmap_get(&m->vocab, w, len);
        if (id >= 0) return tk_ids_push(out, id) ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "tokenizer");
    }
    return cached(m, c, w, len, out, bpe_word);
}

/* ------------------------------------------------------------- WordPiece */
static lmc_status wordpiece(const tk_model *m, tk_ctx *c, const char *w, size_t len,
                            tk_ids *out) {
    size_t chars = 0;
    for (size_t i = 0; i < len; i++) chars += ((unsigned char)w[i] & 0xC0) != 0x80;
    if (chars > m->max_chars) return tk_ids_push(out, m->unk_id) ? LMC_OK : LMC_ERR_NOMEM;
    size_t plen = strlen(m->prefix), mark = out->n;
    char *buf = tk_arena_alloc(&c->arena, len + plen + 1);
    if (!buf) return lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    size_t start = 0;
    while (start < len) {
        size_t end = len;
        int32_t found = -1;
        while (start < end) {
            size_t bl = 0;
            if (start > 0) memcpy(buf, m->prefix, plen), bl = plen;
            memcpy(buf + bl, w + start, end - start);
            bl += end - start;
            found = tk_strmap_get(&m->vocab, buf, bl);
            if (found >= 0) break;
            do end--;
            while (end > start && ((unsigned char)w[end] & 0xC0) == 0x80);
        }
        if (found < 0) {
            out->n = mark;
            return tk_ids_push(out, m->unk_id) ? LMC_OK : LMC_ERR_NOMEM;
        }
        if (!tk_ids_push(out, found)) return LMC_ERR_NOMEM;
        start = end;
    }
    return LMC_OK;
}

/* --------------------------------------------------------------- Unigram */
typedef struct {
    double score;
    int32_t id;
    int32_t start; /* -1: unreached */
} lattice_node;

static lmc_status unigram(const tk_model *m, tk_ctx *c, const char *w, size_t len, tk_ids *out) {
    if (!len) return LMC_OK;
    lattice_node *best = malloc((len + 1) * sizeof *best);
    if (!best) return lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i <= len; i++) best[i] = (lattice_node){0, 0, -1};
    const double unk_score = m->min_score - 10.0;
    for (size_t st = 0; st < len;) {
        uint32_t cp;
        size_t mb = (size_t)tk_utf8_dec(w + st, len - st, &cp);
        double base = best[st].score;
        bool single = false;
        size_t maxe = st + m->max_piece_len < len ? st + m->max_piece_len : len;
        for (size_t e = st + mb; e <= maxe;) {
            int32_t id = tk_strmap_get(&m->vocab, w + st, e - st);
            if (id >= 0) {
                double sc = base + m->scores[id];
                if (best[e].start < 0 || sc > best[e].score) best[e] = (lattice_node){sc, id, (int32_t)st};
                if (e - st == mb) single = true;
            }
            if (e >= len) break;
            e += (size_t)tk_utf8_dec(w + e, len - e, &cp);
        }
        if (!single) {
            double sc = base + unk_score;
            if (best[st + mb].start < 0 || sc > best[st + mb].score)
                best[st + mb] = (lattice_node){sc, m->unk_id >= 0 ? m->unk_id : 0, (int32_t)st};
        }
        st += mb;
    }
    /* Backtrack into (start, end) ranges, fusing consecutive unknowns. */
    size_t *rs = malloc((len + 1) * 2 * sizeof *rs), nr = 0;
    if (!rs) {
        free(best);
        return lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    }
    size_t end = len, unk_end = 0;
    bool in_unk = false;
    while (end > 0) {
        size_t st = (size_t)best[end].start;
        if (m->unk_id >= 0 && best[end].id == m->unk_id) {
            if (!in_unk) unk_end = end, in_unk = true;
        } else {
            if (in_unk) rs[2 * nr] = end, rs[2 * nr + 1] = unk_end, nr++, in_unk = false;
            rs[2 * nr] = st, rs[2 * nr + 1] = end, nr++;
        }
        end = st;
    }
    if (in_unk) rs[2 * nr] = 0, rs[2 * nr + 1] = unk_end, nr++;
    lmc_status status = LMC_OK;
    for (size_t k = nr; k-- > 0 && !status;) {
        size_t a = rs[2 * k], b = rs[2 * k + 1];
        int32_t id = tk_strmap_get(&m->vocab, w + a, b - a);
        if (id >= 0) {
            if (!tk_ids_push(out, id)) status = LMC_ERR_NOMEM;
            continue;
        }
        bool all = m->byte_fallback;
        for (size_t j = a; all && j < b; j++) all = m->byte_ids[(unsigned char)w[j]] >= 0;
        if (all) {
            for (size_t j = a; j < b && !status; j++)
                if (!tk_ids_push(out, m->byte_ids[(unsigned char)w[j]])) status = LMC_ERR_NOMEM;
            continue;
        }
        if (m->unk_id < 0)
            status = lmc_err(LMC_ERR_FORMAT, "tokenizer: Unigram model has no unk_id for \"%.*s\"",
                             (int)(b - a), w + a);
        else if (!tk_ids_push(out, m->unk_id))
            status = LMC_ERR_NOMEM;
    }
    free(rs);
    free(best);
    if (status == LMC_ERR_NOMEM) return lmc_err(status, "tokenizer: out of memory");
    return status;
}

lmc_status tk_model_tokenize(const tk_model *m, tk_ctx *c, const char *s, size_t len,
                             tk_ids *out) {
    if (!len) return LMC_OK;
    switch (m->type) {
    case TK_MODEL_BPE: return bpe(m, c, s, len, out);
    case TK_MODEL_WORDPIECE: {
        lmc_status st = cached(m, c, s, len, out, wordpiece);
        return st == LMC_ERR_NOMEM ? lmc_err(st, "tokenizer: out of memory") : st;
    }
    case TK_MODEL_UNIGRAM: return cached(m, c, s, len, out, unigram);
    case TK_MODEL_WORDLEVEL: {
        int32_t id = tk_strmap_get(&m->vocab, s, len);
        if (id < 0) id = m->unk_id;
        if (id < 0)
            return lmc_err(LMC_ERR_INVALID_ARG, "tokenizer: WordLevel has no token for \"%.*s\"",
                           (int)len, s);
        return tk_ids_push(out, id) ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    }
    }
    return LMC_OK;
}
