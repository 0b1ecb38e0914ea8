# cython: language_level=3, boundscheck=False, wraparound=False
"""Argument checks shared by every loss (one place for each rule). They run with the GIL
held, before any kernel: a kernel never sees an input it would have to reject."""
cimport numpy as cnp
from fastloss._csrc cimport fl_index

import numpy as np

cnp.import_array()

cdef int parse_reduction(object reduction) except -1:
    if isinstance(reduction, str):  # str and its subclasses (np.str_)
        if reduction == "mean":
            return REDUCE_MEAN
        if reduction == "sum":
            return REDUCE_SUM
        if reduction == "none":
            return REDUCE_NONE
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


cdef bint merged_stride(cnp.ndarray a, int first, fl_index *stride):
    """The element stride that walks axes first..ndim-1 as one C-ordered axis, when their
    strides allow it (True), else False (the caller copies)."""
    cdef int d
    cdef fl_index size, st, expect = 0, item = cnp.PyArray_ITEMSIZE(a)
    cdef bint have = False
    stride[0] = 0
    for d in range(cnp.PyArray_NDIM(a) - 1, first - 1, -1):
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


cdef fl_index elem_stride(cnp.ndarray a, int axis):
    return cnp.PyArray_STRIDE(a, axis) // cnp.PyArray_ITEMSIZE(a)


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
    cdef int d
    if cnp.PyArray_NDIM(a) != cnp.PyArray_NDIM(b):
        return False
    for d in range(cnp.PyArray_NDIM(a)):
        if cnp.PyArray_DIM(a, d) != cnp.PyArray_DIM(b, d):
            return False
    return True


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
