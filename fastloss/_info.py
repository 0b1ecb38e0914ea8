"""kernel_info(): what the compiled kernels will do in this process."""
from fastloss import _runtime, _threads


def kernel_info():
    """Which SIMD path runs ("avx512", "avx2" or "generic"), whether OpenMP is compiled
    in, the thread count, what the CPU supports, and ``"kernels"``: per kernel family the
    names of the kernels its dispatch table holds for the active path (e.g.
    ``cross_entropy_rows_f32_avx512``).

    The path is chosen at import: the widest of AVX-512 (F+DQ), AVX2+FMA and the portable
    vector path that the CPU and OS support. ``FASTLOSS_SIMD=avx2`` or
    ``FASTLOSS_SIMD=generic`` in the environment caps it.
    """
    from fastloss import _binary, _cross_entropy, _nll_loss, _regression, _softmax

    openmp = _runtime._openmp_enabled()
    kernels = {
        "cross_entropy": _cross_entropy._kernel_names(),
        "nll_loss": _nll_loss._kernel_names(),
        "softmax": _softmax._kernel_names(),
        "regression": _regression._kernel_names(),
        "binary": _binary._kernel_names(),
    }
    return {
        "simd": _runtime._simd_name(),
        "cpu_avx2_fma": _runtime._cpu_has_avx2_fma(),
        "cpu_avx512": _runtime._cpu_has_avx512(),
        "openmp": openmp,
        "num_threads": _threads.get_num_threads() if openmp else 1,
        "kernels": kernels,
    }
