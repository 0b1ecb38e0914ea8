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


COMPILED = ["_binary", "_cross_entropy", "_nll_loss", "_regression", "_runtime", "_softmax", "_validation"]


def test_import_does_not_import_threadpoolctl():
    """threadpoolctl is optional: fastloss registers with it when it is imported (see
    fastloss/_threadpool.py), never imports it."""
    code = "import sys, fastloss; print('threadpoolctl' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(fastloss.__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("name", COMPILED)
def test_every_function_of_a_compiled_module_has_a_stub(name):
    """Each compiled module's functions and classes (private ones included) are in its .pyi
    (whose signatures .ci/stubs checks against the module with mypy.stubtest)."""
    import ast
    import importlib
    from pathlib import Path

    module = importlib.import_module(f"fastloss.{name}")
    stub = Path(module.__file__).with_name(name + ".pyi")
    tree = ast.parse(stub.read_text())
    stubbed = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.ClassDef))}
    defined = {k for k, v in vars(module).items()
               if callable(v) and getattr(v, "__module__", None) == module.__name__}
    assert defined - stubbed == set(), f"{stub} lacks {sorted(defined - stubbed)}"
    assert stubbed - defined == set(), f"{stub} has {sorted(stubbed - defined)}, which {name} does not define"


def test_every_public_name_is_typed():
    """Every name of fastloss.__all__ comes from a compiled module that has a stub (above)
    or from a Python module."""
    import importlib

    for name in sorted(set(fastloss.__all__) - {"__version__"}):
        value = getattr(fastloss, name)
        origin = getattr(value, "__module__", None) or getattr(value, "__name__", "")
        assert origin.startswith("fastloss."), (name, origin)
        assert origin.split(".")[1] in COMPILED or importlib.import_module(origin).__file__.endswith(".py"), name
