/* status.c - what every layer (and the backend modules) shares: status names, error formatting,
 * the monotonic clock and opening a regular input file without blocking (declared in
 * backend.h and vibee.h). Kept apart from the registry (backend.c) so a backend module links
 * these without the registry and every backend it names. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "backend.h"

int vb_errf(char *err, int status, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, VB_ERR_LEN, fmt, ap);
        va_end(ap);
    }
    return status;
}

const char *vb_status_str(int status) {
    switch (status) {
    case VB_OK: return "ok";
    case VB_KV_FULL: return "kv cache full";
    case VB_ERR_ARG: return "invalid argument";
    case VB_ERR_NOMEM: return "out of memory";
    case VB_ERR_IO: return "i/o error";
    case VB_ERR_FORMAT: return "malformed file";
    case VB_ERR_UNSUPPORTED: return "unsupported";
    case VB_ERR_BACKEND: return "backend error";
    case VB_ERR_STATE: return "invalid state";
    default: return status > 0 ? "soft condition" : "error";
    }
}

double vb_time_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

FILE *vb_fopen_regular(const char *path, int64_t max_bytes) {
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer */
    int fd = path ? open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) : -1;
    if (fd < 0) return NULL;
    struct stat st;
    int why = 0;
    if (fstat(fd, &st) != 0) why = errno;
    else if (!S_ISREG(st.st_mode)) why = EINVAL;
    else if (max_bytes >= 0 && (int64_t)st.st_size > max_bytes) why = EFBIG;
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0) why = errno;
    FILE *f = why ? NULL : fdopen(fd, "rb");
    if (!f) {
        if (!why) why = errno;
        close(fd);
        errno = why;
    }
    return f;
}
