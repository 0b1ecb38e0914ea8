"""binary_cross_entropy, binary_cross_entropy_with_logits and kl_div: the fast path
(csrc/binary.c via fastloss/_binary.pyx) against the slow NumPy twin, and both against torch.

Same plan as tests/test_cross_entropy.py: fast vs reference over dtype x shape x layout x
options under every SIMD path (fixture ``simd``), reference and fast vs torch autograd
(values, gradients, edge values), the same exception types on bad input, gradients vs
finite differences, 1 vs 2 threads bit-identical above the grain, inputs never modified,
``out=`` semantics. torch comes from the ``torch`` fixture of conftest.py.
"""
import math
import zlib

import numpy as np
import pytest

import fastloss
from fastloss import _binary as fl
from fastloss._plan import ran

_BASE = {"bce": "binary_cross_entropy", "bce_logits": "binary_cross_entropy_with_logits",
         "kl_div": "kl_div"}
from fastloss import reference as ref

INF = math.inf
NAN = math.nan
DTYPES = [np.float32, np.float64, np.float16]
DTYPE_IDS = {np.float16: "f16", np.float32: "f32", np.float64: "f64"}
LOSSES = ["bce", "bce_logits", "kl_div", "kl_div_log"]

# fast vs reference: rtol, and atol per unit of the inputs' magnitude (cancellation in
# (1 - y) x + ..., xlogy(y, y) - y x is rounding of the terms, not of the result)
TOL = {np.float16: (4e-3, 2e-3), np.float32: (2e-5, 2e-6), np.float64: (1e-12, 1e-14)}


# --------------------------------------------------------------------------
# fixtures and helpers
# --------------------------------------------------------------------------

def _rng(*parts):
    return np.random.default_rng(zlib.crc32(repr(parts).encode()))


def make_data(loss, rng, shape, tshape=None):
    """(x, y) in float64 for one loss, with the edge values each one must handle."""
    tshape = shape if tshape is None else tshape
    if loss == "bce":
        x = rng.uniform(0, 1, shape)
        y = rng.uniform(0, 1, tshape)
        if x.size > 4:
            x.flat[:4] = [0.0, 1.0, 1e-30, 1 - 1e-7]
            y.flat[:4] = [1.0, 0.0, 0.0, 1.0]
    elif loss == "bce_logits":
        x = rng.standard_normal(shape) * 4
        y = rng.uniform(0, 1, tshape)
        if x.size > 4:
            x.flat[:4] = [30.0, -30.0, 1e-8, -90.0]
    elif loss == "kl_div":
        x = rng.standard_normal(shape)
        y = rng.uniform(0, 1, tshape)
        y[rng.random(tshape) < 0.2] = 0.0
    else:
        x = rng.standard_normal(shape)
        y = rng.standard_normal(tshape)
    return np.array(x, dtype=np.float64).reshape(shape), np.array(y, dtype=np.float64).reshape(tshape)


def call(impl, loss, x, y, weight=None, pos_weight=None, reduction="mean", grad=False, **kw):
    """One loss of ``impl`` (fl or ref), forward or with the gradient."""
    sfx = "_with_grad" if grad else ""
    if loss == "bce":
        return getattr(impl, "binary_cross_entropy" + sfx)(x, y, weight, reduction, **kw)
    if loss == "bce_logits":
        return getattr(impl, "binary_cross_entropy_with_logits" + sfx)(x, y, weight, reduction, pos_weight, **kw)
    return getattr(impl, "kl_div" + sfx)(x, y, reduction, loss == "kl_div_log", **kw)


def torch_call(torch, loss, x, y, weight=None, pos_weight=None, reduction="mean", grad_output=None):
    """(loss, grad) from torch autograd, in x's dtype."""
    import torch.nn.functional as F

    xt = torch.tensor(np.asarray(x), requires_grad=True)
    yt = torch.tensor(np.asarray(y))
    wt = None if weight is None else torch.tensor(np.asarray(weight))
    if loss == "bce":
        out = F.binary_cross_entropy(xt, yt, weight=wt, reduction=reduction)
    elif loss == "bce_logits":
        pt = None if pos_weight is None else torch.tensor(np.asarray(pos_weight))
        out = F.binary_cross_entropy_with_logits(xt, yt, weight=wt, reduction=reduction, pos_weight=pt)
    else:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torch's "mean" advice
            out = F.kl_div(xt, yt, reduction=reduction, log_target=loss == "kl_div_log")
    g = torch.ones_like(out) if grad_output is None else torch.tensor(np.asarray(grad_output, dtype=x.dtype))
    out.backward(g)
    return out.detach().numpy(), xt.grad.numpy()


def assert_close(actual, desired, dtype, scale=1.0, count=1):
    rtol, atol = TOL[dtype]
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64), np.asarray(desired, dtype=np.float64),
                               rtol=rtol, atol=atol * scale * count, equal_nan=True)


def magnitude(*arrays):
    m = 1.0
    for a in arrays:
        if a is not None and np.size(a):
            v = np.abs(np.asarray(a, dtype=np.float64))
            v = v[np.isfinite(v)]
            if v.size:
                m += float(v.max())
    return m


def check_result_types(loss, grad, x, reduction, loss_shape):
    if reduction == "none":
        assert isinstance(loss, np.ndarray) and loss.dtype.type == x.dtype.type and loss.shape == loss_shape
    else:
        assert isinstance(loss, np.generic) and loss.dtype.type == x.dtype.type, type(loss)
    if grad is not None:
        assert isinstance(grad, np.ndarray) and grad.dtype.type == x.dtype.type and grad.shape == x.shape


# memory layouts (each returns an array with a's values in another layout)

def lay_c(a):
    return np.array(a, order="C")


def lay_f(a):
    return np.array(a, order="F")


def lay_strided(a):
    if a.ndim == 0:
        return a.copy()
    big = np.full(a.shape[:-1] + (2 * a.shape[-1],), np.nan, dtype=a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def lay_reversed(a):
    rev = (slice(None, None, -1),) * a.ndim
    return np.array(a[rev], order="C")[rev]


def lay_readonly(a):
    b = np.array(a)
    b.flags.writeable = False
    return b


def lay_bigendian(a):
    return a.astype(a.dtype.newbyteorder(">"))


def lay_unaligned(a):
    buf = bytearray(a.nbytes + a.itemsize)
    b = np.frombuffer(buf, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    b[...] = a
    return b


def lay_transposed3(a):
    """A permuted 3-D memory order (axes that merge into neither one nor two)."""
    if a.ndim < 3:
        return lay_f(a)
    return np.array(a.transpose(1, 2, 0), order="C").transpose(2, 0, 1)


LAYOUTS = {"C": lay_c, "F": lay_f, "strided": lay_strided, "reversed": lay_reversed,
           "readonly": lay_readonly, "bigendian": lay_bigendian, "unaligned": lay_unaligned,
           "perm3": lay_transposed3}

SHAPES = [(), (7,), (5, 13), (3, 4, 37), (0, 3)]


def options(loss, shape, rng):
    """(weight, pos_weight) combinations of the loss, as float64 arrays."""
    if loss.startswith("kl"):
        return [(None, None)]
    last = tuple(shape[-1:])  # () for 0-d input
    opts = [(None, None), (rng.uniform(0.2, 2, shape), None), (rng.uniform(0.2, 2, last), None)]
    if loss == "bce_logits":
        opts += [(None, rng.uniform(0.2, 3, last)), (rng.uniform(0.2, 2, shape), rng.uniform(0.2, 3, shape))]
    return opts


# --------------------------------------------------------------------------
# fast vs reference
# --------------------------------------------------------------------------

@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("loss", LOSSES)
def test_fast_matches_reference(simd, loss, dtype, layout):
    rng = _rng(loss, dtype, layout)
    lay = LAYOUTS[layout]
    reductions = ["none", "mean", "sum"] + (["batchmean"] if loss.startswith("kl") else [])
    for shape in SHAPES:
        x64, y64 = make_data(loss, rng, shape)
        x = lay(x64.astype(dtype))
        y = lay(y64.astype(dtype))
        for w64, p64 in options(loss, shape, rng):
            w = None if w64 is None else lay(w64.astype(dtype))
            p = None if p64 is None else p64.astype(dtype)
            scale = magnitude(x, y) * magnitude(w) * magnitude(p)
            for red in reductions:
                go = np.array(rng.standard_normal(shape)) if red == "none" else 1.5
                lf, gf = call(fl, loss, x, y, w, p, red, grad=True, grad_output=go)
                lr, gr = call(ref, loss, x, y, w, p, red, grad=True, grad_output=go)
                check_result_types(lf, gf, x, red, shape)
                n = max(int(np.prod(shape)), 1)
                count = n if red in ("sum", "batchmean") else 1
                assert_close(lf, lr, dtype, scale, count)
                assert_close(gf, gr, dtype, scale * magnitude(go))
                lf2 = call(fl, loss, x, y, w, p, red)
                assert_close(lf2, lf, dtype, scale, count)


@pytest.mark.parametrize("loss", LOSSES)
def test_large_inputs_with_tails(simd, loss):
    """Several blocks, a row length that leaves vector tails, strided weights."""
    rng = _rng(loss, "large")
    shape = (77, 1031)
    x64, y64 = make_data(loss, rng, shape)
    w64 = rng.uniform(0.5, 2, (shape[1],)) if not loss.startswith("kl") else None
    for dtype in (np.float32, np.float64):
        x, y = x64.astype(dtype), y64.astype(dtype)
        w = None if w64 is None else w64.astype(dtype)
        for red in ("none", "mean"):
            lf, gf = call(fl, loss, x, y, w, None, red, grad=True)
            lr, gr = call(ref, loss, x, y, w, None, red, grad=True)
            scale = magnitude(x, y) * magnitude(w)
            assert_close(lf, lr, dtype, scale)
            assert_close(gf, gr, dtype, scale / (x.size if red == "mean" else 1))


@pytest.mark.parametrize("xshape,tshape", [((4, 1), (3, 4, 5)), ((5,), (4, 5)), ((2, 3, 1), (1, 3, 6)),
                                           ((4, 5), (5,)), ((), (3,)), ((3,), ())])
def test_kl_div_broadcasting(simd, xshape, tshape):
    rng = _rng("klb", xshape, tshape)
    x = rng.standard_normal(xshape)
    y = rng.uniform(0, 1, tshape)
    for lt in (False, True):
        for red in ("none", "mean", "sum", "batchmean"):
            lf, gf = fl.kl_div_with_grad(x, y, red, lt)
            lr, gr = ref.kl_div_with_grad(x, y, red, lt)
            assert_close(lf, lr, np.float64, magnitude(x, y), np.broadcast(x, y).size)
            assert_close(gf, gr, np.float64, magnitude(x, y) * 8)
            assert gf.shape == x.shape


def test_stats_report_the_requested_path(simd):
    x, y = make_data("bce", _rng("stats"), (10, 10))
    _, stats = ran(fastloss.binary_cross_entropy_with_grad, x, y)
    assert stats["simd"] == simd and stats["threads_used"] == 1
    assert stats["kernel"] == f"binary_bce_f{'32' if x.dtype == np.float32 else '64'}_{simd}"
    assert (stats["rows"], stats["cols"]) == (1, 100)


# --------------------------------------------------------------------------
# torch parity
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("loss", LOSSES)
def test_reference_and_fast_match_torch(torch, loss, dtype):
    rng = _rng("torch", loss, dtype)
    shape = (6, 9)
    x64, y64 = make_data(loss, rng, shape)
    x, y = x64.astype(dtype), y64.astype(dtype)
    reductions = ["none", "mean", "sum"] + (["batchmean"] if loss.startswith("kl") else [])
    for w64, p64 in options(loss, shape, rng):
        w = None if w64 is None else w64.astype(dtype)
        p = None if p64 is None else p64.astype(dtype)
        scale = magnitude(x, y) * magnitude(w) * magnitude(p)
        for red in reductions:
            go = rng.standard_normal(shape).astype(dtype) if red == "none" else dtype(0.7)
            lt, gt = torch_call(torch, loss, x, y, w, p, red, go)
            for impl in (ref, fl):
                li, gi = call(impl, loss, x, y, w, p, red, grad=True, grad_output=go)
                count = x.size if red in ("sum", "batchmean") else 1
                assert_close(li, lt, dtype, scale, count)
                assert_close(gi, gt, dtype, scale)


EDGES = {
    "bce": ([0.0, 1.0, 0.0, 1.0, 1e-30, 1 - 1e-7, 0.5, 1e-45, 1e-310, 1.0, 0.0],
            [0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.3, 1.0, 0.5, 0.5, 0.5]),
    "bce_logits": ([INF, -INF, INF, -INF, NAN, 100.0, -100.0, 0.0, 1e-8, -1e-8, 20.0, -20.0, 5.0],
                   [1.0, 1.0, 0.0, 0.0, 1.0, 0.5, 0.5, NAN, 0.0, 1.0, 0.0, 1.0, INF]),
    "kl_div": ([1.0, INF, 1.0, -INF, 2.0, NAN, 0.0, -3.0, 1.0, 5.0],
               [0.0, 0.0, -1.0, 2.0, INF, 0.0, 1e-45, 1e-310, NAN, 1.0]),
    "kl_div_log": ([1.0, INF, 1.0, -INF, 2.0, NAN, 0.0, -3.0, 1.0, 5.0],
                   [0.0, 0.0, -1.0, 2.0, INF, 0.0, -INF, 100.0, NAN, -800.0]),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("loss", LOSSES)
def test_edge_values_match_torch(torch, simd, loss, dtype):
    xs, ys = EDGES[loss]
    with np.errstate(over="ignore", under="ignore"):
        x = np.array(xs, dtype=dtype)
        y = np.array(ys, dtype=dtype)
    pws = [None, np.full(x.shape, 2.0, dtype)] if loss == "bce_logits" else [None]
    for p in pws:
        for red in ("none", "sum"):
            lt, gt = torch_call(torch, loss, x, y, None, p, red)
            for impl in (fl, ref):
                li, gi = call(impl, loss, x, y, None, p, red, grad=True)
                np.testing.assert_allclose(np.asarray(li, np.float64), lt.astype(np.float64),
                                           rtol=2e-6 if dtype == np.float32 else 1e-12, equal_nan=True)
                np.testing.assert_allclose(gi.astype(np.float64), gt.astype(np.float64),
                                           rtol=2e-6 if dtype == np.float32 else 1e-12, equal_nan=True)


@pytest.mark.parametrize("loss", LOSSES)
def test_empty_and_zero_d_match_torch(torch, loss):
    reductions = ["none", "mean", "sum"] + (["batchmean"] if loss.startswith("kl") else [])
    for shape in [(0,), (0, 3), (2, 0), ()]:
        x, y = make_data(loss, _rng("empty", loss, shape), shape)
        for red in reductions:
            lt, gt = torch_call(torch, loss, x, y, None, None, red)
            lf, gf = call(fl, loss, x, y, None, None, red, grad=True)
            lr = call(ref, loss, x, y, None, None, red)
            np.testing.assert_allclose(np.asarray(lf, np.float64), lt, rtol=1e-12, equal_nan=True)
            np.testing.assert_allclose(np.asarray(lr, np.float64), lt, rtol=1e-12, equal_nan=True)
            np.testing.assert_allclose(gf, gt, rtol=1e-12, equal_nan=True)
            assert gf.shape == x.shape


# --------------------------------------------------------------------------
# bad input: fast, reference and torch all reject
# --------------------------------------------------------------------------

def _bad_cases():
    f = np.float64
    x, y = np.full((2, 3), 0.5), np.full((2, 3), 0.5)
    return [
        ("bce", dict(x=x.astype(np.int64), y=y), TypeError),
        ("bce", dict(x=x, y=(y > 0).astype(np.int64)), TypeError),
        ("bce", dict(x=x, y=y[0]), ValueError),
        ("bce", dict(x=x, y=y.T), ValueError),
        ("bce", dict(x=np.array([[0.5, 1.5, 0.2], [0, 0, 0]], f), y=y), ValueError),
        ("bce", dict(x=np.array([[0.5, -1e-300, 0.2], [0, 0, 0]], f), y=y), ValueError),
        ("bce", dict(x=np.array([[0.5, NAN, 0.2], [0, 0, 0]], f), y=y), ValueError),
        ("bce", dict(x=x, y=np.array([[0.5, 0.1, 2.0], [0, 0, 0]], f)), ValueError),
        ("bce", dict(x=x, y=np.array([[0.5, 0.1, NAN], [0, 0, 0]], f)), ValueError),
        ("bce", dict(x=x, y=y, weight=np.ones(4)), ValueError),
        ("bce", dict(x=x[0], y=y[0], weight=np.ones((2, 3))), ValueError),
        ("bce", dict(x=x, y=y, reduction="batchmean"), ValueError),
        ("bce", dict(x=x, y=y, reduction="foo"), ValueError),
        ("bce_logits", dict(x=x, y=y[0]), ValueError),
        ("bce_logits", dict(x=x, y=y, pos_weight=np.ones(4)), ValueError),
        ("bce_logits", dict(x=x, y=y, pos_weight=np.ones((3, 2, 3))), ValueError),
        ("bce_logits", dict(x=x, y=y, weight=np.ones((3, 2, 3))), ValueError),
        ("bce_logits", dict(x=x.astype(np.int32), y=y), TypeError),
        ("kl_div", dict(x=x, y=np.ones((3, 2))), ValueError),
        ("kl_div", dict(x=x, y=y.astype(np.int64)), TypeError),
        ("kl_div", dict(x=x, y=y, reduction="foo"), ValueError),
    ]


@pytest.mark.parametrize("case", range(len(_bad_cases())))
def test_bad_input_rejected_like_torch(torch, case):
    loss, kw, exc = _bad_cases()[case]
    x, y = kw["x"], kw["y"]
    args = dict(weight=kw.get("weight"), pos_weight=kw.get("pos_weight"), reduction=kw.get("reduction", "mean"))
    for impl in (fl, ref):
        with pytest.raises(exc):
            call(impl, loss, x, y, **args)
        with pytest.raises(exc):
            call(impl, loss, x, y, grad=True, **args)
    with pytest.raises((RuntimeError, ValueError, TypeError)):
        torch_call(torch, loss, x, y, args["weight"], args["pos_weight"], args["reduction"])


def test_bad_input_writes_nothing():
    x = np.full(100000, 0.5)
    x[77777] = 1.5
    y = np.full(100000, 0.25)
    out = np.full_like(x, 7.0)
    with pytest.raises(ValueError, match="all elements of input should be between 0 and 1"):
        fl.binary_cross_entropy_with_grad(x, y, out=out)
    assert (out == 7.0).all()
    x[77777] = 0.5
    y[99999] = -0.5
    with pytest.raises(ValueError, match="all elements of target should be between 0 and 1"):
        fl.binary_cross_entropy_with_grad(x, y, out=out)
    assert (out == 7.0).all()


@pytest.mark.parametrize("layout", ["strided", "perm3", "F"])
def test_bad_input_found_in_any_layout(simd, layout):
    x = np.full((3, 40, 50), 0.5)
    y = np.full((3, 40, 50), 0.25)
    x[2, 39, 17] = NAN
    xl, yl = LAYOUTS[layout](x), LAYOUTS[layout](y)
    with pytest.raises(ValueError, match="input"):
        fl.binary_cross_entropy(xl, yl)
    xl, yl = LAYOUTS[layout](np.full_like(x, 0.5)), y.copy()
    yl[0, 0, 1] = 1.0000001
    yl = LAYOUTS[layout](yl)
    with pytest.raises(ValueError, match="target"):
        fl.binary_cross_entropy_with_grad(xl, yl)


def test_kl_div_broadcast_input_in_place():
    rng = _rng("klip")
    x = rng.standard_normal((4, 1))
    y = rng.uniform(0, 1, (4, 6))
    _, g = ref.kl_div_with_grad(x, y, "sum")
    xi = x.copy()
    _, g2 = fl.kl_div_with_grad(xi, y, "sum", out=xi)
    assert g2 is xi
    np.testing.assert_allclose(xi, g, rtol=1e-14)


def test_bad_options():
    x, y = np.full(3, 0.5), np.full(3, 0.5)
    with pytest.raises(TypeError):
        fl.kl_div(x, y, log_target="yes")
    with pytest.raises(TypeError):
        fl.binary_cross_entropy(x, y, weight=np.array(["a", "b", "c"]))
    with pytest.raises(ValueError):
        fl.binary_cross_entropy_with_grad(x, y, grad_output=np.ones(3))  # mean: scalar only
    with pytest.raises(ValueError):
        fl.binary_cross_entropy_with_grad(x, y, reduction="none", grad_output=np.ones(4))
    with pytest.raises(TypeError):
        fl.binary_cross_entropy_with_grad(x, y, out=np.empty(3, np.float32))
    with pytest.raises(ValueError):
        fl.binary_cross_entropy_with_grad(x, y, out=np.empty(4))


# --------------------------------------------------------------------------
# gradients vs finite differences (float64)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_gradient_matches_finite_differences(loss):
    rng = _rng("fd", loss)
    shape = (3, 5)
    x, y = make_data(loss, rng, shape)
    if loss == "bce":
        x = rng.uniform(0.1, 0.9, shape)
    w = rng.uniform(0.5, 2, shape) if not loss.startswith("kl") else None
    p = rng.uniform(0.5, 2, (5,)) if loss == "bce_logits" else None
    go = rng.standard_normal(shape)
    reductions = ["none", "mean", "sum"] + (["batchmean"] if loss.startswith("kl") else [])
    for red in reductions:
        g_out = go if red == "none" else 1.3
        _, g = call(fl, loss, x, y, w, p, red, grad=True, grad_output=g_out)

        def f(z):
            v = np.asarray(call(fl, loss, z, y, w, p, red), dtype=np.float64)
            return float((v * g_out).sum())

        h = 1e-6
        fd = np.empty(shape)
        for i in np.ndindex(shape):
            zp, zm = x.copy(), x.copy()
            zp[i] += h
            zm[i] -= h
            fd[i] = (f(zp) - f(zm)) / (2 * h)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------
# threads, inputs, out=
# --------------------------------------------------------------------------

@pytest.mark.parametrize("loss", LOSSES)
def test_one_and_two_threads_give_identical_bytes(loss):
    rng = _rng("threads", loss)
    shape = (300, 1001)  # ~9 blocks
    x, y = make_data(loss, rng, shape)
    x, y = x.astype(np.float32), y.astype(np.float32)
    w = rng.uniform(0.5, 2, (1001,)).astype(np.float32) if not loss.startswith("kl") else None
    name = "kl_div" if loss.startswith("kl") else loss
    old = fastloss.get_num_threads()
    results = {}
    try:
        for n in (1, 2):
            fastloss.set_num_threads(n)
            for red in ("mean", "none"):
                kw = dict(reduction=red)
                if loss.startswith("kl"):
                    kw["log_target"] = loss == "kl_div_log"
                else:
                    kw["weight"] = w
                (lv, g), stats = ran(getattr(fastloss, _BASE[name] + "_with_grad"), x, y, **kw)
                assert stats["threads_used"] == n  # the team
                assert 1 <= stats["threads_active"] <= n
                results[n, red] = (np.asarray(lv).tobytes(), g.tobytes())
    finally:
        fastloss.set_num_threads(old)
    for red in ("mean", "none"):
        assert results[1, red] == results[2, red]


@pytest.mark.parametrize("loss", LOSSES)
def test_inputs_unchanged_and_out(loss):
    rng = _rng("out", loss)
    x, y = make_data(loss, rng, (4, 6))
    w = rng.uniform(0.5, 2, (6,)) if not loss.startswith("kl") else None
    p = rng.uniform(0.5, 2, (6,)) if loss == "bce_logits" else None
    before = [a.copy() for a in (x, y, w, p) if a is not None]
    lv, g = call(fl, loss, x, y, w, p, "sum", grad=True)
    for a, b in zip([a for a in (x, y, w, p) if a is not None], before):
        np.testing.assert_array_equal(a, b)
    # out= (C and a strided F-ordered view) receives the gradient and is returned
    for out in (np.empty_like(x), np.asfortranarray(np.empty((4, 12)))[:, ::2]):
        l2, g2 = call(fl, loss, x, y, w, p, "sum", grad=True, out=out)
        assert g2 is out and np.shares_memory(g2, out)
        np.testing.assert_array_equal(g2, g)
        np.testing.assert_allclose(l2, lv, rtol=1e-14)  # summation order follows the layout
    # out=input: computed in place
    xi = x.copy()
    l3, g3 = call(fl, loss, xi, y, w, p, "sum", grad=True, out=xi)
    assert g3 is xi
    np.testing.assert_array_equal(xi, g)
    # partial overlap, overlap with the target
    buf = np.concatenate([x.ravel(), x.ravel()]).reshape(8, 6)
    with pytest.raises(ValueError):
        call(fl, loss, buf[:4], y, w, p, "sum", grad=True, out=buf[1:5])
    yy = y.copy()
    with pytest.raises(ValueError):
        call(fl, loss, x, yy, w, p, "sum", grad=True, out=yy)


def test_float16_is_computed_in_float32():
    x, y = make_data("bce_logits", _rng("f16"), (5, 7))
    x16, y16 = x.astype(np.float16), y.astype(np.float16)
    l16, g16 = fl.binary_cross_entropy_with_logits_with_grad(x16, y16, reduction="none")
    l32, g32 = fl.binary_cross_entropy_with_logits_with_grad(x16.astype(np.float32), y16.astype(np.float32),
                                                              reduction="none")
    assert l16.dtype == np.float16 and g16.dtype == np.float16
    np.testing.assert_array_equal(l16, l32.astype(np.float16))
    np.testing.assert_array_equal(g16, g32.astype(np.float16))


def test_mixed_target_dtype_follows_torchs_promotion():
    """kl_div and bce_with_logits promote a wider floating target, as torch does: float32 input
    with a float64 target is computed (and returned) in float64, with the gradient in float32;
    binary_cross_entropy holds its target in the input's dtype."""
    x, y = make_data("kl_div", _rng("mixed"), (4, 5))
    a = fl.kl_div(x.astype(np.float32), y, "sum")
    b = fl.kl_div(x.astype(np.float32).astype(np.float64), y, "sum")
    assert a.dtype == np.float64 and a == b
    loss, g = fl.kl_div_with_grad(x.astype(np.float32), y, "sum")
    assert loss.dtype == np.float64 and g.dtype == np.float32
    z = x.astype(np.float16)
    t = (y > y.mean()).astype(np.float32)
    assert fl.binary_cross_entropy_with_logits(z, t).dtype == np.float32
    p = np.clip(np.abs(z), 0.01, 0.99).astype(np.float16)
    assert fl.binary_cross_entropy(p, t).dtype == np.float16