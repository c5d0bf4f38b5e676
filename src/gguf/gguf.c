/* gguf.c - GGUF (v2, v3) reader. Parses the header, the metadata key/value pairs (every value
 * type, nested arrays up to GGUF_MAX_ARRAY_DEPTH) and the tensor infos of a file image held in
 * memory (mmap, a malloc'd copy, or caller memory), checking every length against the bytes that
 * remain before reading them. Keys and tensors are indexed by hash tables; tensor data is used in
 * place. The writer lives in gguf_writer.c; gguf_internal.h is what the two share. */
#include "gguf/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gguf/gguf_internal.h"
#include "types.h"
#include "vibee.h"

#define GGUF_MAGIC "GGUF"
#define GGUF_DEFAULT_ALIGNMENT 32u
#define GGUF_MIN_ALIGNMENT 8u /* the spec: "must be a multiple of 8" */
#define GGUF_MAX_NAME_LEN 65535u    /* key / tensor name length limit (the spec's key limit) */
#define GGUF_MAX_ARRAY_DEPTH 8      /* arrays of arrays nest at most this deep */
#define GGUF_MIN_KV_BYTES 13u       /* key length (8) + value type (4) + smallest value (1) */
#define GGUF_MIN_TENSOR_BYTES 32u   /* name length (8) + n_dims (4) + ne[0] (8) + type (4) + offset (8) */
#define GGUF_MIN_NESTED_BYTES 12u   /* an element of an array of arrays: type (4) + count (8) */

struct vb_gguf {
    const uint8_t *base; /* [size] the whole file image */
    size_t size;
    void *mapping;       /* mmap'd region (munmap on close) or NULL */
    size_t mapping_len;
    void *owned;         /* malloc'd file copy (free on close) or NULL */

    uint32_t version;
    uint32_t alignment;
    uint64_t data_start; /* file offset of the (aligned) tensor data section */

    int64_t n_keys;
    vb_gguf_kv *keys;    /* [n_keys] */
    uint32_t *key_slots; /* [key_cap] hash slot -> key index + 1 (0 = empty) */
    uint32_t key_cap;

    int64_t n_tensors;
    vb_gguf_tensor *tensors; /* [n_tensors] */
    uint32_t *tensor_slots;  /* [tensor_cap] hash slot -> tensor index + 1 (0 = empty) */
    uint32_t tensor_cap;
};

/* ---- small helpers ---------------------------------------------------------------------- */

static void set_err(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t err_len, const char *fmt, ...) {
    if (!err || err_len == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
}

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd_u32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static uint64_t rd_u64(const uint8_t *p) { return (uint64_t)rd_u32(p) | ((uint64_t)rd_u32(p + 4) << 32); }

static uint64_t hash_bytes(const char *s, size_t n) { /* FNV-1a */
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

#define GGUF_MAX_ENTRIES (1 << 30) /* keys or tensors per file */

/* Smallest power of two >= 2 * n (and >= 8): hash tables stay at most half full.
 * n <= GGUF_MAX_ENTRIES. */
static uint32_t table_capacity(int64_t n) {
    uint32_t cap = 8;
    while ((int64_t)cap < 2 * n) cap <<= 1;
    return cap;
}

size_t vb_gguf_vtype_size(uint32_t vtype) {
    switch (vtype) {
    case VB_GGUF_UINT8: case VB_GGUF_INT8: case VB_GGUF_BOOL: return 1;
    case VB_GGUF_UINT16: case VB_GGUF_INT16: return 2;
    case VB_GGUF_UINT32: case VB_GGUF_INT32: case VB_GGUF_FLOAT32: return 4;
    case VB_GGUF_UINT64: case VB_GGUF_INT64: case VB_GGUF_FLOAT64: return 8;
    default: return 0; /* string, array, unknown: not fixed-size */
    }
}

const char *vb_gguf_vtype_name(uint32_t vtype) {
    static const char *const names[] = {"uint8", "int8", "uint16", "int16", "uint32", "int32",
                                        "float32", "bool", "string", "array", "uint64", "int64",
                                        "float64"};
    return vtype < sizeof names / sizeof names[0] ? names[vtype] : "unknown";
}

/* ---- bounds-checked cursor -------------------------------------------------------------- */

typedef struct {
    const uint8_t *base; /* [size] */
    size_t size;
    size_t pos;
    char *err;
    size_t err_len;
} cursor;

static size_t remaining(const cursor *c) { return c->size - c->pos; }

/* True if n more bytes can be read; otherwise records a truncation error naming `what`. */
static bool need(cursor *c, uint64_t n, const char *what) {
    if (n <= remaining(c)) return true;
    set_err(c->err, c->err_len,
            "gguf: truncated file: %s needs %llu bytes at offset %zu but only %zu remain", what,
            (unsigned long long)n, c->pos, remaining(c));
    return false;
}

static bool read_u32(cursor *c, uint32_t *v, const char *what) {
    if (!need(c, 4, what)) return false;
    *v = rd_u32(c->base + c->pos);
    c->pos += 4;
    return true;
}

static bool read_u64(cursor *c, uint64_t *v, const char *what) {
    if (!need(c, 8, what)) return false;
    *v = rd_u64(c->base + c->pos);
    c->pos += 8;
    return true;
}

/* A GGUF string: u64 length, then bytes. Sets *s (into the image) and *len. */
static bool read_string(cursor *c, const char **s, uint64_t *len, const char *what) {
    uint64_t n;
    if (!read_u64(c, &n, what)) return false;
    if (n > remaining(c)) {
        set_err(c->err, c->err_len,
                "gguf: %s: string length %llu at offset %zu exceeds the %zu bytes left in the file",
                what, (unsigned long long)n, c->pos - 8, remaining(c));
        return false;
    }
    *s = (const char *)(c->base + c->pos);
    *len = n;
    c->pos += (size_t)n;
    return true;
}

/* A key or tensor name: non-empty, at most GGUF_MAX_NAME_LEN bytes, no NUL; returns a malloc'd
 * NUL-terminated copy in *out. Returns a vb_status. */
static int read_name(cursor *c, const char *what, char **out) {
    const char *s;
    uint64_t len;
    if (!read_string(c, &s, &len, what)) return VB_ERR_FORMAT;
    if (len == 0 || len > GGUF_MAX_NAME_LEN || memchr(s, 0, (size_t)len)) {
        set_err(c->err, c->err_len, "gguf: %s at offset %zu is %s", what, c->pos - (size_t)len - 8,
                len == 0 ? "empty" : len > GGUF_MAX_NAME_LEN ? "longer than 65535 bytes"
                                                              : "contains a NUL byte");
        return VB_ERR_FORMAT;
    }
    char *copy = malloc((size_t)len + 1);
    if (!copy) {
        set_err(c->err, c->err_len, "gguf: out of memory");
        return VB_ERR_NOMEM;
    }
    memcpy(copy, s, (size_t)len);
    copy[len] = '\0';
    *out = copy;
    return VB_OK;
}

/* Skips one value of type vtype (after its type field), checking every length. `key` names the
 * value in messages; depth counts array nesting. */
static bool skip_value(cursor *c, uint32_t vtype, const char *key, int depth) {
    size_t fixed = vb_gguf_vtype_size(vtype);
    if (fixed) {
        if (need(c, fixed, "a metadata value")) {
            c->pos += fixed;
            return true;
        }
        set_err(c->err, c->err_len, "gguf: key '%.200s': value of type %s truncated at offset %zu",
                key, vb_gguf_vtype_name(vtype), c->pos);
        return false;
    }
    if (vtype == VB_GGUF_STRING) {
        const char *s;
        uint64_t len;
        char what[256];
        snprintf(what, sizeof what, "key '%.200s': string value", key);
        return read_string(c, &s, &len, what);
    }
    if (vtype != VB_GGUF_ARRAY) {
        set_err(c->err, c->err_len, "gguf: key '%.200s': unknown value type %u at offset %zu", key,
                vtype, c->pos - 4);
        return false;
    }
    if (depth >= GGUF_MAX_ARRAY_DEPTH) {
        set_err(c->err, c->err_len, "gguf: key '%.200s': arrays nested deeper than %d", key,
                GGUF_MAX_ARRAY_DEPTH);
        return false;
    }
    uint32_t elem_type;
    uint64_t n;
    size_t header_pos = c->pos;
    if (!need(c, 12, "an array header")) {
        set_err(c->err, c->err_len, "gguf: key '%.200s': array header truncated at offset %zu", key,
                c->pos);
        return false;
    }
    read_u32(c, &elem_type, "array element type");
    read_u64(c, &n, "array count");
    size_t elem_fixed = vb_gguf_vtype_size(elem_type);
    /* Smallest encoded size of one element: bounds the count before any loop runs. */
    size_t elem_min = elem_fixed ? elem_fixed
                      : elem_type == VB_GGUF_STRING ? 8
                      : elem_type == VB_GGUF_ARRAY  ? GGUF_MIN_NESTED_BYTES
                                                    : 0;
    if (elem_min == 0) {
        set_err(c->err, c->err_len,
                "gguf: key '%.200s': array at offset %zu has unknown element type %u", key,
                header_pos, elem_type);
        return false;
    }
    if (n > remaining(c) / elem_min) {
        set_err(c->err, c->err_len,
                "gguf: key '%.200s': array of %llu %s elements (at least %llu bytes each) exceeds "
                "the %zu bytes left in the file",
                key, (unsigned long long)n, vb_gguf_vtype_name(elem_type),
                (unsigned long long)elem_min, remaining(c));
        return false;
    }
    if (elem_fixed) {
        c->pos += (size_t)n * elem_fixed;
        return true;
    }
    for (uint64_t i = 0; i < n; i++) /* strings, or arrays each with their own header */
        if (!skip_value(c, elem_type, key, depth + 1)) return false;
    return true;
}

/* ---- hash tables ------------------------------------------------------------------------ */

static int64_t key_lookup(const vb_gguf *g, const char *name, size_t len, uint64_t h) {
    if (!g->key_slots) return -1;
    for (uint32_t i = (uint32_t)h & (g->key_cap - 1);; i = (i + 1) & (g->key_cap - 1)) {
        uint32_t slot = g->key_slots[i];
        if (slot == 0) return -1;
        const char *k = g->keys[slot - 1].name;
        if (strncmp(k, name, len) == 0 && k[len] == '\0') return (int64_t)slot - 1;
    }
}

static int64_t tensor_lookup(const vb_gguf *g, const char *name, size_t len, uint64_t h) {
    if (!g->tensor_slots) return -1;
    for (uint32_t i = (uint32_t)h & (g->tensor_cap - 1);; i = (i + 1) & (g->tensor_cap - 1)) {
        uint32_t slot = g->tensor_slots[i];
        if (slot == 0) return -1;
        const char *k = g->tensors[slot - 1].name;
        if (strncmp(k, name, len) == 0 && k[len] == '\0') return (int64_t)slot - 1;
    }
}

static void slot_insert(uint32_t *slots, uint32_t cap, uint64_t h, uint32_t index) {
    uint32_t i = (uint32_t)h & (cap - 1);
    while (slots[i] != 0) i = (i + 1) & (cap - 1);
    slots[i] = index + 1;
}

/* ---- parsing ---------------------------------------------------------------------------- */

/* Parses one key/value pair at the cursor into *kv (name already read). */
static int parse_value(cursor *c, vb_gguf_kv *kv) {
    const char *key = kv->name;
    size_t value_pos = c->pos;
    kv->value = c->base + value_pos;
    if (kv->type == VB_GGUF_ARRAY) {
        if (!need(c, 12, "an array header")) {
            set_err(c->err, c->err_len, "gguf: key '%.200s': array header truncated at offset %zu",
                    key, c->pos);
            return VB_ERR_FORMAT;
        }
        kv->arr_type = rd_u32(c->base + c->pos);
        kv->arr_n = rd_u64(c->base + c->pos + 4);
        kv->arr_data = c->base + c->pos + 12;
    }
    if (!skip_value(c, kv->type, key, 0)) return VB_ERR_FORMAT;
    kv->value_len = c->pos - value_pos;
    if (kv->type == VB_GGUF_ARRAY && kv->arr_type == VB_GGUF_STRING && kv->arr_n > 0) {
        /* Index the strings (already bounds-checked by skip_value) for O(1) access. */
        kv->str_offsets = malloc((size_t)kv->arr_n * sizeof *kv->str_offsets);
        if (!kv->str_offsets) {
            set_err(c->err, c->err_len, "gguf: out of memory indexing key '%.200s'", key);
            return VB_ERR_NOMEM;
        }
        uint64_t off = 0;
        for (uint64_t i = 0; i < kv->arr_n; i++) {
            kv->str_offsets[i] = off;
            off += 8 + rd_u64(kv->arr_data + off);
        }
    }
    return VB_OK;
}

static int parse_keys(vb_gguf *g, cursor *c, uint64_t n_keys) {
    if (n_keys > remaining(c) / GGUF_MIN_KV_BYTES || n_keys > GGUF_MAX_ENTRIES) {
        set_err(c->err, c->err_len,
                "gguf: key count %llu does not fit in the %zu bytes left after the header "
                "(truncated file or corrupt count)",
                (unsigned long long)n_keys, remaining(c));
        return VB_ERR_FORMAT;
    }
    g->keys = calloc(n_keys ? (size_t)n_keys : 1, sizeof *g->keys);
    g->key_cap = table_capacity((int64_t)n_keys);
    g->key_slots = calloc(g->key_cap, sizeof *g->key_slots);
    if (!g->keys || !g->key_slots) {
        set_err(c->err, c->err_len, "gguf: out of memory for %llu keys", (unsigned long long)n_keys);
        return VB_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < n_keys; i++) {
        vb_gguf_kv *kv = &g->keys[i];
        char what[64];
        snprintf(what, sizeof what, "name of key #%llu", (unsigned long long)i);
        int rc = read_name(c, what, &kv->name);
        if (rc != VB_OK) return rc;
        g->n_keys = (int64_t)i + 1; /* owns kv->name from here on */
        size_t len = strlen(kv->name);
        uint64_t h = hash_bytes(kv->name, len);
        if (key_lookup(g, kv->name, len, h) >= 0) {
            set_err(c->err, c->err_len, "gguf: duplicate key '%.200s'", kv->name);
            return VB_ERR_FORMAT;
        }
        if (!read_u32(c, &kv->type, "a value type")) {
            set_err(c->err, c->err_len, "gguf: key '%.200s': value type truncated at offset %zu",
                    kv->name, c->pos);
            return VB_ERR_FORMAT;
        }
        rc = parse_value(c, kv);
        if (rc != VB_OK) return rc;
        slot_insert(g->key_slots, g->key_cap, h, (uint32_t)i);
    }
    return VB_OK;
}

/* general.alignment: optional; an integer power of two (fitting uint32) of at least 8, as the
 * GGUF spec requires ("must be a multiple of 8"): with the image's base aligned to it (see
 * vb_gguf_open_memory), every tensor's data is then aligned for its element loads. */
static int read_alignment(vb_gguf *g, cursor *c) {
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    int64_t idx = vb_gguf_find_key(g, "general.alignment");
    if (idx < 0) return VB_OK;
    int64_t v;
    if (!vb_gguf_get_i64(g, "general.alignment", &v)) {
        set_err(c->err, c->err_len, "gguf: key 'general.alignment' has type %s, expected uint32",
                vb_gguf_vtype_name(g->keys[idx].type));
        return VB_ERR_FORMAT;
    }
    if (v < GGUF_MIN_ALIGNMENT || v > (int64_t)UINT32_MAX || (v & (v - 1)) != 0) {
        set_err(c->err, c->err_len,
                "gguf: general.alignment = %lld is not a power of two of at least 8",
                (long long)v);
        return VB_ERR_FORMAT;
    }
    g->alignment = (uint32_t)v;
    return VB_OK;
}

static int parse_tensor_info(vb_gguf *g, cursor *c, int64_t i) {
    vb_gguf_tensor *t = &g->tensors[i];
    char what[64];
    snprintf(what, sizeof what, "name of tensor #%lld", (long long)i);
    char *name = NULL;
    int rc = read_name(c, what, &name);
    if (rc != VB_OK) return rc;
    t->name = name;
    g->n_tensors = i + 1; /* owns t->name from here on */
    size_t len = strlen(name);
    if (tensor_lookup(g, name, len, hash_bytes(name, len)) >= 0) {
        set_err(c->err, c->err_len, "gguf: duplicate tensor name '%.200s'", name);
        return VB_ERR_FORMAT;
    }
    uint32_t n_dims;
    if (!read_u32(c, &n_dims, "tensor n_dims")) goto truncated;
    if (n_dims < 1 || n_dims > VB_GGUF_MAX_DIMS) {
        set_err(c->err, c->err_len, "gguf: tensor '%.200s': n_dims = %u (must be 1..%d)", name,
                n_dims, VB_GGUF_MAX_DIMS);
        return VB_ERR_FORMAT;
    }
    t->n_dims = (int32_t)n_dims;
    int64_t n_elems = 1;
    for (int d = 0; d < VB_GGUF_MAX_DIMS; d++) t->ne[d] = 1;
    for (uint32_t d = 0; d < n_dims; d++) {
        uint64_t ne;
        if (!read_u64(c, &ne, "tensor dimension")) goto truncated;
        if (ne == 0 || ne > (uint64_t)INT64_MAX) {
            set_err(c->err, c->err_len, "gguf: tensor '%.200s': ne[%u] = %llu is out of range", name,
                    d, (unsigned long long)ne);
            return VB_ERR_FORMAT;
        }
        if ((int64_t)ne > INT64_MAX / n_elems) {
            set_err(c->err, c->err_len,
                    "gguf: tensor '%.200s': element count overflows (ne[%u] = %llu)", name, d,
                    (unsigned long long)ne);
            return VB_ERR_FORMAT;
        }
        t->ne[d] = (int64_t)ne;
        n_elems *= (int64_t)ne;
    }
    t->n_elems = n_elems;
    if (!read_u32(c, &t->type, "tensor type")) goto truncated;
    const vb_type_traits *tr = vb_type_get(t->type);
    if (!tr) {
        set_err(c->err, c->err_len, "gguf: tensor '%.200s': unknown tensor type %u", name, t->type);
        return VB_ERR_FORMAT;
    }
    if (t->ne[0] % tr->block_elems != 0) {
        set_err(c->err, c->err_len,
                "gguf: tensor '%.200s': ne[0] = %lld is not a multiple of the %s block size %d",
                name, (long long)t->ne[0], tr->name, tr->block_elems);
        return VB_ERR_FORMAT;
    }
    /* total bytes = n_elems / block_elems * block_bytes must fit int64 (checked before
     * vb_type_row_bytes multiplies) */
    int64_t rows = n_elems / t->ne[0];
    if (n_elems / tr->block_elems > INT64_MAX / tr->block_bytes) {
        set_err(c->err, c->err_len, "gguf: tensor '%.200s': byte size overflows", name);
        return VB_ERR_FORMAT;
    }
    t->nbytes = (uint64_t)(vb_type_row_bytes(t->type, t->ne[0]) * rows);
    if (!read_u64(c, &t->offset, "tensor offset")) goto truncated;
    if (t->offset % g->alignment != 0) {
        set_err(c->err, c->err_len,
                "gguf: tensor '%.200s': data offset %llu is not a multiple of the alignment %u",
                name, (unsigned long long)t->offset, g->alignment);
        return VB_ERR_FORMAT;
    }
    slot_insert(g->tensor_slots, g->tensor_cap, hash_bytes(name, len), (uint32_t)i);
    return VB_OK;
truncated:
    set_err(c->err, c->err_len, "gguf: tensor '%.200s': info truncated at offset %zu (file size %zu)",
            name, c->pos, c->size);
    return VB_ERR_FORMAT;
}

static int compare_by_offset(const void *a, const void *b) {
    const vb_gguf_tensor *x = *(const vb_gguf_tensor *const *)a, *y = *(const vb_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Places every tensor's data inside the file and checks that no two overlap. */
static int place_tensor_data(vb_gguf *g, cursor *c) {
    for (int64_t i = 0; i < g->n_tensors; i++) {
        vb_gguf_tensor *t = &g->tensors[i];
        uint64_t start = g->data_start + t->offset; /* both < 2^63 + size: cannot wrap */
        if (t->offset > (uint64_t)c->size || start > (uint64_t)c->size ||
            t->nbytes > (uint64_t)c->size - start) {
            set_err(c->err, c->err_len,
                    "gguf: tensor '%.200s': data [offset %llu, %llu bytes] extends past end of "
                    "file (size %zu)",
                    t->name, (unsigned long long)(t->offset > (uint64_t)c->size ? t->offset : start),
                    (unsigned long long)t->nbytes, c->size);
            return VB_ERR_FORMAT;
        }
        t->data = c->base + start;
    }
    if (g->n_tensors < 2) return VB_OK;
    const vb_gguf_tensor **order = malloc((size_t)g->n_tensors * sizeof *order);
    if (!order) {
        set_err(c->err, c->err_len, "gguf: out of memory");
        return VB_ERR_NOMEM;
    }
    for (int64_t i = 0; i < g->n_tensors; i++) order[i] = &g->tensors[i];
    qsort(order, (size_t)g->n_tensors, sizeof *order, compare_by_offset);
    int rc = VB_OK;
    for (int64_t i = 1; i < g->n_tensors; i++) {
        const vb_gguf_tensor *a = order[i - 1], *b = order[i];
        if (b->offset < a->offset + a->nbytes) {
            set_err(c->err, c->err_len,
                    "gguf: tensors '%.200s' [offset %llu, %llu bytes] and '%.200s' [offset %llu] "
                    "overlap",
                    a->name, (unsigned long long)a->offset, (unsigned long long)a->nbytes, b->name,
                    (unsigned long long)b->offset);
            rc = VB_ERR_FORMAT;
            break;
        }
    }
    free(order);
    return rc;
}

static int parse(vb_gguf *g, char *err, size_t err_len) {
    cursor c = {g->base, g->size, 0, err, err_len};
    if (g->size < 4 || memcmp(g->base, GGUF_MAGIC, 4) != 0) {
        set_err(err, err_len, "gguf: bad magic (not a GGUF file)");
        return VB_ERR_FORMAT;
    }
    c.pos = 4;
    if (!read_u32(&c, &g->version, "the version")) return VB_ERR_FORMAT;
    if (g->version == 1) {
        set_err(err, err_len,
                "gguf: version 1 is not supported (GGUF v1 uses 32-bit lengths; re-convert the "
                "model to GGUF v3)");
        return VB_ERR_FORMAT;
    }
    if (g->version != 2 && g->version != 3) {
        if ((g->version & 0xffff) == 0 && g->version != 0)
            set_err(err, err_len, "gguf: version field 0x%08x looks big-endian; only "
                                  "little-endian GGUF is supported", g->version);
        else
            set_err(err, err_len, "gguf: unsupported version %u (supported: 2, 3)", g->version);
        return VB_ERR_FORMAT;
    }
    uint64_t n_tensors, n_keys;
    if (!read_u64(&c, &n_tensors, "the tensor count")) return VB_ERR_FORMAT;
    if (!read_u64(&c, &n_keys, "the key count")) return VB_ERR_FORMAT;
    if (n_tensors > remaining(&c) / GGUF_MIN_TENSOR_BYTES || n_tensors > GGUF_MAX_ENTRIES) {
        set_err(err, err_len,
                "gguf: tensor count %llu does not fit in the %zu bytes left after the header "
                "(truncated file or corrupt count)",
                (unsigned long long)n_tensors, remaining(&c));
        return VB_ERR_FORMAT;
    }
    int rc = parse_keys(g, &c, n_keys);
    if (rc != VB_OK) return rc;
    rc = read_alignment(g, &c);
    if (rc != VB_OK) return rc;
    if (n_tensors > remaining(&c) / GGUF_MIN_TENSOR_BYTES) {
        set_err(err, err_len,
                "gguf: tensor count %llu does not fit in the %zu bytes left after the metadata "
                "(truncated file or corrupt count)",
                (unsigned long long)n_tensors, remaining(&c));
        return VB_ERR_FORMAT;
    }
    g->tensors = calloc(n_tensors ? (size_t)n_tensors : 1, sizeof *g->tensors);
    g->tensor_cap = table_capacity((int64_t)n_tensors);
    g->tensor_slots = calloc(g->tensor_cap, sizeof *g->tensor_slots);
    if (!g->tensors || !g->tensor_slots) {
        set_err(err, err_len, "gguf: out of memory for %llu tensors", (unsigned long long)n_tensors);
        return VB_ERR_NOMEM;
    }
    for (uint64_t i = 0; i < n_tensors; i++) {
        rc = parse_tensor_info(g, &c, (int64_t)i);
        if (rc != VB_OK) return rc;
    }
    g->data_start = ((uint64_t)c.pos + g->alignment - 1) / g->alignment * g->alignment;
    return place_tensor_data(g, &c);
}

/* ---- open / close ----------------------------------------------------------------------- */

static int open_image(vb_gguf *g, vb_gguf **out, char *err, size_t err_len) {
    int rc = parse(g, err, err_len);
    if (rc != VB_OK) {
        vb_gguf_close(g);
        return rc;
    }
    *out = g;
    return VB_OK;
}

int vb_gguf_open_memory(const void *data, size_t size, vb_gguf **out, char *err, size_t err_len) {
    if (!out) {
        set_err(err, err_len, "gguf: out is NULL");
        return VB_ERR_ARG;
    }
    *out = NULL;
    if (!data && size > 0) {
        set_err(err, err_len, "gguf: data is NULL");
        return VB_ERR_ARG;
    }
    vb_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        set_err(err, err_len, "gguf: out of memory");
        return VB_ERR_NOMEM;
    }
    g->base = data ? data : (const uint8_t *)"";
    g->size = size;
    int rc = parse(g, err, err_len);
    if (rc == VB_OK && (uintptr_t)g->base % GGUF_MIN_ALIGNMENT != 0) {
        /* tensor data would be misaligned for its element loads: parse an aligned copy */
        vb_gguf_close(g);
        void *copy = NULL;
        if (posix_memalign(&copy, 64, size ? size : 1) != 0) {
            set_err(err, err_len, "gguf: out of memory copying a %zu-byte image to aligned memory",
                    size);
            return VB_ERR_NOMEM;
        }
        memcpy(copy, data, size);
        g = calloc(1, sizeof *g);
        if (!g) {
            free(copy);
            set_err(err, err_len, "gguf: out of memory");
            return VB_ERR_NOMEM;
        }
        g->owned = copy;
        g->base = copy;
        g->size = size;
        rc = parse(g, err, err_len);
    }
    if (rc != VB_OK) {
        vb_gguf_close(g);
        return rc;
    }
    *out = g;
    return VB_OK;
}

int vb_gguf_open(const char *path, bool use_mmap, vb_gguf **out, char *err, size_t err_len) {
    if (!out || !path) {
        set_err(err, err_len, "gguf: path or out is NULL");
        return VB_ERR_ARG;
    }
    *out = NULL;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC); /* a FIFO must not block: refused below */
    if (fd < 0) {
        set_err(err, err_len, "gguf: cannot open '%s': %s", path, strerror(errno));
        return VB_ERR_IO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        set_err(err, err_len, "gguf: '%s' is not a regular file", path);
        close(fd);
        return VB_ERR_IO;
    }
    if ((uint64_t)st.st_size > (uint64_t)SIZE_MAX / 2) {
        set_err(err, err_len, "gguf: '%s' is too large to map", path);
        close(fd);
        return VB_ERR_IO;
    }
    size_t size = (size_t)st.st_size;
    vb_gguf *g = calloc(1, sizeof *g);
    if (!g) {
        close(fd);
        set_err(err, err_len, "gguf: out of memory");
        return VB_ERR_NOMEM;
    }
    if (size == 0) {
        g->base = (const uint8_t *)"";
    } else if (use_mmap) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            set_err(err, err_len, "gguf: cannot mmap '%s': %s", path, strerror(errno));
            close(fd);
            free(g);
            return VB_ERR_IO;
        }
        g->mapping = m;
        g->mapping_len = size;
        g->base = m;
    } else {
        void *buf = NULL;
        if (posix_memalign(&buf, 4096, size) != 0) {
            set_err(err, err_len, "gguf: out of memory reading '%s' (%zu bytes)", path, size);
            close(fd);
            free(g);
            return VB_ERR_NOMEM;
        }
        size_t done = 0;
        while (done < size) {
            ssize_t r = read(fd, (uint8_t *)buf + done, size - done);
            if (r < 0 && errno == EINTR) continue;
            if (r <= 0) {
                set_err(err, err_len, "gguf: cannot read '%s': %s", path,
                        r < 0 ? strerror(errno) : "unexpected end of file");
                close(fd);
                free(buf);
                free(g);
                return VB_ERR_IO;
            }
            done += (size_t)r;
        }
        g->owned = buf;
        g->base = buf;
    }
    close(fd);
    g->size = size;
    return open_image(g, out, err, err_len);
}

size_t vb_gguf_release_pages(const vb_gguf *g, const void *p, size_t n) {
    if (!g || !g->mapping || !p || n == 0) return 0;
    uintptr_t lo = (uintptr_t)g->mapping, hi = lo + g->mapping_len, a = (uintptr_t)p;
    if (a < lo || a >= hi || n > hi - a) return 0; /* not inside the file mapping */
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) return 0;
    uintptr_t first = (a + (uintptr_t)page - 1) / (uintptr_t)page * (uintptr_t)page;
    uintptr_t last = (a + n) / (uintptr_t)page * (uintptr_t)page; /* whole pages only */
    if (last <= first) return 0;
    /* a private read-only file mapping: dropped pages are read back from the file on access */
    if (madvise((void *)first, last - first, MADV_DONTNEED) != 0) return 0;
    return last - first;
}

void vb_gguf_close(vb_gguf *g) {
    if (!g) return;
    for (int64_t i = 0; i < g->n_keys; i++) {
        free(g->keys[i].name);
        free(g->keys[i].str_offsets);
    }
    for (int64_t i = 0; i < g->n_tensors; i++) free((char *)g->tensors[i].name);
    free(g->keys);
    free(g->key_slots);
    free(g->tensors);
    free(g->tensor_slots);
    if (g->mapping) munmap(g->mapping, g->mapping_len);
    free(g->owned);
    free(g);
}

/* ---- accessors -------------------------------------------------------------------------- */

uint32_t vb_gguf_version(const vb_gguf *g) { return g ? g->version : 0; }
uint32_t vb_gguf_alignment(const vb_gguf *g) { return g ? g->alignment : 0; }
int64_t vb_gguf_n_keys(const vb_gguf *g) { return g ? g->n_keys : 0; }

int64_t vb_gguf_find_key(const vb_gguf *g, const char *key) {
    if (!g || !key) return -1;
    size_t len = strlen(key);
    return key_lookup(g, key, len, hash_bytes(key, len));
}

const char *vb_gguf_key_name(const vb_gguf *g, int64_t idx) {
    return g && idx >= 0 && idx < g->n_keys ? g->keys[idx].name : NULL;
}

int vb_gguf_key_type(const vb_gguf *g, int64_t idx) {
    return g && idx >= 0 && idx < g->n_keys ? (int)g->keys[idx].type : -1;
}

const vb_gguf_kv *vb_gguf_kv_at(const vb_gguf *g, int64_t idx) {
    return g && idx >= 0 && idx < g->n_keys ? &g->keys[idx] : NULL;
}

static const vb_gguf_kv *find_kv(const vb_gguf *g, const char *key) {
    return vb_gguf_kv_at(g, vb_gguf_find_key(g, key));
}

/* Integer value of a scalar integer key as sign + magnitude. False for non-integer types. */
static bool kv_integer(const vb_gguf_kv *kv, bool *negative, uint64_t *magnitude) {
    const uint8_t *p = kv->value;
    int64_t s;
    switch (kv->type) {
    case VB_GGUF_UINT8: *negative = false; *magnitude = p[0]; return true;
    case VB_GGUF_UINT16: *negative = false; *magnitude = rd_u16(p); return true;
    case VB_GGUF_UINT32: *negative = false; *magnitude = rd_u32(p); return true;
    case VB_GGUF_UINT64: *negative = false; *magnitude = rd_u64(p); return true;
    case VB_GGUF_INT8: s = (int8_t)p[0]; break;
    case VB_GGUF_INT16: s = (int16_t)rd_u16(p); break;
    case VB_GGUF_INT32: s = (int32_t)rd_u32(p); break;
    case VB_GGUF_INT64: s = (int64_t)rd_u64(p); break;
    default: return false;
    }
    *negative = s < 0;
    *magnitude = s < 0 ? (uint64_t)0 - (uint64_t)s : (uint64_t)s;
    return true;
}

/* Integer value if it lies in [lo, hi]. */
static bool get_int_in(const vb_gguf *g, const char *key, int64_t lo, int64_t hi, int64_t *v) {
    const vb_gguf_kv *kv = find_kv(g, key);
    bool neg;
    uint64_t mag;
    if (!kv || !kv_integer(kv, &neg, &mag)) return false;
    if (neg) {
        if (mag > (uint64_t)INT64_MAX + 1) return false;
        int64_t x = mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag;
        if (x < lo) return false;
        *v = x;
    } else {
        if (mag > (uint64_t)hi) return false;
        *v = (int64_t)mag;
    }
    return true;
}

bool vb_gguf_get_i64(const vb_gguf *g, const char *key, int64_t *out) {
    int64_t v;
    if (!out || !get_int_in(g, key, INT64_MIN, INT64_MAX, &v)) return false;
    *out = v;
    return true;
}

bool vb_gguf_get_u32(const vb_gguf *g, const char *key, uint32_t *out) {
    int64_t v;
    if (!out || !get_int_in(g, key, 0, UINT32_MAX, &v)) return false;
    *out = (uint32_t)v;
    return true;
}

bool vb_gguf_get_i32(const vb_gguf *g, const char *key, int32_t *out) {
    int64_t v;
    if (!out || !get_int_in(g, key, INT32_MIN, INT32_MAX, &v)) return false;
    *out = (int32_t)v;
    return true;
}

/* float32 as is; float64 rounded to the nearest float, refused if finite but out of float range. */
bool vb_gguf_get_f32(const vb_gguf *g, const char *key, float *out) {
    const vb_gguf_kv *kv = find_kv(g, key);
    if (!kv || !out) return false;
    if (kv->type == VB_GGUF_FLOAT32) {
        uint32_t bits = rd_u32(kv->value);
        memcpy(out, &bits, 4);
        return true;
    }
    if (kv->type == VB_GGUF_FLOAT64) {
        uint64_t bits = rd_u64(kv->value);
        double d;
        memcpy(&d, &bits, 8);
        if (isfinite(d) && (d > FLT_MAX || d < -FLT_MAX)) return false;
        *out = (float)d;
        return true;
    }
    return false;
}

bool vb_gguf_get_bool(const vb_gguf *g, const char *key, bool *out) {
    const vb_gguf_kv *kv = find_kv(g, key);
    if (!kv || !out || kv->type != VB_GGUF_BOOL) return false;
    *out = kv->value[0] != 0;
    return true;
}

bool vb_gguf_get_str(const vb_gguf *g, const char *key, const char **s, uint64_t *len) {
    const vb_gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != VB_GGUF_STRING) return false;
    if (s) *s = (const char *)kv->value + 8;
    if (len) *len = rd_u64(kv->value);
    return true;
}

bool vb_gguf_get_arr(const vb_gguf *g, const char *key, int *elem_type, uint64_t *n,
                     const void **data) {
    const vb_gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != VB_GGUF_ARRAY) return false;
    if (elem_type) *elem_type = (int)kv->arr_type;
    if (n) *n = kv->arr_n;
    if (data) *data = kv->arr_data;
    return true;
}

bool vb_gguf_get_arr_str(const vb_gguf *g, const char *key, uint64_t i, const char **s,
                         uint64_t *len) {
    const vb_gguf_kv *kv = find_kv(g, key);
    if (!kv || kv->type != VB_GGUF_ARRAY || kv->arr_type != VB_GGUF_STRING || i >= kv->arr_n)
        return false;
    const uint8_t *p = kv->arr_data + kv->str_offsets[i];
    if (s) *s = (const char *)p + 8;
    if (len) *len = rd_u64(p);
    return true;
}

/* Appends to buf (NUL kept); returns false once the buffer is full. */
typedef struct { char *buf; size_t cap; size_t len; } text_out;

static void put_text(text_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put_text(text_out *o, const char *fmt, ...) {
    if (o->len + 1 >= o->cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

/* Scalars in decimal (floats with enough digits to round-trip), bool as true/false, strings with
 * control bytes, backslash and DEL escaped (\n, \t, \\, \xNN) so the text stays on one line,
 * arrays summarised as "[elemtype x n]". Output longer than the buffer is truncated. */
int vb_gguf_value_to_text(const vb_gguf *g, int64_t idx, char *buf, size_t buf_len) {
    const vb_gguf_kv *kv = vb_gguf_kv_at(g, idx);
    if (!kv || !buf || buf_len == 0) return VB_ERR_ARG;
    text_out o = {buf, buf_len, 0};
    buf[0] = '\0';
    bool neg;
    uint64_t mag;
    if (kv_integer(kv, &neg, &mag)) {
        put_text(&o, "%s%llu", neg ? "-" : "", (unsigned long long)mag);
    } else if (kv->type == VB_GGUF_FLOAT32) {
        float f;
        uint32_t bits = rd_u32(kv->value);
        memcpy(&f, &bits, 4);
        put_text(&o, "%.9g", (double)f);
    } else if (kv->type == VB_GGUF_FLOAT64) {
        double d;
        uint64_t bits = rd_u64(kv->value);
        memcpy(&d, &bits, 8);
        put_text(&o, "%.17g", d);
    } else if (kv->type == VB_GGUF_BOOL) {
        put_text(&o, "%s", kv->value[0] ? "true" : "false");
    } else if (kv->type == VB_GGUF_STRING) {
        uint64_t len = rd_u64(kv->value);
        const uint8_t *s = kv->value + 8;
        for (uint64_t i = 0; i < len && o.len + 1 < o.cap; i++) {
            uint8_t ch = s[i];
            if (ch == '\n') put_text(&o, "\\n");
            else if (ch == '\t') put_text(&o, "\\t");
            else if (ch == '\\') put_text(&o, "\\\\");
            else if (ch < 0x20 || ch == 0x7f) put_text(&o, "\\x%02x", ch);
            else put_text(&o, "%c", ch);
        }
    } else { /* array */
        put_text(&o, "[%s x %llu]", vb_gguf_vtype_name(kv->arr_type), (unsigned long long)kv->arr_n);
    }
    return (int)(o.len > (size_t)0x7fffffff ? 0x7fffffff : o.len);
}

int64_t vb_gguf_n_tensors(const vb_gguf *g) { return g ? g->n_tensors : 0; }

const vb_gguf_tensor *vb_gguf_tensor_at(const vb_gguf *g, int64_t i) {
    return g && i >= 0 && i < g->n_tensors ? &g->tensors[i] : NULL;
}

const vb_gguf_tensor *vb_gguf_find_tensor(const vb_gguf *g, const char *name) {
    if (!g || !name) return NULL;
    size_t len = strlen(name);
    int64_t i = tensor_lookup(g, name, len, hash_bytes(name, len));
    return i >= 0 ? &g->tensors[i] : NULL;
}
