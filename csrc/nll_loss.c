/*
 * NLL loss kernels (formulas and conventions: nll_loss.h). The forward pass is a gather of
 * one element per position; the backward pass is a zero fill (memset on contiguous runs)
 * plus one store per position, so neither needs the SIMD op headers: the work is memory
 * traffic, which the fill already streams at full speed.
 */
#include "nll_loss.h"

#include <stdlib.h>
#include <string.h>

static inline fl_index nll_target(const fl_nll_args *a, fl_index i, fl_index j)
{
    const fl_index off = i * a->t_sn + j * a->t_ss;
    if (a->target_kind == FL_NLL_TARGET_I32)
        return (fl_index)((const int32_t *)a->target)[off];
    return (fl_index)((const int64_t *)a->target)[off];
}

typedef struct {
    fl_nll_args *a;
    fl_index npos, block;
} nll_ctx;

#define NLL_DTYPE(T, TS)                                                                       \
    fl_index fl_nll_check_targets_##TS(const fl_nll_args *a, double *kept_weight, int64_t *bad_value) \
    {                                                                                          \
        const T *w = (const T *)a->weight;                                                     \
        double kept = 0.0;                                                                     \
        for (fl_index i = 0; i < a->n; i++) {                                                  \
            for (fl_index j = 0; j < a->s; j++) {                                              \
                const fl_index t = nll_target(a, i, j);                                        \
                if (t == a->ignore_index)                                                      \
                    continue;                                                                  \
                if (t < 0 || t >= a->c) {                                                      \
                    *bad_value = t;                                                            \
                    return i * a->s + j;                                                       \
                }                                                                              \
                kept += w ? (double)w[t] : 1.0;                                                \
            }                                                                                  \
        }                                                                                      \
        *kept_weight = kept;                                                                   \
        return -1;                                                                             \
    }                                                                                          \
                                                                                               \
    /* Losses of positions [j0, j1) of item i, added to *sum. */                             \
    static void nll_losses_##TS(const fl_nll_args *a, fl_index i, fl_index j0, fl_index j1, double *sum) \
    {                                                                                          \
        const T *x = (const T *)a->x + i * a->x_sn;                                            \
        const T *w = (const T *)a->weight;                                                     \
        T *loss = (T *)a->loss;                                                                \
        double s = 0.0;                                                                        \
        for (fl_index j = j0; j < j1; j++) {                                                   \
            const fl_index t = nll_target(a, i, j);                                            \
            double l = 0.0;                                                                    \
            if (t != a->ignore_index) {                                                        \
                /* the product of two floats is exact in double: one rounding, as torch */    \
                l = -((w ? (double)w[t] : 1.0) * (double)x[t * a->x_sc + j * a->x_ss]);        \
            }                                                                                  \
            if (loss)                                                                          \
                loss[i * a->s + j] = (T)l;                                                     \
            s += l;                                                                            \
        }                                                                                      \
        *sum += s;                                                                             \
    }                                                                                          \
                                                                                               \
    /* Gradient of positions [j0, j1) of item i: the zero fill, then the target entries. */   \
    static void nll_grad_##TS(const fl_nll_args *a, fl_index i, fl_index j0, fl_index j1)      \
    {                                                                                          \
        const T *w = (const T *)a->weight;                                                     \
        T *g = (T *)a->grad + i * a->g_sn;                                                     \
        const fl_index C = a->c, gs = a->g_sc, gj = a->g_ss;                                   \
        if (gs == 1 && gj == C) { /* the positions' rows are one contiguous run */           \
            memset(g + j0 * gj, 0, (size_t)((j1 - j0) * C) * sizeof(T));                       \
        } else if (gs == 1) {                                                                  \
            for (fl_index j = j0; j < j1; j++)                                                 \
                memset(g + j * gj, 0, (size_t)C * sizeof(T));                                  \
        } else if (gj == 1) {                                                                  \
            for (fl_index k = 0; k < C; k++)                                                   \
                memset(g + k * gs + j0, 0, (size_t)(j1 - j0) * sizeof(T));                    \
        } else {                                                                               \
            for (fl_index k = 0; k < C; k++)                                                   \
                for (fl_index j = j0; j < j1; j++)                                             \
                    g[k * gs + j * gj] = 0;                                                    \
        }                                                                                      \
        for (fl_index j = j0; j < j1; j++) {                                                   \
            const fl_index t = nll_target(a, i, j);                                            \
            if (t == a->ignore_index)                                                          \
                continue;                                                                      \
            double sc = a->scale;                                                              \
            if (a->grad_out)                                                                   \
                sc *= (double)((const T *)a->grad_out)[i * a->go_sn + j * a->go_ss];           \
            g[t * gs + j * gj] = (T)(-(w ? (double)w[t] : 1.0) * sc);                          \
        }                                                                                      \
    }                                                                                          \
                                                                                               \
    static void nll_loss_block_##TS(void *vctx, fl_index b, double *sums)                      \
    {                                                                                          \
        nll_ctx *ctx = (nll_ctx *)vctx;                                                        \
        const fl_nll_args *a = ctx->a;                                                         \
        const fl_index p0 = b * ctx->block;                                                    \
        const fl_index p1 = p0 + ctx->block < ctx->npos ? p0 + ctx->block : ctx->npos;        \
        double sum = 0.0;                                                                      \
        for (fl_index p = p0; p < p1;) { /* split at item boundaries */                        \
            const fl_index i = p / a->s, j = p - i * a->s;                                     \
            const fl_index stop = (i + 1) * a->s < p1 ? (i + 1) * a->s : p1;                   \
            nll_losses_##TS(a, i, j, j + (stop - p), &sum);                                    \
            p = stop;                                                                          \
        }                                                                                      \
        sums[0] = sum;                                                                         \
    }                                                                                          \
                                                                                               \
    static void nll_grad_block_##TS(void *vctx, fl_index b)                                    \
    {                                                                                          \
        nll_ctx *ctx = (nll_ctx *)vctx;                                                        \
        const fl_nll_args *a = ctx->a;                                                         \
        const fl_index p0 = b * ctx->block;                                                    \
        const fl_index p1 = p0 + ctx->block < ctx->npos ? p0 + ctx->block : ctx->npos;        \
        for (fl_index p = p0; p < p1;) {                                                       \
            const fl_index i = p / a->s, j = p - i * a->s;                                     \
            const fl_index stop = (i + 1) * a->s < p1 ? (i + 1) * a->s : p1;                   \
            nll_grad_##TS(a, i, j, j + (stop - p));                                            \
            p = stop;                                                                          \
        }                                                                                      \
    }

NLL_DTYPE(float, f32)
NLL_DTYPE(double, f64)
#undef NLL_DTYPE

/* Losses in fixed blocks of positions (independent of C and of the thread count, and the
 * same with or without a gradient, so the loss has the same bits from both functions); then
 * the gradient in blocks of about FL_BLOCK_ELEMENTS elements. The losses read x before the
 * gradient (maybe x itself) is written. */
#define NLL_LOSS_BLOCK ((fl_index)8192)

static int nll_run(fl_nll_args *a, fl_sum_block_fn loss_fn, fl_block_fn grad_fn)
{
    nll_ctx ctx;
    ctx.a = a;
    ctx.npos = a->n * a->s;
    a->loss_sum = 0.0;
    a->threads_used = 1;
    if (ctx.npos == 0)
        return FL_OK;
    ctx.block = NLL_LOSS_BLOCK;
    fl_index nblocks = (ctx.npos + ctx.block - 1) / ctx.block;
    const int used_loss = fl_parallel_sum(loss_fn, &ctx, nblocks, a->nthreads, 1, &a->loss_sum);
    if (used_loss == FL_ERR_NOMEM)
        return FL_ERR_NOMEM;
    a->threads_used = used_loss;
    if (a->grad) {
        fl_index block = FL_BLOCK_ELEMENTS / (a->c > 1 ? a->c : 1);
        ctx.block = block < 1 ? 1 : block;
        nblocks = (ctx.npos + ctx.block - 1) / ctx.block;
        const int used = fl_parallel_blocks(grad_fn, &ctx, nblocks, a->nthreads);
        a->threads_used = used > a->threads_used ? used : a->threads_used;
    }
    return FL_OK;
}

int fl_nll_loss_f32(fl_nll_args *a) { return nll_run(a, nll_loss_block_f32, nll_grad_block_f32); }
int fl_nll_loss_f64(fl_nll_args *a) { return nll_run(a, nll_loss_block_f64, nll_grad_block_f64); }
