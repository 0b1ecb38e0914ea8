/*
 * libFuzzer harness: fl_cross_entropy (csrc/cross_entropy.h), called exactly as
 * _cross_entropy.pyx calls it: one call that checks the targets, scales, runs the kernel and
 * reduces.
 *
 * The input picks the dtype (float32, float64, bfloat16, float16: every floating operand in
 * it, the class weights float32 for the half dtypes), the target kind (int32 / int64 class indices, or class
 * probabilities), the (n, c, s) view as the .pyx builds it, every operand's strides
 * (negative, padded, permuted, 0 for the read-only operands NumPy may broadcast), weight,
 * ignore_index, label smoothing, reduction, grad_output, the gradient (none, a separate
 * array of any layout, or the logits themselves: out=input), the SIMD path, and for class
 * indices 1 input in 4 a margin (margin_cross_entropy's call: kind arc or cos, easy_margin,
 * margins and scales from a table).
 *
 * Checks: no out-of-bounds access (ASan), no UB (UBSan), inputs unchanged; a bad target
 * gives FL_ERR_TARGET with nothing written; with moderate finite data a finite value and
 * every loss and gradient element written and finite; the kernel name recorded; with
 * out=input, results bitwise identical to a separate gradient of the same layout. For the
 * half dtypes with moderate finite data, instead of the finiteness check: every loss and
 * gradient element and the reduced value against a double reference from the upcast inputs
 * (ce_half_check, with the margin's logits when there is one), and the padding of the
 * outputs unwritten. With a margin, the hit count between 0 and the positions; without, 0.
 */
#include "cross_entropy.h"
#include "fuzz_common.h"

static int run(void *a) { return fl_cross_entropy(&((fl_ce_args *)a)->call); }

static fl_index target_at(const fl_ce_args *a, const fz_arr *t, fl_index i, fl_index j)
{
    return fz_target_at(t, a->tv.sn, a->tv.ss, i, j);
}

/* The logit of cosine x, and in *dz its derivative: s x, or at the target s phi(x) with phi
 * written as cos(acos(x) + m) (margin_cross_entropy.h writes it through sin and cos m), the
 * cosine clamped to +-(1 - 1e-7) for kind arc. No margin: x itself. */
static double margin_logit(const fl_margin *mg, double x, int at_target, double *dz)
{
    *dz = 1.0;
    if (!mg)
        return x;
    const double s = mg->scale, m = mg->margin;
    *dz = s;
    if (!at_target)
        return s * x;
    if (mg->kind == FL_MARGIN_COS)
        return s * (x - m);
    const double hi = 1.0 - FL_MARGIN_EPS, c = x > hi ? hi : (x < -hi ? -hi : x);
    const double pi = 3.14159265358979323846, theta = acos(c);
    if (mg->easy ? c > 0.0 : c > cos(pi - m)) { /* the seed's th test: theta + m < pi for m in [0, pi] */
        *dz = s * sin(theta + m) / sqrt(1.0 - c * c);
        return s * cos(theta + m);
    }
    return s * (mg->easy ? c : c - m * sin(m));
}

/* The half dtypes, moderate finite data, c > 0: the losses, the gradient and the value
 * against the formulas of cross_entropy.h in double from the upcast inputs. */
static void ce_half_check(const fl_ce_args *a, const fz_arr *x, const fz_arr *t, const fz_arr *w, const fz_arr *go,
                          const fz_arr *loss, const fz_arr *g)
{
    const int dt = a->call.dtype, prob = a->target_kind == FL_TARGET_PROB, red = a->call.reduction;
    const fl_index n = a->n, c = a->c, s = a->s;
    const double eps = a->label_smoothing, eps_c = eps / (double)c, one_m = 1.0 - eps;
    /* the error of a log(sum) accumulated in double, at worst: c roundings of about 1e-16
     * (FZ_MAG times this); as a term of the losses' sizes */
    const double lfloor = (double)c * 1e-10;
#define W(k) (w ? fz_at(w, (k)) : 1.0)
#define X(i, k, j) fz_at(x, (i) * a->xv.sn + (k) * a->xv.sc + (j) * a->xv.ss)
    /* the logits (the cosines' under a margin; tt: the position's target) */
#define Z(i, k, j) margin_logit(a->margin, X(i, k, j), (k) == tt, &dz)
    double dz;
#define Y(i, k, j) fz_at(t, (i) * a->tv.sn + (k) * a->tv.sc + (j) * a->tv.ss)
    double wtot = 0.0, wabs = 0.0, wmax = 0.0;
    for (fl_index k = 0; k < c; k++) {
        wtot += W(k);
        wabs += fabs(W(k));
        wmax = fabs(W(k)) > wmax ? fabs(W(k)) : wmax;
    }
    double kept = (double)(n * s);
    if (!prob) {
        kept = 0.0;
        for (fl_index i = 0; i < n; i++)
            for (fl_index j = 0; j < s; j++) {
                const fl_index tt = target_at(a, t, i, j);
                if (tt != a->ignore_index)
                    kept += W(tt);
            }
    }
    const double scale = red == FL_REDUCE_MEAN ? (kept != 0.0 ? a->call.grad_scale / kept : (double)NAN) : a->call.grad_scale;
    double vsum = 0.0, vmag = 0.0;
    for (fl_index i = 0; i < n; i++)
        for (fl_index j = 0; j < s; j++) {
            const double sc = scale * (go ? fz_at(go, i * a->gov.sn + j * a->gov.ss) : 1.0);
            const fl_index tt = prob ? 0 : target_at(a, t, i, j);
            double l = 0.0, lmag = 0.0;
            if (!prob && tt == a->ignore_index) {
                if (g)
                    for (fl_index k = 0; k < c; k++)
                        fz_expect(g, i * g->st[0] + k * g->st[1] + j * g->st[2], 0.0, 0.0, "gradient (ignored)", i, k, j);
            } else {
                double m = -INFINITY;
                for (fl_index k = 0; k < c; k++)
                    m = Z(i, k, j) > m ? Z(i, k, j) : m;
                double count = 0.0, others = 0.0;
                for (fl_index k = 0; k < c; k++) {
                    if (Z(i, k, j) < m)
                        others += exp(Z(i, k, j) - m);
                    else
                        count += 1.0;
                }
                const double sum = count + others, ls = fz_logsum(count, others);
                /* with a margin the kernel's terms are of the logits' size s |x| (the
                 * smoothing sum relative to s phi): their double rounding, as a floor */
                const double lfl = lfloor + (a->margin ? 1e-10 * fabs(m) : 0.0);
                double A = 0.0, Amag = 0.0, sy = 0.0, symag = 0.0, wymax = 0.0, wt = 0.0;
                if (prob) { /* loss = sum_k w_k y'_k (lse - x_k) */
                    for (fl_index k = 0; k < c; k++) {
                        const double wy = W(k) * (one_m * Y(i, k, j) + eps_c);
                        const double wymag = fabs(W(k)) * (fabs(one_m * Y(i, k, j)) + eps_c);
                        const double d = ls + (m - Z(i, k, j));
                        l += wy * d;
                        lmag += wymag * (d + lfl);
                        sy += wy;
                        symag += wymag;
                        wymax = wymag > wymax ? wymag : wymax;
                    }
                } else { /* (1 - eps) w_t (lse - x_t) + (eps / c) sum_k w_k (lse - x_k) */
                    wt = W(tt);
                    const double d = ls + (m - Z(i, tt, j));
                    l = wt * d;
                    lmag = fabs(wt) * (d + lfl);
                    A = wt;
                    Amag = fabs(wt);
                    if (eps != 0.0) {
                        double sm = 0.0, smag = 0.0;
                        for (fl_index k = 0; k < c; k++) {
                            const double dk = ls + (m - Z(i, k, j));
                            sm += W(k) * dk;
                            smag += fabs(W(k)) * (dk + lfl);
                        }
                        l = one_m * l + eps_c * sm;
                        lmag = one_m * lmag + eps_c * smag;
                        A = one_m * wt + eps_c * wtot;
                        Amag = one_m * fabs(wt) + eps_c * wabs;
                    }
                }
                /* the gradient's factors (sc A / sum, sc eps / c, sc sum_j w_j y'_j / sum, ...) are
                 * float32 for the half dtypes: a scale beyond float32's range (a mean over a
                 * denormal weight sum) is outside what they compute, and not checked, as the
                 * float32 check skips the gradient of a mean with weights */
                const double fmag = fabs(sc) * (prob ? symag + wymax : Amag + one_m * fabs(wt) + eps_c * wmax);
                if (g && fmag < 0x1p126)
                    for (fl_index k = 0; k < c; k++) {
                        const double p = exp(Z(i, k, j) - m) / sum; /* and dz at k: the chain rule */
                        double ref, mag;
                        if (prob) { /* sc (p_k sum_j w_j y'_j - w_k y'_k) */
                            const double wy = W(k) * (one_m * Y(i, k, j) + eps_c);
                            ref = sc * (p * sy - wy);
                            mag = fabs(sc) * (p * symag + fabs(W(k)) * (fabs(one_m * Y(i, k, j)) + eps_c));
                        } else { /* sc (p_k A - (1 - eps) w_t [k = t] - (eps / c) w_k) */
                            ref = sc * (p * A - (k == tt ? one_m * wt : 0.0) - eps_c * W(k));
                            mag = fabs(sc) * (p * Amag + (k == tt ? one_m * fabs(wt) : 0.0) + eps_c * fabs(W(k)));
                        }
                        fz_expect(g, i * g->st[0] + k * g->st[1] + j * g->st[2], ref * dz, mag * fabs(dz), "gradient",
                                  i, k, j);
                    }
            }
            if (loss)
                fz_expect(loss, i * s + j, l, lmag, "loss", i, 0, j);
            vsum += l;
            vmag += lmag;
        }
    if (red == FL_REDUCE_SUM)
        fz_expect_value(dt, a->call.value, vsum, vmag);
    else if (red == FL_REDUCE_MEAN && kept != 0.0)
        fz_expect_value(dt, a->call.value, vsum / kept, vmag / fabs(kept));
#undef W
#undef X
#undef Y
#undef Z
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const int dt = fz_dtype(fz_u8(&in)), half = fz_is_half(dt);
    const int wdt = fl_weight_f32(dt) ? FL_DTYPE_F32 : FL_DTYPE_F64; /* the class weights */
    const uint8_t tk = fz_u8(&in) % 4;
    const int prob = tk == 3;
    const int kind = prob ? FL_TARGET_PROB : (tk & 1) ? FL_TARGET_I64 : FL_TARGET_I32;
    const int simd = fz_simd(&in);

    fl_index dims[3]; /* n, c, s */
    fz_ncs_dims(&in, dims);
    const fl_index n = dims[0], c = dims[1], s = dims[2];

    fl_ce_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.c = c;
    a.s = s;
    a.call.simd = simd;
    a.target_kind = kind;
    int moderate = 1;

    /* ---- logits ------------------------------------------------------------------------------ */
    fl_index xst[3];
    fz_strides(&in, 3, dims, xst, 1);
    fz_arr *x = fz_float_array(&in, 3, dims, xst, dt, FZ_ANY, &moderate, NULL);
    a.x = x->base;
    a.xv.sn = xst[0];
    a.xv.sc = xst[1];
    a.xv.ss = xst[2];

    /* ---- targets -------------------------------------------------------------------------------- */
    fz_arr *t = NULL;
    int t_is_x = 0;
    fl_index ignore = fz_ignore_index(&in, c);
    if (prob && ignore >= 0) /* the .pyx rejects ignore_index >= 0 with probabilities */
        ignore = -100;
    a.ignore_index = ignore;
    if (prob) {
        if (fz_chance(&in, 20)) { /* target=input, the same array */
            t = x;
            t_is_x = 1;
        } else {
            fl_index tst[3];
            fz_strides(&in, 3, dims, tst, 1);
            t = fz_float_array(&in, 3, dims, tst, dt, FZ_ANY, &moderate, NULL);
        }
        a.tv.sn = t->st[0];
        a.tv.sc = t->st[1];
        a.tv.ss = t->st[2];
    } else {
        t = fz_class_targets(&in, n, s, c, kind == FL_TARGET_I64, ignore);
        a.tv.sn = t->st[0];
        a.tv.ss = t->st[1];
    }
    a.target = t->base;

    /* ---- weight (c contiguous elements) ------------------------------------------------------- */
    fz_arr *w = NULL;
    int w_finite = 1;
    if (fz_chance(&in, 100)) {
        const fl_index wd[1] = {c}, wst[1] = {1};
        w = fz_float_array(&in, 1, wd, wst, wdt, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &w_finite, NULL);
        moderate &= w_finite;
        a.weight = w->base;
    }

    /* ---- options ------------------------------------------------------------------------------ */
    {
        static const double eps[] = {0.0, 0.0, 0.0, 0.1, 0.5, 1.0};
        const uint8_t b = fz_u8(&in) % 7;
        a.label_smoothing = b < 6 ? eps[b] : (double)fz_u8(&in) / 255.0;
    }
    fl_margin mg; /* margin_cross_entropy: class indices only, as the .pyx allows */
    if (!prob && fz_chance(&in, 64)) {
        static const double margins[] = {0.0, 0.2, 0.5, 1.5, 3.5, -0.3};
        static const double scales[] = {1.0, 30.0, 64.0, 1e-3};
        const uint8_t b = fz_u8(&in);
        memset(&mg, 0, sizeof mg);
        mg.kind = (b & 1) ? FL_MARGIN_COS : FL_MARGIN_ARC;
        mg.easy = mg.kind == FL_MARGIN_ARC && (b & 2);
        mg.margin = margins[(b >> 2) % 6];
        mg.scale = scales[(b >> 5) % 4];
        a.margin = &mg;
    }
    int want_grad;
    fz_call_options(&in, &a.call, dt, &want_grad, &moderate);
    const int red = a.call.reduction;
    fz_arr *go = NULL;
    if (want_grad && red == FL_REDUCE_NONE && fz_chance(&in, 128)) {
        const fl_index gd[2] = {n, s};
        fl_index gst[2];
        fz_strides(&in, 2, gd, gst, 1);
        go = fz_float_array(&in, 2, gd, gst, dt, FZ_ANY, &moderate, NULL);
        a.grad_out = go->base;
        a.gov.sn = gst[0];
        a.gov.ss = gst[1];
    }
    fz_arr *loss = NULL;
    if (red == FL_REDUCE_NONE) {
        const fl_index ld[1] = {n * s}, lst[1] = {1};
        loss = fz_output(1, ld, lst, dt);
        a.loss = loss->base;
    }
    int in_place = 0;
    fz_arr *g = NULL;
    if (want_grad) {
        const int x_has_zero = xst[0] == 0 || xst[1] == 0 || xst[2] == 0;
        in_place = !x_has_zero && !t_is_x && fz_chance(&in, 80);
        if (in_place) {
            g = fz_output(3, dims, xst, dt); /* first a separate gradient of x's layout */
        } else {
            fl_index gst[3];
            fz_strides(&in, 3, dims, gst, 0);
            g = fz_output(3, dims, gst, dt);
        }
        a.grad = g->base;
        a.gv.sn = g->st[0];
        a.gv.sc = g->st[1];
        a.gv.ss = g->st[2];
    }

    /* ---- the one call ------------------------------------------------------------------------- */
    fz_snap sx = fz_snapshot(x), st = fz_snapshot(t);
    fz_snap sw = {NULL, NULL}, sgo = {NULL, NULL}, sg = {NULL, NULL}, sl = {NULL, NULL};
    if (w)
        sw = fz_snapshot(w);
    if (go)
        sgo = fz_snapshot(go);
    if (g)
        sg = fz_snapshot(g);
    if (loss)
        sl = fz_snapshot(loss);
    const int status = run(&a);
    fz_check_unchanged(&sx, "x");
    fz_check_unchanged(&st, "target");
    if (w)
        fz_check_unchanged(&sw, "weight");
    if (go)
        fz_check_unchanged(&sgo, "grad_out");
    if (status == FL_ERR_TARGET && !prob) { /* nothing written */
        if (g)
            fz_check_unchanged(&sg, "gradient (bad target)");
        if (loss)
            fz_check_unchanged(&sl, "loss (bad target)");
        if (a.call.bad_value >= 0 && a.call.bad_value < c && a.call.bad_value != ignore)
            FZ_FAIL("bad target value %lld is a valid class", (long long)a.call.bad_value);
        fz_free_all();
        return 0;
    }
    free(sg.copy);
    free(sl.copy);
    if (status != FL_OK)
        FZ_FAIL("status %d", status);
    if (a.margin ? !(a.hits >= 0.0 && a.hits <= (double)(n * s) && a.hits == floor(a.hits)) : a.hits != 0.0)
        FZ_FAIL("hits %g for %lld positions%s", a.hits, (long long)(n * s), a.margin ? "" : " without a margin");
    if ((a.call.kernel == NULL) != (n * s == 0))
        FZ_FAIL("kernel %s for %lld positions", a.call.kernel ? a.call.kernel : "(none)", (long long)(n * s));

    /* moderate finite data: every result finite (NaN: an element never written, or garbage);
     * the mean of nothing (all ignored, or kept weights summing to 0) is NaN by definition,
     * and so is its gradient when the kept weights sum to 0 */
    double wsum = (double)c;
    if (w) {
        wsum = 0.0;
        for (fl_index k = 0; k < c; k++)
            wsum += fz_at(w, k);
    }
    if (half) {
        if (g)
            fz_check_gaps(g, "gradient");
        if (moderate && c > 0)
            ce_half_check(&a, x, t, w, go, loss, g);
    } else if (moderate && c > 0 && isfinite(wsum)) {
        fl_call chk = a.call;
        if (red == FL_REDUCE_MEAN)
            chk.reduction = FL_REDUCE_NONE; /* no value check */
        fz_check_finite(&chk, loss, red == FL_REDUCE_MEAN && w ? NULL : g);
    }

    if (in_place) { /* out=input: the same call with the gradient over the logits */
        fz_check_in_place(run, &a, &a.call, &a.loss, &a.grad, loss, g, x);
        if (half)
            fz_check_gaps(x, "x as the gradient (out=input)");
    }
    fz_free_all();
    return 0;
}
