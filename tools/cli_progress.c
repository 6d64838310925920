/* Progress bars on a terminal (see cli_progress.h). */
#include "cli_progress.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define WIDTH 30

static char open_stage[32]; /* the stage whose line is open ("" = none) */
static int last_pct = -1;

bool cli_progress_on(void) { return isatty(STDERR_FILENO); }

void cli_progress_done(void) {
    if (open_stage[0]) fputc('\n', stderr);
    open_stage[0] = 0;
    last_pct = -1;
}

bool cli_progress(void *user, const char *stage, double fraction) {
    (void)user;
    cli_progress_note(stage, fraction, NULL);
    return true;
}

void cli_progress_note(const char *stage, double fraction, const char *note) {
    if (!cli_progress_on()) return;
    if (fraction < 0) fraction = 0;
    if (fraction > 1) fraction = 1;
    int pct = (int)(fraction * 100.0);
    if (open_stage[0] && strcmp(open_stage, stage)) cli_progress_done();
    if (pct == last_pct && open_stage[0] && !note) return;
    snprintf(open_stage, sizeof open_stage, "%s", stage);
    last_pct = pct;
    int fill = (int)(fraction * WIDTH);
    char bar[WIDTH + 1];
    memset(bar, '#', (size_t)fill);
    memset(bar + fill, '.', (size_t)(WIDTH - fill));
    bar[WIDTH] = 0;
    fprintf(stderr, "\r\033[K%-12s [%s] %3d%%%s%s", stage, bar, pct, note ? "  " : "",
            note ? note : "");
    if (fraction >= 1.0) cli_progress_done();
    fflush(stderr);
}

/* lmc_context_load reports its stages in this order, each from 0. */
static const char *const load_stages[] = {"config", "weights", "tokenizer", "model"};

bool cli_load_progress(void *user, const char *stage, double fraction) {
    (void)user;
    size_t n = sizeof load_stages / sizeof *load_stages, i = 0;
    while (i < n && strcmp(load_stages[i], stage)) i++;
    if (i == n) return cli_progress(NULL, stage, fraction);
    double overall = i + 1 == n && fraction >= 1.0 ? 1.0 : ((double)i + fraction) / (double)n;
    cli_progress_note("load", overall, stage);
    return true;
}
