"""Elementwise binary losses: fastloss vs fastloss._reference_binary vs torch (eager), float32.

Run:  pytest bench/bench_binary.py --benchmark-only --benchmark-group-by=group \
          --benchmark-columns=min,median,rounds
Groups are "<loss> <shape> fwd" and "<loss> <shape> fwd+bwd", so each table compares the
sides. The issue's target: 16M elements (4096 x 4096), 2 threads, each ``*_with_grad`` at
least 4x torch's fwd+bwd.

How each side is timed (as its users run it):
  fastloss  NAME(x, y); NAME_with_grad(x, y, out=g) with g preallocated
  reference NAME_with_grad(x, y) (NumPy, float64 inside; one round on big inputs)
  torch     F.NAME(x, y); F.NAME(x.requires_grad_(), y).backward() with x.grad reset
"""
import numpy as np
import pytest

import fastloss
from fastloss import _binary as fl
from fastloss import reference as ref

SHAPES = [(64, 10), (4096, 4096)]
LOSSES = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div"]
KWARGS = {"kl_div": {"reduction": "batchmean"}}


def _id(shape):
    return f"{shape[0]}x{shape[1]}"


@pytest.fixture(scope="module", params=SHAPES, ids=_id)
def data(request):
    shape = request.param
    rng = np.random.default_rng(0)
    return {
        "binary_cross_entropy": (rng.uniform(0.01, 0.99, shape).astype(np.float32),
                                 rng.uniform(0, 1, shape).astype(np.float32)),
        "binary_cross_entropy_with_logits": (rng.standard_normal(shape, dtype=np.float32),
                                             rng.uniform(0, 1, shape).astype(np.float32)),
        "kl_div": (np.log(rng.uniform(0.001, 1, shape)).astype(np.float32),
                   rng.uniform(0, 1, shape).astype(np.float32)),
    }


@pytest.fixture(scope="session")
def torch_f():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        pytest.skip("torch is not installed")
    torch.set_num_threads(fastloss.get_num_threads())
    return torch, F


def _group(benchmark, name, x, what):
    benchmark.group = f"{name} {_id(x.shape)} {what}"


@pytest.mark.parametrize("name", LOSSES)
def test_fastloss_fwd(benchmark, data, name):
    x, y = data[name]
    _group(benchmark, name, x, "fwd")
    loss = benchmark(getattr(fl, name), x, y, **KWARGS.get(name, {}))
    assert np.isfinite(loss)


@pytest.mark.parametrize("name", LOSSES)
def test_fastloss_fwd_bwd(benchmark, data, name):
    x, y = data[name]
    _group(benchmark, name, x, "fwd+bwd")
    g = np.empty_like(x)
    loss, grad = benchmark(getattr(fl, name + "_with_grad"), x, y, out=g, **KWARGS.get(name, {}))
    assert grad is g and np.isfinite(loss)


@pytest.mark.parametrize("name", LOSSES)
def test_reference_fwd_bwd(benchmark, data, name):
    x, y = data[name]
    _group(benchmark, name, x, "fwd+bwd")
    loss, _ = benchmark.pedantic(getattr(ref, name + "_with_grad"), (x, y), KWARGS.get(name, {}),
                                 rounds=1 if x.size > 10**6 else 5)
    assert np.isfinite(loss)


@pytest.mark.parametrize("name", LOSSES)
def test_torch_fwd(benchmark, data, name, torch_f):
    torch, F = torch_f
    x, y = data[name]
    _group(benchmark, name, x, "fwd")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss = benchmark(getattr(F, name), xt, yt, **KWARGS.get(name, {}))
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", LOSSES)
def test_torch_fwd_bwd(benchmark, data, name, torch_f):
    torch, F = torch_f
    x, y = data[name]
    _group(benchmark, name, x, "fwd+bwd")
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = torch.from_numpy(y)
    f = getattr(F, name)
    kw = KWARGS.get(name, {})

    def step():
        xt.grad = None
        f(xt, yt, **kw).backward()

    benchmark(step)
    assert xt.grad is not None
