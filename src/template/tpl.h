/* Internal interface of the chat-template interpreter: a sandboxed subset of
 * Jinja2 configured the way transformers configures it (trim_blocks,
 * lstrip_blocks, loop controls, no autoescape, default Undefined).
 *
 * Memory: every runtime value lives in a per-render arena that is released
 * in one go when the render ends, so values are plain pointers without
 * reference counts; the AST lives in the template's own arena. */
#ifndef LMC_TEMPLATE_TPL_H
#define LMC_TEMPLATE_TPL_H
#include "base/buf.h"
#include "lmc.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ------------------------------------------------------------ limits */
#define TPL_MAX_SOURCE (4u << 20)       /* template source bytes */
#define TPL_MAX_OUTPUT (32u << 20)      /* rendered bytes */
#define TPL_MAX_ITERATIONS 5000000L     /* loop iterations per render */
/* Work units per render (see tpl_work): one per node evaluated plus the
 * size of every value a filter, test, call or operator reads. */
#define TPL_MAX_WORK 100000000ULL
#define TPL_CLOCK_EVERY 65536u          /* work units between clock reads */
#define TPL_MAX_CALL_DEPTH 100          /* nested macro calls */
#define TPL_MAX_NEST 200                /* parser / evaluator nesting */
#define TPL_MAX_ARENA (512u << 20)      /* memory per render */

/* ------------------------------------------------------------ arena */
typedef struct tpl_chunk tpl_chunk;
typedef struct {
    tpl_chunk *head;
    size_t used_total, limit;
    bool failed;     /* an allocation hit the limit or OOM */
    bool over_limit; /* ... because of the limit */
} tpl_arena;
void *tpl_alloc(tpl_arena *a, size_t n); /* zeroed; NULL on failure */
void tpl_arena_free(tpl_arena *a);

/* ------------------------------------------------------------ values */
typedef enum {
    TV_UNDEF, TV_NONE, TV_BOOL, TV_INT, TV_FLOAT, TV_STR,
    TV_LIST, /* also tuples (flag) */
    TV_DICT, /* also namespaces and loop objects (flag) */
    TV_FUNC,
} tv_kind;

typedef struct tv_str tv_str;
typedef struct tv_list tv_list;
typedef struct tv_dict tv_dict;
typedef struct tv_func tv_func;

typedef struct {
    tv_kind k;
    union {
        bool b;
        int64_t i;
        double f;
        tv_str *s;   /* TV_STR; TV_UNDEF: hint message or NULL */
        tv_list *l;
        tv_dict *d;
        tv_func *fn;
    };
} tval;

struct tv_str {
    size_t len;
    bool markup; /* Jinja Markup (from |safe, |escape): `+` escapes plain operands */
    char p[];    /* NUL-terminated */
};
struct tv_list {
    size_t n, cap;
    bool tuple;
    unsigned char view; /* 1/2/3: dict keys()/values()/items() (only their repr differs) */
    tval *v;
};
enum { TD_PLAIN, TD_NAMESPACE, TD_LOOP };
struct tv_dict {
    size_t n, cap;
    int kind;
    tv_str **keys;
    tval *vals;
};

struct tpl_ctx;
struct tpl_node;
typedef struct {
    size_t n;
    tval *v;
    size_t nkw;
    tv_str **kwname;
    tval *kw;
} tpl_args;
typedef bool (*tpl_builtin_fn)(struct tpl_ctx *c, tval self, const tpl_args *a, tval *out);
enum { TF_BUILTIN, TF_MACRO };
struct tv_func {
    int kind;
    const char *name;
    tpl_builtin_fn fn;   /* TF_BUILTIN */
    tval self;           /* bound receiver for methods */
    const struct tpl_node *macro; /* TF_MACRO */
    struct tpl_frame *closure;
    const struct tpl_node *caller_body; /* call-block body for caller() */
    struct tpl_frame *caller_frame;
};

/* ------------------------------------------------------------ AST */
typedef enum {
    /* expressions */
    N_CONST, N_NAME, N_LIST, N_TUPLE, N_DICT, N_ATTR, N_ITEM, N_SLICE, N_CALL,
    N_FILTER, N_TEST, N_BIN, N_NEG, N_POS, N_NOT, N_AND, N_OR, N_CMP, N_COND,
    /* statements */
    N_TEXT, N_OUTPUT, N_IF, N_FOR, N_SET, N_SETBLOCK, N_MACRO, N_CALLBLOCK,
    N_FILTERBLOCK, N_BREAK, N_CONTINUE, N_BODY,
} tpl_nkind;

typedef struct tpl_node tpl_node;
struct tpl_node {
    tpl_nkind k;
    int line, col;
    int op;              /* N_BIN / N_CMP operator */
    bool negate;         /* N_TEST "is not" */
    tval cval;           /* N_CONST */
    const char *name;    /* N_NAME, N_ATTR, N_FILTER, N_TEST, N_MACRO, set target attr */
    tpl_node *a, *b, *c; /* operands; N_IF: cond/then/else; N_FOR: iter/body/else */
    tpl_node *d;         /* N_FOR: filter condition; N_SLICE step */
    size_t n;            /* children count */
    tpl_node **kids;     /* list items, dict k/v pairs, call args, body stmts, cmp operands */
    size_t nkw;
    const char **kwnames; /* call keyword names / macro parameter names */
    tpl_node **kwvals;    /* call keyword values / macro defaults (NULL = none) */
    const char **targets; /* N_FOR / N_SET targets */
    size_t ntargets;
    int *cmpops;          /* N_CMP operators, n-1 of them */
};

/* Binary and comparison operators. */
enum { OP_ADD = 1, OP_SUB, OP_MUL, OP_DIV, OP_FLOORDIV, OP_MOD, OP_POW, OP_CONCAT,
       OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE, OP_IN, OP_NOTIN };

typedef struct {
    tpl_arena arena;
    tpl_node *root;
} tpl_program;

/* Parse `src` into `prog` (arena owned by prog). Errors: LMC_ERR_TEMPLATE
 * with "line L, column C". */
lmc_status tpl_parse(const char *src, size_t len, tpl_program *prog);

/* ------------------------------------------------------------ evaluator */
typedef struct tpl_frame tpl_frame;
struct tpl_frame {
    tpl_frame *parent;
    tv_dict *vars;
};

typedef struct tpl_ctx {
    tpl_arena arena;
    lmc_buf *out;
    size_t out_limit;
    long iterations, iterations_base; /* base: offset that lowers the cap */
    uint64_t work, work_limit, next_clock;
    double deadline, seconds; /* CLOCK_MONOTONIC deadline and its budget; 0: none */
    int depth, call_depth;
    int line, col; /* location of the node being evaluated */
    bool failed;
    lmc_status st;
    int brk; /* 1 = break, 2 = continue pending */
} tpl_ctx;

/* Render with the given global variables (a dict). */
lmc_status tpl_render(const tpl_program *prog, tv_dict *globals, tpl_ctx *c);

/* Charge `units` of work; false (LMC_ERR_LIMIT) once over the work or
 * time budget. tpl_charge charges for reading `v` and the args (either may
 * be NULL): strings by bytes/16, lists and dicts by item count. */
bool tpl_work(tpl_ctx *c, uint64_t units);
bool tpl_charge(tpl_ctx *c, const tval *v, const tpl_args *a);
double tpl_now(void);

/* Fail the render with a message located at the current node. */
bool tpl_fail(tpl_ctx *c, lmc_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
bool tpl_oom(tpl_ctx *c);
/* v as a str (itself when it is one), in the template's arena. */
bool tpl_stringify(tpl_ctx *c, tval v, tv_str **out);

/* value helpers (value.c) */
tval tv_undef(tv_str *hint);
tval tv_none(void);
tval tv_bool(bool b);
tval tv_int(int64_t i);
tval tv_float(double f);
tval tv_strv(tv_str *s);
tv_str *tv_str_new(tpl_arena *a, const char *p, size_t n);
tv_str *tv_str_cat(tpl_arena *a, const tv_str *x, const tv_str *y);
tv_str *tv_str_fmt(tpl_arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* HTML-escape like markupsafe (& < > " ') into a new Markup string. */
tv_str *tv_str_escape(tpl_arena *a, const tv_str *s);
tv_list *tv_list_new(tpl_arena *a, size_t cap);
bool tv_list_push(tpl_arena *a, tv_list *l, tval v);
tv_dict *tv_dict_new(tpl_arena *a, size_t cap);
bool tv_dict_set(tpl_arena *a, tv_dict *d, tv_str *key, tval v);
tval *tv_dict_get(const tv_dict *d, const char *key, size_t klen);
bool tv_truthy(tval v);
const char *tv_type_name(tval v); /* Python-style: 'str', 'list', 'dict object'... */
/* Python str() / repr() into buf. false on OOM. */
bool tv_to_str(lmc_buf *b, tval v);
bool tv_repr(lmc_buf *b, tval v);
void tv_py_float(double f, char *buf, size_t n);
/* json.dumps of one string (ensure_ascii=False) and of one float (NaN,
 * Infinity, else repr): shared by tojson and the tool-call re-serializer. */
bool tv_json_str(lmc_buf *b, const char *p, size_t n);
bool tv_json_float(lmc_buf *b, double f);
/* Python json.dumps(ensure_ascii=False, indent, separators, sort_keys).
 * indent < 0: none. Returns false and sets *bad_type when a value can't be
 * serialised. */
typedef struct {
    int indent;
    const char *item_sep, *key_sep;
    bool sort_keys;
} tv_json_opts;
bool tv_to_json(lmc_buf *b, tval v, const tv_json_opts *o, int level, const char **bad_type);
tval tv_from_json(tpl_arena *a, json_object *j, bool *ok);
bool tv_equal(tval x, tval y);
/* Python ordering; false when the types don't order (sets *bad). */
int tv_compare(tval x, tval y, bool *bad);

/* UTF-8 helpers */
size_t tpl_utf8_len(const char *p, size_t n); /* code points */
size_t tpl_utf8_next(const char *p, size_t n, size_t i, uint32_t *cp);
bool tpl_is_py_space(uint32_t cp);

/* builtins.c */
bool tpl_apply_filter(tpl_ctx *c, const char *name, tval v, const tpl_args *a, tval *out);
bool tpl_apply_test(tpl_ctx *c, const char *name, tval v, const tpl_args *a, bool *out);
bool tpl_get_method(tpl_ctx *c, tval obj, const char *name, tval *out); /* false: none */
bool tpl_call_value(tpl_ctx *c, tval f, const tpl_args *a, tval *out);
void tpl_add_globals(tpl_ctx *c, tv_dict *g);

#endif
