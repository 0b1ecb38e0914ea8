/*
 * Template: the vector softmax kernels for one (dtype, SIMD path). Included by softmax.c
 * through fl_instantiate.h (FL_P, FL_T stored / FL_C computed, FL_TS, FL_PATH, FL_ATTR,
 * FL_F32; the op shorthands and the row toolkit of fl_instance.h). The half dtypes round each
 * output once from float32: their softmax computes exp(x - max) again in its last pass
 * instead of storing the terms, and log-softmax takes log(sum) of a row whose sum is near 1
 * as log1p of the refined rest (fl_expsum_rest).
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

#if !FL_HALF_INSTANCE
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
#endif

/* o = (x - m) - ls over a contiguous row */
static inline FL_ATTR void FL_KN(sm_logwrite)(const FL_T *x, FL_T *o, fl_index C, FL_C m, FL_C ls)
{
    const FL_V vm = FL_OP(set1)(m), vl = FL_OP(set1)(ls);
    const fl_index L = FL_L;
    fl_index k = 0;
    if (isfinite((double)m) && isfinite((double)ls)) /* then no output is NaN (-inf at most) */
        for (; k + 2 * L <= C; k += 2 * L) {
            FL_STF(o + k, FL_OP(sub)(FL_OP(sub)(FL_LD(x + k), vm), vl));
            FL_STF(o + k + L, FL_OP(sub)(FL_OP(sub)(FL_LD(x + k + L), vm), vl));
        }
    for (; k + 2 * L <= C; k += 2 * L) {
        FL_ST(o + k, FL_OP(sub)(FL_OP(sub)(FL_LD(x + k), vm), vl));
        FL_ST(o + k + L, FL_OP(sub)(FL_OP(sub)(FL_LD(x + k + L), vm), vl));
    }
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        FL_STN(o + k, FL_OP(sub)(FL_OP(sub)(FL_LDN(x + k, r, 0), vm), vl), r);
    }
}

/* log(sum) of a row with max m: for the half dtypes a sum near 1 as log1p of its refined rest */
static inline FL_ATTR double FL_KN(sm_logsum)(const FL_T *x, fl_index C, FL_C m, double sum)
{
#if FL_HALF_INSTANCE
    if (sum < 2.0) {
        double count;
        const double others = FL_KN(fl_expsum_rest)(x, C, m, &count);
        return log1p((count - 1.0) + others);
    }
#else
    (void)x;
    (void)C;
    (void)m;
#endif
    return log(sum);
}

#if FL_HALF_INSTANCE
/* o = exp(x - m) * f over a contiguous row */
static inline FL_ATTR void FL_KN(sm_expwrite)(const FL_T *x, FL_T *o, fl_index C, FL_C m, FL_C f)
{
    const FL_V vm = FL_OP(set1)(m), vf = FL_OP(set1)(f);
    const fl_index L = FL_L;
    fl_index k = 0;
    if (isfinite((double)m) && isfinite((double)f)) /* then every output is finite */
        for (; k + L <= C; k += L)
            FL_STF(o + k, FL_OP(mul)(FL_OP(exp_le0)(FL_OP(sub)(FL_LD(x + k), vm)), vf));
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        FL_STN(o + k, FL_OP(mul)(FL_OP(exp_le0)(FL_OP(sub)(FL_LDN(x + k, r, -INFINITY), vm)), vf), r);
    }
}
#endif

static FL_ATTR void FL_KN(sm_row_fwd)(const fl_softmax_args *a, const FL_T *x, FL_T *o)
{
    const fl_index C = a->c;
    const FL_C m = FL_KN(fl_rowmax)(x, C);
    if (a->log) {
        const double sum = FL_KN(fl_expsum)(x, NULL, C, m, 0);
        FL_KN(sm_logwrite)(x, o, C, m, (FL_C)FL_KN(sm_logsum)(x, C, m, sum));
    } else {
#if FL_HALF_INSTANCE
        const double sum = FL_KN(fl_expsum)(x, NULL, C, m, 0);
        FL_KN(sm_expwrite)(x, o, C, m, (FL_C)(1.0 / sum));
#else
        const double sum = FL_KN(fl_expsum)(x, o, C, m, 1);
        FL_KN(sm_scale)(o, o, C, (FL_T)(1.0 / sum));
#endif
    }
}

/* softmax backward's g - s: for the half dtypes with s in two float32 parts, so that g - s
 * stays accurate where it cancels (g and the products g y are exact in float32 and their
 * sum is exact in double) */
#undef SM_DIFF
/* the low part of s: s - (float)s, 0 when (float)s is not finite (s infinite, NaN or beyond
 * float32's range: g - s is then +-inf or NaN as torch's float32 sum makes it, not inf - inf) */
static inline FL_C FL_KN(sm_lo)(double s)
{
    const FL_C hi = (FL_C)s;
    return isfinite((double)hi) ? (FL_C)(s - (double)hi) : (FL_C)0;
}
#if FL_HALF_INSTANCE
#define SM_DIFF(gv, vs, vs_lo) FL_OP(sub)(FL_OP(sub)(gv, vs), vs_lo)
#else
#define SM_DIFF(gv, vs, vs_lo) FL_OP(sub)(gv, vs)
#endif

static FL_ATTR void FL_KN(sm_row_bwd)(const fl_softmax_args *a, const FL_T *g, const FL_T *y, FL_T *o)
{
    const fl_index C = a->c, L = FL_L;
    FL_ACC s0 = FL_OP(acc_zero)(), s1 = FL_OP(acc_zero)();
    fl_index k = 0;
    if (a->log) {
        for (; k + 4 * L <= C; k += 4 * L) {
            s0 = FL_OP(acc_add)(s0, FL_OP(add)(FL_LD(g + k), FL_LD(g + k + L)));
            s1 = FL_OP(acc_add)(s1, FL_OP(add)(FL_LD(g + k + 2 * L), FL_LD(g + k + 3 * L)));
        }
        for (; k < C; k += L) {
            const fl_index r = C - k < L ? C - k : L;
            s0 = FL_OP(acc_add)(s0, FL_LDN(g + k, r, 0));
        }
        const FL_V vs = FL_OP(set1)((FL_C)(FL_OP(acc_hsum)(s0) + FL_OP(acc_hsum)(s1)));
        for (k = 0; k + L <= C; k += L)
            FL_ST(o + k, FL_OP(fnmadd)(FL_OP(exp)(FL_LD(y + k)), vs, FL_LD(g + k)));
        if (k < C) {
            const fl_index r = C - k;
            const FL_V v = FL_OP(fnmadd)(FL_OP(exp)(FL_LDN(y + k, r, 0)), vs, FL_LDN(g + k, r, 0));
            FL_STN(o + k, v, r);
        }
    } else {
        for (; k + 2 * L <= C; k += 2 * L) {
            s0 = FL_OP(acc_add)(s0, FL_OP(mul)(FL_LD(g + k), FL_LD(y + k)));
            s1 = FL_OP(acc_add)(s1, FL_OP(mul)(FL_LD(g + k + L), FL_LD(y + k + L)));
        }
        for (; k < C; k += L) {
            const fl_index r = C - k < L ? C - k : L;
            s0 = FL_OP(acc_add)(s0, FL_OP(mul)(FL_LDN(g + k, r, 0), FL_LDN(y + k, r, 0)));
        }
        const double sd = FL_OP(acc_hsum)(s0) + FL_OP(acc_hsum)(s1);
        const FL_V vs = FL_OP(set1)((FL_C)sd), vs_lo = FL_OP(set1)(FL_KN(sm_lo)(sd));
        (void)vs_lo;
        for (k = 0; k + L <= C; k += L)
            FL_ST(o + k, FL_OP(mul)(FL_LD(y + k), SM_DIFF(FL_LD(g + k), vs, vs_lo)));
        if (k < C) {
            const fl_index r = C - k;
            FL_STN(o + k, FL_OP(mul)(FL_LDN(y + k, r, 0), SM_DIFF(FL_LDN(g + k, r, 0), vs, vs_lo)), r);
        }
    }
}

/* Load / store r (<= L) neighbouring positions: whole vectors when r == L. */
static inline FL_ATTR FL_V FL_KN(sm_ld)(const FL_T *p, fl_index r)
{
    return r == FL_L ? FL_LD(p) : FL_LDN(p, r, 0);
}
static inline FL_ATTR void FL_KN(sm_st)(FL_T *p, FL_V v, fl_index r)
{
    if (r == FL_L)
        FL_ST(p, v);
    else
        FL_STN(p, v, r);
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
        FL_C f[L];
        /* the half dtypes compute exp again in the last pass: each output rounded once */
        const int store_terms = !a->log && !FL_HALF_INSTANCE;
        if (!backward) {
            FL_V vmax = FL_OP(set1)(-INFINITY);
            for (fl_index k = 0; k < C; k++)
                vmax = FL_OP(max)(vmax, FL_KN(sm_ld)(x + k * xs, r));
            FL_ACC as = FL_OP(acc_zero)();
            for (fl_index k = 0; k < C; k++) {
                const FL_V e = FL_OP(exp_le0)(FL_OP(sub)(FL_KN(sm_ld)(x + k * xs, r), vmax));
                if (store_terms)
                    FL_KN(sm_st)(o + k * os, e, r);
                as = FL_OP(acc_add)(as, e);
            }
            FL_OP(acc_store)(sum, as);
            FL_C mt[L];
            FL_OP(store)(mt, vmax);
            for (int l = 0; l < L; l++) {
                double ls = log(sum[l]);
#if FL_HALF_INSTANCE
                if (a->log && l < r && sum[l] < 2.0) { /* sm_logsum, lane by lane */
                    double count = 0.0, others = 0.0;
                    for (fl_index k = 0; k < C; k++) {
                        const double xk = (double)FL_GET(x[k * xs + l]);
                        if (xk < (double)mt[l])
                            others += exp(xk - (double)mt[l]);
                        else
                            count += 1.0;
                    }
                    ls = log1p((count - 1.0) + others);
                }
#endif
                f[l] = a->log ? (FL_C)ls : (FL_C)(1.0 / sum[l]);
            }
            const FL_V vf = FL_OP(load)(f);
            if (a->log)
                for (fl_index k = 0; k < C; k++)
                    FL_KN(sm_st)(o + k * os, FL_OP(sub)(FL_OP(sub)(FL_KN(sm_ld)(x + k * xs, r), vmax), vf), r);
            else if (store_terms)
                for (fl_index k = 0; k < C; k++)
                    FL_KN(sm_st)(o + k * os, FL_OP(mul)(FL_KN(sm_ld)(o + k * os, r), vf), r);
            else
                for (fl_index k = 0; k < C; k++)
                    FL_KN(sm_st)(o + k * os, FL_OP(mul)(FL_OP(exp_le0)(FL_OP(sub)(FL_KN(sm_ld)(x + k * xs, r), vmax)), vf), r);
        } else {
            const FL_T *y = (const FL_T *)a->y + i * a->yv.sn + j;
            FL_ACC as = FL_OP(acc_zero)();
            for (fl_index k = 0; k < C; k++) {
                const FL_V gv = FL_KN(sm_ld)(x + k * xs, r);
                as = FL_OP(acc_add)(as, a->log ? gv : FL_OP(mul)(gv, FL_KN(sm_ld)(y + k * ys, r)));
            }
            FL_OP(acc_store)(sum, as);
            FL_C f_lo[L];
            for (int l = 0; l < L; l++) {
                f[l] = (FL_C)sum[l];
                f_lo[l] = FL_KN(sm_lo)(sum[l]);
            }
            const FL_V vs = FL_OP(load)(f), vs_lo = FL_OP(load)(f_lo);
            (void)vs_lo;
            for (fl_index k = 0; k < C; k++) {
                const FL_V gv = FL_KN(sm_ld)(x + k * xs, r), yv = FL_KN(sm_ld)(y + k * ys, r);
                const FL_V v = a->log ? FL_OP(fnmadd)(FL_OP(exp)(yv), vs, gv) : FL_OP(mul)(yv, SM_DIFF(gv, vs, vs_lo));
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
