/*
 * Cross-entropy: the templates instantiated for float32 / float64 / bfloat16 / float16 and the
 * generic / AVX2 / AVX-512 paths, their dispatch table, and the entry point fl_cross_entropy (the call
 * protocol of fastloss.h: check targets, scale, kernel, reduction). Formulas and argument
 * conventions: cross_entropy.h.
 */
#include "cross_entropy.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

static inline fl_index ce_target(const fl_ce_args *a, fl_index i, fl_index j)
{
    const fl_index off = i * a->tv.sn + j * a->tv.ss;
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

/* The row kernel takes the rows of index targets CE_BATCH at a time when their C elements
 * each fit in CE_BATCH_BYTES together (ce_rows_batch); longer rows go one by one. */
#define CE_BATCH 16
#ifndef CE_BATCH_BYTES
#define CE_BATCH_BYTES (64.0 * 1024)
#endif

/* The per-call context the kernels read (the args stay const). */
typedef struct {
    const fl_ce_args *a;
    fl_index npos, block;
    double scale;        /* call.grad_scale over the mean's denominator (1 for none / sum) */
    double weight_total; /* sum of the class weights, c without weights */
    const fl_margin *margin; /* NULL, or a->margin with its derived constants (index targets) */
    float *scratch;      /* half dtypes with a gradient: slots x scratch_len floats (ce_scratch) */
    fl_index scratch_len;
    int slots;
} ce_ctx;

#define FL_HALF
#define FL_TEMPLATE "cross_entropy_dtype.h"
#include "fl_instantiate_dtype.h"

#define FL_TEMPLATE "cross_entropy_simd.h"
#include "fl_instantiate.h"

/* ---- the dispatch table: [path][dtype][layout] ------------------------------------- */

static const fl_kernel CE_KERNELS[FL_NSIMD][FL_NDTYPES][FL_NLAYOUTS] = FL_LAYOUT_TABLE(cross_entropy, ce_blk);

int fl_cross_entropy_kernels(int simd, const char **names, int max)
{
    return fl_kernel_names(&CE_KERNELS[fl_simd_row(simd)][0][0], FL_NDTYPES * FL_NLAYOUTS, names, max);
}

/* ---- the entry point ---------------------------------------------------------------- */

static int ce_layout(const fl_ce_args *a)
{
    const int prob = a->target_kind == FL_TARGET_PROB;
    return fl_layout(a->xv.sc == 1 && (!a->grad || a->gv.sc == 1) && (!prob || a->tv.sc == 1),
                     a->xv.ss == 1 && (!a->grad || a->gv.ss == 1) && (!prob || a->tv.ss == 1), a->s);
}

static double ce_weight_total(const fl_ce_args *a)
{
    if (a->weight == NULL)
        return (double)a->c;
    double total = 0.0;
    for (fl_index k = 0; k < a->c; k++)
        total += fl_weight_f32(a->call.dtype) ? (double)((const float *)a->weight)[k]
                                              : ((const double *)a->weight)[k];
    return total;
}

int fl_cross_entropy(fl_call *call)
{
    fl_ce_args *a = (fl_ce_args *)call; /* call is its first member */
    fl_call_reset(call);
    const int prob = a->target_kind == FL_TARGET_PROB;
    const fl_index npos = a->n * a->s;
    /* 1. targets, before anything is written */
    double kept = (double)npos; /* the mean's denominator */
    if (!prob) {
        const int st = fl_check_class_targets(a->target_kind, a->target, a->n, a->s, a->tv.sn, a->tv.ss, a->c,
                                              a->ignore_index, a->weight, call->dtype, &kept, call);
        if (st != FL_OK)
            return st;
    }
    /* 2. the gradient scale: kept == 0 with kept positions (their weights sum to 0) gives
     * torch's NaN gradient; when every position is ignored the gradient is 0 anyway */
    ce_ctx cx;
    cx.a = a;
    cx.npos = npos;
    cx.scale = call->reduction == FL_REDUCE_MEAN ? fl_mean_scale(call->grad_scale, kept) : call->grad_scale;
    cx.weight_total = ce_weight_total(a);
    fl_margin margin;
    cx.margin = NULL;
    a->hits = 0.0;
    if (a->margin && !prob) {
        margin = *a->margin;
        fl_margin_prepare(&margin);
        cx.margin = &margin;
    }
    /* 3. the kernel, in fixed blocks of about FL_BLOCK_ELEMENTS elements (a multiple of 8
     * positions in the column layout, so that its vectors stay whole); with a margin the
     * column layout takes the scalar positions of the strided one */
    int layout = ce_layout(a);
    if (cx.margin && layout == FL_COLS)
        layout = FL_STRIDED;
    fl_index block = FL_BLOCK_ELEMENTS / (a->c > 1 ? a->c : 1);
    if (block < 1)
        block = 1;
    if (layout == FL_COLS)
        block = (block + 7) / 8 * 8;
    cx.block = block;
    /* the half dtypes' terms between passes: per thread, a row (a batch of CE_BATCH short
     * rows), or L positions of the column layout (16 lanes at most) */
    cx.scratch = NULL;
    cx.scratch_len = 0;
    cx.slots = call->nthreads > 1 ? call->nthreads : 1;
    const int half = call->dtype == FL_DTYPE_BF16 || call->dtype == FL_DTYPE_F16;
    if (half && a->grad && npos > 0 && a->c > 0) {
        cx.scratch_len = (layout == FL_COLS ? 16 : CE_BATCH) * a->c;
        cx.scratch = (float *)malloc((size_t)cx.slots * (size_t)cx.scratch_len * sizeof(float));
        if (cx.scratch == NULL)
            return FL_ERR_NOMEM;
    }
    double sums[3] = {0.0, 0.0, 0.0}; /* nll terms, smoothing terms, top-1 hits (margin) */
    int status = FL_OK;
    if (npos > 0) {
        const fl_kernel *k = &CE_KERNELS[fl_simd_row(call->simd)][fl_dtype_row(call->dtype)][layout];
        status = fl_parallel_run(k, &cx, (npos + block - 1) / block, 3, sums, call);
    }
    free(cx.scratch);
    if (status != FL_OK)
        return status;
    a->hits = sums[2];
    /* 4. the two terms reduced as torch reduces them */
    const double eps = a->label_smoothing, eps_c = eps / (double)a->c; /* c == 0: inf, and inf * 0 gives torch's NaN */
    const double nll = sums[0], smooth = sums[1];
    if (call->reduction == FL_REDUCE_NONE) {
        if (!prob && a->c == 0 && eps != 0.0 && a->loss) {
            for (fl_index p = 0; p < npos; p++) {
                if (call->dtype == FL_DTYPE_F32)
                    ((float *)a->loss)[p] = NAN;
                else if (call->dtype == FL_DTYPE_F64)
                    ((double *)a->loss)[p] = NAN;
                else /* bfloat16, float16: a quiet NaN of each */
                    ((uint16_t *)a->loss)[p] = call->dtype == FL_DTYPE_BF16 ? 0x7FC0u : 0x7E00u;
            }
        }
    } else if (prob) {
        if (call->reduction == FL_REDUCE_SUM)
            call->value = npos != 0 && a->c != 0 ? nll : -0.0; /* torch: -(empty sum) */
        else
            call->value = a->c != 0 ? nll / (double)npos : NAN; /* torch: / (numel / C) */
    } else if (call->reduction == FL_REDUCE_SUM) {
        call->value = eps == 0.0 ? nll : (1.0 - eps) * nll + eps_c * smooth;
    } else {
        call->value = eps == 0.0 ? nll / kept : (1.0 - eps) * (nll / kept) + eps_c * (smooth / kept);
    }
    return FL_OK;
}
