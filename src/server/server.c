/* The OpenAI-compatible HTTP server over libmicrohttpd.
 *
 * Threads: libmicrohttpd runs one thread per connection. A streaming reply
 * gets its own generation thread that appends Server-Sent Events to a
 * buffer the connection thread drains (blocking in the content reader is
 * allowed in thread-per-connection mode). Every use of the context (chat
 * template, tokenizer, model, prompt cache) happens under `model_mu`, so
 * requests generate one at a time in arrival order of the lock. */
#include "base/buf.h"
#include "base/error.h"
#include "lm/context.h"
#include "server/chat_output.h"
#include "server/request.h"
#include "server/responses.h"
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

struct lmc_server {
    lmc_context *ctx;
    struct MHD_Daemon *daemon;
    pthread_mutex_t model_mu;
    lmc_prompt_cache *cache; /* KV of the previous request, reused by prefix */
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
    atomic_ullong counter;
};

typedef enum { R_NONE, R_HEALTH, R_MODELS, R_CHAT, R_COMPLETIONS, R_RESPONSES } route;

typedef struct {
    route r;
    lmc_buf body;
    size_t received;
    bool too_big;
} conn_state;

/* ---------------------------------------------------------------- replies */
/* Browser clients (web UIs calling an OpenAI-compatible endpoint) need CORS:
 * every reply allows any origin, and preflight OPTIONS requests are answered. */
static void add_cors(struct MHD_Response *r) {
    MHD_add_response_header(r, "Access-Control-Allow-Origin", "*");
}

static enum MHD_Result reply_preflight(struct MHD_Connection *c, const char *methods) {
    struct MHD_Response *r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    add_cors(r);
    MHD_add_response_header(r, "Access-Control-Allow-Methods", methods);
    MHD_add_response_header(r, "Access-Control-Allow-Headers", "Content-Type, Authorization");
    MHD_add_response_header(r, "Access-Control-Max-Age", "86400");
    enum MHD_Result ret = MHD_queue_response(c, 204, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result reply(struct MHD_Connection *c, unsigned code, char *body,
                             const char *ctype, const char *allow) {
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
    add_cors(r);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    return ret;
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

/* A library failure while serving: the caller's fault (400) or ours (500). */
static enum MHD_Result reply_status(struct MHD_Connection *c, lmc_status st, const char *param) {
    bool client = st == LMC_ERR_INVALID_ARG || st == LMC_ERR_FORMAT || st == LMC_ERR_LIMIT ||
                  st == LMC_ERR_TEMPLATE;
    return reply_error(c, client ? 400 : 500, client ? "invalid_request_error" : "server_error",
                       lmc_last_error(), client ? param : NULL, NULL);
}

/* ------------------------------------------------------------- JSON bits */
static json_object *jstr(const char *s) {
    char *t = lmc_srv_utf8_sanitize(s, strlen(s));
    json_object *o = json_object_new_string(t ? t : "");
    free(t);
    return o;
}

static json_object *usage_json(size_t prompt, size_t completion) {
    json_object *u = json_object_new_object();
    json_object_object_add(u, "prompt_tokens", json_object_new_int64((int64_t)prompt));
    json_object_object_add(u, "completion_tokens", json_object_new_int64((int64_t)completion));
    json_object_object_add(u, "total_tokens", json_object_new_int64((int64_t)(prompt + completion)));
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

/* Under model_mu: the prompt's token ids. *param names the field a
 * failure belongs to. */
static lmc_status build_prompt(lmc_server *s, const lmc_srv_request *rq, int32_t **ids, size_t *n,
                               const char **param) {
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
    return LMC_OK;
}

/* Under model_mu. */
static lmc_status run_generation(lmc_server *s, const lmc_srv_request *rq, const int32_t *ids,
                                 size_t n, lmc_gen_callback cb, void *user, lmc_gen_stats *stats) {
    lmc_prompt_cache *cache = rq->gen.draft ? NULL : s->cache;
    return lmc_generate_ids(s->ctx, ids, n, &rq->gen, cache, cb, user, stats);
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
                                      lmc_srv_request *rq) {
    collect c = {.s = s, .rq = rq};
    lmc_buf_puts(&c.text, "");
    size_t shown_from = 0; /* the forced prefix is parsed, never shown as text */
    if (rq->logprobs)
        c.lp = rq->kind == LMC_SRV_CHAT ? json_object_new_array() : json_object_new_object();
    int32_t *ids = NULL;
    size_t n = 0;
    const char *param = NULL;
    lmc_gen_stats stats = {0};
    lmc_output_opts oo = {0};
    if (lmc_srv_tools_constrain(&s->out_cfg, rq)) {
        json_object_put(c.lp);
        lmc_buf_free(&c.text);
        return reply_error(con, 400, "invalid_request_error", lmc_last_error(), rq->param, NULL);
    }
    if (rq->forced_prefix) {
        lmc_buf_puts(&c.text, rq->forced_prefix);
        shown_from = c.text.len;
    }
    pthread_mutex_lock(&s->model_mu);
    lmc_status st = build_prompt(s, rq, &ids, &n, &param);
    if (!st) {
        oo = lmc_srv_out_opts(&s->out_cfg, rq, lmc_context_tokenizer(s->ctx), ids, n);
        st = run_generation(s, rq, ids, n, collect_cb, &c, &stats);
        if (st) param = NULL;
    }
    pthread_mutex_unlock(&s->model_mu);
    lmc_free(ids);
    if (!st && c.oom) st = lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    if (st) {
        lmc_buf_free(&c.text);
        json_object_put(c.lp);
        return reply_status(con, st, param);
    }
    char id[64];
    bool chat = rq->kind == LMC_SRV_CHAT;
    if (rq->responses) {
        make_id(s, "resp", id, sizeof id);
        lmc_model_output m;
        st = lmc_output_parse(&oo, c.text.p, &m);
        json_object_put(c.lp);
        lmc_buf_free(&c.text);
        if (st) return reply_status(con, st, NULL);
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
    json_object_object_add(o, "usage", usage_json(stats.prompt_tokens, stats.generation_tokens));
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
    bool done, cancelled;
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
    pthread_mutex_lock(&st->mu);
    bool go = !st->cancelled;
    pthread_mutex_unlock(&st->mu);
    return go && !atomic_load(&st->s->stopping);
}

static void *stream_main(void *arg) {
    stream *st = arg;
    lmc_server *s = st->s;
    lmc_gen_stats stats = {0};
    pthread_mutex_lock(&s->model_mu);
    lmc_status rc = run_generation(s, &st->rq, st->ids, st->n_ids, stream_cb, st, &stats);
    pthread_mutex_unlock(&s->model_mu);
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
                                   usage_json(stats.prompt_tokens, stats.generation_tokens));
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
    pthread_mutex_lock(&st->mu);
    st->cancelled = true;
    pthread_mutex_unlock(&st->mu);
    pthread_join(st->thread, NULL);
    stream_free(st);
}

static enum MHD_Result serve_stream(lmc_server *s, struct MHD_Connection *con,
                                    lmc_srv_request *rq) {
    stream *st = calloc(1, sizeof *st);
    if (!st) return reply(con, 500, NULL, "application/json", NULL);
    st->s = s;
    st->rq = *rq; /* takes ownership */
    memset(rq, 0, sizeof *rq);
    pthread_mutex_init(&st->mu, NULL);
    pthread_cond_init(&st->cv, NULL);
    const char *param = NULL;
    if (lmc_srv_tools_constrain(&s->out_cfg, &st->rq)) {
        enum MHD_Result ret =
            reply_error(con, 400, "invalid_request_error", lmc_last_error(), st->rq.param, NULL);
        stream_free(st);
        return ret;
    }
    pthread_mutex_lock(&s->model_mu);
    lmc_status rc = build_prompt(s, &st->rq, &st->ids, &st->n_ids, &param);
    lmc_output_opts oo = lmc_srv_out_opts(&s->out_cfg, &st->rq, lmc_context_tokenizer(s->ctx),
                                          st->ids, rc ? 0 : st->n_ids);
    pthread_mutex_unlock(&s->model_mu);
    lmc_srv_chat_stream_init(&st->cs, &oo);
    if (st->rq.forced_prefix) json_object_put(lmc_srv_chat_stream_push(&st->cs, st->rq.forced_prefix));
    if (rc) {
        enum MHD_Result ret = reply_status(con, rc, param);
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
    add_cors(r);
    enum MHD_Result ret = MHD_queue_response(con, 200, r);
    MHD_destroy_response(r); /* stream_release runs once the connection is done with it */
    return ret;
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
    enum MHD_Result ret = rq.stream ? serve_stream(s, con, &rq) : serve_blocking(s, con, &rq);
    lmc_srv_request_free(&rq);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *con, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_size, void **con_cls) {
    (void)version;
    lmc_server *s = cls;
    conn_state *cs = *con_cls;
    if (!cs) {
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
    if (cs->too_big) {
        char msg[128];
        snprintf(msg, sizeof msg, "request body exceeds the limit of %zu bytes", s->max_body);
        return reply_error(con, 413, "invalid_request_error", msg, NULL, NULL);
    }
    return serve_post(s, con, cs);
}

static void on_completed(void *cls, struct MHD_Connection *con, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)cls;
    (void)con;
    (void)toe;
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
    pthread_mutex_destroy(&s->model_mu);
    free(s);
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
    pthread_mutex_init(&s->model_mu, NULL);
    s->ctx = ctx;
    s->max_body = o.max_body_bytes ? o.max_body_bytes : DEFAULT_MAX_BODY;
    s->vocab = (size_t)lmc_context_config(ctx)->vocab_size;
    s->started = time(NULL);
    const char *name = o.model_name && *o.model_name ? o.model_name : lmc_context_model_type(ctx);
    s->model_name = strdup(name ? name : "lmc");
    lmc_status st = s->model_name ? copy_defaults(s, o.defaults)
                                  : lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    if (!st && !o.no_prompt_cache && !s->defaults.draft) st = lmc_prompt_cache_new(ctx, &s->cache);
    if (!st) st = lmc_srv_out_config(lmc_context_tokenizer(ctx), o.tool_parser, &s->out_cfg);
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
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION;
    if (pick->ai_family == AF_INET6) flags |= MHD_USE_IPv6;
    s->daemon = MHD_start_daemon(flags, o.port, NULL, NULL, on_request, s,
                                 MHD_OPTION_SOCK_ADDR, pick->ai_addr,
                                 MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                                 MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
                                 MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)300,
                                 MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!s->daemon) {
        server_free(s);
        return lmc_err(LMC_ERR_IO, "server: cannot listen on %s port %u (in use, or not permitted)",
                       host, (unsigned)o.port);
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : o.port;
    *out = s;
    return LMC_OK;
}

uint16_t lmc_server_port(const lmc_server *s) { return s ? s->port : 0; }

void lmc_server_stop(lmc_server *s) {
    if (!s) return;
    atomic_store(&s->stopping, true);
    MHD_stop_daemon(s->daemon);
    server_free(s);
}
