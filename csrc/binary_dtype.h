/*
 * Template: the dtype-only part of binary.c, instantiated through fl_instantiate_dtype.h
 * (FL_T stored, FL_C computed, FL_TS, FL_DT, FL_GET).
 *
 *   bin_find_bad_<TS>  after the vector check flagged blocks: the row-major position of the
 *                      first element outside [0, 1] (or NaN) in the first flagged block,
 *                      scanned in scalar code, with *which = 0 for x, 1 for y; -1 if none.
 */
static fl_index FL_DT(bin_find_bad)(const fl_bin_args *a, const unsigned char *flags, fl_index nblocks,
                                    fl_index total, int *which)
{
    for (fl_index b = 0; b < nblocks; b++) {
        if (!flags[b])
            continue;
        const fl_index hi = (b + 1) * FL_BLOCK_ELEMENTS < total ? (b + 1) * FL_BLOCK_ELEMENTS : total;
        for (fl_index i = b * FL_BLOCK_ELEMENTS; i < hi; i++) {
            const fl_index r = i / a->cols, k = i - r * a->cols;
            const FL_C xv = FL_GET(((const FL_T *)a->x)[r * a->xs[0] + k * a->xs[1]]);
            const FL_C yv = FL_GET(((const FL_T *)a->y)[r * a->ys[0] + k * a->ys[1]]);
            if (!(xv >= 0 && xv <= 1)) {
                *which = 0;
                return i;
            }
            if (!(yv >= 0 && yv <= 1)) {
                *which = 1;
                return i;
            }
        }
        return -1;
    }
    return -1;
}
