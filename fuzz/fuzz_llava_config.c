/* Fuzz LLaVA loading: config.json (text_config, vision_config,
 * image_token_index, vision_feature_layer, vision_feature_select_strategy;
 * src/vlm/llava.c and clip_vision.c) and the processor configs
 * (src/vlm/llava_processor.c).
 *
 * Input: config.json bytes, optionally followed by
 * "\n#processor_config.json\n" + processor_config.json (replacing the test
 * model's) and/or "\n#preprocessor_config.json\n" +
 * preprocessor_config.json (absent unless given), in that order. The files
 * sit next to the weights, tokenizer and chat template of
 * tests/golden/vlm/llava-fp32; lmc_vlm_load must succeed or fail with a
 * message. A context that loads renders a one-image chat prompt and
 * generates one token for a small image (prompt expansion, vision tower,
 * projector); that too ends in success or a message. */
#include "fuzz_util.h"
#include <stdint.h>
#include <sys/stat.h>

#ifndef LMC_FUZZ_SOURCE_DIR
#define LMC_FUZZ_SOURCE_DIR "."
#endif

#define PROC_SEP "\n#processor_config.json\n"
#define PREPROC_SEP "\n#preprocessor_config.json\n"

static char model_dir[600], image_path[1024], golden_proc[1200];
static const char *const copied[] = {"model.safetensors", "tokenizer.json",
                                     "tokenizer_config.json", "chat_template.jinja"};
static const char *const written[] = {"config.json", "processor_config.json",
                                      "preprocessor_config.json"};

static void join(char *buf, size_t cap, const char *dir, const char *file) {
    snprintf(buf, cap, "%s/%s", dir, file);
}

static void put(const char *file, const void *data, size_t n) {
    char p[700];
    join(p, sizeof p, model_dir, file);
    FILE *f = fopen(p, "wb");
    FZ_REQUIRE(f && (!n || fwrite(data, 1, n, f) == n) && !fclose(f));
}

static char *slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "fuzz_llava_config: cannot open %s\n", path);
        abort();
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    FZ_REQUIRE(buf && fread(buf, 1, (size_t)n, f) == (size_t)n);
    fclose(f);
    buf[n] = 0;
    *len = (size_t)n;
    return buf;
}

static void cleanup(void) {
    char p[700];
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        join(p, sizeof p, model_dir, copied[i]);
        unlink(p);
    }
    for (size_t i = 0; i < sizeof written / sizeof written[0]; i++) {
        join(p, sizeof p, model_dir, written[i]);
        unlink(p);
    }
    rmdir(model_dir);
}

static void init_once(void) {
    static int done;
    if (done) return;
    done = 1;
    const char *root = getenv("LMC_SOURCE_DIR");
    if (!root || !*root) root = LMC_FUZZ_SOURCE_DIR;
    snprintf(model_dir, sizeof model_dir, "%s/llava", fz_scratch());
    mkdir(model_dir, 0700);
    char src[1200];
    for (size_t i = 0; i < sizeof copied / sizeof copied[0]; i++) {
        snprintf(src, sizeof src, "%s/tests/golden/vlm/llava-fp32/%s", root, copied[i]);
        size_t n;
        char *buf = slurp(src, &n);
        put(copied[i], buf, n);
        free(buf);
    }
    snprintf(golden_proc, sizeof golden_proc, "%s/tests/golden/vlm/llava-fp32/processor_config.json",
             root);
    snprintf(image_path, sizeof image_path, "%s/tests/golden/vlm/img_a.png", root);
    atexit(cleanup); /* runs before the scratch cleanup */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    init_once();
    size_t clen, rest_len, plen = 0, qlen = 0;
    const unsigned char *proc = NULL, *preproc = NULL;
    const unsigned char *rest = fz_split(data, size, PROC_SEP, &clen, &rest_len);
    if (rest) {
        proc = rest;
        preproc = fz_split(rest, rest_len, PREPROC_SEP, &plen, &qlen);
    } else {
        preproc = fz_split(data, size, PREPROC_SEP, &clen, &qlen);
    }
    put("config.json", data, clen);
    if (proc) {
        put("processor_config.json", proc, plen);
    } else {
        static char *golden;
        static size_t golden_len;
        if (!golden) golden = slurp(golden_proc, &golden_len);
        put("processor_config.json", golden, golden_len);
    }
    char p[700];
    join(p, sizeof p, model_dir, "preprocessor_config.json");
    if (preproc)
        put("preprocessor_config.json", preproc, qlen);
    else
        unlink(p);

    lmc_load_options o = {.model_dir = model_dir, .device = LMC_DEVICE_CPU};
    lmc_vlm_context *ctx = NULL;
    lmc_status st = lmc_vlm_load(&o, &ctx);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("load", st);
    if (st) {
        FZ_REQUIRE(ctx == NULL);
        return 0;
    }
    FZ_REQUIRE(lmc_vlm_model_type(ctx) && lmc_vlm_image_token(ctx));
    char *prompt = NULL;
    st = lmc_vlm_chat_prompt(ctx, "What is this?", 1, &prompt);
    FZ_REQUIRE_MESSAGE(st);
    if (!st) {
        lmc_gen_params gp;
        lmc_gen_params_default(&gp);
        gp.max_tokens = 1;
        const char *images[1] = {image_path};
        char *text = NULL;
        st = lmc_vlm_generate_text(ctx, prompt, images, 1, &gp, &text, NULL);
        FZ_REQUIRE_MESSAGE(st);
        fz_note("generate", st);
        if (!st) FZ_REQUIRE(text != NULL);
        lmc_free(text);
    }
    lmc_free(prompt);
    lmc_vlm_free(ctx);
    return 0;
}
