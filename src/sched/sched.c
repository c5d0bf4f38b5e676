/* sched.c - vibee's one generation engine: the continuous-batching scheduler of
 * include/vibee_sched.h, which also runs vb_generate (one request, generate.c). A request table,
 * a FCFS waiting queue, sequence slots (free / running / cached prefix), chunked prefill under a
 * per-step row budget, KV block accounting, preemption by recompute, prefix sharing by
 * vb_kv_fork + vb_kv_truncate to whole blocks, and per request a decoder step machine
 * (decode_internal.h: AR, WeDLM, draft-and-verify) that plans its rows of each step and consumes
 * their logits. Every step is ONE vb_forward carrying the rows of all running requests.
 *
 * Invariant of a running request r (slot r->seq): its KV sequence holds rows
 * hist[0 .. n_cached) at positions 0 .. n_cached-1. Prefilling (!r->decoding): the rows still to
 * forward are hist[n_cached .. n_hist); when the last is forwarded its logits resume the
 * decoder. Decoding: the decoder plans rows from position n_cached on and says after the forward
 * how many KV rows to keep (the rest is scratch and truncated). A cached slot holds rows
 * toks[0 .. n) of a finished request, n a multiple of the block size, so no block is ever
 * shared partially filled. */
#include "sched/sched_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

vb_sched_params vb_sched_default_params(void) {
    vb_sched_params p;
    memset(&p, 0, sizeof p);
    p.max_waiting = 256;
    p.max_requests = 1024;
    p.prefix_sharing = true;
    p.prefix_cache = true;
    return p;
}

/* the decoder fields of vb_request_params.decoding are vb_generate_params' */

vb_request_params vb_request_default_params(void) {
    vb_request_params p;
    memset(&p, 0, sizeof p);
    p.n_predict = 128;
    p.sampler = vb_sampler_default_params();
    p.stop_at_eos = true;
    p.decoding = vb_generate_default_params();
    return p;
}

const char *vb_finish_reason_str(int reason) {
    switch (reason) {
    case VB_FINISH_LENGTH: return "length";
    case VB_FINISH_EOS: return "stop";
    case VB_FINISH_CANCELLED: return "cancelled";
    case VB_FINISH_KV: return "kv_full";
    case VB_FINISH_ERROR: return "error";
    default: return "";
    }
}

static int sched_err(vb_sched *s, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int sched_err(vb_sched *s, int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return status;
}

const char *vb_sched_error(const vb_sched *s) { return s ? s->err : "scheduler is NULL"; }

/* ---- block accounting ---- */

static int32_t blocks_of(const vb_sched *s, int32_t rows) {
    return (rows + s->block_size - 1) / s->block_size;
}

/* Blocks that appending n rows to a sequence of len rows takes (no partially filled block is
   ever shared, see the top comment). */
static int32_t blocks_for(const vb_sched *s, int32_t len, int32_t n) {
    return blocks_of(s, len + n) - blocks_of(s, len);
}

static int32_t free_blocks(const vb_sched *s) {
    if (!s->paged) return 1 << 30; /* no pool to account: rely on VB_KV_FULL */
    return vb_kv_blocks_free(s->ctx);
}

/* Rows a sequence of len rows can grow by with `avail` free blocks. */
static int32_t rows_that_fit(const vb_sched *s, int32_t len, int32_t avail) {
    if (!s->paged) return 1 << 30;
    return (blocks_of(s, len) + avail) * s->block_size - len;
}

/* ---- init / free ---- */

int vb_sched_init(vb_context *ctx, const vb_sched_params *params, vb_sched **out, char *err,
                  size_t err_len) {
    return vb_sched_init_engine(ctx, params, NULL, out, err, err_len);
}

int vb_sched_init_engine(vb_context *ctx, const vb_sched_params *params, const vb_engine_opts *opts,
                         vb_sched **out, char *err, size_t err_len) {
    char msg[256] = "";
    vb_engine_opts o = {0};
    if (opts) o = *opts;
    if (out) *out = NULL;
    vb_sched_params p = params ? *params : vb_sched_default_params();
    if (!ctx || !out) {
        snprintf(msg, sizeof msg, "vb_sched_init: context or out is NULL");
    } else if (p.n_seq < 0 || p.token_budget < 0 || p.max_waiting < 1 || p.max_requests < 1 || p.draft_max < 0 ||
               p.draft_max > 64) {
        snprintf(msg, sizeof msg, "vb_sched_init: parameter out of range (n_seq %d, token_budget %d, "
                 "max_waiting %d, max_requests %d, draft_max %d in [0, 64])", p.n_seq, p.token_budget,
                 p.max_waiting, p.max_requests, p.draft_max);
    }
    if (msg[0]) {
        if (err && err_len) snprintf(err, err_len, "%s", msg);
        return VB_ERR_ARG;
    }
    /* the context's number of sequence ids: the first id vb_kv_seq_len rejects */
    int32_t n_seq_ctx = vb_context_n_seq(ctx) - o.seq_base;
    vb_backend_caps caps = vb_context_caps(ctx);
    if (o.hooks && o.hooks->caps_override) caps = *o.hooks->caps_override;
    if (caps.max_batch <= 0) caps.max_batch = 512;
    if (p.n_seq == 0 || p.n_seq > n_seq_ctx) p.n_seq = n_seq_ctx;
    if (p.n_seq > caps.max_batch) p.n_seq = caps.max_batch;
    if (p.token_budget == 0) p.token_budget = caps.max_batch < 256 ? caps.max_batch : 256;
    if (p.token_budget > caps.max_batch) p.token_budget = caps.max_batch;
    if (p.token_budget < p.n_seq) p.token_budget = p.n_seq;
    if (!caps.kv_fork) p.prefix_sharing = p.prefix_cache = false;
    if (!p.prefix_sharing) p.prefix_cache = false;
    if (o.n_reuse < 0 || (o.n_reuse > 0 && !o.single)) {
        if (err && err_len) snprintf(err, err_len, "vb_sched_init: n_reuse %d without a single request", o.n_reuse);
        return VB_ERR_ARG;
    }
    for (int32_t q = 0; q < p.n_seq; q++)
        if (vb_kv_seq_len(ctx, o.seq_base + q) != (q == 0 ? o.n_reuse : 0)) {
            if (err && err_len) snprintf(err, err_len, "vb_sched_init: sequence %d of the context is not empty", q);
            return VB_ERR_STATE;
        }
    if (p.n_seq < 1) {
        if (err && err_len) snprintf(err, err_len, "vb_sched_init: the context has no sequence slots");
        return VB_ERR_ARG;
    }
    vb_sched *s = calloc(1, sizeof *s);
    if (!s) goto nomem;
    s->ctx = ctx;
    s->p = p;
    s->o = o;
    s->caps = caps;
    const vb_model_info *info = vb_model_get_info(vb_context_model(ctx));
    s->n_vocab = info->n_vocab;
    s->eos = info->eos;
    s->n_ctx_train = info->n_ctx_train;
    vb_stats st = vb_context_stats(ctx);
    s->paged = vb_kv_blocks_free(ctx) >= 0 && st.kv.block_size > 0 && !o.keep_kv;
    s->block_size = s->paged ? st.kv.block_size : 16;
    s->slots = calloc((size_t)p.n_seq, sizeof *s->slots);
    s->reqs = calloc((size_t)p.max_requests, sizeof *s->reqs);
    s->waiting = calloc((size_t)p.max_waiting + (size_t)p.n_seq, sizeof *s->waiting);
    s->running = calloc((size_t)p.n_seq, sizeof *s->running);
    s->batch = vb_batch_init(p.token_budget);
    if (!s->slots || !s->reqs || !s->waiting || !s->running || !s->batch) {
        vb_sched_free(s);
        goto nomem;
    }
    s->next_id = 1;
    *out = s;
    return VB_OK;
nomem:
    if (err && err_len) snprintf(err, err_len, "vb_sched_init: out of memory");
    return VB_ERR_NOMEM;
}

static void req_free(sched_req *r) {
    if (!r) return;
    if (r->run.ops && r->run.ops->release) r->run.ops->release(&r->run, false);
    vb_sampler_free(r->run.sampler);
    vb_decode_grammar_free(&r->run);
    free(r->run.hist);
    free(r->run.out);
    free(r->run.last_logits);
    free(r->run.lp);
    free(r);
}

/* KV sequence of slot q */
static vb_seq kv_seq(const vb_sched *s, int32_t q) { return s->o.seq_base + q; }

static void slot_clear(vb_sched *s, int32_t q) {
    seq_slot *sl = &s->slots[q];
    if (!s->o.keep_kv) vb_kv_free_seq(s->ctx, kv_seq(s, q));
    free(sl->toks);
    memset(sl, 0, sizeof *sl);
}

void vb_sched_free(vb_sched *s) {
    if (!s) return;
    if (s->slots)
        for (int32_t q = 0; q < s->p.n_seq; q++) slot_clear(s, q);
    if (s->reqs)
        for (int32_t i = 0; i < s->n_reqs; i++) req_free(s->reqs[i]);
    free(s->slots);
    free(s->reqs);
    free(s->waiting);
    free(s->running);
    vb_batch_free(s->batch);
    free(s);
}

/* ---- requests ---- */

static sched_req *find_req(const vb_sched *s, vb_request_id id) {
    for (int32_t i = 0; i < s->n_reqs; i++)
        if (s->reqs[i]->id == id) return s->reqs[i];
    return NULL;
}

sched_req *vb_sched_find(const vb_sched *s, vb_request_id id) { return s ? find_req(s, id) : NULL; }

int vb_sched_submit(vb_sched *s, const vb_token *prompt, int32_t n_prompt,
                    const vb_request_params *params, vb_request_id *id) {
    if (!s) return VB_ERR_ARG;
    vb_request_params rp = params ? *params : vb_request_default_params();
    vb_generate_params gen = rp.decoding;
    gen.n_predict = rp.n_predict;
    gen.sampler = rp.sampler;
    gen.stop_at_eos = rp.stop_at_eos;
    gen.on_token = NULL;
    gen.user = NULL;
    if (rp.n_predict < 1)
        return sched_err(s, VB_ERR_ARG, "n_predict %d < 1", rp.n_predict);
    /* the scheduler-wide draft-and-verify setting turns AR requests into verify ones */
    if (gen.decoder == VB_DECODER_AR && s->p.draft_max > 0) {
        gen.decoder = VB_DECODER_VERIFY;
        gen.draft_max = s->p.draft_max;
    }
    return vb_sched_submit_gen(s, prompt, n_prompt, &gen, 0, id);
}

int vb_sched_submit_gen(vb_sched *s, const vb_token *prompt, int32_t n_prompt,
                        const vb_generate_params *gen, int32_t max_out, vb_request_id *id) {
    if (!s || !gen) return VB_ERR_ARG;
    if (!prompt || n_prompt < 1 || !id)
        return sched_err(s, VB_ERR_ARG, "empty prompt (give at least one token, e.g. BOS)");
    if (gen->n_predict < 0)
        return sched_err(s, VB_ERR_ARG, "n_predict %d < 0", gen->n_predict);
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= s->n_vocab)
            return sched_err(s, VB_ERR_ARG, "prompt token %d at %d out of range [0, %d)",
                             prompt[i], i, s->n_vocab);
    const vb_model_info *info = vb_model_get_info(vb_context_model(s->ctx));
    char why[160];
    int st_chk = vb_decode_check_params(info, gen, why, sizeof why);
    if (st_chk != VB_OK) return sched_err(s, st_chk, "%s", why);
    if (gen->reuse_kv && !s->o.single)
        return sched_err(s, VB_ERR_ARG, "reuse_kv is for vb_generate (the scheduler shares prefixes itself)");
    if (s->o.n_reuse >= n_prompt)
        return sched_err(s, VB_ERR_ARG, "the sequence holds %d rows, the prompt only %d tokens: with "
                         "reuse_kv it must hold fewer rows than the prompt (vb_kv_truncate it)",
                         s->o.n_reuse, n_prompt);
    if (s->paged && !s->o.single) {
        vb_stats st = vb_context_stats(s->ctx);
        int64_t capacity = (int64_t)st.kv.blocks_total * st.kv.block_size;
        if (n_prompt >= capacity)
            return sched_err(s, VB_ERR_ARG, "prompt of %d tokens does not fit the KV cache "
                             "(%lld rows): raise the context size", n_prompt, (long long)capacity);
    }
    if (s->n_ctx_train > 0 && n_prompt >= s->n_ctx_train && !s->o.single)
        return sched_err(s, VB_ERR_ARG, "prompt of %d tokens reaches the model's context "
                         "length %d", n_prompt, s->n_ctx_train);
    if (s->n_waiting >= s->p.max_waiting)
        return sched_err(s, VB_ERR_STATE, "waiting queue full (%d requests)", s->n_waiting);
    if (s->n_reqs >= s->p.max_requests)
        return sched_err(s, VB_ERR_STATE, "request table full (%d requests held; "
                         "release finished ones)", s->n_reqs);
    sched_req *r = calloc(1, sizeof *r);
    if (!r) return sched_err(s, VB_ERR_NOMEM, "out of memory");
    int64_t limit = gen->n_predict;
    if (max_out > 0 && limit > max_out) limit = max_out;
    if (max_out == 0 && s->o.single) limit = 0;
    if (s->n_ctx_train > 0 && (int64_t)n_prompt + limit > s->n_ctx_train) {
        /* the model's learned positions end here: stop there as at a full KV */
        limit = s->n_ctx_train - n_prompt > 0 ? s->n_ctx_train - n_prompt : 0;
        r->ctx_limited = true;
    }
    vb_decode_run *run = &r->run;
    run->ctx = s->ctx;
    run->params = *gen;
    run->info = info;
    run->caps = s->caps;
    run->stats = &r->stats;
    run->n_vocab = s->n_vocab;
    run->eos = gen->stop_at_eos ? info->eos : -1;
    run->limit = (int32_t)limit;
    run->batch = s->batch;
    run->ops = vb_decoder_for(gen->decoder);
    if (s->o.hooks) run->cost_override = s->o.hooks->cost_override;
    run->out = malloc(sizeof(vb_token) * ((size_t)limit + 1));
    run->hist = malloc(sizeof(vb_token) * ((size_t)n_prompt + (size_t)limit + 1));
    run->last_logits = malloc(sizeof(float) * (size_t)s->n_vocab);
    run->sampler = vb_sampler_init(&gen->sampler);
    run->params.logprobs = NULL; /* vb_generate copies run->lp out itself */
    if (gen->n_logprobs >= 0) run->lp = malloc(sizeof(vb_logprobs) * ((size_t)limit + 1));
    if (!run->out || !run->hist || !run->last_logits || !run->sampler ||
        (gen->n_logprobs >= 0 && !run->lp)) {
        bool bad = run->out && run->hist && run->last_logits && !run->sampler;
        run->ops = NULL;
        req_free(r);
        if (bad)
            return sched_err(s, VB_ERR_ARG, "invalid sampling parameters (temp >= 0, "
                             "0 < top_p <= 1, 0 <= min_p < 1, repeat_penalty > 0)");
        return sched_err(s, VB_ERR_NOMEM, "out of memory");
    }
    int st_gr = vb_decode_grammar_init(run, why, sizeof why);
    if (st_gr != VB_OK) {
        run->ops = NULL;
        req_free(r);
        return sched_err(s, st_gr, "%s", why);
    }
    memcpy(run->hist, prompt, (size_t)n_prompt * sizeof *prompt);
    run->n_hist = r->n_prompt = n_prompt;
    r->stats.n_prompt = n_prompt;
    r->stats.n_prompt_reused = s->o.n_reuse;
    r->seq = -1;
    r->state = REQ_WAITING;
    r->id = s->next_id++;
    s->reqs[s->n_reqs++] = r;
    s->waiting[s->n_waiting++] = r;
    s->n_submitted++;
    *id = r->id;
    return VB_OK;
}

static void remove_ptr(sched_req **arr, int32_t *n, const sched_req *r) {
    for (int32_t i = 0; i < *n; i++)
        if (arr[i] == r) {
            memmove(arr + i, arr + i + 1, (size_t)(*n - i - 1) * sizeof *arr);
            (*n)--;
            return;
        }
}

static int32_t lcp(const vb_token *a, int32_t na, const vb_token *b, int32_t nb) {
    int32_t n = na < nb ? na : nb, i = 0;
    while (i < n && a[i] == b[i]) i++;
    return i;
}

/* Keep the whole blocks of a finished request's sequence as a cached prefix, or free it. */
static void retire_seq(vb_sched *s, sched_req *r) {
    int32_t q = r->seq;
    if (q < 0) return;
    seq_slot *sl = &s->slots[q];
    int32_t rows = r->n_cached / s->block_size * s->block_size;
    bool keep = s->p.prefix_cache && r->finish != VB_FINISH_ERROR && rows >= s->block_size;
    for (int32_t k = 0; keep && k < s->p.n_seq; k++) /* an existing cached slot covers it */
        if (k != q && s->slots[k].kind == SLOT_CACHED && s->slots[k].n >= rows &&
            lcp(s->slots[k].toks, s->slots[k].n, r->run.hist, rows) >= rows)
            keep = false;
    vb_token *copy = keep ? malloc((size_t)rows * sizeof *copy) : NULL;
    if (copy && vb_kv_truncate(s->ctx, kv_seq(s, q), rows) == VB_OK) {
        memcpy(copy, r->run.hist, (size_t)rows * sizeof *copy);
        sl->kind = SLOT_CACHED;
        sl->req = NULL;
        sl->toks = copy;
        sl->n = rows;
        sl->lru = ++s->clock;
    } else {
        free(copy);
        slot_clear(s, q);
    }
    r->seq = -1;
    r->n_cached = 0;
}

static void finish_req(vb_sched *s, sched_req *r, int reason) {
    if (reason == VB_FINISH_KV && r->decoding && r->run.ops && r->run.ops->at_kv_full) {
        int32_t before = r->run.n_out;
        r->run.ops->at_kv_full(&r->run);
        s->n_generated += r->run.n_out - before;
    }
    if (r->run.ops && r->run.ops->release && r->run.state)
        r->run.ops->release(&r->run, reason != VB_FINISH_ERROR && reason != VB_FINISH_CANCELLED);
    if (r->state == REQ_RUNNING && s->o.keep_kv && !r->decoding &&
        (reason == VB_FINISH_KV || reason == VB_FINISH_ERROR))
        vb_kv_truncate(s->ctx, kv_seq(s, r->seq), s->o.n_reuse); /* a partial prefill is useless */
    if (r->state == REQ_RUNNING) {
        remove_ptr(s->running, &s->n_running, r);
        r->finish = reason;
        retire_seq(s, r);
    } else if (r->state == REQ_WAITING) {
        remove_ptr(s->waiting, &s->n_waiting, r);
    }
    r->state = REQ_FINISHED;
    r->finish = reason;
    if (reason == VB_FINISH_LENGTH || reason == VB_FINISH_EOS) s->n_completed++;
    else if (reason == VB_FINISH_CANCELLED) s->n_cancelled++;
    else s->n_failed++;
}

int vb_sched_cancel(vb_sched *s, vb_request_id id) {
    if (!s) return VB_ERR_ARG;
    sched_req *r = find_req(s, id);
    if (!r) return sched_err(s, VB_ERR_ARG, "vb_sched_cancel: unknown request %lld", (long long)id);
    if (r->state != REQ_FINISHED) finish_req(s, r, VB_FINISH_CANCELLED);
    return VB_OK;
}

int vb_sched_release(vb_sched *s, vb_request_id id) {
    if (!s) return VB_ERR_ARG;
    sched_req *r = find_req(s, id);
    if (!r) return sched_err(s, VB_ERR_ARG, "vb_sched_release: unknown request %lld", (long long)id);
    if (r->state != REQ_FINISHED) finish_req(s, r, VB_FINISH_CANCELLED);
    remove_ptr(s->reqs, &s->n_reqs, r);
    req_free(r);
    return VB_OK;
}

int32_t vb_sched_poll(vb_sched *s, vb_request_id id, vb_token *out, int32_t max_out, int *finish) {
    if (!s) return VB_ERR_ARG;
    sched_req *r = find_req(s, id);
    if (!r || max_out < 0 || (max_out > 0 && !out))
        return sched_err(s, VB_ERR_ARG, "vb_sched_poll: unknown request %lld or bad buffer", (long long)id);
    int32_t avail = r->run.n_out - r->n_polled;
    int32_t n = avail < max_out ? avail : max_out;
    if (n > 0) memcpy(out, r->run.out + r->n_polled, (size_t)n * sizeof *out);
    r->n_polled += n;
    if (finish) *finish = r->finish;
    return n;
}

const vb_token *vb_sched_tokens(const vb_sched *s, vb_request_id id, int32_t *n) {
    if (!s) return NULL;
    sched_req *r = find_req(s, id);
    if (!r) return NULL;
    if (n) *n = r->run.n_out;
    return r->run.out;
}

const vb_logprobs *vb_sched_logprobs(const vb_sched *s, vb_request_id id, int32_t *n) {
    sched_req *r = s ? find_req(s, id) : NULL;
    if (!r || !r->run.lp) return NULL;
    if (n) *n = r->run.n_out;
    return r->run.lp;
}

int vb_sched_request_stats(const vb_sched *s, vb_request_id id, vb_generate_stats *out) {
    const sched_req *r = s ? find_req(s, id) : NULL;
    if (!r || !out) return VB_ERR_ARG;
    *out = r->stats;
    out->n_generated = r->run.n_out;
    out->tokens_per_forward =
        out->n_forward_decode > 0 ? (double)r->run.n_out / (double)out->n_forward_decode : 0.0;
    return VB_OK;
}

bool vb_sched_idle(const vb_sched *s) { return !s || (s->n_running == 0 && s->n_waiting == 0); }

void vb_sched_clear_cache(vb_sched *s) {
    if (!s) return;
    for (int32_t q = 0; q < s->p.n_seq; q++)
        if (s->slots[q].kind == SLOT_CACHED) slot_clear(s, q);
}

/* ---- scheduling decisions ---- */

/* Free the least recently used cached slot other than `keep`; false if there is none. */
static bool evict_cached(vb_sched *s, int32_t keep) {
    int32_t best = -1;
    for (int32_t q = 0; q < s->p.n_seq; q++)
        if (q != keep && s->slots[q].kind == SLOT_CACHED && (best < 0 || s->slots[q].lru < s->slots[best].lru))
            best = q;
    if (best < 0) return false;
    slot_clear(s, best);
    return true;
}

/* Preempt the most recently admitted running request: free its blocks, requeue it at the head
   of the waiting queue; it re-prefills prompt + generated tokens when admitted again. */
static void preempt_newest(vb_sched *s) {
    sched_req *r = s->running[s->n_running - 1];
    s->n_running--;
    slot_clear(s, r->seq);
    r->seq = -1;
    r->n_cached = r->run.kv_len = 0;
    r->decoding = false; /* re-prefills every committed token, then resumes its decoder */
    r->state = REQ_WAITING;
    memmove(s->waiting + 1, s->waiting, (size_t)s->n_waiting * sizeof *s->waiting);
    s->waiting[0] = r;
    s->n_waiting++;
    s->n_preemptions++;
}

/* Best prefix source for tokens toks[0..n): a running or cached slot sharing the most whole
   blocks, at most n-1 rows (one row must be forwarded for logits). Returns the slot or -1 and
   the shared rows in *shared. */
static int32_t find_prefix(const vb_sched *s, const vb_token *toks, int32_t n, int32_t *shared) {
    int32_t best = -1, best_rows = 0;
    if (!s->p.prefix_sharing) return -1;
    for (int32_t q = 0; q < s->p.n_seq; q++) {
        const seq_slot *sl = &s->slots[q];
        const vb_token *src;
        int32_t src_rows;
        if (sl->kind == SLOT_RUNNING) {
            src = sl->req->run.hist;
            src_rows = sl->req->n_cached;
        } else if (sl->kind == SLOT_CACHED) {
            src = sl->toks;
            src_rows = sl->n;
        } else {
            continue;
        }
        int32_t common = lcp(src, src_rows, toks, n - 1);
        int32_t rows = common / s->block_size * s->block_size;
        if (rows > best_rows) {
            best_rows = rows;
            best = q;
        }
    }
    *shared = best_rows;
    return best;
}

static int32_t free_slot(const vb_sched *s) {
    for (int32_t q = 0; q < s->p.n_seq; q++)
        if (s->slots[q].kind == SLOT_FREE) return q;
    return -1;
}

/* Append prefill rows hist[n_cached .. n_cached+n) of r to the batch; the row of the last
   committed token asks for logits (they resume the decoder). */
static void add_rows(vb_sched *s, sched_req *r, int32_t n) {
    r->batch_first = s->batch->n;
    r->batch_n = n;
    for (int32_t i = 0; i < n; i++) {
        int32_t row = r->n_cached + i;
        bool last = row == r->run.n_hist - 1 && r->run.n_out < r->run.limit;
        vb_batch_add(s->batch, r->run.hist[row], row, kv_seq(s, r->seq), last);
    }
}

/* Try to admit the head of the waiting queue with at most budget rows this step and `avail`
   free blocks. Returns rows added (0: it waits; -1: it can never run and was finished). */
static int32_t admit_head(vb_sched *s, int32_t budget, int32_t *avail) {
    sched_req *r = s->waiting[0];
    int32_t q = free_slot(s);
    if (q < 0 && evict_cached(s, -1)) {
        q = free_slot(s);
        *avail = free_blocks(s) - (s->reserved);
    }
    if (q < 0) return 0;
    int32_t shared = 0;
    int32_t src = find_prefix(s, r->run.hist, r->run.n_hist, &shared);
    /* a running request still prefilling a longer common prefix: wait for its blocks rather than
       computing the same rows twice */
    for (int32_t i = 0; s->p.prefix_sharing && i < s->n_running; i++) {
        const sched_req *o = s->running[i];
        if (o->decoding) continue;
        int32_t common = lcp(o->run.hist, o->run.n_hist, r->run.hist, r->run.n_hist - 1) / s->block_size * s->block_size;
        if (common > shared && common > o->n_cached / s->block_size * s->block_size) return 0;
    }
    /* blocks for the whole pending prefill (plus its first decode token) */
    int32_t need = blocks_for(s, shared, r->run.n_hist - shared + 1);
    while (s->paged && need > *avail && evict_cached(s, src)) {
        *avail = free_blocks(s) - s->reserved;
        src = find_prefix(s, r->run.hist, r->run.n_hist, &shared); /* an evicted source may be gone */
        need = blocks_for(s, shared, r->run.n_hist - shared + 1);
    }
    /* the prefix source itself may be what blocks the head (a cached slot holding many more
       blocks than are shared): fork the shared prefix and drop the source's tail, or drop the
       source altogether, rather than wait for blocks nothing will ever free */
    bool drop_src = false;
    if (s->paged && need > *avail && src >= 0 && s->slots[src].kind == SLOT_CACHED) {
        int32_t tail = blocks_of(s, s->slots[src].n) - blocks_of(s, shared);
        if (shared >= s->block_size && need <= *avail + tail) {
            drop_src = true;
        } else {
            slot_clear(s, src);
            *avail = free_blocks(s) - s->reserved;
            src = find_prefix(s, r->run.hist, r->run.n_hist, &shared);
            need = blocks_for(s, shared, r->run.n_hist - shared + 1);
        }
    }
    if (s->paged && need > *avail && !drop_src) {
        int32_t cached = 0;
        for (int32_t k = 0; k < s->p.n_seq; k++) cached += s->slots[k].kind == SLOT_CACHED;
        if (s->n_running == 0 && cached == 0 && s->batch->n == 0 && need > free_blocks(s)) {
            finish_req(s, r, VB_FINISH_KV); /* alone with an empty pool it still does not fit */
            return -1;
        }
        return 0;
    }
    if (src >= 0 && shared >= s->block_size) {
        if (vb_kv_fork(s->ctx, kv_seq(s, src), kv_seq(s, q)) != VB_OK ||
            vb_kv_truncate(s->ctx, kv_seq(s, q), shared) != VB_OK) {
            vb_kv_free_seq(s->ctx, kv_seq(s, q));
            shared = 0;
        } else {
            s->n_prefix_hits++;
            s->n_prefix_tokens += shared;
            if (s->slots[src].kind == SLOT_CACHED) s->slots[src].lru = ++s->clock;
        }
        if (drop_src) { /* the fork keeps the shared blocks; the source's tail is freed */
            slot_clear(s, src);
            *avail = free_blocks(s) - s->reserved;
        }
    } else {
        shared = s->o.n_reuse; /* 0, or vb_generate's reused rows (single: no prefix sharing) */
    }
    memmove(s->waiting, s->waiting + 1, (size_t)(s->n_waiting - 1) * sizeof *s->waiting);
    s->n_waiting--;
    r->state = REQ_RUNNING;
    r->seq = q;
    r->run.seq = kv_seq(s, q);
    r->n_cached = r->run.kv_len = shared;
    s->slots[q].kind = SLOT_RUNNING;
    s->slots[q].req = r;
    s->running[s->n_running++] = r;
    int32_t n = r->run.n_hist - r->n_cached;
    if (n > budget) n = budget;
    int32_t fit = rows_that_fit(s, r->n_cached, *avail);
    if (n > fit) n = fit;
    if (n > 0) {
        add_rows(s, r, n);
        *avail -= blocks_for(s, r->n_cached, n);
    }
    return n;
}

/* ---- one step ---- */

/* Why r stopped once its decoder set run.done. */
static int done_reason(const sched_req *r) {
    const vb_decode_run *run = &r->run;
    if (run->n_out > 0 && run->eos >= 0 && run->out[run->n_out - 1] == run->eos) return VB_FINISH_EOS;
    if (run->grammar_stop) return VB_FINISH_EOS; /* the grammar's output is complete */
    if (run->n_out >= run->limit && r->ctx_limited) return VB_FINISH_KV;
    return VB_FINISH_LENGTH; /* n_predict, the output buffer or the on_token callback */
}

static void fail_req(vb_sched *s, sched_req *r, int rc) {
    sched_err(s, rc, "request %lld: %s", (long long)r->id,
              r->stats.note[0] ? r->stats.note : "decoder failed");
    r->rc = rc;
    finish_req(s, r, VB_FINISH_ERROR);
}

/* One vb_forward of the step's batch: the test observer first, then per-request counts. */
static int engine_forward(vb_sched *s) {
    if (s->o.hooks && s->o.hooks->observer)
        s->o.hooks->observer(s->batch, vb_kv_seq_len(s->ctx, s->o.seq_base), s->o.hooks->observer_user);
    return vb_forward(s->ctx, s->batch);
}

static void count_forward(sched_req *r) {
    r->stats.n_forward++;
    if (r->run.in_decode) {
        r->stats.n_forward_decode++;
        r->stats.n_rows_decode += r->batch_n;
    }
}

/* keep_kv: forward the committed tokens the decoder left out of the KV (no logits), so the
   sequence holds every committed token, then finish. */
static void flush_and_finish(vb_sched *s, sched_req *r) {
    int reason = done_reason(r);
    int32_t n = r->run.n_hist - r->n_cached;
    if (n > 0 && n <= s->batch->capacity) {
        vb_batch_clear(s->batch);
        r->batch_first = 0;
        r->batch_n = n;
        for (int32_t i = 0; i < n; i++)
            vb_batch_add(s->batch, r->run.hist[r->n_cached + i], r->n_cached + i, kv_seq(s, r->seq), false);
        int rc = engine_forward(s);
        if (rc == VB_OK) {
            count_forward(r);
            r->n_cached += n;
        } else if (rc == VB_KV_FULL) {
            reason = VB_FINISH_KV;
        } else {
            sched_err(s, rc, "forward failed: %s", vb_context_error(s->ctx));
            r->rc = rc;
            reason = VB_FINISH_ERROR;
        }
        r->batch_n = 0;
    }
    finish_req(s, r, reason);
}

/* The prefill of r reached its last committed token: keep that row's logits for its decoder. */
static int keep_prefill_logits(vb_sched *s, sched_req *r) {
    vb_decode_run *run = &r->run;
    const float *lg = vb_get_logits(s->ctx, r->batch_first + r->batch_n - 1);
    if (!lg) {
        vb_decode_note(run, "backend returned no logits for the last prompt row");
        return VB_ERR_BACKEND;
    }
    memcpy(run->last_logits, lg, sizeof(float) * (size_t)run->n_vocab);
    return VB_OK;
}

/* Resume r's decoder from its kept logits. Runs after every request of the step has read its
   rows: a decoder may run forwards here (cost measurements), which replace the logits. */
static int resume_decoder(sched_req *r) {
    vb_decode_run *run = &r->run;
    r->decoding = true;
    run->in_decode = true;
    run->kv_len = r->n_cached;
    double t0 = vb_time_now();
    int rc = run->ops->resume(run);
    double dt = vb_time_now() - t0; /* (cost measurements) decode time, not prefill */
    r->stats.prefill_seconds -= dt;
    r->stats.decode_seconds += dt;
    return rc;
}

/* After r's decoder ran (status st; it had out_before tokens): count what it committed, then
   fail r or finish it when it is done (keep_kv: a request with committed tokens outside the KV
   finishes after the flush at the end of the step). */
static void after_decoder(vb_sched *s, sched_req *r, int32_t out_before, int st) {
    s->n_generated += r->run.n_out - out_before;
    if (st != VB_OK) fail_req(s, r, st);
    else if (r->run.done && !(s->o.keep_kv && r->n_cached < r->run.n_hist)) finish_req(s, r, done_reason(r));
}

/* Rows a decoding request may forward this step: its budget, the KV blocks, the model's
   learned positions. */
static int32_t decode_rows_max(const vb_sched *s, const sched_req *r, int32_t spare, int32_t avail) {
    int32_t max_rows = 1 + (spare > 0 ? spare : 0);
    int32_t fit = rows_that_fit(s, r->n_cached + 1, avail); /* blocks beyond its own first row */
    if (max_rows > 1 + fit) max_rows = 1 + fit;
    if (s->n_ctx_train > 0 && max_rows > s->n_ctx_train - r->n_cached) max_rows = s->n_ctx_train - r->n_cached;
    return max_rows > 1 ? max_rows : 1;
}

int vb_sched_step(vb_sched *s) {
    if (!s) return VB_ERR_ARG;
    if (vb_sched_idle(s)) return VB_OK;
    double t0 = vb_time_now();
    vb_batch_clear(s->batch);
    for (int32_t i = 0; i < s->n_running; i++) s->running[i]->batch_n = 0;
    s->reserved = 0;
    int32_t avail = free_blocks(s);

    /* 1. every decoding request gets at least its row; make room by evicting cached prefixes,
          then by preempting the newest requests */
    for (;;) {
        int32_t need = 0;
        for (int32_t i = 0; i < s->n_running; i++) {
            sched_req *r = s->running[i];
            if (r->decoding) need += blocks_for(s, r->n_cached, 1);
        }
        if (need <= avail) break;
        if (evict_cached(s, -1)) {
        } else if (s->n_running > 1) {
            preempt_newest(s);
        } else {
            finish_req(s, s->running[0], VB_FINISH_KV);
        }
        avail = free_blocks(s);
    }
    int32_t budget = s->p.token_budget, n_decoding = 0;
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        if (!r->decoding) continue;
        avail -= blocks_for(s, r->n_cached, 1);
        n_decoding++;
    }
    /* each decoder plans its rows: one, plus what the budget and the blocks left after every
       decoding request's own row allow (drafts, WeDLM windows) */
    for (int32_t i = 0; i < s->n_running; i++) {
        sched_req *r = s->running[i];
        if (!r->decoding) continue;
        int32_t max_rows = decode_rows_max(s, r, budget - n_decoding, avail);
        vb_decode_run *run = &r->run;
        run->row0 = r->batch_first = s->batch->n;
        run->kv_len = r->n_cached;
        run->step_t0 = vb_time_now();
        int32_t n = run->ops->plan(run, max_rows, false);
        if (n <= 0 || s->batch->n - r->batch_first != n) {
            s->batch->n = r->batch_first;
            fail_req(s, r, n < 0 ? n : VB_ERR_BACKEND);
            i--; /* r left the running list */
            n_decoding--;
            continue;
        }
        r->batch_n = n;
        avail -= blocks_for(s, r->n_cached, n) - blocks_for(s, r->n_cached, 1);
        budget -= n;
        n_decoding--;
    }
    int32_t n_decode = s->batch->n;
    /* 2. chunks of running prefills, oldest first */
    for (int32_t i = 0; i < s->n_running && budget > 0; i++) {
        sched_req *r = s->running[i];
        if (r->decoding) continue;
        int32_t n = r->run.n_hist - r->n_cached;
        if (n > budget) n = budget;
        int32_t fit = rows_that_fit(s, r->n_cached, avail);
        if (n > fit) n = fit;
        if (n <= 0) continue;
        add_rows(s, r, n);
        avail -= blocks_for(s, r->n_cached, n);
        budget -= n;
    }
    /* 3. admit waiting requests in order while rows, slots and blocks last */
    s->reserved = (s->paged ? free_blocks(s) : 0) - avail; /* blocks this step already plans */
    while (budget > 0 && s->n_waiting > 0) {
        int32_t n = admit_head(s, budget, &avail);
        if (n == 0) break;
        if (n > 0) budget -= n;
        s->reserved = (s->paged ? free_blocks(s) : 0) - avail;
    }
    /* 4. nothing could move although requests run: free room for the oldest */
    if (s->batch->n == 0) {
        if (s->n_running > 1) preempt_newest(s);
        else if (s->n_running == 1) finish_req(s, s->running[0], VB_FINISH_KV);
        s->step_seconds += vb_time_now() - t0;
        return VB_OK;
    }

    double tf = vb_time_now();
    int rc = engine_forward(s);
    /* one request: a decoder that can forward fewer rows tries again (a smaller window,
       no drafts) before the request stops at a full KV */
    while (rc == VB_KV_FULL && s->o.single && s->n_running == 1 && s->running[0]->decoding &&
           s->running[0]->batch_n == s->batch->n) {
        sched_req *r = s->running[0];
        s->batch->n = r->batch_first;
        int32_t n = r->run.ops->plan(&r->run, r->batch_n, true);
        if (n <= 0) {
            s->batch->n = 0;
            break;
        }
        r->batch_n = n;
        n_decode = n;
        rc = engine_forward(s);
    }
    if (rc == VB_KV_FULL || (rc == VB_OK && s->batch->n == 0)) { /* accounting disagreed with the
                                                                     backend: nothing changed */
        if (s->n_running > 1) preempt_newest(s);
        else if (s->n_running == 1) finish_req(s, s->running[0], VB_FINISH_KV);
        s->step_seconds += vb_time_now() - t0;
        return VB_OK;
    }
    if (rc != VB_OK) {
        sched_err(s, rc, "forward of %d rows failed: %s", s->batch->n, vb_context_error(s->ctx));
        for (int32_t i = s->n_running - 1; i >= 0; i--) {
            sched_req *r = s->running[i];
            if (r->batch_n > 0) {
                r->rc = rc;
                finish_req(s, r, VB_FINISH_ERROR);
            }
        }
        s->step_seconds += vb_time_now() - t0;
        return rc;
    }
    double forward_seconds = vb_time_now() - tf;
    s->n_steps++;
    s->n_rows += s->batch->n;
    s->n_decode_rows += n_decode;
    s->n_prefill_rows += s->batch->n - n_decode;
    if (s->batch->n > s->max_batch_rows) s->max_batch_rows = s->batch->n;
    /* 5. hand each request its rows: prefill rows are cached (the last one resumes the
          decoder), decoders consume theirs and say which KV rows stay (iterate over a copy:
          finishing removes from the running list) */
    int64_t generated_before = s->n_generated;
    int32_t n_run = s->n_running;
    sched_req *stepped[n_run > 0 ? n_run : 1];
    memcpy(stepped, s->running, (size_t)n_run * sizeof *stepped);
    bool decoding_at_start[n_run > 0 ? n_run : 1], to_resume[n_run > 0 ? n_run : 1];
    for (int32_t i = 0; i < n_run; i++) {
        decoding_at_start[i] = stepped[i]->decoding;
        to_resume[i] = false;
    }
    for (int32_t i = 0; i < n_run; i++) {
        sched_req *r = stepped[i];
        if (r->batch_n == 0) continue;
        vb_decode_run *run = &r->run;
        count_forward(r);
        int32_t out_before = run->n_out;
        int64_t draft_before = run->n_draft_rows, accepted_before = run->n_draft_accepted;
        int st = VB_OK;
        if (!r->decoding) {
            r->n_cached += r->batch_n;
            run->kv_len = r->n_cached;
            if (r->n_cached == run->n_hist) {
                if (run->n_out >= run->limit) run->done = true; /* nothing to generate */
                else if ((st = keep_prefill_logits(s, r)) == VB_OK) to_resume[i] = true;
            }
        } else {
            run->batch_rows = s->batch->n;
            run->forward_seconds = forward_seconds;
            int32_t keep = r->n_cached;
            const vb_decoder_ops *ops = run->ops;
            st = ops->consume(run, &keep);
            int32_t len = r->n_cached + r->batch_n;
            if (keep < r->n_cached) keep = r->n_cached;
            if (keep > len) keep = len;
            if (keep < len) vb_kv_truncate(s->ctx, kv_seq(s, r->seq), keep);
            r->n_cached = run->kv_len = keep;
        }
        s->n_draft_rows += run->n_draft_rows - draft_before;
        s->n_draft_accepted += run->n_draft_accepted - accepted_before;
        after_decoder(s, r, out_before, st);
    }
    for (int32_t i = 0; i < n_run; i++) { /* decoders whose prefill completed in this step */
        sched_req *r = stepped[i];
        if (!to_resume[i] || r->state != REQ_RUNNING) continue;
        vb_decode_run *run = &r->run;
        int32_t out_before = run->n_out;
        after_decoder(s, r, out_before, resume_decoder(r));
    }
    double dt = vb_time_now() - t0;
    for (int32_t i = 0; i < n_run; i++) {
        sched_req *r = stepped[i];
        if (r->batch_n == 0) continue;
        if (decoding_at_start[i]) r->stats.decode_seconds += dt;
        else r->stats.prefill_seconds += dt;
    }
    bool decode_only = n_decode == s->batch->n;
    /* keep_kv: committed tokens still outside the KV are forwarded before the request ends */
    for (int32_t i = 0; i < n_run; i++) {
        sched_req *r = stepped[i];
        if (r->state == REQ_RUNNING && r->run.done) {
            double tflush = vb_time_now();
            flush_and_finish(s, r);
            r->stats.decode_seconds += vb_time_now() - tflush;
        }
    }
    dt = vb_time_now() - t0;
    s->step_seconds += dt;
    if (decode_only) {
        s->decode_seconds += dt;
        s->decode_tokens += s->n_generated - generated_before;
    }
    return VB_OK;
}

vb_sched_stats vb_sched_get_stats(const vb_sched *s) {
    vb_sched_stats o;
    memset(&o, 0, sizeof o);
    if (!s) return o;
    o.n_running = s->n_running;
    o.n_waiting = s->n_waiting;
    for (int32_t i = 0; i < s->n_reqs; i++) o.n_finished += s->reqs[i]->state == REQ_FINISHED;
    o.n_submitted = s->n_submitted;
    o.n_completed = s->n_completed;
    o.n_cancelled = s->n_cancelled;
    o.n_failed = s->n_failed;
    o.n_preemptions = s->n_preemptions;
    o.n_prefix_hits = s->n_prefix_hits;
    o.n_prefix_tokens = s->n_prefix_tokens;
    o.n_steps = s->n_steps;
    o.n_rows = s->n_rows;
    o.n_prefill_rows = s->n_prefill_rows;
    o.n_decode_rows = s->n_decode_rows;
    o.n_generated = s->n_generated;
    o.n_draft_rows = s->n_draft_rows;
    o.n_draft_accepted = s->n_draft_accepted;
    o.step_seconds = s->step_seconds;
    o.tokens_per_second = s->step_seconds > 0 ? (double)s->n_generated / s->step_seconds : 0.0;
    o.max_batch_rows = s->max_batch_rows;
    o.decode_seconds = s->decode_seconds;
    o.decode_tokens = s->decode_tokens;
    o.decode_tokens_per_second = s->decode_seconds > 0 ? (double)s->decode_tokens / s->decode_seconds : 0.0;
    vb_stats st = vb_context_stats(s->ctx);
    o.kv_block_size = st.kv.block_size;
    o.kv_blocks_total = st.kv.blocks_total;
    o.kv_blocks_used = st.kv.blocks_used;
    o.kv_blocks_free = st.kv.blocks_total - st.kv.blocks_used;
    o.kv_waste = st.kv.waste;
    int64_t live = 0, stray = 0;
    for (int32_t q = 0; q < s->p.n_seq; q++) {
        int32_t len = vb_kv_seq_len(s->ctx, q);
        if (len < 0) len = 0;
        if (s->slots[q].kind == SLOT_CACHED) {
            o.n_cached_seqs++;
            o.kv_blocks_cached += blocks_of(s, len);
        }
        if (s->slots[q].kind == SLOT_FREE) stray += blocks_of(s, len);
        else live += blocks_of(s, len);
    }
    int64_t leaked = (int64_t)st.kv.blocks_used - live - stray;
    o.kv_blocks_leaked = (int32_t)((leaked > 0 ? leaked : 0) + stray);
    return o;
}
