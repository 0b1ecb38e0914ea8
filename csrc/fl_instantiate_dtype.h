/*
 * Instantiates the dtype-only template named by FL_TEMPLATE (a string) once per dtype, for
 * the scalar parts of a kernel family that do not depend on the SIMD path:
 *
 *     #define FL_TEMPLATE "cross_entropy_dtype.h"
 *     #include "fl_instantiate_dtype.h"
 *
 * Each instantiation sees FL_T (the stored element: float, double, and with FL_HALF
 * fl_bf16 / fl_f16), FL_C (the scalar it is computed in), FL_TS (f32, f64, bf16, f16),
 * FL_DT(name), which is name_<TS>, and FL_GET / FL_PUT (see fl_instance.h). (fl_instantiate.h
 * does the same per SIMD path and dtype.)
 */
#ifndef FL_TEMPLATE
#error "define FL_TEMPLATE before including fl_instantiate_dtype.h"
#endif
#include "half.h"

#define FL_DT(name) FL_XCAT(FL_XCAT(name, _), FL_TS)
#define FL_GET FL_XCAT(fl_get_, FL_TS)
#define FL_PUT FL_XCAT(fl_put_, FL_TS)

#define FL_T float
#define FL_C float
#define FL_TS f32
#include FL_TEMPLATE
#undef FL_T
#undef FL_C
#undef FL_TS

#define FL_T double
#define FL_C double
#define FL_TS f64
#include FL_TEMPLATE
#undef FL_T
#undef FL_C
#undef FL_TS

#ifdef FL_HALF
#define FL_C float
#define FL_T fl_bf16
#define FL_TS bf16
#include FL_TEMPLATE
#undef FL_T
#undef FL_TS
#define FL_T fl_f16
#define FL_TS f16
#include FL_TEMPLATE
#undef FL_T
#undef FL_TS
#undef FL_C
#endif

#undef FL_DT
#undef FL_GET
#undef FL_PUT
#undef FL_TEMPLATE
