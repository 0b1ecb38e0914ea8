"""nll_loss benchmarks: fastloss vs the NumPy twin vs torch (eager), float32, mean.

Run:  pytest bench/bench_nll_loss.py --benchmark-only --benchmark-group-by=group
Groups are "<shape> nll fwd" and "<shape> nll fwd+bwd". fastloss writes the gradient into a
preallocated out=; torch runs F.nll_loss(x.requires_grad_(), t).backward() with x.grad reset.
"""
import numpy as np

from fastloss import _nll_loss as fl
from fastloss import reference as reference

from conftest import shape_id


def test_fastloss_fwd(benchmark, problem):
    x, t = problem
    benchmark.group = f"{shape_id(x.shape)} nll fwd"
    assert np.isfinite(benchmark(fl.nll_loss, x, t))


def test_fastloss_fwd_bwd(benchmark, problem):
    x, t = problem
    benchmark.group = f"{shape_id(x.shape)} nll fwd+bwd"
    g = np.empty_like(x)
    loss, grad = benchmark(fl.nll_loss_with_grad, x, t, out=g)
    assert grad is g


def test_reference_fwd_bwd(benchmark, problem):
    x, t = problem
    benchmark.group = f"{shape_id(x.shape)} nll fwd+bwd"
    benchmark.pedantic(reference.nll_loss_with_grad, (x, t), rounds=1 if x.size > 10**6 else 5)


def test_torch_fwd(benchmark, problem, torch_or_skip):
    torch = torch_or_skip
    F = torch.nn.functional
    x, t = problem
    benchmark.group = f"{shape_id(x.shape)} nll fwd"
    xt, tt = torch.from_numpy(x), torch.from_numpy(t)
    benchmark(F.nll_loss, xt, tt)


def test_torch_fwd_bwd(benchmark, problem, torch_or_skip):
    torch = torch_or_skip
    F = torch.nn.functional
    x, t = problem
    benchmark.group = f"{shape_id(x.shape)} nll fwd+bwd"
    xt = torch.from_numpy(x.copy()).requires_grad_()
    tt = torch.from_numpy(t)

    def step():
        xt.grad = None
        F.nll_loss(xt, tt).backward()

    benchmark(step)
