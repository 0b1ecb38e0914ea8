"""Cross-entropy benchmarks: fastloss against every installed peer and the memory limit,
float32, mean, class-index targets, at the shapes of ``python -m fastloss``.

Run:  pytest bench/ --benchmark-only --benchmark-group-by=group --benchmark-columns=min,median,rounds
Groups are "<shape> fwd", "<shape> fwd+bwd" and "<shape> memory limit", so each table
compares the sides at one shape.

The sides and how each is called are fastloss/_report.py's (one definition for the report
and this suite): fastloss with ``out=``, the NumPy reference (small shapes), torch eager and
torch.compile, JAX (jit, block_until_ready), scikit-learn's HalfMultinomialLoss, and the
copy / read passes of the memory limit. A peer that is not installed is skipped.
"""
import numpy as np
import pytest

from fastloss import _report

from conftest import shape_id

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
