"""Shared fixtures.

torch is optional for users but required in CI: with ``CI`` set, a missing torch is a test
failure, never a skip (the parity tests are the specification).
"""
import importlib
import os

import pytest


@pytest.fixture(scope="session")
def torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        if os.environ.get("CI"):
            pytest.fail("CI is set but torch is not installed; .ci/run must install torch==2.13.0")
        pytest.skip("torch is not installed")
