"""Bad and unusual inputs for every public function of the NumPy layer.

One table row per case, over every function (the losses, their ``*_with_grad`` variants,
log_softmax/softmax and their backward): wrong dtypes of every array argument, shape
mismatches, out-of-range / ignored targets, NaN and infinities, empty and degenerate
shapes, unusual memory layouts (Fortran, strided, negative strides, read-only,
big-endian, unaligned), bad ``out=`` arrays and bad option values.

For every case:

(a) the fast function and its ``fastloss.reference`` twin agree: the same value (within a
    dtype tolerance, NaN where NaN, the same result dtype and shape), or both raise the
    same exception type (and, for IndexError, torch's message);
(b) the expected outcome of the row holds (a value, or the documented exception type);
(c) torch.nn.functional (via the ``torch`` fixture) agrees: the same value, or it raises
    where we raise (our TypeError / ValueError / IndexError for its RuntimeError /
    ValueError / IndexError / TypeError), except where docs/ documents a deliberate
    difference (``TORCH_DIFFERS`` names each one and why);
(d) no argument was modified (bytes compared before and after; ``out`` too when the call
    raises), including read-only and aliasing arguments;
(e) for ``*_with_grad``, the gradient as well as the loss.

Rows are built from the tables below (``_generic_cases`` and the per-family tables); ids
read ``<function>-<case>``.
"""
import math
import warnings
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import pytest

import fastloss
from conftest import BF16
from fastloss import reference as ref

INF = math.inf
NAN = math.nan

LOSSES = ["cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
          "kl_div", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss"]
FAMILY = {
    "cross_entropy": "ce", "nll_loss": "nll",
    "binary_cross_entropy": "bce", "binary_cross_entropy_with_logits": "bcel", "kl_div": "kl",
    "mse_loss": "reg", "l1_loss": "reg", "smooth_l1_loss": "reg", "huber_loss": "reg",
    "log_softmax": "sm", "softmax": "sm",
    "log_softmax_backward": "smb", "softmax_backward": "smb",
}
FUNCTIONS = (LOSSES + [n + "_with_grad" for n in LOSSES]
             + ["log_softmax", "softmax", "log_softmax_backward", "softmax_backward"])

FLOATS = ("float16", "float32", "float64") + (("bfloat16",) if BF16 is not None else ())
INTS = ("int8", "int32", "int64", "uint8", "uint64")
ALL_DTYPES = FLOATS + INTS + ("bool", "complex128", "object")

# fast vs reference: the fast path computes float16 in float32, the reference in float64
TOL = {np.float16: dict(rtol=2e-3, atol=2e-3), np.float32: dict(rtol=2e-5, atol=2e-6),
       np.float64: dict(rtol=1e-11, atol=1e-12), BF16: dict(rtol=1.6e-2, atol=1.6e-2)}
# against torch (which has its own float32/float16 rounding)
TORCH_TOL = {np.float16: dict(rtol=1e-2, atol=5e-3), np.float32: dict(rtol=1e-4, atol=1e-5),
             np.float64: dict(rtol=1e-10, atol=1e-12), BF16: dict(rtol=4e-2, atol=2e-2)}


def root(name):
    return name[: -len("_with_grad")] if name.endswith("_with_grad") else name


def family(name):
    return FAMILY[root(name)]


def has_grad(name):
    return name.endswith("_with_grad")


def has_out(name):
    return has_grad(name) or family(name) in ("sm", "smb")


# --------------------------------------------------------------------------
# valid base arguments of each function (fresh arrays on every call)
# --------------------------------------------------------------------------

def _log_softmax(z, axis=-1):
    z = z - z.max(axis=axis, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=axis, keepdims=True))


def class_targets(shape, rng):
    C = shape[0] if len(shape) == 1 else shape[1]
    batch = () if len(shape) == 1 else (shape[0],) + tuple(shape[2:])
    if C == 0:
        return np.full(batch, -100, np.int64)
    return rng.integers(0, C, size=batch).astype(np.int64)


def base(name, shape=(4, 5), dtype=np.float64):
    """Valid keyword arguments of ``name`` for an input of ``shape`` and ``dtype``."""
    rng = np.random.default_rng(12345)
    fam = family(name)
    if fam == "ce":
        kw = dict(input=(rng.standard_normal(shape) * 2).astype(dtype), target=class_targets(shape, rng))
    elif fam == "nll":
        ax = 0 if len(shape) == 1 else 1
        x = _log_softmax(rng.standard_normal(shape), axis=ax) if all(shape) else np.zeros(shape)
        kw = dict(input=x.astype(dtype), target=class_targets(shape, rng))
    elif fam == "bce":
        kw = dict(input=rng.uniform(0.02, 0.98, shape).astype(dtype), target=rng.uniform(0, 1, shape).astype(dtype))
    elif fam == "bcel":
        kw = dict(input=(rng.standard_normal(shape) * 3).astype(dtype), target=rng.uniform(0, 1, shape).astype(dtype))
    elif fam == "kl":
        z = rng.standard_normal(shape)
        t = rng.uniform(0.01, 1, shape)
        kw = dict(input=(_log_softmax(z) if z.ndim and z.size else z).astype(dtype),
                  target=(t / t.sum(axis=-1, keepdims=True) if t.ndim and t.size else t).astype(dtype))
    elif fam == "reg":
        kw = dict(input=rng.standard_normal(shape).astype(dtype), target=rng.standard_normal(shape).astype(dtype))
    elif fam == "sm":
        kw = dict(input=(rng.standard_normal(shape) * 3).astype(dtype))
    else:  # smb
        y = rng.standard_normal(shape) * 2
        if y.ndim and y.size:
            y = _log_softmax(y)
        if name == "softmax_backward":
            y = np.exp(y)
        kw = dict(grad_output=rng.standard_normal(shape).astype(dtype), output=y.astype(dtype))
    return {k: np.asarray(v) for k, v in kw.items()}


def n_classes(shape):
    return shape[0] if len(shape) == 1 else shape[1]


def optional_array(name, arg, kw):
    """A valid value for an optional array argument that the base leaves out."""
    x = kw["input"] if "input" in kw else kw["grad_output"]
    rng = np.random.default_rng(7)
    if arg == "weight":
        if family(name) in ("ce", "nll"):
            return rng.uniform(1.0, 3.0, n_classes(x.shape))
        return rng.uniform(1.0, 3.0, x.shape[-1:])
    if arg == "pos_weight":
        return rng.uniform(1.0, 3.0, x.shape[-1:])
    if arg == "grad_output":  # the upstream gradient of a loss, per position
        shape = np.shape(fastloss_call(getattr(ref, root(name)), dict(kw, reduction="none")))
        return rng.uniform(-2.0, 2.0, shape)
    raise AssertionError(arg)


def fastloss_call(fn, kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(**kw)


def array_args(name):
    fam = family(name)
    args = {"ce": ["input", "target", "weight"], "nll": ["input", "target", "weight"],
            "bce": ["input", "target", "weight"], "bcel": ["input", "target", "weight", "pos_weight"],
            "kl": ["input", "target"], "reg": ["input", "target"], "sm": ["input"],
            "smb": ["grad_output", "output"]}[fam]
    if has_grad(name):
        args = args + ["grad_output"]
    return args


def with_arg(name, arg, kw):
    """kw with ``arg`` present (adding a valid one, and reduction='none' for an array
    upstream gradient)."""
    kw = dict(kw)
    if arg not in kw:
        if arg == "grad_output":
            kw["reduction"] = "none"
        kw[arg] = optional_array(name, arg, kw)
    return kw


# --------------------------------------------------------------------------
# memory layouts (same values, another layout)
# --------------------------------------------------------------------------

def _pad_value(a):
    if a.dtype.kind == "f":
        return np.nan
    if a.dtype.kind in "iu":
        return 99  # an out-of-range class: read by mistake, it would raise
    return a.flat[0] if a.size else 0


def lay_fortran(a):
    return np.asfortranarray(a)


def lay_strided(a):
    big = np.full(a.shape[:-1] + (2 * a.shape[-1],), _pad_value(a), dtype=a.dtype)
    big[..., ::2] = a
    return big[..., ::2]


def lay_negstride(a):
    return np.array(a[..., ::-1], order="C")[..., ::-1]  # always a copy


def lay_readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


def lay_bigendian(a):
    return a.astype(a.dtype.newbyteorder(">"))


def lay_unaligned(a):
    buf = bytearray(a.nbytes + 1)
    u = np.frombuffer(buf, a.dtype, count=a.size, offset=1).reshape(a.shape)
    u[...] = a
    assert a.dtype.itemsize == 1 or a.size == 0 or not u.flags.aligned
    return u


def lay_zerostride(a):
    """A read-only broadcast view (stride 0 on the first axis): every row is row 0."""
    return np.broadcast_to(a[:1], a.shape)


LAYOUTS = {"zerostride": lay_zerostride, "fortran": lay_fortran, "strided": lay_strided, "negstride": lay_negstride,
           "readonly": lay_readonly, "bigendian": lay_bigendian, "unaligned": lay_unaligned}


# --------------------------------------------------------------------------
# the table
# --------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[], dict]                  # keyword arguments of the call
    expect: Optional[type]                    # None: a value; else the exception type
    in_place: bool = False                    # out= is the input: it is modified on purpose


CASES = {}  # "<function>-<case>" -> (function name, Case)


def add(name, case_id, make, expect=None, in_place=False):
    key = f"{name}-{case_id}"
    assert key not in CASES, key
    CASES[key] = (name, Case(case_id, make, expect, in_place))


def dtype_outcome(name, arg, dt):
    """Which dtypes each argument accepts (docs/inputs-and-errors.md 'Dtypes', docs/semantics.md)."""
    fam = family(name)
    if arg == "input" or fam == "smb":
        return None if dt in FLOATS else TypeError
    if arg == "target":
        if fam in ("ce", "nll"):
            return None if dt in INTS else TypeError
        if fam == "reg":
            return None if dt in FLOATS + INTS + ("bool",) else TypeError
        return None if dt in FLOATS else TypeError  # bce, bcel, kl: floating targets
    # weight, pos_weight, the upstream grad_output: any real array
    return None if dt in FLOATS + INTS else TypeError


def _cast(a, dt):
    if dt == "object":
        return a.astype(object)
    return a.astype(dt)


def _generic_cases(name):
    fam = family(name)
    b = lambda **o: dict(base(name), **o)  # noqa: E731

    # dtype x array argument
    for arg in array_args(name):
        for dt in ALL_DTYPES:
            if arg == "input" and dt == "float64":
                continue
            if arg in ("target",) and fam in ("ce", "nll") and dt == "int64":
                continue

            def make(arg=arg, dt=dt):
                kw = with_arg(name, arg, base(name))
                kw[arg] = _cast(kw[arg], dt)
                return kw
            add(name, f"{arg}_{dt}", make, dtype_outcome(name, arg, dt))

    # memory layouts x array argument (values unchanged: a value is expected)
    for arg in array_args(name):
        for lay, fn in LAYOUTS.items():
            def make(arg=arg, fn=fn):
                kw = with_arg(name, arg, base(name))
                kw[arg] = fn(kw[arg])
                return kw
            if lay == "fortran" and np.ndim(make()[arg]) < 2:
                continue
            add(name, f"{arg}_{lay}", make)
    # empty arrays whose strides need not merge (frombuffer at an odd offset: unaligned, C
    # strides of a shape with a 0)
    add(name, "empty_N0_odd_strides", lambda: {k: lay_unaligned(v) if isinstance(v, np.ndarray) else v
                                               for k, v in base(name, shape=(0, 5, 3)).items()})
    # array-likes (nested lists) for every array argument
    add(name, "all_lists", lambda: {k: v.tolist() if isinstance(v, np.ndarray) else v
                                    for k, v in base(name).items()})
    # a float16 input in an unusual layout too
    add(name, "f16_negstride", lambda: {k: lay_negstride(v) if isinstance(v, np.ndarray) and v.ndim
                                        else v for k, v in base(name, dtype=np.float16).items()})
    if BF16 is not None:  # bfloat16 (ml_dtypes) strided backwards, and big-endian
        add(name, "bf16_negstride", lambda: {k: lay_negstride(v) if isinstance(v, np.ndarray) and v.ndim
                                             else v for k, v in base(name, dtype=BF16).items()})
        add(name, "bf16_bigendian", lambda: {k: lay_bigendian(v) if isinstance(v, np.ndarray) and _is_bf16(v)
                                             else v for k, v in base(name, dtype=BF16).items()})
    add(name, "f32_fortran_all", lambda: {k: lay_fortran(v) if isinstance(v, np.ndarray) else v
                                          for k, v in base(name, dtype=np.float32).items()})

    # reduction values
    if fam not in ("sm", "smb"):
        add(name, "reduction_avg", lambda: b(reduction="avg"), ValueError)
        add(name, "reduction_None", lambda: b(reduction=None), ValueError)
        add(name, "reduction_MEAN", lambda: b(reduction="MEAN"), ValueError)
        add(name, "reduction_batchmean", lambda: b(reduction="batchmean"),
            None if fam == "kl" else ValueError)
        add(name, "reduction_np_str", lambda: b(reduction=np.str_("sum")))
        for red in ("none", "sum", "mean"):
            add(name, f"empty_N0_{red}", lambda red=red: dict(base(name, shape=(0, 5)), reduction=red))

    # upstream gradients
    if has_grad(name):
        add(name, "go_scalar_2.5", lambda: b(grad_output=2.5))
        add(name, "go_nan", lambda: b(grad_output=NAN))
        add(name, "go_0d_array", lambda: b(grad_output=np.array(-1.5)))
        add(name, "go_array_for_mean", lambda: b(grad_output=np.ones(4)), ValueError)
        add(name, "go_str", lambda: b(grad_output="1"), TypeError)
        add(name, "go_complex", lambda: b(grad_output=1j), TypeError)
        add(name, "go_wrong_shape_none", lambda: b(grad_output=np.ones(7), reduction="none"), ValueError)
        add(name, "go_broadcast_none", lambda: dict(with_arg(name, "grad_output", base(name)),
                                                    grad_output=np.float64(0.5) * np.ones(1)))

    # out=
    if has_out(name):
        first = "grad_output" if fam == "smb" else "input"

        def out_like(dtype=None, order="C"):
            kw = base(name)
            return np.empty(kw[first].shape, dtype or kw[first].dtype, order=order)

        add(name, "out_wrong_shape", lambda: b(out=np.empty((5, 4))), ValueError)
        add(name, "out_extra_axis", lambda: b(out=np.empty((4, 5, 1))), ValueError)
        add(name, "out_wrong_dtype", lambda: b(out=out_like(np.float32)), TypeError)
        add(name, "out_int", lambda: b(out=out_like(np.int64)), TypeError)
        add(name, "out_list", lambda: b(out=out_like().tolist()), TypeError)
        add(name, "out_readonly", lambda: b(out=lay_readonly(out_like())), ValueError)
        add(name, "out_fortran", lambda: b(out=out_like(order="F")))
        add(name, "out_strided", lambda: b(out=lay_strided(out_like())))
        add(name, "out_negstride", lambda: b(out=lay_negstride(out_like())))
        add(name, "out_bigendian", lambda: b(out=lay_bigendian(out_like())))
        add(name, "out_unaligned", lambda: b(out=lay_unaligned(out_like())))

        def partial():
            kw = base(name)
            x = kw[first]
            big = np.zeros((x.shape[0] + 1,) + x.shape[1:], x.dtype)
            big[:-1] = x
            kw[first] = big[:-1]
            kw["out"] = big[1:]
            return kw
        add(name, "out_partial_overlap", partial, ValueError)

        def reversed_():
            kw = base(name)
            kw["out"] = kw[first][::-1]
            return kw
        add(name, "out_reversed_input", reversed_, ValueError)

        def in_place():
            kw = base(name)
            kw["out"] = kw[first]
            return kw
        add(name, "out_is_input", in_place, in_place=True)

        for other in [a for a in array_args(name) if a != first]:
            def overlap(other=other):
                # `other` lives in a buffer whose last element is out's first element
                kw = with_arg(name, other, base(name))
                x, o = kw[first], kw[other]
                buf = np.zeros(o.nbytes + x.nbytes, np.uint8)
                ov = buf[: o.nbytes].view(o.dtype).reshape(o.shape)
                ov[...] = o
                kw[other] = ov
                start = o.nbytes - o.dtype.itemsize
                kw["out"] = buf[start: start + x.nbytes].view(x.dtype).reshape(x.shape)
                return kw
            add(name, f"out_overlaps_{other}", overlap, ValueError)


def _special(name, x, where, value, *more):
    """base(name) with x[where] = value (and further (where, value) pairs)."""
    kw = base(name)
    kw[x] = kw[x].copy()
    kw[x][where] = value
    for w, v in zip(more[::2], more[1::2]):
        kw[x][w] = v
    return kw


def _family_cases(name):
    fam = family(name)
    b = lambda **o: dict(base(name), **o)  # noqa: E731
    first = "grad_output" if fam == "smb" else "input"

    # non-finite values in the (first) input
    finite_only = fam == "bce"  # BCE: input outside [0, 1] (NaN too) is a ValueError
    for vid, v in (("nan", NAN), ("posinf", INF), ("neginf", -INF)):
        add(name, f"{first}_{vid}", lambda v=v: _special(name, first, (1, 2), v),
            ValueError if finite_only else None)
    add(name, f"{first}_row_all_neginf", lambda: _special(name, first, (1,), -INF),
        ValueError if finite_only else None)
    for red in ("none", "sum"):
        if fam not in ("sm", "smb"):
            add(name, f"{first}_nan_{red}", lambda red=red: dict(_special(name, first, (1, 2), NAN),
                                                                  reduction=red),
                ValueError if finite_only else None)

    # degenerate shapes
    if fam in ("ce", "nll"):
        add(name, "empty_C0_all_ignored", lambda: base(name, shape=(4, 0)))
        add(name, "empty_C0_sum", lambda: dict(base(name, shape=(4, 0)), reduction="sum"))
        add(name, "empty_0x0", lambda: base(name, shape=(0, 0)))
        add(name, "C1", lambda: base(name, shape=(4, 1)))
        add(name, "C1_sum", lambda: dict(base(name, shape=(4, 1)), reduction="sum"))
        add(name, "input_0d", lambda: dict(input=np.array(1.0), target=np.array(0)), ValueError)
        add(name, "input_1d", lambda: base(name, shape=(5,)))
        add(name, "input_1d_target_shape1", lambda: dict(base(name, shape=(5,)), target=np.array([3])))
        add(name, "input_1d_target_shape2", lambda: dict(base(name, shape=(5,)), target=np.array([3, 1])),
            ValueError)
        add(name, "kdim", lambda: base(name, shape=(2, 5, 3)))
        add(name, "kdim_none", lambda: dict(base(name, shape=(2, 5, 3, 2)), reduction="none"))
        add(name, "kdim_N0", lambda: base(name, shape=(0, 5, 3)))
        # targets
        add(name, "target_batch_mismatch", lambda: b(target=np.array([0, 1, 2])), ValueError)
        add(name, "target_2d_wrong", lambda: b(target=np.zeros((4, 2), np.int64)), ValueError)
        add(name, "target_0d_for_2d", lambda: b(target=np.array(1)), ValueError)
        add(name, "target_eq_C", lambda: b(target=np.array([0, 5, 1, 2])), IndexError)
        add(name, "target_negative", lambda: b(target=np.array([0, 1, -1, 2])), IndexError)
        add(name, "target_2pow40", lambda: b(target=np.array([0, 1, 2, 2**40])), IndexError)
        add(name, "target_int32_min", lambda: b(target=np.array([0, -2**31, 1, 2], np.int32)), IndexError)
        add(name, "target_uint64_max", lambda: b(target=np.array([0, 2**64 - 1, 1, 2], np.uint64)),
            IndexError)
        add(name, "target_uint64_2pow63", lambda: b(target=np.array([2**63, 0, 1, 2], np.uint64)),
            IndexError)
        add(name, "target_int8_neg", lambda: b(target=np.array([0, 1, 2, -3], np.int8)), IndexError)
        add(name, "target_last_bad_none", lambda: b(target=np.array([0, 1, 2, 9]), reduction="none"),
            IndexError)
        add(name, "ignore_eq_valid_class", lambda: b(target=np.array([3, 1, 3, 0]), ignore_index=3))
        add(name, "ignore_eq_valid_class_none", lambda: b(target=np.array([3, 1, 3, 0]), ignore_index=3,
                                                         reduction="none"))
        add(name, "ignore_out_of_range_used", lambda: b(target=np.array([7, 1, 7, 0]), ignore_index=7))
        add(name, "ignore_out_of_range_not_matching", lambda: b(target=np.array([8, 1, 7, 0]),
                                                                ignore_index=7), IndexError)
        add(name, "ignore_minus1", lambda: b(target=np.array([-1, 1, -1, 0]), ignore_index=-1))
        add(name, "ignore_2pow40", lambda: b(target=np.array([2**40, 1, 2, 0]), ignore_index=2**40))
        add(name, "ignore_uint8_255", lambda: b(target=np.array([255, 1, 2, 0], np.uint8), ignore_index=255))
        add(name, "all_ignored_mean", lambda: b(target=np.full(4, -100)))
        add(name, "all_ignored_sum", lambda: b(target=np.full(4, -100), reduction="sum"))
        add(name, "all_ignored_none", lambda: b(target=np.full(4, -100), reduction="none"))
        add(name, "ignore_index_float", lambda: b(ignore_index=1.5), TypeError)
        add(name, "ignore_index_bool", lambda: b(ignore_index=True), TypeError)
        add(name, "ignore_index_2pow70", lambda: b(ignore_index=2**70), ValueError)
        add(name, "ignore_index_np_int8", lambda: b(target=np.array([2, 1, 2, 0]), ignore_index=np.int8(2)))
        # weights
        add(name, "weight_short", lambda: b(weight=np.ones(4)), ValueError)
        add(name, "weight_long", lambda: b(weight=np.ones(6)), ValueError)
        add(name, "weight_2d", lambda: b(weight=np.ones((1, 5))), ValueError)
        add(name, "weight_0d", lambda: b(weight=np.float64(1.0)), ValueError)
        add(name, "weight_zeros_mean", lambda: b(weight=np.zeros(5)))
        add(name, "weight_with_ignored", lambda: b(weight=np.arange(1.0, 6.0), target=np.array([4, -100, 2, 0])))
        add(name, "weight_nan", lambda: b(weight=np.array([1.0, NAN, 1.0, 1.0, 1.0]),
                                          target=np.array([0, 2, 3, 4])))
    if fam == "ce":
        add(name, "smoothing_negative", lambda: b(label_smoothing=-0.1), ValueError)
        add(name, "smoothing_1.5", lambda: b(label_smoothing=1.5), ValueError)
        add(name, "smoothing_nan", lambda: b(label_smoothing=NAN), ValueError)
        add(name, "smoothing_str", lambda: b(label_smoothing="0.1"), TypeError)
        add(name, "smoothing_1", lambda: b(label_smoothing=1))
        add(name, "smoothing_neginf_logit", lambda: dict(_special(name, "input", (1, 2), -INF),
                                                         label_smoothing=0.1))
        add(name, "smoothing_all_ignored", lambda: b(target=np.full(4, -100), label_smoothing=0.2))
        add(name, "smoothing_C1", lambda: dict(base(name, shape=(4, 1)), label_smoothing=0.3))
        def prob(shape=(4, 5), **o):
            rng = np.random.default_rng(3)
            kw = base(name, shape=shape)
            p = rng.uniform(0, 1, shape)
            kw["target"] = p / p.sum(axis=1, keepdims=True) if all(shape) else p
            kw.update(o)
            return kw
        add(name, "prob_target", prob)
        add(name, "prob_target_f32", lambda: dict(prob(), target=prob()["target"].astype(np.float32)))
        add(name, "prob_target_int_same_shape", lambda: dict(prob(), target=np.zeros((4, 5), np.int64)),
            TypeError)
        add(name, "prob_target_ignore_index_0", lambda: prob(ignore_index=0), ValueError)
        add(name, "prob_target_C0_sum", lambda: prob(shape=(4, 0), reduction="sum"))
        add(name, "prob_target_C0_mean", lambda: prob(shape=(4, 0)))
        add(name, "prob_target_N0_mean", lambda: prob(shape=(0, 5)))
        add(name, "prob_target_smoothing", lambda: prob(label_smoothing=0.25))
        add(name, "prob_target_neginf_logit", lambda: dict(_special(name, "input", (1, 2), -INF),
                                                           target=prob()["target"]))
        add(name, "prob_target_weight_smoothing", lambda: prob(weight=np.arange(1.0, 6.0), label_smoothing=0.1))
    if fam in ("bce", "bcel"):
        add(name, "target_shape_mismatch", lambda: b(target=np.full((4, 1), 0.5)), ValueError)
        add(name, "target_transposed", lambda: b(target=np.full((5, 4), 0.5)), ValueError)
        add(name, "weight_broadcast_row", lambda: b(weight=np.arange(1.0, 6.0)))
        add(name, "weight_broadcast_col", lambda: b(weight=np.arange(1.0, 5.0)[:, None]))
        add(name, "weight_bad_shape", lambda: b(weight=np.ones(3)), ValueError)
        add(name, "weight_too_many_dims", lambda: b(weight=np.ones((2, 4, 5))), ValueError)
        add(name, "input_0d", lambda: dict(input=np.array(base(name)["input"][0, 0]),
                                           target=np.array(0.25)))
        add(name, "C1", lambda: base(name, shape=(4, 1)))
        add(name, "empty_C0", lambda: base(name, shape=(4, 0)))
        add(name, "empty_1d", lambda: base(name, shape=(0,)))
        add(name, "target_nan", lambda: _special(name, "target", (0, 1), NAN),
            ValueError if fam == "bce" else None)
        add(name, "target_2", lambda: _special(name, "target", (0, 1), 2.0),
            ValueError if fam == "bce" else None)
        add(name, "target_neg", lambda: _special(name, "target", (0, 1), -0.5),
            ValueError if fam == "bce" else None)
    # float16 input, operands torch holds in the input's dtype, of more precision: rounded to
    # float16 first (docs/inputs-and-errors.md, 'Dtypes'); the fast path used to keep them in float32
    if fam == "bce":
        add(name, "f16_input_target_1.0001", lambda: dict(input=np.array([0.5, 0.25], np.float16),
                                                         target=np.array([1.0001, 0.0])))
        add(name, "f16_input_weight_f64", lambda: dict(input=np.array([0.5, 0.25], np.float16),
                                                      target=np.array([1.0, 0.0], np.float16),
                                                      weight=np.array([1.0001, 3.0004])))
    if fam == "reg":
        add(name, "f16_input_f32_target_equal_in_f16", lambda: dict(
            input=np.array([1.91, -2.0], np.float16), target=np.array([1.9098246, -2.0001], np.float32),
            reduction="none"))
    if fam == "smb":
        add(name, "f16_grad_f64_output", lambda: dict(
            grad_output=base(name)["grad_output"].astype(np.float16), output=base(name)["output"] + 1e-4))
    if fam == "nll":
        add(name, "f16_input_f64_weight", lambda: dict(base(name, dtype=np.float16),
                                                      weight=np.array([1.0003, 1, 2, 1, 1.0002])))
    if fam == "bce":
        add(name, "input_exact_0_and_1", lambda: _special(name, "input", (0, 0), 0.0, (0, 1), 1.0))
        add(name, "input_0_and_1_with_targets", lambda: dict(
            input=np.array([0.0, 1.0, 0.0, 1.0]), target=np.array([0.0, 1.0, 1.0, 0.0])))
        add(name, "input_1.5", lambda: _special(name, "input", (0, 1), 1.5), ValueError)
        add(name, "input_neg", lambda: _special(name, "input", (3, 4), -1e-9), ValueError)
    if fam == "bcel":
        add(name, "pos_weight_bad_shape", lambda: b(pos_weight=np.ones(3)), ValueError)
        add(name, "pos_weight_full_shape", lambda: b(pos_weight=np.full((4, 5), 2.0)))
        add(name, "pos_weight_0d", lambda: b(pos_weight=np.array(3.0)))
        add(name, "pos_weight_inf", lambda: b(pos_weight=np.array([1.0, INF, 1.0, 1.0, 1.0])))
        add(name, "input_huge", lambda: _special(name, "input", (0, slice(None)), 1e30))
    if fam == "reg" and has_grad(name):
        def out_is_target():
            kw = base(name)
            kw["out"] = kw["target"]
            return kw
        add(name, "out_is_target", out_is_target, in_place=True)
    if fam in ("kl", "reg"):
        # broadcast to an empty shape, the empty operand with strides that do not merge
        # (a TypeError "'NoneType' object is not iterable" in kl_div before the fix)
        add(name, "broadcast_to_empty_odd_strides", lambda: dict(
            base(name), input=np.array([[NAN], [0.0]]), target=lay_unaligned(np.zeros((0, 2, 2)))))
        add(name, "broadcast_input_empty_odd_strides", lambda: dict(
            base(name), input=lay_unaligned(np.zeros((0, 2, 2))), target=np.array([[0.5], [0.0]])))
    if fam == "kl":
        add(name, "target_broadcast_row", lambda: b(target=np.full(5, 0.2)))
        add(name, "input_broadcast", lambda: dict(input=base(name)["input"][:1], target=base(name)["target"]))
        add(name, "target_shape_mismatch", lambda: b(target=np.full((4, 3), 0.2)), ValueError)
        add(name, "batchmean_N0", lambda: dict(base(name, shape=(0, 5)), reduction="batchmean"))
        add(name, "batchmean_0d", lambda: dict(input=np.array(-1.0), target=np.array(0.5), reduction="batchmean"))
        add(name, "target_zero", lambda: _special(name, "target", (0, 1), 0.0))
        add(name, "target_negative", lambda: _special(name, "target", (0, 1), -0.5))
        add(name, "log_target_true", lambda: b(log_target=True, target=np.log(base(name)["target"])))
        add(name, "log_target_np_bool", lambda: b(log_target=np.True_, target=np.log(base(name)["target"])))
        add(name, "log_target_str", lambda: b(log_target="yes"), TypeError)
        add(name, "log_target_neginf", lambda: dict(b(log_target=True, target=np.log(base(name)["target"])),
                                                    target=np.full((4, 5), -INF)))
        add(name, "input_0d", lambda: dict(input=np.array(-1.0), target=np.array(0.5)))
        add(name, "empty_C0", lambda: base(name, shape=(4, 0)))
    if fam == "reg":
        add(name, "target_broadcast_row", lambda: b(target=np.arange(5.0)))
        add(name, "input_broadcast", lambda: dict(input=base(name)["input"][:, :1], target=base(name)["target"]))
        add(name, "target_shape_mismatch", lambda: b(target=np.ones((4, 3))), ValueError)
        add(name, "input_0d", lambda: dict(input=np.array(1.5), target=np.array(-0.5)))
        add(name, "input_0d_target_2d", lambda: dict(input=np.array(1.5), target=base(name)["target"]))
        add(name, "C1", lambda: base(name, shape=(4, 1)))
        add(name, "empty_C0", lambda: base(name, shape=(4, 0)))
        add(name, "empty_1d", lambda: base(name, shape=(0,)))
        add(name, "equal_values", lambda: b(target=base(name)["input"]))
        add(name, "target_inf", lambda: _special(name, "target", (2, 2), INF))
        add(name, "both_inf", lambda: dict(_special(name, "target", (2, 2), INF),
                                           input=_special(name, "input", (2, 2), INF)["input"]))
    if root(name) == "smooth_l1_loss":
        add(name, "beta_negative", lambda: b(beta=-1.0), ValueError)
        add(name, "beta_zero", lambda: b(beta=0.0))
        add(name, "beta_huge", lambda: b(beta=1e300))
        add(name, "beta_nan", lambda: b(beta=NAN), ValueError)
        add(name, "beta_str", lambda: b(beta="1"), TypeError)
        add(name, "beta_int", lambda: b(beta=2))

        def zero_diffs(dtype=np.float64, **o):
            kw = base(name, dtype=dtype)
            kw["input"][0] = 0.0
            kw["target"][0] = 0.0
            kw["input"][1, :2] = -0.0
            kw["target"][1, :2] = 0.0
            kw.update(o)
            return kw
        # 1/beta overflows: was NaN (0 * inf) where torch and the reference give 0
        add(name, "beta_subnormal_5e-324", lambda: zero_diffs(beta=5e-324))
        add(name, "beta_subnormal_1e-310", lambda: zero_diffs(beta=1e-310))
    if root(name) == "huber_loss":
        add(name, "delta_zero", lambda: b(delta=0.0), ValueError)
        add(name, "delta_negative", lambda: b(delta=-1.0), ValueError)
        add(name, "delta_nan", lambda: b(delta=NAN), ValueError)
        add(name, "delta_str", lambda: b(delta="1"), TypeError)
        add(name, "delta_tiny", lambda: b(delta=1e-300))
    if fam in ("sm", "smb"):
        add(name, "axis_0", lambda: b(axis=0))
        add(name, "axis_minus2", lambda: b(axis=-2))
        add(name, "axis_2", lambda: b(axis=2), np.exceptions.AxisError)
        add(name, "axis_minus3", lambda: b(axis=-3), np.exceptions.AxisError)
        add(name, "axis_float", lambda: b(axis=1.0), TypeError)
        add(name, "axis_np_int", lambda: b(axis=np.int32(0)))
        add(name, "empty_N0", lambda: base(name, shape=(0, 5)))
        add(name, "empty_C0", lambda: base(name, shape=(4, 0)))
        add(name, "empty_C0_axis0", lambda: dict(base(name, shape=(4, 0)), axis=0))
        add(name, "C1", lambda: base(name, shape=(4, 1)))
        add(name, "input_0d", lambda: base(name, shape=()))
        add(name, "input_0d_axis1", lambda: dict(base(name, shape=()), axis=1), np.exceptions.AxisError)
        add(name, "input_1d", lambda: base(name, shape=(7,)))
        add(name, "input_3d_axis1", lambda: dict(base(name, shape=(2, 5, 3)), axis=1))
        add(name, "row_pos_and_neg_inf", lambda: _special(name, first, (0, 1), INF, (0, 3), -INF))
        if fam == "sm":
            add(name, "row_posinf_twice", lambda: dict(input=np.array([[INF, INF, 0.0], [1.0, 2.0, 3.0]])))
            add(name, "huge_values", lambda: b(input=base(name)["input"] * 1e300))
    if fam == "smb":
        add(name, "output_shape_mismatch", lambda: b(output=np.zeros((4, 4))), ValueError)
        add(name, "output_transposed", lambda: b(output=np.zeros((5, 4))), ValueError)
        add(name, "output_nan", lambda: _special(name, "output", (1, 2), NAN))
        add(name, "output_neginf", lambda: _special(name, "output", (1, 2), -INF))
        add(name, "output_f32_for_f64", lambda: b(output=base(name)["output"].astype(np.float32)))

        def out_is_output():
            kw = base(name)
            kw["out"] = kw["output"]
            return kw
        add(name, "out_is_output", out_is_output, in_place=True)


for _name in FUNCTIONS:
    _generic_cases(_name)
    _family_cases(_name)


# Where torch 2.13 answers differently, on purpose. Each row: the functions (a family, or
# exact names), the case ids, and why. Every listed case is asserted to really
# differ from torch, so the list cannot go stale silently.
_CE = ("ce", "nll")
_GRAD = tuple(n for n in FUNCTIONS if has_grad(n))
TORCH_DIFFERS = [
    (_CE, ("target_int8", "target_int32", "target_uint64"),
     "docs/semantics.md: any integer target dtype (torch takes int64/uint8 only)"),
    (_CE, ("weight_float16", "weight_bfloat16", "weight_float32", "weight_int8", "weight_int32", "weight_int64",
           "weight_uint8", "weight_uint64"),
     "docs/inputs-and-errors.md 'Dtypes': integer or other-precision weights are rounded to the loss's dtype"),
    (("ce",), ("smoothing_negative", "smoothing_nan"),
     "docs/semantics.md: label_smoothing outside [0, 1] is a ValueError (torch accepts negatives and NaN)"),
    (("cross_entropy_with_grad", "nll_loss_with_grad"), ("input_1d_target_shape1",),
     "docs/semantics.md: a (1,) target for 1-D input is accepted (torch's backward raises)"),
    (("bce",), ("input_float16", "input_bfloat16", "input_float32", "target_float16", "target_bfloat16",
                "target_float32"),
     "docs/inputs-and-errors.md 'Dtypes': bce's target rounded to the input's dtype (torch's BCE needs equal dtypes)"),
    (("huber_loss_with_grad",), ("input_float16", "input_bfloat16", "input_float32", "target_float16",
                                 "target_bfloat16", "target_float32")
     + tuple(f"target_{d}" for d in INTS + ("bool",)),
     "docs/inputs-and-errors.md 'Dtypes': huber's target held in the input's dtype (torch's huber backward needs equal dtypes)"),
    (("l1_loss", "l1_loss_with_grad"), ("target_bool",),
     "docs/inputs-and-errors.md 'Dtypes': a bool target taken as numbers in the input's dtype (torch cannot subtract a bool tensor)"),
    (("bce", "bcel"), ("weight_bool",),
     "weight must be an integer or floating array; a bool array is a TypeError (torch multiplies by it)"),
    (("bcel",), ("pos_weight_uint64",),
     "pos_weight cast to the input's dtype (torch has no uint64 kernel and raises NotImplementedError)"),
    (("binary_cross_entropy_with_logits",), ("target_complex128",), "targets must be real floating (torch takes a complex target)"),
    (("mse_loss", "l1_loss", "smooth_l1_loss"), tuple(f"input_{d}" for d in INTS),
     "input must be floating (torch computes these forward losses of integer tensors)"),
    (("mse_loss", "smooth_l1_loss"), ("input_bool",),
     "input must be floating (torch computes these forward losses of integer tensors)"),
    (("l1_loss", "l1_loss_with_grad"), ("input_complex128", "target_complex128"),
     "input and target must be real (torch computes |x - y| of complex tensors)"),
    (("kl",), ("log_target_np_bool",), "NumPy bools are bools here (torch's binding rejects numpy.bool)"),
    (_GRAD, ("grad_output_bool",),
     "grad_output must be real numbers; a bool array is a TypeError (torch's backward casts it)"),
    (("bce",), ("f16_input_target_1.0001",),
     "docs/inputs-and-errors.md 'Dtypes': bce's target rounded to the input's dtype (torch's BCE needs equal dtypes)"),
    (("nll",), ("f16_input_f64_weight",),
     "docs/inputs-and-errors.md 'Dtypes': weights rounded to the input's dtype (torch needs equal dtypes)"),
    (("huber_loss_with_grad",), ("f16_input_f32_target_equal_in_f16",),
     "docs/inputs-and-errors.md: huber's target held in the input's dtype, float16 here: the "
     "difference is 0 and so is the gradient"),
    (("smb",), ("f16_grad_f64_output",),
     "output cast to grad_output's dtype (torch's backward ops need equal dtypes)"),
    (("smb",), ("grad_output_float16", "grad_output_bfloat16", "grad_output_float32", "output_float16",
               "output_bfloat16", "output_float32",
               "output_f32_for_f64"),
     "output is cast to grad_output's dtype (torch's backward ops need equal dtypes)"),
    (("log_softmax_backward",), ("output_shape_mismatch", "output_transposed"),
     "output must have grad_output's shape (torch's private log_softmax backward op does not check it)"),
]


def torch_note(name, case_id):
    for scopes, case_ids, why in TORCH_DIFFERS:
        if (name in scopes or family(name) in scopes) and case_id in case_ids:
            return why
    return None


# --------------------------------------------------------------------------
# running a case
# --------------------------------------------------------------------------

def _outcome(fn, kw):
    """(exception or None, result, warning categories)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = fn(**kw)
        except Exception as exc:  # noqa: BLE001 - compared by type
            return exc, None, sorted({w.category.__name__ for w in caught})
    return None, res, sorted({w.category.__name__ for w in caught})


def _snapshot(kw, include_out):
    snap = {}
    for k, v in kw.items():
        if isinstance(v, np.ndarray) and (k != "out" or include_out):
            snap[k] = (v.dtype, v.shape, v.tobytes() if v.dtype != object else v.tolist())
    return snap


def _dtype_of(kw):
    x = kw["input"] if "input" in kw else kw["grad_output"]
    t = np.asarray(x).dtype.type
    return t if t in TOL else np.float64


def _native(a):
    return np.asarray(a).dtype.newbyteorder("=")


def _is_bf16(a):
    return isinstance(a, np.ndarray) and a.dtype.name == "bfloat16"


def _torch_tol(kw):
    """The tolerance of the least precise floating argument (torch rounds in each)."""
    if any(_is_bf16(v) for v in kw.values()):
        return TORCH_TOL[BF16]
    its = [np.dtype(v.dtype).itemsize for v in kw.values()
           if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
    return TORCH_TOL[{2: np.float16, 4: np.float32}.get(min(its, default=8), np.float64)]


def _assert_close(a, b, tol, what):
    a = np.asarray(a)
    b = np.asarray(b)
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    a64 = a.astype(np.float64)
    b64 = b.astype(np.float64)
    assert np.array_equal(np.isnan(a64), np.isnan(b64)), f"{what}: NaN at different places\n{a}\n{b}"
    np.testing.assert_allclose(a64, b64, equal_nan=True, err_msg=what, **tol)


def _split(name, res):
    """(loss, grad or None) of a result."""
    if has_grad(name):
        loss, grad = res
        return loss, grad
    return res, None


def _to_torch(torch, a):
    if isinstance(a, list):
        a = np.asarray(a)
    if not isinstance(a, np.ndarray):
        return a
    a = np.array(a)  # native byte order, contiguous, owned (a copy)
    if a.dtype.byteorder == ">":
        a = a.astype(a.dtype.newbyteorder("="))
    if _is_bf16(a):  # exact through float32
        return torch.tensor(a.astype(np.float32)).to(torch.bfloat16)
    return torch.tensor(a)


def _from_torch(t):
    """A tensor as a NumPy array (bfloat16 as ml_dtypes' bfloat16)."""
    t = t.detach()
    return t.float().numpy().astype(BF16) if str(t.dtype) == "torch.bfloat16" else t.numpy()


def torch_call(torch, name, kw):
    """The torch twin of a call: (loss, grad wrt the input or None), as NumPy arrays."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _torch_call(torch, name, kw)


def _torch_call(torch, name, kw):
    F = torch.nn.functional
    fam = family(name)
    kw = {k: v for k, v in kw.items() if k != "out"}
    T = {k: _to_torch(torch, v) for k, v in kw.items()}
    if fam == "sm":
        fn = F.log_softmax if name == "log_softmax" else F.softmax
        r = fn(T["input"], dim=kw.get("axis", -1))
        return _from_torch(r), None
    if fam == "smb":
        g, y = T["grad_output"], T["output"]
        fn = torch._log_softmax_backward_data if name == "log_softmax_backward" else torch._softmax_backward_data
        r = fn(g, y, kw.get("axis", -1), g.dtype)
        return _from_torch(r), None
    grad = has_grad(name)
    x = T.pop("input")
    if grad:
        x = x.detach().clone().requires_grad_(True)
    t = T.pop("target")
    go = T.pop("grad_output", None)
    r = root(name)
    fn = {"cross_entropy": F.cross_entropy, "nll_loss": F.nll_loss,
          "binary_cross_entropy": F.binary_cross_entropy,
          "binary_cross_entropy_with_logits": F.binary_cross_entropy_with_logits,
          "kl_div": F.kl_div, "mse_loss": F.mse_loss, "l1_loss": F.l1_loss,
          "smooth_l1_loss": F.smooth_l1_loss, "huber_loss": F.huber_loss}[r]
    loss = fn(x, t, **T)
    if not grad:
        return _from_torch(loss), None
    if go is None:
        gt = torch.ones_like(loss)
    else:
        gt = torch.broadcast_to(torch.as_tensor(go), loss.shape)
    loss.backward(gt)
    g = x.grad if x.grad is not None else torch.zeros_like(x)
    return _from_torch(loss), _from_torch(g)


OUR_ERRORS = (TypeError, ValueError, IndexError)
TORCH_ERRORS = (RuntimeError, ValueError, IndexError, TypeError)


def run_case(key):
    name, case = CASES[key]
    fast = getattr(fastloss, name)
    slow = getattr(ref, name)

    kw = case.make()
    before = _snapshot(kw, include_out=True)
    f_exc, f_res, f_warn = _outcome(fast, kw)
    if f_exc is not None:
        assert _snapshot(kw, include_out=True) == before, "fast path modified an argument before raising"
    elif not case.in_place:
        after = _snapshot(kw, include_out=False)
        assert after == {k: v for k, v in before.items() if k != "out"}, "fast path modified an input"
    if f_res is not None and has_out(name) and "out" in kw:
        fast_grad = f_res[1] if has_grad(name) else f_res
        assert fast_grad is kw["out"], "out= is not the array returned"
        f_res = (f_res[0], f_res[1].copy()) if has_grad(name) else f_res.copy()

    kw_r = case.make()  # fresh arguments (in-place and out= cases write into them)
    before_r = _snapshot(kw_r, include_out=True)
    r_exc, r_res, r_warn = _outcome(slow, kw_r)
    if r_exc is not None:
        assert _snapshot(kw_r, include_out=True) == before_r, "reference modified an argument before raising"
    elif not case.in_place:
        assert _snapshot(kw_r, include_out=False) == {k: v for k, v in before_r.items() if k != "out"}

    # (a) fast == reference
    assert type(f_exc) is type(r_exc), f"fast: {f_exc!r}; reference: {r_exc!r}"
    if isinstance(f_exc, IndexError) and not isinstance(f_exc, np.exceptions.AxisError):
        assert str(f_exc) == str(r_exc)
        assert str(f_exc).startswith("Target ") and str(f_exc).endswith(" is out of bounds.")
    assert f_warn == r_warn, f"warnings: fast {f_warn}, reference {r_warn}"
    # (b) the documented outcome
    if case.expect is None:
        assert f_exc is None, f"expected a value, got {f_exc!r}"
    else:
        assert isinstance(f_exc, case.expect), f"expected {case.expect.__name__}, got {f_exc!r}"
        return kw, None
    dtype = _dtype_of(kw)
    tol = TOL[dtype]
    f_loss, f_grad = _split(name, f_res)
    r_loss, r_grad = _split(name, r_res)
    # same dtype (the fast path returns native byte order for a big-endian input)
    assert _native(f_loss) == _native(r_loss)
    assert isinstance(f_loss, np.ndarray) == isinstance(r_loss, np.ndarray)
    _assert_close(f_loss, r_loss, tol, "loss: fast vs reference")
    if f_grad is not None:
        assert _native(f_grad) == _native(r_grad) and f_grad.shape == r_grad.shape
        _assert_close(f_grad, r_grad, tol, "grad: fast vs reference")
    return kw, (f_loss, f_grad)


@pytest.mark.parametrize("key", list(CASES))
def test_bad_input(key, torch):
    name, case = CASES[key]
    kw, result = run_case(key)
    if case.id.startswith("out_"):
        return  # out= is the NumPy layer's own (torch.nn.functional has none): (a), (b), (d) only

    # (c) torch
    t_kw = case.make()
    try:
        t_res = torch_call(torch, name, t_kw)
        t_exc = None
    except Exception as exc:  # noqa: BLE001
        t_exc, t_res = exc, None
    why = torch_note(name, case.id)
    ours_raise = case.expect is not None
    if ours_raise:
        agree = t_exc is not None
        if agree:
            assert isinstance(t_exc, TORCH_ERRORS), repr(t_exc)
    else:
        agree = t_exc is None
        if agree:
            tol = _torch_tol(kw)
            try:
                _assert_close(result[0], t_res[0], tol, "loss: fast vs torch")
                if result[1] is not None:
                    _assert_close(result[1], t_res[1], tol, "grad: fast vs torch")
            except AssertionError:
                if why is None:
                    raise
                agree = False
    if why is None:
        assert agree, f"torch {'raises ' + repr(t_exc) if t_exc is not None else 'gives a value'}"
    else:
        assert not agree, f"documented difference ({why}) does not hold any more: torch agrees"
