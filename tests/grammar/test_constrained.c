/* Constrained generation from a random-weight model (its unconstrained
 * output is noise): 30 JSON schemas x 10 seeded samples must all parse
 * (json-c) and validate against the schema (a validator written here,
 * with PCRE2 for patterns, independent of the schema compiler); GBNF
 * grammars and regular expressions likewise (checked by PCRE2 and by hand);
 * eos only when the grammar accepts (every run ends with "stop"). */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "base/buf.h"
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "lm/tiny_model.h"
#include "lmc.h"
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#define SAMPLES 10
#define MAX_TOKENS 400

/* ------------------------------------------------------------ validator */
static bool re_search(const char *pattern, const char *s, bool whole) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | (whole ? PCRE2_ANCHORED | PCRE2_ENDANCHORED : 0),
                                   &err, &off, NULL);
    if (!re) return false;
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static size_t cp_len(const char *s) {
    size_t n = 0;
    for (; *s; s++) n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

static bool json_equal(json_object *a, json_object *b) {
    const char *x = json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN);
    char *xs = strdup(x);
    bool eq = !strcmp(xs, json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN));
    free(xs);
    return eq;
}

static json_object *kw(json_object *s, const char *k) {
    json_object *v = NULL;
    return json_object_object_get_ex(s, k, &v) ? v : NULL;
}

static bool type_ok(const char *t, json_object *v) {
    json_type jt = json_object_get_type(v);
    if (!strcmp(t, "object")) return jt == json_type_object;
    if (!strcmp(t, "array")) return jt == json_type_array;
    if (!strcmp(t, "string")) return jt == json_type_string;
    if (!strcmp(t, "boolean")) return jt == json_type_boolean;
    if (!strcmp(t, "null")) return v == NULL || jt == json_type_null;
    if (!strcmp(t, "integer"))
        return jt == json_type_int || (jt == json_type_double && json_object_get_double(v) == (double)(long long)json_object_get_double(v));
    if (!strcmp(t, "number")) return jt == json_type_int || jt == json_type_double;
    return false;
}

static bool validate(json_object *root, json_object *s, json_object *v, char *why, size_t wn);

static bool fail(char *why, size_t wn, const char *what) {
    snprintf(why, wn, "%s", what);
    return false;
}

static bool validate(json_object *root, json_object *s, json_object *v, char *why, size_t wn) {
    json_object *x;
    if ((x = kw(s, "$ref"))) {
        const char *r = json_object_get_string(x);
        json_object *defs = kw(root, "$defs"), *t = defs ? kw(defs, r + 8) : NULL;
        return t ? validate(root, t, v, why, wn) : fail(why, wn, "bad $ref");
    }
    if ((x = kw(s, "anyOf"))) {
        for (size_t i = 0; i < json_object_array_length(x); i++)
            if (validate(root, json_object_array_get_idx(x, i), v, why, wn)) return true;
        return fail(why, wn, "no anyOf branch");
    }
    if ((x = kw(s, "const")) && !json_equal(x, v)) return fail(why, wn, "const");
    if ((x = kw(s, "enum"))) {
        bool any = false;
        for (size_t i = 0; i < json_object_array_length(x) && !any; i++)
            any = json_equal(json_object_array_get_idx(x, i), v);
        if (!any) return fail(why, wn, "enum");
    }
    if ((x = kw(s, "type"))) {
        bool ok = false;
        if (json_object_is_type(x, json_type_array)) {
            for (size_t i = 0; i < json_object_array_length(x) && !ok; i++)
                ok = type_ok(json_object_get_string(json_object_array_get_idx(x, i)), v);
        } else {
            ok = type_ok(json_object_get_string(x), v);
        }
        if (!ok) return fail(why, wn, "type");
    }
    json_type jt = v ? json_object_get_type(v) : json_type_null;
    if (jt == json_type_string) {
        const char *str = json_object_get_string(v);
        if ((x = kw(s, "minLength")) && cp_len(str) < (size_t)json_object_get_int(x)) return fail(why, wn, "minLength");
        if ((x = kw(s, "maxLength")) && cp_len(str) > (size_t)json_object_get_int(x)) return fail(why, wn, "maxLength");
        if ((x = kw(s, "pattern")) && !re_search(json_object_get_string(x), str, false)) return fail(why, wn, "pattern");
        if ((x = kw(s, "format"))) {
            static const char *const fm[][2] = {
                {"date", "^\\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\\d|3[01])$"},
                {"uuid", "^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"},
                {"date-time", "^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?(Z|[+-]\\d\\d:\\d\\d)$"}};
            for (size_t i = 0; i < 3; i++)
                if (!strcmp(json_object_get_string(x), fm[i][0]) && !re_search(fm[i][1], str, false))
                    return fail(why, wn, "format");
        }
    }
    if (jt == json_type_int || jt == json_type_double) {
        double d = json_object_get_double(v);
        if ((x = kw(s, "minimum")) && d < json_object_get_double(x)) return fail(why, wn, "minimum");
        if ((x = kw(s, "maximum")) && d > json_object_get_double(x)) return fail(why, wn, "maximum");
        if ((x = kw(s, "exclusiveMinimum")) && d <= json_object_get_double(x)) return fail(why, wn, "exclusiveMinimum");
        if ((x = kw(s, "exclusiveMaximum")) && d >= json_object_get_double(x)) return fail(why, wn, "exclusiveMaximum");
    }
    if (jt == json_type_array) {
        size_t n = json_object_array_length(v);
        if ((x = kw(s, "minItems")) && n < (size_t)json_object_get_int(x)) return fail(why, wn, "minItems");
        if ((x = kw(s, "maxItems")) && n > (size_t)json_object_get_int(x)) return fail(why, wn, "maxItems");
        if ((x = kw(s, "items")))
            for (size_t i = 0; i < n; i++)
                if (!validate(root, x, json_object_array_get_idx(v, i), why, wn)) return false;
    }
    if (jt == json_type_object) {
        json_object *props = kw(s, "properties"), *req = kw(s, "required"), *addl = kw(s, "additionalProperties");
        for (size_t i = 0; req && i < json_object_array_length(req); i++)
            if (!kw(v, json_object_get_string(json_object_array_get_idx(req, i))) &&
                !json_object_object_get_ex(v, json_object_get_string(json_object_array_get_idx(req, i)), NULL))
                return fail(why, wn, "required");
        json_object_object_foreach(v, k, val) {
            json_object *ps = props ? kw(props, k) : NULL;
            if (ps) {
                if (!validate(root, ps, val, why, wn)) return false;
            } else if (addl && json_object_is_type(addl, json_type_boolean) && !json_object_get_boolean(addl)) {
                return fail(why, wn, "additionalProperties");
            }
        }
    }
    return true;
}

/* ------------------------------------------------------------ generation */
static const char *const SCHEMAS[] = {
    "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\",\"maxLength\":8}},\"required\":[\"name\"]}",
    "{\"type\":\"integer\",\"minimum\":0,\"maximum\":100}",
    "{\"type\":\"number\",\"minimum\":-10,\"maximum\":10}",
    "{\"type\":\"boolean\"}",
    "{\"enum\":[\"red\",\"green\",\"blue\"]}",
    "{\"const\":{\"a\":1,\"b\":[true,null]}}",
    "{\"type\":\"array\",\"items\":{\"type\":\"integer\",\"minimum\":-50,\"maximum\":50},\"minItems\":1,\"maxItems\":4}",
    "{\"type\":\"object\",\"properties\":{\"street\":{\"type\":\"string\",\"maxLength\":10},\"address\":{\"type\":\"object\",\"properties\":{\"zip\":{\"type\":\"string\",\"pattern\":\"^\\\\d{5}$\"},\"city\":{\"type\":\"string\",\"minLength\":1,\"maxLength\":6}},\"required\":[\"zip\",\"city\"],\"additionalProperties\":false}},\"required\":[\"address\"],\"additionalProperties\":false}",
    "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"boolean\"},\"b\":{\"type\":\"null\"},\"c\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":3}},\"additionalProperties\":false}",
    "{\"anyOf\":[{\"type\":\"string\",\"maxLength\":5},{\"type\":\"integer\",\"minimum\":-3,\"maximum\":3},{\"type\":\"null\"}]}",
    "{\"type\":[\"integer\",\"null\"],\"minimum\":7,\"maximum\":70}",
    "{\"type\":\"string\",\"pattern\":\"^[a-z]{2,6}$\"}",
    "{\"type\":\"string\",\"format\":\"date\"}",
    "{\"type\":\"string\",\"format\":\"uuid\"}",
    "{\"type\":\"array\",\"maxItems\":3,\"items\":{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":9},\"ok\":{\"type\":\"boolean\"}},\"required\":[\"id\",\"ok\"],\"additionalProperties\":false}}",
    "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},\"next\":{\"anyOf\":[{\"type\":\"null\"},{\"$ref\":\"#/$defs/node\"}]}},\"required\":[\"v\",\"next\"],\"additionalProperties\":false}},\"$ref\":\"#/$defs/node\"}",
    "{\"enum\":[1,\"two\",null,true,{\"x\":[1,2]}]}",
    "{\"type\":\"object\",\"properties\":{\"id\":{\"type\":\"integer\",\"minimum\":1000,\"maximum\":9999},\"label\":{\"type\":\"string\",\"maxLength\":4},\"score\":{\"type\":\"number\",\"minimum\":0,\"maximum\":5},\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"x\",\"y\"]},\"maxItems\":2},\"flag\":{\"type\":\"boolean\"}},\"required\":[\"id\",\"flag\"],\"additionalProperties\":false}",
    "{\"type\":\"string\",\"minLength\":2,\"maxLength\":4}",
    "{\"type\":\"integer\",\"exclusiveMinimum\":0,\"exclusiveMaximum\":1000}",
    "{\"type\":\"number\",\"minimum\":0,\"maximum\":1}",
    "{\"type\":\"array\",\"items\":{\"enum\":[\"up\",\"down\",\"left\"]},\"minItems\":2,\"maxItems\":2}",
    "{\"type\":\"array\",\"maxItems\":2,\"items\":{\"type\":\"array\",\"maxItems\":2,\"items\":{\"type\":\"boolean\"}}}",
    "{\"type\":\"object\",\"properties\":{\"l1\":{\"type\":\"object\",\"properties\":{\"l2\":{\"type\":\"object\",\"properties\":{\"l3\":{\"type\":\"integer\",\"minimum\":-9,\"maximum\":9}},\"required\":[\"l3\"]}},\"required\":[\"l2\"]}},\"required\":[\"l1\"]}",
    "{\"type\":\"string\",\"pattern\":\"^(yes|no|maybe)$\"}",
    "{\"type\":\"string\",\"pattern\":\"^\\\\+?[0-9]{3}-[0-9]{3}$\"}",
    "{\"type\":\"string\",\"format\":\"date-time\"}",
    "{\"type\":\"object\",\"properties\":{\"kind\":{\"const\":\"point\"},\"axis\":{\"enum\":[\"x\",\"y\",\"z\"]},\"at\":{\"type\":\"integer\",\"minimum\":-1,\"maximum\":1}},\"required\":[\"kind\",\"axis\",\"at\"]}",
    "{\"anyOf\":[{\"type\":\"object\",\"properties\":{\"ok\":{\"const\":true},\"value\":{\"type\":\"integer\",\"minimum\":0,\"maximum\":99}},\"required\":[\"ok\",\"value\"],\"additionalProperties\":false},{\"type\":\"object\",\"properties\":{\"ok\":{\"const\":false},\"error\":{\"type\":\"string\",\"maxLength\":6}},\"required\":[\"ok\",\"error\"],\"additionalProperties\":false}]}",
    "{\"type\":\"array\",\"maxItems\":3,\"items\":{\"anyOf\":[{\"type\":\"integer\",\"minimum\":0,\"maximum\":9},{\"type\":\"string\",\"maxLength\":3}]}}",
};
#define N_SCHEMAS (sizeof SCHEMAS / sizeof SCHEMAS[0])

static char *sample(lmc_context *ctx, lmc_grammar *g, uint64_t seed, lmc_gen_stats *st) {
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = MAX_TOKENS;
    p.sampler.temperature = 1.0f;
    p.sampler.seed = seed;
    p.grammar = g;
    char *text = NULL;
    if (lmc_generate_text(ctx, "Output:", &p, &text, st)) {
        fprintf(stderr, "generate: %s\n", lmc_last_error());
        return NULL;
    }
    return text;
}

static void test_schemas(lmc_context *ctx) {
    CHECK_EQ_INT(N_SCHEMAS, 30);
    size_t ok = 0, total = 0;
    for (size_t i = 0; i < N_SCHEMAS; i++) {
        lmc_grammar *g = NULL;
        if (lmc_grammar_from_json_schema(SCHEMAS[i], &g)) {
            CHECK_MSG(0, "schema %zu: %s", i, lmc_last_error());
            continue;
        }
        json_object *schema = NULL;
        lmc_json_parse(SCHEMAS[i], strlen(SCHEMAS[i]), "schema", &schema);
        for (uint64_t k = 0; k < SAMPLES; k++) {
            lmc_gen_stats st = {0};
            char *text = sample(ctx, g, 1000 * i + k, &st);
            total++;
            json_object *v = NULL;
            char why[64] = "";
            bool good = text && st.finish_reason == LMC_FINISH_STOP &&
                        lmc_json_parse(text, strlen(text), "output", &v) == LMC_OK &&
                        validate(schema, schema, v, why, sizeof why);
            CHECK_MSG(good, "schema %zu seed %llu: \"%s\" (%s, finish %d)", i, (unsigned long long)k,
                      text ? text : "(null)", why, (int)st.finish_reason);
            ok += good;
            if (k == 0 && text) printf("schema %2zu: %s\n", i, text);
            json_object_put(v);
            lmc_free(text);
        }
        json_object_put(schema);
        lmc_grammar_free(g);
    }
    printf("json schemas: %zu / %zu generations parse and validate\n", ok, total);
}

/* Balanced, well-formed arithmetic: checked by a recursive reader. */
static const char *rd_expr(const char *s);
static const char *rd_term(const char *s) {
    if (*s == '(') {
        s = rd_expr(s + 1);
        return s && *s == ')' ? s + 1 : NULL;
    }
    if (*s < '0' || *s > '9') return NULL;
    while (*s >= '0' && *s <= '9') s++;
    return s;
}
static const char *rd_expr(const char *s) {
    s = rd_term(s);
    while (s && (*s == '+' || *s == '*')) s = rd_term(s + 1);
    return s;
}

static void test_grammars_and_regexes(lmc_context *ctx) {
    static const struct {
        bool regex;
        const char *src, *check; /* check: PCRE2 pattern, or NULL for the arithmetic reader */
    } cases[] = {
        {false, "root ::= expr\nexpr ::= term ((\"+\" | \"*\") term){0,3}\nterm ::= [0-9]{1,3} | \"(\" expr \")\"\n", NULL},
        {false, "root ::= pair (\";\" pair){0,2}\npair ::= key \"=\" val\nkey ::= [a-z]{1,4}\nval ::= [0-9]{1,2} | \"true\" | \"false\"\n",
         "^[a-z]{1,4}=([0-9]{1,2}|true|false)(;[a-z]{1,4}=([0-9]{1,2}|true|false)){0,2}$"},
        {false, "root ::= \"<\" tag \">\" /[A-Za-z ]{0,12}/ \"</\" tag \">\"\ntag ::= \"b\" | \"i\" | \"em\"\n",
         "^<(b|i|em)>[A-Za-z ]{0,12}</(b|i|em)>$"},
        {true, "(\\d{3}-\\d{4}|[A-Z][a-z]{0,5})", "^(\\d{3}-\\d{4}|[A-Z][a-z]{0,5})$"},
        {true, "[a-z]{1,5}@[a-z]{2,5}\\.(com|org)", "^[a-z]{1,5}@[a-z]{2,5}\\.(com|org)$"},
        {true, "(ERROR|WARN|INFO): [^\\n]{1,10}", "^(ERROR|WARN|INFO): [^\\n]{1,10}$"},
    };
    size_t ok = 0, total = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        lmc_grammar *g = NULL;
        lmc_status s = cases[i].regex ? lmc_grammar_from_regex(cases[i].src, &g)
                                      : lmc_grammar_from_gbnf(cases[i].src, &g);
        CHECK_MSG(s == LMC_OK, "case %zu: %s", i, lmc_last_error());
        if (s) continue;
        for (uint64_t k = 0; k < SAMPLES; k++) {
            lmc_gen_stats st = {0};
            char *text = sample(ctx, g, 77 + 1000 * i + k, &st);
            total++;
            bool good = text && st.finish_reason == LMC_FINISH_STOP;
            if (good && cases[i].check) good = re_search(cases[i].check, text, true);
            else if (good) {
                const char *e = rd_expr(text);
                good = e && !*e;
            }
            CHECK_MSG(good, "case %zu seed %llu: \"%s\"", i, (unsigned long long)k, text ? text : "(null)");
            ok += good;
            if (k == 0 && text) printf("case %zu: %s\n", i, text);
            lmc_free(text);
        }
        lmc_grammar_free(g);
    }
    printf("grammars and regexes: %zu / %zu generations match\n", ok, total);
}

/* Greedy decoding under a grammar equals the unconstrained argmax whenever
 * that token is allowed: the mask never removes an allowed token. */
static void test_eos_and_limits(lmc_context *ctx) {
    lmc_grammar *g = NULL;
    CHECK(lmc_grammar_from_regex("ab", &g) == LMC_OK);
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.grammar = g;
    p.max_tokens = 20;
    char *text = NULL;
    lmc_gen_stats st = {0};
    CHECK(lmc_generate_text(ctx, "x", &p, &text, &st) == LMC_OK);
    CHECK_STREQ(text, "ab");
    CHECK_EQ_INT(st.finish_reason, LMC_FINISH_STOP);
    lmc_free(text);
    /* a grammar with a draft model is refused */
    p.draft = ctx;
    CHECK_ERR(lmc_generate_text(ctx, "x", &p, &text, NULL), LMC_ERR_UNSUPPORTED, "draft");
    lmc_grammar_free(g);
}

/* `lmc generate --json-schema / --regex / --grammar`: the printed output
 * obeys the constraint; an unsupported schema fails naming the keyword. */
static int run_cli(const char *cmd, lmc_buf *out) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char buf[4096];
    size_t n;
    lmc_buf_puts(out, "");
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) lmc_buf_append(out, buf, n);
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(const char *dir) {
    const char *bd = getenv("LMC_BUILD_DIR");
    char lmc[1200], tok[1200], path[4200], cmd[16384];
    snprintf(lmc, sizeof lmc, "%s/tools/lmc", bd && *bd ? bd : "build");
    if (access(lmc, X_OK) != 0) {
        printf("cli: %s not built, skipped\n", lmc);
        return;
    }
    tiny_asset(tok, sizeof tok, ".cache/assets/tokenizers/qwen3");
    static const struct {
        const char *flag, *file_text, *check;
    } cases[] = {
        {"--json-schema", "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":\"integer\",\"minimum\":1,"
                          "\"maximum\":9},\"s\":{\"enum\":[\"a\",\"b\"]}},\"required\":[\"n\",\"s\"]}",
         "^\\{\"n\":[1-9],\"s\":\"[ab]\"\\}\n$"},
        {"--grammar", "root ::= \"<\" [a-c]{2} \">\"", "^<[a-c]{2}>\n$"},
        {"--regex", NULL, "^[0-9]{3}-[xy]\n$"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *arg = "'[0-9]{3}-[xy]'";
        if (cases[i].file_text) {
            snprintf(path, sizeof path, "%s/constraint%zu.txt", dir, i);
            lmc_write_file_atomic(path, cases[i].file_text, strlen(cases[i].file_text));
            arg = path;
        }
        snprintf(cmd, sizeof cmd, "'%s' generate -m '%s' --tokenizer '%s' -p x --temp 1 --seed %zu "
                 "--max-tokens 64 %s '%s' 2>/dev/null", lmc, dir, tok, i, cases[i].flag, arg);
        lmc_buf out = {0};
        CHECK_EQ_INT(run_cli(cmd, &out), 0);
        CHECK_MSG(out.p && re_search(cases[i].check, out.p, true), "%s: \"%s\"", cases[i].flag, out.p);
        lmc_buf_free(&out);
        if (cases[i].file_text) unlink(path);
    }
    snprintf(path, sizeof path, "%s/bad.json", dir);
    lmc_write_file_atomic(path, "{\"not\":{}}", 11);
    char err[4300];
    snprintf(err, sizeof err, "%s/err.txt", dir);
    snprintf(cmd, sizeof cmd, "'%s' generate -m '%s' --tokenizer '%s' -p x --json-schema '%s' 2>'%s'",
             lmc, dir, tok, path, err);
    lmc_buf out = {0};
    CHECK_EQ_INT(run_cli(cmd, &out), 2);
    char *e = NULL;
    size_t n = 0;
    CHECK(lmc_read_file(err, "stderr", 1 << 20, &e, &n) == LMC_OK);
    CHECK_MSG(e && strstr(e, "'not' at #"), "stderr: %s", e ? e : "");
    free(e);
    lmc_buf_free(&out);
    unlink(path);
    unlink(err);
}

int main(void) {
    tiny_single_thread();
    char dir[4096];
    if (tiny_tmpdir(dir, sizeof dir, "constrained")) return 1;
    tiny_spec spec = {"qwen3", 2, 32, 4, 2, 8, 64, 151936, 151645, 11, 0};
    lmc_context *ctx = tiny_load(dir, &spec, ".cache/assets/tokenizers/qwen3");
    CHECK(ctx != NULL);
    if (ctx) {
        test_eos_and_limits(ctx);
        test_cli(dir);
        test_grammars_and_regexes(ctx);
        test_schemas(ctx);
    }
    lmc_context_free(ctx);
    tiny_rmdir(dir);
    return check_summary("test_constrained");
}
