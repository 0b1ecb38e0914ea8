# Declarations of the argument checks in _validation.pyx, shared by every loss module.
cimport numpy as cnp

from fastloss._csrc cimport fl_index

cdef int parse_reduction(object reduction) except -1
cdef cnp.ndarray as_array(object a)
cdef int float_compute_type(cnp.ndarray a, str what) except -1
cdef bint is_native_aligned(cnp.ndarray a)
cdef cnp.ndarray as_kernel_array(cnp.ndarray a, int typenum)
cdef bint merged_range(cnp.ndarray a, int lo, int hi, fl_index *stride)
cdef bint strides_in_elements(cnp.ndarray a)
cdef bint shares_memory(cnp.ndarray a, cnp.ndarray b) except -1
cdef bint same_view(cnp.ndarray a, cnp.ndarray b)
cdef bint same_shape(cnp.ndarray a, cnp.ndarray b)
cdef cnp.ndarray check_out(object out, cnp.ndarray input, str what)
cdef double real_option(object value, str what) except? -1.0
cdef object int_option(object value, str what)
cdef object loss_scalar(double value, int typenum)
cdef object int64_option(object value, str what)
cdef cnp.ndarray index_target(cnp.ndarray t0, cnp.ndarray x0, fl_index C, object ignore)
cdef cnp.ndarray rounded_to_half(cnp.ndarray a)
cdef cnp.ndarray class_weight(cnp.ndarray w0, fl_index C, bint half, int typenum)
cdef tuple upstream_gradient(object grad_output, bint per_position, tuple loss_shape)
cdef bint out_in_place(cnp.ndarray out, cnp.ndarray input, object target, object weight,
                       object pos_weight, object grad_output) except -1
