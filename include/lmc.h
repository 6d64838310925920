/* lmc — load, run, chat with, serve and fine-tune Hugging Face-format
 * language models from a local directory.
 *
 * Conventions
 *  - Every fallible call returns lmc_status; on failure lmc_last_error()
 *    holds a message (per thread) naming the file, key or limit involved.
 *  - Handles are opaque. Whoever creates a handle (lmc_x_load / lmc_x_new)
 *    frees it with the matching lmc_x_free. Freeing NULL is a no-op.
 *  - Buffers returned through out-parameters (char **, int32_t **) belong to
 *    the caller and are released with lmc_free().
 *  - Pointers passed in are borrowed for the duration of the call only,
 *    unless a function's comment says otherwise.
 */
#ifndef LMC_H
#define LMC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LMC_VERSION_MAJOR 0
#define LMC_VERSION_MINOR 1
#define LMC_VERSION_PATCH 0
#define LMC_VERSION "0.1.0"

/* LMC_API marks the functions the shared library exports; everything else
 * in it is built with hidden visibility. */
#if defined(_WIN32)
#define LMC_API
#elif defined(__GNUC__) || defined(__clang__)
#define LMC_API __attribute__((visibility("default")))
#else
#define LMC_API
#endif

typedef enum {
    LMC_OK = 0,
    LMC_ERR_INVALID_ARG, /* caller passed something unusable */
    LMC_ERR_NOT_FOUND,   /* a file, key or name does not exist */
    LMC_ERR_IO,          /* open/read/write failed, or not a regular file */
    LMC_ERR_FORMAT,      /* malformed JSON, safetensors, jsonl, ... */
    LMC_ERR_UNSUPPORTED, /* well-formed but not supported (model_type, dtype) */
    LMC_ERR_LIMIT,       /* a size, depth or count cap was hit */
    LMC_ERR_NOMEM,
    LMC_ERR_TEMPLATE,    /* chat-template syntax or runtime error */
    LMC_ERR_STATE,       /* call not valid in the object's current state */
    LMC_ERR_DEVICE,      /* CUDA or other accelerator failure */
    LMC_ERR_CANCELLED,   /* a callback asked to stop */
} lmc_status;

/* Message for the last failure on this thread ("" if none). Borrowed. */
LMC_API const char *lmc_last_error(void);
LMC_API const char *lmc_status_str(lmc_status st);
LMC_API const char *lmc_version(void);
/* Release a buffer returned by any lmc function. */
LMC_API void lmc_free(void *p);

/* Where a model argument points: an existing directory is returned as is;
 * otherwise "org/name" is looked up in the local Hugging Face hub cache
 * ($HF_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub,
 * ~/.cache/huggingface/hub): models--org--name/snapshots/<rev> with <rev>
 * from refs/main. Nothing is downloaded; the error lists the paths tried.
 * Every function taking a model directory accepts "org/name" this way.
 * *path: lmc_free. */
LMC_API lmc_status lmc_model_dir_resolve(const char *model, char **path);

typedef enum { LMC_DEVICE_CPU = 0, LMC_DEVICE_CUDA = 1 } lmc_device;

/* Progress for long work (loading, training). `stage` is a short label;
 * fraction in [0,1]. Return false to cancel (the call fails with
 * LMC_ERR_CANCELLED). */
typedef bool (*lmc_progress_fn)(void *user, const char *stage, double fraction);

/* ======================= tokenizer (src/tokenizer) ======================= */
typedef struct lmc_tokenizer lmc_tokenizer;

/* Load <dir>/tokenizer.json and, when present, <dir>/tokenizer_config.json
 * (special tokens, add_bos_token, chat_template). */
LMC_API lmc_status lmc_tokenizer_load(const char *dir, lmc_tokenizer **out);
/* Same, from explicit paths (config_path may be NULL). */
LMC_API lmc_status lmc_tokenizer_load_files(const char *tokenizer_json_path,
                                    const char *tokenizer_config_path, lmc_tokenizer **out);
LMC_API void lmc_tokenizer_free(lmc_tokenizer *t);

/* ids: caller frees with lmc_free. text must be valid UTF-8. Ids match the
 * Hugging Face tokenizers library (added tokens, normalizer, pre-tokenizer,
 * model, and with add_special_tokens the post-processor's BOS/EOS).
 * decode: ids that name no token are skipped, as the reference does. */
LMC_API lmc_status lmc_tokenizer_encode(const lmc_tokenizer *t, const char *text, size_t len,
                                bool add_special_tokens, int32_t **ids, size_t *n_ids);
LMC_API lmc_status lmc_tokenizer_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n_ids,
                                bool skip_special_tokens, char **text);
LMC_API size_t lmc_tokenizer_vocab_size(const lmc_tokenizer *t);
/* Borrowed token string, or NULL when out of range. */
LMC_API const char *lmc_tokenizer_id_to_token(const lmc_tokenizer *t, int32_t id);
LMC_API int32_t lmc_tokenizer_token_to_id(const lmc_tokenizer *t, const char *token); /* -1 if none */
LMC_API bool lmc_tokenizer_is_special(const lmc_tokenizer *t, int32_t id);

/* The eos set. Defaults to tokenizer_config.json's eos_token; the load
 * factory replaces it with config/generation_config's eos_token_id. */
LMC_API size_t lmc_tokenizer_eos_ids(const lmc_tokenizer *t, const int32_t **ids);
LMC_API lmc_status lmc_tokenizer_set_eos_ids(lmc_tokenizer *t, const int32_t *ids, size_t n);
LMC_API int32_t lmc_tokenizer_bos_id(const lmc_tokenizer *t); /* -1 if none */
/* tokenizer_config.json special token strings by key ("bos_token",
 * "eos_token", "pad_token", "unk_token"); borrowed, NULL when absent. */
LMC_API const char *lmc_tokenizer_special_token(const lmc_tokenizer *t, const char *key);
/* Chat template source: name NULL -> "default" (or the only/string one). */
LMC_API const char *lmc_tokenizer_chat_template(const lmc_tokenizer *t, const char *name);
/* A boolean of tokenizer_config.json ("add_bos_token", "add_eos_token",
 * "clean_up_tokenization_spaces", ...); `def` when absent or not a bool. */
LMC_API bool lmc_tokenizer_config_bool(const lmc_tokenizer *t, const char *key, bool def);

/* Streaming detokenizer: push ids one at a time; each push yields the text
 * that became complete (possibly ""); finish flushes the tail. The
 * concatenation equals lmc_tokenizer_decode of all ids. */
typedef struct lmc_detokenizer lmc_detokenizer;
LMC_API lmc_status lmc_detokenizer_new(const lmc_tokenizer *t, bool skip_special_tokens,
                               lmc_detokenizer **out);
LMC_API lmc_status lmc_detokenizer_push(lmc_detokenizer *d, int32_t id, char **segment);
LMC_API lmc_status lmc_detokenizer_finish(lmc_detokenizer *d, char **tail);
LMC_API void lmc_detokenizer_reset(lmc_detokenizer *d);
LMC_API void lmc_detokenizer_free(lmc_detokenizer *d);
/* ===================== end tokenizer (src/tokenizer) ===================== */

/* ===================== chat template (src/template) ====================== */
/* A sandboxed Jinja interpreter rendering chat templates byte-for-byte like
 * transformers' apply_chat_template (Jinja2 with trim_blocks, lstrip_blocks,
 * loop controls, default Undefined; tojson, raise_exception, strftime_now).
 * No I/O; output size, loop iterations, macro recursion and memory are
 * capped, and every failure names the template line and column. */
typedef struct lmc_chat_template lmc_chat_template;

/* Parse a template. Syntax errors: LMC_ERR_TEMPLATE, message with line/column. */
LMC_API lmc_status lmc_chat_template_compile(const char *source, lmc_chat_template **out);
LMC_API void lmc_chat_template_free(lmc_chat_template *t);
/* Lower the caps for this template (0 keeps the default: 32 MiB of output,
 * 5,000,000 loop iterations). Over-limit renders fail with LMC_ERR_LIMIT. */
LMC_API lmc_status lmc_chat_template_set_limits(lmc_chat_template *t, size_t max_output_bytes,
                                        long max_loop_iterations);
/* The work budget of a render, besides the caps above: `max_steps` counts
 * one step per template node evaluated plus the size of every value a
 * filter, test, call or operator reads (strings: bytes/16; lists, dicts:
 * items); 0 keeps the default of 100,000,000 (real chat templates use under
 * 1% of it). `max_seconds` > 0 also bounds a render's wall-clock time
 * (default 0: no time bound). Over budget: LMC_ERR_LIMIT. */
LMC_API lmc_status lmc_chat_template_set_budget(lmc_chat_template *t, uint64_t max_steps,
                                        double max_seconds);
/* Render with the keys of `context_json` (a JSON object, may be NULL) as
 * variables. *out: caller frees with lmc_free. raise_exception() in the
 * template fails with LMC_ERR_TEMPLATE carrying its message. */
LMC_API lmc_status lmc_chat_template_render(const lmc_chat_template *t, const char *context_json, char **out);
/* transformers' apply_chat_template(tokenize=False): messages (JSON array),
 * tools (JSON array or NULL -> None), add_generation_prompt, documents=None,
 * plus extra_context_json's keys (special tokens, enable_thinking,
 * date_string, ...). continue_final_message cuts the output right after the
 * final message's content (error when it can't be found) and excludes
 * add_generation_prompt. */
LMC_API lmc_status lmc_chat_template_apply(const lmc_chat_template *t, const char *messages_json,
                                   const char *tools_json, bool add_generation_prompt,
                                   bool continue_final_message, const char *extra_context_json,
                                   char **out);
/* The same with the tokenizer's chat template and its special tokens
 * (bos_token, eos_token, ...; keys in extra_context_json override them). */
LMC_API lmc_status lmc_tokenizer_apply_chat_template(const lmc_tokenizer *t, const char *messages_json,
                                             const char *tools_json, bool add_generation_prompt,
                                             bool continue_final_message,
                                             const char *extra_context_json, char **out);
/* ... and encoded to ids (no extra special tokens added). ids: lmc_free. */
LMC_API lmc_status lmc_tokenizer_apply_chat_template_ids(const lmc_tokenizer *t, const char *messages_json,
                                                 const char *tools_json, bool add_generation_prompt,
                                                 bool continue_final_message,
                                                 const char *extra_context_json, int32_t **ids,
                                                 size_t *n_ids);
/* =================== end chat template (src/template) ==================== */

/* ============== model loading and context (src/lm, src/models) =========== */
/* A loaded checkpoint: model + tokenizer + parsed config, from a local
 * Hugging Face-format directory (config.json, *.safetensors, tokenizer.json). */
typedef struct lmc_context lmc_context;

typedef struct {
    const char *model_dir;      /* required */
    const char *tokenizer_dir;  /* NULL: the model directory */
    lmc_device device;
    lmc_progress_fn progress;   /* optional; stages "config", "weights",
                                   "tokenizer", "model" */
    void *progress_user;
} lmc_load_options;

/* Load in this order, so cheap failures come first: read config.json once;
 * refuse an unsupported model_type before touching weights or tokenizer;
 * map and validate the weights; build the tokenizer once (its eos set
 * replaced by config.json / generation_config.json eos_token_id when
 * present); construct the model. */
LMC_API lmc_status lmc_context_load(const lmc_load_options *opts, lmc_context **out);
LMC_API void lmc_context_free(lmc_context *ctx);
/* Borrowed; lives as long as the context. */
LMC_API lmc_tokenizer *lmc_context_tokenizer(const lmc_context *ctx);
/* config.json's model_type, verbatim (e.g. "mistral", not its alias). */
LMC_API const char *lmc_context_model_type(const lmc_context *ctx);
/* Thin forwards to lmc_tokenizer_encode / lmc_tokenizer_decode. */
LMC_API lmc_status lmc_context_encode(const lmc_context *ctx, const char *text, size_t len,
                              bool add_special_tokens, int32_t **ids, size_t *n_ids);
LMC_API lmc_status lmc_context_decode(const lmc_context *ctx, const int32_t *ids, size_t n_ids,
                              bool skip_special_tokens, char **text);
/* Thin forwards to lmc_tokenizer_apply_chat_template[_ids] (same arguments
 * and semantics; add_generation_prompt and continue_final_message exclude
 * each other). */
LMC_API lmc_status lmc_context_apply_chat_template(const lmc_context *ctx, const char *messages_json,
                                           const char *tools_json, bool add_generation_prompt,
                                           bool continue_final_message,
                                           const char *extra_context_json, char **out);
LMC_API lmc_status lmc_context_apply_chat_template_ids(const lmc_context *ctx, const char *messages_json,
                                               const char *tools_json,
                                               bool add_generation_prompt,
                                               bool continue_final_message,
                                               const char *extra_context_json, int32_t **ids,
                                               size_t *n_ids);
/* ============ end model loading and context (src/lm, src/models) ========= */

/* =============== constrained decoding (src/grammar) ======================= */
/* A grammar restricts generation to the texts it describes: each step, the
 * tokens whose bytes cannot continue a sentence of the grammar are masked
 * out before sampling, and eos is allowed exactly when the text so far is
 * a complete sentence (once nothing else can follow, eos is the only
 * choice). The mask is computed over a byte trie of the vocabulary built
 * once per tokenizer; the grammar's automaton states and their masks are
 * built on first use and kept in the grammar, so reuse one grammar across
 * requests with the same constraint. A grammar may be shared by threads.
 * Special tokens are never allowed (eos aside). */
typedef struct lmc_grammar lmc_grammar;

/* GBNF-like syntax: rules `name ::= alternatives` over "literals" (escapes
 * \n \t \r \\ \" \xHH \uHHHH), [character classes] ([^...] negated,
 * ranges, over Unicode code points), rule names, (groups), '.', /regex/,
 * and the repetitions * + ? {m} {m,} {m,n}; # starts a comment. The start
 * rule is "root". Undefined or unproductive rules and left recursion are
 * refused by name. */
LMC_API lmc_status lmc_grammar_from_gbnf(const char *source, lmc_grammar **out);
/* A regular expression the whole output must match (alternation, groups,
 * classes, \d \w \s and their negations, escapes, counted repetition;
 * ^ and $ only at the ends). Look-around, back-references and word
 * boundaries are refused by name. */
LMC_API lmc_status lmc_grammar_from_regex(const char *regex, lmc_grammar **out);
/* A JSON schema (a JSON text). Output is compact JSON with properties in
 * the schema's order (required ones always present). Supported: type (one
 * or a list), enum, const, properties, required, additionalProperties,
 * items, minItems, maxItems, minLength, maxLength, pattern, format (date,
 * time, date-time, uuid), minimum / maximum (integral bounds for numbers;
 * exclusiveMinimum / exclusiveMaximum for integers), anyOf, $ref into
 * #/$defs or #/definitions (recursive too) and the annotations (title,
 * description, default, examples, ...). Any other keyword (allOf, oneOf,
 * not, multipleOf, uniqueItems, patternProperties, ...) fails with
 * LMC_ERR_UNSUPPORTED naming it and its path. */
LMC_API lmc_status lmc_grammar_from_json_schema(const char *schema_json, lmc_grammar **out);
/* The GBNF text a JSON schema compiles to (*gbnf: lmc_free). */
LMC_API lmc_status lmc_json_schema_to_gbnf(const char *schema_json, char **gbnf);
/* Any JSON object (OpenAI's response_format json_object). */
LMC_API lmc_status lmc_grammar_json_object(lmc_grammar **out);
/* Match bytes against the grammar: *complete when text is a sentence,
 * *prefix when it can still be extended to one (either may be NULL). */
LMC_API lmc_status lmc_grammar_match(lmc_grammar *g, const char *text, size_t len, bool *complete,
                             bool *prefix);
LMC_API void lmc_grammar_free(lmc_grammar *g);
/* ============= end constrained decoding (src/grammar) ===================== */

/* ================= generation and chat session (src/lm) ================== */
typedef struct lmc_context lmc_context; /* a loaded model + tokenizer */

/* Sampling and logits processing, applied in this order each step:
 * logit bias, repetition penalty (over the last repetition_context_size
 * tokens of prompt + output), presence and frequency penalties (over the
 * last penalty_context_size tokens: a token seen c > 0 times there loses
 * presence_penalty + c * frequency_penalty), log-softmax (the reported
 * logprobs), then,
 * when temperature > 0, the top-p, min-p and top-k masks and a categorical
 * draw at `temperature` from a seeded generator; temperature 0 is argmax. */
typedef struct {
    float temperature;               /* 0 = greedy (default) */
    float top_p;                     /* keep the smallest set with mass >= top_p; 0 or 1 = off */
    int32_t top_k;                   /* keep the k most likely; 0 = off */
    float min_p;                     /* keep p >= min_p * p_max; 0 = off */
    int32_t min_tokens_to_keep;      /* floor for min-p (default 1) */
    float repetition_penalty;        /* 1 or 0 = off */
    int32_t repetition_context_size; /* default 20 */
    const int32_t *logit_bias_ids;   /* borrowed; n_logit_bias entries */
    const float *logit_bias_values;
    size_t n_logit_bias;
    uint64_t seed;                   /* same seed + same logits -> same draws */
    int32_t top_logprobs;            /* report the N most likely tokens (0..64) */
    float presence_penalty;          /* 0 = off; finite, negative favours repeats */
    float frequency_penalty;         /* 0 = off; per occurrence */
    int32_t penalty_context_size;    /* default 20 */
} lmc_sampler_params;

LMC_API void lmc_sampler_params_default(lmc_sampler_params *p);

typedef struct lmc_sampler lmc_sampler;
/* Validates the parameters (ranges, bias ids < vocab) and copies them. */
LMC_API lmc_status lmc_sampler_new(const lmc_sampler_params *p, size_t vocab, lmc_sampler **out);
LMC_API void lmc_sampler_free(lmc_sampler *s);
/* Process `logits` in place (vocab floats) and draw a token. `recent` are
 * the preceding tokens (for the repetition penalty; may be NULL). On return
 * logits hold the log-probabilities the draw was made from (before masks);
 * *logprob (may be NULL) is the chosen token's. */
LMC_API lmc_status lmc_sampler_sample(lmc_sampler *s, float *logits, const int32_t *recent,
                              size_t n_recent, int32_t *token, float *logprob);
/* The keep-mask the sampler would draw from for these (normalized)
 * log-probabilities, for inspection: keep[i] true when token i can be
 * drawn. Each of top-p / top-k / min-p is judged on the same unmasked
 * distribution and the mask is their intersection; top-p keeps a token
 * while the mass of the tokens ranked ahead of it (ties by lower id) is
 * below top_p. */
LMC_API lmc_status lmc_sampler_mask(const lmc_sampler *s, const float *logprobs, bool *keep);

typedef enum {
    LMC_FINISH_NONE = 0, /* more tokens follow */
    LMC_FINISH_STOP,     /* an eos token or a stop string */
    LMC_FINISH_LENGTH,   /* max_tokens reached */
} lmc_finish_reason;
LMC_API const char *lmc_finish_reason_str(lmc_finish_reason r); /* "stop", "length", "" */

#define LMC_MAX_TOP_LOGPROBS 64
/* One generated token. Pointers are valid only during the callback. */
typedef struct {
    const char *text;           /* newly completed text (may be ""); never part of a stop string */
    int32_t token;
    float logprob;              /* of `token` */
    const int32_t *top_ids;     /* n_top most likely tokens, best first */
    const float *top_logprobs;
    size_t n_top;
    size_t prompt_tokens;       /* tokens in the prompt (cached + fed) */
    double prompt_tps;          /* fed prompt tokens per second */
    size_t generation_tokens;   /* tokens generated so far, this one included */
    double generation_tps;
    size_t peak_memory_bytes;   /* process peak resident set */
    lmc_finish_reason finish_reason;
    bool from_draft;            /* speculative: proposed by the draft and accepted */
} lmc_gen_response;

/* Return false to stop early (not an error: the call returns LMC_OK). */
typedef bool (*lmc_gen_callback)(void *user, const lmc_gen_response *r);

typedef struct {
    lmc_sampler_params sampler;
    size_t max_tokens;             /* default 256 */
    const char *const *stop;       /* borrowed stop strings (not emitted) */
    size_t n_stop;
    size_t prefill_step;           /* prompt chunk size, default 512 */
    lmc_context *draft;            /* borrowed: speculative decoding when set */
    size_t num_draft_tokens;       /* default 5 */
    /* Context length: prompt + generated tokens never exceed it (0: the
     * model's max_position_embeddings). A prompt that leaves no room fails
     * with LMC_ERR_LIMIT naming both lengths; max_tokens is clamped to what
     * is left (finish_reason "length"). */
    size_t max_context;
    /* Polled between prefill chunks and before every decode step (NULL:
     * never); returning true ends the call with LMC_ERR_CANCELLED. May be
     * called from the generating thread only; keep it cheap. */
    bool (*cancel)(void *user);
    void *cancel_user;
    lmc_grammar *grammar;          /* borrowed: constrained decoding when set (not with
                                      draft); stop strings still apply */
} lmc_gen_params;
LMC_API void lmc_gen_params_default(lmc_gen_params *p);

/* Figures for the last generation call. */
typedef struct {
    size_t prompt_tokens;     /* the whole prompt */
    size_t prefill_tokens;    /* of which actually fed (the rest came from a cache) */
    size_t generation_tokens;
    double prompt_tps, generation_tps;
    size_t peak_memory_bytes;
    lmc_finish_reason finish_reason;
    size_t draft_proposed, draft_accepted; /* speculative only */
    bool cache_rebuilt;       /* a cache did not match the prompt and was reset */
} lmc_gen_stats;

/* A prompt cache: the KV state plus the token ids it encodes, so a later
 * prompt that extends them feeds only the new suffix. */
typedef struct lmc_prompt_cache lmc_prompt_cache;
LMC_API lmc_status lmc_prompt_cache_new(lmc_context *ctx, lmc_prompt_cache **out);
LMC_API void lmc_prompt_cache_free(lmc_prompt_cache *c);
LMC_API size_t lmc_prompt_cache_len(const lmc_prompt_cache *c);
/* Token ids the cache is known to hold (borrowed; excludes an opaque prefix). */
LMC_API size_t lmc_prompt_cache_tokens(const lmc_prompt_cache *c, const int32_t **ids);
/* safetensors with the K/V tensors and metadata (token ids, model type),
 * written atomically with mode 0600 (it holds the conversation). load
 * refuses a file whose shapes, metadata or values (NaN, inf) do not fit,
 * naming the file, tensor, layer and index. */
LMC_API lmc_status lmc_prompt_cache_save(const lmc_prompt_cache *c, const char *path);
LMC_API lmc_status lmc_prompt_cache_load(lmc_context *ctx, const char *path,
                                         lmc_prompt_cache **out);

/* Generate from token ids. `cache` (may be NULL) is reused: the longest
 * prefix it shares with the prompt is kept and only the rest is fed; it is
 * left holding prompt + output (all but the last token). */
LMC_API lmc_status lmc_generate_ids(lmc_context *ctx, const int32_t *prompt, size_t n_prompt,
                            const lmc_gen_params *p, lmc_prompt_cache *cache,
                            lmc_gen_callback cb, void *user, lmc_gen_stats *stats);
/* Encode `prompt` (special tokens added) and collect the whole text. */
LMC_API lmc_status lmc_generate_text(lmc_context *ctx, const char *prompt, const lmc_gen_params *p,
                             char **out_text, lmc_gen_stats *stats);

/* Perplexity over a token sequence with sliding windows, as the Hugging
 * Face "perplexity of fixed-length models" recipe computes it: windows of
 * `context` tokens start every `stride` tokens (1 <= stride <= context);
 * each window scores only the tokens that the previous window did not end
 * with (the first window scores all but its first token), and the window's
 * mean negative log-likelihood is weighted by its number of new tokens
 * minus one, as that recipe does. perplexity = exp(nll). */
typedef struct {
    double perplexity;
    double nll;          /* weighted mean negative log-likelihood (nats) */
    size_t n_tokens;     /* tokens in the sequence */
    size_t n_scored;     /* sum of the weights */
    size_t n_windows;
} lmc_perplexity_result;
/* progress (may be NULL): stage "perplexity", fraction of windows done. */
LMC_API lmc_status lmc_perplexity_ids(lmc_context *ctx, const int32_t *ids, size_t n,
                                      size_t context, size_t stride, lmc_progress_fn progress,
                                      void *user, lmc_perplexity_result *out);
/* The text encoded with the tokenizer's special tokens (BOS), as the
 * recipe's tokenizer call does. context 0: the model's
 * max_position_embeddings; stride 0: context (windows do not overlap). */
LMC_API lmc_status lmc_perplexity_text(lmc_context *ctx, const char *text, size_t len,
                                       size_t context, size_t stride, lmc_progress_fn progress,
                                       void *user, lmc_perplexity_result *out);

/* Chat session: model + KV cache + history; each turn renders the whole
 * conversation with the chat template and feeds only what the cache lacks. */
typedef enum { LMC_ROLE_SYSTEM, LMC_ROLE_USER, LMC_ROLE_ASSISTANT, LMC_ROLE_TOOL } lmc_role;
LMC_API const char *lmc_role_str(lmc_role r);

typedef struct {
    const char *instructions;     /* system message prepended every turn */
    const lmc_gen_params *gen;    /* NULL = defaults; stop strings are ignored */
    const char *history_json;     /* re-hydrate: [{"role","content"},...] replayed on turn 1 */
    lmc_prompt_cache *cache;      /* restored prefix, treated as opaque (its ids are never
                                     re-rendered); the session takes it over on success;
                                     excludes history_json */
    lmc_context *draft;           /* speculative decoding (borrowed for the session's life) */
    size_t num_draft_tokens;      /* default 5 */
    const char *template_kwargs_json; /* extra template variables, e.g. {"enable_thinking":false} */
} lmc_chat_options;

typedef struct lmc_chat_session lmc_chat_session;
/* ctx is borrowed for the session's life. Fails with LMC_ERR_INVALID_ARG
 * when both cache and draft are set (a restored opaque prefix cannot be
 * carried across speculative turns). */
LMC_API lmc_status lmc_chat_session_new(lmc_context *ctx, const lmc_chat_options *opts,
                                lmc_chat_session **out);
LMC_API void lmc_chat_session_free(lmc_chat_session *s);
/* Run one turn; the message and reply join the history when it ends. A
 * callback that returns false ends the turn early and the partial reply is
 * recorded. A template error records nothing; a failure during generation
 * records the reply produced so far. */
LMC_API lmc_status lmc_chat_session_stream(lmc_chat_session *s, lmc_role role, const char *message,
                                   lmc_gen_callback cb, void *user);
LMC_API lmc_status lmc_chat_session_respond(lmc_chat_session *s, const char *message, char **reply);
/* Drop cache and history; keep instructions and parameters. */
LMC_API void lmc_chat_session_clear(lmc_chat_session *s);
LMC_API lmc_status lmc_chat_session_set_instructions(lmc_chat_session *s, const char *instructions);
LMC_API lmc_status lmc_chat_session_set_template_kwargs(lmc_chat_session *s, const char *json);
/* Mutable generation parameters (borrowed; stop strings are ignored). */
LMC_API lmc_gen_params *lmc_chat_session_params(lmc_chat_session *s);
LMC_API size_t lmc_chat_session_history_len(const lmc_chat_session *s);
/* Borrowed content of message i (NULL when out of range). */
LMC_API const char *lmc_chat_session_history_at(const lmc_chat_session *s, size_t i, lmc_role *role);
LMC_API bool lmc_chat_session_has_cache(const lmc_chat_session *s);
/* LMC_ERR_STATE before the first turn, or for a speculative session. */
LMC_API lmc_status lmc_chat_session_save_cache(const lmc_chat_session *s, const char *path);
/* Stats of the last turn (prefill_tokens = tokens actually fed). */
LMC_API void lmc_chat_session_last_stats(const lmc_chat_session *s, lmc_gen_stats *stats);
/* =============== end generation and chat session (src/lm) ================ */

/* ================== fine-tuning datasets (src/train) ===================== */
/* Local jsonl training data, one JSON object per line, in one of three
 * formats (as mlx-lm's tuner datasets):
 *   text         {"text": "..."}                 -> encode(text) + eos, prompt 0
 *   chat         {"messages": [...], "tools"?}   -> chat template of messages
 *   completions  {"prompt": "...", "completion": "...", "tools"?}
 *                -> chat template of [user: prompt, assistant: completion]
 * A record is (ids, prompt_len): ids[0, prompt_len) is the prompt, excluded
 * from the loss; ids[prompt_len, n) is the target. prompt_len is 0 unless
 * mask_prompt is set; then it is the length of the conversation without its
 * final message, rendered with add_generation_prompt when that message is
 * the assistant's (always, for completions).
 * Every line is checked at load: blank lines, invalid UTF-8, NUL bytes,
 * malformed JSON, non-object records, missing keys (LMC_ERR_NOT_FOUND) and
 * wrongly typed fields (LMC_ERR_FORMAT) fail with "<file>:<line>: ...".
 * A dataset handle is used by one thread at a time; the tokenizer it was
 * loaded with is borrowed and must outlive it. */
typedef struct lmc_dataset lmc_dataset;

typedef enum {
    LMC_DATASET_AUTO = 0, /* from the first record's keys: prompt+completion,
                             else messages, else text */
    LMC_DATASET_TEXT,
    LMC_DATASET_CHAT,
    LMC_DATASET_COMPLETIONS,
} lmc_dataset_format;

#define LMC_DATASET_MAX_FILE_BYTES ((size_t)2 << 30) /* default file cap */
#define LMC_DATASET_MAX_LINE_BYTES ((size_t)64 << 20) /* default line cap */

typedef struct {
    lmc_dataset_format format;
    const char *text_key;       /* NULL -> "text" */
    const char *chat_key;       /* NULL -> "messages" */
    const char *prompt_key;     /* NULL -> "prompt" */
    const char *completion_key; /* NULL -> "completion" */
    bool mask_prompt;           /* not allowed with the text format */
    bool cache;                 /* tokenize each record once, keep the result */
    size_t max_file_bytes;      /* 0 -> LMC_DATASET_MAX_FILE_BYTES */
    size_t max_line_bytes;      /* 0 -> LMC_DATASET_MAX_LINE_BYTES */
} lmc_dataset_options;

/* Defaults: auto format, default keys, no masking, cache on. */
LMC_API void lmc_dataset_options_init(lmc_dataset_options *o);
LMC_API const char *lmc_dataset_format_name(lmc_dataset_format f); /* "text", ... */

/* Load one jsonl file (opts NULL -> defaults). Missing file:
 * LMC_ERR_NOT_FOUND; directory/FIFO/other non-regular file: LMC_ERR_IO;
 * over a cap: LMC_ERR_LIMIT; empty file: LMC_ERR_FORMAT; an "hf:" path:
 * LMC_ERR_UNSUPPORTED (local files only); mask_prompt with the text format:
 * LMC_ERR_INVALID_ARG. */
LMC_API lmc_status lmc_dataset_load(const char *path, const lmc_tokenizer *tok,
                            const lmc_dataset_options *opts, lmc_dataset **out);
/* Load <dir>/train.jsonl, valid.jsonl and test.jsonl into the non-NULL out
 * pointers; a split whose file is absent comes back NULL (a present but
 * empty file is an error). LMC_ERR_NOT_FOUND when none of the requested
 * splits exists. On failure every out pointer is NULL. */
LMC_API lmc_status lmc_dataset_load_dir(const char *dir, const lmc_tokenizer *tok,
                                const lmc_dataset_options *opts, lmc_dataset **train,
                                lmc_dataset **valid, lmc_dataset **test);
/* Index across `parts` in order (no packing). On success the new dataset
 * owns the parts (free only it; the `parts` array stays the caller's); on
 * failure the caller keeps them. */
LMC_API lmc_status lmc_dataset_concat(lmc_dataset *const *parts, size_t n_parts, lmc_dataset **out);
/* Wrap `inner` so each record is tokenized on first access only. Takes
 * ownership of `inner` on success. */
LMC_API lmc_status lmc_dataset_cached(lmc_dataset *inner, lmc_dataset **out);
LMC_API void lmc_dataset_free(lmc_dataset *d);

LMC_API size_t lmc_dataset_len(const lmc_dataset *d);
/* The resolved format (LMC_DATASET_AUTO for a concatenation of mixed ones). */
LMC_API lmc_dataset_format lmc_dataset_format_of(const lmc_dataset *d);
/* Record i tokenized: *ids (caller frees with lmc_free), *n_ids, and
 * *prompt_len (may be NULL). Out of range: LMC_ERR_INVALID_ARG. Template
 * and tokenizer failures name the file and line. */
LMC_API lmc_status lmc_dataset_get(lmc_dataset *d, size_t i, int32_t **ids, size_t *n_ids,
                           size_t *prompt_len);
/* Number of tokens of record i (tokenizes it; cached datasets keep it). */
LMC_API lmc_status lmc_dataset_item_len(lmc_dataset *d, size_t i, size_t *n_tokens);
/* Record i's source: its JSON text (caller frees with lmc_free), and the
 * file (borrowed, valid while d lives) and 1-based line; any may be NULL. */
LMC_API lmc_status lmc_dataset_record(const lmc_dataset *d, size_t i, char **json, const char **path,
                              size_t *line);
/* ================ end fine-tuning datasets (src/train) =================== */

/* ===================== LoRA fine-tuning (src/train) ====================== */
/* LoRA training of the llama family (llama, mistral, qwen2, qwen3) on the
 * CPU in fp32, as PEFT defines it: an adapted linear computes
 * y = W x + b + (alpha / rank) * B (A x), A [rank, in] initialised
 * kaiming-uniform(a = sqrt(5)) from `seed`, B [out, rank] zero. Base
 * weights stay frozen and are read in their stored dtype (F32/F16/BF16).
 * Loss: mean cross-entropy over the target tokens of a batch; token j of a
 * record counts when max(prompt_len, 1) <= j < n (prompt_len is the
 * dataset's mask_prompt offset, 0 without masking). Optimizer: AdamW with
 * torch.optim.AdamW semantics. Dropout is not supported (must be 0).
 * Adapters are saved in PEFT's format (adapter_model.safetensors with fp32
 * base_model.model.model.layers.N.<module>.lora_A|B.weight, and
 * adapter_config.json), loadable by transformers + peft. */
typedef struct lmc_lora_trainer lmc_lora_trainer;

typedef struct {
    int32_t step, iters;   /* optimizer steps done / planned */
    float loss;            /* mean loss of this step's batch(es) */
    double tokens_per_sec; /* tokens (inputs) processed per second in the step */
    size_t trained_tokens; /* target tokens so far */
    size_t truncated;      /* records cut to max_seq_length so far */
} lmc_lora_progress;
/* Called after every step; return false to stop (lmc_lora_train then
 * fails with LMC_ERR_CANCELLED; the trainer keeps the last step's values). */
typedef bool (*lmc_lora_progress_fn)(void *user, const lmc_lora_progress *p);

typedef struct {
    int32_t rank;                 /* 8 */
    float alpha;                  /* 16 (scaling = alpha / rank) */
    float dropout;                /* 0; anything else is LMC_ERR_UNSUPPORTED */
    const char *target_modules;   /* comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,
                                     up_proj,down_proj; NULL: "q_proj,v_proj" */
    int32_t num_layers;           /* adapt the last N layers, -1: all (16, as mlx-lm) */
    uint64_t seed;                /* adapter init and batch shuffling (0) */
    int32_t iters;                /* optimizer steps of lmc_lora_train (1000) */
    int32_t batch_size;           /* records per micro-batch (4) */
    int32_t grad_accumulation_steps; /* micro-batches per step, gradients averaged (1) */
    size_t max_seq_length;        /* longer records are truncated and counted (2048) */
    float learning_rate;          /* 1e-5 */
    float beta1, beta2, eps, weight_decay; /* 0.9, 0.999, 1e-8, 0.01 */
    lmc_lora_progress_fn progress; /* optional */
    void *progress_user;
} lmc_lora_options;

typedef struct {
    int32_t steps;
    float final_loss;        /* loss of the last step */
    size_t trained_tokens;   /* target tokens */
    size_t truncated;        /* records cut to max_seq_length (each time drawn) */
    size_t skipped_records;  /* records without any target token, never drawn */
    double seconds;
} lmc_lora_train_stats;

LMC_API void lmc_lora_options_init(lmc_lora_options *o);
/* Map model_dir's config.json and weights (no tokenizer needed) and create
 * fresh adapters. opts NULL: defaults; opts is copied. Errors: unknown
 * target module, bad rank/alpha/num_layers, nonzero dropout, unsupported
 * model_type, missing or mis-shaped weights. */
LMC_API lmc_status lmc_lora_trainer_new(const char *model_dir, const lmc_lora_options *opts,
                                lmc_lora_trainer **out);
LMC_API void lmc_lora_trainer_free(lmc_lora_trainer *t);
/* Run opts.iters steps over `train` (borrowed; records drawn in a seeded
 * shuffled order, reshuffled every epoch). An empty dataset, one smaller
 * than batch_size, or one where no record has a target token fails with
 * LMC_ERR_INVALID_ARG. stats may be NULL. */
LMC_API lmc_status lmc_lora_train(lmc_lora_trainer *t, lmc_dataset *train, lmc_lora_train_stats *stats);
/* One optimizer step on an explicit batch of n token sequences (each
 * truncated to max_seq_length) with their prompt offsets (NULL: all 0);
 * *loss (may be NULL) gets the batch loss before the update. */
LMC_API lmc_status lmc_lora_trainer_step(lmc_lora_trainer *t, const int32_t *const *seqs,
                                 const size_t *lens, const size_t *offsets, size_t n,
                                 float *loss);
/* Write <dir>/adapter_model.safetensors and <dir>/adapter_config.json
 * (atomically; dir created when absent). */
LMC_API lmc_status lmc_lora_trainer_save(const lmc_lora_trainer *t, const char *adapter_dir);
/* Resume: read adapters saved for the same configuration. rank, alpha,
 * target modules, layers and every tensor's shape are checked first;
 * on any error nothing changes and the message names the file and tensor. */
LMC_API lmc_status lmc_lora_trainer_load(lmc_lora_trainer *t, const char *adapter_dir);
/* Write save_dir with W' = W + (alpha/r) B A for every adapted weight (in
 * the base dtype), all other tensors copied, into one model.safetensors,
 * plus config.json, generation_config.json and tokenizer files copied. It
 * loads with lmc_context_load. progress (optional) gets stage "fuse". */
LMC_API lmc_status lmc_lora_fuse(const char *model_dir, const char *adapter_dir, const char *save_dir,
                         lmc_progress_fn progress, void *progress_user);

/* Write an MLX affine-quantized copy of a float checkpoint to save_dir
 * (created if missing; never the model's own directory): bits 2, 4 or 8,
 * group_size 32, 64 or 128. Every 2-D "*.weight" tensor whose input size
 * is a multiple of group_size becomes <m>.weight (U32) + <m>.scales +
 * <m>.biases (bf16); the rest stay as they are (config.json lists such
 * matrices as per-module `false` overrides). config.json gains
 * "quantization"; generation config and tokenizer files are copied. The
 * result loads with lmc_context_load (and MLX). Progress stage "quantize". */
LMC_API lmc_status lmc_quantize_model(const char *model_dir, const char *save_dir, int bits,
                              int group_size, lmc_progress_fn progress, void *progress_user);
/* =================== end LoRA fine-tuning (src/train) ==================== */

/* ============== vision-language models (src/vlm) ======================== */
/* A loaded vision-language checkpoint: model + processor + tokenizer. */
typedef struct lmc_vlm_context lmc_vlm_context;

/* Load in this order, so cheap failures come first: read config.json once
 * (model_type required; eos_token_id from the top level, else from
 * text_config / llm_config, replaced by a truthy generation_config.json
 * eos_token_id); refuse an unsupported model_type; read the processor
 * config (preprocessor_config.json preferred over processor_config.json)
 * and refuse an unsupported processor_class; only then map the weights,
 * build the tokenizer once and construct model and processor. Built in:
 * model_type "llava" (LLaVA-1.5 style: CLIP vision tower, projector,
 * llama-family text model; processor_class "LlavaProcessor"), on the CPU
 * only (device cuda: LMC_ERR_UNSUPPORTED). Other model types fail with
 * LMC_ERR_UNSUPPORTED naming them. opts->progress is not called. */
LMC_API lmc_status lmc_vlm_load(const lmc_load_options *opts, lmc_vlm_context **out);
LMC_API void lmc_vlm_free(lmc_vlm_context *ctx);
/* Borrowed; live as long as the context. */
LMC_API const char *lmc_vlm_model_type(const lmc_vlm_context *ctx);
LMC_API lmc_tokenizer *lmc_vlm_tokenizer(const lmc_vlm_context *ctx);
/* The text a prompt marks each image's place with ("<image>"). Borrowed. */
LMC_API const char *lmc_vlm_image_token(const lmc_vlm_context *ctx);
/* One user turn through the tokenizer's chat template: n_images image
 * items, then `text`, with the generation prompt (as transformers'
 * apply_chat_template renders [{"role": "user", "content": [{"type":
 * "image"}, ..., {"type": "text", "text": text}]}]). *out: lmc_free.
 * No chat template: LMC_ERR_NOT_FOUND. */
LMC_API lmc_status lmc_vlm_chat_prompt(const lmc_vlm_context *ctx, const char *text, size_t n_images,
                               char **out);
/* Generate from a prompt holding exactly n_images image tokens and the
 * image files they stand for (in order): each image is preprocessed, its
 * token expanded to one per image feature (as the model's transformers
 * processor does), the prompt encoded with special tokens, and the image
 * features replace those tokens' embeddings. Sampling, stop strings, eos,
 * max_tokens, the callback and stats behave as in lmc_generate_ids
 * (p NULL: defaults; p->draft must be NULL). Token-count mismatches,
 * unreadable images and wrong image sizes fail with a message naming them. */
LMC_API lmc_status lmc_vlm_generate(lmc_vlm_context *ctx, const char *prompt,
                            const char *const *image_paths, size_t n_images,
                            const lmc_gen_params *p, lmc_gen_callback cb, void *user,
                            lmc_gen_stats *stats);
/* The same, collecting the whole text (*out_text: lmc_free). */
LMC_API lmc_status lmc_vlm_generate_text(lmc_vlm_context *ctx, const char *prompt,
                                 const char *const *image_paths, size_t n_images,
                                 const lmc_gen_params *p, char **out_text, lmc_gen_stats *stats);

/* Image preprocessing as the Hugging Face image processors of the CLIP /
 * SigLIP / Qwen2-VL kind do it: decode (PNG, JPEG, BMP, GIF, PPM/PGM),
 * convert to RGB, resize (Pillow filters by "resample" id: 0 nearest,
 * 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming), center crop,
 * rescale, normalize; output is channel-major float32 (3 x H x W). Keys
 * read: do_convert_rgb, do_resize, size ({height,width} | {shortest_edge}
 * | int), Qwen2-VL's min_pixels / max_pixels / patch_size / merge_size,
 * resample, do_center_crop, crop_size, do_rescale, rescale_factor,
 * do_normalize, image_mean, image_std. Images over 2^26 pixels are
 * refused before decoding. */
typedef struct lmc_image_processor lmc_image_processor;
/* From a model directory's processor config (same file resolution as
 * lmc_vlm_load, except that processor_class is not required). */
LMC_API lmc_status lmc_image_processor_load(const char *dir, lmc_image_processor **out);
/* From an in-memory processor-config JSON document. */
LMC_API lmc_status lmc_image_processor_parse(const char *json, size_t len, lmc_image_processor **out);
LMC_API void lmc_image_processor_free(lmc_image_processor *p);
/* *pixels: channels*height*width floats, caller frees with lmc_free. */
LMC_API lmc_status lmc_image_preprocess_file(const lmc_image_processor *p, const char *path,
                                     float **pixels, size_t *channels, size_t *height,
                                     size_t *width);
LMC_API lmc_status lmc_image_preprocess_memory(const lmc_image_processor *p, const void *bytes,
                                       size_t len, float **pixels, size_t *channels,
                                       size_t *height, size_t *width);
/* ============ end vision-language models (src/vlm) ====================== */

/* ======================== HTTP server (src/server) ======================== */
/* An OpenAI-compatible HTTP server over one loaded context (built only when
 * libmicrohttpd is available): GET /health, GET /v1/models,
 * POST /v1/chat/completions, POST /v1/completions and POST /v1/responses;
 * with "stream": true the reply is Server-Sent Events ("data: {chunk}\n\n"
 * ... "data: [DONE]"; typed "event:" lines for /v1/responses). Chat replies
 * carry tool_calls and reasoning_content (see tool_parser); response_format
 * and tool_choice required / named constrain generation with a grammar;
 * fields the server does not implement are a 400 naming them.
 * Bad requests get 400 with an OpenAI error object whose "param" names the
 * field; bodies over the cap get 413, wrong methods 405, other paths 404.
 * Each connection has its own thread, but every use of the model is
 * serialized by one mutex: requests generate one at a time, the rest wait.
 * The KV cache of the previous request is kept and reused by common prefix
 * (unless no_prompt_cache). The "model" field of a request is accepted
 * whatever it says (one model is served) and replies name model_name. */
typedef struct lmc_server lmc_server;

typedef struct {
    const char *host;               /* address or name to bind; NULL: "127.0.0.1" */
    uint16_t port;                  /* 0: an ephemeral port (see lmc_server_port) */
    const char *model_name;         /* id in /v1/models and replies; NULL: model_type */
    const lmc_gen_params *defaults; /* per-request defaults, copied (NULL: library
                                       defaults); request fields override them */
    size_t max_body_bytes;          /* 0: 8 MiB */
    bool no_prompt_cache;           /* don't reuse the KV cache across requests */
    /* Access. With keys, every endpoint but /health needs
     * "Authorization: Bearer KEY" (401 otherwise); keys are compared in
     * constant time. api_key_file adds one key per non-empty line. Browser
     * requests carrying an Origin header are refused (403) unless the
     * origin is listed ("*": any); listed origins get CORS headers. On a
     * loopback bind the Host header must name a loopback host (403). */
    const char *const *api_keys;
    size_t n_api_keys;
    const char *api_key_file;
    const char *const *allow_origins;
    size_t n_allow_origins;
    /* Load limits (0: the default in brackets). */
    size_t max_queue;               /* requests waiting for the model; more get 429 [16] */
    size_t max_tokens_cap;          /* a request's max_tokens is clamped to this [2^24] */
    size_t cache_keep_tokens;       /* a prompt cache longer than this is dropped after
                                       the request, returning its memory [8192] */
    unsigned max_pending;           /* connections still sending a request; past it the
                                       oldest is closed [128] */
    unsigned max_per_ip;            /* open connections per client address [128] */
    unsigned header_timeout_s;      /* to send the request headers [10] */
    unsigned body_timeout_s;        /* to send the body after the headers [60] */
    void *log;                      /* FILE *: one access-log line per request and
                                       warnings (NULL: none) */
    const char *tool_parser;        /* tool-call format of replies: NULL or "auto" (from the
                                       chat template's markers), "none", "hermes", "llama3",
                                       "mistral", "harmony" or "deepseek" */
} lmc_server_options;

/* Listen and serve in background threads; ctx is borrowed until
 * lmc_server_stop. Fails with LMC_ERR_IO when the address cannot be bound.
 * Requests run one at a time; up to max_queue more wait (429 with
 * Retry-After beyond). A request whose client disconnects, queued or
 * running, streaming or not, stops at the next prefill chunk or decode
 * step. A prompt longer than the context gets 400 with code
 * "context_length_exceeded". The prompt cache is reused only by requests
 * with the same API key and the same "cache_salt". */
LMC_API lmc_status lmc_server_start(lmc_context *ctx, const lmc_server_options *opts,
                                    lmc_server **out);
LMC_API uint16_t lmc_server_port(const lmc_server *s); /* the bound port */
/* Cancel running generations (at the next prefill chunk or decode step),
 * close connections, wait for threads, free. */
LMC_API void lmc_server_stop(lmc_server *s);
/* ====================== end HTTP server (src/server) ====================== */

#ifdef __cplusplus
}
#endif
#endif
