/* Image decoding through stb_image: pre-checks for the packaged decoder's
 * known faults, size caps, then the decode itself (stb_image_impl.c). */
#include "base/error.h"
#include "base/file.h"
#include "vlm/image.h"
#include "vlm/stb_image_impl.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>

void lmc_image_u8_free(lmc_image_u8 *im) {
    if (!im) return;
    free(im->px);
    memset(im, 0, sizeof *im);
}

/* The packaged stb_image (2.27) builds a Huffman table from a
 * define-Huffman-table (DHT) segment without checking that its 16 code
 * counts add up to at most 256, and then writes past the table. Refuse such
 * a JPEG before the decoder sees it. The walk over-approximates where the
 * decoder can meet a DHT marker: length-bearing segments are skipped by
 * their length exactly as the decoder does, everything else (entropy-coded
 * data, garbage between segments) is scanned byte by byte for markers. */
static bool jpeg_huffman_tables_ok(const uint8_t *p, size_t n) {
    size_t i = 0;
    while (i < n && p[i] == 0xFF) i++;
    if (i == 0 || i >= n || p[i] != 0xD8) return true; /* not a JPEG */
    i++;
    while (i < n) {
        if (p[i] != 0xFF) {
            i++;
            continue;
        }
        size_t j = i + 1;
        while (j < n && p[j] == 0xFF) j++; /* fill bytes */
        if (j >= n) break;
        uint8_t m = p[j];
        /* Byte stuffing, restart markers, SOI/EOI, TEM: no length. */
        if (m == 0x00 || m == 0x01 || (m >= 0xD0 && m <= 0xD9)) {
            i = j + 1;
            continue;
        }
        if (j + 2 >= n) break;
        size_t len = ((size_t)p[j + 1] << 8) | p[j + 2];
        if (m == 0xC4) {
            /* One segment holds tables back to back, as the decoder reads them. */
            size_t q = j + 3;
            long rem = (long)len - 2;
            while (rem > 0 && q < n) {
                /* Past the end the decoder reads zeros. */
                size_t codes = 0;
                for (size_t k = 1; k <= 16 && q + k < n; k++) codes += p[q + k];
                if (codes > 256) return false;
                q += 17 + codes;
                rem -= (long)(17 + codes);
            }
        }
        i = j + 1 + (len >= 2 ? len : 2);
    }
    return true;
}

/* The packaged decoder does not notice a PNM whose pixel block is cut
 * short, and converts 16-bit PNM channels with the 8-bit routine (reading
 * past its buffer). Parse the header as it does (whitespace, '#' comments,
 * width, height, maxval, one separator byte): 16-bit files are refused and
 * the whole pixel block is required (check_data). Numbers are bounded
 * before the decoder parses them into an int. Returns NULL or the problem. */
static const char *pnm_problem(const uint8_t *p, size_t n, bool check_data) {
    if (n < 2 || p[0] != 'P' || (p[1] != '5' && p[1] != '6')) return NULL;
    uint64_t comp = p[1] == '6' ? 3 : 1, v[3] = {0, 0, 0};
    size_t i = 2;
#define PNM_GET() (i < n ? p[i++] : 0)
    int c = PNM_GET();
    for (int k = 0; k < 3; k++) {
        for (;;) {
            while (i < n && (c == ' ' || (c >= '\t' && c <= '\r'))) c = PNM_GET();
            if (i >= n || c != '#') break;
            while (i < n && c != '\n' && c != '\r') c = PNM_GET();
        }
        while (i < n && c >= '0' && c <= '9') {
            if (v[k] < ((uint64_t)1 << 40)) v[k] = v[k] * 10 + (uint64_t)(c - '0');
            c = PNM_GET();
        }
    }
#undef PNM_GET
    if (v[2] > 255) return "16-bit PNM images are not supported";
    if (v[0] > ((uint64_t)1 << 24) || v[1] > ((uint64_t)1 << 24)) return "PNM size is absurd";
    if (v[0] == 0 || v[1] == 0) return NULL; /* the decoder refuses these itself */
    uint64_t need = v[0] * v[1] * comp;
    if (check_data && (i > n || (uint64_t)(n - i) < need))
        return "truncated PNM image (pixel data is cut short)";
    return NULL;
}

/* The packaged decoder fills its BMP palette only with the entries the
 * file carries and then indexes it with any pixel value, reading
 * uninitialized memory when the palette is short. Refuse palettized BMPs
 * whose palette cannot cover every index. Returns NULL or the problem. */
static const char *bmp_problem(const uint8_t *p, size_t n) {
    if (n < 30 || p[0] != 'B' || p[1] != 'M') return NULL;
#define LE32(o) ((uint32_t)p[o] | (uint32_t)p[(o) + 1] << 8 | (uint32_t)p[(o) + 2] << 16 | \
                 (uint32_t)p[(o) + 3] << 24)
    uint32_t off = LE32(10), hsz = LE32(14);
#undef LE32
    uint32_t bpp, entry;
    if (hsz == 12) {
        bpp = (uint32_t)p[24] | (uint32_t)p[25] << 8;
        entry = 3;
    } else {
        bpp = (uint32_t)p[28] | (uint32_t)p[29] << 8;
        entry = 4;
    }
    if (bpp > 8) return NULL;
    uint64_t room = (uint64_t)off > 14u + (uint64_t)hsz ? (uint64_t)off - 14u - hsz : 0;
    if (room / entry < ((uint64_t)1 << bpp))
        return "palettized BMP whose palette does not cover every pixel value";
    return NULL;
}

lmc_status lmc_image_decode_memory(const void *bytes, size_t len, const char *what,
                                   size_t max_pixels, bool want_rgb, lmc_image_u8 *out) {
    memset(out, 0, sizeof *out);
    if (!what) what = "image";
    if (!bytes || len == 0) return lmc_err(LMC_ERR_FORMAT, "%s: empty image data", what);
    if (len > INT_MAX)
        return lmc_err(LMC_ERR_LIMIT, "%s: %zu bytes is over the decoder's limit of %d bytes",
                       what, len, INT_MAX);
    if (!jpeg_huffman_tables_ok(bytes, len))
        return lmc_err(LMC_ERR_FORMAT,
                       "%s: corrupt JPEG (a Huffman table declares more than 256 codes)", what);
    const char *pnm = pnm_problem(bytes, len, false);
    if (pnm) return lmc_err(LMC_ERR_FORMAT, "%s: %s", what, pnm);
    const char *bmp = bmp_problem(bytes, len);
    if (bmp) return lmc_err(LMC_ERR_FORMAT, "%s: %s", what, bmp);
    /* Largest legitimate buffer: a 16-bit RGBA image's inflated rows (8
     * bytes a pixel plus a filter byte a row), or the concatenated
     * compressed chunks (at most the input, doubled). */
    size_t slack = len * 2 + ((size_t)1 << 20);
    size_t cap_px = max_pixels > (SIZE_MAX - slack) / 9 ? (SIZE_MAX - slack) / 9 : max_pixels;
    lmc_stbi_set_alloc_cap(cap_px * 9 + slack);
    int w = 0, h = 0, comp = 0;
    /* Header first: the size check must come before the decoder allocates. */
    if (!lmc_stbi_info(bytes, (int)len, &w, &h, &comp))
        return lmc_err(LMC_ERR_FORMAT, "%s: not a decodable image (%s)", what,
                       lmc_stbi_failure_reason() ? lmc_stbi_failure_reason() : "unknown format");
    if (w <= 0 || h <= 0)
        return lmc_err(LMC_ERR_FORMAT, "%s: image has zero size (%dx%d)", what, w, h);
    if ((size_t)w > max_pixels / (size_t)h)
        return lmc_err(LMC_ERR_LIMIT, "%s: %dx%d image is over the limit of %zu pixels", what, w,
                       h, max_pixels);
    if (comp < 1 || comp > 4)
        return lmc_err(LMC_ERR_FORMAT, "%s: unsupported channel count %d", what, comp);
    pnm = pnm_problem(bytes, len, true);
    if (pnm) return lmc_err(LMC_ERR_FORMAT, "%s: %s", what, pnm);
    int req = want_rgb ? 3 : 0, got = 0, w2 = 0, h2 = 0;
    unsigned char *px = lmc_stbi_load(bytes, (int)len, &w2, &h2, &got, req);
    if (!px) {
        const char *why = lmc_stbi_failure_reason();
        if (why && !strcmp(why, "outofmem"))
            return lmc_err(LMC_ERR_LIMIT,
                           "%s: decoding needs more memory than a %dx%d image may use (corrupt "
                           "sizes?)",
                           what, w, h);
        return lmc_err(LMC_ERR_FORMAT, "%s: cannot decode image (%s)", what,
                       why ? why : "corrupt data");
    }
    /* The full decode may see a different header than the probe (e.g. a
     * later frame); never trust more than was checked. */
    if (w2 <= 0 || h2 <= 0 || (size_t)w2 > max_pixels / (size_t)h2) {
        lmc_stbi_free(px);
        return lmc_err(LMC_ERR_LIMIT, "%s: %dx%d image is over the limit of %zu pixels", what,
                       w2, h2, max_pixels);
    }
    size_t c = want_rgb ? 3 : (size_t)got;
    size_t n = (size_t)w2 * (size_t)h2 * c;
    /* Copy into a malloc'd buffer so callers free with free(), whatever
     * allocator the decoder was built with. */
    out->px = malloc(n);
    if (!out->px) {
        lmc_stbi_free(px);
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory for a %dx%d image", what, w2, h2);
    }
    memcpy(out->px, px, n);
    lmc_stbi_free(px);
    out->w = (size_t)w2;
    out->h = (size_t)h2;
    out->c = c;
    return LMC_OK;
}

lmc_status lmc_image_decode_file(const char *path, size_t max_pixels, bool want_rgb,
                                 lmc_image_u8 *out) {
    memset(out, 0, sizeof *out);
    if (!path || !*path) return lmc_err(LMC_ERR_INVALID_ARG, "image: no path given");
    char *data = NULL;
    size_t len = 0;
    lmc_status st = lmc_read_file(path, path, LMC_IMAGE_MAX_FILE_BYTES, &data, &len);
    if (st) return st;
    st = lmc_image_decode_memory(data, len, path, max_pixels, want_rgb, out);
    free(data);
    return st;
}
