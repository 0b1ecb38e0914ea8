/*
 * Template: the NLL loss kernels of one dtype (no SIMD path: see nll_loss.c), instantiated
 * through fl_instantiate_dtype.h (FL_T stored, FL_C computed, FL_TS, FL_DT, FL_GET / FL_PUT:
 * the half dtypes' losses and gradient entries are rounded once, from double).
 */
/* Losses of positions [j0, j1) of item i, added to *sum. */
static void FL_DT(nll_losses)(const fl_nll_args *a, fl_index i, fl_index j0, fl_index j1, double *sum)
{
    const FL_T *x = (const FL_T *)a->x + i * a->xv.sn;
    const FL_C *w = (const FL_C *)a->weight;
    FL_T *loss = (FL_T *)a->loss;
    double s = 0.0;
    for (fl_index j = j0; j < j1; j++) {
        const fl_index t = nll_target(a, i, j);
        double l = 0.0;
        if (t != a->ignore_index) {
            /* the product of two floats is exact in double: one rounding, as torch */
            l = -((w ? (double)w[t] : 1.0) * (double)FL_GET(x[t * a->xv.sc + j * a->xv.ss]));
        }
        if (loss)
            loss[i * a->s + j] = FL_PUT(l);
        s += l;
    }
    *sum += s;
}

/* Gradient of positions [j0, j1) of item i: the zero fill, then the target entries. */
static void FL_DT(nll_grad)(const nll_ctx *cx, fl_index i, fl_index j0, fl_index j1)
{
    const fl_nll_args *a = cx->a;
    const FL_C *w = (const FL_C *)a->weight;
    FL_T *g = (FL_T *)a->grad + i * a->gv.sn;
    const fl_index C = a->c, gs = a->gv.sc, gj = a->gv.ss;
    if (gs == 1 && gj == C) { /* the positions' rows are one contiguous run */
        memset(g + j0 * gj, 0, (size_t)((j1 - j0) * C) * sizeof(FL_T));
    } else if (gs == 1) {
        for (fl_index j = j0; j < j1; j++)
            memset(g + j * gj, 0, (size_t)C * sizeof(FL_T));
    } else if (gj == 1) {
        for (fl_index k = 0; k < C; k++)
            memset(g + k * gs + j0, 0, (size_t)(j1 - j0) * sizeof(FL_T));
    } else {
        for (fl_index k = 0; k < C; k++)
            for (fl_index j = j0; j < j1; j++)
                g[k * gs + j * gj] = FL_PUT(0.0);
    }
    for (fl_index j = j0; j < j1; j++) {
        const fl_index t = nll_target(a, i, j);
        if (t == a->ignore_index)
            continue;
        double sc = cx->scale;
        if (a->grad_out)
            sc *= (double)FL_GET(((const FL_T *)a->grad_out)[i * a->gov.sn + j * a->gov.ss]);
        g[t * gs + j * gj] = FL_PUT(-(w ? (double)w[t] : 1.0) * sc);
    }
}

/* The table's block functions: the losses of block b (sums[0], stored once), and the
 * gradient of block b (blocks of their own size). */
static void FL_DT(nll_blk_forward)(void *vctx, fl_index b, double *sums)
{
    const nll_ctx *ctx = (const nll_ctx *)vctx;
    const fl_nll_args *a = ctx->a;
    fl_index p0, p1;
    fl_block_range(b, ctx->block, ctx->npos, &p0, &p1);
    double sum = 0.0;
    for (fl_index p = p0; p < p1;) { /* split at item boundaries */
        const fl_index i = p / a->s, j = p - i * a->s;
        const fl_index stop = (i + 1) * a->s < p1 ? (i + 1) * a->s : p1;
        FL_DT(nll_losses)(a, i, j, j + (stop - p), &sum);
        p = stop;
    }
    sums[0] = sum;
}

static void FL_DT(nll_blk_backward)(void *vctx, fl_index b, double *sums)
{
    const nll_ctx *ctx = (const nll_ctx *)vctx;
    const fl_nll_args *a = ctx->a;
    fl_index p0, p1;
    fl_block_range(b, ctx->block, ctx->npos, &p0, &p1);
    (void)sums;
    for (fl_index p = p0; p < p1;) {
        const fl_index i = p / a->s, j = p - i * a->s;
        const fl_index stop = (i + 1) * a->s < p1 ? (i + 1) * a->s : p1;
        FL_DT(nll_grad)(ctx, i, j, j + (stop - p));
        p = stop;
    }
}

