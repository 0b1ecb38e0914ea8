"""nll_loss / nll_loss_with_grad: fast path vs the NumPy twin on every SIMD path and layout,
the twin vs torch (values and autograd gradients), bad inputs, finite differences, thread
determinism, in-place and out= semantics."""
import numpy as np
import pytest

import fastloss
from conftest import assert_grad_close
from fastloss import _nll_loss as fl
from fastloss._plan import ran
from fastloss import reference as ref

TOL = {np.float16: dict(rtol=4e-3, atol=1e-4), np.float32: dict(rtol=1e-5, atol=1e-6),
       np.float64: dict(rtol=1e-12, atol=1e-12)}


def lay(x, kind):
    if kind == "C":
        return np.array(x, order="C")
    if kind == "F":
        return np.array(x, order="F")
    if kind == "strided":
        big = np.full(tuple(2 * n for n in x.shape), np.nan, dtype=x.dtype)
        v = big[tuple(slice(None, None, 2) for _ in x.shape) + (Ellipsis,)]
        v[...] = x
        return v
    if kind == "bigendian":
        return x.astype(x.dtype.newbyteorder(">"))
    raise AssertionError(kind)


def _problem(seed, shape, dtype, ignore_frac=0.3):
    rng = np.random.default_rng(seed)
    x = np.asarray(rng.standard_normal(shape).astype(dtype))
    C = shape[0] if len(shape) == 1 else shape[1]
    b = () if len(shape) == 1 else shape[:1] + shape[2:]
    t = rng.integers(0, max(C, 1), b)
    t = np.asarray(np.where(rng.random(b) < ignore_frac, -100, t))
    if C == 0:
        t[...] = -100
    w = rng.random(C).astype(dtype)
    return x, t, w


SHAPES = [(7,), (5, 7), (4, 6, 3), (3, 5, 2, 2), (0, 4), (3, 0), (40, 3)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("layout", ["C", "F", "strided", "bigendian"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fast_matches_reference(simd, dtype, shape, layout, reduction, weighted):
    x, t, w = _problem(len(shape), shape, dtype)
    w = w if weighted else None
    go = np.linspace(0.5, 2.0, t.size).reshape(t.shape) if reduction == "none" else 1.5
    L, G = fl.nll_loss_with_grad(lay(x, layout), t, w, reduction=reduction, grad_output=go)
    RL, RG = ref.nll_loss_with_grad(x, t, w, reduction=reduction, grad_output=go)
    np.testing.assert_allclose(np.float64(L) if reduction != "none" else L.astype(np.float64),
                               np.asarray(RL, dtype=np.float64), equal_nan=True, **TOL[dtype])
    # the gradient scaled per position (class axis), not by an atol above a mean's entries
    assert_grad_close(G, RG, TOL[dtype]["rtol"], axis=1 if x.ndim >= 2 else None, dtype=dtype, err_msg="grad")
    assert G.shape == x.shape and G.dtype == x.dtype
    L2 = fl.nll_loss(lay(x, layout), t, w, reduction=reduction)
    assert np.asarray(L2).tobytes() == np.asarray(L).tobytes()
    if reduction != "none":
        assert isinstance(L, np.generic) and L.dtype == x.dtype


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(5, 7), (4, 6, 3), (7,), (0, 3)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("case", ["plain", "weighted", "all_ignored", "edge"])
def test_reference_and_fast_match_torch(torch, dtype, shape, reduction, case):
    F = torch.nn.functional
    x, t, w = _problem(3, shape, dtype, 1.0 if case == "all_ignored" else 0.3)
    if case == "edge" and x.size:
        x.reshape(-1)[0::3] = -np.inf
        x.reshape(-1)[1::3] = np.nan
    w = w if case == "weighted" else None
    xt = torch.from_numpy(x.copy()).requires_grad_()
    loss = F.nll_loss(xt, torch.from_numpy(t.astype(np.int64)), None if w is None else torch.from_numpy(w),
                      reduction=reduction)
    if loss.numel():
        loss.sum().backward()
    tol = TOL[dtype]
    for mod in (fl, ref):
        L, G = mod.nll_loss_with_grad(x, t, w, reduction=reduction)
        np.testing.assert_allclose(np.asarray(L, dtype=np.float64), loss.detach().numpy(), equal_nan=True, **tol)
        if loss.numel():
            np.testing.assert_allclose(G, xt.grad.numpy(), equal_nan=True, **tol)


def test_gradient_matches_finite_differences():
    x, t, w = _problem(8, (4, 5, 2), np.float64)
    for red in ("mean", "sum"):
        _, G = fl.nll_loss_with_grad(x, t, w, reduction=red)
        num = np.zeros_like(x)
        for idx in np.ndindex(x.shape):
            xp, xm = x.copy(), x.copy()
            xp[idx] += 1e-6
            xm[idx] -= 1e-6
            num[idx] = (fl.nll_loss(xp, t, w, reduction=red) - fl.nll_loss(xm, t, w, reduction=red)) / 2e-6
        np.testing.assert_allclose(G, num, rtol=1e-6, atol=1e-8)


BAD = [
    (lambda m: m.nll_loss(np.zeros((3, 4)), np.zeros(3)), TypeError),
    (lambda m: m.nll_loss(np.zeros((3, 4)), np.array([0, 1, 4])), IndexError),
    (lambda m: m.nll_loss(np.zeros((3, 4)), np.array([0, 1, -1])), IndexError),
    (lambda m: m.nll_loss(np.zeros((3, 4)), np.array([0, 1])), ValueError),
    (lambda m: m.nll_loss(np.zeros((3, 4, 2)), np.zeros((3, 3), np.int64)), ValueError),
    (lambda m: m.nll_loss(np.zeros((3, 4)), np.zeros(3, np.int64), weight=np.ones(3)), ValueError),
    (lambda m: m.nll_loss(np.zeros(()), np.zeros((), np.int64)), ValueError),
    (lambda m: m.nll_loss(np.zeros((3, 4)), np.zeros(3, np.int64), reduction="avg"), ValueError),
    (lambda m: m.nll_loss(np.zeros((3, 4), np.int32), np.zeros(3, np.int64)), TypeError),
    (lambda m: m.nll_loss(np.zeros(4), np.zeros(2, np.int64)), ValueError),
    (lambda m: m.nll_loss_with_grad(np.zeros((3, 4)), np.zeros(3, np.int64), out=np.zeros((4, 3))), ValueError),
]


@pytest.mark.parametrize("case", range(len(BAD)))
def test_both_raise_the_same(case):
    call, exc = BAD[case]
    with pytest.raises(exc):
        call(fl)
    with pytest.raises(exc):
        call(ref)


def test_torch_rejects_float_targets(torch):
    with pytest.raises(RuntimeError):
        torch.nn.functional.nll_loss(torch.zeros(3, 4), torch.zeros(3))
    with pytest.raises(IndexError, match="Target 4 is out of bounds."):
        fl.nll_loss(np.zeros((3, 4)), np.array([0, 4, 1]))


def test_bad_target_writes_nothing():
    x = np.ones((3, 4))
    out = np.full((3, 4), 7.0)
    with pytest.raises(IndexError):
        fl.nll_loss_with_grad(x, np.array([0, 1, 9]), out=out)
    assert (out == 7.0).all() and (x == 1.0).all()


@pytest.mark.parametrize("layout", ["C", "F", "strided"])
def test_in_place_and_out(simd, layout):
    x, t, w = _problem(2, (9, 6, 3), np.float32)
    L0, G0 = ref.nll_loss_with_grad(x, t, w)
    a = lay(x, layout)
    L, G = fl.nll_loss_with_grad(a, t, w, out=a)
    assert G is a
    np.testing.assert_allclose(G, G0, **TOL[np.float32])
    np.testing.assert_allclose(L, L0, **TOL[np.float32])
    o = lay(np.zeros_like(x), "F" if layout == "C" else "C")
    _, G = fl.nll_loss_with_grad(lay(x, layout), t, w, out=o)
    assert G is o
    np.testing.assert_allclose(o, G0, **TOL[np.float32])
    with pytest.raises(ValueError):
        fl.nll_loss_with_grad(x[:, :5], t, out=x[:, 1:])


def test_inputs_unchanged(simd):
    x, t, w = _problem(4, (6, 5), np.float32)
    xc, tc, wc = x.copy(), t.copy(), w.copy()
    fl.nll_loss_with_grad(x, t, w)
    assert np.array_equal(x, xc) and np.array_equal(t, tc) and np.array_equal(w, wc)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(500, 1000), (40000, 3), (16, 50, 100)])
def test_threads_bitwise_identical(dtype, shape):
    x, t, w = _problem(5, shape, dtype)
    before = fastloss.get_num_threads()
    try:
        fastloss.set_num_threads(1)
        (l1, g1), s1 = ran(fastloss.nll_loss_with_grad, x, t, w, reduction="sum")
        fastloss.set_num_threads(2)
        (l2, g2), s2 = ran(fastloss.nll_loss_with_grad, x, t, w, reduction="sum")
        l3 = fl.nll_loss(x, t, w, reduction="sum")
    finally:
        fastloss.set_num_threads(before)
    assert s1["threads_used"] == 1 and s1["threads_active"] == 1
    if fastloss.kernel_info().get("openmp"):
        assert s2["threads_used"] == 2  # the team
        assert 1 <= s2["threads_active"] <= 2
    assert l1.tobytes() == l2.tobytes() == l3.tobytes() and g1.tobytes() == g2.tobytes()
