/* Minimal test harness: CHECK* record failures and keep going; main returns
 * check_summary(). Exit code 77 means "skipped" to ctest. */
#ifndef LMC_TEST_CHECK_H
#define LMC_TEST_CHECK_H
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures, check_count;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        check_count++;                                                              \
        if (!(cond)) {                                                              \
            check_failures++;                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                           \
    } while (0)

#define CHECK_MSG(cond, ...)                                                        \
    do {                                                                            \
        check_count++;                                                              \
        if (!(cond)) {                                                              \
            check_failures++;                                                       \
            fprintf(stderr, "%s:%d: CHECK failed: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                           \
            fputc('\n', stderr);                                                    \
        }                                                                           \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                          \
    CHECK_MSG((long long)(a) == (long long)(b), "%lld != %lld", (long long)(a),     \
              (long long)(b))
#define CHECK_STREQ(a, b)                                                           \
    CHECK_MSG((a) && (b) && !strcmp((a), (b)), "\"%s\" != \"%s\"", (a) ? (a) : "(null)", \
              (b) ? (b) : "(null)")
/* Status is `st`, and the message contains `needle`. */
#define CHECK_ERR(expr, st, needle)                                                 \
    do {                                                                            \
        int check_st_ = (int)(expr);                                                \
        const char *check_msg_ = lmc_last_error();                                  \
        CHECK_MSG(check_st_ == (int)(st) && strstr(check_msg_, (needle)),           \
                  "status %d (want %d), message \"%s\" (want \"%s\")", check_st_,   \
                  (int)(st), check_msg_, (needle));                                 \
    } while (0)

static inline int check_summary(const char *name) {
    printf("%s: %d checks, %d failures\n", name, check_count, check_failures);
    return check_failures ? 1 : 0;
}

#define CHECK_SKIP(...)                                                             \
    do {                                                                            \
        printf("SKIP: " __VA_ARGS__);                                               \
        printf("\n");                                                               \
        exit(77);                                                                   \
    } while (0)

#endif
