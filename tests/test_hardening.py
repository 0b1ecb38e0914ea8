"""Hardening of every public kernel of the NumPy layer: concurrency, fork, leaks, big
arrays, determinism.

The functions are the 24 kernels in ``SPECS_SRC.NAMES`` (every loss and its ``*_with_grad``
twin, the four softmax functions). Their inputs are fixed; the "big" ones span several
blocks of FL_BLOCK_ELEMENTS (32768) elements, so that their parallel regions really run on
several threads, which ``fastloss._plan.ran`` reports as ``threads_used`` (the team).

* Determinism: thread counts 1, 2 and 4, repeated calls and ``out=`` vs a fresh result give
  the same bytes, for every reduction (softmax: two axes), float32 and float64, on every SIMD
  path.
* Concurrency: 8 Python threads (barrier start) call each kernel on shared read-only inputs,
  each with its own ``out=``, and get the single-threaded bytes, also while another thread
  toggles ``set_num_threads`` between 1, 2 and 3; a count set from any thread is the one the
  next call of every thread uses.
* Fork: after the parent ran its OpenMP pool, children made by ``os.fork()`` and by
  multiprocessing (fork, forkserver, spawn) run every kernel and finish, with and without
  torch (imported before or after fastloss); torch's and fastloss's thread counts are
  independent, there is one libgomp in the process, and threadpoolctl reports and limits
  fastloss's count under its own user_api "fastloss" (not "openmp"). Each scenario runs in
  a subprocess with a timeout.
* Leaks: RSS, the malloc heap in use and Python's allocated blocks stay flat over 10,000
  iterations (100,000 with ``-m slow``) of every kernel, error paths included, in a fresh
  subprocess.
* Big arrays (``-m slow``): more than 2**31 float32 elements through cross_entropy (loss and
  in-place gradient), log_softmax, mse_loss and binary_cross_entropy_with_logits.
"""
import json
import os
import resource
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import fastloss

# The directory that holds the fastloss this test process imported: subprocesses use it.
ROOT = Path(fastloss.__file__).resolve().parents[1]
OPENMP = fastloss.kernel_info()["openmp"]
needs_openmp = pytest.mark.skipif(not OPENMP, reason="fastloss was built without OpenMP")
NCPU = len(os.sched_getaffinity(0))

# ----------------------------------------------------------------------------------------------
# The kernels and their fixed inputs, shared verbatim with the subprocess scripts.
# ----------------------------------------------------------------------------------------------
SPECS_SRC = r'''
import zlib

import numpy as np

import fastloss
from fastloss import _binary, _cross_entropy, _nll_loss, _regression, _softmax
from fastloss._plan import ran

#: Every public kernel of the NumPy layer.
NAMES = (
    "cross_entropy", "cross_entropy_with_grad", "nll_loss", "nll_loss_with_grad",
    "margin_cross_entropy", "margin_cross_entropy_with_grad",
    "binary_cross_entropy", "binary_cross_entropy_with_grad",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_with_grad",
    "kl_div", "kl_div_with_grad",
    "mse_loss", "mse_loss_with_grad", "l1_loss", "l1_loss_with_grad",
    "smooth_l1_loss", "smooth_l1_loss_with_grad", "huber_loss", "huber_loss_with_grad",
    "log_softmax", "softmax", "log_softmax_backward", "softmax_backward",
)
_BINARY = {"binary_cross_entropy": "bce", "binary_cross_entropy_with_logits": "bce_logits",
           "kl_div": "kl_div"}
_REGRESSION = {"mse_loss": None, "l1_loss": None, "smooth_l1_loss": "beta", "huber_loss": "delta"}
_SOFTMAX = ("log_softmax", "softmax", "log_softmax_backward", "softmax_backward")


def base_name(name):
    return name[:-len("_with_grad")] if name.endswith("_with_grad") else name


def takes_out(name):
    """Whether the function writes into a caller's ``out=``."""
    return name.endswith("_with_grad") or name in _SOFTMAX


def variants(name):
    """The reductions of a loss; the axes of a softmax function."""
    if name in _SOFTMAX:
        return ("axis=-1", "axis=0")
    if base_name(name) == "kl_div":
        return ("mean", "batchmean", "sum", "none")
    return ("mean", "sum", "none")


def make_inputs(name, dtype, variant, size="big"):
    """(args, kwargs) of a fixed call. "big": 256 x 1000 (8 blocks of FL_BLOCK_ELEMENTS;
    nll_loss: 32768 x 10, so that its forward pass, in blocks of 8192 positions, has 4);
    "two_blocks": 40 x 1000 (nll_loss: 8200 x 5); "small": 6 x 5 (one block, the GIL held)."""
    base = base_name(name)
    rng = np.random.default_rng(zlib.crc32(f"{name}-{variant}".encode()))
    dtype = np.dtype(dtype)
    if size == "big":
        shape = (32768, 10) if base == "nll_loss" else (256, 1000)
    elif size == "two_blocks":
        shape = (8200, 5) if base == "nll_loss" else (40, 1000)
    else:
        shape = (6, 5)
    n, c = shape

    def normal(scale=1.0):
        return (scale * rng.standard_normal(shape)).astype(dtype)

    def unit():
        return rng.uniform(0.02, 0.98, shape).astype(dtype)

    if name in _SOFTMAX:
        kw = {"axis": int(variant.split("=")[1])}
        if name.endswith("_backward"):
            forward = fastloss.log_softmax if name.startswith("log") else fastloss.softmax
            return (normal(), forward(normal(2.0), **kw)), kw
        return (normal(3.0),), kw
    kw = {"reduction": variant}
    if base == "cross_entropy":
        t = rng.integers(0, c, n)
        t[::9] = -100
        kw.update(weight=rng.uniform(0.5, 2.0, c).astype(dtype), label_smoothing=0.05)
        return (normal(3.0), t), kw
    if base == "margin_cross_entropy":
        t = rng.integers(0, c, n)
        t[::9] = -100
        kw.update(weight=rng.uniform(0.5, 2.0, c).astype(dtype), label_smoothing=0.05, margin=0.3, scale=20.0)
        return (rng.uniform(-1.0, 1.0, shape).astype(dtype), t), kw
    if base == "nll_loss":
        t = rng.integers(0, c, n).astype(np.int32)
        t[::7] = -100
        kw["weight"] = rng.uniform(0.5, 2.0, c).astype(dtype)
        return (normal(), t), kw
    if base == "binary_cross_entropy":
        kw["weight"] = rng.uniform(0.5, 2.0, c).astype(dtype)
        return (unit(), unit()), kw
    if base == "binary_cross_entropy_with_logits":
        kw["pos_weight"] = rng.uniform(0.5, 2.0, c).astype(dtype)
        return (normal(3.0), unit()), kw
    if base == "kl_div":
        return (normal(), unit()), kw
    if base in ("smooth_l1_loss", "huber_loss"):
        kw[_REGRESSION[base]] = 0.5
    return (normal(), normal()), kw


def stats_call(name, args, kw):
    """(result, stats) of the public function ``name``: what its kernel call ran
    (fastloss._plan.record), ``threads_used`` among it."""
    return ran(getattr(fastloss, name), *args, **kw)


def public_call(name, args, kw):
    return getattr(fastloss, name)(*args, **kw)


def new_out(name, args):
    """A fresh output array for ``out=`` (the first argument's shape and dtype)."""
    return np.full_like(args[0], np.nan)


def result_bytes(result):
    """The exact bytes (with dtype and shape) of a result: an array, a scalar, or a tuple."""
    parts = result if isinstance(result, tuple) else (result,)
    out = []
    for p in parts:
        a = np.asarray(p)
        out.append(f"{a.dtype.str}{a.shape}".encode() + a.tobytes(order="A"))
    return b"|".join(out)


def error_calls(name):
    """Calls of ``name`` that must raise, as (args, kwargs, exception type): checked before
    any kernel (TypeError / ValueError), after the output is allocated (IndexError from the
    target check, bce's domain check), and a bad ``out=``."""
    base = base_name(name)
    x = np.linspace(-1.0, 1.0, 30, dtype=np.float32).reshape(6, 5)
    xi = np.arange(30).reshape(6, 5)
    class_index = base in ("cross_entropy", "nll_loss", "margin_cross_entropy")
    calls = [((xi,) + ((x,) if not class_index else (np.zeros(6, np.int64),)),
              {}, TypeError)]
    if name in _SOFTMAX:
        calls = [((xi,) + ((x,) if name.endswith("_backward") else ()), {}, TypeError)]
        if name.endswith("_backward"):
            calls.append(((x, x[:, :4]), {}, ValueError))
            calls.append(((x, x), {"axis": 2}, IndexError))
        else:
            calls.append(((x,), {"axis": 2}, IndexError))
        calls.append(((x,) * (2 if name.endswith("_backward") else 1),
                      {"out": np.zeros((6, 4), np.float32)}, ValueError))
        return calls
    if class_index:
        calls.append(((x, np.array([0, 1, 2, 3, 4, 7])), {}, IndexError))
        calls.append(((x, np.array([0, 1, 2, 3, 4, -3])), {"reduction": "none"}, IndexError))
        calls.append(((x, np.zeros(5, np.int64)), {}, ValueError))
        t_ok = np.zeros(6, np.int64)
    else:
        other = np.clip(x, 0.0, 1.0)
        calls.append(((x, other[:, :4]), {}, ValueError))
        calls.append(((x, other), {"reduction": "bad"}, ValueError))
        if base == "binary_cross_entropy":
            calls.append(((x, other), {}, ValueError))  # the input leaves [0, 1]
            calls.append(((other, other + 0.5), {"reduction": "none"}, ValueError))
        t_ok = other
    if name.endswith("_with_grad"):
        calls.append(((x, t_ok), {"out": np.zeros((6, 5), np.float64)}, TypeError))
        calls.append(((x, t_ok), {"out": np.zeros((6, 4), np.float32)}, ValueError))
    return calls
'''
_specs = {}
exec(compile(SPECS_SRC, "<SPECS_SRC>", "exec"), _specs)
NAMES = _specs["NAMES"]
variants, make_inputs, stats_call = _specs["variants"], _specs["make_inputs"], _specs["stats_call"]
public_call, takes_out, new_out = _specs["public_call"], _specs["takes_out"], _specs["new_out"]
result_bytes, error_calls = _specs["result_bytes"], _specs["error_calls"]

DTYPES = [np.float32, np.float64]


@pytest.fixture
def restore_threads():
    n = fastloss.get_num_threads()
    yield
    fastloss.set_num_threads(n)


def run_script(code, tmp_path, env=None, timeout=90):
    """Run ``code`` as a script file in a fresh interpreter (fastloss from this checkout; the
    thread and SIMD variables cleared unless given in ``env``) and return the JSON of its
    ``RESULT`` line. A script still running after ``timeout`` seconds -- a hang -- is killed
    with its whole process group (children included) and fails the test. (A file, not -c:
    multiprocessing's spawn and forkserver children import the main module.)"""
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("FASTLOSS_NUM_THREADS", "OMP_NUM_THREADS", "FASTLOSS_SIMD")}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    full_env.update(env or {})
    proc = subprocess.Popen([sys.executable, str(script)], cwd=str(tmp_path), env=full_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"subprocess hung: still running after {timeout} s (killed)\n"
                    f"--- stdout ---\n{out}\n--- stderr ---\n{err}")
    finally:
        try:  # nothing of the script's process group may outlive the test
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    assert proc.returncode == 0, (f"subprocess exited with {proc.returncode}\n"
                                  f"--- stdout ---\n{out}\n--- stderr ---\n{err}")
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert len(lines) == 1, f"no RESULT line\n--- stdout ---\n{out}\n--- stderr ---\n{err}"
    return json.loads(lines[0][len("RESULT "):])


def test_specs_cover_every_public_kernel():
    kernels = {n for n in fastloss.__all__
               if n not in ("__version__", "reference", "kernel_info", "get_num_threads",
                            "set_num_threads", "MARGIN_COSINE_EPS")}
    assert set(NAMES) == kernels and len(NAMES) == len(set(NAMES)) == 24


# ----------------------------------------------------------------------------------------------
# 5. determinism
# ----------------------------------------------------------------------------------------------

@needs_openmp
@pytest.mark.parametrize("name", NAMES)
def test_bitwise_identical_across_thread_counts(name, simd, restore_threads):
    """1, 2 and 4 threads, a repeated call and out= give the same bytes, for every reduction
    and dtype, loss and gradient, on this SIMD path; 2 and 4 threads really ran."""
    for dtype in DTYPES:
        for variant in variants(name):
            args, kw = make_inputs(name, dtype, variant)
            before = [a.tobytes() for a in args]
            runs = {}
            for n in (1, 2, 4):
                fastloss.set_num_threads(n)
                result, stats = stats_call(name, args, kw)
                assert stats.get("simd", simd) == simd
                if n == 1:
                    assert stats["threads_used"] == 1, (variant, stats)
                    assert stats["threads_active"] == 1, (variant, stats)
                else:
                    assert 2 <= stats["threads_used"] <= n, (variant, n, stats)  # the team
                    assert 1 <= stats["threads_active"] <= stats["threads_used"], (variant, n, stats)
                runs[n] = result_bytes(result)
            where = f"{name} {np.dtype(dtype).name} {variant} on {simd}"
            assert runs[2] == runs[1], f"{where}: 2 threads differ from 1"
            assert runs[4] == runs[1], f"{where}: 4 threads differ from 1"
            assert result_bytes(public_call(name, args, kw)) == runs[1], f"{where}: repeated call"
            if takes_out(name):
                out = new_out(name, args)
                result = public_call(name, args, dict(kw, out=out))
                got = result if isinstance(result, np.ndarray) else result[1]
                assert got is out
                assert result_bytes(result) == runs[1], f"{where}: out= differs"
            assert [a.tobytes() for a in args] == before, f"{where}: an input was modified"


# ----------------------------------------------------------------------------------------------
# 1. concurrency
# ----------------------------------------------------------------------------------------------

N_WORKERS = 8


def _shared_inputs(name, dtype, variant):
    args, kw = make_inputs(name, dtype, variant)
    for a in args:
        a.flags.writeable = False  # shared, read-only
    return args, kw


def _run_workers(worker, background=None, stop=None):
    """Run worker(i) in N_WORKERS threads (and ``background()`` in one more, told to end by
    ``stop`` once the workers are done); return the exceptions they raised."""
    errors = []

    def guarded(fn, *a):
        try:
            fn(*a)
        except BaseException as exc:  # reported by the caller
            errors.append(repr(exc))

    workers = [threading.Thread(target=guarded, args=(worker, i)) for i in range(N_WORKERS)]
    extra = [threading.Thread(target=guarded, args=(background,))] if background else []
    for th in workers + extra:
        th.start()
    for th in workers:
        th.join(timeout=120)
    if stop is not None:
        stop.set()
    for th in extra:
        th.join(timeout=30)
    assert not any(th.is_alive() for th in workers + extra), "a thread hung"
    return errors


@pytest.mark.parametrize("fastloss_threads", [1, 2, "toggled"])
@pytest.mark.parametrize("name", NAMES)
def test_concurrent_threads_get_single_threaded_bytes(name, fastloss_threads, restore_threads):
    """8 Python threads, barrier start, each with its own out= (where the function takes one),
    on shared read-only inputs: every call gives the single-threaded bytes; with
    "toggled", another thread keeps switching set_num_threads between 1, 2 and 3 meanwhile."""
    dtype = np.float32 if NAMES.index(name) % 2 == 0 else np.float64
    cases = [_shared_inputs(name, dtype, v) for v in (variants(name)[0], variants(name)[-1])]
    copies = [[a.copy() for a in args] for args, _ in cases]
    fastloss.set_num_threads(1)
    expected = [result_bytes(public_call(name, args, kw)) for args, kw in cases]
    toggled = fastloss_threads == "toggled"
    fastloss.set_num_threads(2 if toggled else fastloss_threads)
    rounds = 12
    barrier = threading.Barrier(N_WORKERS + toggled)
    stop = threading.Event()
    mismatches, seen, toggles = [], set(), [0]

    def worker(i):
        outs = [new_out(name, args) if takes_out(name) else None for args, _ in cases]
        barrier.wait()
        r = 0
        while r < rounds or (toggled and toggles[0] < 30 and r < 2000):
            k = (i + r) % len(cases)
            args, kw = cases[k]
            if outs[k] is not None:
                kw = dict(kw, out=outs[k])
            if toggled:
                result, stats = stats_call(name, args, kw)
                seen.add(stats["threads_used"])
            else:
                result = public_call(name, args, kw)
            if result_bytes(result) != expected[k]:
                mismatches.append((i, r, k))
            r += 1

    def toggler():
        barrier.wait()
        n = 1
        while not stop.is_set():
            fastloss.set_num_threads(n)
            toggles[0] += 1
            n = n % 3 + 1
            time.sleep(0.0005)

    errors = _run_workers(worker, toggler if toggled else None, stop)
    assert errors == []
    assert mismatches == [], "concurrent results differ from the single-threaded bytes"
    for (args, _), originals in zip(cases, copies):
        for a, a0 in zip(args, originals):
            assert a.tobytes() == a0.tobytes()
    if toggled and OPENMP:
        assert seen <= {1, 2, 3} and len(seen) >= 2, seen


@needs_openmp
@pytest.mark.parametrize("name", NAMES)
def test_set_num_threads_from_another_thread_applies_to_every_next_call(name, restore_threads):
    """A setter thread sets 1, 2, 3, 2, 1 while 8 workers wait between their calls: after each
    setting, every worker's next call runs on exactly that many threads (the inputs are 4
    blocks or more, so every thread asked for gets a block)."""
    args, kw = _shared_inputs(name, np.float32, variants(name)[0])
    counts = (1, 2, 3, 2, 1)
    barrier = threading.Barrier(N_WORKERS + 1)
    used = {n: [] for n in range(len(counts))}

    def worker(i):
        for phase in range(len(counts)):
            barrier.wait()  # the setter has set counts[phase]
            used[phase].append(stats_call(name, args, kw)[1]["threads_used"])
            barrier.wait()  # every worker has called

    def setter():
        for n in counts:
            fastloss.set_num_threads(n)
            barrier.wait()
            barrier.wait()

    errors = _run_workers(worker, setter)
    assert errors == []
    assert {phase: sorted(set(u)) for phase, u in used.items()} == \
        {phase: [n] for phase, n in enumerate(counts)}
    assert all(len(u) == N_WORKERS for u in used.values())


# ----------------------------------------------------------------------------------------------
# Global mutable state. The C code keeps none: every kernel gets its SIMD path and thread count
# in its argument struct and keeps its partial sums in a per-call buffer. The process-wide
# values are fastloss._threads._num_threads (a Python int, written under a lock, read once per
# call with the GIL held) and fastloss._runtime._simd_path (written only by the private
# _use_simd, at import and by the test suite). The test below pins the C side.
# ----------------------------------------------------------------------------------------------

def test_c_objects_have_no_writable_data(tmp_path):
    """Every csrc/*.c compiled alone has empty .data and .bss: no global or static variable
    a concurrent call could share (read-only tables live in .rodata)."""
    import shutil
    import sysconfig

    csrc = Path(__file__).resolve().parents[1] / "csrc"  # the checkout the tests come from
    if not csrc.is_dir():
        pytest.skip("no C sources beside the tests")
    cc = (sysconfig.get_config_var("CC") or "cc").split()[0]
    if shutil.which(cc) is None or shutil.which("objdump") is None:
        pytest.skip("no C compiler or objdump")
    sources = sorted(csrc.glob("*.c"))
    assert {p.name for p in sources} >= {"dispatch.c", "cross_entropy.c", "nll_loss.c",
                                         "binary.c", "regression.c", "softmax.c"}
    writable = []
    for src in sources:
        obj = tmp_path / (src.stem + ".o")
        subprocess.run([cc, "-std=c99", "-O0", "-w"] + (["-fopenmp"] if OPENMP else [])
                       + [f"-I{csrc}", "-c", str(src), "-o", str(obj)],
                       check=True, capture_output=True, timeout=120)
        # symbols by section (objdump -t): .data / .bss / common are writable state; the
        # dispatch tables (static const, holding pointers) live in .data.rel.ro, which the
        # loader makes read-only after relocation (RELRO)
        syms = subprocess.run(["objdump", "-t", str(obj)], check=True, capture_output=True, text=True).stdout
        for line in syms.splitlines():
            parts = line.split()
            if len(parts) < 5 or parts[-1].startswith("."):
                continue
            section = next((p for p in parts if p.startswith(".") or p == "*COM*"), None)
            if section is None:
                continue
            if section == "*COM*" or section.startswith((".data", ".bss", ".sdata", ".sbss")) \
                    and not section.startswith(".data.rel.ro"):
                writable.append(f"{src.name}: {line.strip()}")
    assert writable == []


def test_set_num_threads_from_many_threads_is_atomic(restore_threads):
    """Concurrent setters: the count is always one of the values set, never torn or lost."""
    values = (1, 2, 3, 5, 7)
    barrier = threading.Barrier(N_WORKERS)
    bad = []

    def worker(i):
        barrier.wait()
        for r in range(2000):
            fastloss.set_num_threads(values[(i + r) % len(values)])
            got = fastloss.get_num_threads()
            if got not in values or type(got) is not int:
                bad.append(got)

    assert _run_workers(worker) == []
    assert bad == []
    assert fastloss.get_num_threads() in values


# ----------------------------------------------------------------------------------------------
# 2. fork, multiprocessing, torch's OpenMP runtime and threadpoolctl (each in a subprocess)
# ----------------------------------------------------------------------------------------------

_TORCH_WORK = """
def torch_work():
    import torch
    torch.set_num_threads(2)
    a = torch.randn(512, 512)
    (a @ a).sum()                                   # a parallel BLAS op
    torch.randn(4_000_000).exp_()                   # an at::parallel_for op (OpenMP)
    torch.nn.functional.cross_entropy(torch.randn(512, 1000), torch.zeros(512, dtype=torch.long))
    return torch.get_num_threads()
"""

# Forks n children of a script, each running its child_report() (defined by the script)
# under a 30 s alarm: ([reports], [exit codes]). Also used by tests/test_torch_hardening.py.
FORK_CHILDREN_SRC = """
import json, os, signal, traceback


def fork_children(n=2):
    children, exitcodes = [], []
    for _ in range(n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                signal.alarm(30)  # a hung child dies of SIGALRM (exit code -14)
                os.close(r)
                os.write(w, json.dumps(child_report()).encode())
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        os.close(w)
        chunks = []
        while True:
            chunk = os.read(r, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
        os.close(r)
        _, status = os.waitpid(pid, 0)
        exitcodes.append(os.waitstatus_to_exitcode(status))
        if chunks:
            children.append(json.loads(b"".join(chunks)))
    return children, exitcodes
"""

_FORK_SCRIPT = SPECS_SRC + _TORCH_WORK + FORK_CHILDREN_SRC + """
import faulthandler, hashlib, json, multiprocessing, os, signal, traceback, warnings

MODE, TORCH = @MODE@, @TORCH@


def run_all():
    digests, used = {}, {}
    for name in NAMES:
        args, kw = make_inputs(name, "float32", variants(name)[-1], "two_blocks")
        result, stats = stats_call(name, args, kw)
        digests[name] = hashlib.sha256(result_bytes(result)).hexdigest()
        used[name] = stats["threads_used"]
    return digests, used


def child_report(_=None):
    rep = {"pid": os.getpid(), "num_threads": fastloss.get_num_threads()}
    rep["digests"], rep["used"] = run_all()
    if TORCH:
        import torch
        # as DataLoader workers do: torch's own OpenMP ops hang in a forked child that
        # keeps torch's thread count (seen with torch 2.13); fastloss needs nothing of this
        torch.set_num_threads(1)
        torch.randn(1_000_000).exp_()
        rep["torch_ok"] = True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastloss.set_num_threads(2)
    rep["warn_set2"] = [f"{w.category.__name__}: {w.message}" for w in caught]
    rep["after_set2"] = fastloss.get_num_threads()
    rep["used_after_set2"] = sorted(set(run_all()[1].values()))
    return rep


if __name__ == "__main__":
    faulthandler.dump_traceback_later(80, exit=True)  # a hang dumps the stacks, then exits 1
    torch_threads = torch_work() if TORCH == "first" else None
    fastloss.set_num_threads(2)
    before = run_all()          # the parent's OpenMP pool now exists
    if TORCH == "second":
        torch_threads = torch_work()
    if MODE == "os.fork":
        children, exitcodes = fork_children()
    else:
        with multiprocessing.get_context(MODE).Pool(2) as pool:
            children = pool.map_async(child_report, range(2), chunksize=1).get(timeout=60)
        exitcodes = []
    after = run_all()           # the parent still runs multi-threaded
    print("RESULT " + json.dumps({"before": before, "after": after, "children": children,
                                  "exitcodes": exitcodes, "torch_threads": torch_threads,
                                  "parent_threads": fastloss.get_num_threads()}))
"""


@pytest.mark.parametrize("mode, with_torch", [
    ("os.fork", None), ("fork", None), ("forkserver", None), ("spawn", None),
    ("os.fork", "first"), ("fork", "first"), ("os.fork", "second"),
], ids=lambda v: f"torch-{v}" if v in ("first", "second") else v)
def test_children_run_every_kernel(mode, with_torch, tmp_path, request):
    """The parent runs every kernel (inputs of 2 blocks) on 2 threads, then makes children (os.fork, or a
    multiprocessing pool of the given start method), which run every kernel and finish with
    the parent's bytes; the parent still runs on 2 threads afterwards. Forked children run
    single-threaded (set_num_threads(2) warns and keeps 1); forkserver and spawn children
    are fresh processes with the default thread count. torch "first" / "second": imported
    and run in parallel before / after fastloss's first parallel region."""
    if with_torch:
        request.getfixturevalue("torch")
    script = _FORK_SCRIPT.replace("@MODE@", repr(mode)).replace("@TORCH@", repr(with_torch))
    res = run_script(script, tmp_path, timeout=120)
    digests, used = res["before"]
    assert res["after"][0] == digests
    assert res["parent_threads"] == 2
    if OPENMP:
        assert set(used.values()) == {2} and set(res["after"][1].values()) == {2}, used
    if with_torch:
        assert res["torch_threads"] == 2
    if mode == "os.fork":
        # -14 (SIGALRM): the child hung and its 30 s alarm killed it
        assert res["exitcodes"] == [0, 0], f"forked children exited with {res['exitcodes']}"
        assert len(res["children"]) == 2
    else:
        assert len(res["children"]) == 2
    forked = mode in ("os.fork", "fork")
    default = NCPU if OPENMP else 1
    for child in res["children"]:
        assert child["digests"] == digests, "a child's results differ from the parent's"
        if with_torch:
            assert child["torch_ok"]
        if forked:
            assert child["num_threads"] == 1, child
            assert set(child["used"].values()) == {1}, child
            assert any(w.startswith("RuntimeWarning") and "fork" in w for w in child["warn_set2"])
            assert child["after_set2"] == 1 and child["used_after_set2"] == [1]
        else:
            assert child["num_threads"] == NCPU, child
            assert set(child["used"].values()) == {min(default, 2)}, child
            assert child["warn_set2"] == [] and child["after_set2"] == 2
            assert child["used_after_set2"] == ([2] if OPENMP else [1])


_LOCK_AT_FORK_SCRIPT = """
import json, os, signal, threading, warnings
import fastloss
from fastloss import _threads

# another Python thread is inside set_num_threads (holding its lock) when the fork happens
holding, release = threading.Event(), threading.Event()


def holder():
    with _threads._lock:
        holding.set()
        release.wait()


th = threading.Thread(target=holder)
th.start()
holding.wait()
pid = os.fork()
if pid == 0:
    signal.alarm(10)  # a child stuck on the lock dies of SIGALRM (exit code -14)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fastloss.set_num_threads(3)
    fastloss.set_num_threads(1)
    os._exit(0 if fastloss.get_num_threads() == 1 else 3)
release.set()
th.join()
code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
fastloss.set_num_threads(2)
print("RESULT " + json.dumps({"child": code, "parent_threads": fastloss.get_num_threads()}))
"""


def test_fork_while_another_thread_sets_the_thread_count(tmp_path):
    """A fork while another thread holds the thread-count lock: the child's set_num_threads
    must not wait for a thread that does not exist there."""
    res = run_script(_LOCK_AT_FORK_SCRIPT, tmp_path, timeout=60)
    assert res == {"child": 0, "parent_threads": 2}


_OPENMP_SCRIPT = _TORCH_WORK + """
import json, os, sys
import numpy as np
ORDER = @ORDER@
rep = {}
if ORDER != "fastloss_first":  # fastloss_first: threadpoolctl is imported after fastloss
    import threadpoolctl
if ORDER == "torch_first":
    rep["torch_threads"] = torch_work()
import fastloss
from fastloss._plan import ran
rep["fastloss_imported_threadpoolctl"] = ORDER == "fastloss_first" and "threadpoolctl" in sys.modules
import threadpoolctl
x = np.random.default_rng(0).standard_normal((256, 1000)).astype(np.float32)  # 8 blocks


def used():
    return ran(fastloss.log_softmax, x)[1]["threads_used"]


def libs(api):
    return [(lib["prefix"], os.path.realpath(lib["filepath"]), lib["num_threads"])
            for lib in threadpoolctl.threadpool_info() if lib["user_api"] == api]


def counts():
    return {"fastloss_used": used(), "fastloss_threads": fastloss.get_num_threads(),
            "openmp_info": [lib[2] for lib in libs("openmp")], "fastloss_info": [lib[2] for lib in libs("fastloss")],
            "torch_threads": torch.get_num_threads() if torch else None}


fastloss.set_num_threads(2)
rep["fastloss_used"] = used()
if ORDER == "fastloss_first":
    rep["torch_threads"] = torch_work()
torch = sys.modules.get("torch")
with open("/proc/self/maps") as f:
    rep["gomp_mapped"] = sorted({os.path.realpath(line.split()[-1]) for line in f
                                 if "libgomp" in line})
rep["openmp_libs"] = libs("openmp")
rep["fastloss_libs"] = libs("fastloss")
rep["fastloss_file"] = os.path.realpath(fastloss._cross_entropy.__file__)
# user_api="openmp" limits the OpenMP runtime's ICV of this thread: torch follows, fastloss not
with threadpoolctl.threadpool_limits(limits=1, user_api="openmp"):
    rep["limited_openmp"] = counts()
# every user_api (scikit-learn's habit), and fastloss's own: fastloss's kernels follow
with threadpoolctl.threadpool_limits(limits=1):
    rep["limited_all"] = counts()
with threadpoolctl.threadpool_limits(limits=1, user_api="fastloss"):
    rep["limited_fastloss"] = counts()
rep["after_limits"] = counts()
fastloss.set_num_threads(1)   # not torch's count, not the OpenMP ICV threadpoolctl reports
rep["fastloss_1"] = counts()
if torch:
    fastloss.set_num_threads(2)
    torch.set_num_threads(1)      # not fastloss's count
    rep["torch_1"] = {"fastloss_threads": fastloss.get_num_threads(), "used": used(),
                      "torch_threads": torch.get_num_threads()}
    torch.set_num_threads(2)
    rep["torch_again"] = torch_work()
print("RESULT " + json.dumps(rep))
"""


@needs_openmp
@pytest.mark.parametrize("order", ["no_torch", "torch_first", "fastloss_first"])
def test_openmp_runtime_with_torch_and_threadpoolctl(order, tmp_path, request):
    """One libgomp per process whatever the import order (the first loaded one, torch's
    bundled copy or the system's, serves both libraries); threadpoolctl reports that runtime
    with its own ICV, and fastloss separately, under its own user_api "fastloss", with
    fastloss's count (whether threadpoolctl was imported before fastloss or after it, which
    ``import fastloss`` itself does not do). ``threadpool_limits(1)`` (every user_api) and
    ``user_api="fastloss"`` limit fastloss's kernels and restore the count after the
    context; ``user_api="openmp"`` does not reach fastloss (which passes num_threads to each
    region). torch.set_num_threads and fastloss.set_num_threads are independent."""
    pytest.importorskip("threadpoolctl", minversion="3.2")  # threadpoolctl.register
    if order != "no_torch":
        request.getfixturevalue("torch")
    res = run_script(_OPENMP_SCRIPT.replace("@ORDER@", repr(order)), tmp_path, timeout=120)
    assert res["fastloss_imported_threadpoolctl"] is False
    assert res["fastloss_used"] == 2
    assert len(res["gomp_mapped"]) == 1, res["gomp_mapped"]
    gomp = res["gomp_mapped"][0]
    if order == "torch_first":
        assert "/torch/lib/" in gomp, gomp
    elif order == "fastloss_first":
        assert "/torch/lib/" not in gomp, gomp
    # the OpenMP ICV of the main thread: torch.set_num_threads(2) set it; else the CPU count
    icv = NCPU if order == "no_torch" else 2
    assert res["openmp_libs"] == [["libgomp", gomp, icv]]
    assert res["fastloss_libs"] == [["_cross_entropy.", res["fastloss_file"], 2]]
    t1, t2 = (None, None) if order == "no_torch" else (1, 2)  # torch's count follows the ICV
    assert res["limited_openmp"] == {"fastloss_used": 2, "fastloss_threads": 2, "openmp_info": [1],
                                     "fastloss_info": [2], "torch_threads": t1}
    assert res["limited_all"] == {"fastloss_used": 1, "fastloss_threads": 1, "openmp_info": [1],
                                  "fastloss_info": [1], "torch_threads": t1}
    assert res["limited_fastloss"] == {"fastloss_used": 1, "fastloss_threads": 1, "openmp_info": [icv],
                                       "fastloss_info": [1], "torch_threads": t2}
    assert res["after_limits"] == {"fastloss_used": 2, "fastloss_threads": 2, "openmp_info": [icv],
                                   "fastloss_info": [2], "torch_threads": t2}
    assert res["fastloss_1"] == {"fastloss_used": 1, "fastloss_threads": 1, "openmp_info": [icv],
                                 "fastloss_info": [1], "torch_threads": t2}
    if order != "no_torch":
        assert res["torch_threads"] == 2
        assert res["torch_1"] == {"fastloss_threads": 2, "used": 2, "torch_threads": 1}
        assert res["torch_again"] == 2


# ----------------------------------------------------------------------------------------------
# 3. leaks: every kernel, error paths included, in a fresh subprocess
# ----------------------------------------------------------------------------------------------

# The leak measure of a script (also used by tests/test_torch_hardening.py): RSS; bytes
# malloc'ed and in use (every arena, mmapped chunks too); Python's allocated blocks.
LEAK_MEASURE_SRC = """
import ctypes, gc, os, sys


class MallInfo2(ctypes.Structure):
    _fields_ = [(f, ctypes.c_size_t) for f in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                               "usmblks", "fsmblks", "uordblks", "fordblks",
                                               "keepcost")]


_libc = ctypes.CDLL(None)
_libc.mallinfo2.restype = MallInfo2
PAGE = os.sysconf("SC_PAGE_SIZE")


def measure():
    gc.collect()
    with open("/proc/self/statm") as f:
        rss = int(f.read().split()[1]) * PAGE
    m = _libc.mallinfo2()
    # RSS; bytes malloc'ed and in use (every arena, mmapped chunks too); Python's blocks
    return rss, m.uordblks + m.hblkhd, sys.getallocatedblocks()
"""

_LEAK_SCRIPT = SPECS_SRC + LEAK_MEASURE_SRC + """
import ctypes, gc, json, os, sys, warnings
warnings.simplefilter("error")
ITERATIONS = @ITERATIONS@


def iteration_fn(name):
    ok = [make_inputs(name, dtype, variants(name)[i % len(variants(name))], "small")
          for i, dtype in enumerate(("float32", "float64"))]
    two = make_inputs(name, "float32", variants(name)[0], "two_blocks")  # malloc'ed partials
    outs = [new_out(name, args) if takes_out(name) else None for args, _ in ok]
    errors = error_calls(name)
    fn = getattr(fastloss, name)

    def one(i):
        args, kw = ok[i % 2]
        if outs[i % 2] is not None and i % 4 >= 2:
            kw = dict(kw, out=outs[i % 2])
        fn(*args, **kw)
        if i % 10 == 0:
            fn(*two[0], **two[1])
        args, kw, exc = errors[i % len(errors)]
        try:
            fn(*args, **kw)
        except exc:
            pass
        else:
            raise AssertionError(f"{name}{args, kw} did not raise {exc.__name__}")
    return one


report = {}
for name in NAMES:
    one = iteration_fn(name)
    for i in range(1000):                # warm-up: caches, free lists, arenas
        one(i)
    before = measure()
    for i in range(ITERATIONS):
        one(i)
    after = measure()
    report[name] = [b - a for a, b in zip(before, after)]
report["rss_end"] = measure()[0]
print("RESULT " + json.dumps(report))
"""

KiB, MiB = 1024, 1024 * 1024


def _check_leaks(res, iterations):
    lines = [f"{name:45s} RSS {res[name][0] / KiB:+8.0f} KiB  heap {res[name][1]:+8d} B  "
             f"blocks {res[name][2]:+6d}" for name in NAMES]
    report = f"{iterations} iterations per kernel (RSS at the end {res['rss_end'] / MiB:.0f} MiB)\n" \
        + "\n".join(lines)
    print(report)
    for name in NAMES:
        rss, heap, blocks = res[name]
        # the smallest malloc chunk is 32 bytes: one leaked per two-block call (every 10th
        # iteration) is 3.2 * iterations bytes of heap; a leaked Python object per call is
        # >= iterations blocks (measured without a leak: <= 80 bytes, <= 68 blocks)
        assert rss < 2 * MiB, f"{name}: RSS grew\n{report}"
        assert heap < 16 * KiB, f"{name}: the malloc heap grew\n{report}"
        assert blocks < 200, f"{name}: Python objects leak\n{report}"


@pytest.mark.rss
def test_no_leaks(tmp_path):
    """10,000 iterations per kernel, each: a call on float32 or float64 (every other one with
    out=), an error call (TypeError, ValueError, IndexError, in turn), and every 10th a call
    of two blocks (whose partial sums are malloc'ed). Single-threaded: the 1-block calls never
    start a parallel region anyway, and on a loaded machine 2-thread regions only add waiting
    (test_no_leaks_100k runs them on every CPU)."""
    res = run_script(_LEAK_SCRIPT.replace("@ITERATIONS@", "10_000"), tmp_path,
                     env={"FASTLOSS_NUM_THREADS": "1"}, timeout=240)
    _check_leaks(res, 10_000)


@pytest.mark.slow
@pytest.mark.rss
def test_no_leaks_100k(tmp_path):
    """As test_no_leaks, 100,000 iterations per kernel, on the default thread count. (Passive
    waiting: libgomp's default spin-wait after each of the 220,000 small parallel regions
    made this run 10x slower on a loaded machine; it does not change what is measured.)"""
    res = run_script(_LEAK_SCRIPT.replace("@ITERATIONS@", "100_000"), tmp_path,
                     env={"OMP_WAIT_POLICY": "passive"}, timeout=3000)
    _check_leaks(res, 100_000)


# ----------------------------------------------------------------------------------------------
# 4. big arrays: more than 2**31 elements, so that any 32-bit index arithmetic would wrap
# ----------------------------------------------------------------------------------------------

BIG_N, BIG_C = 65600, 32768   # 2**31 + 2**21 float32 elements (8.0 GiB); rows >= 65536 lie
BIG_K = 64                    # beyond element 2**31. Row i holds table[i % BIG_K].


def _ref_log_softmax(rows):
    rows = rows.astype(np.float64)
    m = rows.max(axis=1, keepdims=True)
    return rows - m - np.log(np.exp(rows - m).sum(axis=1, keepdims=True))


def _sigmoid(v):
    return 1.0 / (1.0 + np.exp(-v))


@pytest.mark.slow
def test_more_than_2_31_elements(restore_threads):
    """cross_entropy (forward; loss and gradient written in place), log_softmax (in place),
    mse_loss and binary_cross_entropy_with_logits (gradient in place, target a broadcast
    row: no second copy) on one float32 array of 2**31 + 2**21 elements: every per-row loss
    and every reduction against float64 references computed from the 64 distinct rows, and
    the gradient of rows sampled at both ends (the last ones past element 2**31)."""
    assert BIG_N * BIG_C > 2**31 and BIG_N % BIG_K == 0
    fastloss.set_num_threads(NCPU)
    rng = np.random.default_rng(2024)
    table = (2.0 * rng.standard_normal((BIG_K, BIG_C))).astype(np.float32)
    t = rng.integers(0, BIG_C, BIG_N)
    row_of = np.arange(BIG_N) % BIG_K
    sample = np.array([0, 1, 2, 777, 32767, 65535, 65536, BIG_N - 63, BIG_N - 2, BIG_N - 1])
    x = np.empty((BIG_N, BIG_C), np.float32)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    def fill():
        x.reshape(BIG_N // BIG_K, BIG_K, BIG_C)[...] = table

    def close(got, want, rtol, atol, what):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=what)

    # cross_entropy: forward (mean over all rows), then per-row losses and the gradient in place
    ref_lsm = _ref_log_softmax(table)                      # (BIG_K, BIG_C) float64
    ref_row_loss = -ref_lsm[row_of, t]                      # (BIG_N,)
    fill()
    loss = fastloss.cross_entropy(x, t)
    close(loss, ref_row_loss.mean(), 1e-5, 0, "cross_entropy mean")
    losses, g = fastloss.cross_entropy_with_grad(x, t, reduction="none", out=x)
    assert g is x and losses.shape == (BIG_N,)
    close(losses, ref_row_loss, 2e-5, 2e-5, "cross_entropy per-row losses")
    for i in sample:
        want = np.exp(ref_lsm[i % BIG_K])
        want[t[i]] -= 1.0
        close(x[i], want, 1e-4, 1e-7, f"cross_entropy gradient, row {i}")

    # log_softmax in place
    fill()
    assert fastloss.log_softmax(x, out=x) is x
    for i in sample:
        close(x[i], ref_lsm[i % BIG_K], 1e-5, 1e-5, f"log_softmax, row {i}")

    # mse_loss and binary_cross_entropy_with_logits: the target one broadcast row
    numel = float(BIG_N) * BIG_C
    y = rng.uniform(-1.0, 1.0, BIG_C).astype(np.float32)
    yb = np.broadcast_to(y, x.shape)
    d = table.astype(np.float64) - y                        # (BIG_K, BIG_C)
    fill()
    loss, g = fastloss.mse_loss_with_grad(x, yb, reduction="mean", out=x)
    assert g is x
    close(loss, (d ** 2).sum() * (BIG_N // BIG_K) / numel, 1e-5, 0, "mse_loss mean")
    for i in sample:
        close(x[i], 2.0 * d[i % BIG_K] / numel, 1e-5, 1e-18, f"mse_loss gradient, row {i}")

    p = rng.uniform(0.0, 1.0, BIG_C).astype(np.float32)
    pb = np.broadcast_to(p, x.shape)
    tab = table.astype(np.float64)
    ref_bce = ((1 - p) * tab + np.log1p(np.exp(-np.abs(tab))) + np.maximum(-tab, 0)).sum()
    fill()
    loss, g = fastloss.binary_cross_entropy_with_logits_with_grad(x, pb, reduction="sum", out=x)
    assert g is x
    close(loss, ref_bce * (BIG_N // BIG_K), 1e-5, 0, "binary_cross_entropy_with_logits sum")
    for i in sample:
        close(x[i], _sigmoid(tab[i % BIG_K]) - p, 1e-5, 1e-6, f"bce_with_logits gradient, row {i}")

    # nothing of the array's size was allocated besides x itself (8 GiB)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    assert peak - rss0 < x.nbytes + 512 * MiB, (peak - rss0) / MiB
