/* Temporary files and directories that must not outlive an interrupted
 * process: writers register them, and a SIGINT/SIGTERM handler (installed
 * on first use, only where the signal still has its default action)
 * removes every registered path before the signal ends the process. */
#ifndef LMC_BASE_CLEANUP_H
#define LMC_BASE_CLEANUP_H
#include <stdbool.h>

/* Register `path` (absolute or relative to the working directory, which
 * must not change meanwhile); a directory is removed with its files.
 * Returns a slot for lmc_tmp_unregister, or -1 when the table is full (the
 * path is then just not cleaned up on a signal). */
int lmc_tmp_register(const char *path, bool is_dir);
/* Re-point a slot at another path (after a rename). */
void lmc_tmp_repath(int slot, const char *path);
void lmc_tmp_unregister(int slot);

/* Remove a directory and the files in it (one level; async-signal-safe).
 * Returns 0, or -1 with errno set when something could not be removed. */
int lmc_remove_flat_dir(const char *path);

/* Tests only: when LMC_TEST_CRASH_AT names `point` ("point" or
 * "point:TERM"), the process kills itself here with SIGKILL (or SIGTERM),
 * simulating a crash or an interrupt at that moment. */
void lmc_test_crash_point(const char *point);

#endif
