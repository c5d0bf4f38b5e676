/* cost_model.h - the measured cost of a K-row forward on a context (DESIGN §4: on a CPU a
 * K-token forward costs more than a 1-token one, on a GPU it is almost free), and the choice of
 * the verify draft length / WeDLM window that maximises expected tokens per second from it.
 * Measurements are scratch forwards on the caller's sequence, truncated afterwards, and are
 * cached per (context, model, backend) for the life of the process. */
#ifndef VB_DECODE_COST_MODEL_H
#define VB_DECODE_COST_MODEL_H

#include <stdint.h>

#include "vibee.h"

#define VB_COST_MAX_POINTS 8

typedef struct vb_cost_table { /* also forward-declared as struct vb_cost_table */
    int32_t n;                          /* measured points */
    int32_t rows[VB_COST_MAX_POINTS];   /* K = 1, 2, 4, 8, ... */
    double seconds[VB_COST_MAX_POINTS]; /* wall seconds of one K-row forward (median of a few) */
} vb_cost_table;

/* Measure (or fetch from the cache) cost(K) for K = 1, 2, 4, ... up to max_rows on `seq`, which
 * must hold at least one row; rows are appended at the next positions with token `filler` and
 * truncated afterwards. Returns VB_OK (out->n >= 1), VB_KV_FULL (not even K = 1 fitted) or the
 * forward's error. */
int vb_cost_measure(vb_context *ctx, vb_seq seq, vb_token filler, int32_t max_rows,
                    vb_cost_table *out);

/* cost(rows) by linear interpolation between measured points (extrapolated past the last). */
double vb_cost_seconds(const vb_cost_table *t, int32_t rows);

/* Expected tokens committed by one verify forward with k drafts when each draft is accepted
 * with probability a (independently, stop at the first rejection), bonus token included:
 * 1 + a + ... + a^k. */
double vb_cost_expected_tokens(double a, int32_t k);

/* Draft length k in [0, k_max] maximising expected_tokens(a, k) / cost(k + 1). */
int32_t vb_cost_best_draft(const vb_cost_table *t, double accept_rate, int32_t k_max);

/* Forget the table cached in this context (the next measure times the forwards again). */
void vb_cost_forget(vb_context *ctx);

#endif
