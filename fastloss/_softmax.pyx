# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Softmax and log-softmax along any axis, forward and backward: the Cython layer over
csrc/softmax.c (the shared steps: fastloss/_plan.pyx; the slow twin: fastloss/reference.py).

An array of shape (a0, ..., C, b0, ...) with the softmax over the axis of length C is viewed
as (n, C, s), the outer and the inner axes each merged into one stride when the memory
allows (else copied); (n, C, 1) becomes (1, C, n). 0-d input is taken as shape (1,).
"""
cimport numpy as cnp

import numpy as np

from fastloss._csrc cimport *
from fastloss._plan cimport *

cnp.import_array()


cdef int _normalize_axis(object axis, int nd) except -1:
    ax = int_option(axis, "axis")
    cdef int n = nd if nd > 0 else 1  # 0-d input: axis 0 or -1, as torch
    if not (-n <= ax < n):
        # AxisError is both a ValueError and an IndexError (torch raises IndexError)
        raise np.exceptions.AxisError(ax, n)
    return ax + n if ax < 0 else ax


cdef object _softmax(object input, object output, object axis, object out, bint log, bint backward):
    cdef Call p = start(input, "grad_output" if backward else "input", True, True)
    p.output_only = True
    cdef cnp.ndarray x0 = p.x0, y0 = None, x, y = None
    if backward:
        y0 = as_array(output)
        float_compute_type(y0, "output")
        if not cnp.PyArray_SAMESHAPE(y0, x0):
            raise ValueError(f"output has shape {np.shape(y0)}, expected the shape of grad_output "
                             f"{np.shape(x0)}")
    cdef int ax = _normalize_axis(axis, cnp.PyArray_NDIM(x0)), d
    # out= may be exactly grad_output / input or exactly output
    cdef bint in_y = p.check_out(out, y0, "output", None, None, True)

    # the (n, C, s) views of x, y and the result; 0-d input is taken as shape (1,)
    cdef fl_view v[3]
    x, y = p.operand(x0), p.operand(y0) if backward else None
    if cnp.PyArray_NDIM(x0) == 0:
        x, y = x.reshape(1), y.reshape(1) if backward else None
    x = class_view(x, ax, ax + 1, &v[0])
    y = class_view(y, ax, ax + 1, &v[1])
    if in_y:
        p.g, v[2] = y, v[1]
    else:
        p.class_grad(x, ax, &v[2])
    cdef fl_softmax_args a
    a.n, a.c, a.s = 1, cnp.PyArray_DIM(x, ax), 1
    for d in range(ax):
        a.n *= cnp.PyArray_DIM(x, d)
    for d in range(ax + 1, cnp.PyArray_NDIM(x)):
        a.s *= cnp.PyArray_DIM(x, d)
    rows_as_positions(&a.n, &a.s, v, 3)
    a.log, a.backward = log, backward
    a.x, a.y, a.out = data(x), data(y), data(p.g)
    a.xv, a.yv, a.ov = v[0], v[1], v[2]
    return p.run(fl_softmax, &a.call, a.n * a.s * a.c, "softmax")


def log_softmax(input, axis=-1, out=None):
    """Log-softmax along one axis, as ``torch.log_softmax(input, dim=axis)``.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64, any shape (0-d is taken as shape (1,))
        Any memory layout; float16 and bfloat16 are computed in float32, each output rounded
        once to their dtype.
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
    return _softmax(input, None, axis, out, True, False)


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
    return _softmax(input, None, axis, out, False, False)


def log_softmax_backward(grad_output, output, axis=-1, out=None):
    """Gradient of log-softmax, as ``torch._log_softmax_backward_data``.

    Parameters
    ----------
    grad_output : array_like of float16, bfloat16, float32 or float64
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
    return _softmax(grad_output, output, axis, out, True, True)


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
    return _softmax(grad_output, output, axis, out, False, True)

def _kernel_names():  # for kernel_info(): what the dispatch table holds
    return kernel_names(fl_softmax_kernels)
