/* Normalizers of tokenizer.json ("normalizer" field). */
#include "base/error.h"
#include "base/json.h"
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

static lmc_status load_item(void *n, json_object *o, const char *where) {
    return tk_normalizer_load(n, o, where);
}

lmc_status tk_normalizer_load(tk_normalizer *n, json_object *o, const char *where) {
    memset(n, 0, sizeof *n);
    if (!json_object_is_type(o, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: expected an object", where);
    const char *t = lmc_json_str(o, "type", NULL);
    if (!t) return lmc_err(LMC_ERR_FORMAT, "%s.type: missing", where);
    if (!strcmp(t, "Sequence")) {
        n->type = TK_NORM_SEQ;
        void *subs = NULL;
        lmc_status st = tk_load_list(o, "normalizers", where, sizeof *n->subs, load_item, &subs,
                                     &n->n_subs);
        n->subs = subs;
        return st;
    } else if (!strcmp(t, "NFC")) n->type = TK_NORM_NFC;
    else if (!strcmp(t, "NFD")) n->type = TK_NORM_NFD;
    else if (!strcmp(t, "NFKC")) n->type = TK_NORM_NFKC;
    else if (!strcmp(t, "NFKD")) n->type = TK_NORM_NFKD;
    else if (!strcmp(t, "Lowercase")) n->type = TK_NORM_LOWER;
    else if (!strcmp(t, "StripAccents")) n->type = TK_NORM_STRIP_ACCENTS;
    else if (!strcmp(t, "Nmt")) n->type = TK_NORM_NMT;
    else if (!strcmp(t, "Strip")) {
        n->type = TK_NORM_STRIP;
        n->left = tk_json_flag(o, "strip_left", true);
        n->right = tk_json_flag(o, "strip_right", true);
    } else if (!strcmp(t, "Replace")) {
        n->type = TK_NORM_REPLACE;
        lmc_status st = tk_pattern_load(&n->pat, lmc_json_get(o, "pattern"), where);
        if (st) return st;
        const char *c = lmc_json_str(o, "content", NULL);
        if (!c) return lmc_err(LMC_ERR_FORMAT, "%s.content: missing", where);
        if (!(n->str = strdup(c))) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    } else if (!strcmp(t, "Prepend")) {
        n->type = TK_NORM_PREPEND;
        const char *c = lmc_json_str(o, "prepend", NULL);
        if (!c) return lmc_err(LMC_ERR_FORMAT, "%s.prepend: missing", where);
        if (!(n->str = strdup(c))) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", where);
    } else if (!strcmp(t, "BertNormalizer")) {
        n->type = TK_NORM_BERT;
        n->clean_text = tk_json_flag(o, "clean_text", true);
        n->chinese = tk_json_flag(o, "handle_chinese_chars", true);
        n->lower = tk_json_flag(o, "lowercase", true);
        n->accents = tk_json_flag(o, "strip_accents", n->lower);
    } else {
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s.type: unsupported normalizer \"%s\"", where, t);
    }
    return LMC_OK;
}

void tk_normalizer_free(tk_normalizer *n) {
    for (size_t i = 0; i < n->n_subs; i++) tk_normalizer_free(&n->subs[i]);
    free(n->subs);
    tk_pattern_free(&n->pat);
    free(n->str);
    memset(n, 0, sizeof *n);
}

static bool is_ascii(const char *s, size_t len) {
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] >= 0x80) return false;
    return true;
}

/* Code points that are unchanged by NFC and never combine with a
 * neighbour (NFC_QC=Yes, canonical combining class 0): a string made only of
 * these is already in NFC. */
static bool nfc_inert(uint32_t c) {
    return c < 0x300 || (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3040 && c <= 0x3098) ||
           (c >= 0x309B && c <= 0x30FF) || (c >= 0xAC00 && c <= 0xD7A3) ||
           (c >= 0x1F300 && c <= 0x1FAFF) || (c >= 0x2010 && c <= 0x2027);
}

static bool already_nfc(const char *s, size_t len) {
    for (size_t i = 0; i < len;) {
        if ((unsigned char)s[i] < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        i += (size_t)tk_utf8_dec(s + i, len - i, &cp);
        if (!nfc_inert(cp)) return false;
    }
    return true;
}

static lmc_status unicode_form(const char *s, size_t len, int opts, lmc_buf *out) {
    if (is_ascii(s, len) || (opts == UTF8PROC_COMPOSE && already_nfc(s, len)))
        return lmc_buf_append(out, s, len) ? LMC_OK : LMC_ERR_NOMEM;
    utf8proc_uint8_t *r = NULL;
    utf8proc_ssize_t n = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)len, &r,
                                      UTF8PROC_STABLE | opts);
    if (n < 0) return lmc_err(LMC_ERR_INVALID_ARG, "normalizer: %s", utf8proc_errmsg(n));
    bool ok = lmc_buf_append(out, r, (size_t)n);
    free(r);
    return ok ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "normalizer: out of memory");
}

static bool put_cp(lmc_buf *b, uint32_t cp) {
    char u[4];
    return lmc_buf_append(b, u, (size_t)tk_utf8_enc(cp, u));
}

static bool put_lower(lmc_buf *b, uint32_t cp) {
    if (cp < 128) return lmc_buf_putc(b, (char)(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp));
    if (cp == 0x130) return lmc_buf_append(b, "i\xCC\x87", 3); /* full lowercase mapping */
    return put_cp(b, (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp));
}

static bool is_chinese(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) ||
           (c >= 0x20000 && c <= 0x2A6DF) || (c >= 0x2A700 && c <= 0x2B73F) ||
           (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B920 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

static bool is_control(uint32_t c) {
    if (c == '\t' || c == '\n' || c == '\r') return false;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)c);
    /* Cc, Cf, Co, Cs; unassigned code points (Cn) are kept, as the
     * reference implementation does. */
    return k == UTF8PROC_CATEGORY_CC || k == UTF8PROC_CATEGORY_CF || k == UTF8PROC_CATEGORY_CO ||
           k == UTF8PROC_CATEGORY_CS;
}

static lmc_status strip_marks(const char *s, size_t len, lmc_buf *out) {
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = tk_utf8_dec(s + i, len - i, &cp);
        if (cp < 0x300 || utf8proc_category((utf8proc_int32_t)cp) != UTF8PROC_CATEGORY_MN)
            if (!lmc_buf_append(out, s + i, (size_t)k)) return LMC_ERR_NOMEM;
        i += (size_t)k;
    }
    return LMC_OK;
}

static lmc_status bert(const tk_normalizer *n, const char *s, size_t len, lmc_buf *out,
                       lmc_buf *tmp) {
    if (is_ascii(s, len)) { /* fast path: no CJK, no accents, simple case */
        if (!lmc_buf_reserve(out, len)) return LMC_ERR_NOMEM;
        for (size_t i = 0; i < len; i++) {
            char ch = s[i];
            if (n->clean_text) {
                if (ch == '\t' || ch == '\n' || ch == '\r') ch = ' ';
                else if ((unsigned char)ch < 32 || ch == 127) continue;
            }
            if (n->lower && ch >= 'A' && ch <= 'Z') ch = (char)(ch + 32);
            out->p[out->len++] = ch;
        }
        out->p[out->len] = 0;
        return LMC_OK;
    }
    lmc_buf a = {0};
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        int k = tk_utf8_dec(s + i, len - i, &cp);
        i += (size_t)k;
        if (n->clean_text) {
            if (cp == 0 || cp == 0xFFFD || is_control(cp)) continue;
            if (tk_is_ws(cp)) cp = ' ';
        }
        bool ok = true;
        if (n->chinese && is_chinese(cp))
            ok = lmc_buf_putc(&a, ' ') && put_cp(&a, cp) && lmc_buf_putc(&a, ' ');
        else
            ok = put_cp(&a, cp);
        if (!ok) {
            lmc_buf_free(&a);
            return LMC_ERR_NOMEM;
        }
    }
    lmc_status st = LMC_OK;
    if (n->accents) {
        tmp->len = 0;
        st = unicode_form(a.p ? a.p : "", a.len, UTF8PROC_DECOMPOSE, tmp);
        a.len = 0;
        if (!st) st = strip_marks(tmp->p ? tmp->p : "", tmp->len, &a);
    }
    if (!st && n->lower) {
        for (size_t i = 0; i < a.len && !st;) {
            uint32_t cp;
            int k = tk_utf8_dec(a.p + i, a.len - i, &cp);
            if (!put_lower(out, cp)) st = LMC_ERR_NOMEM;
            i += (size_t)k;
        }
    } else if (!st && !lmc_buf_append(out, a.p ? a.p : "", a.len)) {
        st = LMC_ERR_NOMEM;
    }
    lmc_buf_free(&a);
    return st;
}

static lmc_status normalize1(const tk_normalizer *n, tk_ctx *c, const char *s, size_t len,
                             lmc_buf *out) {
    switch (n->type) {
    case TK_NORM_SEQ: {
        /* Ping-pong between out and a local buffer. */
        lmc_buf a = {0};
        if (!lmc_buf_append(&a, s, len)) return LMC_ERR_NOMEM;
        for (size_t i = 0; i < n->n_subs; i++) {
            out->len = 0;
            lmc_status st = normalize1(&n->subs[i], c, a.p ? a.p : "", a.len, out);
            if (st) {
                lmc_buf_free(&a);
                return st;
            }
            lmc_buf t = a;
            a = *out;
            *out = t;
        }
        out->len = 0;
        bool ok = lmc_buf_append(out, a.p ? a.p : "", a.len);
        lmc_buf_free(&a);
        return ok ? LMC_OK : LMC_ERR_NOMEM;
    }
    case TK_NORM_NFC: return unicode_form(s, len, UTF8PROC_COMPOSE, out);
    case TK_NORM_NFD: return unicode_form(s, len, UTF8PROC_DECOMPOSE, out);
    case TK_NORM_NFKC: return unicode_form(s, len, UTF8PROC_COMPOSE | UTF8PROC_COMPAT, out);
    case TK_NORM_NFKD: return unicode_form(s, len, UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT, out);
    case TK_NORM_LOWER:
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            int k = tk_utf8_dec(s + i, len - i, &cp);
            if (!put_lower(out, cp)) return LMC_ERR_NOMEM;
            i += (size_t)k;
        }
        return LMC_OK;
    case TK_NORM_STRIP_ACCENTS: return strip_marks(s, len, out);
    case TK_NORM_STRIP: {
        size_t a = 0, b = len;
        if (n->left)
            while (a < b) {
                uint32_t cp;
                int k = tk_utf8_dec(s + a, b - a, &cp);
                if (!tk_is_ws(cp)) break;
                a += (size_t)k;
            }
        if (n->right)
            while (b > a) {
                size_t p = b - 1;
                while (p > a && ((unsigned char)s[p] & 0xC0) == 0x80) p--;
                uint32_t cp;
                tk_utf8_dec(s + p, b - p, &cp);
                if (!tk_is_ws(cp)) break;
                b = p;
            }
        return lmc_buf_append(out, s + a, b - a) ? LMC_OK : LMC_ERR_NOMEM;
    }
    case TK_NORM_REPLACE: {
        size_t pos = 0, ms, me;
        int r = 0;
        lmc_status st = LMC_OK;
        while (pos <= len && (r = tk_pattern_find(&n->pat, c->md, s, len, pos, &ms, &me, &st)) > 0) {
            if (!lmc_buf_append(out, s + pos, ms - pos) || !lmc_buf_puts(out, n->str))
                return LMC_ERR_NOMEM;
            if (me == ms) { /* empty match: keep one char and move on */
                if (ms >= len) {
                    pos = len;
                    break;
                }
                uint32_t cp;
                int k = tk_utf8_dec(s + ms, len - ms, &cp);
                if (!lmc_buf_append(out, s + ms, (size_t)k)) return LMC_ERR_NOMEM;
                me = ms + (size_t)k;
            }
            pos = me;
        }
        if (r < 0) return st;
        return lmc_buf_append(out, s + pos, len - pos) ? LMC_OK : LMC_ERR_NOMEM;
    }
    case TK_NORM_PREPEND:
        if (len && !lmc_buf_puts(out, n->str)) return LMC_ERR_NOMEM;
        return lmc_buf_append(out, s, len) ? LMC_OK : LMC_ERR_NOMEM;
    case TK_NORM_BERT: return bert(n, s, len, out, &c->tmp2);
    case TK_NORM_NMT:
        for (size_t i = 0; i < len;) {
            uint32_t cp;
            int k = tk_utf8_dec(s + i, len - i, &cp);
            i += (size_t)k;
            if ((cp >= 1 && cp <= 8) || cp == 0xB || (cp >= 0xE && cp <= 0x1F) || cp == 0x7F ||
                cp == 0x8F || cp == 0x9F)
                continue;
            if (cp == 9 || cp == 10 || cp == 0xC || cp == 0xD || cp == 0x1680 ||
                (cp >= 0x200B && cp <= 0x200F) || cp == 0x2028 || cp == 0x2029 ||
                cp == 0x2581 || cp == 0xFEFF || cp == 0xFFFD)
                cp = ' ';
            if (!put_cp(out, cp)) return LMC_ERR_NOMEM;
        }
        return LMC_OK;
    }
    return LMC_OK;
}

lmc_status tk_normalize(const tk_normalizer *n, tk_ctx *c, const char *s, size_t len,
                        lmc_buf *out) {
    out->len = 0;
    lmc_status st = normalize1(n, c, s, len, out);
    if (st == LMC_ERR_NOMEM) return lmc_err(st, "tokenizer normalizer: out of memory");
    if (!st && !out->p && !lmc_buf_reserve(out, 1))
        return lmc_err(LMC_ERR_NOMEM, "tokenizer normalizer: out of memory");
    return st;
}
