/* quantize.c - llama.cpp's quantization presets and per-tensor rules (llama-quant.cpp's
 * tensor selection, llama_tensor_get_type and its fallbacks, restated for the presets vibee
 * writes; no importance matrix, so none of its imatrix-only branches), and the file rewrite.
 * The quantizers themselves are the cpu backend's (vb_quantize_row: ggml's algorithms). */
#include "quantize.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../include/vibee.h"
#include "backends/cpu/kernels.h"
#include "types.h"

/* llama.cpp's LLAMA_FTYPE_MOSTLY_* numbers of the presets below. */
enum {
    FT_F32 = 0, FT_F16 = 1, FT_Q4_0 = 2, FT_Q4_1 = 3, FT_Q8_0 = 7, FT_Q5_0 = 8, FT_Q5_1 = 9,
    FT_Q2_K = 10, FT_Q3_K_S = 11, FT_Q3_K_M = 12, FT_Q3_K_L = 13, FT_Q4_K_S = 14, FT_Q4_K_M = 15,
    FT_Q5_K_S = 16, FT_Q5_K_M = 17, FT_Q6_K = 18, FT_IQ4_NL = 25, FT_IQ4_XS = 30, FT_BF16 = 32,
};

static const vb_quant_preset presets[] = {
    {"q4_0", FT_Q4_0, VB_TYPE_Q4_0},       {"q4_1", FT_Q4_1, VB_TYPE_Q4_1},
    {"q5_0", FT_Q5_0, VB_TYPE_Q5_0},       {"q5_1", FT_Q5_1, VB_TYPE_Q5_1},
    {"q8_0", FT_Q8_0, VB_TYPE_Q8_0},       {"q2_k", FT_Q2_K, VB_TYPE_Q2_K},
    {"q3_k_s", FT_Q3_K_S, VB_TYPE_Q3_K},   {"q3_k_m", FT_Q3_K_M, VB_TYPE_Q3_K},
    {"q3_k_l", FT_Q3_K_L, VB_TYPE_Q3_K},   {"q4_k_s", FT_Q4_K_S, VB_TYPE_Q4_K},
    {"q4_k_m", FT_Q4_K_M, VB_TYPE_Q4_K},   {"q5_k_s", FT_Q5_K_S, VB_TYPE_Q5_K},
    {"q5_k_m", FT_Q5_K_M, VB_TYPE_Q5_K},   {"q6_k", FT_Q6_K, VB_TYPE_Q6_K},
    {"iq4_nl", FT_IQ4_NL, VB_TYPE_IQ4_NL}, {"iq4_xs", FT_IQ4_XS, VB_TYPE_IQ4_XS},
    {"f16", FT_F16, VB_TYPE_F16},
    {"bf16", FT_BF16, VB_TYPE_BF16},       {"f32", FT_F32, VB_TYPE_F32},
};
/* llama-quantize's aliases: the bare K types mean their _M preset. */
static const struct { const char *alias, *name; } aliases[] = {
    {"q3_k", "q3_k_m"}, {"q4_k", "q4_k_m"}, {"q5_k", "q5_k_m"}};

const vb_quant_preset *vb_quant_preset_find(const char *name) {
    if (!name) return NULL;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
        if (!strcasecmp(name, aliases[i].alias)) name = aliases[i].name;
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcasecmp(name, presets[i].name)) return &presets[i];
    return NULL;
}

const char *vb_quant_preset_names(void) {
    return "q4_0, q4_1, q5_0, q5_1, q8_0, q2_k, q3_k_s, q3_k_m (q3_k), q3_k_l, q4_k_s, q4_k_m (q4_k), "
           "q5_k_s, q5_k_m (q5_k), q6_k, iq4_nl, iq4_xs, f16, bf16, f32";
}

/* ------------------------------------------------------------------ the rules */

typedef struct plan_state {
    uint32_t ftype;
    bool falcon;
    int n_layer, n_gqa, n_expert;
    bool has_output;
    int n_attention_wv, i_attention_wv, i_ffn_down;
} plan_state;

static bool has(const char *s, const char *sub) { return strstr(s, sub) != NULL; }

/* llama.cpp's use_more_bits: the first and last eighth of the layers and every third between. */
static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

/* Should this tensor be quantized at all (llama.cpp's selection): 2-D+ weights, not norms,
 * not MoE routers, not position / token-type embeddings, not the small 2-D state-space ones. */
static bool quantizable(const vb_gguf_tensor *t) {
    size_t len = strlen(t->name);
    if (len < 6 || strcmp(t->name + len - 6, "weight") != 0 || t->n_dims < 2) return false;
    static const char *const never[] = {"_norm.weight", "ffn_gate_inp.weight", "ssm_conv1d.weight",
                                        "ssm_x.weight", "ssm_dt.weight", "attn_rel_b.weight"};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++)
        if (has(t->name, never[i])) return false;
    return strcmp(t->name, "position_embd.weight") != 0 && strcmp(t->name, "token_types.weight") != 0;
}

/* llama_tensor_get_type for a quantized preset: the type of t before the fallback. */
static uint32_t rule_type(plan_state *s, const vb_gguf_tensor *t, uint32_t type) {
    const char *name = t->name;
    const uint32_t ft = s->ftype;
    if (!strcmp(name, "output.weight") || (!s->has_output && !strcmp(name, "token_embd.weight"))) {
        if (s->falcon || t->ne[0] % vb_type_get(type)->block_elems != 0) return VB_TYPE_Q8_0;
        return type != VB_TYPE_Q8_0 ? VB_TYPE_Q6_K : type;
    }
    if (!strcmp(name, "token_embd.weight")) return type;
    if (has(name, "attn_v.weight")) {
        const int i = s->i_attention_wv++;
        if (ft == FT_Q2_K) type = s->n_gqa >= 4 ? VB_TYPE_Q4_K : VB_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M) type = i < 2 ? VB_TYPE_Q5_K : VB_TYPE_Q4_K;
        else if (ft == FT_Q3_K_L) type = VB_TYPE_Q5_K;
        else if ((ft == FT_IQ4_NL || ft == FT_IQ4_XS) && s->n_gqa >= 4) type = VB_TYPE_Q5_K;
        else if ((ft == FT_Q4_K_M || ft == FT_Q5_K_M) && use_more_bits(i, s->n_attention_wv)) type = VB_TYPE_Q6_K;
        else if (ft == FT_Q4_K_S && i < 4) type = VB_TYPE_Q5_K;
        if (s->n_expert == 8) type = VB_TYPE_Q8_0;
        return type;
    }
    if (has(name, "attn_k.weight")) return s->n_expert == 8 ? VB_TYPE_Q8_0 : type;
    if (has(name, "ffn_down")) {
        int i = s->i_ffn_down++, n = s->n_layer;
        if (s->n_expert > 1 && sscanf(name, "blk.%d.", &i) != 1) i = 0;
        if (ft == FT_Q2_K) type = VB_TYPE_Q3_K;
        else if (ft == FT_Q3_K_M)
            type = i < n / 16 ? VB_TYPE_Q5_K : !s->falcon || use_more_bits(i, n) ? VB_TYPE_Q4_K : VB_TYPE_Q3_K;
        else if (ft == FT_Q3_K_L) type = s->falcon ? VB_TYPE_Q4_K : VB_TYPE_Q5_K;
        else if (ft == FT_Q4_K_M) {
            if (s->falcon) type = i < n / 16 ? VB_TYPE_Q6_K : use_more_bits(i, n) ? VB_TYPE_Q5_K : VB_TYPE_Q4_K;
            else if (use_more_bits(i, n)) type = VB_TYPE_Q6_K;
        } else if (i < n / 8 && (ft == FT_IQ4_NL || ft == FT_IQ4_XS)) type = VB_TYPE_Q5_K;
        else if (ft == FT_Q5_K_M && use_more_bits(i, n)) type = VB_TYPE_Q6_K;
        else if (ft == FT_Q4_K_S && !s->falcon && i < n / 8) type = VB_TYPE_Q5_K;
        return type;
    }
    if (has(name, "attn_output.weight")) {
        if (s->falcon) return ft == FT_Q3_K_L ? VB_TYPE_Q4_K : type;
        if (s->n_expert == 8)
            return ft == FT_Q2_K || ft == FT_Q3_K_S || ft == FT_Q3_K_M || ft == FT_IQ4_NL || ft == FT_Q4_K_S ||
                           ft == FT_Q4_K_M || ft == FT_IQ4_XS
                       ? VB_TYPE_Q5_K
                       : type;
        return ft == FT_Q2_K ? VB_TYPE_Q3_K : ft == FT_Q3_K_M ? VB_TYPE_Q4_K : ft == FT_Q3_K_L ? VB_TYPE_Q5_K : type;
    }
    if (has(name, "attn_qkv.weight")) {
        if (ft == FT_Q3_K_M || ft == FT_Q3_K_L) return VB_TYPE_Q4_K;
        if (ft == FT_Q4_K_M) return VB_TYPE_Q5_K;
        if (ft == FT_Q5_K_M) return VB_TYPE_Q6_K;
    }
    return type;
}

/* llama.cpp's fallback for rows that are not a multiple of the type's block (then F16 if the
 * fallback does not fit either; llama.cpp stops with an error where a 32-element type does not
 * fit: vibee writes F16 there). */
static uint32_t fallback_type(const vb_gguf_tensor *t, uint32_t type) {
    if (t->ne[0] % vb_type_get(type)->block_elems == 0) return type;
    switch (type) {
    case VB_TYPE_Q2_K: case VB_TYPE_Q3_K: case VB_TYPE_IQ4_XS: type = VB_TYPE_IQ4_NL; break;
    case VB_TYPE_Q4_K: type = VB_TYPE_Q5_0; break;
    case VB_TYPE_Q5_K: type = VB_TYPE_Q5_1; break;
    case VB_TYPE_Q6_K: type = VB_TYPE_Q8_0; break;
    default: type = VB_TYPE_F16; break;
    }
    return t->ne[0] % vb_type_get(type)->block_elems == 0 ? type : VB_TYPE_F16;
}

static int get_hparam(const vb_gguf *g, const char *arch, const char *suffix, int def) {
    char key[160];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    int32_t v;
    return vb_gguf_get_i32(g, key, &v) ? v : def;
}

int vb_quant_plan(const vb_gguf *g, const vb_quant_preset *p, uint32_t *types, char *err, size_t err_len) {
    plan_state s = {.ftype = p->ftype};
    char arch[64] = "";
    const char *a;
    uint64_t alen;
    if (vb_gguf_get_str(g, "general.architecture", &a, &alen) && alen < sizeof arch) {
        memcpy(arch, a, (size_t)alen);
        arch[alen] = '\0';
    }
    s.falcon = !strcmp(arch, "falcon");
    s.n_layer = get_hparam(g, arch, "block_count", 0);
    int n_head = get_hparam(g, arch, "attention.head_count", 1);
    int n_head_kv = get_hparam(g, arch, "attention.head_count_kv", n_head);
    s.n_gqa = n_head_kv > 0 ? n_head / n_head_kv : 1;
    s.n_expert = get_hparam(g, arch, "expert_count", 0);
    int64_t nt = vb_gguf_n_tensors(g);
    for (int64_t i = 0; i < nt; i++) {
        const char *name = vb_gguf_tensor_at(g, i)->name;
        if (has(name, "attn_v.weight") || has(name, "attn_qkv.weight") || has(name, "attn_kv_b.weight"))
            s.n_attention_wv++;
        else if (!strcmp(name, "output.weight")) s.has_output = true;
    }
    const vb_type_traits *dt = vb_type_get(p->default_type);
    bool quantized = dt->block_elems > 1;
    for (int64_t i = 0; i < nt; i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        types[i] = t->type;
        if (!quantizable(t)) continue;
        uint32_t type = p->default_type;
        if (quantized) type = fallback_type(t, rule_type(&s, t, type));
        else if (t->ne[0] % dt->block_elems != 0) continue;
        types[i] = type;
    }
    (void)err, (void)err_len;
    return VB_OK;
}

/* ------------------------------------------------------------------ the rewrite */

static bool is_quantized(uint32_t type) {
    const vb_type_traits *t = vb_type_get(type);
    return t && t->block_elems > 1;
}

int vb_quantize_file(const char *in, const char *out, const vb_quant_preset *p, bool allow_requantize,
                     void (*progress)(int64_t done, int64_t total, void *user), void *user, char *err,
                     size_t err_len) {
    if (!in || !out || !p) {
        snprintf(err, err_len, "quantize: missing input, output or preset");
        return VB_ERR_ARG;
    }
    vb_gguf *g = NULL;
    int rc = vb_gguf_open(in, true, &g, err, err_len);
    if (rc != VB_OK) return rc;
    int64_t nt = vb_gguf_n_tensors(g);
    uint32_t *types = calloc((size_t)nt + 1, sizeof *types);
    void **bufs = calloc((size_t)nt + 1, sizeof *bufs);
    vb_gguf_writer *w = vb_gguf_writer_init();
    const char *skip[] = {"general.file_type", "general.quantization_version"};
    rc = VB_ERR_NOMEM;
    if (!types || !bufs || !w || vb_gguf_writer_copy_keys(w, g, skip, 2) != VB_OK) {
        snprintf(err, err_len, "quantize: out of memory");
        goto done;
    }
    if ((rc = vb_quant_plan(g, p, types, err, err_len)) != VB_OK) goto done;
    vb_gguf_writer_set_u32(w, "general.quantization_version", 2); /* ggml's GGML_QNT_VERSION */
    vb_gguf_writer_set_u32(w, "general.file_type", p->ftype);
    for (int64_t i = 0; i < nt; i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(g, i);
        const void *data = t->data;
        if (types[i] != t->type) {
            const vb_type_traits *src = vb_type_get(t->type);
            if (is_quantized(t->type) && !allow_requantize) {
                snprintf(err, err_len,
                         "quantize: tensor '%s' is already %s: requantizing loses accuracy, pass "
                         "--allow-requantize to do it anyway", t->name, src->name);
                rc = VB_ERR_ARG;
                goto done;
            }
            if (!src->supported) {
                snprintf(err, err_len, "quantize: tensor '%s' has type %s, which vibee cannot read", t->name,
                         src->name);
                rc = VB_ERR_UNSUPPORTED;
                goto done;
            }
            int64_t n = t->ne[0], rows = t->n_elems / n;
            int64_t in_rb = vb_type_row_bytes(t->type, n), out_rb = vb_type_row_bytes(types[i], n);
            float *row = malloc((size_t)n * sizeof *row); /* [n] one dequantized row */
            bufs[i] = malloc((size_t)(out_rb * rows));
            if (!row || !bufs[i]) {
                free(row);
                snprintf(err, err_len, "quantize: out of memory for tensor '%s'", t->name);
                rc = VB_ERR_NOMEM;
                goto done;
            }
            for (int64_t r = 0; r < rows && rc != VB_ERR_UNSUPPORTED; r++) {
                vb_dequantize_row(t->type, (const uint8_t *)t->data + r * in_rb, row, n);
                if (vb_quantize_row(types[i], row, (uint8_t *)bufs[i] + r * out_rb, n) != VB_OK) rc = VB_ERR_UNSUPPORTED;
            }
            free(row);
            if (rc == VB_ERR_UNSUPPORTED) {
                snprintf(err, err_len, "quantize: vibee has no quantizer for %s (tensor '%s')",
                         vb_type_get(types[i])->name, t->name);
                goto done;
            }
            data = bufs[i];
        }
        if (vb_gguf_writer_add_tensor(w, t->name, types[i], t->n_dims, t->ne, data) != VB_OK) {
            snprintf(err, err_len, "quantize: cannot add tensor '%s'", t->name);
            rc = VB_ERR_FORMAT;
            goto done;
        }
        if (progress) progress(i + 1, nt, user);
    }
    rc = vb_gguf_writer_write(w, out, err, err_len);
done:
    for (int64_t i = 0; bufs && i < nt; i++) free(bufs[i]);
    free(bufs);
    free(types);
    vb_gguf_writer_free(w);
    vb_gguf_close(g);
    return rc;
}
