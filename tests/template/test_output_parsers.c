/* Tool-call and reasoning parsers. For each format: the chat template of a
 * real model family renders an assistant turn with tool_calls (what that
 * model is trained to emit); parsing the rendered turn gives back the
 * calls, with arguments as the reference parsers of the format return them
 * (Python's json.dumps for Hermes / Llama 3 / Mistral, the raw text for
 * harmony and DeepSeek). Hand-written model-like outputs (fixtures from the
 * formats' documented behaviour: content before calls, several calls,
 * malformed calls left as content, reasoning) parse to the expected
 * fields, and streaming them in every chunk size gives the same result. */
#include "base/file.h"
#include "check.h"
#include "lmc.h"
#include "template/output.h"
#include <stdlib.h>
#include <string.h>

#define DS(x) "<\xef\xbd\x9c" x "\xef\xbd\x9c>"
#define DS_CALLS_BEGIN DS("tool\xe2\x96\x81" "calls\xe2\x96\x81" "begin")
#define DS_CALLS_END DS("tool\xe2\x96\x81" "calls\xe2\x96\x81" "end")
#define DS_CALL_BEGIN DS("tool\xe2\x96\x81" "call\xe2\x96\x81" "begin")
#define DS_CALL_END DS("tool\xe2\x96\x81" "call\xe2\x96\x81" "end")
#define DS_SEP DS("tool\xe2\x96\x81" "sep")

typedef struct {
    const char *name;
    lmc_tool_format f;
    bool think, in_think;
    const char *output;
    const char *content, *reasoning;
    const char *calls[3][2]; /* name, arguments */
} fixture;

static const fixture FIXTURES[] = {
    {"hermes content + call", LMC_TOOLFMT_HERMES, false, false,
     "Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\", \"days\": 3}}\n</tool_call>",
     "Let me check.\n", "", {{"get_weather", "{\"city\": \"Paris\", \"days\": 3}"}}},
    {"hermes two calls, compact json", LMC_TOOLFMT_HERMES, false, false,
     "<tool_call>\n{\"name\":\"a\",\"arguments\":{\"x\":[1,2.5,\"\xc3\xa9\\n\"],\"y\":null}}\n</tool_call>\n"
     "<tool_call>\n{\"name\": \"b\", \"arguments\": {}}\n</tool_call>",
     "", "", {{"a", "{\"x\": [1, 2.5, \"\xc3\xa9\\n\"], \"y\": null}"}, {"b", "{}"}}},
    /* json.dumps float layouts: exponent from 1e16 and below 1e-4, ".0" kept */
    {"hermes float repr", LMC_TOOLFMT_HERMES, false, false,
     "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"v\": [1e16, 0.0001, 100.0, 3.14159, 1e-5, "
     "123456789.125, 1.5e300, -0.0, 2E2], \"s\": \"\\u0001\\t\\\"q\\\"\"}}\n</tool_call>",
     "", "", {{"f", "{\"v\": [1e+16, 0.0001, 100.0, 3.14159, 1e-05, 123456789.125, 1.5e+300, -0.0, "
               "200.0], \"s\": \"\\u0001\\t\\\"q\\\"\"}"}}},
    {"hermes unclosed call", LMC_TOOLFMT_HERMES, false, false,
     "<tool_call>\n{\"name\": \"f\", \"arguments\": {\"q\": true}}", "", "", {{"f", "{\"q\": true}"}}},
    {"hermes malformed stays content", LMC_TOOLFMT_HERMES, false, false,
     "x <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>",
     "x <tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>", "", {{0}}},
    {"hermes with reasoning", LMC_TOOLFMT_HERMES, true, false,
     "<think>\nneed the weather\n</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"c\": \"P\"}}\n</tool_call>",
     "\n\n", "\nneed the weather\n", {{"w", "{\"c\": \"P\"}"}}},
    {"think only", LMC_TOOLFMT_HERMES, true, false, "<think>\nI should greet.\n</think>\n\nHello!",
     "\n\nHello!", "\nI should greet.\n", {{0}}},
    {"prompt opened the think block", LMC_TOOLFMT_NONE, true, true, "Reasoning here.</think>Answer",
     "Answer", "Reasoning here.", {{0}}},
    {"unterminated think", LMC_TOOLFMT_NONE, true, false, "<think>still going", "", "still going", {{0}}},
    {"llama3 json", LMC_TOOLFMT_LLAMA3, false, false,
     "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\", \"unit\": \"celsius\"}}", "", "",
     {{"get_weather", "{\"city\": \"Paris\", \"unit\": \"celsius\"}"}}},
    {"llama3 python_tag, two calls", LMC_TOOLFMT_LLAMA3, false, false,
     "<|python_tag|>{\"name\": \"f\", \"arguments\": {\"n\": 1}}; {\"name\": \"g\", \"parameters\": {}}", "", "",
     {{"f", "{\"n\": 1}"}, {"g", "{}"}}},
    {"llama3 plain text", LMC_TOOLFMT_LLAMA3, false, false, "The answer is {4}.", "The answer is {4}.", "", {{0}}},
    {"llama3 broken json", LMC_TOOLFMT_LLAMA3, false, false, "{\"name\": \"f\", \"parameters\": {",
     "{\"name\": \"f\", \"parameters\": {", "", {{0}}},
    {"mistral array", LMC_TOOLFMT_MISTRAL, false, false,
     "Sure. [TOOL_CALLS][{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}, "
     "{\"name\": \"t\", \"arguments\": {\"z\": -1.25e-07}}]",
     "Sure. ", "", {{"get_weather", "{\"city\": \"Paris\"}"}, {"t", "{\"z\": -1.25e-07}"}}},
    {"mistral v11 calls", LMC_TOOLFMT_MISTRAL, false, false,
     "[TOOL_CALLS]get_weather[ARGS]{\"city\": \"Paris\"}[TOOL_CALLS]now[ARGS]{}", "", "",
     {{"get_weather", "{\"city\": \"Paris\"}"}, {"now", "{}"}}},
    {"mistral no calls", LMC_TOOLFMT_MISTRAL, false, false, "[TOOLS] is a word", "[TOOLS] is a word", "", {{0}}},
    {"harmony analysis + call", LMC_TOOLFMT_HARMONY, false, false,
     "<|channel|>analysis<|message|>User wants weather.<|end|><|start|>assistant<|channel|>commentary "
     "to=functions.get_weather <|constrain|>json<|message|>{\"city\":\"Paris\"}",
     "", "User wants weather.", {{"get_weather", "{\"city\":\"Paris\"}"}}},
    {"harmony final", LMC_TOOLFMT_HARMONY, false, false,
     "<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Hello!",
     "Hello!", "Think.", {{0}}},
    {"harmony recipient before channel", LMC_TOOLFMT_HARMONY, false, false,
     "<|start|>assistant to=functions.lookup<|channel|>commentary json<|message|>{\"id\": 7}<|call|>",
     "", "", {{"lookup", "{\"id\": 7}"}}},
    {"deepseek v3", LMC_TOOLFMT_DEEPSEEK, false, false,
     "Checking." DS_CALLS_BEGIN DS_CALL_BEGIN "function" DS_SEP "get_weather\n```json\n{\"city\": \"Paris\"}\n```"
     DS_CALL_END DS_CALL_BEGIN "function" DS_SEP "now\n```json\n{}\n```" DS_CALL_END DS_CALLS_END,
     "Checking.", "", {{"get_weather", "{\"city\": \"Paris\"}"}, {"now", "{}"}}},
    {"deepseek v3.1", LMC_TOOLFMT_DEEPSEEK, false, false,
     DS_CALLS_BEGIN DS_CALL_BEGIN "get_weather" DS_SEP "{\"city\":\"Paris\"}" DS_CALL_END DS_CALLS_END, "", "",
     {{"get_weather", "{\"city\":\"Paris\"}"}}},
    {"tools not offered", LMC_TOOLFMT_NONE, false, false, "<tool_call>\n{}\n</tool_call>",
     "<tool_call>\n{}\n</tool_call>", "", {{0}}},
};

static size_t n_calls(const fixture *f) {
    size_t n = 0;
    while (n < 3 && f->calls[n][0]) n++;
    return n;
}

static void check_output(const char *what, const fixture *f, const lmc_model_output *m) {
    CHECK_MSG(!strcmp(m->content, f->content), "%s: content \"%s\" want \"%s\"", what, m->content, f->content);
    CHECK_MSG(!strcmp(m->reasoning, f->reasoning), "%s: reasoning \"%s\" want \"%s\"", what, m->reasoning,
              f->reasoning);
    CHECK_MSG(m->n_calls == n_calls(f), "%s: %zu calls, want %zu", what, m->n_calls, n_calls(f));
    for (size_t i = 0; i < m->n_calls && i < n_calls(f); i++) {
        CHECK_MSG(!strcmp(m->calls[i].name, f->calls[i][0]), "%s: call %zu name %s", what, i, m->calls[i].name);
        CHECK_MSG(!strcmp(m->calls[i].arguments, f->calls[i][1]), "%s: call %zu arguments %s want %s", what, i,
                  m->calls[i].arguments, f->calls[i][1]);
    }
}

static lmc_output_opts opts_of(const fixture *f) {
    lmc_output_opts o = {f->f, true, f->think, f->in_think};
    if (!strcmp(f->name, "tools not offered")) o.tools = false, o.format = LMC_TOOLFMT_HERMES;
    return o;
}

static void test_fixtures(void) {
    for (size_t i = 0; i < sizeof FIXTURES / sizeof *FIXTURES; i++) {
        const fixture *f = &FIXTURES[i];
        lmc_output_opts o = opts_of(f);
        lmc_model_output m;
        CHECK(lmc_output_parse(&o, f->output, &m) == LMC_OK);
        check_output(f->name, f, &m);
        lmc_model_output_free(&m);
        /* streamed in chunks of every size from 1 to 9 bytes */
        for (size_t chunk = 1; chunk <= 9; chunk++) {
            lmc_output_stream s;
            lmc_output_stream_init(&s, &o);
            lmc_buf content = {0}, reasoning = {0};
            lmc_buf_puts(&content, "");
            lmc_buf_puts(&reasoning, "");
            size_t n = strlen(f->output);
            for (size_t at = 0; at < n; at += chunk) {
                char piece[16];
                size_t k = n - at < chunk ? n - at : chunk;
                memcpy(piece, f->output + at, k);
                piece[k] = 0;
                char *c = NULL, *r = NULL;
                CHECK(lmc_output_stream_push(&s, piece, &c, &r) == LMC_OK);
                if (c) lmc_buf_puts(&content, c);
                if (r) lmc_buf_puts(&reasoning, r);
                free(c), free(r);
            }
            char *c = NULL, *r = NULL;
            lmc_model_output fin;
            CHECK(lmc_output_stream_finish(&s, &c, &r, &fin) == LMC_OK);
            lmc_buf_puts(&content, c);
            lmc_buf_puts(&reasoning, r);
            free(c), free(r);
            char what[160];
            snprintf(what, sizeof what, "%s (stream, chunks of %zu)", f->name, chunk);
            free(fin.content), free(fin.reasoning);
            fin.content = content.p, fin.reasoning = reasoning.p;
            check_output(what, f, &fin);
            lmc_model_output_free(&fin);
            lmc_output_stream_free(&s);
        }
    }
}

#define ARGS_OBJ "{\"city\":\"Paris\",\"days\":2}"

/* A template's rendering of an assistant tool call, parsed back. */
static void test_rendered(void) {
    static const struct {
        const char *file;
        lmc_tool_format f;
        const char *eos; /* end-of-turn text the model stops at (eos, not output) */
        const char *content; /* the assistant turn's content, as the template expects it */
        const char *args;    /* arguments as the template expects them (object or JSON text) */
    } fam[] = {
        {"qwen3.jinja", LMC_TOOLFMT_HERMES, "<|im_end|>", "\"\"", ARGS_OBJ},
        {"qwen2_5.jinja", LMC_TOOLFMT_HERMES, "<|im_end|>", "\"\"", ARGS_OBJ},
        {"llama3_2.jinja", LMC_TOOLFMT_LLAMA3, "<|eot_id|>", "\"\"", ARGS_OBJ},
        {"mistral_nemo.jinja", LMC_TOOLFMT_MISTRAL, "</s>", "\"\"", ARGS_OBJ},
        {"deepseek_v3.jinja", LMC_TOOLFMT_DEEPSEEK, DS("end\xe2\x96\x81of\xe2\x96\x81sentence"), "null",
         "\"{\\\"city\\\": \\\"Paris\\\", \\\"days\\\": 2}\""},
    };
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"description\":\"w\","
                        "\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}}}}}]";
    const char *user = "[{\"role\":\"user\",\"content\":\"Weather in Paris?\"}]";
    const char *both_fmt = "[{\"role\":\"user\",\"content\":\"Weather in Paris?\"},{\"role\":\"assistant\","
                       "\"content\":%s,\"tool_calls\":[{\"id\":\"call12345\",\"type\":\"function\",\"function\":"
                       "{\"name\":\"get_weather\",\"arguments\":%s}}]}]";
    const char *extra = "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\"}";
    for (size_t i = 0; i < sizeof fam / sizeof *fam; i++) {
        char path[512];
        const char *root = getenv("LMC_SOURCE_DIR");
        snprintf(path, sizeof path, "%s/tests/golden/templates/%s", root && *root ? root : ".", fam[i].file);
        char *src = NULL;
        size_t len = 0;
        if (lmc_read_file(path, "template", 1 << 20, &src, &len)) {
            CHECK_MSG(0, "%s: %s", path, lmc_last_error());
            continue;
        }
        CHECK_MSG(lmc_tool_format_detect(src) == fam[i].f, "%s detected as %s", fam[i].file,
                  lmc_tool_format_name(lmc_tool_format_detect(src)));
        lmc_chat_template *t = NULL;
        char *prompt = NULL, *full = NULL, both[1024];
        snprintf(both, sizeof both, both_fmt, fam[i].content, fam[i].args);
        CHECK(lmc_chat_template_compile(src, &t) == LMC_OK);
        CHECK(lmc_chat_template_apply(t, user, tools, true, false, extra, &prompt) == LMC_OK);
        CHECK_MSG(lmc_chat_template_apply(t, both, tools, false, false, extra, &full) == LMC_OK, "%s: %s", fam[i].file, lmc_last_error());
        if (prompt && full) {
            CHECK_MSG(!strncmp(full, prompt, strlen(prompt)), "%s: the prompt is not a prefix", fam[i].file);
            /* the model's turn: after the generation prompt, up to its eos */
            char *turn = strdup(full + strlen(prompt));
            char *e = strstr(turn, fam[i].eos);
            if (e) *e = 0;
            lmc_output_opts o = {fam[i].f, true, strstr(src, "<think>") != NULL, false};
            lmc_model_output m;
            CHECK(lmc_output_parse(&o, turn, &m) == LMC_OK);
            CHECK_MSG(m.n_calls == 1 && !strcmp(m.calls[0].name, "get_weather") &&
                          !strcmp(m.calls[0].arguments, "{\"city\": \"Paris\", \"days\": 2}"),
                      "%s: turn \"%s\" -> %zu calls (%s)", fam[i].file, turn, m.n_calls,
                      m.n_calls ? m.calls[0].arguments : "");
            CHECK_MSG(strspn(m.content, " \n") == strlen(m.content), "%s: content \"%s\"", fam[i].file, m.content);
            lmc_model_output_free(&m);
            free(turn);
        }
        lmc_free(prompt);
        lmc_free(full);
        lmc_chat_template_free(t);
        free(src);
    }
    CHECK(lmc_tool_format_detect("{{ '<|start|>assistant<|channel|>analysis' }}") == LMC_TOOLFMT_HARMONY);
    CHECK(lmc_tool_format_detect("plain {{ messages }}") == LMC_TOOLFMT_NONE);
    lmc_tool_format f;
    CHECK(lmc_tool_format_from_name("deepseek", &f) && f == LMC_TOOLFMT_DEEPSEEK);
    CHECK(!lmc_tool_format_from_name("qwen", &f));
}

int main(void) {
    test_fixtures();
    test_rendered();
    return check_summary("test_output_parsers");
}
