# cython: language_level=3, boundscheck=False, wraparound=False
"""bfloat16 and float16 arrays converted with the kernels' own rounding: the Cython layer
over csrc/half.c. The planner (fastloss/_plan.pyx) converts bfloat16 operands and results
with these; the tests check each SIMD path's bits against csrc/half.h's rule (round to
nearest-even, subnormals kept, NaN quieted)."""
cimport numpy as cnp

import numpy as np

from fastloss._csrc cimport FL_DTYPE_BF16, FL_DTYPE_F16, FL_OK, fl_index
from fastloss._runtime cimport simd_path

cnp.import_array()

cdef extern from "half.h" nogil:
    int fl_half_convert(int simd, int dtype, int to_half, const void *src, void *dst, fl_index n)
    int fl_half_from_double(int dtype, const double *src, void *dst, fl_index n)


cdef int _half_code(str dtype) except -1:
    if dtype == "bfloat16":
        return FL_DTYPE_BF16
    if dtype == "float16":
        return FL_DTYPE_F16
    raise ValueError(f"dtype must be 'bfloat16' or 'float16', got {dtype!r}")


def narrow(values, str dtype):
    """float32 values as bfloat16 / float16 bits (uint16, C order, the input's shape), each
    rounded to nearest-even by the SIMD path in use."""
    cdef cnp.ndarray src = np.require(values, np.float32, ("C", "A"))  # aligned: the C loads need it
    cdef cnp.ndarray dst = np.empty(np.shape(src), np.uint16)
    fl_half_convert(simd_path(), _half_code(dtype), 1, cnp.PyArray_DATA(src), cnp.PyArray_DATA(dst), src.size)
    return dst


def widen(bits, str dtype):
    """bfloat16 / float16 bits (uint16) as float32 values (exact), by the SIMD path in use."""
    cdef cnp.ndarray src = np.require(bits, None, ("C", "A")).view(np.uint16)
    cdef cnp.ndarray dst = np.empty(np.shape(src), np.float32)
    fl_half_convert(simd_path(), _half_code(dtype), 0, cnp.PyArray_DATA(src), cnp.PyArray_DATA(dst), src.size)
    return dst


def from_double(values, str dtype):
    """float64 values as bfloat16 / float16 bits (uint16, C order), each rounded once to
    nearest-even (csrc/half.h: round-to-odd float32, then the half dtype)."""
    cdef cnp.ndarray src = np.require(values, np.float64, ("C", "A"))
    cdef cnp.ndarray dst = np.empty(np.shape(src), np.uint16)
    fl_half_from_double(_half_code(dtype), <const double *>cnp.PyArray_DATA(src), cnp.PyArray_DATA(dst), src.size)
    return dst
