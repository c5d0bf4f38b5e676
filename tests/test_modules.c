/* test_modules.c - how vibee is linked: the CLI maps no CUDA library (the cuda backend is the
 * run-time module libvibee-cuda.so), runs with that module absent (and -b cuda then says why it
 * cannot), and libvibee.so has a SONAME and exports only vb_* symbols. */
#include <stdio.h>
#include <string.h>

#include "test.h"

TEST(modules_cli_without_cuda) {
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "ldd '%s' 2>&1", vbt_vibee_bin());
    CHECK(vbt_run_cmd(cmd, out, sizeof out) == 0);
    CHECKF(!strstr(out, "libcudart") && !strstr(out, "libcublas"), "the CLI links CUDA: %.400s", out);
    /* a machine without the module: CPU work runs, -b cuda fails with one clear message */
    snprintf(cmd, sizeof cmd, "VB_CUDA_MODULE=/nonexistent/libvibee-cuda.so '%s' run -m sim -p hi -n 4 --seed 1 2>&1",
             vbt_vibee_bin());
    CHECKF(vbt_run_cmd(cmd, out, sizeof out) == 0, "sim run without the module: %.300s", out);
    snprintf(cmd, sizeof cmd,
             "VB_CUDA_MODULE=/nonexistent/libvibee-cuda.so '%s' run -b cuda -p hi -n 4 2>&1; echo \"rc=$?\"",
             vbt_vibee_bin());
    vbt_run_cmd(cmd, out, sizeof out);
    if (strstr(out, "unknown backend 'cuda'")) return; /* built without CUDA: nothing more to check */
    CHECKF(strstr(out, "cannot load module libvibee-cuda.so") && !strstr(out, "rc=0"), "-b cuda: %.400s", out);
}

TEST(modules_libvibee_exports) {
    char cmd[1024], out[1 << 16];
    const char *bin = vbt_vibee_bin();
    const char *slash = strrchr(bin, '/');
    int dir_len = slash ? (int)(slash - bin) : 1;
    snprintf(cmd, sizeof cmd, "readelf -d '%.*s/libvibee.so' 2>&1 | grep SONAME", dir_len, slash ? bin : ".");
    CHECK(vbt_run_cmd(cmd, out, sizeof out) == 0);
    CHECKF(strstr(out, "libvibee.so.0"), "SONAME: %.200s", out);
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%.*s/libvibee.so' | awk '{print $3}' | grep -cv '^vb_'",
             dir_len, slash ? bin : ".");
    vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(strncmp(out, "0", 1) == 0, "libvibee.so exports %s symbols not named vb_*", out);
}
