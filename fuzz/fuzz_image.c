/* Fuzz image decoding + preprocessing (src/vlm), all in memory.
 *
 * Input: image bytes, optionally preceded by a processor-config JSON and the
 * separator line "\n#image\n". Without a config the image goes through a
 * fixed CLIP-like pipeline (shortest edge 12, center crop 8x8, bicubic,
 * normalize). Invariants: every failure carries a message; a success
 * yields 3 x H x W finite floats within the pixel cap; decoding and the
 * public entry point agree on whether the bytes are an image. */
#include "fuzz_util.h"
#include "vlm/image.h"
#include <math.h>
#include <stdint.h>

#define IMG_SEP "\n#image\n"
/* Small cap so a tiny header cannot make one input take seconds. */
#define FUZZ_MAX_PIXELS ((size_t)1 << 18)

static const char k_default_cfg[] =
    "{\"size\":{\"shortest_edge\":12},\"do_center_crop\":true,"
    "\"crop_size\":{\"height\":8,\"width\":8},\"resample\":3,"
    "\"image_mean\":[0.48145466,0.4578275,0.40821073],"
    "\"image_std\":[0.26862954,0.26130258,0.27577711]}";

static void check_output(lmc_status st, float *px, size_t c, size_t h, size_t w) {
    FZ_REQUIRE_MESSAGE(st);
    if (st != LMC_OK) {
        FZ_REQUIRE(px == NULL);
        return;
    }
    FZ_REQUIRE(px != NULL && c == 3 && h > 0 && w > 0);
    FZ_REQUIRE(w <= FUZZ_MAX_PIXELS / h);
    for (size_t i = 0; i < c * h * w; i++) FZ_REQUIRE(isfinite(px[i]));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    size_t clen, ilen;
    const unsigned char *img = fz_split(data, size, IMG_SEP, &clen, &ilen);
    const char *cfg_text = k_default_cfg;
    size_t cfg_len = sizeof k_default_cfg - 1;
    if (img) {
        cfg_text = (const char *)data;
        cfg_len = clen;
    } else {
        img = data;
        ilen = size;
    }

    lmc_image_config cfg;
    lmc_status st = lmc_image_config_parse(cfg_text, cfg_len, "processor config", &cfg);
    FZ_REQUIRE_MESSAGE(st);
    fz_note("config", st);
    if (st != LMC_OK) return 0;
    cfg.max_pixels_cap = FUZZ_MAX_PIXELS;

    /* Decode alone, both channel modes. */
    lmc_image_u8 im;
    lmc_status sd = lmc_image_decode_memory(img, ilen, "image", FUZZ_MAX_PIXELS, true, &im);
    FZ_REQUIRE_MESSAGE(sd);
    fz_note("decode", sd);
    if (sd == LMC_OK) {
        FZ_REQUIRE(im.px && im.c == 3 && im.w > 0 && im.h > 0);
        FZ_REQUIRE(im.w <= FUZZ_MAX_PIXELS / im.h);
    }
    lmc_image_u8 raw;
    lmc_status sr = lmc_image_decode_memory(img, ilen, "image", FUZZ_MAX_PIXELS, false, &raw);
    FZ_REQUIRE_MESSAGE(sr);
    FZ_REQUIRE((sr == LMC_OK) == (sd == LMC_OK));
    if (sr == LMC_OK) {
        FZ_REQUIRE(raw.c >= 1 && raw.c <= 4 && raw.w == im.w && raw.h == im.h);
        /* The RGB view of an RGB(A) image is its first three channels. */
        if (raw.c >= 3)
            for (size_t i = 0; i < raw.w * raw.h; i++)
                FZ_REQUIRE(!memcmp(raw.px + i * raw.c, im.px + i * 3, 3));
    }
    lmc_image_u8_free(&raw);

    /* The whole pipeline from bytes. */
    float *px = NULL;
    size_t c = 0, h = 0, w = 0;
    lmc_status sp = lmc_image_preprocess_bytes(&cfg, img, ilen, "image", &px, &c, &h, &w);
    fz_note("preprocess", sp);
    check_output(sp, px, c, h, w);
    if (cfg.do_convert_rgb && sd != LMC_OK) FZ_REQUIRE(sp != LMC_OK);

    /* From the decoded image, the same result. */
    if (sd == LMC_OK && cfg.do_convert_rgb) {
        float *px2 = NULL;
        size_t c2 = 0, h2 = 0, w2 = 0;
        lmc_status s2 = lmc_image_preprocess_u8(&cfg, &im, &px2, &c2, &h2, &w2);
        check_output(s2, px2, c2, h2, w2);
        FZ_REQUIRE(s2 == sp);
        if (s2 == LMC_OK) {
            FZ_REQUIRE(c2 == c && h2 == h && w2 == w);
            FZ_REQUIRE(!memcmp(px, px2, c * h * w * sizeof *px));
        }
        free(px2);
    }
    free(px);
    lmc_image_u8_free(&im);
    return 0;
}
