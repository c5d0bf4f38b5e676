/* gguf_writer.c - GGUF v3 writer: collects metadata (each value kept in its encoded GGUF form, so
 * keys copied from an open file keep any type, nested arrays included) and tensor references,
 * then writes header, key/values, tensor infos and data, each tensor's data aligned to
 * general.alignment (32 unless the caller set that key). The file is written under a temporary
 * name and renamed into place, so a model open (mmap'd) from the target path is never clobbered
 * mid-write. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gguf/gguf.h"
#include "gguf/gguf_internal.h"
#include "types.h"
#include "vibee.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf_writer.c copies numeric arrays and tensors as host bytes: little-endian hosts only"
#endif

#define WRITER_DEFAULT_ALIGNMENT 32u
#define WRITER_MAX_ALIGNMENT (1u << 20)

typedef struct {
    char *name;
    uint32_t type;  /* enum vb_gguf_vtype */
    uint8_t *value; /* [value_len] encoded value (what follows the type field in the file) */
    size_t value_len;
} writer_kv;

typedef struct {
    char *name;
    uint32_t type; /* enum vb_type */
    int n_dims;
    int64_t ne[VB_GGUF_MAX_DIMS];
    uint64_t nbytes;
    const void *data; /* [nbytes] referenced, not owned */
} writer_tensor;

struct vb_gguf_writer {
    writer_kv *kvs; /* [n_kvs] */
    size_t n_kvs, cap_kvs;
    writer_tensor *tensors; /* [n_tensors] */
    size_t n_tensors, cap_tensors;
    uint32_t alignment;
};

/* ---- growable byte buffer for encoding values ---------------------------------------------- */

typedef struct {
    uint8_t *p;
    size_t len, cap;
    bool failed;
} bytes;

static void put_raw(bytes *b, const void *src, size_t n) {
    if (b->failed || n == 0) return;
    if (n > SIZE_MAX / 2 - b->len) {
        b->failed = true;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n) cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, src, n);
    b->len += n;
}

static void put_u32(bytes *b, uint32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    put_raw(b, le, 4);
}

static void put_u64(bytes *b, uint64_t v) {
    put_u32(b, (uint32_t)v);
    put_u32(b, (uint32_t)(v >> 32));
}

/* ---- init / free -------------------------------------------------------------------------- */

vb_gguf_writer *vb_gguf_writer_init(void) {
    vb_gguf_writer *w = calloc(1, sizeof *w);
    if (w) w->alignment = WRITER_DEFAULT_ALIGNMENT;
    return w;
}

void vb_gguf_writer_free(vb_gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kvs; i++) {
        free(w->kvs[i].name);
        free(w->kvs[i].value);
    }
    for (size_t i = 0; i < w->n_tensors; i++) free(w->tensors[i].name);
    free(w->kvs);
    free(w->tensors);
    free(w);
}

/* ---- metadata ----------------------------------------------------------------------------- */

static bool has_key(const vb_gguf_writer *w, const char *key) {
    for (size_t i = 0; i < w->n_kvs; i++)
        if (strcmp(w->kvs[i].name, key) == 0) return true;
    return false;
}

/* general.alignment decides the writer's alignment: an integer (uint32 by the spec; any integer
 * type, as the reader accepts, so copy_keys never refuses a valid file) that is a power of two of
 * at least 8 (the spec's rule, which the reader enforces) and no larger than WRITER_MAX_ALIGNMENT. */
static int check_alignment_key(vb_gguf_writer *w, uint32_t type, const uint8_t *value,
                               size_t value_len) {
    bool is_signed = type == VB_GGUF_INT8 || type == VB_GGUF_INT16 || type == VB_GGUF_INT32 ||
                     type == VB_GGUF_INT64;
    bool is_int = is_signed || type == VB_GGUF_UINT8 || type == VB_GGUF_UINT16 ||
                  type == VB_GGUF_UINT32 || type == VB_GGUF_UINT64;
    if (!is_int || value_len != vb_gguf_vtype_size(type)) return VB_ERR_ARG;
    if (is_signed && (value[value_len - 1] & 0x80)) return VB_ERR_ARG; /* negative */
    uint64_t a = 0;
    for (size_t i = value_len; i-- > 0;) a = (a << 8) | value[i];
    if (a < 8 || (a & (a - 1)) != 0 || a > WRITER_MAX_ALIGNMENT) return VB_ERR_ARG;
    w->alignment = (uint32_t)a;
    return VB_OK;
}

/* Adds key with an already encoded value (copied). */
static int add_kv(vb_gguf_writer *w, const char *key, uint32_t type, const void *value,
                  size_t value_len) {
    if (!w || !key || !*key || (!value && value_len)) return VB_ERR_ARG;
    if (strlen(key) > 65535) return VB_ERR_ARG;
    if (has_key(w, key)) return VB_ERR_ARG;
    if (strcmp(key, "general.alignment") == 0) {
        int rc = check_alignment_key(w, type, value, value_len);
        if (rc != VB_OK) return rc;
    }
    if (w->n_kvs == w->cap_kvs) {
        size_t cap = w->cap_kvs ? 2 * w->cap_kvs : 32;
        writer_kv *kvs = realloc(w->kvs, cap * sizeof *kvs);
        if (!kvs) return VB_ERR_NOMEM;
        w->kvs = kvs;
        w->cap_kvs = cap;
    }
    char *name = strdup(key);
    uint8_t *copy = malloc(value_len ? value_len : 1);
    if (!name || !copy) {
        free(name);
        free(copy);
        return VB_ERR_NOMEM;
    }
    if (value_len) memcpy(copy, value, value_len);
    w->kvs[w->n_kvs++] = (writer_kv){name, type, copy, value_len};
    return VB_OK;
}

int vb_gguf_writer_set_u32(vb_gguf_writer *w, const char *key, uint32_t v) {
    uint8_t le[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return add_kv(w, key, VB_GGUF_UINT32, le, 4);
}

int vb_gguf_writer_set_i32(vb_gguf_writer *w, const char *key, int32_t v) {
    uint32_t u = (uint32_t)v;
    uint8_t le[4] = {(uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24)};
    return add_kv(w, key, VB_GGUF_INT32, le, 4);
}

int vb_gguf_writer_set_f32(vb_gguf_writer *w, const char *key, float v) {
    uint8_t le[4];
    memcpy(le, &v, 4); /* little-endian host */
    return add_kv(w, key, VB_GGUF_FLOAT32, le, 4);
}

int vb_gguf_writer_set_bool(vb_gguf_writer *w, const char *key, bool v) {
    uint8_t b = v ? 1 : 0;
    return add_kv(w, key, VB_GGUF_BOOL, &b, 1);
}

int vb_gguf_writer_set_str(vb_gguf_writer *w, const char *key, const char *s) {
    if (!s) return VB_ERR_ARG;
    bytes b = {0};
    size_t n = strlen(s);
    put_u64(&b, n);
    put_raw(&b, s, n);
    int rc = b.failed ? VB_ERR_NOMEM : add_kv(w, key, VB_GGUF_STRING, b.p, b.len);
    free(b.p);
    return rc;
}

int vb_gguf_writer_set_arr(vb_gguf_writer *w, const char *key, int elem_type, const void *data,
                           uint64_t n) {
    size_t elem = elem_type >= 0 ? vb_gguf_vtype_size((uint32_t)elem_type) : 0;
    if (elem == 0 || (!data && n > 0) || n > (SIZE_MAX / 2) / elem) return VB_ERR_ARG;
    bytes b = {0};
    put_u32(&b, (uint32_t)elem_type);
    put_u64(&b, n);
    put_raw(&b, data, (size_t)n * elem);
    int rc = b.failed ? VB_ERR_NOMEM : add_kv(w, key, VB_GGUF_ARRAY, b.p, b.len);
    free(b.p);
    return rc;
}

int vb_gguf_writer_set_arr_str(vb_gguf_writer *w, const char *key, const char *const *strs,
                               const uint64_t *lens, uint64_t n) {
    if (!strs && n > 0) return VB_ERR_ARG;
    bytes b = {0};
    put_u32(&b, VB_GGUF_STRING);
    put_u64(&b, n);
    for (uint64_t i = 0; i < n && !b.failed; i++) {
        if (!strs[i]) {
            free(b.p);
            return VB_ERR_ARG;
        }
        uint64_t len = lens ? lens[i] : strlen(strs[i]);
        if (len > SIZE_MAX / 2) {
            free(b.p);
            return VB_ERR_ARG;
        }
        put_u64(&b, len);
        put_raw(&b, strs[i], (size_t)len);
    }
    int rc = b.failed ? VB_ERR_NOMEM : add_kv(w, key, VB_GGUF_ARRAY, b.p, b.len);
    free(b.p);
    return rc;
}

int vb_gguf_writer_copy_keys(vb_gguf_writer *w, const vb_gguf *src, const char *const *skip,
                             int n_skip) {
    if (!w || !src || (n_skip > 0 && !skip)) return VB_ERR_ARG;
    /* all or nothing: refuse before adding anything if a copied key already exists */
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < vb_gguf_n_keys(src); i++) {
            const vb_gguf_kv *kv = vb_gguf_kv_at(src, i);
            bool skipped = false;
            for (int s = 0; s < n_skip && !skipped; s++)
                skipped = skip[s] && strcmp(skip[s], kv->name) == 0;
            if (skipped) continue;
            if (pass == 0) {
                if (has_key(w, kv->name)) return VB_ERR_ARG;
                continue;
            }
            int rc = add_kv(w, kv->name, kv->type, kv->value, (size_t)kv->value_len);
            if (rc != VB_OK) return rc;
        }
    }
    return VB_OK;
}

/* ---- tensors ------------------------------------------------------------------------------ */

int vb_gguf_writer_add_tensor(vb_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                              const int64_t *ne, const void *data) {
    if (!w || !name || !*name || strlen(name) > 65535 || !ne || !data) return VB_ERR_ARG;
    if (n_dims < 1 || n_dims > VB_GGUF_MAX_DIMS) return VB_ERR_ARG;
    int64_t n_elems = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] <= 0 || ne[d] > INT64_MAX / n_elems) return VB_ERR_ARG;
        n_elems *= ne[d];
    }
    const vb_type_traits *tr = vb_type_get(type);
    if (!tr || ne[0] % tr->block_elems != 0) return VB_ERR_ARG;
    if (n_elems / tr->block_elems > INT64_MAX / tr->block_bytes) return VB_ERR_ARG; /* bytes overflow */
    int64_t row_bytes = vb_type_row_bytes(type, ne[0]);
    int64_t rows = n_elems / ne[0];
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0) return VB_ERR_ARG;
    if (w->n_tensors == w->cap_tensors) {
        size_t cap = w->cap_tensors ? 2 * w->cap_tensors : 64;
        writer_tensor *ts = realloc(w->tensors, cap * sizeof *ts);
        if (!ts) return VB_ERR_NOMEM;
        w->tensors = ts;
        w->cap_tensors = cap;
    }
    writer_tensor t = {0};
    t.name = strdup(name);
    if (!t.name) return VB_ERR_NOMEM;
    t.type = type;
    t.n_dims = n_dims;
    for (int d = 0; d < VB_GGUF_MAX_DIMS; d++) t.ne[d] = d < n_dims ? ne[d] : 1;
    t.nbytes = (uint64_t)(row_bytes * rows);
    t.data = data;
    w->tensors[w->n_tensors++] = t;
    return VB_OK;
}

/* ---- output ------------------------------------------------------------------------------- */

static uint64_t align_up(uint64_t x, uint32_t a) { return (x + a - 1) / a * a; }

static bool write_zeros(FILE *f, uint64_t n) {
    static const uint8_t zeros[4096];
    while (n > 0) {
        size_t k = n < sizeof zeros ? (size_t)n : sizeof zeros;
        if (fwrite(zeros, 1, k, f) != k) return false;
        n -= k;
    }
    return true;
}

/* Header, key/values and tensor infos, encoded. Tensor i's data goes at offsets[i] relative to
 * the data section. */
static int encode_header(const vb_gguf_writer *w, bytes *h) {
    put_raw(h, "GGUF", 4);
    put_u32(h, 3);
    put_u64(h, w->n_tensors);
    put_u64(h, w->n_kvs);
    for (size_t i = 0; i < w->n_kvs; i++) {
        const writer_kv *kv = &w->kvs[i];
        size_t len = strlen(kv->name);
        put_u64(h, len);
        put_raw(h, kv->name, len);
        put_u32(h, kv->type);
        put_raw(h, kv->value, kv->value_len);
    }
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        size_t len = strlen(t->name);
        put_u64(h, len);
        put_raw(h, t->name, len);
        put_u32(h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64(h, (uint64_t)t->ne[d]);
        put_u32(h, t->type);
        put_u64(h, offset);
        offset += align_up(t->nbytes, w->alignment);
    }
    return h->failed ? VB_ERR_NOMEM : VB_OK;
}

int vb_gguf_writer_write(vb_gguf_writer *w, const char *path, char *err, size_t err_len) {
    if (!w || !path) {
        if (err && err_len) snprintf(err, err_len, "gguf writer: writer or path is NULL");
        return VB_ERR_ARG;
    }
    bytes h = {0};
    if (encode_header(w, &h) != VB_OK) {
        free(h.p);
        if (err && err_len) snprintf(err, err_len, "gguf writer: out of memory");
        return VB_ERR_NOMEM;
    }
    size_t tmp_len = strlen(path) + 32;
    char *tmp = malloc(tmp_len);
    if (!tmp) {
        free(h.p);
        if (err && err_len) snprintf(err, err_len, "gguf writer: out of memory");
        return VB_ERR_NOMEM;
    }
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
    if (!f) {
        if (err && err_len) snprintf(err, err_len, "gguf writer: cannot create '%s': %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
        free(h.p);
        free(tmp);
        return VB_ERR_IO;
    }
    bool ok = fwrite(h.p, 1, h.len, f) == h.len;
    ok = ok && write_zeros(f, align_up(h.len, w->alignment) - h.len);
    for (size_t i = 0; ok && i < w->n_tensors; i++) {
        const writer_tensor *t = &w->tensors[i];
        ok = fwrite(t->data, 1, (size_t)t->nbytes, f) == t->nbytes;
        ok = ok && write_zeros(f, align_up(t->nbytes, w->alignment) - t->nbytes);
    }
    int saved_errno = errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        saved_errno = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        saved_errno = errno;
    }
    if (!ok) {
        if (err && err_len)
            snprintf(err, err_len, "gguf writer: cannot write '%s': %s", path, strerror(saved_errno));
        unlink(tmp);
    }
    free(h.p);
    free(tmp);
    return ok ? VB_OK : VB_ERR_IO;
}
