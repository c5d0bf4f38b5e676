/* llamacpp_backend.c - the `llamacpp` backend: vibee's forward primitive and KV operations on
 * top of llama.cpp's C API (the one file that touches it; built by scripts/build_llamacpp.sh from
 * npm llama.rn's copy of llama.cpp, build 10256, whose ggml symbols carry an lm_ prefix).
 *
 * What maps to what:
 *   init       llama_model_load_from_file (the GGUF at model->path) + llama_init_from_model with
 *              one unified KV of n_ctx cells shared by n_seq_max sequences
 *   forward    one llama_batch (explicit positions, one seq id per row, logits flags) ->
 *              llama_decode -> llama_get_logits_ith for each requested row, in batch order
 *   truncate   llama_memory_seq_rm(seq, pos of row n_keep, inf)
 *   fork       llama_memory_seq_cp(src, dst) (llama.cpp shares the cells: copy-on-write for free)
 *
 * llama.cpp masks attention by logical position, not by physical row order (DESIGN §3), and it
 * refuses a batch whose positions for a sequence do not continue that sequence's last cached
 * position one by one. So this backend reports physical_causality = false and accepts only
 * batches in which, for every sequence, the rows' positions are (last cached position + 1,
 * + 2, ...) in batch order: there, position order equals physical order and llama.cpp computes
 * exactly the forward of DESIGN §3. Everything llama.cpp would assert on (rows > n_batch,
 * learned-position tables overrun, seq ids out of range) is checked here first, so no user input
 * reaches GGML_ABORT. Rows per sequence are tracked here (llama_memory_seq_pos_max + 1 counts
 * positions, not rows). */
#include "llamacpp_backend.h"

#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../backend.h"
#include "../../kv/kv_cache.h"
#include "../../model.h"
#include "llama.h"

#if __has_include("vibee_llama_build.h")
#include "vibee_llama_build.h"
#endif
#ifndef VB_LLAMA_BUILD_NUMBER
#define VB_LLAMA_BUILD_NUMBER 0
#define VB_LLAMA_COMMIT "unknown"
#define VB_LLAMA_SOURCE "unknown"
#define VB_LLAMA_CPU_FLAGS "unknown"
#define VB_LLAMA_OPENMP 0
#endif

#define LCPP_MAX_SEQ 256    /* llama.cpp's LLAMA_MAX_SEQ */
#define LCPP_MAX_UBATCH 512 /* physical batch: llama.cpp's default n_ubatch */
#define LCPP_GGML_TYPE_F32 0 /* ggml's type ids (stable across versions) */
#define LCPP_GGML_TYPE_F16 1
#define LCPP_GGML_TYPE_Q8_0 8

/* ------------------------------------------------------------------------------------------
 * Process-wide setup: backend init once, llama.cpp's log routed through one callback
 * ------------------------------------------------------------------------------------------ */

/* The errors llama.cpp logged on this thread since the last reset (joined by " / "), to quote
   in our messages: the first one usually names the cause, the last one the failing call. */
static _Thread_local char lcpp_last_error[384];
static _Thread_local int lcpp_last_level;
static int lcpp_log_verbose; /* VB_LLAMACPP_LOG=1: pass all of llama.cpp's log to stderr */
static pthread_once_t lcpp_once = PTHREAD_ONCE_INIT;

static void lcpp_log(enum lm_ggml_log_level level, const char *text, void *user) {
    (void)user;
    if (lcpp_log_verbose) fputs(text, stderr);
    if (level == LM_GGML_LOG_LEVEL_CONT) level = (enum lm_ggml_log_level)lcpp_last_level;
    else lcpp_last_level = level;
    if (level != LM_GGML_LOG_LEVEL_ERROR) return;
    size_t have = strlen(lcpp_last_error);
    if (have > 0 && lcpp_last_error[have - 1] == '\n') {
        lcpp_last_error[--have] = 0;
        if (have + 3 < sizeof lcpp_last_error) {
            memcpy(lcpp_last_error + have, " / ", 4);
            have += 3;
        }
    }
    if (have + 1 < sizeof lcpp_last_error)
        snprintf(lcpp_last_error + have, sizeof lcpp_last_error - have, "%s", text);
}

static void lcpp_global_init(void) {
    const char *v = getenv("VB_LLAMACPP_LOG");
    lcpp_log_verbose = v && *v && strcmp(v, "0") != 0;
    llama_log_set(lcpp_log, NULL);
    llama_backend_init();
}

/* The last llama.cpp error of this thread without its trailing newline ("" if none). */
static const char *lcpp_error_text(void) {
    size_t n = strlen(lcpp_last_error);
    while (n > 0 && (lcpp_last_error[n - 1] == '\n' || lcpp_last_error[n - 1] == ' '))
        lcpp_last_error[--n] = 0;
    return lcpp_last_error;
}

int vb_llamacpp_dequantize(uint32_t type, const void *src, float *dst, int64_t n) {
    if (type >= LM_GGML_TYPE_COUNT || !src || !dst || n < 0) return VB_ERR_ARG;
    const struct lm_ggml_type_traits *tr = lm_ggml_get_type_traits((enum lm_ggml_type)type);
    if (!tr || !tr->to_float || tr->blck_size <= 0) return VB_ERR_UNSUPPORTED;
    if (n % tr->blck_size != 0) return VB_ERR_ARG;
    tr->to_float(src, dst, n);
    return VB_OK;
}

int vb_llamacpp_quantize(uint32_t type, const float *src, void *dst, int64_t n_rows,
                         int64_t n_per_row) {
    if (type >= LM_GGML_TYPE_COUNT || !src || !dst || n_rows < 0 || n_per_row <= 0) return VB_ERR_ARG;
    const struct lm_ggml_type_traits *tr = lm_ggml_get_type_traits((enum lm_ggml_type)type);
    if (!tr || tr->blck_size <= 0 || tr->type_size == 0 ||
        lm_ggml_quantize_requires_imatrix((enum lm_ggml_type)type))
        return VB_ERR_UNSUPPORTED;
    if (n_per_row % tr->blck_size != 0) return VB_ERR_ARG;
    lm_ggml_quantize_chunk((enum lm_ggml_type)type, src, dst, 0, n_rows, n_per_row, NULL);
    return VB_OK;
}

const char *vb_llamacpp_build_info(void) {
    static char info[192];
    if (!info[0])
        snprintf(info, sizeof info, "llama.cpp b%d (%s) from %s, %s%s", VB_LLAMA_BUILD_NUMBER,
                 VB_LLAMA_COMMIT, VB_LLAMA_SOURCE, VB_LLAMA_CPU_FLAGS,
                 VB_LLAMA_OPENMP ? ", openmp" : "");
    return info;
}

/* ------------------------------------------------------------------------------------------
 * Backend state
 * ------------------------------------------------------------------------------------------ */

typedef struct lcpp_seq {
    int32_t n_rows; /* KV rows this sequence holds */
    vb_pos pos0;    /* logical position of row 0 (rows r hold positions pos0 + r); valid if n_rows > 0 */
} lcpp_seq;

typedef struct lcpp_state {
    struct llama_model *model;
    struct llama_context *ctx;
    llama_memory_t mem;
    struct llama_batch batch; /* [n_batch] rows, one sequence id per row */
    char *err;                /* the context's error buffer (VB_ERR_LEN) */
    int32_t n_vocab;
    int32_t n_batch;
    int32_t n_seq_max;
    int32_t n_ctx;            /* KV cells over all sequences */
    int32_t pos_limit;        /* rows of a learned position table (GPT-2), INT32_MAX if none */
    int64_t kv_bytes_per_row; /* K and V bytes of one row over all layers */
    lcpp_seq *seqs;           /* [n_seq_max] */
    int32_t *batch_rows;      /* [n_seq_max] scratch: rows of each sequence in the batch being checked */
    vb_pos *batch_pos0;       /* [n_seq_max] scratch: first position of an empty sequence in the batch */
} lcpp_state;

static int32_t lcpp_default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int32_t)n : 1;
}

static void lcpp_free(void *state) {
    lcpp_state *s = state;
    if (!s) return;
    if (s->batch.token) llama_batch_free(s->batch);
    if (s->ctx) llama_free(s->ctx);
    if (s->model) llama_model_free(s->model);
    free(s->seqs);
    free(s->batch_rows);
    free(s->batch_pos0);
    free(s);
}

/* backend_options: "flash_attn=auto|on|off" (default auto, llama.cpp's default). With F32 K/V,
   llama.cpp's CPU flash attention rounds to f16 internally (logits within ~1e-3 of an exact
   forward instead of ~1e-6): tests that compare F32 results closely turn it off. */
static int lcpp_parse_options(const char *opts, enum llama_flash_attn_type *flash_attn, char *err) {
    *flash_attn = LLAMA_FLASH_ATTN_TYPE_AUTO;
    if (!opts) return VB_OK;
    const char *p = opts;
    while (*p) {
        size_t n = strcspn(p, ",");
        char item[64];
        if (n >= sizeof item)
            return vb_errf(err, VB_ERR_ARG, "llamacpp: backend option '%.*s...' is too long", 32, p);
        memcpy(item, p, n);
        item[n] = 0;
        if (!strcmp(item, "flash_attn=auto")) *flash_attn = LLAMA_FLASH_ATTN_TYPE_AUTO;
        else if (!strcmp(item, "flash_attn=on")) *flash_attn = LLAMA_FLASH_ATTN_TYPE_ENABLED;
        else if (!strcmp(item, "flash_attn=off")) *flash_attn = LLAMA_FLASH_ATTN_TYPE_DISABLED;
        else if (n > 0)
            return vb_errf(err, VB_ERR_ARG,
                           "llamacpp: unknown backend option '%s' (known: flash_attn=auto|on|off)", item);
        p += n;
        if (*p == ',') p++;
    }
    return VB_OK;
}

static int lcpp_init(const vb_model *model, const vb_context_params *params, void **state, char *err) {
    enum llama_flash_attn_type flash_attn;
    int st_opt = lcpp_parse_options(params->backend_options, &flash_attn, err);
    if (st_opt != VB_OK) return st_opt;
    if (model->owner || !model->gguf || !model->path[0])
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "llamacpp: model '%s' was not loaded from a GGUF file on disk; llama.cpp "
                       "loads models by path (use vb_model_load with the file, not a memory image)",
                       model->info.name);
    if (params->n_seq_max > LCPP_MAX_SEQ)
        return vb_errf(err, VB_ERR_UNSUPPORTED,
                       "llamacpp: n_seq_max %d exceeds llama.cpp's limit of %d sequences",
                       params->n_seq_max, LCPP_MAX_SEQ);
    pthread_once(&lcpp_once, lcpp_global_init);
    lcpp_last_error[0] = 0;

    lcpp_state *s = calloc(1, sizeof *s);
    if (!s) return VB_ERR_NOMEM;
    s->err = err;
    s->n_seq_max = params->n_seq_max;
    s->n_batch = params->n_batch_max;
    s->seqs = calloc((size_t)s->n_seq_max, sizeof *s->seqs);
    s->batch_rows = calloc((size_t)s->n_seq_max, sizeof *s->batch_rows);
    s->batch_pos0 = calloc((size_t)s->n_seq_max, sizeof *s->batch_pos0);
    if (!s->seqs || !s->batch_rows || !s->batch_pos0) {
        lcpp_free(s);
        return VB_ERR_NOMEM;
    }

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    s->model = llama_model_load_from_file(model->path, mp);
    if (!s->model) {
        int st = vb_errf(err, VB_ERR_UNSUPPORTED, "llamacpp: llama.cpp could not load %s: %s",
                         model->path, lcpp_error_text()[0] ? lcpp_error_text() : "(no reason given)");
        lcpp_free(s);
        return st;
    }
    s->n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(s->model));
    if (s->n_vocab != model->info.n_vocab) {
        int st = vb_errf(err, VB_ERR_UNSUPPORTED,
                         "llamacpp: %s: llama.cpp sees %d tokens but vibee read n_vocab %d; the "
                         "logits would not line up", model->path, s->n_vocab, model->info.n_vocab);
        lcpp_free(s);
        return st;
    }

    /* A learned position table (GPT-2's position_embd.weight [n_pos][n_embd]) bounds positions:
       llama.cpp would read past it (ggml asserts), so forward checks them. */
    s->pos_limit = INT32_MAX;
    const vb_gguf_tensor *pe = model->gguf ? vb_gguf_find_tensor(model->gguf, "position_embd.weight") : NULL;
    if (pe && pe->n_dims >= 2 && pe->ne[1] > 0 && pe->ne[1] < INT32_MAX) s->pos_limit = (int32_t)pe->ne[1];

    int32_t n_ctx = params->n_ctx;
    if (n_ctx <= 0) {
        n_ctx = model->info.n_ctx_train > 0 ? model->info.n_ctx_train : 4096;
        if (n_ctx > 4096) n_ctx = 4096;
    }
    int32_t n_threads = params->n_threads > 0 ? params->n_threads : lcpp_default_threads();

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = (uint32_t)s->n_batch;
    cp.n_ubatch = (uint32_t)(s->n_batch < LCPP_MAX_UBATCH ? s->n_batch : LCPP_MAX_UBATCH);
    cp.n_seq_max = (uint32_t)s->n_seq_max;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.kv_unified = true; /* n_ctx cells over all sequences, as vibee counts them; forks share cells */
    cp.type_k = cp.type_v = params->kv_type == VB_KV_F16    ? LCPP_GGML_TYPE_F16
                            : params->kv_type == VB_KV_Q8_0 ? LCPP_GGML_TYPE_Q8_0
                                                            : LCPP_GGML_TYPE_F32;
    cp.no_perf = true;
    cp.flash_attn_type = flash_attn;
    s->ctx = llama_init_from_model(s->model, cp);
    if (!s->ctx) {
        int st = vb_errf(err, VB_ERR_BACKEND,
                         "llamacpp: llama.cpp could not create a context (n_ctx %d, n_batch %d, "
                         "n_seq_max %d, %d threads): %s", n_ctx, s->n_batch, s->n_seq_max, n_threads,
                         lcpp_error_text()[0] ? lcpp_error_text() : "(no reason given)");
        lcpp_free(s);
        return st;
    }
    s->mem = llama_get_memory(s->ctx);
    s->n_ctx = (int32_t)llama_n_ctx(s->ctx);
    int64_t n_head = llama_model_n_head(s->model), n_head_kv = llama_model_n_head_kv(s->model);
    int64_t head_dim = model->info.head_dim > 0 ? model->info.head_dim
                       : n_head > 0                ? llama_model_n_embd(s->model) / n_head
                                                   : 0;
    s->kv_bytes_per_row = 2 * (int64_t)llama_model_n_layer(s->model) *
                          (int64_t)vb_kvc_row_bytes(params->kv_type, n_head_kv * head_dim);
    s->batch = llama_batch_init(s->n_batch, 0, 1);
    if (!s->batch.token) {
        lcpp_free(s);
        return VB_ERR_NOMEM;
    }
    *state = s;
    return VB_OK;
}

static vb_backend_caps lcpp_caps(void *state) {
    lcpp_state *s = state;
    vb_backend_caps c = {0};
    c.physical_causality = false; /* llama.cpp masks by logical position */
    c.paged_kv = false;           /* the K/V live in llama.cpp's own cache */
    c.kv_fork = true;
    c.max_batch = s->n_batch;
    return c;
}

/* ------------------------------------------------------------------------------------------
 * Forward
 * ------------------------------------------------------------------------------------------ */

/* Check the batch against everything llama.cpp would refuse or assert on. */
static int lcpp_check_batch(lcpp_state *s, const vb_batch *b) {
    if (b->n < 1 || b->n > s->n_batch)
        return vb_errf(s->err, VB_ERR_ARG, "llamacpp: batch of %d rows (must be 1..%d)", b->n, s->n_batch);
    memset(s->batch_rows, 0, (size_t)s->n_seq_max * sizeof *s->batch_rows);
    for (int32_t i = 0; i < b->n; i++) {
        vb_seq q = b->seq[i];
        if (q < 0 || q >= s->n_seq_max)
            return vb_errf(s->err, VB_ERR_ARG, "llamacpp: row %d: sequence %d out of range [0, %d)",
                           i, q, s->n_seq_max);
        if (b->token[i] < 0 || b->token[i] >= s->n_vocab)
            return vb_errf(s->err, VB_ERR_ARG, "llamacpp: row %d: token %d out of range [0, %d)",
                           i, b->token[i], s->n_vocab);
        if (b->pos[i] < 0 || b->pos[i] >= s->pos_limit)
            return vb_errf(s->err, VB_ERR_ARG,
                           "llamacpp: row %d: position %d outside the model's position table [0, %d)",
                           i, b->pos[i], s->pos_limit);
        const lcpp_seq *sq = &s->seqs[q];
        int32_t k = s->batch_rows[q]++; /* k-th row of q in this batch */
        vb_pos expect;
        if (sq->n_rows > 0) expect = sq->pos0 + sq->n_rows + k;
        else if (k > 0) expect = s->batch_pos0[q] + k;
        else { s->batch_pos0[q] = b->pos[i]; continue; } /* an empty sequence may start anywhere */
        if (b->pos[i] != expect)
            return vb_errf(s->err, VB_ERR_UNSUPPORTED,
                           "llamacpp: row %d of sequence %d has position %d, expected %d: llama.cpp "
                           "masks attention by position, so a sequence's rows must continue its "
                           "positions one by one in batch order (no gaps, no reordering, e.g. no "
                           "WeDLM window); use a backend with physical causality (cpu) for this",
                           i, q, b->pos[i], expect);
    }
    return VB_OK;
}

/* Drop whatever a failed llama_decode left in the sequences of batch b (all-or-nothing KV). */
static void lcpp_restore(lcpp_state *s, const vb_batch *b) {
    for (int32_t i = 0; i < b->n; i++) {
        vb_seq q = b->seq[i];
        const lcpp_seq *sq = &s->seqs[q];
        if (sq->n_rows > 0) llama_memory_seq_rm(s->mem, q, sq->pos0 + sq->n_rows, -1);
        else llama_memory_seq_rm(s->mem, q, -1, -1);
    }
}

static int lcpp_forward(void *state, const vb_batch *b, float *logits) {
    lcpp_state *s = state;
    int st = lcpp_check_batch(s, b);
    if (st != VB_OK) return st;

    struct llama_batch *lb = &s->batch;
    lb->n_tokens = b->n;
    for (int32_t i = 0; i < b->n; i++) {
        lb->token[i] = b->token[i];
        lb->pos[i] = b->pos[i];
        lb->n_seq_id[i] = 1;
        lb->seq_id[i][0] = b->seq[i];
        lb->logits[i] = b->want_logits[i] ? 1 : 0;
    }
    lcpp_last_error[0] = 0;
    int32_t rc = llama_decode(s->ctx, *lb);
    if (rc != 0) {
        lcpp_restore(s, b);
        if (rc == 1)
            return vb_errf(s->err, VB_KV_FULL, "llamacpp: no room for %d rows in the KV cache (%d cells)",
                           b->n, s->n_ctx);
        return vb_errf(s->err, VB_ERR_BACKEND, "llamacpp: llama_decode returned %d: %s", rc,
                       lcpp_error_text()[0] ? lcpp_error_text() : "(no reason given)");
    }

    /* logits of the requested rows, in batch order: [n_wanted][n_vocab] */
    size_t row_bytes = (size_t)s->n_vocab * sizeof(float);
    int32_t k = 0;
    for (int32_t i = 0; i < b->n; i++) {
        if (!b->want_logits[i]) continue;
        const float *row = llama_get_logits_ith(s->ctx, i);
        if (!row) {
            lcpp_restore(s, b);
            return vb_errf(s->err, VB_ERR_BACKEND, "llamacpp: llama.cpp returned no logits for row %d", i);
        }
        memcpy(logits + (size_t)k * (size_t)s->n_vocab, row, row_bytes);
        k++;
    }
    for (int32_t i = 0; i < b->n; i++) {
        lcpp_seq *sq = &s->seqs[b->seq[i]];
        if (sq->n_rows == 0) sq->pos0 = b->pos[i];
        sq->n_rows++;
    }
    return VB_OK;
}

/* ------------------------------------------------------------------------------------------
 * KV operations
 * ------------------------------------------------------------------------------------------ */

static int32_t lcpp_kv_seq_len(void *state, vb_seq seq) {
    lcpp_state *s = state;
    return s->seqs[seq].n_rows;
}

static int lcpp_kv_truncate(void *state, vb_seq seq, int32_t n_keep) {
    lcpp_state *s = state;
    lcpp_seq *sq = &s->seqs[seq];
    if (n_keep >= sq->n_rows) return VB_OK;
    bool ok = n_keep == 0 ? llama_memory_seq_rm(s->mem, seq, -1, -1)
                          : llama_memory_seq_rm(s->mem, seq, sq->pos0 + n_keep, -1);
    if (!ok)
        return vb_errf(s->err, VB_ERR_BACKEND, "llamacpp: llama.cpp cannot truncate sequence %d to %d rows",
                       seq, n_keep);
    sq->n_rows = n_keep;
    return VB_OK;
}

static int lcpp_kv_free_seq(void *state, vb_seq seq) {
    lcpp_state *s = state;
    llama_memory_seq_rm(s->mem, seq, -1, -1); /* removing a whole sequence never fails */
    s->seqs[seq].n_rows = 0;
    return VB_OK;
}

static int lcpp_kv_fork(void *state, vb_seq src, vb_seq dst) {
    lcpp_state *s = state;
    llama_memory_seq_rm(s->mem, dst, -1, -1);
    if (s->seqs[src].n_rows > 0) llama_memory_seq_cp(s->mem, src, dst, -1, -1);
    s->seqs[dst] = s->seqs[src];
    return VB_OK;
}

/* llama.cpp's cache is not paged: report it as blocks of one row. Rows shared by forked
   sequences are counted once per sequence (llama.cpp does not expose its cell count). */
static void lcpp_kv_stats(void *state, vb_kv_stats *out) {
    lcpp_state *s = state;
    memset(out, 0, sizeof *out);
    int64_t rows = 0;
    for (int32_t q = 0; q < s->n_seq_max; q++) {
        rows += s->seqs[q].n_rows;
        if (s->seqs[q].n_rows > 0) out->n_seq_active++;
    }
    if (rows > s->n_ctx) rows = s->n_ctx;
    out->block_size = 1;
    out->blocks_total = s->n_ctx;
    out->blocks_used = (int32_t)rows;
    out->tokens_stored = rows;
    out->slots_allocated = rows;
    out->bytes_total = (int64_t)s->n_ctx * s->kv_bytes_per_row;
    out->bytes_used = rows * s->kv_bytes_per_row;
    out->waste = 0.0;
}

const vb_backend_ops vb_backend_llamacpp = {
    .version = VB_BACKEND_VERSION,
    .name = "llamacpp",
    .runs_gguf = true,
    .kv_q8_0 = true,
    .init = lcpp_init,
    .free = lcpp_free,
    .caps = lcpp_caps,
    .forward = lcpp_forward,
    .kv_seq_len = lcpp_kv_seq_len,
    .kv_truncate = lcpp_kv_truncate,
    .kv_free_seq = lcpp_kv_free_seq,
    .kv_fork = lcpp_kv_fork,
    .kv_stats = lcpp_kv_stats,
};

/* ------------------------------------------------------------------------------------------
 * llama.cpp's tokenizer (reference for vibee's)
 * ------------------------------------------------------------------------------------------ */

static pthread_mutex_t lcpp_tok_mutex = PTHREAD_MUTEX_INITIALIZER;
static struct llama_model *lcpp_tok_model; /* vocab-only model of lcpp_tok_path, kept for reuse */
static char lcpp_tok_path[1024];

int vb_llamacpp_tokenize(const char *gguf_path, const char *text, bool add_special, vb_token *out,
                         int max) {
    if (!gguf_path || !text || max < 0 || (max > 0 && !out)) return VB_ERR_ARG;
    size_t len = strlen(text);
    if (len > INT32_MAX / 2 || strlen(gguf_path) >= sizeof lcpp_tok_path) return VB_ERR_ARG;
    pthread_once(&lcpp_once, lcpp_global_init);
    pthread_mutex_lock(&lcpp_tok_mutex);
    if (!lcpp_tok_model || strcmp(lcpp_tok_path, gguf_path) != 0) {
        if (lcpp_tok_model) llama_model_free(lcpp_tok_model);
        struct llama_model_params mp = llama_model_default_params();
        mp.vocab_only = true;
        mp.n_gpu_layers = 0;
        lcpp_tok_model = llama_model_load_from_file(gguf_path, mp);
        snprintf(lcpp_tok_path, sizeof lcpp_tok_path, "%s", lcpp_tok_model ? gguf_path : "");
        if (!lcpp_tok_model) {
            pthread_mutex_unlock(&lcpp_tok_mutex);
            return VB_ERR_IO;
        }
    }
    const struct llama_vocab *vocab = llama_model_get_vocab(lcpp_tok_model);
    int32_t n = llama_tokenize(vocab, text, (int32_t)len, out, max, add_special, false);
    pthread_mutex_unlock(&lcpp_tok_mutex);
    if (n == INT32_MIN) return VB_ERR_ARG;
    return n < 0 ? -n : n; /* negative: the count that did not fit */
}
