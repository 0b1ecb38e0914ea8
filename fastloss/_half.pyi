# Type stubs for the compiled module fastloss._half (fastloss/_half.pyx): bfloat16 / float16
# arrays converted with the kernels' own rounding. Checked against it by .ci/stubs.
from typing import Any

import numpy as np
import numpy.typing as npt

# float32 values as bfloat16 / float16 bits (uint16), rounded to nearest-even by the SIMD path in use.
def narrow(values: npt.ArrayLike, dtype: str) -> npt.NDArray[np.uint16]: ...
# bfloat16 / float16 bits as float32 values (exact).
def widen(bits: Any, dtype: str) -> npt.NDArray[np.float32]: ...
# float64 values as bfloat16 / float16 bits, rounded once.
def from_double(values: npt.ArrayLike, dtype: str) -> npt.NDArray[np.uint16]: ...
