/*
 * Template: the parts of cross-entropy that depend on the dtype but not on the SIMD path.
 * Instantiated by cross_entropy.c through fl_instantiate_dtype.h (FL_T stored, FL_C computed,
 * FL_TS, FL_DT, FL_GET / FL_PUT); every output is rounded once from double.
 *
 *   ce_position_<TS>     one position with any strides, in scalar double arithmetic: the
 *                        fallback for layouts the vector kernels do not take, and the tail
 *                        of the column kernel;
 *   ce_blk_strided_<TS>  the table's block function of the strided layout (no SIMD path).
 */

/* The gradient at an ignored position, as torch's autograd gives it: 0 * softmax(x), that
 * is NaN along the whole row when its softmax is NaN (the row holds a NaN or +inf, or only
 * -inf), else 0. x is read entirely before g (maybe x itself) is written. */
static void FL_DT(ce_ignored_grad)(const FL_T *x, fl_index xs, FL_T *g, fl_index gs, fl_index C)
{
    int nan_row = 0, all_ninf = 1;
    for (fl_index k = 0; k < C; k++) {
        const FL_C v = FL_GET(x[k * xs]);
        nan_row |= v != v || v == (FL_C)INFINITY;
        all_ninf &= v == -(FL_C)INFINITY;
    }
    const FL_T fill = FL_PUT(nan_row || (C > 0 && all_ninf) ? (double)NAN : 0.0);
    for (fl_index k = 0; k < C; k++)
        g[k * gs] = fill;
}

/* Returns the nll term (the whole loss for probabilities) and stores the smoothing term. */
static double FL_DT(ce_position)(const ce_ctx *cx, fl_index i, fl_index j, double *smooth)
{
    const fl_ce_args *a = cx->a;
    *smooth = 0.0;
    const FL_T *x = (const FL_T *)a->x + i * a->xv.sn + j * a->xv.ss;
    FL_T *g = a->grad ? (FL_T *)a->grad + i * a->gv.sn + j * a->gv.ss : NULL;
    const FL_C *w = (const FL_C *)a->weight;
    const fl_index C = a->c, xs = a->xv.sc, gs = a->gv.sc;
    const double eps = a->label_smoothing;
    double sc = cx->scale;
    if (a->grad_out)
        sc *= (double)FL_GET(((const FL_T *)a->grad_out)[i * a->gov.sn + j * a->gov.ss]);

    if (a->target_kind == FL_TARGET_PROB) {
        if (C == 0) {
            if (a->lse_out)
                a->lse_out[i * a->s + j] = -INFINITY;
            return -0.0; /* torch: -(empty sum) */
        }
        const FL_T *y = (const FL_T *)a->target + i * a->tv.sn + j * a->tv.ss;
        const fl_index ys = a->tv.sc;
        const FL_C one_m = (FL_C)(1.0 - eps), eps_c = (FL_C)(eps / (double)C);
        /* loss = lse sum_k w y'_k - sum_k w y'_k x_k = log(sum) sy + sum_k w y'_k (m - x_k):
         * every term is a difference to the max, so the rounding scales with the loss, not
         * with the logits' magnitude */
        double m = -INFINITY;
        for (fl_index k = 0; k < C; k++) {
            const FL_C xk = FL_GET(x[k * xs]);
            m = xk > m ? xk : m;
        }
        double sum = 0.0, sy = 0.0, sdy = 0.0;
        for (fl_index k = 0; k < C; k++) {
            const double d = m - (double)FL_GET(x[k * xs]);
            const FL_C yk = eps != 0.0 ? FL_GET(y[k * ys]) * one_m + eps_c : FL_GET(y[k * ys]);
            const double wy = (double)(w ? w[k] * yk : yk);
            sum += exp(-d);
            sy += wy;
            sdy += wy * d;
        }
        const double loss = log(sum) * sy + sdy;
        if (a->lse_out)
            a->lse_out[i * a->s + j] = m + log(sum);
        if (g) {
            const double f = sc * sy / sum;
            for (fl_index k = 0; k < C; k++) {
                const FL_C yk = eps != 0.0 ? FL_GET(y[k * ys]) * one_m + eps_c : FL_GET(y[k * ys]);
                const FL_C wy = w ? w[k] * yk : yk;
                g[k * gs] = FL_PUT(exp((double)FL_GET(x[k * xs]) - m) * f - sc * (double)wy);
            }
        }
        return loss;
    }

    const fl_index t = ce_target(a, i, j);
    if (t == a->ignore_index) {
        if (g)
            FL_DT(ce_ignored_grad)(x, xs, g, gs, C);
        if (a->lse_out)
            a->lse_out[i * a->s + j] = 0.0;
        return 0.0;
    }
    const double xt = (double)FL_GET(x[t * xs]);
    const double wt = w ? (double)w[t] : 1.0;
    double m = -INFINITY;
    for (fl_index k = 0; k < C; k++) {
        const FL_C xk = FL_GET(x[k * xs]);
        m = xk > m ? xk : m;
    }
    double sum = 0.0, sdx = 0.0; /* sdx = sum_k w_k (m - x_k), for label smoothing */
    for (fl_index k = 0; k < C; k++) {
        const double d = m - (double)FL_GET(x[k * xs]);
        sum += exp(-d);
        if (eps != 0.0)
            sdx += (w ? (double)w[k] : 1.0) * d;
    }
    const double logsum = log(sum);
    const double nll = wt * ((m - xt) + logsum);
    if (a->lse_out)
        a->lse_out[i * a->s + j] = m + logsum;
    double A = wt;
    if (eps != 0.0) {
        *smooth = logsum * cx->weight_total + sdx;
        A = (1.0 - eps) * wt + eps / (double)C * cx->weight_total;
    }
    if (g) {
        const double f = sc * A / sum, c = sc * eps / (double)C;
        for (fl_index k = 0; k < C; k++) {
            double gk = exp((double)FL_GET(x[k * xs]) - m) * f;
            if (eps != 0.0)
                gk -= c * (w ? (double)w[k] : 1.0);
            if (k == t)
                gk -= sc * (1.0 - eps) * wt;
            g[k * gs] = FL_PUT(gk);
        }
    }
    return nll;
}

#include "margin_cross_entropy_dtype.h"

/* Positions [p0, p1) one by one (ce_position, or mce_position with a margin), their losses
 * stored; adds their terms to acc[0] (nll), acc[1] (smoothing) and acc[2] (top-1 hits of the
 * margin) in position order. */
static void FL_DT(ce_positions)(const ce_ctx *cx, fl_index p0, fl_index p1, double *acc)
{
    const fl_ce_args *a = cx->a;
    FL_T *loss_out = (FL_T *)a->loss;
    double s_nll = acc[0], s_smooth = acc[1], s_hits = acc[2];
    for (fl_index p = p0; p < p1; p++) {
        const fl_index i = p / a->s;
        double smooth, hit = 0.0;
        const double nll = cx->margin ? FL_DT(mce_position)(cx, i, p - i * a->s, &smooth, &hit)
                                      : FL_DT(ce_position)(cx, i, p - i * a->s, &smooth);
        if (loss_out)
            loss_out[p] = FL_PUT(ce_combine(a, nll, smooth));
        s_nll += nll;
        s_smooth += smooth;
        s_hits += hit;
    }
    acc[0] = s_nll;
    acc[1] = s_smooth;
    acc[2] = s_hits;
}

/* Block b of the strided layout: sums[0] = its nll terms, sums[1] = its smoothing terms,
 * sums[2] its top-1 hits (margin). */
static void FL_DT(ce_blk_strided)(void *vctx, fl_index b, double *sums)
{
    fl_index p0, p1;
    fl_block_range(b, ((const ce_ctx *)vctx)->block, ((const ce_ctx *)vctx)->npos, &p0, &p1);
    sums[0] = sums[1] = sums[2] = 0.0;
    FL_DT(ce_positions)((const ce_ctx *)vctx, p0, p1, sums);
}
