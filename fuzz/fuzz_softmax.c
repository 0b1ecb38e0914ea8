/*
 * libFuzzer harness: fl_softmax (csrc/softmax.h), forward and backward, log and not.
 *
 * The (n, c, s) view as _softmax.pyx builds it (never n > 1 with s == 1: that is viewed as
 * (1, c, n)), strides of any sign, padded, permuted, 0 for the read-only operands, the
 * backward's y possibly the same array as its x (grad_output=output), and the result: a
 * separate array of any layout, or out=x / out=y exactly (in place).
 *
 * Checks: ASan/UBSan, inputs unchanged, every output element written and finite for moderate
 * finite data (c > 0), and in place bitwise identical to a separate output of the same
 * layout. The dtype: float32, float64, bfloat16 or float16; for the half dtypes with moderate
 * finite data, instead of the finiteness check, every output element against a double
 * reference from the upcast inputs (sm_half_check), and the padding of the output unwritten.
 */
#include "fuzz_common.h"
#include "softmax.h"

static int run(fl_softmax_args *a) { return fl_softmax(&a->call); }

/* The half dtypes, moderate finite data, c > 0: the formulas of softmax.h in double from the
 * upcast inputs (x: the input, or the upstream gradient of the backward; y: the forward
 * output). */
static void sm_half_check(const fl_softmax_args *a, const fz_arr *x, const fz_arr *y, const fz_arr *o)
{
    const fl_index c = a->c;
    const double lfloor = (double)c * 1e-10; /* a log(sum) in double: see fuzz_cross_entropy.c */
#define X(k) fz_at(x, i * a->xv.sn + (k) * a->xv.sc + j * a->xv.ss)
#define Y(k) fz_at(y, i * a->yv.sn + (k) * a->yv.sc + j * a->yv.ss)
#define O(k) (i * a->ov.sn + (k) * a->ov.sc + j * a->ov.ss)
    for (fl_index i = 0; i < a->n; i++)
        for (fl_index j = 0; j < a->s; j++) {
            if (!a->backward) {
                double m = -INFINITY, count = 0.0, others = 0.0;
                for (fl_index k = 0; k < c; k++)
                    m = X(k) > m ? X(k) : m;
                for (fl_index k = 0; k < c; k++) {
                    if (X(k) < m)
                        others += exp(X(k) - m);
                    else
                        count += 1.0;
                }
                const double sum = count + others, ls = fz_logsum(count, others);
                for (fl_index k = 0; k < c; k++) {
                    if (a->log) /* (x_k - m) - log(sum) */
                        fz_expect(o, O(k), (X(k) - m) - ls, (m - X(k)) + ls + lfloor, "log_softmax", i, k, j);
                    else /* exp(x_k - m) / sum */
                        fz_expect(o, O(k), exp(X(k) - m) / sum, exp(X(k) - m) / sum, "softmax", i, k, j);
                }
            } else if (a->log) { /* g_k - exp(y_k) sum_j g_j */
                double sg = 0.0, sgmag = 0.0;
                for (fl_index k = 0; k < c; k++) {
                    sg += X(k);
                    sgmag += fabs(X(k));
                }
                for (fl_index k = 0; k < c; k++)
                    fz_expect(o, O(k), X(k) - exp(Y(k)) * sg, fabs(X(k)) + exp(Y(k)) * sgmag, "log_softmax_backward", i,
                              k, j);
            } else { /* y_k (g_k - sum_j g_j y_j) */
                double sgy = 0.0, sgymag = 0.0;
                for (fl_index k = 0; k < c; k++) {
                    sgy += X(k) * Y(k);
                    sgymag += fabs(X(k) * Y(k));
                }
                for (fl_index k = 0; k < c; k++)
                    fz_expect(o, O(k), Y(k) * (X(k) - sgy), fabs(Y(k)) * (fabs(X(k)) + sgymag), "softmax_backward", i, k,
                              j);
            }
        }
#undef X
#undef Y
#undef O
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const uint8_t mode = fz_u8(&in);
    const int dt = fz_dtype(mode), half = fz_is_half(dt); /* bit 7: a half dtype */
    const int log = (mode >> 1) & 1, backward = (mode >> 2) & 1;

    fl_index dims[3];
    dims[0] = fz_dim(&in);
    dims[1] = fz_dim(&in);
    dims[2] = fz_dim(&in);
    fz_cap(dims, 3, 1 << 16);
    if (dims[2] == 1) /* the .pyx swaps (n, c, 1) to (1, c, n) */
        dims[0] = 1;

    fl_softmax_args a;
    memset(&a, 0, sizeof a);
    a.n = dims[0];
    a.c = dims[1];
    a.s = dims[2];
    a.log = log;
    a.backward = backward;
    a.call.dtype = dt;
    a.call.simd = fz_simd(&in);
    a.call.nthreads = 1;
    int moderate = 1;

    fl_index xst[3];
    fz_strides(&in, 3, dims, xst, 1);
    fz_arr *x = fz_float_array(&in, 3, dims, xst, dt, FZ_ANY, &moderate, NULL);
    fz_arr *y = NULL;
    if (backward) {
        if (fz_chance(&in, 30)) {
            y = x; /* softmax_backward(g, g) */
        } else {
            fl_index yst[3];
            fz_strides(&in, 3, dims, yst, 1);
            y = fz_float_array(&in, 3, dims, yst, dt, FZ_ANY, &moderate, NULL);
        }
    }
    const int x_ok = xst[0] && xst[1] && xst[2];
    const int y_ok = y && y->st[0] && y->st[1] && y->st[2];
    /* 0: separate output; 1: out = x; 2: out = y */
    int alias = 0;
    const uint8_t b = fz_u8(&in) % 4;
    if (b == 1 && x_ok)
        alias = 1;
    else if (b == 2 && y_ok)
        alias = 2;
    fz_arr *aliased = alias == 1 ? x : alias == 2 ? y : NULL;
    fz_arr *o;
    if (aliased) {
        o = fz_output(3, dims, aliased->st, dt); /* first a separate output of its layout */
    } else {
        fl_index ost[3];
        fz_strides(&in, 3, dims, ost, 0);
        o = fz_output(3, dims, ost, dt);
    }
    a.x = x->base;
    a.xv.sn = xst[0];
    a.xv.sc = xst[1];
    a.xv.ss = xst[2];
    if (y) {
        a.y = y->base;
        a.yv.sn = y->st[0];
        a.yv.sc = y->st[1];
        a.yv.ss = y->st[2];
    }
    a.out = o->base;
    a.ov.sn = o->st[0];
    a.ov.sc = o->st[1];
    a.ov.ss = o->st[2];

    fz_snap sx = fz_snapshot(x), sy = {NULL, NULL};
    if (y && y != x)
        sy = fz_snapshot(y);
    if (run(&a) != FL_OK)
        FZ_FAIL("status not FL_OK");
    fz_check_unchanged(&sx, "x");
    if (y && y != x)
        fz_check_unchanged(&sy, "y");
    if (half) {
        fz_check_gaps(o, "out");
        if (moderate && a.c > 0)
            sm_half_check(&a, x, y, o);
    } else if (moderate && a.c > 0 && fz_count_nonfinite(o))
        FZ_FAIL("%lld output elements not finite from finite data", (long long)fz_count_nonfinite(o));
    if (!backward && moderate && a.c > 0) {
        /* forward bounds: softmax in [0, 1], log_softmax <= 0 (small slack for rounding) */
        for (fl_index i = 0; i < a.n; i++)
            for (fl_index j = 0; j < a.s; j++)
                for (fl_index k = 0; k < a.c; k++) {
                    const double v = fz_at(o, i * a.ov.sn + k * a.ov.sc + j * a.ov.ss);
                    if (log ? !(v <= 1e-6) : !(v >= 0.0 && v <= 1.0 + 1e-6))
                        FZ_FAIL("%s output %g out of range", log ? "log_softmax" : "softmax", v);
                }
    }

    if (aliased) {
        a.out = aliased->base;
        if (run(&a) != FL_OK)
            FZ_FAIL("status not FL_OK");
        if (fz_count_diff(aliased, o))
            FZ_FAIL("in place (out=%s): %lld elements differ from a separate output",
                    alias == 1 ? "x" : "y", (long long)fz_count_diff(aliased, o));
        if (half)
            fz_check_gaps(aliased, "out (in place)");
    }
    fz_free_all();
    return 0;
}
