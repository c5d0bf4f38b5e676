/* backend.c - the registry of backends: the ones compiled in, and backend modules loaded at run
 * time with dlopen the first time they are asked for (cuda: libvibee-cuda.so, so that the library
 * and the CLI link no CUDA library). */
#include "backend.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const vb_backend_ops *const registry[] = {
    &vb_backend_cpu,
    &vb_backend_sim,
#ifdef VB_HAVE_LLAMACPP
    &vb_backend_llamacpp,
#endif
#ifdef VB_HAVE_ONNX
    &vb_backend_onnx,
#endif
};
#define N_REGISTRY (sizeof registry / sizeof registry[0])

/* Backends built as modules: loaded on first use, kept loaded. */
typedef struct backend_module {
    const char *name;          /* backend name */
    const char *file;          /* module file name */
    const char *env;           /* environment variable naming the module's path */
    const char *build_path;    /* where the build put it ("" if unknown) */
    const char *symbol;        /* its vb_backend_ops table */
    const vb_backend_ops *ops; /* loaded table, or NULL */
    bool tried;
    char error[VB_ERR_LEN];    /* why it could not be loaded */
} backend_module;

#ifndef VB_CUDA_MODULE_DEFAULT
#define VB_CUDA_MODULE_DEFAULT ""
#endif
static backend_module modules[] = {
#ifdef VB_HAVE_CUDA
    {"cuda", "libvibee-cuda.so", "VB_CUDA_MODULE", VB_CUDA_MODULE_DEFAULT, "vb_backend_cuda", NULL, false, ""},
#endif
    {NULL, NULL, NULL, NULL, NULL, NULL, false, ""},
};
static pthread_mutex_t modules_mu = PTHREAD_MUTEX_INITIALIZER;

/* dlopen the module: $ENV, else beside the executable (and ../lib), else where the build put
   it. Holds modules_mu. */
static void module_load(backend_module *m) {
    m->tried = true;
    char cand[4][PATH_MAX];
    int n = 0;
    const char *env = getenv(m->env);
    if (env && *env) snprintf(cand[n++], PATH_MAX, "%s", env);
    else {
        char exe[PATH_MAX];
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len > 0) {
            exe[len] = 0;
            char *slash = strrchr(exe, '/');
            if (slash) {
                *slash = 0;
                snprintf(cand[n++], PATH_MAX, "%.3800s/%s", exe, m->file);
                snprintf(cand[n++], PATH_MAX, "%.3800s/../lib/%s", exe, m->file);
            }
        }
        if (m->build_path[0]) snprintf(cand[n++], PATH_MAX, "%s", m->build_path);
    }
    const char *last = "no candidate path";
    char why[VB_ERR_LEN] = "";
    for (int i = 0; i < n; i++) {
        if (access(cand[i], F_OK) != 0 && !(env && *env)) continue;
        void *h = dlopen(cand[i], RTLD_NOW | RTLD_LOCAL);
        if (!h) {
            const char *e = dlerror();
            snprintf(why, sizeof why, "%s", e ? e : "dlopen failed");
            last = why;
            continue;
        }
        const vb_backend_ops *ops = dlsym(h, m->symbol);
        if (!ops) {
            snprintf(why, sizeof why, "%.300s has no symbol %s", cand[i], m->symbol);
            last = why;
            dlclose(h);
            continue;
        }
        if (ops->version != VB_BACKEND_VERSION) {
            snprintf(why, sizeof why, "%.300s was built for backend interface %d, this library has %d", cand[i],
                     ops->version, VB_BACKEND_VERSION);
            last = why;
            dlclose(h);
            continue;
        }
        m->ops = ops; /* kept loaded for the life of the process */
        return;
    }
    if (n == 0 || last == (const char *)"no candidate path")
        snprintf(m->error, sizeof m->error, "backend %s: module %s not found (set %s to its path)", m->name,
                 m->file, m->env);
    else
        snprintf(m->error, sizeof m->error, "backend %s: cannot load module %s: %.400s", m->name, m->file, last);
}

static backend_module *module_named(const char *name) {
    for (backend_module *m = modules; m->name; m++)
        if (strcmp(m->name, name) == 0) return m;
    return NULL;
}

const vb_backend_ops *vb_backend_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < N_REGISTRY; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    backend_module *m = module_named(name);
    if (!m) return NULL;
    pthread_mutex_lock(&modules_mu);
    if (!m->tried) module_load(m);
    const vb_backend_ops *ops = m->ops;
    pthread_mutex_unlock(&modules_mu);
    return ops;
}

const char *vb_backend_load_error(const char *name) {
    backend_module *m = name ? module_named(name) : NULL;
    if (!m) return NULL;
    pthread_mutex_lock(&modules_mu);
    const char *e = m->tried && !m->ops ? m->error : NULL;
    pthread_mutex_unlock(&modules_mu);
    return e;
}

const vb_backend_ops *vb_backend_for_model_path(const char *path) {
    for (size_t i = 0; path && i < N_REGISTRY; i++)
        if (registry[i]->model_probe && registry[i]->model_probe(path)) return registry[i];
    return NULL;
}

const char *vb_backend_list(void) {
    static char list[128];
    if (!list[0]) {
        size_t off = 0;
        for (size_t i = 0; i < N_REGISTRY && off < sizeof list; i++)
            off += (size_t)snprintf(list + off, sizeof list - off, "%s%s", i ? "," : "",
                                    registry[i]->name);
        for (backend_module *m = modules; m->name && off < sizeof list; m++)
            off += (size_t)snprintf(list + off, sizeof list - off, ",%s", m->name);
    }
    return list;
}

