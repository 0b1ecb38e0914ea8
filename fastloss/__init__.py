"""fastloss: fused CPU loss functions with torch.nn.functional's semantics.

NumPy in, NumPy out; the kernels are C (csrc/), called through Cython with the GIL
released. ``fastloss.reference`` holds the slow, readable NumPy twin of every function.
"""
import importlib.machinery as _machinery
import os as _os
import sys as _sys


def _find_compiled_modules():
    """Inside a source checkout (``pip install . && python -m fastloss`` run from it), this
    directory comes first on sys.path but holds no compiled modules unless it was built in
    place; the installed copy has them, so add its directory to this package's path."""
    here = _os.path.dirname(_os.path.abspath(__file__))

    def compiled(path):
        if not _os.path.isdir(path):
            return False
        suffixes = tuple(_machinery.EXTENSION_SUFFIXES)
        return any(n.startswith("_cross_entropy") and n.endswith(suffixes) for n in _os.listdir(path))

    if compiled(here):
        return
    for entry in _sys.path:
        candidate = _os.path.join(_os.path.abspath(entry or "."), "fastloss")
        if candidate != here and compiled(candidate):
            __path__.append(candidate)
            return
    raise ImportError("fastloss's compiled modules are missing: run `pip install .` "
                      "(or `python setup.py build_ext --inplace` for a development build)")


_find_compiled_modules()

from fastloss._version import __version__  # noqa: E402
from fastloss._threads import get_num_threads, set_num_threads  # noqa: E402
from fastloss._cross_entropy import cross_entropy, cross_entropy_with_grad  # noqa: E402
from fastloss._nll_loss import nll_loss, nll_loss_with_grad  # noqa: E402
from fastloss._binary import (  # noqa: E402
    binary_cross_entropy,
    binary_cross_entropy_with_grad,
    binary_cross_entropy_with_logits,
    binary_cross_entropy_with_logits_with_grad,
    kl_div,
    kl_div_with_grad,
)
from fastloss._softmax import log_softmax, log_softmax_backward, softmax, softmax_backward  # noqa: E402
from fastloss._regression import (  # noqa: E402
    huber_loss,
    huber_loss_with_grad,
    l1_loss,
    l1_loss_with_grad,
    mse_loss,
    mse_loss_with_grad,
    smooth_l1_loss,
    smooth_l1_loss_with_grad,
)
from fastloss._info import kernel_info  # noqa: E402
from fastloss import reference  # noqa: E402

__all__ = [
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "cross_entropy",
    "cross_entropy_with_grad",
    "get_num_threads",
    "huber_loss",
    "huber_loss_with_grad",
    "kernel_info",
    "kl_div",
    "kl_div_with_grad",
    "l1_loss",
    "l1_loss_with_grad",
    "log_softmax",
    "log_softmax_backward",
    "mse_loss",
    "mse_loss_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
    "reference",
    "set_num_threads",
    "smooth_l1_loss",
    "smooth_l1_loss_with_grad",
    "softmax",
    "softmax_backward",
]
