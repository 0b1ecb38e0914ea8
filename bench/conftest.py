"""Shared setup of the benchmarks: inputs built once per shape, all cores for every side."""
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
