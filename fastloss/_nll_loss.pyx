# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""NLL loss: the Cython layer between the public functions and csrc/nll_loss.c.

Same design as ``_cross_entropy.pyx``: every argument (dtypes, shapes, options, out=,
overlap, every target) is checked with the GIL held, then the kernel runs with the GIL
released; a bad target raises before anything is written. Input (C,), (N, C) or
(N, C, d1..dk) is viewed as (n, C, s); (N, C) becomes (1, C, N) so that a Fortran-ordered
input zero-fills its gradient along contiguous runs. ``fastloss/_reference_softmax_nll.py``
is the slow NumPy twin.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

import numpy as np

from fastloss._csrc cimport *
from fastloss._validation cimport *
from fastloss._runtime cimport simd_path

from fastloss import _threads

cnp.import_array()


cdef object _nll_loss(object input, object target, object weight, object ignore_index,
                      object reduction, object grad_output, object out, bint want_grad, dict stats):
    cdef cnp.ndarray x0 = as_array(input)
    cdef int typenum = float_compute_type(x0, "input")
    cdef int nd = cnp.PyArray_NDIM(x0), d
    if nd == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    cdef int red = parse_reduction(reduction)
    ignore = int64_option(ignore_index, "ignore_index")

    cdef fl_index N = 1, C, S = 1
    if nd == 1:
        C = cnp.PyArray_DIM(x0, 0)
    else:
        N = cnp.PyArray_DIM(x0, 0)
        C = cnp.PyArray_DIM(x0, 1)
        for d in range(2, nd):
            S *= cnp.PyArray_DIM(x0, d)

    cdef cnp.ndarray t0 = as_array(target)
    cdef cnp.ndarray t = index_target(t0, x0, C, ignore)

    cdef cnp.ndarray w0 = None, w = None
    if weight is not None:
        w0 = as_array(weight)
        w = class_weight(w0, C, typenum)
        if cnp.PyArray_TYPE(x0) == cnp.NPY_FLOAT16 and cnp.PyArray_TYPE(w0) != cnp.NPY_FLOAT16:
            w = class_weight(in_input_dtype(w0, x0), C, typenum)

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
        t = merged_or_copy(t, 1, &t_ss)
    if go is not None:
        go = merged_or_copy(go, 1, &go_ss)
    cdef cnp.ndarray g = None
    if want_grad:
        g = gradient_buffer(x, g_user, in_place, typenum, 2 if nd >= 2 else 1, &g_ss)

    cdef cnp.ndarray loss_arr = None
    if red == REDUCE_NONE:
        loss_arr = np.empty(np.shape(x0)[:1] + np.shape(x0)[2:] if nd >= 2 else (),
                            dtype=cnp.PyArray_DescrFromType(typenum))

    cdef fl_nll_args a
    a.c = C
    a.x = cnp.PyArray_DATA(x)
    a.target = cnp.PyArray_DATA(t)
    a.target_kind = FL_NLL_TARGET_I32 if cnp.PyArray_ITEMSIZE(t) == 4 else FL_NLL_TARGET_I64
    a.weight = cnp.PyArray_DATA(w) if w is not None else NULL
    a.ignore_index = <int64_t>ignore
    a.grad_out = cnp.PyArray_DATA(go) if go is not None else NULL
    a.grad = cnp.PyArray_DATA(g) if g is not None else NULL
    a.loss = cnp.PyArray_DATA(loss_arr) if loss_arr is not None else NULL
    a.call.dtype = FL_DTYPE_F32 if typenum == cnp.NPY_FLOAT else FL_DTYPE_F64
    a.call.simd = simd_path()
    a.call.nthreads = _threads._num_threads
    a.call.reduction = red
    a.call.grad_scale = go_scalar
    a.call.batch = 1.0
    cdef fl_index x_sn = 0, x_sc, g_sn = 0, g_sc = 0, t_sn = 0, go_sn = 0
    if nd == 1:
        x_sc = elem_stride(x, 0)
        if g is not None:
            g_sc = elem_stride(g, 0)
    else:
        x_sn = elem_stride(x, 0)
        x_sc = elem_stride(x, 1)
        if g is not None:
            g_sn = elem_stride(g, 0)
            g_sc = elem_stride(g, 1)
        t_sn = elem_stride(t, 0)
        if go is not None:
            go_sn = elem_stride(go, 0)
    if S == 1:
        a.n, a.s = 1, N
        a.x_sn, a.x_ss, a.g_sn, a.g_ss, a.t_sn, a.t_ss, a.go_sn, a.go_ss = 0, x_sn, 0, g_sn, 0, t_sn, 0, go_sn
    else:
        a.n, a.s = N, S
        a.x_sn, a.x_ss, a.g_sn, a.g_ss, a.t_sn, a.t_ss, a.go_sn, a.go_ss = x_sn, x_ss, g_sn, g_ss, t_sn, t_ss, go_sn, go_ss
    a.x_sc, a.g_sc = x_sc, g_sc

    cdef int status
    if N * S >= FL_BLOCK_ELEMENTS or (want_grad and N * S * C >= FL_BLOCK_ELEMENTS):
        with nogil:
            status = fl_nll_loss(&a)
    else:
        status = fl_nll_loss(&a)
    if status == FL_ERR_TARGET:
        raise IndexError(f"Target {a.call.bad_value} is out of bounds.")
    if status == FL_ERR_NOMEM:
        raise MemoryError("nll_loss: out of memory")
    if stats is not None:
        call_stats(stats, &a.call)

    cdef int out_type = cnp.PyArray_TYPE(x0)
    if red == REDUCE_NONE:
        loss = loss_arr if out_type == typenum else loss_arr.astype(np.float16)
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
    if out_type != typenum:
        g = g.astype(np.float16)
    return loss, g


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood loss, as ``torch.nn.functional.nll_loss``.

    Parameters
    ----------
    input : array_like of float16, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities (e.g. from :func:`log_softmax`); the class axis is axis 1 (axis 0
        for 1-D input). Any memory layout; float16 is computed in float32.
    target : array_like of integers, shape (N, d1, ..., dk) (0-d or (1,) for 1-D input)
        Class indices, each in [0, C) or equal to ``ignore_index``. Floating targets are a
        TypeError (torch accepts only index targets here).
    weight : array_like of shape (C,), optional
        Per-class weight w (cast to the input's dtype).
    ignore_index : int, default -100
        Targets equal to it contribute neither loss nor gradient.
    reduction : {"mean", "sum", "none"}, default "mean"

    Returns
    -------
    loss : NumPy scalar of the input's dtype for "mean"/"sum"; for "none" an array of shape
        (N, d1, ..., dk) (0-d for 1-D input).

    Notes
    -----
    At one position with target t::

        loss = -w[t] * input[t]        (0 when t == ignore_index)

    "mean" divides the sum by the sum of w[t] over the kept positions (nan when every
    position is ignored or the input is empty); "sum" of nothing is 0.

    Raises
    ------
    TypeError for dtypes, ValueError for shapes and option values, IndexError
    ("Target 7 is out of bounds.") for a class index outside [0, C).
    """
    return _nll_loss(input, target, weight, ignore_index, reduction, None, None, False, None)


def nll_loss_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                       grad_output=None, out=None):
    """NLL loss and its gradient with respect to the input, in one pass.

    Parameters are those of :func:`nll_loss`, plus:

    grad_output : float or array_like, optional
        The upstream gradient g (default 1): a scalar for "mean"/"sum"; for "none" a scalar
        or an array that broadcasts to the loss's shape.
    out : ndarray, optional
        Where to write the gradient: the input's shape and dtype, writeable, any layout.
        ``out=input`` (exactly) computes in place; any other overlap is a ValueError.

    Returns
    -------
    (loss, grad) : loss as :func:`nll_loss`; grad = d(sum(loss * g)) / d(input), of the
        input's shape and dtype (``out`` when given).

    Notes
    -----
    With s the position's upstream factor (g, divided for "mean" by the sum of the kept
    targets' weights)::

        grad[k] = -s * w[t] * [k == t]     (all zero at an ignored position)
    """
    return _nll_loss(input, target, weight, ignore_index, reduction, grad_output, out, True, None)


def _nll_loss_stats(input, target, weight=None, ignore_index=-100, reduction="mean",
                    grad_output=None, out=None, want_grad=True):
    """For tests: (result, stats) where stats tells the threads that ran."""
    stats = {}
    result = _nll_loss(input, target, weight, ignore_index, reduction, grad_output, out, want_grad, stats)
    return result, stats


def _kernel_names():
    """The names of the nll_loss kernels the dispatch table holds for the active path."""
    return kernel_names(fl_nll_loss_kernels, simd_path())
