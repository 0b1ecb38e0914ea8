/*
 * Margin-softmax cross-entropy (AAM-softmax / ArcFace, AM-softmax / CosFace) over a cosine
 * matrix: cross-entropy (cross_entropy.h, every option) of the logits
 *
 *     z_k = s x_k  (k != t),    z_t = s phi(x_t)
 *
 * with x the cosines, t the row's target class, s the scale and phi the margin function:
 *   kind arc:  phi(x) = cos(theta + m) = x cos m - sqrt(1 - x^2) sin m   where x > th,
 *              x - mm otherwise (th = cos(pi - m), mm = m sin(pi - m): the seed's fallback,
 *              which keeps phi decreasing in theta where theta + m > pi);
 *              easy_margin: phi as above where x > 0, x otherwise;
 *   kind cos:  phi(x) = x - m.
 * For kind arc the target's cosine is first clamped to [-1 + FL_MARGIN_EPS, 1 - FL_MARGIN_EPS]
 * (a NaN stays NaN): a cosine at or beyond +-1 (rounding of a normalized dot product) gives a
 * finite phi and a finite derivative, the formula's at the clamped value.
 *
 * The gradient with respect to x is s times the cross-entropy gradient with respect to z, and
 * at the target also times phi'(x_t). Only the target column differs from plain
 * cross-entropy, so the kernels are the cross-entropy row kernels with one hook per row
 * (cross_entropy_simd.h, cross_entropy_dtype.h call margin_cross_entropy_simd.h /
 * margin_cross_entropy_dtype.h when fl_ce_args.margin is set); the one-hot is never
 * materialized. Index targets only; the column (K-dim) layout takes the scalar position
 * kernel.
 */
#ifndef FASTLOSS_MARGIN_CROSS_ENTROPY_H
#define FASTLOSS_MARGIN_CROSS_ENTROPY_H

#include <math.h>

#define FL_MARGIN_ARC 0
#define FL_MARGIN_COS 1

/* The clamp of the target cosine for kind arc (speechbrain's value). */
#define FL_MARGIN_EPS 1e-7

typedef struct fl_margin {
    int kind;      /* FL_MARGIN_ARC / FL_MARGIN_COS */
    int easy;      /* arc: the margin only where x > 0 */
    double margin; /* m */
    double scale;  /* s > 0 */
    /* derived by fl_margin_prepare */
    double cos_m, sin_m, th, mm;
} fl_margin;

static inline void fl_margin_prepare(fl_margin *g)
{
    const double pi = 3.14159265358979323846;
    g->cos_m = cos(g->margin);
    g->sin_m = sin(g->margin);
    g->th = cos(pi - g->margin);
    g->mm = sin(pi - g->margin) * g->margin;
}

/* phi(x) and *dphi = phi'(x) (see above), in double. */
static inline double fl_margin_phi(const fl_margin *g, double x, double *dphi)
{
    *dphi = 1.0;
    if (g->kind == FL_MARGIN_COS)
        return x - g->margin;
    const double hi = 1.0 - FL_MARGIN_EPS;
    const double c = x > hi ? hi : (x < -hi ? -hi : x); /* NaN: stays NaN */
    const double sine = sqrt(1.0 - c * c);
    if (g->easy ? c > 0.0 : c - g->th > 0.0) {
        *dphi = g->cos_m + c * g->sin_m / sine;
        return c * g->cos_m - sine * g->sin_m;
    }
    return g->easy ? c : c - g->mm;
}

/* Whether the modified target logit is the row's top-1, as torch.argmax picks it (the first
 * index among equal maxima): phi against the largest cosine before the target (mlo) and after
 * it (mhi), -inf for none. NaN: not a hit. */
static inline double fl_margin_hit(double phi, double mlo, double mhi) { return phi > mlo && phi >= mhi ? 1.0 : 0.0; }

#endif /* FASTLOSS_MARGIN_CROSS_ENTROPY_H */
