/*
 * libFuzzer harness: fl_nll_loss (csrc/nll_loss.h), called exactly as _nll_loss.pyx calls it
 * (one call: target check, scale, losses, gradient, reduction).
 *
 * The (n, c, s) view as the .pyx builds it, int32/int64 targets of any strides, weight,
 * ignore_index, reduction, grad_output, and the gradient: none, a separate array of any
 * layout, or the input itself (out=input).
 *
 * Checks: ASan/UBSan, inputs unchanged, a bad target gives FL_ERR_TARGET with nothing
 * written, finite results and every output element written for moderate finite data, and
 * out=input bitwise identical to a separate gradient of the same layout (the loss must be
 * read before the gradient overwrites the input). The dtype: float32, float64, bfloat16 or
 * float16 (the class weights float32 for the half dtypes); for the half dtypes with moderate
 * finite data, instead of the finiteness check, every loss and gradient element and the
 * reduced value against a double reference from the upcast inputs (nll_half_check), and the
 * padding of the gradient unwritten.
 */
#include "fuzz_common.h"
#include "nll_loss.h"

static int run(void *a) { return fl_nll_loss(&((fl_nll_args *)a)->call); }

static fl_index target_at(const fl_nll_args *a, const fz_arr *t, fl_index i, fl_index j)
{
    return fz_target_at(t, a->tv.sn, a->tv.ss, i, j);
}

/* The half dtypes, moderate finite data: loss -w_t x_t (0 ignored), gradient -sc w_t at the
 * target and 0 elsewhere (nll_loss.h), in double from the upcast inputs. */
static void nll_half_check(const fl_nll_args *a, const fz_arr *x, const fz_arr *t, const fz_arr *w, const fz_arr *go,
                           const fz_arr *loss, const fz_arr *g)
{
    const int dt = a->call.dtype, red = a->call.reduction;
    const fl_index n = a->n, c = a->c, s = a->s;
    double kept = 0.0;
    for (fl_index i = 0; i < n; i++)
        for (fl_index j = 0; j < s; j++) {
            const fl_index tt = target_at(a, t, i, j);
            if (tt != a->ignore_index)
                kept += w ? fz_at(w, tt) : 1.0;
        }
    const double scale = red == FL_REDUCE_MEAN ? (kept != 0.0 ? a->call.grad_scale / kept : (double)NAN) : a->call.grad_scale;
    double vsum = 0.0, vmag = 0.0;
    for (fl_index i = 0; i < n; i++)
        for (fl_index j = 0; j < s; j++) {
            const fl_index tt = target_at(a, t, i, j);
            const int kept_pos = tt != a->ignore_index;
            const double wt = kept_pos ? (w ? fz_at(w, tt) : 1.0) : 0.0;
            const double l = kept_pos ? -(wt * fz_at(x, i * a->xv.sn + tt * a->xv.sc + j * a->xv.ss)) : 0.0;
            if (loss)
                fz_expect(loss, i * s + j, l, fabs(l), "loss", i, 0, j);
            vsum += l;
            vmag += fabs(l);
            if (g) {
                const double sc = scale * (go ? fz_at(go, i * a->gov.sn + j * a->gov.ss) : 1.0);
                for (fl_index k = 0; k < c; k++) {
                    const double ref = kept_pos && k == tt ? -wt * sc : 0.0;
                    fz_expect(g, i * g->st[0] + k * g->st[1] + j * g->st[2], ref, fabs(ref), "gradient", i, k, j);
                }
            }
        }
    if (red == FL_REDUCE_SUM)
        fz_expect_value(dt, a->call.value, vsum, vmag);
    else if (red == FL_REDUCE_MEAN && kept != 0.0)
        fz_expect_value(dt, a->call.value, vsum / kept, vmag / fabs(kept));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const int dt = fz_dtype(fz_u8(&in)), half = fz_is_half(dt);
    const int wdt = fl_weight_f32(dt) ? FL_DTYPE_F32 : FL_DTYPE_F64; /* the class weights */
    const int kind = fz_u8(&in) & 1 ? FL_NLL_TARGET_I64 : FL_NLL_TARGET_I32;

    fl_index dims[3];
    fz_ncs_dims(&in, dims);
    const fl_index n = dims[0], c = dims[1], s = dims[2];

    fl_nll_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.c = c;
    a.s = s;
    a.call.simd = fz_simd(&in);
    a.target_kind = kind;
    int moderate = 1;

    fl_index xst[3];
    fz_strides(&in, 3, dims, xst, 1);
    fz_arr *x = fz_float_array(&in, 3, dims, xst, dt, FZ_ANY, &moderate, NULL);
    a.x = x->base;
    a.xv.sn = xst[0];
    a.xv.sc = xst[1];
    a.xv.ss = xst[2];

    const fl_index ignore = fz_ignore_index(&in, c);
    a.ignore_index = ignore;
    fz_arr *t = fz_class_targets(&in, n, s, c, kind == FL_NLL_TARGET_I64, ignore);
    a.target = t->base;
    a.tv.sn = t->st[0];
    a.tv.ss = t->st[1];

    fz_arr *w = NULL;
    if (fz_chance(&in, 100)) {
        const fl_index wd[1] = {c}, wst[1] = {1};
        w = fz_float_array(&in, 1, wd, wst, wdt, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &moderate, NULL);
        a.weight = w->base;
    }

    int want_grad;
    fz_call_options(&in, &a.call, dt, &want_grad, &moderate);
    const int red = a.call.reduction;
    fz_arr *go = NULL;
    if (want_grad && red == FL_REDUCE_NONE && fz_chance(&in, 128)) {
        fl_index gst[2];
        fz_strides(&in, 2, t->dims, gst, 1);
        go = fz_float_array(&in, 2, t->dims, gst, dt, FZ_ANY, &moderate, NULL);
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
        in_place = xst[0] != 0 && xst[1] != 0 && xst[2] != 0 && fz_chance(&in, 80);
        if (in_place) {
            g = fz_output(3, dims, xst, dt);
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
    if (status == FL_ERR_TARGET) { /* nothing written */
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

    if (half) {
        if (g)
            fz_check_gaps(g, "gradient");
        if (moderate)
            nll_half_check(&a, x, t, w, go, loss, g);
    } else if (moderate) { /* the mean of nothing is NaN, its gradient too when weights sum to 0 */
        fl_call chk = a.call;
        if (red == FL_REDUCE_MEAN)
            chk.reduction = FL_REDUCE_NONE;
        fz_check_finite(&chk, loss, red == FL_REDUCE_MEAN && w ? NULL : g);
    }
    if (in_place) {
        fz_check_in_place(run, &a, &a.call, &a.loss, &a.grad, loss, g, x);
        if (half)
            fz_check_gaps(x, "x as the gradient (out=input)");
    }
    fz_free_all();
    return 0;
}
