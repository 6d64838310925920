/* lmc command-line entry: `lmc <command> [options]`. */
#include "lmc.h"
#include <stdio.h>
#include <string.h>

/* Commands live in cmd_<name>.c; a command whose file is absent in this
 * build resolves to NULL and is reported as unavailable. */
#define LMC_COMMANDS(X)                                                         \
    X(generate, "generate text from a prompt")                                  \
    X(chat, "interactive multi-turn chat")                                      \
    X(serve, "OpenAI-compatible HTTP server")                                   \
    X(tokenize, "encode/decode text with a model's tokenizer")                  \
    X(template, "render a chat template")                                       \
    X(lora, "fine-tune LoRA adapters")                                          \
    X(quantize, "write an MLX affine-quantized copy of a model")                \
    X(perplexity, "sliding-window perplexity of a text")                        \
    X(vlm, "describe images with a vision-language model")

#define DECLARE(name, help) __attribute__((weak)) int lmc_cmd_##name(int argc, char **argv);
LMC_COMMANDS(DECLARE)
#undef DECLARE

typedef struct {
    const char *name, *help;
    int (*fn)(int, char **);
} command;

static void usage(FILE *f, const command *cmds, size_t n) {
    fprintf(f, "lmc %s\nusage: lmc <command> [options]   (lmc <command> --help)\n\ncommands:\n",
            lmc_version());
    for (size_t i = 0; i < n; i++)
        if (cmds[i].fn) fprintf(f, "  %-10s %s\n", cmds[i].name, cmds[i].help);
}

int main(int argc, char **argv) {
    const command cmds[] = {
#define ENTRY(name, help) {#name, help, lmc_cmd_##name},
        LMC_COMMANDS(ENTRY)
#undef ENTRY
    };
    size_t n = sizeof cmds / sizeof cmds[0];
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout, cmds, n);
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("lmc %s\n", lmc_version());
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], cmds[i].name)) continue;
        if (!cmds[i].fn) {
            fprintf(stderr, "lmc: command '%s' is not available in this build\n", argv[1]);
            return 2;
        }
        return cmds[i].fn(argc - 1, argv + 1);
    }
    fprintf(stderr, "lmc: unknown command '%s'\n", argv[1]);
    usage(stderr, cmds, n);
    return 2;
}
