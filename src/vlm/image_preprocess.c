/* Processor-config parsing and the resize / crop / rescale / normalize
 * pipeline. */
#include "base/error.h"
#include "base/json.h"
#include "vlm/image.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* A single size value above this is refused as absurd (and keeps every
 * product below in range). */
#define MAX_SIDE ((int64_t)1 << 20)

void lmc_image_config_default(lmc_image_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->do_convert_rgb = true;
    cfg->do_rescale = true;
    cfg->do_normalize = true;
    cfg->mode = LMC_RESIZE_FIXED;
    cfg->resample = LMC_RESAMPLE_BICUBIC;
    cfg->rescale_factor = 1.0 / 255.0;
    for (int i = 0; i < 3; i++) cfg->mean[i] = cfg->std[i] = 0.5;
    cfg->max_pixels_cap = LMC_IMAGE_MAX_PIXELS;
}

/* ------------------------------------------------------------ config keys */

static lmc_status get_bool(json_object *o, const char *what, const char *key, bool *out,
                           bool *present) {
    bool bad = false, v;
    if (lmc_json_bool(o, key, &v, &bad)) {
        *out = v;
        if (present) *present = true;
    } else if (bad) {
        return lmc_err(LMC_ERR_FORMAT, "%s: %s must be true or false", what, key);
    }
    return LMC_OK;
}

static lmc_status get_side(json_object *o, const char *what, const char *prefix, const char *key,
                           int64_t *out, bool *present) {
    json_object *v = lmc_json_get(o, key);
    if (!v) return LMC_OK;
    if (!json_object_is_type(v, json_type_int))
        return lmc_err(LMC_ERR_FORMAT, "%s: %s%s must be an integer", what, prefix, key);
    int64_t x = json_object_get_int64(v);
    if (x <= 0 || x > MAX_SIDE * MAX_SIDE)
        return lmc_err(LMC_ERR_LIMIT, "%s: %s%s = %lld is out of range (1..%lld)", what, prefix,
                       key, (long long)x, (long long)(MAX_SIDE * MAX_SIDE));
    *out = x;
    if (present) *present = true;
    return LMC_OK;
}

static lmc_status check_side(const char *what, const char *key, int64_t v) {
    if (v > MAX_SIDE)
        return lmc_err(LMC_ERR_LIMIT, "%s: %s = %lld is over the limit of %lld", what, key,
                       (long long)v, (long long)MAX_SIDE);
    return LMC_OK;
}

/* image_mean / image_std: three numbers, or one number for all channels. */
static lmc_status get_triple(json_object *o, const char *what, const char *key, double out[3]) {
    json_object *v = lmc_json_get(o, key);
    if (!v) return LMC_OK;
    if (json_object_is_type(v, json_type_int) || json_object_is_type(v, json_type_double)) {
        out[0] = out[1] = out[2] = json_object_get_double(v);
    } else if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        if (n != 3)
            return lmc_err(LMC_ERR_FORMAT, "%s: %s has %zu values, expected 3 (R, G, B)", what,
                           key, n);
        for (size_t i = 0; i < 3; i++) {
            json_object *e = json_object_array_get_idx(v, i);
            if (!e || !(json_object_is_type(e, json_type_int) ||
                        json_object_is_type(e, json_type_double)))
                return lmc_err(LMC_ERR_FORMAT, "%s: %s[%zu] must be a number", what, key, i);
            out[i] = json_object_get_double(e);
        }
    } else {
        return lmc_err(LMC_ERR_FORMAT, "%s: %s must be a list of 3 numbers", what, key);
    }
    for (int i = 0; i < 3; i++)
        if (!isfinite(out[i]))
            return lmc_err(LMC_ERR_FORMAT, "%s: %s[%d] is not finite", what, key, i);
    return LMC_OK;
}

/* Qwen2-VL's processor (and its derivatives) resize to a pixel budget. */
static bool is_smart_resize(json_object *o) {
    bool bad = false;
    const char *t = lmc_json_str(o, "image_processor_type", &bad);
    if (t && strstr(t, "Qwen2VL")) return true;
    return lmc_json_get(o, "merge_size") || lmc_json_get(o, "min_pixels") ||
           lmc_json_get(o, "max_pixels");
}

lmc_status lmc_image_config_from_json(json_object *o, const char *what, lmc_image_config *cfg) {
    lmc_image_config_default(cfg);
    if (!what) what = "processor config";
    if (!o || !json_object_is_type(o, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: not a JSON object", what);
    json_object *nested = lmc_json_get(o, "image_processor");
    if (nested) {
        if (!json_object_is_type(nested, json_type_object))
            return lmc_err(LMC_ERR_FORMAT, "%s: image_processor must be an object", what);
        o = nested;
    }
    lmc_status st;
    bool resize_given = false;
    if ((st = get_bool(o, what, "do_convert_rgb", &cfg->do_convert_rgb, NULL)) ||
        (st = get_bool(o, what, "do_resize", &cfg->do_resize, &resize_given)) ||
        (st = get_bool(o, what, "do_center_crop", &cfg->do_center_crop, NULL)) ||
        (st = get_bool(o, what, "do_rescale", &cfg->do_rescale, NULL)) ||
        (st = get_bool(o, what, "do_normalize", &cfg->do_normalize, NULL)))
        return st;

    bool bad = false;
    int64_t resample = cfg->resample;
    if (lmc_json_int(o, "resample", &resample, &bad)) {
        if (resample < 0 || resample > 5)
            return lmc_err(LMC_ERR_UNSUPPORTED, "%s: resample %lld is not a known filter (0-5)",
                           what, (long long)resample);
        cfg->resample = (int)resample;
    } else if (bad) {
        return lmc_err(LMC_ERR_FORMAT, "%s: resample must be an integer", what);
    }

    if (lmc_json_double(o, "rescale_factor", &cfg->rescale_factor, &bad)) {
        if (!isfinite(cfg->rescale_factor))
            return lmc_err(LMC_ERR_FORMAT, "%s: rescale_factor is not finite", what);
    } else if (bad) {
        return lmc_err(LMC_ERR_FORMAT, "%s: rescale_factor must be a number", what);
    }
    if ((st = get_triple(o, what, "image_mean", cfg->mean)) ||
        (st = get_triple(o, what, "image_std", cfg->std)))
        return st;
    if (cfg->do_normalize)
        for (int i = 0; i < 3; i++)
            if (cfg->std[i] == 0.0)
                return lmc_err(LMC_ERR_FORMAT, "%s: image_std[%d] is zero", what, i);

    /* The resize target. */
    json_object *size = lmc_json_get(o, "size");
    bool have_size = false;
    if (is_smart_resize(o)) {
        cfg->mode = LMC_RESIZE_SMART;
        int64_t patch = 14, merge = 2;
        cfg->min_pixels = 56 * 56;
        cfg->max_pixels = 28 * 28 * 1280;
        if (size) {
            if (!json_object_is_type(size, json_type_object))
                return lmc_err(LMC_ERR_FORMAT, "%s: size must be an object", what);
            if ((st = get_side(size, what, "size.", "shortest_edge", &cfg->min_pixels, NULL)) ||
                (st = get_side(size, what, "size.", "longest_edge", &cfg->max_pixels, NULL)) ||
                (st = get_side(size, what, "size.", "min_pixels", &cfg->min_pixels, NULL)) ||
                (st = get_side(size, what, "size.", "max_pixels", &cfg->max_pixels, NULL)))
                return st;
        }
        /* Top-level min_pixels / max_pixels win over size, as in the
         * reference processor. */
        if ((st = get_side(o, what, "", "min_pixels", &cfg->min_pixels, NULL)) ||
            (st = get_side(o, what, "", "max_pixels", &cfg->max_pixels, NULL)) ||
            (st = get_side(o, what, "", "patch_size", &patch, NULL)) ||
            (st = get_side(o, what, "", "merge_size", &merge, NULL)))
            return st;
        if ((st = check_side(what, "patch_size", patch)) ||
            (st = check_side(what, "merge_size", merge)))
            return st;
        cfg->factor = patch * merge;
        if (cfg->factor > MAX_SIDE)
            return lmc_err(LMC_ERR_LIMIT, "%s: patch_size * merge_size = %lld is too large", what,
                           (long long)cfg->factor);
        if (cfg->min_pixels > cfg->max_pixels)
            return lmc_err(LMC_ERR_FORMAT, "%s: min_pixels %lld is above max_pixels %lld", what,
                           (long long)cfg->min_pixels, (long long)cfg->max_pixels);
        have_size = true;
    } else if (size && json_object_is_type(size, json_type_int)) {
        int64_t s = json_object_get_int64(size);
        if (s <= 0 || s > MAX_SIDE)
            return lmc_err(LMC_ERR_LIMIT, "%s: size %lld is out of range (1..%lld)", what,
                           (long long)s, (long long)MAX_SIDE);
        /* A bare integer means the shortest edge when a crop follows
         * (CLIP-style), a square otherwise. */
        if (lmc_json_get(o, "crop_size") && cfg->do_center_crop) {
            cfg->mode = LMC_RESIZE_SHORTEST_EDGE;
            cfg->shortest_edge = s;
        } else {
            cfg->mode = LMC_RESIZE_FIXED;
            cfg->height = cfg->width = s;
        }
        have_size = true;
    } else if (size) {
        if (!json_object_is_type(size, json_type_object))
            return lmc_err(LMC_ERR_FORMAT, "%s: size must be an object or an integer", what);
        bool hh = false, hw = false, hs = false;
        if ((st = get_side(size, what, "size.", "height", &cfg->height, &hh)) ||
            (st = get_side(size, what, "size.", "width", &cfg->width, &hw)) ||
            (st = get_side(size, what, "size.", "shortest_edge", &cfg->shortest_edge, &hs)))
            return st;
        if (hh && hw) {
            cfg->mode = LMC_RESIZE_FIXED;
            if ((st = check_side(what, "size.height", cfg->height)) ||
                (st = check_side(what, "size.width", cfg->width)))
                return st;
        } else if (hs && !hh && !hw) {
            cfg->mode = LMC_RESIZE_SHORTEST_EDGE;
            if ((st = check_side(what, "size.shortest_edge", cfg->shortest_edge))) return st;
            if (lmc_json_get(size, "longest_edge"))
                return lmc_err(LMC_ERR_UNSUPPORTED,
                               "%s: size with both shortest_edge and longest_edge is not "
                               "supported for this processor",
                               what);
        } else {
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "%s: size must give height and width, or shortest_edge", what);
        }
        have_size = true;
    }
    if (!resize_given) cfg->do_resize = have_size;
    if (cfg->do_resize && !have_size)
        return lmc_err(LMC_ERR_FORMAT, "%s: do_resize is true but size is missing", what);

    json_object *crop = lmc_json_get(o, "crop_size");
    if (cfg->do_center_crop) {
        if (!crop)
            return lmc_err(LMC_ERR_FORMAT, "%s: do_center_crop is true but crop_size is missing",
                           what);
        if (json_object_is_type(crop, json_type_int)) {
            int64_t s = json_object_get_int64(crop);
            if (s <= 0 || s > MAX_SIDE)
                return lmc_err(LMC_ERR_LIMIT, "%s: crop_size %lld is out of range (1..%lld)", what,
                               (long long)s, (long long)MAX_SIDE);
            cfg->crop_height = cfg->crop_width = s;
        } else if (json_object_is_type(crop, json_type_object)) {
            bool hh = false, hw = false;
            if ((st = get_side(crop, what, "crop_size.", "height", &cfg->crop_height, &hh)) ||
                (st = get_side(crop, what, "crop_size.", "width", &cfg->crop_width, &hw)))
                return st;
            if (!hh || !hw)
                return lmc_err(LMC_ERR_FORMAT, "%s: crop_size must give height and width", what);
            if ((st = check_side(what, "crop_size.height", cfg->crop_height)) ||
                (st = check_side(what, "crop_size.width", cfg->crop_width)))
                return st;
        } else {
            return lmc_err(LMC_ERR_FORMAT, "%s: crop_size must be an object or an integer", what);
        }
    }
    return LMC_OK;
}

lmc_status lmc_image_config_parse(const char *text, size_t len, const char *what,
                                  lmc_image_config *cfg) {
    lmc_image_config_default(cfg);
    json_object *o = NULL;
    lmc_status st = lmc_json_parse(text, len, what ? what : "processor config", &o);
    if (st) return st;
    st = lmc_image_config_from_json(o, what, cfg);
    json_object_put(o);
    return st;
}

/* ------------------------------------------------------------ resize size */

lmc_status lmc_image_resize_target(const lmc_image_config *cfg, size_t h, size_t w,
                                   size_t *out_h, size_t *out_w) {
    *out_h = h;
    *out_w = w;
    if (h == 0 || w == 0) return lmc_err(LMC_ERR_FORMAT, "image: zero-sized input");
    if (!cfg->do_resize) return LMC_OK;
    double dh = (double)h, dw = (double)w;
    switch (cfg->mode) {
    case LMC_RESIZE_FIXED:
        *out_h = (size_t)cfg->height;
        *out_w = (size_t)cfg->width;
        break;
    case LMC_RESIZE_SHORTEST_EDGE: {
        /* new_long = int(short_target * long / short), orientation kept. */
        double s = (double)cfg->shortest_edge;
        if (w <= h) {
            *out_w = (size_t)cfg->shortest_edge;
            *out_h = (size_t)(s * dh / dw);
        } else {
            *out_h = (size_t)cfg->shortest_edge;
            *out_w = (size_t)(s * dw / dh);
        }
        break;
    }
    case LMC_RESIZE_SMART: {
        double f = (double)cfg->factor;
        double hi = dh > dw ? dh : dw, lo = dh > dw ? dw : dh;
        if (hi / lo > 200.0)
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "image: %zux%zu has an aspect ratio over 200, which the processor "
                           "refuses",
                           w, h);
        /* Python's round() is round-half-to-even, as nearbyint is. */
        double hb = nearbyint(dh / f) * f, wb = nearbyint(dw / f) * f;
        if (hb * wb > (double)cfg->max_pixels) {
            double beta = sqrt(dh * dw / (double)cfg->max_pixels);
            hb = fmax(f, floor(dh / beta / f) * f);
            wb = fmax(f, floor(dw / beta / f) * f);
        } else if (hb * wb < (double)cfg->min_pixels) {
            double beta = sqrt((double)cfg->min_pixels / (dh * dw));
            hb = ceil(dh * beta / f) * f;
            wb = ceil(dw * beta / f) * f;
        }
        if (!(hb >= 1 && wb >= 1 && hb <= (double)MAX_SIDE && wb <= (double)MAX_SIDE))
            return lmc_err(LMC_ERR_LIMIT, "image: resize of %zux%zu gives an unusable size", w,
                           h);
        *out_h = (size_t)hb;
        *out_w = (size_t)wb;
        break;
    }
    }
    if (*out_h == 0 || *out_w == 0)
        return lmc_err(LMC_ERR_FORMAT, "image: resize of %zux%zu gives a zero-sized image", w, h);
    if (*out_w > cfg->max_pixels_cap / *out_h)
        return lmc_err(LMC_ERR_LIMIT, "image: resized size %zux%zu is over the limit of %zu pixels",
                       *out_w, *out_h, cfg->max_pixels_cap);
    return LMC_OK;
}

/* ------------------------------------------------------------ resampling */

#define PRECISION_BITS (32 - 8 - 2)

static double sinc(double x) {
    if (x == 0.0) return 1.0;
    x *= M_PI;
    return sin(x) / x;
}

/* The filter kernels and their supports, as Pillow defines them. */
static double filter_eval(int resample, double x) {
    switch (resample) {
    case LMC_RESAMPLE_BOX:
        return (x > -0.5 && x <= 0.5) ? 1.0 : 0.0;
    case LMC_RESAMPLE_BILINEAR:
        if (x < 0) x = -x;
        return x < 1.0 ? 1.0 - x : 0.0;
    case LMC_RESAMPLE_HAMMING:
        if (x < 0) x = -x;
        if (x == 0.0) return 1.0;
        if (x >= 1.0) return 0.0;
        x *= M_PI;
        return sin(x) / x * (0.54 + 0.46 * cos(x));
    case LMC_RESAMPLE_BICUBIC: {
        const double a = -0.5;
        if (x < 0) x = -x;
        if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
        if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
        return 0.0;
    }
    case LMC_RESAMPLE_LANCZOS:
        return (x >= -3.0 && x < 3.0) ? sinc(x) * sinc(x / 3.0) : 0.0;
    default:
        return 0.0;
    }
}

static double filter_support(int resample) {
    switch (resample) {
    case LMC_RESAMPLE_BOX: return 0.5;
    case LMC_RESAMPLE_BILINEAR: return 1.0;
    case LMC_RESAMPLE_HAMMING: return 1.0;
    case LMC_RESAMPLE_BICUBIC: return 2.0;
    case LMC_RESAMPLE_LANCZOS: return 3.0;
    default: return 0.0;
    }
}

/* Per output index: the first input index, the tap count, and ksize
 * fixed-point weights. */
typedef struct {
    int *xmin, *xcnt;
    int32_t *k;
    int ksize;
} coeffs;

static void coeffs_free(coeffs *c) {
    free(c->xmin);
    free(c->xcnt);
    free(c->k);
}

static lmc_status coeffs_build(size_t in_size, size_t out_size, int resample, coeffs *c) {
    memset(c, 0, sizeof *c);
    double scale = (double)in_size / (double)out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = filter_support(resample) * filterscale;
    double ks = ceil(support) * 2 + 1;
    if (ks > (double)(1 << 22))
        return lmc_err(LMC_ERR_LIMIT, "image: downscale %zu -> %zu needs too wide a filter",
                       in_size, out_size);
    c->ksize = (int)ks;
    c->xmin = malloc(out_size * sizeof *c->xmin);
    c->xcnt = malloc(out_size * sizeof *c->xcnt);
    c->k = calloc(out_size * (size_t)c->ksize, sizeof *c->k);
    double *pre = malloc((size_t)c->ksize * sizeof *pre);
    if (!c->xmin || !c->xcnt || !c->k || !pre) {
        free(pre);
        coeffs_free(c);
        return lmc_err(LMC_ERR_NOMEM, "image: out of memory for resize coefficients");
    }
    double ss = 1.0 / filterscale;
    for (size_t xx = 0; xx < out_size; xx++) {
        double center = ((double)xx + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > (int)in_size) xmax = (int)in_size;
        xmax -= xmin;
        if (xmax > c->ksize) xmax = c->ksize;
        if (xmax < 0) xmax = 0;
        double ww = 0.0;
        for (int x = 0; x < xmax; x++) {
            double w = filter_eval(resample, ((double)(x + xmin) - center + 0.5) * ss);
            pre[x] = w;
            ww += w;
        }
        int32_t *k = c->k + xx * (size_t)c->ksize;
        for (int x = 0; x < xmax; x++) {
            double v = ww != 0.0 ? pre[x] / ww : pre[x];
            /* Pillow's 8-bit fixed point, rounded away from zero. */
            k[x] = v < 0 ? (int32_t)(-0.5 + v * (1 << PRECISION_BITS))
                         : (int32_t)(0.5 + v * (1 << PRECISION_BITS));
        }
        c->xmin[xx] = xmin;
        c->xcnt[xx] = xmax;
    }
    free(pre);
    return LMC_OK;
}

static inline uint8_t clip8(int64_t ss) {
    if (ss < 0) return 0;
    ss >>= PRECISION_BITS;
    return ss > 255 ? 255 : (uint8_t)ss;
}

static lmc_status resize_nearest(const lmc_image_u8 *in, size_t ow, size_t oh, uint8_t *dst) {
    double sx = (double)in->w / (double)ow, sy = (double)in->h / (double)oh;
    size_t c = in->c;
    for (size_t y = 0; y < oh; y++) {
        size_t iy = (size_t)(((double)y + 0.5) * sy);
        if (iy >= in->h) iy = in->h - 1;
        for (size_t x = 0; x < ow; x++) {
            size_t ix = (size_t)(((double)x + 0.5) * sx);
            if (ix >= in->w) ix = in->w - 1;
            memcpy(dst + (y * ow + x) * c, in->px + (iy * in->w + ix) * c, c);
        }
    }
    return LMC_OK;
}

lmc_status lmc_image_resize(const lmc_image_u8 *in, size_t out_w, size_t out_h, int resample,
                            lmc_image_u8 *out) {
    memset(out, 0, sizeof *out);
    if (!in || !in->px || in->w == 0 || in->h == 0 || in->c == 0 || in->c > 4 || out_w == 0 ||
        out_h == 0 || out_w > (size_t)MAX_SIDE || out_h > (size_t)MAX_SIDE)
        return lmc_err(LMC_ERR_INVALID_ARG, "image resize: bad input or output size");
    if (resample < 0 || resample > 5)
        return lmc_err(LMC_ERR_UNSUPPORTED, "image resize: unknown resample filter %d", resample);
    size_t c = in->c;
    uint8_t *dst = malloc(out_w * out_h * c);
    if (!dst) return lmc_err(LMC_ERR_NOMEM, "image resize: out of memory for %zux%zu", out_w,
                             out_h);
    if (resample == LMC_RESAMPLE_NEAREST) {
        resize_nearest(in, out_w, out_h, dst);
        *out = (lmc_image_u8){dst, out_w, out_h, c};
        return LMC_OK;
    }
    lmc_status st = LMC_OK;
    coeffs cx = {0}, cy = {0};
    uint8_t *tmp = NULL;
    bool need_h = out_w != in->w, need_v = out_h != in->h;
    /* Horizontal pass first (into tmp), then vertical, as Pillow does. */
    const uint8_t *src = in->px;
    size_t src_w = in->w;
    if (need_h) {
        if ((st = coeffs_build(in->w, out_w, resample, &cx))) goto done;
        tmp = need_v ? malloc(out_w * in->h * c) : dst;
        if (!tmp) {
            st = lmc_err(LMC_ERR_NOMEM, "image resize: out of memory");
            goto done;
        }
        for (size_t y = 0; y < in->h; y++) {
            const uint8_t *row = in->px + y * in->w * c;
            uint8_t *orow = tmp + y * out_w * c;
            for (size_t xx = 0; xx < out_w; xx++) {
                const int32_t *k = cx.k + xx * (size_t)cx.ksize;
                int xmin = cx.xmin[xx], n = cx.xcnt[xx];
                for (size_t ch = 0; ch < c; ch++) {
                    int64_t ss = (int64_t)1 << (PRECISION_BITS - 1);
                    for (int x = 0; x < n; x++)
                        ss += (int64_t)row[((size_t)(x + xmin)) * c + ch] * k[x];
                    orow[xx * c + ch] = clip8(ss);
                }
            }
        }
        src = tmp;
        src_w = out_w;
    }
    if (need_v) {
        if ((st = coeffs_build(in->h, out_h, resample, &cy))) goto done;
        for (size_t yy = 0; yy < out_h; yy++) {
            const int32_t *k = cy.k + yy * (size_t)cy.ksize;
            int ymin = cy.xmin[yy], n = cy.xcnt[yy];
            uint8_t *orow = dst + yy * out_w * c;
            for (size_t xx = 0; xx < src_w * c; xx++) {
                int64_t ss = (int64_t)1 << (PRECISION_BITS - 1);
                for (int y = 0; y < n; y++)
                    ss += (int64_t)src[((size_t)(y + ymin)) * src_w * c + xx] * k[y];
                orow[xx] = clip8(ss);
            }
        }
    }
    if (!need_h && !need_v) memcpy(dst, in->px, out_w * out_h * c);
done:
    if (tmp && tmp != dst) free(tmp);
    coeffs_free(&cx);
    coeffs_free(&cy);
    if (st) {
        free(dst);
        return st;
    }
    *out = (lmc_image_u8){dst, out_w, out_h, c};
    return LMC_OK;
}

/* ------------------------------------------------------------ pipeline */

static int64_t floordiv2(int64_t a) { return a >= 0 ? a / 2 : -((-a + 1) / 2); }

lmc_status lmc_image_preprocess_u8(const lmc_image_config *cfg, const lmc_image_u8 *im,
                                   float **chw, size_t *c_out, size_t *h_out, size_t *w_out) {
    *chw = NULL;
    *c_out = *h_out = *w_out = 0;
    if (!cfg || !im || !im->px || im->w == 0 || im->h == 0)
        return lmc_err(LMC_ERR_INVALID_ARG, "image preprocess: no image");
    if (im->c != 3)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "image preprocess: image has %zu channels, expected 3 (RGB)%s", im->c,
                       cfg->do_convert_rgb ? "" : "; do_convert_rgb is false");
    size_t cap = cfg->max_pixels_cap ? cfg->max_pixels_cap : LMC_IMAGE_MAX_PIXELS;
    if (im->w > cap / im->h)
        return lmc_err(LMC_ERR_LIMIT, "image preprocess: %zux%zu is over the limit of %zu pixels",
                       im->w, im->h, cap);
    lmc_status st;
    lmc_image_u8 resized = {0};
    const lmc_image_u8 *cur = im;
    if (cfg->do_resize) {
        size_t th, tw;
        if ((st = lmc_image_resize_target(cfg, im->h, im->w, &th, &tw))) return st;
        if (th != im->h || tw != im->w) {
            if ((st = lmc_image_resize(im, tw, th, cfg->resample, &resized))) return st;
            cur = &resized;
        }
    }
    size_t oh = cur->h, ow = cur->w;
    int64_t top = 0, left = 0;
    if (cfg->do_center_crop) {
        oh = (size_t)cfg->crop_height;
        ow = (size_t)cfg->crop_width;
        if (ow > cap / oh) {
            lmc_image_u8_free(&resized);
            return lmc_err(LMC_ERR_LIMIT,
                           "image preprocess: crop %zux%zu is over the limit of %zu pixels", ow,
                           oh, cap);
        }
        /* (orig - crop) // 2 in both directions; outside the source (crop
         * larger than the image) is zero padding, as the reference pads. */
        top = floordiv2((int64_t)cur->h - (int64_t)oh);
        left = floordiv2((int64_t)cur->w - (int64_t)ow);
    }
    size_t plane = oh * ow;
    float *out = malloc(3 * plane * sizeof *out);
    if (!out) {
        lmc_image_u8_free(&resized);
        return lmc_err(LMC_ERR_NOMEM, "image preprocess: out of memory for %zux%zu", ow, oh);
    }
    float lut[3][256];
    for (int ch = 0; ch < 3; ch++) {
        for (int v = 0; v < 256; v++) {
            /* rescale in double then float32, normalize in float32. */
            float x = cfg->do_rescale ? (float)((double)v * cfg->rescale_factor) : (float)v;
            if (cfg->do_normalize) x = (x - (float)cfg->mean[ch]) / (float)cfg->std[ch];
            lut[ch][v] = x;
        }
    }
    for (size_t y = 0; y < oh; y++) {
        int64_t sy = (int64_t)y + top;
        for (size_t x = 0; x < ow; x++) {
            int64_t sx = (int64_t)x + left;
            bool inside = sy >= 0 && sx >= 0 && sy < (int64_t)cur->h && sx < (int64_t)cur->w;
            const uint8_t *p = inside ? cur->px + ((size_t)sy * cur->w + (size_t)sx) * 3 : NULL;
            for (size_t ch = 0; ch < 3; ch++)
                out[ch * plane + y * ow + x] = lut[ch][p ? p[ch] : 0];
        }
    }
    lmc_image_u8_free(&resized);
    *chw = out;
    *c_out = 3;
    *h_out = oh;
    *w_out = ow;
    return LMC_OK;
}

lmc_status lmc_image_preprocess_bytes(const lmc_image_config *cfg, const void *bytes, size_t len,
                                      const char *what, float **chw, size_t *c, size_t *h,
                                      size_t *w) {
    *chw = NULL;
    *c = *h = *w = 0;
    if (!cfg) return lmc_err(LMC_ERR_INVALID_ARG, "image preprocess: no config");
    size_t cap = cfg->max_pixels_cap ? cfg->max_pixels_cap : LMC_IMAGE_MAX_PIXELS;
    lmc_image_u8 im;
    lmc_status st = lmc_image_decode_memory(bytes, len, what, cap, cfg->do_convert_rgb, &im);
    if (st) return st;
    st = lmc_image_preprocess_u8(cfg, &im, chw, c, h, w);
    if (st) lmc_err_prefix(st, "%s", what ? what : "image");
    lmc_image_u8_free(&im);
    return st;
}
