"""kernel_info(): what the compiled kernels will do in this process."""
from fastloss import _runtime, _threads


def kernel_info():
    """Which SIMD path runs ("avx512", "avx2" or "generic"), whether OpenMP is compiled
    in, the thread count, and what the CPU supports.

    The path is chosen at import: the widest of AVX-512 (F+DQ), AVX2+FMA and the portable
    vector path that the CPU and OS support. ``FASTLOSS_SIMD=avx2`` or
    ``FASTLOSS_SIMD=generic`` in the environment caps it.
    """
    openmp = _runtime._openmp_enabled()
    return {
        "simd": _runtime._simd_name(),
        "cpu_avx2_fma": _runtime._cpu_has_avx2_fma(),
        "cpu_avx512": _runtime._cpu_has_avx512(),
        "openmp": openmp,
        "num_threads": _threads.get_num_threads() if openmp else 1,
    }
