/* The stb_image implementation (the one translation unit holding it, kept
 * private: every function is static here and reached through the small
 * wrappers below). Sanitized builds leave out a few UBSan arithmetic checks
 * here only (see CMakeLists.txt): on corrupt input the decoder computes
 * `NULL + 0`, memcpy(NULL, p, 0), over-wide shifts and overflowing
 * products, none of which touches memory; AddressSanitizer stays on. */
#include "vlm/stb_image_impl.h"
#include <stdlib.h>
#include <string.h>

/* Every decoder allocation goes through a per-call cap: the decoder
 * otherwise trusts declared sizes (a PNG chunk length, a deflate stream
 * that expands without bound) and asks for gigabytes on a few bytes of
 * input. The cap is set from the pixel limit and the input size. */
static _Thread_local size_t g_alloc_cap;
/* Zeroed, so a decoder that leaves part of a buffer unwritten can never
 * hand out old heap contents as pixels. */
static void *capped_malloc(size_t n) { return n > g_alloc_cap ? NULL : calloc(1, n ? n : 1); }
static void *capped_realloc(void *p, size_t n) { return n > g_alloc_cap ? NULL : realloc(p, n); }
#define STBI_MALLOC(sz) capped_malloc(sz)
#define STBI_REALLOC(p, sz) capped_realloc((p), (sz))
#define STBI_FREE(p) free(p)

#define STB_IMAGE_STATIC
#define STB_IMAGE_IMPLEMENTATION
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
/* Only the formats image processors meet in practice: fewer decoders, less
 * to trust (TGA in particular accepts almost any bytes as a header). */
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_ONLY_BMP
#define STBI_ONLY_GIF
#define STBI_ONLY_PNM
#define STBI_MAX_DIMENSIONS (1 << 20)
/* Unused-static warnings are reported at the end of the file, so that one
 * stays off for the whole (small) file. */
#pragma GCC diagnostic ignored "-Wunused-function"
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#elif defined(__clang__)
#pragma clang diagnostic push
#pragma clang diagnostic ignored "-Wsign-compare"
#pragma clang diagnostic ignored "-Wimplicit-fallthrough"
#endif
#include <stb/stb_image.h>
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#elif defined(__clang__)
#pragma clang diagnostic pop
#endif

void lmc_stbi_set_alloc_cap(size_t cap) { g_alloc_cap = cap; }

int lmc_stbi_info(const unsigned char *p, int len, int *w, int *h, int *comp) {
    return stbi_info_from_memory(p, len, w, h, comp);
}

unsigned char *lmc_stbi_load(const unsigned char *p, int len, int *w, int *h, int *comp,
                             int req) {
    return stbi_load_from_memory(p, len, w, h, comp, req);
}

void lmc_stbi_free(void *px) { stbi_image_free(px); }

const char *lmc_stbi_failure_reason(void) { return stbi_failure_reason(); }
