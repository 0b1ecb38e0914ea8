"""The process-wide thread count of fastloss's kernels.

The count lives here, in Python, and every call passes it to its kernel, whose OpenMP
region takes it as ``num_threads``. So ``set_num_threads`` applies at once to calls from
every Python thread (``omp_set_num_threads`` would only set the calling thread's value), and
the C code holds no mutable global state.

Fork: libgomp's thread pool does not survive ``fork()``; a child that runs a parallel region
after its parent did hangs. A forked child therefore runs single-threaded, and asking it for
more threads warns and keeps 1 (the same rule torch follows for its own pool).
"""
import os
import threading
import warnings

_lock = threading.Lock()
_in_forked_child = False


def _default_num_threads():
    for var in ("FASTLOSS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "").split(",")[0].strip()
        if value:
            try:
                n = int(value)
            except ValueError:
                warnings.warn(f"{var}={value!r} is not an integer; ignored", RuntimeWarning, stacklevel=3)
                continue
            if n >= 1:
                return n
            warnings.warn(f"{var}={value!r} is not a positive integer; ignored", RuntimeWarning, stacklevel=3)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


_num_threads = _default_num_threads()


def set_num_threads(n):
    """Set the number of threads every fastloss kernel may use (process-wide, all Python
    threads, effective for each call that starts after it returns)."""
    global _num_threads
    if isinstance(n, bool) or not isinstance(n, int):
        try:
            import numpy as np

            if not isinstance(n, np.integer):
                raise TypeError
        except TypeError:
            raise TypeError(f"the number of threads must be an int, got {type(n).__name__}") from None
    n = int(n)
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    with _lock:
        if _in_forked_child and n > 1:
            warnings.warn("fastloss runs single-threaded in a forked child: the OpenMP thread pool "
                          "does not survive fork()", RuntimeWarning, stacklevel=2)
            n = 1
        _num_threads = n


def get_num_threads():
    """The number of threads fastloss kernels may use."""
    return _num_threads


def _after_fork_in_child():
    global _lock, _num_threads, _in_forked_child
    # A thread of the parent may have held the lock at fork(); it does not exist here, so
    # the child gets a fresh lock (else its first set_num_threads would wait forever).
    _lock = threading.Lock()
    _in_forked_child = True
    _num_threads = 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
