/* Fuzz the fine-tuning dataset reader: jsonl splitting, record checks,
 * format detection, and tokenization of the first records.
 *
 * Input byte 0 holds the options: bits 0-1 the format (auto, text, chat,
 * completions), bit 2 mask_prompt, bit 3 the tokenize-once cache, bit 4
 * small caps (64-byte lines, 512-byte files). The rest is the jsonl text.
 * It is loaded from memory (lmc_dataset_load_buffer) and from a file
 * (lmc_dataset_load); both must agree. Accepted datasets hold one record per
 * line, give back each line's exact text, resolve the format, and (with the
 * Qwen3 tokenizer, loaded once when fetched) tokenize records to in-range
 * ids, identically with and without the cache. */
#include "fuzz_util.h"
#include "train/dataset.h"
#include "train/jsonl.h"
#include <stdint.h>

#ifndef LMC_FUZZ_SOURCE_DIR
#define LMC_FUZZ_SOURCE_DIR "."
#endif

#define MAX_TOKENIZED 2

static lmc_tokenizer *qwen;
static int tried;

static void free_tokenizer(void) { lmc_tokenizer_free(qwen); }

static const lmc_tokenizer *tokenizer(void) {
    if (tried) return qwen;
    tried = 1;
    const char *root = getenv("LMC_SOURCE_DIR");
    char path[1024];
    snprintf(path, sizeof path, "%s/.cache/assets/tokenizers/qwen3",
             root && *root ? root : LMC_FUZZ_SOURCE_DIR);
    if (lmc_tokenizer_load(path, &qwen) != LMC_OK) {
        fprintf(stderr, "fuzz_jsonl: no tokenizer (%s); reading only\n", lmc_last_error());
        qwen = NULL;
    }
    atexit(free_tokenizer);
    return qwen;
}

/* The spans cover the text in order, one per line, never holding a newline. */
static void check_split(const char *text, size_t len, size_t max_line) {
    lmc_jsonl_line *l = NULL;
    size_t n = 0;
    lmc_status st = lmc_jsonl_split(text, len, "fuzz.jsonl", max_line, &l, &n);
    FZ_REQUIRE_MESSAGE(st);
    if (st == LMC_OK) {
        size_t prev_end = 0;
        for (size_t i = 0; i < n; i++) {
            FZ_REQUIRE(l[i].line == i + 1);
            FZ_REQUIRE(l[i].off >= prev_end && l[i].off + l[i].len <= len);
            FZ_REQUIRE(l[i].len <= max_line);
            FZ_REQUIRE(!memchr(text + l[i].off, '\n', l[i].len));
            prev_end = l[i].off + l[i].len;
        }
        FZ_REQUIRE(n > 0 || len == 0);
    } else {
        FZ_REQUIRE(l == NULL && n == 0);
    }
    free(l);
}

static void check_tokens(lmc_dataset *d, lmc_dataset *cached, size_t i) {
    int32_t *a = NULL, *b = NULL;
    size_t na = 0, nb = 0, pa = 0, pb = 0;
    lmc_status sa = lmc_dataset_get(d, i, &a, &na, &pa);
    FZ_REQUIRE_MESSAGE(sa);
    lmc_status sb = cached ? lmc_dataset_get(cached, i, &b, &nb, &pb) : sa;
    FZ_REQUIRE_MESSAGE(sb);
    FZ_REQUIRE(sa == sb);
    if (sa == LMC_OK) {
        size_t vocab = lmc_tokenizer_vocab_size(qwen);
        for (size_t k = 0; k < na; k++) FZ_REQUIRE(a[k] >= 0 && (size_t)a[k] < vocab);
        if (cached) {
            FZ_REQUIRE(na == nb && pa == pb);
            FZ_REQUIRE(na == 0 || !memcmp(a, b, na * sizeof *a));
            size_t il = 0;
            FZ_REQUIRE(lmc_dataset_item_len(cached, i, &il) == LMC_OK && il == na);
        }
    } else {
        FZ_REQUIRE(a == NULL && na == 0);
    }
    lmc_free(a);
    lmc_free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    lmc_dataset_options o;
    lmc_dataset_options_init(&o);
    o.format = (lmc_dataset_format)(data[0] & 3);
    o.mask_prompt = data[0] & 4;
    o.cache = data[0] & 8;
    if (data[0] & 16) {
        o.max_line_bytes = 64;
        o.max_file_bytes = 512;
    }
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    check_split(text, len, o.max_line_bytes ? o.max_line_bytes : LMC_DATASET_MAX_LINE_BYTES);

    const lmc_tokenizer *tok = tokenizer();
    lmc_dataset *mem = NULL;
    lmc_status sm = lmc_dataset_load_buffer(text, len, "fuzz.jsonl", tok, &o, &mem);
    FZ_REQUIRE_MESSAGE(sm);
    fz_note("jsonl", sm);
    if (tok) {
        const char *path = fz_write("fuzz.jsonl", 0, text, len);
        lmc_dataset *file = NULL;
        lmc_status sf = lmc_dataset_load(path, tok, &o, &file);
        FZ_REQUIRE_MESSAGE(sf);
        FZ_REQUIRE(sf == sm);
        FZ_REQUIRE(sf == LMC_OK ? file != NULL : file == NULL);
        if (file) FZ_REQUIRE(lmc_dataset_len(file) == lmc_dataset_len(mem));
        lmc_dataset_free(file);
    }
    if (sm != LMC_OK) {
        FZ_REQUIRE(mem == NULL);
        return 0;
    }
    size_t n = lmc_dataset_len(mem);
    FZ_REQUIRE(n > 0);
    lmc_dataset_format f = lmc_dataset_format_of(mem);
    FZ_REQUIRE(f >= LMC_DATASET_TEXT && f <= LMC_DATASET_COMPLETIONS);
    FZ_REQUIRE(o.format == LMC_DATASET_AUTO || f == o.format);
    FZ_REQUIRE(!(o.mask_prompt && f == LMC_DATASET_TEXT));
    for (size_t i = 0; i < n; i++) {
        char *json = NULL;
        const char *src = NULL;
        size_t line = 0;
        FZ_REQUIRE(lmc_dataset_record(mem, i, &json, &src, &line) == LMC_OK);
        FZ_REQUIRE(json && src && !strcmp(src, "fuzz.jsonl") && line > i);
        FZ_REQUIRE(strlen(json) <= len);
        lmc_free(json);
    }
    int32_t *ids = NULL;
    size_t ni = 0;
    FZ_REQUIRE(lmc_dataset_get(mem, n, &ids, &ni, NULL) == LMC_ERR_INVALID_ARG && !ids);
    if (tok) {
        /* The same records through a cache stacked on a concatenation. */
        lmc_dataset *again = NULL, *cat = NULL, *cached = NULL;
        if (lmc_dataset_load_buffer(text, len, "fuzz.jsonl", tok, &o, &again) == LMC_OK) {
            lmc_dataset *parts[1] = {again};
            FZ_REQUIRE(lmc_dataset_concat(parts, 1, &cat) == LMC_OK);
            FZ_REQUIRE(lmc_dataset_cached(cat, &cached) == LMC_OK);
        }
        for (size_t i = 0; i < n && i < MAX_TOKENIZED; i++) check_tokens(mem, cached, i);
        lmc_dataset_free(cached);
    }
    lmc_dataset_free(mem);
    return 0;
}
