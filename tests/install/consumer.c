/* A program outside the project: built against an installed lmc (through
 * pkg-config or find_package), it greedy-generates from stories260K and
 * prints the ids, which the test compares with the reference run's. */
#include <lmc.h>
#include <stdio.h>
#include <string.h>

#if LMC_VERSION_MAJOR != 0 || !defined(LMC_VERSION_MINOR) || !defined(LMC_VERSION_PATCH)
#error "lmc.h version macros"
#endif

static bool print_id(void *user, const lmc_gen_response *r) {
    (void)user;
    printf("%s%d", r->generation_tokens > 1 ? "," : "", r->token);
    return true;
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    if (strcmp(lmc_version(), LMC_VERSION)) {
        fprintf(stderr, "library %s, header %s\n", lmc_version(), LMC_VERSION);
        return 1;
    }
    lmc_load_options lo = {.model_dir = argv[1]};
    lmc_context *ctx = NULL;
    if (lmc_context_load(&lo, &ctx)) {
        fprintf(stderr, "consumer: %s\n", lmc_last_error());
        return 1;
    }
    lmc_gen_params p;
    lmc_gen_params_default(&p);
    p.max_tokens = 16;
    int32_t bos = 1;
    lmc_status st = lmc_generate_ids(ctx, &bos, 1, &p, NULL, print_id, NULL, NULL);
    printf("\n");
    if (st) fprintf(stderr, "consumer: %s\n", lmc_last_error());
    lmc_context_free(ctx);
    return st ? 1 : 0;
}
