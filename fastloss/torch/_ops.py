"""The losses as ``torch.library`` custom ops, for torch.compile.

Dynamo cannot trace into C kernels called through NumPy, so under ``torch.compile`` the
functional API calls these ops instead of the autograd Functions: each op has a fake
(meta) implementation giving its output shapes, and its backward registered with
``register_autograd`` is itself a custom op. ``torch.compile(model, fullgraph=True)`` then
compiles a model that uses any fastloss.torch loss module without a graph break.

Ops (namespace ``fastloss``):
    cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing) -> (loss, lse)
    cross_entropy_backward(grad, input, target, weight, lse, ignore_index, reduction, label_smoothing)
    loss(name, input, target, weight, pos_weight, reduction, ignore_index, param, flag)
    loss_backward(name, grad, input, target, weight, pos_weight, reduction, ignore_index, param, flag)
``loss`` serves every loss of ``_functions.SPECS``: ``param`` carries beta / delta, ``flag``
log_target. Calls whose target requires grad run torch's own function under compile.
Arguments the kernels reject raise torch's own error where torch rejects them too (the op
calls torch's function to raise it).
"""
import math
from typing import Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from fastloss import _cross_entropy
from fastloss.torch._bridge import as_numpy, new_buffer, to_tensor, upstream
from fastloss.torch._functions import SPECS

_PARAM = {"beta": 1.0, "delta": 1.0}
_REJECTED = (ValueError, TypeError, IndexError)  # the NumPy layer's argument errors


def _positions_shape(input):
    return tuple(input.shape[:1]) + tuple(input.shape[2:]) if input.dim() >= 2 else ()


# ---- cross_entropy ----------------------------------------------------------------------------

@torch.library.custom_op("fastloss::cross_entropy", mutates_args=())
def _cross_entropy_op(input: Tensor, target: Tensor, weight: Optional[Tensor], ignore_index: int,
                      reduction: str, label_smoothing: float) -> tuple[Tensor, Tensor]:
    x = as_numpy(input)
    lse = np.empty(math.prod(_positions_shape(input)))
    try:
        loss = _cross_entropy._cross_entropy_forward_lse(x, as_numpy(target), as_numpy(weight), ignore_index,
                                                         reduction, label_smoothing, lse)
    except _REJECTED:  # raise torch's own error where torch rejects these arguments too
        F.cross_entropy(input, target, weight, ignore_index=ignore_index, reduction=reduction,
                        label_smoothing=label_smoothing)
        raise
    return to_tensor(loss, input.dtype), torch.from_numpy(lse)


@_cross_entropy_op.register_fake
def _(input, target, weight, ignore_index, reduction, label_smoothing):
    positions = _positions_shape(input)
    loss = input.new_empty(positions if reduction == "none" else ())
    return loss, input.new_empty((math.prod(positions),), dtype=torch.float64)


@torch.library.custom_op("fastloss::cross_entropy_backward", mutates_args=())
def _cross_entropy_backward_op(grad: Tensor, input: Tensor, target: Tensor, weight: Optional[Tensor], lse: Tensor,
                               ignore_index: int, reduction: str, label_smoothing: float) -> Tensor:
    x = as_numpy(input)
    g = new_buffer(x.shape, x.dtype)
    _cross_entropy._cross_entropy_backward_lse(x, as_numpy(target), as_numpy(weight), ignore_index, reduction,
                                               label_smoothing, upstream(grad, reduction != "none"),
                                               lse.numpy(), g)
    return to_tensor(g, input.dtype)


@_cross_entropy_backward_op.register_fake
def _(grad, input, target, weight, lse, ignore_index, reduction, label_smoothing):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _cross_entropy_setup(ctx, inputs, output):
    input, target, weight, ignore_index, reduction, label_smoothing = inputs
    ctx.save_for_backward(input, target, weight, output[1])
    ctx.options = (ignore_index, reduction, label_smoothing)


def _cross_entropy_grad(ctx, grad, grad_lse):
    input, target, weight, lse = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[0]:
        grad_input = _cross_entropy_backward_op(grad, input, target, weight, lse, *ctx.options)
    return grad_input, None, None, None, None, None


_cross_entropy_op.register_autograd(_cross_entropy_grad, setup_context=_cross_entropy_setup)


def cross_entropy(input, target, weight, ignore_index, reduction, label_smoothing):
    return _cross_entropy_op(input, target, weight, ignore_index, reduction, label_smoothing)[0]


# ---- nll_loss and the elementwise losses -------------------------------------------------------

def _pack(name, options):
    """A spec's option values as the op's fixed arguments (reduction, ignore_index, param, flag)."""
    named = dict(zip(SPECS[name].options, options))
    param = next((float(named[k]) for k in _PARAM if k in named), 0.0)
    return named["reduction"], int(named.get("ignore_index", -100)), param, bool(named.get("log_target", False))


def _unpack(name, reduction, ignore_index, param, flag):
    values = {"reduction": reduction, "ignore_index": ignore_index, "beta": param, "delta": param, "log_target": flag}
    return tuple(values[k] for k in SPECS[name].options)


@torch.library.custom_op("fastloss::loss", mutates_args=())
def _loss_op(name: str, input: Tensor, target: Tensor, weight: Optional[Tensor], pos_weight: Optional[Tensor],
             reduction: str, ignore_index: int, param: float, flag: bool) -> Tensor:
    spec = SPECS[name]
    options = _unpack(name, reduction, ignore_index, param, flag)
    try:
        value = spec.loss(as_numpy(input), as_numpy(target), **spec.numpy_kwargs(options, weight, pos_weight))
    except _REJECTED:  # raise torch's own error where torch rejects these arguments too
        spec.torch_fn(input, target, **spec.torch_kwargs(options, weight, pos_weight))
        raise
    return to_tensor(value, input.dtype)


@_loss_op.register_fake
def _(name, input, target, weight, pos_weight, reduction, ignore_index, param, flag):
    if reduction != "none":
        return input.new_empty(())
    return input.new_empty(target.shape if name == "nll_loss" else input.shape)


@torch.library.custom_op("fastloss::loss_backward", mutates_args=())
def _loss_backward_op(name: str, grad: Tensor, input: Tensor, target: Tensor, weight: Optional[Tensor],
                      pos_weight: Optional[Tensor], reduction: str, ignore_index: int, param: float,
                      flag: bool) -> Tensor:
    spec = SPECS[name]
    options = _unpack(name, reduction, ignore_index, param, flag)
    x = as_numpy(input)
    g = new_buffer(x.shape, x.dtype)
    spec.with_grad(x, as_numpy(target), **spec.numpy_kwargs(options, weight, pos_weight),
                   grad_output=upstream(grad, reduction != "none"), out=g)
    return to_tensor(g, input.dtype)


@_loss_backward_op.register_fake
def _(name, grad, input, target, weight, pos_weight, reduction, ignore_index, param, flag):
    return torch.empty_like(input, memory_format=torch.contiguous_format)


def _loss_setup(ctx, inputs, output):
    ctx.name = inputs[0]
    ctx.save_for_backward(*inputs[1:5])
    ctx.options = inputs[5:]


def _loss_grad(ctx, grad):
    input, target, weight, pos_weight = ctx.saved_tensors
    grad_input = None
    if ctx.needs_input_grad[1]:
        grad_input = _loss_backward_op(ctx.name, grad, input, target, weight, pos_weight, *ctx.options)
    return None, grad_input, None, None, None, None, None, None, None


_loss_op.register_autograd(_loss_grad, setup_context=_loss_setup)


def loss(name, options, input, target, weight=None, pos_weight=None):
    return _loss_op(name, input, target, weight, pos_weight, *_pack(name, options))
