"""torch.nn's loss modules, computed by fastloss's kernels.

Each class subclasses its torch.nn namesake and replaces only ``forward``: the constructor
(signature, defaults, legacy ``size_average``/``reduce``), the ``weight``/``pos_weight``
buffers, ``state_dict``, ``.to()``, pickling, ``copy.deepcopy``, ``repr`` and
``isinstance(loss, torch.nn.CrossEntropyLoss)`` are torch's own. ``forward`` calls the
function of the same name in ``fastloss.torch.functional``.
"""
import torch
import torch.nn as nn
import torch.nn.functional as TF

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


class _MarginHead(nn.Module):
    """A margin-softmax head: class weights (n_class, embedding_dim), xavier-normal (gain 1);
    ``forward(x, label)`` -> ``(loss, prec1)`` with
    ``cosine = linear(normalize(x), normalize(weight))`` (torch's ops and BLAS), the fused
    margin cross-entropy of the cosines (mean over the kept labels) and prec1 the top-1
    accuracy in percent on the margin-modified logits over the rows whose label is not
    ``ignore_index`` (NaN when there is none; the first index wins a tie, as torch.argmax).
    ``m`` and ``s`` are read at each call (a margin schedule may change them)."""
    kind = "arc"

    def __init__(self, n_class, m, s, embedding_dim=256, easy_margin=False, ignore_index=-100):
        super().__init__()
        self.n_class, self.embedding_dim = int(n_class), int(embedding_dim)
        self.m, self.s, self.easy_margin, self.ignore_index = m, s, easy_margin, ignore_index
        self.weight = nn.Parameter(torch.empty(self.n_class, self.embedding_dim))
        nn.init.xavier_normal_(self.weight, gain=1)

    def extra_repr(self):
        return f"n_class={self.n_class}, embedding_dim={self.embedding_dim}, m={self.m}, s={self.s}" + (
            ", easy_margin=True" if self.easy_margin else "")

    def forward(self, x, label):
        cosine = TF.linear(TF.normalize(x), TF.normalize(self.weight))
        # the cosine is this call's own (linear saves its inputs, not its output): the fused
        # kernel may write the gradient over it
        loss, hits = F._margin_call(cosine, label, float(self.m), float(self.s), self.kind, bool(self.easy_margin),
                                    None, self.ignore_index, "mean", 0.0, overwrite=True)
        kept = int((label != self.ignore_index).sum())
        if hits is None:  # torch ops (another device): top-1 of the modified logits
            with torch.no_grad():
                z = F._functions.margin_logits(cosine.detach(), label, float(self.m), float(self.s), self.kind,
                                               bool(self.easy_margin), self.ignore_index)
                hits = ((z.argmax(1) == label) & (label != self.ignore_index)).sum()
        # as the seed's accuracy(): a float32 count times 100 / rows
        prec1 = hits.to(torch.float32).cpu() * (100.0 / kept) if kept else torch.tensor(float("nan"))
        return loss, prec1.detach()


class AAMSoftmax(_MarginHead):
    """Additive angular margin softmax (ArcFace, AAM-softmax): the target logit
    ``s * cos(theta_t + m)`` (``s * (cos theta_t - m sin(pi - m))`` where theta_t + m > pi;
    ``easy_margin``: no margin where cos theta_t <= 0), the others ``s * cos theta``."""
    kind = "arc"


class AMSoftmax(_MarginHead):
    """Additive cosine margin softmax (CosFace, AM-softmax): the target logit
    ``s * (cos theta_t - m)``, the others ``s * cos theta``."""
    kind = "cos"

    def __init__(self, n_class, m, s, embedding_dim=256, ignore_index=-100):
        super().__init__(n_class, m, s, embedding_dim, False, ignore_index)
