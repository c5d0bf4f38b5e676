/* generate.c - vb_generate: checks the request, prefills the prompt (chunks of at most
 * caps.max_batch rows, logits only for the last row), hands over to the chosen decoder (ar.c,
 * wedlm.c, verify.c) and fills vb_generate_stats. Also the helpers every decoder shares: the
 * forward wrapper, the commit rule (n_predict / EOS / callback) and sampling with the history.
 *
 * Conventions of every decoder: a committed EOS is written to out (and counted) as the last
 * token; the sequence holds the prompt and every committed token on return (except after
 * VB_KV_FULL, where the last committed token may be missing from the KV); messages for failed
 * requests go to stats->note, since the public API has no setter for the context's error. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode/decode_internal.h"

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

int vb_decode_forward(vb_decode_run *run) {
    if (run->observer)
        run->observer(run->batch, vb_kv_seq_len(run->ctx, run->seq), run->observer_user);
    int rc = vb_forward(run->ctx, run->batch);
    if (rc == VB_OK) {
        run->stats->n_forward++;
        if (run->in_decode) run->stats->n_rows_decode += run->batch->n;
    }
    return rc;
}

bool vb_decode_commit(vb_decode_run *run, vb_token token) {
    run->out[run->n_out++] = token;
    run->hist[run->n_hist++] = token;
    bool go_on = true;
    if (run->params->on_token && !run->params->on_token(token, run->params->user)) go_on = false;
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

vb_token vb_decode_sample(vb_decode_run *run, const float *logits, vb_token banned) {
    return vb_sampler_sample(run->sampler, logits, run->n_vocab, run->hist, run->n_hist, banned);
}

int vb_decode_keep_logits(vb_decode_run *run, int32_t row) {
    const float *lg = vb_get_logits(run->ctx, row);
    if (!lg) {
        vb_decode_note(run, "backend returned no logits for row %d", (int)row);
        return VB_ERR_BACKEND;
    }
    memcpy(run->last_logits, lg, sizeof(float) * (size_t)run->n_vocab);
    return VB_OK;
}

int vb_decode_flush(vb_decode_run *run, vb_token token) {
    vb_batch_clear(run->batch);
    vb_batch_add(run->batch, token, vb_kv_seq_len(run->ctx, run->seq), run->seq, false);
    return vb_decode_forward(run);
}

/* ---------------------------------------------------------------------------------------------
 * Prefill
 * --------------------------------------------------------------------------------------------- */

/* Forward the prompt in chunks; the last row's logits go to run->last_logits (when wanted). */
static int prefill(vb_decode_run *run, const vb_token *prompt, int32_t n_prompt, bool want_logits) {
    int32_t chunk = run->batch->capacity;
    for (int32_t start = 0; start < n_prompt; start += chunk) {
        int32_t n = n_prompt - start < chunk ? n_prompt - start : chunk;
        vb_batch_clear(run->batch);
        for (int32_t i = 0; i < n; i++) {
            bool last = start + i == n_prompt - 1;
            vb_batch_add(run->batch, prompt[start + i], start + i, run->seq, last && want_logits);
        }
        int rc = vb_decode_forward(run);
        if (rc != VB_OK) {
            /* a partial prefill is useless: leave the sequence empty as on entry */
            vb_kv_truncate(run->ctx, run->seq, 0);
            return rc;
        }
    }
    if (want_logits) return vb_decode_keep_logits(run, run->batch->n - 1);
    return VB_OK;
}

/* ---------------------------------------------------------------------------------------------
 * vb_generate
 * --------------------------------------------------------------------------------------------- */

static int check_request(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                         const vb_generate_params *p, const vb_token *out, int32_t max_out,
                         vb_generate_stats *st) {
    if (!ctx) return VB_ERR_ARG;
    const vb_model_info *info = vb_model_get_info(vb_context_model(ctx));
    if (!info) return VB_ERR_ARG;
    if (!prompt || n_prompt <= 0) {
        snprintf(st->note, sizeof st->note, "empty prompt: give at least one token (e.g. BOS)");
        return VB_ERR_ARG;
    }
    if (max_out < 0 || (max_out > 0 && !out) || p->n_predict < 0) {
        snprintf(st->note, sizeof st->note, "bad output buffer or n_predict < 0");
        return VB_ERR_ARG;
    }
    for (int32_t i = 0; i < n_prompt; i++)
        if (prompt[i] < 0 || prompt[i] >= info->n_vocab) {
            snprintf(st->note, sizeof st->note, "prompt token %d out of range [0, %d)",
                     (int)prompt[i], (int)info->n_vocab);
            return VB_ERR_ARG;
        }
    if (p->decoder < VB_DECODER_AR || p->decoder > VB_DECODER_VERIFY) {
        snprintf(st->note, sizeof st->note, "unknown decoder %d", (int)p->decoder);
        return VB_ERR_ARG;
    }
    int32_t len = vb_kv_seq_len(ctx, p->seq);
    if (len < 0) {
        snprintf(st->note, sizeof st->note, "bad sequence id %d", (int)p->seq);
        return VB_ERR_ARG;
    }
    if (len != 0) {
        snprintf(st->note, sizeof st->note,
                 "sequence %d holds %d rows: vb_generate needs an empty sequence (vb_kv_free_seq)",
                 (int)p->seq, (int)len);
        return VB_ERR_STATE;
    }
    if (p->decoder == VB_DECODER_WEDLM) {
        vb_token mask = p->mask_token >= 0 ? p->mask_token : info->mask;
        if (mask < 0 || mask >= info->n_vocab) {
            snprintf(st->note, sizeof st->note,
                     "WeDLM needs a mask token: the model has none (tokenizer.ggml.mask_token_id); "
                     "set mask_token or use the ar/verify decoder");
            return VB_ERR_UNSUPPORTED;
        }
        if (p->window < 0 || !(p->tau == p->tau) || !(p->lambda == p->lambda)) {
            snprintf(st->note, sizeof st->note, "WeDLM: window < 0 or tau/lambda not a number");
            return VB_ERR_ARG;
        }
    }
    if (p->decoder == VB_DECODER_VERIFY && (p->draft_max < 0 || p->ngram_min < 0)) {
        snprintf(st->note, sizeof st->note, "verify: draft_max and ngram_min must be >= 0");
        return VB_ERR_ARG;
    }
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

    int rc = check_request(ctx, prompt, n_prompt, p, out, max_out, st);
    if (rc != VB_OK) return rc;

    vb_decode_run run;
    memset(&run, 0, sizeof run);
    run.ctx = ctx;
    run.params = p;
    run.info = vb_model_get_info(vb_context_model(ctx));
    run.caps = vb_context_caps(ctx);
    run.stats = st;
    run.seq = p->seq;
    run.n_vocab = run.info->n_vocab;
    run.eos = p->stop_at_eos ? run.info->eos : -1;
    run.out = out;
    run.limit = p->n_predict < max_out ? p->n_predict : max_out;
    if (hooks) {
        run.observer = hooks->observer;
        run.observer_user = hooks->observer_user;
        if (hooks->caps_override) run.caps = *hooks->caps_override;
        run.cost_override = hooks->cost_override;
    }
    st->n_prompt = n_prompt;

    int32_t batch_cap = run.caps.max_batch > 0 ? run.caps.max_batch : 512;
    run.batch = vb_batch_init(batch_cap);
    run.hist = malloc(sizeof(vb_token) * ((size_t)n_prompt + (size_t)run.limit + 1));
    run.last_logits = malloc(sizeof(float) * (size_t)run.n_vocab);
    run.sampler = vb_sampler_init(&p->sampler);
    if (!run.batch || !run.hist || !run.last_logits || !run.sampler) {
        rc = VB_ERR_NOMEM;
        snprintf(st->note, sizeof st->note, "out of memory (or bad sampler parameters)");
        goto done;
    }
    memcpy(run.hist, prompt, sizeof(vb_token) * (size_t)n_prompt);
    run.n_hist = n_prompt;

    double t0 = vb_time_now();
    rc = prefill(&run, prompt, n_prompt, run.limit > 0);
    double t1 = vb_time_now();
    st->prefill_seconds = t1 - t0;
    int64_t prefill_forwards = st->n_forward;
    run.in_decode = true;
    if (rc == VB_OK && run.limit > 0) {
        switch (p->decoder) {
        case VB_DECODER_WEDLM: rc = vb_decode_wedlm(&run); break;
        case VB_DECODER_VERIFY: rc = vb_decode_verify(&run); break;
        default: rc = vb_decode_ar(&run); break;
        }
    }
    st->decode_seconds = vb_time_now() - t1;
    st->n_forward_decode = st->n_forward - prefill_forwards;

done:
    st->n_generated = run.n_out;
    st->tokens_per_forward =
        st->n_forward_decode > 0 ? (double)run.n_out / (double)st->n_forward_decode : 0.0;
    if (n_out) *n_out = run.n_out;
    vb_sampler_free(run.sampler);
    free(run.last_logits);
    free(run.hist);
    vb_batch_free(run.batch);
    return rc;
}

int vb_generate(vb_context *ctx, const vb_token *prompt, int32_t n_prompt,
                const vb_generate_params *params, vb_token *out, int32_t max_out, int32_t *n_out,
                vb_generate_stats *stats) {
    return vb_generate_hooked(ctx, prompt, n_prompt, params, out, max_out, n_out, stats, NULL);
}
