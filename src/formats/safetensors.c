/* safetensors reader (mmap + full header validation), shard sets, writer,
 * and half-precision conversions.
 *
 * File layout: u64 little-endian header length N, N bytes of JSON header,
 * then the data section. Every tensor's data_offsets are relative to the
 * start of the data section. */
#include "formats/safetensors.h"
#include "base/buf.h"
#include "base/error.h"
#include "base/json.h"
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

/* A header larger than this is refused before parsing (HF uses the same). */
#define ST_MAX_HEADER_BYTES ((uint64_t)100 << 20)
#define ST_MAX_INDEX_BYTES ((size_t)64 << 20)

/* ------------------------------------------------------------------ dtypes */

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [LMC_DT_F32] = {"F32", 4}, [LMC_DT_F16] = {"F16", 2}, [LMC_DT_BF16] = {"BF16", 2},
    [LMC_DT_F64] = {"F64", 8}, [LMC_DT_I64] = {"I64", 8}, [LMC_DT_I32] = {"I32", 4},
    [LMC_DT_U32] = {"U32", 4}, [LMC_DT_I16] = {"I16", 2}, [LMC_DT_I8] = {"I8", 1},
    [LMC_DT_U8] = {"U8", 1},   [LMC_DT_BOOL] = {"BOOL", 1},
};
#define N_DTYPES (sizeof dtype_info / sizeof dtype_info[0])

size_t lmc_dtype_size(lmc_dtype dt) {
    return (unsigned)dt < N_DTYPES ? dtype_info[dt].size : 0;
}

const char *lmc_dtype_name(lmc_dtype dt) {
    return (unsigned)dt < N_DTYPES ? dtype_info[dt].name : "?";
}

bool lmc_dtype_parse(const char *name, lmc_dtype *out) {
    for (size_t i = 0; i < N_DTYPES; i++) {
        if (!strcmp(name, dtype_info[i].name)) {
            *out = (lmc_dtype)i;
            return true;
        }
    }
    return false;
}

/* ------------------------------------------------------------- conversions */

float lmc_bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lmc_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep it a (quiet) NaN */
        return (uint16_t)((u >> 16) | 0x0040u);
    uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)((u + rounding) >> 16);
}

float lmc_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t mant = h & 0x3ffu;
    uint32_t u;
    if (exp == 0) {
        if (mant == 0) {
            u = sign;
        } else { /* subnormal: normalize */
            int e = -1;
            do {
                e++;
                mant <<= 1;
            } while (!(mant & 0x400u));
            mant &= 0x3ffu;
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | (mant << 13);
        }
    } else if (exp == 31) {
        u = sign | 0x7f800000u | (mant << 13);
    } else {
        u = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t lmc_f32_to_f16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) return sign | 0x7e00u;        /* NaN */
    if (abs >= 0x477ff000u) return sign | 0x7c00u;       /* rounds to >= 65520: inf */
    if (abs < 0x38800000u) {                             /* below 2^-14: subnormal */
        if (abs < 0x33000000u) return sign;              /* < 2^-25 rounds to 0 */
        uint32_t e = abs >> 23;
        uint32_t m = (abs & 0x7fffffu) | 0x800000u;
        uint32_t shift = 126 - e;                        /* 14..24 */
        uint32_t q = m >> shift;
        uint32_t rem = m & ((1u << shift) - 1);
        uint32_t half = 1u << (shift - 1);
        if (rem > half || (rem == half && (q & 1u))) q++;
        return sign | (uint16_t)q;
    }
    uint32_t r = abs + 0xfffu + ((abs >> 13) & 1u);      /* round to nearest even */
    return sign | (uint16_t)((r - ((uint32_t)(127 - 15) << 23)) >> 13);
}

void lmc_to_f32(lmc_dtype dt, const void *src, float *dst, size_t n) {
    const unsigned char *p = src;
    switch (dt) {
    case LMC_DT_F32:
        memcpy(dst, src, n * 4);
        return;
    case LMC_DT_BF16:
    case LMC_DT_F16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = dt == LMC_DT_BF16 ? lmc_bf16_to_f32(h) : lmc_f16_to_f32(h);
        }
        return;
    case LMC_DT_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
        }
        return;
    default: /* integer dtypes are not float data; callers check dtype first */
        memset(dst, 0, n * sizeof *dst);
        return;
    }
}

/* ------------------------------------------------------------ single file */

struct lmc_st_file {
    char *path;
    lmc_mapping map;
    lmc_tensor_view *tensors;
    size_t n;
    lmc_tensor_view **by_name; /* sorted for lmc_st_find */
    char **meta;               /* key,value pairs */
    size_t n_meta;
    void *aligned_copy;        /* data section, when the mapping's is misaligned */
};

static int cmp_view_name(const void *a, const void *b) {
    const lmc_tensor_view *x = *(const lmc_tensor_view *const *)a;
    const lmc_tensor_view *y = *(const lmc_tensor_view *const *)b;
    return strcmp(x->name, y->name);
}

static const lmc_tensor_view *find_sorted(lmc_tensor_view *const *v, size_t n,
                                          const char *name) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(v[mid]->name, name);
        if (!c) return v[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

void lmc_st_close(lmc_st_file *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n; i++) free((char *)f->tensors[i].name);
    for (size_t i = 0; i < 2 * f->n_meta; i++) free(f->meta[i]);
    free(f->meta);
    free(f->tensors);
    free(f->by_name);
    lmc_unmap(&f->map);
    free(f->aligned_copy);
    free(f->path);
    free(f);
}

typedef struct {
    uint64_t begin, end;
    size_t idx;
} st_range;

static int cmp_range(const void *a, const void *b) {
    const st_range *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static lmc_status parse_metadata(lmc_st_file *f, json_object *meta) {
    if (!json_object_is_type(meta, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: __metadata__ is not an object", f->path);
    size_t n = (size_t)json_object_object_length(meta);
    f->meta = calloc(2 * n + 1, sizeof *f->meta);
    if (!f->meta) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", f->path);
    json_object_object_foreach(meta, key, val) {
        if (!json_object_is_type(val, json_type_string))
            return lmc_err(LMC_ERR_FORMAT, "%s: __metadata__ value for '%s' is not a string",
                           f->path, key);
        char *k = strdup(key), *v = strdup(json_object_get_string(val));
        f->meta[2 * f->n_meta] = k;
        f->meta[2 * f->n_meta + 1] = v;
        f->n_meta++;
        if (!k || !v) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", f->path);
    }
    return LMC_OK;
}

/* Non-negative integer array element `i` of `arr` into *out. */
static bool json_u64_at(json_object *arr, size_t i, uint64_t *out) {
    json_object *v = json_object_array_get_idx(arr, i);
    if (!v || !json_object_is_type(v, json_type_int)) return false;
    int64_t x = json_object_get_int64(v);
    if (x < 0) return false;
    if (x == INT64_MAX) { /* json-c clamps; use the unsigned reading */
        *out = json_object_get_uint64(v);
        return true;
    }
    *out = (uint64_t)x;
    return true;
}

static lmc_status parse_tensor(lmc_st_file *f, const char *name, json_object *desc,
                               uint64_t data_size, lmc_tensor_view *t, st_range *r) {
    const char *p = f->path;
    if (!json_object_is_type(desc, json_type_object))
        return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s': entry is not an object", p, name);
    bool bad = false;
    const char *dt = lmc_json_str(desc, "dtype", &bad);
    if (!dt)
        return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s': %s dtype", p, name,
                       bad ? "non-string" : "missing");
    if (!lmc_dtype_parse(dt, &t->dtype))
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s: tensor '%s': unknown dtype '%s'", p, name, dt);

    json_object *shape = lmc_json_get(desc, "shape");
    if (!shape || !json_object_is_type(shape, json_type_array))
        return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s': missing or non-array shape", p, name);
    size_t nd = json_object_array_length(shape);
    if (nd > LMC_MAX_DIMS)
        return lmc_err(LMC_ERR_LIMIT, "%s: tensor '%s': %zu dims, over the limit of %d", p,
                       name, nd, LMC_MAX_DIMS);
    t->ndim = (int)nd;
    uint64_t numel = 1;
    for (size_t d = 0; d < nd; d++) {
        uint64_t dim;
        if (!json_u64_at(shape, d, &dim) || dim > (uint64_t)INT64_MAX)
            return lmc_err(LMC_ERR_FORMAT,
                           "%s: tensor '%s': shape[%zu] is not a non-negative integer", p, name,
                           d);
        t->shape[d] = (int64_t)dim;
        if (dim && numel > (uint64_t)INT64_MAX / dim)
            return lmc_err(LMC_ERR_LIMIT, "%s: tensor '%s': element count overflows", p, name);
        numel *= dim;
    }
    size_t es = lmc_dtype_size(t->dtype);
    if (numel > (uint64_t)SIZE_MAX / es)
        return lmc_err(LMC_ERR_LIMIT, "%s: tensor '%s': byte size overflows", p, name);
    t->numel = (int64_t)numel;
    t->nbytes = (size_t)(numel * es);

    json_object *offs = lmc_json_get(desc, "data_offsets");
    uint64_t b, e;
    if (!offs || !json_object_is_type(offs, json_type_array) ||
        json_object_array_length(offs) != 2 || !json_u64_at(offs, 0, &b) ||
        !json_u64_at(offs, 1, &e))
        return lmc_err(LMC_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets must be [begin, end] non-negative integers",
                       p, name);
    if (b > e)
        return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] begin > end",
                       p, name, (unsigned long long)b, (unsigned long long)e);
    if (e > data_size)
        return lmc_err(LMC_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets [%llu, %llu] past end of data (%llu bytes)",
                       p, name, (unsigned long long)b, (unsigned long long)e,
                       (unsigned long long)data_size);
    if (e - b != (uint64_t)t->nbytes)
        return lmc_err(LMC_ERR_FORMAT,
                       "%s: tensor '%s': data_offsets span %llu bytes but %s shape needs %zu",
                       p, name, (unsigned long long)(e - b), dt, t->nbytes);
    r->begin = b;
    r->end = e;
    return LMC_OK;
}

/* ------------------------------------------------------- header text checks */

/* What json-c accepts but the reference reader (serde_json) refuses, and
 * what json-c's object drops: the header must start with `{` (after JSON
 * whitespace), hold no single quotes, NaN/Infinity or raw control
 * characters, and no top-level key twice (json-c keeps only the last). */
static bool json_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* Bytes allowed outside strings: structure, numbers, true/false/null. */
static bool json_bare(unsigned char c) {
    return json_ws(c) || (c && strchr("{}[]:,-+.0123456789eEtrufalsn", c));
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The decoded text of the JSON string literal text[b, e) (quotes included). */
static char *decode_key(const char *text, size_t b, size_t e) {
    json_tokener *tok = json_tokener_new();
    if (!tok) return NULL;
    json_object *o = json_tokener_parse_ex(tok, text + b, (int)(e - b));
    json_tokener_free(tok);
    char *s = o && json_object_is_type(o, json_type_string) ? strdup(json_object_get_string(o))
                                                             : NULL;
    json_object_put(o);
    return s;
}

static lmc_status dup_keys(const char *p, char **keys, size_t n) {
    if (n < 2) return LMC_OK;
    qsort(keys, n, sizeof *keys, cmp_str);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(keys[i - 1], keys[i]))
            return lmc_err(LMC_ERR_FORMAT, "%s: %s '%s' appears more than once in the header", p,
                           strcmp(keys[i], "__metadata__") ? "tensor" : "key", keys[i]);
    return LMC_OK;
}

static lmc_status header_start_check(const char *p, const char *text, size_t len) {
    size_t i = 0;
    while (i < len && json_ws((unsigned char)text[i])) i++;
    if (i == len || text[i] != '{')
        return lmc_err(LMC_ERR_FORMAT, "%s: header does not start with '{' (byte %zu is 0x%02x)",
                       p, i, i < len ? (unsigned char)text[i] : 0u);
    return LMC_OK;
}

static lmc_status header_text_check(const char *p, const char *text, size_t len) {
    size_t i = 0;
    while (text[i] != '{') i++; /* header_start_check found it */
    char **keys = NULL;
    size_t n = 0, cap = 0, depth = 0, key_begin = 0;
    bool in_str = false, esc = false, want_key = false, is_key = false;
    lmc_status st = LMC_OK;
    for (; i < len && !st; i++) {
        unsigned char c = (unsigned char)text[i];
        if (in_str) {
            if (c < 0x20)
                st = lmc_err(LMC_ERR_FORMAT, "%s: header: control character 0x%02x in a string "
                             "at byte %zu", p, c, i);
            else if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"') {
                in_str = false;
                if (!is_key) continue;
                if (n == cap) {
                    char **k = realloc(keys, (cap = cap ? 2 * cap : 64) * sizeof *keys);
                    if (!k) {
                        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", p);
                        break;
                    }
                    keys = k;
                }
                if (!(keys[n] = decode_key(text, key_begin, i + 1)))
                    st = lmc_err(LMC_ERR_FORMAT, "%s: header: bad key at byte %zu", p, key_begin);
                else
                    n++;
            }
            continue;
        }
        if (!json_bare(c) && c != '"') {
            st = lmc_err(LMC_ERR_FORMAT, "%s: header: character '%c' at byte %zu is not JSON", p,
                         c >= 0x20 && c < 0x7f ? c : '?', i);
        } else if (c == '"') {
            in_str = true;
            is_key = want_key && depth == 1;
            key_begin = i;
            want_key = false;
        } else if (c == '{' || c == '[') {
            depth++;
            want_key = c == '{';
        } else if (c == '}' || c == ']') {
            depth--;
        } else if (c == ',') {
            want_key = depth == 1 || want_key;
        } else if (!json_ws(c)) {
            want_key = false;
        }
    }
    if (!st) st = dup_keys(p, keys, n);
    for (size_t k = 0; k < n; k++) free(keys[k]);
    free(keys);
    return st;
}

/* HF's rule: sorted by offsets, the tensors' data regions tile the data
 * section exactly: no overlap, no hole, nothing after the last one. */
static lmc_status check_tiling(lmc_st_file *f, st_range *ranges, uint64_t data_size) {
    qsort(ranges, f->n, sizeof *ranges, cmp_range);
    uint64_t at = 0;
    const char *prev = NULL;
    for (size_t i = 0; i < f->n; i++) {
        const char *name = f->tensors[ranges[i].idx].name;
        unsigned long long b = ranges[i].begin, e = ranges[i].end;
        if (b < at)
            return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] overlap "
                           "tensor '%s' (which ends at %llu)", f->path, name, b, e, prev,
                           (unsigned long long)at);
        if (b > at)
            return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s': data_offsets [%llu, %llu] leave a "
                           "hole: bytes [%llu, %llu) belong to no tensor", f->path, name, b, e,
                           (unsigned long long)at, b);
        at = e;
        prev = name;
    }
    if (at != data_size)
        return lmc_err(LMC_ERR_FORMAT, "%s: %llu trailing bytes after the last tensor '%s' "
                       "(its data ends at offset %llu of %llu)", f->path,
                       (unsigned long long)(data_size - at), prev ? prev : "(none)",
                       (unsigned long long)at, (unsigned long long)data_size);
    return LMC_OK;
}

static lmc_status st_validate(lmc_st_file *f) {
    const char *p = f->path;
    const unsigned char *base = f->map.data;
    size_t size = f->map.size;
    if (size < 8)
        return lmc_err(LMC_ERR_FORMAT, "%s: %zu bytes, too short for a safetensors header", p,
                       size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | base[i];
    if (hlen > ST_MAX_HEADER_BYTES)
        return lmc_err(LMC_ERR_LIMIT, "%s: header length %llu over the %llu-byte limit", p,
                       (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER_BYTES);
    if (hlen > size - 8)
        return lmc_err(LMC_ERR_FORMAT, "%s: header length %llu past end of file (%zu bytes)",
                       p, (unsigned long long)hlen, size);
    if (hlen < 2) return lmc_err(LMC_ERR_FORMAT, "%s: empty header", p);
    const unsigned char *data = base + 8 + hlen;
    uint64_t data_size = size - 8 - hlen;

    json_object *hdr = NULL;
    lmc_buf what = {0};
    if (!lmc_buf_printf(&what, "%s: header", p))
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", p);
    lmc_status st = header_start_check(p, (const char *)base + 8, (size_t)hlen);
    if (!st) st = lmc_json_parse_ex((const char *)base + 8, (size_t)hlen, what.p, true, &hdr);
    lmc_buf_free(&what);
    if (st) return st;
    if (!json_object_is_type(hdr, json_type_object)) {
        json_object_put(hdr);
        return lmc_err(LMC_ERR_FORMAT, "%s: header is not a JSON object", p);
    }
    if ((st = header_text_check(p, (const char *)base + 8, (size_t)hlen))) {
        json_object_put(hdr);
        return st;
    }
    size_t n = (size_t)json_object_object_length(hdr);
    f->tensors = calloc(n + 1, sizeof *f->tensors);
    f->by_name = calloc(n + 1, sizeof *f->by_name);
    st_range *ranges = calloc(n + 1, sizeof *ranges);
    if (!f->tensors || !f->by_name || !ranges) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", p);
        goto done;
    }
    json_object_object_foreach(hdr, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if ((st = parse_metadata(f, val))) goto done;
            continue;
        }
        lmc_tensor_view *t = &f->tensors[f->n];
        if ((st = parse_tensor(f, key, val, data_size, t, &ranges[f->n]))) goto done;
        if (!(t->name = strdup(key))) {
            st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", p);
            goto done;
        }
        ranges[f->n].idx = f->n;
        f->n++;
    }
    /* Writers pad the header to 8 bytes so every tensor is aligned to its
     * element size; a file that is not gets its data section copied to
     * aligned memory, so consumers can always read elements directly. */
    bool misaligned = false;
    for (size_t i = 0; i < f->n; i++)
        if (((uintptr_t)data + ranges[i].begin) % lmc_dtype_size(f->tensors[i].dtype))
            misaligned = true;
    if (misaligned && data_size) {
        if (!(f->aligned_copy = aligned_alloc(64, ((size_t)data_size + 63) & ~(size_t)63))) {
            st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory copying unaligned data", p);
            goto done;
        }
        memcpy(f->aligned_copy, data, (size_t)data_size);
        data = f->aligned_copy;
    }
    for (size_t i = 0; i < f->n; i++) {
        f->tensors[i].data = data + ranges[i].begin;
        f->by_name[i] = &f->tensors[i];
    }
    if ((st = check_tiling(f, ranges, data_size))) goto done;
    qsort(f->by_name, f->n, sizeof *f->by_name, cmp_view_name);
done:
    free(ranges);
    json_object_put(hdr);
    return st;
}

lmc_status lmc_st_open(const char *path, lmc_st_file **out) {
    *out = NULL;
    lmc_st_file *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) {
        free(f);
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
    }
    lmc_status st = lmc_map_file(path, path, &f->map);
    if (!st) st = st_validate(f);
    if (st) {
        lmc_st_close(f);
        return st;
    }
    *out = f;
    return LMC_OK;
}

size_t lmc_st_count(const lmc_st_file *f) { return f ? f->n : 0; }

const lmc_tensor_view *lmc_st_at(const lmc_st_file *f, size_t i) {
    return f && i < f->n ? &f->tensors[i] : NULL;
}

const lmc_tensor_view *lmc_st_find(const lmc_st_file *f, const char *name) {
    return f ? find_sorted(f->by_name, f->n, name) : NULL;
}

const char *lmc_st_metadata(const lmc_st_file *f, const char *key) {
    if (!f) return NULL;
    for (size_t i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[2 * i], key)) return f->meta[2 * i + 1];
    return NULL;
}

/* ---------------------------------------------------------------- shard set */

struct lmc_st_set {
    lmc_st_file **files;
    size_t n_files;
    lmc_tensor_view *views; /* copies of every file's views, file order */
    size_t n;
    lmc_tensor_view **by_name;
};

void lmc_st_set_free(lmc_st_set *s) {
    if (!s) return;
    for (size_t i = 0; i < s->n_files; i++) lmc_st_close(s->files[i]);
    free(s->files);
    free(s->views);
    free(s->by_name);
    free(s);
}

size_t lmc_st_set_count(const lmc_st_set *s) { return s ? s->n : 0; }

const lmc_tensor_view *lmc_st_set_at(const lmc_st_set *s, size_t i) {
    return s && i < s->n ? &s->views[i] : NULL;
}

const lmc_tensor_view *lmc_st_set_find(const lmc_st_set *s, const char *name) {
    return s ? find_sorted(s->by_name, s->n, name) : NULL;
}

/* Open `names` (file names inside dir) and merge them. */
static lmc_status set_open_files(const char *dir, char **names, size_t n_names,
                                 lmc_st_set **out) {
    lmc_st_set *s = calloc(1, sizeof *s);
    if (!s || !(s->files = calloc(n_names + 1, sizeof *s->files))) {
        free(s);
        return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
    }
    lmc_status st = LMC_OK;
    size_t total = 0;
    for (size_t i = 0; i < n_names; i++) {
        char *path = lmc_path_join(dir, names[i]);
        if (!path) {
            st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
            goto fail;
        }
        st = lmc_st_open(path, &s->files[i]);
        free(path);
        if (st) goto fail;
        s->n_files++;
        total += lmc_st_count(s->files[i]);
    }
    s->views = calloc(total + 1, sizeof *s->views);
    s->by_name = calloc(total + 1, sizeof *s->by_name);
    if (!s->views || !s->by_name) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        goto fail;
    }
    for (size_t i = 0; i < s->n_files; i++)
        for (size_t j = 0; j < lmc_st_count(s->files[i]); j++) s->views[s->n++] = *lmc_st_at(s->files[i], j);
    for (size_t i = 0; i < s->n; i++) s->by_name[i] = &s->views[i];
    qsort(s->by_name, s->n, sizeof *s->by_name, cmp_view_name);
    for (size_t i = 1; i < s->n; i++) {
        if (!strcmp(s->by_name[i - 1]->name, s->by_name[i]->name)) {
            /* Name the two files holding it. */
            const char *fa = NULL, *fb = NULL;
            for (size_t k = 0; k < s->n_files; k++) {
                const lmc_tensor_view *v = lmc_st_find(s->files[k], s->by_name[i]->name);
                if (!v) continue;
                if (!fa)
                    fa = names[k];
                else if (!fb)
                    fb = names[k];
            }
            st = lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s' appears in both %s and %s", dir,
                         s->by_name[i]->name, fa ? fa : "?", fb ? fb : fa ? fa : "?");
            goto fail;
        }
    }
    *out = s;
    return LMC_OK;
fail:
    lmc_st_set_free(s);
    return st;
}

static void free_names(char **names, size_t n) {
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
}

/* Shards named by model.safetensors.index.json, first-appearance order. */
static lmc_status open_indexed(const char *dir, const char *index_path, lmc_st_set **out) {
    const char *what = "model.safetensors.index.json";
    json_object *idx = NULL;
    lmc_status st = lmc_json_load_file(index_path, index_path, ST_MAX_INDEX_BYTES, &idx, NULL);
    if (st) return st;
    char **names = NULL;
    size_t n_names = 0;
    json_object *wm = lmc_json_get(idx, "weight_map");
    if (!wm || !json_object_is_type(wm, json_type_object)) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: missing or non-object weight_map", index_path);
        goto done;
    }
    size_t n_entries = (size_t)json_object_object_length(wm);
    names = calloc(n_entries + 1, sizeof *names);
    if (!names) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
        goto done;
    }
    json_object_object_foreach(wm, tname, shard) {
        if (!json_object_is_type(shard, json_type_string)) {
            st = lmc_err(LMC_ERR_FORMAT, "%s: weight_map['%s'] is not a string", index_path,
                         tname);
            goto done;
        }
        const char *sh = json_object_get_string(shard);
        /* Shards live in the model directory: no paths, no escapes. */
        if (!*sh || strchr(sh, '/') || !strcmp(sh, ".") || !strcmp(sh, "..")) {
            st = lmc_err(LMC_ERR_FORMAT, "%s: weight_map['%s'] = '%s' is not a file name",
                         index_path, tname, sh);
            goto done;
        }
        bool seen = false;
        for (size_t i = 0; i < n_names && !seen; i++) seen = !strcmp(names[i], sh);
        if (!seen && !(names[n_names++] = strdup(sh))) {
            st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", what);
            goto done;
        }
    }
    if (!n_names) {
        st = lmc_err(LMC_ERR_NOT_FOUND, "%s: weight_map is empty", index_path);
        goto done;
    }
    if ((st = set_open_files(dir, names, n_names, out))) {
        lmc_err_prefix(st, "%s", what);
        goto done;
    }
    /* Every listed tensor must be in the shard that the index names. */
    json_object_object_foreach(wm, tname2, shard2) {
        const char *sh = json_object_get_string(shard2);
        lmc_st_set *s = *out;
        size_t k = 0;
        while (k < n_names && strcmp(names[k], sh)) k++;
        if (!lmc_st_find(s->files[k], tname2)) {
            st = lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s' is listed in %s but not found there",
                         index_path, tname2, sh);
            lmc_st_set_free(s);
            *out = NULL;
            goto done;
        }
    }
done:
    if (names) free_names(names, n_names);
    json_object_put(idx);
    return st;
}

static bool has_suffix(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a > b && !strcmp(s + a - b, suf);
}

lmc_status lmc_st_set_open_dir(const char *dir, lmc_st_set **out) {
    *out = NULL;
    if (!lmc_is_dir(dir))
        return lmc_err(LMC_ERR_NOT_FOUND, "%s: model directory not found", dir);
    char *single = lmc_path_join(dir, "model.safetensors");
    char *index = lmc_path_join(dir, "model.safetensors.index.json");
    lmc_status st = LMC_OK;
    if (!single || !index) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", dir);
        goto done;
    }
    if (lmc_path_exists(single)) {
        char *names[] = {"model.safetensors"};
        st = set_open_files(dir, names, 1, out);
        goto done;
    }
    if (lmc_path_exists(index)) {
        st = open_indexed(dir, index, out);
        goto done;
    }
    DIR *d = opendir(dir);
    if (!d) {
        st = lmc_err(LMC_ERR_IO, "%s: cannot list directory: %s", dir, strerror(errno));
        goto done;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || !has_suffix(e->d_name, ".safetensors")) continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 8;
            char **nn = realloc(names, nc * sizeof *nn);
            if (!nn) break;
            names = nn;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name))) break;
        n++;
    }
    bool oom = e != NULL;
    closedir(d);
    if (oom) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory listing files", dir);
    } else if (!n) {
        st = lmc_err(LMC_ERR_NOT_FOUND,
                     "%s: no weights found (model.safetensors, model.safetensors.index.json "
                     "or *.safetensors)",
                     dir);
    } else {
        qsort(names, n, sizeof *names, cmp_str);
        st = set_open_files(dir, names, n, out);
    }
    free_names(names, n);
done:
    free(single);
    free(index);
    return st;
}

/* ------------------------------------------------------------------ writer */

static lmc_status check_write_tensor(const char *path, const lmc_st_write_tensor *t,
                                     size_t *nbytes) {
    if (!t->name || !*t->name || !strcmp(t->name, "__metadata__"))
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: invalid tensor name", path);
    if ((unsigned)t->dtype >= N_DTYPES)
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: tensor '%s': invalid dtype", path, t->name);
    if (t->ndim < 0 || t->ndim > LMC_MAX_DIMS)
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: tensor '%s': %d dims", path, t->name,
                       t->ndim);
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        if (t->shape[d] < 0)
            return lmc_err(LMC_ERR_INVALID_ARG, "%s: tensor '%s': negative shape[%d]", path,
                           t->name, d);
        uint64_t dim = (uint64_t)t->shape[d];
        if (dim && numel > (uint64_t)INT64_MAX / dim)
            return lmc_err(LMC_ERR_LIMIT, "%s: tensor '%s': element count overflows", path,
                           t->name);
        numel *= dim;
    }
    size_t es = lmc_dtype_size(t->dtype);
    if (numel > (uint64_t)SIZE_MAX / es)
        return lmc_err(LMC_ERR_LIMIT, "%s: tensor '%s': byte size overflows", path, t->name);
    *nbytes = (size_t)numel * es;
    if (*nbytes && !t->data)
        return lmc_err(LMC_ERR_INVALID_ARG, "%s: tensor '%s': no data", path, t->name);
    return LMC_OK;
}

lmc_status lmc_st_write(const char *path, const lmc_st_write_tensor *tensors, size_t n,
                        const char *const *meta_kv) {
    return lmc_st_write_mode(path, tensors, n, meta_kv, LMC_MODE_PUBLIC);
}

lmc_status lmc_st_write_mode(const char *path, const lmc_st_write_tensor *tensors, size_t n,
                             const char *const *meta_kv, unsigned mode) {
    if (n && !tensors) return lmc_err(LMC_ERR_INVALID_ARG, "%s: no tensors given", path);
    lmc_status st = LMC_OK;
    size_t *nbytes = calloc(n + 1, sizeof *nbytes);
    size_t *order = calloc(n + 1, sizeof *order);
    json_object *hdr = json_object_new_object();
    lmc_buf head = {0};
    if (!nbytes || !order || !hdr) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        if ((st = check_write_tensor(path, &tensors[i], &nbytes[i]))) goto done;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(tensors[j].name, tensors[i].name)) {
                st = lmc_err(LMC_ERR_INVALID_ARG, "%s: tensor '%s' given twice", path,
                             tensors[i].name);
                goto done;
            }
    }
    /* Data layout: largest element size first (stable), so every tensor is
     * aligned to its element size with no holes between tensors. */
    size_t k = 0;
    for (size_t es = 8; es >= 1; es /= 2)
        for (size_t i = 0; i < n; i++)
            if (lmc_dtype_size(tensors[i].dtype) == es) order[k++] = i;
    uint64_t *begin = calloc(n + 1, sizeof *begin);
    if (!begin) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    uint64_t off = 0;
    for (size_t j = 0; j < n; j++) {
        begin[order[j]] = off;
        off += nbytes[order[j]];
    }
    if (meta_kv && meta_kv[0]) {
        json_object *m = json_object_new_object();
        if (!m || json_object_object_add(hdr, "__metadata__", m)) {
            json_object_put(m);
            st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
        }
        for (size_t i = 0; !st && meta_kv[i]; i += 2) {
            if (!meta_kv[i + 1]) {
                st = lmc_err(LMC_ERR_INVALID_ARG, "%s: metadata key '%s' has no value", path,
                             meta_kv[i]);
                break;
            }
            json_object_object_add(m, meta_kv[i], json_object_new_string(meta_kv[i + 1]));
        }
    }
    for (size_t i = 0; !st && i < n; i++) {
        const lmc_st_write_tensor *t = &tensors[i];
        json_object *d = json_object_new_object(), *shape = json_object_new_array(),
                    *offs = json_object_new_array();
        json_object_object_add(d, "dtype", json_object_new_string(lmc_dtype_name(t->dtype)));
        for (int a = 0; a < t->ndim; a++)
            json_object_array_add(shape, json_object_new_int64(t->shape[a]));
        json_object_object_add(d, "shape", shape);
        json_object_array_add(offs, json_object_new_int64((int64_t)begin[i]));
        json_object_array_add(offs, json_object_new_int64((int64_t)(begin[i] + nbytes[i])));
        json_object_object_add(d, "data_offsets", offs);
        json_object_object_add(hdr, t->name, d);
    }
    free(begin);
    if (st) goto done;
    const char *js =
        json_object_to_json_string_ext(hdr, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
    size_t hl = strlen(js), padded = (hl + 7) & ~(size_t)7;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    if (!lmc_buf_append(&head, len8, 8) || !lmc_buf_append(&head, js, hl) ||
        !lmc_buf_append(&head, "        ", padded - hl)) {
        st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    lmc_atomic_file af;
    if ((st = lmc_atomic_open_mode(&af, path, mode))) goto done;
    st = lmc_atomic_write(&af, head.p, head.len);
    for (size_t j = 0; !st && j < n; j++)
        if (nbytes[order[j]]) st = lmc_atomic_write(&af, tensors[order[j]].data, nbytes[order[j]]);
    if (st)
        lmc_atomic_abort(&af);
    else
        st = lmc_atomic_commit(&af);
done:
    lmc_buf_free(&head);
    json_object_put(hdr);
    free(nbytes);
    free(order);
    return st;
}
