/* wedlm.h - the step logic of WeDLM streaming parallel decoding (DESIGN §4) as pure functions
 * over a window of slots, so it can be tested on hand-made logits: the leading filled run, the
 * physical order of a window (filled slots first, then masks, each ascending), the entropy of
 * softmax(raw logits) and the selection rule (entropy + lambda * distance < tau, else a single
 * slot). The decoder that drives them over vb_forward is vb_decode_wedlm (wedlm.c). */
#ifndef VB_DECODE_WEDLM_H
#define VB_DECODE_WEDLM_H

#include <stdbool.h>
#include <stdint.h>

#include "vibee.h"

/* Slot value of a mask (an unfilled slot); any other value is a filled token. */
#define VB_WEDLM_MASK (-1)

/* Number of filled slots at the front of slot[n] (these are committed by the next forward). */
int32_t vb_wedlm_leading_filled(const vb_token *slot, int32_t n);

/* Physical order of a window: order[i] = slot index of batch row i; filled slots ascending,
 * then masks ascending. order has room for n. Returns the number of filled slots. */
int32_t vb_wedlm_order(const vb_token *slot, int32_t n, int32_t *order);

/* Entropy in nats of softmax(logits[n]) over ALL n entries (the mask column included: the
 * rule scores raw logits). Entries of -inf have probability 0 and contribute 0, so a backend
 * that masks a token out never turns the entropy into NaN. Returns NaN if a logit is NaN or
 * every logit is -inf. Computed in double. */
double vb_wedlm_entropy(const float *logits, int32_t n);

/* sum e^d and sum d e^d over d = x[i] - max, i < n (max >= every x[i], finite; -inf entries add
 * 0; NaN ones ~0): float lanes with a polynomial e^d of relative error ~2e-7 for whole blocks of
 * 16, libm for the tail. The entropy above and the log-softmax of vb_logprobs use it. */
void vb_wedlm_exp_sums(const float *x, int32_t n, float max, double *sum, double *sum_d);

typedef struct vb_wedlm_rule {
    float tau;              /* fill every mask with score < tau */
    float lambda;           /* distance penalty per slot */
    bool leftmost_fallback; /* none under tau: the leftmost mask (else the best score) */
    bool prefix_only;       /* only a run of masks starting at the first mask may be filled
                               (backends without physical causality: no reordering needed) */
} vb_wedlm_rule;

/* The selection rule. mask_j[n_mask]: window index of each remaining mask, ascending;
 * entropy[n_mask]: its entropy. score[k] = entropy[k] + lambda * (mask_j[k] - mask_j[0]);
 * a NaN score never qualifies and counts as +inf. Sets chosen[k] (0/1) and, if score is not
 * NULL, score[k]. Returns the number chosen: >= 1 when n_mask >= 1. */
int32_t vb_wedlm_select(const vb_wedlm_rule *rule, const int32_t *mask_j, const double *entropy,
                        int32_t n_mask, int8_t *chosen, double *score);

#endif
