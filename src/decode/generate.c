/* generate.c - vb_generate: checks the request and runs it as the only request of the engine
 * (src/sched/sched.c, on the caller's sequence, prefill in chunks of caps.max_batch rows with
 * logits only for the last row, then the chosen decoder's steps: ar.c, wedlm.c, verify.c), and
 * fills vb_generate_stats. Also the helpers every decoder shares: the decoder table, the row
 * logits of a request, the commit rule (n_predict / EOS / callback), sampling with the history
 * and the decoder-settings check the scheduler's submit uses too.
 *
 * With reuse_kv the caller's sequence may already hold the KV of a prefix of the prompt (a chat's
 * earlier turns): the engine starts with those rows cached and forwards the rest.
 *
 * Conventions of every decoder: a committed EOS is written to out (and counted) as the last
 * token; the sequence holds the prompt and every committed token on return (except after
 * VB_KV_FULL, where the last committed token may be missing from the KV); messages for failed
 * requests go to stats->note, since the public API has no setter for the context's error. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "decode/cost_model.h"
#include "decode/decode_internal.h"
#include "grammar/grammar.h"
#include "grammar/token_mask.h"
#include "sched/sched_internal.h"

vb_generate_params vb_generate_default_params(void) {
    vb_generate_params p;
    memset(&p, 0, sizeof p);
    p.decoder = VB_DECODER_AR;
    p.n_predict = 128;
    p.seq = 0;
    p.sampler = vb_sampler_default_params();
    p.stop_at_eos = true;
    p.window = 16;
    p.tau = 0.4f;
    p.lambda = 0.02f;
    p.mask_token = -1;
    p.draft_max = 0;
    p.ngram_min = 2;
    p.on_token = NULL;
    p.user = NULL;
    p.wedlm_d0_ar = true;
    p.wedlm_leftmost_fallback = true;
    p.wedlm_exact = false;
    p.n_logprobs = -1;
    p.logprobs = NULL;
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Helpers shared by the decoders
 * --------------------------------------------------------------------------------------------- */

void vb_decode_note(vb_decode_run *run, const char *fmt, ...) {
    char *note = run->stats->note;
    size_t used = strlen(note);
    if (used > 0 && used + 2 < sizeof run->stats->note) { /* notes accumulate: "a; b" */
        memcpy(note + used, "; ", 3);
        used += 2;
    }
    if (used + 1 >= sizeof run->stats->note) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(note + used, sizeof run->stats->note - used, fmt, ap);
    va_end(ap);
}

const float *vb_decode_row_logits(vb_decode_run *run, int32_t i) {
    return vb_get_logits(run->ctx, run->row0 + i);
}

int vb_decode_measure(vb_decode_run *run, int32_t max_rows, struct vb_cost_table *out) {
    int64_t before = vb_context_stats(run->ctx).n_forward;
    int rc = vb_cost_measure(run->ctx, run->seq, run->hist[run->n_hist - 1], max_rows, out);
    run->stats->n_forward_measure += vb_context_stats(run->ctx).n_forward - before;
    return rc;
}

const vb_decoder_ops *vb_decoder_for(int decoder) {
    switch (decoder) {
    case VB_DECODER_AR: return &vb_decoder_ar;
    case VB_DECODER_WEDLM: return &vb_decoder_wedlm;
    case VB_DECODER_VERIFY: return &vb_decoder_verify;
    default: return NULL;
    }
}

bool vb_decode_commit(vb_decode_run *run, vb_token token, const float *row) {
    if (run->lp && row)
        vb_logprobs_compute(row, run->n_vocab, token, run->params.n_logprobs, &run->lp[run->n_out]);
    run->out[run->n_out++] = token;
    run->hist[run->n_hist++] = token;
    bool go_on = true;
    if (run->grammar) {
        int rc = vb_grammar_run_accept(run->grammar, token);
        if (rc != VB_OK) { /* the token was not sampled in this state: a decoder bug */
            vb_decode_note(run, "grammar: token %d committed but not allowed (%d)", (int)token, rc);
            go_on = false;
        } else if (vb_grammar_run_finished(run->grammar)) {
            go_on = false;
            run->grammar_stop = true;
        } else {
            /* complete and nothing but EOS can follow: stop here (no EOS forward needed) */
            const uint32_t *mask = vb_grammar_run_mask(run->grammar);
            if (mask && vb_grammar_run_only_eos(run->grammar)) {
                go_on = false;
                run->grammar_stop = vb_grammar_run_complete(run->grammar);
                if (!run->grammar_stop) vb_decode_note(run, "grammar: no token can continue the output");
            }
        }
    }
    if (run->params.on_token && !run->params.on_token(token, run->params.user)) go_on = false;
    if (run->eos >= 0 && token == run->eos) go_on = false;
    if (run->n_out >= run->limit) go_on = false;
    if (!go_on) run->done = true;
    return go_on;
}

void vb_decode_record_step(vb_decode_run *run, int32_t k) {
    if (k < 0) k = 0;
    if (k >= VB_HIST_MAX) k = VB_HIST_MAX - 1;
    run->stats->commit_hist[k]++;
}

static bool mask_has(const uint32_t *mask, vb_token t) { return mask[t >> 5] >> (t & 31) & 1u; }

vb_token vb_decode_sample(vb_decode_run *run, const float *logits, vb_token banned) {
    if (!run->grammar)
        return vb_sampler_sample(run->sampler, logits, run->n_vocab, run->hist, run->n_hist, banned);
    const uint32_t *mask = vb_grammar_run_mask(run->grammar);
    if (!mask) {
        vb_decode_note(run, "grammar: state too large (over %d stacks) or out of memory", GR_MAX_STACKS);
        return VB_ERR_STATE;
    }
    float *w = run->masked; /* [n_vocab] */
    for (int32_t v = 0; v < run->n_vocab; v++) w[v] = mask_has(mask, v) ? logits[v] : -INFINITY;
    vb_token t = vb_sampler_sample(run->sampler, w, run->n_vocab, run->hist, run->n_hist, banned);
    if (t >= 0 && mask_has(mask, t) && t != banned) return t;
    if (t < 0) return t;
    /* every allowed logit was -inf / NaN (or only `banned` is allowed): the first allowed */
    for (int32_t v = 0; v < run->n_vocab; v++)
        if (mask_has(mask, v) && v != banned) return v;
    vb_decode_note(run, "grammar: no token can continue the output");
    return VB_ERR_STATE;
}

int vb_decode_grammar_init(vb_decode_run *run, char *why, size_t why_len) {
    if (!run->params.grammar) return VB_OK;
    int rc = vb_grammar_run_init(run->params.grammar, vb_context_model(run->ctx), &run->grammar,
                                 why, why_len);
    if (rc != VB_OK) return rc;
    run->masked = malloc(sizeof(float) * (size_t)run->n_vocab);
    if (!run->masked) {
        snprintf(why, why_len, "out of memory");
        return VB_ERR_NOMEM;
    }
    run->params.grammar = NULL; /* the caller's copy may be freed; run->grammar holds its own */
    return VB_OK;
}

void vb_decode_grammar_free(vb_decode_run *run) {
    vb_grammar_run_free(run->grammar);
    run->grammar = NULL;
    free(run->masked);
    run->masked = NULL;
}

int vb_decode_keep_logits(vb_decode_run *run, int32_t i) {
    const float *lg = vb_decode_row_logits(run, i);
    if (!lg) {
        vb_decode_note(run, "backend returned no logits for row %d", (int)i);
        return VB_ERR_BACKEND;
    }
    memcpy(run->last_logits, lg, sizeof(float) * (size_t)run->n_vocab);
    return VB_OK;
}

/* ---------------------------------------------------------------------------------------------
 * vb_generate: the engine (src/sched/sched.c) with one request on params->seq
 * --------------------------------------------------------------------------------------------- */

int vb_decode_check_params(const vb_model_info *info, const vb_generate_params *p, char *why,
                           size_t why_len) {
    if (!vb_decoder_for(p->decoder)) {
        snprintf(why, why_len, "unknown decoder %d", (int)p->decoder);
        return VB_ERR_ARG;
    }
    if (p->decoder == VB_DECODER_WEDLM) {
        vb_token mask = p->mask_token >= 0 ? p->mask_token : info->mask;
        if (mask < 0 || mask >= info->n_vocab) {
            snprintf(why, why_len,
                     "WeDLM needs a mask token: the model has none (tokenizer.ggml.mask_token_id); "
                     "set mask_token or use the ar/verify decoder");
            return VB_ERR_UNSUPPORTED;
        }
        if (p->window < 0 || !(p->tau == p->tau) || !(p->lambda == p->lambda)) {
            snprintf(why, why_len, "WeDLM: window < 0 or tau/lambda not a number");
            return VB_ERR_ARG;
        }
    }
    if (p->n_logprobs < -1 || p->n_logprobs > VB_LOGPROBS_MAX) {
        snprintf(why, why_len, "n_logprobs %d out of range [-1, %d]", (int)p->n_logprobs,
                 VB_LOGPROBS_MAX);
        return VB_ERR_ARG;
    }
    if (p->decoder == VB_DECODER_VERIFY && (p->draft_max < 0 || p->ngram_min < 0)) {
        snprintf(why, why_len, "verify: draft_max and ngram_min must be >= 0");
        return VB_ERR_ARG;
    }
    return VB_OK;
}

/* What only vb_generate asks of a request: the output buffer and an empty sequence (reuse_kv:
   fewer rows than the prompt, *n_reuse = its rows). The prompt, n_predict and the decoder
   settings are checked by vb_sched_submit_gen. */
static int check_request(vb_context *ctx, const vb_generate_params *p, const vb_token *prompt, int32_t n_prompt,
                         const vb_token *out, int32_t max_out, int32_t *n_reuse, vb_generate_stats *st) {
    if (!ctx) return VB_ERR_ARG;
    if (max_out < 0 || (max_out > 0 && !out)) {
        snprintf(st->note, sizeof st->note, "bad output buffer");
        return VB_ERR_ARG;
    }
    int32_t len = vb_kv_seq_len(ctx, p->seq);
    if (len < 0) {
        snprintf(st->note, sizeof st->note, "bad sequence id %d", (int)p->seq);
        return VB_ERR_ARG;
    }
    if (len != 0 && !p->reuse_kv) {
        snprintf(st->note, sizeof st->note,
                 "sequence %d holds %d rows: vb_generate needs an empty sequence (vb_kv_free_seq) "
                 "or reuse_kv", (int)p->seq, (int)len);
        return VB_ERR_STATE;
    }
    if (len >= n_prompt && len > 0) {
        snprintf(st->note, sizeof st->note,
                 "reuse_kv: sequence %d holds %d rows, not fewer than the prompt's %d tokens",
                 (int)p->seq, (int)len, (int)n_prompt);
        return VB_ERR_ARG;
    }
    /* a paged KV keeps each row's token: rows that are not the prompt's would silently give
       another text */
    int32_t bad = len > 0 && prompt ? vb_context_seq_mismatch(ctx, p->seq, prompt, len) : len;
    if (bad >= 0 && bad < len) {
        snprintf(st->note, sizeof st->note, "reuse_kv: row %d of sequence %d is not the prompt's "
                 "token %d (truncate to the common prefix)", (int)bad, (int)p->seq, (int)bad);
        return VB_ERR_ARG;
    }
    *n_reuse = len;
    return VB_OK;
}

int vb_generate_hooked(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                       const vb_generate_params *params, vb_token *out, int32_t max_out,
                       int32_t *n_out, vb_generate_stats *stats, const vb_decode_hooks *hooks) {
    vb_generate_stats local_stats;
    vb_generate_stats *st = stats ? stats : &local_stats;
    memset(st, 0, sizeof *st);
    if (n_out) *n_out = 0;
    vb_generate_params defaults = vb_generate_default_params();
    const vb_generate_params *p = params ? params : &defaults;

    int32_t n_reuse = 0;
    int rc = check_request(ctx, p, prompt, n_prompt, out, max_out, &n_reuse, st);
    if (rc != VB_OK) return rc;

    vb_sched_params sp = vb_sched_default_params();
    vb_backend_caps caps = hooks && hooks->caps_override ? *hooks->caps_override : vb_context_caps(ctx);
    sp.n_seq = 1;
    sp.token_budget = caps.max_batch > 0 ? caps.max_batch : 512; /* prefill chunks of max_batch */
    sp.prefix_sharing = sp.prefix_cache = false;
    vb_engine_opts eo = {.seq_base = p->seq, .keep_kv = true, .single = true, .hooks = hooks, .n_reuse = n_reuse};
    vb_sched *s = NULL;
    char err[256] = "";
    rc = vb_sched_init_engine(ctx, &sp, &eo, &s, err, sizeof err);
    if (rc != VB_OK) {
        snprintf(st->note, sizeof st->note, "%s", err);
        return rc;
    }
    vb_request_id id = 0;
    rc = vb_sched_submit_gen(s, prompt, n_prompt, p, max_out, &id);
    if (rc != VB_OK) {
        snprintf(st->note, sizeof st->note, "%s", vb_sched_error(s));
        vb_sched_free(s);
        return rc;
    }
    sched_req *r = vb_sched_find(s, id);
    while (rc == VB_OK && !vb_sched_idle(s)) rc = vb_sched_step(s);
    *st = r->stats;
    st->n_generated = r->run.n_out;
    st->tokens_per_forward =
        st->n_forward_decode > 0 ? (double)r->run.n_out / (double)st->n_forward_decode : 0.0;
    if (r->run.n_out > 0 && out) memcpy(out, r->run.out, sizeof(vb_token) * (size_t)r->run.n_out);
    if (r->run.n_out > 0 && p->logprobs && r->run.lp)
        memcpy(p->logprobs, r->run.lp, sizeof(vb_logprobs) * (size_t)r->run.n_out);
    if (n_out) *n_out = r->run.n_out;
    if (r->finish == VB_FINISH_KV) rc = VB_KV_FULL;
    else if (r->finish == VB_FINISH_ERROR) rc = r->rc != VB_OK ? r->rc : (rc != VB_OK ? rc : VB_ERR_BACKEND);
    else if (rc == VB_OK && r->finish == VB_FINISH_NONE) rc = VB_ERR_STATE;
    if (r->finish == VB_FINISH_ERROR && !st->note[0])
        snprintf(st->note, sizeof st->note, "%s", vb_sched_error(s));
    vb_sched_free(s);
    return rc;
}

int vb_generate(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                const vb_generate_params *params, vb_token *out, int32_t max_out, int32_t *n_out,
                vb_generate_stats *stats) {
    return vb_generate_hooked(ctx, prompt, n_prompt, params, out, max_out, n_out, stats, NULL);
}
