/* POST /v1/responses (the OpenAI Responses API) over the chat machinery: the
 * request is translated into a chat completion request (input items ->
 * messages, instructions -> a system message, flat function tools ->
 * chat tools, text.format -> response_format, reasoning.effort ->
 * reasoning_effort), generated the same way, and the reply rendered as a
 * response object or as its stream of typed events. */
#ifndef LMC_SERVER_RESPONSES_H
#define LMC_SERVER_RESPONSES_H
#include "base/buf.h"
#include "server/request.h"
#include "template/output.h"
#include <json-c/json.h>
#include <time.h>

/* Body of /v1/responses -> body of /v1/chat/completions (*chat malloc'd).
 * On failure param (cap bytes) names the Responses field. */
lmc_status lmc_srv_responses_to_chat(const char *body, size_t len, char **chat, char *param,
                                     size_t cap);

/* The complete response object. */
json_object *lmc_srv_response_json(const char *id, const char *model, time_t created,
                                   const lmc_model_output *m, const char *finish,
                                   size_t prompt_tokens, size_t output_tokens);

/* Streaming: events as "event: TYPE\ndata: {...}\n\n" appended to out. */
typedef struct {
    char id[64], msg_id[64], rs_id[64];
    const char *model;
    time_t created;
    lmc_output_stream os;
    int seq;
    bool msg_open, rs_open;
    lmc_buf text, reasoning;
} lmc_srv_resp_stream;
void lmc_srv_resp_stream_start(lmc_srv_resp_stream *s, const char *id, const char *model,
                               time_t created, const lmc_output_opts *o, lmc_buf *out);
void lmc_srv_resp_stream_push(lmc_srv_resp_stream *s, const char *text, lmc_buf *out);
void lmc_srv_resp_stream_finish(lmc_srv_resp_stream *s, const char *finish, size_t prompt_tokens,
                                size_t output_tokens, lmc_buf *out);
void lmc_srv_resp_stream_free(lmc_srv_resp_stream *s);
#endif
