/*
 * Elementwise losses between an input x and a target y, with their gradients wrt x:
 *
 *   FL_BIN_BCE          binary cross-entropy on probabilities x in [0, 1], y in [0, 1]:
 *                         loss = w ((y - 1) max(log1p(-x), -100) - y max(log x, -100))
 *                         grad = s w (x - y) / max((1 - x) x, eps), eps = (float)1e-12
 *   FL_BIN_BCE_LOGITS   binary cross-entropy on logits, with pos_weight p (1 when absent):
 *                         lw = (p - 1) y + 1
 *                         loss = w ((1 - y) x + lw (log1p(exp(-|x|)) + max(-x, 0)))
 *                         grad = s w (lw sigmoid(x) - p y)
 *   FL_BIN_KL           Kullback-Leibler, log-probabilities x, probabilities y:
 *                         loss = xlogy(y, y) - y x   (xlogy(0, y) = 0; y < 0: NaN)
 *                         grad = -s y
 *   FL_BIN_KL_LOG       Kullback-Leibler, log-probabilities x and y:
 *                         loss = exp(y) (y - x),  grad = -s exp(y)
 *
 * where s is the upstream factor: go[i] * scale (go absent: scale alone), scale the upstream
 * scalar call.grad_scale over the reduction's denominator.
 *
 * Every operand is seen as a 2-D array of rows x cols (the Cython layer merges the
 * broadcast shape down to at most two axes), element (r, k) at p[r * sr + k * sk]
 * (strides in elements, any sign, 0 for a broadcast axis). The vector loops take operands
 * whose inner stride is 1 (w, p, go: also 0); any other inner stride goes through small
 * stack buffers (gather, compute, scatter) and gives the same bits.
 *
 * Work is cut into fixed blocks of FL_BLOCK_ELEMENTS elements of the row-major order; block
 * sums of the loss, in double, are combined in block order (identical for any thread count).
 */
#ifndef FASTLOSS_BINARY_H
#define FASTLOSS_BINARY_H

#include "fastloss.h"

#define FL_BIN_BCE 0
#define FL_BIN_BCE_LOGITS 1
#define FL_BIN_KL 2
#define FL_BIN_KL_LOG 3

/* an operand's element strides: [0] from row to row, [1] from column to column (0: broadcast) */
typedef fl_index fl_bin_strides[2];

typedef struct fl_bin_args {
    fl_call call; /* reduction may be FL_REDUCE_BATCHMEAN (kl_div) */
    int kind;
    fl_index rows, cols;
    const void *x;
    const void *y;
    const void *w;  /* NULL: 1 */
    const void *pw; /* NULL: 1 (FL_BIN_BCE_LOGITS only) */
    const void *go; /* NULL: s = the gradient scale alone */
    void *grad;     /* NULL: no gradient; may be x itself (same strides) */
    void *loss;     /* NULL: no per-element loss */
    fl_bin_strides xs, ys, ws, pws, gos, gs, ls; /* each operand's, in the same order */
} fl_bin_args;

/* The entry point: for FL_BIN_BCE the [0, 1] domain check of x and y first (FL_ERR_DOMAIN,
 * nothing written, call.bad_operand 0 = input, 1 = target), then the kernel and the
 * reduction ("mean": over the element count; "batchmean": over call.batch). FL_OK,
 * FL_ERR_DOMAIN or FL_ERR_NOMEM. */
int fl_binary(fl_call *call); /* call = &args.call of an fl_bin_args */
int fl_binary_kernels(int simd, const char **names, int max);

#endif /* FASTLOSS_BINARY_H */
