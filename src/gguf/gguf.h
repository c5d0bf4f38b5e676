/* gguf.h - GGUF (v2, v3) reader and writer. The reader validates everything it reads (magic,
 * version, counts, string lengths, value types, array sizes, tensor dims, types, offsets,
 * alignment, sizes against the file) and never reads out of bounds; errors name the problem.
 * Tensor data is used in place (mmap or caller memory). */
#ifndef VB_GGUF_H
#define VB_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vb_gguf_vtype {
    VB_GGUF_UINT8 = 0, VB_GGUF_INT8 = 1, VB_GGUF_UINT16 = 2, VB_GGUF_INT16 = 3,
    VB_GGUF_UINT32 = 4, VB_GGUF_INT32 = 5, VB_GGUF_FLOAT32 = 6, VB_GGUF_BOOL = 7,
    VB_GGUF_STRING = 8, VB_GGUF_ARRAY = 9, VB_GGUF_UINT64 = 10, VB_GGUF_INT64 = 11,
    VB_GGUF_FLOAT64 = 12,
};

#define VB_GGUF_MAX_DIMS 4

typedef struct vb_gguf_tensor {
    const char *name;        /* NUL-terminated copy owned by the vb_gguf */
    uint32_t type;           /* enum vb_type */
    int32_t n_dims;
    int64_t ne[VB_GGUF_MAX_DIMS]; /* ne[0] fastest-varying; unused dims are 1 */
    int64_t n_elems;
    uint64_t offset;         /* relative to the data section */
    uint64_t nbytes;
    const void *data;        /* points into the mapped file / memory */
} vb_gguf_tensor;

typedef struct vb_gguf vb_gguf;

/* Open a file (mmap when use_mmap, else read into memory). Returns VB_OK, VB_ERR_IO,
 * VB_ERR_FORMAT, VB_ERR_NOMEM; on error *out = NULL and err holds the reason. */
int vb_gguf_open(const char *path, bool use_mmap, vb_gguf **out, char *err, size_t err_len);
/* Parse a caller-owned memory image (must outlive the vb_gguf). An image whose address is not
 * a multiple of 8 is parsed from an aligned copy (owned by the vb_gguf): tensor data is always
 * 8-byte aligned (the reader requires general.alignment to be a power of two >= 8). */
int vb_gguf_open_memory(const void *data, size_t size, vb_gguf **out, char *err, size_t err_len);
void vb_gguf_close(vb_gguf *g); /* NULL ignored */
/* The bytes [p, p + n) of g's tensor data will not be read again soon (a backend keeps its own
 * repacked copy): when g maps its file, the whole pages inside the range leave memory (a later
 * read brings them back from the file); a malloc'd copy or caller memory is left alone. Returns
 * the bytes released. */
size_t vb_gguf_release_pages(const vb_gguf *g, const void *p, size_t n);

uint32_t vb_gguf_version(const vb_gguf *g);
uint32_t vb_gguf_alignment(const vb_gguf *g);

/* Metadata. Keys are indexed 0..n_keys-1. */
int64_t vb_gguf_n_keys(const vb_gguf *g);
int64_t vb_gguf_find_key(const vb_gguf *g, const char *key); /* -1 if absent */
const char *vb_gguf_key_name(const vb_gguf *g, int64_t idx);
int vb_gguf_key_type(const vb_gguf *g, int64_t idx);          /* enum vb_gguf_vtype, -1 bad idx */

/* Typed getters by key name: return true and set *out if the key exists and its value can be
 * represented exactly in the requested type (any integer type to int64/uint32/int32 within
 * range; float32/float64 to float/double); false otherwise (*out untouched). */
bool vb_gguf_get_i64(const vb_gguf *g, const char *key, int64_t *out);
bool vb_gguf_get_u32(const vb_gguf *g, const char *key, uint32_t *out);
bool vb_gguf_get_i32(const vb_gguf *g, const char *key, int32_t *out);
bool vb_gguf_get_f32(const vb_gguf *g, const char *key, float *out);
bool vb_gguf_get_bool(const vb_gguf *g, const char *key, bool *out);
/* String value: pointer to bytes inside the file (NOT NUL-terminated) and its length. */
bool vb_gguf_get_str(const vb_gguf *g, const char *key, const char **s, uint64_t *len);

/* Arrays: element type and count. For numeric arrays *data points to the packed little-endian
 * elements in the file (may be unaligned: memcpy). */
bool vb_gguf_get_arr(const vb_gguf *g, const char *key, int *elem_type, uint64_t *n,
                     const void **data);
/* i-th string of a string array (bytes in file, not NUL-terminated). false if out of range. */
bool vb_gguf_get_arr_str(const vb_gguf *g, const char *key, uint64_t i, const char **s,
                         uint64_t *len);

/* Value of any key formatted as text (arrays summarised as "[type x n]"). Returns bytes
 * written (excl. NUL) or a negative status. */
int vb_gguf_value_to_text(const vb_gguf *g, int64_t idx, char *buf, size_t buf_len);

/* Tensors. */
int64_t vb_gguf_n_tensors(const vb_gguf *g);
const vb_gguf_tensor *vb_gguf_tensor_at(const vb_gguf *g, int64_t i);
const vb_gguf_tensor *vb_gguf_find_tensor(const vb_gguf *g, const char *name); /* NULL absent */

/* ---- writer (GGUF v3) ---- */
typedef struct vb_gguf_writer vb_gguf_writer;
vb_gguf_writer *vb_gguf_writer_init(void); /* NULL on OOM */
void vb_gguf_writer_free(vb_gguf_writer *w);
/* Each returns VB_OK or a negative status (VB_ERR_ARG on duplicate key/tensor). */
int vb_gguf_writer_set_u32(vb_gguf_writer *w, const char *key, uint32_t v);
int vb_gguf_writer_set_i32(vb_gguf_writer *w, const char *key, int32_t v);
int vb_gguf_writer_set_f32(vb_gguf_writer *w, const char *key, float v);
int vb_gguf_writer_set_bool(vb_gguf_writer *w, const char *key, bool v);
int vb_gguf_writer_set_str(vb_gguf_writer *w, const char *key, const char *s);
/* Numeric array (data copied): elem_type in enum vb_gguf_vtype. */
int vb_gguf_writer_set_arr(vb_gguf_writer *w, const char *key, int elem_type, const void *data,
                           uint64_t n);
int vb_gguf_writer_set_arr_str(vb_gguf_writer *w, const char *key, const char *const *strs,
                               const uint64_t *lens, uint64_t n);
/* Copy every key of src (except those named in skip[], n_skip entries) into w. */
int vb_gguf_writer_copy_keys(vb_gguf_writer *w, const vb_gguf *src, const char *const *skip,
                             int n_skip);
/* Tensor: data (nbytes = vb_type_row_bytes(type, ne0) * rows) is referenced, not copied: it
 * must stay valid until vb_gguf_writer_write returns. */
int vb_gguf_writer_add_tensor(vb_gguf_writer *w, const char *name, uint32_t type, int n_dims,
                              const int64_t *ne, const void *data);
int vb_gguf_writer_write(vb_gguf_writer *w, const char *path, char *err, size_t err_len);

#endif
