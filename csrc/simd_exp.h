/*
 * Template: exp(x) on every lane of a vector, written once against the op names of
 * simd_avx2.h / simd_avx512.h / simd_generic.h. Included once per (dtype, path) with
 *   FL_P     the op prefix (avx2_f32_, gen_f64_, ...)
 *   FL_F32   1 for float32, 0 for float64
 *   FL_ATTR  the function attributes of that path
 * and defines FL_P##exp (any x) and FL_P##exp_le0 (x <= 0 or NaN: softmax's x - max).
 *
 * Method (Cephes-style): n = round(x / ln 2) with the magic-number trick (adding 1.5 * 2^m
 * leaves n in the low mantissa bits, which also gives 2^n by integer arithmetic), r = x - n ln 2
 * in two parts (|r| <= ln2 / 2), e^r by a polynomial, times 2^n. float32: minimax polynomials
 * for relative error on [-ln2/2, ln2/2] in Horner form, of degree 5 on paths whose fmadd is
 * fused (P##FUSED_FMA) and 6 where multiply and add round apart (generic); measured over every
 * float32 x in [-87.33, 0]: at most 1.98 ulp on AVX-512 and AVX2, 1.33 ulp on generic (the
 * Cephes form used before took 8 operations for 1.26 ulp; the degree-5 form takes 5);
 * float64: the Taylor series to r^13, truncation < 1e-17.
 * Range: results that would be subnormal (x < LO = ln of the smallest normal) are exactly 0,
 * so a -inf logit has probability 0; x > HI gives +inf; NaN stays NaN (both range tests are
 * ordered compares, false for NaN, and the NaN flows through the arithmetic). HI is just under
 * ln(2^127.5) (resp. 2^1023.5) so that 2^n stays a normal number: exp(x) for x in
 * (HI, ln MAX] returns inf. The kernels only take exp of values <= 0.
 * Paths with a scalef instruction (AVX-512) use it for exp_le0: p * 2^n in one instruction,
 * with a clamp far below the subnormal range instead of the range test.
 */
#include <math.h>

#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)
#define FL_EOP(name) FL_XCAT(FL_P, name)
#define FL_EV FL_XCAT(FL_P, v)

#if FL_F32
#define FL_E_T float
#define FL_E_MAGIC 12582912.0f /* 1.5 * 2^23 */
#define FL_E_LOG2E 1.44269504088896341f
#define FL_E_LN2_HI 0.693359375f
#define FL_E_LN2_LO (-2.12194440e-4f)
#define FL_E_HI 88.37f
#define FL_E_LO (-87.3365447505531f)
#define FL_E_CLAMP (-150.0f) /* 2^round(-150 / ln 2) = 2^-216: rounds to 0 */
#else
#define FL_E_T double
#define FL_E_MAGIC 6755399441055744.0 /* 1.5 * 2^52 */
#define FL_E_LOG2E 1.4426950408889634074
#define FL_E_LN2_HI 6.93145751953125e-1
#define FL_E_LN2_LO 1.42860682030941723212e-6
#define FL_E_HI 709.43
#define FL_E_LO (-708.396418532264)
#define FL_E_CLAMP (-1500.0)
#endif

/* e^r for |r| <= ln2 / 2 */
static inline FL_ATTR FL_EV FL_EOP(exp_poly)(FL_EV r)
{
#if FL_F32
#if FL_XCAT(FL_P, FUSED_FMA)
    /* degree-5 minimax of e^r (relative error, p(0) = 1), Horner: 5 fma */
    FL_EV p = FL_EOP(set1)(8.2902973518e-03f);
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(4.1898041964e-02f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.6667637229e-01f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(4.9999147654e-01f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(9.9999970198e-01f));
    return FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.0f));
#else
    /* separate multiply and add round twice: one degree more (degree-6 minimax) */
    FL_EV p = FL_EOP(set1)(1.3843635097e-03f);
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(8.3741713315e-03f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(4.1668001562e-02f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.6666431725e-01f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(4.9999994040e-01f));
    p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.0f));
    return FL_EOP(fmadd)(p, r, FL_EOP(set1)(1.0f));
#endif
#else
    /* 1/k! for k = 13 .. 0, Horner */
    static const double c[] = {1.6059043836821613e-10, 2.08767569878681e-09, 2.505210838544172e-08,
                               2.755731922398589e-07, 2.7557319223985893e-06, 2.48015873015873e-05,
                               0.0001984126984126984, 0.001388888888888889, 0.008333333333333333,
                               0.041666666666666664, 0.16666666666666666, 0.5, 1.0, 1.0};
    FL_EV p = FL_EOP(set1)(c[0]);
    for (int i = 1; i < 14; i++)
        p = FL_EOP(fmadd)(p, r, FL_EOP(set1)(c[i]));
    return p;
#endif
}

/* n = round(x / ln 2) as a float, t = n + magic (its low bits hold n), r = x - n ln 2 */
static inline FL_ATTR FL_EV FL_EOP(exp_reduce)(FL_EV x, FL_EV *n, FL_EV *t)
{
    *t = FL_EOP(fmadd)(x, FL_EOP(set1)(FL_E_LOG2E), FL_EOP(set1)(FL_E_MAGIC));
    *n = FL_EOP(sub)(*t, FL_EOP(set1)(FL_E_MAGIC));
    FL_EV r = FL_EOP(fnmadd)(*n, FL_EOP(set1)(FL_E_LN2_HI), x);
    return FL_EOP(fnmadd)(*n, FL_EOP(set1)(FL_E_LN2_LO), r);
}

/* 2^n e^r, no range handling */
static inline FL_ATTR FL_EV FL_EOP(exp_core)(FL_EV x)
{
    FL_EV n, t;
    FL_EV r = FL_EOP(exp_reduce)(x, &n, &t);
    return FL_EOP(mul)(FL_EOP(exp_poly)(r), FL_EOP(pow2_magic)(t, FL_EOP(set1)(FL_E_MAGIC)));
}

/* exp(x) for x <= 0 or NaN */
static inline FL_ATTR FL_EV FL_EOP(exp_le0)(FL_EV x)
{
#if FL_XCAT(FL_P, HAS_SCALEF)
    FL_EV n, t;
    x = FL_EOP(max)(FL_EOP(set1)(FL_E_CLAMP), x); /* max(c, NaN) is the NaN */
    FL_EV r = FL_EOP(exp_reduce)(x, &n, &t);
    return FL_EOP(scalef)(FL_EOP(exp_poly)(r), n);
#else
    FL_EV y = FL_EOP(exp_core)(x);
    return FL_EOP(select)(FL_EOP(lt)(x, FL_EOP(set1)(FL_E_LO)), FL_EOP(set1)(0), y);
#endif
}

/* exp(x) for any x */
static inline FL_ATTR FL_EV FL_EOP(exp)(FL_EV x)
{
    FL_EV y = FL_EOP(exp_core)(x);
    y = FL_EOP(select)(FL_EOP(gt)(x, FL_EOP(set1)(FL_E_HI)), FL_EOP(set1)((FL_E_T)INFINITY), y);
    return FL_EOP(select)(FL_EOP(lt)(x, FL_EOP(set1)(FL_E_LO)), FL_EOP(set1)(0), y);
}

#undef FL_E_T
#undef FL_E_MAGIC
#undef FL_E_LOG2E
#undef FL_E_LN2_HI
#undef FL_E_LN2_LO
#undef FL_E_HI
#undef FL_E_LO
#undef FL_E_CLAMP
#undef FL_EOP
#undef FL_EV
