/* Tokenizer parity with the Hugging Face `tokenizers` library: every corpus
 * string, for every tokenizer, must give identical ids (with and without
 * special tokens) and identical decode strings; the streaming detokenizer
 * must reproduce decode exactly; malformed files must fail clearly.
 * Goldens: tests/golden/tokenizer/<name>.jsonl (tests/oracle/tokenizer_goldens.py). */
#include "base/json.h"
#include "check.h"
#include "lmc.h"
#include <stdint.h>
#include <unistd.h>

static const char *src_dir(void) {
    const char *s = getenv("LMC_SOURCE_DIR");
    return s ? s : ".";
}

typedef struct {
    char **s;
    size_t *len;
    size_t n;
} corpus;

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    if (b && fread(b, 1, (size_t)n, f) != (size_t)n) {
        free(b);
        b = NULL;
    }
    if (b) b[n] = 0;
    fclose(f);
    if (len) *len = (size_t)n;
    return b;
}

/* Splits a file into lines (in place). */
static size_t lines_of(char *text, char ***out) {
    size_t n = 0, cap = 1024;
    char **v = malloc(cap * sizeof *v);
    for (char *p = text; p && *p;) {
        char *e = strchr(p, '\n');
        if (e) *e = 0;
        if (n == cap) v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = p;
        p = e ? e + 1 : NULL;
    }
    *out = v;
    return n;
}

static bool ids_eq(const int32_t *a, size_t na, json_object *arr, const int32_t *pre, size_t npre,
                   const int32_t *post, size_t npost) {
    size_t nb = json_object_array_length(arr);
    if (na != npre + nb + npost) return false;
    for (size_t i = 0; i < npre; i++)
        if (a[i] != pre[i]) return false;
    for (size_t i = 0; i < nb; i++)
        if (a[npre + i] != json_object_get_int(json_object_array_get_idx(arr, i))) return false;
    for (size_t i = 0; i < npost; i++)
        if (a[npre + nb + i] != post[i]) return false;
    return true;
}

static size_t to_ids(json_object *arr, int32_t *out, size_t cap) {
    size_t n = arr ? json_object_array_length(arr) : 0;
    for (size_t i = 0; i < n && i < cap; i++)
        out[i] = json_object_get_int(json_object_array_get_idx(arr, i));
    return n;
}

static void show_ids(const char *what, const int32_t *v, size_t n) {
    fprintf(stderr, "    %s:", what);
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, " %d", v[i]);
    fprintf(stderr, "%s\n", n > 40 ? " ..." : "");
}

static char *stream_decode(const lmc_tokenizer *t, const int32_t *ids, size_t n, bool skip) {
    lmc_detokenizer *d = NULL;
    if (lmc_detokenizer_new(t, skip, &d)) return NULL;
    size_t cap = 64, len = 0;
    char *all = malloc(cap);
    all[0] = 0;
    for (size_t i = 0; i <= n; i++) {
        char *seg = NULL;
        lmc_status st = i < n ? lmc_detokenizer_push(d, ids[i], &seg) : lmc_detokenizer_finish(d, &seg);
        if (st) {
            free(all);
            lmc_detokenizer_free(d);
            return NULL;
        }
        size_t k = strlen(seg);
        while (len + k + 1 > cap) all = realloc(all, cap *= 2);
        memcpy(all + len, seg, k + 1);
        len += k;
        lmc_free(seg);
    }
    lmc_detokenizer_free(d);
    return all;
}

typedef struct {
    size_t ids_plain, ids_special, dec, dec_skip, stream, total;
} stats;

static void run_tokenizer(const char *name, const char *dir, const corpus *c) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/%s.jsonl", src_dir(), name);
    char *gold = slurp(path, NULL);
    CHECK_MSG(gold != NULL, "missing goldens %s", path);
    if (!gold) return;
    char **lines;
    size_t nl = lines_of(gold, &lines);
    lmc_tokenizer *t = NULL;
    lmc_status st = lmc_tokenizer_load(dir, &t);
    CHECK_MSG(st == LMC_OK, "%s: load failed: %s", name, lmc_last_error());
    if (st) {
        free(lines);
        free(gold);
        return;
    }
    json_object *hdr = NULL;
    lmc_json_parse(lines[0], strlen(lines[0]), "header", &hdr);
    int32_t pre[8], post[8];
    size_t npre = to_ids(json_object_object_get(hdr, "pre"), pre, 8);
    size_t npost = to_ids(json_object_object_get(hdr, "post"), post, 8);
    CHECK_EQ_INT(nl - 1, c->n);
    stats s = {0};
    int shown = 0;
    int32_t *want = malloc(65536 * sizeof *want);
    for (size_t i = 0; i + 1 < nl && i < c->n; i++) {
        json_object *g = NULL;
        if (lmc_json_parse(lines[i + 1], strlen(lines[i + 1]), "golden", &g)) {
            CHECK_MSG(0, "%s: golden line %zu unparsable", name, i + 1);
            continue;
        }
        s.total++;
        json_object *gi = json_object_object_get(g, "i"), *gs = json_object_object_get(g, "s");
        const char *gd = json_object_get_string(json_object_object_get(g, "d"));
        json_object *gk = json_object_object_get(g, "k");
        const char *gks = gk ? json_object_get_string(gk) : gd;
        int32_t *ids = NULL, *sids = NULL;
        size_t n = 0, ns = 0;
        bool ok1 = false, ok2 = false, ok3 = false, ok4 = false, ok5 = false;
        if (!lmc_tokenizer_encode(t, c->s[i], c->len[i], false, &ids, &n))
            ok1 = ids_eq(ids, n, gi, NULL, 0, NULL, 0);
        if (!lmc_tokenizer_encode(t, c->s[i], c->len[i], true, &sids, &ns))
            ok2 = gs ? ids_eq(sids, ns, gs, NULL, 0, NULL, 0)
                     : ids_eq(sids, ns, gi, pre, npre, post, npost);
        /* Decode the golden ids so decode is judged on its own. */
        size_t nw;
        if (gs) nw = to_ids(gs, want, 65536);
        else {
            memcpy(want, pre, npre * sizeof *want);
            nw = npre + to_ids(gi, want + npre, 65536 - 16);
            memcpy(want + nw, post, npost * sizeof *want);
            nw += npost;
        }
        char *d = NULL, *k = NULL;
        if (!lmc_tokenizer_decode(t, want, nw, false, &d)) ok3 = gd && !strcmp(d, gd);
        if (!lmc_tokenizer_decode(t, want, nw, true, &k)) ok4 = gks && !strcmp(k, gks);
        char *sd = stream_decode(t, want, nw, false), *sk = stream_decode(t, want, nw, true);
        /* Returned strings are NUL-terminated, so text holding U+0000 is
         * compared up to it: segment boundaries then differ, skip those. */
        ok5 = memchr(c->s[i], 0, c->len[i]) ||
              (sd && d && !strcmp(sd, d) && sk && k && !strcmp(sk, k));
        s.ids_plain += ok1;
        s.ids_special += ok2;
        s.dec += ok3;
        s.dec_skip += ok4;
        s.stream += ok5;
        if (!(ok1 && ok2 && ok3 && ok4 && ok5) && shown < 4) {
            shown++;
            json_object *js = json_object_new_string_len(c->s[i], (int)c->len[i]);
            fprintf(stderr, "  %s line %zu mismatch (%d%d%d%d%d) text=%s\n", name, i + 1, ok1, ok2,
                    ok3, ok4, ok5, json_object_to_json_string(js));
            json_object_put(js);
            if (!ok1 && ids) {
                show_ids("got ", ids, n);
                size_t m = to_ids(gi, want + 32768, 32768);
                show_ids("want", want + 32768, m);
            }
            if (!ok3) fprintf(stderr, "    decode got [%s] want [%s]\n", d ? d : "(err)", gd);
            if (!ok4) fprintf(stderr, "    decode(skip) got [%s] want [%s]\n", k ? k : "(err)", gks);
            if (!ok5) fprintf(stderr, "    stream got [%s] / [%s]\n", sd ? sd : "(err)", sk ? sk : "(err)");
        }
        lmc_free(ids);
        lmc_free(sids);
        lmc_free(d);
        lmc_free(k);
        free(sd);
        free(sk);
        json_object_put(g);
    }
    printf("%-12s ids %zu/%zu  ids+special %zu/%zu  decode %zu/%zu  decode(skip) %zu/%zu  "
           "stream %zu/%zu\n",
           name, s.ids_plain, s.total, s.ids_special, s.total, s.dec, s.total, s.dec_skip,
           s.total, s.stream, s.total);
    CHECK_MSG(s.ids_plain == s.total && s.ids_special == s.total && s.dec == s.total &&
                  s.dec_skip == s.total && s.stream == s.total,
              "%s: not at full parity", name);
    free(want);
    json_object_put(hdr);
    lmc_tokenizer_free(t);
    free(lines);
    free(gold);
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    fputs(text, f);
    fclose(f);
}

static void malformed(void) {
    char dir[] = "/tmp/lmc_tok_bad_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    struct {
        const char *json, *needle;
        lmc_status st;
    } cases[] = {
        {"{\"added_tokens\": []}", "model: missing", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}",
         "merges[0]: token \"c\" is not in the vocab", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}",
         "merges[0]: merged token \"ab\" is not in the vocab", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"ab\"]}}",
         "merges[0]: expected \"left right\"", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}}}", "model.merges: missing",
         LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"Magic\"}}", "model.type: unsupported model \"Magic\"",
         LMC_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"normalizer\": {\"type\": \"Sparkle\"}}",
         "normalizer.type: unsupported normalizer \"Sparkle\"", LMC_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Nope\"}]}}",
         "pre_tokenizer.pretokenizers[0].type: unsupported pre_tokenizer \"Nope\"",
         LMC_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": {\"Regex\": \"(\"}}}",
         "pre_tokenizer.pattern.Regex: invalid regex", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"decoder\": {\"type\": \"Wobble\"}}",
         "decoder.type: unsupported decoder \"Wobble\"", LMC_ERR_UNSUPPORTED},
        {"{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", "model.unk_token: missing",
         LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"Unigram\", \"vocab\": [[\"a\"]]}}",
         "model.vocab[0]: expected [\"piece\", score]", LMC_ERR_FORMAT},
        {"{\"model\": ", "invalid JSON", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
         "[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}, "
         "{\"Sequence\": {\"id\": \"A\", \"type_id\": 0}}], "
         "\"special_tokens\": {\"<s>\": {\"id\": \"<s>\", \"ids\": [1885], \"tokens\": [\"<s>\"]}}}}",
         "special token id 1885 is outside the vocabulary (1 tokens)", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 2000000000}, \"merges\": []}}",
         "token id 2000000000 out of range", LMC_ERR_LIMIT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"added_tokens\": [{\"id\": -3, \"content\": \"x\"}]}",
         "added_tokens[0].id: -3 out of range", LMC_ERR_FORMAT},
        {"{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []},"
         " \"post_processor\": {\"type\": \"TemplateProcessing\", \"single\": "
         "[{\"SpecialToken\": {\"id\": \"<s>\", \"type_id\": 0}}]}}",
         "post_processor.special_tokens: \"<s>\" is not defined", LMC_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_file(path, cases[i].json);
        lmc_tokenizer *t = (lmc_tokenizer *)1;
        CHECK_ERR(lmc_tokenizer_load(dir, &t), cases[i].st, cases[i].needle);
        CHECK(t == NULL);
    }
    unlink(path);
    lmc_tokenizer *t = NULL;
    CHECK_ERR(lmc_tokenizer_load(dir, &t), LMC_ERR_NOT_FOUND, "tokenizer.json not found");
    rmdir(dir);
}

/* A regex PCRE2 gives up on (match limit: exponential backtracking over
 * 40 'a's) is an error naming the stage and pattern, never a silent end
 * of splitting; the same patterns on short input still work. */
static void regex_limits(void) {
    char dir[] = "/tmp/lmc_tok_re_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[512];
    snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    const char *a40 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const char *model = "\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, "
                        "\"x\": 2, \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\": 3}, \"merges\": []}";
    const char *pat = "{\"Regex\": \"(?:a|a)*[bc]\"}";
    struct {
        const char *stage, *needle;
        bool decode;
    } cases[] = {
        {"\"pre_tokenizer\": {\"type\": \"Split\", \"pattern\": %s, \"behavior\": \"Isolated\", "
         "\"invert\": false}",
         "pre_tokenizer.pattern.Regex \"(?:a|a)*[bc]\": matching 40 bytes of input at offset 0 "
         "failed: match limit exceeded", false},
        {"\"normalizer\": {\"type\": \"Replace\", \"pattern\": %s, \"content\": \"x\"}",
         "normalizer.pattern.Regex \"(?:a|a)*[bc]\": matching 40 bytes", false},
        {"\"decoder\": {\"type\": \"Replace\", \"pattern\": %s, \"content\": \"x\"}",
         "decoder.pattern.Regex \"(?:a|a)*[bc]\": matching 40 bytes", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char stage[512], json[1024];
        snprintf(stage, sizeof stage, cases[i].stage, pat);
        snprintf(json, sizeof json, "{%s, %s}", model, stage);
        write_file(path, json);
        lmc_tokenizer *t = NULL;
        CHECK_EQ_INT(lmc_tokenizer_load(dir, &t), LMC_OK);
        if (!t) continue;
        int32_t *ids = NULL;
        size_t n = 0;
        if (cases[i].decode) {
            char *text = NULL;
            int32_t one = 3;
            CHECK_ERR(lmc_tokenizer_decode(t, &one, 1, false, &text), LMC_ERR_LIMIT,
                      cases[i].needle);
            free(text);
        } else {
            CHECK_ERR(lmc_tokenizer_encode(t, a40, strlen(a40), false, &ids, &n), LMC_ERR_LIMIT,
                      cases[i].needle);
            free(ids);
            ids = NULL;
            CHECK_EQ_INT(lmc_tokenizer_encode(t, "aab", 3, false, &ids, &n), LMC_OK);
            CHECK(n >= 1); /* "aab" split off, or replaced by "x" */
            free(ids);
        }
        lmc_tokenizer_free(t);
    }
    unlink(path);
    rmdir(dir);
}

/* tokenizer_config.json forms: object-form tokens, named template list;
 * chat_template.jinja fallback; a tiny BPE with an inline special token. */
static void config_forms(void) {
    char dir[] = "/tmp/lmc_tok_cfg_XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char tj[512], tc[512], jj[512];
    snprintf(tj, sizeof tj, "%s/tokenizer.json", dir);
    snprintf(tc, sizeof tc, "%s/tokenizer_config.json", dir);
    snprintf(jj, sizeof jj, "%s/chat_template.jinja", dir);
    write_file(tj, "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2},"
                   " \"merges\": [[\"a\", \"b\"]]},"
                   " \"added_tokens\": [{\"id\": 3, \"content\": \"<s>\", \"special\": true}]}");
    write_file(tc, "{\"bos_token\": {\"__type\": \"AddedToken\", \"content\": \"<s>\"},"
                   " \"add_bos_token\": true, \"chat_template\": [{\"name\": \"default\","
                   " \"template\": \"D\"}, {\"name\": \"tool_use\", \"template\": \"T\"}]}");
    lmc_tokenizer *t = NULL;
    CHECK_EQ_INT(lmc_tokenizer_load(dir, &t), LMC_OK);
    if (t) {
        CHECK_STREQ(lmc_tokenizer_chat_template(t, NULL), "D");
        CHECK_STREQ(lmc_tokenizer_chat_template(t, "tool_use"), "T");
        CHECK(lmc_tokenizer_chat_template(t, "rag") == NULL);
        CHECK_EQ_INT(lmc_tokenizer_bos_id(t), 3);
        CHECK(lmc_tokenizer_config_bool(t, "add_bos_token", false));
        int32_t *ids = NULL;
        size_t n = 0;
        CHECK_EQ_INT(lmc_tokenizer_encode(t, "ab<s>ba", 7, true, &ids, &n), LMC_OK);
        CHECK_EQ_INT(n, 4); /* no post_processor: nothing added */
        if (n == 4) {
            CHECK_EQ_INT(ids[0], 2);
            CHECK_EQ_INT(ids[1], 3);
            CHECK_EQ_INT(ids[2], 1);
            CHECK_EQ_INT(ids[3], 0);
        }
        char *d = NULL;
        CHECK_EQ_INT(lmc_tokenizer_decode(t, ids, n, false, &d), LMC_OK);
        CHECK_STREQ(d, "ab <s> b a"); /* no decoder: tokens joined by spaces */
        lmc_free(d);
        CHECK_EQ_INT(lmc_tokenizer_decode(t, ids, n, true, &d), LMC_OK);
        CHECK_STREQ(d, "ab b a");
        lmc_free(d);
        lmc_free(ids);
        lmc_tokenizer_free(t);
    }
    unlink(tc);
    write_file(jj, "J{{ x }}");
    CHECK_EQ_INT(lmc_tokenizer_load(dir, &t), LMC_OK);
    if (t) {
        CHECK_STREQ(lmc_tokenizer_chat_template(t, NULL), "J{{ x }}");
        CHECK(lmc_tokenizer_special_token(t, "bos_token") == NULL);
        lmc_tokenizer_free(t);
    }
    write_file(tc, "{\"chat_template\": 5}");
    CHECK_ERR(lmc_tokenizer_load(dir, &t), LMC_ERR_FORMAT, "chat_template: expected a string or a list");
    unlink(tc);
    unlink(jj);
    unlink(tj);
    rmdir(dir);
}

static void config_and_api(const char *assets) {
    char dir[8192];
    snprintf(dir, sizeof dir, "%s/qwen3", assets);
    lmc_tokenizer *t = NULL;
    if (lmc_tokenizer_load(dir, &t)) return;
    CHECK_STREQ(lmc_tokenizer_special_token(t, "eos_token"), "<|im_end|>");
    CHECK_STREQ(lmc_tokenizer_special_token(t, "pad_token"), "<|endoftext|>");
    CHECK(lmc_tokenizer_special_token(t, "bos_token") == NULL);
    CHECK_EQ_INT(lmc_tokenizer_bos_id(t), -1);
    const int32_t *eos;
    CHECK_EQ_INT(lmc_tokenizer_eos_ids(t, &eos), 1);
    CHECK_EQ_INT(eos[0], 151645);
    int32_t two[2] = {151645, 151643};
    CHECK_EQ_INT(lmc_tokenizer_set_eos_ids(t, two, 2), LMC_OK);
    CHECK_EQ_INT(lmc_tokenizer_eos_ids(t, &eos), 2);
    CHECK_EQ_INT(eos[1], 151643);
    const char *ct = lmc_tokenizer_chat_template(t, NULL);
    CHECK(ct && strstr(ct, "<|im_start|>"));
    CHECK(lmc_tokenizer_chat_template(t, "tool_use") == NULL);
    CHECK_EQ_INT(lmc_tokenizer_token_to_id(t, "<|im_start|>"), 151644);
    CHECK(lmc_tokenizer_is_special(t, 151644));
    CHECK(!lmc_tokenizer_is_special(t, 100));
    CHECK_STREQ(lmc_tokenizer_id_to_token(t, 151644), "<|im_start|>");
    CHECK(lmc_tokenizer_id_to_token(t, -5) == NULL);
    CHECK(lmc_tokenizer_vocab_size(t) >= 151669);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_ERR(lmc_tokenizer_encode(t, "ab\xff", 3, false, &ids, &n), LMC_ERR_INVALID_ARG,
              "not valid UTF-8 (byte 2)");
    lmc_tokenizer_free(t);

    snprintf(dir, sizeof dir, "%s/deepseek_v3", assets);
    if (!lmc_tokenizer_load(dir, &t)) { /* object-form special tokens */
        CHECK_STREQ(lmc_tokenizer_special_token(t, "bos_token"), "<｜begin▁of▁sentence｜>");
        CHECK_EQ_INT(lmc_tokenizer_bos_id(t), 0);
        CHECK(lmc_tokenizer_config_bool(t, "add_bos_token", false));
        CHECK(!lmc_tokenizer_config_bool(t, "add_eos_token", true));
        CHECK(lmc_tokenizer_config_bool(t, "no_such_key", true));
        lmc_tokenizer_free(t);
    }
    snprintf(dir, sizeof dir, "%s/llama2", assets);
    if (!lmc_tokenizer_load(dir, &t)) {
        CHECK_EQ_INT(lmc_tokenizer_bos_id(t), 1);
        CHECK(lmc_tokenizer_chat_template(t, NULL) == NULL);
        lmc_tokenizer_free(t);
    }
}

static bool wanted(int argc, char **argv, const char *name) {
    if (argc < 2) return true; /* no names: everything */
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], name)) return true;
    return false;
}

/* Arguments: tokenizer names to check (default all) and "--api" for the
 * malformed-file and config/API checks (default when no arguments). */
int main(int argc, char **argv) {
    char path[8192 + 64], assets[4096];
    snprintf(path, sizeof path, "%s/tests/golden/tokenizer/corpus.jsonl", src_dir());
    snprintf(assets, sizeof assets, "%s/.cache/assets/tokenizers", src_dir());
    bool api = wanted(argc, argv, "--api");
    if (api) {
        malformed();
        regex_limits();
        config_forms();
    }
    char *text = slurp(path, NULL);
    if (!text) CHECK_SKIP("corpus %s missing", path);
    char **lines;
    corpus c = {0};
    c.n = lines_of(text, &lines);
    c.s = calloc(c.n, sizeof *c.s);
    c.len = calloc(c.n, sizeof *c.len);
    json_object **keep = calloc(c.n, sizeof *keep);
    for (size_t i = 0; i < c.n; i++) {
        CHECK(lmc_json_parse(lines[i], strlen(lines[i]), "corpus", &keep[i]) == LMC_OK);
        c.s[i] = (char *)json_object_get_string(keep[i]);
        c.len[i] = (size_t)json_object_get_string_len(keep[i]);
    }
    printf("corpus: %zu strings\n", c.n);
    static const char *real[] = {"qwen3", "llama3_1", "llama2", "gemma3", "deepseek_v3", "gptoss"};
    int want_real = 0, ran_real = 0;
    for (size_t i = 0; i < sizeof real / sizeof real[0]; i++) {
        if (!wanted(argc, argv, real[i])) continue;
        want_real++;
        char dir[8192];
        snprintf(dir, sizeof dir, "%s/%s", assets, real[i]);
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
        if (access(path, R_OK)) {
            printf("%-12s assets missing (scripts/fetch_assets.sh), skipped\n", real[i]);
            continue;
        }
        run_tokenizer(real[i], dir, &c);
        ran_real++;
    }
    /* Made on the device machine by the oracle script: BERT WordPiece (from a
     * published vocabulary), a trained Unigram, and that Unigram plus added
     * tokens with lstrip/rstrip/single_word/normalized. */
    static const char *local[] = {"bert", "unigram", "added"};
    for (size_t i = 0; i < 3; i++) {
        if (!wanted(argc, argv, local[i])) continue;
        char dir[8192];
        snprintf(dir, sizeof dir, "%s/tests/golden/tokenizer/%s", src_dir(), local[i]);
        run_tokenizer(local[i], dir, &c);
    }
    if (api) config_and_api(assets);
    for (size_t i = 0; i < c.n; i++) json_object_put(keep[i]);
    free(keep);
    free(c.s);
    free(c.len);
    free(lines);
    free(text);
    if (want_real && !ran_real && !check_failures)
        CHECK_SKIP("no real tokenizer assets; run scripts/fetch_assets.sh");
    return check_summary("test_tokenizer_parity");
}
