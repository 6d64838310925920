/* Fine-tuning datasets: jsonl files of text, chat or prompt/completion
 * records turned into (token ids, prompt length) pairs the way mlx-lm's
 * tuner does, plus concatenation and a tokenize-once cache.
 *
 * A file dataset keeps the file's bytes and one span per line rather than
 * parsed JSON trees: every line is parsed and checked once at load, then
 * dropped, so memory stays close to the file size; a record is parsed again
 * when it is tokenized. */
#include "train/dataset.h"
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "train/jsonl.h"
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef enum { DS_FILE, DS_CONCAT, DS_CACHE } ds_kind;
enum { KEY_TEXT, KEY_CHAT, KEY_PROMPT, KEY_COMPLETION, N_KEYS };
static const char *const default_keys[N_KEYS] = {"text", "messages", "prompt", "completion"};

typedef struct {
    int32_t *ids;
    size_t n, prompt;
    bool done;
} ds_entry;

struct lmc_dataset {
    ds_kind kind;
    size_t len;
    lmc_dataset_format format;
    /* DS_FILE */
    char *path, *text;
    lmc_jsonl_line *lines;
    const lmc_tokenizer *tok;
    char *keys[N_KEYS];
    bool mask_prompt;
    /* DS_CONCAT */
    lmc_dataset **parts;
    size_t n_parts;
    /* DS_CACHE */
    lmc_dataset *inner;
    ds_entry *entries;
};

void lmc_dataset_options_init(lmc_dataset_options *o) {
    memset(o, 0, sizeof *o);
    o->format = LMC_DATASET_AUTO;
    o->cache = true;
}

const char *lmc_dataset_format_name(lmc_dataset_format f) {
    switch (f) {
    case LMC_DATASET_AUTO: return "auto";
    case LMC_DATASET_TEXT: return "text";
    case LMC_DATASET_CHAT: return "chat";
    case LMC_DATASET_COMPLETIONS: return "completions";
    }
    return "unknown";
}

void lmc_dataset_free(lmc_dataset *d) {
    if (!d) return;
    free(d->path);
    free(d->text);
    free(d->lines);
    for (int k = 0; k < N_KEYS; k++) free(d->keys[k]);
    for (size_t i = 0; i < d->n_parts; i++) lmc_dataset_free(d->parts[i]);
    free(d->parts);
    lmc_dataset_free(d->inner);
    if (d->entries)
        for (size_t i = 0; i < d->len; i++) free(d->entries[i].ids);
    free(d->entries);
    free(d);
}

static const char *type_name(json_object *v) {
    return v ? json_type_to_name(json_object_get_type(v)) : "null";
}

static bool has_key(json_object *o, const char *key) {
    return json_object_object_get_ex(o, key, NULL);
}

/* A string field: missing -> LMC_ERR_NOT_FOUND, other type -> LMC_ERR_FORMAT. */
static lmc_status need_string(const lmc_dataset *d, json_object *o, size_t line,
                              const char *key) {
    json_object *v = NULL;
    if (!json_object_object_get_ex(o, key, &v))
        return lmc_err(LMC_ERR_NOT_FOUND, "%s:%zu: record has no \"%s\" key", d->path, line, key);
    if (!json_object_is_type(v, json_type_string))
        return lmc_err(LMC_ERR_FORMAT, "%s:%zu: \"%s\" must be a string, got %s", d->path, line,
                       key, type_name(v));
    return LMC_OK;
}

/* "tools" is optional; null means none (as Python's None). */
static lmc_status check_tools(const lmc_dataset *d, json_object *o, size_t line) {
    json_object *v = lmc_json_get(o, "tools");
    if (v && !json_object_is_type(v, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s:%zu: \"tools\" must be an array or null, got %s",
                       d->path, line, type_name(v));
    return LMC_OK;
}

static lmc_status check_record(const lmc_dataset *d, json_object *o, size_t line) {
    lmc_status st;
    switch (d->format) {
    case LMC_DATASET_TEXT:
        return need_string(d, o, line, d->keys[KEY_TEXT]);
    case LMC_DATASET_CHAT: {
        json_object *v = NULL;
        const char *key = d->keys[KEY_CHAT];
        if (!json_object_object_get_ex(o, key, &v))
            return lmc_err(LMC_ERR_NOT_FOUND, "%s:%zu: record has no \"%s\" key", d->path, line,
                           key);
        if (!json_object_is_type(v, json_type_array))
            return lmc_err(LMC_ERR_FORMAT, "%s:%zu: \"%s\" must be an array of messages, got %s",
                           d->path, line, key, type_name(v));
        for (size_t k = 0; k < json_object_array_length(v); k++) {
            json_object *m = json_object_array_get_idx(v, k);
            if (!json_object_is_type(m, json_type_object))
                return lmc_err(LMC_ERR_FORMAT, "%s:%zu: %s[%zu] must be a message object, got %s",
                               d->path, line, key, k, type_name(m));
        }
        return check_tools(d, o, line);
    }
    case LMC_DATASET_COMPLETIONS:
        if ((st = need_string(d, o, line, d->keys[KEY_PROMPT]))) return st;
        if ((st = need_string(d, o, line, d->keys[KEY_COMPLETION]))) return st;
        return check_tools(d, o, line);
    case LMC_DATASET_AUTO:
        break;
    }
    return lmc_err(LMC_ERR_STATE, "%s: dataset format not resolved", d->path);
}

/* The first record decides, in mlx-lm's order: prompt+completion, then
 * messages, then text. */
static lmc_status detect_format(lmc_dataset *d, json_object *first, size_t line) {
    if (has_key(first, d->keys[KEY_PROMPT]) && has_key(first, d->keys[KEY_COMPLETION]))
        d->format = LMC_DATASET_COMPLETIONS;
    else if (has_key(first, d->keys[KEY_CHAT]))
        d->format = LMC_DATASET_CHAT;
    else if (has_key(first, d->keys[KEY_TEXT]))
        d->format = LMC_DATASET_TEXT;
    else
        return lmc_err(LMC_ERR_FORMAT,
                       "%s:%zu: unsupported data format: the first record needs \"%s\" and "
                       "\"%s\" (completions), \"%s\" (chat) or \"%s\" (text)",
                       d->path, line, d->keys[KEY_PROMPT], d->keys[KEY_COMPLETION],
                       d->keys[KEY_CHAT], d->keys[KEY_TEXT]);
    return LMC_OK;
}

static lmc_status cache_wrap(lmc_dataset *inner, lmc_dataset **out);

/* Takes ownership of `text` (len bytes plus a NUL). */
static lmc_status load_owned_text(char *text, size_t len, const char *name,
                                  const lmc_tokenizer *tok, const lmc_dataset_options *opts,
                                  lmc_dataset **out) {
    lmc_dataset_options def;
    if (!opts) {
        lmc_dataset_options_init(&def);
        opts = &def;
    }
    lmc_dataset *d = calloc(1, sizeof *d);
    if (!d) {
        free(text);
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", name);
    }
    d->kind = DS_FILE;
    d->text = text;
    d->tok = tok;
    d->mask_prompt = opts->mask_prompt;
    d->format = opts->format;
    lmc_status st = LMC_OK;
    d->path = strdup(name);
    const char *keys[N_KEYS] = {opts->text_key, opts->chat_key, opts->prompt_key,
                                opts->completion_key};
    for (int k = 0; k < N_KEYS; k++)
        d->keys[k] = strdup(keys[k] ? keys[k] : default_keys[k]);
    for (int k = 0; k < N_KEYS; k++)
        if (!d->keys[k]) st = LMC_ERR_NOMEM;
    if (!d->path || st) {
        lmc_dataset_free(d);
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", name);
    }
    if ((unsigned)opts->format > LMC_DATASET_COMPLETIONS) {
        st = lmc_err(LMC_ERR_INVALID_ARG, "%s: unknown dataset format %d", name, (int)opts->format);
        goto fail;
    }
    size_t max_line = opts->max_line_bytes ? opts->max_line_bytes : LMC_DATASET_MAX_LINE_BYTES;
    if ((st = lmc_jsonl_split(text, len, d->path, max_line, &d->lines, &d->len))) goto fail;
    if (d->len == 0) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: empty file (no records)", d->path);
        goto fail;
    }
    for (size_t i = 0; i < d->len; i++) {
        json_object *o = NULL;
        if ((st = lmc_jsonl_parse_line(text, &d->lines[i], d->path, &o))) goto fail;
        if (i == 0 && d->format == LMC_DATASET_AUTO)
            st = detect_format(d, o, d->lines[i].line);
        if (!st && i == 0 && d->format == LMC_DATASET_TEXT && d->mask_prompt)
            st = lmc_err(LMC_ERR_INVALID_ARG,
                         "%s: prompt masking is not supported for a text dataset", d->path);
        if (!st) st = check_record(d, o, d->lines[i].line);
        json_object_put(o);
        if (st) goto fail;
    }
    if (opts->cache) {
        lmc_dataset *c = NULL;
        if ((st = cache_wrap(d, &c))) goto fail;
        d = c;
    }
    *out = d;
    return LMC_OK;
fail:
    lmc_dataset_free(d);
    return st;
}

lmc_status lmc_dataset_load_buffer(const char *text, size_t len, const char *name,
                                   const lmc_tokenizer *tok, const lmc_dataset_options *opts,
                                   lmc_dataset **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_load_buffer: NULL out");
    *out = NULL;
    if ((!text && len) || !name)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_load_buffer: NULL argument");
    size_t max_file = opts && opts->max_file_bytes ? opts->max_file_bytes
                                                   : LMC_DATASET_MAX_FILE_BYTES;
    if (len > max_file)
        return lmc_err(LMC_ERR_LIMIT, "%s: %zu bytes, over the %zu-byte limit", name, len,
                       max_file);
    char *copy = malloc(len + 1);
    if (!copy) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", name);
    if (len) memcpy(copy, text, len);
    copy[len] = '\0';
    return load_owned_text(copy, len, name, tok, opts, out);
}

lmc_status lmc_dataset_load(const char *path, const lmc_tokenizer *tok,
                            const lmc_dataset_options *opts, lmc_dataset **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_load: NULL out");
    *out = NULL;
    if (!path || !tok) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_load: NULL argument");
    /* Hub datasets are out of scope: this library reads local files only. */
    if (!strncmp(path, "hf:", 3))
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "%s: Hugging Face Hub datasets are not supported; pass a local jsonl file",
                       path);
    size_t max_file = opts && opts->max_file_bytes ? opts->max_file_bytes
                                                   : LMC_DATASET_MAX_FILE_BYTES;
    char *text;
    size_t len;
    lmc_status st = lmc_read_file(path, "dataset", max_file, &text, &len);
    if (st) return st;
    /* The read stops at the size seen at open; a file still being written
     * would otherwise lose its tail without a word. */
    struct stat sb;
    if (stat(path, &sb) == 0 && (size_t)sb.st_size != len) {
        free(text);
        return lmc_err(LMC_ERR_IO, "%s: changed size while being read (%zu -> %lld bytes)", path,
                       len, (long long)sb.st_size);
    }
    return load_owned_text(text, len, path, tok, opts, out);
}

lmc_status lmc_dataset_load_dir(const char *dir, const lmc_tokenizer *tok,
                                const lmc_dataset_options *opts, lmc_dataset **train,
                                lmc_dataset **valid, lmc_dataset **test) {
    static const char *const names[3] = {"train.jsonl", "valid.jsonl", "test.jsonl"};
    lmc_dataset **outs[3] = {train, valid, test};
    for (int i = 0; i < 3; i++)
        if (outs[i]) *outs[i] = NULL;
    if (!dir || !tok) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_load_dir: NULL argument");
    if (!lmc_is_dir(dir)) {
        if (!lmc_path_exists(dir))
            return lmc_err(LMC_ERR_NOT_FOUND, "dataset directory %s does not exist", dir);
        return lmc_err(LMC_ERR_IO, "dataset directory %s is not a directory", dir);
    }
    int found = 0, asked = 0;
    for (int i = 0; i < 3; i++) {
        if (!outs[i]) continue;
        asked++;
        char *p = lmc_path_join(dir, names[i]);
        if (!p) {
            for (int k = 0; k < i; k++)
                if (outs[k]) lmc_dataset_free(*outs[k]), *outs[k] = NULL;
            return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        }
        lmc_status st = LMC_OK;
        if (lmc_path_exists(p)) {
            found++;
            st = lmc_dataset_load(p, tok, opts, outs[i]);
        }
        free(p);
        if (st) {
            for (int k = 0; k < i; k++)
                if (outs[k]) lmc_dataset_free(*outs[k]), *outs[k] = NULL;
            return st;
        }
    }
    if (asked && !found)
        return lmc_err(LMC_ERR_NOT_FOUND, "%s: none of the requested splits (train.jsonl, "
                       "valid.jsonl, test.jsonl) exists", dir);
    return LMC_OK;
}

lmc_status lmc_dataset_concat(lmc_dataset *const *parts, size_t n_parts, lmc_dataset **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_concat: NULL out");
    *out = NULL;
    if (!parts || n_parts == 0)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_concat: no datasets given");
    for (size_t i = 0; i < n_parts; i++) {
        if (!parts[i]) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_concat: part %zu is NULL", i);
        for (size_t k = 0; k < i; k++)
            if (parts[k] == parts[i])
                return lmc_err(LMC_ERR_INVALID_ARG,
                               "lmc_dataset_concat: parts %zu and %zu are the same dataset", k, i);
    }
    lmc_dataset *d = calloc(1, sizeof *d);
    lmc_dataset **p = malloc(n_parts * sizeof *p);
    if (!d || !p) {
        free(d);
        free(p);
        return lmc_err(LMC_ERR_NOMEM, "lmc_dataset_concat: out of memory");
    }
    d->kind = DS_CONCAT;
    d->format = parts[0]->format;
    for (size_t i = 0; i < n_parts; i++) {
        if (parts[i]->len > SIZE_MAX - d->len) {
            free(d);
            free(p);
            return lmc_err(LMC_ERR_LIMIT, "lmc_dataset_concat: total length overflows");
        }
        d->len += parts[i]->len;
        if (parts[i]->format != d->format) d->format = LMC_DATASET_AUTO;
        p[i] = parts[i];
    }
    d->parts = p;
    d->n_parts = n_parts;
    *out = d;
    return LMC_OK;
}

static lmc_status cache_wrap(lmc_dataset *inner, lmc_dataset **out) {
    lmc_dataset *d = calloc(1, sizeof *d);
    ds_entry *e = calloc(inner->len ? inner->len : 1, sizeof *e);
    if (!d || !e) {
        free(d);
        free(e);
        return lmc_err(LMC_ERR_NOMEM, "dataset cache: out of memory for %zu records", inner->len);
    }
    d->kind = DS_CACHE;
    d->len = inner->len;
    d->format = inner->format;
    d->inner = inner;
    d->entries = e;
    *out = d;
    return LMC_OK;
}

lmc_status lmc_dataset_cached(lmc_dataset *inner, lmc_dataset **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_cached: NULL out");
    *out = NULL;
    if (!inner) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_cached: NULL dataset");
    return cache_wrap(inner, out);
}

size_t lmc_dataset_len(const lmc_dataset *d) { return d ? d->len : 0; }

lmc_dataset_format lmc_dataset_format_of(const lmc_dataset *d) {
    return d ? d->format : LMC_DATASET_AUTO;
}

static lmc_status range_check(const lmc_dataset *d, size_t i) {
    if (i >= d->len)
        return lmc_err(LMC_ERR_INVALID_ARG, "dataset index %zu out of range (%zu records)", i,
                       d->len);
    return LMC_OK;
}

/* Route a global index through concatenations to (file dataset, local index). */
static const lmc_dataset *route(const lmc_dataset *d, size_t *i) {
    while (d->kind != DS_FILE) {
        if (d->kind == DS_CACHE) {
            d = d->inner;
            continue;
        }
        size_t k = 0;
        while (*i >= d->parts[k]->len) *i -= d->parts[k++]->len;
        d = d->parts[k];
    }
    return d;
}

lmc_status lmc_dataset_record(const lmc_dataset *d, size_t i, char **json, const char **path,
                              size_t *line) {
    if (json) *json = NULL;
    if (!d) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_record: NULL dataset");
    lmc_status st = range_check(d, i);
    if (st) return st;
    const lmc_dataset *f = route(d, &i);
    const lmc_jsonl_line *l = &f->lines[i];
    if (json) {
        if (!(*json = malloc(l->len + 1)))
            return lmc_err(LMC_ERR_NOMEM, "%s:%zu: out of memory", f->path, l->line);
        memcpy(*json, f->text + l->off, l->len);
        (*json)[l->len] = '\0';
    }
    if (path) *path = f->path;
    if (line) *line = l->line;
    return LMC_OK;
}

/* The id appended to text records: the tokenizer's eos_token, as the
 * reference uses tokenizer.eos_token_id; -1 when there is none. */
static int32_t text_eos(const lmc_tokenizer *t) {
    const char *s = lmc_tokenizer_special_token(t, "eos_token");
    int32_t id = s ? lmc_tokenizer_token_to_id(t, s) : -1;
    if (id >= 0) return id;
    const int32_t *ids;
    return lmc_tokenizer_eos_ids(t, &ids) ? ids[0] : -1;
}

static const char *to_json(json_object *o) {
    return json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
}

static lmc_status render_ids(const lmc_dataset *f, json_object *msgs, json_object *tools,
                             bool add_generation_prompt, int32_t **ids, size_t *n) {
    char *tools_json = NULL;
    if (tools && !(tools_json = strdup(to_json(tools))))
        return lmc_err(LMC_ERR_NOMEM, "out of memory");
    const char *mj = to_json(msgs);
    lmc_status st = !mj ? lmc_err(LMC_ERR_NOMEM, "out of memory")
                        : lmc_tokenizer_apply_chat_template_ids(f->tok, mj, tools_json,
                                                                add_generation_prompt, false, NULL,
                                                                ids, n);
    free(tools_json);
    return st;
}

static json_object *message(const char *role, json_object *content) {
    json_object *m = json_object_new_object();
    if (!m) return NULL;
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", json_object_get(content));
    return m;
}

/* Tokenize record i of a file dataset. */
static lmc_status process(const lmc_dataset *f, size_t i, int32_t **ids, size_t *n,
                          size_t *prompt) {
    const lmc_jsonl_line *l = &f->lines[i];
    *ids = NULL;
    *n = 0;
    *prompt = 0;
    if (!f->tok)
        return lmc_err(LMC_ERR_STATE, "%s:%zu: dataset has no tokenizer", f->path, l->line);
    json_object *o = NULL, *msgs = NULL;
    lmc_status st = lmc_jsonl_parse_line(f->text, l, f->path, &o);
    if (st) return st;
    json_object *tools = lmc_json_get(o, "tools");
    int32_t *pre = NULL;
    size_t n_pre = 0;
    if (f->format == LMC_DATASET_TEXT) {
        json_object *v = lmc_json_get(o, f->keys[KEY_TEXT]);
        st = lmc_tokenizer_encode(f->tok, json_object_get_string(v),
                                  (size_t)json_object_get_string_len(v), true, ids, n);
        int32_t eos = st ? -1 : text_eos(f->tok);
        if (eos >= 0 && (*n == 0 || (*ids)[*n - 1] != eos)) {
            int32_t *g = realloc(*ids, (*n + 1) * sizeof *g);
            if (!g) {
                st = lmc_err(LMC_ERR_NOMEM, "out of memory");
            } else {
                *ids = g;
                (*ids)[(*n)++] = eos;
            }
        }
    } else if (f->format == LMC_DATASET_CHAT) {
        msgs = json_object_get(lmc_json_get(o, f->keys[KEY_CHAT]));
        st = render_ids(f, msgs, tools, false, ids, n);
        if (!st && f->mask_prompt) {
            /* The conversation without its final message; a generation
             * prompt when that message is the assistant's. */
            size_t m = json_object_array_length(msgs);
            json_object *last = m ? json_object_array_get_idx(msgs, m - 1) : NULL;
            const char *role = lmc_json_str(last, "role", NULL);
            bool agp = role && !strcmp(role, "assistant");
            json_object *prefix = json_object_new_array();
            if (!prefix) st = lmc_err(LMC_ERR_NOMEM, "out of memory");
            for (size_t k = 0; !st && k + 1 < m; k++)
                json_object_array_add(prefix, json_object_get(json_object_array_get_idx(msgs, k)));
            if (!st) st = render_ids(f, prefix, tools, agp, &pre, &n_pre);
            json_object_put(prefix);
            *prompt = n_pre;
        }
    } else {
        json_object *p = lmc_json_get(o, f->keys[KEY_PROMPT]);
        json_object *c = lmc_json_get(o, f->keys[KEY_COMPLETION]);
        msgs = json_object_new_array();
        json_object *u = message("user", p), *a = message("assistant", c);
        if (!msgs || !u || !a) {
            json_object_put(u);
            json_object_put(a);
            st = lmc_err(LMC_ERR_NOMEM, "out of memory");
        } else {
            json_object_array_add(msgs, u);
            json_object_array_add(msgs, a);
            st = render_ids(f, msgs, tools, false, ids, n);
        }
        if (!st && f->mask_prompt) {
            json_object *prefix = json_object_new_array();
            if (!prefix) st = lmc_err(LMC_ERR_NOMEM, "out of memory");
            if (!st) {
                json_object_array_add(prefix, json_object_get(u));
                st = render_ids(f, prefix, tools, true, &pre, &n_pre);
            }
            json_object_put(prefix);
            *prompt = n_pre;
        }
    }
    free(pre);
    json_object_put(msgs);
    json_object_put(o);
    if (st) {
        free(*ids);
        *ids = NULL;
        *n = *prompt = 0;
        return lmc_err_prefix(st, "%s:%zu", f->path, l->line);
    }
    return LMC_OK;
}

static int32_t *copy_ids(const int32_t *ids, size_t n) {
    int32_t *c = malloc(n ? n * sizeof *c : 1);
    if (c && n) memcpy(c, ids, n * sizeof *c);
    return c;
}

/* Tokenize record i of any dataset. With `borrow`, *ids may point into a
 * cache entry (not to be freed); otherwise it is the caller's. */
static lmc_status get_any(lmc_dataset *d, size_t i, int32_t **ids, size_t *n, size_t *prompt,
                          bool *borrowed) {
    *borrowed = false;
    switch (d->kind) {
    case DS_FILE:
        return process(d, i, ids, n, prompt);
    case DS_CONCAT: {
        size_t k = 0;
        while (i >= d->parts[k]->len) i -= d->parts[k++]->len;
        return get_any(d->parts[k], i, ids, n, prompt, borrowed);
    }
    case DS_CACHE: {
        ds_entry *e = &d->entries[i];
        if (!e->done) {
            bool b;
            int32_t *v;
            size_t vn, vp;
            lmc_status st = get_any(d->inner, i, &v, &vn, &vp, &b);
            if (st) return st;
            if (b && !(v = copy_ids(v, vn)))
                return lmc_err(LMC_ERR_NOMEM, "dataset cache: out of memory");
            *e = (ds_entry){v, vn, vp, true};
        }
        *ids = e->ids;
        *n = e->n;
        *prompt = e->prompt;
        *borrowed = true;
        return LMC_OK;
    }
    }
    return lmc_err(LMC_ERR_STATE, "dataset: corrupt handle");
}

lmc_status lmc_dataset_get(lmc_dataset *d, size_t i, int32_t **ids, size_t *n_ids,
                           size_t *prompt_len) {
    if (ids) *ids = NULL;
    if (n_ids) *n_ids = 0;
    if (prompt_len) *prompt_len = 0;
    if (!d || !ids || !n_ids) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_get: NULL argument");
    lmc_status st = range_check(d, i);
    if (st) return st;
    int32_t *v;
    size_t n, p;
    bool borrowed;
    if ((st = get_any(d, i, &v, &n, &p, &borrowed))) return st;
    if (borrowed && !(v = copy_ids(v, n))) return lmc_err(LMC_ERR_NOMEM, "dataset: out of memory");
    *ids = v;
    *n_ids = n;
    if (prompt_len) *prompt_len = p;
    return LMC_OK;
}

lmc_status lmc_dataset_item_len(lmc_dataset *d, size_t i, size_t *n_tokens) {
    if (n_tokens) *n_tokens = 0;
    if (!d || !n_tokens) return lmc_err(LMC_ERR_INVALID_ARG, "lmc_dataset_item_len: NULL argument");
    lmc_status st = range_check(d, i);
    if (st) return st;
    int32_t *v;
    size_t n, p;
    bool borrowed;
    if ((st = get_any(d, i, &v, &n, &p, &borrowed))) return st;
    if (!borrowed) free(v);
    *n_tokens = n;
    return LMC_OK;
}
