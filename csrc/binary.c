/*
 * Binary cross-entropy (probabilities and logits) and Kullback-Leibler kernels: the template
 * binary_simd.h instantiated for float32 / float64 / bfloat16 / float16 on the generic, AVX2
 * and AVX-512 paths,
 * their dispatch table, and the entry point fl_binary (domain check, scale, kernel,
 * reduction). Formulas and argument conventions: binary.h.
 */
#include "binary.h"

#include <math.h>
#include <stdlib.h>

#include "simd_avx2.h"
#include "simd_avx512.h"
#include "simd_generic.h"

#if defined(__GNUC__) || defined(__clang__)
#define FL_BIN_INLINE inline __attribute__((always_inline))
#else
#define FL_BIN_INLINE inline
#endif

typedef struct {
    const fl_bin_args *a;
    fl_index total;       /* rows * cols */
    double scale;         /* call.grad_scale over the reduction's denominator */
    unsigned char *flags; /* the domain check: a flag per block */
} bin_ctx;

#define FL_HALF /* both templates take bfloat16 and float16 */
#define FL_TEMPLATE "binary_dtype.h"
#include "fl_instantiate_dtype.h"

#define FL_TEMPLATE "binary_simd.h"
#include "fl_instantiate.h"

/* ---- the dispatch table: [path][dtype][kind, then the check] ------------------------ */

enum { BIN_CHECK = 4, BIN_NVARIANTS };

#define BIN_DTYPE_ROW(ts, path)                                                                \
    {FL_KERNEL_PATH(binary, bce, ts, path, bin_blk), FL_KERNEL_PATH(binary, bce_logits, ts, path, bin_blk), \
     FL_KERNEL_PATH(binary, kl, ts, path, bin_blk), FL_KERNEL_PATH(binary, kl_log, ts, path, bin_blk),      \
     FL_KERNEL_PATH(binary, check, ts, path, bin_blk)}
#define BIN_PATH_ROW(path) \
    {BIN_DTYPE_ROW(f32, path), BIN_DTYPE_ROW(f64, path), BIN_DTYPE_ROW(bf16, path), BIN_DTYPE_ROW(f16, path)}

/* indexed by FL_BIN_BCE, FL_BIN_BCE_LOGITS, FL_BIN_KL, FL_BIN_KL_LOG, BIN_CHECK */
static const fl_kernel BIN_KERNELS[FL_NSIMD][FL_NDTYPES][BIN_NVARIANTS] = {
    BIN_PATH_ROW(generic), BIN_PATH_ROW(FL_PATH_AVX2), BIN_PATH_ROW(FL_PATH_AVX512)};

int fl_binary_kernels(int simd, const char **names, int max)
{
    return fl_kernel_names(&BIN_KERNELS[fl_simd_row(simd)][0][0], FL_NDTYPES * BIN_NVARIANTS, names, max);
}

/* ---- the entry point ---------------------------------------------------------------- */

/* FL_BIN_BCE's domain check: the vector pass flags blocks, then the first flagged block is
 * scanned for the first bad element. FL_OK, FL_ERR_DOMAIN or FL_ERR_NOMEM. */
typedef fl_index (*bin_find_bad_fn)(const fl_bin_args *, const unsigned char *, fl_index, fl_index, int *);
static const bin_find_bad_fn BIN_FIND_BAD[FL_NDTYPES] = {bin_find_bad_f32, bin_find_bad_f64, bin_find_bad_bf16,
                                                         bin_find_bad_f16};

static int bin_check_domain(bin_ctx *ctx, const fl_kernel *row, int dtype_row, fl_call *call)
{
    const fl_bin_args *a = ctx->a;
    const fl_index nblocks = (ctx->total + FL_BLOCK_ELEMENTS - 1) / FL_BLOCK_ELEMENTS;
    ctx->flags = (unsigned char *)malloc((size_t)nblocks);
    if (ctx->flags == NULL)
        return FL_ERR_NOMEM;
    int st = fl_parallel_run(&row[BIN_CHECK], ctx, nblocks, 0, NULL, call);
    int which = 0;
    if (st == FL_OK) {
        const fl_index bad = BIN_FIND_BAD[dtype_row](a, ctx->flags, nblocks, ctx->total, &which);
        if (bad >= 0) {
            call->bad_operand = which;
            st = FL_ERR_DOMAIN;
        }
    }
    free(ctx->flags);
    ctx->flags = NULL;
    return st;
}

int fl_binary(fl_call *call)
{
    fl_bin_args *a = (fl_bin_args *)call; /* call is its first member */
    fl_call_reset(call);
    bin_ctx ctx;
    ctx.a = a;
    ctx.total = a->rows * a->cols;
    ctx.flags = NULL;
    const int kind = a->kind >= 0 && a->kind < BIN_CHECK ? a->kind : FL_BIN_KL_LOG;
    const int dt = fl_dtype_row(call->dtype);
    const fl_kernel *row = BIN_KERNELS[fl_simd_row(call->simd)][dt];
    if (kind == FL_BIN_BCE && ctx.total > 0) {
        const int st = bin_check_domain(&ctx, row, dt, call);
        if (st != FL_OK)
            return st;
    }
    double denom = 1.0;
    if (call->reduction == FL_REDUCE_MEAN)
        denom = (double)ctx.total;
    else if (call->reduction == FL_REDUCE_BATCHMEAN)
        denom = call->batch;
    ctx.scale = call->reduction != FL_REDUCE_NONE ? call->grad_scale / denom : call->grad_scale;
    double sum = 0.0;
    if (ctx.total > 0) {
        if (fl_parallel_run(&row[kind], &ctx, (ctx.total + FL_BLOCK_ELEMENTS - 1) / FL_BLOCK_ELEMENTS, 1, &sum,
                            call) != FL_OK)
            return FL_ERR_NOMEM;
    }
    if (call->reduction != FL_REDUCE_NONE)
        call->value = sum / denom;
    return FL_OK;
}
