/*
 * fastloss: definitions shared by every C kernel. Read this first.
 *
 * Design
 * ------
 * Three layers. fastloss/_<family>.pyx (Cython, with the shared planner fastloss/_plan.pyx)
 * checks every argument that needs Python (dtypes, shapes, options, out=, overlap), builds
 * each operand's strided view and fills one args struct; csrc/<family>.c (this layer) does everything else; fastloss/__init__.py and
 * fastloss/torch/ are the public API. The C layer never sees a Python object and never
 * raises: it returns a status code.
 *
 * The call protocol. Every family's args struct starts with an fl_call (below): the caller
 * sets its "in" part (dtype, SIMD path, thread count, reduction, upstream scalar) and the
 * operands, then makes ONE call, fl_<family>(args). That entry point
 *   1. checks what only a full pass can check: class-index targets (FL_ERR_TARGET, with
 *      call.bad_value) or binary_cross_entropy's [0, 1] domain (FL_ERR_DOMAIN, with
 *      call.bad_operand); nothing is written before this step passes;
 *   2. computes the gradient scale from the reduction, the kept weight / element count /
 *      batch size and call.grad_scale;
 *   3. runs the kernel (or handles the empty problem itself);
 *   4. stores the reduced loss in call.value exactly as torch gives it (NaN for the mean of
 *      nothing), the name of the kernel that ran in call.kernel and the thread facts in
 *      call.team / call.threads_active.
 * So each reduction formula exists once, here, and the fuzz harnesses (fuzz/) call exactly
 * what Python calls. Inputs are validated (step 1 included) before any work; the Cython
 * layer may release the GIL around the whole call.
 *
 * The dispatch table. Each family has one `static const fl_kernel` table indexed by
 * [SIMD path][dtype][variant] (variant: a layout such as rows / cols / strided, or a loss
 * kind). The SIMD path is chosen once at import (fastloss/_runtime.pyx, fl_simd_resolve)
 * and passed per call; the entry point picks its entry once (no per-row branching on the
 * path). An entry pairs a block function with its name, <family>_<variant>_<dtype>_<path>
 * (e.g. cross_entropy_rows_f32_avx512) or <family>_<variant>_<dtype> for a dtype-only
 * scalar loop (cross_entropy_strided_f32); both come from the same macro arguments
 * (FL_KERNEL_PATH), so the name recorded is that of the function that ran.
 * fl_<family>_kernels() lists a path's names for kernel_info(). FL_NDTYPES and the variant
 * counts leave room for more dtypes (bfloat16, float16) and more variants.
 *
 * The row toolkit. The vector primitives over one contiguous row (max, exp-sum) live once
 * in row_simd.h, instantiated with every kernel template (fl_instantiate.h: each SIMD path
 * x dtype; fl_instantiate_dtype.h: each dtype, for the scalar parts).
 *
 * Blocks and partial sums. Work is cut into blocks fixed by the shape alone (never by the
 * thread count). fl_parallel_run runs the blocks on up to call.nthreads OpenMP threads
 * (dynamic schedule); a block accumulates its partial sums in locals and stores them once,
 * into its own slot of a per-call buffer; the slots are added in block order afterwards. So
 * every result is bitwise identical for any number of threads.
 *
 * All index arithmetic is 64-bit (fl_index); strides are in elements, not bytes, and may be
 * negative or zero. The class-axis families see each operand as (n, c, s) with its strides
 * in one fl_view; the elementwise ones walk merged axes with one stride array per operand
 * (fl_bin_strides, fl_reg_dims). No C file in csrc/ has global or static mutable state.
 */
#ifndef FASTLOSS_H
#define FASTLOSS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

typedef int64_t fl_index;

/* An operand of the class-axis families (cross_entropy, nll_loss, softmax) seen as (n, c, s):
 * its element strides from row to row, class to class and position to position (0: broadcast,
 * or an axis the operand does not have). */
typedef struct fl_view {
    fl_index sn, sc, ss;
} fl_view;

/* Token pasting after macro expansion (kernel names from FL_TS, FL_PATH, ...). */
#define FL_XCAT_(a, b) a##b
#define FL_XCAT(a, b) FL_XCAT_(a, b)

/* FL_MUTATE=1 (setup.py: FASTLOSS_MUTATE=1) builds a deliberately wrong library for the
 * mutation check (.ci/mutation): FL_MUTATE_GRAD(v) makes a gradient value 1% larger where a
 * kernel applies it (one entry per cross-entropy row, the regression / binary kernels' last
 * partial vector). Off by default: the identity. */
#ifndef FL_MUTATE
#define FL_MUTATE 0
#endif
#if FL_MUTATE
#define FL_MUTATE_GRAD(v) ((v) * 1.01)
#else
#define FL_MUTATE_GRAD(v) (v)
#endif

/* Status codes of the entry points. */
#define FL_OK 0
#define FL_ERR_NOMEM (-1)
#define FL_ERR_TARGET (-2) /* a class index outside [0, c), != ignore_index: call.bad_value holds it (first bad in C order) */
#define FL_ERR_DOMAIN (-3) /* binary_cross_entropy: an input/target element outside [0, 1] or NaN: call.bad_operand 0 = input, 1 = target */
#define FL_ERR_DTYPE (-4)  /* no kernel for this dtype in the family's table (the planner never asks) */

/* Reductions (call.reduction). */
#define FL_REDUCE_NONE 0
#define FL_REDUCE_MEAN 1
#define FL_REDUCE_SUM 2
#define FL_REDUCE_BATCHMEAN 3 /* kl_div: the sum divided by call.batch */

/* Dtypes (call.dtype, the index of the tables' dtype axis): every floating operand of a call
 * is stored in it, except the class weights of the half dtypes (float32: exact, and read as
 * the float32 lanes they are computed in). bfloat16 and float16 are computed in float32 (the
 * families whose table holds them: half.h); a table entry without a kernel is NULL, and
 * fl_parallel_run refuses it (FL_ERR_DTYPE). */
#define FL_DTYPE_F32 0
#define FL_DTYPE_F64 1
#define FL_DTYPE_BF16 2
#define FL_DTYPE_F16 3
#define FL_NDTYPES 4

/* Class-index target kinds (cross_entropy, nll_loss). */
#define FL_TARGET_I32 0 /* class indices, int32 */
#define FL_TARGET_I64 1 /* class indices, int64 */

/* SIMD paths, chosen at run time (see dispatch.c). */
#define FL_SIMD_GENERIC 0
#define FL_SIMD_AVX2 1
#define FL_SIMD_AVX512 2
#define FL_NSIMD 3

/* x86-64 with GCC/Clang: the AVX2+FMA and AVX-512 kernels are compiled (with target
 * attributes, so the rest of the library keeps the baseline ISA) and picked at run time. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(_M_X64))
#define FL_HAVE_AVX2_BUILD 1
#else
#define FL_HAVE_AVX2_BUILD 0
#endif

/* 1 when this CPU and OS can run the AVX2+FMA (+F16C) path, resp. the AVX-512 (F, DQ, BW, VL) path. */
int fl_cpu_has_avx2_fma(void);
int fl_cpu_has_avx512(void);
/* The path to use for a request: "auto" (the widest this CPU runs), "avx512", "avx2" or
 * "generic" (anything else: -1). A request this CPU cannot run falls back to the next
 * narrower path it can. */
int fl_simd_resolve(const char *request);
const char *fl_simd_name(int path);
/* 1 when the library was compiled with OpenMP. */
int fl_openmp_enabled(void);

/* The part of every family's args struct (its first member) that is the same for all. */
typedef struct fl_call {
    /* in (set by the caller) */
    int dtype;         /* FL_DTYPE_*: the compute dtype of every floating operand */
    int simd;          /* FL_SIMD_* path chosen at import */
    int nthreads;
    int reduction;     /* FL_REDUCE_* */
    double grad_scale; /* the upstream scalar g of *_with_grad (1.0 when absent or forward) */
    double batch;      /* FL_REDUCE_BATCHMEAN's divisor (input.shape[0], or 1 for 0-d input) */
    /* out (set by the entry point) */
    double value;       /* mean/sum/batchmean: the reduced loss exactly as torch gives it (NaN for
                           mean of nothing or all-ignored, 0 (or -0.0 where torch does) for sum
                           of nothing) */
    const char *kernel; /* name of the table entry that ran (NULL if none ran, e.g. empty input) */
    int team;           /* threads in the parallel region (1 when serial) */
    int threads_active; /* distinct threads that ran at least one block */
    int64_t bad_value;  /* FL_ERR_TARGET */
    int bad_operand;    /* FL_ERR_DOMAIN */
} fl_call;

/* Work is cut into blocks of about this many elements. Blocks are fixed by the shape alone
 * (never by the thread count) and their partial sums are combined in block order, so every
 * result is bitwise identical for any number of threads. It is also the grain: an input
 * of one block runs on the calling thread. */
#define FL_BLOCK_ELEMENTS 32768

/* A block function: block b of the work described by ctx. With nsums > 0 (see
 * fl_parallel_run) it stores the block's nsums partial sums into sums[0..nsums) once, at its
 * end (accumulated in locals, in a fixed order within the block); else sums is NULL. */
typedef void (*fl_block_fn)(void *ctx, fl_index block, double *sums);

/* One entry of a dispatch table: a block function and its name. */
typedef struct fl_kernel {
    const char *name;
    fl_block_fn fn;
} fl_kernel;

/* Table entries. FL_KERNEL_PATH(cross_entropy, rows, f32, avx2, ce_blk) is
 * {"cross_entropy_rows_f32_avx2", ce_blk_rows_f32_avx2}; FL_KERNEL_DTYPE(cross_entropy,
 * strided, f32, ce_blk) is {"cross_entropy_strided_f32", ce_blk_strided_f32}. The path may be
 * a macro (FL_PATH_AVX2 below), expanded first. */
#define FL_KERNEL_PATH_(fam, var, ts, path, pfx) {#fam "_" #var "_" #ts "_" #path, pfx##_##var##_##ts##_##path}
#define FL_KERNEL_PATH(fam, var, ts, path, pfx) FL_KERNEL_PATH_(fam, var, ts, path, pfx)
#define FL_KERNEL_DTYPE(fam, var, ts, pfx) {#fam "_" #var "_" #ts, pfx##_##var##_##ts}
/* The paths a table's rows hold: where the AVX builds are absent, the generic kernels. */
#if FL_HAVE_AVX2_BUILD
#define FL_PATH_AVX2 avx2
#define FL_PATH_AVX512 avx512
#else
#define FL_PATH_AVX2 generic
#define FL_PATH_AVX512 generic
#endif

/* The dispatch table of a family with the three layouts rows, cols (per path) and strided
 * (dtype-only), [path][dtype][layout]: FL_LAYOUT_TABLE(softmax, sm_blk) names the block
 * functions sm_blk_rows_f32_generic, ..., sm_blk_strided_f64. */
enum { FL_ROWS, FL_COLS, FL_STRIDED, FL_NLAYOUTS };
#define FL_LAYOUT_ROW_(fam, pfx, ts, path)                                                   \
    {FL_KERNEL_PATH(fam, rows, ts, path, pfx), FL_KERNEL_PATH(fam, cols, ts, path, pfx),     \
     FL_KERNEL_DTYPE(fam, strided, ts, pfx)}
#define FL_LAYOUT_PATH_(fam, pfx, path)                                                      \
    {FL_LAYOUT_ROW_(fam, pfx, f32, path), FL_LAYOUT_ROW_(fam, pfx, f64, path),                \
     FL_LAYOUT_ROW_(fam, pfx, bf16, path), FL_LAYOUT_ROW_(fam, pfx, f16, path)}
#define FL_LAYOUT_TABLE(fam, pfx)                                                            \
    {FL_LAYOUT_PATH_(fam, pfx, generic), FL_LAYOUT_PATH_(fam, pfx, FL_PATH_AVX2),           \
     FL_LAYOUT_PATH_(fam, pfx, FL_PATH_AVX512)}

/* The dtype row of a call (out of range: float64's, never asked for: the planner sets it). */
static inline int fl_dtype_row(int dtype) { return dtype >= 0 && dtype < FL_NDTYPES ? dtype : FL_DTYPE_F64; }
/* Whether the class weights of a call are float32 (float32 and the half dtypes) or float64. */
static inline int fl_weight_f32(int dtype) { return dtype != FL_DTYPE_F64; }

/* The layout of an (n, c, s) call from whether the class axis, resp. the position axis, is
 * contiguous in every operand that matters: rows, else cols (s > 1), else strided. */
static inline int fl_layout(int classes_contiguous, int positions_contiguous, fl_index s)
{
    if (classes_contiguous)
        return FL_ROWS;
    return s > 1 && positions_contiguous ? FL_COLS : FL_STRIDED;
}

/* Block b of n items in blocks of `block`: [*lo, *hi). */
static inline void fl_block_range(fl_index b, fl_index block, fl_index n, fl_index *lo, fl_index *hi)
{
    *lo = b * block;
    *hi = *lo + block < n ? *lo + block : n;
}

/* A valid table row for a requested path (out of range: generic). */
static inline int fl_simd_row(int simd) { return simd >= 0 && simd < FL_NSIMD ? simd : FL_SIMD_GENERIC; }

/* Runs k->fn(ctx, b, ...) for b in [0, nblocks) on up to call->nthreads OpenMP threads
 * (dynamic schedule). With nsums > 0, each block's partial sums go to their own slot of a
 * per-call buffer and are added in block order into totals[0..nsums) (zeroed first). Records
 * k->name in call->kernel and raises call->team / call->threads_active to this region's team
 * size and number of distinct threads that ran a block. FL_OK, FL_ERR_NOMEM, or FL_ERR_DTYPE
 * for an entry without a kernel. */
int fl_parallel_run(const fl_kernel *k, void *ctx, fl_index nblocks, int nsums, double *totals, fl_call *call);

/* Per-thread scratch of a call: block functions running on a team of up to `slots` threads
 * take slot fl_thread_slot(slots) of a buffer with one slot per thread (the thread's number
 * in the region, 0 outside one: a slot is used by one thread at a time). */
int fl_thread_slot(int slots);

/* Lists the names of a table row (count entries; NULL names skipped) into names[0..max):
 * returns the number of names the row holds (may exceed max: only max are written). */
int fl_kernel_names(const fl_kernel *row, int count, const char **names, int max);

/* Sets the "out" fields of a call to their values before any work: value NaN, no kernel,
 * team 1, no active thread, no bad element. */
void fl_call_reset(fl_call *call);

/* The class-index target check of cross_entropy and nll_loss, before anything is written:
 * targets (kind FL_TARGET_I32/I64) at target[i * t_sn + j * t_ss], i < n, j < s. FL_OK when
 * each is ignore_index or in [0, c), with *kept the sum (in position order) of the kept
 * targets' weights (weight: NULL or c elements of dtype; NULL counts 1 each); else
 * FL_ERR_TARGET with call->bad_value the first bad value (C order). */
int fl_check_class_targets(int kind, const void *target, fl_index n, fl_index s, fl_index t_sn, fl_index t_ss,
                           fl_index c, fl_index ignore_index, const void *weight, int dtype, double *kept,
                           fl_call *call);

/* The gradient scale of the mean over a denominator d (kept weight, element count): g / d,
 * NaN for d == 0 (torch's gradient is NaN there; an all-ignored call writes zeros anyway). */
static inline double fl_mean_scale(double g, double d) { return d != 0.0 ? g / d : (double)NAN; }

#endif /* FASTLOSS_H */
