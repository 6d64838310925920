/* `lmc lora train ...` fine-tunes LoRA adapters on a jsonl dataset and
 * saves them in PEFT's format; `lmc lora fuse ...` merges saved adapters
 * into a copy of the base model. */
#include "cli_io.h"
#include "cli_progress.h"
#include "lmc.h"
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lmc lora train -m/--model DIR --data DIR_OR_FILE --adapter-path OUT [options]\n"
            "       lmc lora fuse -m/--model DIR --adapter-path DIR --save-path DIR\n"
            "train options:\n"
            "  --iters N                 optimizer steps (1000)\n"
            "  --batch-size B            records per step (4)\n"
            "  --grad-accumulation-steps K  micro-batches per step (1)\n"
            "  --lr X                    AdamW learning rate (1e-5)\n"
            "  --weight-decay X          AdamW decoupled weight decay (0.01)\n"
            "  --rank R                  LoRA rank (8)\n"
            "  --alpha A                 LoRA alpha; scaling = alpha / rank (16)\n"
            "  --num-layers N            adapt the last N layers, -1 for all (16)\n"
            "  --targets LIST            modules to adapt (q_proj,v_proj); any of q_proj,\n"
            "                            k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj\n"
            "  --mask-prompt             train on completions only (chat/completions data)\n"
            "  --max-seq-length L        truncate longer records (2048)\n"
            "  --seed S                  adapter init and shuffling (0)\n"
            "  --resume-adapter-file DIR start from adapters saved earlier\n"
            "  --save-every N            also save the adapters every N steps (0: at the end)\n"
            "DIR_OR_FILE: a directory with train.jsonl, or one .jsonl file.\n");
}

static bool parse_long(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_float(const char *s, float *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (!*s || *end || errno || !isfinite(v)) return false;
    *out = (float)v;
    return true;
}

typedef struct {
    const char *adapter_path;
    lmc_lora_trainer *trainer;
    long save_every;
    size_t truncated_seen;
    size_t max_seq;
    bool save_failed;
} train_ui;

static bool on_step(void *user, const lmc_lora_progress *p) {
    train_ui *ui = user;
    if (cli_progress_on()) {
        char note[128];
        snprintf(note, sizeof note, "step %d/%d  loss %.4f  %.1f tokens/s", (int)p->step,
                 (int)p->iters, (double)p->loss, p->tokens_per_sec);
        cli_progress_note("train", p->iters ? (double)p->step / p->iters : 1.0, note);
    } else {
        printf("step %d/%d: loss %.4f, %.1f tokens/s, %zu trained tokens\n", (int)p->step,
               (int)p->iters, (double)p->loss, p->tokens_per_sec, p->trained_tokens);
    }
    if (p->truncated > ui->truncated_seen) {
        cli_progress_done();
        fprintf(stderr, "lmc lora: %zu record(s) truncated to --max-seq-length %zu so far\n",
                p->truncated, ui->max_seq);
        ui->truncated_seen = p->truncated;
    }
    if (ui->save_every > 0 && p->step % ui->save_every == 0 && p->step < p->iters) {
        cli_progress_done();
        if (lmc_lora_trainer_save(ui->trainer, ui->adapter_path)) {
            fprintf(stderr, "lmc lora: saving adapters: %s\n", lmc_last_error());
            ui->save_failed = true;
            return false;
        }
        printf("saved adapters to %s (step %d)\n", ui->adapter_path, (int)p->step);
    }
    fflush(stdout);
    return true;
}

static int cmd_train(int argc, char **argv) {
    const char *model = NULL, *data = NULL, *out = NULL, *resume = NULL;
    bool mask = false;
    long save_every = 0;
    lmc_lora_options o;
    lmc_lora_options_init(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long n;
        bool ok = true, takes = true;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--mask-prompt")) {
            mask = true, takes = false;
        } else if (!v) {
            fprintf(stderr, "lmc lora train: %s needs a value\n", a);
            return 2;
        } else if (!strcmp(a, "--model") || !strcmp(a, "-m")) {
            model = v;
        } else if (!strcmp(a, "--data")) {
            data = v;
        } else if (!strcmp(a, "--adapter-path")) {
            out = v;
        } else if (!strcmp(a, "--resume-adapter-file")) {
            resume = v;
        } else if (!strcmp(a, "--targets")) {
            o.target_modules = v;
        } else if (!strcmp(a, "--iters")) {
            ok = parse_long(v, 0, INT32_MAX, &n), o.iters = (int32_t)n;
        } else if (!strcmp(a, "--batch-size")) {
            ok = parse_long(v, 1, 1 << 20, &n), o.batch_size = (int32_t)n;
        } else if (!strcmp(a, "--grad-accumulation-steps")) {
            ok = parse_long(v, 1, 1 << 20, &n), o.grad_accumulation_steps = (int32_t)n;
        } else if (!strcmp(a, "--rank")) {
            ok = parse_long(v, 1, 4096, &n), o.rank = (int32_t)n;
        } else if (!strcmp(a, "--num-layers")) {
            ok = parse_long(v, -1, 1 << 20, &n) && n != 0, o.num_layers = (int32_t)n;
        } else if (!strcmp(a, "--max-seq-length")) {
            ok = parse_long(v, 2, 1 << 20, &n), o.max_seq_length = (size_t)n;
        } else if (!strcmp(a, "--seed")) {
            ok = parse_long(v, 0, LONG_MAX, &n), o.seed = (uint64_t)n;
        } else if (!strcmp(a, "--save-every")) {
            ok = parse_long(v, 0, INT32_MAX, &save_every);
        } else if (!strcmp(a, "--lr") || !strcmp(a, "--learning-rate")) {
            ok = parse_float(v, &o.learning_rate) && o.learning_rate >= 0;
        } else if (!strcmp(a, "--weight-decay")) {
            ok = parse_float(v, &o.weight_decay) && o.weight_decay >= 0;
        } else if (!strcmp(a, "--alpha")) {
            ok = parse_float(v, &o.alpha) && o.alpha > 0;
        } else {
            fprintf(stderr, "lmc lora train: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "lmc lora train: bad value '%s' for %s\n", v, a);
            return 2;
        }
        if (takes) i++;
    }
    if (!model || !data || !out) {
        fprintf(stderr, "lmc lora train: --model, --data and --adapter-path are required\n");
        usage(stderr);
        return 2;
    }
    int rc = 1;
    lmc_context *ctx = NULL;
    lmc_dataset *train = NULL;
    lmc_lora_trainer *tr = NULL;
    lmc_load_options lo = {
        .model_dir = model, .device = LMC_DEVICE_CPU, .progress = cli_load_progress};
    lmc_dataset_options dopt;
    lmc_dataset_options_init(&dopt);
    dopt.mask_prompt = mask;
    train_ui ui = {.adapter_path = out, .save_every = save_every, .max_seq = o.max_seq_length};
    o.progress = on_step;
    o.progress_user = &ui;
    lmc_status st;
    /* Cheap checks (options, weights) before the tokenizer and data. */
    if ((st = lmc_lora_trainer_new(model, &o, &tr))) goto fail;
    ui.trainer = tr;
    if (resume && (st = lmc_lora_trainer_load(tr, resume))) goto fail;
    st = lmc_context_load(&lo, &ctx);
    cli_progress_done();
    if (st) goto fail;
    if (cli_is_dir(data))
        st = lmc_dataset_load_dir(data, lmc_context_tokenizer(ctx), &dopt, &train, NULL, NULL);
    else
        st = lmc_dataset_load(data, lmc_context_tokenizer(ctx), &dopt, &train);
    if (st) goto fail;
    if (!train) {
        fprintf(stderr, "lmc lora train: %s has no train.jsonl\n", data);
        goto done;
    }
    printf("training %zu records: rank %d, alpha %g, targets %s, num_layers %d, %d iters, "
           "batch %d\n",
           lmc_dataset_len(train), (int)o.rank, (double)o.alpha,
           o.target_modules ? o.target_modules : "q_proj,v_proj", (int)o.num_layers, (int)o.iters,
           (int)o.batch_size);
    fflush(stdout);
    lmc_lora_train_stats stats;
    st = lmc_lora_train(tr, train, &stats);
    cli_progress_done();
    if (st && !ui.save_failed) fprintf(stderr, "lmc lora train: %s\n", lmc_last_error());
    if (st) goto done;
    if (stats.skipped_records)
        fprintf(stderr, "lmc lora: %zu record(s) have no target token and were skipped\n",
                stats.skipped_records);
    if (stats.truncated)
        fprintf(stderr, "lmc lora: %zu record(s) were truncated to --max-seq-length %zu\n",
                stats.truncated, o.max_seq_length);
    if ((st = lmc_lora_trainer_save(tr, out))) goto fail;
    printf("done: %d steps in %.1f s, final loss %.4f; adapters saved to %s\n", (int)stats.steps,
           stats.seconds, (double)stats.final_loss, out);
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "lmc lora train: %s\n", lmc_last_error());
done:
    lmc_dataset_free(train);
    lmc_context_free(ctx);
    lmc_lora_trainer_free(tr);
    return rc;
}

static int cmd_fuse(int argc, char **argv) {
    const char *model = NULL, *adapters = NULL, *save = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "lmc lora fuse: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "--model") || !strcmp(a, "-m")) model = v;
        else if (!strcmp(a, "--adapter-path")) adapters = v;
        else if (!strcmp(a, "--save-path")) save = v;
        else {
            fprintf(stderr, "lmc lora fuse: unknown option '%s'\n", a);
            return 2;
        }
        i++;
    }
    if (!model || !adapters || !save) {
        fprintf(stderr, "lmc lora fuse: --model, --adapter-path and --save-path are required\n");
        return 2;
    }
    lmc_status st = lmc_lora_fuse(model, adapters, save, cli_progress, NULL);
    cli_progress_done();
    if (st) {
        fprintf(stderr, "lmc lora fuse: %s\n", lmc_last_error());
        return 1;
    }
    printf("fused model written to %s\n", save);
    return 0;
}

int lmc_cmd_lora(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "train")) return cmd_train(argc - 1, argv + 1);
    if (!strcmp(argv[1], "fuse")) return cmd_fuse(argc - 1, argv + 1);
    fprintf(stderr, "lmc lora: unknown subcommand '%s' (train, fuse)\n", argv[1]);
    usage(stderr);
    return 2;
}
