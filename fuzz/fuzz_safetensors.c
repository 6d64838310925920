/* Fuzz the safetensors reader.
 *
 * Input starting with '{': a model.safetensors.index.json, opened through
 * the shard-set discovery next to two small valid shards (a.safetensors,
 * b.safetensors). Otherwise: a whole .safetensors file opened with
 * lmc_st_open. Every accepted tensor's bytes are read end to end (so a view
 * outside the mapping faults), its size is checked against dtype x shape,
 * and the file is written back with lmc_st_write and re-read: the copy
 * must hold the same tensors. */
#include "formats/safetensors.h"
#include "fuzz_util.h"
#include <stdint.h>

static uint64_t touch(const lmc_tensor_view *v) {
    const unsigned char *p = v->data;
    uint64_t sum = 0;
    for (size_t i = 0; i < v->nbytes; i++) sum += p[i];
    return sum;
}

static void check_view(const lmc_tensor_view *v) {
    FZ_REQUIRE(v && v->name);
    FZ_REQUIRE(v->ndim >= 0 && v->ndim <= LMC_MAX_DIMS);
    int64_t numel = 1;
    for (int d = 0; d < v->ndim; d++) {
        FZ_REQUIRE(v->shape[d] >= 0);
        FZ_REQUIRE(!__builtin_mul_overflow(numel, v->shape[d], &numel));
    }
    FZ_REQUIRE(numel == v->numel);
    size_t bytes;
    FZ_REQUIRE(!__builtin_mul_overflow((size_t)numel, lmc_dtype_size(v->dtype), &bytes));
    FZ_REQUIRE(bytes == v->nbytes);
    FZ_REQUIRE(v->nbytes == 0 || v->data != NULL);
    volatile uint64_t sink = touch(v);
    (void)sink;
    if (v->dtype == LMC_DT_F32 || v->dtype == LMC_DT_F16 || v->dtype == LMC_DT_BF16) {
        float tmp[16];
        size_t n = (size_t)numel < 16 ? (size_t)numel : 16;
        lmc_to_f32(v->dtype, v->data, tmp, n);
    }
}

/* Write every tensor of `f` to a new file and check the copy matches. */
static void round_trip(const lmc_st_file *f) {
    size_t n = lmc_st_count(f);
    if (n > 256) return;
    lmc_st_write_tensor *w = calloc(n + 1, sizeof *w);
    FZ_REQUIRE(w);
    for (size_t i = 0; i < n; i++) {
        const lmc_tensor_view *v = lmc_st_at(f, i);
        w[i].name = v->name;
        w[i].dtype = v->dtype;
        w[i].ndim = v->ndim;
        memcpy(w[i].shape, v->shape, sizeof w[i].shape);
        w[i].data = v->data;
    }
    const char *copy = fz_path("copy.safetensors", 1);
    lmc_status st = lmc_st_write(copy, w, n, NULL);
    FZ_REQUIRE_MESSAGE(st);
    if (st == LMC_OK) {
        lmc_st_file *g = NULL;
        st = lmc_st_open(copy, &g);
        if (st != LMC_OK) fprintf(stderr, "re-open failed: %s\n", lmc_last_error());
        FZ_REQUIRE(st == LMC_OK);
        FZ_REQUIRE(lmc_st_count(g) == n);
        for (size_t i = 0; i < n; i++) {
            const lmc_tensor_view *a = lmc_st_at(f, i), *b = lmc_st_find(g, a->name);
            FZ_REQUIRE(b && b->dtype == a->dtype && b->ndim == a->ndim);
            FZ_REQUIRE(!memcmp(a->shape, b->shape, sizeof(int64_t) * (size_t)a->ndim));
            FZ_REQUIRE(a->nbytes == b->nbytes);
            FZ_REQUIRE(a->nbytes == 0 || !memcmp(a->data, b->data, a->nbytes));
        }
        lmc_st_close(g);
    }
    fz_remove("copy.safetensors", 1);
    free(w);
}

static void fuzz_file(const uint8_t *data, size_t size) {
    const char *path = fz_write("input.safetensors", 0, data, size);
    lmc_st_file *f = NULL;
    lmc_status st = lmc_st_open(path, &f);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("safetensors", st);
    if (st != LMC_OK) {
        FZ_REQUIRE(f == NULL);
        return;
    }
    size_t n = lmc_st_count(f);
    for (size_t i = 0; i < n; i++) {
        const lmc_tensor_view *v = lmc_st_at(f, i);
        check_view(v);
        FZ_REQUIRE(lmc_st_find(f, v->name) == v);
    }
    FZ_REQUIRE(lmc_st_at(f, n) == NULL);
    (void)lmc_st_metadata(f, "format");
    (void)lmc_st_find(f, "");
    round_trip(f);
    lmc_st_close(f);
}

/* Two small valid shards the fuzzed index can point at. */
static void write_shards(void) {
    static int done;
    if (done) return;
    done = 1;
    static const float a[6] = {1, 2, 3, 4, 5, 6};
    static const uint16_t b[4] = {0x3f80, 0x4000, 0x4040, 0x4080};
    lmc_st_write_tensor ta[] = {
        {.name = "model.embed_tokens.weight", .dtype = LMC_DT_F32, .ndim = 2, .shape = {2, 3}, .data = a},
        {.name = "model.norm.weight", .dtype = LMC_DT_F32, .ndim = 1, .shape = {3}, .data = a + 3},
    };
    lmc_st_write_tensor tb[] = {
        {.name = "lm_head.weight", .dtype = LMC_DT_BF16, .ndim = 2, .shape = {2, 2}, .data = b},
    };
    FZ_REQUIRE(lmc_st_write(fz_path("a.safetensors", 2), ta, 2, NULL) == LMC_OK);
    FZ_REQUIRE(lmc_st_write(fz_path("b.safetensors", 2), tb, 1, NULL) == LMC_OK);
}

static void fuzz_index(const uint8_t *data, size_t size) {
    write_shards();
    fz_write("model.safetensors.index.json", 0, data, size);
    lmc_st_set *s = NULL;
    lmc_status st = lmc_st_set_open_dir(fz_scratch(), &s);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("index", st);
    if (st == LMC_OK) {
        size_t n = lmc_st_set_count(s);
        for (size_t i = 0; i < n; i++) {
            const lmc_tensor_view *v = lmc_st_set_at(s, i);
            check_view(v);
            FZ_REQUIRE(lmc_st_set_find(s, v->name) == v);
        }
        lmc_st_set_free(s);
    }
    fz_remove("model.safetensors.index.json", 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > 0 && data[0] == '{')
        fuzz_index(data, size);
    else
        fuzz_file(data, size);
    return 0;
}
