/* VLM load factory: base config (nested eos promotion, generation_config
 * override), the alias table, processor-config file resolution, the two
 * registries and the load order. */
#include "check.h"
#include "lmc.h"
#include "vlm/vlm.h"
#include "vlm_test_util.h"
#include <signal.h>
#include <sys/stat.h>

/* ------------------------------------------------------------ helpers */

static void eos_is(const lmc_vlm_base_config *c, int n, const int32_t *want, int line) {
    bool ok = c->has_eos && c->n_eos == n;
    for (int i = 0; ok && i < n; i++) ok = c->eos_ids[i] == want[i];
    CHECK_MSG(ok, "line %d: eos has=%d n=%d first=%d (want n=%d first=%d)", line, c->has_eos,
              c->n_eos, c->n_eos ? c->eos_ids[0] : -1, n, n ? want[0] : -1);
}
#define EOS_IS(c, ...)                                                   \
    do {                                                                 \
        const int32_t want_[] = {__VA_ARGS__};                           \
        eos_is((c), (int)(sizeof want_ / sizeof want_[0]), want_, __LINE__); \
    } while (0)

static lmc_status load_cfg(const char *dir, const char *config, const char *gen,
                           lmc_vlm_base_config *c) {
    vt_write(dir, "config.json", config);
    if (gen)
        vt_write(dir, "generation_config.json", gen);
    else
        unlink(vt_path(dir, "generation_config.json"));
    return lmc_vlm_base_config_load(dir, c, NULL, NULL);
}

/* ------------------------------------------------------------ base config */

static void test_base_config(void) {
    lmc_vlm_base_config c;
    json_object *j = NULL;
    const char *ok = "{\"model_type\":\"qwen2_vl\",\"eos_token_id\":[151645,151643],"
                     "\"quantization\":{\"group_size\":32,\"bits\":8},"
                     "\"text_config\":{\"hidden_size\":8}}";
    CHECK_EQ_INT(lmc_vlm_base_config_parse(ok, strlen(ok), "cfg", &c, &j), LMC_OK);
    CHECK_STREQ(c.model_type, "qwen2_vl");
    EOS_IS(&c, 151645, 151643);
    CHECK(c.quantized && c.q_group_size == 32 && c.q_bits == 8);
    /* Nested blocks flow through the parsed JSON untouched. */
    CHECK(j && json_object_get_int(json_object_object_get(
                   json_object_object_get(j, "text_config"), "hidden_size")) == 8);
    json_object_put(j);

    const char *minimal = "{\"model_type\":\"llava\"}";
    CHECK_EQ_INT(lmc_vlm_base_config_parse(minimal, strlen(minimal), "cfg", &c, NULL), LMC_OK);
    CHECK(!c.has_eos && !c.quantized);
    const char *single = "{\"model_type\":\"x\",\"eos_token_id\":0}";
    CHECK_EQ_INT(lmc_vlm_base_config_parse(single, strlen(single), "cfg", &c, NULL), LMC_OK);
    EOS_IS(&c, 0); /* the top-level value is kept as is, zero included */
    const char *null_eos = "{\"model_type\":\"x\",\"eos_token_id\":null}";
    CHECK_EQ_INT(lmc_vlm_base_config_parse(null_eos, strlen(null_eos), "cfg", &c, NULL), LMC_OK);
    CHECK(!c.has_eos);

    struct {
        const char *json;
        lmc_status st;
        const char *needle;
    } bad[] = {
        {"{\"eos_token_id\":1}", LMC_ERR_FORMAT, "model_type is missing"},
        {"{\"model_type\":7}", LMC_ERR_FORMAT, "model_type must be a string"},
        {"{\"model_type\":null}", LMC_ERR_FORMAT, "model_type is missing"},
        {"{\"model_type\":\"x\"", LMC_ERR_FORMAT, "invalid JSON"},
        {"", LMC_ERR_FORMAT, "invalid JSON"},
        {"[\"qwen2_vl\"]", LMC_ERR_FORMAT, "not a JSON object"},
        {"{\"model_type\":\"x\",\"eos_token_id\":\"</s>\"}", LMC_ERR_FORMAT, "eos_token_id"},
        {"{\"model_type\":\"x\",\"eos_token_id\":-1}", LMC_ERR_FORMAT, "eos_token_id"},
        {"{\"model_type\":\"x\",\"eos_token_id\":[1,\"a\"]}", LMC_ERR_FORMAT, "eos_token_id[1]"},
        {"{\"model_type\":\"x\",\"quantization\":4}", LMC_ERR_FORMAT, "quantization"},
        {"{\"model_type\":\"x\",\"quantization\":{\"bits\":\"4\"}}", LMC_ERR_FORMAT,
         "quantization.bits"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK_ERR(lmc_vlm_base_config_parse(bad[i].json, strlen(bad[i].json), "cfg.json", &c, NULL),
                  bad[i].st, bad[i].needle);
}

static void test_base_config_load(void) {
    const char *d = vt_dir("cfg");
    lmc_vlm_base_config c;

    /* Missing config.json names the path. */
    CHECK_ERR(lmc_vlm_base_config_load(d, &c, NULL, NULL), LMC_ERR_NOT_FOUND, "config.json");
    CHECK_ERR(load_cfg(d, "{\"model_type\": ", NULL, &c), LMC_ERR_FORMAT, "config.json");
    CHECK_ERR(load_cfg(d, "{\"text_config\":{}}", NULL, &c), LMC_ERR_FORMAT,
              "model_type is missing");

    /* Raw bytes and parsed JSON come back from the same read. */
    const char *text = "{\"model_type\":\"idefics3\",\"vision_config\":{\"patch_size\":14}}";
    vt_write(d, "config.json", text);
    json_object *j = NULL;
    char *raw = NULL;
    CHECK_EQ_INT(lmc_vlm_base_config_load(d, &c, &j, &raw), LMC_OK);
    CHECK_STREQ(raw, text);
    CHECK(j && json_object_object_get(j, "vision_config"));
    json_object_put(j);
    free(raw);

    /* Nested promotion: text_config, then the llm_config alias. */
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":{\"eos_token_id\":7}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 7);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"llm_config\":{\"eos_token_id\":[5,6]}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 5, 6);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":{\"eos_token_id\":1},"
                             "\"llm_config\":{\"eos_token_id\":2}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 1);
    /* text_config without the key: llm_config is consulted. */
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":{\"vocab_size\":9},"
                             "\"llm_config\":{\"eos_token_id\":2}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 2);
    /* A non-object text_config is skipped. */
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":\"x\","
                             "\"llm_config\":{\"eos_token_id\":2}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 2);
    /* The first block that has the key decides, falsy or not. */
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":{\"eos_token_id\":0},"
                             "\"llm_config\":{\"eos_token_id\":2}}",
                          NULL, &c), LMC_OK);
    CHECK(!c.has_eos);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":{\"eos_token_id\":null},"
                             "\"llm_config\":{\"eos_token_id\":2}}",
                          NULL, &c), LMC_OK);
    CHECK(!c.has_eos);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":{\"eos_token_id\":[]}}",
                          NULL, &c), LMC_OK);
    CHECK(!c.has_eos);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":{\"eos_token_id\":\"x\"}}",
                          NULL, &c), LMC_OK);
    CHECK(!c.has_eos);
    /* Nested lists keep zeros and drop entries that are not ids. */
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"text_config\":"
                             "{\"eos_token_id\":[0,\"x\",-3,4]}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 0, 4);
    /* Top-level wins over nested; top-level null promotes. */
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"eos_token_id\":3,"
                             "\"text_config\":{\"eos_token_id\":7}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 3);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"eos_token_id\":null,"
                             "\"text_config\":{\"eos_token_id\":7}}",
                          NULL, &c), LMC_OK);
    EOS_IS(&c, 7);

    /* generation_config.json: a truthy value replaces (also a promoted one). */
    const char *nested = "{\"model_type\":\"a\",\"text_config\":{\"eos_token_id\":7}}";
    CHECK_EQ_INT(load_cfg(d, nested, "{\"eos_token_id\":9}", &c), LMC_OK);
    EOS_IS(&c, 9);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\",\"eos_token_id\":3}",
                          "{\"eos_token_id\":[10,11]}", &c), LMC_OK);
    EOS_IS(&c, 10, 11);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\"}", "{\"eos_token_id\":[0]}", &c), LMC_OK);
    EOS_IS(&c, 0);
    /* Falsy or unusable overrides change nothing. */
    CHECK_EQ_INT(load_cfg(d, nested, "{\"eos_token_id\":0}", &c), LMC_OK);
    EOS_IS(&c, 7);
    CHECK_EQ_INT(load_cfg(d, nested, "{\"eos_token_id\":[]}", &c), LMC_OK);
    EOS_IS(&c, 7);
    CHECK_EQ_INT(load_cfg(d, nested, "{\"eos_token_id\":null}", &c), LMC_OK);
    EOS_IS(&c, 7);
    CHECK_EQ_INT(load_cfg(d, nested, "{\"eos_token_id\":\"</s>\"}", &c), LMC_OK);
    EOS_IS(&c, 7);
    CHECK_EQ_INT(load_cfg(d, nested, "{\"eos_token_id\": [1,", &c), LMC_OK);
    EOS_IS(&c, 7);
    CHECK_EQ_INT(load_cfg(d, nested, "[9]", &c), LMC_OK);
    EOS_IS(&c, 7);
    CHECK_EQ_INT(load_cfg(d, "{\"model_type\":\"a\"}", "{\"bos_token_id\":1}", &c), LMC_OK);
    CHECK(!c.has_eos);
    /* A FIFO generation_config.json is ignored without blocking. */
    unlink(vt_path(d, "generation_config.json"));
    vt_write(d, "config.json", nested);
    CHECK(mkfifo(vt_path(d, "generation_config.json"), 0644) == 0);
    CHECK_EQ_INT(lmc_vlm_base_config_load(d, &c, NULL, NULL), LMC_OK);
    EOS_IS(&c, 7);
    unlink(vt_path(d, "generation_config.json"));

    /* A FIFO config.json is refused at once (no hang). */
    const char *f = vt_dir("fifo_cfg");
    CHECK(mkfifo(vt_path(f, "config.json"), 0644) == 0);
    CHECK_ERR(lmc_vlm_base_config_load(f, &c, NULL, NULL), LMC_ERR_IO, "config.json");
}

/* ------------------------------------------------------------ alias table */

static void test_remap(void) {
    static const char *const table[][2] = {
        {"bunny-llama", "llava_bunny"},
        {"cohere2_vision", "aya_vision"},
        {"falcon-perception", "falcon_perception"},
        {"granite-vision", "granite_vision"},
        {"granite4-vision", "granite4_vision"},
        {"granite4_vision", "granite4_vision"},
        {"jvlm", "jina_vlm"},
        {"lfm2-vl", "lfm2_vl"},
        {"llava-qwen2", "llava_bunny"},
        {"llava_qwen2", "fastvlm"},
        {"nemotronh_nano_omni_reasoning_v3", "nemotron_h_nano_omni"},
        {"phi4-siglip", "phi4_siglip"},
        {"rf-detr", "rfdetr"},
        {"sam3.1_video", "sam3_1"},
        {"sam3_video", "sam3"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        CHECK_STREQ(lmc_vlm_remap_model_type(table[i][0]), table[i][1]);
    CHECK_STREQ(lmc_vlm_remap_model_type("qwen2_vl"), "qwen2_vl");
    /* LM aliases do not apply here. */
    CHECK_STREQ(lmc_vlm_remap_model_type("mistral"), "mistral");
    CHECK_STREQ(lmc_vlm_remap_model_type("qwen2_5_vl"), "qwen2_5_vl");
    CHECK(lmc_vlm_remap_model_type(NULL) == NULL);
    CHECK_STREQ(lmc_vlm_processor_class_override("mistral3"), "Mistral3Processor");
    CHECK(lmc_vlm_processor_class_override("pixtral") == NULL);
    CHECK(lmc_vlm_processor_class_override("llava") == NULL);
}

/* ------------------------------------------------------------ processor config */

static void write_or_remove(const char *dir, const char *name, const char *text) {
    if (text)
        vt_write(dir, name, text);
    else
        unlink(vt_path(dir, name));
}

static lmc_status proc_load(const char *dir, const char *pre, const char *proc,
                            lmc_vlm_processor_config *pc) {
    write_or_remove(dir, "preprocessor_config.json", pre);
    write_or_remove(dir, "processor_config.json", proc);
    return lmc_vlm_processor_config_load(dir, pc);
}

static void test_processor_config(void) {
    const char *d = vt_dir("proc");
    lmc_vlm_processor_config pc;
    const char *pre_cls = "{\"processor_class\":\"A\",\"image_mean\":[0.5,0.5,0.5]}";
    const char *pre_img = "{\"image_mean\":[0.5,0.5,0.5],\"size\":{\"height\":4,\"width\":4}}";
    const char *proc_cls = "{\"processor_class\":\"B\",\"image_seq_len\":64}";
    const char *proc_none = "{\"image_seq_len\":64}";

    /* Preferred file alone. */
    CHECK_EQ_INT(proc_load(d, pre_cls, NULL, &pc), LMC_OK);
    CHECK_STREQ(pc.processor_class, "A");
    CHECK_STREQ(pc.preprocessor_json, pre_cls);
    CHECK(pc.processor_json == NULL);
    CHECK_STREQ(pc.filename, "preprocessor_config.json");
    lmc_vlm_processor_config_free(&pc);

    /* Both with a class: the preferred one wins; both bodies carried. */
    CHECK_EQ_INT(proc_load(d, pre_cls, proc_cls, &pc), LMC_OK);
    CHECK_STREQ(pc.processor_class, "A");
    CHECK_STREQ(pc.preprocessor_json, pre_cls);
    CHECK_STREQ(pc.processor_json, proc_cls);
    CHECK_STREQ(pc.filename, "preprocessor_config.json");
    lmc_vlm_processor_config_free(&pc);

    /* Split layout: image keys in the preferred file, class in the other. */
    CHECK_EQ_INT(proc_load(d, pre_img, proc_cls, &pc), LMC_OK);
    CHECK_STREQ(pc.processor_class, "B");
    CHECK_STREQ(pc.preprocessor_json, pre_img);
    CHECK_STREQ(pc.processor_json, proc_cls);
    CHECK_STREQ(pc.filename, "preprocessor_config.json");
    CHECK_STREQ(pc.class_source, "processor_config.json");
    lmc_vlm_processor_config_free(&pc);

    /* processor_class null counts as absent. */
    CHECK_EQ_INT(proc_load(d, "{\"processor_class\":null}", proc_cls, &pc), LMC_OK);
    CHECK_STREQ(pc.processor_class, "B");
    lmc_vlm_processor_config_free(&pc);

    /* Fallback file alone. */
    CHECK_EQ_INT(proc_load(d, NULL, proc_cls, &pc), LMC_OK);
    CHECK_STREQ(pc.processor_class, "B");
    CHECK(pc.preprocessor_json == NULL);
    CHECK_STREQ(pc.processor_json, proc_cls);
    CHECK_STREQ(pc.filename, "processor_config.json");
    lmc_vlm_processor_config_free(&pc);

    /* Errors. */
    CHECK_ERR(proc_load(d, NULL, NULL, &pc), LMC_ERR_NOT_FOUND,
              "neither preprocessor_config.json nor processor_config.json");
    CHECK(pc.processor_class == NULL && pc.preprocessor_json == NULL);
    CHECK_ERR(proc_load(d, pre_img, NULL, &pc), LMC_ERR_FORMAT, "processor_class is missing");
    CHECK_ERR(proc_load(d, pre_img, proc_none, &pc), LMC_ERR_FORMAT,
              "neither");
    CHECK_ERR(proc_load(d, NULL, proc_none, &pc), LMC_ERR_FORMAT, "processor_class is missing");
    /* A malformed preferred file is an error even when the other is fine. */
    CHECK_ERR(proc_load(d, "{\"processor_class\":", proc_cls, &pc), LMC_ERR_FORMAT,
              "preprocessor_config.json");
    CHECK_ERR(proc_load(d, "[\"A\"]", proc_cls, &pc), LMC_ERR_FORMAT, "expected an object");
    CHECK_ERR(proc_load(d, "{\"processor_class\":3}", proc_cls, &pc), LMC_ERR_FORMAT,
              "processor_class must be a string");
    CHECK_ERR(proc_load(d, pre_img, "{\"processor_class\":", &pc), LMC_ERR_FORMAT,
              "processor_config.json");
    /* Even when the class came from the preferred file, a broken (e.g.
     * FIFO) processor_config.json is not silently skipped. */
    write_or_remove(d, "processor_config.json", NULL);
    CHECK(mkfifo(vt_path(d, "processor_config.json"), 0644) == 0);
    vt_write(d, "preprocessor_config.json", pre_cls);
    CHECK_ERR(lmc_vlm_processor_config_load(d, &pc), LMC_ERR_IO, "processor_config.json");
    unlink(vt_path(d, "processor_config.json"));
    /* A FIFO preferred file is an error, not "absent" (and does not hang). */
    unlink(vt_path(d, "preprocessor_config.json"));
    CHECK(mkfifo(vt_path(d, "preprocessor_config.json"), 0644) == 0);
    vt_write(d, "processor_config.json", proc_cls);
    CHECK_ERR(lmc_vlm_processor_config_load(d, &pc), LMC_ERR_IO, "preprocessor_config.json");
    unlink(vt_path(d, "preprocessor_config.json"));
    /* A directory in place of the preferred file is an error too. */
    CHECK(mkdir(vt_path(d, "preprocessor_config.json"), 0755) == 0);
    CHECK(lmc_vlm_processor_config_load(d, &pc) != LMC_OK);
    rmdir(vt_path(d, "preprocessor_config.json"));
    /* Embedded NUL bytes are refused rather than truncated. */
    vt_write_n(d, "preprocessor_config.json", "{\"processor_class\":\"A\"}\0x", 25);
    CHECK_ERR(lmc_vlm_processor_config_load(d, &pc), LMC_ERR_FORMAT, "NUL");
}

/* ------------------------------------------------------------ registries */

typedef struct {
    lmc_vlm_model base;
    char model_type[64];
    size_t n_weights;
    int eos_n;
} mock_model;

typedef struct {
    lmc_vlm_processor base;
    char cls[64];
    bool had_pre, had_proc, saw_tokenizer;
} mock_processor;

static int g_model_ctor_calls, g_proc_ctor_calls, g_other_calls;
static const lmc_vlm_base_config *g_model_cfg_seen;
static const char *g_model_raw_seen;

static void mock_model_free(lmc_vlm_model *m) { free(m); }
static void mock_proc_free(lmc_vlm_processor *p) { free(p); }

static lmc_status mock_model_ctor(const lmc_vlm_loaded_model *lm, lmc_vlm_model **out) {
    g_model_ctor_calls++;
    mock_model *m = calloc(1, sizeof *m);
    if (!m) return LMC_ERR_NOMEM;
    m->base.free = mock_model_free;
    snprintf(m->model_type, sizeof m->model_type, "%s", lm->config->model_type);
    m->n_weights = lmc_st_set_count(lm->weights);
    m->eos_n = lm->config->n_eos;
    g_model_cfg_seen = lm->config;
    g_model_raw_seen = lm->config_raw;
    *out = &m->base;
    return LMC_OK;
}

static lmc_status other_model_ctor(const lmc_vlm_loaded_model *lm, lmc_vlm_model **out) {
    g_other_calls++;
    return mock_model_ctor(lm, out);
}

static lmc_status mock_proc_ctor(const lmc_vlm_loaded_processor *lp, lmc_vlm_processor **out) {
    g_proc_ctor_calls++;
    mock_processor *p = calloc(1, sizeof *p);
    if (!p) return LMC_ERR_NOMEM;
    p->base.free = mock_proc_free;
    snprintf(p->cls, sizeof p->cls, "%s", lp->processor_class);
    p->had_pre = lp->preprocessor_json != NULL;
    p->had_proc = lp->processor_json != NULL;
    p->saw_tokenizer = lp->tokenizer != NULL;
    /* The processor sees the same config instance and bytes as the model. */
    CHECK(lp->config == g_model_cfg_seen);
    CHECK(lp->config_raw == g_model_raw_seen);
    lmc_status st = lmc_image_config_parse(lp->preprocessor_json ? lp->preprocessor_json
                                                                 : lp->processor_json,
                                           strlen(lp->preprocessor_json ? lp->preprocessor_json
                                                                        : lp->processor_json),
                                           lp->processor_config_filename, &p->base.image);
    if (st) {
        free(p);
        return st;
    }
    *out = &p->base;
    return LMC_OK;
}

static void test_registries(void) {
    lmc_vlm_model_registry *r = NULL;
    CHECK_EQ_INT(lmc_vlm_model_registry_new(&r), LMC_OK);
    CHECK(!lmc_vlm_model_registry_contains(r, "lfm2_vl"));
    lmc_vlm_model_ctor disp = mock_model_ctor;
    /* Registering an alias registers its canonical id. */
    CHECK_EQ_INT(lmc_vlm_model_registry_register(r, "lfm2-vl", mock_model_ctor, &disp), LMC_OK);
    CHECK(disp == NULL);
    CHECK(lmc_vlm_model_registry_contains(r, "lfm2_vl"));
    CHECK(lmc_vlm_model_registry_contains(r, "lfm2-vl"));
    CHECK(!lmc_vlm_model_registry_contains(r, "qwen2_vl"));
    /* Last writer wins, under the canonical id, and reports the old one. */
    CHECK_EQ_INT(lmc_vlm_model_registry_register(r, "lfm2_vl", other_model_ctor, &disp), LMC_OK);
    CHECK(disp == mock_model_ctor);
    CHECK_EQ_INT(lmc_vlm_model_registry_register(r, "llava-qwen2", mock_model_ctor, NULL),
                 LMC_OK);
    CHECK(lmc_vlm_model_registry_contains(r, "bunny-llama")); /* same canonical id */
    CHECK(!lmc_vlm_model_registry_contains(r, "llava_qwen2"));  /* -> fastvlm */
    CHECK_ERR(lmc_vlm_model_registry_register(r, "", mock_model_ctor, NULL), LMC_ERR_INVALID_ARG,
              "model_type");
    CHECK_ERR(lmc_vlm_model_registry_register(r, "x", NULL, NULL), LMC_ERR_INVALID_ARG,
              "constructor");

    lmc_vlm_base_config cfg;
    memset(&cfg, 0, sizeof cfg);
    strcpy(cfg.model_type, "lfm2-vl");
    lmc_vlm_loaded_model lm = {.config = &cfg};
    lmc_vlm_model *m = NULL;
    g_other_calls = 0;
    CHECK_EQ_INT(lmc_vlm_model_registry_create(r, &lm, &m), LMC_OK);
    CHECK(g_other_calls == 1 && m);
    if (m) m->free(m);
    strcpy(cfg.model_type, "qwen2_vl");
    CHECK_ERR(lmc_vlm_model_registry_create(r, &lm, &m), LMC_ERR_UNSUPPORTED, "'qwen2_vl'");
    CHECK(m == NULL);
    strcpy(cfg.model_type, "jvlm");
    CHECK_ERR(lmc_vlm_model_registry_create(r, &lm, &m), LMC_ERR_UNSUPPORTED,
              "alias of 'jina_vlm'");
    lmc_vlm_model_registry_free(r);

    lmc_vlm_processor_registry *p = NULL;
    CHECK_EQ_INT(lmc_vlm_processor_registry_new(&p), LMC_OK);
    lmc_vlm_processor_ctor pd = mock_proc_ctor;
    CHECK_EQ_INT(lmc_vlm_processor_registry_register(p, "Qwen2VLProcessor", mock_proc_ctor, &pd),
                 LMC_OK);
    CHECK(pd == NULL);
    CHECK(lmc_vlm_processor_registry_contains(p, "Qwen2VLProcessor"));
    CHECK(!lmc_vlm_processor_registry_contains(p, "qwen2vlprocessor")); /* raw keys */
    CHECK_EQ_INT(lmc_vlm_processor_registry_register(p, "Qwen2VLProcessor", mock_proc_ctor, &pd),
                 LMC_OK);
    CHECK(pd == mock_proc_ctor);
    /* No canonicalization on processor keys. */
    CHECK_EQ_INT(lmc_vlm_processor_registry_register(p, "lfm2-vl", mock_proc_ctor, NULL), LMC_OK);
    CHECK(!lmc_vlm_processor_registry_contains(p, "lfm2_vl"));
    lmc_vlm_loaded_processor lp = {.processor_class = "PixtralProcessor"};
    lmc_vlm_processor *proc = NULL;
    CHECK_ERR(lmc_vlm_processor_registry_create(p, &lp, &proc), LMC_ERR_UNSUPPORTED,
              "'PixtralProcessor'");
    lmc_vlm_processor_registry_free(p);

    /* The built-in registries hold LLaVA only. */
    CHECK(!lmc_vlm_model_registry_contains(lmc_vlm_default_model_registry(), "qwen2_vl"));
    CHECK(lmc_vlm_model_registry_contains(lmc_vlm_default_model_registry(), "llava"));
    CHECK(!lmc_vlm_processor_registry_contains(lmc_vlm_default_processor_registry(),
                                               "Qwen2VLProcessor"));
    CHECK(lmc_vlm_processor_registry_contains(lmc_vlm_default_processor_registry(),
                                              "LlavaProcessor"));
}

/* ------------------------------------------------------------ load order */

static void write_weights(const char *dir) {
    const char *hdr = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}";
    size_t hl = strlen(hdr);
    unsigned char buf[256];
    memset(buf, 0, sizeof buf);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)hl >> (8 * i));
    memcpy(buf + 8, hdr, hl);
    float v[2] = {1.5f, -2.0f};
    memcpy(buf + 8 + hl, v, sizeof v);
    vt_write_n(dir, "model.safetensors", buf, 8 + hl + sizeof v);
}

static const char *k_tokenizer =
    "{\"version\":\"1.0\",\"added_tokens\":[{\"id\":3,\"content\":\"</s>\",\"single_word\":false,"
    "\"lstrip\":false,\"rstrip\":false,\"normalized\":false,\"special\":true}],"
    "\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,\"decoder\":null,"
    "\"model\":{\"type\":\"BPE\",\"dropout\":null,\"unk_token\":null,"
    "\"continuing_subword_prefix\":null,\"end_of_word_suffix\":null,\"fuse_unk\":false,"
    "\"byte_fallback\":false,\"vocab\":{\"a\":0,\"b\":1,\"ab\":2,\"</s>\":3},"
    "\"merges\":[\"a b\"]}}";

static lmc_status vload(const char *dir, const char *tok_dir, const lmc_vlm_model_registry *m,
                        const lmc_vlm_processor_registry *p, lmc_vlm_context **ctx) {
    lmc_load_options o = {.model_dir = dir, .tokenizer_dir = tok_dir};
    return lmc_vlm_load_with(&o, m, p, ctx);
}

static void test_load(void) {
    lmc_vlm_model_registry *models = NULL;
    lmc_vlm_processor_registry *procs = NULL;
    CHECK_EQ_INT(lmc_vlm_model_registry_new(&models), LMC_OK);
    CHECK_EQ_INT(lmc_vlm_processor_registry_new(&procs), LMC_OK);
    lmc_vlm_model_registry_register(models, "qwen2_vl", mock_model_ctor, NULL);
    lmc_vlm_model_registry_register(models, "mistral3", mock_model_ctor, NULL);
    lmc_vlm_processor_registry_register(procs, "Qwen2VLProcessor", mock_proc_ctor, NULL);
    lmc_vlm_processor_registry_register(procs, "PixtralProcessor", mock_proc_ctor, NULL);
    lmc_vlm_context *ctx = (lmc_vlm_context *)1;

    /* Bad arguments and a missing directory. */
    CHECK_ERR(vload("", NULL, models, procs, &ctx), LMC_ERR_INVALID_ARG, "model_dir");
    CHECK(ctx == NULL);
    CHECK_ERR(vload(vt_path(vt_root_dir(), "nope"), NULL, models, procs, &ctx), LMC_ERR_NOT_FOUND,
              "model directory not found");

    /* Unknown model_type fails before weights, tokenizer and processor
     * config: all three are broken here and none is reported. */
    const char *d = vt_dir("load_unknown");
    vt_write(d, "config.json", "{\"model_type\":\"made_up_vlm\"}");
    vt_write(d, "model.safetensors", "garbage");
    vt_write(d, "preprocessor_config.json", "{ broken");
    g_model_ctor_calls = g_proc_ctor_calls = 0;
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_UNSUPPORTED,
              "unsupported VLM model type 'made_up_vlm'");
    CHECK(ctx == NULL);
    vt_write(d, "config.json", "{\"model_type\":\"lfm2-vl\"}");
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_UNSUPPORTED, "alias of 'lfm2_vl'");
    /* The public entry point has no qwen2_vl architecture. */
    vt_write(d, "config.json", "{\"model_type\":\"qwen2_vl\"}");
    lmc_load_options o = {.model_dir = d};
    CHECK_ERR(lmc_vlm_load(&o, &ctx), LMC_ERR_UNSUPPORTED, "'qwen2_vl'");
    CHECK(ctx == NULL);
    /* Registered model_type: now the broken processor config is reached. */
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_FORMAT, "preprocessor_config.json");
    /* Missing config.json and malformed config.json. */
    unlink(vt_path(d, "config.json"));
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_NOT_FOUND, "config.json");
    vt_write(d, "config.json", "{\"vision_config\":{}}");
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_FORMAT, "model_type is missing");
    /* FIFO config.json: refused, no hang. */
    unlink(vt_path(d, "config.json"));
    CHECK(mkfifo(vt_path(d, "config.json"), 0644) == 0);
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_IO, "config.json");
    unlink(vt_path(d, "config.json"));

    /* Unsupported processor class: also before weights. */
    vt_write(d, "config.json", "{\"model_type\":\"qwen2_vl\"}");
    vt_write(d, "preprocessor_config.json", "{\"processor_class\":\"SomethingElse\"}");
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_UNSUPPORTED,
              "unsupported VLM processor class 'SomethingElse'");
    unlink(vt_path(d, "preprocessor_config.json"));
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_NOT_FOUND, "neither");
    /* Supported class: the broken weights are the next thing reported. */
    vt_write(d, "processor_config.json", "{\"processor_class\":\"Qwen2VLProcessor\"}");
    CHECK_MSG(vload(d, NULL, models, procs, &ctx) != LMC_OK &&
                  strstr(lmc_last_error(), "model.safetensors"),
              "%s", lmc_last_error());
    CHECK(g_model_ctor_calls == 0 && g_proc_ctor_calls == 0);

    /* Mistral3's override: the on-disk PixtralProcessor is looked up as
     * Mistral3Processor, which is not registered. */
    vt_write(d, "config.json", "{\"model_type\":\"mistral3\"}");
    vt_write(d, "processor_config.json", "{\"processor_class\":\"PixtralProcessor\"}");
    CHECK_ERR(vload(d, NULL, models, procs, &ctx), LMC_ERR_UNSUPPORTED,
              "'Mistral3Processor' (override for model type 'mistral3' of 'PixtralProcessor'");

    /* A full load through mock constructors. */
    const char *ok = vt_dir("load_ok");
    vt_write(ok, "config.json",
             "{\"model_type\":\"qwen2_vl\",\"text_config\":{\"eos_token_id\":3}}");
    vt_write(ok, "preprocessor_config.json",
             "{\"image_mean\":[0.25,0.5,0.75],\"image_std\":[0.5,0.5,0.5],"
             "\"size\":{\"height\":8,\"width\":8},\"resample\":2}");
    vt_write(ok, "processor_config.json", "{\"processor_class\":\"Qwen2VLProcessor\"}");
    write_weights(ok);
    /* No tokenizer.json yet: named. */
    CHECK_ERR(vload(ok, NULL, models, procs, &ctx), LMC_ERR_NOT_FOUND, "tokenizer.json not found");
    vt_write(ok, "tokenizer.json", k_tokenizer);
    g_model_ctor_calls = g_proc_ctor_calls = 0;
    ctx = NULL;
    CHECK_EQ_INT(vload(ok, NULL, models, procs, &ctx), LMC_OK);
    CHECK(ctx != NULL);
    if (ctx) {
        CHECK(g_model_ctor_calls == 1 && g_proc_ctor_calls == 1);
        CHECK_STREQ(lmc_vlm_model_type(ctx), "qwen2_vl");
        mock_model *m = (mock_model *)ctx->model;
        CHECK(m->n_weights == 1);
        CHECK(m->eos_n == 1);
        mock_processor *p = (mock_processor *)ctx->processor;
        CHECK_STREQ(p->cls, "Qwen2VLProcessor");
        CHECK(p->had_pre && p->had_proc && p->saw_tokenizer);
        CHECK(p->base.image.height == 8 && p->base.image.resample == 2);
        CHECK(p->base.image.mean[0] == 0.25 && p->base.image.mean[2] == 0.75);
        /* The promoted nested eos replaced the tokenizer's default. */
        const int32_t *eos = NULL;
        size_t n = lmc_tokenizer_eos_ids(lmc_vlm_tokenizer(ctx), &eos);
        CHECK(n == 1 && eos && eos[0] == 3);
        lmc_vlm_free(ctx);
    }
    /* A separate tokenizer directory: the model dir's tokenizer is not
     * used (here it is broken). */
    const char *tokd = vt_dir("tok_only");
    vt_write(tokd, "tokenizer.json", k_tokenizer);
    vt_write(ok, "tokenizer.json", "{ not json");
    ctx = NULL;
    CHECK_EQ_INT(vload(ok, tokd, models, procs, &ctx), LMC_OK);
    lmc_vlm_free(ctx);
    CHECK_MSG(vload(ok, NULL, models, procs, &ctx) != LMC_OK, "broken tokenizer accepted");

    lmc_vlm_model_registry_free(models);
    lmc_vlm_processor_registry_free(procs);
    lmc_vlm_free(NULL);
}

int main(void) {
    alarm(60); /* a FIFO that blocks must fail the test, not hang it */
    test_base_config();
    test_base_config_load();
    test_remap();
    test_processor_config();
    test_registries();
    test_load();
    return check_summary("test_vlm_factory");
}
