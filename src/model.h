/* model.h - the internal layout of vb_model: which backend's own format it is (NULL: GGUF),
 * hyper-parameters, the GGUF file (for GGUF models), the tokenizer and the owning backend's
 * model data. Backends read what they need from here. */
#ifndef VB_MODEL_H
#define VB_MODEL_H

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "vibee.h"

struct vb_backend_ops;

struct vb_model {
    const struct vb_backend_ops *owner; /* the backend whose own format the model is in (sim,
                                           onnx: only it runs the model); NULL: a GGUF model */
    vb_model_info info;
    char path[1024];       /* file the model came from ("" for memory / sim) */
    vb_gguf *gguf;         /* owned; NULL unless a GGUF model (or an ONNX model's --vocab) */
    vb_tokenizer *tok;     /* owned; NULL if the model has no tokenizer */
    void *native;          /* owned (free()): the owner backend's model data (sim: vb_sim_params) */
    float rope_theta;      /* from GGUF (default 10000) */
    float norm_eps;        /* RMSNorm / LayerNorm epsilon */
    struct vb_token_table *token_table; /* owned, built on first use: the vocabulary sorted by
                                           bytes for grammars (src/grammar/token_mask.c) */
};

#endif
