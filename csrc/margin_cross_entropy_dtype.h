/*
 * Template: one position of margin-softmax cross-entropy (margin_cross_entropy.h) with any
 * strides, in scalar double arithmetic; included by cross_entropy_dtype.h, whose
 * ce_positions calls it when fl_ce_args.margin is set (the strided and column layouts, which
 * the vector row kernel does not take). The arithmetic of mce_row (margin_cross_entropy_simd.h),
 * in double throughout.
 */

/* Returns the nll term and stores the smoothing term and the top-1 flag. */
static double FL_DT(mce_position)(const ce_ctx *cx, fl_index i, fl_index j, double *smooth, double *hit)
{
    const fl_ce_args *a = cx->a;
    const fl_margin *mg = cx->margin;
    *smooth = 0.0;
    *hit = 0.0;
    const FL_T *x = (const FL_T *)a->x + i * a->xv.sn + j * a->xv.ss;
    FL_T *g = a->grad ? (FL_T *)a->grad + i * a->gv.sn + j * a->gv.ss : NULL;
    const FL_C *w = (const FL_C *)a->weight;
    const fl_index C = a->c, xs = a->xv.sc, gs = a->gv.sc;
    const double eps = a->label_smoothing, s = mg->scale;
    double sc = cx->scale;
    if (a->grad_out)
        sc *= (double)FL_GET(((const FL_T *)a->grad_out)[i * a->gov.sn + j * a->gov.ss]);
    const fl_index t = ce_target(a, i, j);
    if (t == a->ignore_index) {
        if (g)
            FL_DT(ce_ignored_grad)(x, xs, g, gs, C);
        if (a->lse_out)
            a->lse_out[i * a->s + j] = 0.0;
        return 0.0;
    }
    const double xt = (double)FL_GET(x[t * xs]), wt = w ? (double)w[t] : 1.0;
    double dphi;
    const double phi = fl_margin_phi(mg, xt, &dphi);
    double mlo = -INFINITY, mhi = -INFINITY;
    for (fl_index k = 0; k < C; k++) {
        const double xk = (double)FL_GET(x[k * xs]);
        if (k < t)
            mlo = xk > mlo ? xk : mlo;
        else if (k > t)
            mhi = xk > mhi ? xk : mhi;
    }
    *hit = fl_margin_hit(phi, mlo, mhi);
    double m = mlo > mhi ? mlo : mhi;
    if (phi > m)
        m = phi;
    /* rest = sum over k != t of exp(s (x_k - m)); sdx = sum_k w_k (m - z_k / s), z_t = s phi */
    double rest = 0.0, sdx = 0.0;
    for (fl_index k = 0; k < C; k++) {
        if (k == t)
            continue;
        const double d = m - (double)FL_GET(x[k * xs]);
        rest += exp(-s * d);
        if (eps != 0.0)
            sdx += (w ? (double)w[k] : 1.0) * d;
    }
    sdx += wt * (m - phi);
    const double et = exp(s * (phi - m)), sum = rest + et, logsum = phi == m ? log1p(rest) : log(sum);
    const double nll = wt * (s * (m - phi) + logsum);
    if (a->lse_out)
        a->lse_out[i * a->s + j] = s * m + logsum;
    double A = wt;
    if (eps != 0.0) {
        *smooth = logsum * cx->weight_total + s * sdx;
        A = (1.0 - eps) * wt + eps / (double)C * cx->weight_total;
    }
    if (g) {
        const double f = s * sc * A / sum, c = s * sc * eps / (double)C;
        const double pt = et / sum;
        const double gt = s * dphi * sc *
                          ((1.0 - eps) * wt * (-rest / sum) + (eps != 0.0 ? eps / (double)C * (cx->weight_total * pt - wt) : 0.0));
        for (fl_index k = 0; k < C; k++) {
            if (k == t)
                continue;
            double gk = exp(s * ((double)FL_GET(x[k * xs]) - m)) * f;
            if (eps != 0.0)
                gk -= c * (w ? (double)w[k] : 1.0);
            g[k * gs] = FL_PUT(gk);
        }
        g[t * gs] = FL_PUT(FL_MUTATE_GRAD(gt));
    }
    return nll;
}
