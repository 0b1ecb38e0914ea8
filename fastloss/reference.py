"""Slow, obviously-correct pure-NumPy reference for fastloss ("slow twin").

This module is the *oracle* the fast C/Cython kernels are tested against: one function of
the same name and signature for every public function of fastloss. It is written for
clarity, not speed:

* everything is computed in float64 from float64 copies of the arguments; float16 and
  bfloat16 results are rounded once (to nearest-even) from the float64 values;
* it shares no code with the fast path (it imports nothing from ``fastloss``) and does not
  import torch;
* its value semantics are those of ``torch.nn.functional`` (checked against torch 2.13 by
  the tests), including torch's NaN/inf results for degenerate inputs.

Dtypes
------
Inputs may be float16, bfloat16, float32 or float64. NumPy has no bfloat16: a bfloat16 array
is either an ``ml_dtypes.bfloat16`` array (``dtype.name == "bfloat16"``; ml_dtypes is never
imported here, so this module works without it) or a uint16 array of bfloat16 bit patterns
whose dtype carries the metadata ``{"fastloss": "bfloat16"}`` (``fastloss._plan.BF16_BITS``).
Results come in the input's dtype -- for bfloat16 the caller's own kind (ml_dtypes' values
or BF16_BITS bits), in native byte order -- each rounded once from float64. A reduced loss
is a NumPy scalar of that dtype, except for BF16_BITS input: a 0-d BF16_BITS array. As in
torch, a floating target of another dtype promotes the loss (distinct dtypes among float16,
bfloat16 and float32 give float32, anything with float64 float64), and the operands of a
float16/bfloat16 loss (targets, weights, grad_output) are rounded to its dtype first.

Documented deliberate differences from torch
--------------------------------------------
* Errors are mapped to Python exception types: ``TypeError`` for wrong dtypes/types,
  ``ValueError`` for wrong shapes/values (including out-of-domain inputs such as BCE input
  outside [0, 1]), ``IndexError`` for out-of-range class targets (same message as torch).
* A negative ``label_smoothing`` is rejected (torch accepts it).
* Index targets may have any NumPy integer dtype (torch accepts only int64 and uint8);
  weights, probability targets and other floating operands are cast to the input's dtype.
* The cross-entropy gradient is computed from a closed form, so a few degenerate cases (a
  negative weight making the mean's divisor exactly 0) may give different non-finite entries
  than torch. At an ignored position it is torch's ``0 * softmax(x)``: 0, or NaN along a row
  whose softmax is NaN (the row holds a NaN or +inf, or only -inf).

Sections: cross_entropy; softmax, log_softmax and their backward, nll_loss; mse, l1,
smooth_l1, huber; binary_cross_entropy (with logits), kl_div.
"""
import numbers
import warnings

import numpy as np

__all__ = [
    "cross_entropy",
    "cross_entropy_with_grad",
    "margin_cross_entropy",
    "margin_cross_entropy_with_grad",
    "log_softmax",
    "softmax",
    "log_softmax_backward",
    "softmax_backward",
    "nll_loss",
    "nll_loss_with_grad",
    "mse_loss",
    "mse_loss_with_grad",
    "l1_loss",
    "l1_loss_with_grad",
    "smooth_l1_loss",
    "smooth_l1_loss_with_grad",
    "huber_loss",
    "huber_loss_with_grad",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "kl_div",
    "kl_div_with_grad",
]

_REDUCTIONS = ("none", "mean", "sum")
_INPUT_TYPES = (np.float16, np.float32, np.float64)


# --------------------------------------------------------------------------
# dtypes: bfloat16 (ml_dtypes' or bits tagged BF16_BITS) and rounding to it
# --------------------------------------------------------------------------

def _is_bf16(dtype):
    """Whether ``dtype`` holds bfloat16: ``ml_dtypes.bfloat16`` or a uint16 dtype tagged with
    the metadata {"fastloss": "bfloat16"} (fastloss._plan.BF16_BITS: the values are bits)."""
    if dtype.itemsize != 2:
        return False
    if dtype.kind == "u":
        md = dtype.metadata
        return bool(md) and md.get("fastloss") == "bfloat16"
    return dtype.name == "bfloat16"


def _is_half(dtype):
    """float16 or bfloat16."""
    return dtype.type is np.float16 or _is_bf16(dtype)


def _is_float(a):
    """A floating array: float16, bfloat16, float32, float64 or longdouble."""
    return (a.dtype.kind == "f") or _is_bf16(a.dtype)


def _is_real(a):
    """A floating (bfloat16 included) or integer (not bool) array."""
    return _is_float(a) or (a.dtype.kind in "iu")


def _bf16_bits(a):
    """The native uint16 bit patterns of a bfloat16 array (either kind, any byte order)."""
    order = a.dtype.byteorder if a.dtype.byteorder in "<>" else "="
    return a.view(np.dtype(np.uint16).newbyteorder(order)).astype(np.uint16)


def _bf16_to_f64(bits):
    """bfloat16 bit patterns (uint16) as float64 values (exact; NaN payloads kept)."""
    f = np.asarray(np.asarray(bits).astype(np.uint32) << 16).view(np.float32)
    with np.errstate(invalid="ignore"):  # a signalling NaN is quieted
        return f.astype(np.float64)


def _bf16_from_f64(v):
    """float64 values rounded once, to nearest-even, to bfloat16 bit patterns (uint16, same
    shape): overflow gives +-inf, subnormals are kept, NaN stays a (quiet) NaN of its sign.

    float64 -> float32 rounds to odd (toward zero, then the last bit set when inexact), which
    keeps enough information for the float32 -> bfloat16 nearest-even step to round as if
    directly from float64 (float32 carries 16 more significand bits than bfloat16, at every
    exponent, subnormals included) -- no double rounding."""
    v = np.asarray(v, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        f = v.astype(np.float32)                      # nearest; overflow: +-inf
        away = np.abs(f.astype(np.float64)) > np.abs(v)  # rounded away from zero (or to inf)
        f = np.where(away, np.nextafter(f, np.float32(0)), f)
        inexact = f.astype(np.float64) != v           # NaN: True, harmless
    b = np.asarray(f).view(np.uint32) | np.asarray(inexact).astype(np.uint32)
    rounded = (b + np.uint32(0x7FFF) + ((b >> 16) & np.uint32(1))) >> 16
    nan = (b >> 16) | np.uint32(0x40)
    return np.asarray(np.where(np.isnan(v), nan, rounded).astype(np.uint16))


def _as_f64(a):
    """``a`` (an ndarray of any real dtype, bfloat16 included) as float64 values (exact but
    for longdouble and integers beyond 2**53)."""
    if _is_bf16(a.dtype):
        return _bf16_to_f64(_bf16_bits(a))
    return a.astype(np.float64)


def _native(dtype):
    return dtype.newbyteorder("=")


def _round_to(v, dtype):
    """float64 values ``v`` (array) rounded once to ``dtype`` (for bfloat16: the caller's own
    bfloat16 dtype, ml_dtypes' values or BF16_BITS bits, native byte order). Overflow gives
    inf silently, as in torch."""
    v = np.asarray(v, dtype=np.float64)
    if _is_bf16(dtype):
        return _bf16_from_f64(v).view(_native(dtype))
    with np.errstate(over="ignore", invalid="ignore"):
        return v.astype(dtype)


def _scalar(value, dtype):
    """A reduced loss: the float64 ``value`` rounded once to a NumPy scalar of ``dtype``; a
    BF16_BITS loss is a 0-d BF16_BITS array (its bits), an ml_dtypes one its scalar."""
    if _is_bf16(dtype):
        bits = _round_to(np.float64(value), dtype)
        return bits if dtype.kind == "u" else bits[()]
    with np.errstate(over="ignore", invalid="ignore"):
        return dtype.type(value)


def _held_in(a, dtype):
    """The values of the real array ``a`` as ``dtype`` holds them (rounded once to it), as
    float64."""
    a = np.asarray(a)
    if _is_bf16(dtype):
        return _as_f64(a) if _is_bf16(a.dtype) else _bf16_to_f64(_bf16_from_f64(_as_f64(a)))
    if _is_bf16(a.dtype):
        a = _as_f64(a)
    with np.errstate(over="ignore", invalid="ignore"):
        return a.astype(dtype).astype(np.float64)


# --------------------------------------------------------------------------
# argument checking
# --------------------------------------------------------------------------

def _float_array(a, what="input"):
    """``a`` as an ndarray (no copy if it already is one) of a dtype the losses take."""
    a = np.asarray(a)
    if a.dtype.type not in _INPUT_TYPES and not _is_bf16(a.dtype):
        raise TypeError(
            f"{what} must be float16, bfloat16, float32 or float64, got dtype {a.dtype}")
    return a


def _check_input(input):
    """Return ``input`` as an ndarray (no copy if it already is one)."""
    x = _float_array(input)
    if x.ndim == 0:
        raise ValueError("input must have at least 1 dimension (the class axis)")
    return x


def _check_reduction(reduction, allowed=_REDUCTIONS):
    if not isinstance(reduction, str) or reduction not in allowed:
        raise ValueError(f"{reduction!r} is not a valid value for reduction; expected one of {allowed}")
    return str(reduction)


def _check_label_smoothing(label_smoothing):
    if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, numbers.Real):
        raise TypeError(
            f"label_smoothing must be a real number, got {type(label_smoothing).__name__}")
    eps = float(label_smoothing)
    if not 0.0 <= eps <= 1.0:  # also rejects NaN
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {eps}")
    return eps


def _check_ignore_index(ignore_index):
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(
            ignore_index, (int, np.integer)):
        raise TypeError(
            f"ignore_index must be an int, got {type(ignore_index).__name__}")
    if not -2**63 <= int(ignore_index) < 2**63:  # torch takes an int64
        raise ValueError(f"ignore_index {int(ignore_index)} does not fit in int64")
    return int(ignore_index)


def _loss_dtype(x, t):
    """torch's type promotion of a floating target with the input (mse, l1, smooth_l1, kl_div,
    bce_with_logits, cross_entropy's probabilities): the dtype the loss is computed and returned
    in. An integer or bool target does not widen it; longdouble counts as float64. The same
    dtype keeps it (bfloat16: the input's kind of bfloat16); distinct dtypes among float16,
    bfloat16 and float32 give float32, anything with float64 float64."""
    if not _is_float(t):
        return x.dtype
    xb, tb = _is_bf16(x.dtype), _is_bf16(t.dtype)
    if xb and tb:
        return _native(x.dtype)
    if xb or tb:
        other = t.dtype if xb else x.dtype
        return np.dtype(np.float64 if other.itemsize >= 8 else np.float32)
    return np.promote_types(x.dtype, np.float64 if t.dtype.itemsize > 8 else t.dtype)


def _half_rounded(a, dtype):
    """An operand as float64, rounded to the loss's dtype first when that is float16 or
    bfloat16 (torch holds the operands of a half-precision loss in its dtype)."""
    a = np.asarray(a)
    return _held_in(a, dtype) if _is_half(dtype) else _as_f64(a)


def _check_weight(weight, n_classes):
    """Return (original array or None, float64 weights of length C)."""
    if weight is None:
        return None, np.ones(n_classes, dtype=np.float64)
    w = np.asarray(weight)
    if not _is_real(w):
        raise TypeError(f"weight must be a real (integer or floating) array, got dtype {w.dtype}")
    if w.ndim != 1 or w.shape[0] != n_classes:
        raise ValueError(
            f"weight must be a 1-D array of length {n_classes} (number of classes), "
            f"got shape {w.shape}")
    return w, _as_f64(w)


def _batch_shape(x):
    """Shape of the per-position loss: input.shape without the class axis."""
    return x.shape[:0] if x.ndim == 1 else x.shape[:1] + x.shape[2:]


def _check_target(target, x, ignore_index):
    """Classify and validate ``target``.

    Returns ``(original_array, kind, prepared)`` where kind is ``"prob"``
    (prepared: float64 array of the input's shape) or ``"index"`` (prepared:
    integer array of the batch shape, still in its own dtype).
    """
    original = t = np.asarray(target)
    if t.shape == x.shape:
        if not _is_float(t):
            raise TypeError(
                "probability targets (target.shape == input.shape) must have a "
                f"floating dtype, got {t.dtype}")
        if ignore_index >= 0:
            raise ValueError("ignore_index is not supported for probability targets")
        return original, "prob", _as_f64(t)

    t = _index_target(t, x)
    message = _out_of_bounds(t, ignore_index, x.shape[0] if x.ndim == 1 else x.shape[1])
    if message is not None:
        raise _BadTargetValue(message)
    return original, "index", t


def _index_target(t, x):
    """Class indices ``t`` (an ndarray) for the input ``x``: an integer dtype and the batch
    shape (0-d or (1,) for 1-D input); returned reshaped to the batch shape."""
    if t.dtype.kind not in "iu" or _is_bf16(t.dtype):  # BF16_BITS holds bfloat16 bits
        raise TypeError(f"class-index targets must have an integer dtype, got {t.dtype}")
    batch = _batch_shape(x)
    if x.ndim == 1:
        if t.shape not in ((), (1,)):
            raise ValueError(
                f"for 1-D input the target must be 0-d or have shape (1,), got {t.shape}")
    elif t.shape != batch:
        raise ValueError(f"Expected target size {batch}, got {t.shape}")
    return t.reshape(batch)


def _out_of_bounds(t, ignore_index, n_classes):
    """torch's message for the first (C order) class index outside [0, C) that is not
    ``ignore_index``; None when there is none."""
    # Python-int comparisons are exact for every integer dtype in NumPy 2.
    bad = (t != ignore_index) & ~((t >= 0) & (t < n_classes))
    if not bad.any():
        return None
    value = int(t.reshape(-1)[np.flatnonzero(bad)[0]])  # the true value, also for uint64
    return f"Target {value} is out of bounds."


class _BadTargetValue(IndexError):
    """An out-of-range class index. Target values are checked last, after every other
    argument (grad_output and out= included), as the fast path checks them."""


def _check_grad_output(grad_output, reduction, loss_shape, dtype=None):
    """Return the upstream gradient (1 when None) as float64, broadcast to ``loss_shape``:
    real numbers, a scalar unless ``reduction="none"``; rounded to the loss's ``dtype`` first
    when that is float16 or bfloat16 (torch holds it in the loss's dtype)."""
    g = np.asarray(1.0 if grad_output is None else grad_output)
    if not _is_real(g):
        raise TypeError(f"grad_output must be real numbers, got dtype {g.dtype}")
    g = _half_rounded(g, dtype) if dtype is not None else _as_f64(g)
    if reduction != "none" and g.ndim != 0:
        raise ValueError(
            f"grad_output must be a scalar for reduction={reduction!r}, got shape {g.shape}")
    try:
        return np.broadcast_to(g, loss_shape)
    except ValueError:
        raise ValueError(
            f"grad_output of shape {g.shape} cannot be broadcast to the loss "
            f"shape {loss_shape}") from None


def _same_memory(a, b):
    """True when a and b view exactly the same elements the same way."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def _check_out_array(out, like, whose=""):
    """What every ``out`` must be: a writeable ndarray of ``like``'s shape and dtype (in any
    byte order); ``whose`` names ``like`` in the messages ("the input's ")."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
    if out.shape != like.shape:
        raise ValueError(f"out must have {whose}shape {like.shape}, got {out.shape}")
    if out.dtype.newbyteorder("=") != like.dtype.newbyteorder("="):
        raise TypeError(f"out must have {whose}dtype {like.dtype}, got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out is not writeable")


def _check_out(out, x, others):
    """Validate the losses' ``out`` (the gradient): it may be the input itself, exactly, but
    must not touch it otherwise, nor any of ``others``, the (name, array) pairs."""
    if out is None:
        return None
    _check_out_array(out, x, "the input's ")
    in_place = out is x or (out.dtype == x.dtype and _same_memory(out, x))
    if not in_place and np.shares_memory(out, x):
        raise ValueError("out overlaps the input without being exactly the input")
    for name, arr in others:
        if isinstance(arr, np.ndarray) and np.shares_memory(out, arr):
            raise ValueError(f"out shares memory with {name}")
    return out


# --------------------------------------------------------------------------
# math
# --------------------------------------------------------------------------

def _log_softmax_last(z):
    """log_softmax over the last axis, float64, with the usual max shift.

    A row holding NaN or +inf, or consisting only of -inf, becomes all NaN
    (``inf - inf``), exactly like torch.
    """
    m = np.max(z, axis=-1, keepdims=True, initial=-np.inf)
    shifted = z - m
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _reduce(loss, reduction, dtype, batch=None):
    """Elementwise float64 losses reduced, in ``dtype``: "mean" over the elements (nan when
    there are none), "batchmean" over ``batch`` (the sum when None)."""
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # float16 overflow: inf
        if reduction == "none":
            return _round_to(loss, dtype)
        total = loss.sum()
        if reduction == "sum":
            return _scalar(total, dtype)
        if reduction == "batchmean":
            return _scalar(total / batch if batch is not None else total, dtype)
        return _scalar(total / loss.size if loss.size else np.nan, dtype)


def _sum_to_shape(grad, shape):
    """The gradient of an operand of ``shape`` that was broadcast: ``grad`` summed over the
    axes it was broadcast along."""
    lead = grad.ndim - len(shape)
    g = grad.sum(axis=tuple(range(lead))) if lead else grad
    axes = tuple(d for d in range(len(shape)) if shape[d] == 1 and g.shape[d] != 1)
    return g.sum(axis=axes, keepdims=True) if axes else g


def _finish(result, dtype, out):
    """A float64 result in ``dtype``, written into ``out`` (already checked) when given."""
    r = _round_to(result, dtype)
    if out is not None:
        out[...] = r  # the same dtype as out's (up to byte order): bfloat16 bits are copied
        return out
    return np.asarray(r)


class _Problem:
    """All validated arguments, moved to a (batch..., C) float64 layout."""

    def __init__(self, input, target, weight, ignore_index, reduction, label_smoothing,
                 values_now=True):
        """values_now=False: an out-of-range target is kept in self.target_error (and
        nothing computed) for the caller to raise after its own checks."""
        self.target_error = None
        self.x = _check_input(input)
        self.reduction = _check_reduction(reduction)
        self.eps = _check_label_smoothing(label_smoothing)
        self.ignore_index = _check_ignore_index(ignore_index)
        self.class_axis = 0 if self.x.ndim == 1 else 1
        self.C = self.x.shape[self.class_axis]
        self.weight_orig, self.w = _check_weight(weight, self.C)
        self.loss_shape = _batch_shape(self.x)
        try:
            self.target_orig, self.kind, t = _check_target(target, self.x, self.ignore_index)
        except _BadTargetValue as exc:
            if values_now:
                raise IndexError(str(exc)) from None
            self.target_orig, self.target_error = np.asarray(target), IndexError(str(exc))
            return
        self.loss_dtype = _loss_dtype(self.x, self.target_orig) if self.kind == "prob" else self.x.dtype
        self.w = _half_rounded(self.w, self.loss_dtype)

        # float64 copies, class axis last: shape loss_shape + (C,)
        z = np.moveaxis(_as_f64(self.x), self.class_axis, -1)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            self.logp = _log_softmax_last(z)
            self.p = np.exp(self.logp)

        if self.kind == "prob":
            y = np.moveaxis(t, self.class_axis, -1)
            if self.eps > 0.0 and self.C > 0:
                # torch smooths in the target's compute dtype (float32 for float16 and
                # float32): eps / C can round to 0 there, and 0 * -inf stays NaN
                ct = np.float64 if self.loss_dtype == np.float64 else np.float32
                y = (y.astype(ct) * ct(1.0 - self.eps) + ct(self.eps / self.C)).astype(np.float64)
            self.y = y                                     # smoothed targets y'
            self.n_positions = int(np.prod(self.loss_shape))   # N * d1 * ... * dk
        else:
            self.kept = t != self.ignore_index
            # safe class index (0 at ignored positions; never used there)
            self.t = np.where(self.kept, t, 0).astype(np.intp)
            self.w_t = np.where(self.kept, self.w[self.t] if self.C else 0.0, 0.0)
            self.den = np.sum(self.w_t)                    # sum of kept target weights
            # eps / C; with C == 0 this is inf (torch's double division), so the
            # smoothing term of an all-ignored C == 0 batch is 0 * inf = nan.
            with np.errstate(divide="ignore", invalid="ignore"):
                self.smooth_scale = np.divide(np.float64(self.eps), self.C)


def _index_terms(pb):
    """Per-position NLL term ``w[t] * -logp[t]`` and smoothing term
    ``sum_j -w_j * logp_j`` (None when eps == 0); both 0 at ignored positions."""
    if pb.C:
        logp_t = np.take_along_axis(pb.logp, pb.t[..., None], axis=-1)[..., 0]
    else:
        logp_t = np.zeros(pb.loss_shape)
    with np.errstate(invalid="ignore", over="ignore"):
        nll = np.where(pb.kept, pb.w_t * -logp_t, 0.0)
        smooth = None
        if pb.eps != 0.0:
            smooth = np.where(pb.kept, -np.sum(pb.logp * pb.w, axis=-1), 0.0)
    return nll, smooth


def _forward(pb):
    """float64 loss: ndarray of ``pb.loss_shape`` or a 0-d value."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if pb.kind == "prob":
            prod = pb.logp * pb.y * pb.w        # torch's order: 0 * -inf -> nan
            if pb.reduction == "none":
                return -np.sum(prod, axis=-1)
            if pb.reduction == "sum":
                return -np.sum(prod)
            if pb.x.size == 0:
                return np.float64(np.nan)
            return -np.sum(prod) / pb.n_positions

        nll, smooth = _index_terms(pb)
        one_minus = 1.0 - pb.eps
        if pb.reduction == "none":
            if smooth is None:
                return nll
            return one_minus * nll + pb.smooth_scale * smooth
        if pb.reduction == "sum":
            if smooth is None:
                return np.sum(nll)
            return one_minus * np.sum(nll) + pb.smooth_scale * np.sum(smooth)
        # mean: both terms divided by the sum of kept target weights
        if smooth is None:
            return np.sum(nll) / pb.den
        return one_minus * (np.sum(nll) / pb.den) + pb.smooth_scale * (np.sum(smooth) / pb.den)


def _gradient(pb, go):
    """float64 gradient w.r.t. the logits, layout (batch..., C)."""
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if pb.kind == "prob":
            s = go / pb.n_positions if pb.reduction == "mean" else go
            s = np.broadcast_to(s, pb.loss_shape)[..., None]
            wy = pb.y * pb.w
            return s * (pb.p * np.sum(wy, axis=-1, keepdims=True) - wy)

        # upstream scales of the NLL term (a) and of the smoothing term (b)
        scale = go / pb.den if pb.reduction == "mean" else go
        a = np.broadcast_to(scale * (1.0 - pb.eps), pb.loss_shape)[..., None]
        w_t = pb.w_t[..., None]
        onehot = np.arange(pb.C) == pb.t[..., None]
        g = a * (pb.p * w_t - w_t * onehot)
        if pb.eps != 0.0:
            b = np.broadcast_to(scale * pb.smooth_scale, pb.loss_shape)[..., None]
            g = g + b * (pb.p * np.sum(pb.w) - pb.w)
        # ignored positions: 0 * softmax, as torch's autograd gives (NaN where softmax is)
        return np.where(pb.kept[..., None], g, 0.0 * pb.p)


def _as_result(loss64, pb):
    if pb.reduction == "none":
        return np.asarray(_round_to(loss64, pb.loss_dtype))
    return _scalar(loss64, pb.loss_dtype)


# --------------------------------------------------------------------------
# public API
# --------------------------------------------------------------------------

def cross_entropy(input, target, weight=None, ignore_index=-100, reduction="mean",
                  label_smoothing=0.0):
    r"""Cross-entropy loss of logits, same values as ``torch.nn.functional.cross_entropy``.

    Parameters
    ----------
    input : array_like, float16/bfloat16/float32/float64, shape (C,), (N, C) or (N, C, d1, ..., dk)
        Unnormalized logits; the class axis is 1 (0 for 1-D input).
    target : array_like
        Either class indices (any integer dtype) of shape ``input.shape``
        without the class axis (0-d or (1,) for 1-D input), each in
        ``[0, C)`` or equal to ``ignore_index``; or class probabilities
        (floating dtype) of exactly ``input.shape``.
    weight : array_like, optional
        1-D real array of length C (class weights); ones when None.
    ignore_index : int, default -100
        Class-index targets equal to it contribute neither loss nor weight.
        Must be negative for probability targets.
    reduction : {"none", "mean", "sum"}, default "mean"
    label_smoothing : float in [0, 1], default 0.0

    Returns
    -------
    loss : ndarray of the batch shape (reduction="none"; 0-d for 1-D input) or
        a NumPy scalar, in the input's dtype (computed in float64).

    Notes
    -----
    With ``logp = log_softmax(input)`` over the class axis, ``w`` the weights
    and ``eps = label_smoothing``:

    Class-index targets ``t``, per position::

        loss_i = (1 - eps) * w[t_i] * (-logp[i, t_i])
                 + (eps / C) * sum_j (-w_j * logp[i, j])

    where the smoothing term is not computed at all when ``eps == 0`` (a
    -inf logit then gives a finite loss), and ``loss_i = 0`` at ignored
    positions.  ``"sum"`` sums both terms separately; ``"mean"`` divides
    each summed term by ``sum_{kept i} w[t_i]`` (nan when nothing is kept).

    Probability targets ``y``, with ``y' = y * (1 - eps) + eps / C``::

        loss_i = -sum_j logp[i, j] * y'[i, j] * w_j

    (in that order, so ``0 * -inf`` gives nan like torch).  ``"mean"``
    divides the total by the number of positions ``N * d1 * ... * dk``
    (weights are not in the divisor) and is nan for an empty input.

    Raises
    ------
    TypeError
        Non-floating input, non-integer index target, non-floating
        probability target, non-real weight, non-int ``ignore_index``,
        non-number ``label_smoothing``.
    ValueError
        0-d input, bad target/weight shape, unknown reduction,
        ``label_smoothing`` outside [0, 1] or NaN, ``ignore_index >= 0``
        with probability targets.
    IndexError
        ``"Target {value} is out of bounds."`` for the first (C order)
        class index outside ``[0, C)`` that is not ``ignore_index``.
    """
    pb = _Problem(input, target, weight, ignore_index, reduction, label_smoothing)
    return _as_result(_forward(pb), pb)


def cross_entropy_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                            label_smoothing=0.0, grad_output=None, out=None):
    r"""Cross-entropy loss and its gradient with respect to ``input``.

    Parameters
    ----------
    input, target, weight, ignore_index, reduction, label_smoothing
        As for :func:`cross_entropy`.
    grad_output : scalar or array_like, optional
        Upstream gradient; 1 when None.  A scalar (Python number or 0-d
        array) for ``"mean"``/``"sum"``; a scalar or an array broadcastable
        to the loss shape for ``"none"``.
    out : ndarray, optional
        Where to write the gradient: the input's shape and dtype, writeable,
        sharing no memory with input/target/weight -- except that ``out``
        may be the input itself (same memory and strides), which overwrites
        the logits in place.  Nothing is written unless every argument is
        valid.

    Returns
    -------
    loss : as :func:`cross_entropy`
    grad : ndarray of the input's shape and dtype (``out`` when given)
        ``d(sum(loss * grad_output)) / d(input)``.

    Notes
    -----
    With ``p = softmax(input)`` over the class axis and ``s_i`` the upstream
    scale at position ``i`` (``grad_output``; divided by
    ``sum_{kept} w[t_i]`` for ``"mean"`` with index targets, by
    ``N * d1 * ... * dk`` for ``"mean"`` with probability targets):

    Class-index targets::

        A_i  = (1 - eps) * w[t_i] + (eps / C) * sum_j w_j
        g_ik = s_i * (p_ik * A_i - (1 - eps) * w[t_i] * [k == t_i] - (eps / C) * w_k)

    (eps terms omitted when eps == 0; computed as the NLL part plus the
    smoothing part, each with its own scale, like torch's graph), and
    ``g_ik = 0`` exactly at ignored positions -- unlike torch, which gives
    NaN there when the ignored row holds NaN/inf.

    Probability targets::

        g_ik = s_i * (p_ik * sum_j w_j * y'_ij - w_k * y'_ik)

    Raises
    ------
    As :func:`cross_entropy`, plus ``ValueError`` for a grad_output of the
    wrong shape, an ``out`` of the wrong shape, read-only or partially
    overlapping an argument, and ``TypeError`` for a non-ndarray ``out``,
    an ``out`` of the wrong dtype or a non-real grad_output.
    """
    pb = _Problem(input, target, weight, ignore_index, reduction, label_smoothing, values_now=False)
    go = _check_grad_output(grad_output, pb.reduction, pb.loss_shape,
                            None if pb.target_error is not None else pb.loss_dtype)
    out = _check_out(out, pb.x, (("target", pb.target_orig), ("weight", pb.weight_orig),
                                 ("grad_output", grad_output if isinstance(grad_output, np.ndarray) else None)))
    if pb.target_error is not None:
        raise pb.target_error

    loss = _as_result(_forward(pb), pb)
    return loss, _finish(np.moveaxis(_gradient(pb, go), -1, pb.class_axis), pb.x.dtype, out)


# ---- margin-softmax cross-entropy ------------------------------------------------------------

MARGIN_COSINE_EPS = 1e-7  # the clamp of the target cosine (kind "arc")


def _margin_phi(x, margin, kind, easy_margin):
    """phi(x) and phi'(x) of :func:`margin_cross_entropy`, float64, elementwise."""
    if kind == "cos":
        return x - margin, np.ones_like(x)
    c = np.where(x > 1 - MARGIN_COSINE_EPS, 1 - MARGIN_COSINE_EPS,
                 np.where(x < -1 + MARGIN_COSINE_EPS, -1 + MARGIN_COSINE_EPS, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        sine = np.sqrt(1.0 - c * c)
        on = c > 0 if easy_margin else c - np.cos(np.pi - margin) > 0
        phi = np.where(on, c * np.cos(margin) - sine * np.sin(margin),
                       c if easy_margin else c - np.sin(np.pi - margin) * margin)
        dphi = np.where(on, np.cos(margin) + c * np.sin(margin) / sine, 1.0)
    return phi, dphi


def _margin_problem(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index, reduction,
                    label_smoothing, values_now=True):
    """The cross-entropy problem of the margin logits z, and phi'(x_t) per position."""
    for name, v in (("margin", margin), ("scale", scale)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise TypeError(f"{name} must be a real number, got {type(v).__name__}")
    margin, scale = float(margin), float(scale)
    if not np.isfinite(margin):
        raise ValueError(f"margin must be finite, got {margin}")
    if not (scale > 0 and np.isfinite(scale)):
        raise ValueError(f"scale must be positive and finite, got {scale}")
    if not isinstance(kind, str) or kind not in ("arc", "cos"):
        raise ValueError(f'kind must be "arc" or "cos", got {kind!r}')
    if not isinstance(easy_margin, (bool, np.bool_)):
        raise TypeError(f"easy_margin must be a bool, got {type(easy_margin).__name__}")
    if easy_margin and kind == "cos":
        raise ValueError('easy_margin applies to kind="arc" only')
    pb = _Problem(cosine, target, weight, ignore_index, reduction, label_smoothing, values_now)
    if pb.target_error is not None:
        return pb, None
    if pb.kind == "prob":
        raise ValueError("margin_cross_entropy needs class-index targets, not probabilities")
    x = np.moveaxis(_as_f64(pb.x), pb.class_axis, -1)
    onehot = (np.arange(pb.C) == pb.t[..., None]) & pb.kept[..., None]
    phi, dphi = _margin_phi(x, margin, kind, bool(easy_margin))
    z = scale * np.where(onehot, phi, x)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        pb.logp = _log_softmax_last(z)
        pb.p = np.exp(pb.logp)
    pb.margin_chain = scale * np.where(onehot, dphi, 1.0)  # dz/dx
    return pb, z


def margin_cross_entropy(cosine, target, margin=0.2, scale=30.0, kind="arc", easy_margin=False,
                         weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
    r"""Margin-softmax cross-entropy (ArcFace / CosFace): :func:`cross_entropy` of the logits
    ``z = scale * cosine`` whose target entry is ``scale * phi(cosine[t])``::

        kind "arc":  phi(x) = x cos m - sqrt(1 - x^2) sin m  if x > cos(pi - m), else x - m sin(pi - m)
                     (easy_margin: the first form where x > 0, else x); x clamped to
                     [-1 + MARGIN_COSINE_EPS, 1 - MARGIN_COSINE_EPS]
        kind "cos":  phi(x) = x - m

    computed in float64 with the one-hot formulation (the user code's), the result rounded to
    the input's dtype."""
    pb, _ = _margin_problem(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index, reduction,
                            label_smoothing)
    return _as_result(_forward(pb), pb)


def margin_cross_entropy_with_grad(cosine, target, margin=0.2, scale=30.0, kind="arc", easy_margin=False,
                                   weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0,
                                   grad_output=None, out=None):
    r"""The loss of :func:`margin_cross_entropy` and its gradient with respect to the cosines:
    the cross-entropy gradient G with respect to z times dz/dx, that is ``scale * G`` off the
    target and ``scale * phi'(x_t) * G`` at it (phi' = cos m + x sin m / sqrt(1 - x^2) on the
    margin branch of kind "arc", 1 elsewhere)."""
    pb, _ = _margin_problem(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index, reduction,
                            label_smoothing, values_now=False)
    go = _check_grad_output(grad_output, pb.reduction, pb.loss_shape,
                            None if pb.target_error is not None else pb.loss_dtype)
    out = _check_out(out, pb.x, (("target", pb.target_orig), ("weight", pb.weight_orig),
                                 ("grad_output", grad_output if isinstance(grad_output, np.ndarray) else None)))
    if pb.target_error is not None:
        raise pb.target_error
    loss = _as_result(_forward(pb), pb)
    with np.errstate(invalid="ignore"):
        g = _gradient(pb, go) * pb.margin_chain
    return loss, _finish(np.moveaxis(g, -1, pb.class_axis), pb.x.dtype, out)


# ---- softmax, log_softmax and their backward; nll_loss -----------------------------------

def _sm_axis(axis, ndim):
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, (int, np.integer)):
        raise TypeError(f"axis must be an int, got {type(axis).__name__}")
    n = max(ndim, 1)
    axis = int(axis)
    if not -n <= axis < n:
        raise np.exceptions.AxisError(axis, n)
    return axis % n


def _sm_check_out(out, like, others):
    """Validate softmax's ``out``: it may be any of the arrays ``others``, exactly, but must
    not partially overlap one."""
    if out is None:
        return None
    _check_out_array(out, like)
    for a in others:
        same = a.dtype == out.dtype and _same_memory(a, out)
        if not same and np.shares_memory(out, a):
            raise ValueError("out partially overlaps an argument")
    return out


def _sm_softmax_parts(x, axis):
    z = _as_f64(x)
    if z.ndim == 0:
        z = z.reshape(1)
    with np.errstate(invalid="ignore", over="ignore"):
        finite_max = np.max(np.where(np.isnan(z), -np.inf, z), axis=axis, keepdims=True) if z.size else z
        d = z - finite_max            # NaN when the max is +inf or -inf (all -inf)
        s = np.sum(np.exp(d), axis=axis, keepdims=True)
    return d, s


def _sm_normalized(input, axis, out, formula):
    """log_softmax / softmax: ``formula(d, s)`` of the shifted input ``d`` (x - max) and the
    sums ``s`` of ``exp(d)`` along the axis."""
    x = _float_array(input)
    ax = _sm_axis(axis, x.ndim)
    out = _sm_check_out(out, x, [x])
    d, s = _sm_softmax_parts(x, ax)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = formula(d, s)
    return _finish(r.reshape(x.shape), x.dtype, out)


def log_softmax(input, axis=-1, out=None):
    """log_softmax along ``axis`` (see the module docstring)."""
    return _sm_normalized(input, axis, out, lambda d, s: d - np.log(s))


def softmax(input, axis=-1, out=None):
    """softmax along ``axis`` (see the module docstring)."""
    return _sm_normalized(input, axis, out, lambda d, s: np.exp(d) / s)


def _sm_backward_args(grad_output, output, axis, out):
    g = _float_array(grad_output, "grad_output")
    y = _float_array(output, "output")
    if y.shape != g.shape:
        raise ValueError(f"output has shape {y.shape}, expected {g.shape}")
    ax = _sm_axis(axis, g.ndim)
    out = _sm_check_out(out, g, [g, y])
    g64 = _as_f64(g).reshape(g.shape or (1,))
    y64 = _held_in(y, g.dtype).reshape(g.shape or (1,))
    return g, g64, y64, ax, out


def log_softmax_backward(grad_output, output, axis=-1, out=None):
    """grad_output - exp(output) * sum(grad_output) along ``axis``."""
    g, g64, y64, ax, out = _sm_backward_args(grad_output, output, axis, out)
    with np.errstate(invalid="ignore", over="ignore"):
        r = g64 - np.exp(y64) * np.sum(g64, axis=ax, keepdims=True)
    return _finish(r.reshape(g.shape), g.dtype, out)


def softmax_backward(grad_output, output, axis=-1, out=None):
    """output * (grad_output - sum(grad_output * output)) along ``axis``."""
    g, g64, y64, ax, out = _sm_backward_args(grad_output, output, axis, out)
    with np.errstate(invalid="ignore", over="ignore"):
        r = y64 * (g64 - np.sum(g64 * y64, axis=ax, keepdims=True))
    return _finish(r.reshape(g.shape), g.dtype, out)


def _sm_nll_args(input, target, weight, ignore_index, reduction, values_now=True):
    """The checked arguments; with values_now=False an out-of-range target is returned as
    the last item (an IndexError to raise after the caller's own checks), else raised."""
    x = _float_array(input)
    if x.ndim == 0:
        raise ValueError("Expected 1 or more dimensions (got 0)")
    _check_reduction(reduction)
    ignore_index = _check_ignore_index(ignore_index)
    C = x.shape[0] if x.ndim == 1 else x.shape[1]
    batch = _batch_shape(x)
    t = _index_target(np.asarray(target), x)
    if weight is None:
        w = np.ones(C)
    else:
        w0 = np.asarray(weight)
        if not _is_real(w0):
            raise TypeError(f"weight must be real, got dtype {w0.dtype}")
        if w0.shape != (C,):
            raise ValueError(f"weight must have shape ({C},), got {w0.shape}")
        w = _held_in(w0, x.dtype)
    kept = t != ignore_index
    message = _out_of_bounds(t, ignore_index, C)
    error = None if message is None else IndexError(message)
    if error is not None and values_now:
        raise error
    return x, t, w, kept, C, batch, ignore_index, error


def _sm_nll_core(x, t, w, kept, C):
    """Per-position losses and the gathered (w_t, position index) in float64."""
    x64 = _as_f64(x)
    xm = np.moveaxis(x64, 0 if x.ndim == 1 else 1, -1)  # batch shape + (C,)
    tt = np.where(kept, t, 0).astype(np.int64)
    if C == 0:
        xt = np.zeros(tt.shape)
        wt = np.zeros(tt.shape)
    else:
        xt = np.take_along_axis(xm, tt[..., None], axis=-1)[..., 0]
        wt = w[tt]
    wt = np.where(kept, wt, 0.0)
    with np.errstate(invalid="ignore"):
        loss = np.where(kept, -(wt * xt), 0.0)
    return loss, wt, tt


def _sm_reduce(loss, wt, reduction, dtype):
    # inf + -inf: nan; float16 overflow: inf (no warnings, as the fast path)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        if reduction == "none":
            return np.asarray(_round_to(loss, dtype))
        total = float(np.sum(loss))
        if reduction == "sum":
            return _scalar(total, dtype)
        return _scalar(np.float64(total) / np.float64(np.sum(wt)), dtype)


def nll_loss(input, target, weight=None, ignore_index=-100, reduction="mean"):
    """-w[t] * input[t] per position, reduced (see the module docstring)."""
    x, t, w, kept, C, batch, ignore_index, _ = _sm_nll_args(input, target, weight, ignore_index, reduction)
    loss, wt, _ = _sm_nll_core(x, t, w, kept, C)
    return _sm_reduce(loss, wt, reduction, x.dtype)


def nll_loss_with_grad(input, target, weight=None, ignore_index=-100, reduction="mean",
                       grad_output=None, out=None):
    """(loss, d(sum(loss * grad_output))/d(input)): -s * w[t] at each kept target, else 0."""
    x, t, w, kept, C, batch, ignore_index, error = _sm_nll_args(input, target, weight, ignore_index,
                                                                reduction, values_now=False)
    go = _check_grad_output(grad_output, reduction, batch, x.dtype)
    out = _check_out(out, x, (("target", target), ("weight", weight), ("grad_output", grad_output)))
    if error is not None:
        raise error
    loss, wt, tt = _sm_nll_core(x, t, w, kept, C)
    value = _sm_reduce(loss, wt, reduction, x.dtype)
    scale = go
    if reduction == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = go / np.float64(np.sum(wt))
    gm = np.zeros(batch + (C,))
    with np.errstate(invalid="ignore"):
        vals = np.where(kept, -wt * scale, 0.0)
    if C:
        np.put_along_axis(gm, tt[..., None], np.where(kept, vals, 0.0)[..., None], axis=-1)
    grad = np.moveaxis(gm, -1, 0 if x.ndim == 1 else 1)
    return value, _finish(grad, x.dtype, out)


# ---- mse_loss, l1_loss, smooth_l1_loss, huber_loss ---------------------------------------

# torch's warning for a target that broadcasts against the input, word for word
_REG_BROADCAST_WARNING = " ".join((
    "Using a target size ({target}) that is different to the input size ({input}).",
    "This will likely lead to incorrect results due to broadcasting.",
    "Please ensure they have the same size.",
))


def _reg_prepare(input, target, reduction, kind, param):
    # checked in the fast path's order: input, reduction, beta/delta, target, shapes
    x = _float_array(input)
    _check_reduction(reduction)
    _reg_check_param(kind, param)
    t = np.asarray(target)
    if not (t.dtype.kind in "biu" or _is_float(t)):
        raise TypeError(f"target must be a real array, got dtype {t.dtype}")
    if x.shape != t.shape:
        try:
            np.broadcast_shapes(x.shape, t.shape)
        except ValueError:
            raise ValueError(f"The size of target {t.shape} does not broadcast with the size of "
                             f"input {x.shape}") from None
        message = _REG_BROADCAST_WARNING.format(target=t.shape, input=x.shape)
        warnings.warn(message, UserWarning, stacklevel=3)
    # huber's target is held in the input's dtype (torch), the others promote the loss
    dtype = x.dtype if kind == "huber" else _loss_dtype(x, t)
    t = _held_in(t, dtype)
    xd, td = np.broadcast_arrays(_as_f64(x), t)
    return x, dtype, xd, td


def _reg_upstream(grad_output, reduction, shape, dtype):
    """The upstream factor per element of the loss (float64, loss shape); the loss is in
    ``dtype``."""
    g = _check_grad_output(grad_output, reduction, shape, dtype)
    if reduction == "mean":
        n = int(np.prod(shape))
        g = g / n if n else g * np.nan
    return g


def _reg_grad_result(x, grad_full, out):
    """Sum the broadcast gradient back to x's shape; round to x's dtype; write into out."""
    return _finish(np.asarray(_sum_to_shape(grad_full, x.shape)).reshape(x.shape), x.dtype, out)


def _reg_elementwise(kind, d, param):
    """(loss, dloss/dd) of float64 differences d."""
    z = np.abs(d)
    with np.errstate(invalid="ignore", over="ignore"):
        if kind == "mse":
            return d * d, 2.0 * d
        if kind == "l1" or (kind == "smooth_l1" and param == 0.0):
            s = np.where(d > 0, 1.0, np.where(d < 0, -1.0, 0.0))
            return z, s
        if kind == "smooth_l1":
            beta = param
            loss = np.where(z < beta, 0.5 * z * z / beta, z - 0.5 * beta)
            grad = np.where(d >= beta, 1.0, np.where(d <= -beta, -1.0, d / beta))
            return loss, grad
        delta = param
        loss = np.where(z < delta, 0.5 * z * z, delta * (z - 0.5 * delta))
        grad = np.where(d >= delta, delta, np.where(d <= -delta, -delta, d))
        return loss, grad


def _reg_check_param(kind, param):
    if param is not None and (isinstance(param, (bool, np.bool_)) or not isinstance(param, numbers.Real)):
        raise TypeError(f"{'beta' if kind == 'smooth_l1' else 'delta'} must be a real number, "
                        f"got {type(param).__name__}")
    if kind == "smooth_l1" and not (float(param) >= 0.0):
        raise ValueError("smooth_l1_loss does not support negative values for beta.")
    if kind == "huber" and not (float(param) > 0.0):
        raise ValueError("huber_loss does not support non-positive values for delta.")


def _reg_loss(kind, input, target, reduction, param):
    x, dtype, xd, td = _reg_prepare(input, target, reduction, kind, param)
    with np.errstate(invalid="ignore"):  # inf - inf
        losses, _ = _reg_elementwise(kind, xd - td, param)
    return _reduce(losses, reduction, dtype)


def _reg_loss_with_grad(kind, input, target, reduction, param, grad_output, out):
    x, dtype, xd, td = _reg_prepare(input, target, reduction, kind, param)
    g = _reg_upstream(grad_output, reduction, xd.shape, dtype)
    # out=target, exactly (the input's shape and dtype), is allowed too: the gradient then
    # overwrites the target, as out=input overwrites the input
    out_is_target = (isinstance(out, np.ndarray) and isinstance(target, np.ndarray)
                     and out.dtype == target.dtype and _same_memory(out, target))
    out = _check_out(out, x, (("target", None if out_is_target else target), ("grad_output", grad_output)))
    with np.errstate(invalid="ignore"):  # inf - inf
        losses, dl = _reg_elementwise(kind, xd - td, param)
    with np.errstate(invalid="ignore", over="ignore"):
        grad_full = dl * g
    return _reduce(losses, reduction, dtype), _reg_grad_result(x, grad_full, out)


def mse_loss(input, target, reduction="mean"):
    """loss = (x - y) ** 2 per element."""
    return _reg_loss("mse", input, target, reduction, None)


def mse_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None):
    """grad = 2 (x - y) g."""
    return _reg_loss_with_grad("mse", input, target, reduction, None, grad_output, out)


def l1_loss(input, target, reduction="mean"):
    """loss = |x - y| per element."""
    return _reg_loss("l1", input, target, reduction, None)


def l1_loss_with_grad(input, target, reduction="mean", grad_output=None, out=None):
    """grad = sign(x - y) g (0 where x - y is 0 or nan)."""
    return _reg_loss_with_grad("l1", input, target, reduction, None, grad_output, out)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    """loss = 0.5 z^2 / beta if z < beta else z - 0.5 beta, z = |x - y|."""
    return _reg_loss("smooth_l1", input, target, reduction, beta)


def smooth_l1_loss_with_grad(input, target, reduction="mean", beta=1.0, grad_output=None, out=None):
    """grad = clip((x - y) / beta, -1, 1) g (nan stays nan)."""
    return _reg_loss_with_grad("smooth_l1", input, target, reduction, beta, grad_output, out)


def huber_loss(input, target, reduction="mean", delta=1.0):
    """loss = 0.5 z^2 if z < delta else delta (z - 0.5 delta), z = |x - y|."""
    return _reg_loss("huber", input, target, reduction, delta)


def huber_loss_with_grad(input, target, reduction="mean", delta=1.0, grad_output=None, out=None):
    """grad = clip(x - y, -delta, delta) g (nan stays nan)."""
    return _reg_loss_with_grad("huber", input, target, reduction, delta, grad_output, out)


# ---- binary_cross_entropy, binary_cross_entropy_with_logits, kl_div ----------------------

def _bin_target(a):
    t = np.asarray(a)
    if not _is_float(t):
        raise TypeError(f"target must be a floating array, got dtype {t.dtype}")
    return t


def _bin_broadcast_to_input(a, shape, what):
    """weight / pos_weight: a real array that broadcasts to the input's shape, as float64."""
    if a is None:
        return None
    v = np.asarray(a)
    if not _is_real(v):
        raise TypeError(f"{what} must be a real array, got dtype {v.dtype}")
    try:
        return np.broadcast_to(_as_f64(v), shape)
    except ValueError:
        raise ValueError(f"{what} of shape {v.shape} does not broadcast to the input shape {shape}") from None


def _bin_scale(reduction, n, batch=None):
    """d(reduced)/d(loss element)."""
    if reduction == "mean":
        return 1.0 / n if n else np.nan
    if reduction == "batchmean" and batch is not None:
        return 1.0 / batch if batch else np.inf
    return 1.0


def _bin_finish_grad(grad, x, out):
    with np.errstate(over="ignore", invalid="ignore"):  # float16 overflow: inf
        return _finish(grad, x.dtype, out)


def _bin_bce_prepare(input, target, weight, reduction):
    x0 = _float_array(input)
    t0 = _bin_target(target)
    if t0.shape != x0.shape:
        raise ValueError(f"Using a target size ({t0.shape}) that is different to the input size "
                         f"({x0.shape}) is deprecated. Please ensure they have the same size.")
    red = _check_reduction(reduction)
    w = _bin_broadcast_to_input(weight, x0.shape, "weight")
    x = _as_f64(x0)
    y = _held_in(t0, x0.dtype)
    if not np.all((x >= 0) & (x <= 1)):
        raise ValueError("all elements of input should be between 0 and 1")
    if not np.all((y >= 0) & (y <= 1)):
        raise ValueError("all elements of target should be between 0 and 1")
    if w is not None:
        w = _held_in(w, x0.dtype)
    return x0, x, y, w, red


# torch's EPSILON is the float32 1e-12, in every dtype
_BIN_BCE_EPS = float(np.float32(1e-12))


def _bin_bce_loss(x, y, w):
    with np.errstate(divide="ignore", invalid="ignore"):
        lx = np.maximum(np.log(x), -100.0)
        l1 = np.maximum(np.log1p(-x), -100.0)
        loss = (y - 1.0) * l1 - y * lx
        return loss if w is None else loss * w  # 0 * inf: nan, without a warning


def binary_cross_entropy(input, target, weight=None, reduction="mean"):
    """Binary cross-entropy of probabilities (see the module docstring)."""
    x0, x, y, w, red = _bin_bce_prepare(input, target, weight, reduction)
    return _reduce(_bin_bce_loss(x, y, w), red, x0.dtype)


def binary_cross_entropy_with_grad(input, target, weight=None, reduction="mean", grad_output=None,
                                   out=None):
    """(loss, d(sum(loss * grad_output)) / d(input)) for binary_cross_entropy."""
    x0, x, y, w, red = _bin_bce_prepare(input, target, weight, reduction)
    s = _check_grad_output(grad_output, red, x.shape, x0.dtype) * _bin_scale(red, x.size)
    out = _check_out(out, x0, (("target", target), ("weight", weight), ("grad_output", grad_output)))
    loss = _bin_bce_loss(x, y, w)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        grad = (x - y) / np.maximum((1.0 - x) * x, _BIN_BCE_EPS) * s
        if w is not None:
            grad = grad * w
    return _reduce(loss, red, x0.dtype), _bin_finish_grad(grad, x0, out)


def _bin_bcel_prepare(input, target, weight, reduction, pos_weight):
    x0 = _float_array(input)
    t0 = _bin_target(target)
    if t0.shape != x0.shape:
        raise ValueError(f"Target size ({t0.shape}) must be the same as input size ({x0.shape})")
    red = _check_reduction(reduction)
    w = _bin_broadcast_to_input(weight, x0.shape, "weight")
    p = _bin_broadcast_to_input(pos_weight, x0.shape, "pos_weight")
    x = _as_f64(x0)
    dtype = _loss_dtype(x0, t0)  # torch promotes the target, weights follow the loss
    y = _held_in(t0, dtype)
    if w is not None:
        w = _held_in(w, dtype)
    if p is not None:
        p = _held_in(p, dtype)
    return x0, x, y, w, p, red


def _bin_bcel_terms(x, y, p):
    """lw = 1 + (p - 1) y, the linear coefficient a (1 - y for x >= 0, -p y below: torch's
    (1 - y) x + lw max(-x, 0) combined, so that nothing cancels) and whether torch's own form
    must be used instead (an infinite x, y or lw, where its inf - inf is NaN)."""
    lw = np.ones_like(x) if p is None else (p - 1.0) * y + 1.0
    a = np.where(x >= 0, 1.0 - y, -(y if p is None else p * y))
    torch_form = np.isinf(x) | np.isinf(y) | np.isinf(lw)
    return lw, a, torch_form


def _bin_bcel_loss(x, y, w, p):
    with np.errstate(invalid="ignore", over="ignore"):
        lw, a, torch_form = _bin_bcel_terms(x, y, p)
        l1p = np.log1p(np.exp(-np.abs(x)))
        loss = np.where(torch_form, (1.0 - y) * x + lw * (l1p + np.maximum(-x, 0.0)), a * x + lw * l1p)
        return loss if w is None else loss * w  # 0 * inf: nan, without a warning


def binary_cross_entropy_with_logits(input, target, weight=None, reduction="mean", pos_weight=None):
    """Binary cross-entropy of logits (see the module docstring)."""
    x0, x, y, w, p, red = _bin_bcel_prepare(input, target, weight, reduction, pos_weight)
    return _reduce(_bin_bcel_loss(x, y, w, p), red, _loss_dtype(x0, np.asarray(target)))


def binary_cross_entropy_with_logits_with_grad(input, target, weight=None, reduction="mean",
                                               pos_weight=None, grad_output=None, out=None):
    """(loss, d(sum(loss * grad_output)) / d(input)) for binary_cross_entropy_with_logits."""
    x0, x, y, w, p, red = _bin_bcel_prepare(input, target, weight, reduction, pos_weight)
    s = (_check_grad_output(grad_output, red, x.shape, _loss_dtype(x0, np.asarray(target)))
         * _bin_scale(red, x.size))
    out = _check_out(out, x0, (("target", target), ("weight", weight), ("pos_weight", pos_weight),
                               ("grad_output", grad_output)))
    loss = _bin_bcel_loss(x, y, w, p)
    with np.errstate(invalid="ignore", over="ignore"):
        # lw sigmoid(x) - p y = a - lw e / (1 + e) for x >= 0, a + lw e / (1 + e) below
        lw, a, torch_form = _bin_bcel_terms(x, y, p)
        e = np.exp(-np.abs(x))
        eu = e / (1.0 + e)
        sig = np.where(x >= 0, 1.0 / (1.0 + e), eu)
        q = lw * eu
        grad = np.where(torch_form, lw * sig - (y if p is None else p * y), np.where(x >= 0, a - q, a + q))
        grad = grad * s
        if w is not None:
            grad = grad * w
    return _reduce(loss, red, _loss_dtype(x0, np.asarray(target))), _bin_finish_grad(grad, x0, out)


_BIN_KL_REDUCTIONS = ("none", "mean", "sum", "batchmean")


def _bin_kl_prepare(input, target, reduction, log_target):
    x0 = _float_array(input)
    t0 = _bin_target(target)
    red = _check_reduction(reduction, _BIN_KL_REDUCTIONS)
    if not isinstance(log_target, (bool, np.bool_)):
        raise TypeError(f"log_target must be a bool, got {type(log_target).__name__}")
    try:
        shape = np.broadcast_shapes(x0.shape, t0.shape)
    except ValueError:
        raise ValueError(f"The size of input {x0.shape} and target {t0.shape} do not broadcast") from None
    x = np.broadcast_to(_as_f64(x0), shape)
    y = np.broadcast_to(_held_in(t0, _loss_dtype(x0, t0)), shape)
    batch = x0.shape[0] if (red == "batchmean" and x0.ndim) else None
    return x0, x, y, red, bool(log_target), batch


def _bin_kl_loss(x, y, log_target):
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if log_target:
            return np.exp(y) * (y - x)
        xlogy = np.where(y == 0, 0.0, y * np.log(y))
        return xlogy - y * x


def kl_div(input, target, reduction="mean", log_target=False):
    """Kullback-Leibler divergence loss (see the module docstring)."""
    x0, x, y, red, lt, batch = _bin_kl_prepare(input, target, reduction, log_target)
    return _reduce(_bin_kl_loss(x, y, lt), red, _loss_dtype(x0, np.asarray(target)), batch)


def kl_div_with_grad(input, target, reduction="mean", log_target=False, grad_output=None, out=None):
    """(loss, d(sum(loss * grad_output)) / d(input)) for kl_div; when the input is
    broadcast against the target, the gradient is summed over the broadcast axes."""
    x0, x, y, red, lt, batch = _bin_kl_prepare(input, target, reduction, log_target)
    s = (_check_grad_output(grad_output, red, x.shape, _loss_dtype(x0, np.asarray(target)))
         * _bin_scale(red, x.size, batch))
    out = _check_out(out, x0, (("target", target), ("grad_output", grad_output)))
    loss = _bin_kl_loss(x, y, lt)
    with np.errstate(over="ignore", invalid="ignore"):
        grad = -(np.exp(y) if lt else y) * s
    grad = _sum_to_shape(grad, x0.shape)  # the input may be broadcast against the target
    return _reduce(loss, red, _loss_dtype(x0, np.asarray(target)), batch), _bin_finish_grad(grad, x0, out)

