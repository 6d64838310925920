/* Tool-call and reasoning parsers (output.h). Each format follows what the
 * reference parser of that format returns: which text stays content, and
 * arguments either re-serialized as Python's json.dumps does (Hermes,
 * Llama 3, Mistral) or passed through as written (harmony, DeepSeek). */
#include "template/output.h"
#include "base/error.h"
#include "template/tpl.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct {
    const char *name;
    lmc_tool_format f;
    const char *marker; /* template marker that selects the format */
} FORMATS[] = {
    {"harmony", LMC_TOOLFMT_HARMONY, "<|channel|>"},
    {"deepseek", LMC_TOOLFMT_DEEPSEEK, "tool\xe2\x96\x81" "calls\xe2\x96\x81" "begin"},
    {"mistral", LMC_TOOLFMT_MISTRAL, "[TOOL_CALLS]"},
    {"hermes", LMC_TOOLFMT_HERMES, "<tool_call>"},
    {"llama3", LMC_TOOLFMT_LLAMA3, "<|python_tag|>"},
    {"llama3", LMC_TOOLFMT_LLAMA3, "{\"name\": function name"},
};

const char *lmc_tool_format_name(lmc_tool_format f) {
    for (size_t i = 0; i < sizeof FORMATS / sizeof *FORMATS; i++)
        if (FORMATS[i].f == f) return FORMATS[i].name;
    return "none";
}

bool lmc_tool_format_from_name(const char *name, lmc_tool_format *out) {
    if (!strcmp(name, "none")) return *out = LMC_TOOLFMT_NONE, true;
    for (size_t i = 0; i < sizeof FORMATS / sizeof *FORMATS; i++)
        if (!strcmp(FORMATS[i].name, name)) return *out = FORMATS[i].f, true;
    return false;
}

lmc_tool_format lmc_tool_format_detect(const char *src) {
    if (!src) return LMC_TOOLFMT_NONE;
    for (size_t i = 0; i < sizeof FORMATS / sizeof *FORMATS; i++)
        if (strstr(src, FORMATS[i].marker)) return FORMATS[i].f;
    return LMC_TOOLFMT_NONE;
}

/* ------------------------------------------------------------ json.dumps */
bool lmc_py_json_dumps(json_object *v, lmc_buf *b) {
    switch (json_object_get_type(v)) {
    case json_type_null: return lmc_buf_puts(b, "null");
    case json_type_boolean: return lmc_buf_puts(b, json_object_get_boolean(v) ? "true" : "false");
    case json_type_int: return lmc_buf_printf(b, "%lld", (long long)json_object_get_int64(v));
    case json_type_double: return tv_json_float(b, json_object_get_double(v));
    case json_type_string:
        return tv_json_str(b, json_object_get_string(v), (size_t)json_object_get_string_len(v));
    case json_type_array: {
        bool ok = lmc_buf_putc(b, '[');
        for (size_t i = 0; ok && i < json_object_array_length(v); i++)
            ok = (!i || lmc_buf_puts(b, ", ")) && lmc_py_json_dumps(json_object_array_get_idx(v, i), b);
        return ok && lmc_buf_putc(b, ']');
    }
    case json_type_object: {
        bool ok = lmc_buf_putc(b, '{'), first = true;
        json_object_object_foreach(v, k, x) {
            ok = ok && (first || lmc_buf_puts(b, ", ")) && tv_json_str(b, k, strlen(k)) &&
                 lmc_buf_puts(b, ": ") && lmc_py_json_dumps(x, b);
            first = false;
        }
        return ok && lmc_buf_putc(b, '}');
    }
    }
    return false;
}

/* ------------------------------------------------------------ helpers */
typedef struct {
    const char *p;
    size_t n;
} span;

static char *dup_span(span s) {
    char *r = malloc(s.n + 1);
    if (r) {
        memcpy(r, s.p, s.n);
        r[s.n] = 0;
    }
    return r;
}

static const char *find(span s, const char *needle) {
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= s.n; i++)
        if (!memcmp(s.p + i, needle, k)) return s.p + i;
    return NULL;
}

static bool starts(span s, const char *m) { return s.n >= strlen(m) && !memcmp(s.p, m, strlen(m)); }

/* Length of s that cannot be the start of one of the markers: a trailing
 * proper prefix of a marker is held back. */
static size_t safe_len(span s, const char *const *markers, size_t nm) {
    for (size_t p = 0; p < s.n; p++)
        for (size_t k = 0; k < nm; k++) {
            size_t ml = strlen(markers[k]);
            if (s.n - p < ml && !memcmp(s.p + p, markers[k], s.n - p)) return p;
        }
    return s.n;
}

static span strip(span s) {
    while (s.n && isspace((unsigned char)s.p[0])) s.p++, s.n--;
    while (s.n && isspace((unsigned char)s.p[s.n - 1])) s.n--;
    return s;
}

static lmc_status oom(void) { return lmc_err(LMC_ERR_NOMEM, "output parser: out of memory"); }

static lmc_status add_call(lmc_model_output *o, span name, const char *args, size_t args_len) {
    lmc_tool_call *c = realloc(o->calls, (o->n_calls + 1) * sizeof *c);
    if (!c) return oom();
    o->calls = c;
    c[o->n_calls].name = dup_span(name);
    c[o->n_calls].arguments = dup_span((span){args, args_len});
    if (!c[o->n_calls].name || !c[o->n_calls].arguments) {
        free(c[o->n_calls].name);
        free(c[o->n_calls].arguments);
        return oom();
    }
    o->n_calls++;
    return LMC_OK;
}

static void drop_calls(lmc_model_output *o) {
    for (size_t i = 0; i < o->n_calls; i++) {
        free(o->calls[i].name);
        free(o->calls[i].arguments);
    }
    free(o->calls);
    o->calls = NULL;
    o->n_calls = 0;
}

/* A call object {"name": ..., key: {...}} -> name + json.dumps(value). */
static bool call_from_object(lmc_model_output *o, json_object *obj, const char *key, const char *alt) {
    json_object *name = NULL, *args = NULL;
    if (!json_object_is_type(obj, json_type_object) || !json_object_object_get_ex(obj, "name", &name) ||
        !json_object_is_type(name, json_type_string))
        return false;
    if (!json_object_object_get_ex(obj, key, &args) && !(alt && json_object_object_get_ex(obj, alt, &args)))
        return false;
    lmc_buf b = {0};
    bool ok = lmc_py_json_dumps(args, &b) &&
              add_call(o, (span){json_object_get_string(name), (size_t)json_object_get_string_len(name)},
                       b.p, b.len) == LMC_OK;
    lmc_buf_free(&b);
    return ok;
}

/* One JSON value at the start of s (no leading whitespace, as Python's
 * raw_decode); *used its length. */
static json_object *decode_prefix(span s, size_t *used) {
    json_tokener *t = json_tokener_new();
    if (!t) return NULL;
    json_object *v = s.n ? json_tokener_parse_ex(t, s.p, (int)s.n) : NULL;
    if (v && json_tokener_get_error(t) != json_tokener_success) {
        json_object_put(v);
        v = NULL;
    }
    *used = json_tokener_get_parse_end(t);
    json_tokener_free(t);
    if (v && s.n && isspace((unsigned char)s.p[0])) {
        json_object_put(v);
        v = NULL;
    }
    return v;
}

static json_object *decode_all(span s) {
    size_t used = 0;
    s = strip(s);
    json_object *v = decode_prefix(s, &used);
    if (v && used != s.n) {
        json_object_put(v);
        v = NULL;
    }
    return v;
}

/* ------------------------------------------------------------ formats */
#define HERMES_OPEN "<tool_call>"
#define HERMES_CLOSE "</tool_call>"
#define PY_TAG "<|python_tag|>"
#define MISTRAL_BOT "[TOOL_CALLS]"
#define DS_CALLS "<\xef\xbd\x9ctool\xe2\x96\x81" "calls\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_CALL "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "begin\xef\xbd\x9c>"
#define DS_SEP "<\xef\xbd\x9ctool\xe2\x96\x81" "sep\xef\xbd\x9c>"
#define DS_CALL_END "<\xef\xbd\x9ctool\xe2\x96\x81" "call\xe2\x96\x81" "end\xef\xbd\x9c>"

static bool hermes(lmc_model_output *o, span s) {
    const char *at = find(s, HERMES_OPEN);
    while (at) {
        span rest = {at + strlen(HERMES_OPEN), s.n - (size_t)(at + strlen(HERMES_OPEN) - s.p)};
        const char *end = find(rest, HERMES_CLOSE);
        span body = {rest.p, end ? (size_t)(end - rest.p) : rest.n};
        json_object *v = decode_all(body);
        bool ok = v && call_from_object(o, v, "arguments", NULL);
        json_object_put(v);
        if (!ok) return false;
        if (!end) break;
        span after = {end + strlen(HERMES_CLOSE), s.n - (size_t)(end + strlen(HERMES_CLOSE) - s.p)};
        at = find(after, HERMES_OPEN);
    }
    return true;
}

static bool llama3(lmc_model_output *o, span s) {
    size_t i = starts(s, PY_TAG) ? strlen(PY_TAG) : 0;
    while (i < s.n) {
        size_t used = 0;
        json_object *v = decode_prefix((span){s.p + i, s.n - i}, &used);
        bool ok = v && call_from_object(o, v, "arguments", "parameters");
        json_object_put(v);
        if (!ok) return false;
        i += used + 2; /* "; " between calls */
    }
    return o->n_calls > 0;
}

static bool mistral(lmc_model_output *o, span s) {
    /* everything after the first marker, markers removed, stripped */
    lmc_buf b = {0};
    const char *at = find(s, MISTRAL_BOT);
    span rest = {at + strlen(MISTRAL_BOT), s.n - (size_t)(at + strlen(MISTRAL_BOT) - s.p)};
    bool ok = true;
    for (const char *p = rest.p; ok && p < rest.p + rest.n;) {
        const char *m = find((span){p, (size_t)(rest.p + rest.n - p)}, MISTRAL_BOT);
        const char *e = m ? m : rest.p + rest.n;
        ok = lmc_buf_append(&b, p, (size_t)(e - p));
        p = m ? m + strlen(MISTRAL_BOT) : e;
    }
    json_object *v = ok ? decode_all((span){b.p ? b.p : "", b.len}) : NULL;
    if (v && json_object_is_type(v, json_type_array)) {
        for (size_t i = 0; ok && i < json_object_array_length(v); i++)
            ok = call_from_object(o, json_object_array_get_idx(v, i), "arguments", NULL);
    } else if (ok && !v) {
        /* the newer form: [TOOL_CALLS]name[ARGS]{...} per call */
        for (const char *p = at; ok && p;) {
            span seg = {p + strlen(MISTRAL_BOT), 0};
            const char *next = find((span){seg.p, (size_t)(s.p + s.n - seg.p)}, MISTRAL_BOT);
            seg.n = (size_t)((next ? next : s.p + s.n) - seg.p);
            const char *a = find(seg, "[ARGS]");
            json_object *args = a ? decode_all((span){a + 6, (size_t)(seg.p + seg.n - a - 6)}) : NULL;
            lmc_buf d = {0};
            ok = args && lmc_py_json_dumps(args, &d) &&
                 add_call(o, strip((span){seg.p, (size_t)(a - seg.p)}), d.p, d.len) == LMC_OK;
            lmc_buf_free(&d);
            json_object_put(args);
            p = next;
        }
    } else {
        ok = false;
    }
    json_object_put(v);
    lmc_buf_free(&b);
    return ok && o->n_calls > 0;
}

/* V3: <call begin>function<sep>NAME\n```json\nARGS\n```<call end>;
 * V3.1: <call begin>NAME<sep>ARGS<call end>. A missing end (the output
 * stopped there) closes the call. */
static bool deepseek(lmc_model_output *o, span s) {
    const char *at = find(s, DS_CALL);
    while (at) {
        span r = {at + strlen(DS_CALL), s.n - (size_t)(at + strlen(DS_CALL) - s.p)};
        const char *sep = find(r, DS_SEP);
        if (!sep) return false;
        span head = {r.p, (size_t)(sep - r.p)};
        span body = {sep + strlen(DS_SEP), (size_t)(r.p + r.n - sep - strlen(DS_SEP))};
        const char *end = find(body, DS_CALL_END);
        span in = {body.p, end ? (size_t)(end - body.p) : body.n};
        const char *fence = find(in, "\n```json\n");
        lmc_status st;
        if (fence && head.n == 8 && !memcmp(head.p, "function", 8)) {
            span name = {in.p, (size_t)(fence - in.p)};
            span args = {fence + 9, (size_t)(in.p + in.n - fence - 9)};
            if (args.n >= 4 && !memcmp(args.p + args.n - 4, "\n```", 4)) args.n -= 4;
            else if (end) return false;
            st = add_call(o, name, args.p, args.n);
        } else {
            st = add_call(o, head, in.p, in.n);
        }
        if (st) return false;
        if (!end) break;
        at = find((span){end, (size_t)(s.p + s.n - end)}, DS_CALL);
    }
    return o->n_calls > 0;
}

/* ------------------------------------------------------------ harmony */
static const char *const HARMONY_ENDS[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>"};
static const char *const HARMONY_MARKERS[] = {"<|end|>", "<|call|>", "<|return|>", "<|start|>",
                                              "<|channel|>", "<|message|>", "<|constrain|>"};

static span header_word(span h, const char *key) {
    const char *k = find(h, key);
    if (!k) return (span){NULL, 0};
    const char *p = k + strlen(key), *e = p;
    while (e < h.p + h.n && !isspace((unsigned char)*e) && *e != '<') e++;
    return (span){p, (size_t)(e - p)};
}

static lmc_status harmony(lmc_model_output *o, span s, bool partial, lmc_buf *content, lmc_buf *reasoning) {
    if (!find(s, "<|channel|>") && !find(s, "<|message|>") && !find(s, "<|start|>")) {
        size_t n = partial ? safe_len(s, HARMONY_MARKERS, 7) : s.n;
        return lmc_buf_append(content, s.p, n) ? LMC_OK : oom();
    }
    const char *p = s.p, *end = s.p + s.n;
    while (p < end) {
        const char *msg = find((span){p, (size_t)(end - p)}, "<|message|>");
        if (!msg) break; /* a header still being written */
        span head = {p, (size_t)(msg - p)};
        const char *body = msg + strlen("<|message|>"), *stop = end;
        size_t stop_len = 0;
        for (size_t k = 0; k < sizeof HARMONY_ENDS / sizeof *HARMONY_ENDS; k++) {
            const char *e = find((span){body, (size_t)(end - body)}, HARMONY_ENDS[k]);
            if (e && e < stop) stop = e, stop_len = strlen(HARMONY_ENDS[k]);
        }
        bool open = stop == end;
        span text = {body, (size_t)(stop - body)};
        if (open && partial) text.n = safe_len(text, HARMONY_MARKERS, 7);
        span channel = header_word(head, "<|channel|>"), to = header_word(head, "to=");
        bool is_call = to.p && to.n > 10 && !memcmp(to.p, "functions.", 10);
        lmc_status st = LMC_OK;
        if (is_call) {
            if (!partial || !open) st = add_call(o, (span){to.p + 10, to.n - 10}, text.p, text.n);
        } else if (channel.n == 8 && !memcmp(channel.p, "analysis", 8)) {
            if (!lmc_buf_append(reasoning, text.p, text.n)) st = oom();
        } else if (!to.p) {
            if (!lmc_buf_append(content, text.p, text.n)) st = oom();
        }
        if (st) return st;
        p = stop + stop_len;
    }
    return LMC_OK;
}

/* ------------------------------------------------------------ entry */
/* The marker that opens calls, indexed by lmc_tool_format (harmony parses apart). */
static const char *const TOOL_MARKERS[] = {
    [LMC_TOOLFMT_NONE] = "",           [LMC_TOOLFMT_HERMES] = HERMES_OPEN,
    [LMC_TOOLFMT_LLAMA3] = PY_TAG,     [LMC_TOOLFMT_MISTRAL] = MISTRAL_BOT,
    [LMC_TOOLFMT_HARMONY] = "",        [LMC_TOOLFMT_DEEPSEEK] = DS_CALLS,
};

/* Content and calls of the text after any reasoning. */
static lmc_status tool_part(const lmc_output_opts *op, lmc_model_output *o, span s, bool partial,
                            lmc_buf *content) {
    lmc_tool_format f = op->tools ? op->format : LMC_TOOLFMT_NONE;
    if (f == LMC_TOOLFMT_NONE) return lmc_buf_append(content, s.p, s.n) ? LMC_OK : oom();
    const char *marker = TOOL_MARKERS[f];
    if (f == LMC_TOOLFMT_LLAMA3) {
        bool maybe = s.n == 0 || s.p[0] == '{' || starts(s, PY_TAG) || safe_len(s, &marker, 1) == 0;
        if (partial) return lmc_buf_append(content, s.p, maybe ? 0 : s.n) ? LMC_OK : oom();
        if (maybe && s.n && llama3(o, s)) return LMC_OK;
        drop_calls(o);
        return lmc_buf_append(content, s.p, s.n) ? LMC_OK : oom();
    }
    const char *at = find(s, marker);
    size_t head = at ? (size_t)(at - s.p) : partial ? safe_len(s, &marker, 1) : s.n;
    if (partial || !at) return lmc_buf_append(content, s.p, head) ? LMC_OK : oom();
    bool ok = f == LMC_TOOLFMT_HERMES ? hermes(o, s) : f == LMC_TOOLFMT_MISTRAL ? mistral(o, s) : deepseek(o, s);
    if (!ok) {
        drop_calls(o); /* as the references do: the whole text stays content */
        head = s.n;
    }
    return lmc_buf_append(content, s.p, head) ? LMC_OK : oom();
}

static lmc_status parse(const lmc_output_opts *op, span s, bool partial, lmc_model_output *o) {
    memset(o, 0, sizeof *o);
    lmc_buf content = {0}, reasoning = {0};
    lmc_status st = LMC_OK;
    if (op->format == LMC_TOOLFMT_HARMONY) {
        st = harmony(o, s, partial, &content, &reasoning);
    } else {
        span rest = s;
        if (op->think) {
            bool in = op->starts_in_think;
            span t = s;
            while (!in && t.n && isspace((unsigned char)t.p[0])) t.p++, t.n--;
            static const char *const open_tag[] = {"<think>"}, *const close_tag[] = {"</think>"};
            if (!in && starts(t, "<think>")) {
                in = true;
                t.p += 7, t.n -= 7;
            } else if (!in && partial && t.n && safe_len(t, open_tag, 1) == 0) {
                rest.n = 0; /* maybe "<think>" still coming */
            }
            if (in) {
                const char *e = find(t, "</think>");
                size_t r = e ? (size_t)(e - t.p) : partial ? safe_len(t, close_tag, 1) : t.n;
                if (!lmc_buf_append(&reasoning, t.p, r)) st = oom();
                rest = e ? (span){e + 8, (size_t)(t.p + t.n - e - 8)} : (span){t.p + t.n, 0};
            }
        }
        if (!st) st = tool_part(op, o, rest, partial, &content);
    }
    o->content = lmc_buf_take(&content);
    o->reasoning = lmc_buf_take(&reasoning);
    if (!o->content) o->content = strdup("");
    if (!o->reasoning) o->reasoning = strdup("");
    if (!st && (!o->content || !o->reasoning)) st = oom();
    if (st) lmc_model_output_free(o);
    return st;
}

lmc_status lmc_output_parse(const lmc_output_opts *op, const char *text, lmc_model_output *out) {
    return parse(op, (span){text, strlen(text)}, false, out);
}

void lmc_model_output_free(lmc_model_output *m) {
    if (!m) return;
    drop_calls(m);
    free(m->content);
    free(m->reasoning);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------ stream */
void lmc_output_stream_init(lmc_output_stream *s, const lmc_output_opts *o) {
    memset(s, 0, sizeof *s);
    s->o = *o;
}

void lmc_output_stream_free(lmc_output_stream *s) { lmc_buf_free(&s->text); }

/* The part of `now` past what was sent, when `now` still extends it. */
static char *delta(const char *now, size_t *sent) {
    size_t n = strlen(now);
    char *d = strdup(n > *sent ? now + *sent : "");
    if (d && n > *sent) *sent = n;
    return d;
}

static lmc_status emit(lmc_output_stream *s, bool partial, char **content, char **reasoning,
                       lmc_model_output *keep) {
    lmc_model_output m;
    lmc_status st = parse(&s->o, (span){s->text.p ? s->text.p : "", s->text.len}, partial, &m);
    if (st) return st;
    *content = delta(m.content, &s->sent_content);
    *reasoning = delta(m.reasoning, &s->sent_reasoning);
    if (keep) *keep = m;
    else lmc_model_output_free(&m);
    if (!*content || !*reasoning) {
        free(*content), free(*reasoning);
        *content = *reasoning = NULL;
        if (keep) lmc_model_output_free(keep);
        return oom();
    }
    return LMC_OK;
}

lmc_status lmc_output_stream_push(lmc_output_stream *s, const char *text, char **content,
                                  char **reasoning) {
    if (!lmc_buf_puts(&s->text, text)) return oom();
    return emit(s, true, content, reasoning, NULL);
}

lmc_status lmc_output_stream_finish(lmc_output_stream *s, char **content, char **reasoning,
                                    lmc_model_output *final) {
    return emit(s, false, content, reasoning, final);
}
