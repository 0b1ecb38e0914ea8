/*
 * Elementwise regression losses over input x and target y broadcast together to one shape
 * (the broadcast is expressed by zero strides; the Cython layer merges axes first, so the
 * common case -- same shape, contiguous -- arrives as one axis of stride 1).
 *
 * Per element, with d = x - y, z = |d|, p the loss parameter (beta / delta) and s the
 * upstream factor (grad_output times the reduction's scale):
 *   mse        loss = d^2                                   grad = 2 d s
 *   l1         loss = z                                     grad = sign(d) s  (0 for d = 0 or nan)
 *   smooth_l1  loss = z < p ? 0.5 z^2 / p : z - 0.5 p       grad = d >= p ? s : d <= -p ? -s : d s / p
 *   huber      loss = z < p ? 0.5 z^2 : p (z - 0.5 p)       grad = d >= p ? p s : d <= -p ? -p s : d s
 * (smooth_l1 with p == 0 is l1, which the caller selects; huber needs p > 0.)
 * The losses are summed in double over fixed blocks of FL_BLOCK_ELEMENTS elements of the
 * C-order flat index, the block sums combined in block order: results do not depend on the
 * thread count.
 */
#ifndef FASTLOSS_REGRESSION_H
#define FASTLOSS_REGRESSION_H

#include "fastloss.h"

#define FL_REG_MSE 0
#define FL_REG_L1 1
#define FL_REG_SMOOTH_L1 2
#define FL_REG_HUBER 3

#define FL_REG_MAXDIM 64

/* an iteration shape, or an operand's element strides along it (0: broadcast) */
typedef fl_index fl_reg_dims[FL_REG_MAXDIM];

typedef struct fl_reg_args {
    fl_call call;
    int kind;
    double param; /* beta (smooth_l1) or delta (huber) */
    const void *x;
    const void *y;
    /* upstream gradient per element (reduction none; times call.grad_scale), or
     * call.grad_scale alone when NULL */
    const void *grad_out;
    /* outputs, each NULL when not wanted: the gradient (may be x or y exactly) and the
     * per-element losses */
    void *grad;
    void *loss;
    /* the iteration shape (C order, ndim axes) and each operand's element strides along it */
    int ndim;
    fl_reg_dims shape, xs, ys, gos, gs, ls;
} fl_reg_args;

/* The entry point: kernel and reduction ("mean": over the element count, NaN for none).
 * FL_OK or FL_ERR_NOMEM. */
int fl_regression(fl_call *call); /* call = &args.call of an fl_reg_args */
int fl_regression_kernels(int simd, const char **names, int max);

#endif /* FASTLOSS_REGRESSION_H */
