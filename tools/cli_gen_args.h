/* Generation flags shared by `lmc generate` and `lmc chat` (header-only:
 * each command includes it once). */
#ifndef LMC_TOOLS_CLI_GEN_ARGS_H
#define LMC_TOOLS_CLI_GEN_ARGS_H
#include "cli_progress.h"
#include "cli_io.h"
#include "lmc.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LMC_CLI_GEN_HELP                                                              \
    "  --max-tokens N             tokens to generate (default 256)\n"                \
    "  --max-context N            context length: prompt + output (default: the model's\n" \
    "                             max_position_embeddings; a longer prompt is an error)\n" \
    "  --temp T                   sampling temperature (default 0: greedy)\n"        \
    "  --top-p P                  nucleus sampling mass (default 1: off)\n"          \
    "  --top-k K                  keep the K most likely tokens (default 0: off)\n"  \
    "  --min-p M                  keep tokens with p >= M * p_max (default 0: off)\n" \
    "  --repetition-penalty R     penalise recent tokens (default 1: off)\n"         \
    "  --repetition-context-size N  tokens the penalty looks back over (default 20)\n" \
    "  --presence-penalty P       subtract P from tokens seen recently (default 0)\n"  \
    "  --frequency-penalty F      subtract F per recent occurrence (default 0)\n"     \
    "  --penalty-context-size N   tokens those two look back over (default 20)\n"     \
    "  --seed S                   random seed (default 0)\n"                         \
    "  --stop STR                 stop string (repeatable)\n"                         \
    "  --json-schema FILE         constrain the output to this JSON schema\n"        \
    "  --regex RE                 constrain the output to match this regular expression\n" \
    "  --grammar FILE             constrain the output to this GBNF grammar (root rule)\n"

typedef struct {
    lmc_gen_params gen;
    const char **stops;
    size_t n_stops;
    const char *json_schema, *regex, *grammar; /* constraint sources (one at most) */
} lmc_cli_gen_args;

static inline void lmc_cli_gen_args_init(lmc_cli_gen_args *a) {
    memset(a, 0, sizeof *a);
    lmc_gen_params_default(&a->gen);
}

static inline void lmc_cli_gen_args_free(lmc_cli_gen_args *a) {
    free(a->stops);
    a->stops = NULL;
    lmc_grammar_free(a->gen.grammar);
    a->gen.grammar = NULL;
}

/* Compile the constraint flags into gen.grammar; false after an error. */
static inline bool lmc_cli_build_grammar(lmc_cli_gen_args *a) {
    int n = !!a->json_schema + !!a->regex + !!a->grammar;
    if (n > 1) {
        fprintf(stderr, "lmc: --json-schema, --regex and --grammar exclude each other\n");
        return false;
    }
    if (n == 0) return true;
    const char *path = a->json_schema ? a->json_schema : a->grammar;
    char *text = NULL;
    size_t len = 0;
    lmc_status st = LMC_OK;
    if (path && !(text = cli_read_file(a->json_schema ? "lmc: --json-schema" : "lmc: --grammar",
                                       path, (size_t)16 << 20, &len)))
        return false;
    {
        if (a->json_schema) st = lmc_grammar_from_json_schema(text, &a->gen.grammar);
        else if (a->grammar) st = lmc_grammar_from_gbnf(text, &a->gen.grammar);
        else st = lmc_grammar_from_regex(a->regex, &a->gen.grammar);
    }
    free(text);
    if (st) {
        fprintf(stderr, "lmc: %s: %s\n", a->json_schema ? "--json-schema" : a->grammar ? "--grammar" : "--regex",
                lmc_last_error());
        return false;
    }
    return true;
}

static inline bool lmc_cli_num(const char *flag, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double d = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || errno || !isfinite(d) || d < lo || d > hi) {
        fprintf(stderr, "lmc: %s expects a number in [%g, %g], got '%s'\n", flag, lo, hi,
                v ? v : "(missing)");
        return false;
    }
    *out = d;
    return true;
}

static inline bool lmc_cli_int(const char *flag, const char *v, long long lo, long long hi,
                               long long *out) {
    char *end;
    errno = 0;
    long long d = v ? strtoll(v, &end, 10) : 0;
    if (!v || end == v || *end || errno || d < lo || d > hi) {
        fprintf(stderr, "lmc: %s expects an integer in [%lld, %lld], got '%s'\n", flag, lo, hi,
                v ? v : "(missing)");
        return false;
    }
    *out = d;
    return true;
}

/* Consume a generation flag: returns how many argv entries it used (0 when
 * `a` is not one of these flags), or -1 after printing an error. */
static inline int lmc_cli_gen_arg(lmc_cli_gen_args *g, const char *a, const char *v) {
    double d;
    long long n;
    lmc_sampler_params *s = &g->gen.sampler;
    if (!strcmp(a, "--max-tokens")) {
        if (!lmc_cli_int(a, v, 0, 1 << 24, &n)) return -1;
        g->gen.max_tokens = (size_t)n;
    } else if (!strcmp(a, "--max-context")) {
        if (!lmc_cli_int(a, v, 1, INT64_MAX, &n)) return -1;
        g->gen.max_context = (size_t)n;
    } else if (!strcmp(a, "--temp")) {
        if (!lmc_cli_num(a, v, 0, 100, &d)) return -1;
        s->temperature = (float)d;
    } else if (!strcmp(a, "--top-p")) {
        if (!lmc_cli_num(a, v, 0, 1, &d)) return -1;
        s->top_p = (float)d;
    } else if (!strcmp(a, "--top-k")) {
        if (!lmc_cli_int(a, v, 0, INT32_MAX, &n)) return -1;
        s->top_k = (int32_t)n;
    } else if (!strcmp(a, "--min-p")) {
        if (!lmc_cli_num(a, v, 0, 1, &d)) return -1;
        s->min_p = (float)d;
    } else if (!strcmp(a, "--repetition-penalty")) {
        if (!lmc_cli_num(a, v, 0, 100, &d)) return -1;
        s->repetition_penalty = (float)d;
    } else if (!strcmp(a, "--repetition-context-size")) {
        if (!lmc_cli_int(a, v, 0, INT32_MAX, &n)) return -1;
        s->repetition_context_size = (int32_t)n;
    } else if (!strcmp(a, "--presence-penalty")) {
        if (!lmc_cli_num(a, v, -100, 100, &d)) return -1;
        s->presence_penalty = (float)d;
    } else if (!strcmp(a, "--frequency-penalty")) {
        if (!lmc_cli_num(a, v, -100, 100, &d)) return -1;
        s->frequency_penalty = (float)d;
    } else if (!strcmp(a, "--penalty-context-size")) {
        if (!lmc_cli_int(a, v, 0, INT32_MAX, &n)) return -1;
        s->penalty_context_size = (int32_t)n;
    } else if (!strcmp(a, "--seed")) {
        if (!lmc_cli_int(a, v, 0, INT64_MAX, &n)) return -1;
        s->seed = (uint64_t)n;
    } else if (!strcmp(a, "--num-draft-tokens")) {
        if (!lmc_cli_int(a, v, 1, 64, &n)) return -1;
        g->gen.num_draft_tokens = (size_t)n;
    } else if (!strcmp(a, "--json-schema") || !strcmp(a, "--regex") || !strcmp(a, "--grammar")) {
        if (!v || !*v) {
            fprintf(stderr, "lmc: %s expects a value\n", a);
            return -1;
        }
        const char **slot = a[2] == 'j' ? &g->json_schema : a[2] == 'r' ? &g->regex : &g->grammar;
        *slot = v;
    } else if (!strcmp(a, "--stop")) {
        if (!v || !*v) {
            fprintf(stderr, "lmc: --stop expects a non-empty string\n");
            return -1;
        }
        const char **p = realloc(g->stops, (g->n_stops + 1) * sizeof *p);
        if (!p) return -1;
        g->stops = p;
        g->stops[g->n_stops++] = v;
        g->gen.stop = g->stops;
        g->gen.n_stop = g->n_stops;
    } else {
        return 0;
    }
    return 2;
}

/* One command-specific option: a flag with a value (`value` set) or a
 * switch (`on` set). */
typedef struct {
    const char *name, *alias; /* alias may be NULL */
    const char **value;
    bool *on;
} lmc_cli_opt;

/* Parses argv[1..]: the generation flags into `g` (none when g is NULL),
 * then `opts` (ended by an entry with no name), and -h/--help. Returns -1
 * when the command should go on, else its exit code (0 after printing
 * help, 2 after an error). */
static inline int lmc_cli_parse(const char *cmd, int argc, char **argv, const lmc_cli_opt *opts,
                                lmc_cli_gen_args *g, void (*usage)(FILE *)) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        int used = g ? lmc_cli_gen_arg(g, a, v) : 0;
        if (used < 0) return 2;
        if (used > 0) {
            i += used - 1;
            continue;
        }
        const lmc_cli_opt *o = opts;
        while (o->name && strcmp(a, o->name) && !(o->alias && !strcmp(a, o->alias))) o++;
        if (o->name && o->value) {
            if (!v) {
                fprintf(stderr, "lmc %s: %s needs a value\n", cmd, a);
                return 2;
            }
            *o->value = v;
            i++;
        } else if (o->name) {
            *o->on = true;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "lmc %s: unknown option '%s'\n", cmd, a);
            usage(stderr);
            return 2;
        }
    }
    if (g && !lmc_cli_build_grammar(g)) return 2;
    return -1;
}

static inline bool lmc_cli_parse_device(const char *v, lmc_device *out) {
    if (!strcmp(v, "cpu")) *out = LMC_DEVICE_CPU;
    else if (!strcmp(v, "cuda")) *out = LMC_DEVICE_CUDA;
    else {
        fprintf(stderr, "lmc: --device expects cpu or cuda, got '%s'\n", v);
        return false;
    }
    return true;
}

/* "1,2,3" -> ids (lmc_free). */
static inline lmc_status lmc_cli_parse_ids(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 1;
    for (const char *p = s; *p; p++) cap += *p == ',';
    int32_t *v = malloc(cap * sizeof *v);
    if (!v) return LMC_ERR_NOMEM;
    size_t k = 0;
    const char *p = s;
    for (;;) {
        char *end;
        errno = 0;
        long long x = strtoll(p, &end, 10);
        if (end == p || errno || x < 0 || x > INT32_MAX || (*end && *end != ',')) {
            free(v);
            fprintf(stderr, "lmc: --prompt-ids: bad token id at '%s'\n", p);
            return LMC_ERR_INVALID_ARG;
        }
        v[k++] = (int32_t)x;
        if (!*end) break;
        p = end + 1;
    }
    *ids = v;
    *n = k;
    return LMC_OK;
}

/* Streams each response's text to stdout. */
static inline bool lmc_cli_print_cb(void *user, const lmc_gen_response *r) {
    (void)user;
    fputs(r->text, stdout);
    fflush(stdout);
    return true;
}

/* Loads the model (and the draft model when draft_dir is set) with the same
 * tokenizer directory and device; the caller frees both contexts. */
static inline lmc_status lmc_cli_load_contexts(const char *model, const char *draft_dir,
                                               const char *tokenizer, lmc_device dev,
                                               lmc_context **ctx, lmc_context **draft) {
    lmc_load_options lo = {.model_dir = model, .tokenizer_dir = tokenizer, .device = dev,
                           .progress = cli_load_progress};
    lmc_status st = lmc_context_load(&lo, ctx);
    cli_progress_done();
    if (!st && draft_dir) {
        lmc_load_options dlo = {.model_dir = draft_dir, .tokenizer_dir = tokenizer, .device = dev};
        st = lmc_context_load(&dlo, draft);
    }
    return st;
}

static inline void lmc_cli_print_stats(FILE *f, const lmc_gen_stats *s) {
    fprintf(f, "==========\n");
    fprintf(f, "Prompt: %zu tokens, %.3f tokens-per-sec\n", s->prompt_tokens, s->prompt_tps);
    fprintf(f, "Generation: %zu tokens, %.3f tokens-per-sec\n", s->generation_tokens,
            s->generation_tps);
    if (s->draft_proposed)
        fprintf(f, "Draft acceptance: %zu/%zu (%.1f%%)\n", s->draft_accepted, s->draft_proposed,
                100.0 * (double)s->draft_accepted / (double)s->draft_proposed);
    fprintf(f, "Peak memory: %.3f GB\n", (double)s->peak_memory_bytes / 1e9);
}

#endif
