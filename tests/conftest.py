"""Shared fixtures.

torch is optional for users but required in CI: with ``CI`` set, a missing torch is a test
failure, never a skip (the parity tests are the specification).
"""
import importlib
import os

import pytest

import fastloss
from fastloss import _runtime


@pytest.fixture(scope="session")
def torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but torch is not installed; .ci/run must install torch==2.13.0")
        pytest.skip("torch is not installed")


def _simd_paths():
    """avx2 and generic always (avx2 skips on a CPU without it); avx512 where it runs."""
    paths = ["avx2", "generic"]
    if fastloss.kernel_info().get("cpu_avx512"):
        paths.insert(0, "avx512")
    return paths


@pytest.fixture(params=_simd_paths())
def simd(request):
    """Run the test on one SIMD path (asserting it is the one in use), then restore the
    automatic choice."""
    path = request.param
    if path == "avx2" and not fastloss.kernel_info()["cpu_avx2_fma"]:
        pytest.skip("this CPU lacks AVX2+FMA")
    try:
        assert _runtime._use_simd(path) == path
        assert fastloss.kernel_info()["simd"] == path
        yield path
    finally:
        _runtime._use_simd("auto")
