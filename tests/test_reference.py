"""Tests of the pure-NumPy oracle ``fastloss.reference`` against torch.

Values and gradients (torch autograd, float64) must match
``torch.nn.functional.cross_entropy``; the error behaviour maps torch's
rejections to Python exception types.  torch comes from the session fixture
``torch`` in conftest.py (never imported at module level).
"""
import ast
import importlib.util
import math
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
