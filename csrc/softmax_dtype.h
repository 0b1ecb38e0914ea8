/*
 * Template: the scalar parts of softmax.c that depend on the dtype only, instantiated through
 * fl_instantiate_dtype.h (FL_T stored, FL_C computed, FL_TS, FL_DT, FL_GET / FL_PUT); each
 * output is rounded once from double.
 *
 *   sm_position_fwd_<TS> / sm_position_bwd_<TS>: one position with any strides, in double
 *   arithmetic: the fallback for layouts the vector kernels do not take. Formulas: softmax.h.
 *   Every entry is read before the same entry is written, so out may be x or y itself.
 *   sm_blk_strided_<TS>: the table's block function of that layout.
 */

static void FL_DT(sm_position_fwd)(const fl_softmax_args *a, fl_index i, fl_index j)
{
    const FL_T *x = (const FL_T *)a->x + i * a->xv.sn + j * a->xv.ss;
    FL_T *o = (FL_T *)a->out + i * a->ov.sn + j * a->ov.ss;
    const fl_index C = a->c, xs = a->xv.sc, os = a->ov.sc;
    double m = -INFINITY;
    for (fl_index k = 0; k < C; k++) {
        const double xk = (double)FL_GET(x[k * xs]);
        m = xk > m ? xk : m; /* a NaN is skipped here and poisons the sum below */
    }
    double sum = 0.0;
    for (fl_index k = 0; k < C; k++)
        sum += exp((double)FL_GET(x[k * xs]) - m);
    if (a->log) {
        const double ls = log(sum);
        for (fl_index k = 0; k < C; k++)
            o[k * os] = FL_PUT(((double)FL_GET(x[k * xs]) - m) - ls);
    } else {
        const double inv = 1.0 / sum;
        for (fl_index k = 0; k < C; k++)
            o[k * os] = FL_PUT(exp((double)FL_GET(x[k * xs]) - m) * inv);
    }
}

static void FL_DT(sm_position_bwd)(const fl_softmax_args *a, fl_index i, fl_index j)
{
    const FL_T *g = (const FL_T *)a->x + i * a->xv.sn + j * a->xv.ss;
    const FL_T *y = (const FL_T *)a->y + i * a->yv.sn + j * a->yv.ss;
    FL_T *o = (FL_T *)a->out + i * a->ov.sn + j * a->ov.ss;
    const fl_index C = a->c, gs = a->xv.sc, ys = a->yv.sc, os = a->ov.sc;
    double sum = 0.0;
    if (a->log) {
        for (fl_index k = 0; k < C; k++)
            sum += (double)FL_GET(g[k * gs]);
        for (fl_index k = 0; k < C; k++)
            o[k * os] = FL_PUT((double)FL_GET(g[k * gs]) - exp((double)FL_GET(y[k * ys])) * sum);
    } else {
        for (fl_index k = 0; k < C; k++)
            sum += (double)FL_GET(g[k * gs]) * (double)FL_GET(y[k * ys]);
        for (fl_index k = 0; k < C; k++)
            o[k * os] = FL_PUT((double)FL_GET(y[k * ys]) * ((double)FL_GET(g[k * gs]) - sum));
    }
}

static void FL_DT(sm_blk_strided)(void *vctx, fl_index b, double *sums)
{
    const sm_ctx *ctx = (const sm_ctx *)vctx;
    fl_index p0, p1;
    (void)sums;
    fl_block_range(b, ctx->block, ctx->npos, &p0, &p1);
    for (fl_index p = p0; p < p1; p++) { /* a division per position: small next to its exps */
        const fl_index i = p / ctx->a->s, j = p - i * ctx->a->s;
        if (ctx->a->backward)
            FL_DT(sm_position_bwd)(ctx->a, i, j);
        else
            FL_DT(sm_position_fwd)(ctx->a, i, j);
    }
}
