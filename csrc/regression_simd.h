/*
 * Template: the regression kernels for one (dtype, SIMD path). Included by regression.c
 * through fl_instantiate.h: FL_T stored (float, double, fl_bf16, fl_f16), FL_C computed,
 * FL_LD / FL_ST the storage ops (the half dtypes widen to float32 lanes and round each
 * result to nearest-even once), FL_OP the compute ops, FL_PATH and FL_ATTR.
 *
 *   reg_elem    one vector of d = x - y -> losses and gradients (formulas: regression.h);
 *   reg_contig  the flat loop over contiguous operands: read x and y (and grad_out), write
 *               the gradient and/or the losses, return the sum of the losses in double;
 *   reg_block   one fixed block of the C-order flat index: runs of the innermost axis go
 *               straight to reg_contig when every operand is contiguous along it, else
 *               through small stack buffers (gather, reg_contig, scatter).
 */

typedef struct {
    FL_V zero, p, p_lo, neg_p_lo, half_p, half_inv_p, inv_p, half;
    int tiny_p; /* 1/p overflows FL_C (subnormal beta): divide by p, as torch does */
} FL_KN(reg_consts);

static inline FL_ATTR __attribute__((always_inline)) void FL_KN(reg_elem)(
    const int kind, const FL_KN(reg_consts) *c, FL_V d, FL_V s, FL_V *loss, FL_V *grad)
{
    const FL_V z = FL_OP(max)(d, FL_OP(sub)(c->zero, d)); /* |d| (nan stays nan) */
    if (kind == FL_REG_MSE) {
        const FL_V ds = FL_OP(mul)(d, s);
        *loss = FL_OP(mul)(d, d);
        *grad = FL_OP(add)(ds, ds);
    } else if (kind == FL_REG_L1) {
        *loss = z;
        *grad = FL_OP(select)(FL_OP(gt)(d, c->zero), s,
                              FL_OP(select)(FL_OP(lt)(d, c->zero), FL_OP(sub)(c->zero, s), c->zero));
    } else if (kind == FL_REG_SMOOTH_L1) {
        FL_V quad, lin; /* 0.5 z^2 / p and d / p */
        if (c->tiny_p) { /* 1/p is inf: 0 * inf would make NaN of the exact zeros */
            quad = FL_OP(mul)(c->half, FL_OP(div)(FL_OP(mul)(z, z), c->p));
            lin = FL_OP(div)(d, c->p);
        } else {
            quad = FL_OP(mul)(FL_OP(mul)(z, z), c->half_inv_p);
            lin = FL_OP(mul)(d, c->inv_p);
        }
        *loss = FL_OP(select)(FL_OP(lt)(z, c->p), quad, FL_OP(sub)(z, c->half_p));
        *grad = FL_OP(select)(FL_OP(gt)(d, c->p_lo), s,
                              FL_OP(select)(FL_OP(lt)(d, c->neg_p_lo), FL_OP(sub)(c->zero, s),
                                            FL_OP(mul)(lin, s)));
    } else { /* huber */
        const FL_V ps = FL_OP(mul)(c->p, s);
        *loss = FL_OP(select)(FL_OP(lt)(z, c->p), FL_OP(mul)(FL_OP(mul)(z, z), c->half),
                              FL_OP(mul)(c->p, FL_OP(sub)(z, c->half_p)));
        *grad = FL_OP(select)(FL_OP(gt)(d, c->p_lo), ps,
                              FL_OP(select)(FL_OP(lt)(d, c->neg_p_lo), FL_OP(sub)(c->zero, ps),
                                            FL_OP(mul)(d, s)));
    }
}

static inline FL_ATTR __attribute__((always_inline)) double FL_KN(reg_loop)(
    const int kind, const FL_KN(reg_consts) *c, const FL_T *x, const FL_T *y, const FL_T *go,
    FL_C scale, FL_T *g, FL_T *l, fl_index n)
{
    const fl_index L = FL_L;
    const FL_V vscale = FL_OP(set1)(scale);
    FL_ACC acc = FL_OP(acc_zero)();
    FL_V lv, gv, s = vscale;
    fl_index i = 0;
    /* two vectors per step, their losses added in FL_C before the (costlier) widening to
     * double: at most 1 ulp per pair, then exact double sums */
    for (; i + 2 * L <= n; i += 2 * L) {
        FL_V lv1, gv1, s1 = vscale;
        const FL_V d0 = FL_OP(sub)(FL_LD(x + i), FL_LD(y + i));
        const FL_V d1 = FL_OP(sub)(FL_LD(x + i + L), FL_LD(y + i + L));
        if (go) {
            s = FL_OP(mul)(FL_LD(go + i), vscale);
            s1 = FL_OP(mul)(FL_LD(go + i + L), vscale);
        }
        FL_KN(reg_elem)(kind, c, d0, s, &lv, &gv);
        FL_KN(reg_elem)(kind, c, d1, s1, &lv1, &gv1);
        acc = FL_OP(acc_add)(acc, FL_OP(add)(lv, lv1));
        if (l) {
            FL_ST(l + i, lv);
            FL_ST(l + i + L, lv1);
        }
        if (g) {
            FL_ST(g + i, gv);
            FL_ST(g + i + L, gv1);
        }
    }
    for (; i + L <= n; i += L) {
        const FL_V d = FL_OP(sub)(FL_LD(x + i), FL_LD(y + i));
        if (go)
            s = FL_OP(mul)(FL_LD(go + i), vscale);
        FL_KN(reg_elem)(kind, c, d, s, &lv, &gv);
        acc = FL_OP(acc_add)(acc, lv);
        if (l)
            FL_ST(l + i, lv);
        if (g)
            FL_ST(g + i, gv);
    }
    if (i < n) {
        const fl_index r = n - i;
        /* padding lanes: d = 0, whose loss is 0 for every kind */
        const FL_V d = FL_OP(sub)(FL_LDN(x + i, r, 0), FL_LDN(y + i, r, 0));
        if (go)
            s = FL_OP(mul)(FL_LDN(go + i, r, 0), vscale);
        FL_KN(reg_elem)(kind, c, d, s, &lv, &gv);
#if FL_MUTATE
        gv = FL_OP(mul)(gv, FL_OP(set1)((FL_C)1.01));
#endif
        acc = FL_OP(acc_add)(acc, lv);
        if (l)
            FL_STN(l + i, lv, r);
        if (g)
            FL_STN(g + i, gv, r);
    }
    return FL_OP(acc_hsum)(acc);
}

static inline FL_ATTR __attribute__((always_inline)) double FL_KN(reg_contig)(
    const int kind, const reg_ctx *cx, const FL_T *x, const FL_T *y, const FL_T *go, FL_T *g, FL_T *l, fl_index n)
{
    const fl_reg_args *a = cx->a;
    FL_KN(reg_consts) c;
    const double p = a->param;
    c.zero = FL_OP(set1)(0);
    /* A positive p below FL_C's smallest value (smooth_l1's beta = 1e-320 in float32) stays
     * positive: as in torch's double arithmetic, |d| < p then holds for d = 0 only. */
    const FL_C pt = ((FL_C)p == 0 && p > 0) ? -FL_NEXTDOWN((FL_C)0) : (FL_C)p;
    c.p = FL_OP(set1)(pt);
    /* d >= p  <=>  d > p_lo, the next value of FL_C below p (torch's gradient tests >=:
     * that matters at p = inf, where d = inf takes the linear branch) */
    const FL_C p_lo = FL_NEXTDOWN(pt);
    c.p_lo = FL_OP(set1)(p_lo);
    c.neg_p_lo = FL_OP(set1)(-p_lo);
    c.half_p = FL_OP(set1)((FL_C)(0.5 * p));
    c.half_inv_p = FL_OP(set1)((FL_C)(0.5 / p));
    c.inv_p = FL_OP(set1)((FL_C)(1.0 / p));
    c.half = FL_OP(set1)((FL_C)0.5);
    {
        const FL_C inv = (FL_C)(1.0 / p);
        c.tiny_p = pt > 0 && (inv - inv != 0); /* 1/p is inf in FL_C */
    }
    const FL_C scale = (FL_C)cx->scale;
    switch (kind) {
    case FL_REG_MSE:
        return FL_KN(reg_loop)(FL_REG_MSE, &c, x, y, go, scale, g, l, n);
    case FL_REG_L1:
        return FL_KN(reg_loop)(FL_REG_L1, &c, x, y, go, scale, g, l, n);
    case FL_REG_SMOOTH_L1:
        return FL_KN(reg_loop)(FL_REG_SMOOTH_L1, &c, x, y, go, scale, g, l, n);
    default:
        return FL_KN(reg_loop)(FL_REG_HUBER, &c, x, y, go, scale, g, l, n);
    }
}

#define FL_REG_CHUNK 256


static inline FL_ATTR __attribute__((always_inline)) void FL_KN(reg_block)(const int kind, void *vctx, fl_index b,
                                                                           double *sums)
{
    const reg_ctx *ctx = (const reg_ctx *)vctx;
    const fl_reg_args *a = ctx->a;
    const int nd = a->ndim, last = nd - 1;
    const FL_T *x = (const FL_T *)a->x, *y = (const FL_T *)a->y, *go = (const FL_T *)a->grad_out;
    FL_T *g = (FL_T *)a->grad, *l = (FL_T *)a->loss;
    fl_index cur = b * ctx->block, end = cur + ctx->block;
    if (end > ctx->total)
        end = ctx->total;
    fl_index idx[FL_REG_MAXDIM];
    fl_index rest = cur;
    for (int d = last; d >= 0; d--) {
        idx[d] = rest % a->shape[d];
        rest /= a->shape[d];
    }
    const int direct = a->xs[last] == 1 && a->ys[last] == 1 && (!go || a->gos[last] == 1) &&
                       (!g || a->gs[last] == 1) && (!l || a->ls[last] == 1);
    double sum = 0.0;
    while (cur < end) {
        fl_index run = a->shape[last] - idx[last];
        if (run > end - cur)
            run = end - cur;
        fl_index ox = 0, oy = 0, ogo = 0, og = 0, ol = 0;
        for (int d = 0; d < nd; d++) {
            ox += idx[d] * a->xs[d];
            oy += idx[d] * a->ys[d];
            ogo += idx[d] * a->gos[d];
            og += idx[d] * a->gs[d];
            ol += idx[d] * a->ls[d];
        }
        if (direct) {
            sum += FL_KN(reg_contig)(kind, ctx, x + ox, y + oy, go ? go + ogo : NULL, g ? g + og : NULL,
                                     l ? l + ol : NULL, run);
        } else {
            FL_T xb[FL_REG_CHUNK], yb[FL_REG_CHUNK], gob[FL_REG_CHUNK], gb[FL_REG_CHUNK], lb[FL_REG_CHUNK];
            const fl_index sx = a->xs[last], sy = a->ys[last], sgo = a->gos[last];
            const fl_index sg = a->gs[last], sl = a->ls[last];
            for (fl_index k0 = 0; k0 < run; k0 += FL_REG_CHUNK) {
                const fl_index m = run - k0 < FL_REG_CHUNK ? run - k0 : FL_REG_CHUNK;
                for (fl_index k = 0; k < m; k++) {
                    xb[k] = x[ox + (k0 + k) * sx];
                    yb[k] = y[oy + (k0 + k) * sy];
                }
                if (go)
                    for (fl_index k = 0; k < m; k++)
                        gob[k] = go[ogo + (k0 + k) * sgo];
                sum += FL_KN(reg_contig)(kind, ctx, xb, yb, go ? gob : NULL, g ? gb : NULL, l ? lb : NULL, m);
                if (g)
                    for (fl_index k = 0; k < m; k++)
                        g[og + (k0 + k) * sg] = gb[k];
                if (l)
                    for (fl_index k = 0; k < m; k++)
                        l[ol + (k0 + k) * sl] = lb[k];
            }
        }
        cur += run;
        idx[last] += run;
        for (int d = last; d > 0 && idx[d] >= a->shape[d]; d--) {
            idx[d] = 0;
            idx[d - 1]++;
        }
    }
    sums[0] = sum;
}

/* The table's block functions, one per loss (the kind a constant: the others fold away);
 * sums[0] = the block's loss sum, stored once. */
static FL_ATTR void FL_KN(reg_blk_mse)(void *vctx, fl_index b, double *sums) { FL_KN(reg_block)(FL_REG_MSE, vctx, b, sums); }
static FL_ATTR void FL_KN(reg_blk_l1)(void *vctx, fl_index b, double *sums) { FL_KN(reg_block)(FL_REG_L1, vctx, b, sums); }
static FL_ATTR void FL_KN(reg_blk_smooth_l1)(void *vctx, fl_index b, double *sums)
{
    FL_KN(reg_block)(FL_REG_SMOOTH_L1, vctx, b, sums);
}
static FL_ATTR void FL_KN(reg_blk_huber)(void *vctx, fl_index b, double *sums)
{
    FL_KN(reg_block)(FL_REG_HUBER, vctx, b, sums);
}
