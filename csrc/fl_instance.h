/* One instantiation for fl_instantiate.h: exp and log of the prefix FL_P, the op shorthands
 * every kernel template uses, the row toolkit (row_simd.h), then the template. */
#include "simd_exp.h"
#include "simd_log.h"

#define FL_OP(name) FL_XCAT(FL_P, name)
#define FL_V FL_XCAT(FL_P, v)
#define FL_ACC FL_XCAT(FL_P, acc)
#define FL_L FL_XCAT(FL_P, LANES)
#define FL_KN(name) FL_XCAT(FL_XCAT(FL_XCAT(name, _), FL_TS), FL_XCAT(_, FL_PATH))
#define FL_DTN(name) FL_XCAT(FL_XCAT(name, _), FL_TS)

#include "row_simd.h"
#include FL_TEMPLATE

#undef FL_OP
#undef FL_V
#undef FL_ACC
#undef FL_L
#undef FL_KN
#undef FL_DTN
