/*
 * Template: the vector softmax kernels for one (dtype, SIMD path). Included by softmax.c
 * through fl_instantiate.h (FL_P, FL_T, FL_TS, FL_PATH, FL_ATTR, FL_F32; the op shorthands
 * and the row toolkit of fl_instance.h).
 *
 * Two layouts run vectorized (softmax.c picks one per call from the strides):
 *   rows     the softmax axis contiguous in every array: one position at a time, vectors
 *            along the axis, passes over a row that stays in cache (forward: max,
 *            exp + sum [softmax: written into out], write; backward: sum, write);
 *   columns  inner positions contiguous (s > 1): a vector of neighbouring positions at a
 *            time (masked at the end of a run), walking the axis by its stride, the same
 *            passes lane by lane.
 * Every entry is read before the same entry is written: out may be x or y itself.
 * Formulas: softmax.h.
 */

/* o = v * f over a contiguous row (o may be v) */
static inline FL_ATTR void FL_KN(sm_scale)(const FL_T *v, FL_T *o, fl_index C, FL_T f)
{
    const FL_V vf = FL_OP(set1)(f);
    const fl_index L = FL_L;
    fl_index k = 0;
    for (; k + 2 * L <= C; k += 2 * L) {
        FL_OP(store)(o + k, FL_OP(mul)(FL_OP(load)(v + k), vf));
        FL_OP(store)(o + k + L, FL_OP(mul)(FL_OP(load)(v + k + L), vf));
    }
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        FL_OP(storen)(o + k, FL_OP(mul)(FL_OP(loadn)(v + k, r, 0), vf), r);
    }
}

/* o = (x - m) - ls over a contiguous row */
static inline FL_ATTR void FL_KN(sm_logwrite)(const FL_T *x, FL_T *o, fl_index C, FL_T m, FL_T ls)
{
    const FL_V vm = FL_OP(set1)(m), vl = FL_OP(set1)(ls);
    const fl_index L = FL_L;
    fl_index k = 0;
    for (; k + 2 * L <= C; k += 2 * L) {
        FL_OP(store)(o + k, FL_OP(sub)(FL_OP(sub)(FL_OP(load)(x + k), vm), vl));
        FL_OP(store)(o + k + L, FL_OP(sub)(FL_OP(sub)(FL_OP(load)(x + k + L), vm), vl));
    }
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        FL_OP(storen)(o + k, FL_OP(sub)(FL_OP(sub)(FL_OP(loadn)(x + k, r, 0), vm), vl), r);
    }
}

static FL_ATTR void FL_KN(sm_row_fwd)(const fl_softmax_args *a, const FL_T *x, FL_T *o)
{
    const fl_index C = a->c;
    const FL_T m = FL_KN(fl_rowmax)(x, C);
    if (a->log) {
        const double sum = FL_KN(fl_expsum)(x, NULL, C, m, 0);
        FL_KN(sm_logwrite)(x, o, C, m, (FL_T)log(sum));
    } else {
        const double sum = FL_KN(fl_expsum)(x, o, C, m, 1);
        FL_KN(sm_scale)(o, o, C, (FL_T)(1.0 / sum));
    }
}

static FL_ATTR void FL_KN(sm_row_bwd)(const fl_softmax_args *a, const FL_T *g, const FL_T *y, FL_T *o)
{
    const fl_index C = a->c, L = FL_L;
    FL_ACC s0 = FL_OP(acc_zero)(), s1 = FL_OP(acc_zero)();
    fl_index k = 0;
    if (a->log) {
        for (; k + 4 * L <= C; k += 4 * L) {
            s0 = FL_OP(acc_add)(s0, FL_OP(add)(FL_OP(load)(g + k), FL_OP(load)(g + k + L)));
            s1 = FL_OP(acc_add)(s1, FL_OP(add)(FL_OP(load)(g + k + 2 * L), FL_OP(load)(g + k + 3 * L)));
        }
        for (; k < C; k += L) {
            const fl_index r = C - k < L ? C - k : L;
            s0 = FL_OP(acc_add)(s0, FL_OP(loadn)(g + k, r, 0));
        }
        const FL_V vs = FL_OP(set1)((FL_T)(FL_OP(acc_hsum)(s0) + FL_OP(acc_hsum)(s1)));
        for (k = 0; k + L <= C; k += L)
            FL_OP(store)(o + k, FL_OP(fnmadd)(FL_OP(exp)(FL_OP(load)(y + k)), vs, FL_OP(load)(g + k)));
        if (k < C) {
            const fl_index r = C - k;
            const FL_V v = FL_OP(fnmadd)(FL_OP(exp)(FL_OP(loadn)(y + k, r, 0)), vs, FL_OP(loadn)(g + k, r, 0));
            FL_OP(storen)(o + k, v, r);
        }
    } else {
        for (; k + 2 * L <= C; k += 2 * L) {
            s0 = FL_OP(acc_add)(s0, FL_OP(mul)(FL_OP(load)(g + k), FL_OP(load)(y + k)));
            s1 = FL_OP(acc_add)(s1, FL_OP(mul)(FL_OP(load)(g + k + L), FL_OP(load)(y + k + L)));
        }
        for (; k < C; k += L) {
            const fl_index r = C - k < L ? C - k : L;
            s0 = FL_OP(acc_add)(s0, FL_OP(mul)(FL_OP(loadn)(g + k, r, 0), FL_OP(loadn)(y + k, r, 0)));
        }
        const FL_V vs = FL_OP(set1)((FL_T)(FL_OP(acc_hsum)(s0) + FL_OP(acc_hsum)(s1)));
        for (k = 0; k + L <= C; k += L)
            FL_OP(store)(o + k, FL_OP(mul)(FL_OP(load)(y + k), FL_OP(sub)(FL_OP(load)(g + k), vs)));
        if (k < C) {
            const fl_index r = C - k;
            FL_OP(storen)(o + k, FL_OP(mul)(FL_OP(loadn)(y + k, r, 0), FL_OP(sub)(FL_OP(loadn)(g + k, r, 0), vs)), r);
        }
    }
}

/* Load / store r (<= L) neighbouring positions: whole vectors when r == L. */
static inline FL_ATTR FL_V FL_KN(sm_ld)(const FL_T *p, fl_index r)
{
    return r == FL_L ? FL_OP(load)(p) : FL_OP(loadn)(p, r, 0);
}
static inline FL_ATTR void FL_KN(sm_st)(FL_T *p, FL_V v, fl_index r)
{
    if (r == FL_L)
        FL_OP(store)(p, v);
    else
        FL_OP(storen)(p, v, r);
}

/* Positions [j0, j1) of outer position i, column layout (xv.ss == ov.ss == 1, and yv.ss == 1
 * backward). */
static FL_ATTR void FL_KN(sm_cols)(const fl_softmax_args *a, int backward, fl_index i, fl_index j0, fl_index j1)
{
    enum { L = FL_L };
    const fl_index C = a->c, xs = a->xv.sc, ys = a->yv.sc, os = a->ov.sc;
    for (fl_index j = j0; j < j1; j += L) {
        const fl_index r = j1 - j < L ? j1 - j : L;
        const FL_T *x = (const FL_T *)a->x + i * a->xv.sn + j;
        FL_T *o = (FL_T *)a->out + i * a->ov.sn + j;
        double sum[L];
        FL_T f[L];
        if (!backward) {
            FL_V vmax = FL_OP(set1)(-INFINITY);
            for (fl_index k = 0; k < C; k++)
                vmax = FL_OP(max)(vmax, FL_KN(sm_ld)(x + k * xs, r));
            FL_ACC as = FL_OP(acc_zero)();
            for (fl_index k = 0; k < C; k++) {
                const FL_V e = FL_OP(exp_le0)(FL_OP(sub)(FL_KN(sm_ld)(x + k * xs, r), vmax));
                if (!a->log)
                    FL_KN(sm_st)(o + k * os, e, r);
                as = FL_OP(acc_add)(as, e);
            }
            FL_OP(acc_store)(sum, as);
            for (int l = 0; l < L; l++)
                f[l] = a->log ? (FL_T)log(sum[l]) : (FL_T)(1.0 / sum[l]);
            const FL_V vf = FL_OP(load)(f);
            if (a->log)
                for (fl_index k = 0; k < C; k++)
                    FL_KN(sm_st)(o + k * os, FL_OP(sub)(FL_OP(sub)(FL_KN(sm_ld)(x + k * xs, r), vmax), vf), r);
            else
                for (fl_index k = 0; k < C; k++)
                    FL_KN(sm_st)(o + k * os, FL_OP(mul)(FL_KN(sm_ld)(o + k * os, r), vf), r);
        } else {
            const FL_T *y = (const FL_T *)a->y + i * a->yv.sn + j;
            FL_ACC as = FL_OP(acc_zero)();
            for (fl_index k = 0; k < C; k++) {
                const FL_V gv = FL_KN(sm_ld)(x + k * xs, r);
                as = FL_OP(acc_add)(as, a->log ? gv : FL_OP(mul)(gv, FL_KN(sm_ld)(y + k * ys, r)));
            }
            FL_OP(acc_store)(sum, as);
            for (int l = 0; l < L; l++)
                f[l] = (FL_T)sum[l];
            const FL_V vs = FL_OP(load)(f);
            for (fl_index k = 0; k < C; k++) {
                const FL_V gv = FL_KN(sm_ld)(x + k * xs, r), yv = FL_KN(sm_ld)(y + k * ys, r);
                const FL_V v = a->log ? FL_OP(fnmadd)(FL_OP(exp)(yv), vs, gv) : FL_OP(mul)(yv, FL_OP(sub)(gv, vs));
                FL_KN(sm_st)(o + k * os, v, r);
            }
        }
    }
}

/* The table's block functions: block b of the row / column layout (sums unused). */
static FL_ATTR void FL_KN(sm_blk_rows)(void *vctx, fl_index b, double *sums)
{
    const sm_ctx *ctx = (const sm_ctx *)vctx;
    const fl_softmax_args *a = ctx->a;
    const fl_index S = a->s;
    fl_index p0, p1;
    fl_block_range(b, ctx->block, ctx->npos, &p0, &p1);
    (void)sums;
    fl_index i = p0 / S, j = p0 - i * S;
    for (fl_index p = p0; p < p1; p++, j++) {
        if (j == S) {
            i++;
            j = 0;
        }
        const FL_T *x = (const FL_T *)a->x + i * a->xv.sn + j * a->xv.ss;
        FL_T *o = (FL_T *)a->out + i * a->ov.sn + j * a->ov.ss;
        if (a->backward)
            FL_KN(sm_row_bwd)(a, x, (const FL_T *)a->y + i * a->yv.sn + j * a->yv.ss, o);
        else
            FL_KN(sm_row_fwd)(a, x, o);
    }
}

static FL_ATTR void FL_KN(sm_blk_cols)(void *vctx, fl_index b, double *sums)
{
    const sm_ctx *ctx = (const sm_ctx *)vctx;
    fl_index p0, p1;
    (void)sums;
    fl_block_range(b, ctx->block, ctx->npos, &p0, &p1);
    for (fl_index p = p0, S = ctx->a->s; p < p1;) { /* split at outer-position boundaries */
        const fl_index i = p / S, j = p - i * S;
        const fl_index stop = (i + 1) * S < p1 ? (i + 1) * S : p1;
        FL_KN(sm_cols)(ctx->a, ctx->a->backward, i, j, j + (stop - p));
        p = stop;
    }
}
