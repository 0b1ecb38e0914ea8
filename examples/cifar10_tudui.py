"""Train the "Tudui" CIFAR-10 CNN of the PyTorch tutorials with SGD, using either torch's
cross-entropy or fastloss's drop-in, and time the loss.

    python examples/cifar10_tudui.py [--loss torch|fastloss] [--steps N] [--batch-size B]
                                     [--lr LR] [--momentum M] [--data DIR] [--seed S]
                                     [--dtype float32|float64] [--threads T]

Data: the CIFAR-10 training set through torchvision when torchvision is installed and the
data set is already in ``--data`` (nothing is ever downloaded); otherwise a deterministic
synthetic set of CIFAR-shaped images (3x32x32 floats, 10 classes) whose class is carried by a
per-class pattern of coloured tiles under Gaussian noise, so the loss falls within a few
dozen steps.

Per step it prints the loss, the time of the loss alone (forward + backward of the loss on
the detached logits, the part fastloss replaces) and the time of the whole step; then the
median times and the total. The model, the data, the batch order and the initial weights
depend only on ``--seed``, so ``--loss torch`` and ``--loss fastloss`` train the same
network on the same batches and their loss curves can be compared line by line. In float32
they agree to rounding until a max-pool window whose two largest values differ by less than
that rounding picks the other winner; from there the runs drift apart (by up to ~5e-4 in 50
steps for some seeds), as they would with any two implementations of the loss -- torch's own
loss evaluated in float64 does the same. With ``--dtype float64`` the curves agree to ~1e-15.

The functions ``build_model``, ``make_data``, ``make_loss`` and ``train`` are importable
(tests/test_example_cifar.py reuses them).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

NUM_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)

#: A step callback: (step number from 1, loss, seconds of the loss fwd+bwd, seconds of the step).
StepReport = Callable[[int, float, float, float], None]


class Tudui(nn.Module):
    """The CIFAR-10 CNN of the "Tudui" PyTorch tutorial (no activations, as there).

    3x32x32 -> Conv2d(3, 32, 5, padding=2) -> MaxPool2d(2) -> 32x16x16
            -> Conv2d(32, 32, 5, padding=2) -> MaxPool2d(2) -> 32x8x8
            -> Conv2d(32, 64, 5, padding=2) -> MaxPool2d(2) -> 64x4x4
            -> Flatten -> Linear(1024, 64) -> Linear(64, 10) -> 10 logits
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=5, padding=2),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 32, kernel_size=5, padding=2),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=5, padding=2),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(64 * 4 * 4, 64),
            nn.Linear(64, NUM_CLASSES),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


def build_model(seed: int) -> Tudui:
    """A Tudui whose initial weights depend only on ``seed`` (torch's global RNG is left as
    it was)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Tudui()


@dataclass(frozen=True)
class ImageSet:
    """Images (N, 3, 32, 32) -- float32, or uint8 scaled to [0, 1] when a batch is taken --
    and their class labels (N,) int64."""

    images: torch.Tensor
    labels: torch.Tensor
    description: str

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[index]
        x = x.to(dtype).div_(255.0) if x.dtype == torch.uint8 else x.to(dtype)
        return x, self.labels[index]


def make_synthetic(n: int = 1024, seed: int = 0, noise: float = 0.5) -> ImageSet:
    """``n`` CIFAR-shaped images, classes balanced and shuffled. Class ``c`` has its own
    pattern: a 4x4 grid of 8x8-pixel tiles, each tile one random RGB colour in [0, 1]; an
    image is its class pattern plus Gaussian noise of standard deviation ``noise``.
    Generated from ``seed`` with a private torch.Generator (bitwise reproducible)."""
    gen = torch.Generator().manual_seed(seed)
    tiles = torch.rand(NUM_CLASSES, 3, 4, 4, generator=gen)
    patterns = tiles.repeat_interleave(8, dim=2).repeat_interleave(8, dim=3)
    labels = (torch.arange(n) % NUM_CLASSES)[torch.randperm(n, generator=gen)]
    images = patterns[labels] + noise * torch.randn(n, *IMAGE_SHAPE, generator=gen)
    return ImageSet(images, labels,
                    f"synthetic ({n} images, {NUM_CLASSES} classes, noise {noise}, seed {seed})")


def load_cifar10(root: str) -> ImageSet:
    """The CIFAR-10 training set from ``root`` via torchvision, never downloading. Raises
    ImportError without torchvision, RuntimeError/OSError when the data set is not there."""
    from torchvision.datasets import CIFAR10

    dataset = CIFAR10(root=root, train=True, download=False)
    images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2).contiguous()  # NHWC -> NCHW
    labels = torch.as_tensor(dataset.targets, dtype=torch.int64)
    return ImageSet(images, labels, f"CIFAR-10 train set from {root} ({len(labels)} images)")


def make_data(data_dir: str | None = None, seed: int = 0, n_synthetic: int = 1024) -> ImageSet:
    """CIFAR-10 from ``data_dir`` when torchvision and the data set are available, else the
    synthetic set (``data_dir=None``: synthetic directly)."""
    if data_dir is not None:
        try:
            return load_cifar10(data_dir)
        except (ImportError, RuntimeError, OSError) as exc:
            print(f"CIFAR-10 not used ({type(exc).__name__}: {exc}); using synthetic data",
                  file=sys.stderr)
    return make_synthetic(n_synthetic, seed=seed)


def make_loss(name: str) -> nn.Module:
    """``torch.nn.CrossEntropyLoss()`` or ``fastloss.torch.CrossEntropyLoss()``."""
    if name == "torch":
        return nn.CrossEntropyLoss()
    if name == "fastloss":
        import fastloss.torch  # only when asked for: the torch run needs no fastloss

        return fastloss.torch.CrossEntropyLoss()
    raise ValueError(f"unknown loss {name!r} (expected 'torch' or 'fastloss')")


def batch_order(n: int, batch_size: int, steps: int, seed: int) -> list[torch.Tensor]:
    """Index tensors of ``steps`` batches: a fresh permutation of the data per epoch,
    drawn from ``seed`` (the same for any loss); the tail of an epoch is dropped."""
    if not 0 < batch_size <= n:
        raise ValueError(f"batch size must be in [1, {n}], got {batch_size}")
    gen = torch.Generator().manual_seed(seed)
    batches: list[torch.Tensor] = []
    while len(batches) < steps:
        perm = torch.randperm(n, generator=gen)
        batches.extend(perm[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size))
    return batches[:steps]


def train(loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], steps: int, *,
          data: ImageSet | None = None, batch_size: int = 32, lr: float = 0.01,
          momentum: float = 0.9, seed: int = 0, dtype: torch.dtype = torch.float32,
          report: StepReport | None = None) -> tuple[list[float], Tudui]:
    """Train ``build_model(seed)`` for ``steps`` SGD steps on ``data`` (default: the
    synthetic set of ``seed``) with ``loss_fn(logits, labels)``; return the per-step losses
    (before each update) and the trained model. ``dtype``: of the weights and the images
    (the float32 initial weights are cast to it).

    The loss is evaluated on the detached logits and its gradient is then pushed through the
    network (``logits.backward(grad)``): the same numbers as ``loss.backward()`` through the
    whole graph, but the loss's own forward + backward can be timed apart."""
    if data is None:
        data = make_synthetic(seed=seed)
    model = build_model(seed).to(dtype)
    model.train()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    losses: list[float] = []
    for step, index in enumerate(batch_order(len(data), batch_size, steps, seed), start=1):
        t_step = time.perf_counter()
        images, labels = data.batch(index, dtype)
        optimizer.zero_grad(set_to_none=True)
        logits = model(images)

        t_loss = time.perf_counter()
        detached = logits.detach().requires_grad_()
        loss = loss_fn(detached, labels)
        loss.backward()
        loss_seconds = time.perf_counter() - t_loss

        logits.backward(detached.grad)
        optimizer.step()
        step_seconds = time.perf_counter() - t_step

        losses.append(loss.item())
        if report is not None:
            report(step, losses[-1], loss_seconds, step_seconds)
    return losses, model


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--loss", choices=("torch", "fastloss"), default="torch",
                   help="torch.nn.CrossEntropyLoss or fastloss.torch.CrossEntropyLoss")
    p.add_argument("--steps", type=int, default=50, help="SGD steps")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--data", default="data",
                   help="CIFAR-10 root (as torchvision lays it out); synthetic data if absent")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the weights, the batch order and the synthetic data")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="dtype of the weights and the images")
    p.add_argument("--threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's choice)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error("--steps must be at least 1")
    if args.threads is not None and args.threads < 1:
        p.error("--threads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    loss_fn = make_loss(args.loss)
    data = make_data(args.data, seed=args.seed)
    print(f"data: {data.description}")
    print(f"loss: {args.loss} ({type(loss_fn).__module__}.{type(loss_fn).__qualname__})")
    print(f"SGD lr {args.lr} momentum {args.momentum}, batch size {args.batch_size}, "
          f"{args.steps} steps, seed {args.seed}, {args.dtype}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} torch threads")

    loss_times: list[float] = []
    step_times: list[float] = []

    def report(step: int, loss: float, loss_seconds: float, step_seconds: float) -> None:
        loss_times.append(loss_seconds)
        step_times.append(step_seconds)
        print(f"step {step:4d}  loss {loss:.7f}  loss fwd+bwd {loss_seconds * 1e3:8.4f} ms  "
              f"step {step_seconds * 1e3:8.2f} ms", flush=True)

    t0 = time.perf_counter()
    losses, _ = train(loss_fn, args.steps, data=data, batch_size=args.batch_size, lr=args.lr,
                      momentum=args.momentum, seed=args.seed, dtype=getattr(torch, args.dtype),
                      report=report)
    total = time.perf_counter() - t0
    print(f"loss fwd+bwd: median {statistics.median(loss_times) * 1e3:.4f} ms, "
          f"total {sum(loss_times) * 1e3:.2f} ms "
          f"({100 * sum(loss_times) / sum(step_times):.2f}% of the steps)")
    print(f"step: median {statistics.median(step_times) * 1e3:.2f} ms; "
          f"total {sum(step_times):.2f} s for {len(losses)} steps")
    print(f"wall: {total:.2f} s (with the one-time setup of the model and the optimizer)")
    print(f"loss: first {losses[0]:.7f}, last {losses[-1]:.7f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
