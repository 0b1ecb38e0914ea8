/*
 * fastloss: definitions shared by every C kernel.
 *
 * The C layer never sees a Python object and never raises: the Cython layer validates
 * shapes, dtypes, options and targets first, then calls a kernel with the GIL released.
 * All index arithmetic is 64-bit (fl_index); strides are in elements, not bytes, and may
 * be negative or zero.
 */
#ifndef FASTLOSS_H
#define FASTLOSS_H

#include <stddef.h>
#include <stdint.h>

typedef int64_t fl_index;

/* Kernel status codes. */
#define FL_OK 0
#define FL_ERR_NOMEM (-1)

/* SIMD paths, chosen at run time (see dispatch.c). */
#define FL_SIMD_GENERIC 0
#define FL_SIMD_AVX2 1
#define FL_SIMD_AVX512 2

/* x86-64 with GCC/Clang: the AVX2+FMA and AVX-512 kernels are compiled (with target
 * attributes, so the rest of the library keeps the baseline ISA) and picked at run time. */
#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(_M_X64))
#define FL_HAVE_AVX2_BUILD 1
#else
#define FL_HAVE_AVX2_BUILD 0
#endif

/* 1 when this CPU and OS can run the AVX2+FMA path, resp. the AVX-512 (F, DQ) path. */
int fl_cpu_has_avx2_fma(void);
int fl_cpu_has_avx512(void);
/* The path to use for a request: "auto" (the widest this CPU runs), "avx512", "avx2" or
 * "generic" (anything else: -1). A request this CPU cannot run falls back to the next
 * narrower path it can. */
int fl_simd_resolve(const char *request);
const char *fl_simd_name(int path);
/* 1 when the library was compiled with OpenMP. */
int fl_openmp_enabled(void);

/* Work is cut into blocks of about this many elements. Blocks are fixed by the shape alone
 * (never by the thread count) and their partial sums are combined in block order, so every
 * result is bitwise identical for any number of threads. It is also the grain: an input
 * of one block runs on the calling thread. */
#define FL_BLOCK_ELEMENTS 32768

/* Run fn(ctx, b) for b in [0, nblocks) on up to nthreads OpenMP threads (dynamic schedule);
 * returns the number of threads the region really used. */
typedef void (*fl_block_fn)(void *ctx, fl_index block);
int fl_parallel_blocks(fl_block_fn fn, void *ctx, fl_index nblocks, int nthreads);

/* The reduction every loss uses: fn(ctx, b, sums) adds block b's nsums partial sums (in
 * double, in a fixed order within the block) into sums[0..nsums), zeroed before; the blocks'
 * partials are then combined in block order into totals[0..nsums). So the totals depend on
 * the blocks (fixed by the shape) but never on the thread count. Returns the number of
 * threads used, or FL_ERR_NOMEM. */
typedef void (*fl_sum_block_fn)(void *ctx, fl_index block, double *sums);
int fl_parallel_sum(fl_sum_block_fn fn, void *ctx, fl_index nblocks, int nthreads, int nsums, double *totals);

#endif /* FASTLOSS_H */
