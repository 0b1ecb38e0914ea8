"""Shared setup of the benchmarks: inputs built once per shape, all cores for every side.

The half-precision benchmarks (test_half_*) take a dtype parameter with the ids of HALF:
"f32" (the float32 side of the same group), "bf16" (ml_dtypes.bfloat16: skipped when
ml_dtypes is not installed) and "f16".
"""
import numpy as np
import pytest

import fastloss

# N x C of the table, float32, class-index targets.
SHAPES = [(64, 10), (4096, 1000), (8192, 1000), (2048, 32000), (512, 128256)]


def shape_id(shape):
    return f"{shape[0]}x{shape[1]}"


@pytest.fixture(scope="module", params=SHAPES, ids=shape_id)
def problem(request):
    n, c = request.param
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, n)
    return x, t


@pytest.fixture(scope="session")
def torch_or_skip():
    try:
        import torch
    except ImportError:
        pytest.skip("torch is not installed")
    torch.set_num_threads(fastloss.get_num_threads())
    return torch


@pytest.fixture(scope="session")
def peers():
    """The installed peers of the cross-entropy report (fastloss/_report.py), every side on
    fastloss's thread count."""
    from fastloss import _report

    return _report.Peers(fastloss.get_num_threads())


# dtype ids of the half-precision benchmarks -> the names fastloss/_report.py keys them by
HALF = {"f32": "float32", "bf16": "bfloat16", "f16": "float16"}


@pytest.fixture(scope="session")
def half_dtypes():
    """{"bfloat16": dtype, "float16": dtype} as installed (bfloat16 needs ml_dtypes)."""
    from fastloss import _report

    return _report.half_dtypes()[0]


def half_side(fns, dtype_id):
    """fns[the dtype's name], skipping the benchmark when its dtype is not installed."""
    name = HALF[dtype_id]
    if name not in fns:
        pytest.skip(f"{name}: ml_dtypes is not installed")
    return fns[name]
