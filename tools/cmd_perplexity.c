/* `lmc perplexity`: sliding-window perplexity of a text file under a model
 * (the Hugging Face fixed-length-model recipe; see lmc_perplexity_ids). */
#include "cli_gen_args.h"
#include "cli_io.h"
#include "cli_progress.h"
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>

#define TEXT_MAX ((size_t)1 << 30)

static void usage(FILE *f) {
    fprintf(f, "usage: lmc perplexity -m MODEL_DIR -f TEXT_FILE [--context N] [--stride S]\n"
               "  -m, --model DIR     model directory (or org/name in the Hugging Face cache)\n"
               "  -f, --file FILE     the text (\"-\" reads standard input)\n"
               "  --context N         tokens per window (default: max_position_embeddings)\n"
               "  --stride S          window start every S tokens (default: N)\n"
               "  --device cpu|cuda   (default cpu)\n");
}

int lmc_cmd_perplexity(int argc, char **argv) {
    const char *model = NULL, *file = NULL, *ctx_s = "0", *stride_s = "0", *device = "cpu";
    const lmc_cli_opt opts[] = {
        {"-m", "--model", &model, NULL},
        {"-f", "--file", &file, NULL},
        {"--context", NULL, &ctx_s, NULL},
        {"--stride", NULL, &stride_s, NULL},
        {"--device", NULL, &device, NULL},
        {NULL, NULL, NULL, NULL},
    };
    int prc = lmc_cli_parse("perplexity", argc, argv, opts, NULL, usage);
    if (prc >= 0) return prc;
    long long context, stride;
    lmc_device dev;
    if (!lmc_cli_int("--context", ctx_s, 0, 1 << 24, &context) ||
        !lmc_cli_int("--stride", stride_s, 0, 1 << 24, &stride) ||
        !lmc_cli_parse_device(device, &dev))
        return 2;
    if (!model || !file) {
        fprintf(stderr, "lmc perplexity: -m MODEL_DIR and -f TEXT_FILE are required\n");
        usage(stderr);
        return 2;
    }
    size_t len;
    char *text = cli_read_file("lmc perplexity", file, TEXT_MAX, &len);
    if (!text) return 1;
    lmc_load_options lo = {.model_dir = model, .device = dev, .progress = cli_load_progress};
    lmc_context *ctx = NULL;
    lmc_perplexity_result r;
    lmc_status st = lmc_context_load(&lo, &ctx);
    if (!st)
        st = lmc_perplexity_text(ctx, text, len, (size_t)context, (size_t)stride, cli_progress,
                                 NULL, &r);
    cli_progress_done();
    if (st) fprintf(stderr, "lmc perplexity: %s\n", lmc_last_error());
    else
        printf("perplexity %.6f (mean nll %.6f over %zu scored tokens; %zu tokens, %zu windows)\n",
               r.perplexity, r.nll, r.n_scored, r.n_tokens, r.n_windows);
    lmc_context_free(ctx);
    free(text);
    return st ? 1 : 0;
}
