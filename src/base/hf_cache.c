/* Model arguments given as "org/name": found in the local Hugging Face hub
 * cache (the layout huggingface_hub writes: models--org--name/refs/main
 * naming a snapshot under snapshots/), never downloaded. An existing
 * directory always wins, so a local path is never reinterpreted. */
#include "base/buf.h"
#include "base/error.h"
#include "base/file.h"
#include "base/hf_cache.h"
#include <ctype.h>
#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#define MAX_ROOTS 4

/* "org/name": one slash, neither part empty or starting with '.', only the
 * characters Hub repository ids use. */
static bool is_repo_id(const char *s) {
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/')) return false;
    if (s[0] == '.' || slash[1] == '.') return false;
    for (const char *p = s; *p; p++)
        if (p != slash && !isalnum((unsigned char)*p) && !strchr("-_.", *p)) return false;
    return true;
}

/* Cache roots in huggingface_hub's order of precedence (NULLs skipped). */
static size_t cache_roots(char *roots[MAX_ROOTS]) {
    const char *hub = getenv("HF_HUB_CACHE"), *home = getenv("HF_HOME");
    const char *xdg = getenv("XDG_CACHE_HOME"), *user = getenv("HOME");
    size_t n = 0;
    if (hub && *hub) roots[n++] = strdup(hub);
    if (home && *home) roots[n++] = lmc_path_join(home, "hub");
    if (xdg && *xdg) roots[n++] = lmc_path_join(xdg, "huggingface/hub");
    if (user && *user) roots[n++] = lmc_path_join(user, ".cache/huggingface/hub");
    return n;
}

/* The snapshot refs/main names, or the only snapshot when refs/main is
 * absent. NULL when none fits; `why` says what was missing. */
static char *find_snapshot(const char *repo, const char **why) {
    char *ref = lmc_path_join(repo, "refs/main"), *rev = NULL, *snap = NULL;
    size_t len = 0;
    if (ref && lmc_path_exists(ref) && !lmc_read_file(ref, "refs/main", 256, &rev, &len)) {
        while (len && isspace((unsigned char)rev[len - 1])) rev[--len] = '\0';
        if (!len || strchr(rev, '/') || !strcmp(rev, "..")) *why = "refs/main is not a revision";
        else {
            lmc_buf b = {0};
            if (lmc_buf_printf(&b, "%s/snapshots/%s", repo, rev)) snap = lmc_buf_take(&b);
            lmc_buf_free(&b);
            if (snap && !lmc_is_dir(snap)) {
                *why = "refs/main names a missing snapshot";
                free(snap);
                snap = NULL;
            }
        }
    } else {
        lmc_err_clear();
        char *dir = lmc_path_join(repo, "snapshots");
        DIR *d = dir ? opendir(dir) : NULL;
        size_t n = 0;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (e->d_name[0] != '.' && n++ == 0) snap = lmc_path_join(dir, e->d_name);
        if (d) closedir(d);
        free(dir);
        if (n != 1) {
            *why = n ? "no refs/main and several snapshots" : "no refs/main and no snapshot";
            free(snap);
            snap = NULL;
        }
    }
    free(ref);
    free(rev);
    return snap;
}

lmc_status lmc_model_dir_resolve(const char *model, char **path) {
    if (!model || !*model || !path)
        return lmc_err(LMC_ERR_INVALID_ARG, "lmc_model_dir_resolve: model and path are required");
    *path = NULL;
    if (lmc_is_dir(model) || !is_repo_id(model)) {
        *path = strdup(model);
        return *path ? LMC_OK : lmc_err(LMC_ERR_NOMEM, "%s: out of memory", model);
    }
    char *roots[MAX_ROOTS];
    size_t n = cache_roots(roots);
    lmc_buf tried = {0};
    const char *slash = strchr(model, '/');
    lmc_status st = LMC_OK;
    for (size_t i = 0; i < n && !*path && !st; i++) {
        lmc_buf r = {0};
        if (!roots[i] || !lmc_buf_printf(&r, "%s/models--%.*s--%s", roots[i],
                                         (int)(slash - model), model, slash + 1)) {
            st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", model);
            lmc_buf_free(&r);
            break;
        }
        char *repo = lmc_buf_take(&r);
        const char *why = "not a directory";
        if (lmc_is_dir(repo)) *path = find_snapshot(repo, &why);
        if (!*path && !lmc_buf_printf(&tried, "%s%s (%s)", tried.len ? ", " : "", repo, why))
            st = lmc_err(LMC_ERR_NOMEM, "%s: out of memory", model);
        free(repo);
    }
    for (size_t i = 0; i < n; i++) free(roots[i]);
    if (!*path && !st)
        st = lmc_err(LMC_ERR_NOT_FOUND,
                     "%s: no such directory, and not in the local Hugging Face cache "
                     "(nothing is downloaded); tried: %s",
                     model, tried.len ? tried.p : "no cache directory (HF_HUB_CACHE, HF_HOME, "
                                                     "XDG_CACHE_HOME and HOME are unset)");
    lmc_buf_free(&tried);
    return st;
}

lmc_status lmc_load_options_resolve(const lmc_load_options *in, lmc_load_options *out,
                                    char **model, char **tok) {
    *out = *in;
    *model = *tok = NULL;
    lmc_status st = lmc_model_dir_resolve(in->model_dir, model);
    if (!st && in->tokenizer_dir && *in->tokenizer_dir)
        st = lmc_model_dir_resolve(in->tokenizer_dir, tok);
    if (st) {
        free(*model);
        *model = NULL;
        return st;
    }
    out->model_dir = *model;
    if (*tok) out->tokenizer_dir = *tok;
    return LMC_OK;
}
