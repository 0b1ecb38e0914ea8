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

#define FL_NLL_TARGET_I32 FL_TARGET_I32
#define FL_NLL_TARGET_I64 FL_TARGET_I64

typedef struct fl_nll_args {
    fl_call call;
    fl_index n, c, s;
    /* log-probabilities; strides in elements */
    const void *x;
    fl_view xv;
    /* class-index targets (n, s), int32 or int64 */
    int target_kind;
    const void *target;
    fl_view tv; /* sc unused */
    /* class weights: NULL or c contiguous elements of x's dtype */
    const void *weight;
    fl_index ignore_index;
    /* upstream gradient per position (reduction none): grad_out[i, j] * call.grad_scale, or
     * call.grad_scale alone when NULL */
    const void *grad_out;
    fl_view gov; /* sc unused */
    /* outputs: the gradient (NULL: forward only; may be x itself) and per-position losses
     * (NULL, or n * s contiguous elements) */
    void *grad;
    fl_view gv;
    void *loss;
} fl_nll_args;

/* The entry point: checks the targets (FL_ERR_TARGET, nothing written), then the losses,
 * the gradient and the reduction ("mean": over the kept targets' weight sum). FL_OK,
 * FL_ERR_TARGET or FL_ERR_NOMEM. call.kernel names the last pass that ran:
 * nll_loss_backward_<dtype> with a gradient, nll_loss_forward_<dtype> without; call.team and
 * call.threads_active are the larger of the two passes'. */
int fl_nll_loss(fl_call *call); /* call = &args.call of an fl_nll_args */
int fl_nll_loss_kernels(int simd, const char **names, int max);

#endif /* FASTLOSS_NLL_LOSS_H */
