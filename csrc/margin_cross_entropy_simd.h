/*
 * Template: the row of margin-softmax cross-entropy (margin_cross_entropy.h) for one (dtype,
 * SIMD path), on the cross-entropy row toolkit. Included by cross_entropy_simd.h, whose row
 * kernel (ce_rows) calls mce_row for each kept row when fl_ce_args.margin is set.
 *
 * One row, cosines x (classes contiguous), target t: the logits are s x_k and s phi(x_t). The
 * row is taken as its two segments around the target, [0, t) and (t, C):
 *   max     m = max(max of both segments, phi), in the compute dtype, so that every
 *           exp(s (x_k - m)) of the segments has an argument <= 0; the segments' maxima also
 *           give the top-1 test (fl_margin_hit);
 *   exp-sum rest = the segments' sum of exp(s x_k - M) (the terms stored for the gradient),
 *           e_t = exp(s phi - M) in double, sum = rest + e_t, M = s m rounded up (or s phi
 *           exactly when the target is the max: e_t = 1, log(sum) = log1p(rest));
 *   loss    nll = w_t (M - s phi + log(sum)); smoothing term log(sum) W + sum_k w_k (M - z_k);
 *   grad    g_k = s (p_k A - (eps / C) w_k) (the cross-entropy pass, its factors times s),
 *           g_t = s phi'(x_t) sc ((1 - eps) w_t (p_t - 1) + (eps / C) (W p_t - w_t)) with
 *           p_t - 1 = -rest / sum (no cancellation however confident the row).
 */

/* One kept row; returns its nll term, stores its smoothing term, log-sum-exp and top-1 flag. */
static FL_ATTR double FL_KN(mce_row)(const ce_ctx *cx, const FL_T *x, FL_T *g, fl_index t, double sc,
                                     double *smooth, double *lse, double *hit)
{
    const fl_ce_args *a = cx->a;
    const fl_margin *mg = cx->margin;
    const FL_C *w = (const FL_C *)a->weight;
    const fl_index C = a->c, nhi = C - t - 1;
    const double eps = a->label_smoothing, s = mg->scale;
    const double xt = (double)FL_GET(x[t]), wt = w ? (double)w[t] : 1.0;
    double dphi;
    const double phi = fl_margin_phi(mg, xt, &dphi);
    const FL_C mlo = t > 0 ? FL_KN(fl_rowmax)(x, t) : (FL_C)-INFINITY;
    const FL_C mhi = nhi > 0 ? FL_KN(fl_rowmax)(x + t + 1, nhi) : (FL_C)-INFINITY;
    *hit = fl_margin_hit(phi, (double)mlo, (double)mhi);
    FL_C m = mlo > mhi ? mlo : mhi;
    if ((FL_C)phi > m)
        m = (FL_C)phi;
    /* sum_k w_k (m - z_k / s) over both segments, and the target's term from phi in double
     * (not (m - x_t) + (x_t - phi): that cancels terms of size |x_t - phi|); before g
     * overwrites x */
    const double sdx = eps != 0.0 ? FL_KN(ce_dot)(x, w, t, m) + FL_KN(ce_dot)(x + t + 1, w ? w + t + 1 : NULL, nhi, m) +
                                        wt * ((double)m - phi)
                                  : 0.0;
    FL_C *e = FL_KN(ce_scratch)(cx, g);
    /* the exp-sum in the logits' units: terms exp(s x_k - ms), ms = s m rounded up to FL_C
     * (every argument <= 0), each one fused multiply-add */
    const FL_C fs = (FL_C)s;
    FL_C ms = (FL_C)(s * (double)m);
    if ((double)ms < s * (double)m)
        ms = FL_F32 ? (FL_C)nextafterf((float)ms, INFINITY) : (FL_C)nextafter((double)ms, INFINITY);
    double rest;
    if (e)
        rest = FL_KN(fl_expsum_by)(x, e, t, ms, fs, 1, 1) + FL_KN(fl_expsum_by)(x + t + 1, e + t + 1, nhi, ms, fs, 1, 1);
    else
        rest = FL_KN(fl_expsum_by)(x, NULL, t, ms, fs, 0, 1) + FL_KN(fl_expsum_by)(x + t + 1, NULL, nhi, ms, fs, 0, 1);
    /* the sums relative to M = s phi when the target is the max (its term exactly 1: log1p of
     * the rest, 0 for a row of one class), else to ms; r converts the stored terms */
    const double zt = s * phi;
    const int top = (FL_C)phi == m;
    const double M = top ? zt : (double)ms, r = top ? exp((double)ms - zt) : 1.0;
    rest *= r;
    const double et = top ? 1.0 : exp(zt - M), sum = rest + et;
    const double logsum = top ? log1p(rest) : log(sum);
    *lse = M + logsum;
    *smooth = eps != 0.0 ? logsum * cx->weight_total + (s * sdx + cx->weight_total * (M - s * (double)m)) : 0.0;
    const double nll = wt * ((M - zt) + logsum);
    if (g) {
        const double A = eps != 0.0 ? (1.0 - eps) * wt + eps / (double)C * cx->weight_total : wt;
        const double pt = et / sum;
        const double gt = s * dphi * sc *
                          ((1.0 - eps) * wt * (-rest / sum) + (eps != 0.0 ? eps / (double)C * (cx->weight_total * pt - wt) : 0.0));
        e[t] = 0; /* the target's term is not in e: a defined value for the pass, then overwritten */
        FL_KN(ce_grad_pass)(x, g, e, w, C, eps, sum, s * sc * A * r / sum, s * sc * eps / (double)C, m, 0);
        g[t] = FL_PUT(FL_MUTATE_GRAD(gt));
    }
    return nll;
}
