/*
 * Template: the elementwise binary-loss kernels for one (dtype, SIMD path). Included by
 * binary.c through fl_instantiate.h: FL_T stored (float, double, fl_bf16, fl_f16), FL_C
 * computed (float for the half dtypes, which widen on load and round each result to
 * nearest-even once on store: FL_LD / FL_ST), FL_OP the compute ops, FL_PATH, FL_ATTR and
 * FL_F32 (float lanes).
 *
 *   bin_vec    the formulas of binary.h on one vector of elements;
 *   bin_seg    a run of n elements whose x, y, grad and loss are contiguous (weight,
 *              pos_weight and grad_output: contiguous or one value for the run), vectors
 *              plus one padded tail vector; returns the run's loss sum (double lanes);
 *   bin_rowseg elements [k0, k0 + n) of one row: bin_seg directly when the strides allow,
 *              else through stack buffers (gather, bin_seg, scatter: the same arithmetic);
 *   bin_block  one fixed block of the row-major order (the OpenMP work item), per loss:
 *              bin_blk_<kind>, the dispatch table's entries;
 *   bin_blk_check  FL_BIN_BCE's domain check on one block.
 */
/* the smallest subnormal of the compute dtype (log's argument floor for y log y at y = 0) */
/* and its largest finite value (|v| > FL_BIN_MAX: v = +-inf) */
#if FL_F32
#define FL_BIN_DENORM_MIN 1.40129846e-45f
#define FL_BIN_MAX 3.40282347e38f
#else
#define FL_BIN_DENORM_MIN 4.9406564584124654e-324
#define FL_BIN_MAX 1.7976931348623157e308
#endif

/* One contiguous run: NULL w / pw / go pointers mean "the value wv / pwv / 1 for every
 * element"; the upstream factor is go[i] * sv (or sv). */
typedef struct {
    const FL_T *x, *y, *w, *pw, *go;
    FL_C wv, pwv, sv;
    FL_T *g, *l;
    int has_w, has_pw;
} FL_KN(bin_run);

static FL_BIN_INLINE FL_ATTR void FL_KN(bin_vec)(const int kind, const int has_w, const int has_pw, const int want_g,
                                                 FL_V x, FL_V y, FL_V w, FL_V pw, FL_V s, FL_V *loss, FL_V *grad)
{
    const FL_V one = FL_OP(set1)((FL_C)1), zero = FL_OP(set1)((FL_C)0);
    FL_V l, g = zero;
    if (kind == FL_BIN_BCE) {
        const FL_V lo = FL_OP(set1)((FL_C)-100);
        const FL_V lx = FL_OP(max)(FL_OP(log)(x), lo);
        /* log1p(-x) = log(u) + c / u with u = 1 - x rounded and c = (1 - x) - u exact;
         * c != 0 only for x < 1/2, where 1 / u = 1 + x + x^2 + O(x^3) is plenty */
        const FL_V u = FL_OP(sub)(one, x);
        const FL_V c = FL_OP(sub)(FL_OP(sub)(zero, x), FL_OP(sub)(u, one));
        FL_V l1 = FL_OP(add)(FL_OP(log)(u), FL_OP(mul)(c, FL_OP(fmadd)(x, FL_OP(add)(one, x), one)));
        l1 = FL_OP(max)(l1, lo);
        l = FL_OP(sub)(FL_OP(mul)(FL_OP(sub)(y, one), l1), FL_OP(mul)(y, lx));
        if (want_g) {
            const FL_V den = FL_OP(max)(FL_OP(mul)(u, x), FL_OP(set1)((FL_C)1e-12f) /* torch: the float 1e-12 */);
            g = FL_OP(div)(FL_OP(sub)(x, y), den);
        }
    } else if (kind == FL_BIN_BCE_LOGITS) {
        /* torch's (1 - y) x + lw (log1p(e) + max(-x, 0)), e = exp(-|x|), lw = 1 + (pw - 1) y,
         * with its linear terms combined first, a x + lw log1p(e) where a = 1 - y for x >= 0
         * and -pw y below: no cancellation of x against max(-x, 0) (a 1e-5 loss at x = -11.7,
         * y = 0 kept its digits, not float32's 1e-6 of them); torch's form where an operand is
         * infinite */
        const FL_V ax = FL_OP(max)(x, FL_OP(sub)(zero, x)); /* |x|, NaN stays NaN */
        const FL_V e = FL_OP(exp_le0)(FL_OP(sub)(zero, ax));
        /* log1p(e) = log(u) + c / u, u = 1 + e in [1, 2], c exact; 1 / u ~ 2 - u (c is tiny) */
        const FL_V u = FL_OP(add)(one, e);
        const FL_V c = FL_OP(sub)(e, FL_OP(sub)(u, one));
        const FL_V sp = FL_OP(add)(FL_OP(log)(u), FL_OP(mul)(c, FL_OP(sub)(FL_OP(set1)((FL_C)2), u)));
        const FL_V lw = has_pw ? FL_OP(fmadd)(FL_OP(sub)(pw, one), y, one) : one;
        const FL_V pwy = has_pw ? FL_OP(mul)(pw, y) : y;
        const FL_M neg = FL_OP(lt)(x, zero);
        const FL_V a = FL_OP(select)(neg, FL_OP(sub)(zero, pwy), FL_OP(sub)(one, y));
        /* x, y or lw infinite: torch's own forms, whose inf - inf is NaN where it is */
        FL_V big = FL_OP(max)(ax, FL_OP(max)(y, FL_OP(sub)(zero, y)));
        if (has_pw)
            big = FL_OP(max)(big, FL_OP(max)(lw, FL_OP(sub)(zero, lw)));
        const FL_M torch_form = FL_OP(lt)(FL_OP(set1)(FL_BIN_MAX), big);
        l = FL_OP(add)(FL_OP(mul)(a, x), has_pw ? FL_OP(mul)(lw, sp) : sp);
        {
            const FL_V spx = FL_OP(add)(sp, FL_OP(max)(FL_OP(sub)(zero, x), zero));
            const FL_V lt_torch = FL_OP(add)(FL_OP(mul)(FL_OP(sub)(one, y), x), has_pw ? FL_OP(mul)(lw, spx) : spx);
            l = FL_OP(select)(torch_form, lt_torch, l);
        }
        if (want_g) {
            /* lw sigmoid(x) - pw y = a - q for x >= 0, a + q below, q = lw e / (1 + e) */
            const FL_V eu = FL_OP(div)(e, u);
            const FL_V q = has_pw ? FL_OP(mul)(lw, eu) : eu;
            g = FL_OP(select)(neg, FL_OP(add)(a, q), FL_OP(sub)(a, q));
            if (has_pw) { /* (without pos_weight both forms agree at the infinities) */
                const FL_V sig = FL_OP(select)(neg, eu, FL_OP(div)(one, u));
                g = FL_OP(select)(torch_form, FL_OP(sub)(FL_OP(mul)(lw, sig), pwy), g);
            }
        }
    } else if (kind == FL_BIN_KL) {
        /* xlogy(y, y): log(max(y, smallest subnormal)) makes y = 0 give 0 * finite = 0 */
        FL_V t = FL_OP(mul)(y, FL_OP(log)(FL_OP(max)(y, FL_OP(set1)(FL_BIN_DENORM_MIN))));
        t = FL_OP(select)(FL_OP(lt)(y, zero), FL_OP(set1)((FL_C)NAN), t);
        l = FL_OP(sub)(t, FL_OP(mul)(y, x));
        if (want_g)
            g = FL_OP(sub)(zero, y);
    } else { /* FL_BIN_KL_LOG */
        const FL_V ey = FL_OP(exp)(y);
        l = FL_OP(mul)(ey, FL_OP(sub)(y, x));
        if (want_g)
            g = FL_OP(sub)(zero, ey);
    }
    if (has_w) {
        l = FL_OP(mul)(l, w);
        if (want_g)
            g = FL_OP(mul)(g, w);
    }
    *loss = l;
    *grad = want_g ? FL_OP(mul)(g, s) : g;
}

static FL_BIN_INLINE FL_ATTR double FL_KN(bin_seg)(const int kind, const FL_KN(bin_run) *R, fl_index n)
{
    const fl_index L = FL_L;
    const int has_w = R->has_w, has_pw = R->has_pw, want_g = R->g != NULL;
    const FL_T *x = R->x, *y = R->y, *w = R->w, *pw = R->pw, *go = R->go;
    FL_T *g = R->g, *lp = R->l;
    const FL_V wv = FL_OP(set1)(R->wv), pwv = FL_OP(set1)(R->pwv), sv = FL_OP(set1)(R->sv);
    FL_ACC acc = FL_OP(acc_zero)();
    FL_V l, gr;
    fl_index i = 0;
    for (; i + L <= n; i += L) {
        const FL_V xi = FL_LD(x + i), yi = FL_LD(y + i);
        const FL_V wi = w ? FL_LD(w + i) : wv;
        const FL_V pi = pw ? FL_LD(pw + i) : pwv;
        const FL_V si = go ? FL_OP(mul)(FL_LD(go + i), sv) : sv;
        FL_KN(bin_vec)(kind, has_w, has_pw, want_g, xi, yi, wi, pi, si, &l, &gr);
        if (lp)
            FL_ST(lp + i, l);
        if (want_g)
            FL_ST(g + i, gr);
        acc = FL_OP(acc_add)(acc, l);
    }
    if (i < n) {
        /* padding lanes compute on x = y = 0 (finite everywhere) and are zeroed before the sum */
        const fl_index r = n - i;
        const FL_V xi = FL_LDN(x + i, r, 0), yi = FL_LDN(y + i, r, 0);
        const FL_V wi = w ? FL_LDN(w + i, r, 0) : wv;
        const FL_V pi = pw ? FL_LDN(pw + i, r, 0) : pwv;
        const FL_V si = go ? FL_OP(mul)(FL_LDN(go + i, r, 0), sv) : sv;
        FL_KN(bin_vec)(kind, has_w, has_pw, want_g, xi, yi, wi, pi, si, &l, &gr);
#if FL_MUTATE
        gr = FL_OP(mul)(gr, FL_OP(set1)((FL_C)1.01));
#endif
        if (lp)
            FL_STN(lp + i, l, r);
        if (want_g)
            FL_STN(g + i, gr, r);
        FL_C tmp[FL_L];
        FL_OP(store)(tmp, l);
        for (fl_index k = r; k < L; k++)
            tmp[k] = 0;
        acc = FL_OP(acc_add)(acc, FL_OP(load)(tmp));
    }
    return FL_OP(acc_hsum)(acc);
}

/* bin_seg specialized per loss (kind a constant: the other branches fold away) */
static FL_ATTR double FL_KN(bin_seg_bce)(const FL_KN(bin_run) *R, fl_index n) { return FL_KN(bin_seg)(FL_BIN_BCE, R, n); }
static FL_ATTR double FL_KN(bin_seg_logits)(const FL_KN(bin_run) *R, fl_index n)
{
    return FL_KN(bin_seg)(FL_BIN_BCE_LOGITS, R, n);
}
static FL_ATTR double FL_KN(bin_seg_kl)(const FL_KN(bin_run) *R, fl_index n) { return FL_KN(bin_seg)(FL_BIN_KL, R, n); }
static FL_ATTR double FL_KN(bin_seg_kllog)(const FL_KN(bin_run) *R, fl_index n)
{
    return FL_KN(bin_seg)(FL_BIN_KL_LOG, R, n);
}

static inline FL_ATTR double FL_KN(bin_seg_any)(int kind, const FL_KN(bin_run) *R, fl_index n)
{
    switch (kind) {
    case FL_BIN_BCE:
        return FL_KN(bin_seg_bce)(R, n);
    case FL_BIN_BCE_LOGITS:
        return FL_KN(bin_seg_logits)(R, n);
    case FL_BIN_KL:
        return FL_KN(bin_seg_kl)(R, n);
    default:
        return FL_KN(bin_seg_kllog)(R, n);
    }
}

/* A strided operand of a chunk: copied into buf (unit stride) unless its stride is 1. */
static inline const FL_T *FL_KN(bin_gather)(const FL_T *p, fl_index sk, fl_index n, FL_T *buf)
{
    if (sk == 1)
        return p;
    for (fl_index i = 0; i < n; i++)
        buf[i] = p[i * sk];
    return buf;
}

/* Elements [k0, k0 + n) of row r. */
static FL_BIN_INLINE FL_ATTR double FL_KN(bin_rowseg)(const int kind, const bin_ctx *cx, fl_index r, fl_index k0,
                                                     fl_index n)
{
    const fl_bin_args *a = cx->a;
    const FL_T *x = (const FL_T *)a->x + r * a->xs[0] + k0 * a->xs[1];
    const FL_T *y = (const FL_T *)a->y + r * a->ys[0] + k0 * a->ys[1];
    const FL_T *w = a->w ? (const FL_T *)a->w + r * a->ws[0] + k0 * a->ws[1] : NULL;
    const FL_T *pw = a->pw ? (const FL_T *)a->pw + r * a->pws[0] + k0 * a->pws[1] : NULL;
    const FL_T *go = a->go ? (const FL_T *)a->go + r * a->gos[0] + k0 * a->gos[1] : NULL;
    FL_T *g = a->grad ? (FL_T *)a->grad + r * a->gs[0] + k0 * a->gs[1] : NULL;
    FL_T *l = a->loss ? (FL_T *)a->loss + r * a->ls[0] + k0 * a->ls[1] : NULL;
    FL_KN(bin_run) R;
    R.has_w = w != NULL;
    R.has_pw = pw != NULL;
    /* operands constant along the row become values */
    R.wv = w && a->ws[1] == 0 ? FL_GET(*w) : (FL_C)1;
    R.pwv = pw && a->pws[1] == 0 ? FL_GET(*pw) : (FL_C)1;
    R.sv = (FL_C)cx->scale;
    const FL_T *go_run = go;
    if (go && a->gos[1] == 0) {
        R.sv = (FL_C)((double)FL_GET(*go) * cx->scale);
        go_run = NULL;
    }
    const FL_T *w_run = w && a->ws[1] != 0 ? w : NULL;
    const FL_T *pw_run = pw && a->pws[1] != 0 ? pw : NULL;

    const int direct = a->xs[1] == 1 && a->ys[1] == 1 && (!g || a->gs[1] == 1) && (!l || a->ls[1] == 1) &&
                       (!w_run || a->ws[1] == 1) && (!pw_run || a->pws[1] == 1) && (!go_run || a->gos[1] == 1);
    if (direct) {
        R.x = x, R.y = y, R.w = w_run, R.pw = pw_run, R.go = go_run, R.g = g, R.l = l;
        return FL_KN(bin_seg_any)(kind, &R, n);
    }
    /* chunks through stack buffers; a result's own buffer is scattered after the chunk */
    enum { CH = 256 };
    FL_T bx[CH], by[CH], bw[CH], bp[CH], bgo[CH], bg[CH], bl[CH];
    double sum = 0.0;
    for (fl_index i = 0; i < n; i += CH) {
        const fl_index m = n - i < CH ? n - i : CH;
        R.x = FL_KN(bin_gather)(x + i * a->xs[1], a->xs[1], m, bx);
        R.y = FL_KN(bin_gather)(y + i * a->ys[1], a->ys[1], m, by);
        R.w = w_run ? FL_KN(bin_gather)(w_run + i * a->ws[1], a->ws[1], m, bw) : NULL;
        R.pw = pw_run ? FL_KN(bin_gather)(pw_run + i * a->pws[1], a->pws[1], m, bp) : NULL;
        R.go = go_run ? FL_KN(bin_gather)(go_run + i * a->gos[1], a->gos[1], m, bgo) : NULL;
        R.g = g ? (a->gs[1] == 1 ? g + i : bg) : NULL;
        R.l = l ? (a->ls[1] == 1 ? l + i : bl) : NULL;
        sum += FL_KN(bin_seg_any)(kind, &R, m);
        if (g && a->gs[1] != 1)
            for (fl_index k = 0; k < m; k++)
                g[(i + k) * a->gs[1]] = bg[k];
        if (l && a->ls[1] != 1)
            for (fl_index k = 0; k < m; k++)
                l[(i + k) * a->ls[1]] = bl[k];
    }
    return sum;
}

static FL_BIN_INLINE FL_ATTR void FL_KN(bin_block)(const int kind, void *vctx, fl_index b, double *sums)
{
    const bin_ctx *c = (const bin_ctx *)vctx;
    const fl_bin_args *a = c->a;
    fl_index lo = b * FL_BLOCK_ELEMENTS;
    const fl_index hi = lo + FL_BLOCK_ELEMENTS < c->total ? lo + FL_BLOCK_ELEMENTS : c->total;
    double sum = 0.0;
    while (lo < hi) {
        const fl_index r = lo / a->cols, k0 = lo - r * a->cols;
        const fl_index n = a->cols - k0 < hi - lo ? a->cols - k0 : hi - lo;
        sum += FL_KN(bin_rowseg)(kind, c, r, k0, n);
        lo += n;
    }
    sums[0] = sum;
}

/* 1 when some element of a contiguous run is outside [0, 1] or NaN: each lane maps bad
 * values to NaN and adds up (values <= 1, so the sums stay finite otherwise). */
static FL_ATTR int FL_KN(bin_unit_bad)(const FL_T *p, fl_index n)
{
    const fl_index L = FL_L;
    const FL_V one = FL_OP(set1)((FL_C)1), zero = FL_OP(set1)((FL_C)0), nan = FL_OP(set1)((FL_C)NAN);
    FL_V s0 = zero, s1 = zero;
    fl_index i = 0;
    for (; i + 2 * L <= n; i += 2 * L) {
        FL_V v0 = FL_LD(p + i), v1 = FL_LD(p + i + L);
        v0 = FL_OP(select)(FL_OP(gt)(v0, one), nan, FL_OP(select)(FL_OP(lt)(v0, zero), nan, v0));
        v1 = FL_OP(select)(FL_OP(gt)(v1, one), nan, FL_OP(select)(FL_OP(lt)(v1, zero), nan, v1));
        s0 = FL_OP(add)(s0, v0);
        s1 = FL_OP(add)(s1, v1);
    }
    for (; i < n; i += L) {
        const fl_index r = n - i < L ? n - i : L;
        FL_V v = FL_LDN(p + i, r, 0);
        v = FL_OP(select)(FL_OP(gt)(v, one), nan, FL_OP(select)(FL_OP(lt)(v, zero), nan, v));
        s0 = FL_OP(add)(s0, v);
    }
    const double s = FL_OP(acc_hsum)(FL_OP(acc_add)(FL_OP(acc_zero)(), FL_OP(add)(s0, s1)));
    return s != s;
}

/* The table's block functions: one per loss (sums[0] = the block's loss sum, stored once),
 * and the domain check (sums unused; the block's flag in ctx->flags[b]). */
static FL_ATTR void FL_KN(bin_blk_bce)(void *vctx, fl_index b, double *sums) { FL_KN(bin_block)(FL_BIN_BCE, vctx, b, sums); }
static FL_ATTR void FL_KN(bin_blk_bce_logits)(void *vctx, fl_index b, double *sums)
{
    FL_KN(bin_block)(FL_BIN_BCE_LOGITS, vctx, b, sums);
}
static FL_ATTR void FL_KN(bin_blk_kl)(void *vctx, fl_index b, double *sums) { FL_KN(bin_block)(FL_BIN_KL, vctx, b, sums); }
static FL_ATTR void FL_KN(bin_blk_kl_log)(void *vctx, fl_index b, double *sums)
{
    FL_KN(bin_block)(FL_BIN_KL_LOG, vctx, b, sums);
}

static FL_ATTR void FL_KN(bin_blk_check)(void *vctx, fl_index b, double *sums)
{
    const bin_ctx *c = (const bin_ctx *)vctx;
    (void)sums;
    const fl_bin_args *a = c->a;
    fl_index lo = b * FL_BLOCK_ELEMENTS;
    const fl_index hi = lo + FL_BLOCK_ELEMENTS < c->total ? lo + FL_BLOCK_ELEMENTS : c->total;
    FL_T buf[256];
    int bad = 0;
    while (lo < hi && !bad) {
        const fl_index r = lo / a->cols, k0 = lo - r * a->cols;
        const fl_index n = a->cols - k0 < hi - lo ? a->cols - k0 : hi - lo;
        for (int which = 0; which < 2 && !bad; which++) {
            const FL_T *p = which ? (const FL_T *)a->y + r * a->ys[0] + k0 * a->ys[1]
                                  : (const FL_T *)a->x + r * a->xs[0] + k0 * a->xs[1];
            const fl_index sk = which ? a->ys[1] : a->xs[1];
            if (sk == 1) {
                bad = FL_KN(bin_unit_bad)(p, n);
                continue;
            }
            for (fl_index i = 0; i < n && !bad; i += 256) {
                const fl_index m = n - i < 256 ? n - i : 256;
                bad = FL_KN(bin_unit_bad)(FL_KN(bin_gather)(p + i * sk, sk, m, buf), m);
            }
        }
        lo += n;
    }
    c->flags[b] = (unsigned char)bad;
}

#undef FL_BIN_DENORM_MIN
#undef FL_BIN_MAX
