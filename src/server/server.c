/* The OpenAI-compatible HTTP server over libmicrohttpd.
 *
 * Threads: libmicrohttpd runs one thread per connection. A streaming reply
 * gets its own generation thread that appends Server-Sent Events to a
 * buffer the connection thread drains (blocking in the content reader is
 * allowed in thread-per-connection mode). Every use of the context (chat
 * template, tokenizer, model, prompt cache) happens while holding the
 * model through the admission line (admission.h), so requests generate one
 * at a time and a bounded number wait. Connections are tracked (conn.h)
 * for deadlines, client-gone checks and the access log; keys, origins and
 * Host names are checked first (auth.h). */
#include "base/buf.h"
#include "base/error.h"
#include "lm/context.h"
#include "lm/generate.h"
#include "server/admission.h"
#include "server/auth.h"
#include "server/chat_output.h"
#include "server/conn.h"
#include "server/request.h"
#include "server/responses.h"
#include "server/stub.h"
#include <arpa/inet.h>
#include <json-c/json.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define DEFAULT_MAX_BODY ((size_t)8 << 20)
/* a body sent without Content-Length is drained (for a clean 413) until
 * this multiple of the cap, then the connection is dropped */
#define DRAIN_FACTOR 4
#define DEFAULT_QUEUE 16
#define DEFAULT_CACHE_KEEP 8192
#define DEFAULT_PENDING 128
#define DEFAULT_PER_IP 128
#define DEFAULT_HEADER_S 10
#define DEFAULT_BODY_S 60
/* connection slots beyond the pending ones and the admitted requests, for
 * /health and /v1/models */
#define RESERVED_SLOTS 32
#define GONE_POLL_MS 50

struct lmc_server {
    lmc_context *ctx;
    struct MHD_Daemon *daemon;
    lmc_srv_admission adm;   /* holding it = using the context */
    lmc_srv_conns conns;
    lmc_srv_auth auth;
    bool loopback;           /* bound to a loopback address: Host is checked */
    bool use_cache;
    lmc_prompt_cache *cache; /* KV of the previous request, reused by prefix */
    char *cache_owner;       /* key index and cache_salt the cache was built for */
    size_t cache_keep, max_tokens_cap;
    atomic_size_t cached_tokens;
    lmc_gen_params defaults;
    lmc_srv_out_cfg out_cfg; /* tool-call format and reasoning split of chat replies */
    char **default_stops;
    int32_t *default_bias_ids;
    float *default_bias_vals;
    char *model_name;
    size_t max_body, vocab;
    uint16_t port;
    time_t started;
    atomic_bool stopping;
    bool conns_up;
    atomic_ullong counter;
};

typedef enum { R_NONE, R_HEALTH, R_MODELS, R_CHAT, R_COMPLETIONS, R_RESPONSES } route;

typedef struct {
    route r;
    lmc_buf body;
    size_t received;
    bool too_big;
    int key;          /* index of the API key the request carried */
    lmc_srv_conn *k;  /* the connection's record (may be NULL) */
} conn_state;

/* ---------------------------------------------------------------- replies */
/* Browser clients (web UIs calling an OpenAI-compatible endpoint) need CORS.
 * A request reaching a reply carries no Origin or an allowed one (the gate
 * refuses the rest), so its Origin is echoed back. */
static void add_cors(struct MHD_Connection *c, struct MHD_Response *r) {
    const char *origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
    lmc_srv_conn *k = lmc_srv_conn_of(c);
    if (!origin || !k || !lmc_srv_conn_cors(k)) return;
    MHD_add_response_header(r, "Access-Control-Allow-Origin", origin);
    MHD_add_response_header(r, "Vary", "Origin");
}

static enum MHD_Result queue(struct MHD_Connection *c, unsigned code, struct MHD_Response *r) {
    lmc_srv_conn_status(lmc_srv_conn_of(c), code);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply_preflight(struct MHD_Connection *c, const char *methods) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    add_cors(c, r);
    MHD_add_response_header(r, "Access-Control-Allow-Methods", methods);
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
    MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    return queue(c, 204, r);
}

/* `extra`: one more header as "Name", "value" (NULL: none). */
static enum MHD_Result reply_h(struct MHD_Connection *c, unsigned code, char *body,
                               const char *ctype, const char *allow, const char *const *extra) {
    if (!body) {
        code = 500;
        body = strdup("{\"error\":{\"message\":\"out of memory\",\"type\":\"server_error\","
                      "\"param\":null,\"code\":null}}");
        if (!body) return MHD_NO;
    }
    struct MHD_Response *r =
        MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", ctype);
    if (allow) MHD_add_response_header(r, "Allow", allow);
    if (extra) MHD_add_response_header(r, extra[0], extra[1]);
    add_cors(c, r);
    return queue(c, code, r);
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, char *body,
                             const char *ctype, const char *allow) {
    return reply_h(c, code, body, ctype, allow, NULL);
}

static enum MHD_Result reply_json(struct MHD_Connection *c, unsigned code, json_object *o) {
    const char *s =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *body = s ? strdup(s) : NULL;
    json_object_put(o);
    return reply(c, code, body, "application/json", NULL);
}

static enum MHD_Result reply_error(struct MHD_Connection *c, unsigned code, const char *type,
                                   const char *message, const char *param, const char *allow) {
    return reply(c, code, lmc_srv_error_json(type, message, param), "application/json", allow);
}

static enum MHD_Result reply_coded(struct MHD_Connection *c, unsigned code, const char *type,
                                   const char *message, const char *param, const char *ecode,
                                   const char *const *extra) {
    return reply_h(c, code, lmc_srv_error_json_code(type, message, param, ecode),
                   "application/json", NULL, extra);
}

/* A library failure while serving: the caller's fault (400) or ours (500);
 * `code` (may be NULL) is the OpenAI error code. */
static enum MHD_Result reply_status(struct MHD_Connection *c, lmc_status st, const char *param,
                                    const char *code) {
    bool client = st == LMC_ERR_INVALID_ARG || st == LMC_ERR_FORMAT || st == LMC_ERR_LIMIT ||
                  st == LMC_ERR_TEMPLATE;
    return reply_coded(c, client ? 400 : 500, client ? "invalid_request_error" : "server_error",
                       lmc_last_error(), client ? param : NULL, client ? code : NULL, NULL);
}

/* ------------------------------------------------------------- JSON bits */
static json_object *jstr(const char *s) {
    char *t = lmc_srv_utf8_sanitize(s, strlen(s));
    json_object *o = json_object_new_string(t ? t : "");
    free(t);
    return o;
}

/* prompt_tokens_details.cached_tokens: the prompt tokens the cache held */
static json_object *usage_json(const lmc_gen_stats *st) {
    size_t prompt = st->prompt_tokens, completion = st->generation_tokens;
    size_t cached = st->prefill_tokens < prompt ? prompt - st->prefill_tokens : 0;
    json_object *u = json_object_new_object();
    json_object_object_add(u, "prompt_tokens", json_object_new_int64((int64_t)prompt));
    json_object_object_add(u, "completion_tokens", json_object_new_int64((int64_t)completion));
    json_object_object_add(u, "total_tokens", json_object_new_int64((int64_t)(prompt + completion)));
    json_object *d = json_object_new_object();
    json_object_object_add(d, "cached_tokens", json_object_new_int64((int64_t)cached));
    json_object_object_add(u, "prompt_tokens_details", d);
    return u;
}

/* The frame every reply object shares: id, object, created, model. */
static json_object *frame(const lmc_server *s, const char *id, const char *object, time_t created) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "object", json_object_new_string(object));
    json_object_object_add(o, "created", json_object_new_int64((int64_t)created));
    json_object_object_add(o, "model", jstr(s->model_name));
    return o;
}

static const char *finish_str(lmc_finish_reason r) {
    return r == LMC_FINISH_LENGTH ? "length" : "stop";
}

/* Text of one token for logprobs (special tokens shown), sanitized. */
static char *token_text(lmc_server *s, int32_t id) {
    char *t = NULL;
    if (lmc_context_decode(s->ctx, &id, 1, false, &t)) {
        lmc_err_clear();
        return strdup("");
    }
    char *clean = lmc_srv_utf8_sanitize(t, strlen(t));
    lmc_free(t);
    return clean;
}

static json_object *bytes_json(const char *t) {
    json_object *b = json_object_new_array();
    for (const unsigned char *p = (const unsigned char *)t; *p; p++)
        json_object_array_add(b, json_object_new_int(*p));
    return b;
}

/* chat: {"token","logprob","bytes","top_logprobs":[...]} */
static json_object *chat_logprob_entry(lmc_server *s, const lmc_gen_response *r) {
    json_object *e = json_object_new_object();
    char *t = token_text(s, r->token);
    json_object_object_add(e, "token", json_object_new_string(t ? t : ""));
    json_object_object_add(e, "logprob", json_object_new_double((double)r->logprob));
    json_object_object_add(e, "bytes", bytes_json(t ? t : ""));
    free(t);
    json_object *tops = json_object_new_array();
    for (size_t i = 0; i < r->n_top; i++) {
        json_object *x = json_object_new_object();
        char *tt = token_text(s, r->top_ids[i]);
        json_object_object_add(x, "token", json_object_new_string(tt ? tt : ""));
        json_object_object_add(x, "logprob", json_object_new_double((double)r->top_logprobs[i]));
        json_object_object_add(x, "bytes", bytes_json(tt ? tt : ""));
        free(tt);
        json_object_array_add(tops, x);
    }
    json_object_object_add(e, "top_logprobs", tops);
    return e;
}

static json_object *array_at(json_object *o, const char *key) {
    json_object *a = NULL;
    if (json_object_object_get_ex(o, key, &a) && a) return a;
    a = json_object_new_array();
    json_object_object_add(o, key, a);
    return a;
}

/* completions (legacy): parallel arrays tokens / token_logprobs /
 * top_logprobs / text_offset, created on first use inside `lp`. */
static void completion_logprob_add(lmc_server *s, json_object *lp, const lmc_gen_response *r,
                                   size_t text_offset) {
    static const char *keys[] = {"tokens", "token_logprobs", "top_logprobs", "text_offset"};
    json_object *arr[4];
    for (int i = 0; i < 4; i++) arr[i] = array_at(lp, keys[i]);
    char *t = token_text(s, r->token);
    json_object_array_add(arr[0], json_object_new_string(t ? t : ""));
    free(t);
    json_object_array_add(arr[1], json_object_new_double((double)r->logprob));
    json_object *tops = json_object_new_object();
    for (size_t i = 0; i < r->n_top; i++) {
        char *tt = token_text(s, r->top_ids[i]);
        json_object_object_add(tops, tt ? tt : "", json_object_new_double((double)r->top_logprobs[i]));
        free(tt);
    }
    json_object_array_add(arr[2], tops);
    json_object_array_add(arr[3], json_object_new_int64((int64_t)text_offset));
}

/* --------------------------------------------------------- prompt + run */
/* The prompt continued by `text` (its special tokens recognised). */
static lmc_status append_encoded(lmc_server *s, const char *text, int32_t **ids, size_t *n) {
    int32_t *more = NULL;
    size_t m = 0;
    lmc_status st = lmc_context_encode(s->ctx, text, strlen(text), false, &more, &m);
    int32_t *all = st ? NULL : realloc(*ids, (*n + m) * sizeof *all);
    if (!st && !all) st = lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    if (!st) {
        memcpy(all + *n, more, m * sizeof *more);
        *ids = all;
        *n += m;
    }
    lmc_free(more);
    return st;
}

/* Holding the model: the prompt's token ids. *param names the field a
 * failure belongs to, *code its OpenAI error code (NULL: none). */
static lmc_status build_prompt(lmc_server *s, const lmc_srv_request *rq, int32_t **ids, size_t *n,
                               const char **param, const char **code) {
    *code = NULL;
    const lmc_tokenizer *tok = lmc_context_tokenizer(s->ctx);
    if (rq->kind == LMC_SRV_CHAT) {
        *param = "messages";
        lmc_status st = lmc_tokenizer_apply_chat_template_ids(
            tok, rq->messages_json, rq->tools_json, true, false, rq->template_kwargs_json, ids, n);
        if (st) return lmc_err_prefix(st, "messages: applying the chat template");
        if (rq->forced_prefix) st = append_encoded(s, rq->forced_prefix, ids, n);
        if (st) return st;
    } else if (rq->prompt_ids) {
        *param = "prompt";
        *ids = malloc(rq->n_prompt_ids * sizeof **ids);
        if (!*ids) return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
        memcpy(*ids, rq->prompt_ids, rq->n_prompt_ids * sizeof **ids);
        *n = rq->n_prompt_ids;
    } else {
        *param = "prompt";
        lmc_status st = lmc_context_encode(s->ctx, rq->prompt, strlen(rq->prompt), true, ids, n);
        if (st) return lmc_err_prefix(st, "prompt: encoding");
    }
    if (*n == 0) return lmc_err(LMC_ERR_INVALID_ARG, "%s: the prompt has no tokens", *param);
    /* a tokenizer larger than the model's embedding table */
    for (size_t i = 0; i < *n; i++)
        if ((*ids)[i] < 0 || (size_t)(*ids)[i] >= s->vocab)
            return lmc_err(LMC_ERR_INVALID_ARG,
                           "%s: prompt token %zu = %d is outside the model's vocabulary (%zu)",
                           *param, i, (*ids)[i], s->vocab);
    size_t n_ctx = lmc_gen_context_len(lmc_context_model(s->ctx), &rq->gen);
    if (n_ctx && *n >= n_ctx) {
        *code = "context_length_exceeded";
        return lmc_err(LMC_ERR_LIMIT,
                       "%s: the prompt has %zu tokens but the context holds %zu (%s), leaving no "
                       "room to generate",
                       *param, *n, n_ctx,
                       rq->gen.max_context ? "--max-context" : "max_position_embeddings");
    }
    return LMC_OK;
}

/* Holding the model: the prompt cache serves only requests with the same
 * API key and cache_salt; another owner starts from an empty cache. */
static lmc_prompt_cache *cache_for(lmc_server *s, const lmc_srv_request *rq, int key) {
    if (!s->use_cache || rq->gen.draft) return NULL;
    char owner[LMC_SRV_MAX_CACHE_SALT + 32];
    snprintf(owner, sizeof owner, "%d:%s", key, rq->cache_salt ? rq->cache_salt : "");
    if (s->cache && s->cache_owner && !strcmp(owner, s->cache_owner)) return s->cache;
    lmc_prompt_cache_free(s->cache);
    s->cache = NULL;
    free(s->cache_owner);
    s->cache_owner = strdup(owner);
    if (!s->cache_owner || lmc_prompt_cache_new(s->ctx, &s->cache)) {
        lmc_err_clear(); /* this request goes without a cache */
        s->cache = NULL;
    }
    return s->cache;
}

/* Holding the model, after a request: a cache grown past cache_keep tokens
 * gives its memory back. */
static void cache_settle(lmc_server *s) {
    if (s->cache && lmc_prompt_cache_len(s->cache) > s->cache_keep) {
        lmc_prompt_cache_free(s->cache);
        s->cache = NULL;
    }
    atomic_store(&s->cached_tokens, s->cache ? lmc_prompt_cache_len(s->cache) : 0);
}

/* Why a request stops early: the server stops or its client left. */
typedef struct {
    lmc_server *s;
    lmc_srv_conn *k;
    atomic_bool *released; /* streaming: the reply is gone (may be NULL) */
} watch;

static bool watch_cancel(void *user) {
    watch *w = user;
    return atomic_load(&w->s->stopping) || (w->released && atomic_load(w->released)) ||
           lmc_srv_conn_gone(&w->s->conns, w->k);
}

/* Not admitted: 429 when the line is full; when the client left, no reply
 * (MHD_NO closes the connection); 503 while stopping. */
static enum MHD_Result refuse(lmc_server *s, struct MHD_Connection *con, lmc_srv_adm_result a) {
    if (a == LMC_ADM_FULL) {
        char msg[160], after[24];
        size_t waiting = lmc_srv_adm_waiting(&s->adm);
        snprintf(msg, sizeof msg, "the server is busy: %zu requests are already waiting for the "
                 "model; retry later", waiting);
        snprintf(after, sizeof after, "%zu", waiting / 4 + 1);
        const char *h[2] = {"Retry-After", after};
        return reply_coded(con, 429, "requests", msg, NULL, "rate_limit_exceeded", h);
    }
    if (atomic_load(&s->stopping))
        return reply_error(con, 503, "server_error", "the server is shutting down", NULL, NULL);
    lmc_srv_conn_status(lmc_srv_conn_of(con), 499);
    return MHD_NO;
}

/* Holding the model. */
static lmc_status run_generation(lmc_server *s, const lmc_srv_request *rq, int key,
                                 const int32_t *ids, size_t n, lmc_gen_callback cb, void *user,
                                 lmc_gen_stats *stats) {
    lmc_status st =
        lmc_generate_ids(s->ctx, ids, n, &rq->gen, cache_for(s, rq, key), cb, user, stats);
    cache_settle(s);
    return st;
}

static void make_id(lmc_server *s, const char *prefix, char *out, size_t n) {
    uint64_t x = atomic_fetch_add(&s->counter, 1) + (uint64_t)time(NULL) * 0x9E3779B97F4A7C15ull +
                 (uint64_t)(uintptr_t)s;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    snprintf(out, n, "%s-%016llx", prefix, (unsigned long long)x);
}

/* ------------------------------------------------------ non-streaming */
typedef struct {
    lmc_server *s;
    const lmc_srv_request *rq;
    lmc_buf text;
    json_object *lp; /* chat: array; completions: object of arrays; NULL: off */
    bool oom;
} collect;

static bool collect_cb(void *user, const lmc_gen_response *r) {
    collect *c = user;
    size_t off = c->text.len;
    if (!lmc_buf_puts(&c->text, r->text)) c->oom = true;
    if (c->lp) {
        if (c->rq->kind == LMC_SRV_CHAT) json_object_array_add(c->lp, chat_logprob_entry(c->s, r));
        else completion_logprob_add(c->s, c->lp, r, off);
    }
    return !c->oom && !atomic_load(&c->s->stopping);
}

static enum MHD_Result serve_blocking(lmc_server *s, struct MHD_Connection *con,
                                      const conn_state *cs, lmc_srv_request *rq) {
    if (lmc_srv_tools_constrain(&s->out_cfg, rq))
        return reply_error(con, 400, "invalid_request_error", lmc_last_error(), rq->param, NULL);
    watch w = {.s = s, .k = cs->k};
    rq->gen.cancel = watch_cancel;
    rq->gen.cancel_user = &w;
    lmc_srv_adm_result a = lmc_srv_adm_acquire(&s->adm, watch_cancel, &w, GONE_POLL_MS);
    if (a != LMC_ADM_HELD) return refuse(s, con, a);
    collect c = {.s = s, .rq = rq};
    lmc_buf_puts(&c.text, "");
    size_t shown_from = 0; /* the forced prefix is parsed, never shown as text */
    if (rq->logprobs)
        c.lp = rq->kind == LMC_SRV_CHAT ? json_object_new_array() : json_object_new_object();
    int32_t *ids = NULL;
    size_t n = 0;
    const char *param = NULL, *code = NULL;
    lmc_gen_stats stats = {0};
    lmc_output_opts oo = {0};
    if (rq->forced_prefix) {
        lmc_buf_puts(&c.text, rq->forced_prefix);
        shown_from = c.text.len;
    }
    lmc_status st = build_prompt(s, rq, &ids, &n, &param, &code);
    if (!st) {
        oo = lmc_srv_out_opts(&s->out_cfg, rq, lmc_context_tokenizer(s->ctx), ids, n);
        st = run_generation(s, rq, cs->key, ids, n, collect_cb, &c, &stats);
        if (st) param = NULL;
    }
    lmc_srv_adm_release(&s->adm);
    lmc_free(ids);
    if (!st && c.oom) st = lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    if (st) {
        lmc_buf_free(&c.text);
        json_object_put(c.lp);
        if (st == LMC_ERR_CANCELLED) return refuse(s, con, LMC_ADM_GONE);
        return reply_status(con, st, param, code);
    }
    char id[64];
    bool chat = rq->kind == LMC_SRV_CHAT;
    if (rq->responses) {
        make_id(s, "resp", id, sizeof id);
        lmc_model_output m;
        st = lmc_output_parse(&oo, c.text.p, &m);
        json_object_put(c.lp);
        lmc_buf_free(&c.text);
        if (st) return reply_status(con, st, NULL, NULL);
        json_object *o = lmc_srv_response_json(id, s->model_name, time(NULL), &m,
                                               finish_str(stats.finish_reason), stats.prompt_tokens,
                                               stats.generation_tokens);
        lmc_model_output_free(&m);
        return reply_json(con, 200, o);
    }
    make_id(s, chat ? "chatcmpl" : "cmpl", id, sizeof id);
    json_object *o = frame(s, id, chat ? "chat.completion" : "text_completion", time(NULL));
    json_object *choice = json_object_new_object();
    json_object_object_add(choice, "index", json_object_new_int(0));
    const char *finish = finish_str(stats.finish_reason);
    if (chat) {
        json_object *m = json_object_new_object();
        json_object_object_add(m, "role", json_object_new_string("assistant"));
        if (lmc_srv_chat_message(&oo, c.text.p, m, &finish))
            json_object_object_add(m, "content", jstr(c.text.p + shown_from));
        json_object_object_add(choice, "message", m);
        if (c.lp) {
            json_object *w = json_object_new_object();
            json_object_object_add(w, "content", c.lp);
            c.lp = w;
        }
    } else {
        json_object_object_add(choice, "text", jstr(c.text.p));
    }
    json_object_object_add(choice, "logprobs", c.lp);
    json_object_object_add(choice, "finish_reason", json_object_new_string(finish));
    json_object *choices = json_object_new_array();
    json_object_array_add(choices, choice);
    json_object_object_add(o, "choices", choices);
    json_object_object_add(o, "usage", usage_json(&stats));
    lmc_buf_free(&c.text);
    return reply_json(con, 200, o);
}

/* ---------------------------------------------------------- streaming */
typedef struct {
    lmc_server *s;
    lmc_srv_request rq;
    int32_t *ids;
    size_t n_ids;
    char id[64];
    time_t created;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    lmc_buf out;  /* events not yet handed to the connection */
    size_t sent;  /* bytes of `out` already handed over */
    bool done;
    atomic_bool released; /* the connection let go of the reply */
    watch w;      /* the connection's record is held until stream_free */
    int key;
    pthread_t thread;
    size_t text_offset;
    lmc_srv_chat_stream cs; /* chat: content / reasoning / tool-call split */
    lmc_srv_resp_stream rs; /* /v1/responses: its typed events */
} stream;

static void stream_append(stream *st, lmc_buf *events) {
    pthread_mutex_lock(&st->mu);
    lmc_buf_append(&st->out, events->p ? events->p : "", events->len);
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    lmc_buf_free(events);
}

static void stream_push(stream *st, json_object *o) {
    const char *j =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    pthread_mutex_lock(&st->mu);
    lmc_buf_printf(&st->out, "data: %s\n\n", j ? j : "{}");
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    json_object_put(o);
}

/* One chunk: chat {"delta":{...}} or completions {"text":...}. */
static json_object *chunk(stream *st, json_object *delta_or_text, json_object *logprobs,
                          const char *finish) {
    bool chat = st->rq.kind == LMC_SRV_CHAT;
    json_object *o =
        frame(st->s, st->id, chat ? "chat.completion.chunk" : "text_completion", st->created);
    json_object *c = json_object_new_object();
    json_object_object_add(c, "index", json_object_new_int(0));
    json_object_object_add(c, chat ? "delta" : "text", delta_or_text);
    json_object_object_add(c, "logprobs", logprobs);
    json_object_object_add(c, "finish_reason", finish ? json_object_new_string(finish) : NULL);
    json_object *arr = json_object_new_array();
    json_object_array_add(arr, c);
    json_object_object_add(o, "choices", arr);
    return o;
}

static json_object *chat_delta(const char *role, const char *content) {
    json_object *d = json_object_new_object();
    if (role) json_object_object_add(d, "role", json_object_new_string(role));
    if (content) json_object_object_add(d, "content", jstr(content));
    return d;
}

static bool stream_cb(void *user, const lmc_gen_response *r) {
    stream *st = user;
    bool chat = st->rq.kind == LMC_SRV_CHAT;
    if (st->rq.responses) {
        lmc_buf ev = {0};
        lmc_srv_resp_stream_push(&st->rs, r->text, &ev);
        stream_append(st, &ev);
    } else if (r->text[0] || st->rq.logprobs) {
        json_object *lp = NULL;
        if (st->rq.logprobs) {
            if (chat) {
                json_object *arr = json_object_new_array();
                json_object_array_add(arr, chat_logprob_entry(st->s, r));
                lp = json_object_new_object();
                json_object_object_add(lp, "content", arr);
            } else {
                lp = json_object_new_object();
                completion_logprob_add(st->s, lp, r, st->text_offset);
            }
        }
        st->text_offset += strlen(r->text);
        json_object *d = chat ? lmc_srv_chat_stream_push(&st->cs, r->text) : jstr(r->text);
        if (d || lp) stream_push(st, chunk(st, d ? d : chat_delta(NULL, NULL), lp, NULL));
    }
    return !atomic_load(&st->released) && !atomic_load(&st->s->stopping);
}

static void *stream_main(void *arg) {
    stream *st = arg;
    lmc_server *s = st->s;
    lmc_gen_stats stats = {0};
    lmc_status rc = run_generation(s, &st->rq, st->key, st->ids, st->n_ids, stream_cb, st, &stats);
    lmc_srv_adm_release(&s->adm);
    bool chat = st->rq.kind == LMC_SRV_CHAT;
    if (rc) {
        /* headers are gone already: the failure travels as an event */
        json_object *e = json_object_new_object(), *w = json_object_new_object();
        json_object_object_add(e, "message", jstr(lmc_last_error()));
        json_object_object_add(e, "type", json_object_new_string("server_error"));
        json_object_object_add(e, "param", NULL);
        json_object_object_add(e, "code", NULL);
        json_object_object_add(w, "error", e);
        stream_push(st, w);
    } else if (st->rq.responses) {
        lmc_buf ev = {0};
        lmc_srv_resp_stream_finish(&st->rs, finish_str(stats.finish_reason), stats.prompt_tokens,
                                   stats.generation_tokens, &ev);
        stream_append(st, &ev);
    } else {
        const char *finish = finish_str(stats.finish_reason);
        json_object *last = chat ? lmc_srv_chat_stream_finish(&st->cs, &finish) : NULL;
        if (last && json_object_object_length(last)) stream_push(st, chunk(st, last, NULL, NULL));
        else json_object_put(last);
        stream_push(st, chunk(st, chat ? chat_delta(NULL, NULL) : json_object_new_string(""), NULL,
                              finish));
        if (st->rq.include_usage) {
            json_object *o = frame(s, st->id, chat ? "chat.completion.chunk" : "text_completion",
                                   st->created);
            json_object_object_add(o, "choices", json_object_new_array());
            json_object_object_add(o, "usage",
                                   usage_json(&stats));
            stream_push(st, o);
        }
    }
    pthread_mutex_lock(&st->mu);
    if (!st->rq.responses) lmc_buf_puts(&st->out, "data: [DONE]\n\n");
    st->done = true;
    pthread_cond_signal(&st->cv);
    pthread_mutex_unlock(&st->mu);
    return NULL;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *st = cls;
    pthread_mutex_lock(&st->mu);
    while (st->sent == st->out.len && !st->done) pthread_cond_wait(&st->cv, &st->mu);
    ssize_t n;
    if (st->sent < st->out.len) {
        size_t k = st->out.len - st->sent;
        if (k > max) k = max;
        memcpy(buf, st->out.p + st->sent, k);
        st->sent += k;
        if (st->sent == st->out.len) st->sent = st->out.len = 0;
        n = (ssize_t)k;
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&st->mu);
    return n;
}

static void stream_free(stream *st) {
    lmc_srv_conn_drop(&st->s->conns, st->w.k);
    lmc_srv_chat_stream_free(&st->cs);
    lmc_srv_resp_stream_free(&st->rs);
    lmc_srv_request_free(&st->rq);
    lmc_free(st->ids);
    lmc_buf_free(&st->out);
    pthread_cond_destroy(&st->cv);
    pthread_mutex_destroy(&st->mu);
    free(st);
}

/* The response is gone (finished or the client left): stop the generation
 * and wait for its thread. */
static void stream_release(void *cls) {
    stream *st = cls;
    atomic_store(&st->released, true);
    pthread_join(st->thread, NULL);
    stream_free(st);
}

/* Waits in line for the model before any header goes out, so a full line
 * still answers 429 and a prompt past the context 400. */
static enum MHD_Result serve_stream(lmc_server *s, struct MHD_Connection *con,
                                    const conn_state *cs, lmc_srv_request *rq) {
    stream *st = calloc(1, sizeof *st);
    if (!st) return reply(con, 500, NULL, "application/json", NULL);
    st->s = s;
    st->rq = *rq; /* takes ownership */
    memset(rq, 0, sizeof *rq);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    st->key = cs->key;
    st->w = (watch){.s = s, .k = cs->k, .released = &st->released};
    lmc_srv_conn_hold(&s->conns, cs->k);
    if (lmc_srv_tools_constrain(&s->out_cfg, &st->rq)) {
        enum MHD_Result ret =
            reply_error(con, 400, "invalid_request_error", lmc_last_error(), st->rq.param, NULL);
        stream_free(st);
        return ret;
    }
    st->rq.gen.cancel = watch_cancel;
    st->rq.gen.cancel_user = &st->w;
    lmc_srv_adm_result a = lmc_srv_adm_acquire(&s->adm, watch_cancel, &st->w, GONE_POLL_MS);
    if (a != LMC_ADM_HELD) {
        stream_free(st);
        return refuse(s, con, a);
    }
    const char *param = NULL, *code = NULL;
    lmc_status rc = build_prompt(s, &st->rq, &st->ids, &st->n_ids, &param, &code);
    lmc_output_opts oo = lmc_srv_out_opts(&s->out_cfg, &st->rq, lmc_context_tokenizer(s->ctx),
                                          st->ids, rc ? 0 : st->n_ids);
    lmc_srv_chat_stream_init(&st->cs, &oo);
    if (st->rq.forced_prefix)
        json_object_put(lmc_srv_chat_stream_push(&st->cs, st->rq.forced_prefix));
    if (rc) {
        lmc_srv_adm_release(&s->adm);
        enum MHD_Result ret = reply_status(con, rc, param, code);
        stream_free(st);
        return ret;
    }
    bool chat = st->rq.kind == LMC_SRV_CHAT;
    make_id(s, st->rq.responses ? "resp" : chat ? "chatcmpl" : "cmpl", st->id, sizeof st->id);
    st->created = time(NULL);
    if (st->rq.responses) {
        lmc_buf ev = {0};
        lmc_srv_resp_stream_start(&st->rs, st->id, s->model_name, st->created, &oo, &ev);
        if (st->rq.forced_prefix) lmc_srv_resp_stream_push(&st->rs, st->rq.forced_prefix, &ev);
        stream_append(st, &ev);
    } else if (chat) {
        stream_push(st, chunk(st, chat_delta("assistant", ""), NULL, NULL));
    }
    if (pthread_create(&st->thread, NULL, stream_main, st)) {
        lmc_srv_adm_release(&s->adm);
        stream_free(st);
        return reply_error(con, 500, "server_error", "cannot start a generation thread", NULL,
                           NULL);
    }
    struct MHD_Response *r =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_release);
    if (!r) {
        stream_release(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "text/event-stream");
    MHD_add_response_header(r, "Cache-Control", "no-cache");
    add_cors(con, r);
    return queue(con, 200, r); /* stream_release runs once the connection is done with it */
}

/* ------------------------------------------------------------- routing */
static route route_of(const char *url) {
    if (!strcmp(url, "/health")) return R_HEALTH;
    if (!strcmp(url, "/v1/models")) return R_MODELS;
    if (!strcmp(url, "/v1/chat/completions")) return R_CHAT;
    if (!strcmp(url, "/v1/completions")) return R_COMPLETIONS;
    if (!strcmp(url, "/v1/responses")) return R_RESPONSES;
    return R_NONE;
}

static enum MHD_Result serve_get(lmc_server *s, struct MHD_Connection *con, route r) {
    json_object *o = json_object_new_object();
    if (r == R_HEALTH) {
        json_object_object_add(o, "status", json_object_new_string("ok"));
        json_object_object_add(o, "waiting",
                               json_object_new_int64((int64_t)lmc_srv_adm_waiting(&s->adm)));
        json_object_object_add(o, "cached_tokens",
                               json_object_new_int64((int64_t)atomic_load(&s->cached_tokens)));
        return reply_json(con, 200, o);
    }
    json_object *m = json_object_new_object();
    json_object_object_add(m, "id", jstr(s->model_name));
    json_object_object_add(m, "object", json_object_new_string("model"));
    json_object_object_add(m, "created", json_object_new_int64((int64_t)s->started));
    json_object_object_add(m, "owned_by", json_object_new_string("lmc"));
    json_object *data = json_object_new_array();
    json_object_array_add(data, m);
    json_object_object_add(o, "object", json_object_new_string("list"));
    json_object_object_add(o, "data", data);
    return reply_json(con, 200, o);
}

/* No model (stub.h): admitted like a real request, answered at once. */
static enum MHD_Result serve_stub(lmc_server *s, struct MHD_Connection *con, const conn_state *cs) {
    watch w = {.s = s, .k = cs->k};
    lmc_srv_adm_result a = lmc_srv_adm_acquire(&s->adm, watch_cancel, &w, GONE_POLL_MS);
    if (a != LMC_ADM_HELD) return refuse(s, con, a);
    lmc_srv_adm_release(&s->adm);
    json_object *o = json_object_new_object();
    json_object_object_add(o, "stub", json_object_new_boolean(1));
    return reply_json(con, 200, o);
}

static enum MHD_Result serve_post(lmc_server *s, struct MHD_Connection *con, conn_state *cs) {
    lmc_srv_request rq;
    lmc_srv_kind kind = cs->r == R_COMPLETIONS ? LMC_SRV_COMPLETION : LMC_SRV_CHAT;
    char *chat_body = NULL;
    if (cs->r == R_RESPONSES) {
        char param[96];
        lmc_status tr = lmc_srv_responses_to_chat(cs->body.p, cs->body.len, &chat_body, param, sizeof param);
        if (tr)
            return tr == LMC_ERR_NOMEM
                       ? reply_error(con, 500, "server_error", lmc_last_error(), NULL, NULL)
                       : reply_error(con, 400, "invalid_request_error", lmc_last_error(), param, NULL);
    }
    lmc_status st = chat_body ? lmc_srv_request_parse(chat_body, strlen(chat_body), kind, &s->defaults,
                                                      s->vocab, &rq)
                              : lmc_srv_request_parse(cs->body.p, cs->body.len, kind, &s->defaults,
                                                      s->vocab, &rq);
    free(chat_body);
    rq.responses = cs->r == R_RESPONSES;
    if (st) {
        enum MHD_Result ret =
            st == LMC_ERR_NOMEM
                ? reply_error(con, 500, "server_error", lmc_last_error(), NULL, NULL)
                : reply_error(con, 400, "invalid_request_error", lmc_last_error(), rq.param, NULL);
        lmc_srv_request_free(&rq);
        return ret;
    }
    if (rq.gen.max_tokens > s->max_tokens_cap) rq.gen.max_tokens = s->max_tokens_cap;
    if (!s->ctx) {
        lmc_srv_request_free(&rq);
        return serve_stub(s, con, cs);
    }
    enum MHD_Result ret =
        rq.stream ? serve_stream(s, con, cs, &rq) : serve_blocking(s, con, cs, &rq);
    lmc_srv_request_free(&rq);
    return ret;
}

/* Before anything else: a loopback-bound server answers only to loopback
 * Host names, and a browser request from an origin not listed is refused.
 * Sets *pass when the request may go on. */
static enum MHD_Result gate(lmc_server *s, struct MHD_Connection *con, bool *pass) {
    char msg[256];
    *pass = false;
    const char *host = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Host");
    /* (no Host at all is an HTTP/1.0 client, never a browser) */
    if (s->loopback && host && !lmc_srv_host_is_loopback(host)) {
        snprintf(msg, sizeof msg, "Host '%.100s' is not a loopback name: this server listens on a "
                 "loopback address and answers only to localhost, 127.0.0.1 or [::1]",
                 host ? host : "");
        return reply_coded(con, 403, "invalid_request_error", msg, NULL, "host_not_allowed", NULL);
    }
    const char *origin = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Origin");
    if (!lmc_srv_auth_origin_ok(&s->auth, origin)) {
        snprintf(msg, sizeof msg, "origin '%.100s' is not allowed (see --allow-origin)", origin);
        return reply_coded(con, 403, "invalid_request_error", msg, NULL, "origin_not_allowed",
                           NULL);
    }
    lmc_srv_conn_set_cors(lmc_srv_conn_of(con), origin != NULL);
    *pass = true;
    return MHD_YES;
}

static enum MHD_Result unauthorized(struct MHD_Connection *con) {
    const char *h[2] = {"WWW-Authenticate", "Bearer"};
    return reply_coded(con, 401, "invalid_request_error",
                       "missing or incorrect API key (send \"Authorization: Bearer KEY\")", NULL,
                       "invalid_api_key", h);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    lmc_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
        lmc_srv_conn *k = lmc_srv_conn_of(con);
        lmc_srv_conn_begin(&s->conns, k, method, url);
        bool pass;
        enum MHD_Result g = gate(s, con, &pass);
        if (!pass) return g;
        route r = route_of(url);
        char msg[512];
        if (r == R_NONE) {
            snprintf(msg, sizeof msg, "unknown path '%.200s' (endpoints: GET /health, GET "
                     "/v1/models, POST /v1/chat/completions, POST /v1/completions, POST /v1/responses)", url);
            return reply_error(con, 404, "invalid_request_error", msg, NULL, NULL);
        }
        bool get = r == R_HEALTH || r == R_MODELS;
        if (!strcmp(method, "OPTIONS"))
            return reply_preflight(con, get ? "GET, HEAD, OPTIONS" : "POST, OPTIONS");
        int key = r == R_HEALTH ? 0
                                : lmc_srv_auth_key(&s->auth, MHD_lookup_connection_value(
                                                                 con, MHD_HEADER_KIND,
                                                                 "Authorization"));
        if (key < 0) return unauthorized(con);
        bool is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        if (get ? !is_get : strcmp(method, "POST")) {
            snprintf(msg, sizeof msg, "method %.32s is not allowed on %s (use %s)", method, url,
                     get ? "GET" : "POST");
            return reply_error(con, 405, "invalid_request_error", msg, NULL,
                               get ? "GET, HEAD, OPTIONS" : "POST, OPTIONS");
        }
        if (get) return serve_get(s, con, r);
        const char *cl = MHD_lookup_connection_value(con, MHD_HEADER_KIND, "Content-Length");
        if (cl) {
            char *end;
            unsigned long long v = strtoull(cl, &end, 10);
            if (end != cl && v > s->max_body) {
                snprintf(msg, sizeof msg, "request body of %llu bytes exceeds the limit of %zu bytes",
                         v, s->max_body);
                return reply_error(con, 413, "invalid_request_error", msg, NULL, NULL);
            }
        }
        cs = calloc(1, sizeof *cs);
        if (!cs) return MHD_NO;
        cs->r = r;
        cs->key = key;
        cs->k = k;
        *con_cls = cs;
        return MHD_YES;
    }
    if (*upload_size) {
        size_t k = *upload_size;
        *upload_size = 0;
        cs->received += k;
        if (cs->received > s->max_body) {
            cs->too_big = true;
            lmc_buf_free(&cs->body);
            return cs->received / DRAIN_FACTOR > s->max_body ? MHD_NO : MHD_YES;
        }
        return lmc_buf_append(&cs->body, upload_data, k) ? MHD_YES : MHD_NO;
    }
    lmc_srv_conn_working(&s->conns, cs->k);
    if (cs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes", s->max_body);
        return reply_error(con, 413, "invalid_request_error", msg, NULL, NULL);
    }
    return serve_post(s, con, cs);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    lmc_server *s = cls;
    lmc_srv_conn_end(&s->conns, lmc_srv_conn_of(con), toe != MHD_REQUEST_TERMINATED_COMPLETED_OK);
    conn_state *cs = *con_cls;
    if (!cs) return;
    lmc_buf_free(&cs->body);
    free(cs);
    *con_cls = NULL;
}

/* ------------------------------------------------------------ lifecycle */
static lmc_status copy_defaults(lmc_server *s, const lmc_gen_params *d) {
    if (d) s->defaults = *d;
    else lmc_gen_params_default(&s->defaults);
    lmc_gen_params *g = &s->defaults;
    if (g->n_stop) {
        s->default_stops = calloc(g->n_stop, sizeof *s->default_stops);
        if (!s->default_stops) return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
        for (size_t i = 0; i < g->n_stop; i++)
            if (!(s->default_stops[i] = strdup(g->stop[i])))
                return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
        g->stop = (const char *const *)s->default_stops;
    }
    size_t nb = g->sampler.n_logit_bias;
    if (nb) {
        s->default_bias_ids = malloc(nb * sizeof *s->default_bias_ids);
        s->default_bias_vals = malloc(nb * sizeof *s->default_bias_vals);
        if (!s->default_bias_ids || !s->default_bias_vals)
            return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
        memcpy(s->default_bias_ids, g->sampler.logit_bias_ids, nb * sizeof *s->default_bias_ids);
        memcpy(s->default_bias_vals, g->sampler.logit_bias_values, nb * sizeof *s->default_bias_vals);
        g->sampler.logit_bias_ids = s->default_bias_ids;
        g->sampler.logit_bias_values = s->default_bias_vals;
    }
    if (g->max_tokens == 0 || g->max_tokens > LMC_SRV_MAX_TOKENS)
        return lmc_err(LMC_ERR_INVALID_ARG, "server: default max_tokens %zu must be in [1, %u]",
                       g->max_tokens, LMC_SRV_MAX_TOKENS);
    return LMC_OK;
}

static void server_free(lmc_server *s) {
    if (s->default_stops)
        for (size_t i = 0; i < s->defaults.n_stop; i++) free(s->default_stops[i]);
    free(s->default_stops);
    free(s->default_bias_ids);
    free(s->default_bias_vals);
    free(s->model_name);
    lmc_prompt_cache_free(s->cache);
    free(s->cache_owner);
    lmc_srv_auth_free(&s->auth);
    if (s->conns_up) lmc_srv_conns_destroy(&s->conns);
    lmc_srv_adm_destroy(&s->adm);
    free(s);
}

static unsigned or_default(unsigned v, unsigned d) { return v ? v : d; }

/* Everything the options configure but the socket. */
static lmc_status configure(lmc_server *s, const lmc_server_options *o) {
    lmc_srv_adm_init(&s->adm, o->max_queue ? o->max_queue : DEFAULT_QUEUE);
    s->max_body = o->max_body_bytes ? o->max_body_bytes : DEFAULT_MAX_BODY;
    s->max_tokens_cap = o->max_tokens_cap ? o->max_tokens_cap : LMC_SRV_MAX_TOKENS;
    s->cache_keep = o->cache_keep_tokens ? o->cache_keep_tokens : DEFAULT_CACHE_KEEP;
    s->use_cache = !o->no_prompt_cache;
    s->vocab = s->ctx ? (size_t)lmc_context_config(s->ctx)->vocab_size : LMC_SRV_STUB_VOCAB;
    s->started = time(NULL);
    const char *name = o->model_name && *o->model_name ? o->model_name
                       : s->ctx                         ? lmc_context_model_type(s->ctx)
                                                        : "stub";
    s->model_name = strdup(name ? name : "lmc");
    if (!s->model_name) return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    lmc_status st = copy_defaults(s, o->defaults);
    if (!st && s->ctx)
        st = lmc_srv_out_config(lmc_context_tokenizer(s->ctx), o->tool_parser, &s->out_cfg);
    if (!st)
        st = lmc_srv_auth_init(&s->auth, o->api_keys, o->n_api_keys, o->api_key_file,
                               o->allow_origins, o->n_allow_origins);
    if (st) return st;
    s->conns_up = lmc_srv_conns_init(&s->conns, or_default(o->max_pending, DEFAULT_PENDING),
                                     or_default(o->header_timeout_s, DEFAULT_HEADER_S),
                                     or_default(o->body_timeout_s, DEFAULT_BODY_S), o->log);
    return s->conns_up ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "server: cannot start a thread");
}

static struct MHD_Daemon *start_daemon(lmc_server *s, const lmc_server_options *o,
                                       unsigned extra_flags, const struct sockaddr *addr) {
    unsigned flags =
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | extra_flags;
    /* the slowest senders are evicted past max_pending; requests being
     * served are at most the one holding the model, the line, and quick
     * GETs in the reserve */
    unsigned slots = or_default(o->max_pending, DEFAULT_PENDING) + (unsigned)s->adm.max_waiting +
                     1 + RESERVED_SLOTS;
    return MHD_start_daemon(flags, o->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                            MHD_OPTION_NOTIFY_CONNECTION, lmc_srv_conns_notify, &s->conns,
                            MHD_OPTION_CONNECTION_LIMIT, slots,
                            MHD_OPTION_PER_IP_CONNECTION_LIMIT,
                            or_default(o->max_per_ip, DEFAULT_PER_IP),
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
                            MHD_OPTION_END);
}

lmc_status lmc_srv_start_stub(const lmc_server_options *opts, lmc_server **out) {
    *out = NULL;
    lmc_server_options o = {0};
    if (opts) o = *opts;
    lmc_server *s = calloc(1, sizeof *s);
    if (!s) return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    o.no_prompt_cache = true;
    lmc_status st = configure(s, &o);
    if (!st) {
        s->loopback = true;
        s->daemon = start_daemon(s, &o, MHD_USE_NO_LISTEN_SOCKET, NULL);
        if (!s->daemon) st = lmc_err(LMC_ERR_IO, "server: cannot start the stub daemon");
    }
    if (st) {
        server_free(s);
        return st;
    }
    *out = s;
    return LMC_OK;
}

lmc_status lmc_srv_add_connection(lmc_server *s, int fd) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (MHD_add_connection(s->daemon, fd, (const struct sockaddr *)&a, sizeof a) != MHD_YES)
        return lmc_err(LMC_ERR_IO, "server: the daemon refused a connection");
    return LMC_OK;
}

lmc_status lmc_server_start(lmc_context *ctx, const lmc_server_options *opts, lmc_server **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "server: NULL output");
    *out = NULL;
    if (!ctx) return lmc_err(LMC_ERR_INVALID_ARG, "server: NULL context");
    lmc_server_options o = {0};
    if (opts) o = *opts;
    const char *host = o.host && *o.host ? o.host : "127.0.0.1";
    lmc_server *s = calloc(1, sizeof *s);
    if (!s) return lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    s->ctx = ctx;
    lmc_status st = configure(s, &o);
    if (st) {
        server_free(s);
        return st;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)o.port);
    int gai = getaddrinfo(host, port, &hints, &ai);
    if (gai || !ai) {
        server_free(s);
        return lmc_err(LMC_ERR_INVALID_ARG, "server: cannot resolve host '%s': %s", host,
                       gai_strerror(gai));
    }
    /* "localhost" may list ::1 first; clients mostly dial 127.0.0.1 */
    struct addrinfo *pick = ai;
    for (struct addrinfo *p = ai; p; p = p->ai_next)
        if (p->ai_family == AF_INET) {
            pick = p;
            break;
        }
    s->loopback = lmc_srv_addr_is_loopback(pick->ai_addr);
    s->daemon = start_daemon(s, &o, pick->ai_family == AF_INET6 ? MHD_USE_IPv6 : 0, pick->ai_addr);
    freeaddrinfo(ai);
    if (!s->daemon) {
        server_free(s);
        return lmc_err(LMC_ERR_IO, "server: cannot listen on %s port %u (in use, or not permitted)",
                       host, (unsigned)o.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o.port;
    if (!s->loopback && s->auth.n_keys == 0)
        fprintf(o.log ? (FILE *)o.log : stderr,
                "lmc serve: warning: listening on %s, not a loopback address, without an API "
                "key: anyone who can reach port %u can use the model (see --api-key)\n",
                host, (unsigned)s->port);
    *out = s;
    return LMC_OK;
}

uint16_t lmc_server_port(const lmc_server *s) { return s ? s->port : 0; }

void lmc_server_stop(lmc_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, true);
    lmc_srv_adm_stop(&s->adm);
    MHD_stop_daemon(s->daemon);
    server_free(s);
}
