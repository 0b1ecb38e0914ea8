/*
 * Template: the natural log on every lane of a vector, written once against the op names of
 * simd_avx2.h / simd_avx512.h / simd_generic.h (the companion of simd_exp.h). Included once
 * per (dtype, path) with
 *   FL_P     the op prefix (avx2_f32_, gen_f64_, ...)
 *   FL_F32   1 for float32, 0 for float64
 *   FL_ATTR  the function attributes of that path
 * and defines FL_P##log (any x): log(+0) = log(-0) = -inf, log(x < 0) = NaN, NaN stays NaN,
 * log(+inf) = +inf; subnormal x are exact (scaled into the normal range first).
 *
 * Method: x = m 2^e with m in [1, 2) (op getexp_mant); when m > sqrt(2), m /= 2 and e += 1,
 * so that f = m - 1 lies in [sqrt(1/2) - 1, sqrt(2) - 1]; log(x) = e ln2 + log(1 + f), with
 * ln 2 in two parts.
 *   float32: Cephes' logf: log(1 + f) = f - f^2 / 2 + f^3 P(f), P of degree 8; about 1 ulp.
 *   float64: fdlibm's log: s = f / (2 + f), log(1 + f) = f - (hfsq - s (hfsq + R(s^2))),
 *            hfsq = f^2 / 2, R a degree-7 minimax polynomial in s^2; below 1 ulp.
 * Both are evaluated with fused multiply-adds where the path has them (generic: a * b + c).
 */
#include <math.h>

#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)
#define FL_LOP(name) FL_XCAT(FL_P, name)
#define FL_LV FL_XCAT(FL_P, v)
#define FL_LM FL_XCAT(FL_P, m)

#if FL_F32
#define FL_L_T float
#define FL_L_MIN_NORMAL 1.17549435e-38f
#define FL_L_MAX 3.40282347e+38f
#define FL_L_SCALE 33554432.0f /* 2^25: subnormals become normal */
#define FL_L_SCALE_EXP 25.0f
#define FL_L_SQRT2 1.41421356237309505f
#define FL_L_LN2_HI 0.693359375f
#define FL_L_LN2_LO (-2.12194440e-4f)
#else
#define FL_L_T double
#define FL_L_MIN_NORMAL 2.2250738585072014e-308
#define FL_L_MAX 1.7976931348623157e+308
#define FL_L_SCALE 18014398509481984.0 /* 2^54 */
#define FL_L_SCALE_EXP 54.0
#define FL_L_SQRT2 1.41421356237309505
#define FL_L_LN2_HI 6.93147180369123816490e-01
#define FL_L_LN2_LO 1.90821492927058770002e-10
#endif

/* log(x) for any x */
static inline FL_ATTR FL_LV FL_LOP(log)(FL_LV x)
{
    const FL_LV one = FL_LOP(set1)((FL_L_T)1);
    /* subnormals (and 0, negatives, NaN: fixed up at the end) scaled by 2^K */
    const FL_LM tiny = FL_LOP(lt)(x, FL_LOP(set1)(FL_L_MIN_NORMAL));
    FL_LV xs = FL_LOP(select)(tiny, FL_LOP(mul)(x, FL_LOP(set1)(FL_L_SCALE)), x);
    FL_LV m;
    FL_LV e = FL_LOP(getexp_mant)(xs, &m);
    e = FL_LOP(sub)(e, FL_LOP(select)(tiny, FL_LOP(set1)(FL_L_SCALE_EXP), FL_LOP(set1)((FL_L_T)0)));
    const FL_LM big = FL_LOP(gt)(m, FL_LOP(set1)(FL_L_SQRT2));
    m = FL_LOP(select)(big, FL_LOP(mul)(m, FL_LOP(set1)((FL_L_T)0.5)), m);
    e = FL_LOP(select)(big, FL_LOP(add)(e, one), e);
    const FL_LV f = FL_LOP(sub)(m, one);
    const FL_LV z = FL_LOP(mul)(f, f);
#if FL_F32
    FL_LV p = FL_LOP(set1)(7.0376836292e-2f);
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(-1.1514610310e-1f));
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(1.1676998740e-1f));
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(-1.2420140846e-1f));
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(1.4249322787e-1f));
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(-1.6668057665e-1f));
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(2.0000714765e-1f));
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(-2.4999993993e-1f));
    p = FL_LOP(fmadd)(p, f, FL_LOP(set1)(3.3333331174e-1f));
    FL_LV y = FL_LOP(mul)(FL_LOP(mul)(p, f), z);                    /* f^3 P(f) */
    y = FL_LOP(fmadd)(e, FL_LOP(set1)(FL_L_LN2_LO), y);
    y = FL_LOP(fnmadd)(FL_LOP(set1)(0.5f), z, y);
    FL_LV r = FL_LOP(add)(f, y);
    r = FL_LOP(fmadd)(e, FL_LOP(set1)(FL_L_LN2_HI), r);
#else
    const FL_LV s = FL_LOP(div)(f, FL_LOP(add)(f, FL_LOP(set1)(2.0)));
    const FL_LV s2 = FL_LOP(mul)(s, s), s4 = FL_LOP(mul)(s2, s2);
    FL_LV t1 = FL_LOP(fmadd)(s4, FL_LOP(set1)(1.531383769920937332e-01), FL_LOP(set1)(2.222219843214978396e-01));
    t1 = FL_LOP(fmadd)(s4, t1, FL_LOP(set1)(3.999999999940941908e-01));
    t1 = FL_LOP(mul)(s4, t1);
    FL_LV t2 = FL_LOP(fmadd)(s4, FL_LOP(set1)(1.479819860511658591e-01), FL_LOP(set1)(1.818357216161805012e-01));
    t2 = FL_LOP(fmadd)(s4, t2, FL_LOP(set1)(2.857142874366239149e-01));
    t2 = FL_LOP(fmadd)(s4, t2, FL_LOP(set1)(6.666666666666735130e-01));
    t2 = FL_LOP(mul)(s2, t2);
    const FL_LV R = FL_LOP(add)(t1, t2);
    const FL_LV hfsq = FL_LOP(mul)(FL_LOP(set1)(0.5), z);
    /* log(1 + f) + e ln2 = e ln2_hi - ((hfsq - (s (hfsq + R) + e ln2_lo)) - f) */
    FL_LV q = FL_LOP(fmadd)(s, FL_LOP(add)(hfsq, R), FL_LOP(mul)(e, FL_LOP(set1)(FL_L_LN2_LO)));
    q = FL_LOP(sub)(FL_LOP(sub)(hfsq, q), f);
    FL_LV r = FL_LOP(fnmadd)(e, FL_LOP(set1)(-FL_L_LN2_HI), FL_LOP(sub)(FL_LOP(set1)(0.0), q));
#endif
    /* x <= 0 or NaN: -inf for zeros (x * 0 - inf), NaN for negatives and NaN; +inf stays */
    const FL_LV neg_inf = FL_LOP(set1)((FL_L_T)-INFINITY);
    FL_LV special = FL_LOP(fmadd)(x, FL_LOP(set1)((FL_L_T)0), neg_inf);
    special = FL_LOP(select)(FL_LOP(lt)(x, FL_LOP(set1)((FL_L_T)0)), FL_LOP(set1)((FL_L_T)NAN), special);
    r = FL_LOP(select)(FL_LOP(gt)(x, FL_LOP(set1)(FL_L_MAX)), x, r);
    return FL_LOP(select)(FL_LOP(gt)(x, FL_LOP(set1)((FL_L_T)0)), r, special);
}

#undef FL_L_T
#undef FL_L_MIN_NORMAL
#undef FL_L_MAX
#undef FL_L_SCALE
#undef FL_L_SCALE_EXP
#undef FL_L_SQRT2
#undef FL_L_LN2_HI
#undef FL_L_LN2_LO
#undef FL_LOP
#undef FL_LV
#undef FL_LM
