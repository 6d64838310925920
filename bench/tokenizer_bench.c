/* Encode throughput of lmc's tokenizer, single thread:
 *   tokenizer_bench DIR TEXT_FILE [NAME]
 * Encodes every line of TEXT_FILE (without special tokens), 3 timed passes
 * after a warm-up pass; prints the best pass in MB/s and the token count,
 * in the same format as tests/oracle/tokenizer_goldens.py bench. */
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s TOKENIZER_DIR TEXT_FILE [NAME]\n", argv[0]);
        return 2;
    }
    const char *name = argc > 3 ? argv[3] : argv[1];
    FILE *f = fopen(argv[2], "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", argv[2]);
        return 1;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = malloc((size_t)n + 1);
    if (!text || fread(text, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, "cannot read %s\n", argv[2]);
        return 1;
    }
    fclose(f);
    text[n] = 0;
    lmc_tokenizer *t = NULL;
    double t0 = now();
    if (lmc_tokenizer_load(argv[1], &t)) {
        fprintf(stderr, "%s\n", lmc_last_error());
        return 1;
    }
    double load_s = now() - t0;
    double best = 1e30;
    size_t ntok = 0, nbytes = 0;
    for (int pass = 0; pass < 4; pass++) {
        double s = now();
        ntok = nbytes = 0;
        for (char *p = text; p <= text + n;) {
            char *e = memchr(p, '\n', (size_t)(text + n - p));
            size_t len = e ? (size_t)(e - p) : (size_t)(text + n - p);
            int32_t *ids;
            size_t k;
            if (lmc_tokenizer_encode(t, p, len, false, &ids, &k)) {
                fprintf(stderr, "%s\n", lmc_last_error());
                return 1;
            }
            ntok += k;
            nbytes += len;
            lmc_free(ids);
            if (!e) break;
            p = e + 1;
        }
        double el = now() - s;
        if (pass > 0 && el < best) best = el; /* pass 0 warms the word cache */
    }
    printf("lmc %s: %.2f MB/s (%zu tokens, %zu bytes; load %.2f s)\n", name,
           (double)nbytes / best / 1e6, ntok, nbytes, load_s);
    lmc_tokenizer_free(t);
    free(text);
    return 0;
}
