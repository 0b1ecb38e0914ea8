# cython: language_level=3
"""Runtime choices shared by every loss module: the SIMD path (chosen once at import from the
CPU and FASTLOSS_SIMD; every kernel call reads it through ``simd_path()``) and the facts
``kernel_info()`` reports. The thread count lives in ``fastloss/_threads.py``."""
import os
import warnings

from fastloss._csrc cimport (FL_SIMD_GENERIC, fl_cpu_has_avx2_fma, fl_cpu_has_avx512, fl_openmp_enabled,
                             fl_simd_name, fl_simd_resolve)

cdef int _simd_path = FL_SIMD_GENERIC


cdef int simd_path() noexcept nogil:
    return _simd_path


def _use_simd(str request):
    """Select the SIMD path ("auto", "avx512", "avx2" or "generic"); returns the name of the
    path in use. A request this CPU cannot run falls back to the next narrower path."""
    global _simd_path
    cdef int path = fl_simd_resolve(request.encode())
    if path < 0:
        raise ValueError(f"unknown SIMD path {request!r} "
                         "(expected 'auto', 'avx512', 'avx2' or 'generic')")
    _simd_path = path
    return fl_simd_name(path).decode()


def _simd_name():
    return fl_simd_name(_simd_path).decode()


def _openmp_enabled():
    return bool(fl_openmp_enabled())


def _cpu_has_avx2_fma():
    return bool(fl_cpu_has_avx2_fma())


def _cpu_has_avx512():
    return bool(fl_cpu_has_avx512())


_request = os.environ.get("FASTLOSS_SIMD", "auto").strip().lower() or "auto"
try:
    _use_simd(_request)
except ValueError as exc:
    warnings.warn(f"FASTLOSS_SIMD: {exc}; using 'auto'", RuntimeWarning, stacklevel=2)
    _use_simd("auto")
del _request
