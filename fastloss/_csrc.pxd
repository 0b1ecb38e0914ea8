# Declarations of the C layer (csrc/), one block per header: the call protocol shared by every
# loss family (fastloss.h) and each family's argument struct and single entry point. Fields
# are grouped by type (Cython needs names and types, not the C order; csrc/*.h documents them).
from libc.stdint cimport int64_t, uint16_t

cdef extern from "fastloss.h" nogil:
    ctypedef int64_t fl_index
    ctypedef struct fl_view:  # an operand seen as (n, c, s): element strides of the three axes
        fl_index sn, sc, ss
    int FL_OK, FL_ERR_NOMEM, FL_ERR_TARGET, FL_ERR_DOMAIN, FL_ERR_DTYPE, FL_BLOCK_ELEMENTS
    int FL_REDUCE_NONE, FL_REDUCE_MEAN, FL_REDUCE_SUM, FL_REDUCE_BATCHMEAN
    int FL_DTYPE_F32, FL_DTYPE_F64, FL_DTYPE_BF16, FL_DTYPE_F16, FL_TARGET_I32, FL_TARGET_I64
    int FL_SIMD_GENERIC, FL_SIMD_AVX2, FL_SIMD_AVX512
    ctypedef struct fl_call:
        int dtype, simd, nthreads, reduction, team, threads_active, bad_operand
        double grad_scale, batch, value
        const char *kernel
        int64_t bad_value
    int fl_cpu_has_avx2_fma()
    int fl_cpu_has_avx512()
    int fl_simd_resolve(const char *request)
    const char *fl_simd_name(int path)
    int fl_openmp_enabled()

cdef extern from "half.h" nogil:  # one rounding from double (a reduced loss), and back
    uint16_t fl_bf16_from_double(double d)
    uint16_t fl_f16_from_double(double d)
    float fl_bf16_to_float(uint16_t h)
    float fl_f16_to_float(uint16_t h)

# every family's entry point, fl_<family>(&args.call), and fl_<family>_kernels(simd, names,
# max), the names its dispatch table holds for a path
ctypedef int (*fl_entry)(fl_call *call) noexcept nogil
ctypedef int (*fl_kernels_fn)(int simd, const char **names, int max) noexcept nogil

cdef extern from "cross_entropy.h" nogil:
    int FL_TARGET_PROB
    enum:
        FL_MARGIN_ARC
        FL_MARGIN_COS
    double FL_MARGIN_EPS
    ctypedef struct fl_margin:
        int kind
        int easy
        double margin
        double scale
    ctypedef struct fl_ce_args:
        fl_call call
        fl_index n, c, s
        fl_view xv, tv, gov, gv
        const void *x
        const void *target
        const void *weight
        const void *grad_out
        void *grad
        void *loss
        int target_kind
        fl_index ignore_index
        double label_smoothing
        double *lse_out
        const double *lse_in
        const fl_margin *margin
        double hits
    int fl_cross_entropy(fl_call *call)
    int fl_cross_entropy_kernels(int simd, const char **names, int max)

cdef extern from "nll_loss.h" nogil:
    ctypedef struct fl_nll_args:
        fl_call call
        int target_kind
        fl_index ignore_index, n, c, s
        fl_view xv, tv, gov, gv
        const void *x
        const void *target
        const void *weight
        const void *grad_out
        void *grad
        void *loss
    int fl_nll_loss(fl_call *call)
    int fl_nll_loss_kernels(int simd, const char **names, int max)

cdef extern from "softmax.h" nogil:
    ctypedef struct fl_softmax_args:
        fl_call call
        fl_index n, c, s
        fl_view xv, yv, ov
        int log, backward
        const void *x
        const void *y
        void *out
    int fl_softmax(fl_call *call)
    int fl_softmax_kernels(int simd, const char **names, int max)

cdef extern from "regression.h" nogil:
    int FL_REG_MSE, FL_REG_L1, FL_REG_SMOOTH_L1, FL_REG_HUBER, FL_REG_MAXDIM
    ctypedef fl_index fl_reg_dims[64]  # [FL_REG_MAXDIM]
    ctypedef struct fl_reg_args:
        fl_call call
        int kind, ndim
        double param
        fl_reg_dims shape, xs, ys, gos, gs, ls
        const void *x
        const void *y
        const void *grad_out
        void *grad
        void *loss
    int fl_regression(fl_call *call)
    int fl_regression_kernels(int simd, const char **names, int max)

cdef extern from "binary.h" nogil:
    int FL_BIN_BCE, FL_BIN_BCE_LOGITS, FL_BIN_KL, FL_BIN_KL_LOG
    ctypedef fl_index fl_bin_strides[2]
    ctypedef struct fl_bin_args:
        fl_call call
        int kind
        fl_index rows, cols
        fl_bin_strides xs, ys, ws, pws, gos, gs, ls
        const void *x
        const void *y
        const void *w
        const void *pw
        const void *go
        void *grad
        void *loss
    int fl_binary(fl_call *call)
    int fl_binary_kernels(int simd, const char **names, int max)
