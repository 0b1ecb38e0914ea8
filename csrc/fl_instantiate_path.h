/* One SIMD path for fl_instantiate.h: FL_ATTR, FL_PATH and the op prefixes FL_P64 / FL_P32
 * (and FL_PBF16 / FL_PF16, the half dtypes' storage ops) given; instantiates float64 (first,
 * so that float32 kernels may use its ops), float32, and with FL_HALF bfloat16 and float16,
 * then undefines them. Each instance sees FL_T (the stored element), FL_C (the scalar it is
 * computed in), FL_P (the compute ops), FL_H (the storage ops: load / loadn / store / storen
 * between FL_T elements and FL_P vectors; FL_P itself for float32 and float64) and
 * FL_HALF_INSTANCE (0 for float32 / float64; 1 for bfloat16 and 2 for float16, whose compute
 * ops, exp and log are float32's). */
#define FL_PD FL_P64
#define FL_HALF_INSTANCE 0
#define FL_P FL_P64
#define FL_H FL_P64
#define FL_T double
#define FL_C double
#define FL_TS f64
#define FL_F32 0
#include "fl_instance.h"
#undef FL_P
#undef FL_H
#undef FL_T
#undef FL_C
#undef FL_TS
#undef FL_F32
#define FL_P FL_P32
#define FL_H FL_P32
#define FL_T float
#define FL_C float
#define FL_TS f32
#define FL_F32 1
#include "fl_instance.h"
#undef FL_H
#undef FL_T
#undef FL_TS
#undef FL_HALF_INSTANCE
#ifdef FL_HALF
#define FL_HALF_INSTANCE 1
#define FL_H FL_PBF16
#define FL_T fl_bf16
#define FL_TS bf16
#include "fl_instance.h"
#undef FL_H
#undef FL_T
#undef FL_TS
#undef FL_HALF_INSTANCE
#define FL_HALF_INSTANCE 2
#define FL_H FL_PF16
#define FL_T fl_f16
#define FL_TS f16
#include "fl_instance.h"
#undef FL_H
#undef FL_T
#undef FL_TS
#undef FL_HALF_INSTANCE
#endif
#undef FL_P
#undef FL_C
#undef FL_F32
#undef FL_PD
#undef FL_P64
#undef FL_P32
#undef FL_PBF16
#undef FL_PF16
#undef FL_ATTR
#undef FL_PATH
