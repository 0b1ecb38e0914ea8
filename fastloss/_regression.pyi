# Type stubs for the compiled module fastloss._regression (fastloss/_regression.pyx),
# checked against it by .ci/stubs (mypy.stubtest).
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

_Loss: TypeAlias = np.floating[Any] | npt.NDArray[np.floating[Any]]
_Grad: TypeAlias = npt.NDArray[np.floating[Any]]

def mse_loss(input: npt.ArrayLike, target: npt.ArrayLike, reduction: str = "mean") -> _Loss: ...
def mse_loss_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    reduction: str = "mean",
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...
def l1_loss(input: npt.ArrayLike, target: npt.ArrayLike, reduction: str = "mean") -> _Loss: ...
def l1_loss_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    reduction: str = "mean",
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...
def smooth_l1_loss(
    input: npt.ArrayLike, target: npt.ArrayLike, reduction: str = "mean", beta: float = 1.0
) -> _Loss: ...
def smooth_l1_loss_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    reduction: str = "mean",
    beta: float = 1.0,
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...
def huber_loss(
    input: npt.ArrayLike, target: npt.ArrayLike, reduction: str = "mean", delta: float = 1.0
) -> _Loss: ...
def huber_loss_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    reduction: str = "mean",
    delta: float = 1.0,
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...

# Private, for tests: (result, stats) where stats tells the threads and SIMD path that ran;
# name is "mse_loss", "l1_loss", "smooth_l1_loss" or "huber_loss", param its beta / delta.
def _kernel_names() -> list[str]: ...  # for kernel_info()
