/* Image decoding and preprocessing: hand-written PNG / BMP / PPM files
 * decode to exactly the pixels written; Pillow's resize output (goldens
 * from tests/oracle/vlm_goldens.py) is matched; resizing keeps constants
 * and reproduces linear ramps; sizes, crops and normalization follow the
 * Hugging Face processors' formulas; bad input is refused with a message. */
#include "base/error.h"
#include "check.h"
#include "lmc.h"
#include "vlm/image.h"
#include "vlm_test_util.h"
#include <stdint.h>
#include <sys/stat.h>

/* ------------------------------------------------------------ writers */

static uint32_t crc32_of(const uint8_t *p, size_t n, uint32_t crc) {
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

typedef struct {
    uint8_t *p;
    size_t n, cap;
} bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) exit(1);
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_be32(bytes *b, uint32_t v) {
    uint8_t x[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
    put(b, x, 4);
}
static void put_le(bytes *b, uint32_t v, int n) {
    for (int i = 0; i < n; i++) {
        uint8_t x = (uint8_t)(v >> (8 * i));
        put(b, &x, 1);
    }
}

static void png_chunk(bytes *b, const char *type, const uint8_t *data, size_t n) {
    put_be32(b, (uint32_t)n);
    bytes c = {0};
    put(&c, type, 4);
    if (n) put(&c, data, n);
    put(b, c.p, c.n);
    put_be32(b, crc32_of(c.p, c.n, 0));
    free(c.p);
}

/* A PNG with 8-bit samples, `ch` channels (1 gray, 3 RGB, 4 RGBA), each row
 * stored with filter `filter` (0 none, 1 sub), zlib "stored" blocks. */
static bytes make_png(const uint8_t *px, uint32_t w, uint32_t h, int ch, int filter) {
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    bytes b = {0};
    put(&b, sig, 8);
    uint8_t ihdr[13] = {0};
    for (int i = 0; i < 4; i++) {
        ihdr[i] = (uint8_t)(w >> (24 - 8 * i));
        ihdr[4 + i] = (uint8_t)(h >> (24 - 8 * i));
    }
    ihdr[8] = 8;
    ihdr[9] = ch == 1 ? 0 : ch == 3 ? 2 : 6;
    png_chunk(&b, "IHDR", ihdr, 13);
    bytes raw = {0};
    size_t stride = (size_t)w * (size_t)ch;
    for (uint32_t y = 0; y < h; y++) {
        uint8_t f = (uint8_t)filter;
        put(&raw, &f, 1);
        for (size_t x = 0; x < stride; x++) {
            uint8_t v = px[y * stride + x];
            if (filter == 1 && x >= (size_t)ch) v = (uint8_t)(v - px[y * stride + x - ch]);
            put(&raw, &v, 1);
        }
    }
    bytes z = {0};
    uint8_t zh[2] = {0x78, 0x01};
    put(&z, zh, 2);
    size_t off = 0;
    do {
        size_t n = raw.n - off > 65535 ? 65535 : raw.n - off;
        uint8_t hdr[5] = {(uint8_t)(off + n == raw.n), (uint8_t)n, (uint8_t)(n >> 8),
                          (uint8_t)~n, (uint8_t)(~n >> 8)};
        put(&z, hdr, 5);
        put(&z, raw.p + off, n);
        off += n;
    } while (off < raw.n);
    uint32_t a = 1, s = 0;
    for (size_t i = 0; i < raw.n; i++) {
        a = (a + raw.p[i]) % 65521;
        s = (s + a) % 65521;
    }
    put_be32(&z, (s << 16) | a);
    png_chunk(&b, "IDAT", z.p, z.n);
    png_chunk(&b, "IEND", NULL, 0);
    free(raw.p);
    free(z.p);
    return b;
}

/* 24-bit bottom-up BMP (BGR, rows padded to 4 bytes). */
static bytes make_bmp(const uint8_t *rgb, uint32_t w, uint32_t h) {
    uint32_t stride = (w * 3 + 3) & ~3u, size = 54 + stride * h;
    bytes b = {0};
    put(&b, "BM", 2);
    put_le(&b, size, 4);
    put_le(&b, 0, 4);
    put_le(&b, 54, 4);
    put_le(&b, 40, 4);
    put_le(&b, w, 4);
    put_le(&b, h, 4);
    put_le(&b, 1, 2);
    put_le(&b, 24, 2);
    put_le(&b, 0, 4);
    put_le(&b, stride * h, 4);
    put_le(&b, 2835, 4);
    put_le(&b, 2835, 4);
    put_le(&b, 0, 4);
    put_le(&b, 0, 4);
    for (uint32_t y = h; y-- > 0;) {
        for (uint32_t x = 0; x < w; x++) {
            const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
            uint8_t bgr[3] = {p[2], p[1], p[0]};
            put(&b, bgr, 3);
        }
        put_le(&b, 0, (int)(stride - w * 3));
    }
    return b;
}

static bytes make_ppm(const uint8_t *rgb, uint32_t w, uint32_t h) {
    bytes b = {0};
    char hdr[64];
    int n = snprintf(hdr, sizeof hdr, "P6\n%u %u\n255\n", w, h);
    put(&b, hdr, (size_t)n);
    put(&b, rgb, (size_t)w * h * 3);
    return b;
}

/* ------------------------------------------------------------ decode */

static const uint8_t k_rgb[4 * 3 * 3] = {
    0,   0,   0,   255, 255, 255, 255, 0,   0,   1,   2,   3,   /* row 0 */
    0,   255, 0,   0,   0,   255, 128, 64,  32,  250, 251, 252, /* row 1 */
    17,  34,  51,  68,  85,  102, 119, 136, 153, 170, 187, 204, /* row 2 */
};

static void expect_pixels(const lmc_image_u8 *im, const uint8_t *want, size_t w, size_t h,
                          size_t c, const char *what) {
    CHECK_MSG(im->w == w && im->h == h && im->c == c, "%s: %zux%zux%zu", what, im->w, im->h,
              im->c);
    if (im->w == w && im->h == h && im->c == c)
        CHECK_MSG(!memcmp(im->px, want, w * h * c), "%s: pixel values differ", what);
}

static void test_decode_handmade(void) {
    lmc_image_u8 im;
    bytes f[4] = {make_png(k_rgb, 4, 3, 3, 0), make_png(k_rgb, 4, 3, 3, 1), make_bmp(k_rgb, 4, 3),
                  make_ppm(k_rgb, 4, 3)};
    const char *names[4] = {"png", "png-sub-filter", "bmp", "ppm"};
    for (int i = 0; i < 4; i++) {
        CHECK_EQ_INT(lmc_image_decode_memory(f[i].p, f[i].n, names[i], LMC_IMAGE_MAX_PIXELS, true,
                                             &im),
                     LMC_OK);
        expect_pixels(&im, k_rgb, 4, 3, 3, names[i]);
        lmc_image_u8_free(&im);
    }

    /* Gray -> RGB replicates; RGBA -> RGB drops alpha (as convert("RGB")). */
    uint8_t gray[6] = {0, 9, 128, 200, 254, 255}, gray3[18];
    for (int i = 0; i < 6; i++) gray3[3 * i] = gray3[3 * i + 1] = gray3[3 * i + 2] = gray[i];
    bytes g = make_png(gray, 3, 2, 1, 0);
    CHECK_EQ_INT(lmc_image_decode_memory(g.p, g.n, "gray", LMC_IMAGE_MAX_PIXELS, true, &im),
                 LMC_OK);
    expect_pixels(&im, gray3, 3, 2, 3, "gray->rgb");
    lmc_image_u8_free(&im);
    CHECK_EQ_INT(lmc_image_decode_memory(g.p, g.n, "gray", LMC_IMAGE_MAX_PIXELS, false, &im),
                 LMC_OK);
    expect_pixels(&im, gray, 3, 2, 1, "gray kept");
    lmc_image_u8_free(&im);
    uint8_t rgba[8] = {10, 20, 30, 0, 40, 50, 60, 255}, rgb2[6] = {10, 20, 30, 40, 50, 60};
    bytes a = make_png(rgba, 2, 1, 4, 1);
    CHECK_EQ_INT(lmc_image_decode_memory(a.p, a.n, "rgba", LMC_IMAGE_MAX_PIXELS, true, &im),
                 LMC_OK);
    expect_pixels(&im, rgb2, 2, 1, 3, "rgba->rgb");
    lmc_image_u8_free(&im);

    /* Preprocessing keeps do_convert_rgb honest: a gray image with it off
     * is refused rather than silently widened. */
    lmc_image_config cfg;
    const char *nocvt = "{\"do_convert_rgb\":false}";
    CHECK_EQ_INT(lmc_image_config_parse(nocvt, strlen(nocvt), "p", &cfg), LMC_OK);
    float *chw = NULL;
    size_t c, h, w;
    CHECK_ERR(lmc_image_preprocess_bytes(&cfg, g.p, g.n, "gray.png", &chw, &c, &h, &w),
              LMC_ERR_UNSUPPORTED, "do_convert_rgb is false");
    CHECK(chw == NULL);
    CHECK_EQ_INT(lmc_image_preprocess_bytes(&cfg, f[0].p, f[0].n, "rgb.png", &chw, &c, &h, &w),
                 LMC_OK);
    free(chw);

    /* Broken input. */
    CHECK_ERR(lmc_image_decode_memory(f[0].p, 0, "empty.png", LMC_IMAGE_MAX_PIXELS, true, &im),
              LMC_ERR_FORMAT, "empty.png");
    CHECK_ERR(lmc_image_decode_memory("hello world", 11, "text.png", LMC_IMAGE_MAX_PIXELS, true,
                                      &im),
              LMC_ERR_FORMAT, "text.png");
    CHECK(lmc_image_decode_memory(f[0].p, f[0].n - 30, "cut.png", LMC_IMAGE_MAX_PIXELS, true,
                                  &im) == LMC_ERR_FORMAT);
    CHECK(im.px == NULL);
    bytes bad = make_png(k_rgb, 4, 3, 3, 0);
    bad.p[bad.n - 20] ^= 0xff; /* corrupt the zlib checksum / data */
    lmc_status st = lmc_image_decode_memory(bad.p, bad.n, "bad.png", LMC_IMAGE_MAX_PIXELS, true,
                                            &im);
    CHECK(st == LMC_OK || st == LMC_ERR_FORMAT);
    lmc_image_u8_free(&im);

    /* Absurd dimensions are refused from the header, before allocation. */
    const char *huge_ppm = "P6\n100000 100000\n255\n\x01\x02\x03";
    CHECK_ERR(lmc_image_decode_memory(huge_ppm, strlen(huge_ppm), "huge.ppm",
                                      LMC_IMAGE_MAX_PIXELS, true, &im),
              LMC_ERR_LIMIT, "over the limit");
    bytes hp = make_png(k_rgb, 4, 3, 3, 0);
    hp.p[16 + 1] = 0x7f; /* IHDR width -> huge (crc now wrong too) */
    CHECK(lmc_image_decode_memory(hp.p, hp.n, "huge.png", LMC_IMAGE_MAX_PIXELS, true, &im) !=
          LMC_OK);
    CHECK_ERR(lmc_image_decode_memory(f[3].p, f[3].n, "cap.ppm", 11, true, &im), LMC_ERR_LIMIT,
              "4x3 image is over the limit of 11 pixels");

    /* A PNM cut short is refused (not padded with whatever memory held). */
    CHECK_ERR(lmc_image_decode_memory(f[3].p, f[3].n - 1, "cut.ppm", LMC_IMAGE_MAX_PIXELS, true,
                                      &im),
              LMC_ERR_FORMAT, "truncated PNM");
    const char *pgm16 = "P5 1 1 65535 \x01\x02";
    CHECK_ERR(lmc_image_decode_memory(pgm16, 14, "16.pgm", LMC_IMAGE_MAX_PIXELS, true, &im),
              LMC_ERR_FORMAT, "16-bit PNM");
    const char *pgm = "P5\n# comment\n2 2\n255\n\x01\x02\x03\x04";
    CHECK_EQ_INT(lmc_image_decode_memory(pgm, strlen(pgm), "c.pgm", LMC_IMAGE_MAX_PIXELS, false,
                                         &im),
                 LMC_OK);
    CHECK(im.c == 1 && im.w == 2 && im.h == 2 && im.px && im.px[3] == 4);
    lmc_image_u8_free(&im);

    /* A JPEG Huffman table declaring more than 256 codes is refused (the
     * packaged decoder would write past its table). Also when the segment
     * is cut short: the decoder reads zeros past the end. */
    bytes j = {0};
    const uint8_t soi[] = {0xFF, 0xD8, 0xFF, 0xC4, 0x01, 0x3F, 0x00};
    put(&j, soi, sizeof soi);
    uint8_t counts[16] = {0};
    counts[14] = 255;
    counts[15] = 45; /* 300 codes */
    put(&j, counts, 16);
    for (int i = 0; i < 300; i++) put_le(&j, (uint32_t)i, 1);
    CHECK_ERR(lmc_image_decode_memory(j.p, j.n, "dht.jpg", LMC_IMAGE_MAX_PIXELS, true, &im),
              LMC_ERR_FORMAT, "more than 256 codes");
    CHECK_ERR(lmc_image_decode_memory(j.p, 7 + 16, "dht_cut.jpg", LMC_IMAGE_MAX_PIXELS, true,
                                      &im),
              LMC_ERR_FORMAT, "more than 256 codes");
    free(j.p);

    /* A PNG chunk declaring 2 GB of data is refused without the decoder
     * reserving it (allocations are capped by the image size). */
    bytes big = {0};
    bytes ok = make_png(k_rgb, 4, 3, 3, 0);
    put(&big, ok.p, 33); /* signature + IHDR */
    put_be32(&big, 0x7FFFFF00u);
    put(&big, "IDAT", 4);
    put(&big, "\x78\x01", 2);
    CHECK_ERR(lmc_image_decode_memory(big.p, big.n, "big.png", LMC_IMAGE_MAX_PIXELS, true, &im),
              LMC_ERR_LIMIT, "more memory");
    free(big.p);
    free(ok.p);

    /* Files: FIFO refused without blocking; missing named. */
    const char *d = vt_dir("img_files");
    CHECK(mkfifo(vt_path(d, "fifo.png"), 0644) == 0);
    CHECK_ERR(lmc_image_decode_file(vt_path(d, "fifo.png"), LMC_IMAGE_MAX_PIXELS, true, &im),
              LMC_ERR_IO, "fifo.png");
    CHECK_ERR(lmc_image_decode_file(vt_path(d, "none.png"), LMC_IMAGE_MAX_PIXELS, true, &im),
              LMC_ERR_NOT_FOUND, "none.png");
    vt_write_n(d, "ok.bmp", f[2].p, f[2].n);
    CHECK_EQ_INT(lmc_image_decode_file(vt_path(d, "ok.bmp"), LMC_IMAGE_MAX_PIXELS, true, &im),
                 LMC_OK);
    expect_pixels(&im, k_rgb, 4, 3, 3, "bmp file");
    lmc_image_u8_free(&im);

    for (int i = 0; i < 4; i++) free(f[i].p);
    free(g.p);
    free(a.p);
    free(bad.p);
    free(hp.p);
}

/* ------------------------------------------------------------ resize */

static lmc_image_u8 solid(size_t w, size_t h, uint8_t r, uint8_t g, uint8_t b) {
    lmc_image_u8 im = {malloc(w * h * 3), w, h, 3};
    for (size_t i = 0; i < w * h; i++) {
        im.px[3 * i] = r;
        im.px[3 * i + 1] = g;
        im.px[3 * i + 2] = b;
    }
    return im;
}

static void test_resize_properties(void) {
    /* A constant image stays exactly constant under every filter. */
    lmc_image_u8 s = solid(9, 7, 0, 137, 255), o;
    size_t sizes[][2] = {{3, 2}, {20, 15}, {9, 3}, {1, 1}, {31, 7}};
    for (int f = 0; f <= 5; f++)
        for (size_t k = 0; k < 5; k++) {
            CHECK_EQ_INT(lmc_image_resize(&s, sizes[k][0], sizes[k][1], f, &o), LMC_OK);
            bool ok = o.px != NULL;
            for (size_t i = 0; ok && i < o.w * o.h; i++)
                ok = o.px[3 * i] == 0 && o.px[3 * i + 1] == 137 && o.px[3 * i + 2] == 255;
            CHECK_MSG(ok, "filter %d to %zux%zu is not constant", f, sizes[k][0], sizes[k][1]);
            lmc_image_u8_free(&o);
        }
    lmc_image_u8_free(&s);

    /* Same size: identity. */
    lmc_image_u8 id = {(uint8_t *)k_rgb, 4, 3, 3};
    CHECK_EQ_INT(lmc_image_resize(&id, 4, 3, LMC_RESAMPLE_BICUBIC, &o), LMC_OK);
    expect_pixels(&o, k_rgb, 4, 3, 3, "identity resize");
    lmc_image_u8_free(&o);

    /* A linear ramp: half-pixel-centered interpolation reproduces it. Row of
     * 8 pixels, value 20*i, upscaled 2x: output x samples input coordinate
     * x/2 - 0.25, so interior values are 10*x - 5 (bilinear everywhere
     * inside, bicubic where all four taps are inside). */
    lmc_image_u8 ramp = {malloc(8 * 3), 8, 1, 3};
    for (int i = 0; i < 8; i++) ramp.px[3 * i] = ramp.px[3 * i + 1] = ramp.px[3 * i + 2] =
        (uint8_t)(20 * i);
    CHECK_EQ_INT(lmc_image_resize(&ramp, 16, 1, LMC_RESAMPLE_BILINEAR, &o), LMC_OK);
    for (int x = 1; x < 15; x++)
        CHECK_MSG(o.px[3 * x] == 10 * x - 5, "bilinear x=%d: %d", x, o.px[3 * x]);
    CHECK(o.px[0] == 0 && o.px[3 * 15] == 140); /* edges clamp */
    lmc_image_u8_free(&o);
    CHECK_EQ_INT(lmc_image_resize(&ramp, 16, 1, LMC_RESAMPLE_BICUBIC, &o), LMC_OK);
    for (int x = 3; x <= 12; x++)
        CHECK_MSG(o.px[3 * x] == 10 * x - 5, "bicubic x=%d: %d", x, o.px[3 * x]);
    lmc_image_u8_free(&o);
    lmc_image_u8_free(&ramp);

    /* Downscaling a ramp 2x with a symmetric (antialiased) kernel keeps it
     * linear: out x is centered on input 2x + 0.5, value 2*(2x + 0.5). */
    lmc_image_u8 r32 = {malloc(32 * 3), 32, 1, 3};
    for (int i = 0; i < 32; i++) r32.px[3 * i] = r32.px[3 * i + 1] = r32.px[3 * i + 2] =
        (uint8_t)(2 * i);
    for (int f = 1; f <= 5; f++) {
        CHECK_EQ_INT(lmc_image_resize(&r32, 16, 1, f, &o), LMC_OK);
        for (int x = 3; x <= 12; x++)
            CHECK_MSG(o.px[3 * x] == 4 * x + 1, "filter %d x=%d: %d", f, x, o.px[3 * x]);
        lmc_image_u8_free(&o);
    }
    /* Box 2x down is the mean of pixel pairs, halves rounding up. */
    uint8_t pairs[] = {0, 0, 0, 101, 101, 101, 200, 200, 200, 50, 50, 50};
    lmc_image_u8 pr = {pairs, 4, 1, 3};
    CHECK_EQ_INT(lmc_image_resize(&pr, 2, 1, LMC_RESAMPLE_BOX, &o), LMC_OK);
    CHECK(o.px[0] == 51 && o.px[3] == 125);
    lmc_image_u8_free(&o);
    /* Nearest 2x up duplicates. */
    CHECK_EQ_INT(lmc_image_resize(&pr, 8, 2, LMC_RESAMPLE_NEAREST, &o), LMC_OK);
    for (int x = 0; x < 8; x++)
        CHECK(o.px[3 * x] == pairs[3 * (x / 2)] && o.px[3 * (8 + x)] == pairs[3 * (x / 2)]);
    lmc_image_u8_free(&o);
    lmc_image_u8_free(&r32);

    CHECK_ERR(lmc_image_resize(&pr, 0, 1, 3, &o), LMC_ERR_INVALID_ARG, "size");
    CHECK_ERR(lmc_image_resize(&pr, 2, 1, 9, &o), LMC_ERR_UNSUPPORTED, "filter 9");
}

/* ------------------------------------------------------------ Pillow goldens */

static int hexval(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

static bool unhex(const char *s, size_t n, uint8_t *out) {
    for (size_t i = 0; i < n; i++) {
        int a = hexval(s[2 * i]), b = a < 0 ? -1 : hexval(s[2 * i + 1]);
        if (b < 0) return false;
        out[i] = (uint8_t)(a * 16 + b);
    }
    return true;
}

static void test_pillow_goldens(const char *root) {
    char gdir[512];
    snprintf(gdir, sizeof gdir, "%s/tests/vlm/golden", root);
    char *text = NULL;
    size_t len = 0;
    if (lmc_read_file(vt_path(gdir, "pillow_resize.txt"), "golden", 1 << 22, &text, &len)) {
        CHECK_MSG(0, "missing golden: %s", lmc_last_error());
        return;
    }
    int n_pixels = 0, n_resize = 0;
    lmc_image_u8 src = {0};
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char kind[16], name[64];
        unsigned w, h, f = 0;
        int used = 0;
        if (sscanf(line, "%15s %63s", kind, name) != 2) continue;
        if (!strcmp(kind, "pixels") &&
            sscanf(line, "%*s %*s %u %u %n", &w, &h, &used) == 2) {
            size_t n = (size_t)w * h * 3;
            uint8_t *want = malloc(n);
            CHECK(strlen(line + used) == 2 * n && unhex(line + used, n, want));
            lmc_image_u8 im;
            CHECK_EQ_INT(lmc_image_decode_file(vt_path(gdir, name), LMC_IMAGE_MAX_PIXELS, true,
                                               &im),
                         LMC_OK);
            expect_pixels(&im, want, w, h, 3, name);
            if (!strcmp(name, "rgb_13x9.png")) {
                lmc_image_u8_free(&src);
                src = im;
            } else {
                lmc_image_u8_free(&im);
            }
            free(want);
            n_pixels++;
        } else if (!strcmp(kind, "resize") &&
                   sscanf(line, "%*s %*s %u %u %u %n", &w, &h, &f, &used) == 3 && src.px) {
            size_t n = (size_t)w * h * 3;
            uint8_t *want = malloc(n);
            CHECK(strlen(line + used) == 2 * n && unhex(line + used, n, want));
            lmc_image_u8 o;
            CHECK_EQ_INT(lmc_image_resize(&src, w, h, (int)f, &o), LMC_OK);
            int maxd = 0;
            size_t ndiff = 0;
            for (size_t i = 0; o.px && i < n; i++) {
                int d = abs((int)o.px[i] - (int)want[i]);
                if (d) ndiff++;
                if (d > maxd) maxd = d;
            }
            CHECK_MSG(o.px && maxd == 0, "resize to %ux%u filter %u: %zu values differ, max %d",
                      w, h, f, ndiff, maxd);
            lmc_image_u8_free(&o);
            free(want);
            n_resize++;
        }
    }
    lmc_image_u8_free(&src);
    free(text);
    CHECK_MSG(n_pixels == 3 && n_resize == 36, "golden records: %d pixels, %d resize", n_pixels,
              n_resize);
}

/* Goldens from transformers' image processors (hf_<name>.txt, written by
 * tests/oracle/vlm_goldens.py hf on the GPU machine). Resizing is exact on
 * 8-bit data, so outputs of the Pillow-backed classes agree to float
 * rounding; one 8-bit step (scaled by the std) is allowed for goldens that
 * came from a torchvision path. */
static int test_hf_goldens(const char *root) {
    static const char *const names[] = {"clip", "siglip", "qwen2vl"};
    char gdir[512];
    snprintf(gdir, sizeof gdir, "%s/tests/vlm/golden", root);
    int found = 0;
    for (size_t k = 0; k < 3; k++) {
        char fname[64];
        snprintf(fname, sizeof fname, "hf_%s.txt", names[k]);
        char *text = NULL;
        size_t len = 0;
        if (lmc_read_file(vt_path(gdir, fname), fname, 1 << 24, &text, &len)) continue;
        found++;
        lmc_image_config cfg;
        bool have_cfg = false, pil = false;
        int outputs = 0;
        char *save = NULL;
        for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
            char kind[16], a[64], b[128];
            if (sscanf(line, "%15s %63s %127s", kind, a, b) != 3) continue;
            if (!strcmp(kind, "config")) {
                /* The class that produced the outputs: a Pillow-backed one
                 * ("...Pil") is matched to float rounding. */
                char cls[96] = "";
                sscanf(line, "%*s %*s %*s %95s", cls);
                size_t cl_len = strlen(cls);
                pil = cl_len > 3 && !strcmp(cls + cl_len - 3, "Pil");
                char *cj = NULL;
                size_t cl = 0;
                CHECK_EQ_INT(lmc_read_file(vt_path(gdir, b), b, 1 << 20, &cj, &cl), LMC_OK);
                have_cfg = cj && lmc_image_config_parse(cj, cl, b, &cfg) == LMC_OK;
                CHECK_MSG(have_cfg, "%s: %s", b, lmc_last_error());
                free(cj);
                continue;
            }
            if (strcmp(kind, "output") || !have_cfg) continue;
            unsigned c, h, w;
            int used = 0;
            if (sscanf(line, "%*s %*s %*s %u %u %u %n", &c, &h, &w, &used) != 3) continue;
            lmc_image_u8 im;
            CHECK_EQ_INT(lmc_image_decode_file(vt_path(gdir, b), LMC_IMAGE_MAX_PIXELS, true, &im),
                         LMC_OK);
            float *px = NULL;
            size_t oc = 0, oh = 0, ow = 0;
            CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &im, &px, &oc, &oh, &ow), LMC_OK);
            CHECK_MSG(oc == c && oh == h && ow == w, "%s %s: %zux%zux%zu, want %ux%ux%u", a, b,
                      oc, oh, ow, c, h, w);
            double maxd = 0, tol = 0;
            for (int ch = 0; ch < 3; ch++)
                if (1.0 / 255.0 / cfg.std[ch] > tol) tol = 1.0 / 255.0 / cfg.std[ch];
            if (pil) tol = 1e-6;
            const char *p = line + used;
            size_t n = (size_t)c * h * w, i = 0;
            for (; px && oc == c && oh == h && ow == w && i < n; i++) {
                char *end;
                double v = strtod(p, &end);
                if (end == p) break;
                p = end;
                if (fabs(v - px[i]) > maxd) maxd = fabs(v - px[i]);
            }
            printf("hf %s %s: max |diff| %.3g\n", a, b, maxd);
            CHECK_MSG(px && i == n && maxd <= tol * 1.01, "%s %s: max |diff| %g (allowed %g)", a,
                      b, maxd, tol);
            free(px);
            lmc_image_u8_free(&im);
            outputs++;
        }
        CHECK_MSG(outputs == 3, "%s: %d outputs", fname, outputs);
        free(text);
    }
    return found;
}

/* ------------------------------------------------------------ sizes, crop, normalize */

static lmc_status cfg_of(const char *json, lmc_image_config *cfg) {
    return lmc_image_config_parse(json, strlen(json), "preprocessor_config.json", cfg);
}

static void target_is(const char *json, size_t h, size_t w, size_t want_h, size_t want_w) {
    lmc_image_config cfg;
    size_t oh = 0, ow = 0;
    CHECK_EQ_INT(cfg_of(json, &cfg), LMC_OK);
    CHECK_EQ_INT(lmc_image_resize_target(&cfg, h, w, &oh, &ow), LMC_OK);
    CHECK_MSG(oh == want_h && ow == want_w, "%s on %zux%zu (h x w): got %zux%zu want %zux%zu",
              json, h, w, oh, ow, want_h, want_w);
}

static void test_sizes(void) {
    /* Fixed. */
    target_is("{\"size\":{\"height\":384,\"width\":320}}", 480, 640, 384, 320);
    target_is("{\"size\":224}", 480, 640, 224, 224);
    /* Shortest edge: long side = int(short_target * long / short). */
    const char *se = "{\"size\":{\"shortest_edge\":224}}";
    target_is(se, 480, 640, 224, 298);
    target_is(se, 640, 480, 298, 224);
    target_is(se, 100, 100, 224, 224);
    target_is("{\"size\":224,\"do_center_crop\":true,\"crop_size\":224}", 300, 200, 336, 224);
    /* Qwen2-VL smart resize: multiples of patch*merge (28) with
     * round-half-to-even, then the pixel budget. */
    const char *q = "{\"image_processor_type\":\"Qwen2VLImageProcessor\",\"patch_size\":14,"
                    "\"merge_size\":2,\"min_pixels\":3136,\"max_pixels\":1003520}";
    target_is(q, 480, 640, 476, 644);
    target_is(q, 70, 42 * 4, 56, 168); /* 70/28 = 2.5 rounds to 2 */
    target_is(q, 98, 56, 112, 56);     /* 3.5 rounds to 4 */
    target_is(q, 3000, 4000, 840, 1148);
    target_is(q, 10, 20, 56, 84);
    /* v5-style size keys for the pixel budget. */
    target_is("{\"merge_size\":2,\"patch_size\":14,\"size\":{\"shortest_edge\":3136,"
              "\"longest_edge\":200704}}",
              1000, 1000, 448, 448);
    lmc_image_config cfg;
    size_t oh, ow;
    CHECK_EQ_INT(cfg_of(q, &cfg), LMC_OK);
    CHECK_ERR(lmc_image_resize_target(&cfg, 10, 2500, &oh, &ow), LMC_ERR_UNSUPPORTED,
              "aspect ratio");
    /* do_resize false: the size is kept. */
    target_is("{\"do_resize\":false,\"size\":{\"height\":4,\"width\":4}}", 9, 7, 9, 7);
    target_is("{}", 9, 7, 9, 7);
}

static void test_pipeline(void) {
    /* No resize: exact normalization arithmetic and CHW layout. */
    lmc_image_config cfg;
    const char *js = "{\"do_resize\":false,\"rescale_factor\":0.00392156862745098,"
                     "\"image_mean\":[0.48145466,0.4578275,0.40821073],"
                     "\"image_std\":[0.26862954,0.26130258,0.27577711]}";
    CHECK_EQ_INT(cfg_of(js, &cfg), LMC_OK);
    lmc_image_u8 im = {(uint8_t *)k_rgb, 4, 3, 3};
    float *chw = NULL;
    size_t c, h, w;
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &im, &chw, &c, &h, &w), LMC_OK);
    CHECK(c == 3 && h == 3 && w == 4);
    const double mean[3] = {0.48145466, 0.4578275, 0.40821073};
    const double std[3] = {0.26862954, 0.26130258, 0.27577711};
    bool exact = chw != NULL;
    for (size_t ch = 0; exact && ch < 3; ch++)
        for (size_t y = 0; y < 3; y++)
            for (size_t x = 0; x < 4; x++) {
                float r = (float)(k_rgb[(y * 4 + x) * 3 + ch] * 0.00392156862745098);
                float want = (r - (float)mean[ch]) / (float)std[ch];
                if (chw[ch * 12 + y * 4 + x] != want) exact = false;
            }
    CHECK(exact);
    /* Spot values by hand: 255 in channel 0 -> (1 - 0.48145466) / 0.26862954. */
    if (chw) {
        CHECK(fabs(chw[1] - 1.9303361) < 1e-6);  /* R of (255,255,255) */
        CHECK(fabs(chw[0] + 1.7922626) < 1e-6);  /* R of 0 */
    }
    free(chw);

    /* mean = std = 0.5, factor 1/255: 0 -> -1, 255 -> 1, 51 -> -0.6. */
    CHECK_EQ_INT(cfg_of("{\"image_mean\":0.5,\"image_std\":[0.5,0.5,0.5]}", &cfg), LMC_OK);
    uint8_t px3[9] = {0, 0, 0, 255, 255, 255, 51, 51, 51}; /* three gray pixels */
    lmc_image_u8 tiny = {px3, 3, 1, 3};
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &tiny, &chw, &c, &h, &w), LMC_OK);
    CHECK(chw && chw[0] == -1.0f && chw[1] == 1.0f && fabsf(chw[2] + 0.6f) < 1e-6f);
    CHECK(chw && chw[3 + 0] == -1.0f && chw[3 + 1] == 1.0f && chw[8] == chw[2]); /* G, B planes */
    free(chw);
    /* Flags off: raw values as floats. */
    CHECK_EQ_INT(cfg_of("{\"do_rescale\":false,\"do_normalize\":false}", &cfg), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &tiny, &chw, &c, &h, &w), LMC_OK);
    CHECK(chw && chw[0] == 0.0f && chw[1] == 255.0f && chw[2] == 51.0f && chw[4] == 255.0f);
    free(chw);
    CHECK_EQ_INT(cfg_of("{\"do_rescale\":true,\"rescale_factor\":0.5,\"do_normalize\":false}",
                        &cfg), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &tiny, &chw, &c, &h, &w), LMC_OK);
    CHECK(chw && chw[1] == 127.5f && chw[2] == 25.5f);
    free(chw);

    /* Center crop: (orig - crop) // 2 offsets; beyond the image is zero
     * padding (normalized like a 0 pixel). */
    uint8_t g5[75];
    for (int i = 0; i < 25; i++) g5[3 * i] = g5[3 * i + 1] = g5[3 * i + 2] = (uint8_t)(i + 1);
    lmc_image_u8 im5 = {g5, 5, 5, 3};
    CHECK_EQ_INT(cfg_of("{\"do_center_crop\":true,\"crop_size\":{\"height\":3,\"width\":2},"
                        "\"do_rescale\":false,\"do_normalize\":false}",
                        &cfg), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &im5, &chw, &c, &h, &w), LMC_OK);
    CHECK(h == 3 && w == 2);
    /* top = 1, left = 1: first value is pixel (1,1) = 7. */
    CHECK(chw && chw[0] == 7 && chw[1] == 8 && chw[2] == 12 && chw[5] == 18);
    free(chw);
    CHECK_EQ_INT(cfg_of("{\"do_center_crop\":true,\"crop_size\":7,"
                        "\"do_rescale\":false,\"do_normalize\":false}",
                        &cfg), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &im5, &chw, &c, &h, &w), LMC_OK);
    CHECK(h == 7 && w == 7);
    if (chw) {
        CHECK(chw[0] == 0 && chw[6] == 0 && chw[7 * 6 + 3] == 0); /* border */
        CHECK(chw[7 * 1 + 1] == 1 && chw[7 * 5 + 5] == 25);       /* image at offset 1 */
    }
    free(chw);
    CHECK_EQ_INT(cfg_of("{\"do_center_crop\":true,\"crop_size\":4,"
                        "\"do_rescale\":false,\"do_normalize\":false}",
                        &cfg), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &im5, &chw, &c, &h, &w), LMC_OK);
    CHECK(chw && chw[0] == 1 && chw[15] == 19); /* (5-4)//2 = 0 */
    free(chw);

    /* Resize then crop then normalize, on a constant image: constant out. */
    lmc_image_u8 s = solid(40, 30, 51, 102, 204);
    CHECK_EQ_INT(cfg_of("{\"size\":{\"shortest_edge\":16},\"do_center_crop\":true,"
                        "\"crop_size\":{\"height\":16,\"width\":16},\"resample\":3}",
                        &cfg), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_u8(&cfg, &s, &chw, &c, &h, &w), LMC_OK);
    CHECK(h == 16 && w == 16);
    bool constant = chw != NULL;
    for (size_t i = 0; constant && i < 256; i++)
        constant = fabsf(chw[i] + 0.6f) < 1e-6f && fabsf(chw[256 + i] + 0.2f) < 1e-6f &&
                   fabsf(chw[512 + i] - 0.6f) < 1e-6f;
    CHECK(constant);
    free(chw);
    lmc_image_u8_free(&s);
}

static void test_config_errors(void) {
    lmc_image_config cfg;
    struct {
        const char *json;
        lmc_status st;
        const char *needle;
    } bad[] = {
        {"{\"resample\":9}", LMC_ERR_UNSUPPORTED, "resample 9"},
        {"{\"resample\":\"bicubic\"}", LMC_ERR_FORMAT, "resample must be an integer"},
        {"{\"image_mean\":[0.5,0.5]}", LMC_ERR_FORMAT, "image_mean has 2 values"},
        {"{\"image_std\":[0.5,0,0.5]}", LMC_ERR_FORMAT, "image_std[1] is zero"},
        {"{\"image_std\":\"x\"}", LMC_ERR_FORMAT, "image_std"},
        {"{\"do_resize\":\"yes\"}", LMC_ERR_FORMAT, "do_resize must be true or false"},
        {"{\"do_resize\":true}", LMC_ERR_FORMAT, "size is missing"},
        {"{\"size\":{\"longest_edge\":512}}", LMC_ERR_UNSUPPORTED, "shortest_edge"},
        {"{\"size\":{\"height\":0,\"width\":4}}", LMC_ERR_LIMIT, "size.height"},
        {"{\"size\":{\"height\":10000000,\"width\":4}}", LMC_ERR_LIMIT, "size.height"},
        {"{\"size\":\"big\"}", LMC_ERR_FORMAT, "size must be"},
        {"{\"do_center_crop\":true}", LMC_ERR_FORMAT, "crop_size is missing"},
        {"{\"do_center_crop\":true,\"crop_size\":{\"height\":3}}", LMC_ERR_FORMAT, "crop_size"},
        {"{\"merge_size\":2,\"min_pixels\":100,\"max_pixels\":50}", LMC_ERR_FORMAT,
         "min_pixels"},
        {"{\"image_processor\":3}", LMC_ERR_FORMAT, "image_processor must be an object"},
        {"[1,2]", LMC_ERR_FORMAT, "not a JSON object"},
        {"{\"size\":", LMC_ERR_FORMAT, "invalid JSON"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_ERR(cfg_of(bad[i].json, &cfg), bad[i].st, bad[i].needle);
    /* A combined processor config nests the image keys. */
    CHECK_EQ_INT(cfg_of("{\"processor_class\":\"X\",\"image_processor\":{\"size\":"
                        "{\"height\":5,\"width\":6},\"resample\":2}}",
                        &cfg), LMC_OK);
    CHECK(cfg.do_resize && cfg.height == 5 && cfg.width == 6 && cfg.resample == 2);
    /* A resize target over the pixel cap is refused before allocating. */
    CHECK_EQ_INT(cfg_of("{\"size\":{\"height\":1000000,\"width\":1000000}}", &cfg), LMC_OK);
    size_t oh, ow;
    CHECK_ERR(lmc_image_resize_target(&cfg, 4, 4, &oh, &ow), LMC_ERR_LIMIT, "over the limit");
}

/* ------------------------------------------------------------ public API */

static void test_public_api(void) {
    const char *d = vt_dir("img_api");
    lmc_image_processor *p = NULL;
    CHECK_ERR(lmc_image_processor_load(d, &p), LMC_ERR_NOT_FOUND, "preprocessor_config.json");
    /* processor_config.json alone (combined, nested keys). */
    vt_write(d, "processor_config.json",
             "{\"processor_class\":\"P\",\"image_processor\":{\"size\":{\"height\":2,\"width\":"
             "2},\"do_normalize\":false,\"do_rescale\":false,\"resample\":4}}");
    CHECK_EQ_INT(lmc_image_processor_load(d, &p), LMC_OK);
    bytes ppm = make_ppm(k_rgb, 4, 3);
    vt_write_n(d, "in.ppm", ppm.p, ppm.n);
    float *px = NULL;
    size_t c = 0, h = 0, w = 0;
    CHECK_EQ_INT(lmc_image_preprocess_file(p, vt_path(d, "in.ppm"), &px, &c, &h, &w), LMC_OK);
    CHECK(c == 3 && h == 2 && w == 2);
    lmc_free(px);
    lmc_image_processor_free(p);
    /* preprocessor_config.json is preferred. */
    vt_write(d, "preprocessor_config.json",
             "{\"size\":{\"height\":5,\"width\":3},\"do_normalize\":false}");
    CHECK_EQ_INT(lmc_image_processor_load(d, &p), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_memory(p, ppm.p, ppm.n, &px, &c, &h, &w), LMC_OK);
    CHECK(c == 3 && h == 5 && w == 3);
    lmc_free(px);
    CHECK_ERR(lmc_image_preprocess_memory(p, "xx", 2, &px, &c, &h, &w), LMC_ERR_FORMAT, "image");
    CHECK(px == NULL);
    CHECK(mkfifo(vt_path(d, "fifo.jpg"), 0644) == 0);
    CHECK_ERR(lmc_image_preprocess_file(p, vt_path(d, "fifo.jpg"), &px, &c, &h, &w), LMC_ERR_IO,
              "fifo.jpg");
    lmc_image_processor_free(p);
    vt_write(d, "preprocessor_config.json", "{\"resample\":77}");
    CHECK_ERR(lmc_image_processor_load(d, &p), LMC_ERR_UNSUPPORTED, "preprocessor_config.json");
    CHECK(p == NULL);
    const char *js = "{\"size\":{\"height\":1,\"width\":1}}";
    CHECK_EQ_INT(lmc_image_processor_parse(js, strlen(js), &p), LMC_OK);
    CHECK_EQ_INT(lmc_image_preprocess_memory(p, ppm.p, ppm.n, &px, &c, &h, &w), LMC_OK);
    CHECK(h == 1 && w == 1);
    lmc_free(px);
    lmc_image_processor_free(p);
    free(ppm.p);
}

int main(void) {
    alarm(60);
    const char *root = getenv("LMC_SOURCE_DIR");
    test_decode_handmade();
    test_resize_properties();
    test_pillow_goldens(root && *root ? root : ".");
    if (!test_hf_goldens(root && *root ? root : "."))
        printf("note: no transformers goldens yet (tests/oracle/vlm_goldens.py hf)\n");
    test_sizes();
    test_pipeline();
    test_config_errors();
    test_public_api();
    return check_summary("test_vlm_image");
}
