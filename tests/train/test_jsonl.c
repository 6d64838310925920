/* Every failure the dataset loader promises: right status, and a message
 * naming the file and (for record problems) the line. Uses the committed
 * WordPiece golden tokenizer, which has no chat template, so this test needs
 * no fetched assets. */
#include "base/file.h"
#include "check.h"
#include "lmc.h"
#include "train/dataset.h"
#include "train/jsonl.h"
#include "train_test_util.h"
#include <sys/stat.h>

static lmc_tokenizer *tok;

/* Load `content` from file `name` and expect status `st` with a message
 * containing "<path><where>" and `needle`. */
static void expect(const char *name, const char *content, size_t len, const lmc_dataset_options *o,
                   lmc_status st, const char *where, const char *needle) {
    const char *path = tt_write_n(name, content, len);
    lmc_dataset *d = (lmc_dataset *)1;
    lmc_status got = lmc_dataset_load(path, tok, o, &d);
    const char *msg = lmc_last_error();
    char head[1200];
    snprintf(head, sizeof head, "%s%s", path, where);
    CHECK_MSG(got == st && d == NULL && strstr(msg, head) && strstr(msg, needle),
              "%s: status %s (want %s), message \"%s\" (want \"%s\" and \"%s\")", name,
              lmc_status_str(got), lmc_status_str(st), msg, head, needle);
    if (got == LMC_OK) lmc_dataset_free(d);
}
#define EXPECT(name, text, st, where, needle) expect(name, text, (size_t)-1, NULL, st, where, needle)

static void test_file_errors(void) {
    lmc_dataset *d = (lmc_dataset *)1;
    const char *missing = tt_path("nope.jsonl");
    CHECK_ERR(lmc_dataset_load(missing, tok, NULL, &d), LMC_ERR_NOT_FOUND, missing);
    CHECK(d == NULL);
    const char *dir = tt_path("adir");
    mkdir(dir, 0700);
    CHECK_ERR(lmc_dataset_load(dir, tok, NULL, &d), LMC_ERR_IO, "not a regular file");
    /* A FIFO with no writer must be refused at once, not block. */
    const char *fifo = tt_path("fifo.jsonl");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_ERR(lmc_dataset_load(fifo, tok, NULL, &d), LMC_ERR_IO, "fifo.jsonl is not a regular file");
    CHECK_ERR(lmc_dataset_load("hf://mlx-community/wikisql", tok, NULL, &d), LMC_ERR_UNSUPPORTED,
              "hf://mlx-community/wikisql: Hugging Face Hub");
    CHECK_ERR(lmc_dataset_load(NULL, tok, NULL, &d), LMC_ERR_INVALID_ARG, "NULL");
    CHECK_ERR(lmc_dataset_load(missing, NULL, NULL, &d), LMC_ERR_INVALID_ARG, "NULL");
    EXPECT("empty.jsonl", "", LMC_ERR_FORMAT, ":", "empty file");

    lmc_dataset_options o;
    lmc_dataset_options_init(&o);
    o.max_file_bytes = 20;
    expect("big.jsonl", "{\"text\": \"0123456789\"}\n", (size_t)-1, &o, LMC_ERR_LIMIT, " is 23 bytes",
           "over the 20-byte limit");
    lmc_dataset_options_init(&o);
    o.max_line_bytes = 16;
    expect("longline.jsonl", "{\"text\": \"a\"}\n{\"text\": \"0123456789\"}\n", (size_t)-1, &o,
           LMC_ERR_LIMIT, ":2:", "over the 16-byte line limit");
    /* exactly at the line cap is fine */
    const char *at = tt_write("atcap.jsonl", "{\"text\": \"01234\"}\n");
    o.max_line_bytes = 17;
    CHECK(!lmc_dataset_load(at, tok, &o, &d) && lmc_dataset_len(d) == 1);
    lmc_dataset_free(d);

    /* dir loading: a directory holding none of the splits */
    const char *none = tt_path("nosplits");
    mkdir(none, 0700);
    lmc_dataset *tr = NULL;
    CHECK_ERR(lmc_dataset_load_dir(none, tok, NULL, &tr, NULL, NULL), LMC_ERR_NOT_FOUND, "nosplits");
    CHECK_ERR(lmc_dataset_load_dir(missing, tok, NULL, &tr, NULL, NULL), LMC_ERR_NOT_FOUND,
              "does not exist");
    CHECK_ERR(lmc_dataset_load_dir(fifo, tok, NULL, &tr, NULL, NULL), LMC_ERR_IO, "not a directory");
}

static void test_line_errors(void) {
    EXPECT("bad.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\",}\n", LMC_ERR_FORMAT,
           ":3:", "invalid JSON");
    EXPECT("trunc.jsonl", "{\"text\": \"a\"}\n{\"text\": \"b", LMC_ERR_FORMAT, ":2:", "invalid JSON");
    EXPECT("comment.jsonl", "{\"text\": \"a\"} /* note */\n", LMC_ERR_FORMAT, ":1:", "invalid JSON at column 15");
    EXPECT("trail.jsonl", "{\"text\": \"a\"} {\"text\": \"b\"}\n", LMC_ERR_FORMAT, ":1:", "invalid JSON at column 15");
    EXPECT("blank.jsonl", "{\"text\": \"a\"}\n\n{\"text\": \"b\"}\n", LMC_ERR_FORMAT, ":2:", "blank line");
    EXPECT("blank2.jsonl", "{\"text\": \"a\"}\n \t\r\n", LMC_ERR_FORMAT, ":2:", "blank line");
    EXPECT("onlynl.jsonl", "\n", LMC_ERR_FORMAT, ":1:", "blank line");
    EXPECT("utf8.jsonl", "{\"text\": \"a\"}\n{\"text\": \"\xc3\x28\"}\n", LMC_ERR_FORMAT, ":2:",
           "invalid UTF-8 at column 11");
    EXPECT("overlong.jsonl", "{\"text\": \"\xc0\xaf\"}\n", LMC_ERR_FORMAT, ":1:", "invalid UTF-8");
    EXPECT("surrogate.jsonl", "{\"text\": \"\xed\xa0\x80\"}\n", LMC_ERR_FORMAT, ":1:", "invalid UTF-8");
    static const char nul[] = "{\"text\": \"a\"}\n{\"te\0xt\": \"b\"}\n";
    expect("nul.jsonl", nul, sizeof nul - 1, NULL, LMC_ERR_FORMAT, ":2:", "NUL byte at column 5");
    EXPECT("array.jsonl", "[1, 2]\n", LMC_ERR_FORMAT, ":1:", "must be a JSON object, got array");
    EXPECT("string.jsonl", "{\"text\": \"a\"}\n\"text\"\n", LMC_ERR_FORMAT, ":2:",
           "must be a JSON object, got string");
    EXPECT("null.jsonl", "{\"text\": \"a\"}\n null \n", LMC_ERR_FORMAT, ":2:",
           "must be a JSON object, got null");
    EXPECT("unknown.jsonl", "{\"input\": \"a\", \"output\": \"b\"}\n", LMC_ERR_FORMAT, ":1:",
           "unsupported data format");
    /* only one of prompt/completion is not a completions record */
    EXPECT("halfcomp.jsonl", "{\"prompt\": \"a\"}\n", LMC_ERR_FORMAT, ":1:", "unsupported data format");
}

static void test_field_errors(void) {
    EXPECT("nokey.jsonl", "{\"text\": \"a\"}\n{\"txt\": \"b\"}\n", LMC_ERR_NOT_FOUND, ":2:",
           "record has no \"text\" key");
    EXPECT("texttype.jsonl", "{\"text\": \"a\"}\r\n{\"text\": 5}\r\n", LMC_ERR_FORMAT, ":2:",
           "\"text\" must be a string, got int");
    EXPECT("textnull.jsonl", "{\"text\": null}\n", LMC_ERR_FORMAT, ":1:", "\"text\" must be a string, got null");
    EXPECT("msgtype.jsonl", "{\"messages\": []}\n{\"messages\": {\"role\": \"user\"}}\n", LMC_ERR_FORMAT,
           ":2:", "\"messages\" must be an array of messages, got object");
    EXPECT("msgitem.jsonl", "{\"messages\": [{\"role\": \"user\"}, 2]}\n", LMC_ERR_FORMAT, ":1:",
           "messages[1] must be a message object, got int");
    EXPECT("msgmissing.jsonl", "{\"messages\": []}\n{\"text\": \"x\"}\n", LMC_ERR_NOT_FOUND, ":2:",
           "record has no \"messages\" key");
    EXPECT("tools.jsonl", "{\"messages\": [], \"tools\": {}}\n", LMC_ERR_FORMAT, ":1:",
           "\"tools\" must be an array or null, got object");
    EXPECT("compmissing.jsonl",
           "{\"prompt\": \"a\", \"completion\": \"b\"}\n\n", LMC_ERR_FORMAT, ":2:", "blank line");
    EXPECT("compmissing2.jsonl",
           "{\"prompt\": \"a\", \"completion\": \"b\"}\n{\"prompt\": \"a\"}\n", LMC_ERR_NOT_FOUND, ":2:",
           "record has no \"completion\" key");
    EXPECT("comptype.jsonl", "{\"prompt\": \"a\", \"completion\": [\"b\"]}\n", LMC_ERR_FORMAT, ":1:",
           "\"completion\" must be a string, got array");

    lmc_dataset_options o;
    lmc_dataset_options_init(&o);
    o.mask_prompt = true;
    expect("masktext.jsonl", "{\"text\": \"a\"}\n", (size_t)-1, &o, LMC_ERR_INVALID_ARG, ":",
           "prompt masking is not supported for a text dataset");
    lmc_dataset_options_init(&o);
    o.format = LMC_DATASET_CHAT;
    expect("forced.jsonl", "{\"text\": \"a\"}\n", (size_t)-1, &o, LMC_ERR_NOT_FOUND, ":1:",
           "record has no \"messages\" key");
    o.format = (lmc_dataset_format)9;
    expect("badfmt.jsonl", "{\"text\": \"a\"}\n", (size_t)-1, &o, LMC_ERR_INVALID_ARG, "",
           "unknown dataset format 9");
    lmc_dataset_options_init(&o);
    o.text_key = "body";
    expect("customkey.jsonl", "{\"text\": \"a\"}\n", (size_t)-1, &o, LMC_ERR_FORMAT, ":1:",
           "\"body\" (text)");
}

/* Accepted shapes, line numbers, and failures at tokenization time. */
static void test_accepted(void) {
    /* CRLF endings, a final line without a newline, surrounding spaces,
     * BOM-free UTF-8 and escaped NULs inside strings are all fine. */
    const char *p = tt_write("ok.jsonl",
                             "{\"text\": \"a\"}\r\n  {\"text\": \"\xc3\xa9\\u0000\"}  \n{\"text\": \"c\"}");
    lmc_dataset_options o;
    lmc_dataset_options_init(&o);
    o.cache = false;
    lmc_dataset *d = NULL;
    CHECK(!lmc_dataset_load(p, tok, &o, &d));
    CHECK_EQ_INT(lmc_dataset_len(d), 3);
    CHECK_EQ_INT(lmc_dataset_format_of(d), LMC_DATASET_TEXT);
    char *json = NULL;
    size_t line = 0;
    CHECK(!lmc_dataset_record(d, 2, &json, NULL, &line));
    CHECK_STREQ(json, "{\"text\": \"c\"}");
    CHECK_EQ_INT(line, 3);
    lmc_free(json);
    int32_t *ids = NULL;
    size_t n = 0, pl = 7;
    CHECK(!lmc_dataset_get(d, 0, &ids, &n, &pl));
    CHECK(n >= 1 && pl == 0);
    lmc_free(ids);
    CHECK_ERR(lmc_dataset_get(d, 3, &ids, &n, &pl), LMC_ERR_INVALID_ARG, "index 3 out of range (3 records)");
    CHECK(ids == NULL && n == 0);
    CHECK_ERR(lmc_dataset_record(d, 5, &json, NULL, NULL), LMC_ERR_INVALID_ARG, "index 5");
    lmc_dataset_free(d);

    /* This tokenizer has no chat template: the failure names file and line. */
    p = tt_write("chat.jsonl", "{\"messages\": []}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}]}\n");
    lmc_dataset_options_init(&o);
    CHECK(!lmc_dataset_load(p, tok, &o, &d));
    char want[1200];
    snprintf(want, sizeof want, "%s:2: ", p);
    CHECK_ERR(lmc_dataset_get(d, 1, &ids, &n, &pl), LMC_ERR_NOT_FOUND, want);
    CHECK(ids == NULL && n == 0);
    size_t il = 5;
    CHECK(lmc_dataset_item_len(d, 0, &il) != LMC_OK && il == 0);
    lmc_dataset_free(d);

    /* concat / cache argument checks */
    lmc_dataset *cat = NULL;
    CHECK_ERR(lmc_dataset_concat(NULL, 0, &cat), LMC_ERR_INVALID_ARG, "no datasets");
    CHECK_ERR(lmc_dataset_cached(NULL, &cat), LMC_ERR_INVALID_ARG, "NULL");
    p = tt_write("one.jsonl", "{\"text\": \"a\"}\n");
    CHECK(!lmc_dataset_load(p, tok, NULL, &d));
    lmc_dataset *twice[2] = {d, d};
    CHECK_ERR(lmc_dataset_concat(twice, 2, &cat), LMC_ERR_INVALID_ARG, "same dataset");
    lmc_dataset_free(d);
    CHECK_EQ_INT(lmc_dataset_len(NULL), 0);
    lmc_dataset_free(NULL);
    CHECK_STREQ(lmc_dataset_format_name(LMC_DATASET_COMPLETIONS), "completions");
}

/* The in-memory reader: spans, and the buffer loader without a tokenizer. */
static void test_reader(void) {
    const char text[] = "{\"a\":1}\r\n{\"b\":2}\n{\"c\":3}";
    lmc_jsonl_line *l = NULL;
    size_t n = 0;
    CHECK(!lmc_jsonl_split(text, sizeof text - 1, "mem", 100, &l, &n));
    CHECK_EQ_INT(n, 3);
    if (n == 3) {
        CHECK(l[0].off == 0 && l[0].len == 7 && l[0].line == 1);
        CHECK(l[1].off == 9 && l[1].len == 7 && l[1].line == 2);
        CHECK(l[2].off == 17 && l[2].len == 7 && l[2].line == 3);
    }
    free(l);
    CHECK(!lmc_jsonl_split("", 0, "mem", 100, &l, &n) && n == 0 && !l);
    CHECK_ERR(lmc_jsonl_split("{}\n\r\n{}", 7, "mem", 100, &l, &n), LMC_ERR_FORMAT, "mem:2: blank");

    lmc_dataset *d = NULL;
    CHECK(!lmc_dataset_load_buffer("{\"prompt\":\"p\",\"completion\":\"c\"}", 31, "buf", NULL, NULL, &d));
    CHECK_EQ_INT(lmc_dataset_format_of(d), LMC_DATASET_COMPLETIONS);
    int32_t *ids;
    size_t ni;
    CHECK_ERR(lmc_dataset_get(d, 0, &ids, &ni, NULL), LMC_ERR_STATE, "buf:1: dataset has no tokenizer");
    lmc_dataset_free(d);
}

int main(void) {
    char dir[2048];
    snprintf(dir, sizeof dir, "%s/tests/golden/tokenizer/bert", tt_root());
    if (lmc_tokenizer_load(dir, &tok)) {
        fprintf(stderr, "load %s: %s\n", dir, lmc_last_error());
        return 1;
    }
    test_file_errors();
    test_line_errors();
    test_field_errors();
    test_accepted();
    test_reader();
    lmc_tokenizer_free(tok);
    return check_summary("test_train_jsonl");
}
