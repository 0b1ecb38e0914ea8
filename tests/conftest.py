"""Shared fixtures, and the gradient comparison of the NumPy-layer tests (assert_grad_close).

torch is optional for users but required in CI: with ``CI`` set, a missing torch is a test
failure, never a skip (the parity tests are the specification). The same holds for ml_dtypes
(the [bf16] extra): ``BF16`` is its bfloat16, or None outside CI when it is not installed.
"""
import contextlib
import importlib
import importlib.util
import os
import sys

import numpy as np
import pytest

import fastloss
from fastloss import _runtime

try:
    import ml_dtypes  # also registers the dtype name "bfloat16"
except ImportError:  # the [bf16] extra: required in CI
    if os.environ.get("CI"):
        raise
    ml_dtypes = None
BF16 = ml_dtypes.bfloat16 if ml_dtypes is not None else None


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


# --------------------------------------------------------------------------
# comparing gradients
# --------------------------------------------------------------------------

def _finfo(dtype):
    """np.finfo, and ml_dtypes' finfo for bfloat16 (numpy's does not know it)."""
    if np.dtype(dtype).name == "bfloat16":
        return ml_dtypes.finfo(dtype)
    return np.finfo(dtype)


def grad_tolerance(expected, rtol, axis=None, dtype=None, scale=None):
    """Per-entry tolerance for a gradient: ``rtol * (|expected| + row scale)``, the row
    scale being the largest finite ``|expected|`` along ``axis`` (a loss's class axis or a
    softmax axis: one position's entries; None: the whole array, i.e. the reduction divisor
    times the upstream gradient times the largest per-element derivative), or ``scale``
    when given (an array broadcasting to the gradient: the size of the terms each entry is
    computed from, for formulas that cancel), plus a few of the dtype's smallest subnormals
    (rounding to a subnormal result). No floor of 1: a mean-reduced gradient's entries are
    ~1/N and a 1% error in them must fail."""
    e = np.abs(np.asarray(expected, np.float64))
    finite = np.where(np.isfinite(e), e, 0.0)
    if scale is not None:
        row = np.nan_to_num(np.abs(np.asarray(scale, np.float64)), nan=0.0, posinf=0.0)
    elif finite.ndim == 0 or finite.size == 0:
        row = finite
    elif axis is None:
        row = np.max(finite)
    else:
        row = np.max(finite, axis=axis, keepdims=True)
    tiny = float(_finfo(dtype or np.asarray(expected).dtype).smallest_subnormal)
    return rtol * (finite + row) + 4 * tiny


def assert_grad_close(actual, expected, rtol, axis=None, dtype=None, err_msg="", scale=None):
    """``actual`` equals ``expected`` within grad_tolerance (NaN and infinities at the same
    places, with the same signs); the message names the worst entry."""
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    assert a.shape == e.shape, f"{err_msg}: shape {a.shape} vs {e.shape}"
    assert np.array_equal(np.isnan(a), np.isnan(e)), f"{err_msg}: NaN differs\nactual {a}\nexpected {e}"
    inf = np.isinf(e) | np.isinf(a)
    assert np.array_equal(a[inf], e[inf]), f"{err_msg}: infinities differ\nactual {a}\nexpected {e}"
    ok = np.isfinite(e)
    tol = grad_tolerance(expected, rtol, axis, dtype, scale)
    err = np.abs(np.where(ok, a, 0.0) - np.where(ok, e, 0.0))
    bad = err > np.broadcast_to(tol, err.shape)
    if bad.any():
        i = np.unravel_index(np.argmax(np.where(bad, err / np.broadcast_to(tol, err.shape), 0.0)), err.shape)
        raise AssertionError(
            f"{err_msg}: {int(bad.sum())} of {bad.size} gradient entries differ beyond rtol={rtol:g} of "
            f"their row's scale; worst at {i}: actual {a[i]!r}, expected {e[i]!r}, "
            f"|diff| {err[i]:.3g} > tol {np.broadcast_to(tol, err.shape)[i]:.3g}")


@contextlib.contextmanager
def imported_example(path, name):
    """An example script (examples/*.py) imported as the module ``name`` for the duration: it
    is in sys.modules meanwhile (dataclasses resolve the module's annotations through it)."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(name, None)
