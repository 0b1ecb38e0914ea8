# Type stubs for the compiled module fastloss._binary (fastloss/_binary.pyx), checked
# against it by .ci/stubs (mypy.stubtest).
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

_Loss: TypeAlias = np.floating[Any] | npt.NDArray[np.floating[Any]]
_Grad: TypeAlias = npt.NDArray[np.floating[Any]]

def binary_cross_entropy(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    reduction: str = "mean",
) -> _Loss: ...
def binary_cross_entropy_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    reduction: str = "mean",
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...
def binary_cross_entropy_with_logits(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    reduction: str = "mean",
    pos_weight: npt.ArrayLike | None = None,
) -> _Loss: ...
def binary_cross_entropy_with_logits_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    reduction: str = "mean",
    pos_weight: npt.ArrayLike | None = None,
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...
def kl_div(
    input: npt.ArrayLike, target: npt.ArrayLike, reduction: str = "mean", log_target: bool = False
) -> _Loss: ...
def kl_div_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    reduction: str = "mean",
    log_target: bool = False,
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...

# Private, for tests: (result, stats) of the function ``name`` ("bce", "bce_logits" or
# "kl_div"; with its gradient unless want_grad=False is passed), stats telling the threads,
# SIMD path and the kernel's (rows, cols) view that ran.
def _kernel_names() -> list[str]: ...  # for kernel_info()
