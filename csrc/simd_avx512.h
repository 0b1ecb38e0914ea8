/*
 * AVX-512 (F, DQ, BW, VL) vector operations for float32 (16 lanes) and float64 (8 lanes), op
 * for op the names of simd_avx2.h with the prefixes avx512_f32_ / avx512_f64_, and the
 * storage ops of bfloat16 and float16 (avx512_bf16_ / avx512_f16_: 16 elements to and from
 * float32 lanes). Tails use masked loads and stores (masked-off lanes are never touched, so
 * they cannot fault).
 */
#ifndef FASTLOSS_SIMD_AVX512_H
#define FASTLOSS_SIMD_AVX512_H

#include "fastloss.h"
#include "half.h"

#if FL_HAVE_AVX2_BUILD
#include <immintrin.h>

#define FL_AVX512 __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c")))
#define FL_AVX512_INLINE                                                                     \
    static inline __attribute__((target("avx512f,avx512dq,avx512bw,avx512vl,avx2,fma,f16c"), always_inline))

/* ---- float32 ---------------------------------------------------------------------- */
#define avx512_f32_LANES 16
typedef __m512 avx512_f32_v;
typedef __mmask16 avx512_f32_m;
typedef struct { __m512d lo, hi; } avx512_f32_acc;

FL_AVX512_INLINE __m512 avx512_f32_set1(float a) { return _mm512_set1_ps(a); }
FL_AVX512_INLINE __m512 avx512_f32_load(const float *p) { return _mm512_loadu_ps(p); }
FL_AVX512_INLINE void avx512_f32_store(float *p, __m512 v) { _mm512_storeu_ps(p, v); }
FL_AVX512_INLINE __m512 avx512_f32_loadn(const float *p, fl_index n, float fill)
{
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), (__mmask16)((1u << n) - 1u), p);
}
FL_AVX512_INLINE void avx512_f32_storen(float *p, __m512 v, fl_index n)
{
    _mm512_mask_storeu_ps(p, (__mmask16)((1u << n) - 1u), v);
}
FL_AVX512_INLINE __m512 avx512_f32_add(__m512 a, __m512 b) { return _mm512_add_ps(a, b); }
FL_AVX512_INLINE __m512 avx512_f32_sub(__m512 a, __m512 b) { return _mm512_sub_ps(a, b); }
FL_AVX512_INLINE __m512 avx512_f32_mul(__m512 a, __m512 b) { return _mm512_mul_ps(a, b); }
/* fmadd/fnmadd round once (simd_exp.h picks its polynomial by this) */
#define avx512_f32_FUSED_FMA 1
FL_AVX512_INLINE __m512 avx512_f32_fmadd(__m512 a, __m512 b, __m512 c) { return _mm512_fmadd_ps(a, b, c); }
FL_AVX512_INLINE __m512 avx512_f32_fnmadd(__m512 a, __m512 b, __m512 c) { return _mm512_fnmadd_ps(a, b, c); }
FL_AVX512_INLINE __m512 avx512_f32_max(__m512 a, __m512 b) { return _mm512_max_ps(a, b); }
FL_AVX512_INLINE __mmask16 avx512_f32_gt(__m512 a, __m512 b) { return _mm512_cmp_ps_mask(a, b, _CMP_GT_OQ); }
FL_AVX512_INLINE __mmask16 avx512_f32_lt(__m512 a, __m512 b) { return _mm512_cmp_ps_mask(a, b, _CMP_LT_OQ); }
FL_AVX512_INLINE __m512 avx512_f32_select(__mmask16 m, __m512 a, __m512 b) { return _mm512_mask_blend_ps(m, b, a); }
FL_AVX512_INLINE __m512 avx512_f32_pow2_magic(__m512 t, __m512 magic)
{
    __m512i n = _mm512_sub_epi32(_mm512_castps_si512(t), _mm512_castps_si512(magic));
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(n, _mm512_set1_epi32(127)), 23));
}
/* vscalefps: p * 2^n straight from the float n, with exact underflow to 0 (simd_exp.h uses
 * it instead of building 2^n from integer bits plus a range select). */
#define avx512_f32_HAS_SCALEF 1
FL_AVX512_INLINE __m512 avx512_f32_scalef(__m512 p, __m512 n) { return _mm512_scalef_ps(p, n); }
FL_AVX512_INLINE __m512 avx512_f32_div(__m512 a, __m512 b) { return _mm512_div_ps(a, b); }
/* x positive, normal, finite: exponent as a float, mantissa in [1, 2) (see simd_avx2.h) */
FL_AVX512_INLINE __m512 avx512_f32_getexp_mant(__m512 x, __m512 *m)
{
    *m = _mm512_getmant_ps(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    return _mm512_getexp_ps(x);
}
FL_AVX512_INLINE float avx512_f32_hmax(__m512 v) { return _mm512_reduce_max_ps(v); }
FL_AVX512_INLINE avx512_f32_acc avx512_f32_acc_zero(void)
{
    avx512_f32_acc r = {_mm512_setzero_pd(), _mm512_setzero_pd()};
    return r;
}
FL_AVX512_INLINE avx512_f32_acc avx512_f32_acc_add(avx512_f32_acc a, __m512 v)
{
    __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    a.lo = _mm512_add_pd(a.lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
    a.hi = _mm512_add_pd(a.hi, _mm512_cvtps_pd(hi));
    return a;
}
FL_AVX512_INLINE void avx512_f32_acc_store(double *out, avx512_f32_acc a)
{
    _mm512_storeu_pd(out, a.lo);
    _mm512_storeu_pd(out + 8, a.hi);
}
FL_AVX512_INLINE double avx512_f32_acc_hsum(avx512_f32_acc a)
{
    return _mm512_reduce_add_pd(_mm512_add_pd(a.lo, a.hi));
}

/* ---- float64 ---------------------------------------------------------------------- */
#define avx512_f64_LANES 8
typedef __m512d avx512_f64_v;
typedef __mmask8 avx512_f64_m;
typedef __m512d avx512_f64_acc;

FL_AVX512_INLINE __m512d avx512_f64_set1(double a) { return _mm512_set1_pd(a); }
FL_AVX512_INLINE __m512d avx512_f64_load(const double *p) { return _mm512_loadu_pd(p); }
FL_AVX512_INLINE void avx512_f64_store(double *p, __m512d v) { _mm512_storeu_pd(p, v); }
FL_AVX512_INLINE __m512d avx512_f64_loadn(const double *p, fl_index n, double fill)
{
    return _mm512_mask_loadu_pd(_mm512_set1_pd(fill), (__mmask8)((1u << n) - 1u), p);
}
FL_AVX512_INLINE void avx512_f64_storen(double *p, __m512d v, fl_index n)
{
    _mm512_mask_storeu_pd(p, (__mmask8)((1u << n) - 1u), v);
}
FL_AVX512_INLINE __m512d avx512_f64_add(__m512d a, __m512d b) { return _mm512_add_pd(a, b); }
FL_AVX512_INLINE __m512d avx512_f64_sub(__m512d a, __m512d b) { return _mm512_sub_pd(a, b); }
FL_AVX512_INLINE __m512d avx512_f64_mul(__m512d a, __m512d b) { return _mm512_mul_pd(a, b); }
FL_AVX512_INLINE __m512d avx512_f64_fmadd(__m512d a, __m512d b, __m512d c) { return _mm512_fmadd_pd(a, b, c); }
FL_AVX512_INLINE __m512d avx512_f64_fnmadd(__m512d a, __m512d b, __m512d c) { return _mm512_fnmadd_pd(a, b, c); }
FL_AVX512_INLINE __m512d avx512_f64_max(__m512d a, __m512d b) { return _mm512_max_pd(a, b); }
FL_AVX512_INLINE __mmask8 avx512_f64_gt(__m512d a, __m512d b) { return _mm512_cmp_pd_mask(a, b, _CMP_GT_OQ); }
FL_AVX512_INLINE __mmask8 avx512_f64_lt(__m512d a, __m512d b) { return _mm512_cmp_pd_mask(a, b, _CMP_LT_OQ); }
FL_AVX512_INLINE __m512d avx512_f64_select(__mmask8 m, __m512d a, __m512d b) { return _mm512_mask_blend_pd(m, b, a); }
FL_AVX512_INLINE __m512d avx512_f64_pow2_magic(__m512d t, __m512d magic)
{
    __m512i n = _mm512_sub_epi64(_mm512_castpd_si512(t), _mm512_castpd_si512(magic));
    return _mm512_castsi512_pd(_mm512_slli_epi64(_mm512_add_epi64(n, _mm512_set1_epi64(1023)), 52));
}
#define avx512_f64_HAS_SCALEF 1
FL_AVX512_INLINE __m512d avx512_f64_scalef(__m512d p, __m512d n) { return _mm512_scalef_pd(p, n); }
FL_AVX512_INLINE __m512d avx512_f64_div(__m512d a, __m512d b) { return _mm512_div_pd(a, b); }
FL_AVX512_INLINE __m512d avx512_f64_getexp_mant(__m512d x, __m512d *m)
{
    *m = _mm512_getmant_pd(x, _MM_MANT_NORM_1_2, _MM_MANT_SIGN_zero);
    return _mm512_getexp_pd(x);
}
FL_AVX512_INLINE double avx512_f64_hmax(__m512d v) { return _mm512_reduce_max_pd(v); }
FL_AVX512_INLINE __m512d avx512_f64_acc_zero(void) { return _mm512_setzero_pd(); }
FL_AVX512_INLINE __m512d avx512_f64_acc_add(__m512d a, __m512d v) { return _mm512_add_pd(a, v); }
FL_AVX512_INLINE void avx512_f64_acc_store(double *out, __m512d a) { _mm512_storeu_pd(out, a); }
FL_AVX512_INLINE double avx512_f64_acc_hsum(__m512d a) { return _mm512_reduce_add_pd(a); }

/* ---- bfloat16 and float16 storage: 16 elements to / from float32 lanes ------------------ */
#define avx512_bf16_LANES 16
#define avx512_f16_LANES 16
FL_AVX512_INLINE __mmask16 avx512_h_mask(fl_index n) { return (__mmask16)((1u << n) - 1u); }
FL_AVX512_INLINE __m512 avx512_bf16_widen(__m256i h)
{
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}
/* round to nearest-even on the integer bits (vcvtneps2bf16 would flush subnormals); a NaN
 * keeps its sign and leading payload, quieted (half.h) */
FL_AVX512_INLINE __m512i avx512_bf16_rounded(__m512 v) /* the bits + half an ulp, to even */
{
    const __m512i b = _mm512_castps_si512(v);
    const __m512i odd = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
    return _mm512_add_epi32(b, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
}
FL_AVX512_INLINE __m256i avx512_bf16_narrow_nonan(__m512 v) /* v holds no NaN */
{
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(avx512_bf16_rounded(v), 16));
}
FL_AVX512_INLINE __m256i avx512_bf16_narrow(__m512 v)
{
    const __m512i quiet = _mm512_or_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x00400000));
    const __m512i r = _mm512_mask_mov_epi32(avx512_bf16_rounded(v), _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q), quiet);
    return _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16));
}
#define FL_AVX512_F16_WIDEN(h) _mm512_cvtph_ps(h)
#define FL_AVX512_F16_NARROW(v) _mm512_cvtps_ph((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* load / loadn (masked lanes never touched, `fill` in them) and a store / storen pair */
#define FL_AVX512_HALF_LOADS(P, T, WIDEN)                                                       \
    FL_AVX512_INLINE __m512 P##load(const T *p) { return WIDEN(_mm256_loadu_si256((const __m256i *)p)); } \
    FL_AVX512_INLINE __m512 P##loadn(const T *p, fl_index n, float fill)                        \
    {                                                                                            \
        const __mmask16 k = avx512_h_mask(n);                                                    \
        return _mm512_mask_blend_ps(k, _mm512_set1_ps(fill), WIDEN(_mm256_maskz_loadu_epi16(k, p))); \
    }
#define FL_AVX512_HALF_STORES(P, STORE, STOREN, T, NARROW)                                      \
    FL_AVX512_INLINE void P##STORE(T *p, __m512 v) { _mm256_storeu_si256((__m256i *)p, NARROW(v)); } \
    FL_AVX512_INLINE void P##STOREN(T *p, __m512 v, fl_index n)                                 \
    {                                                                                            \
        _mm256_mask_storeu_epi16(p, avx512_h_mask(n), NARROW(v));                                \
    }
FL_AVX512_HALF_LOADS(avx512_bf16_, fl_bf16, avx512_bf16_widen)
FL_AVX512_HALF_STORES(avx512_bf16_, store, storen, fl_bf16, avx512_bf16_narrow)
/* storef / storenf: of values known to hold no NaN (a row whose sum is finite), one compare
 * and blend fewer */
FL_AVX512_HALF_STORES(avx512_bf16_, storef, storenf, fl_bf16, avx512_bf16_narrow_nonan)
FL_AVX512_HALF_LOADS(avx512_f16_, fl_f16, FL_AVX512_F16_WIDEN)
FL_AVX512_HALF_STORES(avx512_f16_, store, storen, fl_f16, FL_AVX512_F16_NARROW)
#undef FL_AVX512_HALF_LOADS
#undef FL_AVX512_HALF_STORES
#define avx512_f16_storef avx512_f16_store
#define avx512_f16_storenf avx512_f16_storen
#define avx512_f32_storef avx512_f32_store
#define avx512_f32_storenf avx512_f32_storen
#define avx512_f64_storef avx512_f64_store
#define avx512_f64_storenf avx512_f64_storen

#endif /* FL_HAVE_AVX2_BUILD */
#endif /* FASTLOSS_SIMD_AVX512_H */
