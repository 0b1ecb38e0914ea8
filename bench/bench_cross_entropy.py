"""Cross-entropy benchmarks: fastloss vs fastloss.reference vs torch (eager), float32, mean.

Run:  pytest bench/ --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds
Groups are "<shape> fwd" and "<shape> fwd+bwd", so each table compares the three sides.

How each side is timed (as its users run it):
  fastloss  cross_entropy(x, t); cross_entropy_with_grad(x, t, out=g) with g preallocated
  reference the same calls on fastloss.reference (NumPy, float64 inside)
  torch     F.cross_entropy(x, t); F.cross_entropy(x.requires_grad_(), t).backward() with
            x.grad reset each round
"""
import numpy as np

import fastloss
from fastloss import reference

from conftest import shape_id


def _group(benchmark, problem, what):
    x, _ = problem
    benchmark.group = f"{shape_id(x.shape)} {what}"


def test_fastloss_fwd(benchmark, problem):
    x, t = problem
    _group(benchmark, problem, "fwd")
    loss = benchmark(fastloss.cross_entropy, x, t)
    assert np.isfinite(loss)


def test_fastloss_fwd_bwd(benchmark, problem):
    x, t = problem
    _group(benchmark, problem, "fwd+bwd")
    g = np.empty_like(x)
    loss, grad = benchmark(fastloss.cross_entropy_with_grad, x, t, out=g)
    assert grad is g and np.isfinite(loss)


def test_reference_fwd_bwd(benchmark, problem):
    x, t = problem
    _group(benchmark, problem, "fwd+bwd")
    loss, _ = benchmark.pedantic(reference.cross_entropy_with_grad, (x, t), rounds=1 if x.size > 10**6 else 5)
    assert np.isfinite(loss)


def test_torch_fwd(benchmark, problem, torch_or_skip):
    torch = torch_or_skip
    import torch.nn.functional as F

    x, t = problem
    _group(benchmark, problem, "fwd")
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    loss = benchmark(F.cross_entropy, xt, tt)
    assert torch.isfinite(loss)


def test_torch_fwd_bwd(benchmark, problem, torch_or_skip):
    torch = torch_or_skip
    import torch.nn.functional as F

    x, t = problem
    _group(benchmark, problem, "fwd+bwd")
    xt = torch.from_numpy(x.copy()).requires_grad_()
    tt = torch.from_numpy(t)

    def step():
        xt.grad = None
        F.cross_entropy(xt, tt).backward()

    benchmark(step)
    assert xt.grad is not None
