/* `lmc quantize`: an MLX affine-quantized copy of a float checkpoint. */
#include "lmc.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lmc quantize -m MODEL_DIR --save-path OUT_DIR [--bits 4] [--group-size 64]\n"
               "  --bits B          2, 4 or 8 (default 4)\n"
               "  --group-size G    32, 64 or 128 inputs per scale and bias (default 64)\n");
}

static bool progress(void *user, const char *stage, double fraction) {
    (void)user;
    fprintf(stderr, "\r%s %3.0f%%", stage, fraction * 100.0);
    if (fraction >= 1.0) fputc('\n', stderr);
    return true;
}

static bool parse_int(const char *flag, const char *v, long *out) {
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (end == v || *end || errno) {
        fprintf(stderr, "lmc quantize: %s expects an integer, got '%s'\n", flag, v);
        return false;
    }
    *out = n;
    return true;
}

int lmc_cmd_quantize(int argc, char **argv) {
    const char *model = NULL, *save = NULL;
    long bits = 4, group = 64;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        }
        if (!v) {
            fprintf(stderr, "lmc quantize: %s needs a value\n", a);
            return 2;
        }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model = v;
        else if (!strcmp(a, "--save-path")) save = v;
        else if (!strcmp(a, "--bits")) {
            if (!parse_int(a, v, &bits)) return 2;
        } else if (!strcmp(a, "--group-size")) {
            if (!parse_int(a, v, &group)) return 2;
        } else {
            fprintf(stderr, "lmc quantize: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        i++;
    }
    if (!model || !save) {
        fprintf(stderr, "lmc quantize: -m MODEL_DIR and --save-path OUT_DIR are required\n");
        return 2;
    }
    if (bits < 1 || bits > 64 || group < 1 || group > 4096 ||
        lmc_quantize_model(model, save, (int)bits, (int)group, progress, NULL)) {
        fprintf(stderr, "lmc quantize: %s\n",
                bits < 1 || bits > 64 || group < 1 || group > 4096 ? "bits or group size out of range"
                                                                   : lmc_last_error());
        return bits < 1 || bits > 64 || group < 1 || group > 4096 ? 2 : 1;
    }
    printf("%ld-bit (group %ld) model written to %s\n", bits, group, save);
    return 0;
}
