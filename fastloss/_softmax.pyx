# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax and log-softmax along any axis, forward and backward: the Cython layer between
the public functions and csrc/softmax.c.

Design (as for every loss in fastloss): this module checks every argument with the GIL
held and builds the kernel's view, the kernel (csrc/softmax.c) computes with the GIL
released and never raises. ``fastloss/_reference_softmax_nll.py`` is the slow NumPy twin.

View: an array of shape (a0, ..., a_{k-1}, C, b0, ..., b_{m-1}) with the softmax over axis k
becomes (n, C, s), n = a0 * ... * a_{k-1} outer positions and s = b0 * ... * b_{m-1} inner
positions, each group of axes merged into one stride when the memory allows it (else the
array is copied). When s == 1 the view is (1, C, n) instead, so that one rule picks the
kernel layout from the strides: axis contiguous -> rows, positions contiguous -> columns,
anything else -> a scalar strided loop. 0-d input is treated as shape (1,).
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

import numpy as np

from fastloss._csrc cimport *
from fastloss._validation cimport *
from fastloss._runtime cimport simd_path

from fastloss import _threads

cnp.import_array()


cdef bint _view(cnp.ndarray a, int axis, fl_index *sn, fl_index *sc, fl_index *ss):
    """(n, C, s) element strides of a kernel array, False when its axes do not merge."""
    if not strides_in_elements(a):
        return False
    if not merged_range(a, 0, axis, sn) or not merged_range(a, axis + 1, cnp.PyArray_NDIM(a), ss):
        return False
    sc[0] = elem_stride(a, axis)
    return True


cdef cnp.ndarray _viewable(cnp.ndarray a, int axis, fl_index *sn, fl_index *sc, fl_index *ss):
    """a itself when its axes merge, else a C-ordered copy."""
    if _view(a, axis, sn, sc, ss):
        return a
    a = np.ascontiguousarray(a)
    _view(a, axis, sn, sc, ss)
    return a


cdef int _normalize_axis(object axis, int nd) except -1:
    ax = int_option(axis, "axis")
    cdef int n = nd if nd > 0 else 1  # 0-d input: axis 0 or -1, as torch
    if not (-n <= ax < n):
        # AxisError is both a ValueError and an IndexError (torch raises IndexError)
        raise np.exceptions.AxisError(ax, n)
    return ax + n if ax < 0 else ax


cdef object _softmax(object input, object output, object axis, object out, bint log, bint backward,
                     dict stats):
    cdef str xname = "grad_output" if backward else "input"
    cdef cnp.ndarray x0 = as_array(input)
    cdef int typenum = float_compute_type(x0, xname)
    cdef cnp.ndarray y0 = None
    if backward:
        y0 = as_array(output)
        float_compute_type(y0, "output")
        if not same_shape(y0, x0):
            raise ValueError(f"output has shape {np.shape(y0)}, expected the shape of grad_output "
                             f"{np.shape(x0)}")
    cdef int ax = _normalize_axis(axis, cnp.PyArray_NDIM(x0))

    # ---- out= --------------------------------------------------------------------------
    cdef cnp.ndarray o_user = None
    cdef bint in_x = False, in_y = False
    if out is not None:
        o_user = check_out(out, x0, "out")
        if same_view(o_user, x0):
            in_x = True
        elif shares_memory(o_user, x0):
            raise ValueError(f"out partially overlaps {xname} (out={xname}, exactly, computes in place)")
        if y0 is not None:
            if same_view(o_user, y0):
                in_y = True
            elif shares_memory(o_user, y0):
                raise ValueError("out partially overlaps output (out=output, exactly, computes in place)")

    # ---- the kernel's views ---------------------------------------------------------------
    cdef bint scalar = cnp.PyArray_NDIM(x0) == 0
    cdef cnp.ndarray x = as_kernel_array(x0, typenum), y = None, o
    if scalar:
        x = x.reshape(1)
    cdef fl_index x_sn, x_sc, x_ss, y_sn = 0, y_sc = 0, y_ss = 0, o_sn, o_sc, o_ss
    x = _viewable(x, ax, &x_sn, &x_sc, &x_ss)
    if backward:
        y = as_kernel_array(in_input_dtype(y0, x0), typenum)
        if scalar:
            y = y.reshape(1)
        y = _viewable(y, ax, &y_sn, &y_sc, &y_ss)
    if in_x:
        o = x  # x0 itself, or its working copy (written back below)
    elif in_y:
        o = y
    elif (o_user is not None and cnp.PyArray_TYPE(o_user) == typenum and is_native_aligned(o_user)
          and not scalar and _view(o_user, ax, &o_sn, &o_sc, &o_ss)):
        o = o_user
    else:
        o = np.empty_like(x)
    if not _view(o, ax, &o_sn, &o_sc, &o_ss):
        o = np.empty_like(x, order="C")
        _view(o, ax, &o_sn, &o_sc, &o_ss)

    cdef fl_softmax_args a
    cdef int d, nd = cnp.PyArray_NDIM(x)
    a.n = 1
    a.s = 1
    for d in range(ax):
        a.n *= cnp.PyArray_DIM(x, d)
    for d in range(ax + 1, nd):
        a.s *= cnp.PyArray_DIM(x, d)
    a.c = cnp.PyArray_DIM(x, ax)
    a.log = log
    a.backward = backward
    a.x = cnp.PyArray_DATA(x)
    a.y = cnp.PyArray_DATA(y) if y is not None else NULL
    a.out = cnp.PyArray_DATA(o)
    if a.s == 1:  # (n, C, 1) -> (1, C, n): positions along s
        a.s, a.n = a.n, 1
        x_ss, x_sn, y_ss, y_sn, o_ss, o_sn = x_sn, 0, y_sn, 0, o_sn, 0
    a.x_sn, a.x_sc, a.x_ss = x_sn, x_sc, x_ss
    a.y_sn, a.y_sc, a.y_ss = y_sn, y_sc, y_ss
    a.o_sn, a.o_sc, a.o_ss = o_sn, o_sc, o_ss
    a.call.dtype = FL_DTYPE_F32 if typenum == cnp.NPY_FLOAT else FL_DTYPE_F64
    a.call.simd = simd_path()
    a.call.nthreads = _threads._num_threads
    a.call.reduction = FL_REDUCE_NONE
    a.call.grad_scale = 1.0
    a.call.batch = 1.0

    if a.n * a.s * a.c >= FL_BLOCK_ELEMENTS:
        with nogil:
            fl_softmax(&a)
    else:
        fl_softmax(&a)
    if stats is not None:
        call_stats(stats, &a.call)

    if o_user is not None:
        if o is not o_user:
            np.copyto(o_user, o.reshape(np.shape(o_user)), casting="unsafe")
        return o_user
    if scalar:
        o = o.reshape(())
    if cnp.PyArray_TYPE(x0) != typenum:
        o = o.astype(np.float16)  # native byte order
    return o


def log_softmax(input, axis=-1, out=None):
    """Log-softmax along one axis, as ``torch.log_softmax(input, dim=axis)``.

    Parameters
    ----------
    input : array_like of float16, float32 or float64, any shape (0-d is taken as shape (1,))
        Any memory layout; float16 is computed in float32.
    axis : int, default -1
        The axis to normalize over (negative counts from the end). Out of range:
        ``numpy.exceptions.AxisError`` (a ValueError and an IndexError).
    out : ndarray, optional
        Where to write the result: the input's shape and dtype, writeable, any layout.
        ``out=input`` (exactly that array) computes in place; any other overlap is a
        ValueError.

    Returns
    -------
    ndarray of the input's shape and dtype (``out`` when given).

    Notes
    -----
    Along the axis, with ``m = max_k x[k]``::

        y[k] = (x[k] - m) - log(sum_j exp(x[j] - m))

    the sum accumulated and its log taken in double. A NaN or +inf anywhere along the axis,
    or all entries -inf, gives NaN along the whole axis (as torch).
    """
    return _softmax(input, None, axis, out, True, False, None)


def softmax(input, axis=-1, out=None):
    """Softmax along one axis, as ``torch.softmax(input, dim=axis)``.

    Parameters and returns are those of :func:`log_softmax`.

    Notes
    -----
    Along the axis, with ``m = max_k x[k]``::

        y[k] = exp(x[k] - m) / sum_j exp(x[j] - m)

    the sum accumulated in double. A NaN or +inf anywhere along the axis, or all entries
    -inf, gives NaN along the whole axis (as torch).
    """
    return _softmax(input, None, axis, out, False, False, None)


def log_softmax_backward(grad_output, output, axis=-1, out=None):
    """Gradient of log-softmax, as ``torch._log_softmax_backward_data``.

    Parameters
    ----------
    grad_output : array_like of float16, float32 or float64
        The upstream gradient g, any shape and layout.
    output : array_like, same shape as grad_output
        The forward result y = log_softmax(x, axis) (cast to grad_output's dtype).
    axis : int, default -1
    out : ndarray, optional
        Where to write the result: grad_output's shape and dtype, any layout.
        ``out=grad_output`` or ``out=output`` (exactly) computes in place.

    Returns
    -------
    ndarray: the gradient with respect to x, grad_output's shape and dtype.

    Notes
    -----
    Along the axis::

        grad[k] = g[k] - exp(y[k]) * sum_j g[j]

    the sum accumulated in double.
    """
    return _softmax(grad_output, output, axis, out, True, True, None)


def softmax_backward(grad_output, output, axis=-1, out=None):
    """Gradient of softmax, as ``torch._softmax_backward_data``.

    Parameters and returns are those of :func:`log_softmax_backward`, with
    y = softmax(x, axis) as ``output``.

    Notes
    -----
    Along the axis::

        grad[k] = y[k] * (g[k] - sum_j g[j] * y[j])

    the sum accumulated in double.
    """
    return _softmax(grad_output, output, axis, out, False, True, None)


def _softmax_stats(name, *args, **kwargs):
    """For tests: (result, stats) of the public function ``name``, stats telling the threads
    and SIMD path that ran."""
    stats = {}
    log = name in ("log_softmax", "log_softmax_backward")
    backward = name.endswith("_backward")
    if backward:
        grad_output, output = args[0], args[1]
        axis = args[2] if len(args) > 2 else kwargs.get("axis", -1)
        out = kwargs.get("out")
        result = _softmax(grad_output, output, axis, out, log, True, stats)
    else:
        axis = args[1] if len(args) > 1 else kwargs.get("axis", -1)
        result = _softmax(args[0], None, axis, kwargs.get("out"), log, False, stats)
    return result, stats


def _kernel_names():
    """The names of the softmax kernels the dispatch table holds for the active path."""
    return kernel_names(fl_softmax_kernels, simd_path())
