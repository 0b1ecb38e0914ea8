/*
 * libFuzzer harness: fl_nll_check_targets_* and fl_nll_loss_* (csrc/nll_loss.h).
 *
 * The (n, c, s) view as _nll_loss.pyx builds it ((C,): n = s = 1; (N, C): n = 1, s = N;
 * K-dim: n = N, s = S, never n > 1 with s == 1), int32/int64 targets of any strides,
 * weight, ignore_index, reduction (the loss array for "none"; the "mean" scale from the
 * check's kept weight), grad_output, and the gradient: none, a separate array of any
 * layout, or the input itself (out=input). The targets are checked first and the kernel is
 * skipped when one is bad, as the .pyx does.
 *
 * Checks: ASan/UBSan, inputs unchanged, finite results and every output element written for
 * moderate finite data, and out=input bitwise identical to a separate gradient of the same
 * layout (the loss must be read before the gradient overwrites the input).
 */
#include "fuzz_common.h"
#include "nll_loss.h"

static int run(fl_nll_args *a, int es) { return es == 4 ? fl_nll_loss_f32(a) : fl_nll_loss_f64(a); }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const int es = fz_u8(&in) & 1 ? 8 : 4;
    const int kind = fz_u8(&in) & 1 ? FL_NLL_TARGET_I64 : FL_NLL_TARGET_I32;

    fl_index dims[3];
    const uint8_t form = fz_u8(&in) % 4;
    dims[1] = fz_dim(&in);
    if (form == 0) {
        dims[0] = dims[2] = 1;
    } else if (form == 1) {
        dims[0] = 1;
        dims[2] = fz_dim(&in);
    } else {
        dims[0] = fz_dim(&in);
        dims[2] = fz_dim(&in);
    }
    fz_cap(dims, 3, 1 << 16);
    if (dims[2] == 1)
        dims[0] = 1;
    const fl_index n = dims[0], c = dims[1], s = dims[2];

    fl_nll_args a;
    memset(&a, 0, sizeof a);
    a.n = n;
    a.c = c;
    a.s = s;
    a.nthreads = 1;
    a.target_kind = kind;
    int moderate = 1;

    fl_index xst[3];
    fz_strides(&in, 3, dims, xst, 1);
    fz_arr *x = fz_float_array(&in, 3, dims, xst, es, FZ_ANY, &moderate, NULL);
    a.x = x->base;
    a.x_sn = xst[0];
    a.x_sc = xst[1];
    a.x_ss = xst[2];

    fl_index ignore;
    {
        static const fl_index ig[] = {-100, -1, 0, 1, 2, INT64_MIN, INT64_MAX};
        const uint8_t b = fz_u8(&in) % 10;
        ignore = b < 7 ? ig[b] : b == 7 ? c - 1 : b == 8 ? c : (fl_index)(int8_t)fz_u8(&in);
    }
    a.ignore_index = ignore;
    const fl_index td[2] = {n, s};
    fl_index tst[2];
    fz_strides(&in, 2, td, tst, 1);
    const int tes = kind == FL_NLL_TARGET_I64 ? 8 : 4;
    uint8_t gap[8];
    memset(gap, 0x55, sizeof gap);
    fz_arr *t = fz_alloc(2, td, tst, tes, gap);
    for (fl_index i = 0; i < n; i++) {
        for (fl_index j = 0; j < s; j++) {
            const uint8_t b = fz_u8(&in);
            int64_t v;
            if (b < 200)
                v = c > 0 ? (int64_t)(fz_u8(&in) % c) : ignore;
            else if (b < 245)
                v = ignore;
            else {
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
    a.target = t->base;
    a.t_sn = tst[0];
    a.t_ss = tst[1];

    fz_arr *w = NULL;
    if (fz_chance(&in, 100)) {
        const fl_index wd[1] = {c}, wst[1] = {1};
        w = fz_float_array(&in, 1, wd, wst, es, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &moderate, NULL);
        a.weight = w->base;
    }

    const int red = fz_u8(&in) % 3;
    const int want_grad = fz_chance(&in, 160);
    double go_scalar = 1.0;
    if (want_grad && fz_chance(&in, 100)) {
        go_scalar = fz_scalar(&in, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, 8);
        moderate &= fz_is_moderate(go_scalar);
    }
    fz_arr *go = NULL;
    if (want_grad && red == 0 && fz_chance(&in, 128)) {
        fl_index gst[2];
        fz_strides(&in, 2, td, gst, 1);
        go = fz_float_array(&in, 2, td, gst, es, FZ_ANY, &moderate, NULL);
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
        in_place = xst[0] != 0 && xst[1] != 0 && xst[2] != 0 && fz_chance(&in, 80);
        if (in_place) {
            g = fz_output(3, dims, xst, es);
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

    double kept = (double)(n * s);
    int64_t bad_value = 0;
    const fl_index bad = es == 4 ? fl_nll_check_targets_f32(&a, &kept, &bad_value)
                                 : fl_nll_check_targets_f64(&a, &kept, &bad_value);
    if (bad >= 0) {
        if (bad >= n * s)
            FZ_FAIL("bad target position %lld outside [0, %lld)", (long long)bad, (long long)(n * s));
        fz_free_all();
        return 0;
    }
    a.scale = red == 1 ? (kept != 0.0 ? go_scalar / kept : NAN) : go_scalar;

    fz_snap sx = fz_snapshot(x), st = fz_snapshot(t);
    fz_snap sw = {NULL, NULL}, sgo = {NULL, NULL};
    if (w)
        sw = fz_snapshot(w);
    if (go)
        sgo = fz_snapshot(go);
    const int status = run(&a, es);
    const double sum = a.loss_sum;
    if (status != FL_OK)
        FZ_FAIL("status %d", status);
    fz_check_unchanged(&sx, "x");
    fz_check_unchanged(&st, "target");
    if (w)
        fz_check_unchanged(&sw, "weight");
    if (go)
        fz_check_unchanged(&sgo, "grad_out");

    if (moderate && isfinite(a.scale)) {
        if (!isfinite(sum))
            FZ_FAIL("non-finite loss sum %g from finite data", sum);
        if (loss && fz_count_nonfinite(loss))
            FZ_FAIL("%lld loss elements not finite", (long long)fz_count_nonfinite(loss));
        if (g && fz_count_nonfinite(g))
            FZ_FAIL("%lld gradient elements not finite", (long long)fz_count_nonfinite(g));
    }

    if (in_place) {
        fz_arr *loss2 = NULL;
        if (loss) {
            loss2 = fz_output(1, loss->dims, loss->st, es);
            a.loss = loss2->base;
        }
        a.grad = x->base;
        if (run(&a, es) != FL_OK || !fz_same(sum, a.loss_sum))
            FZ_FAIL("in place: loss sum %g, separate gradient: %g", a.loss_sum, sum);
        if (loss && fz_count_diff(loss, loss2))
            FZ_FAIL("in place: %lld loss elements differ", (long long)fz_count_diff(loss, loss2));
        if (fz_count_diff(x, g))
            FZ_FAIL("in place: %lld gradient elements differ", (long long)fz_count_diff(x, g));
    }
    fz_free_all();
    return 0;
}
