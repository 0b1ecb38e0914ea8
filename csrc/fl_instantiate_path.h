/* One SIMD path for fl_instantiate.h: FL_ATTR, FL_PATH and the op prefixes FL_P64 / FL_P32
 * given; instantiates float64 (first, so that float32 kernels may use its ops) then float32,
 * and undefines the four. */
#define FL_PD FL_P64
#define FL_P FL_P64
#define FL_T double
#define FL_TS f64
#define FL_F32 0
#include "fl_instance.h"
#undef FL_P
#undef FL_T
#undef FL_TS
#undef FL_F32
#define FL_P FL_P32
#define FL_T float
#define FL_TS f32
#define FL_F32 1
#include "fl_instance.h"
#undef FL_P
#undef FL_T
#undef FL_TS
#undef FL_F32
#undef FL_PD
#undef FL_P64
#undef FL_P32
#undef FL_ATTR
#undef FL_PATH
