/* The LoRA training loop end to end on the tiny llama checkpoint with a
 * character-level tokenizer (ids < 512): dataset prompt masks reach the
 * loss, truncation is applied and counted, the loss falls, cancel stops,
 * and the CLI trains, saves and fuses into a directory that the load
 * factory opens, whose logits equal base + adapter. */
#include "base/buf.h"
#include "base/file.h"
#include "lm/context.h"
#include "lora_test_util.h"
#include <sys/wait.h>
#include <unistd.h>

static char model_dir[1024], data_dir[1024];

static void copy(const char *src_dir, const char *dst_dir, const char *name) {
    char s[1200], d[1200];
    snprintf(s, sizeof s, "%s/%s", src_dir, name);
    snprintf(d, sizeof d, "%s/%s", dst_dir, name);
    char *buf = NULL;
    size_t len = 0;
    if (lmc_read_file(s, s, 64u << 20, &buf, &len) || lmc_write_file_atomic(d, buf, len)) {
        fprintf(stderr, "copy %s: %s\n", s, lmc_last_error());
        exit(1);
    }
    free(buf);
}

static void write_text(const char *path, const char *text) {
    if (lmc_write_file_atomic(path, text, strlen(text))) {
        fprintf(stderr, "%s: %s\n", path, lmc_last_error());
        exit(1);
    }
}

/* tiny llama + a BPE tokenizer with one token per printable ASCII char. */
static void make_model(void) {
    snprintf(model_dir, sizeof model_dir, "%s/model", tt_scratch());
    snprintf(data_dir, sizeof data_dir, "%s/data", tt_scratch());
    mkdir(model_dir, 0755);
    mkdir(data_dir, 0755);
    const char *src = lt_model_dir("llama-fp32");
    copy(src, model_dir, "config.json");
    copy(src, model_dir, "generation_config.json");
    copy(src, model_dir, "model.safetensors");
    lmc_buf b = {0};
    lmc_buf_puts(&b, "{\"version\":\"1.0\",\"added_tokens\":[");
    const char *sp[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++)
        lmc_buf_printf(&b, "%s{\"id\":%d,\"content\":\"%s\",\"single_word\":false,\"lstrip\":false,"
                           "\"rstrip\":false,\"normalized\":false,\"special\":true}",
                       i ? "," : "", i, sp[i]);
    lmc_buf_puts(&b, "],\"normalizer\":null,\"pre_tokenizer\":null,\"post_processor\":null,"
                     "\"decoder\":null,\"model\":{\"type\":\"BPE\",\"unk_token\":\"<unk>\","
                     "\"byte_fallback\":false,\"fuse_unk\":false,\"vocab\":{\"<unk>\":0,"
                     "\"<s>\":1,\"</s>\":2,\"\\n\":3");
    for (int c = 32; c < 127; c++) {
        if (c == '"' || c == '\\') lmc_buf_printf(&b, ",\"\\%c\":%d", c, c - 28);
        else lmc_buf_printf(&b, ",\"%c\":%d", c, c - 28);
    }
    lmc_buf_puts(&b, "},\"merges\":[]}}");
    char p[1200];
    snprintf(p, sizeof p, "%s/tokenizer.json", model_dir);
    write_text(p, b.p);
    lmc_buf_free(&b);
    snprintf(p, sizeof p, "%s/tokenizer_config.json", model_dir);
    write_text(p, "{\"bos_token\":\"<s>\",\"eos_token\":\"</s>\",\"unk_token\":\"<unk>\","
                  "\"chat_template\":\"{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] "
                  "}}\\n{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}\"}");
    snprintf(p, sizeof p, "%s/train.jsonl", data_dir);
    write_text(p, "{\"prompt\": \"2+2?\", \"completion\": \"four\"}\n"
                  "{\"prompt\": \"capital of France?\", \"completion\": \"Paris is the capital.\"}\n"
                  "{\"prompt\": \"say hi\", \"completion\": \"hi\"}\n"
                  "{\"prompt\": \"colour of the sky on a clear day?\", \"completion\": \"blue\"}\n"
                  "{\"prompt\": \"opposite of up\", \"completion\": \"down, usually\"}\n"
                  "{\"prompt\": \"1, 2, 3, ...\", \"completion\": \"4, 5, 6\"}\n");
}

typedef struct {
    float losses[64];
    int n, stop_at;
    double tps;
} progress_log;

static bool on_step(void *user, const lmc_lora_progress *p) {
    progress_log *lg = user;
    if (lg->n < 64) lg->losses[lg->n++] = p->loss;
    lg->tps = p->tokens_per_sec;
    return !(lg->stop_at && p->step >= lg->stop_at);
}

static void base_options(lmc_lora_options *o) {
    lmc_lora_options_init(o);
    o->rank = 4;
    o->alpha = 8.0f;
    o->target_modules = "q_proj,v_proj,down_proj";
    o->num_layers = 2;
    o->learning_rate = 1e-2f;
    o->seed = 11;
}

/* Mean loss over every record, from the trainer's engine with the dataset's
 * offsets and truncation applied by hand. */
static double manual_loss(lmc_lora_trainer *tr, lmc_dataset *d, size_t max_len, size_t *trunc) {
    lmc_lora_net *net = lmc_lora_trainer_net(tr);
    size_t n = lmc_dataset_len(d), N = 0;
    *trunc = 0;
    for (size_t i = 0; i < n; i++) {
        int32_t *ids;
        size_t len, off;
        CHECK(!lmc_dataset_get(d, i, &ids, &len, &off));
        size_t nt = lmc_lora_count_targets(len < max_len ? len : max_len, off);
        if (len > max_len && nt) (*trunc)++; /* records without targets are never drawn */
        N += nt;
        lmc_free(ids);
    }
    double loss = 0.0;
    lmc_lora_zero_grad(net);
    for (size_t i = 0; i < n; i++) {
        int32_t *ids;
        size_t len, off;
        CHECK(!lmc_dataset_get(d, i, &ids, &len, &off));
        CHECK(off > 0 && off < len);
        /* Only the record whose prompt exceeds max_len has no target. */
        CHECK(!lmc_lora_seq_grad(net, ids, len < max_len ? len : max_len, off, 1.0f / (float)N,
                                 &loss));
        lmc_free(ids);
    }
    return loss;
}

static void test_loop(lmc_tokenizer *tok) {
    lmc_dataset_options dopt;
    lmc_dataset_options_init(&dopt);
    dopt.mask_prompt = true;
    lmc_dataset *d = NULL;
    CHECK_MSG(!lmc_dataset_load_dir(data_dir, tok, &dopt, &d, NULL, NULL), "%s", lmc_last_error());
    if (!d) return;
    CHECK_EQ_INT(lmc_dataset_len(d), 6);
    for (size_t max_len = 4096; max_len >= 16; max_len = max_len == 4096 ? 48 : 0) {
        /* One step over every usable record: its loss is the masked mean.
         * At 48 tokens the sky record is all prompt (54 tokens of it) and
         * is skipped; the France one is cut. */
        lmc_lora_options o;
        base_options(&o);
        o.batch_size = max_len == 4096 ? 6 : 5;
        o.iters = 1;
        o.max_seq_length = max_len;
        lmc_lora_trainer *a = NULL, *b = NULL;
        CHECK(!lmc_lora_trainer_new(model_dir, &o, &a) && !lmc_lora_trainer_new(model_dir, &o, &b));
        if (!a || !b) return;
        lmc_lora_train_stats st;
        CHECK_MSG(!lmc_lora_train(a, d, &st), "%s", lmc_last_error());
        size_t trunc = 0;
        double want = manual_loss(b, d, max_len, &trunc);
        CHECK_MSG(fabs(st.final_loss - want) < 1e-5 * want, "step loss %.7f vs manual %.7f",
                  (double)st.final_loss, want);
        CHECK_EQ_INT(st.truncated, trunc);
        CHECK(max_len == 4096 ? trunc == 0 : trunc > 0);
        CHECK_EQ_INT(st.steps, 1);
        CHECK_EQ_INT(st.skipped_records, max_len == 4096 ? 0 : 1);
        lmc_lora_trainer_free(a);
        lmc_lora_trainer_free(b);
    }
    /* Accumulation averages: two micro-batches of the whole dataset give
     * the gradient (and loss) of one. */
    {
        lmc_lora_options o;
        base_options(&o);
        o.batch_size = 6;
        o.iters = 1;
        lmc_lora_trainer *a = NULL, *b = NULL;
        CHECK(!lmc_lora_trainer_new(model_dir, &o, &a));
        o.grad_accumulation_steps = 2;
        CHECK(!lmc_lora_trainer_new(model_dir, &o, &b));
        lmc_lora_train_stats sa, sb;
        CHECK(a && b && !lmc_lora_train(a, d, &sa) && !lmc_lora_train(b, d, &sb));
        CHECK_MSG(fabs(sa.final_loss - sb.final_loss) < 1e-5 * sa.final_loss, "%.7f vs %.7f",
                  (double)sa.final_loss, (double)sb.final_loss);
        CHECK_EQ_INT(sb.trained_tokens, 2 * sa.trained_tokens);
        lmc_lora_net *na = lmc_lora_trainer_net(a), *nb = lmc_lora_trainer_net(b);
        double e = 0.0;
        for (size_t i = 0; na && nb && i < na->n_ad; i++) {
            size_t n = (size_t)na->shape.rank * (size_t)na->ad[i].out;
            double x = rel_err(nb->ad[i].gB, na->ad[i].gB, n);
            e = x > e ? x : e;
        }
        CHECK_MSG(e < 1e-5, "accumulated gradient relative error %.3g", e);
        lmc_lora_trainer_free(a);
        lmc_lora_trainer_free(b);
    }
    /* Several steps: the loss falls; tokens/s is reported. */
    lmc_lora_options o;
    base_options(&o);
    o.batch_size = 3;
    o.grad_accumulation_steps = 2;
    o.iters = 8;
    progress_log lg = {0};
    o.progress = on_step;
    o.progress_user = &lg;
    lmc_lora_trainer *t = NULL;
    CHECK(!lmc_lora_trainer_new(model_dir, &o, &t));
    lmc_lora_train_stats st;
    CHECK_MSG(t && !lmc_lora_train(t, d, &st), "%s", lmc_last_error());
    CHECK_EQ_INT(lg.n, 8);
    CHECK_MSG(lg.losses[7] < 0.8f * lg.losses[0], "loss %.4f -> %.4f", (double)lg.losses[0],
              (double)lg.losses[7]);
    CHECK(lg.tps > 0);
    printf("loss over 8 steps: %.4f -> %.4f\n", (double)lg.losses[0], (double)lg.losses[7]);
    lmc_lora_trainer_free(t);
    /* Cancel after step 2. */
    progress_log lc = {.stop_at = 2};
    o.progress_user = &lc;
    CHECK(!lmc_lora_trainer_new(model_dir, &o, &t));
    CHECK_ERR(lmc_lora_train(t, d, &st), LMC_ERR_CANCELLED, "cancelled after step 2");
    CHECK_EQ_INT(st.steps, 2);
    /* Every record cut inside its prompt: nothing to train on. */
    lmc_lora_trainer_free(t);
    o.max_seq_length = 20;
    CHECK(!lmc_lora_trainer_new(model_dir, &o, &t));
    CHECK_ERR(lmc_lora_train(t, d, &st), LMC_ERR_INVALID_ARG, "only 0 of 6 records have a target");
    /* More records per batch than the dataset has. */
    lmc_lora_trainer_free(t);
    o.max_seq_length = 2048;
    o.batch_size = 7;
    CHECK(!lmc_lora_trainer_new(model_dir, &o, &t));
    CHECK_ERR(lmc_lora_train(t, d, &st), LMC_ERR_INVALID_ARG, "fewer than the batch size 7");
    lmc_lora_trainer_free(t);
    lmc_dataset_free(d);
}

static int run(const char *cmd, lmc_buf *out) {
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) lmc_buf_append(out, buf, n);
    int rc = pclose(f);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_cli(void) {
    const char *bd = getenv("LMC_BUILD_DIR");
    char lmc[1200], cmd[8192], adir[1200], fdir[1200];
    snprintf(lmc, sizeof lmc, "%s/tools/lmc", bd && *bd ? bd : "build");
    if (access(lmc, X_OK) != 0) {
        printf("SKIP cli part: %s not built\n", lmc);
        return;
    }
    snprintf(adir, sizeof adir, "%s/cli-adapters", tt_scratch());
    snprintf(fdir, sizeof fdir, "%s/cli-fused", tt_scratch());
    lmc_buf out = {0};
    snprintf(cmd, sizeof cmd,
             "%s lora train --model %s --data %s --adapter-path %s --iters 3 --batch-size 2 "
             "--rank 4 --alpha 8 --num-layers -1 --targets q_proj,v_proj,o_proj --mask-prompt "
             "--max-seq-length 48 --seed 5 --lr 1e-2 2>&1",
             lmc, model_dir, data_dir, adir);
    int rc = run(cmd, &out);
    CHECK_MSG(rc == 0 && out.p && strstr(out.p, "step 3/3: loss") && strstr(out.p, "tokens/s") &&
                  strstr(out.p, "truncated to --max-seq-length 48"),
              "rc %d, output:\n%s", rc, out.p ? out.p : "");
    lmc_buf_free(&out);
    snprintf(cmd, sizeof cmd, "%s lora fuse --model %s --adapter-path %s --save-path %s 2>&1", lmc,
             model_dir, adir, fdir);
    rc = run(cmd, &out);
    CHECK_MSG(rc == 0, "fuse rc %d: %s", rc, out.p ? out.p : "");
    lmc_buf_free(&out);
    snprintf(cmd, sizeof cmd,
             "%s lora train --model %s --data %s --adapter-path %s --targets q_proj,foo_proj 2>&1",
             lmc, model_dir, data_dir, adir);
    rc = run(cmd, &out);
    CHECK_MSG(rc != 0 && out.p && strstr(out.p, "unknown target module 'foo_proj'"), "rc %d: %s",
              rc, out.p ? out.p : "");
    lmc_buf_free(&out);

    /* The fused directory loads with the factory; its logits are the
     * trained adapter's. */
    lmc_load_options lo = {.model_dir = fdir};
    lmc_context *ctx = NULL;
    CHECK_MSG(!lmc_context_load(&lo, &ctx), "%s", lmc_last_error());
    lmc_lora_options o;
    lmc_lora_options_init(&o);
    o.rank = 4, o.alpha = 8, o.num_layers = -1, o.target_modules = "q_proj,v_proj,o_proj";
    lmc_lora_trainer *t = NULL;
    CHECK(!lmc_lora_trainer_new(model_dir, &o, &t));
    CHECK_MSG(t && !lmc_lora_trainer_load(t, adir), "%s", lmc_last_error());
    if (ctx && t) {
        const int32_t ids[] = {1, 40, 41, 42, 4, 77, 80, 90, 12, 13, 3, 60};
        size_t n = sizeof ids / sizeof ids[0], V = 512;
        float *want = malloc(n * V * sizeof(float)), *got = malloc(V * sizeof(float));
        lmc_model *m = lmc_context_model(ctx);
        lmc_kv_cache *c = NULL;
        CHECK(!lmc_lora_logits(lmc_lora_trainer_net(t), ids, n, want));
        CHECK(!lmc_kv_cache_new(m, &c) && !lmc_model_forward(m, c, ids, n, got, false));
        double e = rel_err(got, want + (n - 1) * V, V);
        CHECK_MSG(e < 1e-4, "fused vs base+adapter logits: %.3g", e);
        /* The adapter changed something: base logits differ. */
        lmc_lora_trainer *base = NULL;
        o.seed = 99;
        CHECK(!lmc_lora_trainer_new(model_dir, &o, &base));
        CHECK(!lmc_lora_logits(lmc_lora_trainer_net(base), ids, n, want));
        CHECK(rel_err(got, want + (n - 1) * V, V) > 1e-3);
        printf("fused (CLI) vs base+adapter logits: %.2e\n", e);
        lmc_lora_trainer_free(base);
        lmc_kv_cache_free(c);
        free(want), free(got);
    }
    lmc_lora_trainer_free(t);
    lmc_context_free(ctx);
}

int main(void) {
    (void)tt_write_n;
    make_model();
    lmc_tokenizer *tok = NULL;
    if (lmc_tokenizer_load(model_dir, &tok)) {
        fprintf(stderr, "tokenizer: %s\n", lmc_last_error());
        return 1;
    }
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(!lmc_tokenizer_encode(tok, "ab c", 4, false, &ids, &n));
    CHECK(n == 4 && ids[0] == 'a' - 28 && ids[2] == ' ' - 28);
    lmc_free(ids);
    test_loop(tok);
    lmc_tokenizer_free(tok);
    test_cli();
    return check_summary("test_lora_train");
}
