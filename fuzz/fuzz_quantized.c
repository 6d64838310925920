/* Fuzz MLX affine-quantized weights (src/models/quantized.c and the llama
 * binder in src/models/llama_weights.c).
 *
 * Two kinds of input:
 *  - starting with '{': a config.json (with a "quantization" object) that
 *    sits next to the weights of one of the quantized test models in
 *    tests/golden/quant/ (picked by model_type, bits and per-module
 *    overrides in the text); whatever loads generates two tokens.
 *  - anything else: a header of 7 bytes describing one quantized matrix
 *    "m" (bits, group size, rows, cols, dtypes and shapes of m.weight,
 *    m.scales, m.biases, with deliberate mismatches), the rest filling the
 *    tensors' bytes. The tensors are written as a safetensors file and
 *    bound with lmc_mlx_bind, fixed or per-module. A matrix that binds
 *    must equal scales * q + biases computed here from the packed words,
 *    and lmc_mlx_dequantize to BF16 must round the same values.
 * Every failure carries a message. */
#include "fuzz_util.h"
#include "models/quantized.h"
#include <math.h>
#include <stdint.h>
#include <sys/stat.h>


static char ckpt_dir[600], bin_dir[600], tok_dir[600];

static void join(char *buf, size_t cap, const char *dir, const char *file) {
    snprintf(buf, cap, "%s/%s", dir, file);
}

static void put(const char *dir, const char *file, const void *data, size_t n) {
    char p[700];
    join(p, sizeof p, dir, file);
    FILE *f = fopen(p, "wb");
    FZ_REQUIRE(f && (!n || fwrite(data, 1, n, f) == n) && !fclose(f));
}

static void cleanup(void) {
    char p[700];
    const char *dirs[] = {ckpt_dir, bin_dir, tok_dir};
    const char *names[] = {"config.json", "model.safetensors", "tokenizer.json"};
    for (int d = 0; d < 3; d++) {
        for (int i = 0; i < 3; i++) {
            join(p, sizeof p, dirs[d], names[i]);
            unlink(p);
        }
        rmdir(dirs[d]);
    }
}

static void init_once(void) {
    static int done;
    if (done) return;
    done = 1;
    snprintf(ckpt_dir, sizeof ckpt_dir, "%s/ckpt", fz_scratch());
    snprintf(bin_dir, sizeof bin_dir, "%s/bin", fz_scratch());
    snprintf(tok_dir, sizeof tok_dir, "%s/tok", fz_scratch());
    mkdir(ckpt_dir, 0700);
    mkdir(bin_dir, 0700);
    mkdir(tok_dir, 0700);
    static const char tj[] =
        "{\"model\":{\"type\":\"BPE\",\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"</s>\":3},"
        "\"merges\":[\"a b\"]},\"added_tokens\":[{\"id\":3,\"content\":\"</s>\","
        "\"special\":true}]}";
    put(tok_dir, "tokenizer.json", tj, sizeof tj - 1);
    atexit(cleanup); /* runs before the scratch cleanup */
}

/* ---------------------------------------------------------- config mode */

static bool has(const uint8_t *s, size_t n, const char *w) {
    size_t m = strlen(w);
    for (size_t i = 0; i + m <= n; i++)
        if (!memcmp(s + i, w, m)) return true;
    return false;
}

static const char *weights_for(const uint8_t *cfg, size_t n) {
    bool qwen = has(cfg, n, "\"qwen3\""), eight = has(cfg, n, "\"bits\": 8");
    if (qwen) return eight ? "qwen3-q8g32" : "qwen3-q4g64";
    if (has(cfg, n, "\"model.layers.")) return "llama-q4mixed";
    return eight ? "llama-q8g32" : "llama-q4g64";
}

static void place_weights(const char *model) {
    static char current[32];
    if (!strcmp(current, model)) return;
    char rel[128];
    snprintf(rel, sizeof rel, "tests/golden/quant/%s/model.safetensors", model);
    size_t len = 0;
    char *buf = fz_read_source_file(rel, &len);
    put(ckpt_dir, "model.safetensors", buf, len);
    free(buf);
    snprintf(current, sizeof current, "%s", model);
}

static bool on_token(void *user, const lmc_gen_response *r) {
    (void)user;
    FZ_REQUIRE(r->text != NULL);
    return true;
}

static void config_mode(const uint8_t *data, size_t size) {
    place_weights(weights_for(data, size));
    put(ckpt_dir, "config.json", data, size);
    lmc_load_options o = {.model_dir = ckpt_dir, .tokenizer_dir = tok_dir,
                          .device = LMC_DEVICE_CPU};
    lmc_context *ctx = NULL;
    lmc_status st = lmc_context_load(&o, &ctx);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("load", st);
    if (st) {
        FZ_REQUIRE(ctx == NULL);
        return;
    }
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 2;
    const int32_t prompt[3] = {0, 1, 2};
    st = lmc_generate_ids(ctx, prompt, 3, &p, NULL, on_token, NULL, NULL);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("generate", st);
    lmc_context_free(ctx);
}

/* ---------------------------------------------------------- matrix mode */

static const lmc_dtype float_dts[4] = {LMC_DT_F32, LMC_DT_F16, LMC_DT_BF16, LMC_DT_U8};
static const lmc_dtype packed_dts[8] = {LMC_DT_U32, LMC_DT_I32, LMC_DT_F32, LMC_DT_U8,
                                        LMC_DT_U32, LMC_DT_I64, LMC_DT_F16, LMC_DT_U32};

/* The tensors are filled from the input tail, cycled (zeros when empty). */
static void *fill(size_t bytes, const uint8_t *src, size_t n) {
    uint8_t *p = malloc(bytes ? bytes : 1);
    FZ_REQUIRE(p);
    for (size_t i = 0; i < bytes; i++) p[i] = n ? src[i % n] : 0;
    return p;
}

static float elem(const lmc_tensor_view *t, size_t i) {
    float v;
    lmc_to_f32(t->dtype, (const uint8_t *)t->data + i * lmc_dtype_size(t->dtype), &v, 1);
    return v;
}

static void matrix_mode(const uint8_t *data, size_t size) {
    uint8_t h[7] = {0};
    memcpy(h, data, size < 7 ? size : 7);
    const uint8_t *rest = size > 7 ? data + 7 : NULL;
    size_t rn = size > 7 ? size - 7 : 0;

    static const int64_t bits_sel[3] = {2, 4, 8}, group_sel[3] = {32, 64, 128};
    int64_t bits = (h[0] & 3) < 3 ? bits_sel[h[0] & 3] : (int64_t)(h[5] & 15);
    int64_t gs = ((h[0] >> 2) & 3) < 3 ? group_sel[(h[0] >> 2) & 3] : (int64_t)(h[5] >> 4) * 8;
    bool fixed = h[0] & 0x10;
    lmc_dtype pdt = (h[0] & 0x20) ? packed_dts[h[6] & 7] : LMC_DT_U32;
    lmc_dtype odt = (h[0] & 0x40) ? LMC_DT_BF16 : LMC_DT_F32;
    bool no_biases = h[0] & 0x80;
    int64_t rows = 1 + h[1] % 8;
    int64_t cols = (h[2] & 0x80) ? (int64_t)(h[2] & 0x7f) : gs * (1 + h[2] % 4);
    lmc_dtype sdt = float_dts[h[3] & 3], bdt = float_dts[(h[3] >> 2) & 3];

    /* Well-formed shapes for the chosen setting, then the perturbations. */
    int64_t ng = gs > 0 ? cols / gs : 0;
    int64_t pw[2] = {rows, bits > 0 ? cols * bits / 32 : 0}, sw[2] = {rows, ng}, bw[2] = {rows, ng};
    int pnd = 2, snd = 2, bnd = 2;
    if (h[3] & 0x10) pw[0]++;
    if (h[3] & 0x20) pw[1]++;
    if (h[3] & 0x40) sw[1]++;
    if (h[3] & 0x80) pnd = 1;
    if (h[4] & 1) snd = 1;
    if (h[4] & 2) bw[0]--;
    if (h[4] & 4) bw[1]++;
    if (h[4] & 8) pw[1] = 0;
    if (h[4] & 16) sw[0] = 0;
    /* The bound matrix's expected shape can also disagree with the tensors. */
    int64_t brows = rows + ((h[4] & 32) ? 1 : 0), bcols = cols + ((h[4] & 64) ? 32 : 0);
    for (int d = 0; d < 2; d++) {
        if (pw[d] < 0) pw[d] = 0;
        if (sw[d] < 0) sw[d] = 0;
        if (bw[d] < 0) bw[d] = 0;
    }

    lmc_st_write_tensor t[3];
    memset(t, 0, sizeof t);
    const char *names[3] = {"m.weight", "m.scales", "m.biases"};
    lmc_dtype dts[3] = {pdt, sdt, bdt};
    int nds[3] = {pnd, snd, bnd};
    const int64_t *shapes[3] = {pw, sw, bw};
    void *bufs[3] = {NULL, NULL, NULL};
    size_t nt = no_biases ? 2 : 3;
    for (size_t i = 0; i < nt; i++) {
        t[i].name = names[i];
        t[i].dtype = dts[i];
        t[i].ndim = nds[i];
        size_t numel = 1;
        for (int d = 0; d < nds[i]; d++) {
            /* 1-D tensors take both dimensions' product. */
            t[i].shape[d] = nds[i] == 1 ? shapes[i][0] * shapes[i][1] : shapes[i][d];
            numel *= (size_t)t[i].shape[d];
        }
        bufs[i] = fill(numel * lmc_dtype_size(dts[i]), rest, rn);
        t[i].data = bufs[i];
    }
    lmc_status st = lmc_st_write(fz_path("bin/model.safetensors", 0), t, nt, NULL);
    for (size_t i = 0; i < 3; i++) free(bufs[i]);
    FZ_REQUIRE_MESSAGE(st);
    if (st) return;

    lmc_st_set *set = NULL;
    st = lmc_st_set_open_dir(bin_dir, &set);
    FZ_REQUIRE(st == LMC_OK);
    void **owned = NULL;
    size_t n_owned = 0;
    lmc_cpu_mat m;
    st = lmc_mlx_bind(set, "m", brows, bcols, fixed ? bits : 0, fixed ? gs : 0, false, &owned,
                      &n_owned, &m);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("bind", st);
    if (!st) {
        FZ_REQUIRE(m.dt == LMC_DT_F32 && m.rows == brows && m.cols == bcols && m.data);
        const lmc_tensor_view *W = lmc_st_set_find(set, "m.weight");
        const lmc_tensor_view *S = lmc_st_set_find(set, "m.scales");
        const lmc_tensor_view *B = lmc_st_set_find(set, "m.biases");
        FZ_REQUIRE(W && S && B && W->dtype == LMC_DT_U32 && W->ndim == 2 && S->ndim == 2);
        int64_t rb = W->shape[1] * 32 / bcols, rg = bcols / S->shape[1];
        FZ_REQUIRE(lmc_mlx_check_params(rb, rg, "bound") == LMC_OK);
        FZ_REQUIRE(W->shape[0] == brows && S->shape[0] == brows && bcols % rg == 0);
        FZ_REQUIRE(B->ndim == 2 && B->shape[0] == brows && B->shape[1] == S->shape[1]);
        const uint32_t *words = W->data;
        const float *got = m.data;
        int64_t per = 32 / rb, ngr = bcols / rg;
        for (int64_t r = 0; r < brows; r++)
            for (int64_t c = 0; c < bcols; c++) {
                uint32_t w = words[r * (bcols / per) + c / per];
                uint32_t q = (w >> ((c % per) * rb)) & ((1u << rb) - 1u);
                size_t gi = (size_t)(r * ngr + c / rg);
                float want = elem(S, gi) * (float)q + elem(B, gi);
                float have = got[r * bcols + c];
                FZ_REQUIRE((isnan(want) && isnan(have)) || !memcmp(&want, &have, sizeof want));
            }
        if (odt == LMC_DT_BF16) {
            /* The same matrix dequantized straight to BF16. */
            lmc_mlx_quant q = {.rows = brows, .cols = bcols, .bits = rb, .group_size = rg,
                               .packed = words,
                               .scales = {.dt = S->dtype, .data = S->data, .rows = brows,
                                          .cols = ngr},
                               .biases = {.dt = B->dtype, .data = B->data, .rows = brows,
                                          .cols = ngr}};
            size_t n = (size_t)(brows * bcols);
            uint16_t *bf = malloc(n * sizeof *bf);
            FZ_REQUIRE(bf);
            st = lmc_mlx_dequantize(&q, LMC_DT_BF16, bf, "bf16");
            FZ_REQUIRE(st == LMC_OK);
            for (size_t i = 0; i < n; i++) FZ_REQUIRE(bf[i] == lmc_f32_to_bf16(got[i]));
            free(bf);
        }
        /* Bound packed, the kernels' on-the-fly values are those same bits,
         * for whole rows and for a slice that starts and ends mid-group. */
        lmc_cpu_mat pm;
        st = lmc_mlx_bind(set, "m", brows, bcols, fixed ? bits : 0, fixed ? gs : 0, true, &owned,
                          &n_owned, &pm);
        FZ_REQUIRE(st == LMC_OK && pm.dt == LMC_DT_U32 && pm.quant && pm.rows == brows &&
                   pm.cols == bcols);
        float *row = malloc((size_t)bcols * sizeof *row);
        FZ_REQUIRE(row);
        for (int64_t r = 0; r < brows; r++) {
            lmc_cpu_widen(&pm, r, 0, (size_t)bcols, row);
            FZ_REQUIRE(!memcmp(row, got + r * bcols, (size_t)bcols * sizeof *row));
            int64_t c0 = bcols / 3, len = bcols - c0 - (bcols > 2 ? 1 : 0);
            lmc_cpu_widen(&pm, r, c0, (size_t)len, row);
            FZ_REQUIRE(!memcmp(row, got + r * bcols + c0, (size_t)len * sizeof *row));
        }
        free(row);
    }
    (void)lmc_mlx_check_params(bits, gs, "params");
    for (size_t i = 0; i < n_owned; i++) free(owned[i]);
    free(owned);
    lmc_st_set_free(set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    if (size && data[0] == '{')
        config_mode(data, size);
    else
        matrix_mode(data, size);
    return 0;
}
