/* Model output parsers: the tool-call formats of the supported families
 * (Hermes/Qwen <tool_call>, Llama 3.x JSON and <|python_tag|>, Mistral
 * [TOOL_CALLS], gpt-oss harmony channels, DeepSeek V3 / V3.1) and the
 * reasoning split (<think>...</think>, harmony's analysis channel), for
 * complete outputs and as a stream of deltas. */
#ifndef LMC_TEMPLATE_OUTPUT_H
#define LMC_TEMPLATE_OUTPUT_H
#include "base/buf.h"
#include <json-c/json.h>
#include "lmc.h"
#include <stdbool.h>

typedef enum {
    LMC_TOOLFMT_NONE = 0,
    LMC_TOOLFMT_HERMES,
    LMC_TOOLFMT_LLAMA3,
    LMC_TOOLFMT_MISTRAL,
    LMC_TOOLFMT_HARMONY,
    LMC_TOOLFMT_DEEPSEEK,
} lmc_tool_format;

const char *lmc_tool_format_name(lmc_tool_format f); /* "hermes", ... "none" */
bool lmc_tool_format_from_name(const char *name, lmc_tool_format *out);
/* From the markers a chat template writes (none when it has none). */
lmc_tool_format lmc_tool_format_detect(const char *template_src);

typedef struct {
    lmc_tool_format format;
    bool tools;           /* the request offered tools: look for calls */
    bool think;           /* split <think>...</think> into reasoning */
    bool starts_in_think; /* the prompt ended inside an open <think> */
} lmc_output_opts;

typedef struct {
    char *name, *arguments; /* arguments: a JSON text */
} lmc_tool_call;

typedef struct {
    char *content;   /* never NULL ("" when none) */
    char *reasoning; /* never NULL ("" when none) */
    lmc_tool_call *calls;
    size_t n_calls;
} lmc_model_output;

/* Parse a complete output. Text that looks like a call but does not parse
 * stays in content, as the reference parsers do. */
lmc_status lmc_output_parse(const lmc_output_opts *o, const char *text, lmc_model_output *out);
void lmc_model_output_free(lmc_model_output *m);

/* Streaming: push text as it is generated; *content and *reasoning (malloc'd,
 * possibly "") receive what became safe to show, holding back anything that
 * may still turn out to be a marker or a tool call. finish emits the rest
 * and the calls; the concatenated deltas equal the complete parse. */
typedef struct {
    lmc_output_opts o;
    lmc_buf text;
    size_t sent_content, sent_reasoning;
} lmc_output_stream;
void lmc_output_stream_init(lmc_output_stream *s, const lmc_output_opts *o);
lmc_status lmc_output_stream_push(lmc_output_stream *s, const char *text, char **content,
                                  char **reasoning);
lmc_status lmc_output_stream_finish(lmc_output_stream *s, char **content, char **reasoning,
                                    lmc_model_output *final);
void lmc_output_stream_free(lmc_output_stream *s);

/* Python's json.dumps(v, ensure_ascii=False) (", " and ": " separators),
 * the form the reference parsers give arguments in. */
bool lmc_py_json_dumps(json_object *v, lmc_buf *out);
#endif
