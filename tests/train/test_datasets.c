/* Fine-tuning datasets with the real Qwen3 tokenizer.
 *
 * References nobody here wrote:
 *  - text records: tests/golden/tokenizer/qwen3.jsonl (ids from HF
 *    tokenizers) plus the eos id appended as mlx-lm's TextDataset does;
 *  - chat records: tests/golden/templates/qwen3.json (transformers'
 *    apply_chat_template strings), encoded with the tokenizer (itself
 *    checked against HF); the prompt length is that of the golden case
 *    holding the same conversation without its final assistant message,
 *    rendered with add_generation_prompt;
 *  - completions records: the same Qwen3 rendering spelled out by hand. */
#include "base/file.h"
#include "base/json.h"
#include "base/buf.h"
#include "check.h"
#include "lmc.h"
#include "train_test_util.h"

static lmc_tokenizer *tok;
static int32_t EOS;

static int32_t *encode(const char *s, size_t *n) {
    int32_t *ids = NULL;
    *n = 0;
    CHECK(!lmc_tokenizer_encode(tok, s, strlen(s), false, &ids, n));
    return ids;
}

static bool ids_eq(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    return na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
}

static json_object *load_json(const char *rel, char **raw) {
    char p[2048];
    snprintf(p, sizeof p, "%s/%s", tt_root(), rel);
    json_object *o = NULL;
    if (lmc_json_load_file(p, rel, 64u << 20, &o, raw)) CHECK_SKIP("%s: %s", rel, lmc_last_error());
    return o;
}

static lmc_dataset *load(const char *path, lmc_dataset_format fmt, bool mask, bool cache) {
    lmc_dataset_options o;
    lmc_dataset_options_init(&o);
    o.format = fmt;
    o.mask_prompt = mask;
    o.cache = cache;
    lmc_dataset *d = NULL;
    lmc_status st = lmc_dataset_load(path, tok, &o, &d);
    CHECK_MSG(st == LMC_OK, "load %s: %s", path, lmc_last_error());
    return d;
}

/* Text records: HF ids of the text, plus eos unless it already ends so. */
static void test_text(void) {
    char p[2048];
    snprintf(p, sizeof p, "%s/tests/golden/tokenizer/qwen3.jsonl", tt_root());
    char *raw;
    size_t len;
    if (lmc_read_file(p, "golden", 64u << 20, &raw, &len)) CHECK_SKIP("%s", lmc_last_error());
    /* Take golden lines with a non-empty text, plus one ending in eos. */
    enum { MAXR = 40 };
    json_object *want[MAXR];
    size_t nr = 0;
    lmc_buf file = {0};
    char *save = NULL;
    int lineno = 0;
    for (char *line = strtok_r(raw, "\n", &save); line && nr < MAXR - 1;
         line = strtok_r(NULL, "\n", &save)) {
        if (lineno++ == 0 || lineno % 37) continue; /* header; sample every 37th */
        json_object *g;
        if (lmc_json_parse(line, strlen(line), "golden", &g)) continue;
        const char *d = lmc_json_str(g, "d", NULL);
        if (!d || !*d) {
            json_object_put(g);
            continue;
        }
        json_object *rec = json_object_new_object();
        json_object_object_add(rec, "text", json_object_new_string_len(d, (int)strlen(d)));
        lmc_buf_puts(&file, json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN));
        lmc_buf_putc(&file, '\n');
        json_object_put(rec);
        want[nr++] = g;
    }
    free(raw);
    CHECK(nr >= 20);
    /* A text that already ends with the eos token gets no second one. */
    lmc_buf_puts(&file, "{\"text\": \"done<|im_end|>\"}\n");
    const char *path = tt_write("text.jsonl", file.p);
    lmc_buf_free(&file);

    lmc_dataset *d = load(path, LMC_DATASET_AUTO, false, false);
    CHECK_EQ_INT(lmc_dataset_len(d), nr + 1);
    CHECK_EQ_INT(lmc_dataset_format_of(d), LMC_DATASET_TEXT);
    size_t n_ok = 0;
    for (size_t i = 0; d && i < nr; i++) {
        json_object *gi = lmc_json_get(want[i], "i");
        size_t ng = json_object_array_length(gi);
        int32_t *exp = malloc((ng + 1) * sizeof *exp);
        for (size_t k = 0; k < ng; k++) exp[k] = json_object_get_int(json_object_array_get_idx(gi, k));
        exp[ng] = EOS;
        int32_t *ids;
        size_t n, pl = 99;
        CHECK(!lmc_dataset_get(d, i, &ids, &n, &pl));
        bool ok = ids_eq(ids, n, exp, ng + 1) && pl == 0;
        CHECK_MSG(ok, "text record %zu (%s): %zu ids, want %zu", i,
                  lmc_json_str(want[i], "d", NULL), n, ng + 1);
        n_ok += ok;
        lmc_free(ids);
        free(exp);
    }
    if (d) {
        int32_t *ids;
        size_t n;
        CHECK(!lmc_dataset_get(d, nr, &ids, &n, NULL));
        CHECK(n == 2 && ids[1] == EOS && ids[0] == lmc_tokenizer_token_to_id(tok, "done"));
        lmc_free(ids);
    }
    printf("  text: %zu/%zu records equal HF ids + eos\n", n_ok, nr);
    for (size_t i = 0; i < nr; i++) json_object_put(want[i]);
    lmc_dataset_free(d);
}

/* Golden template cases: a conversation ending with the assistant (no
 * generation prompt), paired when there is one with the case holding its
 * prefix rendered with a generation prompt. */
typedef struct {
    json_object *full, *prefix;
} pair;

static bool same_json(json_object *a, json_object *b) {
    if (!a || !b) return a == b;
    return !strcmp(json_object_to_json_string_ext(a, JSON_C_TO_STRING_PLAIN),
                   json_object_to_json_string_ext(b, JSON_C_TO_STRING_PLAIN)) ||
           json_object_equal(a, b);
}

static size_t golden_pairs(json_object *cases, pair *out, size_t max) {
    size_t n = 0, nc = json_object_array_length(cases);
    for (size_t i = 0; i < nc && n < max; i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        json_object *m = lmc_json_get(c, "messages");
        bool agp = false, cont = false;
        lmc_json_bool(c, "add_generation_prompt", &agp, NULL);
        lmc_json_bool(c, "continue_final_message", &cont, NULL);
        json_object *extra = lmc_json_get(c, "extra");
        if (agp || cont || lmc_json_get(c, "error") || !m || (extra && json_object_object_length(extra)))
            continue;
        size_t nm = json_object_array_length(m);
        const char *role = nm ? lmc_json_str(json_object_array_get_idx(m, nm - 1), "role", NULL) : NULL;
        if (!role || strcmp(role, "assistant")) continue;
        out[n] = (pair){c, NULL};
        for (size_t k = 0; k < nc; k++) {
            json_object *p = json_object_array_get_idx(cases, k);
            json_object *pm = lmc_json_get(p, "messages");
            bool pagp = false, pcont = false;
            lmc_json_bool(p, "add_generation_prompt", &pagp, NULL);
            lmc_json_bool(p, "continue_final_message", &pcont, NULL);
            json_object *pextra = lmc_json_get(p, "extra");
            if (!pagp || pcont || lmc_json_get(p, "error") || !pm ||
                (pextra && json_object_object_length(pextra)) ||
                json_object_array_length(pm) != nm - 1 ||
                !same_json(lmc_json_get(p, "tools"), lmc_json_get(c, "tools")))
                continue;
            bool eq = true;
            for (size_t j = 0; j + 1 < nm && eq; j++)
                eq = json_object_equal(json_object_array_get_idx(m, j), json_object_array_get_idx(pm, j));
            if (eq) {
                out[n].prefix = p;
                break;
            }
        }
        n++;
    }
    return n;
}

static void test_chat(void) {
    char *raw;
    json_object *doc = load_json("tests/golden/templates/qwen3.json", &raw);
    free(raw);
    pair pairs[16];
    size_t np = golden_pairs(lmc_json_get(doc, "cases"), pairs, 16);
    size_t n_with_prefix = 0;
    for (size_t i = 0; i < np; i++) n_with_prefix += pairs[i].prefix != NULL;
    CHECK(np >= 2 && n_with_prefix >= 1);
    lmc_buf file = {0};
    for (size_t i = 0; i < np; i++) {
        json_object *rec = json_object_new_object();
        json_object_object_add(rec, "messages", json_object_get(lmc_json_get(pairs[i].full, "messages")));
        json_object *tools = lmc_json_get(pairs[i].full, "tools");
        if (tools) json_object_object_add(rec, "tools", json_object_get(tools));
        lmc_buf_puts(&file, json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN));
        lmc_buf_puts(&file, i % 2 ? "\r\n" : "\n"); /* CRLF lines are fine too */
        json_object_put(rec);
    }
    /* A conversation ending with the user: the prompt is everything before
     * it, without a generation prompt. */
    lmc_buf_puts(&file, "{\"messages\": [{\"role\": \"user\", \"content\": \"Hello, who are you?\"}, "
                        "{\"role\": \"user\", \"content\": \"Hi?\"}], \"text\": \"ignored\"}");
    const char *path = tt_write("chat.jsonl", file.p);
    lmc_buf_free(&file);

    lmc_dataset *plain = load(path, LMC_DATASET_AUTO, false, false);
    lmc_dataset *masked = load(path, LMC_DATASET_CHAT, true, true);
    CHECK_EQ_INT(lmc_dataset_format_of(plain), LMC_DATASET_CHAT);
    CHECK_EQ_INT(lmc_dataset_len(masked), np + 1);
    for (size_t i = 0; plain && masked && i < np; i++) {
        size_t ne, npre = 0;
        int32_t *exp = encode(lmc_json_str(pairs[i].full, "expected", NULL), &ne);
        int32_t *pre = NULL;
        if (pairs[i].prefix) {
            pre = encode(lmc_json_str(pairs[i].prefix, "expected", NULL), &npre);
        } else {
            /* no golden prefix: render messages[:-1] with a generation prompt */
            json_object *m = lmc_json_get(pairs[i].full, "messages");
            json_object *pm = json_object_new_array();
            for (size_t k = 0; k + 1 < json_object_array_length(m); k++)
                json_object_array_add(pm, json_object_get(json_object_array_get_idx(m, k)));
            CHECK(!lmc_tokenizer_apply_chat_template_ids(
                tok, json_object_to_json_string(pm), NULL, true, false, NULL, &pre, &npre));
            json_object_put(pm);
        }
        int32_t *a, *b;
        size_t na, nb, pa = 99, pb = 99;
        CHECK(!lmc_dataset_get(plain, i, &a, &na, &pa));
        CHECK(!lmc_dataset_get(masked, i, &b, &nb, &pb));
        CHECK_MSG(ids_eq(a, na, exp, ne), "chat %s: %zu ids, want %zu",
                  lmc_json_str(pairs[i].full, "name", NULL), na, ne);
        CHECK(ids_eq(b, nb, exp, ne));
        CHECK_EQ_INT(pa, 0);
        CHECK_EQ_INT(pb, npre);
        CHECK(pb < nb && ids_eq(b, pb, pre, npre)); /* the prompt is a prefix */
        size_t il = 0;
        CHECK(!lmc_dataset_item_len(masked, i, &il) && il == ne);
        printf("  chat %-26s %4zu ids, prompt %4zu (prefix case %s)\n",
               lmc_json_str(pairs[i].full, "name", NULL), nb, pb,
               pairs[i].prefix ? lmc_json_str(pairs[i].prefix, "name", NULL) : "rendered here");
        lmc_free(a);
        lmc_free(b);
        lmc_free(exp);
        lmc_free(pre);
    }
    if (masked) {
        int32_t *ids, *pre;
        size_t n, pl, npre;
        CHECK(!lmc_dataset_get(masked, np, &ids, &n, &pl));
        CHECK(!lmc_tokenizer_apply_chat_template_ids(
            tok, "[{\"role\": \"user\", \"content\": \"Hello, who are you?\"}]", NULL, false, false,
            NULL, &pre, &npre));
        size_t ng;
        int32_t *g = encode("<|im_start|>user\nHello, who are you?<|im_end|>\n", &ng);
        CHECK(ids_eq(pre, npre, g, ng)); /* golden single_user_nogen */
        CHECK_EQ_INT(pl, ng);
        CHECK(ids_eq(ids, pl, g, ng));
        lmc_free(ids);
        lmc_free(pre);
        lmc_free(g);
    }
    lmc_dataset_free(plain);
    lmc_dataset_free(masked);
    json_object_put(doc);
}

/* Every golden case that ends with a user turn rendered with a generation
 * prompt becomes a training conversation by appending an assistant answer.
 * Qwen3 renders that answer (after the last user turn) as an empty think
 * block and the content, so the full text is the golden text plus
 * "<think>\n\n</think>\n\nSure.<|im_end|>\n", and the prompt is exactly the
 * golden text. */
static void test_chat_extended(void) {
    char *raw;
    json_object *doc = load_json("tests/golden/templates/qwen3.json", &raw);
    free(raw);
    json_object *cases = lmc_json_get(doc, "cases");
    json_object *used[32];
    size_t nu = 0;
    lmc_buf file = {0};
    for (size_t i = 0; i < json_object_array_length(cases) && nu < 32; i++) {
        json_object *c = json_object_array_get_idx(cases, i);
        json_object *m = lmc_json_get(c, "messages"), *extra = lmc_json_get(c, "extra");
        bool agp = false, cont = false;
        lmc_json_bool(c, "add_generation_prompt", &agp, NULL);
        lmc_json_bool(c, "continue_final_message", &cont, NULL);
        size_t nm = m ? json_object_array_length(m) : 0;
        const char *role = nm ? lmc_json_str(json_object_array_get_idx(m, nm - 1), "role", NULL) : NULL;
        if (!agp || cont || lmc_json_get(c, "error") || (extra && json_object_object_length(extra)) ||
            !role || strcmp(role, "user"))
            continue;
        json_object *full = json_object_new_array();
        for (size_t k = 0; k < nm; k++)
            json_object_array_add(full, json_object_get(json_object_array_get_idx(m, k)));
        json_object *answer = json_object_new_object();
        json_object_object_add(answer, "role", json_object_new_string("assistant"));
        json_object_object_add(answer, "content", json_object_new_string("Sure."));
        json_object_array_add(full, answer);
        json_object *rec = json_object_new_object();
        json_object_object_add(rec, "messages", full);
        json_object *tools = lmc_json_get(c, "tools");
        if (tools) json_object_object_add(rec, "tools", json_object_get(tools));
        lmc_buf_puts(&file, json_object_to_json_string_ext(rec, JSON_C_TO_STRING_PLAIN));
        lmc_buf_putc(&file, '\n');
        json_object_put(rec);
        used[nu++] = c;
    }
    CHECK(nu >= 8);
    const char *path = tt_write("chat_ext.jsonl", file.p);
    lmc_buf_free(&file);
    lmc_dataset *d = load(path, LMC_DATASET_AUTO, true, true);
    size_t n_ok = 0, n_tools = 0;
    for (size_t i = 0; d && i < nu; i++) {
        const char *g = lmc_json_str(used[i], "expected", NULL);
        lmc_buf want = {0};
        lmc_buf_puts(&want, g);
        lmc_buf_puts(&want, "<think>\n\n</think>\n\nSure.<|im_end|>\n");
        size_t ne, npre;
        int32_t *exp = encode(want.p, &ne), *pre = encode(g, &npre);
        int32_t *ids;
        size_t n, pl;
        CHECK(!lmc_dataset_get(d, i, &ids, &n, &pl));
        bool ok = ids_eq(ids, n, exp, ne) && pl == npre;
        CHECK_MSG(ok, "chat from %s: %zu ids (want %zu), prompt %zu (want %zu)",
                  lmc_json_str(used[i], "name", NULL), n, ne, pl, npre);
        n_ok += ok;
        n_tools += ok && lmc_json_get(used[i], "tools");
        lmc_free(ids);
        lmc_free(exp);
        lmc_free(pre);
        lmc_buf_free(&want);
    }
    CHECK(n_tools >= 2);
    printf("  chat: %zu/%zu golden conversations + answer match (ids and prompt length), %zu with tools\n",
           n_ok, nu, n_tools);
    lmc_dataset_free(d);
    json_object_put(doc);
}

static void check_completion(lmc_dataset *d, size_t i, const char *prompt, const char *completion,
                             bool masked) {
    char full[4200], pre[2048];
    snprintf(pre, sizeof pre, "<|im_start|>user\n%s<|im_end|>\n<|im_start|>assistant\n", prompt);
    snprintf(full, sizeof full, "%s<think>\n\n</think>\n\n%s<|im_end|>\n", pre, completion);
    size_t ne, np;
    int32_t *exp = encode(full, &ne), *pexp = encode(pre, &np);
    int32_t *ids;
    size_t n, pl = 99;
    CHECK(!lmc_dataset_get(d, i, &ids, &n, &pl));
    CHECK_MSG(ids_eq(ids, n, exp, ne), "completion %zu: %zu ids, want %zu", i, n, ne);
    CHECK_EQ_INT(pl, masked ? np : 0);
    if (masked) CHECK(ids_eq(ids, np, pexp, np));
    lmc_free(ids);
    lmc_free(exp);
    lmc_free(pexp);
}

static void test_completions(void) {
    const char *path = tt_write("comp.jsonl",
        "{\"prompt\": \"What is 2 + 2?\", \"completion\": \"2 + 2 = 4.\", \"messages\": 1}\n"
        "{\"completion\": \"Très bien, merci ! 😊\", \"prompt\": \"Ça va?\"}\n");
    lmc_dataset *plain = load(path, LMC_DATASET_AUTO, false, true);
    lmc_dataset *masked = load(path, LMC_DATASET_AUTO, true, false);
    CHECK_EQ_INT(lmc_dataset_format_of(masked), LMC_DATASET_COMPLETIONS);
    if (plain && masked) {
        check_completion(plain, 0, "What is 2 + 2?", "2 + 2 = 4.", false);
        check_completion(masked, 0, "What is 2 + 2?", "2 + 2 = 4.", true);
        check_completion(masked, 1, "Ça va?", "Très bien, merci ! 😊", true);
        /* the cache gives the same answer twice */
        check_completion(plain, 1, "Ça va?", "Très bien, merci ! 😊", false);
        check_completion(plain, 1, "Ça va?", "Très bien, merci ! 😊", false);
    }
    /* custom keys */
    const char *qa = tt_write("qa.jsonl", "{\"q\": \"Hi\", \"a\": \"Hello\"}\n");
    lmc_dataset_options o;
    lmc_dataset_options_init(&o);
    o.prompt_key = "q";
    o.completion_key = "a";
    o.mask_prompt = true;
    lmc_dataset *d = NULL;
    CHECK(!lmc_dataset_load(qa, tok, &o, &d));
    CHECK_EQ_INT(lmc_dataset_format_of(d), LMC_DATASET_COMPLETIONS);
    if (d) check_completion(d, 0, "Hi", "Hello", true);
    lmc_dataset_free(d);

    /* concatenation routes by index; a cache over it agrees */
    const char *text = tt_write("two.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b c\"}");
    lmc_dataset *t = load(text, LMC_DATASET_AUTO, false, false);
    lmc_dataset *parts[2] = {masked, t}, *cat = NULL, *cc = NULL;
    if (masked && t) {
        CHECK(!lmc_dataset_concat(parts, 2, &cat));
        CHECK_EQ_INT(lmc_dataset_len(cat), 4);
        CHECK_EQ_INT(lmc_dataset_format_of(cat), LMC_DATASET_AUTO);
        CHECK(!lmc_dataset_cached(cat, &cc));
        masked = t = NULL;
        check_completion(cc, 1, "Ça va?", "Très bien, merci ! 😊", true);
        int32_t *ids;
        size_t n, pl, ne, line = 0;
        int32_t *exp = encode("b c", &ne);
        CHECK(!lmc_dataset_get(cc, 3, &ids, &n, &pl));
        CHECK(n == ne + 1 && ids_eq(ids, ne, exp, ne) && ids[ne] == EOS && pl == 0);
        lmc_free(ids);
        lmc_free(exp);
        char *json = NULL;
        const char *src = NULL;
        CHECK(!lmc_dataset_record(cc, 3, &json, &src, &line));
        CHECK_STREQ(json, "{\"text\": \"b c\"}");
        CHECK_STREQ(src, text);
        CHECK_EQ_INT(line, 2);
        lmc_free(json);
        CHECK_ERR(lmc_dataset_get(cc, 4, &ids, &n, &pl), LMC_ERR_INVALID_ARG, "index 4 out of range");
    }
    lmc_dataset_free(cc);
    lmc_dataset_free(plain);
    lmc_dataset_free(masked);
    lmc_dataset_free(t);
}

/* A template failure at tokenization names the record's file and line. */
static void test_template_error(void) {
    const char *p = tt_write("tplerr.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n");
    const char *q = tt_write("tplerr2.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n"
                                              "{\"messages\": []}\n");
    lmc_dataset *a = load(p, LMC_DATASET_AUTO, false, true);
    lmc_dataset *b = load(q, LMC_DATASET_AUTO, false, true);
    lmc_dataset *parts[2] = {a, b}, *cat = NULL;
    if (a && b && !lmc_dataset_concat(parts, 2, &cat)) {
        char want[1200];
        snprintf(want, sizeof want, "%s:2: chat template error", q);
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_ERR(lmc_dataset_get(cat, 3, &ids, &n, NULL), LMC_ERR_TEMPLATE, want);
        CHECK(!ids && !n);
        size_t ne;
        int32_t *exp = encode("<|im_start|>user\nx<|im_end|>\n", &ne);
        CHECK(!lmc_dataset_get(cat, 2, &ids, &n, NULL) && ids_eq(ids, n, exp, ne) && n == 6);
        lmc_free(ids);
        lmc_free(exp);
        lmc_dataset_free(cat);
    } else {
        CHECK(0);
        lmc_dataset_free(a);
        lmc_dataset_free(b);
    }
}

static void test_dir(void) {
    const char *dir = tt_path("split");
    mkdir(dir, 0700);
    tt_write("split/train.jsonl", "{\"text\": \"one\"}\n{\"text\": \"two\"}\n");
    tt_write("split/valid.jsonl", "{\"prompt\": \"p\", \"completion\": \"c\"}\n");
    lmc_dataset *tr = NULL, *va = NULL, *te = (lmc_dataset *)1;
    CHECK(!lmc_dataset_load_dir(dir, tok, NULL, &tr, &va, &te));
    CHECK(te == NULL);
    CHECK_EQ_INT(lmc_dataset_len(tr), 2);
    CHECK_EQ_INT(lmc_dataset_len(va), 1);
    CHECK_EQ_INT(lmc_dataset_format_of(va), LMC_DATASET_COMPLETIONS);
    lmc_dataset_free(tr);
    lmc_dataset_free(va);
    te = NULL;
    CHECK_ERR(lmc_dataset_load_dir(dir, tok, NULL, NULL, NULL, &te), LMC_ERR_NOT_FOUND, "test.jsonl");
    tt_write("split/test.jsonl", "");
    CHECK_ERR(lmc_dataset_load_dir(dir, tok, NULL, &tr, &va, &te), LMC_ERR_FORMAT, "split/test.jsonl: empty");
    CHECK(!tr && !va && !te);
}

int main(void) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/.cache/assets/tokenizers/qwen3", tt_root());
    if (!lmc_path_exists(dir)) CHECK_SKIP("%s not fetched (scripts/fetch_assets.sh)", dir);
    if (lmc_tokenizer_load(dir, &tok)) {
        fprintf(stderr, "load qwen3: %s\n", lmc_last_error());
        return 1;
    }
    EOS = lmc_tokenizer_token_to_id(tok, "<|im_end|>");
    CHECK_EQ_INT(EOS, 151645);
    test_text();
    test_chat();
    test_chat_extended();
    test_completions();
    test_template_error();
    test_dir();
    lmc_tokenizer_free(tok);
    return check_summary("test_train_datasets");
}
