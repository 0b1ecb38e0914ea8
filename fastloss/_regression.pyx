# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Regression losses (mse, l1, smooth_l1, huber): the Cython layer over csrc/regression.c.

Input and target are broadcast as torch broadcasts them (with torch's warning when their
shapes differ), their axes ordered by the input's memory order and merged (the planner,
fastloss/_plan.pyx), so same-shape contiguous operands in any order reach the kernel as one
flat axis of stride 1 and the gradient goes straight into ``out``. A broadcast input's
gradient is computed in the loss's shape and summed back. ``fastloss/reference.py`` is the
slow NumPy twin.
"""
cimport numpy as cnp

import warnings

import numpy as np

from fastloss._csrc cimport *
from fastloss._plan cimport *

from fastloss import _plan

cnp.import_array()

_NAMES = {0: "mse_loss", 1: "l1_loss", 2: "smooth_l1_loss", 3: "huber_loss"}


cdef object _regression(int kind, object input, object target, object reduction, object param,
                        object grad_output, object out, bint want_grad):
    cdef Call p = start(input, "input", want_grad, True)
    cdef cnp.ndarray x0 = p.x0
    p.red = parse_reduction(reduction)
    cdef double beta = 0.0
    if kind == FL_REG_SMOOTH_L1:
        beta = real_option(param, "beta")
        if not (beta >= 0.0):
            raise ValueError("smooth_l1_loss does not support negative values for beta.")
        if beta == 0.0:
            kind = FL_REG_L1  # torch: smooth_l1 with beta == 0 is l1
    elif kind == FL_REG_HUBER:
        beta = real_option(param, "delta")
        if not (beta > 0.0):
            raise ValueError("huber_loss does not support non-positive values for delta.")

    # ---- target (broadcast against the input as torch does, with its warning) ----------------
    cdef cnp.ndarray t0 = as_array(target)
    if not (is_real(t0) or cnp.PyArray_ISBOOL(t0)):
        raise TypeError(f"target must be a real array, got dtype {t0.dtype}")
    if kind != FL_REG_HUBER:
        p.promote(t0)  # torch promotes mse/l1/smooth_l1 targets; huber keeps the input's dtype
    cdef tuple xshape = np.shape(x0), tshape = np.shape(t0), shape = xshape
    cdef bint same = cnp.PyArray_SAMESHAPE(x0, t0)
    if not same:
        try:
            shape = tuple(np.broadcast_shapes(xshape, tshape))
        except ValueError:
            raise ValueError(f"The size of target {tshape} does not broadcast with the size of "
                             f"input {xshape}") from None
        warnings.warn(f"Using a target size ({tshape}) that is different to the input size "
                      f"({xshape}). This will likely lead to incorrect results due to "
                      "broadcasting. Please ensure they have the same size.", UserWarning, stacklevel=3)
    p.upstream(grad_output, shape)
    p.check_out(out, t0, "target", None, None, same)  # out=target, exactly, too

    # ---- every operand in the loss's shape, axes merged in the input's memory order ------------
    cdef cnp.ndarray x = p.operand(x0), xb, tb, go = p.kernel_go(shape)
    xb = x if xshape == shape else np.broadcast_to(x, shape)
    tb = p.operand(t0)
    tb = tb if same or tshape == shape else np.broadcast_to(tb, shape)
    order = memory_order(xb)
    cdef fl_reg_args a
    cdef fl_index *strides[5]
    strides[:] = [&a.xs[0], &a.ys[0], &a.gos[0], &a.gs[0], &a.ls[0]]
    ops = [xb, tb, go, p.elementwise_grad(x, shape, order) if want_grad else None,
           p.loss_buffer(shape, order)]
    a.ndim = merge_axes(shape, order, ops, FL_REG_MAXDIM, 1, a.shape, strides)
    a.kind, a.param = kind, beta
    a.x, a.y, a.grad_out, a.grad, a.loss = data(xb), data(tb), data(go), data(p.g), data(p.losses)
    return p.run(fl_regression, &a.call, xb.size, _NAMES[kind])


def mse_loss(input, target, reduction="mean"):
    return _regression(FL_REG_MSE, input, target, reduction, None, None, None, False)


def mse_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None):
    return _regression(FL_REG_MSE, input, target, reduction, None, grad_output, out, True)


def l1_loss(input, target, reduction="mean"):
    return _regression(FL_REG_L1, input, target, reduction, None, None, None, False)


def l1_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None):
    return _regression(FL_REG_L1, input, target, reduction, None, grad_output, out, True)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    return _regression(FL_REG_SMOOTH_L1, input, target, reduction, beta, None, None, False)


def smooth_l1_loss_with_grad(input, target, reduction="mean", beta=1.0, grad_output=None, out=None):
    return _regression(FL_REG_SMOOTH_L1, input, target, reduction, beta, grad_output, out, True)


def huber_loss(input, target, reduction="mean", delta=1.0):
    return _regression(FL_REG_HUBER, input, target, reduction, delta, None, None, False)


def huber_loss_with_grad(input, target, reduction="mean", delta=1.0, grad_output=None, out=None):
    return _regression(FL_REG_HUBER, input, target, reduction, delta, grad_output, out, True)


_GRAD_PARAMS = _plan.GRAD_PARAMS.replace(  # out= may be the target too
    """``out=input`` (exactly that array) is overwritten with the gradient; an ``out`` that
        otherwise overlaps an argument is a ValueError.""",
    """``out=input`` or ``out=target`` (exactly that array; a target of the input's shape
        and dtype) is overwritten with the gradient; any other overlap is a ValueError.""")


cdef _document(f, f_grad, str title, str target_dtype, str option, str notes, str grad_notes):
    """The docstrings of one loss and its _with_grad twin, from their parts."""
    params = f"""
    Parameters
    ----------
    input : array_like of float16, bfloat16, float32 or float64
        Predictions x, any shape (float16 and bfloat16 are computed in float32).
    target : array_like
        Targets y (real dtype; {target_dtype}). Input and target broadcast together as in
        torch (a UserWarning is emitted, as torch does, when their shapes differ); the loss
        has the broadcast shape.
    reduction : {{"mean", "sum", "none"}}, default "mean"
        "none": the per-element losses (broadcast shape); "sum": their sum; "mean": their
        sum over their number (nan for empty input; "sum" of nothing is 0).{option}"""
    raises = """
    Raises
    ------
    TypeError for a non-float input or a non-real target, ValueError for shapes that do not
    broadcast and for option values.
"""
    f.__doc__ = f"""{title}, as torch.nn.functional.{f.__name__}.
{params}

    Returns
    -------
    loss : NumPy scalar of the loss's dtype, or an array for reduction="none".

    Notes
    -----
    {notes}
{raises}"""
    f_grad.__doc__ = f"""{title} and its gradient with respect to the input, in one pass.
{params}
    {_GRAD_PARAMS}

    Notes
    -----
    {grad_notes}
{raises}"""


_PROMOTED = "a floating target of another dtype gives the loss torch's promoted dtype"
_document(mse_loss, mse_loss_with_grad, "Mean squared error", _PROMOTED, "",
          "Per element, ``loss = (x - y) ** 2``.",
          """Per element, ``loss = (x - y) ** 2`` and ``grad = 2 * (x - y) * s`` with s the upstream
    factor (g, divided by the number of elements for "mean").""")
_document(l1_loss, l1_loss_with_grad, "Mean absolute error", _PROMOTED, "",
          "Per element, ``loss = |x - y|``.",
          """Per element, ``loss = |x - y|`` and ``grad = sign(x - y) * s`` (s: g, divided by the
    number of elements for "mean"); as in torch the gradient is 0 where x - y is 0 or nan.""")
_document(smooth_l1_loss, smooth_l1_loss_with_grad, "Smooth L1 loss", _PROMOTED, """
    beta : float, default 1.0
        Where the loss turns from quadratic to linear; >= 0 (beta = 0 is l1_loss).""",
          """Per element, with ``z = |x - y|``::

        loss = 0.5 * z ** 2 / beta   if z < beta
               z - 0.5 * beta        otherwise""",
          """Per element, with ``d = x - y``, ``z = |d|`` and s the upstream factor::

        loss = 0.5 * z ** 2 / beta   if z < beta,   z - 0.5 * beta   otherwise
        grad = s                     if d > beta
               -s                    if d < -beta
               d / beta * s          otherwise""")
_document(huber_loss, huber_loss_with_grad, "Huber loss", "held in the input's dtype, as torch", """
    delta : float, default 1.0
        Where the loss turns from quadratic to linear; must be > 0.""",
          """Per element, with ``z = |x - y|``::

        loss = 0.5 * z ** 2                 if z < delta
               delta * (z - 0.5 * delta)    otherwise""",
          """Per element, with ``d = x - y``, ``z = |d|`` and s the upstream factor::

        loss = 0.5 * z ** 2   if z < delta,   delta * (z - 0.5 * delta)   otherwise
        grad = delta * s      if d > delta
               -delta * s     if d < -delta
               d * s          otherwise""")


def _kernel_names():  # for kernel_info(): what the dispatch table holds
    return kernel_names(fl_regression_kernels)
