"""fastloss: fused CPU loss functions with torch.nn.functional's semantics.

NumPy in, NumPy out; the kernels are C (csrc/), called through Cython with the GIL
released. ``fastloss.reference`` holds the slow, readable NumPy twin of every function.
"""
from fastloss._version import __version__
from fastloss._threads import get_num_threads, set_num_threads
from fastloss._cross_entropy import cross_entropy, cross_entropy_with_grad
from fastloss._info import kernel_info
from fastloss import reference

__all__ = [
    "__version__",
    "cross_entropy",
    "cross_entropy_with_grad",
    "get_num_threads",
    "kernel_info",
    "reference",
    "set_num_threads",
]
