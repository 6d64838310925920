/* Model arguments as "org/name" in a fake local Hugging Face cache: the
 * precedence of HF_HUB_CACHE / HF_HOME / XDG_CACHE_HOME / HOME, refs/main,
 * the single-snapshot fallback, local directories winning, the error that
 * lists every path tried, and a model loaded and run through the cache. */
#include "check.h"
#include "lmc.h"
#include "scratch.h"

static char root[512];

static void mkdirs(const char *rel) {
    char p[1024], *s;
    snprintf(p, sizeof p, "%s/%s", root, rel);
    for (s = p + strlen(root) + 1; (s = strchr(s, '/')); s++) {
        *s = 0;
        mkdir(p, 0755);
        *s = '/';
    }
    mkdir(p, 0755);
}

static void put(const char *rel, const char *text) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    if (!f) exit(1);
    fputs(text, f);
    fclose(f);
}

static char *abs_path(const char *rel) {
    static char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    return p;
}

/* Resolves `model` and compares with root/<want> (NULL: expect failure). */
static void expect(const char *model, const char *want) {
    char *got = NULL;
    lmc_status st = lmc_model_dir_resolve(model, &got);
    if (want) {
        CHECK_MSG(st == LMC_OK, "%s: %s", model, lmc_last_error());
        CHECK_STREQ(got, abs_path(want));
    } else {
        CHECK_MSG(st == LMC_ERR_NOT_FOUND, "%s resolved to %s", model, got ? got : "?");
    }
    lmc_free(got);
}

static void clear_env(void) {
    unsetenv("HF_HUB_CACHE");
    unsetenv("HF_HOME");
    unsetenv("XDG_CACHE_HOME");
    unsetenv("HOME");
}

int main(void) {
    snprintf(root, sizeof root, "%s", scratch_root("hfcache"));
    clear_env();
    /* HOME's default cache: refs/main picks one of two snapshots. */
    mkdirs("home/.cache/huggingface/hub/models--org--tiny/snapshots/aaa");
    mkdirs("home/.cache/huggingface/hub/models--org--tiny/snapshots/bbb");
    mkdirs("home/.cache/huggingface/hub/models--org--tiny/refs");
    put("home/.cache/huggingface/hub/models--org--tiny/refs/main", "bbb\n");
    setenv("HOME", abs_path("home"), 1);
    expect("org/tiny", "home/.cache/huggingface/hub/models--org--tiny/snapshots/bbb");

    /* HF_HOME/hub comes before HOME; one snapshot and no refs/main. */
    mkdirs("hfhome/hub/models--org--tiny/snapshots/ccc");
    setenv("HF_HOME", abs_path("hfhome"), 1);
    expect("org/tiny", "hfhome/hub/models--org--tiny/snapshots/ccc");

    /* HF_HUB_CACHE comes first of all. */
    mkdirs("hubcache/models--org--tiny/snapshots/ddd");
    setenv("HF_HUB_CACHE", abs_path("hubcache"), 1);
    expect("org/tiny", "hubcache/models--org--tiny/snapshots/ddd");

    /* Two snapshots and no refs/main there: ambiguous, so the next root. */
    mkdirs("hubcache/models--org--tiny/snapshots/eee");
    expect("org/tiny", "hfhome/hub/models--org--tiny/snapshots/ccc");

    /* A local directory of the same name wins over the cache. */
    char cwd[1024];
    if (!getcwd(cwd, sizeof cwd) || chdir(root)) return 1;
    mkdirs("org/tiny");
    char *got = NULL;
    CHECK(lmc_model_dir_resolve("org/tiny", &got) == LMC_OK);
    CHECK_STREQ(got, "org/tiny");
    lmc_free(got);
    if (chdir(cwd)) return 1;

    /* Not a repo id and not a directory: passed through for the loader's
     * own "model directory not found". */
    CHECK(lmc_model_dir_resolve("no/such/dir", &got) == LMC_OK);
    CHECK_STREQ(got, "no/such/dir");
    lmc_free(got);

    /* Missing everywhere: every path tried is named, with why. */
    put("home/.cache/huggingface/hub/models--org--tiny/refs/main", "zzz\n");
    expect("org/absent", NULL);
    const char *msg = lmc_last_error();
    CHECK_MSG(strstr(msg, "hubcache/models--org--absent (not a directory)") &&
                  strstr(msg, "hfhome/hub/models--org--absent") &&
                  strstr(msg, "home/.cache/huggingface/hub/models--org--absent") &&
                  strstr(msg, "nothing is downloaded"),
              "%s", msg);
    clear_env();
    CHECK_ERR(lmc_model_dir_resolve("org/absent", &got), LMC_ERR_NOT_FOUND,
              "no cache directory");
    CHECK_ERR(lmc_model_dir_resolve(NULL, &got), LMC_ERR_INVALID_ARG, "required");

    /* refs/main naming a missing snapshot is reported as such. */
    setenv("HOME", abs_path("home"), 1);
    expect("org/tiny", NULL);
    CHECK_MSG(strstr(lmc_last_error(), "refs/main names a missing snapshot"), "%s",
              lmc_last_error());

    /* A real model through the cache: the snapshot links to the files, as
     * huggingface_hub lays them out, and it loads and generates. */
    const char *src = getenv("LMC_SOURCE_DIR");
    char model[1024];
    snprintf(model, sizeof model, "%s/models/stories260K", src && *src ? src : ".");
    mkdirs("hub2/models--karpathy--stories260K/snapshots/0123abc");
    mkdirs("hub2/models--karpathy--stories260K/refs");
    put("hub2/models--karpathy--stories260K/refs/main", "0123abc");
    const char *files[] = {"config.json", "generation_config.json", "model.safetensors",
                           "tokenizer.json", "tokenizer_config.json"};
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        char rel[1100], from[4096], to[1100];
        snprintf(rel, sizeof rel, "%s/%s", model, files[i]);
        CHECK(realpath(rel, from) != NULL);
        snprintf(to, sizeof to, "%s/hub2/models--karpathy--stories260K/snapshots/0123abc/%s",
                 root, files[i]);
        CHECK(symlink(from, to) == 0);
    }
    setenv("HF_HUB_CACHE", abs_path("hub2"), 1);
    lmc_load_options lo = {.model_dir = "karpathy/stories260K"};
    lmc_context *ctx = NULL;
    CHECK_MSG(lmc_context_load(&lo, &ctx) == LMC_OK, "%s", lmc_last_error());
    if (ctx) {
        lmc_gen_params p;
        lmc_gen_params_default(&p);
        p.max_tokens = 5;
        char *text = NULL;
        CHECK(lmc_generate_text(ctx, "Once upon a time", &p, &text, NULL) == LMC_OK);
        CHECK(text && strlen(text) > 0);
        lmc_free(text);
        lmc_context_free(ctx);
    }
    lo.model_dir = "karpathy/absent";
    CHECK_ERR(lmc_context_load(&lo, &ctx), LMC_ERR_NOT_FOUND, "models--karpathy--absent");
    return check_summary("test_hf_cache");
}
