"""fastloss.torch: torch.nn.functional's losses and torch.nn's loss modules, computed on the
CPU by fastloss's C kernels, with torch's values, gradients, errors and module behaviour.

    import fastloss.torch as flt
    loss_fn = flt.CrossEntropyLoss()          # instead of torch.nn.CrossEntropyLoss()
    loss = flt.cross_entropy(logits, target)  # instead of torch.nn.functional.cross_entropy

Needs torch (``pip install ".[torch]"``); ``import fastloss`` alone never imports torch.
Which calls run the kernels and which run torch's own implementation:
``fastloss.torch.functional``'s docstring. Layout: ``functional.py`` (the API),
``modules.py`` (nn.Module classes), ``_functions.py`` (autograd Functions, eager),
``_ops.py`` (custom ops, torch.compile), ``_bridge.py`` (tensor <-> NumPy).
"""
try:
    import torch  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError("fastloss.torch needs PyTorch: pip install \"fastloss[torch]\" "
                      "(or install torch yourself)") from exc

from fastloss.torch import functional
from fastloss.torch._bridge import empty_cache
from fastloss.torch.functional import (
    binary_cross_entropy,
    binary_cross_entropy_with_logits,
    cross_entropy,
    huber_loss,
    kl_div,
    l1_loss,
    log_softmax,
    margin_cross_entropy,
    mse_loss,
    nll_loss,
    smooth_l1_loss,
    softmax,
)
from fastloss.torch.modules import (
    AAMSoftmax,
    AMSoftmax,
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    HuberLoss,
    KLDivLoss,
    L1Loss,
    MSELoss,
    NLLLoss,
    SmoothL1Loss,
)

__all__ = [
    "AAMSoftmax",
    "AMSoftmax",
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "HuberLoss",
    "KLDivLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
    "SmoothL1Loss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "empty_cache",
    "functional",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "log_softmax",
    "margin_cross_entropy",
    "mse_loss",
    "nll_loss",
    "smooth_l1_loss",
    "softmax",
]
