/*
 * Instantiates the dtype-only template named by FL_TEMPLATE (a string) once per dtype, for
 * the scalar parts of a kernel family that do not depend on the SIMD path:
 *
 *     #define FL_TEMPLATE "cross_entropy_dtype.h"
 *     #include "fl_instantiate_dtype.h"
 *
 * Each instantiation sees FL_T (float / double), FL_TS (f32 / f64) and FL_DT(name), which
 * is name_<TS>. (fl_instantiate.h does the same per SIMD path and dtype.)
 */
#ifndef FL_TEMPLATE
#error "define FL_TEMPLATE before including fl_instantiate_dtype.h"
#endif
#define FL_DT(name) FL_XCAT(FL_XCAT(name, _), FL_TS)

#define FL_T float
#define FL_TS f32
#include FL_TEMPLATE
#undef FL_T
#undef FL_TS

#define FL_T double
#define FL_TS f64
#include FL_TEMPLATE
#undef FL_T
#undef FL_TS

#undef FL_DT
#undef FL_TEMPLATE
