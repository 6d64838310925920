/* Fuzz LoRA adapter loading and fusing (src/train/lora_io.c).
 *
 * Input: adapter_config.json bytes, optionally followed by the separator
 * line "\n#adapter_model.safetensors\n" and the bytes of
 * adapter_model.safetensors. The adapters are read against the tiny fp32
 * llama of tests/golden/models/llama-fp32 (its weights mapped once per
 * process): the config alone (lmc_lora_read_config), then a net built with
 * the shape the config asks for loads the adapters (lmc_lora_load), and
 * lmc_lora_fuse_dirs writes a fused copy of the model. Each step ends in
 * success or an error with a message. Adapters that load are saved again
 * and re-loaded into a second net: the values must be identical; a fuse
 * that succeeds wrote every base tensor and read only float adapters. */
#include "fuzz_util.h"
#include "train/lora.h"
#include <stdint.h>
#include <sys/stat.h>

#ifndef LMC_FUZZ_SOURCE_DIR
#define LMC_FUZZ_SOURCE_DIR "."
#endif

#define WEIGHTS_SEP "\n#adapter_model.safetensors\n"

static char model_dir[1024];
static lmc_lora_base base;
static const char *const subdirs[] = {"adapter", "resaved", "fused"};
static const char *const files[] = {
    "adapter_config.json", "adapter_model.safetensors", "model.safetensors", "config.json",
    "generation_config.json"};

static void sub_path(char *buf, size_t cap, int dir, const char *file) {
    if (file)
        snprintf(buf, cap, "%s/%s/%s", fz_scratch(), subdirs[dir], file);
    else
        snprintf(buf, cap, "%s/%s", fz_scratch(), subdirs[dir]);
}

static void cleanup(void) {
    char p[700];
    for (int d = 0; d < 3; d++) {
        for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
            sub_path(p, sizeof p, d, files[i]);
            unlink(p);
        }
        sub_path(p, sizeof p, d, NULL);
        rmdir(p);
    }
    lmc_lora_base_close(&base);
}

static void write_sub(int dir, const char *file, const void *data, size_t n) {
    char p[700];
    sub_path(p, sizeof p, dir, file);
    FILE *f = fopen(p, "wb");
    FZ_REQUIRE(f && (!n || fwrite(data, 1, n, f) == n) && !fclose(f));
}

static void init_once(void) {
    static int done;
    if (done) return;
    done = 1;
    const char *root = getenv("LMC_SOURCE_DIR");
    snprintf(model_dir, sizeof model_dir, "%s/tests/golden/models/llama-fp32",
             root && *root ? root : LMC_FUZZ_SOURCE_DIR);
    if (lmc_lora_base_open(model_dir, &base)) {
        fprintf(stderr, "fuzz_lora_adapters: %s\n", lmc_last_error());
        abort();
    }
    char p[700];
    sub_path(p, sizeof p, 0, NULL);
    mkdir(p, 0700);
    atexit(cleanup); /* runs before the scratch cleanup */
}

static bool same_values(const lmc_lora_net *a, const lmc_lora_net *b) {
    if (a->n_ad != b->n_ad) return false;
    for (size_t i = 0; i < a->n_ad; i++) {
        const lmc_lora_adapter *x = &a->ad[i], *y = &b->ad[i];
        size_t na = (size_t)a->shape.rank * (size_t)x->in, nb = (size_t)x->out * (size_t)a->shape.rank;
        if (x->in != y->in || x->out != y->out || memcmp(x->A, y->A, na * sizeof(float)) ||
            memcmp(x->B, y->B, nb * sizeof(float)))
            return false;
    }
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    size_t clen, wlen;
    const unsigned char *weights = fz_split(data, size, WEIGHTS_SEP, &clen, &wlen);
    char adir[700], sdir[700], fdir[700], p[700];
    sub_path(adir, sizeof adir, 0, NULL);
    sub_path(sdir, sizeof sdir, 1, NULL);
    sub_path(fdir, sizeof fdir, 2, NULL);
    write_sub(0, "adapter_config.json", data, clen);
    sub_path(p, sizeof p, 0, "adapter_model.safetensors");
    if (weights)
        write_sub(0, "adapter_model.safetensors", weights, wlen);
    else
        unlink(p);

    lmc_lora_shape shape;
    lmc_status st = lmc_lora_read_config(adir, base.cfg.num_hidden_layers, &shape);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("config", st);
    /* Rank up to 4096 is accepted; keep a net's allocation small. */
    if (!st && shape.rank <= 64) {
        lmc_lora_net net;
        memset(&net, 0, sizeof net);
        st = lmc_lora_net_init(&net, &base.cfg, base.config_json, base.weights, &shape, 1);
        FZ_REQUIRE_MESSAGE(st);
        fz_note("net", st);
        if (!st) {
            st = lmc_lora_load(&net, adir);
            FZ_REQUIRE_MESSAGE(st);
            fz_note("load", st);
        }
        if (!st) {
            st = lmc_lora_save(&net, sdir, NULL);
            FZ_REQUIRE_MESSAGE(st);
            FZ_REQUIRE(st == LMC_OK);
            lmc_lora_net again;
            memset(&again, 0, sizeof again);
            st = lmc_lora_net_init(&again, &base.cfg, base.config_json, base.weights, &shape, 2);
            FZ_REQUIRE(st == LMC_OK);
            st = lmc_lora_load(&again, sdir);
            FZ_REQUIRE_MESSAGE(st);
            FZ_REQUIRE(st == LMC_OK);
            FZ_REQUIRE(same_values(&net, &again));
            lmc_lora_net_free(&again);
        }
        lmc_lora_net_free(&net);
    }
    st = lmc_lora_fuse_dirs(model_dir, adir, fdir, NULL, NULL);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("fuse", st);
    if (!st) {
        lmc_st_file *f = NULL;
        sub_path(p, sizeof p, 2, "model.safetensors");
        st = lmc_st_open(p, &f);
        FZ_REQUIRE(st == LMC_OK);
        FZ_REQUIRE(lmc_st_count(f) == lmc_st_set_count(base.weights));
        lmc_st_close(f);
        /* Fused adapters are float data, as lmc_lora_load requires. */
        sub_path(p, sizeof p, 0, "adapter_model.safetensors");
        FZ_REQUIRE(lmc_st_open(p, &f) == LMC_OK);
        for (size_t i = 0; i < lmc_st_count(f); i++) {
            lmc_dtype dt = lmc_st_at(f, i)->dtype;
            FZ_REQUIRE(dt == LMC_DT_F32 || dt == LMC_DT_F16 || dt == LMC_DT_BF16);
        }
        lmc_st_close(f);
    }
    return 0;
}
