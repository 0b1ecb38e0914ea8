"""Bad and unusual inputs for fastloss.torch: the functions and the nn.Module classes.

torch is the specification. For every row of the tables below, the same call is made
through ``fastloss.torch`` and through ``torch.nn.functional`` (or ``torch.nn``), on
identical freshly built tensors, and:

(a) where torch raises, fastloss.torch raises exactly the same exception type with exactly
    the same message (``type(e)`` and ``str(e)``);
(b) where torch computes, fastloss.torch returns the same value (dtype, shape,
    requires_grad, values with NaN where NaN) and, after ``backward`` with the same upstream
    gradient, the same gradients for every leaf that requires grad (or the same backward
    error);
(c) both emit the same warnings (category and message), e.g. mse broadcasting or the
    implicit softmax dim;
(d) every row states the expected outcome (``value``, ``warns`` or ``raises``) and torch's
    own outcome is checked against it, so a row cannot silently compare two errors where a
    value was meant (or the reverse);
(e) no argument is modified (bytes and version counter compared before and after), and a failed call leaves no
    state behind: the warning filters and grad mode are unchanged and a following valid
    call of the same function matches torch.

Module rows are derived from the function rows whose options are constructor arguments of
the module (``CrossEntropyLoss(weight=..., ignore_index=...)(input, target)``), so every
module sees the same bad inputs. Ids read ``<function or module>-<case>``.

Separate tests: where each warning points (its file: the caller's, as with torch), the
in-place modification of cross_entropy's logits between forward and backward, and a failed
call with requires_grad leaving no autograd state.

Known mismatches with torch are listed, each with its reason, in ``KNOWN_MISMATCHES`` and
``WARNING_LOCATION`` (xfail(strict=True): the test fails when the difference goes away).
torch comes from the ``torch`` fixture (conftest.py); it is imported inside the tests only.
CI runs the whole file (nothing here is marked slow): about 13 s of CPU time.
"""
import math
import re
import warnings
from dataclasses import dataclass
from typing import Callable

import pytest


INF = math.inf
NAN = math.nan

# fastloss.torch computes float16/bfloat16 in float32 and rounds once; torch's own
# reduced-precision kernels round differently, float32 sums differ in the last bits
TOL = {"float16": dict(rtol=2e-3, atol=2e-3), "bfloat16": dict(rtol=2e-2, atol=2e-2),
       "float32": dict(rtol=1e-5, atol=1e-6), "float64": dict(rtol=1e-12, atol=1e-12)}


# --------------------------------------------------------------------------
# deterministic tensors
# --------------------------------------------------------------------------

class Maker:
    """Builds one case's tensors. Every Maker starts from the same seed, so building a case
    twice gives identical tensors (with identical layouts: transposed, expanded, sliced),
    one set for torch and one for fastloss.torch. Leaves created with ``grad=True`` are
    recorded: their gradients are compared after backward."""

    def __init__(self, torch):
        self.torch = torch
        self.gen = torch.Generator().manual_seed(20240611)
        self.leaves = []

    def _leaf(self, t, grad):
        if grad:
            t.requires_grad_(True)
            self.leaves.append(t)
        return t

    def _dtype(self, name):
        return getattr(self.torch, name)

    def x(self, *shape, dtype="float32", grad=True):
        """Standard-normal values (logits, log-probabilities, regression data)."""
        t = self.torch.randn(shape, generator=self.gen, dtype=self.torch.float64)
        return self._leaf(t.to(self._dtype(dtype)), grad)

    def p(self, *shape, dtype="float32", grad=False):
        """Values in [0.05, 0.95] (probabilities for BCE, kl_div targets)."""
        t = 0.05 + 0.9 * self.torch.rand(shape, generator=self.gen, dtype=self.torch.float64)
        return self._leaf(t.to(self._dtype(dtype)), grad)

    def probs(self, *shape, dtype="float32", grad=False):
        """Rows summing to 1 over dim 1 (probability targets of cross_entropy)."""
        t = self.torch.rand(shape, generator=self.gen, dtype=self.torch.float64) + 0.1
        t = t / t.sum(dim=1, keepdim=True)
        return self._leaf(t.to(self._dtype(dtype)), grad)

    def t(self, values, dtype="float32", grad=False):
        """A tensor of the given values."""
        return self._leaf(self.torch.tensor(values, dtype=self._dtype(dtype)), grad)

    def idx(self, values, dtype="int64"):
        """Class indices."""
        return self.torch.tensor(values, dtype=self._dtype(dtype))


# --------------------------------------------------------------------------
# the case tables: (case name, builder(m) -> (args, kwargs), expected outcome)
# --------------------------------------------------------------------------

VALUE, WARNS, RAISES = "value", "warns", "raises"


@dataclass(frozen=True)
class Row:
    target: str            # function of fastloss.torch / torch.nn.functional, or module class name
    case: str
    build: Callable        # Maker -> positional tensors (input, target) or (input,)
    opts: dict             # keyword arguments; a callable value is called with the Maker
    expect: str            # VALUE / WARNS / RAISES: torch's outcome (checked)

    @property
    def id(self):
        return f"{self.target}-{self.case}"

    def make(self, m):
        args = self.build(m)
        kwargs = {k: (v(m) if callable(v) else v) for k, v in self.opts.items()}
        return args, kwargs


def _class_cases(nll):
    """cross_entropy and nll_loss: x (4, 5) logits, t (4,) class indices."""
    X = lambda m, *s, **k: m.x(*(s or (4, 5)), **k)  # noqa: E731
    T = lambda m, dtype="int64": m.idx([1, 0, 4, 2], dtype)  # noqa: E731
    rows = [
        ("baseline", lambda m: (X(m), T(m)), {}, VALUE),
        ("float64", lambda m: (X(m, dtype="float64"), T(m)), {}, VALUE),
        ("float16", lambda m: (X(m, dtype="float16"), T(m)), {}, VALUE),
        ("bfloat16", lambda m: (X(m, dtype="bfloat16"), T(m)), {}, VALUE),
        # wrong dtypes
        ("input_int64", lambda m: (m.idx([[1, 2, 3, 4, 5]] * 4), T(m)), {}, RAISES),
        ("input_bool", lambda m: (m.idx([[True, False, True, False, True]] * 4, "bool"), T(m)), {}, RAISES),
        ("input_complex64", lambda m: (X(m, grad=False).to(m.torch.complex64), T(m)), {}, RAISES),
        ("target_int32", lambda m: (X(m), T(m, "int32")), {}, RAISES),
        ("target_int16", lambda m: (X(m), T(m, "int16")), {}, RAISES),
        ("target_int8", lambda m: (X(m), T(m, "int8")), {}, RAISES),
        ("target_bool", lambda m: (X(m), m.idx([True, False, True, True], "bool")), {}, RAISES),
        ("target_float_index_shape", lambda m: (X(m), m.t([1.0, 0.0, 4.0, 2.0])), {}, RAISES),
        ("target_uint8", lambda m: (X(m), T(m, "uint8")), {}, VALUE),
        ("weight_float64", lambda m: (X(m), T(m)), {"weight": lambda m: m.t([1, 2, 3, 4, 5], "float64")}, RAISES),
        ("weight_int64", lambda m: (X(m), T(m)), {"weight": lambda m: m.idx([1, 2, 3, 4, 5])}, RAISES),
        ("weight_len4", lambda m: (X(m), T(m)), {"weight": lambda m: m.t([1.0, 2, 3, 4])}, RAISES),
        ("weight_len6", lambda m: (X(m), T(m)), {"weight": lambda m: m.t([1.0, 2, 3, 4, 5, 6])}, RAISES),
        ("weight_2d", lambda m: (X(m), T(m)), {"weight": lambda m: m.t([[1.0, 2, 3, 4, 5]])}, RAISES),
        ("weight_requires_grad", lambda m: (X(m), T(m)), {"weight": lambda m: m.t([0.5, 2, 1, 3, 1.5], grad=True)},
         RAISES),
        ("weight_negative", lambda m: (X(m), T(m)), {"weight": lambda m: m.t([-1.0, 2, 1, 3, 1])}, VALUE),
        ("weight_zero_sum_mean", lambda m: (X(m), m.idx([1, 0, 1, 0])), {"weight": lambda m: m.t([1.0, -1, 1, 1, 1])},
         VALUE),
        # shapes
        ("target_batch_3", lambda m: (X(m), m.idx([1, 0, 4])), {}, RAISES),
        ("target_batch_5", lambda m: (X(m), m.idx([1, 0, 4, 2, 3])), {}, RAISES),
        ("target_2d_for_2d_input", lambda m: (X(m), m.idx([[1, 0, 4, 2]])), {}, RAISES),
        ("target_0d_for_2d_input", lambda m: (X(m), m.idx(1)), {}, RAISES),
        ("kdim", lambda m: (X(m, 2, 5, 3), m.idx([[1, 0, 4], [2, 3, 3]])), {}, VALUE),
        ("kdim_mismatch", lambda m: (X(m, 2, 5, 3), m.idx([[1, 0, 4, 1], [2, 3, 3, 1]])), {}, RAISES),
        ("kdim_target_batch", lambda m: (X(m, 2, 5, 3), m.idx([[1, 0, 4]])), {}, RAISES),
        ("input_1d", lambda m: (X(m, 5), m.idx(3)), {}, VALUE),
        ("input_1d_target_1", lambda m: (X(m, 5), m.idx([3])), {}, VALUE),
        ("input_0d", lambda m: (X(m, grad=False).new_tensor(1.5).requires_grad_(), m.idx(0)), {}, RAISES),
        ("empty_batch_mean", lambda m: (X(m, 0, 5), m.idx([])), {}, VALUE),
        ("empty_batch_sum", lambda m: (X(m, 0, 5), m.idx([])), {"reduction": "sum"}, VALUE),
        ("empty_batch_none", lambda m: (X(m, 0, 5), m.idx([])), {"reduction": "none"}, VALUE),
        ("zero_classes", lambda m: (X(m, 4, 0), m.idx([0, 0, 0, 0])), {}, RAISES),
        ("zero_classes_empty_batch", lambda m: (X(m, 0, 0), m.idx([])), {}, VALUE),
        ("one_class", lambda m: (X(m, 4, 1), m.idx([0, 0, 0, 0])), {}, VALUE),
        # target values
        ("target_out_of_range", lambda m: (X(m), m.idx([1, 5, 4, 2])), {}, RAISES),
        ("target_negative", lambda m: (X(m), m.idx([1, -1, 4, 2])), {}, RAISES),
        ("target_2pow40", lambda m: (X(m), m.idx([1, 2 ** 40, 4, 2])), {}, RAISES),
        ("target_uint8_out_of_range", lambda m: (X(m), m.idx([1, 200, 4, 2], "uint8")), {}, RAISES),
        ("target_default_ignore_index", lambda m: (X(m), m.idx([1, -100, 4, 2])), {}, VALUE),
        ("target_equals_ignore_index", lambda m: (X(m), T(m)), {"ignore_index": 4}, VALUE),
        ("ignore_index_out_of_range", lambda m: (X(m), m.idx([1, 7, 4, 7])), {"ignore_index": 7}, VALUE),
        ("ignore_index_negative_1", lambda m: (X(m), m.idx([-1, 0, 4, 2])), {"ignore_index": -1}, VALUE),
        ("ignore_index_2pow40", lambda m: (X(m), m.idx([1, 2 ** 40, 4, 2])), {"ignore_index": 2 ** 40},
         VALUE),
        ("ignore_index_0_with_weight", lambda m: (X(m), T(m)),
         {"ignore_index": 0, "weight": lambda m: m.t([1.0, 2, 3, 4, 5])}, VALUE),
        ("all_ignored_mean", lambda m: (X(m), m.idx([3, 3, 3, 3])), {"ignore_index": 3}, VALUE),
        ("all_ignored_sum", lambda m: (X(m), m.idx([3, 3, 3, 3])), {"ignore_index": 3, "reduction": "sum"},
         VALUE),
        # non-finite logits
        ("nan_input", lambda m: (m.t([[0.1, NAN, 0.3, 0, 1]] + [[0.5, 0, 1, 2, 3]] * 3, grad=True), T(m)), {},
         VALUE),
        ("posinf_input", lambda m: (m.t([[0.1, INF, 0.3, 0, 1]] + [[0.5, 0, 1, 2, 3]] * 3, grad=True), T(m)),
         {}, VALUE),
        ("neginf_masked_class", lambda m: (m.t([[0.1, 2, -INF, 0, 1]] * 4, grad=True), T(m)), {}, VALUE),
        ("neginf_at_target", lambda m: (m.t([[0.1, -INF, 0.3, 0, 1]] * 4, grad=True), T(m)), {}, VALUE),
        ("all_neginf_row", lambda m: (m.t([[-INF] * 5] + [[0.5, 0, 1, 2, 3]] * 3, grad=True), T(m)), {},
         VALUE),
        ("nan_in_ignored_row", lambda m: (m.t([[NAN] * 5] + [[0.5, 0, 1, 2, 3]] * 3, grad=True),
                                           m.idx([-100, 0, 4, 2])), {}, VALUE),
        ("posinf_in_ignored_row", lambda m: (m.t([[0.1, INF, 0.3, 0, 1]] + [[0.5, 0, 1, 2, 3]] * 3, grad=True),
                                             m.idx([-100, 0, 4, 2])), {}, VALUE),
        ("all_neginf_ignored_row", lambda m: (m.t([[-INF] * 5] + [[0.5, 0, 1, 2, 3]] * 3, grad=True),
                                              m.idx([-100, 0, 4, 2])), {}, VALUE),
        ("nan_in_ignored_row_kdim", lambda m: (m.t([[[NAN, 1.0], [0.5, 2], [1, 3]]] * 2, grad=True),
                                               m.idx([[-100, 1], [2, -100]])), {}, VALUE),
        # layouts
        ("transposed_input", lambda m: (m.x(5, 4).t(), T(m)), {}, VALUE),
        ("expanded_input", lambda m: (m.x(1, 5).expand(4, 5), T(m)), {}, VALUE),
        ("sliced_input", lambda m: (m.x(4, 10)[:, ::2], T(m)), {}, VALUE),
        ("sliced_target", lambda m: (X(m), m.idx([1, 9, 0, 9, 4, 9, 2, 9])[::2]), {}, VALUE),
        ("expanded_target", lambda m: (X(m), m.idx([3]).expand(4)), {}, VALUE),
        ("transposed_kdim", lambda m: (m.x(3, 5, 2).permute(2, 1, 0), m.idx([[1, 0, 4], [2, 3, 3]])), {},
         VALUE),
        # options
        ("reduction_bogus", lambda m: (X(m), T(m)), {"reduction": "bogus"}, RAISES),
        ("reduction_none", lambda m: (X(m), T(m)), {"reduction": "none"}, VALUE),
        ("reduction_sum", lambda m: (X(m), T(m)), {"reduction": "sum"}, VALUE),
        ("legacy_size_average_false", lambda m: (X(m), T(m)), {"size_average": False}, WARNS),
        ("legacy_reduce_false", lambda m: (X(m), T(m)), {"reduce": False}, WARNS),
        ("ignore_index_float", lambda m: (X(m), T(m)), {"ignore_index": 1.5}, RAISES),
    ]
    if not nll:
        rows += [
            ("label_smoothing_negative", lambda m: (X(m), T(m)), {"label_smoothing": -0.1}, VALUE),
            ("label_smoothing_above_1", lambda m: (X(m), T(m)), {"label_smoothing": 1.5}, RAISES),
            ("label_smoothing_1", lambda m: (X(m), T(m)), {"label_smoothing": 1.0}, VALUE),
            ("label_smoothing_nan", lambda m: (X(m), T(m)), {"label_smoothing": NAN}, VALUE),
            ("label_smoothing_neginf_logit", lambda m: (m.t([[0.1, 2, -INF, 0, 1]] * 4, grad=True), T(m)),
             {"label_smoothing": 0.1}, VALUE),
            ("label_smoothing_ignore_weight", lambda m: (X(m), m.idx([1, 3, 4, 3])),
             {"label_smoothing": 0.2, "ignore_index": 3, "weight": lambda m: m.t([1.0, 2, 3, 4, 5])}, VALUE),
            ("probs_target", lambda m: (X(m), m.probs(4, 5)), {}, VALUE),
            ("probs_target_requires_grad", lambda m: (X(m), m.probs(4, 5, grad=True)), {}, VALUE),
            ("probs_target_float64", lambda m: (X(m), m.probs(4, 5, dtype="float64")), {}, VALUE),
            ("probs_target_wrong_shape", lambda m: (X(m), m.probs(4, 4)), {}, RAISES),
            ("probs_target_negative", lambda m: (X(m), m.t([[-0.5, 1.5, 0, 0, 0]] * 4)), {}, VALUE),
            ("probs_target_zero_classes", lambda m: (X(m, 4, 0), m.x(4, 0, grad=False)), {"reduction": "sum"},
             VALUE),
            ("probs_target_ignore_index", lambda m: (X(m), m.probs(4, 5)), {"ignore_index": 1}, RAISES),
            ("probs_target_label_smoothing", lambda m: (X(m), m.probs(4, 5)), {"label_smoothing": 0.3}, VALUE),
            ("probs_target_label_smoothing_negative", lambda m: (X(m), m.probs(4, 5)),
             {"label_smoothing": -0.3}, VALUE),
        ]
    else:
        rows += [
            ("probs_target", lambda m: (X(m), m.probs(4, 5)), {}, RAISES),
            ("input_3d_target_1d", lambda m: (X(m, 2, 5, 3), m.idx([1, 0])), {}, RAISES),
        ]
    return rows


def _bce_cases(logits):
    """binary_cross_entropy (x: probabilities) and ..._with_logits (x: logits); (4, 3)."""
    if logits:
        X = lambda m, *s, **k: m.x(*(s or (4, 3)), **k)  # noqa: E731
    else:
        X = lambda m, *s, **k: m.p(*(s or (4, 3)), grad=k.pop("grad", True), **k)  # noqa: E731
    Y = lambda m, *s, **k: m.p(*(s or (4, 3)), **k)  # noqa: E731
    rows = [
        ("baseline", lambda m: (X(m), Y(m)), {}, VALUE),
        ("float64", lambda m: (X(m, dtype="float64"), Y(m, dtype="float64")), {}, VALUE),
        ("float16", lambda m: (X(m, dtype="float16"), Y(m, dtype="float16")), {}, VALUE),
        ("input_int64", lambda m: (m.idx([[0, 1, 1]] * 4), Y(m)), {}, RAISES),
        ("input_bool", lambda m: (m.idx([[False, True, True]] * 4, "bool"), Y(m)), {}, RAISES),
        ("input_complex64", lambda m: (X(m, grad=False).to(m.torch.complex64), Y(m)), {}, RAISES),
        ("target_float64", lambda m: (X(m), Y(m, dtype="float64")), {}, RAISES if not logits else VALUE),
        ("target_int64", lambda m: (X(m), m.idx([[0, 1, 1]] * 4)), {}, RAISES),
        ("target_bool", lambda m: (X(m), m.idx([[False, True, True]] * 4, "bool")), {}, RAISES),
        ("target_size_mismatch", lambda m: (X(m), Y(m, 4, 1)), {}, RAISES),
        ("target_same_numel_other_shape", lambda m: (X(m), Y(m, 3, 4)), {}, RAISES),
        ("target_outside_0_1", lambda m: (X(m), m.t([[1.5, -0.5, 0.5]] * 4)), {}, RAISES if not logits else VALUE),
        ("target_nan", lambda m: (X(m), m.t([[NAN, 0.5, 0.5]] * 4)), {}, RAISES if not logits else VALUE),
        ("target_requires_grad", lambda m: (X(m), Y(m, grad=True)), {}, VALUE),
        ("weight_broadcast_row", lambda m: (X(m), Y(m)), {"weight": lambda m: m.t([0.5, 1.0, 2.0])}, VALUE),
        ("weight_full", lambda m: (X(m), Y(m)), {"weight": lambda m: m.p(4, 3)}, VALUE),
        ("weight_wrong_shape", lambda m: (X(m), Y(m)), {"weight": lambda m: m.t([0.5, 1.0, 2.0, 3.0])}, RAISES),
        ("weight_float64", lambda m: (X(m), Y(m)), {"weight": lambda m: m.t([0.5, 1.0, 2.0], "float64")}, VALUE),
        ("weight_int64", lambda m: (X(m), Y(m)), {"weight": lambda m: m.idx([1, 2, 3])}, VALUE),
        ("weight_requires_grad", lambda m: (X(m), Y(m)),
         {"weight": lambda m: m.t([0.5, 1.0, 2.0], grad=True)}, RAISES),
        ("input_0d", lambda m: (X(m, grad=False).new_tensor(0.25).requires_grad_(), m.t(0.5)), {}, VALUE),
        ("empty_mean", lambda m: (X(m, 0, 3), Y(m, 0, 3)), {}, VALUE),
        ("empty_sum", lambda m: (X(m, 0, 3), Y(m, 0, 3)), {"reduction": "sum"}, VALUE),
        ("transposed", lambda m: (X(m, 3, 4).t(), Y(m, 3, 4).t()), {}, VALUE),
        ("expanded", lambda m: (X(m, 1, 3).expand(4, 3), Y(m)), {}, VALUE),
        ("sliced", lambda m: (X(m, 4, 6)[:, ::2], Y(m, 8, 3)[1::2]), {}, VALUE),
        ("reduction_bogus", lambda m: (X(m), Y(m)), {"reduction": "bogus"}, RAISES),
        ("reduction_none", lambda m: (X(m), Y(m)), {"reduction": "none"}, VALUE),
        ("legacy_reduce_false", lambda m: (X(m), Y(m)), {"reduce": False}, WARNS),
    ]
    if logits:
        rows += [
            ("nan_input", lambda m: (m.t([[NAN, 0.5, -1]] * 4, grad=True), Y(m)), {}, VALUE),
            ("inf_input", lambda m: (m.t([[INF, -INF, -1]] * 4, grad=True), Y(m)), {}, VALUE),
            ("target_int64_same_shape_float_input", lambda m: (X(m), m.idx([[0, 1, 1]] * 4)),
             {"reduction": "sum"}, RAISES),
            ("pos_weight", lambda m: (X(m), Y(m)), {"pos_weight": lambda m: m.t([0.5, 2.0, 3.0])}, VALUE),
            ("pos_weight_full", lambda m: (X(m), Y(m)), {"pos_weight": lambda m: m.p(4, 3)}, VALUE),
            ("pos_weight_wrong_shape", lambda m: (X(m), Y(m)), {"pos_weight": lambda m: m.t([0.5, 2.0, 3.0, 4.0])},
             RAISES),
            ("pos_weight_2", lambda m: (X(m), Y(m)), {"pos_weight": lambda m: m.t([0.5, 2.0])}, RAISES),
            ("pos_weight_float64", lambda m: (X(m), Y(m)), {"pos_weight": lambda m: m.t([0.5, 2.0, 3.0], "float64")},
             VALUE),
            ("pos_weight_int64", lambda m: (X(m), Y(m)), {"pos_weight": lambda m: m.idx([1, 2, 3])}, VALUE),
            ("pos_weight_requires_grad", lambda m: (X(m), Y(m)),
             {"pos_weight": lambda m: m.t([0.5, 2.0, 3.0], grad=True)},
             RAISES),
            ("pos_weight_negative", lambda m: (X(m), Y(m)), {"pos_weight": lambda m: m.t([-0.5, 2.0, 0.0])}, VALUE),
        ]
    else:
        rows += [
            ("input_above_1", lambda m: (m.t([[1.5, 0.5, 0.5]] * 4, grad=True), Y(m)), {}, RAISES),
            ("input_negative", lambda m: (m.t([[-0.1, 0.5, 0.5]] * 4, grad=True), Y(m)), {}, RAISES),
            ("input_nan", lambda m: (m.t([[NAN, 0.5, 0.5]] * 4, grad=True), Y(m)), {}, RAISES),
            ("input_0_and_1", lambda m: (m.t([[0.0, 1.0, 0.5]] * 4, grad=True), Y(m)), {}, VALUE),
            ("input_above_1_no_grad", lambda m: (m.t([[1.5, 0.5, 0.5]] * 4), Y(m)), {}, RAISES),
        ]
    return rows


def _regression_cases(name):
    """mse_loss, l1_loss, smooth_l1_loss, huber_loss: x, y (4, 3)."""
    X = lambda m, *s, **k: m.x(*(s or (4, 3)), **k)  # noqa: E731
    Y = lambda m, *s, **k: m.x(*(s or (4, 3)), grad=k.pop("grad", False), **k)  # noqa: E731
    rows = [
        ("baseline", lambda m: (X(m), Y(m)), {}, VALUE),
        ("float64", lambda m: (X(m, dtype="float64"), Y(m, dtype="float64")), {}, VALUE),
        ("float16", lambda m: (X(m, dtype="float16"), Y(m, dtype="float16")), {}, VALUE),
        ("input_int64", lambda m: (m.idx([[0, 1, 2]] * 4), m.idx([[1, 1, 1]] * 4)), {}, None),
        ("input_bool", lambda m: (m.idx([[False, True, True]] * 4, "bool"), Y(m)), {}, None),
        ("input_complex64", lambda m: (X(m, grad=False).to(m.torch.complex64), Y(m).to(m.torch.complex64)), {},
         None),
        ("target_float64", lambda m: (X(m), Y(m, dtype="float64")), {}, None),
        ("target_int64", lambda m: (X(m), m.idx([[0, 1, 2]] * 4)), {}, None),
        ("target_bool", lambda m: (X(m), m.idx([[False, True, True]] * 4, "bool")), {}, None),
        ("broadcast_target", lambda m: (X(m), Y(m, 4, 1)), {}, WARNS),
        ("broadcast_input", lambda m: (X(m, 4, 1), Y(m)), {}, WARNS),
        ("broadcast_target_0d", lambda m: (X(m), m.t(0.5)), {}, WARNS),
        ("not_broadcastable", lambda m: (X(m), Y(m, 4, 2)), {}, RAISES),
        ("target_requires_grad", lambda m: (X(m), Y(m, grad=True)), {}, VALUE),
        ("nan_input", lambda m: (m.t([[NAN, 0.5, -1]] * 4, grad=True), Y(m)), {}, VALUE),
        ("inf_input_and_target", lambda m: (m.t([[INF, -INF, 1]] * 4, grad=True), m.t([[INF, 1, -INF]] * 4)), {},
         VALUE),
        ("input_0d", lambda m: (X(m, grad=False).new_tensor(0.25).requires_grad_(), m.t(-1.5)), {}, VALUE),
        ("empty_mean", lambda m: (X(m, 0, 3), Y(m, 0, 3)), {}, VALUE),
        ("empty_sum", lambda m: (X(m, 0, 3), Y(m, 0, 3)), {"reduction": "sum"}, VALUE),
        ("transposed", lambda m: (X(m, 3, 4).t(), Y(m, 3, 4).t()), {}, VALUE),
        ("expanded", lambda m: (X(m, 1, 3).expand(4, 3), Y(m)), {}, VALUE),
        ("expanded_target", lambda m: (X(m), Y(m, 1, 3).expand(4, 3)), {}, VALUE),
        ("sliced", lambda m: (X(m, 4, 6)[:, ::2], Y(m, 8, 3)[1::2]), {}, VALUE),
        ("reduction_bogus", lambda m: (X(m), Y(m)), {"reduction": "bogus"}, RAISES),
        ("reduction_none", lambda m: (X(m), Y(m)), {"reduction": "none"}, VALUE),
    ]
    if name != "huber_loss":
        rows.append(("legacy_size_average_false", lambda m: (X(m), Y(m)), {"size_average": False}, WARNS))
    if name in ("mse_loss", "l1_loss", "huber_loss"):
        rows += [
            ("weight", lambda m: (X(m), Y(m)), {"weight": lambda m: m.p(4, 3)}, VALUE),
            ("weight_wrong_shape", lambda m: (X(m), Y(m)), {"weight": lambda m: m.p(4, 2)}, RAISES),
        ]
    if name == "smooth_l1_loss":
        rows += [
            ("beta_0", lambda m: (X(m), Y(m)), {"beta": 0.0}, VALUE),
            ("beta_negative", lambda m: (X(m), Y(m)), {"beta": -1.0}, RAISES),
            ("beta_nan", lambda m: (X(m), Y(m)), {"beta": NAN}, RAISES),
            ("beta_large", lambda m: (X(m), Y(m)), {"beta": 1e30}, VALUE),
        ]
    if name == "huber_loss":
        rows += [
            ("delta_0", lambda m: (X(m), Y(m)), {"delta": 0.0}, RAISES),
            ("delta_negative", lambda m: (X(m), Y(m)), {"delta": -1.0}, RAISES),
            ("delta_small", lambda m: (X(m), Y(m)), {"delta": 1e-3}, VALUE),
        ]
    return rows


def _kl_cases():
    """kl_div: x log-probabilities-ish (4, 3), y probabilities; "batchmean" unless stated."""
    X = lambda m, *s, **k: m.x(*(s or (4, 3)), **k)  # noqa: E731
    Y = lambda m, *s, **k: m.p(*(s or (4, 3)), **k)  # noqa: E731
    BM = {"reduction": "batchmean"}
    return [
        ("baseline", lambda m: (X(m), Y(m)), BM, VALUE),
        ("reduction_mean_warns", lambda m: (X(m), Y(m)), {}, WARNS),
        ("reduction_sum", lambda m: (X(m), Y(m)), {"reduction": "sum"}, VALUE),
        ("reduction_none", lambda m: (X(m), Y(m)), {"reduction": "none"}, VALUE),
        ("reduction_bogus", lambda m: (X(m), Y(m)), {"reduction": "bogus"}, RAISES),
        ("legacy_size_average_false", lambda m: (X(m), Y(m)), {"size_average": False}, WARNS),
        ("log_target", lambda m: (X(m), X(m, grad=False)), {"reduction": "batchmean", "log_target": True}, VALUE),
        ("float64", lambda m: (X(m, dtype="float64"), Y(m, dtype="float64")), BM, VALUE),
        ("float16", lambda m: (X(m, dtype="float16"), Y(m, dtype="float16")), BM, VALUE),
        ("input_int64", lambda m: (m.idx([[0, 1, 2]] * 4), Y(m)), BM, None),
        ("input_bool", lambda m: (m.idx([[False, True, True]] * 4, "bool"), Y(m)), BM, None),
        ("target_float64", lambda m: (X(m), Y(m, dtype="float64")), BM, None),
        ("target_int64", lambda m: (X(m), m.idx([[0, 1, 2]] * 4)), BM, None),
        ("target_negative", lambda m: (X(m), m.t([[-0.5, 0.5, 1.0]] * 4)), BM, VALUE),
        ("target_zero", lambda m: (X(m), m.t([[0.0, 0.5, 0.5]] * 4)), BM, VALUE),
        ("target_nan", lambda m: (X(m), m.t([[NAN, 0.5, 0.5]] * 4)), BM, VALUE),
        ("input_neginf", lambda m: (m.t([[-INF, -1.0, -0.5]] * 4, grad=True), Y(m)), BM, VALUE),
        ("input_neginf_target_zero", lambda m: (m.t([[-INF, -1.0, -0.5]] * 4, grad=True),
                                                 m.t([[0.0, 0.5, 0.5]] * 4)), BM, VALUE),
        ("target_requires_grad", lambda m: (X(m), Y(m, grad=True)), BM, VALUE),
        ("broadcast_target", lambda m: (X(m), Y(m, 4, 1)), BM, VALUE),
        ("not_broadcastable", lambda m: (X(m), Y(m, 4, 2)), BM, RAISES),
        ("input_0d_batchmean", lambda m: (X(m, grad=False).new_tensor(-0.5).requires_grad_(), m.t(0.3)), BM, VALUE),
        ("empty_batchmean", lambda m: (X(m, 0, 3), Y(m, 0, 3)), BM, VALUE),
        ("empty_sum", lambda m: (X(m, 0, 3), Y(m, 0, 3)), {"reduction": "sum"}, VALUE),
        ("transposed", lambda m: (X(m, 3, 4).t(), Y(m, 3, 4).t()), BM, VALUE),
        ("expanded", lambda m: (X(m, 1, 3).expand(4, 3), Y(m)), BM, VALUE),
        ("sliced", lambda m: (X(m, 4, 6)[:, ::2], Y(m, 8, 3)[1::2]), BM, VALUE),
    ]


def _normalize_cases():
    """log_softmax / softmax: x (4, 3), dim=1 unless stated."""
    X = lambda m, *s, **k: m.x(*(s or (4, 3)), **k)  # noqa: E731
    return [
        ("baseline", lambda m: (X(m),), {"dim": 1}, VALUE),
        ("dim_negative", lambda m: (X(m),), {"dim": -1}, VALUE),
        ("dim_0", lambda m: (X(m),), {"dim": 0}, VALUE),
        ("dim_out_of_range", lambda m: (X(m),), {"dim": 2}, RAISES),
        ("dim_out_of_range_negative", lambda m: (X(m),), {"dim": -3}, RAISES),
        ("dim_float", lambda m: (X(m),), {"dim": 1.0}, RAISES),
        ("dim_str", lambda m: (X(m),), {"dim": "x"}, RAISES),
        ("dim_none_0d", lambda m: (m.t(0.5, grad=True),), {}, WARNS),
        ("dim_none_1d", lambda m: (X(m, 5),), {}, WARNS),
        ("dim_none_2d", lambda m: (X(m),), {}, WARNS),
        ("dim_none_3d", lambda m: (X(m, 2, 3, 4),), {}, WARNS),
        ("dim_none_4d", lambda m: (X(m, 2, 3, 2, 2),), {}, WARNS),
        ("dtype_float64", lambda m: (X(m),), {"dim": 1, "dtype": lambda m: m.torch.float64}, VALUE),
        ("dtype_float16", lambda m: (X(m),), {"dim": 1, "dtype": lambda m: m.torch.float16}, VALUE),
        ("dtype_int64", lambda m: (X(m),), {"dim": 1, "dtype": lambda m: m.torch.int64}, RAISES),
        ("input_int64_dtype_float32", lambda m: (m.idx([[0, 1, 2]] * 4),),
         {"dim": 1, "dtype": lambda m: m.torch.float32}, VALUE),
        ("float64", lambda m: (X(m, dtype="float64"),), {"dim": 1}, VALUE),
        ("float16", lambda m: (X(m, dtype="float16"),), {"dim": 1}, VALUE),
        ("bfloat16", lambda m: (X(m, dtype="bfloat16"),), {"dim": 1}, VALUE),
        ("input_int64", lambda m: (m.idx([[0, 1, 2]] * 4),), {"dim": 1}, RAISES),
        ("input_bool", lambda m: (m.idx([[False, True, True]] * 4, "bool"),), {"dim": 1}, RAISES),
        ("input_complex64", lambda m: (X(m, grad=False).to(m.torch.complex64),), {"dim": 1}, None),
        ("nan_input", lambda m: (m.t([[NAN, 0.5, -1]] + [[0.1, 0.2, 0.3]] * 3, grad=True),), {"dim": 1}, VALUE),
        ("posinf_input", lambda m: (m.t([[INF, 0.5, -1]] + [[0.1, 0.2, 0.3]] * 3, grad=True),), {"dim": 1},
         VALUE),
        ("neginf_entry", lambda m: (m.t([[-INF, 0.5, -1]] * 4, grad=True),), {"dim": 1}, VALUE),
        ("all_neginf_row", lambda m: (m.t([[-INF] * 3] + [[0.1, 0.2, 0.3]] * 3, grad=True),), {"dim": 1},
         VALUE),
        ("empty_rows", lambda m: (X(m, 0, 3),), {"dim": 1}, VALUE),
        ("empty_axis", lambda m: (X(m, 4, 0),), {"dim": 1}, VALUE),
        ("input_0d_dim_0", lambda m: (m.t(0.5, grad=True),), {"dim": 0}, VALUE),
        ("input_0d_dim_neg1", lambda m: (m.t(0.5, grad=True),), {"dim": -1}, VALUE),
        ("input_0d_dim_1", lambda m: (m.t(0.5, grad=True),), {"dim": 1}, RAISES),
        ("transposed", lambda m: (X(m, 3, 4).t(),), {"dim": 1}, VALUE),
        ("expanded", lambda m: (X(m, 1, 3).expand(4, 3),), {"dim": 1}, VALUE),
        ("expanded_along_dim", lambda m: (X(m, 4, 1).expand(4, 3),), {"dim": 1}, VALUE),
        ("sliced", lambda m: (X(m, 4, 6)[:, ::2],), {"dim": 1}, VALUE),
        ("kdim_dim_1", lambda m: (X(m, 2, 3, 4).permute(0, 2, 1),), {"dim": 1}, VALUE),
    ]


# rows whose expected outcome depends on the function (None in the tables above), by torch 2.13
R, V = RAISES, VALUE
EXPECT = {
    "mse_loss": dict(input_int64=R, input_bool=V, input_complex64=R, target_float64=V, target_int64=V, target_bool=V),
    "l1_loss": dict(input_int64=R, input_bool=R, input_complex64=V, target_float64=V, target_int64=V, target_bool=R),
    "smooth_l1_loss": dict(input_int64=R, input_bool=V, input_complex64=R, target_float64=V, target_int64=V,
                           target_bool=V),
    "huber_loss": dict(input_int64=R, input_bool=R, input_complex64=R, target_float64=V, target_int64=V,
                       target_bool=V),
    "kl_div": dict(input_int64=R, input_bool=R, target_float64=V, target_int64=R),
    "log_softmax": dict(input_complex64=R),
    "softmax": dict(input_complex64=R),
}

# Known mismatches with torch 2.13: {row id: reason}, each an xfail(strict=True) so that the
# test fails when the difference goes away. None at present: the earlier ones (weights
# summing to 0 under "mean", a (1,) target for 1-D input, warnings naming fastloss's own
# lines) were fixed in fastloss.torch.
KNOWN_MISMATCHES = {}

# Warnings whose location differs from torch's: {row id: reason} (xfail(strict=True)).
WARNING_LOCATION = {}


FUNCTION_ROWS = (
    [("cross_entropy", c) for c in _class_cases(nll=False)]
    + [("nll_loss", c) for c in _class_cases(nll=True)]
    + [("binary_cross_entropy", c) for c in _bce_cases(logits=False)]
    + [("binary_cross_entropy_with_logits", c) for c in _bce_cases(logits=True)]
    + [(n, c) for n in ("mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss") for c in _regression_cases(n)]
    + [("kl_div", c) for c in _kl_cases()]
    + [(n, c) for n in ("log_softmax", "softmax") for c in _normalize_cases()]
)

MODULES = {  # module class -> (function, constructor options)
    "CrossEntropyLoss": ("cross_entropy", ("weight", "size_average", "ignore_index", "reduce", "reduction",
                                           "label_smoothing")),
    "NLLLoss": ("nll_loss", ("weight", "size_average", "ignore_index", "reduce", "reduction")),
    "BCELoss": ("binary_cross_entropy", ("weight", "size_average", "reduce", "reduction")),
    "BCEWithLogitsLoss": ("binary_cross_entropy_with_logits", ("weight", "size_average", "reduce", "reduction",
                                                               "pos_weight")),
    "MSELoss": ("mse_loss", ("size_average", "reduce", "reduction")),
    "L1Loss": ("l1_loss", ("size_average", "reduce", "reduction")),
    "SmoothL1Loss": ("smooth_l1_loss", ("size_average", "reduce", "reduction", "beta")),
    "HuberLoss": ("huber_loss", ("reduction", "delta")),
    "KLDivLoss": ("kl_div", ("size_average", "reduce", "reduction", "log_target")),
}
FUNCTIONS = sorted({fn for fn, _ in FUNCTION_ROWS})


def _rows():
    table = [(fn, case, build, opts, expect or EXPECT[fn][case]) for fn, (case, build, opts, expect) in FUNCTION_ROWS]
    rows = [Row(*entry) for entry in table]
    for module, (fn, options) in MODULES.items():
        rows += [Row(module, *entry[1:]) for entry in table if entry[0] == fn and set(entry[3]) <= set(options)]
    return rows


ROWS = _rows()


# --------------------------------------------------------------------------
# running one call on both sides
# --------------------------------------------------------------------------

@dataclass
class Outcome:
    value: object = None
    error: tuple = None            # (type, message)
    warnings: list = None          # [(category, message)]
    warning_files: list = None     # the file each warning names
    grads: list = None             # per recorded leaf: a tensor or None
    backward_error: tuple = None


def _tensors(args, kwargs):
    return [a for a in list(args) + list(kwargs.values()) if _is_tensor(a)]


def _is_tensor(a):
    return type(a).__module__.startswith("torch") and hasattr(a, "untyped_storage")


def _bytes(torch, t):
    """The bytes of a tensor's elements (its view) and of its whole storage."""
    view = t.detach().clone().contiguous().reshape(-1).view(torch.uint8).clone()
    storage = bytes(t.untyped_storage())
    return view, storage


def _upstream(torch, out):
    """A fixed non-uniform upstream gradient for ``out``."""
    n = out.numel()
    g = torch.linspace(0.5, 1.5, n, dtype=torch.float64) if n else torch.zeros(0, dtype=torch.float64)
    return g.reshape(out.shape).to(out.dtype)


def _call(torch, side, row):
    """Build the row's tensors, call ``side`` ("fastloss" or "torch") and run backward."""
    import fastloss.torch as flt

    m = Maker(torch)
    args, kwargs = row.make(m)
    before = [(t, t._version, _bytes(torch, t)) for t in _tensors(args, kwargs)]
    filters = list(warnings.filters)
    grad_mode = torch.is_grad_enabled()
    result = Outcome()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if row.target in MODULES:
                fn_name, _ = MODULES[row.target]
                cls = getattr(flt if side == "fastloss" else torch.nn, row.target)
                out = cls(**kwargs)(*args)
            else:
                fn = getattr(flt if side == "fastloss" else torch.nn.functional, row.target)
                out = fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - compared with torch's
            result.error = (type(e), str(e))
        else:
            result.value = out
    result.warnings = [(w.category, str(w.message)) for w in caught]
    result.warning_files = [w.filename for w in caught]
    if side == "fastloss":
        assert warnings.filters == filters, "the call changed the warning filters"
        assert torch.is_grad_enabled() == grad_mode, "the call changed grad mode"
    if result.error is None and isinstance(result.value, torch.Tensor) and result.value.requires_grad:
        try:
            result.value.backward(_upstream(torch, result.value))
        except Exception as e:  # noqa: BLE001 - compared with torch's
            result.backward_error = (type(e), str(e))
    result.grads = [None if leaf.grad is None else leaf.grad.detach().clone() for leaf in m.leaves]
    for t, version, (view, storage) in before:
        after_view, after_storage = _bytes(torch, t)
        assert torch.equal(view, after_view) and storage == after_storage and t._version == version, \
            f"{side} modified an argument of shape {tuple(t.shape)}"
    if result.value is not None and isinstance(result.value, torch.Tensor):
        result.value = result.value.detach()
    return result


def _tol(dtype):
    return TOL.get(str(dtype).replace("torch.", ""), dict(rtol=0, atol=0))


def _assert_close(torch, ours, theirs, what, computed_in=None):
    """Same dtype, shape and values (NaN where NaN), within the tolerance of the dtype the
    value was computed in (a float32 gradient that flowed through float16 gets float16's)."""
    assert isinstance(ours, torch.Tensor) and isinstance(theirs, torch.Tensor), what
    assert ours.dtype == theirs.dtype, f"{what}: dtype {ours.dtype} != torch's {theirs.dtype}"
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} != torch's {tuple(theirs.shape)}"
    tol = _tol(theirs.dtype)
    if computed_in is not None and _tol(computed_in)["rtol"] > tol["rtol"]:
        tol = _tol(computed_in)
    torch.testing.assert_close(ours, theirs, equal_nan=True, msg=lambda m: f"{what}: {m}", **tol)


def _assert_same(torch, ours, theirs):
    assert ours.error == theirs.error, f"error {ours.error} != torch's {theirs.error}"
    assert ours.warnings == theirs.warnings, f"warnings {ours.warnings} != torch's {theirs.warnings}"
    if theirs.error is not None:
        return
    _assert_close(torch, ours.value, theirs.value, "value")
    assert ours.value.requires_grad == theirs.value.requires_grad
    assert ours.backward_error == theirs.backward_error, \
        f"backward error {ours.backward_error} != torch's {theirs.backward_error}"
    assert len(ours.grads) == len(theirs.grads)
    for i, (g, tg) in enumerate(zip(ours.grads, theirs.grads)):
        assert (g is None) == (tg is None), f"leaf {i}: gradient {g} vs torch's {tg}"
        if g is not None:
            _assert_close(torch, g, tg, f"gradient of leaf {i}", computed_in=theirs.value.dtype)


# valid calls made after a failed one: the same function (module) still works and matches torch
VALID = {
    "cross_entropy": (lambda m: (m.x(3, 4), m.idx([0, 3, 1])), {"weight": lambda m: m.t([1.0, 2, 3, 4])}),
    "nll_loss": (lambda m: (m.x(3, 4), m.idx([0, 3, 1])), {}),
    "binary_cross_entropy": (lambda m: (m.p(3, 2, grad=True), m.p(3, 2)), {}),
    "binary_cross_entropy_with_logits": (lambda m: (m.x(3, 2), m.p(3, 2)), {"pos_weight": lambda m: m.t([2.0, 0.5])}),
    "mse_loss": (lambda m: (m.x(3, 2), m.x(3, 2, grad=False)), {}),
    "l1_loss": (lambda m: (m.x(3, 2), m.x(3, 2, grad=False)), {}),
    "smooth_l1_loss": (lambda m: (m.x(3, 2), m.x(3, 2, grad=False)), {"beta": 0.5}),
    "huber_loss": (lambda m: (m.x(3, 2), m.x(3, 2, grad=False)), {"delta": 0.5}),
    "kl_div": (lambda m: (m.x(3, 2), m.p(3, 2)), {"reduction": "batchmean"}),
    "log_softmax": (lambda m: (m.x(3, 2),), {"dim": 1}),
    "softmax": (lambda m: (m.x(3, 2),), {"dim": 1}),
}


def _function_of(target):
    return MODULES[target][0] if target in MODULES else target


def _kind(outcome):
    if outcome.error is not None:
        return RAISES
    return WARNS if outcome.warnings else VALUE


def _params(rows):
    return [pytest.param(row, id=row.id,
                         marks=[pytest.mark.xfail(strict=True, raises=AssertionError,
                                                  reason=KNOWN_MISMATCHES[row.id])]
                         if row.id in KNOWN_MISMATCHES else [])
            for row in rows]


# --------------------------------------------------------------------------
# the tests
# --------------------------------------------------------------------------

def test_the_matrix_covers_every_function_and_module(torch):
    import fastloss.torch as flt

    # the losses with a torch namesake (the margin heads have none: tests/test_margin_cross_entropy.py)
    public = set(flt.__all__) - {"functional", "empty_cache", "margin_cross_entropy", "AAMSoftmax", "AMSoftmax"}
    assert set(FUNCTIONS) | set(MODULES) == public
    assert set(FUNCTIONS) == set(VALID)
    assert {row.target for row in ROWS} == public
    assert len({row.id for row in ROWS}) == len(ROWS), "duplicate row ids"
    ids = {row.id for row in ROWS}
    assert set(KNOWN_MISMATCHES) <= ids and set(WARNING_LOCATION) <= ids, "an xfail entry names no row"
    for module in MODULES:  # every module sees the bad inputs of its function
        assert sum(row.target == module for row in ROWS) >= 20, module


@pytest.mark.parametrize("row", _params(ROWS))
def test_bad_input_matches_torch(torch, row):
    theirs = _call(torch, "torch", row)
    assert _kind(theirs) == row.expect, \
        f"torch 2.13: {_kind(theirs)} ({theirs.error or theirs.warnings}), the table says {row.expect}"
    ours = _call(torch, "fastloss", row)
    _assert_same(torch, ours, theirs)
    if ours.error is not None:  # a failed call leaves nothing behind: the next valid call works
        build, opts = VALID[_function_of(row.target)]
        valid = Row(row.target, "valid", build, opts, VALUE)
        _assert_same(torch, _call(torch, "fastloss", valid), _call(torch, "torch", valid))


WARN_ROWS = [row for row in ROWS if row.expect == WARNS and row.target not in MODULES]


@pytest.mark.parametrize("row", [
    pytest.param(row, id=row.id, marks=[pytest.mark.xfail(strict=True, raises=AssertionError,
                                                     reason=WARNING_LOCATION[row.id])]
                 if row.id in WARNING_LOCATION else []) for row in WARN_ROWS])
def test_warning_points_at_the_caller(torch, row):
    """Where torch's warning names the line that called torch.nn.functional (its stacklevel),
    ours must name the line that called fastloss.torch, not a line inside fastloss: the
    location users see, and the key of the default "warn once per location" filter."""
    theirs = _call(torch, "torch", row)
    ours = _call(torch, "fastloss", row)
    assert theirs.warning_files and len(ours.warning_files) == len(theirs.warning_files)
    for mine, torchs in zip(ours.warning_files, theirs.warning_files):
        # torch names either the caller (this file) or a file of its own (the legacy
        # size_average/reduce warning): ours names the caller exactly when torch's does
        assert (mine == __file__) == (torchs == __file__), f"ours: {mine}, torch's: {torchs}"


def test_inplace_change_of_logits_between_forward_and_backward(torch):
    """fastloss.torch's cross_entropy keeps the logits themselves for backward (plus one
    log-sum-exp per row), so torch's version counter check applies: modifying them in place
    after forward makes backward raise torch's own "modified by an inplace operation" error.
    torch's cross_entropy keeps its log_softmax output instead and computes the gradient of
    the *original* logits: here fastloss.torch raises where torch computes (documented in
    fastloss/torch/_functions.py)."""
    import fastloss.torch as flt

    target = torch.tensor([1, 0, 4, 2])
    pattern = (r"^one of the variables needed for gradient computation has been modified by an inplace "
               r"operation: \[torch\.FloatTensor \[4, 5\]\], which is output 0 of \w+, is at version 1; "
               r"expected version 0 instead\. Hint: enable anomaly detection")
    outcomes = {}
    for name, fn in (("fastloss", flt.cross_entropy), ("torch", torch.nn.functional.cross_entropy)):
        x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
        logits = x * 2.0
        loss = fn(logits, target)
        with torch.no_grad():
            logits.add_(1.0)
        try:
            loss.backward()
        except RuntimeError as e:
            outcomes[name] = str(e)
        else:
            outcomes[name] = x.grad.clone()
    assert re.match(pattern, outcomes["fastloss"]), outcomes["fastloss"]
    # torch: the gradient of the original logits, from its saved log-softmax
    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
    torch.nn.functional.cross_entropy(x * 2.0, target).backward()
    torch.testing.assert_close(outcomes["torch"], x.grad)
    # modifying a leaf in place (under no_grad) is caught the same way; torch again computes
    for name, fn in (("fastloss", flt.cross_entropy), ("torch", torch.nn.functional.cross_entropy)):
        x = torch.randn(4, 5, generator=torch.Generator().manual_seed(3), requires_grad=True)
        loss = fn(x, target)
        with torch.no_grad():
            x.mul_(3.0)
        if name == "fastloss":
            with pytest.raises(RuntimeError, match=r"^one of the variables needed for gradient computation has "
                                                   r"been modified by an inplace operation: \[torch\.FloatTensor "
                                                   r"\[4, 5\]\] is at version 1; expected version 0 instead"):
                loss.backward()
        else:
            loss.backward()
            assert torch.isfinite(x.grad).all()


def test_failed_call_with_requires_grad_leaves_no_graph(torch):
    """A call that raises records nothing: the input's grad stays None, its version counter
    unchanged, and the same input then trains normally (gradient equal to torch's)."""
    import fastloss.torch as flt

    x = torch.randn(4, 5, generator=torch.Generator().manual_seed(5), requires_grad=True)
    version = x._version
    for bad in (torch.tensor([1, 5, 0, 0]), torch.tensor([1, 0, 0], dtype=torch.int64),
                torch.tensor([1, 0, 0, 0], dtype=torch.int32)):
        with pytest.raises((IndexError, RuntimeError, ValueError)):
            flt.cross_entropy(x, bad)
    with pytest.raises(IndexError):
        flt.softmax(x, dim=-3)
    assert x.grad is None and x._version == version
    target = torch.tensor([1, 0, 4, 2])
    flt.cross_entropy(x, target).backward()
    ours = x.grad.clone()
    x.grad = None
    torch.nn.functional.cross_entropy(x, target).backward()
    torch.testing.assert_close(ours, x.grad, rtol=1e-5, atol=1e-6)
