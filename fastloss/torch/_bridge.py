"""Between torch tensors and fastloss's NumPy layer: which calls the kernels may take, and
zero-copy conversions both ways.

A call takes the fast path when every tensor is a plain CPU tensor (``torch.Tensor`` or
``nn.Parameter``, strided, not wrapped by ``torch.func``) of a dtype the kernels run:
float32, float64, float16 and bfloat16. Every tensor reaches the NumPy layer as a view of its
own memory (bfloat16 as uint16 bits tagged ``BF16_BITS``, so ml_dtypes is not needed), and
every result comes back the same way. Anything else goes to torch's own implementation,
which then computes or raises exactly as torch does.
"""
import math
import os
import sys
import threading

import numpy as np
import torch

from fastloss._plan import BF16_BITS

_NATIVE = (torch.float32, torch.float64)
_HALF = (torch.float16, torch.bfloat16)
_FLOATS = _NATIVE + _HALF
_PLAIN_TYPES = (torch.Tensor, torch.nn.Parameter)
_is_wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", lambda t: False)


def plain_cpu(t):
    """A tensor the kernels can read through a NumPy view. Under torch.compile (where the
    tensors are fakes and the custom ops get the real ones) device and layout decide."""
    if torch.compiler.is_compiling():
        return isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.layout == torch.strided
    return type(t) in _PLAIN_TYPES and t.is_cpu and t.layout == torch.strided and not _is_wrapped(t)


def float_input(t):
    """A plain CPU tensor of a floating dtype the kernels compute."""
    return plain_cpu(t) and t.dtype in _FLOATS


def same_float(t, input):
    """An optional tensor argument (weight, pos_weight, probability target) that torch takes
    as it is: absent, or a plain CPU tensor of the input's dtype that does not require grad
    (torch rejects requires_grad on class weights and pos_weight, or differentiates them:
    such calls run torch's own implementation)."""
    return t is None or (plain_cpu(t) and t.dtype == input.dtype and not t.requires_grad)


def as_numpy(t):
    """A NumPy view of a CPU tensor (no copy): bfloat16 as its uint16 bits (BF16_BITS),
    float16 as numpy.float16."""
    if t is None:
        return None
    if t.requires_grad:
        t = t.detach()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(BF16_BITS)
    if t.dtype == torch.float16:
        return t.view(torch.int16).numpy().view(np.float16)
    return t.numpy()


def is_half(t):
    return t.dtype in _HALF


def autocast_fp32(*tensors):
    """The tensors as torch's CPU autocast hands them to a loss (every loss is on its float32
    list): float16/bfloat16 ones as float32 copies (through autograd), the rest as they are;
    unchanged when autocast is off."""
    if not torch.is_autocast_enabled("cpu"):
        return tensors
    return tuple(t.float() if isinstance(t, torch.Tensor) and t.dtype in _HALF else t for t in tensors)


# One spare large buffer, reused for the next output of the same size once nothing refers
# to it any more. A fresh 250 MiB buffer costs ~10 ms of page faults (the kernel zeroes
# every page), as much as the gradient kernel itself; a training loop frees each step's
# gradient after the step, so the next step can take its memory back.
_SPARE_MIN_BYTES = 1 << 24
_spare_lock = threading.Lock()
_spare = None  # a flat uint8 array, or None


def new_buffer(shape, dtype):
    """An uninitialized output buffer allocated by NumPy and shared with torch.

    NumPy asks the kernel to back large allocations with huge pages (a fresh 2048 x 32000
    float32 gradient then costs ~10 ms of page faults, not ~100 ms). Buffers of 16 MiB and
    more come from the spare above when it is free: when no array, view or tensor refers to
    it any more (its reference count is the spare slot's alone; every NumPy view and every
    tensor made from one holds a reference). So at most one freed buffer stays allocated
    between calls; :func:`fastloss.torch.empty_cache` releases it."""
    global _spare
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < _SPARE_MIN_BYTES:
        return np.empty(shape, dtype)
    with _spare_lock:
        # references to a free spare: the global slot and getrefcount's argument
        if _spare is None or _spare.nbytes != nbytes or sys.getrefcount(_spare) != 2:
            _spare = np.empty(nbytes, np.uint8)
        return _spare.view(dtype).reshape(shape)


def empty_cache():
    """Drop the spare output buffer fastloss.torch keeps for reuse: its memory goes back to
    the system once no tensor uses it (at once, when it is free)."""
    global _spare
    with _spare_lock:
        _spare = None


def _after_fork_in_child():
    # another thread may have held the lock at fork(): the child gets a fresh one
    global _spare_lock
    _spare_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def to_tensor(a, dtype):
    """A NumPy result (array or scalar; bfloat16 as BF16_BITS) as a tensor of ``dtype`` (the
    input's dtype), sharing its memory."""
    a = np.asarray(a)
    if a.dtype == np.uint16:  # BF16_BITS (numpy's dtype equality ignores the tag)
        return torch.from_numpy(a.view(np.int16)).view(torch.bfloat16)
    t = torch.from_numpy(a)
    return t if t.dtype == dtype else t.to(dtype)


def upstream(grad, reduced):
    """The upstream gradient for the NumPy layer: a float for a reduced loss, else an array
    view (any strides, broadcast ones included)."""
    if reduced:
        return float(grad)
    return as_numpy(grad)
