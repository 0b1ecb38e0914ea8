# Declarations of the C kernels in csrc/ (one block per header).
from libc.stdint cimport int64_t

cdef extern from "fastloss.h" nogil:
    ctypedef int64_t fl_index
    int FL_OK
    int FL_ERR_NOMEM
    int FL_SIMD_GENERIC
    int FL_SIMD_AVX2
    int FL_SIMD_AVX512
    int FL_BLOCK_ELEMENTS
    int fl_cpu_has_avx2_fma()
    int fl_cpu_has_avx512()
    int fl_simd_resolve(const char *request)
    const char *fl_simd_name(int path)
    int fl_openmp_enabled()

cdef extern from "cross_entropy.h" nogil:
    int FL_TARGET_I32
    int FL_TARGET_I64
    int FL_TARGET_PROB
    ctypedef struct fl_ce_args:
        fl_index n, c, s
        const void *x
        fl_index x_sn, x_sc, x_ss
        int target_kind
        const void *target
        fl_index t_sn, t_sc, t_ss
        const void *weight
        double weight_total
        fl_index ignore_index
        double label_smoothing
        const void *grad_out
        fl_index go_sn, go_ss
        double scale
        void *grad
        fl_index g_sn, g_sc, g_ss
        void *loss
        double *lse_out
        const double *lse_in
        int simd
        int nthreads
        double nll_sum
        double smooth_sum
        int threads_used
    fl_index fl_ce_check_targets_f32(const fl_ce_args *a, double *kept_weight, int64_t *bad_value)
    fl_index fl_ce_check_targets_f64(const fl_ce_args *a, double *kept_weight, int64_t *bad_value)
    int fl_cross_entropy_f32(fl_ce_args *a)
    int fl_cross_entropy_f64(fl_ce_args *a)
