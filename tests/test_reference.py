"""Tests of the pure-NumPy oracle ``fastloss.reference`` against torch.

Values and gradients (torch autograd, float64) must match
``torch.nn.functional.cross_entropy``; the error behaviour maps torch's
rejections to Python exception types.  torch comes from the session fixture
``torch`` in conftest.py (never imported at module level).
"""
import ast
import importlib.util
import math
import warnings
from pathlib import Path

import numpy as np
import pytest


def _load_reference():
    """``fastloss.reference``, or the file loaded by path when the package
    as a whole is not importable yet (e.g. the extension is not built)."""
    try:
        import fastloss.reference as ref
        return ref
    except ImportError:
        path = Path(__file__).resolve().parents[1] / "fastloss" / "reference.py"
        spec = importlib.util.spec_from_file_location("_fastloss_reference_by_path", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module


ref = _load_reference()

INF = math.inf
NAN = math.nan
RTOL = 1e-12
ATOL = 1e-12


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------

def torch_ce(torch, x, target, weight=None, grad_output=None, **kw):
    """(loss, grad) from torch in float64; grad by autograd."""
    xt = torch.tensor(np.asarray(x, dtype=np.float64), requires_grad=True)
    t = np.asarray(target)
    if t.shape == xt.shape:
        tt = torch.tensor(t.astype(np.float64))
    else:
        if xt.ndim == 1:
            t = t.reshape(())  # torch's backward rejects a (1,) target for 1-D input
        tt = torch.tensor(t.astype(np.int64))
    wt = None if weight is None else torch.tensor(np.asarray(weight, dtype=np.float64))
    loss = torch.nn.functional.cross_entropy(xt, tt, weight=wt, **kw)
    if grad_output is None:
        go = torch.ones_like(loss)
    else:
        go = torch.tensor(np.broadcast_to(np.asarray(grad_output, np.float64), loss.shape).copy())
    loss.backward(go)
    return loss.detach().numpy(), xt.grad.numpy()


def assert_close(actual, desired):
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), desired,
                               rtol=RTOL, atol=ATOL, equal_nan=True)


def check_against_torch(torch, x, t, weight=None, grad_output=None, **kw):
    loss, grad = ref.cross_entropy_with_grad(x, t, weight=weight, grad_output=grad_output, **kw)
    tloss, tgrad = torch_ce(torch, x, t, weight=weight, grad_output=grad_output, **kw)
    assert np.shape(loss) == tloss.shape
    assert grad.shape == tgrad.shape
    assert_close(loss, tloss)
    assert_close(grad, tgrad)
    # the loss-only entry point agrees with the loss of the gradient entry point
    assert_close(ref.cross_entropy(x, t, weight=weight, **kw), np.asarray(loss, np.float64))
    return loss, grad


def rand_index_target(rng, n_classes, shape, dtype=np.int64):
    return rng.integers(0, n_classes, size=shape).astype(dtype)


def rand_prob_target(rng, shape, axis):
    y = rng.random(shape)
    return y / y.sum(axis=axis, keepdims=True)


# --------------------------------------------------------------------------
# value and gradient parity: a table of named cases x reductions
# --------------------------------------------------------------------------

def _index_case(in_shape, target_shape=None, *, ignore=(), target_dtype=np.int64,
                weight=False, seed=0, **kw):
    """Random logits of ``in_shape`` with class-index targets; ``ignore`` lists
    flat positions set to ignore_index."""
    def make():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(in_shape) * 2
        n_classes = in_shape[0] if len(in_shape) == 1 else in_shape[1]
        tshape = target_shape
        if tshape is None:
            tshape = () if len(in_shape) == 1 else in_shape[:1] + in_shape[2:]
        t = rand_index_target(rng, max(n_classes, 1), tshape)
        ignore_index = kw.get("ignore_index", -100)
        flat = t.reshape(-1)
        for i in ignore:
            flat[i] = ignore_index
        t = flat.reshape(tshape).astype(target_dtype)
        w = rng.random(n_classes) + 0.5 if weight else None
        return x, t, w, kw
    return make


def _prob_case(in_shape, *, weight=False, seed=0, **kw):
    def make():
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(in_shape) * 2
        axis = 0 if len(in_shape) == 1 else 1
        y = rand_prob_target(rng, in_shape, axis)
        w = rng.random(in_shape[axis]) + 0.5 if weight else None
        return x, y, w, kw
    return make


def _fixed_case(x, t, weight=None, **kw):
    def make():
        return (np.array(x, dtype=np.float64), np.array(t),
                None if weight is None else np.array(weight, np.float64), kw)
    return make


CASES = {
    # shapes
    "1d": _index_case((5,)),
    "1d-target-shape1": _index_case((5,), (1,)),
    "2d": _index_case((4, 5)),
    "3d": _index_case((3, 4, 5)),
    "4d": _index_case((2, 3, 4, 5)),
    "N0": _index_case((0, 5)),
    "N0-3d": _index_case((0, 3, 4)),
    "C1": _index_case((4, 1)),
    "C0-all-ignored": _index_case((3, 0), ignore=(0, 1, 2)),
    "C0-all-ignored-smooth": _index_case((3, 0), ignore=(0, 1, 2), label_smoothing=0.1),
    # weight and ignore_index
    "weight": _index_case((6, 5), weight=True),
    "ignore-some": _index_case((6, 5), ignore=(1, 4)),
    "ignore-all": _index_case((3, 5), ignore=(0, 1, 2)),
    "ignore-all-weight-smooth": _index_case((3, 5), ignore=(0, 1, 2), weight=True,
                                            label_smoothing=0.1),
    "ignore-in-range-class": _index_case((6, 5), ignore=(0, 3), ignore_index=2),
    "ignore-some-weight-3d": _index_case((3, 4, 5), ignore=(0, 7), weight=True),
    "1d-ignored": _index_case((5,), ignore=(0,)),
    "zero-total-weight": _fixed_case([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], [0, 0],
                                     weight=[0.0, 1.0, 1.0]),
    "zero-total-weight-smooth": _fixed_case([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]], [0, 0],
                                            weight=[0.0, 1.0, 1.0], label_smoothing=0.1),
    # label smoothing
    "smooth-0.1": _index_case((6, 5), label_smoothing=0.1),
    "smooth-1.0": _index_case((6, 5), label_smoothing=1.0),
    "smooth-0.1-weight-ignore": _index_case((6, 5), ignore=(2,), weight=True,
                                            label_smoothing=0.1),
    "smooth-1.0-weight-ignore-4d": _index_case((2, 3, 2, 4), ignore=(1, 5), weight=True,
                                               label_smoothing=1.0),
    "smooth-0.1-ignore-noweight": _index_case((6, 5), ignore=(0, 5), label_smoothing=0.1),
    "smooth-1d": _index_case((5,), label_smoothing=0.3, weight=True),
    "smooth-C1": _index_case((4, 1), label_smoothing=0.5),
    # target dtypes (torch itself only takes int64/uint8; it is fed int64)
    "uint8-target": _index_case((6, 5), target_dtype=np.uint8),
    "int32-target": _index_case((6, 5), target_dtype=np.int32),
    "uint64-target": _index_case((2, 5, 3), target_dtype=np.uint64),
    # probability targets
    "prob": _prob_case((4, 5)),
    "prob-weight": _prob_case((4, 5), weight=True),
    "prob-smooth": _prob_case((4, 5), label_smoothing=0.1),
    "prob-weight-smooth": _prob_case((4, 5), weight=True, label_smoothing=0.1),
    "prob-smooth-1.0": _prob_case((4, 5), weight=True, label_smoothing=1.0),
    "prob-1d": _prob_case((5,), weight=True),
    "prob-3d": _prob_case((3, 4, 5)),
    "prob-4d-weight-smooth": _prob_case((2, 3, 4, 2), weight=True, label_smoothing=0.2),
    "prob-negative-ignore-index": _prob_case((4, 5), ignore_index=-1),
    "prob-N0": _prob_case((0, 5)),
    "prob-C0": _prob_case((3, 0)),
    "prob-C1": _prob_case((4, 1), label_smoothing=0.1),
    # edge values
    "neginf-masked-class": _fixed_case([[1.0, -INF, 2.0], [-INF, 0.5, -INF]], [0, 1]),
    "neginf-masked-weight": _fixed_case([[1.0, -INF, 2.0], [-INF, 0.5, -INF]], [2, 1],
                                        weight=[1.0, 2.0, 3.0]),
    "neginf-target-class": _fixed_case([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], [1, 0]),
    "neginf-smooth": _fixed_case([[1.0, -INF, 2.0], [0.0, 1.0, 2.0]], [0, 2],
                                 label_smoothing=0.1),
    "neginf-target-smooth-1.0": _fixed_case([[-INF, 1.0, 2.0]], [0], label_smoothing=1.0),
    "nan-row": _fixed_case([[1.0, NAN, 2.0], [0.0, 1.0, 2.0]], [0, 1]),
    "posinf-row": _fixed_case([[1.0, INF, 2.0], [0.0, 1.0, 2.0]], [0, 1]),
    "posinf-target": _fixed_case([[1.0, INF, 2.0], [0.0, 1.0, 2.0]], [1, 1]),
    "all-neginf-row": _fixed_case([[-INF, -INF, -INF], [0.0, 1.0, 2.0]], [0, 1]),
    "all-neginf-row-smooth": _fixed_case([[-INF, -INF, -INF], [0.0, 1.0, 2.0]], [0, 1],
                                         label_smoothing=0.1),
    "huge-logits": _fixed_case([[1e300, -1e300, 0.0], [700.0, 800.0, -800.0]], [1, 0]),
    "prob-neginf-zero-target": _fixed_case([[1.0, -INF, 3.0], [0.0, 1.0, 2.0]],
                                           [[0.2, 0.0, 0.8], [0.1, 0.2, 0.7]]),
    "prob-neginf-smooth": _fixed_case([[1.0, -INF, 3.0], [0.0, 1.0, 2.0]],
                                      [[0.2, 0.0, 0.8], [0.1, 0.2, 0.7]], label_smoothing=0.1),
    "prob-nan-row": _fixed_case([[1.0, NAN, 3.0], [0.0, 1.0, 2.0]],
                                [[0.2, 0.3, 0.5], [0.1, 0.2, 0.7]], weight=[1.0, 0.5, 2.0]),
}


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_matches_torch(torch, case, reduction):
    x, t, w, kw = CASES[case]()
    check_against_torch(torch, x, t, weight=w, reduction=reduction, **kw)


# --------------------------------------------------------------------------
# grad_output
# --------------------------------------------------------------------------

@pytest.mark.parametrize("case", ["2d", "4d", "smooth-0.1-weight-ignore", "prob-4d-weight-smooth",
                                  "1d", "ignore-some"])
def test_grad_output_array_for_none(torch, case):
    x, t, w, kw = CASES[case]()
    loss_shape = np.shape(ref.cross_entropy(x, t, weight=w, reduction="none", **kw))
    go = np.random.default_rng(1).standard_normal(loss_shape)
    check_against_torch(torch, x, t, weight=w, grad_output=go, reduction="none", **kw)


def test_grad_output_broadcast_for_none(torch):
    x, t, w, kw = CASES["3d"]()                     # loss shape (3, 5)
    go = np.random.default_rng(2).standard_normal((1, 5))
    check_against_torch(torch, x, t, grad_output=go, reduction="none")
    check_against_torch(torch, x, t, grad_output=-1.5, reduction="none")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("go", [2.5, -3, np.array(0.25), np.float32(4.0)],
                         ids=["float", "int", "0d-array", "np.float32"])
@pytest.mark.parametrize("case", ["smooth-0.1-weight-ignore", "prob-weight-smooth"])
def test_grad_output_scalar(torch, case, go, reduction):
    x, t, w, kw = CASES[case]()
    check_against_torch(torch, x, t, weight=w, grad_output=go, reduction=reduction, **kw)


@pytest.mark.parametrize("reduction,go", [
    ("mean", np.ones(1)),
    ("sum", np.ones((4,))),
    ("none", np.ones(3)),          # loss shape is (4,)
    ("none", np.ones((2, 4))),
])
def test_grad_output_bad_shape(reduction, go):
    x, t, _, _ = CASES["2d"]()                      # (4, 5) -> loss (4,)
    with pytest.raises(ValueError):
        ref.cross_entropy_with_grad(x, t, reduction=reduction, grad_output=go)


def test_grad_output_bad_type():
    x, t, _, _ = CASES["2d"]()
    with pytest.raises(TypeError):
        ref.cross_entropy_with_grad(x, t, grad_output=1j)


# --------------------------------------------------------------------------
# ignored positions: torch's 0 * softmax (NaN along a row whose softmax is NaN)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("eps", [0.0, 0.1], ids=["eps0", "eps0.1"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_ignored_row_gradient_is_torchs(torch, reduction, eps):
    x = np.array([[1.0, NAN, 2.0], [0.0, 1.0, 2.0], [INF, 0.0, -INF], [3.0, 1.0, 0.5],
                  [-INF, 0.0, 1.0], [-INF, -INF, -INF]])
    t = np.array([-100, 2, -100, 0, -100, -100])
    loss, grad = ref.cross_entropy_with_grad(x, t, reduction=reduction, label_smoothing=eps)
    tloss, tgrad = torch_ce(torch, x, t, reduction=reduction, label_smoothing=eps)
    assert_close(loss, tloss)
    assert_close(grad, tgrad)
    ignored = t == -100
    assert np.isnan(grad[[0, 2, 5]]).all()          # NaN, +inf, all -inf: softmax is NaN
    assert np.array_equal(grad[4], np.zeros(3))     # finite softmax: exactly 0
    assert np.isnan(tgrad[ignored]).sum() == 9


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("eps", [1e-300, 1e-44, 0.25], ids=["underflows", "subnormal", "eps0.25"])
def test_prob_smoothing_in_compute_dtype(torch, dtype, eps):
    """torch smooths probability targets in their compute dtype: in float32, eps / C = 5e-301
    is 0 and the row with a -inf logit and a 0 target gives 0 * -inf = NaN; in float64 (and
    for a subnormal float32 eps / C) it gives +inf. The reference and the kernels agree."""
    import fastloss
    x = np.array([[-INF, 0.0], [1.0, 2.0]], dtype=dtype)
    y = np.array([[0.0, 1.0], [0.25, 0.75]], dtype=dtype)
    ct = torch.float64 if dtype == np.float64 else torch.float32
    xt = torch.tensor(x.astype(np.float64), dtype=ct)
    want = torch.nn.functional.cross_entropy(xt, torch.tensor(y.astype(np.float64), dtype=ct),
                                             reduction="none", label_smoothing=eps).double().numpy()
    assert np.isnan(want[0]) == (dtype != np.float64 and eps == 1e-300)
    for got in (ref.cross_entropy(x, y, reduction="none", label_smoothing=eps),
                fastloss.cross_entropy(x, y, reduction="none", label_smoothing=eps)):
        tol = 1e-12 if dtype == np.float64 else np.finfo(dtype).eps * 4
        np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=tol, atol=0, equal_nan=True)


# --------------------------------------------------------------------------
# errors that torch also raises
# --------------------------------------------------------------------------

def _torch_message(torch, x, t):
    with pytest.raises(Exception) as info:
        torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t))
    return str(info.value)


@pytest.mark.parametrize("x_shape,t", [
    ((2, 5), [0, 5]),
    ((2, 5), [-1, 0]),
    ((2, 5), [0, 2**40]),
    ((6, 3), [0, 0, 9, 0, -5, 0]),          # first offending value in C order
    ((2, 3, 4), [[0, 0, 0, 0], [0, 0, 7, -2]]),
    ((1, 3, 2, 2), [[[0, 1], [-7, 3]]]),
    ((4,), 4),
], ids=["C", "negative", "2**40", "first-of-two", "3d", "4d", "1d"])
def test_out_of_bounds_target_message_matches_torch(torch, x_shape, t):
    x = np.zeros(x_shape)
    t = np.array(t, dtype=np.int64)
    message = _torch_message(torch, x, t)
    with pytest.raises(IndexError) as info:
        ref.cross_entropy(x, t)
    assert str(info.value) == message
    with pytest.raises(IndexError):
        ref.cross_entropy_with_grad(x, t)


def test_out_of_bounds_uint64_reports_unsigned_value():
    t = np.array([1, 2**64 - 1], dtype=np.uint64)
    with pytest.raises(IndexError, match=r"^Target 18446744073709551615 is out of bounds\.$"):
        ref.cross_entropy(np.zeros((2, 3)), t)
    with pytest.raises(IndexError, match=r"^Target 300 is out of bounds\.$"):
        ref.cross_entropy(np.zeros((2, 3)), np.array([300, 1], np.uint16))


_X = np.zeros((2, 3))
_T = np.array([0, 1])

TORCH_ALSO_REJECTS = {
    "target-batch-mismatch": (ValueError, (_X, np.array([0, 1, 2])), {}),
    "target-kdim-mismatch": (ValueError, (np.zeros((2, 3, 4)), np.zeros((2, 5), np.int64)), {}),
    "target-kdim-missing-dims": (ValueError, (np.zeros((2, 3, 4)), np.zeros(2, np.int64)), {}),
    "1d-input-target-shape2": (ValueError, (np.zeros(3), np.array([0, 1])), {}),
    "reduction": (ValueError, (_X, _T), {"reduction": "avg"}),
    "weight-length": (ValueError, (_X, _T), {"weight": np.ones(2)}),
    "weight-2d": (ValueError, (_X, _T), {"weight": np.ones((1, 3))}),
    "label-smoothing>1": (ValueError, (_X, _T), {"label_smoothing": 1.5}),
    "float-index-target": (TypeError, (_X, np.array([0.0, 1.0])), {}),
    "int-prob-target": (TypeError, (_X, np.zeros((2, 3), np.int64)), {}),
    "prob-target-ignore-index": (ValueError, (_X, np.full((2, 3), 1 / 3)), {"ignore_index": 0}),
    "0d-input": (ValueError, (np.array(1.0), np.array(0)), {}),
    "int-input": (TypeError, (np.zeros((2, 3), np.int64), _T), {}),
}


@pytest.mark.parametrize("name", list(TORCH_ALSO_REJECTS), ids=list(TORCH_ALSO_REJECTS))
def test_errors_torch_also_rejects(torch, name):
    exc, (x, t), kw = TORCH_ALSO_REJECTS[name]
    tkw = dict(kw)
    if "weight" in tkw:
        tkw["weight"] = torch.tensor(tkw["weight"])
    with pytest.raises((RuntimeError, ValueError, IndexError, TypeError)):
        torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t), **tkw)
    with pytest.raises(exc):
        ref.cross_entropy(x, t, **kw)
    with pytest.raises(exc):
        ref.cross_entropy_with_grad(x, t, **kw)


def test_prob_target_ignore_index_message():
    with pytest.raises(ValueError, match="^ignore_index is not supported for probability targets$"):
        ref.cross_entropy(_X, np.full((2, 3), 1 / 3), ignore_index=5)


# --------------------------------------------------------------------------
# errors of the NumPy layer only (torch is more lenient or has no analogue)
# --------------------------------------------------------------------------

REFERENCE_REJECTS = {
    # torch accepts negative label_smoothing; the numpy layer does not
    "label-smoothing-negative": (ValueError, (_X, _T), {"label_smoothing": -0.1}),
    "label-smoothing-nan": (ValueError, (_X, _T), {"label_smoothing": NAN}),
    "label-smoothing-str": (TypeError, (_X, _T), {"label_smoothing": "0.1"}),
    "label-smoothing-none": (TypeError, (_X, _T), {"label_smoothing": None}),
    "ignore-index-float": (TypeError, (_X, _T), {"ignore_index": 1.0}),
    "ignore-index-bool": (TypeError, (_X, _T), {"ignore_index": True}),
    "ignore-index-str": (TypeError, (_X, _T), {"ignore_index": "-100"}),
    "reduction-none-object": (ValueError, (_X, _T), {"reduction": None}),
    "bool-input": (TypeError, (np.zeros((2, 3), bool), _T), {}),
    "complex-input": (TypeError, (np.zeros((2, 3), complex), _T), {}),
    "object-input": (TypeError, (np.zeros((2, 3), object), _T), {}),
    "int-list-input": (TypeError, ([[1, 2, 3], [4, 5, 6]], _T), {}),
    "bool-target": (TypeError, (_X, np.array([True, False])), {}),
    "complex-target": (TypeError, (_X, np.array([0j, 1j])), {}),
    "object-target": (TypeError, (_X, np.array([0, 1], object)), {}),
    "bool-weight": (TypeError, (_X, _T), {"weight": np.ones(3, bool)}),
    "complex-weight": (TypeError, (_X, _T), {"weight": np.ones(3, complex)}),
    "object-weight": (TypeError, (_X, _T), {"weight": np.ones(3, object)}),
    "1d-target-2d-shape": (ValueError, (np.zeros(3), np.zeros((1, 1), np.int64)), {}),
}


@pytest.mark.parametrize("name", list(REFERENCE_REJECTS), ids=list(REFERENCE_REJECTS))
def test_errors_reference_only(name):
    exc, (x, t), kw = REFERENCE_REJECTS[name]
    with pytest.raises(exc):
        ref.cross_entropy(x, t, **kw)
    with pytest.raises(exc):
        ref.cross_entropy_with_grad(x, t, **kw)


def test_accepted_option_types(torch):
    x, t, w, _ = CASES["weight"]()
    expected = ref.cross_entropy(x, t, weight=w, ignore_index=-100, label_smoothing=0.25)
    assert_close(ref.cross_entropy(x, t, weight=w, ignore_index=np.int8(-100),
                                   label_smoothing=np.float64(0.25)), expected)
    assert_close(ref.cross_entropy(x, t, weight=w, label_smoothing=0.25,
                                   ignore_index=np.uint8(200)), expected)
    # integer weights (torch wants the input's dtype) and integer label_smoothing
    tloss, _ = torch_ce(torch, x, t, weight=[1.0, 2.0, 3.0, 1.0, 2.0], label_smoothing=1.0)
    assert_close(ref.cross_entropy(x, t, weight=np.array([1, 2, 3, 1, 2], np.uint8),
                                   label_smoothing=1), tloss)


# --------------------------------------------------------------------------
# dtypes, return types, array-likes
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_return_types(dtype):
    x, t, w, _ = CASES["smooth-0.1-weight-ignore"]()
    x = x.astype(dtype)
    for reduction in ("mean", "sum"):
        loss = ref.cross_entropy(x, t, weight=w, reduction=reduction)
        assert type(loss) is dtype
        loss, grad = ref.cross_entropy_with_grad(x, t, weight=w, reduction=reduction)
        assert type(loss) is dtype
        assert grad.dtype == dtype and grad.shape == x.shape
    loss = ref.cross_entropy(x, t, weight=w, reduction="none")
    assert isinstance(loss, np.ndarray) and loss.dtype == dtype and loss.shape == (6,)
    # 1-D input, reduction none -> 0-d ndarray
    loss = ref.cross_entropy(x[0], t[1], reduction="none")
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == dtype


def test_float32_returns_np_float32_scalar():
    x = np.array([[1.0, 2.0, 3.0]], np.float32)
    loss = ref.cross_entropy(x, np.array([2]))
    assert type(loss) is np.float32
    assert loss == np.float32(-np.log(np.exp(3.0) / (np.exp(1.0) + np.exp(2.0) + np.exp(3.0))))


@pytest.mark.parametrize("reduction", ["none", "mean"])
def test_float16_accepted(torch, reduction):
    x, t, w, _ = CASES["smooth-0.1-weight-ignore"]()
    x16 = x.astype(np.float16)
    loss, grad = ref.cross_entropy_with_grad(x16, t, weight=w, reduction=reduction,
                                             label_smoothing=0.1)
    assert grad.dtype == np.float16 and np.asarray(loss).dtype == np.float16
    # the float16 values are computed in float64 and rounded once
    tloss, tgrad = torch_ce(torch, x16.astype(np.float64), t, weight=w, reduction=reduction,
                            label_smoothing=0.1)
    np.testing.assert_allclose(np.asarray(loss, np.float64), tloss, rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(grad.astype(np.float64), tgrad, rtol=1e-3, atol=1e-4)


def test_array_likes_accepted(torch):
    x = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    loss, grad = ref.cross_entropy_with_grad(x, [2, 0], weight=[1, 2, 3], label_smoothing=0.2)
    tloss, tgrad = torch_ce(torch, x, [2, 0], weight=[1.0, 2.0, 3.0], label_smoothing=0.2)
    assert_close(loss, tloss)
    assert_close(grad, tgrad)
    prob = [[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]]
    assert_close(ref.cross_entropy(x, prob), torch_ce(torch, x, prob)[0])


def test_non_contiguous_arguments(torch):
    rng = np.random.default_rng(5)
    x = np.asfortranarray(rng.standard_normal((4, 6, 3)))[:, ::2, :]      # (4, 3, 3)
    t = rng.integers(0, 3, (3, 4)).T                                       # (4, 3)
    w = np.array([1.0, 9.0, 2.0, 9.0, 3.0])[::2]
    for reduction in ("none", "mean"):
        check_against_torch(torch, x, t, weight=w, reduction=reduction, label_smoothing=0.1)


# --------------------------------------------------------------------------
# out= and non-modification
# --------------------------------------------------------------------------

def test_inputs_not_modified():
    x, t, w, _ = CASES["smooth-0.1-weight-ignore"]()
    xs, ts, ws = x.copy(), t.copy(), w.copy()
    ref.cross_entropy_with_grad(x, t, weight=w, label_smoothing=0.1, reduction="none",
                                grad_output=np.arange(6.0))
    ref.cross_entropy(x, t, weight=w)
    assert np.array_equal(x, xs) and np.array_equal(t, ts) and np.array_equal(w, ws)
    x, y, w, _ = CASES["prob-weight-smooth"]()
    xs, ys = x.copy(), y.copy()
    ref.cross_entropy_with_grad(x, y, weight=w, label_smoothing=0.1)
    assert np.array_equal(x, xs) and np.array_equal(y, ys)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out_is_written(dtype):
    x, t, w, _ = CASES["4d"]()
    x = x.astype(dtype)
    expected_loss, expected = ref.cross_entropy_with_grad(x, t)
    out = np.full_like(x, 123.0)
    loss, grad = ref.cross_entropy_with_grad(x, t, out=out)
    assert grad is out and np.shares_memory(grad, out)
    assert np.array_equal(out, expected) and loss == expected_loss
    # a non-contiguous out
    buf = np.zeros((2, 6, 4, 5), dtype)
    out = buf[:, ::2]
    loss, grad = ref.cross_entropy_with_grad(x, t, out=out)
    assert grad is out and np.array_equal(out, expected)
    assert np.array_equal(buf[:, 1::2], np.zeros_like(buf[:, 1::2]))


@pytest.mark.parametrize("kind", ["index", "prob"])
def test_out_is_input_in_place(kind):
    case = "smooth-0.1-weight-ignore" if kind == "index" else "prob-weight-smooth"
    x, t, w, kw = CASES[case]()
    expected_loss, expected = ref.cross_entropy_with_grad(x, t, weight=w, **kw)
    loss, grad = ref.cross_entropy_with_grad(x, t, weight=w, out=x, **kw)
    assert grad is x
    assert loss == expected_loss and np.array_equal(x, expected)
    # a different view object over exactly the same memory is also "the input"
    x, t, w, kw = CASES[case]()
    view = x.view()
    loss, grad = ref.cross_entropy_with_grad(x, t, weight=w, out=view, **kw)
    assert grad is view and np.array_equal(x, expected)


def test_out_partial_overlap_raises():
    x, t, _, _ = CASES["2d"]()                      # (4, 5)
    buf = np.arange(25.0)
    xin = buf[:20].reshape(4, 5)
    xin[...] = x
    saved = buf.copy()
    with pytest.raises(ValueError):
        ref.cross_entropy_with_grad(xin, t, out=buf[5:].reshape(4, 5))
    with pytest.raises(ValueError):                 # same memory, different strides
        ref.cross_entropy_with_grad(xin, t, out=xin[::-1])
    assert np.array_equal(buf, saved)


def test_out_overlapping_target_or_weight_raises():
    x, y, w, _ = CASES["prob-weight"]()             # (4, 5)
    y_saved = y.copy()
    with pytest.raises(ValueError):
        ref.cross_entropy_with_grad(x, y, out=y)
    assert np.array_equal(y, y_saved)
    # out is the input but the weight lives inside it
    x2 = x.copy()
    with pytest.raises(ValueError):
        ref.cross_entropy_with_grad(x2, y, weight=x2[0], out=x2)
    assert np.array_equal(x2, x)


def test_out_validation():
    x, t, _, _ = CASES["2d"]()
    with pytest.raises(ValueError):
        ref.cross_entropy_with_grad(x, t, out=np.empty((5, 4)))
    with pytest.raises(TypeError):
        ref.cross_entropy_with_grad(x, t, out=np.empty((4, 5), np.float32))
    ro = np.empty((4, 5))
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        ref.cross_entropy_with_grad(x, t, out=ro)
    with pytest.raises(TypeError):
        ref.cross_entropy_with_grad(x, t, out=x.tolist())


def test_nothing_written_when_a_target_is_invalid():
    x, t, _, _ = CASES["2d"]()
    t = t.copy()
    t[-1] = 99                                      # the last target is out of range
    out = np.full_like(x, 7.0)
    with pytest.raises(IndexError):
        ref.cross_entropy_with_grad(x, t, out=out)
    assert (out == 7.0).all()
    x_saved = x.copy()
    with pytest.raises(IndexError):
        ref.cross_entropy_with_grad(x, t, out=x)
    assert np.array_equal(x, x_saved)


# --------------------------------------------------------------------------
# the oracle is independent of the fast path
# --------------------------------------------------------------------------

def test_reference_imports_neither_fastloss_nor_torch():
    source = (Path(__file__).resolve().parents[1] / "fastloss" / "reference.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add("." if node.level else node.module.split(".")[0])
    assert not imported & {"fastloss", "torch", "."}, imported
    assert imported <= {"numbers", "numpy", "warnings"}, imported  # the stdlib and numpy only


# --------------------------------------------------------------------------
# bfloat16: the rounding helper, torch parity, ml_dtypes and BF16_BITS input
# --------------------------------------------------------------------------

# fastloss._plan.BF16_BITS, spelled out (this file must not need the extension)
BF16_BITS = np.dtype(np.uint16, metadata={"fastloss": "bfloat16"})
_BF16_MAX = (2.0 - 2.0 ** -7) * 2.0 ** 127


def _bf16_probe_values():
    """float64 values probing float64 -> bfloat16 rounding, both signs: every finite bfloat16
    value, every tie between neighbours (including the one above the largest, which rounds to
    inf), the float64 neighbours of each tie, values within 2**-40 of a tie (which a plain
    float64 -> float32 -> bfloat16 rounds wrongly), float64 subnormals and values below the
    float32 range, overflow, +-inf, +-0, NaN."""
    bits = np.arange(0, 0x7F80, dtype=np.uint32)              # 0 .. 0x7F7F (largest finite)
    lo = (bits << 16).view(np.float32).astype(np.float64)
    hi = ((bits + 1) << 16).view(np.float32).astype(np.float64)
    hi[-1] = 2.0 ** 128                                        # the step above the largest
    ties = lo + (hi - lo) / 2                                  # exact in float64
    near = [np.nextafter(ties, np.inf), np.nextafter(ties, -np.inf),
            ties * (1 + 2.0 ** -40), ties * (1 - 2.0 ** -40),
            lo + (hi - lo) * 0.25, lo + (hi - lo) * 0.75]
    special = np.array([0.0, 5e-324, 1e-310, 1e-300, 2.0 ** -150, 2.0 ** -149, 2.0 ** -134,
                        3 * 2.0 ** -134, 2.0 ** -134 * (1 + 2.0 ** -30), 1e-40,
                        float(np.finfo(np.float32).max), 2.0 ** 128, 1e39, 1e308,
                        float(np.finfo(np.float64).max), np.inf, np.nan])
    v = np.concatenate([lo, ties, *near, special])
    return np.concatenate([v, -v])


def _bf16_nan_canonical(bits, zero_sign=True):
    """bfloat16 bits with every NaN made 0x7FC0 (NaN signs and payloads are not compared),
    and -0 made +0 unless zero_sign."""
    bits = np.asarray(bits, dtype=np.uint16)
    bits = np.where((bits & 0x7FFF) > 0x7F80, np.uint16(0x7FC0), bits)
    return bits if zero_sign else np.where(bits == 0x8000, np.uint16(0), bits)


def test_bf16_rounding_matches_ml_dtypes():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    v = _bf16_probe_values()
    got = ref._bf16_from_f64(v)
    with np.errstate(over="ignore"):
        want = v.astype(ml_dtypes.bfloat16).view(np.uint16)  # correctly rounded from float64
    assert got.dtype == np.uint16 and got.shape == v.shape
    bad = np.flatnonzero(_bf16_nan_canonical(got) != _bf16_nan_canonical(want))
    assert bad.size == 0, [(float.hex(float(v[i])), hex(got[i]), hex(want[i])) for i in bad[:5]]
    # NaN stays a quiet NaN of its sign
    nan = np.isnan(v)
    assert ((got[nan] & 0x7FC0) == 0x7FC0).all()
    assert np.array_equal(got[nan] >> 15, np.signbit(v[nan]).astype(np.uint16))


@pytest.mark.parametrize("value,bits", [
    (1.0, 0x3F80),
    (1 + 2.0 ** -8, 0x3F80),                        # tie: to even
    (1 + 3 * 2.0 ** -8, 0x3F82),                    # tie: to even (up)
    (1 + 2.0 ** -8 + 2.0 ** -30, 0x3F81),           # via nearest float32 this would be a tie
    (np.nextafter(1 + 2.0 ** -8, 2.0), 0x3F81),
    (np.nextafter(1 + 2.0 ** -8, 0.0), 0x3F80),
    (-(1 + 2.0 ** -8 + 2.0 ** -30), 0xBF81),
    (2.0 ** -133, 0x0001),                          # smallest subnormal
    (2.0 ** -134, 0x0000),                          # half of it: tie to even (0)
    (2.0 ** -134 * (1 + 2.0 ** -40), 0x0001),
    (3 * 2.0 ** -134, 0x0002),
    (-(2.0 ** -134), 0x8000),
    (1e-300, 0x0000),
    (-1e-300, 0x8000),
    (_BF16_MAX, 0x7F7F),
    ((2.0 - 2.0 ** -8) * 2.0 ** 127, 0x7F80),       # tie above the largest: inf
    (np.nextafter((2.0 - 2.0 ** -8) * 2.0 ** 127, 0.0), 0x7F7F),
    (float(np.finfo(np.float32).max), 0x7F80),
    (1e300, 0x7F80),
    (-1e300, 0xFF80),
    (INF, 0x7F80),
    (-INF, 0xFF80),
    (0.0, 0x0000),
    (-0.0, 0x8000),
    (NAN, 0x7FC0),
])
def test_bf16_rounding_known_bits(value, bits):
    got = ref._bf16_from_f64(np.float64(value))
    assert got.shape == () and got.dtype == np.uint16
    assert int(got) == bits, (float.hex(float(value)), hex(int(got)), hex(bits))


def test_bf16_decode_round_trips_every_pattern():
    bits = np.arange(0x10000, dtype=np.uint32).astype(np.uint16)
    v = ref._bf16_to_f64(bits)
    assert v.dtype == np.float64
    nan = (bits & 0x7FFF) > 0x7F80
    assert np.array_equal(np.isnan(v), nan)
    assert np.array_equal(ref._bf16_from_f64(v)[~nan], bits[~nan])
    assert np.array_equal(v[~nan], (bits[~nan].astype(np.uint32) << 16).view(np.float32))
    # shapes and layouts are kept
    a = np.arange(24.0).reshape(2, 3, 4)[:, ::2].transpose(2, 0, 1)
    assert np.array_equal(ref._bf16_to_f64(ref._bf16_from_f64(a)), a)


# ---- bfloat16 results are torch's float64 results on the upcast values, rounded once ------

def _bf(a):
    """float64 values as an ml_dtypes bfloat16 array (rounded by ml_dtypes)."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.float64).astype(ml_dtypes.bfloat16)


def _f64(a):
    """A bfloat16 (ml_dtypes) or other real array as float64 values."""
    return np.asarray(a).astype(np.float64)


def assert_bf16_equal(actual, desired64, dtype=None):
    """``actual`` is an ml_dtypes bfloat16 array or scalar (or one of ``dtype``) whose bits are
    those of the float64 ``desired64`` rounded once (NaN: any NaN; the sign of a zero is not
    compared, as in the float64 tests). float64 results (promoted losses) are only compared
    to 1e-13: torch's float64 sums run in another order."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    want_type = ml_dtypes.bfloat16 if dtype is None else dtype
    assert np.asarray(actual).dtype == want_type, np.asarray(actual).dtype
    if want_type == np.float64:
        assert_close(actual, desired64)
        return
    if want_type != ml_dtypes.bfloat16:
        got = np.asarray(actual).astype(np.float64)
        want = np.asarray(desired64, np.float64).astype(want_type).astype(np.float64)
        np.testing.assert_array_equal(got, want)
        return
    got = _bf16_nan_canonical(np.asarray(actual).view(np.uint16), zero_sign=False)
    want = _bf16_nan_canonical(_bf(desired64).view(np.uint16), zero_sign=False)
    assert got.shape == want.shape
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, [(hex(got.flat[i]), hex(want.flat[i])) for i in bad[:5]]


def _bf16_ce_cases():
    rng = np.random.default_rng(11)
    x2 = rng.standard_normal((7, 5)) * 3
    x3 = rng.standard_normal((3, 5, 4)) * 3
    t2 = rng.integers(0, 5, 7)
    t2i = t2.copy()
    t2i[[1, 4]] = -100
    t3 = rng.integers(0, 5, (3, 4))
    t3[0, 2] = 3
    w = rng.random(5) + 0.5
    p2 = rng.random((7, 5))
    p2 /= p2.sum(axis=1, keepdims=True)
    p3 = rng.random((3, 5, 4))
    p3 /= p3.sum(axis=1, keepdims=True)
    return {
        "plain": (x2, t2, None, {}),
        "weight": (x2, t2, w, {}),
        "ignore": (x2, t2i, None, {}),
        "weight-ignore-smooth": (x2, t2i, w, {"label_smoothing": 0.1}),
        "3d-ignore-index-3-smooth": (x3, t3, w, {"ignore_index": 3, "label_smoothing": 0.2}),
        "1d": (x2[0], t2[0], w, {"label_smoothing": 0.05}),
        "prob": (x2, p2, None, {}),
        "prob-weight-3d": (x3, p3, w, {}),
        "neginf": (np.array([[1.0, -INF, 2.0], [0.5, 0.25, -1.0]]), np.array([0, 2]), None, {}),
    }


_BF16_CE = _bf16_ce_cases()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("case", list(_BF16_CE), ids=list(_BF16_CE))
def test_bf16_cross_entropy_matches_torch(torch, case, reduction):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, t, w, kw = _BF16_CE[case]
    xb = _bf(x)
    tb = _bf(t) if np.asarray(t).dtype.kind == "f" else t
    # weights and grad_output as given (float64): the reference rounds them to bfloat16,
    # as torch holds them in the loss's dtype
    loss_shape = np.shape(x)[:1] + np.shape(x)[2:] if np.ndim(x) > 1 else ()
    go = (np.linspace(-1.3, 2.1, int(np.prod(loss_shape))).reshape(loss_shape)
          if reduction == "none" else 0.7)
    loss, grad = ref.cross_entropy_with_grad(xb, tb, weight=w, reduction=reduction,
                                             grad_output=go, **kw)
    tloss, tgrad = torch_ce(torch, _f64(xb), _f64(tb) if tb is not t else t,
                            weight=None if w is None else _f64(_bf(w)),
                            grad_output=_f64(_bf(go)), reduction=reduction, **kw)
    assert_bf16_equal(loss, tloss)
    assert_bf16_equal(grad, tgrad)
    assert grad.shape == x.shape
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.shape == np.shape(tloss)
    else:
        assert type(loss) is ml_dtypes.bfloat16
    assert_bf16_equal(ref.cross_entropy(xb, tb, weight=w, reduction=reduction, **kw), tloss)


def test_bf16_weights_and_grad_output_are_rounded_first(torch):
    """Unrounded operands would give different bits: the test above can fail."""
    x, t, _, _ = _BF16_CE["plain"]
    xb = _bf(x)
    w = np.array([1.01, 0.333, 2.7, 0.9, 1.55])
    loss, grad = ref.cross_entropy_with_grad(xb, t, weight=w, reduction="sum", grad_output=0.7)
    rounded = torch_ce(torch, _f64(xb), t, weight=_f64(_bf(w)), grad_output=_f64(_bf(0.7)),
                       reduction="sum")
    unrounded = torch_ce(torch, _f64(xb), t, weight=w, grad_output=0.7, reduction="sum")
    assert_bf16_equal(loss, rounded[0])
    assert_bf16_equal(grad, rounded[1])
    assert not np.array_equal(_bf(rounded[1]).view(np.uint16), _bf(unrounded[1]).view(np.uint16))


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_bf16_nll_loss_matches_torch(torch, reduction):
    rng = np.random.default_rng(12)
    xb = _bf(rng.standard_normal((6, 4, 3)) * 2)
    t = rng.integers(0, 4, (6, 3))
    t[2, 1] = -100
    w = rng.random(4) + 0.5
    go = np.linspace(-1.0, 1.9, 18).reshape(6, 3) if reduction == "none" else 1.3
    loss, grad = ref.nll_loss_with_grad(xb, t, weight=w, reduction=reduction, grad_output=go)
    xt = torch.tensor(_f64(xb), requires_grad=True)
    tl = torch.nn.functional.nll_loss(xt, torch.tensor(t), weight=torch.tensor(_f64(_bf(w))),
                                      reduction=reduction)
    tl.backward(torch.tensor(_f64(_bf(go))).broadcast_to(tl.shape))
    assert_bf16_equal(loss, tl.detach().numpy())
    assert_bf16_equal(grad, xt.grad.numpy())
    assert_bf16_equal(ref.nll_loss(xb, t, weight=w, reduction=reduction), tl.detach().numpy())


@pytest.mark.parametrize("axis", [-1, 0, 1])
def test_bf16_softmax_and_backward_match_torch(torch, axis):
    rng = np.random.default_rng(13)
    x = rng.standard_normal((3, 6, 5)) * 4
    x[0, 0, :] = -INF
    x[1, 2, 3] = -INF
    xb = _bf(x)
    gb = _bf(rng.standard_normal(x.shape))
    xt, gt = torch.tensor(_f64(xb)), torch.tensor(_f64(gb))
    for name in ("log_softmax", "softmax"):
        y = getattr(ref, name)(xb, axis=axis)
        assert_bf16_equal(y, getattr(torch, name)(xt, axis).numpy())
        # the backward of the bfloat16 output, in float64 on the upcast values
        yt = torch.tensor(_f64(y))
        back = getattr(torch, f"_{name}_backward_data")(gt, yt, axis % 3, torch.float64)
        assert_bf16_equal(getattr(ref, f"{name}_backward")(gb, y, axis=axis), back.numpy())
        # out= of the input's dtype is written
        out = np.empty_like(xb)
        assert getattr(ref, name)(xb, axis=axis, out=out) is out
        assert np.array_equal(out.view(np.uint16), y.view(np.uint16))


def _torch_elementwise(torch, name, x64, t64, reduction, go64, **kw):
    xt = torch.tensor(x64, requires_grad=True)
    kw = {k: (torch.tensor(v) if isinstance(v, np.ndarray) else v) for k, v in kw.items()}
    with warnings.catch_warnings():  # kl_div's reduction="mean" warns
        warnings.simplefilter("ignore", UserWarning)
        loss = getattr(torch.nn.functional, name)(xt, torch.tensor(t64), reduction=reduction, **kw)
    loss.backward(torch.tensor(go64).broadcast_to(loss.shape))
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("name,kw", [
    ("mse_loss", {}),
    ("l1_loss", {}),
    ("smooth_l1_loss", {"beta": 0.5}),
    ("huber_loss", {"delta": 0.7}),
    ("binary_cross_entropy", {"weight": "w"}),
    ("binary_cross_entropy_with_logits", {"weight": "w", "pos_weight": "p"}),
    ("kl_div", {"log_target": False}),
    ("kl_div", {"log_target": True}),
])
def test_bf16_elementwise_losses_match_torch(torch, name, kw, reduction):
    rng = np.random.default_rng(14)
    shape = (5, 6)
    if name == "binary_cross_entropy":
        x, t = rng.random(shape) * 0.98 + 0.01, rng.random(shape)
    elif name == "kl_div":
        x = np.log(rng.random(shape) + 0.01)
        t = np.log(rng.random(shape) + 0.01) if kw["log_target"] else rng.random(shape)
    else:
        x, t = rng.standard_normal(shape) * 2, rng.standard_normal(shape) * 2
    xb, tb = _bf(x), _bf(t)
    raw = {"w": rng.random(shape) + 0.5, "p": rng.random(6) + 0.5}
    kw_ref = {k: raw[v] if isinstance(v, str) else v for k, v in kw.items()}
    kw_torch = {k: _f64(_bf(raw[v])) if isinstance(v, str) else v for k, v in kw.items()}
    go = np.linspace(-1.1, 1.7, 30).reshape(shape) if reduction == "none" else 0.3
    loss, grad = getattr(ref, name + "_with_grad")(xb, tb, reduction=reduction, grad_output=go,
                                                   **kw_ref)
    tloss, tgrad = _torch_elementwise(torch, name, _f64(xb), _f64(tb), reduction,
                                      _f64(_bf(go)), **kw_torch)
    assert_bf16_equal(loss, tloss)
    assert_bf16_equal(grad, tgrad)
    assert_bf16_equal(getattr(ref, name)(xb, tb, reduction=reduction, **kw_ref), tloss)


@pytest.mark.parametrize("x_dtype,t_dtype,loss_dtype", [
    ("bfloat16", np.float16, np.float32),
    ("bfloat16", np.float32, np.float32),
    ("bfloat16", np.float64, np.float64),
    (np.float16, "bfloat16", np.float32),
    (np.float32, "bfloat16", np.float32),
    (np.float64, "bfloat16", np.float64),
    ("bfloat16", "bfloat16", "bfloat16"),
    ("bfloat16", "bits", "bfloat16"),
    ("bfloat16", np.int64, "bfloat16"),
])
def test_bf16_type_promotion(torch, x_dtype, t_dtype, loss_dtype):
    """A floating target of another dtype promotes the loss (float32 among float16, bfloat16
    and float32; float64 with float64); the gradient stays in the input's dtype; both are
    torch's float64 values on the operands' values, rounded once."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    dt = {"bfloat16": np.dtype(ml_dtypes.bfloat16)}

    def cast(a, d):
        if d == "bits":
            return _bf(a).view(np.uint16).view(BF16_BITS)
        return np.asarray(a).astype(dt.get(d, d))

    rng = np.random.default_rng(15)
    x = cast(rng.standard_normal((4, 5)) * 2, x_dtype)
    t = cast(rng.standard_normal((4, 5)) * 2 if t_dtype != np.int64
             else rng.integers(-3, 3, (4, 5)), t_dtype)
    t64 = _f64(_bf(_f64(t.view(ml_dtypes.bfloat16)))) if t_dtype == "bits" else _f64(t)
    want_loss = dt.get(loss_dtype, loss_dtype)
    for reduction in ("none", "mean"):
        loss, grad = ref.mse_loss_with_grad(x, t, reduction=reduction)
        tloss, tgrad = _torch_elementwise(torch, "mse_loss", _f64(x), t64, reduction,
                                          np.float64(1.0))
        assert np.asarray(loss).dtype == want_loss
        assert grad.dtype == x.dtype
        assert_bf16_equal(loss, tloss, np.dtype(want_loss))
        assert_bf16_equal(grad, tgrad, x.dtype)
    if t_dtype != np.int64:   # probability targets of cross_entropy promote the same way
        p = np.abs(t64) / np.abs(t64).sum(axis=1, keepdims=True)
        loss = ref.cross_entropy(x, cast(p, t_dtype) if t_dtype != "bits" else _bf(p).view(np.uint16).view(BF16_BITS))
        assert np.asarray(loss).dtype == want_loss


# ---- BF16_BITS input: the same bits as the ml_dtypes input, returned as BF16_BITS -----------

def _bf16_calls():
    """(name, function of a converter ``c`` of bfloat16 operands to the kind under test)."""
    rng = np.random.default_rng(16)
    x = _bf(rng.standard_normal((4, 5)) * 2)
    x3 = _bf(rng.standard_normal((2, 5, 3)))
    p = _bf(rng.random((4, 5)))
    q = _bf(rng.random((4, 5)) * 0.9 + 0.05)
    t = rng.integers(0, 5, 4)
    t[1] = -100
    w = _bf(rng.random(5) + 0.5)
    go = _bf(rng.standard_normal(4))
    g = _bf(rng.standard_normal((4, 5)))
    y = ref.log_softmax(x)
    s = ref.softmax(x)
    return {
        "cross_entropy": lambda c: ref.cross_entropy(c(x), t, weight=c(w), label_smoothing=0.1),
        "cross_entropy-none": lambda c: ref.cross_entropy(c(x3), t[:2, None].repeat(3, 1) % 5,
                                                          reduction="none"),
        "cross_entropy_with_grad": lambda c: ref.cross_entropy_with_grad(
            c(x), t, weight=c(w), reduction="none", grad_output=c(go)),
        "cross_entropy_with_grad-prob": lambda c: ref.cross_entropy_with_grad(
            c(x), c(p), weight=c(w), reduction="sum", grad_output=c(go[0])),
        "nll_loss": lambda c: ref.nll_loss(c(x), t, weight=c(w), reduction="sum"),
        "nll_loss_with_grad": lambda c: ref.nll_loss_with_grad(c(x), t, weight=c(w),
                                                               reduction="none", grad_output=c(go)),
        "log_softmax": lambda c: ref.log_softmax(c(x3), axis=1),
        "softmax": lambda c: ref.softmax(c(x3), axis=1),
        "log_softmax_backward": lambda c: ref.log_softmax_backward(c(g), c(y)),
        "softmax_backward": lambda c: ref.softmax_backward(c(g), c(s), axis=0),
        "mse_loss": lambda c: ref.mse_loss(c(x), c(p)),
        "mse_loss_with_grad": lambda c: ref.mse_loss_with_grad(c(x), c(p), reduction="none",
                                                               grad_output=c(g)),
        "l1_loss_with_grad": lambda c: ref.l1_loss_with_grad(c(x), c(p), reduction="sum"),
        "smooth_l1_loss_with_grad": lambda c: ref.smooth_l1_loss_with_grad(c(x), c(p), beta=0.3),
        "huber_loss_with_grad": lambda c: ref.huber_loss_with_grad(c(x), c(p), delta=0.6),
        "binary_cross_entropy_with_grad": lambda c: ref.binary_cross_entropy_with_grad(
            c(q), c(p), weight=c(g), reduction="none"),
        "binary_cross_entropy_with_logits_with_grad":
            lambda c: ref.binary_cross_entropy_with_logits_with_grad(
                c(x), c(p), weight=c(q), pos_weight=c(w), grad_output=c(go[1])),
        "kl_div_with_grad": lambda c: ref.kl_div_with_grad(c(y), c(p), reduction="batchmean"),
    }


_BF16_CALLS = _bf16_calls() if importlib.util.find_spec("ml_dtypes") else {}


@pytest.mark.skipif(not _BF16_CALLS, reason="ml_dtypes is not installed")
@pytest.mark.parametrize("name", list(_BF16_CALLS), ids=list(_BF16_CALLS))
def test_bf16_bits_input_matches_ml_dtypes(name):
    import ml_dtypes
    call = _BF16_CALLS[name]
    as_ml = call(lambda a: a)
    as_bits = call(lambda a: np.asarray(a).view(np.uint16).view(BF16_BITS))
    pairs = list(zip(as_ml, as_bits)) if isinstance(as_ml, tuple) else [(as_ml, as_bits)]
    for m, b in pairs:
        if isinstance(m, np.ndarray):
            assert m.dtype == ml_dtypes.bfloat16
        else:
            assert type(m) is ml_dtypes.bfloat16   # a reduced loss: a bfloat16 scalar
        # BF16_BITS results are BF16_BITS arrays (a reduced loss: 0-d) of the same bits
        assert isinstance(b, np.ndarray) and b.dtype == np.uint16
        assert b.dtype.metadata == {"fastloss": "bfloat16"}
        assert b.shape == np.shape(m)
        assert np.array_equal(b.view(np.uint16), np.asarray(m).view(np.uint16)), name


def test_bf16_bits_dtype_of_the_extension_is_recognised():
    plan = pytest.importorskip("fastloss._plan")
    assert plan.BF16_BITS == BF16_BITS and plan.BF16_BITS.metadata == BF16_BITS.metadata
    x = np.array([[0x3F80, 0x4000, 0xBF80]], np.uint16).view(plan.BF16_BITS)  # 1, 2, -1
    loss = ref.cross_entropy(x, np.array([1]))
    want = -(2.0 - np.log(np.exp(1.0) + np.exp(2.0) + np.exp(-1.0)))
    assert loss.shape == () and loss.dtype.metadata == {"fastloss": "bfloat16"}
    assert int(loss.view(np.uint16)) == int(ref._bf16_from_f64(np.float64(want)))


def test_bf16_bits_out_and_errors():
    """out= takes the input's kind of bfloat16; bit patterns are never numbers: a BF16_BITS
    array is not an integer target, an untagged uint16 array is not bfloat16 input."""
    x = ref._bf16_from_f64(np.arange(12.0).reshape(3, 4) / 5).view(BF16_BITS)
    t = np.array([0, 3, 1])
    loss, grad = ref.cross_entropy_with_grad(x, t)
    out = np.zeros(x.shape, BF16_BITS)
    _, got = ref.cross_entropy_with_grad(x, t, out=out)
    assert got is out and np.array_equal(out, grad)
    _, got = ref.cross_entropy_with_grad(x, t, out=x)     # in place
    assert got is x and np.array_equal(x, grad)
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        ref.cross_entropy(x.view(np.uint16).copy().view(np.dtype(np.uint16)), t)
    with pytest.raises(TypeError, match="float16, bfloat16, float32 or float64"):
        ref.softmax(np.arange(3))
    with pytest.raises(TypeError, match="integer"):
        ref.cross_entropy(x, t.astype(np.uint16).view(BF16_BITS))
    with pytest.raises(TypeError, match="integer"):
        ref.nll_loss(x, t.astype(np.uint16).view(BF16_BITS))
    # a BF16_BITS grad_output is its bfloat16 values (0x4000 = 2.0), not 16384
    _, g2 = ref.cross_entropy_with_grad(x, t, reduction="sum",
                                        grad_output=np.array(0x4000, np.uint16).view(BF16_BITS))
    _, g1 = ref.cross_entropy_with_grad(x, t, reduction="sum", grad_output=2.0)
    assert np.array_equal(g1, g2)


def test_bf16_ml_dtypes_out_dtype_checked():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    xb = _bf(np.arange(12.0).reshape(3, 4) / 5)
    t = np.array([0, 3, 1])
    out = np.zeros(xb.shape, ml_dtypes.bfloat16)
    _, grad = ref.cross_entropy_with_grad(xb, t, out=out)
    assert grad is out and out.any()
    with pytest.raises(TypeError):   # the input's dtype: not the other kind of bfloat16
        ref.cross_entropy_with_grad(xb, t, out=np.zeros(xb.shape, BF16_BITS))
    with pytest.raises(TypeError):
        ref.cross_entropy_with_grad(xb.view(np.uint16).view(BF16_BITS), t, out=out)


def test_bf16_bits_work_without_ml_dtypes():
    """The reference never imports ml_dtypes: BF16_BITS input works where it is missing."""
    import subprocess
    import sys
    path = Path(__file__).resolve().parents[1] / "fastloss" / "reference.py"
    code = "\n".join([
        "import sys, importlib.util",
        "sys.modules['ml_dtypes'] = None  # import ml_dtypes now raises ImportError",
        "import numpy as np",
        f"spec = importlib.util.spec_from_file_location('r', {str(path)!r})",
        "ref = importlib.util.module_from_spec(spec); spec.loader.exec_module(ref)",
        "bits = np.dtype(np.uint16, metadata={'fastloss': 'bfloat16'})",
        "x = np.array([[0x3F80, 0x4000, 0xBF80]], np.uint16).view(bits)",
        "loss, grad = ref.cross_entropy_with_grad(x, np.array([1]))",
        "print(int(loss.view(np.uint16)), grad.view(np.uint16).tolist(), grad.dtype.metadata)",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    x = np.array([[0x3F80, 0x4000, 0xBF80]], np.uint16).view(BF16_BITS)
    loss, grad = ref.cross_entropy_with_grad(x, np.array([1]))
    assert done.stdout.split() == (
        f"{int(loss.view(np.uint16))} {grad.view(np.uint16).tolist()} {grad.dtype.metadata}".split())
