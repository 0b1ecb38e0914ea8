/*
 * Softmax and log-softmax along one axis, forward and backward, of an array viewed as
 * (n, c, s): n outer positions (the axes before the softmax axis, merged), c entries along
 * the softmax axis, s inner positions (the axes after it, merged). A position is one
 * (outer, inner) pair; each position is one independent softmax over its c entries.
 *
 * Per position, with m = max_k x_k and sum = sum_k exp(x_k - m) (accumulated in double,
 * its log taken in double):
 *   softmax:              y_k = exp(x_k - m) / sum
 *   log_softmax:          y_k = (x_k - m) - log(sum)
 * Backward, g the upstream gradient and y the forward output:
 *   softmax_backward:     gi_k = y_k (g_k - sum_j g_j y_j)
 *   log_softmax_backward: gi_k = g_k - exp(y_k) sum_j g_j
 * A NaN anywhere in a position, a +inf, or a position of all -inf gives NaN at every entry
 * of that position (x - m is NaN there), as torch does.
 *
 * No reduction crosses positions, so blocks of positions are independent: results are
 * bitwise identical for any thread count.
 */
#ifndef FASTLOSS_SOFTMAX_H
#define FASTLOSS_SOFTMAX_H

#include "fastloss.h"

typedef struct fl_softmax_args {
    fl_call call; /* reduction, grad_scale and value unused */
    fl_index n, c, s;
    int log;      /* 1: log-softmax, 0: softmax */
    int backward; /* 1: the backward pass (x = upstream gradient, y = forward output) */
    /* forward: x = the input; backward: x = the upstream gradient, y = the forward output.
     * Strides in elements. */
    const void *x;
    fl_view xv;
    const void *y;
    fl_view yv;
    /* result (may be x or y itself, exactly) */
    void *out;
    fl_view ov;
} fl_softmax_args;

/* The entry point, forward or backward, log or not: FL_OK (it cannot fail). */
int fl_softmax(fl_call *call); /* call = &args.call of an fl_softmax_args */
int fl_softmax_kernels(int simd, const char **names, int max);

#endif /* FASTLOSS_SOFTMAX_H */
