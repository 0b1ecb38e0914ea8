"""fastloss.torch's drop-in modules against torch.nn's, both through autograd, float32.

Run:  pytest bench/bench_torch.py --benchmark-only --benchmark-group-by=group \
          --benchmark-columns=min,median,rounds
Each group times one training-loop step of the loss, ``loss_fn(x, t).backward()`` with
``x.grad`` reset each round, for:
  fastloss.torch   the module of fastloss.torch (kernels through a torch.autograd.Function)
  torch            the torch.nn module (eager)
  torch.compile    the torch.nn module under torch.compile (cross-entropy only, the small
                   shapes: compiling the large ones is the slow part of a run)
Issue targets (2 threads): cross-entropy at 2048 x 32000 >= 8x torch; at 64 x 10 no slower.
The other modules run at one mid-size shape each.

Half precision (test_half_cross_entropy_bf16): ``fastloss.torch.cross_entropy`` against
torch's ``F.cross_entropy`` on one bfloat16 leaf, ``cross_entropy(x, t).backward()`` with
``x.grad`` reset (fastloss/_report.py's half_torch_fns), in the groups
"cross_entropy bf16 <shape> fwd+bwd". Issue targets (2 threads): >= 10x torch at
2048 x 32000, >= 2x at 8192 x 1000.
"""
import numpy as np
import pytest

from fastloss import _report

from conftest import SHAPES, shape_id

CE_SHAPES = [s for s in SHAPES if s in [(64, 10), (8192, 1000), (2048, 32000)]]
FAMILY = ["NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss", "L1Loss", "SmoothL1Loss", "HuberLoss",
          "KLDivLoss"]


@pytest.fixture(scope="module")
def flt(torch_or_skip):
    import fastloss.torch

    return fastloss.torch


def _step(x, t, loss_fn):
    def step():
        x.grad = None
        loss_fn(x, t).backward()

    return step


def _ce_problem(torch, shape):
    n, c = shape
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((n, c), dtype=np.float32)).requires_grad_()
    return x, torch.from_numpy(rng.integers(0, c, n))


@pytest.fixture(scope="module", params=CE_SHAPES, ids=shape_id)
def ce_problem(request, torch_or_skip):
    return _ce_problem(torch_or_skip, request.param)


@pytest.mark.parametrize("side", ["fastloss.torch", "torch"])
def test_cross_entropy_module(benchmark, ce_problem, flt, torch_or_skip, side):
    torch = torch_or_skip
    x, t = ce_problem
    benchmark.group = f"CrossEntropyLoss {shape_id(tuple(x.shape))} fwd+bwd"
    loss_fn = flt.CrossEntropyLoss() if side == "fastloss.torch" else torch.nn.CrossEntropyLoss()
    benchmark(_step(x, t, loss_fn))
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("shape", [s for s in CE_SHAPES if s[0] * s[1] < 10**7], ids=shape_id)
def test_cross_entropy_module_compiled(benchmark, torch_or_skip, shape):
    """torch.nn.CrossEntropyLoss under torch.compile, the small shapes only (compiling the
    large ones is the slow part of a run)."""
    torch = torch_or_skip
    x, t = _ce_problem(torch, shape)
    benchmark.group = f"CrossEntropyLoss {shape_id(shape)} fwd+bwd"
    benchmark(_step(x, t, torch.compile(torch.nn.CrossEntropyLoss())))
    assert x.grad is not None and torch.isfinite(x.grad).all()


def _family_problem(torch, name, n=1 << 20, classes=1000):
    rng = np.random.default_rng(0)
    if name == "NLLLoss":
        x = torch.from_numpy(rng.standard_normal((n // classes, classes), dtype=np.float32))
        return x.log_softmax(1).requires_grad_(), torch.from_numpy(rng.integers(0, classes, n // classes))
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.random(n, dtype=np.float32)
    if name == "BCELoss":
        x = 1.0 / (1.0 + np.exp(-x))
    if name == "KLDivLoss":
        x = np.log(rng.random(n, dtype=np.float32) + 0.01)
    return torch.from_numpy(x).requires_grad_(), torch.from_numpy(y)


@pytest.mark.parametrize("side", ["fastloss.torch", "torch"])
@pytest.mark.parametrize("name", FAMILY)
def test_family_module(benchmark, flt, torch_or_skip, name, side):
    torch = torch_or_skip
    x, t = _family_problem(torch, name)
    benchmark.group = f"{name} {x.numel()} fwd+bwd"
    kwargs = {"reduction": "batchmean"} if name == "KLDivLoss" else {}
    loss_fn = getattr(flt if side == "fastloss.torch" else torch.nn, name)(**kwargs)
    benchmark(_step(x, t, loss_fn))
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("side", ["fastloss.torch", "torch"])
@pytest.mark.parametrize("name", ["log_softmax", "softmax"])
def test_normalize(benchmark, flt, torch_or_skip, name, side):
    torch = torch_or_skip
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.standard_normal((512, 32000), dtype=np.float32)).requires_grad_()
    benchmark.group = f"{name} 512x32000 fwd+bwd"
    fn = getattr(flt if side == "fastloss.torch" else torch.nn.functional, name)
    g = torch.from_numpy(rng.standard_normal((512, 32000), dtype=np.float32))

    def step():
        x.grad = None
        fn(x, dim=1).backward(g)

    benchmark(step)
    assert x.grad is not None


@pytest.fixture(scope="module", params=_report.HALF_TORCH, ids=shape_id)
def half_torch(request, torch_or_skip):
    n, c = request.param
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    return shape_id((n, c)), _report.half_torch_fns(torch_or_skip, x, rng.integers(0, c, n))


@pytest.mark.parametrize("side", ["fastloss.torch", "torch"])
def test_half_cross_entropy_bf16(benchmark, half_torch, side):
    shape, fns = half_torch
    benchmark.group = f"cross_entropy bf16 {shape} fwd+bwd"
    benchmark(fns[side])
