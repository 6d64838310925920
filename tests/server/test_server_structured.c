/* Structured output over HTTP: response_format json_schema (strict) and
 * json_object hold a random-weight model's replies to the schema, blocking
 * and streamed; schemas the compiler cannot enforce, unknown
 * response_format types and fields the server does not implement get a 400
 * naming them. */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "base/json.h"
#include "check.h"
#include "http_client.h"
#include "lm/lm_test_util.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include "server/chat_output.h"
#include "server/request.h"
#include <json-c/json.h>
#include <pcre2.h>

static uint16_t port;

static bool full_match(const char *pattern, const char *s) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &err, &off, NULL);
    if (!re) return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static json_object *post_json(const char *body, int *status) {
    http_reply r;
    http_post(port, "/v1/chat/completions", body, &r);
    *status = r.status;
    json_object *o = NULL;
    if (r.body.p) lmc_json_parse(r.body.p, r.body.len, "reply", &o);
    http_reply_free(&r);
    return o;
}

static const char *content_of(json_object *o) {
    json_object *c = lmc_json_get(o, "choices");
    c = c && json_object_is_type(c, json_type_array) ? json_object_array_get_idx(c, 0) : NULL;
    json_object *m = lmc_json_get(lmc_json_get(c, "message"), "content");
    return m ? json_object_get_string(m) : NULL;
}

#define SCHEMA                                                                                  \
    "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\",\"maxLength\":6},"      \
    "\"temp\":{\"type\":\"integer\",\"minimum\":-20,\"maximum\":45},\"unit\":{\"enum\":[\"C\","  \
    "\"F\"]}},\"required\":[\"city\",\"temp\",\"unit\"],\"additionalProperties\":false}"
#define SHAPE "\\{\"city\":\"[^\"\\\\\\\\]{0,6}\",\"temp\":-?[0-9]{1,2},\"unit\":\"[CF]\"\\}"

static void test_json_schema(void) {
    char body[2048];
    for (int seed = 0; seed < 4; seed++) {
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"temperature\":1,"
                 "\"seed\":%d,\"max_tokens\":200,\"response_format\":{\"type\":\"json_schema\","
                 "\"json_schema\":{\"name\":\"weather\",\"strict\":true,\"schema\":" SCHEMA "}}}",
                 seed);
        int status = 0;
        json_object *o = post_json(body, &status);
        CHECK_EQ_INT(status, 200);
        const char *c = content_of(o);
        CHECK_MSG(c && full_match(SHAPE, c), "content \"%s\"", c ? c : "(none)");
        json_object *v = NULL;
        CHECK(c && lmc_json_parse(c, strlen(c), "content", &v) == LMC_OK);
        json_object *t = lmc_json_get(v, "temp");
        CHECK(t && json_object_get_int(t) >= -20 && json_object_get_int(t) <= 45);
        json_object_put(v);
        json_object_put(o);
    }
    /* json_object: any object */
    int status = 0;
    json_object *o = post_json("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":300,"
                               "\"temperature\":0,\"response_format\":{\"type\":\"json_object\"}}",
                               &status);
    CHECK_EQ_INT(status, 200);
    const char *c = content_of(o);
    json_object *v = NULL;
    json_object *fr = lmc_json_get(json_object_array_get_idx(lmc_json_get(o, "choices"), 0), "finish_reason");
    /* greedy may run to the length limit inside a string; a complete reply must be an object */
    if (fr && !strcmp(json_object_get_string(fr), "stop")) {
        CHECK_MSG(c && lmc_json_parse(c, strlen(c), "content", &v) == LMC_OK &&
                      json_object_is_type(v, json_type_object), "json_object content \"%s\"", c ? c : "");
    } else {
        CHECK_MSG(c && c[0] == '{', "json_object content \"%s\"", c ? c : "");
    }
    json_object_put(v);
    json_object_put(o);
    /* type text: unconstrained */
    o = post_json("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"max_tokens\":3,"
                  "\"response_format\":{\"type\":\"text\"}}", &status);
    CHECK_EQ_INT(status, 200);
    json_object_put(o);
}

static void test_stream(void) {
    char body[2048];
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"weather?\"}],\"temperature\":1,\"seed\":9,"
             "\"stream\":true,\"max_tokens\":200,\"response_format\":{\"type\":\"json_schema\","
             "\"json_schema\":{\"name\":\"w\",\"schema\":" SCHEMA "}}}");
    http_reply r;
    http_post(port, "/v1/chat/completions", body, &r);
    CHECK_EQ_INT(r.status, 200);
    lmc_buf text = {0};
    lmc_buf_puts(&text, "");
    for (const char *p = r.body.p; p && (p = strstr(p, "data: ")); p += 6) {
        const char *end = strstr(p, "\n\n");
        if (!end || !strncmp(p + 6, "[DONE]", 6)) break;
        json_object *o = NULL;
        if (lmc_json_parse(p + 6, (size_t)(end - p - 6), "chunk", &o) == LMC_OK) {
            json_object *ch = json_object_array_get_idx(lmc_json_get(o, "choices"), 0);
            json_object *d = lmc_json_get(lmc_json_get(ch, "delta"), "content");
            if (d) lmc_buf_puts(&text, json_object_get_string(d));
        }
        json_object_put(o);
    }
    CHECK_MSG(full_match(SHAPE, text.p), "streamed \"%s\"", text.p);
    lmc_buf_free(&text);
    http_reply_free(&r);
}

static void expect_400(const char *body, const char *param, const char *needle) {
    int status = 0;
    json_object *o = post_json(body, &status);
    CHECK_MSG(status == 400, "status %d for %s", status, body);
    json_object *e = lmc_json_get(o, "error");
    const char *p = lmc_json_get(e, "param") ? json_object_get_string(lmc_json_get(e, "param")) : NULL;
    const char *m = lmc_json_get(e, "message") ? json_object_get_string(lmc_json_get(e, "message")) : "";
    CHECK_MSG(p && !strcmp(p, param), "param %s, want %s", p ? p : "null", param);
    CHECK_MSG(strstr(m, needle), "message \"%s\" lacks \"%s\"", m, needle);
    json_object_put(o);
}

static void test_refusals(void) {
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
               "\"json_schema\",\"json_schema\":{\"name\":\"a\",\"schema\":{\"type\":\"object\","
               "\"properties\":{\"a\":{\"allOf\":[]}}}}}}",
               "response_format.json_schema.schema", "'allOf' at #/properties/a");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":\"xml\"}}",
               "response_format.type", "json_schema");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"response_format\":{\"type\":"
               "\"json_schema\",\"json_schema\":{\"schema\":{},\"flavor\":1}}}",
               "response_format.json_schema.flavor", "not supported");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"guided_regex\":\"a+\"}",
               "guided_regex", "not supported");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"audio\":{}}", "audio", "not supported");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"stream\":true,\"stream_options\":"
               "{\"include_usage\":true,\"continuous_usage_stats\":true}}", "stream_options.continuous_usage_stats",
               "not supported");
    http_reply r;
    http_post(port, "/v1/completions", "{\"prompt\":\"x\",\"response_format\":{\"type\":\"json_object\"}}", &r);
    CHECK_MSG(r.status == 400 && r.body.p && strstr(r.body.p, "response_format"), "completions: %d %s",
              r.status, r.body.p ? r.body.p : "");
    http_reply_free(&r);
}

/* ------------------------------------------------------------ tool calls */
#define TOOLS                                                                                      \
    "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"w\","         \
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\","             \
    "\"maxLength\":8},\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":7}},"                 \
    "\"required\":[\"city\",\"days\"]}}},{\"type\":\"function\",\"function\":{\"name\":\"get_time\","  \
    "\"parameters\":{\"type\":\"object\",\"properties\":{\"zone\":{\"enum\":[\"UTC\",\"CET\"]}},"     \
    "\"required\":[\"zone\"]}}}]"

/* name + arguments obey that tool's parameters */
static void check_call(const char *name, const char *args) {
    json_object *a = NULL;
    CHECK_MSG(args && lmc_json_parse(args, strlen(args), "arguments", &a) == LMC_OK, "arguments \"%s\"",
              args ? args : "");
    if (name && !strcmp(name, "get_weather")) {
        json_object *d = lmc_json_get(a, "days"), *c = lmc_json_get(a, "city");
        CHECK_MSG(c && json_object_is_type(c, json_type_string) && d && json_object_get_int(d) >= 1 &&
                      json_object_get_int(d) <= 7, "get_weather arguments %s", args);
    } else {
        const char *z = json_object_get_string(lmc_json_get(a, "zone"));
        CHECK_MSG(name && !strcmp(name, "get_time") && z && (!strcmp(z, "UTC") || !strcmp(z, "CET")),
                  "call %s(%s)", name ? name : "?", args ? args : "");
    }
    json_object_put(a);
}

static void test_tool_calls(void) {
    char body[4096];
    for (int k = 0; k < 4; k++) {
        const char *choice = k % 2 ? "{\"type\":\"function\",\"function\":{\"name\":\"get_weather\"}}"
                                   : "\"required\"";
        snprintf(body, sizeof body,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}],\"tools\":" TOOLS
                 ",\"tool_choice\":%s,\"temperature\":1,\"seed\":%d,\"max_tokens\":120}", choice, k);
        int status = 0;
        json_object *o = post_json(body, &status);
        CHECK_EQ_INT(status, 200);
        json_object *ch = json_object_array_get_idx(lmc_json_get(o, "choices"), 0);
        json_object *msg = lmc_json_get(ch, "message");
        json_object *calls = lmc_json_get(msg, "tool_calls");
        CHECK_MSG(calls && json_object_array_length(calls) == 1, "reply %s",
                  o ? json_object_to_json_string(o) : "(none)");
        json_object *c = json_object_array_get_idx(calls, 0);
        json_object *fn = lmc_json_get(c, "function");
        const char *name = json_object_get_string(lmc_json_get(fn, "name"));
        if (k % 2) CHECK_MSG(name && !strcmp(name, "get_weather"), "named call %s", name ? name : "?");
        check_call(name, json_object_get_string(lmc_json_get(fn, "arguments")));
        CHECK(!strcmp(json_object_get_string(lmc_json_get(c, "type")), "function"));
        const char *id = json_object_get_string(lmc_json_get(c, "id"));
        CHECK(id && !strncmp(id, "call_", 5));
        CHECK(!strcmp(json_object_get_string(lmc_json_get(ch, "finish_reason")), "tool_calls"));
        CHECK(lmc_json_get(msg, "content") == NULL);
        json_object_put(o);
    }
    /* streamed: the call arrives as a tool_calls delta, finish_reason tool_calls */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Time?\"}],\"tools\":" TOOLS
             ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}},\"stream\":true,"
             "\"temperature\":1,\"seed\":5,\"max_tokens\":60}");
    http_reply r;
    http_post(port, "/v1/chat/completions", body, &r);
    CHECK_EQ_INT(r.status, 200);
    const char *name = NULL, *args = NULL, *finish = NULL;
    json_object *keep[64];
    size_t nk = 0;
    for (const char *p = r.body.p; p && (p = strstr(p, "data: ")) && nk < 64; p += 6) {
        const char *end = strstr(p, "\n\n");
        if (!end || !strncmp(p + 6, "[DONE]", 6)) break;
        json_object *o = NULL;
        if (lmc_json_parse(p + 6, (size_t)(end - p - 6), "chunk", &o)) continue;
        keep[nk++] = o;
        json_object *ch = json_object_array_get_idx(lmc_json_get(o, "choices"), 0);
        json_object *tc = lmc_json_get(lmc_json_get(ch, "delta"), "tool_calls");
        if (tc) {
            json_object *fn = lmc_json_get(json_object_array_get_idx(tc, 0), "function");
            name = json_object_get_string(lmc_json_get(fn, "name"));
            args = json_object_get_string(lmc_json_get(fn, "arguments"));
            CHECK(lmc_json_get(json_object_array_get_idx(tc, 0), "index") != NULL);
        }
        if (lmc_json_get(ch, "finish_reason")) finish = json_object_get_string(lmc_json_get(ch, "finish_reason"));
    }
    CHECK_MSG(name && !strcmp(name, "get_time"), "streamed call %s in %s", name ? name : "(none)", r.body.p);
    check_call(name, args);
    CHECK(finish && !strcmp(finish, "tool_calls"));
    for (size_t i = 0; i < nk; i++) json_object_put(keep[i]);
    http_reply_free(&r);
    /* the round trip's second request: the call and its result go back in */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Time?\"},{\"role\":\"assistant\",\"content\":\"\","
             "\"tool_calls\":[{\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_time\","
             "\"arguments\":\"{\\\"zone\\\": \\\"UTC\\\"}\"}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_1\","
             "\"content\":\"12:00\"}],\"tools\":" TOOLS ",\"max_tokens\":5}");
    int status = 0;
    json_object *o = post_json(body, &status);
    CHECK_MSG(status == 200, "round trip: %d %s", status, o ? json_object_to_json_string(o) : "");
    json_object_put(o);
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tool_choice\":\"required\"}",
               "tool_choice", "requires 'tools'");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":" TOOLS
               ",\"tool_choice\":{\"type\":\"function\",\"function\":{\"name\":\"nope\"}}}",
               "tool_choice.function.name", "names no tool");
    expect_400("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":" TOOLS
               ",\"tool_choice\":\"sometimes\"}", "tool_choice", "auto, none, required");
}

/* ------------------------------------------------------------ /v1/responses */
static json_object *post_responses(const char *body, int *status) {
    http_reply r;
    http_post(port, "/v1/responses", body, &r);
    *status = r.status;
    json_object *o = NULL;
    if (r.body.p) lmc_json_parse(r.body.p, r.body.len, "reply", &o);
    if (r.status != 200) fprintf(stderr, "responses reply: %s\n", r.body.p ? r.body.p : "");
    http_reply_free(&r);
    return o;
}

static json_object *output_item(json_object *o, const char *type) {
    json_object *out = lmc_json_get(o, "output");
    for (size_t i = 0; out && i < json_object_array_length(out); i++) {
        json_object *it = json_object_array_get_idx(out, i);
        if (!strcmp(json_object_get_string(lmc_json_get(it, "type")), type)) return it;
    }
    return NULL;
}

static const char *output_text(json_object *o) {
    json_object *m = output_item(o, "message");
    json_object *part = json_object_array_get_idx(lmc_json_get(m, "content"), 0);
    return json_object_get_string(lmc_json_get(part, "text"));
}

#define FLAT_TOOLS                                                                                 \
    "[{\"type\":\"function\",\"name\":\"get_time\",\"description\":\"t\",\"parameters\":{\"type\":"    \
    "\"object\",\"properties\":{\"zone\":{\"enum\":[\"UTC\",\"CET\"]}},\"required\":[\"zone\"]}}]"

static void test_responses(void) {
    int status = 0;
    json_object *o = post_responses("{\"model\":\"m\",\"input\":\"Hi\",\"instructions\":\"Be brief.\","
                                    "\"max_output_tokens\":6}", &status);
    CHECK_EQ_INT(status, 200);
    CHECK_STREQ(json_object_get_string(lmc_json_get(o, "object")), "response");
    CHECK_STREQ(json_object_get_string(lmc_json_get(o, "status")), "incomplete");
    CHECK(output_text(o) != NULL);
    CHECK_EQ_INT(json_object_get_int(lmc_json_get(lmc_json_get(o, "usage"), "output_tokens")), 6);
    json_object_put(o);
    /* a forced function call, then the round trip with its output */
    o = post_responses("{\"input\":[{\"role\":\"user\",\"content\":\"Time?\"}],\"tools\":" FLAT_TOOLS
                       ",\"tool_choice\":{\"type\":\"function\",\"name\":\"get_time\"},\"temperature\":1,"
                       "\"seed\":3,\"max_output_tokens\":60}", &status);
    CHECK_EQ_INT(status, 200);
    json_object *fc = output_item(o, "function_call");
    CHECK_MSG(fc && !strcmp(json_object_get_string(lmc_json_get(fc, "name")), "get_time"), "output %s",
              o ? json_object_to_json_string(o) : "");
    if (fc) check_call("get_time", json_object_get_string(lmc_json_get(fc, "arguments")));
    CHECK(fc && !strncmp(json_object_get_string(lmc_json_get(fc, "call_id")), "call_", 5));
    json_object_put(o);
    o = post_responses("{\"input\":[{\"type\":\"message\",\"role\":\"user\",\"content\":[{\"type\":"
                       "\"input_text\",\"text\":\"Time?\"}]},{\"type\":\"function_call\",\"call_id\":\"call_1\","
                       "\"name\":\"get_time\",\"arguments\":\"{\\\"zone\\\":\\\"UTC\\\"}\"},{\"type\":"
                       "\"function_call_output\",\"call_id\":\"call_1\",\"output\":\"12:00\"}],\"tools\":"
                       FLAT_TOOLS ",\"max_output_tokens\":4}", &status);
    CHECK_EQ_INT(status, 200);
    json_object_put(o);
    /* structured output through text.format */
    o = post_responses("{\"input\":\"weather?\",\"temperature\":1,\"seed\":4,\"max_output_tokens\":200,"
                       "\"text\":{\"format\":{\"type\":\"json_schema\",\"name\":\"w\",\"strict\":true,"
                       "\"schema\":" SCHEMA "}}}", &status);
    CHECK_EQ_INT(status, 200);
    const char *t = output_text(o);
    CHECK_MSG(t && full_match(SHAPE, t), "text.format output \"%s\"", t ? t : "");
    json_object_put(o);
    /* streamed: typed events, deltas adding up to the final text */
    http_reply r;
    http_post(port, "/v1/responses", "{\"input\":\"Hi\",\"stream\":true,\"max_output_tokens\":8}", &r);
    CHECK_EQ_INT(r.status, 200);
    lmc_buf text = {0};
    lmc_buf_puts(&text, "");
    const char *first = NULL, *last = NULL, *final_text = NULL;
    char last_type[64] = "";
    json_object *done = NULL;
    int seq = -1;
    bool ordered = true;
    for (const char *p = r.body.p; p && (p = strstr(p, "data: ")); p += 6) {
        const char *end = strstr(p, "\n\n");
        json_object *ev = NULL;
        if (!end || lmc_json_parse(p + 6, (size_t)(end - p - 6), "event", &ev)) break;
        const char *type = json_object_get_string(lmc_json_get(ev, "type"));
        int sq = json_object_get_int(lmc_json_get(ev, "sequence_number"));
        ordered = ordered && sq == seq + 1;
        seq = sq;
        if (!first) first = strcmp(type, "response.created") ? "other" : "created";
        if (!strcmp(type, "response.output_text.delta"))
            lmc_buf_puts(&text, json_object_get_string(lmc_json_get(ev, "delta")));
        if (!strncmp(type, "response.completed", 18) || !strncmp(type, "response.incomplete", 19)) {
            snprintf(last_type, sizeof last_type, "%s", type);
            last = last_type;
            json_object_put(done);
            done = json_object_get(lmc_json_get(ev, "response"));
        }
        json_object_put(ev);
    }
    CHECK(first && !strcmp(first, "created"));
    CHECK(ordered);
    CHECK_MSG(last && !strcmp(last, "response.incomplete"), "last event %s", last ? last : "(none)");
    final_text = done ? output_text(done) : NULL;
    CHECK_MSG(final_text && !strcmp(final_text, text.p), "final \"%s\" deltas \"%s\"", final_text ? final_text : "", text.p);
    CHECK(!strstr(r.body.p ? r.body.p : "", "[DONE]"));
    json_object_put(done);
    lmc_buf_free(&text);
    http_reply_free(&r);
    /* refusals name the Responses field */
    http_post(port, "/v1/responses", "{\"input\":\"x\",\"store\":true}", &r);
    CHECK_MSG(r.status == 400 && strstr(r.body.p, "\"param\":\"store\""), "%d %s", r.status, r.body.p);
    http_reply_free(&r);
    http_post(port, "/v1/responses", "{\"input\":\"x\",\"previous_response_id\":\"r\"}", &r);
    CHECK_MSG(r.status == 400 && strstr(r.body.p, "previous_response_id"), "%d %s", r.status, r.body.p);
    http_reply_free(&r);
    http_post(port, "/v1/responses", "{\"input\":[{\"type\":\"input_image\"}]}", &r);
    CHECK_MSG(r.status == 400 && strstr(r.body.p, "input[0].type"), "%d %s", r.status, r.body.p);
    http_reply_free(&r);
}

static void body(lmc_context *ctx, const test_vocab *tv, const char *dir) {
    (void)tv, (void)dir;
    lmc_server_options o = {0};
    lmc_server *srv = NULL;
    CHECK(lmc_server_start(ctx, &o, &srv) == LMC_OK);
    if (!srv) return;
    port = lmc_server_port(srv);
    test_json_schema();
    test_stream();
    test_refusals();
    test_tool_calls();
    test_responses();
    lmc_server_stop(srv);
    lmc_server_options bad = {.tool_parser = "qwen"};
    CHECK_ERR(lmc_server_start(ctx, &bad, &srv), LMC_ERR_INVALID_ARG, "tool parser 'qwen'");
}

/* reasoning_effort becomes a template variable; explicit kwargs win */
static void test_reasoning_effort(void) {
    lmc_srv_request rq;
    const char *b1 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_effort\":\"high\"}";
    CHECK(lmc_srv_request_parse(b1, strlen(b1), LMC_SRV_CHAT, NULL, 100, &rq) == LMC_OK);
    CHECK_STREQ(rq.template_kwargs_json, "{\"reasoning_effort\":\"high\"}");
    lmc_srv_request_free(&rq);
    const char *b2 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_effort\":\"low\","
                     "\"chat_template_kwargs\":{\"enable_thinking\":false,\"reasoning_effort\":\"medium\"}}";
    CHECK(lmc_srv_request_parse(b2, strlen(b2), LMC_SRV_CHAT, NULL, 100, &rq) == LMC_OK);
    CHECK_STREQ(rq.template_kwargs_json, "{\"enable_thinking\":false,\"reasoning_effort\":\"medium\"}");
    lmc_srv_request_free(&rq);
    const char *b3 = "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"reasoning_effort\":\"max\"}";
    CHECK(lmc_srv_request_parse(b3, strlen(b3), LMC_SRV_CHAT, NULL, 100, &rq) == LMC_ERR_INVALID_ARG);
    CHECK_STREQ(rq.param, "reasoning_effort");
    lmc_srv_request_free(&rq);
}

/* tool_choice in every format: the grammar takes a well-formed call (and
 * not a call breaking the schema), the forced prefix carries the markers
 * that are special tokens, and the parser reads prefix + call back. */
static void test_forced_forms(void) {
#define DSM(x) "<\xef\xbd\x9c" x "\xef\xbd\x9c>"
    static const struct {
        lmc_tool_format f;
        const char *choice, *prefix, *good, *bad, *args;
    } cases[] = {
        {LMC_TOOLFMT_HERMES, "\"required\"", NULL,
         "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\":\"UTC\"}}\n</tool_call>",
         "<tool_call>\n{\"name\": \"get_time\", \"arguments\": {\"zone\":\"PST\"}}\n</tool_call>",
         "{\"zone\": \"UTC\"}"},
        {LMC_TOOLFMT_LLAMA3, "\"required\"", NULL, "{\"name\": \"get_time\", \"parameters\": {\"zone\":\"CET\"}}",
         "{\"name\": \"get_weather\", \"parameters\": {\"zone\":\"CET\"}}", "{\"zone\": \"CET\"}"},
        {LMC_TOOLFMT_MISTRAL, "\"required\"", "[TOOL_CALLS]", "[{\"name\": \"get_time\", \"arguments\": {\"zone\":\"UTC\"}}]",
         "[{\"name\": \"get_time\", \"arguments\": {}}]", "{\"zone\": \"UTC\"}"},
        {LMC_TOOLFMT_DEEPSEEK, "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}",
         DSM("tool\xe2\x96\x81" "calls\xe2\x96\x81" "begin") DSM("tool\xe2\x96\x81" "call\xe2\x96\x81" "begin")
         "function" DSM("tool\xe2\x96\x81" "sep"),
         "get_time\n```json\n{\"zone\":\"UTC\"}\n```", "get_weather\n```json\n{\"zone\":\"UTC\"}\n```",
         "{\"zone\":\"UTC\"}"},
        {LMC_TOOLFMT_HARMONY, "{\"type\":\"function\",\"function\":{\"name\":\"get_time\"}}",
         "<|channel|>commentary to=functions.get_time <|constrain|>json<|message|>", "{\"zone\":\"CET\"}",
         "{\"zone\":1}", "{\"zone\":\"CET\"}"},
    };
    char body[4096];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":" TOOLS
                 ",\"tool_choice\":%s}", cases[i].choice);
        lmc_srv_request rq;
        CHECK(lmc_srv_request_parse(body, strlen(body), LMC_SRV_CHAT, NULL, 100, &rq) == LMC_OK);
        lmc_srv_out_cfg cfg = {cases[i].f, false};
        const char *fname = lmc_tool_format_name(cases[i].f);
        CHECK_MSG(lmc_srv_tools_constrain(&cfg, &rq) == LMC_OK, "%s: %s", fname, lmc_last_error());
        CHECK_MSG(cases[i].prefix ? rq.forced_prefix && !strcmp(rq.forced_prefix, cases[i].prefix) : !rq.forced_prefix,
                  "%s: prefix %s", fname, rq.forced_prefix ? rq.forced_prefix : "(none)");
        bool complete = false;
        CHECK(rq.grammar && lmc_grammar_match(rq.grammar, cases[i].good, strlen(cases[i].good), &complete, NULL) == LMC_OK);
        CHECK_MSG(complete, "%s: the grammar refuses %s", fname, cases[i].good);
        complete = true;
        CHECK(rq.grammar && lmc_grammar_match(rq.grammar, cases[i].bad, strlen(cases[i].bad), &complete, NULL) == LMC_OK);
        CHECK_MSG(!complete, "%s: the grammar takes %s", fname, cases[i].bad);
        char text[1024];
        snprintf(text, sizeof text, "%s%s", cases[i].prefix ? cases[i].prefix : "", cases[i].good);
        lmc_output_opts o = {cases[i].f, true, false, false};
        lmc_model_output m;
        CHECK(lmc_output_parse(&o, text, &m) == LMC_OK);
        CHECK_MSG(m.n_calls == 1 && !strcmp(m.calls[0].name, "get_time") && !strcmp(m.calls[0].arguments, cases[i].args),
                  "%s: parsed %zu calls (%s)", fname, m.n_calls, m.n_calls ? m.calls[0].arguments : "");
        lmc_model_output_free(&m);
        lmc_srv_request_free(&rq);
    }
    /* harmony names the tool in the prompt: "required" needs a single tool */
    snprintf(body, sizeof body, "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],\"tools\":" TOOLS
             ",\"tool_choice\":\"required\"}");
    lmc_srv_request rq;
    CHECK(lmc_srv_request_parse(body, strlen(body), LMC_SRV_CHAT, NULL, 100, &rq) == LMC_OK);
    lmc_srv_out_cfg h = {LMC_TOOLFMT_HARMONY, false}, none = {LMC_TOOLFMT_NONE, false};
    CHECK_ERR(lmc_srv_tools_constrain(&h, &rq), LMC_ERR_INVALID_ARG, "several tools");
    lmc_srv_request_free(&rq);
    CHECK(lmc_srv_request_parse(body, strlen(body), LMC_SRV_CHAT, NULL, 100, &rq) == LMC_OK);
    CHECK_ERR(lmc_srv_tools_constrain(&none, &rq), LMC_ERR_INVALID_ARG, "--tool-parser");
    lmc_srv_request_free(&rq);
}

int main(void) {
    tiny_single_thread();
    test_reasoning_effort();
    test_forced_forms();
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 11, 0};
    if (tiny_qwen3_run("srvjs", &spec, body)) return 1;
    return check_summary("test_server_structured");
}
