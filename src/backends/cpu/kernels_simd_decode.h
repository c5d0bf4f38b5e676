/* kernels_simd_decode.h - the per-row tiles of the quantized types whose weights are decoded,
 * 256 at a time, into one common form before the 8-bit dot products: Q4_1, Q5_0, Q5_1, IQ4_NL
 * (blocks of 32) and Q2_K, Q3_K, Q5_K, IQ4_XS (super-blocks of 256). Included by
 * kernels_simd_template.h (after its helpers: group_sums256_scaled, VB_GROUP_SUMS, ...) and so
 * compiled once per instruction-set path. A type is one decoder (vb_dec_<type>: one 32-block,
 * or one 256-element super-block) and one row of the tile table at the end (flags: signed
 * weight bytes, 16-element integer sub-scales, kind of offset); the tile itself is shared.
 * Every X row of a tile goes through the same operations in the same order whatever the tile's
 * row count, so a K-row product gives each row the bits of a one-row product. */

/* 256 decoded weights (8 blocks of 32): element i of block k is
 *   w = f_k * s_{k,h} * q[k][i] + o_{k,h},   h = i / 16 (the 16-element half),
 * q[k]: 32 weight bytes (unsigned, at most 127, or signed for the signed types);
 * lsc[k]: the integer sub-scales s as int32 lanes (lanes 0..3: half 0, 4..7: half 1; only
 * types with 16-element scales, else s = 1); f: lane k = f_k; offsets per 32 (o, lane k: then
 * o_{k,0} = o_{k,1}) or per 16 (o16[0] lanes 0..7 = halves 0..7 in the order (k, h) = (0, 0),
 * (0, 1), (1, 0) ..; o16[1] the halves 8..15), matching X8's dsum and dsum16. */
typedef struct {
    __m256i q[8];
    __m256i lsc[8];
    __m256 f, o, o16[2];
} vb_wdec;

/* 16 bytes of nibbles as 32 bytes: low nibbles first (elements 0..15), then the high ones. */
static VB_ALWAYS_INLINE __m256i vb_nibbles32(const uint8_t *qs) {
    __m128i raw = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw, 4), raw), _mm256_set1_epi8(0x0F));
}

/* Byte i = val where bit i of bits is set, else 0. */
static VB_ALWAYS_INLINE __m256i vb_bits32_bytes(uint32_t bits, char val) {
    const __m256i idx = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2,
                                         2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x((long long)0x8040201008040201ull);
    __m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)bits), idx);
    v = _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
    return _mm256_and_si256(v, _mm256_set1_epi8(val));
}

/* Bit `k` of every byte of v, moved to bit `to`. */
static VB_ALWAYS_INLINE __m256i vb_bytebit(__m256i v, int k, int to) {
    __m256i b = _mm256_and_si256(_mm256_srli_epi16(v, k), _mm256_set1_epi8(1));
    return _mm256_slli_epi16(b, to);
}

/* The IQ4_NL levels in both 128-bit lanes (for vpshufb). */
static VB_ALWAYS_INLINE __m256i vb_iq4nl_table(void) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)vb_kvalues_iq4nl));
}

/* Lanes [s_{2j} x4, s_{2j+1} x4] for block k of 16 int32 sub-scales sa (0..7), sb (8..15). */
static VB_ALWAYS_INLINE void vb_lane_scales(__m256i sa, __m256i sb, __m256i *lsc) {
    const __m256i idx = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        lsc[k] = _mm256_permutevar8x32_epi32(k < 4 ? sa : sb, _mm256_add_epi32(idx, _mm256_set1_epi32(2 * (k & 3))));
}

/* ---- 32-element blocks: one block's bytes, its factor f and offset o */

static VB_ALWAYS_INLINE __m256i vb_dec_q4_1(const uint8_t *p, float *f, float *o) {
    const vb_block_q4_1 *b = (const vb_block_q4_1 *)p;
    *f = f16_scalar(b->d);
    *o = f16_scalar(b->m);
    return vb_nibbles32(b->qs);
}

static VB_ALWAYS_INLINE __m256i vb_dec_q5_0(const uint8_t *p, float *f, float *o) {
    const vb_block_q5_0 *b = (const vb_block_q5_0 *)p;
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    *f = f16_scalar(b->d);
    *o = -16.0f * *f;
    return _mm256_or_si256(vb_nibbles32(b->qs), vb_bits32_bytes(qh, 0x10));
}

static VB_ALWAYS_INLINE __m256i vb_dec_q5_1(const uint8_t *p, float *f, float *o) {
    const vb_block_q5_1 *b = (const vb_block_q5_1 *)p;
    uint32_t qh;
    memcpy(&qh, b->qh, 4);
    *f = f16_scalar(b->d);
    *o = f16_scalar(b->m);
    return _mm256_or_si256(vb_nibbles32(b->qs), vb_bits32_bytes(qh, 0x10));
}

static VB_ALWAYS_INLINE __m256i vb_dec_iq4_nl(const uint8_t *p, float *f, float *o) {
    const vb_block_iq4_nl *b = (const vb_block_iq4_nl *)p;
    *f = f16_scalar(b->d);
    *o = 0.0f;
    return _mm256_shuffle_epi8(vb_iq4nl_table(), vb_nibbles32(b->qs));
}

/* ---- 256-element super-blocks: super-block g of the row into out */

static VB_ALWAYS_INLINE void vb_dec_q2_k(const uint8_t *wrow, int64_t g, vb_wdec *out) {
    const vb_block_q2_k *b = (const vb_block_q2_k *)wrow + g;
    const __m256i m2 = _mm256_set1_epi8(3);
    __m256i q0 = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i q1 = _mm256_loadu_si256((const __m256i *)(b->qs + 32));
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) out->q[k] = _mm256_and_si256(_mm256_srli_epi16(k < 4 ? q0 : q1, 2 * (k & 3)), m2);
    __m128i sc = _mm_loadu_si128((const __m128i *)b->scales);
    __m128i lo = _mm_and_si128(sc, _mm_set1_epi8(0x0F));
    __m128i hi = _mm_and_si128(_mm_srli_epi16(sc, 4), _mm_set1_epi8(0x0F));
    vb_lane_scales(_mm256_cvtepu8_epi32(lo), _mm256_cvtepu8_epi32(_mm_srli_si128(lo, 8)), out->lsc);
    out->f = _mm256_set1_ps(f16_scalar(b->d));
    __m256 nm = _mm256_set1_ps(-f16_scalar(b->dmin));
    out->o16[0] = _mm256_mul_ps(nm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(hi)));
    out->o16[1] = _mm256_mul_ps(nm, _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(hi, 8))));
}

/* Q3_K as unsigned u = q + 4 * h (0..7): w = d s (u - 4), the -4 d s in the offsets. */
static VB_ALWAYS_INLINE void vb_dec_q3_k(const uint8_t *wrow, int64_t g, vb_wdec *out) {
    const vb_block_q3_k *b = (const vb_block_q3_k *)wrow + g;
    const __m256i m2 = _mm256_set1_epi8(3);
    __m256i q0 = _mm256_loadu_si256((const __m256i *)b->qs);
    __m256i q1 = _mm256_loadu_si256((const __m256i *)(b->qs + 32));
    __m256i hm = _mm256_loadu_si256((const __m256i *)b->hmask);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++)
        out->q[k] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(k < 4 ? q0 : q1, 2 * (k & 3)), m2),
                                    vb_bytebit(hm, k, 2));
    /* the 16 scales (vb_q3k_scales in vectors): low 4 bits from the nibbles of bytes 0..7,
       top 2 bits of scale i from bits 2 (i / 4) of byte 8 + i % 4 (dword i / 4 of a shuffle) */
    /* bytes 92..107 of the block (inside it), moved down by 4: the 12 scale bytes first */
    __m128i v = _mm_srli_si128(_mm_loadu_si128((const __m128i *)(b->scales - 4)), 4);
    const __m128i m4 = _mm_set1_epi8(0x0F), m2b = _mm_set1_epi8(3);
    __m128i low = _mm_unpacklo_epi64(_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4));
    __m128i h = _mm_shuffle_epi8(v, _mm_setr_epi8(8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11, 8, 9, 10, 11));
    __m128i hb = _mm_blend_epi32(_mm_blend_epi32(_mm_and_si128(h, m2b), _mm_and_si128(_mm_srli_epi16(h, 2), m2b), 2),
                                 _mm_blend_epi32(_mm_and_si128(_mm_srli_epi16(h, 4), m2b),
                                                 _mm_and_si128(_mm_srli_epi16(h, 6), m2b), 8), 12);
    __m128i s16 = _mm_sub_epi8(_mm_or_si128(low, _mm_slli_epi16(hb, 4)), _mm_set1_epi8(32));
    __m256i sa = _mm256_cvtepi8_epi32(s16);
    __m256i sb = _mm256_cvtepi8_epi32(_mm_srli_si128(s16, 8));
    vb_lane_scales(sa, sb, out->lsc);
    float d = f16_scalar(b->d);
    out->f = _mm256_set1_ps(d);
    __m256 m4d = _mm256_set1_ps(-4.0f * d);
    out->o16[0] = _mm256_mul_ps(m4d, _mm256_cvtepi32_ps(sa));
    out->o16[1] = _mm256_mul_ps(m4d, _mm256_cvtepi32_ps(sb));
}

static VB_ALWAYS_INLINE void vb_dec_q5_k(const uint8_t *wrow, int64_t g, vb_wdec *out) {
    const vb_block_q5_k *b = (const vb_block_q5_k *)wrow + g;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256i qh = _mm256_loadu_si256((const __m256i *)b->qh);
#pragma GCC unroll 4
    for (int p = 0; p < 4; p++) {
        __m256i raw = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * p));
        out->q[2 * p] = _mm256_or_si256(_mm256_and_si256(raw, low4), vb_bytebit(qh, 2 * p, 4));
        out->q[2 * p + 1] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(raw, 4), low4),
                                            vb_bytebit(qh, 2 * p + 1, 4));
    }
    /* vb_q4k_unpack in registers (its bytes stored and reloaded would stall the load) */
    uint32_t u0, u1, u2;
    memcpy(&u0, b->scales, 4);
    memcpy(&u1, b->scales + 4, 4);
    memcpy(&u2, b->scales + 8, 4);
    __m128i scm = _mm_setr_epi32((int)(u0 & 0x3F3F3F3Fu), (int)((u2 & 0x0F0F0F0Fu) | (((u0 >> 6) & 0x03030303u) << 4)),
                                 (int)(u1 & 0x3F3F3F3Fu),
                                 (int)(((u2 >> 4) & 0x0F0F0F0Fu) | (((u1 >> 6) & 0x03030303u) << 4)));
    out->f = _mm256_mul_ps(_mm256_set1_ps(f16_scalar(b->d)), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(scm)));
    out->o = _mm256_mul_ps(_mm256_set1_ps(-f16_scalar(b->dmin)),
                           _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(scm, 8))));
}

static VB_ALWAYS_INLINE void vb_dec_iq4_xs(const uint8_t *wrow, int64_t g, vb_wdec *out) {
    const vb_block_iq4_xs *b = (const vb_block_iq4_xs *)wrow + g;
    const __m256i table = vb_iq4nl_table();
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) out->q[k] = _mm256_shuffle_epi8(table, vb_nibbles32(b->qs + 16 * k));
    /* vb_iq4xs_scale of the 8 sub-blocks in vectors: nibble k of scales_l, bits 2k.. of scales_h */
    uint32_t sl;
    memcpy(&sl, b->scales_l, 4);
    __m128i l4 = _mm_cvtsi32_si128((int)sl);
    __m128i lo = _mm_unpacklo_epi8(_mm_and_si128(l4, _mm_set1_epi8(0x0F)),
                                   _mm_and_si128(_mm_srli_epi16(l4, 4), _mm_set1_epi8(0x0F)));
    __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(b->scales_h),
                                                    _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                  _mm256_set1_epi32(3));
    __m256i ls = _mm256_sub_epi32(_mm256_or_si256(_mm256_cvtepu8_epi32(lo), _mm256_slli_epi32(hi, 4)),
                                  _mm256_set1_epi32(32));
    out->f = _mm256_mul_ps(_mm256_set1_ps(f16_scalar(b->d)), _mm256_cvtepi32_ps(ls));
}

/* 8 consecutive 32-element blocks (group g): the bytes through the one-block decoder, the
 * factors (the f16 d at byte 0) and offsets converted 8 at a time: OKIND 1: the f16 m at byte 2,
 * 2: -16 d, 0: none. */
#define VB_DEC_GROUP32(DEC1, BLOCK_BYTES, OKIND)                                              \
    static VB_ALWAYS_INLINE void DEC1##_group(const uint8_t *wrow, int64_t g, vb_wdec *out) {  \
        const uint8_t *p = wrow + 8 * g * (BLOCK_BYTES);                                      \
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {                                 \
            float f_, o_;                                                                     \
            out->q[k] = DEC1(p + k * (BLOCK_BYTES), &f_, &o_);                                \
        }                                                                                     \
        out->f = vb_f16x8(p, 0, BLOCK_BYTES);                                                 \
        out->o = (OKIND) == 1 ? vb_f16x8(p, 2, BLOCK_BYTES)                                   \
                 : (OKIND) == 2 ? _mm256_mul_ps(_mm256_set1_ps(-16.0f), out->f)               \
                                : _mm256_setzero_ps();                                        \
    }
VB_DEC_GROUP32(vb_dec_q4_1, 20, 1)
VB_DEC_GROUP32(vb_dec_q5_0, 22, 2)
VB_DEC_GROUP32(vb_dec_q5_1, 24, 1)
VB_DEC_GROUP32(vb_dec_iq4_nl, 18, 0)

/* Never called: the one-block decoder slot of super-block types (no leftover blocks). */
static VB_ALWAYS_INLINE __m256i vb_dec_none(const uint8_t *p, float *f, float *o) {
    (void)p;
    *f = *o = 0.0f;
    return _mm256_setzero_si256();
}

/* The tile of a decoded type (VB_TILE_ARGS as the other tiles; nb counts the type's blocks):
 * per group of 256 weights, DEC_GROUP decodes once for the R X rows; per row, the 8 block dots
 * (scaled lane-wise by the sub-scales when LSC), times f * dx, plus the offsets against X8's
 * block sums (OFF 1: per 32, dsum; OFF 2: per 16, dsum16). Blocks after the last full group
 * (32-element types, n_in not a multiple of 256) go one at a time through DEC1. SIGNED: the
 * weight bytes are signed (the sign-trick dot; on the VNNI path instead w + 128 through the
 * unsigned dot and -128 f against dsum), else unsigned (<= 127 for AVX2's maddubs). */
#define VB_DEFINE_TILE_DEC(name, DEC_GROUP, DEC1, BLOCK_ELEMS, BLOCK_BYTES, SIGNED, LSC, OFF)  \
    static VB_ALWAYS_INLINE void name(VB_TILE_ARGS) {                                         \
        (void)xs, (void)xs16;                                                                 \
        /* signed weights on VNNI: w + 128 unsigned, the -128 f in the per-32 offsets */       \
        enum { FLIP = (SIGNED) && VB_Q8_UNSIGNED, SIGNED_DOT = (SIGNED) && !FLIP,              \
               OFF_ = FLIP ? 1 : (OFF) };                                                      \
        const __m256i flip80 = _mm256_set1_epi8((char)0x80);                                  \
        (void)flip80;                                                                         \
        const int64_t n32 = nb * ((BLOCK_ELEMS) / 32), ng = n32 / 8;                          \
        const int64_t gbytes = (BLOCK_BYTES) * (256 / (BLOCK_ELEMS)); /* bytes per group */  \
        __m256 acc[VB_TILE_ROWS], corr[VB_TILE_ROWS];                                         \
        float acc1[VB_TILE_ROWS], corr1[VB_TILE_ROWS];                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                 \
            acc[r] = corr[r] = _mm256_setzero_ps();                                           \
            acc1[r] = corr1[r] = 0.0f;                                                        \
        }                                                                                     \
        for (int64_t g = 0; g < ng; g++) {                                                    \
            if (pf)                                                                           \
                for (int64_t l = 0; l < gbytes; l += 64)                                      \
                    _mm_prefetch((const char *)wrow + g * gbytes + pf + l, _MM_HINT_T0);      \
            vb_wdec dw;                                                                       \
            DEC_GROUP(wrow, g, &dw);                                                          \
            if (FLIP) {                                                                       \
                _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) dw.q[k] =                 \
                    _mm256_xor_si256(dw.q[k], flip80);                                         \
                dw.o = _mm256_mul_ps(_mm256_set1_ps(-128.0f), dw.f);                           \
            }                                                                                 \
            VB_WGROUP_DECL(wz, dw.q);                                                         \
            VB_WSCALE_DECL(sz, dw.lsc);                                                       \
            (void)wz, (void)sz;                                                               \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                             \
                const int8_t *x = xq[r] + 256 * g;                                            \
                __m256i sums = SIGNED_DOT ? group_sums256_scaled(dw.q, dw.q, x, 0, (LSC) ? dw.lsc : NULL) \
                               : (LSC) ? VB_GROUP_SUMS_SCALED(wz, dw.q, x, sz, dw.lsc)         \
                                       : VB_GROUP_SUMS(wz, dw.q, dw.q, x, 1);                  \
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums),                            \
                                         _mm256_mul_ps(dw.f, _mm256_loadu_ps(xd[r] + 8 * g)), acc[r]); \
                if (OFF_ == 1) corr[r] = _mm256_fmadd_ps(dw.o, _mm256_loadu_ps(xs[r] + 8 * g), corr[r]); \
                if (OFF_ == 2) {                                                             \
                    corr[r] = _mm256_fmadd_ps(dw.o16[0], _mm256_loadu_ps(xs16[r] + 16 * g), corr[r]); \
                    corr[r] = _mm256_fmadd_ps(dw.o16[1], _mm256_loadu_ps(xs16[r] + 16 * g + 8), corr[r]); \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        for (int64_t b = 8 * ng; b < n32; b++) {                                              \
            float f, o;                                                                       \
            __m256i wv = DEC1(wrow + b * (BLOCK_BYTES), &f, &o);                              \
            if (FLIP) wv = _mm256_xor_si256(wv, flip80), o = -128.0f * f;                     \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                             \
                __m256i x = _mm256_loadu_si256((const __m256i *)(xq[r] + 32 * b));            \
                __m256i s = SIGNED_DOT ? x8dot(wv, wv, x) : x8dot_us(wv, x);                  \
                acc1[r] += f * xd[r][b] * hsum256i_f(s);                                      \
                if (OFF_ == 1) corr1[r] += o * xs[r][b];                                     \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] =                          \
            (hsum256(acc[r]) + acc1[r]) + (hsum256(corr[r]) + corr1[r]);                      \
    }

/*                 name          group decoder         one-block decoder  elems bytes signed lsc off */
VB_DEFINE_TILE_DEC(tile_q4_1,    vb_dec_q4_1_group,    vb_dec_q4_1,    32,  20,  0, 0, 1)
VB_DEFINE_TILE_DEC(tile_q5_0,    vb_dec_q5_0_group,    vb_dec_q5_0,    32,  22,  0, 0, 1)
VB_DEFINE_TILE_DEC(tile_q5_1,    vb_dec_q5_1_group,    vb_dec_q5_1,    32,  24,  0, 0, 1)
VB_DEFINE_TILE_DEC(tile_iq4_nl,  vb_dec_iq4_nl_group,  vb_dec_iq4_nl,  32,  18,  1, 0, 0)
VB_DEFINE_TILE_DEC(tile_q2_k,    vb_dec_q2_k,          vb_dec_none,    256, 84,  0, 1, 2)
VB_DEFINE_TILE_DEC(tile_q3_k,    vb_dec_q3_k,          vb_dec_none,    256, 110, 0, 1, 2)
VB_DEFINE_TILE_DEC(tile_q5_k,    vb_dec_q5_k,          vb_dec_none,    256, 176, 0, 0, 1)
VB_DEFINE_TILE_DEC(tile_iq4_xs,  vb_dec_iq4_xs,        vb_dec_none,    256, 136, 1, 0, 0)
