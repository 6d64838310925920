/* `lmc vlm`: describe images with a vision-language model. */
#include "cli_gen_args.h"
#include "lmc.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f,
            "usage: lmc vlm -m DIR --image FILE [--image FILE ...] -p TEXT [options]\n"
            "  -m, --model DIR            model directory (config.json, *.safetensors,\n"
            "                             processor config, tokenizer)\n"
            "  --image FILE               image (PNG, JPEG, BMP, GIF, PPM); repeatable\n"
            "  -p, --prompt TEXT          the question; wrapped in the chat template with\n"
            "                             one image item per --image\n"
            "  --raw                      use the prompt as is: it must contain one image\n"
            "                             token (e.g. <image>) per --image\n"
            "  --tokenizer DIR            tokenizer directory (default: the model's)\n"
            "  --device cpu|cuda          (default cpu; VLMs run on the CPU only)\n"
            "%s",
            LMC_CLI_GEN_HELP);
}

int lmc_cmd_vlm(int argc, char **argv) {
    const char *model = NULL, *prompt = NULL, *tokenizer = NULL, *device = "cpu";
    bool raw = false;
    lmc_cli_gen_args ga;
    lmc_cli_gen_args_init(&ga);
    /* --image repeats: take those out before the shared parser runs. */
    const char **images = calloc((size_t)argc + 1, sizeof *images);
    char **rest = calloc((size_t)argc + 1, sizeof *rest);
    size_t n_images = 0;
    int n_rest = 0, rc = 2;
    lmc_vlm_context *ctx = NULL;
    char *chat = NULL;
    if (!images || !rest) {
        fprintf(stderr, "lmc vlm: out of memory\n");
        goto out;
    }
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--image")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "lmc vlm: --image needs a value\n");
                goto out;
            }
            images[n_images++] = argv[++i];
        } else {
            rest[n_rest++] = argv[i];
        }
    }
    const lmc_cli_opt opts[] = {
        {"-m", "--model", &model, NULL},
        {"-p", "--prompt", &prompt, NULL},
        {"--tokenizer", NULL, &tokenizer, NULL},
        {"--device", NULL, &device, NULL},
        {"--raw", NULL, NULL, &raw},
        {NULL, NULL, NULL, NULL},
    };
    int prc = lmc_cli_parse("vlm", n_rest, rest, opts, &ga, usage);
    if (prc >= 0) {
        rc = prc;
        goto out;
    }
    if (!model || !prompt || n_images == 0) {
        fprintf(stderr, "lmc vlm: need -m DIR, at least one --image FILE and -p TEXT\n");
        usage(stderr);
        goto out;
    }
    lmc_load_options lo = {.model_dir = model, .tokenizer_dir = tokenizer};
    if (!lmc_cli_parse_device(device, &lo.device)) goto out;
    rc = 1;
    lmc_status st = lmc_vlm_load(&lo, &ctx);
    if (st) goto fail;
    const char *text = prompt;
    if (!raw) {
        st = lmc_vlm_chat_prompt(ctx, prompt, n_images, &chat);
        if (st == LMC_ERR_NOT_FOUND) {
            /* No chat template: the image tokens go first, then the text. */
            const char *tok = lmc_vlm_image_token(ctx);
            size_t tl = strlen(tok), need = n_images * (tl + 1) + strlen(prompt) + 1;
            chat = malloc(need);
            if (!chat) {
                fprintf(stderr, "lmc vlm: out of memory\n");
                goto out;
            }
            char *w = chat;
            for (size_t i = 0; i < n_images; i++, w += tl + 1) {
                memcpy(w, tok, tl);
                w[tl] = '\n';
            }
            strcpy(w, prompt);
            st = LMC_OK;
        }
        if (st) goto fail;
        text = chat;
    }
    lmc_gen_stats stats;
    st = lmc_vlm_generate(ctx, text, images, n_images, &ga.gen, lmc_cli_print_cb, NULL, &stats);
    if (st) goto fail;
    fputc('\n', stdout);
    fflush(stdout);
    lmc_cli_print_stats(stderr, &stats);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "lmc vlm: %s\n", lmc_last_error());
out:
    lmc_free(chat);
    lmc_vlm_free(ctx);
    free(images);
    free(rest);
    lmc_cli_gen_args_free(&ga);
    return rc;
}
