/*
 * The half dtypes' conversions of each SIMD path as whole-array functions: float32 values to
 * bfloat16 / float16 (rounded to nearest-even) and back, with exactly the vector ops the
 * kernels use (simd_<path>.h) -- for the NumPy layer's own conversions (fastloss/_half.pyx)
 * and for the tests that check every path gives half.h's bits.
 */
#include "half.h"

#include "fastloss.h"
#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

/* narrow_<H> / widen_<H>: n elements, whole vectors then one partial one. */
#define FL_HALF_CONVERT(H, P, T, ATTR)                                                           \
    static ATTR void narrow_##H(const float *src, void *dst, fl_index n)                         \
    {                                                                                            \
        T *d = (T *)dst;                                                                         \
        const fl_index L = P##LANES;                                                             \
        fl_index k = 0;                                                                          \
        for (; k + L <= n; k += L)                                                               \
            H##store(d + k, P##load(src + k));                                                   \
        if (k < n)                                                                               \
            H##storen(d + k, P##loadn(src + k, n - k, 0.0f), n - k);                             \
    }                                                                                            \
    static ATTR void widen_##H(const void *src, float *dst, fl_index n)                          \
    {                                                                                            \
        const T *s = (const T *)src;                                                             \
        const fl_index L = P##LANES;                                                             \
        fl_index k = 0;                                                                          \
        for (; k + L <= n; k += L)                                                               \
            P##store(dst + k, H##load(s + k));                                                   \
        if (k < n)                                                                               \
            P##storen(dst + k, H##loadn(s + k, n - k, 0.0f), n - k);                             \
    }

FL_HALF_CONVERT(gen_bf16_, gen_f32_, fl_bf16, )
FL_HALF_CONVERT(gen_f16_, gen_f32_, fl_f16, )
#if FL_HAVE_AVX2_BUILD
FL_HALF_CONVERT(avx2_bf16_, avx2_f32_, fl_bf16, FL_AVX2)
FL_HALF_CONVERT(avx2_f16_, avx2_f32_, fl_f16, FL_AVX2)
FL_HALF_CONVERT(avx512_bf16_, avx512_f32_, fl_bf16, FL_AVX512)
FL_HALF_CONVERT(avx512_f16_, avx512_f32_, fl_f16, FL_AVX512)
#endif

typedef void (*fl_narrow_fn)(const float *, void *, fl_index);
typedef void (*fl_widen_fn)(const void *, float *, fl_index);

int fl_half_convert(int simd, int dtype, int to_half, const void *src, void *dst, fl_index n)
{
    if (dtype != FL_DTYPE_BF16 && dtype != FL_DTYPE_F16)
        return FL_ERR_DTYPE;
    const int bf = dtype == FL_DTYPE_BF16;
    fl_narrow_fn narrow = bf ? narrow_gen_bf16_ : narrow_gen_f16_;
    fl_widen_fn widen = bf ? widen_gen_bf16_ : widen_gen_f16_;
#if FL_HAVE_AVX2_BUILD
    if (simd == FL_SIMD_AVX512) {
        narrow = bf ? narrow_avx512_bf16_ : narrow_avx512_f16_;
        widen = bf ? widen_avx512_bf16_ : widen_avx512_f16_;
    } else if (simd == FL_SIMD_AVX2) {
        narrow = bf ? narrow_avx2_bf16_ : narrow_avx2_f16_;
        widen = bf ? widen_avx2_bf16_ : widen_avx2_f16_;
    }
#else
    (void)simd;
#endif
    if (to_half)
        narrow((const float *)src, dst, n);
    else
        widen(src, (float *)dst, n);
    return FL_OK;
}

int fl_half_from_double(int dtype, const double *src, void *dst, fl_index n)
{
    if (dtype != FL_DTYPE_BF16 && dtype != FL_DTYPE_F16)
        return FL_ERR_DTYPE;
    uint16_t *d = (uint16_t *)dst;
    for (fl_index k = 0; k < n; k++)
        d[k] = dtype == FL_DTYPE_BF16 ? fl_bf16_from_double(src[k]) : fl_f16_from_double(src[k]);
    return FL_OK;
}
