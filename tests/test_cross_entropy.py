"""The fast path (C kernels via Cython) against the slow NumPy twin ``fastloss.reference``.

In the style of scikit-learn's ``sklearn/_loss/tests`` and bottleneck's fast-vs-slow tests:
every fast result is compared with the oracle over a matrix of dtypes, shapes, memory
layouts and options, under every SIMD path (fixture ``simd``: avx2 and generic, plus avx512
on CPUs that have it -- there it is the "auto" default). Then: both raise in the same
cases, edge values against torch, gradients against finite differences, float32 accuracy,
no argument is modified, ``out=`` semantics, and a bounded hypothesis property test.

torch comes from the session fixture ``torch`` in conftest.py (never imported at module
level). The matrices are kept small on purpose: the whole file runs in seconds.
"""
import functools
import math
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastloss
from fastloss import _cross_entropy as _ce
from fastloss._plan import ran
from fastloss import reference as ref

INF = math.inf
NAN = math.nan

DTYPES = [np.float32, np.float64, np.float16]
DTYPE_IDS = {np.float16: "f16", np.float32: "f32", np.float64: "f64"}
REDUCTIONS = ("none", "mean", "sum")

# fast vs reference (float64 on the same data, rounded to the input dtype at the end)
TOL = {
    np.float16: dict(rtol=4e-3, atol=1e-4),   # fast computes in float32, both round to f16
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-12, atol=1e-12),
}
# fast vs torch in the same dtype (torch float32 is itself approximate)
TORCH_TOL = {
    np.float32: dict(rtol=1e-5, atol=1e-6),
    np.float64: dict(rtol=1e-12, atol=1e-12),
}


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

def _seed(*parts):
    """A stable seed per parametrization (so every case sees different data)."""
    return zlib.crc32(repr(parts).encode())


# --------------------------------------------------------------------------
# data helpers
# --------------------------------------------------------------------------

def batch_shape(shape):
    return tuple(shape[:0]) if len(shape) == 1 else tuple(shape[:1]) + tuple(shape[2:])


def class_axis(ndim):
    return 0 if ndim == 1 else 1


def n_classes(shape):
    return shape[class_axis(len(shape))]


def rand_logits(rng, shape, dtype, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


def rand_index_target(rng, shape, ignore_frac=0.0, ignore_index=-100, dtype=np.int64):
    """Class indices of the batch shape of ``shape``; about ``ignore_frac`` ignored."""
    C = n_classes(shape)
    b = batch_shape(shape)
    t = rng.integers(0, max(C, 1), size=b).astype(np.int64)
    if C == 0:
        t[...] = ignore_index
    if ignore_frac:
        t[rng.random(b) < ignore_frac] = ignore_index
    return np.asarray(t).astype(dtype)


def rand_prob_target(rng, shape, dtype=np.float64, zeros=True):
    """Rows of class probabilities along the class axis (some exact zeros)."""
    y = rng.random(shape)
    if zeros:
        y[rng.random(shape) < 0.2] = 0.0
    ax = class_axis(len(shape))
    s = y.sum(axis=ax, keepdims=True)
    y = np.divide(y, s, out=np.zeros_like(y), where=s > 0)
    return y.astype(dtype)


# memory layouts: each returns an array with x's values in another memory layout

def lay_c(x):
    return np.ascontiguousarray(x)


def lay_f(x):
    return np.asfortranarray(x)


def lay_strided(x):
    """x[:, ::2] (x[::2] for 1-D): every other class of a NaN-poisoned buffer."""
    ax = class_axis(x.ndim)
    shape = list(x.shape)
    shape[ax] *= 2
    big = np.full(shape, np.nan, dtype=x.dtype)
    sl = [slice(None)] * x.ndim
    sl[ax] = slice(None, None, 2)
    big[tuple(sl)] = x
    return big[tuple(sl)]


def lay_reversed(x):
    """Negative strides on every axis (x[::-1, ::-1])."""
    rev = (slice(None, None, -1),) * x.ndim
    return np.ascontiguousarray(x[rev])[rev]


def lay_readonly(x):
    y = x.copy()
    y.flags.writeable = False
    return y


def lay_bigendian(x):
    return x.astype(x.dtype.newbyteorder(">"))


def lay_unaligned(x):
    """An offset-1 view into a bytes buffer (writeable, unaligned)."""
    buf = bytearray(x.nbytes + x.itemsize)
    y = np.frombuffer(buf, dtype=x.dtype, count=x.size, offset=1).reshape(x.shape)
    y[...] = x
    assert y.size == 0 or not y.flags.aligned
    return y


def lay_channels_last(x):
    """Classes contiguous in a K-dim input: (N, d..., C) memory seen as (N, C, d...)."""
    return np.moveaxis(np.ascontiguousarray(np.moveaxis(x, 1, -1)), -1, 1)


LAYOUTS = {
    "C": lay_c,
    "F": lay_f,
    "strided": lay_strided,
    "reversed": lay_reversed,
    "readonly": lay_readonly,
    "bigendian": lay_bigendian,
    "unaligned": lay_unaligned,
    "channels_last": lay_channels_last,
}


# --------------------------------------------------------------------------
# comparison helpers
# --------------------------------------------------------------------------

def assert_close(actual, desired, dtype, tol=None):
    tol = TOL[dtype] if tol is None else tol
    np.testing.assert_allclose(np.asarray(actual, dtype=np.float64),
                               np.asarray(desired, dtype=np.float64),
                               equal_nan=True, **tol)


def loss_dtype(x, target):
    """torch's loss dtype: the input's, promoted by a floating probability target of another
    dtype (float16 logits with float32 probabilities give a float32 loss)."""
    t = np.asarray(target)
    if t.shape == x.shape and t.dtype.kind == "f":
        return np.promote_types(x.dtype, t.dtype)
    return x.dtype


def check_loss_type(loss, x, reduction, target=None):
    """A NumPy scalar of the loss's dtype for mean/sum; an ndarray of the batch shape."""
    kind = (x.dtype if target is None else loss_dtype(x, target)).type
    if reduction == "none":
        assert isinstance(loss, np.ndarray), type(loss)
        assert loss.shape == batch_shape(x.shape)
        assert loss.dtype.type is kind, (loss.dtype, x.dtype)
    else:
        assert type(loss) is kind, (type(loss), x.dtype)


def check_grad_type(grad, x):
    assert isinstance(grad, np.ndarray)
    assert grad.shape == x.shape
    assert grad.dtype.type is x.dtype.type, (grad.dtype, x.dtype)


def compare_with_reference(x, target, reduction, *, grad_output=None, **kw):
    """cross_entropy and cross_entropy_with_grad, fast vs reference: types, values."""
    dtype = x.dtype.type
    fast = fastloss.cross_entropy(x, target, reduction=reduction, **kw)
    slow = ref.cross_entropy(x, target, reduction=reduction, **kw)
    check_loss_type(fast, x, reduction, target)
    check_loss_type(slow, x, reduction, target)
    assert_close(fast, slow, dtype)

    f_loss, f_grad = fastloss.cross_entropy_with_grad(x, target, reduction=reduction,
                                                      grad_output=grad_output, **kw)
    r_loss, r_grad = ref.cross_entropy_with_grad(x, target, reduction=reduction,
                                                 grad_output=grad_output, **kw)
    check_loss_type(f_loss, x, reduction, target)
    check_grad_type(f_grad, x)
    assert_close(f_loss, r_loss, dtype)
    assert_close(f_grad, r_grad, dtype)
    # the loss-only entry point runs the same arithmetic as the fused one
    np.testing.assert_array_equal(np.asarray(fast), np.asarray(f_loss))
    return f_loss, f_grad


# --------------------------------------------------------------------------
# 1a. fast vs reference: dtype x shape x layout (x every SIMD path)
# --------------------------------------------------------------------------

SHAPES = [
    (5,),            # 1-D: (C,)
    (17,),
    (4, 1),          # C = 1
    (6, 3),          # C below the vector width
    (9, 8),          # C == f32 vector width, N just past it (column kernel tail)
    (11, 17),        # tails in both directions
    (3, 1000),       # large C
    (70, 1000),      # several blocks (> FL_BLOCK_ELEMENTS elements), column tail 70 % 8
    (3, 4, 5),       # (N, C, d)
    (2, 3, 19),      # d past the vector width
    (2, 3, 4, 5),    # (N, C, d1, d2)
    (3, 40, 300),    # K-dim over several blocks: blocks cut across batch items
    (0, 5),          # empty batch
    (0, 3, 4),
]


def _layout_params():
    for shape in SHAPES:
        for name in LAYOUTS:
            if name == "channels_last" and len(shape) < 3:
                continue  # the same as "C" there
            yield pytest.param(shape, name, id=f"{'x'.join(map(str, shape))}-{name}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize(("shape", "layout"), list(_layout_params()))
def test_layouts_match_reference(simd, dtype, shape, layout):
    rng = np.random.default_rng(_seed(shape, layout, dtype))
    x = LAYOUTS[layout](rand_logits(rng, shape, dtype))
    t = rand_index_target(rng, shape, ignore_frac=0.2 if len(shape) > 1 else 0.0)
    for reduction in REDUCTIONS:
        compare_with_reference(x, t, reduction)


# --------------------------------------------------------------------------
# 1b. fast vs reference: options, on geometries that reach every kernel
# --------------------------------------------------------------------------

# (shape, layout): which kernel runs is decided by the strides
GEOMETRIES = {
    "rows-13x17": ((13, 17), lay_c),                # classes contiguous: row kernel
    "cols-13x17F": ((13, 17), lay_f),               # positions contiguous: column kernel
    "strided-13x17": ((13, 17), lay_strided),       # neither: scalar strided loop
    "kdim-3x5x11": ((3, 5, 11), lay_c),             # K-dim: column kernel + tails
    "kdim-2x3x2x5-chlast": ((2, 3, 2, 5), lay_channels_last),  # K-dim, rows
    "1d-17": ((17,), lay_c),
}


def _weight(rng, C):
    return rng.uniform(0.1, 3.0, C)


def _strided_1d(a):
    """a[::2] of a twice-as-long buffer (a strided view with a's values)."""
    a = np.asarray(a)
    if a.ndim == 0:
        return a
    big = np.zeros((2 * a.shape[0],) + a.shape[1:], dtype=a.dtype)
    big[::2] = a
    return big[::2]


def _case_default(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape))


def _case_weight(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape), weight=_weight(rng, n_classes(shape)))


def _case_weight_int(rng, shape, dtype):
    # integer weights, some zero (classes that count for nothing, also in the mean divisor)
    return dict(target=rand_index_target(rng, shape),
                weight=rng.integers(0, 4, n_classes(shape)).astype(np.int32))


def _case_weight_mixed_sign(rng, shape, dtype):
    # torch allows negative class weights; float32-exact values, kept sum far from 0
    w = rng.choice([-0.5, 0.25, 1.0, 2.0, 3.0], n_classes(shape))
    w[0] = 3.0
    t = rand_index_target(rng, shape)
    t.reshape(-1)[:2] = 0
    return dict(target=t, weight=w)


def _case_weight_strided(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape),
                weight=_strided_1d(_weight(rng, n_classes(shape)).astype(np.float32)))


def _case_ignore_some(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape, ignore_frac=0.3))


def _case_ignore_real_class(rng, shape, dtype):
    # ignore_index is a valid class: positions of class 2 are dropped
    t = rand_index_target(rng, shape)
    t.reshape(-1)[:3] = 2
    return dict(target=t, ignore_index=2)


def _case_ignore_all(rng, shape, dtype):
    return dict(target=np.full(batch_shape(shape), -100, dtype=np.int64))


def _case_ignore_weight(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape, ignore_frac=0.3, ignore_index=-1),
                ignore_index=-1, weight=_weight(rng, n_classes(shape)))


def _case_smooth(eps):
    def make(rng, shape, dtype):
        return dict(target=rand_index_target(rng, shape), label_smoothing=eps)
    return make


def _case_smooth_weight_ignore(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape, ignore_frac=0.3),
                weight=_weight(rng, n_classes(shape)), label_smoothing=0.1)


def _case_prob(weight=False, eps=0.0, tdtype=None, layout=lay_c):
    def make(rng, shape, dtype):
        y = layout(rand_prob_target(rng, shape, dtype=tdtype or dtype))
        kw = dict(target=y)
        if weight:
            kw["weight"] = _weight(rng, n_classes(shape))
        if eps:
            kw["label_smoothing"] = eps
        return kw
    return make


def _case_prob_onehot(rng, shape, dtype):
    t = rand_index_target(rng, shape)
    y = np.moveaxis(np.eye(n_classes(shape), dtype=dtype)[t], -1, class_axis(len(shape)))
    return dict(target=y)


def _case_prob_negative_ignore(rng, shape, dtype):
    return dict(target=rand_prob_target(rng, shape, dtype=dtype), ignore_index=-1)


def _case_go_scalar(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape, ignore_frac=0.2), grad_output=-2.5)


def _case_go_0d(rng, shape, dtype):
    return dict(target=rand_index_target(rng, shape), grad_output=np.array(0.75, np.float32))


def _case_go_array(go_dtype):
    def make(rng, shape, dtype):
        go = rng.uniform(-2.0, 2.0, batch_shape(shape)).astype(go_dtype or dtype)
        return dict(target=rand_index_target(rng, shape, ignore_frac=0.2), grad_output=go)
    return make


def _case_go_broadcast(rng, shape, dtype):
    # a grad_output of shape (1,) * ndim broadcasts to the loss shape (0-d for 1-D input)
    go = np.full((1,) * len(batch_shape(shape)), 1.5)
    return dict(target=rand_index_target(rng, shape), grad_output=go)


def _case_go_array_prob_smooth_weight(rng, shape, dtype):
    go = rng.uniform(-2.0, 2.0, batch_shape(shape))
    return dict(target=rand_prob_target(rng, shape, dtype=dtype), weight=_weight(rng, n_classes(shape)),
                label_smoothing=0.1, grad_output=go)


def _case_target_strided(rng, shape, dtype):
    t = rand_index_target(rng, shape, ignore_frac=0.2, dtype=np.int32)
    return dict(target=_strided_1d(t))


def _case_target_reversed(rng, shape, dtype):
    t = rand_index_target(rng, shape, ignore_frac=0.2)
    return dict(target=lay_reversed(t) if t.ndim else t)


def _case_everything(rng, shape, dtype):
    go = rng.uniform(-2.0, 2.0, batch_shape(shape))
    return dict(target=rand_index_target(rng, shape, ignore_frac=0.3, ignore_index=0),
                ignore_index=0, weight=_weight(rng, n_classes(shape)), label_smoothing=0.3,
                grad_output=go)


# name -> (maker, reductions); the "none"-only cases carry per-position grad_output arrays
ALL = REDUCTIONS
OPTION_CASES = {
    "default": (_case_default, ALL),
    "weight": (_case_weight, ALL),
    "weight-int-zeros": (_case_weight_int, ALL),
    "weight-f32-strided": (_case_weight_strided, ALL),
    "weight-mixed-sign": (_case_weight_mixed_sign, ALL),
    "ignore-some": (_case_ignore_some, ALL),
    "ignore-real-class": (_case_ignore_real_class, ALL),
    "ignore-all": (_case_ignore_all, ALL),
    "ignore-some+weight": (_case_ignore_weight, ALL),
    "smooth-0.1": (_case_smooth(0.1), ALL),
    "smooth-1.0": (_case_smooth(1.0), ALL),
    "smooth-0.1+weight+ignore": (_case_smooth_weight_ignore, ALL),
    "prob": (_case_prob(), ALL),
    "prob+weight": (_case_prob(weight=True), ALL),
    "prob+smooth-0.1": (_case_prob(eps=0.1), ALL),
    "prob+smooth-1.0+weight": (_case_prob(weight=True, eps=1.0), ALL),
    "prob-f16-target": (_case_prob(tdtype=np.float16), ALL),
    "prob-f64-target": (_case_prob(tdtype=np.float64), ALL),
    "prob-F-target": (_case_prob(layout=lay_f), ALL),
    "prob-strided-target": (_case_prob(layout=lay_strided), ALL),
    "prob-reversed-target": (_case_prob(layout=lay_reversed, weight=True), ALL),
    "prob-onehot": (_case_prob_onehot, ALL),
    "prob-ignore_index-1": (_case_prob_negative_ignore, ALL),
    "go-scalar": (_case_go_scalar, ALL),
    "go-0d-array": (_case_go_0d, ALL),
    "go-array": (_case_go_array(None), ("none",)),
    "go-array-f64": (_case_go_array(np.float64), ("none",)),
    "go-array-int": (_case_go_array(np.int16), ("none",)),
    "go-broadcast": (_case_go_broadcast, ("none",)),
    "go-array+prob+smooth+weight": (_case_go_array_prob_smooth_weight, ("none",)),
    "target-int32-strided": (_case_target_strided, ALL),
    "target-reversed": (_case_target_reversed, ALL),
    "everything": (_case_everything, ("none",)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("geometry", list(GEOMETRIES))
@pytest.mark.parametrize("case", list(OPTION_CASES))
def test_options_match_reference(simd, dtype, geometry, case):
    shape, layout = GEOMETRIES[geometry]
    make, reductions = OPTION_CASES[case]
    rng = np.random.default_rng(_seed(geometry, case, dtype))
    x = layout(rand_logits(rng, shape, dtype))
    kw = make(rng, shape, dtype)
    target = kw.pop("target")
    for reduction in reductions:
        compare_with_reference(x, target, reduction, **kw)


TARGET_DTYPES = [np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32,
                 np.uint64, np.dtype(">i8"), np.dtype(">i4")]


@pytest.mark.parametrize("tdtype", TARGET_DTYPES, ids=lambda d: np.dtype(d).str)
@pytest.mark.parametrize("geometry", ["rows-13x17", "cols-13x17F", "kdim-3x5x11", "1d-17"])
@pytest.mark.parametrize("tlayout", ["C", "strided", "reversed"])
def test_target_dtypes_match_reference(simd, tdtype, geometry, tlayout):
    shape, layout = GEOMETRIES[geometry]
    rng = np.random.default_rng(_seed(geometry, str(tdtype), tlayout))
    x = layout(rand_logits(rng, shape, np.float32))
    unsigned = np.dtype(tdtype).kind == "u"
    # an ignore_index the dtype can hold (uint8 targets can never equal -100)
    ignore_index = 250 if unsigned else -100
    t = rand_index_target(rng, shape, ignore_frac=0.2, ignore_index=ignore_index, dtype=tdtype)
    if tlayout == "strided":
        t = _strided_1d(t)
    elif tlayout == "reversed" and t.ndim:
        t = lay_reversed(t)
    for reduction in REDUCTIONS:
        compare_with_reference(x, t, reduction, ignore_index=ignore_index)
    if unsigned:  # the default ignore_index=-100 matches no unsigned value: all are kept
        t2 = rand_index_target(rng, shape, dtype=tdtype)
        compare_with_reference(x, t2, "mean")


def test_1d_target_of_shape_1(simd):
    x = rand_logits(np.random.default_rng(1), (9,), np.float64)
    for t in (np.array(4), np.array([4]), 4, [4]):
        for reduction in REDUCTIONS:
            compare_with_reference(x, t, reduction)


def test_array_likes(simd):
    x = [[0.5, -1.0, 2.0], [1.0, 1.0, 1.0]]
    for reduction in REDUCTIONS:
        fast = fastloss.cross_entropy_with_grad(x, [2, 0], weight=[1, 2, 3], reduction=reduction)
        slow = ref.cross_entropy_with_grad(x, [2, 0], weight=[1, 2, 3], reduction=reduction)
        assert_close(fast[0], slow[0], np.float64)
        assert_close(fast[1], slow[1], np.float64)
        assert fast[1].dtype == np.float64


def test_stats_report_the_requested_path(simd):
    x = rand_logits(np.random.default_rng(2), (16, 40), np.float32)
    t = rand_index_target(np.random.default_rng(3), x.shape)
    (loss, grad), stats = ran(fastloss.cross_entropy_with_grad, x, t)
    assert stats["simd"] == simd
    assert_close(loss, ref.cross_entropy(x, t), np.float32)


# --------------------------------------------------------------------------
# 2. both raise in the same cases
# --------------------------------------------------------------------------

def _x(shape=(4, 5), dtype=np.float64, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


def _t(shape=(4,), C=5, seed=1):
    return np.random.default_rng(seed).integers(0, C, size=shape)


def _overlap_out():
    buf = np.zeros((5, 5))
    return dict(input=buf[:-1], target=_t(), out=buf[1:])


def _overlap_out_reversed():
    x = _x()
    return dict(input=x, target=_t(), out=x[::-1])


def _out_is_prob_target():
    y = rand_prob_target(np.random.default_rng(0), (4, 5))
    return dict(input=_x(), target=y, out=y)


def _out_overlaps_weight():
    out = np.empty((4, 5))
    return dict(input=_x(), target=_t(), weight=out[0], out=out)


def _readonly_out():
    out = np.empty((4, 5))
    out.flags.writeable = False
    return dict(input=_x(), target=_t(), out=out)


def _two_bad_targets_kdim_F():
    # the first bad target in C order is reported, whatever the target's memory order
    t = np.asfortranarray(_t((2, 3, 4)))
    t[1, 0, 0] = 9
    t[0, 2, 3] = 7
    return dict(input=_x((2, 5, 3, 4)), target=t)


def _out_overlapping_grad_output():
    buf = np.zeros(40)
    return dict(input=_x(), target=_t(), reduction="none", grad_output=buf[:4],
                out=buf[:20].reshape(4, 5))


BAD = {
    # input
    "input-int": lambda: dict(input=np.arange(20).reshape(4, 5), target=_t()),
    "input-complex": lambda: dict(input=_x().astype(np.complex128), target=_t()),
    "input-bool": lambda: dict(input=_x() > 0, target=_t()),
    "input-object": lambda: dict(input=_x().astype(object), target=_t()),
    "input-longdouble": lambda: dict(input=_x().astype(np.longdouble), target=_t()),
    "input-0d": lambda: dict(input=np.float64(1.0), target=np.array(0)),
    "input-0d-int": lambda: dict(input=np.array(1), target=np.array(0)),
    # target type and shape
    "target-float-wrong-shape": lambda: dict(input=_x(), target=_t().astype(np.float64)),
    "target-int-prob-shape": lambda: dict(input=_x(), target=np.zeros((4, 5), np.int64)),
    "target-bool": lambda: dict(input=_x(), target=np.zeros(4, bool)),
    "target-complex-prob": lambda: dict(input=_x(), target=np.zeros((4, 5), np.complex128)),
    "target-batch-mismatch": lambda: dict(input=_x(), target=_t((5,))),
    "target-2d-for-2d": lambda: dict(input=_x(), target=_t((4, 1))),
    "target-0d-for-2d": lambda: dict(input=_x(), target=np.array(1)),
    "target-1d-input-len2": lambda: dict(input=_x((5,)), target=_t((2,))),
    "target-kdim-spatial-mismatch": lambda: dict(input=_x((2, 5, 3)), target=_t((2, 4))),
    "target-kdim-missing-axis": lambda: dict(input=_x((2, 5, 3, 4)), target=_t((2, 3))),
    "target-prob-transposed": lambda: dict(input=_x((4, 5)), target=np.zeros((5, 4))),
    # target values
    "target-eq-C": lambda: dict(input=_x(), target=np.array([0, 1, 5, 2])),
    "target-negative": lambda: dict(input=_x(), target=np.array([0, -1, 2, 2])),
    "target-2**40": lambda: dict(input=_x(), target=np.array([0, 1, 2**40, 2])),
    "target-int32-big": lambda: dict(input=_x(), target=np.array([0, 1, 2, 2**31 - 1], np.int32)),
    "target-uint8-255": lambda: dict(input=_x(), target=np.array([0, 255, 1, 1], np.uint8)),
    "target-uint64-huge": lambda: dict(input=_x(), target=np.array([0, 2**63 + 5, 1, 1], np.uint64)),
    "target-1d-input": lambda: dict(input=_x((5,)), target=np.array(5)),
    "target-ignore-then-bad": lambda: dict(input=_x(), target=np.array([-100, 7, 99, 0])),
    "target-bad-ignore_index-custom": lambda: dict(input=_x(), target=np.array([0, -100, 1, 1]),
                                                   ignore_index=-1),
    "target-two-bad-kdim-F": _two_bad_targets_kdim_F,
    "target-C0": lambda: dict(input=np.zeros((3, 0)), target=np.zeros(3, np.int64)),
    # weight
    "weight-short": lambda: dict(input=_x(), target=_t(), weight=np.ones(4)),
    "weight-long": lambda: dict(input=_x(), target=_t(), weight=np.ones(6)),
    "weight-2d": lambda: dict(input=_x(), target=_t(), weight=np.ones((1, 5))),
    "weight-0d": lambda: dict(input=_x(), target=_t(), weight=np.float64(1.0)),
    "weight-complex": lambda: dict(input=_x(), target=_t(), weight=np.ones(5, np.complex64)),
    "weight-bool": lambda: dict(input=_x(), target=_t(), weight=np.ones(5, bool)),
    # options
    "reduction-unknown": lambda: dict(input=_x(), target=_t(), reduction="avg"),
    "reduction-None": lambda: dict(input=_x(), target=_t(), reduction=None),
    "reduction-upper": lambda: dict(input=_x(), target=_t(), reduction="MEAN"),
    "smoothing-negative": lambda: dict(input=_x(), target=_t(), label_smoothing=-0.1),
    "smoothing-1.5": lambda: dict(input=_x(), target=_t(), label_smoothing=1.5),
    "smoothing-nan": lambda: dict(input=_x(), target=_t(), label_smoothing=NAN),
    "smoothing-inf": lambda: dict(input=_x(), target=_t(), label_smoothing=INF),
    "smoothing-str": lambda: dict(input=_x(), target=_t(), label_smoothing="x"),
    "smoothing-None": lambda: dict(input=_x(), target=_t(), label_smoothing=None),
    "smoothing-bool": lambda: dict(input=_x(), target=_t(), label_smoothing=True),
    "ignore_index-float": lambda: dict(input=_x(), target=_t(), ignore_index=1.5),
    "ignore_index-bool": lambda: dict(input=_x(), target=_t(), ignore_index=True),
    "ignore_index-str": lambda: dict(input=_x(), target=_t(), ignore_index="0"),
    "ignore_index-2**70": lambda: dict(input=_x(), target=_t(), ignore_index=2**70),
    "out-overlaps-grad_output": _out_overlapping_grad_output,
    "prob-with-ignore_index-0": lambda: dict(input=_x(), target=np.full((4, 5), 0.2),
                                             ignore_index=0),
    "prob-with-ignore_index-3": lambda: dict(input=_x(), target=np.full((4, 5), 0.2),
                                             ignore_index=3),
    # grad_output
    "go-array-for-mean": lambda: dict(input=_x(), target=_t(), grad_output=np.ones(4)),
    "go-array-for-sum": lambda: dict(input=_x(), target=_t(), grad_output=np.ones(4),
                                     reduction="sum"),
    "go-list-for-mean": lambda: dict(input=_x(), target=_t(), grad_output=[1.0]),
    "go-str-for-mean": lambda: dict(input=_x(), target=_t(), grad_output="1"),
    "go-complex-for-mean": lambda: dict(input=_x(), target=_t(), grad_output=1j),
    "go-wrong-shape-for-none": lambda: dict(input=_x(), target=_t(), grad_output=np.ones(5),
                                            reduction="none"),
    "go-too-many-dims-for-none": lambda: dict(input=_x(), target=_t(),
                                              grad_output=np.ones((2, 4)), reduction="none"),
    "go-kdim-wrong-for-none": lambda: dict(input=_x((2, 5, 3)), target=_t((2, 3)),
                                           grad_output=np.ones((3, 2)), reduction="none"),
    "go-1d-input-shape1-for-none": lambda: dict(input=_x((5,)), target=np.array(1),
                                                grad_output=np.ones(1), reduction="none"),
    "go-complex-array-for-none": lambda: dict(input=_x(), target=_t(),
                                              grad_output=np.ones(4, np.complex128),
                                              reduction="none"),
    # out=
    "out-wrong-shape": lambda: dict(input=_x(), target=_t(), out=np.empty((5, 4))),
    "out-wrong-shape-1more": lambda: dict(input=_x(), target=_t(), out=np.empty((4, 5, 1))),
    "out-wrong-dtype": lambda: dict(input=_x(), target=_t(), out=np.empty((4, 5), np.float32)),
    "out-f16-for-f32": lambda: dict(input=_x(dtype=np.float32), target=_t(),
                                    out=np.empty((4, 5), np.float16)),
    "out-list": lambda: dict(input=_x(), target=_t(), out=np.empty((4, 5)).tolist()),
    "out-readonly": _readonly_out,
    "out-partial-overlap": _overlap_out,
    "out-reversed-input": _overlap_out_reversed,
    "out-is-prob-target": _out_is_prob_target,
    "out-overlaps-weight": _out_overlaps_weight,
}

# Unusual but legitimate option values: torch's answer decides which side is right.
#   np.str_ is a str (torch and the reference accept it);
#   a 0-d ndarray is not a float (torch and the reference reject it with TypeError);
#   NumPy scalars are numbers (everyone accepts them).
OPTION_TYPES = {
    "reduction-np.str_": dict(reduction=np.str_("mean")),
    "smoothing-0d-ndarray": dict(label_smoothing=np.array(0.1)),
    "smoothing-np.float32": dict(label_smoothing=np.float32(0.25)),
    "smoothing-int-1": dict(label_smoothing=1),
    "ignore_index-np.int8": dict(ignore_index=np.int8(2)),
    "ignore_index-np.uint64": dict(ignore_index=np.uint64(3)),
}


def _outcome(fn, kw):
    try:
        fn(**kw)
    except Exception as exc:  # noqa: BLE001 - the type is what is compared
        return type(exc), str(exc)
    return None, None


def _assert_same_outcome(kw, grad):
    fast = fastloss.cross_entropy_with_grad if grad else fastloss.cross_entropy
    slow = ref.cross_entropy_with_grad if grad else ref.cross_entropy
    f_exc, f_msg = _outcome(fast, kw)
    r_exc, r_msg = _outcome(slow, kw)
    assert f_exc is r_exc, f"fast: {f_exc} {f_msg!r}; reference: {r_exc} {r_msg!r}"
    if r_exc is IndexError:
        assert f_msg == r_msg
    return f_exc


@pytest.mark.parametrize("name", list(BAD))
def test_both_raise_the_same(simd, name):
    kw = BAD[name]()
    grad_only = "out" in kw or "grad_output" in kw
    exc = _assert_same_outcome(kw, grad=True)
    assert exc is not None, "this input is meant to be rejected"
    if not grad_only:
        _assert_same_outcome(kw, grad=False)


@pytest.mark.parametrize("name", list(OPTION_TYPES))
def test_option_types_same_outcome(name, torch):
    x = _x()
    t = _t()
    kw = OPTION_TYPES[name]
    try:
        torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(t), **kw)
        torch_raises = False
    except Exception:  # noqa: BLE001
        torch_raises = True
    for grad in (False, True):
        exc = _assert_same_outcome(dict(input=x, target=t, **kw), grad)
        assert (exc is not None) == torch_raises, f"torch raises: {torch_raises}, fast: {exc}"


def test_index_error_message_is_torchs():
    x = _x()
    with pytest.raises(IndexError, match=r"^Target 7 is out of bounds\.$"):
        fastloss.cross_entropy(x, np.array([0, 7, 1, 2]))
    with pytest.raises(IndexError, match=r"^Target 18446744073709551615 is out of bounds\.$"):
        fastloss.cross_entropy(x, np.array([0, 2**64 - 1, 1, 2], np.uint64))


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("geometry", ["rows-13x17", "cols-13x17F", "strided-13x17",
                                      "kdim-3x5x11", "1d-17"])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bad_last_target_writes_nothing(simd, dtype, geometry, reduction):
    """A bad target at the END of the batch: IndexError, and neither out nor (with
    out=input) the input is touched."""
    shape, layout = GEOMETRIES[geometry]
    rng = np.random.default_rng(_seed(geometry, dtype, reduction))
    x = layout(rand_logits(rng, shape, dtype))
    t = rand_index_target(rng, shape)
    t.reshape(-1)[-1] = n_classes(shape) + 3
    msg = rf"^Target {n_classes(shape) + 3} is out of bounds\.$"

    for order in ("C", "F"):
        out = np.full(shape, 123.0, dtype=dtype, order=order)
        with pytest.raises(IndexError, match=msg):
            fastloss.cross_entropy_with_grad(x, t, reduction=reduction, out=out)
        assert np.all(out == 123.0)

    before = x.copy()
    x_inplace = x if x.flags.writeable else x.copy()
    x_inplace_before = x_inplace.copy()
    with pytest.raises(IndexError, match=msg):
        fastloss.cross_entropy_with_grad(x_inplace, t, reduction=reduction, out=x_inplace)
    assert x_inplace.tobytes() == x_inplace_before.tobytes()
    assert x.tobytes() == before.tobytes()


# --------------------------------------------------------------------------
# 3. edge values against torch
# --------------------------------------------------------------------------

def torch_ce(torch, x, target, weight=None, **kw):
    """(loss, grad) from torch in x's dtype; the gradient by autograd."""
    x = np.ascontiguousarray(x)
    xt = torch.tensor(x, requires_grad=True)
    t = np.asarray(target)
    if t.shape == x.shape:
        tt = torch.tensor(t.astype(x.dtype))
    else:
        if x.ndim == 1:
            t = t.reshape(())
        tt = torch.tensor(t.astype(np.int64))
    wt = None if weight is None else torch.tensor(np.asarray(weight, dtype=x.dtype))
    loss = torch.nn.functional.cross_entropy(xt, tt, weight=wt, **kw)
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), xt.grad.numpy()


N_EDGE, C_EDGE = 11, 7       # 11 rows: one full float32 vector of positions plus a tail


def _edge_x(rng):
    return rng.standard_normal((N_EDGE, C_EDGE)) * 2


def _edge_t(rng):
    return rng.integers(0, C_EDGE, N_EDGE)


def _edge_masked(weight=False, eps=0.0):
    def make(rng):
        x = _edge_x(rng)
        x[:, [1, 4]] = -INF
        t = rng.choice([0, 2, 3, 5, 6], N_EDGE)
        kw = dict(label_smoothing=eps) if eps else {}
        if weight:
            kw["weight"] = rng.uniform(0.5, 2.0, C_EDGE)
        return x, t, kw
    return make


def _edge_rows(value, rows=(2, 9), where="row"):
    def make(rng):
        x = _edge_x(rng)
        for r in rows:
            if where == "row":
                x[r] = value
            else:
                x[r, 3] = value
        return x, _edge_t(rng), {}
    return make


def _edge_target_neginf(rng):
    x = _edge_x(rng)
    t = _edge_t(rng)
    x[[1, 8], t[[1, 8]]] = -INF          # the target class itself masked: loss inf
    return x, t, {}


def _edge_ignored_nonfinite(rng):
    """Ignored rows holding NaN, +inf, only -inf, some -inf, and finite values: torch's
    gradient there is 0 * softmax, so NaN along the first three rows, 0 on the others."""
    x = _edge_x(rng)
    t = _edge_t(rng)
    x[1] = NAN
    x[3, 2] = NAN
    x[5, 1] = INF
    x[7] = -INF
    x[9, :3] = -INF
    t[[1, 3, 5, 7, 9, 10]] = -100
    return x, t, {}


def _edge_all_ignored(eps):
    def make(rng):
        kw = dict(label_smoothing=eps) if eps else {}
        return _edge_x(rng), np.full(N_EDGE, -100), kw
    return make


def _edge_empty(rng):
    return np.zeros((0, C_EDGE)), np.zeros(0, np.int64), {}


def _edge_c1(eps):
    def make(rng):
        kw = dict(label_smoothing=eps) if eps else {}
        return rng.standard_normal((N_EDGE, 1)), np.zeros(N_EDGE, np.int64), kw
    return make


def _edge_prob_neginf(eps):
    def make(rng):
        x = _edge_x(rng)
        x[:, 2] = -INF
        y = rand_prob_target(rng, x.shape, zeros=False)
        y[:, 2] = 0.0       # 0 * -inf: nan (eps == 0) or -inf * eps / C: inf
        y /= y.sum(axis=1, keepdims=True)
        kw = dict(label_smoothing=eps) if eps else {}
        return x, y, kw
    return make


def _edge_large(scale):
    def make(rng):
        return _edge_x(rng) * scale, _edge_t(rng), {}
    return make


def _edge_shift(offset):
    def make(rng):
        return _edge_x(rng) + offset, _edge_t(rng), {}
    return make


EDGE_CASES = {
    "neginf-masked-classes": _edge_masked(),
    "neginf-masked+weight": _edge_masked(weight=True),
    "neginf-masked+smoothing": _edge_masked(eps=0.1),
    "neginf-target-class": _edge_target_neginf,
    "nan-rows": _edge_rows(NAN),
    "nan-one-logit": _edge_rows(NAN, where="one"),
    "posinf-one-logit": _edge_rows(INF, where="one"),
    "posinf-rows": _edge_rows(INF),
    "all-neginf-rows": _edge_rows(-INF),
    "ignored-nonfinite-rows": _edge_ignored_nonfinite,
    "all-ignored": _edge_all_ignored(0.0),
    "all-ignored+smoothing": _edge_all_ignored(0.2),
    "empty-batch": _edge_empty,
    "C1": _edge_c1(0.0),
    "C1+smoothing": _edge_c1(0.5),
    "prob-neginf-zero-target": _edge_prob_neginf(0.0),
    "prob-neginf+smoothing": _edge_prob_neginf(0.1),
    "large-logits": _edge_large(1e4),
    "shifted-minus-1000": _edge_shift(-1000.0),   # exp(x) underflows: the max matters
    "shifted-plus-1000": _edge_shift(1000.0),     # exp(x) overflows
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DTYPE_IDS.get)
@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_values_match_torch(torch, simd, dtype, layout, case):
    rng = np.random.default_rng(_seed(case))
    x64, t, kw = EDGE_CASES[case](rng)
    x = LAYOUTS[layout](x64.astype(dtype))
    if t.shape == x.shape:
        t = t.astype(dtype)
    for reduction in REDUCTIONS:
        loss, grad = fastloss.cross_entropy_with_grad(x, t, reduction=reduction, **kw)
        tloss, tgrad = torch_ce(torch, x, t, reduction=reduction, **kw)
        check_loss_type(loss, x, reduction)
        check_grad_type(grad, x)
        if t.shape != x.shape:  # ignored rows: exactly torch's 0 * softmax (0 or NaN)
            ignored = t == kw.get("ignore_index", -100)
            np.testing.assert_array_equal(grad[ignored], tgrad[ignored])
        assert_close(loss, tloss, dtype, TORCH_TOL[dtype])
        assert_close(grad, tgrad, dtype, TORCH_TOL[dtype])
        assert_close(fastloss.cross_entropy(x, t, reduction=reduction, **kw), tloss, dtype,
                     TORCH_TOL[dtype])
        if case.startswith("neginf-masked") and not kw.get("label_smoothing"):
            assert np.all(grad[:, [1, 4]] == 0), "a -inf class gets exactly 0 gradient"


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=DTYPE_IDS.get)
def test_edge_special_results(simd, dtype):
    """The documented special values, spelled out."""
    x = np.zeros((3, 4), dtype)
    ign = np.full(3, -100)
    assert np.isnan(fastloss.cross_entropy(x, ign))
    assert fastloss.cross_entropy(x, ign, reduction="sum") == 0
    assert np.all(fastloss.cross_entropy_with_grad(x, ign)[1] == 0)
    empty = np.zeros((0, 4), dtype)
    assert np.isnan(fastloss.cross_entropy(empty, np.zeros(0, np.int64)))
    assert fastloss.cross_entropy(empty, np.zeros(0, np.int64), reduction="sum") == 0
    xm = np.array([[0.0, -INF, 1.0]], dtype)
    assert np.isfinite(fastloss.cross_entropy(xm, np.array([0])))
    assert fastloss.cross_entropy(xm, np.array([0]), label_smoothing=0.1) == INF
    assert fastloss.cross_entropy_with_grad(xm, np.array([2]))[1][0, 1] == 0


# --------------------------------------------------------------------------
# 4. gradient vs 4th-order central finite differences (float64)
# --------------------------------------------------------------------------

def _fd_grad(f, x, h=1e-3):
    g = np.empty_like(x)
    for idx in np.ndindex(x.shape):
        def at(d):
            y = x.copy()
            y[idx] += d
            return f(y)
        g[idx] = (-at(2 * h) + 8 * at(h) - 8 * at(-h) + at(-2 * h)) / (12 * h)
    return g


def _fd_case(shape, prob=False, weight=False, eps=0.0, ignore=False, reduction="mean",
             go_array=False, layout=lay_c):
    return dict(shape=shape, prob=prob, weight=weight, eps=eps, ignore=ignore,
                reduction=reduction, go_array=go_array, layout=layout)


FD_CASES = {
    "plain-mean": _fd_case((4, 5)),
    "plain-sum-F": _fd_case((4, 5), reduction="sum", layout=lay_f),
    "1d": _fd_case((6,), weight=True),
    "weight-mean": _fd_case((5, 4), weight=True),
    "smooth-weight-mean": _fd_case((5, 4), weight=True, eps=0.3),
    "smooth-1.0-sum": _fd_case((3, 6), eps=1.0, reduction="sum"),
    "ignore-weight-smooth": _fd_case((6, 3), weight=True, eps=0.2, ignore=True),
    "prob": _fd_case((4, 5), prob=True),
    "prob-weight-smooth": _fd_case((4, 5), prob=True, weight=True, eps=0.2),
    "kdim-none-go": _fd_case((2, 3, 4), reduction="none", go_array=True),
    "kdim-prob-smooth": _fd_case((2, 3, 2, 2), prob=True, eps=0.1, weight=True),
    "kdim-weight-ignore-mean": _fd_case((2, 4, 3), weight=True, ignore=True, layout=lay_f),
    "none-go-smooth": _fd_case((5, 4), reduction="none", go_array=True, eps=0.4, weight=True),
}


@pytest.mark.parametrize("case", list(FD_CASES))
def test_gradient_matches_finite_differences(simd, case):
    c = FD_CASES[case]
    shape = c["shape"]
    rng = np.random.default_rng(_seed("fd", case))
    x = c["layout"](rand_logits(rng, shape, np.float64, scale=1.5))
    if c["prob"]:
        t = rand_prob_target(rng, shape)
    else:
        t = rand_index_target(rng, shape, ignore_frac=0.3 if c["ignore"] else 0.0)
        if c["ignore"]:
            t.reshape(-1)[0] = -100
            t.reshape(-1)[1] = 0
    kw = dict(reduction=c["reduction"], label_smoothing=c["eps"])
    if c["weight"]:
        kw["weight"] = rng.uniform(0.2, 2.0, n_classes(shape))
    go = rng.uniform(-2.0, 2.0, batch_shape(shape)) if c["go_array"] else 1.0

    def f(y):
        return float(np.sum(np.asarray(fastloss.cross_entropy(y, t, **kw)) * go))

    _, grad = fastloss.cross_entropy_with_grad(x, t, grad_output=go, **kw)
    np.testing.assert_allclose(grad, _fd_grad(f, x), rtol=1e-7, atol=1e-9)


# --------------------------------------------------------------------------
# 5. float32 accuracy on confident rows and a large vocabulary
# --------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _accuracy_problem():
    rng = np.random.default_rng(20240)
    x = (rng.standard_normal((64, 32000)) * 20).astype(np.float32)
    t = rng.integers(0, 32000, 64)
    confident = np.arange(64) % 2 == 0
    t[confident] = np.argmax(x[confident], axis=1)     # loss near 0
    x[::4, :][np.arange(16), t[::4]] += np.float32(30)  # very confident: loss ~ 1e-13
    x.flags.writeable = False
    return x, t


@functools.lru_cache(maxsize=None)
def _accuracy_truth(eps):
    x, t = _accuracy_problem()
    x64 = x.astype(np.float64)     # the float32 data, computed in float64
    return (ref.cross_entropy(x64, t, reduction="none", label_smoothing=eps),
            ref.cross_entropy_with_grad(x64, t, label_smoothing=eps))


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_float32_accuracy_large_vocabulary(simd, layout, eps):
    x, t = _accuracy_problem()
    x = LAYOUTS[layout](x)
    rows_true, (mean_true, grad_true) = _accuracy_truth(eps)

    rows = fastloss.cross_entropy(x, t, reduction="none", label_smoothing=eps)
    err = np.abs(rows.astype(np.float64) - rows_true)
    bound = 1e-6 * np.maximum(1.0, np.abs(rows_true))
    assert np.all(err <= bound), f"worst row: err {err.max():.3g}, loss {rows_true[np.argmax(err / bound)]}"

    mean, grad = fastloss.cross_entropy_with_grad(x, t, label_smoothing=eps)
    assert type(mean) is np.float32
    assert abs(float(mean) - mean_true) <= 1e-6 * abs(mean_true)
    # the gradient: each entry within 1e-6 of its row's scale, plus the float64 limit of
    # the target entry's cancellation p_t * A - w_t (rows with loss ~1e-14 have
    # |grad| ~1e-16, where the float64 "truth" is itself only good to a few 1e-18)
    scale = np.abs(grad_true).max(axis=1, keepdims=True)
    err = np.abs(grad.astype(np.float64) - grad_true)
    assert np.all(err <= 1e-6 * scale + 4 * np.finfo(np.float64).eps / x.shape[0])


@pytest.mark.parametrize("layout", ["C", "F"])
@pytest.mark.parametrize("weighted", [False, True], ids=["unweighted", "weighted"])
def test_float32_accuracy_probability_targets(torch, simd, layout, weighted):
    """The same problem with one-hot probability targets: the same loss as the index
    targets, so the same accuracy is due (torch float32 meets it on every row)."""
    x, t = _accuracy_problem()
    C = x.shape[1]
    y = np.zeros(x.shape, np.float32)
    y[np.arange(len(t)), t] = 1.0
    w = np.random.default_rng(1).uniform(0.5, 2.0, C).astype(np.float32) if weighted else None
    truth = ref.cross_entropy(x.astype(np.float64), y, weight=w, reduction="none")
    rows = fastloss.cross_entropy(LAYOUTS[layout](x), y, weight=w, reduction="none")
    err = np.abs(rows.astype(np.float64) - truth)
    bound = 1e-6 * np.maximum(1.0, np.abs(truth))
    tloss, _ = torch_ce(torch, x, y, weight=w, reduction="none")
    assert np.all(np.abs(tloss - truth) <= bound)          # achievable in float32
    worst = np.argmax(err / bound)
    assert np.all(err <= bound), (
        f"{np.sum(err > bound)} of {len(rows)} rows off; row {worst}: fast {rows[worst]!r}, "
        f"float64 {truth[worst]!r}, torch {tloss[worst]!r}")
    mean = fastloss.cross_entropy(LAYOUTS[layout](x), y, weight=w)
    mean_true = ref.cross_entropy(x.astype(np.float64), y, weight=w)
    assert abs(float(mean) - mean_true) <= 1e-6 * abs(mean_true)


SHIFT_CASES = ["index", "index+smooth", "index+smooth+weight", "prob", "prob+weight",
               "prob+smooth", "onehot"]


@pytest.mark.parametrize("case", SHIFT_CASES)
def test_float32_accuracy_shifted_logits(torch, simd, case):
    """Logits with a common offset (1000 + N(0, 1)): cross-entropy is shift-invariant, so
    float32 must give each row to 1e-6 * max(1, |loss|) of the float64 computation on the
    same float32 data -- torch float32 does (checked here too)."""
    rng = np.random.default_rng(_seed("shift", case))
    C = 5
    x = (1000 + rng.standard_normal((24, C))).astype(np.float32)
    t = rng.integers(0, C, 24)
    kw = {}
    if case.startswith("prob"):
        t = rand_prob_target(rng, x.shape, np.float32, zeros=False)
    elif case == "onehot":
        t = np.eye(C, dtype=np.float32)[t]
    if "smooth" in case:
        kw["label_smoothing"] = 0.3
    if "weight" in case:
        kw["weight"] = rng.uniform(0.5, 2.0, C).astype(np.float32)
    truth = ref.cross_entropy(x.astype(np.float64), t, reduction="none", **kw)
    bound = 1e-6 * np.maximum(1.0, np.abs(truth))
    tloss, _ = torch_ce(torch, x, t, reduction="none", **kw)
    assert np.all(np.abs(tloss - truth) <= bound)          # achievable in float32
    for layout in ("C", "F"):
        fast = fastloss.cross_entropy(LAYOUTS[layout](x), t, reduction="none", **kw)
        err = np.abs(fast.astype(np.float64) - truth)
        worst = np.argmax(err / bound)
        assert np.all(err <= bound), (
            f"{layout}: {np.sum(err > bound)} of {len(fast)} rows off; row {worst}: "
            f"fast {fast[worst]!r}, float64 {truth[worst]!r}, torch {tloss[worst]!r}")


def test_float32_single_class_weighted_smoothing_is_zero(torch, simd):
    """With C == 1, log_softmax is exactly 0: every loss is 0 (torch, reference), also
    with a class weight and label smoothing."""
    x = (np.float32(40.818382) + np.arange(16, dtype=np.float32)).reshape(16, 1)
    t = np.zeros(16, np.int64)
    kw = dict(weight=np.array([1.6025489]), label_smoothing=1.0, reduction="none")
    tloss, _ = torch_ce(torch, x, t, **kw)
    assert np.all(tloss == 0)
    assert np.all(ref.cross_entropy(x, t, **kw) == 0)
    fast = fastloss.cross_entropy(x, t, **kw)
    assert np.all(np.abs(fast) <= 1e-6), f"fast: {fast[:4]} ... (expected 0)"


# --------------------------------------------------------------------------
# 6. arguments never modified; out= semantics
# --------------------------------------------------------------------------

def _snapshot(*arrays):
    return [None if a is None else (np.asarray(a).dtype, np.asarray(a).tobytes()) for a in arrays]


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("geometry", ["rows-13x17", "cols-13x17F", "strided-13x17", "kdim-3x5x11",
                                      "1d-17"])
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
def test_arguments_not_modified(simd, dtype, geometry, prob):
    shape, layout = GEOMETRIES[geometry]
    rng = np.random.default_rng(_seed("nomod", geometry, dtype, prob))
    x = layout(rand_logits(rng, shape, dtype))
    t = rand_prob_target(rng, shape, dtype) if prob else rand_index_target(rng, shape, 0.2)
    w = _weight(rng, n_classes(shape)).astype(dtype)
    go = rng.uniform(-1, 1, batch_shape(shape)).astype(dtype)
    before = _snapshot(x, t, w, go)
    for reduction in REDUCTIONS:
        fastloss.cross_entropy(x, t, weight=w, reduction=reduction, label_smoothing=0.1)
        fastloss.cross_entropy_with_grad(x, t, weight=w, reduction=reduction, label_smoothing=0.1,
                                         grad_output=go if reduction == "none" else 2.0)
        out = np.empty(shape, dtype)
        fastloss.cross_entropy_with_grad(x, t, weight=w, reduction=reduction, out=out)
    assert _snapshot(x, t, w, go) == before


OUT_LAYOUTS = {
    "C": lambda s, d: np.empty(s, d, order="C"),
    "F": lambda s, d: np.empty(s, d, order="F"),
    "strided": lambda s, d: lay_strided(np.empty(s, d)),
    "reversed": lambda s, d: lay_reversed(np.empty(s, d)),
    "unaligned": lambda s, d: lay_unaligned(np.empty(s, d)),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize("x_layout", ["C", "F", "strided"])
@pytest.mark.parametrize("out_layout", list(OUT_LAYOUTS))
@pytest.mark.parametrize("shape", [(13, 17), (6, 3), (3, 5, 11), (9,)],
                         ids=["2d", "2d-small", "3d", "1d"])
def test_out_is_returned_and_filled(simd, dtype, x_layout, out_layout, shape):
    rng = np.random.default_rng(_seed("out", dtype, x_layout, out_layout, shape))
    x = LAYOUTS[x_layout](rand_logits(rng, shape, dtype))
    t = rand_index_target(rng, shape, 0.2)
    out = OUT_LAYOUTS[out_layout](shape, dtype)
    out[...] = 123.0
    for reduction in REDUCTIONS:
        loss, grad = fastloss.cross_entropy_with_grad(x, t, reduction=reduction, out=out,
                                                      label_smoothing=0.1)
        assert grad is out
        assert np.shares_memory(grad, out)
        e_loss, e_grad = fastloss.cross_entropy_with_grad(x, t, reduction=reduction,
                                                          label_smoothing=0.1)
        # another out layout may select another kernel (same math, other rounding)
        assert_close(loss, e_loss, dtype)
        assert_close(out, e_grad, dtype)


IN_PLACE_LAYOUTS = ["C", "F", "strided", "reversed", "bigendian", "unaligned", "channels_last"]


def _in_place_params():
    for shape, sid in (((13, 17), "2d"), ((6, 3), "2d-small"), ((3, 5, 11), "3d"), ((9,), "1d")):
        for layout in IN_PLACE_LAYOUTS:
            if layout == "channels_last" and len(shape) < 3:
                continue
            yield pytest.param(shape, layout, id=f"{sid}-{layout}")


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS.get)
@pytest.mark.parametrize(("shape", "layout"), list(_in_place_params()))
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
def test_out_is_input_in_place(simd, dtype, layout, shape, prob):
    rng = np.random.default_rng(_seed("inplace", dtype, layout, shape, prob))
    x0 = rand_logits(rng, shape, dtype)
    t = rand_prob_target(rng, shape, dtype) if prob else rand_index_target(rng, shape, 0.2)
    w = _weight(rng, n_classes(shape))
    kw = dict(weight=w, label_smoothing=0.1)
    for reduction in REDUCTIONS:
        x = LAYOUTS[layout](x0.copy())
        e_loss, e_grad = fastloss.cross_entropy_with_grad(x, t, reduction=reduction, **kw)
        loss, grad = fastloss.cross_entropy_with_grad(x, t, reduction=reduction, out=x, **kw)
        assert grad is x
        np.testing.assert_array_equal(np.asarray(loss), np.asarray(e_loss))
        np.testing.assert_array_equal(x, e_grad)
        r_loss, r_grad = ref.cross_entropy_with_grad(x0, t, reduction=reduction, **kw)
        assert_close(x, r_grad, dtype)


def test_out_orders_cross(simd):
    """Fortran-ordered out with C-ordered input, and vice versa."""
    rng = np.random.default_rng(7)
    xc = rand_logits(rng, (37, 29), np.float32)
    t = rand_index_target(rng, xc.shape, 0.1)
    _, expected = ref.cross_entropy_with_grad(xc, t)
    for x, order in ((xc, "F"), (np.asfortranarray(xc), "C")):
        out = np.zeros(x.shape, np.float32, order=order)
        _, grad = fastloss.cross_entropy_with_grad(x, t, out=out)
        assert grad is out
        assert out.flags.f_contiguous == (order == "F")
        assert_close(out, expected, np.float32)


def test_out_bigendian_with_bigendian_input(simd):
    rng = np.random.default_rng(8)
    x = lay_bigendian(rand_logits(rng, (6, 9), np.float64))
    t = rand_index_target(rng, x.shape)
    out = np.empty(x.shape, x.dtype)
    for fn in (fastloss.cross_entropy_with_grad, ref.cross_entropy_with_grad):
        out[...] = 0
        _, grad = fn(x, t, out=out)
        assert grad is out
        assert_close(out, ref.cross_entropy_with_grad(x, t)[1], np.float64)


# --------------------------------------------------------------------------
# 7. hypothesis: random problems, fast vs reference (or both raise)
# --------------------------------------------------------------------------

@st.composite
def problems(draw):
    dtype = draw(st.sampled_from(DTYPES))
    ndim = draw(st.integers(1, 4))
    C = draw(st.integers(0, 12))
    if ndim == 1:
        shape = (C,)
    else:
        shape = (draw(st.integers(0, 10)), C) + tuple(draw(st.integers(0, 4)) for _ in range(ndim - 2))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 3.0, 20.0]))
    x = rand_logits(rng, shape, dtype, scale=scale)
    if x.size and draw(st.booleans()):
        x.reshape(-1)[rng.integers(x.size)] = draw(st.sampled_from([-INF, INF, NAN]))
    x = LAYOUTS[draw(st.sampled_from(["C", "F", "strided", "reversed", "bigendian"]))](x)

    reduction = draw(st.sampled_from(REDUCTIONS))
    # (no subnormal-small eps: eps / C underflows in float32, in torch as in the fast path)
    eps = draw(st.one_of(st.sampled_from([0.0, 0.1, 1.0]), st.floats(1e-3, 1.0)))
    ignore_index = draw(st.sampled_from([-100, -1, 0, 2]))
    kw = dict(reduction=reduction, label_smoothing=eps, ignore_index=ignore_index)
    if draw(st.booleans()):
        kw["weight"] = rng.uniform(0.0, 2.0, C)
    if draw(st.booleans()):   # probability targets
        t = rand_prob_target(rng, shape, dtype=draw(st.sampled_from(DTYPES)))
    else:
        tdtype = np.dtype(draw(st.sampled_from([np.int64, np.int32, np.uint8, np.int16])))
        t = rng.integers(0, max(C, 1), batch_shape(shape))
        t = np.where(rng.random(t.shape) < 0.2, ignore_index, t).astype(np.int64)
        if t.size and draw(st.integers(0, 9)) == 0:   # now and then, a bad class index
            t.reshape(-1)[rng.integers(t.size)] = draw(st.integers(-2, C + 2))
        if tdtype.kind == "i" or np.all(t >= 0):   # unsigned only when the values fit
            t = t.astype(tdtype)
    go_kind = draw(st.sampled_from(["none", "scalar", "array"]))
    go = None
    if go_kind == "scalar":
        go = draw(st.floats(-3.0, 3.0))
    elif go_kind == "array" and reduction == "none":
        go = rng.uniform(-3.0, 3.0, batch_shape(shape))
    return x, t, kw, go


# derandomize: the same 50 examples on every run (no flaky CI); database=None: nothing is
# written to .hypothesis/. The warning filter: on a failure, hypothesis imports libcst,
# which triggers mypy_extensions' DeprecationWarning; under filterwarnings=error that would
# turn a failing example into an INTERNALERROR of the whole session.
@pytest.mark.filterwarnings("ignore:mypy_extensions.TypedDict is deprecated:DeprecationWarning")
@settings(max_examples=50, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(problem=problems())
def test_hypothesis_fast_matches_reference(simd, problem):
    x, t, kw, go = problem
    kw = dict(kw)
    f_exc, f_msg = _outcome(fastloss.cross_entropy_with_grad,
                            dict(input=x, target=t, grad_output=go, **kw))
    r_exc, r_msg = _outcome(ref.cross_entropy_with_grad,
                            dict(input=x, target=t, grad_output=go, **kw))
    assert f_exc is r_exc, (f_msg, r_msg)
    if f_exc is not None:
        if f_exc is IndexError:
            assert f_msg == r_msg
        return
    compare_with_reference(x, t, kw.pop("reduction"), grad_output=go, **kw)


# ---- the log-sum-exp hand-off fastloss.torch uses between forward and backward -------------

LSE_LAYOUTS = {
    "rows": lambda x: x,
    "rows_strided": lambda x: np.repeat(x, 2, axis=1)[:, ::2],
    "fortran": np.asfortranarray,
    "kdim": lambda x: np.ascontiguousarray(x.reshape(x.shape[0] // 4, 4, x.shape[1]).transpose(0, 2, 1)),
}


@pytest.mark.parametrize("layout", sorted(LSE_LAYOUTS))
@pytest.mark.parametrize("C", [7, 300])
@pytest.mark.parametrize("prob", [False, True], ids=["index", "prob"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_lse_forward_backward_match_fused(simd, layout, C, prob, dtype):
    rng = np.random.default_rng(C)
    x = LSE_LAYOUTS[layout]((rng.normal(size=(40, C)) * 4).astype(dtype))
    pos_shape = x.shape[:1] + x.shape[2:]
    if prob:
        target = rng.random(x.shape).astype(dtype)
    else:
        target = rng.integers(0, C, size=pos_shape)
        target.flat[3] = -100
    weight = rng.random(C).astype(dtype)
    for kw in [dict(), dict(weight=weight, label_smoothing=0.15)]:
        for reduction, go in [("mean", 0.5), ("sum", 2.0), ("none", rng.random(pos_shape).astype(dtype))]:
            w, eps = kw.get("weight"), kw.get("label_smoothing", 0.0)
            lse = np.full(math.prod(pos_shape), np.nan)
            loss = _ce._cross_entropy_forward_lse(x, target, w, -100, reduction, eps, lse)
            assert_close(loss, fastloss.cross_entropy(x, target, reduction=reduction, **kw), dtype)
            # lse: log-sum-exp of each kept position's logits, 0 where the target is ignored
            x64 = np.moveaxis(x.astype(np.float64), 1, -1).reshape(-1, C)
            m = x64.max(axis=1, keepdims=True)
            expected = (m + np.log(np.exp(x64 - m).sum(axis=1, keepdims=True)))[:, 0]
            if not prob:
                expected[target.reshape(-1) == -100] = 0.0
            np.testing.assert_allclose(lse, expected, rtol=1e-6 if dtype == np.float32 else 1e-13)
            x_before = x.copy()
            grad = _ce._cross_entropy_backward_lse(x, target, w, -100, reduction, eps, go, lse)
            _, fused = fastloss.cross_entropy_with_grad(x, target, reduction=reduction, grad_output=go, **kw)
            tol = 2e-6 if dtype == np.float32 else 1e-13
            np.testing.assert_allclose(grad, fused, rtol=0, atol=tol * np.abs(fused).max())
            np.testing.assert_array_equal(x, x_before)
            # in place over a copy of the logits
            xc = x.copy(order="K")
            _ce._cross_entropy_backward_lse(xc, target, w, -100, reduction, eps, go, lse, xc)
            np.testing.assert_allclose(xc, fused, rtol=0, atol=tol * np.abs(fused).max())


def test_lse_buffer_is_checked():
    x = np.zeros((4, 3), np.float32)
    t = np.zeros(4, np.int64)
    for bad in [np.empty(3), np.empty(4, np.float32), np.empty((8,))[::2], [0.0] * 4]:
        with pytest.raises((ValueError, TypeError)):
            _ce._cross_entropy_forward_lse(x, t, None, -100, "mean", 0.0, bad)
        with pytest.raises((ValueError, TypeError)):
            _ce._cross_entropy_backward_lse(x, t, None, -100, "mean", 0.0, 1.0, bad)
    ro = np.empty(4)
    ro.flags.writeable = False
    with pytest.raises(ValueError):
        _ce._cross_entropy_forward_lse(x, t, None, -100, "mean", 0.0, ro)
