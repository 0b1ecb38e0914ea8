# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""NLL loss: the Cython layer between the public functions and csrc/nll_loss.c.

The argument spec of nll_loss and its one C call, as in ``_cross_entropy.pyx`` (the design:
fastloss/_plan.pyx). Input (C,), (N, C) or (N, C, d1..dk) is viewed as (n, C, s); (N, C)
becomes (1, C, N) so that a Fortran-ordered input zero-fills its gradient along contiguous
runs. ``fastloss/reference.py`` is the slow NumPy twin.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

import numpy as np

from fastloss._csrc cimport *
from fastloss._plan cimport *

from fastloss._plan import document

cnp.import_array()


cdef object _nll_loss(object input, object target, object weight, object ignore_index,
                      object reduction, object grad_output, object out, bint want_grad):
    cdef Call p = start(input, "input", want_grad, True)
    cdef cnp.ndarray x0 = p.x0, t0 = as_array(target)
    cdef int nd = cnp.PyArray_NDIM(x0)
    if nd == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    p.red = parse_reduction(reduction)
    ignore = int64_option(ignore_index, "ignore_index")
    cdef cnp.ndarray t = index_target(t0, x0, cnp.PyArray_DIM(x0, 1 if nd >= 2 else 0), ignore)
    cdef fl_nll_args a
    cdef fl_view v[4]  # x, target, grad_output, gradient
    cdef fl_index dims[3]
    p.class_operands(t0, t, False, weight, grad_output, out, v, dims)
    a.n, a.c, a.s = dims[0], dims[1], dims[2]
    a.xv, a.tv, a.gov, a.gv = v[0], v[1], v[2], v[3]
    a.x, a.target, a.weight, a.grad_out = data(p.x), data(p.t), data(p.w), data(p.go)
    a.grad, a.loss = data(p.g), data(p.losses)
    a.target_kind = FL_TARGET_I32 if cnp.PyArray_ITEMSIZE(t) == 4 else FL_TARGET_I64
    a.ignore_index = <int64_t>ignore
    return p.run(fl_nll_loss, &a.call, a.n * a.s * (a.c if want_grad and a.c > 1 else 1), "nll_loss")


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """Negative log-likelihood loss, as ``torch.nn.functional.nll_loss``.

    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Log-probabilities (e.g. from :func:`log_softmax`); the class axis is axis 1 (axis 0
        for 1-D input). Any memory layout; float16 and bfloat16 are read and written as
        they are, each result rounded once to their dtype.
    target : array_like of integers, shape (N, d1, ..., dk) (0-d or (1,) for 1-D input)
        Class indices, each in [0, C) or equal to ``ignore_index``. Floating targets are a
        TypeError (torch accepts only index targets here).
    weight : array_like of shape (C,), optional
        Per-class weight w (any real dtype, rounded to the input's dtype).
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
    return _nll_loss(input, target, weight, ignore_index, reduction, None, None, False)


def nll_loss_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                       grad_output=None, out=None):
    """NLL loss and its gradient with respect to the input, in one pass.

    Parameters are those of :func:`nll_loss`, plus:

    @GRAD_PARAMS@

    Notes
    -----
    With s the position's upstream factor (g, divided for "mean" by the sum of the kept
    targets' weights)::

        grad[k] = -s * w[t] * [k == t]     (all zero at an ignored position)
    """
    return _nll_loss(input, target, weight, ignore_index, reduction, grad_output, out, True)


document(nll_loss_with_grad)


def _kernel_names():  # for kernel_info(): what the dispatch table holds
    return kernel_names(fl_nll_loss_kernels)
