/*
 * Negative log-likelihood loss over the class axis of log-probabilities viewed as
 * (n, c, s): n batch items, c classes, s positions per item. A position p = i * s + j has one
 * class-index target t and, with w the class weights (1 when absent):
 *   loss = -w_t x_t            (0 when t == ignore_index)
 * and the gradient of sc * loss (sc: the upstream gradient times the reduction's scale) is
 *   g_k = -sc w_t [k == t]     (all zero at an ignored position)
 * The gradient does not depend on x. The loss sum is accumulated in double per fixed block
 * of positions (the shape alone decides the blocks) and the blocks are added in order, so
 * it is bitwise identical for any thread count.
 */
#ifndef FASTLOSS_NLL_LOSS_H
#define FASTLOSS_NLL_LOSS_H

#include "fastloss.h"

#define FL_NLL_TARGET_I32 0
#define FL_NLL_TARGET_I64 1

typedef struct fl_nll_args {
    fl_index n, c, s;
    /* log-probabilities; strides in elements */
    const void *x;
    fl_index x_sn, x_sc, x_ss;
    /* class-index targets (n, s), int32 or int64 */
    int target_kind;
    const void *target;
    fl_index t_sn, t_ss;
    /* class weights: NULL or c contiguous elements of x's dtype */
    const void *weight;
    fl_index ignore_index;
    /* upstream gradient per position: grad_out[i, j] * scale, or just scale when NULL */
    const void *grad_out;
    fl_index go_sn, go_ss;
    double scale;
    /* outputs: the gradient (NULL: forward only; may be x itself) and per-position losses
     * (NULL, or n * s contiguous elements) */
    void *grad;
    fl_index g_sn, g_sc, g_ss;
    void *loss;
    /* execution */
    int nthreads;
    /* results */
    double loss_sum;
    int threads_used;
} fl_nll_args;

/* Checks every target before anything is written: -1 when each is ignore_index or in
 * [0, c), else the first bad position (C order) with its value in *bad_value. Also sums
 * the weights of the kept targets (in position order) into *kept_weight. */
fl_index fl_nll_check_targets_f32(const fl_nll_args *a, double *kept_weight, int64_t *bad_value);
fl_index fl_nll_check_targets_f64(const fl_nll_args *a, double *kept_weight, int64_t *bad_value);

/* FL_OK or FL_ERR_NOMEM. Targets must have been checked. */
int fl_nll_loss_f32(fl_nll_args *a);
int fl_nll_loss_f64(fl_nll_args *a);

#endif /* FASTLOSS_NLL_LOSS_H */
