"""margin_cross_entropy (ArcFace / AAM-softmax, CosFace / AM-softmax fused with cross-entropy):
the NumPy layer, fastloss.reference and fastloss.torch against the user's seed code.

The oracle is the seed code itself, in torch float64 ops (``oracle_logits`` + torch's
F.cross_entropy, gradients by autograd), with the one documented change: for kind "arc" the
cosine entering phi is clamped to [-1 + 1e-7, 1 - 1e-7] and the derivative is phi's at the
clamped value (a straight-through clamp: the seed gives NaN/inf gradients at +-1). Then:

1. NumPy layer vs the oracle: float32/float64, every SIMD path, kinds arc/cos, easy_margin,
   margins 0/0.2/0.5, scales 1/30/64, target cosines near -1 (theta + m > pi), ignored rows,
   class weights, label smoothing, every reduction, grad_output, shapes from (1, 1) to
   (64, 1000) and 1-D;
2. NumPy layer vs fastloss.reference, and the reference vs the oracle;
3. float16 / bfloat16 (ml_dtypes): within 1 ulp of the float64 oracle on the same values;
4. edge values: empty batch, all rows ignored, NaN cosines, cosines at and beyond +-1;
5. bad arguments: the exception type, no kernel run, no argument modified;
6. fastloss.torch.margin_cross_entropy: values and autograd gradients (unit and non-unit
   upstream), gradcheck (finite differences), double backward raising (the
   differentiable torch formulation matches the oracle to second order);
7. determinism: repeated calls and 1 vs 2 threads give identical bits.

torch comes from the session fixture ``torch`` of conftest.py (never imported at module level).
"""
import contextlib
import functools
import math
import zlib

import numpy as np
import pytest

import fastloss
from fastloss import reference as ref
from fastloss._plan import ran, record

from conftest import BF16, assert_grad_close

MARGIN_EPS = 1e-7        # the clamp of the target cosine (kind "arc"), a fixed constant
REDUCTIONS = ("none", "mean", "sum")
DEFAULTS = dict(margin=0.2, scale=30.0, kind="arc", easy_margin=False, weight=None, ignore_index=-100,
                label_smoothing=0.0)
EPS64 = np.finfo(np.float64).eps


def _seed(*parts):
    return zlib.crc32(repr(parts).encode())


def _name(dtype):
    return np.dtype(dtype).name


def _full(opts):
    return dict(DEFAULTS, **opts)


# --------------------------------------------------------------------------
# the oracle: the seed code in torch float64
# --------------------------------------------------------------------------

def oracle_logits(torch, x, t, margin, scale, kind, easy_margin, ignore_index, clamp=True):
    """The seed's margin logits (one-hot formulation) of the cosine tensor x (N, C) or (C,):
    ignored rows get no margin (their label is clamped to 0 for the scatter and masked).
    clamp: fastloss's straight-through clamp of the cosine that enters phi (the value clamped,
    the derivative phi's at the clamped value); False is the seed verbatim."""
    one_d = x.dim() == 1
    if one_d:
        x, t = x.unsqueeze(0), t.reshape(1)
    kept = t != ignore_index
    label = torch.where(kept, t, torch.zeros_like(t))
    one_hot = torch.zeros_like(x)
    one_hot.scatter_(1, label.view(-1, 1), 1)
    one_hot = one_hot * kept.view(-1, 1).to(x.dtype)
    if kind == "arc":
        cos_m, sin_m = math.cos(margin), math.sin(margin)
        th = math.cos(math.pi - margin)
        mm = math.sin(math.pi - margin) * margin
        c = x + (x.clamp(-1 + MARGIN_EPS, 1 - MARGIN_EPS) - x).detach() if clamp else x
        sine = torch.sqrt((1.0 - c * c).clamp(0, 1))
        phi = c * cos_m - sine * sin_m
        if easy_margin:
            phi = torch.where(c > 0, phi, c)
        else:
            phi = torch.where((c - th) > 0, phi, c - mm)
    else:
        phi = x - margin
    output = (one_hot * phi) + ((1.0 - one_hot) * x)
    output = output * scale
    return output[0] if one_d else output


def oracle_loss_tensor(torch, x, t, opts, reduction, clamp=True):
    """The oracle's loss of tensors x (any float dtype; computed in x's dtype) and t."""
    o = _full(opts)
    z = oracle_logits(torch, x, t, o["margin"], o["scale"], o["kind"], o["easy_margin"], o["ignore_index"], clamp)
    w = None if o["weight"] is None else torch.tensor(np.array(o["weight"], np.float64), dtype=x.dtype)
    return torch.nn.functional.cross_entropy(z, t, weight=w, ignore_index=o["ignore_index"], reduction=reduction,
                                             label_smoothing=o["label_smoothing"])


@contextlib.contextmanager
def torch_one_thread(torch):
    """torch's intra-op pool at one thread while the oracle runs (these tensors are small; on a
    busy 2-core machine torch's two spinning threads make each call ~100 times slower)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def oracle(torch, x, t, opts, reduction="mean", grad_output=None, clamp=True):
    """(loss, gradient of sum(loss * grad_output) wrt the cosines), float64 numpy, from the
    float64 values of x (any dtype, bfloat16 included)."""
    with torch_one_thread(torch):
        return _oracle(torch, x, t, opts, reduction, grad_output, clamp)


def _oracle(torch, x, t, opts, reduction, grad_output, clamp):
    x64 = np.array(np.asarray(x).astype(np.float64))
    xt = torch.tensor(x64, requires_grad=True)
    tt = torch.tensor(np.array(np.asarray(t).astype(np.int64)))
    loss = oracle_loss_tensor(torch, xt, tt, opts, reduction, clamp)
    go = 1.0 if grad_output is None else torch.tensor(np.array(np.asarray(grad_output).astype(np.float64)))
    (loss * go).sum().backward()
    return loss.detach().numpy().copy(), xt.grad.numpy().copy()


def dphi_at_target(x, t, opts):
    """phi'(x_t) per row (1 for ignored rows), at the clamped target cosine, float64."""
    o = _full(opts)
    x = np.asarray(x).astype(np.float64)
    if x.ndim == 1:
        x, t = x[None], np.asarray(t).reshape(1)
    t = np.asarray(t).astype(np.int64)
    kept = t != o["ignore_index"]
    xt = x[np.arange(len(t)), np.where(kept, t, 0)] if x.shape[1] else np.zeros(len(t))
    if o["kind"] == "cos":
        return np.ones(len(t))
    m = o["margin"]
    c = np.clip(xt, -1 + MARGIN_EPS, 1 - MARGIN_EPS)
    with np.errstate(invalid="ignore"):
        on = c > 0 if o["easy_margin"] else c - math.cos(math.pi - m) > 0
        d = np.where(on, math.cos(m) + c * math.sin(m) / np.sqrt(1 - c * c), 1.0)
    return np.where(kept, d, 1.0)


def grad_row_scale(x, t, opts, reduction, grad_output):
    """The size of the terms each row's gradient entries are computed from:
    |upstream| * s * max(w) * max(1, |phi'(x_t)|) / (the mean's divisor), shape (N, 1) ((1,)
    for 1-D input). The float64 oracle computes the target entry as s phi' (p_t - 1): for a
    confident row its absolute error is eps64 times this, whatever the entry's size."""
    o = _full(opts)
    x = np.asarray(x)
    N = 1 if x.ndim == 1 else x.shape[0]
    t = np.asarray(t).reshape(N).astype(np.int64)
    kept = t != o["ignore_index"]
    w = np.ones(max(x.shape[-1], 1)) if o["weight"] is None else np.asarray(o["weight"], np.float64)
    go = np.broadcast_to(np.abs(np.asarray(1.0 if grad_output is None else grad_output, np.float64)), (N,))
    div = 1.0
    if reduction == "mean":
        div = float(np.sum(w[np.where(kept, t, 0)] * kept)) or 1.0
    d = np.maximum(1.0, np.abs(np.nan_to_num(dphi_at_target(x, t, opts))))
    s = go * o["scale"] * np.max(np.abs(w)) * d / div * kept
    return s.reshape(-1) if x.ndim == 1 else s.reshape(N, 1)


# --------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------

def make_cosine(rng, shape, how="uniform"):
    """Cosines of shape (N, C) or (C,): uniform in [-1, 1], or the dot products of
    normalized random vectors (embeddings x class centres, dimension 16)."""
    if how == "uniform":
        return rng.uniform(-1.0, 1.0, shape)
    N, C = (1, shape[0]) if len(shape) == 1 else shape
    e = rng.standard_normal((N, 16))
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    w = rng.standard_normal((C, 16))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    return np.clip(e @ w.T, -1.0, 1.0).reshape(shape)


def make_target(rng, shape, ignore=False, ignore_index=-100):
    N, C = (1, shape[0]) if len(shape) == 1 else shape
    t = rng.integers(0, max(C, 1), N)
    if ignore and N > 1:
        t[rng.random(N) < 0.25] = ignore_index
        t[1] = ignore_index
    return t.reshape(()) if len(shape) == 1 else t


def push_targets_near_minus_one(x, t, ignore_index):
    """Target cosines near -1 on some rows (theta + m > pi: the seed's `cosine - mm` branch)."""
    if x.ndim != 2 or x.shape[0] < 3:
        return
    values = [-0.999, -0.9999, -0.995, -0.99]
    for k, r in enumerate(range(0, x.shape[0], 4)):
        if t[r] != ignore_index:
            x[r, t[r]] = values[k % len(values)]


def exact_weights(rng, C, dtype):
    """Class weights exactly representable in the input dtype (bfloat16's 8 bits for halves)."""
    if np.dtype(dtype).itemsize == 2:
        return rng.choice([0.25, 0.5, 1.0, 1.5, 2.0, 3.0], C)
    return rng.uniform(0.2, 3.0, C).astype(np.float32).astype(np.float64)


# the option cases: NumPy-layer options + data flags
CASES = {
    "arc-m0.2-s30": dict(opts=dict(kind="arc", margin=0.2, scale=30.0)),
    "arc-m0-s1": dict(opts=dict(kind="arc", margin=0.0, scale=1.0), data="normalized"),
    "arc-m0.5-s64": dict(opts=dict(kind="arc", margin=0.5, scale=64.0)),
    "arc-m0.2-s64-normalized": dict(opts=dict(kind="arc", margin=0.2, scale=64.0), data="normalized"),
    "arc-easy-m0.5-s30": dict(opts=dict(kind="arc", margin=0.5, scale=30.0, easy_margin=True)),
    "arc-easy-m0.2-s1": dict(opts=dict(kind="arc", margin=0.2, scale=1.0, easy_margin=True), data="normalized"),
    "cos-m0.2-s30": dict(opts=dict(kind="cos", margin=0.2, scale=30.0)),
    "cos-m0-s1": dict(opts=dict(kind="cos", margin=0.0, scale=1.0)),
    "cos-m0.5-s64": dict(opts=dict(kind="cos", margin=0.5, scale=64.0), data="normalized"),
    "arc-weight-ignore": dict(opts=dict(kind="arc", margin=0.2, scale=30.0), weight=True, ignore=True),
    "arc-smooth-0.1": dict(opts=dict(kind="arc", margin=0.5, scale=30.0, label_smoothing=0.1)),
    "arc-all-options-s64": dict(opts=dict(kind="arc", margin=0.5, scale=64.0, label_smoothing=0.1,
                                          ignore_index=-1), weight=True, ignore=True),
    "cos-all-options": dict(opts=dict(kind="cos", margin=0.35, scale=30.0, label_smoothing=0.1),
                            weight=True, ignore=True, data="normalized"),
    "easy-all-options": dict(opts=dict(kind="arc", margin=0.3, scale=16.0, easy_margin=True,
                                       label_smoothing=0.1, ignore_index=2), weight=True, ignore=True),
}

SHAPES = [(1, 1), (3, 7), (40, 5), (17, 130), (64, 1000), (7,)]
SHAPE_IDS = ["x".join(map(str, s)) for s in SHAPES]


def make_problem(shape, case, dtype):
    """(x in dtype, target, options) for one case: deterministic per (shape, case, dtype)."""
    c = CASES[case]
    rng = np.random.default_rng(_seed(shape, case, _name(dtype)))
    opts = dict(c["opts"])
    ii = opts.get("ignore_index", -100)
    x = make_cosine(rng, shape, c.get("data", "uniform"))
    t = make_target(rng, shape, c.get("ignore", False), ii)
    push_targets_near_minus_one(x, t, ii)
    if c.get("weight"):
        opts["weight"] = exact_weights(rng, shape[-1], dtype)
    return x.astype(dtype), t, opts


def upstreams(shape, dtype, reduction):
    """grad_output variants: None, and a scalar (mean/sum) or an (N,) array (none)."""
    if reduction != "none":
        return [None, -2.5]
    n = () if len(shape) == 1 else (shape[0],)
    go = np.random.default_rng(_seed("go", shape)).uniform(-2.0, 2.0, n).astype(dtype)
    return [None, go]


@functools.lru_cache(maxsize=None)
def expected(dtype_name, shape, case):
    """The oracle's (loss, grad) for every (reduction, upstream index) of one problem."""
    import torch
    dtype = BF16 if dtype_name == "bfloat16" else np.dtype(dtype_name)
    x, t, opts = make_problem(shape, case, dtype)
    out = {}
    for red in REDUCTIONS:
        for k, go in enumerate(upstreams(shape, dtype, red)):
            out[red, k] = oracle(torch, x, t, opts, red, go)
    return out


# --------------------------------------------------------------------------
# comparisons
# --------------------------------------------------------------------------

def check_loss_type(loss, x, reduction):
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.shape == (x.shape[:1] if x.ndim == 2 else ())
        assert loss.dtype == x.dtype, (loss.dtype, x.dtype)
    else:
        assert type(loss) is x.dtype.type, (type(loss), x.dtype)


def check_grad_type(grad, x):
    assert isinstance(grad, np.ndarray)
    assert grad.shape == x.shape and grad.dtype == x.dtype, (grad.shape, grad.dtype, x.shape, x.dtype)


def tolerances(dtype, scale):
    """(loss rtol, loss atol per row, gradient rtol). float32 computes s (x_k - m) in float32:
    its error grows with the scale s."""
    f = max(1.0, scale / 8.0)
    if np.dtype(dtype) == np.float64:
        return 1e-12, 1e-13 * f, 1e-12
    return 1e-5, 1e-6 * f, 1e-5 * max(1.0, scale / 16.0)


def assert_loss_close(actual, want, dtype, opts, reduction, n_rows, what=""):
    o = _full(opts)
    rtol, atol, _ = tolerances(dtype, o["scale"])
    if reduction == "sum":
        wmax = 1.0 if o["weight"] is None else float(np.max(np.abs(o["weight"])))
        atol *= max(1, n_rows) * wmax
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(want, np.float64), rtol=rtol, atol=atol,
                               equal_nan=True, err_msg=what)


def assert_gradient_close(actual, want, x, t, opts, reduction, grad_output, dtype, what=""):
    o = _full(opts)
    _, _, rtol = tolerances(dtype, o["scale"])
    e = np.abs(np.nan_to_num(np.asarray(want, np.float64), nan=0.0, posinf=0.0, neginf=0.0))
    rowmax = (e.max(axis=-1, keepdims=True) if e.ndim == 2 else e.max(keepdims=True)) if e.size else 0.0
    scale = np.maximum(rowmax, grad_row_scale(x, t, opts, reduction, grad_output)) if e.size else None
    assert_grad_close(actual, want, rtol, dtype=np.dtype(dtype), scale=scale, err_msg=what)


def assert_ignored_rows_zero(grad, t, opts):
    ii = _full(opts)["ignore_index"]
    if grad.ndim == 2:
        ign = np.asarray(t) == ii
        assert np.all(np.asarray(grad[ign], np.float64) == 0), "an ignored row's gradient is exactly 0"


def snapshot(*arrays):
    return [None if a is None else (np.asarray(a).dtype.str, np.asarray(a).shape, np.asarray(a).tobytes())
            for a in arrays]


def run_fast_against(x, t, opts, want, dtype, what):
    """The NumPy layer on (x, t, opts) against want[reduction, k] = (loss, grad), k indexing
    upstreams(); arguments never modified; loss-only and fused entry points agree bitwise."""
    before = snapshot(x, t, opts.get("weight"))
    n_rows = 1 if x.ndim == 1 else x.shape[0]
    for red in REDUCTIONS:
        plain = fastloss.margin_cross_entropy(x, t, reduction=red, **opts)
        check_loss_type(plain, x, red)
        for k, go in enumerate(upstreams(x.shape, dtype, red)):
            wl, wg = want[red, k]
            loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, grad_output=go, **opts)
            check_loss_type(loss, x, red)
            check_grad_type(grad, x)
            tag = f"{what} reduction={red} grad_output={'array' if isinstance(go, np.ndarray) else go}"
            assert_loss_close(loss, wl, dtype, opts, red, n_rows, tag + " loss")
            assert_gradient_close(grad, wg, x, t, opts, red, go, dtype, tag + " grad")
            assert_ignored_rows_zero(grad, t, opts)
            np.testing.assert_array_equal(np.asarray(plain), np.asarray(loss), err_msg=tag + " loss-only vs fused")
    assert snapshot(x, t, opts.get("weight")) == before, "an argument was modified"


# --------------------------------------------------------------------------
# 1. NumPy layer vs the seed oracle (float32, float64, every SIMD path)
# --------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("case", list(CASES))
def test_numpy_matches_seed_oracle(torch, simd, dtype, shape, case):
    x, t, opts = make_problem(shape, case, dtype)
    want = expected(_name(dtype), shape, case)
    (_, _), stats = ran(fastloss.margin_cross_entropy_with_grad, x, t, **opts)
    assert stats.get("simd") == simd, stats
    run_fast_against(x, t, opts, want, dtype, f"{case} {shape} {_name(dtype)} {simd}")


def test_near_minus_one_targets_take_the_fallback_branch(torch):
    """The data of test 1 really reaches the seed's `cosine - mm` branch (theta + m > pi),
    and there phi' = 1: the target entry is s (p_t - 1) (sum, unweighted)."""
    x, t, opts = make_problem((64, 1000), "arc-m0.5-s64", np.float64)
    th = math.cos(math.pi - 0.5)
    rows = np.flatnonzero(x[np.arange(64), t] < th)
    assert len(rows) >= 8
    loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction="sum", **opts)
    z = oracle_logits(torch, torch.tensor(x), torch.tensor(t), 0.5, 64.0, "arc", False, -100).numpy()
    zmax = z.max(axis=1, keepdims=True)
    p = np.exp(z - zmax) / np.exp(z - zmax).sum(axis=1, keepdims=True)
    mm = math.sin(math.pi - 0.5) * 0.5
    np.testing.assert_allclose(z[rows, t[rows]], 64.0 * (x[rows, t[rows]] - mm), rtol=1e-15)
    others = p[rows].copy()
    others[np.arange(len(rows)), t[rows]] = 0.0
    rest = others.sum(axis=1)                        # 1 - p_t without cancellation
    np.testing.assert_allclose(grad[rows, t[rows]], -64.0 * rest, rtol=1e-12)


# --------------------------------------------------------------------------
# 2. NumPy layer vs fastloss.reference; reference vs the oracle
# --------------------------------------------------------------------------

REF_CASES = ["arc-m0.2-s30", "arc-m0.5-s64", "arc-easy-m0.5-s30", "cos-m0.5-s64", "arc-all-options-s64",
             "cos-all-options", "easy-all-options"]
REF_SHAPES = [(3, 7), (40, 5), (17, 130), (7,)]
REF_SHAPE_IDS = ["x".join(map(str, s)) for s in REF_SHAPES]


def reference_results(x, t, opts, x_for_ref=None):
    """fastloss.reference's (loss, grad) for every (reduction, upstream index)."""
    xr = x if x_for_ref is None else x_for_ref
    out = {}
    for red in REDUCTIONS:
        for k, go in enumerate(upstreams(x.shape, x.dtype, red)):
            loss, grad = ref.margin_cross_entropy_with_grad(xr, t, reduction=red, grad_output=go, **opts)
            check_loss_type(loss, xr, red)
            check_grad_type(grad, xr)
            np.testing.assert_array_equal(np.asarray(ref.margin_cross_entropy(xr, t, reduction=red, **opts)),
                                          np.asarray(loss))
            out[red, k] = (np.asarray(loss, np.float64), np.asarray(grad, np.float64))
    return out


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", REF_SHAPES, ids=REF_SHAPE_IDS)
@pytest.mark.parametrize("case", REF_CASES)
def test_numpy_matches_reference(simd, dtype, shape, case):
    x, t, opts = make_problem(shape, case, dtype)
    run_fast_against(x, t, opts, reference_results(x, t, opts), dtype, f"{case} {shape} vs reference")


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("shape", REF_SHAPES, ids=REF_SHAPE_IDS)
@pytest.mark.parametrize("case", REF_CASES)
def test_reference_matches_seed_oracle(torch, dtype, shape, case):
    """The reference in float64 on the same values, against the oracle (its float32 result is
    that value rounded once: the float32 tolerances hold too)."""
    x, t, opts = make_problem(shape, case, dtype)
    want = expected(_name(dtype), shape, case)
    got64 = reference_results(x, t, opts, x_for_ref=x.astype(np.float64))
    got = reference_results(x, t, opts)
    n_rows = 1 if x.ndim == 1 else x.shape[0]
    for key, (wl, wg) in want.items():
        red, k = key
        go = upstreams(x.shape, dtype, red)[k]
        for dt, res in ((np.float64, got64), (dtype, got)):
            assert_loss_close(res[key][0], wl, dt, opts, red, n_rows, f"reference {key} loss")
            assert_gradient_close(res[key][1], wg, x, t, opts, red, go, dt, f"reference {key} grad")


# --------------------------------------------------------------------------
# 3. float16 and bfloat16: within 1 ulp of the float64 oracle on the same values
# --------------------------------------------------------------------------

HALVES = ["float16", "bfloat16"]
HALF_CASES = ["arc-m0.2-s30", "arc-m0.5-s64", "arc-easy-m0.5-s30", "cos-m0.2-s30", "arc-weight-ignore",
              "arc-m0-s1"]
HALF_SHAPES = [(3, 7), (17, 130), (64, 1000)]


def half_dtype(name):
    assert BF16 is not None or name != "bfloat16", "ml_dtypes is required"
    return np.dtype(BF16) if name == "bfloat16" else np.dtype(np.float16)


def ulp_of(w64, dt):
    """The half dtype's ulp at each |w64| (the spacing above |w64| rounded; subnormal spacing
    for tiny values; the spacing below at the largest finite)."""
    with np.errstate(over="ignore", invalid="ignore"):
        rb = np.abs(np.asarray(w64, np.float64)).astype(dt).view(np.uint16).astype(np.int64)
    top = 0x7F7F if dt.name == "bfloat16" else 0x7BFF
    rb = np.minimum(rb, top - 1)
    lo = rb.astype(np.uint16).view(dt).astype(np.float64)
    hi = (rb + 1).astype(np.uint16).view(dt).astype(np.float64)
    return hi - lo


def assert_within_ulp(got, want64, dt, what, slack=0.0, ulps=1.0):
    """|got - want64| <= ulps * ulp(want64) + slack (slack: the float64 oracle's own rounding,
    eps64 times the size of the terms it cancels), NaN at the same places."""
    w = np.asarray(want64, np.float64)
    g = np.asarray(got).astype(np.float64)
    assert np.array_equal(np.isnan(g), np.isnan(w)), (what, "NaN differs")
    with np.errstate(invalid="ignore"):
        err = np.abs(g - w)
    ok = (err <= ulps * ulp_of(w, dt) + slack) | (np.isnan(g) & np.isnan(w)) | (g == w)
    assert np.all(ok), (what, np.flatnonzero(~ok.ravel())[:5], g[~ok][:5], w[~ok][:5],
                        (err / ulp_of(w, dt))[~ok][:5])


def check_half_against(x, t, opts, want_fn, dt, what):
    s = _full(opts)["scale"]
    for red in REDUCTIONS:
        for k, go in enumerate(upstreams(x.shape, dt, red)):
            wl, wg = want_fn(red, k, go)
            loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, grad_output=go, **opts)
            check_loss_type(loss, x, red)
            check_grad_type(grad, x)
            tag = f"{what} {red} go#{k}"
            assert_within_ulp(loss, wl, dt, tag + " loss", slack=8 * EPS64 * s * 4 * (x.shape[0] if red == "sum" else 1))
            slack = 8 * EPS64 * grad_row_scale(x, t, opts, red, go)
            assert_within_ulp(grad, wg, dt, tag + " grad", slack=slack)
            assert_ignored_rows_zero(grad, t, opts)
            plain = fastloss.margin_cross_entropy(x, t, reduction=red, **opts)
            check_loss_type(plain, x, red)
            assert_within_ulp(plain, wl, dt, tag + " loss-only", slack=8 * EPS64 * s * 4 * (x.shape[0] if red == "sum" else 1))


@pytest.mark.parametrize("name", HALVES)
@pytest.mark.parametrize("shape", HALF_SHAPES, ids=str)
@pytest.mark.parametrize("case", HALF_CASES)
def test_half_dtypes_within_one_ulp_of_oracle(torch, simd, name, shape, case):
    dt = half_dtype(name)
    x, t, opts = make_problem(shape, case, dt)
    assert x.dtype == dt
    before = snapshot(x, t)

    def want(red, k, go):
        return oracle(torch, x, t, opts, red, go)    # float64 from the half-rounded values

    check_half_against(x, t, opts, want, dt, f"{name} {case} {shape} {simd}")
    assert snapshot(x, t) == before


@pytest.mark.parametrize("name", HALVES)
@pytest.mark.parametrize("case", ["arc-m0.5-s64", "cos-all-options"])
def test_half_dtypes_within_one_ulp_of_reference(simd, name, case):
    dt = half_dtype(name)
    x, t, opts = make_problem((17, 130), case, dt)
    x64 = x.astype(np.float64)

    def want(red, k, go):
        go64 = None if go is None else np.asarray(go).astype(np.float64)
        return ref.margin_cross_entropy_with_grad(x64, t, reduction=red, grad_output=go64, **opts)

    check_half_against(x, t, opts, want, dt, f"{name} {case} vs reference")
    # the reference's own half result: its float64 value rounded to the dtype
    l_ref, g_ref = ref.margin_cross_entropy_with_grad(x, t, reduction="none", **opts)
    assert l_ref.dtype == dt and g_ref.dtype == dt


# --------------------------------------------------------------------------
# 4. edge values
# --------------------------------------------------------------------------

EDGE_OPTS = {
    "arc": dict(kind="arc", margin=0.2, scale=30.0),
    "arc-m0.5-s64": dict(kind="arc", margin=0.5, scale=64.0),
    "easy": dict(kind="arc", margin=0.5, scale=30.0, easy_margin=True),
    "cos": dict(kind="cos", margin=0.3, scale=30.0),
}
F3264 = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", F3264, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(EDGE_OPTS))
def test_empty_batch(simd, dtype, kind):
    opts = EDGE_OPTS[kind]
    x = np.zeros((0, 7), dtype)
    t = np.zeros(0, np.int64)
    mean = fastloss.margin_cross_entropy(x, t, **opts)
    assert type(mean) is np.dtype(dtype).type and np.isnan(mean)
    s = fastloss.margin_cross_entropy(x, t, reduction="sum", **opts)
    assert type(s) is np.dtype(dtype).type and s == 0
    none = fastloss.margin_cross_entropy(x, t, reduction="none", **opts)
    assert none.shape == (0,) and none.dtype == dtype
    for red in REDUCTIONS:
        loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, **opts)
        check_grad_type(grad, x)
        assert grad.shape == (0, 7)
    assert np.isnan(ref.margin_cross_entropy(x, t, **opts))
    assert ref.margin_cross_entropy(x, t, reduction="sum", **opts) == 0


@pytest.mark.parametrize("dtype", F3264, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(EDGE_OPTS))
@pytest.mark.parametrize("extra", ["plain", "weight+smoothing"])
def test_all_rows_ignored(torch, simd, dtype, kind, extra):
    rng = np.random.default_rng(_seed("allign", kind, extra))
    opts = dict(EDGE_OPTS[kind])
    if extra != "plain":
        opts.update(weight=exact_weights(rng, 9, dtype), label_smoothing=0.1)
    x = rng.uniform(-1, 1, (11, 9)).astype(dtype)
    t = np.full(11, -100)
    mean = fastloss.margin_cross_entropy(x, t, **opts)
    assert type(mean) is np.dtype(dtype).type and np.isnan(mean)
    assert fastloss.margin_cross_entropy(x, t, reduction="sum", **opts) == 0
    assert np.all(fastloss.margin_cross_entropy(x, t, reduction="none", **opts) == 0)
    for red in REDUCTIONS:
        loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, **opts)
        assert np.all(grad == 0), (red, grad)
        wl, wg = oracle(torch, x, t, opts, red)
        np.testing.assert_array_equal(np.asarray(loss, np.float64), wl)  # nan / 0 / zeros, like torch
        np.testing.assert_array_equal(grad.astype(np.float64), wg)


@pytest.mark.parametrize("dtype", F3264, ids=["f32", "f64"])
@pytest.mark.parametrize("kind", list(EDGE_OPTS))
def test_nan_cosine_gives_nan_like_torch(torch, simd, dtype, kind):
    """NaN at a row's target cosine and at another row's non-target cosine: those rows' losses
    are NaN (the others not), the mean and sum are NaN, the gradient is NaN exactly where the
    oracle's is, and equal elsewhere."""
    opts = EDGE_OPTS[kind]
    for shape in ((11, 7), (5, 130)):
        rng = np.random.default_rng(_seed("nan", kind, shape))
        x = rng.uniform(-1, 1, shape)
        t = rng.integers(0, shape[1], shape[0])
        t[0] = 3
        x[2, t[2]] = np.nan
        x[4, (t[4] + 1) % shape[1]] = np.nan
        x = x.astype(dtype)
        none = fastloss.margin_cross_entropy(x, t, reduction="none", **opts)
        assert np.isnan(none[[2, 4]]).all() and np.isfinite(np.delete(none, [2, 4])).all(), none
        assert np.isnan(fastloss.margin_cross_entropy(x, t, **opts))
        assert np.isnan(fastloss.margin_cross_entropy(x, t, reduction="sum", **opts))
        for red in REDUCTIONS:
            loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, **opts)
            wl, wg = oracle(torch, x, t, opts, red)
            assert_loss_close(loss, wl, dtype, opts, red, shape[0], f"nan {red} loss")
            assert_gradient_close(grad, wg, x, t, opts, red, None, dtype, f"nan {red} grad")


UNIT_VALUES = [1.0, 1.0000001, -1.0, -1.0000001]
UNIT_OPTS = {
    "arc-m0.2-s30": dict(kind="arc", margin=0.2, scale=30.0),
    "arc-m0.5-s64": dict(kind="arc", margin=0.5, scale=64.0),
    "arc-m0-s30": dict(kind="arc", margin=0.0, scale=30.0),
    "easy-m0.5-s30": dict(kind="arc", margin=0.5, scale=30.0, easy_margin=True),
    "cos-m0.2-s30": dict(kind="cos", margin=0.2, scale=30.0),
    "arc-smooth-weight": dict(kind="arc", margin=0.3, scale=30.0, label_smoothing=0.1,
                              weight=np.array([0.5, 1.0, 2.0, 1.5, 0.75, 1.25, 3.0, 1.0, 0.25])),
}


def _unit_problem(dtype, nontarget_units):
    """Rows 0..3: target cosine 1.0, 1.0000001, -1.0, -1.0000001 (in the dtype); rows 4..7:
    the same values in several target columns; with nontarget_units, rows 8, 9 also hold +-1
    off the target."""
    rng = np.random.default_rng(_seed("unit", nontarget_units))
    x = rng.uniform(-0.95, 0.95, (10, 9))
    t = rng.integers(0, 9, 10)
    t[4:8] = [0, 8, 4, 7]
    for r in range(8):
        x[r, t[r]] = UNIT_VALUES[r % 4]
    if nontarget_units:
        for r, v in ((8, 1.0), (9, -1.0)):
            x[r, (t[r] + 1) % 9] = v
            x[r, (t[r] + 2) % 9] = -v
    return x.astype(dtype), t


@pytest.mark.parametrize("dtype", F3264, ids=["f32", "f64"])
@pytest.mark.parametrize("case", list(UNIT_OPTS))
@pytest.mark.parametrize("nontarget_units", [False, True], ids=["targets", "targets+others"])
def test_cosine_at_plus_minus_one_is_finite(torch, simd, dtype, case, nontarget_units):
    """Cosines 1.0, 1.0000001, -1.0, -1.0000001 at the target: finite loss and gradient,
    those of the oracle at the clamped value [-1 + 1e-7, 1 - 1e-7] (kind arc), and the
    target entry of the gradient is s phi'(c) (p_t - 1) with phi'(c) = cos m + c sin m /
    sqrt(1 - c^2) on the margin branch, 1 otherwise (the seed's gradient is NaN or inf
    there)."""
    opts = UNIT_OPTS[case]
    o = _full(opts)
    x, t = _unit_problem(dtype, nontarget_units)
    if np.dtype(dtype) == np.float32:
        assert x[1, t[1]] > 1 and x[3, t[3]] < -1      # 1.0000001 is beyond 1 in float32 too
    for red in REDUCTIONS:
        for go in upstreams(x.shape, dtype, red):
            loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, grad_output=go, **opts)
            assert np.all(np.isfinite(loss)) and np.all(np.isfinite(grad)), (red, loss, grad)
            wl, wg = oracle(torch, x, t, opts, red, go)
            assert np.all(np.isfinite(wl)) and np.all(np.isfinite(wg))
            assert_loss_close(loss, wl, dtype, opts, red, x.shape[0], f"+-1 {red} loss")
            assert_gradient_close(grad, wg, x, t, opts, red, go, dtype, f"+-1 {red} grad")
            assert np.isfinite(fastloss.margin_cross_entropy(x, t, reduction=red, **opts)).all()
    if nontarget_units:
        return
    # the seed verbatim (no clamp) evaluated at the clamped target cosines gives the same
    x_c = x.astype(np.float64)
    rows = np.arange(len(t))
    if o["kind"] == "arc":
        x_c[rows, t] = np.clip(x_c[rows, t], -1 + MARGIN_EPS, 1 - MARGIN_EPS)
    for red in REDUCTIONS:
        wl, wg = oracle(torch, x_c, t, opts, red, clamp=False)
        loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, **opts)
        assert_loss_close(loss, wl, dtype, opts, red, x.shape[0], f"seed at clamped {red} loss")
        assert_gradient_close(grad, wg, x, t, opts, red, None, dtype, f"seed at clamped {red} grad")
    # the target entry, spelled out (sum, no smoothing, unweighted cases)
    if o["label_smoothing"] == 0 and o["weight"] is None:
        _, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction="sum", **opts)
        z = oracle_logits(torch, torch.tensor(x_c), torch.tensor(t), o["margin"], o["scale"], o["kind"],
                          o["easy_margin"], -100, clamp=False).numpy()
        e = np.exp(z - z.max(axis=1, keepdims=True))
        others = e.copy()
        others[rows, t] = 0.0
        one_minus_pt = others.sum(axis=1) / e.sum(axis=1)     # 1 - p_t, no cancellation
        d = dphi_at_target(x, t, opts)
        want_t = -o["scale"] * d * one_minus_pt
        _, _, rtol = tolerances(dtype, o["scale"])
        # at c = 1 - 1e-7, sqrt(1 - c^2) is conditioned as eps64 / (1 - c^2) ~ 6e-10 (for
        # every double evaluation of phi', the kernel's as this one's)
        rtol = max(10 * rtol, 4 * EPS64 / (2 * MARGIN_EPS))
        np.testing.assert_allclose(grad[rows, t].astype(np.float64), want_t, rtol=rtol,
                                   atol=1e-300, err_msg="target entry != s phi'(c) (p_t - 1)")
        if o["kind"] == "arc" and not o["easy_margin"] and o["margin"] > 0:
            c = 1 - MARGIN_EPS
            assert d[0] == pytest.approx(math.cos(o["margin"]) + c * math.sin(o["margin"]) / math.sqrt(1 - c * c))


# --------------------------------------------------------------------------
# 5. bad arguments
# --------------------------------------------------------------------------

def _x(shape=(4, 5), dtype=np.float64, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype(dtype)


def _t():
    return np.array([0, 3, 1, 4])


def _probs(dtype=np.float64):
    y = np.random.default_rng(3).random((4, 5))
    return (y / y.sum(axis=1, keepdims=True)).astype(dtype)


BAD = {
    # target values
    "target-eq-C": (IndexError, lambda: dict(cosine=_x(), target=np.array([0, 5, 1, 2]))),
    "target-negative": (IndexError, lambda: dict(cosine=_x(), target=np.array([0, -1, 1, 2]))),
    "target-big": (IndexError, lambda: dict(cosine=_x(), target=np.array([0, 1, 2, 2**40]))),
    "target-last-row": (IndexError, lambda: dict(cosine=_x(), target=np.array([0, 1, 2, 9]))),
    "target-ignore-default-with-custom": (IndexError, lambda: dict(cosine=_x(), target=np.array([0, -100, 1, 2]),
                                                                 ignore_index=-1)),
    "target-1d-input-eq-C": (IndexError, lambda: dict(cosine=_x((5,)), target=np.array(5))),
    "target-f32-input": (IndexError, lambda: dict(cosine=_x(dtype=np.float32), target=np.array([7, 0, 0, 0]))),
    # probability targets: margin needs class indices
    "target-prob-f64": (ValueError, lambda: dict(cosine=_x(), target=_probs())),
    "target-prob-f32": (ValueError, lambda: dict(cosine=_x(dtype=np.float32), target=_probs(np.float32))),
    "target-prob-onehot": (ValueError, lambda: dict(cosine=_x(), target=np.eye(5)[_t()])),
    # options
    "kind-unknown": (ValueError, lambda: dict(cosine=_x(), target=_t(), kind="sphere")),
    "kind-upper": (ValueError, lambda: dict(cosine=_x(), target=_t(), kind="ARC")),
    "kind-empty": (ValueError, lambda: dict(cosine=_x(), target=_t(), kind="")),
    "scale-0": (ValueError, lambda: dict(cosine=_x(), target=_t(), scale=0.0)),
    "scale-negative": (ValueError, lambda: dict(cosine=_x(), target=_t(), scale=-30.0)),
    "scale-nan": (ValueError, lambda: dict(cosine=_x(), target=_t(), scale=math.nan)),
    "scale-inf": (ValueError, lambda: dict(cosine=_x(), target=_t(), scale=math.inf)),
    "margin-nan": (ValueError, lambda: dict(cosine=_x(), target=_t(), margin=math.nan)),
    "margin-inf": (ValueError, lambda: dict(cosine=_x(), target=_t(), margin=math.inf)),
    "margin-neginf": (ValueError, lambda: dict(cosine=_x(), target=_t(), margin=-math.inf)),
    "margin-nan-cos": (ValueError, lambda: dict(cosine=_x(), target=_t(), margin=math.nan, kind="cos")),
    "easy-with-cos": (ValueError, lambda: dict(cosine=_x(), target=_t(), kind="cos", easy_margin=True)),
    "smoothing-negative": (ValueError, lambda: dict(cosine=_x(), target=_t(), label_smoothing=-0.1)),
    "smoothing-1.5": (ValueError, lambda: dict(cosine=_x(), target=_t(), label_smoothing=1.5)),
    "smoothing-nan": (ValueError, lambda: dict(cosine=_x(), target=_t(), label_smoothing=math.nan)),
    "reduction-unknown": (ValueError, lambda: dict(cosine=_x(), target=_t(), reduction="avg")),
    "reduction-upper": (ValueError, lambda: dict(cosine=_x(), target=_t(), reduction="MEAN")),
    # cosine
    "cosine-int": (TypeError, lambda: dict(cosine=np.arange(20).reshape(4, 5), target=_t())),
    "cosine-int-zeros": (TypeError, lambda: dict(cosine=np.zeros((4, 5), np.int32), target=_t())),
    "cosine-0d": (ValueError, lambda: dict(cosine=np.float64(0.5), target=np.array(0))),
    "cosine-0d-array": (ValueError, lambda: dict(cosine=np.array(0.5), target=np.array(0))),
    # target shape
    "target-batch-mismatch": (ValueError, lambda: dict(cosine=_x(), target=np.array([0, 1, 2, 3, 4]))),
    "target-short": (ValueError, lambda: dict(cosine=_x(), target=np.array([0, 1, 2]))),
    "target-2d": (ValueError, lambda: dict(cosine=_x(), target=_t().reshape(4, 1))),
    "target-0d-for-2d": (ValueError, lambda: dict(cosine=_x(), target=np.array(1))),
    "target-1d-input-len2": (ValueError, lambda: dict(cosine=_x((5,)), target=np.array([1, 2]))),
    # out=
    "out-wrong-shape": (ValueError, lambda: dict(cosine=_x(), target=_t(), out=np.empty((5, 4)))),
    "out-extra-dim": (ValueError, lambda: dict(cosine=_x(), target=_t(), out=np.empty((4, 5, 1)))),
    "out-wrong-dtype": (TypeError, lambda: dict(cosine=_x(), target=_t(), out=np.empty((4, 5), np.float32))),
    "out-f64-for-f32": (TypeError, lambda: dict(cosine=_x(dtype=np.float32), target=_t(), out=np.empty((4, 5)))),
    # grad_output
    "go-array-for-mean": (ValueError, lambda: dict(cosine=_x(), target=_t(), grad_output=np.ones(4))),
    "go-wrong-shape-for-none": (ValueError, lambda: dict(cosine=_x(), target=_t(), grad_output=np.ones(5),
                                                         reduction="none")),
}


def _positional(kw):
    kw = dict(kw)
    return kw.pop("cosine"), kw.pop("target"), kw


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_raise_before_any_kernel(simd, name):
    exc_type, make = BAD[name]
    x, t, kw = _positional(make())
    grad_only = "out" in kw or "grad_output" in kw
    fns = [fastloss.margin_cross_entropy_with_grad] + ([] if grad_only else [fastloss.margin_cross_entropy])
    out = kw.get("out")
    if out is not None:
        out[...] = 123.0
    before = snapshot(x, t, out)
    for fn in fns:
        with record() as stats:
            with pytest.raises(exc_type):
                fn(x, t, **kw)
        assert "kernel" not in stats, f"{fn.__name__}: a kernel ran before the error: {stats}"
        assert snapshot(x, t, out) == before, f"{fn.__name__} modified an argument"
    # the reference raises the same
    rfns = [ref.margin_cross_entropy_with_grad] + ([] if grad_only else [ref.margin_cross_entropy])
    for fn in rfns:
        with pytest.raises(exc_type):
            fn(x, t, **kw)
    assert snapshot(x, t, out) == before


@pytest.mark.parametrize("dtype", F3264, ids=["f32", "f64"])
@pytest.mark.parametrize("shape", [(3, 7), (17, 130), (7,)], ids=str)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bad_last_target_writes_nothing(simd, dtype, shape, reduction):
    """A bad class index in the LAST row: IndexError with torch's message; neither out= nor
    (with out= the cosine itself) the input is touched."""
    rng = np.random.default_rng(_seed("badlast", shape, _name(dtype)))
    x = rng.uniform(-1, 1, shape).astype(dtype)
    C = shape[-1]
    t = np.array(C + 3) if len(shape) == 1 else np.append(rng.integers(0, C, shape[0] - 1), C + 3)
    msg = rf"^Target {C + 3} is out of bounds\.$"
    out = np.full(shape, 123.0, dtype)
    with pytest.raises(IndexError, match=msg):
        fastloss.margin_cross_entropy_with_grad(x, t, reduction=reduction, out=out)
    assert np.all(out == 123.0)
    xb = x.copy()
    with pytest.raises(IndexError, match=msg):
        fastloss.margin_cross_entropy_with_grad(x, t, reduction=reduction, out=x)
    assert x.tobytes() == xb.tobytes()
    with pytest.raises(IndexError, match=msg):
        fastloss.margin_cross_entropy(x, t, reduction=reduction, kind="cos")


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"], ids=str)
def test_arguments_not_modified_and_out(simd, dtype):
    """Valid calls leave cosine, target, weight and grad_output as they were; out= is filled
    and returned, also in place over the cosine."""
    dt = half_dtype("bfloat16") if dtype == "bfloat16" else np.dtype(dtype)
    x, t, opts = make_problem((17, 130), "arc-all-options-s64", dt)
    go = np.random.default_rng(5).uniform(-1, 1, 17).astype(dt)
    before = snapshot(x, t, opts["weight"], go)
    for red in REDUCTIONS:
        g_arg = go if red == "none" else 2.0
        e_loss, e_grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, grad_output=g_arg, **opts)
        out = np.full(x.shape, 7.0, dt)
        loss, grad = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, grad_output=g_arg, out=out,
                                                             **opts)
        assert grad is out
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(e_loss))
        np.testing.assert_array_equal(out, e_grad)
        assert snapshot(x, t, opts["weight"], go) == before
        xi = x.copy()
        loss, grad = fastloss.margin_cross_entropy_with_grad(xi, t, reduction=red, grad_output=g_arg, out=xi,
                                                             **opts)
        assert grad is xi
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(e_loss))
        np.testing.assert_array_equal(xi, e_grad)


# --------------------------------------------------------------------------
# 6. fastloss.torch.margin_cross_entropy
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def flt(torch):
    import fastloss.torch
    return fastloss.torch


TORCH_CASES = ["arc-m0.2-s30", "arc-easy-m0.5-s30", "cos-m0.5-s64", "arc-all-options-s64"]
TORCH_DTYPES = ["float32", "float64", "bfloat16"]


def _torch_weight(torch, opts, dtype):
    w = opts.get("weight")
    return None if w is None else torch.tensor(np.array(w, np.float64)).to(dtype)


# a random upstream vector only with reduction "none" (a reduced loss is a scalar)
UPSTREAMS = [(r, u) for u in ("backward", "times3", "random") for r in REDUCTIONS if u != "random" or r == "none"]


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("case", TORCH_CASES)
@pytest.mark.parametrize("reduction, upstream", UPSTREAMS)
def test_torch_functional_matches_oracle(torch, flt, dtype, case, reduction, upstream):
    tdt = getattr(torch, dtype)
    shape = (17, 130)
    xn, t, opts = make_problem(shape, case, half_dtype("bfloat16") if dtype == "bfloat16" else np.dtype(dtype))
    x = torch.tensor(xn.astype(np.float64)).to(tdt).requires_grad_()
    xv = x.detach().double().numpy().copy()           # the (rounded) values the kernel sees
    tt = torch.tensor(t)
    topts = dict(opts)
    topts["weight"] = _torch_weight(torch, opts, tdt)
    loss = flt.margin_cross_entropy(x, tt, reduction=reduction, **topts)
    assert loss.dtype == tdt
    assert loss.shape == ((17,) if reduction == "none" else ())
    if upstream == "backward":
        (loss.sum() if reduction == "none" else loss).backward()
        go = None
    elif upstream == "times3":
        ((loss * 3).sum() if reduction == "none" else loss * 3).backward()
        go = 3.0
    else:
        v = torch.tensor(np.random.default_rng(9).uniform(-2, 2, 17)).to(tdt)
        loss.backward(v)
        go = v.double().numpy().copy()
    assert x.grad is not None and x.grad.dtype == tdt and x.grad.shape == x.shape
    wl, wg = oracle(torch, xv, t, opts, reduction, go)
    got_l, got_g = loss.detach().double().numpy(), x.grad.double().numpy()
    if dtype == "bfloat16":
        dt = half_dtype("bfloat16")
        s = _full(opts)["scale"]
        assert_within_ulp(got_l, wl, dt, "torch bf16 loss",
                          slack=8 * EPS64 * s * 4 * (17 if reduction == "sum" else 1))
        assert_within_ulp(got_g, wg, dt, f"torch bf16 grad ({upstream})",
                          slack=8 * EPS64 * grad_row_scale(xv, t, opts, reduction, go))
    else:
        npdt = np.dtype(dtype)
        assert_loss_close(got_l, wl, npdt, opts, reduction, 17, "torch loss")
        assert_gradient_close(got_g, wg, xv, t, opts, reduction, go, npdt, f"torch grad ({upstream})")


def test_torch_functional_no_grad_and_1d(torch, flt):
    x64, t, opts = make_problem((7,), "arc-m0.5-s64", np.float64)
    x = torch.tensor(x64, requires_grad=True)
    loss = flt.margin_cross_entropy(x, torch.tensor(t), **opts)
    loss.backward()
    wl, wg = oracle(torch, x64, t, opts, "mean")
    assert_loss_close(loss.detach().numpy(), wl, np.float64, opts, "mean", 1)
    assert_gradient_close(x.grad.numpy(), wg, x64, t, opts, "mean", None, np.float64)
    with torch.no_grad():
        v = flt.margin_cross_entropy(torch.tensor(x64), torch.tensor(t), **opts)
    assert v.item() == loss.item()


def _small_case(torch, variant):
    rng = np.random.default_rng(_seed("small", variant))
    # cosines away from the branch points (0 for easy_margin, cos(pi - m)) and from +-1
    x = np.sign(rng.standard_normal((5, 7))) * rng.uniform(0.05, 0.9, (5, 7))
    t = rng.integers(0, 7, 5)
    opts = {"arc": dict(kind="arc", margin=0.3, scale=4.0),
            "cos": dict(kind="cos", margin=0.3, scale=4.0),
            "easy": dict(kind="arc", margin=0.3, scale=4.0, easy_margin=True),
            "arc-options": dict(kind="arc", margin=0.5, scale=3.0, label_smoothing=0.1,
                                weight=np.array([0.5, 1.0, 2.0, 1.5, 0.75, 1.25, 3.0]))}[variant]
    if variant == "arc-options":
        t[2] = -100
    return x, t, opts


SMALL_VARIANTS = ["arc", "cos", "easy", "arc-options"]


@pytest.mark.parametrize("variant", SMALL_VARIANTS)
@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_torch_gradcheck(torch, flt, variant, reduction):
    x64, t, opts = _small_case(torch, variant)
    tt = torch.tensor(t)
    topts = dict(opts)
    topts["weight"] = _torch_weight(torch, opts, torch.float64)
    x = torch.tensor(x64, requires_grad=True)

    def f(c):
        return flt.margin_cross_entropy(c, tt, reduction=reduction, **topts)

    assert torch.autograd.gradcheck(f, (x,), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("variant", SMALL_VARIANTS)
def test_torch_double_backward_raises(torch, flt, variant):
    """create_graph=True through the kernel path raises (it keeps the gradient, not the
    cosine, so there is nothing to differentiate again); without create_graph the same graph
    gives the oracle's gradient."""
    x64, t, opts = _small_case(torch, variant)
    tt = torch.tensor(t)
    topts = dict(opts)
    topts["weight"] = _torch_weight(torch, opts, torch.float64)
    x = torch.tensor(x64, requires_grad=True)
    loss = flt.margin_cross_entropy(x, tt, **topts)
    with pytest.raises(RuntimeError, match="double backward.*margin_cross_entropy_torch"):
        torch.autograd.grad(loss, x, create_graph=True, retain_graph=True)
    (g,) = torch.autograd.grad(loss, x)
    _, want = oracle(torch, x64, t, opts, "mean")
    assert_gradient_close(g.numpy(), want, x64, t, opts, "mean", None, np.float64)


@pytest.mark.parametrize("variant", SMALL_VARIANTS)
def test_torch_formulation_double_backward_matches_oracle(torch, variant):
    """The differentiable formulation the error names (margin_cross_entropy_torch): loss,
    first derivative and its vector-Jacobian product (the second derivative) equal the
    oracle's, and gradgradcheck passes."""
    from fastloss.torch import functional as tf
    x64, t, opts = _small_case(torch, variant)
    tt = torch.tensor(t)
    o = _full(opts)
    w = _torch_weight(torch, opts, torch.float64)

    def f(c):
        return tf.margin_cross_entropy_torch(c, tt, o["margin"], o["scale"], o["kind"], o["easy_margin"], w,
                                             o["ignore_index"], "mean", o["label_smoothing"])

    u = torch.tensor(np.random.default_rng(4).standard_normal((5, 7)))
    results = []
    for impl in ("torch-formulation", "oracle"):
        x = torch.tensor(x64, requires_grad=True)
        loss = f(x) if impl != "oracle" else oracle_loss_tensor(torch, x, tt, opts, "mean")
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        (h,) = torch.autograd.grad((g * u).sum(), x)
        results.append((loss.detach(), g.detach(), h))
    for got, want in zip(*results):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    assert torch.autograd.gradgradcheck(f, (torch.tensor(x64, requires_grad=True),), eps=1e-6, atol=1e-7,
                                        rtol=1e-5)


# --------------------------------------------------------------------------
# 7. determinism
# --------------------------------------------------------------------------

def _bits(a):
    a = np.asarray(a)
    return a.dtype.str, a.shape, a.tobytes()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16, "bfloat16"], ids=str)
def test_repeated_calls_identical(simd, dtype):
    dt = half_dtype("bfloat16") if dtype == "bfloat16" else np.dtype(dtype)
    for case in ("arc-all-options-s64", "cos-m0.2-s30", "arc-easy-m0.5-s30"):
        x, t, opts = make_problem((64, 1000), case, dt)
        for red in REDUCTIONS:
            a = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, **opts)
            b = fastloss.margin_cross_entropy_with_grad(x, t, reduction=red, **opts)
            assert _bits(a[0]) == _bits(b[0]) and _bits(a[1]) == _bits(b[1]), (case, red)
            assert _bits(fastloss.margin_cross_entropy(x, t, reduction=red, **opts)) == _bits(a[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64, "bfloat16"], ids=str)
def test_one_and_two_threads_identical(dtype):
    dt = half_dtype("bfloat16") if dtype == "bfloat16" else np.dtype(dtype)
    rng = np.random.default_rng(_seed("threads", str(dtype)))
    shape = (300, 3001)                 # many blocks
    x = make_cosine(rng, shape).astype(dt)
    t = rng.integers(0, shape[1], shape[0])
    t[::13] = -100
    w = exact_weights(rng, shape[1], dt)
    old = fastloss.get_num_threads()
    results = {}
    try:
        for n in (1, 2):
            fastloss.set_num_threads(n)
            for red, kw in (("mean", dict(label_smoothing=0.1, weight=w)), ("none", dict(kind="cos")),
                            ("sum", dict(easy_margin=True, margin=0.5, scale=64.0))):
                (loss, g), stats = ran(fastloss.margin_cross_entropy_with_grad, x, t, reduction=red, **kw)
                assert stats.get("threads_used") == n, stats
                results[n, red] = (_bits(loss), _bits(g), _bits(fastloss.margin_cross_entropy(x, t, reduction=red,
                                                                                            **kw)))
    finally:
        fastloss.set_num_threads(old)
    for red in REDUCTIONS:
        assert results[1, red] == results[2, red], red
