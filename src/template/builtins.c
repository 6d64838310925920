/* Filters, tests, methods of str/dict/list, and the globals transformers
 * exposes to chat templates (raise_exception, strftime_now), all with the
 * Python/Jinja2 results templates rely on. Mutating methods are refused as
 * Jinja2's immutable sandbox does. */
#include "base/error.h"
#include "template/tpl.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>

#define AR (&c->arena)

static tval mk_list(tv_list *l) { return (tval){.k = TV_LIST, .l = l}; }
static tval mk_dict(tv_dict *d) { return (tval){.k = TV_DICT, .d = d}; }

/* Positional `idx` or keyword `name`; NULL when absent. */
static const tval *arg(const tpl_args *a, size_t idx, const char *name) {
    if (idx < a->n) return &a->v[idx];
    for (size_t i = 0; i < a->nkw; i++)
        if (name && !strcmp(a->kwname[i]->p, name)) return &a->kw[i];
    return NULL;
}

static bool undef_err(tpl_ctx *c, tval v) {
    return tpl_fail(c, LMC_ERR_TEMPLATE, "%s", v.s ? v.s->p : "value is undefined");
}

static bool ret_buf(tpl_ctx *c, lmc_buf *b, tval *out) {
    tv_str *s = tv_str_new(AR, b->p ? b->p : "", b->len);
    lmc_buf_free(b);
    if (!s) return tpl_oom(c);
    *out = tv_strv(s);
    return true;
}

static bool need_str(tpl_ctx *c, tval v, const char *what) {
    if (v.k == TV_STR) return true;
    if (v.k == TV_UNDEF) return undef_err(c, v);
    return tpl_fail(c, LMC_ERR_TEMPLATE, "%s expects a string, got '%s'", what, tv_type_name(v));
}

/* ------------------------------------------------------------ string helpers */
static bool in_chars(uint32_t cp, const tv_str *chars) {
    for (size_t i = 0; i < chars->len;) {
        uint32_t x;
        i = tpl_utf8_next(chars->p, chars->len, i, &x);
        if (x == cp) return true;
    }
    return false;
}

static bool strip_impl(tpl_ctx *c, const tv_str *s, const tv_str *chars, bool left, bool right, tval *out) {
    size_t b = 0, e = s->len;
    if (left) {
        while (b < e) {
            uint32_t cp;
            size_t nx = tpl_utf8_next(s->p, s->len, b, &cp);
            if (chars ? !in_chars(cp, chars) : !tpl_is_py_space(cp)) break;
            b = nx;
        }
    }
    if (right) {
        while (e > b) {
            size_t st = e - 1;
            while (st > b && ((unsigned char)s->p[st] & 0xc0) == 0x80) st--;
            uint32_t cp;
            tpl_utf8_next(s->p, s->len, st, &cp);
            if (chars ? !in_chars(cp, chars) : !tpl_is_py_space(cp)) break;
            e = st;
        }
    }
    tv_str *r = tv_str_new(AR, s->p + b, e - b);
    if (!r) return tpl_oom(c);
    *out = tv_strv(r);
    return true;
}

static void put_cp(char *o, size_t *n, uint32_t cp) {
    utf8proc_uint8_t tmp[4];
    utf8proc_ssize_t k = utf8proc_encode_char((utf8proc_int32_t)cp, tmp);
    memcpy(o + *n, tmp, (size_t)k);
    *n += (size_t)k;
}

static uint32_t cp_up(uint32_t cp) { return (uint32_t)utf8proc_toupper((utf8proc_int32_t)cp); }
static uint32_t cp_lo(uint32_t cp) { return (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp); }
static bool cp_cased(uint32_t cp) {
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT;
}

/* mode 0 upper, 1 lower, 2 capitalize, 3 Python str.title, 4 Jinja's title
 * filter (words start after - space ( { [ <). Simple Unicode case mapping. */
static bool case_map(tpl_ctx *c, const tv_str *s, int mode, tval *out) {
    char *o = tpl_alloc(AR, s->len * 2 + 8);
    if (!o) return tpl_oom(c);
    size_t n = 0, idx = 0;
    bool prev_cased = false, word_start = true;
    for (size_t i = 0; i < s->len; idx++) {
        uint32_t cp;
        size_t nx = tpl_utf8_next(s->p, s->len, i, &cp);
        if (nx - i == 1 && cp >= 0x80) { /* invalid byte: keep as is */
            o[n++] = s->p[i];
            i = nx;
            continue;
        }
        uint32_t r = cp;
        switch (mode) {
        case 0: r = cp_up(cp); break;
        case 1: r = cp_lo(cp); break;
        case 2: r = idx == 0 ? cp_up(cp) : cp_lo(cp); break;
        case 3:
            r = prev_cased ? cp_lo(cp) : cp_up(cp);
            prev_cased = cp_cased(cp);
            break;
        case 4: {
            bool sep = cp == '-' || tpl_is_py_space(cp) || cp == '(' || cp == '{' || cp == '[' || cp == '<';
            if (sep) {
                word_start = true;
            } else {
                r = word_start ? cp_up(cp) : cp_lo(cp);
                word_start = false;
            }
            break;
        }
        }
        /* growth guard: mapped code points may encode longer */
        put_cp(o, &n, r);
        i = nx;
    }
    tv_str *rs = tv_str_new(AR, o, n);
    if (!rs) return tpl_oom(c);
    *out = tv_strv(rs);
    return true;
}

static bool replace_impl(tpl_ctx *c, const tv_str *s, const tv_str *old, const tv_str *new_, int64_t count,
                         tval *out) {
    lmc_buf b = {0};
    bool ok = true;
    int64_t done = 0;
    if (old->len == 0) {
        /* Python inserts `new` between every character */
        size_t i = 0;
        while (ok && (count < 0 || done < count)) {
            ok = lmc_buf_append(&b, new_->p, new_->len);
            done++;
            if (i >= s->len) break;
            uint32_t cp;
            size_t nx = tpl_utf8_next(s->p, s->len, i, &cp);
            ok = ok && lmc_buf_append(&b, s->p + i, nx - i);
            i = nx;
        }
        if (ok && i < s->len) ok = lmc_buf_append(&b, s->p + i, s->len - i);
    } else {
        size_t i = 0;
        while (ok && i < s->len) {
            const char *hit = (count < 0 || done < count) ? memmem(s->p + i, s->len - i, old->p, old->len) : NULL;
            if (!hit) {
                ok = lmc_buf_append(&b, s->p + i, s->len - i);
                break;
            }
            size_t at = (size_t)(hit - s->p);
            ok = lmc_buf_append(&b, s->p + i, at - i) && lmc_buf_append(&b, new_->p, new_->len);
            i = at + old->len;
            done++;
        }
    }
    if (!ok) {
        lmc_buf_free(&b);
        return tpl_oom(c);
    }
    return ret_buf(c, &b, out);
}

static bool split_impl(tpl_ctx *c, const tv_str *s, const tv_str *sep, int64_t maxsplit, tval *out) {
    tv_list *l = tv_list_new(AR, 0);
    if (!l) return tpl_oom(c);
    if (!sep) {
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            while (i < s->len) {
                uint32_t cp;
                size_t nx = tpl_utf8_next(s->p, s->len, i, &cp);
                if (!tpl_is_py_space(cp)) break;
                i = nx;
            }
            if (i >= s->len) break;
            size_t st = i;
            if (maxsplit >= 0 && done >= maxsplit) {
                /* rest of string, right-stripped */
                tval r;
                tv_str tmp_hdr;
                (void)tmp_hdr;
                tv_str *rest = tv_str_new(AR, s->p + st, s->len - st);
                if (!rest || !strip_impl(c, rest, NULL, false, true, &r)) return tpl_oom(c);
                tv_list_push(AR, l, r);
                break;
            }
            while (i < s->len) {
                uint32_t cp;
                size_t nx = tpl_utf8_next(s->p, s->len, i, &cp);
                if (tpl_is_py_space(cp)) break;
                i = nx;
            }
            tv_str *w = tv_str_new(AR, s->p + st, i - st);
            if (!w || !tv_list_push(AR, l, tv_strv(w))) return tpl_oom(c);
            done++;
        }
    } else {
        if (sep->len == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "empty separator");
        size_t i = 0;
        int64_t done = 0;
        for (;;) {
            const char *hit = (maxsplit < 0 || done < maxsplit) ? memmem(s->p + i, s->len - i, sep->p, sep->len) : NULL;
            size_t end = hit ? (size_t)(hit - s->p) : s->len;
            tv_str *w = tv_str_new(AR, s->p + i, end - i);
            if (!w || !tv_list_push(AR, l, tv_strv(w))) return tpl_oom(c);
            if (!hit) break;
            i = end + sep->len;
            done++;
        }
    }
    *out = mk_list(l);
    return true;
}

static bool affix(const tv_str *s, tval p, bool start, bool *ok_type) {
    if (p.k == TV_STR) {
        if (p.s->len > s->len) return false;
        return !memcmp(start ? s->p : s->p + s->len - p.s->len, p.s->p, p.s->len);
    }
    if (p.k == TV_LIST) {
        for (size_t i = 0; i < p.l->n; i++)
            if (affix(s, p.l->v[i], start, ok_type)) return true;
        return false;
    }
    *ok_type = false;
    return false;
}

/* Python str.format with {}, {0}, {name} and {{ }} (no format specs). */
static bool str_format(tpl_ctx *c, const tv_str *f, const tpl_args *a, tval *out) {
    lmc_buf b = {0};
    size_t auto_idx = 0;
    bool ok = true;
    for (size_t i = 0; ok && i < f->len; i++) {
        char ch = f->p[i];
        if (ch == '{' && i + 1 < f->len && f->p[i + 1] == '{') {
            ok = lmc_buf_putc(&b, '{');
            i++;
        } else if (ch == '}' && i + 1 < f->len && f->p[i + 1] == '}') {
            ok = lmc_buf_putc(&b, '}');
            i++;
        } else if (ch == '{') {
            const char *e = memchr(f->p + i, '}', f->len - i);
            if (!e) {
                lmc_buf_free(&b);
                return tpl_fail(c, LMC_ERR_TEMPLATE, "Single '{' encountered in format string");
            }
            size_t fl = (size_t)(e - f->p) - i - 1;
            const char *field = f->p + i + 1;
            size_t cl = 0;
            while (cl < fl && field[cl] != ':' && field[cl] != '!') cl++;
            if (cl < fl) {
                lmc_buf_free(&b);
                return tpl_fail(c, LMC_ERR_UNSUPPORTED, "str.format: conversion or format spec '%.*s' is not supported",
                                (int)fl, field);
            }
            const tval *v = NULL;
            if (cl == 0) {
                v = auto_idx < a->n ? &a->v[auto_idx] : NULL;
                auto_idx++;
            } else if (field[0] >= '0' && field[0] <= '9') {
                size_t k = (size_t)strtoul(field, NULL, 10);
                v = k < a->n ? &a->v[k] : NULL;
            } else {
                for (size_t k = 0; k < a->nkw; k++)
                    if (a->kwname[k]->len == cl && !memcmp(a->kwname[k]->p, field, cl)) v = &a->kw[k];
            }
            if (!v) {
                lmc_buf_free(&b);
                return tpl_fail(c, LMC_ERR_TEMPLATE, "format string refers to a missing argument '%.*s'", (int)cl,
                                field);
            }
            ok = tv_to_str(&b, *v);
            i = (size_t)(e - f->p);
        } else {
            ok = lmc_buf_putc(&b, ch);
        }
    }
    if (!ok) {
        lmc_buf_free(&b);
        return tpl_oom(c);
    }
    return ret_buf(c, &b, out);
}

/* Python's \w: letters, digits (Unicode categories L*, N*) and underscore. */
static bool is_word_cp(uint32_t cp) {
    if (cp == '_') return true;
    utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
    return (k >= UTF8PROC_CATEGORY_LU && k <= UTF8PROC_CATEGORY_LO) || (k >= UTF8PROC_CATEGORY_ND && k <= UTF8PROC_CATEGORY_NO);
}

/* ------------------------------------------------------------ methods */
static bool m_str(tpl_ctx *c, tval self, const tpl_args *a, tval *out, const char *name);
static bool m_dict(tpl_ctx *c, tval self, const tpl_args *a, tval *out, const char *name);

#define METHOD(fname, impl, mname)                                                         \
    static bool fname(tpl_ctx *c, tval self, const tpl_args *a, tval *out) {               \
        return impl(c, self, a, out, mname);                                               \
    }
METHOD(ms_strip, m_str, "strip")
METHOD(ms_lstrip, m_str, "lstrip")
METHOD(ms_rstrip, m_str, "rstrip")
METHOD(ms_split, m_str, "split")
METHOD(ms_startswith, m_str, "startswith")
METHOD(ms_endswith, m_str, "endswith")
METHOD(ms_replace, m_str, "replace")
METHOD(ms_upper, m_str, "upper")
METHOD(ms_lower, m_str, "lower")
METHOD(ms_title, m_str, "title")
METHOD(ms_capitalize, m_str, "capitalize")
METHOD(ms_format, m_str, "format")
METHOD(ms_join, m_str, "join")
METHOD(ms_find, m_str, "find")
METHOD(ms_count, m_str, "count")
METHOD(ms_splitlines, m_str, "splitlines")
METHOD(ms_isdigit, m_str, "isdigit")
METHOD(ms_isspace, m_str, "isspace")
METHOD(md_items, m_dict, "items")
static bool m_list(tpl_ctx *c, tval self, const tpl_args *a, tval *out, const char *name) {
    const tval *x = arg(a, 0, NULL);
    if (!x) return tpl_fail(c, LMC_ERR_TEMPLATE, "%s() takes exactly one argument (0 given)", name);
    int64_t n = 0;
    for (size_t i = 0; i < self.l->n; i++) {
        if (!tv_equal(self.l->v[i], *x)) continue;
        if (name[0] == 'i') {
            *out = tv_int((int64_t)i);
            return true;
        }
        n++;
    }
    if (name[0] == 'i') return tpl_fail(c, LMC_ERR_TEMPLATE, "list.index(x): x not in list");
    *out = tv_int(n);
    return true;
}
METHOD(ml_count, m_list, "count")
METHOD(ml_index, m_list, "index")
METHOD(md_keys, m_dict, "keys")
METHOD(md_values, m_dict, "values")
METHOD(md_get, m_dict, "get")

static bool m_str(tpl_ctx *c, tval self, const tpl_args *a, tval *out, const char *name) {
    const tv_str *s = self.s;
    const tval *x = arg(a, 0, NULL), *y = arg(a, 1, NULL), *z = arg(a, 2, NULL);
    if (!strcmp(name, "strip") || !strcmp(name, "lstrip") || !strcmp(name, "rstrip")) {
        const tval *ch = arg(a, 0, "chars");
        if (ch && ch->k != TV_STR && ch->k != TV_NONE) return need_str(c, *ch, name);
        return strip_impl(c, s, ch && ch->k == TV_STR ? ch->s : NULL, name[0] != 'r', name[0] != 'l', out);
    }
    if (!strcmp(name, "split")) {
        const tval *sep = arg(a, 0, "sep"), *mx = arg(a, 1, "maxsplit");
        if (sep && sep->k != TV_STR && sep->k != TV_NONE) return need_str(c, *sep, "split");
        return split_impl(c, s, sep && sep->k == TV_STR ? sep->s : NULL, mx && mx->k == TV_INT ? mx->i : -1, out);
    }
    if (!strcmp(name, "startswith") || !strcmp(name, "endswith")) {
        if (!x) return tpl_fail(c, LMC_ERR_TEMPLATE, "%s() takes at least 1 argument", name);
        bool okt = true, r = affix(s, *x, name[0] == 's', &okt);
        if (!okt) return tpl_fail(c, LMC_ERR_TEMPLATE, "%s first arg must be str or a tuple of str", name);
        *out = tv_bool(r);
        return true;
    }
    if (!strcmp(name, "replace")) {
        if (!x || !y || x->k != TV_STR || y->k != TV_STR)
            return tpl_fail(c, LMC_ERR_TEMPLATE, "replace() takes two string arguments");
        return replace_impl(c, s, x->s, y->s, z && z->k == TV_INT ? z->i : -1, out);
    }
    if (!strcmp(name, "upper")) return case_map(c, s, 0, out);
    if (!strcmp(name, "lower")) return case_map(c, s, 1, out);
    if (!strcmp(name, "capitalize")) return case_map(c, s, 2, out);
    if (!strcmp(name, "title")) return case_map(c, s, 3, out);
    if (!strcmp(name, "format")) return str_format(c, s, a, out);
    if (!strcmp(name, "join")) {
        if (!x || x->k != TV_LIST) return tpl_fail(c, LMC_ERR_TEMPLATE, "join() expects a list");
        lmc_buf b = {0};
        for (size_t i = 0; i < x->l->n; i++) {
            if (x->l->v[i].k != TV_STR) {
                lmc_buf_free(&b);
                return tpl_fail(c, LMC_ERR_TEMPLATE, "sequence item %zu: expected str instance, %s found", i,
                                tv_type_name(x->l->v[i]));
            }
            if ((i && !lmc_buf_append(&b, s->p, s->len)) || !lmc_buf_append(&b, x->l->v[i].s->p, x->l->v[i].s->len)) {
                lmc_buf_free(&b);
                return tpl_oom(c);
            }
        }
        return ret_buf(c, &b, out);
    }
    if (!strcmp(name, "find") || !strcmp(name, "count")) {
        if (!x || x->k != TV_STR) return tpl_fail(c, LMC_ERR_TEMPLATE, "%s() expects a string", name);
        if (name[0] == 'f') {
            const char *h = x->s->len ? memmem(s->p, s->len, x->s->p, x->s->len) : s->p;
            *out = tv_int(h ? (int64_t)tpl_utf8_len(s->p, (size_t)(h - s->p)) : -1);
        } else {
            int64_t n = 0;
            if (!x->s->len) n = (int64_t)tpl_utf8_len(s->p, s->len) + 1;
            else
                for (const char *h = s->p; (h = memmem(h, s->len - (size_t)(h - s->p), x->s->p, x->s->len));
                     h += x->s->len)
                    n++;
            *out = tv_int(n);
        }
        return true;
    }
    if (!strcmp(name, "splitlines")) {
        tv_list *l = tv_list_new(AR, 0);
        if (!l) return tpl_oom(c);
        size_t i = 0;
        while (i < s->len) {
            size_t e = i;
            while (e < s->len && s->p[e] != '\n' && s->p[e] != '\r') e++;
            tv_str *w = tv_str_new(AR, s->p + i, e - i);
            if (!w || !tv_list_push(AR, l, tv_strv(w))) return tpl_oom(c);
            if (e < s->len && s->p[e] == '\r' && e + 1 < s->len && s->p[e + 1] == '\n') e++;
            i = e + 1;
        }
        *out = mk_list(l);
        return true;
    }
    if (!strcmp(name, "isdigit") || !strcmp(name, "isspace")) {
        bool r = s->len > 0;
        for (size_t i = 0; i < s->len && r;) {
            uint32_t cp;
            i = tpl_utf8_next(s->p, s->len, i, &cp);
            r = name[2] == 'd' ? (cp >= '0' && cp <= '9') : tpl_is_py_space(cp);
        }
        *out = tv_bool(r);
        return true;
    }
    return tpl_fail(c, LMC_ERR_TEMPLATE, "str has no method '%s'", name);
}

static bool items_list(tpl_ctx *c, const tv_dict *d, tval *out) {
    tv_list *l = tv_list_new(AR, d->n);
    if (!l) return tpl_oom(c);
    for (size_t i = 0; i < d->n; i++) {
        tv_list *t = tv_list_new(AR, 2);
        if (!t) return tpl_oom(c);
        t->tuple = true;
        tv_list_push(AR, t, tv_strv(d->keys[i]));
        tv_list_push(AR, t, d->vals[i]);
        tv_list_push(AR, l, mk_list(t));
    }
    *out = mk_list(l);
    return true;
}

static bool m_dict(tpl_ctx *c, tval self, const tpl_args *a, tval *out, const char *name) {
    const tv_dict *d = self.d;
    if (!strcmp(name, "items")) {
        if (!items_list(c, d, out)) return false;
        out->l->view = 3;
        return true;
    }
    if (!strcmp(name, "keys") || !strcmp(name, "values")) {
        tv_list *l = tv_list_new(AR, d->n);
        if (!l) return tpl_oom(c);
        l->view = name[0] == 'k' ? 1 : 2;
        for (size_t i = 0; i < d->n; i++) tv_list_push(AR, l, name[0] == 'k' ? tv_strv(d->keys[i]) : d->vals[i]);
        *out = mk_list(l);
        return true;
    }
    /* get */
    const tval *k = arg(a, 0, NULL), *def = arg(a, 1, NULL);
    if (!k) return tpl_fail(c, LMC_ERR_TEMPLATE, "get expected at least 1 argument, got 0");
    tval *v = k->k == TV_STR ? tv_dict_get(d, k->s->p, k->s->len) : NULL;
    *out = v ? *v : def ? *def : tv_none();
    return true;
}

static bool bound(tpl_ctx *c, tval self, const char *name, tpl_builtin_fn fn, tval *out) {
    tv_func *f = tpl_alloc(AR, sizeof *f);
    if (!f) return tpl_oom(c), true;
    f->kind = TF_BUILTIN;
    f->name = name;
    f->fn = fn;
    f->self = self;
    *out = (tval){.k = TV_FUNC, .fn = f};
    return true;
}

bool tpl_get_method(tpl_ctx *c, tval obj, const char *name, tval *out) {
    static const struct {
        const char *n;
        tpl_builtin_fn f;
    } smeth[] = {{"strip", ms_strip}, {"lstrip", ms_lstrip}, {"rstrip", ms_rstrip}, {"split", ms_split},
                 {"startswith", ms_startswith}, {"endswith", ms_endswith}, {"replace", ms_replace},
                 {"upper", ms_upper}, {"lower", ms_lower}, {"title", ms_title}, {"capitalize", ms_capitalize},
                 {"format", ms_format}, {"join", ms_join}, {"find", ms_find}, {"count", ms_count},
                 {"splitlines", ms_splitlines}, {"isdigit", ms_isdigit}, {"isspace", ms_isspace}},
      dmeth[] = {{"items", md_items}, {"keys", md_keys}, {"values", md_values}, {"get", md_get}};
    static const char *unsafe_list[] = {"append", "extend", "insert", "pop", "remove", "clear", "sort", "reverse", NULL};
    static const char *unsafe_dict[] = {"update", "pop", "popitem", "setdefault", "clear", NULL};
    if (obj.k == TV_STR) {
        for (size_t i = 0; i < sizeof smeth / sizeof smeth[0]; i++)
            if (!strcmp(smeth[i].n, name)) return bound(c, obj, smeth[i].n, smeth[i].f, out);
    } else if (obj.k == TV_DICT && obj.d->kind == TD_PLAIN) {
        for (size_t i = 0; i < sizeof dmeth / sizeof dmeth[0]; i++)
            if (!strcmp(dmeth[i].n, name)) return bound(c, obj, dmeth[i].n, dmeth[i].f, out);
        for (int i = 0; unsafe_dict[i]; i++)
            if (!strcmp(unsafe_dict[i], name))
                return tpl_fail(c, LMC_ERR_TEMPLATE, "access to attribute '%s' of 'dict' object is unsafe.", name),
                       true;
    } else if (obj.k == TV_LIST) {
        if (!strcmp(name, "count")) return bound(c, obj, "count", ml_count, out);
        if (!strcmp(name, "index")) return bound(c, obj, "index", ml_index, out);
        if (obj.l->tuple) return false;
        for (int i = 0; unsafe_list[i]; i++)
            if (!strcmp(unsafe_list[i], name))
                return tpl_fail(c, LMC_ERR_TEMPLATE, "access to attribute '%s' of 'list' object is unsafe.", name),
                       true;
    }
    return false;
}

/* ------------------------------------------------------------ attribute paths */
static bool attr_path(tpl_ctx *c, tval v, const tv_str *path, tval *out) {
    size_t i = 0;
    while (i <= path->len) {
        const char *dot = memchr(path->p + i, '.', path->len - i);
        size_t e = dot ? (size_t)(dot - path->p) : path->len;
        char part[256];
        size_t pl = e - i < sizeof part - 1 ? e - i : sizeof part - 1;
        memcpy(part, path->p + i, pl);
        part[pl] = '\0';
        if (v.k == TV_UNDEF) return undef_err(c, v);
        bool digits = pl > 0;
        for (size_t k = 0; k < pl; k++)
            if (part[k] < '0' || part[k] > '9') digits = false;
        if (digits && v.k == TV_LIST) {
            size_t idx = (size_t)strtoul(part, NULL, 10);
            v = idx < v.l->n ? v.l->v[idx] : tv_undef(tv_str_fmt(AR, "list object has no element %zu", idx));
        } else if (v.k == TV_DICT) {
            tval *x = tv_dict_get(v.d, part, pl);
            v = x ? *x : tv_undef(tv_str_fmt(AR, "'dict object' has no attribute '%s'", part));
        } else {
            v = tv_undef(tv_str_fmt(AR, "'%s object' has no attribute '%s'", tv_type_name(v), part));
        }
        if (!dot) break;
        i = e + 1;
    }
    *out = v;
    return true;
}

/* ------------------------------------------------------------ tests */
static bool test_impl(tpl_ctx *c, const char *name, tval v, const tpl_args *a, bool *r) {
    const tval *x = arg(a, 0, NULL);
    if (!strcmp(name, "defined")) *r = v.k != TV_UNDEF;
    else if (!strcmp(name, "undefined")) *r = v.k == TV_UNDEF;
    else if (!strcmp(name, "none")) *r = v.k == TV_NONE;
    else if (!strcmp(name, "string")) *r = v.k == TV_STR;
    else if (!strcmp(name, "mapping")) *r = v.k == TV_DICT && v.d->kind == TD_PLAIN;
    else if (!strcmp(name, "iterable")) *r = v.k == TV_STR || v.k == TV_LIST || v.k == TV_UNDEF || (v.k == TV_DICT && v.d->kind == TD_PLAIN);
    else if (!strcmp(name, "sequence")) *r = v.k == TV_STR || v.k == TV_LIST || v.k == TV_UNDEF || (v.k == TV_DICT && v.d->kind == TD_PLAIN);
    else if (!strcmp(name, "number")) *r = v.k == TV_INT || v.k == TV_FLOAT || v.k == TV_BOOL;
    else if (!strcmp(name, "integer")) *r = v.k == TV_INT;
    else if (!strcmp(name, "float")) *r = v.k == TV_FLOAT;
    else if (!strcmp(name, "boolean")) *r = v.k == TV_BOOL;
    else if (!strcmp(name, "true")) *r = v.k == TV_BOOL && v.b;
    else if (!strcmp(name, "false")) *r = v.k == TV_BOOL && !v.b;
    else if (!strcmp(name, "callable")) *r = v.k == TV_FUNC;
    else if (!strcmp(name, "even") || !strcmp(name, "odd") || !strcmp(name, "divisibleby")) {
        /* Python: value % 2 == 1, value % num == 0 (floats included) */
        if (v.k == TV_UNDEF) return undef_err(c, v);
        if (v.k != TV_INT && v.k != TV_BOOL && v.k != TV_FLOAT)
            return tpl_fail(c, LMC_ERR_TEMPLATE, "not all arguments converted during string formatting");
        double dv = v.k == TV_FLOAT ? v.f : v.k == TV_INT ? (double)v.i : v.b;
        if (name[0] == 'd') {
            if (!x || (x->k != TV_INT && x->k != TV_FLOAT))
                return tpl_fail(c, LMC_ERR_TEMPLATE, "divisibleby needs a number argument");
            double dn = x->k == TV_INT ? (double)x->i : x->f;
            if (dn == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "integer division or modulo by zero");
            if (v.k != TV_FLOAT && x->k == TV_INT) *r = (v.k == TV_INT ? v.i : v.b) % x->i == 0;
            else *r = fmod(dv, dn) == 0;
        } else if (v.k == TV_FLOAT) {
            double m = fmod(dv, 2);
            if (m < 0) m += 2;
            *r = name[0] == 'e' ? m == 0 : m == 1;
        } else {
            int64_t i = v.k == TV_INT ? v.i : v.b;
            *r = (i % 2 == 0) == (name[0] == 'e');
        }
    } else if (!strcmp(name, "eq") || !strcmp(name, "equalto") || !strcmp(name, "==") || !strcmp(name, "sameas")) {
        if (!x) return tpl_fail(c, LMC_ERR_TEMPLATE, "test '%s' needs an argument", name);
        *r = name[0] == 's' ? (v.k == x->k && (v.k == TV_NONE || v.k == TV_UNDEF || tv_equal(v, *x))) : tv_equal(v, *x);
    } else if (!strcmp(name, "ne") || !strcmp(name, "!=")) {
        if (!x) return tpl_fail(c, LMC_ERR_TEMPLATE, "test '%s' needs an argument", name);
        *r = !tv_equal(v, *x);
    } else if (!strcmp(name, "lt") || !strcmp(name, "<") || !strcmp(name, "lessthan") || !strcmp(name, "le") ||
               !strcmp(name, "<=") || !strcmp(name, "gt") || !strcmp(name, ">") || !strcmp(name, "greaterthan") ||
               !strcmp(name, "ge") || !strcmp(name, ">=")) {
        if (!x) return tpl_fail(c, LMC_ERR_TEMPLATE, "test '%s' needs an argument", name);
        if (v.k == TV_UNDEF) return undef_err(c, v);
        bool bad = false;
        int cmp = tv_compare(v, *x, &bad);
        if (bad)
            return tpl_fail(c, LMC_ERR_TEMPLATE, "'%s' not supported between instances of '%s' and '%s'", name,
                            tv_type_name(v), tv_type_name(*x));
        bool lt = name[0] == 'l' || name[0] == '<', eq = name[1] == 'e' || name[1] == '=';
        *r = lt ? (eq ? cmp <= 0 : cmp < 0) : (eq ? cmp >= 0 : cmp > 0);
    } else if (!strcmp(name, "in")) {
        if (!x) return tpl_fail(c, LMC_ERR_TEMPLATE, "test 'in' needs an argument");
        *r = false;
        if (x->k == TV_LIST) {
            for (size_t i = 0; i < x->l->n; i++)
                if (tv_equal(x->l->v[i], v)) *r = true;
        } else if (x->k == TV_STR && v.k == TV_STR) {
            *r = memmem(x->s->p, x->s->len, v.s->p, v.s->len) != NULL || v.s->len == 0;
        } else if (x->k == TV_DICT && v.k == TV_STR) {
            *r = tv_dict_get(x->d, v.s->p, v.s->len) != NULL;
        }
    } else if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        tv_str *sv; /* Jinja tests str(value).islower() */
        if (!tpl_stringify(c, v, &sv)) return false;
        v = tv_strv(sv);
        bool ok = true, cased = false; /* Python islower/isupper */
        for (size_t i = 0; i < v.s->len;) {
            uint32_t cp;
            i = tpl_utf8_next(v.s->p, v.s->len, i, &cp);
            utf8proc_category_t k = utf8proc_category((utf8proc_int32_t)cp);
            if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LT) {
                cased = true;
                if (name[0] == 'l') ok = false;
            } else if (k == UTF8PROC_CATEGORY_LL) {
                cased = true;
                if (name[0] == 'u') ok = false;
            }
        }
        *r = ok && cased;
    } else if (!strcmp(name, "escaped")) {
        *r = false;
    } else {
        return tpl_fail(c, LMC_ERR_TEMPLATE, "no test named '%s'", name);
    }
    return true;
}

bool tpl_apply_test(tpl_ctx *c, const char *name, tval v, const tpl_args *a, bool *out) {
    return tpl_charge(c, &v, a) && test_impl(c, name, v, a, out);
}

/* Args after the first `skip` positional ones (for select/map). */
static tpl_args shift_args(const tpl_args *a, size_t skip) {
    tpl_args r = *a;
    r.n = a->n > skip ? a->n - skip : 0;
    r.v = a->n > skip ? a->v + skip : NULL;
    return r;
}

/* ------------------------------------------------------------ filters */
static bool seq_of(tpl_ctx *c, tval v, tv_list **out, const char *fname) {
    if (v.k == TV_LIST) {
        *out = v.l;
        return true;
    }
    tv_list *l = tv_list_new(AR, 0);
    if (!l) return tpl_oom(c);
    if (v.k == TV_UNDEF) {
        *out = l;
        return true;
    }
    if (v.k == TV_DICT && v.d->kind == TD_PLAIN) {
        for (size_t i = 0; i < v.d->n; i++) tv_list_push(AR, l, tv_strv(v.d->keys[i]));
    } else if (v.k == TV_STR) {
        for (size_t i = 0; i < v.s->len;) {
            uint32_t cp;
            size_t nx = tpl_utf8_next(v.s->p, v.s->len, i, &cp);
            tv_str *s = tv_str_new(AR, v.s->p + i, nx - i);
            if (!s || !tv_list_push(AR, l, tv_strv(s))) return tpl_oom(c);
            i = nx;
        }
    } else {
        return tpl_fail(c, LMC_ERR_TEMPLATE, "filter '%s': '%s' object is not iterable", fname, tv_type_name(v));
    }
    *out = l;
    return true;
}

typedef struct {
    tpl_ctx *c;
    tval *keys;
    bool reverse, failed;
} sort_ctx;

/* stable merge sort on an index array (qsort is not stable) */
static bool sort_vals(tpl_ctx *c, tval *vals, tval *keys, size_t n, bool reverse) {
    if (n < 2) return true;
    size_t *idx = malloc(n * sizeof *idx), *tmp = malloc(n * sizeof *tmp);
    if (!idx || !tmp) {
        free(idx);
        free(tmp);
        return tpl_oom(c);
    }
    for (size_t i = 0; i < n; i++) idx[i] = i;
    bool bad = false;
    for (size_t w = 1; w < n && !bad; w *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * w) {
            size_t mid = lo + w < n ? lo + w : n, hi = lo + 2 * w < n ? lo + 2 * w : n, i = lo, j = mid, k = lo;
            while (i < mid && j < hi) {
                int r = tv_compare(keys[idx[j]], keys[idx[i]], &bad);
                if (reverse) r = -r;
                tmp[k++] = r < 0 ? idx[j++] : idx[i++];
            }
            while (i < mid) tmp[k++] = idx[i++];
            while (j < hi) tmp[k++] = idx[j++];
        }
        memcpy(idx, tmp, n * sizeof *idx);
    }
    tval *copy = malloc(n * sizeof *copy);
    if (copy) {
        memcpy(copy, vals, n * sizeof *copy);
        for (size_t i = 0; i < n; i++) vals[i] = copy[idx[i]];
    }
    free(copy);
    free(idx);
    free(tmp);
    if (bad) return tpl_fail(c, LMC_ERR_TEMPLATE, "sort: values of these types cannot be ordered");
    return copy ? true : tpl_oom(c);
}

static tval fold_case(tpl_ctx *c, tval v, bool case_sensitive) {
    if (case_sensitive || v.k != TV_STR) return v;
    tval r;
    return case_map(c, v.s, 1, &r) ? r : v;
}

static bool f_tojson(tpl_ctx *c, tval v, const tpl_args *a, tval *out) {
    const tval *ea = arg(a, 0, "ensure_ascii"), *ind = arg(a, 1, "indent"), *sep = arg(a, 2, "separators"),
               *sk = arg(a, 3, "sort_keys");
    tv_json_opts o = {.indent = -1, .item_sep = ", ", .key_sep = ": "};
    if (ind && ind->k == TV_INT) {
        o.indent = (int)(ind->i < 0 ? 0 : ind->i > 64 ? 64 : ind->i);
        o.item_sep = ",";
    }
    if (sep && sep->k == TV_LIST && sep->l->n == 2 && sep->l->v[0].k == TV_STR && sep->l->v[1].k == TV_STR) {
        o.item_sep = sep->l->v[0].s->p;
        o.key_sep = sep->l->v[1].s->p;
    }
    o.sort_keys = sk && tv_truthy(*sk);
    lmc_buf b = {0};
    const char *bad = NULL;
    if (!tv_to_json(&b, v, &o, 0, &bad)) {
        lmc_buf_free(&b);
        if (bad) {
            if (v.k == TV_UNDEF && v.s) return undef_err(c, v);
            if (!strcmp(bad, "too deeply nested value"))
                return tpl_fail(c, LMC_ERR_LIMIT, "tojson: value nested deeper than %d levels", TPL_MAX_NEST);
            return tpl_fail(c, LMC_ERR_TEMPLATE, "Object of type %s is not JSON serializable", bad);
        }
        return tpl_oom(c);
    }
    if (ea && tv_truthy(*ea)) { /* escape non-ASCII as \uXXXX (surrogate pairs) */
        lmc_buf e = {0};
        bool ok = true;
        for (size_t i = 0; ok && i < b.len;) {
            uint32_t cp;
            size_t nx = tpl_utf8_next(b.p, b.len, i, &cp);
            if (cp < 0x80) ok = lmc_buf_putc(&e, b.p[i]);
            else if (cp < 0x10000) ok = lmc_buf_printf(&e, "\\u%04x", cp);
            else {
                cp -= 0x10000;
                ok = lmc_buf_printf(&e, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
            }
            i = nx;
        }
        lmc_buf_free(&b);
        if (!ok) {
            lmc_buf_free(&e);
            return tpl_oom(c);
        }
        return ret_buf(c, &e, out);
    }
    return ret_buf(c, &b, out);
}

static bool f_map(tpl_ctx *c, tval v, const tpl_args *a, tval *out) {
    tv_list *in, *l;
    if (!tv_truthy(v)) v = tv_undef(NULL); /* Jinja: `if value:` before iterating */
    if (!seq_of(c, v, &in, "map") || !(l = tv_list_new(AR, in->n))) return c->failed ? false : tpl_oom(c);
    const tval *attr = arg(a, SIZE_MAX, "attribute"), *def = arg(a, SIZE_MAX, "default");
    if (attr) {
        if (attr->k != TV_STR) return tpl_fail(c, LMC_ERR_TEMPLATE, "map: attribute must be a string");
        for (size_t i = 0; i < in->n; i++) {
            tval x;
            if (!attr_path(c, in->v[i], attr->s, &x)) return false;
            if (x.k == TV_UNDEF && def) x = *def;
            tv_list_push(AR, l, x);
        }
    } else {
        if (!a->n || a->v[0].k != TV_STR) return tpl_fail(c, LMC_ERR_TEMPLATE, "map: expected a filter name");
        tpl_args rest = shift_args(a, 1);
        for (size_t i = 0; i < in->n; i++) {
            tval x;
            if (!tpl_apply_filter(c, a->v[0].s->p, in->v[i], &rest, &x)) return false;
            tv_list_push(AR, l, x);
        }
    }
    *out = mk_list(l);
    return true;
}

static bool f_select(tpl_ctx *c, tval v, const tpl_args *a, tval *out, bool by_attr, bool keep) {
    tv_list *in, *l;
    if (!tv_truthy(v)) v = tv_undef(NULL); /* Jinja: `if value:` before iterating */
    if (!seq_of(c, v, &in, "select") || !(l = tv_list_new(AR, in->n))) return c->failed ? false : tpl_oom(c);
    size_t skip = 0;
    const tv_str *attr = NULL;
    if (by_attr) {
        if (!a->n || a->v[0].k != TV_STR) return tpl_fail(c, LMC_ERR_TEMPLATE, "selectattr: expected an attribute name");
        attr = a->v[0].s;
        skip = 1;
    }
    const char *test = a->n > skip && a->v[skip].k == TV_STR ? a->v[skip].s->p : NULL;
    tpl_args rest = shift_args(a, skip + 1);
    for (size_t i = 0; i < in->n; i++) {
        tval x = in->v[i];
        if (attr && !attr_path(c, x, attr, &x)) return false;
        bool r;
        if (test) {
            if (!test_impl(c, test, x, &rest, &r)) return false;
        } else {
            r = tv_truthy(x);
        }
        if (r == keep) tv_list_push(AR, l, in->v[i]);
    }
    *out = mk_list(l);
    return true;
}

static bool f_join(tpl_ctx *c, tval v, const tpl_args *a, tval *out) {
    tv_list *in;
    if (!seq_of(c, v, &in, "join")) return false;
    const tval *d = arg(a, 0, "d"), *attr = arg(a, 1, "attribute");
    tv_str *sep = NULL;
    if (d && !tpl_stringify(c, *d, &sep)) return false;
    lmc_buf b = {0};
    for (size_t i = 0; i < in->n; i++) {
        tval x = in->v[i];
        if (attr && attr->k == TV_STR && !attr_path(c, x, attr->s, &x)) {
            lmc_buf_free(&b);
            return false;
        }
        if ((i && sep && !lmc_buf_append(&b, sep->p, sep->len)) || !tv_to_str(&b, x)) {
            lmc_buf_free(&b);
            return tpl_oom(c);
        }
    }
    return ret_buf(c, &b, out);
}

static bool f_indent(tpl_ctx *c, tval v, const tpl_args *a, tval *out) {
    tv_str *s, *ind;
    if (v.k == TV_UNDEF) return undef_err(c, v);
    if (v.k != TV_STR || !v.s)
        return v.k == TV_STR ? tpl_oom(c)
                             : tpl_fail(c, LMC_ERR_TEMPLATE, "'%s' object has no attribute 'splitlines'", tv_type_name(v));
    s = v.s;
    const tval *w = arg(a, 0, "width"), *first = arg(a, 1, "first"), *blank = arg(a, 2, "blank");
    if (w && w->k == TV_STR) ind = w->s;
    else {
        int64_t n = w && w->k == TV_INT ? w->i : 4;
        if (n < 0) n = 0;
        if (n > 4096) return tpl_fail(c, LMC_ERR_LIMIT, "indent width %lld is over 4096", (long long)n);
        ind = tpl_alloc(AR, sizeof *ind + (size_t)n + 1);
        if (!ind) return tpl_oom(c);
        memset(ind->p, ' ', (size_t)n);
        ind->len = (size_t)n;
    }
    tval lines_v;
    tv_str *s2 = tpl_alloc(AR, sizeof *s2 + s->len + 2); /* Jinja splits s + "\n" */
    if (s2) {
        memcpy(s2->p, s->p, s->len);
        s2->p[s->len] = '\n';
        s2->len = s->len + 1;
    }
    if (!s2 || !m_str(c, tv_strv(s2), &(tpl_args){0}, &lines_v, "splitlines")) return c->failed ? false : tpl_oom(c);
    /* s + "\n" then splitlines: same lines as splitlines(s) */
    tv_list *lines = lines_v.l;
    lmc_buf b = {0};
    bool ok = true, bl = blank && tv_truthy(*blank);
    for (size_t i = 0; ok && i < lines->n; i++) {
        const tv_str *ln = lines->v[i].s;
        if (i) ok = lmc_buf_putc(&b, '\n') && ((bl || ln->len) ? lmc_buf_append(&b, ind->p, ind->len) : true);
        ok = ok && lmc_buf_append(&b, ln->p, ln->len);
    }
    if (ok && first && tv_truthy(*first)) {
        lmc_buf r = {0};
        ok = lmc_buf_append(&r, ind->p, ind->len) && lmc_buf_append(&r, b.p ? b.p : "", b.len);
        lmc_buf_free(&b);
        b = r;
    }
    if (!ok) {
        lmc_buf_free(&b);
        return tpl_oom(c);
    }
    return ret_buf(c, &b, out);
}

static bool f_sort(tpl_ctx *c, tval v, const tpl_args *a, tval *out, bool uniq) {
    tv_list *in;
    if (!seq_of(c, v, &in, uniq ? "unique" : "sort")) return false;
    const tval *rev = uniq ? NULL : arg(a, 0, "reverse"), *cs = arg(a, uniq ? 0 : 1, "case_sensitive"),
               *attr = arg(a, uniq ? 1 : 2, "attribute");
    bool case_sens = cs && tv_truthy(*cs);
    tv_list *l = tv_list_new(AR, in->n);
    tval *keys = tpl_alloc(AR, (in->n + 1) * sizeof(tval));
    if (!l || !keys) return tpl_oom(c);
    for (size_t i = 0; i < in->n; i++) {
        tval k = in->v[i];
        if (attr && attr->k == TV_STR && !attr_path(c, k, attr->s, &k)) return false;
        k = fold_case(c, k, case_sens);
        if (uniq && (k.k == TV_DICT || (k.k == TV_LIST && !k.l->tuple)))
            return tpl_fail(c, LMC_ERR_TEMPLATE, "unhashable type: '%s'", tv_type_name(k));
        if (uniq) {
            bool seen = false;
            for (size_t j = 0; j < l->n && !seen; j++) seen = tv_equal(keys[j], k);
            if (seen) continue;
        }
        keys[l->n] = k;
        tv_list_push(AR, l, in->v[i]);
    }
    if (!uniq && !sort_vals(c, l->v, keys, l->n, rev && tv_truthy(*rev))) return false;
    *out = mk_list(l);
    return true;
}

static bool f_dictsort(tpl_ctx *c, tval v, const tpl_args *a, tval *out) {
    if (v.k != TV_DICT) return tpl_fail(c, LMC_ERR_TEMPLATE, "dictsort expects a mapping, got '%s'", tv_type_name(v));
    const tval *cs = arg(a, 0, "case_sensitive"), *by = arg(a, 1, "by"), *rev = arg(a, 2, "reverse");
    tval items;
    if (!items_list(c, v.d, &items)) return false;
    bool by_value = by && by->k == TV_STR && !strcmp(by->s->p, "value");
    tval *keys = tpl_alloc(AR, (items.l->n + 1) * sizeof(tval));
    if (!keys) return tpl_oom(c);
    for (size_t i = 0; i < items.l->n; i++)
        keys[i] = fold_case(c, items.l->v[i].l->v[by_value ? 1 : 0], cs && tv_truthy(*cs));
    if (!sort_vals(c, items.l->v, keys, items.l->n, rev && tv_truthy(*rev))) return false;
    *out = items;
    return true;
}

static bool f_length(tpl_ctx *c, tval v, tval *out) {
    switch (v.k) {
    case TV_UNDEF: *out = tv_int(0); return true;
    case TV_STR: *out = tv_int((int64_t)tpl_utf8_len(v.s->p, v.s->len)); return true;
    case TV_LIST: *out = tv_int((int64_t)v.l->n); return true;
    case TV_DICT: *out = tv_int((int64_t)v.d->n); return true;
    default: return tpl_fail(c, LMC_ERR_TEMPLATE, "object of type '%s' has no len()", tv_type_name(v));
    }
}

static bool parse_number(const tv_str *s, bool want_int, int64_t *iv, double *fv) {
    char buf[128];
    size_t b = 0, e = s->len;
    while (b < e && tpl_is_py_space((unsigned char)s->p[b])) b++;
    while (e > b && tpl_is_py_space((unsigned char)s->p[e - 1])) e--;
    if (e - b == 0 || e - b >= sizeof buf) return false;
    size_t n = 0;
    for (size_t i = b; i < e; i++)
        if (s->p[i] != '_') buf[n++] = s->p[i];
    buf[n] = '\0';
    char *end;
    if (want_int) {
        long long x = strtoll(buf, &end, 10);
        if (*end == '\0') {
            *iv = x;
            return true;
        }
    }
    double d = strtod(buf, &end);
    if (*end != '\0') return false;
    *fv = d;
    if (want_int) {
        if (!isfinite(d) || fabs(d) > 9.2e18) return false;
        *iv = (int64_t)d;
    }
    return true;
}

bool tpl_apply_filter(tpl_ctx *c, const char *name, tval v, const tpl_args *a, tval *out) {
    const tval *x = arg(a, 0, NULL);
    tv_str *s;
    if (!tpl_charge(c, &v, a)) return false;
    if (!strcmp(name, "tojson")) return f_tojson(c, v, a, out);
    if (!strcmp(name, "safe") || !strcmp(name, "e") || !strcmp(name, "escape") || !strcmp(name, "forceescape")) {
        /* Markup strings: output unchanged (no autoescape), but `+` with a
         * plain string escapes that string, as markupsafe does */
        if (!tpl_stringify(c, v, &s)) return false;
        tv_str *r;
        if (name[0] == 's' || (s->markup && name[0] != 'f')) {
            r = tv_str_new(AR, s->p, s->len);
            if (r) r->markup = true;
        } else {
            r = tv_str_escape(AR, s);
        }
        if (!r) return tpl_oom(c);
        *out = tv_strv(r);
        return true;
    }
    if (!strcmp(name, "string")) {
        if (!tpl_stringify(c, v, &s)) return false;
        *out = tv_strv(s);
        return true;
    }
    if (!strcmp(name, "trim")) {
        const tval *ch = arg(a, 0, "chars");
        if (!tpl_stringify(c, v, &s)) return false;
        if (!strip_impl(c, s, ch && ch->k == TV_STR ? ch->s : NULL, true, true, out)) return false;
        out->s->markup = s->markup;
        return true;
    }
    if (!strcmp(name, "upper") || !strcmp(name, "lower") || !strcmp(name, "capitalize") || !strcmp(name, "title")) {
        if (!tpl_stringify(c, v, &s)) return false;
        int mode = name[0] == 'u' ? 0 : name[0] == 'l' ? 1 : name[0] == 'c' ? 2 : 4;
        if (!case_map(c, s, mode, out)) return false;
        out->s->markup = s->markup && mode != 4; /* Jinja's title joins into a plain str */
        return true;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) return f_length(c, v, out);
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        tv_list *l;
        if (!seq_of(c, v, &l, name)) return false;
        if (!l->n) *out = tv_undef(tv_str_fmt(AR, "No %s item, sequence was empty.", name));
        else *out = l->v[name[0] == 'f' ? 0 : l->n - 1];
        return true;
    }
    if (!strcmp(name, "join")) return f_join(c, v, a, out);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        const tval *def = arg(a, 0, "default_value"), *boolean = arg(a, 1, "boolean");
        bool use = v.k == TV_UNDEF || (boolean && tv_truthy(*boolean) && !tv_truthy(v));
        *out = use ? (def ? *def : tv_strv(tv_str_new(AR, "", 0))) : v;
        return out->k != TV_STR || out->s ? true : tpl_oom(c);
    }
    if (!strcmp(name, "replace")) {
        const tval *old = arg(a, 0, "old"), *nw = arg(a, 1, "new"), *cnt = arg(a, 2, "count");
        tv_str *os, *ns;
        if (!old || !nw) return tpl_fail(c, LMC_ERR_TEMPLATE, "replace filter needs 'old' and 'new'");
        if (!tpl_stringify(c, v, &s) || !tpl_stringify(c, *old, &os) || !tpl_stringify(c, *nw, &ns)) return false;
        return replace_impl(c, s, os, ns, cnt && cnt->k == TV_INT ? cnt->i : -1, out);
    }
    if (!strcmp(name, "list")) {
        tv_list *l, *r;
        if (!seq_of(c, v, &l, "list")) return false;
        if (!(r = tv_list_new(AR, l->n))) return tpl_oom(c);
        for (size_t i = 0; i < l->n; i++) tv_list_push(AR, r, l->v[i]);
        *out = mk_list(r);
        return true;
    }
    if (!strcmp(name, "map")) return f_map(c, v, a, out);
    if (!strcmp(name, "select")) return f_select(c, v, a, out, false, true);
    if (!strcmp(name, "reject")) return f_select(c, v, a, out, false, false);
    if (!strcmp(name, "selectattr")) return f_select(c, v, a, out, true, true);
    if (!strcmp(name, "rejectattr")) return f_select(c, v, a, out, true, false);
    if (!strcmp(name, "items")) {
        if (v.k == TV_UNDEF) {
            tv_list *l = tv_list_new(AR, 0);
            if (!l) return tpl_oom(c);
            *out = mk_list(l);
            return true;
        }
        if (v.k != TV_DICT) return tpl_fail(c, LMC_ERR_TEMPLATE, "Can only get item pairs from a mapping.");
        return items_list(c, v.d, out);
    }
    if ((!strcmp(name, "int") || !strcmp(name, "float")) && v.k == TV_UNDEF) return undef_err(c, v);
    if (!strcmp(name, "int")) {
        const tval *def = arg(a, 0, "default");
        int64_t iv = 0;
        double fv;
        if (v.k == TV_INT) iv = v.i;
        else if (v.k == TV_BOOL) iv = v.b;
        else if (v.k == TV_FLOAT && isfinite(v.f) && fabs(v.f) < 9.2e18) iv = (int64_t)v.f;
        else if (v.k == TV_STR && parse_number(v.s, true, &iv, &fv)) {
        } else {
            *out = def ? *def : tv_int(0);
            return true;
        }
        *out = tv_int(iv);
        return true;
    }
    if (!strcmp(name, "float")) {
        const tval *def = arg(a, 0, "default");
        int64_t iv;
        double fv = 0;
        if (v.k == TV_FLOAT) fv = v.f;
        else if (v.k == TV_INT) fv = (double)v.i;
        else if (v.k == TV_BOOL) fv = v.b;
        else if (v.k == TV_STR && parse_number(v.s, false, &iv, &fv)) {
        } else {
            *out = def ? *def : tv_float(0);
            return true;
        }
        *out = tv_float(fv);
        return true;
    }
    if (!strcmp(name, "abs")) {
        if (v.k == TV_INT) *out = tv_int(v.i < 0 ? -v.i : v.i);
        else if (v.k == TV_FLOAT) *out = tv_float(fabs(v.f));
        else if (v.k == TV_BOOL) *out = tv_int(v.b);
        else return tpl_fail(c, LMC_ERR_TEMPLATE, "bad operand type for abs(): '%s'", tv_type_name(v));
        return true;
    }
    if (!strcmp(name, "round")) {
        const tval *prec = arg(a, 0, "precision"), *method = arg(a, 1, "method");
        if (v.k != TV_INT && v.k != TV_FLOAT && v.k != TV_BOOL)
            return tpl_fail(c, LMC_ERR_TEMPLATE, "round expects a number, got '%s'", tv_type_name(v));
        int p = prec && prec->k == TV_INT ? (int)prec->i : 0;
        const char *md0 = method && method->k == TV_STR ? method->s->p : "common";
        if (v.k != TV_FLOAT && !strcmp(md0, "common") && p >= 0) { /* Python round(int, n) is the int */
            *out = tv_int(v.k == TV_INT ? v.i : v.b);
            return true;
        }
        double d = v.k == TV_FLOAT ? v.f : v.k == TV_INT ? (double)v.i : v.b;
        double m = pow(10, p);
        const char *md = method && method->k == TV_STR ? method->s->p : "common";
        double r;
        if (!strcmp(md, "ceil")) r = ceil(d * m) / m;
        else if (!strcmp(md, "floor")) r = floor(d * m) / m;
        else if (p >= 0 && p <= 300 && isfinite(d)) { /* Python round(): correctly rounded, ties to even */
            char tmp[400];
            snprintf(tmp, sizeof tmp, "%.*f", p, d);
            r = strtod(tmp, NULL);
        } else {
            r = nearbyint(d * m) / m;
        }
        *out = tv_float(r);
        return true;
    }
    if (!strcmp(name, "indent")) return f_indent(c, v, a, out);
    if (!strcmp(name, "unique")) return f_sort(c, v, a, out, true);
    if (!strcmp(name, "sort")) return f_sort(c, v, a, out, false);
    if (!strcmp(name, "dictsort")) return f_dictsort(c, v, a, out);
    if (!strcmp(name, "reverse")) {
        if (v.k == TV_STR) {
            tv_str *r = tpl_alloc(AR, sizeof *r + v.s->len + 1);
            if (!r) return tpl_oom(c);
            r->len = v.s->len;
            size_t o = v.s->len;
            for (size_t i = 0; i < v.s->len;) {
                uint32_t cp;
                size_t nx = tpl_utf8_next(v.s->p, v.s->len, i, &cp);
                o -= nx - i;
                memcpy(r->p + o, v.s->p + i, nx - i);
                i = nx;
            }
            *out = tv_strv(r);
            return true;
        }
        tv_list *l, *r;
        if (!seq_of(c, v, &l, "reverse") || !(r = tv_list_new(AR, l->n))) return c->failed ? false : tpl_oom(c);
        for (size_t i = l->n; i-- > 0;) tv_list_push(AR, r, l->v[i]);
        *out = mk_list(r);
        return true;
    }
    if (!strcmp(name, "sum")) {
        tv_list *l;
        if (!seq_of(c, v, &l, "sum")) return false;
        const tval *attr = arg(a, 0, "attribute"), *start = arg(a, 1, "start");
        tval acc = start ? *start : tv_int(0);
        for (size_t i = 0; i < l->n; i++) {
            tval e = l->v[i];
            if (attr && attr->k == TV_STR && !attr_path(c, e, attr->s, &e)) return false;
            if ((acc.k != TV_INT && acc.k != TV_FLOAT) || (e.k != TV_INT && e.k != TV_FLOAT && e.k != TV_BOOL))
                return tpl_fail(c, LMC_ERR_TEMPLATE, "sum: unsupported operand type '%s'", tv_type_name(e));
            double ev = e.k == TV_FLOAT ? e.f : e.k == TV_INT ? (double)e.i : e.b;
            if (acc.k == TV_INT && e.k != TV_FLOAT) acc = tv_int(acc.i + (e.k == TV_INT ? e.i : e.b));
            else acc = tv_float((acc.k == TV_FLOAT ? acc.f : (double)acc.i) + ev);
        }
        *out = acc;
        return true;
    }
    if (!strcmp(name, "min") || !strcmp(name, "max")) {
        tv_list *l;
        if (!seq_of(c, v, &l, name)) return false;
        const tval *cs = arg(a, 0, "case_sensitive"), *attr = arg(a, 1, "attribute");
        if (!l->n) {
            *out = tv_undef(tv_str_fmt(AR, "No aggregated item, sequence was empty."));
            return true;
        }
        size_t best = 0;
        tval bk = tv_none();
        for (size_t i = 0; i < l->n; i++) {
            tval k = l->v[i];
            if (attr && attr->k == TV_STR && !attr_path(c, k, attr->s, &k)) return false;
            k = fold_case(c, k, cs && tv_truthy(*cs));
            bool bad = false;
            if (i == 0 || (name[1] == 'i' ? tv_compare(k, bk, &bad) < 0 : tv_compare(k, bk, &bad) > 0)) {
                best = i;
                bk = k;
            }
            if (bad) return tpl_fail(c, LMC_ERR_TEMPLATE, "%s: values cannot be ordered", name);
        }
        *out = l->v[best];
        return true;
    }
    if (!strcmp(name, "format")) {
        if (!tpl_stringify(c, v, &s)) return false;
        lmc_buf b = {0};
        size_t ai = 0;
        bool ok = true;
        for (size_t i = 0; ok && i < s->len; i++) {
            if (s->p[i] != '%' || i + 1 >= s->len) {
                ok = lmc_buf_putc(&b, s->p[i]);
                continue;
            }
            char spec = s->p[++i];
            if (spec == '%') ok = lmc_buf_putc(&b, '%');
            else if (ai >= a->n) {
                lmc_buf_free(&b);
                return tpl_fail(c, LMC_ERR_TEMPLATE, "not enough arguments for format string");
            } else if (spec == 'r') ok = tv_repr(&b, a->v[ai++]);
            else ok = tv_to_str(&b, a->v[ai++]);
        }
        if (ok && ai < a->n) {
            lmc_buf_free(&b);
            return tpl_fail(c, LMC_ERR_TEMPLATE, "not all arguments converted during string formatting");
        }
        if (!ok) {
            lmc_buf_free(&b);
            return tpl_oom(c);
        }
        return ret_buf(c, &b, out);
    }
    if (!strcmp(name, "wordcount")) { /* runs of \w, as Jinja's regex counts them */
        if (!tpl_stringify(c, v, &s)) return false;
        int64_t words = 0;
        bool in_word = false;
        for (size_t i = 0; i < s->len;) {
            uint32_t cp;
            i = tpl_utf8_next(s->p, s->len, i, &cp);
            bool w = is_word_cp(cp);
            if (w && !in_word) words++;
            in_word = w;
        }
        *out = tv_int(words);
        return true;
    }
    (void)x;
    return tpl_fail(c, LMC_ERR_TEMPLATE, "no filter named '%s'", name);
}

/* ------------------------------------------------------------ globals */
static bool g_range(tpl_ctx *c, tval self, const tpl_args *a, tval *out) {
    int64_t start = 0, stop, step = 1;
    for (size_t i = 0; i < a->n; i++)
        if (a->v[i].k != TV_INT) return tpl_fail(c, LMC_ERR_TEMPLATE, "range() arguments must be integers");
    if (a->n == 1) stop = a->v[0].i;
    else if (a->n == 2 || a->n == 3) {
        start = a->v[0].i;
        stop = a->v[1].i;
        if (a->n == 3) step = a->v[2].i;
    } else {
        return tpl_fail(c, LMC_ERR_TEMPLATE, "range expected 1 to 3 arguments, got %zu", a->n);
    }
    if (step == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "range() arg 3 must not be zero");
    long double cnt = step > 0 ? ((long double)stop - start) / step : ((long double)start - stop) / -step;
    if (cnt > TPL_MAX_ITERATIONS)
        return tpl_fail(c, LMC_ERR_LIMIT, "range() of more than %ld items", TPL_MAX_ITERATIONS);
    tv_list *l = tv_list_new(AR, cnt > 0 ? (size_t)cnt + 1 : 0);
    if (!l) return tpl_oom(c);
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) tv_list_push(AR, l, tv_int(i));
    *out = mk_list(l);
    return true;
}

static bool g_namespace(tpl_ctx *c, tval self, const tpl_args *a, tval *out) {
    tv_dict *d = tv_dict_new(AR, a->nkw);
    if (!d) return tpl_oom(c);
    d->kind = self.k == TV_BOOL && self.b ? TD_PLAIN : TD_NAMESPACE;
    for (size_t i = 0; i < a->n; i++) {
        if (a->v[i].k != TV_DICT) return tpl_fail(c, LMC_ERR_TEMPLATE, "namespace()/dict() takes mappings");
        for (size_t k = 0; k < a->v[i].d->n; k++)
            if (!tv_dict_set(AR, d, a->v[i].d->keys[k], a->v[i].d->vals[k])) return tpl_oom(c);
    }
    for (size_t i = 0; i < a->nkw; i++)
        if (!tv_dict_set(AR, d, a->kwname[i], a->kw[i])) return tpl_oom(c);
    *out = mk_dict(d);
    return true;
}

static bool g_raise(tpl_ctx *c, tval self, const tpl_args *a, tval *out) {
    lmc_buf b = {0};
    if (a->n) tv_to_str(&b, a->v[0]);
    bool r = tpl_fail(c, LMC_ERR_TEMPLATE, "raise_exception: %s", b.p ? b.p : "");
    lmc_buf_free(&b);
    return r;
}

static bool g_strftime(tpl_ctx *c, tval self, const tpl_args *a, tval *out) {
    if (!a->n || a->v[0].k != TV_STR) return tpl_fail(c, LMC_ERR_TEMPLATE, "strftime_now expects a format string");
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char buf[512];
    size_t n = a->v[0].s->len ? strftime(buf, sizeof buf, a->v[0].s->p, &tm) : 0;
    tv_str *s = tv_str_new(AR, buf, n);
    if (!s) return tpl_oom(c);
    *out = tv_strv(s);
    return true;
}

void tpl_add_globals(tpl_ctx *c, tv_dict *g) {
    static const struct {
        const char *n;
        tpl_builtin_fn f;
        bool self;
    } fns[] = {{"range", g_range, false}, {"namespace", g_namespace, false}, {"dict", g_namespace, true},
               {"raise_exception", g_raise, false}, {"strftime_now", g_strftime, false}};
    for (size_t i = 0; i < sizeof fns / sizeof fns[0]; i++) {
        tval v;
        tv_str *k = tv_str_new(AR, fns[i].n, strlen(fns[i].n));
        if (!k || !bound(c, tv_bool(fns[i].self), fns[i].n, fns[i].f, &v)) continue;
        if (tv_dict_get(g, k->p, k->len)) continue; /* caller-provided values win */
        tv_dict_set(AR, g, k, v);
    }
}
