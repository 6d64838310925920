/* Error handling and Jinja semantics of the template interpreter: syntax
 * errors with line/column, raise_exception, limits, undefined values, and
 * the whitespace/formatting rules real templates depend on. Expected
 * strings are what Jinja2 (configured as transformers configures it)
 * produces for the same input. */
#include <time.h>
#include "check.h"
#include "lmc.h"

/* Render `src` with `ctx`; returns output (caller frees) or NULL. */
static char *render(const char *src, const char *ctx, lmc_status *st_out) {
    lmc_chat_template *t = NULL;
    char *out = NULL;
    lmc_status st = lmc_chat_template_compile(src, &t);
    if (!st) st = lmc_chat_template_render(t, ctx, &out);
    lmc_chat_template_free(t);
    if (st_out) *st_out = st;
    return st ? NULL : out;
}

static void expect_out(const char *src, const char *ctx, const char *want) {
    lmc_status st;
    char *got = render(src, ctx, &st);
    CHECK_MSG(got && !strcmp(got, want), "template %s\n  got  \"%s\" (%s)\n  want \"%s\"", src, got ? got : "(error)",
              got ? "" : lmc_last_error(), want);
    lmc_free(got);
}

static void expect_err(const char *src, const char *ctx, lmc_status want_st, const char *needle) {
    lmc_status st;
    char *got = render(src, ctx, &st);
    CHECK_MSG(!got && st == want_st && strstr(lmc_last_error(), needle),
              "template %s: status %d, message \"%s\" (want %d with \"%s\")", src, st, lmc_last_error(), want_st,
              needle);
    lmc_free(got);
}

static void syntax_errors(void) {
    lmc_chat_template *t = NULL;
    CHECK_ERR(lmc_chat_template_compile("hello\n  {% if x %}\nno end", &t), LMC_ERR_TEMPLATE, "line 2, column 3");
    CHECK(t == NULL);
    CHECK_ERR(lmc_chat_template_compile("{{ 1 + }}", &t), LMC_ERR_TEMPLATE, "line 1, column 8");
    CHECK_ERR(lmc_chat_template_compile("a\nb\n{% endfor %}", &t), LMC_ERR_TEMPLATE, "line 3");
    CHECK_ERR(lmc_chat_template_compile("{% frobnicate %}", &t), LMC_ERR_TEMPLATE, "unknown tag 'frobnicate'");
    CHECK_ERR(lmc_chat_template_compile("{{ 'unterminated }}", &t), LMC_ERR_TEMPLATE, "unterminated string");
    CHECK_ERR(lmc_chat_template_compile("{# never closed", &t), LMC_ERR_TEMPLATE, "comment");
    CHECK_ERR(lmc_chat_template_compile("{{ x ", &t), LMC_ERR_TEMPLATE, "expected '}}'");
    CHECK_ERR(lmc_chat_template_compile("{% for x in y %}{% endif %}", &t), LMC_ERR_TEMPLATE, "'endif'");
    CHECK_ERR(lmc_chat_template_compile("{{ a ? b }}", &t), LMC_ERR_TEMPLATE, "unexpected character '?'");
    CHECK_ERR(lmc_chat_template_compile(NULL, &t), LMC_ERR_INVALID_ARG, "NULL");
    {
        /* Over-long number literals are refused, never truncated. */
        char lit[300] = "{{ ";
        memset(lit + 3, '9', 200);
        strcpy(lit + 203, ".5 }}");
        CHECK_ERR(lmc_chat_template_compile(lit, &t), LMC_ERR_TEMPLATE, "number literal longer than 127 digits");
        CHECK_ERR(lmc_chat_template_compile("{{ 99999999999999999999 }}", &t), LMC_ERR_TEMPLATE,
                  "integer literal out of the 64-bit range");
        expect_out("{{ 9223372036854775807 }}", NULL, "9223372036854775807");
    }
    /* deep nesting is refused, not a stack overflow */
    char deep[4000];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof deep, "{{ ");
    for (int i = 0; i < 1000; i++) deep[n++] = '(';
    deep[n++] = '1';
    for (int i = 0; i < 1000; i++) deep[n++] = ')';
    snprintf(deep + n, sizeof deep - n, " }}");
    CHECK_ERR(lmc_chat_template_compile(deep, &t), LMC_ERR_TEMPLATE, "nested deeper");
}

static void runtime_errors(void) {
    expect_err("line one\n{{ raise_exception('Conversation roles must alternate') }}", NULL, LMC_ERR_TEMPLATE,
               "Conversation roles must alternate");
    expect_err("line one\n   {{ raise_exception('boom') }}", NULL, LMC_ERR_TEMPLATE, "line 2, column 7");
    expect_err("{{ foo.bar }}", NULL, LMC_ERR_TEMPLATE, "'foo' is undefined");
    expect_err("{{ d.x.y }}", "{\"d\":{}}", LMC_ERR_TEMPLATE, "'dict object' has no attribute 'x'");
    expect_err("{{ 'a' + x }}", NULL, LMC_ERR_TEMPLATE, "'x' is undefined");
    expect_err("{{ 1 + 'a' }}", NULL, LMC_ERR_TEMPLATE, "unsupported operand type(s) for +: 'int' and 'str'");
    expect_err("{{ [1].append(2) }}", NULL, LMC_ERR_TEMPLATE, "access to attribute 'append' of 'list' object is unsafe");
    expect_err("{{ 1 / 0 }}", NULL, LMC_ERR_TEMPLATE, "division by zero");
    expect_err("{{ x | tojson }}", NULL, LMC_ERR_TEMPLATE, "'x' is undefined");
    expect_err("{{ x | nosuchfilter }}", NULL, LMC_ERR_TEMPLATE, "no filter named 'nosuchfilter'");
    expect_err("{% for a, b in [1] %}{% endfor %}", NULL, LMC_ERR_TEMPLATE, "cannot unpack");
    expect_err("{% set x = 1 %}{% set x.y = 2 %}", NULL, LMC_ERR_TEMPLATE, "non-namespace");
    /* limits: each a clear LMC_ERR_LIMIT naming the line */
    expect_err("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}\n{{ f(0) }}", NULL, LMC_ERR_LIMIT, "recursion limit");
    expect_err("{% for i in range(3000) %}{% for j in range(2000) %}{% endfor %}{% endfor %}", NULL, LMC_ERR_LIMIT,
               "loop iterations");
    expect_err("{% for i in range(1000000) %}{{ 'x' * 1000 }}{% endfor %}", NULL, LMC_ERR_LIMIT, "output exceeds");
    expect_err("{{ 'x' * 100000000000 }}", NULL, LMC_ERR_LIMIT, "exceeds");
    expect_err("{% set ns = namespace(s='x') %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
               NULL, LMC_ERR_LIMIT, "MiB of memory");
    /* per-template limits */
    lmc_chat_template *t = NULL;
    char *out = NULL;
    CHECK(!lmc_chat_template_compile("{% for i in range(50) %}{{ i }},{% endfor %}", &t));
    CHECK(!lmc_chat_template_set_limits(t, 20, 0));
    CHECK_ERR(lmc_chat_template_render(t, NULL, &out), LMC_ERR_LIMIT, "output exceeds the limit of 20 bytes");
    CHECK(!lmc_chat_template_set_limits(t, 0, 10));
    CHECK_ERR(lmc_chat_template_render(t, NULL, &out), LMC_ERR_LIMIT, "line 1, column 4");
    CHECK(!lmc_chat_template_set_limits(t, 0, 0));
    CHECK(!lmc_chat_template_render(t, NULL, &out) && out && !strncmp(out, "0,1,2,", 6));
    lmc_free(out);
    CHECK_ERR(lmc_chat_template_render(t, "[1,2]", &out), LMC_ERR_FORMAT, "expected a JSON object");
    CHECK_ERR(lmc_chat_template_render(t, "{bad json", &out), LMC_ERR_FORMAT, "invalid JSON");
    /* per-template work budget: 50 iterations take a few hundred steps */
    CHECK(!lmc_chat_template_set_budget(t, 100, 0));
    CHECK_ERR(lmc_chat_template_render(t, NULL, &out), LMC_ERR_LIMIT, "work budget of 100 steps");
    CHECK_ERR(lmc_chat_template_set_budget(t, 0, -1), LMC_ERR_INVALID_ARG, "not a duration");
    CHECK(!lmc_chat_template_set_budget(t, 0, 0));
    CHECK(!lmc_chat_template_render(t, NULL, &out) && out && !strncmp(out, "0,1,2,", 6));
    lmc_free(out);
    lmc_chat_template_free(t);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Templates inside the iteration cap that would still run for hours: each
 * of 5,000,000 iterations scans a 16 MB string. The default work budget
 * stops it within a few hundred iterations; a time budget stops a long
 * loop of cheap steps. */
static void work_budget(void) {
    double t0 = now_s();
    expect_err("{% set s = 'a' * 16000000 %}{% for i in range(5000000) %}{% if 'b' in s %}x{% endif %}"
               "{% endfor %}",
               NULL, LMC_ERR_LIMIT, "line 1, column 64: render exceeded its work budget of 100000000 steps");
    double t1 = now_s();
    CHECK_MSG(t1 - t0 < 20, "the work budget took %.1f s to stop the render", t1 - t0);
    lmc_chat_template *t = NULL;
    char *out = NULL;
    CHECK(!lmc_chat_template_compile("{% for i in range(5000000) %}{% if i < 0 %}x{% endif %}{% endfor %}", &t));
    CHECK(!lmc_chat_template_set_budget(t, 0, 0.05));
    CHECK_ERR(lmc_chat_template_render(t, NULL, &out), LMC_ERR_LIMIT, "time budget of 0.05 s");
    CHECK_MSG(now_s() - t1 < 5, "the time budget took %.1f s to stop the render", now_s() - t1);
    lmc_chat_template_free(t);
}

static void undefined_semantics(void) {
    expect_out("[{{ missing }}]", NULL, "[]");
    expect_out("{% if missing %}y{% else %}n{% endif %}", NULL, "n");
    expect_out("{{ missing is defined }}{{ missing is undefined }}{{ missing | length }}", NULL, "FalseTrue0");
    expect_out("{% for x in missing %}{{ x }}{% else %}empty{% endfor %}", NULL, "empty");
    expect_out("{{ missing | default('dflt') }}|{{ '' | default('e', true) }}", NULL, "dflt|e");
    expect_out("{{ m.content is defined }}{{ m.tool_calls }}|{{ 'a' ~ missing ~ 'b' }}",
               "{\"m\":{\"role\":\"user\"}}", "False|ab");
    expect_out("{{ (x if false) is defined }}{{ missing == missing }}{{ 1 in missing }}", NULL, "FalseTrueFalse");
}

static void semantics(void) {
    /* trim_blocks + lstrip_blocks + '-' control + trailing newline removal */
    expect_out("  {%- if true %}\n  x\n  {% endif %}\n  {{ 1 }}  {# c #}\nz\n", NULL, "  x\n  1  z");
    expect_out("a  {%+ if true %}b{% endif +%}\nc", NULL, "a  b\nc");
    expect_out("{% raw %}{{ not rendered }}{% endraw %}", NULL, "{{ not rendered }}");
    /* Python formatting of values */
    expect_out("{{ 1/2 }} {{ 7//2 }} {{ -7 % 3 }} {{ 2**10 }} {{ 1e20 }} {{ 0.1+0.2 }} {{ 1e-5 }} {{ 3.0 }}", NULL,
               "0.5 3 2 1024 1e+20 0.30000000000000004 1e-05 3.0");
    expect_out("{{ [1, 'a', none, true, 1.5, {'k': (1, 2)}] }}", NULL, "[1, 'a', None, True, 1.5, {'k': (1, 2)}]");
    expect_out("{{ \"it's\" }} {{ [\"it's\"] }}", NULL, "it's [\"it's\"]");
    /* tojson like transformers (ensure_ascii=False) */
    expect_out("{{ x | tojson }}", "{\"x\":{\"a\":[1,2.0,\"é\\n\"],\"b\":{},\"c\":null}}",
               "{\"a\": [1, 2.0, \"é\\n\"], \"b\": {}, \"c\": null}");
    expect_out("{{ x | tojson(indent=2) }}", "{\"x\":{\"a\":[1],\"b\":[]}}", "{\n  \"a\": [\n    1\n  ],\n  \"b\": []\n}");
    expect_out("{{ x | tojson(sort_keys=true, separators=(',', ':')) }}", "{\"x\":{\"b\":1,\"a\":2}}", "{\"a\":2,\"b\":1}");
    /* loops, scoping, namespace */
    expect_out("{% for a in [1,2,3] %}{{ loop.index }}{{ loop.previtem }}{{ loop.revindex }}{% if loop.last %}!{% endif %}{% endfor %}",
               NULL, "13212321!");
    expect_out("{% set x = 5 %}{% for i in [1,2] %}[{{ x }}]{% set x = i %}{% endfor %}{{ x }}", NULL, "[5][5]5");
    expect_out("{% set ns = namespace(n=0) %}{% for i in range(4) %}{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}",
               NULL, "6");
    expect_out("{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}",
               NULL, "02");
    expect_out("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "{\"d\":{\"b\":1,\"a\":2}}", "b=1;a=2;");
    expect_out("{% for x in [1,2,3,4] if x is even %}{{ x }}{{ loop.length }}{% endfor %}", NULL, "2242");
    /* filters and methods */
    expect_out("{{ '  hi  ' | trim }}|{{ 'a,b,,c'.split(',') }}|{{ ' x  y '.split() }}|{{ 'Hello' | upper }}", NULL,
               "hi|['a', 'b', '', 'c']|['x', 'y']|HELLO");
    expect_out("{{ 'hello world-foo' | title }} {{ 'hello world-foo'.title() }} {{ 'aBC' | capitalize }}", NULL,
               "Hello World-Foo Hello World-Foo Abc");
    expect_out("{{ msgs | selectattr('role', 'equalto', 'user') | map(attribute='content') | join(', ') }}",
               "{\"msgs\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"bot\",\"content\":\"b\"},"
               "{\"role\":\"user\",\"content\":\"c\"}]}",
               "a, c");
    expect_out("{{ [3,1,2] | sort }}{{ [3,1,2] | sort(reverse=true) | first }}{{ ['b','A','a'] | unique | list }}",
               NULL, "[1, 2, 3]3['b', 'A']");
    expect_out("{{ 'abcdef'[1:4] }}{{ 'abcdef'[::-1] }}{{ [1,2,3][-1] }}{{ 'héllo'[1] }}{{ 'héllo' | length }}", NULL,
               "bcdfedcba3é5");
    expect_out("{{ 'x\ny\n' | indent(2) }}|{{ 'x\ny' | indent(2, true) }}", NULL, "x\n  y\n|  x\n  y");
    expect_out("{{ '{} and {name}'.format(1, name='n') }}{{ 'a-b-c'.replace('-', '+', 1) }}", NULL, "1 and na+b-c");
    expect_out("{{ '%s=%d' | format('k', 3) }}{{ 3.7 | int }}{{ '42' | int + 1 }}{{ 2 | float }}{{ 2.567 | round(2) }}",
               NULL, "k=33432.02.57");
    expect_out("{{ d | dictsort }}{{ d | items | list }}{{ d.get('z', 'none') }}", "{\"d\":{\"b\":1,\"a\":2}}",
               "[('a', 2), ('b', 1)][('b', 1), ('a', 2)]none");
    expect_out("{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('Bo') }} {{ greet('Al', punct='?') }}",
               NULL, "Hi Bo! Hi Al?");
    expect_out("{% macro wrap() %}<{{ caller() }}>{% endmacro %}{% call wrap() %}in{% endcall %}", NULL, "<in>");
    expect_out("{% filter upper %}abc{% endfilter %}{% set b %}blk{% endset %}{{ b }}", NULL, "ABCblk");
    expect_out("{{ 1 < 2 < 3 }}{{ 'b' in 'abc' }}{{ 'k' in {'k': 1} }}{{ 2 not in [1] }}{{ not 0 }}", NULL,
               "TrueTrueTrueTrueTrue");
    expect_out("{{ none is none }}{{ 1 is number }}{{ 'a' is string }}{{ {} is mapping }}{{ 3 is odd }}{{ 4 is divisibleby 2 }}",
               NULL, "TrueTrueTrueTrueTrueTrue");
    expect_out("{{ 2.5 | round }} {{ 3.5 | round }} {{ 2.675 | round(2) }} {{ 'ab' is lower }} {{ '12' is lower }}", NULL,
               "2.0 4.0 2.67 True False");
    expect_out("{{ '%s is %d' % ('x', 3) }} {{ '%s!' % 'hi' }}", NULL, "x is 3 hi!");
    expect_out("{% set ns = namespace(me=none) %}{% set ns.me = ns %}{{ (ns ~ '')[:12] }}", NULL, "<Namespace {");
    expect_out("{{ none | selectattr('a') | list | length }}{{ none | map('upper') | list }}", NULL, "0[]");
    expect_out("{{ \"'to '\" | safe + \"<b> & 'q'\" }}|{{ ('<x>' | safe) ~ '<y>' }}|{{ '<x>' | e }}|{{ ('<a>' | e) + '<' }}",
               NULL, "'to '&lt;b&gt; &amp; &#39;q&#39;|<x><y>|&lt;x&gt;|&lt;a&gt;&lt;");
    expect_out("{{ 'yes' if x else 'no' }}{{ x or 'dflt' }}{{ x and 'both' }}", "{\"x\":0}", "nodflt0");
}

static void apply_api(void) {
    lmc_chat_template *t = NULL;
    char *out = NULL;
    CHECK(!lmc_chat_template_compile(
        "{% for m in messages %}<{{ m.role }}>{{ m.content }}</s>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
        &t));
    const char *msgs = "[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":\"  I think \"}]";
    CHECK_ERR(lmc_chat_template_apply(t, msgs, NULL, true, true, NULL, &out), LMC_ERR_INVALID_ARG, "not compatible");
    CHECK(!lmc_chat_template_apply(t, msgs, NULL, false, true, NULL, &out));
    CHECK_STREQ(out, "<user>hi</s><assistant>  I think "); /* the marker kept its space */
    lmc_free(out);
    CHECK_ERR(lmc_chat_template_apply(t, "{\"role\":\"user\"}", NULL, false, false, NULL, &out), LMC_ERR_FORMAT,
              "messages");
    lmc_chat_template_free(t);
    /* a template that drops the final message cannot be continued */
    CHECK(!lmc_chat_template_compile("{{ messages[0].content }}", &t));
    CHECK_ERR(lmc_chat_template_apply(t, msgs, NULL, false, true, NULL, &out), LMC_ERR_TEMPLATE,
              "final message does not appear");
    lmc_chat_template_free(t);
}

int main(void) {
    work_budget();
    syntax_errors();
    runtime_errors();
    undefined_semantics();
    semantics();
    apply_api();
    return check_summary("test_template_errors");
}
