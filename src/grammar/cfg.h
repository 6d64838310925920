/* A context-free grammar over bytes: the one form that the GBNF parser, the
 * regular-expression compiler and the JSON-schema compiler build, and that
 * the matcher (matcher.c) runs. Character classes over Unicode code points
 * are expanded here into alternatives of UTF-8 byte ranges, and repetition
 * into right-recursive rules, so the matcher sees only byte sets, rule
 * references and the end of an alternative. */
#ifndef LMC_GRAMMAR_CFG_H
#define LMC_GRAMMAR_CFG_H
#include "lmc.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t w[8];
} lmc_byteset;
static inline bool lmc_byteset_has(const lmc_byteset *s, unsigned b) {
    return (s->w[b >> 5] >> (b & 31)) & 1u;
}
static inline void lmc_byteset_add_range(lmc_byteset *s, unsigned lo, unsigned hi) {
    for (unsigned b = lo; b <= hi; b++) s->w[b >> 5] |= 1u << (b & 31);
}

/* Symbols: >= 0 a rule, CFG_END closes an alternative, any other negative
 * value v names terminal byte set -(v + 1). */
#define CFG_END INT32_MIN
static inline bool cfg_is_term(int32_t s) { return s < 0 && s != CFG_END; }
static inline int32_t cfg_term(int32_t set) { return -(set + 1); }
static inline int32_t cfg_term_set(int32_t s) { return -s - 1; }

/* A sequence under construction (one alternative). */
typedef struct {
    int32_t *v;
    size_t n, cap;
} cfg_seq;
bool cfg_seq_push(cfg_seq *q, int32_t sym);
void cfg_seq_free(cfg_seq *q);

#define CFG_MAX_RULES (1u << 20)
#define CFG_MAX_SYMS (1u << 24)
#define CFG_MAX_REPEAT 2000 /* largest finite bound of a counted repetition */

typedef struct {
    char *name;
    uint32_t *alts; /* start positions in sym */
    size_t n_alts, cap_alts;
    bool defined;
} cfg_rule;

typedef struct {
    int32_t *sym; /* flattened alternatives, each closed by CFG_END */
    size_t n_sym, cap_sym;
    lmc_byteset *sets;
    size_t n_sets, cap_sets;
    cfg_rule *rules;
    size_t n_rules, cap_rules;
    int32_t root;
    bool *nullable; /* per rule, after cfg_finalize */
    const char *what; /* prefix of error messages ("grammar", "regex", ...) */
    bool json_strings; /* from a JSON schema: its rule "str-char" is a JSON string character */
} lmc_cfg;

void cfg_init(lmc_cfg *g, const char *what);
void cfg_free(lmc_cfg *g);
/* The rule named `name`, created (undefined) when new; -1 after an error. */
int32_t cfg_rule_named(lmc_cfg *g, const char *name, size_t len);
/* A fresh anonymous rule; -1 after an error. */
int32_t cfg_rule_anon(lmc_cfg *g);
/* Add an alternative (copied, CFG_END appended) and mark the rule defined. */
lmc_status cfg_add_alt(lmc_cfg *g, int32_t rule, const int32_t *syms, size_t n);
/* A terminal symbol for the byte set; 0 after an error (0 is never a terminal). */
int32_t cfg_set_sym(lmc_cfg *g, const lmc_byteset *s);
/* Push one terminal per byte of s[0..n). */
lmc_status cfg_push_bytes(lmc_cfg *g, cfg_seq *q, const char *s, size_t n);

/* A code point class: sorted or not, possibly overlapping inclusive ranges. */
typedef struct {
    uint32_t (*r)[2];
    size_t n, cap;
} cfg_class;
bool cfg_class_add(cfg_class *c, uint32_t lo, uint32_t hi);
void cfg_class_free(cfg_class *c);
/* Sort and merge in place (complemented over the scalar values when
 * `negate`), surrogates removed; false on OOM. */
bool cfg_class_normalize(cfg_class *c, bool negate);
/* Sort, merge, optionally complement over the Unicode scalar values (no
 * surrogates), then return a symbol matching one UTF-8 encoded member.
 * An empty class is an error naming `where`. */
lmc_status cfg_class_sym(lmc_cfg *g, cfg_class *c, bool negate, const char *where, int32_t *out);

/* x{min,max} (max < 0: unbounded) of symbol x, as one symbol. */
lmc_status cfg_repeat(lmc_cfg *g, int32_t x, long min, long max, int32_t *out);
/* A rule with the sequence as its only alternative, as one symbol. */
lmc_status cfg_group(lmc_cfg *g, const cfg_seq *q, int32_t *out);

/* Check the grammar before use: every referenced rule defined, every rule
 * productive (derives some finite string), no left recursion (which the
 * matcher's top-down expansion cannot run); compute nullable. root must be
 * set. Errors name the rule. */
lmc_status cfg_finalize(lmc_cfg *g);

#endif
