/*
 * Regression losses (mse, l1, smooth_l1, huber): the shared elementwise driver, its template
 * instantiated for float32 / float64 on the generic / AVX2 / AVX-512 paths, and the two
 * entry points. Formulas and argument conventions: regression.h.
 */
#include "regression.h"

#include <math.h>
#include <stdlib.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)

typedef struct {
    const fl_reg_args *a;
    fl_index total, block;
} reg_ctx;

/* the largest float / double below v (v > 0 here: beta and delta of the kernels that use it) */
#define FL_NEXTDOWN(v) (sizeof(v) == sizeof(float) ? (FL_T)nextafterf((float)(v), -INFINITY) \
                                                   : (FL_T)nextafter((double)(v), -INFINITY))

#define FL_TEMPLATE "regression_simd.h"
#include "fl_instantiate.h"

static int reg_run(fl_reg_args *a, fl_sum_block_fn block_fn)
{
    reg_ctx ctx;
    ctx.a = a;
    ctx.total = 1;
    for (int d = 0; d < a->ndim; d++)
        ctx.total *= a->shape[d];
    a->loss_sum = 0.0;
    a->threads_used = 1;
    if (ctx.total == 0 || a->ndim < 1)
        return FL_OK;
    ctx.block = FL_BLOCK_ELEMENTS;
    const fl_index nblocks = (ctx.total + ctx.block - 1) / ctx.block;
    const int used = fl_parallel_sum(block_fn, &ctx, nblocks, a->nthreads, 1, &a->loss_sum);
    if (used == FL_ERR_NOMEM)
        return FL_ERR_NOMEM;
    a->threads_used = used;
    return FL_OK;
}

int fl_regression_f32(fl_reg_args *a)
{
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        return reg_run(a, reg_block_f32_avx512);
    if (a->simd == FL_SIMD_AVX2)
        return reg_run(a, reg_block_f32_avx2);
#endif
    return reg_run(a, reg_block_f32_generic);
}

int fl_regression_f64(fl_reg_args *a)
{
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        return reg_run(a, reg_block_f64_avx512);
    if (a->simd == FL_SIMD_AVX2)
        return reg_run(a, reg_block_f64_avx2);
#endif
    return reg_run(a, reg_block_f64_generic);
}
