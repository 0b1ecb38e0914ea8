"""The public surface: every loss of the NumPy layer has a reference twin with the same
signature and a formula in its docstring, and `import fastloss` does not import torch."""
import inspect
import re
import subprocess
import sys

import pytest

import fastloss
from fastloss import reference

RUNTIME = {"get_num_threads", "set_num_threads", "kernel_info", "reference", "__version__", "MARGIN_COSINE_EPS"}
LOSSES = sorted(set(fastloss.__all__) - RUNTIME)


def test_every_loss_is_exported_and_has_a_reference_twin():
    assert set(LOSSES) == set(reference.__all__)


@pytest.mark.parametrize("name", LOSSES)
def test_reference_twin_has_the_same_signature(name):
    fast, slow = getattr(fastloss, name), getattr(reference, name)
    assert inspect.signature(fast) == inspect.signature(slow)


# The tokens the formula in each function's Notes section must contain: the quantities of
# that loss (for *_with_grad, the ``grad`` formula and its upstream factor).
FORMULA_TOKENS = {
    "cross_entropy": ["lse = log(sum_k exp(x_k))", "eps = label_smoothing", "w[t] * (lse - x[t])",
                      "eps / C * sum_k w[k] * (lse - x[k])", "y' = (1 - eps) * y + eps / C"],
    "cross_entropy_with_grad": ["p = softmax(x)", "grad[k] = s * (p[k] * A", "(1 - eps) * w[t] * [k == t]",
                                "eps / C * w[k]", "A = (1 - eps) * w[t] + eps / C * sum_j w[j]",
                                "grad[k] = s * (p[k] * sum_j w[j] * y'[j] - w[k] * y'[k])"],
    "margin_cross_entropy": ["z[k] = s * x[k]", "z[t] = s * phi(x[t])", "phi(x) = cos(acos(x) + m)",
                             "phi(x) = x - m sin(pi - m)", "phi(x) = x - m", "cross_entropy(z, target, ...)",
                             "MARGIN_COSINE_EPS = 1e-7"],
    "margin_cross_entropy_with_grad": ["grad[k] = s * G[k]", "grad[t] = s * phi'(x[t]) * G[t]",
                                       "phi'(x) = cos m + x sin m / sqrt(1 - x^2)"],
    "nll_loss": ["loss = -w[t] * input[t]", "ignore_index"],
    "nll_loss_with_grad": ["grad[k] = -s * w[t] * [k == t]", "sum of the kept targets' weights"],
    "binary_cross_entropy": ["loss = -w * (y * max(log(x), -100)",
                             "(1 - y) * max(log1p(-x), -100))"],
    "binary_cross_entropy_with_grad": ["grad = s * w * (x - y) / max((1 - x) * x, eps)", "eps = float32(1e-12)"],
    "binary_cross_entropy_with_logits": ["lw   = (p - 1) * y + 1",
                                         "loss = w * ((1 - y) * x + lw * (log1p(exp(-|x|)) + max(-x, 0)))"],
    "binary_cross_entropy_with_logits_with_grad": ["grad = s * w * (lw * sigmoid(x) - p * y)",
                                                   "lw = (p - 1) * y + 1", "s * w * (sigmoid(x) - y)"],
    "kl_div": ["loss = xlogy(y, y) - y * x", "loss = exp(y) * (y - x)", "log_target"],
    "kl_div_with_grad": ["grad = -s * y", "grad = -s * exp(y)", "batchmean"],
    "mse_loss": ["loss = (x - y) ** 2"],
    "mse_loss_with_grad": ["loss = (x - y) ** 2", "grad = 2 * (x - y) * s"],
    "l1_loss": ["loss = |x - y|"],
    "l1_loss_with_grad": ["loss = |x - y|", "grad = sign(x - y) * s"],
    "smooth_l1_loss": ["z = |x - y|", "0.5 * z ** 2 / beta", "if z < beta", "z - 0.5 * beta"],
    "smooth_l1_loss_with_grad": ["d = x - y", "0.5 * z ** 2 / beta", "z - 0.5 * beta", "grad = s",
                                 "if d > beta", "-s", "if d < -beta", "d / beta * s"],
    "huber_loss": ["z = |x - y|", "0.5 * z ** 2", "if z < delta", "delta * (z - 0.5 * delta)"],
    "huber_loss_with_grad": ["d = x - y", "delta * (z - 0.5 * delta)", "grad = delta * s", "if d > delta",
                             "-delta * s", "if d < -delta", "d * s"],
    "log_softmax": ["m = max_k x[k]", "y[k] = (x[k] - m) - log(sum_j exp(x[j] - m))"],
    "log_softmax_backward": ["grad[k] = g[k] - exp(y[k]) * sum_j g[j]"],
    "softmax": ["m = max_k x[k]", "y[k] = exp(x[k] - m) / sum_j exp(x[j] - m)"],
    "softmax_backward": ["grad[k] = y[k] * (g[k] - sum_j g[j] * y[j])"],
}


def notes_section(doc):
    """The text of the numpydoc ``Notes`` section (up to the next section header), or None."""
    m = re.search(r"^Notes\n-----\n(.*?)(?=^\S[^\n]*\n-{3,}\n|\Z)", doc, re.M | re.S)
    return m.group(1) if m else None


def test_formula_table_covers_every_loss():
    assert set(FORMULA_TOKENS) == set(LOSSES)


def formula_problems(name, doc):
    """What the docstring ``doc`` of ``name`` lacks: a Notes section, or tokens of its
    formula (whitespace-normalized), or for a gradient function a ``grad = `` formula."""
    notes = notes_section(doc)
    if notes is None:
        return ["no Notes section"]
    flat = " ".join(notes.split())
    problems = [tok for tok in FORMULA_TOKENS[name] if " ".join(tok.split()) not in flat]
    if name.endswith(("_with_grad", "_backward")) and not re.search(r"\bgrad(\[k\])? = ", notes):
        problems.append("no grad formula")
    return problems


@pytest.mark.parametrize("name", LOSSES)
def test_docstring_states_the_formula(name):
    """The Notes section states the loss's formula: every token of FORMULA_TOKENS[name]."""
    doc = inspect.getdoc(getattr(fastloss, name)) or ""
    assert formula_problems(name, doc) == [], f"{name}: the Notes formula is incomplete\n{doc}"


@pytest.mark.parametrize("name", LOSSES)
def test_formula_check_rejects_a_removed_formula(name):
    """The check above fails on the real docstring with its formula lines removed (every
    line of Notes holding an ``=``), and with its Notes section renamed."""
    doc = inspect.getdoc(getattr(fastloss, name))
    notes = notes_section(doc)
    without = doc.replace(notes, "\n".join(line for line in notes.splitlines() if "=" not in line))
    assert without != doc
    assert formula_problems(name, without) != []
    assert formula_problems(name, doc.replace("Notes\n-----", "Remarks\n-------")) == ["no Notes section"]


def test_import_does_not_import_torch():
    code = "import sys, fastloss; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(__import__("pathlib").Path(fastloss.__file__).resolve().parents[1]))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


COMPILED = ["_binary", "_cross_entropy", "_half", "_nll_loss", "_regression", "_plan", "_runtime", "_softmax"]


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

    for name in sorted(set(fastloss.__all__) - {"__version__", "MARGIN_COSINE_EPS"}):  # constants: in the stubs
        value = getattr(fastloss, name)
        origin = getattr(value, "__module__", None) or getattr(value, "__name__", "")
        assert origin.startswith("fastloss."), (name, origin)
        assert origin.split(".")[1] in COMPILED or importlib.import_module(origin).__file__.endswith(".py"), name
