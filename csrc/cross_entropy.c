/*
 * Cross-entropy kernels: the templates instantiated for float32 / float64 and for the
 * generic / AVX2 paths, and the two entry points that cut the work into blocks and run them.
 * Formulas and argument conventions: cross_entropy.h.
 */
#include "cross_entropy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)

static inline fl_index ce_target(const fl_ce_args *a, fl_index i, fl_index j)
{
    const fl_index off = i * a->t_sn + j * a->t_ss;
    if (a->target_kind == FL_TARGET_I32)
        return (fl_index)((const int32_t *)a->target)[off];
    return (fl_index)((const int64_t *)a->target)[off];
}

/* One position's loss from its two terms, as torch combines them elementwise. */
static inline double ce_combine(const fl_ce_args *a, double nll, double smooth)
{
    const double eps = a->label_smoothing;
    if (eps == 0.0 || a->target_kind == FL_TARGET_PROB)
        return nll;
    return (1.0 - eps) * nll + eps / (double)a->c * smooth;
}

enum { CE_ROWS, CE_COLS, CE_STRIDED };

typedef struct {
    const fl_ce_args *a;
    int layout;
    fl_index npos, block;
} ce_ctx;

/* ---- dtype-only parts ------------------------------------------------------------ */
#define FL_T float
#define FL_TS f32
#include "cross_entropy_dtype.h"
#undef FL_T
#undef FL_TS

#define FL_T double
#define FL_TS f64
#include "cross_entropy_dtype.h"
#undef FL_T
#undef FL_TS

#define FL_TEMPLATE "cross_entropy_simd.h"
#include "fl_instantiate.h"

/* ---- entry points ---------------------------------------------------------------- */

static int ce_layout(const fl_ce_args *a)
{
    const int prob = a->target_kind == FL_TARGET_PROB;
    if (a->x_sc == 1 && (!a->grad || a->g_sc == 1) && (!prob || a->t_sc == 1))
        return CE_ROWS;
    if (a->s > 1 && a->x_ss == 1 && (!a->grad || a->g_ss == 1) && (!prob || a->t_ss == 1))
        return CE_COLS;
    return CE_STRIDED;
}

static int ce_run(fl_ce_args *a, fl_sum_block_fn block_fn)
{
    ce_ctx ctx;
    ctx.a = a;
    ctx.layout = ce_layout(a);
    ctx.npos = a->n * a->s;
    a->nll_sum = a->smooth_sum = 0.0;
    a->threads_used = 1;
    if (ctx.npos == 0)
        return FL_OK;
    /* Fixed blocks of about FL_BLOCK_ELEMENTS elements, a multiple of 8 positions in the
     * column layout so that its vectors stay whole. */
    fl_index block = FL_BLOCK_ELEMENTS / (a->c > 1 ? a->c : 1);
    if (block < 1)
        block = 1;
    if (ctx.layout == CE_COLS)
        block = (block + 7) / 8 * 8;
    ctx.block = block;
    const fl_index nblocks = (ctx.npos + block - 1) / block;
    double totals[2];
    const int used = fl_parallel_sum(block_fn, &ctx, nblocks, a->nthreads, 2, totals);
    if (used == FL_ERR_NOMEM)
        return FL_ERR_NOMEM;
    a->threads_used = used;
    a->nll_sum = totals[0];
    a->smooth_sum = totals[1];
    return FL_OK;
}

int fl_cross_entropy_f32(fl_ce_args *a)
{
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        return ce_run(a, ce_block_f32_avx512);
    if (a->simd == FL_SIMD_AVX2)
        return ce_run(a, ce_block_f32_avx2);
#endif
    return ce_run(a, ce_block_f32_generic);
}

int fl_cross_entropy_f64(fl_ce_args *a)
{
#if FL_HAVE_AVX2_BUILD
    if (a->simd == FL_SIMD_AVX512)
        return ce_run(a, ce_block_f64_avx512);
    if (a->simd == FL_SIMD_AVX2)
        return ce_run(a, ce_block_f64_avx2);
#endif
    return ce_run(a, ce_block_f64_generic);
}
