/* config.json typed subset, defaults, rope forms, and the
 * generation_config.json eos override rules. The config texts are the
 * published config.json files of the named checkpoints (trimmed of keys lmc
 * does not read); expected values are what transformers reads from them. */
#include "base/error.h"
#include "base/file.h"
#include "base/json.h"
#include "check.h"
#include "formats/config.h"
#include <sys/stat.h>
#include <unistd.h>

static char g_dir[64];

static const char *QWEN25_05B =
    "{\"architectures\": [\"Qwen2ForCausalLM\"], \"attention_dropout\": 0.0,"
    " \"bos_token_id\": 151643, \"eos_token_id\": 151645, \"hidden_act\": \"silu\","
    " \"hidden_size\": 896, \"initializer_range\": 0.02, \"intermediate_size\": 4864,"
    " \"max_position_embeddings\": 32768, \"max_window_layers\": 21, \"model_type\": \"qwen2\","
    " \"num_attention_heads\": 14, \"num_hidden_layers\": 24, \"num_key_value_heads\": 2,"
    " \"rms_norm_eps\": 1e-06, \"rope_theta\": 1000000.0, \"sliding_window\": 32768,"
    " \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\", \"use_cache\": true,"
    " \"use_sliding_window\": false, \"vocab_size\": 151936}";

static const char *LLAMA32_1B =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
    " \"bos_token_id\": 128000, \"eos_token_id\": [128001, 128008, 128009],"
    " \"head_dim\": 64, \"hidden_act\": \"silu\", \"hidden_size\": 2048,"
    " \"intermediate_size\": 8192, \"max_position_embeddings\": 131072, \"mlp_bias\": false,"
    " \"model_type\": \"llama\", \"num_attention_heads\": 32, \"num_hidden_layers\": 16,"
    " \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-05, \"rope_scaling\": {\"factor\": 32.0,"
    " \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
    " \"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
    " \"vocab_size\": 128256}";

static const char *MISTRAL_7B =
    "{\"architectures\": [\"MistralForCausalLM\"], \"bos_token_id\": 1, \"eos_token_id\": 2,"
    " \"hidden_act\": \"silu\", \"hidden_size\": 4096, \"intermediate_size\": 14336,"
    " \"max_position_embeddings\": 32768, \"model_type\": \"mistral\","
    " \"num_attention_heads\": 32, \"num_hidden_layers\": 32, \"num_key_value_heads\": 8,"
    " \"rms_norm_eps\": 1e-05, \"rope_theta\": 10000.0, \"sliding_window\": 4096,"
    " \"tie_word_embeddings\": false, \"torch_dtype\": \"bfloat16\", \"vocab_size\": 32000}";

static lmc_status parse(const char *text, lmc_model_config *c) {
    return lmc_config_parse(text, strlen(text), "config.json", c, NULL);
}

static void test_real_configs(void) {
    lmc_model_config c;
    json_object *j = NULL;
    CHECK_EQ_INT(lmc_config_parse(QWEN25_05B, strlen(QWEN25_05B), "config.json", &c, &j), LMC_OK);
    CHECK_STREQ(c.model_type, "qwen2");
    CHECK_EQ_INT(c.vocab_size, 151936);
    CHECK_EQ_INT(c.hidden_size, 896);
    CHECK_EQ_INT(c.intermediate_size, 4864);
    CHECK_EQ_INT(c.num_hidden_layers, 24);
    CHECK_EQ_INT(c.num_attention_heads, 14);
    CHECK_EQ_INT(c.num_key_value_heads, 2);
    CHECK_EQ_INT(c.head_dim, 64); /* 896 / 14 */
    CHECK(c.rope_theta == 1e6 && c.rms_norm_eps == 1e-6);
    CHECK(c.tie_word_embeddings);
    CHECK(!c.attention_bias); /* not in the file (qwen2's q/k/v bias: models/arch/qwen2.c) */
    CHECK_EQ_INT(c.sliding_window, 0); /* use_sliding_window: false */
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_ids[0], 151645);
    CHECK_EQ_INT(c.bos_token_id, 151643);
    CHECK_STREQ(c.torch_dtype, "bfloat16");
    CHECK_STREQ(c.rope_type, "");
    CHECK(!c.quantized);
    /* The parsed document is handed back for architecture keys. */
    int64_t mwl = 0;
    CHECK(lmc_json_int(j, "max_window_layers", &mwl, NULL) && mwl == 21);
    json_object_put(j);

    CHECK_EQ_INT(parse(LLAMA32_1B, &c), LMC_OK);
    CHECK_STREQ(c.model_type, "llama");
    CHECK_EQ_INT(c.head_dim, 64);
    CHECK_EQ_INT(c.num_key_value_heads, 8);
    CHECK_EQ_INT(c.max_position_embeddings, 131072);
    CHECK(c.rms_norm_eps == 1e-5 && c.rope_theta == 500000.0);
    CHECK_STREQ(c.rope_type, "llama3");
    CHECK(c.rope_factor == 32.0 && c.rope_low_freq_factor == 1.0 &&
          c.rope_high_freq_factor == 4.0);
    CHECK_EQ_INT(c.rope_original_max_position, 8192);
    CHECK(!c.attention_bias && !c.mlp_bias && c.tie_word_embeddings);
    CHECK_EQ_INT(c.n_eos, 3);
    CHECK(c.eos_ids[0] == 128001 && c.eos_ids[1] == 128008 && c.eos_ids[2] == 128009);

    CHECK_EQ_INT(parse(MISTRAL_7B, &c), LMC_OK);
    CHECK_STREQ(c.model_type, "mistral");
    CHECK_EQ_INT(c.head_dim, 128);
    CHECK_EQ_INT(c.sliding_window, 4096); /* no use_sliding_window key: window applies */
    CHECK(!c.tie_word_embeddings && !c.attention_bias);
    CHECK_EQ_INT(c.n_eos, 1);
    CHECK_EQ_INT(c.eos_ids[0], 2);
}

static void test_defaults_and_forms(void) {
    lmc_model_config c;
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"hidden_size\": 64,"
                       " \"num_attention_heads\": 4}",
                       &c),
                 LMC_OK);
    CHECK_EQ_INT(c.num_key_value_heads, 4);
    CHECK_EQ_INT(c.head_dim, 16);
    CHECK(c.rope_theta == 10000.0 && c.rms_norm_eps == 1e-6);
    CHECK(!c.tie_word_embeddings && !c.attention_bias && !c.mlp_bias);
    CHECK_STREQ(c.hidden_act, "silu");
    CHECK_EQ_INT(c.sliding_window, 0);
    CHECK_EQ_INT(c.n_eos, 0);
    CHECK_EQ_INT(c.bos_token_id, -1);
    CHECK_STREQ(c.rope_type, "");
    CHECK(c.rope_factor == 1.0);

    /* null means "use the default" (mistral v0.3 writes "head_dim": null). */
    CHECK_EQ_INT(parse("{\"model_type\": \"mistral\", \"hidden_size\": 64, \"head_dim\": null,"
                       " \"num_attention_heads\": 8, \"sliding_window\": null,"
                       " \"rope_scaling\": null, \"eos_token_id\": null}",
                       &c),
                 LMC_OK);
    CHECK_EQ_INT(c.head_dim, 8);
    CHECK_EQ_INT(c.sliding_window, 0);

    /* transformers 5.x rope_parameters; legacy "type" key; "default" = none. */
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"dtype\": \"float16\", \"rope_parameters\": {"
                       "\"rope_theta\": 500000.0, \"rope_type\": \"llama3\", \"factor\": 8.0,"
                       " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
                       " \"original_max_position_embeddings\": 8192}}",
                       &c),
                 LMC_OK);
    CHECK(c.rope_theta == 500000.0 && c.rope_factor == 8.0);
    CHECK_STREQ(c.rope_type, "llama3");
    CHECK_EQ_INT(c.rope_original_max_position, 8192);
    CHECK_STREQ(c.torch_dtype, "float16");
    CHECK_EQ_INT(parse("{\"model_type\": \"qwen3\", \"rope_parameters\": {\"rope_theta\": 1000000,"
                       " \"rope_type\": \"default\"}}",
                       &c),
                 LMC_OK);
    CHECK(c.rope_theta == 1e6);
    CHECK_STREQ(c.rope_type, "");
    CHECK_EQ_INT(parse("{\"model_type\": \"gemma3_text\", \"rope_parameters\": {"
                       "\"full_attention\": {\"rope_theta\": 1000000.0, \"rope_type\": \"linear\","
                       " \"factor\": 8.0}, \"sliding_attention\": {\"rope_theta\": 10000.0,"
                       " \"rope_type\": \"default\"}}}",
                       &c),
                 LMC_OK);
    CHECK(c.rope_theta == 1e6 && c.rope_factor == 8.0);
    CHECK_STREQ(c.rope_type, "linear");
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"max_position_embeddings\": 4096,"
                       " \"rope_scaling\": {\"type\": \"dynamic\", \"factor\": 2.0}}",
                       &c),
                 LMC_OK);
    CHECK_STREQ(c.rope_type, "dynamic");
    CHECK(c.rope_factor == 2.0);
    CHECK_EQ_INT(c.rope_original_max_position, 4096);
    CHECK_EQ_INT(parse("{\"model_type\": \"qwen3\", \"sliding_window\": 4096,"
                       " \"use_sliding_window\": true}",
                       &c),
                 LMC_OK);
    CHECK_EQ_INT(c.sliding_window, 4096);
    CHECK_EQ_INT(parse("{\"model_type\": \"qwen3\", \"attention_bias\": false}", &c), LMC_OK);
    CHECK(!c.attention_bias);

    /* MLX quantization block. */
    CHECK_EQ_INT(parse("{\"model_type\": \"llama\", \"quantization\": {\"group_size\": 32,"
                       " \"bits\": 8}}",
                       &c),
                 LMC_OK);
    CHECK(c.quantized && c.q_group_size == 32 && c.q_bits == 8);
}

static void test_bad_configs(void) {
    lmc_model_config c;
    CHECK_ERR(parse("{\"hidden_size\": 8}", &c), LMC_ERR_FORMAT, "config.json: model_type is missing");
    CHECK_ERR(parse("{\"model_type\": 3}", &c), LMC_ERR_FORMAT, "model_type must be a string");
    CHECK_ERR(parse("[]", &c), LMC_ERR_FORMAT, "not a JSON object");
    CHECK_ERR(parse("{\"model_type\": \"llama\",", &c), LMC_ERR_FORMAT, "config.json: invalid JSON");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"hidden_size\": \"big\"}", &c), LMC_ERR_FORMAT,
              "hidden_size must be an integer");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"num_hidden_layers\": 2.5}", &c), LMC_ERR_FORMAT,
              "num_hidden_layers must be an integer");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"vocab_size\": -5}", &c), LMC_ERR_FORMAT,
              "vocab_size is -5, must be non-negative");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"rope_theta\": \"x\"}", &c), LMC_ERR_FORMAT,
              "rope_theta must be a number");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"tie_word_embeddings\": 1}", &c), LMC_ERR_FORMAT,
              "tie_word_embeddings must be true or false");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"rope_scaling\": [1]}", &c), LMC_ERR_FORMAT,
              "rope_scaling must be an object");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"rope_scaling\": {\"factor\": \"2\"}}", &c),
              LMC_ERR_FORMAT, "rope_scaling.factor must be a number");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"eos_token_id\": \"</s>\"}", &c), LMC_ERR_FORMAT,
              "eos_token_id must be an integer or a list");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"eos_token_id\": [1, \"x\"]}", &c),
              LMC_ERR_FORMAT, "eos_token_id[1] is not a valid token id");
    char big[1024] = "{\"model_type\": \"llama\", \"eos_token_id\": [1";
    for (int i = 0; i < LMC_MAX_EOS; i++) strcat(big, ", 2");
    strcat(big, "]}");
    CHECK_ERR(parse(big, &c), LMC_ERR_LIMIT, "eos_token_id has 65 ids, over the limit of 64");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"quantization\": 4}", &c), LMC_ERR_FORMAT,
              "quantization must be an object");
    CHECK_ERR(parse("{\"model_type\": \"llama\", \"hidden_act\": [\"gelu\"]}", &c),
              LMC_ERR_FORMAT, "hidden_act must be a string");
    char longtype[200] = "{\"model_type\": \"";
    memset(longtype + strlen(longtype), 'x', 100);
    strcat(longtype, "\"}");
    CHECK_ERR(parse(longtype, &c), LMC_ERR_LIMIT, "model_type");
}

static char *in_dir(const char *name) {
    static char buf[2][256];
    static int k;
    k ^= 1;
    snprintf(buf[k], sizeof buf[k], "%s/%s", g_dir, name);
    return buf[k];
}

static void put(const char *name, const char *text) {
    CHECK_EQ_INT(lmc_write_file_atomic(in_dir(name), text, strlen(text)), LMC_OK);
}

/* Load g_dir with generation_config.json = gen (NULL: none). */
static lmc_status load_with_gen(const char *gen, lmc_model_config *c) {
    unlink(in_dir("generation_config.json"));
    if (gen) put("generation_config.json", gen);
    return lmc_config_load(g_dir, c, NULL, NULL);
}

static void test_load_and_eos(void) {
    lmc_model_config c;
    json_object *j = NULL;
    char *raw = NULL;
    CHECK_ERR(lmc_config_load(g_dir, &c, &j, &raw), LMC_ERR_NOT_FOUND, "config.json");
    CHECK(strstr(lmc_last_error(), g_dir) != NULL);
    CHECK(j == NULL && raw == NULL);

    put("config.json", QWEN25_05B);
    CHECK_EQ_INT(lmc_config_load(g_dir, &c, &j, &raw), LMC_OK);
    CHECK(raw && !strcmp(raw, QWEN25_05B)); /* the same bytes the typed config came from */
    CHECK(j && json_object_is_type(j, json_type_object));
    json_object_put(j);
    free(raw);

    /* Qwen2.5's generation_config.json: list replaces config's scalar. */
    CHECK_EQ_INT(load_with_gen("{\"bos_token_id\": 151643, \"do_sample\": true,"
                               " \"eos_token_id\": [151645, 151643], \"pad_token_id\": 151643}",
                               &c),
                 LMC_OK);
    CHECK_EQ_INT(c.n_eos, 2);
    CHECK(c.eos_ids[0] == 151645 && c.eos_ids[1] == 151643);
    /* Nonzero scalar overrides. */
    CHECK_EQ_INT(load_with_gen("{\"eos_token_id\": 7}", &c), LMC_OK);
    CHECK(c.n_eos == 1 && c.eos_ids[0] == 7);
    /* Scalar 0, [], null, a string, absent: not truthy, config.json's set stays. */
    const char *falsy[] = {"{\"eos_token_id\": 0}", "{\"eos_token_id\": []}",
                           "{\"eos_token_id\": null}", "{\"eos_token_id\": \"x\"}",
                           "{\"do_sample\": true}", "{\"eos_token_id\": -3}"};
    for (size_t i = 0; i < sizeof falsy / sizeof falsy[0]; i++) {
        CHECK_EQ_INT(load_with_gen(falsy[i], &c), LMC_OK);
        CHECK_MSG(c.n_eos == 1 && c.eos_ids[0] == 151645, "case %s", falsy[i]);
    }
    /* A non-empty list is kept verbatim, zeros included. */
    CHECK_EQ_INT(load_with_gen("{\"eos_token_id\": [0, 5]}", &c), LMC_OK);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 0 && c.eos_ids[1] == 5);
    /* List entries that are not token ids are dropped; the rest kept in order. */
    CHECK_EQ_INT(load_with_gen("{\"eos_token_id\": [null, 9, \"x\", -1, 4]}", &c), LMC_OK);
    CHECK(c.n_eos == 2 && c.eos_ids[0] == 9 && c.eos_ids[1] == 4);
    /* More ids than the cap is an error, not a silent truncation. */
    char big[1024] = "{\"eos_token_id\": [1";
    for (int i = 0; i < LMC_MAX_EOS; i++) strcat(big, ", 2");
    strcat(big, "]}");
    CHECK_ERR(load_with_gen(big, &c), LMC_ERR_LIMIT, "generation_config.json: eos_token_id has more than 64");
    /* Malformed generation_config.json is ignored, and leaves no error behind. */
    CHECK_EQ_INT(load_with_gen("{\"eos_token_id\": [1, 2", &c), LMC_OK);
    CHECK(c.n_eos == 1 && c.eos_ids[0] == 151645);
    CHECK_STREQ(lmc_last_error(), "");
    CHECK_EQ_INT(load_with_gen("[5]", &c), LMC_OK);
    CHECK(c.n_eos == 1 && c.eos_ids[0] == 151645);
    /* A generation_config.json that is a FIFO (nobody writing) must not hang. */
    unlink(in_dir("generation_config.json"));
    CHECK(mkfifo(in_dir("generation_config.json"), 0600) == 0);
    CHECK_EQ_INT(lmc_config_load(g_dir, &c, NULL, NULL), LMC_OK);
    CHECK(c.n_eos == 1 && c.eos_ids[0] == 151645);
    unlink(in_dir("generation_config.json"));
    /* A directory in its place is ignored too. */
    CHECK(mkdir(in_dir("generation_config.json"), 0700) == 0);
    CHECK_EQ_INT(lmc_config_load(g_dir, &c, NULL, NULL), LMC_OK);
    rmdir(in_dir("generation_config.json"));

    /* config.json with no eos at all takes generation_config's. */
    put("config.json", "{\"model_type\": \"llama\"}");
    CHECK_EQ_INT(load_with_gen("{\"eos_token_id\": [128001, 128009]}", &c), LMC_OK);
    CHECK(c.n_eos == 2 && c.eos_ids[1] == 128009);
    unlink(in_dir("generation_config.json"));

    /* Errors in config.json name the file's path. */
    put("config.json", "{\"model_type\": \"llama\", \"head_dim\": \"x\"}");
    CHECK_ERR(lmc_config_load(g_dir, &c, &j, &raw), LMC_ERR_FORMAT, "config.json: head_dim must be an integer");
    CHECK(strstr(lmc_last_error(), g_dir) != NULL);
    CHECK(j == NULL && raw == NULL);

    /* Oversized (sparse, so nothing is written or read), FIFO, directory. */
    unlink(in_dir("config.json"));
    FILE *f = fopen(in_dir("config.json"), "wb");
    fclose(f);
    CHECK(truncate(in_dir("config.json"), (off_t)LMC_MAX_CONFIG_BYTES + 1) == 0);
    CHECK_ERR(lmc_config_load(g_dir, &c, NULL, NULL), LMC_ERR_LIMIT, "byte limit");
    unlink(in_dir("config.json"));
    CHECK(mkfifo(in_dir("config.json"), 0600) == 0);
    CHECK_ERR(lmc_config_load(g_dir, &c, NULL, NULL), LMC_ERR_IO, "config.json is not a regular file");
    unlink(in_dir("config.json"));
    CHECK(mkdir(in_dir("config.json"), 0700) == 0);
    CHECK_ERR(lmc_config_load(g_dir, &c, NULL, NULL), LMC_ERR_IO, "not a regular file");
    rmdir(in_dir("config.json"));
}

/* Fields as transformers' AutoConfig reads the same config.json texts
 * (tests/oracle/formats_goldens.py). When num_key_value_heads is absent
 * transformers uses per-class constants (qwen2/qwen3: 32, mistral: 8);
 * lmc follows the mlx-lm rule (= num_attention_heads), so that one field is
 * compared only when the config states it. */
static void test_hf_goldens(const char *src) {
    char p[600];
    snprintf(p, sizeof p, "%s/tests/golden/formats/formats_goldens.json", src);
    json_object *g = NULL;
    if (lmc_json_load_file(p, "formats_goldens.json", 8u << 20, &g, NULL)) {
        printf("NOTE: %s: %s; HF golden checks skipped\n", p, lmc_last_error());
        return;
    }
    int cases = 0;
    json_object_object_foreach(lmc_json_get(g, "configs"), name, cs) {
        const char *text = lmc_json_str(cs, "config", NULL);
        json_object *e = lmc_json_get(cs, "expect"), *j = NULL;
        lmc_model_config c;
        CHECK_EQ_INT(lmc_config_parse(text, strlen(text), name, &c, &j), LMC_OK);
        cases++;
        int64_t iv;
        double dv;
        bool bv;
        if (lmc_json_get(j, "num_key_value_heads") && lmc_json_int(e, "num_key_value_heads", &iv, NULL))
            CHECK_MSG(c.num_key_value_heads == iv, "%s kv heads %lld", name, (long long)c.num_key_value_heads);
        if (lmc_json_int(e, "head_dim", &iv, NULL))
            CHECK_MSG(c.head_dim == iv, "%s head_dim %lld", name, (long long)c.head_dim);
        if (lmc_json_int(e, "sliding_window", &iv, NULL))
            CHECK_MSG(c.sliding_window == iv, "%s sliding_window %lld", name, (long long)c.sliding_window);
        if (lmc_json_double(e, "rms_norm_eps", &dv, NULL))
            CHECK_MSG(c.rms_norm_eps == dv, "%s rms_norm_eps %g", name, c.rms_norm_eps);
        if (lmc_json_double(e, "rope_theta", &dv, NULL))
            CHECK_MSG(c.rope_theta == dv, "%s rope_theta %g", name, c.rope_theta);
        if (lmc_json_double(e, "rope_factor", &dv, NULL))
            CHECK_MSG(c.rope_factor == dv, "%s rope_factor %g", name, c.rope_factor);
        if (lmc_json_bool(e, "tie_word_embeddings", &bv, NULL))
            CHECK_MSG(c.tie_word_embeddings == bv, "%s tie", name);
        if (lmc_json_bool(e, "attention_bias", &bv, NULL))
            CHECK_MSG(c.attention_bias == bv, "%s attention_bias", name);
        CHECK_STREQ(c.rope_type, lmc_json_str(e, "rope_type", NULL));
        CHECK_STREQ(c.hidden_act, lmc_json_str(e, "hidden_act", NULL));
        json_object_put(j);
    }
    CHECK(cases >= 7);
    json_object_put(g);

    /* config.json files written by transformers 5.x save_pretrained
     * (rope_parameters, "dtype", "sliding_window": null). */
    static const char *models[] = {"llama-fp32", "qwen2-bf16", "qwen3-fp32", "mistral-fp32"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        snprintf(p, sizeof p, "%s/tests/golden/models/%s", src, models[i]);
        if (!lmc_is_dir(p)) continue;
        lmc_model_config c;
        json_object *j = NULL;
        CHECK_EQ_INT(lmc_config_load(p, &c, &j, NULL), LMC_OK);
        json_object *rp = lmc_json_get(j, "rope_parameters");
        double theta = 0;
        CHECK(lmc_json_double(rp, "rope_theta", &theta, NULL) && c.rope_theta == theta);
        CHECK_EQ_INT(c.hidden_size, 64);
        CHECK(c.n_eos >= 1);
        json_object_put(j);
    }
}

int main(void) {
    snprintf(g_dir, sizeof g_dir, "/tmp/lmc_cfg_XXXXXX");
    if (!mkdtemp(g_dir)) CHECK_SKIP("cannot create a temp dir");
    test_real_configs();
    test_defaults_and_forms();
    test_bad_configs();
    test_load_and_eos();
    const char *src = getenv("LMC_SOURCE_DIR");
    test_hf_goldens(src ? src : ".");
    rmdir(g_dir);
    return check_summary("test_config");
}
