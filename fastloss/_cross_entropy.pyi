# Type stubs for the compiled module fastloss._cross_entropy.
from typing import Any

import numpy as np
import numpy.typing as npt

def cross_entropy(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> np.floating[Any] | npt.NDArray[np.floating[Any]]: ...
def cross_entropy_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    grad_output: float | npt.ArrayLike | None = None,
    out: npt.NDArray[np.floating[Any]] | None = None,
) -> tuple[np.floating[Any] | npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]: ...
def _cross_entropy_stats(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = ...,
    ignore_index: int = ...,
    reduction: str = ...,
    label_smoothing: float = ...,
    grad_output: float | npt.ArrayLike | None = ...,
    out: npt.NDArray[np.floating[Any]] | None = ...,
    want_grad: bool = ...,
) -> tuple[Any, dict[str, Any]]: ...
