/* Crash-safe writers: temporaries that cannot be pre-placed or followed
 * through a symlink, final modes, staged directories swapped into place,
 * and temporaries removed when the process is interrupted. */
#include "base/cleanup.h"
#include "base/error.h"
#include "base/file.h"
#include "check.h"
#include "scratch.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[512];

static char *in_root(const char *name) {
    static char buf[32][1024];
    static int k;
    k = (k + 1) % 32;
    snprintf(buf[k], sizeof buf[k], "%s/%s", root, name);
    return buf[k];
}

static char *slurp(const char *path) {
    char *t = NULL;
    size_t n;
    return lmc_read_file(path, path, 1 << 20, &t, &n) ? NULL : t;
}

static void put(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) fputs(text, f), fclose(f);
}

/* Entries of `dir` whose name starts with `prefix`. */
static int count_prefixed(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) n++;
    if (d) closedir(d);
    return n;
}

static unsigned mode_of(const char *path) {
    struct stat st;
    return lstat(path, &st) ? 0 : (unsigned)st.st_mode & 0777;
}

static void symlinks_not_followed(void) {
    char *victim = in_root("victim"), *link_ = in_root("link"), *dangling = in_root("dangling");
    put(victim, "precious");
    /* the primitive every temporary is created with */
    CHECK(symlink(victim, link_) == 0);
    CHECK(symlink(in_root("nowhere"), dangling) == 0);
    CHECK(lmc_create_new_file(link_) < 0 && errno == EEXIST);
    CHECK(lmc_create_new_file(dangling) < 0 && errno == EEXIST);
    CHECK(!lmc_path_exists(in_root("nowhere")));
    int fd = lmc_create_new_file(in_root("fresh"));
    CHECK(fd >= 0 && mode_of(in_root("fresh")) == 0600);
    if (fd >= 0) close(fd);
    /* a symlink at the target is replaced by the file, never written through */
    CHECK_EQ_INT(lmc_write_file_atomic(link_, "new", 3), LMC_OK);
    char *v = slurp(victim), *l = slurp(link_);
    CHECK(v && !strcmp(v, "precious") && l && !strcmp(l, "new"));
    struct stat st;
    CHECK(lstat(link_, &st) == 0 && S_ISREG(st.st_mode));
    free(v), free(l);
    CHECK_EQ_INT(count_prefixed(root, ".link.tmp-"), 0);
}

static void temp_names_and_modes(void) {
    lmc_atomic_file a, b;
    char *p = in_root("out.bin");
    CHECK_EQ_INT(lmc_atomic_open(&a, p), LMC_OK);
    CHECK_EQ_INT(lmc_atomic_open(&b, p), LMC_OK);
    /* ".out.bin.tmp-" + 12 random hex characters, distinct each time */
    CHECK(strlen(a.tmp) == strlen(root) + 1 + strlen(".out.bin.tmp-") + 12);
    CHECK(strstr(a.tmp, "/.out.bin.tmp-") && strcmp(a.tmp, b.tmp));
    CHECK(mode_of(a.tmp) == 0600);
    lmc_atomic_abort(&b);
    CHECK_EQ_INT(lmc_atomic_write(&a, "x", 1), LMC_OK);
    CHECK_EQ_INT(lmc_atomic_commit(&a), LMC_OK);
    CHECK(mode_of(p) == (0666 & ~lmc_umask()));
    CHECK_EQ_INT(lmc_atomic_open_mode(&a, p, LMC_MODE_PRIVATE), LMC_OK);
    CHECK_EQ_INT(lmc_atomic_commit(&a), LMC_OK);
    CHECK(mode_of(p) == 0600);
    CHECK_EQ_INT(count_prefixed(root, ".out.bin.tmp-"), 0);
}

static void staged_dirs(void) {
    char *out = in_root("model");
    lmc_dir_stage s;
    /* new directory */
    CHECK_EQ_INT(lmc_dir_stage_begin(&s, out), LMC_OK);
    CHECK(!lmc_path_exists(out) && lmc_is_dir(s.dir));
    put(in_root("x"), "");
    char *w = lmc_path_join(s.dir, "w.bin");
    CHECK_EQ_INT(lmc_write_file_atomic(w, "v1", 2), LMC_OK);
    free(w);
    CHECK_EQ_INT(lmc_dir_stage_commit(&s), LMC_OK);
    char *got = slurp(in_root("model/w.bin"));
    CHECK(got && !strcmp(got, "v1"));
    free(got);
    CHECK(mode_of(out) == (0777 & ~lmc_umask()));
    /* replacing it: the user's own file there is kept, ours replaced */
    put(in_root("model/notes.txt"), "mine");
    CHECK_EQ_INT(lmc_dir_stage_begin(&s, out), LMC_OK);
    w = lmc_path_join(s.dir, "w.bin");
    CHECK_EQ_INT(lmc_write_file_atomic(w, "v2", 2), LMC_OK);
    free(w);
    CHECK_EQ_INT(lmc_dir_stage_commit(&s), LMC_OK);
    char *a = slurp(in_root("model/w.bin")), *n = slurp(in_root("model/notes.txt"));
    CHECK(a && !strcmp(a, "v2") && n && !strcmp(n, "mine"));
    free(a), free(n);
    CHECK_EQ_INT(count_prefixed(root, ".model."), 0);
    /* a subdirectory cannot be carried over: refused, old directory intact */
    CHECK(mkdir(in_root("model/sub"), 0700) == 0);
    CHECK_EQ_INT(lmc_dir_stage_begin(&s, out), LMC_OK);
    CHECK_ERR(lmc_dir_stage_commit(&s), LMC_ERR_IO, "holds the subdirectory 'sub'");
    CHECK(lmc_is_dir(in_root("model/sub")) && count_prefixed(root, ".model.") == 0);
    rmdir(in_root("model/sub"));
    /* abort leaves nothing behind; a file at the target is refused */
    CHECK_EQ_INT(lmc_dir_stage_begin(&s, out), LMC_OK);
    lmc_dir_stage_abort(&s);
    CHECK_EQ_INT(count_prefixed(root, ".model."), 0);
    CHECK_ERR(lmc_dir_stage_begin(&s, in_root("victim")), LMC_ERR_IO, "is not a directory");
}

/* A child interrupted by `sig` while a staged directory and a temporary
 * file are open: both are gone afterwards, the target never appeared. */
static void interrupted(int sig) {
    pid_t pid = fork();
    if (pid == 0) {
        lmc_dir_stage s;
        lmc_atomic_file f;
        if (lmc_dir_stage_begin(&s, in_root("sigout"))) _exit(3);
        char *w = lmc_path_join(s.dir, "w.bin");
        if (lmc_write_file_atomic(w, "x", 1) || lmc_atomic_open(&f, in_root("sigfile"))) _exit(4);
        raise(sig);
        _exit(5);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == sig, "child status %#x", status);
    CHECK(!lmc_path_exists(in_root("sigout")));
    CHECK_EQ_INT(count_prefixed(root, ".sigout.tmp-"), 0);
    CHECK_EQ_INT(count_prefixed(root, ".sigfile.tmp-"), 0);
}

int main(void) {
    /* the cleanup handler goes only where the default action is (a shell
     * may start tests with SIGINT ignored) */
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    snprintf(root, sizeof root, "%s", scratch_root("writers"));
    symlinks_not_followed();
    temp_names_and_modes();
    staged_dirs();
    interrupted(SIGTERM);
    interrupted(SIGINT);
    return check_summary("test_writers");
}
