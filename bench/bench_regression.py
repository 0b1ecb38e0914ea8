"""Regression-loss benchmarks (mse, l1, smooth_l1, huber): fastloss vs torch (eager) vs the
memory-bandwidth floor, float32, reduction "mean".

Run:  pytest bench/bench_regression.py --benchmark-only --benchmark-group-by=group \
          --benchmark-columns=min,median,rounds
Groups are "<loss> <n>": each table compares, for one loss and size:
  fastloss   NAME_with_grad(x, y, out=g), g preallocated (the gradient's only write)
  torch      F.NAME(x.requires_grad_(), y).backward() with x.grad reset each round
  floor      np.add(x, y, out=g): one pass that reads two arrays and writes one, the least
             any fused loss + gradient pass has to move
Issue targets (16M elements, 2 threads): fastloss <= 1.5x floor and >= 4x faster than torch.

Half precision (test_half_fwd_bwd): every elementwise loss of the report's half-precision
section (_report.ELEMENTWISE: these four, binary_cross_entropy, its logits form and kl_div),
``NAME_with_grad(x, y, reduction="mean", out=g)`` with bfloat16 input and target against
the same call in float32, at 1M and 16M elements, in the groups "<loss> <n> fwd+bwd,
float32 vs bfloat16". Issue target (16M, 2 threads): bfloat16 >= 1.6x faster than float32
(fastloss computes these losses in float32 on the bfloat16 operands).
"""
import numpy as np
import pytest

from fastloss import _regression as fl
from fastloss import _report

from conftest import half_side

NAMES = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"]
SIZES = [1 << 10, 1 << 20, 1 << 24]


@pytest.fixture(scope="module", params=SIZES, ids=lambda n: f"n{n}")
def data(request):
    rng = np.random.default_rng(0)
    n = request.param
    return rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)


@pytest.mark.parametrize("name", NAMES)
def test_fastloss_fwd(benchmark, data, name):
    x, y = data
    benchmark.group = f"{name} {x.size} fwd"
    loss = benchmark(getattr(fl, name), x, y)
    assert np.isfinite(loss)


@pytest.mark.parametrize("name", NAMES)
def test_fastloss_fwd_bwd(benchmark, data, name):
    x, y = data
    benchmark.group = f"{name} {x.size}"
    g = np.empty_like(x)
    loss, grad = benchmark(getattr(fl, name + "_with_grad"), x, y, out=g)
    assert grad is g and np.isfinite(loss)


@pytest.mark.parametrize("name", NAMES)
def test_floor_add(benchmark, data, name):
    x, y = data
    benchmark.group = f"{name} {x.size}"
    g = np.empty_like(x)
    benchmark(np.add, x, y, out=g)


@pytest.mark.parametrize("name", NAMES)
def test_torch_fwd(benchmark, data, name, torch_or_skip):
    import torch.nn.functional as F

    torch = torch_or_skip
    x, y = data
    benchmark.group = f"{name} {x.size} fwd"
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss = benchmark(getattr(F, name), xt, yt)
    assert torch.isfinite(loss)


@pytest.mark.parametrize("name", NAMES)
def test_torch_fwd_bwd(benchmark, data, name, torch_or_skip):
    import torch.nn.functional as F

    torch = torch_or_skip
    x, y = data
    benchmark.group = f"{name} {x.size}"
    xt = torch.from_numpy(x.copy()).requires_grad_()
    yt = torch.from_numpy(y)
    fn = getattr(F, name)

    def step():
        xt.grad = None
        fn(xt, yt).backward()

    benchmark(step)
    assert xt.grad is not None


HALF_SIZES = [1 << 20, _report.HALF_ELEMENTWISE_N]


@pytest.fixture(scope="module", params=[(name, n) for n in HALF_SIZES for name in _report.ELEMENTWISE],
                ids=lambda p: f"{p[0]}-n{p[1]}")
def half_elementwise(request, half_dtypes):
    """(group, {"float32": fn, "bfloat16": fn}) of one loss at one size (one loss's arrays
    alive at a time)."""
    name, n = request.param
    a, b = _report.elementwise_inputs(name, n)
    bf16 = {k: v for k, v in half_dtypes.items() if k == "bfloat16"}
    return f"{name} {n} fwd+bwd, float32 vs bfloat16", _report.half_elementwise_fns(name, a, b, bf16)


@pytest.mark.parametrize("dtype", ["f32", "bf16"])
def test_half_fwd_bwd(benchmark, half_elementwise, dtype):
    group, fns = half_elementwise
    fn = half_side(fns, dtype)
    benchmark.group = group
    loss, grad = benchmark(fn)
    assert np.isfinite(float(loss)) and grad.dtype.name == ("float32" if dtype == "f32" else "bfloat16")
