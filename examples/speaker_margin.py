"""Speaker verification with a margin-softmax head: ``fastloss.torch.AAMSoftmax`` against a
plain softmax head, trained on synthetic "speakers" (many classes, few samples each) and
compared by their equal-error rate on speakers never seen in training.

    python examples/speaker_margin.py [--head both|softmax|aam|am] [--impl fastloss|torch]
        [--epochs N] [--batch-size B] [--lr LR] [--margin M] [--scale S]
        [--train-speakers N] [--test-speakers N] [--utterances U] [--within W] [--channel C]
        [--seed S] [--dtype float32|float64] [--threads T]

Data (``make_data``): 800 training speakers and 200 disjoint held-out speakers, 8 utterances
each. A speaker is a random unit direction in a 16-d identity space; an utterance adds
within-speaker noise (norm about 0.45) and a 16-d nuisance vector, one of 16 "recording
channels" shared by all speakers (norm about 3, picked at random per utterance) plus jitter;
a fixed random tanh network maps the 32-d latent to 64 input features (+ noise). The
embedding model must undo the map and learn to ignore the channel from 8 utterances per
speaker. Everything is drawn from ``--seed``.

Model and training (``build_model``, ``make_head``, ``train``): an MLP 64-256-256-128 (ReLU,
linear embedding), Adam lr 3e-3, batches of 128 in an order drawn from the seed, 15 epochs of
50 steps. ``--head both`` (the default) trains it twice from the same initial weights, on the
same data and batches, for the same steps with the same optimizer, once per head:

* ``softmax``: ``Linear(128, 800)`` (with bias) + ``fastloss.torch.CrossEntropyLoss``;
* ``aam``: ``fastloss.torch.AAMSoftmax(800, m=0.2, s=30, embedding_dim=128)``;
* ``am`` (on its own only): ``fastloss.torch.AMSoftmax`` with the same m and s.

``--impl torch`` runs the same heads in their torch formulations: the seed's AAMsoftmax
(``SeedAAMSoftmax``, its embedding size an argument) and ``torch.nn.CrossEntropyLoss``;
tests/test_example_speaker_margin.py checks that both give the same numbers to rounding.

Per epoch it prints the mean loss and the training accuracy (the heads' prec1, top-1 in
percent; for the margin heads on the margin-modified logits, so it lags behind early on).
At the end, the equal-error rate (``equal_error_rate``: where the false-acceptance and
false-rejection rates cross) of cosine scoring of the embeddings -- the model's output, the
head is discarded -- over every pair of the 1600 held-out utterances (5600 same-speaker and
1,273,600 different-speaker trials), and for reference the EER of the raw inputs, of the
untrained model and of the true identity latents (what a perfect model could reach).

Observed at the defaults (float32, ``--threads 1``, torch 2.13, the 2-core AVX-512 machine):

    seed   softmax EER   aam EER   aam / softmax   (raw inputs, untrained, latents)
    0      3.16%         1.95%     0.62            (37.4%, 41.6%, 0.31%)
    1      4.74%         2.49%     0.53            (42.1%, 43.9%, 0.27%)
    2      4.50%         2.46%     0.55            (40.2%, 43.1%, 0.33%)

about 6.5 s for the whole run (2.5-3 s of training per head, plus 1.5 s of Python start-up
and imports). What else was seen, so as not to oversell it:

* The learning rate is the softmax head's best of 1e-3, 3e-3 and 1e-2 (softmax EER at 1e-3:
  4.59 / 5.34 / 5.59% for seeds 0 / 1 / 2, at 1e-2: 8.2 / 13.6 / 11.0%; aam at 1e-3: 2.57 /
  2.77 / 2.82%, at 1e-2: 2.55 / 3.46 / 3.42%). Training longer helps softmax a little: 30
  epochs, seed 0: softmax 2.93%, aam 1.95%.
* Most of the gain is the cosine classifier (normalised embeddings and class weights, scale
  30), not the margin: ``--head aam --margin 0`` gives 2.25 / 3.16 / 3.04%; m = 0.2 lowers that
  by a further 13-21% (1.95 / 2.49 / 2.46%), m = 0.3 about as much (1.98 / 2.41 / 2.39%).
  ``--head am`` (CosFace, m 0.2): 2.47 / 2.81 / 3.11%.
* The advantage depends on what makes the data hard. It comes from the nuisance channels:
  with the within-speaker noise dominating instead (``--within 0.6 --channel 1.0``) the
  margin head is no better: softmax 3.82 / 4.22 / 3.92%, aam 4.04 / 4.22 / 4.40%.
* ``--impl torch`` in float32 gives slightly different EERs (seeds 0 / 1 / 2: softmax 3.48 /
  4.91 / 4.46%, aam 1.86 / 2.48 / 2.50%): over 750 steps the two float32 runs drift apart from
  rounding differences, as any two implementations would. With ``--dtype float64`` the two
  implementations print the same losses, accuracies and EERs (seed 0: 3.24% and 1.95%).

The functions ``make_data``, ``build_model``, ``make_head``, ``train``, ``equal_error_rate``,
``cosine_eer`` and ``held_out_eer`` are importable (the test reuses them).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("softmax", "aam", "am")
IMPLS = ("fastloss", "torch")
INPUT_DIM = 64
HIDDEN = 256
EMBEDDING_DIM = 128


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class SpeakerData:
    """Utterances as input vectors (N, input_dim) float32 and their speakers (N,) int64:
    the training speakers ``0 .. n_train_speakers - 1`` and, disjoint from them, the held-out
    speakers ``0 .. n_test_speakers - 1`` (their own numbering). ``test_latent`` holds the
    held-out utterances' identity latents (the speaker's direction plus the within-speaker
    noise, before the nuisance and the map): the best any embedding could do."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    test_latent: torch.Tensor
    n_train_speakers: int
    n_test_speakers: int
    description: str


def make_data(n_train_speakers: int = 800, n_test_speakers: int = 200, utterances: int = 8, *,
              seed: int = 0, latent_dim: int = 16, nuisance_dim: int = 16, n_channels: int = 16,
              within: float = 0.45, channel: float = 3.0, input_dim: int = INPUT_DIM,
              noise: float = 0.05) -> SpeakerData:
    """Synthetic speakers, drawn with NumPy's PCG64 from ``seed`` (the same on every call).

    Speaker ``k`` is a random unit direction ``u_k`` in a ``latent_dim`` identity space. An
    utterance of it is ``u_k`` plus within-speaker noise (Gaussian, expected norm about
    ``within``), concatenated with a nuisance vector: one of ``n_channels`` "recording
    channels" shared by all speakers (Gaussian, expected norm about ``channel``), picked at
    random per utterance, plus a jitter of a tenth of that. A fixed random two-layer tanh
    network maps the (latent_dim + nuisance_dim)-vector to ``input_dim`` features, Gaussian
    observation noise ``noise`` is added and the features are standardised with the training
    utterances' mean and standard deviation. The utterances are ordered by speaker."""
    for name, value in (("n_train_speakers", n_train_speakers), ("n_test_speakers", n_test_speakers)):
        if value < 2:
            raise ValueError(f"{name} must be at least 2, got {value}")
    if utterances < 2:
        raise ValueError(f"utterances must be at least 2, got {utterances}")
    rng = np.random.default_rng(seed)
    n_spk = n_train_speakers + n_test_speakers
    identity = rng.standard_normal((n_spk, latent_dim))
    identity /= np.linalg.norm(identity, axis=1, keepdims=True)
    channels = channel / math.sqrt(nuisance_dim) * rng.standard_normal((n_channels, nuisance_dim))
    z_dim, hidden = latent_dim + nuisance_dim, 2 * input_dim
    a1 = 2.0 / math.sqrt(z_dim) * rng.standard_normal((z_dim, hidden))
    b1 = 0.5 * rng.standard_normal(hidden)
    a2 = rng.standard_normal((hidden, input_dim)) / math.sqrt(hidden)

    speaker = np.repeat(np.arange(n_spk), utterances)
    n = len(speaker)
    z_id = identity[speaker] + within / math.sqrt(latent_dim) * rng.standard_normal((n, latent_dim))
    z_nu = (channels[rng.integers(0, n_channels, n)]
            + 0.1 * channel / math.sqrt(nuisance_dim) * rng.standard_normal((n, nuisance_dim)))
    x = np.tanh(np.concatenate([z_id, z_nu], axis=1) @ a1 + b1) @ a2
    x += noise * rng.standard_normal(x.shape)
    n_train = n_train_speakers * utterances
    x = (x - x[:n_train].mean(0)) / x[:n_train].std(0)

    x = torch.from_numpy(x.astype(np.float32))
    speaker = torch.from_numpy(speaker)
    description = (f"synthetic speakers ({n_train_speakers} training x {utterances} utterances, "
                   f"{n_test_speakers} held-out x {utterances}; identity {latent_dim}-d, within "
                   f"{within}; nuisance {nuisance_dim}-d, {n_channels} channels of size {channel}; "
                   f"{input_dim} features; seed {seed})")
    return SpeakerData(x[:n_train], speaker[:n_train], x[n_train:], speaker[n_train:] - n_train_speakers,
                       torch.from_numpy(z_id[n_train:]), n_train_speakers, n_test_speakers, description)


# --------------------------------------------------------------------------
# the embedding model and the heads
# --------------------------------------------------------------------------

def build_model(seed: int, input_dim: int = INPUT_DIM, hidden: int = HIDDEN,
                embedding_dim: int = EMBEDDING_DIM) -> nn.Sequential:
    """The embedding model, an MLP input -> hidden -> ReLU -> hidden -> ReLU -> embedding
    (linear output), whose initial weights depend only on ``seed`` (torch's global RNG is left
    as it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(input_dim, hidden), nn.ReLU(),
                             nn.Linear(hidden, hidden), nn.ReLU(),
                             nn.Linear(hidden, embedding_dim))


def accuracy(output: torch.Tensor, target: torch.Tensor, topk: tuple[int, ...] = (1,)) -> list[torch.Tensor]:
    """Top-k accuracies in percent (the seed's helper, as in the speaker-recognition recipes)."""
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum(0) * (100.0 / batch_size) for k in topk]


class SeedAAMSoftmax(nn.Module):
    """The seed's AAMsoftmax (the torch formulation fastloss.torch.AAMSoftmax replaces), with
    the embedding size as an argument; ``cosface=True``: the target logit ``s (cos - m)``
    (AM-softmax, for fastloss.torch.AMSoftmax)."""

    def __init__(self, n_class: int, m: float, s: float, embedding_dim: int = 256, cosface: bool = False):
        super().__init__()
        self.m, self.s, self.cosface = m, s, cosface
        self.weight = torch.nn.Parameter(torch.FloatTensor(n_class, embedding_dim), requires_grad=True)
        self.ce = nn.CrossEntropyLoss()
        nn.init.xavier_normal_(self.weight, gain=1)
        self.cos_m = math.cos(self.m)
        self.sin_m = math.sin(self.m)
        self.th = math.cos(math.pi - self.m)
        self.mm = math.sin(math.pi - self.m) * self.m

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cosine = F.linear(F.normalize(x), F.normalize(self.weight))
        if self.cosface:
            phi = cosine - self.m
        else:
            sine = torch.sqrt((1.0 - torch.mul(cosine, cosine)).clamp(0, 1))
            phi = cosine * self.cos_m - sine * self.sin_m
            phi = torch.where((cosine - self.th) > 0, phi, cosine - self.mm)
        one_hot = torch.zeros_like(cosine)
        one_hot.scatter_(1, label.view(-1, 1), 1)
        output = (one_hot * phi) + ((1.0 - one_hot) * cosine)
        output = output * self.s
        loss = self.ce(output, label)
        prec1 = accuracy(output.detach(), label.detach(), topk=(1,))[0]
        return loss, prec1


class SoftmaxHead(nn.Module):
    """The plain softmax head: ``fc = Linear(embedding_dim, n_class)`` (with bias) and a
    cross-entropy module; ``forward(x, label) -> (loss, prec1)`` like the margin heads."""

    def __init__(self, n_class: int, embedding_dim: int, loss: nn.Module):
        super().__init__()
        self.fc = nn.Linear(embedding_dim, n_class)
        self.ce = loss

    def forward(self, x: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.fc(x)
        loss = self.ce(logits, label)
        return loss, accuracy(logits.detach(), label.detach(), topk=(1,))[0]


def make_head(name: str, n_class: int, embedding_dim: int = EMBEDDING_DIM, *, impl: str = "fastloss",
              margin: float = 0.2, scale: float = 30.0, seed: int = 0) -> nn.Module:
    """A head ``forward(embeddings, labels) -> (loss, prec1)``, float32, its initial weights
    depending only on ``name``, the sizes and ``seed`` -- the same for both ``impl``:

    * ``"softmax"``: :class:`SoftmaxHead` with ``fastloss.torch.CrossEntropyLoss`` (impl
      "fastloss") or ``torch.nn.CrossEntropyLoss`` (impl "torch");
    * ``"aam"``: ``fastloss.torch.AAMSoftmax(n_class, margin, scale, embedding_dim)`` or the
      seed's formulation :class:`SeedAAMSoftmax`;
    * ``"am"``: ``fastloss.torch.AMSoftmax`` or :class:`SeedAAMSoftmax` with ``cosface=True``.

    The margin heads' weights are xavier-normal (gain 1) as in the seed, drawn from a private
    generator; the softmax head's Linear has torch's default initialisation."""
    if name not in HEADS:
        raise ValueError(f"unknown head {name!r} (expected one of {', '.join(HEADS)})")
    if impl not in IMPLS:
        raise ValueError(f"unknown impl {impl!r} (expected 'fastloss' or 'torch')")
    if impl == "fastloss":
        import fastloss.torch as flt  # only when asked for: the torch run needs no fastloss
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed + 1)  # not the embedding model's stream
        if name == "softmax":
            loss = flt.CrossEntropyLoss() if impl == "fastloss" else nn.CrossEntropyLoss()
            return SoftmaxHead(n_class, embedding_dim, loss)
        if impl == "fastloss":
            head = (flt.AAMSoftmax(n_class, margin, scale, embedding_dim=embedding_dim) if name == "aam"
                    else flt.AMSoftmax(n_class, margin, scale, embedding_dim=embedding_dim))
        else:
            head = SeedAAMSoftmax(n_class, margin, scale, embedding_dim, cosface=name == "am")
    with torch.no_grad():
        nn.init.xavier_normal_(head.weight, gain=1, generator=torch.Generator().manual_seed(seed + 1))
    return head


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class EpochStats:
    epoch: int        # from 1
    loss: float       # mean over the epoch's steps
    accuracy: float   # mean prec1 over the epoch's steps (percent; equal-sized batches)
    seconds: float


@dataclass
class TrainResult:
    model: nn.Module
    head: nn.Module
    step_losses: list[float]
    epochs: list[EpochStats]


#: on_step(step from 1, embeddings (with .grad), labels, loss, prec1, head (with .grad)),
#: called after the backward pass and before the optimizer step.
StepHook = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, nn.Module], None]


def batch_order(n: int, batch_size: int, epochs: int, seed: int) -> list[list[torch.Tensor]]:
    """Per epoch, the index tensors of its batches: a fresh permutation drawn from ``seed``
    (the same for every head), the tail of fewer than ``batch_size`` dropped."""
    if not 0 < batch_size <= n:
        raise ValueError(f"batch size must be in [1, {n}], got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    order = []
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        order.append([perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)])
    return order


def train(head: nn.Module, data: SpeakerData, *, epochs: int = 15, batch_size: int = 128,
          lr: float = 3e-3, seed: int = 0, dtype: torch.dtype = torch.float32,
          max_steps: int | None = None, on_step: StepHook | None = None,
          report: Callable[[EpochStats], None] | None = None) -> TrainResult:
    """Train ``build_model(seed)`` and ``head`` together with Adam(lr) on the training
    speakers, ``epochs`` epochs of ``batch_order(..., seed)`` (stopping after ``max_steps``
    steps if given). ``dtype``: of the weights and the inputs (the float32 initial weights
    are cast to it; ``head`` is converted in place). The step losses are those before each
    update."""
    model = build_model(seed, data.train_x.shape[1], embedding_dim=_embedding_dim(head)).to(dtype)
    head.to(dtype)
    model.train()
    head.train()
    optimizer = torch.optim.Adam(list(model.parameters()) + list(head.parameters()), lr=lr)
    result = TrainResult(model, head, [], [])
    step = 0
    for epoch, batches in enumerate(batch_order(len(data.train_y), batch_size, epochs, seed), start=1):
        t0 = time.perf_counter()
        losses, precs = [], []
        for index in batches:
            if max_steps is not None and step >= max_steps:
                break
            step += 1
            x, y = data.train_x[index].to(dtype), data.train_y[index]
            optimizer.zero_grad(set_to_none=True)
            embeddings = model(x)
            if on_step is not None:
                embeddings.retain_grad()
            loss, prec1 = head(embeddings, y)
            loss.backward()
            if on_step is not None:
                on_step(step, embeddings, y, loss, prec1, head)
            optimizer.step()
            losses.append(loss.item())
            precs.append(float(prec1))
        if not losses:
            break
        result.step_losses.extend(losses)
        stats = EpochStats(epoch, sum(losses) / len(losses), sum(precs) / len(precs), time.perf_counter() - t0)
        result.epochs.append(stats)
        if report is not None:
            report(stats)
    return result


def _embedding_dim(head: nn.Module) -> int:
    return head.fc.in_features if isinstance(head, SoftmaxHead) else head.weight.shape[1]


# --------------------------------------------------------------------------
# verification
# --------------------------------------------------------------------------

def equal_error_rate(scores, is_target) -> float:
    """The equal-error rate of verification trials: ``scores`` (higher: more likely the same
    speaker) and ``is_target`` (True for a same-speaker trial); needs both kinds.

    Accepting the trials whose score is at least a threshold, the false-acceptance rate FAR
    (non-target trials accepted / non-target trials) rises from 0 to 1 and the
    false-rejection rate FRR (target trials rejected / target trials) falls from 1 to 0 as the
    threshold goes down through the distinct scores (tied scores are accepted together). The
    EER is where the piecewise-linear (FAR, FRR) curve through those operating points crosses
    FAR = FRR: 0 for perfectly separated scores, 0.5 when all scores are equal."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    is_target = np.asarray(is_target, dtype=bool).ravel()
    if scores.shape != is_target.shape:
        raise ValueError(f"{scores.size} scores but {is_target.size} labels")
    if np.isnan(scores).any():
        raise ValueError("the scores hold NaN")
    n_target = int(is_target.sum())
    n_nontarget = is_target.size - n_target
    if n_target == 0 or n_nontarget == 0:
        raise ValueError("need both target and non-target trials")
    order = np.argsort(-scores, kind="stable")
    s, t = scores[order], is_target[order]
    last = np.r_[s[1:] != s[:-1], True]  # the last trial of each group of equal scores
    accepted_target = np.cumsum(t)[last]
    accepted_nontarget = np.cumsum(~t)[last]
    far = np.r_[0.0, accepted_nontarget / n_nontarget]
    frr = np.r_[1.0, 1.0 - accepted_target / n_target]
    gap = frr - far  # 1 at the first point, -1 at the last, non-increasing
    k = int(np.argmax(gap <= 0))
    a = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(far[k - 1] + a * (far[k] - far[k - 1]))


def trials(speakers: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of distinct utterances: (first index, second index, same speaker?)."""
    i, j = np.triu_indices(len(speakers), 1)
    y = np.asarray(speakers)
    return i, j, y[i] == y[j]


def cosine_eer(vectors: torch.Tensor | np.ndarray, speakers: torch.Tensor) -> float:
    """The EER of cosine scoring over every pair of the given utterance vectors."""
    v = F.normalize(torch.as_tensor(vectors).to(torch.float64), dim=1)
    i, j, same = trials(speakers)
    return equal_error_rate((v @ v.T).numpy()[i, j], same)  # torch's BLAS, torch's threads


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The model's embeddings of ``x`` (in the model's dtype), in eval mode."""
    model.eval()
    return model(x.to(next(model.parameters()).dtype))


def held_out_eer(model: nn.Module, data: SpeakerData) -> float:
    """The EER on the held-out (unseen) speakers: cosine similarity of the embeddings over
    every pair of their utterances."""
    return cosine_eer(embed(model, data.test_x).double(), data.test_y)


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--head", choices=("both",) + HEADS, default="both",
                   help="both: softmax then aam, on the same data, initial model and batches")
    p.add_argument("--impl", choices=IMPLS, default="fastloss",
                   help="fastloss.torch's heads, or the seed's torch formulations")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate")
    p.add_argument("--margin", type=float, default=0.2, help="m of the margin heads")
    p.add_argument("--scale", type=float, default=30.0, help="s of the margin heads")
    p.add_argument("--train-speakers", type=int, default=800)
    p.add_argument("--test-speakers", type=int, default=200, help="held-out speakers")
    p.add_argument("--utterances", type=int, default=8, help="per speaker")
    p.add_argument("--within", type=float, default=0.45, help="within-speaker noise")
    p.add_argument("--channel", type=float, default=3.0, help="size of the nuisance channels")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the data, the initial weights and the batch order")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads and fastloss.set_num_threads (default: their choice)")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "utterances"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("train_speakers", "test_speakers"):
        if getattr(args, name) < 2:
            p.error(f"--{name.replace('_', '-')} must be at least 2")
    if args.utterances < 2:
        p.error("--utterances must be at least 2 (same-speaker trials)")
    if args.batch_size > args.train_speakers * args.utterances:
        p.error("--batch-size is larger than the training set")
    if not (args.lr > 0 and args.scale > 0 and args.margin >= 0):
        p.error("--lr and --scale must be positive, --margin non-negative")
    if not (args.within >= 0 and args.channel >= 0):
        p.error("--within and --channel must be non-negative")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
        if args.impl == "fastloss":
            import fastloss

            fastloss.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    t_start = time.perf_counter()
    data = make_data(args.train_speakers, args.test_speakers, args.utterances, seed=args.seed,
                     within=args.within, channel=args.channel)
    n_target = args.test_speakers * args.utterances * (args.utterances - 1) // 2
    n_trials = len(data.test_y) * (len(data.test_y) - 1) // 2
    print(f"data: {data.description}")
    print(f"trials: {n_target} target + {n_trials - n_target} non-target pairs of held-out utterances")
    steps = len(data.train_y) // args.batch_size
    print(f"model: MLP {INPUT_DIM}-{HIDDEN}-{HIDDEN}-{EMBEDDING_DIM}, Adam lr {args.lr}, batch size "
          f"{args.batch_size}, {args.epochs} epochs of {steps} steps, seed {args.seed}, {args.dtype}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} torch threads")
    print(f"reference EER on held-out speakers: raw inputs {100 * cosine_eer(data.test_x, data.test_y):.2f}%, "
          f"untrained model {100 * held_out_eer(build_model(args.seed).to(dtype), data):.2f}%, "
          f"true identity latents {100 * cosine_eer(data.test_latent, data.test_y):.2f}%")

    names = ("softmax", "aam") if args.head == "both" else (args.head,)
    eers = {}
    for name in names:
        head = make_head(name, data.n_train_speakers, impl=args.impl, margin=args.margin,
                         scale=args.scale, seed=args.seed)
        loss = head.ce if isinstance(head, SoftmaxHead) else head
        what = (f"Linear({EMBEDDING_DIM}, {data.n_train_speakers}) + " if name == "softmax"
                else f"m {args.margin}, s {args.scale}, ")
        print(f"head {name}: {what}{type(loss).__module__}.{type(loss).__qualname__}", flush=True)

        def report(stats: EpochStats, name: str = name) -> None:
            print(f"{name} epoch {stats.epoch:3d}  loss {stats.loss:.6f}  accuracy {stats.accuracy:6.2f}%  "
                  f"({stats.seconds:.2f} s)", flush=True)

        t0 = time.perf_counter()
        result = train(head, data, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                       seed=args.seed, dtype=dtype, report=report)
        seconds = time.perf_counter() - t0
        eers[name] = held_out_eer(result.model, data)
        print(f"{name} EER on unseen speakers: {100 * eers[name]:.2f}%  (training {seconds:.2f} s)", flush=True)
    if len(eers) == 2:
        soft, aam = eers["softmax"], eers["aam"]
        verdict = "lower" if aam < soft else "not lower"
        print(f"comparison: EER on unseen speakers, softmax {100 * soft:.2f}% vs aam {100 * aam:.2f}%: "
              f"the margin head's is {verdict} (ratio {aam / soft if soft > 0 else math.inf:.2f})")
    print(f"wall: {time.perf_counter() - t_start:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
