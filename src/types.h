/* types.h - tensor element types (GGML numbering, as stored in GGUF files) and their traits:
 * block size in elements, bytes per block, name. Shared by the GGUF reader/writer and kernels. */
#ifndef VB_TYPES_H
#define VB_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum vb_type {
    VB_TYPE_F32 = 0,
    VB_TYPE_F16 = 1,
    VB_TYPE_Q4_0 = 2,
    VB_TYPE_Q4_1 = 3,
    VB_TYPE_Q5_0 = 6,
    VB_TYPE_Q5_1 = 7,
    VB_TYPE_Q8_0 = 8,
    VB_TYPE_Q8_1 = 9,
    VB_TYPE_Q2_K = 10,
    VB_TYPE_Q3_K = 11,
    VB_TYPE_Q4_K = 12,
    VB_TYPE_Q5_K = 13,
    VB_TYPE_Q6_K = 14,
    VB_TYPE_Q8_K = 15,
    VB_TYPE_IQ2_XXS = 16,
    VB_TYPE_IQ2_XS = 17,
    VB_TYPE_IQ3_XXS = 18,
    VB_TYPE_IQ1_S = 19,
    VB_TYPE_IQ4_NL = 20,
    VB_TYPE_IQ3_S = 21,
    VB_TYPE_IQ2_S = 22,
    VB_TYPE_IQ4_XS = 23,
    VB_TYPE_I8 = 24,
    VB_TYPE_I16 = 25,
    VB_TYPE_I32 = 26,
    VB_TYPE_I64 = 27,
    VB_TYPE_F64 = 28,
    VB_TYPE_IQ1_M = 29,
    VB_TYPE_BF16 = 30,
    VB_TYPE_TQ1_0 = 34,
    VB_TYPE_TQ2_0 = 35,
    VB_TYPE_MXFP4 = 39,
    VB_TYPE_NVFP4 = 40,
    VB_TYPE_Q1_0 = 41,
    VB_TYPE_Q2_0 = 42,
    VB_TYPE_COUNT = 43,
};

typedef struct vb_type_traits {
    const char *name;     /* "f32", "q8_0", ... ; NULL for unknown ids */
    int32_t block_elems;  /* elements per block (1 for plain types) */
    int32_t block_bytes;  /* bytes per block */
    bool supported;       /* vibee has kernels for it (dequantize + dot) */
} vb_type_traits;

/* Traits of a type id; NULL if the id is unknown (not a valid GGML type). */
const vb_type_traits *vb_type_get(uint32_t type);
/* Bytes of a row of n elements; -1 if n is not a multiple of the block size or type unknown. */
int64_t vb_type_row_bytes(uint32_t type, int64_t n);
/* Type id from a name ("q8_0", any case); -1 if unknown. */
int vb_type_from_name(const char *name);

/* Block layouts (GGML-compatible). */
#define VB_QK8_0 32
typedef struct { uint16_t d; int8_t qs[VB_QK8_0]; } vb_block_q8_0;              /* 34 bytes */
#define VB_QK4_0 32
typedef struct { uint16_t d; uint8_t qs[VB_QK4_0 / 2]; } vb_block_q4_0;         /* 18 bytes */
#define VB_QK_K 256
#define VB_K_SCALE_SIZE 12
typedef struct { uint16_t d; uint16_t dmin; uint8_t scales[VB_K_SCALE_SIZE]; uint8_t qs[VB_QK_K / 2]; } vb_block_q4_k; /* 144 */
typedef struct { uint8_t ql[VB_QK_K / 2]; uint8_t qh[VB_QK_K / 4]; int8_t scales[VB_QK_K / 16]; uint16_t d; } vb_block_q6_k; /* 210 */
typedef struct { float d; int8_t qs[VB_QK_K]; int16_t bsums[VB_QK_K / 16]; } vb_block_q8_k; /* 292 */
/* value d * q + m, q 0..15 (low nibbles: elements 0..15, high: 16..31) */
typedef struct { uint16_t d, m; uint8_t qs[16]; } vb_block_q4_1;                   /* 20 bytes */
/* q = nibble | (bit i of qh) << 4; Q5_0: value d * (q - 16); Q5_1: d * q + m */
typedef struct { uint16_t d; uint8_t qh[4]; uint8_t qs[16]; } vb_block_q5_0;       /* 22 bytes */
typedef struct { uint16_t d, m; uint8_t qh[4]; uint8_t qs[16]; } vb_block_q5_1;    /* 24 bytes */
/* 16 sub-blocks of 16: scale byte = 4-bit scale | 4-bit min << 4; q 2 bits;
 * value d * sc * q - dmin * m */
typedef struct { uint8_t scales[16]; uint8_t qs[64]; uint16_t d, dmin; } vb_block_q2_k; /* 84 */
/* 16 sub-blocks of 16, 6-bit scales (minus 32) packed in 12 bytes; q 2 low bits (qs) and a high
 * bit (hmask) clear meaning -4: value d * (sc - 32) * (q - 4 * !h) */
typedef struct { uint8_t hmask[32]; uint8_t qs[64]; uint8_t scales[12]; uint16_t d; } vb_block_q3_k; /* 110 */
/* Q4_K with a fifth bit per element in qh (bit j of qh[l]: element l of sub-block j) */
typedef struct { uint16_t d, dmin; uint8_t scales[VB_K_SCALE_SIZE]; uint8_t qh[32]; uint8_t qs[128]; } vb_block_q5_k; /* 176 */
/* value d * kvalues_iq4nl[nibble] (nibbles as Q4_0) */
typedef struct { uint16_t d; uint8_t qs[16]; } vb_block_iq4_nl;                    /* 18 bytes */
/* 8 sub-blocks of 32, 6-bit scales (4 low bits in scales_l, 2 high in scales_h) minus 32:
 * value d * (ls - 32) * kvalues_iq4nl[nibble] */
typedef struct { uint16_t d; uint16_t scales_h; uint8_t scales_l[4]; uint8_t qs[128]; } vb_block_iq4_xs; /* 136 */
/* The 16 non-linear levels of IQ4_NL / IQ4_XS. */
extern const int8_t vb_kvalues_iq4nl[16];

/* IEEE half and bfloat16 conversions (portable; exact round-to-nearest-even). */
float vb_f16_to_f32(uint16_t h);
uint16_t vb_f32_to_f16(float f);
float vb_bf16_to_f32(uint16_t h);
uint16_t vb_f32_to_bf16(float f);

#endif
