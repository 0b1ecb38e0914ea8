/*
 * Regression losses (mse, l1, smooth_l1, huber): the shared elementwise driver, its template
 * instantiated for float32 / float64 / bfloat16 / float16 on the generic / AVX2 / AVX-512
 * paths, and the entry point. Formulas and argument conventions: regression.h.
 */
#include "regression.h"

#include <math.h>
#include <stdlib.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

typedef struct {
    const fl_reg_args *a;
    fl_index total, block;
    double scale; /* call.grad_scale over the mean's denominator */
} reg_ctx;

/* the largest float / double below v (v > 0 here: beta and delta of the kernels that use it;
 * v is FL_C, float for the half dtypes) */
#define FL_NEXTDOWN(v) (sizeof(v) == sizeof(float) ? (FL_C)nextafterf((float)(v), -INFINITY) \
                                                   : (FL_C)nextafter((double)(v), -INFINITY))

#define FL_HALF
#define FL_TEMPLATE "regression_simd.h"
#include "fl_instantiate.h"

/* ---- the dispatch table: [path][dtype][kind] --------------------------------------- */

#define REG_DTYPE_ROW(ts, path)                                                                \
    {FL_KERNEL_PATH(regression, mse, ts, path, reg_blk), FL_KERNEL_PATH(regression, l1, ts, path, reg_blk), \
     FL_KERNEL_PATH(regression, smooth_l1, ts, path, reg_blk), FL_KERNEL_PATH(regression, huber, ts, path, reg_blk)}
#define REG_PATH_ROW(path) \
    {REG_DTYPE_ROW(f32, path), REG_DTYPE_ROW(f64, path), REG_DTYPE_ROW(bf16, path), REG_DTYPE_ROW(f16, path)}

/* indexed by FL_REG_MSE, FL_REG_L1, FL_REG_SMOOTH_L1, FL_REG_HUBER */
static const fl_kernel REG_KERNELS[FL_NSIMD][FL_NDTYPES][4] = {
    REG_PATH_ROW(generic), REG_PATH_ROW(FL_PATH_AVX2), REG_PATH_ROW(FL_PATH_AVX512)};

int fl_regression_kernels(int simd, const char **names, int max)
{
    return fl_kernel_names(&REG_KERNELS[fl_simd_row(simd)][0][0], FL_NDTYPES * 4, names, max);
}

/* ---- the entry point ---------------------------------------------------------------- */

int fl_regression(fl_call *call)
{
    fl_reg_args *a = (fl_reg_args *)call; /* call is its first member */
    fl_call_reset(call);
    reg_ctx ctx;
    ctx.a = a;
    ctx.total = 1;
    for (int d = 0; d < a->ndim; d++)
        ctx.total *= a->shape[d];
    if (a->ndim < 1)
        ctx.total = 0;
    const fl_index numel = ctx.total;
    ctx.scale = call->reduction == FL_REDUCE_MEAN ? fl_mean_scale(call->grad_scale, (double)numel) : call->grad_scale;
    ctx.block = FL_BLOCK_ELEMENTS;
    double sum = 0.0;
    if (numel > 0) {
        const int kind = a->kind >= 0 && a->kind < 4 ? a->kind : FL_REG_HUBER;
        const fl_kernel *k = &REG_KERNELS[fl_simd_row(call->simd)][fl_dtype_row(call->dtype)][kind];
        if (fl_parallel_run(k, &ctx, (numel + ctx.block - 1) / ctx.block, 1, &sum, call) != FL_OK)
            return FL_ERR_NOMEM;
    }
    if (call->reduction == FL_REDUCE_SUM)
        call->value = sum;
    else if (call->reduction == FL_REDUCE_MEAN)
        call->value = numel ? sum / (double)numel : NAN;
    return FL_OK;
}
