"""fastloss: fused CPU loss functions with torch.nn.functional's semantics.

NumPy in, NumPy out; the kernels are C (csrc/), called through Cython with the GIL
released. ``fastloss.reference`` holds the slow, readable NumPy twin of every function.

An import uses one copy of the package whole: this directory when it has compiled modules,
else (a source checkout that shadows an installed fastloss) the installed copy built from
the same sources, or an ImportError that says what to run; see ``fastloss/_sources.py``.
"""
import importlib.machinery as _machinery
import os as _os
import sys as _sys


def _other_copy():
    """None when this directory is the copy to import (it holds compiled modules: an
    installed package, or a checkout built in place), else the directory of the installed
    fastloss built from this checkout's very sources, to be imported whole instead; an
    ImportError saying what to run when there is none. The rules: ``fastloss/_sources.py``,
    loaded by its path (and only on this path) so that no module of this copy is registered."""
    here = _os.path.dirname(_os.path.abspath(__file__))
    suffixes = tuple(_machinery.EXTENSION_SUFFIXES)
    try:
        if any(n.startswith("_cross_entropy.") and n.endswith(suffixes) for n in _os.listdir(here)):
            return None
    except OSError:
        pass
    import importlib.util

    spec = importlib.util.spec_from_file_location("_fastloss_sources", _os.path.join(here, "_sources.py"))
    assert spec is not None and spec.loader is not None
    sources = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sources)
    finders = [f for f in _sys.meta_path if f is not _machinery.PathFinder]  # editable installs' ones
    return sources.choose_copy(here, _sys.path, suffixes, finders)


def _import_whole(directory):
    """Import the fastloss package at ``directory`` (its __init__, and through its __path__
    every submodule) and make it ``sys.modules["fastloss"]``: the import statement that is
    running this file then returns that module, and this one is dropped."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        __name__, _os.path.join(directory, "__init__.py"), submodule_search_locations=[directory])
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    _sys.modules[__name__] = module
    spec.loader.exec_module(module)


_other = _other_copy()
if _other is not None:
    _import_whole(_other)
else:
    from fastloss._version import __version__
    from fastloss._threads import get_num_threads, set_num_threads
    from fastloss._cross_entropy import (
        MARGIN_COSINE_EPS,
        cross_entropy,
        cross_entropy_with_grad,
        margin_cross_entropy,
        margin_cross_entropy_with_grad,
    )
    from fastloss._nll_loss import nll_loss, nll_loss_with_grad
    from fastloss._binary import (
        binary_cross_entropy,
        binary_cross_entropy_with_grad,
        binary_cross_entropy_with_logits,
        binary_cross_entropy_with_logits_with_grad,
        kl_div,
        kl_div_with_grad,
    )
    from fastloss._softmax import log_softmax, log_softmax_backward, softmax, softmax_backward
    from fastloss._regression import (
        huber_loss,
        huber_loss_with_grad,
        l1_loss,
        l1_loss_with_grad,
        mse_loss,
        mse_loss_with_grad,
        smooth_l1_loss,
        smooth_l1_loss_with_grad,
    )
    from fastloss._info import kernel_info
    from fastloss import reference
    from fastloss import _threadpool

    _threadpool.register_when_imported()

__all__ = [
    "MARGIN_COSINE_EPS",
    "__version__",
    "binary_cross_entropy",
    "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits",
    "binary_cross_entropy_with_logits_with_grad",
    "cross_entropy",
    "cross_entropy_with_grad",
    "get_num_threads",
    "huber_loss",
    "huber_loss_with_grad",
    "kernel_info",
    "kl_div",
    "kl_div_with_grad",
    "l1_loss",
    "l1_loss_with_grad",
    "log_softmax",
    "log_softmax_backward",
    "margin_cross_entropy",
    "margin_cross_entropy_with_grad",
    "mse_loss",
    "mse_loss_with_grad",
    "nll_loss",
    "nll_loss_with_grad",
    "reference",
    "set_num_threads",
    "smooth_l1_loss",
    "smooth_l1_loss_with_grad",
    "softmax",
    "softmax_backward",
]
