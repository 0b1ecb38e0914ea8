"""softmax / log_softmax forward and backward benchmarks: fastloss vs the NumPy twin vs torch,
float32, along the last axis, every side writing into a preallocated output.

Run:  pytest bench/bench_softmax.py --benchmark-only --benchmark-group-by=group
Groups are "<shape> <function> fwd|bwd". torch: torch.log_softmax / torch.softmax with out=,
torch._log_softmax_backward_data with out=, torch._softmax_backward_data (no out=).
"""
import numpy as np
import pytest

from fastloss import reference as reference
from fastloss import _softmax as fl

from conftest import SHAPES, shape_id


@pytest.fixture(scope="module", params=SHAPES, ids=shape_id)
def data(request):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(request.param, dtype=np.float32)
    g = rng.standard_normal(request.param, dtype=np.float32)
    return x, g


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_fastloss_fwd(benchmark, data, name):
    x, _ = data
    benchmark.group = f"{shape_id(x.shape)} {name} fwd"
    o = np.empty_like(x)
    assert benchmark(getattr(fl, name), x, -1, out=o) is o


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_fastloss_bwd(benchmark, data, name):
    x, g = data
    benchmark.group = f"{shape_id(x.shape)} {name} bwd"
    y = getattr(fl, name)(x)
    o = np.empty_like(x)
    assert benchmark(getattr(fl, name + "_backward"), g, y, -1, out=o) is o


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_reference_fwd(benchmark, data, name):
    x, _ = data
    benchmark.group = f"{shape_id(x.shape)} {name} fwd"
    benchmark.pedantic(getattr(reference, name), (x,), rounds=1 if x.size > 10**6 else 5)


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_torch_fwd(benchmark, data, name, torch_or_skip):
    torch = torch_or_skip
    x, _ = data
    benchmark.group = f"{shape_id(x.shape)} {name} fwd"
    xt = torch.from_numpy(x)
    ot = torch.empty_like(xt)
    f = getattr(torch, name)
    benchmark(lambda: f(xt, 1, out=ot))


@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_torch_bwd(benchmark, data, name, torch_or_skip):
    torch = torch_or_skip
    x, g = data
    benchmark.group = f"{shape_id(x.shape)} {name} bwd"
    xt, gt = torch.from_numpy(x), torch.from_numpy(g)
    if name == "log_softmax":
        yt = torch.log_softmax(xt, 1)
        ot = torch.empty_like(xt)
        benchmark(lambda: torch._log_softmax_backward_data(gt, yt, 1, torch.float32, out=ot))
    else:
        yt = torch.softmax(xt, 1)
        benchmark(lambda: torch._softmax_backward_data(gt, yt, 1, torch.float32))


def test_numpy_copy_pass(benchmark, data):
    """One read + write pass of the same size (the speed target's yardstick)."""
    x, _ = data
    benchmark.group = f"{shape_id(x.shape)} copy"
    o = np.empty_like(x)
    benchmark(np.copyto, o, x)
