/* cpu_model.c - finds a model's tensors by their llama.cpp names, checks their shapes and
 * types, and builds the per-layer views the CPU forward pass uses (see cpu_model.h). What
 * differs between architectures (norms, biases, fused tensors, RoPE, ...) is read from the
 * traits table of src/arch.h; a fused attn_qkv or gate+up ffn_up is split into views of its row
 * ranges (rows are contiguous in every weight type), so the forward sees separate matrices. */
#include "cpu_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../arch.h"
#include "../../backend.h"
#include "../../types.h"
#include "kernels.h"

static const char *type_name(uint32_t type) {
    const vb_type_traits *t = vb_type_get(type);
    return t && t->name ? t->name : "unknown";
}

static bool tensor_is_2d(const vb_gguf_tensor *t) { return t->ne[2] == 1 && t->ne[3] == 1; }

/* Find a tensor by printf-style name; NULL if absent. name_out receives the
 * name. */
static const vb_gguf_tensor *find_tensor(const vb_model *model, char *name_out, size_t name_len,
                                         const char *fmt, int layer) {
    snprintf(name_out, name_len, fmt, layer);
    return vb_gguf_find_tensor(model->gguf, name_out);
}

/* A matrix view: ne[0] == n_in and ne[1] >= n_out_min (n_out_exact: ==). */
static int load_mat(vb_cpu_mat *out, const vb_model *model, const char *fmt, int layer,
                    int64_t n_in, int64_t n_out, bool n_out_at_least, bool required, char *err) {
    char name[128];
    const vb_gguf_tensor *t = find_tensor(model, name, sizeof name, fmt, layer);
    memset(out, 0, sizeof *out);
    if (!t) {
        if (!required) return VB_OK;
        return vb_errf(err, VB_ERR_FORMAT, "cpu backend: tensor '%s' is missing from the model",
                       name);
    }
    const bool rows_ok = n_out_at_least ? t->ne[1] >= n_out : t->ne[1] == n_out;
    if (!tensor_is_2d(t) || t->ne[0] != n_in || !rows_ok)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected "
                       "[%lld, %s%lld]",
                       name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)n_in, n_out_at_least ? ">=" : "",
                       (long long)n_out);
    const vb_type_traits *tr = vb_type_get(t->type);
    if (!tr || !tr->supported) {
        char list[256] = ""; /* the supported types, from the traits table */
        size_t len = 0;
        for (uint32_t k = 0; k < VB_TYPE_COUNT; k++) {
            const vb_type_traits *s = vb_type_get(k);
            int w = s && s->supported ? snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", s->name) : 0;
            if (w > 0 && (size_t)w < sizeof list - len) len += (size_t)w;
        }
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "cpu backend: tensor '%s' has type %s (GGUF type id %u), which the cpu "
                       "kernels do not support (supported: %s)",
                       name, type_name(t->type), (unsigned)t->type, list);
    }
    out->type = t->type;
    out->data = t->data;
    out->n_in = n_in;
    out->n_out = n_out;
    return VB_OK;
}

static int own_vector(vb_cpu_model *m, float *v) {
    if (m->n_owned == m->cap_owned) {
        const int32_t cap = m->cap_owned ? 2 * m->cap_owned : 64;
        float **p = realloc(m->owned, (size_t)cap * sizeof *p);
        if (!p) return VB_ERR_NOMEM;
        m->owned = p;
        m->cap_owned = cap;
    }
    m->owned[m->n_owned++] = v;
    return VB_OK;
}

/* A 1-D float vector of n elements (F32 used in place; F16/BF16 converted
 * once). */
static int load_vec(const float **out, vb_cpu_model *m, const vb_model *model, const char *fmt,
                    int layer, int64_t n, bool required, char *err) {
    char name[128];
    const vb_gguf_tensor *t = find_tensor(model, name, sizeof name, fmt, layer);
    *out = NULL;
    if (!t) {
        if (!required) return VB_OK;
        return vb_errf(err, VB_ERR_FORMAT, "cpu backend: tensor '%s' is missing from the model",
                       name);
    }
    if (t->ne[0] != n || t->n_elems != n)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: tensor '%s' has shape [%lld, %lld, %lld, %lld], expected "
                       "[%lld]",
                       name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                       (long long)t->ne[3], (long long)n);
    if (t->type == VB_TYPE_F32 && ((uintptr_t)t->data % sizeof(float)) == 0) {
        *out = (const float *)t->data;
        return VB_OK;
    }
    if (t->type != VB_TYPE_F32 && t->type != VB_TYPE_F16 && t->type != VB_TYPE_BF16)
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "cpu backend: vector tensor '%s' has type %s; expected f32, "
                       "f16 or bf16",
                       name, type_name(t->type));
    float *v = malloc((size_t)n * sizeof *v);
    if (!v || own_vector(m, v) != VB_OK) {
        free(v);
        return vb_errf(err, VB_ERR_NOMEM, "cpu backend: out of memory converting '%s'", name);
    }
    const unsigned char *src = t->data;
    for (int64_t i = 0; i < n; i++) {
        if (t->type == VB_TYPE_F32) {
            memcpy(&v[i], src + 4 * i, 4);
        } else {
            uint16_t h;
            memcpy(&h, src + 2 * i, 2);
            v[i] = t->type == VB_TYPE_F16 ? vb_f16_to_f32(h) : vb_bf16_to_f32(h);
        }
    }
    *out = v;
    return VB_OK;
}

/* "<arch>.<suffix>", the GGUF key a hyper-parameter came from (for messages). */
static const char *arch_key(char *buf, size_t len, const vb_model *model, const char *suffix) {
    snprintf(buf, len, "%s.%s", model->info.arch, suffix);
    return buf;
}

/* Rows (ne[1]) of a 2-D tensor, or -1 if absent / not 2-D. */
static int64_t tensor_rows(const vb_model *model, const char *name) {
    const vb_gguf_tensor *t = vb_gguf_find_tensor(model->gguf, name);
    return t && tensor_is_2d(t) ? t->ne[1] : -1;
}

/* Hyper-parameters from the model info (ranges already checked by the model loader, see
 * read_hparams in src/model.c), with fallbacks from tensor shapes and GGUF keys. Every
 * product is computed in 64-bit and checked against the tensors actually present (layer 0
 * here; load_layer checks every layer), so no key can make a buffer smaller than the rows a
 * kernel writes. Errors name the key. */
static int load_hparams(vb_cpu_model *m, const vb_model *model, char *err) {
    const vb_model_info *info = &model->info;
    char k1[96], k2[96], k3[96];
    m->n_vocab = info->n_vocab;
    m->n_embd = info->n_embd;
    m->n_layer = info->n_layer;
    m->n_head = info->n_head;
    m->n_head_kv = info->n_head_kv > 0 ? info->n_head_kv : info->n_head;
    m->n_ctx_train = info->n_ctx_train;
    if (m->n_embd <= 0 || m->n_layer <= 0 || m->n_head <= 0)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: model '%s' lacks %s/%s/%s (%d/%d/%d)", info->name,
                       arch_key(k1, sizeof k1, model, "embedding_length"),
                       arch_key(k2, sizeof k2, model, "block_count"), "attention.head_count",
                       m->n_embd, m->n_layer, m->n_head);
    m->head_dim = info->head_dim > 0 ? info->head_dim : m->n_embd / m->n_head;
    if (m->head_dim <= 0 || m->n_head % m->n_head_kv != 0)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: bad head layout: %s %d, %s %d, head_dim %d",
                       arch_key(k1, sizeof k1, model, "attention.head_count"), m->n_head,
                       arch_key(k2, sizeof k2, model, "attention.head_count_kv"), m->n_head_kv,
                       m->head_dim);
    const int64_t n_q = (int64_t)m->n_head * m->head_dim;
    const int64_t kv_dim = (int64_t)m->n_head_kv * m->head_dim;
    const vb_gguf_tensor *te = vb_gguf_find_tensor(model->gguf, "token_embd.weight");
    if (!te)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: tensor 'token_embd.weight' is missing from the model");
    if (te->ne[0] != m->n_embd)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: %s = %d does not match token_embd.weight (%lld columns)",
                       arch_key(k1, sizeof k1, model, "embedding_length"), m->n_embd,
                       (long long)te->ne[0]);
    /* the query and key/value widths against layer 0's projections (fused: their sum) */
    const vb_arch *a = m->arch;
    const int64_t qkv_rows =
        a->fused_qkv != VB_ARCH_NO ? tensor_rows(model, "blk.0.attn_qkv.weight") : -1;
    const bool fused = qkv_rows >= 0 || a->fused_qkv == VB_ARCH_REQUIRED;
    const int64_t q_rows = fused ? -1 : tensor_rows(model, "blk.0.attn_q.weight");
    const int64_t k_rows = fused ? -1 : tensor_rows(model, "blk.0.attn_k.weight");
    if ((q_rows >= 0 && n_q != q_rows) || (k_rows >= 0 && kv_dim != k_rows) ||
        (qkv_rows >= 0 && n_q + 2 * kv_dim != qkv_rows))
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: %s %d (%s %d) x %s %d = %lld query (%lld key/value) "
                       "rows, but the blk.0 projections have %lld (%lld)%s",
                       arch_key(k1, sizeof k1, model, "attention.head_count"), m->n_head,
                       arch_key(k3, sizeof k3, model, "attention.head_count_kv"), m->n_head_kv,
                       arch_key(k2, sizeof k2, model, "attention.key_length"), m->head_dim,
                       (long long)n_q, (long long)kv_dim, (long long)(fused ? qkv_rows : q_rows),
                       (long long)k_rows, fused ? " (fused attn_qkv: query + 2 key/value)" : "");
    if (n_q > INT32_MAX || kv_dim > INT32_MAX) /* only a fused layout can get here unchecked */
        return vb_errf(err, VB_ERR_FORMAT, "cpu backend: %s is too large",
                       arch_key(k1, sizeof k1, model, "attention.head_count"));
    m->n_q = (int32_t)n_q;
    m->kv_dim = (int32_t)kv_dim;

    /* n_vocab: rows of token_embd when the info does not say. */
    if (m->n_vocab <= 0) {
        if (te->ne[1] > INT32_MAX)
            return vb_errf(err, VB_ERR_FORMAT, "cpu backend: token_embd.weight has too many rows");
        m->n_vocab = (int32_t)te->ne[1];
    }
    /* n_ff: from the up projection when the info does not say (a fused gate+up has 2 n_ff rows). */
    m->n_ff = info->n_ff;
    const int64_t up_rows = tensor_rows(model, "blk.0.ffn_up.weight");
    const int64_t up_parts = a->fused_gate_up ? 2 : 1;
    if (up_rows < 0)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: tensor 'blk.0.ffn_up.weight' is missing or not 2-D");
    if (m->n_ff <= 0) m->n_ff = up_rows / up_parts <= INT32_MAX ? (int32_t)(up_rows / up_parts) : 0;
    if ((int64_t)m->n_ff * up_parts != up_rows)
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: %s = %d does not match blk.0.ffn_up.weight (%lld rows%s)",
                       arch_key(k1, sizeof k1, model, "feed_forward_length"), m->n_ff,
                       (long long)up_rows, up_parts == 2 ? ": gate and up, n_ff each" : "");

    int32_t n_rot = 0;
    arch_key(k1, sizeof k1, model, "rope.dimension_count");
    m->n_rot = vb_gguf_get_i32(model->gguf, k1, &n_rot) && n_rot > 0 ? n_rot : m->head_dim;
    m->use_rope = a->rope != VB_ARCH_ROPE_NONE;
    m->rope_kind = a->rope == VB_ARCH_ROPE_NORM ? VB_ROPE_NORM : VB_ROPE_NEOX;
    if (m->use_rope && (m->n_rot > m->head_dim || m->n_rot % 2 != 0 || m->n_rot > 1024))
        return vb_errf(err, VB_ERR_FORMAT,
                       "cpu backend: %s = %d invalid for head_dim %d (even, at most head_dim "
                       "and 1024)",
                       k1, m->n_rot, m->head_dim);
    m->rope_theta = model->rope_theta > 0 ? model->rope_theta : 10000.0f;
    m->norm_eps = model->norm_eps > 0 ? model->norm_eps : 1e-5f;
    /* LongRoPE (a->rope_factors): the context the short factors cover, and the attention factor
       llama.cpp multiplies into both cos and sin (so into q.k twice) */
    int32_t n_orig = 0;
    arch_key(k2, sizeof k2, model, "rope.scaling.original_context_length");
    m->n_ctx_orig = vb_gguf_get_i32(model->gguf, k2, &n_orig) && n_orig > 0 ? n_orig : m->n_ctx_train;
    m->attn_scale = 1.0f / sqrtf((float)m->head_dim);
    float af = 1.0f;
    arch_key(k2, sizeof k2, model, "rope.scaling.attn_factor");
    if (a->rope_factors && vb_gguf_get_f32(model->gguf, k2, &af) && af != 1.0f) {
        if (!isfinite(af) || af <= 0.0f || af > 16.0f)
            return vb_errf(err, VB_ERR_FORMAT, "cpu backend: %s = %g is not in (0, 16]", k2,
                           (double)af);
        if (m->n_rot != m->head_dim) /* llama.cpp scales only the rotated dims */
            return vb_errf(err, VB_ERR_UNSUPPORTED,
                           "cpu backend: %s with partial rotary dims (%d of %d) is not supported",
                           k2, m->n_rot, m->head_dim);
        m->attn_scale *= af * af;
    }
    /* gemma3: sliding-window layers, embedding scale, logit softcap, query scale */
    m->embd_scale = a->embd_scale ? sqrtf((float)m->n_embd) : 1.0f;
    m->rope_theta_swa = 10000.0f;
    int32_t n_swa = 0;
    arch_key(k2, sizeof k2, model, "attention.sliding_window");
    if (a->swa_pattern > 0 && vb_gguf_get_i32(model->gguf, k2, &n_swa) && n_swa > 0) m->n_swa = n_swa;
    float cap = 0.0f;
    arch_key(k2, sizeof k2, model, "final_logit_softcapping");
    if (a->logit_softcap && m->n_swa == 0 && vb_gguf_get_f32(model->gguf, k2, &cap) && cap > 0.0f) {
        if (!isfinite(cap))
            return vb_errf(err, VB_ERR_FORMAT, "cpu backend: %s is not finite", k2);
        m->logit_softcap = cap;
    }
    if (a->swa_pattern > 0 && m->n_layer == 62) /* Gemma 3 27B: query_pre_attn_scalar = n_embd / n_head */
        m->attn_scale = 1.0f / sqrtf((float)(m->n_embd / m->n_head));
    if (a->pos_embd && m->n_ctx_train <= 0) {
        const int64_t pe_rows = tensor_rows(model, "position_embd.weight");
        if (pe_rows > 0 && pe_rows <= INT32_MAX) m->n_ctx_train = (int32_t)pe_rows;
    }
    return VB_OK;
}

/* A view of rows [row0, row0 + n_out) of a loaded matrix (a part of a fused tensor). */
static vb_cpu_mat mat_rows(const vb_cpu_mat *w, int64_t row0, int64_t n_out) {
    vb_cpu_mat v = *w;
    v.data = (const uint8_t *)w->data + (size_t)row0 * vb_type_row_bytes(w->type, w->n_in);
    v.n_out = n_out;
    return v;
}

static int load_layer(vb_cpu_model *m, const vb_model *model, int il, char *err) {
    vb_cpu_layer *L = &m->layers[il];
    const vb_arch *a = m->arch;
    const int64_t E = m->n_embd, Q = m->n_q, KV = m->kv_dim, F = m->n_ff;
    const bool nb = a->norm_bias;
    int rc;
#define TRY(call)                                                                                  \
    do {                                                                                           \
        if ((rc = (call)) != VB_OK) return rc;                                                     \
    } while (0)
    TRY(load_vec(&L->attn_norm, m, model, "blk.%d.attn_norm.weight", il, E, true, err));
    TRY(load_vec(&L->ffn_norm, m, model, "blk.%d.ffn_norm.weight", il, E, true, err));
    if (nb) {
        TRY(load_vec(&L->attn_norm_b, m, model, "blk.%d.attn_norm.bias", il, E, true, err));
        TRY(load_vec(&L->ffn_norm_b, m, model, "blk.%d.ffn_norm.bias", il, E, true, err));
    }
    TRY(load_mat(&L->wo, model, "blk.%d.attn_output.weight", il, Q, E, false, true, err));
    if (a->out_bias != VB_ARCH_NO)
        TRY(load_vec(&L->bo, m, model, "blk.%d.attn_output.bias", il, E,
                     a->out_bias == VB_ARCH_REQUIRED, err));

    if (a->post_norms) {
        TRY(load_vec(&L->attn_post_norm, m, model, "blk.%d.post_attention_norm.weight", il, E, true,
                     err));
        TRY(load_vec(&L->ffn_post_norm, m, model, "blk.%d.post_ffw_norm.weight", il, E, true, err));
    }
    L->swa = m->n_swa > 0 && (il + 1) % a->swa_pattern != 0;

    /* Q, K, V: one fused attn_qkv [Q; K; V] (split into views) or three matrices */
    const bool bias_req = a->qkv_bias == VB_ARCH_REQUIRED;
    char name[64];
    snprintf(name, sizeof name, "blk.%d.attn_qkv.weight", il);
    if (a->fused_qkv == VB_ARCH_REQUIRED ||
        (a->fused_qkv == VB_ARCH_OPTIONAL && vb_gguf_find_tensor(model->gguf, name))) {
        vb_cpu_mat qkv;
        const float *b = NULL;
        TRY(load_mat(&qkv, model, "blk.%d.attn_qkv.weight", il, E, Q + 2 * KV, false, true, err));
        if (a->qkv_bias != VB_ARCH_NO)
            TRY(load_vec(&b, m, model, "blk.%d.attn_qkv.bias", il, Q + 2 * KV, bias_req, err));
        L->wq = mat_rows(&qkv, 0, Q);
        L->wk = mat_rows(&qkv, Q, KV);
        L->wv = mat_rows(&qkv, Q + KV, KV);
        if (b) L->bq = b, L->bk = b + Q, L->bv = b + Q + KV;
    } else {
        TRY(load_mat(&L->wq, model, "blk.%d.attn_q.weight", il, E, Q, false, true, err));
        TRY(load_mat(&L->wk, model, "blk.%d.attn_k.weight", il, E, KV, false, true, err));
        TRY(load_mat(&L->wv, model, "blk.%d.attn_v.weight", il, E, KV, false, true, err));
        if (a->qkv_bias != VB_ARCH_NO) {
            TRY(load_vec(&L->bq, m, model, "blk.%d.attn_q.bias", il, Q, bias_req, err));
            TRY(load_vec(&L->bk, m, model, "blk.%d.attn_k.bias", il, KV, bias_req, err));
            TRY(load_vec(&L->bv, m, model, "blk.%d.attn_v.bias", il, KV, bias_req, err));
        }
    }
    if (a->qk_norm) {
        TRY(load_vec(&L->q_norm, m, model, "blk.%d.attn_q_norm.weight", il, m->head_dim, true,
                     err));
        TRY(load_vec(&L->k_norm, m, model, "blk.%d.attn_k_norm.weight", il, m->head_dim, true,
                     err));
    }

    /* feed-forward: up (GELU MLP), gate + up, or one ffn_up holding [gate; up] */
    if (a->fused_gate_up) {
        vb_cpu_mat gu;
        TRY(load_mat(&gu, model, "blk.%d.ffn_up.weight", il, E, 2 * F, false, true, err));
        L->ffn_gate = mat_rows(&gu, 0, F);
        L->ffn_up = mat_rows(&gu, F, F);
    } else {
        TRY(load_mat(&L->ffn_up, model, "blk.%d.ffn_up.weight", il, E, F, false, true, err));
        if (a->ffn != VB_ARCH_FFN_GELU)
            TRY(load_mat(&L->ffn_gate, model, "blk.%d.ffn_gate.weight", il, E, F, false, true,
                         err));
    }
    TRY(load_mat(&L->ffn_down, model, "blk.%d.ffn_down.weight", il, F, E, false, true, err));
    if (a->ffn_bias) {
        TRY(load_vec(&L->ffn_up_b, m, model, "blk.%d.ffn_up.bias", il, F, true, err));
        TRY(load_vec(&L->ffn_down_b, m, model, "blk.%d.ffn_down.bias", il, E, true, err));
    }
    return VB_OK;
#undef TRY
}

/* Float weights are repacked (kernels.h vb_pack_weights) when their packed copies total at
 * most VB_PACK_MAX_BYTES, or always / never with VB_CPU_PACKED=1 / 0 in the environment (for
 * benchmarks). Measured on the 2-core Zen 5 VM (AVX-512), 1 thread, against the unpacked
 * path: prompt processing and K-row forwards ~2.1-2.5x faster on every F16 model tried (the
 * shipped 11 MiB model, GPT-2 124M, Qwen3 0.6B), 1-row decode faster on the shipped model
 * (cache-resident) and on par, within the noise, on the two memory-bound ones. The packed
 * copy replaces the mapped pages of its matrix (they are released after packing; a tied
 * output keeps token_embd mapped for the embedding lookup, but only the looked-up rows stay
 * resident), so the cost is load time: about 1 s per GiB of copies here (F16 Qwen3 0.6B:
 * 1.1 s against 0.15 s, for a prefill 2.2x as fast). Hence the limit: models up to about a
 * billion F16 parameters are packed by default; larger ones keep the mapping unless asked. */
#define VB_PACK_MAX_BYTES ((int64_t)2 << 30)
/* Q8_0 matrices are packed (the VNNI layout of kernels.h; AVX-512 VNNI only) when their
 * packed copies total at most this, i.e. for models that stay in the caches. Measured on the
 * same VM, 1 thread: the shipped model in Q8_0 (6 MiB) decodes 2.1x as fast as unpacked
 * (0.15 against 0.32 ms per 1-row forward) and forwards 8 rows 1.8x as fast; on GPT-2 124M
 * and Qwen3 0.6B Q8_0 prefill was ~1.5x as fast but 1-row decode 7-17% slower (memory-bound,
 * and the packed tile's block streams were not tuned for DRAM; noisy machine), so larger
 * Q8_0 models keep the per-row and lane kernels. */
#define VB_PACK_Q8_MAX_BYTES ((int64_t)64 << 20)

/* Packed matrices are carved from one anonymous mapping of ordinary pages. Huge pages
 * (MADV_HUGEPAGE) made the load of F16 Qwen3 0.6B anywhere from 0.6 to 3.5 s on the shared VM
 * (direct compaction under memory pressure, THP defrag = madvise); 4 KiB pages take a steady
 * 1.1-1.2 s, the tiled packing loop included; MAP_POPULATE gained nothing and raised the peak
 * RSS by the whole copy. */
#define VB_PACK_ALIGN 64

static int64_t packed_size(const vb_cpu_mat *w) {
    return ((int64_t)vb_packed_bytes(w->type, w->n_in, w->n_out) + VB_PACK_ALIGN - 1) / VB_PACK_ALIGN *
           VB_PACK_ALIGN;
}

static int count_packed(vb_cpu_model *m, vb_cpu_mat *w, char *err) {
    (void)err;
    m->packed_bytes += packed_size(w);
    return VB_OK;
}

/* Whether w gets a packed copy (pack_weights sets m->pack_q8_0 first). */
static bool mat_packs(const vb_cpu_model *m, const vb_cpu_mat *w) {
    return w->data && vb_packed_pays(w->type) && (w->type != VB_TYPE_Q8_0 || m->pack_q8_0);
}

static int pack_mat(vb_cpu_model *m, vb_cpu_mat *w, char *err) {
    uint8_t *p = (uint8_t *)m->packed_base + m->packed_bytes;
    int rc = vb_pack_weights(w->type, w->data, w->n_in, w->n_out, p);
    if (rc != VB_OK)
        return vb_errf(err, rc, "cpu backend: cannot pack a %lld x %lld matrix", (long long)w->n_out,
                       (long long)w->n_in);
    w->packed = p;
    m->packed_bytes += packed_size(w);
    /* the products read the copy from now on: the mapped pages it was made from leave memory
       (a tied output's embedding lookup faults back only the rows it reads), so the copy
       replaces the mapping rather than doubling the weights' memory */
    m->released_bytes += (int64_t)vb_gguf_release_pages(m->gguf, w->data, (size_t)vb_type_row_bytes(w->type, w->n_in) * (size_t)w->n_out);
    return VB_OK;
}

/* The matrices of the forward products that get packed copies (mat_packs; token_embd only as
 * the tied output: the embedding lookup keeps the mapped layout). Calls fn on each; stops at
 * the first error. */
static int for_each_packed_mat(vb_cpu_model *m, int (*fn)(vb_cpu_model *, vb_cpu_mat *, char *),
                              char *err) {
    int rc = VB_OK;
    for (int32_t il = -1; il < m->n_layer && rc == VB_OK; il++) {
        vb_cpu_mat *mats[7] = {&m->output};
        size_t n = 1;
        if (il >= 0) {
            vb_cpu_layer *L = &m->layers[il];
            vb_cpu_mat *lm[7] = {&L->wq, &L->wk, &L->wv, &L->wo, &L->ffn_gate, &L->ffn_up, &L->ffn_down};
            memcpy(mats, lm, sizeof lm);
            n = 7;
        }
        for (size_t k = 0; k < n && rc == VB_OK; k++)
            if (mat_packs(m, mats[k])) rc = fn(m, mats[k], err);
    }
    return rc;
}

static int pack_weights(vb_cpu_model *m, char *err) {
    const char *env = getenv("VB_CPU_PACKED");
    int mode = env && *env ? atoi(env) : -1; /* -1: by size */
    if (mode == 0) return VB_OK;
    m->pack_q8_0 = true; /* count every packable matrix, then all but the Q8_0 ones */
    m->packed_bytes = 0;
    for_each_packed_mat(m, count_packed, err);
    const int64_t all_bytes = m->packed_bytes;
    m->pack_q8_0 = false;
    m->packed_bytes = 0;
    for_each_packed_mat(m, count_packed, err);
    m->pack_q8_0 = mode > 0 || all_bytes - m->packed_bytes <= VB_PACK_Q8_MAX_BYTES;
    int64_t total = m->pack_q8_0 ? all_bytes : m->packed_bytes;
    m->packed_bytes = 0;
    if (total == 0 || (mode < 0 && total > VB_PACK_MAX_BYTES)) return VB_OK;
    void *base = mmap(NULL, (size_t)total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED)
        return vb_errf(err, VB_ERR_NOMEM, "cpu backend: out of memory for the packed weights (%lld MiB)",
                       (long long)(total >> 20));
    m->packed_base = base;
    m->packed_map_bytes = total;
    return for_each_packed_mat(m, pack_mat, err);
}

void vb_cpu_model_set_ctx(vb_cpu_model *m, int32_t n_ctx) {
    if (m->rope_long) m->rope_freqs = n_ctx > m->n_ctx_orig ? m->rope_long : m->rope_short;
}

int vb_cpu_model_init(vb_cpu_model *m, const vb_model *model, char *err) {
    memset(m, 0, sizeof *m);
    if (!model || model->owner || !model->gguf)
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "cpu backend: needs a GGUF model (use backend 'sim' for the "
                       "sim model)");
    m->arch = vb_arch_find(model->info.arch);
    if (!m->arch) {
        char list[256];
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "cpu backend: architecture '%s' (general.architecture) is not supported "
                       "(supported: %s)",
                       model->info.arch, vb_arch_list(list, sizeof list));
    }
    const vb_arch *a = m->arch;
    int rc = load_hparams(m, model, err);
    if (rc != VB_OK) goto fail;

    const int64_t E = m->n_embd, V = m->n_vocab;
    rc = load_mat(&m->tok_embd, model, "token_embd.weight", 0, E, V, true, true, err);
    if (rc != VB_OK) goto fail;
    rc = load_vec(&m->output_norm, m, model, "output_norm.weight", 0, E, true, err);
    if (rc != VB_OK) goto fail;
    rc = load_mat(&m->output, model, "output.weight", 0, E, V, true, false, err);
    if (rc != VB_OK) goto fail;
    if (!m->output.data) m->output = m->tok_embd; /* tied embeddings */
    rc = load_vec(&m->output_b, m, model, "output.bias", 0, V, false, err);
    if (rc != VB_OK) goto fail;
    if (a->norm_bias) {
        rc = load_vec(&m->output_norm_b, m, model, "output_norm.bias", 0, E, true, err);
        if (rc != VB_OK) goto fail;
    }
    if (a->pos_embd) {
        if (m->n_ctx_train <= 0) {
            rc = vb_errf(err, VB_ERR_FORMAT, "cpu backend: %s model has no context length",
                         a->name);
            goto fail;
        }
        rc = load_mat(&m->pos_embd, model, "position_embd.weight", 0, E, m->n_ctx_train, true, true,
                      err);
        if (rc != VB_OK) goto fail;
    }
    if (a->rope_freqs) {
        rc = load_vec(&m->rope_freqs, m, model, "rope_freqs.weight", 0, m->n_rot / 2, false, err);
        if (rc != VB_OK) goto fail;
    }
    if (a->rope_factors) { /* LongRoPE: llama.cpp reads layer 0's (the others duplicate it) */
        rc = load_vec(&m->rope_long, m, model, "rope_factors_long.weight", 0, m->n_rot / 2, false,
                      err);
        if (rc == VB_OK)
            rc = load_vec(&m->rope_short, m, model, "rope_factors_short.weight", 0, m->n_rot / 2,
                          false, err);
        if (rc != VB_OK) goto fail;
        if (!m->rope_long != !m->rope_short) {
            rc = vb_errf(err, VB_ERR_FORMAT, "cpu backend: the model has only one of "
                                             "rope_factors_long.weight and rope_factors_short.weight");
            goto fail;
        }
        m->rope_freqs = m->rope_short;
    }
    if (a->swa_pattern > 0) { /* gemma3's global layers: linear rope.scaling.factor */
        char key[96];
        const char *type = NULL;
        uint64_t type_len = 0;
        float factor = 1.0f;
        arch_key(key, sizeof key, model, "rope.scaling.type");
        const bool linear = vb_gguf_get_str(model->gguf, key, &type, &type_len) &&
                            type_len == 6 && memcmp(type, "linear", 6) == 0;
        arch_key(key, sizeof key, model, "rope.scaling.factor");
        if (linear && vb_gguf_get_f32(model->gguf, key, &factor) && factor != 1.0f) {
            if (!isfinite(factor) || factor <= 0.0f) {
                rc = vb_errf(err, VB_ERR_FORMAT, "cpu backend: %s = %g is invalid", key, (double)factor);
                goto fail;
            }
            float *ff = malloc((size_t)(m->n_rot / 2 > 0 ? m->n_rot / 2 : 1) * sizeof *ff);
            if (!ff || own_vector(m, ff) != VB_OK) {
                free(ff);
                rc = vb_errf(err, VB_ERR_NOMEM, "cpu backend: out of memory");
                goto fail;
            }
            for (int32_t i = 0; i < m->n_rot / 2; i++) ff[i] = factor; /* angle / factor */
            m->rope_freqs = ff;
        }
    }
    m->layers = calloc((size_t)m->n_layer, sizeof *m->layers);
    if (!m->layers) {
        rc = vb_errf(err, VB_ERR_NOMEM, "cpu backend: out of memory");
        goto fail;
    }
    for (int il = 0; il < m->n_layer; il++) {
        rc = load_layer(m, model, il, err);
        if (rc != VB_OK) goto fail;
    }
    m->gguf = model->gguf;
    rc = pack_weights(m, err);
    if (rc != VB_OK) goto fail;
    return VB_OK;
fail:
    vb_cpu_model_free(m);
    return rc;
}

void vb_cpu_model_free(vb_cpu_model *m) {
    if (!m) return;
    for (int32_t i = 0; i < m->n_owned; i++) free(m->owned[i]);
    if (m->packed_base) munmap(m->packed_base, (size_t)m->packed_map_bytes);
    free(m->owned);
    free(m->layers);
    memset(m, 0, sizeof *m);
}
