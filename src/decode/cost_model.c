/* cost_model.c - measure cost(K) of K-row forwards with scratch rows (truncated afterwards),
 * keep the table in the context and optionally in a file across processes, correct it online
 * from the forwards the decoders time, and pick draft lengths from it. */
#include "decode/cost_model.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backend.h"

#define MEASURE_REPS 5 /* the median is kept: on a loaded machine it is what decoding meets */
#define SLOW_FORWARD_SECONDS 0.25 /* a forward this slow is measured once, and larger K skipped */
#define COST_FILE_MAX (1 << 20)   /* bytes of a cost cache file read (the rest is ignored) */
#define COST_KEY_MAX 512

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

/* ------------------------------------------------------------------------------ file cache */

/* Append s to key[len] at *at, with tab/newline/non-printable bytes replaced by '_'. */
static void key_put(char *key, size_t len, size_t *at, const char *s) {
    for (; *s && *at + 1 < len; s++) {
        unsigned char ch = (unsigned char)*s;
        key[(*at)++] = (ch < 0x21 || ch > 0x7e) ? '_' : (char)ch;
    }
    key[*at] = 0;
}

void vb_cost_key(const vb_context *ctx, char *key, size_t len) {
    if (!key || len == 0) return;
    key[0] = 0;
    const vb_model *m = vb_context_model(ctx);
    const vb_model_info *mi = m ? vb_model_get_info(m) : NULL;
    vb_model_info info;
    if (mi) info = *mi;
    else memset(&info, 0, sizeof info);
    const vb_context_params *cp = vb_context_params_get(ctx);
    char buf[COST_KEY_MAX];
    size_t at = 0;
    /* the build: kernels change between versions/builds, and so does the cost */
    key_put(key, len, &at, "vibee-" VIBEE_VERSION "-" __DATE__ "-" __TIME__);
    key_put(key, len, &at, "|model=");
    key_put(key, len, &at, info.name);
    snprintf(buf, sizeof buf, "|%s|%s|vocab%d|embd%d|layer%d|ff%d|params%lld|",
             info.arch, info.weight_type, (int)info.n_vocab, (int)info.n_embd, (int)info.n_layer,
             (int)info.n_ff, (long long)info.n_params);
    key_put(key, len, &at, buf);
    snprintf(buf, sizeof buf, "backend=%s|threads=%d|kv=%d|cpus=%ld",
             vb_context_backend_name(ctx), cp ? (int)cp->n_threads : -1,
             cp ? (int)cp->kv_type : -1, sysconf(_SC_NPROCESSORS_ONLN));
    key_put(key, len, &at, buf);
}

/* Read at most COST_FILE_MAX bytes of path into a NUL-terminated buffer (NULL: none, or not a
 * regular file: a FIFO would block). */
static char *read_small_file(const char *path, size_t *n_out) {
    FILE *f = vb_fopen_regular(path, -1);
    if (!f) return NULL;
    char *buf = malloc(COST_FILE_MAX + 1);
    size_t n = buf ? fread(buf, 1, COST_FILE_MAX, f) : 0;
    fclose(f);
    if (!buf) return NULL;
    buf[n] = 0;
    *n_out = n;
    return buf;
}

/* Parse "K:seconds,K:seconds,..." (the rest of a line) into t; false if malformed. */
static bool parse_points(const char *s, const char *end, vb_cost_table *t) {
    memset(t, 0, sizeof *t);
    while (s < end) {
        if (t->n >= VB_COST_MAX_POINTS) return false;
        char *e1, *e2;
        errno = 0;
        long k = strtol(s, &e1, 10);
        if (e1 == s || e1 >= end || *e1 != ':' || errno || k < 1 || k > 65536) return false;
        double sec = strtod(e1 + 1, &e2);
        if (e2 == e1 + 1 || e2 > end || !isfinite(sec) || sec <= 0.0 || sec > 3600.0) return false;
        if (t->n > 0 && k <= t->rows[t->n - 1]) return false;
        t->rows[t->n] = (int32_t)k;
        t->seconds[t->n] = sec;
        t->n++;
        s = e2;
        if (s < end && *s == ',') s++;
        else if (s < end) return false;
    }
    return t->n > 0;
}

int vb_cost_file_load(const char *path, const char *key, vb_cost_table *out) {
    if (!path || !key || !out) return VB_ERR_ARG;
    size_t n = 0, klen = strlen(key);
    char *buf = read_small_file(path, &n);
    if (!buf) return VB_ERR_IO;
    int rc = VB_ERR_IO;
    for (char *line = buf; line < buf + n;) {
        char *nl = memchr(line, '\n', (size_t)(buf + n - line));
        char *end = nl ? nl : buf + n;
        if ((size_t)(end - line) > klen && !memcmp(line, key, klen) && line[klen] == '\t') {
            vb_cost_table t;
            if (parse_points(line + klen + 1, end, &t)) {
                *out = t; /* the last good line of the key wins */
                rc = VB_OK;
            }
        }
        line = end + 1;
    }
    free(buf);
    return rc;
}

int vb_cost_file_store(const char *path, const char *key, const vb_cost_table *t) {
    if (!path || !key || !t || t->n <= 0 || strchr(key, '\n') || strchr(key, '\t'))
        return VB_ERR_ARG;
    size_t n = 0, klen = strlen(key);
    char *old = read_small_file(path, &n); /* NULL: a new file */
    size_t tlen = strlen(path) + 32;
    char *tmp = malloc(tlen);
    if (!tmp) {
        free(old);
        return VB_ERR_NOMEM;
    }
    snprintf(tmp, tlen, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = f ? VB_OK : VB_ERR_IO;
    /* keep the other keys' complete lines */
    for (char *line = old; f && line && line < old + n;) {
        char *nl = memchr(line, '\n', (size_t)(old + n - line));
        if (!nl) break; /* a truncated last line is dropped */
        bool same = (size_t)(nl - line) > klen && !memcmp(line, key, klen) && line[klen] == '\t';
        if (!same && fwrite(line, 1, (size_t)(nl + 1 - line), f) != (size_t)(nl + 1 - line))
            rc = VB_ERR_IO;
        line = nl + 1;
    }
    if (f) {
        fprintf(f, "%s\t", key);
        for (int32_t i = 0; i < t->n; i++)
            fprintf(f, "%s%d:%.17g", i ? "," : "", (int)t->rows[i], t->seconds[i]);
        fputc('\n', f);
        if (ferror(f)) rc = VB_ERR_IO;
        if (fclose(f) != 0) rc = VB_ERR_IO;
        if (rc == VB_OK && rename(tmp, path) != 0) rc = VB_ERR_IO;
        if (rc != VB_OK) remove(tmp);
    }
    free(tmp);
    free(old);
    return rc;
}

/* The table in the context's file, if it has one for this context's key. */
static bool file_lookup(const vb_context *ctx, vb_cost_table *out) {
    const vb_context_params *cp = vb_context_params_get(ctx);
    if (!cp || !cp->cost_cache_path) return false;
    char key[COST_KEY_MAX];
    vb_cost_key(ctx, key, sizeof key);
    return vb_cost_file_load(cp->cost_cache_path, key, out) == VB_OK;
}

static void file_store(const vb_context *ctx, const vb_cost_table *t) {
    const vb_context_params *cp = vb_context_params_get(ctx);
    if (!cp || !cp->cost_cache_path) return;
    char key[COST_KEY_MAX];
    vb_cost_key(ctx, key, sizeof key);
    (void)vb_cost_file_store(cp->cost_cache_path, key, t); /* a failed write: measured again */
}

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
    if (file_lookup(ctx, out)) {
        cache_store(ctx, max_rows, out);
        return VB_OK;
    }

    vb_batch *batch = vb_batch_init(max_rows);
    if (!batch) return VB_ERR_NOMEM;
    int32_t ks[VB_COST_MAX_POINTS]; /* K = 1, 2, 4, ... */
    int n_k = 0;
    for (int32_t k = 1; k <= max_rows && n_k < VB_COST_MAX_POINTS; k *= 2) ks[n_k++] = k;
    /* one untimed forward per K first (first use of a batch size allocates, pages in), then
       MEASURE_REPS rounds over all K in turn, so a change of load hits every K alike; a K whose
       forward takes longer than SLOW_FORWARD_SECONDS ends the table there. The cost is the
       median over the rounds */
    int rc = VB_OK, active = 0;
    for (; active < n_k && rc == VB_OK; active++) {
        double dt = time_forward(ctx, batch, seq, filler, ks[active], &rc);
        if (rc == VB_OK && dt > SLOW_FORWARD_SECONDS) {
            active++;
            break;
        }
    }
    if (rc != VB_OK) active--; /* that K did not fit (KV full) or failed: not measured */
    double times[VB_COST_MAX_POINTS][MEASURE_REPS];
    int n_times[VB_COST_MAX_POINTS] = {0};
    for (int rep = 0; rep < MEASURE_REPS && active > 0; rep++)
        for (int i = 0; i < active; i++) {
            /* the second of two back-to-back forwards of K rows: a decoder forwards the same
               row count step after step, so the caches hold what that size needs */
            int frc = VB_OK;
            double dt = time_forward(ctx, batch, seq, filler, ks[i], &frc);
            if (frc == VB_OK) dt = time_forward(ctx, batch, seq, filler, ks[i], &frc);
            if (frc != VB_OK) {
                rc = frc;
                active = i;
                break;
            }
            times[i][n_times[i]++] = dt;
            if (dt > SLOW_FORWARD_SECONDS) {
                active = i + 1;
                break;
            }
        }
    for (int i = 0; i < n_k && n_times[i] > 0; i++) {
        double *t = times[i];
        for (int a = 1; a < n_times[i]; a++) /* insertion sort, n <= MEASURE_REPS */
            for (int b = a; b > 0 && t[b] < t[b - 1]; b--) {
                double x = t[b];
                t[b] = t[b - 1];
                t[b - 1] = x;
            }
        out->rows[out->n] = ks[i];
        out->seconds[out->n] = t[n_times[i] / 2];
        out->n++;
    }
    if (out->n > 0 && rc == VB_KV_FULL) rc = VB_OK; /* the K that fit are measured */
    vb_batch_free(batch);
    if (out->n == 0) return rc == VB_OK ? VB_KV_FULL : rc;
    if (rc == VB_OK) {
        cache_store(ctx, max_rows, out);
        file_store(ctx, out);
    }
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

/* ------------------------------------------------------------------------ online correction */

void vb_cost_online_init(vb_cost_online *o, const vb_cost_table *t) {
    memset(o, 0, sizeof *o);
    if (t) o->table = *t;
}

/* Median of the ring of row count r (n_observed[r] >= 1). */
static double online_median(const vb_cost_online *o, int32_t r) {
    int32_t n = o->n_observed[r] < VB_COST_RING ? o->n_observed[r] : VB_COST_RING;
    double v[VB_COST_RING];
    memcpy(v, o->ring[r], sizeof(double) * (size_t)n);
    for (int32_t i = 1; i < n; i++) /* insertion sort, n <= VB_COST_RING */
        for (int32_t j = i; j > 0 && v[j] < v[j - 1]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double vb_cost_online_seconds(const vb_cost_online *o, int32_t rows) {
    if (rows >= 0 && rows < VB_COST_TRACKED_ROWS && o->n_observed[rows] >= 3)
        return online_median(o, rows);
    return vb_cost_seconds(&o->table, rows);
}

void vb_cost_online_observe(vb_cost_online *o, int32_t rows, double seconds) {
    if (rows < 0 || rows >= VB_COST_TRACKED_ROWS || !(seconds > 0.0) || !isfinite(seconds))
        return;
    o->ring[rows][o->n_observed[rows] % VB_COST_RING] = seconds;
    o->n_observed[rows]++;
}

void vb_cost_online_save(vb_context *ctx, const vb_cost_online *o) {
    if (o->table.n <= 0) return;
    vb_cost_table t = o->table;
    bool changed = false;
    for (int32_t i = 0; i < t.n; i++) {
        int32_t r = t.rows[i];
        if (r >= VB_COST_TRACKED_ROWS || o->n_observed[r] < 5) continue;
        double seen = online_median(o, r);
        /* within a factor of 2 of the measurement: drift of the machine's load; beyond that the
           forwards of this run were not like the measured ones (another backend state, a
           descheduled thread): keep the measurement */
        if (seen > 0.5 * t.seconds[i] && seen < 2.0 * t.seconds[i]) {
            t.seconds[i] = seen;
            changed = true;
        }
    }
    if (!changed) return;
    const cost_cache_entry *e = vb_context_decoder_cache(ctx);
    cache_store(ctx, e ? e->max_rows : t.rows[t.n - 1], &t);
}
