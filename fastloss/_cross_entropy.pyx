# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Cross-entropy: the Cython layer between the public functions and csrc/cross_entropy.c.

Design
------
Three layers, each with one job (the same for every loss in fastloss):

* ``csrc/cross_entropy.c`` computes. It sees logits as an (n, c, s) array with element
  strides -- n batch items, c classes, s positions per item -- and never raises.
* This module checks every argument (dtypes, shapes, options, out=, overlap, and every
  target) with the GIL held, builds that (n, c, s) view without copying the logits when
  their memory allows, then runs the kernel with the GIL released. A bad target raises
  before anything is written.
* ``fastloss/__init__.py`` re-exports ``cross_entropy`` and ``cross_entropy_with_grad``.

``fastloss/reference.py`` is the slow NumPy twin used as the test oracle.

Views: (N, C) input becomes (1, C, N) so that its rows are positions along s, which lets
one rule pick the kernel layout from the strides: classes contiguous -> rows, positions
contiguous -> columns (Fortran-ordered (N, C), K-dim inputs), anything else -> a scalar
strided loop. Spatial axes d1..dk are merged into s when their strides allow it; an input
whose axes do not merge, a big-endian or unaligned input, a float16 input (computed in
float32) and a probability target of another dtype are copied first.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

import numpy as np

from fastloss._csrc cimport *
from fastloss._validation cimport *
from fastloss._runtime cimport simd_path

from fastloss import _threads

cnp.import_array()





cdef inline bint is_float_dtype(cnp.ndarray a):
    cdef int t = cnp.PyArray_TYPE(a)
    return t == cnp.NPY_FLOAT16 or t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE or t == cnp.NPY_LONGDOUBLE


cdef cnp.ndarray lse_buffer(object arr, fl_index npos, bint writeable):
    """A per-position log-sum-exp array: float64, C-contiguous, one value per position."""
    if not isinstance(arr, np.ndarray):
        raise TypeError("lse must be a numpy array")
    cdef cnp.ndarray a = <cnp.ndarray>arr
    if (cnp.PyArray_TYPE(a) != cnp.NPY_DOUBLE or not cnp.PyArray_IS_C_CONTIGUOUS(a)
            or not cnp.PyArray_ISALIGNED(a) or cnp.PyArray_ISBYTESWAPPED(a) or a.size != npos):
        raise ValueError(f"lse must be a C-contiguous float64 array of {npos} elements")
    if writeable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError("lse must be writeable")
    return a


cdef object _cross_entropy(object input, object target, object weight, object ignore_index,
                           object reduction, object label_smoothing, object grad_output,
                           object out, bint want_grad, dict stats, object lse_out=None,
                           object lse_in=None):
    # ---- options and input -----------------------------------------------------------
    cdef cnp.ndarray x0 = as_array(input)
    cdef int typenum = float_compute_type(x0, "input")
    cdef int nd = cnp.PyArray_NDIM(x0), d
    if nd == 0:
        raise ValueError("input must have at least one dimension (the class axis)")
    cdef int red = parse_reduction(reduction)
    cdef double eps = real_option(label_smoothing, "label_smoothing")
    if not (0.0 <= eps <= 1.0):
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0, got {eps}")
    ignore = int64_option(ignore_index, "ignore_index")

    cdef fl_index N = 1, C, S = 1
    if nd == 1:
        C = cnp.PyArray_DIM(x0, 0)
    else:
        N = cnp.PyArray_DIM(x0, 0)
        C = cnp.PyArray_DIM(x0, 1)
        for d in range(2, nd):
            S *= cnp.PyArray_DIM(x0, d)

    # ---- targets -----------------------------------------------------------------------
    cdef cnp.ndarray t0 = as_array(target), t
    cdef bint prob = same_shape(t0, x0)
    cdef int kind
    if prob:
        if not is_float_dtype(t0):
            raise TypeError(f"class-probability targets must be floating, got dtype {t0.dtype}")
        if ignore >= 0:
            raise ValueError("ignore_index is not supported for probability targets")
        t = as_kernel_array(t0, typenum)
        kind = FL_TARGET_PROB
    else:
        t = index_target(t0, x0, C, ignore)
        kind = FL_TARGET_I32 if cnp.PyArray_ITEMSIZE(t) == 4 else FL_TARGET_I64

    # ---- weight ------------------------------------------------------------------------
    cdef cnp.ndarray w0 = None, w = None
    if weight is not None:
        w0 = as_array(weight)
        w = class_weight(w0, C, typenum)

    # ---- upstream gradient -------------------------------------------------------------
    cdef double go_scalar = 1.0
    cdef cnp.ndarray go0 = None, go = None
    if want_grad and grad_output is not None:
        loss_shape = np.shape(x0)[:1] + np.shape(x0)[2:] if nd >= 2 else ()
        go_scalar, go0 = upstream_gradient(grad_output, red == REDUCE_NONE, loss_shape)
        if go0 is not None:
            go = as_kernel_array(np.broadcast_to(go0, loss_shape), typenum)

    # ---- out= --------------------------------------------------------------------------
    cdef cnp.ndarray g_user = None
    cdef bint in_place = False
    if want_grad and out is not None:
        g_user = check_out(out, x0, "out")
        in_place = out_in_place(g_user, x0, t0, w0, None, go0)

    # ---- the kernel's view ---------------------------------------------------------------
    cdef cnp.ndarray x = as_kernel_array(x0, typenum)
    cdef fl_index x_ss = 0, g_ss = 0, t_ss = 0, go_ss = 0
    if nd >= 2:
        x = merged_or_copy(x, 2, &x_ss)
        t = merged_or_copy(t, 2 if prob else 1, &t_ss)
    if go is not None:
        go = merged_or_copy(go, 1, &go_ss)
    cdef cnp.ndarray g = None
    if want_grad:  # in place: x0 itself, or its working copy (written back below)
        g = gradient_buffer(x, g_user, in_place, typenum, 2 if nd >= 2 else 1, &g_ss)

    cdef cnp.ndarray loss_arr = None
    if red == REDUCE_NONE:
        loss_arr = np.empty(np.shape(x0)[:1] + np.shape(x0)[2:] if nd >= 2 else (),
                            dtype=cnp.PyArray_DescrFromType(typenum))

    # ---- arguments: (N, C, S) with S == 1 becomes (1, C, N), rows as positions ------------
    cdef fl_ce_args a
    a.c = C
    a.x = cnp.PyArray_DATA(x)
    a.target = cnp.PyArray_DATA(t)
    a.target_kind = kind
    a.weight = cnp.PyArray_DATA(w) if w is not None else NULL
    a.ignore_index = <int64_t>ignore
    a.label_smoothing = eps
    a.grad_out = cnp.PyArray_DATA(go) if go is not None else NULL
    a.grad = cnp.PyArray_DATA(g) if g is not None else NULL
    a.loss = cnp.PyArray_DATA(loss_arr) if loss_arr is not None else NULL
    a.lse_out = NULL
    a.lse_in = NULL
    if lse_out is not None:
        a.lse_out = <double *>cnp.PyArray_DATA(lse_buffer(lse_out, N * S, True))
    if lse_in is not None and want_grad:
        a.lse_in = <const double *>cnp.PyArray_DATA(lse_buffer(lse_in, N * S, False))
    a.call.dtype = FL_DTYPE_F32 if typenum == cnp.NPY_FLOAT else FL_DTYPE_F64
    a.call.simd = simd_path()
    a.call.nthreads = _threads._num_threads
    a.call.reduction = red
    a.call.grad_scale = go_scalar
    a.call.batch = 1.0
    cdef fl_index x_sn = 0, x_sc, g_sn = 0, g_sc = 0, t_sn = 0, t_sc = 0, go_sn = 0
    if nd == 1:
        x_sc = elem_stride(x, 0)
        if g is not None:
            g_sc = elem_stride(g, 0)
        if prob:
            t_sc = elem_stride(t, 0)
    else:
        x_sn = elem_stride(x, 0)
        x_sc = elem_stride(x, 1)
        if g is not None:
            g_sn = elem_stride(g, 0)
            g_sc = elem_stride(g, 1)
        t_sn = elem_stride(t, 0)
        if prob:
            t_sc = elem_stride(t, 1)
        if go is not None:
            go_sn = elem_stride(go, 0)
    if S == 1:
        a.n, a.s = 1, N
        a.x_sn, a.x_ss, a.g_sn, a.g_ss, a.t_sn, a.t_ss, a.go_sn, a.go_ss = 0, x_sn, 0, g_sn, 0, t_sn, 0, go_sn
    else:
        a.n, a.s = N, S
        a.x_sn, a.x_ss, a.g_sn, a.g_ss, a.t_sn, a.t_ss, a.go_sn, a.go_ss = x_sn, x_ss, g_sn, g_ss, t_sn, t_ss, go_sn, go_ss
    a.x_sc, a.g_sc, a.t_sc = x_sc, g_sc, t_sc

    # ---- the one C call: targets checked before anything is written, then the kernel and
    # the reduction (the GIL is released only for work worth the round trip) ---------------
    cdef int status
    if N * S * C >= FL_BLOCK_ELEMENTS:
        with nogil:
            status = fl_cross_entropy(&a)
    else:
        status = fl_cross_entropy(&a)
    if status == FL_ERR_TARGET:
        raise IndexError(f"Target {a.call.bad_value} is out of bounds.")
    if status == FL_ERR_NOMEM:
        raise MemoryError("cross_entropy: out of memory")
    if stats is not None:
        call_stats(stats, &a.call)

    cdef int out_type = cnp.PyArray_TYPE(x0)
    if red == REDUCE_NONE:
        loss = loss_arr if out_type == typenum else loss_arr.astype(x0.dtype)
    else:
        loss = loss_scalar(a.call.value, out_type)
    if not want_grad:
        return loss
    if in_place:
        if g is not x0:
            np.copyto(x0, g, casting="unsafe")
        return loss, x0
    if g_user is not None:
        if g is not g_user:
            np.copyto(g_user, g, casting="unsafe")
        return loss, g_user
    if cnp.PyArray_TYPE(x0) != typenum:
        g = g.astype(x0.dtype)
    return loss, g


def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    """Cross-entropy between logits and class targets, as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : array_like of float16, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Unnormalized logits; the class axis is axis 1 (axis 0 for 1-D input). Any memory
        layout. float16 is computed in float32.
    target : array_like
        Class indices of shape (N, d1, ..., dk) (0-d for 1-D input), any integer dtype, each
        in [0, C) or equal to ``ignore_index``; or class probabilities of the input's shape
        (floating).
    weight : array_like of shape (C,), optional
        Per-class weight w (cast to the input's dtype).
    ignore_index : int, default -100
        Index targets equal to it contribute neither loss nor gradient.
    reduction : {"mean", "sum", "none"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0

    Returns
    -------
    loss : NumPy scalar of the input's dtype for "mean"/"sum"; for "none" an array of
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
                          None, None, False, None)


def cross_entropy_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, grad_output=None, out=None):
    """Cross-entropy and its gradient with respect to the logits, in one fused pass.

    Parameters are those of :func:`cross_entropy`, plus:

    grad_output : float or array_like, optional
        The upstream gradient g (default 1): a scalar for "mean"/"sum"; for "none" a scalar
        or an array that broadcasts to the loss's shape.
    out : ndarray, optional
        Where to write the gradient: the input's shape and dtype, writeable, any layout.
        ``out=input`` (exactly that array) overwrites the logits with the gradient; an
        ``out`` that otherwise overlaps an argument is a ValueError.

    Returns
    -------
    (loss, grad) : loss as :func:`cross_entropy`; grad = d(sum(loss * g)) / d(input), of the
        input's shape and dtype (``out`` when given).

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
                          grad_output, out, True, None)


def _cross_entropy_stats(input, target, weight=None, ignore_index=-100, reduction="mean",
                         label_smoothing=0.0, grad_output=None, out=None, want_grad=True):
    """For tests: (result, stats) where stats tells the threads and SIMD path that ran."""
    stats = {}
    result = _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                            grad_output, out, want_grad, stats)
    return result, stats


def _cross_entropy_forward_lse(input, target, weight, ignore_index, reduction, label_smoothing, lse):
    """For fastloss.torch's autograd Function: the loss of :func:`cross_entropy`, and each
    position's log-sum-exp written into ``lse`` (float64, C-contiguous, one per position in
    C order of the loss's shape; 0 for ignored positions), for the backward pass."""
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          None, None, False, None, lse, None)


def _cross_entropy_backward_lse(input, target, weight, ignore_index, reduction, label_smoothing,
                                grad_output, lse, out=None):
    """For fastloss.torch's autograd Function: the gradient of :func:`cross_entropy_with_grad`,
    given the ``lse`` a :func:`_cross_entropy_forward_lse` call wrote for the same input.
    Rows with contiguous classes then take one pass (exp(x - lse) scaled); other layouts
    recompute the log-sum-exp."""
    return _cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing,
                          grad_output, out, True, None, None, lse)[1]


def _kernel_names():
    """The names of the cross-entropy kernels the dispatch table holds for the active path."""
    return kernel_names(fl_cross_entropy_kernels, simd_path())
