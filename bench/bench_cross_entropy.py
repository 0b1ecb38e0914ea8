"""Cross-entropy benchmarks: fastloss against every installed peer and the memory limit,
float32, mean, class-index targets, at the shapes of ``python -m fastloss``.

Run:  pytest bench/ --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds
Groups are "<shape> fwd", "<shape> fwd+bwd" and "<shape> memory limit", so each table
compares the sides at one shape.

The sides and how each is called are fastloss/_report.py's (one definition for the report
and this suite): fastloss with ``out=``, the NumPy reference (small shapes), torch eager and
torch.compile, JAX (jit, block_until_ready), scikit-learn's HalfMultinomialLoss, and the
copy / read passes of the memory limit. A peer that is not installed is skipped.

Half precision (test_half_*): fastloss's ``cross_entropy(x, t)`` and
``cross_entropy_with_grad(x, t, out=g)`` with x in float32, bfloat16 and float16 (the same
values, rounded) at the shapes of the report's half-precision section (_report.HALF_CE), in
the groups "<shape> fwd, float32 vs half" and "<shape> fwd+bwd, float32 vs half". Issue
targets (2 threads): bfloat16 and float16 fwd+bwd <= 0.65x float32's time, forward <= 0.75x.
"""
import numpy as np
import pytest

from fastloss import _report

from conftest import HALF, half_side, shape_id

SIDES = ["fastloss", "numpy reference", "torch", "torch.compile", "JAX", "scikit-learn"]


@pytest.fixture(scope="module", params=_report.IN_CACHE + _report.SWEEP, ids=shape_id)
def cases(request, peers):
    n, c = request.param
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, n)
    fwd, fb = peers.case_fns(x, t, reference_ok=n * c <= 1 << 21)
    return shape_id((n, c)), fwd, fb, peers.limit_fns(x)


def _run(benchmark, fns, side, group):
    if side not in fns:
        pytest.skip(f"{side}: not installed, or not timed at this shape")
    benchmark.group = group
    benchmark(fns[side])


@pytest.mark.parametrize("side", SIDES)
def test_fwd(benchmark, cases, side):
    shape, fwd, _, _ = cases
    _run(benchmark, fwd, side, f"{shape} fwd")


@pytest.mark.parametrize("side", SIDES)
def test_fwd_bwd(benchmark, cases, side):
    shape, _, fb, _ = cases
    _run(benchmark, fb, side, f"{shape} fwd+bwd")


@pytest.mark.parametrize("side", _report.LIMITS)
def test_memory_limit(benchmark, cases, side):
    shape, _, _, limits = cases
    _run(benchmark, limits, side, f"{shape} memory limit")


@pytest.fixture(scope="module", params=_report.HALF_CE, ids=shape_id)
def half_cases(request, half_dtypes):
    n, c = request.param
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, n)
    fwd, fb = _report.half_case_fns(x, t, half_dtypes)
    return shape_id((n, c)), fwd, fb


@pytest.mark.parametrize("dtype", list(HALF))
def test_half_fwd(benchmark, half_cases, dtype):
    shape, fwd, _ = half_cases
    fn = half_side(fwd, dtype)
    benchmark.group = f"{shape} fwd, float32 vs half"
    assert np.isfinite(float(benchmark(fn)))


@pytest.mark.parametrize("dtype", list(HALF))
def test_half_fwd_bwd(benchmark, half_cases, dtype):
    shape, _, fb = half_cases
    fn = half_side(fb, dtype)
    benchmark.group = f"{shape} fwd+bwd, float32 vs half"
    loss, grad = benchmark(fn)
    assert np.isfinite(float(loss)) and grad.dtype.name == HALF[dtype]
