/* ar.c - the autoregressive baseline: sample the next token from the logits of the last
 * committed row, commit it, forward it as a 1-row batch to get the next logits. The committed
 * token that ends generation is forwarded once more without logits (vb_decode_flush) so the
 * sequence holds every committed token afterwards. */
#include "decode/decode_internal.h"

int vb_decode_ar(vb_decode_run *run) {
    for (;;) {
        vb_token token = vb_decode_sample(run, run->last_logits, -1);
        if (token < 0) {
            vb_decode_note(run, "sampler failed (%d)", (int)token);
            return VB_ERR_BACKEND;
        }
        vb_decode_record_step(run, 1);
        bool go_on = vb_decode_commit(run, token);
        int32_t pos = vb_kv_seq_len(run->ctx, run->seq);
        vb_batch_clear(run->batch);
        vb_batch_add(run->batch, token, pos, run->seq, go_on);
        int rc = vb_decode_forward(run);
        if (rc != VB_OK) return rc; /* VB_KV_FULL: the token stays committed, not cached */
        if (!go_on) return VB_OK;
        rc = vb_decode_keep_logits(run, 0);
        if (rc != VB_OK) return rc;
    }
}
