/* Fuzz the HTTP server's request-body parser and validator
 * (lmc_srv_request_parse), with no sockets and no model.
 *
 * Input: byte 0 picks the endpoint (even: /v1/chat/completions, odd:
 * /v1/completions); the remaining bytes are the request body. Besides
 * "no crash", it checks: every refusal carries a message and a field name
 * that fit in an OpenAI error object which is itself valid JSON and UTF-8;
 * an accepted request holds only what the generator can take (normalized
 * messages that re-parse, one prompt with in-vocabulary ids, sampler
 * parameters that lmc_sampler_new accepts, bounded stops and logprobs). */
#include "base/json.h"
#include "fuzz_util.h"
#include "lm/sampler.h"
#include "server/request.h"
#include <stdint.h>

#define FZ_VOCAB 1000

static void check_messages(const char *json) {
    FZ_REQUIRE(json != NULL);
    FZ_REQUIRE(lmc_srv_utf8_valid(json, strlen(json)));
    json_object *m = NULL;
    FZ_REQUIRE(lmc_json_parse(json, strlen(json), "messages", &m) == LMC_OK);
    FZ_REQUIRE(json_object_is_type(m, json_type_array));
    FZ_REQUIRE(json_object_array_length(m) >= 1);
    for (size_t i = 0; i < json_object_array_length(m); i++) {
        json_object *e = json_object_array_get_idx(m, i);
        const char *role = lmc_json_str(e, "role", NULL);
        FZ_REQUIRE(role != NULL);
        FZ_REQUIRE(!strcmp(role, "system") || !strcmp(role, "user") ||
                   !strcmp(role, "assistant") || !strcmp(role, "tool"));
        json_object *c = lmc_json_get(e, "content");
        /* text parts are joined; only an assistant turn may have none */
        FZ_REQUIRE(c ? json_object_is_type(c, json_type_string) : !strcmp(role, "assistant"));
    }
    json_object_put(m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    lmc_srv_kind kind = (data[0] & 1) ? LMC_SRV_COMPLETION : LMC_SRV_CHAT;
    const char *body = (const char *)data + 1;
    size_t len = size - 1;

    char *clean = lmc_srv_utf8_sanitize(body, len);
    FZ_REQUIRE(clean != NULL);
    FZ_REQUIRE(lmc_srv_utf8_valid(clean, strlen(clean)));
    if (lmc_srv_utf8_valid(body, len) && !memchr(body, 0, len))
        FZ_REQUIRE(strlen(clean) == len && !memcmp(clean, body, len));
    free(clean);

    lmc_srv_request rq;
    lmc_status st = lmc_srv_request_parse(body, len, kind, NULL, FZ_VOCAB, &rq);
    FZ_REQUIRE_MESSAGE(st);
    fz_note(kind == LMC_SRV_CHAT ? "chat" : "completion", st);
    if (st != LMC_OK) {
        FZ_REQUIRE(st == LMC_ERR_FORMAT || st == LMC_ERR_INVALID_ARG || st == LMC_ERR_NOMEM);
        FZ_REQUIRE(memchr(rq.param, 0, sizeof rq.param) != NULL);
        FZ_REQUIRE(rq.messages_json == NULL && rq.prompt == NULL && rq.stops == NULL);
        char *e = lmc_srv_error_json("invalid_request_error", lmc_last_error(), rq.param);
        FZ_REQUIRE(e != NULL);
        FZ_REQUIRE(lmc_srv_utf8_valid(e, strlen(e)));
        json_object *o = NULL;
        FZ_REQUIRE(lmc_json_parse(e, strlen(e), "error", &o) == LMC_OK);
        json_object *eo = lmc_json_get(o, "error");
        FZ_REQUIRE(lmc_json_str(eo, "message", NULL) != NULL);
        if (rq.param[0]) FZ_REQUIRE(!strcmp(lmc_json_str(eo, "param", NULL), rq.param));
        json_object_put(o);
        free(e);
        lmc_srv_request_free(&rq);
        return 0;
    }
    if (kind == LMC_SRV_CHAT) {
        check_messages(rq.messages_json);
        if (rq.tools_json) {
            json_object *t = NULL;
            FZ_REQUIRE(lmc_json_parse(rq.tools_json, strlen(rq.tools_json), "tools", &t) == LMC_OK);
            FZ_REQUIRE(json_object_is_type(t, json_type_array));
            json_object_put(t);
        }
        FZ_REQUIRE(rq.prompt == NULL && rq.prompt_ids == NULL);
    } else {
        FZ_REQUIRE((rq.prompt != NULL) != (rq.prompt_ids != NULL));
        if (rq.prompt) FZ_REQUIRE(rq.prompt[0] && lmc_srv_utf8_valid(rq.prompt, strlen(rq.prompt)));
        for (size_t i = 0; i < rq.n_prompt_ids; i++)
            FZ_REQUIRE(rq.prompt_ids[i] >= 0 && rq.prompt_ids[i] < FZ_VOCAB);
        FZ_REQUIRE(rq.messages_json == NULL);
    }
    FZ_REQUIRE(rq.gen.max_tokens >= 1 && rq.gen.max_tokens <= LMC_SRV_MAX_TOKENS);
    FZ_REQUIRE(rq.gen.n_stop <= LMC_SRV_MAX_STOPS);
    for (size_t i = 0; i < rq.gen.n_stop; i++) FZ_REQUIRE(rq.gen.stop[i][0] != 0);
    FZ_REQUIRE(rq.top_logprobs >= 0 && rq.top_logprobs <= LMC_SRV_MAX_TOP_LOGPROBS);
    if (rq.top_logprobs) FZ_REQUIRE(rq.logprobs);
    /* whatever the parser accepts, the sampler accepts */
    lmc_sampler *s = NULL;
    lmc_status ss = lmc_sampler_new(&rq.gen.sampler, FZ_VOCAB, &s);
    FZ_REQUIRE(ss == LMC_OK);
    lmc_sampler_free(s);
    lmc_srv_request_free(&rq);
    return 0;
}
