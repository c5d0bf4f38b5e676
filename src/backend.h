/* backend.h - the backend interface: a struct of function pointers plus a state pointer,
 * registered by name. The context layer (context.c) validates every batch (token range,
 * sequence ids, positions, size) before calling a backend, so backends may trust their input.
 * Each backend keeps the error-buffer pointer it gets in init and writes messages there. */
#ifndef VB_BACKEND_H
#define VB_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "vibee.h"

#define VB_ERR_LEN 512
/* The layout of vb_backend_ops; a table written against another one is refused. */
#define VB_BACKEND_VERSION 4

typedef struct vb_backend_ops {
    int version;     /* VB_BACKEND_VERSION */
    const char *name;
    bool runs_gguf;  /* runs GGUF models (else only models of its own format) */
    bool kv_q8_0;    /* stores a VB_KV_Q8_0 cache (else the context refuses that kv_type) */
    /* optional: a model format of the backend's own (sim, onnx). model_probe: is path one (no
       message); model_load: build the model into *model (zeroed; the caller sets owner, path
       and frees it on failure). */
    bool (*model_probe)(const char *path);
    int (*model_load)(const char *path, const vb_model_params *params, vb_model *model, char *err,
                      size_t err_len);
    /* required: create backend state over model. err: the context's error buffer
       (VB_ERR_LEN bytes, lives as long as the state). */
    int (*init)(const vb_model *model, const vb_context_params *params, void **state, char *err);
    /* required */
    void (*free)(void *state);
    /* required */
    vb_backend_caps (*caps)(void *state);
    /* required: run the batch (DESIGN §3). Logits of the k-th row with want_logits go to
       logits + k * n_vocab. All-or-nothing on the KV: on any non-OK return, every sequence
       holds exactly the rows it held before. */
    int (*forward)(void *state, const vb_batch *batch, float *logits);
    /* K/V in vibee's paged pool (cpu, cuda, onnx, sim): the backend creates it (size from
       vb_kvc_blocks_for_ctx), appends each batch with vb_kvc_append_batch, and the context runs
       every KV operation below on it; kv_changed (optional) hears of each one (seq changed). */
    struct vb_kv_cache *(*paged_kv)(void *state);
    void (*kv_changed)(void *state, vb_seq seq);
    /* a backend with its own KV (llamacpp): required when paged_kv is NULL; seq validated */
    int32_t (*kv_seq_len)(void *state, vb_seq seq);
    int (*kv_truncate)(void *state, vb_seq seq, int32_t n_keep);
    int (*kv_free_seq)(void *state, vb_seq seq);
    /* optional (NULL: VB_ERR_UNSUPPORTED) */
    int (*kv_fork)(void *state, vb_seq src, vb_seq dst);
    /* optional (NULL: zeros) */
    void (*kv_stats)(void *state, vb_kv_stats *out);
    /* optional (NULL: vb_embed answers VB_ERR_UNSUPPORTED): forward's contract, but for the k-th
       row with want_logits the model's final hidden state (after the output norm, before the
       output matrix) goes to hidden + k * n_embd instead of logits. */
    int (*forward_hidden)(void *state, const vb_batch *batch, float *hidden);
} vb_backend_ops;

/* A backend by name: compiled in, or a module loaded now (cuda). NULL if unknown or its module
 * cannot be loaded (vb_backend_load_error says why). */
const vb_backend_ops *vb_backend_find(const char *name);
/* Why backend `name`'s module could not be loaded (NULL: not a module, or not tried, or fine). */
const char *vb_backend_load_error(const char *name);
/* Comma-separated names of the compiled-in backends. */
const char *vb_backend_list(void);
/* The backend whose own model format path is (NULL: none; a GGUF file, say). */
const vb_backend_ops *vb_backend_for_model_path(const char *path);

extern const vb_backend_ops vb_backend_sim;
extern const vb_backend_ops vb_backend_cpu;
#ifdef VB_HAVE_LLAMACPP
extern const vb_backend_ops vb_backend_llamacpp;
#endif
#ifdef VB_HAVE_ONNX
extern const vb_backend_ops vb_backend_onnx;
#endif
/* (vb_backend_cuda lives in the module libvibee-cuda.so, see src/backends/cuda/cuda.mk) */

/* Per-context storage for the decoders (their measured cost(K) table): owned by the context,
 * freed with free_fn when replaced or when the context is freed. */
void *vb_context_decoder_cache(const vb_context *ctx);
void vb_context_set_decoder_cache(vb_context *ctx, void *cache, void (*free_fn)(void *));
/* Row of seq's KV whose token differs from toks[row], for rows [0, n) (n <= the sequence's
 * length): its index, n if every row matches, or -1 when the backend keeps no tokens (its own
 * KV). vb_generate's reuse_kv check. */
int32_t vb_context_seq_mismatch(const vb_context *ctx, vb_seq seq, const vb_token *toks, int32_t n);
/* The context's parameters as resolved at init (backend = its name; backend_options NULL;
 * cost_cache_path an owned copy or NULL). */
const vb_context_params *vb_context_params_get(const vb_context *ctx);

/* Opens path for reading ("rb") if it is a regular file of at most max_bytes bytes (< 0: any
 * size), without blocking on a FIFO; NULL otherwise, errno EINVAL (not a regular file), EFBIG
 * (too large) or open's. */
FILE *vb_fopen_regular(const char *path, int64_t max_bytes);

/* printf-style message into a VB_ERR_LEN buffer; returns status (for `return vb_errf(...)`). */
int vb_errf(char *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
