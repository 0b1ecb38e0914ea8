/*
 * Softmax / log-softmax, forward and backward: the templates instantiated for float32 /
 * float64 / bfloat16 / float16 and the generic / AVX2 / AVX-512 paths, their dispatch table and the entry point
 * fl_softmax, which cuts the positions into fixed blocks and runs them. Formulas and
 * conventions: softmax.h.
 */
#include "softmax.h"

#include <math.h>
#include <stddef.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

typedef struct {
    const fl_softmax_args *a;
    fl_index npos, block;
} sm_ctx;

#define FL_HALF
#define FL_TEMPLATE "softmax_dtype.h"
#include "fl_instantiate_dtype.h"

#define FL_TEMPLATE "softmax_simd.h"
#include "fl_instantiate.h"

/* ---- the dispatch table: [path][dtype][layout] ------------------------------------- */

static const fl_kernel SM_KERNELS[FL_NSIMD][FL_NDTYPES][FL_NLAYOUTS] = FL_LAYOUT_TABLE(softmax, sm_blk);

int fl_softmax_kernels(int simd, const char **names, int max)
{
    return fl_kernel_names(&SM_KERNELS[fl_simd_row(simd)][0][0], FL_NDTYPES * FL_NLAYOUTS, names, max);
}

/* ---- the entry point ---------------------------------------------------------------- */

static int sm_layout(const fl_softmax_args *a)
{
    return fl_layout(a->xv.sc == 1 && a->ov.sc == 1 && (!a->backward || a->yv.sc == 1),
                     a->xv.ss == 1 && a->ov.ss == 1 && (!a->backward || a->yv.ss == 1), a->s);
}

int fl_softmax(fl_call *call)
{
    fl_softmax_args *a = (fl_softmax_args *)call; /* call is its first member */
    fl_call_reset(&a->call);
    sm_ctx ctx;
    ctx.a = a;
    ctx.npos = a->n * a->s;
    if (ctx.npos == 0 || a->c == 0)
        return FL_OK;
    /* fixed blocks of about FL_BLOCK_ELEMENTS elements (a multiple of 16 positions in the
     * column layout, so that its vectors stay whole); the shape alone decides them */
    const int layout = sm_layout(a);
    fl_index block = FL_BLOCK_ELEMENTS / a->c;
    if (block < 1)
        block = 1;
    if (layout == FL_COLS)
        block = (block + 15) / 16 * 16;
    ctx.block = block;
    const fl_kernel *k = &SM_KERNELS[fl_simd_row(a->call.simd)][fl_dtype_row(a->call.dtype)][layout];
    return fl_parallel_run(k, &ctx, (ctx.npos + block - 1) / block, 0, NULL, &a->call);
}
