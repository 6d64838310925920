/* Chat replies with tool calls and reasoning (chat_output.h). */
#include "server/chat_output.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include "grammar/compile.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

lmc_status lmc_srv_out_config(const lmc_tokenizer *tok, const char *tool_parser, lmc_srv_out_cfg *cfg) {
    const char *src = lmc_tokenizer_chat_template(tok, NULL);
    cfg->think = src && strstr(src, "<think>");
    if (!tool_parser || !strcmp(tool_parser, "auto")) {
        cfg->format = lmc_tool_format_detect(src);
        return LMC_OK;
    }
    if (!lmc_tool_format_from_name(tool_parser, &cfg->format))
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "tool parser '%s' is unknown (auto, none, hermes, llama3, mistral, harmony, deepseek)",
                       tool_parser);
    return LMC_OK;
}

lmc_output_opts lmc_srv_out_opts(const lmc_srv_out_cfg *cfg, const lmc_srv_request *rq,
                                 const lmc_tokenizer *tok, const int32_t *prompt, size_t n) {
    lmc_output_opts o = {cfg->format, rq->tools_json != NULL, cfg->think, false};
    if (cfg->think && n) {
        /* a generation prompt that opens the think block itself */
        char *tail = NULL;
        size_t k = n < 4 ? n : 4;
        if (lmc_tokenizer_decode(tok, prompt + n - k, k, false, &tail) == LMC_OK && tail) {
            size_t l = strlen(tail);
            while (l && (tail[l - 1] == '\n' || tail[l - 1] == ' ')) l--;
            o.starts_in_think = l >= 7 && !memcmp(tail + l - 7, "<think>", 7);
        }
        lmc_free(tail);
    }
    return o;
}

/* ---------------------------------------------------------- tool_choice */
static bool put_gbnf_lit(lmc_buf *b, const char *s) {
    bool ok = lmc_buf_putc(b, '"');
    for (; ok && *s; s++) {
        if (*s == '"' || *s == '\\') ok = lmc_buf_putc(b, '\\') && lmc_buf_putc(b, *s);
        else if (*s == '\n') ok = lmc_buf_puts(b, "\\n");
        else ok = lmc_buf_putc(b, *s);
    }
    return ok && lmc_buf_putc(b, '"');
}

#define DS(x) "<\xef\xbd\x9c" x "\xef\xbd\x9c>"

/* How a forced call is written in each format: text appended to the
 * prompt (markers that are special tokens, which a grammar never
 * produces: the model continues after them), the grammar around the calls,
 * and one call's head and tail around its arguments. */
static const struct {
    lmc_tool_format f;
    const char *prompt, *open, *close, *head, *tail;
    bool raw_name; /* the name unquoted (else a JSON string) */
    bool one_tool; /* the prompt names the tool: only one candidate */
} FORMS[] = {
    {LMC_TOOLFMT_HERMES, "", "<tool_call>\n", "\n</tool_call>", "{\"name\": %s, \"arguments\": ", "}", false, false},
    {LMC_TOOLFMT_LLAMA3, "", "", "", "{\"name\": %s, \"parameters\": ", "}", false, false},
    {LMC_TOOLFMT_MISTRAL, "[TOOL_CALLS]", "[", "]", "{\"name\": %s, \"arguments\": ", "}", false, false},
    {LMC_TOOLFMT_DEEPSEEK,
     DS("tool\xe2\x96\x81" "calls\xe2\x96\x81" "begin") DS("tool\xe2\x96\x81" "call\xe2\x96\x81" "begin")
         "function" DS("tool\xe2\x96\x81" "sep"),
     "", "", "%s\n```json\n", "\n```", true, false},
    {LMC_TOOLFMT_HARMONY, "<|channel|>commentary to=functions.%s <|constrain|>json<|message|>", "", "", "", "",
     true, true},
};

lmc_status lmc_srv_tools_constrain(const lmc_srv_out_cfg *cfg, lmc_srv_request *rq) {
    if (rq->tool_choice != LMC_SRV_TOOLS_REQUIRED && rq->tool_choice != LMC_SRV_TOOLS_NAMED) return LMC_OK;
    size_t fi = 0;
    while (fi < sizeof FORMS / sizeof *FORMS && FORMS[fi].f != cfg->format) fi++;
    if (fi == sizeof FORMS / sizeof *FORMS)
        return lmc_srv_fail(rq, "tool_choice", "needs a tool-call format; this model's chat template has none "
                                               "(lmc serve --tool-parser names one)");
    json_object *tools = NULL;
    lmc_status st = lmc_json_parse(rq->tools_json, strlen(rq->tools_json), "tools", &tools);
    if (st) return lmc_srv_fail(rq, "tools", "%s", lmc_last_error());
    lmc_buf g = {0}, rules = {0};
    bool ok = lmc_buf_puts(&g, json_schema_prelude()) && lmc_buf_puts(&g, "root ::= ") &&
              put_gbnf_lit(&g, FORMS[fi].open) && lmc_buf_puts(&g, " (");
    size_t n = 0;
    const char *only = NULL;
    /* the candidates: every tool (required) or the named one */
    for (size_t i = 0; ok && !st && i < json_object_array_length(tools); i++) {
        json_object *fn = lmc_json_get(json_object_array_get_idx(tools, i), "function");
        json_object *nm = lmc_json_get(fn, "name");
        if (!nm || !json_object_is_type(nm, json_type_string)) {
            char p[48];
            snprintf(p, sizeof p, "tools[%zu].function.name", i);
            st = lmc_srv_fail(rq, p, "is required");
            break;
        }
        const char *name = json_object_get_string(nm);
        if (rq->tool_choice == LMC_SRV_TOOLS_NAMED && strcmp(name, rq->tool_choice_name)) continue;
        json_object *params = lmc_json_get(fn, "parameters");
        json_object *any = NULL;
        if (!params) params = any = json_object_new_object();
        char prefix[32], top[64];
        snprintf(prefix, sizeof prefix, "t%zu", i);
        st = json_schema_rules(params, prefix, &rules, top, sizeof top);
        json_object_put(any);
        if (st) {
            char p[64];
            snprintf(p, sizeof p, "tools[%zu].function.parameters", i);
            st = lmc_srv_fail(rq, p, "%s", lmc_last_error());
            break;
        }
        json_object *ns = json_object_new_string(name);
        const char *nlit = FORMS[fi].raw_name ? name
                           : json_object_to_json_string_ext(ns, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
        lmc_buf head = {0};
        ok = lmc_buf_printf(&head, FORMS[fi].head, nlit);
        ok = ok && (n == 0 || lmc_buf_puts(&g, " | ")) && lmc_buf_putc(&g, '(') && put_gbnf_lit(&g, head.p) &&
             lmc_buf_printf(&g, " %s ", top) && put_gbnf_lit(&g, FORMS[fi].tail) && lmc_buf_putc(&g, ')');
        lmc_buf_free(&head);
        json_object_put(ns);
        only = name;
        n++;
    }
    if (!st && n == 0) st = lmc_srv_fail(rq, "tool_choice.function.name", "names no tool in 'tools'");
    if (!st && n > 1 && FORMS[fi].one_tool)
        st = lmc_srv_fail(rq, "tool_choice", "'required' with several tools is not supported in the %s format "
                                             "(name one function)", lmc_tool_format_name(cfg->format));
    ok = ok && lmc_buf_puts(&g, ") ") && put_gbnf_lit(&g, FORMS[fi].close) && lmc_buf_putc(&g, '\n') &&
         lmc_buf_append(&g, rules.p ? rules.p : "", rules.len);
    if (!st && FORMS[fi].prompt[0]) {
        lmc_buf pre = {0};
        ok = ok && lmc_buf_printf(&pre, FORMS[fi].prompt, only ? only : "");
        rq->forced_prefix = lmc_buf_take(&pre);
        if (!rq->forced_prefix) ok = false;
    }
    json_object_put(tools);
    if (!st && !ok) st = lmc_err(LMC_ERR_NOMEM, "server: out of memory");
    if (!st) {
        st = lmc_grammar_from_json_gbnf(g.p, &rq->grammar);
        if (st) st = lmc_srv_fail(rq, "tools", "%s", lmc_last_error());
        else rq->gen.grammar = rq->grammar;
    }
    lmc_buf_free(&g);
    lmc_buf_free(&rules);
    return st;
}

/* ---------------------------------------------------------- replies */
static json_object *jtext(const char *s) {
    char *t = lmc_srv_utf8_sanitize(s, strlen(s));
    json_object *o = json_object_new_string(t ? t : "");
    free(t);
    return o;
}

void lmc_srv_new_id(const char *prefix, char *out, size_t n) {
    static unsigned long long counter;
    unsigned long long x = (unsigned long long)time(NULL) * 0x9E3779B97F4A7C15ull +
                           __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED) * 0xBF58476D1CE4E5B9ull;
    x ^= x >> 29;
    snprintf(out, n, "%s_%016llx", prefix, x);
}

static json_object *tool_calls_json(const lmc_model_output *m, bool stream) {
    json_object *arr = json_object_new_array();
    for (size_t i = 0; i < m->n_calls; i++) {
        json_object *c = json_object_new_object(), *fn = json_object_new_object();
        char id[40];
        lmc_srv_new_id("call", id, sizeof id);
        if (stream) json_object_object_add(c, "index", json_object_new_int((int)i));
        json_object_object_add(c, "id", json_object_new_string(id));
        json_object_object_add(c, "type", json_object_new_string("function"));
        json_object_object_add(fn, "name", jtext(m->calls[i].name));
        json_object_object_add(fn, "arguments", jtext(m->calls[i].arguments));
        json_object_object_add(c, "function", fn);
        json_object_array_add(arr, c);
    }
    return arr;
}

lmc_status lmc_srv_chat_message(const lmc_output_opts *o, const char *text, json_object *m,
                                const char **finish) {
    lmc_model_output out;
    lmc_status st = lmc_output_parse(o, text, &out);
    if (st) return st;
    bool calls = out.n_calls > 0;
    json_object_object_add(m, "content", calls && !out.content[0] ? NULL : jtext(out.content));
    if (out.reasoning[0]) json_object_object_add(m, "reasoning_content", jtext(out.reasoning));
    if (calls) {
        json_object_object_add(m, "tool_calls", tool_calls_json(&out, false));
        *finish = "tool_calls";
    }
    lmc_model_output_free(&out);
    return LMC_OK;
}

void lmc_srv_chat_stream_init(lmc_srv_chat_stream *s, const lmc_output_opts *o) {
    lmc_output_stream_init(&s->os, o);
}

void lmc_srv_chat_stream_free(lmc_srv_chat_stream *s) { lmc_output_stream_free(&s->os); }

static json_object *delta_of(const char *content, const char *reasoning) {
    json_object *d = json_object_new_object();
    if (content && content[0]) json_object_object_add(d, "content", jtext(content));
    if (reasoning && reasoning[0]) json_object_object_add(d, "reasoning_content", jtext(reasoning));
    return d;
}

json_object *lmc_srv_chat_stream_push(lmc_srv_chat_stream *s, const char *text) {
    char *c = NULL, *r = NULL;
    if (lmc_output_stream_push(&s->os, text, &c, &r)) return NULL;
    json_object *d = (c && c[0]) || (r && r[0]) ? delta_of(c, r) : NULL;
    free(c);
    free(r);
    return d;
}

json_object *lmc_srv_chat_stream_finish(lmc_srv_chat_stream *s, const char **finish) {
    char *c = NULL, *r = NULL;
    lmc_model_output m;
    if (lmc_output_stream_finish(&s->os, &c, &r, &m)) return NULL;
    json_object *d = delta_of(c, r);
    if (m.n_calls) {
        json_object_object_add(d, "tool_calls", tool_calls_json(&m, true));
        *finish = "tool_calls";
    }
    free(c);
    free(r);
    lmc_model_output_free(&m);
    return d;
}
