/* Lexer and parser: template source -> AST. Whitespace rules follow Jinja2
 * with trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=False
 * (how transformers compiles chat templates). */
#include "base/error.h"
#include "template/tpl.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { T_EOF, T_TEXT, T_VAR_BEGIN, T_VAR_END, T_BLOCK_BEGIN, T_BLOCK_END, T_NAME, T_STRING,
               T_INT, T_FLOAT, T_OP } ttype;

typedef struct {
    ttype t;
    const char *p; /* source text (names, ops) */
    size_t n;
    int line, col;
    tv_str *s; /* T_TEXT, T_STRING */
    int64_t i;
    double f;
} token;

typedef struct {
    const char *src;
    size_t len;
    tpl_arena *arena;
    token *toks;
    size_t ntok, cap, pos;
    /* line/col cursor */
    size_t lc_off;
    int lc_line, lc_col;
    bool err;
    int depth;
} parser;

static void locate(parser *ps, size_t off, int *line, int *col) {
    if (off < ps->lc_off) {
        ps->lc_off = 0;
        ps->lc_line = 1;
        ps->lc_col = 1;
    }
    for (; ps->lc_off < off && ps->lc_off < ps->len; ps->lc_off++) {
        if (ps->src[ps->lc_off] == '\n') {
            ps->lc_line++;
            ps->lc_col = 1;
        } else if (((unsigned char)ps->src[ps->lc_off] & 0xc0) != 0x80) {
            ps->lc_col++;
        }
    }
    *line = ps->lc_line;
    *col = ps->lc_col;
}

static bool perr_at(parser *ps, int line, int col, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static bool perr_at(parser *ps, int line, int col, const char *fmt, ...) {
    if (ps->err) return false;
    ps->err = true;
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lmc_err(LMC_ERR_TEMPLATE, "chat template syntax error at line %d, column %d: %s", line, col, msg);
    return false;
}

static token *push_tok(parser *ps, ttype t, size_t off, size_t n) {
    if (ps->ntok == ps->cap) {
        size_t cap = ps->cap ? ps->cap * 2 : 256;
        token *nt = realloc(ps->toks, cap * sizeof *nt);
        if (!nt) {
            perr_at(ps, 0, 0, "out of memory");
            return NULL;
        }
        ps->toks = nt;
        ps->cap = cap;
    }
    token *k = &ps->toks[ps->ntok++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->p = ps->src + off;
    k->n = n;
    locate(ps, off, &k->line, &k->col);
    return k;
}

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_id0(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_dig(char c) { return c >= '0' && c <= '9'; }

static void put_utf8(char *o, size_t *n, uint32_t cp) {
    if (cp < 0x80) o[(*n)++] = (char)cp;
    else if (cp < 0x800) {
        o[(*n)++] = (char)(0xc0 | (cp >> 6));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
        o[(*n)++] = (char)(0xe0 | (cp >> 12));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    } else {
        o[(*n)++] = (char)(0xf0 | (cp >> 18));
        o[(*n)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
        o[(*n)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
        o[(*n)++] = (char)(0x80 | (cp & 0x3f));
    }
}

static int hexv(char c) {
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* String literal with Python unicode-escape semantics. `i` at the quote. */
static bool lex_string(parser *ps, size_t *ip) {
    size_t i = *ip, start = i;
    char q = ps->src[i++];
    char *o = malloc(ps->len - i + 8);
    if (!o) return perr_at(ps, 0, 0, "out of memory");
    size_t n = 0;
    while (i < ps->len && ps->src[i] != q) {
        char c = ps->src[i];
        if (c != '\\' || i + 1 >= ps->len) {
            o[n++] = c;
            i++;
            continue;
        }
        char e = ps->src[i + 1];
        i += 2;
        switch (e) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case '\\': o[n++] = '\\'; break;
        case '\'': o[n++] = '\''; break;
        case '"': o[n++] = '"'; break;
        case 'a': o[n++] = '\a'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'v': o[n++] = '\v'; break;
        case '\n': break;
        case 'x': case 'u': case 'U': {
            int digits = e == 'x' ? 2 : e == 'u' ? 4 : 8;
            uint32_t cp = 0;
            int k;
            for (k = 0; k < digits && i < ps->len && hexv(ps->src[i]) >= 0; k++, i++) cp = cp * 16 + (uint32_t)hexv(ps->src[i]);
            if (k != digits || cp > 0x10ffff) {
                free(o);
                int l, c2;
                locate(ps, start, &l, &c2);
                return perr_at(ps, l, c2, "truncated \\%c escape in string literal", e);
            }
            put_utf8(o, &n, cp);
            break;
        }
        default:
            if (e >= '0' && e <= '7') {
                uint32_t cp = (uint32_t)(e - '0');
                for (int k = 0; k < 2 && i < ps->len && ps->src[i] >= '0' && ps->src[i] <= '7'; k++, i++)
                    cp = cp * 8 + (uint32_t)(ps->src[i] - '0');
                put_utf8(o, &n, cp);
            } else {
                o[n++] = '\\';
                o[n++] = e;
            }
        }
    }
    if (i >= ps->len) {
        free(o);
        int l, c2;
        locate(ps, start, &l, &c2);
        return perr_at(ps, l, c2, "unterminated string literal");
    }
    token *t = push_tok(ps, T_STRING, start, i + 1 - start);
    if (t) t->s = tv_str_new(ps->arena, o, n);
    free(o);
    if (!t || !t->s) return perr_at(ps, 0, 0, "out of memory");
    *ip = i + 1;
    return true;
}

/* Tokens of one tag body; `i` just past the opener. Returns the offset just
 * after the closer, and whether the closer had '-' (strip following). */
static bool lex_tag(parser *ps, size_t *ip, bool block, bool *strip_after, bool *plus_after) {
    size_t i = *ip;
    int depth = 0;
    for (;;) {
        while (i < ps->len && is_ws(ps->src[i])) i++;
        if (i >= ps->len) {
            int l, c;
            locate(ps, *ip, &l, &c);
            return perr_at(ps, l, c, "unexpected end of template, expected '%s'", block ? "%}" : "}}");
        }
        const char *s = ps->src + i;
        size_t rest = ps->len - i;
        if (depth == 0) {
            const char *end = block ? "%}" : "}}";
            if (rest >= 3 && (s[0] == '-' || (block && s[0] == '+')) && !memcmp(s + 1, end, 2)) {
                *strip_after = s[0] == '-';
                *plus_after = s[0] == '+';
                if (!push_tok(ps, block ? T_BLOCK_END : T_VAR_END, i, 3)) return false;
                *ip = i + 3;
                return true;
            }
            if (rest >= 2 && !memcmp(s, end, 2)) {
                *strip_after = *plus_after = false;
                if (!push_tok(ps, block ? T_BLOCK_END : T_VAR_END, i, 2)) return false;
                *ip = i + 2;
                return true;
            }
        }
        char c = s[0];
        if (is_id0(c)) {
            size_t j = i + 1;
            while (j < ps->len && (is_id0(ps->src[j]) || is_dig(ps->src[j]))) j++;
            if (!push_tok(ps, T_NAME, i, j - i)) return false;
            i = j;
        } else if (is_dig(c)) {
            size_t j = i;
            bool flt = false;
            char num[128];
            size_t nn = 0;
            bool too_long = false;
/* Literals longer than the buffer are refused below, never cut short. */
#define NUM_PUT(ch) (nn < sizeof num - 1 ? (void)(num[nn++] = (ch)) : (void)(too_long = true))
            while (j < ps->len && (is_dig(ps->src[j]) || ps->src[j] == '_')) {
                if (ps->src[j] != '_') NUM_PUT(ps->src[j]);
                j++;
            }
            if (j + 1 < ps->len && ps->src[j] == '.' && is_dig(ps->src[j + 1])) {
                flt = true;
                NUM_PUT('.');
                j++;
                while (j < ps->len && (is_dig(ps->src[j]) || ps->src[j] == '_')) {
                    if (ps->src[j] != '_') NUM_PUT(ps->src[j]);
                    j++;
                }
            }
            if (j < ps->len && (ps->src[j] == 'e' || ps->src[j] == 'E')) {
                size_t k = j + 1;
                if (k < ps->len && (ps->src[k] == '+' || ps->src[k] == '-')) k++;
                if (k < ps->len && is_dig(ps->src[k])) {
                    flt = true;
                    while (j < k) NUM_PUT(ps->src[j++]);
                    while (j < ps->len && is_dig(ps->src[j])) {
                        NUM_PUT(ps->src[j]);
                        j++;
                    }
                }
            }
#undef NUM_PUT
            num[nn] = '\0';
            if (too_long) {
                int l, col;
                locate(ps, i, &l, &col);
                return perr_at(ps, l, col, "number literal longer than %zu digits",
                               sizeof num - 1);
            }
            errno = 0;
            long long iv = flt ? 0 : strtoll(num, NULL, 10);
            if (errno == ERANGE) {
                int l, col;
                locate(ps, i, &l, &col);
                return perr_at(ps, l, col, "integer literal out of the 64-bit range");
            }
            token *t = push_tok(ps, flt ? T_FLOAT : T_INT, i, j - i);
            if (!t) return false;
            if (flt) t->f = strtod(num, NULL);
            else t->i = iv;
            i = j;
        } else if (c == '\'' || c == '"') {
            if (!lex_string(ps, &i)) return false;
        } else {
            static const char *ops[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~",
                                        "<", ">", "=", "(", ")", "[", "]", "{", "}", ",", ".", ":",
                                        "|", NULL};
            size_t n = 0;
            for (int k = 0; ops[k]; k++) {
                size_t l = strlen(ops[k]);
                if (rest >= l && !memcmp(s, ops[k], l)) {
                    n = l;
                    break;
                }
            }
            if (!n) {
                int l, col;
                locate(ps, i, &l, &col);
                return perr_at(ps, l, col, "unexpected character '%c'", c);
            }
            if (c == '(' || c == '[' || c == '{') depth++;
            if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
            if (!push_tok(ps, T_OP, i, n)) return false;
            i += n;
        }
    }
}

static bool emit_text(parser *ps, size_t off, const char *p, size_t n) {
    if (!n) return true;
    token *t = push_tok(ps, T_TEXT, off, n);
    if (!t) return false;
    t->s = tv_str_new(ps->arena, p, n);
    return t->s ? true : perr_at(ps, 0, 0, "out of memory");
}

/* Is `{% raw %}` at i (just past "{%" and optional -/+)? Returns end offset. */
static size_t match_word_tag(parser *ps, size_t i, const char *word, bool *strip_after) {
    while (i < ps->len && is_ws(ps->src[i])) i++;
    size_t wl = strlen(word);
    if (ps->len - i < wl || memcmp(ps->src + i, word, wl)) return 0;
    i += wl;
    if (i < ps->len && (is_id0(ps->src[i]) || is_dig(ps->src[i]))) return 0;
    while (i < ps->len && is_ws(ps->src[i])) i++;
    if (ps->len - i >= 3 && ps->src[i] == '-' && !memcmp(ps->src + i + 1, "%}", 2)) {
        *strip_after = true;
        return i + 3;
    }
    if (ps->len - i >= 2 && !memcmp(ps->src + i, "%}", 2)) {
        *strip_after = false;
        return i + 2;
    }
    return 0;
}

static bool lex(parser *ps) {
    size_t i = 0;
    bool strip_next = false, line_start = true;
    while (i <= ps->len) {
        /* find the next tag opener */
        size_t k = i;
        int kind = 0; /* 1 var, 2 block, 3 comment */
        for (; k + 1 < ps->len; k++) {
            if (ps->src[k] != '{') continue;
            char d = ps->src[k + 1];
            if (d == '{') kind = 1;
            else if (d == '%') kind = 2;
            else if (d == '#') kind = 3;
            if (kind) break;
        }
        if (!kind) k = ps->len;
        const char *tp = ps->src + i;
        size_t tn = k - i;
        if (strip_next)
            while (tn && is_ws(*tp)) tp++, tn--;
        char sign = kind && k + 2 < ps->len ? ps->src[k + 2] : 0;
        if (kind && sign == '-') {
            while (tn && is_ws(tp[tn - 1])) tn--;
        } else if ((kind == 2 || kind == 3) && sign != '+') {
            /* lstrip_blocks: drop spaces between the line start and the tag */
            size_t l = tn;
            while (l && (tp[l - 1] == ' ' || tp[l - 1] == '\t' || tp[l - 1] == '\f' || tp[l - 1] == '\v' ||
                         tp[l - 1] == '\r'))
                l--;
            bool at_line = l ? tp[l - 1] == '\n' : (line_start && (size_t)(tp - ps->src) == i);
            if (at_line) tn = l;
        }
        if (!emit_text(ps, (size_t)(tp - ps->src), tp, tn)) return false;
        if (!kind) break;
        size_t j = k + 2 + (sign == '-' || sign == '+');
        bool strip_after = false, plus_after = false;
        if (kind == 3) {
            const char *e = NULL;
            for (size_t m = j; m + 1 < ps->len; m++)
                if (ps->src[m] == '#' && ps->src[m + 1] == '}') {
                    e = ps->src + m;
                    break;
                }
            if (!e) {
                int l, c;
                locate(ps, k, &l, &c);
                return perr_at(ps, l, c, "missing end of comment tag");
            }
            size_t m = (size_t)(e - ps->src);
            strip_after = m > j && ps->src[m - 1] == '-';
            plus_after = m > j && ps->src[m - 1] == '+';
            j = m + 2;
        } else if (kind == 2 && match_word_tag(ps, j, "raw", &strip_after)) {
            size_t body = match_word_tag(ps, j, "raw", &strip_after);
            /* find {% endraw %} */
            size_t m = body, end = 0, close = 0;
            bool strip_end_after = false;
            for (; m + 1 < ps->len; m++) {
                if (ps->src[m] != '{' || ps->src[m + 1] != '%') continue;
                size_t q = m + 2 + (m + 2 < ps->len && (ps->src[m + 2] == '-' || ps->src[m + 2] == '+'));
                close = match_word_tag(ps, q, "endraw", &strip_end_after);
                if (close) {
                    end = m;
                    break;
                }
            }
            if (!close) {
                int l, c;
                locate(ps, k, &l, &c);
                return perr_at(ps, l, c, "missing endraw for raw block");
            }
            const char *rp = ps->src + body;
            size_t rn = end - body;
            if (strip_after)
                while (rn && is_ws(*rp)) rp++, rn--;
            else if (rn && *rp == '\n')
                rp++, rn--;
            if (ps->src[end + 2] == '-')
                while (rn && is_ws(rp[rn - 1])) rn--;
            if (!emit_text(ps, (size_t)(rp - ps->src), rp, rn)) return false;
            j = close;
            strip_after = strip_end_after;
        } else {
            if (!push_tok(ps, kind == 1 ? T_VAR_BEGIN : T_BLOCK_BEGIN, k, j - k)) return false;
            if (!lex_tag(ps, &j, kind == 2, &strip_after, &plus_after)) return false;
        }
        strip_next = strip_after;
        line_start = false;
        if (!strip_after && !plus_after && kind != 1 && j < ps->len && ps->src[j] == '\n') {
            j++; /* trim_blocks */
            line_start = true;
        }
        i = j;
    }
    return push_tok(ps, T_EOF, ps->len, 0) != NULL;
}

/* ------------------------------------------------------------ parser */
static token *cur(parser *ps) { return &ps->toks[ps->pos]; }
static token *peek(parser *ps, size_t k) {
    size_t p = ps->pos + k;
    return &ps->toks[p < ps->ntok ? p : ps->ntok - 1];
}
static bool tok_is(const token *t, ttype ty, const char *s) {
    if (t->t != ty) return false;
    if (!s) return true;
    return t->n == strlen(s) && !memcmp(t->p, s, t->n);
}
static bool is_op(parser *ps, const char *s) { return tok_is(cur(ps), T_OP, s); }
static bool is_name(parser *ps, const char *s) { return tok_is(cur(ps), T_NAME, s); }

static const char *tok_desc(const token *t, char *buf, size_t n) {
    switch (t->t) {
    case T_EOF: return "end of template";
    case T_TEXT: return "template data";
    case T_VAR_END: return "end of print statement";
    case T_BLOCK_END: return "end of statement block";
    default: snprintf(buf, n, "'%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p); return buf;
    }
}

static bool expect_op(parser *ps, const char *s) {
    if (is_op(ps, s)) {
        ps->pos++;
        return true;
    }
    char b[64];
    return perr_at(ps, cur(ps)->line, cur(ps)->col, "expected '%s', got %s", s, tok_desc(cur(ps), b, sizeof b));
}

static tpl_node *mk(parser *ps, tpl_nkind k, const token *at) {
    tpl_node *n = tpl_alloc(ps->arena, sizeof *n);
    if (!n) {
        perr_at(ps, 0, 0, "out of memory");
        return NULL;
    }
    n->k = k;
    n->line = at->line;
    n->col = at->col;
    return n;
}

static const char *tok_name(parser *ps, const token *t) {
    char *s = tpl_alloc(ps->arena, t->n + 1);
    if (!s) {
        perr_at(ps, 0, 0, "out of memory");
        return NULL;
    }
    memcpy(s, t->p, t->n);
    return s;
}

/* growable node array in the arena */
typedef struct {
    tpl_node **v;
    size_t n, cap;
} nvec;
static bool nv_push(parser *ps, nvec *v, tpl_node *x) {
    if (v->n == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 4;
        tpl_node **nvv = tpl_alloc(ps->arena, cap * sizeof *nvv);
        if (!nvv) return perr_at(ps, 0, 0, "out of memory");
        if (v->n) memcpy(nvv, v->v, v->n * sizeof *nvv);
        v->v = nvv;
        v->cap = cap;
    }
    v->v[v->n++] = x;
    return true;
}

static tpl_node *parse_expr(parser *ps);
static tpl_node *parse_or(parser *ps);
static tpl_node *parse_unary(parser *ps, bool with_filter);

/* Call arguments after '(' : positional then keyword (name=value). */
static bool parse_call_args(parser *ps, tpl_node *call) {
    nvec pos = {0}, kwv = {0};
    const char **kwn = NULL;
    size_t kwcap = 0;
    while (!is_op(ps, ")")) {
        if (pos.n + kwv.n && !expect_op(ps, ",")) return false;
        if (is_op(ps, ")")) break;
        if (cur(ps)->t == T_NAME && tok_is(peek(ps, 1), T_OP, "=")) {
            const char *nm = tok_name(ps, cur(ps));
            ps->pos += 2;
            tpl_node *v = parse_expr(ps);
            if (!nm || !v) return false;
            if (kwv.n == kwcap) {
                size_t cap = kwcap ? kwcap * 2 : 4;
                const char **nk = tpl_alloc(ps->arena, cap * sizeof *nk);
                if (!nk) return perr_at(ps, 0, 0, "out of memory");
                if (kwv.n) memcpy(nk, kwn, kwv.n * sizeof *nk);
                kwn = nk;
                kwcap = cap;
            }
            kwn[kwv.n] = nm;
            if (!nv_push(ps, &kwv, v)) return false;
        } else {
            if (kwv.n) return perr_at(ps, cur(ps)->line, cur(ps)->col, "positional argument follows keyword argument");
            tpl_node *v = parse_expr(ps);
            if (!v || !nv_push(ps, &pos, v)) return false;
        }
    }
    ps->pos++;
    call->kids = pos.v;
    call->n = pos.n;
    call->kwnames = kwn;
    call->kwvals = kwv.v;
    call->nkw = kwv.n;
    return true;
}

static tpl_node *parse_primary(parser *ps) {
    token *t = cur(ps);
    char b[64];
    if (++ps->depth > TPL_MAX_NEST) {
        perr_at(ps, t->line, t->col, "expression nested deeper than %d levels", TPL_MAX_NEST);
        return NULL;
    }
    tpl_node *n = NULL;
    if (t->t == T_NAME) {
        ps->pos++;
        if (tok_is(t, T_NAME, "true") || tok_is(t, T_NAME, "True") || tok_is(t, T_NAME, "false") ||
            tok_is(t, T_NAME, "False")) {
            if ((n = mk(ps, N_CONST, t))) n->cval = tv_bool(t->p[0] == 't' || t->p[0] == 'T');
        } else if (tok_is(t, T_NAME, "none") || tok_is(t, T_NAME, "None")) {
            if ((n = mk(ps, N_CONST, t))) n->cval = tv_none();
        } else if ((n = mk(ps, N_NAME, t))) {
            n->name = tok_name(ps, t);
        }
    } else if (t->t == T_STRING) {
        ps->pos++;
        tv_str *s = t->s;
        while (cur(ps)->t == T_STRING) { /* adjacent literals concatenate */
            s = tv_str_cat(ps->arena, s, cur(ps)->s);
            ps->pos++;
            if (!s) {
                perr_at(ps, 0, 0, "out of memory");
                return NULL;
            }
        }
        if ((n = mk(ps, N_CONST, t))) n->cval = tv_strv(s);
    } else if (t->t == T_INT || t->t == T_FLOAT) {
        ps->pos++;
        if ((n = mk(ps, N_CONST, t))) n->cval = t->t == T_INT ? tv_int(t->i) : tv_float(t->f);
    } else if (tok_is(t, T_OP, "(")) {
        ps->pos++;
        if (is_op(ps, ")")) {
            ps->pos++;
            n = mk(ps, N_TUPLE, t);
        } else {
            tpl_node *e = parse_expr(ps);
            if (!e) return NULL;
            if (is_op(ps, ",")) {
                nvec v = {0};
                if (!nv_push(ps, &v, e)) return NULL;
                while (is_op(ps, ",")) {
                    ps->pos++;
                    if (is_op(ps, ")")) break;
                    tpl_node *x = parse_expr(ps);
                    if (!x || !nv_push(ps, &v, x)) return NULL;
                }
                if (!(n = mk(ps, N_TUPLE, t))) return NULL;
                n->kids = v.v;
                n->n = v.n;
            } else {
                n = e;
            }
            if (!expect_op(ps, ")")) return NULL;
        }
    } else if (tok_is(t, T_OP, "[")) {
        ps->pos++;
        nvec v = {0};
        while (!is_op(ps, "]")) {
            if (v.n && !expect_op(ps, ",")) return NULL;
            if (is_op(ps, "]")) break;
            tpl_node *x = parse_expr(ps);
            if (!x || !nv_push(ps, &v, x)) return NULL;
        }
        ps->pos++;
        if (!(n = mk(ps, N_LIST, t))) return NULL;
        n->kids = v.v;
        n->n = v.n;
    } else if (tok_is(t, T_OP, "{")) {
        ps->pos++;
        nvec v = {0};
        while (!is_op(ps, "}")) {
            if (v.n && !expect_op(ps, ",")) return NULL;
            if (is_op(ps, "}")) break;
            tpl_node *k = parse_expr(ps);
            if (!k || !expect_op(ps, ":")) return NULL;
            tpl_node *x = parse_expr(ps);
            if (!x || !nv_push(ps, &v, k) || !nv_push(ps, &v, x)) return NULL;
        }
        ps->pos++;
        if (!(n = mk(ps, N_DICT, t))) return NULL;
        n->kids = v.v;
        n->n = v.n;
    } else {
        perr_at(ps, t->line, t->col, "unexpected %s", tok_desc(t, b, sizeof b));
        return NULL;
    }
    ps->depth--;
    return n;
}

static tpl_node *parse_postfix(parser *ps, tpl_node *n) {
    while (n) {
        token *t = cur(ps);
        if (tok_is(t, T_OP, ".")) {
            ps->pos++;
            token *nm = cur(ps);
            if (nm->t == T_NAME) {
                ps->pos++;
                tpl_node *a = mk(ps, N_ATTR, t);
                if (!a) return NULL;
                a->a = n;
                a->name = tok_name(ps, nm);
                n = a;
            } else if (nm->t == T_INT) {
                ps->pos++;
                tpl_node *a = mk(ps, N_ITEM, t), *k = mk(ps, N_CONST, nm);
                if (!a || !k) return NULL;
                k->cval = tv_int(nm->i);
                a->a = n;
                a->b = k;
                n = a;
            } else {
                char b[64];
                perr_at(ps, nm->line, nm->col, "expected attribute name, got %s", tok_desc(nm, b, sizeof b));
                return NULL;
            }
        } else if (tok_is(t, T_OP, "[")) {
            ps->pos++;
            tpl_node *parts[3] = {NULL, NULL, NULL};
            int np = 0;
            bool slice = false;
            for (;;) {
                if (is_op(ps, ":")) {
                    slice = true;
                    ps->pos++;
                    if (++np > 2) {
                        perr_at(ps, t->line, t->col, "too many ':' in subscript");
                        return NULL;
                    }
                    continue;
                }
                if (is_op(ps, "]")) break;
                if (parts[np]) {
                    expect_op(ps, "]");
                    return NULL;
                }
                if (!(parts[np] = parse_expr(ps))) return NULL;
            }
            ps->pos++;
            tpl_node *a = mk(ps, slice ? N_SLICE : N_ITEM, t);
            if (!a) return NULL;
            a->a = n;
            if (slice) {
                a->b = parts[0];
                a->c = parts[1];
                a->d = parts[2];
            } else {
                if (!parts[0]) {
                    perr_at(ps, t->line, t->col, "empty subscript");
                    return NULL;
                }
                a->b = parts[0];
            }
            n = a;
        } else if (tok_is(t, T_OP, "(")) {
            ps->pos++;
            tpl_node *c = mk(ps, N_CALL, t);
            if (!c || !parse_call_args(ps, c)) return NULL;
            c->line = n->line; /* report calls at the callee's start */
            c->col = n->col;
            c->a = n;
            n = c;
        } else {
            break;
        }
    }
    return n;
}

/* `| name(args)` filters and `is [not] name args` tests. */
static tpl_node *parse_filters_tests(parser *ps, tpl_node *n) {
    while (n) {
        token *t = cur(ps);
        if (tok_is(t, T_OP, "|")) {
            ps->pos++;
            token *nm = cur(ps);
            if (nm->t != T_NAME) {
                perr_at(ps, nm->line, nm->col, "expected filter name after '|'");
                return NULL;
            }
            ps->pos++;
            tpl_node *f = mk(ps, N_FILTER, nm);
            if (!f) return NULL;
            f->name = tok_name(ps, nm);
            f->a = n;
            if (is_op(ps, "(")) {
                ps->pos++;
                if (!parse_call_args(ps, f)) return NULL;
            }
            n = f;
        } else if (tok_is(t, T_NAME, "is")) {
            ps->pos++;
            bool neg = false;
            if (is_name(ps, "not")) {
                neg = true;
                ps->pos++;
            }
            token *nm = cur(ps);
            if (nm->t != T_NAME && !tok_is(nm, T_OP, "==") && !tok_is(nm, T_OP, "!=") && !tok_is(nm, T_OP, "<") &&
                !tok_is(nm, T_OP, ">") && !tok_is(nm, T_OP, "<=") && !tok_is(nm, T_OP, ">=")) {
                perr_at(ps, nm->line, nm->col, "expected test name after 'is'");
                return NULL;
            }
            ps->pos++;
            tpl_node *f = mk(ps, N_TEST, nm);
            if (!f) return NULL;
            f->name = tok_name(ps, nm);
            f->a = n;
            f->negate = neg;
            if (is_op(ps, "(")) {
                ps->pos++;
                if (!parse_call_args(ps, f)) return NULL;
            } else {
                /* one bare argument, as Jinja allows: `is divisibleby 3` */
                token *x = cur(ps);
                bool arg = x->t == T_STRING || x->t == T_INT || x->t == T_FLOAT || tok_is(x, T_OP, "[") ||
                           tok_is(x, T_OP, "{") ||
                           (x->t == T_NAME && !tok_is(x, T_NAME, "else") && !tok_is(x, T_NAME, "or") &&
                            !tok_is(x, T_NAME, "and") && !tok_is(x, T_NAME, "if") && !tok_is(x, T_NAME, "in") &&
                            !tok_is(x, T_NAME, "is") && !tok_is(x, T_NAME, "not"));
                if (arg) {
                    tpl_node *v = parse_unary(ps, false);
                    if (!v) return NULL;
                    v = parse_postfix(ps, v);
                    if (!v) return NULL;
                    f->kids = tpl_alloc(ps->arena, sizeof(tpl_node *));
                    if (!f->kids) return NULL;
                    f->kids[0] = v;
                    f->n = 1;
                }
            }
            n = f;
        } else {
            break;
        }
    }
    return n;
}

static tpl_node *parse_unary(parser *ps, bool with_filter) {
    token *t = cur(ps);
    tpl_node *n;
    if (tok_is(t, T_OP, "-") || tok_is(t, T_OP, "+")) {
        ps->pos++;
        if (++ps->depth > TPL_MAX_NEST) {
            perr_at(ps, t->line, t->col, "expression nested deeper than %d levels", TPL_MAX_NEST);
            return NULL;
        }
        tpl_node *x = parse_unary(ps, false);
        ps->depth--;
        if (!x || !(n = mk(ps, t->p[0] == '-' ? N_NEG : N_POS, t))) return NULL;
        n->a = x;
    } else {
        n = parse_primary(ps);
    }
    n = parse_postfix(ps, n);
    if (with_filter) n = parse_filters_tests(ps, n);
    return n;
}

static tpl_node *binop(parser *ps, const token *t, int op, tpl_node *a, tpl_node *b) {
    if (!a || !b) return NULL;
    tpl_node *n = mk(ps, N_BIN, t);
    if (!n) return NULL;
    n->op = op;
    n->a = a;
    n->b = b;
    return n;
}

static tpl_node *parse_pow(parser *ps) {
    tpl_node *n = parse_unary(ps, true);
    while (n && is_op(ps, "**")) {
        token *t = cur(ps);
        ps->pos++;
        n = binop(ps, t, OP_POW, n, parse_unary(ps, true));
    }
    return n;
}

static tpl_node *parse_math2(parser *ps) {
    tpl_node *n = parse_pow(ps);
    while (n) {
        token *t = cur(ps);
        int op = tok_is(t, T_OP, "*") ? OP_MUL : tok_is(t, T_OP, "/") ? OP_DIV : tok_is(t, T_OP, "//") ? OP_FLOORDIV
                 : tok_is(t, T_OP, "%") ? OP_MOD : 0;
        if (!op) break;
        ps->pos++;
        n = binop(ps, t, op, n, parse_pow(ps));
    }
    return n;
}

static tpl_node *parse_concat(parser *ps) {
    tpl_node *n = parse_math2(ps);
    while (n && is_op(ps, "~")) {
        token *t = cur(ps);
        ps->pos++;
        n = binop(ps, t, OP_CONCAT, n, parse_math2(ps));
    }
    return n;
}

static tpl_node *parse_math1(parser *ps) {
    tpl_node *n = parse_concat(ps);
    while (n) {
        token *t = cur(ps);
        int op = tok_is(t, T_OP, "+") ? OP_ADD : tok_is(t, T_OP, "-") ? OP_SUB : 0;
        if (!op) break;
        ps->pos++;
        n = binop(ps, t, op, n, parse_concat(ps));
    }
    return n;
}

static tpl_node *parse_compare(parser *ps) {
    token *t0 = cur(ps);
    tpl_node *first = parse_math1(ps);
    if (!first) return NULL;
    nvec v = {0};
    int ops[64];
    size_t nops = 0;
    for (;;) {
        token *t = cur(ps);
        int op = tok_is(t, T_OP, "==") ? OP_EQ : tok_is(t, T_OP, "!=") ? OP_NE : tok_is(t, T_OP, "<") ? OP_LT
                 : tok_is(t, T_OP, "<=") ? OP_LE : tok_is(t, T_OP, ">") ? OP_GT : tok_is(t, T_OP, ">=") ? OP_GE
                 : tok_is(t, T_NAME, "in") ? OP_IN : 0;
        if (!op && tok_is(t, T_NAME, "not") && tok_is(peek(ps, 1), T_NAME, "in")) {
            op = OP_NOTIN;
            ps->pos++;
        }
        if (!op) break;
        ps->pos++;
        if (nops == 64) {
            perr_at(ps, t->line, t->col, "comparison chain too long");
            return NULL;
        }
        if (!v.n && !nv_push(ps, &v, first)) return NULL;
        tpl_node *x = parse_math1(ps);
        if (!x || !nv_push(ps, &v, x)) return NULL;
        ops[nops++] = op;
    }
    if (!nops) return first;
    tpl_node *n = mk(ps, N_CMP, t0);
    if (!n) return NULL;
    n->kids = v.v;
    n->n = v.n;
    n->cmpops = tpl_alloc(ps->arena, nops * sizeof(int));
    if (!n->cmpops) return NULL;
    memcpy(n->cmpops, ops, nops * sizeof(int));
    return n;
}

static tpl_node *parse_not(parser *ps) {
    token *t = cur(ps);
    if (tok_is(t, T_NAME, "not")) {
        ps->pos++;
        if (++ps->depth > TPL_MAX_NEST) {
            perr_at(ps, t->line, t->col, "expression nested deeper than %d levels", TPL_MAX_NEST);
            return NULL;
        }
        tpl_node *x = parse_not(ps);
        ps->depth--;
        tpl_node *n = x ? mk(ps, N_NOT, t) : NULL;
        if (n) n->a = x;
        return n;
    }
    return parse_compare(ps);
}

static tpl_node *parse_and(parser *ps) {
    tpl_node *n = parse_not(ps);
    while (n && is_name(ps, "and")) {
        token *t = cur(ps);
        ps->pos++;
        tpl_node *b = parse_not(ps);
        tpl_node *x = b ? mk(ps, N_AND, t) : NULL;
        if (!x) return NULL;
        x->a = n;
        x->b = b;
        n = x;
    }
    return n;
}

static tpl_node *parse_or(parser *ps) {
    tpl_node *n = parse_and(ps);
    while (n && is_name(ps, "or")) {
        token *t = cur(ps);
        ps->pos++;
        tpl_node *b = parse_and(ps);
        tpl_node *x = b ? mk(ps, N_OR, t) : NULL;
        if (!x) return NULL;
        x->a = n;
        x->b = b;
        n = x;
    }
    return n;
}

/* condexpr: or_expr ['if' or_expr ['else' expr]] */
static tpl_node *parse_expr_nocond(parser *ps) { return parse_or(ps); }
static tpl_node *parse_expr(parser *ps) {
    tpl_node *n = parse_or(ps);
    while (n && is_name(ps, "if")) {
        token *t = cur(ps);
        ps->pos++;
        tpl_node *cond = parse_or(ps);
        if (!cond) return NULL;
        tpl_node *els = NULL;
        if (is_name(ps, "else")) {
            ps->pos++;
            if (!(els = parse_expr(ps))) return NULL;
        }
        tpl_node *x = mk(ps, N_COND, t);
        if (!x) return NULL;
        x->a = cond;
        x->b = n;
        x->c = els;
        n = x;
    }
    return n;
}

/* Expression with optional bare tuple (`a, b`), used by set and for. */
static tpl_node *parse_tuple_expr(parser *ps, bool nocond) {
    token *t = cur(ps);
    tpl_node *e = nocond ? parse_expr_nocond(ps) : parse_expr(ps);
    if (!e || !is_op(ps, ",")) return e;
    nvec v = {0};
    if (!nv_push(ps, &v, e)) return NULL;
    while (is_op(ps, ",")) {
        ps->pos++;
        if (cur(ps)->t == T_BLOCK_END || cur(ps)->t == T_VAR_END) break;
        tpl_node *x = nocond ? parse_expr_nocond(ps) : parse_expr(ps);
        if (!x || !nv_push(ps, &v, x)) return NULL;
    }
    tpl_node *n = mk(ps, N_TUPLE, t);
    if (!n) return NULL;
    n->kids = v.v;
    n->n = v.n;
    return n;
}

/* ------------------------------------------------------------ statements */
static bool expect_block_end(parser *ps) {
    if (cur(ps)->t == T_BLOCK_END) {
        ps->pos++;
        return true;
    }
    char b[64];
    return perr_at(ps, cur(ps)->line, cur(ps)->col, "expected end of statement block, got %s",
                   tok_desc(cur(ps), b, sizeof b));
}

/* Parse statements until `{% <one of ends> ...`; leaves pos at the end name. */
static tpl_node *parse_body(parser *ps, const char *const *ends, const token *opener);

static bool parse_targets(parser *ps, tpl_node *n) {
    const char *names[16];
    size_t k = 0;
    bool paren = is_op(ps, "(");
    if (paren) ps->pos++;
    for (;;) {
        token *t = cur(ps);
        if (t->t != T_NAME) return perr_at(ps, t->line, t->col, "expected a variable name");
        if (k == 16) return perr_at(ps, t->line, t->col, "too many assignment targets");
        names[k++] = tok_name(ps, t);
        ps->pos++;
        if (!is_op(ps, ",")) break;
        ps->pos++;
    }
    if (paren && !expect_op(ps, ")")) return false;
    n->targets = tpl_alloc(ps->arena, k * sizeof(char *));
    if (!n->targets) return false;
    memcpy(n->targets, names, k * sizeof(char *));
    n->ntargets = k;
    return true;
}

/* Parameter list of a macro or call block, after its "(" up to and
 * including ")": names into n->targets, defaults (NULL when absent) into
 * n->kwvals. */
static bool parse_params(parser *ps, tpl_node *n) {
    enum { MAX_PARAMS = 64 };
    nvec dv = {0};
    const char *names[MAX_PARAMS];
    size_t k = 0;
    while (!is_op(ps, ")")) {
        if (k && !expect_op(ps, ",")) return false;
        token *pn = cur(ps);
        if (pn->t != T_NAME) return perr_at(ps, pn->line, pn->col, "expected parameter name");
        if (k == MAX_PARAMS)
            return perr_at(ps, pn->line, pn->col, "more than %d parameters", MAX_PARAMS);
        names[k++] = tok_name(ps, pn);
        ps->pos++;
        tpl_node *def = NULL;
        if (is_op(ps, "=")) {
            ps->pos++;
            if (!(def = parse_expr(ps))) return false;
        }
        if (!nv_push(ps, &dv, def)) return false;
    }
    ps->pos++;
    n->targets = tpl_alloc(ps->arena, (k ? k : 1) * sizeof(char *));
    if (!n->targets) return false;
    memcpy(n->targets, names, k * sizeof(char *));
    n->ntargets = k;
    n->kwvals = dv.v;
    return true;
}

static tpl_node *parse_stmt(parser *ps) {
    token *open = cur(ps); /* T_BLOCK_BEGIN */
    ps->pos++;
    token *t = cur(ps);
    if (t->t != T_NAME) {
        perr_at(ps, t->line, t->col, "expected a statement name after '{%%'");
        return NULL;
    }
    ps->pos++;
    tpl_node *n = NULL;
    if (tok_is(t, T_NAME, "if")) {
        n = mk(ps, N_IF, t);
        tpl_node *node = n;
        if (!n || !(n->a = parse_expr(ps)) || !expect_block_end(ps)) return NULL;
        for (;;) {
            static const char *const ends[] = {"elif", "else", "endif", NULL};
            if (!(node->b = parse_body(ps, ends, open))) return NULL;
            token *e = cur(ps);
            ps->pos++;
            if (tok_is(e, T_NAME, "elif")) {
                tpl_node *x = mk(ps, N_IF, e);
                if (!x || !(x->a = parse_expr(ps)) || !expect_block_end(ps)) return NULL;
                node->c = x;
                node = x;
            } else if (tok_is(e, T_NAME, "else")) {
                static const char *const ends2[] = {"endif", NULL};
                if (!expect_block_end(ps) || !(node->c = parse_body(ps, ends2, open))) return NULL;
                ps->pos++;
                break;
            } else {
                break;
            }
        }
    } else if (tok_is(t, T_NAME, "for")) {
        n = mk(ps, N_FOR, t);
        if (!n || !parse_targets(ps, n)) return NULL;
        if (!is_name(ps, "in")) {
            perr_at(ps, cur(ps)->line, cur(ps)->col, "expected 'in' in for loop");
            return NULL;
        }
        ps->pos++;
        if (!(n->a = parse_tuple_expr(ps, true))) return NULL;
        if (is_name(ps, "if")) {
            ps->pos++;
            if (!(n->d = parse_expr(ps))) return NULL;
        }
        if (is_name(ps, "recursive")) {
            perr_at(ps, cur(ps)->line, cur(ps)->col, "recursive for loops are not supported");
            return NULL;
        }
        if (!expect_block_end(ps)) return NULL;
        static const char *const ends[] = {"else", "endfor", NULL};
        if (!(n->b = parse_body(ps, ends, open))) return NULL;
        token *e = cur(ps);
        ps->pos++;
        if (tok_is(e, T_NAME, "else")) {
            static const char *const ends2[] = {"endfor", NULL};
            if (!expect_block_end(ps) || !(n->c = parse_body(ps, ends2, open))) return NULL;
            ps->pos++;
        }
    } else if (tok_is(t, T_NAME, "set")) {
        /* set x = e | set a, b = e | set ns.attr = e | set x %}...{% endset */
        token *tt = cur(ps);
        if (tt->t == T_NAME && tok_is(peek(ps, 1), T_OP, ".") && peek(ps, 2)->t == T_NAME) {
            n = mk(ps, N_SET, t);
            if (!n) return NULL;
            n->targets = tpl_alloc(ps->arena, sizeof(char *));
            if (!n->targets) return NULL;
            n->targets[0] = tok_name(ps, tt);
            n->ntargets = 1;
            n->name = tok_name(ps, peek(ps, 2));
            ps->pos += 3;
            if (!expect_op(ps, "=") || !(n->a = parse_tuple_expr(ps, false))) return NULL;
        } else {
            n = mk(ps, N_SET, t);
            if (!n || !parse_targets(ps, n)) return NULL;
            if (is_op(ps, "=")) {
                ps->pos++;
                if (!(n->a = parse_tuple_expr(ps, false))) return NULL;
            } else {
                if (n->ntargets != 1) {
                    perr_at(ps, t->line, t->col, "block set takes one target");
                    return NULL;
                }
                n->k = N_SETBLOCK;
                /* optional filters: {% set x | upper %} */
                tpl_node *holder = mk(ps, N_CONST, t);
                if (!holder) return NULL;
                holder->cval = tv_undef(NULL);
                tpl_node *f = parse_filters_tests(ps, holder);
                if (!f) return NULL;
                n->c = f == holder ? NULL : f;
                static const char *const ends[] = {"endset", NULL};
                if (!expect_block_end(ps) || !(n->b = parse_body(ps, ends, open))) return NULL;
                ps->pos++;
            }
        }
    } else if (tok_is(t, T_NAME, "macro") || tok_is(t, T_NAME, "call")) {
        bool is_call = t->p[0] == 'c';
        n = mk(ps, is_call ? N_CALLBLOCK : N_MACRO, t);
        if (!n) return NULL;
        if (is_call) {
            /* {% call [(params)] expr(args) %} */
            if (is_op(ps, "(")) {
                ps->pos++;
                if (!parse_params(ps, n)) return NULL;
            }
            tpl_node *call = parse_expr(ps);
            if (!call) return NULL;
            if (call->k != N_CALL) {
                perr_at(ps, t->line, t->col, "expected a call after 'call'");
                return NULL;
            }
            n->a = call;
            static const char *const ends[] = {"endcall", NULL};
            if (!expect_block_end(ps) || !(n->b = parse_body(ps, ends, open))) return NULL;
            ps->pos++;
        } else {
            token *nm = cur(ps);
            if (nm->t != T_NAME) {
                perr_at(ps, nm->line, nm->col, "expected macro name");
                return NULL;
            }
            n->name = tok_name(ps, nm);
            ps->pos++;
            if (!expect_op(ps, "(") || !parse_params(ps, n)) return NULL;
            static const char *const ends[] = {"endmacro", NULL};
            if (!expect_block_end(ps) || !(n->b = parse_body(ps, ends, open))) return NULL;
            ps->pos++;
        }
    } else if (tok_is(t, T_NAME, "filter")) {
        n = mk(ps, N_FILTERBLOCK, t);
        tpl_node *holder = n ? mk(ps, N_CONST, t) : NULL;
        if (!holder) return NULL;
        holder->cval = tv_undef(NULL);
        /* reuse the filter syntax by faking a leading '|' */
        token *nm = cur(ps);
        if (nm->t != T_NAME) {
            perr_at(ps, nm->line, nm->col, "expected filter name");
            return NULL;
        }
        tpl_node *f = mk(ps, N_FILTER, nm);
        if (!f) return NULL;
        f->name = tok_name(ps, nm);
        f->a = holder;
        ps->pos++;
        if (is_op(ps, "(")) {
            ps->pos++;
            if (!parse_call_args(ps, f)) return NULL;
        }
        f = parse_filters_tests(ps, f);
        if (!f) return NULL;
        n->c = f;
        static const char *const ends[] = {"endfilter", NULL};
        if (!expect_block_end(ps) || !(n->b = parse_body(ps, ends, open))) return NULL;
        ps->pos++;
    } else if (tok_is(t, T_NAME, "generation")) {
        /* transformers' assistant-mask marker: renders its body unchanged */
        static const char *const ends[] = {"endgeneration", NULL};
        if (!expect_block_end(ps) || !(n = parse_body(ps, ends, open))) return NULL;
        ps->pos++;
    } else if (tok_is(t, T_NAME, "break") || tok_is(t, T_NAME, "continue")) {
        n = mk(ps, t->p[0] == 'b' ? N_BREAK : N_CONTINUE, t);
    } else {
        perr_at(ps, t->line, t->col, "encountered unknown tag '%.*s'", (int)(t->n > 40 ? 40 : t->n), t->p);
        return NULL;
    }
    if (!n || !expect_block_end(ps)) return NULL;
    return n;
}

static tpl_node *parse_body(parser *ps, const char *const *ends, const token *opener) {
    nvec v = {0};
    token *start = cur(ps);
    if (++ps->depth > TPL_MAX_NEST) {
        perr_at(ps, start->line, start->col, "blocks nested deeper than %d levels", TPL_MAX_NEST);
        return NULL;
    }
    for (;;) {
        token *t = cur(ps);
        if (t->t == T_EOF) {
            if (ends) {
                char list[128] = "";
                for (int i = 0; ends[i]; i++)
                    snprintf(list + strlen(list), sizeof list - strlen(list), "%s'%s'", i ? " or " : "", ends[i]);
                perr_at(ps, opener->line, opener->col, "unexpected end of template: block opened here needs %s",
                        list);
                return NULL;
            }
            break;
        }
        if (t->t == T_TEXT) {
            tpl_node *x = mk(ps, N_TEXT, t);
            if (!x) return NULL;
            x->cval = tv_strv(t->s);
            ps->pos++;
            if (!nv_push(ps, &v, x)) return NULL;
        } else if (t->t == T_VAR_BEGIN) {
            ps->pos++;
            tpl_node *x = mk(ps, N_OUTPUT, t);
            if (!x || !(x->a = parse_tuple_expr(ps, false))) return NULL;
            if (cur(ps)->t != T_VAR_END) {
                char b[64];
                perr_at(ps, cur(ps)->line, cur(ps)->col, "expected end of print statement, got %s",
                        tok_desc(cur(ps), b, sizeof b));
                return NULL;
            }
            ps->pos++;
            if (!nv_push(ps, &v, x)) return NULL;
        } else if (t->t == T_BLOCK_BEGIN) {
            token *nm = peek(ps, 1);
            if (nm->t == T_NAME) {
                bool is_end = false;
                for (int i = 0; ends && ends[i]; i++)
                    if (tok_is(nm, T_NAME, ends[i])) is_end = true;
                if (is_end) {
                    ps->pos++; /* leave pos at the end name */
                    break;
                }
                static const char *const stray[] = {"endif", "endfor", "endset", "endmacro", "endcall",
                                                   "endfilter", "endgeneration", "elif", "else", "endraw", NULL};
                for (int i = 0; stray[i]; i++)
                    if (tok_is(nm, T_NAME, stray[i])) {
                        perr_at(ps, nm->line, nm->col, "unexpected '%s'%s", stray[i],
                                ends ? " (another block is still open)" : " without a matching opening tag");
                        return NULL;
                    }
            }
            tpl_node *x = parse_stmt(ps);
            if (!x || !nv_push(ps, &v, x)) return NULL;
        } else {
            char b[64];
            perr_at(ps, t->line, t->col, "unexpected %s", tok_desc(t, b, sizeof b));
            return NULL;
        }
    }
    ps->depth--;
    tpl_node *body = mk(ps, N_BODY, start);
    if (!body) return NULL;
    body->kids = v.v;
    body->n = v.n;
    return body;
}

lmc_status tpl_parse(const char *src, size_t len, tpl_program *prog) {
    memset(prog, 0, sizeof *prog);
    if (len > TPL_MAX_SOURCE)
        return lmc_err(LMC_ERR_LIMIT, "chat template: source is %zu bytes, limit is %u", len, TPL_MAX_SOURCE);
    if (memchr(src, '\0', len))
        return lmc_err(LMC_ERR_TEMPLATE, "chat template: source contains a NUL byte");
    /* newline normalisation (\r\n, \r -> \n) and keep_trailing_newline=False */
    char *norm = malloc(len + 1);
    if (!norm) return lmc_err(LMC_ERR_NOMEM, "chat template: out of memory");
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == '\r') {
            norm[n++] = '\n';
            if (i + 1 < len && src[i + 1] == '\n') i++;
        } else {
            norm[n++] = src[i];
        }
    }
    if (n && norm[n - 1] == '\n') n--;
    norm[n] = '\0';
    parser ps = {.src = norm, .len = n, .arena = &prog->arena, .lc_line = 1, .lc_col = 1};
    prog->arena.limit = TPL_MAX_ARENA;
    lmc_status st = LMC_OK;
    if (!lex(&ps) || !(prog->root = parse_body(&ps, NULL, NULL))) {
        st = ps.err ? LMC_ERR_TEMPLATE : lmc_err(LMC_ERR_NOMEM, "chat template: out of memory");
        tpl_arena_free(&prog->arena);
        prog->root = NULL;
    }
    free(ps.toks);
    free(norm);
    return st;
}
