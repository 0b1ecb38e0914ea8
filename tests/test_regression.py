"""Regression losses (mse, l1, smooth_l1, huber): the fast path against its slow NumPy twin,
the twin against torch, and the contract of the NumPy layer.

Same structure as tests/test_cross_entropy.py: every fast result is compared with the oracle
over dtype x shape x memory layout x options under every SIMD path (fixture ``simd``); the
oracle is compared with torch (values and autograd gradients, edge values included); both
raise in the same cases; gradients against finite differences; 1 vs 2 threads give the same
bytes; arguments are never modified; ``out=`` semantics.

Input/target shapes that differ make torch (and fastloss) emit a UserWarning; pytest turns
warnings into errors here, so those tests expect it explicitly.
"""
import contextlib
import math
import warnings
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss
from fastloss import _regression as fl
from fastloss._plan import ran
from fastloss import reference as ref

INF = math.inf
NAN = math.nan

DTYPES = [np.float32, np.float64, np.float16]
REDUCTIONS = ("none", "mean", "sum")
TOL = {
    np.float16: dict(rtol=4e-3, atol=1e-4),
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-12, atol=1e-13),
}
TORCH_TOL = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-12, atol=1e-13),
}

# (name, keyword options): every function, with its parameter at the default and elsewhere
LOSSES = [
    ("mse_loss", {}),
    ("l1_loss", {}),
    ("smooth_l1_loss", {}),
    ("smooth_l1_loss", {"beta": 0.5}),
    ("smooth_l1_loss", {"beta": 0.0}),
    ("huber_loss", {}),
    ("huber_loss", {"delta": 2.5}),
]
LOSS_IDS = [n + "".join(f"-{k}{v}" for k, v in kw.items()) for n, kw in LOSSES]
NAMES = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss")
PARAM = {"smooth_l1_loss": "beta", "huber_loss": "delta"}


# --------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------

@contextlib.contextmanager
def num_threads(n):
    old = fastloss.get_num_threads()
    fastloss.set_num_threads(n)
    try:
        yield
    finally:
        fastloss.set_num_threads(old)


def _seed(*parts):
    return zlib.crc32(repr(parts).encode())


def maybe_warns(xshape, tshape):
    """torch's broadcasting warning when the shapes differ, else nothing."""
    if tuple(xshape) != tuple(tshape):
        return pytest.warns(UserWarning, match="different to the input size")
    return contextlib.nullcontext()


def fast(name, with_grad=False):
    return getattr(fl, name + ("_with_grad" if with_grad else ""))


def slow(name, with_grad=False):
    return getattr(ref, name + ("_with_grad" if with_grad else ""))


def rand(rng, shape, dtype, scale=2.0):
    """Values around the kinks of every loss (|x - y| near 0, beta and delta)."""
    return (rng.standard_normal(shape) * scale).astype(dtype)


def assert_close(a, b, dtype, tol=TOL):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    np.testing.assert_allclose(a, b, equal_nan=True, **tol[dtype])


def layout(a, kind):
    """a (C order) in the memory layout `kind`, same values."""
    if kind == "C":
        return a
    if kind == "F":
        return np.asfortranarray(a)
    if kind == "strided":  # every other element of a bigger buffer
        big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), dtype=a.dtype) if a.ndim else np.zeros(2, a.dtype)[:1].reshape(())
        if a.ndim:
            big[..., ::2] = a
            return big[..., ::2]
        big[()] = a
        return big
    if kind == "reversed":  # negative strides
        if a.ndim == 0:
            return a
        r = np.ascontiguousarray(a[..., ::-1])
        return r[..., ::-1]
    if kind == "transposed":  # a transposed view of a C array
        return np.ascontiguousarray(a.T).T
    if kind == "readonly":
        r = a.copy()
        r.flags.writeable = False
        return r
    if kind == "bigendian":
        return a.astype(a.dtype.newbyteorder(">"))
    raise AssertionError(kind)


def torch_run(torch, name, kw, x, y, reduction, grad_output=None):
    """torch's loss and gradient wrt x (autograd), as NumPy."""
    import torch.nn.functional as F

    xt = torch.from_numpy(np.array(x)).requires_grad_()
    yt = torch.from_numpy(np.array(y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loss = getattr(F, name)(xt, yt, reduction=reduction, **kw)
    g = torch.ones_like(loss) if grad_output is None else torch.as_tensor(grad_output, dtype=loss.dtype).expand_as(loss)
    loss.backward(g)
    return loss.detach().numpy(), xt.grad.numpy()


# --------------------------------------------------------------------------
# fast vs reference
# --------------------------------------------------------------------------

SHAPES = [(), (1,), (5,), (37,), (7, 13), (3, 4, 19), (2, 1, 33)]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_shapes_match_reference(simd, dtype, loss):
    name, kw = loss
    for shape in SHAPES:
        rng = np.random.default_rng(_seed(name, shape, dtype))
        x, y = rand(rng, shape, dtype), rand(rng, shape, dtype)
        for red in REDUCTIONS:
            assert_close(fast(name)(x, y, red, **kw), slow(name)(x, y, red, **kw), dtype)
            lf, gf = fast(name, True)(x, y, red, **kw)
            lr, gr = slow(name, True)(x, y, red, **kw)
            assert_close(lf, lr, dtype)
            assert_close(gf, gr, dtype)
            assert gf.dtype == np.dtype(dtype) and gf.shape == x.shape
            if red == "none":
                assert isinstance(lf, np.ndarray) and lf.dtype == np.dtype(dtype) and lf.shape == shape
            else:
                assert type(lf) is np.dtype(dtype).type


LAYOUTS = ["F", "strided", "reversed", "transposed", "readonly", "bigendian"]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("xlay", LAYOUTS)
def test_layouts_match_reference(simd, dtype, xlay):
    shape = (9, 21)
    for tlay in ["C", xlay]:
        for name, kw in LOSSES[::2] + [LOSSES[5]]:
            rng = np.random.default_rng(_seed(name, xlay, tlay, dtype))
            x0, y0 = rand(rng, shape, dtype), rand(rng, shape, dtype)
            x, y = layout(x0, xlay), layout(y0, tlay)
            go = rand(rng, shape, dtype)
            for red in REDUCTIONS:
                lf, gf = fast(name, True)(x, y, red, **kw, grad_output=go if red == "none" else 0.75)
                lr, gr = slow(name, True)(x0, y0, red, **kw, grad_output=go if red == "none" else 0.75)
                assert_close(lf, lr, dtype)
                assert_close(gf, gr, dtype)
                out = layout(np.zeros(shape, dtype), xlay if xlay not in ("readonly", "bigendian") else "F")
                lo, go_ = fast(name, True)(x, y, red, **kw, out=out)
                assert go_ is out
                assert_close(go_, slow(name, True)(x0, y0, red, **kw)[1], dtype)


BROADCASTS = [
    ((4, 5), (5,)),        # target broadcast along rows
    ((4, 5), (4, 1)),      # target broadcast along the inner axis
    ((4, 5), ()),          # scalar target
    ((5,), (4, 5)),        # input broadcast: its gradient is summed back
    ((4, 1), (4, 6)),
    ((1, 6), (3, 1)),      # both broadcast
    ((2, 1, 3), (4, 1)),
    ((), (3,)),
]


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("shapes", BROADCASTS, ids=str)
def test_broadcasting_matches_reference(simd, dtype, shapes):
    xs, ts = shapes
    bshape = np.broadcast_shapes(xs, ts)
    for name, kw in LOSSES:
        rng = np.random.default_rng(_seed(name, shapes, dtype))
        x, y = rand(rng, xs, dtype), rand(rng, ts, dtype)
        go = rand(rng, bshape, dtype)
        for red in REDUCTIONS:
            with maybe_warns(xs, ts):
                lf, gf = fast(name, True)(x, y, red, **kw, grad_output=go if red == "none" else None)
            with maybe_warns(xs, ts):
                lr, gr = slow(name, True)(x, y, red, **kw, grad_output=go if red == "none" else None)
            assert_close(lf, lr, dtype)
            assert gf.shape == xs
            # summed-back gradients: float16/float32 sums of a few terms
            assert_close(gf, gr, dtype, tol={**TOL, np.float16: dict(rtol=2e-2, atol=2e-2)})
            if red == "none":
                assert lf.shape == bshape


@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_large_contiguous_and_tails(simd, loss):
    """Many blocks, the vector loop and every tail length."""
    name, kw = loss
    rng = np.random.default_rng(_seed(name, "large"))
    for n in [FL_BLOCK + 3, 3 * FL_BLOCK + 17] + list(range(1, 20)):
        for dtype in (np.float32, np.float64):
            x, y = rand(rng, (n,), dtype), rand(rng, (n,), dtype)
            for red in REDUCTIONS:
                lf, gf = fast(name, True)(x, y, red, **kw)
                lr, gr = slow(name, True)(x, y, red, **kw)
                assert_close(lf, lr, dtype)
                assert_close(gf, gr, dtype)


FL_BLOCK = 32768


def test_mixed_dtypes_follow_torchs_promotion():
    """torch promotes a floating target of another dtype with the input (mse, l1, smooth_l1:
    the loss in the wider dtype) and holds huber's target in the input's dtype; an integer or
    bool target never widens the loss. The gradient is always in the input's dtype."""
    for xdt in (np.float16, np.float32):
        x = np.linspace(-3, 3, 11).astype(xdt)
        for tdt in (np.float64, np.float32, np.float16, np.int64, np.int8, np.uint16, np.bool_):
            y = (np.arange(11) % 3 + 0.1 * (np.dtype(tdt).kind == "f")).astype(tdt)
            for name in NAMES:
                widen = np.dtype(tdt).kind == "f" and name != "huber_loss"
                want = np.promote_types(xdt, tdt) if widen else np.dtype(xdt)
                l, g = fast(name, True)(x, y, "mean")
                lr, gr = slow(name, True)(x, y, "mean")
                assert type(l) is want.type and type(lr) is want.type, (name, xdt, tdt, type(l))
                assert g.dtype == xdt and gr.dtype == xdt
                assert_close(l, lr, want.type)
                assert_close(g, gr, xdt)


def test_empty():
    for dtype in (np.float32, np.float64, np.float16):
        x = np.zeros((0, 3), dtype)
        for name in NAMES:
            for f in (fast, slow):
                assert np.isnan(f(name)(x, x, "mean"))
                assert f(name)(x, x, "sum") == 0
                assert f(name)(x, x, "none").shape == (0, 3)
                l, g = f(name, True)(x, x, "mean")
                assert np.isnan(l) and g.shape == (0, 3) and g.dtype == dtype


# --------------------------------------------------------------------------
# reference vs torch
# --------------------------------------------------------------------------

EDGE_X = [NAN, INF, -INF, 1.0, 0.0, 2.0, INF, 0.5, -0.0, 3.0, -3.0, 0.3, 1.0, -1.0, 2.5, -2.5, 1e30, -NAN]
EDGE_Y = [0.0, 0.0, 0.0, 1.0, 0.0, INF, INF, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0]
TORCH_LOSSES = LOSSES + [("smooth_l1_loss", {"beta": INF}), ("huber_loss", {"delta": INF}),
                         ("huber_loss", {"delta": 1e-3}), ("smooth_l1_loss", {"beta": 1e-3})]
TORCH_IDS = [n + "".join(f"-{k}{v}" for k, v in kw.items()) for n, kw in TORCH_LOSSES]


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("loss", TORCH_LOSSES, ids=TORCH_IDS)
def test_edge_values_match_torch(torch, dtype, loss):
    """nan, +-inf, x == y, the kinks: reference AND fast path equal torch elementwise."""
    name, kw = loss
    x = np.array(EDGE_X, dtype)
    y = np.array(EDGE_Y, dtype)
    if dtype == np.float32 and kw.get("beta") == INF:
        # 0.5 z^2 / inf for z = 1e30: torch's float32 z^2 overflows (nan), float64 does not
        x, y = x[:-2], y[:-2]
    lt, gt = torch_run(torch, name, kw, x, y, "none")
    for f in (slow, fast):
        with np.errstate(all="ignore"):
            l, g = f(name, True)(x, y, "none", **kw)
        assert_close(l, lt, dtype, TORCH_TOL)
        assert_close(g, gt, dtype, TORCH_TOL)
        # nan exactly where torch has nan
        assert np.array_equal(np.isnan(g), np.isnan(gt))


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_reference_matches_torch(torch, dtype, loss):
    name, kw = loss
    rng = np.random.default_rng(_seed(name, dtype, "torch"))
    for xs, ts in [((6, 7), (6, 7)), ((3, 1, 4), (5, 4)), ((4,), (3, 4)), ((), ())]:
        x, y = rand(rng, xs, dtype), rand(rng, ts, dtype)
        bshape = np.broadcast_shapes(xs, ts)
        for red in REDUCTIONS:
            go = rand(rng, bshape, dtype) if red == "none" else np.array(1.5, dtype)
            lt, gt = torch_run(torch, name, kw, x, y, red, go)
            with maybe_warns(xs, ts):
                lr, gr = slow(name, True)(x, y, red, **kw, grad_output=go if red == "none" else 1.5)
            with maybe_warns(xs, ts):
                lf, gf = fast(name, True)(x, y, red, **kw, grad_output=go if red == "none" else 1.5)
            for l, g in ((lr, gr), (lf, gf)):
                assert_close(l, lt, dtype, TORCH_TOL)
                assert_close(g, gt, dtype, TORCH_TOL)


def test_empty_matches_torch(torch):
    import torch.nn.functional as F

    for name in NAMES:
        for red in ("mean", "sum"):
            t = getattr(F, name)(torch.zeros(0, 2), torch.zeros(0, 2), reduction=red).item()
            f = fast(name)(np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32), red)
            assert (np.isnan(t) and np.isnan(f)) or t == f


def test_broadcast_warning_text_matches_torch(torch):
    import torch.nn.functional as F

    with pytest.warns(UserWarning) as rec_t:
        F.mse_loss(torch.zeros(3, 1), torch.zeros(3))
    with pytest.warns(UserWarning) as rec_f:
        fl.mse_loss(np.zeros((3, 1)), np.zeros(3))
    msg_t, msg_f = str(rec_t[0].message), str(rec_f[0].message)
    assert msg_t.split(")")[-1] == msg_f.split(")")[-1]  # everything after the shapes
    assert msg_f.startswith("Using a target size ((3,)) that is different to the input size ((3, 1))")


# --------------------------------------------------------------------------
# bad inputs: fast and reference raise the type torch raises (NumPy's mapping)
# --------------------------------------------------------------------------

def _bad_cases():
    f32 = np.ones(4, np.float32)
    return [
        ("int input", dict(input=np.ones(4, np.int64), target=np.ones(4, np.int64)), TypeError),
        ("int32 input", dict(input=np.ones(4, np.int32), target=np.ones(4, np.int32)), TypeError),
        ("shapes", dict(input=f32, target=np.ones(3, np.float32)), ValueError),
        ("shapes 2d", dict(input=np.ones((2, 3)), target=np.ones((3, 2))), ValueError),
        ("reduction", dict(input=f32, target=f32, reduction="avg"), ValueError),
        ("reduction None", dict(input=f32, target=f32, reduction=None), ValueError),
    ]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_inputs_raise(torch, name, case):
    import torch.nn.functional as F

    _, args, exc = case
    for f in (fast(name), slow(name), fast(name, True), slow(name, True)):
        with pytest.raises(exc):
            f(**args)
    with pytest.raises((RuntimeError, ValueError, TypeError, NotImplementedError)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in args.items()}
            F.__dict__[name](**kw).sum()


def test_non_float_input_or_target_rejected():
    """Stricter than torch on purpose: torch promotes an integer input with a float target
    (and computes complex targets); fastloss requires a float input and a real target."""
    f32 = np.ones(4, np.float32)
    for name in NAMES:
        for x, y in [(np.ones(4, np.int64), f32), (np.ones(4, bool), f32),
                     (f32, np.ones(4, np.complex64)), (f32, np.array(["a"] * 4))]:
            for f in (fast(name), slow(name), fast(name, True), slow(name, True)):
                with pytest.raises(TypeError):
                    f(x, y)


@pytest.mark.parametrize("name,value", [("smooth_l1_loss", -1.0), ("smooth_l1_loss", NAN),
                                        ("huber_loss", 0.0), ("huber_loss", -2.0), ("huber_loss", NAN)])
def test_bad_parameter_raises(torch, name, value):
    import torch.nn.functional as F

    x = np.ones(3)
    kw = {PARAM[name]: value}
    with pytest.raises(RuntimeError):
        getattr(F, name)(torch.from_numpy(x), torch.from_numpy(x), **kw)
    for f in (fast(name), slow(name), fast(name, True), slow(name, True)):
        with pytest.raises(ValueError):
            f(x, x, **kw)


def test_bad_options_and_out():
    x = np.ones(4)
    for name in NAMES:
        with pytest.raises(ValueError):  # grad_output array with a reduction
            fast(name, True)(x, x, "mean", grad_output=np.ones(4))
        with pytest.raises(ValueError):
            fast(name, True)(x, x, "none", grad_output=np.ones(3))
        with pytest.raises(TypeError):
            fast(name, True)(x, x, "none", grad_output=np.array(["a"] * 4))
        with pytest.raises(ValueError):
            fast(name, True)(x, x, out=np.empty(3))
        with pytest.raises(TypeError):
            fast(name, True)(x, x, out=np.empty(4, np.float32))
        with pytest.raises(TypeError):
            fast(name, True)(x, x, out=[0.0] * 4)
        ro = np.empty(4)
        ro.flags.writeable = False
        with pytest.raises(ValueError):
            fast(name, True)(x, x, out=ro)
    with pytest.raises(TypeError):
        fl.smooth_l1_loss(x, x, beta="1")
    with pytest.raises(TypeError):
        fl.huber_loss(x, x, delta=None)


def test_nothing_written_on_error():
    x = np.ones(4)
    out = np.full(4, 7.0)
    with pytest.raises(ValueError):
        fl.huber_loss_with_grad(x, x, delta=-1.0, out=out)
    with pytest.raises(ValueError):
        fl.mse_loss_with_grad(x, x, reduction="bad", out=out)
    assert (out == 7.0).all()


# --------------------------------------------------------------------------
# gradient vs finite differences, float32 accuracy
# --------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES, ids=LOSS_IDS)
def test_gradient_matches_finite_differences(loss):
    name, kw = loss
    rng = np.random.default_rng(_seed(name, "fd"))
    x = rand(rng, (3, 5), np.float64)
    y = rand(rng, (5,), np.float64)  # broadcast target
    go = 0.7
    y = np.broadcast_to(y, x.shape).copy()
    # keep away from the kinks, where the derivative jumps
    p = kw.get(PARAM.get(name, ""), 1.0)
    d = x - y
    for kink in (0.0, p, -p):
        close = np.abs(d - kink) < 1e-3
        x[close] += 0.01
    h = 1e-6
    num = np.empty_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        num[i] = go * (fast(name)(xp, y, "mean", **kw) - fast(name)(xm, y, "mean", **kw)) / (2 * h)
    _, g = fast(name, True)(x, y, "mean", **kw, grad_output=go)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-9)


def test_float32_sum_accuracy():
    """Sums in double: float32 losses of a big input match the float64 sum closely."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal(1 << 20).astype(np.float32)
    y = np.zeros_like(x)
    exact = float((x.astype(np.float64) ** 2).sum())
    assert abs(float(fl.mse_loss(x, y, "sum")) - exact) <= 1e-6 * exact


# --------------------------------------------------------------------------
# threads, inputs unchanged, out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_threads_bitwise_identical(name):
    if not fastloss.kernel_info()["openmp"]:
        pytest.skip("built without OpenMP")
    rng = np.random.default_rng(_seed(name, "threads"))
    cases = [((8 * FL_BLOCK + 5,), (8 * FL_BLOCK + 5,)), ((257, 1000), (1000,))]
    for xs, ts in cases:
        x = rand(rng, xs, np.float32)
        y = rand(rng, ts, np.float32)
        for red in REDUCTIONS:
            results = {}
            for n in (1, 2):
                with num_threads(n), maybe_warns(xs, ts):
                    (loss, grad), stats = ran(getattr(fastloss, name + "_with_grad"), x, y, red)
                assert stats["threads_used"] == n  # the team
                assert 1 <= stats["threads_active"] <= n
                results[n] = (np.asarray(loss).tobytes(), grad.tobytes())
            assert results[1] == results[2]


def test_small_input_runs_on_one_thread():
    x = np.ones(100, np.float32)
    with num_threads(2):
        _, stats = ran(fastloss.mse_loss_with_grad, x, x)
    assert stats["threads_used"] == 1 and stats["threads_active"] == 1


@pytest.mark.parametrize("name", NAMES)
def test_inputs_unchanged(name):
    rng = np.random.default_rng(_seed(name, "unchanged"))
    x, y, go = rand(rng, (6, 9), np.float32), rand(rng, (6, 9), np.float32), rand(rng, (6, 9), np.float32)
    xc, yc, goc = x.copy(), y.copy(), go.copy()
    fast(name, True)(x, y, "none", grad_output=go)
    fast(name)(x, y, "sum")
    assert np.array_equal(x, xc) and np.array_equal(y, yc) and np.array_equal(go, goc)


@pytest.mark.parametrize("name", NAMES)
def test_out_semantics(name):
    rng = np.random.default_rng(_seed(name, "out"))
    x, y = rand(rng, (5, 40), np.float64), rand(rng, (5, 40), np.float64)
    _, expect = fast(name, True)(x, y)
    out = np.empty_like(x)
    _, g = fast(name, True)(x, y, out=out)
    assert g is out and np.shares_memory(g, out) and np.array_equal(g, expect)
    # out = input exactly: in place
    xi = x.copy()
    _, g = fast(name, True)(xi, y, out=xi)
    assert g is xi and np.array_equal(xi, expect)
    # out = target exactly (same shape and dtype): in place too
    yi = y.copy()
    _, g = fast(name, True)(x, yi, out=yi)
    assert g is yi and np.array_equal(yi, expect)
    # float16 input: computed in float32, written into the float16 out
    x16, y16 = x.astype(np.float16), y.astype(np.float16)
    o16 = np.empty_like(x16)
    _, g = fast(name, True)(x16, y16, out=o16)
    assert g is o16 and np.array_equal(o16, fast(name, True)(x16, y16)[1])
    # partial overlaps
    buf = np.zeros(81)
    with pytest.raises(ValueError):
        fast(name, True)(buf[:80], y.ravel(), out=buf[1:])
    with pytest.raises(ValueError):
        fast(name, True)(x.ravel(), buf[:80], out=buf[1:])
    go = np.ones(200)
    with pytest.raises(ValueError):
        fast(name, True)(x, y, "none", grad_output=go.reshape(5, 40), out=go.reshape(5, 40))
    # broadcast input: out has the input's shape
    xb = x[:1].copy()
    ob = np.empty_like(xb)
    with pytest.warns(UserWarning):
        _, g = fast(name, True)(xb, y, out=ob)
    with pytest.warns(UserWarning):
        _, expect_b = slow(name, True)(xb, y)
    assert g is ob and np.allclose(ob, expect_b)


# --------------------------------------------------------------------------
# property: random broadcastable shapes, options and upstream gradients
# --------------------------------------------------------------------------

@st.composite
def _problems(draw):
    nd = draw(st.integers(0, 3))
    bshape = tuple(draw(st.integers(0, 6)) for _ in range(nd))

    def sub_shape():
        k = draw(st.integers(0, nd))
        return tuple(1 if draw(st.booleans()) else s for s in bshape[nd - k:])

    loss = draw(st.sampled_from(LOSSES))
    return bshape, sub_shape(), sub_shape(), loss, draw(st.sampled_from(REDUCTIONS)), \
        draw(st.sampled_from([np.float32, np.float64])), draw(st.integers(0, 2**31))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_problems())
def test_property_broadcast_matches_reference(problem):
    bshape, xs, ts, (name, kw), red, dtype, seed = problem
    rng = np.random.default_rng(seed)
    x, y = rand(rng, xs, dtype), rand(rng, ts, dtype)
    loss_shape = np.broadcast_shapes(xs, ts)
    go = rand(rng, loss_shape[len(loss_shape) // 2:], dtype) if red == "none" else 0.5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        lf, gf = fast(name, True)(x, y, red, **kw, grad_output=go)
        lr, gr = slow(name, True)(x, y, red, **kw, grad_output=go)
    assert_close(lf, lr, dtype)
    assert_close(gf, gr, dtype, tol={**TOL, np.float32: dict(rtol=1e-5, atol=1e-5)})
