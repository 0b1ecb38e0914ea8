# The argument checks, operand planner and call finisher every loss module uses
# (fastloss/_plan.pyx).
cimport numpy as cnp

from fastloss._csrc cimport fl_index, fl_call, fl_entry, fl_kernels_fn, fl_view

cdef class Call:
    cdef cnp.ndarray x0    # the caller's input (grad_output for softmax backward)
    cdef str name                   # its name in errors
    cdef int fl_dtype               # the kernels' dtype, FL_DTYPE_*
    cdef int loss_dtype             # the loss's dtype (FL_DTYPE_*: the input's, or promoted)
    cdef object loss_dt             # ... as the NumPy dtype returned (the caller's bfloat16)
    cdef bint native_half           # the family's kernels take the half dtypes
    cdef int red                    # FL_REDUCE_*
    cdef double batch               # FL_REDUCE_BATCHMEAN's divisor
    cdef bint want_grad
    cdef bint output_only           # the call returns its output array alone (softmax)
    cdef double go_scalar           # the upstream gradient when it is one number
    cdef cnp.ndarray go0            # the upstream gradient array as given, or None
    cdef cnp.ndarray out            # the caller's out=, checked, or None
    cdef bint in_place              # out is exactly x0
    cdef cnp.ndarray x, t, w, go    # the kernel's input, target, weight, upstream gradient
    cdef cnp.ndarray g              # where the kernel writes the gradient (or the output)
    cdef cnp.ndarray losses         # where the kernel writes per-position losses, or None

    cdef int promote(self, cnp.ndarray t0) except -1
    cdef int upstream(self, object grad_output, tuple loss_shape) except -1
    cdef int check_out(self, object out, cnp.ndarray a, str what, cnp.ndarray weight=*,
                       cnp.ndarray pos_weight=*, bint alias=*) except -1
    cdef cnp.ndarray operand(self, cnp.ndarray a)
    cdef cnp.ndarray kernel_go(self, tuple loss_shape)
    cdef cnp.ndarray class_grad(self, cnp.ndarray x, int axis, fl_view *v)
    cdef int class_operands(self, cnp.ndarray t0, cnp.ndarray t, bint prob, object weight,
                            object grad_output, object out, fl_view *v, fl_index *dims) except -1
    cdef cnp.ndarray elementwise_grad(self, cnp.ndarray x, tuple shape, list order)
    cdef cnp.ndarray loss_buffer(self, tuple shape, list order)
    cdef object run(self, fl_entry entry, fl_call *c, fl_index work, str name)
    cdef int finish(self, int status, fl_call *c, str name) except -1
    cdef object gradient(self)
    cdef object result(self, fl_call *c)

cdef Call start(object input, str what, bint want_grad, bint native_half=*)
cdef dict recording()

# argument checks
cdef int parse_reduction(object reduction, bint batchmean=*) except -1
cdef cnp.ndarray as_array(object a)
cdef int float_compute_type(cnp.ndarray a, str what) except -1
cdef bint shares_memory(cnp.ndarray a, cnp.ndarray b) except -1
cdef bint same_view(cnp.ndarray a, cnp.ndarray b)
cdef double real_option(object value, str what) except? -1.0
cdef object int_option(object value, str what)
cdef object int64_option(object value, str what)
cdef cnp.ndarray index_target(cnp.ndarray t0, cnp.ndarray x0, fl_index C, object ignore)

# operands
cdef bint is_float(cnp.ndarray a)
cdef bint is_real(cnp.ndarray a)
cdef void *data(cnp.ndarray a)
cdef int fl_dtype_of(cnp.ndarray a)
cdef object kernel_dtype(int fl_dtype)
cdef cnp.ndarray to_dtype(cnp.ndarray a, int fl_dtype)
cdef object as_user_dtype(cnp.ndarray a, object dt)
cdef cnp.ndarray class_view(cnp.ndarray a, int lo, int hi, fl_view *v)
cdef void rows_as_positions(fl_index *n, fl_index *s, fl_view *v, int count)
cdef list memory_order(cnp.ndarray lead)
cdef int merge_axes(tuple shape, list order, list ops, int maxd, int pad, fl_index *sizes,
                    fl_index **strides) except -2
cdef list kernel_names(fl_kernels_fn fn)
