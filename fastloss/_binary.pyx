# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Elementwise binary losses: the Cython layer between the public functions and csrc/binary.c.

binary_cross_entropy, binary_cross_entropy_with_logits and kl_div (each with a ``_with_grad``
twin) share one kernel entry point (csrc/binary.h) and one wrapper here, ``_binary``:

* every argument is checked with the GIL held, before any kernel (binary_cross_entropy's
  [0, 1] domain check runs in C, over the kernel's own view, before anything is written);
* all operands -- input, target, weight, pos_weight, grad_output, the gradient and the
  per-element loss -- are viewed in the loss's shape (weight / pos_weight / grad_output
  broadcast with stride 0, never expanded) and their axes merged, in the input's memory
  order, into at most two: (rows, cols) with element strides. Contiguous data becomes one
  flat row. Layouts that do not merge into two axes are copied C-contiguous first, as are
  big-endian, unaligned and float16 operands (float16 is computed in float32);
* the kernel runs with the GIL released when the work is big enough.

kl_div broadcasts its input against its target as torch does; when the input itself is
broadcast, the gradient is computed in the loss's shape and summed over the broadcast axes.

``fastloss/reference.py`` is the slow NumPy twin used as the test oracle.
"""
cimport numpy as cnp
from libc.stdint cimport int64_t

import numpy as np

from fastloss._csrc cimport *
from fastloss._validation cimport *
from fastloss._runtime cimport simd_path

from fastloss import _threads

cnp.import_array()


# which loss (kl_div's two forms are told apart by log_target)
cdef enum:
    K_BCE = 0
    K_LOGITS = 1
    K_KL = 2


cdef inline bint _is_float(cnp.ndarray a):
    cdef int t = cnp.PyArray_TYPE(a)
    return t == cnp.NPY_FLOAT16 or t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE or t == cnp.NPY_LONGDOUBLE


cdef cnp.ndarray _operand(object a, str what, int typenum, tuple shape, cnp.ndarray x0):
    """weight / pos_weight: a real array broadcast (stride 0, no copy of the data) to the loss
    shape, in the kernel's dtype; only the small original is ever cast."""
    cdef cnp.ndarray v = as_array(a)
    if not (cnp.PyArray_ISINTEGER(v) or cnp.PyArray_ISFLOAT(v)):
        raise TypeError(f"{what} must be a real array, got dtype {v.dtype}")
    try:
        np.broadcast_to(v, shape)
    except ValueError:
        raise ValueError(f"{what} of shape {list(np.shape(v))} does not broadcast to the input "
                         f"shape {list(shape)}") from None
    return np.broadcast_to(_kernel_copy(in_input_dtype(v, x0), typenum), shape)


cdef cnp.ndarray _kernel_copy(cnp.ndarray a, int typenum):
    """a in the kernel's dtype, native, aligned, strides in whole elements (copied if not)."""
    a = as_kernel_array(a, typenum)
    if not strides_in_elements(a):
        a = np.ascontiguousarray(a)
    return a


cdef object _plan(tuple shape, list ops):
    """The operands' common (rows, cols) view: the axes of `shape` in the memory order of
    ops[0] (largest stride first), size-1 axes dropped, neighbours merged when every operand
    allows it. Returns (order, rows, cols, [(sr, sk), ...]) with element strides, or None
    when more than two axes remain."""
    cdef int nd = len(shape), d, i, nops = len(ops)
    if 0 in shape:
        # nothing to compute; empty operands may carry any strides (which need not merge)
        return list(range(nd)), 0, 0, [(0, 0)] * nops
    lead = ops[0]
    size = [abs(s) for s in lead.strides]
    order = sorted(range(nd), key=size.__getitem__, reverse=True)  # stable: ties keep C order
    axes = []
    for d in order:
        n = shape[d]
        if n == 1:
            continue
        st = [(<cnp.ndarray>op).strides[d] // (<cnp.ndarray>op).itemsize if op is not None else 0 for op in ops]
        if axes:
            prev = axes[len(axes) - 1]
            if all(prev[1][i] == st[i] * n for i in range(nops)):
                prev[0] *= n
                prev[1] = st
                continue
        axes.append([n, st])
    if len(axes) > 2:
        return None
    while len(axes) < 2:
        axes.insert(0, [1, [0] * nops])
    return order, axes[0][0], axes[1][0], [(axes[0][1][i], axes[1][1][i]) for i in range(nops)]


cdef cnp.ndarray _empty_in_order(tuple shape, object order, int typenum):
    """An empty array of `shape` whose memory runs in the axis order `order`."""
    perm = list(order)
    a = np.empty([shape[d] for d in perm], dtype=cnp.PyArray_DescrFromType(typenum))
    return a.transpose(np.argsort(perm))


cdef object _binary(int which, object input, object target, object weight, object pos_weight,
                    object reduction, object log_target, object grad_output, object out,
                    bint want_grad, dict stats):
    # ---- input, target, options ------------------------------------------------------------
    cdef cnp.ndarray x0 = as_array(input)
    cdef int typenum = float_compute_type(x0, "input")
    cdef cnp.ndarray t0 = as_array(target)
    if not _is_float(t0):
        raise TypeError(f"target must be a floating array, got dtype {t0.dtype}")
    cdef bint batchmean = False
    cdef int red
    if which == K_KL and isinstance(reduction, str) and reduction == "batchmean":
        batchmean = True
        red = REDUCE_SUM
    else:
        try:
            red = parse_reduction(reduction)
        except ValueError:
            if which == K_KL:
                raise ValueError(f"{reduction!r} is not a valid value for reduction "
                                 "(expected 'none', 'batchmean', 'mean' or 'sum')") from None
            raise
    cdef int kind = FL_BIN_BCE if which == K_BCE else FL_BIN_BCE_LOGITS
    if which == K_KL:
        if not isinstance(log_target, (bool, np.bool_)):
            raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
        kind = FL_BIN_KL_LOG if log_target else FL_BIN_KL

    cdef tuple xshape = np.shape(x0), shape
    if which == K_KL:
        try:
            shape = tuple(np.broadcast_shapes(xshape, np.shape(t0)))
        except ValueError:
            raise ValueError(f"The size of input {list(xshape)} and target {list(np.shape(t0))} "
                             "do not broadcast") from None
    else:
        if not same_shape(t0, x0):
            if which == K_BCE:
                raise ValueError(f"Using a target size ({list(np.shape(t0))}) that is different to the "
                                 f"input size ({list(xshape)}) is deprecated. Please ensure they have "
                                 "the same size.")
            raise ValueError(f"Target size ({list(np.shape(t0))}) must be the same as input size "
                             f"({list(xshape)})")
        shape = xshape
    cdef bint x_full = shape == xshape  # kl_div: False when the input is broadcast

    cdef cnp.ndarray w0 = None, w = None, p0 = None, pw = None
    if weight is not None and which != K_KL:
        w0 = as_array(weight)
        w = _operand(w0, "weight", typenum, shape, x0)
    if pos_weight is not None and which == K_LOGITS:
        p0 = as_array(pos_weight)
        pw = _operand(p0, "pos_weight", typenum, shape, x0)

    # ---- upstream gradient -----------------------------------------------------------------
    cdef double go_scalar = 1.0
    cdef cnp.ndarray go0 = None, go = None
    if want_grad and grad_output is not None:
        go_scalar, go0 = upstream_gradient(grad_output, red == REDUCE_NONE, tuple(shape))
        if go0 is not None:
            go = np.broadcast_to(_kernel_copy(go0, typenum), shape)

    # ---- out= ------------------------------------------------------------------------------
    cdef cnp.ndarray g_user = None
    cdef bint in_place = False
    if want_grad and out is not None:
        g_user = check_out(out, x0, "out")
        in_place = out_in_place(g_user, x0, t0, w0, p0, go0)

    # ---- the kernel's operands, all in the loss's shape --------------------------------------
    cdef cnp.ndarray x = _kernel_copy(x0, typenum)
    cdef cnp.ndarray t = _kernel_copy(in_input_dtype(t0, x0), typenum)
    cdef cnp.ndarray xb = x if x_full else np.broadcast_to(x, shape)
    cdef cnp.ndarray tb = t if same_shape(t, xb) else np.broadcast_to(t, shape)
    cdef cnp.ndarray g = None
    if want_grad:
        if not x_full:
            g = None  # chosen with the plan below (a temporary of the loss's shape)
        elif in_place:
            g = x  # x0 itself, or its working copy (written back below)
        elif (g_user is not None and cnp.PyArray_TYPE(g_user) == typenum and is_native_aligned(g_user)
              and strides_in_elements(g_user)):
            g = g_user
    lead = xb if x_full else tb
    cdef int d
    cdef cnp.ndarray loss_arr = None
    # provisional plan without the outputs, for their memory order
    plan = _plan(shape, [lead])
    order = plan[0] if plan is not None else list(range(len(shape)))
    if red == REDUCE_NONE:
        loss_arr = _empty_in_order(shape, order, typenum)
    if want_grad and g is None:
        g = _empty_in_order(shape, order, typenum)
    ops = [lead, xb, tb, w, pw, go, g, loss_arr]
    plan = _plan(shape, ops)
    if plan is None:
        # axes that do not merge into two: every operand C-contiguous in the loss's shape
        xb = np.ascontiguousarray(np.broadcast_to(xb, shape))
        tb = np.ascontiguousarray(np.broadcast_to(tb, shape))
        if w is not None:
            w = np.ascontiguousarray(w)
        if pw is not None:
            pw = np.ascontiguousarray(pw)
        if go is not None:
            go = np.ascontiguousarray(go)
        if g is not None and not g.flags.c_contiguous:
            g = np.empty(shape, dtype=cnp.PyArray_DescrFromType(typenum))
        if loss_arr is not None:
            loss_arr = np.empty(shape, dtype=cnp.PyArray_DescrFromType(typenum))
        ops = [xb, xb, tb, w, pw, go, g, loss_arr]
        plan = _plan(shape, ops)
    _, rows, cols, st = plan

    cdef fl_bin_args a
    a.kind = kind
    a.rows = rows
    a.cols = cols
    a.x = cnp.PyArray_DATA(xb)
    a.x_sr, a.x_sk = st[1]
    a.y = cnp.PyArray_DATA(tb)
    a.y_sr, a.y_sk = st[2]
    a.w = cnp.PyArray_DATA(w) if w is not None else NULL
    a.w_sr, a.w_sk = st[3]
    a.pw = cnp.PyArray_DATA(pw) if pw is not None else NULL
    a.pw_sr, a.pw_sk = st[4]
    a.go = cnp.PyArray_DATA(go) if go is not None else NULL
    a.go_sr, a.go_sk = st[5]
    a.grad = cnp.PyArray_DATA(g) if g is not None else NULL
    a.g_sr, a.g_sk = st[6]
    a.loss = cnp.PyArray_DATA(loss_arr) if loss_arr is not None else NULL
    a.l_sr, a.l_sk = st[7]
    a.call.dtype = FL_DTYPE_F32 if typenum == cnp.NPY_FLOAT else FL_DTYPE_F64
    a.call.simd = simd_path()
    a.call.nthreads = _threads._num_threads
    a.call.reduction = FL_REDUCE_BATCHMEAN if batchmean else red
    a.call.grad_scale = go_scalar
    a.call.batch = <double>xshape[0] if len(xshape) != 0 else 1.0

    cdef fl_index n = 1
    for d in range(len(shape)):
        n *= <fl_index>shape[d]

    # ---- the one C call: the domain check (binary_cross_entropy), the kernel, the reduction --
    cdef int status
    if n >= FL_BLOCK_ELEMENTS:
        with nogil:
            status = fl_binary(&a)
    else:
        status = fl_binary(&a)
    if status == FL_ERR_DOMAIN:
        raise ValueError(f"all elements of {'target' if a.call.bad_operand else 'input'} should be "
                         "between 0 and 1")
    if status == FL_ERR_NOMEM:
        raise MemoryError("binary_cross_entropy: out of memory" if kind == FL_BIN_BCE else "out of memory")
    if stats is not None:
        call_stats(stats, &a.call)
        stats["rows"] = rows
        stats["cols"] = cols

    # ---- results -----------------------------------------------------------------------------
    cdef int out_type = cnp.PyArray_TYPE(x0)
    if red == REDUCE_NONE:
        if out_type == typenum:
            loss = loss_arr
        else:
            with np.errstate(over="ignore"):  # float16: overflow gives inf, as in torch
                loss = loss_arr.astype(x0.dtype)
    else:
        loss = loss_scalar(a.call.value, out_type)
    if not want_grad:
        return loss
    if not x_full:
        # the input was broadcast against the target: sum the gradient over those axes
        lead_axes = len(shape) - len(xshape)
        gr = g.sum(axis=tuple(range(lead_axes))) if lead_axes else g
        axes = tuple(d for d in range(len(xshape)) if xshape[d] == 1 and gr.shape[d] != 1)
        if axes:
            gr = gr.sum(axis=axes, keepdims=True)
        g = np.asarray(gr, dtype=cnp.PyArray_DescrFromType(typenum)).reshape(xshape)
    if in_place:
        if g is not x0:
            with np.errstate(over="ignore"):
                np.copyto(x0, g, casting="unsafe")
        return loss, x0
    if g_user is not None:
        if g is not g_user:
            with np.errstate(over="ignore"):
                np.copyto(g_user, g, casting="unsafe")
        return loss, g_user
    if out_type != typenum:
        with np.errstate(over="ignore"):
            g = g.astype(x0.dtype)
    return loss, g


# ------------------------------------------------------------------------------------------------
# public functions
# ------------------------------------------------------------------------------------------------

def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy between probabilities and targets, as
    ``torch.nn.functional.binary_cross_entropy``.

    Parameters
    ----------
    input : array_like of float16, float32 or float64
        Probabilities x, every element in [0, 1]. Any shape and memory layout; float16 is
        computed in float32.
    target : array_like, floating, the input's shape
        Targets y in [0, 1] (cast to the input's dtype).
    weight : array_like, optional
        Per-element weight w, broadcast to the input's shape (cast to the input's dtype).
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
    return _binary(K_BCE, input, target, weight, None, reduction, False, None, None, False, None)


def binary_cross_entropy_with_grad(input, target, weight=None, reduction="mean", grad_output=None,
                                   out=None):
    """Binary cross-entropy and its gradient with respect to the input, in one pass.

    Parameters are those of :func:`binary_cross_entropy`, plus:

    grad_output : float or array_like, optional
        The upstream gradient g (default 1): a scalar for "mean"/"sum"; for "none" a scalar
        or an array that broadcasts to the input's shape.
    out : ndarray, optional
        Where to write the gradient: the input's shape and dtype, writeable, any layout.
        ``out=input`` (exactly that array) overwrites the input with the gradient; an ``out``
        that otherwise overlaps an argument is a ValueError.

    Returns
    -------
    (loss, grad) : loss as :func:`binary_cross_entropy`; grad = d(sum(loss * g)) / d(input)
        (``out`` when given).

    Notes
    -----
    As torch's backward, with s = g (divided by the element count for "mean")::

        grad = s * w * (x - y) / max((1 - x) * x, eps),   eps = float32(1e-12)

    Every element is checked before anything is written.
    """
    return _binary(K_BCE, input, target, weight, None, reduction, False, grad_output, out, True, None)


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy between logits and targets, as
    ``torch.nn.functional.binary_cross_entropy_with_logits``.

    Parameters
    ----------
    input : array_like of float16, float32 or float64
        Logits x, any shape and memory layout (float16 computed in float32).
    target : array_like, floating, the input's shape
        Targets y (usually in [0, 1]; not checked, as in torch).
    weight : array_like, optional
        Per-element weight w, broadcast to the input's shape.
    reduction : {"mean", "sum", "none"}, default "mean"
    pos_weight : array_like, optional
        Weight p of the positive term, broadcast to the input's shape (usually one value per
        class: shape (C,) against the last axis).

    Returns
    -------
    loss : NumPy scalar of the input's dtype for "mean"/"sum"; an array of the input's shape
        for "none".

    Notes
    -----
    In torch's numerically stable form (log sigmoid(x) = min(x, 0) - log1p(exp(-|x|)))::

        lw   = (p - 1) * y + 1
        loss = w * ((1 - y) * x + lw * (log1p(exp(-|x|)) + max(-x, 0)))

    which is -w * (p * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))). NaN and inf
    propagate as in torch (e.g. x = +inf with y = 1 gives nan: (1 - y) * x).
    """
    return _binary(K_LOGITS, input, target, weight, pos_weight, reduction, False, None, None, False, None)


def binary_cross_entropy_with_logits_with_grad(input, target, weight=None, reduction="mean",
                                               pos_weight=None, grad_output=None, out=None):
    """Binary cross-entropy on logits and its gradient with respect to the input, in one pass.

    Parameters are those of :func:`binary_cross_entropy_with_logits`, plus ``grad_output``
    and ``out`` as in :func:`binary_cross_entropy_with_grad`.

    Returns
    -------
    (loss, grad) : grad = d(sum(loss * g)) / d(input), the input's shape and dtype.

    Notes
    -----
    With s = g (divided by the element count for "mean")::

        grad = s * w * (lw * sigmoid(x) - p * y),   lw = (p - 1) * y + 1

    (without pos_weight: s * w * (sigmoid(x) - y)).
    """
    return _binary(K_LOGITS, input, target, weight, pos_weight, reduction, False, grad_output, out,
                   True, None)


def kl_div(input, target, reduction="mean", log_target=False):
    """Kullback-Leibler divergence loss, as ``torch.nn.functional.kl_div``.

    Parameters
    ----------
    input : array_like of float16, float32 or float64
        Log-probabilities x.
    target : array_like, floating
        Probabilities y (log-probabilities with ``log_target=True``); broadcast against the
        input as torch does (cast to the input's dtype).
    reduction : {"mean", "batchmean", "sum", "none"}, default "mean"
        "batchmean" divides the sum by input.shape[0] (the sum for 0-d input); "mean" by the
        number of loss elements (torch warns there; fastloss does not).
    log_target : bool, default False

    Returns
    -------
    loss : NumPy scalar of the input's dtype, or for "none" an array of the broadcast shape.

    Notes
    -----
    Elementwise::

        log_target=False:  loss = xlogy(y, y) - y * x      (0 where y == 0; nan for y < 0)
        log_target=True:   loss = exp(y) * (y - x)
    """
    return _binary(K_KL, input, target, None, None, reduction, log_target, None, None, False, None)


def kl_div_with_grad(input, target, reduction="mean", log_target=False, grad_output=None, out=None):
    """Kullback-Leibler divergence loss and its gradient with respect to the input.

    Parameters are those of :func:`kl_div`, plus ``grad_output`` (a scalar for reductions; for
    "none" a scalar or an array broadcasting to the loss's shape) and ``out`` as in
    :func:`binary_cross_entropy_with_grad`.

    Returns
    -------
    (loss, grad) : grad = d(sum(loss * g)) / d(input), the input's shape and dtype.

    Notes
    -----
    With s = g (divided by the element count for "mean", by input.shape[0] for "batchmean")::

        grad = -s * y          (log_target=False)
        grad = -s * exp(y)     (log_target=True)

    When the input is broadcast against the target, the gradient is summed over the
    broadcast axes (computed in a temporary of the loss's shape).
    """
    return _binary(K_KL, input, target, None, None, reduction, log_target, grad_output, out, True, None)


def _binary_stats(name, *args, **kwargs):
    """For tests: (result, stats) where stats tells the threads, SIMD path and the kernel's
    (rows, cols) view that ran. name: "bce", "bce_logits" or "kl_div"; want_grad=True
    by default."""
    want_grad = kwargs.pop("want_grad", True)
    stats = {}
    if name == "bce":
        f = binary_cross_entropy_with_grad if want_grad else binary_cross_entropy
        sig = ("input", "target", "weight", "reduction", "grad_output", "out")
    elif name == "bce_logits":
        f = binary_cross_entropy_with_logits_with_grad if want_grad else binary_cross_entropy_with_logits
        sig = ("input", "target", "weight", "reduction", "pos_weight", "grad_output", "out")
    else:
        f = kl_div_with_grad if want_grad else kl_div
        sig = ("input", "target", "reduction", "log_target", "grad_output", "out")
    kw = dict(zip(sig, args))
    kw.update(kwargs)
    which = K_BCE if name == "bce" else (K_LOGITS if name == "bce_logits" else K_KL)
    result = _binary(which, kw["input"], kw["target"], kw.get("weight"), kw.get("pos_weight"),
                     kw.get("reduction", "mean"), kw.get("log_target", False), kw.get("grad_output"),
                     kw.get("out"), want_grad, stats)
    return result, stats


def _kernel_names():
    """The names of the binary-loss kernels the dispatch table holds for the active path."""
    return kernel_names(fl_binary_kernels, simd_path())
