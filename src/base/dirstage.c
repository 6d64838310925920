/* Multi-file outputs written into a temporary sibling directory and moved
 * into place in one step (see lmc_dir_stage in file.h), so a crash or an
 * interrupt never leaves a directory mixing old and new files. */
#include "base/cleanup.h"
#include "base/error.h"
#include "base/file.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void stage_free(lmc_dir_stage *s) {
    lmc_tmp_unregister(s->slot);
    free(s->target);
    free(s->dir);
    s->target = s->dir = NULL;
    s->slot = -1;
}

lmc_status lmc_dir_stage_begin(lmc_dir_stage *s, const char *target) {
    memset(s, 0, sizeof *s);
    s->slot = -1;
    size_t n = strlen(target);
    while (n > 1 && target[n - 1] == '/') n--; /* "out/" names "out" */
    if (!(s->target = strndup(target, n))) return lmc_err(LMC_ERR_NOMEM, "%s: out of memory", target);
    struct stat st;
    /* an existing target by its real path: a symlink is written where it
     * points, and "." or "dir/.." get a real sibling */
    char *real = lstat(s->target, &st) == 0 ? realpath(s->target, NULL) : NULL;
    if (real) {
        free(s->target);
        s->target = real;
    }
    if (stat(s->target, &st) == 0 && !S_ISDIR(st.st_mode)) {
        lmc_status e = lmc_err(LMC_ERR_IO, "%s: exists and is not a directory", s->target);
        stage_free(s);
        return e;
    }
    for (int tries = 0; tries < 16; tries++) {
        free(s->dir);
        if (!(s->dir = lmc_sibling_temp_name(s->target, "tmp"))) break;
        if (mkdir(s->dir, 0700) == 0) {
            s->slot = lmc_tmp_register(s->dir, true);
            return LMC_OK;
        }
        if (errno != EEXIST) break;
    }
    lmc_status e = s->dir ? lmc_err(LMC_ERR_IO, "%s: cannot create directory: %s", s->dir,
                                    strerror(errno))
                          : lmc_err(LMC_ERR_NOMEM, "%s: out of memory", target);
    stage_free(s);
    return e;
}

void lmc_dir_stage_abort(lmc_dir_stage *s) {
    if (s->dir) lmc_remove_flat_dir(s->dir);
    stage_free(s);
}

/* Files of the existing target that the new output does not write are
 * hard-linked into the staging directory (so nothing the user kept there
 * is lost); a subdirectory cannot be carried over and is refused. */
static lmc_status carry_over(const lmc_dir_stage *s) {
    DIR *d = opendir(s->target);
    if (!d) return lmc_err(LMC_ERR_IO, "%s: cannot read directory: %s", s->target, strerror(errno));
    int sfd = open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    lmc_status st = sfd < 0 ? lmc_err(LMC_ERR_IO, "%s: %s", s->dir, strerror(errno)) : LMC_OK;
    struct dirent *e;
    while (!st && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        struct stat x;
        if (fstatat(sfd, e->d_name, &x, AT_SYMLINK_NOFOLLOW) == 0) continue; /* replaced */
        if (fstatat(dirfd(d), e->d_name, &x, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISDIR(x.st_mode))
            st = lmc_err(LMC_ERR_IO, "%s: holds the subdirectory '%s', which replacing the "
                         "directory would lose; move it away or choose another directory",
                         s->target, e->d_name);
        else if (linkat(dirfd(d), e->d_name, sfd, e->d_name, 0) != 0)
            st = lmc_err(LMC_ERR_IO, "%s: cannot keep '%s' in the new directory: %s", s->target,
                         e->d_name, strerror(errno));
    }
    if (sfd >= 0) close(sfd);
    closedir(d);
    return st;
}

/* Moves the staged directory to the target; returns where the old one
 * went (NULL when there was none) in *old. Signals wait meanwhile. */
static lmc_status swap_in(lmc_dir_stage *s, bool exists, char **old) {
    *old = NULL;
    if (!exists) {
        if (rename(s->dir, s->target) == 0) return LMC_OK;
        return lmc_err(LMC_ERR_IO, "rename %s -> %s: %s", s->dir, s->target, strerror(errno));
    }
    if (renameat2(AT_FDCWD, s->dir, AT_FDCWD, s->target, RENAME_EXCHANGE) == 0) {
        *old = strdup(s->dir); /* the staging name now holds the old directory */
        return *old ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "out of memory");
    }
    if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP)
        return lmc_err(LMC_ERR_IO, "exchange %s <-> %s: %s", s->dir, s->target, strerror(errno));
    /* No atomic exchange on this file system: two renames. */
    if (!(*old = lmc_sibling_temp_name(s->target, "old"))) return lmc_err(LMC_ERR_NOMEM, "out of memory");
    if (rename(s->target, *old) != 0) {
        lmc_status e = lmc_err(LMC_ERR_IO, "rename %s -> %s: %s", s->target, *old, strerror(errno));
        free(*old);
        *old = NULL;
        return e;
    }
    if (rename(s->dir, s->target) != 0) {
        lmc_status e = lmc_err(LMC_ERR_IO, "rename %s -> %s: %s", s->dir, s->target, strerror(errno));
        rename(*old, s->target); /* put the old one back */
        free(*old);
        *old = NULL;
        return e;
    }
    return LMC_OK;
}

lmc_status lmc_dir_stage_commit(lmc_dir_stage *s) {
    struct stat x;
    bool exists = stat(s->target, &x) == 0;
    lmc_status st = exists ? carry_over(s) : LMC_OK;
    if (!st && chmod(s->dir, 0777 & ~lmc_umask()) != 0)
        st = lmc_err(LMC_ERR_IO, "chmod %s: %s", s->dir, strerror(errno));
    int fd = st ? -1 : open(s->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (!st && (fd < 0 || fsync(fd) != 0))
        st = lmc_err(LMC_ERR_IO, "fsync of directory %s: %s", s->dir, strerror(errno));
    if (fd >= 0) close(fd);
    if (st) {
        lmc_dir_stage_abort(s);
        return st;
    }
    lmc_test_crash_point("stage-commit");
    sigset_t block, saved;
    sigemptyset(&block);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &block, &saved);
    char *old = NULL;
    st = swap_in(s, exists, &old);
    if (!st) {
        if (old) { /* from now on only the old one is temporary */
            lmc_tmp_repath(s->slot, old);
        } else {
            lmc_tmp_unregister(s->slot);
            s->slot = -1;
        }
        st = lmc_fsync_parent(s->target);
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (st && !old) {
        lmc_dir_stage_abort(s); /* the swap failed: the target is as it was */
        return st;
    }
    lmc_test_crash_point("stage-swapped");
    if (old && lmc_remove_flat_dir(old) != 0 && !st)
        st = lmc_err(LMC_ERR_IO, "%s: the new directory is in place, but its previous version "
                     "%s could not be removed: %s", s->target, old, strerror(errno));
    free(old);
    stage_free(s);
    return st;
}
