/* The HTTP server end to end: started in-process on an ephemeral port over
 * a tiny random-weight qwen3 checkpoint with the real Qwen3 tokenizer, and
 * spoken to over plain sockets. Replies must reproduce lmc_generate on the
 * same context (text and token counts), streamed deltas must concatenate
 * to the same text and end with [DONE], and every bad request gets the
 * right status and an error naming the field. */
#include "base/json.h"
#include "check.h"
#include "http_client.h"
#include "lm/lm_test_util.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include "server/request.h"
#include <json-c/json.h>
#include <pthread.h>

#define MAX_TOKENS 12
#define BODY_CAP (64 * 1024)

static uint16_t port;

typedef struct {
    char *text;
    size_t prompt_tokens, completion_tokens;
    const char *finish;
} reference;

static void reference_free(reference *r) { lmc_free(r->text); }

static bool text_cb(void *user, const lmc_gen_response *r) {
    lmc_buf_puts(user, r->text);
    return true;
}

/* lmc_generate_ids over `ids` with greedy defaults and MAX_TOKENS. */
static reference generate_ref(lmc_context *ctx, int32_t *ids, size_t n) {
    reference ref = {0};
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = MAX_TOKENS;
    lmc_buf text = {0};
    lmc_buf_puts(&text, "");
    lmc_gen_stats stats;
    CHECK(lmc_generate_ids(ctx, ids, n, &p, NULL, text_cb, &text, &stats) == LMC_OK);
    ref.text = lmc_buf_take(&text);
    ref.prompt_tokens = stats.prompt_tokens;
    ref.completion_tokens = stats.generation_tokens;
    ref.finish = lmc_finish_reason_str(stats.finish_reason);
    lmc_free(ids);
    return ref;
}

static reference chat_ref(lmc_context *ctx, const char *messages) {
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(lmc_tokenizer_apply_chat_template_ids(lmc_context_tokenizer(ctx), messages, NULL, true,
                                                false, NULL, &ids, &n) == LMC_OK);
    return generate_ref(ctx, ids, n);
}

static reference completion_ref(lmc_context *ctx, const char *prompt) {
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(lmc_context_encode(ctx, prompt, strlen(prompt), true, &ids, &n) == LMC_OK);
    return generate_ref(ctx, ids, n);
}

static json_object *parse_body(const http_reply *r) {
    json_object *o = NULL;
    if (!r->body.p || lmc_json_parse(r->body.p, r->body.len, "reply", &o)) {
        CHECK_MSG(0, "reply is not JSON: %s", r->body.p ? r->body.p : "(none)");
        return NULL;
    }
    return o;
}

static json_object *path(json_object *o, const char *a, const char *b, int idx, const char *c) {
    json_object *v = lmc_json_get(o, a);
    if (b) v = lmc_json_get(v, b);
    if (idx >= 0) v = v && json_object_is_type(v, json_type_array)
                          ? json_object_array_get_idx(v, (size_t)idx)
                          : NULL;
    if (c) v = lmc_json_get(v, c);
    return v;
}

static const char *str_at(json_object *v) {
    return v && json_object_is_type(v, json_type_string) ? json_object_get_string(v) : NULL;
}

static void check_usage(json_object *u, const reference *ref) {
    CHECK_EQ_INT(json_object_get_int64(lmc_json_get(u, "prompt_tokens")), ref->prompt_tokens);
    CHECK_EQ_INT(json_object_get_int64(lmc_json_get(u, "completion_tokens")),
                 ref->completion_tokens);
    CHECK_EQ_INT(json_object_get_int64(lmc_json_get(u, "total_tokens")),
                 ref->prompt_tokens + ref->completion_tokens);
}

/* ---------------------------------------------------------- non-streaming */
static void check_chat(const char *body, const reference *ref) {
    http_reply r;
    http_post(port, "/v1/chat/completions", body, &r);
    CHECK_EQ_INT(r.status, 200);
    json_object *o = parse_body(&r);
    if (o) {
        CHECK_STREQ(str_at(lmc_json_get(o, "object")), "chat.completion");
        CHECK_STREQ(str_at(lmc_json_get(o, "model")), "tiny");
        CHECK_STREQ(str_at(path(o, "choices", NULL, 0, "finish_reason")), ref->finish);
        json_object *msg = path(o, "choices", NULL, 0, "message");
        CHECK_STREQ(str_at(lmc_json_get(msg, "role")), "assistant");
        CHECK_STREQ(str_at(lmc_json_get(msg, "content")), ref->text);
        check_usage(lmc_json_get(o, "usage"), ref);
    }
    json_object_put(o);
    http_reply_free(&r);
}

/* ------------------------------------------------------------- streaming */
typedef struct {
    lmc_buf text;
    bool role_first, done_last, ok_json;
    const char *finish;
    json_object *usage;
    size_t n_events;
    json_object *events[1024];
} sse;

static void sse_free(sse *s) {
    lmc_buf_free(&s->text);
    for (size_t i = 0; i < s->n_events && i < 1024; i++) json_object_put(s->events[i]);
}

/* Split a text/event-stream body into its data events. */
static void parse_sse(const char *body, bool chat, sse *s) {
    memset(s, 0, sizeof *s);
    lmc_buf_puts(&s->text, "");
    s->ok_json = true;
    const char *p = body;
    size_t idx = 0;
    while (*p) {
        const char *end = strstr(p, "\n\n");
        CHECK_MSG(end != NULL, "event not terminated by a blank line: %s", p);
        if (!end) break;
        CHECK(!strncmp(p, "data: ", 6));
        const char *d = p + 6;
        size_t dl = (size_t)(end - d);
        s->done_last = dl == 6 && !strncmp(d, "[DONE]", 6);
        if (!s->done_last) {
            json_object *o = NULL;
            if (lmc_json_parse(d, dl, "event", &o)) {
                s->ok_json = false;
            } else if (idx < 1024) {
                s->events[s->n_events++] = o;
                json_object *c0 = path(o, "choices", NULL, 0, NULL);
                json_object *delta = lmc_json_get(c0, "delta");
                if (idx == 0 && chat) s->role_first = !strcmp(str_at(lmc_json_get(delta, "role")) ? str_at(lmc_json_get(delta, "role")) : "", "assistant");
                const char *t = chat ? str_at(lmc_json_get(delta, "content"))
                                     : str_at(lmc_json_get(c0, "text"));
                if (t) lmc_buf_puts(&s->text, t);
                const char *f = str_at(lmc_json_get(c0, "finish_reason"));
                if (f) s->finish = f;
                if (lmc_json_get(o, "usage")) s->usage = lmc_json_get(o, "usage");
            } else {
                json_object_put(o);
            }
            idx++;
        }
        p = end + 2;
    }
}

static void check_stream(const char *ep, const char *body, bool chat, const reference *ref) {
    http_reply r;
    http_post(port, ep, body, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.head.p && strcasestr(r.head.p, "content-type: text/event-stream"));
    CHECK(r.head.p && !strcasestr(r.head.p, "Access-Control-Allow-Origin"));
    sse s;
    parse_sse(r.body.p ? r.body.p : "", chat, &s);
    CHECK(s.ok_json);
    CHECK(s.done_last);
    if (chat) CHECK(s.role_first);
    CHECK_STREQ(s.text.p, ref->text);
    CHECK_STREQ(s.finish, ref->finish);
    CHECK(s.usage != NULL);
    if (s.usage) check_usage(s.usage, ref);
    for (size_t i = 0; i < s.n_events; i++) {
        const char *obj = str_at(lmc_json_get(s.events[i], "object"));
        CHECK_STREQ(obj, chat ? "chat.completion.chunk" : "text_completion");
    }
    sse_free(&s);
    http_reply_free(&r);
}

/* ----------------------------------------------------------- bad requests */
/* Status `status`; error.param equals `param` (NULL: null) and the message
 * contains `needle`. */
static void check_error(const char *method, const char *ep, const char *body, size_t len,
                        int status, const char *param, const char *needle) {
    http_reply r;
    http_request(port, method, ep, body, len, NULL, &r);
    CHECK_MSG(r.status == status, "%s %s -> %d (want %d): %s", method, ep, r.status, status,
              r.body.p ? r.body.p : "");
    json_object *o = parse_body(&r);
    json_object *e = lmc_json_get(o, "error");
    CHECK(e != NULL);
    const char *msg = str_at(lmc_json_get(e, "message"));
    const char *got = str_at(lmc_json_get(e, "param"));
    if (param) CHECK_MSG(got && !strcmp(got, param), "param %s (want %s) in %s",
                         got ? got : "null", param, r.body.p);
    else CHECK_MSG(!got, "param %s (want null)", got);
    CHECK_MSG(msg && strstr(msg, needle), "message \"%s\" lacks \"%s\"", msg ? msg : "",
              needle);
    CHECK(str_at(lmc_json_get(e, "type")) != NULL);
    json_object_put(o);
    http_reply_free(&r);
}

static void bad(const char *ep, const char *body, const char *param, const char *needle) {
    check_error("POST", ep, body, strlen(body), 400, param, needle);
}

static void test_bad_requests(void) {
    const char *C = "/v1/chat/completions", *P = "/v1/completions";
    const char *user = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    char b[512];
    bad(C, "{\"messages\": [", NULL, "invalid JSON");
    bad(C, "", NULL, "invalid JSON");
    bad(C, "[1,2]", NULL, "must be a JSON object");
    bad(C, "{\"model\":\"x\",\"messages\":\"hi\"}", "messages", "must be an array");
    bad(C, "{\"messages\":[]}", "messages", "at least one");
    bad(C, "{}", "messages", "required");
    bad(C, "{\"messages\":[{\"role\":\"wizard\",\"content\":\"x\"}]}", "messages[0].role",
        "unknown role 'wizard'");
    bad(C, "{\"messages\":[{\"content\":\"x\"}]}", "messages[0].role", "required");
    bad(C, "{\"messages\":[{\"role\":\"user\",\"content\":5}]}", "messages[0].content",
        "string or an array");
    bad(C,
        "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\","
        "\"image_url\":{\"url\":\"x\"}}]}]}",
        "messages[0].content[0].type", "only text");
    bad(C, "{\"model\":5,\"messages\":[]}", "model", "must be a string");
    snprintf(b, sizeof b, "{%s,\"max_tokens\":-1}", user);
    bad(C, b, "max_tokens", "must be in [1,");
    snprintf(b, sizeof b, "{%s,\"max_completion_tokens\":0}", user);
    bad(C, b, "max_completion_tokens", "must be in [1,");
    snprintf(b, sizeof b, "{%s,\"max_tokens\":2.5}", user);
    bad(C, b, "max_tokens", "integer");
    snprintf(b, sizeof b, "{%s,\"temperature\":\"hot\"}", user);
    bad(C, b, "temperature", "must be a number");
    snprintf(b, sizeof b, "{%s,\"top_p\":1.5}", user);
    bad(C, b, "top_p", "must be in [0, 1]");
    snprintf(b, sizeof b, "{%s,\"top_k\":\"3\"}", user);
    bad(C, b, "top_k", "integer");
    snprintf(b, sizeof b, "{%s,\"min_p\":-0.1}", user);
    bad(C, b, "min_p", "must be in");
    snprintf(b, sizeof b, "{%s,\"repetition_penalty\":true}", user);
    bad(C, b, "repetition_penalty", "number");
    snprintf(b, sizeof b, "{%s,\"presence_penalty\":2.5}", user);
    bad(C, b, "presence_penalty", "must be in [-2, 2]");
    snprintf(b, sizeof b, "{%s,\"frequency_penalty\":\"x\"}", user);
    bad(C, b, "frequency_penalty", "number");
    snprintf(b, sizeof b, "{%s,\"penalty_context_size\":-1}", user);
    bad(C, b, "penalty_context_size", "must be in");
    snprintf(b, sizeof b, "{%s,\"seed\":\"x\"}", user);
    bad(C, b, "seed", "integer");
    snprintf(b, sizeof b, "{%s,\"stop\":5}", user);
    bad(C, b, "stop", "string or an array");
    snprintf(b, sizeof b, "{%s,\"stop\":[\"a\",7]}", user);
    bad(C, b, "stop[1]", "must be a string");
    snprintf(b, sizeof b, "{%s,\"stop\":\"\"}", user);
    bad(C, b, "stop", "empty");
    snprintf(b, sizeof b, "{%s,\"logit_bias\":{\"abc\":1}}", user);
    bad(C, b, "logit_bias.abc", "token id");
    snprintf(b, sizeof b, "{%s,\"logit_bias\":{\"99999999\":1}}", user);
    bad(C, b, "logit_bias.99999999", "token id");
    snprintf(b, sizeof b, "{%s,\"logit_bias\":{\"5\":500}}", user);
    bad(C, b, "logit_bias.5", "[-100, 100]");
    snprintf(b, sizeof b, "{%s,\"logprobs\":1}", user);
    bad(C, b, "logprobs", "boolean");
    snprintf(b, sizeof b, "{%s,\"top_logprobs\":3}", user);
    bad(C, b, "top_logprobs", "requires");
    snprintf(b, sizeof b, "{%s,\"logprobs\":true,\"top_logprobs\":99}", user);
    bad(C, b, "top_logprobs", "must be in [0, 20]");
    snprintf(b, sizeof b, "{%s,\"stream\":\"yes\"}", user);
    bad(C, b, "stream", "boolean");
    snprintf(b, sizeof b, "{%s,\"n\":2}", user);
    bad(C, b, "n", "must be in [1, 1]");
    snprintf(b, sizeof b, "{%s,\"tools\":{}}", user);
    bad(C, b, "tools", "must be an array");
    snprintf(b, sizeof b, "{%s,\"stream_options\":{\"include_usage\":1}}", user);
    bad(C, b, "stream_options.include_usage", "boolean");
    bad(C, "{\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}", NULL, "UTF-8");
    bad(P, "{\"model\":\"tiny\"}", "prompt", "required");
    bad(P, "{\"prompt\":7}", "prompt", "string or an array");
    bad(P, "{\"prompt\":[1,-2]}", "prompt[1]", "token id");
    bad(P, "{\"prompt\":\"a\\u0000b\"}", "prompt", "NUL");
    bad(P, "{\"prompt\":\"hi\",\"logprobs\":true}", "logprobs", "integer");
    bad(P, "{\"prompt\":\"hi\",\"echo\":true}", "echo", "not supported");
    /* a conversation of one system message is valid (and renders) */
    http_reply r;
    http_post(port, C, "{\"messages\":[{\"role\":\"system\",\"content\":\"x\"}],\"max_tokens\":1}",
              &r);
    CHECK_EQ_INT(r.status, 200);
    http_reply_free(&r);

    check_error("GET", C, NULL, 0, 405, NULL, "not allowed");
    check_error("POST", "/v1/models", "{}", 2, 405, NULL, "not allowed");
    check_error("DELETE", "/health", NULL, 0, 405, NULL, "not allowed");
    check_error("GET", "/v1/nothing", NULL, 0, 404, NULL, "unknown path");
    check_error("POST", "/v2/chat/completions", "{}", 2, 404, NULL, "unknown path");

    /* over the cap: refused from Content-Length before the body is read */
    http_request(port, "POST", C, NULL, 0, "Content-Length: 65537\r\n", &r);
    CHECK_EQ_INT(r.status, 413);
    CHECK(r.body.p && strstr(r.body.p, "exceeds the limit"));
    http_reply_free(&r);
    /* ... and sent chunked, with no length announced: drained, then 413 */
    lmc_buf big = {0};
    for (int i = 0; i < 3; i++) {
        lmc_buf_printf(&big, "%x\r\n", 40000);
        for (int k = 0; k < 40000; k++) lmc_buf_putc(&big, 'x');
        lmc_buf_puts(&big, "\r\n");
    }
    lmc_buf_puts(&big, "0\r\n\r\n");
    int fd = http_connect(port);
    CHECK(fd >= 0);
    if (fd >= 0) {
        const char *h = "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                        "Transfer-Encoding: chunked\r\n\r\n";
        http_send_all(fd, h, strlen(h));
        http_send_all(fd, big.p, big.len);
        lmc_buf raw = {0};
        http_read_all(fd, &raw);
        close(fd);
        http_parse(&raw, &r);
        CHECK_EQ_INT(r.status, 413);
        lmc_buf_free(&raw);
        http_reply_free(&r);
    }
    lmc_buf_free(&big);

    /* still alive */
    http_request(port, "GET", "/health", NULL, 0, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.body.p && strstr(r.body.p, "\"ok\""));
    http_reply_free(&r);
}

/* CORS is off by default: a preflight from a foreign origin is refused and
 * no reply allows an origin; preflight without one is answered with 204. */
static void test_cors(void) {
    http_reply r;
    http_request(port, "OPTIONS", "/v1/chat/completions", NULL, 0,
                 "Origin: http://example.test\r\nAccess-Control-Request-Method: POST\r\n", &r);
    CHECK_EQ_INT(r.status, 403);
    CHECK(r.head.p && !strcasestr(r.head.p, "Access-Control-Allow-Origin"));
    CHECK(r.body.p && strstr(r.body.p, "\"code\":\"origin_not_allowed\""));
    http_reply_free(&r);
    /* a "simple" cross-origin POST (no preflight) is refused too */
    const char *b = "{\"prompt\":\"hi\",\"max_tokens\":1}";
    http_request(port, "POST", "/v1/completions", b, strlen(b), "Origin: http://evil.test\r\n",
                 &r);
    CHECK_EQ_INT(r.status, 403);
    http_reply_free(&r);
    http_request(port, "OPTIONS", "/v1/chat/completions", NULL, 0,
                 "Access-Control-Request-Method: POST\r\n", &r);
    CHECK_EQ_INT(r.status, 204);
    CHECK(r.head.p && strcasestr(r.head.p, "Access-Control-Allow-Methods: POST, OPTIONS"));
    CHECK(r.head.p && !strcasestr(r.head.p, "Access-Control-Allow-Origin"));
    http_reply_free(&r);
    http_request(port, "OPTIONS", "/v1/models", NULL, 0, NULL, &r);
    CHECK_EQ_INT(r.status, 204);
    CHECK(r.head.p && strcasestr(r.head.p, "Access-Control-Allow-Methods: GET, HEAD, OPTIONS"));
    http_reply_free(&r);
    http_request(port, "OPTIONS", "/nowhere", NULL, 0, NULL, &r);
    CHECK_EQ_INT(r.status, 404);
    http_reply_free(&r);
    http_request(port, "GET", "/health", NULL, 0, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    CHECK(r.head.p && !strcasestr(r.head.p, "Access-Control-Allow-Origin"));
    http_reply_free(&r);
    http_request(port, "DELETE", "/health", NULL, 0, NULL, &r);
    CHECK_EQ_INT(r.status, 405);
    CHECK(r.head.p && strcasestr(r.head.p, "Allow: GET, HEAD, OPTIONS"));
    http_reply_free(&r);
}

/* --------------------------------------------------------------- model */
static void test_models(void) {
    http_reply r;
    http_request(port, "GET", "/v1/models", NULL, 0, NULL, &r);
    CHECK_EQ_INT(r.status, 200);
    json_object *o = parse_body(&r);
    CHECK_STREQ(str_at(lmc_json_get(o, "object")), "list");
    CHECK_STREQ(str_at(path(o, "data", NULL, 0, "id")), "tiny");
    json_object_put(o);
    http_reply_free(&r);
}

static void test_generation(lmc_context *ctx, const test_vocab *tv) {
    const char *msgs = "[{\"role\":\"system\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":\"Name a colour.\"}]";
    reference ref = chat_ref(ctx, msgs);
    printf("reference chat reply (%zu tokens, %s): \"%s\"\n", ref.completion_tokens, ref.finish,
           ref.text);
    char body[2048];
    snprintf(body, sizeof body, "{\"model\":\"tiny\",\"messages\":%s,\"max_tokens\":%d,"
             "\"temperature\":0}", msgs, MAX_TOKENS);
    check_chat(body, &ref);
    check_chat(body, &ref); /* again: served from the prompt cache, same reply */
    /* content as text parts; "developer" is the system role */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"developer\",\"content\":[{\"type\":\"text\","
             "\"text\":\"Be brief.\"}]},{\"role\":\"user\",\"content\":[{\"type\":\"text\","
             "\"text\":\"Name a colour.\"}]}],\"max_completion_tokens\":%d}",
             MAX_TOKENS);
    check_chat(body, &ref);
    snprintf(body, sizeof body, "{\"model\":\"tiny\",\"messages\":%s,\"max_tokens\":%d,"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true}}", msgs, MAX_TOKENS);
    check_stream("/v1/chat/completions", body, true, &ref);
    reference_free(&ref);

    /* completions */
    const char *prompt = "The sky is";
    ref = completion_ref(ctx, prompt);
    snprintf(body, sizeof body, "{\"prompt\":\"%s\",\"max_tokens\":%d}", prompt, MAX_TOKENS);
    http_reply r;
    http_post(port, "/v1/completions", body, &r);
    CHECK_EQ_INT(r.status, 200);
    json_object *o = parse_body(&r);
    CHECK_STREQ(str_at(lmc_json_get(o, "object")), "text_completion");
    CHECK_STREQ(str_at(path(o, "choices", NULL, 0, "text")), ref.text);
    CHECK_STREQ(str_at(path(o, "choices", NULL, 0, "finish_reason")), ref.finish);
    check_usage(lmc_json_get(o, "usage"), &ref);
    json_object_put(o);
    http_reply_free(&r);
    snprintf(body, sizeof body, "{\"prompt\":[\"%s\"],\"max_tokens\":%d,\"stream\":true,"
             "\"stream_options\":{\"include_usage\":true}}", prompt, MAX_TOKENS);
    check_stream("/v1/completions", body, false, &ref);
    reference_free(&ref);

    /* logit_bias reaches the sampler: +100 on " cat" makes every token " cat" */
    snprintf(body, sizeof body,
             "{\"messages\":%s,\"max_tokens\":3,\"logit_bias\":{\"%d\":100},"
             "\"logprobs\":true,\"top_logprobs\":2}",
             msgs, tv->ids[0]);
    http_post(port, "/v1/chat/completions", body, &r);
    CHECK_EQ_INT(r.status, 200);
    o = parse_body(&r);
    CHECK_STREQ(str_at(path(o, "choices", NULL, 0, "finish_reason")), "length");
    CHECK_STREQ(str_at(path(path(o, "choices", NULL, 0, "message"), "content", NULL, -1, NULL)),
                " cat cat cat");
    json_object *lp = path(path(o, "choices", NULL, 0, "logprobs"), "content", NULL, -1, NULL);
    CHECK(lp && json_object_array_length(lp) == 3);
    for (size_t i = 0; lp && i < json_object_array_length(lp); i++) {
        json_object *e = json_object_array_get_idx(lp, i);
        CHECK_STREQ(str_at(lmc_json_get(e, "token")), " cat");
        json_object *tops = lmc_json_get(e, "top_logprobs");
        CHECK(tops && json_object_array_length(tops) == 2);
        double l = json_object_get_double(lmc_json_get(e, "logprob"));
        CHECK(l <= 0 && l > -1e-3); /* +100 makes it all but certain */
        CHECK_STREQ(str_at(path(e, "top_logprobs", NULL, 0, "token")), " cat");
    }
    json_object_put(o);
    http_reply_free(&r);

    /* presence and frequency penalties reach the sampler: after a prompt of
     * three " cat" tokens, " cat" (favoured by +100) loses 2 + 3 * 2, so the
     * runner-up's reported logprob rises by 8 */
    double runner[2] = {0, 0};
    char runner_tok[2][64] = {"", ""};
    for (int k = 0; k < 2; k++) {
        snprintf(body, sizeof body,
                 "{\"prompt\":\" cat cat cat\",\"max_tokens\":1,\"logprobs\":2,"
                 "\"logit_bias\":{\"%d\":100}%s}",
                 tv->ids[0],
                 k ? ",\"presence_penalty\":2,\"frequency_penalty\":2,"
                     "\"penalty_context_size\":100"
                   : "");
        http_post(port, "/v1/completions", body, &r);
        CHECK_EQ_INT(r.status, 200);
        o = parse_body(&r);
        json_object *tops = path(path(o, "choices", NULL, 0, "logprobs"), "top_logprobs", NULL,
                                 0, NULL);
        CHECK(tops && json_object_is_type(tops, json_type_object));
        if (tops) {
            json_object_object_foreach(tops, key, val) {
                if (!strcmp(key, " cat")) continue;
                snprintf(runner_tok[k], sizeof runner_tok[k], "%s", key);
                runner[k] = json_object_get_double(val);
            }
        }
        json_object_put(o);
        http_reply_free(&r);
    }
    CHECK_STREQ(runner_tok[0], runner_tok[1]);
    CHECK_MSG(fabs(runner[1] - runner[0] - 8.0) < 1e-3, "runner-up logprob %g -> %g", runner[0],
              runner[1]);

    /* stop strings cut the reply: generate " cat cat cat", stop at " cat cat" */
    snprintf(body, sizeof body,
             "{\"prompt\":\"x\",\"max_tokens\":3,\"logit_bias\":{\"%d\":100},\"stop\":[\"t c\"]}",
             tv->ids[0]);
    http_post(port, "/v1/completions", body, &r);
    CHECK_EQ_INT(r.status, 200);
    o = parse_body(&r);
    CHECK_STREQ(str_at(path(o, "choices", NULL, 0, "text")), " ca");
    CHECK_STREQ(str_at(path(o, "choices", NULL, 0, "finish_reason")), "stop");
    json_object_put(o);
    http_reply_free(&r);
}

/* tools and chat_template_kwargs reach the chat template: the prompt the
 * server counts equals the one rendered here with the same inputs (and
 * differs from the plain one). */
static void test_template_inputs(lmc_context *ctx) {
    const char *msgs = "[{\"role\":\"user\",\"content\":\"Weather?\"}]";
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\","
                        "\"description\":\"Look up the weather\",\"parameters\":{\"type\":"
                        "\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    const char *kw = "{\"enable_thinking\":false}";
    const lmc_tokenizer *tok = lmc_context_tokenizer(ctx);
    size_t n_plain = 0, n_tools = 0, n_kw = 0;
    int32_t *ids = NULL;
    CHECK(lmc_tokenizer_apply_chat_template_ids(tok, msgs, NULL, true, false, NULL, &ids,
                                                &n_plain) == LMC_OK);
    lmc_free(ids);
    CHECK(lmc_tokenizer_apply_chat_template_ids(tok, msgs, tools, true, false, NULL, &ids,
                                                &n_tools) == LMC_OK);
    lmc_free(ids);
    CHECK(lmc_tokenizer_apply_chat_template_ids(tok, msgs, NULL, true, false, kw, &ids, &n_kw) ==
          LMC_OK);
    lmc_free(ids);
    CHECK(n_tools > n_plain && n_kw > n_plain);
    const char *extra[3] = {"", ",\"tools\":", ",\"chat_template_kwargs\":"};
    const char *val[3] = {"", tools, kw};
    size_t want[3] = {n_plain, n_tools, n_kw};
    for (int i = 0; i < 3; i++) {
        char body[1024];
        snprintf(body, sizeof body, "{\"messages\":%s,\"max_tokens\":1%s%s}", msgs, extra[i],
                 val[i]);
        http_reply r;
        http_post(port, "/v1/chat/completions", body, &r);
        CHECK_EQ_INT(r.status, 200);
        json_object *o = parse_body(&r);
        CHECK_EQ_INT(json_object_get_int64(path(o, "usage", "prompt_tokens", -1, NULL)), want[i]);
        json_object_put(o);
        http_reply_free(&r);
    }
}

/* ------------------------------------------------------------ concurrency */
typedef struct {
    const char *body;
    http_reply r;
} job;

static void *run_job(void *arg) {
    job *j = arg;
    http_post(port, "/v1/chat/completions", j->body, &j->r);
    return NULL;
}

/* Requests from several clients at once are serialized on the model and
 * each gets exactly the reply it would get alone; a client that leaves in
 * the middle of a stream doesn't wedge the server. */
static void test_concurrency(lmc_context *ctx) {
    const char *msgs[3] = {"[{\"role\":\"user\",\"content\":\"one\"}]",
                           "[{\"role\":\"user\",\"content\":\"two\"}]",
                           "[{\"role\":\"user\",\"content\":\"three\"}]"};
    reference refs[3];
    char bodies[3][512];
    job jobs[3];
    pthread_t th[3];
    for (int i = 0; i < 3; i++) {
        refs[i] = chat_ref(ctx, msgs[i]);
        snprintf(bodies[i], sizeof bodies[i], "{\"messages\":%s,\"stream\":%s}", msgs[i],
                 i == 1 ? "true" : "false");
        jobs[i].body = bodies[i];
    }
    /* a client that walks away from a long stream */
    int fd = http_connect(port);
    CHECK(fd >= 0);
    if (fd >= 0) {
        const char *b = "{\"prompt\":\"go\",\"max_tokens\":1000,\"stream\":true}";
        lmc_buf req = {0};
        lmc_buf_printf(&req, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: %zu"
                       "\r\n\r\n%s", strlen(b), b);
        http_send_all(fd, req.p, req.len);
        lmc_buf_free(&req);
        char buf[64];
        CHECK(recv(fd, buf, sizeof buf, 0) > 0);
        close(fd);
    }
    for (int i = 0; i < 3; i++) CHECK(pthread_create(&th[i], NULL, run_job, &jobs[i]) == 0);
    for (int i = 0; i < 3; i++) pthread_join(th[i], NULL);
    for (int i = 0; i < 3; i++) {
        CHECK_EQ_INT(jobs[i].r.status, 200);
        if (i == 1) {
            sse s;
            parse_sse(jobs[i].r.body.p ? jobs[i].r.body.p : "", true, &s);
            CHECK(s.done_last);
            CHECK_STREQ(s.text.p, refs[i].text);
            sse_free(&s);
        } else {
            json_object *o = parse_body(&jobs[i].r);
            CHECK_STREQ(str_at(lmc_json_get(path(o, "choices", NULL, 0, "message"), "content")),
                        refs[i].text);
            json_object_put(o);
        }
        http_reply_free(&jobs[i].r);
        reference_free(&refs[i]);
    }
}

/* Direct parser checks that HTTP can't easily reach. */
static void test_parser(void) {
    lmc_srv_request rq;
    const char *ok = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},"
                     "{\"role\":\"assistant\",\"content\":null,\"tool_calls\":[]},"
                     "{\"role\":\"tool\",\"content\":\"42\",\"tool_call_id\":\"c1\"}],"
                     "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"f\"}}],"
                     "\"temperature\":0.5,\"top_k\":-1,\"seed\":7,\"stop\":\"END\"}";
    CHECK(lmc_srv_request_parse(ok, strlen(ok), LMC_SRV_CHAT, NULL, 1000, &rq) == LMC_OK);
    CHECK(rq.tools_json && strstr(rq.tools_json, "\"name\":\"f\""));
    CHECK(rq.messages_json && strstr(rq.messages_json, "\"tool_call_id\":\"c1\""));
    CHECK(rq.gen.n_stop == 1 && !strcmp(rq.gen.stop[0], "END"));
    CHECK(rq.gen.sampler.temperature == 0.5f && rq.gen.sampler.top_k == 0);
    CHECK_EQ_INT(rq.gen.sampler.seed, 7);
    lmc_srv_request_free(&rq);
    const char *huge = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1e300}";
    CHECK_ERR(lmc_srv_request_parse(huge, strlen(huge), LMC_SRV_CHAT, NULL, 1000, &rq),
              LMC_ERR_INVALID_ARG, "max_tokens");
    CHECK_STREQ(rq.param, "max_tokens");
    lmc_srv_request_free(&rq);
    char *s = lmc_srv_utf8_sanitize("a\xc3(b\xed\xa0\x80", 7);
    CHECK_STREQ(s, "a\xEF\xBF\xBD(b\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
    free(s);
}

static void body(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    (void)dir;
    lmc_gen_params defaults;
    lmc_gen_params_default(&defaults);
    defaults.max_tokens = MAX_TOKENS;
    lmc_server_options o = {.port = 0, .model_name = "tiny", .defaults = &defaults,
                            .max_body_bytes = BODY_CAP};
    lmc_server *srv = NULL;
    CHECK(lmc_server_start(ctx, &o, &srv) == LMC_OK);
    if (!srv) return;
    port = lmc_server_port(srv);
    CHECK(port != 0);
    test_models();
    test_cors();
    test_generation(ctx, tv);
    test_bad_requests();
    test_template_inputs(ctx);
    test_concurrency(ctx);
    lmc_server_stop(srv);
    /* the same port is free again once stopped; a second server on it fails */
    o.port = port;
    CHECK(lmc_server_start(ctx, &o, &srv) == LMC_OK);
    lmc_server *second = NULL;
    CHECK_ERR(lmc_server_start(ctx, &o, &second), LMC_ERR_IO, "cannot listen");
    CHECK(second == NULL);
    lmc_server_stop(srv);
}

int main(void) {
    tiny_single_thread();
    test_parser();
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 11, 0};
    if (tiny_qwen3_run("srv", &spec, body)) return 1;
    return check_summary("test_server");
}
