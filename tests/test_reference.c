/* test_reference.c - whole-model check of the CPU backend against the independent numpy reference
 * (scripts/ref_forward.py, float64 from exactly dequantized weights) on the random-weight models
 * of scripts/fixtures/models.sh: every architecture (gpt2 llama qwen2 qwen3 wedlm phi3 gemma3) and
 * weight type.
 *
 * Uses only the public API. Per model, for KV types F32 and F16: load, create a "cpu" context,
 * run the 16-row script of the fixture in chunks (a prefill of 8 rows, 3 single rows, a chunk of
 * 5 rows, so the KV cache carries state across forwards and positions go backwards across a chunk
 * boundary) and compare every row's logits with the reference:
 *     err(row) = max_i |ours_i - ref_i| / max_i |ref_i|  <= tolerance of the weight type;
 * then truncate the sequence to 11 rows, fork it (if the backend can) and recompute the tail on
 * both copies; then run the script on two more sequences interleaved in the same batches.
 * For F32 weights with F32 KV also a 32-step greedy continuation (argmax fed back, on a second
 * sequence while the first still holds its rows) must equal the reference's, except that a step
 * whose reference top-2 margin is within rounding (< 2 * tolerance) ends the comparison.
 *
 * Tolerances. The reference is exact; what a correct kernel adds is rounding: its float32
 * arithmetic (F32: ~1e-6, bound 1e-4), f16 K/V storage (the reference's simulation, recorded as
 * sim_err_kvf16 in each fixture, gives at most 6.5e-4 here: bound 2e-3 on top of the type's), and
 * for F16/BF16/quantized weights the conversion of matmul inputs to f16/bf16 or to 8-bit blocks
 * (Q8_0-style blocks of 32 for Q8_0/Q4_0, Q8_K-style blocks of 256 for K-quants, as ggml does).
 * ref_forward.py simulates those roundings (recorded as sim_err_ggml); the worst over these
 * fixtures, with f16 K/V, is: F16 1.1e-3, BF16 8.1e-3, Q8_0 2.9e-2, Q4_0 2.5e-2, Q6_K 3.2e-2,
 * Q4_K 4.0e-2. Each bound is about twice that (F16 keeps 1e-2). Measured on these fixtures:
 * cpu backend Q8_0 up to 3.0e-2, Q4_0 3.0e-2, Q4_K 2.4e-2, Q6_K 2.0e-2 (F32/F16/BF16 ~5e-7);
 * llama.cpp (f16 KV) F32 8.8e-4, BF16 7.3e-3, Q8_0 2.1e-2, Q4_0 2.4e-2, Q6_K 2.6e-2, Q4_K 3.5e-2.
 * Bugs give far more: making the reference pair RoPE dims the other way, map GQA heads
 * h -> h % n_kv, shift one position, mask by position instead of row order, or misread Q4_K/Q6_K
 * scale bits changes its logits by 0.24 to 4.3 (max rel error).
 *
 * reference_agrees_with_llamacpp checks the reference itself against llama.cpp (the `llamacpp`
 * backend, when compiled in) on the same files: rows 0..9 of the script (monotonic positions).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "test.h"
#include "vibee.h"

#define REF_MAX_ROWS 64

typedef struct ref_fixture {
    int n_rows, n_vocab;
    int tokens[REF_MAX_ROWS], positions[REF_MAX_ROWS];
    int n_prompt, prompt[REF_MAX_ROWS], prompt_pos[REF_MAX_ROWS];
    int n_greedy, greedy[REF_MAX_ROWS];
    double margin[REF_MAX_ROWS];
    double sim_err_ggml;
    float *logits; /* [n_rows][n_vocab] */
} ref_fixture;

/* Tolerance (max relative error per row) of a weight type, KV F32. */
static double tol_for_type(const char *type) {
    if (!strcmp(type, "f32")) return 1e-4;
    if (!strcmp(type, "f16")) return 1e-2;
    if (!strcmp(type, "bf16")) return 2e-2;
    if (!strcmp(type, "q8_0")) return 6e-2;
    if (!strcmp(type, "q4_0")) return 5e-2;
    if (!strcmp(type, "q6_k")) return 6e-2;
    if (!strcmp(type, "q4_k")) return 8e-2;
    /* files written by `vibee quantize` under llama.cpp's presets (mixed types; named by the
       type of most of their matrices): same 8-bit activation rounding, same bound as Q4_K */
    static const char *const more[] = {"q4_1", "q5_0", "q5_1", "iq4_nl", "iq4_xs", "q2_k", "q3_k", "q5_k"};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
        if (!strcmp(type, more[i])) return 8e-2;
    return 0.0;
}
#define TOL_KV_F16_EXTRA 2e-3

static char *read_whole_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    if (fseek(f, 0, SEEK_END) == 0) {
        long n = ftell(f);
        if (n >= 0 && fseek(f, 0, SEEK_SET) == 0) {
            buf = malloc((size_t)n + 1);
            if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
                free(buf);
                buf = NULL;
            }
            if (buf) {
                buf[n] = '\0';
                if (len) *len = (size_t)n;
            }
        }
    }
    fclose(f);
    return buf;
}

/* Pointer just after `"key":` in a flat JSON object, or NULL. */
static const char *json_find(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\":", key);
    const char *p = strstr(json, pat);
    return p ? p + strlen(pat) : NULL;
}

/* Reads a JSON number array of at most cap values; returns the count or -1. */
static int json_numbers(const char *json, const char *key, double *out, int cap) {
    const char *p = json_find(json, key);
    if (!p) return -1;
    while (*p == ' ') p++;
    if (*p != '[') return -1;
    p++;
    int n = 0;
    for (;;) {
        while (*p == ' ' || *p == ',') p++;
        if (*p == ']') return n;
        char *end;
        double v = strtod(p, &end);
        if (end == p || n >= cap) return -1;
        out[n++] = v;
        p = end;
    }
}

static int json_ints(const char *json, const char *key, int *out, int cap) {
    double tmp[REF_MAX_ROWS];
    int n = json_numbers(json, key, tmp, cap < REF_MAX_ROWS ? cap : REF_MAX_ROWS);
    for (int i = 0; i < n; i++) out[i] = (int)tmp[i];
    return n;
}

static double json_number(const char *json, const char *key, double dflt) {
    const char *p = json_find(json, key);
    return p ? strtod(p, NULL) : dflt;
}

/* Loads <dir>/models/<name>.json and .bin; on failure fills msg and returns 0. */
static int fixture_load(const char *name, ref_fixture *fx, char *msg, size_t msg_len) {
    char path[512];
    memset(fx, 0, sizeof *fx);
    snprintf(path, sizeof path, "%s/models/%s.json", vbt_fixture_dir(), name);
    char *json = read_whole_file(path, NULL);
    if (!json) {
        snprintf(msg, msg_len,
                 "missing fixture %s: run `make fixtures` (scripts/fixtures/models.sh)",
                 path);
        return 0;
    }
    fx->n_rows = (int)json_number(json, "n_rows", 0);
    fx->n_vocab = (int)json_number(json, "n_vocab", 0);
    int nt = json_ints(json, "tokens", fx->tokens, REF_MAX_ROWS);
    int np = json_ints(json, "positions", fx->positions, REF_MAX_ROWS);
    fx->n_prompt = json_ints(json, "greedy_prompt", fx->prompt, REF_MAX_ROWS);
    int npp = json_ints(json, "greedy_prompt_positions", fx->prompt_pos, REF_MAX_ROWS);
    fx->n_greedy = json_ints(json, "greedy", fx->greedy, REF_MAX_ROWS);
    int nm = json_numbers(json, "greedy_margin", fx->margin, REF_MAX_ROWS);
    fx->sim_err_ggml = json_number(json, "sim_err_ggml", -1);
    free(json);
    if (fx->n_rows <= 0 || fx->n_vocab <= 0 || nt != fx->n_rows || np != fx->n_rows ||
        fx->n_prompt <= 0 || npp != fx->n_prompt || fx->n_greedy <= 0 || nm != fx->n_greedy) {
        snprintf(msg, msg_len, "fixture %s is malformed: rerun `make fixtures`", path);
        return 0;
    }
    snprintf(path, sizeof path, "%s/models/%s.bin", vbt_fixture_dir(), name);
    size_t len = 0;
    fx->logits = (float *)read_whole_file(path, &len);
    if (!fx->logits || len != (size_t)fx->n_rows * (size_t)fx->n_vocab * sizeof(float)) {
        snprintf(msg, msg_len, "fixture %s is missing or has the wrong size: run `make fixtures`",
                 path);
        free(fx->logits);
        fx->logits = NULL;
        return 0;
    }
    return 1;
}

/* max_i |a_i - b_i| / max_i |b_i| */
static double row_rel_err(const float *a, const float *b, int n) {
    double num = 0.0, den = 0.0;
    for (int i = 0; i < n; i++) {
        double d = (double)a[i] - (double)b[i];
        if (d < 0) d = -d;
        if (!(d <= num)) num = d; /* NaN propagates as a failure */
        double m = b[i] < 0 ? -(double)b[i] : (double)b[i];
        if (m > den) den = m;
    }
    return den > 0 ? num / den : num;
}

static int argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* One forward of batch rows (script row script_row[i] on sequence seq[i], all wanting logits),
 * then every row's logits compared with the reference row. Returns 1 if all are within tol;
 * fills msg otherwise. *worst keeps the largest error seen. */
static int forward_compare(vb_context *ctx, const ref_fixture *fx, const int *script_row,
                          const int *seq, int n, const char *what, double tol, double *worst,
                          char *msg, size_t msg_len) {
    vb_batch *batch = vb_batch_init(n);
    if (!batch) {
        snprintf(msg, msg_len, "vb_batch_init failed");
        return 0;
    }
    for (int i = 0; i < n; i++)
        vb_batch_add(batch, fx->tokens[script_row[i]], fx->positions[script_row[i]], seq[i], true);
    int ok = 1;
    int st = vb_forward(ctx, batch);
    if (st != VB_OK) {
        snprintf(msg, msg_len, "%s: vb_forward returned %d (%s): %s", what, st, vb_status_str(st),
                 vb_context_error(ctx));
        ok = 0;
    }
    for (int i = 0; ok && i < n; i++) {
        const int r = script_row[i];
        const float *lg = vb_get_logits(ctx, i);
        if (!lg) {
            snprintf(msg, msg_len, "%s: no logits for batch row %d", what, i);
            ok = 0;
            break;
        }
        double e = row_rel_err(lg, fx->logits + (size_t)r * fx->n_vocab, fx->n_vocab);
        if (!(e <= *worst)) *worst = e;
        if (!(e <= tol)) {
            snprintf(msg, msg_len,
                     "%s: batch row %d (seq %d, script row %d, token %d, position %d): "
                     "max rel error %.3g > %.3g",
                     what, i, seq[i], r, fx->tokens[r], fx->positions[r], e, tol);
            ok = 0;
        }
    }
    vb_batch_free(batch);
    return ok;
}

static int expect_seq_len(vb_context *ctx, int seq, int want, char *msg, size_t msg_len) {
    int got = vb_kv_seq_len(ctx, seq);
    if (got != want) {
        snprintf(msg, msg_len, "vb_kv_seq_len(seq %d) = %d, expected %d", seq, got, want);
        return 0;
    }
    return 1;
}

/* The script on seq 0 in chunks [0,8) [8] [9] [10] [11,n): the KV cache carries the state
 * across forwards and the positions go backwards (12, 10, 11) across a chunk boundary. */
static int check_script(vb_context *ctx, const ref_fixture *fx, double tol, double *worst,
                        char *msg, size_t msg_len) {
    const int bounds[] = {0, 8, 9, 10, 11, fx->n_rows};
    int rows[REF_MAX_ROWS], seqs[REF_MAX_ROWS] = {0};
    for (int c = 0; c + 1 < (int)(sizeof bounds / sizeof bounds[0]); c++) {
        char what[64];
        int n = 0;
        for (int r = bounds[c]; r < bounds[c + 1]; r++) rows[n++] = r;
        snprintf(what, sizeof what, "script rows %d..%d on seq 0", bounds[c], bounds[c + 1] - 1);
        if (!forward_compare(ctx, fx, rows, seqs, n, what, tol, worst, msg, msg_len)) return 0;
    }
    return expect_seq_len(ctx, 0, fx->n_rows, msg, msg_len);
}

/* After check_script: truncate seq 0 to 11 rows, fork it to seq 4 (when the backend can), and
 * recompute rows 11.. on both: the same logits as the reference. */
static int check_kv_ops(vb_context *ctx, const ref_fixture *fx, double tol, double *worst,
                        char *msg, size_t msg_len) {
    const int keep = 11;
    int rows[REF_MAX_ROWS], seqs[REF_MAX_ROWS];
    int n = 0;
    for (int r = keep; r < fx->n_rows; r++) rows[n++] = r;
    int st = vb_kv_truncate(ctx, 0, keep);
    if (st != VB_OK) {
        snprintf(msg, msg_len, "vb_kv_truncate(seq 0, %d) returned %d: %s", keep, st,
                 vb_context_error(ctx));
        return 0;
    }
    if (!expect_seq_len(ctx, 0, keep, msg, msg_len)) return 0;
    if (vb_context_caps(ctx).kv_fork) {
        st = vb_kv_fork(ctx, 0, 4);
        if (st != VB_OK) {
            snprintf(msg, msg_len, "vb_kv_fork(0 -> 4) returned %d: %s", st, vb_context_error(ctx));
            return 0;
        }
        for (int i = 0; i < n; i++) seqs[i] = 4;
        if (!forward_compare(ctx, fx, rows, seqs, n, "rows 11.. on seq 4 forked from seq 0", tol,
                             worst, msg, msg_len))
            return 0;
        if (!expect_seq_len(ctx, 4, fx->n_rows, msg, msg_len)) return 0;
        if (!expect_seq_len(ctx, 0, keep, msg, msg_len)) return 0;
    }
    for (int i = 0; i < n; i++) seqs[i] = 0;
    if (!forward_compare(ctx, fx, rows, seqs, n, "rows 11.. again on seq 0 after truncation", tol,
                         worst, msg, msg_len))
        return 0;
    return expect_seq_len(ctx, 0, fx->n_rows, msg, msg_len);
}

/* Two sequences (2 and 3) in the same batches, interleaved: rows 0..7 of seq 2 with rows 0..9
 * of seq 3, then the rest of seq 3 before the rest of seq 2. Each sequence sees only its own
 * rows, so both must give the reference logits. */
static int check_interleaved(vb_context *ctx, const ref_fixture *fx, double tol, double *worst,
                             char *msg, size_t msg_len) {
    int rows[2 * REF_MAX_ROWS], seqs[2 * REF_MAX_ROWS];
    int n = 0, a = 0, b = 0;
    const int split_a = 8, split_b = 10;
    while (a < split_a || b < split_b) {
        if (b < split_b) rows[n] = b++, seqs[n++] = 3;
        if (a < split_a) rows[n] = a++, seqs[n++] = 2;
    }
    if (!forward_compare(ctx, fx, rows, seqs, n, "interleaved seqs 2 and 3, first batch", tol,
                         worst, msg, msg_len))
        return 0;
    n = 0;
    while (b < fx->n_rows) rows[n] = b++, seqs[n++] = 3;
    while (a < fx->n_rows) rows[n] = a++, seqs[n++] = 2;
    if (!forward_compare(ctx, fx, rows, seqs, n, "seqs 3 then 2, second batch", tol, worst, msg,
                         msg_len))
        return 0;
    return expect_seq_len(ctx, 2, fx->n_rows, msg, msg_len) &&
           expect_seq_len(ctx, 3, fx->n_rows, msg, msg_len);
}

/* Greedy continuation on seq 1; returns 1 when it matches the reference (up to an ambiguous
 * step). */
static int check_greedy(vb_context *ctx, const ref_fixture *fx, double tol, int *n_compared,
                        char *msg, size_t msg_len) {
    vb_batch *batch = vb_batch_init(fx->n_prompt);
    if (!batch) {
        snprintf(msg, msg_len, "vb_batch_init failed");
        return 0;
    }
    int ok = 1;
    for (int i = 0; i < fx->n_prompt; i++)
        vb_batch_add(batch, fx->prompt[i], fx->prompt_pos[i], 1, i == fx->n_prompt - 1);
    int st = vb_forward(ctx, batch);
    int pos = fx->prompt_pos[fx->n_prompt - 1] + 1;
    const float *lg = st == VB_OK ? vb_get_logits(ctx, fx->n_prompt - 1) : NULL;
    *n_compared = 0;
    for (int step = 0; ok && step < fx->n_greedy; step++) {
        if (!lg) {
            snprintf(msg, msg_len, "greedy step %d: forward returned %d (%s): %s", step, st,
                     vb_status_str(st), vb_context_error(ctx));
            ok = 0;
            break;
        }
        int t = argmax(lg, fx->n_vocab);
        if (t != fx->greedy[step]) {
            if (fx->margin[step] > 2.0 * tol) {
                snprintf(msg, msg_len,
                         "greedy step %d: token %d, reference %d (reference margin %.3g)", step, t,
                         fx->greedy[step], fx->margin[step]);
                ok = 0;
            }
            break; /* a near-tie: the continuations may differ from here on */
        }
        (*n_compared)++;
        vb_batch_clear(batch);
        vb_batch_add(batch, t, pos++, 1, true);
        st = vb_forward(ctx, batch);
        lg = st == VB_OK ? vb_get_logits(ctx, 0) : NULL;
    }
    vb_batch_free(batch);
    return ok;
}

/* The whole check of one fixture model. */
static void run_reference_case(const char *name, const char *type) {
    char msg[1024];
    ref_fixture fx;
    if (!fixture_load(name, &fx, msg, sizeof msg)) {
        vbt_fail(__FILE__, __LINE__, msg);
        return;
    }
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/models/%s.gguf", vbt_fixture_dir(), name);
    vb_model_params mp = vb_model_default_params();
    vb_model *model = NULL;
    int st = vb_model_load(path, &mp, &model, err, sizeof err);
    if (st != VB_OK || !model) {
        free(fx.logits);
        snprintf(msg, sizeof msg, "%s: vb_model_load returned %d: %s", name, st, err);
        vbt_fail(__FILE__, __LINE__, msg);
        return;
    }
    const vb_model_info *info = vb_model_get_info(model);
    if (info->n_vocab != fx.n_vocab) {
        vb_model_free(model);
        free(fx.logits);
        snprintf(msg, sizeof msg, "%s: n_vocab %d, fixture says %d", name, info->n_vocab,
                 fx.n_vocab);
        vbt_fail(__FILE__, __LINE__, msg);
        return;
    }
    const double tol = tol_for_type(type);
    const int kv_types[2] = {VB_KV_F32, VB_KV_F16};
    int ok = 1;
    for (int k = 0; k < 2 && ok; k++) {
        vb_context_params cp = vb_context_default_params();
        cp.backend = "cpu";
        cp.n_threads = 2;
        cp.kv_type = kv_types[k];
        vb_context *ctx = NULL;
        st = vb_context_init(model, &cp, &ctx, err, sizeof err);
        if (st != VB_OK || !ctx) {
            snprintf(msg, sizeof msg, "%s: vb_context_init(cpu, kv %s) returned %d: %s", name,
                     k ? "f16" : "f32", st, err);
            ok = 0;
            break;
        }
        double t = tol + (kv_types[k] == VB_KV_F16 ? TOL_KV_F16_EXTRA : 0.0);
        double worst = 0.0;
        char sub[512];
        if (!check_script(ctx, &fx, t, &worst, sub, sizeof sub) ||
            !check_kv_ops(ctx, &fx, t, &worst, sub, sizeof sub) ||
            !check_interleaved(ctx, &fx, t, &worst, sub, sizeof sub)) {
            snprintf(msg, sizeof msg,
                     "%s (%s, kv %s): %s [ggml-style rounding alone, with f16 KV: %.3g]",
                     name, type, k ? "f16" : "f32", sub, fx.sim_err_ggml);
            ok = 0;
        } else {
            printf("     %-16s kv %s: script, truncate+fork, 2 interleaved seqs: "
                   "max rel error %.3g (bound %.3g)\n",
                   name, k ? "f16" : "f32", worst, t);
        }
        if (ok && kv_types[k] == VB_KV_F32 && !strcmp(type, "f32")) {
            int n_cmp = 0;
            if (!check_greedy(ctx, &fx, t, &n_cmp, sub, sizeof sub)) {
                snprintf(msg, sizeof msg, "%s: %s", name, sub);
                ok = 0;
            } else {
                printf("     %-16s greedy: %d/%d steps equal the reference\n", name, n_cmp,
                       fx.n_greedy);
            }
        }
        vb_context_free(ctx);
    }
    vb_model_free(model);
    free(fx.logits);
    if (!ok) vbt_fail(__FILE__, __LINE__, msg);
}

/* The reference against llama.cpp (the `llamacpp` backend, when compiled in) on the same file:
 * script rows 0..9 (llama.cpp refuses positions that go backwards) in chunks [0,8) [8] [9].
 * llama.cpp keeps K/V in f16 and rounds matmul inputs as ggml does, hence the f16-KV bound.
 * Returns 1 when checked, 0 when the backend is not compiled in; fills msg on failure. */
static int run_llamacpp_case(const char *name, const char *type, int *failed, char *msg,
                             size_t msg_len) {
    ref_fixture fx;
    *failed = 0;
    if (!fixture_load(name, &fx, msg, msg_len)) {
        *failed = 1;
        return 1;
    }
    char path[512], err[512] = "";
    snprintf(path, sizeof path, "%s/models/%s.gguf", vbt_fixture_dir(), name);
    vb_model_params mp = vb_model_default_params();
    vb_model *model = NULL;
    vb_context *ctx = NULL;
    int checked = 1;
    int st = vb_model_load(path, &mp, &model, err, sizeof err);
    if (st != VB_OK) {
        snprintf(msg, msg_len, "%s: vb_model_load returned %d: %s", name, st, err);
        *failed = 1;
        goto done;
    }
    vb_context_params cp = vb_context_default_params();
    cp.backend = "llamacpp";
    cp.n_threads = 2;
    st = vb_context_init(model, &cp, &ctx, err, sizeof err);
    if (st == VB_ERR_BACKEND && strstr(err, "unknown backend")) {
        checked = 0;
        goto done;
    }
    if (st != VB_OK) {
        snprintf(msg, msg_len, "%s: vb_context_init(llamacpp) returned %d: %s", name, st, err);
        *failed = 1;
        goto done;
    }
    const int bounds[] = {0, 8, 9, 10};
    int rows[REF_MAX_ROWS], seqs[REF_MAX_ROWS] = {0};
    double worst = 0.0, tol = tol_for_type(type) + TOL_KV_F16_EXTRA;
    for (int c = 0; c < 3 && !*failed; c++) {
        int n = 0;
        for (int r = bounds[c]; r < bounds[c + 1]; r++) rows[n++] = r;
        char sub[512];
        if (!forward_compare(ctx, &fx, rows, seqs, n, "llamacpp rows 0..9", tol, &worst, sub,
                             sizeof sub)) {
            snprintf(msg, msg_len, "%s (%s): %s", name, type, sub);
            *failed = 1;
        }
    }
    if (!*failed)
        printf("     %-16s llama.cpp vs reference: max rel error %.3g (bound %.3g)\n", name, worst,
               tol);
done:
    vb_context_free(ctx);
    vb_model_free(model);
    free(fx.logits);
    return checked;
}

/* The fixture models of scripts/fixtures/models.sh, their weight types, and whether the
 * llama.cpp comparison uses them (a subset covering every architecture and type: a llama.cpp
 * model load costs about 0.3 s). */
static const struct {
    const char *name, *type;
    int with_llamacpp;
} reference_models[] = {
    {"gpt2-f32", "f32", 1},       {"gpt2-f16-long", "f16", 0},  {"gpt2-q8_0", "q8_0", 1},
    {"llama-f32", "f32", 1},      {"llama-f16-mqa", "f16", 0},  {"llama-bf16", "bf16", 1},
    {"llama-q4_0", "q4_0", 1},    {"llama-q4_k", "q4_k", 1},    {"qwen2-f32-long", "f32", 1},
    {"qwen2-q8_0", "q8_0", 0},    {"qwen2-q6_k", "q6_k", 1},    {"qwen3-f32", "f32", 0},
    {"qwen3-f16-long", "f16", 1}, {"qwen3-bf16", "bf16", 0},    {"qwen3-q8_0", "q8_0", 0},
    {"qwen3-q4_0", "q4_0", 0},    {"qwen3-q4_k", "q4_k", 0},
    {"wedlm-f32", "f32", 0},      {"phi3-f32", "f32", 1},       {"phi3-f16-long", "f16", 1},
    {"phi3-q8_0", "q8_0", 1},     {"gemma3-f32", "f32", 1},     {"gemma3-q8_0", "q8_0", 1},
    {"gemma3-f16-cap", "f16", 1},
    {"qwen2-896-q4_k_m", "q5_0", 1}, {"qwen2-896-q3_k_m", "iq4_nl", 1}, {"qwen2-896-q5_k_s", "q5_1", 1},
    {"llama-256-q2_k", "q2_k", 1},   {"llama-256-q3_k_l", "q3_k", 1},   {"llama-256-q5_k_m", "q5_k", 1},
    {"llama-256-q4_1", "q4_1", 1},   {"llama-256-iq4_nl", "iq4_nl", 1}, {"llama-256-iq4_xs", "iq4_xs", 1},
};

TEST(reference_agrees_with_llamacpp) {
    int n_models = (int)(sizeof reference_models / sizeof reference_models[0]);
    for (int i = 0; i < n_models; i++) {
        if (!reference_models[i].with_llamacpp) continue;
        char msg[1024];
        int failed = 0;
        if (!run_llamacpp_case(reference_models[i].name, reference_models[i].type, &failed, msg,
                               sizeof msg)) {
            printf("     llamacpp backend not compiled in: skipped\n");
            return;
        }
        if (failed) {
            vbt_fail(__FILE__, __LINE__, msg);
            return;
        }
    }
}

/* One test per fixture model for the cpu backend. */
#define REFERENCE_TEST(fn, name, type) \
    TEST(fn) { run_reference_case(name, type); }

REFERENCE_TEST(reference_gpt2_f32, "gpt2-f32", "f32")
REFERENCE_TEST(reference_gpt2_f16_long, "gpt2-f16-long", "f16")
REFERENCE_TEST(reference_gpt2_q8_0, "gpt2-q8_0", "q8_0")
REFERENCE_TEST(reference_llama_f32_gqa, "llama-f32", "f32")
REFERENCE_TEST(reference_llama_f16_mqa, "llama-f16-mqa", "f16")
REFERENCE_TEST(reference_llama_bf16, "llama-bf16", "bf16")
REFERENCE_TEST(reference_llama_q4_0, "llama-q4_0", "q4_0")
REFERENCE_TEST(reference_llama_q4_k, "llama-q4_k", "q4_k")
REFERENCE_TEST(reference_qwen2_f32_long, "qwen2-f32-long", "f32")
REFERENCE_TEST(reference_qwen2_q8_0, "qwen2-q8_0", "q8_0")
REFERENCE_TEST(reference_qwen2_q6_k, "qwen2-q6_k", "q6_k")
REFERENCE_TEST(reference_qwen3_f32, "qwen3-f32", "f32")
REFERENCE_TEST(reference_qwen3_f16_long, "qwen3-f16-long", "f16")
REFERENCE_TEST(reference_qwen3_bf16, "qwen3-bf16", "bf16")
REFERENCE_TEST(reference_qwen3_q8_0, "qwen3-q8_0", "q8_0")
REFERENCE_TEST(reference_qwen3_q4_0, "qwen3-q4_0", "q4_0")
REFERENCE_TEST(reference_qwen3_q4_k, "qwen3-q4_k", "q4_k")
REFERENCE_TEST(reference_wedlm_f32, "wedlm-f32", "f32")
REFERENCE_TEST(reference_phi3_f32, "phi3-f32", "f32")
REFERENCE_TEST(reference_phi3_f16_long_rope_factors, "phi3-f16-long", "f16")
REFERENCE_TEST(reference_phi3_q8_0, "phi3-q8_0", "q8_0")
REFERENCE_TEST(reference_gemma3_f32_local_global, "gemma3-f32", "f32")
REFERENCE_TEST(reference_gemma3_q8_0_rope_scale, "gemma3-q8_0", "q8_0")
REFERENCE_TEST(reference_gemma3_f16_softcap, "gemma3-f16-cap", "f16")
REFERENCE_TEST(reference_qwen2_896_q4_k_m, "qwen2-896-q4_k_m", "q5_0")
REFERENCE_TEST(reference_qwen2_896_q3_k_m, "qwen2-896-q3_k_m", "iq4_nl")
REFERENCE_TEST(reference_qwen2_896_q5_k_s, "qwen2-896-q5_k_s", "q5_1")
REFERENCE_TEST(reference_llama_256_q2_k, "llama-256-q2_k", "q2_k")
REFERENCE_TEST(reference_llama_256_q3_k_l, "llama-256-q3_k_l", "q3_k")
REFERENCE_TEST(reference_llama_256_q5_k_m, "llama-256-q5_k_m", "q5_k")
REFERENCE_TEST(reference_llama_256_q4_1, "llama-256-q4_1", "q4_1")
REFERENCE_TEST(reference_llama_256_iq4_nl, "llama-256-iq4_nl", "iq4_nl")
REFERENCE_TEST(reference_llama_256_iq4_xs, "llama-256-iq4_xs", "iq4_xs")

/* general.architecture = wedlm (WeDLM checkpoints for llama.cpp: the qwen3 graph, keys under
 * wedlm.*): the fixture wedlm-f32 holds qwen3-f32's weights, so the cpu backend must give the
 * same logits bit for bit on the whole script; and its mask token, named only by the text
 * <|mask|> in the vocabulary (no tokenizer.ggml.mask_token_id), must be found (id n_vocab-2). */
TEST(reference_wedlm_arch_equals_qwen3) {
    const char *names[2] = {"qwen3-f32", "wedlm-f32"};
    float *logits[2] = {NULL, NULL};
    int n_vocab = 0, n_rows = 0;
    for (int k = 0; k < 2; k++) {
        char msg[512], path[512], err[512] = "";
        ref_fixture fx;
        CHECKF(fixture_load(names[k], &fx, msg, sizeof msg), "%s", msg);
        free(fx.logits);
        snprintf(path, sizeof path, "%s/models/%s.gguf", vbt_fixture_dir(), names[k]);
        vb_model *m = NULL;
        CHECKF(vb_model_load(path, NULL, &m, err, sizeof err) == VB_OK, "%s: %s", names[k], err);
        const vb_model_info *info = vb_model_get_info(m);
        if (k == 1) {
            CHECKF(!strcmp(info->arch, "wedlm"), "arch %s", info->arch);
            CHECKF(info->mask == info->n_vocab - 2, "wedlm mask token %d, want %d", info->mask,
                   info->n_vocab - 2);
        }
        n_vocab = info->n_vocab;
        n_rows = fx.n_rows;
        vb_context_params cp = vb_context_default_params();
        cp.backend = "cpu";
        cp.n_threads = 2;
        vb_context *ctx = NULL;
        CHECKF(vb_context_init(m, &cp, &ctx, err, sizeof err) == VB_OK, "%s: %s", names[k], err);
        vb_batch *b = vb_batch_init(fx.n_rows);
        for (int i = 0; i < fx.n_rows; i++) vb_batch_add(b, fx.tokens[i], fx.positions[i], 0, true);
        CHECK_EQ_INT(vb_forward(ctx, b), VB_OK);
        logits[k] = malloc((size_t)fx.n_rows * (size_t)n_vocab * sizeof(float));
        CHECK(logits[k] != NULL);
        for (int i = 0; i < fx.n_rows; i++)
            memcpy(logits[k] + (size_t)i * n_vocab, vb_get_logits(ctx, i), (size_t)n_vocab * sizeof(float));
        vb_batch_free(b);
        vb_context_free(ctx);
        vb_model_free(m);
    }
    CHECK(memcmp(logits[0], logits[1], (size_t)n_rows * (size_t)n_vocab * sizeof(float)) == 0);
    printf("     wedlm-f32 == qwen3-f32: %d rows x %d logits identical\n", n_rows, n_vocab);
    free(logits[0]);
    free(logits[1]);
}
