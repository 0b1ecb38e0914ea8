/*
 * The row toolkit: vector primitives over one contiguous row of C elements, shared by every
 * kernel template (instantiated per SIMD path and dtype by fl_instance.h, before the
 * template). Padding lanes of the last partial vector hold -inf, which neither max nor exp
 * sees.
 *
 *   fl_rowmax   max_k x_k (a NaN may or may not win: the callers' exp-sum then poisons);
 *   fl_expsum   sum_k exp(x_k - m), accumulated in double; with store, the terms are also
 *               written to e (which may be x itself).
 *
 * Both are unrolled 4x with independent accumulators (measured against 2x on the
 * cross-entropy and softmax rows: 4x is as fast or faster on every path). fl_expsum adds the
 * terms in the working dtype over runs of FL_EXPSUM_RUN unrolled steps (16 terms per lane,
 * pairwise within a step) and widens each run's partial sum to double once (the tail's
 * at most 3 vectors join the last run, and one horizontal sum ends the row): the widening
 * cost 14% of an in-cache cross-entropy forward when it ran every 2 vectors (AVX-512,
 * 2026-12-05), and a run adds at most 15 roundings to a lane's partial sum.
 */
#ifndef FL_EXPSUM_RUN
#define FL_EXPSUM_RUN 4
#endif
static inline FL_ATTR FL_T FL_KN(fl_rowmax)(const FL_T *x, fl_index C)
{
    const fl_index L = FL_L;
    FL_V m0 = FL_OP(set1)(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    fl_index k = 0;
    for (; k + 4 * L <= C; k += 4 * L) {
        m0 = FL_OP(max)(m0, FL_OP(load)(x + k));
        m1 = FL_OP(max)(m1, FL_OP(load)(x + k + L));
        m2 = FL_OP(max)(m2, FL_OP(load)(x + k + 2 * L));
        m3 = FL_OP(max)(m3, FL_OP(load)(x + k + 3 * L));
    }
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        m0 = FL_OP(max)(m0, FL_OP(loadn)(x + k, r, -INFINITY));
    }
    return FL_OP(hmax)(FL_OP(max)(FL_OP(max)(m0, m1), FL_OP(max)(m2, m3)));
}

static inline FL_ATTR double FL_KN(fl_expsum)(const FL_T *x, FL_T *e, fl_index C, FL_T m, int store)
{
    const FL_V vm = FL_OP(set1)(m);
    const fl_index L = FL_L;
    FL_ACC s = FL_OP(acc_zero)();
    FL_V run = FL_OP(set1)(0);
    int steps = 0;
    fl_index k = 0;
    for (; k + 4 * L <= C; k += 4 * L) {
        const FL_V e0 = FL_OP(exp_le0)(FL_OP(sub)(FL_OP(load)(x + k), vm));
        const FL_V e1 = FL_OP(exp_le0)(FL_OP(sub)(FL_OP(load)(x + k + L), vm));
        const FL_V e2 = FL_OP(exp_le0)(FL_OP(sub)(FL_OP(load)(x + k + 2 * L), vm));
        const FL_V e3 = FL_OP(exp_le0)(FL_OP(sub)(FL_OP(load)(x + k + 3 * L), vm));
        if (store) {
            FL_OP(store)(e + k, e0);
            FL_OP(store)(e + k + L, e1);
            FL_OP(store)(e + k + 2 * L, e2);
            FL_OP(store)(e + k + 3 * L, e3);
        }
        run = FL_OP(add)(run, FL_OP(add)(FL_OP(add)(e0, e1), FL_OP(add)(e2, e3)));
        if (++steps == FL_EXPSUM_RUN) {
            s = FL_OP(acc_add)(s, run);
            run = FL_OP(set1)(0);
            steps = 0;
        }
    }
    for (; k < C; k += L) {
        const fl_index r = C - k < L ? C - k : L;
        /* padding lanes hold -inf: exp gives 0 and they add nothing */
        const FL_V e0 = FL_OP(exp_le0)(FL_OP(sub)(FL_OP(loadn)(x + k, r, -INFINITY), vm));
        if (store)
            FL_OP(storen)(e + k, e0, r);
        run = FL_OP(add)(run, e0);
    }
    return FL_OP(acc_hsum)(FL_OP(acc_add)(s, run));
}
