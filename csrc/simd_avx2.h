/*
 * AVX2+FMA vector operations for float32 (8 lanes) and float64 (4 lanes), and the storage
 * ops of bfloat16 and float16 (avx2_bf16_ / avx2_f16_: 8 elements to and from float32 lanes;
 * float16 with F16C, which every AVX2 CPU has and the dispatcher checks).
 *
 * Every function carries target("avx2,fma,f16c"), so this header compiles with the baseline
 * flags and only code that the dispatcher picks on an AVX2 CPU runs these instructions.
 * The names mirror simd_generic.h op for op: the kernel templates are written once against
 * the prefix (avx2_f32_, avx2_f64_, gen_f32_, gen_f64_).
 */
#ifndef FASTLOSS_SIMD_AVX2_H
#define FASTLOSS_SIMD_AVX2_H

#include "fastloss.h"
#include "half.h"

#if FL_HAVE_AVX2_BUILD
#include <immintrin.h>

#define FL_AVX2 __attribute__((target("avx2,fma,f16c")))
#define FL_AVX2_INLINE static inline __attribute__((target("avx2,fma,f16c"), always_inline))

/* ---- float32 ---------------------------------------------------------------------- */
#define avx2_f32_LANES 8
typedef __m256 avx2_f32_v;
typedef __m256 avx2_f32_m;
typedef struct { __m256d lo, hi; } avx2_f32_acc;

FL_AVX2_INLINE __m256 avx2_f32_set1(float a) { return _mm256_set1_ps(a); }
FL_AVX2_INLINE __m256 avx2_f32_load(const float *p) { return _mm256_loadu_ps(p); }
FL_AVX2_INLINE void avx2_f32_store(float *p, __m256 v) { _mm256_storeu_ps(p, v); }
FL_AVX2_INLINE __m256i avx2_f32_tailmask(fl_index n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
/* The first n (< 8) lanes from p, the rest `fill`; masked lanes are never touched. */
FL_AVX2_INLINE __m256 avx2_f32_loadn(const float *p, fl_index n, float fill)
{
    __m256i m = avx2_f32_tailmask(n);
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
FL_AVX2_INLINE void avx2_f32_storen(float *p, __m256 v, fl_index n)
{
    _mm256_maskstore_ps(p, avx2_f32_tailmask(n), v);
}
FL_AVX2_INLINE __m256 avx2_f32_add(__m256 a, __m256 b) { return _mm256_add_ps(a, b); }
FL_AVX2_INLINE __m256 avx2_f32_sub(__m256 a, __m256 b) { return _mm256_sub_ps(a, b); }
FL_AVX2_INLINE __m256 avx2_f32_mul(__m256 a, __m256 b) { return _mm256_mul_ps(a, b); }
/* fmadd/fnmadd round once (simd_exp.h picks its polynomial by this) */
#define avx2_f32_FUSED_FMA 1
FL_AVX2_INLINE __m256 avx2_f32_fmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
FL_AVX2_INLINE __m256 avx2_f32_fnmadd(__m256 a, __m256 b, __m256 c) { return _mm256_fnmadd_ps(a, b, c); }
FL_AVX2_INLINE __m256 avx2_f32_max(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }
FL_AVX2_INLINE __m256 avx2_f32_gt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_GT_OQ); }
FL_AVX2_INLINE __m256 avx2_f32_lt(__m256 a, __m256 b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
/* m ? a : b, lane by lane */
FL_AVX2_INLINE __m256 avx2_f32_select(__m256 m, __m256 a, __m256 b) { return _mm256_blendv_ps(b, a, m); }
/* 2^n for t = n + magic (see simd_exp.h): n is the low mantissa bits of t. */
FL_AVX2_INLINE __m256 avx2_f32_pow2_magic(__m256 t, __m256 magic)
{
    __m256i n = _mm256_sub_epi32(_mm256_castps_si256(t), _mm256_castps_si256(magic));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n, _mm256_set1_epi32(127)), 23));
}
FL_AVX2_INLINE __m256 avx2_f32_div(__m256 a, __m256 b) { return _mm256_div_ps(a, b); }
/* For x positive, normal and finite: returns its exponent e as a float and stores its
 * mantissa m in [1, 2), x = m 2^e (simd_log.h handles every other x itself). */
FL_AVX2_INLINE __m256 avx2_f32_getexp_mant(__m256 x, __m256 *m)
{
    const __m256i b = _mm256_castps_si256(x);
    *m = _mm256_castsi256_ps(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi32(0x007FFFFF)),
                                             _mm256_set1_epi32(0x3F800000)));
    return _mm256_sub_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b, 23)), _mm256_set1_ps(127.0f));
}
FL_AVX2_INLINE float avx2_f32_hmax(__m256 v)
{
    __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    m = _mm_max_ss(m, _mm_movehdup_ps(m));
    return _mm_cvtss_f32(m);
}
FL_AVX2_INLINE avx2_f32_acc avx2_f32_acc_zero(void)
{
    avx2_f32_acc r = {_mm256_setzero_pd(), _mm256_setzero_pd()};
    return r;
}
FL_AVX2_INLINE avx2_f32_acc avx2_f32_acc_add(avx2_f32_acc a, __m256 v)
{
    a.lo = _mm256_add_pd(a.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
    a.hi = _mm256_add_pd(a.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    return a;
}
/* Lane sums in a fixed order, so the result does not depend on anything but the data. */
FL_AVX2_INLINE void avx2_f32_acc_store(double *out, avx2_f32_acc a)
{
    _mm256_storeu_pd(out, a.lo);
    _mm256_storeu_pd(out + 4, a.hi);
}
FL_AVX2_INLINE double avx2_f32_acc_hsum(avx2_f32_acc a)
{
    __m256d s = _mm256_add_pd(a.lo, a.hi);
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* ---- float64 ---------------------------------------------------------------------- */
#define avx2_f64_LANES 4
typedef __m256d avx2_f64_v;
typedef __m256d avx2_f64_m;
typedef __m256d avx2_f64_acc;

FL_AVX2_INLINE __m256d avx2_f64_set1(double a) { return _mm256_set1_pd(a); }
FL_AVX2_INLINE __m256d avx2_f64_load(const double *p) { return _mm256_loadu_pd(p); }
FL_AVX2_INLINE void avx2_f64_store(double *p, __m256d v) { _mm256_storeu_pd(p, v); }
FL_AVX2_INLINE __m256i avx2_f64_tailmask(fl_index n)
{
    return _mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3));
}
FL_AVX2_INLINE __m256d avx2_f64_loadn(const double *p, fl_index n, double fill)
{
    __m256i m = avx2_f64_tailmask(n);
    return _mm256_blendv_pd(_mm256_set1_pd(fill), _mm256_maskload_pd(p, m), _mm256_castsi256_pd(m));
}
FL_AVX2_INLINE void avx2_f64_storen(double *p, __m256d v, fl_index n)
{
    _mm256_maskstore_pd(p, avx2_f64_tailmask(n), v);
}
FL_AVX2_INLINE __m256d avx2_f64_add(__m256d a, __m256d b) { return _mm256_add_pd(a, b); }
FL_AVX2_INLINE __m256d avx2_f64_sub(__m256d a, __m256d b) { return _mm256_sub_pd(a, b); }
FL_AVX2_INLINE __m256d avx2_f64_mul(__m256d a, __m256d b) { return _mm256_mul_pd(a, b); }
FL_AVX2_INLINE __m256d avx2_f64_fmadd(__m256d a, __m256d b, __m256d c) { return _mm256_fmadd_pd(a, b, c); }
FL_AVX2_INLINE __m256d avx2_f64_fnmadd(__m256d a, __m256d b, __m256d c) { return _mm256_fnmadd_pd(a, b, c); }
FL_AVX2_INLINE __m256d avx2_f64_max(__m256d a, __m256d b) { return _mm256_max_pd(a, b); }
FL_AVX2_INLINE __m256d avx2_f64_gt(__m256d a, __m256d b) { return _mm256_cmp_pd(a, b, _CMP_GT_OQ); }
FL_AVX2_INLINE __m256d avx2_f64_lt(__m256d a, __m256d b) { return _mm256_cmp_pd(a, b, _CMP_LT_OQ); }
FL_AVX2_INLINE __m256d avx2_f64_select(__m256d m, __m256d a, __m256d b) { return _mm256_blendv_pd(b, a, m); }
FL_AVX2_INLINE __m256d avx2_f64_pow2_magic(__m256d t, __m256d magic)
{
    __m256i n = _mm256_sub_epi64(_mm256_castpd_si256(t), _mm256_castpd_si256(magic));
    return _mm256_castsi256_pd(_mm256_slli_epi64(_mm256_add_epi64(n, _mm256_set1_epi64x(1023)), 52));
}
FL_AVX2_INLINE __m256d avx2_f64_div(__m256d a, __m256d b) { return _mm256_div_pd(a, b); }
FL_AVX2_INLINE __m256d avx2_f64_getexp_mant(__m256d x, __m256d *m)
{
    const __m256i b = _mm256_castpd_si256(x);
    *m = _mm256_castsi256_pd(_mm256_or_si256(_mm256_and_si256(b, _mm256_set1_epi64x(0x000FFFFFFFFFFFFFLL)),
                                             _mm256_set1_epi64x(0x3FF0000000000000LL)));
    /* the exponent field as a double without a 64-bit convert: its bits or'ed into 2^52 */
    const __m256i e = _mm256_or_si256(_mm256_srli_epi64(b, 52), _mm256_set1_epi64x(0x4330000000000000LL));
    return _mm256_sub_pd(_mm256_castsi256_pd(e), _mm256_set1_pd(4503599627370496.0 + 1023.0));
}
FL_AVX2_INLINE double avx2_f64_hmax(__m256d v)
{
    __m128d m = _mm_max_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd(v, 1));
    m = _mm_max_sd(m, _mm_unpackhi_pd(m, m));
    return _mm_cvtsd_f64(m);
}
FL_AVX2_INLINE __m256d avx2_f64_acc_zero(void) { return _mm256_setzero_pd(); }
FL_AVX2_INLINE __m256d avx2_f64_acc_add(__m256d a, __m256d v) { return _mm256_add_pd(a, v); }
FL_AVX2_INLINE void avx2_f64_acc_store(double *out, __m256d a) { _mm256_storeu_pd(out, a); }
FL_AVX2_INLINE double avx2_f64_acc_hsum(__m256d a)
{
    __m128d h = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(h, _mm_unpackhi_pd(h, h)));
}

/* ---- bfloat16 and float16 storage: 8 elements to / from float32 lanes ------------------- */
#define avx2_bf16_LANES 8
#define avx2_f16_LANES 8
FL_AVX2_INLINE __m256 avx2_bf16_widen(__m128i h) { return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)); }
/* round to nearest-even on the integer bits, NaN quieted (half.h); 8 x 16 bits */
FL_AVX2_INLINE __m128i avx2_bf16_narrow(__m256 v)
{
    const __m256i b = _mm256_castps_si256(v);
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(b, 16), _mm256_set1_epi32(1));
    __m256i r = _mm256_add_epi32(b, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF)));
    const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    r = _mm256_blendv_epi8(r, _mm256_or_si256(b, _mm256_set1_epi32(0x00400000)), nan);
    r = _mm256_srli_epi32(r, 16);
    return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}
#define FL_AVX2_F16_NARROW(v) _mm256_cvtps_ph((v), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
/* tails through a small buffer: the first n elements only are read or written */
FL_AVX2_INLINE __m128i avx2_h_loadn(const void *p, fl_index n)
{
    uint16_t t[8] = {0};
    memcpy(t, p, (size_t)n * 2);
    return _mm_loadu_si128((const __m128i *)t);
}
FL_AVX2_INLINE void avx2_h_storen(void *p, __m128i h, fl_index n)
{
    uint16_t t[8];
    _mm_storeu_si128((__m128i *)t, h);
    memcpy(p, t, (size_t)n * 2);
}
FL_AVX2_INLINE __m256 avx2_h_fill(__m256 v, fl_index n, float fill)
{
    return _mm256_blendv_ps(_mm256_set1_ps(fill), v, _mm256_castsi256_ps(avx2_f32_tailmask(n)));
}
FL_AVX2_INLINE __m256 avx2_bf16_load(const fl_bf16 *p) { return avx2_bf16_widen(_mm_loadu_si128((const __m128i *)p)); }
FL_AVX2_INLINE __m256 avx2_bf16_loadn(const fl_bf16 *p, fl_index n, float fill)
{
    return avx2_h_fill(avx2_bf16_widen(avx2_h_loadn(p, n)), n, fill);
}
FL_AVX2_INLINE void avx2_bf16_store(fl_bf16 *p, __m256 v) { _mm_storeu_si128((__m128i *)p, avx2_bf16_narrow(v)); }
FL_AVX2_INLINE void avx2_bf16_storen(fl_bf16 *p, __m256 v, fl_index n) { avx2_h_storen(p, avx2_bf16_narrow(v), n); }
FL_AVX2_INLINE __m256 avx2_f16_load(const fl_f16 *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
FL_AVX2_INLINE __m256 avx2_f16_loadn(const fl_f16 *p, fl_index n, float fill)
{
    return avx2_h_fill(_mm256_cvtph_ps(avx2_h_loadn(p, n)), n, fill);
}
FL_AVX2_INLINE void avx2_f16_store(fl_f16 *p, __m256 v) { _mm_storeu_si128((__m128i *)p, FL_AVX2_F16_NARROW(v)); }
FL_AVX2_INLINE void avx2_f16_storen(fl_f16 *p, __m256 v, fl_index n) { avx2_h_storen(p, FL_AVX2_F16_NARROW(v), n); }
/* the stores of values known to hold no NaN (simd_avx512.h): the same ops on this path */
#define avx2_bf16_storef avx2_bf16_store
#define avx2_bf16_storenf avx2_bf16_storen
#define avx2_f16_storef avx2_f16_store
#define avx2_f16_storenf avx2_f16_storen
#define avx2_f32_storef avx2_f32_store
#define avx2_f32_storenf avx2_f32_storen
#define avx2_f64_storef avx2_f64_store
#define avx2_f64_storenf avx2_f64_storen

#endif /* FL_HAVE_AVX2_BUILD */
#endif /* FASTLOSS_SIMD_AVX2_H */
