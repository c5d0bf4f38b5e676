/* context.c - vb_context: a backend instance over a model. Validates every batch and KV call
 * before it reaches the backend, maps batch rows to their logits, keeps statistics and the
 * per-context error string; vb_embed (final hidden states of a prompt run on one sequence,
 * pooled); also the vb_batch helpers. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "kv/kv_cache.h"
#include "model.h"

#define VB_POS_LIMIT (1 << 24) /* logical positions must be below this */

struct vb_context {
    vb_model *model;
    const vb_backend_ops *ops;
    void *state;
    struct vb_kv_cache *kv;  /* the backend's paged pool (paged_kv), NULL for its own KV */
    vb_context_params params;
    vb_backend_caps caps;
    char err[VB_ERR_LEN];
    float *logits;        /* [logits_cap][n_vocab] rows of the last forward that asked */
    int32_t logits_cap;   /* rows allocated in logits */
    int32_t *logit_index; /* [max_batch] batch row -> logits row, -1 if none */
    int32_t n_last;       /* rows of the last forward */
    vb_stats stats;
    void *decoder_cache;                  /* owned: the decoders' measured cost(K) table */
    void (*decoder_cache_free)(void *);
};

void *vb_context_decoder_cache(const vb_context *c) { return c ? c->decoder_cache : NULL; }

const vb_context_params *vb_context_params_get(const vb_context *c) { return c ? &c->params : NULL; }

int32_t vb_context_seq_mismatch(const vb_context *c, vb_seq seq, const vb_token *toks, int32_t n) {
    if (!c || !c->kv) return -1;
    for (int32_t r = 0; r < n; r++)
        if (vb_kvc_row_tok(c->kv, seq, r) != toks[r]) return r;
    return n;
}

void vb_context_set_decoder_cache(vb_context *c, void *cache, void (*free_fn)(void *)) {
    if (!c) return;
    if (c->decoder_cache && c->decoder_cache_free) c->decoder_cache_free(c->decoder_cache);
    c->decoder_cache = cache;
    c->decoder_cache_free = free_fn;
}

vb_context_params vb_context_default_params(void) {
    vb_context_params p = {0};
    p.backend = NULL;
    p.n_threads = 0;
    p.n_ctx = 0;
    p.n_seq_max = 16;
    p.n_batch_max = 512;
    p.block_size = 16;
    p.kv_type = VB_KV_F32;
    return p;
}

static int set_err(char *err, size_t err_len, int status, const char *msg) {
    if (err && err_len) snprintf(err, err_len, "%s", msg);
    return status;
}

int vb_context_init(vb_model *model, const vb_context_params *params, vb_context **out, char *err,
                    size_t err_len) {
    if (!out) return set_err(err, err_len, VB_ERR_ARG, "vb_context_init: out is NULL");
    *out = NULL;
    if (!model) return set_err(err, err_len, VB_ERR_ARG, "vb_context_init: model is NULL");
    vb_context_params p = params ? *params : vb_context_default_params();
    if (!p.backend || !*p.backend)
        p.backend = model->owner ? model->owner->name : "cpu";
    char msg[VB_ERR_LEN];
    if (p.n_seq_max < 1 || p.n_seq_max > 4096 || p.n_batch_max < 1 || p.n_batch_max > 65536 ||
        p.block_size < 1 || p.block_size > 4096 || p.n_ctx < 0 || p.n_threads < 0 ||
        (p.kv_type != VB_KV_F32 && p.kv_type != VB_KV_F16 && p.kv_type != VB_KV_Q8_0)) {
        snprintf(msg, sizeof msg,
                 "vb_context_init: parameter out of range (n_seq_max %d, n_batch_max %d, "
                 "block_size %d, n_ctx %d, n_threads %d, kv_type %d)",
                 p.n_seq_max, p.n_batch_max, p.block_size, p.n_ctx, p.n_threads, p.kv_type);
        return set_err(err, err_len, VB_ERR_ARG, msg);
    }
    const vb_backend_ops *ops = vb_backend_find(p.backend);
    if (!ops) {
        const char *why = vb_backend_load_error(p.backend);
        if (why) snprintf(msg, sizeof msg, "%s", why);
        else snprintf(msg, sizeof msg, "unknown backend '%s' (compiled in: %s)", p.backend,
                      vb_backend_list());
        return set_err(err, err_len, VB_ERR_BACKEND, msg);
    }
    if (ops->version != VB_BACKEND_VERSION) {
        snprintf(msg, sizeof msg, "backend '%s' was built for backend interface %d, this library "
                 "has %d", ops->name, ops->version, VB_BACKEND_VERSION);
        return set_err(err, err_len, VB_ERR_BACKEND, msg);
    }
    if (p.kv_type == VB_KV_Q8_0 && !ops->kv_q8_0) {
        snprintf(msg, sizeof msg, "backend '%s' has no q8_0 KV cache (the cpu and llamacpp backends "
                 "have one; use kv_type f16 or f32 here)", ops->name);
        return set_err(err, err_len, VB_ERR_UNSUPPORTED, msg);
    }
    if (model->owner ? model->owner != ops : !ops->runs_gguf) {
        if (model->owner)
            snprintf(msg, sizeof msg, "backend '%s' cannot run model '%s': it is in backend %s's "
                     "own format (use -b %s)", ops->name, model->info.name, model->owner->name,
                     model->owner->name);
        else
            snprintf(msg, sizeof msg, "backend '%s' cannot run model '%s': it runs only models of "
                     "its own format (GGUF models run on cpu, cuda, llamacpp)", ops->name,
                     model->info.name);
        return set_err(err, err_len, VB_ERR_UNSUPPORTED, msg);
    }
    vb_context *c = calloc(1, sizeof *c);
    if (!c) return set_err(err, err_len, VB_ERR_NOMEM, "out of memory");
    c->model = model;
    c->ops = ops;
    c->params = p;
    c->params.backend = ops->name; /* static storage */
    c->params.backend_options = NULL;
    c->params.cost_cache_path = NULL;
    if (p.cost_cache_path && *p.cost_cache_path &&
        !(c->params.cost_cache_path = strdup(p.cost_cache_path))) {
        free(c);
        return set_err(err, err_len, VB_ERR_NOMEM, "out of memory");
    }
    int st = ops->init(model, &p, &c->state, c->err);
    if (st != VB_OK) {
        if (!c->err[0]) snprintf(c->err, sizeof c->err, "backend %s: %s", ops->name, vb_status_str(st));
        set_err(err, err_len, st, c->err);
        free((char *)c->params.cost_cache_path);
        free(c);
        return st;
    }
    c->caps = ops->caps(c->state);
    c->kv = ops->paged_kv ? ops->paged_kv(c->state) : NULL;
    if (c->caps.max_batch <= 0 || c->caps.max_batch > p.n_batch_max) c->caps.max_batch = p.n_batch_max;
    c->logit_index = malloc((size_t)c->caps.max_batch * sizeof *c->logit_index);
    if (!c->logit_index) {
        vb_context_free(c);
        return set_err(err, err_len, VB_ERR_NOMEM, "out of memory");
    }
    *out = c;
    return VB_OK;
}

void vb_context_free(vb_context *c) {
    if (!c) return;
    if (c->state) c->ops->free(c->state);
    vb_context_set_decoder_cache(c, NULL, NULL);
    free((char *)c->params.cost_cache_path);
    free(c->logits);
    free(c->logit_index);
    free(c);
}

const char *vb_context_error(const vb_context *c) { return c ? c->err : "context is NULL"; }
const vb_model *vb_context_model(const vb_context *c) { return c ? c->model : NULL; }
const char *vb_context_backend_name(const vb_context *c) { return c ? c->ops->name : ""; }
vb_backend_caps vb_context_caps(const vb_context *c) {
    vb_backend_caps none = {0};
    return c ? c->caps : none;
}

int32_t vb_context_n_seq(const vb_context *c) { return c ? c->params.n_seq_max : 0; }

static int ctx_err(vb_context *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int ctx_err(vb_context *c, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
    return status;
}

/* Validate batch b (messages start with fn), then run it: logits of the rows with want_logits
 * into c->logits, or with hidden (the backend's forward_hidden, which the caller checked) their
 * final hidden states [rows with want_logits][n_embd] into hidden. */
static int run_batch(vb_context *c, const vb_batch *b, float *hidden, const char *fn) {
    c->n_last = 0;
    if (!b || b->n < 0 || (b->n > 0 && (!b->token || !b->pos || !b->seq || !b->want_logits)))
        return ctx_err(c, VB_ERR_ARG, "%s: batch is NULL or incomplete", fn);
    if (b->n > b->capacity)
        return ctx_err(c, VB_ERR_ARG, "%s: batch has %d rows but room for %d", fn, b->n, b->capacity);
    if (b->n == 0) return VB_OK;
    if (b->n > c->caps.max_batch)
        return ctx_err(c, VB_ERR_ARG, "%s: %d rows exceed the backend's batch limit %d", fn, b->n,
                       c->caps.max_batch);
    int32_t n_vocab = c->model->info.n_vocab, n_out = 0;
    for (int32_t i = 0; i < b->n; i++) {
        if (b->token[i] < 0 || b->token[i] >= n_vocab)
            return ctx_err(c, VB_ERR_ARG, "%s: row %d: token %d out of range [0, %d)", fn, i,
                           b->token[i], n_vocab);
        if (b->seq[i] < 0 || b->seq[i] >= c->params.n_seq_max)
            return ctx_err(c, VB_ERR_ARG, "%s: row %d: sequence %d out of range [0, %d)", fn, i,
                           b->seq[i], c->params.n_seq_max);
        if (b->pos[i] < 0 || b->pos[i] >= VB_POS_LIMIT)
            return ctx_err(c, VB_ERR_ARG, "%s: row %d: position %d out of range [0, %d)", fn, i,
                           b->pos[i], VB_POS_LIMIT);
        c->logit_index[i] = b->want_logits[i] ? n_out++ : -1;
    }
    if (!hidden && n_out > c->logits_cap) {
        float *grown = realloc(c->logits, (size_t)n_out * (size_t)n_vocab * sizeof(float));
        if (!grown) return ctx_err(c, VB_ERR_NOMEM, "%s: cannot allocate logits for %d rows", fn, n_out);
        c->logits = grown;
        c->logits_cap = n_out;
    }
    c->err[0] = 0;
    double t0 = vb_time_now();
    int st = hidden ? c->ops->forward_hidden(c->state, b, hidden) : c->ops->forward(c->state, b, c->logits);
    c->stats.forward_seconds += vb_time_now() - t0;
    if (st != VB_OK) {
        if (!c->err[0]) ctx_err(c, st, "%s: backend %s: %s", fn, c->ops->name, vb_status_str(st));
        return st;
    }
    if (!hidden) c->n_last = b->n; /* vb_get_logits: no rows after a hidden-state forward */
    c->stats.n_forward++;
    c->stats.n_rows += b->n;
    c->stats.n_logit_rows += hidden ? 0 : n_out;
    return VB_OK;
}

int vb_forward(vb_context *c, const vb_batch *b) {
    if (!c) return VB_ERR_ARG;
    return run_batch(c, b, NULL, "vb_forward");
}

const float *vb_get_logits(const vb_context *c, int32_t i) {
    if (!c || i < 0 || i >= c->n_last || c->logit_index[i] < 0) return NULL;
    return c->logits + (size_t)c->logit_index[i] * (size_t)c->model->info.n_vocab;
}

static int check_seq(vb_context *c, vb_seq seq, const char *fn) {
    if (seq < 0 || seq >= c->params.n_seq_max)
        return ctx_err(c, VB_ERR_ARG, "%s: sequence %d out of range [0, %d)", fn, seq,
                       c->params.n_seq_max);
    return VB_OK;
}

/* Paged backends: the context runs every KV operation on the pool (one place for all of them). */
static void kv_changed(vb_context *c, vb_seq seq) {
    if (c->ops->kv_changed) c->ops->kv_changed(c->state, seq);
}

int32_t vb_kv_seq_len(const vb_context *c, vb_seq seq) {
    if (!c || seq < 0 || seq >= c->params.n_seq_max) return VB_ERR_ARG;
    return c->kv ? vb_kvc_seq_len(c->kv, seq) : c->ops->kv_seq_len(c->state, seq);
}

int32_t vb_kv_blocks_free(const vb_context *c) { return c && c->kv ? vb_kvc_blocks_free(c->kv) : -1; }

int vb_kv_truncate(vb_context *c, vb_seq seq, int32_t n_keep) {
    if (!c) return VB_ERR_ARG;
    int st = check_seq(c, seq, "vb_kv_truncate");
    if (st) return st;
    if (n_keep < 0) return ctx_err(c, VB_ERR_ARG, "vb_kv_truncate: n_keep %d < 0", n_keep);
    if (!c->kv) return c->ops->kv_truncate(c->state, seq, n_keep);
    kv_changed(c, seq);
    return vb_kvc_truncate(c->kv, seq, n_keep);
}

int vb_kv_fork(vb_context *c, vb_seq src, vb_seq dst) {
    if (!c) return VB_ERR_ARG;
    int st = check_seq(c, src, "vb_kv_fork");
    if (!st) st = check_seq(c, dst, "vb_kv_fork");
    if (st) return st;
    if (src == dst) return ctx_err(c, VB_ERR_ARG, "vb_kv_fork: source and destination are both %d", src);
    if (vb_kv_seq_len(c, dst) != 0)
        return ctx_err(c, VB_ERR_STATE, "vb_kv_fork: destination sequence %d is not empty", dst);
    if (c->kv) {
        kv_changed(c, dst);
        return vb_kvc_fork(c->kv, src, dst);
    }
    if (!c->ops->kv_fork)
        return ctx_err(c, VB_ERR_UNSUPPORTED, "vb_kv_fork: backend %s cannot fork sequences", c->ops->name);
    return c->ops->kv_fork(c->state, src, dst);
}

int vb_kv_free_seq(vb_context *c, vb_seq seq) {
    if (!c) return VB_ERR_ARG;
    int st = check_seq(c, seq, "vb_kv_free_seq");
    if (st) return st;
    if (!c->kv) return c->ops->kv_free_seq(c->state, seq);
    kv_changed(c, seq);
    return vb_kvc_free_seq(c->kv, seq);
}

/* ---- embeddings ---- */

vb_embed_params vb_embed_default_params(void) {
    vb_embed_params p = {.pooling = VB_POOLING_MEAN, .normalize = true, .seq = -1};
    return p;
}

/* Pools the hidden rows hid[n][E] (rows first..first+n-1 of the input) into acc[E] (mean: sum;
 * cls / last: the one row asked for) or, for NONE, copies them to out. */
static void pool_rows(int32_t pooling, const float *hid, int32_t n, int32_t E, int32_t first,
                      double *acc, float *out) {
    if (pooling == VB_POOLING_NONE) {
        memcpy(out + (size_t)first * (size_t)E, hid, (size_t)n * (size_t)E * sizeof(float));
        return;
    }
    for (int32_t i = 0; i < n; i++)
        for (int32_t d = 0; d < E; d++) acc[d] += hid[(size_t)i * (size_t)E + (size_t)d];
}

static void unit_length(float *v, int32_t E) {
    double ss = 0.0;
    for (int32_t d = 0; d < E; d++) ss += (double)v[d] * (double)v[d];
    if (ss > 0.0) {
        const double inv = 1.0 / sqrt(ss);
        for (int32_t d = 0; d < E; d++) v[d] = (float)(v[d] * inv);
    }
}

int vb_embed(vb_context *c, const vb_token *tokens, int32_t n_tokens, const vb_embed_params *params,
             float *out, int64_t out_len) {
    if (!c) return VB_ERR_ARG;
    const vb_embed_params p = params ? *params : vb_embed_default_params();
    const int32_t E = c->model->info.n_embd, n_ctx = c->model->info.n_ctx_train;
    if (!c->ops->forward_hidden)
        return ctx_err(c, VB_ERR_UNSUPPORTED, "vb_embed: backend %s cannot return hidden states "
                       "(embeddings run on the cpu backend)", c->ops->name);
    if (!tokens || n_tokens < 1)
        return ctx_err(c, VB_ERR_ARG, "vb_embed: the input is empty (give at least one token)");
    if (p.pooling < VB_POOLING_NONE || p.pooling > VB_POOLING_LAST)
        return ctx_err(c, VB_ERR_ARG, "vb_embed: pooling %d is not none (0), mean (1), cls (2) or "
                       "last (3)", p.pooling);
    const int64_t need = p.pooling == VB_POOLING_NONE ? (int64_t)n_tokens * E : E;
    if (!out || out_len < need)
        return ctx_err(c, VB_ERR_ARG, "vb_embed: out holds %lld floats, %lld needed",
                       out ? (long long)out_len : 0LL, (long long)need);
    for (int32_t t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || tokens[t] >= c->model->info.n_vocab)
            return ctx_err(c, VB_ERR_ARG, "vb_embed: token %d (input position %d) out of range [0, %d)",
                           tokens[t], t, c->model->info.n_vocab);
    if (n_ctx > 0 && n_tokens > n_ctx)
        return ctx_err(c, VB_ERR_ARG, "vb_embed: the input of %d tokens is longer than the model's "
                       "context of %d", n_tokens, n_ctx);
    if (c->kv) {
        vb_kv_stats ks;
        vb_kvc_stats(c->kv, &ks);
        if ((int64_t)n_tokens > (int64_t)ks.blocks_total * ks.block_size)
            return ctx_err(c, VB_ERR_ARG, "vb_embed: the input of %d tokens is longer than the KV "
                           "cache (%lld tokens)", n_tokens,
                           (long long)ks.blocks_total * ks.block_size);
    }
    vb_seq seq = p.seq;
    if (seq < 0) { /* the first empty sequence */
        for (vb_seq q = 0; q < c->params.n_seq_max && seq < 0; q++)
            if (vb_kv_seq_len(c, q) == 0) seq = q;
        if (seq < 0)
            return ctx_err(c, VB_ERR_STATE, "vb_embed: every one of the %d sequences holds rows "
                           "(free one, or pass an empty one in params->seq)", c->params.n_seq_max);
    } else {
        int st = check_seq(c, seq, "vb_embed");
        if (st) return st;
        if (vb_kv_seq_len(c, seq) != 0)
            return ctx_err(c, VB_ERR_STATE, "vb_embed: sequence %d is not empty", seq);
    }
    /* the prompt in chunks of the batch limit on one sequence; output rows: all (none, mean),
       the first (cls) or the last (last) */
    const int32_t chunk = c->caps.max_batch < n_tokens ? c->caps.max_batch : n_tokens;
    const int32_t n_hid = p.pooling == VB_POOLING_MEAN || p.pooling == VB_POOLING_NONE ? chunk : 1;
    vb_batch *b = vb_batch_init(chunk);
    float *hid = malloc((size_t)n_hid * (size_t)E * sizeof *hid);   /* [n_hid][E] */
    double *acc = calloc((size_t)E, sizeof *acc);                     /* [E] pooled sum */
    int st = b && hid && acc ? VB_OK : ctx_err(c, VB_ERR_NOMEM, "vb_embed: out of memory");
    for (int32_t start = 0; st == VB_OK && start < n_tokens; start += chunk) {
        const int32_t m = n_tokens - start < chunk ? n_tokens - start : chunk;
        vb_batch_clear(b);
        int32_t first = -1, n_want = 0;
        for (int32_t i = 0; i < m; i++) {
            const int32_t t = start + i;
            const bool want = p.pooling == VB_POOLING_MEAN || p.pooling == VB_POOLING_NONE ||
                              (p.pooling == VB_POOLING_CLS && t == 0) ||
                              (p.pooling == VB_POOLING_LAST && t == n_tokens - 1);
            if (want && first < 0) first = t;
            n_want += want;
            vb_batch_add(b, tokens[t], t, seq, want);
        }
        st = run_batch(c, b, hid, "vb_embed");
        if (st == VB_OK && n_want) pool_rows(p.pooling, hid, n_want, E, first, acc, out);
    }
    /* release the sequence whatever happened (error messages stay: freeing sets none) */
    vb_kv_free_seq(c, seq);
    if (st == VB_OK && p.pooling != VB_POOLING_NONE) {
        const double scale = p.pooling == VB_POOLING_MEAN ? 1.0 / n_tokens : 1.0;
        for (int32_t d = 0; d < E; d++) out[d] = (float)(acc[d] * scale);
    }
    if (st == VB_OK && p.normalize)
        for (int32_t r = 0; r < (p.pooling == VB_POOLING_NONE ? n_tokens : 1); r++)
            unit_length(out + (size_t)r * (size_t)E, E);
    vb_batch_free(b);
    free(hid);
    free(acc);
    return st;
}

vb_stats vb_context_stats(const vb_context *c) {
    vb_stats s = {0};
    if (!c) return s;
    s = c->stats;
    if (c->kv) vb_kvc_stats(c->kv, &s.kv);
    else if (c->ops->kv_stats) c->ops->kv_stats(c->state, &s.kv);
    return s;
}

void vb_context_reset_stats(vb_context *c) {
    if (c) memset(&c->stats, 0, sizeof c->stats);
}

/* ---- batches ---- */

vb_batch *vb_batch_init(int32_t capacity) {
    if (capacity < 1) return NULL;
    vb_batch *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    b->capacity = capacity;
    b->token = malloc((size_t)capacity * sizeof *b->token);
    b->pos = malloc((size_t)capacity * sizeof *b->pos);
    b->seq = malloc((size_t)capacity * sizeof *b->seq);
    b->want_logits = malloc((size_t)capacity * sizeof *b->want_logits);
    if (!b->token || !b->pos || !b->seq || !b->want_logits) {
        vb_batch_free(b);
        return NULL;
    }
    return b;
}

void vb_batch_free(vb_batch *b) {
    if (!b) return;
    free(b->token);
    free(b->pos);
    free(b->seq);
    free(b->want_logits);
    free(b);
}

int vb_batch_add(vb_batch *b, vb_token token, vb_pos pos, vb_seq seq, bool want_logits) {
    if (!b || b->n >= b->capacity) return VB_ERR_ARG;
    b->token[b->n] = token;
    b->pos[b->n] = pos;
    b->seq[b->n] = seq;
    b->want_logits[b->n] = want_logits ? 1 : 0;
    b->n++;
    return VB_OK;
}
