/* safetensors reader/writer: round trip, shard discovery, and every
 * validation error on hand-built files. */
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "formats/safetensors.h"
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static char *path_in(const char *sub, const char *name) {
    static char buf[512];
    snprintf(buf, sizeof buf, "%s%s%s/%s", g_dir, sub ? "/" : "", sub ? sub : "", name);
    return buf;
}

/* Raw file: 8-byte length (hlen_override when nonzero), header, data. */
static void write_raw(const char *path, const char *header, uint64_t hlen_override,
                      const void *data, size_t data_len) {
    FILE *f = fopen(path, "wb");
    uint64_t hl = hlen_override ? hlen_override : strlen(header);
    unsigned char le[8];
    for (int i = 0; i < 8; i++) le[i] = (unsigned char)(hl >> (8 * i));
    fwrite(le, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    if (data_len) fwrite(data, 1, data_len, f);
    fclose(f);
}

static void open_err(const char *header, uint64_t hlen, size_t data_len, lmc_status want,
                     const char *needle) {
    static unsigned char zeros[256];
    char *p = path_in(NULL, "bad.safetensors");
    write_raw(p, header, hlen, zeros, data_len);
    lmc_st_file *f = (lmc_st_file *)1;
    CHECK_ERR(lmc_st_open(p, &f), want, needle);
    CHECK(f == NULL);
    unlink(p);
}

static void test_conversions(void) {
    CHECK(lmc_bf16_to_f32(0x3f80) == 1.0f);
    CHECK(lmc_f32_to_bf16(1.0f) == 0x3f80);
    /* 1 + 2^-8 is exactly halfway between bf16 1.0 and 1.0078125: ties to even. */
    CHECK(lmc_f32_to_bf16(1.00390625f) == 0x3f80);
    CHECK(lmc_f32_to_bf16(1.01171875f) == 0x3f82); /* 1+3*2^-8 ties up to even */
    CHECK(lmc_f32_to_bf16(-2.5f) == 0xc020);
    CHECK(isnan(lmc_bf16_to_f32(lmc_f32_to_bf16(NAN))));
    CHECK(lmc_f16_to_f32(0x3c00) == 1.0f);
    CHECK(lmc_f16_to_f32(0xc000) == -2.0f);
    CHECK(lmc_f16_to_f32(0x7bff) == 65504.0f);
    CHECK(lmc_f16_to_f32(0x0001) == ldexpf(1.0f, -24)); /* smallest subnormal */
    CHECK(lmc_f16_to_f32(0x03ff) == ldexpf(1023.0f, -24));
    CHECK(isinf(lmc_f16_to_f32(0x7c00)));
    CHECK(lmc_f32_to_f16(1.0f) == 0x3c00);
    CHECK(lmc_f32_to_f16(65504.0f) == 0x7bff);
    CHECK(lmc_f32_to_f16(65520.0f) == 0x7c00);  /* rounds to inf */
    CHECK(lmc_f32_to_f16(ldexpf(1.0f, -24)) == 0x0001);
    CHECK(lmc_f32_to_f16(ldexpf(1.0f, -26)) == 0x0000);
    CHECK(lmc_f32_to_f16(ldexpf(3.0f, -25)) == 0x0002); /* 1.5 ulp ties to even (2) */
    CHECK(lmc_f32_to_f16(1.0f + ldexpf(1.0f, -11)) == 0x3c00); /* tie to even */
    CHECK(lmc_f32_to_f16(1.0f + ldexpf(3.0f, -11)) == 0x3c02);
    CHECK(lmc_f32_to_f16(-0.0f) == 0x8000);
    uint16_t nanh = lmc_f32_to_f16(NAN);
    CHECK((nanh & 0x7c00) == 0x7c00 && (nanh & 0x3ff));
    /* Every finite f16 survives f16 -> f32 -> f16. */
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        if ((h & 0x7c00) == 0x7c00) continue;
        if (lmc_f32_to_f16(lmc_f16_to_f32((uint16_t)h)) != h) bad++;
    }
    CHECK_EQ_INT(bad, 0);
    uint16_t hb[3] = {0x3f80, 0xc020, 0x0000};
    float out[3];
    lmc_to_f32(LMC_DT_BF16, hb, out, 3);
    CHECK(out[0] == 1.0f && out[1] == -2.5f && out[2] == 0.0f);
    uint16_t hh[3] = {0x3c00, 0xc000, 0x0001};
    lmc_to_f32(LMC_DT_F16, hh, out, 3);
    CHECK(out[0] == 1.0f && out[1] == -2.0f && out[2] == ldexpf(1.0f, -24));
}

static void test_roundtrip(void) {
    float a[6] = {1, 2, 3, 4, 5, 6};
    uint16_t b[3] = {0x3f80, 0x4000, 0x4040};
    int64_t c[2] = {-7, 9};
    uint8_t d[3] = {1, 0, 1};
    lmc_st_write_tensor ts[] = {
        {"model.b", LMC_DT_BF16, 1, {3}, b},
        {"model.a", LMC_DT_F32, 2, {2, 3}, a},
        {"empty", LMC_DT_F32, 2, {0, 4}, NULL},
        {"scalar/with\"quote", LMC_DT_I64, 1, {2}, c},
        {"mask", LMC_DT_BOOL, 1, {3}, d},
    };
    const char *meta[] = {"format", "pt", "note", "a \"b\"", NULL};
    char p[512];
    snprintf(p, sizeof p, "%s", path_in(NULL, "rt.safetensors"));
    CHECK_EQ_INT(lmc_st_write(p, ts, 5, meta), LMC_OK);
    struct stat sb;
    CHECK(stat(p, &sb) == 0);

    /* Header padded to 8 bytes with spaces. */
    FILE *fp = fopen(p, "rb");
    unsigned char le[8];
    CHECK(fread(le, 1, 8, fp) == 8);
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = (hl << 8) | le[i];
    CHECK_EQ_INT(hl % 8, 0);
    CHECK_EQ_INT((uint64_t)sb.st_size, 8 + hl + 24 + 6 + 16 + 3);
    fclose(fp);

    lmc_st_file *f = NULL;
    CHECK_EQ_INT(lmc_st_open(p, &f), LMC_OK);
    if (!f) return;
    CHECK_EQ_INT(lmc_st_count(f), 5);
    CHECK_STREQ(lmc_st_at(f, 0)->name, "model.b"); /* header order kept */
    const lmc_tensor_view *v = lmc_st_find(f, "model.a");
    CHECK(v && v->dtype == LMC_DT_F32 && v->ndim == 2 && v->shape[0] == 2 &&
          v->shape[1] == 3 && v->numel == 6 && v->nbytes == 24);
    CHECK(v && !memcmp(v->data, a, 24));
    CHECK(v && ((uintptr_t)v->data % 8) == 0);
    v = lmc_st_find(f, "model.b");
    CHECK(v && v->dtype == LMC_DT_BF16 && !memcmp(v->data, b, 6));
    float wide[3];
    if (v) lmc_to_f32(v->dtype, v->data, wide, 3);
    CHECK(wide[0] == 1.0f && wide[1] == 2.0f && wide[2] == 3.0f);
    v = lmc_st_find(f, "scalar/with\"quote");
    CHECK(v && v->dtype == LMC_DT_I64 && !memcmp(v->data, c, 16));
    v = lmc_st_find(f, "empty");
    CHECK(v && v->numel == 0 && v->nbytes == 0 && v->shape[0] == 0 && v->shape[1] == 4);
    v = lmc_st_find(f, "mask");
    CHECK(v && v->dtype == LMC_DT_BOOL && !memcmp(v->data, d, 3));
    CHECK(lmc_st_find(f, "nope") == NULL);
    CHECK_STREQ(lmc_st_metadata(f, "format"), "pt");
    CHECK_STREQ(lmc_st_metadata(f, "note"), "a \"b\"");
    CHECK(lmc_st_metadata(f, "missing") == NULL);
    lmc_st_close(f);

    /* Writer refuses bad input and leaves no file behind. */
    char *q = path_in(NULL, "w.safetensors");
    lmc_st_write_tensor dup[] = {{"x", LMC_DT_F32, 1, {1}, a}, {"x", LMC_DT_F32, 1, {1}, a}};
    CHECK_ERR(lmc_st_write(q, dup, 2, NULL), LMC_ERR_INVALID_ARG, "tensor 'x' given twice");
    lmc_st_write_tensor neg[] = {{"y", LMC_DT_F32, 1, {-1}, a}};
    CHECK_ERR(lmc_st_write(q, neg, 1, NULL), LMC_ERR_INVALID_ARG, "negative shape[0]");
    CHECK(!lmc_path_exists(q));
    /* No tensors at all is still a valid file. */
    CHECK_EQ_INT(lmc_st_write(q, NULL, 0, NULL), LMC_OK);
    CHECK_EQ_INT(lmc_st_open(q, &f), LMC_OK);
    CHECK_EQ_INT(lmc_st_count(f), 0);
    lmc_st_close(f);
    unlink(q);
    unlink(p);
}

static void test_errors(void) {
    char *p = path_in(NULL, "bad.safetensors");
    /* Shorter than the 8-byte length. */
    FILE *fp = fopen(p, "wb");
    fwrite("\x02\x00\x00", 1, 3, fp);
    fclose(fp);
    lmc_st_file *f = NULL;
    CHECK_ERR(lmc_st_open(p, &f), LMC_ERR_FORMAT, "too short for a safetensors header");
    unlink(p);
    CHECK_ERR(lmc_st_open(p, &f), LMC_ERR_NOT_FOUND, "bad.safetensors");

    /* Header length past EOF, and over the cap. */
    open_err("{}", 4096, 0, LMC_ERR_FORMAT, "header length 4096 past end of file");
    open_err("{}", (uint64_t)1 << 40, 0, LMC_ERR_LIMIT, "over the");
    /* Truncated header: JSON cut short. */
    open_err("{\"a\": {\"dtype\": \"F32\"", 0, 0, LMC_ERR_FORMAT, "invalid JSON");
    open_err("{\"a\": 1} trailing", 0, 0, LMC_ERR_FORMAT, "bad.safetensors: header: invalid JSON");
    open_err("[1, 2]", 0, 0, LMC_ERR_FORMAT, "header does not start with '{' (byte 0 is 0x5b)");
    open_err("{\"w\": {\"dtype\": \"F8_E9\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 0, 1,
             LMC_ERR_UNSUPPORTED, "tensor 'w': unknown dtype 'F8_E9'");
    open_err("{\"w\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 0, 4, LMC_ERR_FORMAT,
             "tensor 'w': missing dtype");
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [-1], \"data_offsets\": [0, 4]}}", 0, 4,
             LMC_ERR_FORMAT, "tensor 'w': shape[0] is not a non-negative integer");
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,1], \"data_offsets\": [0, "
             "4]}}",
             0, 4, LMC_ERR_LIMIT, "9 dims");
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 4294967296], "
             "\"data_offsets\": [0, 4]}}",
             0, 4, LMC_ERR_LIMIT, "overflows");
    open_err("{\"x.weight\": {\"dtype\": \"F32\", \"shape\": [16], \"data_offsets\": [0, 64]}}", 0,
             48, LMC_ERR_FORMAT,
             "bad.safetensors: tensor 'x.weight': data_offsets [0, 64] past end of data (48 bytes)");
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [8, 4]}}", 0, 8,
             LMC_ERR_FORMAT, "begin > end");
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0]}}", 0, 8,
             LMC_ERR_FORMAT, "data_offsets must be [begin, end]");
    open_err("{\"w\": {\"dtype\": \"BF16\", \"shape\": [3], \"data_offsets\": [0, 8]}}", 0, 8,
             LMC_ERR_FORMAT, "tensor 'w': data_offsets span 8 bytes but BF16 shape needs 6");
    open_err("{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}",
             0, 12, LMC_ERR_FORMAT, "tensor 'b': data_offsets [4, 12] overlap tensor 'a'");
    /* Containment: a small range inside a big one is an overlap too. */
    open_err("{\"a\": {\"dtype\": \"U8\", \"shape\": [16], \"data_offsets\": [0, 16]},"
             " \"b\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [10, 12]},"
             " \"c\": {\"dtype\": \"U8\", \"shape\": [2], \"data_offsets\": [4, 6]}}",
             0, 16, LMC_ERR_FORMAT, "overlap tensor 'a'");
    open_err("{\"__metadata__\": {\"k\": 1}}", 0, 0, LMC_ERR_FORMAT,
             "__metadata__ value for 'k' is not a string");
    open_err("{\"w\": 5}", 0, 0, LMC_ERR_FORMAT, "tensor 'w': entry is not an object");

    /* What the reference reader refuses: data regions must tile the data
     * section exactly, names are unique, the header is strict JSON. */
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 0, 12,
             LMC_ERR_FORMAT,
             "bad.safetensors: 4 trailing bytes after the last tensor 'w' (its data ends at "
             "offset 8 of 12)");
    open_err("{}", 0, 3, LMC_ERR_FORMAT, "3 trailing bytes after the last tensor '(none)'");
    open_err("{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
             " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}",
             0, 12, LMC_ERR_FORMAT,
             "bad.safetensors: tensor 'b': data_offsets [8, 12] leave a hole: bytes [4, 8) "
             "belong to no tensor");
    open_err("{\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 0, 8,
             LMC_ERR_FORMAT, "tensor 'b': data_offsets [4, 8] leave a hole: bytes [0, 4)");
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
             " \"w\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}",
             0, 8, LMC_ERR_FORMAT, "bad.safetensors: tensor 'w' appears more than once");
    open_err("{\"w\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]},"
             " \"\\u0077\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [0, 0]}}",
             0, 0, LMC_ERR_FORMAT, "tensor 'w' appears more than once");
    open_err("/**/{}", 0, 0, LMC_ERR_FORMAT,
             "bad.safetensors: header does not start with '{' (byte 0 is 0x2f)");
    open_err("{\"__metadata__\": {\"k\": \"v\"}, \"__metadata__\": {}}", 0, 0, LMC_ERR_FORMAT,
             "key '__metadata__' appears more than once");
    open_err("{\"__metadata__\": {\"k\": 'v'}}", 0, 0, LMC_ERR_FORMAT, "invalid JSON");
    open_err("{\"__metadata__\": {\"k\": NaN}}", 0, 0, LMC_ERR_FORMAT,
             "character 'N' at byte 23 is not JSON");
    open_err("{\"__metadata__\": {\"k\": \"a\tb\"}}", 0, 0, LMC_ERR_FORMAT, "control character");
    open_err("{\"__metadata__\": {},}", 0, 0, LMC_ERR_FORMAT, "invalid JSON");
    open_err("{\"__metadata__\": {\"k\": \"\xff\"}}", 0, 0, LMC_ERR_FORMAT, "invalid JSON");
    /* A zero-sized tensor inside another's bytes is an overlap (as in HF). */
    open_err("{\"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 4]},"
             " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}",
             0, 8, LMC_ERR_FORMAT, "tensor 'e': data_offsets [4, 4] overlap tensor 'w'");

    /* Valid hand-built file: JSON whitespace before the header (accepted by
     * the reference too), a zero-sized tensor at the end, space padding. */
    char *good = path_in(NULL, "hand.safetensors");
    float data[2] = {0.5f, -1.0f};
    write_raw(good,
              " \n{\"e\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 8]},"
              " \"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}      ",
              0, data, 8);
    CHECK_EQ_INT(lmc_st_open(good, &f), LMC_OK);
    const lmc_tensor_view *v = lmc_st_find(f, "w");
    float got[2];
    if (v) memcpy(got, v->data, 8);
    CHECK(v && got[0] == 0.5f && got[1] == -1.0f);
    lmc_st_close(f);
    unlink(good);

    /* Header not padded to 8 bytes (9 bytes long): data is still handed out
     * aligned to the element size. */
    write_raw(good, "{\"w\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}} ", 0,
              data, 8);
    CHECK_EQ_INT(lmc_st_open(good, &f), LMC_OK);
    v = lmc_st_find(f, "w");
    CHECK(v && ((uintptr_t)v->data % 4) == 0 && ((const float *)v->data)[1] == -1.0f);
    lmc_st_close(f);
    unlink(good);

    /* Non-regular files are refused without blocking. */
    char *fifo = path_in(NULL, "fifo.safetensors");
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_ERR(lmc_st_open(fifo, &f), LMC_ERR_IO, "not a regular file");
    unlink(fifo);
}

static void write_one(const char *path, const char *name, float value) {
    lmc_st_write_tensor t = {name, LMC_DT_F32, 1, {1}, &value};
    CHECK_EQ_INT(lmc_st_write(path, &t, 1, NULL), LMC_OK);
}

static void write_text(const char *path, const char *text) {
    CHECK_EQ_INT(lmc_write_file_atomic(path, text, strlen(text)), LMC_OK);
}

static float value_of(const lmc_st_set *s, const char *name) {
    const lmc_tensor_view *v = lmc_st_set_find(s, name);
    float x = NAN;
    if (v) memcpy(&x, v->data, 4);
    return x;
}

static void test_sets(void) {
    lmc_st_set *s = NULL;
    char sub[512];
    snprintf(sub, sizeof sub, "%s/m", g_dir);
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_NOT_FOUND, "model directory not found");
    CHECK(mkdir(sub, 0700) == 0);
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_NOT_FOUND, "no weights found");
    CHECK(strstr(lmc_last_error(), sub) != NULL);

    /* Glob: every *.safetensors, sorted by name. */
    write_one(path_in("m", "b.safetensors"), "t.b", 2.0f);
    write_one(path_in("m", "a.safetensors"), "t.a", 1.0f);
    write_text(path_in("m", "notes.txt"), "x");
    CHECK_EQ_INT(lmc_st_set_open_dir(sub, &s), LMC_OK);
    CHECK_EQ_INT(lmc_st_set_count(s), 2);
    CHECK_STREQ(lmc_st_set_at(s, 0)->name, "t.a");
    CHECK(value_of(s, "t.b") == 2.0f && value_of(s, "t.a") == 1.0f);
    CHECK(lmc_st_set_find(s, "t.c") == NULL);
    lmc_st_set_free(s);

    /* Duplicate names across shards. */
    write_one(path_in("m", "c.safetensors"), "t.a", 3.0f);
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_FORMAT,
              "tensor 't.a' appears in both a.safetensors and c.safetensors");
    CHECK(s == NULL);
    unlink(path_in("m", "c.safetensors"));

    /* Index: only the shards it names (the stray b.safetensors is unused). */
    write_one(path_in("m", "model-00001-of-00002.safetensors"), "w.one", 10.0f);
    write_one(path_in("m", "model-00002-of-00002.safetensors"), "w.two", 20.0f);
    write_text(path_in("m", "model.safetensors.index.json"),
               "{\"metadata\": {\"total_size\": 8}, \"weight_map\": {"
               "\"w.one\": \"model-00001-of-00002.safetensors\","
               "\"w.two\": \"model-00002-of-00002.safetensors\"}}");
    CHECK_EQ_INT(lmc_st_set_open_dir(sub, &s), LMC_OK);
    CHECK_EQ_INT(lmc_st_set_count(s), 2);
    CHECK(value_of(s, "w.one") == 10.0f && value_of(s, "w.two") == 20.0f);
    CHECK(lmc_st_set_find(s, "t.b") == NULL);
    lmc_st_set_free(s);

    /* Index naming a tensor in the wrong shard. */
    write_text(path_in("m", "model.safetensors.index.json"),
               "{\"weight_map\": {\"w.one\": \"model-00002-of-00002.safetensors\","
               "\"w.two\": \"model-00002-of-00002.safetensors\"}}");
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_FORMAT,
              "tensor 'w.one' is listed in model-00002-of-00002.safetensors but not found there");
    /* Index naming a missing shard. */
    write_text(path_in("m", "model.safetensors.index.json"),
               "{\"weight_map\": {\"w.one\": \"model-00001-of-00003.safetensors\"}}");
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_NOT_FOUND, "model-00001-of-00003.safetensors");
    /* Index escaping the directory, malformed index, no weight_map. */
    write_text(path_in("m", "model.safetensors.index.json"),
               "{\"weight_map\": {\"w.one\": \"../x.safetensors\"}}");
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_FORMAT, "is not a file name");
    write_text(path_in("m", "model.safetensors.index.json"), "{\"weight_map\": ");
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_FORMAT, "model.safetensors.index.json: invalid JSON");
    write_text(path_in("m", "model.safetensors.index.json"), "{\"metadata\": {}}");
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_FORMAT, "missing or non-object weight_map");

    /* model.safetensors wins over everything else; its errors name it. */
    write_one(path_in("m", "model.safetensors"), "solo", 5.0f);
    CHECK_EQ_INT(lmc_st_set_open_dir(sub, &s), LMC_OK);
    CHECK_EQ_INT(lmc_st_set_count(s), 1);
    CHECK(value_of(s, "solo") == 5.0f);
    lmc_st_set_free(s);
    write_raw(path_in("m", "model.safetensors"), "{\"w\": 1}", 0, NULL, 0);
    CHECK_ERR(lmc_st_set_open_dir(sub, &s), LMC_ERR_FORMAT, "model.safetensors: tensor 'w'");

    const char *names[] = {"a.safetensors", "b.safetensors", "notes.txt", "model.safetensors",
                           "model.safetensors.index.json", "model-00001-of-00002.safetensors",
                           "model-00002-of-00002.safetensors"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(path_in("m", names[i]));
    rmdir(sub);
}

/* tests/golden/formats: a file written by safetensors.torch.save_file and
 * torch's own f32 -> bf16 / f16 conversions (tests/oracle/formats_goldens.py). */
static void test_hf_goldens(const char *src) {
    char p[600];
    snprintf(p, sizeof p, "%s/tests/golden/formats/formats_goldens.json", src);
    json_object *g = NULL;
    if (lmc_json_load_file(p, "formats_goldens.json", 8u << 20, &g, NULL)) {
        printf("NOTE: %s: %s; HF golden checks skipped\n", p, lmc_last_error());
        return;
    }
    snprintf(p, sizeof p, "%s/tests/golden/formats/hf_mixed.safetensors", src);
    lmc_st_file *f = NULL;
    CHECK_EQ_INT(lmc_st_open(p, &f), LMC_OK);
    json_object *ts = lmc_json_get(g, "tensors");
    CHECK_EQ_INT(lmc_st_count(f), json_object_object_length(ts));
    json_object_object_foreach(ts, name, exp) {
        const lmc_tensor_view *v = lmc_st_find(f, name);
        CHECK_MSG(v != NULL, "tensor %s", name);
        if (!v) continue;
        CHECK_STREQ(lmc_dtype_name(v->dtype), lmc_json_str(exp, "dtype", NULL));
        json_object *shape = lmc_json_get(exp, "shape"), *vals = lmc_json_get(exp, "values");
        CHECK_EQ_INT(v->ndim, json_object_array_length(shape));
        for (int d = 0; d < v->ndim; d++)
            CHECK_EQ_INT(v->shape[d], json_object_get_int64(json_object_array_get_idx(shape, d)));
        CHECK_EQ_INT(v->numel, json_object_array_length(vals));
        CHECK(((uintptr_t)v->data % lmc_dtype_size(v->dtype)) == 0);
        int bad = 0;
        for (int64_t i = 0; i < v->numel; i++) {
            json_object *e = json_object_array_get_idx(vals, (size_t)i);
            const unsigned char *q = (const unsigned char *)v->data + i * lmc_dtype_size(v->dtype);
            double got = 0;
            switch (v->dtype) {
            case LMC_DT_F32: case LMC_DT_F16: case LMC_DT_BF16: case LMC_DT_F64: {
                float x;
                lmc_to_f32(v->dtype, q, &x, 1);
                got = x;
                if ((float)json_object_get_double(e) != x) bad++;
                continue;
            }
            case LMC_DT_I64: { int64_t x; memcpy(&x, q, 8); got = (double)x; break; }
            case LMC_DT_I32: { int32_t x; memcpy(&x, q, 4); got = x; break; }
            case LMC_DT_U32: { uint32_t x; memcpy(&x, q, 4); got = x; break; }
            case LMC_DT_I16: { int16_t x; memcpy(&x, q, 2); got = x; break; }
            case LMC_DT_I8: got = (int8_t)q[0]; break;
            case LMC_DT_U8: case LMC_DT_BOOL: got = q[0]; break;
            }
            if (got != (double)json_object_get_int64(e)) bad++;
        }
        CHECK_MSG(bad == 0, "tensor %s: %d values differ", name, bad);
    }
    json_object_object_foreach(lmc_json_get(g, "metadata"), mk, mv)
        CHECK_STREQ(lmc_st_metadata(f, mk), json_object_get_string(mv));
    lmc_st_close(f);

    json_object *conv = lmc_json_get(g, "conversions");
    size_t nc = json_object_array_length(conv);
    CHECK(nc > 300);
    int bad_bf = 0, bad_h = 0;
    for (size_t i = 0; i < nc; i++) {
        json_object *t = json_object_array_get_idx(conv, i);
        uint32_t bits = (uint32_t)json_object_get_int64(json_object_array_get_idx(t, 0));
        uint16_t bf = (uint16_t)json_object_get_int64(json_object_array_get_idx(t, 1));
        uint16_t h = (uint16_t)json_object_get_int64(json_object_array_get_idx(t, 2));
        float x;
        memcpy(&x, &bits, 4);
        if (lmc_f32_to_bf16(x) != bf) bad_bf++;
        if (lmc_f32_to_f16(x) != h) bad_h++;
    }
    CHECK_MSG(bad_bf == 0, "%d of %zu bf16 conversions differ from torch", bad_bf, nc);
    CHECK_MSG(bad_h == 0, "%d of %zu f16 conversions differ from torch", bad_h, nc);
    json_object_put(g);

    /* Checkpoints saved by transformers (tests/golden/models) validate, and
     * their dtype is the one in the directory name. */
    static const char *models[] = {"llama-fp32", "llama-bf16", "qwen2-bf16", "qwen3-fp32"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        snprintf(p, sizeof p, "%s/tests/golden/models/%s", src, models[i]);
        if (!lmc_is_dir(p)) continue;
        lmc_st_set *s = NULL;
        CHECK_EQ_INT(lmc_st_set_open_dir(p, &s), LMC_OK);
        const lmc_tensor_view *e = lmc_st_set_find(s, "model.embed_tokens.weight");
        CHECK_MSG(e && e->ndim == 2 && e->shape[1] == 64 &&
                      e->dtype == (strstr(models[i], "bf16") ? LMC_DT_BF16 : LMC_DT_F32),
                  "%s", models[i]);
        lmc_st_set_free(s);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lmc_st_XXXXXX");
    if (!mkdtemp(g_dir)) CHECK_SKIP("cannot create a temp dir");
    test_conversions();
    test_roundtrip();
    test_errors();
    test_sets();
    const char *src = getenv("LMC_SOURCE_DIR");
    test_hf_goldens(src ? src : ".");
    rmdir(g_dir);
    return check_summary("test_safetensors");
}
