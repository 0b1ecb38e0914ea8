/*
 * Cross-entropy over the class axis of logits viewed as (n, c, s): n batch items, c classes,
 * s positions per item (the product of d1..dk; 1 for (N, C) input). A position is one
 * (item, spatial index) pair, p = i * s + j; it has one target and one loss.
 *
 * Per position, with w the class weights (1 when absent), eps the label smoothing and
 * lse = log(sum_k exp(x_k)):
 *   index target t:  loss = (1 - eps) w_t (lse - x_t) + (eps / c) sum_k w_k (lse - x_k)
 *   probabilities y: loss = sum_k w_k y'_k (lse - x_k),  y'_k = (1 - eps) y_k + eps / c
 * and the gradient of sc * loss (sc: the upstream gradient times the reduction's scale):
 *   index target:    g_k = sc (p_k A - (1 - eps) w_t [k = t] - (eps / c) w_k),
 *                    A = (1 - eps) w_t + (eps / c) sum_k w_k
 *   probabilities:   g_k = sc (p_k sum_j w_j y'_j - w_k y'_k)
 * with p = softmax(x). lse is computed as max + log(sum exp(x - max)), the sum accumulated
 * and the log taken in double, and the nll term as (max - x_t) + log(sum), so confident rows
 * keep their precision in float32.
 */
#ifndef FASTLOSS_CROSS_ENTROPY_H
#define FASTLOSS_CROSS_ENTROPY_H

#include "fastloss.h"
#include "margin_cross_entropy.h"

/* target kinds: FL_TARGET_I32 / FL_TARGET_I64 (fastloss.h), or */
#define FL_TARGET_PROB 2 /* class probabilities, same dtype and shape as x */

typedef struct fl_ce_args {
    fl_call call; /* dtype, simd, nthreads, reduction, grad_scale in; value, kernel, ... out */
    fl_index n, c, s;
    /* logits; strides in elements */
    const void *x;
    fl_view xv;
    /* targets: indices (n, s) or probabilities (n, c, s) */
    int target_kind;
    const void *target;
    fl_view tv;
    /* class weights: NULL or c contiguous elements of x's dtype */
    const void *weight;
    fl_index ignore_index;
    double label_smoothing;
    /* upstream gradient per position (reduction none): grad_out[i, j] * call.grad_scale, or
     * call.grad_scale alone when NULL */
    const void *grad_out;
    fl_view gov; /* sc unused */
    /* outputs: the gradient (NULL: forward only; may be x itself) and per-position losses
     * (NULL, or n * s contiguous elements) */
    void *grad;
    fl_view gv;
    void *loss;
    /* per-position log-sum-exp, n * s contiguous doubles in position order (p = i * s + j):
     * lse_out (NULL, or written: lse of each kept position, 0 for ignored ones) and lse_in
     * (NULL, or the lse_out of an earlier call on the same x). With lse_in and grad, the row
     * layout computes the gradient in one pass per row, skipping the max and exp-sum passes;
     * the loss results (loss, call.value) are then not computed. Other layouts ignore
     * lse_in. */
    double *lse_out;
    const double *lse_in;
    /* NULL, or the margin of margin-softmax cross-entropy (margin_cross_entropy.h; index
     * targets only, x the cosines; lse_in is then ignored) */
    const fl_margin *margin;
    /* out (with margin): the number of kept positions whose modified target logit is their
     * top-1 (first index among equal maxima) */
    double hits;
} fl_ce_args;

/* The entry point: checks the index targets (FL_ERR_TARGET, nothing written), then runs the
 * kernel and reduces. "mean" divides by the kept targets' weight sum (index targets) or the
 * number of positions (probabilities). FL_OK, FL_ERR_TARGET or FL_ERR_NOMEM. */
int fl_cross_entropy(fl_call *call); /* call = &args.call of an fl_ce_args */

/* The kernel names of path simd's table row (see fl_kernel_names). */
int fl_cross_entropy_kernels(int simd, const char **names, int max);

#endif /* FASTLOSS_CROSS_ENTROPY_H */
