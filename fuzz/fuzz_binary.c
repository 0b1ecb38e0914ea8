/*
 * libFuzzer harness: fl_binary (csrc/binary.h): binary cross-entropy, BCE with logits (weight,
 * pos_weight), kl_div and kl_div with log targets, "batchmean" included.
 *
 * As _binary.pyx calls it: a (rows, cols) view, cols >= 2 or 0 (size-1 axes are dropped),
 * rows == 1 only as the padding axis (stride 0 for every operand), one element as (1, 1)
 * with all strides 0; x, y, w, pw, go with any strides (0 where NumPy broadcasts); y maybe the
 * same array as x; the gradient a separate array of any layout or x itself (out=input); the
 * per-element loss for reduction "none". For BCE the entry point's domain check must report
 * exactly the inputs a scan finds outside [0, 1], with nothing written.
 *
 * Checks: ASan/UBSan, the domain check's answer (verified by a scan), inputs unchanged,
 * finite results and every output element written for moderate data in the loss's domain,
 * in place bitwise identical to a separate gradient of the same layout. The half dtypes
 * (bfloat16, float16: 1/8 of the inputs, every operand 16-bit) take the same checks (float16
 * results may overflow to +-inf, never NaN), and their outputs' padding must stay unwritten.
 */
#include "binary.h"
#include "fuzz_common.h"

static int run(void *a) { return fl_binary(&((fl_bin_args *)a)->call); }

typedef struct {
    const fz_arr *a;
    int bad;
} unit_ctx;

static void unit_elem(void *vctx, char *elem)
{
    unit_ctx *c = (unit_ctx *)vctx;
    const double v = fz_get(c->a, elem);
    c->bad |= !(v >= 0.0 && v <= 1.0);
}

static int all_unit(const fz_arr *a)
{
    unit_ctx c = {a, 0};
    fz_each(a, unit_elem, &c);
    return !c.bad;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const uint8_t mode = fz_u8(&in);
    /* bits 5-7 all set: a half dtype (bit 0: bfloat16 / float16), else as before */
    const int half = (mode & 0xE0) == 0xE0;
    const int dt = half ? (mode & 1 ? FL_DTYPE_F16 : FL_DTYPE_BF16) : mode & 1 ? FL_DTYPE_F64 : FL_DTYPE_F32;
    const int kind = (mode >> 1) & 3; /* FL_BIN_BCE, _BCE_LOGITS, _KL, _KL_LOG */

    fl_bin_args a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.call.simd = fz_simd(&in);

    fl_index dims[2];
    dims[1] = fz_dim(&in);
    const int one = dims[1] == 1; /* a single element: (1, 1), strides 0 */
    const int pad = one || fz_chance(&in, 90);
    dims[0] = pad ? 1 : fz_dim(&in);
    fz_cap(dims, 2, 1 << 16);
    if (dims[1] == 1 && !one)
        dims[1] = 2;
    const int row_zero = dims[0] == 1; /* the padding axis: stride 0 everywhere */
    a.rows = dims[0];
    a.cols = dims[1];

    int moderate = 1, y_nonneg = 1;
    const int xdom = kind == FL_BIN_BCE ? FZ_UNIT : FZ_ANY;
    fl_index st[2];
#define STRIDES(zero_ok)                                                                      \
    do {                                                                                      \
        fz_strides(&in, 2, dims, st, (zero_ok));                                              \
        if (row_zero)                                                                         \
            st[0] = 0;                                                                        \
        if (one)                                                                              \
            st[1] = 0;                                                                        \
    } while (0)
    STRIDES(1);
    fz_arr *x = fz_float_array(&in, 2, dims, st, dt, xdom, &moderate, NULL);
    fz_arr *y;
    if (fz_chance(&in, 20)) {
        y = x; /* the same array as input and target */
        y_nonneg = 0;
    } else {
        STRIDES(1);
        y = fz_float_array(&in, 2, dims, st, dt, xdom, &moderate, &y_nonneg);
    }
    fz_arr *w = NULL, *pw = NULL, *go = NULL, *loss = NULL, *g = NULL;
    if (kind <= FL_BIN_BCE_LOGITS && fz_chance(&in, 90)) {
        STRIDES(1);
        w = fz_float_array(&in, 2, dims, st, dt, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &moderate, NULL);
    }
    if (kind == FL_BIN_BCE_LOGITS && fz_chance(&in, 90)) {
        STRIDES(1);
        pw = fz_float_array(&in, 2, dims, st, dt, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &moderate, NULL);
    }
    int want_grad;
    fz_call_options(&in, &a.call, dt, &want_grad, &moderate);
    if (kind >= FL_BIN_KL && a.call.reduction == FL_REDUCE_SUM && fz_chance(&in, 128)) {
        a.call.reduction = FL_REDUCE_BATCHMEAN; /* kl_div's "batchmean": over input.shape[0] */
        a.call.batch = (double)fz_range(&in, 0, 5);
    }
    const int red = a.call.reduction;
    if (want_grad && red == FL_REDUCE_NONE && fz_chance(&in, 128)) {
        STRIDES(1);
        go = fz_float_array(&in, 2, dims, st, dt, FZ_ANY, &moderate, NULL);
    }
    if (red == FL_REDUCE_NONE) {
        STRIDES(0);
        loss = fz_output(2, dims, st, dt);
    }
    int in_place = 0;
    if (want_grad) {
        in_place = y != x && (one || (x->st[1] != 0 && (row_zero || x->st[0] != 0))) && fz_chance(&in, 80);
        if (in_place) {
            g = fz_output(2, dims, x->st, dt);
        } else {
            STRIDES(0);
            g = fz_output(2, dims, st, dt);
        }
    }
    const fl_index numel = dims[0] * dims[1];

#define SET(field, strides, arr)                                                              \
    do {                                                                                      \
        a.field = (arr) ? (arr)->base : NULL;                                                 \
        a.strides[0] = (arr) ? (arr)->st[0] : 0;                                              \
        a.strides[1] = (arr) ? (arr)->st[1] : 0;                                              \
    } while (0)
    SET(x, xs, x);
    SET(y, ys, y);
    SET(w, ws, w);
    SET(pw, pws, pw);
    SET(go, gos, go);
    SET(grad, gs, g);
    SET(loss, ls, loss);

    fz_snap sx = fz_snapshot(x), sy = {NULL, NULL}, sw = {NULL, NULL}, spw = {NULL, NULL}, sgo = {NULL, NULL};
    fz_snap sg = {NULL, NULL}, sl = {NULL, NULL};
    if (y != x)
        sy = fz_snapshot(y);
    if (w)
        sw = fz_snapshot(w);
    if (pw)
        spw = fz_snapshot(pw);
    if (go)
        sgo = fz_snapshot(go);
    if (g)
        sg = fz_snapshot(g);
    if (loss)
        sl = fz_snapshot(loss);
    const int status = run(&a);
    fz_check_unchanged(&sx, "x");
    if (y != x)
        fz_check_unchanged(&sy, "y");
    if (w)
        fz_check_unchanged(&sw, "weight");
    if (pw)
        fz_check_unchanged(&spw, "pos_weight");
    if (go)
        fz_check_unchanged(&sgo, "grad_out");
    const int valid = kind != FL_BIN_BCE || (all_unit(x) && all_unit(y));
    if ((status == FL_ERR_DOMAIN) == valid)
        FZ_FAIL("status %d (operand %d), the scan says %s", status, a.call.bad_operand, valid ? "valid" : "invalid");
    if (status == FL_ERR_DOMAIN) { /* nothing written */
        if (a.call.bad_operand == 0 ? all_unit(x) : all_unit(y))
            FZ_FAIL("domain error blames operand %d, which is valid", a.call.bad_operand);
        if (g)
            fz_check_unchanged(&sg, "gradient (domain error)");
        if (loss)
            fz_check_unchanged(&sl, "loss (domain error)");
        fz_free_all();
        return 0;
    }
    free(sg.copy);
    free(sl.copy);
    if (status != FL_OK)
        FZ_FAIL("status %d", status);
    if ((a.call.kernel == NULL) != (numel == 0))
        FZ_FAIL("kernel %s for %lld elements", a.call.kernel ? a.call.kernel : "(none)", (long long)numel);

    /* kl_div of a negative (or NaN) target is NaN by definition; so is a mean of nothing
     * and a batchmean over 0 */
    const int in_domain = kind == FL_BIN_KL ? y_nonneg : 1;
    const int finite_scale = (red != FL_REDUCE_MEAN || numel > 0) && (red != FL_REDUCE_BATCHMEAN || a.call.batch > 0);
    if (moderate && in_domain && finite_scale)
        fz_check_finite(&a.call, loss, g);
    if (in_place)
        fz_check_in_place(run, &a, &a.call, &a.loss, &a.grad, loss, g, x);
    fz_free_all();
    return 0;
}
