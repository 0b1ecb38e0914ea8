"""The autograd Functions of fastloss.torch: forward and backward through fastloss's C
kernels, for eager calls (a plain ``torch.autograd.Function`` costs a few microseconds per
call; a ``torch.library.custom_op`` costs far more, so custom ops serve torch.compile only,
see ``_ops.py``).

What each Function keeps between forward and backward:

* cross_entropy: a reference to the input (and target, weight) and one float64
  log-sum-exp per position. The backward pass then writes the gradient in one sweep per
  row, ``exp(x - lse)`` scaled, without recomputing the row's max and sum. torch keeps the
  whole log-softmax (the input's size) instead. Because the input itself is kept, torch's
  in-place check applies to the logits: modifying them between forward and backward raises
  torch's usual "modified by an inplace operation" error.
* the other losses: references to their tensor arguments (the kernel recomputes what it
  needs); log_softmax / softmax: their output, as torch does.

Gradients with respect to a target (probability targets of cross_entropy, bce,
bce_with_logits, kl_div, mse, ...) come from torch's own ops, as does the whole backward
pass when it must itself be differentiable (``create_graph=True``): torch's result, exactly.
"""
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

import fastloss
from fastloss import _cross_entropy
from fastloss.torch._bridge import as_numpy, is_half, new_buffer, to_tensor, upstream


def _torch_grads(torch_fn, args, kwargs, grad, wanted, create_graph):
    """Gradients of ``torch_fn(*args, **kwargs)`` (torch's own loss) with respect to the
    positional tensors whose flag in ``wanted`` is set, for the upstream gradient ``grad``.
    With create_graph the saved tensors are used as they are, so that the result stays
    connected to the graph (double backward); otherwise on detached copies."""
    with torch.enable_grad(), warnings.catch_warnings():
        # the forward call already gave torch's warnings (kl_div's "mean" one): not again
        warnings.simplefilter("ignore", UserWarning)
        if create_graph:
            leaves = list(args)
        else:
            leaves = [a.detach().requires_grad_(w) if isinstance(a, torch.Tensor) and w else a
                      for a, w in zip(args, wanted)]
        loss = torch_fn(*leaves, **kwargs)
        targets = [leaf for leaf, w in zip(leaves, wanted) if w]
        grads = iter(torch.autograd.grad(loss, targets, grad, create_graph=create_graph, allow_unused=True))
    return [next(grads) if w else None for w in wanted]


def apply_of(function):
    """``function.apply`` without its Python preamble (functorch bookkeeping that only
    matters for functorch-wrapped tensors, which never reach these Functions): the C++
    apply of ``torch._C._FunctionBase`` bound to the class, about 1.2 us less per call. Under
    active functorch transforms, and on a torch without that entry point, the usual apply."""
    base = getattr(torch._C, "_FunctionBase", None)
    raw = base.__dict__.get("apply") if base is not None else None
    active = getattr(torch._C, "_are_functorch_transforms_active", None)
    if raw is None or active is None:
        return function.apply
    bound = raw.__get__(None, function)

    def apply(*args):
        return function.apply(*args) if active() else bound(*args)

    return apply


# ---- cross_entropy ----------------------------------------------------------------------

_LSE_MIN_CLASSES = 64  # from this many classes on, forward hands the log-sum-exp to backward
_FUSED_MAX_ELEMENTS = 1 << 15  # up to this size (one block), forward computes the gradient too


def _degenerate_mean(loss, reduction):
    """A "mean" whose divisor (the kept targets' summed weight) may be 0: the loss is not
    finite. The gradient's non-finite pattern is then torch's business: its own backward
    runs (rare; ordinary NaN inputs take the same route, at torch's speed)."""
    return reduction == "mean" and not math.isfinite(loss)


def cross_entropy_value(input, target, weight, ignore_index, reduction, label_smoothing):
    """The loss alone (no autograd record, no log-sum-exp kept)."""
    loss = fastloss.cross_entropy(as_numpy(input), as_numpy(target), as_numpy(weight), ignore_index, reduction,
                                  label_smoothing)
    return to_tensor(loss, input.dtype)


class CrossEntropy(torch.autograd.Function):
    """apply(input, target, weight, (ignore_index, reduction, label_smoothing))."""

    @staticmethod
    def forward(ctx, input, target, weight, options):
        ignore_index, reduction, label_smoothing = options
        x, t, w = as_numpy(input), as_numpy(target), as_numpy(weight)
        ctx.grad = None
        if x.size <= _FUSED_MAX_ELEMENTS and reduction != "none" and input.requires_grad and not is_half(input):
            # small input: loss and gradient in one call (about 1 us); backward only scales it
            # (not the half dtypes: their gradient is rounded once, from the scaled value)
            g = np.empty(x.shape, x.dtype)
            loss, _ = fastloss.cross_entropy_with_grad(x, t, w, ignore_index, reduction, label_smoothing, out=g)
            ctx.grad = g
            ctx.lse = None
        else:
            lse = None  # short rows: the backward recomputes their log-sum-exp (one vector each)
            if x.shape[1 if x.ndim >= 2 else 0] >= _LSE_MIN_CLASSES:
                lse = np.empty(math.prod(x.shape[:1] + x.shape[2:]) if x.ndim >= 2 else 1)
            loss = _cross_entropy._cross_entropy_forward_lse(x, t, w, ignore_index, reduction, label_smoothing,
                                                             lse)
            ctx.lse = lse
        ctx.save_for_backward(input, target, weight)
        # the NumPy views, kept to skip converting again in backward (they are the tensors'
        # own memory)
        ctx.views = (x, t, w)
        ctx.options = options
        ctx.by_torch = _degenerate_mean(loss, reduction)
        return to_tensor(loss, input.dtype)

    @staticmethod
    def backward(ctx, grad):
        input, target, weight = ctx.saved_tensors  # torch's in-place check happens here
        ignore_index, reduction, label_smoothing = ctx.options
        needs = ctx.needs_input_grad
        if torch.is_grad_enabled() or ctx.by_torch:  # torch's (differentiable) backward
            kwargs = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
            return (*_torch_grads(F.cross_entropy, (input, target, weight), kwargs, grad, needs[:3],
                                  torch.is_grad_enabled()), None)
        grad_input = grad_target = None
        if needs[0] and ctx.grad is not None:  # computed in forward (small input, reduced loss)
            # a new array each time: autograd may keep it as .grad and add into it later,
            # and a second backward (retain_graph) must find the saved gradient unchanged
            grad_input = to_tensor(ctx.grad * np.asarray(float(grad), ctx.grad.dtype), input.dtype)
        elif needs[0]:
            x, t, w = ctx.views
            g = new_buffer(x.shape, x.dtype)
            _cross_entropy._cross_entropy_backward_lse(x, t, w, ignore_index, reduction, label_smoothing,
                                                       upstream(grad, reduction != "none"), ctx.lse, g)
            grad_input = to_tensor(g, input.dtype)
        if needs[1]:  # probability targets
            kwargs = dict(ignore_index=ignore_index, reduction=reduction, label_smoothing=label_smoothing)
            grad_target = _torch_grads(F.cross_entropy, (input, target, weight), kwargs, grad,
                                       (False, True, False), False)[1]
        return grad_input, grad_target, None, None


# ---- margin_cross_entropy ----------------------------------------------------------------

def margin_logits(cosine, target, margin, scale, kind, easy_margin, ignore_index):
    """The margin-modified logits in torch ops (the one-hot formulation of the seed code, with
    fastloss's clamp of the target cosine for kind "arc"): for devices and dtypes the kernels
    do not take."""
    if kind == "cos":
        phi = cosine - margin
    else:
        eps = fastloss.MARGIN_COSINE_EPS
        c = cosine.clamp(-1 + eps, 1 - eps)
        sine = torch.sqrt(1.0 - c * c)
        phi = c * math.cos(margin) - sine * math.sin(margin)
        if easy_margin:
            phi = torch.where(c > 0, phi, c)
        else:
            phi = torch.where(c - math.cos(math.pi - margin) > 0, phi, c - math.sin(math.pi - margin) * margin)
    cls_dim = 1 if cosine.dim() >= 2 else 0
    t = target.long()
    kept = t != ignore_index
    one_hot = torch.zeros_like(cosine, dtype=torch.bool).scatter_(
        cls_dim, torch.where(kept, t, 0).unsqueeze(cls_dim), kept.unsqueeze(cls_dim))
    return torch.where(one_hot, phi, cosine) * scale


def margin_cross_entropy_torch(cosine, target, margin, scale, kind, easy_margin, weight, ignore_index, reduction,
                               label_smoothing):
    """margin_cross_entropy in torch ops (any device; differentiable twice)."""
    z = margin_logits(cosine, target, margin, scale, kind, easy_margin, ignore_index)
    return F.cross_entropy(z, target.long(), weight=weight, ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


class MarginCrossEntropy(torch.autograd.Function):
    """apply(cosine, target, weight, (margin, scale, kind, easy_margin, ignore_index, reduction,
    label_smoothing)) -> (loss, hits): hits (float64, not differentiable) counts the kept
    positions whose modified target logit is their top-1.

    Kept between forward and backward, when the cosine requires grad: one array of the
    cosine's size, never two.

    * float32 / float64: the gradient for an upstream gradient of 1, computed in forward by
      the fused kernel (the cosine itself is not kept: in a margin head it is a linear
      layer's output, which autograd does not otherwise hold). backward scales it by the
      upstream gradient (no work for the usual 1). With ``overwrite`` (the modules, whose
      cosine is their own linear output that nothing else refers to) the kernel writes the
      gradient over the cosine, so the forward pass holds one N x C array, not two.
    * float16 / bfloat16: the cosine (a reference, with torch's in-place check), and backward
      runs the fused kernel with the upstream gradient, so that each entry is rounded once
      to the half dtype (scaling a rounded half gradient would round twice).

    Double backward (create_graph=True) is not supported by this path: it raises;
    margin_cross_entropy_torch is the differentiable formulation."""

    @staticmethod
    def forward(ctx, cosine, target, weight, options, overwrite=False):
        margin, scale, kind, easy_margin, ignore_index, reduction, label_smoothing = options
        x = as_numpy(cosine)
        want = ctx.needs_input_grad[0]
        ctx.options = options
        ctx.class_dim = 1 if cosine.dim() >= 2 else 0
        ctx.grad = None
        fused = want and not is_half(cosine)
        g = (x if overwrite else new_buffer(x.shape, x.dtype)) if fused else None
        loss, g, hits = _cross_entropy._margin_cross_entropy_hits(
            x, as_numpy(target), margin, scale, kind, easy_margin, as_numpy(weight), ignore_index, reduction,
            label_smoothing, fused, g)
        if fused:
            ctx.grad = to_tensor(g, cosine.dtype)
        elif want:
            ctx.save_for_backward(cosine, target, weight)
        hits_t = torch.tensor(hits, dtype=torch.float64)
        ctx.mark_non_differentiable(hits_t)
        return to_tensor(loss, cosine.dtype), hits_t

    @staticmethod
    def backward(ctx, grad, _grad_hits):
        if torch.is_grad_enabled():
            raise RuntimeError("fastloss.torch.margin_cross_entropy: double backward (create_graph=True) is not "
                               "supported; fastloss.torch.functional.margin_cross_entropy_torch is the "
                               "differentiable formulation")
        if not ctx.needs_input_grad[0]:
            return None, None, None, None, None
        margin, scale, kind, easy_margin, ignore_index, reduction, label_smoothing = ctx.options
        reduced = reduction != "none"
        g = ctx.grad
        if g is None:  # half: the kernel again, with the upstream gradient
            cosine, target, weight = ctx.saved_tensors
            x = as_numpy(cosine)
            out = new_buffer(x.shape, x.dtype)
            fastloss.margin_cross_entropy_with_grad(
                x, as_numpy(target), margin, scale, kind, easy_margin, as_numpy(weight), ignore_index, reduction,
                label_smoothing, grad_output=upstream(grad, reduced), out=out)
            return to_tensor(out, cosine.dtype), None, None, None, None
        if reduced:
            # the saved gradient itself for the usual upstream 1 (ctx keeps a reference, so
            # autograd accumulates into a copy, never into it)
            return (g if float(grad) == 1.0 else g * grad.to(g.dtype)), None, None, None, None
        return g * grad.unsqueeze(ctx.class_dim).to(g.dtype), None, None, None, None


# ---- nll_loss and the elementwise losses ---------------------------------------------------

class Spec:
    """One loss of the family: its NumPy functions, torch's function (for target gradients
    and double backward), and how its options map onto both."""

    def __init__(self, name, options, torch_name=None):
        self.name = name
        self.loss = getattr(fastloss, name)
        self.with_grad = getattr(fastloss, name + "_with_grad")
        self.torch_fn = getattr(F, torch_name or name)
        self.options = options  # option names, in the order Function.apply passes them

    def numpy_kwargs(self, values, weight, pos_weight):
        kw = dict(zip(self.options, values))
        if weight is not None:
            kw["weight"] = as_numpy(weight)
        if pos_weight is not None:
            kw["pos_weight"] = as_numpy(pos_weight)
        return kw

    def torch_kwargs(self, values, weight, pos_weight):
        kw = dict(zip(self.options, values))
        if weight is not None:
            kw["weight"] = weight
        if pos_weight is not None:
            kw["pos_weight"] = pos_weight
        return kw


SPECS = {spec.name: spec for spec in (
    Spec("nll_loss", ("ignore_index", "reduction")),
    Spec("binary_cross_entropy", ("reduction",)),
    Spec("binary_cross_entropy_with_logits", ("reduction",)),
    Spec("mse_loss", ("reduction",)),
    Spec("l1_loss", ("reduction",)),
    Spec("smooth_l1_loss", ("reduction", "beta")),
    Spec("huber_loss", ("reduction", "delta")),
    Spec("kl_div", ("reduction", "log_target")),
)}


class Loss(torch.autograd.Function):
    """Any loss of SPECS: apply(name, options, input, target, weight, pos_weight), options
    being the values of the spec's option names."""

    @staticmethod
    def forward(ctx, name, options, input, target, weight, pos_weight):
        spec = SPECS[name]
        loss = spec.loss(as_numpy(input), as_numpy(target), **spec.numpy_kwargs(options, weight, pos_weight))
        ctx.save_for_backward(input, target, weight, pos_weight)
        ctx.spec, ctx.loss_options = spec, options
        ctx.by_torch = name == "nll_loss" and _degenerate_mean(loss, options[1])
        return to_tensor(loss, input.dtype)

    @staticmethod
    def backward(ctx, grad):
        spec, options = ctx.spec, ctx.loss_options
        input, target, weight, pos_weight = ctx.saved_tensors
        wanted = ctx.needs_input_grad[2:4]
        if torch.is_grad_enabled() or ctx.by_torch:  # torch's (differentiable) backward
            grads = _torch_grads(spec.torch_fn, (input, target), spec.torch_kwargs(options, weight, pos_weight),
                                 grad, wanted, torch.is_grad_enabled())
            return (None, None, *grads, None, None)
        grad_input = grad_target = None
        if wanted[0]:
            x = as_numpy(input)
            g = new_buffer(x.shape, x.dtype)
            spec.with_grad(x, as_numpy(target), **spec.numpy_kwargs(options, weight, pos_weight),
                           grad_output=upstream(grad, options[spec.options.index("reduction")] != "none"),
                           out=g)
            grad_input = to_tensor(g, input.dtype)
        if wanted[1]:
            grad_target = _torch_grads(spec.torch_fn, (input, target), spec.torch_kwargs(options, weight, pos_weight),
                                       grad, (False, True), False)[1]
        return None, None, grad_input, grad_target, None, None


# ---- log_softmax / softmax -------------------------------------------------------------------

class _Normalize(torch.autograd.Function):
    """Shared by LogSoftmax and Softmax: the output is kept for backward, as torch keeps it.
    forward and backward are defined once, here: ``ctx._forward_cls`` is the subclass whose
    apply runs them (its ``log`` says which of the two)."""
    log: bool | None = None  # True: LogSoftmax, False: Softmax

    @classmethod
    def compute(cls, input, dim):
        x = as_numpy(input)
        y = new_buffer(x.shape, x.dtype)
        (fastloss.log_softmax if cls.log else fastloss.softmax)(x, axis=dim, out=y)
        return to_tensor(y, input.dtype)

    @staticmethod
    def forward(ctx, input, dim):
        out = ctx._forward_cls.compute(input, dim)
        ctx.save_for_backward(out)
        ctx.dim = dim
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        log = ctx._forward_cls.log
        if torch.is_grad_enabled():  # create_graph=True: torch's differentiable backward
            backward = torch._log_softmax_backward_data if log else torch._softmax_backward_data
            return backward(grad, out, ctx.dim, out.dtype), None
        y = as_numpy(out)
        g = new_buffer(y.shape, y.dtype)
        (fastloss.log_softmax_backward if log else fastloss.softmax_backward)(
            as_numpy(grad), y, axis=ctx.dim, out=g)
        return to_tensor(g, out.dtype), None


class LogSoftmax(_Normalize):
    log = True


class Softmax(_Normalize):
    log = False


cross_entropy_apply = apply_of(CrossEntropy)
margin_cross_entropy_apply = apply_of(MarginCrossEntropy)
loss_apply = apply_of(Loss)
log_softmax_apply = apply_of(LogSoftmax)
softmax_apply = apply_of(Softmax)
