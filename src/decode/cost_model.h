/* cost_model.h - the measured cost of a K-row forward on a context (DESIGN §4: on a CPU a
 * K-token forward costs more than a 1-token one, on a GPU it is almost free), and the choice of
 * the verify draft length / WeDLM window that maximises expected tokens per second from it.
 * Measurements are scratch forwards on the caller's sequence, truncated afterwards; the table
 * is kept in the context, in an optional file across processes, and corrected online by the
 * decoders from the forwards they time. */
#ifndef VB_DECODE_COST_MODEL_H
#define VB_DECODE_COST_MODEL_H

#include <stddef.h>
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

/* Forget the table cached in this context (the next measure times the forwards again; a
 * table in the context's cost cache file is still found). */
void vb_cost_forget(vb_context *ctx);

/* ---- the file cache (vb_context_params.cost_cache_path) ----
 * One line per key: "<key>\t<K>:<seconds>,<K>:<seconds>,...\n". The key names the build (a
 * table measured with other kernels is stale), the model (name, arch, shape, weight type,
 * parameter count), the backend, the thread count, the KV type and the number of online CPUs;
 * tab, newline and non-printable bytes in names are replaced. */

/* Key of ctx into key[len] (truncated to fit, always terminated). */
void vb_cost_key(const vb_context *ctx, char *key, size_t len);
/* Find key in the file at path: VB_OK and *out filled (points ascending in K, seconds > 0),
 * or VB_ERR_IO (no file / no such key / a malformed line: every such case just means
 * "measure"). Reads at most 1 MiB. */
int vb_cost_file_load(const char *path, const char *key, vb_cost_table *out);
/* Replace (or add) the line of key in the file at path (write to path.tmp.<pid>, rename).
 * VB_OK or VB_ERR_IO; lines of other keys are kept (lines beyond 1 MiB are dropped). */
int vb_cost_file_store(const char *path, const char *key, const vb_cost_table *t);

/* ---- online correction ----
 * The table a decoder starts from, replaced row count by row count by the forwards the run
 * itself times (the load on the machine during decoding is what counts). At the end of a
 * verify run (its timings are forwards; WeDLM times whole steps and keeps them to itself) the
 * row counts timed often enough, and within a factor of 2 of the table, go back into the
 * context's table (not into the file: one run's forwards can be unlike the measured ones, e.g.
 * on llama.cpp after many truncations, and a poisoned cost(1) would mislead every later run). */
#define VB_COST_TRACKED_ROWS 35
#define VB_COST_RING 9 /* last timings kept per row count; their median is the cost */
typedef struct vb_cost_online {
    vb_cost_table table;
    double ring[VB_COST_TRACKED_ROWS][VB_COST_RING]; /* last forward seconds by row count */
    int32_t n_observed[VB_COST_TRACKED_ROWS];       /* timings seen (the ring keeps the last) */
} vb_cost_online;

void vb_cost_online_init(vb_cost_online *o, const vb_cost_table *t);
double vb_cost_online_seconds(const vb_cost_online *o, int32_t rows);
void vb_cost_online_observe(vb_cost_online *o, int32_t rows, double seconds);
/* cost(rows): the median of the run's timings of that row count once there are >= 3 (a
 * descheduled thread or a cold first forward is one outlier, not the cost), else the table. */
/* Merge the observations (row counts timed >= 5 times, within 2x of the table) into the
 * context's table. */
void vb_cost_online_save(vb_context *ctx, const vb_cost_online *o);

#endif
