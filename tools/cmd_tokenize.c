/* `lmc tokenize -t DIR [--decode] [--no-special] [--tokens] (TEXT | -f FILE)`:
 * prints the ids of TEXT (space separated), or with --decode reads TEXT as
 * ids and prints the decoded string. -f reads the text from FILE ("-":
 * standard input). */
#include "cli_io.h"
#include "lmc.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f) {
    fprintf(f, "usage: lmc tokenize -t DIR [--decode] [--no-special] [--tokens] (TEXT | -f FILE)\n"
               "  -t DIR        directory with tokenizer.json (+ tokenizer_config.json)\n"
               "  -f FILE       read the text from FILE (\"-\": standard input)\n"
               "  --decode      TEXT is a list of ids (spaces/commas); print the text\n"
               "  --no-special  encode without BOS/EOS; decode skipping special tokens\n"
               "  --tokens      also print each id's token string\n");
}

static int decode_ids(const lmc_tokenizer *t, const char *text, bool skip) {
    size_t cap = 64, n = 0;
    int32_t *ids = malloc(cap * sizeof *ids);
    if (!ids) return 1;
    const char *p = text;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\n' || *p == '\t' || *p == '[' || *p == ']') p++;
        if (!*p) break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) {
            fprintf(stderr, "lmc tokenize: not an id: \"%.20s\"\n", p);
            free(ids);
            return 2;
        }
        if (n == cap) {
            int32_t *nv = realloc(ids, (cap *= 2) * sizeof *ids);
            if (!nv) {
                free(ids);
                return 1;
            }
            ids = nv;
        }
        ids[n++] = (int32_t)v;
        p = end;
    }
    char *out = NULL;
    lmc_status st = lmc_tokenizer_decode(t, ids, n, skip, &out);
    free(ids);
    if (st) {
        fprintf(stderr, "lmc tokenize: %s\n", lmc_last_error());
        return 1;
    }
    printf("%s\n", out);
    lmc_free(out);
    return 0;
}

#define TEXT_MAX ((size_t)1 << 30)

int lmc_cmd_tokenize(int argc, char **argv) {
    const char *dir = NULL, *text = NULL, *file = NULL;
    bool decode = false, no_special = false, tokens = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") || !strcmp(argv[i], "--tokenizer")) {
            if (++i >= argc) {
                usage(stderr);
                return 2;
            }
            dir = argv[i];
        } else if (!strcmp(argv[i], "-f") || !strcmp(argv[i], "--file")) {
            if (++i >= argc) {
                usage(stderr);
                return 2;
            }
            file = argv[i];
        } else if (!strcmp(argv[i], "--decode")) decode = true;
        else if (!strcmp(argv[i], "--no-special")) no_special = true;
        else if (!strcmp(argv[i], "--tokens")) tokens = true;
        else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!text) text = argv[i];
        else {
            fprintf(stderr, "lmc tokenize: unexpected argument \"%s\"\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!dir || !!text == !!file) {
        usage(stderr);
        return 2;
    }
    char *owned = NULL;
    size_t text_len = text ? strlen(text) : 0;
    if (file) {
        owned = cli_read_file("lmc tokenize", file, TEXT_MAX, &text_len);
        if (!owned) return 1;
        text = owned;
    }
    lmc_tokenizer *t = NULL;
    if (lmc_tokenizer_load(dir, &t)) {
        fprintf(stderr, "lmc tokenize: %s\n", lmc_last_error());
        free(owned);
        return 1;
    }
    int rc = 0;
    if (decode) rc = decode_ids(t, text, no_special);
    else {
        int32_t *ids = NULL;
        size_t n = 0;
        if (lmc_tokenizer_encode(t, text, text_len, !no_special, &ids, &n)) {
            fprintf(stderr, "lmc tokenize: %s\n", lmc_last_error());
            rc = 1;
        } else {
            for (size_t i = 0; i < n; i++) {
                if (tokens) {
                    const char *s = lmc_tokenizer_id_to_token(t, ids[i]);
                    printf("%s%d\t%s\n", "", ids[i], s ? s : "");
                } else {
                    printf(i ? " %d" : "%d", ids[i]);
                }
            }
            if (!tokens) printf("\n");
            lmc_free(ids);
        }
    }
    lmc_tokenizer_free(t);
    free(owned);
    return rc;
}
