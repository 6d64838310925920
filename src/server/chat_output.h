/* What a chat completion's text becomes in the reply: content,
 * reasoning_content and tool_calls (parsed in the format the chat template
 * uses, or the one --tool-parser names), complete or as stream deltas; and
 * tool_choice "required" / a named function turned into a grammar over the
 * tools' parameter schemas. */
#ifndef LMC_SERVER_CHAT_OUTPUT_H
#define LMC_SERVER_CHAT_OUTPUT_H
#include "server/request.h"
#include "template/output.h"
#include <json-c/json.h>

typedef struct {
    lmc_tool_format format;
    bool think; /* the template writes <think> blocks */
} lmc_srv_out_cfg;

/* tool_parser NULL or "auto": detected from the tokenizer's chat template. */
lmc_status lmc_srv_out_config(const lmc_tokenizer *tok, const char *tool_parser, lmc_srv_out_cfg *cfg);

/* tool_choice required / named: rq->grammar holds the calls' grammar and
 * rq->forced_prefix the markers that open them where those are special
 * tokens (param "tool_choice" on failure). */
lmc_status lmc_srv_tools_constrain(const lmc_srv_out_cfg *cfg, lmc_srv_request *rq);

/* A fresh "<prefix>_<16 hex digits>" id (tool calls, response items). */
void lmc_srv_new_id(const char *prefix, char *out, size_t n);

/* The parser options of this request (prompt: its ids, for an open <think>). */
lmc_output_opts lmc_srv_out_opts(const lmc_srv_out_cfg *cfg, const lmc_srv_request *rq,
                                 const lmc_tokenizer *tok, const int32_t *prompt, size_t n);

/* Complete reply: fill message m; *finish becomes "tool_calls" when calls were made. */
lmc_status lmc_srv_chat_message(const lmc_output_opts *o, const char *text, json_object *m,
                                const char **finish);

/* Streaming: the delta for newly generated text (NULL: nothing to send
 * yet), and at the end the last delta with any tool calls. */
typedef struct {
    lmc_output_stream os;
} lmc_srv_chat_stream;
void lmc_srv_chat_stream_init(lmc_srv_chat_stream *s, const lmc_output_opts *o);
json_object *lmc_srv_chat_stream_push(lmc_srv_chat_stream *s, const char *text);
json_object *lmc_srv_chat_stream_finish(lmc_srv_chat_stream *s, const char **finish);
void lmc_srv_chat_stream_free(lmc_srv_chat_stream *s);
#endif
