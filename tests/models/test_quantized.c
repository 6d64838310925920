/* MLX affine-quantized checkpoints: the dequantizer against hand-packed
 * words, the quantized tiny models of tests/golden/quant (built by
 * tests/oracle/mlx_quant_goldens.py) against transformers run on the
 * dequantized weights, and the binder's errors on malformed tensors. */
#include "base/json.h"
#include "check.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "models/model.h"
#include "models/quantized.h"
#include "model_golden.h"
#include "scratch.h"
#include <stdint.h>


/* ------------------------------------------------------------ dequantizer */

/* Pack q[rows][cols] (values < 2^bits) the MLX way, written out per word. */
static void pack(const uint32_t *q, int64_t rows, int64_t cols, int bits, uint32_t *words) {
    int per = 32 / bits;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t w = 0; w < cols / per; w++) {
            uint32_t word = 0;
            for (int j = 0; j < per; j++) word |= q[r * cols + w * per + j] << (j * bits);
            words[r * (cols / per) + w] = word;
        }
}

static void check_roundtrip(int bits, int64_t group, int64_t rows, int64_t cols, bool bf16_sb) {
    int64_t ng = cols / group;
    uint32_t *q = malloc((size_t)(rows * cols) * sizeof *q);
    uint32_t *words = malloc((size_t)(rows * cols * bits / 32) * sizeof *words);
    float *sf = malloc((size_t)(rows * ng) * sizeof(float)), *bf = malloc((size_t)(rows * ng) * 4);
    uint16_t *sh = malloc((size_t)(rows * ng) * 2), *bh = malloc((size_t)(rows * ng) * 2);
    float *out = malloc((size_t)(rows * cols) * sizeof(float));
    uint16_t *outh = malloc((size_t)(rows * cols) * 2);
    uint32_t top = (1u << bits) - 1;
    for (int64_t i = 0; i < rows * cols; i++) q[i] = (uint32_t)((i * 7 + i / 5) % (top + 1));
    q[0] = top;                   /* lowest bits of the first word */
    q[rows * cols - 1] = top;     /* highest bits of the last word */
    if (rows * cols > 2) q[1] = 0;
    for (int64_t i = 0; i < rows * ng; i++) {
        sf[i] = 0.01f * (float)(i % 9 + 1) + 0.00123f;
        bf[i] = -0.5f + 0.03125f * (float)(i % 13);
        sh[i] = lmc_f32_to_bf16(sf[i]);
        bh[i] = lmc_f32_to_bf16(bf[i]);
        if (bf16_sb) {
            sf[i] = lmc_bf16_to_f32(sh[i]);
            bf[i] = lmc_bf16_to_f32(bh[i]);
        }
    }
    pack(q, rows, cols, bits, words);
    lmc_mlx_quant mq = {.rows = rows, .cols = cols, .bits = bits, .group_size = group,
                        .packed = words};
    lmc_dtype sdt = bf16_sb ? LMC_DT_BF16 : LMC_DT_F32;
    mq.scales = (lmc_cpu_mat){sdt, bf16_sb ? (void *)sh : sf, rows, ng, NULL};
    mq.biases = (lmc_cpu_mat){sdt, bf16_sb ? (void *)bh : bf, rows, ng, NULL};
    CHECK(lmc_mlx_dequantize(&mq, LMC_DT_F32, out, "unit") == LMC_OK);
    CHECK(lmc_mlx_dequantize(&mq, LMC_DT_BF16, outh, "unit") == LMC_OK);
    size_t bad = 0, badh = 0;
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) {
            size_t i = (size_t)(r * cols + c), gi = (size_t)(r * ng + c / group);
            float want = sf[gi] * (float)q[i] + bf[gi];
            if (out[i] != want) bad++;
            if (outh[i] != lmc_f32_to_bf16(want)) badh++;
        }
    printf("dequantize bits %d group %3lld [%lld, %lld] %s scales: %zu/%zu f32 and %zu bf16 "
           "mismatches\n", bits, (long long)group, (long long)rows, (long long)cols,
           bf16_sb ? "bf16" : "f32", bad, (size_t)(rows * cols), badh);
    CHECK_MSG(bad == 0 && badh == 0, "bits %d group %lld: %zu / %zu wrong values", bits,
              (long long)group, bad, badh);
    /* first and last value of the matrix sit in the first word's low bits
     * and the last word's high bits */
    CHECK(out[0] == sf[0] * (float)top + bf[0]);
    CHECK(out[rows * cols - 1] == sf[rows * ng - 1] * (float)top + bf[rows * ng - 1]);
    free(q), free(words), free(sf), free(bf), free(sh), free(bh), free(out), free(outh);
}

static void test_dequantize_units(void) {
    check_roundtrip(4, 32, 3, 64, false);
    check_roundtrip(4, 64, 5, 128, true);
    check_roundtrip(4, 128, 2, 256, true);
    check_roundtrip(8, 32, 4, 96, true);
    check_roundtrip(8, 64, 3, 128, false);
    check_roundtrip(8, 128, 2, 384, true);
    check_roundtrip(2, 32, 2, 64, true);

    /* Hand-written words: bits 8 word 0x807F0201 holds 1, 2, 127, 128 (low
     * byte first); bits 4 word 0xF000000E holds 14, 0 x6, 15. */
    uint32_t w8[8] = {0x807F0201u, 0, 0, 0, 0, 0, 0, 0xFF000000u};
    float one = 1.0f, zero = 0.0f, half = 0.5f, minus = -2.0f, out[32];
    lmc_mlx_quant q = {.rows = 1, .cols = 32, .bits = 8, .group_size = 32, .packed = w8,
                       .scales = {LMC_DT_F32, &one, 1, 1}, .biases = {LMC_DT_F32, &zero, 1, 1}};
    CHECK(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand") == LMC_OK);
    CHECK(out[0] == 1 && out[1] == 2 && out[2] == 127 && out[3] == 128 && out[4] == 0);
    CHECK(out[28] == 0 && out[31] == 255);
    uint32_t w4[4] = {0xF000000Eu, 0x00000001u, 0, 0x10000000u};
    q = (lmc_mlx_quant){.rows = 1, .cols = 32, .bits = 4, .group_size = 32, .packed = w4,
                        .scales = {LMC_DT_F32, &half, 1, 1}, .biases = {LMC_DT_F32, &minus, 1, 1}};
    CHECK(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand") == LMC_OK);
    CHECK(out[0] == 5.0f && out[1] == -2.0f && out[7] == 5.5f && out[8] == -1.5f);
    CHECK(out[30] == -2.0f && out[31] == -1.5f);

    /* Parameter and shape errors. */
    q.bits = 3;
    CHECK_ERR(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand"), LMC_ERR_UNSUPPORTED, "bits 3");
    q.bits = 6;
    CHECK_ERR(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand"), LMC_ERR_UNSUPPORTED, "bits 6");
    q.bits = 4;
    q.group_size = 16;
    CHECK_ERR(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand"), LMC_ERR_UNSUPPORTED,
              "group_size 16");
    q.group_size = 64; /* 32 inputs */
    CHECK_ERR(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand"), LMC_ERR_FORMAT,
              "not a multiple of group_size 64");
    q.group_size = 32;
    q.rows = (int64_t)1 << 40;
    CHECK_ERR(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand"), LMC_ERR_LIMIT, "too large");
    q.rows = 1;
    q.scales.cols = 2;
    CHECK_ERR(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand"), LMC_ERR_FORMAT, "scales must be");
    q.scales.cols = 1;
    q.biases.dt = LMC_DT_I32;
    CHECK_ERR(lmc_mlx_dequantize(&q, LMC_DT_F32, out, "hand"), LMC_ERR_FORMAT, "biases must be");
}

/* ------------------------------------------------------------ goldens */

/* A quantized golden also needs one reference margin per greedy step. */
static bool load_quant_golden(const char *dir, golden *g) {
    return load_golden(dir, "", g) && g->n_margins == g->n_greedy;
}


static double worst_err;

static void test_golden(const char *name) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/golden/quant/%s", src_dir(), name);
    golden g;
    if (!load_quant_golden(dir, &g)) {
        CHECK_MSG(0, "%s: unreadable golden.json", name);
        free(g.logits), free(g.full_logits);
        return;
    }
    loaded L;
    lmc_status st = load_model(dir, &L, NULL);
    CHECK_MSG(st == LMC_OK, "%s: load: %s", name, lmc_last_error());
    if (st) {
        unload(&L);
        free(g.logits), free(g.full_logits);
        return;
    }
    const double tol = 1e-4;
    size_t V = (size_t)lmc_model_vocab(L.model);
    CHECK_EQ_INT(V, g.vocab);
    float *lg = calloc(V, sizeof(float));
    lmc_kv_cache *c = NULL;
    CHECK(lmc_kv_cache_new(L.model, &c) == LMC_OK);
    CHECK(lmc_model_forward(L.model, c, g.prompt, g.n_prompt, lg, false) == LMC_OK);
    double e = golden_rel_err(lg, g.logits, V);
    if (e > worst_err) worst_err = e;
    printf("%-14s prompt logits  max|d|/range = %.3g (tol %.0g)\n", name, e, tol);
    CHECK_MSG(e <= tol, "%s: prompt logits rel err %g > %g", name, e, tol);

    /* Free-running greedy: identical up to the first near-tie of the
     * reference (none of these goldens has one below 2 * tol * range). */
    int32_t toks[MAX_TOK];
    size_t same = 0, must = g.n_greedy;
    for (size_t i = 0; i < g.n_greedy; i++) {
        toks[i] = golden_argmax(lg, V);
        if (lmc_model_forward(L.model, c, &toks[i], 1, lg, false)) break;
    }
    for (size_t i = 0; i < g.n_greedy; i++)
        if (g.margins[i] <= 1e-3f) {
            must = i;
            break;
        }
    while (same < g.n_greedy && toks[same] == g.greedy[same]) same++;
    printf("%-14s greedy         %zu/%zu tokens identical\n", name, same, g.n_greedy);
    CHECK_MSG(same >= must, "%s: greedy diverged at token %zu", name, same);

    /* One forward over prompt + greedy[:-1] from an empty cache. */
    int32_t all[2 * MAX_TOK];
    size_t n = g.n_prompt + g.n_greedy - 1;
    memcpy(all, g.prompt, g.n_prompt * sizeof(int32_t));
    memcpy(all + g.n_prompt, g.greedy, (g.n_greedy - 1) * sizeof(int32_t));
    lmc_kv_cache_clear(c);
    CHECK(lmc_model_forward(L.model, c, all, n, lg, false) == LMC_OK);
    e = golden_rel_err(lg, g.full_logits, V);
    if (e > worst_err) worst_err = e;
    printf("%-14s full logits    max|d|/range = %.3g (tol %.0g)\n", name, e, tol);
    CHECK_MSG(e <= tol, "%s: full logits rel err %g > %g", name, e, tol);
    lmc_kv_cache_free(c);
    free(lg);
    unload(&L);

    /* The quantization is visible: the unquantized model's reference
     * logits are far outside the tolerance (a loader that skipped the
     * dequantization could not pass). */
    golden f;
    snprintf(dir, sizeof dir, "%s/tests/golden/models/%s-fp32", src_dir(),
             !strncmp(name, "qwen3", 5) ? "qwen3" : "llama");
    if (load_quant_golden(dir, &f) && f.vocab == g.vocab) {
        double d = golden_rel_err(f.logits, g.logits, V);
        printf("%-14s vs unquantized max|d|/range = %.3g\n", name, d);
        CHECK_MSG(d > 10 * tol, "%s: quantized and fp32 references barely differ (%g)", name, d);
    } else {
        CHECK_MSG(0, "%s: unreadable %s/golden.json", name, dir);
    }
    free(f.logits), free(f.full_logits);
    free(g.logits), free(g.full_logits);
}

/* ------------------------------------------------------------ errors */

static void set_bits8(lmc_model_config *c) { c->q_bits = 8; }
static void set_bits3(lmc_model_config *c) { c->q_bits = 3; }
static void set_mode(lmc_model_config *c) { snprintf(c->q_mode, sizeof c->q_mode, "mxfp4"); }

static void test_model_errors(void) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/tests/golden/quant/qwen3-q4g64", src_dir());
    loaded L;
    /* The config says 8 bits, the tensors hold 4: packed width mismatch. */
    CHECK_ERR(load_model(dir, &L, set_bits8), LMC_ERR_FORMAT,
              "'model.embed_tokens.weight' has shape [512, 8], expected [512, 16]");
    unload(&L);
    CHECK_ERR(load_model(dir, &L, set_bits3), LMC_ERR_UNSUPPORTED, "bits 3 is not supported");
    unload(&L);
    CHECK_ERR(load_model(dir, &L, set_mode), LMC_ERR_UNSUPPORTED, "mode 'mxfp4'");
    unload(&L);
}

typedef struct {
    const char *what;
    int64_t w[2], s[2], b[2]; /* shapes; b[0] == 0: no biases tensor */
    lmc_dtype wdt;
    int64_t rows, cols, bits, group;
    lmc_status want;
    const char *needle;
} bind_case;

static void test_bind_errors(void) {
    static uint32_t words[4096];
    static uint16_t halves[4096];
    const bind_case cases[] = {
        {"ok", {4, 8}, {4, 1}, {4, 1}, LMC_DT_U32, 4, 64, 4, 64, LMC_OK, ""},
        {"ok inferred", {4, 16}, {4, 2}, {4, 2}, LMC_DT_U32, 4, 64, 0, 0, LMC_OK, ""},
        {"packed width", {4, 16}, {4, 1}, {4, 1}, LMC_DT_U32, 4, 64, 4, 64, LMC_ERR_FORMAT,
         "'m.weight' has shape [4, 16], expected [4, 8]"},
        {"packed rows", {3, 8}, {4, 1}, {4, 1}, LMC_DT_U32, 4, 64, 4, 64, LMC_ERR_FORMAT,
         "expected [4, 8]"},
        {"scales shape", {4, 8}, {4, 2}, {4, 2}, LMC_DT_U32, 4, 64, 4, 64, LMC_ERR_FORMAT,
         "'m.scales' has shape [4, 2], expected [4, 1]"},
        {"biases shape", {4, 8}, {4, 1}, {1, 4}, LMC_DT_U32, 4, 64, 4, 64, LMC_ERR_FORMAT,
         "'m.biases' has shape [1, 4], expected [4, 1]"},
        {"no biases", {4, 8}, {4, 1}, {0, 0}, LMC_DT_U32, 4, 64, 4, 64, LMC_ERR_NOT_FOUND,
         "missing tensor 'm.biases'"},
        {"bits 5", {4, 10}, {4, 1}, {4, 1}, LMC_DT_U32, 4, 64, 5, 64, LMC_ERR_UNSUPPORTED,
         "bits 5 is not supported"},
        {"inferred bits 6", {4, 12}, {4, 1}, {4, 1}, LMC_DT_U32, 4, 64, 0, 0,
         LMC_ERR_UNSUPPORTED, "bits 6 is not supported"},
        {"group not dividing", {4, 12}, {4, 1}, {4, 1}, LMC_DT_U32, 4, 96, 4, 64,
         LMC_ERR_FORMAT, "input dimension 96 is not a multiple of group_size 64"},
        {"inferred no fit", {4, 5}, {4, 1}, {4, 1}, LMC_DT_U32, 4, 64, 0, 0, LMC_ERR_FORMAT,
         "fit no quantization of 64 inputs"},
        {"weight dtype", {4, 8}, {4, 1}, {4, 1}, LMC_DT_I32, 4, 64, 4, 64, LMC_ERR_FORMAT,
         "dtype I32, expected U32"},
    };
    const char *root = scratch_root("quant");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bind_case *k = &cases[i];
        char dir[512], path[600];
        snprintf(dir, sizeof dir, "%s/case%zu", root, i);
        mkdir(dir, 0700);
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        lmc_st_write_tensor t[3] = {
            {"m.weight", k->wdt, 2, {k->w[0], k->w[1]}, words},
            {"m.scales", LMC_DT_BF16, 2, {k->s[0], k->s[1]}, halves},
            {"m.biases", LMC_DT_BF16, 2, {k->b[0], k->b[1]}, halves},
        };
        for (int j = 0; j < 4096; j++) halves[j] = lmc_f32_to_bf16(0.25f);
        lmc_status st = lmc_st_write(path, t, k->b[0] ? 3 : 2, NULL);
        CHECK_MSG(st == LMC_OK, "%s: write: %s", k->what, lmc_last_error());
        lmc_st_set *set = NULL;
        st = lmc_st_set_open_dir(dir, &set);
        CHECK_MSG(st == LMC_OK, "%s: open: %s", k->what, lmc_last_error());
        if (st) continue;
        void **owned = NULL;
        size_t n_owned = 0;
        lmc_cpu_mat m;
        for (int packed = 0; packed < 2; packed++) {
            st = lmc_mlx_bind(set, "m", k->rows, k->cols, k->bits, k->group, packed, &owned,
                              &n_owned, &m);
            if (k->want != LMC_OK) {
                CHECK_ERR(st, k->want, k->needle);
                continue;
            }
            CHECK_MSG(st == LMC_OK, "%s: %s", k->what, lmc_last_error());
            if (st) continue;
            CHECK(m.dt == (packed ? LMC_DT_U32 : LMC_DT_F32) && m.rows == k->rows &&
                  m.cols == k->cols && (m.quant != NULL) == (packed != 0));
            /* all-zero words with scale 0.25, bias 0.25 -> 0.25 everywhere */
            float first, last;
            lmc_cpu_widen(&m, 0, 0, 1, &first);
            lmc_cpu_widen(&m, k->rows - 1, k->cols - 1, 1, &last);
            CHECK(first == 0.25f && last == 0.25f);
        }
        for (size_t j = 0; j < n_owned; j++) free(owned[j]);
        free(owned);
        lmc_st_set_free(set);
    }
}

static void test_config(void) {
    lmc_model_config c;
    const char *ok = "{\"model_type\":\"llama\",\"quantization\":{\"group_size\":64,\"bits\":4,"
                     "\"model.embed_tokens\":false,\"lm_head\":{\"group_size\":32,\"bits\":8}}}";
    CHECK(lmc_config_parse(ok, strlen(ok), "cfg", &c, NULL) == LMC_OK);
    CHECK(c.quantized && c.q_bits == 4 && c.q_group_size == 64 && c.q_n_overrides == 2);
    CHECK_STREQ(c.q_mode, "affine");
    const char *bad = "{\"model_type\":\"llama\",\"quantization\":{\"group_size\":64,\"bits\":4,"
                      "\"model.embed_tokens\":4}}";
    CHECK_ERR(lmc_config_parse(bad, strlen(bad), "cfg", &c, NULL), LMC_ERR_FORMAT,
              "quantization entry 'model.embed_tokens' must be false, true or an object");
    const char *bad2 = "{\"model_type\":\"llama\",\"quantization\":{\"group_size\":64,\"bits\":4,"
                       "\"lm_head\":{\"bits\":8}}}";
    CHECK_ERR(lmc_config_parse(bad2, strlen(bad2), "cfg", &c, NULL), LMC_ERR_FORMAT,
              "needs positive group_size and bits");
}

/* ------------------------------------------------- packed matrix products */

static uint32_t lcg(uint32_t *st) {
    *st = *st * 1664525u + 1013904223u;
    return *st;
}

/* A packed quantized matrix against its dequantized F32 copy in every
 * product path: the decode GEMV (n <= 8), the prefill sgemm, and the fused
 * multi-matrix GEMV beside an ordinary matrix, with a bias. They must agree
 * bit for bit, since the same values are summed in the same order. Also a
 * slice that starts and ends inside groups. */
static void check_packed_matmul(int bits, int group, bool f32_sb) {
    const int64_t rows = 37, cols = 3 * 128;
    const int64_t ng = cols / group, nw = rows * cols * bits / 32;
    uint32_t st = (uint32_t)(bits * 131 + group + f32_sb);
    uint32_t *words = malloc((size_t)nw * sizeof *words);
    float *sf = malloc((size_t)(rows * ng) * sizeof(float));
    float *bf = malloc((size_t)(rows * ng) * sizeof(float));
    uint16_t *sh = malloc((size_t)(rows * ng) * 2), *bh = malloc((size_t)(rows * ng) * 2);
    for (int64_t i = 0; i < nw; i++) words[i] = lcg(&st);
    for (int64_t i = 0; i < rows * ng; i++) {
        sf[i] = (float)(lcg(&st) % 1000 + 1) * 1e-4f;
        bf[i] = -(float)(lcg(&st) % 1000) * 1e-3f;
        sh[i] = lmc_f32_to_bf16(sf[i]);
        bh[i] = lmc_f32_to_bf16(bf[i]);
    }
    lmc_cpu_quant cq = {.bits = bits,
                        .group_size = group,
                        .scales_dt = f32_sb ? LMC_DT_F32 : LMC_DT_BF16,
                        .biases_dt = f32_sb ? LMC_DT_F32 : LMC_DT_BF16,
                        .scales = f32_sb ? (const void *)sf : (const void *)sh,
                        .biases = f32_sb ? (const void *)bf : (const void *)bh};
    lmc_cpu_mat pm = {.dt = LMC_DT_U32, .data = words, .rows = rows, .cols = cols, .quant = &cq};
    lmc_mlx_quant mq = {.rows = rows, .cols = cols, .bits = bits, .group_size = group,
                        .packed = words,
                        .scales = {.dt = cq.scales_dt, .data = cq.scales, .rows = rows, .cols = ng},
                        .biases = {.dt = cq.biases_dt, .data = cq.biases, .rows = rows, .cols = ng}};
    float *dense = malloc((size_t)(rows * cols) * sizeof(float));
    CHECK(lmc_mlx_dequantize(&mq, LMC_DT_F32, dense, "packed") == LMC_OK);
    lmc_cpu_mat dm = {.dt = LMC_DT_F32, .data = dense, .rows = rows, .cols = cols};
    /* spot values by hand: the first and last of row 5 */
    {
        const int per = 32 / bits, r = 5;
        const uint32_t mask = (1u << bits) - 1u;
        const uint32_t *rw = words + r * (cols / per);
        float s0 = f32_sb ? sf[r * ng] : lmc_bf16_to_f32(sh[r * ng]);
        float b0 = f32_sb ? bf[r * ng] : lmc_bf16_to_f32(bh[r * ng]);
        float want0 = s0 * (float)(rw[0] & mask) + b0;
        CHECK(dense[r * cols] == want0);
        float sl = f32_sb ? sf[r * ng + ng - 1] : lmc_bf16_to_f32(sh[r * ng + ng - 1]);
        float bl = f32_sb ? bf[r * ng + ng - 1] : lmc_bf16_to_f32(bh[r * ng + ng - 1]);
        float wantl = sl * (float)(rw[cols / per - 1] >> ((per - 1) * bits) & mask) + bl;
        CHECK(dense[r * cols + cols - 1] == wantl);
    }
    float slice[128];
    lmc_cpu_widen(&pm, 11, group / 2 + 3, 100, slice);
    CHECK(!memcmp(slice, dense + 11 * cols + group / 2 + 3, sizeof(float) * 100));

    const size_t ns[] = {1, 3, 8, 20};
    float bias_v[37];
    for (int i = 0; i < rows; i++) bias_v[i] = 0.01f * (float)i;
    lmc_cpu_mat bias = {.dt = LMC_DT_F32, .data = bias_v, .rows = 1, .cols = rows};
    for (size_t t = 0; t < sizeof ns / sizeof *ns; t++) {
        const size_t n = ns[t];
        float *x = malloc(n * (size_t)cols * sizeof(float));
        float *y1 = malloc(n * (size_t)rows * sizeof(float)), *y2 = malloc(n * (size_t)rows * 4);
        for (size_t i = 0; i < n * (size_t)cols; i++) x[i] = (float)(lcg(&st) % 2001) * 1e-3f - 1.f;
        CHECK(lmc_cpu_matmul(&pm, &bias, x, n, y1) == LMC_OK);
        CHECK(lmc_cpu_matmul(&dm, &bias, x, n, y2) == LMC_OK);
        CHECK_MSG(!memcmp(y1, y2, n * (size_t)rows * sizeof(float)),
                  "bits %d group %d n %zu: packed and dequantized products differ", bits, group, n);
        if (n <= 8) { /* fused: packed, dense, packed sharing one input */
            float *ya = malloc(n * (size_t)rows * 4), *yb = malloc(n * (size_t)rows * 4),
                  *yc = malloc(n * (size_t)rows * 4);
            const lmc_cpu_mat *ws[3] = {&pm, &dm, &pm}, *bs[3] = {NULL, &bias, &bias};
            float *const ys[3] = {ya, yb, yc};
            CHECK(lmc_cpu_matmul_multi(ws, bs, 3, x, n, ys) == LMC_OK);
            CHECK(!memcmp(yb, y2, n * (size_t)rows * 4) && !memcmp(yc, y2, n * (size_t)rows * 4));
            CHECK(lmc_cpu_matmul(&dm, NULL, x, n, yb) == LMC_OK);
            CHECK(!memcmp(ya, yb, n * (size_t)rows * 4));
            free(ya), free(yb), free(yc);
        }
        free(x), free(y1), free(y2);
    }
    free(words), free(sf), free(bf), free(sh), free(bh), free(dense);
}

static void test_packed_matmul(void) {
    const int bits[] = {2, 4, 8}, groups[] = {32, 64, 128};
    for (int b = 0; b < 3; b++)
        for (int g = 0; g < 3; g++)
            for (int f = 0; f < 2; f++) check_packed_matmul(bits[b], groups[g], f);
}

int main(void) {
    test_dequantize_units();
    test_packed_matmul();
    test_config();
    test_bind_errors();
    char probe[1024];
    snprintf(probe, sizeof probe, "%s/tests/golden/quant/llama-q4g64/golden.json", src_dir());
    if (access(probe, R_OK)) {
        printf("no quantized goldens under %s/tests/golden/quant\n", src_dir());
        CHECK(0);
    } else {
        const char *names[] = {"llama-q4g64", "llama-q8g32", "llama-q4mixed", "qwen3-q4g64",
                               "qwen3-q8g32"};
        for (size_t i = 0; i < 5; i++) test_golden(names[i]);
        printf("worst logits max|d|/range over the quantized goldens: %.3g\n", worst_err);
        test_model_errors();
    }
    return check_summary("test_quantized");
}
