/* model.c - vb_model: loading GGUF files (from disk or memory), or a backend's own model format
 * through the backend registry (sim, onnx: backend.h model_probe / model_load), the
 * hyper-parameters llama.cpp's GGUF keys describe, the embedded default model, metadata lookup
 * and the public tokenizer entry points. */
#include "model.h"

#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "grammar/token_mask.h"
#include "gguf/gguf_internal.h"
#include "text/utf8.h"
#include "types.h"

extern const unsigned char vb_embedded_model_data[];
extern const unsigned char vb_embedded_model_end[];

const void *vb_embedded_model(size_t *size) {
    size_t n = (size_t)(vb_embedded_model_end - vb_embedded_model_data);
    if (size) *size = n;
    return n ? vb_embedded_model_data : NULL;
}

vb_model_params vb_model_default_params(void) {
    vb_model_params p = {0};
    p.use_mmap = true;
    p.vocab_path = NULL;
    return p;
}

static int fail(char *err, size_t err_len, int status, const char *fmt, const char *a,
                const char *b) {
    if (err && err_len) snprintf(err, err_len, fmt, a, b);
    return status;
}

void vb_model_free(vb_model *m) {
    if (!m) return;
    vb_tokenizer_free(m->tok);
    vb_token_table_free(m->token_table);
    vb_gguf_close(m->gguf);
    free(m->native);
    free(m);
}

const vb_model_info *vb_model_get_info(const vb_model *m) { return m ? &m->info : NULL; }


static float arch_f32(const vb_gguf *g, const char *arch, const char *suffix, float def) {
    char key[128];
    float v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return vb_gguf_get_f32(g, key, &v) ? v : def;
}

/* The integer hyper-parameters and the range each must lie in when present (absent: 0, or
 * the fallback fill_info gives). The bounds are far above any released model and keep every
 * product below computed in 64-bit far from overflow. */
#define HPARAM_CHECK_ONLY SIZE_MAX
static const struct hparam_key {
    const char *suffix;
    size_t field; /* offsetof(vb_model_info, ...), an int32_t; HPARAM_CHECK_ONLY: none */
    int64_t hi;
} HPARAM_KEYS[] = {
    {"embedding_length", offsetof(vb_model_info, n_embd), (int64_t)1 << 20},
    {"block_count", offsetof(vb_model_info, n_layer), 4096},
    {"attention.head_count", offsetof(vb_model_info, n_head), (int64_t)1 << 16},
    {"attention.head_count_kv", offsetof(vb_model_info, n_head_kv), (int64_t)1 << 16},
    {"feed_forward_length", offsetof(vb_model_info, n_ff), (int64_t)1 << 24},
    {"context_length", offsetof(vb_model_info, n_ctx_train), INT32_MAX},
    {"attention.key_length", offsetof(vb_model_info, head_dim), (int64_t)1 << 16},
    /* checked here, read by the backends / below */
    {"attention.value_length", HPARAM_CHECK_ONLY, (int64_t)1 << 16},
    {"rope.dimension_count", HPARAM_CHECK_ONLY, (int64_t)1 << 16},
    {"vocab_size", HPARAM_CHECK_ONLY, (int64_t)1 << 24},
};
#define VB_MAX_HEAD_WIDTH ((int64_t)1 << 24) /* n_head * head_dim, n_head_kv * head_dim */

static int hparam_err(char *err, size_t err_len, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int hparam_err(char *err, size_t err_len, const char *name, const char *fmt, ...) {
    if (err && err_len) {
        int n = snprintf(err, err_len, "%s: ", name);
        va_list ap;
        va_start(ap, fmt);
        if (n >= 0 && (size_t)n < err_len) vsnprintf(err + n, err_len - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return VB_ERR_FORMAT;
}

/* Reads and validates the hyper-parameters of <arch>.* (the one place GGUF hyper-parameters
 * are checked before anything uses them): each integer key present must be an integer in its
 * range, head counts must divide, the head widths (computed in 64-bit) must stay below
 * VB_MAX_HEAD_WIDTH, and the float keys must be finite. An error names the key. */
static int read_hparams(vb_model *m, const char *name_hint, char *err, size_t err_len) {
    const vb_gguf *g = m->gguf;
    vb_model_info *in = &m->info;
    const char *a = in->arch;
    char key[128], key2[128];
    for (size_t i = 0; i < sizeof HPARAM_KEYS / sizeof HPARAM_KEYS[0]; i++) {
        const struct hparam_key *h = &HPARAM_KEYS[i];
        int32_t *field = h->field == HPARAM_CHECK_ONLY ? NULL : (int32_t *)((char *)in + h->field);
        if (field) *field = 0;
        snprintf(key, sizeof key, "%s.%s", a, h->suffix);
        int64_t idx = vb_gguf_find_key(g, key), v;
        if (idx < 0) continue;
        if (!vb_gguf_get_i64(g, key, &v)) {
            int t = vb_gguf_key_type(g, idx);
            if (t == VB_GGUF_UINT64) /* an integer above INT64_MAX */
                return hparam_err(err, err_len, name_hint, "%s is out of range [0, %lld]", key,
                                  (long long)h->hi);
            return hparam_err(err, err_len, name_hint, "%s has type %s, expected an integer",
                              key, vb_gguf_vtype_name(t));
        }
        if (v < 0 || v > h->hi)
            return hparam_err(err, err_len, name_hint, "%s = %lld is out of range [0, %lld]", key,
                              (long long)v, (long long)h->hi);
        if (field) *field = (int32_t)v;
    }
    snprintf(key, sizeof key, "%s.attention.head_count_kv", a);
    if (vb_gguf_find_key(g, key) < 0) in->n_head_kv = in->n_head;
    snprintf(key2, sizeof key2, "%s.attention.key_length", a);
    if (vb_gguf_find_key(g, key2) < 0) in->head_dim = in->n_head > 0 ? in->n_embd / in->n_head : 0;
    snprintf(key2, sizeof key2, "%s.attention.head_count", a);
    if (in->n_head > 0 && in->n_head_kv > 0 && in->n_head % in->n_head_kv != 0)
        return hparam_err(err, err_len, name_hint, "%s = %d is not a multiple of %s = %d", key2,
                          in->n_head, key, in->n_head_kv);
    const int64_t q_width = (int64_t)in->n_head * in->head_dim;
    const int64_t kv_width = (int64_t)in->n_head_kv * in->head_dim;
    if (q_width > VB_MAX_HEAD_WIDTH || kv_width > VB_MAX_HEAD_WIDTH) {
        snprintf(key, sizeof key, "%s.attention.key_length", a);
        return hparam_err(err, err_len, name_hint,
                          "%s = %d times %s = %d is %lld, above the limit %lld", key2, in->n_head,
                          key, in->head_dim, (long long)q_width, (long long)VB_MAX_HEAD_WIDTH);
    }
    static const char *const float_keys[] = {"rope.freq_base", "attention.layer_norm_rms_epsilon",
                                             "attention.layer_norm_epsilon"};
    for (size_t i = 0; i < sizeof float_keys / sizeof float_keys[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", a, float_keys[i]);
        if (vb_gguf_find_key(g, key) < 0) continue;
        float f;
        if (!vb_gguf_get_f32(g, key, &f) || !isfinite(f) || f < 0.0f)
            return hparam_err(err, err_len, name_hint,
                              "%s must be a finite non-negative float32", key);
    }
    m->rope_theta = arch_f32(g, a, "rope.freq_base", 10000.0f);
    m->norm_eps = arch_f32(g, a, "attention.layer_norm_rms_epsilon",
                           arch_f32(g, a, "attention.layer_norm_epsilon", 1e-5f));
    return VB_OK;
}

/* <arch>.<suffix> as int32; returns def if absent. */
static int32_t arch_i32(const vb_gguf *g, const char *arch, const char *suffix, int32_t def) {
    char key[128];
    int32_t v;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return vb_gguf_get_i32(g, key, &v) ? v : def;
}

/* Fill info from GGUF keys (llama.cpp's names). */
static int fill_info(vb_model *m, const char *name_hint, char *err, size_t err_len) {
    const vb_gguf *g = m->gguf;
    vb_model_info *in = &m->info;
    const char *s;
    uint64_t len;
    if (!vb_gguf_get_str(g, "general.architecture", &s, &len) || len == 0 || len >= sizeof in->arch)
        return fail(err, err_len, VB_ERR_FORMAT,
                    "%s: missing or invalid general.architecture%s", name_hint, "");
    memcpy(in->arch, s, len);
    in->arch[len] = 0;
    if (vb_gguf_get_str(g, "general.name", &s, &len) && len > 0) {
        size_t n = len < sizeof in->name - 1 ? len : sizeof in->name - 1;
        memcpy(in->name, s, n);
        in->name[n] = 0;
    } else {
        snprintf(in->name, sizeof in->name, "%s", name_hint);
    }
    const char *a = in->arch;
    int rc = read_hparams(m, name_hint, err, err_len);
    if (rc != VB_OK) return rc;
    /* vocabulary size: tokenizer, else token_embd rows */
    const vb_gguf_tensor *emb = vb_gguf_find_tensor(g, "token_embd.weight");
    int et;
    uint64_t n_tok = 0;
    const void *d;
    if (vb_gguf_get_arr(g, "tokenizer.ggml.tokens", &et, &n_tok, &d) && n_tok > 0 && n_tok < (1u << 24))
        in->n_vocab = (int32_t)n_tok;
    else if (emb && emb->n_dims == 2 && emb->ne[1] <= INT32_MAX)
        in->n_vocab = (int32_t)emb->ne[1];
    else
        in->n_vocab = arch_i32(g, a, "vocab_size", 0);
    if (in->n_vocab <= 0)
        return fail(err, err_len, VB_ERR_FORMAT,
                    "%s: cannot tell the vocabulary size (no tokenizer.ggml.tokens, no "
                    "token_embd.weight)%s", name_hint, "");
    /* sizes and the dominant weight type */
    int64_t bytes_by_type[VB_TYPE_COUNT] = {0};
    bool has_output = vb_gguf_find_tensor(g, "output.weight") != NULL;
    for (int64_t i = 0; i < vb_gguf_n_tensors(g); i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        in->n_params += t->n_elems;
        bool is_emb = strcmp(t->name, "token_embd.weight") == 0;
        /* per decoded token: every weight once, except an untied embedding (one row) */
        if (!(is_emb && has_output)) in->weight_bytes += (int64_t)t->nbytes;
        if (t->n_dims >= 2 && t->type < VB_TYPE_COUNT) bytes_by_type[t->type] += (int64_t)t->nbytes;
    }
    int best = -1;
    for (int t = 0; t < VB_TYPE_COUNT; t++)
        if (bytes_by_type[t] > 0 && (best < 0 || bytes_by_type[t] > bytes_by_type[best])) best = t;
    snprintf(in->weight_type, sizeof in->weight_type, "%s",
             best >= 0 && vb_type_get((uint32_t)best) ? vb_type_get((uint32_t)best)->name : "none");
    return VB_OK;
}

static void fill_special_tokens(vb_model *m) {
    vb_model_info *in = &m->info;
    int32_t v;
    bool b;
    in->bos = in->eos = in->mask = -1;
    if (m->tok) {
        in->has_tokenizer = true;
        in->bos = vb_tokenizer_bos(m->tok);
        in->eos = vb_tokenizer_eos(m->tok);
        in->mask = vb_tokenizer_mask(m->tok);
        in->add_bos = vb_tokenizer_add_bos(m->tok);
    } else {
        if (vb_gguf_get_i32(m->gguf, "tokenizer.ggml.bos_token_id", &v)) in->bos = v;
        if (vb_gguf_get_i32(m->gguf, "tokenizer.ggml.eos_token_id", &v)) in->eos = v;
        if (vb_gguf_get_i32(m->gguf, "tokenizer.ggml.mask_token_id", &v)) in->mask = v;
        if (vb_gguf_get_bool(m->gguf, "tokenizer.ggml.add_bos_token", &b)) in->add_bos = b;
    }
    if (in->bos < 0 || in->bos >= in->n_vocab) in->bos = -1;
    if (in->eos < 0 || in->eos >= in->n_vocab) in->eos = -1;
    if (in->mask < 0 || in->mask >= in->n_vocab) in->mask = -1;
}

/* Build the tokenizer from g (the model's own file or a --vocab file). A model without
 * tokenizer keys simply has none; a malformed or unsupported tokenizer is an error. */
static int load_tokenizer(vb_model *m, const vb_gguf *g, const char *name, char *err, size_t err_len) {
    char msg[VB_ERR_LEN] = "";
    int st = vb_tokenizer_from_gguf(g, &m->tok, msg, sizeof msg);
    if (st == VB_OK) {
        if (vb_tokenizer_n_vocab(m->tok) != m->info.n_vocab)
            return fail(err, err_len, VB_ERR_FORMAT,
                        "%s: the tokenizer's vocabulary size does not match the model's (%s)",
                        name, "check the --vocab file");
        return VB_OK;
    }
    m->tok = NULL;
    /* a file without tokenizer keys runs on token ids; one whose tokenizer cannot be built is an
       error that says why (an unsupported pre-tokenizer would otherwise tokenize every prompt
       wrongly, or not at all, without a word) */
    if (st == VB_ERR_UNSUPPORTED && vb_gguf_find_key(g, "tokenizer.ggml.model") < 0) return VB_OK;
    return fail(err, err_len, st, "%s: tokenizer: %s", name, msg);
}

static int finish_load(vb_model *m, const vb_model_params *p, const char *name, char *err,
                       size_t err_len) {
    int st = fill_info(m, name, err, err_len);
    if (st == VB_OK) st = load_tokenizer(m, m->gguf, name, err, err_len);
    if (st == VB_OK && p && p->vocab_path) {
        vb_gguf *vg = NULL;
        vb_tokenizer_free(m->tok);
        m->tok = NULL;
        st = vb_gguf_open(p->vocab_path, true, &vg, err, err_len);
        if (st == VB_OK) st = load_tokenizer(m, vg, p->vocab_path, err, err_len);
        if (st == VB_OK && !m->tok)
            st = fail(err, err_len, VB_ERR_FORMAT, "%s: no supported tokenizer in this file%s",
                      p->vocab_path, "");
        vb_gguf_close(vg);
    }
    if (st == VB_OK) fill_special_tokens(m);
    return st;
}

int vb_model_load_from_memory(const void *data, size_t size, const char *name,
                              const vb_model_params *params, vb_model **out, char *err,
                              size_t err_len) {
    if (!out) return VB_ERR_ARG;
    *out = NULL;
    if (!data) return fail(err, err_len, VB_ERR_ARG, "model data is NULL%s%s", "", "");
    vb_model *m = calloc(1, sizeof *m);
    if (!m) return VB_ERR_NOMEM;
    int st = vb_gguf_open_memory(data, size, &m->gguf, err, err_len);
    if (st == VB_OK) st = finish_load(m, params, name ? name : "memory", err, err_len);
    if (st != VB_OK) {
        vb_model_free(m);
        return st;
    }
    *out = m;
    return VB_OK;
}

int vb_model_load(const char *path, const vb_model_params *params, vb_model **out, char *err,
                  size_t err_len) {
    if (!out) return VB_ERR_ARG;
    *out = NULL;
    if (!path) return fail(err, err_len, VB_ERR_ARG, "model path is NULL%s%s", "", "");
    vb_model_params p = params ? *params : vb_model_default_params();
    vb_model *m = calloc(1, sizeof *m);
    if (!m) return VB_ERR_NOMEM;
    /* a format of a backend's own (sim, onnx), else GGUF */
    const vb_backend_ops *owner = vb_backend_for_model_path(path);
    if (owner) {
        int st = owner->model_load(path, &p, m, err, err_len);
        m->owner = owner;
        snprintf(m->path, sizeof m->path, "%s", path);
        if (st != VB_OK) {
            vb_model_free(m);
            return st;
        }
        *out = m;
        return VB_OK;
    }
    size_t path_len = strlen(path);
    if (path_len > 5 && strcmp(path + path_len - 5, ".onnx") == 0) {
        vb_model_free(m);
        return fail(err, err_len, VB_ERR_UNSUPPORTED,
                    "%s: ONNX models need the onnx backend, which this build lacks (run "
                    "scripts/install_onnxruntime.sh and rebuild)%s", path, "");
    }
    snprintf(m->path, sizeof m->path, "%s", path);
    int st = vb_gguf_open(path, p.use_mmap, &m->gguf, err, err_len);
    if (st == VB_OK) {
        const char *base = strrchr(path, '/');
        st = finish_load(m, &p, base ? base + 1 : path, err, err_len);
    }
    if (st != VB_OK) {
        vb_model_free(m);
        return st;
    }
    *out = m;
    return VB_OK;
}

int vb_model_meta_str(const vb_model *m, const char *key, char *buf, size_t buf_len) {
    if (!m || !key || !buf) return VB_ERR_ARG;
    if (!m->gguf) return VB_ERR_ARG;
    int64_t idx = vb_gguf_find_key(m->gguf, key);
    if (idx < 0) return VB_ERR_ARG;
    return vb_gguf_value_to_text(m->gguf, idx, buf, buf_len);
}

/* ---- tokenizer entry points ---- */

int vb_tokenize(const vb_model *m, const char *text, size_t text_len, bool add_special,
                bool parse_special, vb_token *out, int32_t max_tokens) {
    if (!m || (!text && text_len) || max_tokens < 0 || (!out && max_tokens > 0)) return VB_ERR_ARG;
    if (!m->tok) return VB_ERR_UNSUPPORTED;
    return vb_tokenizer_encode(m->tok, text, text_len, add_special, parse_special, out, max_tokens);
}

bool vb_token_is_eog(const vb_model *m, vb_token token) {
    if (!m || token < 0 || token >= m->info.n_vocab) return false;
    if (token == m->info.eos) return true;
    return m->tok && vb_tokenizer_is_eog(m->tok, token);
}

int vb_token_to_bytes(const vb_model *m, vb_token token, char *buf, size_t buf_len) {
    if (!m || (!buf && buf_len)) return VB_ERR_ARG;
    if (token < 0 || token >= m->info.n_vocab) return VB_ERR_ARG;
    if (!m->tok) return VB_ERR_UNSUPPORTED;
    return vb_tokenizer_token_bytes(m->tok, token, buf, buf_len);
}

int vb_detok_push(const vb_model *m, vb_detok *d, vb_token token, char *out, size_t out_len) {
    if (!m || !d || !out || out_len == 0) return VB_ERR_ARG;
    char piece[256];
    int n = vb_token_to_bytes(m, token, piece, sizeof piece);
    if (n < 0) return n;
    if (n > (int)sizeof piece) n = (int)sizeof piece;
    char text[3 * (sizeof piece + 3) + 1]; /* the worst case of vb_utf8_stream_push */
    int w = vb_utf8_stream_push(&d->utf8, piece, (size_t)n, false, text, sizeof text);
    if (w < 0) return w;
    if ((size_t)w >= out_len) { /* cut at a character boundary (out_len >= 784 never cuts) */
        w = (int)out_len - 1;
        while (w > 0 && ((unsigned char)text[w] & 0xC0) == 0x80) w--;
    }
    memcpy(out, text, (size_t)w);
    out[w] = 0;
    return w;
}

int vb_detok_flush(vb_detok *d, char *out, size_t out_len) {
    if (!d || !out || out_len < 16) return VB_ERR_ARG;
    return vb_utf8_stream_push(&d->utf8, NULL, 0, true, out, out_len);
}
