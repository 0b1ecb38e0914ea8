/*
 * Runtime facts: which SIMD path this CPU can run, whether OpenMP is compiled in, and the
 * one parallel loop every kernel uses. No mutable global state lives here: the chosen path
 * and the thread count are passed to each kernel call by the Cython layer.
 */
#include "fastloss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if FL_HAVE_AVX2_BUILD
#include <cpuid.h>

/* cpuid for the instruction sets (AVX2, FMA, F16C), xgetbv for the OS saving the YMM state. */
static int avx2_fma_supported(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    const unsigned int fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28, f16c = 1u << 29;
    if ((c & (fma | osxsave | avx | f16c)) != (fma | osxsave | avx | f16c))
        return 0;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0x6u) != 0x6u) /* XMM and YMM state enabled */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b & (1u << 5)) != 0; /* AVX2 */
}

/* AVX-512 F, DQ, BW and VL, and the OS saving the opmask and ZMM state (XCR0 bits 5-7). */
static int avx512_supported(void)
{
    unsigned int a, b, c, d;
    if (!avx2_fma_supported())
        return 0;
    unsigned int xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    if ((xcr0_lo & 0xE6u) != 0xE6u)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned int f = 1u << 16, dq = 1u << 17, bw = 1u << 30, vl = 1u << 31;
    return (b & (f | dq | bw | vl)) == (f | dq | bw | vl);
}
#endif

int fl_cpu_has_avx2_fma(void)
{
#if FL_HAVE_AVX2_BUILD
    return avx2_fma_supported();
#else
    return 0;
#endif
}

int fl_cpu_has_avx512(void)
{
#if FL_HAVE_AVX2_BUILD
    return avx512_supported();
#else
    return 0;
#endif
}

int fl_simd_resolve(const char *request)
{
    int widest = FL_SIMD_GENERIC;
    if (fl_cpu_has_avx512())
        widest = FL_SIMD_AVX512;
    else if (fl_cpu_has_avx2_fma())
        widest = FL_SIMD_AVX2;
    if (request == NULL || strcmp(request, "") == 0 || strcmp(request, "auto") == 0)
        return widest;
    if (strcmp(request, "generic") == 0)
        return FL_SIMD_GENERIC;
    if (strcmp(request, "avx2") == 0)
        return widest >= FL_SIMD_AVX2 ? FL_SIMD_AVX2 : FL_SIMD_GENERIC;
    if (strcmp(request, "avx512") == 0)
        return widest;
    return -1;
}

const char *fl_simd_name(int path)
{
    if (path == FL_SIMD_AVX512)
        return "avx512";
    return path == FL_SIMD_AVX2 ? "avx2" : "generic";
}

int fl_openmp_enabled(void)
{
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int fl_thread_slot(int slots)
{
#ifdef _OPENMP
    const int t = omp_get_thread_num();
    return t >= 0 && t < slots ? t : 0;
#else
    (void)slots;
    return 0;
#endif
}

/* At most this many partial sums per block live on the stack when there is one block. */
#define FL_MAX_SUMS 4

int fl_parallel_run(const fl_kernel *k, void *ctx, fl_index nblocks, int nsums, double *totals, fl_call *call)
{
    double local[FL_MAX_SUMS];
    for (int q = 0; q < nsums; q++)
        totals[q] = 0.0;
    if (nblocks <= 0)
        return FL_OK;
    if (k->fn == NULL)
        return FL_ERR_DTYPE;
    double *partial = NULL; /* nblocks x nsums, each block's slot written once by its block */
    if (nsums > 0) {
        partial = nblocks == 1 && nsums <= FL_MAX_SUMS ? local
                                                       : (double *)malloc((size_t)(nblocks * nsums) * sizeof(double));
        if (partial == NULL)
            return FL_ERR_NOMEM;
    }
    const fl_block_fn fn = k->fn;
    int nthreads = call->nthreads;
    if (nthreads > nblocks)
        nthreads = (int)nblocks;
    int team = 1, active = 1;
#ifdef _OPENMP
    if (nthreads > 1) {
        active = 0;
        /* num_threads on the region itself: the setting is per call, so it holds for calls
         * from any Python thread (omp_set_num_threads would only set the caller's ICV). */
#pragma omp parallel num_threads(nthreads) reduction(+ : active)
        {
            if (omp_get_thread_num() == 0)
                team = omp_get_num_threads();
            int ran = 0;
            fl_index b;
            /* dynamic: a thread slowed by another process takes fewer blocks. The result
             * does not depend on who runs a block: each block writes its own partial sums. */
#pragma omp for schedule(dynamic, 1)
            for (b = 0; b < nblocks; b++) {
                fn(ctx, b, partial ? partial + b * nsums : NULL);
                ran = 1;
            }
            active += ran;
        }
    } else
#endif
    {
        for (fl_index b = 0; b < nblocks; b++)
            fn(ctx, b, partial ? partial + b * nsums : NULL);
    }
    for (fl_index b = 0; b < nblocks; b++) /* block order: independent of the thread count */
        for (int q = 0; q < nsums; q++)
            totals[q] += partial[b * nsums + q];
    if (partial != NULL && partial != local)
        free(partial);
    call->kernel = k->name;
    call->team = team > call->team ? team : call->team;
    call->threads_active = active > call->threads_active ? active : call->threads_active;
    return FL_OK;
}

int fl_kernel_names(const fl_kernel *row, int count, const char **names, int max)
{
    int n = 0;
    for (int q = 0; q < count; q++) {
        if (row[q].name == NULL)
            continue;
        if (n < max)
            names[n] = row[q].name;
        n++;
    }
    return n;
}

void fl_call_reset(fl_call *call)
{
    call->value = NAN;
    call->kernel = NULL;
    call->team = 1;
    call->threads_active = 0;
    call->bad_value = 0;
    call->bad_operand = 0;
}

static inline double weight_at(const void *w, int dtype, fl_index t)
{
    if (w == NULL)
        return 1.0;
    return fl_weight_f32(dtype) ? (double)((const float *)w)[t] : ((const double *)w)[t];
}

int fl_check_class_targets(int kind, const void *target, fl_index n, fl_index s, fl_index t_sn, fl_index t_ss,
                           fl_index c, fl_index ignore_index, const void *weight, int dtype, double *kept,
                           fl_call *call)
{
    double sum = 0.0;
    for (fl_index i = 0; i < n; i++) {
        for (fl_index j = 0; j < s; j++) {
            const fl_index off = i * t_sn + j * t_ss;
            const fl_index t = kind == FL_TARGET_I32 ? (fl_index)((const int32_t *)target)[off]
                                                     : (fl_index)((const int64_t *)target)[off];
            if (t == ignore_index)
                continue;
            if (t < 0 || t >= c) {
                call->bad_value = t;
                return FL_ERR_TARGET;
            }
            sum += weight_at(weight, dtype, t);
        }
    }
    *kept = sum;
    return FL_OK;
}
