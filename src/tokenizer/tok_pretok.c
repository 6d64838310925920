/* Pre-tokenizers of tokenizer.json ("pre_tokenizer" field): they cut each
 * normalized piece into the words the model tokenizes independently. */
#include "base/error.h"
#include "base/json.h"
#include "tok_internal.h"
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------- byte-level table */
static char bl_chr[256][3];
static unsigned char bl_len[256];
static int16_t bl_rev[512];
static pthread_once_t bl_once = PTHREAD_ONCE_INIT;

static void bl_init(void) {
    for (int i = 0; i < 512; i++) bl_rev[i] = -1;
    int extra = 0;
    for (int b = 0; b < 256; b++) {
        bool direct = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        uint32_t cp = direct ? (uint32_t)b : (uint32_t)(256 + extra++);
        bl_len[b] = (unsigned char)tk_utf8_enc(cp, bl_chr[b]);
        bl_rev[cp] = (int16_t)b;
    }
}

const char *tk_bytelevel_char(unsigned char b, size_t *len) {
    pthread_once(&bl_once, bl_init);
    *len = bl_len[b];
    return bl_chr[b];
}

int tk_bytelevel_byte(uint32_t cp) {
    pthread_once(&bl_once, bl_init);
    return cp < 512 ? bl_rev[cp] : -1;
}

/* ------------------------------------------------------------------ load */
static lmc_status load_behavior(json_object *o, const char *where, tk_behavior def,
                                tk_behavior *out) {
    const char *b = lmc_json_str(o, "behavior", NULL);
    *out = def;
    if (!b) return LMC_OK;
    static const char *names[] = {"Removed", "Isolated", "MergedWithPrevious", "MergedWithNext",
                                  "Contiguous"};
    for (int i = 0; i < 5; i++)
        if (!strcmp(b, names[i])) {
            *out = (tk_behavior)i;
            return LMC_OK;
        }
    return lmc_err(LMC_ERR_UNSUPPORTED, "%s.behavior: unknown split behavior \"%s\"", where, b);
}

static lmc_status load_repl(tk_pretok *p, json_object *o, const char *where) {
    const char *r = lmc_json_str(o, "replacement", NULL);
    if (!r) r = "\xE2\x96\x81";
    size_t n = strlen(r);
    uint32_t cp;
    if (!n || n > 4 || (size_t)tk_utf8_dec(r, n, &cp) != n)
        return lmc_err(LMC_ERR_FORMAT, "%s.replacement: must be one character", where);
    memcpy(p->repl, r, n);
    p->repl_len = n;
    const char *ps = lmc_json_str(o, "prepend_scheme", NULL);
    if (ps) {
        if (!strcmp(ps, "always")) p->prepend = TK_PREPEND_ALWAYS;
        else if (!strcmp(ps, "never")) p->prepend = TK_PREPEND_NEVER;
        else if (!strcmp(ps, "first")) p->prepend = TK_PREPEND_FIRST;
        else return lmc_err(LMC_ERR_UNSUPPORTED, "%s.prepend_scheme: unknown \"%s\"", where, ps);
    } else {
        bool aps = tk_json_flag(o, "add_prefix_space", true);
        p->prepend = aps ? TK_PREPEND_ALWAYS : TK_PREPEND_NEVER;
    }
    return LMC_OK;
}

static lmc_status load_item(void *p, json_object *o, const char *where) {
    return tk_pretok_load(p, o, where);
}

lmc_status tk_pretok_load(tk_pretok *p, json_object *o, const char *where) {
    memset(p, 0, sizeof *p);
    if (!json_object_is_type(o, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: expected an object", where);
    const char *t = lmc_json_str(o, "type", NULL);
    if (!t) return lmc_err(LMC_ERR_FORMAT, "%s.type: missing", where);
    if (!strcmp(t, "Sequence")) {
        p->type = TK_PRE_SEQ;
        void *subs = NULL;
        lmc_status st = tk_load_list(o, "pretokenizers", where, sizeof *p->subs, load_item, &subs,
                                     &p->n_subs);
        p->subs = subs;
        return st;
    }
    if (!strcmp(t, "Split")) {
        p->type = TK_PRE_SPLIT;
        lmc_status st = tk_pattern_load(&p->pat, lmc_json_get(o, "pattern"), where);
        if (st) return st;
        p->invert = tk_json_flag(o, "invert", false);
        return load_behavior(o, where, TK_BEH_ISOLATED, &p->behavior);
    }
    if (!strcmp(t, "ByteLevel")) {
        p->type = TK_PRE_BYTELEVEL;
        p->add_prefix_space = tk_json_flag(o, "add_prefix_space", true);
        p->use_regex = tk_json_flag(o, "use_regex", true);
        if (p->use_regex) {
            json_object *re = json_object_new_object();
            json_object_object_add(re, "Regex",
                                   json_object_new_string(
                                       "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+"
                                       "|\\s+(?!\\S)|\\s+"));
            lmc_status st = tk_pattern_load(&p->gpt2, re, where);
            json_object_put(re);
            if (st) return st;
        }
        return LMC_OK;
    }
    if (!strcmp(t, "Metaspace")) {
        p->type = TK_PRE_METASPACE;
        p->split = tk_json_flag(o, "split", true);
        return load_repl(p, o, where);
    }
    if (!strcmp(t, "Whitespace")) {
        p->type = TK_PRE_WHITESPACE;
        json_object *re = json_object_new_object();
        json_object_object_add(re, "Regex", json_object_new_string("\\w+|[^\\w\\s]+"));
        lmc_status st = tk_pattern_load(&p->pat, re, where);
        json_object_put(re);
        return st;
    }
    if (!strcmp(t, "WhitespaceSplit")) p->type = TK_PRE_WSSPLIT;
    else if (!strcmp(t, "BertPreTokenizer")) p->type = TK_PRE_BERT;
    else if (!strcmp(t, "Punctuation")) {
        p->type = TK_PRE_PUNCT;
        return load_behavior(o, where, TK_BEH_ISOLATED, &p->behavior);
    } else if (!strcmp(t, "Digits")) {
        p->type = TK_PRE_DIGITS;
        p->individual_digits = tk_json_flag(o, "individual_digits", false);
    } else if (!strcmp(t, "CharDelimiterSplit")) {
        p->type = TK_PRE_CHARDELIM;
        const char *d = lmc_json_str(o, "delimiter", NULL);
        if (!d || !*d) return lmc_err(LMC_ERR_FORMAT, "%s.delimiter: missing", where);
        tk_utf8_dec(d, strlen(d), &p->delim);
    } else {
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s.type: unsupported pre_tokenizer \"%s\"", where, t);
    }
    return LMC_OK;
}

void tk_pretok_free(tk_pretok *p) {
    for (size_t i = 0; i < p->n_subs; i++) tk_pretok_free(&p->subs[i]);
    free(p->subs);
    tk_pattern_free(&p->pat);
    tk_pattern_free(&p->gpt2);
    memset(p, 0, sizeof *p);
}

/* ------------------------------------------------------------- splitting */
typedef struct {
    size_t s, e;
    bool m;
} seg;
typedef struct {
    seg *v;
    size_t n, cap;
} segs;

static bool seg_push(segs *x, size_t s, size_t e, bool m) {
    if (x->n == x->cap) {
        size_t cap = x->cap ? x->cap * 2 : 32;
        seg *v = realloc(x->v, cap * sizeof *v);
        if (!v) return false;
        x->v = v;
        x->cap = cap;
    }
    x->v[x->n++] = (seg){s, e, m};
    return true;
}

/* Applies `behavior` to the match/non-match segments of one piece and
 * appends the resulting non-empty sub-pieces. */
static bool emit(const tk_piece *pc, segs *x, tk_behavior b, bool invert, tk_pieces *out) {
    if (invert)
        for (size_t i = 0; i < x->n; i++) x->v[i].m = !x->v[i].m;
    size_t k = 0; /* compact in place into x->v[0..k) with m meaning "kept" */
    bool prev_match = false;
    for (size_t i = 0; i < x->n; i++) {
        seg g = x->v[i];
        switch (b) {
        case TK_BEH_REMOVED:
            if (!g.m) x->v[k++] = g;
            break;
        case TK_BEH_ISOLATED: x->v[k++] = g; break;
        case TK_BEH_MERGED_PREV:
            if (g.m && !prev_match && k) x->v[k - 1].e = g.e;
            else x->v[k++] = g;
            break;
        case TK_BEH_CONTIGUOUS:
            if (k && x->v[k - 1].m == g.m) x->v[k - 1].e = g.e;
            else x->v[k++] = g;
            break;
        case TK_BEH_MERGED_NEXT: x->v[k++] = g; break;
        }
        prev_match = g.m;
    }
    if (b == TK_BEH_MERGED_NEXT) { /* walk backwards: a match joins the segment after it */
        seg *tmp = malloc((k ? k : 1) * sizeof *tmp);
        if (!tmp) return false;
        size_t outn = 0;
        prev_match = false;
        for (size_t i = k; i-- > 0;) {
            seg g = x->v[i];
            if (g.m && !prev_match && outn) tmp[outn - 1].s = g.s;
            else tmp[outn++] = g;
            prev_match = g.m;
        }
        for (size_t i = 0; i < outn; i++) x->v[i] = tmp[outn - 1 - i];
        free(tmp);
        k = outn;
    }
    for (size_t i = 0; i < k; i++) {
        if (x->v[i].e <= x->v[i].s) continue;
        tk_piece np = {pc->p + x->v[i].s, x->v[i].e - x->v[i].s, -1, pc->origin && x->v[i].s == 0};
        if (!tk_pieces_push(out, np)) return false;
    }
    return true;
}

static bool split_regex(const tk_pattern *pat, tk_ctx *c, const tk_piece *pc, segs *x) {
    size_t pos = 0, prev = 0, ms, me;
    int r = 0;
    while (pos <= pc->len &&
           (r = tk_pattern_find(pat, c->md, pc->p, pc->len, pos, &ms, &me, &c->err)) > 0) {
        if (ms > prev && !seg_push(x, prev, ms, false)) return false;
        if (!seg_push(x, ms, me, true)) return false;
        prev = me;
        if (me == ms) {
            if (me >= pc->len) break;
            uint32_t cp;
            pos = me + (size_t)tk_utf8_dec(pc->p + me, pc->len - me, &cp);
        } else {
            pos = me;
        }
    }
    if (r < 0) return false; /* c->err says why */
    if (prev < pc->len && !seg_push(x, prev, pc->len, false)) return false;
    return true;
}

typedef bool (*char_pred)(const tk_pretok *p, uint32_t cp);
static bool pred_ws(const tk_pretok *p, uint32_t cp) { return tk_is_ws(cp); }
static bool pred_punct(const tk_pretok *p, uint32_t cp) { return tk_is_punct(cp); }
static bool pred_digit(const tk_pretok *p, uint32_t cp) { return tk_is_numeric(cp); }
static bool pred_delim(const tk_pretok *p, uint32_t cp) { return cp == p->delim; }

static bool split_chars(const tk_pretok *p, char_pred f, const tk_piece *pc, segs *x) {
    size_t prev = 0;
    for (size_t i = 0; i < pc->len;) {
        uint32_t cp;
        size_t k = (size_t)tk_utf8_dec(pc->p + i, pc->len - i, &cp);
        if (f(p, cp)) {
            if (i > prev && !seg_push(x, prev, i, false)) return false;
            if (!seg_push(x, i, i + k, true)) return false;
            prev = i + k;
        }
        i += k;
    }
    if (prev < pc->len && !seg_push(x, prev, pc->len, false)) return false;
    return true;
}

/* Runs `fn` on every not-yet-final piece; final ones pass through. */
static lmc_status each_piece(const tk_pretok *p, tk_ctx *c, tk_pieces *pieces,
                             bool (*fn)(const tk_pretok *, tk_ctx *, const tk_piece *, segs *,
                                        tk_pieces *)) {
    tk_pieces out = {0};
    segs x = {0};
    for (size_t i = 0; i < pieces->n; i++) {
        const tk_piece *pc = &pieces->v[i];
        bool ok;
        if (pc->added_id >= 0) ok = tk_pieces_push(&out, *pc);
        else {
            x.n = 0;
            ok = fn(p, c, pc, &x, &out);
        }
        if (!ok) {
            free(out.v);
            free(x.v);
            lmc_status st = c->err; /* a regex that gave up, else memory */
            c->err = LMC_OK;
            return st ? st : lmc_err(LMC_ERR_NOMEM, "pre_tokenizer: out of memory");
        }
    }
    free(x.v);
    free(pieces->v);
    *pieces = out;
    return LMC_OK;
}

static bool do_split(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x, tk_pieces *out) {
    return split_regex(&p->pat, c, pc, x) && emit(pc, x, p->behavior, p->invert, out);
}
static bool do_whitespace(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x,
                          tk_pieces *out) {
    return split_regex(&p->pat, c, pc, x) && emit(pc, x, TK_BEH_REMOVED, true, out);
}
static bool do_wssplit(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x,
                       tk_pieces *out) {
    return split_chars(p, pred_ws, pc, x) && emit(pc, x, TK_BEH_REMOVED, false, out);
}
static bool do_punct(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x, tk_pieces *out) {
    return split_chars(p, pred_punct, pc, x) && emit(pc, x, p->behavior, false, out);
}
static bool do_bert_punct(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x,
                          tk_pieces *out) {
    return split_chars(p, pred_punct, pc, x) && emit(pc, x, TK_BEH_ISOLATED, false, out);
}
static bool do_digits(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x,
                      tk_pieces *out) {
    return split_chars(p, pred_digit, pc, x) &&
           emit(pc, x, p->individual_digits ? TK_BEH_ISOLATED : TK_BEH_CONTIGUOUS, false, out);
}
static bool do_delim(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x, tk_pieces *out) {
    return split_chars(p, pred_delim, pc, x) && emit(pc, x, TK_BEH_REMOVED, false, out);
}

static bool do_bytelevel(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x,
                         tk_pieces *out) {
    tk_piece src = *pc;
    if (p->add_prefix_space && (src.len == 0 || src.p[0] != ' ')) {
        char *n = tk_arena_alloc(&c->arena, src.len + 1);
        if (!n) return false;
        n[0] = ' ';
        memcpy(n + 1, src.p, src.len);
        src.p = n;
        src.len++;
    }
    size_t first = out->n;
    if (p->use_regex) {
        if (!split_regex(&p->gpt2, c, &src, x) || !emit(&src, x, TK_BEH_ISOLATED, false, out))
            return false;
    } else if (src.len && !tk_pieces_push(out, src)) {
        return false;
    }
    pthread_once(&bl_once, bl_init);
    for (size_t i = first; i < out->n; i++) {
        tk_piece *q = &out->v[i];
        char *m = tk_arena_alloc(&c->arena, q->len * 2 + 1), *w = m;
        if (!m) return false;
        for (size_t j = 0; j < q->len; j++) {
            unsigned char b = (unsigned char)q->p[j];
            if (bl_len[b] == 1) *w++ = (char)b;
            else {
                w[0] = bl_chr[b][0];
                w[1] = bl_chr[b][1];
                w += 2;
            }
        }
        q->p = m;
        q->len = (size_t)(w - m);
    }
    return true;
}

static bool do_metaspace(const tk_pretok *p, tk_ctx *c, const tk_piece *pc, segs *x,
                         tk_pieces *out) {
    size_t spaces = 0;
    for (size_t i = 0; i < pc->len; i++) spaces += pc->p[i] == ' ';
    char *m = tk_arena_alloc(&c->arena, pc->len + spaces * p->repl_len + p->repl_len + 1), *w = m;
    if (!m) return false;
    bool starts = pc->len >= p->repl_len ? !memcmp(pc->p, p->repl, p->repl_len) : false;
    if (pc->len && pc->p[0] == ' ') starts = true;
    bool pre = p->prepend == TK_PREPEND_ALWAYS || (p->prepend == TK_PREPEND_FIRST && pc->origin);
    if (pre && !starts && pc->len) {
        memcpy(w, p->repl, p->repl_len);
        w += p->repl_len;
    }
    for (size_t i = 0; i < pc->len; i++) {
        if (pc->p[i] == ' ') {
            memcpy(w, p->repl, p->repl_len);
            w += p->repl_len;
        } else {
            *w++ = pc->p[i];
        }
    }
    tk_piece np = {m, (size_t)(w - m), -1, pc->origin};
    if (!p->split) return np.len ? tk_pieces_push(out, np) : true;
    /* Split before every replacement char (MergedWithNext). */
    size_t prev = 0;
    for (size_t i = 0; i + p->repl_len <= np.len;) {
        if (!memcmp(np.p + i, p->repl, p->repl_len)) {
            if (i > prev && !seg_push(x, prev, i, false)) return false;
            if (!seg_push(x, i, i + p->repl_len, true)) return false;
            i += p->repl_len;
            prev = i;
        } else {
            i++;
        }
    }
    if (prev < np.len && !seg_push(x, prev, np.len, false)) return false;
    return emit(&np, x, TK_BEH_MERGED_NEXT, false, out);
}

lmc_status tk_pretokenize(const tk_pretok *p, tk_ctx *c, tk_pieces *pieces) {
    switch (p->type) {
    case TK_PRE_SEQ:
        for (size_t i = 0; i < p->n_subs; i++) {
            lmc_status st = tk_pretokenize(&p->subs[i], c, pieces);
            if (st) return st;
        }
        return LMC_OK;
    case TK_PRE_SPLIT: return each_piece(p, c, pieces, do_split);
    case TK_PRE_BYTELEVEL: return each_piece(p, c, pieces, do_bytelevel);
    case TK_PRE_METASPACE: return each_piece(p, c, pieces, do_metaspace);
    case TK_PRE_WHITESPACE: return each_piece(p, c, pieces, do_whitespace);
    case TK_PRE_WSSPLIT: return each_piece(p, c, pieces, do_wssplit);
    case TK_PRE_BERT: {
        lmc_status st = each_piece(p, c, pieces, do_wssplit);
        return st ? st : each_piece(p, c, pieces, do_bert_punct);
    }
    case TK_PRE_PUNCT: return each_piece(p, c, pieces, do_punct);
    case TK_PRE_DIGITS: return each_piece(p, c, pieces, do_digits);
    case TK_PRE_CHARDELIM: return each_piece(p, c, pieces, do_delim);
    }
    return LMC_OK;
}
