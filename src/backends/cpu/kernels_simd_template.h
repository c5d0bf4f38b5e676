/* kernels_simd_template.h - the matrix-product kernels shared by the AVX2 and the AVX-512 path
 * (quantized weights on 256-bit vectors, float weights on 256- or 512-bit vectors). Included
 * (only) by kernels_avx2.c and kernels_avx512.c, which compile it for their instruction set
 * (#pragma GCC target) after defining:
 *   VB_SIMD(name)   the path's suffix for exported names (name##_avx2, name##_avx512);
 *   x8dot_prep(w)   per weight vector, work shared by every activation row (may be w);
 *   x8dot(p, w, x)  eight int32 lanes, lane i = sum over bytes 4i..4i+3 of w * x, where w
 *                   holds 32 signed weight bytes and x 32 signed activation bytes;
 *   x8dot_us(w, x)  the same for unsigned weight bytes w and signed activations x with
 *                   w * |x| pairs that fit in int16 (w <= 127 on AVX2, any w with VNNI);
 *   VB_FLOAT_512    1 to use 512-bit vectors for float weights (F32, F16, BF16);
 *   VB_Q_512        1 to let 512-bit vpdpbusd take two blocks of unsigned weights at once;
 *   VB_Q8_UNSIGNED  1 if Q8_0 weights go through x8dot_us as w + 128 (then
 *                   sum w x = sum (w + 128) x - 128 sum x, the last term from X8's dsum).
 * Tiling: each W row is read once per group of up to 64 X rows and applied to X rows four at
 * a time (R = 1..4 accumulators; float weights also 2 W rows at a time), so a K-row product
 * reads W from memory once, not K times. With several X rows the W stream is prefetched in
 * software (the compute per W row then outlasts what the hardware prefetcher covers). On the
 * AVX-512 path, quantized weights with several X rows take the lane kernels instead (X
 * regrouped so that one vpdpbusd serves 16 (X row, block) pairs: vb_x8_lanes). Float weights
 * repacked by vb_pack_weights take the packed kernels at the end of this file (vb_mm_packed). */

#define VB_TILE_ROWS 4   /* X rows per register tile */
typedef void (*vb_rows_fn)(const vb_mm_args *a, int64_t o0, int64_t o1); /* W rows [o0, o1) */
#define VB_CHUNK_ROWS 64 /* X rows per pass over the thread's W rows (keeps X8 in L2) */
#ifndef VB_QPREFETCH_ROWS
#define VB_QPREFETCH_ROWS 16 /* quantized weights, per-row tiles: prefetch distance in W rows */
#endif
#ifndef VB_FPREFETCH_ROWS
#define VB_FPREFETCH_ROWS 16 /* float weights, several X rows: prefetch distance in W rows */
#endif
#define VB_ALWAYS_INLINE inline __attribute__((always_inline))

static VB_ALWAYS_INLINE float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

static VB_ALWAYS_INLINE float f16_scalar(uint16_t h) { return _cvtsh_ss(h); }

/* The f16 at byte off of 8 blocks of bb bytes from p (bb and off even), as 8 floats. On the
 * 512-bit path: the bytes of the 8 blocks in up to four 64-byte loads (masked past the last
 * f16, so nothing beyond the group is touched), the 8 words picked by one or two word
 * permutes; else one word at a time. (Picking them one by one cost Q4_0 decoding a third
 * of its speed: 52 -> 72 tok/s on Qwen3 0.6B, one thread.) */
static VB_ALWAYS_INLINE __m256 vb_f16x8(const uint8_t *p, int off, int bb) {
#if VB_Q_512
    const int span = 7 * bb + off + 2; /* bytes from p to the end of the last f16 */
    __m512i seg[4];
#pragma GCC unroll 4
    for (int i = 0; i < 4; i++) {
        const int n = span - 64 * i;
        seg[i] = n <= 0 ? _mm512_setzero_si512()
                 : n >= 64 ? _mm512_loadu_si512((const void *)(p + 64 * i))
                           : _mm512_maskz_loadu_epi8((__mmask64)((1ULL << n) - 1), p + 64 * i);
    }
    int16_t idx[32] = {0};
    __mmask32 upper = 0; /* words from seg[2..3] */
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        const int w = (k * bb + off) / 2;
        idx[k] = (int16_t)(w & 63);
        if (w >= 64) upper |= (__mmask32)1 << k;
    }
    const __m512i iv = _mm512_loadu_si512((const void *)idx);
    __m512i r = _mm512_permutex2var_epi16(seg[0], iv, seg[1]);
    if (upper) r = _mm512_mask_blend_epi16(upper, r, _mm512_permutex2var_epi16(seg[2], iv, seg[3]));
    return _mm256_cvtph_ps(_mm512_castsi512_si128(r));
#else
    int16_t h[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) memcpy(&h[k], p + k * bb + off, 2);
    return _mm256_cvtph_ps(_mm_setr_epi16(h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]));
#endif
}

/* --------------------------------------------------------------- activation quantization */

void VB_SIMD(vb_x8_quantize)(const vb_mm_args *a, int64_t r0, int64_t r1) {
    const vb_x8 *x8 = &a->x8;
    const __m256 sign_mask = _mm256_set1_ps(-0.0f);
    const __m256i perm = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = a->X + r * a->n_in;
        int8_t *q = x8->q + r * x8->n_in;
        float *d = x8->d + r * x8->nb, *dsum = x8->dsum + r * x8->nb;
        float *dsum16 = x8->dsum16 + r * 2 * x8->nb;
        for (int64_t b = 0; b < x8->nb; b++) {
            __m256 v0 = _mm256_loadu_ps(x + 32 * b), v1 = _mm256_loadu_ps(x + 32 * b + 8);
            __m256 v2 = _mm256_loadu_ps(x + 32 * b + 16), v3 = _mm256_loadu_ps(x + 32 * b + 24);
            __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign_mask, v0),
                                                   _mm256_andnot_ps(sign_mask, v1)),
                                     _mm256_max_ps(_mm256_andnot_ps(sign_mask, v2),
                                                   _mm256_andnot_ps(sign_mask, v3)));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            float amax = _mm_cvtss_f32(m4);
            float db = amax / 127.0f;
            __m256 id = _mm256_set1_ps(amax != 0.0f ? 127.0f / amax : 0.0f);
            __m256i i0 = _mm256_cvtps_epi32(_mm256_mul_ps(v0, id));
            __m256i i1 = _mm256_cvtps_epi32(_mm256_mul_ps(v1, id));
            __m256i i2 = _mm256_cvtps_epi32(_mm256_mul_ps(v2, id));
            __m256i i3 = _mm256_cvtps_epi32(_mm256_mul_ps(v3, id));
            __m256i s01 = _mm256_add_epi32(i0, i1), s23 = _mm256_add_epi32(i2, i3);
            /* s01: partial sums of elements 0..15, s23: of 16..31 */
            __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(s01, s23), _mm256_setzero_si256());
            /* h lane 0: s01 low-half sum, lane 1: s23 low; lane 4: s01 high, lane 5: s23 high */
            /* 64-bit: with finite x every lane is at most 32 * 127, but a NaN or inf converts
               to INT32_MIN and int sums of those would overflow (the row's result is then
               garbage either way, as the input was) */
            int64_t s01_sum = (int64_t)_mm256_extract_epi32(h, 0) + _mm256_extract_epi32(h, 4);
            int64_t s23_sum = (int64_t)_mm256_extract_epi32(h, 1) + _mm256_extract_epi32(h, 5);
            int64_t sum = s01_sum + s23_sum;
            __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(i0, i1), _mm256_packs_epi32(i2, i3));
            p = _mm256_permutevar8x32_epi32(p, perm);
            _mm256_storeu_si256((__m256i *)(q + 32 * b), p);
            d[b] = db;
            dsum[b] = db * (float)sum;
            x8->isum[r * x8->nb + b] = (int32_t)sum;
            dsum16[2 * b] = db * (float)s01_sum;
            dsum16[2 * b + 1] = db * (float)s23_sum;
        }
    }
}

/* --------------------------------------------------------------- quantized weight tiles */
/* Each tile kernel computes out[r] = dot(W row, X row t + r) for r < R (R a constant after
 * inlining). xq[r] / xd[r] / xs[r]: the X8 bytes, scales and scaled sums of row t + r.
 * Blocks go in groups of 8: the 8 integer dot products of a group (8 int32 lanes each) are
 * reduced to one vector of 8 block sums, converted once and multiplied by the 8 block scales
 * (dw * dx) in one FMA, so per row and block the work is little more than one vpdpbusd.
 * Leftover blocks (n_in not a multiple of 256) take the one-block-at-a-time path. */

#define VB_TILE_ARGS                                                                          \
    const uint8_t *wrow, int64_t nb, const int8_t *const *xq, const float *const *xd,         \
        const float *const *xs, const float *const *xs16, int64_t pf, int R, float *out

/* Lane j of the result = sum of the 8 lanes of v[j]. */
static VB_ALWAYS_INLINE __m256i reduce8(const __m256i *v) {
    __m256i h01 = _mm256_hadd_epi32(v[0], v[1]), h23 = _mm256_hadd_epi32(v[2], v[3]);
    __m256i h45 = _mm256_hadd_epi32(v[4], v[5]), h67 = _mm256_hadd_epi32(v[6], v[7]);
    __m256i q0 = _mm256_hadd_epi32(h01, h23), q1 = _mm256_hadd_epi32(h45, h67);
    return _mm256_add_epi32(_mm256_permute2x128_si256(q0, q1, 0x20),
                            _mm256_permute2x128_si256(q0, q1, 0x31));
}

static VB_ALWAYS_INLINE float hsum256i_f(__m256i v) { return hsum256(_mm256_cvtepi32_ps(v)); }

/* The 8 block sums of a group: weight vectors wv[8] (with x8dot_prep results p[8]) against the
 * 8 activation blocks at x (256 bytes); lane k = integer dot of block k. With lane_scale
 * (else NULL), each int32 lane of block k is first multiplied by lane_scale[k]'s lane. */
static VB_ALWAYS_INLINE __m256i group_sums256_scaled(const __m256i *wv, const __m256i *p,
                                                     const int8_t *x, int unsigned_w,
                                                     const __m256i *lane_scale) {
    __m256i s[8];
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(x + 32 * k));
        s[k] = unsigned_w ? x8dot_us(wv[k], xv) : x8dot(p[k], wv[k], xv);
        if (lane_scale) s[k] = _mm256_mullo_epi32(s[k], lane_scale[k]);
    }
    return reduce8(s);
}
#define group_sums256(wv, p, x, us) group_sums256_scaled(wv, p, x, us, NULL)

#if VB_Q_512
/* 512-bit form for unsigned weights (AVX512-VNNI): wz[j] holds blocks 2j and 2j + 1, so one
 * vpdpbusd covers two blocks; the four results are reduced with unpacks to block sums. */
#define VB_WGROUP_DECL(wz, wv)                                                                \
    __m512i wz[4];                                                                            \
    _Pragma("GCC unroll 4") for (int j_ = 0; j_ < 4; j_++) wz[j_] =                           \
        _mm512_inserti64x4(_mm512_castsi256_si512(wv[2 * j_]), wv[2 * j_ + 1], 1)

/* lane_scale_w16: the lane scales are int16 values in the low word of each int32 lane (high
 * word 0) and every lane's dot fits in int16, so one vpmaddwd (low x scale + high x 0) gives
 * the exact product that vpmulld gives (Q6_K: |dot| <= 4 x 63 x 127 = 32004). */
static VB_ALWAYS_INLINE __m256i group_sums512_scaled_w(const __m512i *wz, const int8_t *x,
                                                       const __m512i *lane_scale, int lane_scale_w16) {
    __m512i s[4];
#pragma GCC unroll 4
    for (int j = 0; j < 4; j++) {
        s[j] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wz[j],
                                   _mm512_loadu_si512((const void *)(x + 64 * j)));
        if (lane_scale)
            s[j] = lane_scale_w16 ? _mm512_madd_epi16(s[j], lane_scale[j])
                                  : _mm512_mullo_epi32(s[j], lane_scale[j]);
    }
    /* per 128-bit lane: [s0, s1, s2, s3 sums of that lane's 4 int32] */
    __m512i u01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
    __m512i u23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
    __m512i v = _mm512_add_epi32(_mm512_unpacklo_epi64(u01, u23), _mm512_unpackhi_epi64(u01, u23));
    /* lanes 0+1 hold block 2j (first half of s[j]), lanes 2+3 block 2j + 1 */
    v = _mm512_add_epi32(v, _mm512_shuffle_i32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    const __m512i order = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 0, 0, 0, 0, 0, 0, 0, 0);
    return _mm512_castsi512_si256(_mm512_permutexvar_epi32(order, v));
}
#define group_sums512_scaled(wz, x, sc) group_sums512_scaled_w(wz, x, sc, 0)
#define group_sums512(wz, x) group_sums512_scaled(wz, x, NULL)
#define VB_GROUP_SUMS(wz, wv, p, x, US) ((US) ? group_sums512(wz, x) : group_sums256(wv, p, x, US))
/* unsigned weights with per-lane integer scales (Q6_K) */
#define VB_WSCALE_DECL(sz, sv) VB_WGROUP_DECL(sz, sv)
#define VB_GROUP_SUMS_SCALED(wz, wv, x, sz, sv) group_sums512_scaled(wz, x, sz)
#else
#define VB_WGROUP_DECL(wz, wv) const __m256i *wz = wv
#define VB_GROUP_SUMS(wz, wv, p, x, US) group_sums256(wv, p, x, US)
#define VB_WSCALE_DECL(sz, sv) const __m256i *sz = sv
#define VB_GROUP_SUMS_SCALED(wz, wv, x, sz, sv) group_sums256_scaled(wv, wv, x, 1, sv)
#endif

/* Q8_0 (34-byte blocks: f16 d, 32 int8) and Q4_0 (18-byte blocks: f16 d, 16 bytes whose low
 * nibbles are elements 0..15 and high nibbles 16..31; value d * (nibble - 8)).
 * Unsigned-weight forms: sum (u) x with u = w + off, then subtract off * dw * dsum. */
#define VB_Q4_0_LOAD(blk)                                                                     \
    _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(_mm_loadu_si128((const __m128i *)(blk).qs), 4), \
                                      _mm_loadu_si128((const __m128i *)(blk).qs)),            \
                     low4)

#define VB_DEFINE_TILE_32(name, BLOCK_T, LOAD_W, LOAD_GROUP, DW8, UNSIGNED_W, OFFSET)        \
    static VB_ALWAYS_INLINE void name(VB_TILE_ARGS) {                                         \
        (void)xs16;                                                                 \
        const BLOCK_T *w = (const BLOCK_T *)wrow;                                             \
        const __m256i low4 = _mm256_set1_epi8(0x0F), flip = _mm256_set1_epi8((char)0x80);     \
        (void)low4, (void)flip;                                                               \
        __m256 acc[VB_TILE_ROWS], corr[VB_TILE_ROWS];                                         \
        float acc1[VB_TILE_ROWS], corr1[VB_TILE_ROWS];                                        \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                 \
            acc[r] = corr[r] = _mm256_setzero_ps();                                           \
            acc1[r] = corr1[r] = 0.0f;                                                        \
        }                                                                                     \
        int64_t b = 0;                                                                        \
        for (; b + 8 <= nb; b += 8) {                                                         \
            if (pf) /* keep the W stream ahead (8 blocks: 5 lines or less) */                 \
                _Pragma("GCC unroll 5") for (int l = 0; l < 5; l++)                           \
                    _mm_prefetch((const char *)(w + b) + pf + 64 * l, _MM_HINT_T0);           \
            LOAD_GROUP(w + b, wz, wv, p, UNSIGNED_W);                                         \
            (void)wz, (void)wv, (void)p;                                                      \
            const __m256 dw = DW8(w + b);                                                     \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                             \
                __m256i sums = VB_GROUP_SUMS(wz, wv, p, xq[r] + 32 * b, UNSIGNED_W);          \
                acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums),                            \
                                         _mm256_mul_ps(dw, _mm256_loadu_ps(xd[r] + b)), acc[r]); \
                if (OFFSET) corr[r] = _mm256_fmadd_ps(dw, _mm256_loadu_ps(xs[r] + b), corr[r]); \
            }                                                                                 \
        }                                                                                     \
        for (; b < nb; b++) {                                                                 \
            __m256i wv = LOAD_W(w[b]);                                                        \
            __m256i p = UNSIGNED_W ? wv : x8dot_prep(wv);                                     \
            float dw = f16_scalar(w[b].d);                                                    \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                             \
                __m256i x = _mm256_loadu_si256((const __m256i *)(xq[r] + 32 * b));            \
                __m256i s = UNSIGNED_W ? x8dot_us(wv, x) : x8dot(p, wv, x);                   \
                acc1[r] += dw * xd[r][b] * hsum256i_f(s);                                     \
                if (OFFSET) corr1[r] += dw * xs[r][b];                                        \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[r] =                          \
            hsum256(acc[r]) + acc1[r] - (float)(OFFSET) * (hsum256(corr[r]) + corr1[r]);      \
    }

/* A group of 8 blocks at wb: the weight vectors (wv[8] and their x8dot_prep p[8]; on the
 * 512-bit path the pairs wz[4] that VB_GROUP_SUMS reads), and the 8 block scales as floats.
 * Generic form from LOAD_W; Q4_0's 512-bit form builds wz straight from the packed nibbles
 * (two 16-byte broadcasts per pair, one variable shift and one mask): same values, fewer
 * instructions. The scales: vb_f16x8. */
#define VB_GROUP_LOAD_GENERIC(LOAD_W)                                                         \
    __m256i wv[8], p[8];                                                                      \
    _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {                                     \
        wv[k] = LOAD_W(wb_[k]);                                                               \
        p[k] = us_ ? wv[k] : x8dot_prep(wv[k]);                                               \
    }                                                                                         \
    VB_WGROUP_DECL(wz, wv)
#define VB_DW8(wb) vb_f16x8((const uint8_t *)(wb), 0, (int)sizeof *(wb)) /* d: each block's first f16 */
#define VB_Q8_GROUP(wb, wz, wv, p, US)                                                        \
    const vb_block_q8_0 *wb_ = (wb);                                                          \
    const int us_ = (US);                                                                     \
    VB_GROUP_LOAD_GENERIC(VB_Q8_0_LOAD)
#define VB_Q4_GROUP_GENERIC(wb, wz, wv, p, US)                                                \
    const vb_block_q4_0 *wb_ = (wb);                                                          \
    const int us_ = (US);                                                                     \
    VB_GROUP_LOAD_GENERIC(VB_Q4_0_LOAD)
#if VB_Q_512
#define VB_Q4_GROUP(wb, wz, wv, p, US)                                                        \
    __m256i *wv = NULL, *p = NULL;                                                            \
    __m512i wz[4];                                                                            \
    {                                                                                         \
        const vb_block_q4_0 *wb_ = (wb);                                                      \
        const __m512i nib_shift_ = _mm512_setr_epi64(0, 0, 0x0004000400040004LL,              \
            0x0004000400040004LL, 0, 0, 0x0004000400040004LL, 0x0004000400040004LL);          \
        _Pragma("GCC unroll 4") for (int j_ = 0; j_ < 4; j_++) {                              \
            __m256i lo_ = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)wb_[2 * j_].qs)); \
            __m256i hi_ = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)wb_[2 * j_ + 1].qs)); \
            wz[j_] = _mm512_and_si512(                                                        \
                _mm512_srlv_epi16(_mm512_inserti64x4(_mm512_castsi256_si512(lo_), hi_, 1), nib_shift_), \
                _mm512_set1_epi8(0x0F));                                                      \
        }                                                                                     \
    }
#else
#define VB_Q4_GROUP VB_Q4_GROUP_GENERIC
#endif

#if VB_Q8_UNSIGNED
#define VB_Q8_0_LOAD(blk) _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(blk).qs), flip)
VB_DEFINE_TILE_32(tile_q8_0, vb_block_q8_0, VB_Q8_0_LOAD, VB_Q8_GROUP, VB_DW8, 1, 128)
#else
#define VB_Q8_0_LOAD(blk) _mm256_loadu_si256((const __m256i *)(blk).qs)
VB_DEFINE_TILE_32(tile_q8_0, vb_block_q8_0, VB_Q8_0_LOAD, VB_Q8_GROUP, VB_DW8, 0, 0)
#endif
VB_DEFINE_TILE_32(tile_q4_0, vb_block_q4_0, VB_Q4_0_LOAD, VB_Q4_GROUP, VB_DW8, 1, 8)

/* Q4_K super-block scales as floats: dsc lane j = d * sc_j, dm lane j = dmin * m_j. The 6-bit
 * fields of vb_q4k_unpack taken apart in one vector: bytes 0..7 of `lo | hi` are sc_0..7, bytes
 * 8..15 m_0..7 (lo: the low 6 bits of scales 0..3 / mins 0..3, the low or high nibbles of bytes
 * 8..11 for 4..7; hi: the top 2 bits of bytes 0..7 moved to bits 4..5 for 4..7). */
static VB_ALWAYS_INLINE void vb_q4k_scales256(const vb_block_q4_k *blk, __m256 *dsc, __m256 *dm) {
    const __m128i v = _mm_loadu_si128((const __m128i *)blk); /* d, dmin, scales[12] */
    /* a: [s0..s3, s8..s11, s4..s7, s8..s11]; b: [0 x4, s0..s3, 0 x4, s4..s7] (s = scales) */
    const __m128i a = _mm_shuffle_epi8(v, _mm_setr_epi8(4, 5, 6, 7, 12, 13, 14, 15, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m128i b = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 4, 5, 6, 7, -1, -1, -1, -1, 8, 9, 10, 11));
    const __m128i lo = _mm_blend_epi32(_mm_and_si128(a, _mm_setr_epi8(63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0)),
                                       _mm_and_si128(_mm_srli_epi16(a, 4), _mm_set1_epi8(0x0F)), 0x8);
    const __m128i hi = _mm_and_si128(_mm_srli_epi16(b, 2), _mm_set1_epi8(0x30));
    const __m128i scm = _mm_or_si128(lo, hi);
    const __m128 dd = _mm_cvtph_ps(v); /* lanes 0, 1: d, dmin */
    *dsc = _mm256_mul_ps(_mm256_broadcastss_ps(dd), _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(scm)));
    *dm = _mm256_mul_ps(_mm256_broadcastss_ps(_mm_movehdup_ps(dd)),
                        _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_unpackhi_epi64(scm, scm))));
}

/* Q4_K: per super-block of 256, sub-block j of 32 = d * sc_j * q - dmin * m_j with q 0..15
 * (32 bytes k hold sub-block 2k in the low nibbles, 2k + 1 in the high ones). The minimum
 * term is dmin * m_j * (sum of the X block) = dmin * m_j * xs[r][block]. nb counts
 * super-blocks; X blocks of 32 line up with the sub-blocks, 8 per super-block. */
static VB_ALWAYS_INLINE void tile_q4_k(VB_TILE_ARGS) {
    (void)xs16;
    const vb_block_q4_k *w = (const vb_block_q4_k *)wrow;
    const __m256i low4 = _mm256_set1_epi8(0x0F);
    __m256 acc[VB_TILE_ROWS], macc[VB_TILE_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r] = macc[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            for (int l = 0; l < (int)sizeof w[b]; l += 64)
                _mm_prefetch((const char *)(w + b) + pf + l, _MM_HINT_T0);
        __m256 dsc, dm;
        vb_q4k_scales256(&w[b], &dsc, &dm);
#if VB_Q_512 /* pair k: [low nibbles | high nibbles] of qs[32 k ..]: one broadcast, shift, mask */
        __m256i *wv = NULL;
        __m512i wz[4];
        const __m512i nib_shift = _mm512_setr_epi64(0, 0, 0, 0, 0x0004000400040004LL, 0x0004000400040004LL,
                                                    0x0004000400040004LL, 0x0004000400040004LL);
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++)
            wz[k] = _mm512_and_si512(_mm512_srlv_epi16(_mm512_broadcast_i64x4(_mm256_loadu_si256(
                                                           (const __m256i *)(w[b].qs + 32 * k))),
                                                       nib_shift),
                                     _mm512_set1_epi8(0x0F));
        (void)low4;
#else
        __m256i wv[8];
#pragma GCC unroll 4
        for (int k = 0; k < 4; k++) {
            __m256i raw = _mm256_loadu_si256((const __m256i *)(w[b].qs + 32 * k));
            wv[2 * k] = _mm256_and_si256(raw, low4);
            wv[2 * k + 1] = _mm256_and_si256(_mm256_srli_epi16(raw, 4), low4);
        }
        VB_WGROUP_DECL(wz, wv);
#endif
        (void)wz, (void)wv;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
            __m256i sums = VB_GROUP_SUMS(wz, wv, wv, xq[r] + 256 * b, 1);
            /* the order the lane kernel reproduces: lane j = sub-block j, fused */
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums),
                                     _mm256_mul_ps(dsc, _mm256_loadu_ps(xd[r] + 8 * b)), acc[r]);
            macc[r] = _mm256_fmadd_ps(dm, _mm256_loadu_ps(xs[r] + 8 * b), macc[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) out[r] = hsum256(acc[r]) - hsum256(macc[r]);
}

/* Q6_K: per super-block, 16 sub-blocks of 16 with int8 scales; value d * sc * (q - 32) with
 * q 0..63. The unsigned q go into the dot; a 32-element group spans two sub-blocks, so its
 * int32 lanes 0..3 (first sub-block) and 4..7 (second) are multiplied by [s0 x4, s1 x4]
 * before the 8 groups are reduced. The -32 becomes -32 d * sum_k sc_k * dsum16_k. */
static VB_ALWAYS_INLINE void tile_q6_k(VB_TILE_ARGS) {
    (void)xs;
    const vb_block_q6_k *w = (const vb_block_q6_k *)wrow;
    const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
    /* lane i of group k takes scale 2 (k mod 4) + i / 4 of its half */
    const __m256i scale_idx = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 acc[VB_TILE_ROWS], corr[VB_TILE_ROWS];
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) acc[r] = corr[r] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nb; b++) {
        if (pf)
            for (int l = 0; l < (int)sizeof w[b]; l += 64)
                _mm_prefetch((const char *)(w + b) + pf + l, _MM_HINT_T0);
        __m256 d = _mm256_set1_ps(f16_scalar(w[b].d));
        __m256i sc_a = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)w[b].scales));
        __m256i sc_b = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(w[b].scales + 8)));
        __m256 dsc_a = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc_a));
        __m256 dsc_b = _mm256_mul_ps(d, _mm256_cvtepi32_ps(sc_b));
        __m256i scv[8];
#if VB_Q_512
        /* pairs 2h, 2h + 1 straight in 512 bits: [ql0 | ql1] (64 bytes) against qh broadcast
           to both halves, the high bits moved by per-half shifts (groups 4h .. 4h + 3 as
           below: ql0 low nibbles with qh bits 0-1, ql1 low with bits 2-3, ql0 high with 4-5,
           ql1 high with 6-7); ternary logic: (ql & 0x0F) | hi */
        __m512i wz[4];
        const __m512i lo4 = _mm512_set1_epi8(0x0F), b45 = _mm512_set1_epi8(0x30);
        const __m512i sh_a = _mm512_setr_epi64(0x0004000400040004LL, 0x0004000400040004LL, 0x0004000400040004LL,
                                               0x0004000400040004LL, 0x0002000200020002LL, 0x0002000200020002LL,
                                               0x0002000200020002LL, 0x0002000200020002LL);
        const __m512i sh_b = _mm512_setr_epi64(0, 0, 0, 0, 0x0002000200020002LL, 0x0002000200020002LL,
                                               0x0002000200020002LL, 0x0002000200020002LL);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i ql = _mm512_loadu_si512((const void *)(w[b].ql + 64 * h));
            const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h)));
            /* 0xEA: (a & b) | c with a = ql(>>4), b = 0x0F, c = the masked high bits */
            wz[2 * h] = _mm512_ternarylogic_epi32(ql, lo4, _mm512_and_si512(_mm512_sllv_epi16(qh, sh_a), b45), 0xEA);
            wz[2 * h + 1] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(ql, 4), lo4,
                                                      _mm512_and_si512(_mm512_srlv_epi16(qh, sh_b), b45), 0xEA);
        }
        (void)low4, (void)bits45;
#else
        __m256i wv[8];
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            __m256i ql0 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h));
            __m256i ql1 = _mm256_loadu_si256((const __m256i *)(w[b].ql + 64 * h + 32));
            __m256i qh = _mm256_loadu_si256((const __m256i *)(w[b].qh + 32 * h));
            wv[4 * h + 0] = _mm256_or_si256(_mm256_and_si256(ql0, low4),
                                            _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45));
            wv[4 * h + 1] = _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                            _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45));
            wv[4 * h + 2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                            _mm256_and_si256(qh, bits45));
            wv[4 * h + 3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                            _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45));
        }
        VB_WGROUP_DECL(wz, wv);
#endif
#if VB_Q_512
        /* pair j's lanes take scales 4j .. 4j + 3, four lanes each, as int16 in the low word */
        __m512i sz[4];
        const __m512i s16 = _mm512_and_si512(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)w[b].scales)),
                                             _mm512_set1_epi32(0xFFFF));
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++)
            sz[j] = _mm512_permutexvar_epi32(
                _mm512_add_epi32(_mm512_set1_epi32(4 * j),
                                 _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3)),
                s16);
        (void)scv, (void)scale_idx;
#else
#pragma GCC unroll 8
        for (int k = 0; k < 8; k++) { /* group k: lanes 0..3 scale 2k, 4..7 scale 2k + 1 */
            __m256i idx = _mm256_add_epi32(scale_idx, _mm256_set1_epi32(2 * (k & 3)));
            scv[k] = _mm256_permutevar8x32_epi32(k < 4 ? sc_a : sc_b, idx);
        }
        VB_WSCALE_DECL(sz, scv);
#endif
        (void)wz, (void)sz;
#pragma GCC unroll 4
        for (int r = 0; r < R; r++) {
#if VB_Q_512
            __m256i sums = group_sums512_scaled_w(wz, xq[r] + 256 * b, sz, 1);
#else
            __m256i sums = VB_GROUP_SUMS_SCALED(wz, wv, xq[r] + 256 * b, sz, scv);
#endif
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums),
                                     _mm256_mul_ps(d, _mm256_loadu_ps(xd[r] + 8 * b)), acc[r]);
            const float *s16 = xs16[r] + 16 * b;
            corr[r] = _mm256_fmadd_ps(dsc_a, _mm256_loadu_ps(s16), corr[r]);
            corr[r] = _mm256_fmadd_ps(dsc_b, _mm256_loadu_ps(s16 + 8), corr[r]);
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < R; r++) out[r] = hsum256(acc[r]) - 32.0f * hsum256(corr[r]);
}

/* Q4_1, Q5_0, Q5_1, IQ4_NL, Q2_K, Q3_K, Q5_K, IQ4_XS: decoded tiles (their own file). */
#include "kernels_simd_decode.h"

#if VB_Q_512
/* --------------------------------------------------------------- lane kernels (VNNI) */
/* Quantized weights times several X rows in the lane layout (vb_x8_lanes): per W block,
 * S = 8 / D broadcasts of D weight dwords (unsigned), each one vpdpbusd against a 64-byte X
 * vector (a memory operand) holding the matching dwords of G = 16 / D rows; the int32 lanes
 * are converted once per block and scaled lane-wise, in the order of the per-row tiles
 * (kernels_internal.h). Per (W row, 32-block, 16 lanes): S dpbusd, S broadcasts and about
 * six other vector operations, no horizontal sums. */

/* D weight dwords from p repeated over 16 lanes. */
static VB_ALWAYS_INLINE __m512i bcast_dwords(const void *p, int D) {
    if (D == 1) {
        int32_t v;
        memcpy(&v, p, 4);
        return _mm512_set1_epi32(v);
    }
    if (D == 2) {
        long long v;
        memcpy(&v, p, 8);
        return _mm512_set1_epi64(v);
    }
    if (D == 4) return _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)p));
    return _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
}

/* The integer dot of one W block against the S X vectors XV(s) of a lane group, in two
 * chains (latency). Q8_0: step s broadcasts weight dwords
 * s * D .. made unsigned (w + 128). Q4_0: dword j < 4 of the block holds the low nibbles of
 * qs dword j, j >= 4 the high nibbles of qs dword j - 4, so one broadcast serves steps t and
 * t + S / 2: the low nibbles masked, the high ones masked in place (16 n, exact in int32)
 * and their chain divided by 16 at the end. D = 8 (one step): the 32 nibbles unpacked. */
#define VB_LANE_DOT_Q8_0(out, blk, XV)                                                        \
    do {                                                                                      \
        __m512i i0_ = _mm512_setzero_si512(), i1_ = _mm512_setzero_si512();                   \
        _Pragma("GCC unroll 8") for (int s = 0; s < S; s++) {                                 \
            __m512i wv_ = _mm512_xor_si512(bcast_dwords((blk).qs + 4 * s * D, D), flip);      \
            if (s & 1) i1_ = _mm512_dpbusd_epi32(i1_, wv_, XV(s));                            \
            else i0_ = _mm512_dpbusd_epi32(i0_, wv_, XV(s));                                  \
        }                                                                                     \
        (out) = S > 1 ? _mm512_add_epi32(i0_, i1_) : i0_;                                     \
    } while (0)

#define VB_LANE_DOT_Q4_0(out, blk, XV)                                                        \
    do {                                                                                      \
        if (D == 8) {                                                                         \
            __m128i raw_ = _mm_loadu_si128((const __m128i *)(blk).qs);                        \
            __m256i v_ = _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(raw_, 4), raw_),    \
                                          _mm512_castsi512_si256(low4));                      \
            (out) = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_broadcast_i64x4(v_), XV(0)); \
        } else {                                                                              \
            __m512i i0_ = _mm512_setzero_si512(), i1_ = _mm512_setzero_si512();               \
            _Pragma("GCC unroll 4") for (int t = 0; t < S / 2; t++) {                         \
                __m512i v_ = bcast_dwords((blk).qs + 4 * t * D, D);                           \
                i0_ = _mm512_dpbusd_epi32(i0_, _mm512_and_si512(v_, low4), XV(t));            \
                i1_ = _mm512_dpbusd_epi32(i1_, _mm512_and_si512(v_, high4), XV(t + S / 2));   \
            }                                                                                 \
            (out) = _mm512_add_epi32(i0_, _mm512_srai_epi32(i1_, 4));                         \
        }                                                                                     \
    } while (0)

/* Every type's LANES_w(...): WR W rows (wrows) against one lane group (xq / xd / xsl /
 * xs16l: the group's vb_x8_lanes arrays), W prefetched pf bytes ahead; acc_out[q] = the
 * 16 lane results of W row q (each X row's value in its first lane). X vectors are memory
 * operands (XV = VB_XMEM over xb, the block's vectors). */
#define VB_LANE_ARGS_W                                                                        \
    const uint8_t *const *wrows, int64_t nb, const int8_t *xq, const float *xd,               \
        const float *xsl, const float *xs16l, int64_t pf, int WR, int D,                       \
        __m512 *acc_out
#define VB_XMEM(s) _mm512_loadu_si512((const void *)(xb + 64 * (s)))

/* With D > 1 the D partial dots of a row are added across its lanes: each lane of the row
 * then holds the row's exact dot. */
static VB_ALWAYS_INLINE __m512i lanes_row_reduce(__m512i v, int D) {
    if (D >= 2) v = _mm512_add_epi32(v, _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)0xB1));
    if (D >= 4) v = _mm512_add_epi32(v, _mm512_shuffle_epi32(v, (_MM_PERM_ENUM)0x4E));
    if (D >= 8) v = _mm512_add_epi32(v, _mm512_shuffle_i64x2(v, v, 0xB1));
    return v;
}

/* Lane-wise v0 + .. + v7 in the order hsum256 adds the 8 lanes of a vector. */
static VB_ALWAYS_INLINE __m512 lanes_hsum8_order(const __m512 *v) {
    return _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(v[0], v[4]), _mm512_add_ps(v[2], v[6])),
                         _mm512_add_ps(_mm512_add_ps(v[1], v[5]), _mm512_add_ps(v[3], v[7])));
}

#ifndef VB_LANE_L1_BYTES
#define VB_LANE_L1_BYTES 40960 /* X of a lane group up to this: no chunking */
#endif

/* Q8_0 / Q4_0 in the lane layout, in the order of the per-row tile (VB_DEFINE_TILE_32), so
 * that K rows give each row bit for bit what one row gives: per W row and lane, block b of
 * the full groups of 8 goes to accumulators a[b % 8] += i_b * (dw * dx) and
 * m[b % 8] += dw * dsum (fused), the blocks after them to a1 += (dw * dx) * i_b and
 * m1 += dw * dsum; result (hsum(a) + a1) - OFFSET * (hsum(m) + m1), the hsums in hsum256's
 * order. i_b is the exact dot of the unsigned weights (the offset is in m). One W row at a
 * time (18 accumulators); X of the group in L1 (up to 40 KiB): each W row over all its
 * blocks, else the blocks in chunks of 32 shared by the WR rows. */
#define VB_DEFINE_LANES(name, BLOCK_T, LANE_DOT, OFFSET)                                      \
    static VB_ALWAYS_INLINE __m512 name##_dot(const BLOCK_T *blk, int64_t b, const int8_t *xq, \
                                              int64_t pf, int D, __m512 *dw) {                \
        const int S = 8 / D;                                                                  \
        const __m512i flip = _mm512_set1_epi8((char)0x80), low4 = _mm512_set1_epi8(0x0F);     \
        const __m512i high4 = _mm512_set1_epi8((char)0xF0);                                   \
        (void)flip, (void)low4, (void)high4;                                                  \
        _mm_prefetch((const char *)blk + pf, _MM_HINT_T0);                                    \
        const int8_t *xb = xq + b * 64 * S;                                                   \
        __m512i isum;                                                                         \
        LANE_DOT(isum, *blk, VB_XMEM);                                                        \
        *dw = _mm512_set1_ps(f16_scalar(blk->d));                                             \
        return _mm512_cvtepi32_ps(lanes_row_reduce(isum, D));                                 \
    }                                                                                         \
    /* blocks [b0, b1) of one W row (b1 <= the end of the full groups) */                     \
    static VB_ALWAYS_INLINE void name##_run(const BLOCK_T *w, int64_t b0, int64_t b1,         \
                                            const int8_t *xq, const float *xd, const float *xsl, \
                                            int64_t pf, int D, __m512 *a, __m512 *m) {        \
        for (int64_t b = b0; b < b1; b += 8)                                                  \
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) {                             \
                __m512 dw;                                                                    \
                __m512 fi = name##_dot(w + b + j, b + j, xq, pf, D, &dw);                     \
                a[j] = _mm512_fmadd_ps(fi, _mm512_mul_ps(dw, _mm512_loadu_ps(xd + 16 * (b + j))), a[j]); \
                m[j] = _mm512_fmadd_ps(dw, _mm512_loadu_ps(xsl + 16 * (b + j)), m[j]);        \
            }                                                                                 \
    }                                                                                         \
    static VB_ALWAYS_INLINE __m512 name##_final(const BLOCK_T *w, int64_t nb, const int8_t *xq, \
                                                const float *xd, const float *xsl, int64_t pf, \
                                                int D, const __m512 *a, const __m512 *m) {    \
        __m512 a1 = _mm512_setzero_ps(), m1 = a1;                                             \
        for (int64_t b = nb / 8 * 8; b < nb; b++) {                                           \
            __m512 dw;                                                                        \
            __m512 fi = name##_dot(w + b, b, xq, pf, D, &dw);                                 \
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_mul_ps(dw, _mm512_loadu_ps(xd + 16 * b)), fi)); \
            m1 = _mm512_add_ps(m1, _mm512_mul_ps(dw, _mm512_loadu_ps(xsl + 16 * b)));         \
        }                                                                                     \
        return _mm512_sub_ps(_mm512_add_ps(lanes_hsum8_order(a), a1),                         \
                             _mm512_mul_ps(_mm512_set1_ps((float)(OFFSET)),                   \
                                           _mm512_add_ps(lanes_hsum8_order(m), m1)));         \
    }                                                                                         \
    static VB_ALWAYS_INLINE void name##_w(VB_LANE_ARGS_W) {                                   \
        (void)xs16l;                                                                          \
        const int64_t nb8 = nb / 8 * 8;                                                       \
        if (nb * 512 / D <= VB_LANE_L1_BYTES) {                                               \
            for (int q = 0; q < WR; q++) {                                                    \
                const BLOCK_T *w = (const BLOCK_T *)wrows[q];                                 \
                __m512 a[8], m[8];                                                            \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a[j] = m[j] = _mm512_setzero_ps(); \
                name##_run(w, 0, nb8, xq, xd, xsl, pf, D, a, m);                              \
                acc_out[q] = name##_final(w, nb, xq, xd, xsl, pf, D, a, m);                   \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        __m512 av[4][8], mv[4][8]; /* per W row; kept across chunks */                        \
        for (int q = 0; q < WR; q++)                                                          \
            for (int j = 0; j < 8; j++) av[q][j] = mv[q][j] = _mm512_setzero_ps();            \
        for (int64_t c0 = 0; c0 < nb8; c0 += 32) {                                            \
            int64_t c1 = c0 + 32 < nb8 ? c0 + 32 : nb8;                                       \
            for (int q = 0; q < WR; q++) {                                                    \
                __m512 a[8], m[8];                                                            \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a[j] = av[q][j], m[j] = mv[q][j]; \
                name##_run((const BLOCK_T *)wrows[q], c0, c1, xq, xd, xsl, pf, D, a, m);      \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) av[q][j] = a[j], mv[q][j] = m[j]; \
            }                                                                                 \
        }                                                                                     \
        for (int q = 0; q < WR; q++)                                                          \
            acc_out[q] = name##_final((const BLOCK_T *)wrows[q], nb, xq, xd, xsl, pf, D, av[q], mv[q]); \
    }

VB_DEFINE_LANES(lanes_q8_0, vb_block_q8_0, VB_LANE_DOT_Q8_0, 128)
VB_DEFINE_LANES(lanes_q4_0, vb_block_q4_0, VB_LANE_DOT_Q4_0, 8)

/* Q4_K in the lane layout, in the order of the per-row tile (so K rows give each row what one
 * row gives): per W row and lane, accumulators a_j / m_j for sub-block j of every super-block
 * (a_j += i_j * (dsc_j * dx), m_j += dm_j * dsum, fused), the result
 * (((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))) - (the same of m) as hsum256 adds.
 * Sub-blocks 2k, 2k + 1 share the bytes qs[32 k ..] (low / high nibbles: one broadcast, two
 * masks, the high chain divided by 16). One W row at a time (16 accumulators; chunks of
 * super-blocks shared by the WR rows when X exceeds VB_LANE_L1_BYTES: VB_DEFINE_LANES_K). */

#define VB_Q4K_LANE_CHUNK 4 /* super-blocks per chunk when X does not fit in L1 */
/* One super-block of one W row into the 16 accumulators a[8], m[8]. */
static VB_ALWAYS_INLINE void lanes_q4_k_sb(const vb_block_q4_k *blk, int64_t sb, const int8_t *xq,
                                           const float *xd, const float *xsl, const float *xs16l,
                                           int64_t pf, int D, __m512 *a, __m512 *m) {
    (void)xs16l;
    const int S = 8 / D;
    const __m512i low4 = _mm512_set1_epi8(0x0F), high4 = _mm512_set1_epi8((char)0xF0);
    for (int l = 0; l < (int)sizeof *blk; l += 64)
        _mm_prefetch((const char *)blk + pf + l, _MM_HINT_T0);
    __m256 dsc8, dm8;
    vb_q4k_scales256(blk, &dsc8, &dm8);
    float dsc[8], dm[8];
    _mm256_storeu_ps(dsc, dsc8);
    _mm256_storeu_ps(dm, dm8);
#pragma GCC unroll 4
    for (int k = 0; k < 4; k++) {
        int64_t b0 = 8 * sb + 2 * k, b1 = b0 + 1;
        const int8_t *x0 = xq + b0 * 64 * S, *x1 = xq + b1 * 64 * S;
        __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int s = 0; s < S; s++) {
            __m512i v = bcast_dwords(blk->qs + 32 * k + 4 * s * D, D);
            i0 = _mm512_dpbusd_epi32(i0, _mm512_and_si512(v, low4),
                                     _mm512_loadu_si512((const void *)(x0 + 64 * s)));
            i1 = _mm512_dpbusd_epi32(i1, _mm512_and_si512(v, high4),
                                     _mm512_loadu_si512((const void *)(x1 + 64 * s)));
        }
        i0 = lanes_row_reduce(i0, D);
        i1 = lanes_row_reduce(_mm512_srai_epi32(i1, 4), D);
        a[2 * k] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(i0),
            _mm512_mul_ps(_mm512_set1_ps(dsc[2 * k]), _mm512_loadu_ps(xd + 16 * b0)), a[2 * k]);
        a[2 * k + 1] = _mm512_fmadd_ps(
            _mm512_cvtepi32_ps(i1),
            _mm512_mul_ps(_mm512_set1_ps(dsc[2 * k + 1]), _mm512_loadu_ps(xd + 16 * b1)),
            a[2 * k + 1]);
        m[2 * k] = _mm512_fmadd_ps(_mm512_set1_ps(dm[2 * k]), _mm512_loadu_ps(xsl + 16 * b0), m[2 * k]);
        m[2 * k + 1] = _mm512_fmadd_ps(_mm512_set1_ps(dm[2 * k + 1]),
                                       _mm512_loadu_ps(xsl + 16 * b1), m[2 * k + 1]);
    }
}

/* K-quant lane kernels (name##_w from the per-super-block step SB and the final combination
 * FINAL(a, m) of the two accumulator sets). X of the group in L1 (up to 40 KiB): each W row
 * over all its super-blocks; else the super-blocks in chunks shared by the WR rows, the
 * accumulators kept between chunks. */
#define VB_DEFINE_LANES_K(name, BLOCK_T, SB, FINAL)                                            \
    static VB_ALWAYS_INLINE void name##_w(VB_LANE_ARGS_W) {                                   \
        if (nb * 512 / D <= VB_LANE_L1_BYTES) {                                               \
            for (int q = 0; q < WR; q++) {                                                    \
                const BLOCK_T *w = (const BLOCK_T *)wrows[q];                                 \
                __m512 a[8], m[8];                                                            \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a[j] = m[j] = _mm512_setzero_ps(); \
                for (int64_t sb = 0; sb < nb / 8; sb++)                                       \
                    SB(w + sb, sb, xq, xd, xsl, xs16l, pf, D, a, m);                          \
                acc_out[q] = FINAL(a, m);                                                     \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        __m512 av[4][8], mv[4][8]; /* per W row; kept across chunks */                        \
        for (int q = 0; q < WR; q++)                                                          \
            for (int j = 0; j < 8; j++) av[q][j] = mv[q][j] = _mm512_setzero_ps();            \
        for (int64_t c0 = 0; c0 < nb / 8; c0 += VB_Q4K_LANE_CHUNK) {                          \
            int64_t c1 = c0 + VB_Q4K_LANE_CHUNK < nb / 8 ? c0 + VB_Q4K_LANE_CHUNK : nb / 8;   \
            for (int q = 0; q < WR; q++) {                                                    \
                const BLOCK_T *w = (const BLOCK_T *)wrows[q];                                 \
                __m512 a[8], m[8];                                                            \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a[j] = av[q][j], m[j] = mv[q][j]; \
                for (int64_t sb = c0; sb < c1; sb++)                                          \
                    SB(w + sb, sb, xq, xd, xsl, xs16l, pf, D, a, m);                          \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) av[q][j] = a[j], mv[q][j] = m[j]; \
            }                                                                                 \
        }                                                                                     \
        for (int q = 0; q < WR; q++) acc_out[q] = FINAL(av[q], mv[q]);                        \
    }

#define VB_FINAL_Q4_K(a, m) _mm512_sub_ps(lanes_hsum8_order(a), lanes_hsum8_order(m))
#define VB_FINAL_Q6_K(a, m)                                                                   \
    _mm512_sub_ps(lanes_hsum8_order(a), _mm512_mul_ps(_mm512_set1_ps(32.0f), lanes_hsum8_order(m)))

/* Q6_K in the lane layout, in the order of tile_q6_k: per super-block the 8 groups of 32
 * unpacked once (as tile_q6_k does) into a buffer whose dwords are broadcast; group k's dot
 * in two chains (its 16-element halves) times their scales sc[2k], sc[2k + 1] (exact);
 * a_k += i_k * (d * dx), and the offset accumulators c_j += (d sc_j) * dsum16_j, then
 * c_j += (d sc_{8+j}) * dsum16_{8+j}; result hsum(a) - 32 hsum(c). */
static VB_ALWAYS_INLINE void lanes_q6_k_sb(const vb_block_q6_k *blk, int64_t sb, const int8_t *xq,
                                           const float *xd, const float *xsl, const float *xs16l,
                                           int64_t pf, int D, __m512 *a, __m512 *c) {
    (void)xsl;
    const int S = 8 / D;
    for (int l = 0; l < (int)sizeof *blk; l += 64)
        _mm_prefetch((const char *)blk + pf + l, _MM_HINT_T0);
    const __m256i low4 = _mm256_set1_epi8(0x0F), bits45 = _mm256_set1_epi8(0x30);
    __attribute__((aligned(32))) uint8_t qv[256]; /* [8 groups][32] unsigned 6-bit q */
#pragma GCC unroll 2
    for (int h = 0; h < 2; h++) {
        __m256i ql0 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h));
        __m256i ql1 = _mm256_loadu_si256((const __m256i *)(blk->ql + 64 * h + 32));
        __m256i qh = _mm256_loadu_si256((const __m256i *)(blk->qh + 32 * h));
        _mm256_store_si256((__m256i *)(qv + 32 * (4 * h + 0)),
                           _mm256_or_si256(_mm256_and_si256(ql0, low4),
                                           _mm256_and_si256(_mm256_slli_epi16(qh, 4), bits45)));
        _mm256_store_si256((__m256i *)(qv + 32 * (4 * h + 1)),
                           _mm256_or_si256(_mm256_and_si256(ql1, low4),
                                           _mm256_and_si256(_mm256_slli_epi16(qh, 2), bits45)));
        _mm256_store_si256((__m256i *)(qv + 32 * (4 * h + 2)),
                           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), low4),
                                           _mm256_and_si256(qh, bits45)));
        _mm256_store_si256((__m256i *)(qv + 32 * (4 * h + 3)),
                           _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), low4),
                                           _mm256_and_si256(_mm256_srli_epi16(qh, 2), bits45)));
    }
    const float d = f16_scalar(blk->d);
    const __m512 dv = _mm512_set1_ps(d);
#pragma GCC unroll 8
    for (int k = 0; k < 8; k++) {
        int64_t b = 8 * sb + k;
        const int8_t *xb = xq + b * 64 * S;
        __m512i ia = _mm512_setzero_si512(), ib = _mm512_setzero_si512();
#pragma GCC unroll 8
        for (int s = 0; s < S; s++) {
            __m512i v = bcast_dwords(qv + 32 * k + 4 * s * D, D);
            __m512i x = _mm512_loadu_si512((const void *)(xb + 64 * s));
            if (s * D < 4) ia = _mm512_dpbusd_epi32(ia, v, x);
            else ib = _mm512_dpbusd_epi32(ib, v, x);
        }
        ia = lanes_row_reduce(ia, D);
        ib = lanes_row_reduce(ib, D);
        __m512i i = _mm512_add_epi32(_mm512_mullo_epi32(ia, _mm512_set1_epi32(blk->scales[2 * k])),
                                     _mm512_mullo_epi32(ib, _mm512_set1_epi32(blk->scales[2 * k + 1])));
        a[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(i), _mm512_mul_ps(dv, _mm512_loadu_ps(xd + 16 * b)), a[k]);
    }
    const float *s16 = xs16l + 16 * 16 * sb; /* [16 half-blocks][16 lanes] */
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        c[j] = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)blk->scales[j]), _mm512_loadu_ps(s16 + 16 * j), c[j]);
#pragma GCC unroll 8
    for (int j = 0; j < 8; j++)
        c[j] = _mm512_fmadd_ps(_mm512_set1_ps(d * (float)blk->scales[8 + j]), _mm512_loadu_ps(s16 + 16 * (8 + j)),
                               c[j]);
}

VB_DEFINE_LANES_K(lanes_q4_k, vb_block_q4_k, lanes_q4_k_sb, VB_FINAL_Q4_K)
VB_DEFINE_LANES_K(lanes_q6_k, vb_block_q6_k, lanes_q6_k_sb, VB_FINAL_Q6_K)

/* Y[row][o] for the rows of lane group `group` from its 16 lane sums. */
static VB_ALWAYS_INLINE void lanes_store(const vb_mm_args *a, __m512 acc, int64_t group, int D,
                                         int64_t o) {
    float lane[16];
    _mm512_storeu_ps(lane, acc);
    for (int r = 0; r < 16 / D; r++) {
        int64_t row = group * (16 / D) + r;
        if (row >= a->n_rows) break;
        a->Y[row * a->n_out + o] = lane[r * D]; /* its D lanes hold the same sum */
    }
}

/* W rows o0..o1-1 against all X rows: W rows four at a time sharing the X registers. With
 * several lane groups (more than 16 X rows), W rows in chunks of about 128 KiB that stay in
 * L2 while every group passes over them (W comes from memory once). Each (D, WR) its own
 * unrolled copy of LANES_w. */
#define VB_LANE_W_CHUNK_BYTES (128 * 1024)
#ifndef VB_LANE_PREFETCH_ROWS
#define VB_LANE_PREFETCH_ROWS 16
#endif
#define VB_DEFINE_LANE_ROWS(name, LANES)                                                      \
    static void name(const vb_mm_args *a, int64_t o0, int64_t o1) {                           \
        const vb_x8_lanes *xl = &a->xl;                                                       \
        const int D = xl->D;                                                                  \
        const int64_t nb = a->n_in / 32, gq = nb * 512 / D, gs = nb * 16;                     \
        int64_t chunk = VB_LANE_W_CHUNK_BYTES / a->row_bytes / 4 * 4;                         \
        if (chunk < 4) chunk = 4;                                                             \
        if (xl->n_groups == 1) chunk = o1 - o0;                                               \
        /* W rows are streamed: prefetch the same block two tiles of 4 rows ahead */          \
        const int64_t pf = VB_LANE_PREFETCH_ROWS * a->row_bytes;                              \
        __m512 acc[4];                                                                        \
        for (int64_t c0 = o0; c0 < o1; c0 += chunk) {                                         \
            int64_t c1 = c0 + chunk < o1 ? c0 + chunk : o1;                                   \
            for (int64_t g = 0; g < xl->n_groups; g++) {                                      \
                const int8_t *xq = xl->q + g * gq;                                            \
                const float *xd = xl->d + g * gs;                                             \
                const float *xs = xl->s + g * gs;                                             \
                const float *xs16 = xl->s16 + g * 2 * gs;                                     \
                for (int64_t o = c0; o < c1;) {                                               \
                    int WR = c1 - o >= 4 ? 4 : 1;                                             \
                    const uint8_t *wr[4];                                                     \
                    for (int q = 0; q < 4; q++) wr[q] = a->W + (o + (q < WR ? q : 0)) * a->row_bytes; \
                    switch (D * 8 + WR) {                                                     \
                    case 8 + 1: LANES##_w(wr, nb, xq, xd, xs, xs16, pf, 1, 1, acc); break;    \
                    case 8 + 4: LANES##_w(wr, nb, xq, xd, xs, xs16, pf, 4, 1, acc); break;    \
                    case 16 + 1: LANES##_w(wr, nb, xq, xd, xs, xs16, pf, 1, 2, acc); break;    \
                    case 16 + 4: LANES##_w(wr, nb, xq, xd, xs, xs16, pf, 4, 2, acc); break;    \
                    case 32 + 1: LANES##_w(wr, nb, xq, xd, xs, xs16, pf, 1, 4, acc); break;    \
                    default: LANES##_w(wr, nb, xq, xd, xs, xs16, pf, 4, 4, acc); break;       \
                    }                                                                         \
                    for (int q = 0; q < WR; q++) lanes_store(a, acc[q], g, D, o + q);         \
                    o += WR;                                                                  \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

VB_DEFINE_LANE_ROWS(lane_rows_q8_0, lanes_q8_0)
VB_DEFINE_LANE_ROWS(lane_rows_q4_0, lanes_q4_0)
VB_DEFINE_LANE_ROWS(lane_rows_q4_k, lanes_q4_k)
VB_DEFINE_LANE_ROWS(lane_rows_q6_k, lanes_q6_k)
/* Q4_1, Q5_0, Q5_1, IQ4_NL, Q5_K, IQ4_XS: decoded lane kernels (their own file). */
#include "kernels_simd_decode_lanes.h"

/* The lane product of each type that has one. */
static const vb_rows_fn lane_rows_table[VB_TYPE_COUNT] = {
    [VB_TYPE_Q8_0] = lane_rows_q8_0, [VB_TYPE_Q4_0] = lane_rows_q4_0,   [VB_TYPE_Q4_K] = lane_rows_q4_k,
    [VB_TYPE_Q6_K] = lane_rows_q6_k, [VB_TYPE_Q4_1] = lane_rows_q4_1,   [VB_TYPE_Q5_0] = lane_rows_q5_0,
    [VB_TYPE_Q5_1] = lane_rows_q5_1, [VB_TYPE_IQ4_NL] = lane_rows_iq4_nl, [VB_TYPE_Q5_K] = lane_rows_q5_k,
    [VB_TYPE_IQ4_XS] = lane_rows_iq4_xs, [VB_TYPE_Q2_K] = lane_rows_q2_k, [VB_TYPE_Q3_K] = lane_rows_q3_k,
};
#endif

/* --------------------------------------------------------------- float weight tiles */
/* out[wr * R + r] = dot(W row wr, X row r) for WR = 1 or 2 W rows (w[0], w[1]) and R X rows
 * xf[r] of n elements (any n): a register block of WR x R accumulators (x U independent
 * chains when WR * R is small), so each X vector loaded serves WR W rows and each W vector
 * R X rows. FV_* are the vector width's operations; LOAD_M (masked, 512-bit) or a scalar
 * loop (256-bit) takes the tail. */

#define VB_FTILE_ARGS                                                                         \
    const uint8_t *const *w, int64_t n, const float *const *xf, int64_t pf, int WR, int R, float *out

#if VB_FLOAT_512
#define FV __m512
#define FV_N 16
#define FV_ZERO() _mm512_setzero_ps()
#define FV_LOADX(p) _mm512_loadu_ps(p)
#define FV_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define FV_HSUM(v) _mm512_reduce_add_ps(v)
#define FV_ADD(a, b) _mm512_add_ps(a, b)
#define VB_LOAD_F32(w, i) _mm512_loadu_ps((const float *)(w) + (i))
#define VB_LOAD_F16(w, i) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)(w) + (i))))
#define VB_LOAD_BF16(w, i)                                                                    \
    _mm512_castsi512_ps(_mm512_slli_epi32(                                                    \
        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)((const uint16_t *)(w) + (i)))), 16))
#define VB_LOADM_F32(w, i, m) _mm512_maskz_loadu_ps(m, (const float *)(w) + (i))
#define VB_LOADM_F16(w, i, m) _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(m, (const uint16_t *)(w) + (i)))
#define VB_LOADM_BF16(w, i, m)                                                                \
    _mm512_castsi512_ps(_mm512_slli_epi32(                                                    \
        _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(m, (const uint16_t *)(w) + (i))), 16))
#else
#define FV __m256
#define FV_N 8
#define FV_ZERO() _mm256_setzero_ps()
#define FV_LOADX(p) _mm256_loadu_ps(p)
#define FV_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define FV_HSUM(v) hsum256(v)
#define FV_ADD(a, b) _mm256_add_ps(a, b)
#define VB_LOAD_F32(w, i) _mm256_loadu_ps((const float *)(w) + (i))
#define VB_LOAD_F16(w, i) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)(w) + (i))))
#define VB_LOAD_BF16(w, i)                                                                    \
    _mm256_castsi256_ps(_mm256_slli_epi32(                                                    \
        _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)(w) + (i)))), 16))
#endif
#define VB_SCALAR_F32(w, j) (((const float *)(w))[j])
#define VB_SCALAR_F16(w, j) f16_scalar(((const uint16_t *)(w))[j])
#define VB_SCALAR_BF16(w, j) vb_bf16_to_f32(((const uint16_t *)(w))[j])

#if VB_FLOAT_512
#define VB_FTILE_TAIL(LOAD, LOADM, SCALAR)                                                    \
    for (; i < n; i += FV_N) {                                                                \
        __mmask16 m = n - i >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - i)) - 1);     \
        FV wv[2];                                                                             \
        _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++) wv[q] = LOADM(w[q], i, m);       \
        _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                                 \
            FV xv = _mm512_maskz_loadu_ps(m, xf[r] + i);                                      \
            _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++) acc[q][r][0] =               \
                FV_FMA(wv[q], xv, acc[q][r][0]);                                              \
        }                                                                                     \
    }
#else
#define VB_FTILE_TAIL(LOAD, LOADM, SCALAR)                                                    \
    for (; i < n; i++)                                                                        \
        _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++)                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) tail[q][r] +=                 \
                SCALAR(w[q], i) * xf[r][i];
#endif

#define VB_DEFINE_FTILE(name, LOAD, LOADM, SCALAR, ESIZE)                                            \
    static VB_ALWAYS_INLINE void name(VB_FTILE_ARGS) {                                        \
        /* independent accumulation chains per (W row, X row): about 8 in flight */          \
        const int U = WR * R <= 2 ? 4 : WR * R <= 4 ? 2 : 1;                                  \
        FV acc[2][VB_TILE_ROWS][4];                                                           \
        float tail[2][VB_TILE_ROWS];                                                          \
        _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++)                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                             \
            acc[q][r][0] = acc[q][r][1] = acc[q][r][2] = acc[q][r][3] = FV_ZERO();            \
            tail[q][r] = 0.0f;                                                                \
        }                                                                                     \
        int64_t i = 0;                                                                        \
        for (; i + FV_N * U <= n; i += FV_N * U) {                                            \
            /* W rows are streamed: prefetch pf bytes ahead (pf 0: none) */                   \
            if (pf)                                                                           \
                _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++)                          \
                    _mm_prefetch((const char *)w[q] + (ESIZE) * i + pf, _MM_HINT_T0);         \
            _Pragma("GCC unroll 4") for (int u = 0; u < U; u++) {                             \
                FV wv[2];                                                                     \
                _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++) wv[q] =                  \
                    LOAD(w[q], i + FV_N * u);                                                 \
                _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                         \
                    FV xv = FV_LOADX(xf[r] + i + FV_N * u);                                   \
                    _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++) acc[q][r][u] =       \
                        FV_FMA(wv[q], xv, acc[q][r][u]);                                      \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        for (; i + FV_N <= n; i += FV_N) {                                                    \
            FV wv[2];                                                                         \
            _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++) wv[q] = LOAD(w[q], i);       \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) {                             \
                FV xv = FV_LOADX(xf[r] + i);                                                  \
                _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++) acc[q][r][0] =           \
                    FV_FMA(wv[q], xv, acc[q][r][0]);                                          \
            }                                                                                 \
        }                                                                                     \
        VB_FTILE_TAIL(LOAD, LOADM, SCALAR)                                                    \
        _Pragma("GCC unroll 2") for (int q = 0; q < WR; q++)                                  \
            _Pragma("GCC unroll 4") for (int r = 0; r < R; r++) out[q * R + r] =              \
            FV_HSUM(FV_ADD(FV_ADD(acc[q][r][0], acc[q][r][1]),                                \
                           FV_ADD(acc[q][r][2], acc[q][r][3]))) + tail[q][r];                 \
    }

VB_DEFINE_FTILE(tile_f32, VB_LOAD_F32, VB_LOADM_F32, VB_SCALAR_F32, 4)
VB_DEFINE_FTILE(tile_f16, VB_LOAD_F16, VB_LOADM_F16, VB_SCALAR_F16, 2)
VB_DEFINE_FTILE(tile_bf16, VB_LOAD_BF16, VB_LOADM_BF16, VB_SCALAR_BF16, 2)

/* --------------------------------------------------------------- row loops */

/* For X rows in chunks of VB_CHUNK_ROWS, W rows o0..o1-1, X rows in tiles of up to 4: calls
 * TILE with a constant R so each R gets its own fully unrolled, register-resident copy. */
#define VB_DEFINE_QROWS(name, TILE, BLOCK_ELEMS)                                              \
    static void name(const vb_mm_args *a, int64_t o0, int64_t o1) {                           \
        const vb_x8 *x8 = &a->x8;                                                             \
        int64_t nb = a->n_in / (BLOCK_ELEMS);                                                 \
        /* software prefetch of the W rows: with several X rows the compute per W row      \
           outlasts the hardware prefetcher; with one it still gains 5-20% (Zen 5 VM) */     \
        const int64_t pf = VB_QPREFETCH_ROWS * a->row_bytes;                                  \
        for (int64_t c0 = 0; c0 < a->n_rows; c0 += VB_CHUNK_ROWS) {                           \
            int64_t c1 = c0 + VB_CHUNK_ROWS < a->n_rows ? c0 + VB_CHUNK_ROWS : a->n_rows;     \
            /* the X pointers of every tile of the chunk, set up once for all W rows */       \
            enum { NT_ = VB_CHUNK_ROWS / VB_TILE_ROWS };                                      \
            const int8_t *xq[NT_][VB_TILE_ROWS];                                              \
            const float *xd[NT_][VB_TILE_ROWS], *xs[NT_][VB_TILE_ROWS], *xs16[NT_][VB_TILE_ROWS]; \
            const int n_tiles = (int)((c1 - c0 + VB_TILE_ROWS - 1) / VB_TILE_ROWS);           \
            for (int ti = 0; ti < n_tiles; ti++) {                                            \
                int64_t t = c0 + (int64_t)ti * VB_TILE_ROWS;                                  \
                int R = c1 - t < VB_TILE_ROWS ? (int)(c1 - t) : VB_TILE_ROWS;                 \
                for (int r = 0; r < VB_TILE_ROWS; r++) {                                      \
                    int64_t rr = t + (r < R ? r : 0);                                         \
                    xq[ti][r] = x8->q + rr * x8->n_in;                                        \
                    xd[ti][r] = x8->d + rr * x8->nb;                                          \
                    xs[ti][r] = x8->dsum + rr * x8->nb;                                       \
                    xs16[ti][r] = x8->dsum16 + rr * 2 * x8->nb;                               \
                }                                                                             \
            }                                                                                 \
            for (int64_t o = o0; o < o1; o++) {                                               \
                const uint8_t *wrow = a->W + o * a->row_bytes;                                \
                for (int ti = 0; ti < n_tiles; ti++) {                                        \
                    int64_t t = c0 + (int64_t)ti * VB_TILE_ROWS;                              \
                    int R = c1 - t < VB_TILE_ROWS ? (int)(c1 - t) : VB_TILE_ROWS;             \
                    float out[VB_TILE_ROWS];                                                  \
                    switch (R) {                                                              \
                    case 1: TILE(wrow, nb, xq[ti], xd[ti], xs[ti], xs16[ti], pf, 1, out); break; \
                    case 2: TILE(wrow, nb, xq[ti], xd[ti], xs[ti], xs16[ti], pf, 2, out); break; \
                    case 3: TILE(wrow, nb, xq[ti], xd[ti], xs[ti], xs16[ti], pf, 3, out); break; \
                    default: TILE(wrow, nb, xq[ti], xd[ti], xs[ti], xs16[ti], pf, 4, out); break; \
                    }                                                                         \
                    for (int r = 0; r < R; r++) a->Y[(t + r) * a->n_out + o] = out[r];        \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

/* Float weights: W rows in pairs (the last one alone if the count is odd), X rows in tiles
 * of up to 4, each (WR, R) its own unrolled copy of TILE. */
#define VB_DEFINE_FROWS(name, TILE)                                                           \
    static void name(const vb_mm_args *a, int64_t o0, int64_t o1) {                           \
        int pair = a->n_rows > 1; /* one X row: nothing to share, one W stream is faster */  \
        /* with several rows (slower than memory per W row), software prefetch keeps the     \
           W streams ahead; one row streams fast enough for the hardware prefetcher */       \
        const int64_t pf = a->n_rows > 1 ? VB_FPREFETCH_ROWS * a->row_bytes : 0;              \
        for (int64_t c0 = 0; c0 < a->n_rows; c0 += VB_CHUNK_ROWS) {                           \
            int64_t c1 = c0 + VB_CHUNK_ROWS < a->n_rows ? c0 + VB_CHUNK_ROWS : a->n_rows;     \
            for (int64_t o = o0; o < o1; o += pair ? 2 : 1) {                                 \
                int WR = pair && o + 1 < o1 ? 2 : 1;                                          \
                const uint8_t *w[2] = {a->W + o * a->row_bytes,                               \
                                       a->W + (o + WR - 1) * a->row_bytes};                   \
                for (int64_t t = c0; t < c1; t += VB_TILE_ROWS) {                             \
                    int R = c1 - t < VB_TILE_ROWS ? (int)(c1 - t) : VB_TILE_ROWS;             \
                    const float *xf[VB_TILE_ROWS];                                            \
                    for (int r = 0; r < VB_TILE_ROWS; r++)                                    \
                        xf[r] = a->X + (t + (r < R ? r : 0)) * a->n_in;                       \
                    float out[2 * VB_TILE_ROWS];                                              \
                    switch (WR * 8 + R) {                                                     \
                    case 9: TILE(w, a->n_in, xf, pf, 1, 1, out); break;                       \
                    case 10: TILE(w, a->n_in, xf, pf, 1, 2, out); break;                      \
                    case 11: TILE(w, a->n_in, xf, pf, 1, 3, out); break;                      \
                    case 12: TILE(w, a->n_in, xf, pf, 1, 4, out); break;                      \
                    case 17: TILE(w, a->n_in, xf, pf, 2, 1, out); break;                      \
                    case 18: TILE(w, a->n_in, xf, pf, 2, 2, out); break;                      \
                    case 19: TILE(w, a->n_in, xf, pf, 2, 3, out); break;                      \
                    default: TILE(w, a->n_in, xf, pf, 2, 4, out); break;                      \
                    }                                                                         \
                    for (int q = 0; q < WR; q++)                                              \
                        for (int r = 0; r < R; r++) a->Y[(t + r) * a->n_out + o + q] = out[q * R + r]; \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

VB_DEFINE_QROWS(rows_q8_0, tile_q8_0, VB_QK8_0)
VB_DEFINE_QROWS(rows_q4_0, tile_q4_0, VB_QK4_0)
VB_DEFINE_QROWS(rows_q4_k, tile_q4_k, VB_QK_K)
VB_DEFINE_QROWS(rows_q6_k, tile_q6_k, VB_QK_K)
VB_DEFINE_QROWS(rows_q4_1, tile_q4_1, 32)
VB_DEFINE_QROWS(rows_q5_0, tile_q5_0, 32)
VB_DEFINE_QROWS(rows_q5_1, tile_q5_1, 32)
VB_DEFINE_QROWS(rows_iq4_nl, tile_iq4_nl, 32)
VB_DEFINE_QROWS(rows_q2_k, tile_q2_k, VB_QK_K)
VB_DEFINE_QROWS(rows_q3_k, tile_q3_k, VB_QK_K)
VB_DEFINE_QROWS(rows_q5_k, tile_q5_k, VB_QK_K)
VB_DEFINE_QROWS(rows_iq4_xs, tile_iq4_xs, VB_QK_K)
VB_DEFINE_FROWS(rows_f32, tile_f32)
VB_DEFINE_FROWS(rows_f16, tile_f16)
VB_DEFINE_FROWS(rows_bf16, tile_bf16)

/* The per-row product of each weight type (NULL: not supported). */
static const vb_rows_fn rows_table[VB_TYPE_COUNT] = {
    [VB_TYPE_F32] = rows_f32,       [VB_TYPE_F16] = rows_f16,       [VB_TYPE_BF16] = rows_bf16,
    [VB_TYPE_Q8_0] = rows_q8_0,     [VB_TYPE_Q4_0] = rows_q4_0,     [VB_TYPE_Q4_1] = rows_q4_1,
    [VB_TYPE_Q5_0] = rows_q5_0,     [VB_TYPE_Q5_1] = rows_q5_1,     [VB_TYPE_IQ4_NL] = rows_iq4_nl,
    [VB_TYPE_Q2_K] = rows_q2_k,     [VB_TYPE_Q3_K] = rows_q3_k,     [VB_TYPE_Q4_K] = rows_q4_k,
    [VB_TYPE_Q5_K] = rows_q5_k,     [VB_TYPE_Q6_K] = rows_q6_k,     [VB_TYPE_IQ4_XS] = rows_iq4_xs,
};

void VB_SIMD(vb_mm_rows)(const vb_mm_args *a, int64_t o0, int64_t o1) {
#if VB_Q_512
    if (a->xl.q && a->type < VB_TYPE_COUNT && lane_rows_table[a->type]) {
        lane_rows_table[a->type](a, o0, o1);
        return;
    }
#endif
    if (a->type < VB_TYPE_COUNT && rows_table[a->type]) rows_table[a->type](a, o0, o1);
}

/* --------------------------------------------------------------- packed float weights */
/* The product with weights packed by vb_pack_weights: packed[b][i][16] = W[16 b + l][i].
 * A tile of B blocks (16 outputs each: one zmm, or two ymm on AVX2) and R X rows keeps B * R
 * vectors of 16 accumulators; per input element i it loads and converts the B W vectors once
 * and meets each with broadcast(X[r][i]) in one FMA per X row. Each output is a single FMA
 * chain over i = 0..n_in-1 in order, so its bits do not depend on B, R, the row count or the
 * thread split. Tiles: up to PK_RMAX X rows; B as large as the register budget allows for the
 * rows of the first tile (PK_ACC vectors of 16 accumulators), at least 8 chains in flight
 * where the rows allow (FMA latency 4 x 2 ports), except one X row against a W too large for
 * the caches (4 block streams then: see VB_DEFINE_PROWS). */

#if VB_FLOAT_512
#define PK_NH 1    /* vectors per 16 outputs */
#define PK_RMAX 8  /* X rows per tile */
#define PK_ACC 16  /* accumulator budget, in blocks x rows */
#define PK_LOAD_F32(p) _mm512_loadu_ps(p)
#define PK_LOAD_F16(p) _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p)))
#define PK_LOAD_BF16(p)                                                                       \
    _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(p))), 16))
#define PK_BCAST(p) _mm512_set1_ps(*(p))
#else
#define PK_NH 2
#define PK_RMAX 4
#define PK_ACC 4 /* x 2 ymm each: 8 accumulators + 2 B W vectors + 1 broadcast */
#define PK_LOAD_F32(p) _mm256_loadu_ps(p)
#define PK_LOAD_F16(p) _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p)))
#define PK_LOAD_BF16(p)                                                                       \
    _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(p))), 16))
#define PK_BCAST(p) _mm256_set1_ps(*(p))
#endif
#define PK_BMAX 8
#ifndef VB_PK_PREFETCH_BYTES
/* software prefetch distance per block stream (Zen 5 VM, F16 Qwen3 0.6B, 16 rows: none 131
   tok/s, 512 B 164, 1 KiB 179, 2 KiB 193) */
#define VB_PK_PREFETCH_BYTES 2048
#endif
#ifndef VB_PK_CACHED_BYTES
#define VB_PK_CACHED_BYTES ((int64_t)4 << 20) /* W up to this: taken as cache-resident */
#endif

/* Y rows y[r] (pointing at output 16 b0 of X row r), n_valid outputs from there (the last
 * block may be partial). w: block b0 of the packed matrix, bstride elements between blocks. */
#define VB_DEFINE_PTILE(name, ETYPE, LOAD)                                                    \
    static VB_ALWAYS_INLINE void name(const ETYPE *w, int64_t bstride, int64_t n_in,          \
                                      const float *const *x, int B, int R, float *const *y,   \
                                      int64_t n_valid, int64_t pf) {                          \
        FV acc[PK_BMAX][PK_RMAX][PK_NH];                                                      \
        _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)                                   \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)                               \
                _Pragma("GCC unroll 2") for (int h = 0; h < PK_NH; h++) acc[b][r][h] = FV_ZERO(); \
        /* input elements per 64-byte line of a block (1 for F32, 2 for F16 / BF16) */       \
        enum { STEP = 64 / (VB_PACK_LANES * (int)sizeof(ETYPE)) };                            \
        int64_t i = 0;                                                                        \
        for (; i < n_in; i += STEP) {                                                         \
            /* the B block streams, pf bytes ahead (pf 0: none; a prefetch past the end of  \
               the matrix is harmless) */                                                      \
            if (pf)                                                                           \
                _Pragma("GCC unroll 8") for (int b = 0; b < B; b++) _mm_prefetch(             \
                    (const char *)(w + b * bstride + i * VB_PACK_LANES) + pf, _MM_HINT_T0);   \
            _Pragma("GCC unroll 2") for (int s = 0; s < STEP; s++) {                          \
                if (STEP > 1 && i + s >= n_in) break;                                         \
                FV wv[PK_BMAX][PK_NH];                                                        \
                _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)                           \
                    _Pragma("GCC unroll 2") for (int h = 0; h < PK_NH; h++) wv[b][h] =        \
                        LOAD(w + b * bstride + (i + s) * VB_PACK_LANES + h * FV_N);           \
                _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                         \
                    FV xb = PK_BCAST(x[r] + i + s);                                           \
                    _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)                       \
                        _Pragma("GCC unroll 2") for (int h = 0; h < PK_NH; h++) acc[b][r][h] = \
                            FV_FMA(wv[b][h], xb, acc[b][r][h]);                               \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)                                   \
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {                             \
                int64_t n = n_valid - (int64_t)b * VB_PACK_LANES;                              \
                if (n >= VB_PACK_LANES) {                                                     \
                    _Pragma("GCC unroll 2") for (int h = 0; h < PK_NH; h++)                   \
                        FV_STOREU(y[r] + b * VB_PACK_LANES + h * FV_N, acc[b][r][h]);         \
                } else if (n > 0) {                                                           \
                    float part[VB_PACK_LANES];                                                \
                    _Pragma("GCC unroll 2") for (int h = 0; h < PK_NH; h++)                   \
                        FV_STOREU(part + h * FV_N, acc[b][r][h]);                             \
                    memcpy(y[r] + b * VB_PACK_LANES, part, (size_t)n * sizeof(float));        \
                }                                                                             \
            }                                                                                 \
    }

#if VB_FLOAT_512
#define FV_STOREU(p, v) _mm512_storeu_ps(p, v)
#else
#define FV_STOREU(p, v) _mm256_storeu_ps(p, v)
#endif

VB_DEFINE_PTILE(ptile_f32, float, PK_LOAD_F32)
VB_DEFINE_PTILE(ptile_f16, uint16_t, PK_LOAD_F16)
VB_DEFINE_PTILE(ptile_bf16, uint16_t, PK_LOAD_BF16)

/* Output blocks [b0, b1) for all X rows: block groups of B (8, 4, 2 or 1, at most the budget
 * for the first tile's rows), then X row tiles of up to PK_RMAX rows against the group (its W
 * stays in L1/L2 across the tiles); each (B, R) its own unrolled copy of TILE. */
#define VB_PK_CASE(TILE, BB, RR)                                                              \
    case (BB) * 16 + (RR): TILE(w, bstride, n_in, x, BB, RR, y, n_valid, pf); break;
#if VB_FLOAT_512 /* the (B, R) pairs the tiling can ask for: B * R <= PK_ACC, R <= PK_RMAX */
#define VB_PK_CASES(TILE)                                                                     \
    VB_PK_CASE(TILE, 8, 1) VB_PK_CASE(TILE, 8, 2)                                             \
    VB_PK_CASE(TILE, 4, 1) VB_PK_CASE(TILE, 4, 2) VB_PK_CASE(TILE, 4, 3) VB_PK_CASE(TILE, 4, 4) \
    VB_PK_CASE(TILE, 2, 1) VB_PK_CASE(TILE, 2, 2) VB_PK_CASE(TILE, 2, 3) VB_PK_CASE(TILE, 2, 4) \
    VB_PK_CASE(TILE, 2, 5) VB_PK_CASE(TILE, 2, 6) VB_PK_CASE(TILE, 2, 7) VB_PK_CASE(TILE, 2, 8) \
    VB_PK_CASE(TILE, 1, 1) VB_PK_CASE(TILE, 1, 2) VB_PK_CASE(TILE, 1, 3) VB_PK_CASE(TILE, 1, 4) \
    VB_PK_CASE(TILE, 1, 5) VB_PK_CASE(TILE, 1, 6) VB_PK_CASE(TILE, 1, 7) VB_PK_CASE(TILE, 1, 8)
#else
#define VB_PK_CASES(TILE)                                                                     \
    VB_PK_CASE(TILE, 4, 1) VB_PK_CASE(TILE, 2, 1) VB_PK_CASE(TILE, 2, 2)                      \
    VB_PK_CASE(TILE, 1, 1) VB_PK_CASE(TILE, 1, 2) VB_PK_CASE(TILE, 1, 3) VB_PK_CASE(TILE, 1, 4)
#endif
#define VB_DEFINE_PROWS(name, ETYPE, TILE)                                                    \
    static void name(const vb_mm_args *a, int64_t b0, int64_t b1) {                           \
        const int64_t n_in = a->n_in, bstride = n_in * VB_PACK_LANES;                         \
        const int rt = a->n_rows < PK_RMAX ? (int)a->n_rows : PK_RMAX;                        \
        const int64_t pf = VB_PK_PREFETCH_BYTES;                                              \
        int bcap = PK_ACC / rt;                                                               \
        bcap = bcap >= 8 ? 8 : bcap >= 4 ? 4 : bcap >= 2 ? 2 : 1;                             \
        /* one X row and a W larger than the caches: memory-bound, and 4 block streams read \
           DRAM faster than 8 (Zen 5 VM: 8 streams made 1-row decode of F16 Qwen3 0.6B and   \
           GPT-2 4-5% slower than the unpacked path, 4 streams as fast) */                    \
        if (a->n_rows == 1 && n_in * a->n_out * (int64_t)sizeof(ETYPE) > VB_PK_CACHED_BYTES &&    \
            bcap > 4)                                                                         \
            bcap = 4;                                                                         \
        for (int64_t b = b0; b < b1;) {                                                       \
            int B = bcap;                                                                     \
            while (B > b1 - b) B /= 2;                                                        \
            const ETYPE *w = (const ETYPE *)a->W + b * bstride;                               \
            const int64_t n_valid = a->n_out - b * VB_PACK_LANES;                             \
            for (int64_t t = 0; t < a->n_rows; t += PK_RMAX) {                                \
                int R = a->n_rows - t < PK_RMAX ? (int)(a->n_rows - t) : PK_RMAX;             \
                const float *x[PK_RMAX];                                                      \
                float *y[PK_RMAX];                                                            \
                for (int r = 0; r < PK_RMAX; r++) {                                           \
                    int64_t row = t + (r < R ? r : 0);                                        \
                    x[r] = a->X + row * n_in;                                                 \
                    y[r] = a->Y + row * a->n_out + b * VB_PACK_LANES;                         \
                }                                                                             \
                switch (B * 16 + R) {                                                         \
                    VB_PK_CASES(TILE)                                                         \
                default: break;                                                               \
                }                                                                             \
            }                                                                                 \
            b += B;                                                                           \
        }                                                                                     \
    }

VB_DEFINE_PROWS(prows_f32, float, ptile_f32)
VB_DEFINE_PROWS(prows_f16, uint16_t, ptile_f16)
VB_DEFINE_PROWS(prows_bf16, uint16_t, ptile_bf16)

#if VB_Q_512
/* --------------------------------------------------------------- packed Q8_0 (VNNI) */
/* Weights packed by vb_pack_weights (kernels.h): per output block of 16 rows and input block
 * k, 8 vectors of [16 rows][4 unsigned bytes] and 16 F16 scales; X in the row-tile panel of
 * kernels_internal.h (vb_q8_panel_*: per input block the R rows' dwords, -128 x block sums and
 * scales side by side, one pointer for the whole tile). A tile of B output blocks and R X rows
 * keeps B x R int32 vectors (one input block's dots, started at -128 x the X block sum so they
 * end exact; two chains each where registers allow) and B x R float vectors; per input block:
 * 8 x B weight loads, each met by R vpdpbusd against a broadcast X dword, then per (block, row)
 * one convert and one FMA by dw * dx (rounded first), as the portable loop (kernels_packed.c). */
#define PQ_ACC 8 /* budget of (output block, X row) pairs */
static VB_ALWAYS_INLINE void ptile_q8_0(const uint8_t *w, int64_t bstride, int64_t nb,
                                        const int32_t *panel, int B, int R, float *const *y,
                                        int64_t n_valid) {
    __m512 acc[PQ_ACC][VB_Q8_PANEL_ROWS];
    _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[b][r] = _mm512_setzero_ps();
    /* vpdpbusd's latency needs more than the B x R chains in flight: even / odd dwords in two
       chains where registers allow */
    enum { H = 2 };
    const int NH = R >= 2 ? H : 1;
    for (int64_t k = 0; k < nb; k++, panel += VB_Q8_PANEL_STRIDE(R)) {
        __m512i dot[H][PQ_ACC][VB_Q8_PANEL_ROWS];
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
            const __m512i start = _mm512_set1_epi32(panel[VB_Q8_PANEL_START(R) + r]);
            _Pragma("GCC unroll 8") for (int b = 0; b < B; b++) {
                dot[0][b][r] = start;
                dot[1][b][r] = _mm512_setzero_si512();
            }
        }
        const uint8_t *wk = w + 512 * k;
        _Pragma("GCC unroll 8") for (int c = 0; c < 8; c++) {
            const int h = NH > 1 ? c & 1 : 0;
            __m512i wv[PQ_ACC];
            _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)
                wv[b] = _mm512_loadu_si512((const void *)(wk + b * bstride + 64 * c));
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) {
                const __m512i xb = _mm512_set1_epi32(panel[c * R + r]);
                _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)
                    dot[h][b][r] = _mm512_dpbusd_epi32(dot[h][b][r], wv[b], xb);
            }
        }
        if (NH > 1)
            _Pragma("GCC unroll 8") for (int b = 0; b < B; b++)
                _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
                    dot[0][b][r] = _mm512_add_epi32(dot[0][b][r], dot[1][b][r]);
        const float *dx = (const float *)(panel + VB_Q8_PANEL_SCALE(R));
        _Pragma("GCC unroll 8") for (int b = 0; b < B; b++) {
            const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256(
                (const __m256i *)(w + b * bstride + 512 * nb + 32 * k)));
            _Pragma("GCC unroll 8") for (int r = 0; r < R; r++) acc[b][r] = _mm512_fmadd_ps(
                _mm512_cvtepi32_ps(dot[0][b][r]), _mm512_mul_ps(dw, _mm512_set1_ps(dx[r])), acc[b][r]);
        }
    }
    _Pragma("GCC unroll 8") for (int b = 0; b < B; b++) {
        int64_t n = n_valid - (int64_t)b * VB_PACK_LANES;
        if (n <= 0) break;
        __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        _Pragma("GCC unroll 8") for (int r = 0; r < R; r++)
            _mm512_mask_storeu_ps(y[r] + b * VB_PACK_LANES, m, acc[b][r]);
    }
}

#define VB_PQ_CASE(BB, RR)                                                                    \
    case (BB) * 16 + (RR): ptile_q8_0(w, bstride, nb, panel, BB, RR, y, n_valid); break;
static void prows_q8_0(const vb_mm_args *a, int64_t b0, int64_t b1) {
    const int64_t nb = a->n_in / 32, bstride = nb * VB_PACK_Q8_BLOCK_BYTES;
    const int rt = a->n_rows < VB_Q8_PANEL_ROWS ? (int)a->n_rows : VB_Q8_PANEL_ROWS;
    int bcap = PQ_ACC / rt;
    bcap = bcap >= 8 ? 8 : bcap >= 4 ? 4 : bcap >= 2 ? 2 : 1;
    for (int64_t b = b0; b < b1;) {
        int B = bcap;
        while (B > b1 - b) B /= 2;
        const uint8_t *w = a->W + b * bstride;
        const int64_t n_valid = a->n_out - b * VB_PACK_LANES;
        for (int64_t t = 0; t < a->n_rows; t += VB_Q8_PANEL_ROWS) {
            int R = a->n_rows - t < VB_Q8_PANEL_ROWS ? (int)(a->n_rows - t) : VB_Q8_PANEL_ROWS;
            const int32_t *panel =
                a->panel + t / VB_Q8_PANEL_ROWS * nb * VB_Q8_PANEL_STRIDE(VB_Q8_PANEL_ROWS);
            float *y[VB_Q8_PANEL_ROWS];
            for (int r = 0; r < VB_Q8_PANEL_ROWS; r++)
                y[r] = a->Y + (t + (r < R ? r : 0)) * a->n_out + b * VB_PACK_LANES;
            switch (B * 16 + R) {
                VB_PQ_CASE(8, 1) VB_PQ_CASE(4, 1) VB_PQ_CASE(4, 2) VB_PQ_CASE(2, 1)
                VB_PQ_CASE(2, 2) VB_PQ_CASE(2, 3) VB_PQ_CASE(2, 4) VB_PQ_CASE(1, 1)
                VB_PQ_CASE(1, 2) VB_PQ_CASE(1, 3) VB_PQ_CASE(1, 4) VB_PQ_CASE(1, 5)
                VB_PQ_CASE(1, 6) VB_PQ_CASE(1, 7) VB_PQ_CASE(1, 8)
            default: break;
            }
        }
        b += B;
    }
}
#endif

void VB_SIMD(vb_mm_packed)(const vb_mm_args *a, int64_t b0, int64_t b1) {
    switch (a->type) {
    case VB_TYPE_F32: prows_f32(a, b0, b1); break;
    case VB_TYPE_F16: prows_f16(a, b0, b1); break;
    case VB_TYPE_BF16: prows_bf16(a, b0, b1); break;
#if VB_Q_512
    case VB_TYPE_Q8_0: prows_q8_0(a, b0, b1); break;
#endif
    default: break;
    }
}
