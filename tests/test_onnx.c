/* test_onnx.c - the ONNX Runtime backend (`onnx`) against vibee's `cpu` backend on the same
 * weights: random-weight GGUF models (gpt2; qwen3, llama, qwen2 with grouped/multi-query
 * attention) and ONNX decoder graphs exported from the same GGUF files by scripts/export_onnx.py
 * (scripts/fixtures/onnx.sh).
 *
 * - logits over a 12-token prompt and 64 greedy steps (both backends fed the same tokens):
 *       err(row) = max_i |cpu_i - onnx_i| / max_i |cpu_i|
 *   F32 graphs: err <= 1e-4 (two f32 engines differing in summation order; measured ~1e-6) and
 *   greedy tokens identical; F16 graphs (weights, past/present and logits rounded to f16, math in
 *   f32): err <= 1e-2 (f16 has 11 significant bits: 5e-4 per rounding, a few roundings deep);
 * - physical-order causality: a batch whose positions go backwards gives the same logits as cpu;
 *   two sequences in one batch; truncate + re-decode; fork;
 * - bad input: missing option, missing file, corrupt and truncated ONNX files, a graph without
 *   past inputs, an ONNX file of another network than the model, a bad library path, an
 *   unavailable execution provider, an unknown option: each a clear error status, no crash.
 *
 * Without the backend compiled in (no VB_HAVE_ONNX), every test here FAILS with the fix (run
 * scripts/install_onnxruntime.sh and rebuild), unless VB_NO_ONNX=1 says skipping is intended.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "test.h"
#include "vibee.h"
#ifdef VB_HAVE_ONNX
#include "backends/onnx/onnx_backend.h"
#endif

#ifndef VB_HAVE_ONNX

static void onnx_missing(const char *file, int line) {
    const char *ok = getenv("VB_NO_ONNX");
    if (ok && strcmp(ok, "1") == 0) {
        printf("     skipped: onnx backend not compiled in (VB_NO_ONNX=1)\n");
        return;
    }
    vbt_fail(file, line, "onnx backend not compiled in, test could not run: run "
                         "scripts/install_onnxruntime.sh and rebuild (or set VB_NO_ONNX=1 to skip)");
}
#define ONNX_MISSING_TEST(name) TEST(name) { onnx_missing(__FILE__, __LINE__); }
ONNX_MISSING_TEST(onnx_vs_cpu_gpt2_f32)
ONNX_MISSING_TEST(onnx_vs_cpu_qwen3_f32)
ONNX_MISSING_TEST(onnx_vs_cpu_gpt2_f16)
ONNX_MISSING_TEST(onnx_vs_cpu_qwen3_f16)
ONNX_MISSING_TEST(onnx_vs_cpu_llama_qwen2_f32)
ONNX_MISSING_TEST(onnx_physical_order_and_batches)
ONNX_MISSING_TEST(onnx_kv_ops)
ONNX_MISSING_TEST(onnx_bad_files)
ONNX_MISSING_TEST(onnx_bad_options)
ONNX_MISSING_TEST(onnx_probe)
ONNX_MISSING_TEST(onnx_grouped_sequences)
ONNX_MISSING_TEST(onnx_run_failure_is_clean)
ONNX_MISSING_TEST(onnx_graph_without_position_ids)
ONNX_MISSING_TEST(onnx_present_reuse_invalidated)
ONNX_MISSING_TEST(onnx_rejects_and_kv_full)
ONNX_MISSING_TEST(onnx_decoders_equal_ar)

#else

/* ONNX Runtime's CreateEnv leaks one 14-byte allocation inside libonnxruntime.so (reproduced by
 * a program that only calls CreateEnv + ReleaseEnv); LeakSanitizer in the ASan build is told to
 * ignore leaks whose stack is inside that library only. (LSan's documented hook; the only one in
 * the test binary: move it to tests/runner.c if another test needs suppressions.) */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libonnxruntime.so\n"; }

#define OX_STEPS 64
#define OX_PROMPT 12

static const vb_token ox_prompt[OX_PROMPT] = {17, 250, 3, 99, 142, 7, 288, 61, 200, 45, 13, 180};

/* $VB_FIXTURES/onnx/<name>, or "" (with a test failure message) when missing. */
static int ox_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/onnx/%s", vbt_fixture_dir(), name);
    struct stat st;
    return stat(buf, &st) == 0;
}

#define OX_NEED(buf, name)                                                                      \
    do {                                                                                        \
        if (!ox_path(buf, sizeof buf, name)) {                                                  \
            CHECKF(0, "fixture %s missing: run `make fixtures` (scripts/fixtures/onnx.sh; needs " \
                      "apt-get install -y python3-onnx)", buf);                                 \
        }                                                                                       \
    } while (0)

static vb_context *ox_ctx(vb_model *m, const char *backend, const char *options, char *err,
                          size_t err_len, int *status) {
    vb_context_params cp = vb_context_default_params();
    cp.backend = backend;
    cp.n_threads = 1;
    cp.n_ctx = 256;
    cp.n_seq_max = 4;
    cp.backend_options = options;
    vb_context *c = NULL;
    *status = vb_context_init(m, &cp, &c, err, err_len);
    return c;
}

static int ox_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* max |a - b| / max |a| over one row */
static double ox_row_err(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (d > num || d != d) num = d != d ? 1e30 : d;
        if (fabs(a[i]) > den) den = fabs(a[i]);
    }
    return den > 0 ? num / den : num;
}

/* Prompt + OX_STEPS greedy steps on cpu (GGUF) and onnx (graph); returns the worst row error in
 * *worst and the number of greedy disagreements in *n_diff. */
static void ox_compare(const char *gguf, const char *onnx_file, double bound, bool greedy_exact) {
    char gpath[1200], opath[1200], opts[1300], err[512];
    OX_NEED(gpath, gguf);
    OX_NEED(opath, onnx_file);
    vb_model *m = NULL;
    int rc = vb_model_load(gpath, NULL, &m, err, sizeof err);
    CHECKF(rc == VB_OK, "load %s: %s", gpath, err);
    const int V = vb_model_get_info(m)->n_vocab;
    snprintf(opts, sizeof opts, "onnx=%s", opath);
    int st_cpu, st_onnx;
    vb_context *cpu = ox_ctx(m, "cpu", NULL, err, sizeof err, &st_cpu);
    vb_context *ox = st_cpu == VB_OK ? ox_ctx(m, "onnx", opts, err, sizeof err, &st_onnx) : NULL;
    vb_batch *b = vb_batch_init(64);
    double worst = 0;
    int n_diff = 0, worst_step = -1;
    bool ok = cpu && ox && b;
    if (!ok) {
        vb_context_free(cpu);
        vb_context_free(ox);
        vb_batch_free(b);
        vb_model_free(m);
        CHECKF(0, "context init failed: %s", err);
    }
    for (int i = 0; i < OX_PROMPT; i++) vb_batch_add(b, ox_prompt[i], i, 0, true);
    int pos = OX_PROMPT;
    for (int step = 0; step <= OX_STEPS && ok; step++) {
        int rc1 = vb_forward(cpu, b), rc2 = vb_forward(ox, b);
        if (rc1 != VB_OK || rc2 != VB_OK) {
            snprintf(err, sizeof err, "step %d: cpu %d (%s) onnx %d (%s)", step, rc1,
                     vb_context_error(cpu), rc2, vb_context_error(ox));
            ok = false;
            break;
        }
        for (int r = 0; r < b->n; r++) {
            const float *a = vb_get_logits(cpu, r), *o = vb_get_logits(ox, r);
            double e = ox_row_err(a, o, V);
            if (e > worst) {
                worst = e;
                worst_step = step;
            }
        }
        const float *a = vb_get_logits(cpu, b->n - 1), *o = vb_get_logits(ox, b->n - 1);
        int t_cpu = ox_argmax(a, V), t_onnx = ox_argmax(o, V);
        n_diff += t_cpu != t_onnx;
        vb_batch_clear(b);
        vb_batch_add(b, t_cpu, pos++, 0, true);
    }
    printf("     %s vs %s: worst row error %.3g (step %d), greedy disagreements %d of %d\n", onnx_file,
           gguf, worst, worst_step, n_diff, OX_STEPS + 1);
    vb_context_free(cpu);
    vb_context_free(ox);
    vb_batch_free(b);
    vb_model_free(m);
    CHECKF(ok, "%s", err);
    CHECKF(worst <= bound, "%s: worst row error %.3g > %.3g (step %d)", onnx_file, worst, bound,
           worst_step);
    if (greedy_exact) CHECKF(n_diff == 0, "%s: %d greedy disagreements", onnx_file, n_diff);
}

TEST(onnx_vs_cpu_gpt2_f32) { ox_compare("gpt2.gguf", "gpt2-f32.onnx", 1e-4, true); }
TEST(onnx_vs_cpu_qwen3_f32) { ox_compare("qwen3.gguf", "qwen3-f32.onnx", 1e-4, true); }
TEST(onnx_vs_cpu_gpt2_f16) { ox_compare("gpt2.gguf", "gpt2-f16.onnx", 1e-2, false); }
TEST(onnx_vs_cpu_qwen3_f16) { ox_compare("qwen3.gguf", "qwen3-f16.onnx", 1e-2, false); }
/* the export's other layouts: llama (interleaved RoPE pairs), qwen2 (q/k/v biases, MQA) */
TEST(onnx_vs_cpu_llama_qwen2_f32) {
    ox_compare("llama.gguf", "llama-f32.onnx", 1e-4, true);
    if (vbt_failed_now()) return;
    ox_compare("qwen2.gguf", "qwen2-f32.onnx", 1e-4, true);
}

/* A fixed batch script on cpu and onnx: row errors must stay within 1e-4. */
typedef struct ox_pair {
    vb_model *m;
    vb_context *cpu, *ox;
    vb_batch *b;
    int V;
    char err[512];
} ox_pair;

static int ox_pair_open(ox_pair *p, const char *gguf, const char *onnx_file) {
    char gpath[1200], opath[1200], opts[1300];
    memset(p, 0, sizeof *p);
    if (!ox_path(gpath, sizeof gpath, gguf) || !ox_path(opath, sizeof opath, onnx_file)) {
        snprintf(p->err, sizeof p->err, "fixture %s or %s missing: run `make fixtures`", gguf, onnx_file);
        return -1;
    }
    if (vb_model_load(gpath, NULL, &p->m, p->err, sizeof p->err) != VB_OK) return -1;
    p->V = vb_model_get_info(p->m)->n_vocab;
    snprintf(opts, sizeof opts, "onnx=%s", opath);
    int st;
    p->cpu = ox_ctx(p->m, "cpu", NULL, p->err, sizeof p->err, &st);
    if (st != VB_OK) return -1;
    p->ox = ox_ctx(p->m, "onnx", opts, p->err, sizeof p->err, &st);
    if (st != VB_OK) return -1;
    p->b = vb_batch_init(64);
    return p->b ? 0 : -1;
}

static void ox_pair_close(ox_pair *p) {
    vb_context_free(p->cpu);
    vb_context_free(p->ox);
    vb_batch_free(p->b);
    vb_model_free(p->m);
}

/* Forward p->b on both; returns the worst row error (1e30 on a failure, message in p->err). */
static double ox_pair_forward(ox_pair *p) {
    int rc1 = vb_forward(p->cpu, p->b), rc2 = vb_forward(p->ox, p->b);
    if (rc1 != VB_OK || rc2 != VB_OK) {
        snprintf(p->err, sizeof p->err, "forward: cpu %d (%s), onnx %d (%s)", rc1,
                 vb_context_error(p->cpu), rc2, vb_context_error(p->ox));
        return 1e30;
    }
    double worst = 0;
    for (int r = 0; r < p->b->n; r++) {
        if (!p->b->want_logits[r]) continue;
        double e = ox_row_err(vb_get_logits(p->cpu, r), vb_get_logits(p->ox, r), p->V);
        if (e > worst) worst = e;
    }
    return worst;
}

/* The lossless decoders on the onnx backend: draft-and-verify (fixed and auto draft length) and
 * WeDLM in exact mode (every mask filled, a token id of the model used as the mask: these random
 * models have none) give AR greedy's tokens, on a graph with position_ids (reordering) and on one
 * without (the position-masked fallback). The prompt repeats so that prompt lookup drafts. */
static void ox_decoders(const char *gguf, const char *onnx_file) {
    ox_pair p;
    if (ox_pair_open(&p, gguf, onnx_file) != 0) {
        ox_pair_close(&p);
        CHECKF(0, "%s", p.err);
        return;
    }
    vb_token prompt[2 * OX_PROMPT];
    for (int i = 0; i < 2 * OX_PROMPT; i++) prompt[i] = ox_prompt[i % OX_PROMPT];
    vb_token ar[48], out[48];
    int32_t n_ar = 0, n_out = 0;
    vb_generate_stats st;
    vb_generate_params gp = vb_generate_default_params();
    gp.n_predict = 40;
    gp.stop_at_eos = false;
    CHECK(vb_generate(p.ox, prompt, 2 * OX_PROMPT, &gp, ar, 48, &n_ar, &st) == VB_OK);
    CHECK_EQ_INT(n_ar, 40);
    for (int variant = 0; variant < 4; variant++) {
        vb_generate_params q = gp;
        q.decoder = variant < 3 ? VB_DECODER_VERIFY : VB_DECODER_WEDLM;
        q.draft_max = variant == 0 ? 4 : variant == 1 ? 8 : 0;
        if (variant == 3) {
            q.wedlm_exact = true;
            q.mask_token = 1;
            q.tau = 100.0f;
            q.window = 4;
        }
        vb_kv_free_seq(p.ox, 0);
        int rc = vb_generate(p.ox, prompt, 2 * OX_PROMPT, &q, out, 48, &n_out, &st);
        CHECKF(rc == VB_OK, "%s variant %d: status %d (%s)", onnx_file, variant, rc,
               vb_context_error(p.ox));
        CHECK_EQ_INT(n_out, n_ar);
        for (int i = 0; i < n_ar && i < n_out; i++)
            CHECKF(out[i] == ar[i], "%s variant %d: token %d is %d, AR %d", onnx_file, variant, i,
                   out[i], ar[i]);
        CHECK_EQ_INT(vb_kv_seq_len(p.ox, 0), 2 * OX_PROMPT + n_out);
        vb_kv_free_seq(p.ox, 0);
    }
    ox_pair_close(&p);
}

TEST(onnx_decoders_equal_ar) {
    ox_decoders("qwen3.gguf", "qwen3-f32.onnx");
    ox_decoders("qwen3.gguf", "qwen3-nopos.onnx");
    ox_decoders("gpt2.gguf", "gpt2-f32.onnx");
}

TEST(onnx_physical_order_and_batches) {
    const char *archs[2][2] = {{"qwen3.gguf", "qwen3-f32.onnx"}, {"gpt2.gguf", "gpt2-f32.onnx"}};
    for (int a = 0; a < 2; a++) {
        ox_pair p;
        if (ox_pair_open(&p, archs[a][0], archs[a][1]) != 0) {
            ox_pair_close(&p);
            CHECKF(0, "%s", p.err);
        }
        CHECK(vb_context_caps(p.ox).physical_causality);
        CHECK(vb_context_caps(p.ox).paged_kv);
        /* seq 0: prompt; seq 1: a different prompt, interleaved rows in one batch */
        for (int i = 0; i < 8; i++) {
            vb_batch_add(p.b, ox_prompt[i], i, 0, true);
            vb_batch_add(p.b, ox_prompt[11 - i], i, 1, i % 2 == 0);
        }
        double e1 = ox_pair_forward(&p);
        /* a WeDLM-like window: positions go backwards within the batch (physical order rules) */
        vb_batch_clear(p.b);
        const int pos[6] = {8, 9, 12, 13, 10, 11};
        for (int i = 0; i < 6; i++) vb_batch_add(p.b, ox_prompt[i + 3], pos[i], 0, true);
        vb_batch_add(p.b, 5, 8, 1, true);
        double e2 = ox_pair_forward(&p);
        ox_pair_close(&p);
        CHECKF(e1 < 1e-4 && e2 < 1e-4, "%s: two-sequence batch err %.3g, backward positions err %.3g (%s)",
               archs[a][1], e1, e2, p.err);
    }
}

TEST(onnx_kv_ops) {
    ox_pair p;
    if (ox_pair_open(&p, "qwen3.gguf", "qwen3-f32.onnx") != 0) {
        ox_pair_close(&p);
        CHECKF(0, "%s", p.err);
    }
    for (int i = 0; i < OX_PROMPT; i++) vb_batch_add(p.b, ox_prompt[i], i, 0, i == OX_PROMPT - 1);
    double e = ox_pair_forward(&p);
    float ref[512];
    memcpy(ref, vb_get_logits(p.ox, OX_PROMPT - 1), (size_t)p.V * sizeof(float));
    /* truncate the last 4 rows and re-decode them: same logits as before */
    int rc = vb_kv_truncate(p.ox, 0, OX_PROMPT - 4);
    vb_kv_truncate(p.cpu, 0, OX_PROMPT - 4);
    vb_batch_clear(p.b);
    for (int i = OX_PROMPT - 4; i < OX_PROMPT; i++) vb_batch_add(p.b, ox_prompt[i], i, 0, i == OX_PROMPT - 1);
    double e2 = ox_pair_forward(&p);
    double redo = e2 < 1e29 ? ox_row_err(ref, vb_get_logits(p.ox, 3), p.V) : 1e30;
    /* fork seq 0 into seq 2 and continue both with the same token: same logits */
    int rc_fork = vb_kv_fork(p.ox, 0, 2);
    vb_kv_fork(p.cpu, 0, 2);
    vb_batch_clear(p.b);
    vb_batch_add(p.b, 42, OX_PROMPT, 0, true);
    vb_batch_add(p.b, 42, OX_PROMPT, 2, true);
    double e3 = ox_pair_forward(&p);
    double fork_err = e3 < 1e29 ? ox_row_err(vb_get_logits(p.ox, 0), vb_get_logits(p.ox, 1), p.V) : 1e30;
    int32_t len0 = vb_kv_seq_len(p.ox, 0), len2 = vb_kv_seq_len(p.ox, 2);
    vb_stats st = vb_context_stats(p.ox);
    ox_pair_close(&p);
    CHECKF(rc == VB_OK && rc_fork == VB_OK, "truncate %d fork %d", rc, rc_fork);
    CHECKF(e < 1e-4 && e2 < 1e-4 && e3 < 1e-4, "cpu vs onnx: %.3g %.3g %.3g (%s)", e, e2, e3, p.err);
    CHECKF(redo < 1e-6, "re-decode after truncate differs by %.3g", redo);
    CHECKF(fork_err < 1e-6, "forked sequence differs by %.3g", fork_err);
    CHECK_EQ_INT(len0, OX_PROMPT + 1);
    CHECK_EQ_INT(len2, OX_PROMPT + 1);
    /* the shared partial block was copied on write: two blocks of OX_PROMPT + 1 rows */
    CHECKF(st.kv.blocks_used == 2 && st.kv.tokens_stored == 2 * (OX_PROMPT + 1),
           "kv stats: %d blocks used, %lld rows stored", st.kv.blocks_used,
           (long long)st.kv.tokens_stored);
}

/* Context init over `gguf` with the given options must fail with `want` and a message holding
 * `needle`. */
static int ox_expect_fail(const char *gguf, const char *options, int want, const char *needle,
                          char *msg, size_t msg_len) {
    char gpath[1200], err[512] = "";
    if (!ox_path(gpath, sizeof gpath, gguf)) {
        snprintf(msg, msg_len, "fixture %s missing: run `make fixtures`", gguf);
        return -1;
    }
    vb_model *m = NULL;
    if (vb_model_load(gpath, NULL, &m, err, sizeof err) != VB_OK) {
        snprintf(msg, msg_len, "load %s: %s", gpath, err);
        return -1;
    }
    int st;
    vb_context *c = ox_ctx(m, "onnx", options, err, sizeof err, &st);
    int ok = c == NULL && st == want && strstr(err, needle) != NULL;
    snprintf(msg, msg_len, "options '%s': status %d (want %d), message '%s' (want '%s')",
             options ? options : "(null)", st, want, err, needle);
    vb_context_free(c);
    vb_model_free(m);
    return ok ? 0 : -1;
}

TEST(onnx_bad_files) {
    char dir[1100], opts[1300], msg[1200];
    snprintf(dir, sizeof dir, "%s/onnx", vbt_fixture_dir());
    struct {
        const char *gguf, *file;
        int status;
        const char *needle;
    } cases[] = {
        {"gpt2.gguf", "does-not-exist.onnx", VB_ERR_IO, "does-not-exist.onnx"},
        {"gpt2.gguf", "corrupt.onnx", VB_ERR_FORMAT, "corrupt.onnx"},
        {"gpt2.gguf", "truncated.onnx", VB_ERR_FORMAT, "truncated.onnx"},
        {"gpt2.gguf", "nopast.onnx", VB_ERR_FORMAT, "past_key_values"},
        {"qwen3.gguf", "gpt2-f32.onnx", VB_ERR_FORMAT, "same network"},
        {"gpt2.gguf", "qwen3-f16.onnx", VB_ERR_FORMAT, "same network"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        snprintf(opts, sizeof opts, "onnx=%s/%s", dir, cases[i].file);
        int rc = ox_expect_fail(cases[i].gguf, opts, cases[i].status, cases[i].needle, msg, sizeof msg);
        CHECKF(rc == 0, "%s", msg);
    }
}

TEST(onnx_bad_options) {
    char opts[1400], msg[1200], onnx_file[1200];
    OX_NEED(onnx_file, "gpt2-f32.onnx");
    CHECKF(ox_expect_fail("gpt2.gguf", NULL, VB_ERR_ARG, "onnx=", msg, sizeof msg) == 0, "%s", msg);
    snprintf(opts, sizeof opts, "onnx=%s,colour=blue", onnx_file);
    CHECKF(ox_expect_fail("gpt2.gguf", opts, VB_ERR_ARG, "colour", msg, sizeof msg) == 0, "%s", msg);
    snprintf(opts, sizeof opts, "onnx=%s,ep=tpu", onnx_file);
    CHECKF(ox_expect_fail("gpt2.gguf", opts, VB_ERR_ARG, "tpu", msg, sizeof msg) == 0, "%s", msg);
    snprintf(opts, sizeof opts, "onnx=%s,ort_lib=/nonexistent/libonnxruntime.so", onnx_file);
    CHECKF(ox_expect_fail("gpt2.gguf", opts, VB_ERR_BACKEND, "install_onnxruntime.sh", msg,
                          sizeof msg) == 0, "%s", msg);
    /* the CPU build of ORT has no CUDA / TensorRT provider: ORT's reason plus a hint. A GPU build
       (VB_ORT_GPU=1 says the library under test is one) must instead accept ep=cuda. */
    const char *gpu = getenv("VB_ORT_GPU");
    if (!(gpu && strcmp(gpu, "1") == 0)) {
        snprintf(opts, sizeof opts, "onnx=%s,ep=cuda", onnx_file);
        CHECKF(ox_expect_fail("gpt2.gguf", opts, VB_ERR_BACKEND, "docs/onnx.md", msg, sizeof msg) == 0,
               "%s", msg);
        snprintf(opts, sizeof opts, "onnx=%s,ep=tensorrt", onnx_file);
        CHECKF(ox_expect_fail("gpt2.gguf", opts, VB_ERR_BACKEND, "tensorrt", msg, sizeof msg) == 0,
               "%s", msg);
    }
}

/* The backend reuses the last run's present tensors as the next past when the same sequence
 * continues; a sequence replaced by a fork of another (same length) must not see the stale rows. */
TEST(onnx_present_reuse_invalidated) {
    ox_pair p;
    if (ox_pair_open(&p, "qwen3.gguf", "qwen3-f32.onnx") != 0) {
        ox_pair_close(&p);
        CHECKF(0, "%s", p.err);
    }
    double e[4];
    for (int i = 0; i < OX_PROMPT; i++) vb_batch_add(p.b, ox_prompt[OX_PROMPT - 1 - i], i, 1, false);
    e[0] = ox_pair_forward(&p);
    vb_batch_clear(p.b);
    for (int i = 0; i < OX_PROMPT; i++) vb_batch_add(p.b, ox_prompt[i], i, 0, false);
    e[1] = ox_pair_forward(&p); /* the onnx backend now holds seq 0's 12 rows as its next past */
    vb_kv_free_seq(p.ox, 0);
    vb_kv_free_seq(p.cpu, 0);
    int rc = vb_kv_fork(p.ox, 1, 0);
    vb_kv_fork(p.cpu, 1, 0);
    vb_batch_clear(p.b);
    vb_batch_add(p.b, 7, OX_PROMPT, 0, true);
    e[2] = ox_pair_forward(&p);
    /* and the reuse itself: several single-row steps on seq 0 */
    e[3] = 0;
    for (int t = 1; t < 4; t++) {
        vb_batch_clear(p.b);
        vb_batch_add(p.b, 7 + t, OX_PROMPT + t, 0, true);
        double x = ox_pair_forward(&p);
        if (x > e[3]) e[3] = x;
    }
    ox_pair_close(&p);
    CHECKF(rc == VB_OK, "fork: %d", rc);
    CHECKF(e[0] < 1e-4 && e[1] < 1e-4 && e[2] < 1e-4 && e[3] < 1e-4,
           "cpu vs onnx: %.3g %.3g %.3g %.3g (%s)", e[0], e[1], e[2], e[3], p.err);
}

/* A graph without position_ids takes row indices as positions: it runs row-index positions like
 * cpu, refuses other positions with VB_ERR_UNSUPPORTED (KV unchanged) and says in its caps that it
 * cannot honour physical order with arbitrary positions. */
TEST(onnx_graph_without_position_ids) {
    ox_pair p;
    if (ox_pair_open(&p, "qwen3.gguf", "qwen3-nopos.onnx") != 0) {
        ox_pair_close(&p);
        CHECKF(0, "%s", p.err);
    }
    bool phys = vb_context_caps(p.ox).physical_causality;
    for (int i = 0; i < OX_PROMPT; i++) vb_batch_add(p.b, ox_prompt[i], i, 0, true);
    double e = ox_pair_forward(&p);
    vb_batch_clear(p.b);
    vb_batch_add(p.b, 5, OX_PROMPT + 1, 0, true); /* skips a position */
    int rc = vb_forward(p.ox, p.b);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vb_context_error(p.ox));
    int32_t len = vb_kv_seq_len(p.ox, 0);
    ox_pair_close(&p);
    CHECK(!phys);
    CHECKF(e < 1e-4, "row-index positions: cpu vs onnx %.3g (%s)", e, p.err);
    CHECKF(rc == VB_ERR_UNSUPPORTED && strstr(msg, "position_ids"), "status %d: %s", rc, msg);
    CHECK_EQ_INT(len, OX_PROMPT);
}

/* A failure inside ORT's Run (a gpt2 graph with 256 learned positions under a model that claims
 * 512, so position 300 passes vibee's checks and fails in the graph's position lookup): a clear
 * VB_ERR_BACKEND, and no sequence changed although sequence 0 ran before sequence 1 failed (all or
 * nothing); the context stays usable. */
TEST(onnx_run_failure_is_clean) {
    ox_pair p;
    if (ox_pair_open(&p, "gpt2-ctx512.gguf", "gpt2-f32.onnx") != 0) {
        ox_pair_close(&p);
        CHECKF(0, "%s", p.err);
    }
    /* 4 rows and 3 rows: two session calls (only sequences adding as many rows share one) */
    for (int i = 0; i < 4; i++) vb_batch_add(p.b, ox_prompt[i], i, 0, true);
    for (int i = 0; i < 3; i++) vb_batch_add(p.b, ox_prompt[i], 298 + i, 1, true);
    int rc1 = vb_forward(p.ox, p.b);
    char msg[512];
    snprintf(msg, sizeof msg, "%s", vb_context_error(p.ox));
    int32_t l0 = vb_kv_seq_len(p.ox, 0), l1 = vb_kv_seq_len(p.ox, 1);
    /* still usable: the rows of sequence 0 alone run (the cpu context has other weights: the
       GGUF only shares gpt2-f32.onnx's shapes) */
    vb_batch_clear(p.b);
    for (int i = 0; i < 4; i++) vb_batch_add(p.b, ox_prompt[i], i, 0, true);
    int rc3 = vb_forward(p.ox, p.b);
    int32_t l0_after = vb_kv_seq_len(p.ox, 0);
    ox_pair_close(&p);
    CHECKF(rc1 == VB_ERR_BACKEND && strstr(msg, "running the ONNX model"), "status %d: %s", rc1, msg);
    CHECKF(l0 == 0 && l1 == 0, "sequence lengths %d %d after a failed run", l0, l1);
    CHECKF(rc3 == VB_OK && l0_after == 4, "after the failure: status %d, %d rows", rc3, l0_after);
}

/* Sequences that add the same number of rows share one session call, their pasts of different
 * lengths right-aligned and padded: three sequences of 12, 5 and 9 rows decode together for 8
 * steps (and once two of them 2 rows each) with the same logits as cpu. */
TEST(onnx_grouped_sequences) {
    const char *archs[2][2] = {{"qwen3.gguf", "qwen3-f32.onnx"}, {"gpt2.gguf", "gpt2-f32.onnx"}};
    for (int a = 0; a < 2; a++) {
        ox_pair p;
        if (ox_pair_open(&p, archs[a][0], archs[a][1]) != 0) {
            ox_pair_close(&p);
            CHECKF(0, "%s", p.err);
        }
        const int len[3] = {12, 5, 9};
        double worst = 0;
        for (int q = 0; q < 3; q++) {
            vb_batch_clear(p.b);
            for (int i = 0; i < len[q]; i++) vb_batch_add(p.b, ox_prompt[(i + 3 * q) % OX_PROMPT], i, q, true);
            double e = ox_pair_forward(&p);
            if (e > worst) worst = e;
        }
        for (int step = 0; step < 8 && worst < 1e29; step++) {
            vb_batch_clear(p.b);
            for (int q = 0; q < 3; q++) vb_batch_add(p.b, (7 * step + 31 * q) % 250, len[q] + step, q, true);
            double e = ox_pair_forward(&p);
            if (e > worst) worst = e;
        }
        vb_batch_clear(p.b);
        for (int q = 0; q < 2; q++)
            for (int j = 0; j < 2; j++) vb_batch_add(p.b, 11 + j + q, len[q] + 8 + j, q, true);
        double e = ox_pair_forward(&p);
        if (e > worst) worst = e;
        ox_pair_close(&p);
        CHECKF(worst < 1e-4, "%s: grouped sequences: cpu vs onnx %.3g (%s)", archs[a][1], worst, p.err);
    }
}

/* A row gpt2 cannot embed is refused before anything runs; a batch the cache cannot hold is the
 * soft VB_KV_FULL with no sequence changed. */
TEST(onnx_rejects_and_kv_full) {
    ox_pair p;
    if (ox_pair_open(&p, "gpt2.gguf", "gpt2-f32.onnx") != 0) {
        ox_pair_close(&p);
        CHECKF(0, "%s", p.err);
    }
    vb_batch *big = vb_batch_init(128);
    int rc_pos, rc_fill = VB_OK, rc_full;
    vb_batch_add(p.b, 5, 256, 0, true); /* gpt2 fixture: 256 learned positions */
    rc_pos = vb_forward(p.ox, p.b);
    int32_t len_after_pos = vb_kv_seq_len(p.ox, 0);
    /* n_ctx 256 with 4 sequences: 16 + 4 blocks of 16 rows; seq 0 takes 15 blocks */
    for (int c = 0; c < 4 && rc_fill == VB_OK; c++) {
        vb_batch_clear(big);
        for (int i = 0; i < 60; i++) vb_batch_add(big, (c * 60 + i) % 250, c * 60 + i, 0, i == 59);
        rc_fill = vb_forward(p.ox, big);
    }
    vb_batch_clear(big);
    for (int i = 0; i < 60; i++) vb_batch_add(big, i, i, 1, false);
    for (int i = 0; i < 30; i++) vb_batch_add(big, i, i, 2, i == 29);
    rc_full = vb_forward(p.ox, big);
    int32_t l0 = vb_kv_seq_len(p.ox, 0), l1 = vb_kv_seq_len(p.ox, 1), l2 = vb_kv_seq_len(p.ox, 2);
    vb_batch_free(big);
    ox_pair_close(&p);
    CHECKF(rc_pos == VB_ERR_ARG && len_after_pos == 0, "position 256: status %d, seq len %d", rc_pos,
           len_after_pos);
    CHECKF(rc_fill == VB_OK, "filling the cache: status %d", rc_fill);
    CHECKF(rc_full == VB_KV_FULL, "over-full batch: status %d (want VB_KV_FULL)", rc_full);
    CHECKF(l0 == 240 && l1 == 0 && l2 == 0, "seq lens %d %d %d (want 240 0 0)", l0, l1, l2);
}

/* The probe reads the shape of the graph (compared with the GGUF the graph was made from) and
 * refuses what the backend refuses. */
TEST(onnx_probe) {
    char gpath[1200], opath[1200], err[512];
    OX_NEED(gpath, "qwen3.gguf");
    OX_NEED(opath, "qwen3-f16.onnx");
    vb_model *m = NULL;
    CHECKF(vb_model_load(gpath, NULL, &m, err, sizeof err) == VB_OK, "%s", err);
    const vb_model_info want = *vb_model_get_info(m);
    vb_model_free(m);
    vb_model_info got;
    memset(&got, 0, sizeof got);
    int rc = vb_onnx_probe(opath, &got, err, sizeof err);
    CHECKF(rc == VB_OK, "probe %s: %s", opath, err);
    CHECK_EQ_INT(got.n_layer, want.n_layer);
    CHECK_EQ_INT(got.n_head_kv, want.n_head_kv);
    CHECK_EQ_INT(got.head_dim, want.head_dim);
    CHECK_EQ_INT(got.n_vocab, want.n_vocab);
    CHECK(strcmp(got.arch, "onnx") == 0);
    OX_NEED(opath, "nopast.onnx");
    rc = vb_onnx_probe(opath, &got, err, sizeof err);
    CHECKF(rc == VB_ERR_FORMAT && strstr(err, "past_key_values"), "nopast: %d %s", rc, err);
    OX_NEED(opath, "corrupt.onnx");
    rc = vb_onnx_probe(opath, &got, err, sizeof err);
    CHECKF(rc == VB_ERR_FORMAT, "corrupt: %d %s", rc, err);
}

#endif
