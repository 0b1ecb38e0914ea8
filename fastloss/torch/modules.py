"""torch.nn's loss modules, computed by fastloss's kernels.

Each class subclasses its torch.nn namesake and replaces only ``forward``: the constructor
(signature, defaults, legacy ``size_average``/``reduce``), the ``weight``/``pos_weight``
buffers, ``state_dict``, ``.to()``, pickling, ``copy.deepcopy``, ``repr`` and
``isinstance(loss, torch.nn.CrossEntropyLoss)`` are torch's own. ``forward`` calls the
function of the same name in ``fastloss.torch.functional``.
"""
import torch.nn as nn

from fastloss.torch import functional as F


class CrossEntropyLoss(nn.CrossEntropyLoss):
    """``torch.nn.CrossEntropyLoss`` through fastloss's kernels (formula:
    :func:`fastloss.torch.functional.cross_entropy`)."""

    def forward(self, input, target):
        return F.cross_entropy(input, target, weight=self.weight, ignore_index=self.ignore_index,
                               reduction=self.reduction, label_smoothing=self.label_smoothing)


class NLLLoss(nn.NLLLoss):
    """``torch.nn.NLLLoss`` through fastloss's kernels: ``-w[t] * x[t]`` per position."""

    def forward(self, input, target):
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index,
                          reduction=self.reduction)


class BCELoss(nn.BCELoss):
    """``torch.nn.BCELoss`` through fastloss's kernels: ``-w * (y log x + (1 - y) log(1 - x))``,
    logs clamped at -100."""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(nn.BCEWithLogitsLoss):
    """``torch.nn.BCEWithLogitsLoss`` through fastloss's kernels:
    ``w * ((1 - y) x + (1 + (p - 1) y) softplus(-x))``, p = pos_weight."""

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.weight, pos_weight=self.pos_weight,
                                                  reduction=self.reduction)


class MSELoss(nn.MSELoss):
    """``torch.nn.MSELoss`` through fastloss's kernels: ``(x - y)**2``."""

    def forward(self, input, target):
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(nn.L1Loss):
    """``torch.nn.L1Loss`` through fastloss's kernels: ``|x - y|``."""

    def forward(self, input, target):
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(nn.SmoothL1Loss):
    """``torch.nn.SmoothL1Loss`` through fastloss's kernels: ``0.5 d**2 / beta`` where
    d = |x - y| < beta, else ``d - 0.5 beta``."""

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(nn.HuberLoss):
    """``torch.nn.HuberLoss`` through fastloss's kernels: ``0.5 d**2`` where d = |x - y| < delta,
    else ``delta (d - 0.5 delta)``."""

    def forward(self, input, target):
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class KLDivLoss(nn.KLDivLoss):
    """``torch.nn.KLDivLoss`` through fastloss's kernels: ``y (log y - x)``, or
    ``exp(y) (y - x)`` with log_target."""

    def forward(self, input, target):
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
