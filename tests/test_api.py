"""The public surface: every loss of the NumPy layer has a reference twin with the same
signature and a formula in its docstring, and `import fastloss` does not import torch."""
import inspect
import subprocess
import sys

import pytest

import fastloss
from fastloss import reference

RUNTIME = {"get_num_threads", "set_num_threads", "kernel_info", "reference", "__version__"}
LOSSES = sorted(set(fastloss.__all__) - RUNTIME)


def test_every_loss_is_exported_and_has_a_reference_twin():
    assert set(LOSSES) == set(reference.__all__)


@pytest.mark.parametrize("name", LOSSES)
def test_reference_twin_has_the_same_signature(name):
    fast, slow = getattr(fastloss, name), getattr(reference, name)
    assert inspect.signature(fast) == inspect.signature(slow)


@pytest.mark.parametrize("name", LOSSES)
def test_docstring_states_the_formula(name):
    doc = inspect.getdoc(getattr(fastloss, name)) or ""
    assert len(doc) > 200 and "=" in doc, f"{name}: the docstring should give the formula"


def test_import_does_not_import_torch():
    code = "import sys, fastloss; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(fastloss.__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
