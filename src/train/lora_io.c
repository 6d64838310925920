/* LoRA adapters on disk in PEFT's format (adapter_model.safetensors +
 * adapter_config.json), loading them back with checks, and fusing them
 * into a copy of the base model. */
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "train/lora.h"
#include <cblas.h>
#include <errno.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define ADAPTER_WEIGHTS "adapter_model.safetensors"
#define ADAPTER_CONFIG "adapter_config.json"
#define MAX_ADAPTER_CONFIG_BYTES (1u << 20)

/* ------------------------------------------------------------ save */

static char *config_json(const lmc_lora_net *net, const char *base_model) {
    json_object *o = json_object_new_object();
    json_object *tm = json_object_new_array();
    for (int m = 0; m < LORA_N_MODULES; m++)
        if (net->shape.targets & (1u << m))
            json_object_array_add(tm, json_object_new_string(lmc_lora_module_name(m)));
    json_object *layers = NULL;
    if (net->first_layer > 0) {
        layers = json_object_new_array();
        for (size_t l = net->first_layer; l < net->w.n_layers; l++)
            json_object_array_add(layers, json_object_new_int64((int64_t)l));
    }
    json_object_object_add(o, "alpha_pattern", json_object_new_object());
    json_object_object_add(o, "base_model_name_or_path",
                           base_model ? json_object_new_string(base_model) : NULL);
    json_object_object_add(o, "bias", json_object_new_string("none"));
    json_object_object_add(o, "fan_in_fan_out", json_object_new_boolean(0));
    json_object_object_add(o, "inference_mode", json_object_new_boolean(1));
    json_object_object_add(o, "init_lora_weights", json_object_new_boolean(1));
    json_object_object_add(o, "layers_pattern", NULL);
    json_object_object_add(o, "layers_to_transform", layers);
    json_object_object_add(o, "lora_alpha", json_object_new_double((double)net->shape.alpha));
    json_object_object_add(o, "lora_dropout", json_object_new_double(0.0));
    json_object_object_add(o, "modules_to_save", NULL);
    json_object_object_add(o, "peft_type", json_object_new_string("LORA"));
    json_object_object_add(o, "r", json_object_new_int(net->shape.rank));
    json_object_object_add(o, "rank_pattern", json_object_new_object());
    json_object_object_add(o, "revision", NULL);
    json_object_object_add(o, "target_modules", tm);
    json_object_object_add(o, "task_type", json_object_new_string("CAUSAL_LM"));
    json_object_object_add(o, "use_dora", json_object_new_boolean(0));
    json_object_object_add(o, "use_rslora", json_object_new_boolean(0));
    const char *s = json_object_to_json_string_ext(
        o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_SPACED | JSON_C_TO_STRING_NOSLASHESCAPE);
    char *copy = s ? strdup(s) : NULL;
    json_object_put(o);
    return copy;
}

lmc_status lmc_lora_save(const lmc_lora_net *net, const char *dir, const char *base_model) {
    if (!net || !dir || !*dir)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora save: adapter directory is required");
    lmc_dir_stage stage;
    lmc_status st = lmc_dir_stage_begin(&stage, dir);
    if (st) return st;
    size_t n = net->n_ad * 2;
    lmc_st_write_tensor *t = calloc(n ? n : 1, sizeof *t);
    char (*names)[192] = calloc(n ? n : 1, sizeof *names);
    char *cfg = config_json(net, base_model);
    char *wpath = lmc_path_join(stage.dir, ADAPTER_WEIGHTS);
    char *cpath = lmc_path_join(stage.dir, ADAPTER_CONFIG);
    if (!t || !names || !cfg || !wpath || !cpath) {
        st = lmc_err(LMC_ERR_NOMEM, "lora save: out of memory");
        goto done;
    }
    for (size_t i = 0; i < net->n_ad; i++) {
        const lmc_lora_adapter *a = &net->ad[i];
        for (int b = 0; b < 2; b++) {
            lmc_st_write_tensor *w = &t[2 * i + (size_t)b];
            lmc_lora_key(a, b, names[2 * i + (size_t)b], sizeof names[0]);
            w->name = names[2 * i + (size_t)b];
            w->dtype = LMC_DT_F32;
            w->ndim = 2;
            w->shape[0] = b ? a->out : net->shape.rank;
            w->shape[1] = b ? net->shape.rank : a->in;
            w->data = b ? a->B : a->A;
        }
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if ((st = lmc_st_write(wpath, t, n, meta))) goto done;
    st = lmc_write_file_atomic(cpath, cfg, strlen(cfg));
    if (!st) st = lmc_dir_stage_commit(&stage); /* the adapter replaces the old one at once */
done:
    if (st && stage.dir) lmc_dir_stage_abort(&stage);
    free(t), free(names), free(cfg), free(wpath), free(cpath);
    return st;
}

/* ------------------------------------------------------------ config */

typedef struct {
    int64_t r;
    double alpha;
    unsigned targets;
    bool rslora;
    int64_t *layers; /* layers_to_transform, NULL when absent */
    size_t n_layers;
} adapter_cfg;

static lmc_status read_adapter_cfg(const char *dir, adapter_cfg *c) {
    memset(c, 0, sizeof *c);
    char *path = lmc_path_join(dir, ADAPTER_CONFIG);
    if (!path) return lmc_err(LMC_ERR_NOMEM, "out of memory");
    json_object *o = NULL;
    lmc_status st = lmc_json_load_file(path, path, MAX_ADAPTER_CONFIG_BYTES, &o, NULL);
    if (st) {
        free(path);
        return st;
    }
    bool bad = false;
    const char *pt = lmc_json_str(o, "peft_type", &bad);
    if (!pt || strcmp(pt, "LORA")) {
        st = lmc_err(LMC_ERR_UNSUPPORTED, "%s: peft_type is '%s', expected 'LORA'", path,
                     pt ? pt : "(missing)");
        goto done;
    }
    if (!lmc_json_int(o, "r", &c->r, &bad) || c->r <= 0 || c->r > 4096) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: 'r' must be an integer in 1..4096", path);
        goto done;
    }
    /* Beyond FLT_MAX the float scale is infinite: every fused weight inf/NaN. */
    if (!lmc_json_double(o, "lora_alpha", &c->alpha, &bad) || !(c->alpha > 0.0) ||
        !(c->alpha <= FLT_MAX)) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: 'lora_alpha' must be a positive finite number", path);
        goto done;
    }
    bool flag = false;
    if (lmc_json_bool(o, "use_dora", &flag, &bad) && flag) {
        st = lmc_err(LMC_ERR_UNSUPPORTED, "%s: DoRA adapters (use_dora) are not supported", path);
        goto done;
    }
    if (lmc_json_bool(o, "use_rslora", &flag, &bad)) c->rslora = flag;
    json_object *tm = lmc_json_get(o, "target_modules");
    if (tm && json_object_is_type(tm, json_type_string)) {
        st = lmc_lora_parse_targets(json_object_get_string(tm), &c->targets);
    } else if (tm && json_object_is_type(tm, json_type_array) && json_object_array_length(tm)) {
        for (size_t i = 0; i < json_object_array_length(tm) && !st; i++) {
            json_object *e = json_object_array_get_idx(tm, i);
            unsigned bit = 0;
            if (!json_object_is_type(e, json_type_string))
                st = lmc_err(LMC_ERR_FORMAT, "%s: target_modules[%zu] is not a string", path, i);
            else
                st = lmc_lora_parse_targets(json_object_get_string(e), &bit);
            c->targets |= bit;
        }
    } else {
        st = lmc_err(LMC_ERR_FORMAT, "%s: 'target_modules' must be a non-empty list", path);
    }
    if (st) {
        lmc_err_prefix(st, "%s", path);
        goto done;
    }
    json_object *lt = lmc_json_get(o, "layers_to_transform");
    if (lt && json_object_is_type(lt, json_type_int)) {
        c->layers = malloc(sizeof *c->layers);
        if (!c->layers) {
            st = lmc_err(LMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        c->layers[0] = json_object_get_int64(lt);
        c->n_layers = 1;
    } else if (lt && json_object_is_type(lt, json_type_array)) {
        size_t n = json_object_array_length(lt);
        c->layers = malloc((n ? n : 1) * sizeof *c->layers);
        if (!c->layers) {
            st = lmc_err(LMC_ERR_NOMEM, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            json_object *e = json_object_array_get_idx(lt, i);
            if (!json_object_is_type(e, json_type_int)) {
                st = lmc_err(LMC_ERR_FORMAT, "%s: layers_to_transform[%zu] is not an integer",
                             path, i);
                goto done;
            }
            c->layers[i] = json_object_get_int64(e);
        }
        c->n_layers = n;
    } else if (lt) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: 'layers_to_transform' must be a list of integers", path);
    }
done:
    if (st) free(c->layers), c->layers = NULL;
    json_object_put(o);
    free(path);
    return st;
}

/* layers_to_transform as "the last N layers" (-1: all); other sets are
 * not what this trainer produces. */
static lmc_status cfg_num_layers(const char *dir, const adapter_cfg *c, int64_t n_layers,
                                 int32_t *num) {
    *num = -1;
    if (!c->layers) return LMC_OK;
    for (size_t i = 0; i < c->n_layers; i++)
        if (c->layers[i] != n_layers - (int64_t)c->n_layers + (int64_t)i)
            return lmc_err(LMC_ERR_UNSUPPORTED,
                           "%s/" ADAPTER_CONFIG ": layers_to_transform must be the last N layers "
                           "of the %" PRId64 "-layer model in order",
                           dir, n_layers);
    *num = c->n_layers == (size_t)n_layers ? -1 : (int32_t)c->n_layers;
    if (c->n_layers == 0)
        return lmc_err(LMC_ERR_FORMAT, "%s/" ADAPTER_CONFIG ": layers_to_transform is empty", dir);
    return LMC_OK;
}

lmc_status lmc_lora_read_config(const char *dir, int64_t n_layers, lmc_lora_shape *shape) {
    adapter_cfg c;
    lmc_status st = read_adapter_cfg(dir, &c);
    if (st) return st;
    if (c.rslora) {
        free(c.layers);
        return lmc_err(LMC_ERR_UNSUPPORTED, "%s/" ADAPTER_CONFIG ": use_rslora adapters cannot be "
                       "trained here (fuse supports them)", dir);
    }
    shape->rank = (int32_t)c.r;
    shape->alpha = (float)c.alpha;
    shape->targets = c.targets;
    st = cfg_num_layers(dir, &c, n_layers, &shape->num_layers);
    free(c.layers);
    return st;
}

/* ------------------------------------------------------------ load */

static bool is_lora_key(const char *name) {
    return strstr(name, ".lora_A.") || strstr(name, ".lora_B.");
}

lmc_status lmc_lora_load(lmc_lora_net *net, const char *dir) {
    if (!net || !dir || !*dir)
        return lmc_err(LMC_ERR_INVALID_ARG, "lora load: adapter directory is required");
    if (!lmc_is_dir(dir)) return lmc_err(LMC_ERR_NOT_FOUND, "%s: adapter directory not found", dir);
    lmc_lora_shape sh;
    lmc_status st = lmc_lora_read_config(dir, (int64_t)net->w.n_layers, &sh);
    if (st) return st;
    int32_t want_layers = net->first_layer == 0 ? -1 : (int32_t)(net->w.n_layers - net->first_layer);
    if (sh.rank != net->shape.rank)
        return lmc_err(LMC_ERR_INVALID_ARG, "%s/" ADAPTER_CONFIG ": r is %d, the trainer uses %d",
                       dir, (int)sh.rank, (int)net->shape.rank);
    if (fabsf(sh.alpha - net->shape.alpha) > 1e-6f * fabsf(net->shape.alpha))
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "%s/" ADAPTER_CONFIG ": lora_alpha is %g, the trainer uses %g", dir,
                       (double)sh.alpha, (double)net->shape.alpha);
    if (sh.targets != net->shape.targets)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "%s/" ADAPTER_CONFIG ": target_modules differ from the trainer's", dir);
    if (sh.num_layers != want_layers)
        return lmc_err(LMC_ERR_INVALID_ARG,
                       "%s/" ADAPTER_CONFIG ": adapts %d layers, the trainer adapts %d (-1: all)",
                       dir, (int)sh.num_layers, (int)want_layers);
    char *wpath = lmc_path_join(dir, ADAPTER_WEIGHTS);
    if (!wpath) return lmc_err(LMC_ERR_NOMEM, "out of memory");
    lmc_st_file *f = NULL;
    if ((st = lmc_st_open(wpath, &f))) {
        free(wpath);
        return st;
    }
    /* Check everything before changing any value. */
    size_t expected = 0;
    for (size_t i = 0; i < lmc_st_count(f); i++)
        if (is_lora_key(lmc_st_at(f, i)->name)) expected++;
    char key[192];
    for (size_t i = 0; i < net->n_ad && !st; i++) {
        const lmc_lora_adapter *a = &net->ad[i];
        for (int b = 0; b < 2 && !st; b++) {
            lmc_lora_key(a, b, key, sizeof key);
            const lmc_tensor_view *t = lmc_st_find(f, key);
            int64_t d0 = b ? a->out : net->shape.rank, d1 = b ? net->shape.rank : a->in;
            if (!t)
                st = lmc_err(LMC_ERR_NOT_FOUND, "%s: missing tensor '%s'", wpath, key);
            else if (t->ndim != 2 || t->shape[0] != d0 || t->shape[1] != d1)
                st = lmc_err(LMC_ERR_FORMAT,
                             "%s: tensor '%s' has shape [%" PRId64 ", %" PRId64
                             "], expected [%" PRId64 ", %" PRId64 "]",
                             wpath, key, t->shape[0], t->ndim > 1 ? t->shape[1] : 0, d0, d1);
            else if (t->dtype != LMC_DT_F32 && t->dtype != LMC_DT_F16 && t->dtype != LMC_DT_BF16)
                st = lmc_err(LMC_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16)",
                             wpath, key, lmc_dtype_name(t->dtype));
        }
    }
    if (!st && expected != 2 * net->n_ad) {
        /* Name one tensor the net has no place for. */
        for (size_t i = 0; i < lmc_st_count(f); i++) {
            const char *nm = lmc_st_at(f, i)->name;
            if (!is_lora_key(nm)) continue;
            bool known = false;
            for (size_t k = 0; k < net->n_ad && !known; k++)
                for (int b = 0; b < 2 && !known; b++) {
                    lmc_lora_key(&net->ad[k], b, key, sizeof key);
                    known = !strcmp(key, nm);
                }
            if (!known) {
                st = lmc_err(LMC_ERR_FORMAT, "%s: unexpected tensor '%s' (not an adapter of this "
                             "configuration)", wpath, nm);
                break;
            }
        }
        if (!st) st = lmc_err(LMC_ERR_FORMAT, "%s: duplicate adapter tensors", wpath);
    }
    for (size_t i = 0; i < net->n_ad && !st; i++) {
        lmc_lora_adapter *a = &net->ad[i];
        for (int b = 0; b < 2; b++) {
            lmc_lora_key(a, b, key, sizeof key);
            const lmc_tensor_view *t = lmc_st_find(f, key);
            lmc_to_f32(t->dtype, t->data, b ? a->B : a->A, (size_t)t->numel);
        }
    }
    lmc_st_close(f);
    free(wpath);
    return st;
}

/* ------------------------------------------------------------ fuse */

/* "base_model.model.<name>.lora_A.weight" -> "<name>.weight". */
static bool base_name(const char *key, char *out, size_t cap, bool *is_b) {
    static const char pre[] = "base_model.model.";
    size_t n = strlen(key), pl = sizeof pre - 1;
    const char *sa = ".lora_A.weight", *sb = ".lora_B.weight";
    size_t sl = strlen(sa);
    if (n <= pl + sl || strncmp(key, pre, pl)) return false;
    if (!strcmp(key + n - sl, sa)) *is_b = false;
    else if (!strcmp(key + n - sl, sb)) *is_b = true;
    else return false;
    int w = snprintf(out, cap, "%.*s.weight", (int)(n - pl - sl), key + pl);
    return w > 0 && (size_t)w < cap;
}

static lmc_status fuse_one(const char *wpath, const char *name, const lmc_tensor_view *W,
                           const lmc_tensor_view *A, const lmc_tensor_view *B, int64_t r,
                           float scale, void **out) {
    *out = NULL;
    if (W->dtype == LMC_DT_U32)
        return lmc_err(LMC_ERR_UNSUPPORTED,
                       "fuse: base tensor '%s' is quantized; fusing needs the unquantized (float) "
                       "base model, whose weights the adapters then update", name);
    if (W->ndim != 2 || (W->dtype != LMC_DT_F32 && W->dtype != LMC_DT_F16 && W->dtype != LMC_DT_BF16))
        return lmc_err(LMC_ERR_UNSUPPORTED, "fuse: base tensor '%s' is not a 2-D F32/F16/BF16 matrix",
                       name);
    int64_t out_d = W->shape[0], in_d = W->shape[1];
    if (A->ndim != 2 || A->shape[0] != r || A->shape[1] != in_d)
        return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s' has the wrong shape: expected lora_A "
                       "[%" PRId64 ", %" PRId64 "] for base [%" PRId64 ", %" PRId64 "]",
                       wpath, A->name, r, in_d, out_d, in_d);
    if (B->ndim != 2 || B->shape[0] != out_d || B->shape[1] != r)
        return lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s' has the wrong shape: expected lora_B "
                       "[%" PRId64 ", %" PRId64 "]",
                       wpath, B->name, out_d, r);
    /* Other dtypes would widen to zeros and fuse nothing without a word. */
    for (int i = 0; i < 2; i++) {
        const lmc_tensor_view *x = i ? B : A;
        if (x->dtype != LMC_DT_F32 && x->dtype != LMC_DT_F16 && x->dtype != LMC_DT_BF16)
            return lmc_err(LMC_ERR_UNSUPPORTED, "%s: tensor '%s' has dtype %s (F32, F16, BF16)",
                           wpath, x->name, lmc_dtype_name(x->dtype));
    }
    size_t na = (size_t)(r * in_d), nb = (size_t)(out_d * r), nw = (size_t)(out_d * in_d);
    float *a = malloc(na * sizeof(float)), *b = malloc(nb * sizeof(float));
    float *w = malloc(nw * sizeof(float));
    void *dst = malloc(nw * lmc_dtype_size(W->dtype));
    if (!a || !b || !w || !dst) {
        free(a), free(b), free(w), free(dst);
        return lmc_err(LMC_ERR_NOMEM, "fuse: no memory for '%s'", name);
    }
    lmc_to_f32(A->dtype, A->data, a, na);
    lmc_to_f32(B->dtype, B->data, b, nb);
    lmc_to_f32(W->dtype, W->data, w, nw);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)out_d, (int)in_d, (int)r, scale, b,
                (int)r, a, (int)in_d, 1.0f, w, (int)in_d);
    if (W->dtype == LMC_DT_F32) {
        memcpy(dst, w, nw * sizeof(float));
    } else {
        uint16_t *h = dst;
        for (size_t i = 0; i < nw; i++)
            h[i] = W->dtype == LMC_DT_BF16 ? lmc_f32_to_bf16(w[i]) : lmc_f32_to_f16(w[i]);
    }
    free(a), free(b), free(w);
    *out = dst;
    return LMC_OK;
}

lmc_status lmc_lora_fuse_dirs(const char *model_dir, const char *adapter_dir,
                              const char *save_dir, lmc_progress_fn progress, void *user) {
    if (!model_dir || !adapter_dir || !save_dir || !*model_dir || !*adapter_dir || !*save_dir)
        return lmc_err(LMC_ERR_INVALID_ARG, "fuse: model, adapter and save directories are required");
    if (!lmc_is_dir(adapter_dir))
        return lmc_err(LMC_ERR_NOT_FOUND, "%s: adapter directory not found", adapter_dir);
    if (lmc_same_path(model_dir, save_dir))
        return lmc_err(LMC_ERR_INVALID_ARG, "fuse: the save directory %s is the base model's "
                       "directory; choose another so the base stays intact", save_dir);
    adapter_cfg ac;
    lmc_status st = read_adapter_cfg(adapter_dir, &ac);
    if (st) return st;
    free(ac.layers);
    float scale = (float)(ac.rslora ? ac.alpha / sqrt((double)ac.r) : ac.alpha / (double)ac.r);
    lmc_lora_base base;
    if ((st = lmc_lora_base_open(model_dir, &base))) return st;
    char *wpath = lmc_path_join(adapter_dir, ADAPTER_WEIGHTS);
    lmc_st_file *af = NULL;
    size_t nt = lmc_st_set_count(base.weights);
    lmc_st_write_tensor *t = calloc(nt ? nt : 1, sizeof *t);
    void **fused = calloc(nt ? nt : 1, sizeof *fused);
    char *out_path = NULL;
    lmc_dir_stage stage = {.slot = -1};
    if (!wpath || !t || !fused) {
        st = lmc_err(LMC_ERR_NOMEM, "fuse: out of memory");
        goto done;
    }
    if ((st = lmc_st_open(wpath, &af))) goto done;
    /* Every adapter tensor must pair up and name a base weight. */
    size_t n_pairs = 0;
    char name[256], other[256];
    for (size_t i = 0; i < lmc_st_count(af); i++) {
        const lmc_tensor_view *x = lmc_st_at(af, i);
        bool is_b;
        if (!base_name(x->name, name, sizeof name, &is_b)) {
            st = lmc_err(LMC_ERR_FORMAT, "%s: tensor '%s' is not a PEFT LoRA weight "
                         "(base_model.model.<module>.lora_A|B.weight)", wpath, x->name);
            goto done;
        }
        if (!lmc_st_set_find(base.weights, name)) {
            st = lmc_err(LMC_ERR_NOT_FOUND, "%s: tensor '%s' adapts '%s', which the model in %s "
                         "does not have", wpath, x->name, name, model_dir);
            goto done;
        }
        snprintf(other, sizeof other, "%.*s.lora_%c.weight",
                 (int)(strlen(x->name) - strlen(".lora_A.weight")), x->name, is_b ? 'A' : 'B');
        if (!lmc_st_find(af, other)) {
            st = lmc_err(LMC_ERR_NOT_FOUND, "%s: tensor '%s' has no matching '%s'", wpath, x->name,
                         other);
            goto done;
        }
        if (!is_b) n_pairs++;
    }
    if (!n_pairs) {
        st = lmc_err(LMC_ERR_FORMAT, "%s: no LoRA tensors", wpath);
        goto done;
    }
    size_t done_pairs = 0;
    for (size_t i = 0; i < nt; i++) {
        const lmc_tensor_view *W = lmc_st_set_at(base.weights, i);
        t[i].name = W->name;
        t[i].dtype = W->dtype;
        t[i].ndim = W->ndim;
        memcpy(t[i].shape, W->shape, sizeof t[i].shape);
        t[i].data = W->data;
        size_t len = strlen(W->name);
        if (len < 8 || strcmp(W->name + len - 7, ".weight")) continue;
        snprintf(name, sizeof name, "base_model.model.%.*s.lora_A.weight", (int)(len - 7), W->name);
        snprintf(other, sizeof other, "base_model.model.%.*s.lora_B.weight", (int)(len - 7),
                 W->name);
        const lmc_tensor_view *A = lmc_st_find(af, name), *B = lmc_st_find(af, other);
        if (!A || !B) continue;
        if ((st = fuse_one(wpath, W->name, W, A, B, ac.r, scale, &fused[i]))) goto done;
        t[i].data = fused[i];
        done_pairs++;
        if (progress && !progress(user, "fuse", (double)done_pairs / (double)n_pairs)) {
            st = lmc_err(LMC_ERR_CANCELLED, "fuse cancelled");
            goto done;
        }
    }
    /* written into a staging sibling of save_dir, then moved into place */
    if ((st = lmc_dir_stage_begin(&stage, save_dir))) goto done;
    out_path = lmc_path_join(stage.dir, "model.safetensors");
    if (!out_path) {
        st = lmc_err(LMC_ERR_NOMEM, "fuse: out of memory");
        goto done;
    }
    static const char *const meta[] = {"format", "pt", NULL};
    if ((st = lmc_st_write(out_path, t, nt, meta))) goto done;
    st = lmc_copy_file(model_dir, stage.dir, "config.json", true);
    if (!st) st = lmc_copy_model_side_files(model_dir, stage.dir);
    if (!st) st = lmc_dir_stage_commit(&stage);
done:
    if (st && stage.dir) lmc_dir_stage_abort(&stage);
    for (size_t i = 0; i < nt && fused; i++) free(fused[i]);
    free(fused), free(t), free(wpath), free(out_path);
    lmc_st_close(af);
    lmc_lora_base_close(&base);
    return st;
}
