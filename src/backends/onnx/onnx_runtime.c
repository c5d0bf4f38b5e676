/* onnx_runtime.c - ONNX Runtime through its C API (see onnx_runtime.h): the options string, the
 * run-time loading of libonnxruntime (dlopen + OrtGetApiBase()->GetApi(29)), session creation with
 * the cpu / cuda / tensorrt execution providers, and the discovery of a decoder graph's inputs and
 * outputs by their optimum names. */
#include "onnx_runtime.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "../../backend.h"

#ifndef VB_ORT_DEFAULT_LIB
#define VB_ORT_DEFAULT_LIB "libonnxruntime.so"
#endif

/* ---- options ------------------------------------------------------------------------------- */

static int copy_value(char *dst, size_t cap, const char *v, size_t n, const char *key, char *err) {
    if (n == 0 || n >= cap)
        return vb_errf(err, VB_ERR_ARG, "onnx backend: option %s: value empty or longer than %zu",
                       key, cap - 1);
    memcpy(dst, v, n);
    dst[n] = 0;
    return VB_OK;
}

int vb_ort_parse_options(const char *s, vb_ort_options *o, char *err) {
    memset(o, 0, sizeof *o);
    snprintf(o->ep, sizeof o->ep, "cpu");
    o->opt_level = ORT_ENABLE_ALL;
    o->log_level = ORT_LOGGING_LEVEL_FATAL; /* errors reach the caller as statuses */
    o->spin = 0;
    o->group_seqs = true;
    const char *tv = getenv("VB_ONNX_TIMING");
    o->timing = tv && *tv && strcmp(tv, "0") != 0;
    if (!s) return VB_OK;
    while (*s) {
        const char *end = strchr(s, ',');
        size_t len = end ? (size_t)(end - s) : strlen(s);
        const char *eq = memchr(s, '=', len);
        if (len == 0) {
            s = end ? end + 1 : s + len;
            continue;
        }
        if (!eq)
            return vb_errf(err, VB_ERR_ARG,
                           "onnx backend: option '%.*s' is not key=value (known keys: onnx, "
                           "ort_lib, ep, device, opt, ort_log, timing, profile, spin, group)", (int)len, s);
        size_t klen = (size_t)(eq - s);
        const char *v = eq + 1;
        size_t vlen = len - klen - 1;
        char key[32];
        snprintf(key, sizeof key, "%.*s", (int)(klen < 31 ? klen : 31), s);
        int rc = VB_OK;
        char num[32];
        if (strcmp(key, "onnx") == 0) {
            rc = copy_value(o->onnx_path, sizeof o->onnx_path, v, vlen, key, err);
        } else if (strcmp(key, "profile") == 0) {
            rc = copy_value(o->profile, sizeof o->profile, v, vlen, key, err);
        } else if (strcmp(key, "ort_lib") == 0) {
            rc = copy_value(o->ort_lib, sizeof o->ort_lib, v, vlen, key, err);
        } else if (strcmp(key, "ep") == 0) {
            rc = copy_value(o->ep, sizeof o->ep, v, vlen, key, err);
            if (rc == VB_OK && strcmp(o->ep, "cpu") && strcmp(o->ep, "cuda") && strcmp(o->ep, "tensorrt"))
                rc = vb_errf(err, VB_ERR_ARG,
                             "onnx backend: ep=%s is not an execution provider vibee knows "
                             "(cpu, cuda, tensorrt)", o->ep);
        } else if (strcmp(key, "device") == 0 || strcmp(key, "ort_log") == 0 ||
                   strcmp(key, "timing") == 0 || strcmp(key, "spin") == 0 || strcmp(key, "group") == 0) {
            rc = copy_value(num, sizeof num, v, vlen, key, err);
            char *e = NULL;
            long n = rc == VB_OK ? strtol(num, &e, 10) : 0;
            if (rc == VB_OK && (*e || n < 0 || n > 1024))
                rc = vb_errf(err, VB_ERR_ARG, "onnx backend: option %s=%s is not a small integer",
                             key, num);
            if (rc == VB_OK) {
                if (key[0] == 'd') o->device_id = (int)n;
                else if (key[0] == 'o') o->log_level = n > 4 ? 4 : (int)n;
                else if (key[0] == 's') o->spin = n != 0;
                else if (key[0] == 'g') o->group_seqs = n != 0;
                else o->timing = n != 0;
            }
        } else if (strcmp(key, "opt") == 0) {
            rc = copy_value(num, sizeof num, v, vlen, key, err);
            if (rc == VB_OK) {
                if (strcmp(num, "none") == 0) o->opt_level = ORT_DISABLE_ALL;
                else if (strcmp(num, "basic") == 0) o->opt_level = ORT_ENABLE_BASIC;
                else if (strcmp(num, "extended") == 0) o->opt_level = ORT_ENABLE_EXTENDED;
                else if (strcmp(num, "all") == 0) o->opt_level = ORT_ENABLE_ALL;
                else
                    rc = vb_errf(err, VB_ERR_ARG,
                                 "onnx backend: opt=%s (want none, basic, extended or all)", num);
            }
        } else {
            rc = vb_errf(err, VB_ERR_ARG,
                         "onnx backend: unknown option '%s' (known: onnx, ort_lib, ep, device, "
                         "opt, ort_log, timing, profile, spin, group)", key);
        }
        if (rc != VB_OK) return rc;
        s = end ? end + 1 : s + len;
    }
    return VB_OK;
}

/* ---- the library ------------------------------------------------------------------------- */

int vb_ort_check(const vb_ort *rt, OrtStatus *st, char *err, const char *what) {
    if (!st) return VB_OK;
    vb_errf(err, VB_ERR_BACKEND, "onnx backend: %s: %s", what, rt->api->GetErrorMessage(st));
    rt->api->ReleaseStatus(st);
    return VB_ERR_BACKEND;
}

int vb_ort_load(vb_ort *rt, const vb_ort_options *opts, char *err) {
    memset(rt, 0, sizeof *rt);
    const char *env_lib = getenv("VB_ORT_LIB");
    const char *path = opts->ort_lib[0] ? opts->ort_lib
                       : env_lib && *env_lib ? env_lib
                                             : VB_ORT_DEFAULT_LIB;
    snprintf(rt->lib_path, sizeof rt->lib_path, "%s", path);
    /* ORT keeps threads and static state: never unload it once loaded */
    rt->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!rt->dl)
        return vb_errf(err, VB_ERR_BACKEND,
                       "onnx backend: cannot load ONNX Runtime from '%s' (%s); run "
                       "scripts/install_onnxruntime.sh, or point VB_ORT_LIB (or the backend option "
                       "ort_lib=PATH) at a libonnxruntime.so", path, dlerror());
    typedef const OrtApiBase *(*get_base_fn)(void);
    get_base_fn get_base;
    *(void **)&get_base = dlsym(rt->dl, "OrtGetApiBase");
    if (!get_base) {
        dlclose(rt->dl);
        rt->dl = NULL;
        return vb_errf(err, VB_ERR_BACKEND, "onnx backend: '%s' has no OrtGetApiBase: not an ONNX "
                       "Runtime library", path);
    }
    const OrtApiBase *base = get_base();
    const char *ver = base && base->GetVersionString ? base->GetVersionString() : "?";
    snprintf(rt->version, sizeof rt->version, "%s", ver ? ver : "?");
    rt->api = base ? base->GetApi(VB_ORT_API_VERSION) : NULL;
    if (!rt->api) {
        dlclose(rt->dl);
        rt->dl = NULL;
        return vb_errf(err, VB_ERR_BACKEND,
                       "onnx backend: ONNX Runtime %s at '%s' does not provide API version %d "
                       "(needs ONNX Runtime >= 1.%d)", rt->version, path, VB_ORT_API_VERSION,
                       VB_ORT_API_VERSION);
    }
    int rc = vb_ort_check(rt, rt->api->CreateEnv((OrtLoggingLevel)opts->log_level, "vibee", &rt->env),
                          err, "CreateEnv");
    if (rc == VB_OK)
        rc = vb_ort_check(rt, rt->api->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault,
                                                           &rt->cpu_mem), err, "CreateCpuMemoryInfo");
    if (rc != VB_OK) vb_ort_unload(rt);
    return rc;
}

void vb_ort_unload(vb_ort *rt) {
    if (!rt) return;
    if (rt->api) {
        if (rt->cpu_mem) rt->api->ReleaseMemoryInfo(rt->cpu_mem);
        if (rt->env) rt->api->ReleaseEnv(rt->env);
    }
    if (rt->dl) dlclose(rt->dl);
    memset(rt, 0, sizeof *rt);
}

/* ---- session ------------------------------------------------------------------------------ */

static int append_provider(const vb_ort *rt, OrtSessionOptions *so, const vb_ort_options *opts,
                           char *err) {
    const OrtApi *api = rt->api;
    if (strcmp(opts->ep, "cpu") == 0) return VB_OK;
    char dev[16];
    snprintf(dev, sizeof dev, "%d", opts->device_id);
    const char *keys[] = {"device_id"};
    const char *vals[] = {dev};
    OrtStatus *st = NULL;
    if (strcmp(opts->ep, "cuda") == 0) {
        OrtCUDAProviderOptionsV2 *cu = NULL;
        st = api->CreateCUDAProviderOptions(&cu);
        if (!st) st = api->UpdateCUDAProviderOptions(cu, keys, vals, 1);
        if (!st) st = api->SessionOptionsAppendExecutionProvider_CUDA_V2(so, cu);
        if (cu) api->ReleaseCUDAProviderOptions(cu);
    } else {
        OrtTensorRTProviderOptionsV2 *trt = NULL;
        st = api->CreateTensorRTProviderOptions(&trt);
        if (!st) st = api->UpdateTensorRTProviderOptions(trt, keys, vals, 1);
        if (!st) st = api->SessionOptionsAppendExecutionProvider_TensorRT_V2(so, trt);
        if (trt) api->ReleaseTensorRTProviderOptions(trt);
    }
    if (!st) return VB_OK;
    /* the hint first: ORT's message can be long and the error buffer is VB_ERR_LEN bytes */
    vb_errf(err, VB_ERR_BACKEND,
            "onnx backend: execution provider '%s' unavailable in ONNX Runtime %s. Fix: point "
            "VB_ORT_LIB at a GPU build of ONNX Runtime (its libonnxruntime_providers_shared.so and "
            "libonnxruntime_providers_%s.so beside it, CUDA/cuDNN%s libraries findable; see "
            "docs/onnx.md) or use ep=cpu. ORT says: %s",
            opts->ep, rt->version, opts->ep, strcmp(opts->ep, "tensorrt") == 0 ? "/TensorRT" : "",
            api->GetErrorMessage(st));
    api->ReleaseStatus(st);
    return VB_ERR_BACKEND;
}

/* Reads one input/output's name and tensor metadata. */
static int read_io(const vb_ort *rt, OrtSession *s, size_t i, bool is_input, vb_ort_io *io,
                   char *err) {
    const OrtApi *api = rt->api;
    OrtAllocator *alloc = NULL;
    char *name = NULL;
    int rc = vb_ort_check(rt, api->GetAllocatorWithDefaultOptions(&alloc), err, "allocator");
    if (rc != VB_OK) return rc;
    rc = vb_ort_check(rt, is_input ? api->SessionGetInputName(s, i, alloc, &name)
                                   : api->SessionGetOutputName(s, i, alloc, &name),
                      err, "reading a graph input/output name");
    if (rc != VB_OK) return rc;
    snprintf(io->name, sizeof io->name, "%s", name);
    bool too_long = strlen(name) >= sizeof io->name;
    OrtStatus *freed = api->AllocatorFree(alloc, name);
    if (freed) api->ReleaseStatus(freed);
    if (too_long) {
        io->name[0] = 0; /* an unknown name: reported by the caller */
    }
    OrtTypeInfo *ti = NULL;
    rc = vb_ort_check(rt, is_input ? api->SessionGetInputTypeInfo(s, i, &ti)
                                   : api->SessionGetOutputTypeInfo(s, i, &ti),
                      err, "reading graph type info");
    if (rc != VB_OK) return rc;
    enum ONNXType ot = ONNX_TYPE_UNKNOWN;
    const OrtTensorTypeAndShapeInfo *tsi = NULL;
    rc = vb_ort_check(rt, api->GetOnnxTypeFromTypeInfo(ti, &ot), err, "type info");
    if (rc == VB_OK && ot != ONNX_TYPE_TENSOR)
        rc = vb_errf(err, VB_ERR_FORMAT, "onnx backend: graph %s '%s' is not a tensor",
                     is_input ? "input" : "output", io->name);
    if (rc == VB_OK) rc = vb_ort_check(rt, api->CastTypeInfoToTensorInfo(ti, &tsi), err, "tensor info");
    ONNXTensorElementDataType et = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    size_t nd = 0;
    if (rc == VB_OK) rc = vb_ort_check(rt, api->GetTensorElementType(tsi, &et), err, "element type");
    if (rc == VB_OK) rc = vb_ort_check(rt, api->GetDimensionsCount(tsi, &nd), err, "rank");
    if (rc == VB_OK && nd > 8)
        rc = vb_errf(err, VB_ERR_FORMAT, "onnx backend: graph tensor '%s' has rank %zu", io->name, nd);
    if (rc == VB_OK) rc = vb_ort_check(rt, api->GetDimensions(tsi, io->dims, nd), err, "dimensions");
    io->elem_type = (int32_t)et;
    io->n_dims = (int32_t)nd;
    api->ReleaseTypeInfo(ti);
    return rc;
}

/* "past_key_values.{i}.key" -> i, kind 0 (key) / 1 (value); returns false if not that form. */
static bool parse_kv_name(const char *name, const char *prefix, int32_t *layer, int *kind) {
    size_t pl = strlen(prefix);
    if (strncmp(name, prefix, pl) != 0) return false;
    const char *p = name + pl;
    char *end = NULL;
    long l = strtol(p, &end, 10);
    if (end == p || l < 0 || l > 4095) return false;
    if (strcmp(end, ".key") == 0) *kind = 0;
    else if (strcmp(end, ".value") == 0) *kind = 1;
    else return false;
    *layer = (int32_t)l;
    return true;
}

static bool is_float_type(int32_t t) {
    return t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || t == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16;
}

static int discover(const vb_ort *rt, OrtSession *s, vb_ort_graph *g, const char *path, char *err) {
    const OrtApi *api = rt->api;
    size_t n_in = 0, n_out = 0;
    int rc = vb_ort_check(rt, api->SessionGetInputCount(s, &n_in), err, "input count");
    if (rc == VB_OK) rc = vb_ort_check(rt, api->SessionGetOutputCount(s, &n_out), err, "output count");
    if (rc != VB_OK) return rc;
    if (n_in > 2 * 4096 + 8 || n_out > 2 * 4096 + 8)
        return vb_errf(err, VB_ERR_FORMAT, "onnx backend: %s: %zu inputs / %zu outputs is too many",
                       path, n_in, n_out);
    vb_ort_io *ins = calloc(n_in + 1, sizeof *ins), *outs = calloc(n_out + 1, sizeof *outs);
    if (!ins || !outs) {
        free(ins);
        free(outs);
        return vb_errf(err, VB_ERR_NOMEM, "onnx backend: out of memory");
    }
    for (size_t i = 0; i < n_in && rc == VB_OK; i++) rc = read_io(rt, s, i, true, &ins[i], err);
    for (size_t i = 0; i < n_out && rc == VB_OK; i++) rc = read_io(rt, s, i, false, &outs[i], err);

    /* inputs: input_ids, optional attention_mask / position_ids, past_key_values.{i}.* */
    int32_t n_layer = 0, layer;
    int kind;
    bool has_ids = false;
    const vb_ort_io *past0 = NULL;
    for (size_t i = 0; i < n_in && rc == VB_OK; i++) {
        const vb_ort_io *io = &ins[i];
        if (strcmp(io->name, "input_ids") == 0 || strcmp(io->name, "attention_mask") == 0 ||
            strcmp(io->name, "position_ids") == 0) {
            if (io->elem_type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || io->n_dims != 2)
                rc = vb_errf(err, VB_ERR_FORMAT,
                             "onnx backend: %s: input '%s' must be int64 [batch, length]", path,
                             io->name);
            if (io->name[0] == 'i') has_ids = true;
            if (io->name[0] == 'a') g->has_attention_mask = true;
            if (io->name[0] == 'p') g->has_position_ids = true;
        } else if (parse_kv_name(io->name, "past_key_values.", &layer, &kind)) {
            if (layer + 1 > n_layer) n_layer = layer + 1;
            if (io->n_dims != 4 || io->dims[1] <= 0 || io->dims[3] <= 0 || !is_float_type(io->elem_type))
                rc = vb_errf(err, VB_ERR_FORMAT,
                             "onnx backend: %s: input '%s' must be float/float16 [batch, kv_heads, "
                             "past, head_dim] with fixed kv_heads and head_dim", path, io->name);
            else if (!past0)
                past0 = io;
            else if (io->dims[1] != past0->dims[1] || io->dims[3] != past0->dims[3] ||
                     io->elem_type != past0->elem_type)
                rc = vb_errf(err, VB_ERR_FORMAT,
                             "onnx backend: %s: input '%s' differs in shape or type from '%s'",
                             path, io->name, past0->name);
        } else {
            rc = vb_errf(err, VB_ERR_FORMAT,
                         "onnx backend: %s: unexpected graph input '%s' (a decoder in optimum's "
                         "layout has input_ids, attention_mask, position_ids and "
                         "past_key_values.{i}.key/.value only)", path, io->name[0] ? io->name : "?");
        }
    }
    if (rc == VB_OK && !has_ids)
        rc = vb_errf(err, VB_ERR_FORMAT, "onnx backend: %s: the graph has no 'input_ids' input", path);
    if (rc == VB_OK && n_layer == 0)
        rc = vb_errf(err, VB_ERR_FORMAT,
                     "onnx backend: %s: the graph has no past_key_values.{i}.key/.value inputs: "
                     "export the decoder with past key/values (optimum: --task "
                     "text-generation-with-past, or scripts/export_onnx.py)", path);
    /* every layer has both past inputs and both present outputs; logits present */
    const vb_ort_io *logits = NULL;
    if (rc == VB_OK) {
        unsigned char *seen = calloc((size_t)n_layer * 4, 1); /* [layer][past k, past v, pres k, pres v] */
        if (!seen) rc = vb_errf(err, VB_ERR_NOMEM, "onnx backend: out of memory");
        for (size_t i = 0; i < n_in && rc == VB_OK; i++)
            if (parse_kv_name(ins[i].name, "past_key_values.", &layer, &kind))
                seen[layer * 4 + kind] = 1;
        for (size_t i = 0; i < n_out && rc == VB_OK; i++) {
            const vb_ort_io *io = &outs[i];
            if (strcmp(io->name, "logits") == 0) {
                logits = io;
                if (io->n_dims != 3 || !is_float_type(io->elem_type))
                    rc = vb_errf(err, VB_ERR_FORMAT,
                                 "onnx backend: %s: output 'logits' must be float/float16 [batch, "
                                 "length, vocab]", path);
            } else if (parse_kv_name(io->name, "present.", &layer, &kind) && layer < n_layer) {
                if (io->n_dims != 4 || io->elem_type != past0->elem_type ||
                    io->dims[1] != past0->dims[1] || io->dims[3] != past0->dims[3])
                    rc = vb_errf(err, VB_ERR_FORMAT,
                                 "onnx backend: %s: output '%s' does not match the past inputs' "
                                 "shape and type", path, io->name);
                seen[layer * 4 + 2 + kind] = 1;
            }
        }
        for (int32_t l = 0; l < n_layer && rc == VB_OK; l++)
            for (int k = 0; k < 4 && rc == VB_OK; k++)
                if (!seen[l * 4 + k])
                    rc = vb_errf(err, VB_ERR_FORMAT, "onnx backend: %s: the graph lacks %s.%d.%s",
                                 path, k < 2 ? "input past_key_values" : "output present", l,
                                 k % 2 ? "value" : "key");
        free(seen);
        if (rc == VB_OK && !logits)
            rc = vb_errf(err, VB_ERR_FORMAT, "onnx backend: %s: the graph has no 'logits' output", path);
    }
    if (rc == VB_OK) {
        g->n_layer = n_layer;
        g->n_head_kv = (int32_t)past0->dims[1];
        g->head_dim = (int32_t)past0->dims[3];
        g->kv_elem = past0->elem_type;
        g->logits_elem = logits->elem_type;
        g->n_vocab = logits->dims[2] > 0 && logits->dims[2] < (1 << 24) ? (int32_t)logits->dims[2] : -1;
        g->n_inputs = 1 + g->has_attention_mask + g->has_position_ids + 2 * n_layer;
        g->n_outputs = 1 + 2 * n_layer;
        const int32_t n_names = g->n_inputs + g->n_outputs;
        g->names = calloc((size_t)n_names, 64);
        g->input_names = calloc((size_t)g->n_inputs, sizeof *g->input_names);
        g->output_names = calloc((size_t)g->n_outputs, sizeof *g->output_names);
        if (!g->names || !g->input_names || !g->output_names) {
            rc = vb_errf(err, VB_ERR_NOMEM, "onnx backend: out of memory");
        } else {
            int32_t k = 0, a = 0, o = 0;
#define NAME(list, idx, ...)                                 \
    do {                                                     \
        snprintf(g->names + (size_t)k * 64, 64, __VA_ARGS__); \
        list[idx] = g->names + (size_t)k++ * 64;             \
    } while (0)
            NAME(g->input_names, a++, "input_ids");
            if (g->has_attention_mask) NAME(g->input_names, a++, "attention_mask");
            if (g->has_position_ids) NAME(g->input_names, a++, "position_ids");
            NAME(g->output_names, o++, "logits");
            for (int32_t l = 0; l < n_layer; l++) {
                NAME(g->input_names, a++, "past_key_values.%d.key", l);
                NAME(g->input_names, a++, "past_key_values.%d.value", l);
                NAME(g->output_names, o++, "present.%d.key", l);
                NAME(g->output_names, o++, "present.%d.value", l);
            }
#undef NAME
        }
    }
    free(ins);
    free(outs);
    return rc;
}

void vb_ort_graph_free(vb_ort_graph *g) {
    if (!g) return;
    free(g->names);
    free(g->input_names);
    free(g->output_names);
    memset(g, 0, sizeof *g);
}

int vb_ort_session_create(const vb_ort *rt, const vb_ort_options *opts, int32_t n_threads,
                          OrtSession **session, vb_ort_graph *graph, char *err) {
    const OrtApi *api = rt->api;
    *session = NULL;
    memset(graph, 0, sizeof *graph);
    char path[1100];
    struct stat st;
    if (!opts->onnx_path[0])
        return vb_errf(err, VB_ERR_ARG,
                       "onnx backend: no ONNX model given: pass the backend option "
                       "onnx=PATH/model.onnx (the -m model then supplies the tokenizer)");
    if (stat(opts->onnx_path, &st) != 0)
        return vb_errf(err, VB_ERR_IO, "onnx backend: cannot open ONNX model '%s'", opts->onnx_path);
    if (S_ISDIR(st.st_mode)) {
        snprintf(path, sizeof path, "%s/model.onnx", opts->onnx_path);
        if (stat(path, &st) != 0)
            return vb_errf(err, VB_ERR_IO, "onnx backend: directory '%s' has no model.onnx",
                           opts->onnx_path);
    } else {
        snprintf(path, sizeof path, "%s", opts->onnx_path);
    }
    OrtSessionOptions *so = NULL;
    int rc = vb_ort_check(rt, api->CreateSessionOptions(&so), err, "CreateSessionOptions");
    if (rc == VB_OK)
        rc = vb_ort_check(rt, api->SetIntraOpNumThreads(so, n_threads > 0 ? n_threads : 1), err,
                          "SetIntraOpNumThreads");
    if (rc == VB_OK) rc = vb_ort_check(rt, api->SetInterOpNumThreads(so, 1), err, "SetInterOpNumThreads");
    if (rc == VB_OK)
        rc = vb_ort_check(rt, api->SetSessionExecutionMode(so, ORT_SEQUENTIAL), err, "execution mode");
    if (rc == VB_OK)
        rc = vb_ort_check(rt, api->SetSessionGraphOptimizationLevel(so, (GraphOptimizationLevel)opts->opt_level),
                          err, "optimization level");
    if (rc == VB_OK && !opts->spin)
        rc = vb_ort_check(rt, api->AddSessionConfigEntry(so, "session.intra_op.allow_spinning", "0"),
                          err, "session.intra_op.allow_spinning");
    if (rc == VB_OK && opts->profile[0])
        rc = vb_ort_check(rt, api->EnableProfiling(so, opts->profile), err, "EnableProfiling");
    if (rc == VB_OK) rc = append_provider(rt, so, opts, err);
    if (rc == VB_OK) {
        OrtStatus *s = api->CreateSession(rt->env, path, so, session);
        if (s) {
            OrtErrorCode code = api->GetErrorCode(s);
            rc = code == ORT_NO_SUCHFILE ? VB_ERR_IO
                 : code == ORT_INVALID_PROTOBUF || code == ORT_INVALID_GRAPH || code == ORT_NOT_IMPLEMENTED
                     ? VB_ERR_FORMAT
                     : VB_ERR_BACKEND;
            vb_errf(err, rc, "onnx backend: cannot load ONNX model '%s': %s", path,
                    api->GetErrorMessage(s));
            api->ReleaseStatus(s);
            *session = NULL;
        }
    }
    if (so) api->ReleaseSessionOptions(so);
    if (rc == VB_OK) rc = discover(rt, *session, graph, path, err);
    if (rc != VB_OK) {
        if (*session) api->ReleaseSession(*session);
        *session = NULL;
        vb_ort_graph_free(graph);
    }
    return rc;
}
