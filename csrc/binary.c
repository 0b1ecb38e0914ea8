/*
 * Binary cross-entropy (probabilities and logits) and Kullback-Leibler kernels: the template
 * binary_simd.h instantiated for float32 / float64 on the generic, AVX2 and AVX-512 paths,
 * and the entry points that cut the work into fixed blocks and run them. Formulas and
 * argument conventions: binary.h.
 */
#include "binary.h"

#include <math.h>
#include <stdlib.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)

#if defined(__GNUC__) || defined(__clang__)
#define FL_BIN_INLINE inline __attribute__((always_inline))
#else
#define FL_BIN_INLINE inline
#endif

typedef struct {
    const fl_bin_args *a;
    fl_index total; /* rows * cols */
    double *partial; /* the check pass: a flag per block */
} bin_ctx;


#define FL_TEMPLATE "binary_simd.h"
#include "fl_instantiate.h"

/* ---- entry points ---------------------------------------------------------------- */

/* Runs the check pass fn over the fixed blocks; partial[b] receives block b's flag. */
static int bin_run_blocks(fl_bin_args *a, fl_block_fn fn, bin_ctx *ctx, fl_index *nblocks_out)
{
    ctx->a = a;
    ctx->total = a->rows * a->cols;
    ctx->partial = NULL;
    a->threads_used = 1;
    *nblocks_out = 0;
    if (ctx->total == 0)
        return FL_OK;
    const fl_index nblocks = (ctx->total + FL_BLOCK_ELEMENTS - 1) / FL_BLOCK_ELEMENTS;
    ctx->partial = (double *)malloc((size_t)nblocks * sizeof(double));
    if (ctx->partial == NULL)
        return FL_ERR_NOMEM;
    *nblocks_out = nblocks;
    a->threads_used = fl_parallel_blocks(fn, ctx, nblocks, a->nthreads);
    return FL_OK;
}

static int bin_run(fl_bin_args *a, fl_sum_block_fn fn)
{
    bin_ctx ctx;
    ctx.a = a;
    ctx.total = a->rows * a->cols;
    ctx.partial = NULL;
    const fl_index nblocks = (ctx.total + FL_BLOCK_ELEMENTS - 1) / FL_BLOCK_ELEMENTS;
    const int used = fl_parallel_sum(fn, &ctx, nblocks, a->nthreads, 1, &a->sum);
    if (used == FL_ERR_NOMEM)
        return FL_ERR_NOMEM;
    a->threads_used = used;
    return FL_OK;
}

/* The first bad element of the first bad block, scanned in scalar code. */
#define FL_BIN_FIND_BAD(T)                                                                    \
    for (fl_index b = 0; b < nblocks; b++) {                                                  \
        if (ctx.partial[b] == 0.0)                                                            \
            continue;                                                                         \
        const fl_index hi = (b + 1) * FL_BLOCK_ELEMENTS < ctx.total ? (b + 1) * FL_BLOCK_ELEMENTS : ctx.total; \
        for (fl_index i = b * FL_BLOCK_ELEMENTS; i < hi; i++) {                               \
            const fl_index r = i / a->cols, k = i - r * a->cols;                              \
            const T xv = ((const T *)a->x)[r * a->x_sr + k * a->x_sk];                        \
            const T yv = ((const T *)a->y)[r * a->y_sr + k * a->y_sk];                        \
            if (!(xv >= 0 && xv <= 1)) {                                                      \
                *which = 0;                                                                   \
                found = i;                                                                    \
                break;                                                                        \
            }                                                                                 \
            if (!(yv >= 0 && yv <= 1)) {                                                      \
                *which = 1;                                                                   \
                found = i;                                                                    \
                break;                                                                        \
            }                                                                                 \
        }                                                                                     \
        break;                                                                                \
    }

fl_index fl_bin_check_unit_f32(const fl_bin_args *ca, int *which)
{
    fl_bin_args copy = *ca, *a = &copy;
    fl_block_fn fn = bin_check_block_f32_generic;
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        fn = bin_check_block_f32_avx512;
    else if (a->simd == FL_SIMD_AVX2)
        fn = bin_check_block_f32_avx2;
#endif
    bin_ctx ctx;
    fl_index nblocks, found = -1;
    *which = 0;
    if (bin_run_blocks(a, fn, &ctx, &nblocks) != FL_OK)
        return -2;
    FL_BIN_FIND_BAD(float)
    free(ctx.partial);
    return found;
}

fl_index fl_bin_check_unit_f64(const fl_bin_args *ca, int *which)
{
    fl_bin_args copy = *ca, *a = &copy;
    fl_block_fn fn = bin_check_block_f64_generic;
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        fn = bin_check_block_f64_avx512;
    else if (a->simd == FL_SIMD_AVX2)
        fn = bin_check_block_f64_avx2;
#endif
    bin_ctx ctx;
    fl_index nblocks, found = -1;
    *which = 0;
    if (bin_run_blocks(a, fn, &ctx, &nblocks) != FL_OK)
        return -2;
    FL_BIN_FIND_BAD(double)
    free(ctx.partial);
    return found;
}

int fl_binary_f32(fl_bin_args *a)
{
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        return bin_run(a, bin_block_f32_avx512);
    if (a->simd == FL_SIMD_AVX2)
        return bin_run(a, bin_block_f32_avx2);
#endif
    return bin_run(a, bin_block_f32_generic);
}

int fl_binary_f64(fl_bin_args *a)
{
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        return bin_run(a, bin_block_f64_avx512);
    if (a->simd == FL_SIMD_AVX2)
        return bin_run(a, bin_block_f64_avx2);
#endif
    return bin_run(a, bin_block_f64_generic);
}
