/* runner.c - runs the registered tests (see test.h) and prints "N passed, N failed". */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test.h"

#define VBT_MAX 1024

static struct { const char *name; vbt_fn fn; const char *file; } tests[VBT_MAX];
static int n_tests;
static int current_failed;

void vbt_register(const char *name, vbt_fn fn, const char *file) {
    if (n_tests < VBT_MAX) {
        tests[n_tests].name = name;
        tests[n_tests].fn = fn;
        tests[n_tests].file = file;
        n_tests++;
    }
}

void vbt_fail(const char *file, int line, const char *msg) {
    fprintf(stderr, "    FAIL %s:%d: %s\n", file, line, msg);
    current_failed = 1;
}

int vbt_failed_now(void) { return current_failed; }

const char *vbt_fixture_dir(void) {
    const char *d = getenv("VB_FIXTURES");
    return d && *d ? d : "build/fixtures";
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    int passed = 0, failed = 0;
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter) && !strstr(tests[i].file, filter)) continue;
        current_failed = 0;
        double t0 = now_s();
        tests[i].fn();
        double dt = now_s() - t0;
        if (current_failed) {
            failed++;
            printf("FAIL %-48s %7.3fs  (%s)\n", tests[i].name, dt, tests[i].file);
        } else {
            passed++;
            printf("ok   %-48s %7.3fs\n", tests[i].name, dt);
        }
        fflush(stdout);
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
