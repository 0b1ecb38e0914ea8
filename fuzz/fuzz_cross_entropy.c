/*
 * libFuzzer harness: fl_cross_entropy (csrc/cross_entropy.h), called exactly as
 * _cross_entropy.pyx calls it: one call that checks the targets, scales, runs the kernel and
 * reduces.
 *
 * The input picks the dtype, the target kind (int32 / int64 class indices, or class
 * probabilities), the (n, c, s) view as the .pyx builds it, every operand's strides
 * (negative, padded, permuted, 0 for the read-only operands NumPy may broadcast), weight,
 * ignore_index, label smoothing, reduction, grad_output, the gradient (none, a separate
 * array of any layout, or the logits themselves: out=input) and the SIMD path.
 *
 * Checks: no out-of-bounds access (ASan), no UB (UBSan), inputs unchanged; a bad target
 * gives FL_ERR_TARGET with nothing written; with moderate finite data a finite value and
 * every loss and gradient element written and finite; the kernel name recorded; with
 * out=input, results bitwise identical to a separate gradient of the same layout.
 */
#include "cross_entropy.h"
#include "fuzz_common.h"

static int run(void *a) { return fl_cross_entropy(&((fl_ce_args *)a)->call); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const int es = fz_u8(&in) & 1 ? 8 : 4;
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
    fz_arr *x = fz_float_array(&in, 3, dims, xst, es, FZ_ANY, &moderate, NULL);
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
            t = fz_float_array(&in, 3, dims, tst, es, FZ_ANY, &moderate, NULL);
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
        w = fz_float_array(&in, 1, wd, wst, es, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &w_finite, NULL);
        moderate &= w_finite;
        a.weight = w->base;
    }

    /* ---- options ------------------------------------------------------------------------------ */
    {
        static const double eps[] = {0.0, 0.0, 0.0, 0.1, 0.5, 1.0};
        const uint8_t b = fz_u8(&in) % 7;
        a.label_smoothing = b < 6 ? eps[b] : (double)fz_u8(&in) / 255.0;
    }
    int want_grad;
    fz_call_options(&in, &a.call, es, &want_grad, &moderate);
    const int red = a.call.reduction;
    fz_arr *go = NULL;
    if (want_grad && red == FL_REDUCE_NONE && fz_chance(&in, 128)) {
        const fl_index gd[2] = {n, s};
        fl_index gst[2];
        fz_strides(&in, 2, gd, gst, 1);
        go = fz_float_array(&in, 2, gd, gst, es, FZ_ANY, &moderate, NULL);
        a.grad_out = go->base;
        a.gov.sn = gst[0];
        a.gov.ss = gst[1];
    }
    fz_arr *loss = NULL;
    if (red == FL_REDUCE_NONE) {
        const fl_index ld[1] = {n * s}, lst[1] = {1};
        loss = fz_output(1, ld, lst, es);
        a.loss = loss->base;
    }
    int in_place = 0;
    fz_arr *g = NULL;
    if (want_grad) {
        const int x_has_zero = xst[0] == 0 || xst[1] == 0 || xst[2] == 0;
        in_place = !x_has_zero && !t_is_x && fz_chance(&in, 80);
        if (in_place) {
            g = fz_output(3, dims, xst, es); /* first a separate gradient of x's layout */
        } else {
            fl_index gst[3];
            fz_strides(&in, 3, dims, gst, 0);
            g = fz_output(3, dims, gst, es);
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
    if ((a.call.kernel == NULL) != (n * s == 0))
        FZ_FAIL("kernel %s for %lld positions", a.call.kernel ? a.call.kernel : "(none)", (long long)(n * s));

    /* moderate finite data: every result finite (NaN: an element never written, or garbage);
     * the mean of nothing (all ignored, or kept weights summing to 0) is NaN by definition,
     * and so is its gradient when the kept weights sum to 0 */
    double wsum = (double)c;
    if (w) {
        wsum = 0.0;
        for (fl_index k = 0; k < c; k++)
            wsum += es == 4 ? (double)((const float *)w->base)[k] : ((const double *)w->base)[k];
    }
    if (moderate && c > 0 && isfinite(wsum)) {
        fl_call chk = a.call;
        if (red == FL_REDUCE_MEAN)
            chk.reduction = FL_REDUCE_NONE; /* no value check */
        fz_check_finite(&chk, loss, red == FL_REDUCE_MEAN && w ? NULL : g);
    }

    if (in_place) /* out=input: the same call with the gradient over the logits */
        fz_check_in_place(run, &a, &a.call, &a.loss, &a.grad, loss, g, x);
    fz_free_all();
    return 0;
}
