/* The Responses API on top of chat completions (responses.h). */
#include "server/responses.h"
#include "server/chat_output.h"
#include "base/error.h"
#include "base/json.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static lmc_status rfail(char *param, size_t cap, const char *p, const char *fmt, const char *arg) {
    snprintf(param, cap, "%s", p);
    char msg[256];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    return lmc_err(LMC_ERR_INVALID_ARG, "'%s' %s", p, msg);
}

/* Fields copied to the chat request under the same name. */
static const char *const SAME[] = {"model", "stream", "temperature", "top_p", "parallel_tool_calls",
                                   "user", "seed", "top_k", "min_p", "repetition_penalty",
                                   "presence_penalty", "frequency_penalty"};
/* Fields translated below. */
static const char *const MAPPED[] = {"input", "instructions", "tools", "tool_choice", "reasoning",
                                     "text", "max_output_tokens", "store"};

static bool in(const char *k, const char *const *l, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!strcmp(k, l[i])) return true;
    return false;
}

/* Content of a message item: a string or input_text / output_text parts. */
static json_object *item_text(json_object *c, char *param, size_t cap, const char *where, lmc_status *st) {
    if (json_object_is_type(c, json_type_string)) return json_object_get(c);
    if (!json_object_is_type(c, json_type_array)) {
        *st = rfail(param, cap, where, "must be a string or an array of text parts%s", NULL);
        return NULL;
    }
    lmc_buf b = {0};
    lmc_buf_puts(&b, "");
    for (size_t i = 0; i < json_object_array_length(c); i++) {
        json_object *p = json_object_array_get_idx(c, i);
        const char *type = json_object_get_string(lmc_json_get(p, "type"));
        json_object *t = lmc_json_get(p, "text");
        if (!type || (strcmp(type, "input_text") && strcmp(type, "output_text")) || !t ||
            !json_object_is_type(t, json_type_string)) {
            lmc_buf_free(&b);
            char w[160];
            snprintf(w, sizeof w, "%s[%zu]", where, i);
            *st = rfail(param, cap, w, "must be an input_text or output_text part (got type '%s')", type ? type : "?");
            return NULL;
        }
        if (i) lmc_buf_putc(&b, '\n');
        lmc_buf_puts(&b, json_object_get_string(t));
    }
    json_object *r = json_object_new_string(b.p ? b.p : "");
    lmc_buf_free(&b);
    return r;
}

static json_object *msg(const char *role, json_object *content) {
    json_object *m = json_object_new_object();
    json_object_object_add(m, "role", json_object_new_string(role));
    json_object_object_add(m, "content", content);
    return m;
}

static lmc_status input_messages(json_object *input, json_object *msgs, char *param, size_t cap) {
    if (json_object_is_type(input, json_type_string)) {
        json_object_array_add(msgs, msg("user", json_object_get(input)));
        return LMC_OK;
    }
    if (!json_object_is_type(input, json_type_array))
        return rfail(param, cap, "input", "must be a string or an array of items%s", NULL);
    json_object *pending = NULL; /* assistant message collecting consecutive function calls */
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < json_object_array_length(input) && !st; i++) {
        json_object *it = json_object_array_get_idx(input, i);
        char where[64];
        snprintf(where, sizeof where, "input[%zu]", i);
        const char *type = json_object_get_string(lmc_json_get(it, "type"));
        const char *role = json_object_get_string(lmc_json_get(it, "role"));
        if (!type || !strcmp(type, "message")) {
            if (!role || (strcmp(role, "user") && strcmp(role, "assistant") && strcmp(role, "system") &&
                          strcmp(role, "developer"))) {
                char w[80];
                snprintf(w, sizeof w, "%s.role", where);
                return rfail(param, cap, w, "must be user, assistant, system or developer (got '%s')", role);
            }
            char w[80];
            snprintf(w, sizeof w, "%s.content", where);
            json_object *c = item_text(lmc_json_get(it, "content"), param, cap, w, &st);
            if (!c) return st ? st : rfail(param, cap, w, "is required%s", NULL);
            json_object_array_add(msgs, msg(role, c));
            pending = NULL;
        } else if (!strcmp(type, "function_call")) {
            json_object *name = lmc_json_get(it, "name"), *args = lmc_json_get(it, "arguments");
            json_object *id = lmc_json_get(it, "call_id");
            if (!name || !args || !id) return rfail(param, cap, where, "needs name, arguments and call_id%s", NULL);
            if (!pending) {
                pending = msg("assistant", json_object_new_string(""));
                json_object_object_add(pending, "tool_calls", json_object_new_array());
                json_object_array_add(msgs, pending);
            }
            json_object *call = json_object_new_object(), *fn = json_object_new_object();
            json_object_object_add(call, "id", json_object_get(id));
            json_object_object_add(call, "type", json_object_new_string("function"));
            json_object_object_add(fn, "name", json_object_get(name));
            /* templates read arguments as an object (most) or text; hand them the object */
            json_object *parsed = NULL;
            const char *a = json_object_get_string(args);
            if (json_object_is_type(args, json_type_string) && !lmc_json_parse(a, strlen(a), "arguments", &parsed))
                json_object_object_add(fn, "arguments", parsed);
            else json_object_object_add(fn, "arguments", json_object_get(args));
            json_object_object_add(call, "function", fn);
            json_object_array_add(lmc_json_get(pending, "tool_calls"), call);
        } else if (!strcmp(type, "function_call_output")) {
            json_object *out = lmc_json_get(it, "output"), *id = lmc_json_get(it, "call_id");
            if (!out || !id) return rfail(param, cap, where, "needs output and call_id%s", NULL);
            json_object *m = msg("tool", json_object_is_type(out, json_type_string)
                                             ? json_object_get(out)
                                             : json_object_new_string(json_object_to_json_string(out)));
            json_object_object_add(m, "tool_call_id", json_object_get(id));
            json_object_array_add(msgs, m);
            pending = NULL;
        } else if (!strcmp(type, "reasoning")) {
            /* earlier reasoning handed back: stateless serving has no use for it */
        } else {
            char w[80];
            snprintf(w, sizeof w, "%s.type", where);
            return rfail(param, cap, w, "'%s' is not supported (message, function_call, function_call_output, reasoning)", type);
        }
    }
    return st;
}

static lmc_status tools_of(json_object *tools, json_object *chat, char *param, size_t cap) {
    if (!json_object_is_type(tools, json_type_array)) return rfail(param, cap, "tools", "must be an array%s", NULL);
    json_object *out = json_object_new_array();
    json_object_object_add(chat, "tools", out);
    for (size_t i = 0; i < json_object_array_length(tools); i++) {
        json_object *t = json_object_array_get_idx(tools, i);
        const char *type = json_object_get_string(lmc_json_get(t, "type"));
        char where[48];
        snprintf(where, sizeof where, "tools[%zu].type", i);
        if (!type || strcmp(type, "function"))
            return rfail(param, cap, where, "'%s' is not supported (only function tools run here)", type);
        json_object *fn = json_object_new_object();
        static const char *const KEYS[] = {"name", "description", "parameters", "strict"};
        for (size_t k = 0; k < 4; k++)
            if (lmc_json_get(t, KEYS[k])) json_object_object_add(fn, KEYS[k], json_object_get(lmc_json_get(t, KEYS[k])));
        json_object *w = json_object_new_object();
        json_object_object_add(w, "type", json_object_new_string("function"));
        json_object_object_add(w, "function", fn);
        json_object_array_add(out, w);
    }
    return LMC_OK;
}

lmc_status lmc_srv_responses_to_chat(const char *body, size_t len, char **chat_body, char *param,
                                     size_t cap) {
    *chat_body = NULL;
    param[0] = 0;
    json_object *root = NULL;
    lmc_status st = lmc_json_parse(body ? body : "", len, "request body", &root);
    if (st) return st;
    json_object *chat = json_object_new_object(), *msgs = json_object_new_array();
    if (!json_object_is_type(root, json_type_object)) {
        st = rfail(param, cap, "", "request body must be a JSON object%s", NULL);
        goto out;
    }
    json_object_object_foreach(root, key, val) {
        if (in(key, SAME, sizeof SAME / sizeof *SAME)) {
            json_object_object_add(chat, key, json_object_get(val));
        } else if (!in(key, MAPPED, sizeof MAPPED / sizeof *MAPPED)) {
            st = rfail(param, cap, key, "is not supported by this server%s", NULL);
            goto out;
        }
    }
    json_object *v;
    if ((v = lmc_json_get(root, "store")) && (!json_object_is_type(v, json_type_boolean) || json_object_get_boolean(v))) {
        st = rfail(param, cap, "store", "must be false: responses are not stored here%s", NULL);
        goto out;
    }
    if ((v = lmc_json_get(root, "instructions"))) {
        if (!json_object_is_type(v, json_type_string)) {
            st = rfail(param, cap, "instructions", "must be a string%s", NULL);
            goto out;
        }
        json_object_array_add(msgs, msg("system", json_object_get(v)));
    }
    if (!(v = lmc_json_get(root, "input"))) {
        st = rfail(param, cap, "input", "is required%s", NULL);
        goto out;
    }
    if ((st = input_messages(v, msgs, param, cap))) goto out;
    json_object_object_add(chat, "messages", json_object_get(msgs));
    if ((v = lmc_json_get(root, "tools")) && (st = tools_of(v, chat, param, cap))) goto out;
    if ((v = lmc_json_get(root, "tool_choice"))) {
        if (json_object_is_type(v, json_type_object) && lmc_json_get(v, "name")) {
            json_object *c = json_object_new_object(), *fn = json_object_new_object();
            json_object_object_add(fn, "name", json_object_get(lmc_json_get(v, "name")));
            json_object_object_add(c, "type", json_object_new_string("function"));
            json_object_object_add(c, "function", fn);
            json_object_object_add(chat, "tool_choice", c);
        } else {
            json_object_object_add(chat, "tool_choice", json_object_get(v));
        }
    }
    if ((v = lmc_json_get(root, "max_output_tokens"))) json_object_object_add(chat, "max_tokens", json_object_get(v));
    if ((v = lmc_json_get(root, "reasoning"))) {
        json_object *e = lmc_json_get(v, "effort");
        json_object_object_foreach(v, rk, rv) {
            (void)rv;
            if (strcmp(rk, "effort") && strcmp(rk, "summary")) {
                char w[64];
                snprintf(w, sizeof w, "reasoning.%.40s", rk);
                st = rfail(param, cap, w, "is not supported%s", NULL);
                goto out;
            }
        }
        if (e) json_object_object_add(chat, "reasoning_effort", json_object_get(e));
    }
    if ((v = lmc_json_get(root, "text"))) {
        json_object *f = lmc_json_get(v, "format");
        const char *t = json_object_get_string(lmc_json_get(f, "type"));
        if (f && t && strcmp(t, "text")) {
            json_object *rf = json_object_new_object();
            json_object_object_add(rf, "type", json_object_new_string(t));
            if (!strcmp(t, "json_schema")) {
                json_object *js = json_object_new_object();
                static const char *const KEYS[] = {"name", "schema", "strict", "description"};
                for (size_t k = 0; k < 4; k++)
                    if (lmc_json_get(f, KEYS[k])) json_object_object_add(js, KEYS[k], json_object_get(lmc_json_get(f, KEYS[k])));
                json_object_object_add(rf, "json_schema", js);
            }
            json_object_object_add(chat, "response_format", rf);
        }
    }
    const char *s = json_object_to_json_string_ext(chat, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    if (!s || !(*chat_body = strdup(s))) st = lmc_err(LMC_ERR_NOMEM, "responses: out of memory");
out:
    json_object_put(msgs);
    json_object_put(chat);
    json_object_put(root);
    return st;
}

/* ---------------------------------------------------------- output */
static json_object *jt(const char *s) {
    char *t = lmc_srv_utf8_sanitize(s, strlen(s));
    json_object *o = json_object_new_string(t ? t : "");
    free(t);
    return o;
}

static json_object *reasoning_item(const char *id, const char *text) {
    json_object *it = json_object_new_object(), *c = json_object_new_array(), *p = json_object_new_object();
    json_object_object_add(it, "id", json_object_new_string(id));
    json_object_object_add(it, "type", json_object_new_string("reasoning"));
    json_object_object_add(it, "summary", json_object_new_array());
    json_object_object_add(p, "type", json_object_new_string("reasoning_text"));
    json_object_object_add(p, "text", jt(text));
    json_object_array_add(c, p);
    json_object_object_add(it, "content", c);
    return it;
}

static json_object *text_part(const char *text) {
    json_object *p = json_object_new_object();
    json_object_object_add(p, "type", json_object_new_string("output_text"));
    json_object_object_add(p, "text", jt(text));
    json_object_object_add(p, "annotations", json_object_new_array());
    return p;
}

static json_object *message_item(const char *id, const char *text, const char *status) {
    json_object *it = json_object_new_object(), *c = json_object_new_array();
    json_object_object_add(it, "id", json_object_new_string(id));
    json_object_object_add(it, "type", json_object_new_string("message"));
    json_object_object_add(it, "status", json_object_new_string(status));
    json_object_object_add(it, "role", json_object_new_string("assistant"));
    if (text) json_object_array_add(c, text_part(text));
    json_object_object_add(it, "content", c);
    return it;
}

static json_object *call_item(const lmc_tool_call *c, const char *status) {
    char id[48], call_id[48];
    lmc_srv_new_id("fc", id, sizeof id);
    lmc_srv_new_id("call", call_id, sizeof call_id);
    json_object *it = json_object_new_object();
    json_object_object_add(it, "id", json_object_new_string(id));
    json_object_object_add(it, "type", json_object_new_string("function_call"));
    json_object_object_add(it, "status", json_object_new_string(status));
    json_object_object_add(it, "call_id", json_object_new_string(call_id));
    json_object_object_add(it, "name", jt(c->name));
    json_object_object_add(it, "arguments", jt(c->arguments));
    return it;
}

static json_object *shell(const char *id, const char *model, time_t created, const char *status) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "id", json_object_new_string(id));
    json_object_object_add(o, "object", json_object_new_string("response"));
    json_object_object_add(o, "created_at", json_object_new_int64((int64_t)created));
    json_object_object_add(o, "status", json_object_new_string(status));
    json_object_object_add(o, "model", jt(model));
    json_object_object_add(o, "output", json_object_new_array());
    json_object_object_add(o, "parallel_tool_calls", json_object_new_boolean(1));
    json_object_object_add(o, "tool_choice", json_object_new_string("auto"));
    json_object_object_add(o, "tools", json_object_new_array());
    json_object_object_add(o, "error", NULL);
    json_object_object_add(o, "incomplete_details", NULL);
    return o;
}

static void finish_shell(json_object *o, const char *finish, size_t in_tok, size_t out_tok) {
    bool cut = finish && !strcmp(finish, "length");
    json_object_object_add(o, "status", json_object_new_string(cut ? "incomplete" : "completed"));
    if (cut) {
        json_object *d = json_object_new_object();
        json_object_object_add(d, "reason", json_object_new_string("max_output_tokens"));
        json_object_object_add(o, "incomplete_details", d);
    }
    json_object *u = json_object_new_object();
    json_object_object_add(u, "input_tokens", json_object_new_int64((int64_t)in_tok));
    json_object_object_add(u, "output_tokens", json_object_new_int64((int64_t)out_tok));
    json_object_object_add(u, "total_tokens", json_object_new_int64((int64_t)(in_tok + out_tok)));
    json_object_object_add(o, "usage", u);
}

json_object *lmc_srv_response_json(const char *id, const char *model, time_t created,
                                   const lmc_model_output *m, const char *finish,
                                   size_t prompt_tokens, size_t output_tokens) {
    json_object *o = shell(id, model, created, "completed");
    json_object *out = lmc_json_get(o, "output");
    char iid[48];
    if (m->reasoning[0]) {
        lmc_srv_new_id("rs", iid, sizeof iid);
        json_object_array_add(out, reasoning_item(iid, m->reasoning));
    }
    if (m->content[0] || !m->n_calls) {
        lmc_srv_new_id("msg", iid, sizeof iid);
        json_object_array_add(out, message_item(iid, m->content, "completed"));
    }
    for (size_t i = 0; i < m->n_calls; i++) json_object_array_add(out, call_item(&m->calls[i], "completed"));
    finish_shell(o, finish, prompt_tokens, output_tokens);
    return o;
}

/* ---------------------------------------------------------- events */
static void event(lmc_srv_resp_stream *s, lmc_buf *out, const char *type, json_object *o) {
    json_object_object_add(o, "type", json_object_new_string(type));
    json_object_object_add(o, "sequence_number", json_object_new_int(s->seq++));
    const char *j = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    lmc_buf_printf(out, "event: %s\ndata: %s\n\n", type, j ? j : "{}");
    json_object_put(o);
}

static json_object *with_item(int index, json_object *item) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "output_index", json_object_new_int(index));
    json_object_object_add(o, "item", item);
    return o;
}

static json_object *delta_ev(const char *item_id, int index, const char *delta) {
    json_object *o = json_object_new_object();
    json_object_object_add(o, "item_id", json_object_new_string(item_id));
    json_object_object_add(o, "output_index", json_object_new_int(index));
    json_object_object_add(o, "content_index", json_object_new_int(0));
    json_object_object_add(o, "delta", jt(delta));
    return o;
}

void lmc_srv_resp_stream_start(lmc_srv_resp_stream *s, const char *id, const char *model,
                               time_t created, const lmc_output_opts *o, lmc_buf *out) {
    memset(s, 0, sizeof *s);
    snprintf(s->id, sizeof s->id, "%s", id);
    s->model = model;
    s->created = created;
    lmc_output_stream_init(&s->os, o);
    json_object *e = json_object_new_object();
    json_object_object_add(e, "response", shell(id, model, created, "in_progress"));
    event(s, out, "response.created", e);
    e = json_object_new_object();
    json_object_object_add(e, "response", shell(id, model, created, "in_progress"));
    event(s, out, "response.in_progress", e);
}

/* Output indexes: reasoning (when any) first, then the message. */
static int msg_index(const lmc_srv_resp_stream *s) { return s->rs_id[0] ? 1 : 0; }

static void open_reasoning(lmc_srv_resp_stream *s, lmc_buf *out) {
    lmc_srv_new_id("rs", s->rs_id, sizeof s->rs_id);
    s->rs_open = true;
    json_object *it = reasoning_item(s->rs_id, "");
    json_object_object_add(it, "content", json_object_new_array());
    event(s, out, "response.output_item.added", with_item(0, it));
}

static void close_reasoning(lmc_srv_resp_stream *s, lmc_buf *out) {
    if (!s->rs_open) return;
    s->rs_open = false;
    json_object *e = delta_ev(s->rs_id, 0, "");
    json_object_object_del(e, "delta");
    json_object_object_add(e, "text", jt(s->reasoning.p ? s->reasoning.p : ""));
    event(s, out, "response.reasoning_text.done", e);
    event(s, out, "response.output_item.done", with_item(0, reasoning_item(s->rs_id, s->reasoning.p ? s->reasoning.p : "")));
}

static void open_message(lmc_srv_resp_stream *s, lmc_buf *out) {
    close_reasoning(s, out);
    lmc_srv_new_id("msg", s->msg_id, sizeof s->msg_id);
    s->msg_open = true;
    int idx = msg_index(s);
    event(s, out, "response.output_item.added", with_item(idx, message_item(s->msg_id, NULL, "in_progress")));
    json_object *e = json_object_new_object();
    json_object_object_add(e, "item_id", json_object_new_string(s->msg_id));
    json_object_object_add(e, "output_index", json_object_new_int(idx));
    json_object_object_add(e, "content_index", json_object_new_int(0));
    json_object_object_add(e, "part", text_part(""));
    event(s, out, "response.content_part.added", e);
}

static void deltas(lmc_srv_resp_stream *s, const char *c, const char *r, lmc_buf *out) {
    if (r && r[0]) {
        if (!s->rs_id[0]) open_reasoning(s, out);
        lmc_buf_puts(&s->reasoning, r);
        event(s, out, "response.reasoning_text.delta", delta_ev(s->rs_id, 0, r));
    }
    if (c && c[0]) {
        if (!s->msg_open) open_message(s, out);
        lmc_buf_puts(&s->text, c);
        event(s, out, "response.output_text.delta", delta_ev(s->msg_id, msg_index(s), c));
    }
}

void lmc_srv_resp_stream_push(lmc_srv_resp_stream *s, const char *text, lmc_buf *out) {
    char *c = NULL, *r = NULL;
    if (lmc_output_stream_push(&s->os, text, &c, &r) == LMC_OK) deltas(s, c, r, out);
    free(c);
    free(r);
}

void lmc_srv_resp_stream_finish(lmc_srv_resp_stream *s, const char *finish, size_t prompt_tokens,
                                size_t output_tokens, lmc_buf *out) {
    char *c = NULL, *r = NULL;
    lmc_model_output m = {0};
    bool ok = lmc_output_stream_finish(&s->os, &c, &r, &m) == LMC_OK;
    if (ok) deltas(s, c, r, out);
    free(c);
    free(r);
    close_reasoning(s, out);
    if (!s->msg_open && (!ok || !m.n_calls)) open_message(s, out);
    json_object *final = shell(s->id, s->model, s->created, "completed");
    json_object *items = lmc_json_get(final, "output");
    if (s->rs_id[0]) json_object_array_add(items, reasoning_item(s->rs_id, s->reasoning.p ? s->reasoning.p : ""));
    int idx = msg_index(s);
    if (s->msg_open) {
        const char *t = s->text.p ? s->text.p : "";
        json_object *e = delta_ev(s->msg_id, idx, "");
        json_object_object_del(e, "delta");
        json_object_object_add(e, "text", jt(t));
        event(s, out, "response.output_text.done", e);
        e = json_object_new_object();
        json_object_object_add(e, "item_id", json_object_new_string(s->msg_id));
        json_object_object_add(e, "output_index", json_object_new_int(idx));
        json_object_object_add(e, "content_index", json_object_new_int(0));
        json_object_object_add(e, "part", text_part(t));
        event(s, out, "response.content_part.done", e);
        event(s, out, "response.output_item.done", with_item(idx, message_item(s->msg_id, t, "completed")));
        json_object_array_add(items, message_item(s->msg_id, t, "completed"));
        idx++;
    }
    for (size_t i = 0; ok && i < m.n_calls; i++, idx++) {
        json_object *it = call_item(&m.calls[i], "in_progress");
        const char *fid = json_object_get_string(lmc_json_get(it, "id"));
        char fidc[48];
        snprintf(fidc, sizeof fidc, "%s", fid);
        json_object_object_add(it, "arguments", json_object_new_string(""));
        event(s, out, "response.output_item.added", with_item(idx, json_object_get(it)));
        json_object *e = json_object_new_object();
        json_object_object_add(e, "item_id", json_object_new_string(fidc));
        json_object_object_add(e, "output_index", json_object_new_int(idx));
        json_object_object_add(e, "delta", jt(m.calls[i].arguments));
        event(s, out, "response.function_call_arguments.delta", e);
        e = json_object_new_object();
        json_object_object_add(e, "item_id", json_object_new_string(fidc));
        json_object_object_add(e, "output_index", json_object_new_int(idx));
        json_object_object_add(e, "arguments", jt(m.calls[i].arguments));
        event(s, out, "response.function_call_arguments.done", e);
        json_object_object_add(it, "arguments", jt(m.calls[i].arguments));
        json_object_object_add(it, "status", json_object_new_string("completed"));
        event(s, out, "response.output_item.done", with_item(idx, json_object_get(it)));
        json_object_array_add(items, it);
    }
    lmc_model_output_free(&m);
    finish_shell(final, finish, prompt_tokens, output_tokens);
    json_object *e = json_object_new_object();
    bool cut = finish && !strcmp(finish, "length");
    json_object_object_add(e, "response", final);
    event(s, out, cut ? "response.incomplete" : "response.completed", e);
}

void lmc_srv_resp_stream_free(lmc_srv_resp_stream *s) {
    lmc_output_stream_free(&s->os);
    lmc_buf_free(&s->text);
    lmc_buf_free(&s->reasoning);
}
