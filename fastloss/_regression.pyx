# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Regression losses (mse, l1, smooth_l1, huber): the Cython layer over csrc/regression.c.

Design
------
The same three layers as every loss in fastloss:

* ``csrc/regression.c`` computes. It walks input and target broadcast to one shape (an
  operand's broadcast axes have stride 0) with element strides, in fixed blocks, and never
  raises.
* This module checks every argument with the GIL held, broadcasts input and target as
  torch does (warning, as torch does, when their shapes differ), orders the axes by the
  input's memory order and merges every axis it can, so that same-shape contiguous operands
  (any order) reach the kernel as one flat axis of stride 1. Nothing input-sized is
  allocated in that case: the gradient goes straight into ``out``.
* When the input itself is broadcast (its shape smaller than the broadcast shape), the
  gradient is computed over the broadcast shape and summed back to the input's shape.

``fastloss/_reference_regression.py`` is the slow NumPy twin used as the test oracle.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

import warnings

import numpy as np

from fastloss._csrc cimport *
from fastloss._validation cimport *
from fastloss._runtime cimport simd_path

from fastloss import _threads

cnp.import_array()


_NAMES = {0: "mse_loss", 1: "l1_loss", 2: "smooth_l1_loss", 3: "huber_loss"}


cdef inline bint _is_real(cnp.ndarray a):
    return cnp.PyArray_ISINTEGER(a) or cnp.PyArray_ISFLOAT(a) or cnp.PyArray_ISBOOL(a)


cdef tuple _memory_order(cnp.ndarray xb):
    """The axes of xb from the slowest to the fastest in memory (stable: C order on ties)."""
    cdef int nd = cnp.PyArray_NDIM(xb), d
    keys = [(-abs(<fl_index>cnp.PyArray_STRIDE(xb, d)), d) for d in range(nd)]
    keys.sort()
    return tuple(k[1] for k in keys)


cdef cnp.ndarray _empty_in_order(tuple shape, tuple perm, int typenum):
    """An empty C-contiguous array of shape permuted by perm, seen with axes back in order."""
    pshape = tuple(shape[p] for p in perm)
    cdef cnp.ndarray e = np.empty(pshape, dtype=cnp.PyArray_DescrFromType(typenum))
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return e.transpose(inv)


cdef void _set_strides(fl_index *dst, cnp.ndarray a, tuple perm, list keep):
    """Element strides of a along the kept axes of the permuted order."""
    cdef fl_index item = cnp.PyArray_ITEMSIZE(a)
    cdef int i = 0
    for d in keep:
        dst[i] = cnp.PyArray_STRIDE(a, <int>perm[d]) // item
        i += 1


cdef object _regression(int kind, object input, object target, object reduction, object param,
                        object grad_output, object out, bint want_grad, dict stats):
    name = _NAMES[kind]
    # ---- input, options ------------------------------------------------------------------
    cdef cnp.ndarray x0 = as_array(input)
    cdef int typenum = float_compute_type(x0, "input")
    cdef int red = parse_reduction(reduction)
    cdef double p = 0.0
    if kind == FL_REG_SMOOTH_L1:
        p = real_option(param, "beta")
        if not (p >= 0.0):
            raise ValueError("smooth_l1_loss does not support negative values for beta.")
        if p == 0.0:
            kind = FL_REG_L1  # torch: smooth_l1 with beta == 0 is l1
    elif kind == FL_REG_HUBER:
        p = real_option(param, "delta")
        if not (p > 0.0):
            raise ValueError("huber_loss does not support non-positive values for delta.")

    # ---- target and the broadcast shape ----------------------------------------------------
    cdef cnp.ndarray t0 = as_array(target)
    if not _is_real(t0):
        raise TypeError(f"target must be a real array, got dtype {t0.dtype}")
    xshape = np.shape(x0)
    tshape = np.shape(t0)
    cdef bint same = same_shape(x0, t0)
    if same:
        bshape = xshape
    else:
        try:
            bshape = np.broadcast_shapes(xshape, tshape)
        except ValueError:
            raise ValueError(f"The size of target {tshape} does not broadcast with the size of "
                             f"input {xshape}") from None
        warnings.warn(f"Using a target size ({tshape}) that is different to the input size "
                      f"({xshape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)
    cdef bint x_bcast = bshape != xshape
    cdef int nd = len(bshape), d
    cdef fl_index numel = 1
    for s in bshape:
        numel *= <fl_index>s

    # ---- upstream gradient ---------------------------------------------------------------
    cdef double go_scalar = 1.0
    cdef cnp.ndarray go0 = None, go = None
    if want_grad and grad_output is not None:
        go_scalar, go0 = upstream_gradient(grad_output, red == REDUCE_NONE, tuple(bshape))
        if go0 is not None:
            go = np.broadcast_to(go0, bshape)

    # ---- out= ----------------------------------------------------------------------------
    cdef cnp.ndarray g_user = None
    cdef bint out_is_x = False
    if want_grad and out is not None:
        g_user = check_out(out, x0, "out")
        # out=target, exactly, is allowed too when it has the input's shape and dtype
        out_is_x = out_in_place(g_user, x0, None if same and same_view(g_user, t0) else t0,
                                None, None, go0)

    # ---- kernel views ----------------------------------------------------------------------
    cdef cnp.ndarray x = as_kernel_array(x0, typenum)
    cdef cnp.ndarray t = as_kernel_array(in_input_dtype(t0, x0), typenum)
    if go is not None:
        go = as_kernel_array(go, typenum)
    cdef cnp.ndarray xb = x if not x_bcast else np.broadcast_to(x, bshape)
    cdef cnp.ndarray tb = t if same or tshape == bshape else np.broadcast_to(t, bshape)
    perm = _memory_order(xb)

    cdef cnp.ndarray g = None
    if want_grad:
        if x_bcast:
            g = _empty_in_order(bshape, perm, typenum)
        elif out_is_x:
            g = x  # x0 itself, or its working copy (written back below)
        elif (g_user is not None and cnp.PyArray_TYPE(g_user) == typenum and is_native_aligned(g_user)
              and strides_in_elements(g_user)):
            g = g_user
        else:
            g = _empty_in_order(bshape, perm, typenum)
    cdef cnp.ndarray loss_arr = None
    if red == REDUCE_NONE:
        loss_arr = _empty_in_order(bshape, perm, typenum)

    # ---- the iteration: permuted axes, size-1 axes dropped, mergeable neighbours merged ---
    ops = [xb, tb] + ([go] if go is not None else []) + ([g] if g is not None else []) \
        + ([loss_arr] if loss_arr is not None else [])
    keep = []  # groups of permuted axes, each walked as one
    cdef fl_index inner_size
    for d in range(nd):
        if bshape[perm[d]] == 1:
            continue
        if keep:
            q = keep[len(keep) - 1][len(keep[len(keep) - 1]) - 1]
            mergeable = True
            for o in ops:
                if (<cnp.ndarray>o).strides[perm[q]] != (<cnp.ndarray>o).strides[perm[d]] * bshape[perm[d]]:
                    mergeable = False
                    break
            if mergeable:
                keep[len(keep) - 1].append(d)
                continue
        keep.append([d])

    cdef fl_reg_args a
    a.kind = kind
    a.param = p
    a.call.dtype = FL_DTYPE_F32 if typenum == cnp.NPY_FLOAT else FL_DTYPE_F64
    a.call.simd = simd_path()
    a.call.nthreads = _threads._num_threads
    a.call.reduction = red
    a.call.grad_scale = go_scalar
    a.call.batch = 1.0
    a.x = cnp.PyArray_DATA(xb)
    a.y = cnp.PyArray_DATA(tb)
    a.grad_out = cnp.PyArray_DATA(go) if go is not None else NULL
    a.grad = cnp.PyArray_DATA(g) if g is not None else NULL
    a.loss = cnp.PyArray_DATA(loss_arr) if loss_arr is not None else NULL
    cdef int i
    if not keep:  # one element (or a 0-d problem)
        a.ndim = 1
        a.shape[0] = numel
        a.xs[0] = a.ys[0] = a.gos[0] = a.gs[0] = a.ls[0] = 0
    else:
        a.ndim = len(keep)
        last = [grp[len(grp) - 1] for grp in keep]
        for i in range(a.ndim):
            a.shape[i] = 1
            for d in keep[i]:
                a.shape[i] *= <fl_index>bshape[perm[d]]
        _set_strides(a.xs, xb, perm, last)
        _set_strides(a.ys, tb, perm, last)
        if go is not None:
            _set_strides(a.gos, go, perm, last)
        else:
            for i in range(a.ndim):
                a.gos[i] = 0
        if g is not None:
            _set_strides(a.gs, g, perm, last)
        else:
            for i in range(a.ndim):
                a.gs[i] = 0
        if loss_arr is not None:
            _set_strides(a.ls, loss_arr, perm, last)
        else:
            for i in range(a.ndim):
                a.ls[i] = 0

    # ---- the one C call: kernel and reduction (the GIL released only for work worth the
    # round trip) ---------------------------------------------------------------------------
    cdef int status
    if numel >= FL_BLOCK_ELEMENTS:
        with nogil:
            status = fl_regression(&a)
    else:
        status = fl_regression(&a)
    if status == FL_ERR_NOMEM:
        raise MemoryError(f"{name}: out of memory")
    if stats is not None:
        call_stats(stats, &a.call)

    cdef int out_type = cnp.PyArray_TYPE(x0)
    if red == REDUCE_NONE:
        loss = loss_arr if out_type == typenum else loss_arr.astype(x0.dtype)
    else:
        loss = loss_scalar(a.call.value, out_type)
    if not want_grad:
        return loss

    if x_bcast:
        # sum the gradient over the axes the input was broadcast along
        lead = nd - len(xshape)
        gsum = g.sum(axis=tuple(range(lead))) if lead else g
        axes = tuple(d for d in range(len(xshape)) if xshape[d] == 1 and bshape[lead + d] != 1)
        if axes:
            gsum = gsum.sum(axis=axes, keepdims=True)
        g = np.asarray(gsum).reshape(xshape)
    if g_user is not None:
        if g is not g_user:
            np.copyto(g_user, g, casting="unsafe")
        return loss, g_user
    if cnp.PyArray_TYPE(g) != out_type:
        g = g.astype(x0.dtype)
    return loss, g


_DOC_PARAMS = """
    Parameters
    ----------
    input : array_like of float16, float32 or float64
        Predictions x, any shape (float16 is computed in float32).
    target : array_like
        Targets y (real dtype, cast to the input's dtype). Input and target broadcast
        together as in torch (a UserWarning is emitted, as torch does, when their shapes
        differ); the loss has the broadcast shape.
    reduction : {"mean", "sum", "none"}, default "mean"
        "none": the per-element losses (broadcast shape); "sum": their sum; "mean": their
        sum over their number (nan for empty input; "sum" of nothing is 0).
"""

_DOC_GRAD = """
    grad_output : float or array_like, optional
        The upstream gradient g (default 1): a scalar for "mean"/"sum"; for "none" a scalar
        or an array that broadcasts to the loss's shape.
    out : ndarray, optional
        Where to write the gradient: the input's shape and dtype, writeable, any layout.
        ``out=input`` or ``out=target`` (exactly that array, of the input's shape and dtype)
        overwrites it; an ``out`` that otherwise overlaps an argument is a ValueError.

    Returns
    -------
    (loss, grad) : loss as without gradient; grad = d(sum(loss * g)) / d(input), of the
        input's shape and dtype (``out`` when given). When the input is broadcast (its shape
        smaller than the loss's), the gradient is summed back to the input's shape.
"""

_DOC_RAISES = """
    Raises
    ------
    TypeError for a non-float input or a non-real target, ValueError for shapes that do not
    broadcast and for option values.
"""


def mse_loss(input, target, reduction="mean"):
    return _regression(FL_REG_MSE, input, target, reduction, None, None, None, False, None)


def mse_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None):
    return _regression(FL_REG_MSE, input, target, reduction, None, grad_output, out, True, None)


def l1_loss(input, target, reduction="mean"):
    return _regression(FL_REG_L1, input, target, reduction, None, None, None, False, None)


def l1_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None):
    return _regression(FL_REG_L1, input, target, reduction, None, grad_output, out, True, None)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    return _regression(FL_REG_SMOOTH_L1, input, target, reduction, beta, None, None, False, None)


def smooth_l1_loss_with_grad(input, target, reduction="mean", beta=1.0, grad_output=None, out=None):
    return _regression(FL_REG_SMOOTH_L1, input, target, reduction, beta, grad_output, out, True, None)


def huber_loss(input, target, reduction="mean", delta=1.0):
    return _regression(FL_REG_HUBER, input, target, reduction, delta, None, None, False, None)


def huber_loss_with_grad(input, target, reduction="mean", delta=1.0, grad_output=None, out=None):
    return _regression(FL_REG_HUBER, input, target, reduction, delta, grad_output, out, True, None)


mse_loss.__doc__ = """Mean squared error, as torch.nn.functional.mse_loss.
""" + _DOC_PARAMS + """
    Returns
    -------
    loss : NumPy scalar of the input's dtype, or an array for reduction="none".

    Notes
    -----
    Per element, ``loss = (x - y) ** 2``.
""" + _DOC_RAISES

mse_loss_with_grad.__doc__ = """Mean squared error and its gradient with respect to the input, in one pass.
""" + _DOC_PARAMS + _DOC_GRAD + """
    Notes
    -----
    Per element, ``loss = (x - y) ** 2`` and ``grad = 2 * (x - y) * s`` with s the upstream
    factor (g, divided by the number of elements for "mean").
""" + _DOC_RAISES

l1_loss.__doc__ = """Mean absolute error, as torch.nn.functional.l1_loss.
""" + _DOC_PARAMS + """
    Returns
    -------
    loss : NumPy scalar of the input's dtype, or an array for reduction="none".

    Notes
    -----
    Per element, ``loss = |x - y|``.
""" + _DOC_RAISES

l1_loss_with_grad.__doc__ = """Mean absolute error and its gradient with respect to the input, in one pass.
""" + _DOC_PARAMS + _DOC_GRAD + """
    Notes
    -----
    Per element, ``loss = |x - y|`` and ``grad = sign(x - y) * s`` (s: g, divided by the
    number of elements for "mean"); as in torch the gradient is 0 where x - y is 0 or nan.
""" + _DOC_RAISES

smooth_l1_loss.__doc__ = """Smooth L1 loss, as torch.nn.functional.smooth_l1_loss.
""" + _DOC_PARAMS + """
    beta : float, default 1.0
        Where the loss turns from quadratic to linear; >= 0 (beta = 0 is l1_loss).

    Returns
    -------
    loss : NumPy scalar of the input's dtype, or an array for reduction="none".

    Notes
    -----
    Per element, with ``z = |x - y|``::

        loss = 0.5 * z ** 2 / beta   if z < beta
               z - 0.5 * beta        otherwise
""" + _DOC_RAISES

smooth_l1_loss_with_grad.__doc__ = """Smooth L1 loss and its gradient with respect to the input, in one pass.
""" + _DOC_PARAMS + """
    beta : float, default 1.0
        Where the loss turns from quadratic to linear; >= 0 (beta = 0 is l1_loss).
""" + _DOC_GRAD + """
    Notes
    -----
    Per element, with ``d = x - y``, ``z = |d|`` and s the upstream factor::

        loss = 0.5 * z ** 2 / beta   if z < beta,   z - 0.5 * beta   otherwise
        grad = s                     if d > beta
               -s                    if d < -beta
               d / beta * s          otherwise
""" + _DOC_RAISES

huber_loss.__doc__ = """Huber loss, as torch.nn.functional.huber_loss.
""" + _DOC_PARAMS + """
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; must be > 0.

    Returns
    -------
    loss : NumPy scalar of the input's dtype, or an array for reduction="none".

    Notes
    -----
    Per element, with ``z = |x - y|``::

        loss = 0.5 * z ** 2                 if z < delta
               delta * (z - 0.5 * delta)    otherwise
""" + _DOC_RAISES

huber_loss_with_grad.__doc__ = """Huber loss and its gradient with respect to the input, in one pass.
""" + _DOC_PARAMS + """
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; must be > 0.
""" + _DOC_GRAD + """
    Notes
    -----
    Per element, with ``d = x - y``, ``z = |d|`` and s the upstream factor::

        loss = 0.5 * z ** 2   if z < delta,   delta * (z - 0.5 * delta)   otherwise
        grad = delta * s      if d > delta
               -delta * s     if d < -delta
               d * s          otherwise
""" + _DOC_RAISES


def _regression_stats(str name, input, target, reduction="mean", param=None, grad_output=None,
                      out=None, want_grad=True):
    """For tests: (result, stats) where stats tells the threads and SIMD path that ran.
    name is one of "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"."""
    cdef int kind = {v: k for k, v in _NAMES.items()}[name]
    if param is None:
        param = 1.0
    stats = {}
    result = _regression(kind, input, target, reduction, param, grad_output, out, want_grad, stats)
    return result, stats


def _kernel_names():
    """The names of the regression kernels the dispatch table holds for the active path."""
    return kernel_names(fl_regression_kernels, simd_path())
