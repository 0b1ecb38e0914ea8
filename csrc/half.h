/*
 * The half-precision storage dtypes, bfloat16 and float16: their element types, their exact
 * scalar conversions, and the scalar get / put every kernel template uses for any dtype.
 *
 * Half-precision operands are stored in 16 bits and computed in float32 lanes (double for
 * sums and logs), exactly as float32 operands are. The element types are one-member structs,
 * so that a template that forgets to convert (uses a stored element as a number, or stores a
 * number without rounding it) does not compile.
 *
 * Rounding. Every conversion to a half dtype rounds to nearest, ties to even, keeps
 * subnormals (no flush to zero), overflows to infinity and turns a NaN into a quiet NaN of
 * the same sign and leading payload bits; the vector conversions of each SIMD path
 * (simd_<path>.h: <prefix>bf16_* and <prefix>f16_*) give the same bits as these scalar ones
 * (tests/test_half.py checks every path). A double is rounded once, not twice: first to
 * float32 with round-to-odd (the float32 nearest below in magnitude, with its last bit set
 * when the double is not exactly a float32), then to the half dtype to nearest. Round-to-odd
 * at 24 bits keeps the information that the 8- or 11-bit rounding needs, so the two steps
 * give the correctly rounded result of the double.
 *
 * Template scalars: fl_get_<TS>(element) is the element as a number (float for the half
 * dtypes), fl_put_<TS>(double) the element nearest to a double; for float32 and float64 they
 * are the plain conversions.
 */
#ifndef FASTLOSS_HALF_H
#define FASTLOSS_HALF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* The scalar conversions below are inlined into every caller, so that each SIMD path's
 * kernels run them in their own instruction encoding: an out-of-line copy (SSE-encoded, no
 * target attributes) called from AVX-512 code cost 6% of a bfloat16 cross-entropy fwd+bwd
 * at 8192x1000 in perf, nearly all of it on the copy's first instruction. */
#define FL_HALF_SCALAR static inline __attribute__((always_inline))

typedef struct fl_bf16 {
    uint16_t u;
} fl_bf16;
typedef struct fl_f16 {
    uint16_t u;
} fl_f16;

FL_HALF_SCALAR uint32_t fl_float_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}
FL_HALF_SCALAR float fl_bits_float(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

/* ---- bfloat16: the top 16 bits of a float32 ----------------------------------------- */

FL_HALF_SCALAR float fl_bf16_to_float(uint16_t h) { return fl_bits_float((uint32_t)h << 16); }

FL_HALF_SCALAR uint16_t fl_bf16_from_float(float f)
{
    const uint32_t b = fl_float_bits(f);
    if ((b & 0x7FFFFFFFu) > 0x7F800000u) /* NaN: quiet, truncated payload */
        return (uint16_t)((b >> 16) | 0x0040u);
    return (uint16_t)((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

/* ---- float16 (IEEE binary16) -------------------------------------------------------- */

FL_HALF_SCALAR float fl_f16_to_float(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu;
    if (e == 0x1Fu) /* inf, NaN (quieted, as the conversion instructions do) */
        return fl_bits_float(sign | 0x7F800000u | (m << 13) | (m ? 0x00400000u : 0u));
    if (e == 0) /* zero, subnormal: m 2^-24, exact in float32 */
        return sign ? -((float)m * 0x1p-24f) : (float)m * 0x1p-24f;
    return fl_bits_float(sign | ((e + 112u) << 23) | (m << 13));
}

FL_HALF_SCALAR uint16_t fl_f16_from_float(float f)
{
    const uint32_t b = fl_float_bits(f), sign = (b >> 16) & 0x8000u, a = b & 0x7FFFFFFFu;
    if (a > 0x7F800000u) /* NaN: quiet, truncated payload */
        return (uint16_t)(sign | 0x7E00u | ((a >> 13) & 0x3FFu));
    if (a >= 0x477FF000u) /* >= 65520 = the float16 max plus half its ulp: rounds to inf */
        return (uint16_t)(sign | 0x7C00u);
    if (a < 0x38800000u) { /* below 2^-14: subnormal or zero, in units of 2^-24 */
        /* |f| * 2^24 rounded to nearest-even: exact products, and the float addition of
         * 2^23 rounds to an integer with ties to even (|f| 2^24 < 2^10) */
        const float s = fl_bits_float(a) * 0x1p24f;
        const float r = (s + 0x1p23f) - 0x1p23f;
        return (uint16_t)(sign | (uint16_t)r);
    }
    /* normal: rebias the exponent, round the 13 dropped bits to nearest-even (a carry into
     * the exponent is the right result, up to inf) */
    const uint32_t r = a - 0x38000000u; /* exponent bias 127 -> 15 */
    return (uint16_t)(sign | ((r + 0xFFFu + ((r >> 13) & 1u)) >> 13));
}

/* ---- a double rounded once ------------------------------------------------------------ */

/* d rounded to float32 with round-to-odd: truncated toward zero, the last bit set when
 * inexact. Overflow gives the largest finite float32 (odd), which rounds on to inf. */
FL_HALF_SCALAR float fl_float_odd(double d)
{
    float f = (float)d;
    if ((double)f == d || d != d)
        return f;
    uint32_t b = fl_float_bits(f);
    if (fabs((double)f) > fabs(d)) /* rounded away from zero (or to inf): one step back */
        b -= 1u;
    return fl_bits_float(b | 1u);
}

FL_HALF_SCALAR uint16_t fl_bf16_from_double(double d) { return fl_bf16_from_float(fl_float_odd(d)); }
FL_HALF_SCALAR uint16_t fl_f16_from_double(double d) { return fl_f16_from_float(fl_float_odd(d)); }

/* ---- the template scalars ------------------------------------------------------------- */

FL_HALF_SCALAR float fl_get_f32(float v) { return v; }
FL_HALF_SCALAR double fl_get_f64(double v) { return v; }
FL_HALF_SCALAR float fl_get_bf16(fl_bf16 v) { return fl_bf16_to_float(v.u); }
FL_HALF_SCALAR float fl_get_f16(fl_f16 v) { return fl_f16_to_float(v.u); }
FL_HALF_SCALAR float fl_put_f32(double d) { return (float)d; }
FL_HALF_SCALAR double fl_put_f64(double d) { return d; }
FL_HALF_SCALAR fl_bf16 fl_put_bf16(double d)
{
    fl_bf16 h = {fl_bf16_from_double(d)};
    return h;
}
FL_HALF_SCALAR fl_f16 fl_put_f16(double d)
{
    fl_f16 h = {fl_f16_from_double(d)};
    return h;
}

/* Whole arrays (csrc/half.c): n contiguous float32 values to bfloat16 / float16 (to_half) or
 * back, with the vector ops of SIMD path simd; n float64 values rounded once to dtype.
 * FL_OK, or FL_ERR_DTYPE for a dtype that is not a half one. */
int fl_half_convert(int simd, int dtype, int to_half, const void *src, void *dst, int64_t n);
int fl_half_from_double(int dtype, const double *src, void *dst, int64_t n);

#endif /* FASTLOSS_HALF_H */
