/* onnx_runtime.h - ONNX Runtime through its C API for the `onnx` backend: loading the library at
 * run time (dlopen; no link-time dependency), creating a session with an execution provider
 * (cpu, cuda, tensorrt) and discovering a decoder graph's interface in Hugging Face optimum's
 * layout (input_ids, attention_mask, position_ids, past_key_values.{i}.key/.value -> logits,
 * present.{i}.key/.value), found by name. */
#ifndef VB_ONNX_RUNTIME_H
#define VB_ONNX_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>

#include <onnxruntime_c_api.h>

/* The OrtApi version requested: the headers' (1.29). A newer library (1.30) serves it too. */
#define VB_ORT_API_VERSION 29

/* What the backend's options string asks for (backend_options "key=value,..."). */
typedef struct vb_ort_options {
    char onnx_path[1024]; /* onnx=PATH: the model file (or a directory holding model.onnx) */
    char ort_lib[1024];   /* ort_lib=PATH: libonnxruntime.so (else env VB_ORT_LIB, else default) */
    char ep[16];          /* ep=cpu|cuda|tensorrt (default cpu) */
    int device_id;        /* device=N for cuda/tensorrt (default 0) */
    int opt_level;        /* opt=none|basic|extended|all (GraphOptimizationLevel, default all) */
    int log_level;        /* ort_log=0..4 (OrtLoggingLevel, default 4 = fatal only) */
    bool timing;          /* timing=1 or env VB_ONNX_TIMING: print copy/session times at free */
    int spin;             /* spin=0|1: ORT's intra-op threads busy-wait between ops (default 0:
                             spinning threads are ruinous on a shared, oversubscribed machine) */
    bool group_seqs;      /* group=0|1: sequences adding the same number of rows share one session
                             call (default 1) */
    char profile[256];    /* profile=PREFIX: ORT's per-node profile, written to PREFIX_<date>.json */
} vb_ort_options;

/* Parse "key=value,..." (NULL = defaults). Unknown keys are errors. VB_OK or VB_ERR_ARG. */
int vb_ort_parse_options(const char *s, vb_ort_options *out, char *err);

/* The loaded runtime: one per backend state (dlopen reference counts the library). */
typedef struct vb_ort {
    void *dl;             /* dlopen handle */
    const OrtApi *api;
    OrtEnv *env;
    OrtMemoryInfo *cpu_mem;
    char version[32];
    char lib_path[1024];
} vb_ort;

/* dlopen the library (opts->ort_lib, else $VB_ORT_LIB, else the compiled-in default), get the
 * API table and create the env. VB_OK or VB_ERR_BACKEND with the reason and the fix in err. */
int vb_ort_load(vb_ort *rt, const vb_ort_options *opts, char *err);
void vb_ort_unload(vb_ort *rt);

/* If st is an error: writes "<what>: <ORT's message>" into err, releases st, returns
 * VB_ERR_BACKEND; else VB_OK. */
int vb_ort_check(const vb_ort *rt, OrtStatus *st, char *err, const char *what);

/* One input or output of the graph. */
typedef struct vb_ort_io {
    char name[64];
    int32_t elem_type;  /* ONNXTensorElementDataType */
    int32_t n_dims;
    int64_t dims[8];    /* -1 for a symbolic dimension */
} vb_ort_io;

/* The decoder interface discovered from the session's input/output metadata. */
typedef struct vb_ort_graph {
    int32_t n_layer;        /* pairs of past_key_values.{i}.key/.value */
    int32_t n_head_kv;      /* dims[1] of the past tensors */
    int32_t head_dim;       /* dims[3] of the past tensors */
    int32_t n_vocab;        /* logits dims[2] (-1 if symbolic) */
    int32_t kv_elem;        /* element type of past/present (FLOAT or FLOAT16) */
    int32_t logits_elem;    /* element type of logits (FLOAT or FLOAT16) */
    bool has_attention_mask;
    bool has_position_ids;
    /* names in the order the backend passes them to Run */
    int32_t n_inputs;       /* input_ids [attention_mask] [position_ids] past... */
    int32_t n_outputs;      /* logits present... */
    const char **input_names;  /* [n_inputs] (point into the strings below) */
    const char **output_names; /* [n_outputs] */
    char *names;            /* one allocation holding every name */
} vb_ort_graph;

/* Create the session for opts->onnx_path with n_threads intra-op threads and the execution
 * provider opts->ep, then discover its interface. VB_OK, VB_ERR_IO (no such file),
 * VB_ERR_FORMAT (not an ONNX decoder in optimum's layout: err names what is missing),
 * VB_ERR_BACKEND (ORT's error, e.g. a provider library missing, with a hint). */
int vb_ort_session_create(const vb_ort *rt, const vb_ort_options *opts, int32_t n_threads,
                          OrtSession **session, vb_ort_graph *graph, char *err);
void vb_ort_graph_free(vb_ort_graph *g);

#endif
