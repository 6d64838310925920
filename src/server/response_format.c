/* Request fields beyond sampling: `response_format` (json_object and
 * json_schema, strict or not, compiled into the request's grammar) and the
 * audit that refuses fields the server does not implement, so no setting is
 * silently ignored. */
#include "base/error.h"
#include "base/json.h"
#include "server/request.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fields each endpoint understands (anything else is a 400 naming it). */
static const char *const COMMON[] = {
    "model", "stream", "stream_options", "max_tokens", "temperature", "top_p", "top_k", "min_p",
    "repetition_penalty", "repetition_context_size", "presence_penalty", "frequency_penalty",
    "penalty_context_size", "seed", "n", "best_of", "stop", "logit_bias", "logprobs",
    "user", /* an end-user id for abuse monitoring: accepted, nothing to do */
    "cache_salt", /* partitions the prompt cache (with the API key) */
};
static const char *const CHAT_ONLY[] = {
    "messages", "tools", "tool_choice", "chat_template_kwargs", "max_completion_tokens",
    "top_logprobs", "response_format", "parallel_tool_calls", "reasoning_effort",
};
static const char *const COMPLETION_ONLY[] = {"prompt", "echo"};

static bool listed(const char *k, const char *const *list, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, list[i])) return true;
    return false;
}
#define LISTED(k, a) listed(k, a, sizeof a / sizeof a[0])

lmc_status lmc_srv_check_fields(lmc_srv_request *rq, json_object *root) {
    json_object_object_foreach(root, key, val) {
        (void)val;
        if (LISTED(key, COMMON)) continue;
        if (rq->kind == LMC_SRV_CHAT ? LISTED(key, CHAT_ONLY) : LISTED(key, COMPLETION_ONLY)) continue;
        char *shown = lmc_srv_utf8_sanitize(key, strnlen(key, 64));
        lmc_status st = lmc_srv_fail(rq, shown ? shown : "?", "is not supported by this server");
        free(shown);
        return st;
    }
    json_object *so = lmc_json_get(root, "stream_options");
    if (so && json_object_is_type(so, json_type_object)) {
        json_object_object_foreach(so, k, v) {
            (void)v;
            if (strcmp(k, "include_usage")) {
                char p[96];
                snprintf(p, sizeof p, "stream_options.%.60s", k);
                return lmc_srv_fail(rq, p, "is not supported by this server");
            }
        }
    }
    /* a field lmc parses but can only honour one way */
    json_object *ptc = lmc_json_get(root, "parallel_tool_calls");
    if (ptc && !json_object_is_type(ptc, json_type_boolean))
        return lmc_srv_fail(rq, "parallel_tool_calls", "must be a boolean");
    return LMC_OK;
}

static lmc_status only_keys(lmc_srv_request *rq, json_object *o, const char *where,
                            const char *const *keys, size_t n) {
    json_object_object_foreach(o, key, val) {
        (void)val;
        if (listed(key, keys, n)) continue;
        char p[160];
        snprintf(p, sizeof p, "%s.%.60s", where, key);
        return lmc_srv_fail(rq, p, "is not supported");
    }
    return LMC_OK;
}

lmc_status lmc_srv_response_format(lmc_srv_request *rq, json_object *root) {
    json_object *rf = lmc_json_get(root, "response_format");
    if (!rf) return LMC_OK;
    if (!json_object_is_type(rf, json_type_object))
        return lmc_srv_fail(rq, "response_format", "must be an object");
    json_object *type = lmc_json_get(rf, "type");
    if (!type || !json_object_is_type(type, json_type_string))
        return lmc_srv_fail(rq, "response_format.type", "is required (text, json_object or json_schema)");
    const char *t = json_object_get_string(type);
    static const char *const TOP[] = {"type", "json_schema"};
    lmc_status st = only_keys(rq, rf, "response_format", TOP, 2);
    if (st) return st;
    if (!strcmp(t, "text")) return LMC_OK;
    if (!strcmp(t, "json_object")) {
        st = lmc_grammar_json_object(&rq->grammar);
        rq->gen.grammar = rq->grammar;
        return st ? lmc_srv_fail(rq, "response_format", "%s", lmc_last_error()) : LMC_OK;
    }
    if (strcmp(t, "json_schema"))
        return lmc_srv_fail(rq, "response_format.type",
                            "must be text, json_object or json_schema");
    json_object *js = lmc_json_get(rf, "json_schema");
    if (!js || !json_object_is_type(js, json_type_object))
        return lmc_srv_fail(rq, "response_format.json_schema", "must be an object with a schema");
    static const char *const JS[] = {"name", "schema", "strict", "description"};
    if ((st = only_keys(rq, js, "response_format.json_schema", JS, 4))) return st;
    json_object *strict = lmc_json_get(js, "strict");
    if (strict && !json_object_is_type(strict, json_type_boolean))
        return lmc_srv_fail(rq, "response_format.json_schema.strict", "must be a boolean");
    json_object *schema = lmc_json_get(js, "schema");
    if (!schema || !json_object_is_type(schema, json_type_object))
        return lmc_srv_fail(rq, "response_format.json_schema.schema", "must be a JSON schema object");
    /* strict or not, the output is held to the schema: a schema the
     * compiler cannot enforce is refused rather than loosely followed */
    const char *text = json_object_to_json_string_ext(schema, JSON_C_TO_STRING_PLAIN);
    st = lmc_grammar_from_json_schema(text, &rq->grammar);
    if (st) return lmc_srv_fail(rq, "response_format.json_schema.schema", "%s", lmc_last_error());
    rq->gen.grammar = rq->grammar;
    return LMC_OK;
}

lmc_status lmc_srv_parse_tool_choice(lmc_srv_request *rq, json_object *root) {
    json_object *tc = lmc_json_get(root, "tool_choice");
    if (!tc) return LMC_OK;
    if (json_object_is_type(tc, json_type_string)) {
        static const char *const MODES[] = {"auto", "none", "required"};
        const char *m = json_object_get_string(tc);
        size_t k = 0;
        while (k < 3 && strcmp(m, MODES[k])) k++;
        if (k == 3) return lmc_srv_fail(rq, "tool_choice", "must be auto, none, required or a function");
        rq->tool_choice = (lmc_srv_tool_choice)k;
    } else {
        json_object *type = lmc_json_get(tc, "type"), *fn = lmc_json_get(tc, "function");
        json_object *name = lmc_json_get(fn, "name");
        if (!type || !json_object_is_type(type, json_type_string) || strcmp(json_object_get_string(type), "function"))
            return lmc_srv_fail(rq, "tool_choice.type", "must be \"function\"");
        if (!name || !json_object_is_type(name, json_type_string))
            return lmc_srv_fail(rq, "tool_choice.function.name", "must be a string");
        if (!(rq->tool_choice_name = strdup(json_object_get_string(name))))
            return lmc_err(LMC_ERR_NOMEM, "request: out of memory");
        rq->tool_choice = LMC_SRV_TOOLS_NAMED;
    }
    if (rq->tool_choice >= LMC_SRV_TOOLS_REQUIRED && !rq->tools_json)
        return lmc_srv_fail(rq, "tool_choice", "requires 'tools'");
    if (rq->tool_choice >= LMC_SRV_TOOLS_REQUIRED && rq->grammar)
        return lmc_srv_fail(rq, "tool_choice", "cannot be combined with response_format (both constrain the reply)");
    return LMC_OK;
}

/* OpenAI's reasoning_effort reaches the chat template as a variable of the
 * same name (gpt-oss templates read it); chat_template_kwargs wins. */
lmc_status lmc_srv_reasoning_effort(lmc_srv_request *rq, json_object *root) {
    json_object *re = lmc_json_get(root, "reasoning_effort");
    if (!re) return LMC_OK;
    static const char *const LEVELS[] = {"minimal", "low", "medium", "high"};
    const char *v = json_object_is_type(re, json_type_string) ? json_object_get_string(re) : "";
    if (!LISTED(v, LEVELS))
        return lmc_srv_fail(rq, "reasoning_effort", "must be minimal, low, medium or high");
    json_object *kw = NULL;
    if (rq->template_kwargs_json) {
        if (lmc_json_parse(rq->template_kwargs_json, strlen(rq->template_kwargs_json), "kwargs", &kw))
            return lmc_srv_fail(rq, "chat_template_kwargs", "%s", lmc_last_error());
    } else {
        kw = json_object_new_object();
    }
    if (!kw) return lmc_err(LMC_ERR_NOMEM, "request: out of memory");
    if (!lmc_json_get(kw, "reasoning_effort"))
        json_object_object_add(kw, "reasoning_effort", json_object_new_string(v));
    const char *t = json_object_to_json_string_ext(kw, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *dup = t ? strdup(t) : NULL;
    json_object_put(kw);
    if (!dup) return lmc_err(LMC_ERR_NOMEM, "request: out of memory");
    free(rq->template_kwargs_json);
    rq->template_kwargs_json = dup;
    return LMC_OK;
}
