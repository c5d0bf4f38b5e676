/* model.h - the internal layout of vb_model: format, hyper-parameters, the GGUF file (for GGUF
 * models), the tokenizer and the sim parameters. Backends read what they need from here. */
#ifndef VB_MODEL_H
#define VB_MODEL_H

#include "gguf/gguf.h"
#include "tokenizer/tokenizer.h"
#include "vibee.h"

enum vb_model_format { VB_FORMAT_GGUF = 0, VB_FORMAT_SIM = 1, VB_FORMAT_ONNX = 2 };

struct vb_model {
    int format;
    vb_model_info info;
    char path[1024];       /* file the model came from ("" for memory / sim) */
    vb_gguf *gguf;         /* owned; NULL unless VB_FORMAT_GGUF */
    vb_tokenizer *tok;     /* owned; NULL if the model has no tokenizer */
    vb_sim_params sim;     /* VB_FORMAT_SIM */
    float rope_theta;      /* from GGUF (default 10000) */
    float norm_eps;        /* RMSNorm / LayerNorm epsilon */
};

#endif
