/* `lmc quantize`: an MLX affine-quantized copy of a float checkpoint. */
#include "cli_gen_args.h"
#include "cli_progress.h"
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lmc quantize -m MODEL_DIR --save-path OUT_DIR [--bits 4] [--group-size 64]\n"
               "  --bits B          2, 4 or 8 (default 4)\n"
               "  --group-size G    32, 64 or 128 inputs per scale and bias (default 64)\n");
}

int lmc_cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *save = NULL, *bits_s = "4", *group_s = "64";
    const lmc_cli_opt opts[] = {
        {"-m", "--model", &model, NULL},
        {"--save-path", NULL, &save, NULL},
        {"--bits", NULL, &bits_s, NULL},
        {"--group-size", NULL, &group_s, NULL},
        {NULL, NULL, NULL, NULL},
    };
    int prc = lmc_cli_parse("quantize", argc, argv, opts, NULL, usage);
    if (prc >= 0) return prc;
    long long bits, group;
    if (!lmc_cli_int("--bits", bits_s, 1, 64, &bits) ||
        !lmc_cli_int("--group-size", group_s, 1, 4096, &group))
        return 2;
    if (!model || !save) {
        fprintf(stderr, "lmc quantize: -m MODEL_DIR and --save-path OUT_DIR are required\n");
        usage(stderr);
        return 2;
    }
    lmc_status st = lmc_quantize_model(model, save, (int)bits, (int)group, cli_progress, NULL);
    cli_progress_done();
    if (st) {
        fprintf(stderr, "lmc: %s\n", lmc_last_error()); /* the message names the step */
        return 1;
    }
    printf("%lld-bit (group %lld) model written to %s\n", bits, group, save);
    return 0;
}
