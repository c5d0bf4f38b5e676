/* test_mutate.c - the mutation test of issue 18: the shipped model (the image embedded in the
 * library) with one field changed at a time - every numeric metadata key set to the boundary
 * values its type can hold (0, 1, 2^31-1, 2^32, 2^63, the type's maximum, -1 and INT_MIN for
 * signed types; 0, +-1, NaN, +-inf, 1e30 for floats), the first and last element of every
 * numeric array likewise, every array count, and every tensor info (n_dims, each dimension,
 * the type id, the data offset). Each mutant is loaded from memory and, when it loads, run
 * through a short forward (3 rows, then 1) on the cpu backend. A mutant must either be refused
 * with a status and a message, or load and run; nothing may crash, and under `make asan` no
 * sanitizer may report. The field offsets come from the library's reader (key values) and a
 * walk of the tensor-info section written here from the GGUF spec. */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"
#include "test.h"
#include "vibee.h"

typedef struct mut_stats {
    int n_mutants, n_refused, n_loaded, n_forward_ok, n_forward_err, n_bad_message;
    char first_bad[256];
} mut_stats;

static void run_forward(vb_model *m, mut_stats *st) {
    vb_context_params p = vb_context_default_params();
    p.backend = "cpu";
    p.n_ctx = 32;
    p.n_seq_max = 2;
    p.n_batch_max = 4;
    p.n_threads = 1;
    vb_context *c = NULL;
    char err[512] = "";
    int rc = vb_context_init(m, &p, &c, err, sizeof err);
    if (rc != VB_OK) {
        st->n_forward_err++;
        if (!err[0] && !st->n_bad_message++)
            snprintf(st->first_bad, sizeof st->first_bad, "context init %d without message", rc);
        return;
    }
    const int32_t n_vocab = vb_model_get_info(m)->n_vocab;
    vb_batch *b = vb_batch_init(4);
    for (int i = 0; i < 3; i++) vb_batch_add(b, (vb_token)((i * 977 + 5) % n_vocab), i, 0, i == 2);
    rc = b ? vb_forward(c, b) : VB_ERR_NOMEM;
    if (rc == VB_OK) {
        volatile float sink = vb_get_logits(c, 2)[n_vocab - 1]; /* read the logits */
        (void)sink;
        vb_batch_clear(b);
        vb_batch_add(b, (vb_token)(n_vocab - 1), 3, 0, true);
        rc = vb_forward(c, b);
    }
    if (rc == VB_OK) st->n_forward_ok++;
    else st->n_forward_err++;
    vb_batch_free(b);
    vb_context_free(c);
}

static void try_image(const uint8_t *img, size_t size, mut_stats *st) {
    vb_model *m = NULL;
    char err[512] = "";
    st->n_mutants++;
    int rc = vb_model_load_from_memory(img, size, "mutant", NULL, &m, err, sizeof err);
    if (rc != VB_OK) {
        st->n_refused++;
        if ((rc >= 0 || !err[0]) && !st->n_bad_message++)
            snprintf(st->first_bad, sizeof st->first_bad, "load: status %d, message '%s'", rc, err);
        return;
    }
    st->n_loaded++;
    run_forward(m, st);
    vb_model_free(m);
}

/* Writes the n-byte little-endian v at p, runs the image, restores p. */
static void mutate(uint8_t *img, size_t size, size_t off, int n, uint64_t v, mut_stats *st) {
    uint8_t saved[8];
    memcpy(saved, img + off, (size_t)n);
    for (int i = 0; i < n; i++) img[off + (size_t)i] = (uint8_t)(v >> (8 * i));
    if (memcmp(saved, img + off, (size_t)n) != 0) try_image(img, size, st);
    memcpy(img + off, saved, (size_t)n);
}

static uint64_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static uint64_t f64_bits(double d) {
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}

/* The boundary values of a GGUF scalar type: how many (<= 16) into v[], 0 for non-numeric. */
static int boundary_values(uint32_t type, uint64_t v[16], int *width) {
    static const uint64_t ints[] = {0, 1, 2, 0x7f, 0xff, 0x7fff, 0xffff, 0x7fffffffu, 0x80000000u,
                                    0xffffffffu, (uint64_t)1 << 32, (uint64_t)1 << 63,
                                    UINT64_MAX};
    int n = 0;
    switch (type) {
    case VB_GGUF_UINT8: case VB_GGUF_INT8: case VB_GGUF_BOOL: *width = 1; break;
    case VB_GGUF_UINT16: case VB_GGUF_INT16: *width = 2; break;
    case VB_GGUF_UINT32: case VB_GGUF_INT32: *width = 4; break;
    case VB_GGUF_UINT64: case VB_GGUF_INT64: *width = 8; break;
    case VB_GGUF_FLOAT32: {
        const float f[] = {0.0f, 1.0f, -1.0f, NAN, INFINITY, -INFINITY, 1e30f, FLT_MIN / 4};
        for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) v[n++] = f32_bits(f[i]);
        *width = 4;
        return n;
    }
    case VB_GGUF_FLOAT64: {
        const double d[] = {0.0, 1.0, -1.0, NAN, INFINITY, 1e300, -1e300};
        for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) v[n++] = f64_bits(d[i]);
        *width = 8;
        return n;
    }
    default: return 0;
    }
    const uint64_t mask = *width == 8 ? UINT64_MAX : ((uint64_t)1 << (8 * *width)) - 1;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        uint64_t x = ints[i] & mask;
        bool dup = false;
        for (int k = 0; k < n; k++) dup |= v[k] == x;
        if (!dup && n < 16) v[n++] = x;
    }
    return n;
}

static uint64_t rd64(const uint8_t *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
    return v;
}
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

TEST(mutate_shipped_model) {
    size_t size = 0;
    const void *data = vb_embedded_model(&size);
    CHECK(data && size > 64);
    uint8_t *img = NULL;
    CHECK(posix_memalign((void **)&img, 64, size) == 0);
    memcpy(img, data, size);
    vb_gguf *g = NULL;
    char err[512] = "";
    CHECKF(vb_gguf_open_memory(img, size, &g, err, sizeof err) == VB_OK, "%s", err);
    mut_stats st = {0};
    try_image(img, size, &st);
    CHECKF(st.n_forward_ok == 1, "the unmodified model does not run (%s)", st.first_bad);

    /* ---- metadata: every numeric scalar, numeric array ends, array counts ---- */
    const int64_t n_keys = vb_gguf_n_keys(g);
    size_t kv_end = 0;
    int n_numeric_keys = 0;
    for (int64_t i = 0; i < n_keys; i++) {
        const vb_gguf_kv *kv = vb_gguf_kv_at(g, i);
        const size_t voff = (size_t)(kv->value - img);
        if (voff + kv->value_len > kv_end) kv_end = voff + (size_t)kv->value_len;
        uint64_t v[16];
        int width = 0, n;
        if ((n = boundary_values(kv->type, v, &width)) > 0) {
            n_numeric_keys++;
            for (int k = 0; k < n; k++) mutate(img, size, voff, width, v[k], &st);
        } else if (kv->type == VB_GGUF_ARRAY) {
            const uint64_t counts[] = {0, 1, kv->arr_n - 1, kv->arr_n + 1, 0x7fffffffu,
                                       (uint64_t)1 << 32, (uint64_t)1 << 63};
            for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++)
                mutate(img, size, voff + 4, 8, counts[k], &st);
            if ((n = boundary_values(kv->arr_type, v, &width)) > 0 && kv->arr_n > 0) {
                const size_t first = (size_t)(kv->arr_data - img);
                const size_t last = first + (size_t)(kv->arr_n - 1) * (size_t)width;
                for (int k = 0; k < n; k++) {
                    mutate(img, size, first, width, v[k], &st);
                    mutate(img, size, last, width, v[k], &st);
                }
            }
        }
    }
    const int key_mutants = st.n_mutants;

    /* ---- tensor infos, walked from the end of the metadata (GGUF v3 layout) ---- */
    size_t at = kv_end;
    int n_tensors_walked = 0;
    for (int64_t t = 0; t < vb_gguf_n_tensors(g); t++) {
        const uint64_t name_len = rd64(img + at);
        at += 8 + (size_t)name_len;
        const size_t ndims_off = at;
        const uint32_t n_dims = rd32(img + at);
        at += 4;
        const size_t ne_off = at;
        at += 8 * (size_t)n_dims;
        const size_t type_off = at, offset_off = at + 4;
        const uint32_t type = rd32(img + type_off);
        const uint64_t offset = rd64(img + offset_off);
        at += 12;
        n_tensors_walked++;
        for (uint32_t d = 0; d <= 5; d++) mutate(img, size, ndims_off, 4, d, &st);
        for (uint32_t d = 0; d < n_dims; d++) {
            const uint64_t ne = rd64(img + ne_off + 8 * d);
            const uint64_t dims[] = {0, 1, 2, ne - 1, ne + 1, ne * 2, ne / 2, 0x7fffffffu,
                                     (uint64_t)1 << 32, (uint64_t)1 << 63, UINT64_MAX};
            for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++)
                mutate(img, size, ne_off + 8 * d, 8, dims[k], &st);
        }
        /* every type id the reader knows for the first layer's tensors and the global ones,
           a rotating few elsewhere (a smaller type keeps the data inside the file, so those
           load and run on reinterpreted bytes: NaN and inf activations) */
        const bool all_types = strncmp((const char *)img + ndims_off - name_len, "blk.0.", 6) == 0 ||
                               strncmp((const char *)img + ndims_off - name_len, "blk.", 4) != 0;
        for (uint32_t ty = 0; ty <= 40; ty++)
            if (all_types || (ty + (uint32_t)t) % 8 == 0) mutate(img, size, type_off, 4, ty, &st);
        mutate(img, size, type_off, 4, 0xffffffffu, &st);
        (void)type;
        const uint64_t offs[] = {0, 32, offset + 32, offset - 32, offset + 1, (uint64_t)1 << 32,
                                 (uint64_t)1 << 63, UINT64_MAX - 31, size};
        for (size_t k = 0; k < sizeof offs / sizeof offs[0]; k++)
            mutate(img, size, offset_off, 8, offs[k], &st);
    }
    /* the walk must end where the reader put the tensor data (first tensor at offset 0) */
    size_t data_start = 0;
    for (int64_t t = 0; t < vb_gguf_n_tensors(g); t++)
        if (vb_gguf_tensor_at(g, t)->offset == 0)
            data_start = (size_t)((const uint8_t *)vb_gguf_tensor_at(g, t)->data - img);
    const size_t align = vb_gguf_alignment(g);
    const int64_t n_tensors = vb_gguf_n_tensors(g);
    vb_gguf_close(g);
    free(img);
    CHECKF((at + align - 1) / align * align == data_start, "tensor-info walk ended at %zu, data at %zu",
           at, data_start);
    fprintf(stderr,
            "    %d numeric keys; %d mutants (%d of keys, %d of %d tensor infos): %d refused, "
            "%d loaded (%d forwards ok, %d refused by the backend)\n",
            n_numeric_keys, st.n_mutants, key_mutants, st.n_mutants - key_mutants,
            n_tensors_walked, st.n_refused, st.n_loaded, st.n_forward_ok, st.n_forward_err);
    CHECKF(st.n_bad_message == 0, "%d refusals without a status and message, first: %s",
           st.n_bad_message, st.first_bad);
    CHECK(n_numeric_keys >= 10);
    CHECK_EQ_INT(n_tensors_walked, n_tensors);
    CHECK(st.n_loaded > 50 && st.n_forward_ok > 50); /* the forward path was exercised */
    CHECK(st.n_refused > 500);                       /* and so were the checks */
}
