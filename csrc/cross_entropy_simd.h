/*
 * Template: the vector cross-entropy kernels for one (dtype, SIMD path). Included by
 * cross_entropy.c through fl_instantiate.h (FL_P, FL_T stored / FL_C computed, FL_TS, FL_PATH,
 * FL_ATTR, FL_F32, FL_PD: the path's float64 ops, for the double-precision log; the
 * shorthands of fl_instance.h). float32 and float64 keep a row's exp terms in the gradient
 * between passes; the half dtypes keep them in float32 in a per-thread scratch row
 * (ce_scratch) and round each gradient entry once, from float32 (the target's entry and the
 * losses from double).
 *
 * Two layouts run vectorized (cross_entropy.c picks one per call from the strides):
 *   rows     classes contiguous (x, grad, probability targets): one position at a time,
 *            vectors along the classes, three passes over a row that stays in cache
 *            (max, exp + sum [written into the gradient], scale);
 *   columns  positions contiguous (K-dim input, or (N, C) in Fortran order): a vector of
 *            neighbouring positions at a time, walking the class axis by its stride, the
 *            same three passes lane by lane. Leftover positions go to ce_position.
 * Formulas: cross_entropy.h. Only the kernels' own outputs are written.
 */

/* sum_k w_k (m - x_k) (w may be NULL: weights 1), for label smoothing: differences to the
 * max keep the rounding at the scale of the loss, whatever the logits' magnitude. */
static inline FL_ATTR double FL_KN(ce_dot)(const FL_T *x, const FL_C *w, fl_index C, FL_C m)
{
    const fl_index L = FL_L;
    const FL_V vm = FL_OP(set1)(m);
    FL_ACC s = FL_OP(acc_zero)();
    for (fl_index k = 0; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        FL_V d = FL_OP(sub)(vm, FL_LDN(x + k, r, m)); /* padding lanes: d = 0 */
        s = FL_OP(acc_add)(s, w ? FL_OP(mul)(FL_OP(loadn)(w + k, r, 0), d) : d);
    }
    return FL_OP(acc_hsum)(s);
}

/* The weighted smoothed target w_k y'_k of class k for a vector of positions (column layout),
 * y'_k = (1 - eps) y_k + eps / C. */
static inline FL_ATTR FL_V FL_KN(ce_col_wy)(const FL_T *y, const FL_C *w, fl_index k, double eps, FL_V one_m, FL_V eps_c)
{
    FL_V yv = FL_LD(y);
    if (eps != 0.0)
        yv = FL_OP(fmadd)(yv, one_m, eps_c);
    if (w)
        yv = FL_OP(mul)(FL_OP(set1)(w[k]), yv);
    return yv;
}

/* A row's max and exp-sum from its log-sum-exp (a->lse_in): m = lse rounded up to FL_C (so
 * that x - m <= 0 for every x of the row: exp_le0 takes it) and sum = exp(lse - m), so that
 * m + log(sum) = lse; the gradient pass then computes exp(x - m) itself instead of reading
 * the terms an exp-sum pass would have stored. */
static inline void FL_KN(ce_from_lse)(double lse, FL_C *m, double *sum)
{
    FL_C mm = (FL_C)lse;
    if ((double)mm < lse)
        mm = FL_F32 ? (FL_C)nextafterf((float)mm, INFINITY) : (FL_C)nextafter((double)mm, INFINITY);
    *m = mm;
    *sum = exp(lse - (double)mm);
}

/* exp(x - m) for a gradient pass (r <= L entries): recomputed from x (from_lse) or the term
 * the exp-sum pass stored in e. */
static inline FL_ATTR FL_V FL_KN(ce_exp_term)(const FL_T *x, const FL_C *e, fl_index r, FL_V vm, int from_lse)
{
    if (from_lse)
        return FL_OP(exp_le0)(FL_OP(sub)(r == FL_L ? FL_LD(x) : FL_LDN(x, r, -INFINITY), vm));
    return r == FL_L ? FL_OP(load)(e) : FL_OP(loadn)(e, r, 0);
}

/* The gradient pass of an index-target row: g_k = f exp(x_k - m) - c w_k for every k (w NULL:
 * 1; c only with label smoothing eps), the exp terms recomputed from x (from_lse) or read from
 * e (ce_exp_term); the target's entry is the caller's to overwrite afterwards. sum: the row's
 * exp-sum, for the test that every entry is finite (a finite sum and factors: the terms are in
 * [0, 1]), which lets the stores skip the half dtypes' NaN rule. */
static inline FL_ATTR void FL_KN(ce_grad_pass)(const FL_T *x, FL_T *g, const FL_C *e, const FL_C *w, fl_index C,
                                               double eps, double sum, double f, double c, FL_C m, int from_lse)
{
    const fl_index L = FL_L;
    const FL_V vf = FL_OP(set1)((FL_C)f), vc = FL_OP(set1)((FL_C)c), vm = FL_OP(set1)(m);
    const int finite = isfinite(sum) && isfinite((double)(FL_C)f) && isfinite((double)(FL_C)c);
    fl_index k = 0;
    if (finite && eps == 0.0) {
        /* the common case without a branch per vector, two vectors a step (independent exp
         * chains); the general loop below takes the rest */
        if (from_lse)
            for (; k + 2 * L <= C; k += 2 * L) {
                FL_STF(g + k, FL_OP(mul)(FL_OP(exp_le0)(FL_OP(sub)(FL_LD(x + k), vm)), vf));
                FL_STF(g + k + L, FL_OP(mul)(FL_OP(exp_le0)(FL_OP(sub)(FL_LD(x + k + L), vm)), vf));
            }
        else
            for (; k + 2 * L <= C; k += 2 * L) {
                FL_STF(g + k, FL_OP(mul)(FL_OP(load)(e + k), vf));
                FL_STF(g + k + L, FL_OP(mul)(FL_OP(load)(e + k + L), vf));
            }
    }
    for (; k < C; k += L) {
        const fl_index n = C - k < L ? C - k : L;
        FL_V gv = FL_OP(mul)(FL_KN(ce_exp_term)(x + k, e + k, n, vm, from_lse), vf);
        if (eps != 0.0)
            gv = FL_OP(fnmadd)(vc, w ? FL_OP(loadn)(w + k, n, 0) : FL_OP(set1)(1), gv);
        if (n == L && finite)
            FL_STF(g + k, gv);
        else if (n == L)
            FL_ST(g + k, gv);
        else
            FL_STN(g + k, gv, n);
    }
}

/* Where the exp terms of a row wait between passes: the gradient itself (float32, float64),
 * or this thread's slot of the call's float32 scratch (the half dtypes; NULL without a
 * gradient). */
static inline FL_C *FL_KN(ce_scratch)(const ce_ctx *cx, void *g)
{
#if FL_HALF_INSTANCE
    return g && cx->scratch ? cx->scratch + (fl_index)fl_thread_slot(cx->slots) * cx->scratch_len : NULL;
#else
    (void)cx;
    return (FL_C *)g;
#endif
}

/* One row, index target t (not ignored), classes contiguous, in two halves: ce_row_head
 * takes the row's max and exp-sum (the terms stored in g when there is a gradient, x being
 * read first: g may be x), ce_row_tail, given log(sum), its nll term (returned), smoothing term
 * and gradient. The row kernels run the heads of several rows, then one vector log of
 * their sums, then their tails. */
typedef struct {
    double xt, wt, sum, sdx; /* x_t, w_t, sum_k exp(x_k - m), sum_k w_k (m - x_k) (smoothing) */
    double rest;             /* near_one: sum - 1, from fl_expsum_rest (half dtypes) */
    int near_one;
    FL_C m;
} FL_KN(ce_row);

/* (half dtypes) A row sum below 2 taken again as 1 + rest, rest accurate to its own size
 * (fl_expsum_rest): log(sum) and 1 - p_t are then rounded from accurate values however
 * confident the row. */
#define CE_NEAR_ONE 2.0
static inline FL_ATTR void FL_KN(ce_refine)(const FL_T *x, fl_index C, FL_KN(ce_row) *r)
{
    r->near_one = 0;
    r->rest = 0.0;
#if FL_HALF_INSTANCE
    if (r->sum < CE_NEAR_ONE) {
        double count;
        const double others = FL_KN(fl_expsum_rest)(x, C, r->m, &count);
        r->rest = (count - 1.0) + others;
        r->sum = 1.0 + r->rest;
        r->near_one = 1;
    }
#else
    (void)x;
    (void)C;
#endif
}

/* e: where the terms go (ce_scratch; NULL: not stored) */
static inline FL_ATTR void FL_KN(ce_row_head)(const ce_ctx *cx, const FL_T *x, FL_C *e, fl_index t,
                                              FL_KN(ce_row) *r)
{
    const fl_ce_args *a = cx->a;
    const FL_C *w = (const FL_C *)a->weight;
    const fl_index C = a->c;
    r->xt = (double)FL_GET(x[t]);
    r->wt = w ? (double)w[t] : 1.0;
    r->m = FL_KN(fl_rowmax)(x, C);
    r->sdx = a->label_smoothing != 0.0 ? FL_KN(ce_dot)(x, w, C, r->m) : 0.0; /* before g overwrites x */
    r->sum = e ? FL_KN(fl_expsum)(x, e, C, r->m, 1) : FL_KN(fl_expsum)(x, NULL, C, r->m, 0);
    FL_KN(ce_refine)(x, C, r);
}

/* log(sum) of a row: the batch's vector log, or log1p of the refined rest */
static inline double FL_KN(ce_logsum)(const FL_KN(ce_row) *r, double batch_log)
{
    return r->near_one ? log1p(r->rest) : batch_log;
}

/* from_lse: r came from a->lse_in (ce_from_lse), g holds no terms: they are computed from x,
 * and there is no smoothing term. *lse: m + log(sum). */
static inline FL_ATTR double FL_KN(ce_row_tail)(const ce_ctx *cx, const FL_T *x, FL_T *g, const FL_C *e,
                                                fl_index t, const FL_KN(ce_row) *r, double logsum, double sc,
                                                int from_lse, double *smooth, double *lse)
{
    const fl_ce_args *a = cx->a;
    const FL_C *w = (const FL_C *)a->weight;
    const fl_index C = a->c;
    const double eps = a->label_smoothing, wt = r->wt;
    const double nll = wt * (((double)r->m - r->xt) + logsum);
    *lse = (double)r->m + logsum;
    double A = wt;
    *smooth = 0.0;
    if (eps != 0.0) {
        *smooth = from_lse ? 0.0 : logsum * cx->weight_total + r->sdx;
        A = (1.0 - eps) * wt + eps / (double)C * cx->weight_total;
    }
    if (g) {
        const double et = from_lse ? exp(r->xt - (double)r->m) : (double)e[t];
        const double f = sc * A / r->sum, c = sc * eps / (double)C;
        /* the target entry in double: p_t A - (1 - eps) w_t cancels when p_t is near 1 */
#if FL_HALF_INSTANCE
        /* = sc ((1 - eps) w_t (p_t - 1) + (eps / C) (W p_t - w_t)), p_t - 1 = -rest / sum when the
         * target is the max of a refined row */
        const double pt = et / r->sum;
        const double pt_m1 = r->near_one && r->xt == (double)r->m ? -r->rest / r->sum : pt - 1.0;
        const double gt = sc * ((1.0 - eps) * wt * pt_m1 + (eps != 0.0 ? eps / (double)C * (cx->weight_total * pt - wt) : 0.0));
#else
        const double gt = et * f - sc * (1.0 - eps) * wt - (eps != 0.0 ? c * wt : 0.0);
#endif
        /* rounded before the row's vector passes: its scalar chain (exp, division) then
         * overlaps with them */
        const FL_T gt_put = FL_PUT(FL_MUTATE_GRAD(gt));
        FL_KN(ce_grad_pass)(x, g, e, w, C, eps, r->sum, f, c, r->m, from_lse);
        g[t] = gt_put; /* after the vector pass, which wrote the whole row */
    }
    return nll;
}

/* One row as above, on its own: the gradient from a->lse_in (the backward of a forward that
 * saved it), or a row too long for a batch of them to stay in cache (CE_BATCH_BYTES). */
static FL_ATTR double FL_KN(ce_row_index)(const ce_ctx *cx, const FL_T *x, FL_T *g, fl_index t, double sc,
                                          double *smooth, double *lse)
{
    FL_KN(ce_row) r;
    FL_C *e = FL_KN(ce_scratch)(cx, g);
    const int from_lse = cx->a->lse_in && g;
    if (from_lse) {
        r.xt = (double)FL_GET(x[t]);
        r.wt = cx->a->weight ? (double)((const FL_C *)cx->a->weight)[t] : 1.0;
        r.sdx = 0.0;
        r.near_one = 0;
        r.rest = 0.0;
        FL_KN(ce_from_lse)(*lse, &r.m, &r.sum);
#if FL_HALF_INSTANCE
        /* a confident target (p_t > 1/2: x_t is the row's max): 1 - p_t again from the row,
         * as 1 + rest (ce_refine), for the rounding of its entry; NaN rows fail the test */
        if (r.xt - *lse > -log(CE_NEAR_ONE)) {
            r.m = (FL_C)r.xt;
            r.sum = exp(*lse - r.xt);
            FL_KN(ce_refine)(x, cx->a->c, &r);
        }
#endif
        /* a pure read pass first brings the row into cache: measured faster than one pass
         * that interleaves the row's reads from memory with the gradient's writes (software
         * prefetch was not) */
        volatile FL_C touch = FL_KN(fl_rowmax)(x, cx->a->c);
        (void)touch;
    } else {
        FL_KN(ce_row_head)(cx, x, e, t, &r);
    }
    return FL_KN(ce_row_tail)(cx, x, g, e, t, &r, FL_KN(ce_logsum)(&r, log(r.sum)), sc, from_lse, smooth, lse);
}

/* The gradient of an ignored row (classes contiguous): zeros when every logit is finite
 * (checked as sum(x * 0) == 0, one vector pass), else torch's NaN rule, ce_ignored_grad. */
static FL_ATTR void FL_KN(ce_ignored_row)(const FL_T *x, FL_T *g, fl_index C)
{
    const fl_index L = FL_L;
    const FL_V zero = FL_OP(set1)(0);
    FL_V acc = zero;
    for (fl_index k = 0; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        acc = FL_OP(add)(acc, FL_OP(mul)(FL_LDN(x + k, r, 0), zero));
    }
    FL_C lanes[FL_L];
    FL_OP(store)(lanes, acc);
    int finite = 1;
    for (fl_index l = 0; l < L; l++)
        finite &= lanes[l] == 0;
    if (finite)
        memset(g, 0, (size_t)C * sizeof(FL_T));
    else
        FL_DTN(ce_ignored_grad)(x, 1, g, 1, C);
}

/* One position, probability targets, classes contiguous in x, y and g. */
static FL_ATTR double FL_KN(ce_row_prob)(const ce_ctx *cx, const FL_T *x, const FL_T *y, FL_T *g, double sc,
                                         double *lse)
{
    const fl_ce_args *a = cx->a;
    const FL_C *w = (const FL_C *)a->weight;
    FL_C *e = FL_KN(ce_scratch)(cx, g);
    const fl_index C = a->c, L = FL_L;
    if (C == 0) {
        *lse = -INFINITY;
        return -0.0;
    }
    const double eps = a->label_smoothing;
    const FL_V one_m = FL_OP(set1)((FL_C)(1.0 - eps)), eps_c = FL_OP(set1)((FL_C)(eps / (double)C));
    const FL_C one_ms = (FL_C)(1.0 - eps), eps_cs = (FL_C)(eps / (double)C);
    const int from_lse = a->lse_in && g;
    FL_C m;
    double sum = 0.0;
    if (from_lse)
        FL_KN(ce_from_lse)(*lse, &m, &sum);
    else
        m = FL_KN(fl_rowmax)(x, C);
    /* loss = log(sum) sum_k w y'_k + sum_k w y'_k (m - x_k): differences to the max keep the
     * rounding at the scale of the loss. Read before g (maybe x itself) is written. */
    const FL_V vm = FL_OP(set1)(m);
    FL_ACC sy = FL_OP(acc_zero)(), sdy = FL_OP(acc_zero)();
    fl_index k = 0;
    for (; k + L <= C; k += L) {
        FL_V yv = FL_LD(y + k);
        if (eps != 0.0)
            yv = FL_OP(fmadd)(yv, one_m, eps_c);
        if (w)
            yv = FL_OP(mul)(FL_OP(load)(w + k), yv);
        sy = FL_OP(acc_add)(sy, yv);
        sdy = FL_OP(acc_add)(sdy, FL_OP(mul)(yv, FL_OP(sub)(vm, FL_LD(x + k))));
    }
    double s_y = FL_OP(acc_hsum)(sy), s_dy = FL_OP(acc_hsum)(sdy);
    for (; k < C; k++) { /* tail in scalar: padding lanes would get eps / C */
        const FL_C yk = eps != 0.0 ? FL_GET(y[k]) * one_ms + eps_cs : FL_GET(y[k]);
        const double wy = (double)(w ? w[k] * yk : yk);
        s_y += wy;
        s_dy += wy * ((double)m - (double)FL_GET(x[k]));
    }
    double logsum;
    if (!from_lse) {
        FL_KN(ce_row) rr;
        rr.m = m;
        rr.sum = e ? FL_KN(fl_expsum)(x, e, C, m, 1) : FL_KN(fl_expsum)(x, NULL, C, m, 0);
        FL_KN(ce_refine)(x, C, &rr);
        sum = rr.sum;
        logsum = FL_KN(ce_logsum)(&rr, log(sum));
    } else {
        logsum = log(sum);
    }
    const double loss = logsum * s_y + s_dy;
    *lse = (double)m + logsum;
    if (g) {
        const FL_V vf = FL_OP(set1)((FL_C)(sc * s_y / sum)), vc = FL_OP(set1)((FL_C)sc);
        for (k = 0; k < C; k += L) {
            const fl_index r = C - k < L ? C - k : L;
            FL_V yv = FL_LDN(y + k, r, 0);
            if (eps != 0.0)
                yv = FL_OP(fmadd)(yv, one_m, eps_c);
            if (w)
                yv = FL_OP(mul)(FL_OP(loadn)(w + k, r, 0), yv);
            FL_V gv = FL_OP(fnmadd)(vc, yv, FL_OP(mul)(FL_KN(ce_exp_term)(x + k, e + k, r, vm, from_lse), vf));
            FL_STN(g + k, gv, r);
        }
    }
    return loss;
}

/* Positions [p0, p1) of the row layout with index targets, B rows at a time: their heads,
 * one vector log (in double) of their sums, their tails. A scalar log per row cost more than
 * the rest of a row of 16 classes and a third of one of 128 (AVX-512). The rows' terms
 * wait in the gradient (in cache: B C elements <= CE_BATCH_BYTES) between head and tail. */
static FL_ATTR void FL_KN(ce_rows_batch)(const ce_ctx *cx, fl_index p0, fl_index p1, double *sums)
{
    const fl_ce_args *a = cx->a;
    double s_nll = sums[0], s_smooth = sums[1]; /* stored back once, at the end */
    enum { B = CE_BATCH, LD = FL_XCAT(FL_PD, LANES) };
    const fl_index S = a->s, C = a->c;
    FL_T *loss_out = (FL_T *)a->loss;
    FL_C *scratch = FL_KN(ce_scratch)(cx, a->grad); /* B rows of terms (half dtypes) */
    fl_index i = p0 / S, j = p0 - i * S;
    for (fl_index pb = p0; pb < p1; pb += B) {
        const int nb = (int)(p1 - pb < B ? p1 - pb : B);
        FL_KN(ce_row) row[B];
        const FL_T *xp[B];
        FL_T *gp[B];
        FL_C *ep[B];
        double sum[B], logsum[B], sc[B];
        fl_index t[B];
        for (int r = 0; r < B; r++)
            sum[r] = 1.0; /* padding and ignored rows: log 1 */
        for (int r = 0; r < nb; r++, j++) {
            if (j == S) { /* next item: no division per position */
                i++;
                j = 0;
            }
            xp[r] = (const FL_T *)a->x + i * a->xv.sn + j * a->xv.ss;
            gp[r] = a->grad ? (FL_T *)a->grad + i * a->gv.sn + j * a->gv.ss : NULL;
#if FL_HALF_INSTANCE
            ep[r] = scratch ? scratch + r * C : NULL;
#else
            ep[r] = gp[r];
            (void)scratch;
#endif
            sc[r] = cx->scale;
            if (a->grad_out)
                sc[r] *= (double)FL_GET(((const FL_T *)a->grad_out)[i * a->gov.sn + j * a->gov.ss]);
            t[r] = ce_target(a, i, j);
            if (t[r] == a->ignore_index) {
                if (gp[r])
                    FL_KN(ce_ignored_row)(xp[r], gp[r], C);
                continue;
            }
            FL_KN(ce_row_head)(cx, xp[r], ep[r], t[r], &row[r]);
            sum[r] = row[r].sum;
        }
        for (int k = 0; k < B; k += LD)
            FL_XCAT(FL_PD, store)(logsum + k, FL_XCAT(FL_PD, log)(FL_XCAT(FL_PD, load)(sum + k)));
        for (int r = 0; r < nb; r++) {
            double nll = 0.0, smooth = 0.0, lse = 0.0;
            if (t[r] != a->ignore_index)
                nll = FL_KN(ce_row_tail)(cx, xp[r], gp[r], ep[r], t[r], &row[r], FL_KN(ce_logsum)(&row[r], logsum[r]),
                                         sc[r], 0, &smooth, &lse);
            if (loss_out)
                loss_out[pb + r] = FL_PUT(ce_combine(a, nll, smooth));
            if (a->lse_out)
                a->lse_out[pb + r] = lse;
            s_nll += nll;
            s_smooth += smooth;
        }
    }
    sums[0] = s_nll;
    sums[1] = s_smooth;
}

#include "margin_cross_entropy_simd.h"

/* Positions [p0, p1) of the row layout; adds to sums[0] (nll), sums[1] (smoothing) and, with a
 * margin, sums[2] (top-1 hits), through locals stored back once. */
static FL_ATTR void FL_KN(ce_rows)(const ce_ctx *cx, fl_index p0, fl_index p1, double *sums)
{
    const fl_ce_args *a = cx->a;
    const fl_index S = a->s, C = a->c;
    if (a->target_kind != FL_TARGET_PROB && !(a->lse_in && a->grad) && !cx->margin && C > 0 &&
        (double)C * CE_BATCH * sizeof(FL_T) <= CE_BATCH_BYTES) {
        FL_KN(ce_rows_batch)(cx, p0, p1, sums);
        return;
    }
    double s_nll = sums[0], s_smooth = sums[1], s_hits = sums[2];
    FL_T *loss_out = (FL_T *)a->loss;
    fl_index i = p0 / S, j = p0 - i * S;
    for (fl_index p = p0; p < p1; p++, j++) {
        if (j == S) { /* next item: no division per position */
            i++;
            j = 0;
        }
        const FL_T *x = (const FL_T *)a->x + i * a->xv.sn + j * a->xv.ss;
        FL_T *g = a->grad ? (FL_T *)a->grad + i * a->gv.sn + j * a->gv.ss : NULL;
        double sc = cx->scale;
        if (a->grad_out)
            sc *= (double)FL_GET(((const FL_T *)a->grad_out)[i * a->gov.sn + j * a->gov.ss]);
        double nll, smooth = 0.0, lse = a->lse_in ? a->lse_in[p] : 0.0;
        if (a->target_kind == FL_TARGET_PROB) {
            const FL_T *y = (const FL_T *)a->target + i * a->tv.sn + j * a->tv.ss;
            nll = FL_KN(ce_row_prob)(cx, x, y, g, sc, &lse);
        } else {
            const fl_index t = ce_target(a, i, j);
            if (t == a->ignore_index) {
                if (g)
                    FL_KN(ce_ignored_row)(x, g, C);
                nll = 0.0;
                lse = 0.0;
            } else if (cx->margin) {
                double hit;
                nll = FL_KN(mce_row)(cx, x, g, t, sc, &smooth, &lse, &hit);
                s_hits += hit;
            } else {
                nll = FL_KN(ce_row_index)(cx, x, g, t, sc, &smooth, &lse);
            }
        }
        if (a->lse_out)
            a->lse_out[p] = lse;
        if (loss_out)
            loss_out[p] = FL_PUT(ce_combine(a, nll, smooth));
        s_nll += nll;
        s_smooth += smooth;
    }
    sums[0] = s_nll;
    sums[1] = s_smooth;
    sums[2] = s_hits;
}

/* Positions [j0, j1) of item i in the column layout (xv.ss == 1, and gv.ss == 1, tv.ss == 1 for
 * probabilities). A vector holds L neighbouring positions; the class axis is walked by its
 * stride. Per lane the arithmetic is that of the row kernel. */
static FL_ATTR void FL_KN(ce_cols)(const ce_ctx *cx, fl_index i, fl_index j0, fl_index j1, double *sums)
{
    const fl_ce_args *a = cx->a;
    double s_nll = sums[0], s_smooth = sums[1]; /* stored back once, at the end */
    enum { L = FL_L };
    const fl_index C = a->c, xs = a->xv.sc, gs = a->gv.sc, ys = a->tv.sc;
    const FL_C *w = (const FL_C *)a->weight;
    const double eps = a->label_smoothing;
    const int prob = a->target_kind == FL_TARGET_PROB;
    FL_T *loss_out = (FL_T *)a->loss;
    /* the terms of class k: in g at k gs (float32, float64), or at k L in the scratch */
#if FL_HALF_INSTANCE
    FL_C *scratch = FL_KN(ce_scratch)(cx, a->grad);
    const fl_index es = L;
#else
    const fl_index es = gs;
#endif
    fl_index j = j0;
    for (; j + L <= j1 && C > 0; j += L) {
        const FL_T *x = (const FL_T *)a->x + i * a->xv.sn + j;
        FL_T *g = a->grad ? (FL_T *)a->grad + i * a->gv.sn + j : NULL;
#if FL_HALF_INSTANCE
        FL_C *e = scratch;
#else
        FL_C *e = g;
#endif
        const FL_T *y = prob ? (const FL_T *)a->target + i * a->tv.sn + j : NULL;
        double sc[L], xt[L], wt[L], mx[L], sum[L], s1[L], s2[L], nll[L], smooth[L];
#if FL_HALF_INSTANCE
        double gtl[L];
#endif
        fl_index t[L];
        int ignored[L];
        for (int l = 0; l < L; l++) {
            ignored[l] = 0;
            t[l] = 0;
            xt[l] = wt[l] = 0.0;
            sc[l] = cx->scale;
            if (a->grad_out)
                sc[l] *= (double)FL_GET(((const FL_T *)a->grad_out)[i * a->gov.sn + (j + l) * a->gov.ss]);
            if (!prob) {
                t[l] = ce_target(a, i, j + l);
                ignored[l] = t[l] == a->ignore_index;
                xt[l] = ignored[l] ? 0.0 : (double)FL_GET(x[t[l] * xs + l]);
                wt[l] = ignored[l] ? 0.0 : (w ? (double)w[t[l]] : 1.0);
            }
        }
        /* pass 1: max */
        FL_V vmax = FL_OP(set1)(-INFINITY);
        FL_ACC a1 = FL_OP(acc_zero)(), a2 = FL_OP(acc_zero)();
        const FL_V one_m = FL_OP(set1)((FL_C)(1.0 - eps)), eps_c = FL_OP(set1)((FL_C)(eps / (double)C));
        for (fl_index k = 0; k < C; k++)
            vmax = FL_OP(max)(vmax, FL_LD(x + k * xs));
        FL_C mt[L];
        FL_OP(store)(mt, vmax);
        /* pass 2: exp(x - max), summed, written into g; with it s1 = sum w y' and s2 =
         * sum w y' (max - x) (probabilities) or sum w (max - x) (smoothing), x read before g
         * (maybe x itself) is written */
        FL_ACC as = FL_OP(acc_zero)();
        for (fl_index k = 0; k < C; k++) {
            const FL_V xv = FL_LD(x + k * xs);
            if (prob) {
                const FL_V yv = FL_KN(ce_col_wy)(y + k * ys, w, k, eps, one_m, eps_c);
                a1 = FL_OP(acc_add)(a1, yv);
                a2 = FL_OP(acc_add)(a2, FL_OP(mul)(yv, FL_OP(sub)(vmax, xv)));
            } else if (eps != 0.0) {
                const FL_V d = FL_OP(sub)(vmax, xv);
                a2 = FL_OP(acc_add)(a2, w ? FL_OP(mul)(FL_OP(set1)(w[k]), d) : d);
            }
            FL_V ev = FL_OP(exp_le0)(FL_OP(sub)(xv, vmax));
            if (g)
                FL_OP(store)(e + k * es, ev);
            as = FL_OP(acc_add)(as, ev);
        }
        FL_OP(acc_store)(sum, as);
        FL_OP(acc_store)(s1, a1);
        FL_OP(acc_store)(s2, a2);
        /* per lane: the loss and the gradient's factors */
        FL_C f[L], c[L];
        double et[L], A[L];
        for (int l = 0; l < L; l++) {
            A[l] = 0.0;
            et[l] = 0.0;
            mx[l] = (double)mt[l];
            smooth[l] = 0.0;
            double logsum = log(sum[l]);
#if FL_HALF_INSTANCE
            /* a confident lane: its sum again as 1 + rest, in double (ce_refine) */
            double rest = 0.0;
            const int near_one = sum[l] < CE_NEAR_ONE;
            if (near_one) {
                double count = 0.0, others = 0.0;
                for (fl_index k = 0; k < C; k++) {
                    const double xk = (double)FL_GET(x[k * xs + l]);
                    if (xk < mx[l])
                        others += exp(xk - mx[l]);
                    else
                        count += 1.0;
                }
                rest = (count - 1.0) + others;
                sum[l] = 1.0 + rest;
                logsum = log1p(rest);
            }
#endif
            if (prob) {
                nll[l] = logsum * s1[l] + s2[l];
                f[l] = (FL_C)(sc[l] * s1[l] / sum[l]);
                c[l] = (FL_C)sc[l];
            } else if (ignored[l]) {
                /* torch's 0 * softmax: NaN along the lane when its sum is NaN (a NaN or +inf
                 * logit, or only -inf), else 0 (the exp terms are finite then) */
                nll[l] = 0.0;
                f[l] = (FL_C)(0.0 / sum[l]);
                c[l] = 0;
            } else {
                nll[l] = wt[l] * ((mx[l] - xt[l]) + logsum);
                A[l] = wt[l];
                if (eps != 0.0) {
                    smooth[l] = logsum * cx->weight_total + s2[l];
                    A[l] = (1.0 - eps) * wt[l] + eps / (double)C * cx->weight_total;
                }
                f[l] = (FL_C)(sc[l] * A[l] / sum[l]);
                c[l] = (FL_C)(sc[l] * eps / (double)C);
                if (g) {
                    et[l] = (double)e[t[l] * es + l];
#if FL_HALF_INSTANCE
                    /* the target entry of ce_row_tail, p_t - 1 from the refined rest */
                    const double pt = et[l] / sum[l];
                    const double pt_m1 = near_one && xt[l] == mx[l] ? -rest / sum[l] : pt - 1.0;
                    gtl[l] = sc[l] * ((1.0 - eps) * wt[l] * pt_m1 +
                                      (eps != 0.0 ? eps / (double)C * (cx->weight_total * pt - wt[l]) : 0.0));
#endif
                }
            }
            if (loss_out)
                loss_out[i * a->s + j + l] = FL_PUT(ce_combine(a, nll[l], smooth[l]));
            if (a->lse_out)
                a->lse_out[i * a->s + j + l] = !prob && ignored[l] ? 0.0 : mx[l] + logsum;
            s_nll += nll[l];
            s_smooth += smooth[l];
        }
        if (!g)
            continue;
        /* pass 3: scale */
        const FL_V vf = FL_OP(load)(f), vc = FL_OP(load)(c);
        for (fl_index k = 0; k < C; k++) {
            FL_V gv = FL_OP(mul)(FL_OP(load)(e + k * es), vf);
            if (prob) {
                gv = FL_OP(fnmadd)(vc, FL_KN(ce_col_wy)(y + k * ys, w, k, eps, one_m, eps_c), gv);
            } else if (eps != 0.0) {
                gv = FL_OP(fnmadd)(vc, w ? FL_OP(set1)(w[k]) : FL_OP(set1)(1), gv);
            }
            FL_ST(g + k * gs, gv);
        }
        if (!prob)
            for (int l = 0; l < L; l++)
                if (!ignored[l])
#if FL_HALF_INSTANCE
                    g[t[l] * gs + l] = FL_PUT(gtl[l]);
#else
                    g[t[l] * gs + l] = (FL_T)(et[l] * (sc[l] * A[l] / sum[l]) - sc[l] * (1.0 - eps) * wt[l] -
                                              (eps != 0.0 ? sc[l] * eps / (double)C * wt[l] : 0.0));
#endif
    }
    sums[0] = s_nll;
    sums[1] = s_smooth;
    FL_DTN(ce_positions)(cx, i * a->s + j, i * a->s + j1, sums); /* the leftover positions */
}

/* The table's block functions: block b of the row / column layout; sums[0] = the block's nll
 * terms, sums[1] = its smoothing terms, sums[2] its top-1 hits (margin), each stored once. */
static FL_ATTR void FL_KN(ce_blk_rows)(void *vctx, fl_index b, double *sums)
{
    const ce_ctx *cx = (const ce_ctx *)vctx;
    fl_index p0, p1;
    fl_block_range(b, cx->block, cx->npos, &p0, &p1);
    double acc[3] = {0.0, 0.0, 0.0};
    FL_KN(ce_rows)(cx, p0, p1, acc);
    sums[0] = acc[0];
    sums[1] = acc[1];
    sums[2] = acc[2];
}

static FL_ATTR void FL_KN(ce_blk_cols)(void *vctx, fl_index b, double *sums)
{
    const ce_ctx *cx = (const ce_ctx *)vctx;
    const fl_index S = cx->a->s;
    fl_index p0, p1;
    fl_block_range(b, cx->block, cx->npos, &p0, &p1);
    double acc[3] = {0.0, 0.0, 0.0};
    for (fl_index p = p0; p < p1;) { /* split at item boundaries */
        const fl_index i = p / S, j = p - i * S;
        const fl_index stop = (i + 1) * S < p1 ? (i + 1) * S : p1;
        FL_KN(ce_cols)(cx, i, j, j + (stop - p), acc);
        p = stop;
    }
    sums[0] = acc[0];
    sums[1] = acc[1];
    sums[2] = acc[2];
}
