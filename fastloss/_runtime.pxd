# The SIMD path every kernel call uses, held in one place (fastloss/_runtime.pyx).
cdef int simd_path() noexcept nogil
