/* Tree-walking evaluator: statements write into the output buffer,
 * expressions produce arena values. Every loop, call and write is counted
 * against the limits in tpl.h. */
#include "base/error.h"
#include "template/tpl.h"
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

bool tpl_fail(tpl_ctx *c, lmc_status st, const char *fmt, ...) {
    if (c->failed) return false;
    c->failed = true;
    c->st = st;
    char msg[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    lmc_err(st, "chat template error at line %d, column %d: %s", c->line, c->col, msg);
    return false;
}

bool tpl_oom(tpl_ctx *c) {
    if (c->arena.over_limit)
        return tpl_fail(c, LMC_ERR_LIMIT, "render used more than %u MiB of memory", TPL_MAX_ARENA >> 20);
    return tpl_fail(c, LMC_ERR_NOMEM, "out of memory");
}

double tpl_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

bool tpl_work(tpl_ctx *c, uint64_t units) {
    c->work += units;
    if (c->work > c->work_limit)
        return tpl_fail(c, LMC_ERR_LIMIT, "render exceeded its work budget of %llu steps",
                        (unsigned long long)c->work_limit);
    if (c->deadline > 0 && c->work >= c->next_clock) {
        c->next_clock = c->work + TPL_CLOCK_EVERY;
        if (tpl_now() > c->deadline)
            return tpl_fail(c, LMC_ERR_LIMIT, "render exceeded its time budget of %g s", c->seconds);
    }
    return true;
}

static uint64_t tv_cost(const tval *v) {
    switch (v->k) {
    case TV_STR: return v->s->len / 16;
    case TV_LIST: return v->l->n;
    case TV_DICT: return v->d->n;
    case TV_FUNC: return v->fn->kind == TF_BUILTIN ? tv_cost(&v->fn->self) : 0;
    default: return 0;
    }
}

bool tpl_charge(tpl_ctx *c, const tval *v, const tpl_args *a) {
    uint64_t u = 1 + (v ? tv_cost(v) : 0);
    for (size_t i = 0; a && i < a->n; i++) u += tv_cost(&a->v[i]);
    for (size_t i = 0; a && i < a->nkw; i++) u += tv_cost(&a->kw[i]);
    return tpl_work(c, u);
}

static bool undef_error(tpl_ctx *c, tval v) {
    if (v.s) return tpl_fail(c, LMC_ERR_TEMPLATE, "%s", v.s->p);
    return tpl_fail(c, LMC_ERR_TEMPLATE, "value is undefined");
}

static bool emit(tpl_ctx *c, const char *p, size_t n) {
    if (c->out->len + n > c->out_limit)
        return tpl_fail(c, LMC_ERR_LIMIT, "output exceeds the limit of %zu bytes", c->out_limit);
    if (!lmc_buf_append(c->out, p, n)) return tpl_fail(c, LMC_ERR_NOMEM, "out of memory");
    return true;
}

static tval *frame_lookup(tpl_frame *f, const char *name) {
    size_t n = strlen(name);
    for (; f; f = f->parent) {
        tval *v = tv_dict_get(f->vars, name, n);
        if (v) return v;
    }
    return NULL;
}

static bool frame_set(tpl_ctx *c, tpl_frame *f, const char *name, tval v) {
    tval *slot = tv_dict_get(f->vars, name, strlen(name));
    if (slot) {
        *slot = v;
        return true;
    }
    tv_dict *d = f->vars;
    if (d->n < d->cap && d->keys[d->n] && !strcmp(d->keys[d->n]->p, name)) {
        /* a loop frame emptied for the next iteration: reuse its key */
        d->vals[d->n++] = v;
        return true;
    }
    tv_str *k = tv_str_new(&c->arena, name, strlen(name));
    if (!k || !tv_dict_set(&c->arena, f->vars, k, v)) return tpl_oom(c);
    return true;
}

static tpl_frame *frame_new(tpl_ctx *c, tpl_frame *parent) {
    tpl_frame *f = tpl_alloc(&c->arena, sizeof *f);
    if (!f || !(f->vars = tv_dict_new(&c->arena, 4))) {
        tpl_oom(c);
        return NULL;
    }
    f->parent = parent;
    return f;
}

static bool eval(tpl_ctx *c, tpl_frame *f, const tpl_node *n, tval *out);
static bool exec_body(tpl_ctx *c, tpl_frame *f, const tpl_node *body);

static void set_loc(tpl_ctx *c, const tpl_node *n) {
    c->line = n->line;
    c->col = n->col;
}

/* ------------------------------------------------------------ access */
static tval undef_attr(tpl_ctx *c, tval obj, const char *name) {
    tv_str *h;
    if (obj.k == TV_NONE) h = tv_str_fmt(&c->arena, "'None' has no attribute '%s'", name);
    else h = tv_str_fmt(&c->arena, "'%s object' has no attribute '%s'", tv_type_name(obj), name);
    return tv_undef(h);
}

static bool get_attr(tpl_ctx *c, tval obj, const char *name, tval *out) {
    if (obj.k == TV_UNDEF) return undef_error(c, obj);
    if (obj.k == TV_DICT && obj.d->kind != TD_PLAIN) {
        tval *v = tv_dict_get(obj.d, name, strlen(name));
        *out = v ? *v : undef_attr(c, obj, name);
        return true;
    }
    if (tpl_get_method(c, obj, name, out)) return !c->failed;
    if (c->failed) return false;
    if (obj.k == TV_DICT) {
        tval *v = tv_dict_get(obj.d, name, strlen(name));
        if (v) {
            *out = *v;
            return true;
        }
    }
    *out = undef_attr(c, obj, name);
    return true;
}

static bool get_item(tpl_ctx *c, tval obj, tval key, tval *out) {
    if (obj.k == TV_UNDEF) return undef_error(c, obj);
    if (obj.k == TV_DICT && key.k == TV_STR) {
        tval *v = tv_dict_get(obj.d, key.s->p, key.s->len);
        if (v) {
            *out = *v;
            return true;
        }
        if (obj.d->kind == TD_PLAIN && tpl_get_method(c, obj, key.s->p, out)) return !c->failed;
        *out = undef_attr(c, obj, key.s->p);
        return !c->failed;
    }
    if ((obj.k == TV_LIST || obj.k == TV_STR) && (key.k == TV_INT || key.k == TV_BOOL)) {
        int64_t i = key.k == TV_INT ? key.i : key.b;
        if (obj.k == TV_LIST) {
            int64_t n = (int64_t)obj.l->n;
            if (i < 0) i += n;
            if (i < 0 || i >= n) {
                *out = tv_undef(tv_str_fmt(&c->arena, "%s object has no element %lld", tv_type_name(obj),
                                           (long long)(key.k == TV_INT ? key.i : key.b)));
                return true;
            }
            *out = obj.l->v[i];
            return true;
        }
        int64_t n = (int64_t)tpl_utf8_len(obj.s->p, obj.s->len);
        if (i < 0) i += n;
        if (i < 0 || i >= n) {
            *out = tv_undef(tv_str_fmt(&c->arena, "str object has no element %lld", (long long)i));
            return true;
        }
        size_t pos = 0;
        uint32_t cp;
        for (int64_t k = 0; k < i; k++) pos = tpl_utf8_next(obj.s->p, obj.s->len, pos, &cp);
        size_t end = tpl_utf8_next(obj.s->p, obj.s->len, pos, &cp);
        tv_str *s = tv_str_new(&c->arena, obj.s->p + pos, end - pos);
        if (!s) return tpl_oom(c);
        *out = tv_strv(s);
        return true;
    }
    if (key.k == TV_STR) return get_attr(c, obj, key.s->p, out);
    *out = tv_undef(tv_str_fmt(&c->arena, "'%s object' has no attribute '%s'", tv_type_name(obj), tv_type_name(key)));
    return true;
}

static bool slice_index(tpl_ctx *c, tval v, bool *present, int64_t *out) {
    *present = v.k != TV_NONE && v.k != TV_UNDEF;
    if (!*present) return true;
    if (v.k != TV_INT) return tpl_fail(c, LMC_ERR_TEMPLATE, "slice indices must be integers or None");
    *out = v.i;
    return true;
}

static bool do_slice(tpl_ctx *c, tval obj, tval a, tval b, tval s, tval *out) {
    bool ha, hb, hs;
    int64_t ia = 0, ib = 0, is = 1;
    if (!slice_index(c, a, &ha, &ia) || !slice_index(c, b, &hb, &ib) || !slice_index(c, s, &hs, &is)) return false;
    if (!hs) is = 1;
    if (is == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "slice step cannot be zero");
    if (obj.k == TV_UNDEF) return undef_error(c, obj);
    if (obj.k != TV_LIST && obj.k != TV_STR)
        return tpl_fail(c, LMC_ERR_TEMPLATE, "'%s' object is not subscriptable", tv_type_name(obj));
    /* for strings work on code point offsets */
    size_t *cps = NULL;
    int64_t n;
    if (obj.k == TV_LIST) n = (int64_t)obj.l->n;
    else {
        n = (int64_t)tpl_utf8_len(obj.s->p, obj.s->len);
        cps = tpl_alloc(&c->arena, (size_t)(n + 1) * sizeof(size_t));
        if (!cps) return tpl_oom(c);
        size_t pos = 0;
        uint32_t cp;
        for (int64_t k = 0; k < n; k++) {
            cps[k] = pos;
            pos = tpl_utf8_next(obj.s->p, obj.s->len, pos, &cp);
        }
        cps[n] = obj.s->len;
    }
    int64_t lo, hi;
    if (is > 0) {
        lo = !ha ? 0 : ia < 0 ? (ia + n < 0 ? 0 : ia + n) : (ia > n ? n : ia);
        hi = !hb ? n : ib < 0 ? (ib + n < 0 ? 0 : ib + n) : (ib > n ? n : ib);
    } else {
        lo = !ha ? n - 1 : ia < 0 ? (ia + n < 0 ? -1 : ia + n) : (ia >= n ? n - 1 : ia);
        hi = !hb ? -1 : ib < 0 ? (ib + n < 0 ? -1 : ib + n) : (ib >= n ? n - 1 : ib);
    }
    if (obj.k == TV_LIST) {
        tv_list *l = tv_list_new(&c->arena, 0);
        if (!l) return tpl_oom(c);
        l->tuple = obj.l->tuple;
        for (int64_t i = lo; is > 0 ? i < hi : i > hi; i += is)
            if (!tv_list_push(&c->arena, l, obj.l->v[i])) return tpl_oom(c);
        *out = (tval){.k = TV_LIST, .l = l};
        return true;
    }
    lmc_buf sb = {0};
    bool ok = true;
    for (int64_t i = lo; ok && (is > 0 ? i < hi : i > hi); i += is)
        ok = lmc_buf_append(&sb, obj.s->p + cps[i], cps[i + 1] - cps[i]);
    tv_str *r = ok ? tv_str_new(&c->arena, sb.p ? sb.p : "", sb.len) : NULL;
    lmc_buf_free(&sb);
    if (!r) return tpl_oom(c);
    *out = tv_strv(r);
    return true;
}

/* ------------------------------------------------------------ operators */
static bool is_numv(tval v) { return v.k == TV_INT || v.k == TV_FLOAT || v.k == TV_BOOL; }
static double numd(tval v) { return v.k == TV_FLOAT ? v.f : v.k == TV_INT ? (double)v.i : v.b; }
static int64_t numi(tval v) { return v.k == TV_INT ? v.i : v.b; }

static const char *op_sym(int op) {
    static const char *s[] = {"?", "+", "-", "*", "/", "//", "%", "**", "~"};
    return op >= OP_ADD && op <= OP_CONCAT ? s[op] : "?";
}

bool tpl_stringify(tpl_ctx *c, tval v, tv_str **out) {
    if (v.k == TV_STR) {
        *out = v.s;
        return true;
    }
    lmc_buf b = {0};
    bool ok = tv_to_str(&b, v);
    *out = ok ? tv_str_new(&c->arena, b.p ? b.p : "", b.len) : NULL;
    lmc_buf_free(&b);
    return *out ? true : tpl_oom(c);
}

static bool binop_v(tpl_ctx *c, int op, tval x, tval y, tval *out) {
    tpl_args ya = {.n = 1, .v = &y};
    if (!tpl_charge(c, &x, &ya)) return false;
    if (op == OP_CONCAT) {
        tv_str *a, *b;
        if (!tpl_stringify(c, x, &a) || !tpl_stringify(c, y, &b)) return false;
        tv_str *s = tv_str_cat(&c->arena, a, b);
        if (!s) return tpl_oom(c);
        *out = tv_strv(s);
        return true;
    }
    if (x.k == TV_UNDEF) return undef_error(c, x);
    if (y.k == TV_UNDEF) return undef_error(c, y);
    if (op == OP_MOD && x.k == TV_STR) { /* "%s" % value: printf-style formatting */
        tpl_args fa = {0};
        if ((y.k == TV_LIST && !y.l->tuple) || y.k == TV_DICT) { /* Python treats these as a mapping */
            bool has_spec = false;
            for (size_t i = 0; i + 1 < x.s->len; i++)
                if (x.s->p[i] == '%') {
                    if (x.s->p[i + 1] != '%') has_spec = true;
                    i++;
                }
            if (!has_spec) return tpl_apply_filter(c, "format", x, &fa, out);
        }
        if (y.k == TV_LIST && y.l->tuple) {
            fa.n = y.l->n;
            fa.v = y.l->v;
        } else {
            fa.n = 1;
            fa.v = &y;
        }
        return tpl_apply_filter(c, "format", x, &fa, out);
    }
    if (is_numv(x) && is_numv(y)) {
        bool fl = x.k == TV_FLOAT || y.k == TV_FLOAT;
        if (op == OP_DIV) {
            if (numd(y) == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "division by zero");
            *out = tv_float(numd(x) / numd(y));
            return true;
        }
        if (!fl) {
            int64_t a = numi(x), b = numi(y), r;
            switch (op) {
            case OP_ADD: if (__builtin_add_overflow(a, b, &r)) goto ovf; break;
            case OP_SUB: if (__builtin_sub_overflow(a, b, &r)) goto ovf; break;
            case OP_MUL: if (__builtin_mul_overflow(a, b, &r)) goto ovf; break;
            case OP_FLOORDIV: case OP_MOD:
                if (b == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "integer division or modulo by zero");
                if (a == INT64_MIN && b == -1) goto ovf;
                {
                    int64_t q = a / b, m = a % b;
                    if (m != 0 && ((m < 0) != (b < 0))) {
                        q--;
                        m += b;
                    }
                    r = op == OP_FLOORDIV ? q : m;
                }
                break;
            case OP_POW:
                if (b < 0) {
                    *out = tv_float(pow((double)a, (double)b));
                    return true;
                }
                r = 1;
                for (int64_t k = 0; k < b; k++)
                    if (__builtin_mul_overflow(r, a, &r)) goto ovf;
                break;
            default: goto bad;
            }
            *out = tv_int(r);
            return true;
        ovf:
            return tpl_fail(c, LMC_ERR_LIMIT, "integer overflow in '%s'", op_sym(op));
        }
        double a = numd(x), b = numd(y), r;
        switch (op) {
        case OP_ADD: r = a + b; break;
        case OP_SUB: r = a - b; break;
        case OP_MUL: r = a * b; break;
        case OP_FLOORDIV:
            if (b == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "float floor division by zero");
            r = floor(a / b);
            break;
        case OP_MOD:
            if (b == 0) return tpl_fail(c, LMC_ERR_TEMPLATE, "float modulo");
            r = fmod(a, b);
            if (r != 0 && ((r < 0) != (b < 0))) r += b;
            break;
        case OP_POW: r = pow(a, b); break;
        default: goto bad;
        }
        *out = tv_float(r);
        return true;
    }
    if (op == OP_ADD && x.k == TV_STR && y.k == TV_STR) {
        const tv_str *a = x.s, *b = y.s;
        bool markup = a->markup || b->markup;
        if (markup && !a->markup) a = tv_str_escape(&c->arena, a); /* Markup + str escapes the str */
        if (markup && !b->markup) b = tv_str_escape(&c->arena, b);
        tv_str *s = a && b ? tv_str_cat(&c->arena, a, b) : NULL;
        if (!s) return tpl_oom(c);
        s->markup = markup;
        *out = tv_strv(s);
        return true;
    }
    if (op == OP_ADD && x.k == TV_LIST && y.k == TV_LIST && x.l->tuple == y.l->tuple) {
        tv_list *l = tv_list_new(&c->arena, x.l->n + y.l->n);
        if (!l) return tpl_oom(c);
        l->tuple = x.l->tuple;
        for (size_t i = 0; i < x.l->n; i++) tv_list_push(&c->arena, l, x.l->v[i]);
        for (size_t i = 0; i < y.l->n; i++) tv_list_push(&c->arena, l, y.l->v[i]);
        *out = (tval){.k = TV_LIST, .l = l};
        return true;
    }
    if (op == OP_MUL && ((x.k == TV_STR || x.k == TV_LIST) && (y.k == TV_INT || y.k == TV_BOOL))) {
        int64_t k = numi(y);
        if (k < 0) k = 0;
        size_t unit = x.k == TV_STR ? x.s->len : x.l->n;
        if (unit && (uint64_t)k > (uint64_t)c->out_limit / unit)
            return tpl_fail(c, LMC_ERR_LIMIT, "repetition result exceeds %zu items", c->out_limit);
        if (x.k == TV_STR) {
            tv_str *s = tpl_alloc(&c->arena, sizeof *s + unit * (size_t)k + 1);
            if (!s) return tpl_oom(c);
            for (int64_t i = 0; i < k; i++) memcpy(s->p + unit * (size_t)i, x.s->p, unit);
            s->len = unit * (size_t)k;
            *out = tv_strv(s);
        } else {
            tv_list *l = tv_list_new(&c->arena, unit * (size_t)k);
            if (!l) return tpl_oom(c);
            for (int64_t i = 0; i < k; i++)
                for (size_t j = 0; j < unit; j++) tv_list_push(&c->arena, l, x.l->v[j]);
            *out = (tval){.k = TV_LIST, .l = l};
        }
        return true;
    }
    if (op == OP_MUL && (y.k == TV_STR || y.k == TV_LIST) && (x.k == TV_INT || x.k == TV_BOOL))
        return binop_v(c, op, y, x, out);
bad:
    if (op == OP_ADD && (x.k == TV_STR || x.k == TV_LIST)) /* Python's wording */
        return tpl_fail(c, LMC_ERR_TEMPLATE, "can only concatenate %s (not \"%s\") to %s", tv_type_name(x),
                        tv_type_name(y), tv_type_name(x));
    return tpl_fail(c, LMC_ERR_TEMPLATE, "unsupported operand type(s) for %s: '%s' and '%s'", op_sym(op),
                    tv_type_name(x), tv_type_name(y));
}

static bool contains(tpl_ctx *c, tval container, tval item, bool *out) {
    switch (container.k) {
    case TV_UNDEF: *out = false; return true;
    case TV_STR:
        if (item.k == TV_UNDEF) return undef_error(c, item);
        if (item.k != TV_STR)
            return tpl_fail(c, LMC_ERR_TEMPLATE, "'in <string>' requires string as left operand, not %s",
                            tv_type_name(item));
        *out = item.s->len == 0 || memmem(container.s->p, container.s->len, item.s->p, item.s->len) != NULL;
        return true;
    case TV_LIST:
        *out = false;
        for (size_t i = 0; i < container.l->n; i++)
            if (tv_equal(container.l->v[i], item)) *out = true;
        return true;
    case TV_DICT:
        if (item.k == TV_DICT || (item.k == TV_LIST && !item.l->tuple))
            return tpl_fail(c, LMC_ERR_TEMPLATE, "unhashable type: '%s'", tv_type_name(item));
        *out = item.k == TV_STR && tv_dict_get(container.d, item.s->p, item.s->len) != NULL;
        return true;
    default:
        return tpl_fail(c, LMC_ERR_TEMPLATE, "argument of type '%s' is not iterable", tv_type_name(container));
    }
}

static bool compare(tpl_ctx *c, int op, tval x, tval y, bool *out) {
    switch (op) {
    case OP_EQ: *out = tv_equal(x, y); return true;
    case OP_NE: *out = !tv_equal(x, y); return true;
    case OP_IN: return contains(c, y, x, out);
    case OP_NOTIN:
        if (!contains(c, y, x, out)) return false;
        *out = !*out;
        return true;
    default: break;
    }
    if (x.k == TV_UNDEF) return undef_error(c, x);
    if (y.k == TV_UNDEF) return undef_error(c, y);
    bool bad = false;
    int r = tv_compare(x, y, &bad);
    if (bad) {
        static const char *s[] = {"<", "<=", ">", ">="};
        return tpl_fail(c, LMC_ERR_TEMPLATE, "'%s' not supported between instances of '%s' and '%s'",
                        s[op - OP_LT], tv_type_name(x), tv_type_name(y));
    }
    *out = op == OP_LT ? r < 0 : op == OP_LE ? r <= 0 : op == OP_GT ? r > 0 : r >= 0;
    return true;
}

/* ------------------------------------------------------------ calls */
static bool eval_args(tpl_ctx *c, tpl_frame *f, const tpl_node *n, tpl_args *a) {
    memset(a, 0, sizeof *a);
    if (n->n) {
        a->v = tpl_alloc(&c->arena, n->n * sizeof(tval));
        if (!a->v) return tpl_oom(c);
        for (size_t i = 0; i < n->n; i++)
            if (!eval(c, f, n->kids[i], &a->v[i])) return false;
        a->n = n->n;
    }
    if (n->nkw) {
        a->kw = tpl_alloc(&c->arena, n->nkw * sizeof(tval));
        a->kwname = tpl_alloc(&c->arena, n->nkw * sizeof(tv_str *));
        if (!a->kw || !a->kwname) return tpl_oom(c);
        for (size_t i = 0; i < n->nkw; i++) {
            if (!eval(c, f, n->kwvals[i], &a->kw[i])) return false;
            a->kwname[i] = tv_str_new(&c->arena, n->kwnames[i], strlen(n->kwnames[i]));
            if (!a->kwname[i]) return tpl_oom(c);
        }
        a->nkw = n->nkw;
    }
    return true;
}

/* Run a macro (or a call block's caller) with output captured. */
static bool call_macro(tpl_ctx *c, const tv_func *fn, const tpl_args *a, tval caller, tval *out) {
    const tpl_node *m = fn->macro;
    if (++c->call_depth > TPL_MAX_CALL_DEPTH)
        return tpl_fail(c, LMC_ERR_LIMIT, "macro calls nested deeper than %d (recursion limit)", TPL_MAX_CALL_DEPTH);
    tpl_frame *fr = frame_new(c, fn->closure);
    if (!fr) return false;
    tv_list *varargs = tv_list_new(&c->arena, 0);
    tv_dict *kwargs = tv_dict_new(&c->arena, 0);
    if (!varargs || !kwargs) return tpl_oom(c);
    for (size_t i = 0; i < a->n; i++) {
        if (i < m->ntargets) {
            if (!frame_set(c, fr, m->targets[i], a->v[i])) return false;
        } else if (!tv_list_push(&c->arena, varargs, a->v[i])) {
            return tpl_oom(c);
        }
    }
    for (size_t i = 0; i < a->nkw; i++) {
        bool param = false;
        for (size_t k = 0; k < m->ntargets; k++)
            if (!strcmp(m->targets[k], a->kwname[i]->p)) param = true;
        if (param) {
            if (!frame_set(c, fr, a->kwname[i]->p, a->kw[i])) return false;
        } else if (!tv_dict_set(&c->arena, kwargs, a->kwname[i], a->kw[i])) {
            return tpl_oom(c);
        }
    }
    for (size_t k = 0; k < m->ntargets; k++) {
        if (tv_dict_get(fr->vars, m->targets[k], strlen(m->targets[k]))) continue;
        tval dv;
        if (m->kwvals && m->kwvals[k]) {
            if (!eval(c, fr, m->kwvals[k], &dv)) return false;
        } else {
            dv = tv_undef(tv_str_fmt(&c->arena, "parameter '%s' was not provided", m->targets[k]));
        }
        if (!frame_set(c, fr, m->targets[k], dv)) return false;
    }
    if (!frame_set(c, fr, "varargs", (tval){.k = TV_LIST, .l = varargs}) ||
        !frame_set(c, fr, "kwargs", (tval){.k = TV_DICT, .d = kwargs}))
        return false;
    if (caller.k == TV_FUNC && !frame_set(c, fr, "caller", caller)) return false;
    lmc_buf buf = {0}, *saved = c->out;
    size_t saved_limit = c->out_limit;
    c->out = &buf;
    c->out_limit = saved_limit > saved->len ? saved_limit - saved->len : 0;
    bool ok = exec_body(c, fr, m->b);
    c->out = saved;
    c->out_limit = saved_limit;
    c->brk = 0;
    c->call_depth--;
    if (ok) {
        tv_str *s = tv_str_new(&c->arena, buf.p ? buf.p : "", buf.len);
        if (!s) ok = tpl_oom(c);
        else *out = tv_strv(s);
    }
    lmc_buf_free(&buf);
    return ok;
}

bool tpl_call_value(tpl_ctx *c, tval f, const tpl_args *a, tval *out) {
    if (f.k == TV_UNDEF) return undef_error(c, f);
    if (f.k != TV_FUNC) return tpl_fail(c, LMC_ERR_TEMPLATE, "'%s' object is not callable", tv_type_name(f));
    if (f.fn->kind == TF_MACRO) return call_macro(c, f.fn, a, tv_undef(NULL), out);
    *out = tv_none();
    if (!tpl_charge(c, &f, a)) return false;
    return f.fn->fn(c, f.fn->self, a, out);
}

/* Filters chained over a placeholder (filter blocks, `set x | f`). */
static bool apply_chain(tpl_ctx *c, tpl_frame *f, const tpl_node *n, tval v, tval *out) {
    if (n->k != N_FILTER) {
        *out = v;
        return true;
    }
    tval in;
    if (!apply_chain(c, f, n->a, v, &in)) return false;
    tpl_args a;
    if (!eval_args(c, f, n, &a)) return false;
    set_loc(c, n);
    return tpl_apply_filter(c, n->name, in, &a, out);
}

/* ------------------------------------------------------------ expressions */
static bool eval(tpl_ctx *c, tpl_frame *f, const tpl_node *n, tval *out) {
    if (++c->depth > TPL_MAX_NEST * 4) {
        set_loc(c, n);
        return tpl_fail(c, LMC_ERR_LIMIT, "expression evaluation nested deeper than %d", TPL_MAX_NEST * 4);
    }
    bool ok = true;
    tval x, y;
    set_loc(c, n);
    if (!tpl_work(c, 1)) return false;
    switch (n->k) {
    case N_CONST: *out = n->cval; break;
    case N_NAME: {
        tval *v = frame_lookup(f, n->name);
        *out = v ? *v : tv_undef(tv_str_fmt(&c->arena, "'%s' is undefined", n->name));
        break;
    }
    case N_LIST: case N_TUPLE: {
        tv_list *l = tv_list_new(&c->arena, n->n);
        if (!l) {
            ok = tpl_oom(c);
            break;
        }
        l->tuple = n->k == N_TUPLE;
        for (size_t i = 0; ok && i < n->n; i++) {
            ok = eval(c, f, n->kids[i], &x);
            if (ok) tv_list_push(&c->arena, l, x);
        }
        *out = (tval){.k = TV_LIST, .l = l};
        break;
    }
    case N_DICT: {
        tv_dict *d = tv_dict_new(&c->arena, n->n / 2);
        if (!d) {
            ok = tpl_oom(c);
            break;
        }
        for (size_t i = 0; ok && i + 1 < n->n; i += 2) {
            ok = eval(c, f, n->kids[i], &x) && eval(c, f, n->kids[i + 1], &y);
            if (!ok) break;
            tv_str *k;
            if (x.k != TV_STR) {
                set_loc(c, n->kids[i]);
                ok = tpl_stringify(c, x, &k);
            } else {
                k = x.s;
            }
            if (ok && !tv_dict_set(&c->arena, d, k, y)) ok = tpl_oom(c);
        }
        *out = (tval){.k = TV_DICT, .d = d};
        break;
    }
    case N_ATTR:
        ok = eval(c, f, n->a, &x);
        if (ok) {
            set_loc(c, n);
            ok = get_attr(c, x, n->name, out);
        }
        break;
    case N_ITEM:
        ok = eval(c, f, n->a, &x) && eval(c, f, n->b, &y);
        if (ok) {
            set_loc(c, n);
            ok = get_item(c, x, y, out);
        }
        break;
    case N_SLICE: {
        tval a = tv_none(), b = tv_none(), s = tv_none();
        ok = eval(c, f, n->a, &x) && (!n->b || eval(c, f, n->b, &a)) && (!n->c || eval(c, f, n->c, &b)) &&
             (!n->d || eval(c, f, n->d, &s));
        if (ok) {
            set_loc(c, n);
            ok = do_slice(c, x, a, b, s, out);
        }
        break;
    }
    case N_CALL: {
        tpl_args a;
        ok = eval(c, f, n->a, &x) && eval_args(c, f, n, &a);
        if (ok) {
            set_loc(c, n);
            ok = tpl_call_value(c, x, &a, out);
        }
        break;
    }
    case N_FILTER: {
        tpl_args a;
        ok = eval(c, f, n->a, &x) && eval_args(c, f, n, &a);
        if (ok) {
            set_loc(c, n);
            ok = tpl_apply_filter(c, n->name, x, &a, out);
        }
        break;
    }
    case N_TEST: {
        tpl_args a;
        bool r = false;
        ok = eval(c, f, n->a, &x) && eval_args(c, f, n, &a);
        if (ok) {
            set_loc(c, n);
            ok = tpl_apply_test(c, n->name, x, &a, &r);
        }
        *out = tv_bool(r != n->negate);
        break;
    }
    case N_BIN:
        ok = eval(c, f, n->a, &x) && eval(c, f, n->b, &y);
        if (ok) {
            set_loc(c, n);
            ok = binop_v(c, n->op, x, y, out);
        }
        break;
    case N_NEG: case N_POS:
        ok = eval(c, f, n->a, &x);
        if (!ok) break;
        set_loc(c, n);
        if (x.k == TV_UNDEF) ok = undef_error(c, x);
        else if (x.k == TV_FLOAT) *out = tv_float(n->k == N_NEG ? -x.f : x.f);
        else if (x.k == TV_INT || x.k == TV_BOOL) {
            int64_t v = numi(x);
            if (n->k == N_NEG && v == INT64_MIN) ok = tpl_fail(c, LMC_ERR_LIMIT, "integer overflow in '-'");
            else *out = tv_int(n->k == N_NEG ? -v : v);
        } else {
            ok = tpl_fail(c, LMC_ERR_TEMPLATE, "bad operand type for unary %c: '%s'", n->k == N_NEG ? '-' : '+',
                          tv_type_name(x));
        }
        break;
    case N_NOT:
        ok = eval(c, f, n->a, &x);
        *out = tv_bool(!tv_truthy(x));
        break;
    case N_AND:
        ok = eval(c, f, n->a, &x);
        if (ok && tv_truthy(x)) ok = eval(c, f, n->b, &x);
        *out = x;
        break;
    case N_OR:
        ok = eval(c, f, n->a, &x);
        if (ok && !tv_truthy(x)) ok = eval(c, f, n->b, &x);
        *out = x;
        break;
    case N_CMP: {
        bool r = true;
        ok = eval(c, f, n->kids[0], &x);
        for (size_t i = 1; ok && r && i < n->n; i++) {
            ok = eval(c, f, n->kids[i], &y);
            if (!ok) break;
            set_loc(c, n);
            tpl_args ya = {.n = 1, .v = &y};
            ok = tpl_charge(c, &x, &ya) && compare(c, n->cmpops[i - 1], x, y, &r);
            x = y;
        }
        *out = tv_bool(r);
        break;
    }
    case N_COND:
        ok = eval(c, f, n->a, &x);
        if (!ok) break;
        if (tv_truthy(x)) ok = eval(c, f, n->b, out);
        else if (n->c) ok = eval(c, f, n->c, out);
        else *out = tv_undef(tv_str_fmt(&c->arena, "the inline if-expression on line %d evaluated to false and no "
                                        "else section was defined", n->line));
        break;
    default:
        ok = tpl_fail(c, LMC_ERR_TEMPLATE, "internal error: statement used as expression");
    }
    c->depth--;
    if (ok && c->arena.failed) return tpl_oom(c);
    return ok;
}

/* ------------------------------------------------------------ statements */
static bool iter_items(tpl_ctx *c, tval v, tv_list **out) {
    switch (v.k) {
    case TV_UNDEF: *out = tv_list_new(&c->arena, 0); break;
    case TV_LIST: *out = v.l; return true;
    case TV_DICT: {
        if (v.d->kind != TD_PLAIN) return tpl_fail(c, LMC_ERR_TEMPLATE, "'%s' object is not iterable", tv_type_name(v));
        tv_list *l = tv_list_new(&c->arena, v.d->n);
        if (!l) return tpl_oom(c);
        for (size_t i = 0; i < v.d->n; i++) tv_list_push(&c->arena, l, tv_strv(v.d->keys[i]));
        *out = l;
        return true;
    }
    case TV_STR: {
        tv_list *l = tv_list_new(&c->arena, v.s->len);
        if (!l) return tpl_oom(c);
        for (size_t i = 0; i < v.s->len;) {
            uint32_t cp;
            size_t nx = tpl_utf8_next(v.s->p, v.s->len, i, &cp);
            tv_str *s = tv_str_new(&c->arena, v.s->p + i, nx - i);
            if (!s) return tpl_oom(c);
            tv_list_push(&c->arena, l, tv_strv(s));
            i = nx;
        }
        *out = l;
        return true;
    }
    default: return tpl_fail(c, LMC_ERR_TEMPLATE, "'%s' object is not iterable", tv_type_name(v));
    }
    return *out ? true : tpl_oom(c);
}

static bool assign_targets(tpl_ctx *c, tpl_frame *f, const tpl_node *n, tval v) {
    if (n->ntargets == 1) return frame_set(c, f, n->targets[0], v);
    tv_list *items;
    if (v.k != TV_LIST && v.k != TV_STR && v.k != TV_DICT)
        return tpl_fail(c, LMC_ERR_TEMPLATE, "cannot unpack non-iterable %s object", tv_type_name(v));
    if (!iter_items(c, v, &items)) return false;
    if (items->n != n->ntargets)
        return tpl_fail(c, LMC_ERR_TEMPLATE, "%s values to unpack (expected %zu, got %zu)",
                        items->n > n->ntargets ? "too many" : "not enough", n->ntargets, items->n);
    for (size_t i = 0; i < n->ntargets; i++)
        if (!frame_set(c, f, n->targets[i], items->v[i])) return false;
    return true;
}

static bool loop_cycle(tpl_ctx *c, tval self, const tpl_args *a, tval *out) {
    if (!a->n) return tpl_fail(c, LMC_ERR_TEMPLATE, "no items for cycling given");
    tval *i0 = tv_dict_get(self.d, "index0", 6);
    *out = a->v[(size_t)i0->i % a->n];
    return true;
}

static bool exec_for(tpl_ctx *c, tpl_frame *f, const tpl_node *n) {
    tval seq;
    if (!eval(c, f, n->a, &seq)) return false;
    set_loc(c, n);
    tv_list *items;
    if (!iter_items(c, seq, &items)) return false;
    if (n->d) { /* loop filter: decided before loop.* is computed */
        tv_list *kept = tv_list_new(&c->arena, items->n);
        if (!kept) return tpl_oom(c);
        for (size_t i = 0; i < items->n; i++) {
            tpl_frame *tf = frame_new(c, f);
            tval cond;
            if (!tf || !assign_targets(c, tf, n, items->v[i]) || !eval(c, tf, n->d, &cond)) return false;
            if (tv_truthy(cond)) tv_list_push(&c->arena, kept, items->v[i]);
        }
        items = kept;
    }
    size_t len = items->n;
    /* One frame and one loop object serve every iteration: the frame is
     * emptied each time (Jinja gives each iteration fresh locals) and the
     * loop fields are overwritten, so long loops allocate nothing. */
    static const char *const names[] = {"index", "index0", "revindex", "revindex0", "first", "last",
                                        "length", "depth", "depth0", "cycle", "previtem", "nextitem"};
    enum { NF = sizeof names / sizeof names[0] };
    tpl_frame *it = frame_new(c, f);
    tv_dict *loop = tv_dict_new(&c->arena, NF);
    tv_func *cyc = tpl_alloc(&c->arena, sizeof *cyc);
    if (!it || !loop || !cyc) return tpl_oom(c);
    loop->kind = TD_LOOP;
    cyc->kind = TF_BUILTIN;
    cyc->name = "cycle";
    cyc->fn = loop_cycle;
    cyc->self = (tval){.k = TV_DICT, .d = loop};
    for (size_t k = 0; k < NF; k++) {
        tv_str *ks = tv_str_new(&c->arena, names[k], strlen(names[k]));
        if (!ks || !tv_dict_set(&c->arena, loop, ks, tv_none())) return tpl_oom(c);
    }
    for (size_t i = 0; i < len; i++) {
        if (++c->iterations > TPL_MAX_ITERATIONS) {
            set_loc(c, n);
            return tpl_fail(c, LMC_ERR_LIMIT, "more than %ld loop iterations",
                            TPL_MAX_ITERATIONS - c->iterations_base);
        }
        tval *lv = loop->vals;
        lv[0] = tv_int((int64_t)i + 1);
        lv[1] = tv_int((int64_t)i);
        lv[2] = tv_int((int64_t)(len - i));
        lv[3] = tv_int((int64_t)(len - i - 1));
        lv[4] = tv_bool(i == 0);
        lv[5] = tv_bool(i + 1 == len);
        lv[6] = tv_int((int64_t)len);
        lv[7] = tv_int(1);
        lv[8] = tv_int(0);
        lv[9] = (tval){.k = TV_FUNC, .fn = cyc};
        lv[10] = i > 0 ? items->v[i - 1] : tv_undef(NULL);
        lv[11] = i + 1 < len ? items->v[i + 1] : tv_undef(NULL);
        it->vars->n = 0;
        set_loc(c, n);
        if (!assign_targets(c, it, n, items->v[i])) return false;
        if (!frame_set(c, it, "loop", (tval){.k = TV_DICT, .d = loop})) return false;
        if (!exec_body(c, it, n->b)) return false;
        if (c->brk == 1) {
            c->brk = 0;
            break;
        }
        c->brk = 0;
    }
    if (len == 0 && n->c) return exec_body(c, f, n->c);
    return true;
}

static bool capture(tpl_ctx *c, tpl_frame *f, const tpl_node *body, tv_str **out) {
    lmc_buf buf = {0}, *saved = c->out;
    size_t saved_limit = c->out_limit;
    c->out = &buf;
    c->out_limit = saved_limit > saved->len ? saved_limit - saved->len : 0;
    bool ok = exec_body(c, f, body);
    c->out = saved;
    c->out_limit = saved_limit;
    if (ok && !(*out = tv_str_new(&c->arena, buf.p ? buf.p : "", buf.len))) ok = tpl_oom(c);
    lmc_buf_free(&buf);
    return ok;
}

static bool exec_stmt(tpl_ctx *c, tpl_frame *f, const tpl_node *n) {
    tval v;
    set_loc(c, n);
    if (!tpl_work(c, 1)) return false;
    switch (n->k) {
    case N_TEXT: return emit(c, n->cval.s->p, n->cval.s->len);
    case N_OUTPUT: {
        if (!eval(c, f, n->a, &v)) return false;
        if (v.k == TV_STR) return emit(c, v.s->p, v.s->len);
        lmc_buf b = {0};
        bool ok = tv_to_str(&b, v);
        ok = ok ? emit(c, b.p ? b.p : "", b.len) : tpl_oom(c);
        lmc_buf_free(&b);
        return ok;
    }
    case N_IF:
        for (const tpl_node *x = n; x;) {
            if (x->k != N_IF) return exec_body(c, f, x);
            if (!eval(c, f, x->a, &v)) return false;
            if (tv_truthy(v)) return exec_body(c, f, x->b);
            x = x->c;
        }
        return true;
    case N_FOR: return exec_for(c, f, n);
    case N_SET:
        if (!eval(c, f, n->a, &v)) return false;
        set_loc(c, n);
        if (n->name) {
            tval *ns = frame_lookup(f, n->targets[0]);
            if (!ns || ns->k != TV_DICT || ns->d->kind != TD_NAMESPACE)
                return tpl_fail(c, LMC_ERR_TEMPLATE, "cannot assign attribute on non-namespace object");
            tv_str *k = tv_str_new(&c->arena, n->name, strlen(n->name));
            if (!k || !tv_dict_set(&c->arena, ns->d, k, v)) return tpl_oom(c);
            return true;
        }
        return assign_targets(c, f, n, v);
    case N_SETBLOCK: {
        tv_str *s;
        if (!capture(c, f, n->b, &s)) return false;
        v = tv_strv(s);
        if (n->c && !apply_chain(c, f, n->c, v, &v)) return false;
        return frame_set(c, f, n->targets[0], v);
    }
    case N_MACRO: {
        tv_func *fn = tpl_alloc(&c->arena, sizeof *fn);
        if (!fn) return tpl_oom(c);
        fn->kind = TF_MACRO;
        fn->name = n->name;
        fn->macro = n;
        fn->closure = f;
        return frame_set(c, f, n->name, (tval){.k = TV_FUNC, .fn = fn});
    }
    case N_CALLBLOCK: {
        const tpl_node *call = n->a;
        tval callee;
        tpl_args a;
        if (!eval(c, f, call->a, &callee) || !eval_args(c, f, call, &a)) return false;
        set_loc(c, n);
        tv_func *cf = tpl_alloc(&c->arena, sizeof *cf);
        if (!cf) return tpl_oom(c);
        cf->kind = TF_MACRO;
        cf->name = "caller";
        cf->macro = n; /* params in targets/kwvals, body in b */
        cf->closure = f;
        if (callee.k != TV_FUNC || callee.fn->kind != TF_MACRO)
            return tpl_fail(c, LMC_ERR_TEMPLATE, "call block needs a macro, got '%s'", tv_type_name(callee));
        if (!call_macro(c, callee.fn, &a, (tval){.k = TV_FUNC, .fn = cf}, &v)) return false;
        return emit(c, v.s->p, v.s->len);
    }
    case N_FILTERBLOCK: {
        tv_str *s;
        if (!capture(c, f, n->b, &s) || !apply_chain(c, f, n->c, tv_strv(s), &v)) return false;
        lmc_buf b = {0};
        bool ok = tv_to_str(&b, v);
        ok = ok ? emit(c, b.p ? b.p : "", b.len) : tpl_oom(c);
        lmc_buf_free(&b);
        return ok;
    }
    case N_BREAK: c->brk = 1; return true;
    case N_CONTINUE: c->brk = 2; return true;
    case N_BODY: return exec_body(c, f, n);
    default: return tpl_fail(c, LMC_ERR_TEMPLATE, "internal error: expression used as statement");
    }
}

static bool exec_body(tpl_ctx *c, tpl_frame *f, const tpl_node *body) {
    if (!body) return true;
    if (++c->depth > TPL_MAX_NEST * 4) return tpl_fail(c, LMC_ERR_LIMIT, "blocks nested too deeply");
    for (size_t i = 0; i < body->n; i++) {
        if (!exec_stmt(c, f, body->kids[i])) return false;
        if (c->brk) break;
    }
    c->depth--;
    return true;
}

lmc_status tpl_render(const tpl_program *prog, tv_dict *globals, tpl_ctx *c) {
    tpl_frame *root = tpl_alloc(&c->arena, sizeof *root);
    tpl_frame *top = root ? frame_new(c, root) : NULL;
    if (!top) return c->failed ? c->st : lmc_err(LMC_ERR_NOMEM, "chat template: out of memory");
    root->vars = globals;
    c->line = c->col = 1;
    if (!exec_body(c, top, prog->root)) return c->st ? c->st : LMC_ERR_TEMPLATE;
    return LMC_OK;
}
