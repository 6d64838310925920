/* Bounded, non-blocking file access: every open refuses non-regular files
 * (FIFOs, devices, directories) without blocking and caps what it reads. */
#ifndef LMC_BASE_FILE_H
#define LMC_BASE_FILE_H
#include "lmc.h"
#include <stdbool.h>
#include <stddef.h>

/* Read a whole regular file (NUL-terminated copy in *out, caller frees).
 * `what` names the file in messages ("config.json"). Missing file ->
 * LMC_ERR_NOT_FOUND; non-regular -> LMC_ERR_IO; larger than max_bytes ->
 * LMC_ERR_LIMIT. */
lmc_status lmc_read_file(const char *path, const char *what, size_t max_bytes,
                         char **out, size_t *out_len);

typedef struct {
    void *data;
    size_t size;
} lmc_mapping;

/* Read-only private mapping of a regular file (size 0 maps to data=NULL). */
lmc_status lmc_map_file(const char *path, const char *what, lmc_mapping *m);
void lmc_unmap(lmc_mapping *m);

/* Write via "<path>.tmp.<pid>" + fsync + rename so a crash never leaves a
 * half-written file in place of a good one. */
lmc_status lmc_write_file_atomic(const char *path, const void *data, size_t len);

/* Streaming variant: open a temp file, write pieces, then commit or abort. */
typedef struct {
    int fd;
    char *path, *tmp;
} lmc_atomic_file;
lmc_status lmc_atomic_open(lmc_atomic_file *f, const char *path);
lmc_status lmc_atomic_write(lmc_atomic_file *f, const void *data, size_t len);
lmc_status lmc_atomic_commit(lmc_atomic_file *f);
void lmc_atomic_abort(lmc_atomic_file *f);

/* "<dir>/<name>" (malloc'd, NULL on OOM). */
char *lmc_path_join(const char *dir, const char *name);
/* True for an existing path of any kind (no open, so FIFOs are safe). */
bool lmc_path_exists(const char *path);
bool lmc_is_dir(const char *path);
/* Whether two existing paths name the same file or directory (after
 * resolving links and "..") — a derived checkpoint must not overwrite
 * its source. */
bool lmc_same_path(const char *a, const char *b);
/* `dir` as a directory: created (one level) when missing; an existing
 * non-directory is an error. */
lmc_status lmc_ensure_dir(const char *dir);
/* Copy src_dir/name to dst_dir/name (written atomically); a missing source
 * is an error only when `required`. */
lmc_status lmc_copy_file(const char *src_dir, const char *dst_dir, const char *name,
                         bool required);
/* The files beside a checkpoint's weights and config that a derived
 * checkpoint keeps (generation config, tokenizer, chat template), each
 * copied when present. */
lmc_status lmc_copy_model_side_files(const char *src_dir, const char *dst_dir);

#endif
