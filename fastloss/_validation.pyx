# cython: language_level=3, boundscheck=False, wraparound=False
"""Argument checks shared by every loss (one place for each rule). They run with the GIL
held, before any kernel: a kernel never sees an input it would have to reject."""
cimport numpy as cnp
from fastloss._csrc cimport fl_index, FL_REDUCE_MEAN, FL_REDUCE_NONE, FL_REDUCE_SUM

import numpy as np

cnp.import_array()

cdef int parse_reduction(object reduction) except -1:
    if isinstance(reduction, str):  # str and its subclasses (np.str_)
        if reduction == "mean":
            return FL_REDUCE_MEAN
        if reduction == "sum":
            return FL_REDUCE_SUM
        if reduction == "none":
            return FL_REDUCE_NONE
    raise ValueError(f"{reduction!r} is not a valid value for reduction "
                     "(expected 'none', 'mean' or 'sum')")


cdef cnp.ndarray as_array(object a):
    if type(a) is cnp.ndarray:
        return <cnp.ndarray>a
    return np.asarray(a)


cdef int float_compute_type(cnp.ndarray a, str what) except -1:
    """The dtype a kernel computes an input in: float32/float64 as they are, float16 in
    float32; anything else is a TypeError."""
    cdef int t = cnp.PyArray_TYPE(a)
    if t == cnp.NPY_FLOAT or t == cnp.NPY_DOUBLE:
        return t
    if t == cnp.NPY_FLOAT16:
        return cnp.NPY_FLOAT
    raise TypeError(f"{what} must be a float16, float32 or float64 array, got dtype {a.dtype}")


cdef bint is_native_aligned(cnp.ndarray a):
    return cnp.PyArray_ISNOTSWAPPED(a) and cnp.PyArray_ISALIGNED(a)


cdef cnp.ndarray as_kernel_array(cnp.ndarray a, int typenum):
    """a itself when it is native, aligned and of dtype typenum; else a copy that is (same
    memory layout). Big-endian and unaligned inputs are copied here."""
    if cnp.PyArray_TYPE(a) == typenum and is_native_aligned(a):
        return a
    return np.array(a, dtype=cnp.PyArray_DescrFromType(typenum), order="K", copy=True)


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


cdef bint same_shape(cnp.ndarray a, cnp.ndarray b):
    return cnp.PyArray_SAMESHAPE(a, b)


cdef cnp.ndarray check_out(object out, cnp.ndarray input, str what):
    """out= for a result shaped and typed like input: an ndarray, same shape and dtype,
    writeable. Overlap is checked by the caller, which knows every input."""
    if type(out) is not cnp.ndarray and not isinstance(out, np.ndarray):
        raise TypeError(f"{what} must be a numpy.ndarray, got {type(out).__name__}")
    cdef cnp.ndarray o = <cnp.ndarray>out
    if not same_shape(o, input):
        raise ValueError(f"{what} has shape {np.shape(o)}, expected {np.shape(input)}")
    if cnp.PyArray_TYPE(o) != cnp.PyArray_TYPE(input):
        raise TypeError(f"{what} has dtype {o.dtype}, expected {input.dtype}")
    if not cnp.PyArray_ISWRITEABLE(o):
        raise ValueError(f"{what} is read-only")
    return o


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


cdef object loss_scalar(double value, int typenum):
    """The NumPy scalar of dtype typenum that a mean/sum reduction returns (built directly:
    np.float32(v) costs an array; float16 overflow to inf is silent, as a cast is)."""
    cdef float f32
    if typenum == cnp.NPY_FLOAT:
        f32 = <float>value
        return _array_scalar(&f32, _F32, None)
    if typenum == cnp.NPY_DOUBLE:
        return _array_scalar(&value, _F64, None)
    with np.errstate(over="ignore"):
        return np.float16(value)


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
    cdef bint ok
    if not cnp.PyArray_ISINTEGER(t0):
        raise TypeError(f"class-index targets must be an integer array, got dtype {t0.dtype} "
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
    if cnp.PyArray_ISSIGNED(t0) and (item == 4 or item == 8) and is_native_aligned(t0) \
            and strides_in_elements(t0):
        return t0
    if cnp.PyArray_ISUNSIGNED(t0) and item == 8:
        # values from 2**63 on do not fit in int64: reported here, with their true value;
        # the others are checked with every target, after the other arguments
        flat = t0.ravel()
        huge = flat >= np.uint64(2**63)
        if huge.any():
            raise IndexError(f"Target {int(flat[np.argmax(huge)])} is out of bounds.")
    return t0.astype(np.int64)


cdef cnp.ndarray rounded_to_half(cnp.ndarray a):
    """An operand of a float16 loss (computed in float32) rounded to float16 first, as torch
    holds it; otherwise its extra precision would leak into the result (a float64 target of
    1.0001 failing BCE's [0, 1] check, an l1 gradient of sign(1.91 - 1.9098) where the float16
    difference is 0)."""
    if cnp.PyArray_TYPE(a) != cnp.NPY_FLOAT16:
        with np.errstate(over="ignore"):
            return a.astype(np.float16)
    return a


cdef cnp.ndarray class_weight(cnp.ndarray w0, fl_index C, bint half, int typenum):
    """A per-class weight: a real 1-D array of length C (rounded to float16 first for a float16
    loss), returned contiguous in dtype typenum."""
    if not (cnp.PyArray_ISINTEGER(w0) or cnp.PyArray_ISFLOAT(w0)):
        raise TypeError(f"weight must be a real array, got dtype {w0.dtype}")
    if w0.ndim != 1 or cnp.PyArray_DIM(w0, 0) != C:
        raise ValueError(f"weight should be defined either for all {C} classes or no classes "
                         f"but got weight of shape: {list(np.shape(w0))}")
    # ascontiguousarray keeps an unaligned array as it is: the kernels need aligned elements
    cdef cnp.ndarray w = np.ascontiguousarray(rounded_to_half(w0) if half else w0, dtype=cnp.PyArray_DescrFromType(typenum))
    return w if is_native_aligned(w) else np.array(w, copy=True)


cdef tuple upstream_gradient(object grad_output, bint per_position, tuple loss_shape):
    """The upstream gradient g of a *_with_grad call, as (scalar, array): None means 1. When
    the loss is reduced (per_position False) g must be a real scalar (ValueError for an array
    of more than 0 dimensions); for reduction="none" it may also be a real array, which must
    broadcast to loss_shape and is returned as given (the caller makes its kernel form)."""
    cdef cnp.ndarray go0
    if grad_output is None:
        return 1.0, None
    if not per_position or not isinstance(grad_output, (np.ndarray, list, tuple)):
        if isinstance(grad_output, (np.ndarray, list, tuple)) and np.ndim(grad_output) != 0:
            raise ValueError("grad_output must be a scalar unless reduction='none', "
                             f"got shape {np.shape(grad_output)}")
        return real_option(grad_output if not isinstance(grad_output, np.ndarray)
                           else grad_output[()], "grad_output"), None
    go0 = as_array(grad_output)
    if not (cnp.PyArray_ISINTEGER(go0) or cnp.PyArray_ISFLOAT(go0)):
        raise TypeError(f"grad_output must be a real array, got dtype {go0.dtype}")
    if go0.ndim == 0:
        return float(go0), None
    try:
        fits = np.broadcast_shapes(np.shape(go0), loss_shape) == loss_shape
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"grad_output of shape {np.shape(go0)} does not broadcast to the loss "
                         f"shape {loss_shape}")
    return 1.0, go0


cdef bint out_in_place(cnp.ndarray out, cnp.ndarray input, object target, object weight,
                       object pos_weight, object grad_output) except -1:
    """out= against the arguments: True when out is exactly the input (the gradient is written
    over it); a ValueError when it partially overlaps the input or overlaps any other argument
    (those a loss does not have, or lets out alias, are passed as None)."""
    cdef bint in_place = same_view(out, input)
    if not in_place and shares_memory(out, input):
        raise ValueError("out partially overlaps input (out=input, exactly, computes in place)")
    if target is not None and shares_memory(out, <cnp.ndarray>target):
        raise ValueError("out overlaps target")
    if weight is not None and shares_memory(out, <cnp.ndarray>weight):
        raise ValueError("out overlaps weight")
    if pos_weight is not None and shares_memory(out, <cnp.ndarray>pos_weight):
        raise ValueError("out overlaps pos_weight")
    if grad_output is not None and shares_memory(out, <cnp.ndarray>grad_output):
        raise ValueError("out overlaps grad_output")
    return in_place

