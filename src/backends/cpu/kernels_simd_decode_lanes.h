/* kernels_simd_decode_lanes.h - lane kernels (AVX-512 VNNI, several X rows; see the lane kernels
 * of kernels_simd_template.h and vb_x8_lanes) for the decoded types: Q4_1, Q5_0, Q5_1, IQ4_NL,
 * Q5_K, IQ4_XS (scales per block of 32) and Q2_K, Q3_K (integer scales per 16: the two halves'
 * dots times their scales, offsets per 16 against dsum16, in the order of the per-row tile's
 * corr, as the Q6_K lane kernel does). Included by kernels_simd_template.h inside its
 * VB_Q_512 part, after the lane helpers. Per W row, each group of 8 blocks (256 weights) is
 * decoded once by the type's group decoder (kernels_simd_decode.h) into a 256-byte buffer whose
 * dwords are broadcast D at a time against the lane vectors; per block b, lane-wise
 *   a[b % 8] = fma(i_b, f_b * dx, a[b % 8]),   m[b % 8] = fma(o_b, dsum, m[b % 8]),
 * blocks after the last group a1 += (f dx) i, m1 += o dsum; result (hsum(a) + a1) +
 * (hsum(m) + m1), the hsums in hsum256's order: exactly the operations, in the same order, of
 * the per-row tile VB_DEFINE_TILE_DEC, so a K-row product gives each row its one-row bits. */

#define VB_DEFINE_LANES_DEC(name, DEC_GROUP, DEC1, BLOCK_BYTES, GROUP_BYTES, SIGNED, LSC)      \
    /* one group of 8 blocks (g) of one W row into the accumulators */                        \
    static VB_ALWAYS_INLINE void name##_group(const uint8_t *wrow, int64_t g, const int8_t *xq, \
                                              const float *xd, const float *xsl,               \
                                              const float *xs16l, int64_t pf, int D, __m512 *a, \
                                              __m512 *m) {                                     \
        const int S = 8 / D;                                                                  \
        for (int l = 0; l < (GROUP_BYTES); l += 64)                                           \
            _mm_prefetch((const char *)wrow + g * (GROUP_BYTES) + pf + l, _MM_HINT_T0);       \
        vb_wdec dw;                                                                           \
        DEC_GROUP(wrow, g, &dw);                                                              \
        if (SIGNED) { /* w + 128 unsigned, -128 f against dsum (as the per-row tile) */       \
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) dw.q[k] =                     \
                _mm256_xor_si256(dw.q[k], _mm256_set1_epi8((char)0x80));                      \
            dw.o = _mm256_mul_ps(_mm256_set1_ps(-128.0f), dw.f);                               \
        }                                                                                     \
        __attribute__((aligned(32))) uint8_t qv[256];                                         \
        float f[8], o[8], o16[16];                                                            \
        int32_t sc[8][8];                                                                     \
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)                                   \
            _mm256_store_si256((__m256i *)(qv + 32 * k), dw.q[k]);                            \
        _mm256_storeu_ps(f, dw.f);                                                            \
        if (LSC) {                                                                            \
            _mm256_storeu_ps(o16, dw.o16[0]);                                                 \
            _mm256_storeu_ps(o16 + 8, dw.o16[1]);                                             \
            _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++)                               \
                _mm256_storeu_si256((__m256i *)sc[k], dw.lsc[k]);                             \
        } else {                                                                              \
            _mm256_storeu_ps(o, dw.o);                                                        \
        }                                                                                     \
        _Pragma("GCC unroll 8") for (int k = 0; k < 8; k++) {                                 \
            const int64_t b = 8 * g + k;                                                      \
            const int8_t *xb = xq + b * 64 * S;                                               \
            __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512(), i;              \
            if (LSC) { /* the two 16-element halves in their own chains, times their scales */ \
                _Pragma("GCC unroll 8") for (int s = 0; s < S; s++) {                         \
                    __m512i v = bcast_dwords(qv + 32 * k + 4 * s * D, D);                     \
                    if (s * D < 4) i0 = _mm512_dpbusd_epi32(i0, v, VB_XMEM(s));               \
                    else i1 = _mm512_dpbusd_epi32(i1, v, VB_XMEM(s));                         \
                }                                                                             \
                i = _mm512_add_epi32(_mm512_mullo_epi32(lanes_row_reduce(i0, D), _mm512_set1_epi32(sc[k][0])), \
                                     _mm512_mullo_epi32(lanes_row_reduce(i1, D), _mm512_set1_epi32(sc[k][4]))); \
            } else {                                                                          \
                _Pragma("GCC unroll 8") for (int s = 0; s < S; s++) {                         \
                    __m512i v = bcast_dwords(qv + 32 * k + 4 * s * D, D);                     \
                    if (s & 1) i1 = _mm512_dpbusd_epi32(i1, v, VB_XMEM(s));                   \
                    else i0 = _mm512_dpbusd_epi32(i0, v, VB_XMEM(s));                         \
                }                                                                             \
                i = lanes_row_reduce(S > 1 ? _mm512_add_epi32(i0, i1) : i0, D);               \
            }                                                                                 \
            __m512 fi = _mm512_cvtepi32_ps(i);                                                \
            a[k] = _mm512_fmadd_ps(fi, _mm512_mul_ps(_mm512_set1_ps(f[k]), _mm512_loadu_ps(xd + 16 * b)), a[k]); \
            if (!LSC) m[k] = _mm512_fmadd_ps(_mm512_set1_ps(o[k]), _mm512_loadu_ps(xsl + 16 * b), m[k]); \
        }                                                                                     \
        if (LSC) { /* offsets per 16: lane j of the per-row tile's corr, halves j then 8 + j */ \
            const float *s16 = xs16l + 16 * 16 * g;                                           \
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                               \
                m[j] = _mm512_fmadd_ps(_mm512_set1_ps(o16[j]), _mm512_loadu_ps(s16 + 16 * j), m[j]); \
            _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++)                               \
                m[j] = _mm512_fmadd_ps(_mm512_set1_ps(o16[8 + j]), _mm512_loadu_ps(s16 + 16 * (8 + j)), m[j]); \
        }                                                                                     \
    }                                                                                         \
    /* the blocks after the last group, then the result */                                    \
    static VB_ALWAYS_INLINE __m512 name##_final(const uint8_t *wrow, int64_t nb, const int8_t *xq, \
                                                const float *xd, const float *xsl, int D,      \
                                                const __m512 *a, const __m512 *m) {            \
        const int S = 8 / D;                                                                  \
        __m512 a1 = _mm512_setzero_ps(), m1 = a1;                                             \
        for (int64_t b = nb / 8 * 8; b < nb; b++) {                                           \
            float f, o;                                                                       \
            __m256i q = DEC1(wrow + b * (BLOCK_BYTES), &f, &o);                               \
            if (SIGNED) q = _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80)), o = -128.0f * f; \
            __attribute__((aligned(32))) uint8_t qv[32];                                      \
            _mm256_store_si256((__m256i *)qv, q);                                             \
            const int8_t *xb = xq + b * 64 * S;                                               \
            __m512i i0 = _mm512_setzero_si512(), i1 = _mm512_setzero_si512();                 \
            for (int s = 0; s < S; s++) {                                                     \
                __m512i v = bcast_dwords(qv + 4 * s * D, D);                                  \
                if (s & 1) i1 = _mm512_dpbusd_epi32(i1, v, VB_XMEM(s));                       \
                else i0 = _mm512_dpbusd_epi32(i0, v, VB_XMEM(s));                             \
            }                                                                                 \
            __m512 fi = _mm512_cvtepi32_ps(lanes_row_reduce(S > 1 ? _mm512_add_epi32(i0, i1) : i0, D)); \
            a1 = _mm512_add_ps(a1, _mm512_mul_ps(_mm512_mul_ps(_mm512_set1_ps(f), _mm512_loadu_ps(xd + 16 * b)), fi)); \
            m1 = _mm512_add_ps(m1, _mm512_mul_ps(_mm512_set1_ps(o), _mm512_loadu_ps(xsl + 16 * b))); \
        }                                                                                     \
        return _mm512_add_ps(_mm512_add_ps(lanes_hsum8_order(a), a1),                         \
                             _mm512_add_ps(lanes_hsum8_order(m), m1));                         \
    }                                                                                         \
    static VB_ALWAYS_INLINE void name##_w(VB_LANE_ARGS_W) {                                   \
        const int64_t ng = nb / 8;                                                            \
        if (nb * 512 / D <= VB_LANE_L1_BYTES) {                                               \
            for (int q = 0; q < WR; q++) {                                                    \
                __m512 a[8], m[8];                                                            \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a[j] = m[j] = _mm512_setzero_ps(); \
                for (int64_t g = 0; g < ng; g++) name##_group(wrows[q], g, xq, xd, xsl, xs16l, pf, D, a, m); \
                acc_out[q] = name##_final(wrows[q], nb, xq, xd, xsl, D, a, m);                \
            }                                                                                 \
            return;                                                                           \
        }                                                                                     \
        __m512 av[4][8], mv[4][8]; /* per W row; kept across chunks */                        \
        for (int q = 0; q < WR; q++)                                                          \
            for (int j = 0; j < 8; j++) av[q][j] = mv[q][j] = _mm512_setzero_ps();            \
        for (int64_t c0 = 0; c0 < ng; c0 += 4) {                                              \
            int64_t c1 = c0 + 4 < ng ? c0 + 4 : ng;                                           \
            for (int q = 0; q < WR; q++) {                                                    \
                __m512 a[8], m[8];                                                            \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) a[j] = av[q][j], m[j] = mv[q][j]; \
                for (int64_t g = c0; g < c1; g++) name##_group(wrows[q], g, xq, xd, xsl, xs16l, pf, D, a, m); \
                _Pragma("GCC unroll 8") for (int j = 0; j < 8; j++) av[q][j] = a[j], mv[q][j] = m[j]; \
            }                                                                                 \
        }                                                                                     \
        for (int q = 0; q < WR; q++) acc_out[q] = name##_final(wrows[q], nb, xq, xd, xsl, D, av[q], mv[q]); \
    }

/*                  name          group decoder        one-block decoder  block  group bytes  signed  lsc */
VB_DEFINE_LANES_DEC(lanes_q4_1,   vb_dec_q4_1_group,   vb_dec_q4_1,   20,  160, 0, 0)
VB_DEFINE_LANES_DEC(lanes_q5_0,   vb_dec_q5_0_group,   vb_dec_q5_0,   22,  176, 0, 0)
VB_DEFINE_LANES_DEC(lanes_q5_1,   vb_dec_q5_1_group,   vb_dec_q5_1,   24,  192, 0, 0)
VB_DEFINE_LANES_DEC(lanes_iq4_nl, vb_dec_iq4_nl_group, vb_dec_iq4_nl, 18,  144, 1, 0)
VB_DEFINE_LANES_DEC(lanes_q5_k,   vb_dec_q5_k,         vb_dec_none,   176, 176, 0, 0)
VB_DEFINE_LANES_DEC(lanes_iq4_xs, vb_dec_iq4_xs,       vb_dec_none,   136, 136, 1, 0)
VB_DEFINE_LANES_DEC(lanes_q2_k,   vb_dec_q2_k,         vb_dec_none,   84,  84,  0, 1)
VB_DEFINE_LANES_DEC(lanes_q3_k,   vb_dec_q3_k,         vb_dec_none,   110, 110, 0, 1)

VB_DEFINE_LANE_ROWS(lane_rows_q4_1, lanes_q4_1)
VB_DEFINE_LANE_ROWS(lane_rows_q5_0, lanes_q5_0)
VB_DEFINE_LANE_ROWS(lane_rows_q5_1, lanes_q5_1)
VB_DEFINE_LANE_ROWS(lane_rows_iq4_nl, lanes_iq4_nl)
VB_DEFINE_LANE_ROWS(lane_rows_q5_k, lanes_q5_k)
VB_DEFINE_LANE_ROWS(lane_rows_iq4_xs, lanes_iq4_xs)
VB_DEFINE_LANE_ROWS(lane_rows_q2_k, lanes_q2_k)
VB_DEFINE_LANE_ROWS(lane_rows_q3_k, lanes_q3_k)
