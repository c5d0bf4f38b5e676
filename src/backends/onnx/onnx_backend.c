/* onnx_backend.c - the `onnx` backend (the vb_backend_ops table of backend.h): runs a decoder
 * graph in Hugging Face optimum's layout through ONNX Runtime (onnx_runtime.c) with its K/V kept
 * in vibee's paged cache (src/kv), so truncate, fork and stats work as on `cpu`.
 *
 * Each session call runs the new rows of one sequence, or of several sequences that add the same
 * number of rows (batch dimension k): their cached rows are gathered from the cache blocks into
 * the past tensors ([k][kv_heads][past][head_dim] per layer, K and V; shorter pasts right-aligned
 * with zero padding that attention_mask masks out), the session runs on the new rows (input_ids,
 * position_ids = the rows' logical positions), and the new rows of the present tensors are
 * scattered back into the cache. When one sequence continues alone (AR decoding), the last run's
 * present tensors already hold its rows in the past layout and are passed as the past without
 * gathering (buffer swap).
 * The graph's causal mask follows row order (scripts/export_onnx.py builds it so), which is
 * vibee's physical-order causality (DESIGN section 3).
 *
 * The ONNX file comes from the backend option onnx=PATH (or the model's own path when the model
 * was loaded as an ONNX model); the vb_model supplies the tokenizer and the hyper-parameters,
 * which are checked against the graph's input metadata. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../backend.h"
#include "../../kv/kv_cache.h"
#include "../../model.h"
#include "../../types.h"
#include "onnx_backend.h"
#include "onnx_runtime.h"

typedef struct onnx_state {
    const vb_model *model;
    char *err; /* the context's VB_ERR_LEN error buffer */
    vb_ort_options opts;
    vb_ort rt;
    OrtSession *session;
    vb_ort_graph g;
    vb_kv_cache *kv;
    int32_t n_seq_max;
    int32_t n_batch_max;
    int32_t n_vocab;
    int32_t kv_dim;        /* n_head_kv * head_dim: one cache row */
    size_t kv_esz;         /* bytes per K/V element (4 f32, 2 f16) */
    size_t logit_esz;      /* bytes per logit element */
    int32_t n_pos_max;     /* gpt2: learned positions (0 = no limit) */

    /* buffers, grown on demand (cap_rows = the most k * (past + new) rows a call has needed) */
    int64_t cap_rows;
    void *past;            /* [n_layer][2][k][n_head_kv][P][head_dim] kv_esz elements */
    void *present;         /* [n_layer][2][k][n_head_kv][P+S][head_dim] */
    int64_t *mask;         /* [k][P+S] attention_mask: 0 on padding rows */
    int64_t *ids;          /* [n_batch_max] input_ids of one call, [k][S] */
    int64_t *pos;          /* [n_batch_max] position_ids, [k][S] */
    void *logits_buf;      /* [n_batch_max][n_vocab] logit_esz elements */
    OrtValue **in_vals;    /* [n_inputs] */
    OrtValue **out_vals;   /* [n_outputs] */

    /* per-batch scratch */
    vb_seq *seq_order;     /* [n_seq_max] sequences in order of first row */
    int32_t *seq_old_len;  /* [n_seq_max] rows before the batch */
    int32_t *seq_n_new;    /* [n_seq_max] rows the batch adds */
    unsigned char *seq_seen; /* [n_seq_max] */
    vb_seq *grp_seq;       /* [n_seq_max] the sequences of one session call */
    int32_t *grp_past;     /* [n_seq_max] their cached rows */
    int32_t *grp_rows;     /* [n_batch_max] their batch rows, [k][n_new] */
    int32_t *logit_slot;   /* [n_batch_max] k of row i among the rows with logits, -1 if none */
    int32_t *kv_row;       /* [n_batch_max] each row's index in its sequence */

    /* The last run's present tensors are the next run's past tensors when the next run continues
       the same sequence (AR decoding): the buffers are swapped instead of gathering the past from
       the cache. Valid while that sequence's rows are exactly the rows of that run. */
    bool mirror_valid;
    vb_seq mirror_seq;     /* sequence whose rows s->present holds */
    int32_t mirror_len;    /* rows it holds */

    /* timing (seconds): gather = past copy, run = session, scatter = present copy */
    double t_gather, t_run, t_scatter;
    int64_t n_runs, n_rows_run, n_gathers_saved;
} onnx_state;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void release_values(onnx_state *s) {
    if (!s->rt.api) return;
    for (int32_t i = 0; s->in_vals && i < s->g.n_inputs; i++) {
        if (s->in_vals[i]) s->rt.api->ReleaseValue(s->in_vals[i]);
        s->in_vals[i] = NULL;
    }
    for (int32_t i = 0; s->out_vals && i < s->g.n_outputs; i++) {
        if (s->out_vals[i]) s->rt.api->ReleaseValue(s->out_vals[i]);
        s->out_vals[i] = NULL;
    }
}

static void onnx_free(void *state) {
    onnx_state *s = state;
    if (!s) return;
    if (s->opts.timing && s->n_runs > 0)
        fprintf(stderr,
                "onnx timing: %lld session runs (%lld reused the previous present as past), %lld "
                "rows: session %.3f s, past gather %.3f s, present scatter %.3f s (copies = %.1f%% "
                "of session time)\n",
                (long long)s->n_runs, (long long)s->n_gathers_saved, (long long)s->n_rows_run,
                s->t_run, s->t_gather, s->t_scatter,
                s->t_run > 0 ? 100.0 * (s->t_gather + s->t_scatter) / s->t_run : 0.0);
    release_values(s);
    if (s->session) s->rt.api->ReleaseSession(s->session);
    vb_ort_graph_free(&s->g);
    vb_ort_unload(&s->rt);
    vb_kvc_free(s->kv);
    free(s->past);
    free(s->present);
    free(s->mask);
    free(s->ids);
    free(s->pos);
    free(s->logits_buf);
    free(s->in_vals);
    free(s->out_vals);
    free(s->seq_order);
    free(s->seq_old_len);
    free(s->seq_seen);
    free(s->seq_n_new);
    free(s->grp_seq);
    free(s->grp_past);
    free(s->grp_rows);
    free(s->logit_slot);
    free(s->kv_row);
    free(s);
}

static int default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1) n = 1;
    if (n > 64) n = 64;
    return (int)n;
}

/* The graph must describe the same model as the vb_model (when the model knows its shape). */
static int check_against_model(onnx_state *s) {
    const vb_model_info *in = &s->model->info;
    const vb_ort_graph *g = &s->g;
    const char *path = s->opts.onnx_path;
    if (in->n_layer > 0 && in->n_layer != g->n_layer)
        return vb_errf(s->err, VB_ERR_FORMAT,
                       "onnx backend: %s has %d layers (past_key_values.*) but model '%s' has %d: "
                       "the ONNX file and the model (-m, which gives the tokenizer and "
                       "hyper-parameters) must be the same network", path, g->n_layer, in->name,
                       in->n_layer);
    if (in->n_head_kv > 0 && in->n_head_kv != g->n_head_kv)
        return vb_errf(s->err, VB_ERR_FORMAT,
                       "onnx backend: %s has %d KV heads but model '%s' has %d: not the same network",
                       path, g->n_head_kv, in->name, in->n_head_kv);
    if (in->head_dim > 0 && in->head_dim != g->head_dim)
        return vb_errf(s->err, VB_ERR_FORMAT,
                       "onnx backend: %s has head_dim %d but model '%s' has %d: not the same network",
                       path, g->head_dim, in->name, in->head_dim);
    if (in->n_vocab <= 0)
        return vb_errf(s->err, VB_ERR_FORMAT, "onnx backend: model '%s' does not know its vocabulary "
                       "size", in->name);
    if (g->n_vocab > 0 && g->n_vocab != in->n_vocab)
        return vb_errf(s->err, VB_ERR_FORMAT,
                       "onnx backend: %s has %d logits per row but model '%s' has %d tokens: the "
                       "tokenizer does not belong to this network", path, g->n_vocab, in->name,
                       in->n_vocab);
    return VB_OK;
}

static int onnx_init(const vb_model *model, const vb_context_params *params, void **state,
                     char *err) {
    *state = NULL;
    onnx_state *s = calloc(1, sizeof *s);
    if (!s) return vb_errf(err, VB_ERR_NOMEM, "onnx backend: out of memory");
    s->model = model;
    s->err = err;
    int rc = vb_ort_parse_options(params->backend_options, &s->opts, err);
    if (rc == VB_OK && !s->opts.onnx_path[0] && model->owner == &vb_backend_onnx)
        snprintf(s->opts.onnx_path, sizeof s->opts.onnx_path, "%s", model->path);
    if (rc == VB_OK && !s->opts.onnx_path[0])
        rc = vb_errf(err, VB_ERR_ARG,
                     "onnx backend: no ONNX model: pass the backend option onnx=PATH/model.onnx "
                     "(CLI: --backend-options onnx=PATH); the -m model gives the tokenizer and "
                     "hyper-parameters");
    if (rc == VB_OK) rc = vb_ort_load(&s->rt, &s->opts, err);
    const int32_t n_threads = params->n_threads > 0 ? params->n_threads : default_threads();
    if (rc == VB_OK) rc = vb_ort_session_create(&s->rt, &s->opts, n_threads, &s->session, &s->g, err);
    if (rc == VB_OK) rc = check_against_model(s);
    if (rc != VB_OK) {
        onnx_free(s);
        return rc;
    }
    const vb_ort_graph *g = &s->g;
    s->n_vocab = model->info.n_vocab;
    s->n_seq_max = params->n_seq_max > 0 ? params->n_seq_max : 16;
    s->n_batch_max = params->n_batch_max > 0 ? params->n_batch_max : 512;
    s->kv_dim = g->n_head_kv * g->head_dim;
    s->kv_esz = g->kv_elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? 2 : 4;
    s->logit_esz = g->logits_elem == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16 ? 2 : 4;
    if (strcmp(model->info.arch, "gpt2") == 0) s->n_pos_max = model->info.n_ctx_train;

    const int32_t block_size = params->block_size > 0 ? params->block_size : 16;
    int32_t n_ctx = params->n_ctx;
    if (n_ctx <= 0)
        n_ctx = model->info.n_ctx_train > 0 && model->info.n_ctx_train < 4096 ? model->info.n_ctx_train
                                                                              : 4096;
    /* the cache holds the graph's own past/present type, so rows are copied, never converted */
    vb_kv_config cfg = {
        .n_layer = g->n_layer,
        .kv_dim = s->kv_dim,
        .block_size = block_size,
        .n_blocks = vb_kvc_blocks_for_ctx(n_ctx, block_size, s->n_seq_max),
        .n_seq_max = s->n_seq_max,
        .kv_type = s->kv_esz == 2 ? VB_KV_F16 : VB_KV_F32,
    };
    rc = vb_kvc_create(&cfg, &s->kv);
    if (rc != VB_OK) {
        onnx_free(s);
        return vb_errf(err, rc, "onnx backend: cannot create the KV cache (%d blocks of %d rows, "
                       "%d layers, kv_dim %d): %s", cfg.n_blocks, block_size, cfg.n_layer,
                       cfg.kv_dim, vb_status_str(rc));
    }
    const size_t B = (size_t)s->n_batch_max;
    s->ids = malloc(B * sizeof *s->ids);
    s->pos = malloc(B * sizeof *s->pos);
    s->logits_buf = malloc(B * (size_t)s->n_vocab * s->logit_esz);
    s->in_vals = calloc((size_t)g->n_inputs, sizeof *s->in_vals);
    s->out_vals = calloc((size_t)g->n_outputs, sizeof *s->out_vals);
    s->seq_order = malloc((size_t)s->n_seq_max * sizeof *s->seq_order);
    s->seq_old_len = malloc((size_t)s->n_seq_max * sizeof *s->seq_old_len);
    s->seq_seen = malloc((size_t)s->n_seq_max);
    s->logit_slot = malloc(B * sizeof *s->logit_slot);
    s->seq_n_new = malloc((size_t)s->n_seq_max * sizeof *s->seq_n_new);
    s->grp_seq = malloc((size_t)s->n_seq_max * sizeof *s->grp_seq);
    s->grp_past = malloc((size_t)s->n_seq_max * sizeof *s->grp_past);
    s->grp_rows = malloc(B * sizeof *s->grp_rows);
    s->kv_row = malloc(B * sizeof *s->kv_row);
    if (!s->ids || !s->pos || !s->logits_buf || !s->in_vals || !s->out_vals || !s->seq_order ||
        !s->seq_old_len || !s->seq_seen || !s->logit_slot || !s->seq_n_new || !s->grp_seq ||
        !s->grp_past || !s->grp_rows || !s->kv_row) {
        onnx_free(s);
        return vb_errf(err, VB_ERR_NOMEM, "onnx backend: out of memory");
    }
    *state = s;
    return VB_OK;
}

static vb_backend_caps onnx_caps(void *state) {
    onnx_state *s = state;
    vb_backend_caps c = {0};
    /* the graph masks by row order (see the file comment); without a position_ids input it also
       takes the row index as the position, so only row-index positions can be run */
    c.physical_causality = s->g.has_position_ids;
    c.paged_kv = true;
    c.kv_fork = true;
    c.max_batch = s->n_batch_max;
    return c;
}

/* Make room for `rows` rows (over the sequences of a call, past + new) in the past/present/mask
 * buffers. */
static int reserve_rows(onnx_state *s, int64_t rows) {
    if (rows <= s->cap_rows) return VB_OK;
    int64_t cap = s->cap_rows > 0 ? s->cap_rows : 64;
    while (cap < rows) cap *= 2;
    const size_t per_row = (size_t)s->g.n_layer * 2 * (size_t)s->kv_dim * s->kv_esz;
    void *past = realloc(s->past, (size_t)cap * per_row);
    if (past) s->past = past;
    void *present = realloc(s->present, (size_t)cap * per_row);
    if (present) s->present = present;
    int64_t *mask = realloc(s->mask, (size_t)cap * sizeof *mask);
    if (mask) s->mask = mask;
    if (!past || !present || !mask)
        return vb_errf(s->err, VB_ERR_NOMEM, "onnx backend: out of memory for %lld KV rows",
                       (long long)rows);
    s->cap_rows = cap;
    return VB_OK;
}

/* Copy the cached rows of the k sequences of the group into the past tensors. Layout per layer
 * and K/V: [k][n_head_kv][P][head_dim], sequence b's grp_past[b] rows right-aligned (the first
 * P - grp_past[b] rows are zeros, masked out by attention_mask); the blocks hold
 * [block_size][kv_dim] rows. */
static void gather_past(onnx_state *s, int32_t k, int32_t P) {
    if (P == 0) return;
    const int32_t H = s->g.n_head_kv, hd = s->g.head_dim, bs = vb_kvc_config(s->kv)->block_size;
    const size_t esz = s->kv_esz, head_bytes = (size_t)hd * esz;
    const size_t seq_bytes = (size_t)H * (size_t)P * head_bytes;
    for (int32_t b = 0; b < k; b++) {
        const int32_t n_past = s->grp_past[b], pad = P - n_past;
        int32_t n_blocks = 0;
        const int32_t *table = vb_kvc_block_table(s->kv, s->grp_seq[b], &n_blocks);
        char *dst = (char *)s->past + (size_t)b * seq_bytes;
        for (int32_t l = 0; l < s->g.n_layer; l++) {
            for (int kv = 0; kv < 2; kv++, dst += (size_t)k * seq_bytes) {
                if (pad > 0)
                    for (int32_t h = 0; h < H; h++)
                        memset(dst + (size_t)h * (size_t)P * head_bytes, 0, (size_t)pad * head_bytes);
                for (int32_t r = 0; r < n_past; r++) {
                    const int32_t blk = table[r / bs];
                    const char *src = (const char *)(kv ? vb_kvc_v(s->kv, l, blk) : vb_kvc_k(s->kv, l, blk)) +
                                      (size_t)(r % bs) * (size_t)s->kv_dim * esz;
                    for (int32_t h = 0; h < H; h++)
                        memcpy(dst + ((size_t)h * (size_t)P + (size_t)(pad + r)) * head_bytes,
                               src + (size_t)h * head_bytes, head_bytes);
                }
            }
        }
    }
}

/* Copy the new rows [P, P + n_new) of group member b's present tensors ([k][n_head_kv][P + n_new]
 * [head_dim] per layer and K/V) into its cache rows grp_past[b].. (already appended). */
static void scatter_present(onnx_state *s, int32_t k, int32_t b, int32_t P, int32_t n_new) {
    const int32_t H = s->g.n_head_kv, hd = s->g.head_dim, bs = vb_kvc_config(s->kv)->block_size;
    const int32_t T = P + n_new;
    const size_t esz = s->kv_esz, head_bytes = (size_t)hd * esz;
    const size_t seq_bytes = (size_t)H * (size_t)T * head_bytes;
    int32_t n_blocks = 0;
    const int32_t *table = vb_kvc_block_table(s->kv, s->grp_seq[b], &n_blocks);
    const char *src = (const char *)s->present + (size_t)b * seq_bytes;
    for (int32_t l = 0; l < s->g.n_layer; l++) {
        for (int kv = 0; kv < 2; kv++, src += (size_t)k * seq_bytes) {
            for (int32_t j = 0; j < n_new; j++) {
                const int32_t row = s->grp_past[b] + j;
                const int32_t blk = table[row / bs];
                char *dst = (char *)(kv ? vb_kvc_v(s->kv, l, blk) : vb_kvc_k(s->kv, l, blk)) +
                            (size_t)(row % bs) * (size_t)s->kv_dim * esz;
                for (int32_t h = 0; h < H; h++)
                    memcpy(dst + (size_t)h * head_bytes,
                           src + ((size_t)h * (size_t)T + (size_t)(P + j)) * head_bytes, head_bytes);
            }
        }
    }
}

static int make_tensor(onnx_state *s, void *data, size_t bytes, const int64_t *shape, size_t rank,
                       int32_t elem, OrtValue **out) {
    return vb_ort_check(&s->rt,
                        s->rt.api->CreateTensorWithDataAsOrtValue(s->rt.cpu_mem, data, bytes, shape,
                                                                  rank,
                                                                  (ONNXTensorElementDataType)elem, out),
                        s->err, "creating a tensor");
}

/* One session call for a group of k sequences (s->grp_seq) with n_new new rows each (batch rows
 * s->grp_rows[b * n_new + j]); sequence b holds s->grp_past[b] rows, P is the largest. Fills
 * s->present ([n_layer][2][k][n_head_kv][P + n_new][head_dim]) and s->logits_buf
 * ([k][n_new][n_vocab]). The cache is not changed. */
static int run_group(onnx_state *s, const vb_batch *batch, int32_t k, int32_t P, int32_t n_new) {
    const vb_ort_graph *g = &s->g;
    const int64_t T = (int64_t)P + n_new;
    int rc = reserve_rows(s, (int64_t)k * T);
    if (rc != VB_OK) return rc;
    for (int32_t i = 0; i < k * n_new; i++) {
        s->ids[i] = batch->token[s->grp_rows[i]];
        s->pos[i] = batch->pos[s->grp_rows[i]];
    }
    for (int32_t b = 0; b < k; b++) /* [k][T]: 0 on the padding rows of the past */
        for (int64_t c = 0; c < T; c++) s->mask[(int64_t)b * T + c] = c >= P - s->grp_past[b];
    double t0 = now_s();
    if (k == 1 && s->mirror_valid && s->mirror_seq == s->grp_seq[0] && s->mirror_len == P) {
        void *t = s->past; /* the previous present holds exactly this sequence's rows */
        s->past = s->present;
        s->present = t;
        s->n_gathers_saved++;
    } else {
        gather_past(s, k, P);
    }
    s->mirror_valid = false; /* s->present is about to be overwritten */
    double t1 = now_s();
    s->t_gather += t1 - t0;

    const int64_t shape_ids[2] = {k, n_new}, shape_mask[2] = {k, T};
    const int64_t shape_past[4] = {k, g->n_head_kv, P, g->head_dim};
    const int64_t shape_present[4] = {k, g->n_head_kv, T, g->head_dim};
    const int64_t shape_logits[3] = {k, n_new, s->n_vocab};
    const size_t head_bytes = (size_t)g->head_dim * s->kv_esz;
    const size_t past_bytes = (size_t)k * (size_t)g->n_head_kv * (size_t)P * head_bytes;
    const size_t present_bytes = (size_t)k * (size_t)g->n_head_kv * (size_t)T * head_bytes;
    const size_t ids_bytes = (size_t)k * (size_t)n_new * sizeof(int64_t);
    const int32_t i64 = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
    int32_t a = 0;
    rc = make_tensor(s, s->ids, ids_bytes, shape_ids, 2, i64, &s->in_vals[a++]);
    if (rc == VB_OK && g->has_attention_mask)
        rc = make_tensor(s, s->mask, (size_t)k * (size_t)T * sizeof(int64_t), shape_mask, 2, i64,
                         &s->in_vals[a++]);
    if (rc == VB_OK && g->has_position_ids)
        rc = make_tensor(s, s->pos, ids_bytes, shape_ids, 2, i64, &s->in_vals[a++]);
    for (int32_t t = 0; rc == VB_OK && t < 2 * g->n_layer; t++)
        rc = make_tensor(s, (char *)s->past + (size_t)t * past_bytes, past_bytes, shape_past, 4,
                         g->kv_elem, &s->in_vals[a++]);
    if (rc == VB_OK)
        rc = make_tensor(s, s->logits_buf,
                         (size_t)k * (size_t)n_new * (size_t)s->n_vocab * s->logit_esz, shape_logits,
                         3, g->logits_elem, &s->out_vals[0]);
    for (int32_t t = 0; rc == VB_OK && t < 2 * g->n_layer; t++)
        rc = make_tensor(s, (char *)s->present + (size_t)t * present_bytes, present_bytes,
                         shape_present, 4, g->kv_elem, &s->out_vals[1 + t]);
    if (rc == VB_OK) {
        OrtStatus *st = s->rt.api->Run(s->session, NULL, g->input_names,
                                       (const OrtValue *const *)s->in_vals, (size_t)g->n_inputs,
                                       g->output_names, (size_t)g->n_outputs, s->out_vals);
        rc = vb_ort_check(&s->rt, st, s->err, "running the ONNX model");
    }
    release_values(s);
    if (rc == VB_OK && k == 1) {
        s->mirror_valid = true;
        s->mirror_seq = s->grp_seq[0];
        s->mirror_len = (int32_t)T;
    }
    s->t_run += now_s() - t1;
    s->n_runs++;
    s->n_rows_run += (int64_t)k * n_new;
    return rc;
}

/* Undo the appends of this forward (all or nothing). */
static void rollback(onnx_state *s, const vb_batch *batch) {
    s->mirror_valid = false;
    vb_kvc_undo_batch(s->kv, batch, s->kv_row, batch->n);
}

static int onnx_forward(void *state, const vb_batch *batch, float *logits) {
    onnx_state *s = state;
    const int32_t n = batch->n;
    if (n == 0) return VB_OK;
    if (n < 0 || n > s->n_batch_max)
        return vb_errf(s->err, VB_ERR_ARG, "onnx backend: batch of %d rows (at most %d)", n,
                       s->n_batch_max);
    int32_t n_logits = 0;
    for (int32_t i = 0; i < n; i++) {
        /* (sequence ids were checked by the context; the graph's vocabulary may be smaller than
           the -m model's) */
        if (batch->token[i] < 0 || batch->token[i] >= s->n_vocab)
            return vb_errf(s->err, VB_ERR_ARG, "onnx backend: row %d: token %d out of range", i,
                           batch->token[i]);
        if (batch->pos[i] < 0 || (s->n_pos_max > 0 && batch->pos[i] >= s->n_pos_max))
            return vb_errf(s->err, VB_ERR_ARG,
                           "onnx backend: row %d: position %d outside [0, %d) (gpt2's learned "
                           "positions)", i, batch->pos[i], s->n_pos_max > 0 ? s->n_pos_max : 1 << 30);
        s->logit_slot[i] = batch->want_logits[i] ? n_logits++ : -1;
    }
    /* sequences in order of their first row */
    int32_t n_order = 0;
    memset(s->seq_seen, 0, (size_t)s->n_seq_max);
    for (int32_t i = 0; i < n; i++) {
        const vb_seq q = batch->seq[i];
        if (s->seq_seen[q]) continue;
        s->seq_seen[q] = 1;
        s->seq_order[n_order++] = q;
        s->seq_old_len[q] = vb_kvc_seq_len(s->kv, q);
        int32_t m = 0;
        for (int32_t j = i; j < n; j++) m += batch->seq[j] == q;
        s->seq_n_new[q] = m;
    }
    /* a graph without position_ids uses row indices as positions: refuse anything else */
    if (!s->g.has_position_ids) {
        for (int32_t o = 0; o < n_order; o++) {
            int32_t next = s->seq_old_len[s->seq_order[o]];
            for (int32_t i = 0; i < n; i++) {
                if (batch->seq[i] != s->seq_order[o]) continue;
                if (batch->pos[i] != next)
                    return vb_errf(s->err, VB_ERR_UNSUPPORTED,
                                   "onnx backend: row %d: position %d, but this graph has no "
                                   "position_ids input and uses the row index %d as position (export "
                                   "with position_ids for other positions)", i, batch->pos[i], next);
                next++;
            }
        }
    }

    /* Sequences with the same number of new rows run together in one session call (batch
       dimension k, pasts right-aligned and padded, the padding masked by attention_mask), which
       reads the weights once for all of them; that needs both attention_mask and position_ids. */
    const bool can_group = s->opts.group_seqs && s->g.has_attention_mask && s->g.has_position_ids;
    /* every row into its sequence's cache slot, all or nothing; the groups read the pasts
       [0, seq_old_len) and scatter their present rows into the new slots */
    char msg[160];
    int arc = vb_kvc_append_batch(s->kv, batch, s->kv_row, NULL, NULL, msg, sizeof msg);
    if (arc != VB_OK) return vb_errf(s->err, arc, "onnx backend: %s", msg);
    memset(s->seq_seen, 0, (size_t)s->n_seq_max); /* now: sequence already run */
    for (int32_t o = 0; o < n_order; o++) {
        const vb_seq q = s->seq_order[o];
        if (s->seq_seen[q]) continue;
        const int32_t m = s->seq_n_new[q];
        int32_t k = 0, P = 0;
        for (int32_t o2 = o; o2 < n_order; o2++) {
            const vb_seq q2 = s->seq_order[o2];
            if (s->seq_seen[q2] || s->seq_n_new[q2] != m || (k > 0 && !can_group)) continue;
            s->seq_seen[q2] = 1;
            s->grp_seq[k] = q2;
            s->grp_past[k] = s->seq_old_len[q2];
            if (s->grp_past[k] > P) P = s->grp_past[k];
            k++;
        }
        for (int32_t b = 0; b < k; b++) {
            int32_t j = 0;
            for (int32_t i = 0; i < n; i++)
                if (batch->seq[i] == s->grp_seq[b]) s->grp_rows[b * m + j++] = i;
        }
        int rc = run_group(s, batch, k, P, m);
        if (rc != VB_OK) {
            rollback(s, batch);
            return rc;
        }
        const double t0 = now_s();
        for (int32_t b = 0; b < k; b++) scatter_present(s, k, b, P, m);
        s->t_scatter += now_s() - t0;
        for (int32_t r = 0; r < k * m; r++) {
            const int32_t slot = s->logit_slot[s->grp_rows[r]];
            if (slot < 0) continue;
            float *dst = logits + (size_t)slot * (size_t)s->n_vocab;
            if (s->logit_esz == 4) {
                memcpy(dst, (const float *)s->logits_buf + (size_t)r * (size_t)s->n_vocab,
                       (size_t)s->n_vocab * sizeof(float));
            } else {
                const uint16_t *src = (const uint16_t *)s->logits_buf + (size_t)r * (size_t)s->n_vocab;
                for (int32_t v = 0; v < s->n_vocab; v++) dst[v] = vb_f16_to_f32(src[v]);
            }
        }
    }
    return VB_OK;
}

/* The backend table's kv_changed: a KV operation that changes seq's rows ends the
   present-as-past reuse for it. */
static void onnx_kv_changed(void *state, vb_seq seq) {
    onnx_state *s = state;
    if (s->mirror_seq == seq) s->mirror_valid = false;
}

/* An ONNX decoder: a .onnx file or a directory holding model.onnx. */
static bool onnx_model_probe(const char *path) {
    size_t n = strlen(path);
    struct stat st;
    if (n > 5 && strcmp(path + n - 5, ".onnx") == 0) return true;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return false;
    char f[1100];
    snprintf(f, sizeof f, "%s/model.onnx", path);
    return stat(f, &st) == 0;
}

/* ONNX model (the backend table's model_load): hyper-parameters and tokenizer from the --vocab GGUF when given (the same weights'
 * GGUF or any GGUF of the vocabulary), else the graph's shapes only (token ids in and out). */
static int onnx_model_load(const char *path, const vb_model_params *p, vb_model *m, char *err,
                           size_t err_len) {
    int st;
    if (p->vocab_path) {
        vb_model_params gp = *p;
        gp.vocab_path = NULL;
        vb_model *vocab = NULL;
        st = vb_model_load(p->vocab_path, &gp, &vocab, err, err_len);
        if (st != VB_OK) return st;
        if (vocab->owner) {
            vb_model_free(vocab);
            snprintf(err, err_len, "%s: --vocab must be a GGUF file", p->vocab_path);
            return VB_ERR_ARG;
        }
        *m = *vocab; /* its hyper-parameters, GGUF and tokenizer become the ONNX model's */
        free(vocab);
    } else {
        st = vb_onnx_probe(path, &m->info, err, err_len);
        if (st != VB_OK) return st;
        m->info.bos = m->info.eos = m->info.mask = -1;
        m->info.has_tokenizer = false;
        if (!m->info.weight_type[0]) snprintf(m->info.weight_type, sizeof m->info.weight_type, "onnx");
        const char *base = strrchr(path, '/');
        snprintf(m->info.name, sizeof m->info.name, "%s", base ? base + 1 : path);
        /* a tokenizer.json beside the graph (Hugging Face export layout) */
        char tj[1100];
        size_t pl = strlen(path);
        if (pl > 5 && strcmp(path + pl - 5, ".onnx") == 0)
            snprintf(tj, sizeof tj, "%.*stokenizer.json", base ? (int)(base - path + 1) : 0, path);
        else
            snprintf(tj, sizeof tj, "%s/tokenizer.json", path);
        struct stat tst;
        if (stat(tj, &tst) == 0) {
            char msg[VB_ERR_LEN] = "";
            st = vb_tokenizer_from_hf_json(tj, &m->tok, msg, sizeof msg);
            if (st == VB_OK && vb_tokenizer_n_vocab(m->tok) > m->info.n_vocab) {
                st = VB_ERR_FORMAT;
                snprintf(msg, sizeof msg, "the tokenizer has more tokens than the model's vocabulary");
            }
            if (st != VB_OK) {
                snprintf(err, err_len, "%s: %s", tj, msg);
                return st;
            }
            m->info.has_tokenizer = true;
            m->info.bos = vb_tokenizer_bos(m->tok);
            m->info.eos = vb_tokenizer_eos(m->tok);
            m->info.mask = vb_tokenizer_mask(m->tok);
            m->info.add_bos = vb_tokenizer_add_bos(m->tok);
        }
    }
    return VB_OK;
}


static struct vb_kv_cache *onnx_paged_kv(void *state) { return ((onnx_state *)state)->kv; }

const vb_backend_ops vb_backend_onnx = {
    .version = VB_BACKEND_VERSION,
    .name = "onnx",
    .runs_gguf = true, /* a GGUF -m gives the tokenizer and shapes; the graph comes from onnx= */
    .model_probe = onnx_model_probe,
    .model_load = onnx_model_load,
    .init = onnx_init,
    .free = onnx_free,
    .caps = onnx_caps,
    .forward = onnx_forward,
    .paged_kv = onnx_paged_kv,
    .kv_changed = onnx_kv_changed,
};

int vb_onnx_probe(const char *path, vb_model_info *info, char *err, size_t err_len) {
    char msg[VB_ERR_LEN] = "";
    vb_ort_options opts;
    vb_ort rt;
    OrtSession *session = NULL;
    vb_ort_graph g;
    if (!path || !info) {
        if (err && err_len) snprintf(err, err_len, "vb_onnx_probe: path or info is NULL");
        return VB_ERR_ARG;
    }
    int rc = vb_ort_parse_options(NULL, &opts, msg);
    if (rc == VB_OK && strlen(path) >= sizeof opts.onnx_path)
        rc = vb_errf(msg, VB_ERR_ARG, "onnx backend: path too long");
    if (rc == VB_OK) {
        snprintf(opts.onnx_path, sizeof opts.onnx_path, "%s", path);
        opts.opt_level = ORT_DISABLE_ALL; /* only the interface is read: load fast */
        rc = vb_ort_load(&rt, &opts, msg);
    }
    if (rc == VB_OK) {
        rc = vb_ort_session_create(&rt, &opts, 1, &session, &g, msg);
        if (rc == VB_OK) {
            info->n_layer = g.n_layer;
            info->n_head_kv = g.n_head_kv;
            info->head_dim = g.head_dim;
            if (g.n_vocab > 0) info->n_vocab = g.n_vocab;
            if (!info->arch[0]) snprintf(info->arch, sizeof info->arch, "onnx");
            rt.api->ReleaseSession(session);
            vb_ort_graph_free(&g);
        }
        vb_ort_unload(&rt);
    }
    if (rc != VB_OK && err && err_len) snprintf(err, err_len, "%s", msg);
    return rc;
}
