/* gguf_internal.h - what the GGUF reader (gguf.c) and writer (gguf_writer.c) share: the parsed
 * form of one metadata key/value pair and value-type helpers. Not part of the contract. */
#ifndef VB_GGUF_INTERNAL_H
#define VB_GGUF_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "gguf/gguf.h"

typedef struct vb_gguf_kv {
    char *name;              /* NUL-terminated copy */
    uint32_t type;           /* enum vb_gguf_vtype */
    const uint8_t *value;    /* [value_len] the encoded value in the file, after its type field */
    uint64_t value_len;
    uint32_t arr_type;       /* arrays: element type */
    uint64_t arr_n;          /* arrays: element count */
    const uint8_t *arr_data; /* arrays: first element (packed, little-endian, maybe unaligned) */
    uint64_t *str_offsets;   /* [arr_n] string arrays: offset of string i from arr_data */
} vb_gguf_kv;

/* Key/value pair idx of an open file; NULL if idx is out of range. */
const vb_gguf_kv *vb_gguf_kv_at(const vb_gguf *g, int64_t idx);
/* Encoded size of a fixed-size value type; 0 for string, array and unknown types. */
size_t vb_gguf_vtype_size(uint32_t vtype);
/* "uint8", "string", ...; "unknown" for ids outside the enum. */
const char *vb_gguf_vtype_name(uint32_t vtype);

#endif
