/* types.c - traits table of tensor element types and scalar float16/bfloat16 conversion. */
#include "types.h"

#include <string.h>
#include <strings.h>

static const vb_type_traits type_table[VB_TYPE_COUNT] = {
    [VB_TYPE_F32] = {"f32", 1, 4, true},
    [VB_TYPE_F16] = {"f16", 1, 2, true},
    [VB_TYPE_Q4_0] = {"q4_0", 32, 18, true},
    [VB_TYPE_Q4_1] = {"q4_1", 32, 20, true},
    [VB_TYPE_Q5_0] = {"q5_0", 32, 22, true},
    [VB_TYPE_Q5_1] = {"q5_1", 32, 24, true},
    [VB_TYPE_Q8_0] = {"q8_0", 32, 34, true},
    [VB_TYPE_Q8_1] = {"q8_1", 32, 36, false},
    [VB_TYPE_Q2_K] = {"q2_k", 256, 84, true},
    [VB_TYPE_Q3_K] = {"q3_k", 256, 110, true},
    [VB_TYPE_Q4_K] = {"q4_k", 256, 144, true},
    [VB_TYPE_Q5_K] = {"q5_k", 256, 176, true},
    [VB_TYPE_Q6_K] = {"q6_k", 256, 210, true},
    [VB_TYPE_Q8_K] = {"q8_k", 256, 292, false},
    [VB_TYPE_IQ2_XXS] = {"iq2_xxs", 256, 66, false},
    [VB_TYPE_IQ2_XS] = {"iq2_xs", 256, 74, false},
    [VB_TYPE_IQ3_XXS] = {"iq3_xxs", 256, 98, false},
    [VB_TYPE_IQ1_S] = {"iq1_s", 256, 50, false},
    [VB_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, true},
    [VB_TYPE_IQ3_S] = {"iq3_s", 256, 110, false},
    [VB_TYPE_IQ2_S] = {"iq2_s", 256, 82, false},
    [VB_TYPE_IQ4_XS] = {"iq4_xs", 256, 136, true},
    [VB_TYPE_I8] = {"i8", 1, 1, false},
    [VB_TYPE_I16] = {"i16", 1, 2, false},
    [VB_TYPE_I32] = {"i32", 1, 4, false},
    [VB_TYPE_I64] = {"i64", 1, 8, false},
    [VB_TYPE_F64] = {"f64", 1, 8, false},
    [VB_TYPE_IQ1_M] = {"iq1_m", 256, 56, false},
    [VB_TYPE_BF16] = {"bf16", 1, 2, true},
    [VB_TYPE_TQ1_0] = {"tq1_0", 256, 54, false},
    [VB_TYPE_TQ2_0] = {"tq2_0", 256, 66, false},
    [VB_TYPE_MXFP4] = {"mxfp4", 32, 17, false},
    [VB_TYPE_NVFP4] = {"nvfp4", 64, 36, false},
    [VB_TYPE_Q1_0] = {"q1_0", 128, 18, false},
    [VB_TYPE_Q2_0] = {"q2_0", 64, 18, false},
};

const int8_t vb_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

const vb_type_traits *vb_type_get(uint32_t type) {
    if (type >= VB_TYPE_COUNT || type_table[type].name == NULL) return NULL;
    return &type_table[type];
}

int64_t vb_type_row_bytes(uint32_t type, int64_t n) {
    const vb_type_traits *t = vb_type_get(type);
    if (!t || n < 0 || n % t->block_elems != 0) return -1;
    return n / t->block_elems * t->block_bytes;
}

int vb_type_from_name(const char *name) {
    if (!name) return -1;
    for (int i = 0; i < VB_TYPE_COUNT; i++)
        if (type_table[i].name && strcasecmp(type_table[i].name, name) == 0) return i;
    return -1;
}

float vb_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    uint32_t bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { e++; mant <<= 1; } while ((mant & 0x400) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((mant & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t vb_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t exp = (x >> 23) & 0xff;
    uint32_t mant = x & 0x7fffff;
    if (exp == 0xff) return (uint16_t)(sign | 0x7c00 | (mant ? 0x200 : 0)); /* inf / nan */
    int32_t e = (int32_t)exp - 127 + 15;
    if (e >= 31) return (uint16_t)(sign | 0x7c00);                      /* overflow to inf */
    if (e <= 0) {                                                        /* subnormal or zero */
        if (e < -10) return (uint16_t)sign;
        mant |= 0x800000;
        uint32_t shift = (uint32_t)(14 - e);
        uint32_t half = mant >> shift;
        uint32_t rem = mant & ((1u << shift) - 1);
        uint32_t mid = 1u << (shift - 1);
        if (rem > mid || (rem == mid && (half & 1))) half++;
        return (uint16_t)(sign | half);
    }
    uint32_t half = sign | ((uint32_t)e << 10) | (mant >> 13);
    uint32_t rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (half & 1))) half++; /* may carry into exponent: correct */
    return (uint16_t)half;
}

float vb_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t vb_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffff) > 0x7f800000) return (uint16_t)((x >> 16) | 0x40); /* quiet nan */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}
