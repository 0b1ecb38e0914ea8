# Type stubs for the compiled module fastloss._plan (fastloss/_plan.pyx): the argument
# checks, operand planner and call finisher shared by the loss modules, at C level (cdef,
# exported through its .pxd); to Python it exposes only the tests' view of what ran.
# Checked by .ci/stubs (mypy.stubtest).
from contextlib import AbstractContextManager
from typing import Any, Callable, TypeVar

import numpy as np

from typing_extensions import disjoint_base

_R = TypeVar("_R")

@disjoint_base
class Call:
    """The state of one kernel call (its fields and methods are C-level only)."""

def record() -> AbstractContextManager[dict[str, Any]]: ...

def ran(fn: Callable[..., _R], *args: Any, **kwargs: Any) -> tuple[_R, dict[str, Any]]: ...

GRAD_PARAMS: str  # the *_with_grad docstrings' shared text
BF16_BITS: np.dtype[Any]  # uint16 tagged as bfloat16 bits (fastloss.torch's bfloat16 views)
def document(*functions: Callable[..., Any]) -> None: ...
