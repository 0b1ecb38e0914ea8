/*
 * libFuzzer harness: fl_regression (csrc/regression.h): mse, l1, smooth_l1, huber.
 *
 * As _regression.pyx calls it: 1 to 8 axes of size >= 2 (the .pyx drops size-1 axes; one
 * element is ndim 1, shape 1, strides 0), never an empty shape (the .pyx skips the kernel),
 * smooth_l1's beta > 0 (beta 0 is l1) and huber's delta > 0, +inf included; x, y and
 * grad_out with any strides (0 where broadcast); x and y possibly the same array; the
 * gradient a separate array of any layout, or x or y exactly (out=input / out=target); the
 * per-element loss for reduction "none"; the reduction and upstream scalar as call options
 * (the entry point computes the scale and the reduced value, as for Python).
 *
 * Checks: ASan/UBSan, inputs unchanged, finite results and every output element written for
 * moderate finite data (and a parameter in [1e-3, 1e3]), in place bitwise identical to a
 * separate gradient of the same layout. The half dtypes (bfloat16, float16: 1/8 of the
 * inputs, every operand 16-bit) take the same checks (float16 results may overflow to
 * +-inf, never NaN), and their outputs' padding must stay unwritten.
 */
#include "fuzz_common.h"
#include "regression.h"

static int run(void *a) { return fl_regression(&((fl_reg_args *)a)->call); }

static void set_strides(fl_index *dst, const fz_arr *arr, int nd)
{
    for (int d = 0; d < nd; d++)
        dst[d] = arr ? arr->st[d] : 0;
}

static int no_zero_stride(const fz_arr *arr)
{
    for (int d = 0; d < arr->nd; d++)
        if (arr->st[d] == 0)
            return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const uint8_t mode = fz_u8(&in);
    /* bits 5-7 all set: a half dtype (bit 0: bfloat16 / float16), else as before */
    const int half = (mode & 0xE0) == 0xE0;
    const int dt = half ? (mode & 1 ? FL_DTYPE_F16 : FL_DTYPE_BF16) : mode & 1 ? FL_DTYPE_F64 : FL_DTYPE_F32;
    const int kind = (mode >> 1) & 3;

    fl_reg_args a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.call.simd = fz_simd(&in);
    int check_values = 1;
    if (kind == FL_REG_SMOOTH_L1 || kind == FL_REG_HUBER) {
        static const double params[] = {1.0, 0.5, 2.0, 1e-8, 1e-300, 1e30, INFINITY, 0.1, 3.0};
        const uint8_t b = fz_u8(&in) % 10;
        a.param = b < 9 ? params[b] : (double)(fz_u8(&in) + 1) / 16.0;
        check_values = a.param >= 1e-3 && a.param <= 1e3;
    }

    /* the iteration shape */
    fl_index dims[FZ_MAXDIM];
    int nd;
    const int one = fz_chance(&in, 8);
    if (one) {
        nd = 1;
        dims[0] = 1;
    } else {
        const uint8_t b = fz_u8(&in);
        nd = b < 200 ? 1 + b % 3 : 1 + b % FZ_MAXDIM;
        for (int d = 0; d < nd; d++) {
            dims[d] = fz_dim(&in);
            dims[d] = dims[d] < 2 ? 2 : dims[d];
        }
        fz_cap(dims, nd, 1 << 16);
        for (int d = 0; d < nd; d++)
            dims[d] = dims[d] < 2 ? 2 : dims[d]; /* at most 2**8 elements more */
    }
    a.ndim = nd;
    for (int d = 0; d < nd; d++)
        a.shape[d] = dims[d];

    int moderate = 1;
    fl_index st[FZ_MAXDIM];
    const fl_index zeros[FZ_MAXDIM] = {0};
    fz_strides(&in, nd, dims, st, 1);
    fz_arr *x = fz_float_array(&in, nd, dims, one ? zeros : st, dt, FZ_ANY, &moderate, NULL);
    fz_arr *y;
    if (fz_chance(&in, 20)) {
        y = x; /* mse_loss(a, a) */
    } else {
        fz_strides(&in, nd, dims, st, 1);
        y = fz_float_array(&in, nd, dims, one ? zeros : st, dt, FZ_ANY, &moderate, NULL);
    }
    int want_grad;
    fz_call_options(&in, &a.call, dt, &want_grad, &moderate);
    const int red = a.call.reduction;
    fz_arr *go = NULL;
    if (want_grad && red == FL_REDUCE_NONE && fz_chance(&in, 128)) {
        fz_strides(&in, nd, dims, st, 1);
        go = fz_float_array(&in, nd, dims, one ? zeros : st, dt, FZ_ANY, &moderate, NULL);
    }
    fz_arr *loss = NULL;
    if (red == FL_REDUCE_NONE) {
        fz_strides(&in, nd, dims, st, 0);
        loss = fz_output(nd, dims, one ? zeros : st, dt);
    }
    /* 0: separate gradient; 1: out = x; 2: out = y */
    int alias = 0;
    fz_arr *g = NULL, *aliased = NULL;
    if (want_grad) {
        const uint8_t b = fz_u8(&in) % 4;
        if (b == 1 && (one || no_zero_stride(x)))
            alias = 1;
        else if (b == 2 && y != x && (one || no_zero_stride(y)))
            alias = 2;
        aliased = alias == 1 ? x : alias == 2 ? y : NULL;
        if (aliased) {
            g = fz_output(nd, dims, aliased->st, dt);
        } else {
            fz_strides(&in, nd, dims, st, 0);
            g = fz_output(nd, dims, one ? zeros : st, dt);
        }
    }
    a.x = x->base;
    set_strides(a.xs, x, nd);
    a.y = y->base;
    set_strides(a.ys, y, nd);
    a.grad_out = go ? go->base : NULL;
    set_strides(a.gos, go, nd);
    a.grad = g ? g->base : NULL;
    set_strides(a.gs, g, nd);
    a.loss = loss ? loss->base : NULL;
    set_strides(a.ls, loss, nd);

    fz_snap sx = fz_snapshot(x), sy = {NULL, NULL}, sgo = {NULL, NULL};
    if (y != x)
        sy = fz_snapshot(y);
    if (go)
        sgo = fz_snapshot(go);
    if (run(&a) != FL_OK)
        FZ_FAIL("status not FL_OK");
    if (a.call.kernel == NULL)
        FZ_FAIL("no kernel ran for %lld elements", (long long)fz_numel(x));
    fz_check_unchanged(&sx, "x");
    if (y != x)
        fz_check_unchanged(&sy, "y");
    if (go)
        fz_check_unchanged(&sgo, "grad_out");
    if (moderate && check_values)
        fz_check_finite(&a.call, loss, g);
    if (aliased)
        fz_check_in_place(run, &a, &a.call, &a.loss, &a.grad, loss, g, aliased);
    fz_free_all();
    return 0;
}
