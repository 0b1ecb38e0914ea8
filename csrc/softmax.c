/*
 * Softmax / log-softmax kernels, forward and backward: the templates instantiated for
 * float32 / float64 and the generic / AVX2 / AVX-512 paths, and the entry points that cut
 * the positions into fixed blocks and run them. Formulas and conventions: softmax.h.
 */
#include "softmax.h"

#include <math.h>
#include <stddef.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)

enum { SM_ROWS, SM_COLS, SM_STRIDED };

typedef struct {
    const fl_softmax_args *a;
    int layout, backward;
    fl_index npos, block;
} sm_ctx;

/* ---- dtype-only parts ------------------------------------------------------------ */
#define FL_T float
#define FL_TS f32
#include "softmax_dtype.h"
#undef FL_T
#undef FL_TS

#define FL_T double
#define FL_TS f64
#include "softmax_dtype.h"
#undef FL_T
#undef FL_TS


#define FL_TEMPLATE "softmax_simd.h"
#include "fl_instantiate.h"

/* ---- entry points ---------------------------------------------------------------- */

static int sm_layout(const fl_softmax_args *a, int backward)
{
    if (a->x_sc == 1 && a->o_sc == 1 && (!backward || a->y_sc == 1))
        return SM_ROWS;
    if (a->s > 1 && a->x_ss == 1 && a->o_ss == 1 && (!backward || a->y_ss == 1))
        return SM_COLS;
    return SM_STRIDED;
}

static int sm_run(fl_softmax_args *a, int backward, fl_block_fn fn)
{
    sm_ctx ctx;
    ctx.a = a;
    ctx.backward = backward;
    ctx.layout = sm_layout(a, backward);
    ctx.npos = a->n * a->s;
    a->threads_used = 1;
    if (ctx.npos == 0 || a->c == 0)
        return FL_OK;
    /* fixed blocks of about FL_BLOCK_ELEMENTS elements (a multiple of 16 positions in the
     * column layout, so that its vectors stay whole); the shape alone decides them */
    fl_index block = FL_BLOCK_ELEMENTS / a->c;
    if (block < 1)
        block = 1;
    if (ctx.layout == SM_COLS)
        block = (block + 15) / 16 * 16;
    ctx.block = block;
    a->threads_used = fl_parallel_blocks(fn, &ctx, (ctx.npos + block - 1) / block, a->nthreads);
    return FL_OK;
}

#if FL_HAVE_AVX2_BUILD
#define SM_DISPATCH(TS, backward)                                                              \
    do {                                                                                       \
        if (a->simd == FL_SIMD_AVX512)                                                         \
            return sm_run(a, backward, sm_block_##TS##_avx512);                                \
        if (a->simd == FL_SIMD_AVX2)                                                           \
            return sm_run(a, backward, sm_block_##TS##_avx2);                                  \
        return sm_run(a, backward, sm_block_##TS##_generic);                                   \
    } while (0)
#else
#define SM_DISPATCH(TS, backward) return sm_run(a, backward, sm_block_##TS##_generic)
#endif

int fl_softmax_f32(fl_softmax_args *a) { SM_DISPATCH(f32, 0); }
int fl_softmax_f64(fl_softmax_args *a) { SM_DISPATCH(f64, 0); }
int fl_softmax_backward_f32(fl_softmax_args *a) { SM_DISPATCH(f32, 1); }
int fl_softmax_backward_f64(fl_softmax_args *a) { SM_DISPATCH(f64, 1); }
