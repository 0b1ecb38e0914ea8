"""kernel_info(): what the compiled kernels will do in this process."""
from fastloss import _cross_entropy, _threads


def kernel_info():
    """Which SIMD path runs ("avx2" or "generic"), whether OpenMP is compiled in, the
    thread count, and what the CPU supports.

    The path is chosen at import: AVX2+FMA when the CPU and OS support it, unless the
    environment variable ``FASTLOSS_SIMD=generic`` forces the portable path.
    """
    openmp = _cross_entropy._openmp_enabled()
    return {
        "simd": _cross_entropy._simd_name(),
        "cpu_avx2_fma": _cross_entropy._cpu_has_avx2_fma(),
        "openmp": openmp,
        "num_threads": _threads.get_num_threads() if openmp else 1,
    }
