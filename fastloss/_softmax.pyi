# Type stubs for the compiled module fastloss._softmax (fastloss/_softmax.pyx), checked
# against it by .ci/stubs (mypy.stubtest).
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt

_Array: TypeAlias = npt.NDArray[np.floating[Any]]

def log_softmax(input: npt.ArrayLike, axis: int = -1, out: _Array | None = None) -> _Array: ...
def log_softmax_backward(
    grad_output: npt.ArrayLike, output: npt.ArrayLike, axis: int = -1, out: _Array | None = None
) -> _Array: ...
def softmax(input: npt.ArrayLike, axis: int = -1, out: _Array | None = None) -> _Array: ...
def softmax_backward(
    grad_output: npt.ArrayLike, output: npt.ArrayLike, axis: int = -1, out: _Array | None = None
) -> _Array: ...

# Private, for tests: (result, stats) of the public function ``name`` called with the
# arguments that follow, stats telling the threads and SIMD path that ran.
def _kernel_names() -> list[str]: ...  # for kernel_info()
