"""torch.nn.functional's losses, computed by fastloss's C kernels.

Every function has the signature and defaults of its torch.nn.functional namesake (legacy
``size_average``/``reduce`` included) and returns what torch returns. How a call runs:

1. Plain CPU float32/float64 tensors (float16/bfloat16 computed in float32) whose other
   arguments torch takes as they are (targets of a dtype torch accepts, a weight of the
   input's dtype that does not require grad, ...) run the kernels through zero-copy NumPy
   views: eagerly through a ``torch.autograd.Function``, under ``torch.compile`` through
   the custom ops of ``fastloss.torch._ops``.
2. Everything else (CUDA or other devices, other dtypes, tensor subclasses, ``torch.func``
   transforms, a weight that requires grad, broadcasting targets, mse/l1/huber ``weight=``)
   runs torch's own implementation.
3. An argument the kernels' checks reject (a class index out of range, a bad shape or
   option) is handed to torch's own implementation too, which raises its own exception
   type and message, or computes the result where torch accepts the input (a negative
   ``label_smoothing``, say). Errors are therefore exactly torch's.

The formulas are those of the NumPy functions of the same name (``fastloss.cross_entropy``
and so on); each docstring below repeats its loss's.
"""
import warnings

import torch
import torch.nn.functional as F
from torch.nn import _reduction

from fastloss.torch import _functions, _ops
from fastloss.torch._bridge import as_numpy, autocast_fp32, float_input, plain_cpu, same_float, to_tensor

Tensor = torch.Tensor
_INDEX_TARGETS = (torch.int64, torch.uint8)
_REJECTED = (ValueError, TypeError, IndexError)  # the NumPy layer's argument errors


def _legacy(size_average, reduce, reduction):
    if size_average is not None or reduce is not None:
        return _reduction.legacy_get_string(size_average, reduce)
    return reduction


def _needs_grad(*tensors):
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _class_target_ok(input, target, weight):
    """cross_entropy / nll_loss: index targets of a dtype torch takes, or probabilities of
    the input's dtype; a weight of the input's dtype that does not require grad. (A 1-D input
    with a (1,)-shaped index target is torch's: its forward takes it, its backward raises.)"""
    if not (float_input(input) and plain_cpu(target) and same_float(weight, input)):
        return False
    if target.dtype in _INDEX_TARGETS:
        return input.dim() != 1 or target.dim() == 0
    return target.dtype == input.dtype


def _pair_ok(input, target, *extra):
    """Elementwise losses: same shape and dtype for input and target; optional weights of
    the input's dtype that do not require grad."""
    return (float_input(input) and plain_cpu(target) and target.dtype == input.dtype
            and target.shape == input.shape and all(same_float(t, input) for t in extra))


def _size_warning(input, target):
    """torch's warning for a target that broadcasts against the input, raised here so that it
    names the caller's line (torch's own would name this module's); True when raised."""
    if isinstance(input, Tensor) and isinstance(target, Tensor) and target.size() != input.size():
        warnings.warn(
            f"Using a target size ({target.size()}) that is different to the input size ({input.size()}). "
            "This will likely lead to incorrect results due to broadcasting. "
            "Please ensure they have the same size.",
            stacklevel=3,
        )
        return True
    return False


def _torch_quietly(message, fn, *args):
    """torch's function, without a warning this module already gave (``message``: how its
    text starts; None: nothing to hold back)."""
    if message is None:
        return fn(*args)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
        return fn(*args)


def _loss(eligible, name, options, input, target, weight, pos_weight, torch_fn, *torch_args):
    """One loss of _functions.SPECS: on the fast path when ``eligible`` (the caller's checks
    of the tensors) and the kernels' checks accept the arguments; else torch's own function,
    ``torch_fn(*torch_args)`` (under CPU autocast, on float32 copies of half tensors: the
    eligibility checks then ran on the caller's tensors, and torch's function upcasts them
    itself)."""
    if eligible and torch.is_autocast_enabled("cpu"):
        input, target, weight, pos_weight = autocast_fp32(input, target, weight, pos_weight)
    if eligible:
        if torch.compiler.is_compiling():
            if not target.requires_grad:  # a target that requires grad: torch's function
                return _ops.loss(name, options, input, target, weight, pos_weight)
        else:
            spec = _functions.SPECS[name]
            try:
                if _needs_grad(input, target):
                    return _functions.loss_apply(name, options, input, target, weight, pos_weight)
                value = spec.loss(as_numpy(input), as_numpy(target), **spec.numpy_kwargs(options, weight, pos_weight))
                return to_tensor(value, input.dtype)
            except _REJECTED:
                pass
    return torch_fn(*torch_args)


def _regression(name, options, input, target, weight, warned, torch_fn, *torch_args):
    """mse / l1 / smooth_l1 / huber: the kernels for same-shape, same-dtype pairs without
    ``weight=``; torch's function (``torch_fn(input, target, *torch_args)``) otherwise, or when
    the kernels' checks reject the arguments."""
    return _loss(weight is None and _pair_ok(input, target), name, options, input, target, None, None,
                 _torch_quietly, "Using a target size" if warned else None, torch_fn, input, target, *torch_args)


def cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy between logits and class targets, as ``torch.nn.functional.cross_entropy``.

    With ``lse = log(sum_k exp(x_k))`` over the class axis (dim 1, or 0 for 1-D input),
    ``eps = label_smoothing`` and ``C`` classes, per position::

        index target t:   (1 - eps) * w[t] * (lse - x[t]) + eps / C * sum_k w[k] * (lse - x[k])
        probabilities y:  sum_k w[k] * y'[k] * (lse - x[k]),   y' = (1 - eps) * y + eps / C

    "mean" divides by the sum of w[t] over the kept targets (index targets) or by the
    number of positions (probabilities). Between forward and backward only the input (by
    reference) and one float64 log-sum-exp per position are kept.
    """
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    input, target, weight = autocast_fp32(input, target, weight)
    # torch accepts a negative label_smoothing, the kernels do not: torch's function runs it
    if _class_target_ok(input, target, weight) and not label_smoothing < 0.0:
        if torch.compiler.is_compiling():
            if not target.requires_grad:
                return _ops.cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing)
        else:
            try:
                if torch.is_grad_enabled() and (input.requires_grad or target.requires_grad):
                    return _functions.cross_entropy_apply(input, target, weight,
                                                          (ignore_index, reduction, label_smoothing))
                return _functions.cross_entropy_value(input, target, weight, ignore_index, reduction,
                                                      label_smoothing)
            except _REJECTED:
                pass
    return F.cross_entropy(input, target, weight, None, ignore_index, None, reduction, label_smoothing)


def nll_loss(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    ignore_index: int = -100,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of log-probabilities, as ``torch.nn.functional.nll_loss``:
    ``-w[t] * x[t]`` per position (0 where t == ignore_index); "mean" divides by the sum of
    w[t] over the kept positions."""
    reduction = _legacy(size_average, reduce, reduction)
    return _loss(_class_target_ok(input, target, weight) and target.dtype in _INDEX_TARGETS,
                 "nll_loss", (ignore_index, reduction), input, target, weight, None,
                 F.nll_loss, input, target, weight, None, ignore_index, None, reduction)


def binary_cross_entropy(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Binary cross-entropy of probabilities, as ``torch.nn.functional.binary_cross_entropy``:
    ``-w * (y * max(log x, -100) + (1 - y) * max(log(1 - x), -100))`` elementwise."""
    reduction = _legacy(size_average, reduce, reduction)
    return _loss(_pair_ok(input, target, weight), "binary_cross_entropy", (reduction,), input, target, weight, None,
                 F.binary_cross_entropy, input, target, weight, None, None, reduction)


def binary_cross_entropy_with_logits(
    input: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    pos_weight: Tensor | None = None,
) -> Tensor:
    """Binary cross-entropy of logits, as ``torch.nn.functional.binary_cross_entropy_with_logits``:
    ``w * ((1 - y) * x + (1 + (p - 1) * y) * softplus(-x))`` elementwise, p = pos_weight
    (broadcast over the last axis)."""
    reduction = _legacy(size_average, reduce, reduction)
    return _loss(_pair_ok(input, target, weight, pos_weight), "binary_cross_entropy_with_logits", (reduction,),
                 input, target, weight, pos_weight,
                 F.binary_cross_entropy_with_logits, input, target, weight, None, None, reduction, pos_weight)


def mse_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Mean squared error, as ``torch.nn.functional.mse_loss``: ``(x - y)**2`` elementwise.
    ``weight=`` and broadcasting targets run torch's implementation."""
    warned = _size_warning(input, target)
    reduction = _legacy(size_average, reduce, reduction)
    return _regression("mse_loss", (reduction,), input, target, weight, warned,
                       F.mse_loss, None, None, reduction, weight)


def l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    weight: Tensor | None = None,
) -> Tensor:
    """Mean absolute error, as ``torch.nn.functional.l1_loss``: ``|x - y|`` elementwise.
    ``weight=`` and broadcasting targets run torch's implementation."""
    warned = _size_warning(input, target)
    reduction = _legacy(size_average, reduce, reduction)
    return _regression("l1_loss", (reduction,), input, target, weight, warned,
                       F.l1_loss, None, None, reduction, weight)


def smooth_l1_loss(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    beta: float = 1.0,
) -> Tensor:
    """Smooth L1, as ``torch.nn.functional.smooth_l1_loss``: with d = |x - y|,
    ``0.5 * d**2 / beta`` where d < beta, else ``d - 0.5 * beta`` (beta = 0: |x - y|)."""
    warned = _size_warning(input, target)
    reduction = _legacy(size_average, reduce, reduction)
    return _regression("smooth_l1_loss", (reduction, beta), input, target, None, warned,
                       F.smooth_l1_loss, None, None, reduction, beta)


def huber_loss(
    input: Tensor,
    target: Tensor,
    reduction: str = "mean",
    delta: float = 1.0,
    weight: Tensor | None = None,
) -> Tensor:
    """Huber loss, as ``torch.nn.functional.huber_loss``: with d = |x - y|, ``0.5 * d**2``
    where d < delta, else ``delta * (d - 0.5 * delta)``. ``weight=`` and broadcasting
    targets run torch's implementation."""
    warned = _size_warning(input, target)
    return _regression("huber_loss", (reduction, delta), input, target, weight, warned,
                       F.huber_loss, reduction, delta, weight)


_KL_MEAN_WARNING = (
    "reduction: 'mean' divides the total loss by both the batch size and the support size."
    "'batchmean' divides only by the batch size, and aligns with the KL div math definition."
    "'mean' will be changed to behave the same as 'batchmean' in the next major release."
)


def kl_div(
    input: Tensor,
    target: Tensor,
    size_average: bool | None = None,
    reduce: bool | None = None,
    reduction: str = "mean",
    log_target: bool = False,
) -> Tensor:
    """Kullback-Leibler divergence, as ``torch.nn.functional.kl_div`` (input: log-probabilities):
    ``y * (log y - x)`` elementwise (0 where y = 0), or ``exp(y) * (y - x)`` with log_target;
    "batchmean" divides the sum by the batch size. Warns for "mean" as torch does."""
    if size_average is not None or reduce is not None:
        reduction = _reduction.legacy_get_string(size_average, reduce)
    elif reduction == "mean":
        warnings.warn(_KL_MEAN_WARNING, stacklevel=2)
    return _loss(_pair_ok(input, target), "kl_div", (reduction, log_target), input, target, None, None,
                 _torch_quietly, "reduction: 'mean' divides",  # already warned above
                 F.kl_div, input, target, None, None, reduction, log_target)


def _normalize(fn, apply, torch_fn, name, input, dim, _stacklevel, dtype):
    if dim is None:
        dim = F._get_softmax_dim(name, input.dim(), _stacklevel + 1)
    if dtype is not None and isinstance(input, Tensor):
        input = input.to(dtype)
    if float_input(input) and not torch.compiler.is_compiling():
        try:
            if _needs_grad(input):
                return apply(input, dim)
            return fn.compute(input, dim)
        except _REJECTED:
            pass
    return torch_fn(input, dim)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: int | None = None) -> Tensor:
    """log_softmax along ``dim``, as ``torch.nn.functional.log_softmax``:
    ``x - m - log(sum_k exp(x_k - m))``, m = max_k x_k. ``dim=None`` picks the axis by
    torch's deprecated implicit rule (0 for 0-, 1- and 3-D input, else 1) and warns.
    Under torch.compile, torch's own implementation runs."""
    return _normalize(_functions.LogSoftmax, _functions.log_softmax_apply, F.log_softmax, "log_softmax", input, dim, _stacklevel, dtype)


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: int | None = None) -> Tensor:
    """softmax along ``dim``, as ``torch.nn.functional.softmax``: ``exp(x - m) / sum_k exp(x_k - m)``,
    m = max_k x_k. ``dim=None`` follows torch's implicit rule (and warns). Under
    torch.compile, torch's own implementation runs."""
    return _normalize(_functions.Softmax, _functions.softmax_apply, F.softmax, "softmax", input, dim, _stacklevel, dtype)


# ---- margin-softmax cross-entropy (no torch.nn.functional namesake) ---------------------------

margin_cross_entropy_torch = _functions.margin_cross_entropy_torch


def _margin_call(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index, reduction,
                 label_smoothing, overwrite=False):
    """(loss, hits or None): the kernels for plain CPU tensors they take, else torch ops.
    overwrite: the caller's cosine is its own temporary, which the fused gradient may replace."""
    reduction = str(reduction)
    if (float_input(cosine) and plain_cpu(target) and not target.dtype.is_floating_point
            and not target.is_complex() and same_float(weight, cosine)
            and not torch.compiler.is_compiling()):
        # argument errors are the NumPy layer's (no torch namesake to match): raised as they are
        if _needs_grad(cosine):
            return _functions.margin_cross_entropy_apply(
                cosine, target, weight, (margin, scale, kind, easy_margin, ignore_index, reduction, label_smoothing),
                overwrite)
        loss, _, hits = _functions._cross_entropy._margin_cross_entropy_hits(
            as_numpy(cosine), as_numpy(target), margin, scale, kind, easy_margin, as_numpy(weight), ignore_index,
            reduction, label_smoothing, False)
        return to_tensor(loss, cosine.dtype), torch.tensor(hits, dtype=torch.float64)
    return margin_cross_entropy_torch(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index,
                                      reduction, label_smoothing), None


def margin_cross_entropy(cosine, target, margin=0.2, scale=30.0, kind="arc", easy_margin=False, weight=None,
                         ignore_index=-100, reduction="mean", label_smoothing=0.0):
    r"""Margin-softmax cross-entropy (AAM-softmax / ArcFace with ``kind="arc"``, AM-softmax /
    CosFace with ``kind="cos"``) of a cosine matrix, differentiable with respect to it.

    ``cross_entropy(z, target, weight, ignore_index, reduction, label_smoothing)`` of the
    logits ``z = scale * cosine`` whose target entry is ``scale * phi(cosine[t])``:
    ``phi(x) = cos(acos(x) + margin)`` where ``x > cos(pi - margin)``, else
    ``x - margin * sin(pi - margin)`` (``easy_margin``: ``phi(x) = x`` where ``x <= 0``);
    ``phi(x) = x - margin`` for ``kind="cos"``. The target cosine is clamped to
    ``[-1 + 1e-7, 1 - 1e-7]`` for kind "arc" (finite gradients at +-1). Plain CPU tensors run
    the fused kernel (no one-hot, no N x C temporary beyond the gradient); other devices the
    same formula in torch ops (:func:`margin_cross_entropy_torch`). Argument errors are the
    NumPy layer's (``fastloss.margin_cross_entropy``): ValueError, TypeError, IndexError.
    Double backward runs only through :func:`margin_cross_entropy_torch`."""
    return _margin_call(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index, reduction,
                        label_smoothing)[0]
