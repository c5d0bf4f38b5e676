/* cost_model.c - measure cost(K) of K-row forwards with scratch rows (truncated afterwards),
 * keep the table in the context, and pick draft lengths from it. */
#include "decode/cost_model.h"

#include <stdlib.h>
#include <string.h>

#include "backend.h"

#define MEASURE_REPS 5 /* the median is kept: on a loaded machine it is what decoding meets */
#define SLOW_FORWARD_SECONDS 0.25 /* a forward this slow is measured once, and larger K skipped */

/* The table measured on a context is kept in the context itself (freed with it). */
typedef struct cost_cache_entry {
    int32_t max_rows;
    vb_cost_table table;
} cost_cache_entry;

static bool cache_lookup(const vb_context *ctx, int32_t max_rows, vb_cost_table *out) {
    const cost_cache_entry *e = vb_context_decoder_cache(ctx);
    if (!e || e->max_rows < max_rows) return false;
    *out = e->table;
    return true;
}

static void cache_store(vb_context *ctx, int32_t max_rows, const vb_cost_table *t) {
    cost_cache_entry *e = malloc(sizeof *e);
    if (!e) return; /* only a missed cache */
    e->max_rows = max_rows;
    e->table = *t;
    vb_context_set_decoder_cache(ctx, e, free);
}

void vb_cost_forget(vb_context *ctx) { vb_context_set_decoder_cache(ctx, NULL, NULL); }

/* One scratch forward of k rows after the sequence's rows; seconds or < 0 on failure (*rc). */
static double time_forward(vb_context *ctx, vb_batch *batch, vb_seq seq, vb_token filler,
                           int32_t k, int *rc) {
    int32_t base = vb_kv_seq_len(ctx, seq);
    vb_batch_clear(batch);
    for (int32_t i = 0; i < k; i++) vb_batch_add(batch, filler, base + i, seq, true);
    double t0 = vb_time_now();
    *rc = vb_forward(ctx, batch);
    double dt = vb_time_now() - t0;
    if (*rc == VB_OK) vb_kv_truncate(ctx, seq, base);
    return *rc == VB_OK ? dt : -1.0;
}

int vb_cost_measure(vb_context *ctx, vb_seq seq, vb_token filler, int32_t max_rows,
                    vb_cost_table *out) {
    memset(out, 0, sizeof *out);
    vb_backend_caps caps = vb_context_caps(ctx);
    if (caps.max_batch > 0 && max_rows > caps.max_batch) max_rows = caps.max_batch;
    if (max_rows < 1) max_rows = 1;
    if (cache_lookup(ctx, max_rows, out)) return VB_OK;

    vb_batch *batch = vb_batch_init(max_rows);
    if (!batch) return VB_ERR_NOMEM;
    int rc = VB_OK;
    (void)time_forward(ctx, batch, seq, filler, 1, &rc); /* warm-up */
    for (int32_t k = 1; rc == VB_OK && k <= max_rows && out->n < VB_COST_MAX_POINTS; k *= 2) {
        double times[MEASURE_REPS];
        int n_times = 0;
        for (int rep = 0; rep < MEASURE_REPS; rep++) {
            double dt = time_forward(ctx, batch, seq, filler, k, &rc);
            if (rc != VB_OK) break;
            times[n_times++] = dt;
            if (dt > SLOW_FORWARD_SECONDS) break;
        }
        if (n_times == 0) break;
        for (int i = 1; i < n_times; i++) /* insertion sort, n <= MEASURE_REPS */
            for (int j = i; j > 0 && times[j] < times[j - 1]; j--) {
                double t = times[j];
                times[j] = times[j - 1];
                times[j - 1] = t;
            }
        double median = times[n_times / 2];
        out->rows[out->n] = k;
        out->seconds[out->n] = median;
        out->n++;
        if (median > SLOW_FORWARD_SECONDS) break;
    }
    vb_batch_free(batch);
    if (out->n == 0) return rc == VB_OK ? VB_KV_FULL : rc;
    if (rc == VB_OK) cache_store(ctx, max_rows, out);
    return VB_OK;
}

double vb_cost_seconds(const vb_cost_table *t, int32_t rows) {
    if (t->n <= 0) return (double)rows; /* unknown: proportional to rows */
    if (t->n == 1 || rows <= t->rows[0]) return t->seconds[0];
    int i = 1;
    while (i < t->n - 1 && rows > t->rows[i]) i++;
    double x0 = t->rows[i - 1], x1 = t->rows[i];
    double y0 = t->seconds[i - 1], y1 = t->seconds[i];
    double y = y0 + (y1 - y0) * ((double)rows - x0) / (x1 - x0);
    return y > t->seconds[0] ? y : t->seconds[0];
}

double vb_cost_expected_tokens(double a, int32_t k) {
    double sum = 1.0, term = 1.0;
    for (int32_t i = 0; i < k; i++) {
        term *= a;
        sum += term;
    }
    return sum;
}

int32_t vb_cost_best_draft(const vb_cost_table *t, double accept_rate, int32_t k_max) {
    int32_t best_k = 0;
    double best_rate = vb_cost_expected_tokens(accept_rate, 0) / vb_cost_seconds(t, 1);
    for (int32_t k = 1; k <= k_max; k++) {
        double rate = vb_cost_expected_tokens(accept_rate, k) / vb_cost_seconds(t, k + 1);
        if (rate > best_rate * 1.02) { /* prefer the shorter draft unless clearly better */
            best_rate = rate;
            best_k = k;
        }
    }
    return best_k;
}
