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

/* Final modes of written files: public ones get 0666 less the umask,
 * private ones (prompt caches) 0600. */
#define LMC_MODE_PUBLIC 0666
#define LMC_MODE_PRIVATE 0600

/* Write via a temporary sibling ".<name>.tmp-<random>" (created with
 * O_EXCL|O_NOFOLLOW, mode 0600, removed on SIGINT/SIGTERM) + fsync +
 * rename + fsync of the directory, so a crash never leaves a half-written
 * file in place of a good one, and a symlink at either path is replaced,
 * never followed. */
lmc_status lmc_write_file_atomic(const char *path, const void *data, size_t len);

/* Streaming variant: open a temp file, write pieces, then commit or abort. */
typedef struct {
    int fd, slot;
    unsigned mode;
    char *path, *tmp;
} lmc_atomic_file;
lmc_status lmc_atomic_open(lmc_atomic_file *f, const char *path);
lmc_status lmc_atomic_open_mode(lmc_atomic_file *f, const char *path, unsigned mode);
lmc_status lmc_atomic_write(lmc_atomic_file *f, const void *data, size_t len);
lmc_status lmc_atomic_commit(lmc_atomic_file *f);
void lmc_atomic_abort(lmc_atomic_file *f);

/* Create `path` as a new file (O_CREAT|O_EXCL|O_NOFOLLOW, mode 0600):
 * an existing file or symlink there is an error (EEXIST), never followed.
 * Returns the fd or -1 with errno set. */
int lmc_create_new_file(const char *path);
/* `n` unpredictable lowercase hex characters and a NUL into out[n + 1]. */
void lmc_random_hex(char *out, size_t n);
/* "<dir of path>/.<base name>.<tag>-<12 random hex>" (malloc'd). */
char *lmc_sibling_temp_name(const char *path, const char *tag);
/* fsync the directory holding `path` (after a rename into it). */
lmc_status lmc_fsync_parent(const char *path);
/* The process umask, read without changing it. */
unsigned lmc_umask(void);

/* A multi-file output (a model or adapter directory) written into a
 * temporary sibling ".<name>.tmp-<random>" and moved into place by
 * commit: a crash leaves the old directory or the new one, never a mix.
 * An existing target is swapped out (atomically, renameat2 EXCHANGE) and
 * removed only after the new one is in place; files in it that the new
 * output does not write are kept (hard-linked into the new one), and a
 * subdirectory in it is refused. An existing target is taken by its real
 * path (a symlinked output directory is written where it points). The
 * staging directory is removed on abort and on SIGINT/SIGTERM. */
typedef struct {
    char *target, *dir; /* dir: where to write the files meanwhile */
    int slot;
} lmc_dir_stage;
lmc_status lmc_dir_stage_begin(lmc_dir_stage *s, const char *target);
lmc_status lmc_dir_stage_commit(lmc_dir_stage *s);
void lmc_dir_stage_abort(lmc_dir_stage *s);

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
