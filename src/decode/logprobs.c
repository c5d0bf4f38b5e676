/* logprobs.c - the log-probabilities of a committed token (vb_logprobs, asked for with
 * vb_generate_params.n_logprobs): the log-softmax of the raw logits row the token was committed
 * from, in double, at temperature 1 and before any sampler transform or grammar mask (the
 * model's distribution, as OpenAI reports it), and the n most likely tokens of that row. One pass
 * for the maximum, one for the normaliser (vb_wedlm_exp_sums: float lanes, relative error ~2e-7),
 * one for the top-n selection (n <= VB_LOGPROBS_MAX kept sorted by insertion), only when n > 0.
 * NaN logits count as -inf. */
#include <math.h>

#include "decode/decode_internal.h"
#include "decode/wedlm.h"

void vb_logprobs_compute(const float *row, int32_t n_vocab, vb_token token, int32_t n_top,
                         vb_logprobs *out) {
    if (n_top < 0) n_top = 0;
    if (n_top > VB_LOGPROBS_MAX) n_top = VB_LOGPROBS_MAX;
    if (n_top > n_vocab) n_top = n_vocab;
    float max = -INFINITY;
    for (int32_t v = 0; v < n_vocab; v++)
        if (row[v] > max) max = row[v]; /* NaN compares false: skipped */
    /* log Z = max + log(sum e^(x - max)) (the vectorized sums WeDLM's entropy uses); every entry
       -inf or NaN, or a +inf one: no distribution */
    double sum = 0.0, sum_d;
    if (isfinite(max)) vb_wedlm_exp_sums(row, n_vocab, max, &sum, &sum_d);
    int32_t n = 0; /* entries in top[], sorted: logprob descending, then id ascending */
    vb_token_logprob *top = out->top;
    for (int32_t v = 0; v < n_vocab && n_top > 0; v++) {
        float x = row[v];
        if (isnan(x)) x = -INFINITY;
        if (n == n_top && !(x > top[n - 1].logprob)) continue;
        /* insert v (later ids lose ties: strictly greater moves up) */
        int32_t i = n < n_top ? n++ : n - 1;
        while (i > 0 && x > top[i - 1].logprob) {
            top[i] = top[i - 1];
            i--;
        }
        top[i] = (vb_token_logprob){v, x};
    }
    double log_z = isfinite(max) ? (double)max + log(sum) : INFINITY;
    out->token = token;
    out->n_top = n;
    float xt = token >= 0 && token < n_vocab ? row[token] : -INFINITY;
    out->logprob = isnan(xt) || !isfinite(log_z) ? -INFINITY : (float)((double)xt - log_z);
    for (int32_t i = 0; i < n; i++)
        top[i].logprob = !isfinite(log_z) ? -INFINITY : (float)((double)top[i].logprob - log_z);
}
