/* Bad input to the LoRA trainer, adapter loading and fuse: each fails with
 * a clear status and a message naming the file, tensor or option, and a
 * failed load leaves the adapters untouched. */
#include "base/file.h"
#include "lora_test_util.h"
#include "train/dataset.h"

static const char *model;

static lmc_lora_trainer *trainer(const char *targets, int32_t rank, int32_t num_layers) {
    lmc_lora_options o;
    lmc_lora_options_init(&o);
    o.target_modules = targets;
    o.rank = rank;
    o.num_layers = num_layers;
    lmc_lora_trainer *t = NULL;
    CHECK_MSG(!lmc_lora_trainer_new(model, &o, &t), "%s", lmc_last_error());
    return t;
}

static void test_options(void) {
    lmc_lora_options o;
    lmc_lora_trainer *t = NULL;
    lmc_lora_options_init(&o);
    o.target_modules = "q_proj,lm_head";
    CHECK_ERR(lmc_lora_trainer_new(model, &o, &t), LMC_ERR_INVALID_ARG,
              "unknown target module 'lm_head'");
    CHECK(!t);
    o.target_modules = "q_proj,,v_proj";
    CHECK_ERR(lmc_lora_trainer_new(model, &o, &t), LMC_ERR_INVALID_ARG, "empty entry");
    o.target_modules = "";
    CHECK_ERR(lmc_lora_trainer_new(model, &o, &t), LMC_ERR_INVALID_ARG, "list is empty");
    lmc_lora_options_init(&o);
    o.dropout = 0.05f;
    CHECK_ERR(lmc_lora_trainer_new(model, &o, &t), LMC_ERR_UNSUPPORTED, "dropout");
    lmc_lora_options_init(&o);
    o.rank = 0;
    CHECK_ERR(lmc_lora_trainer_new(model, &o, &t), LMC_ERR_INVALID_ARG, "rank must be");
    lmc_lora_options_init(&o);
    o.num_layers = 0;
    CHECK_ERR(lmc_lora_trainer_new(model, &o, &t), LMC_ERR_INVALID_ARG, "num_layers");
    lmc_lora_options_init(&o);
    o.alpha = -1.0f;
    CHECK_ERR(lmc_lora_trainer_new(model, &o, &t), LMC_ERR_INVALID_ARG, "alpha");
    lmc_lora_options_init(&o);
    CHECK_ERR(lmc_lora_trainer_new("/nonexistent/model", &o, &t), LMC_ERR_NOT_FOUND,
              "/nonexistent/model");
    /* An unsupported architecture. */
    char dir[1100], p[1200];
    snprintf(dir, sizeof dir, "%s/gpt2", tt_scratch());
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/config.json", dir);
    const char *cfg = "{\"model_type\": \"gpt2\", \"vocab_size\": 8, \"hidden_size\": 4}";
    CHECK(!lmc_write_file_atomic(p, cfg, strlen(cfg)));
    CHECK(lmc_lora_trainer_new(dir, &o, &t) != LMC_OK && !t);
    CHECK_MSG(strstr(lmc_last_error(), "gpt2") || strstr(lmc_last_error(), "safetensors"), "%s",
              lmc_last_error());
}

static void test_batches(void) {
    lmc_lora_trainer *t = trainer(NULL, 4, -1);
    if (!t) return;
    const int32_t good[] = {1, 5, 6, 7}, bad[] = {1, 5, 512, 7};
    const int32_t *seqs[] = {good};
    size_t lens[] = {4}, offs[] = {4};
    float loss;
    CHECK_ERR(lmc_lora_trainer_step(t, seqs, lens, offs, 1, &loss), LMC_ERR_INVALID_ARG,
              "no target tokens");
    seqs[0] = bad;
    CHECK_ERR(lmc_lora_trainer_step(t, seqs, lens, NULL, 1, &loss), LMC_ERR_INVALID_ARG,
              "token id 512 at index 2");
    CHECK_ERR(lmc_lora_trainer_step(t, seqs, lens, NULL, 0, &loss), LMC_ERR_INVALID_ARG,
              "non-empty batch");
    CHECK_ERR(lmc_lora_train(t, NULL, NULL), LMC_ERR_INVALID_ARG, "dataset");
    lmc_lora_trainer_free(t);
}

static void write_cfg(const char *dir, const char *json) {
    char p[1200];
    snprintf(p, sizeof p, "%s/adapter_config.json", dir);
    CHECK(!lmc_write_file_atomic(p, json, strlen(json)));
}

static void test_load(void) {
    char good[1100], bad[1100];
    snprintf(good, sizeof good, "%s/good", tt_scratch());
    snprintf(bad, sizeof bad, "%s/bad", tt_scratch());
    lmc_lora_trainer *t = trainer("q_proj,v_proj", 4, -1);
    if (!t) return;
    CHECK(!lmc_lora_trainer_save(t, good));
    lmc_lora_net *net = lmc_lora_trainer_net(t);
    float a0 = net->ad[0].A[0];

    CHECK_ERR(lmc_lora_trainer_load(t, "/nonexistent/adapters"), LMC_ERR_NOT_FOUND,
              "/nonexistent/adapters");
    mkdir(bad, 0755);
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_NOT_FOUND, "adapter_config.json");
    write_cfg(bad, "{\"peft_type\": \"LORA\", \"r\": 4,");
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_FORMAT, "adapter_config.json");
    write_cfg(bad, "{\"peft_type\": \"IA3\", \"r\": 4}");
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_UNSUPPORTED, "peft_type is 'IA3'");
    write_cfg(bad, "{\"peft_type\": \"LORA\", \"r\": 8, \"lora_alpha\": 16, "
                   "\"target_modules\": [\"q_proj\", \"v_proj\"]}");
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_INVALID_ARG, "r is 8, the trainer uses 4");
    write_cfg(bad, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, "
                   "\"target_modules\": [\"q_proj\", \"embed_tokens\"]}");
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_INVALID_ARG,
              "unknown target module 'embed_tokens'");
    write_cfg(bad, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, "
                   "\"target_modules\": [\"q_proj\", \"k_proj\"]}");
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_INVALID_ARG, "target_modules differ");
    write_cfg(bad, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, "
                   "\"target_modules\": [\"q_proj\", \"v_proj\"], \"layers_to_transform\": [2]}");
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_INVALID_ARG, "adapts 1 layers");
    write_cfg(bad, "{\"peft_type\": \"LORA\", \"r\": 4, \"lora_alpha\": 16, "
                   "\"target_modules\": [\"q_proj\", \"v_proj\"]}");
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_NOT_FOUND, "adapter_model.safetensors");

    /* Tensors: one missing, one mis-shaped, one extra. */
    char key[256], p[1200];
    snprintf(p, sizeof p, "%s/adapter_model.safetensors", bad);
    size_t n = net->n_ad * 2;
    lmc_st_write_tensor *w = calloc(n + 1, sizeof *w);
    char (*names)[256] = calloc(n + 1, sizeof *names);
    float *zeros = calloc(64 * 64, sizeof(float));
    for (size_t i = 0; i < net->n_ad; i++)
        for (int b = 0; b < 2; b++) {
            lmc_st_write_tensor *x = &w[2 * i + (size_t)b];
            lmc_lora_key(&net->ad[i], b, names[2 * i + (size_t)b], sizeof names[0]);
            x->name = names[2 * i + (size_t)b];
            x->dtype = LMC_DT_F32;
            x->ndim = 2;
            x->shape[0] = b ? net->ad[i].out : 4;
            x->shape[1] = b ? 4 : net->ad[i].in;
            x->data = zeros;
        }
    CHECK(!lmc_st_write(p, w, n - 1, NULL));
    lmc_lora_key(&net->ad[net->n_ad - 1], true, key, sizeof key);
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_NOT_FOUND, key);
    w[1].shape[0] = 8;
    CHECK(!lmc_st_write(p, w, n, NULL));
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_FORMAT, "expected [");
    CHECK_MSG(strstr(lmc_last_error(), w[1].name), "%s", lmc_last_error());
    w[1].shape[0] = net->ad[0].out;
    snprintf(names[n], sizeof names[0],
             "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight");
    w[n] = w[0];
    w[n].name = names[n];
    CHECK(!lmc_st_write(p, w, n + 1, NULL));
    CHECK_ERR(lmc_lora_trainer_load(t, bad), LMC_ERR_FORMAT, "unexpected tensor");
    CHECK_MSG(strstr(lmc_last_error(), "mlp.up_proj"), "%s", lmc_last_error());
    CHECK(net->ad[0].A[0] == a0); /* nothing changed by the failures */
    CHECK(!lmc_st_write(p, w, n, NULL));
    CHECK_MSG(!lmc_lora_trainer_load(t, bad), "%s", lmc_last_error());
    CHECK(net->ad[0].A[0] == 0.0f);
    CHECK_MSG(!lmc_lora_trainer_load(t, good), "%s", lmc_last_error());
    CHECK(net->ad[0].A[0] == a0);

    /* Fuse: a tensor for a module the model lacks, a bad shape, no pair. */
    char fused[1100];
    snprintf(fused, sizeof fused, "%s/fused", tt_scratch());
    snprintf(names[n], sizeof names[0], "base_model.model.model.layers.7.self_attn.q_proj.lora_A.weight");
    CHECK(!lmc_st_write(p, w, n + 1, NULL));
    CHECK_ERR(lmc_lora_fuse(model, bad, fused, NULL, NULL), LMC_ERR_NOT_FOUND,
              "model.layers.7.self_attn.q_proj.weight");
    CHECK(!lmc_st_write(p, w + 1, n - 1, NULL));
    CHECK_ERR(lmc_lora_fuse(model, bad, fused, NULL, NULL), LMC_ERR_NOT_FOUND,
              "has no matching");
    w[0].shape[1] = 32;
    CHECK(!lmc_st_write(p, w, n, NULL));
    CHECK_ERR(lmc_lora_fuse(model, bad, fused, NULL, NULL), LMC_ERR_FORMAT, "wrong shape");
    CHECK(!lmc_path_exists(fused) || lmc_is_dir(fused));
    CHECK_ERR(lmc_lora_fuse(model, good, model, NULL, NULL), LMC_ERR_INVALID_ARG,
              "base model's directory");
    CHECK_ERR(lmc_lora_fuse(model, "/nonexistent/a", fused, NULL, NULL), LMC_ERR_NOT_FOUND,
              "/nonexistent/a");
    free(w), free(names), free(zeros);
    lmc_lora_trainer_free(t);
}

static void test_dataset(void) {
    /* An empty file cannot become a dataset (the trainer refuses NULL and
     * all-prompt datasets: test_batches, test_lora_train). */
    lmc_dataset *d = NULL;
    CHECK_ERR(lmc_dataset_load_buffer("", 0, "empty.jsonl", NULL, NULL, &d), LMC_ERR_FORMAT,
              "empty.jsonl");
    CHECK(!d);
}

/* The trainer's forward has one full-width RoPE table: longrope (two,
 * picked per forward) is refused by name, the same llama without it
 * accepted. */
static void test_supports(void) {
    static const char *const cfgs[] = {
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
        "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
        "\"vocab_size\": 512, \"max_position_embeddings\": 4096, "
        "\"original_max_position_embeddings\": 1024, \"rope_scaling\": {\"type\": "
        "\"longrope\", \"short_factor\": [1, 1, 1, 1, 1, 1, 1, 1], \"long_factor\": [2, 2, "
        "2, 2, 2, 2, 2, 2]}}",
        "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128, "
        "\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 2, "
        "\"vocab_size\": 512, \"max_position_embeddings\": 4096}",
    };
    for (size_t i = 0; i < 2; i++) {
        lmc_model_config c;
        lmc_arch_plan p;
        json_object *j = NULL;
        lmc_status st = lmc_config_parse(cfgs[i], strlen(cfgs[i]), "config.json", &c, &j);
        if (!st) st = lmc_arch_plan_init(&c, j, &p);
        json_object_put(j);
        CHECK_MSG(!st, "config %zu: %s", i, lmc_last_error());
        if (st) continue;
        if (i == 0)
            CHECK_ERR(lmc_lora_supports(&p, &c), LMC_ERR_UNSUPPORTED,
                      "lora: longrope rope scaling (llama) is not supported for training");
        else
            CHECK_MSG(lmc_lora_supports(&p, &c) == LMC_OK, "%s", lmc_last_error());
        lmc_arch_plan_free(&p);
    }
}

int main(void) {
    (void)tt_write_n;
    test_supports();
    model = lt_model_dir("llama-fp32");
    test_options();
    test_batches();
    test_load();
    test_dataset();
    return check_summary("test_lora_errors");
}
