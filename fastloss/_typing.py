"""Type aliases shared by the compiled modules' stubs (fastloss/_*.pyi)."""
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

ArrayLike: TypeAlias = npt.ArrayLike
Loss: TypeAlias = np.floating[Any] | npt.NDArray[np.floating[Any]]  # a reduced loss, or per position
Grad: TypeAlias = npt.NDArray[np.floating[Any]]
Lse: TypeAlias = npt.NDArray[np.float64]  # per-position log-sum-exp (fastloss.torch)
