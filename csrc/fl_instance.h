/* One instantiation for fl_instantiate.h: exp and log of the prefix FL_P, then the template. */
#include "simd_exp.h"
#include "simd_log.h"
#include FL_TEMPLATE
