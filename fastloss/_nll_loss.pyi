# Type stubs for the compiled module fastloss._nll_loss (fastloss/_nll_loss.pyx), checked
# against it by .ci/stubs (mypy.stubtest).
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

_Loss: TypeAlias = np.floating[Any] | npt.NDArray[np.floating[Any]]
_Grad: TypeAlias = npt.NDArray[np.floating[Any]]

def nll_loss(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> _Loss: ...
def nll_loss_with_grad(
    input: npt.ArrayLike,
    target: npt.ArrayLike,
    weight: npt.ArrayLike | None = None,
    ignore_index: int = -100,
    reduction: str = "mean",
    grad_output: npt.ArrayLike | None = None,
    out: _Grad | None = None,
) -> tuple[_Loss, _Grad]: ...

# Private, for tests: (result, stats) where stats tells the threads that ran.
def _kernel_names() -> list[str]: ...  # for kernel_info()
