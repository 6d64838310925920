/* LoRA training against transformers + PEFT (tests/golden/train, written by
 * tests/oracle/lora_goldens.py): for llama (llama3 rope), llama_linear
 * (biases, linear rope), mistral (sliding window shorter than the batch),
 * qwen2 (q/k/v bias, last layer only), qwen3 (q/k norm, tied embeddings)
 * and a bf16 llama (fp32 compute over bf16 weights):
 *  - the batch loss and the gradient of every lora_A / lora_B,
 *  - logits with the adapters, the loss before each of 3 AdamW steps and
 *    the adapter values after them,
 *  - the PEFT key set and shapes of a saved adapter, a bit-exact
 *    save -> load round trip,
 *  - fuse: the merged weight and the fused model's logits (loaded by the
 *    inference model) against PEFT's merge_and_unload.
 * Plus a central finite-difference check of a few gradient coordinates. */
#include "base/file.h"
#include "base/json.h"
#include "lora_test_util.h"
#include "backend/backend.h"
#include "models/model.h"

static double worst_grad, worst_loss, worst_step, worst_fuse;

typedef struct {
    const int32_t *seq[2];
    size_t len[2], off[2], n;
    int32_t *ids;
} batch;

static void get_batch(lmc_st_file *g, batch *b) {
    memset(b, 0, sizeof *b);
    b->n = lt_list(lt_meta(g, "lens"), b->len, 2);
    lt_list(lt_meta(g, "offsets"), b->off, 2);
    const lmc_tensor_view *t = lmc_st_find(g, "ids");
    CHECK(t && t->dtype == LMC_DT_I32);
    const int32_t *p = t->data;
    for (size_t i = 0; i < b->n; i++) {
        b->seq[i] = p;
        p += b->len[i];
    }
}

static double batch_grad(lmc_lora_net *net, const batch *b) {
    size_t N = 0;
    for (size_t i = 0; i < b->n; i++) N += lmc_lora_count_targets(b->len[i], b->off[i]);
    double loss = 0.0;
    lmc_lora_zero_grad(net);
    for (size_t i = 0; i < b->n; i++)
        CHECK_MSG(!lmc_lora_seq_grad(net, b->seq[i], b->len[i], b->off[i], 1.0f / (float)N, &loss),
                  "%s", lmc_last_error());
    return loss;
}

/* Forward of the inference model over a model directory: last logits. */
static bool infer_logits(const char *dir, const int32_t *ids, size_t n, float *logits) {
    lmc_model_config cfg;
    json_object *cj = NULL;
    lmc_st_set *set = NULL;
    lmc_model *m = NULL;
    lmc_kv_cache *c = NULL;
    bool ok = !lmc_config_load(dir, &cfg, &cj, NULL) && !lmc_st_set_open_dir(dir, &set);
    if (ok) {
        lmc_loaded_model lm = {.config = &cfg, .config_json = cj, .weights = set};
        ok = !lmc_model_create(&lm, &m) && !lmc_kv_cache_new(m, &c) &&
             !lmc_model_forward(m, c, ids, n, logits, false);
    }
    if (!ok) fprintf(stderr, "inference on %s: %s\n", dir, lmc_last_error());
    lmc_kv_cache_free(c);
    lmc_model_free(m);
    lmc_st_set_free(set);
    if (cj) json_object_put(cj);
    return ok;
}

/* Saved adapter: PEFT's key set, [r,in]/[out,r] F32 shapes, config. */
static void check_saved(lmc_lora_net *net, lmc_st_file *g, const char *dir) {
    char p[1200];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", dir);
    lmc_st_file *f = NULL;
    CHECK_MSG(!lmc_st_open(p, &f), "%s", lmc_last_error());
    if (!f) return;
    const char *keys = lt_meta(g, "peft_keys");
    size_t n_keys = 1;
    for (const char *c = keys; *c; c++) n_keys += *c == ',';
    CHECK_EQ_INT(lmc_st_count(f), n_keys);
    for (size_t i = 0; i < lmc_st_count(f); i++) {
        const lmc_tensor_view *t = lmc_st_at(f, i);
        size_t len = strlen(t->name);
        const char *hit = strstr(keys, t->name);
        CHECK_MSG(hit && (hit[len] == ',' || hit[len] == 0), "key %s not in PEFT's", t->name);
        CHECK(t->dtype == LMC_DT_F32 && t->ndim == 2);
        size_t ng = 0;
        const float *ref = lt_tensor(g, "init.", t->name, &ng);
        CHECK(ref && ng == (size_t)t->numel);
        bool is_b = strstr(t->name, ".lora_B.") != NULL;
        CHECK(is_b ? t->shape[1] == net->shape.rank : t->shape[0] == net->shape.rank);
    }
    lmc_st_close(f);
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    json_object *o = NULL;
    CHECK_MSG(!lmc_json_load_file(p, "adapter_config.json", 1 << 20, &o, NULL), "%s",
              lmc_last_error());
    if (!o) return;
    CHECK_STREQ(lmc_json_str(o, "peft_type", NULL), "LORA");
    int64_t r = 0;
    double alpha = 0;
    CHECK(lmc_json_int(o, "r", &r, NULL) && r == net->shape.rank);
    CHECK(lmc_json_double(o, "lora_alpha", &alpha, NULL) && fabs(alpha - net->shape.alpha) < 1e-6);
    json_object *tm = lmc_json_get(o, "target_modules");
    size_t n_t = 0;
    for (const char *c = lt_meta(g, "targets"); *c; c++) n_t += *c == ',';
    CHECK(tm && json_object_array_length(tm) == n_t + 1);
    json_object *lt = lmc_json_get(o, "layers_to_transform");
    if (atoi(lt_meta(g, "num_layers")) < 0) {
        CHECK(!lt);
    } else {
        size_t want[16], nw = lt_list(lt_meta(g, "layers"), want, 16);
        CHECK(lt && json_object_array_length(lt) == nw);
        for (size_t i = 0; lt && i < nw; i++)
            CHECK_EQ_INT(json_object_get_int64(json_object_array_get_idx(lt, i)), want[i]);
    }
    json_object_put(o);
}

static void run_case(const char *name) {
    lmc_st_file *g = lt_golden(name);
    const char *mdir = lt_model_dir(lt_meta(g, "model"));
    lmc_lora_options o;
    lt_options(g, &o);
    lmc_lora_trainer *tr = NULL;
    if (lmc_lora_trainer_new(mdir, &o, &tr)) {
        CHECK_MSG(0, "%s: trainer: %s", name, lmc_last_error());
        lmc_st_close(g);
        return;
    }
    lmc_lora_net *net = lmc_lora_trainer_net(tr);
    CHECK(lt_set_init(net, g));
    batch b;
    get_batch(g, &b);
    size_t V = (size_t)net->cfg.vocab_size;
    char key[256];

    /* Loss and gradients. */
    double loss = batch_grad(net, &b);
    double ref_loss = atof(lt_meta(g, "loss"));
    double el = fabs(loss - ref_loss) / fabs(ref_loss);
    CHECK_MSG(el < 1e-5, "%s: loss %.7f vs PEFT %.7f", name, loss, ref_loss);
    double eg = 0.0;
    for (size_t i = 0; i < net->n_ad; i++) {
        lmc_lora_adapter *a = &net->ad[i];
        for (int k = 0; k < 2; k++) {
            lmc_lora_key(a, k, key, sizeof key);
            size_t n = 0;
            const float *ref = lt_tensor(g, "grad.", key, &n);
            CHECK_MSG(ref, "%s: golden lacks grad.%s", name, key);
            if (!ref) continue;
            double e = rel_err(k ? a->gB : a->gA, ref, n);
            CHECK_MSG(e < 1e-4, "%s: gradient of %s: relative error %.3g", name, key, e);
            eg = e > eg ? e : eg;
        }
    }
    worst_grad = eg > worst_grad ? eg : worst_grad;
    worst_loss = el > worst_loss ? el : worst_loss;

    /* Logits with the adapters (last position of sequence 0). */
    float *logits = malloc(b.len[0] * V * sizeof(float)), *inf = malloc(V * sizeof(float));
    CHECK(!lmc_lora_logits(net, b.seq[0], b.len[0], logits));
    const float *ref_lg = lt_tensor(g, "lora_logits", "", NULL);
    double elg = ref_lg ? rel_err(logits + (b.len[0] - 1) * V, ref_lg, V) : 1.0;
    CHECK_MSG(elg < 1e-5, "%s: adapter logits relative error %.3g", name, elg);

    /* Save (PEFT format), fuse, and compare against merge_and_unload. */
    char adir[900], fdir[900];
    snprintf(adir, sizeof adir, "%s/%s-adapter", tt_scratch(), name);
    snprintf(fdir, sizeof fdir, "%s/%s-fused", tt_scratch(), name);
    CHECK_MSG(!lmc_lora_trainer_save(tr, adir), "%s", lmc_last_error());
    check_saved(net, g, adir);
    CHECK_MSG(!lmc_lora_fuse(mdir, adir, fdir, NULL, NULL), "%s: fuse: %s", name,
              lmc_last_error());
    bool bf16 = strstr(name, "bf16") != NULL;
    {
        char p[1200];
        snprintf(p, sizeof p, "%s/model.safetensors", fdir);
        lmc_st_file *ff = NULL;
        CHECK_MSG(!lmc_st_open(p, &ff), "%s", lmc_last_error());
        const lmc_tensor_view *w = ff ? lmc_st_find(ff, lt_meta(g, "merged_weight_name")) : NULL;
        size_t nref = 0;
        const float *ref = lt_tensor(g, "merged_weight", "", &nref);
        CHECK(w && ref && (size_t)w->numel == nref);
        if (w && ref && (size_t)w->numel == nref) {
            float *wf = malloc(nref * sizeof(float));
            lmc_to_f32(w->dtype, w->data, wf, nref);
            double e = rel_err(wf, ref, nref);
            /* bf16 storage: one rounding of W + s B A (PEFT rounds twice). */
            CHECK_MSG(e < (bf16 ? 8e-3 : 1e-6), "%s: merged weight relative error %.3g", name, e);
            worst_fuse = !bf16 && e > worst_fuse ? e : worst_fuse;
            free(wf);
        }
        lmc_st_close(ff);
    }
    if (infer_logits(fdir, b.seq[0], b.len[0], inf)) {
        const float *ref = lt_tensor(g, "merged_logits", "", NULL);
        double e1 = ref ? rel_err(inf, ref, V) : 1.0;
        double e2 = rel_err(inf, logits + (b.len[0] - 1) * V, V);
        /* The bf16 base computes in bf16 at inference; only a loose check. */
        CHECK_MSG(e1 < (bf16 ? 5e-2 : 1e-4), "%s: fused logits vs PEFT merged: %.3g", name, e1);
        CHECK_MSG(e2 < (bf16 ? 5e-2 : 1e-4), "%s: fused logits vs base+adapter: %.3g", name, e2);
        printf("%-13s fused model logits: vs PEFT merged %.2e, vs base+adapter %.2e\n", name, e1, e2);
    } else {
        CHECK(0);
    }

    /* Round trip: a fresh trainer loading the saved adapter has the same bits. */
    lmc_lora_trainer *tr2 = NULL;
    CHECK_MSG(!lmc_lora_trainer_new(mdir, &o, &tr2), "%s", lmc_last_error());
    if (tr2) {
        CHECK_MSG(!lmc_lora_trainer_load(tr2, adir), "%s", lmc_last_error());
        lmc_lora_net *n2 = lmc_lora_trainer_net(tr2);
        bool same = n2->n_ad == net->n_ad;
        for (size_t i = 0; same && i < net->n_ad; i++) {
            size_t r = (size_t)net->shape.rank;
            same = !memcmp(n2->ad[i].A, net->ad[i].A, r * (size_t)net->ad[i].in * 4) &&
                   !memcmp(n2->ad[i].B, net->ad[i].B, r * (size_t)net->ad[i].out * 4);
        }
        CHECK_MSG(same, "%s: save -> load is not bit-exact", name);
        lmc_lora_trainer_free(tr2);
    }

    /* Three AdamW steps on the batch. */
    double losses[4] = {0};
    size_t nl = 0;
    {
        const char *s = lt_meta(g, "losses");
        while (*s && nl < 4) {
            while (*s == '[' || *s == ' ' || *s == ',') s++;
            losses[nl++] = strtod(s, (char **)&s);
        }
    }
    CHECK_EQ_INT(nl, 4);
    double es = 0.0;
    for (int step = 0; step < 3; step++) {
        float l = 0;
        CHECK_MSG(!lmc_lora_trainer_step(tr, b.seq, b.len, b.off, b.n, &l), "%s",
                  lmc_last_error());
        double e = fabs(l - losses[step]) / losses[step];
        CHECK_MSG(e < 1e-5, "%s: loss before step %d: %.7f vs PEFT %.7f", name, step + 1, l,
                  losses[step]);
        es = e > es ? e : es;
    }
    double l3 = batch_grad(net, &b);
    double e3 = fabs(l3 - losses[3]) / losses[3];
    CHECK_MSG(e3 < 1e-4, "%s: loss after 3 steps: %.7f vs PEFT %.7f", name, l3, losses[3]);
    es = e3 > es ? e3 : es;
    double ep = 0.0;
    for (size_t i = 0; i < net->n_ad; i++) {
        lmc_lora_adapter *a = &net->ad[i];
        for (int k = 0; k < 2; k++) {
            lmc_lora_key(a, k, key, sizeof key);
            size_t n = 0;
            const float *ref = lt_tensor(g, "step3.", key, &n);
            if (!ref) continue;
            double e = rel_err(k ? a->B : a->A, ref, n);
            CHECK_MSG(e < 1e-4, "%s: %s after 3 steps: relative error %.3g", name, key, e);
            ep = e > ep ? e : ep;
        }
    }
    worst_step = ep > worst_step ? ep : worst_step;
    /* Regenerating tests/golden/train/lmc_adapters (read by PEFT in
     * lora_goldens.py --peft-load): LMC_LORA_WRITE_ADAPTERS=DIR. */
    const char *wdir = getenv("LMC_LORA_WRITE_ADAPTERS");
    if (wdir && *wdir && !bf16 && strcmp(name, "llama_linear")) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", wdir, name);
        CHECK_MSG(!lmc_lora_trainer_save(tr, p), "%s", lmc_last_error());
    }
    printf("%-13s loss rel %.2e  grad max rel %.2e  logits %.2e  3-step loss %.2e params %.2e\n",
           name, el, eg, elg, es, ep);
    free(logits), free(inf);
    lmc_lora_trainer_free(tr);
    lmc_st_close(g);
}

/* Central differences of the loss in a few coordinates (float64 loss sum,
 * step 1e-2 on the adapter values, which enter the loss smoothly). */
static void finite_difference(void) {
    lmc_st_file *g = lt_golden("qwen3");
    lmc_lora_options o;
    lt_options(g, &o);
    lmc_lora_trainer *tr = NULL;
    if (lmc_lora_trainer_new(lt_model_dir(lt_meta(g, "model")), &o, &tr)) {
        CHECK_MSG(0, "%s", lmc_last_error());
        lmc_st_close(g);
        return;
    }
    lmc_lora_net *net = lmc_lora_trainer_net(tr);
    lt_set_init(net, g);
    batch b;
    get_batch(g, &b);
    batch_grad(net, &b);
    size_t picks[][3] = {{0, 0, 5}, {1, 1, 17}, {5, 0, 100}, {net->n_ad - 1, 1, 3}, {3, 1, 60}};
    for (size_t k = 0; k < sizeof picks / sizeof picks[0]; k++) {
        lmc_lora_adapter *a = &net->ad[picks[k][0]];
        float *p = picks[k][1] ? a->B : a->A;
        float analytic = (picks[k][1] ? a->gB : a->gA)[picks[k][2]];
        float save = p[picks[k][2]], h = 1e-2f;
        p[picks[k][2]] = save + h;
        double lp = batch_grad(net, &b);
        p[picks[k][2]] = save - h;
        double lm = batch_grad(net, &b);
        p[picks[k][2]] = save;
        double fd = (lp - lm) / (2.0 * h);
        CHECK_MSG(fabs(fd - analytic) < 2e-3 * fabs(analytic) + 2e-4,
                  "finite difference %zu: %.6g vs analytic %.6g", k, fd, (double)analytic);
    }
    lmc_lora_trainer_free(tr);
    lmc_st_close(g);
}

/* PEFT loaded adapters that lmc saved (tests/golden/train/lmc_adapters: the
 * golden init after lmc's 3 AdamW steps) and recorded its logits and loss
 * with them; lmc reading the same files must agree. */
static void peft_reads_lmc(void) {
    lmc_st_file *p = lt_golden("peft_on_lmc");
    const char *cases[] = {"llama", "mistral", "qwen2", "qwen3"};
    for (size_t c = 0; c < 4; c++) {
        lmc_st_file *g = lt_golden(cases[c]);
        lmc_lora_options o;
        lt_options(g, &o);
        lmc_lora_trainer *tr = NULL;
        char dir[1024], key[64];
        snprintf(dir, sizeof dir, "%s/tests/golden/train/lmc_adapters/%s", tt_root(), cases[c]);
        CHECK(!lmc_lora_trainer_new(lt_model_dir(lt_meta(g, "model")), &o, &tr));
        CHECK_MSG(tr && !lmc_lora_trainer_load(tr, dir), "%s", lmc_last_error());
        snprintf(key, sizeof key, "%s.logits", cases[c]);
        const float *ref = lt_tensor(p, key, "", NULL);
        snprintf(key, sizeof key, "%s.loss", cases[c]);
        double ref_loss = atof(lt_meta(p, key));
        if (tr && ref) {
            lmc_lora_net *net = lmc_lora_trainer_net(tr);
            batch b;
            get_batch(g, &b);
            size_t V = (size_t)net->cfg.vocab_size;
            float *lg = malloc(b.len[0] * V * sizeof(float));
            CHECK(!lmc_lora_logits(net, b.seq[0], b.len[0], lg));
            double e = rel_err(lg + (b.len[0] - 1) * V, ref, V);
            double l = batch_grad(net, &b), el = fabs(l - ref_loss) / ref_loss;
            CHECK_MSG(e < 1e-5 && el < 1e-5, "%s: PEFT on lmc's adapter: logits %.3g, loss %.3g",
                      cases[c], e, el);
            printf("%-13s PEFT loading lmc's saved adapter: logits rel %.2e, loss rel %.2e\n",
                   cases[c], e, el);
            free(lg);
        } else {
            CHECK(0);
        }
        lmc_lora_trainer_free(tr);
        lmc_st_close(g);
    }
    lmc_st_close(p);
}

int main(void) {
    (void)tt_write_n;
    const char *cases[] = {"llama", "llama_bf16", "llama_linear", "mistral", "qwen2", "qwen3"};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) run_case(cases[i]);
    finite_difference();
    peft_reads_lmc();
    printf("worst vs PEFT: loss rel %.2e, gradient rel %.2e, 3-step params rel %.2e, fused "
           "weight rel %.2e\n",
           worst_loss, worst_grad, worst_step, worst_fuse);
    return check_summary("test_lora");
}
