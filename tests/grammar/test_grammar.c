/* Grammar front ends and the byte-level matcher: GBNF, regular expressions
 * and JSON schemas accept exactly what they describe (sentences, prefixes
 * and near misses), and what cannot be supported is refused by name. */
#include "check.h"
#include "lmc.h"
#include <stdlib.h>
#include <string.h>

/* 1: complete, 0: a viable prefix only, -1: rejected */
static int match(lmc_grammar *g, const char *text) {
    bool complete = false, prefix = false;
    if (lmc_grammar_match(g, text, strlen(text), &complete, &prefix)) return -2;
    return complete ? 1 : prefix ? 0 : -1;
}

typedef struct {
    const char *text;
    int want;
} probe;

static void check_all(lmc_grammar *g, const char *name, const probe *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        int got = match(g, p[i].text);
        CHECK_MSG(got == p[i].want, "%s: \"%s\" -> %d, want %d", name, p[i].text, got, p[i].want);
    }
}

static void test_gbnf(void) {
    const char *src = "# arithmetic\n"
                      "root ::= expr\n"
                      "expr ::= term ((\"+\" | \"-\") term)*\n"
                      "term ::= num | \"(\" expr \")\"\n"
                      "num  ::= [0-9]+ ( \".\" [0-9]{1,2} )?\n";
    lmc_grammar *g = NULL;
    CHECK(lmc_grammar_from_gbnf(src, &g) == LMC_OK);
    probe p[] = {{"1", 1},       {"1+2", 1},   {"(1+2)-3.25", 1}, {"((1", 0}, {"1+", 0},
                 {"1.", 0},      {"1.234", -1}, {"a", -1},        {"", 0},   {"(1+2))", -1},
                 {"12-(3)", 1}};
    check_all(g, "gbnf", p, sizeof p / sizeof *p);
    lmc_grammar_free(g);
    /* Unicode classes and escapes, regex terminals */
    CHECK(lmc_grammar_from_gbnf("root ::= [^a-z\\n]{2} \"\\u00e9\" /x[0-9]+y/", &g) == LMC_OK);
    probe q[] = {{"\xc3\xa9Z\xc3\xa9x12y", 1}, {"ab", -1}, {"\xe2\x82\xac!", 0},
                 {"\xe2\x82\xac!\xc3\xa9xy", -1}, {"\xe2\x82", 0}, {"\xed\xa0\x80", -1}};
    check_all(g, "gbnf-unicode", q, sizeof q / sizeof *q);
    lmc_grammar_free(g);
    /* errors name the rule, line and column */
    CHECK_ERR(lmc_grammar_from_gbnf("root ::= a\n", &g), LMC_ERR_INVALID_ARG, "'a' is used but never defined");
    CHECK_ERR(lmc_grammar_from_gbnf("root ::= root \"x\" | \"y\"", &g), LMC_ERR_UNSUPPORTED, "left-recursive");
    CHECK_ERR(lmc_grammar_from_gbnf("root ::= \"x\" root", &g), LMC_ERR_INVALID_ARG, "can never finish");
    CHECK_ERR(lmc_grammar_from_gbnf("root ::= \"x\"\nfoo ::= [a-", &g), LMC_ERR_INVALID_ARG, "line 2");
    CHECK_ERR(lmc_grammar_from_gbnf("start ::= \"x\"", &g), LMC_ERR_INVALID_ARG, "no rule named 'root'");
    CHECK_ERR(lmc_grammar_from_gbnf("root ::= \"x\"{3,2}", &g), LMC_ERR_INVALID_ARG, "repetition");
    CHECK(g == NULL);
}

static void test_regex(void) {
    lmc_grammar *g = NULL;
    CHECK(lmc_grammar_from_regex("^(\\d{3}-\\d{4}|[A-Z][a-z]*)$", &g) == LMC_OK);
    probe p[] = {{"555-1234", 1}, {"555-12", 0},  {"Hello", 1}, {"H", 1},
                 {"hello", -1},   {"555-12345", -1}, {"5a", -1}};
    check_all(g, "regex", p, sizeof p / sizeof *p);
    lmc_grammar_free(g);
    CHECK(lmc_grammar_from_regex("[\\w.+-]+@[a-z]+\\.(com|org)", &g) == LMC_OK);
    probe q[] = {{"a.b+c@ex.com", 1}, {"x@y.org", 1}, {"x@y.net", -1}, {"@y.com", -1}, {"x@y.co", 0}};
    check_all(g, "regex-email", q, sizeof q / sizeof *q);
    lmc_grammar_free(g);
    CHECK(lmc_grammar_from_regex("a.c", &g) == LMC_OK);
    probe r[] = {{"abc", 1}, {"a\xe2\x82\xac" "c", 1}, {"a\nc", -1}};
    check_all(g, "regex-dot", r, sizeof r / sizeof *r);
    lmc_grammar_free(g);
    CHECK_ERR(lmc_grammar_from_regex("(?=a)b", &g), LMC_ERR_UNSUPPORTED, "look-around");
    CHECK_ERR(lmc_grammar_from_regex("(a)\\1", &g), LMC_ERR_UNSUPPORTED, "back-references");
    CHECK_ERR(lmc_grammar_from_regex("\\bfoo", &g), LMC_ERR_UNSUPPORTED, "word boundaries");
    CHECK_ERR(lmc_grammar_from_regex("a^b", &g), LMC_ERR_UNSUPPORTED, "anchors");
    CHECK_ERR(lmc_grammar_from_regex("(ab", &g), LMC_ERR_INVALID_ARG, "missing ')'");
    CHECK_ERR(lmc_grammar_from_regex("a{1,9999}", &g), LMC_ERR_LIMIT, "exceeds");
}

static void test_schema(void) {
    lmc_grammar *g = NULL;
    const char *s1 =
        "{\"type\":\"object\",\"properties\":{"
        "\"name\":{\"type\":\"string\",\"maxLength\":4},"
        "\"age\":{\"type\":\"integer\",\"minimum\":18,\"maximum\":120},"
        "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]},\"maxItems\":2},"
        "\"ok\":{\"type\":\"boolean\"}},\"required\":[\"name\",\"age\"]}";
    CHECK(lmc_grammar_from_json_schema(s1, &g) == LMC_OK);
    probe p[] = {{"{\"name\":\"Bob\",\"age\":42}", 1},
                 {"{\"name\":\"Bob\",\"age\":42,\"tags\":[\"a\",\"b\"],\"ok\":true}", 1},
                 {"{\"name\":\"Bob\",\"age\":42,\"ok\":false}", 1},
                 {"{\"name\":\"Bobby\",\"age\":42}", -1},
                 {"{\"name\":\"Bob\",\"age\":17}", -1},
                 {"{\"name\":\"Bob\",\"age\":121}", -1},
                 {"{\"name\":\"Bob\",\"age\":120}", 1},
                 {"{\"name\":\"Bob\",\"age\":1", 0},
                 {"{\"age\":42}", -1},
                 {"{\"name\":\"Bob\",\"age\":42,\"tags\":[\"a\",\"b\",\"a\"]}", -1},
                 {"{\"name\":\"Bob\",\"age\":42,\"extra\":1}", -1},
                 {"{\"name\":\"B\\\"\",\"age\":42}", 1}};
    check_all(g, "schema-object", p, sizeof p / sizeof *p);
    lmc_grammar_free(g);
    /* numbers with bounds, negative ranges, anyOf, $ref recursion, patterns */
    CHECK(lmc_grammar_from_json_schema("{\"type\":\"number\",\"minimum\":-5,\"maximum\":3}", &g) == LMC_OK);
    probe n[] = {{"-5", 1}, {"-5.0", 1}, {"-5.1", -1}, {"-4.99", 1}, {"3", 1}, {"3.5", -1},
                 {"2.999", 1}, {"0", 1}, {"-0.5", 1}, {"4", -1}, {"-6", -1}};
    check_all(g, "schema-number", n, sizeof n / sizeof *n);
    lmc_grammar_free(g);
    CHECK(lmc_grammar_from_json_schema("{\"type\":\"integer\",\"exclusiveMinimum\":-100,\"exclusiveMaximum\":-7}", &g) == LMC_OK);
    probe i[] = {{"-99", 1}, {"-100", -1}, {"-8", 1}, {"-7", 0}, {"-101", -1}, {"-50", 1}, {"5", -1}};
    check_all(g, "schema-integer", i, sizeof i / sizeof *i);
    lmc_grammar_free(g);
    CHECK(lmc_grammar_from_json_schema(
              "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
              "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
              "\"anyOf\":[{\"$ref\":\"#/$defs/node\"},{\"type\":\"null\"}]}", &g) == LMC_OK);
    probe r[] = {{"null", 1}, {"{\"v\":1}", 1}, {"{\"v\":1,\"kids\":[{\"v\":2,\"kids\":[]},{\"v\":3}]}", 1},
                 {"{\"v\":1,\"kids\":[{}]}", -1}};
    check_all(g, "schema-ref", r, sizeof r / sizeof *r);
    lmc_grammar_free(g);
    CHECK(lmc_grammar_from_json_schema("{\"type\":\"string\",\"pattern\":\"^[A-Z]{2}-\\\\d{3}$\"}", &g) == LMC_OK);
    probe pt[] = {{"\"AB-123\"", 1}, {"\"AB-12\"", -1}, {"\"ab-123\"", -1}, {"\"AB-1", 0}};
    check_all(g, "schema-pattern", pt, sizeof pt / sizeof *pt);
    lmc_grammar_free(g);
    CHECK(lmc_grammar_from_json_schema("{\"type\":\"string\",\"pattern\":\"x\"}", &g) == LMC_OK);
    probe un[] = {{"\"x\"", 1}, {"\"abxcd\"", 1}, {"\"abcd\"", -1}, {"\"abcd", 0}};
    check_all(g, "schema-unanchored", un, sizeof un / sizeof *un);
    lmc_grammar_free(g);
    CHECK(lmc_grammar_json_object(&g) == LMC_OK);
    probe jo[] = {{"{}", 1}, {"{\"a\":[1,{\"b\":null}],\"c\":\"d\"}", 1}, {"[]", -1}, {"{\"a\":}", -1}};
    check_all(g, "json-object", jo, sizeof jo / sizeof *jo);
    lmc_grammar_free(g);
    /* refusals name the keyword and its path */
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":\"object\",\"properties\":{\"a\":{\"allOf\":[]}}}", &g),
              LMC_ERR_UNSUPPORTED, "'allOf' at #/properties/a");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"oneOf\":[{\"type\":\"string\"}]}", &g), LMC_ERR_UNSUPPORTED, "'oneOf'");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":\"array\",\"uniqueItems\":true}", &g), LMC_ERR_UNSUPPORTED, "'uniqueItems'");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":\"number\",\"multipleOf\":2}", &g), LMC_ERR_UNSUPPORTED, "'multipleOf'");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":\"number\",\"minimum\":0.5}", &g), LMC_ERR_UNSUPPORTED, "'minimum'");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":\"string\",\"format\":\"email\"}", &g), LMC_ERR_UNSUPPORTED, "format 'email'");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"$ref\":\"#/$defs/x\"}", &g), LMC_ERR_NOT_FOUND, "names no definition");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"$ref\":\"http://x/y\"}", &g), LMC_ERR_UNSUPPORTED, "'$ref'");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":\"object\",\"properties\":{},\"required\":[\"q\"]}", &g),
              LMC_ERR_UNSUPPORTED, "'q'");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":\"integer\",\"minimum\":5,\"maximum\":4}", &g),
              LMC_ERR_INVALID_ARG, "no integer");
    CHECK_ERR(lmc_grammar_from_json_schema("{\"type\":", &g), LMC_ERR_FORMAT, "invalid JSON");
    CHECK(g == NULL);
}

int main(void) {
    test_gbnf();
    test_regex();
    test_schema();
    return check_summary("test_grammar");
}
