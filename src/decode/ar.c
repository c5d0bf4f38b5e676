/* ar.c - the autoregressive baseline as a step machine (decode_internal.h): resume samples the
 * next token from the logits of the last committed row and commits it ("pending", not yet in
 * the KV); each step forwards the pending token as one row, samples the next from its logits
 * and commits it. The engine forwards a pending token that ends generation once more without
 * logits when the sequence must hold every committed token (vb_generate). */
#include "decode/decode_internal.h"

static int ar_commit_sample(vb_decode_run *run, const float *logits) {
    vb_token token = logits ? vb_decode_sample(run, logits, -1) : -1;
    if (token < 0) {
        vb_decode_note(run, logits ? "sampler failed (%d)" : "backend returned no logits (%d)",
                       (int)token);
        return VB_ERR_BACKEND;
    }
    vb_decode_record_step(run, 1);
    vb_decode_commit(run, token, logits);
    return VB_OK;
}

static int ar_resume(vb_decode_run *run) { return ar_commit_sample(run, run->last_logits); }

static int32_t ar_plan(vb_decode_run *run, int32_t max_rows, bool retry) {
    (void)max_rows;
    if (retry) return 0; /* one row is the least a step can forward */
    vb_batch_add(run->batch, run->hist[run->n_hist - 1], run->kv_len, run->seq, true);
    return 1;
}

static int ar_consume(vb_decode_run *run, int32_t *kv_keep) {
    *kv_keep = run->kv_len + 1;
    return ar_commit_sample(run, vb_decode_row_logits(run, 0));
}

static void ar_release(vb_decode_run *run, bool ok) {
    (void)run;
    (void)ok;
}

const vb_decoder_ops vb_decoder_ar = {"ar", ar_resume, ar_plan, ar_consume, ar_release, NULL};
