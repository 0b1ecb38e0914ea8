# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Argument checks, operand planner and call finisher: what every loss module does between
the caller and its one C entry point, written once.

Design
------
Three layers: the C entry point ``fl_<family>`` (csrc/: checks targets, scales, runs the SIMD
kernel its dispatch table picks, reduces; never raises), one Cython module per family
(fastloss/_<family>.pyx: an argument spec and one call) and the NumPy API. A loss module
reads top to bottom: ``p = start(input, ...)`` (the input, kernel dtype, loss dtype); its own
options and targets, checked with the functions below, ``p.promote(target)`` where torch
promotes the target; ``p.upstream(...)`` and ``p.check_out(...)``; the kernel's view of every
operand, copied only when the memory does not allow a view -- ``class_view`` /
``rows_as_positions`` (n, c, s) for cross_entropy, nll_loss and softmax, ``memory_order`` /
``merge_axes`` (the loss's shape in the input's memory order, axes merged where every operand
allows) for the elementwise losses, ``p.class_grad`` / ``p.elementwise_grad`` /
``p.loss_buffer`` for where the kernel writes (in place, into ``out``, or a new array in the
input's memory order); then ``return p.run(fl_<family>, &args.call, work, name)``: the GIL
released for work worth it, the status raised as torch's exception, the loss in its dtype
and the gradient in ``out`` / summed back over broadcast axes / cast to the input's dtype.
Non-native operands (big-endian, unaligned, another dtype) are copied into the kernel's dtype
first.

Dtypes. The kernels store float32, float64, float16 and bfloat16 (``FL_DTYPE_*``). NumPy has
no bfloat16: ``ml_dtypes.bfloat16`` arrays (an optional dependency) and the tensors of
fastloss.torch (which needs no ml_dtypes) reach the kernels as uint16 views tagged
``BF16_BITS`` (dtype metadata, which views, copies and ``empty_like`` keep). The families
whose C tables hold the half dtypes (``start(..., native_half=True)``: all of them today)
compute them natively; a family without would compute them in float32 on operands rounded to
the half dtype first and round its results back. Every conversion to a half dtype rounds
to nearest-even once (``to_kernel``, ``loss_scalar``; csrc/half.h for the kernels).
"""
cimport cython
cimport numpy as cnp

import contextlib
import threading

import numpy as np

from libc.stdint cimport uint16_t

from fastloss._csrc cimport *
from fastloss._runtime cimport simd_path

from fastloss import _half, _threads

cnp.import_array()


# ---- argument checks shared by every loss (one place for each rule); they run with the GIL
# held, before any kernel: a kernel never sees an input it would have to reject -------------

cdef int parse_reduction(object reduction, bint batchmean=False) except -1:
    """FL_REDUCE_* of a reduction name ("batchmean" too where kl_div allows it)."""
    if isinstance(reduction, str):  # str and its subclasses (np.str_)
        if reduction == "mean":
            return FL_REDUCE_MEAN
        if reduction == "sum":
            return FL_REDUCE_SUM
        if reduction == "none":
            return FL_REDUCE_NONE
        if batchmean and reduction == "batchmean":
            return FL_REDUCE_BATCHMEAN
    raise ValueError(f"{reduction!r} is not a valid value for reduction (expected 'none', "
                     + ("'batchmean', " if batchmean else "") + "'mean' or 'sum')")


cdef cnp.ndarray as_array(object a):
    if type(a) is cnp.ndarray:
        return <cnp.ndarray>a
    return np.asarray(a)


# ---- dtypes (see the module's docstring) ------------------------------------------------------

BF16_BITS = np.dtype(np.uint16, metadata={"fastloss": "bfloat16"})
_F16 = np.dtype(np.float16)
_U16 = np.dtype(np.uint16)


cdef int fl_dtype_of(cnp.ndarray a):
    """FL_DTYPE_* of a floating array (bfloat16: ml_dtypes' or BF16_BITS), else -1."""
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT:
        return FL_DTYPE_F32
    if t == cnp.NPY_DOUBLE:
        return FL_DTYPE_F64
    if t == cnp.NPY_FLOAT16:
        return FL_DTYPE_F16
    if cnp.PyArray_ITEMSIZE(a) == 2:
        d = a.dtype
        if t == cnp.NPY_USHORT:
            md = d.metadata
            if md is not None and md.get("fastloss") == "bfloat16":
                return FL_DTYPE_BF16
        elif d.name == "bfloat16":
            return FL_DTYPE_BF16
    return -1


cdef object kernel_dtype(int fl_dtype):
    """The NumPy dtype of a kernel array of FL_DTYPE_* fl_dtype."""
    if fl_dtype == FL_DTYPE_F32:
        return _F32
    if fl_dtype == FL_DTYPE_F64:
        return _F64
    return _F16 if fl_dtype == FL_DTYPE_F16 else BF16_BITS


cdef int float_compute_type(cnp.ndarray a, str what) except -1:
    """FL_DTYPE_* of a floating input (float16, bfloat16, float32, float64); anything else is
    a TypeError."""
    cdef int d = fl_dtype_of(a)
    if d < 0:
        raise TypeError(f"{what} must be a float16, bfloat16, float32 or float64 array, got dtype {a.dtype}")
    return d


cdef cnp.ndarray bf16_bits(cnp.ndarray a):
    """A bfloat16 array (ml_dtypes' or BF16_BITS) as native-order BF16_BITS: a view, or for a
    byte-swapped array a copy with its bytes put in native order."""
    if cnp.PyArray_ISNOTSWAPPED(a):
        return a.view(BF16_BITS)
    return a.view(_U16.newbyteorder("S")).astype(_U16).view(BF16_BITS)


cdef cnp.ndarray _bf16_widened(cnp.ndarray a):
    """bfloat16 bits as float32 values (exact)."""
    return _half.widen(bf16_bits(a), "bfloat16")


cdef cnp.ndarray _bf16_rounded(cnp.ndarray a):
    """Any real array as bfloat16 bits (BF16_BITS), each value rounded to nearest-even once
    (csrc/half.c; float64 and wider through round-to-odd float32)."""
    cdef int d = fl_dtype_of(a)
    if d == FL_DTYPE_BF16:
        return bf16_bits(a)
    if d == FL_DTYPE_F32 or d == FL_DTYPE_F16 or cnp.PyArray_ISBOOL(a) or \
            (cnp.PyArray_ISINTEGER(a) and cnp.PyArray_ITEMSIZE(a) <= 2):
        r = _half.narrow(np.asarray(a, dtype=_F32), "bfloat16")  # exact in float32 first
    else:
        r = _half.from_double(np.asarray(a, dtype=_F64), "bfloat16")
    return r.view(BF16_BITS)


cdef cnp.ndarray to_dtype(cnp.ndarray a, int fl_dtype):
    """a in FL_DTYPE_* fl_dtype (itself when it already is), rounded once; float16 overflow
    gives inf, as in torch."""
    cdef int d = fl_dtype_of(a)
    if d == fl_dtype:
        return bf16_bits(a) if d == FL_DTYPE_BF16 else a
    if fl_dtype == FL_DTYPE_BF16:
        return _bf16_rounded(a)
    if d == FL_DTYPE_BF16:
        a = _bf16_widened(a)
        if fl_dtype == FL_DTYPE_F32:
            return a
    with np.errstate(over="ignore"):
        return a.astype(kernel_dtype(fl_dtype))


cdef object user_dtype(cnp.ndarray a, int fl_dtype):
    """The dtype results for a caller's array a of FL_DTYPE_* fl_dtype come in: native byte
    order; bfloat16 as the caller's own (ml_dtypes' or BF16_BITS)."""
    return a.dtype.newbyteorder("=") if fl_dtype == FL_DTYPE_BF16 else kernel_dtype(fl_dtype)


cdef object as_user_dtype(cnp.ndarray a, object dt):
    """A kernel-dtype array a in the caller's dtype dt (a view for the same bits: ml_dtypes'
    bfloat16 or BF16_BITS; else rounded once)."""
    if a.dtype is dt:
        return a
    cdef int want = -1 if dt.metadata is None and dt.name != "bfloat16" else FL_DTYPE_BF16
    if want == FL_DTYPE_BF16:
        bits = to_dtype(a, FL_DTYPE_BF16)
        return bits.view(dt) if dt.isnative else bits.view(dt.newbyteorder("=")).astype(dt)
    if fl_dtype_of(a) == FL_DTYPE_BF16:
        a = _bf16_widened(a)
    with np.errstate(over="ignore"):
        return a.astype(dt)


cdef bint kernel_ready(cnp.ndarray a):
    """Whether a kernel can read a as it is: native byte order, aligned, strides in whole
    elements (its dtype is the caller's to check)."""
    return cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISALIGNED(a) and strides_in_elements(a)


cdef cnp.ndarray as_kernel_array(cnp.ndarray a, int fl_dtype):
    """a itself (bfloat16: its BF16_BITS view) when it is kernel_ready and of FL_DTYPE_*
    fl_dtype; else a copy that is (same memory layout). Big-endian, unaligned and oddly
    strided inputs are copied here."""
    if fl_dtype_of(a) == fl_dtype and kernel_ready(a):
        return a.view(BF16_BITS) if fl_dtype == FL_DTYPE_BF16 else a
    a = to_dtype(a, fl_dtype)
    return a if kernel_ready(a) else np.array(a, dtype=kernel_dtype(fl_dtype), order="K", copy=True)


cdef bint merged_range(cnp.ndarray a, int lo, int hi, fl_index *stride):
    """The element stride that walks axes lo..hi-1 as one C-ordered axis, when their strides
    allow it (True), else False (the caller copies). No axes, or size 0: stride 0."""
    cdef int d
    cdef fl_index size, st, expect = 0, item = cnp.PyArray_ITEMSIZE(a)
    cdef bint have = False
    stride[0] = 0
    for d in range(hi - 1, lo - 1, -1):
        size = cnp.PyArray_DIM(a, d)
        if size == 0:
            stride[0] = 0
            return True
        if size == 1:
            continue
        st = cnp.PyArray_STRIDE(a, d)
        if st % item:
            return False
        if have and st != expect:
            return False
        if not have:
            stride[0] = st // item
            have = True
        expect = st * size
    return True


cdef bint strides_in_elements(cnp.ndarray a):
    cdef int d
    cdef fl_index item = cnp.PyArray_ITEMSIZE(a)
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_STRIDE(a, d) % item:
            return False
    return True


cdef void memory_extent(cnp.ndarray a, size_t *lo, size_t *hi):
    cdef int d
    cdef Py_ssize_t step
    cdef size_t base = <size_t>cnp.PyArray_DATA(a)
    lo[0] = base
    hi[0] = base
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, d) == 0:
            hi[0] = base
            return
        step = cnp.PyArray_STRIDE(a, d) * (cnp.PyArray_DIM(a, d) - 1)
        if step < 0:
            lo[0] += step
        else:
            hi[0] += step
    hi[0] += cnp.PyArray_ITEMSIZE(a)


cdef bint shares_memory(cnp.ndarray a, cnp.ndarray b) except -1:
    """Whether a and b touch a common byte: a bounds test, then numpy's exact test."""
    cdef size_t alo, ahi, blo, bhi
    memory_extent(a, &alo, &ahi)
    memory_extent(b, &blo, &bhi)
    if alo >= ahi or blo >= bhi or ahi <= blo or bhi <= alo:
        return False
    try:
        return np.shares_memory(a, b, max_work=100000)
    except np.exceptions.TooHardError:
        return True


cdef bint same_view(cnp.ndarray a, cnp.ndarray b):
    """a and b are the same elements in the same order (the in-place case out=input)."""
    cdef int d
    if cnp.PyArray_DATA(a) != cnp.PyArray_DATA(b) or cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    if cnp.PyArray_TYPE(a) != cnp.PyArray_TYPE(b) or cnp.PyArray_ISNOTSWAPPED(a) != cnp.PyArray_ISNOTSWAPPED(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, d) != cnp.PyArray_DIM(b, d):
            return False
        if cnp.PyArray_DIM(a, d) > 1 and cnp.PyArray_STRIDE(a, d) != cnp.PyArray_STRIDE(b, d):
            return False
    return True


cdef double real_option(object value, str what) except? -1.0:
    """A real number (Python or NumPy; not bool), else TypeError."""
    if type(value) is float:
        return value
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    return float(value)


cdef object int_option(object value, str what):
    """A Python int (from int or a NumPy integer; not bool), else TypeError."""
    if type(value) is int:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what} must be an int, got {type(value).__name__}")
    return int(value)


cdef extern from "numpy/arrayobject.h":
    object _array_scalar "PyArray_Scalar"(void *data, cnp.dtype descr, object base)

_F32 = np.dtype(np.float32)
_F64 = np.dtype(np.float64)


cdef object loss_scalar(double value, object dt):
    """The NumPy scalar of dtype dt that a mean/sum reduction returns (built directly:
    np.float32(v) costs an array), rounded once from the double; float16 overflow to inf is
    silent, as a cast is. A BF16_BITS loss (fastloss.torch) is a 0-d array of its bits."""
    cdef float f32
    cdef uint16_t h
    if dt is _F32:
        f32 = <float>value
        return _array_scalar(&f32, _F32, None)
    if dt is _F64:
        return _array_scalar(&value, _F64, None)
    if dt.name == "float16":
        h = fl_f16_from_double(value)
    else:
        h = fl_bf16_from_double(value)
    bits = np.array(h, dtype=_U16).view(dt)
    return bits if dt.metadata is not None else bits[()]


cdef double half_rounded(double value, int fl_dtype):
    """value rounded to nearest-even in a half dtype (FL_DTYPE_BF16 / F16), else as it is."""
    if fl_dtype == FL_DTYPE_BF16:
        return fl_bf16_to_float(fl_bf16_from_double(value))
    if fl_dtype == FL_DTYPE_F16:
        return fl_f16_to_float(fl_f16_from_double(value))
    return value


cdef object int64_option(object value, str what):
    """int_option within int64 (the kernels' target type), else ValueError."""
    value = int_option(value, what)
    if not (-9223372036854775808 <= value <= 9223372036854775807):
        raise ValueError(f"{what} {value} does not fit in int64")
    return value


cdef cnp.ndarray index_target(cnp.ndarray t0, cnp.ndarray x0, fl_index C, object ignore):
    """Class-index targets for input x0 of shape (C,), (N, C) or (N, C, d1..dk): checked for
    dtype and shape (torch's messages), returned as int32/int64 (without a copy when they are
    already that, native and aligned). Values are checked later, in C, except uint64 values
    above 2**63 - 1, which have no int64 form."""
    cdef int nd = cnp.PyArray_NDIM(x0), d
    cdef bint ok, bf16 = fl_dtype_of(t0) == FL_DTYPE_BF16  # BF16_BITS: bfloat16, not uint16
    if bf16 or not cnp.PyArray_ISINTEGER(t0):
        raise TypeError(f"class-index targets must be an integer array, got dtype "
                        f"{'bfloat16' if bf16 else t0.dtype} "
                        "(a floating target of the input's shape holds class probabilities)")
    if nd == 1:
        if not (t0.ndim == 0 or (t0.ndim == 1 and cnp.PyArray_DIM(t0, 0) == 1)):
            raise ValueError(f"For 1D input, the target must be 0-d or have size 1, got shape {np.shape(t0)}")
    else:
        if t0.ndim == 0 or cnp.PyArray_DIM(t0, 0) != cnp.PyArray_DIM(x0, 0):
            raise ValueError(f"Expected input batch_size ({np.shape(x0)[0]}) to match target batch_size "
                             f"({np.shape(t0)[0] if t0.ndim else 0}).")
        ok = cnp.PyArray_NDIM(t0) == nd - 1
        if ok:
            for d in range(1, nd - 1):
                if cnp.PyArray_DIM(t0, d) != cnp.PyArray_DIM(x0, d + 1):
                    ok = False
        if not ok:
            raise ValueError(f"Expected target size {[np.shape(x0)[0]] + list(np.shape(x0)[2:])}, "
                             f"got {list(np.shape(t0))}")
    cdef int item = cnp.PyArray_ITEMSIZE(t0)
    if cnp.PyArray_ISSIGNED(t0) and (item == 4 or item == 8) and kernel_ready(t0):
        return t0
    if cnp.PyArray_ISUNSIGNED(t0) and item == 8:
        # values from 2**63 on do not fit in int64: reported here, with their true value;
        # the others are checked with every target, after the other arguments
        flat = t0.ravel()
        huge = flat >= np.uint64(2**63)
        if huge.any():
            raise IndexError(f"Target {int(flat[np.argmax(huge)])} is out of bounds.")
    return t0.astype(np.int64)


cdef cnp.ndarray class_weight(cnp.ndarray w0, fl_index C, int loss_dtype, int fl_dtype):
    """A per-class weight: a real 1-D array of length C, rounded to the loss's dtype first (as
    torch holds it), returned contiguous in the kernel's dtype fl_dtype -- float32 for the
    half dtypes, whose kernels read their weights as float32 (exact)."""
    if not is_real(w0):
        raise TypeError(f"weight must be a real array, got dtype {w0.dtype}")
    if w0.ndim != 1 or cnp.PyArray_DIM(w0, 0) != C:
        raise ValueError(f"weight should be defined either for all {C} classes or no classes "
                         f"but got weight of shape: {list(np.shape(w0))}")
    if fl_dtype_of(w0) != loss_dtype:
        w0 = to_dtype(w0, loss_dtype)
    cdef int wd = FL_DTYPE_F32 if fl_dtype != FL_DTYPE_F64 else FL_DTYPE_F64
    # native byte order; ascontiguousarray keeps an unaligned array as it is: the kernels
    # need aligned elements
    cdef cnp.ndarray w = np.ascontiguousarray(to_dtype(w0, wd), dtype=kernel_dtype(wd))
    return w if kernel_ready(w) else np.array(w, copy=True)


cdef int no_overlap(cnp.ndarray out, cnp.ndarray other, str what, bint exact_ok) except -1:
    """A ValueError when out shares memory with other (None: absent); exact_ok: out may be
    exactly other, and the message says so."""
    if other is not None and shares_memory(out, other):
        if exact_ok:
            raise ValueError(f"out partially overlaps {what} (out={what}, exactly, computes in place)")
        raise ValueError(f"out overlaps {what}")
    return 0


# ---- small helpers -------------------------------------------------------------------------------

cdef bint is_float(cnp.ndarray a):
    return fl_dtype_of(a) >= 0 or cnp.PyArray_TYPE(a) == cnp.NPY_LONGDOUBLE


cdef bint is_real(cnp.ndarray a):
    """A floating (bfloat16 included) or integer array."""
    return is_float(a) or cnp.PyArray_ISINTEGER(a)


cdef void *data(cnp.ndarray a):
    return NULL if a is None else cnp.PyArray_DATA(a)




# ---- the (n, c, s) view of cross_entropy, nll_loss and softmax ---------------------------------

cdef bint _view(cnp.ndarray a, int lo, int hi, fl_view *v):
    """Axes [0, lo) as n, axis lo as c when hi == lo + 1 (none when hi == lo), axes [hi, ndim)
    as s, each group merged into one element stride; False when the memory does not allow it."""
    if not strides_in_elements(a):
        return False
    if not merged_range(a, 0, lo, &v.sn) or not merged_range(a, hi, cnp.PyArray_NDIM(a), &v.ss):
        return False
    v.sc = cnp.PyArray_STRIDE(a, lo) // cnp.PyArray_ITEMSIZE(a) if hi > lo else 0
    return True


cdef cnp.ndarray class_view(cnp.ndarray a, int lo, int hi, fl_view *v):
    """a itself when its axes merge into the (n, c, s) view (strides in *v), else a C-ordered
    copy (whose axes always merge). None (an operand not given) has strides 0."""
    if a is None:
        v.sn = v.sc = v.ss = 0
        return None
    if _view(a, lo, hi, v):
        return a
    a = np.ascontiguousarray(a)
    _view(a, lo, hi, v)
    return a


cdef void rows_as_positions(fl_index *n, fl_index *s, fl_view *v, int count):
    """(n, c, 1) becomes (1, c, n): rows are then positions along s, so that one rule picks the
    kernel layout from the strides (classes contiguous -> rows, positions contiguous ->
    columns, anything else -> a strided loop)."""
    cdef int i
    if s[0] != 1:
        return
    s[0], n[0] = n[0], 1
    for i in range(count):
        v[i].ss, v[i].sn = v[i].sn, 0


# ---- the merged axes of the elementwise losses -------------------------------------------------

cdef list memory_order(cnp.ndarray lead):
    """The axes of lead from the slowest to the fastest in memory (ties keep C order)."""
    cdef int d, nd = cnp.PyArray_NDIM(lead)
    if nd <= 1 or cnp.PyArray_IS_C_CONTIGUOUS(lead):
        return list(range(nd))
    size = [abs(<fl_index>cnp.PyArray_STRIDE(lead, d)) for d in range(nd)]
    return sorted(range(nd), key=size.__getitem__, reverse=True)


cdef cnp.ndarray empty_in_order(tuple shape, list order, object dt):
    """An empty array of `shape` and dtype dt whose memory runs in the axis order `order` (C
    order: None)."""
    cdef int i, nd = len(shape)
    if order is None or order == list(range(nd)):
        return np.empty(shape, dtype=dt)
    inverse = [0] * nd
    for i in range(nd):
        inverse[<int>order[i]] = i
    return np.empty([shape[d] for d in order],
                    dtype=dt).transpose(inverse)


cdef int merge_axes(tuple shape, list order, list ops, int maxd, int pad, fl_index *sizes,
                    fl_index **strides) except -2:
    """The loss's shape walked in `order`, size-1 axes dropped, neighbours merged when every
    operand (None: not there, stride 0) allows it. Writes the axes' sizes and each operand's
    element strides (strides[k][axis], slowest axis first), padded in front with size-1 axes
    to `pad` axes; returns their number, or -1 when more than `maxd` remain."""
    cdef int k, m = 0, i, nops = len(ops), off
    cdef fl_index n
    cdef fl_index sz[64]
    cdef fl_index st[8][64]
    cdef fl_index cur[8]
    cdef bint merged
    cdef cnp.ndarray o
    if 0 in shape:
        for i in range(pad):
            sizes[i] = 0
            for k in range(nops):
                strides[k][i] = 0
        return pad
    for d in order:
        n = shape[d]
        if n == 1:
            continue
        merged = m > 0
        for k in range(nops):
            o = ops[k]
            cur[k] = 0 if o is None else cnp.PyArray_STRIDE(o, d) // cnp.PyArray_ITEMSIZE(o)
            if merged and st[k][m - 1] != cur[k] * n:
                merged = False
        if merged:
            m -= 1
            n *= sz[m]
        sz[m] = n
        for k in range(nops):
            st[k][m] = cur[k]
        m += 1
    if m > maxd:
        return -1
    off = pad - m if m < pad else 0
    for i in range(off + m):
        sizes[i] = 1 if i < off else sz[i - off]
        for k in range(nops):
            strides[k][i] = 0 if i < off else st[k][i - off]
    return off + m


cdef object summed_to(object g, tuple xshape):
    """A gradient computed in the loss's shape, summed over the axes the input was broadcast
    along (a sum over every axis is a NumPy scalar, hence the untyped g)."""
    cdef int lead = np.ndim(g) - len(xshape)
    if lead:
        g = g.sum(axis=tuple(range(lead)))
    axes = tuple(d for d in range(len(xshape)) if xshape[d] == 1 and g.shape[d] != 1)
    if axes:
        g = g.sum(axis=axes, keepdims=True)
    return np.asarray(g).reshape(xshape)


GRAD_PARAMS = """grad_output : float or array_like, optional
        The upstream gradient g (default 1): a scalar for "mean"/"sum"; for "none" a scalar
        or an array that broadcasts to the loss's shape. For a bfloat16 / float16 loss, g is
        first rounded to that dtype, as torch's autograd casts a gradient to its output's.
    out : ndarray, optional
        Where to write the gradient: the input's shape and dtype, writeable, any layout.
        ``out=input`` (exactly that array) is overwritten with the gradient; an ``out`` that
        otherwise overlaps an argument is a ValueError.

    Returns
    -------
    (loss, grad) : loss as without the gradient; grad = d(sum(loss * g)) / d(input), of the
        input's shape and dtype (``out`` when given; an input broadcast against the target
        gets its gradient summed over the broadcast axes)."""


def document(*functions):
    """Fills the shared text (GRAD_PARAMS: grad_output, out=, Returns) into the *_with_grad
    docstrings."""
    for f in functions:
        f.__doc__ = f.__doc__.replace("@GRAD_PARAMS@", GRAD_PARAMS)


cdef list kernel_names(fl_kernels_fn fn):
    """The kernels a family's dispatch table holds for the SIMD path in use."""
    cdef const char *names[64]
    cdef int i, n = fn(simd_path(), names, 64)
    return [names[i].decode() for i in range(n)]


# ---- what ran, for the tests ------------------------------------------------------------------

cdef int _recorders = 0  # open record() contexts, any thread (changed with the GIL held)
_recorded = threading.local()


@contextlib.contextmanager
def record():
    """For tests: ``with record() as stats: fastloss.cross_entropy(x, t)`` fills ``stats`` with
    what the calling thread's last kernel call ran: ``threads_used`` (the OpenMP team),
    ``threads_active`` (threads that ran at least one block), ``kernel`` (the dispatch-table
    entry), ``simd`` (the path in use), and ``rows``/``cols`` for the binary losses."""
    global _recorders
    outer, stats = getattr(_recorded, "stats", None), {}
    _recorded.stats = stats
    _recorders += 1
    try:
        yield stats
    finally:
        _recorders -= 1
        _recorded.stats = outer


def ran(fn, *args, **kwargs):
    """For tests: (fn(*args, **kwargs), what its kernel call ran; see record)."""
    with record() as stats:
        result = fn(*args, **kwargs)
    return result, stats


cdef dict recording():
    """The calling thread's open record() dict, or None (one C test when nothing records)."""
    return getattr(_recorded, "stats", None) if _recorders else None


# ---- one call ------------------------------------------------------------------------------------

cdef Call start(object input, str what, bint want_grad, bint native_half=False):
    """A call on `input` (checked: a float16/bfloat16/float32/float64 array; `what` names it in
    errors). native_half: the family's kernels take the half dtypes (else float32 computes
    them)."""
    cdef Call p = Call.__new__(Call)
    p.x0, p.name = as_array(input), what
    p.loss_dtype = float_compute_type(p.x0, what)
    p.loss_dt = user_dtype(p.x0, p.loss_dtype)
    p.native_half = native_half
    p.fl_dtype = p.loss_dtype if native_half or p.loss_dtype <= FL_DTYPE_F64 else FL_DTYPE_F32
    p.red = FL_REDUCE_MEAN
    p.batch = 1.0
    p.want_grad = want_grad
    p.go_scalar = 1.0
    return p


@cython.auto_pickle(False)
cdef class Call:
    """The state of one kernel call, from its operands to its results (see the module's
    docstring). Created by ``start``."""

    cdef int promote(self, cnp.ndarray t0) except -1:
        """torch's type promotion of a floating target with the input (mse, l1, smooth_l1,
        kl_div, bce_with_logits, cross_entropy's probabilities): the loss is computed and
        returned in the wider dtype (float16 with float32 gives float32); the target keeps its
        precision. A longdouble target counts as float64 (torch has no wider type)."""
        cdef int x = self.loss_dtype, t = fl_dtype_of(t0)
        if not is_float(t0) or t == x:
            return 0
        # distinct dtypes: float64 if either is (longdouble counts as float64), else float32
        # (float16 with bfloat16 too, as torch)
        self.loss_dtype = FL_DTYPE_F64 if x == FL_DTYPE_F64 or t == FL_DTYPE_F64 or t < 0 else FL_DTYPE_F32
        self.loss_dt = kernel_dtype(self.loss_dtype)
        self.fl_dtype = self.loss_dtype
        return 0

    cdef int upstream(self, object grad_output, tuple loss_shape) except -1:
        """The upstream gradient g of a *_with_grad call (None means 1): a real scalar when the
        loss is reduced (ValueError for an array of more than 0 dimensions); for
        reduction="none" also a real array broadcasting to loss_shape, kept as given in go0
        (kernel_go makes its kernel form)."""
        cdef cnp.ndarray go0
        if not self.want_grad or grad_output is None:
            return 0
        if self.red != FL_REDUCE_NONE or not isinstance(grad_output, (np.ndarray, list, tuple)):
            if isinstance(grad_output, (np.ndarray, list, tuple)) and np.ndim(grad_output) != 0:
                raise ValueError("grad_output must be a scalar unless reduction='none', "
                                 f"got shape {np.shape(grad_output)}")
            if isinstance(grad_output, np.ndarray) and fl_dtype_of(grad_output) == FL_DTYPE_BF16:
                grad_output = to_dtype(grad_output, FL_DTYPE_F64)  # bits, not numbers
            self.go_scalar = real_option(grad_output if not isinstance(grad_output, np.ndarray)
                                         else grad_output[()], "grad_output")
            return 0
        go0 = as_array(grad_output)
        if not is_real(go0):
            raise TypeError(f"grad_output must be a real array, got dtype {go0.dtype}")
        if go0.ndim == 0:
            self.go_scalar = float(to_dtype(go0, FL_DTYPE_F64))
            return 0
        try:
            fits = np.broadcast_shapes(np.shape(go0), loss_shape) == loss_shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"grad_output of shape {np.shape(go0)} does not broadcast to the "
                             f"loss shape {loss_shape}")
        self.go0 = go0
        return 0

    cdef int check_out(self, object out, cnp.ndarray a, str what, cnp.ndarray weight=None,
                       cnp.ndarray pos_weight=None, bint alias=False) except -1:
        """out= for the gradient: an ndarray of the input's shape and dtype, writeable. It may be
        exactly the input (computed in place) or, with alias, exactly `a` (the target, named
        `what`, or softmax's output); any other overlap with an argument is a ValueError.
        Returns whether out is exactly `a`."""
        if not self.want_grad or out is None:
            return False
        if type(out) is not cnp.ndarray and not isinstance(out, np.ndarray):
            raise TypeError(f"out must be a numpy.ndarray, got {type(out).__name__}")
        cdef cnp.ndarray o = <cnp.ndarray>out, x0 = self.x0
        if not cnp.PyArray_SAMESHAPE(o, x0):
            raise ValueError(f"out has shape {np.shape(o)}, expected {np.shape(x0)}")
        if cnp.PyArray_TYPE(o) != cnp.PyArray_TYPE(x0):
            raise TypeError(f"out has dtype {o.dtype}, expected {x0.dtype}")
        if not cnp.PyArray_ISWRITEABLE(o):
            raise ValueError("out is read-only")
        self.out, self.in_place = o, same_view(o, x0)
        cdef bint exact = alias and a is not None and same_view(o, a)
        if not self.in_place:
            no_overlap(o, x0, self.name, True)
        if not exact:
            no_overlap(o, a, what, alias)
        no_overlap(o, weight, "weight", False)
        no_overlap(o, pos_weight, "pos_weight", False)
        no_overlap(o, self.go0, "grad_output", False)
        return exact

    cdef cnp.ndarray operand(self, cnp.ndarray a):
        """An operand or the input in the kernel's dtype (strides in whole elements), rounded
        to the loss's half dtype first when float32 computes it, as torch holds it (else its
        extra precision would leak into the result: a float64 target of 1.0001 failing BCE's
        [0, 1] check, an l1 gradient of sign(1.91 - 1.9098) where the float16 difference is
        0); a loss that promoted keeps the operand's precision."""
        if self.loss_dtype != self.fl_dtype and fl_dtype_of(a) != self.loss_dtype:
            a = to_dtype(a, self.loss_dtype)
        return as_kernel_array(a, self.fl_dtype)

    cdef cnp.ndarray kernel_go(self, tuple loss_shape):
        """The upstream gradient array broadcast (stride 0, cast while still small) to the
        loss's shape, or None when it is one number."""
        if self.go0 is None:
            return None
        return np.broadcast_to(as_kernel_array(self.go0, self.fl_dtype), loss_shape)

    cdef cnp.ndarray class_grad(self, cnp.ndarray x, int axis, fl_view *v):
        """Where the gradient of x (in its (n, c, s) view) goes: x itself in place, the
        caller's out when the kernel can write it, else a new array laid out like x."""
        cdef cnp.ndarray o = self.out, g
        if self.in_place:
            g = x
        elif (o is not None and fl_dtype_of(o) == self.fl_dtype and kernel_ready(o)
              and cnp.PyArray_NDIM(o) == cnp.PyArray_NDIM(x) and _view(o, axis, axis + 1, v)):
            self.g = o
            return o
        else:
            g = np.empty_like(x)
        self.g = class_view(g, axis, axis + 1, v)
        return self.g

    cdef int class_operands(self, cnp.ndarray t0, cnp.ndarray t, bint prob, object weight,
                            object grad_output, object out, fl_view *v, fl_index *dims) except -1:
        """cross_entropy's and nll_loss's operands after their own checks: the class weight,
        grad_output and out= checked, then the (n, c, s) views of the input, the target t
        (probabilities when prob, else checked class indices; t0 as the caller gave it), the
        upstream gradient and the gradient in v[0..3], the view's (n, c, s) in dims[0..2],
        and the per-position losses of reduction="none"."""
        cdef cnp.ndarray w0 = None, x0 = self.x0
        cdef int d, nd = cnp.PyArray_NDIM(x0), ax = 1 if nd >= 2 else 0
        dims[0], dims[1], dims[2] = cnp.PyArray_DIM(x0, 0) if nd >= 2 else 1, cnp.PyArray_DIM(x0, ax), 1
        for d in range(2, nd):
            dims[2] *= cnp.PyArray_DIM(x0, d)
        if weight is not None:
            w0 = as_array(weight)
            self.w = class_weight(w0, dims[1], self.loss_dtype, self.fl_dtype)
        # the loss's shape, needed only for a grad_output array or per-position losses (its
        # tuple costs as much as the rest of a 64x10 call's checks)
        loss_shape = ()
        if nd >= 2 and (grad_output is not None or self.red == FL_REDUCE_NONE):
            loss_shape = np.shape(x0)[:1] + np.shape(x0)[2:]
        self.upstream(grad_output, loss_shape)
        self.check_out(out, t0, "target", w0)
        self.x = class_view(self.operand(x0), ax, ax + 1, &v[0])
        self.t = class_view(self.operand(t) if prob else t, ax, ax + prob, &v[1])
        self.go = class_view(self.kernel_go(loss_shape), ax, ax, &v[2])
        if self.want_grad:
            self.class_grad(self.x, ax, &v[3])
        else:
            class_view(None, 0, 0, &v[3])
        rows_as_positions(&dims[0], &dims[2], v, 4)
        self.loss_buffer(loss_shape, None)
        return 0

    cdef cnp.ndarray elementwise_grad(self, cnp.ndarray x, tuple shape, list order):
        """As class_grad for the elementwise losses; a broadcast input's gradient is computed
        in the loss's shape first (and summed back by result)."""
        cdef cnp.ndarray o = self.out
        if cnp.PyArray_NDIM(x) != len(shape) or np.shape(x) != shape:
            self.g = empty_in_order(shape, order, kernel_dtype(self.fl_dtype))
        elif self.in_place:
            self.g = x
        elif o is not None and fl_dtype_of(o) == self.fl_dtype and kernel_ready(o):
            self.g = o
        else:
            self.g = empty_in_order(shape, order, kernel_dtype(self.fl_dtype))
        return self.g

    cdef cnp.ndarray loss_buffer(self, tuple shape, list order):
        """The per-position losses of reduction="none" (None otherwise)."""
        if self.red == FL_REDUCE_NONE:
            self.losses = empty_in_order(shape, order, kernel_dtype(self.fl_dtype))
        return self.losses

    cdef object run(self, fl_entry entry, fl_call *c, fl_index work, str name):
        """The one C call of a loss: its inputs set (dtype, SIMD path, threads, reduction,
        upstream scalar; the "out" part is the entry point's to reset), the GIL released for
        work worth the round trip (one block and more), the status checked, the results
        returned."""
        cdef int status
        c.dtype = self.fl_dtype
        c.simd, c.nthreads = simd_path(), _threads._num_threads
        c.reduction, c.batch = self.red, self.batch
        c.grad_scale = half_rounded(self.go_scalar, self.loss_dtype)
        if work >= FL_BLOCK_ELEMENTS:
            with nogil:
                status = entry(c)
        else:
            status = entry(c)
        self.finish(status, c, name)
        return self.gradient() if self.output_only else self.result(c)

    cdef int finish(self, int status, fl_call *c, str name) except -1:
        """The entry point's status as an exception; what ran, for record()."""
        if status == FL_ERR_TARGET:
            raise IndexError(f"Target {c.bad_value} is out of bounds.")
        if status == FL_ERR_DOMAIN:
            raise ValueError(f"all elements of {'target' if c.bad_operand else 'input'} should be "
                             "between 0 and 1")
        if status == FL_ERR_NOMEM:
            raise MemoryError(f"{name}: out of memory")
        if status == FL_ERR_DTYPE:  # the planner asks only for dtypes the table holds
            raise TypeError(f"{name}: no kernel for dtype {self.loss_dt}")
        cdef dict stats = recording()
        if stats is not None:
            stats["threads_used"] = c.team
            stats["threads_active"] = c.threads_active
            stats["kernel"] = c.kernel.decode() if c.kernel != NULL else None
            stats["simd"] = fl_simd_name(c.simd).decode()
        return 0

    cdef object gradient(self):
        """The gradient (or softmax's output) as the caller gets it: in out= / the input, summed
        back to a broadcast input's shape, in the input's dtype."""
        cdef cnp.ndarray g = self.g, x0 = self.x0
        cdef int dt = self.fl_dtype
        if not cnp.PyArray_SAMESHAPE(g, x0):
            if g.size == x0.size:
                g = g.reshape(np.shape(x0))
            elif dt == FL_DTYPE_BF16 or dt == FL_DTYPE_F16:  # summed in double, rounded once
                g = to_dtype(summed_to(to_dtype(g, FL_DTYPE_F64), np.shape(x0)), dt)
            else:
                g = summed_to(g, np.shape(x0))
        if self.out is None:
            return as_user_dtype(g, user_dtype(x0, fl_dtype_of(x0)))
        if not same_view(g, self.out):
            np.copyto(self.out, as_user_dtype(g, self.out.dtype), casting="unsafe")
        return self.out

    cdef object result(self, fl_call *c):
        """The loss (a NumPy scalar of the loss's dtype, or the per-position array), with the
        gradient when asked for."""
        loss = as_user_dtype(self.losses, self.loss_dt) if self.losses is not None \
            else loss_scalar(c.value, self.loss_dt)
        return (loss, self.gradient()) if self.want_grad else loss
