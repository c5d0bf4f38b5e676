/* onnx_backend.h - what the `onnx` backend offers beyond its vb_backend_ops table (declared in
 * src/backend.h as vb_backend_onnx): a probe of an ONNX decoder file's shape, for a model loader
 * that wants to accept `-m model.onnx` (or a directory holding model.onnx) directly. Compiled only
 * with VB_HAVE_ONNX. */
#ifndef VB_ONNX_BACKEND_H
#define VB_ONNX_BACKEND_H

#include <stddef.h>

#include "vibee.h"

/* Open `path` (an .onnx file or a directory holding model.onnx) with ONNX Runtime (library from
 * $VB_ORT_LIB or the default path) and fill what the graph's input/output metadata tells:
 * info->n_layer, n_head_kv, head_dim, and n_vocab when the logits' last dimension is fixed (else
 * left unchanged); arch is set to "onnx" when empty. Other fields are left unchanged (n_head,
 * n_embd... are not visible in the graph's interface: take them and the tokenizer from a GGUF,
 * e.g. --vocab). Returns VB_OK, VB_ERR_IO, VB_ERR_FORMAT or VB_ERR_BACKEND with err set.
 * Thread-safe (no shared state). */
int vb_onnx_probe(const char *path, vb_model_info *info, char *err, size_t err_len);

#endif
