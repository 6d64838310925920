/* Request bodies of the OpenAI-compatible endpoints: parse and validate the
 * JSON of POST /v1/chat/completions and POST /v1/completions into a
 * generation request. No sockets and no model: the HTTP layer, the tests
 * and the fuzz target all drive it with plain bytes. */
#ifndef LMC_SERVER_REQUEST_H
#define LMC_SERVER_REQUEST_H
#include "lmc.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { LMC_SRV_CHAT, LMC_SRV_COMPLETION } lmc_srv_kind;
typedef enum {
    LMC_SRV_TOOLS_AUTO = 0, /* tool calls are parsed when tools are offered */
    LMC_SRV_TOOLS_NONE,
    LMC_SRV_TOOLS_REQUIRED, /* constrained to one call of any tool */
    LMC_SRV_TOOLS_NAMED,    /* constrained to one call of tool_choice_name */
} lmc_srv_tool_choice;

#define LMC_SRV_MAX_STOPS 16
#define LMC_SRV_MAX_TOP_LOGPROBS 20
#define LMC_SRV_MAX_TOKENS (1u << 24)
#define LMC_SRV_MAX_CACHE_SALT 256

typedef struct {
    lmc_srv_kind kind;
    char *model;                /* requested model id, or NULL */
    char *cache_salt;           /* prompt-cache partition, or NULL */
    /* chat */
    char *messages_json;        /* messages with text parts joined into one string */
    char *tools_json;           /* NULL: no tools */
    char *template_kwargs_json; /* chat_template_kwargs, or NULL */
    /* completion: exactly one of prompt / prompt_ids */
    char *prompt;
    int32_t *prompt_ids;
    size_t n_prompt_ids;
    /* resolved generation parameters: the defaults overridden by the body.
     * gen's stop and logit-bias pointers lead into this struct (or to the
     * defaults' borrowed arrays when the body leaves them out). */
    lmc_gen_params gen;
    char **stops;
    size_t n_stops;
    int32_t *bias_ids;
    float *bias_vals;
    size_t n_bias;
    lmc_grammar *grammar;       /* response_format's or tool_choice's constraint (owned) */
    lmc_srv_tool_choice tool_choice;
    char *tool_choice_name;
    bool responses;             /* arrived as POST /v1/responses (set by the HTTP layer) */
    char *forced_prefix;        /* tool_choice: text the prompt ends with and the reply starts
                                   from (markers a grammar cannot produce), or NULL */
    bool stream;
    bool include_usage;         /* stream_options.include_usage */
    bool logprobs;              /* report per-token log-probabilities */
    int32_t top_logprobs;       /* alternatives per token (0..LMC_SRV_MAX_TOP_LOGPROBS) */
    /* on failure: the offending field ("messages[2].role"; "" for the body) */
    char param[96];
} lmc_srv_request;

/* Parse `len` bytes (need not be NUL-terminated) as a request of `kind`.
 * `defaults` (NULL: lmc_gen_params_default) seed the generation parameters;
 * `vocab` bounds logit_bias token ids. On failure returns LMC_ERR_FORMAT
 * (body is not valid JSON / UTF-8) or LMC_ERR_INVALID_ARG (a field is
 * wrong), rq->param names the field and lmc_last_error() says why; rq is
 * left empty. Always call lmc_srv_request_free afterwards. */
lmc_status lmc_srv_request_parse(const char *body, size_t len, lmc_srv_kind kind,
                                 const lmc_gen_params *defaults, size_t vocab,
                                 lmc_srv_request *rq);
void lmc_srv_request_free(lmc_srv_request *rq);

/* Fail with LMC_ERR_INVALID_ARG naming `param` (copied into rq->param). */
lmc_status lmc_srv_fail(lmc_srv_request *rq, const char *param, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* response_format.c: refuse fields the endpoint does not implement; compile
 * response_format into rq->grammar (and rq->gen.grammar). */
lmc_status lmc_srv_check_fields(lmc_srv_request *rq, json_object *root);
lmc_status lmc_srv_response_format(lmc_srv_request *rq, json_object *root);
lmc_status lmc_srv_parse_tool_choice(lmc_srv_request *rq, json_object *root);
lmc_status lmc_srv_reasoning_effort(lmc_srv_request *rq, json_object *root);

/* True when s[0..n) is well-formed UTF-8 (no overlongs or surrogates). */
bool lmc_srv_utf8_valid(const char *s, size_t n);
/* Copy of s[0..n) with each ill-formed sequence replaced by U+FFFD
 * (malloc'd, NUL-terminated; NULL on OOM). */
char *lmc_srv_utf8_sanitize(const char *s, size_t n);

/* The OpenAI error object {"error":{"message","type","param","code"}} as a
 * malloc'd string (NULL on OOM). param NULL or "" -> null. */
char *lmc_srv_error_json(const char *type, const char *message, const char *param);
/* The same with a "code" (NULL -> null), e.g. "context_length_exceeded". */
char *lmc_srv_error_json_code(const char *type, const char *message, const char *param,
                              const char *code);

#endif
