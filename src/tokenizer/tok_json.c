/* tokenizer.json, read in one streaming (SAX) pass with yajl. A large
 * vocabulary (150k-260k entries) would cost a tree node and a hash-table
 * entry per token in json-c, and the tokenizer copies it out again anyway;
 * so model.vocab (an object) and model.merges are captured straight into
 * flat arrays whose strings live in one arena, and only the rest of the
 * document (small: normalizer, pre-tokenizer, added tokens, ...) becomes a
 * json-c tree for the part loaders. Malformed entries are kept (marked) so
 * the model loader reports them with the same messages as ever. */
#include "base/error.h"
#include "base/file.h"
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#define MAX_DEPTH 128 /* as the json-c reader used for the other files */

typedef enum { CAP_NONE, CAP_VOCAB, CAP_MERGES } capture;

typedef struct {
    tk_json_doc *doc;
    json_object *stack[MAX_DEPTH];
    char *keys[MAX_DEPTH]; /* the pending key of each open object */
    int depth;
    capture cap;
    int level;      /* depth inside the captured container (0 = its entries) */
    int skip;       /* nesting of an invalid entry being skipped */
    const char *key; size_t key_len; /* vocab: the entry's key */
    tk_merge_ent pair;  /* merges: the pair being read */
    int pair_n;
    bool pair_ok;
    lmc_status st;
} builder;

static int nomem(builder *b) {
    b->st = lmc_err(LMC_ERR_NOMEM, "tokenizer.json: out of memory");
    return 0;
}

static bool grow(void **v, size_t *cap, size_t n, size_t size) {
    if (n < *cap) return true;
    size_t c = *cap ? *cap * 2 : 4096;
    void *p = realloc(*v, c * size);
    if (!p) return false;
    *v = p;
    *cap = c;
    return true;
}

static int vocab_push(builder *b, int64_t id, bool ok) {
    tk_json_doc *d = b->doc;
    if (!grow((void **)&d->vocab, &d->vocab_cap, d->n_vocab, sizeof *d->vocab)) return nomem(b);
    d->vocab[d->n_vocab++] = (tk_vocab_ent){b->key, (uint32_t)b->key_len, id, ok};
    return 1;
}

static int merge_push(builder *b, tk_merge_ent e) {
    tk_json_doc *d = b->doc;
    if (!grow((void **)&d->merges, &d->merges_cap, d->n_merges, sizeof *d->merges))
        return nomem(b);
    d->merges[d->n_merges++] = e;
    return 1;
}

/* A scalar or the start of a container inside a capture; `str` set for
 * strings. Returns the callback result. */
static int cap_value(builder *b, const char *str, size_t len, bool is_int, int64_t iv,
                     bool opens) {
    if (b->skip) {
        b->skip += opens;
        return 1;
    }
    if (b->cap == CAP_VOCAB) {
        b->skip = opens;
        return vocab_push(b, iv, is_int);
    }
    if (b->level == 0) { /* a merges entry */
        if (str) {
            char *s = tk_arena_dup(&b->doc->strings, str, len);
            return s ? merge_push(b, (tk_merge_ent){s, NULL, 0, 0, TK_MERGE_STRING}) : nomem(b);
        }
        b->skip = opens;
        return merge_push(b, (tk_merge_ent){NULL, NULL, 0, 0, TK_MERGE_INVALID});
    }
    /* inside a [left, right] pair */
    if (str && b->pair_n < 2) {
        char *s = tk_arena_dup(&b->doc->strings, str, len);
        if (!s) return nomem(b);
        if (b->pair_n++ == 0) b->pair.a = s, b->pair.al = (uint32_t)len;
        else b->pair.b = s, b->pair.bl = (uint32_t)len;
    } else {
        b->pair_ok = false;
        b->pair_n += !opens;
        b->skip = opens;
    }
    return 1;
}

/* Adds a tree value under the open container (or as the root). */
static int add(builder *b, json_object *v) {
    if (b->depth == 0) {
        json_object_put(b->doc->root);
        b->doc->root = v;
        return 1;
    }
    json_object *p = b->stack[b->depth - 1];
    if (json_object_is_type(p, json_type_array)) {
        if (json_object_array_add(p, v)) return json_object_put(v), nomem(b);
        return 1;
    }
    char *k = b->keys[b->depth - 1];
    if (json_object_object_add(p, k ? k : "", v)) return json_object_put(v), nomem(b);
    return 1;
}

static int on_scalar(builder *b, json_object *v) {
    if (!v) return nomem(b);
    return add(b, v);
}

static int cb_null(void *ctx) {
    builder *b = ctx;
    if (b->cap) return cap_value(b, NULL, 0, false, 0, false);
    return add(b, NULL);
}
static int cb_bool(void *ctx, int v) {
    builder *b = ctx;
    if (b->cap) return cap_value(b, NULL, 0, false, 0, false);
    return on_scalar(b, json_object_new_boolean(v));
}
static int cb_int(void *ctx, long long v) {
    builder *b = ctx;
    if (b->cap) return cap_value(b, NULL, 0, true, v, false);
    return on_scalar(b, json_object_new_int64(v));
}
static int cb_double(void *ctx, double v) {
    builder *b = ctx;
    if (b->cap) return cap_value(b, NULL, 0, false, 0, false);
    return on_scalar(b, json_object_new_double(v));
}
static int cb_string(void *ctx, const unsigned char *s, size_t len) {
    builder *b = ctx;
    if (b->cap) return cap_value(b, (const char *)s, len, false, 0, false);
    return on_scalar(b, json_object_new_string_len((const char *)s, (int)len));
}

/* model.vocab as an object and model.merges as an array are captured. */
static capture capture_at(const builder *b, bool is_map) {
    if (b->depth != 2 || !b->keys[0] || strcmp(b->keys[0], "model") || !b->keys[1] ||
        !json_object_is_type(b->stack[1], json_type_object))
        return CAP_NONE;
    if (is_map && !strcmp(b->keys[1], "vocab")) return CAP_VOCAB;
    if (!is_map && !strcmp(b->keys[1], "merges")) return CAP_MERGES;
    return CAP_NONE;
}

static int open_container(builder *b, bool is_map) {
    if (b->cap) {
        if (b->cap == CAP_MERGES && b->level == 0 && !is_map && !b->skip) {
            b->level = 1;
            b->pair = (tk_merge_ent){NULL, NULL, 0, 0, TK_MERGE_PAIR};
            b->pair_n = 0;
            b->pair_ok = true;
            return 1;
        }
        return cap_value(b, NULL, 0, false, 0, true);
    }
    capture c = capture_at(b, is_map);
    if (c) {
        tk_json_doc *d = b->doc;
        if (c == CAP_VOCAB) d->n_vocab = 0, d->has_vocab = true;
        else d->n_merges = 0, d->has_merges = true;
        b->cap = c;
        b->level = 0;
        return 1;
    }
    if (b->depth == MAX_DEPTH) {
        b->st = lmc_err(LMC_ERR_LIMIT, "tokenizer.json: nesting deeper than %d", MAX_DEPTH);
        return 0;
    }
    json_object *v = is_map ? json_object_new_object() : json_object_new_array();
    if (!v) return nomem(b);
    json_object_get(v); /* one reference for the parent, one while open */
    if (!add(b, v)) return json_object_put(v), 0;
    b->keys[b->depth] = NULL;
    b->stack[b->depth++] = v;
    return 1;
}

static int close_container(builder *b) {
    if (b->cap) {
        if (b->skip) {
            b->skip--;
            return 1;
        }
        if (b->cap == CAP_MERGES && b->level == 1) {
            b->level = 0;
            if (!b->pair_ok || b->pair_n != 2) b->pair.kind = TK_MERGE_INVALID;
            return merge_push(b, b->pair);
        }
        b->cap = CAP_NONE;
        return 1;
    }
    b->depth--;
    json_object_put(b->stack[b->depth]);
    free(b->keys[b->depth]);
    b->keys[b->depth] = NULL;
    return 1;
}

static int cb_start_map(void *ctx) { return open_container(ctx, true); }
static int cb_start_array(void *ctx) { return open_container(ctx, false); }
static int cb_end(void *ctx) { return close_container(ctx); }

static int cb_key(void *ctx, const unsigned char *s, size_t len) {
    builder *b = ctx;
    if (b->cap) {
        if (b->skip) return 1;
        char *k = tk_arena_dup(&b->doc->strings, (const char *)s, len);
        if (!k) return nomem(b);
        b->key = k;
        b->key_len = strlen(k); /* an object key ends at U+0000, as in json-c */
        return 1;
    }
    char *k = malloc(len + 1);
    if (!k) return nomem(b);
    memcpy(k, s, len);
    k[len] = 0;
    free(b->keys[b->depth - 1]);
    b->keys[b->depth - 1] = k;
    return 1;
}

static const yajl_callbacks callbacks = {
    cb_null, cb_bool, cb_int, cb_double, NULL, cb_string,
    cb_start_map, cb_key, cb_end, cb_start_array, cb_end,
};

static lmc_status parse(builder *b, const char *text, size_t len) {
    yajl_handle h = yajl_alloc(&callbacks, NULL, b);
    if (!h) return lmc_err(LMC_ERR_NOMEM, "tokenizer.json: out of memory");
    yajl_status s = yajl_parse(h, (const unsigned char *)text, len);
    if (s == yajl_status_ok) s = yajl_complete_parse(h);
    lmc_status st = LMC_OK;
    if (s == yajl_status_client_canceled) st = b->st;
    else if (s != yajl_status_ok) {
        unsigned char *msg = yajl_get_error(h, 0, NULL, 0);
        size_t off = yajl_get_bytes_consumed(h);
        char *nl = msg ? strchr((char *)msg, '\n') : NULL;
        if (nl) *nl = 0;
        st = lmc_err(LMC_ERR_FORMAT, "tokenizer.json: invalid JSON at byte %zu: %s", off,
                     msg ? (char *)msg : "parse error");
        if (msg) yajl_free_error(h, msg);
    }
    yajl_free(h);
    while (b->depth > 0) close_container(b);
    return st;
}

lmc_status tk_json_doc_load(const char *path, size_t max_bytes, tk_json_doc *d) {
    memset(d, 0, sizeof *d);
    lmc_mapping map;
    lmc_status st = lmc_map_file(path, "tokenizer.json", &map);
    if (st) return st;
    if (map.size > max_bytes) {
        lmc_unmap(&map);
        return lmc_err(LMC_ERR_LIMIT, "tokenizer.json: %zu bytes exceeds the %zu-byte limit",
                       map.size, max_bytes);
    }
    builder b = {.doc = d};
    st = parse(&b, map.data ? map.data : "", map.size);
    lmc_unmap(&map);
    if (st) tk_json_doc_free(d);
    return st;
}

void tk_json_doc_free(tk_json_doc *d) {
    json_object_put(d->root);
    free(d->vocab);
    free(d->merges);
    tk_arena_free(&d->strings);
    memset(d, 0, sizeof *d);
}
