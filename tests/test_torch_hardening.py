"""Hardening of fastloss.torch (forward and backward through autograd): concurrency, fork,
leaks, determinism. The NumPy layer's own hardening is test_hardening.py; this file reuses its
subprocess runner, thread helpers and the ``fastloss._plan.ran`` caller.

Every function of ``fastloss.torch`` (the 11 of ``FUNCTIONS``) runs through
``run(case)``: the call with a leaf input that requires grad, then
``torch.autograd.grad`` of the output with a fixed upstream gradient; ``run`` asserts that the
call took the kernels' path (the output's ``grad_fn`` belongs to one of fastloss.torch's
autograd Functions, not torch's own implementation). The loss modules share ``run`` (the
same call through a shared module instance). The "big" inputs are 256 x 1000 (nll_loss:
32768 x 10), 8 blocks of FL_BLOCK_ELEMENTS, so the kernels' parallel regions really run on
several threads (checked through ``fastloss._plan.ran`` on the same arrays).

* Determinism: fastloss thread counts 1, 2 and 4 and repeated calls (functional and module)
  give the same bytes of the loss and of the input gradient, for every reduction (softmax:
  two dims), float32 and float64; no argument is modified.
* Concurrency: 8 Python threads run forward + backward on the same leaf tensors (and the
  same module instance) and get the single-threaded bytes, with 2 fastloss threads and
  while another thread toggles ``fastloss.set_num_threads`` between 1, 2 and 3.
* Fork: after the parent ran torch's and fastloss's parallel regions (2 threads each), a
  child made by ``os.fork()``, a multiprocessing "fork" pool and a torch DataLoader with
  2 "fork" workers (losses computed in ``collate_fn``) finish within the timeout with the
  parent's bytes. The forked children do not call ``torch.set_num_threads(1)``: the fast
  path starts no torch parallel op (torch's own parallel ops would hang there).
* Leaks: RSS, the malloc heap in use (mallinfo2) and Python's allocated blocks stay flat
  over 10,000 iterations per function (100,000 with ``-m slow``) of forward + backward,
  no-grad calls, module calls and calls torch rejects (IndexError, RuntimeError,
  NotImplementedError, ValueError, after the kernels' own check rejected them where the
  call reaches them), in a fresh subprocess.

torch comes from conftest.py's ``torch`` fixture (a skip without torch, a failure with CI
set); the case builders live in ``TORCH_SPECS_SRC``, shared verbatim with the subprocesses.
"""
import threading
import time

import pytest

import fastloss
from test_hardening import (  # noqa: F401 (restore_threads is a fixture)
    FORK_CHILDREN_SRC,
    LEAK_MEASURE_SRC,
    N_WORKERS,
    OPENMP,
    _run_workers,
    needs_openmp,
    restore_threads,
    run_script,
    stats_call,
)

# ----------------------------------------------------------------------------------------------
# The functions, their fixed inputs and the fwd+bwd runner, shared with the subprocess scripts.
# ----------------------------------------------------------------------------------------------
TORCH_SPECS_SRC = r'''
import hashlib
import zlib

import numpy as np
import torch

import fastloss
import fastloss.torch as flt
from fastloss.torch import _functions

#: Every function of fastloss.torch.
FUNCTIONS = ("cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
             "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "log_softmax", "softmax")
NORMALIZE = ("log_softmax", "softmax")
MODULE_OF = {"cross_entropy": "CrossEntropyLoss", "nll_loss": "NLLLoss", "binary_cross_entropy": "BCELoss",
             "binary_cross_entropy_with_logits": "BCEWithLogitsLoss", "mse_loss": "MSELoss",
             "l1_loss": "L1Loss", "smooth_l1_loss": "SmoothL1Loss", "huber_loss": "HuberLoss",
             "kl_div": "KLDivLoss"}
#: The autograd Functions of the kernels' path (torch's own implementation has other grad_fns).
FAST = (_functions.CrossEntropy, _functions.Loss, _functions.LogSoftmax, _functions.Softmax)


def variants(name):
    """The reductions of a loss; the dims of log_softmax / softmax."""
    if name in NORMALIZE:
        return ("dim=-1", "dim=0")
    if name == "kl_div":
        return ("mean", "batchmean", "sum", "none")
    return ("mean", "sum", "none")


class Case:
    """A fixed call: ``fn(x, *others, **kwargs)``, x a leaf that requires grad; ``upstream``
    the gradient of the output for autograd.grad (None for a scalar loss); ``module`` the
    same call as a loss module instance (None for log_softmax / softmax)."""

    def __init__(self, name, variant, x, others, kwargs, upstream):
        self.name, self.variant = name, variant
        self.x, self.others, self.kwargs, self.upstream = x, others, kwargs, upstream
        self.module = getattr(flt, MODULE_OF[name])(**kwargs) if name in MODULE_OF else None

    def tensors(self):
        """Every tensor of the call (to check that none is modified)."""
        ts = [self.x, *self.others, *(v for v in self.kwargs.values() if isinstance(v, torch.Tensor))]
        return ts + ([self.upstream] if self.upstream is not None else [])


def make_case(name, dtype, variant, size="big"):
    """"big": 256 x 1000 (nll_loss: 32768 x 10), 8 blocks of FL_BLOCK_ELEMENTS (nll_loss: 4
    blocks of 8192 positions); "two_blocks": 40 x 1000 (nll_loss: 8200 x 5); "small": 6 x 5."""
    rng = np.random.default_rng(zlib.crc32(f"torch-{name}-{dtype}-{variant}-{size}".encode()))
    dt = np.dtype(dtype)
    n, c = {"big": (32768, 10) if name == "nll_loss" else (256, 1000),
            "two_blocks": (8200, 5) if name == "nll_loss" else (40, 1000),
            "small": (6, 5)}[size]

    def tensor(a):
        return torch.from_numpy(np.ascontiguousarray(a, dtype=dt))

    def normal(scale=1.0):
        return tensor(scale * rng.standard_normal((n, c)))

    def unit():
        return tensor(rng.uniform(0.02, 0.98, (n, c)))

    def per_class():
        return tensor(rng.uniform(0.5, 2.0, c))

    others, kw = (), {}
    if name in NORMALIZE:
        x = normal(3.0)
        kw["dim"] = int(variant.split("=")[1])
    else:
        kw["reduction"] = variant
        if name in ("cross_entropy", "nll_loss"):
            t = rng.integers(0, c, n)
            t[::9 if name == "cross_entropy" else 7] = -100
            x, others = normal(3.0 if name == "cross_entropy" else 1.0), (torch.from_numpy(t),)
            kw["weight"] = per_class()
            if name == "cross_entropy":
                kw["label_smoothing"] = 0.05
        elif name == "binary_cross_entropy":
            x, others = unit(), (unit(),)
            kw["weight"] = per_class()
        elif name == "binary_cross_entropy_with_logits":
            x, others = normal(3.0), (unit(),)
            kw["weight"], kw["pos_weight"] = per_class(), per_class()
        elif name == "kl_div":
            x, others = normal(), (unit(),)
        else:
            x, others = normal(), (normal(),)
            if name == "smooth_l1_loss":
                kw["beta"] = 0.5
            elif name == "huber_loss":
                kw["delta"] = 0.5
    upstream = None
    if variant == "none" or name in NORMALIZE:
        out_shape = (n,) if name in ("cross_entropy", "nll_loss") else (n, c)
        upstream = tensor(rng.standard_normal(out_shape))
    return Case(name, variant, x.requires_grad_(), others, kw, upstream)


def run(case, use_module=False):
    """Forward through fastloss.torch (the function, or the module instance), then
    autograd.grad with respect to the input: (output, input gradient), both detached."""
    if use_module:
        out = case.module(case.x, *case.others)
    else:
        out = getattr(flt, case.name)(case.x, *case.others, **case.kwargs)
    fwd = getattr(out.grad_fn, "_forward_cls", None)
    if fwd not in FAST:
        raise AssertionError(f"{case.name} {case.variant}: torch's implementation ran ({out.grad_fn})")
    (grad,) = torch.autograd.grad(out, case.x, case.upstream)
    return out.detach(), grad


def result_bytes(*tensors):
    """The exact bytes, dtype and shape of tensors."""
    return b"|".join(f"{t.dtype}{tuple(t.shape)}".encode() + t.detach().numpy().tobytes() for t in tensors)


def digest(*tensors):
    return hashlib.sha256(result_bytes(*tensors)).hexdigest()


def error_calls(name):
    """(label, thunk, exception type) of calls torch rejects, the input requiring grad. Where
    marked "kernel", the kernels' own check rejects the call first and torch's function then
    raises torch's error."""
    x = torch.linspace(-1.0, 1.0, 30).reshape(6, 5).requires_grad_()
    p = torch.linspace(0.05, 0.95, 30).reshape(6, 5)
    fn = getattr(flt, name)
    if name in NORMALIZE:
        return [("dim out of range", lambda: fn(x, dim=2), IndexError),
                ("int64 input", lambda: fn(torch.zeros(6, 5, dtype=torch.int64), dim=1), NotImplementedError),
                ("int64 dtype=", lambda: fn(x, dim=1, dtype=torch.int64), NotImplementedError)]
    if name in ("cross_entropy", "nll_loss"):
        calls = [("kernel: target 7", lambda: fn(x, torch.tensor([0, 1, 2, 3, 4, 7])), IndexError),
                 ("kernel: target -3, none", lambda: fn(x, torch.tensor([0, 1, 2, 3, 4, -3]), reduction="none"),
                  IndexError),
                 ("float target", lambda: fn(x, torch.zeros(6)), RuntimeError),
                 ("kernel: batch size", lambda: fn(x, torch.zeros(5, dtype=torch.int64)), ValueError)]
        if name == "cross_entropy":
            calls.append(("int32 target", lambda: fn(x, torch.zeros(6, dtype=torch.int32)), RuntimeError))
        return calls
    pg = p.clone().requires_grad_()
    if name == "binary_cross_entropy":
        return [("kernel: input outside [0, 1]", lambda: fn(x, p), RuntimeError),
                ("target shape", lambda: fn(pg, p[:, :4]), ValueError),
                ("float64 target", lambda: fn(pg, p.double()), RuntimeError)]
    calls = [("target shape", lambda: fn(x, p[:, :4]),
              ValueError if name == "binary_cross_entropy_with_logits" else RuntimeError),
             ("kernel: reduction", lambda: fn(x, p, reduction="bad"), ValueError)]
    if name == "binary_cross_entropy_with_logits":
        calls.append(("int64 target", lambda: fn(x, torch.zeros(6, 5, dtype=torch.int64)), RuntimeError))
    elif name == "smooth_l1_loss":
        calls.append(("kernel: beta < 0", lambda: fn(x, p, beta=-1.0), RuntimeError))
    elif name == "huber_loss":
        calls.append(("kernel: delta < 0", lambda: fn(x, p, delta=-1.0), RuntimeError))
    return calls
'''

FUNCTIONS = ("cross_entropy", "nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
             "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "kl_div", "log_softmax", "softmax")
# kl_div(reduction="mean") warns as torch does; the tests below call it on purpose
KL_MEAN = "ignore:reduction. 'mean' divides:UserWarning"


@pytest.fixture(scope="module")
def specs(torch):
    """TORCH_SPECS_SRC's namespace (it imports torch and fastloss.torch)."""
    ns = {}
    exec(compile(TORCH_SPECS_SRC, "<TORCH_SPECS_SRC>", "exec"), ns)
    return ns


def test_functions_cover_fastloss_torch(specs):
    import fastloss.torch as flt

    margin = {"margin_cross_entropy", "AAMSoftmax", "AMSoftmax"}  # no torch namesake: test_margin_cross_entropy.py
    public = {n for n in flt.__all__ if n[0].islower() and n not in ("functional", "empty_cache") and n not in margin}
    assert set(specs["FUNCTIONS"]) == public == set(FUNCTIONS) and len(FUNCTIONS) == 11
    modules = {n for n in flt.__all__ if n[0].isupper() and n not in margin}
    assert set(specs["MODULE_OF"].values()) == modules and len(modules) == 9


def _numpy_twins(case, output):
    """The NumPy layer's calls the fast path makes for ``case`` (forward, then backward), as
    (name, args, kwargs) for test_hardening's ``stats_call``."""
    x = case.x.detach().numpy()
    kw = {k: (v.numpy() if hasattr(v, "numpy") else v) for k, v in case.kwargs.items()}
    if case.name in ("log_softmax", "softmax"):
        axis = kw.pop("dim")
        return [(case.name, (x,), {"axis": axis}),
                (case.name + "_backward", (case.upstream.numpy(), output.numpy()), {"axis": axis})]
    args = (x, case.others[0].numpy())
    grad_output = 1.0 if case.upstream is None else case.upstream.numpy()
    return [(case.name, args, kw), (case.name + "_with_grad", args, dict(kw, grad_output=grad_output))]


@needs_openmp
@pytest.mark.filterwarnings(KL_MEAN)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_big_inputs_run_the_parallel_path(name, specs, restore_threads):
    """The inputs of the determinism and concurrency tests go through fastloss's autograd
    Functions (``run`` checks the grad_fn) and their shapes make the kernels' forward and
    backward regions run on 2 threads when 2 are set (``fastloss._plan.ran`` on
    the same arrays and options), and on 1 when 1 is."""
    fastloss.set_num_threads(2)
    for variant in (specs["variants"](name)[0], specs["variants"](name)[-1]):
        case = specs["make_case"](name, "float32", variant)
        out, _ = specs["run"](case)
        for n in (2, 1):
            fastloss.set_num_threads(n)
            used = [stats_call(twin, args, kw)[1]["threads_used"] for twin, args, kw in _numpy_twins(case, out)]
            assert used == [n, n], (variant, n, used)
        fastloss.set_num_threads(2)


# ----------------------------------------------------------------------------------------------
# determinism
# ----------------------------------------------------------------------------------------------

@needs_openmp
@pytest.mark.filterwarnings(KL_MEAN)
@pytest.mark.parametrize("name", FUNCTIONS)
def test_bitwise_identical_across_thread_counts(name, specs, restore_threads):
    """Loss and input gradient through fastloss.torch: fastloss thread counts 1, 2 and 4, a
    repeated call and the module give the same bytes, for every reduction (softmax: dim -1
    and 0), float32 and float64; no argument is modified."""
    make_case, run, result_bytes = specs["make_case"], specs["run"], specs["result_bytes"]
    for dtype in ("float32", "float64"):
        for variant in specs["variants"](name):
            case = make_case(name, dtype, variant)
            before = [t.numpy().tobytes() for t in (t.detach() for t in case.tensors())]
            runs = {}
            for n in (1, 2, 4):
                fastloss.set_num_threads(n)
                runs[n] = result_bytes(*run(case))
            where = f"{name} {dtype} {variant}"
            assert runs[2] == runs[1], f"{where}: 2 threads differ from 1"
            assert runs[4] == runs[1], f"{where}: 4 threads differ from 1"
            assert result_bytes(*run(case)) == runs[1], f"{where}: repeated call differs"
            if case.module is not None:
                fastloss.set_num_threads(2)
                assert result_bytes(*run(case, use_module=True)) == runs[1], f"{where}: the module differs"
            assert [t.detach().numpy().tobytes() for t in case.tensors()] == before, f"{where}: an input changed"
            assert case.x.grad is None


# ----------------------------------------------------------------------------------------------
# concurrency
# ----------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings(KL_MEAN)
@pytest.mark.parametrize("fastloss_threads", [2, "toggled"], ids=["2-threads", "toggled"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_concurrent_threads_get_single_threaded_bytes(name, fastloss_threads, specs, restore_threads):
    """8 Python threads (barrier start) run forward + autograd.grad on the same leaf tensors,
    in turn through the function and through one shared module instance, for a reduced and
    an unreduced case (softmax: dim -1 and 0): every call gives the bytes of a
    single-threaded run. "toggled": another thread keeps switching fastloss.set_num_threads
    between 1, 2 and 3 meanwhile (at least 30 switches while the workers run)."""
    make_case, run, result_bytes = specs["make_case"], specs["run"], specs["result_bytes"]
    dtype = "float32" if FUNCTIONS.index(name) % 2 == 0 else "float64"
    cases = [make_case(name, dtype, v) for v in (specs["variants"](name)[0], specs["variants"](name)[-1])]
    before = [[t.detach().numpy().tobytes() for t in c.tensors()] for c in cases]
    fastloss.set_num_threads(1)
    expected = [result_bytes(*run(c)) for c in cases]
    toggled = fastloss_threads == "toggled"
    fastloss.set_num_threads(2)
    rounds = 12
    barrier = threading.Barrier(N_WORKERS + toggled)
    stop = threading.Event()
    mismatches, calls, toggles = [], [0], [0]

    def worker(i):
        barrier.wait()
        r = 0
        while r < rounds or (toggled and toggles[0] < 30 and r < 500):
            k = (i + r) % len(cases)
            use_module = cases[k].module is not None and (i + r // 2) % 2 == 1
            if result_bytes(*run(cases[k], use_module)) != expected[k]:
                mismatches.append((i, r, k, use_module))
            calls[0] += 1
            r += 1

    def toggler():
        barrier.wait()
        n = 1
        while not stop.is_set():
            fastloss.set_num_threads(n)
            toggles[0] += 1
            n = n % 3 + 1
            time.sleep(0.001)

    errors = _run_workers(worker, toggler if toggled else None, stop)
    assert errors == []
    assert mismatches == [], "concurrent results differ from the single-threaded bytes"
    assert calls[0] >= N_WORKERS * rounds
    if toggled:
        assert toggles[0] >= 30
    assert [[t.detach().numpy().tobytes() for t in c.tensors()] for c in cases] == before
    assert all(c.x.grad is None for c in cases)


# ----------------------------------------------------------------------------------------------
# fork: os.fork, a multiprocessing fork pool, a DataLoader with fork workers
# ----------------------------------------------------------------------------------------------

_FORK_SCRIPT = TORCH_SPECS_SRC + FORK_CHILDREN_SRC + """
import faulthandler, json, multiprocessing, os, signal, traceback, warnings
from fastloss import _softmax
from fastloss._plan import ran

warnings.simplefilter("error")
warnings.filterwarnings("ignore", message="reduction: 'mean' divides", category=UserWarning)


def run_all():
    '''Forward + backward of every function (first and last variant, 2 blocks of float32):
    {name/variant: sha256 of loss and gradient}.'''
    out = {}
    for name in FUNCTIONS:
        for variant in (variants(name)[0], variants(name)[-1]):
            out[f"{name}/{variant}"] = digest(*run(make_case(name, "float32", variant, "two_blocks")))
    return out


def child_report(_=None):
    return {"pid": os.getpid(), "fastloss_threads": fastloss.get_num_threads(),
            "torch_threads": torch.get_num_threads(), "digests": run_all()}


class Items(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return i


def collate(batch):
    '''The losses are computed in the DataLoader's worker process.'''
    return dict(child_report(), batch=batch)


if __name__ == "__main__":
    faulthandler.dump_traceback_later(120, exit=True)  # a hang dumps the stacks, then exits 1
    torch.set_num_threads(2)
    a = torch.randn(512, 512)
    (a @ a).sum()                      # torch's parallel ops: its pool exists in the parent
    torch.randn(4_000_000).exp_()
    fastloss.set_num_threads(2)
    big = np.random.default_rng(0).standard_normal((256, 1000)).astype(np.float32)
    parent_used = ran(fastloss.log_softmax, big)[1]["threads_used"]
    before = run_all()                 # fastloss's OpenMP pool now exists in the parent
    rep = {"before": before, "parent_used": parent_used, "parent_pid": os.getpid()}
    rep["os.fork"], rep["os.fork exit codes"] = fork_children()
    with multiprocessing.get_context("fork").Pool(2) as pool:
        rep["fork"] = pool.map_async(child_report, range(2), chunksize=1).get(timeout=60)
    loader = torch.utils.data.DataLoader(Items(), batch_size=2, num_workers=2, collate_fn=collate,
                                         multiprocessing_context="fork", timeout=60)
    rep["dataloader"] = list(loader)
    rep["after"] = run_all()
    rep["parent_threads"] = fastloss.get_num_threads()
    print("RESULT " + json.dumps(rep))
"""


def test_forked_children_run_every_function(torch, tmp_path):
    """The parent runs torch's parallel ops and every fastloss.torch function (fwd+bwd) on 2
    threads, then forks in turn: 2 children by os.fork, a multiprocessing "fork" pool of 2,
    a DataLoader with 2 "fork" workers computing the losses in collate_fn. Each child
    finishes within the timeout (one subprocess: 150 s; os.fork children: a 30 s alarm)
    with the parent's bytes, single-threaded for fastloss; the parent still runs on 2
    threads afterwards."""
    res = run_script(_FORK_SCRIPT, tmp_path, timeout=150)
    assert res["after"] == res["before"]
    assert len(res["before"]) == 22
    assert res["parent_threads"] == 2
    assert res["parent_used"] == (2 if OPENMP else 1)
    # -14 (SIGALRM): the child hung and its 30 s alarm killed it
    assert res["os.fork exit codes"] == [0, 0], f"forked children exited with {res['os.fork exit codes']}"
    for mode in ("os.fork", "fork", "dataloader"):
        children = res[mode]
        assert len(children) == 2, mode
        assert len({c["pid"] for c in children} | {res["parent_pid"]}) == 3, mode
        for child in children:
            assert child["digests"] == res["before"], f"{mode}: a child's results differ from the parent's"
            assert child["fastloss_threads"] == 1, mode
    assert sorted(c["batch"] for c in res["dataloader"]) == [[0, 1], [2, 3]]
    assert {c["torch_threads"] for c in res["dataloader"]} == {1}  # DataLoader workers set it


# ----------------------------------------------------------------------------------------------
# leaks: every function fwd+bwd, no-grad, module and error calls, in a fresh subprocess
# ----------------------------------------------------------------------------------------------

_LEAK_SCRIPT = TORCH_SPECS_SRC + LEAK_MEASURE_SRC + """
import ctypes, gc, json, os, sys, time, warnings
warnings.simplefilter("error")
warnings.filterwarnings("ignore", message="reduction: 'mean' divides", category=UserWarning)
warnings.filterwarnings("ignore", message="Using a target size", category=UserWarning)
ITERATIONS = @ITERATIONS@


def iteration_fn(name):
    vs = variants(name)
    ok = [make_case(name, dtype, vs[i % len(vs)], "small") for i, dtype in enumerate(("float32", "float64"))]
    two = make_case(name, "float32", vs[-1], "two_blocks")
    errors = error_calls(name)

    def one(i):
        case = ok[i % 2]
        run(case, use_module=case.module is not None and i % 4 >= 2)
        if i % 10 == 0:
            run(two)
        if i % 3 == 0:
            with torch.no_grad():
                getattr(flt, name)(case.x, *case.others, **case.kwargs)
        label, thunk, exc = errors[i % len(errors)]
        try:
            thunk()
        except exc:
            pass
        else:
            raise AssertionError(f"{name} {label}: did not raise {exc.__name__}")
    return one


report = {}
for name in FUNCTIONS:
    one = iteration_fn(name)
    for i in range(1000):                # warm-up: caches, free lists, arenas
        one(i)
    before = measure()
    t0 = time.process_time()
    for i in range(ITERATIONS):
        one(i)
    report[name] = [b - a for a, b in zip(before, measure())] + [time.process_time() - t0]
report["rss_end"] = measure()[0]
print("RESULT " + json.dumps(report))
"""

KiB, MiB = 1024, 1024 * 1024


def _check_leaks(res, iterations):
    lines = [f"{name:35s} RSS {res[name][0] / KiB:+8.0f} KiB  heap {res[name][1]:+9d} B  "
             f"blocks {res[name][2]:+6d}  cpu {res[name][3]:6.2f} s" for name in FUNCTIONS]
    report = f"{iterations} iterations per function (RSS at the end {res['rss_end'] / MiB:.0f} MiB)\n" \
        + "\n".join(lines)
    print(report)
    for name in FUNCTIONS:
        rss, heap, blocks, _ = res[name]
        # a leaked malloc chunk (>= 32 bytes) per call is >= 32 * iterations bytes of heap; a
        # leaked tensor or Python object per call is >= iterations blocks
        assert rss < 2 * MiB, f"{name}: RSS grew\n{report}"
        assert heap < 16 * KiB, f"{name}: the malloc heap grew\n{report}"
        assert blocks < 200, f"{name}: Python objects leak\n{report}"


@pytest.mark.rss
def test_no_leaks(torch, tmp_path):
    """10,000 iterations per function, each: forward + autograd.grad on float32 or float64
    (every other pair through the module), every 3rd a no-grad call, every 10th a call of two
    blocks, and one call torch rejects (each of error_calls in turn). Single-threaded (the
    small calls never start a parallel region anyway; test_no_leaks_100k uses every CPU)."""
    res = run_script(_LEAK_SCRIPT.replace("@ITERATIONS@", "10_000"), tmp_path,
                     env={"FASTLOSS_NUM_THREADS": "1", "OMP_WAIT_POLICY": "passive"}, timeout=300)
    _check_leaks(res, 10_000)


@pytest.mark.slow
@pytest.mark.rss
def test_no_leaks_100k(torch, tmp_path):
    """As test_no_leaks, 100,000 iterations per function, on the default thread count
    (passive OpenMP waiting: spinning after each small region only slows a loaded machine)."""
    res = run_script(_LEAK_SCRIPT.replace("@ITERATIONS@", "100_000"), tmp_path,
                     env={"OMP_WAIT_POLICY": "passive"}, timeout=3000)
    _check_leaks(res, 100_000)
