/*
 * NLL loss kernels (formulas and conventions: nll_loss.h), their dispatch table and the entry
 * point fl_nll_loss. The forward pass is a gather of one element per position; the backward
 * pass is a zero fill (memset on contiguous runs) plus one store per position, so neither
 * needs the SIMD op headers: the work is memory traffic, which the fill already streams at
 * full speed. Every path's row of the table holds the same dtype-only kernels.
 */
#include "nll_loss.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline fl_index nll_target(const fl_nll_args *a, fl_index i, fl_index j)
{
    const fl_index off = i * a->tv.sn + j * a->tv.ss;
    if (a->target_kind == FL_TARGET_I32)
        return (fl_index)((const int32_t *)a->target)[off];
    return (fl_index)((const int64_t *)a->target)[off];
}

typedef struct {
    const fl_nll_args *a;
    fl_index npos, block;
    double scale; /* call.grad_scale over the mean's denominator */
} nll_ctx;

#define FL_HALF
#define FL_TEMPLATE "nll_loss_dtype.h"
#include "fl_instantiate_dtype.h"

/* ---- the dispatch table: [path][dtype][pass] ---------------------------------------- */

enum { NLL_FORWARD, NLL_BACKWARD, NLL_NPASSES };

#define NLL_DTYPE_ROW(ts) {FL_KERNEL_DTYPE(nll_loss, forward, ts, nll_blk), FL_KERNEL_DTYPE(nll_loss, backward, ts, nll_blk)}
#define NLL_PATH_ROW {NLL_DTYPE_ROW(f32), NLL_DTYPE_ROW(f64), NLL_DTYPE_ROW(bf16), NLL_DTYPE_ROW(f16)}

static const fl_kernel NLL_KERNELS[FL_NSIMD][FL_NDTYPES][NLL_NPASSES] = {NLL_PATH_ROW, NLL_PATH_ROW, NLL_PATH_ROW};

int fl_nll_loss_kernels(int simd, const char **names, int max)
{
    return fl_kernel_names(&NLL_KERNELS[fl_simd_row(simd)][0][0], FL_NDTYPES * NLL_NPASSES, names, max);
}

/* ---- the entry point ---------------------------------------------------------------- */

/* Losses in fixed blocks of positions (independent of C and of the thread count, and the
 * same with or without a gradient, so the loss has the same bits from both functions); then
 * the gradient in blocks of about FL_BLOCK_ELEMENTS elements. The losses read x before the
 * gradient (maybe x itself) is written. */
#define NLL_LOSS_BLOCK ((fl_index)8192)

int fl_nll_loss(fl_call *call)
{
    fl_nll_args *a = (fl_nll_args *)call; /* call is its first member */
    fl_call_reset(call);
    nll_ctx ctx;
    ctx.a = a;
    ctx.npos = a->n * a->s;
    double kept = (double)ctx.npos;
    const int st = fl_check_class_targets(a->target_kind, a->target, a->n, a->s, a->tv.sn, a->tv.ss, a->c,
                                          a->ignore_index, a->weight, call->dtype, &kept, call);
    if (st != FL_OK)
        return st;
    ctx.scale = call->reduction == FL_REDUCE_MEAN ? fl_mean_scale(call->grad_scale, kept) : call->grad_scale;
    double sum = 0.0;
    if (ctx.npos > 0) {
        const fl_kernel *k = NLL_KERNELS[fl_simd_row(call->simd)][fl_dtype_row(call->dtype)];
        ctx.block = NLL_LOSS_BLOCK;
        if (fl_parallel_run(&k[NLL_FORWARD], &ctx, (ctx.npos + ctx.block - 1) / ctx.block, 1, &sum, call) != FL_OK)
            return FL_ERR_NOMEM;
        if (a->grad) {
            const fl_index block = FL_BLOCK_ELEMENTS / (a->c > 1 ? a->c : 1);
            ctx.block = block < 1 ? 1 : block;
            fl_parallel_run(&k[NLL_BACKWARD], &ctx, (ctx.npos + ctx.block - 1) / ctx.block, 0, NULL, call);
        }
    }
    if (call->reduction == FL_REDUCE_SUM)
        call->value = sum;
    else if (call->reduction == FL_REDUCE_MEAN)
        call->value = kept != 0.0 ? sum / kept : (sum == 0.0 ? NAN : sum / kept);
    return FL_OK;
}
