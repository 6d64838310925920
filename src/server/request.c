/* Validation of the OpenAI request bodies (see request.h). Every rejection
 * names the field, so a client learns what to fix from the 400 reply. */
#include "server/request.h"
#include "base/error.h"
#include "base/json.h"
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ UTF-8 */
/* Length of the well-formed sequence at s (n bytes left), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c < 0x80) return 1;
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;       /* overlong */
        else if (c == 0xED) hi = 0x9F;  /* surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;       /* overlong */
        else if (c == 0xF4) hi = 0x8F;  /* > U+10FFFF */
    } else {
        return 0;
    }
    if (n < len) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return len;
}

bool lmc_srv_utf8_valid(const char *s, size_t n) {
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (!k) return false;
        i += k;
    }
    return true;
}

char *lmc_srv_utf8_sanitize(const char *s, size_t n) {
    if (n > (SIZE_MAX - 1) / 3) return NULL;
    char *out = malloc(3 * n + 1); /* each bad byte becomes 3 bytes at most */
    if (!out) return NULL;
    const unsigned char *p = (const unsigned char *)s;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k) {
            memcpy(out + o, p + i, k);
            o += k;
            i += k;
        } else {
            memcpy(out + o, "\xEF\xBF\xBD", 3);
            o += 3;
            i++;
        }
    }
    out[o] = 0;
    return out;
}

char *lmc_srv_error_json(const char *type, const char *message, const char *param) {
    return lmc_srv_error_json_code(type, message, param, NULL);
}

char *lmc_srv_error_json_code(const char *type, const char *message, const char *param,
                              const char *code) {
    json_object *root = json_object_new_object(), *e = json_object_new_object();
    if (!root || !e) {
        json_object_put(root);
        json_object_put(e);
        return NULL;
    }
    char *msg = lmc_srv_utf8_sanitize(message, strlen(message));
    json_object_object_add(e, "message", json_object_new_string(msg ? msg : "error"));
    free(msg);
    json_object_object_add(e, "type", json_object_new_string(type));
    json_object_object_add(e, "param", param && *param ? json_object_new_string(param) : NULL);
    json_object_object_add(e, "code", code ? json_object_new_string(code) : NULL);
    json_object_object_add(root, "error", e);
    const char *s = json_object_to_json_string_ext(root, JSON_C_TO_STRING_PLAIN |
                                                             JSON_C_TO_STRING_NOSLASHESCAPE);
    char *out = s ? strdup(s) : NULL;
    json_object_put(root);
    return out;
}

/* ----------------------------------------------------------------- helpers */
static lmc_status bad(lmc_srv_request *rq, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static lmc_status bad(lmc_srv_request *rq, const char *param, const char *fmt, ...) {
    snprintf(rq->param, sizeof rq->param, "%s", param);
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (*param) return lmc_err(LMC_ERR_INVALID_ARG, "'%s' %s", param, msg);
    return lmc_err(LMC_ERR_INVALID_ARG, "%s", msg);
}

static const char *type_name(json_object *v) {
    switch (json_object_get_type(v)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double:
    case json_type_int: return "a number";
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    }
    return "?";
}

/* Present and not null. */
static json_object *field(json_object *o, const char *key) { return lmc_json_get(o, key); }

/* An integer field in [lo, hi]; integral doubles count (clients written in
 * languages without an integer type send 16.0). Returns 1 when set, 0 when
 * absent or null, -1 after reporting. */
static int get_int(lmc_srv_request *rq, json_object *o, const char *key, int64_t lo, int64_t hi,
                   int64_t *out) {
    json_object *v = field(o, key);
    if (!v) return 0;
    int64_t x;
    if (json_object_is_type(v, json_type_int)) {
        x = json_object_get_int64(v);
        /* json-c saturates out-of-range literals */
        if (x == INT64_MAX || x == INT64_MIN)
            return bad(rq, key, "is out of range [%lld, %lld]", (long long)lo, (long long)hi), -1;
    } else if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!isfinite(d) || d != floor(d))
            return bad(rq, key, "must be an integer, got %g", d), -1;
        if (d < (double)lo || d > (double)hi)
            return bad(rq, key, "must be in [%lld, %lld], got %g", (long long)lo, (long long)hi, d),
                   -1;
        x = (int64_t)d;
    } else {
        return bad(rq, key, "must be an integer, got %s", type_name(v)), -1;
    }
    if (x < lo || x > hi)
        return bad(rq, key, "must be in [%lld, %lld], got %lld", (long long)lo, (long long)hi,
                   (long long)x), -1;
    *out = x;
    return 1;
}

static int get_num(lmc_srv_request *rq, json_object *o, const char *key, double lo, double hi,
                   double *out) {
    json_object *v = field(o, key);
    if (!v) return 0;
    if (!json_object_is_type(v, json_type_int) && !json_object_is_type(v, json_type_double))
        return bad(rq, key, "must be a number, got %s", type_name(v)), -1;
    double d = json_object_get_double(v);
    if (!isfinite(d) || d < lo || d > hi)
        return bad(rq, key, "must be in [%g, %g], got %g", lo, hi, d), -1;
    *out = d;
    return 1;
}

static int get_bool(lmc_srv_request *rq, json_object *o, const char *key, bool *out) {
    json_object *v = field(o, key);
    if (!v) return 0;
    if (!json_object_is_type(v, json_type_boolean))
        return bad(rq, key, "must be a boolean, got %s", type_name(v)), -1;
    *out = json_object_get_boolean(v);
    return 1;
}

/* A string usable as C text: valid UTF-8 and free of NUL bytes. */
static const char *text_of(lmc_srv_request *rq, json_object *v, const char *param) {
    const char *s = json_object_get_string(v);
    size_t n = (size_t)json_object_get_string_len(v);
    if (strlen(s) != n) return bad(rq, param, "contains a NUL character"), NULL;
    if (!lmc_srv_utf8_valid(s, n)) return bad(rq, param, "is not valid UTF-8"), NULL;
    return s;
}

static char *to_json(json_object *o) {
    const char *s =
        json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    return s ? strdup(s) : NULL;
}

static lmc_status nomem(lmc_srv_request *rq) {
    rq->param[0] = 0;
    return lmc_err(LMC_ERR_NOMEM, "request: out of memory");
}

/* ---------------------------------------------------------------- messages */
static const char *const ROLES[] = {"system", "user", "assistant", "tool", "developer"};

/* Message content as one string: a string stays, an array of text parts is
 * joined with newlines, null is kept only where OpenAI allows it (an
 * assistant turn carrying tool_calls). */
static lmc_status message_content(lmc_srv_request *rq, json_object *m, size_t i, const char *role,
                                  json_object **out) {
    char param[96];
    snprintf(param, sizeof param, "messages[%zu].content", i);
    json_object *c = field(m, "content");
    *out = NULL;
    if (!c) {
        if (!strcmp(role, "assistant")) return LMC_OK;
        return bad(rq, param, "is required for role '%s'", role);
    }
    if (json_object_is_type(c, json_type_string)) {
        if (!lmc_srv_utf8_valid(json_object_get_string(c), (size_t)json_object_get_string_len(c)))
            return bad(rq, param, "is not valid UTF-8");
        *out = json_object_get(c);
        return LMC_OK;
    }
    if (!json_object_is_type(c, json_type_array))
        return bad(rq, param, "must be a string or an array of text parts, got %s", type_name(c));
    size_t n = json_object_array_length(c);
    char *joined = NULL;
    size_t jl = 0;
    for (size_t k = 0; k < n; k++) {
        json_object *part = json_object_array_get_idx(c, k);
        char pp[128];
        snprintf(pp, sizeof pp, "%s[%zu]", param, k);
        if (!part || !json_object_is_type(part, json_type_object)) {
            free(joined);
            return bad(rq, pp, "must be an object {\"type\":\"text\",\"text\":...}");
        }
        const char *type = NULL;
        json_object *t = field(part, "type");
        if (t && json_object_is_type(t, json_type_string)) type = json_object_get_string(t);
        if (!type || strcmp(type, "text")) {
            free(joined);
            snprintf(pp + strlen(pp), sizeof pp - strlen(pp), ".type");
            return bad(rq, pp, "must be \"text\" (only text content is supported)");
        }
        json_object *tx = field(part, "text");
        if (!tx || !json_object_is_type(tx, json_type_string)) {
            free(joined);
            snprintf(pp + strlen(pp), sizeof pp - strlen(pp), ".text");
            return bad(rq, pp, "must be a string");
        }
        size_t tl = (size_t)json_object_get_string_len(tx);
        const char *ts = json_object_get_string(tx);
        if (!lmc_srv_utf8_valid(ts, tl)) {
            free(joined);
            snprintf(pp + strlen(pp), sizeof pp - strlen(pp), ".text");
            return bad(rq, pp, "is not valid UTF-8");
        }
        char *nj = realloc(joined, jl + tl + 2);
        if (!nj) {
            free(joined);
            return nomem(rq);
        }
        joined = nj;
        if (k) joined[jl++] = '\n';
        memcpy(joined + jl, ts, tl);
        jl += tl;
        joined[jl] = 0;
    }
    *out = json_object_new_string_len(joined ? joined : "", (int)jl);
    free(joined);
    return *out ? LMC_OK : nomem(rq);
}

static lmc_status parse_messages(lmc_srv_request *rq, json_object *root) {
    json_object *msgs = field(root, "messages");
    if (!msgs) return bad(rq, "messages", "is required");
    if (!json_object_is_type(msgs, json_type_array))
        return bad(rq, "messages", "must be an array, got %s", type_name(msgs));
    size_t n = json_object_array_length(msgs);
    if (n == 0) return bad(rq, "messages", "must contain at least one message");
    json_object *out = json_object_new_array();
    if (!out) return nomem(rq);
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < n && !st; i++) {
        json_object *m = json_object_array_get_idx(msgs, i);
        char param[96];
        snprintf(param, sizeof param, "messages[%zu]", i);
        if (!m || !json_object_is_type(m, json_type_object)) {
            st = bad(rq, param, "must be an object, got %s", m ? type_name(m) : "null");
            break;
        }
        snprintf(param, sizeof param, "messages[%zu].role", i);
        json_object *r = field(m, "role");
        if (!r) {
            st = bad(rq, param, "is required");
            break;
        }
        if (!json_object_is_type(r, json_type_string)) {
            st = bad(rq, param, "must be a string, got %s", type_name(r));
            break;
        }
        const char *role = json_object_get_string(r);
        size_t k = 0;
        while (k < sizeof ROLES / sizeof ROLES[0] && strcmp(role, ROLES[k])) k++;
        if (k == sizeof ROLES / sizeof ROLES[0]) {
            char *shown = lmc_srv_utf8_sanitize(role, strnlen(role, 64));
            st = bad(rq, param, "unknown role '%s' (expected system, user, assistant or tool)",
                     shown ? shown : "?");
            free(shown);
            break;
        }
        /* "developer" is OpenAI's newer name for the system role */
        const char *canon = k == 4 ? "system" : ROLES[k];
        json_object *content = NULL;
        st = message_content(rq, m, i, canon, &content);
        if (st) break;
        json_object *nm = json_object_new_object();
        if (!nm) {
            json_object_put(content);
            st = nomem(rq);
            break;
        }
        json_object_object_foreach(m, key, val) {
            if (!strcmp(key, "content") || !strcmp(key, "role")) continue;
            json_object_object_add(nm, key, json_object_get(val));
        }
        json_object_object_add(nm, "role", json_object_new_string(canon));
        json_object_object_add(nm, "content", content);
        json_object_array_add(out, nm);
    }
    if (!st) {
        rq->messages_json = to_json(out);
        if (!rq->messages_json) st = nomem(rq);
        else if (!lmc_srv_utf8_valid(rq->messages_json, strlen(rq->messages_json)))
            st = bad(rq, "messages", "is not valid UTF-8");
    }
    json_object_put(out);
    return st;
}

static lmc_status parse_tools(lmc_srv_request *rq, json_object *root) {
    json_object *tools = field(root, "tools");
    json_object *choice = field(root, "tool_choice");
    if (choice && json_object_is_type(choice, json_type_string) &&
        !strcmp(json_object_get_string(choice), "none"))
        tools = NULL; /* the model is told about no tools */
    else if (choice && !json_object_is_type(choice, json_type_string) &&
             !json_object_is_type(choice, json_type_object))
        return bad(rq, "tool_choice", "must be a string or an object, got %s", type_name(choice));
    if (!tools) return LMC_OK;
    if (!json_object_is_type(tools, json_type_array))
        return bad(rq, "tools", "must be an array, got %s", type_name(tools));
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        if (!t || !json_object_is_type(t, json_type_object)) {
            char p[48];
            snprintf(p, sizeof p, "tools[%zu]", i);
            return bad(rq, p, "must be an object");
        }
    }
    rq->tools_json = to_json(tools);
    if (!rq->tools_json) return nomem(rq);
    if (!lmc_srv_utf8_valid(rq->tools_json, strlen(rq->tools_json)))
        return bad(rq, "tools", "is not valid UTF-8");
    return LMC_OK;
}

static lmc_status parse_template_kwargs(lmc_srv_request *rq, json_object *root) {
    json_object *kw = field(root, "chat_template_kwargs");
    if (!kw) return LMC_OK;
    if (!json_object_is_type(kw, json_type_object))
        return bad(rq, "chat_template_kwargs", "must be an object, got %s", type_name(kw));
    rq->template_kwargs_json = to_json(kw);
    if (!rq->template_kwargs_json) return nomem(rq);
    if (!lmc_srv_utf8_valid(rq->template_kwargs_json, strlen(rq->template_kwargs_json)))
        return bad(rq, "chat_template_kwargs", "is not valid UTF-8");
    return LMC_OK;
}

/* ------------------------------------------------------------------ prompt */
static lmc_status parse_prompt(lmc_srv_request *rq, json_object *root, size_t vocab) {
    json_object *p = field(root, "prompt");
    if (!p) return bad(rq, "prompt", "is required");
    if (json_object_is_type(p, json_type_array) && json_object_array_length(p) == 1 &&
        json_object_array_get_idx(p, 0) &&
        json_object_is_type(json_object_array_get_idx(p, 0), json_type_string))
        p = json_object_array_get_idx(p, 0); /* ["text"]: one prompt */
    if (json_object_is_type(p, json_type_string)) {
        const char *s = text_of(rq, p, "prompt");
        if (!s) return LMC_ERR_INVALID_ARG;
        if (!*s) return bad(rq, "prompt", "must not be empty");
        rq->prompt = strdup(s);
        return rq->prompt ? LMC_OK : nomem(rq);
    }
    if (!json_object_is_type(p, json_type_array))
        return bad(rq, "prompt", "must be a string or an array of token ids, got %s", type_name(p));
    size_t n = json_object_array_length(p);
    if (n == 0) return bad(rq, "prompt", "must not be empty");
    rq->prompt_ids = malloc(n * sizeof *rq->prompt_ids);
    if (!rq->prompt_ids) return nomem(rq);
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_array_get_idx(p, i);
        int64_t id = json_object_is_type(v, json_type_int) ? json_object_get_int64(v) : -1;
        if (!v || !json_object_is_type(v, json_type_int) || id < 0 || (uint64_t)id >= vocab) {
            char pp[48];
            snprintf(pp, sizeof pp, "prompt[%zu]", i);
            return bad(rq, pp,
                       "must be a token id in [0, %zu) (only one prompt per request is "
                       "supported)",
                       vocab);
        }
        rq->prompt_ids[i] = (int32_t)id;
    }
    rq->n_prompt_ids = n;
    return LMC_OK;
}

/* --------------------------------------------------------- sampling fields */
static lmc_status parse_stop(lmc_srv_request *rq, json_object *root) {
    json_object *s = field(root, "stop");
    if (!s) return LMC_OK;
    size_t n;
    if (json_object_is_type(s, json_type_string)) n = 1;
    else if (json_object_is_type(s, json_type_array)) n = json_object_array_length(s);
    else return bad(rq, "stop", "must be a string or an array of strings, got %s", type_name(s));
    if (n > LMC_SRV_MAX_STOPS)
        return bad(rq, "stop", "has %zu entries; at most %d are allowed", n, LMC_SRV_MAX_STOPS);
    rq->stops = calloc(n ? n : 1, sizeof *rq->stops);
    if (!rq->stops) return nomem(rq);
    for (size_t i = 0; i < n; i++) {
        json_object *v = json_object_is_type(s, json_type_string) ? s
                                                                  : json_object_array_get_idx(s, i);
        char pp[32];
        snprintf(pp, sizeof pp, n == 1 && v == s ? "stop" : "stop[%zu]", i);
        if (!v || !json_object_is_type(v, json_type_string))
            return bad(rq, pp, "must be a string");
        const char *t = text_of(rq, v, pp);
        if (!t) return LMC_ERR_INVALID_ARG;
        if (!*t) return bad(rq, pp, "must not be empty");
        rq->stops[i] = strdup(t);
        if (!rq->stops[i]) return nomem(rq);
        rq->n_stops = i + 1;
    }
    rq->gen.stop = (const char *const *)rq->stops;
    rq->gen.n_stop = rq->n_stops;
    return LMC_OK;
}

static lmc_status parse_logit_bias(lmc_srv_request *rq, json_object *root, size_t vocab) {
    json_object *b = field(root, "logit_bias");
    if (!b) return LMC_OK;
    if (!json_object_is_type(b, json_type_object))
        return bad(rq, "logit_bias", "must be an object mapping token ids to numbers, got %s",
                   type_name(b));
    size_t n = (size_t)json_object_object_length(b);
    rq->bias_ids = malloc((n ? n : 1) * sizeof *rq->bias_ids);
    rq->bias_vals = malloc((n ? n : 1) * sizeof *rq->bias_vals);
    if (!rq->bias_ids || !rq->bias_vals) return nomem(rq);
    size_t k = 0;
    json_object_object_foreach(b, key, val) {
        char *end;
        errno = 0;
        long long id = strtoll(key, &end, 10);
        char pp[96];
        char *shown = lmc_srv_utf8_sanitize(key, strnlen(key, 40));
        snprintf(pp, sizeof pp, "logit_bias.%s", shown ? shown : "?");
        free(shown);
        if (end == key || *end || errno || id < 0 || (unsigned long long)id >= vocab)
            return bad(rq, pp, "key must be a token id in [0, %zu)", vocab);
        if (!val || (!json_object_is_type(val, json_type_int) &&
                     !json_object_is_type(val, json_type_double)))
            return bad(rq, pp, "must be a number");
        double d = json_object_get_double(val);
        if (!isfinite(d) || d < -100 || d > 100)
            return bad(rq, pp, "must be in [-100, 100], got %g", d);
        rq->bias_ids[k] = (int32_t)id;
        rq->bias_vals[k++] = (float)d;
    }
    rq->n_bias = k;
    rq->gen.sampler.logit_bias_ids = rq->bias_ids;
    rq->gen.sampler.logit_bias_values = rq->bias_vals;
    rq->gen.sampler.n_logit_bias = k;
    return LMC_OK;
}

static lmc_status parse_logprobs(lmc_srv_request *rq, json_object *root) {
    int64_t v;
    int r;
    if (rq->kind == LMC_SRV_CHAT) {
        bool on = false;
        if (get_bool(rq, root, "logprobs", &on) < 0) return LMC_ERR_INVALID_ARG;
        rq->logprobs = on;
        if ((r = get_int(rq, root, "top_logprobs", 0, LMC_SRV_MAX_TOP_LOGPROBS, &v)) < 0)
            return LMC_ERR_INVALID_ARG;
        if (r) {
            if (!on) return bad(rq, "top_logprobs", "requires \"logprobs\": true");
            rq->top_logprobs = (int32_t)v;
        }
    } else {
        /* the legacy endpoint: logprobs is the number of alternatives */
        if ((r = get_int(rq, root, "logprobs", 0, LMC_SRV_MAX_TOP_LOGPROBS, &v)) < 0)
            return LMC_ERR_INVALID_ARG;
        if (r) {
            rq->logprobs = true;
            rq->top_logprobs = (int32_t)v;
        }
    }
    rq->gen.sampler.top_logprobs = rq->top_logprobs;
    return LMC_OK;
}

static lmc_status parse_sampling(lmc_srv_request *rq, json_object *root, size_t vocab) {
    lmc_sampler_params *s = &rq->gen.sampler;
    int64_t v;
    double d;
    int r;
    if ((r = get_int(rq, root, "max_tokens", 1, LMC_SRV_MAX_TOKENS, &v)) < 0)
        return LMC_ERR_INVALID_ARG;
    if (r) rq->gen.max_tokens = (size_t)v;
    /* the chat endpoint's newer name wins when both are given */
    if (rq->kind == LMC_SRV_CHAT &&
        (r = get_int(rq, root, "max_completion_tokens", 1, LMC_SRV_MAX_TOKENS, &v)) != 0) {
        if (r < 0) return LMC_ERR_INVALID_ARG;
        rq->gen.max_tokens = (size_t)v;
    }
    if ((r = get_num(rq, root, "temperature", 0, 100, &d)) < 0) return LMC_ERR_INVALID_ARG;
    if (r) s->temperature = (float)d;
    if ((r = get_num(rq, root, "top_p", 0, 1, &d)) < 0) return LMC_ERR_INVALID_ARG;
    if (r) s->top_p = (float)d;
    if ((r = get_int(rq, root, "top_k", -1, INT32_MAX, &v)) < 0) return LMC_ERR_INVALID_ARG;
    if (r) s->top_k = v < 0 ? 0 : (int32_t)v; /* -1: off, as in vLLM */
    if ((r = get_num(rq, root, "min_p", 0, 1, &d)) < 0) return LMC_ERR_INVALID_ARG;
    if (r) s->min_p = (float)d;
    if ((r = get_num(rq, root, "repetition_penalty", 0, 100, &d)) < 0) return LMC_ERR_INVALID_ARG;
    if (r) s->repetition_penalty = (float)d;
    if ((r = get_int(rq, root, "repetition_context_size", 0, INT32_MAX, &v)) < 0)
        return LMC_ERR_INVALID_ARG;
    if (r) s->repetition_context_size = (int32_t)v;
    /* OpenAI's range; counted over the last penalty_context_size tokens */
    if ((r = get_num(rq, root, "presence_penalty", -2, 2, &d)) < 0) return LMC_ERR_INVALID_ARG;
    if (r) s->presence_penalty = (float)d;
    if ((r = get_num(rq, root, "frequency_penalty", -2, 2, &d)) < 0) return LMC_ERR_INVALID_ARG;
    if (r) s->frequency_penalty = (float)d;
    if ((r = get_int(rq, root, "penalty_context_size", 0, INT32_MAX, &v)) < 0)
        return LMC_ERR_INVALID_ARG;
    if (r) s->penalty_context_size = (int32_t)v;
    if ((r = get_int(rq, root, "seed", INT64_MIN + 1, INT64_MAX - 1, &v)) < 0)
        return LMC_ERR_INVALID_ARG;
    if (r) s->seed = (uint64_t)v;
    /* fields lmc cannot honour are refused rather than ignored */
    if ((r = get_int(rq, root, "n", 1, 1, &v)) < 0) return LMC_ERR_INVALID_ARG;
    if ((r = get_int(rq, root, "best_of", 1, 1, &v)) < 0) return LMC_ERR_INVALID_ARG;
    bool echo = false;
    if (get_bool(rq, root, "echo", &echo) < 0) return LMC_ERR_INVALID_ARG;
    if (echo) return bad(rq, "echo", "is not supported");
    lmc_status st = parse_stop(rq, root);
    if (!st) st = parse_logit_bias(rq, root, vocab);
    if (!st) st = parse_logprobs(rq, root);
    return st;
}

/* cache_salt: requests share cached prompt prefixes only when it matches */
static lmc_status parse_cache_salt(lmc_srv_request *rq, json_object *root) {
    json_object *v = field(root, "cache_salt");
    if (!v) return LMC_OK;
    if (!json_object_is_type(v, json_type_string))
        return bad(rq, "cache_salt", "must be a string, got %s", type_name(v));
    if (json_object_get_string_len(v) > LMC_SRV_MAX_CACHE_SALT)
        return bad(rq, "cache_salt", "is longer than %d bytes", LMC_SRV_MAX_CACHE_SALT);
    const char *t = text_of(rq, v, "cache_salt");
    if (!t) return LMC_ERR_INVALID_ARG;
    return (rq->cache_salt = strdup(t)) ? LMC_OK : nomem(rq);
}

/* ------------------------------------------------------------------- entry */
lmc_status lmc_srv_request_parse(const char *body, size_t len, lmc_srv_kind kind,
                                 const lmc_gen_params *defaults, size_t vocab,
                                 lmc_srv_request *rq) {
    memset(rq, 0, sizeof *rq);
    rq->kind = kind;
    if (defaults) rq->gen = *defaults;
    else lmc_gen_params_default(&rq->gen);
    if (!body && len) return bad(rq, "", "request body is NULL");
    if (!lmc_srv_utf8_valid(body, len)) {
        rq->param[0] = 0;
        return lmc_err(LMC_ERR_FORMAT, "request body is not valid UTF-8");
    }
    json_object *root = NULL;
    lmc_status st = lmc_json_parse(body ? body : "", len, "request body", &root);
    if (st) return st;
    if (!json_object_is_type(root, json_type_object)) {
        st = bad(rq, "", "request body must be a JSON object, got %s", type_name(root));
        goto out;
    }
    json_object *m = field(root, "model");
    if (m && !json_object_is_type(m, json_type_string)) {
        st = bad(rq, "model", "must be a string, got %s", type_name(m));
        goto out;
    }
    if (m) {
        const char *s = text_of(rq, m, "model");
        if (!s) {
            st = LMC_ERR_INVALID_ARG;
            goto out;
        }
        if (!(rq->model = strdup(s))) {
            st = nomem(rq);
            goto out;
        }
    }
    st = parse_cache_salt(rq, root);
    if (st) goto out;
    if (get_bool(rq, root, "stream", &rq->stream) < 0) {
        st = LMC_ERR_INVALID_ARG;
        goto out;
    }
    json_object *so = field(root, "stream_options");
    if (so) {
        if (!json_object_is_type(so, json_type_object)) {
            st = bad(rq, "stream_options", "must be an object, got %s", type_name(so));
            goto out;
        }
        json_object *inc = field(so, "include_usage");
        if (inc && !json_object_is_type(inc, json_type_boolean)) {
            st = bad(rq, "stream_options.include_usage", "must be a boolean, got %s",
                     type_name(inc));
            goto out;
        }
        rq->include_usage = inc && json_object_get_boolean(inc);
    }
    if ((st = lmc_srv_check_fields(rq, root))) goto out;
    if (kind == LMC_SRV_CHAT) {
        st = parse_messages(rq, root);
        if (!st) st = parse_tools(rq, root);
        if (!st) st = parse_template_kwargs(rq, root);
        if (!st) st = lmc_srv_response_format(rq, root);
        if (!st) st = lmc_srv_parse_tool_choice(rq, root);
        if (!st) st = lmc_srv_reasoning_effort(rq, root);
    } else {
        st = parse_prompt(rq, root, vocab);
    }
    if (!st) st = parse_sampling(rq, root, vocab);
out:
    json_object_put(root);
    if (st) {
        /* keep param and message; drop everything else */
        char param[sizeof rq->param];
        memcpy(param, rq->param, sizeof param);
        lmc_srv_request_free(rq);
        memcpy(rq->param, param, sizeof param);
    }
    return st;
}

void lmc_srv_request_free(lmc_srv_request *rq) {
    if (!rq) return;
    free(rq->model);
    free(rq->cache_salt);
    free(rq->messages_json);
    free(rq->tools_json);
    free(rq->template_kwargs_json);
    free(rq->prompt);
    free(rq->prompt_ids);
    for (size_t i = 0; i < rq->n_stops; i++) free(rq->stops[i]);
    free(rq->stops);
    free(rq->bias_ids);
    free(rq->bias_vals);
    lmc_grammar_free(rq->grammar);
    free(rq->tool_choice_name);
    free(rq->forced_prefix);
    lmc_srv_kind kind = rq->kind;
    memset(rq, 0, sizeof *rq);
    rq->kind = kind;
    lmc_gen_params_default(&rq->gen);
}

lmc_status lmc_srv_fail(lmc_srv_request *rq, const char *param, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return bad(rq, param, "%s", msg);
}
