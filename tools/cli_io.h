/* File input for the CLI. The CLI links only the public API, so it reads its
 * own inputs (text, messages, data paths) here rather than through the
 * library's internal file helpers. */
#ifndef LMC_CLI_IO_H
#define LMC_CLI_IO_H
#include <stdbool.h>
#include <stddef.h>

/* Whole contents of a regular file, NUL-terminated, at most `max` bytes
 * (caller frees with free()). Non-regular files (FIFOs, devices,
 * directories) are refused without blocking. "-" reads standard input.
 * On failure prints "<prefix>: <path>: <reason>" to stderr, returns NULL. */
char *cli_read_file(const char *prefix, const char *path, size_t max, size_t *len);
bool cli_is_dir(const char *path);

#endif
