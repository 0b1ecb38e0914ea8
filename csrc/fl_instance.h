/* One instantiation for fl_instantiate.h: exp and log of the prefix FL_P (once per path: the
 * half dtypes reuse float32's), the op shorthands every kernel template uses, the row toolkit
 * (row_simd.h), then the template.
 *
 * Shorthands: FL_OP(name) a compute op, FL_V / FL_M / FL_ACC / FL_L its vector, compare mask,
 * accumulator and lanes; FL_LD / FL_LDN / FL_ST / FL_STN load and store FL_T elements as FL_V vectors (the
 * half dtypes convert, rounding to nearest-even), FL_STF / FL_STNF store vectors known to hold
 * no NaN (bfloat16 on AVX-512 skips its NaN rule); FL_GET(e) a stored element as a number,
 * FL_PUT(d) the element nearest to the double d (rounded once; half.h); FL_KN(name) and
 * FL_DTN(name) the instance's names. */
#if !FL_HALF_INSTANCE
#include "simd_exp.h"
#include "simd_log.h"
#endif

#define FL_OP(name) FL_XCAT(FL_P, name)
#define FL_V FL_XCAT(FL_P, v)
#define FL_M FL_XCAT(FL_P, m)
#define FL_ACC FL_XCAT(FL_P, acc)
#define FL_L FL_XCAT(FL_P, LANES)
#define FL_LD FL_XCAT(FL_H, load)
#define FL_LDN FL_XCAT(FL_H, loadn)
#define FL_ST FL_XCAT(FL_H, store)
#define FL_STN FL_XCAT(FL_H, storen)
#define FL_STF FL_XCAT(FL_H, storef)
#define FL_STNF FL_XCAT(FL_H, storenf)
#define FL_GET FL_XCAT(fl_get_, FL_TS)
#define FL_PUT FL_XCAT(fl_put_, FL_TS)
#define FL_KN(name) FL_XCAT(FL_XCAT(FL_XCAT(name, _), FL_TS), FL_XCAT(_, FL_PATH))
#define FL_DTN(name) FL_XCAT(FL_XCAT(name, _), FL_TS)

#include "row_simd.h"
#include FL_TEMPLATE

#undef FL_OP
#undef FL_V
#undef FL_M
#undef FL_ACC
#undef FL_L
#undef FL_LD
#undef FL_LDN
#undef FL_ST
#undef FL_STN
#undef FL_STF
#undef FL_STNF
#undef FL_GET
#undef FL_PUT
#undef FL_KN
#undef FL_DTN
