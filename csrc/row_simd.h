/*
 * The row toolkit: vector primitives over one contiguous row of C elements, shared by every
 * kernel template (instantiated per SIMD path and dtype by fl_instance.h, before the
 * template). Padding lanes of the last partial vector hold -inf, which neither max nor exp
 * sees.
 *
 *   fl_rowmax   max_k x_k (a NaN may or may not win: the callers' exp-sum then poisons);
 *   fl_expsum   sum_k exp(x_k - m), accumulated in double; with store, the terms are also
 *               written to e (compute dtype: x itself for float32 / float64, a scratch row
 *               for the half dtypes);
 *   fl_expsum_rest  (half dtypes) the same sum as the count of the x_k equal to m (whose
 *               terms are exactly 1) and the sum of the other terms, for rows whose sum is
 *               near 1: there log(sum) and 1 - p_max are small and a float32 run that adds
 *               small terms to 1.0 would lose their low bits (half.h's outputs are
 *               correctly rounded, which needs them).
 *
 * Both are unrolled 4x with independent accumulators (measured against 2x on the
 * cross-entropy and softmax rows: 4x is as fast or faster on every path). fl_expsum adds the
 * terms in the working dtype over runs of FL_EXPSUM_RUN unrolled steps (16 terms per lane,
 * pairwise within a step) and widens each run's partial sum to double once (the tail's
 * at most 3 vectors join the last run, and one horizontal sum ends the row): the widening
 * cost 14% of an in-cache cross-entropy forward when it ran every 2 vectors (AVX-512,
 * 2026-12-05), and a run adds at most 15 roundings to a lane's partial sum, a relative error
 * of at most 2^-20 (typically 2^-23). The half dtypes round their results from these sums:
 * a result that is not within 1e-3 ulp of a tie needs them to about 2^-18 (bfloat16: runs of
 * 4 steps, as float32) resp. 2^-21 (float16: runs of 2 steps, at most 7 roundings; widening
 * every step cost 25% of an in-cache forward).
 */
#ifndef FL_EXPSUM_RUN
#define FL_EXPSUM_RUN 4
#endif
#undef FL_EXPSUM_STEPS
#if FL_HALF_INSTANCE == 2
#define FL_EXPSUM_STEPS 2
#else
#define FL_EXPSUM_STEPS FL_EXPSUM_RUN
#endif
static inline FL_ATTR FL_C FL_KN(fl_rowmax)(const FL_T *x, fl_index C)
{
    const fl_index L = FL_L;
    FL_V m0 = FL_OP(set1)(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    fl_index k = 0;
    for (; k + 4 * L <= C; k += 4 * L) {
        m0 = FL_OP(max)(m0, FL_LD(x + k));
        m1 = FL_OP(max)(m1, FL_LD(x + k + L));
        m2 = FL_OP(max)(m2, FL_LD(x + k + 2 * L));
        m3 = FL_OP(max)(m3, FL_LD(x + k + 3 * L));
    }
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        m0 = FL_OP(max)(m0, FL_LDN(x + k, r, -INFINITY));
    }
    return FL_OP(hmax)(FL_OP(max)(FL_OP(max)(m0, m1), FL_OP(max)(m2, m3)));
}

/* fl_expsum_by: with scaled, the terms exp(s x_k - m), one fused multiply-add (s > 0:
 * margin_cross_entropy's scale; m >= s x_k for every k, e.g. s times the max rounded up);
 * always inlined, so that the flags cost nothing where they are constants */
static inline FL_ATTR __attribute__((always_inline)) double FL_KN(fl_expsum_by)(const FL_T *x, FL_C *e, fl_index C,
                                                                              FL_C m, FL_C s, int store, int scaled)
{
    const FL_V vm = FL_OP(set1)(m), vs = FL_OP(set1)(s), vnm = FL_OP(set1)(-m);
#define FL_EXPSUM_ARG_(v) (scaled ? FL_OP(fmadd)((v), vs, vnm) : FL_OP(sub)((v), vm))
    const fl_index L = FL_L;
    FL_ACC acc = FL_OP(acc_zero)();
    FL_V run = FL_OP(set1)(0);
    int steps = 0;
    fl_index k = 0;
    for (; k + 4 * L <= C; k += 4 * L) {
        const FL_V e0 = FL_OP(exp_le0)(FL_EXPSUM_ARG_(FL_LD(x + k)));
        const FL_V e1 = FL_OP(exp_le0)(FL_EXPSUM_ARG_(FL_LD(x + k + L)));
        const FL_V e2 = FL_OP(exp_le0)(FL_EXPSUM_ARG_(FL_LD(x + k + 2 * L)));
        const FL_V e3 = FL_OP(exp_le0)(FL_EXPSUM_ARG_(FL_LD(x + k + 3 * L)));
        if (store) {
            FL_OP(store)(e + k, e0);
            FL_OP(store)(e + k + L, e1);
            FL_OP(store)(e + k + 2 * L, e2);
            FL_OP(store)(e + k + 3 * L, e3);
        }
        run = FL_OP(add)(run, FL_OP(add)(FL_OP(add)(e0, e1), FL_OP(add)(e2, e3)));
        if (++steps == FL_EXPSUM_STEPS) {
            acc = FL_OP(acc_add)(acc, run);
            run = FL_OP(set1)(0);
            steps = 0;
        }
    }
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        /* padding lanes hold -inf: exp gives 0 and they add nothing */
        const FL_V e0 = FL_OP(exp_le0)(FL_EXPSUM_ARG_(FL_LDN(x + k, r, -INFINITY)));
        if (store)
            FL_OP(storen)(e + k, e0, r);
        run = FL_OP(add)(run, e0);
    }
#undef FL_EXPSUM_ARG_
    return FL_OP(acc_hsum)(FL_OP(acc_add)(acc, run));
}

static inline FL_ATTR double FL_KN(fl_expsum)(const FL_T *x, FL_C *e, fl_index C, FL_C m, int store)
{
    return FL_KN(fl_expsum_by)(x, e, C, m, 1, store, 0);
}

#if FL_HALF_INSTANCE
/* sum_k exp(x_k - m) as *count (the x_k == m, i.e. not below the max m) plus the returned sum
 * of the other terms, each vector widened to double. x holds no NaN (the caller's sum was
 * finite). */
static inline FL_ATTR double FL_KN(fl_expsum_rest)(const FL_T *x, fl_index C, FL_C m, double *count)
{
    const FL_V vm = FL_OP(set1)(m), zero = FL_OP(set1)(0), one = FL_OP(set1)(1);
    const fl_index L = FL_L;
    FL_ACC s = FL_OP(acc_zero)(), n = FL_OP(acc_zero)();
    for (fl_index k = 0; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        const FL_V xv = FL_LDN(x + k, r, -INFINITY); /* padding: below m, term 0 */
        const FL_V e = FL_OP(exp_le0)(FL_OP(sub)(xv, vm));
        const FL_V below = FL_OP(select)(FL_OP(lt)(xv, vm), e, zero);
        s = FL_OP(acc_add)(s, below);
        n = FL_OP(acc_add)(n, FL_OP(select)(FL_OP(lt)(xv, vm), zero, one));
    }
    *count = FL_OP(acc_hsum)(n);
    return FL_OP(acc_hsum)(s);
}
#endif
