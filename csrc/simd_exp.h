/*
 * Template: exp(x) on every lane of a vector, written once against the op names of
 * simd_avx2.h / simd_generic.h. Included once per (dtype, path) with
 *   FL_P     the op prefix (avx2_f32_, gen_f64_, ...)
 *   FL_F32   1 for float32, 0 for float64
 *   FL_ATTR  the function attributes of that path
 * and defines FL_P##exp.
 *
 * Method (Cephes-style): n = round(x / ln 2) with the magic-number trick (adding 1.5 * 2^m
 * leaves n in the low mantissa bits, which also gives 2^n by integer arithmetic), r = x - n ln 2
 * in two parts (|r| <= ln2 / 2), e^r by a polynomial (float32: Cephes' degree-5 minimax
 * polynomial, about 1 ulp; float64: the Taylor series to r^13, truncation < 1e-17), times 2^n.
 * Range: x > HI gives +inf, x < LO gives exactly 0 (so a -inf logit has probability 0, not a
 * denormal), NaN stays NaN: both range tests are ordered compares, false for NaN, and the
 * NaN flows through the arithmetic. Results between ln(FLT_MIN) and LO would be
 * subnormal; they are flushed to 0 (relative to a softmax sum >= 1 this is below 1e-38).
 * HI is just under ln(2^127.5) (resp. 2^1023.5) so that 2^n stays a normal number: exp(x) for x
 * in (HI, ln MAX] returns inf. The kernels only take exp of values <= 0.
 */
#include <math.h>

#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)
#define FL_EOP(name) FL_XCAT(FL_P, name)
#define FL_EV FL_XCAT(FL_P, v)

/* 2^n * e^r without the range tests; t carries n (see above). */
static inline FL_ATTR FL_EV FL_EOP(exp_core)(FL_EV x, FL_EV *t_out)
{
#if FL_F32
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const float hi = 88.37f, lo = -87.3365447505531f;
    FL_EV t = FL_EOP(fmadd)(x, FL_EOP(set1)(log2e), FL_EOP(set1)(magic));
    FL_EV n = FL_EOP(sub)(t, FL_EOP(set1)(magic));
    FL_EV r = FL_EOP(fnmadd)(n, FL_EOP(set1)(ln2_hi), x);
    r = FL_EOP(fnmadd)(n, FL_EOP(set1)(ln2_lo), r);
    FL_EV p = FL_EOP(set1)(1.9875691500e-4f);
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.3981999507e-3f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(8.3334519073e-3f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(4.1665795894e-2f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.6666665459e-1f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(5.0000001201e-1f));
    p = FL_EOP(fmadd)(p, FL_EOP(mul)(r, r), FL_EOP(add)(r, FL_EOP(set1)(1.0f)));
#else
    const double magic = 6755399441055744.0; /* 1.5 * 2^52 */
    const double log2e = 1.4426950408889634074, ln2_hi = 6.93145751953125e-1,
                 ln2_lo = 1.42860682030941723212e-6;
    const double hi = 709.43, lo = -708.396418532264;
    FL_EV t = FL_EOP(fmadd)(x, FL_EOP(set1)(log2e), FL_EOP(set1)(magic));
    FL_EV n = FL_EOP(sub)(t, FL_EOP(set1)(magic));
    FL_EV r = FL_EOP(fnmadd)(n, FL_EOP(set1)(ln2_hi), x);
    r = FL_EOP(fnmadd)(n, FL_EOP(set1)(ln2_lo), r);
    /* 1/k! for k = 13 .. 0, Horner */
    FL_EV p = FL_EOP(set1)(1.6059043836821613e-10);
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(2.08767569878681e-09));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(2.505210838544172e-08));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(2.755731922398589e-07));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(2.7557319223985893e-06));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(2.48015873015873e-05));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(0.0001984126984126984));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(0.001388888888888889));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(0.008333333333333333));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(0.041666666666666664));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(0.16666666666666666));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(0.5));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.0));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.0));
#endif
    (void)hi;
    (void)lo;
    *t_out = t;
    return FL_EOP(mul)(p, FL_EOP(pow2_magic)(t, FL_EOP(set1)(magic)));
}

/* exp(x) for x <= 0 or NaN (softmax arguments x - max): only the underflow test. */
static inline FL_ATTR FL_EV FL_EOP(exp_le0)(FL_EV x)
{
    FL_EV t;
    FL_EV y = FL_EOP(exp_core)(x, &t);
#if FL_F32
    const float lo = -87.3365447505531f;
#else
    const double lo = -708.396418532264;
#endif
    return FL_EOP(select)(FL_EOP(lt)(x, FL_EOP(set1)(lo)), FL_EOP(set1)(0), y);
}

/* exp(x) for any x. */
static inline FL_ATTR FL_EV FL_EOP(exp)(FL_EV x)
{
    FL_EV t;
    FL_EV y = FL_EOP(exp_core)(x, &t);
#if FL_F32
    const float hi = 88.37f, lo = -87.3365447505531f;
    const float inf = (float)INFINITY;
#else
    const double hi = 709.43, lo = -708.396418532264;
    const double inf = (double)INFINITY;
#endif
    y = FL_EOP(select)(FL_EOP(gt)(x, FL_EOP(set1)(hi)), FL_EOP(set1)(inf), y);
    return FL_EOP(select)(FL_EOP(lt)(x, FL_EOP(set1)(lo)), FL_EOP(set1)(0), y);
}

#undef FL_EOP
#undef FL_EV
