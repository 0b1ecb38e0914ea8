/*
 * Portable vector operations (the "generic" path), op for op the same names as
 * simd_avx2.h with the prefixes gen_f32_ and gen_f64_.
 *
 * With GCC or Clang they use the compilers' vector extensions on 16-byte vectors, which
 * compile to SSE2 on baseline x86-64 and to NEON on aarch64: the generic path stays
 * vectorized on every CPU, without intrinsics. (32-byte generic vectors were twice as slow
 * on SSE2: GCC splits some of their operations into scalar code.) Any other compiler (MSVC)
 * gets the same functions on one lane, in plain C.
 */
#ifndef FASTLOSS_SIMD_GENERIC_H
#define FASTLOSS_SIMD_GENERIC_H

#include <math.h>
#include <string.h>

#include "fastloss.h"
#include "half.h"

#if (defined(__GNUC__) || defined(__clang__)) && !defined(FL_FORCE_SCALAR_GENERIC)

#define FL_GEN_INLINE static inline __attribute__((always_inline))

#define gen_f32_LANES 4
#define gen_f64_LANES 2
typedef float gen_f32_v __attribute__((vector_size(16)));
typedef int32_t gen_f32_m __attribute__((vector_size(16)));
typedef uint32_t gen_f32_u __attribute__((vector_size(16)));
typedef double gen_f32_acc __attribute__((vector_size(32)));
typedef double gen_f64_v __attribute__((vector_size(16)));
typedef int64_t gen_f64_m __attribute__((vector_size(16)));
typedef uint64_t gen_f64_u __attribute__((vector_size(16)));
typedef double gen_f64_acc __attribute__((vector_size(16)));

/* One definition per dtype: T scalar, V vector, M mask, U unsigned lanes, A accumulator. */
#define FL_GEN_OPS(P, T, V, M, U, A, LANES, EXPBIAS, MANTBITS)                                 \
    FL_GEN_INLINE V P##set1(T a) { return (V){0} + a; }                                       \
    FL_GEN_INLINE V P##load(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }           \
    FL_GEN_INLINE void P##store(T *p, V v) { memcpy(p, &v, sizeof v); }                       \
    FL_GEN_INLINE V P##loadn(const T *p, fl_index n, T fill)                                  \
    {                                                                                         \
        V v = P##set1(fill);                                                                  \
        memcpy(&v, p, (size_t)n * sizeof(T));                                                 \
        return v;                                                                             \
    }                                                                                         \
    FL_GEN_INLINE void P##storen(T *p, V v, fl_index n) { memcpy(p, &v, (size_t)n * sizeof(T)); } \
    FL_GEN_INLINE V P##add(V a, V b) { return a + b; }                                        \
    FL_GEN_INLINE V P##sub(V a, V b) { return a - b; }                                        \
    FL_GEN_INLINE V P##mul(V a, V b) { return a * b; }                                        \
    FL_GEN_INLINE V P##fmadd(V a, V b, V c) { return a * b + c; }                            \
    FL_GEN_INLINE V P##fnmadd(V a, V b, V c) { return c - a * b; }                           \
    FL_GEN_INLINE M P##gt(V a, V b) { return a > b; }                                         \
    FL_GEN_INLINE M P##lt(V a, V b) { return a < b; }                                         \
    FL_GEN_INLINE V P##select(M m, V a, V b) { return (V)(((M)a & m) | ((M)b & ~m)); }        \
    FL_GEN_INLINE V P##max(V a, V b) { return P##select(a > b, a, b); }                       \
    FL_GEN_INLINE V P##pow2_magic(V t, V magic)                                               \
    {                                                                                         \
        U n = (U)t - (U)magic; /* unsigned: out-of-range lanes wrap, never overflow */        \
        return (V)((n + EXPBIAS) << MANTBITS);                                                \
    }                                                                                         \
    FL_GEN_INLINE V P##div(V a, V b) { return a / b; }                                        \
    /* x positive, normal, finite: exponent as a float, mantissa in [1, 2); the exponent     \
     * field is or'ed into 2^MANTBITS (no 64-bit int-to-float convert on SSE2) */            \
    FL_GEN_INLINE V P##getexp_mant(V x, V *m)                                                 \
    {                                                                                         \
        const U b = (U)x, one = (U){0} + 1;                                                   \
        *m = (V)((b & ((one << MANTBITS) - one)) | (((U){0} + EXPBIAS) << MANTBITS));         \
        const U e = (b >> MANTBITS) | (((U){0} + EXPBIAS + MANTBITS) << MANTBITS);            \
        return (V)e - (T)((uint64_t)1 << MANTBITS) - (T)EXPBIAS;                              \
    }                                                                                         \
    FL_GEN_INLINE T P##hmax(V v)                                                              \
    {                                                                                         \
        T m = v[0];                                                                           \
        for (int i = 1; i < LANES; i++)                                                       \
            m = v[i] > m ? v[i] : m;                                                          \
        return m;                                                                             \
    }                                                                                         \
    FL_GEN_INLINE A P##acc_zero(void) { return (A){0}; }                                      \
    FL_GEN_INLINE A P##acc_add(A a, V v) { return a + __builtin_convertvector(v, A); }        \
    FL_GEN_INLINE void P##acc_store(double *out, A a) { memcpy(out, &a, sizeof a); }          \
    FL_GEN_INLINE double P##acc_hsum(A a)                                                     \
    {                                                                                         \
        double s = 0.0;                                                                       \
        for (int i = 0; i < LANES; i++)                                                       \
            s += a[i];                                                                        \
        return s;                                                                             \
    }

FL_GEN_OPS(gen_f32_, float, gen_f32_v, gen_f32_m, gen_f32_u, gen_f32_acc, 4, 127u, 23)
FL_GEN_OPS(gen_f64_, double, gen_f64_v, gen_f64_m, gen_f64_u, gen_f64_acc, 2, 1023u, 52)
#undef FL_GEN_OPS

#else /* one lane, plain C */

#define FL_GEN_INLINE static inline

#define gen_f32_LANES 1
#define gen_f64_LANES 1
typedef float gen_f32_v;
typedef int gen_f32_m;
typedef double gen_f32_acc;
typedef double gen_f64_v;
typedef int gen_f64_m;
typedef double gen_f64_acc;

#define FL_GEN_OPS(P, T, U, EXPBIAS, MANTBITS)                                                 \
    FL_GEN_INLINE T P##set1(T a) { return a; }                                                \
    FL_GEN_INLINE T P##load(const T *p) { return *p; }                                        \
    FL_GEN_INLINE void P##store(T *p, T v) { *p = v; }                                        \
    FL_GEN_INLINE T P##loadn(const T *p, fl_index n, T fill) { return n > 0 ? *p : fill; }    \
    FL_GEN_INLINE void P##storen(T *p, T v, fl_index n) { if (n > 0) *p = v; }                \
    FL_GEN_INLINE T P##add(T a, T b) { return a + b; }                                        \
    FL_GEN_INLINE T P##sub(T a, T b) { return a - b; }                                        \
    FL_GEN_INLINE T P##mul(T a, T b) { return a * b; }                                        \
    FL_GEN_INLINE T P##fmadd(T a, T b, T c) { return a * b + c; }                            \
    FL_GEN_INLINE T P##fnmadd(T a, T b, T c) { return c - a * b; }                           \
    FL_GEN_INLINE int P##gt(T a, T b) { return a > b; }                                       \
    FL_GEN_INLINE int P##lt(T a, T b) { return a < b; }                                       \
    FL_GEN_INLINE T P##select(int m, T a, T b) { return m ? a : b; }                          \
    FL_GEN_INLINE T P##max(T a, T b) { return a > b ? a : b; }                                \
    FL_GEN_INLINE T P##pow2_magic(T t, T magic)                                               \
    {                                                                                         \
        U bt, bm;                                                                             \
        memcpy(&bt, &t, sizeof t);                                                            \
        memcpy(&bm, &magic, sizeof magic);                                                    \
        U bits = (U)((bt - bm + EXPBIAS) << MANTBITS);                                        \
        T r;                                                                                  \
        memcpy(&r, &bits, sizeof r);                                                          \
        return r;                                                                             \
    }                                                                                         \
    FL_GEN_INLINE T P##div(T a, T b) { return a / b; }                                        \
    FL_GEN_INLINE T P##getexp_mant(T x, T *m)                                                 \
    {                                                                                         \
        U b;                                                                                  \
        memcpy(&b, &x, sizeof x);                                                             \
        const U mb = (U)((b & (((U)1 << MANTBITS) - 1u)) | ((U)EXPBIAS << MANTBITS));         \
        memcpy(m, &mb, sizeof mb);                                                            \
        return (T)(b >> MANTBITS) - (T)EXPBIAS;                                               \
    }                                                                                         \
    FL_GEN_INLINE T P##hmax(T v) { return v; }                                                \
    FL_GEN_INLINE double P##acc_zero(void) { return 0.0; }                                    \
    FL_GEN_INLINE double P##acc_add(double a, T v) { return a + (double)v; }                  \
    FL_GEN_INLINE void P##acc_store(double *out, double a) { *out = a; }                      \
    FL_GEN_INLINE double P##acc_hsum(double a) { return a; }

FL_GEN_OPS(gen_f32_, float, uint32_t, 127u, 23)
FL_GEN_OPS(gen_f64_, double, uint64_t, 1023u, 52)
#undef FL_GEN_OPS

#endif
/* ---- bfloat16 and float16 storage: lane by lane, with half.h's scalar conversions ------ */
#define gen_bf16_LANES gen_f32_LANES
#define gen_f16_LANES gen_f32_LANES
#define FL_GEN_HALF_OPS(P, H, TO, FROM)                                                        \
    FL_GEN_INLINE gen_f32_v P##loadn(const H *p, fl_index n, float fill)                        \
    {                                                                                          \
        float t[gen_f32_LANES];                                                                \
        for (int i = 0; i < gen_f32_LANES; i++)                                                \
            t[i] = i < n ? TO(p[i].u) : fill;                                                  \
        return gen_f32_load(t);                                                                \
    }                                                                                          \
    FL_GEN_INLINE gen_f32_v P##load(const H *p) { return P##loadn(p, gen_f32_LANES, 0.0f); }   \
    FL_GEN_INLINE void P##storen(H *p, gen_f32_v v, fl_index n)                                \
    {                                                                                          \
        float t[gen_f32_LANES];                                                                \
        gen_f32_store(t, v);                                                                   \
        for (int i = 0; i < n; i++)                                                            \
            p[i].u = FROM(t[i]);                                                               \
    }                                                                                          \
    FL_GEN_INLINE void P##store(H *p, gen_f32_v v) { P##storen(p, v, gen_f32_LANES); }
FL_GEN_HALF_OPS(gen_bf16_, fl_bf16, fl_bf16_to_float, fl_bf16_from_float)
FL_GEN_HALF_OPS(gen_f16_, fl_f16, fl_f16_to_float, fl_f16_from_float)
#undef FL_GEN_HALF_OPS
/* the stores of values known to hold no NaN (simd_avx512.h): the same ops on this path */
#define gen_bf16_storef gen_bf16_store
#define gen_bf16_storenf gen_bf16_storen
#define gen_f16_storef gen_f16_store
#define gen_f16_storenf gen_f16_storen
#define gen_f32_storef gen_f32_store
#define gen_f32_storenf gen_f32_storen
#define gen_f64_storef gen_f64_store
#define gen_f64_storenf gen_f64_storen

#endif /* FASTLOSS_SIMD_GENERIC_H */
