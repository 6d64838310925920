/* Image decoding and the Hugging Face image-processor pipeline used by the
 * common CLIP / SigLIP / Qwen2-VL style processors:
 *   decode -> RGB -> resize -> center crop -> rescale -> normalize -> CHW.
 * Resizing follows Pillow's convolution resampler on 8-bit data (the
 * reference both the PIL-based and the torchvision uint8 paths reproduce). */
#ifndef LMC_VLM_IMAGE_H
#define LMC_VLM_IMAGE_H
#include "lmc.h"
#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default caps: decoded and resized images above this many pixels are
 * refused before any pixel buffer is allocated; files above this many bytes
 * are refused before they are read. */
#define LMC_IMAGE_MAX_PIXELS ((size_t)1 << 26)
#define LMC_IMAGE_MAX_FILE_BYTES ((size_t)256 << 20)

/* Pillow resample ids, as "resample" stores them in processor configs. */
enum {
    LMC_RESAMPLE_NEAREST = 0,
    LMC_RESAMPLE_LANCZOS = 1,
    LMC_RESAMPLE_BILINEAR = 2,
    LMC_RESAMPLE_BICUBIC = 3,
    LMC_RESAMPLE_BOX = 4,
    LMC_RESAMPLE_HAMMING = 5,
};

typedef enum {
    LMC_RESIZE_FIXED,         /* size {"height","width"} (or an int: square) */
    LMC_RESIZE_SHORTEST_EDGE, /* size {"shortest_edge"}: keep aspect ratio */
    LMC_RESIZE_SMART,         /* Qwen2-VL: multiple of patch*merge, pixel budget */
} lmc_resize_mode;

/* The preprocessing parameters of one image processor (see
 * lmc_image_config_parse for the keys and defaults). */
typedef struct {
    bool do_convert_rgb, do_resize, do_center_crop, do_rescale, do_normalize;
    lmc_resize_mode mode;
    int64_t height, width;          /* LMC_RESIZE_FIXED */
    int64_t shortest_edge;          /* LMC_RESIZE_SHORTEST_EDGE */
    int64_t min_pixels, max_pixels; /* LMC_RESIZE_SMART */
    int64_t factor;                 /* LMC_RESIZE_SMART: patch_size * merge_size */
    int resample;                   /* LMC_RESAMPLE_* */
    int64_t crop_height, crop_width;
    double rescale_factor;
    double mean[3], std[3];
    size_t max_pixels_cap;          /* refusal cap (LMC_IMAGE_MAX_PIXELS) */
} lmc_image_config;

/* An 8-bit interleaved image (h * w * c bytes). */
typedef struct {
    uint8_t *px;
    size_t w, h, c;
} lmc_image_u8;

void lmc_image_u8_free(lmc_image_u8 *im);

/* Defaults of a processor config with no keys: resize off until a size is
 * given, bicubic, rescale 1/255, normalize with mean = std = 0.5, RGB. */
void lmc_image_config_default(lmc_image_config *cfg);

/* Read the processor keys from a parsed processor config (`what` names the
 * file in errors). A combined processor_config.json that nests the image
 * keys under "image_processor" is read from there. */
lmc_status lmc_image_config_from_json(json_object *o, const char *what, lmc_image_config *cfg);
lmc_status lmc_image_config_parse(const char *text, size_t len, const char *what,
                                  lmc_image_config *cfg);

/* Decode PNG / JPEG / BMP / GIF (first frame) / PNM (PPM, PGM) bytes.
 * Dimensions are checked against max_pixels before the pixel buffer is
 * allocated. want_rgb: 3 channels out (gray replicated, alpha dropped, as
 * Pillow's convert("RGB")); otherwise the file's own channel count. */
lmc_status lmc_image_decode_memory(const void *bytes, size_t len, const char *what,
                                   size_t max_pixels, bool want_rgb, lmc_image_u8 *out);
/* Bounded, FIFO-safe read of `path`, then lmc_image_decode_memory. */
lmc_status lmc_image_decode_file(const char *path, size_t max_pixels, bool want_rgb,
                                 lmc_image_u8 *out);

/* Output size the processor's resize step picks for an h x w input. */
lmc_status lmc_image_resize_target(const lmc_image_config *cfg, size_t h, size_t w,
                                   size_t *out_h, size_t *out_w);

/* Pillow-equivalent resample of an 8-bit image to out_w x out_h. */
lmc_status lmc_image_resize(const lmc_image_u8 *in, size_t out_w, size_t out_h, int resample,
                            lmc_image_u8 *out);

/* Run the pipeline on a decoded image; *chw (c*h*w floats, caller frees
 * with free) is channel-major float32. */
lmc_status lmc_image_preprocess_u8(const lmc_image_config *cfg, const lmc_image_u8 *im,
                                   float **chw, size_t *c, size_t *h, size_t *w);
/* Decode bytes, then preprocess. */
lmc_status lmc_image_preprocess_bytes(const lmc_image_config *cfg, const void *bytes, size_t len,
                                      const char *what, float **chw, size_t *c, size_t *h,
                                      size_t *w);

#endif
