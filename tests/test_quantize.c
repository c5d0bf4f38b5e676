/* test_quantize.c - `vibee quantize` and src/quantize.c: llama.cpp's presets and per-tensor rules
 * against a golden table written out by hand from llama-quant.cpp's rules (llama_tensor_get_type
 * and its fallbacks) for an 8-layer GQA-4 model whose FFN-down rows (320) are not a multiple of
 * 256; the file vibee writes (types as planned, the blocks of the deterministic types equal to
 * what llama.cpp's quantizer makes of the same values, loads on the cpu backend); the CLI (usage
 * and a non-zero exit on missing arguments, presets in any case, requantizing only with
 * --allow-requantize). */
#include <stdlib.h>
#include <string.h>

#include "backends/cpu/kernels.h"
#include "backends/llamacpp/llamacpp_backend.h"
#include "gguf/gguf.h"
#include "quantize.h"
#include "test.h"
#include "types.h"
#include "vibee.h"

#define QZ_LAYERS 8

/* Write a llama-architecture GGUF: 8 layers, n_embd 256, 4 heads, 1 KV head, n_ff 320,
 * vocab 64, untied output, F32 random weights. */
static int qz_write_model(const char *path) {
    vb_gguf_writer *w = vb_gguf_writer_init();
    if (!w) return -1;
    vb_gguf_writer_set_str(w, "general.architecture", "llama");
    vb_gguf_writer_set_u32(w, "llama.block_count", QZ_LAYERS);
    vb_gguf_writer_set_u32(w, "llama.embedding_length", 256);
    vb_gguf_writer_set_u32(w, "llama.feed_forward_length", 320);
    vb_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    vb_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 1);
    vb_gguf_writer_set_u32(w, "llama.context_length", 256);
    vb_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    static float data[320 * 256]; /* shared by every tensor (the writer references it) */
    uint32_t st = 1;
    for (size_t i = 0; i < sizeof data / sizeof data[0]; i++) {
        st = st * 1664525u + 1013904223u;
        data[i] = ((float)(st >> 8) / 16777216.0f - 0.5f) * 0.2f;
    }
    char name[64];
    int rc = 0;
#define QZ_ADD(nm, nd, e0, e1)                                                                \
    do {                                                                                      \
        int64_t ne_[2] = {(e0), (e1)};                                                        \
        rc |= vb_gguf_writer_add_tensor(w, nm, VB_TYPE_F32, nd, ne_, data);                  \
    } while (0)
    QZ_ADD("token_embd.weight", 2, 256, 64);
    for (int l = 0; l < QZ_LAYERS; l++) {
        snprintf(name, sizeof name, "blk.%d.attn_norm.weight", l); QZ_ADD(name, 1, 256, 1);
        snprintf(name, sizeof name, "blk.%d.attn_q.weight", l); QZ_ADD(name, 2, 256, 256);
        snprintf(name, sizeof name, "blk.%d.attn_k.weight", l); QZ_ADD(name, 2, 256, 64);
        snprintf(name, sizeof name, "blk.%d.attn_v.weight", l); QZ_ADD(name, 2, 256, 64);
        snprintf(name, sizeof name, "blk.%d.attn_output.weight", l); QZ_ADD(name, 2, 256, 256);
        snprintf(name, sizeof name, "blk.%d.ffn_norm.weight", l); QZ_ADD(name, 1, 256, 1);
        snprintf(name, sizeof name, "blk.%d.ffn_gate.weight", l); QZ_ADD(name, 2, 256, 320);
        snprintf(name, sizeof name, "blk.%d.ffn_up.weight", l); QZ_ADD(name, 2, 256, 320);
        snprintf(name, sizeof name, "blk.%d.ffn_down.weight", l); QZ_ADD(name, 2, 320, 256);
    }
    QZ_ADD("output_norm.weight", 1, 256, 1);
    QZ_ADD("output.weight", 2, 256, 64);
#undef QZ_ADD
    char err[256];
    if (!rc) rc = vb_gguf_writer_write(w, path, err, sizeof err);
    vb_gguf_writer_free(w);
    return rc;
}

/* The golden table: per preset, the type of token_embd, output, attn_q, attn_k, attn_output,
 * ffn_gate/up, and of attn_v / ffn_down in layers 0..7 (hand-derived; use_more_bits(i, 8) is
 * true for i = 0, 3, 6, 7; ffn_down's 320-element rows take the fallback of the rule's type). */
typedef struct {
    const char *preset;
    const char *embd, *output, *q, *k, *o, *gate_up;
    const char *v[QZ_LAYERS], *down[QZ_LAYERS];
} qz_golden;

#define X8(t) {t, t, t, t, t, t, t, t}
static const qz_golden qz_table[] = {
    {"q4_k_m", "q4_k", "q6_k", "q4_k", "q4_k", "q4_k", "q4_k",
     {"q6_k", "q4_k", "q4_k", "q6_k", "q4_k", "q4_k", "q6_k", "q6_k"},
     {"q8_0", "q5_0", "q5_0", "q8_0", "q5_0", "q5_0", "q8_0", "q8_0"}},
    {"Q4_K_S", "q4_k", "q6_k", "q4_k", "q4_k", "q4_k", "q4_k",
     {"q5_k", "q5_k", "q5_k", "q5_k", "q4_k", "q4_k", "q4_k", "q4_k"},
     {"q5_1", "q5_0", "q5_0", "q5_0", "q5_0", "q5_0", "q5_0", "q5_0"}},
    {"q5_k_m", "q5_k", "q6_k", "q5_k", "q5_k", "q5_k", "q5_k",
     {"q6_k", "q5_k", "q5_k", "q6_k", "q5_k", "q5_k", "q6_k", "q6_k"},
     {"q8_0", "q5_1", "q5_1", "q8_0", "q5_1", "q5_1", "q8_0", "q8_0"}},
    {"q5_k_s", "q5_k", "q6_k", "q5_k", "q5_k", "q5_k", "q5_k", X8("q5_k"), X8("q5_1")},
    {"q3_k_s", "q3_k", "q6_k", "q3_k", "q3_k", "q3_k", "q3_k", X8("q3_k"), X8("iq4_nl")},
    {"q3_k_m", "q3_k", "q6_k", "q3_k", "q3_k", "q4_k", "q3_k",
     {"q5_k", "q5_k", "q4_k", "q4_k", "q4_k", "q4_k", "q4_k", "q4_k"}, X8("q5_0")},
    {"q3_k_l", "q3_k", "q6_k", "q3_k", "q3_k", "q5_k", "q3_k", X8("q5_k"), X8("q5_1")},
    {"q2_k", "q2_k", "q6_k", "q2_k", "q2_k", "q3_k", "q2_k", X8("q4_k"), X8("iq4_nl")},
    {"q6_k", "q6_k", "q6_k", "q6_k", "q6_k", "q6_k", "q6_k", X8("q6_k"), X8("q8_0")},
    {"iq4_nl", "iq4_nl", "q6_k", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl", X8("q5_k"),
     {"q5_1", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl"}},
    {"IQ4_XS", "iq4_xs", "q6_k", "iq4_xs", "iq4_xs", "iq4_xs", "iq4_xs", X8("q5_k"),
     {"q5_1", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl", "iq4_nl"}},
    {"q4_0", "q4_0", "q6_k", "q4_0", "q4_0", "q4_0", "q4_0", X8("q4_0"), X8("q4_0")},
    {"q4_1", "q4_1", "q6_k", "q4_1", "q4_1", "q4_1", "q4_1", X8("q4_1"), X8("q4_1")},
    {"q5_0", "q5_0", "q6_k", "q5_0", "q5_0", "q5_0", "q5_0", X8("q5_0"), X8("q5_0")},
    {"q5_1", "q5_1", "q6_k", "q5_1", "q5_1", "q5_1", "q5_1", X8("q5_1"), X8("q5_1")},
    {"q8_0", "q8_0", "q8_0", "q8_0", "q8_0", "q8_0", "q8_0", X8("q8_0"), X8("q8_0")},
    {"f16", "f16", "f16", "f16", "f16", "f16", "f16", X8("f16"), X8("f16")},
};

static const char *qz_expect(const qz_golden *gd, const char *name) {
    int l;
    char rest[64];
    if (!strcmp(name, "token_embd.weight")) return gd->embd;
    if (!strcmp(name, "output.weight")) return gd->output;
    if (strstr(name, "norm")) return "f32";
    if (sscanf(name, "blk.%d.%63s", &l, rest) != 2 || l < 0 || l >= QZ_LAYERS) return "?";
    if (!strcmp(rest, "attn_q.weight")) return gd->q;
    if (!strcmp(rest, "attn_k.weight")) return gd->k;
    if (!strcmp(rest, "attn_v.weight")) return gd->v[l];
    if (!strcmp(rest, "attn_output.weight")) return gd->o;
    if (!strcmp(rest, "ffn_gate.weight") || !strcmp(rest, "ffn_up.weight")) return gd->gate_up;
    if (!strcmp(rest, "ffn_down.weight")) return gd->down[l];
    return "?";
}

TEST(quantize_presets_follow_llamacpp_rules) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/quantize-rules.gguf", vbt_fixture_dir());
    CHECK_EQ_INT(qz_write_model(path), VB_OK);
    vb_gguf *g = NULL;
    CHECKF(vb_gguf_open(path, true, &g, err, sizeof err) == VB_OK, "%s", err);
    int64_t nt = vb_gguf_n_tensors(g);
    uint32_t types[128];
    CHECK(nt <= 128);
    for (size_t p = 0; p < sizeof qz_table / sizeof qz_table[0]; p++) {
        const vb_quant_preset *pr = vb_quant_preset_find(qz_table[p].preset);
        CHECKF(pr != NULL, "preset %s unknown", qz_table[p].preset);
        CHECK_EQ_INT(vb_quant_plan(g, pr, types, err, sizeof err), VB_OK);
        for (int64_t i = 0; i < nt; i++) {
            const char *name = vb_gguf_tensor_at(g, i)->name, *want = qz_expect(&qz_table[p], name);
            const char *got = vb_type_get(types[i])->name;
            char msg[256];
            snprintf(msg, sizeof msg, "%s: %s is %s, llama.cpp's rules give %s", qz_table[p].preset, name, got, want);
            if (strcmp(got, want) != 0) vb_gguf_close(g);
            CHECKF(!strcmp(got, want), "%s", msg);
        }
    }
    vb_gguf_close(g);
    /* aliases and case */
    CHECK(vb_quant_preset_find("Q4_K") == vb_quant_preset_find("q4_k_m"));
    CHECK(vb_quant_preset_find("q5_K_m") == vb_quant_preset_find("Q5_K_M"));
    CHECK(vb_quant_preset_find("q4_k_x") == NULL && vb_quant_preset_find("iq2_xxs") == NULL);
    remove(path);
}

/* The file: planned types, every quantized tensor byte-identical to what llama.cpp's quantizer
 * makes of the same values (the FMA copy of the quantizers where the CPU has FMA, as the linked
 * llama.cpp build: test_quant_types.c), and it runs on the cpu backend. */
TEST(quantize_file_q4_k_m) {
    char src[1024], dst[1100], err[512];
    snprintf(src, sizeof src, "%s/quantize-src.gguf", vbt_fixture_dir());
    snprintf(dst, sizeof dst, "%s/quantize-q4_k_m.gguf", vbt_fixture_dir());
    CHECK_EQ_INT(qz_write_model(src), VB_OK);
    const vb_quant_preset *p = vb_quant_preset_find("q4_k_m");
    CHECK_EQ_INT(vb_quantize_file(src, dst, p, false, NULL, NULL, err, sizeof err), VB_OK);
    vb_gguf *gs = NULL, *gd = NULL;
    CHECK(vb_gguf_open(src, true, &gs, err, sizeof err) == VB_OK);
    CHECK(vb_gguf_open(dst, true, &gd, err, sizeof err) == VB_OK);
    uint32_t ft = 0;
    CHECK(vb_gguf_get_u32(gd, "general.file_type", &ft) && ft == 15);
    int n_compared = 0;
    for (int64_t i = 0; i < vb_gguf_n_tensors(gd); i++) {
        const vb_gguf_tensor *t = vb_gguf_tensor_at(gd, i), *s = vb_gguf_find_tensor(gs, t->name);
        CHECK(s != NULL);
        CHECKF(!strcmp(vb_type_get(t->type)->name, qz_expect(&qz_table[0], t->name)), "%s: %s", t->name,
               vb_type_get(t->type)->name);
#ifdef VB_HAVE_LLAMACPP
        if (vb_type_get(t->type)->block_elems >= 32) { /* every quantized tensor (Q4_K, Q6_K, Q5_0, Q8_0 here) */
            int64_t rows = t->n_elems / t->ne[0];
            void *ref = malloc(t->nbytes);
            CHECK(ref);
            CHECK_EQ_INT(vb_llamacpp_quantize(t->type, s->data, ref, rows, t->ne[0]), VB_OK);
            int same = memcmp(ref, t->data, t->nbytes) == 0;
            free(ref);
            CHECKF(same, "%s: vibee's %s blocks differ from llama.cpp's", t->name, vb_type_get(t->type)->name);
            n_compared++;
        }
#endif
    }
    vb_gguf_close(gs);
    vb_gguf_close(gd);
#ifdef VB_HAVE_LLAMACPP
    printf("     %d quantized tensors byte-identical to llama.cpp's\n", n_compared);
    CHECKF(n_compared >= 8, "only %d quantized tensors compared", n_compared);
#endif
    /* it runs */
    vb_model *m = NULL;
    CHECKF(vb_model_load(dst, NULL, &m, err, sizeof err) == VB_OK, "%s", err);
    vb_context_params cp = vb_context_default_params();
    cp.backend = "cpu";
    cp.n_threads = 1;
    cp.n_ctx = 32;
    vb_context *c = NULL;
    int st = vb_context_init(m, &cp, &c, err, sizeof err);
    vb_batch *b = vb_batch_init(4);
    if (st == VB_OK && b) {
        for (int i = 0; i < 4; i++) vb_batch_add(b, i + 3, i, 0, i == 3);
        st = vb_forward(c, b);
    }
    const float *lg = st == VB_OK ? vb_get_logits(c, 3) : NULL;
    bool finite = lg != NULL;
    for (int i = 0; finite && i < 64; i++) finite = lg[i] == lg[i] && lg[i] - lg[i] == 0;
    vb_batch_free(b);
    vb_context_free(c);
    vb_model_free(m);
    remove(src);
    remove(dst);
    CHECKF(st == VB_OK && finite, "cpu forward of the q4_k_m file: status %d %s", st, err);
}

TEST(quantize_cli) {
    char src[1024], dst[1100], cmd[3000], out[4096];
    snprintf(src, sizeof src, "%s/quantize-cli.gguf", vbt_fixture_dir());
    snprintf(dst, sizeof dst, "%s/quantize-cli-out.gguf", vbt_fixture_dir());
    CHECK_EQ_INT(qz_write_model(src), VB_OK);
    snprintf(cmd, sizeof cmd, "%s quantize %s 2>&1", vbt_vibee_bin(), src); /* missing arguments */
    int rc = vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(rc != 0 && strstr(out, "usage: vibee quantize"), "exit %d, output '%s'", rc, out);
    snprintf(cmd, sizeof cmd, "%s quantize %s %s Q5_K_M 2>&1", vbt_vibee_bin(), src, dst); /* any case */
    rc = vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(rc == 0, "exit %d, output '%s'", rc, out);
    char dst2[1200];
    snprintf(dst2, sizeof dst2, "%s.2", dst);
    snprintf(cmd, sizeof cmd, "%s quantize %s %s q4_0 2>&1", vbt_vibee_bin(), dst, dst2); /* requantize */
    rc = vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(rc != 0 && strstr(out, "--allow-requantize"), "exit %d, output '%s'", rc, out);
    snprintf(cmd, sizeof cmd, "%s quantize --allow-requantize %s %s q4_0 2>&1", vbt_vibee_bin(), dst, dst2);
    rc = vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(rc == 0, "exit %d, output '%s'", rc, out);
    snprintf(cmd, sizeof cmd, "%s quantize %s %s q4_k_x 2>&1", vbt_vibee_bin(), src, dst2); /* unknown */
    rc = vbt_run_cmd(cmd, out, sizeof out);
    CHECKF(rc != 0 && strstr(out, "unknown preset"), "exit %d, output '%s'", rc, out);
    remove(src), remove(dst), remove(dst2);
}
