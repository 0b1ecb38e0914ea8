/*
 * Runtime facts: which SIMD path this CPU can run, whether OpenMP is compiled in, and the
 * one parallel loop every kernel uses. No mutable global state lives here: the chosen path
 * and the thread count are passed to each kernel call by the Cython layer.
 */
#include "fastloss.h"

#include <stdlib.h>
#include <string.h>

#ifdef _OPENMP
#include <omp.h>
#endif

#if FL_HAVE_AVX2_BUILD
#include <cpuid.h>

/* cpuid for the instruction sets, xgetbv for the OS saving the YMM state. */
static int avx2_fma_supported(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    const unsigned int fma = 1u << 12, osxsave = 1u << 27, avx = 1u << 28;
    if ((c & (fma | osxsave | avx)) != (fma | osxsave | avx))
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

/* AVX-512 F and DQ, and the OS saving the opmask and ZMM state (XCR0 bits 5-7). */
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
    const unsigned int f = 1u << 16, dq = 1u << 17;
    return (b & (f | dq)) == (f | dq);
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

int fl_parallel_blocks(fl_block_fn fn, void *ctx, fl_index nblocks, int nthreads)
{
    int used = 1;
    if (nthreads > nblocks)
        nthreads = (int)nblocks;
#ifdef _OPENMP
    if (nthreads > 1) {
        /* num_threads on the region itself: the setting is per call, so it holds for calls
         * from any Python thread (omp_set_num_threads would only set the caller's ICV). */
#pragma omp parallel num_threads(nthreads)
        {
#pragma omp master
            used = omp_get_num_threads();
            fl_index b;
            /* dynamic: a thread slowed by another process takes fewer blocks. The result
             * does not depend on who runs a block: each block writes its own partial sums. */
#pragma omp for schedule(dynamic, 1)
            for (b = 0; b < nblocks; b++)
                fn(ctx, b);
        }
        return used;
    }
#endif
    for (fl_index b = 0; b < nblocks; b++)
        fn(ctx, b);
    (void)nthreads;
    return used;
}

#define FL_MAX_SUMS 4

typedef struct {
    fl_sum_block_fn fn;
    void *ctx;
    int nsums;
    double *partial; /* nblocks x nsums */
} sum_job;

static void sum_block(void *vjob, fl_index b)
{
    sum_job *job = (sum_job *)vjob;
    double *sums = job->partial + b * job->nsums;
    for (int k = 0; k < job->nsums; k++)
        sums[k] = 0.0;
    job->fn(job->ctx, b, sums);
}

int fl_parallel_sum(fl_sum_block_fn fn, void *ctx, fl_index nblocks, int nthreads, int nsums, double *totals)
{
    double local[FL_MAX_SUMS];
    for (int k = 0; k < nsums; k++)
        totals[k] = 0.0;
    if (nblocks <= 0)
        return 1;
    sum_job job = {fn, ctx, nsums, NULL};
    job.partial = nblocks == 1 && nsums <= FL_MAX_SUMS ? local
                                                      : (double *)malloc((size_t)(nblocks * nsums) * sizeof(double));
    if (job.partial == NULL)
        return FL_ERR_NOMEM;
    const int used = fl_parallel_blocks(sum_block, &job, nblocks, nthreads);
    for (fl_index b = 0; b < nblocks; b++) /* block order: independent of the thread count */
        for (int k = 0; k < nsums; k++)
            totals[k] += job.partial[b * nsums + k];
    if (job.partial != local)
        free(job.partial);
    return used;
}
