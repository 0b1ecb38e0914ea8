/*
 * Shared parts of the libFuzzer harnesses in fuzz/: a reader that turns the fuzz input into
 * choices, strided arrays allocated exactly as large as their strides address (so that
 * AddressSanitizer reports any access outside them), float data with the edge values, and
 * the checks the harnesses apply after each kernel call.
 *
 * Conventions: strides are in elements (as in csrc/fastloss.h); every buffer is malloc'ed
 * to exactly [lowest addressed element, highest addressed element], so an array with a
 * negative stride has its base pointer inside the buffer. Memory between the addressed
 * elements (padding of non-contiguous layouts) is filled with NaN in float arrays and with a
 * huge value in index arrays, so that a kernel reading it shows up in the value checks
 * (NaN in a result that must be finite) or as a wild access.
 *
 * Dtypes: the harnesses pass the FL_DTYPE_* of an operand (fz_float_array, fz_output); the
 * half dtypes (FL_DTYPE_BF16, FL_DTYPE_F16) are stored as 16-bit patterns and read back here
 * by decoders of our own (fz_get), not by csrc/half.h's, which only makes the inputs.
 */
#ifndef FUZZ_COMMON_H
#define FUZZ_COMMON_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fastloss.h"
#include "half.h" /* fl_bf16_from_double, fl_f16_from_double: the half inputs */

/* ---- the input reader ------------------------------------------------------------------ */

typedef struct {
    const uint8_t *p;
    size_t n, i;
    uint64_t rng; /* once the bytes run out: a PRNG seeded from all of them */
} fz_in;

static void fz_init(fz_in *in, const uint8_t *data, size_t size)
{
    in->p = data;
    in->n = size;
    in->i = 0;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t k = 0; k < size; k++)
        h = (h ^ data[k]) * 1099511628211ull;
    in->rng = h | 1;
}

static uint8_t fz_u8(fz_in *in)
{
    if (in->i < in->n)
        return in->p[in->i++];
    in->rng ^= in->rng << 13; /* xorshift64 */
    in->rng ^= in->rng >> 7;
    in->rng ^= in->rng << 17;
    return (uint8_t)(in->rng >> 56);
}

static uint64_t fz_u64(fz_in *in)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v = v << 8 | fz_u8(in);
    return v;
}

/* An integer in [lo, hi]. */
static fl_index fz_range(fz_in *in, fl_index lo, fl_index hi)
{
    const uint64_t span = (uint64_t)(hi - lo) + 1;
    const uint64_t v = (uint64_t)fz_u8(in) << 8 | fz_u8(in);
    return lo + (fl_index)(v % span);
}

/* True with probability num/256. */
static int fz_chance(fz_in *in, int num) { return fz_u8(in) < num; }

/* ---- SIMD path ----------------------------------------------------------------------- */

/* One of the paths this CPU runs (fl_simd_resolve maps a request it cannot run down). */
static int fz_simd(fz_in *in)
{
    static const char *const req[] = {"generic", "avx2", "avx512", "auto"};
    const int p = fl_simd_resolve(req[fz_u8(in) % 4]);
    if (p < 0)
        abort();
    return p;
}

/* ---- shapes ---------------------------------------------------------------------------- */

/* A dimension: mostly 0..5, sometimes up to 32, now and then a size around a vector width
 * or a block boundary. */
static fl_index fz_dim(fz_in *in)
{
    static const fl_index big[] = {33, 47, 63, 64, 65, 100, 127, 128, 129, 255, 257, 1000, 1031};
    const uint8_t b = fz_u8(in);
    if (b < 160)
        return b % 6;
    if (b < 232)
        return 6 + b % 27;
    return big[b % (sizeof big / sizeof big[0])];
}

/* Shrinks the largest dimension until the product of the nonzero dimensions is at most cap
 * (so that what an empty array's other operands hold stays small too). */
static void fz_cap(fl_index *dims, int nd, fl_index cap)
{
    for (;;) {
        fl_index prod = 1;
        int big = 0;
        for (int d = 0; d < nd; d++) {
            if (prod <= cap && dims[d] > 0) /* saturates: never overflows */
                prod *= dims[d];
            if (dims[d] > dims[big])
                big = d;
        }
        if (prod <= cap)
            return;
        dims[big] /= 2;
    }
}

/* ---- strided arrays ----------------------------------------------------------------------- */

#define FZ_MAXDIM 8
#define FZ_MAXARR 16

typedef struct {
    void *buf;    /* the malloc'ed extent */
    char *base;   /* element (0, ..., 0) */
    size_t bytes; /* of buf */
    int es;       /* element size */
    int dt;       /* FL_DTYPE_* of a float array (fz_float_array, fz_output), else -1 */
    unsigned char gap[8]; /* the es bytes between the addressed elements */
    int nd;
    fl_index dims[FZ_MAXDIM], st[FZ_MAXDIM];
} fz_arr;

/* The element size of a dtype. */
static int fz_es(int dt) { return dt == FL_DTYPE_F64 ? 8 : dt == FL_DTYPE_F32 ? 4 : 2; }
static int fz_is_half(int dt) { return dt == FL_DTYPE_BF16 || dt == FL_DTYPE_F16; }
static const char *fz_dtype_name(int dt)
{
    return dt == FL_DTYPE_F32 ? "float32" : dt == FL_DTYPE_F64 ? "float64" : dt == FL_DTYPE_BF16 ? "bfloat16" : "float16";
}

/* The dtype from an input byte: bit 0 float32 / float64 as before (bit 7 clear), or, with
 * bit 7 set, bfloat16 / float16 (the families with half kernels). */
static int fz_dtype(uint8_t b)
{
    if (b & 0x80)
        return b & 1 ? FL_DTYPE_F16 : FL_DTYPE_BF16;
    return b & 1 ? FL_DTYPE_F64 : FL_DTYPE_F32;
}

/* Arrays of one fuzz run, freed at its end. */
static fz_arr fz_pool[FZ_MAXARR];
static int fz_npool;

static void fz_free_all(void)
{
    for (int k = 0; k < fz_npool; k++)
        free(fz_pool[k].buf);
    fz_npool = 0;
}

static fl_index fz_numel(const fz_arr *a)
{
    fl_index n = 1;
    for (int d = 0; d < a->nd; d++)
        n *= a->dims[d];
    return n;
}

/* Strides for dims: memory order C, Fortran or a random permutation; each axis maybe padded
 * (non-contiguous), maybe reversed (negative stride), and, when zero_ok (a read-only operand
 * that NumPy may broadcast), maybe of stride 0. Never overlapping unless a stride is 0. */
static void fz_strides(fz_in *in, int nd, const fl_index *dims, fl_index *st, int zero_ok)
{
    int perm[FZ_MAXDIM]; /* perm[0]: the slowest axis */
    for (int d = 0; d < nd; d++)
        perm[d] = d;
    const uint8_t order = fz_u8(in) % 4;
    if (order == 1) {
        for (int d = 0; d < nd; d++)
            perm[d] = nd - 1 - d;
    } else if (order == 2) {
        for (int d = nd - 1; d > 0; d--) {
            const int k = (int)(fz_u8(in) % (d + 1)), t = perm[d];
            perm[d] = perm[k];
            perm[k] = t;
        }
    }
    fl_index step = fz_chance(in, 40) ? 1 + fz_u8(in) % 3 : 1;
    for (int q = nd - 1; q >= 0; q--) {
        const int d = perm[q];
        st[d] = step;
        step *= dims[d] > 0 ? dims[d] : 1;
        if (fz_chance(in, 30))
            step += fz_u8(in) % 3; /* a gap before the next axis */
    }
    for (int d = 0; d < nd; d++) {
        if (fz_chance(in, 50))
            st[d] = -st[d];
        if (zero_ok && fz_chance(in, 25))
            st[d] = 0;
    }
}

/* Allocates an array of exactly the extent its strides address, filled with `gap` (the
 * caller then writes the addressed elements). */
static fz_arr *fz_alloc(int nd, const fl_index *dims, const fl_index *st, int es, const void *gap)
{
    if (fz_npool == FZ_MAXARR)
        abort();
    fz_arr *a = &fz_pool[fz_npool++];
    memset(a, 0, sizeof *a);
    a->es = es;
    a->dt = -1;
    memcpy(a->gap, gap, (size_t)es);
    a->nd = nd;
    fl_index lo = 0, hi = 0, numel = 1;
    for (int d = 0; d < nd; d++) {
        a->dims[d] = dims[d];
        a->st[d] = st[d];
        numel *= dims[d];
        const fl_index span = (dims[d] > 0 ? dims[d] - 1 : 0) * st[d];
        if (span < 0)
            lo += span;
        else
            hi += span;
    }
    a->bytes = numel == 0 ? 0 : (size_t)(hi - lo + 1) * (size_t)es;
    a->buf = malloc(a->bytes); /* malloc(0): a pointer ASan lets nobody dereference */
    if (a->buf == NULL && a->bytes != 0)
        abort();
    for (size_t off = 0; off + (size_t)es <= a->bytes; off += (size_t)es)
        memcpy((char *)a->buf + off, gap, (size_t)es);
    a->base = (char *)a->buf + (size_t)(-lo) * (size_t)es;
    return a;
}

/* A second array with the same dims and strides (same extent), a copy of a's bytes. */
static fz_arr *fz_clone(const fz_arr *a)
{
    if (fz_npool == FZ_MAXARR)
        abort();
    fz_arr *c = &fz_pool[fz_npool++];
    *c = *a;
    c->buf = malloc(a->bytes);
    if (c->buf == NULL && a->bytes != 0)
        abort();
    if (a->bytes)
        memcpy(c->buf, a->buf, a->bytes);
    c->base = (char *)c->buf + (a->base - (char *)a->buf);
    return c;
}

/* Calls fn(ctx, element pointer) for every addressed element, C order of the dims. */
typedef void (*fz_elem_fn)(void *ctx, char *elem);
static void fz_each(const fz_arr *a, fz_elem_fn fn, void *ctx)
{
    if (fz_numel(a) == 0)
        return;
    fl_index idx[FZ_MAXDIM] = {0};
    for (;;) {
        fl_index off = 0;
        for (int d = 0; d < a->nd; d++)
            off += idx[d] * a->st[d];
        fn(ctx, a->base + off * a->es);
        int d = a->nd - 1;
        while (d >= 0 && ++idx[d] == a->dims[d])
            idx[d--] = 0;
        if (d < 0)
            return;
    }
}

/* ---- float data ------------------------------------------------------------------------- */

enum { FZ_ANY, FZ_UNIT, FZ_MODERATE };

/* A value: edge values (NaN, +-inf, +-0, denormals, the float limits, exp's overflow and
 * underflow thresholds), raw bits, or a small number; FZ_UNIT: mostly in [0, 1], sometimes
 * just outside (BCE's domain); FZ_MODERATE: small finite numbers only. */
static double fz_value(fz_in *in, int domain, int es)
{
    static const double edge[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0, 0.5,
                                  1.4e-45, -1.4e-45, 1e-310, 3.4028234663852886e38,
                                  -3.4028234663852886e38, 88.72, -87.33, -103.9, 709.78, -745.1,
                                  1e30, -1e30, 1e300, -100.0, 100.0, 1e-7};
    static const double unit[] = {0.0, 1.0, 0.5, 1e-45, 1.0 - 1e-7, 1e-12, NAN, -1e-7, 1.0000001,
                                  -0.0, 1e-300};
    const uint8_t b = fz_u8(in);
    if (domain == FZ_UNIT) {
        if (b < 24)
            return unit[b % (sizeof unit / sizeof unit[0])];
        return (double)fz_u8(in) / 255.0;
    }
    if (domain == FZ_ANY && b < 24)
        return edge[b % (sizeof edge / sizeof edge[0])];
    if (domain == FZ_ANY && b < 36) {
        const uint64_t bits = fz_u64(in);
        if (es == 4) {
            float f;
            const uint32_t b32 = (uint32_t)bits;
            memcpy(&f, &b32, 4);
            return f;
        }
        double d;
        memcpy(&d, &bits, 8);
        return d;
    }
    return (double)(int8_t)fz_u8(in) / 8.0 + (double)(b & 7) / 64.0; /* [-16, 16] */
}

/* ---- half-precision data ------------------------------------------------------------------ */

/* A stored bfloat16 / float16 element as a double: decoders of our own (not half.h's). */
static double fz_bf16_decode(uint16_t h)
{
    const uint32_t b = (uint32_t)h << 16;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static double fz_f16_decode(uint16_t h)
{
    const int e = (h >> 10) & 31, m = h & 1023;
    const double v = e == 0 ? ldexp((double)m, -24)
                   : e == 31 ? (m ? (double)NAN : (double)INFINITY)
                             : ldexp((double)(m + 1024), e - 25);
    return h & 0x8000 ? -v : v;
}

static double fz_half_decode(int dt, uint16_t h) { return dt == FL_DTYPE_BF16 ? fz_bf16_decode(h) : fz_f16_decode(h); }

/* A half element as fz_value draws it (FZ_ANY: also the half dtypes' own edges, and raw 16-bit
 * patterns, signalling NaNs included), its bits. */
static uint16_t fz_half_value(fz_in *in, int domain, int dt)
{
    static const double edge[] = {NAN, INFINITY, -INFINITY, 0.0, -0.0, 1.0, -1.0, 0.5,
                                  0x1p-24, -0x1p-24, 0x1p-14, 65504.0, -65504.0, 65520.0,
                                  0x1.fep127, -0x1.fep127, 0x1p-133, 0x1p-126, 88.72, -87.33,
                                  -103.9, 1e30, -100.0, 100.0, 1e-7, 30.0, -30.0, 0.1};
    static const double unit[] = {0.0, 1.0, 0.5, 0x1p-24, 1.0 - 0x1p-11, 0x1p-133, NAN, -0x1p-24, 1.0 + 0x1p-7,
                                  -0.0, 1e-300};
    double v;
    const uint8_t b = fz_u8(in);
    if (domain == FZ_UNIT)
        v = b < 24 ? unit[b % (sizeof unit / sizeof unit[0])] : (double)fz_u8(in) / 255.0;
    else if (domain == FZ_ANY && b < 24)
        v = edge[fz_u8(in) % (sizeof edge / sizeof edge[0])];
    else if (domain == FZ_ANY && b < 36)
    {
        const uint16_t hi = fz_u8(in);
        return (uint16_t)(hi << 8 | fz_u8(in)); /* raw bits */
    } else
        v = (double)(int8_t)fz_u8(in) / 8.0 + (double)(b & 7) / 64.0; /* [-16, 16] */
    return dt == FL_DTYPE_BF16 ? fl_bf16_from_double(v) : fl_f16_from_double(v);
}

/* Is v (as stored) small and finite: the data for which results must be finite. */
static int fz_is_moderate(double v) { return isfinite(v) && fabs(v) <= 30.0; }

typedef struct {
    fz_in *in;
    int domain;
    int moderate; /* stays 1 while every value written is moderate */
    int nonneg;   /* stays 1 while every value written is >= 0 */
    int dt;       /* the half dtype of fz_fill_half */
} fz_fill_ctx;

static void fz_fill_f32(void *vctx, char *elem)
{
    fz_fill_ctx *c = (fz_fill_ctx *)vctx;
    const float v = (float)fz_value(c->in, c->domain, 4);
    memcpy(elem, &v, 4);
    c->moderate &= fz_is_moderate(v);
    c->nonneg &= v >= 0;
}

static void fz_fill_f64(void *vctx, char *elem)
{
    fz_fill_ctx *c = (fz_fill_ctx *)vctx;
    const double v = fz_value(c->in, c->domain, 8);
    memcpy(elem, &v, 8);
    c->moderate &= fz_is_moderate(v);
    c->nonneg &= v >= 0;
}

static void fz_fill_half(void *vctx, char *elem)
{
    fz_fill_ctx *c = (fz_fill_ctx *)vctx;
    const uint16_t h = fz_half_value(c->in, c->domain, c->dt);
    memcpy(elem, &h, 2);
    const double v = fz_half_decode(c->dt, h);
    c->moderate &= fz_is_moderate(v);
    c->nonneg &= v >= 0;
}

/* An array of dtype dt (FL_DTYPE_*) holding a NaN of dt everywhere. */
static fz_arr *fz_nan_array(int nd, const fl_index *dims, const fl_index *st, int dt)
{
    const float nf = NAN;
    const double nd64 = NAN;
    const uint16_t nh = dt == FL_DTYPE_BF16 ? 0x7FC0u : 0x7E00u;
    const void *gap = dt == FL_DTYPE_F32 ? (const void *)&nf : dt == FL_DTYPE_F64 ? (const void *)&nd64 : (const void *)&nh;
    fz_arr *a = fz_alloc(nd, dims, st, fz_es(dt), gap);
    a->dt = dt;
    return a;
}

/* A float array of dtype dt with NaN between its elements, its elements from the input.
 * *moderate (if not NULL) is cleared when an element is not moderate, *nonneg when one is
 * negative or NaN. */
static fz_arr *fz_float_array(fz_in *in, int nd, const fl_index *dims, const fl_index *st, int dt,
                              int domain, int *moderate, int *nonneg)
{
    fz_arr *a = fz_nan_array(nd, dims, st, dt);
    fz_fill_ctx c = {in, domain, 1, 1, dt};
    fz_each(a, dt == FL_DTYPE_F32 ? fz_fill_f32 : dt == FL_DTYPE_F64 ? fz_fill_f64 : fz_fill_half, &c);
    if (moderate)
        *moderate &= c.moderate;
    if (nonneg)
        *nonneg &= c.nonneg;
    return a;
}

/* An output array of dtype dt: NaN everywhere (so an element the kernel fails to write
 * stays NaN). */
static fz_arr *fz_output(int nd, const fl_index *dims, const fl_index *st, int dt)
{
    return fz_nan_array(nd, dims, st, dt);
}

/* An element of a float array as a double. */
static double fz_get(const fz_arr *a, const char *elem)
{
    if (a->dt == FL_DTYPE_F32) {
        float f;
        memcpy(&f, elem, 4);
        return f;
    }
    if (a->dt == FL_DTYPE_F64) {
        double d;
        memcpy(&d, elem, 8);
        return d;
    }
    if (!fz_is_half(a->dt))
        abort(); /* not a float array */
    uint16_t h;
    memcpy(&h, elem, 2);
    return fz_half_decode(a->dt, h);
}

/* The element at offset off (in elements, from the base) of a float array. */
static double fz_at(const fz_arr *a, fl_index off) { return fz_get(a, a->base + off * a->es); }

/* A double from fz_value, rounded to the kernel dtype. */
static double fz_scalar(fz_in *in, int domain, int es)
{
    const double v = fz_value(in, domain, es);
    return es == 4 ? (double)(float)v : v;
}

/* ---- checks ------------------------------------------------------------------------------ */

#define FZ_FAIL(...)                                                                          \
    do {                                                                                      \
        fprintf(stderr, "fuzz invariant violated (%s:%d): ", __FILE__, __LINE__);             \
        fprintf(stderr, __VA_ARGS__);                                                         \
        fprintf(stderr, "\n");                                                                \
        abort();                                                                              \
    } while (0)

typedef struct {
    const fz_arr *a;
    fl_index bad;
} fz_finite_ctx;

static void fz_finite_elem(void *vctx, char *elem)
{
    fz_finite_ctx *c = (fz_finite_ctx *)vctx;
    c->bad += !isfinite(fz_get(c->a, elem));
}

/* The number of addressed elements that are not finite (NaN: maybe never written). */
static fl_index fz_count_nonfinite(const fz_arr *a)
{
    fz_finite_ctx c = {a, 0};
    fz_each(a, fz_finite_elem, &c);
    return c.bad;
}

static void fz_nan_elem(void *vctx, char *elem)
{
    fz_finite_ctx *c = (fz_finite_ctx *)vctx;
    c->bad += isnan(fz_get(c->a, elem));
}

/* The number of addressed elements that are NaN. */
static fl_index fz_count_nan(const fz_arr *a)
{
    fz_finite_ctx c = {a, 0};
    fz_each(a, fz_nan_elem, &c);
    return c.bad;
}

/* A snapshot of an input's bytes, to check that the kernel left it alone. */
typedef struct {
    const fz_arr *a;
    void *copy;
} fz_snap;

static fz_snap fz_snapshot(const fz_arr *a)
{
    fz_snap s = {a, malloc(a->bytes ? a->bytes : 1)};
    if (s.copy == NULL)
        abort();
    if (a->bytes)
        memcpy(s.copy, a->buf, a->bytes);
    return s;
}

static void fz_check_unchanged(fz_snap *s, const char *what)
{
    if (s->a && s->a->bytes && memcmp(s->copy, s->a->buf, s->a->bytes) != 0)
        FZ_FAIL("the kernel modified its input %s", what);
    free(s->copy);
    s->copy = NULL;
}

/* Bitwise equality of two doubles, NaN equal to NaN (any payload). */
static int fz_same(double a, double b) { return (isnan(a) && isnan(b)) || memcmp(&a, &b, 8) == 0; }

typedef struct {
    const fz_arr *other;
    const fz_arr *self;
    fl_index diff;
} fz_cmp_ctx;

static void fz_cmp_elem(void *vctx, char *elem)
{
    fz_cmp_ctx *c = (fz_cmp_ctx *)vctx;
    const char *o = c->other->base + (elem - c->self->base);
    c->diff += !fz_same(fz_get(c->self, elem), fz_get(c->other, o));
}

/* Number of addressed elements that differ between a and b (same dims and strides). */
static fl_index fz_count_diff(const fz_arr *a, const fz_arr *b)
{
    fz_cmp_ctx c = {b, a, 0};
    fz_each(a, fz_cmp_elem, &c);
    return c.diff;
}

/* ---- what the harnesses of the (n, c, s) families share ---------------------------------- */

/* The (n, c, s) view as the .pyx files build it: (C,) is n = s = 1; (N, C) is (1, C, N);
 * K-dim is (N, C, S), never n > 1 with s == 1 (that is viewed as (1, C, N)). */
static void fz_ncs_dims(fz_in *in, fl_index dims[3])
{
    const uint8_t form = fz_u8(in) % 4;
    dims[1] = fz_dim(in);
    if (form == 0) {
        dims[0] = dims[2] = 1;
    } else if (form == 1) {
        dims[0] = 1;
        dims[2] = fz_dim(in);
    } else {
        dims[0] = fz_dim(in);
        dims[2] = fz_dim(in);
    }
    fz_cap(dims, 3, 1 << 16);
    if (dims[2] == 1)
        dims[0] = 1;
}

/* The class index at (i, j) of a target array (int32 or int64) viewed with strides (sn, ss). */
static fl_index fz_target_at(const fz_arr *t, fl_index sn, fl_index ss, fl_index i, fl_index j)
{
    const char *p = t->base + (i * sn + j * ss) * t->es;
    if (t->es == 8) {
        int64_t v;
        memcpy(&v, p, 8);
        return (fl_index)v;
    }
    int32_t v;
    memcpy(&v, p, 4);
    return (fl_index)v;
}

/* An ignore_index: the default, small values, INT64 limits, c - 1, c or a random byte. */
static fl_index fz_ignore_index(fz_in *in, fl_index c)
{
    static const fl_index ig[] = {-100, -1, 0, 1, 2, INT64_MIN, INT64_MAX};
    const uint8_t b = fz_u8(in) % 10;
    return b < 7 ? ig[b] : b == 7 ? c - 1 : b == 8 ? c : (fl_index)(int8_t)fz_u8(in);
}

/* Class-index targets (n, s), int32 (i64 == 0) or int64, any strides (0 allowed): mostly in
 * [0, c), some ignore_index, now and then a bad one the entry point must catch. The gaps
 * hold a huge class index. */
static fz_arr *fz_class_targets(fz_in *in, fl_index n, fl_index s, fl_index c, int i64, fl_index ignore)
{
    const fl_index td[2] = {n, s};
    fl_index tst[2];
    fz_strides(in, 2, td, tst, 1);
    const int tes = i64 ? 8 : 4;
    uint8_t gap[8];
    memset(gap, 0x55, sizeof gap);
    fz_arr *t = fz_alloc(2, td, tst, tes, gap);
    for (fl_index i = 0; i < n; i++) {
        for (fl_index j = 0; j < s; j++) {
            const uint8_t b = fz_u8(in);
            int64_t v;
            if (b < 200)
                v = c > 0 ? (int64_t)(fz_u8(in) % c) : ignore;
            else if (b < 245)
                v = ignore;
            else {
                static const int64_t bad[] = {-1, INT32_MIN, INT32_MAX, INT64_MIN, INT64_MAX};
                v = b % 2 ? c : bad[b % 5];
            }
            char *p = t->base + (i * tst[0] + j * tst[1]) * tes;
            if (tes == 8) {
                memcpy(p, &v, 8);
            } else {
                const int32_t v32 = (int32_t)v;
                memcpy(p, &v32, 4);
            }
        }
    }
    return t;
}

/* The call options every loss takes: the reduction (FL_REDUCE_NONE / MEAN / SUM), whether a
 * gradient is wanted and the upstream scalar (*moderate cleared when it is not moderate). */
static void fz_call_options(fz_in *in, fl_call *call, int dt, int *want_grad, int *moderate)
{
    call->dtype = dt;
    call->nthreads = 1;
    call->reduction = fz_u8(in) % 3;
    call->grad_scale = 1.0;
    call->batch = 1.0;
    *want_grad = fz_chance(in, 160);
    if (*want_grad && fz_chance(in, 100)) {
        call->grad_scale = fz_scalar(in, fz_chance(in, 200) ? FZ_MODERATE : FZ_ANY, 8);
        *moderate &= fz_is_moderate(call->grad_scale);
    }
}

/* After a call with moderate finite data: the reduced value, the loss and the gradient
 * elements finite (NaN: an element never written). */
static void fz_check_gaps(const fz_arr *a, const char *what); /* below */
static void fz_check_finite(const fl_call *call, const fz_arr *loss, const fz_arr *g)
{
    if (call->reduction != FL_REDUCE_NONE && !isfinite(call->value))
        FZ_FAIL("non-finite loss %g from finite data", call->value);
    const fz_arr *out[2] = {loss, g};
    static const char *const what[2] = {"loss", "gradient"};
    for (int k = 0; k < 2; k++) {
        if (out[k] == NULL)
            continue;
        /* float16's range ends at 65504: a large finite result (BCE's gradient near x = 0 is
         * up to 1e12) rounds to +-inf, correctly; NaN is still an element never written */
        const fl_index bad = out[k]->dt == FL_DTYPE_F16 ? fz_count_nan(out[k]) : fz_count_nonfinite(out[k]);
        if (bad)
            FZ_FAIL("%lld %s elements not finite", (long long)bad, what[k]);
        if (fz_is_half(out[k]->dt))
            fz_check_gaps(out[k], what[k]);
    }
}

/* The in-place check: the same call again with the gradient written over `aliased` (x, or y
 * where the API allows it) and a fresh loss array; run() returns the status. The value, the
 * losses and the gradient must be bitwise those of the first call (separate gradient g of
 * the aliased array's layout, losses `loss`). *loss_ptr / *grad_ptr: the args' fields. */
typedef int (*fz_run_fn)(void *args);
static void fz_check_in_place(fz_run_fn run, void *args, fl_call *call, void **loss_ptr, void **grad_ptr,
                              const fz_arr *loss, const fz_arr *g, fz_arr *aliased)
{
    const double value = call->value;
    fz_arr *loss2 = NULL;
    if (loss) {
        loss2 = fz_output(loss->nd, loss->dims, loss->st, loss->dt);
        *loss_ptr = loss2->base;
    }
    *grad_ptr = aliased->base;
    if (run(args) != FL_OK || !fz_same(value, call->value))
        FZ_FAIL("in place: value %g, separate gradient: %g", call->value, value);
    if (loss && fz_count_diff(loss, loss2))
        FZ_FAIL("in place: %lld loss elements differ", (long long)fz_count_diff(loss, loss2));
    if (fz_count_diff(aliased, g))
        FZ_FAIL("in place: %lld gradient elements differ", (long long)fz_count_diff(aliased, g));
}

/* ---- the half dtypes' checks --------------------------------------------------------------- */

typedef struct {
    const fz_arr *a;
    unsigned char *mark;
} fz_mark_ctx;

static void fz_mark_elem(void *vctx, char *elem)
{
    fz_mark_ctx *c = (fz_mark_ctx *)vctx;
    c->mark[(size_t)(elem - (char *)c->a->buf) / (size_t)c->a->es] = 1;
}

/* An output written only where it should be: every element slot of a's buffer that no index
 * addresses (the padding of a non-contiguous layout) still holds the gap value. */
static void fz_check_gaps(const fz_arr *a, const char *what)
{
    if (a->bytes == 0)
        return;
    const size_t nel = a->bytes / (size_t)a->es;
    unsigned char *mark = (unsigned char *)calloc(nel, 1);
    if (mark == NULL)
        abort();
    fz_mark_ctx c = {a, mark};
    fz_each(a, fz_mark_elem, &c);
    for (size_t e = 0; e < nel; e++)
        if (!mark[e] && memcmp((const char *)a->buf + e * (size_t)a->es, a->gap, (size_t)a->es) != 0) {
            free(mark);
            FZ_FAIL("%s: the padding element %zu of its buffer was written", what, e);
        }
    free(mark);
}

/* Tolerances against a double reference from the upcast (exact) half inputs: the result is
 * rounded once to the half dtype (relative error at most 2^-9 for bfloat16, 2^-12 for
 * float16: FZ_RTOL gives a few of those), from a float32 / double computation whose error is
 * a small multiple of float32's epsilon times `mag`, the size of the terms that make the
 * result (cancellation included); FZ_ATOL: the smallest subnormal of the dtype. */
#define FZ_MAG 1e-5
static double fz_rtol(int dt) { return dt == FL_DTYPE_BF16 ? 1e-2 : 2e-3; }
static double fz_atol(int dt) { return dt == FL_DTYPE_BF16 ? 0x1p-133 : 0x1p-24; }
static double fz_hmax(int dt) { return dt == FL_DTYPE_BF16 ? 0x1.fep127 : 65504.0; }

/* Whether a stored half result out matches the reference ref (terms of size mag): within the
 * tolerance, or +-inf where ref rounds (nearly) to beyond the largest finite value. A NaN
 * reference (NaN by definition, e.g. a mean over a zero weight sum) is not checked. */
static int fz_close(int dt, double out, double ref, double mag)
{
    if (isnan(ref))
        return 1;
    const double tol = fz_rtol(dt) * fabs(ref) + FZ_MAG * mag + fz_atol(dt);
    if (isfinite(out))
        return fabs(out - ref) <= tol;
    if (isinf(out))
        return (out > 0) == (ref > 0) && fabs(ref) + tol >= fz_hmax(dt);
    return 0;
}

/* The element at offset off of the half output a against its reference. */
static void fz_expect(const fz_arr *a, fl_index off, double ref, double mag, const char *what, fl_index i,
                      fl_index k, fl_index j)
{
    const double out = fz_at(a, off);
    if (!fz_close(a->dt, out, ref, mag))
        FZ_FAIL("%s %s[%lld, %lld, %lld] = %.9g, reference %.9g (terms %.3g)", fz_dtype_name(a->dt), what,
                (long long)i, (long long)k, (long long)j, out, ref, mag);
}

/* The reduced value (a double, not rounded to the half dtype) against its reference. */
static void fz_expect_value(int dt, double value, double ref, double mag)
{
    if (isnan(ref))
        return;
    const double tol = fz_rtol(dt) * fabs(ref) + FZ_MAG * mag + fz_atol(dt);
    if (!(isfinite(value) && fabs(value - ref) <= tol))
        FZ_FAIL("%s value %.17g, reference %.17g (terms %.3g)", fz_dtype_name(dt), value, ref, mag);
}

/* log(sum_k exp(x_k - m)) of a row with max m as log1p of (count of the maxima - 1 + the
 * other terms): accurate however close the sum is to 1. */
static double fz_logsum(double count, double others) { return log1p((count - 1.0) + others); }

#endif /* FUZZ_COMMON_H */
