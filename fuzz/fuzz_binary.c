/*
 * libFuzzer harness: fl_bin_check_unit_* and fl_binary_* (csrc/binary.h): binary cross-entropy,
 * BCE with logits (weight, pos_weight), kl_div and kl_div with log targets.
 *
 * As _binary.pyx calls it: a (rows, cols) view, cols >= 2 or 0 (size-1 axes are dropped),
 * rows == 1 only as the padding axis (stride 0 for every operand), one element as (1, 1)
 * with all strides 0; x, y, w, pw, go with any strides (0 where NumPy broadcasts); y maybe the
 * same array as x; the gradient a separate array of any layout or x itself (out=input); the
 * per-element loss for reduction "none". For BCE the domain check runs first and the kernel
 * is skipped when it reports a bad element, as the .pyx does.
 *
 * Checks: ASan/UBSan, the domain check's answer (verified by a scan), inputs unchanged,
 * finite results and every output element written for moderate data in the loss's domain,
 * in place bitwise identical to a separate gradient of the same layout.
 */
#include "binary.h"
#include "fuzz_common.h"

static int run(fl_bin_args *a, int es) { return es == 4 ? fl_binary_f32(a) : fl_binary_f64(a); }

typedef struct {
    int es;
    int bad;
} unit_ctx;

static void unit_elem(void *vctx, char *elem)
{
    unit_ctx *c = (unit_ctx *)vctx;
    double v;
    if (c->es == 4) {
        float f;
        memcpy(&f, elem, 4);
        v = f;
    } else {
        memcpy(&v, elem, 8);
    }
    c->bad |= !(v >= 0.0 && v <= 1.0);
}

static int all_unit(const fz_arr *a)
{
    unit_ctx c = {a->es, 0};
    fz_each(a, unit_elem, &c);
    return !c.bad;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in in;
    fz_init(&in, data, size);
    const uint8_t mode = fz_u8(&in);
    const int es = mode & 1 ? 8 : 4;
    const int kind = (mode >> 1) & 3; /* FL_BIN_BCE, _BCE_LOGITS, _KL, _KL_LOG */

    fl_bin_args a;
    memset(&a, 0, sizeof a);
    a.kind = kind;
    a.simd = fz_simd(&in);
    a.nthreads = 1;

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
    fz_arr *x = fz_float_array(&in, 2, dims, st, es, xdom, &moderate, NULL);
    fz_arr *y;
    if (fz_chance(&in, 20)) {
        y = x; /* the same array as input and target */
        y_nonneg = 0;
    } else {
        STRIDES(1);
        y = fz_float_array(&in, 2, dims, st, es, xdom, &moderate, &y_nonneg);
    }
    fz_arr *w = NULL, *pw = NULL, *go = NULL, *loss = NULL, *g = NULL;
    if (kind <= FL_BIN_BCE_LOGITS && fz_chance(&in, 90)) {
        STRIDES(1);
        w = fz_float_array(&in, 2, dims, st, es, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &moderate, NULL);
    }
    if (kind == FL_BIN_BCE_LOGITS && fz_chance(&in, 90)) {
        STRIDES(1);
        pw = fz_float_array(&in, 2, dims, st, es, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, &moderate, NULL);
    }
    const int red = fz_u8(&in) % 3;
    const int want_grad = fz_chance(&in, 160);
    double go_scalar = 1.0;
    if (want_grad && fz_chance(&in, 100)) {
        go_scalar = fz_scalar(&in, fz_chance(&in, 200) ? FZ_MODERATE : FZ_ANY, 8);
        moderate &= fz_is_moderate(go_scalar);
    }
    if (want_grad && red == 0 && fz_chance(&in, 128)) {
        STRIDES(1);
        go = fz_float_array(&in, 2, dims, st, es, FZ_ANY, &moderate, NULL);
    }
    if (red == 0) {
        STRIDES(0);
        loss = fz_output(2, dims, st, es);
    }
    int in_place = 0;
    if (want_grad) {
        in_place = y != x && (one || (x->st[1] != 0 && (row_zero || x->st[0] != 0))) && fz_chance(&in, 80);
        if (in_place) {
            g = fz_output(2, dims, x->st, es);
        } else {
            STRIDES(0);
            g = fz_output(2, dims, st, es);
        }
    }
    const fl_index numel = dims[0] * dims[1];
    a.scale = red == 1 ? go_scalar / (double)(numel ? numel : 1) : go_scalar;

#define SET(field, arr)                                                                       \
    do {                                                                                      \
        a.field = (arr) ? (arr)->base : NULL;                                                 \
        a.field##_sr = (arr) ? (arr)->st[0] : 0;                                              \
        a.field##_sk = (arr) ? (arr)->st[1] : 0;                                              \
    } while (0)
    a.x = x->base;
    a.x_sr = x->st[0];
    a.x_sk = x->st[1];
    a.y = y->base;
    a.y_sr = y->st[0];
    a.y_sk = y->st[1];
    SET(w, w);
    SET(pw, pw);
    SET(go, go);
    a.grad = g ? g->base : NULL;
    a.g_sr = g ? g->st[0] : 0;
    a.g_sk = g ? g->st[1] : 0;
    a.loss = loss ? loss->base : NULL;
    a.l_sr = loss ? loss->st[0] : 0;
    a.l_sk = loss ? loss->st[1] : 0;

    if (kind == FL_BIN_BCE) {
        int which = 0;
        const fl_index bad = es == 4 ? fl_bin_check_unit_f32(&a, &which) : fl_bin_check_unit_f64(&a, &which);
        const int valid = all_unit(x) && all_unit(y);
        if (bad == -2)
            FZ_FAIL("domain check out of memory");
        if ((bad == -1) != valid)
            FZ_FAIL("domain check says %lld (which %d), the scan says %s", (long long)bad, which,
                    valid ? "valid" : "invalid");
        if (bad >= numel)
            FZ_FAIL("domain check position %lld outside [0, %lld)", (long long)bad, (long long)numel);
        if (bad >= 0) {
            fz_free_all();
            return 0;
        }
    }

    fz_snap sx = fz_snapshot(x), sy = {NULL, NULL}, sw = {NULL, NULL}, spw = {NULL, NULL}, sgo = {NULL, NULL};
    if (y != x)
        sy = fz_snapshot(y);
    if (w)
        sw = fz_snapshot(w);
    if (pw)
        spw = fz_snapshot(pw);
    if (go)
        sgo = fz_snapshot(go);
    if (run(&a, es) != FL_OK)
        FZ_FAIL("status not FL_OK");
    const double sum = a.sum;
    fz_check_unchanged(&sx, "x");
    if (y != x)
        fz_check_unchanged(&sy, "y");
    if (w)
        fz_check_unchanged(&sw, "weight");
    if (pw)
        fz_check_unchanged(&spw, "pos_weight");
    if (go)
        fz_check_unchanged(&sgo, "grad_out");

    /* kl_div of a negative (or NaN) target is NaN by definition */
    const int in_domain = kind == FL_BIN_KL ? y_nonneg : 1;
    if (moderate && in_domain && isfinite(a.scale)) {
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
            loss2 = fz_output(2, dims, loss->st, es);
            a.loss = loss2->base;
        }
        a.grad = x->base;
        if (run(&a, es) != FL_OK || !fz_same(sum, a.sum))
            FZ_FAIL("in place: loss sum %g, separate gradient: %g", a.sum, sum);
        if (loss && fz_count_diff(loss, loss2))
            FZ_FAIL("in place: %lld loss elements differ", (long long)fz_count_diff(loss, loss2));
        if (fz_count_diff(x, g))
            FZ_FAIL("in place: %lld gradient elements differ", (long long)fz_count_diff(x, g));
    }
    fz_free_all();
    return 0;
}
