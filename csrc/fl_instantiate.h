/*
 * Instantiates the kernel template named by FL_TEMPLATE (a string) once per SIMD path and
 * dtype, so that each loss's C file says only which template it instantiates:
 *
 *     #define FL_TEMPLATE "cross_entropy_simd.h"
 *     #include "fl_instantiate.h"
 *
 * Each instantiation sees FL_PATH (generic, avx2, avx512), FL_ATTR (the path's function
 * attributes), FL_P (the op prefix of simd_<path>.h), FL_T / FL_C / FL_H / FL_TS / FL_F32 (the
 * dtype: see fl_instantiate_path.h) and FL_PD (the path's float64 op prefix), with exp and log
 * of FL_P already defined. float64 comes first on each path so that float32 kernels may use
 * its ops (the double log). A family whose templates take the half dtypes defines FL_HALF
 * first (bfloat16 and float16 are then instantiated too). The AVX2 and AVX-512 paths exist
 * where FL_HAVE_AVX2_BUILD; the generic path everywhere.
 */
#ifndef FL_TEMPLATE
#error "define FL_TEMPLATE before including fl_instantiate.h"
#endif

/* ---- generic ------------------------------------------------------------------------- */
#define FL_ATTR
#define FL_PATH generic
#define FL_P64 gen_f64_
#define FL_P32 gen_f32_
#define FL_PBF16 gen_bf16_
#define FL_PF16 gen_f16_
#include "fl_instantiate_path.h"

#if FL_HAVE_AVX2_BUILD
/* ---- avx2 ---------------------------------------------------------------------------- */
#define FL_ATTR FL_AVX2
#define FL_PATH avx2
#define FL_P64 avx2_f64_
#define FL_P32 avx2_f32_
#define FL_PBF16 avx2_bf16_
#define FL_PF16 avx2_f16_
#include "fl_instantiate_path.h"

/* ---- avx512 -------------------------------------------------------------------------- */
#define FL_ATTR FL_AVX512
#define FL_PATH avx512
#define FL_P64 avx512_f64_
#define FL_P32 avx512_f32_
#define FL_PBF16 avx512_bf16_
#define FL_PF16 avx512_f16_
#include "fl_instantiate_path.h"
#endif

#undef FL_TEMPLATE
