/* runner.c - runs the registered tests (see test.h) and prints "N passed, N failed" (and
 * ", N skipped" when tests called vbt_skip). */
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>

#include "test.h"

#define VBT_MAX 1024

static struct { const char *name; vbt_fn fn; const char *file; } tests[VBT_MAX];
static int n_tests;
static int current_failed;
static char current_skip[256]; /* why the running test skipped ("" = it ran) */

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

void vbt_skip(const char *why) { snprintf(current_skip, sizeof current_skip, "%s", why && *why ? why : "?"); }

const char *vbt_fixture_dir(void) {
    const char *d = getenv("VB_FIXTURES");
    return d && *d ? d : "build/fixtures";
}

const char *vbt_vibee_bin(void) {
    const char *v = getenv("VIBEE");
    return v && *v ? v : "build/vibee";
}

int vbt_run_cmd(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = 0, got;
    while (n + 1 < cap && (got = fread(out + n, 1, cap - 1 - n, p)) > 0) n += got;
    out[n] = 0;
    char sink[4096];
    while (fread(sink, 1, sizeof sink, p) > 0) {
    }
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : NULL;
    /* hermetic: CLI runs started by tests keep measured costs out of the user's cache
       (tests that need a cost cache pass --cost-cache FILE) */
    setenv("VIBEE_COST_CACHE", "off", 0);
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n_tests; i++) {
        if (filter && !strstr(tests[i].name, filter) && !strstr(tests[i].file, filter)) continue;
        current_failed = 0;
        current_skip[0] = 0;
        double t0 = now_s();
        tests[i].fn();
        double dt = now_s() - t0;
        if (current_failed) {
            failed++;
            printf("FAIL %-48s %7.3fs  (%s)\n", tests[i].name, dt, tests[i].file);
        } else if (current_skip[0]) {
            skipped++;
            printf("skip %-48s %7.3fs  (%s)\n", tests[i].name, dt, current_skip);
        } else {
            passed++;
            printf("ok   %-48s %7.3fs\n", tests[i].name, dt);
        }
        fflush(stdout);
    }
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
