/* test.h - the tiny test harness: TEST(name) registers a test at load time, CHECK macros record
 * failures; tests/runner.c runs them all (or those whose name contains argv[1]) and prints the
 * closing line "N passed, N failed" (", N skipped" when some were). */
#ifndef VB_TEST_H
#define VB_TEST_H

#include <math.h>
#include <stdio.h>

/* failure messages are cut to 512 bytes on purpose */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif

typedef void (*vbt_fn)(void);
void vbt_register(const char *name, vbt_fn fn, const char *file);
void vbt_fail(const char *file, int line, const char *msg);
int vbt_failed_now(void); /* nonzero if the running test has failed */
/* The running test cannot run here (a missing optional tool): printed with the reason and
 * counted as skipped, not passed. Return from the test after calling it. */
void vbt_skip(const char *why);
/* The vibee CLI under test: $VIBEE or build/vibee. */
const char *vbt_vibee_bin(void);
/* Run a shell command, capture its stdout (up to cap-1 bytes, NUL-terminated; the rest is read
 * and dropped); returns the exit status, or -1 if it could not run or did not exit normally. */
int vbt_run_cmd(const char *cmd, char *out, size_t cap);
/* n_blocks blocks of the quantized `type` (types.h layouts) with every data byte drawn from a
 * generator seeded with seed and every f16 scale / minimum field a finite random value of
 * magnitude below 0.1 (defined in test_kernels.c). Returns 0, or -1 if the type is not known. */
int vbt_random_blocks(unsigned type, void *dst, long long n_blocks, unsigned seed);
/* Directory of generated fixtures (models, reference logits): $VB_FIXTURES or build/fixtures. */
const char *vbt_fixture_dir(void);
/* 1: s[0..n) is a sentence of grammar g; 0: not; -1: error (defined in test_grammar.c). */
struct vb_grammar;
int vbt_grammar_matches(const struct vb_grammar *g, const char *s, size_t n);

#define TEST(name)                                                                            \
    static void name(void);                                                                   \
    __attribute__((constructor)) static void vbt_reg_##name(void) {                           \
        vbt_register(#name, name, __FILE__);                                                  \
    }                                                                                         \
    static void name(void)

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            vbt_fail(__FILE__, __LINE__, #cond);                                              \
            return;                                                                           \
        }                                                                                     \
    } while (0)

#define CHECKF(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            char vbt_msg_[512];                                                               \
            snprintf(vbt_msg_, sizeof vbt_msg_, __VA_ARGS__);                                 \
            vbt_fail(__FILE__, __LINE__, vbt_msg_);                                           \
            return;                                                                           \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                    \
    CHECKF((long long)(a) == (long long)(b), "%s == %s (%lld vs %lld)", #a, #b,               \
           (long long)(a), (long long)(b))

#endif
