/* Progress bars for long CLI work (load, quantize, fuse, train,
 * perplexity): drawn on stderr only when it is a terminal, silent
 * otherwise so logs and pipes stay clean. */
#ifndef LMC_CLI_PROGRESS_H
#define LMC_CLI_PROGRESS_H
#include <stdbool.h>

/* An lmc_progress_fn: `user` is ignored. A stage ends its line at 1.0 or
 * when the next stage begins. */
bool cli_progress(void *user, const char *stage, double fraction);
/* For lmc_load_options.progress: one "load" bar over the load's stages. */
bool cli_load_progress(void *user, const char *stage, double fraction);
/* The same with a short note after the bar (e.g. the training loss). */
void cli_progress_note(const char *stage, double fraction, const char *note);
/* Ends a bar left open (call before printing anything else). */
void cli_progress_done(void);
/* Whether bars are drawn (stderr is a terminal). */
bool cli_progress_on(void);

#endif
