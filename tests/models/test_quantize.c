/* lmc_quantize_model against the quantized goldens of tests/golden/quant,
 * which tests/oracle/mlx_quant_goldens.py built from the same fp32 models
 * with numpy: every tensor (packed words, bf16 scales and biases, the float
 * tensors left as they were) must be byte-identical. Also modules whose
 * input size is not a multiple of the group (per-module `false`
 * overrides, and the result loads), and the errors. */
#include "base/error.h"
#include "base/json.h"
#include "check.h"
#include "formats/config.h"
#include "formats/safetensors.h"
#include "model_golden.h"
#include "scratch.h"
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

static void same_as_golden(const char *src, const char *variant, int bits, int group) {
    char in[512], gold[512], out[600], path[700], gpath[700];
    snprintf(in, sizeof in, "%s/tests/golden/models/%s", src_dir(), src);
    snprintf(gold, sizeof gold, "%s/tests/golden/quant/%s", src_dir(), variant);
    snprintf(out, sizeof out, "%s/%s", scratch_root("quantize"), variant);
    CHECK_MSG(lmc_quantize_model(in, out, bits, group, NULL, NULL) == LMC_OK, "%s: %s", variant,
              lmc_last_error());
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    snprintf(gpath, sizeof gpath, "%s/model.safetensors", gold);
    lmc_st_file *a = NULL, *b = NULL;
    CHECK(lmc_st_open(path, &a) == LMC_OK && lmc_st_open(gpath, &b) == LMC_OK);
    if (!a || !b) goto done;
    CHECK_EQ_INT((int)lmc_st_count(a), (int)lmc_st_count(b));
    size_t differ = 0, quantized = 0;
    for (size_t i = 0; i < lmc_st_count(b); i++) {
        const lmc_tensor_view *g = lmc_st_at(b, i), *t = lmc_st_find(a, g->name);
        CHECK_MSG(t != NULL, "%s: tensor %s missing", variant, g->name);
        if (!t) continue;
        bool same = t->dtype == g->dtype && t->ndim == g->ndim && t->nbytes == g->nbytes &&
                    !memcmp(t->shape, g->shape, sizeof t->shape[0] * (size_t)t->ndim) &&
                    !memcmp(t->data, g->data, t->nbytes);
        differ += !same;
        quantized += g->dtype == LMC_DT_U32;
        CHECK_MSG(same, "%s: tensor %s differs from the golden", variant, g->name);
    }
    CHECK(quantized >= 8);
    printf("%-12s %zu tensors (%zu quantized), %zu differ\n", variant, lmc_st_count(b), quantized,
           differ);
    lmc_model_config c;
    CHECK(lmc_config_load(out, &c, NULL, NULL) == LMC_OK);
    CHECK(c.quantized && c.q_bits == bits && c.q_group_size == group && c.q_n_overrides == 0);
done:
    lmc_st_close(a);
    lmc_st_close(b);
}

/* Groups of 128 over a hidden size of 64: only the down projections (128
 * inputs) are quantized; everything else stays fp32 and is listed as a
 * `false` override, and the checkpoint loads and generates. */
static void partial(void) {
    char in[512], out[600], path[700];
    snprintf(in, sizeof in, "%s/tests/golden/models/llama-fp32", src_dir());
    snprintf(out, sizeof out, "%s/partial", scratch_root("quantize"));
    CHECK_MSG(lmc_quantize_model(in, out, 2, 128, NULL, NULL) == LMC_OK, "%s", lmc_last_error());
    snprintf(path, sizeof path, "%s/model.safetensors", out);
    lmc_st_file *f = NULL;
    CHECK(lmc_st_open(path, &f) == LMC_OK);
    const lmc_tensor_view *d = f ? lmc_st_find(f, "model.layers.0.mlp.down_proj.weight") : NULL;
    const lmc_tensor_view *q = f ? lmc_st_find(f, "model.layers.0.self_attn.q_proj.weight") : NULL;
    CHECK(d && d->dtype == LMC_DT_U32 && d->shape[1] == 128 * 2 / 32);
    CHECK(q && q->dtype == LMC_DT_F32 && f && !lmc_st_find(f, "model.layers.0.self_attn.q_proj.scales"));
    lmc_st_close(f);
    lmc_model_config c;
    json_object *o = NULL;
    CHECK(lmc_config_load(out, &c, &o, NULL) == LMC_OK);
    json_object *qo = lmc_json_get(o, "quantization");
    json_object *ov = lmc_json_get(qo, "model.layers.0.self_attn.q_proj");
    CHECK(ov && json_object_is_type(ov, json_type_boolean) && !json_object_get_boolean(ov));
    CHECK(!lmc_json_get(qo, "model.layers.0.mlp.down_proj"));
    CHECK(c.quantized && c.q_n_overrides > 0);
    json_object_put(o);
    /* it loads, and its logits are finite and differ from the fp32 model's
     * only by the quantized down projections */
    loaded Lq, Lf;
    CHECK_MSG(load_model(out, &Lq, NULL) == LMC_OK, "%s", lmc_last_error());
    CHECK(load_model(in, &Lf, NULL) == LMC_OK);
    const int32_t ids[4] = {1, 17, 300, 42};
    size_t V = (size_t)Lf.cfg.vocab_size;
    float *a = malloc(V * sizeof *a), *b = malloc(V * sizeof *b);
    lmc_kv_cache *ca = NULL, *cb = NULL;
    CHECK(Lq.model && lmc_kv_cache_new(Lq.model, &ca) == LMC_OK &&
          lmc_model_forward(Lq.model, ca, ids, 4, a, false) == LMC_OK);
    CHECK(Lf.model && lmc_kv_cache_new(Lf.model, &cb) == LMC_OK &&
          lmc_model_forward(Lf.model, cb, ids, 4, b, false) == LMC_OK);
    double diff = 0, range = 0;
    bool finite = true;
    for (size_t i = 0; i < V; i++) {
        finite &= isfinite(a[i]) != 0;
        diff = fmax(diff, fabs((double)a[i] - b[i]));
        range = fmax(range, fabs((double)b[i]));
    }
    printf("2-bit down projections only: max |dlogit| %.4f (max |logit| %.3f)\n", diff, range);
    CHECK(finite && diff > 0 && diff < range);
    lmc_kv_cache_free(ca);
    lmc_kv_cache_free(cb);
    free(a), free(b);
    unload(&Lq);
    unload(&Lf);
}

static void errors(void) {
    char in[512], q[512], out[600];
    snprintf(in, sizeof in, "%s/tests/golden/models/llama-fp32", src_dir());
    snprintf(q, sizeof q, "%s/tests/golden/quant/llama-q4g64", src_dir());
    snprintf(out, sizeof out, "%s/err", scratch_root("quantize"));
    CHECK_ERR(lmc_quantize_model(in, out, 3, 64, NULL, NULL), LMC_ERR_UNSUPPORTED, "bits 3");
    CHECK_ERR(lmc_quantize_model(in, out, 4, 48, NULL, NULL), LMC_ERR_UNSUPPORTED, "group_size");
    CHECK_ERR(lmc_quantize_model(q, out, 4, 64, NULL, NULL), LMC_ERR_INVALID_ARG,
              "already quantized");
    CHECK_ERR(lmc_quantize_model(in, in, 4, 64, NULL, NULL), LMC_ERR_INVALID_ARG,
              "stays intact");
    CHECK_ERR(lmc_quantize_model("/nonexistent/model", out, 4, 64, NULL, NULL), LMC_ERR_NOT_FOUND,
              "not found");
    CHECK(!lmc_path_exists(out)); /* nothing written on failure */
}

/* Whether directories a and b hold the same file names with the same bytes. */
static bool same_dir(const char *a, const char *b) {
    DIR *d = opendir(a);
    if (!d) return false;
    struct dirent *e;
    size_t na = 0, nb = 0;
    bool same = true;
    char pa[1024], pb[1024];
    while (same && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        na++;
        snprintf(pa, sizeof pa, "%s/%s", a, e->d_name);
        snprintf(pb, sizeof pb, "%s/%s", b, e->d_name);
        char *x = NULL, *y = NULL;
        size_t lx = 0, ly = 0;
        same = !lmc_read_file(pa, pa, 1u << 28, &x, &lx) && !lmc_read_file(pb, pb, 1u << 28, &y, &ly) &&
               lx == ly && !memcmp(x, y, lx);
        free(x), free(y);
    }
    closedir(d);
    if (!(d = opendir(b))) return false;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') nb++;
    closedir(d);
    return same && na == nb;
}

static int leftovers(const char *dir, const char *prefix) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (!strncmp(e->d_name, prefix, strlen(prefix))) {
            char p[1024];
            snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
            scratch_rm_tree(p);
            n++;
        }
    if (d) closedir(d);
    return n;
}

/* `lmc quantize` over an existing output, killed (SIGKILL: a crash;
 * SIGTERM: an interrupt) at each step of writing: the directory is then
 * exactly the old output (8-bit) or exactly the new one (4-bit), never a
 * mix; after SIGTERM no temporary is left either. Run after
 * same_as_golden, whose outputs are the references. */
static void crash_midway(void) {
    char in[512], out[600], old_ref[600], new_ref[600];
    const char *root = scratch_root("quantize");
    snprintf(in, sizeof in, "%s/tests/golden/models/llama-fp32", src_dir());
    snprintf(out, sizeof out, "%s/crash", root);
    snprintf(old_ref, sizeof old_ref, "%s/llama-q8g32", root);
    snprintf(new_ref, sizeof new_ref, "%s/llama-q4g64", root);
    static const struct {
        const char *at;
        bool becomes_new;
    } cases[] = {
        {"quantize-weights-written", false}, {"stage-commit", false}, {"stage-swapped", true},
        {"quantize-weights-written:TERM", false}, {"stage-commit:TERM", false},
        {"stage-swapped:TERM", true},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK_EQ_INT(lmc_quantize_model(in, out, 8, 32, NULL, NULL), LMC_OK);
        CHECK(same_dir(out, old_ref));
        bool term = strstr(cases[i].at, ":TERM") != NULL;
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            setenv("LMC_TEST_CRASH_AT", cases[i].at, 1);
            lmc_quantize_model(in, out, 4, 64, NULL, NULL);
            _exit(0);
        }
        int status = 0;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK_MSG(WIFSIGNALED(status) && WTERMSIG(status) == (term ? SIGTERM : SIGKILL),
                  "%s: child status %#x", cases[i].at, status);
        bool is_old = same_dir(out, old_ref), is_new = same_dir(out, new_ref);
        CHECK_MSG(cases[i].becomes_new ? is_new : is_old, "%s: the directory is %s", cases[i].at,
                  is_old ? "the old one" : is_new ? "the new one" : "A MIX");
        int left = leftovers(root, ".crash.");
        if (term) CHECK_MSG(left == 0, "%s: %d temporaries left", cases[i].at, left);
        printf("crash at %-30s -> %s directory, %d temporaries left\n", cases[i].at,
               is_old ? "old" : is_new ? "new" : "MIXED", left);
    }
}

int main(void) {
    signal(SIGTERM, SIG_DFL); /* the cleanup handler installs where the default is */
    same_as_golden("llama-fp32", "llama-q4g64", 4, 64);
    same_as_golden("llama-fp32", "llama-q8g32", 8, 32);
    same_as_golden("qwen3-fp32", "qwen3-q4g64", 4, 64);
    same_as_golden("qwen3-fp32", "qwen3-q8g32", 8, 32);
    partial();
    crash_midway();
    errors();
    return check_summary("test_quantize");
}
