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

#define FL_TARGET_I32 0  /* class indices, int32 */
#define FL_TARGET_I64 1  /* class indices, int64 */
#define FL_TARGET_PROB 2 /* class probabilities, same dtype and shape as x */

typedef struct fl_ce_args {
    fl_index n, c, s;
    /* logits; strides in elements */
    const void *x;
    fl_index x_sn, x_sc, x_ss;
    /* targets: indices (n, s) or probabilities (n, c, s) */
    int target_kind;
    const void *target;
    fl_index t_sn, t_sc, t_ss;
    /* class weights: NULL or c contiguous elements of x's dtype; weight_total = their sum */
    const void *weight;
    double weight_total;
    fl_index ignore_index;
    double label_smoothing;
    /* upstream gradient per position: grad_out[i, j] * scale, or just scale when NULL */
    const void *grad_out;
    fl_index go_sn, go_ss;
    double scale;
    /* outputs: the gradient (NULL: forward only; may be x itself) and per-position losses
     * (NULL, or n * s contiguous elements) */
    void *grad;
    fl_index g_sn, g_sc, g_ss;
    void *loss;
    /* per-position log-sum-exp, n * s contiguous doubles in position order (p = i * s + j):
     * lse_out (NULL, or written: lse of each kept position, 0 for ignored ones) and lse_in
     * (NULL, or the lse_out of an earlier call on the same x). With lse_in and grad, the row
     * layout computes the gradient in one pass per row, skipping the max and exp-sum passes;
     * the loss results (loss, nll_sum, smooth_sum) are then not computed. Other layouts
     * ignore lse_in. */
    double *lse_out;
    const double *lse_in;
    /* execution */
    int simd;
    int nthreads;
    /* results, summed over positions in a fixed order: the loss is
     * (1 - eps) * nll_sum + eps / c * smooth_sum, reduced as torch reduces the two terms */
    double nll_sum;    /* w_t (lse - x_t) (index targets) or the whole loss (probabilities) */
    double smooth_sum; /* sum_k w_k (lse - x_k), kept positions, 0 when eps == 0 */
    int threads_used;
} fl_ce_args;

/* Checks every index target before anything is written: returns -1 when each is
 * ignore_index or in [0, c), else the first bad position (C order) with its value in
 * *bad_value. Also sums the weights of the kept targets (in position order) into
 * *kept_weight (their count when there are no weights). */
fl_index fl_ce_check_targets_f32(const fl_ce_args *a, double *kept_weight, int64_t *bad_value);
fl_index fl_ce_check_targets_f64(const fl_ce_args *a, double *kept_weight, int64_t *bad_value);

/* The kernels: FL_OK or FL_ERR_NOMEM. Targets must have been checked. */
int fl_cross_entropy_f32(fl_ce_args *a);
int fl_cross_entropy_f64(fl_ce_args *a);

#endif /* FASTLOSS_CROSS_ENTROPY_H */
