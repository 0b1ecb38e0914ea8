"""Cross-entropy: the Cython layer between the public functions and csrc/cross_entropy.c.

The argument spec of cross_entropy and its one C call; the rest (views, out=, copies,
results) is the planner's, fastloss/_plan.pyx, whose docstring describes the design. Logits
(C,), (N, C) or (N, C, d1..dk) are viewed as (n, C, s) with the spatial axes merged into s;
index targets and the upstream gradient as (n, s). ``fastloss/reference.py`` is the slow
NumPy twin used as the test oracle.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

import numpy as np

from fastloss._csrc cimport *
from fastloss._plan cimport *

from fastloss._plan import document

cnp.import_array()


cdef double *lse_buffer(object arr, fl_index npos, bint writeable) except NULL:
    """A per-position log-sum-exp array: float64, C-contiguous, one value per position."""
    if not isinstance(arr, np.ndarray):
        raise TypeError("lse must be a numpy array")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if (cnp.PyArray_TYPE(a) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISALIGNED(a) or cnp.PyArray_ISBYTESWAPPED(a) or a.size != npos):
        raise ValueError(f"lse must be a C-contiguous float64 array of {npos} elements")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError("lse must be writeable")
    return <double *>cnp.PyArray_DATA(a)


cdef object _cross_entropy(object input, object target, object weight, object ignore_index,
                           object reduction, object label_smoothing, object grad_output,
                           object out, bint want_grad, object lse_out=None,
                           object lse_in=None, tuple margin=None, list hits=None):
    cdef Call p = start(input, "input", want_grad, True)
    cdef cnp.ndarray x0 = p.x0, t0 = as_array(target), t = None
    cdef int nd = cnp.PyArray_NDIM(x0)
    if nd == 0:
        raise ValueError("input must have at least one dimension (the class axis)")
    p.red = parse_reduction(reduction)
    cdef double eps = real_option(label_smoothing, "label_smoothing")
    if not (0.0 <= eps <= 1.0):
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {eps}")
    ignore = int64_option(ignore_index, "ignore_index")
    cdef fl_index C = cnp.PyArray_DIM(x0, 1 if nd >= 2 else 0)
    cdef bint prob = cnp.PyArray_SAMESHAPE(t0, x0)
    if prob:
        if not is_float(t0):
            raise TypeError(f"class-probability targets must be floating, got dtype {t0.dtype}")
        if margin is not None:
            raise ValueError("margin_cross_entropy needs class-index targets, not probabilities")
        if ignore >= 0:
            raise ValueError("ignore_index is not supported for probability targets")
        p.promote(t0)  # torch: float16 logits with float32 probabilities give a float32 loss
        t = t0
    else:
        t = index_target(t0, x0, C, ignore)
    cdef fl_ce_args a
    cdef fl_view v[4]  # x, target, grad_output, gradient
    cdef fl_index dims[3]
    p.class_operands(t0, t, prob, weight, grad_output, out, v, dims)
    a.n, a.c, a.s = dims[0], dims[1], dims[2]
    a.xv, a.tv, a.gov, a.gv = v[0], v[1], v[2], v[3]
    a.x, a.target, a.weight, a.grad_out = data(p.x), data(p.t), data(p.w), data(p.go)
    a.grad, a.loss = data(p.g), data(p.losses)
    a.target_kind = FL_TARGET_PROB if prob else (FL_TARGET_I32 if cnp.PyArray_ITEMSIZE(t) == 4 else FL_TARGET_I64)
    a.ignore_index = <int64_t>ignore
    a.label_smoothing = eps
    a.lse_out = lse_buffer(lse_out, a.n * a.s, True) if lse_out is not None else NULL
    a.lse_in = lse_buffer(lse_in, a.n * a.s, False) if lse_in is not None and want_grad else NULL
    cdef fl_margin mg
    a.margin = NULL
    if margin is not None:
        mg.kind, mg.easy, mg.margin, mg.scale = margin
        a.margin = &mg
    result = p.run(fl_cross_entropy, &a.call, a.n * a.s * a.c,
                   "cross_entropy" if margin is None else "margin_cross_entropy")
    if hits is not None:
        hits.append(a.hits)
    return result


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy between logits and class targets, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Unnormalized logits; the class axis is axis 1 (axis 0 for 1-D input). Any memory
        layout. float16 and bfloat16 (``ml_dtypes.bfloat16``) are read and written as they
        are, computed in float32, and every result is rounded once to their dtype.
    target : array_like
        Class indices of shape (N, d1, ..., dk) (0-d for 1-D input), any integer dtype, each
        in [0, C) or equal to ``ignore_index``; or class probabilities of the input's shape
        (floating; a wider floating dtype than the input's gives the loss that dtype, as
        torch's type promotion does).
    weight : array_like of shape (C,), optional
        Per-class weight w (any real dtype, rounded to the loss's dtype).
    ignore_index : int, default -100
        Index targets equal to it contribute neither loss nor gradient.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0

    Returns
    -------
    loss : NumPy scalar of the loss's dtype for "mean"/"sum"; for "none" an array of
        shape (N, d1, ..., dk) (0-d for 1-D input).

    Notes
    -----
    With ``lse = log(sum_k exp(x_k))``, ``eps = label_smoothing`` and ``C`` classes, the loss
    at one position is::

        index target t:   (1 - eps) * w[t] * (lse - x[t]) + eps / C * sum_k w[k] * (lse - x[k])
        probabilities y:  sum_k w[k] * y'[k] * (lse - x[k]),   y' = (1 - eps) * y + eps / C

    (the eps term only when eps > 0; ignored positions give 0). "mean" divides the sum by
    sum of w[t] over the kept positions for index targets, by the number of positions for
    probabilities; all-ignored or empty input gives nan, "sum" of nothing gives 0.

    Raises
    ------
    TypeError for dtypes, ValueError for shapes and option values, IndexError
    ("Target 7 is out of bounds.") for a class index outside [0, C).
    """
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          None, None, False)


def cross_entropy_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, grad_output=None, out=None):
    """Cross-entropy and its gradient with respect to the logits, in one fused pass.

    Parameters are those of :func:`cross_entropy`, plus:

    @GRAD_PARAMS@

    Notes
    -----
    With p = softmax(x) over the classes and s the position's upstream factor (g, divided
    for "mean" by the same denominator as the loss)::

        index target t:   grad[k] = s * (p[k] * A - (1 - eps) * w[t] * [k == t] - eps / C * w[k]),
                          A = (1 - eps) * w[t] + eps / C * sum_j w[j]
        probabilities y:  grad[k] = s * (p[k] * sum_j w[j] * y'[j] - w[k] * y'[k])

    Ignored positions get torch's ``0 * softmax(x)``: 0, or NaN along a row that holds a NaN
    or +inf or only -inf. No N x C temporary is allocated: exp(x - max) goes straight into
    the output.
    """
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          grad_output, out, True)


def _cross_entropy_forward_lse(input, target, weight, ignore_index, reduction, label_smoothing, lse):
    """For fastloss.torch's autograd Function: the loss of :func:`cross_entropy`, and each
    position's log-sum-exp written into ``lse`` (float64, C-contiguous, one per position in
    C order of the loss's shape; 0 for ignored positions), for the backward pass."""
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          None, None, False, lse, None)


def _cross_entropy_backward_lse(input, target, weight, ignore_index, reduction, label_smoothing,
                                grad_output, lse, out=None):
    """For fastloss.torch's autograd Function: the gradient of :func:`cross_entropy_with_grad`,
    given the ``lse`` a :func:`_cross_entropy_forward_lse` call wrote for the same input.
    Rows with contiguous classes then take one pass (exp(x - lse) scaled); other layouts
    recompute the log-sum-exp."""
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          grad_output, out, True, None, lse)[1]


document(cross_entropy_with_grad)


# ---- margin-softmax cross-entropy (csrc/margin_cross_entropy.h) ----------------------------

MARGIN_COSINE_EPS = FL_MARGIN_EPS


cdef tuple margin_spec(object margin, object scale, object kind, object easy_margin):
    """The checked margin options as (kind, easy, margin, scale) for the C layer."""
    cdef double m = real_option(margin, "margin"), s = real_option(scale, "scale")
    if not (m - m == 0.0):
        raise ValueError(f"margin must be finite, got {m}")
    if not (s > 0.0 and s - s == 0.0):
        raise ValueError(f"scale must be positive and finite, got {s}")
    if not isinstance(kind, str) or kind not in ("arc", "cos"):
        raise ValueError(f'kind must be "arc" (additive angular margin) or "cos" (additive cosine margin), got {kind!r}')
    if not isinstance(easy_margin, (bool, np.bool_)):
        raise TypeError(f"easy_margin must be a bool, got {type(easy_margin).__name__}")
    if easy_margin and kind == "cos":
        raise ValueError('easy_margin applies to kind="arc" only')
    return (FL_MARGIN_ARC if kind == "arc" else FL_MARGIN_COS, 1 if easy_margin else 0, m, s)


def margin_cross_entropy(cosine, target, margin=0.2, scale=30.0, kind="arc", easy_margin=False,
                         weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    """Margin-softmax cross-entropy (AAM-softmax / ArcFace, AM-softmax / CosFace) of cosines.

    The cross-entropy of :func:`cross_entropy` (same weight, ignore_index, reduction and
    label_smoothing) of the logits ``scale * cosine`` with the target's column replaced by
    ``scale * phi(cosine[t])``; the one-hot of the usual formulation is never built.

    Parameters
    ----------
    cosine : array_like of float16, bfloat16, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Cosine similarities between embeddings and class centres (any memory layout).
    target : array_like of integers
        Class indices, shape (N, d1, ..., dk) (0-d for 1-D input), in [0, C) or ``ignore_index``.
    margin : float, default 0.2
        m: an angle in radians (kind "arc") or a cosine offset (kind "cos").
    scale : float > 0, default 30.0
        s, the logits' scale.
    kind : {"arc", "cos"}, default "arc"
    easy_margin : bool, default False
        kind "arc" only: the margin only where the target's cosine is positive.
    weight, ignore_index, reduction, label_smoothing :
        as in :func:`cross_entropy`.

    Returns
    -------
    loss : as :func:`cross_entropy` returns it.

    Notes
    -----
    With ``x = cosine`` and ``t`` the target, the logits are ``z[k] = s * x[k]`` for k != t and
    ``z[t] = s * phi(x[t])``::

        kind "arc":   phi(x) = cos(acos(x) + m) = x cos m - sqrt(1 - x^2) sin m   if x > cos(pi - m)
                      phi(x) = x - m sin(pi - m)                                  otherwise
                      easy_margin: phi(x) = cos(acos(x) + m) if x > 0, else x
        kind "cos":   phi(x) = x - m

    and the loss is ``cross_entropy(z, target, ...)``. For kind "arc" the target's cosine is
    first clamped to ``[-1 + eps, 1 - eps]``, ``eps = MARGIN_COSINE_EPS = 1e-7`` (a NaN stays NaN):
    cosines at or just beyond +-1, from rounding, give a finite loss and gradient.
    """
    return _cross_entropy(cosine, target, weight, ignore_index, reduction, label_smoothing, None, None,
                          False, None, None, margin_spec(margin, scale, kind, easy_margin))


def margin_cross_entropy_with_grad(cosine, target, margin=0.2, scale=30.0, kind="arc", easy_margin=False,
                                   weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                                   grad_output=None, out=None):
    """Margin-softmax cross-entropy and its gradient with respect to the cosines, in one pass.

    Parameters are those of :func:`margin_cross_entropy`, plus:

    @GRAD_PARAMS@

    Notes
    -----
    With ``G`` the gradient of :func:`cross_entropy_with_grad` with respect to the logits z
    (see :func:`margin_cross_entropy`)::

        grad[k] = s * G[k]                   k != t
        grad[t] = s * phi'(x[t]) * G[t]      phi'(x) = cos m + x sin m / sqrt(1 - x^2) on the
                                             margin's branch of kind "arc", 1 elsewhere

    at the clamped cosine for kind "arc". No N x C temporary is allocated.
    """
    return _cross_entropy(cosine, target, weight, ignore_index, reduction, label_smoothing, grad_output, out,
                          True, None, None, margin_spec(margin, scale, kind, easy_margin))


def _margin_cross_entropy_hits(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index,
                               reduction, label_smoothing, want_grad, out=None):
    """For fastloss.torch's modules: ``(loss, gradient or None, hits)``, hits the number of
    kept positions whose modified target logit is their top-1 (the first index among equal
    maxima, as torch.argmax picks it), for the accuracy beside the loss. The gradient is that
    of an upstream gradient of 1."""
    hits = []
    result = _cross_entropy(cosine, target, weight, ignore_index, reduction, label_smoothing, None, out,
                            want_grad, None, None, margin_spec(margin, scale, kind, easy_margin), hits)
    loss, grad = result if want_grad else (result, None)
    return loss, grad, hits[0]


document(margin_cross_entropy_with_grad)


def _kernel_names():  # for kernel_info(): what the dispatch table holds
    return kernel_names(fl_cross_entropy_kernels)
