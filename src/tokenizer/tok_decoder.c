/* Decoders of tokenizer.json ("decoder" field): token strings -> text. Each
 * stage maps a list of strings to a new list; the result is their
 * concatenation. */
#include "base/error.h"
#include "base/json.h"
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>

static lmc_status load_item(void *d, json_object *o, const char *where) {
    return tk_decoder_load(d, o, where);
}

lmc_status tk_decoder_load(tk_decoder *d, json_object *o, const char *where) {
    memset(d, 0, sizeof *d);
    if (!json_object_is_type(o, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: expected an object", where);
    const char *t = lmc_json_str(o, "type", NULL);
    if (!t) return lmc_err(LMC_ERR_FORMAT, "%s.type: missing", where);
    if (!strcmp(t, "Sequence")) {
        d->type = TK_DEC_SEQ;
        void *subs = NULL;
        lmc_status st = tk_load_list(o, "decoders", where, sizeof *d->subs, load_item, &subs,
                                     &d->n_subs);
        d->subs = subs;
        return st;
    }
    if (!strcmp(t, "ByteLevel")) d->type = TK_DEC_BYTELEVEL;
    else if (!strcmp(t, "ByteFallback")) d->type = TK_DEC_BYTEFALLBACK;
    else if (!strcmp(t, "Fuse")) d->type = TK_DEC_FUSE;
    else if (!strcmp(t, "Metaspace")) {
        d->type = TK_DEC_METASPACE;
        const char *r = lmc_json_str(o, "replacement", NULL);
        if (!r) r = "\xE2\x96\x81";
        size_t n = strlen(r);
        if (!n || n > 4) return lmc_err(LMC_ERR_FORMAT, "%s.replacement: must be one character", where);
        memcpy(d->repl, r, n);
        d->repl_len = n;
        const char *ps = lmc_json_str(o, "prepend_scheme", NULL);
        if (ps) d->prepend_first = strcmp(ps, "never") != 0;
        else d->prepend_first = tk_json_flag(o, "add_prefix_space", true);
    } else if (!strcmp(t, "Strip")) {
        d->type = TK_DEC_STRIP;
        const char *c = lmc_json_str(o, "content", NULL);
        if (!c || !*c) return lmc_err(LMC_ERR_FORMAT, "%s.content: missing", where);
        if (!(d->str = strdup(c))) return lmc_err(LMC_ERR_NOMEM, "%s", where);
        json_object *v;
        if (json_object_object_get_ex(o, "start", &v)) d->start = (size_t)json_object_get_int64(v);
        if (json_object_object_get_ex(o, "stop", &v)) d->stop = (size_t)json_object_get_int64(v);
    } else if (!strcmp(t, "Replace")) {
        d->type = TK_DEC_REPLACE;
        lmc_status st = tk_pattern_load(&d->pat, lmc_json_get(o, "pattern"), where);
        if (st) return st;
        const char *c = lmc_json_str(o, "content", NULL);
        if (!c) return lmc_err(LMC_ERR_FORMAT, "%s.content: missing", where);
        if (!(d->str = strdup(c))) return lmc_err(LMC_ERR_NOMEM, "%s", where);
    } else if (!strcmp(t, "WordPiece")) {
        d->type = TK_DEC_WORDPIECE;
        const char *p = lmc_json_str(o, "prefix", NULL);
        if (!(d->str = strdup(p ? p : "##"))) return lmc_err(LMC_ERR_NOMEM, "%s", where);
        d->cleanup = tk_json_flag(o, "cleanup", true);
    } else if (!strcmp(t, "BPEDecoder")) {
        d->type = TK_DEC_BPE;
        const char *p = lmc_json_str(o, "suffix", NULL);
        if (!(d->str = strdup(p ? p : "</w>"))) return lmc_err(LMC_ERR_NOMEM, "%s", where);
    } else {
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s.type: unsupported decoder \"%s\"", where, t);
    }
    return LMC_OK;
}

void tk_decoder_free(tk_decoder *d) {
    for (size_t i = 0; i < d->n_subs; i++) tk_decoder_free(&d->subs[i]);
    free(d->subs);
    tk_pattern_free(&d->pat);
    free(d->str);
    memset(d, 0, sizeof *d);
}

/* A list of owned strings with lengths. */
typedef struct {
    char **s;
    size_t *len;
    size_t n, cap;
} strlist;

static void sl_free(strlist *l) {
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static bool sl_push(strlist *l, const char *s, size_t n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **ns = realloc(l->s, cap * sizeof *ns);
        if (!ns) return false;
        l->s = ns;
        size_t *nl = realloc(l->len, cap * sizeof *nl);
        if (!nl) return false;
        l->len = nl;
        l->cap = cap;
    }
    char *c = malloc(n + 1);
    if (!c) return false;
    if (n) memcpy(c, s, n);
    c[n] = 0;
    l->s[l->n] = c;
    l->len[l->n++] = n;
    return true;
}

static bool sl_push_buf(strlist *l, lmc_buf *b) {
    bool ok = sl_push(l, b->p ? b->p : "", b->len);
    b->len = 0;
    return ok;
}

/* Replace every occurrence of `pat` (literal) in s by `rep`. */
static bool replace_lit(lmc_buf *o, const char *s, size_t n, const char *pat, size_t pl,
                        const char *rep, size_t rl) {
    size_t i = 0;
    while (i < n) {
        const char *f = pl ? memmem(s + i, n - i, pat, pl) : NULL;
        if (!f) break;
        if (!lmc_buf_append(o, s + i, (size_t)(f - (s + i))) || !lmc_buf_append(o, rep, rl))
            return false;
        i = (size_t)(f - s) + pl;
    }
    return lmc_buf_append(o, s + i, n - i);
}

static bool wp_cleanup(lmc_buf *o, const char *s, size_t n) {
    static const char *pairs[][2] = {{" .", "."},       {" ?", "?"},     {" !", "!"},
                                     {" ,", ","},       {" ' ", "'"},    {" n't", "n't"},
                                     {" 'm", "'m"},     {" do not", " don't"},
                                     {" 's", "'s"},     {" 've", "'ve"}, {" 're", "'re"}};
    lmc_buf a = {0}, b = {0};
    if (!lmc_buf_append(&a, s, n)) return false;
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        b.len = 0;
        if (!replace_lit(&b, a.p ? a.p : "", a.len, pairs[k][0], strlen(pairs[k][0]), pairs[k][1],
                         strlen(pairs[k][1]))) {
            lmc_buf_free(&a), lmc_buf_free(&b);
            return false;
        }
        lmc_buf t = a;
        a = b;
        b = t;
    }
    bool ok = lmc_buf_append(o, a.p ? a.p : "", a.len);
    lmc_buf_free(&a), lmc_buf_free(&b);
    return ok;
}

static lmc_status chain(const tk_decoder *d, strlist *in, strlist *out, pcre2_match_data *md) {
    lmc_buf b = {0};
    bool ok = true;
    switch (d->type) {
    case TK_DEC_SEQ: {
        strlist cur = *in, nxt = {0};
        memset(in, 0, sizeof *in);
        for (size_t i = 0; i < d->n_subs; i++) {
            lmc_status st = chain(&d->subs[i], &cur, &nxt, md);
            sl_free(&cur);
            if (st) {
                sl_free(&nxt);
                return st;
            }
            cur = nxt;
            memset(&nxt, 0, sizeof nxt);
        }
        *out = cur;
        return LMC_OK;
    }
    case TK_DEC_BYTELEVEL: {
        lmc_buf raw = {0};
        for (size_t i = 0; i < in->n && ok; i++) {
            size_t mark = raw.len;
            bool all = true;
            for (size_t j = 0; j < in->len[i] && ok;) {
                uint32_t cp;
                int k = tk_utf8_dec(in->s[i] + j, in->len[i] - j, &cp);
                int byte = tk_bytelevel_byte(cp);
                if (byte < 0) {
                    all = false;
                    break;
                }
                ok = lmc_buf_putc(&raw, (char)byte);
                j += (size_t)k;
            }
            if (!all) {
                raw.len = mark;
                ok = lmc_buf_append(&raw, in->s[i], in->len[i]);
            }
        }
        ok = ok && tk_utf8_lossy(raw.p ? raw.p : "", raw.len, &b) && sl_push_buf(out, &b);
        lmc_buf_free(&raw);
        break;
    }
    case TK_DEC_METASPACE:
        for (size_t i = 0; i < in->n && ok; i++) {
            const char *s = in->s[i];
            size_t n = in->len[i];
            for (size_t j = 0; j < n && ok;) {
                if (j + d->repl_len <= n && !memcmp(s + j, d->repl, d->repl_len)) {
                    if (!(i == 0 && d->prepend_first)) ok = lmc_buf_putc(&b, ' ');
                    j += d->repl_len;
                } else {
                    ok = lmc_buf_putc(&b, s[j++]);
                }
            }
            ok = ok && sl_push_buf(out, &b);
        }
        break;
    case TK_DEC_BYTEFALLBACK: {
        lmc_buf bytes = {0};
        size_t nbytes = 0;
        for (size_t i = 0; i <= in->n && ok; i++) {
            int byte = -1;
            if (i < in->n && in->len[i] == 6 && !memcmp(in->s[i], "<0x", 3) && in->s[i][5] == '>') {
                char h[3] = {in->s[i][3], in->s[i][4], 0}, *end;
                bool hex = true;
                for (int k = 0; k < 2; k++)
                    hex &= (h[k] >= '0' && h[k] <= '9') || (h[k] >= 'a' && h[k] <= 'f') ||
                           (h[k] >= 'A' && h[k] <= 'F');
                if (hex) byte = (int)strtol(h, &end, 16);
            }
            if (byte >= 0) {
                ok = lmc_buf_putc(&bytes, (char)byte);
                nbytes++;
                continue;
            }
            if (nbytes) {
                if (tk_utf8_valid(bytes.p, bytes.len, NULL)) ok = sl_push(out, bytes.p, bytes.len);
                else
                    for (size_t k = 0; k < nbytes && ok; k++) ok = sl_push(out, "\xEF\xBF\xBD", 3);
                bytes.len = 0;
                nbytes = 0;
            }
            if (i < in->n && ok) ok = sl_push(out, in->s[i], in->len[i]);
        }
        lmc_buf_free(&bytes);
        break;
    }
    case TK_DEC_FUSE:
        for (size_t i = 0; i < in->n && ok; i++) ok = lmc_buf_append(&b, in->s[i], in->len[i]);
        ok = ok && sl_push_buf(out, &b);
        break;
    case TK_DEC_STRIP: {
        size_t cl = strlen(d->str);
        for (size_t i = 0; i < in->n && ok; i++) {
            const char *s = in->s[i];
            size_t a = 0, e = in->len[i];
            for (size_t k = 0; k < d->start && a + cl <= e && !memcmp(s + a, d->str, cl); k++) a += cl;
            for (size_t k = 0; k < d->stop && e >= a + cl && !memcmp(s + e - cl, d->str, cl); k++)
                e -= cl;
            ok = sl_push(out, s + a, e - a);
        }
        break;
    }
    case TK_DEC_REPLACE:
        for (size_t i = 0; i < in->n && ok; i++) {
            const char *s = in->s[i];
            size_t n = in->len[i], pos = 0, ms, me;
            int r = 0;
            lmc_status rst = LMC_OK;
            while (ok && pos < n && (r = tk_pattern_find(&d->pat, md, s, n, pos, &ms, &me, &rst)) > 0 &&
                   me > ms) {
                ok = lmc_buf_append(&b, s + pos, ms - pos) && lmc_buf_puts(&b, d->str);
                pos = me;
            }
            if (r < 0) {
                lmc_buf_free(&b);
                return rst;
            }
            ok = ok && lmc_buf_append(&b, s + pos, n - pos) && sl_push_buf(out, &b);
        }
        break;
    case TK_DEC_WORDPIECE: {
        size_t pl = strlen(d->str);
        for (size_t i = 0; i < in->n && ok; i++) {
            lmc_buf t = {0};
            const char *s = in->s[i];
            size_t n = in->len[i];
            if (i != 0) {
                if (n >= pl && !memcmp(s, d->str, pl)) s += pl, n -= pl;
                else ok = lmc_buf_putc(&t, ' ');
            }
            ok = ok && lmc_buf_append(&t, s, n);
            if (ok && d->cleanup) ok = wp_cleanup(&b, t.p ? t.p : "", t.len);
            else if (ok) ok = lmc_buf_append(&b, t.p ? t.p : "", t.len);
            lmc_buf_free(&t);
            ok = ok && sl_push_buf(out, &b);
        }
        break;
    }
    case TK_DEC_BPE: {
        size_t sl = strlen(d->str);
        for (size_t i = 0; i < in->n && ok; i++) {
            const char *rep = i + 1 == in->n ? "" : " ";
            ok = replace_lit(&b, in->s[i], in->len[i], d->str, sl, rep, strlen(rep)) &&
                 sl_push_buf(out, &b);
        }
        break;
    }
    case TK_DEC_CTC:
        for (size_t i = 0; i < in->n && ok; i++) ok = sl_push(out, in->s[i], in->len[i]);
        break;
    }
    lmc_buf_free(&b);
    return ok ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "tokenizer decoder: out of memory");
}

lmc_status tk_decode_tokens(const tk_decoder *d, const char **toks, const size_t *lens, size_t n,
                            lmc_buf *out) {
    strlist in = {0}, res = {0};
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < n; i++)
        if (!sl_push(&in, toks[i], lens[i])) {
            sl_free(&in);
            return lmc_err(LMC_ERR_NOMEM, "tokenizer decoder: out of memory");
        }
    pcre2_match_data *md = NULL;
    if (d) {
        md = pcre2_match_data_create(4, NULL);
        if (!md) {
            sl_free(&in);
            return lmc_err(LMC_ERR_NOMEM, "tokenizer decoder: out of memory");
        }
        st = chain(d, &in, &res, md);
        pcre2_match_data_free(md);
    } else { /* no decoder: tokens joined by spaces */
        for (size_t i = 0; i < in.n && !st; i++)
            if ((i && !lmc_buf_putc(out, ' ')) || !lmc_buf_append(out, in.s[i], in.len[i]))
                st = lmc_err(LMC_ERR_NOMEM, "tokenizer decoder: out of memory");
        sl_free(&in);
        return st;
    }
    for (size_t i = 0; i < res.n && !st; i++)
        if (!lmc_buf_append(out, res.s[i], res.len[i]))
            st = lmc_err(LMC_ERR_NOMEM, "tokenizer decoder: out of memory");
    sl_free(&in);
    sl_free(&res);
    return st;
}
