/* Multi-turn chat session with incremental prefill.
 *
 * The session holds a prompt cache together with the exact token ids it
 * encodes (after an optional opaque prefix restored from disk, whose ids
 * are unknown). Each turn renders the whole conversation with the chat
 * template; when the rendered ids extend the known ids only the new suffix
 * is fed, otherwise (instructions changed, a template that is not prefix
 * stable) the cache is reset and the whole prompt is fed again. Speculative
 * sessions re-prefill every turn and keep no cache. */
#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include "lm/context.h"
#include "lm/generate.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    lmc_role role;
    char *content;
} chat_msg;

typedef struct {
    chat_msg *v;
    size_t n, cap;
} msg_list;

typedef enum { SLOT_EMPTY, SLOT_REALISED, SLOT_HISTORY, SLOT_SPEC_SPENT } slot_state;

struct lmc_chat_session {
    lmc_context *ctx;
    lmc_model *model;
    lmc_tokenizer *tok;
    char *instructions;
    char *template_kwargs;
    lmc_gen_params gen;
    int32_t *bias_ids; /* owned copies of the option's logit bias */
    float *bias_vals;
    lmc_context *draft;
    slot_state slot;
    lmc_prompt_cache *cache; /* SLOT_REALISED */
    msg_list replay;         /* SLOT_HISTORY: replayed on the first turn */
    msg_list history;        /* every turn run so far (system instructions excluded) */
    lmc_gen_stats last;
};

const char *lmc_role_str(lmc_role r) {
    switch (r) {
    case LMC_ROLE_SYSTEM: return "system";
    case LMC_ROLE_USER: return "user";
    case LMC_ROLE_ASSISTANT: return "assistant";
    case LMC_ROLE_TOOL: return "tool";
    }
    return "user";
}

static bool role_parse(const char *s, lmc_role *r) {
    for (int i = LMC_ROLE_SYSTEM; i <= LMC_ROLE_TOOL; i++)
        if (!strcmp(s, lmc_role_str((lmc_role)i))) {
            *r = (lmc_role)i;
            return true;
        }
    return false;
}

static void msgs_free(msg_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->v[i].content);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static bool msgs_push(msg_list *l, lmc_role role, const char *content, size_t len) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 8;
        chat_msg *v = realloc(l->v, cap * sizeof *v);
        if (!v) return false;
        l->v = v;
        l->cap = cap;
    }
    char *c = malloc(len + 1);
    if (!c) return false;
    memcpy(c, content, len);
    c[len] = 0;
    l->v[l->n++] = (chat_msg){role, c};
    return true;
}

static lmc_status parse_history(const char *json, msg_list *out) {
    json_object *arr = NULL;
    lmc_status st = lmc_json_parse(json, strlen(json), "chat history", &arr);
    if (st) return st;
    if (!json_object_is_type(arr, json_type_array)) {
        json_object_put(arr);
        return lmc_err(LMC_ERR_FORMAT, "chat history: expected a JSON array of messages");
    }
    size_t n = json_object_array_length(arr);
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(arr, i);
        bool bad = false;
        const char *role = json_object_is_type(m, json_type_object) ? lmc_json_str(m, "role", &bad) : NULL;
        const char *content = role ? lmc_json_str(m, "content", &bad) : NULL;
        lmc_role r;
        if (!role || !content || bad) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "chat history: message %zu needs string \"role\" and \"content\"", i);
            break;
        }
        if (!role_parse(role, &r)) {
            st = lmc_err(LMC_ERR_FORMAT,
                         "chat history: message %zu has unknown role \"%s\" (system, user, "
                         "assistant, tool)",
                         i, role);
            break;
        }
        if (!msgs_push(out, r, content, strlen(content))) {
            st = lmc_err(LMC_ERR_NOMEM, "chat history: out of memory");
            break;
        }
    }
    json_object_put(arr);
    if (st) msgs_free(out);
    return st;
}

static lmc_status set_str(char **dst, const char *src) {
    char *c = NULL;
    if (src && !(c = strdup(src))) return lmc_err(LMC_ERR_NOMEM, "chat session: out of memory");
    free(*dst);
    *dst = c;
    return LMC_OK;
}

lmc_status lmc_chat_session_set_template_kwargs(lmc_chat_session *s, const char *json) {
    if (!s) return lmc_err(LMC_ERR_INVALID_ARG, "chat session: NULL session");
    if (json) {
        json_object *o = NULL;
        lmc_status st = lmc_json_parse(json, strlen(json), "template kwargs", &o);
        if (st) return st;
        bool ok = json_object_is_type(o, json_type_object);
        json_object_put(o);
        if (!ok) return lmc_err(LMC_ERR_FORMAT, "template kwargs: expected a JSON object");
    }
    return set_str(&s->template_kwargs, json);
}

lmc_status lmc_chat_session_set_instructions(lmc_chat_session *s, const char *instructions) {
    if (!s) return lmc_err(LMC_ERR_INVALID_ARG, "chat session: NULL session");
    return set_str(&s->instructions, instructions);
}

void lmc_chat_session_free(lmc_chat_session *s) {
    if (!s) return;
    lmc_prompt_cache_free(s->cache);
    msgs_free(&s->replay);
    msgs_free(&s->history);
    free(s->instructions);
    free(s->template_kwargs);
    free(s->bias_ids);
    free(s->bias_vals);
    free(s);
}

lmc_status lmc_chat_session_new(lmc_context *ctx, const lmc_chat_options *o,
                                lmc_chat_session **out) {
    if (!ctx || !out) return lmc_err(LMC_ERR_INVALID_ARG, "chat session: NULL argument");
    *out = NULL;
    lmc_chat_options none = {0};
    if (!o) o = &none;
    if (o->cache && o->draft)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "chat session: a restored cache cannot be combined with speculative "
                       "decoding: the speculative path rebuilds its caches every turn, so the "
                       "restored prefix (whose token ids are unknown) would be lost after the "
                       "first turn; drop the cache, or drop the draft model");
    if (o->cache && o->history_json)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "chat session: history_json and cache are mutually exclusive (a "
                       "restored cache already encodes its conversation)");
    lmc_model *m = lmc_context_model(ctx);
    if (o->cache && o->cache->model != m)
        return lmc_err(LMC_ERR_INVALID_ARG, "chat session: the restored cache belongs to another model");
    if (o->draft) {
        size_t a = lmc_tokenizer_vocab_size(lmc_context_tokenizer(ctx));
        size_t b = lmc_tokenizer_vocab_size(lmc_context_tokenizer(o->draft));
        if (a != b)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "chat session: the draft model's tokenizer has %zu tokens but the "
                           "model's has %zu; speculative decoding needs a shared vocabulary",
                           b, a);
    }
    lmc_chat_session *s = calloc(1, sizeof *s);
    if (!s) return lmc_err(LMC_ERR_NOMEM, "chat session: out of memory");
    s->ctx = ctx;
    s->model = m;
    s->tok = lmc_context_tokenizer(ctx);
    s->draft = o->draft;
    if (o->gen) s->gen = *o->gen;
    else lmc_gen_params_default(&s->gen);
    s->gen.stop = NULL; /* a session ends turns on eos only */
    s->gen.n_stop = 0;
    s->gen.draft = o->draft;
    if (o->num_draft_tokens) s->gen.num_draft_tokens = o->num_draft_tokens;
    if (s->gen.num_draft_tokens == 0) s->gen.num_draft_tokens = 5;
    lmc_status st = LMC_OK;
    size_t nb = s->gen.sampler.n_logit_bias;
    if (nb) {
        s->bias_ids = malloc(nb * sizeof *s->bias_ids);
        s->bias_vals = malloc(nb * sizeof *s->bias_vals);
        if (!s->bias_ids || !s->bias_vals || !s->gen.sampler.logit_bias_ids ||
            !s->gen.sampler.logit_bias_values) {
            st = lmc_err(LMC_ERR_INVALID_ARG, "chat session: logit bias arrays missing or out of memory");
            goto fail;
        }
        memcpy(s->bias_ids, s->gen.sampler.logit_bias_ids, nb * sizeof *s->bias_ids);
        memcpy(s->bias_vals, s->gen.sampler.logit_bias_values, nb * sizeof *s->bias_vals);
        s->gen.sampler.logit_bias_ids = s->bias_ids;
        s->gen.sampler.logit_bias_values = s->bias_vals;
    }
    if ((st = set_str(&s->instructions, o->instructions))) goto fail;
    if ((st = lmc_chat_session_set_template_kwargs(s, o->template_kwargs_json))) goto fail;
    if (o->history_json) {
        if ((st = parse_history(o->history_json, &s->replay))) goto fail;
        s->slot = SLOT_HISTORY;
    }
    if (o->cache) {
        /* the restored prefix is opaque: its ids are never re-rendered */
        s->cache = o->cache;
        s->cache->opaque = lmc_kv_cache_len(s->cache->kv);
        s->cache->known.n = 0;
        s->slot = SLOT_REALISED;
    }
    *out = s;
    return LMC_OK;
fail:
    lmc_chat_session_free(s);
    return st;
}

static bool add_msg_json(json_object *arr, lmc_role role, const char *content) {
    json_object *m = json_object_new_object();
    if (!m) return false;
    json_object_object_add(m, "role", json_object_new_string(lmc_role_str(role)));
    json_object_object_add(m, "content", json_object_new_string(content));
    return json_object_array_add(arr, m) == 0;
}

/* Render instructions + (replayed) history + the new message and encode. */
static lmc_status render_turn(lmc_chat_session *s, lmc_role role, const char *message,
                              int32_t **ids, size_t *n) {
    json_object *arr = json_object_new_array();
    if (!arr) return lmc_err(LMC_ERR_NOMEM, "chat session: out of memory");
    bool ok = true;
    if (s->instructions) ok = add_msg_json(arr, LMC_ROLE_SYSTEM, s->instructions);
    if (s->slot == SLOT_HISTORY)
        for (size_t i = 0; ok && i < s->replay.n; i++)
            ok = add_msg_json(arr, s->replay.v[i].role, s->replay.v[i].content);
    for (size_t i = 0; ok && i < s->history.n; i++)
        ok = add_msg_json(arr, s->history.v[i].role, s->history.v[i].content);
    if (ok) ok = add_msg_json(arr, role, message);
    const char *js = ok ? json_object_to_json_string_ext(arr, JSON_C_TO_STRING_PLAIN |
                                                                   JSON_C_TO_STRING_NOSLASHESCAPE)
                        : NULL;
    if (!js) {
        json_object_put(arr);
        return lmc_err(LMC_ERR_NOMEM, "chat session: out of memory");
    }
    char *text = NULL;
    lmc_status st = lmc_tokenizer_apply_chat_template(s->tok, js, NULL, true, false,
                                                      s->template_kwargs, &text);
    json_object_put(arr);
    if (st) return lmc_err_prefix(st, "chat session: rendering the conversation");
    st = lmc_tokenizer_encode(s->tok, text, strlen(text), false, ids, n);
    lmc_free(text);
    if (st) return lmc_err_prefix(st, "chat session: encoding the rendered prompt");
    if (*n == 0) {
        lmc_free(*ids);
        *ids = NULL;
        return lmc_err(LMC_ERR_TEMPLATE, "chat session: the chat template rendered an empty prompt");
    }
    return LMC_OK;
}

lmc_status lmc_chat_session_stream(lmc_chat_session *s, lmc_role role, const char *message,
                                   lmc_gen_callback cb, void *user) {
    if (!s || !message) return lmc_err(LMC_ERR_INVALID_ARG, "chat session: NULL argument");
    if (role < LMC_ROLE_SYSTEM || role > LMC_ROLE_TOOL)
        return lmc_err(LMC_ERR_INVALID_ARG, "chat session: unknown role %d", (int)role);
    int32_t *ids = NULL;
    size_t n = 0;
    lmc_status st = render_turn(s, role, message, &ids, &n);
    if (st) return st; /* nothing is recorded */
    lmc_gen_params gen = s->gen;
    gen.stop = NULL;
    gen.n_stop = 0;
    gen.draft = s->draft;
    lmc_emitter e;
    st = lmc_emitter_init(&e, s->tok, &gen, cb, user);
    if (st) {
        lmc_free(ids);
        return st;
    }
    e.prompt_tokens = n;

    /* take (or build) the cache before committing anything to the history */
    lmc_prompt_cache *cache = NULL;
    lmc_kv_cache *dkv = NULL;
    if (s->draft) {
        st = lmc_prompt_cache_create(s->model, &cache);
        if (!st) st = lmc_kv_cache_new(lmc_context_model(s->draft), &dkv);
    } else if (s->slot == SLOT_REALISED) {
        cache = s->cache;
        s->cache = NULL;
    } else {
        st = lmc_prompt_cache_create(s->model, &cache);
    }
    if (st) {
        lmc_prompt_cache_free(cache);
        lmc_emitter_free(&e);
        lmc_free(ids);
        return st;
    }

    /* commit the replayed history and the new message */
    size_t hist_before = s->history.n;
    bool ok = true;
    if (s->slot == SLOT_HISTORY) {
        for (size_t i = 0; ok && i < s->replay.n; i++)
            ok = msgs_push(&s->history, s->replay.v[i].role, s->replay.v[i].content,
                           strlen(s->replay.v[i].content));
    }
    if (ok) ok = msgs_push(&s->history, role, message, strlen(message));
    if (!ok) {
        /* roll back so a failed turn leaves no trace */
        while (s->history.n > hist_before) free(s->history.v[--s->history.n].content);
        if (!s->draft && s->slot == SLOT_REALISED) s->cache = cache;
        else lmc_prompt_cache_free(cache);
        lmc_kv_cache_free(dkv);
        lmc_emitter_free(&e);
        lmc_free(ids);
        return lmc_err(LMC_ERR_NOMEM, "chat session: out of memory");
    }
    msgs_free(&s->replay);

    memset(&s->last, 0, sizeof s->last);
    s->last.prompt_tokens = n;
    if (s->draft) {
        /* speculative: always the whole conversation over fresh caches */
        st = lmc_speculative_loop(s->model, cache->kv, lmc_context_model(s->draft), dkv, NULL, 0,
                                  ids, n, &gen, &e, &s->last);
        lmc_prompt_cache_free(cache);
        lmc_kv_cache_free(dkv);
        s->slot = SLOT_SPEC_SPENT;
    } else {
        const int32_t *known = cache->known.v;
        size_t nk = cache->known.n;
        bool extends = n > nk && (nk == 0 || !memcmp(ids, known, nk * sizeof *ids));
        size_t start = nk;
        if (!extends) {
            lmc_kv_cache_clear(cache->kv);
            cache->opaque = 0;
            cache->known.n = 0;
            start = 0;
            s->last.cache_rebuilt = true;
        }
        st = lmc_decode_loop(s->model, cache->kv, ids, start, ids + start, n - start, &gen, &e,
                             &s->last);
        lmc_status s2 = lmc_prompt_cache_settle(cache, ids, n, e.generated.v, e.generated.n);
        if (s2) {
            /* unknown contents: the next turn must rebuild */
            cache->opaque = lmc_kv_cache_len(cache->kv);
            cache->known.n = 0;
            if (!st) st = s2;
        }
        s->cache = cache;
        s->slot = SLOT_REALISED;
    }
    s->last.prompt_tokens = n;

    /* the reply so far (early stop or error included) closes the turn */
    lmc_emitter_close(&e);
    const char *reply = e.reply.p ? e.reply.p : "";
    if (!msgs_push(&s->history, LMC_ROLE_ASSISTANT, reply, e.reply.len) && !st)
        st = lmc_err(LMC_ERR_NOMEM, "chat session: out of memory");
    lmc_emitter_free(&e);
    lmc_free(ids);
    return st;
}

lmc_status lmc_chat_session_respond(lmc_chat_session *s, const char *message, char **reply) {
    if (!reply) return lmc_err(LMC_ERR_INVALID_ARG, "chat session: NULL reply pointer");
    *reply = NULL;
    /* no callback: the streamed text is not collected again, since the
     * recorded reply already holds it (plus a tail flushed after the last
     * token) */
    lmc_status st = lmc_chat_session_stream(s, LMC_ROLE_USER, message, NULL, NULL);
    if (st) return st;
    const char *rec = s->history.n ? s->history.v[s->history.n - 1].content : "";
    *reply = strdup(rec);
    return *reply ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "chat session: out of memory");
}

void lmc_chat_session_clear(lmc_chat_session *s) {
    if (!s) return;
    lmc_prompt_cache_free(s->cache);
    s->cache = NULL;
    msgs_free(&s->replay);
    msgs_free(&s->history);
    s->slot = SLOT_EMPTY;
}

lmc_gen_params *lmc_chat_session_params(lmc_chat_session *s) { return s ? &s->gen : NULL; }

size_t lmc_chat_session_history_len(const lmc_chat_session *s) { return s ? s->history.n : 0; }

const char *lmc_chat_session_history_at(const lmc_chat_session *s, size_t i, lmc_role *role) {
    if (!s || i >= s->history.n) return NULL;
    if (role) *role = s->history.v[i].role;
    return s->history.v[i].content;
}

bool lmc_chat_session_has_cache(const lmc_chat_session *s) {
    return s && s->slot == SLOT_REALISED;
}

lmc_status lmc_chat_session_save_cache(const lmc_chat_session *s, const char *path) {
    if (!s || !path) return lmc_err(LMC_ERR_INVALID_ARG, "chat session: NULL argument");
    if (s->slot == SLOT_SPEC_SPENT)
        return lmc_err(LMC_ERR_STATE,
                       "chat session: speculative-decoding sessions do not support cache save: "
                       "the speculative path rebuilds its caches every turn, so no cache "
                       "encodes the conversation");
    if (s->slot != SLOT_REALISED || !s->cache)
        return lmc_err(LMC_ERR_STATE,
                       "chat session: no KV cache is available: run a turn before saving the "
                       "cache");
    return lmc_prompt_cache_save(s->cache, path);
}

void lmc_chat_session_last_stats(const lmc_chat_session *s, lmc_gen_stats *stats) {
    if (!stats) return;
    if (!s) {
        memset(stats, 0, sizeof *stats);
        return;
    }
    *stats = s->last;
}
