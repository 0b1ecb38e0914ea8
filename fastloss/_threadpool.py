"""fastloss as a threadpoolctl citizen: ``threadpoolctl.threadpool_info()`` lists fastloss
with its thread count, and ``threadpoolctl.threadpool_limits(n)`` limits fastloss's kernels
(the count of :func:`fastloss.set_num_threads`) for the duration of the context, then
restores it.

user_api: fastloss registers under its own user_api, ``"fastloss"`` (internal_api
``"fastloss"``), not ``"openmp"``. So:

* ``threadpool_limits(n)`` (every user_api, what scikit-learn and joblib users write) and
  ``threadpool_limits(n, user_api="fastloss")`` reach fastloss;
* ``threadpool_limits(n, user_api="openmp")`` does not: it limits the OpenMP runtimes
  (libgomp, libomp, libiomp, vcomp), as threadpoolctl documents that user_api.

Why not ``"openmp"``: that user_api stands for an OpenMP runtime's ICV, which
``omp_set_num_threads`` sets for the calling thread only, and code calls
``threadpool_limits(1, user_api="openmp")`` from one thread to keep its own parallel
regions from nesting. fastloss's count is process-wide (every Python thread's next call
uses it, and each kernel passes it to its parallel region as ``num_threads``, so the ICV
does not reach fastloss): a limit meant for one thread's OpenMP regions would change every
thread's fastloss calls, and two threads doing so at once would restore each other's
values out of order. Reported under "openmp", fastloss's count would also sit beside the
runtime's ICV as a second, different "OpenMP" thread count. A library with its own
process-wide count is what threadpoolctl's "blas" libraries are (OpenBLAS, BLIS), each
under its own user_api; fastloss does the same under "fastloss".

Which file: threadpoolctl matches controllers to the shared libraries loaded in the
process by file name prefix. fastloss's controller matches its compiled module
``_cross_entropy`` (``_cross_entropy.cpython-311-x86_64-linux-gnu.so`` and the like; every
``import fastloss`` loads it) and, among files of that name, only one that defines
fastloss's cross-entropy kernel symbol (on Windows, whose DLLs export no C symbols, the
module's ``PyInit__cross_entropy``). That one entry stands for all of fastloss's kernels,
which share the count.

Import cost: ``import fastloss`` never imports threadpoolctl (an optional package, not a
dependency). When threadpoolctl is already imported, fastloss registers its controller at
once; otherwise a finder at the front of ``sys.meta_path`` waits for the first import of
threadpoolctl, lets it run, registers the controller right after it, and removes itself.
Registration needs threadpoolctl >= 3.2 (``threadpoolctl.register``); older versions are
left alone.
"""
import sys
from typing import Any

from fastloss import _runtime, _threads
from fastloss._version import __version__

_registered_in = None  # the threadpoolctl module fastloss's controller is registered in


def _controller_class(base: Any) -> Any:
    class FastlossController(base):
        """fastloss's kernels: their process-wide thread count (fastloss.get_num_threads /
        set_num_threads). ``openmp`` in the info dict: whether the kernels were compiled
        with OpenMP (without it they run on one thread whatever the count)."""

        user_api = "fastloss"
        internal_api = "fastloss"
        filename_prefixes = ("_cross_entropy.",)
        check_symbols = (("PyInit__cross_entropy",) if sys.platform == "win32"
                         else ("fl_cross_entropy", "fl_cross_entropy_kernels"))

        def get_num_threads(self):
            return _threads.get_num_threads()

        def set_num_threads(self, num_threads):
            _threads.set_num_threads(num_threads)

        def get_version(self):
            return __version__

        def set_additional_attributes(self):
            self.openmp = _runtime._openmp_enabled()

    FastlossController.__module__ = __name__
    FastlossController.__qualname__ = "FastlossController"
    return FastlossController


def _register(threadpoolctl):
    """Register fastloss's controller with this threadpoolctl module (once). A failure
    warns; it never breaks threadpoolctl's import."""
    global _registered_in
    if _registered_in is threadpoolctl:
        return True
    register = getattr(threadpoolctl, "register", None)
    base = getattr(threadpoolctl, "LibController", None)
    if register is None or base is None:  # threadpoolctl < 3.2
        return False
    try:
        register(_controller_class(base))
    except Exception as exc:  # an incompatible threadpoolctl: it works, without fastloss
        import warnings

        warnings.warn(f"fastloss could not register with threadpoolctl {getattr(threadpoolctl, '__version__', '?')}: "
                      f"{exc!r}", RuntimeWarning, stacklevel=2)
        return False
    _registered_in = threadpoolctl
    return True


class _RegisterAfterExec:
    """threadpoolctl's own loader, plus fastloss's registration once the module has run."""

    def __init__(self, loader, finder):
        self._loader = loader
        self._finder = finder

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _register(module)
        self._finder.remove()

    def __getattr__(self, name):  # get_source, get_filename, get_resource_reader, ...
        return getattr(self._loader, name)


class _WaitForThreadpoolctl:
    """A meta path finder that finds nothing itself: for "threadpoolctl" it takes the spec
    the finders after it give and wraps its loader with _RegisterAfterExec."""

    def find_spec(self, name, path=None, target=None):
        if name != "threadpoolctl" or self not in sys.meta_path:
            return None
        for finder in sys.meta_path[sys.meta_path.index(self) + 1:]:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(name, path, target) if find_spec is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _RegisterAfterExec(spec.loader, self)
        return spec

    def invalidate_caches(self):
        pass

    def remove(self):
        try:
            sys.meta_path.remove(self)
        except ValueError:
            pass


def register_when_imported():
    """Register now if threadpoolctl is imported (``python -m threadpoolctl`` included, where
    it runs as ``__main__``), else when it first is."""
    module = sys.modules.get("threadpoolctl")
    if module is None:
        main = sys.modules.get("__main__")
        if getattr(getattr(main, "__spec__", None), "name", None) == "threadpoolctl":
            module = main
    if module is not None:
        _register(module)
    elif not any(isinstance(f, _WaitForThreadpoolctl) for f in sys.meta_path):
        sys.meta_path.insert(0, _WaitForThreadpoolctl())
