# Type stubs for the compiled module fastloss._cross_entropy (fastloss/_cross_entropy.pyx),
# checked against it by .ci/stubs (mypy.stubtest).
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

# A reduced loss is a NumPy scalar of the input's dtype; reduction="none" gives an array.
_Loss: TypeAlias = np.floating[Any] | npt.NDArray[np.floating[Any]]
_Grad: TypeAlias = npt.NDArray[np.floating[Any]]

def cross_entropy(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> _Loss: ...
def cross_entropy_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...

# Private: for tests, and for fastloss.torch's autograd Function and custom ops.
def _cross_entropy_forward_lse(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    lse: npt.NDArray[np.float64] | None,
) -> _Loss: ...
def _cross_entropy_backward_lse(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None,
    ignore_index: int,
    reduction: str,
    label_smoothing: float,
    grad_output: npt.ArrayLike | None,
    lse: npt.NDArray[np.float64] | None,
    out: _Grad | None = None,
) -> _Grad: ...
def _kernel_names() -> list[str]: ...  # for kernel_info()
