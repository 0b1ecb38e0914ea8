# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Elementwise binary losses: binary_cross_entropy, binary_cross_entropy_with_logits and
kl_div (each with its ``_with_grad`` twin), one wrapper over csrc/binary.c.

Every operand -- input, target, weight, pos_weight, grad_output, the gradient and the
per-element loss -- is viewed in the loss's shape (broadcast ones with stride 0, never
expanded) and the axes merged, in the input's memory order, into at most two (rows, cols);
layouts that do not merge into two are copied C-contiguous first (the planner,
fastloss/_plan.pyx). binary_cross_entropy's [0, 1] domain check runs in C before anything
is written. kl_div broadcasts input against target as torch does; a broadcast input's
gradient is summed back. ``fastloss/reference.py`` is the slow NumPy twin.
"""
cimport numpy as cnp

import numpy as np

from fastloss._csrc cimport *
from fastloss._plan cimport *

from fastloss._plan import document

cnp.import_array()

_NAMES = {FL_BIN_BCE: "binary_cross_entropy", FL_BIN_BCE_LOGITS: "binary_cross_entropy_with_logits",
          FL_BIN_KL: "kl_div"}


cdef cnp.ndarray _operand(Call p, cnp.ndarray v, str what, tuple shape):
    """weight / pos_weight: a real array broadcast (stride 0, no copy of the data) to the loss
    shape, in the kernel's dtype; only the small original is ever cast."""
    if not is_real(v):
        raise TypeError(f"{what} must be a real array, got dtype {v.dtype}")
    try:
        return np.broadcast_to(p.operand(v), shape)
    except ValueError:
        raise ValueError(f"{what} of shape {list(np.shape(v))} does not broadcast to the input "
                         f"shape {list(shape)}") from None


cdef object _binary(int kind, object input, object target, object weight, object pos_weight,
                    object reduction, object log_target, object grad_output, object out,
                    bint want_grad):
    cdef Call p = start(input, "input", want_grad, True)
    cdef cnp.ndarray x0 = p.x0, t0 = as_array(target), w0 = None, p0 = None, w = None, pw = None
    if not is_float(t0):
        raise TypeError(f"target must be a floating array, got dtype {t0.dtype}")
    p.red = parse_reduction(reduction, kind == FL_BIN_KL)
    if kind == FL_BIN_KL and not isinstance(log_target, (bool, np.bool_)):
        raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
    if kind != FL_BIN_BCE:
        p.promote(t0)  # torch promotes kl_div's and bce_with_logits' targets, not bce's

    cdef tuple xshape = np.shape(x0), shape = xshape
    if kind == FL_BIN_KL:
        try:
            shape = tuple(np.broadcast_shapes(xshape, np.shape(t0)))
        except ValueError:
            raise ValueError(f"The size of input {list(xshape)} and target {list(np.shape(t0))} "
                             "do not broadcast") from None
    elif not cnp.PyArray_SAMESHAPE(t0, x0):
        if kind == FL_BIN_BCE:
            raise ValueError(f"Using a target size ({list(np.shape(t0))}) that is different to the "
                             f"input size ({list(xshape)}) is deprecated. Please ensure they have "
                             "the same size.")
        raise ValueError(f"Target size ({list(np.shape(t0))}) must be the same as input size "
                         f"({list(xshape)})")
    p.batch = <double>xshape[0] if xshape else 1.0
    if weight is not None and kind != FL_BIN_KL:
        w0 = as_array(weight)
        w = _operand(p, w0, "weight", shape)
    if pos_weight is not None and kind == FL_BIN_BCE_LOGITS:
        p0 = as_array(pos_weight)
        pw = _operand(p, p0, "pos_weight", shape)
    p.upstream(grad_output, shape)
    p.check_out(out, t0, "target", w0, p0)

    # ---- every operand in the loss's shape, axes merged into (rows, cols) in memory order ------
    cdef cnp.ndarray x = p.operand(x0), t = p.operand(t0), go = p.kernel_go(shape)
    cdef cnp.ndarray xb = x if shape == xshape else np.broadcast_to(x, shape)
    cdef cnp.ndarray tb = t if cnp.PyArray_SAMESHAPE(t, xb) else np.broadcast_to(t, shape)
    order = memory_order(xb if shape == xshape else tb)
    if want_grad:
        p.elementwise_grad(x, shape, order)
    p.loss_buffer(shape, order)
    cdef fl_bin_args a
    cdef fl_index sizes[2]
    cdef fl_index *strides[7]
    strides[:] = [&a.xs[0], &a.ys[0], &a.ws[0], &a.pws[0], &a.gos[0], &a.gs[0], &a.ls[0]]
    if merge_axes(shape, order, [xb, tb, w, pw, go, p.g, p.losses], 2, 2, sizes, strides) < 0:
        # axes that do not merge into two: every operand C-contiguous in the loss's shape
        xb, tb, w, pw, go = [None if o is None else np.ascontiguousarray(np.broadcast_to(o, shape))
                             for o in (xb, tb, w, pw, go)]
        if p.g is not None and not cnp.PyArray_IS_C_CONTIGUOUS(p.g):
            p.g = np.empty(shape, dtype=p.g.dtype)
        if p.losses is not None:
            p.losses = np.empty(shape, dtype=p.losses.dtype)
        merge_axes(shape, list(range(len(shape))), [xb, tb, w, pw, go, p.g, p.losses], 2, 2, sizes,
                   strides)
    a.kind = FL_BIN_KL_LOG if kind == FL_BIN_KL and log_target else kind  # kl_div's two forms
    a.rows, a.cols = sizes[0], sizes[1]
    a.x, a.y, a.w, a.pw, a.go = data(xb), data(tb), data(w), data(pw), data(go)
    a.grad, a.loss = data(p.g), data(p.losses)
    stats = recording()
    if stats is not None:  # the (rows, cols) view, for the tests
        stats["rows"], stats["cols"] = a.rows, a.cols
    return p.run(fl_binary, &a.call, a.rows * a.cols, _NAMES[kind])


# ---- public functions ----------------------------------------------------------------------------

def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy between probabilities and targets, as
    ``torch.nn.functional.binary_cross_entropy``.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Probabilities x, every element in [0, 1]. Any shape and memory layout; float16 and
        bfloat16 are computed in float32.
    target : array_like, floating, the input's shape
        Targets y in [0, 1] (held in the input's dtype: torch does not promote them here).
    weight : array_like, optional
        Per-element weight w, broadcast to the input's shape (rounded to the input's dtype).
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    loss : NumPy scalar of the input's dtype for "mean"/"sum"; an array of the input's shape
        for "none".

    Notes
    -----
    Elementwise, with each log clamped at -100 as torch does (so x = 0 or 1 stay finite)::

        loss = -w * (y * max(log(x), -100) + (1 - y) * max(log1p(-x), -100))

    "mean" divides the sum by the number of elements (nan for empty input), "sum" of
    nothing is 0.

    Raises
    ------
    TypeError for dtypes; ValueError for shapes, option values and for an input or target
    element outside [0, 1] or NaN ("all elements of input should be between 0 and 1";
    torch raises RuntimeError there).
    """
    return _binary(FL_BIN_BCE, input, target, weight, None, reduction, False, None, None, False)


def binary_cross_entropy_with_grad(input, target, weight=None, reduction="mean", grad_output=None,
                                   out=None):
    """Binary cross-entropy and its gradient with respect to the input, in one pass.

    Parameters are those of :func:`binary_cross_entropy`, plus:

    @GRAD_PARAMS@

    Notes
    -----
    As torch's backward, with s = g (divided by the element count for "mean")::

        grad = s * w * (x - y) / max((1 - x) * x, eps),   eps = float32(1e-12)

    Every element is checked before anything is written.
    """
    return _binary(FL_BIN_BCE, input, target, weight, None, reduction, False, grad_output, out,
                   True)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy between logits and targets, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Logits x, any shape and memory layout (float16 and bfloat16 computed in float32).
    target : array_like, floating, the input's shape
        Targets y (usually in [0, 1]; not checked, as in torch). A wider floating dtype than
        the input's gives the loss that dtype (torch's type promotion).
    weight : array_like, optional
        Per-element weight w, broadcast to the input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : array_like, optional
        Weight p of the positive term, broadcast to the input's shape (usually one value per
        class: shape (C,) against the last axis).

    Returns
    -------
    loss : NumPy scalar of the loss's dtype for "mean"/"sum"; for "none" an array of the
        input's shape.

    Notes
    -----
    In torch's numerically stable form (log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)))::

        lw   = (p - 1) * y + 1
        loss = w * ((1 - y) * x + lw * (log1p(exp(-|x|)) + max(-x, 0)))

    which is -w * (p * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))). NaN and inf
    propagate as in torch (e.g. x = +inf with y = 1 gives nan: (1 - y) * x).
    """
    return _binary(FL_BIN_BCE_LOGITS, input, target, weight, pos_weight, reduction, False, None,
                   None, False)


def binary_cross_entropy_with_logits_with_grad(input, target, weight=None, reduction="mean",
                                               pos_weight=None, grad_output=None, out=None):
    """Binary cross-entropy on logits and its gradient with respect to the input, in one pass.

    Parameters are those of :func:`binary_cross_entropy_with_logits`, plus:

    @GRAD_PARAMS@

    Notes
    -----
    With s = g (divided by the element count for "mean")::

        grad = s * w * (lw * sigmoid(x) - p * y),   lw = (p - 1) * y + 1

    (without pos_weight: s * w * (sigmoid(x) - y)).
    """
    return _binary(FL_BIN_BCE_LOGITS, input, target, weight, pos_weight, reduction, False,
                   grad_output, out, True)


def kl_div(input, target, reduction="mean", log_target=False):
    """Kullback-Leibler divergence loss, as ``torch.nn.functional.kl_div``.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Log-probabilities x.
    target : array_like, floating
        Probabilities y (log-probabilities with ``log_target=True``); broadcast against the
        input as torch does (a wider floating dtype gives the loss that dtype, as torch).
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
        "batchmean" divides the sum by input.shape[0] (the sum for 0-d input); "mean" by the
        number of loss elements (torch warns there; fastloss does not).
    log_target : bool, default False

    Returns
    -------
    loss : NumPy scalar of the loss's dtype, or for "none" an array of the broadcast shape.

    Notes
    -----
    Elementwise::

        log_target=False:  loss = xlogy(y, y) - y * x      (0 where y == 0; nan for y < 0)
        log_target=True:   loss = exp(y) * (y - x)
    """
    return _binary(FL_BIN_KL, input, target, None, None, reduction, log_target, None, None, False)


def kl_div_with_grad(input, target, reduction="mean", log_target=False, grad_output=None, out=None):
    """Kullback-Leibler divergence loss and its gradient with respect to the input.

    Parameters are those of :func:`kl_div`, plus:

    @GRAD_PARAMS@

    Notes
    -----
    With s = g (divided by the element count for "mean", by input.shape[0] for "batchmean")::

        grad = -s * y          (log_target=False)
        grad = -s * exp(y)     (log_target=True)

    When the input is broadcast against the target, the gradient is summed over the
    broadcast axes (computed in a temporary of the loss's shape).
    """
    return _binary(FL_BIN_KL, input, target, None, None, reduction, log_target, grad_output, out,
                   True)


document(binary_cross_entropy_with_grad, binary_cross_entropy_with_logits_with_grad,
         kl_div_with_grad)


def _kernel_names():  # for kernel_info(): what the dispatch table holds
    return kernel_names(fl_binary_kernels)
