/* test_soak.c - the mixed-load soak of `vibee serve` (bench/soak/soak.mjs: streams, disconnects,
 * malformed requests, long prompts, KV exhaustion with preemption, every decoder) for a bounded
 * time over loopback: the server stays up, answers every request well-formed, leaks no KV block
 * and, in the sanitizer pass (VB_ASAN=1, server built with ASan + UBSan as build-asan/vibee),
 * writes no sanitizer report. 60 s there, 15 s in the plain pass. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"

TEST(soak_mixed_load) {
    char out[256];
    if (vbt_run_cmd("command -v node >/dev/null && echo yes", out, sizeof out) != 0 || !strstr(out, "yes")) {
        CHECKF(0, "node not found (scripts/install_deps.sh)");
    }
    const char *asan = getenv("VB_ASAN");
    const char *asan_bin = getenv("VB_ASAN_VIBEE");
    bool sanitized = asan && *asan == '1' && asan_bin && *asan_bin;
    const char *bin = sanitized ? asan_bin : vbt_vibee_bin();
    int seconds = sanitized ? 60 : 15;
    char cmd[1024];
    static char res[1 << 16];
    snprintf(cmd, sizeof cmd, "node bench/soak/soak.mjs '%s' %d 8 2>&1", bin, seconds);
    int rc = vbt_run_cmd(cmd, res, sizeof res);
    printf("     soak (%s, %d s): %.600s\n", sanitized ? "ASan server" : "server", seconds, res);
    CHECKF(rc == 0, "soak failed: %.1500s", res);
}
