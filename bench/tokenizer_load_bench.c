/* Start-up cost of a tokenizer: wall time of lmc_tokenizer_load(dir) (read,
 * parse and build), median and minimum of N loads in this process.
 *   tokenizer_load_bench DIR NAME [N]
 * Prints "NAME lmc load: median X ms, min Y ms, cpu median Z ms (vocab V)"; the
 * thread CPU time is what a busy machine distorts least. bench/startup.sh
 * runs it beside Hugging Face tokenizers' Tokenizer.from_file. */
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double clock_ms(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: tokenizer_load_bench DIR NAME [N]\n");
        return 2;
    }
    int n = argc > 3 ? atoi(argv[3]) : 5;
    if (n < 1 || n > 1000) n = 5;
    double *t = malloc((size_t)n * sizeof *t), *cpu = malloc((size_t)n * sizeof *cpu);
    size_t vocab = 0;
    if (!t || !cpu) return 1;
    for (int i = 0; i < n; i++) {
        lmc_tokenizer *tok = NULL;
        double t0 = clock_ms(CLOCK_MONOTONIC), c0 = clock_ms(CLOCK_THREAD_CPUTIME_ID);
        if (lmc_tokenizer_load(argv[1], &tok)) {
            fprintf(stderr, "%s: %s\n", argv[2], lmc_last_error());
            free(t);
            free(cpu);
            return 1;
        }
        t[i] = clock_ms(CLOCK_MONOTONIC) - t0;
        cpu[i] = clock_ms(CLOCK_THREAD_CPUTIME_ID) - c0;
        vocab = lmc_tokenizer_vocab_size(tok);
        lmc_tokenizer_free(tok);
    }
    qsort(t, (size_t)n, sizeof *t, cmp);
    qsort(cpu, (size_t)n, sizeof *cpu, cmp);
    printf("%s lmc load: median %.1f ms, min %.1f ms, cpu median %.1f ms (vocab %zu)\n", argv[2],
           t[n / 2], t[0], cpu[n / 2], vocab);
    free(t);
    free(cpu);
    return 0;
}
