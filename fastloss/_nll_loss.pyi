# Type stubs for the compiled module fastloss._nll_loss (fastloss/_nll_loss.pyx), checked
# against it by .ci/stubs (mypy.stubtest).
from fastloss._typing import ArrayLike, Grad, Loss

def nll_loss(input: ArrayLike, target: ArrayLike, weight: ArrayLike | None = None, ignore_index: int = -100, reduction: str = "mean") -> Loss: ...
def nll_loss_with_grad(input: ArrayLike, target: ArrayLike, weight: ArrayLike | None = None, ignore_index: int = -100, reduction: str = "mean", grad_output: ArrayLike | None = None, out: Grad | None = None) -> tuple[Loss, Grad]: ...
def _kernel_names() -> list[str]: ...  # for kernel_info()
