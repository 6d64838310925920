/* lmc_tokenizer: loads tokenizer.json (+ tokenizer_config.json) and runs
 * the encode pipeline: added tokens are matched first (raw text, then the
 * normalized text), the remaining pieces are normalized, pre-tokenized and
 * handed to the model; the post-processor adds BOS/EOS-style tokens. */
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "tok_internal.h"
#include "tokenizer/tok_bytes.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#define TOKENIZER_JSON_MAX ((size_t)1 << 30)
#define TOKENIZER_CONFIG_MAX ((size_t)64 << 20)

typedef struct {
    char *content;
    int32_t id;
    bool special, lstrip, rstrip, single_word, normalized;
} added_token;

struct lmc_tokenizer {
    tk_model model;
    tk_normalizer *norm;
    tk_pretok *pre;
    tk_decoder *dec;
    tk_post post;
    added_token *added;
    size_t n_added;
    tk_strmap added_by_content; /* content -> index into added */
    int32_t *added_by_id;       /* id -> index into added, -1 */
    tk_strmap special_content;  /* contents of special added tokens */
    tk_trie *trie_raw, *trie_norm;
    bool first_raw[256], first_norm[256]; /* bytes that can start an added token */
    char **norm_patterns; /* normalized contents (owned) */
    size_t vocab_size;
    /* tokenizer_config.json */
    char *special[4]; /* bos, eos, pad, unk */
    int32_t bos_id;
    int32_t *eos;
    size_t n_eos;
    char **tmpl_name, **tmpl_src;
    size_t n_tmpl;
    json_object *config; /* parsed tokenizer_config.json, or NULL */
    /* Scratch contexts reused across encode calls (any thread). */
    pthread_mutex_t pool_mu;
    tk_ctx *pool[8];
    size_t n_pool;
    /* objects derived from the vocabulary (tok_bytes.h), guarded by pool_mu */
    struct {
        size_t key;
        void *obj;
        void (*destroy)(void *);
    } derived[4];
    size_t n_derived;
};

static tk_ctx *ctx_get(const lmc_tokenizer *tc) {
    lmc_tokenizer *t = (lmc_tokenizer *)tc; /* the pool is internal scratch state */
    tk_ctx *c = NULL;
    pthread_mutex_lock(&t->pool_mu);
    if (t->n_pool) c = t->pool[--t->n_pool];
    pthread_mutex_unlock(&t->pool_mu);
    if (c) return c;
    c = calloc(1, sizeof *c);
    if (c && !(c->md = pcre2_match_data_create(8, NULL))) {
        free(c);
        c = NULL;
    }
    return c;
}

static void ctx_destroy(tk_ctx *c) {
    pcre2_match_data_free(c->md);
    tk_arena_free(&c->arena);
    lmc_buf_free(&c->tmp);
    lmc_buf_free(&c->tmp2);
    free(c);
}

static void ctx_put(const lmc_tokenizer *tc, tk_ctx *c) {
    lmc_tokenizer *t = (lmc_tokenizer *)tc;
    tk_arena_reset(&c->arena);
    if (c->tmp.cap > (1u << 20)) lmc_buf_free(&c->tmp);
    if (c->tmp2.cap > (1u << 20)) lmc_buf_free(&c->tmp2);
    pthread_mutex_lock(&t->pool_mu);
    if (t->n_pool < 8) {
        t->pool[t->n_pool++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&t->pool_mu);
    if (c) ctx_destroy(c);
}

static const char *const special_keys[4] = {"bos_token", "eos_token", "pad_token", "unk_token"};

/* ------------------------------------------------------------- load json */
static lmc_status load_added(lmc_tokenizer *t, json_object *root, const char *file) {
    json_object *a;
    if (!json_object_object_get_ex(root, "added_tokens", &a) || !a) return LMC_OK;
    if (!json_object_is_type(a, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s: added_tokens: not an array", file);
    size_t n = json_object_array_length(a);
    t->added = calloc(n ? n : 1, sizeof *t->added);
    if (!t->added) return lmc_err(LMC_ERR_NOMEM, "%s: added_tokens: out of memory", file);
    for (size_t i = 0; i < n; i++) {
        json_object *e = json_object_array_get_idx(a, i), *c, *id;
        if (!json_object_is_type(e, json_type_object) ||
            !json_object_object_get_ex(e, "content", &c) || !json_object_is_type(c, json_type_string) ||
            !json_object_object_get_ex(e, "id", &id) || !json_object_is_type(id, json_type_int))
            return lmc_err(LMC_ERR_FORMAT, "%s: added_tokens[%zu]: needs \"id\" and \"content\"",
                           file, i);
        int64_t v = json_object_get_int64(id);
        if (v < 0 || v >= TK_MAX_ID)
            return lmc_err(v < 0 ? LMC_ERR_FORMAT : LMC_ERR_LIMIT,
                           "%s: added_tokens[%zu].id: %lld out of range (0..%lld)", file, i,
                           (long long)v, (long long)TK_MAX_ID - 1);
        added_token *at = &t->added[t->n_added++];
        if (!(at->content = strdup(json_object_get_string(c))))
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", file);
        at->id = (int32_t)v;
        at->special = tk_json_flag(e, "special", false);
        at->lstrip = tk_json_flag(e, "lstrip", false);
        at->rstrip = tk_json_flag(e, "rstrip", false);
        at->single_word = tk_json_flag(e, "single_word", false);
        at->normalized = tk_json_flag(e, "normalized", !at->special);
        if (!tk_strmap_put(&t->added_by_content, at->content, strlen(at->content), (int32_t)i) ||
            (at->special &&
             !tk_strmap_put(&t->special_content, at->content, strlen(at->content), at->id)))
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", file);
    }
    return LMC_OK;
}

/* Builds the two matchers; normalized contents go through the normalizer. */
static lmc_status build_tries(lmc_tokenizer *t) {
    t->trie_raw = tk_trie_new();
    t->trie_norm = tk_trie_new();
    t->norm_patterns = calloc(t->n_added ? t->n_added : 1, sizeof *t->norm_patterns);
    if (!t->trie_raw || !t->trie_norm || !t->norm_patterns)
        return lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    tk_ctx c = {0};
    c.md = pcre2_match_data_create(4, NULL);
    lmc_buf nb = {0};
    lmc_status st = c.md ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    for (size_t i = 0; i < t->n_added && !st; i++) {
        added_token *a = &t->added[i];
        size_t len = strlen(a->content);
        if (!a->normalized || !t->norm) {
            tk_trie *tr = a->normalized ? t->trie_norm : t->trie_raw;
            if (!tk_trie_add(tr, a->content, len, (int32_t)i))
                st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
            continue;
        }
        st = tk_normalize(t->norm, &c, a->content, len, &nb);
        if (st) break;
        t->norm_patterns[i] = malloc(nb.len + 1);
        if (!t->norm_patterns[i]) {
            st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
            break;
        }
        memcpy(t->norm_patterns[i], nb.p ? nb.p : "", nb.len);
        t->norm_patterns[i][nb.len] = 0;
        if (!tk_trie_add(t->trie_norm, t->norm_patterns[i], nb.len, (int32_t)i))
            st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    }
    for (int b = 0; b < 256; b++) {
        t->first_raw[b] = tk_trie_first_byte(t->trie_raw, (unsigned char)b);
        t->first_norm[b] = tk_trie_first_byte(t->trie_norm, (unsigned char)b);
    }
    lmc_buf_free(&nb);
    lmc_buf_free(&c.tmp);
    lmc_buf_free(&c.tmp2);
    if (c.md) pcre2_match_data_free(c.md);
    return st;
}

/* A component that is null or absent stays NULL. */
static lmc_status load_part(json_object *root, const char *key, size_t size, void **out,
                            lmc_status (*load)(void *, json_object *, const char *),
                            const char *file) {
    json_object *o;
    *out = NULL;
    if (!json_object_object_get_ex(root, key, &o) || !o) return LMC_OK;
    void *p = calloc(1, size);
    if (!p) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", file);
    *out = p;
    char where[300];
    snprintf(where, sizeof where, "%s: %s", file, key);
    return load(p, o, where);
}

static lmc_status ld_norm(void *p, json_object *o, const char *w) { return tk_normalizer_load(p, o, w); }
static lmc_status ld_pre(void *p, json_object *o, const char *w) { return tk_pretok_load(p, o, w); }
static lmc_status ld_dec(void *p, json_object *o, const char *w) { return tk_decoder_load(p, o, w); }

static lmc_status load_tokenizer_json(lmc_tokenizer *t, const char *path) {
    tk_json_doc doc;
    lmc_status st = tk_json_doc_load(path, TOKENIZER_JSON_MAX, &doc);
    if (st) return st;
    json_object *root = doc.root;
    const char *file = "tokenizer.json";
    json_object *model;
    if (!json_object_is_type(root, json_type_object)) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: top level is not an object", file);
        goto out;
    }
    if (!json_object_object_get_ex(root, "model", &model) || !model) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: model: missing", file);
        goto out;
    }
    if ((st = tk_model_load(&t->model, model, &doc, "tokenizer.json: model"))) goto out;
    if ((st = load_added(t, root, file))) goto out;
    if ((st = load_part(root, "normalizer", sizeof(tk_normalizer), (void **)&t->norm, ld_norm, file)))
        goto out;
    if ((st = load_part(root, "pre_tokenizer", sizeof(tk_pretok), (void **)&t->pre, ld_pre, file)))
        goto out;
    if ((st = load_part(root, "decoder", sizeof(tk_decoder), (void **)&t->dec, ld_dec, file)))
        goto out;
    t->vocab_size = t->model.n_tokens;
    for (size_t i = 0; i < t->n_added; i++)
        if ((size_t)t->added[i].id + 1 > t->vocab_size) t->vocab_size = (size_t)t->added[i].id + 1;
    t->added_by_id = malloc((t->vocab_size ? t->vocab_size : 1) * sizeof *t->added_by_id);
    if (!t->added_by_id) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", file);
        goto out;
    }
    for (size_t i = 0; i < t->vocab_size; i++) t->added_by_id[i] = -1;
    for (size_t i = 0; i < t->n_added; i++) t->added_by_id[t->added[i].id] = (int32_t)i;
    json_object *pp;
    if (json_object_object_get_ex(root, "post_processor", &pp) && pp) {
        tk_strmap ids = {0};
        for (size_t i = 0; i < t->n_added; i++)
            tk_strmap_put(&ids, t->added[i].content, strlen(t->added[i].content), t->added[i].id);
        st = tk_post_load(&t->post, pp, &ids, &t->model, "tokenizer.json: post_processor");
        tk_strmap_free(&ids);
        if (st) goto out;
        /* Encode must never return an id the vocabulary cannot decode. */
        for (int side = 0; side < 2; side++) {
            const int32_t *v = side ? t->post.post : t->post.pre;
            size_t n = side ? t->post.n_post : t->post.n_pre;
            for (size_t i = 0; i < n; i++) {
                if (v[i] < 0 || (size_t)v[i] >= t->vocab_size) {
                    st = lmc_err(LMC_ERR_FORMAT,
                                 "%s: post_processor: special token id %d is outside the "
                                 "vocabulary (%zu tokens)",
                                 file, v[i], t->vocab_size);
                    goto out;
                }
            }
        }
    }
    st = build_tries(t);
out:
    tk_json_doc_free(&doc);
    return st;
}

/* "x" or {"content": "x", ...} */
static const char *token_string(json_object *v) {
    if (!v) return NULL;
    if (json_object_is_type(v, json_type_string)) return json_object_get_string(v);
    json_object *c;
    if (json_object_is_type(v, json_type_object) && json_object_object_get_ex(v, "content", &c) &&
        json_object_is_type(c, json_type_string))
        return json_object_get_string(c);
    return NULL;
}

static lmc_status add_template(lmc_tokenizer *t, const char *name, const char *src) {
    char **n = realloc(t->tmpl_name, (t->n_tmpl + 1) * sizeof *n);
    if (!n) return lmc_err(LMC_ERR_NOMEM, "chat_template: out of memory");
    t->tmpl_name = n;
    char **s = realloc(t->tmpl_src, (t->n_tmpl + 1) * sizeof *s);
    if (!s) return lmc_err(LMC_ERR_NOMEM, "chat_template: out of memory");
    t->tmpl_src = s;
    n[t->n_tmpl] = strdup(name);
    s[t->n_tmpl] = strdup(src);
    t->n_tmpl++;
    if (!n[t->n_tmpl - 1] || !s[t->n_tmpl - 1])
        return lmc_err(LMC_ERR_NOMEM, "chat_template: out of memory");
    return LMC_OK;
}

static lmc_status load_config(lmc_tokenizer *t, const char *path) {
    json_object *root = NULL;
    lmc_status st =
        lmc_json_load_file(path, "tokenizer_config.json", TOKENIZER_CONFIG_MAX, &root, NULL);
    if (st) return st;
    if (!json_object_is_type(root, json_type_object)) {
        json_object_put(root);
        return lmc_err(LMC_ERR_FORMAT, "tokenizer_config.json: top level is not an object");
    }
    for (int k = 0; k < 4; k++) {
        json_object *v;
        if (!json_object_object_get_ex(root, special_keys[k], &v) || !v) continue;
        const char *s = token_string(v);
        if (!s) {
            json_object_put(root);
            return lmc_err(LMC_ERR_FORMAT,
                           "tokenizer_config.json: %s: expected a string or {\"content\": ...}",
                           special_keys[k]);
        }
        if (!(t->special[k] = strdup(s))) {
            json_object_put(root);
            return lmc_err(LMC_ERR_NOMEM, "tokenizer_config.json: out of memory");
        }
    }
    json_object *ct;
    if (json_object_object_get_ex(root, "chat_template", &ct) && ct) {
        if (json_object_is_type(ct, json_type_string)) {
            st = add_template(t, "default", json_object_get_string(ct));
        } else if (json_object_is_type(ct, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(ct) && !st; i++) {
                json_object *e = json_object_array_get_idx(ct, i), *nm, *tp;
                if (!json_object_object_get_ex(e, "name", &nm) ||
                    !json_object_is_type(nm, json_type_string) ||
                    !json_object_object_get_ex(e, "template", &tp) ||
                    !json_object_is_type(tp, json_type_string))
                    st = lmc_err(LMC_ERR_FORMAT,
                                 "tokenizer_config.json: chat_template[%zu]: needs \"name\" and "
                                 "\"template\" strings",
                                 i);
                else
                    st = add_template(t, json_object_get_string(nm), json_object_get_string(tp));
            }
        } else {
            st = lmc_err(LMC_ERR_FORMAT,
                         "tokenizer_config.json: chat_template: expected a string or a list");
        }
    }
    t->config = root;
    return st;
}

static void resolve_special_ids(lmc_tokenizer *t) {
    t->bos_id = t->special[0] ? lmc_tokenizer_token_to_id(t, t->special[0]) : -1;
    int32_t eos = t->special[1] ? lmc_tokenizer_token_to_id(t, t->special[1]) : -1;
    free(t->eos);
    t->eos = NULL;
    t->n_eos = 0;
    if (eos >= 0 && (t->eos = malloc(sizeof *t->eos))) {
        t->eos[0] = eos;
        t->n_eos = 1;
    }
}

lmc_status lmc_tokenizer_load_files(const char *tokenizer_json_path,
                                    const char *tokenizer_config_path, lmc_tokenizer **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_load_files: out is NULL");
    *out = NULL;
    if (!tokenizer_json_path)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_load_files: tokenizer.json path is NULL");
    lmc_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    pthread_mutex_init(&t->pool_mu, NULL);
    lmc_status st = load_tokenizer_json(t, tokenizer_json_path);
    if (!st && tokenizer_config_path) st = load_config(t, tokenizer_config_path);
    if (st) {
        lmc_err_prefix(st, "%s", tokenizer_json_path);
        lmc_tokenizer_free(t);
        return st;
    }
    resolve_special_ids(t);
    *out = t;
    return LMC_OK;
}

lmc_status lmc_tokenizer_load(const char *dir, lmc_tokenizer **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_load: out is NULL");
    *out = NULL;
    if (!dir) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_load: dir is NULL");
    char *tj = lmc_path_join(dir, "tokenizer.json");
    char *tc = lmc_path_join(dir, "tokenizer_config.json");
    char *jinja = lmc_path_join(dir, "chat_template.jinja");
    char *ctj = lmc_path_join(dir, "chat_template.json");
    lmc_status st;
    if (!tj || !tc || !jinja || !ctj) {
        st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
        goto out;
    }
    if (!lmc_path_exists(tj)) {
        st = lmc_err(LMC_ERR_NOT_FOUND, "%s: tokenizer.json not found", dir);
        goto out;
    }
    st = lmc_tokenizer_load_files(tj, lmc_path_exists(tc) ? tc : NULL, out);
    if (!st && !(*out)->n_tmpl && lmc_path_exists(ctj)) { /* {"chat_template": "..."} */
        json_object *root = NULL;
        st = lmc_json_load_file(ctj, "chat_template.json", TOKENIZER_CONFIG_MAX, &root, NULL);
        json_object *v;
        if (!st && json_object_is_type(root, json_type_object) &&
            json_object_object_get_ex(root, "chat_template", &v) &&
            json_object_is_type(v, json_type_string))
            st = add_template(*out, "default", json_object_get_string(v));
        else if (!st)
            st = lmc_err(LMC_ERR_FORMAT, "chat_template.json: chat_template: missing or not a string");
        json_object_put(root);
        if (st) {
            lmc_tokenizer_free(*out);
            *out = NULL;
        }
    }
    if (!st && !(*out)->n_tmpl && lmc_path_exists(jinja)) {
        char *src = NULL;
        size_t len;
        st = lmc_read_file(jinja, "chat_template.jinja", TOKENIZER_CONFIG_MAX, &src, &len);
        if (!st) st = add_template(*out, "default", src);
        free(src);
        if (st) {
            lmc_tokenizer_free(*out);
            *out = NULL;
        }
    }
out:
    free(tj);
    free(tc);
    free(jinja);
    free(ctj);
    return st;
}

void lmc_tokenizer_free(lmc_tokenizer *t) {
    if (!t) return;
    for (size_t i = 0; i < t->n_derived; i++) t->derived[i].destroy(t->derived[i].obj);
    tk_model_free(&t->model);
    if (t->norm) tk_normalizer_free(t->norm);
    if (t->pre) tk_pretok_free(t->pre);
    if (t->dec) tk_decoder_free(t->dec);
    free(t->norm);
    free(t->pre);
    free(t->dec);
    tk_post_free(&t->post);
    for (size_t i = 0; i < t->n_added; i++) {
        free(t->added[i].content);
        if (t->norm_patterns) free(t->norm_patterns[i]);
    }
    free(t->added);
    free(t->norm_patterns);
    free(t->added_by_id);
    tk_strmap_free(&t->added_by_content);
    tk_strmap_free(&t->special_content);
    tk_trie_free(t->trie_raw);
    tk_trie_free(t->trie_norm);
    for (int k = 0; k < 4; k++) free(t->special[k]);
    free(t->eos);
    for (size_t i = 0; i < t->n_tmpl; i++) {
        free(t->tmpl_name[i]);
        free(t->tmpl_src[i]);
    }
    free(t->tmpl_name);
    free(t->tmpl_src);
    json_object_put(t->config);
    for (size_t i = 0; i < t->n_pool; i++) ctx_destroy(t->pool[i]);
    pthread_mutex_destroy(&t->pool_mu);
    free(t);
}

/* ---------------------------------------------------------------- encode */
/* Regex \w: letters, marks, decimal/letter numbers, connector punctuation. */
static bool is_word_char(uint32_t cp) {
    if (cp < 128) return cp == '_' || tk_is_alnum(cp);
    if (cp == 0x200C || cp == 0x200D) return true;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO: case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME: case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_PC:
        return true;
    default:
        return false;
    }
}

static uint32_t last_cp(const char *s, size_t len) {
    size_t p = len - 1;
    while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
    uint32_t cp;
    tk_utf8_dec(s + p, len - p, &cp);
    return cp;
}

/* Splits one text piece around the added tokens found by `trie`
 * (leftmost-longest, non-overlapping), honouring lstrip/rstrip/single_word. */
static bool split_added(const lmc_tokenizer *t, const tk_trie *trie, const bool *first,
                        const tk_piece *pc, tk_pieces *out) {
    const char *s = pc->p;
    size_t len = pc->len, start_off = 0, i = 0;
    while (i < len) {
        if (!first[(unsigned char)s[i]]) {
            i++;
            continue;
        }
        size_t mlen = 0;
        int32_t idx = tk_trie_longest(trie, s + i, len - i, &mlen);
        if (idx < 0) {
            i++;
            continue;
        }
        const added_token *a = &t->added[idx];
        size_t start = i, stop = i + mlen;
        i = stop;
        if (a->single_word) {
            uint32_t cp;
            bool sp0 = start == 0 || !is_word_char(last_cp(s, start));
            bool sp1 = stop == len || (tk_utf8_dec(s + stop, len - stop, &cp), !is_word_char(cp));
            if (!sp0 || !sp1) continue;
        }
        if (a->lstrip) {
            size_t ns = start;
            while (ns > 0) {
                size_t p = ns - 1;
                while (p > 0 && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                uint32_t cp;
                tk_utf8_dec(s + p, ns - p, &cp);
                if (!tk_is_ws(cp)) break;
                ns = p;
            }
            start = ns > start_off ? ns : start_off;
        }
        if (a->rstrip)
            while (stop < len) {
                uint32_t cp;
                int k = tk_utf8_dec(s + stop, len - stop, &cp);
                if (!tk_is_ws(cp)) break;
                stop += (size_t)k;
            }
        if (start_off < start &&
            !tk_pieces_push(out, (tk_piece){s + start_off, start - start_off, -1,
                                             pc->origin && start_off == 0}))
            return false;
        if (!tk_pieces_push(out, (tk_piece){s + start, stop - start, a->id, false})) return false;
        start_off = stop;
        i = stop;
    }
    if (start_off < len &&
        !tk_pieces_push(out, (tk_piece){s + start_off, len - start_off, -1,
                                         pc->origin && start_off == 0}))
        return false;
    return true;
}

static lmc_status encode_pieces(const lmc_tokenizer *t, tk_ctx *c, const char *text, size_t len,
                                tk_ids *ids) {
    tk_pieces a = {0}, b = {0};
    lmc_status st = LMC_OK;
    tk_piece whole = {text, len, -1, true};
    if (!split_added(t, t->trie_raw, t->first_raw, &whole, &a)) goto nomem;
    for (size_t i = 0; i < a.n; i++) {
        tk_piece pc = a.v[i];
        if (pc.added_id >= 0) {
            if (!tk_pieces_push(&b, pc)) goto nomem;
            continue;
        }
        if (t->norm) {
            if ((st = tk_normalize(t->norm, c, pc.p, pc.len, &c->tmp))) goto done;
            char *p = tk_arena_dup(&c->arena, c->tmp.p ? c->tmp.p : "", c->tmp.len);
            if (!p) goto nomem;
            pc.p = p;
            pc.len = c->tmp.len;
        }
        if (!pc.len) continue;
        if (!split_added(t, t->trie_norm, t->first_norm, &pc, &b)) goto nomem;
    }
    if (t->pre && (st = tk_pretokenize(t->pre, c, &b))) goto done;
    for (size_t i = 0; i < b.n && !st; i++) {
        if (b.v[i].added_id >= 0) {
            if (!tk_ids_push(ids, b.v[i].added_id)) goto nomem;
        } else {
            st = tk_model_tokenize(&t->model, c, b.v[i].p, b.v[i].len, ids);
        }
    }
    goto done;
nomem:
    st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
done:
    free(a.v);
    free(b.v);
    return st;
}

lmc_status lmc_tokenizer_encode(const lmc_tokenizer *t, const char *text, size_t len,
                                bool add_special_tokens, int32_t **ids, size_t *n_ids) {
    if (!t || !ids || !n_ids || (!text && len))
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_encode: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    size_t bad;
    if (len && !tk_utf8_valid(text, len, &bad))
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_encode: text is not valid UTF-8 (byte %zu)",
                       bad);
    tk_ctx *c = ctx_get(t);
    tk_ids out = {0};
    lmc_status st = c ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    if (!st && add_special_tokens && t->post.present &&
        !tk_ids_append(&out, t->post.pre, t->post.n_pre))
        st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    if (!st && len) st = encode_pieces(t, c, text, len, &out);
    if (!st && add_special_tokens && t->post.present &&
        !tk_ids_append(&out, t->post.post, t->post.n_post))
        st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    if (!st && !out.v && !(out.v = malloc(sizeof *out.v)))
        st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    if (c) ctx_put(t, c);
    if (st) {
        free(out.v);
        return st;
    }
    *ids = out.v;
    *n_ids = out.n;
    return LMC_OK;
}

/* ---------------------------------------------------------------- decode */
/* Added tokens matched in normalized text decode as their normalized form
 * (so the decoder can undo the normalizer), like the reference. */
static const char *token_of(const lmc_tokenizer *t, int32_t id) {
    if (id < 0 || (size_t)id >= t->vocab_size) return NULL;
    int32_t a = t->added_by_id[id];
    if (a >= 0) return t->norm_patterns[a] ? t->norm_patterns[a] : t->added[a].content;
    return (size_t)id < t->model.n_tokens ? t->model.tokens[id] : NULL;
}

static size_t token_len(const lmc_tokenizer *t, int32_t id, const char *s) {
    if (t->added_by_id[id] < 0 && (size_t)id < t->model.n_tokens) return t->model.token_lens[id];
    return strlen(s);
}

static bool skipped(const lmc_tokenizer *t, const char *tok, bool skip_special) {
    return skip_special && tk_strmap_get(&t->special_content, tok, strlen(tok)) >= 0;
}

static lmc_status decode_buf(const lmc_tokenizer *t, const int32_t *ids, size_t n, bool skip,
                             lmc_buf *out) {
    const char **toks = malloc((n ? n : 1) * sizeof *toks);
    size_t *lens = malloc((n ? n : 1) * sizeof *lens);
    if (!toks || !lens) {
        free(toks);
        free(lens);
        return lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = token_of(t, ids[i]);
        if (s && !skipped(t, s, skip)) { /* unknown ids are dropped */
            lens[k] = token_len(t, ids[i], s);
            toks[k++] = s;
        }
    }
    lmc_status st = tk_decode_tokens(t->dec, toks, lens, k, out);
    free(toks);
    free(lens);
    return st;
}

lmc_status lmc_tokenizer_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n_ids,
                                bool skip_special_tokens, char **text) {
    if (!t || !text || (!ids && n_ids))
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_decode: NULL argument");
    *text = NULL;
    lmc_buf b = {0};
    lmc_status st = decode_buf(t, ids, n_ids, skip_special_tokens, &b);
    if (!st && !b.p && !lmc_buf_reserve(&b, 1)) st = lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    if (st) {
        lmc_buf_free(&b);
        return st;
    }
    if (!b.len) b.p[0] = 0;
    *text = lmc_buf_take(&b);
    return LMC_OK;
}

/* ------------------------------------------------------------ vocabulary */
size_t lmc_tokenizer_vocab_size(const lmc_tokenizer *t) { return t ? t->vocab_size : 0; }

const char *lmc_tokenizer_id_to_token(const lmc_tokenizer *t, int32_t id) {
    return t ? token_of(t, id) : NULL;
}

int32_t lmc_tokenizer_token_to_id(const lmc_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    int32_t a = tk_strmap_get(&t->added_by_content, token, n);
    if (a >= 0) return t->added[a].id;
    return tk_strmap_get(&t->model.vocab, token, n);
}

bool lmc_tokenizer_is_special(const lmc_tokenizer *t, int32_t id) {
    if (!t || id < 0 || (size_t)id >= t->vocab_size) return false;
    return t->added_by_id[id] >= 0 && t->added[t->added_by_id[id]].special;
}

size_t lmc_tokenizer_eos_ids(const lmc_tokenizer *t, const int32_t **ids) {
    if (ids) *ids = t ? t->eos : NULL;
    return t ? t->n_eos : 0;
}

lmc_status lmc_tokenizer_set_eos_ids(lmc_tokenizer *t, const int32_t *ids, size_t n) {
    if (!t || (!ids && n)) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_tokenizer_set_eos_ids: NULL argument");
    int32_t *c = malloc((n ? n : 1) * sizeof *c);
    if (!c) return lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    if (n) memcpy(c, ids, n * sizeof *c);
    free(t->eos);
    t->eos = c;
    t->n_eos = n;
    return LMC_OK;
}

int32_t lmc_tokenizer_bos_id(const lmc_tokenizer *t) { return t ? t->bos_id : -1; }

const char *lmc_tokenizer_special_token(const lmc_tokenizer *t, const char *key) {
    if (!t || !key) return NULL;
    for (int k = 0; k < 4; k++)
        if (!strcmp(key, special_keys[k])) return t->special[k];
    return NULL;
}

const char *lmc_tokenizer_chat_template(const lmc_tokenizer *t, const char *name) {
    if (!t || !t->n_tmpl) return NULL;
    const char *want = name ? name : "default";
    for (size_t i = 0; i < t->n_tmpl; i++)
        if (!strcmp(t->tmpl_name[i], want)) return t->tmpl_src[i];
    if (!name && t->n_tmpl == 1) return t->tmpl_src[0];
    return NULL;
}

bool lmc_tokenizer_config_bool(const lmc_tokenizer *t, const char *key, bool def) {
    bool v = def; /* stays def when absent, null or not a boolean */
    if (t && key) lmc_json_bool(t->config, key, &v, NULL);
    return v;
}

/* --------------------------------------------------- streaming detokenizer */
/* Decodes a sliding window [prefix, end): text is emitted once the window's
 * decode extends the decode of [prefix, read) and does not end inside an
 * incomplete UTF-8 character (U+FFFD). finish() settles the tail against a
 * full decode so the concatenation always equals lmc_tokenizer_decode. */
struct lmc_detokenizer {
    const lmc_tokenizer *t;
    bool skip;
    tk_ids ids;
    size_t prefix, read, emitted;
};

lmc_status lmc_detokenizer_new(const lmc_tokenizer *t, bool skip_special_tokens,
                               lmc_detokenizer **out) {
    if (!t || !out) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_detokenizer_new: NULL argument");
    *out = calloc(1, sizeof **out);
    if (!*out) return lmc_err(LMC_ERR_NOMEM, "detokenizer: out of memory");
    (*out)->t = t;
    (*out)->skip = skip_special_tokens;
    return LMC_OK;
}

static bool ends_incomplete(const lmc_buf *b) {
    return b->len >= 3 && !memcmp(b->p + b->len - 3, "\xEF\xBF\xBD", 3);
}

lmc_status lmc_detokenizer_push(lmc_detokenizer *d, int32_t id, char **segment) {
    if (!d || !segment) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_detokenizer_push: NULL argument");
    *segment = NULL;
    const char *tok = token_of(d->t, id);
    lmc_buf seg = {0}, pre = {0}, now = {0};
    lmc_status st = LMC_OK;
    if (tok && !skipped(d->t, tok, d->skip)) {
        if (!tk_ids_push(&d->ids, id)) return lmc_err(LMC_ERR_NOMEM, "detokenizer: out of memory");
        st = decode_buf(d->t, d->ids.v + d->prefix, d->read - d->prefix, false, &pre);
        if (!st) st = decode_buf(d->t, d->ids.v + d->prefix, d->ids.n - d->prefix, false, &now);
        if (!st && now.len > pre.len && (!pre.len || !memcmp(now.p, pre.p, pre.len)) &&
            !ends_incomplete(&now)) {
            if (!lmc_buf_append(&seg, now.p + pre.len, now.len - pre.len))
                st = lmc_err(LMC_ERR_NOMEM, "detokenizer: out of memory");
            d->emitted += now.len - pre.len;
            d->prefix = d->read;
            d->read = d->ids.n;
        }
    }
    if (!st && !seg.p && !lmc_buf_reserve(&seg, 1)) st = lmc_err(LMC_ERR_NOMEM, "detokenizer");
    lmc_buf_free(&pre);
    lmc_buf_free(&now);
    if (st) {
        lmc_buf_free(&seg);
        return st;
    }
    if (!seg.len) seg.p[0] = 0;
    *segment = lmc_buf_take(&seg);
    return LMC_OK;
}

lmc_status lmc_detokenizer_finish(lmc_detokenizer *d, char **tail) {
    if (!d || !tail) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_detokenizer_finish: NULL argument");
    *tail = NULL;
    lmc_buf all = {0}, out = {0};
    lmc_status st = decode_buf(d->t, d->ids.v, d->ids.n, false, &all);
    if (!st && all.len > d->emitted && !lmc_buf_append(&out, all.p + d->emitted, all.len - d->emitted))
        st = lmc_err(LMC_ERR_NOMEM, "detokenizer: out of memory");
    if (!st && !out.p && !lmc_buf_reserve(&out, 1)) st = lmc_err(LMC_ERR_NOMEM, "detokenizer");
    lmc_buf_free(&all);
    if (st) {
        lmc_buf_free(&out);
        return st;
    }
    if (!out.len) out.p[0] = 0;
    *tail = lmc_buf_take(&out);
    lmc_detokenizer_reset(d);
    return LMC_OK;
}

void lmc_detokenizer_reset(lmc_detokenizer *d) {
    if (!d) return;
    d->ids.n = 0;
    d->prefix = d->read = d->emitted = 0;
}

void lmc_detokenizer_free(lmc_detokenizer *d) {
    if (!d) return;
    free(d->ids.v);
    free(d);
}

/* ------------------------------------------------- raw bytes of one token */
static bool dec_has(const tk_decoder *d, tk_dec_type type) {
    if (!d) return false;
    if (d->type == type) return true;
    for (size_t i = 0; i < d->n_subs; i++)
        if (dec_has(&d->subs[i], type)) return true;
    return false;
}

lmc_status lmc_tokenizer_token_bytes(const lmc_tokenizer *t, int32_t id, lmc_buf *out) {
    out->len = 0;
    if (!t || id < 0 || (size_t)id >= t->vocab_size) return LMC_OK;
    int32_t a = t->added_by_id[id];
    if (a >= 0) {
        if (t->added[a].special) return LMC_OK;
        const char *c = t->added[a].content;
        return lmc_buf_append(out, c, strlen(c)) ? LMC_OK
                                                 : lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
    }
    if ((size_t)id >= t->model.n_tokens || !t->model.tokens[id]) return LMC_OK;
    const char *s = t->model.tokens[id];
    size_t n = t->model.token_lens[id];
    bool ok = true;
    if (dec_has(t->dec, TK_DEC_BYTELEVEL)) {
        for (size_t i = 0; i < n && ok;) {
            uint32_t cp;
            int k = tk_utf8_dec(s + i, n - i, &cp);
            int b = tk_bytelevel_byte(cp);
            ok = b >= 0 ? lmc_buf_putc(out, (char)b) : lmc_buf_append(out, s + i, (size_t)k);
            i += (size_t)k;
        }
    } else if (n == 6 && !memcmp(s, "<0x", 3) && s[5] == '>' && dec_has(t->dec, TK_DEC_BYTEFALLBACK)) {
        ok = lmc_buf_putc(out, (char)strtol(s + 3, NULL, 16));
    } else {
        bool meta = dec_has(t->dec, TK_DEC_METASPACE) || dec_has(t->dec, TK_DEC_REPLACE);
        for (size_t i = 0; i < n && ok;) {
            if (meta && n - i >= 3 && !memcmp(s + i, "\xE2\x96\x81", 3)) {
                ok = lmc_buf_putc(out, ' ');
                i += 3;
            } else {
                ok = lmc_buf_putc(out, s[i++]);
            }
        }
    }
    return ok ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "tokenizer: out of memory");
}

lmc_status lmc_tokenizer_derived(const lmc_tokenizer *tc, size_t key,
                                 lmc_status (*build)(const lmc_tokenizer *, size_t, void **),
                                 void (*destroy)(void *), void **out) {
    lmc_tokenizer *t = (lmc_tokenizer *)tc; /* the slots are internal cache state */
    *out = NULL;
    pthread_mutex_lock(&t->pool_mu);
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < t->n_derived && !*out; i++)
        if (t->derived[i].key == key && t->derived[i].destroy == destroy) *out = t->derived[i].obj;
    if (!*out) {
        if (t->n_derived == sizeof t->derived / sizeof t->derived[0]) {
            st = lmc_err(LMC_ERR_LIMIT, "tokenizer: more than %zu derived vocabulary objects",
                         t->n_derived);
        } else if (!(st = build(t, key, out))) {
            t->derived[t->n_derived].key = key;
            t->derived[t->n_derived].obj = *out;
            t->derived[t->n_derived++].destroy = destroy;
        }
    }
    pthread_mutex_unlock(&t->pool_mu);
    return st;
}
