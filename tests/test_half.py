"""bfloat16 and float16: the conversions of every SIMD path, and the native kernels'
accuracy (cross_entropy, nll_loss, log_softmax / softmax and their backward, the elementwise
losses).

The accuracy rule (docs/guarantees.md): per-position losses, reduced losses and the
softmax / log_softmax outputs equal the float64 result on the same (upcast) values rounded
to nearest-even in the input's dtype -- 0 ulp, except that a float64 result within 1e-3 ulp
of a rounding tie may round either way; gradients are within 1 ulp of the float64 gradient.
The float64 results come from torch (float64 autograd on the upcast values).
"""
import warnings

import numpy as np
import pytest

import conftest
import fastloss
from fastloss import _half
from fastloss._plan import BF16_BITS, ran

if conftest.BF16 is None:  # ml_dtypes, the [bf16] extra (required in CI: conftest raises there)
    pytest.skip("ml_dtypes is not installed", allow_module_level=True)
BF16 = np.dtype(conftest.BF16)
HALVES = ("bfloat16", "float16")


def np_dtype(name):
    return BF16 if name == "bfloat16" else np.dtype(np.float16)


def bits(a):
    return np.asarray(a).view(np.uint16)


# ---- the rounding rule of csrc/half.h, written independently in NumPy ------------------------

def rule_narrow(f32, name):
    """float32 -> half bits: nearest-even, subnormals kept, NaN quiet with truncated payload."""
    f32 = np.asarray(f32, np.float32)
    b = f32.view(np.uint32)
    nan = np.isnan(f32)
    if name == "bfloat16":
        out = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
        out[nan] = ((b[nan] >> 16) | 0x40).astype(np.uint16)
        return out
    with np.errstate(over="ignore"):
        out = f32.astype(np.float16).view(np.uint16).copy()  # numpy rounds to nearest-even
    out[nan] = (((b[nan] >> 16) & 0x8000) | 0x7E00 | ((b[nan] >> 13) & 0x3FF)).astype(np.uint16)
    return out


def rule_widen(h, name):
    h = np.asarray(h, np.uint16)
    if name == "bfloat16":
        return (h.astype(np.uint32) << 16).view(np.float32)
    f = h.view(np.float16).astype(np.float32)
    nan = np.isnan(f)  # quieted, payload kept
    b = f.view(np.uint32).copy()
    hb = h[nan].astype(np.uint32)
    b[nan] = ((hb & 0x8000) << 16) | 0x7FC00000 | ((hb & 0x3FF) << 13)
    return b.view(np.float32)


def float32_sample():
    """About a million float32 bit patterns spread over the whole range, plus the edges:
    bfloat16 and float16 ties and their neighbours, subnormals, overflow limits, NaNs."""
    spread = np.arange(0, 2**32, 4093, dtype=np.uint64).astype(np.uint32)
    hi = np.arange(0, 2**16, dtype=np.uint32) << 16
    bf_ties = np.concatenate([hi | 0x8000, hi | 0x7FFF, hi | 0x8001])
    f16 = np.arange(0, 2**16, dtype=np.uint16).view(np.float16).astype(np.float32)
    f16 = f16[np.isfinite(f16)]
    up = np.nextafter(f16, np.float32(np.inf))
    with np.errstate(invalid="ignore", over="ignore"):
        nxt = np.nextafter(f16.astype(np.float16), np.float16(np.inf)).astype(np.float64)
        mid32 = ((f16.astype(np.float64) + nxt) / 2).astype(np.float32)  # float16 ties, exact
    edges = np.array([65504, 65519.996, 65520, 65536, 2.0**-14, 2.0**-24, 2.0**-25, 1.5 * 2.0**-25,
                      3.4e38, 1e-45, np.inf], np.float32)
    nans = np.array([0x7FC00000, 0x7F800001, 0xFFC00001, 0x7FFFFFFF, 0x7FA00000], np.uint32)
    parts = [spread, bf_ties, f16.view(np.uint32), up.view(np.uint32), mid32[np.isfinite(mid32)].view(np.uint32),
             edges.view(np.uint32), nans]
    u = np.concatenate([p.astype(np.uint32) for p in parts])
    u = np.concatenate([u, u ^ np.uint32(0x80000000)])  # both signs
    return u.view(np.float32)


@pytest.mark.parametrize("name", HALVES)
def test_narrow_every_path_follows_the_rule(simd, name):
    x = float32_sample()
    got = _half.narrow(x, name)
    want = rule_narrow(x, name)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (simd, name, x[bad[:5]].view(np.uint32), got[bad[:5]], want[bad[:5]])
    # a tail of every length (the masked partial vector)
    for n in range(1, 33):
        assert np.array_equal(_half.narrow(x[:n], name), want[:n])


@pytest.mark.parametrize("name", HALVES)
def test_widen_every_path_is_exact(simd, name):
    h = np.arange(0, 2**16, dtype=np.uint32).astype(np.uint16)
    got = _half.widen(h, name)
    want = rule_widen(h, name)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32)), simd
    for n in range(1, 33):
        assert np.array_equal(_half.widen(h[1000:1000 + n], name).view(np.uint32), want[1000:1000 + n].view(np.uint32))


def test_bfloat16_matches_ml_dtypes():
    x = float32_sample()
    x = x[~np.isnan(x)]
    assert np.array_equal(_half.narrow(x, "bfloat16"), bits(x.astype(BF16)))


@pytest.mark.parametrize("name", HALVES)
def test_from_double_rounds_once(name):
    rng = np.random.default_rng(5)
    dt = np_dtype(name)
    # exact ties of the half dtype, nudged by far less than a float32 ulp either way: a
    # double rounding through float32 gets these wrong
    h = np.arange(0x0001, 0x7B00, 7, dtype=np.uint16).view(dt).astype(np.float64)
    nxt = (np.arange(0x0001, 0x7B00, 7, dtype=np.uint16) + 1).view(dt).astype(np.float64)
    tie = (h + nxt) / 2
    vals = np.concatenate([tie, tie * (1 + 2.0**-40), tie * (1 - 2.0**-40), rng.standard_normal(10000) * 100,
                           [0.0, -0.0, np.inf, -np.inf, 1e300, -1e300, 5e-324, 65519.99999, 65520.0]])
    vals = np.concatenate([vals, -vals])
    with np.errstate(over="ignore"):
        want = bits(vals.astype(dt))  # numpy and ml_dtypes round a double to a half dtype directly
    assert np.array_equal(_half.from_double(vals, name), want)


# ---- the kernels -------------------------------------------------------------------------------

def tie_distance(v64, name):
    """For each float64 value, its distance to the nearest rounding tie of the half dtype, in
    ulps of that dtype (inf for non-finite values)."""
    dt = np_dtype(name)
    with np.errstate(over="ignore", invalid="ignore"):
        r = v64.astype(dt)
        rb = bits(r).astype(np.int32)
        up = np.where(v64 >= r.astype(np.float64), 1, -1) * np.where(rb & 0x8000, -1, 1)
        other = (rb + up).astype(np.uint16).view(dt).astype(np.float64)
        r64 = r.astype(np.float64)
        ulp = np.abs(other - r64)
        d = np.abs(np.abs(v64 - r64) - ulp / 2) / ulp
    return np.where(np.isfinite(d), d, np.inf)


def assert_rounded(got, want64, name, what):
    """got (the half dtype) is want64 rounded to nearest-even, but near a tie."""
    dt = np_dtype(name)
    with np.errstate(over="ignore", invalid="ignore"):
        want = np.asarray(want64, np.float64).astype(dt)
    g, w = bits(got).ravel(), bits(want).ravel()
    nan = np.isnan(np.asarray(want64, np.float64)).ravel()
    assert np.array_equal(np.isnan(np.asarray(got).astype(np.float32)).ravel(), nan), what
    bad = np.flatnonzero((g != w) & ~nan)
    near = tie_distance(np.asarray(want64, np.float64).ravel()[bad], name) < 1e-3
    assert np.all(near), (what, bad[~near][:5], np.asarray(want64).ravel()[bad[~near][:5]],
                          np.asarray(got).astype(np.float64).ravel()[bad[~near][:5]])


def ulp_of(w64, name):
    """The half dtype's ulp at each |w64|: the spacing above |w64| rounded (subnormal spacing
    for tiny values; the spacing below at the largest finite)."""
    dt = np_dtype(name)
    with np.errstate(over="ignore", invalid="ignore"):
        rb = bits(np.abs(np.asarray(w64, np.float64)).astype(dt)).astype(np.int64)
    top = 0x7F7F if name == "bfloat16" else 0x7BFF
    rb = np.minimum(rb, top - 1)
    lo = rb.astype(np.uint16).view(dt).astype(np.float64)
    hi = (rb + 1).astype(np.uint16).view(dt).astype(np.float64)
    return hi - lo


def assert_within_ulp(got, want64, name, what, ulps=1.0):
    """|got - want64| <= ulps * (the half dtype's ulp at want64), or got the +-inf that
    want64 rounds to (float16's range ends at 65504)."""
    w = np.asarray(want64, np.float64)
    g = np.asarray(got).astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(g - w)
        over = np.isinf(g) & (w.astype(np_dtype(name)).astype(np.float64) == g)  # rounds to +-inf
    ok = (err <= ulps * ulp_of(w, name)) | (np.isnan(g) & np.isnan(w)) | (g == w) | over
    assert np.all(ok), (what, np.flatnonzero(~ok.ravel())[:5], g[~ok][:5], w[~ok][:5])


def half_array(x64, name):
    return x64.astype(np_dtype(name))


def logits(rng, shape, name, confident=True):
    """randn * 3 logits, the first few rows confident (one logit 12 above the rest)."""
    x = rng.standard_normal(shape) * 3
    if confident and x.ndim >= 2:
        k = min(8, x.shape[0])
        x[np.arange(k), rng.integers(0, x.shape[1], k)] += 12
    return half_array(x, name)


def torch_ce(torch, x, t, **kw):
    """torch's float64 loss and gradient (of the sum of loss * grad_output) on the upcast x."""
    go = kw.pop("grad_output", None)
    xt = torch.from_numpy(np.asarray(x).astype(np.float64)).requires_grad_()
    w = kw.pop("weight", None)
    t = np.asarray(t)
    tt = torch.from_numpy(t if t.dtype.kind in "iu" else t.astype(np.float64))
    loss = torch.nn.functional.cross_entropy(xt, tt, None if w is None else torch.from_numpy(w.astype(np.float64)), **kw)
    (loss * (1.0 if go is None else torch.from_numpy(np.asarray(go, np.float64)))).sum().backward()
    return loss.detach().numpy(), xt.grad.numpy()


@pytest.mark.parametrize("name", HALVES)
@pytest.mark.parametrize("shape", [(300, 1000), (200, 10), (64, 5000), (40, 21, 7)], ids=str)
def test_cross_entropy_is_correctly_rounded(simd, torch, name, shape):
    rng = np.random.default_rng(sum(shape))
    x = logits(rng, shape, name)
    t = rng.integers(0, shape[1], (shape[0],) + shape[2:])
    t.ravel()[::17] = -100
    (loss, g), stats = ran(fastloss.cross_entropy_with_grad, x, t, reduction="none",
                           grad_output=np.full(t.shape, 64.0, np.float32).astype(x.dtype))
    assert f"_{'bf16' if name == 'bfloat16' else 'f16'}_" in stats["kernel"]
    assert loss.dtype == x.dtype and g.dtype == x.dtype
    want_loss, want_g = torch_ce(torch, x, t, reduction="none", grad_output=np.full(t.shape, 64.0))
    assert_rounded(loss, want_loss, name, "per-position loss")
    assert_within_ulp(g, want_g, name, "gradient")
    for red in ("mean", "sum"):
        v = fastloss.cross_entropy(x, t, reduction=red)
        assert v.dtype == x.dtype
        assert_rounded(v, torch_ce(torch, x, t, reduction=red)[0], name, red)
    # the sum's gradient is the per-position one with grad_output 1
    _, gs = fastloss.cross_entropy_with_grad(x, t, reduction="sum")
    assert_within_ulp(gs, torch_ce(torch, x, t, reduction="sum")[1], name, "sum gradient")


@pytest.mark.parametrize("name", HALVES)
def test_cross_entropy_layouts_agree(simd, name):
    """rows, columns (K-dim) and the strided fallback round the same values the same way."""
    rng = np.random.default_rng(3)
    x = logits(rng, (30, 40), name)
    t = rng.integers(0, 40, 30)
    loss, g = fastloss.cross_entropy_with_grad(x, t, reduction="none", grad_output=np.full(30, 32.0).astype(x.dtype))
    xf = np.asfortranarray(x)  # (N, C) in Fortran order: the column layout
    lf, gf = fastloss.cross_entropy_with_grad(xf, t, reduction="none", grad_output=np.full(30, 32.0).astype(x.dtype))
    xs = np.empty((30, 80), x.dtype)[:, ::2]  # strided classes: the scalar fallback
    xs[...] = x
    ls, gs = fastloss.cross_entropy_with_grad(xs, t, reduction="none", grad_output=np.full(30, 32.0).astype(x.dtype))
    assert np.array_equal(bits(loss), bits(lf)) and np.array_equal(bits(loss), bits(ls))
    d = np.abs(g.astype(np.float64) - gf.astype(np.float64))
    assert np.all((d == 0) | (d <= np.abs(g.astype(np.float64)) * 2.0**-6))


@pytest.mark.parametrize("name", HALVES)
def test_cross_entropy_options(simd, torch, name):
    """weights, label smoothing, probability targets: losses correctly rounded; gradients
    within 1 ulp (index targets) -- the smoothing and probability gradients are float32
    terms rounded once (2 ulp allowed where they cancel)."""
    rng = np.random.default_rng(11)
    x = logits(rng, (128, 300), name)
    t = rng.integers(0, 300, 128)
    w = half_array(rng.uniform(0.5, 2, 300), name)
    loss, g = fastloss.cross_entropy_with_grad(x, t, weight=w, reduction="sum")
    wl, wg = torch_ce(torch, x, t, weight=w, reduction="sum")
    assert_rounded(loss, wl, name, "weighted")
    assert_within_ulp(g, wg, name, "weighted gradient")
    loss, g = fastloss.cross_entropy_with_grad(x, t, label_smoothing=0.1, reduction="none")
    wl, wg = torch_ce(torch, x, t, label_smoothing=0.1, reduction="none")
    assert_rounded(loss, wl, name, "smoothed")
    assert_within_ulp(g, wg, name, "smoothed gradient", ulps=2)
    p = rng.dirichlet(np.ones(300), 128)
    y = half_array(p, name)
    loss, g = fastloss.cross_entropy_with_grad(x, y, reduction="none")
    wl, wg = torch_ce(torch, x, y, reduction="none")
    assert loss.dtype == x.dtype
    assert_rounded(loss, wl, name, "probabilities")
    assert_within_ulp(g, wg, name, "probability gradient", ulps=2)


@pytest.mark.parametrize("name", HALVES)
def test_mixed_dtypes_promote_as_torch(name):
    rng = np.random.default_rng(1)
    x = logits(rng, (8, 10), name)
    y = rng.dirichlet(np.ones(10), 8).astype(np.float32)
    assert fastloss.cross_entropy(x, y).dtype == np.float32  # a float32 probability target
    other = np.dtype(np.float16) if name == "bfloat16" else BF16
    assert fastloss.cross_entropy(x, y.astype(other)).dtype == np.float32  # bfloat16 with float16
    assert fastloss.cross_entropy(x, y.astype(np.float64)).dtype == np.float64


@pytest.mark.parametrize("name", HALVES)
@pytest.mark.parametrize("fn", ["log_softmax", "softmax"])
def test_softmax_is_correctly_rounded(simd, torch, name, fn):
    rng = np.random.default_rng(2)
    for shape, axis in (((200, 1000), -1), ((50, 7), -1), ((20, 30, 9), 1)):
        x = logits(rng, shape, name)
        y = getattr(fastloss, fn)(x, axis=axis)
        assert y.dtype == x.dtype
        want = getattr(torch, fn)(torch.from_numpy(x.astype(np.float64)), axis).numpy()
        assert_rounded(y, want, name, (fn, shape))
        # backward: within 1 ulp of the float64 backward of the (rounded) output
        go = half_array(rng.standard_normal(shape), name)
        gx = getattr(fastloss, fn + "_backward")(go, y, axis=axis)
        yt, gt = (torch.from_numpy(a.astype(np.float64)) for a in (y, go))
        back = torch._log_softmax_backward_data if fn == "log_softmax" else torch._softmax_backward_data
        assert_within_ulp(gx, back(gt, yt, axis % len(shape), torch.float64).numpy(), name, (fn, "backward"), ulps=2)


@pytest.mark.parametrize("name", HALVES)
def test_softmax_backward_with_an_infinite_sum_is_torch(torch, simd, name):
    """softmax_backward's y (g - sum g y) with an infinite output, or products whose sum
    overflows float32 (bfloat16 holds 3e38): g - sum is -inf as in torch's float32 sum, not
    the NaN of inf - inf (the half kernels split the sum in two float32 parts). Row and column
    layouts, a found example (0-d, from the property tests) included."""
    dt = np_dtype(name)
    big = 3e38 if name == "bfloat16" else np.inf
    cases = [(np.array(1.0), np.array(np.inf), 0),
             (np.array([1.0, 0.0, 2.0]), np.array([np.inf, 0.0, 0.5]), 0),
             (np.ones((3, 40)), np.full((3, 40), big), 1),
             (np.ones((40, 3)), np.full((40, 3), big), 0)]  # positions contiguous: columns
    for g, y, axis in cases:
        g, y = g.astype(dt), y.astype(dt)
        got = fastloss.softmax_backward(g, y, axis=axis)
        tt = torch_half(torch, name)
        gt = torch.from_numpy(g.astype(np.float32)).to(tt)
        yt = torch.from_numpy(y.astype(np.float32)).to(tt)
        want = torch._softmax_backward_data(gt, yt, axis, tt).float().numpy()
        np.testing.assert_array_equal(got.astype(np.float32), want, err_msg=f"{g.shape} axis {axis}")


def test_big_endian_bfloat16_is_read_and_written_in_its_byte_order():
    """ml_dtypes' big-endian bfloat16 (dtype('>V2'), named bfloat16) as input, target and out=:
    the values a native array gives, results in native order, out= written in its own order."""
    rng = np.random.default_rng(4)
    x = (rng.standard_normal((6, 9)) * 3).astype(BF16)
    y = rng.random((6, 9)).astype(BF16)
    t = rng.integers(0, 9, 6)
    big = np.dtype(BF16).newbyteorder(">")
    xb, yb = x.astype(big), y.astype(big)
    assert xb.tobytes() != x.tobytes() and np.array_equal(xb.astype(np.float32), x.astype(np.float32))
    calls = [
        lambda a, b, **kw: fastloss.cross_entropy_with_grad(a, t, **kw),
        lambda a, b, **kw: fastloss.cross_entropy_with_grad(a, b, **kw),
        lambda a, b, **kw: fastloss.mse_loss_with_grad(a, b, **kw),
        lambda a, b, **kw: fastloss.binary_cross_entropy_with_logits_with_grad(a, b, **kw),
        lambda a, b, **kw: (fastloss.kl_div(a, b, reduction="sum"), fastloss.softmax(a, axis=1, **kw)),
    ]
    for i, call in enumerate(calls):
        loss, g = call(x, y)
        loss_b, g_b = call(xb, yb)
        assert loss_b.dtype == loss.dtype == np.dtype(BF16) and g_b.dtype == np.dtype(BF16), i
        assert np.array_equal(bits(loss_b), bits(loss)) and np.array_equal(bits(g_b), bits(g)), i
        out = np.zeros(x.shape, big)
        _, g_o = call(xb, yb, out=out)
        assert g_o is out and out.dtype == big, i
        assert out.astype(np.float32).tobytes() == g.astype(np.float32).tobytes(), i


def test_bf16_bits_and_ml_dtypes_agree():
    """The tagged uint16 view fastloss.torch passes gives the bits an ml_dtypes array gives."""
    name = "bfloat16"
    rng = np.random.default_rng(4)
    x = logits(rng, (16, 50), name)
    t = rng.integers(0, 50, 16)
    l1, g1 = fastloss.cross_entropy_with_grad(x, t, reduction="none")
    l2, g2 = fastloss.cross_entropy_with_grad(x.view(np.uint16).view(BF16_BITS), t, reduction="none")
    assert l2.dtype.metadata == BF16_BITS.metadata and g2.dtype.metadata == BF16_BITS.metadata
    assert np.array_equal(bits(l1), bits(l2)) and np.array_equal(bits(g1), bits(g2))
    m = fastloss.cross_entropy(x.view(np.uint16).view(BF16_BITS), t)
    assert isinstance(m, np.ndarray) and m.shape == () and bits(m) == bits(fastloss.cross_entropy(x, t))
    # bfloat16 bits are numbers, not class indices (as an ml_dtypes target is refused)
    for tb in (t.astype(BF16), t.astype(BF16).view(np.uint16).view(BF16_BITS)):
        for fn in (fastloss.cross_entropy, fastloss.nll_loss):
            with pytest.raises(TypeError, match="got dtype bfloat16"):
                fn(x, tb)


@pytest.mark.parametrize("name", HALVES)
def test_no_float32_copy(name):
    """A native call allocates nothing of the input's size (NumPy allocations are traced; the
    kernels' per-thread scratch row is C-allocated and row-sized)."""
    import tracemalloc
    rng = np.random.default_rng(6)
    x = logits(rng, (1024, 2048), name)
    t = rng.integers(0, 2048, 1024)
    g = np.empty_like(x)
    fastloss.cross_entropy_with_grad(x, t, out=g)
    tracemalloc.start()
    try:
        fastloss.cross_entropy_with_grad(x, t, out=g)
        fastloss.log_softmax(x, out=g)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes / 16, peak


def elementwise_operands(rng, loss, n, name):
    """(input, target, keyword arguments) of an elementwise loss in the half dtype: values in
    the loss's domain, a few exact ties (x == y) and, where the loss takes them, weights."""
    kw = {}
    if loss == "binary_cross_entropy":
        x = rng.uniform(0.001, 0.999, n)
        x[:4] = [0.0, 1.0, 1e-30, 0.5]  # log clamped at -100 at 0 and 1
        y = rng.uniform(0, 1, n)
        kw["weight"] = half_array(rng.uniform(0.5, 2, n), name)
    elif loss == "binary_cross_entropy_with_logits":
        x = rng.standard_normal(n) * 4
        y = (rng.random(n) < 0.5).astype(np.float64)
        kw["weight"] = half_array(rng.uniform(0.5, 2, n), name)
        kw["pos_weight"] = half_array(rng.uniform(0.5, 3, n), name)
    elif loss == "kl_div":
        x = np.log(rng.uniform(0.01, 1, n))
        y = rng.uniform(0, 1, n)
        y[:3] = 0.0
    else:
        x = rng.standard_normal(n) * 2
        y = rng.standard_normal(n) * 2
        y[:5] = x[:5]  # d == 0: l1's and the sign's edge
        if loss in ("smooth_l1_loss", "huber_loss"):
            kw["beta" if loss == "smooth_l1_loss" else "delta"] = 0.75
    return half_array(x, name), half_array(y, name), kw


def torch_elementwise(torch, loss, x, y, kw):
    """torch's loss in float64 on the upcast half values (the oracle), and its input."""
    f64 = {k: torch.from_numpy(v.astype(np.float64)) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    yt = torch.from_numpy(y.astype(np.float64))
    return xt, (lambda red: getattr(torch.nn.functional, loss)(xt, yt, reduction=red, **f64))


# where the formula cancels (kl_div's y log y - y x where log(y) is near x), float32 lanes
# lose more than the half dtype's rounding (docs/guarantees.md)
CANCELLING = ("kl_div",)
ELEMENTWISE = ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
               "binary_cross_entropy_with_logits", "kl_div")


@pytest.mark.parametrize("name", HALVES)
@pytest.mark.parametrize("loss", ELEMENTWISE)
def test_elementwise_losses_are_correctly_rounded(simd, torch, name, loss):
    """Every elementwise loss in the half dtype, on every SIMD path: its own kernel
    (loss_bf16 / loss_f16), per-element and reduced losses rounded once from the float64
    result (CANCELLING: within 1 ulp of torch's float32 result), gradient entries within 1
    ulp of the float64 gradient, a grad_output array included."""
    rng = np.random.default_rng(21)
    n = 2000 + 37  # whole vectors and a tail
    x, y, kw = elementwise_operands(rng, loss, n, name)
    go = half_array(rng.uniform(0.5, 3, n), name)
    fn = getattr(fastloss, loss + "_with_grad")
    (v, g), stats = ran(fn, x, y, reduction="none", grad_output=go, **kw)
    assert f"_{'bf16' if name == 'bfloat16' else 'f16'}_" in stats["kernel"] + "_", stats["kernel"]
    assert v.dtype == g.dtype == x.dtype
    xt, ref = torch_elementwise(torch, loss, x, y, kw)
    want = ref("none")
    (want * torch.from_numpy(go.astype(np.float64))).sum().backward()
    if loss in CANCELLING:
        # torch's formula in float32 (what the kernel computes) cancels: 1 ulp of its result
        x32, ref32 = torch_elementwise(torch, loss, x.astype(np.float32), y.astype(np.float32),
                                       {k: v.astype(np.float32) for k, v in kw.items()
                                        if isinstance(v, np.ndarray)})
        assert_within_ulp(v, ref32("none").detach().numpy(), name, loss + " losses")
    else:
        assert_rounded(v, want.detach().numpy(), name, loss + " losses")
    assert_within_ulp(g, xt.grad.numpy(), name, loss + " gradient")
    for red in ("mean", "sum"):
        xt.grad = None
        with warnings.catch_warnings():  # kl_div's "mean" warning (tests/test_binary.py)
            warnings.simplefilter("ignore")
            value, g = fn(x, y, reduction=red, grad_output=3.0, **kw)
            want = ref(red)
        assert value.dtype == x.dtype
        (3.0 * want).backward()
        check = assert_within_ulp if loss in CANCELLING else assert_rounded
        check(value, want.detach().numpy(), name, f"{loss} {red}")
        assert_within_ulp(g, xt.grad.numpy(), name, f"{loss} {red} gradient")


@pytest.mark.parametrize("name", HALVES)
def test_scalar_grad_output_is_rounded_to_the_loss_dtype(torch, name):
    """A scalar grad_output of a half loss is first rounded to that dtype, as torch's autograd
    casts the gradient of a bfloat16 / float16 output to its dtype."""
    rng = np.random.default_rng(22)
    x = logits(rng, (64, 100), name)
    t = rng.integers(0, 100, 64)
    go = 1.00390625 + 2.0 ** -12  # between two bfloat16 (and two float16) values
    go_half = float(np.float64(go).astype(np_dtype(name)))
    assert go_half != go
    _, g = fastloss.cross_entropy_with_grad(x, t, reduction="sum", grad_output=go)
    _, g_half = fastloss.cross_entropy_with_grad(x, t, reduction="sum", grad_output=go_half)
    assert np.array_equal(bits(g), bits(g_half))
    xt = torch.from_numpy(bits(x).view(np.int16)).view(torch_half(torch, name)).requires_grad_()
    torch.nn.functional.cross_entropy(xt, torch.from_numpy(t), reduction="sum").backward(
        torch.tensor(go, dtype=torch.float64))
    assert xt.grad.dtype == torch_half(torch, name)
    y = half_array(rng.standard_normal(500), name)
    z = half_array(rng.standard_normal(500), name)
    _, g = fastloss.mse_loss_with_grad(y, z, reduction="sum", grad_output=go)
    _, g_half = fastloss.mse_loss_with_grad(y, z, reduction="sum", grad_output=go_half)
    assert np.array_equal(bits(g), bits(g_half))


# ---- fastloss.torch ------------------------------------------------------------------------------

def torch_half(torch, name):
    return torch.bfloat16 if name == "bfloat16" else torch.float16


@pytest.mark.parametrize("name", HALVES)
def test_torch_cross_entropy_through_autograd(torch, name):
    """Zero-copy half tensors, forward and backward through autograd: the loss correctly
    rounded, the gradient within 1 ulp of torch's float64 gradient, both in the input's dtype."""
    import fastloss.torch as flt
    rng = np.random.default_rng(9)
    x = logits(rng, (256, 2000), name)
    t = rng.integers(0, 2000, 256)
    xt = torch.from_numpy(x.view(np.int16)).view(torch_half(torch, name)).clone().requires_grad_()
    with fastloss._plan.record() as stats:
        loss = flt.cross_entropy(xt, torch.from_numpy(t), reduction="sum")
    assert f"_{'bf16' if name == 'bfloat16' else 'f16'}_" in stats["kernel"]
    loss.backward()
    assert loss.dtype == xt.dtype and xt.grad.dtype == xt.dtype
    want_loss, want_g = torch_ce(torch, x, t, reduction="sum")
    assert_rounded(np.asarray(loss.detach().float().numpy()).astype(np_dtype(name)), want_loss, name, "loss")
    assert_within_ulp(xt.grad.float().numpy().astype(np_dtype(name)), want_g, name, "gradient")


@pytest.mark.parametrize("name", HALVES)
def test_torch_backward_rounds_confident_rows(torch, simd, name):
    """The autograd backward takes each row's log-sum-exp from the forward; rows whose target
    is the max by a wide margin (1 - p_t down to ~1e-26) need 1 - p_t again from the row
    (the refinement of csrc/cross_entropy_simd.h): their target entries and the rest stay
    within 1 ulp of torch's float64 gradient. Other rows take the one-pass gradient."""
    import fastloss.torch as flt
    rng = np.random.default_rng(12)
    n, c = 64, 1500
    x = rng.standard_normal((n, c)) * 3
    t = rng.integers(0, c, n)
    margins = [0.5, 2, 6, 12, 25, 40, 60]  # above the row's max, for the first rows' targets
    for i, m in enumerate(margins * 2):
        x[i, t[i]] = x[i].max() + m
    x = half_array(x, name)
    xt = torch.from_numpy(x.view(np.int16)).view(torch_half(torch, name)).clone().requires_grad_()
    # float64 oracle with 1 - p_t as the sum of the other terms (float64's own p_t - 1 is 0
    # from a margin of ~37 on)
    x64 = x.astype(np.float64)
    m = x64.max(axis=1, keepdims=True)
    e = np.exp(x64 - m)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(n)
    e[rows, t] = 0.0
    one_minus = np.where(x64[rows, t] == m[:, 0], e.sum(axis=1) / total[:, 0], np.nan)
    confident = ~np.isnan(one_minus)
    for reduction in ["mean", "sum"]:
        xt.grad = None
        flt.cross_entropy(xt, torch.from_numpy(t), reduction=reduction).backward()
        _, want_g = torch_ce(torch, x, t, reduction=reduction)
        scale = 1.0 / n if reduction == "mean" else 1.0
        want_g[rows[confident], t[confident]] = -scale * one_minus[confident]
        got = xt.grad.float().numpy().astype(np_dtype(name))
        assert_within_ulp(got, want_g, name, f"gradient ({reduction})")
        r = rows[confident]
        assert len(r) >= len(margins)
        assert_within_ulp(got[r, t[r]], want_g[r, t[r]], name, f"target entries ({reduction})")


@pytest.mark.parametrize("name", HALVES)
def test_torch_autocast_dtypes_are_torch(torch, name):
    """Under torch.autocast("cpu"), every loss returns float32 as torch's does (its float32 list),
    log_softmax/softmax keep the input's dtype; the values match torch's within 1e-3."""
    import torch.nn.functional as F

    import fastloss.torch as flt
    dt = torch_half(torch, name)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 10, generator=g).to(dt).requires_grad_()
    p = torch.rand(16, 10, generator=g).to(dt)
    t = torch.randint(0, 10, (16,), generator=g)
    calls = {
        "cross_entropy": lambda m, a: m.cross_entropy(a, t),
        "cross_entropy_prob": lambda m, a: m.cross_entropy(a, p.softmax(-1)),
        "nll_loss": lambda m, a: m.nll_loss(a, t),
        "mse_loss": lambda m, a: m.mse_loss(a, p),
        "l1_loss": lambda m, a: m.l1_loss(a, p),
        "smooth_l1_loss": lambda m, a: m.smooth_l1_loss(a, p),
        "huber_loss": lambda m, a: m.huber_loss(a, p),
        "binary_cross_entropy_with_logits": lambda m, a: m.binary_cross_entropy_with_logits(a, p),
        "binary_cross_entropy": lambda m, a: m.binary_cross_entropy(a.sigmoid(), p),
        "kl_div": lambda m, a: m.kl_div(a, p, reduction="batchmean"),
        "log_softmax": lambda m, a: m.log_softmax(a, -1),
        "softmax": lambda m, a: m.softmax(a, -1),
    }
    for key, call in calls.items():
        with torch.autocast("cpu", dtype=dt):
            ours, theirs = call(flt, x), call(F, x)
        assert ours.dtype == theirs.dtype, key
        torch.testing.assert_close(ours.float(), theirs.float(), rtol=1e-2, atol=1e-3, msg=key)
        up = torch.rand(ours.shape, generator=g)  # not all ones: sum(log_softmax)'s gradient cancels
        (gx_ours,) = torch.autograd.grad((ours.float() * up).sum(), x)
        (gx_theirs,) = torch.autograd.grad((theirs.float() * up).sum(), x)
        assert gx_ours.dtype == gx_theirs.dtype == dt, key
        torch.testing.assert_close(gx_ours.float(), gx_theirs.float(), rtol=2e-2, atol=1e-2, msg=key)  # a few half ulps


@pytest.mark.parametrize("name", HALVES)
def test_torch_mixed_dtypes_raise_or_promote_as_torch(torch, name):
    import torch.nn.functional as F

    import fastloss.torch as flt
    dt = torch_half(torch, name)
    x = torch.randn(4, 5).to(dt)
    t = torch.randint(0, 5, (4,))
    w = torch.rand(5)  # float32 class weight with half logits: torch raises
    with pytest.raises(RuntimeError) as theirs:
        F.cross_entropy(x, t, weight=w)
    with pytest.raises(RuntimeError) as ours:
        flt.cross_entropy(x, t, weight=w)
    assert str(ours.value) == str(theirs.value)
    y = torch.rand(4, 5).softmax(-1)  # a float32 probability target: a float32 loss
    assert flt.cross_entropy(x, y).dtype == F.cross_entropy(x, y).dtype == torch.float32
    torch.testing.assert_close(flt.cross_entropy(x, y), F.cross_entropy(x, y))


@pytest.mark.parametrize("name", HALVES)
def test_thread_count_does_not_change_a_bit(name):
    rng = np.random.default_rng(12)
    x = logits(rng, (300, 3000), name)
    t = rng.integers(0, 3000, 300)
    before = fastloss.get_num_threads()
    results = []
    try:
        for n in (1, 2, 3):
            fastloss.set_num_threads(n)
            loss, g = fastloss.cross_entropy_with_grad(x, t)
            out = [loss, g, fastloss.softmax(x)]
            for loss_name in ELEMENTWISE:  # many blocks of the flat order
                out.extend(getattr(fastloss, loss_name + "_with_grad")(*elementwise_operands(
                    np.random.default_rng(13), loss_name, 300_001, name)[:2]))
            results.append([bits(a).copy() for a in out])
    finally:
        fastloss.set_num_threads(before)
    for r in results[1:]:
        assert all(np.array_equal(a, b) for a, b in zip(results[0], r))


@pytest.mark.parametrize("name", HALVES)
def test_nll_loss_is_correctly_rounded(simd, torch, name):
    """Losses and gradient entries (-w_t g_t) rounded once from double."""
    rng = np.random.default_rng(13)
    x = half_array(-rng.exponential(3, (500, 40)), name)
    t = rng.integers(0, 40, 500)
    t[::9] = -100
    w = half_array(rng.uniform(0.5, 2, 40), name)
    go = half_array(rng.uniform(1, 3, 500), name)
    (loss, g), stats = ran(fastloss.nll_loss_with_grad, x, t, weight=w, reduction="none", grad_output=go)
    assert f"_{'bf16' if name == 'bfloat16' else 'f16'}" in stats["kernel"]
    assert loss.dtype == g.dtype == x.dtype
    xt = torch.from_numpy(x.astype(np.float64)).requires_grad_()
    tt, wt = torch.from_numpy(t), torch.from_numpy(w.astype(np.float64))
    want = torch.nn.functional.nll_loss(xt, tt, wt, reduction="none")
    (want * torch.from_numpy(go.astype(np.float64))).sum().backward()
    assert_rounded(loss, want.detach().numpy(), name, "nll losses")
    assert_rounded(g, xt.grad.numpy(), name, "nll gradient")
    for red in ("mean", "sum"):
        v = fastloss.nll_loss(x, t, weight=w, reduction=red)
        assert v.dtype == x.dtype
        assert_rounded(v, torch.nn.functional.nll_loss(xt, tt, wt, reduction=red).detach().numpy(), name, red)
