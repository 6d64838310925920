/* Public chat-template API: compile/render, and apply_chat_template with
 * transformers' semantics (context variables, continue_final_message). */
#include "base/error.h"
#include "base/json.h"
#include "template/tpl.h"
#include <stdlib.h>
#include <string.h>

struct lmc_chat_template {
    tpl_program prog;
    size_t max_output;
    long max_iterations;
    uint64_t max_work;
    double max_seconds;
    bool mentions_content; /* transformers checks "content" in the source */
};

lmc_status lmc_chat_template_compile(const char *source, lmc_chat_template **out) {
    if (!out) return lmc_err(LMC_ERR_INVALID_ARG, "chat template: out is NULL");
    *out = NULL;
    if (!source) return lmc_err(LMC_ERR_INVALID_ARG, "chat template: source is NULL");
    lmc_chat_template *t = calloc(1, sizeof *t);
    if (!t) return lmc_err(LMC_ERR_NOMEM, "chat template: out of memory");
    lmc_status st = tpl_parse(source, strlen(source), &t->prog);
    if (st) {
        free(t);
        return st;
    }
    t->mentions_content = strstr(source, "content") != NULL;
    t->max_output = TPL_MAX_OUTPUT;
    t->max_iterations = TPL_MAX_ITERATIONS;
    t->max_work = TPL_MAX_WORK;
    *out = t;
    return LMC_OK;
}

void lmc_chat_template_free(lmc_chat_template *t) {
    if (!t) return;
    tpl_arena_free(&t->prog.arena);
    free(t);
}

lmc_status lmc_chat_template_set_limits(lmc_chat_template *t, size_t max_output_bytes, long max_loop_iterations) {
    if (!t) return lmc_err(LMC_ERR_INVALID_ARG, "chat template: template is NULL");
    if (max_output_bytes > TPL_MAX_OUTPUT || max_loop_iterations < 0 || max_loop_iterations > TPL_MAX_ITERATIONS)
        return lmc_err(LMC_ERR_INVALID_ARG, "chat template: limits above the built-in caps (%u bytes, %ld iterations)",
                       TPL_MAX_OUTPUT, TPL_MAX_ITERATIONS);
    t->max_output = max_output_bytes ? max_output_bytes : TPL_MAX_OUTPUT;
    t->max_iterations = max_loop_iterations ? max_loop_iterations : TPL_MAX_ITERATIONS;
    return LMC_OK;
}

lmc_status lmc_chat_template_set_budget(lmc_chat_template *t, uint64_t max_steps, double max_seconds) {
    if (!t) return lmc_err(LMC_ERR_INVALID_ARG, "chat template: template is NULL");
    if (!(max_seconds >= 0) || max_seconds > 1e9)
        return lmc_err(LMC_ERR_INVALID_ARG, "chat template: time budget %g s is not a duration", max_seconds);
    t->max_work = max_steps ? max_steps : TPL_MAX_WORK;
    t->max_seconds = max_seconds;
    return LMC_OK;
}

/* Render with `vars` (a JSON object; borrowed) plus optional overrides. */
typedef struct {
    const char *name;
    json_object *value; /* NULL -> None */
    bool is_bool, b;
} ctx_var;

static lmc_status render_vars(const lmc_chat_template *t, json_object *vars, const ctx_var *extra, size_t nextra,
                              char **out) {
    tpl_ctx c = {0};
    c.arena.limit = TPL_MAX_ARENA;
    lmc_buf buf = {0};
    c.out = &buf;
    c.out_limit = t->max_output;
    /* iterations count up from a negative offset so the per-template
     * limit applies with the same check */
    c.iterations = c.iterations_base = TPL_MAX_ITERATIONS - t->max_iterations;
    c.work_limit = t->max_work;
    c.seconds = t->max_seconds;
    c.deadline = t->max_seconds > 0 ? tpl_now() + t->max_seconds : 0;
    tv_dict *g = tv_dict_new(&c.arena, 16);
    bool ok = g != NULL;
    if (ok && vars) {
        json_object_object_foreach(vars, key, val) {
            tv_str *k = tv_str_new(&c.arena, key, strlen(key));
            tval v = tv_from_json(&c.arena, val, &ok);
            if (!k || !ok || !tv_dict_set(&c.arena, g, k, v)) ok = false;
            if (!ok) break;
        }
    }
    for (size_t i = 0; ok && i < nextra; i++) {
        tv_str *k = tv_str_new(&c.arena, extra[i].name, strlen(extra[i].name));
        tval v = extra[i].is_bool ? tv_bool(extra[i].b)
                 : extra[i].value ? tv_from_json(&c.arena, extra[i].value, &ok) : tv_none();
        if (!k || !ok || !tv_dict_set(&c.arena, g, k, v)) ok = false;
    }
    if (ok) tpl_add_globals(&c, g);
    lmc_status st;
    if (!ok || c.arena.failed) st = lmc_err(LMC_ERR_NOMEM, "chat template: out of memory building the context");
    else st = tpl_render(&t->prog, g, &c);
    tpl_arena_free(&c.arena);
    if (st) {
        lmc_buf_free(&buf);
        return st;
    }
    *out = lmc_buf_take(&buf);
    if (!*out) return lmc_err(LMC_ERR_NOMEM, "chat template: out of memory");
    return LMC_OK;
}

lmc_status lmc_chat_template_render(const lmc_chat_template *t, const char *context_json, char **out) {
    if (!t || !out) return lmc_err(LMC_ERR_INVALID_ARG, "chat template render: NULL argument");
    *out = NULL;
    json_object *ctx = NULL;
    if (context_json) {
        lmc_status st = lmc_json_parse(context_json, strlen(context_json), "chat template context", &ctx);
        if (st) return st;
        if (!json_object_is_type(ctx, json_type_object)) {
            json_object_put(ctx);
            return lmc_err(LMC_ERR_FORMAT, "chat template context: expected a JSON object");
        }
    }
    lmc_status st = render_vars(t, ctx, NULL, 0, out);
    json_object_put(ctx);
    return st;
}

static size_t rstrip_len(const char *p, size_t n) {
    size_t e = n;
    while (e > 0) {
        size_t st = e - 1;
        while (st > 0 && ((unsigned char)p[st] & 0xc0) == 0x80) st--;
        uint32_t cp;
        tpl_utf8_next(p, n, st, &cp);
        if (!tpl_is_py_space(cp)) break;
        e = st;
    }
    return e;
}

static size_t lstrip_off(const char *p, size_t n) {
    size_t b = 0;
    while (b < n) {
        uint32_t cp;
        size_t nx = tpl_utf8_next(p, n, b, &cp);
        if (!tpl_is_py_space(cp)) break;
        b = nx;
    }
    return b;
}

/* transformers' continue_final_message: a marker is appended to the final
 * message's text before rendering; the output is cut where the marker lands
 * (and right-stripped when the template trimmed the space after it). */
#define CONTINUE_TAG "CONTINUE_FINAL_MESSAGE_TAG "

static lmc_status continue_prepare(const lmc_chat_template *t, json_object *msgs, char **final_text) {
    *final_text = NULL;
    size_t n = json_object_array_length(msgs);
    json_object *last = n ? json_object_array_get_idx(msgs, n - 1) : NULL;
    json_object *content = last && json_object_is_type(last, json_type_object) ? lmc_json_get(last, "content") : NULL;
    if (!content)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "continue_final_message is set but the final message has no \"content\" to continue!");
    if (!t->mentions_content)
        return lmc_err(LMC_ERR_INVALID_ARG, "continue_final_message is set to \"content\" but this is not an "
                                            "accepted field in the chat_template");
    json_object *holder = last;
    const char *key = "content";
    if (json_object_is_type(content, json_type_array)) {
        holder = NULL;
        for (size_t i = json_object_array_length(content); i-- > 0;) {
            json_object *blk = json_object_array_get_idx(content, i);
            if (json_object_is_type(blk, json_type_object) && json_object_object_get_ex(blk, "text", NULL)) {
                holder = blk;
                key = "text";
                break;
            }
        }
        if (!holder)
            return lmc_err(LMC_ERR_INVALID_ARG, "continue_final_message is set but we could not find any text to "
                                                "continue in the final message!");
    }
    json_object *txt = lmc_json_get(holder, key);
    if (!txt || !json_object_is_type(txt, json_type_string))
        return lmc_err(LMC_ERR_INVALID_ARG, "continue_final_message: the final message's %s is not a string", key);
    const char *s = json_object_get_string(txt);
    size_t len = (size_t)json_object_get_string_len(txt);
    char *tagged = malloc(len + sizeof CONTINUE_TAG);
    *final_text = malloc(len + 1);
    if (!tagged || !*final_text) {
        free(tagged);
        free(*final_text);
        *final_text = NULL;
        return lmc_err(LMC_ERR_NOMEM, "out of memory");
    }
    memcpy(*final_text, s, len + 1);
    memcpy(tagged, s, len);
    memcpy(tagged + len, CONTINUE_TAG, sizeof CONTINUE_TAG);
    json_object_object_add(holder, key, json_object_new_string_len(tagged, (int)(len + sizeof CONTINUE_TAG - 1)));
    free(tagged);
    return LMC_OK;
}

static lmc_status continue_cut(const char *final_text, char *rendered) {
    size_t flen = strlen(final_text), b = lstrip_off(final_text, flen);
    size_t e = b + rstrip_len(final_text + b, flen - b);
    size_t rlen = strlen(rendered);
    const char *mark = "CONTINUE_FINAL_MESSAGE_TAG";
    size_t mlen = strlen(mark);
    bool has_final = e == b || memmem(rendered, rlen, final_text + b, e - b) != NULL;
    const char *hit = NULL;
    for (const char *p = rendered; (p = memmem(p, rlen - (size_t)(p - rendered), mark, mlen)); p++) hit = p;
    if (!has_final || !hit)
        return lmc_err(LMC_ERR_TEMPLATE, "continue_final_message is set but the final message does not appear in the "
                                         "chat after applying the chat template! This can happen if the chat "
                                         "template deletes portions of the final message.");
    size_t loc = (size_t)(hit - rendered);
    if (loc + mlen < rlen && rendered[loc + mlen] == ' ') rendered[loc] = '\0';
    else rendered[rstrip_len(rendered, loc)] = '\0';
    return LMC_OK;
}

static lmc_status parse_opt(const char *text, const char *what, json_type want, json_object **out) {
    *out = NULL;
    if (!text) return LMC_OK;
    lmc_status st = lmc_json_parse(text, strlen(text), what, out);
    if (st) return st;
    if (!json_object_is_type(*out, want)) {
        json_object_put(*out);
        *out = NULL;
        return lmc_err(LMC_ERR_FORMAT, "%s: expected a JSON %s", what, want == json_type_array ? "array" : "object");
    }
    return LMC_OK;
}

lmc_status lmc_chat_template_apply(const lmc_chat_template *t, const char *messages_json, const char *tools_json,
                                   bool add_generation_prompt, bool continue_final_message,
                                   const char *extra_context_json, char **out) {
    if (!t || !out || !messages_json) return lmc_err(LMC_ERR_INVALID_ARG, "apply_chat_template: NULL argument");
    *out = NULL;
    if (add_generation_prompt && continue_final_message)
        return lmc_err(LMC_ERR_INVALID_ARG, "continue_final_message and add_generation_prompt are not compatible. "
                                            "Use continue_final_message when you want the model to continue the "
                                            "final message, and add_generation_prompt when you want to add a header "
                                            "that will prompt it to start a new assistant message instead.");
    json_object *msgs = NULL, *tools = NULL, *extra = NULL;
    lmc_status st = parse_opt(messages_json, "messages", json_type_array, &msgs);
    if (!st) st = parse_opt(tools_json, "tools", json_type_array, &tools);
    if (!st) st = parse_opt(extra_context_json, "chat template extra context", json_type_object, &extra);
    char *final_text = NULL;
    if (!st && continue_final_message) st = continue_prepare(t, msgs, &final_text);
    if (!st) {
        ctx_var vars[] = {
            {"messages", msgs, false, false},
            {"tools", tools, false, false},
            {"documents", NULL, false, false},
            {"add_generation_prompt", NULL, true, add_generation_prompt},
        };
        st = render_vars(t, extra, vars, sizeof vars / sizeof vars[0], out);
        if (!st && continue_final_message) {
            st = continue_cut(final_text, *out);
            if (st) {
                free(*out);
                *out = NULL;
            }
        }
    }
    free(final_text);
    json_object_put(msgs);
    json_object_put(tools);
    json_object_put(extra);
    return st;
}

/* Special tokens go first; caller's extra context overrides them. */
static lmc_status tokenizer_context(const lmc_tokenizer *tok, const char *extra_json, char **ctx_out) {
    *ctx_out = NULL;
    json_object *ctx = NULL;
    lmc_status st = extra_json ? parse_opt(extra_json, "chat template extra context", json_type_object, &ctx) : LMC_OK;
    if (st) return st;
    if (!ctx && !(ctx = json_object_new_object())) return lmc_err(LMC_ERR_NOMEM, "out of memory");
    static const char *keys[] = {"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token",
                                 "mask_token"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        const char *v = lmc_tokenizer_special_token(tok, keys[i]);
        if (v && !json_object_object_get_ex(ctx, keys[i], NULL))
            json_object_object_add(ctx, keys[i], json_object_new_string(v));
    }
    const char *s = json_object_to_json_string_ext(ctx, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    *ctx_out = s ? strdup(s) : NULL;
    json_object_put(ctx);
    return *ctx_out ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "out of memory");
}

lmc_status lmc_tokenizer_apply_chat_template(const lmc_tokenizer *t, const char *messages_json,
                                             const char *tools_json, bool add_generation_prompt,
                                             bool continue_final_message, const char *extra_context_json,
                                             char **out) {
    if (!t || !out) return lmc_err(LMC_ERR_INVALID_ARG, "apply_chat_template: NULL argument");
    *out = NULL;
    const char *src = lmc_tokenizer_chat_template(t, NULL);
    if (!src)
        return lmc_err(LMC_ERR_NOT_FOUND, "apply_chat_template: the tokenizer has no chat_template "
                                          "(tokenizer_config.json or chat_template.jinja)");
    lmc_chat_template *tpl;
    lmc_status st = lmc_chat_template_compile(src, &tpl);
    if (st) return st;
    char *ctx;
    st = tokenizer_context(t, extra_context_json, &ctx);
    if (!st) {
        st = lmc_chat_template_apply(tpl, messages_json, tools_json, add_generation_prompt, continue_final_message,
                                     ctx, out);
        free(ctx);
    }
    lmc_chat_template_free(tpl);
    return st;
}

lmc_status lmc_tokenizer_apply_chat_template_ids(const lmc_tokenizer *t, const char *messages_json,
                                                 const char *tools_json, bool add_generation_prompt,
                                                 bool continue_final_message, const char *extra_context_json,
                                                 int32_t **ids, size_t *n_ids) {
    if (!ids || !n_ids) return lmc_err(LMC_ERR_INVALID_ARG, "apply_chat_template: NULL argument");
    *ids = NULL;
    *n_ids = 0;
    char *text;
    lmc_status st = lmc_tokenizer_apply_chat_template(t, messages_json, tools_json, add_generation_prompt,
                                                      continue_final_message, extra_context_json, &text);
    if (st) return st;
    /* the template already placed the special tokens */
    st = lmc_tokenizer_encode(t, text, strlen(text), false, ids, n_ids);
    free(text);
    return st;
}
