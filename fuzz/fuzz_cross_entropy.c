/*
 * libFuzzer harness: fl_ce_check_targets_* and fl_cross_entropy_* (csrc/cross_entropy.h).
 *
 * The input picks the dtype, the target kind (int32 / int64 class indices, or class
 * probabilities), the (n, c, s) view as _cross_entropy.pyx builds it (1-D input: n = s = 1;
 * (N, C): n = 1, s = N; K-dim: n = N, s = S, never n > 1 with s == 1), every operand's strides
 * (negative, padded, permuted, 0 for the read-only operands NumPy may broadcast), weight,
 * ignore_index, label smoothing, reduction (loss array for "none", the scale for "mean" from
 * the check's kept weight, as the .pyx computes it), grad_output, the gradient (none, a
 * separate array of any layout, or the logits themselves: out=input) and the SIMD path.
 * As the .pyx does, index targets are checked first and the kernel is skipped when one is bad.
 *
 * Checks: no out-of-bounds access (ASan), no UB (UBSan), inputs unchanged, and with moderate
 * finite data: finite sums, every loss and gradient element written and finite. With
 * out=input, the same call is made first with a separate gradient of the same layout, and
 * the in-place results must be bitwise identical to it.
 */
#include "cross_entropy.h"
#include "fuzz_common.h"

typedef struct {
    double nll, smooth;
    int status;
} ce_result;

static ce_result run(fl_ce_args *a, int es)
{
    ce_result r;
    r.status = es == 4 ? fl_cross_entropy_f32(a) : fl_cross_entropy_f64(a);
    r.nll = a->nll_sum;
    r.smooth = a->smooth_sum;
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const int es = fz_u8(&in) & 1 ? 8 : 4;
    const uint8_t tk = fz_u8(&in) % 4;
    const int prob = tk == 3;
    const int kind = prob ? FL_TARGET_PROB : (tk & 1) ? FL_TARGET_I64 : FL_TARGET_I32;
    const int simd = fz_simd(&in);

    /* ---- the (n, c, s) view --------------------------------------------------------------- */
    fl_index dims[3]; /* n, c, s */
    const uint8_t form = fz_u8(&in) % 4;
    dims[1] = fz_dim(&in);
    if (form == 0) { /* (C,) */
        dims[0] = dims[2] = 1;
    } else if (form == 1) { /* (N, C) -> (1, C, N) */
        dims[0] = 1;
        dims[2] = fz_dim(&in);
    } else { /* (N, C, d1..dk) */
        dims[0] = fz_dim(&in);
        dims[2] = fz_dim(&in);
    }
    fz_cap(dims, 3, 1 << 16);
    if (dims[2] == 1) /* the .pyx views S == 1 as (1, C, N) */
        dims[0] = 1;
    const fl_index n = dims[0], c = dims[1], s = dims[2];

    fl_ce_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.c = c;
    a.s = s;
    a.simd = simd;
    a.nthreads = 1;
    a.target_kind = kind;
    int moderate = 1;

    /* ---- logits ------------------------------------------------------------------------------ */
    fl_index xst[3];
    fz_strides(&in, 3, dims, xst, 1);
    fz_arr *x = fz_float_array(&in, 3, dims, xst, es, FZ_ANY, &moderate, NULL);
    a.x = x->base;
    a.x_sn = xst[0];
    a.x_sc = xst[1];
    a.x_ss = xst[2];

    /* ---- targets -------------------------------------------------------------------------------- */
    fz_arr *t = NULL;
    int t_is_x = 0;
    fl_index ignore = -100;
    {
        static const fl_index ig[] = {-100, -1, 0, 1, 2, INT64_MIN, INT64_MAX};
        const uint8_t b = fz_u8(&in) % 10;
        ignore = b < 7 ? ig[b] : b == 7 ? c - 1 : b == 8 ? c : (fl_index)(int8_t)fz_u8(&in);
        if (prob && ignore >= 0) /* the .pyx rejects ignore_index >= 0 with probabilities */
            ignore = -100;
    }
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
        a.t_sn = t->st[0];
        a.t_sc = t->st[1];
        a.t_ss = t->st[2];
    } else {
        const fl_index td[2] = {n, s};
        fl_index tst[2];
        fz_strides(&in, 2, td, tst, 1);
        const int tes = kind == FL_TARGET_I64 ? 8 : 4;
        uint8_t gap[8];
        memset(gap, 0x55, sizeof gap); /* a huge class index */
        t = fz_alloc(2, td, tst, tes, gap);
        for (fl_index i = 0; i < n; i++) {
            for (fl_index j = 0; j < s; j++) {
                const uint8_t b = fz_u8(&in);
                int64_t v;
                if (b < 200)
                    v = c > 0 ? (int64_t)(fz_u8(&in) % c) : ignore;
                else if (b < 245)
                    v = ignore;
                else { /* a bad target: the check must catch it */
                    static const int64_t bad[] = {-1, INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX};
                    v = b % 2 ? c : bad[b % 5];
                }
                char *p = t->base + (i * tst[0] + j * tst[1]) * tes;
                if (tes == 8) {
                    memcpy(p, &v, 8);
                } else {
                    const int32_t v32 = (int32_t)v;
                    memcpy(p, &v32, 4);
                }
            }
        }
        a.t_sn = tst[0];
        a.t_ss = tst[1];
    }
    a.target = t->base;

    /* ---- weight (c contiguous elements) and its total, as the .pyx sums it ---------------------- */
    fz_arr *w = NULL;
    double weight_total = (double)c;
    if (fz_chance(&in, 100)) {
        const fl_index wd[1] = {c}, wst[1] = {1};
        w = fz_float_array(&in, 1, wd, wst, es, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &moderate, NULL);
        weight_total = 0.0;
        for (fl_index k = 0; k < c; k++)
            weight_total += es == 4 ? (double)((const float *)w->base)[k] : ((const double *)w->base)[k];
        a.weight = w->base;
    }
    a.weight_total = weight_total;

    /* ---- options ------------------------------------------------------------------------------ */
    {
        static const double eps[] = {0.0, 0.0, 0.0, 0.1, 0.5, 1.0};
        const uint8_t b = fz_u8(&in) % 7;
        a.label_smoothing = b < 6 ? eps[b] : (double)fz_u8(&in) / 255.0;
    }
    const int red = fz_u8(&in) % 3; /* 0 none, 1 mean, 2 sum */
    const int want_grad = fz_chance(&in, 160);
    double go_scalar = 1.0;
    if (want_grad && fz_chance(&in, 100)) {
        go_scalar = fz_scalar(&in, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, 8);
        moderate &= fz_is_moderate(go_scalar);
    }
    fz_arr *go = NULL;
    if (want_grad && red == 0 && fz_chance(&in, 128)) {
        const fl_index gd[2] = {n, s};
        fl_index gst[2];
        fz_strides(&in, 2, gd, gst, 1);
        go = fz_float_array(&in, 2, gd, gst, es, FZ_ANY, &moderate, NULL);
        a.grad_out = go->base;
        a.go_sn = gst[0];
        a.go_ss = gst[1];
    }
    fz_arr *loss = NULL;
    if (red == 0) {
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
        a.g_sn = g->st[0];
        a.g_sc = g->st[1];
        a.g_ss = g->st[2];
    }

    /* ---- the target check, then the kernel (as _check_and_run in the .pyx) --------------------- */
    double kept = (double)(n * s);
    if (!prob) {
        int64_t bad_value = 0;
        const fl_index bad = es == 4 ? fl_ce_check_targets_f32(&a, &kept, &bad_value)
                                     : fl_ce_check_targets_f64(&a, &kept, &bad_value);
        if (bad >= 0) {
            if (bad >= n * s)
                FZ_FAIL("bad target position %lld outside [0, %lld)", (long long)bad, (long long)(n * s));
            fz_free_all();
            return 0;
        }
    }
    a.scale = red == 1 ? (kept != 0.0 ? go_scalar / kept : NAN) : go_scalar;

    fz_snap sx = fz_snapshot(x), st = fz_snapshot(t);
    fz_snap sw = {NULL, NULL}, sgo = {NULL, NULL};
    if (w)
        sw = fz_snapshot(w);
    if (go)
        sgo = fz_snapshot(go);
    const ce_result r = run(&a, es);
    if (r.status != FL_OK)
        FZ_FAIL("status %d", r.status);
    fz_check_unchanged(&sx, "x");
    fz_check_unchanged(&st, "target");
    if (w)
        fz_check_unchanged(&sw, "weight");
    if (go)
        fz_check_unchanged(&sgo, "grad_out");

    /* moderate finite data: every result finite (NaN: an element never written, or garbage) */
    if (moderate && c > 0 && isfinite(a.scale) && isfinite(weight_total)) {
        if (!isfinite(r.nll) || !isfinite(r.smooth))
            FZ_FAIL("non-finite sums %g %g from finite data", r.nll, r.smooth);
        if (loss && fz_count_nonfinite(loss))
            FZ_FAIL("%lld loss elements not finite", (long long)fz_count_nonfinite(loss));
        if (g && fz_count_nonfinite(g))
            FZ_FAIL("%lld gradient elements not finite", (long long)fz_count_nonfinite(g));
    }

    if (in_place) { /* out=input: the same call with the gradient over the logits */
        fz_arr *loss2 = NULL;
        if (loss) {
            loss2 = fz_output(1, loss->dims, loss->st, es);
            a.loss = loss2->base;
        }
        a.grad = x->base;
        const ce_result r2 = run(&a, es);
        if (r2.status != FL_OK || !fz_same(r.nll, r2.nll) || !fz_same(r.smooth, r2.smooth))
            FZ_FAIL("in place: sums %g %g, separate gradient: %g %g", r2.nll, r2.smooth, r.nll, r.smooth);
        if (loss && fz_count_diff(loss, loss2))
            FZ_FAIL("in place: %lld loss elements differ", (long long)fz_count_diff(loss, loss2));
        if (fz_count_diff(x, g))
            FZ_FAIL("in place: %lld gradient elements differ", (long long)fz_count_diff(x, g));
    }
    fz_free_all();
    return 0;
}
