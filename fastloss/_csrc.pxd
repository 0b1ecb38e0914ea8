# Declarations of the C layer in csrc/ (one block per header): the call protocol of
# csrc/fastloss.h and each family's args struct and entry point.
from libc.stdint cimport int64_t

cdef extern from "fastloss.h" nogil:
    ctypedef int64_t fl_index
    int FL_OK
    int FL_ERR_NOMEM
    int FL_ERR_TARGET
    int FL_ERR_DOMAIN
    int FL_REDUCE_NONE
    int FL_REDUCE_MEAN
    int FL_REDUCE_SUM
    int FL_REDUCE_BATCHMEAN
    int FL_DTYPE_F32
    int FL_DTYPE_F64
    int FL_NDTYPES
    int FL_TARGET_I32
    int FL_TARGET_I64
    int FL_SIMD_GENERIC
    int FL_SIMD_AVX2
    int FL_SIMD_AVX512
    int FL_NSIMD
    int FL_BLOCK_ELEMENTS
    ctypedef struct fl_call:
        int dtype
        int simd
        int nthreads
        int reduction
        double grad_scale
        double batch
        double value
        const char *kernel
        int team
        int threads_active
        int64_t bad_value
        int bad_operand
    int fl_cpu_has_avx2_fma()
    int fl_cpu_has_avx512()
    int fl_simd_resolve(const char *request)
    const char *fl_simd_name(int path)
    int fl_openmp_enabled()

cdef extern from "cross_entropy.h" nogil:
    int FL_TARGET_PROB
    ctypedef struct fl_ce_args:
        fl_call call
        fl_index n, c, s
        const void *x
        fl_index x_sn, x_sc, x_ss
        int target_kind
        const void *target
        fl_index t_sn, t_sc, t_ss
        const void *weight
        fl_index ignore_index
        double label_smoothing
        const void *grad_out
        fl_index go_sn, go_ss
        void *grad
        fl_index g_sn, g_sc, g_ss
        void *loss
        double *lse_out
        const double *lse_in
    int fl_cross_entropy(fl_ce_args *a)
    int fl_cross_entropy_kernels(int simd, const char **names, int max)

cdef extern from "nll_loss.h" nogil:
    int FL_NLL_TARGET_I32
    int FL_NLL_TARGET_I64
    ctypedef struct fl_nll_args:
        fl_call call
        fl_index n, c, s
        const void *x
        fl_index x_sn, x_sc, x_ss
        int target_kind
        const void *target
        fl_index t_sn, t_ss
        const void *weight
        fl_index ignore_index
        const void *grad_out
        fl_index go_sn, go_ss
        void *grad
        fl_index g_sn, g_sc, g_ss
        void *loss
    int fl_nll_loss(fl_nll_args *a)
    int fl_nll_loss_kernels(int simd, const char **names, int max)

cdef extern from "softmax.h" nogil:
    ctypedef struct fl_softmax_args:
        fl_call call
        fl_index n, c, s
        int log
        int backward
        const void *x
        fl_index x_sn, x_sc, x_ss
        const void *y
        fl_index y_sn, y_sc, y_ss
        void *out
        fl_index o_sn, o_sc, o_ss
    int fl_softmax(fl_softmax_args *a)
    int fl_softmax_kernels(int simd, const char **names, int max)

cdef extern from "regression.h" nogil:
    int FL_REG_MSE
    int FL_REG_L1
    int FL_REG_SMOOTH_L1
    int FL_REG_HUBER
    int FL_REG_MAXDIM
    ctypedef struct fl_reg_args:
        fl_call call
        int kind
        double param
        int ndim
        fl_index shape[64]
        const void *x
        fl_index xs[64]
        const void *y
        fl_index ys[64]
        const void *grad_out
        fl_index gos[64]
        void *grad
        fl_index gs[64]
        void *loss
        fl_index ls[64]
    int fl_regression(fl_reg_args *a)
    int fl_regression_kernels(int simd, const char **names, int max)

cdef extern from "binary.h" nogil:
    int FL_BIN_BCE
    int FL_BIN_BCE_LOGITS
    int FL_BIN_KL
    int FL_BIN_KL_LOG
    ctypedef struct fl_bin_args:
        fl_call call
        int kind
        fl_index rows, cols
        const void *x
        fl_index x_sr, x_sk
        const void *y
        fl_index y_sr, y_sk
        const void *w
        fl_index w_sr, w_sk
        const void *pw
        fl_index pw_sr, pw_sk
        const void *go
        fl_index go_sr, go_sk
        void *grad
        fl_index g_sr, g_sk
        void *loss
        fl_index l_sr, l_sk
    int fl_binary(fl_bin_args *a)
    int fl_binary_kernels(int simd, const char **names, int max)


# ---- helpers every wrapper shares --------------------------------------------------------

ctypedef int (*fl_kernels_fn)(int simd, const char **names, int max) noexcept nogil


cdef inline list kernel_names(fl_kernels_fn fn, int simd):
    """The kernel names a family's dispatch table holds for one SIMD path."""
    cdef const char *names[64]
    cdef int n = fn(simd, names, 64), i
    return [names[i].decode() for i in range(min(n, 64))]


cdef inline void call_stats(dict stats, fl_call *call):
    """What a call's _*_stats twin reports: team size, distinct active threads, the kernel
    that ran and the SIMD path requested."""
    stats["threads_used"] = call.team
    stats["threads_active"] = call.threads_active
    stats["kernel"] = call.kernel.decode() if call.kernel != NULL else None
    stats["simd"] = fl_simd_name(call.simd).decode()
