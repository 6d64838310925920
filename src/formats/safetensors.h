/* safetensors: read via mmap (validated), write atomically. */
#ifndef LMC_FORMATS_SAFETENSORS_H
#define LMC_FORMATS_SAFETENSORS_H
#include "base/file.h"
#include "lmc.h"
#include <stdint.h>

typedef enum {
    LMC_DT_F32,
    LMC_DT_F16,
    LMC_DT_BF16,
    LMC_DT_F64,
    LMC_DT_I64,
    LMC_DT_I32,
    LMC_DT_U32,
    LMC_DT_I16,
    LMC_DT_I8,
    LMC_DT_U8,
    LMC_DT_BOOL,
} lmc_dtype;

size_t lmc_dtype_size(lmc_dtype dt);
const char *lmc_dtype_name(lmc_dtype dt);        /* "F32", "BF16", ... */
bool lmc_dtype_parse(const char *name, lmc_dtype *out);

#define LMC_MAX_DIMS 8
typedef struct {
    const char *name;       /* owned by the file/set */
    lmc_dtype dtype;
    int ndim;
    int64_t shape[LMC_MAX_DIMS];
    const void *data;       /* points into the mapping; never written */
    size_t nbytes;
    int64_t numel;
} lmc_tensor_view;

typedef struct lmc_st_file lmc_st_file;

/* Map and validate one file: header length within the file and a cap,
 * JSON object, known dtypes, shape*dtype size == byte span, offsets inside
 * the data section, no overlap. Errors name the file and tensor. Tensor
 * data is always aligned to its element size (a file whose layout is not
 * gets its data section copied to aligned memory). */
lmc_status lmc_st_open(const char *path, lmc_st_file **out);
void lmc_st_close(lmc_st_file *f);
size_t lmc_st_count(const lmc_st_file *f);
const lmc_tensor_view *lmc_st_at(const lmc_st_file *f, size_t i);
const lmc_tensor_view *lmc_st_find(const lmc_st_file *f, const char *name);
/* "__metadata__" string map (NULL when absent). */
const char *lmc_st_metadata(const lmc_st_file *f, const char *key);

/* A set of shards merged by tensor name (duplicate names are an error). */
typedef struct lmc_st_set lmc_st_set;
/* Discover weights in a model directory: model.safetensors, or the shards
 * named by model.safetensors.index.json, or every *.safetensors (sorted). */
lmc_status lmc_st_set_open_dir(const char *dir, lmc_st_set **out);
void lmc_st_set_free(lmc_st_set *s);
size_t lmc_st_set_count(const lmc_st_set *s);
const lmc_tensor_view *lmc_st_set_at(const lmc_st_set *s, size_t i);
const lmc_tensor_view *lmc_st_set_find(const lmc_st_set *s, const char *name);

/* Writing: the header lists tensors in the given order; data (contiguous,
 * little-endian) is laid out largest element size first so every tensor is
 * aligned, with no gaps (as other safetensors readers require). The header
 * is space-padded to 8 bytes. Written to a temp file then renamed. */
typedef struct {
    const char *name;
    lmc_dtype dtype;
    int ndim;
    int64_t shape[LMC_MAX_DIMS];
    const void *data;
} lmc_st_write_tensor;
lmc_status lmc_st_write(const char *path, const lmc_st_write_tensor *tensors, size_t n,
                        const char *const *meta_kv /* key,value,...,NULL or NULL */);
/* As lmc_st_write, with the file's final mode (LMC_MODE_PUBLIC/PRIVATE). */
lmc_status lmc_st_write_mode(const char *path, const lmc_st_write_tensor *tensors, size_t n,
                             const char *const *meta_kv, unsigned mode);

/* Element conversion helpers (used by CPU kernels and writers). */
float lmc_bf16_to_f32(uint16_t h);
uint16_t lmc_f32_to_bf16(float f); /* round to nearest even */
float lmc_f16_to_f32(uint16_t h);
uint16_t lmc_f32_to_f16(float f);
/* Widen `n` elements of `dt` (F32/F16/BF16/F64) to float; other dtypes
 * are not float data and give zeros. */
void lmc_to_f32(lmc_dtype dt, const void *src, float *dst, size_t n);

#endif
