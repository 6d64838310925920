/* LLaVA against transformers (goldens from tests/oracle/llava_goldens.py in
 * tests/golden/vlm/): pixel values of the image processor, the expanded
 * prompt ids, the projector features, prompt logits and greedy tokens for
 * fp32 and bf16 checkpoints (one image; two images in one prompt), the
 * "full" feature-selection variant, and the errors for bad inputs. */
#include "base/file.h"
#include "check.h"
#include "lmc.h"
#include "vlm/vlm.h"
#include "vlm_test_util.h"
#include <json-c/json.h>
#include <math.h>

static char g_root[512];

/* ------------------------------------------------------------ golden access */

static json_object *load_json(const char *path) {
    json_object *o = json_object_from_file(path);
    if (!o) CHECK_MSG(0, "cannot read %s", path);
    return o;
}

static json_object *get(json_object *o, const char *key) {
    json_object *v = NULL;
    json_object_object_get_ex(o, key, &v);
    return v;
}

static float *floats(json_object *arr, size_t *n) {
    *n = arr ? json_object_array_length(arr) : 0;
    float *f = malloc((*n ? *n : 1) * sizeof *f);
    for (size_t i = 0; i < *n; i++) f[i] = (float)json_object_get_double(json_object_array_get_idx(arr, i));
    return f;
}

static int32_t *ints(json_object *arr, size_t *n) {
    *n = arr ? json_object_array_length(arr) : 0;
    int32_t *v = malloc((*n ? *n : 1) * sizeof *v);
    for (size_t i = 0; i < *n; i++) v[i] = json_object_get_int(json_object_array_get_idx(arr, i));
    return v;
}

/* max |a - b| / (max b - min b): the parity metric of the model tests. */
static double rel_err(const float *a, const float *b, size_t n) {
    double lo = INFINITY, hi = -INFINITY, e = 0;
    for (size_t i = 0; i < n; i++) {
        lo = fmin(lo, b[i]);
        hi = fmax(hi, b[i]);
        e = fmax(e, fabs((double)a[i] - b[i]));
    }
    return hi > lo ? e / (hi - lo) : e;
}

static double max_abs(const float *a, const float *b, size_t n) {
    double e = 0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i]));
    return e;
}

static int32_t argmax(const float *x, size_t n) {
    size_t b = 0;
    for (size_t i = 1; i < n; i++)
        if (x[i] > x[b]) b = i;
    return (int32_t)b;
}

static const char *gpath(const char *rel) {
    static char bufs[4][1024];
    static int slot;
    char *b = bufs[slot++ & 3];
    snprintf(b, 1024, "%s/tests/golden/vlm/%s", g_root, rel);
    return b;
}

static lmc_status load_ctx(const char *dir, lmc_device dev, lmc_vlm_context **ctx) {
    lmc_load_options o = {.model_dir = dir, .device = dev};
    return lmc_vlm_load(&o, ctx);
}

/* Images of a case: HF's pixel values (golden) as lmc_vlm_image rows. */
typedef struct {
    float *px[4];
    lmc_vlm_image im[4];
    size_t n;
} hf_images;

static void hf_images_load(json_object *c, hf_images *h) {
    json_object *pv = get(c, "pixel_values");
    h->n = json_object_array_length(pv);
    for (size_t i = 0; i < h->n && i < 4; i++) {
        json_object *e = json_object_array_get_idx(pv, i);
        size_t ns, nv;
        int32_t *shape = ints(get(e, "shape"), &ns);
        h->px[i] = floats(get(e, "values"), &nv);
        h->im[i] = (lmc_vlm_image){h->px[i], (size_t)shape[0], (size_t)shape[1], (size_t)shape[2]};
        free(shape);
    }
}

static void hf_images_free(hf_images *h) {
    for (size_t i = 0; i < h->n && i < 4; i++) free(h->px[i]);
}

/* ------------------------------------------------------------ parity */

typedef struct {
    int32_t v[64];
    size_t n;
} tokens;

static bool collect_tokens(void *user, const lmc_gen_response *r) {
    tokens *t = user;
    if (t->n < 64) t->v[t->n++] = r->token;
    return true;
}

/* One 8-bit input level after normalization (the largest over channels). */
#define PIXEL_STEP (1.0 / 255.0 / 0.26130258)

typedef struct {
    double px_png, px_jpg, px_png_pil, px_jpg_pil, logits, features;
} figures;

/* One golden case on a loaded context. `tol`: logits max|d|/range. */
static void check_case(lmc_vlm_context *ctx, json_object *c, int32_t img_tok, double tol,
                       bool half, const char *tag, figures *fig) {
    const char *name = json_object_get_string(get(c, "name"));
    const char *prompt = json_object_get_string(get(c, "prompt"));
    json_object *files = get(c, "images");
    size_t n_img = json_object_array_length(files);
    const char *paths[4];
    for (size_t i = 0; i < n_img && i < 4; i++)
        paths[i] = gpath(json_object_get_string(json_object_array_get_idx(files, i)));
    hf_images hf = {0};
    hf_images_load(c, &hf);
    CHECK_EQ_INT(hf.n, n_img);

    /* Pixel values: our decode + CLIP preprocessing vs the HF processor. */
    float **px = NULL;
    lmc_vlm_image *im = NULL;
    CHECK_EQ_INT(lmc_vlm_load_images(ctx, paths, n_img, &px, &im), LMC_OK);
    for (size_t i = 0; im && i < n_img; i++) {
        CHECK(im[i].c == hf.im[i].c && im[i].h == hf.im[i].h && im[i].w == hf.im[i].w);
        double e = max_abs(px[i], hf.px[i], hf.im[i].c * hf.im[i].h * hf.im[i].w);
        bool jpg = strstr(paths[i], ".jpg") != NULL;
        printf("%s %s: pixel values %s max|d| = %.3g\n", tag, name, paths[i] + strlen(g_root) + 1,
               e);
        if (jpg) fig->px_jpg = fmax(fig->px_jpg, e);
        else fig->px_png = fmax(fig->px_png, e);
        /* transformers 5's default CLIPImageProcessor resizes with
         * torchvision, which may land one 8-bit level away from Pillow's
         * resampler (ours; exact against the Pillow path, see
         * test_pil_pixels); JPEG decoders also differ by up to two. */
        double lim = (jpg ? 3 : 1) * PIXEL_STEP * 1.01;
        CHECK_MSG(e <= lim, "%s %s image %zu: pixel max|d| %g > %g", tag, name, i, e, lim);
    }

    /* Prompt: chat template, then image-token expansion and encoding. */
    char *chat = NULL;
    CHECK_EQ_INT(lmc_vlm_chat_prompt(ctx, "What is shown here?", 1, &chat), LMC_OK);
    if (!strcmp(name, "one")) CHECK_STREQ(chat, prompt);
    lmc_free(chat);
    size_t n_want;
    int32_t *want = ints(get(c, "input_ids"), &n_want);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK_EQ_INT(ctx->processor->encode(ctx->processor, prompt, hf.im, hf.n, &ids, &n), LMC_OK);
    bool same = n == n_want;
    for (size_t i = 0; same && i < n; i++) same = ids[i] == want[i];
    CHECK_MSG(same, "%s %s: input ids differ (%zu vs %zu ids)", tag, name, n, n_want);

    /* Projector features at the image positions (HF pixel values). */
    float *emb = NULL;
    size_t H = 0, nf;
    CHECK_EQ_INT(ctx->model->embed(ctx->model, want, n_want, hf.im, hf.n, &emb), LMC_OK);
    float *feat = floats(get(c, "features"), &nf);
    json_object *fs = get(c, "features_shape");
    H = (size_t)json_object_get_int(json_object_array_get_idx(fs, 1));
    if (emb) {
        float *got = malloc(nf * sizeof *got);
        size_t r = 0;
        for (size_t i = 0; i < n_want && r * H < nf; i++)
            if (want[i] == img_tok) memcpy(got + (r++) * H, emb + i * H, H * sizeof(float));
        double e = r * H == nf ? rel_err(got, feat, nf) : INFINITY;
        fig->features = fmax(fig->features, e);
        printf("%s %s: image features max|d|/range = %.3g\n", tag, name, e);
        CHECK_MSG(e <= tol, "%s %s: features rel err %g", tag, name, e);
        free(got);
    }
    free(emb);
    free(feat);

    /* Prompt logits with HF's pixel values, at the stored positions. */
    lmc_model *text = ctx->model->text;
    size_t V = (size_t)lmc_model_vocab(text);
    float *all = malloc(n_want * V * sizeof *all);
    lmc_kv_cache *kv = NULL;
    CHECK_EQ_INT(lmc_kv_cache_new(text, &kv), LMC_OK);
    CHECK_EQ_INT(lmc_vlm_prefill(ctx, kv, want, n_want, hf.im, hf.n, all, true), LMC_OK);
    size_t np;
    int32_t *pos = ints(get(c, "positions"), &np);
    json_object *rows = get(c, "logits");
    double worst = 0;
    for (size_t k = 0; k < np; k++) {
        size_t nv;
        float *ref = floats(json_object_array_get_idx(rows, k), &nv);
        CHECK(nv == V);
        worst = fmax(worst, rel_err(all + (size_t)pos[k] * V, ref, V));
        free(ref);
    }
    fig->logits = fmax(fig->logits, worst);
    printf("%s %s: prompt logits max|d|/range = %.3g (tol %.0g, %zu positions)\n", tag, name,
           worst, tol, np);
    CHECK_MSG(worst <= tol, "%s %s: logits rel err %g > %g", tag, name, worst, tol);

    /* Greedy decode on the cache (reference margins tell near-ties apart). */
    size_t ng, nm;
    int32_t *greedy = ints(get(c, "greedy"), &ng);
    float *margins = floats(get(c, "margins"), &nm);
    float *lg = malloc(V * sizeof *lg);
    memcpy(lg, all + (n_want - 1) * V, V * sizeof *lg);
    double range = 0;
    {
        float lo = lg[0], hi = lg[0];
        for (size_t i = 0; i < V; i++) lo = fminf(lo, lg[i]), hi = fmaxf(hi, lg[i]);
        range = hi - lo;
    }
    /* A step must pick the reference token when the reference margin is
     * beyond twice the logit error measured above (a floor for half
     * dtypes, whose reference has exact ties). */
    double clear = 2 * fmax(worst, half ? 1e-3 : 1e-6) * range;
    size_t checked = 0;
    for (size_t i = 0; i < ng; i++) {
        int32_t t = argmax(lg, V);
        if (margins[i] > clear) {
            checked++;
            CHECK_MSG(t == greedy[i], "%s %s: step %zu picks %d, reference %d (margin %g)", tag,
                      name, i, t, greedy[i], margins[i]);
        }
        /* Follow the reference so later steps stay comparable. */
        int32_t next = greedy[i];
        if (lmc_model_forward(text, kv, &next, 1, lg, false)) {
            CHECK_MSG(0, "decode: %s", lmc_last_error());
            break;
        }
    }
    free(lg);
    printf("%s %s: greedy on the cache matches the reference on %zu of %zu steps (rest: "
           "near-ties)\n", tag, name, checked, ng);

    /* End to end from the files (our own decode and preprocessing, which
     * may differ from the reference by an 8-bit level): lmc_vlm_generate
     * picks the reference tokens up to the first step whose reference
     * margin is too small to be robust to that. */
    {
        lmc_gen_params gp;
        lmc_gen_params_default(&gp);
        gp.max_tokens = ng;
        tokens got = {0};
        lmc_gen_stats st;
        CHECK_EQ_INT(lmc_vlm_generate(ctx, prompt, paths, n_img, &gp, collect_tokens, &got, &st),
                     LMC_OK);
        CHECK_EQ_INT(st.prompt_tokens, n_want);
        size_t robust = 0;
        while (robust < ng && margins[robust] > 0.05f) robust++;
        CHECK_MSG(got.n == ng, "%s %s: %zu tokens generated", tag, name, got.n);
        for (size_t i = 0; i < robust && i < got.n; i++)
            CHECK_MSG(got.v[i] == greedy[i], "%s %s: generate step %zu gave %d, reference %d",
                      tag, name, i, got.v[i], greedy[i]);
        printf("%s %s: lmc_vlm_generate matches the reference on %zu of %zu steps checked\n", tag,
               name, robust < got.n ? robust : got.n, ng);
    }
    lmc_kv_cache_free(kv);
    free(all), free(pos), free(greedy), free(margins), free(want), free(ids);
    lmc_vlm_free_images(px, im, n_img);
    hf_images_free(&hf);
}

static void test_checkpoint(const char *name, double tol, bool half, figures *fig) {
    const char *dir = gpath(name);
    char gfile[1100];
    snprintf(gfile, sizeof gfile, "%s/golden.json", dir);
    json_object *g = load_json(gfile);
    if (!g) return;
    lmc_vlm_context *ctx = NULL;
    CHECK_MSG(load_ctx(dir, LMC_DEVICE_CPU, &ctx) == LMC_OK, "%s: %s", name, lmc_last_error());
    if (ctx) {
        CHECK_STREQ(lmc_vlm_model_type(ctx), "llava");
        CHECK_STREQ(lmc_vlm_image_token(ctx), "<image>");
        json_object *cases = get(g, "cases");
        for (size_t i = 0; i < json_object_array_length(cases); i++)
            check_case(ctx, json_object_array_get_idx(cases, i),
                       json_object_get_int(get(g, "image_token_id")), tol, half, name, fig);
    }
    lmc_vlm_free(ctx);
    json_object_put(g);
}

/* ------------------------------------------------------------ edited copies */

static void copy_file(const char *from_dir, const char *to_dir, const char *name) {
    char *data = NULL;
    size_t len = 0;
    if (lmc_read_file(vt_path(from_dir, name), name, 64u << 20, &data, &len)) {
        CHECK_MSG(0, "copy %s: %s", name, lmc_last_error());
        return;
    }
    vt_write_n(to_dir, name, data, len);
    free(data);
}

static const char *copy_ckpt(const char *tag) {
    static const char *const files[] = {"config.json",         "generation_config.json",
                                        "model.safetensors",   "processor_config.json",
                                        "tokenizer.json",      "tokenizer_config.json",
                                        "chat_template.jinja"};
    const char *src = gpath("llava-fp32");
    const char *d = vt_dir(tag);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) copy_file(src, d, files[i]);
    return d;
}

/* Set key (a.b for one level of nesting) of a JSON file to a JSON value. */
static void edit_json(const char *dir, const char *file, const char *key, const char *value) {
    json_object *o = json_object_from_file(vt_path(dir, file));
    json_object *target = o;
    char k[128];
    snprintf(k, sizeof k, "%s", key);
    char *dot = strchr(k, '.');
    if (dot) {
        *dot = 0;
        target = get(o, k);
    }
    json_object *v = json_tokener_parse(value);
    json_object_object_add(target, dot ? dot + 1 : k, v);
    vt_write(dir, file, json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
    json_object_put(o);
}

/* The "full" variant: same weights, class token kept, last layer, gelu. */
static void test_full_variant(figures *fig) {
    json_object *g = load_json(gpath("llava-fp32/golden.json"));
    json_object *full = g ? get(g, "full") : NULL;
    if (!full) {
        CHECK_MSG(0, "golden.json has no full variant");
        json_object_put(g);
        return;
    }
    const char *d = copy_ckpt("full");
    edit_json(d, "config.json", "vision_feature_select_strategy", "\"full\"");
    edit_json(d, "config.json", "vision_feature_layer", "-1");
    edit_json(d, "config.json", "vision_config.hidden_act", "\"gelu\"");
    edit_json(d, "processor_config.json", "vision_feature_select_strategy", "\"full\"");
    lmc_vlm_context *ctx = NULL;
    CHECK_MSG(load_ctx(d, LMC_DEVICE_CPU, &ctx) == LMC_OK, "full: %s", lmc_last_error());
    if (ctx) {
        json_object *cases = get(full, "cases");
        for (size_t i = 0; i < json_object_array_length(cases); i++)
            check_case(ctx, json_object_array_get_idx(cases, i),
                       json_object_get_int(get(g, "image_token_id")), 1e-4, false, "llava-full",
                       fig);
    }
    lmc_vlm_free(ctx);
    json_object_put(g);
}

/* The same checkpoint under the names transformers 5 models use in memory
 * ("model.language_model.", "lm_head.weight", "model.vision_tower.
 * vision_model.", "model.multi_modal_projector."): identical logits. */
static void test_v5_layout(void) {
    static const char *const map[][2] = {
        {"language_model.lm_head.weight", "lm_head.weight"},
        {"language_model.model.", "model.language_model."},
        {"vision_tower.", "model.vision_tower.vision_model."},
        {"multi_modal_projector.", "model.multi_modal_projector."},
    };
    const char *d = copy_ckpt("v5-names");
    lmc_st_file *f = NULL;
    if (lmc_st_open(vt_path(d, "model.safetensors"), &f)) {
        CHECK_MSG(0, "open: %s", lmc_last_error());
        return;
    }
    size_t n = lmc_st_count(f);
    lmc_st_write_tensor *t = calloc(n, sizeof *t);
    char (*names)[256] = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        const lmc_tensor_view *v = lmc_st_at(f, i);
        snprintf(names[i], sizeof names[i], "%s", v->name);
        for (size_t k = 0; k < 4; k++) {
            size_t l = strlen(map[k][0]);
            if (!strncmp(v->name, map[k][0], l)) {
                snprintf(names[i], sizeof names[i], "%s%s", map[k][1], v->name + l);
                break;
            }
        }
        t[i] = (lmc_st_write_tensor){.name = names[i], .dtype = v->dtype, .ndim = v->ndim,
                                     .data = v->data};
        memcpy(t[i].shape, v->shape, sizeof v->shape);
    }
    const char *tmp = vt_path(vt_root_dir(), "v5.safetensors");
    CHECK_EQ_INT(lmc_st_write(tmp, t, n, NULL), LMC_OK);
    lmc_st_close(f);
    free(t);
    free(names);
    CHECK_EQ_INT(rename(tmp, vt_path(d, "model.safetensors")), 0);

    json_object *g = load_json(gpath("llava-fp32/golden.json"));
    lmc_vlm_context *ctx = NULL;
    CHECK_MSG(load_ctx(d, LMC_DEVICE_CPU, &ctx) == LMC_OK, "v5 names: %s", lmc_last_error());
    if (ctx && g) {
        json_object *c = json_object_array_get_idx(get(g, "cases"), 0);
        hf_images hf = {0};
        hf_images_load(c, &hf);
        size_t n_ids, np, nv;
        int32_t *ids = ints(get(c, "input_ids"), &n_ids);
        int32_t *pos = ints(get(c, "positions"), &np);
        float *ref = floats(json_object_array_get_idx(get(c, "logits"), np - 1), &nv);
        float *lg = malloc(nv * sizeof *lg);
        lmc_kv_cache *kv = NULL;
        CHECK_EQ_INT(lmc_kv_cache_new(ctx->model->text, &kv), LMC_OK);
        CHECK_EQ_INT(lmc_vlm_prefill(ctx, kv, ids, n_ids, hf.im, hf.n, lg, false), LMC_OK);
        double e = rel_err(lg, ref, nv);
        printf("transformers 5 in-memory names: last logits max|d|/range = %.3g\n", e);
        CHECK_MSG(e <= 1e-4, "v5 names: rel err %g", e);
        lmc_kv_cache_free(kv);
        free(lg), free(ref), free(pos), free(ids);
        hf_images_free(&hf);
    }
    lmc_vlm_free(ctx);
    json_object_put(g);
}

/* `lmc vlm` prints the reference continuation (when the CLI is built). */
static void test_cli(void) {
    const char *bd = getenv("LMC_BUILD_DIR");
    char exe[1024], cmd[4096];
    snprintf(exe, sizeof exe, "%s/tools/lmc", bd ? bd : "");
    if (!bd || !*bd || access(exe, X_OK)) {
        printf("note: no lmc binary in LMC_BUILD_DIR; CLI check skipped\n");
        return;
    }
    snprintf(cmd, sizeof cmd, "'%s' vlm --help 2>&1", exe);
    FILE *h = popen(cmd, "r");
    char help[256] = {0};
    if (h) {
        size_t hl = fread(help, 1, sizeof help - 1, h);
        help[hl] = 0;
        pclose(h);
    }
    if (!strstr(help, "usage: lmc vlm")) {
        printf("note: %s predates the vlm command; CLI check skipped\n", exe);
        return;
    }
    json_object *g = load_json(gpath("llava-fp32/golden.json"));
    if (!g) return;
    json_object *c = json_object_array_get_idx(get(g, "cases"), 0);
    size_t ng;
    int32_t *greedy = ints(get(c, "greedy"), &ng);
    lmc_tokenizer *tok = NULL;
    char *want = NULL;
    CHECK_EQ_INT(lmc_tokenizer_load(gpath("llava-fp32"), &tok), LMC_OK);
    if (tok) CHECK_EQ_INT(lmc_tokenizer_decode(tok, greedy, ng, false, &want), LMC_OK);
    snprintf(cmd, sizeof cmd,
             "'%s' vlm -m '%s' --image '%s' -p 'What is shown here?' --max-tokens %zu "
             "2>/dev/null",
             exe, gpath("llava-fp32"), gpath("img_a.png"), ng);
    FILE *p = popen(cmd, "r");
    char out[4096] = {0};
    size_t len = p ? fread(out, 1, sizeof out - 1, p) : 0;
    int rc = p ? pclose(p) : -1;
    out[len] = 0;
    if (len && out[len - 1] == '\n') out[len - 1] = 0;
    CHECK_MSG(rc == 0 && want && !strcmp(out, want), "lmc vlm: rc %d, output differs", rc);
    snprintf(cmd, sizeof cmd, "'%s' vlm -m '%s' --image '%s' -p x --device cuda 2>&1", exe,
             gpath("llava-fp32"), gpath("img_a.png"));
    p = popen(cmd, "r");
    len = p ? fread(out, 1, sizeof out - 1, p) : 0;
    rc = p ? pclose(p) : -1;
    out[len] = 0;
    CHECK_MSG(rc != 0 && strstr(out, "CPU only"), "lmc vlm --device cuda: %s", out);
    lmc_free(want);
    lmc_tokenizer_free(tok);
    free(greedy);
    json_object_put(g);
}

/* ------------------------------------------------------------ bad inputs */

/* Rename a tensor inside the safetensors header (same length), so it is
 * missing under its real name. */
static void hide_tensor(const char *dir, const char *name) {
    char *data = NULL;
    size_t len = 0;
    if (lmc_read_file(vt_path(dir, "model.safetensors"), "st", 64u << 20, &data, &len)) return;
    char quoted[256];
    snprintf(quoted, sizeof quoted, "\"%s\"", name);
    char *hit = memmem(data, len < 65536 ? len : 65536, quoted, strlen(quoted));
    CHECK_MSG(hit != NULL, "tensor %s not in header", name);
    if (hit) hit[strlen(quoted) - 2] ^= 0x20; /* flip the case of the last letter */
    vt_write_n(dir, "model.safetensors", data, len);
    free(data);
}

static void test_errors(void) {
    lmc_vlm_context *ctx = NULL;
    const char *d;

    d = copy_ckpt("no-vision");
    hide_tensor(d, "vision_tower.pre_layrnorm.weight");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_NOT_FOUND,
              "missing tensor 'vision_tower.pre_layrnorm.weight'");
    CHECK(strstr(lmc_last_error(), d) != NULL);
    CHECK(!ctx);

    d = copy_ckpt("no-projector");
    hide_tensor(d, "multi_modal_projector.linear_2.weight");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_NOT_FOUND,
              "multi_modal_projector.linear_2.weight");

    d = copy_ckpt("shape");
    edit_json(d, "config.json", "vision_config.intermediate_size", "96");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_FORMAT, "mlp.fc1.weight' has shape");

    d = copy_ckpt("text-shape");
    edit_json(d, "config.json", "text_config.intermediate_size", "96");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_FORMAT, "has shape");

    d = copy_ckpt("strategy");
    edit_json(d, "config.json", "vision_feature_select_strategy", "\"cls_patch\"");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_UNSUPPORTED,
              "config.json: vision_feature_select_strategy 'cls_patch'");

    d = copy_ckpt("proc-strategy");
    edit_json(d, "processor_config.json", "vision_feature_select_strategy", "\"pool\"");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_UNSUPPORTED,
              "processor_config.json: vision_feature_select_strategy 'pool'");

    d = copy_ckpt("act");
    edit_json(d, "config.json", "projector_hidden_act", "\"swiglu\"");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_UNSUPPORTED,
              "projector_hidden_act: activation 'swiglu'");
    edit_json(d, "config.json", "projector_hidden_act", "\"gelu\"");
    edit_json(d, "config.json", "vision_config.hidden_act", "\"mish\"");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_UNSUPPORTED,
              "vision_config.hidden_act: activation 'mish'");

    d = copy_ckpt("layer");
    edit_json(d, "config.json", "vision_feature_layer", "-7");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_FORMAT, "vision_feature_layer -7");

    d = copy_ckpt("token");
    edit_json(d, "config.json", "image_token_index", "5000");
    CHECK_ERR(load_ctx(d, LMC_DEVICE_CPU, &ctx), LMC_ERR_FORMAT, "image_token_index");

    CHECK_ERR(load_ctx(gpath("llava-fp32"), LMC_DEVICE_CUDA, &ctx), LMC_ERR_UNSUPPORTED,
              "CPU only");

    /* Run-time errors on a good checkpoint. */
    if (load_ctx(gpath("llava-fp32"), LMC_DEVICE_CPU, &ctx)) {
        CHECK_MSG(0, "load: %s", lmc_last_error());
        return;
    }
    const char *img[2] = {gpath("img_a.png"), gpath("img_b.jpg")};
    char *out = NULL;
    lmc_gen_params gp;
    lmc_gen_params_default(&gp);
    gp.max_tokens = 2;
    CHECK_ERR(lmc_vlm_generate_text(ctx, "USER: <image><image> hi ASSISTANT:", img, 1, &gp, &out,
                                    NULL),
              LMC_ERR_INVALID_ARG, "the prompt has 2 '<image>' tokens but 1 image was given");
    CHECK_ERR(lmc_vlm_generate_text(ctx, "USER: hi ASSISTANT:", img, 1, &gp, &out, NULL),
              LMC_ERR_INVALID_ARG, "0 '<image>' tokens");
    const char *missing[1] = {vt_path(vt_root_dir(), "no-such.png")};
    CHECK_ERR(lmc_vlm_generate_text(ctx, "<image>", missing, 1, &gp, &out, NULL),
              LMC_ERR_NOT_FOUND, "no-such.png");
    const char *notimg[1] = {vt_path(gpath("llava-fp32"), "config.json")};
    lmc_status st = lmc_vlm_generate_text(ctx, "<image>", notimg, 1, &gp, &out, NULL);
    CHECK_MSG(st != LMC_OK && strstr(lmc_last_error(), "config.json"), "non-image: %s",
              lmc_last_error());
    gp.draft = (lmc_context *)1;
    CHECK_ERR(lmc_vlm_generate_text(ctx, "<image>", img, 1, &gp, &out, NULL),
              LMC_ERR_UNSUPPORTED, "speculative");
    gp.draft = NULL;
    CHECK(out == NULL);

    /* Wrong counts or sizes straight into the model. */
    float small[3 * 16 * 16] = {0};
    lmc_vlm_image bad = {small, 3, 16, 16};
    int32_t ids[20];
    for (int i = 0; i < 20; i++) ids[i] = i < 16 ? 3 : 40;
    float *emb = NULL;
    CHECK_ERR(ctx->model->embed(ctx->model, ids, 20, &bad, 1, &emb), LMC_ERR_INVALID_ARG,
              "image 0 is 3x16x16");
    float *big = calloc(3 * 32 * 32, sizeof(float));
    lmc_vlm_image ok = {big, 3, 32, 32};
    ids[15] = 40;
    CHECK_ERR(ctx->model->embed(ctx->model, ids, 20, &ok, 1, &emb), LMC_ERR_INVALID_ARG,
              "the prompt has 15 image tokens (id 3), 1 image give 16 features");
    ids[15] = 3;
    ids[19] = 99999;
    CHECK_ERR(ctx->model->embed(ctx->model, ids, 20, &ok, 1, &emb), LMC_ERR_INVALID_ARG,
              "outside the vocabulary");
    ids[19] = 40;
    CHECK_EQ_INT(ctx->model->embed(ctx->model, ids, 20, &ok, 1, &emb), LMC_OK);
    free(emb);
    free(big);
    lmc_vlm_free(ctx);
}

/* Our preprocessing against transformers' Pillow-backed processor. */
static void test_pil_pixels(figures *fig) {
    json_object *g = json_object_from_file(gpath("pixels_pil.json"));
    if (!g) {
        printf("note: no pixels_pil.json (tests/oracle/llava_goldens.py pil)\n");
        return;
    }
    lmc_vlm_context *ctx = NULL;
    if (load_ctx(gpath("llava-fp32"), LMC_DEVICE_CPU, &ctx)) {
        CHECK_MSG(0, "load: %s", lmc_last_error());
        json_object_put(g);
        return;
    }
    json_object_object_foreach(get(g, "images"), file, rec) {
        const char *path = gpath(file);
        float **px = NULL;
        lmc_vlm_image *im = NULL;
        size_t nv;
        float *ref = floats(get(rec, "values"), &nv);
        CHECK_EQ_INT(lmc_vlm_load_images(ctx, &path, 1, &px, &im), LMC_OK);
        if (im && im[0].c * im[0].h * im[0].w == nv) {
            double e = max_abs(px[0], ref, nv);
            bool jpg = strstr(file, ".jpg") != NULL;
            printf("Pillow path: %s pixel values max|d| = %.3g\n", file, e);
            if (jpg) fig->px_jpg_pil = e;
            else fig->px_png_pil = e;
            /* PNG: float rounding only; JPEG: the decoders' level or two. */
            double lim = jpg ? 2 * PIXEL_STEP * 1.01 : 1e-5;
            CHECK_MSG(e <= lim, "Pillow path %s: pixel max|d| %g > %g", file, e, lim);
        } else {
            CHECK_MSG(0, "Pillow path %s: %zu values", file, nv);
        }
        free(ref);
        lmc_vlm_free_images(px, im, 1);
    }
    lmc_vlm_free(ctx);
    json_object_put(g);
}

int main(void) {
    const char *root = getenv("LMC_SOURCE_DIR");
    snprintf(g_root, sizeof g_root, "%s", root && *root ? root : ".");
    if (!lmc_path_exists(gpath("llava-fp32/golden.json")))
        CHECK_SKIP("no LLaVA goldens under %s (tests/oracle/llava_goldens.py)", gpath(""));
    figures f32 = {0}, b16 = {0}, full = {0};
    test_checkpoint("llava-fp32", 1e-4, false, &f32);
    test_checkpoint("llava-bf16", 2e-2, true, &b16);
    test_full_variant(&full);
    test_pil_pixels(&f32);
    test_v5_layout();
    test_cli();
    test_errors();
    printf("pixels vs default processor: png %.3g jpg %.3g; vs Pillow path: png %.3g jpg %.3g\n",
           f32.px_png, f32.px_jpg, f32.px_png_pil, f32.px_jpg_pil);
    printf("fp32: features %.3g, logits %.3g\n", f32.features, f32.logits);
    printf("bf16: features %.3g, logits %.3g; full: logits %.3g\n", b16.features, b16.logits,
           full.logits);
    return check_summary("test_llava");
}
