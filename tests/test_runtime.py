"""Runtime behaviour of the compiled kernels: SIMD dispatch, thread count, cross_entropy's
determinism over its memory layouts, and peak memory.

What is checked, and how:

* SIMD: the path chosen at import (the widest the CPU runs unless ``FASTLOSS_SIMD`` caps it)
  is what ``kernel_info()`` and the kernels' own ``stats["simd"]`` report; every path gives
  the same values within floating-point tolerance. Environment variables are read at import,
  so those cases run in fresh subprocesses.
* Threads: the count comes from FASTLOSS_NUM_THREADS, OMP_NUM_THREADS or the CPU affinity;
  work is cut in fixed blocks of FL_BLOCK_ELEMENTS and partial sums combine in block order,
  so 1 and 2 threads must give the same *bytes*, and ``stats["threads_used"]`` must show that
  2 threads really ran (inputs here are several blocks big).
* Concurrency, fork, torch's OpenMP runtime, leaks, big arrays and determinism of every
  kernel (not only cross_entropy): tests/test_hardening.py.
* Memory: peak RSS (``ru_maxrss``) of a fresh subprocess, so that C-level allocations count.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import fastloss
from fastloss import _cross_entropy as _ce
from fastloss import _runtime
from fastloss._plan import ran

# The directory that holds the fastloss this test process imported (the checkout after an
# in-place build, site-packages after `pip install .`): subprocesses import the same one.
ROOT = Path(fastloss.__file__).resolve().parents[1]
INFO = fastloss.kernel_info()
OPENMP = INFO["openmp"]
needs_openmp = pytest.mark.skipif(not OPENMP, reason="fastloss was built without OpenMP")

#: The SIMD paths in the order of width; "auto" resolves to the widest this CPU runs.
ALL_PATHS = ("generic", "avx2", "avx512")


def _supported_paths():
    paths = []
    for path in ALL_PATHS:
        previous = _runtime._simd_name()
        try:
            got = _runtime._use_simd(path)
        except ValueError:  # a build that does not know this path at all
            continue
        finally:
            _runtime._use_simd(previous)
        if got == path:
            paths.append(path)
    return paths


SUPPORTED_PATHS = _supported_paths()
#: What "auto" must pick: the widest supported path.
WIDEST_PATH = SUPPORTED_PATHS[-1]

_FORWARDED_ENV = ("FASTLOSS_NUM_THREADS", "OMP_NUM_THREADS", "FASTLOSS_SIMD")

# --------------------------------------------------------------------------------------
# Fixed inputs, shared verbatim with the subprocess scripts (exec'd in both places).
# Every one is larger than one block of FL_BLOCK_ELEMENTS (32768) elements.
# --------------------------------------------------------------------------------------
CASES_SRC = r'''
import zlib
import numpy as np

CASE_NAMES = ("index", "index_wide", "prob", "weight_smooth", "kdim", "kdim_prob_weight",
              "fortran", "fortran_in_c_out")


def make_case(name, dtype, reduction):
    """(x, t, kwargs, out_order) of a fixed input several blocks big."""
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    dtype = np.dtype(dtype)
    kw = {"reduction": reduction}
    out_order = "C"

    def logits(shape):
        return (3.0 * rng.standard_normal(shape)).astype(dtype)

    def probs(shape):
        e = np.exp(rng.standard_normal(shape))
        return (e / e.sum(axis=1, keepdims=True)).astype(dtype)

    if name == "index":  # 256 x 1000: 8 blocks of 32 rows
        x = logits((256, 1000))
        t = rng.integers(0, 1000, 256)
    elif name == "index_wide":  # 64 x 5000: 11 blocks of 6 rows; int32 targets, ignored rows
        x = logits((64, 5000))
        t = rng.integers(0, 5000, 64).astype(np.int32)
        t[::7] = -100
    elif name == "prob":
        x = logits((256, 1000))
        t = probs((256, 1000))
    elif name == "weight_smooth":
        x = logits((256, 1000))
        t = rng.integers(0, 1000, 256)
        t[::5] = 3
        kw.update(weight=rng.uniform(0.1, 2.0, 1000).astype(dtype), ignore_index=3,
                  label_smoothing=0.1)
        kw["grad_output"] = (rng.uniform(0.5, 2.0, 256).astype(dtype) if reduction == "none"
                             else 0.5)
    elif name == "kdim":  # (N, C, d1, d2): the column layout, 85 blocks
        x = logits((32, 21, 64, 64))
        t = rng.integers(0, 21, (32, 64, 64))
        t[:, ::9, ::5] = -100
    elif name == "kdim_prob_weight":
        x = logits((8, 21, 64, 64))
        t = probs((8, 21, 64, 64))
        kw.update(weight=rng.uniform(0.1, 2.0, 21).astype(dtype), label_smoothing=0.05)
    elif name == "fortran":  # Fortran-ordered (N, C) input and gradient: column layout
        x = np.asfortranarray(logits((256, 1000)))
        t = rng.integers(0, 1000, 256)
        out_order = "F"
    elif name == "fortran_in_c_out":  # F input, C-ordered out=: the strided layout
        x = np.asfortranarray(logits((256, 1000)))
        t = rng.integers(0, 1000, 256)
    else:
        raise KeyError(name)
    return x, t, kw, out_order
'''
_cases_ns = {}
exec(CASES_SRC, _cases_ns)
CASE_NAMES = _cases_ns["CASE_NAMES"]
make_case = _cases_ns["make_case"]


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def _loss_bytes(loss):
    return np.asarray(loss).tobytes()


def run_grad(x, t, kw, out_order="C"):
    """(loss bytes, gradient bytes, stats) of cross_entropy_with_grad(..., out=fresh)."""
    out = np.empty(x.shape, x.dtype, order=out_order)
    (loss, g), stats = ran(fastloss.cross_entropy_with_grad, x, t, out=out, **kw)
    assert g is out
    return _loss_bytes(loss), g.tobytes(order="A"), stats


def run_forward(x, t, kw):
    """(loss bytes, stats) of cross_entropy (no gradient)."""
    kw = {k: v for k, v in kw.items() if k != "grad_output"}
    loss, stats = ran(fastloss.cross_entropy, x, t, **kw)
    return _loss_bytes(loss), stats


# Linux carries ru_maxrss across execve (the old memory's high-water mark), so a process
# spawned straight from this big pytest process would start with pytest's peak RSS. A small
# launcher interpreter in between gives the measured process a clean ru_maxrss.
_LAUNCHER = ("import subprocess, sys; "
             "sys.exit(subprocess.run([sys.executable, '-c', sys.argv[1]]).returncode)")


def run_python(code, env=None, timeout=60, clean_maxrss=False):
    """Run ``code`` in a fresh interpreter (fastloss from this checkout, the thread/SIMD
    environment variables cleared unless given in ``env``); return the JSON it printed on
    its ``RESULT`` line. A script still running after ``timeout`` seconds -- a hang -- is
    killed with its whole process group (forked children included) and fails the test.
    ``clean_maxrss``: start it through a small launcher (see _LAUNCHER)."""
    full_env = {k: v for k, v in os.environ.items() if k not in _FORWARDED_ENV}
    full_env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
    full_env.update(env or {})
    argv = [sys.executable, "-c", textwrap.dedent(code)]
    if clean_maxrss:
        argv[2:2] = [_LAUNCHER]
    proc = subprocess.Popen(argv, cwd=str(ROOT),
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
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


@pytest.fixture
def restore_threads():
    n = fastloss.get_num_threads()
    yield
    fastloss.set_num_threads(n)


@pytest.fixture
def restore_simd():
    path = _runtime._simd_name()
    yield
    _runtime._use_simd(path)


# --------------------------------------------------------------------------------------
# 6. kernel_info and imports
# --------------------------------------------------------------------------------------

def test_kernel_info_keys_and_types(restore_threads):
    info = fastloss.kernel_info()
    required = {"simd": str, "cpu_avx2_fma": bool, "openmp": bool, "num_threads": int}
    assert set(required) <= set(info), info
    for key, kind in required.items():
        assert type(info[key]) is kind, (key, info[key])
    for key, value in info.items():  # later keys (e.g. cpu_avx512) keep to plain types
        if key == "kernels":  # per family, the kernel names of the active path's table
            assert set(value) == {"cross_entropy", "nll_loss", "softmax", "regression", "binary"}
            assert all(type(n) is str for names in value.values() for n in names), value
            continue
        assert type(value) in (str, bool, int), (key, value)
    assert info["simd"] in ALL_PATHS
    assert info["simd"] == _runtime._simd_name()
    assert info["num_threads"] >= 1
    if info["openmp"]:
        assert info["num_threads"] == fastloss.get_num_threads()
        fastloss.set_num_threads(1)
        assert fastloss.kernel_info()["num_threads"] == 1
    else:
        assert info["num_threads"] == 1
    if "cpu_avx512" in info and info["cpu_avx512"]:
        assert info["cpu_avx2_fma"], "AVX-512 reported without AVX2+FMA"


def test_kernel_info_reports_openmp_on_linux_gcc():
    # setup.py builds with -fopenmp whenever the compiler accepts it (all Linux GCC builds);
    # a silent single-threaded build would otherwise skip every thread test below.
    if sys.platform != "linux" or os.environ.get("FASTLOSS_OPENMP") == "0":
        pytest.skip("OpenMP is only expected on Linux without FASTLOSS_OPENMP=0")
    assert OPENMP


def test_import_does_not_import_torch():
    res = run_python("""
        import json, sys
        import numpy as np
        import fastloss
        fastloss.kernel_info()
        fastloss.cross_entropy_with_grad(np.zeros((4, 3), np.float32), np.zeros(4, np.int64))
        print("RESULT " + json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "torch")))
    """)
    assert res == []


# --------------------------------------------------------------------------------------
# 1. SIMD dispatch
# --------------------------------------------------------------------------------------

_SIMD_SCRIPT = """
import json, warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastloss
    from fastloss import _cross_entropy as ce
    from fastloss._plan import ran
import numpy as np
x = np.random.default_rng(0).standard_normal((256, 1000)).astype(np.float32)
t = np.arange(256) % 1000
_, st = ran(fastloss.cross_entropy_with_grad, x, t)
print("RESULT " + json.dumps({
    "info": fastloss.kernel_info(), "stats_simd": st["simd"],
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]}))
"""


def test_default_simd_path_is_the_widest_supported():
    res = run_python(_SIMD_SCRIPT)
    info = res["info"]
    assert res["warnings"] == []
    expected = ("avx512" if info.get("cpu_avx512") else
                "avx2" if info["cpu_avx2_fma"] else "generic")
    assert info["simd"] == expected == WIDEST_PATH
    assert res["stats_simd"] == info["simd"]
    if info["cpu_avx2_fma"]:
        assert info["simd"] in ("avx2", "avx512")


def test_default_simd_path_in_this_process():
    if os.environ.get("FASTLOSS_SIMD"):
        pytest.skip("FASTLOSS_SIMD is set for this test run")
    assert fastloss.kernel_info()["simd"] == WIDEST_PATH
    if INFO["cpu_avx2_fma"]:
        assert WIDEST_PATH in ("avx2", "avx512")
    x, t, kw, _ = make_case("index", np.float32, "mean")
    assert run_grad(x, t, kw)[2]["simd"] == WIDEST_PATH
    assert run_forward(x, t, kw)[1]["simd"] == WIDEST_PATH


@pytest.mark.parametrize("value, expected", [
    ("generic", "generic"),
    ("  GENERIC ", "generic"),
    ("avx2", "avx2"),
    ("auto", None),
    ("", None),
])
def test_fastloss_simd_environment(value, expected):
    res = run_python(_SIMD_SCRIPT, env={"FASTLOSS_SIMD": value})
    if expected is None:
        expected = WIDEST_PATH
    elif expected not in SUPPORTED_PATHS:  # falls back to the next narrower path
        expected = "generic"
    assert res["warnings"] == []
    assert res["info"]["simd"] == expected
    assert res["stats_simd"] == expected


@pytest.mark.parametrize("value", ["sse9", "avx-2", "neon"])
def test_invalid_fastloss_simd_warns_and_falls_back(value):
    res = run_python(_SIMD_SCRIPT, env={"FASTLOSS_SIMD": value})
    assert any(w.startswith("RuntimeWarning") and "FASTLOSS_SIMD" in w for w in res["warnings"]), res
    assert res["info"]["simd"] == WIDEST_PATH
    assert res["stats_simd"] == WIDEST_PATH


def _tolerances(dtype):
    return dict(rtol=2e-5, atol=2e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-13)


_GENERIC_CASES = [("index", "mean"), ("weight_smooth", "sum"), ("kdim", "none"),
                  ("kdim_prob_weight", "mean"), ("fortran", "sum"), ("index_wide", "none")]


def test_generic_subprocess_matches_default_path(tmp_path):
    """FASTLOSS_SIMD=generic in a fresh process: reported everywhere, 1 and 2 threads give
    the same bytes there too, and its results match this process's default path."""
    out = tmp_path / "generic.npz"
    res = run_python(CASES_SRC + textwrap.dedent(f"""
        import json
        import numpy as np
        import fastloss
        from fastloss import _cross_entropy as ce
        from fastloss._plan import ran
        arrays, report = {{}}, {{"info": fastloss.kernel_info(), "simd": [], "threads": [],
                                 "same_bytes": []}}
        for dtype in ("float32", "float64"):
            for name, reduction in {_GENERIC_CASES!r}:
                x, t, kw, order = make_case(name, dtype, reduction)
                runs = []
                for n in (1, 2):
                    fastloss.set_num_threads(n)
                    g = np.empty(x.shape, x.dtype, order=order)
                    (loss, g), st = ran(fastloss.cross_entropy_with_grad, x, t, out=g, **kw)
                    runs.append((np.asarray(loss), g))
                    report["simd"].append(st["simd"])
                    report["threads"].append(st["threads_used"])
                report["same_bytes"].append(all(a.tobytes() == b.tobytes()
                                                for a, b in zip(*runs)))
                arrays[f"{{name}}-{{dtype}}-loss"], arrays[f"{{name}}-{{dtype}}-grad"] = runs[0]
        np.savez({str(out)!r}, **arrays)
        print("RESULT " + json.dumps(report))
    """), env={"FASTLOSS_SIMD": "generic"})
    assert res["info"]["simd"] == "generic"
    assert set(res["simd"]) == {"generic"}
    assert all(res["same_bytes"]), res["same_bytes"]
    if OPENMP:
        assert res["threads"] == [1, 2] * (len(res["threads"]) // 2)
    saved = np.load(out)
    for dtype in (np.float32, np.float64):
        for name, reduction in _GENERIC_CASES:
            x, t, kw, _ = make_case(name, dtype, reduction)
            loss, g = fastloss.cross_entropy_with_grad(x, t, **kw)
            key = f"{name}-{np.dtype(dtype).name}"
            assert saved[key + "-loss"].dtype == dtype and saved[key + "-grad"].dtype == dtype
            np.testing.assert_allclose(saved[key + "-loss"], loss, **_tolerances(dtype),
                                       err_msg=f"{key}: loss, generic vs {INFO['simd']}")
            np.testing.assert_allclose(saved[key + "-grad"], g, **_tolerances(dtype),
                                       err_msg=f"{key}: gradient, generic vs {INFO['simd']}")


@pytest.mark.parametrize("path", ALL_PATHS)
def test_use_simd_switches_path_at_run_time(path, restore_simd):
    got = _runtime._use_simd(path)
    if path not in SUPPORTED_PATHS:
        assert ALL_PATHS.index(got) < ALL_PATHS.index(path)  # a narrower path it can run
    else:
        assert got == path
    assert fastloss.kernel_info()["simd"] == got == _runtime._simd_name()
    for dtype in (np.float32, np.float64):
        x, t, kw, order = make_case("weight_smooth", dtype, "mean")
        loss_b, g_b, st = run_grad(x, t, kw, order)
        assert st["simd"] == got
        assert run_forward(x, t, kw)[1]["simd"] == got
        _runtime._use_simd("generic")
        loss, g = fastloss.cross_entropy_with_grad(x, t, **kw)
        _runtime._use_simd(path)
        np.testing.assert_allclose(np.frombuffer(loss_b, dtype), np.asarray(loss).ravel(),
                                   **_tolerances(dtype))
        np.testing.assert_allclose(np.frombuffer(g_b, dtype).reshape(x.shape), g,
                                   **_tolerances(dtype))


def test_use_simd_rejects_unknown_names(restore_simd):
    before = _runtime._simd_name()
    with pytest.raises(ValueError, match="unknown SIMD path"):
        _runtime._use_simd("sse9")
    assert _runtime._simd_name() == before
    assert _runtime._use_simd("auto") == WIDEST_PATH


# --------------------------------------------------------------------------------------
# 2. thread count
# --------------------------------------------------------------------------------------

_THREADS_SCRIPT = """
import json, os, warnings
AFFINITY = {affinity!r}
if AFFINITY is not None:
    os.sched_setaffinity(0, AFFINITY)
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    import fastloss
    from fastloss import _cross_entropy as ce
    from fastloss._plan import ran
import numpy as np
x = np.random.default_rng(0).standard_normal((8192, 1000)).astype(np.float32)  # 256 blocks
t = np.arange(8192) % 1000
_, st = ran(fastloss.cross_entropy_with_grad, x, t)
print("RESULT " + json.dumps({{
    "num_threads": fastloss.get_num_threads(), "info": fastloss.kernel_info(),
    "threads_used": st["threads_used"], "threads_active": st["threads_active"],
    "warnings": [f"{{w.category.__name__}}: {{w.message}}" for w in caught]}}))
"""

_NCPU = len(os.sched_getaffinity(0))


@pytest.mark.parametrize("env, expected, warns", [
    ({}, _NCPU, None),
    ({"FASTLOSS_NUM_THREADS": "1"}, 1, None),
    ({"FASTLOSS_NUM_THREADS": "2"}, 2, None),
    ({"FASTLOSS_NUM_THREADS": "3"}, 3, None),  # more than the CPUs: honoured as asked
    ({"OMP_NUM_THREADS": "1"}, 1, None),
    ({"OMP_NUM_THREADS": "2"}, 2, None),
    ({"OMP_NUM_THREADS": "2,1"}, 2, None),  # OpenMP's nested list: the outer level
    ({"FASTLOSS_NUM_THREADS": "2", "OMP_NUM_THREADS": "1"}, 2, None),  # fastloss's wins
    ({"FASTLOSS_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}, 1, None),
    ({"FASTLOSS_NUM_THREADS": "many", "OMP_NUM_THREADS": "1"}, 1, "FASTLOSS_NUM_THREADS"),
    ({"FASTLOSS_NUM_THREADS": "0"}, _NCPU, "FASTLOSS_NUM_THREADS"),
    ({"OMP_NUM_THREADS": "-2"}, _NCPU, "OMP_NUM_THREADS"),
], ids=lambda v: repr(v) if isinstance(v, dict) else None)
def test_thread_count_from_environment(env, expected, warns):
    res = run_python(_THREADS_SCRIPT.format(affinity=None), env=env)
    assert res["num_threads"] == expected, res
    if warns is None:
        assert res["warnings"] == [], res
    else:
        assert any(w.startswith("RuntimeWarning") and warns in w for w in res["warnings"]), res
    if res["info"]["openmp"]:
        assert res["info"]["num_threads"] == expected
        assert res["threads_used"] == expected  # the team: every thread asked for
        # 256 blocks of real work: a second thread surely takes some
        assert min(expected, 2) <= res["threads_active"] <= expected, res
    else:
        assert res["threads_used"] == 1
        assert res["threads_active"] == 1


def test_default_thread_count_follows_cpu_affinity():
    cpu = min(os.sched_getaffinity(0))
    res = run_python(_THREADS_SCRIPT.format(affinity={cpu}))
    assert res["num_threads"] == 1
    assert res["threads_used"] == 1


@pytest.mark.parametrize("bad, exc", [
    (0, ValueError), (-1, ValueError), (np.int64(0), ValueError),
    (1.5, TypeError), (2.0, TypeError), (True, TypeError), (False, TypeError),
    (np.bool_(True), TypeError), ("2", TypeError), (None, TypeError),
])
def test_set_num_threads_validation(bad, exc, restore_threads):
    fastloss.set_num_threads(1)
    with pytest.raises(exc):
        fastloss.set_num_threads(bad)
    assert fastloss.get_num_threads() == 1
    assert type(fastloss.get_num_threads()) is int


def test_set_num_threads_accepts_numpy_integers(restore_threads):
    fastloss.set_num_threads(np.int32(2))
    assert fastloss.get_num_threads() == 2 and type(fastloss.get_num_threads()) is int
    fastloss.set_num_threads(1)
    assert fastloss.get_num_threads() == 1


@needs_openmp
@pytest.mark.parametrize("case", CASE_NAMES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_one_and_two_threads_give_identical_bytes(case, reduction, dtype, restore_threads):
    x, t, kw, order = make_case(case, dtype, reduction)
    fastloss.set_num_threads(1)
    loss1, g1, st1 = run_grad(x, t, kw, order)
    fwd1, fst1 = run_forward(x, t, kw)
    fastloss.set_num_threads(2)
    loss2, g2, st2 = run_grad(x, t, kw, order)
    fwd2, fst2 = run_forward(x, t, kw)
    loss2b, g2b, _ = run_grad(x, t, kw, order)
    assert (st1["threads_used"], fst1["threads_used"]) == (1, 1)
    assert (st2["threads_used"], fst2["threads_used"]) == (2, 2)
    assert loss1 == loss2, "loss differs between 1 and 2 threads"
    assert g1 == g2, "gradient differs between 1 and 2 threads"
    assert fwd1 == fwd2, "cross_entropy differs between 1 and 2 threads"
    if case != "fortran_in_c_out":
        # (with a C-ordered out= for F-ordered logits the gradient pass takes the strided
        # layout and cross_entropy the column one: a different summation order, values
        # within an ulp but not the same bytes)
        assert fwd1 == loss1, "cross_entropy and cross_entropy_with_grad disagree"
    assert (loss2b, g2b) == (loss2, g2), "a repeated call differs"


@needs_openmp
@pytest.mark.parametrize("case", ["index", "kdim_prob_weight", "fortran", "fortran_in_c_out"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", ALL_PATHS)
def test_identical_bytes_on_every_simd_path(path, dtype, case, restore_threads, restore_simd):
    if path not in SUPPORTED_PATHS:
        pytest.skip(f"this CPU does not run the {path} path")
    assert _runtime._use_simd(path) == path
    x, t, kw, order = make_case(case, dtype, "sum")
    fastloss.set_num_threads(1)
    r1 = run_grad(x, t, kw, order)
    fastloss.set_num_threads(2)
    r2 = run_grad(x, t, kw, order)
    assert (r1[2]["threads_used"], r2[2]["threads_used"]) == (1, 2)
    assert r1[2]["simd"] == r2[2]["simd"] == path
    assert r1[2]["kernel"] == r2[2]["kernel"] and r1[2]["kernel"].startswith("cross_entropy_")
    assert r1[2]["threads_active"] == 1 and 1 <= r2[2]["threads_active"] <= 2
    assert r1[:2] == r2[:2]


@needs_openmp
def test_repeated_calls_are_bitwise_identical(restore_threads):
    fastloss.set_num_threads(2)
    for dtype in (np.float32, np.float64):
        x, t, kw, order = make_case("kdim", dtype, "mean")
        first = run_grad(x, t, kw, order)
        for _ in range(4):
            again = run_grad(x, t, kw, order)
            # the results and what ran; threads_active (1 or 2: which threads the dynamic
            # schedule gave a block) depends on the machine's load
            assert again[:2] == first[:2]
            assert {k: v for k, v in again[2].items() if k != "threads_active"} == \
                {k: v for k, v in first[2].items() if k != "threads_active"}
        loss, g = fastloss.cross_entropy_with_grad(x, t, **kw)  # out=None
        assert (_loss_bytes(loss), g.tobytes()) == first[:2]


@needs_openmp
@pytest.mark.parametrize("shape, expected", [
    ((64, 10), 1),          # 640 elements: one block
    ((32, 1024), 1),        # exactly one block of 32768 elements
    ((33, 1024), 2),        # just over: two blocks
    ((40000,), 1),          # 1-D input: one position
    ((2, 40000), 2),        # C above the block: one position per block
    ((1, 3, 100, 100), 1),  # 30000 elements: one block (10928 positions of 3)
    ((1, 3, 200, 100), 2),  # 20000 positions of 3: two blocks
])
def test_threads_used_follows_the_block_count(shape, expected, restore_threads):
    fastloss.set_num_threads(2)
    rng = np.random.default_rng(1)
    x = rng.standard_normal(shape).astype(np.float32)
    C = shape[0] if len(shape) == 1 else shape[1]
    t = (np.array(C - 1) if len(shape) == 1 else
         rng.integers(0, C, (shape[0],) + shape[2:]))
    (loss2, g2), st2 = ran(fastloss.cross_entropy_with_grad, x, t)
    assert st2["threads_used"] == expected
    fastloss.set_num_threads(1)
    (loss1, g1), st1 = ran(fastloss.cross_entropy_with_grad, x, t)
    assert st1["threads_used"] == 1
    assert _loss_bytes(loss1) == _loss_bytes(loss2) and g1.tobytes() == g2.tobytes()


# --------------------------------------------------------------------------------------
# 5. peak memory, in a fresh subprocess
# --------------------------------------------------------------------------------------

MiB = 1024  # ru_maxrss is in KiB on Linux

_MEMORY_SCRIPT = """
import json, resource
import numpy as np
import fastloss


def peak():                      # KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def status(key):                 # KiB: VmRSS (now) or VmHWM (this image's peak)
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])


def rss():
    return status("VmRSS")


xs = np.random.default_rng(1).standard_normal((8, 16)).astype(np.float32)
ts = np.arange(8) % 16
fastloss.cross_entropy_with_grad(xs, ts)
fastloss.cross_entropy(xs, ts)
fastloss.cross_entropy_with_grad(xs, ts, out=np.empty_like(xs))
rep = {{"import_peak": peak(), "threads": fastloss.get_num_threads()}}

N, C = 4096, 8192
x = np.empty((N, C), np.float32)
np.random.default_rng(0).standard_normal(out=x, dtype=np.float32)  # no temporary
t = np.random.default_rng(1).integers(0, C, N)
if {with_out!r}:
    g = np.empty_like(x)
    g.fill(0.0)                  # touched: resident
rep["baseline_peak"], rep["baseline_rss"] = peak(), rss()
steps = {steps!r}
for step in steps:
    if step == "grad_out":
        loss, gg = fastloss.cross_entropy_with_grad(x, t, out=g)
        assert gg is g
    elif step == "grad_out_none":
        loss, gg = fastloss.cross_entropy_with_grad(x, t, out=g, reduction="none")
    elif step == "forward":
        loss = fastloss.cross_entropy(x, t)
    elif step == "forward_none":
        loss = fastloss.cross_entropy(x, t, reduction="none")
    elif step == "grad_alloc":
        loss, gg = fastloss.cross_entropy_with_grad(x, t)
        rep["grad_nbytes"] = gg.nbytes
    rep[step] = peak()
rep["final_hwm"] = status("VmHWM")
print("RESULT " + json.dumps(rep))
"""


def _memory_report(res, steps):
    base = res["baseline_peak"]
    lines = [f"import+warm-up peak {res['import_peak'] / MiB:.1f} MiB, "
             f"baseline peak {base / MiB:.1f} MiB (RSS {res['baseline_rss'] / MiB:.1f} MiB), "
             f"{res['threads']} threads"]
    lines += [f"  (/proc VmHWM at the end: {res['final_hwm'] / MiB:.1f} MiB)"]
    lines += [f"  {s}: peak {res[s] / MiB:.1f} MiB, extra {(res[s] - base) / MiB:+.2f} MiB"
              for s in steps]
    report = "\n".join(lines)
    print(report)
    return report


def test_peak_memory_without_n_by_c_allocation():
    steps = ["grad_out", "forward", "grad_out_none", "forward_none"]
    res = run_python(_MEMORY_SCRIPT.format(with_out=True, steps=steps), clean_maxrss=True)
    report = _memory_report(res, steps)
    base = res["baseline_peak"]
    # the inputs and g (256 MiB) are resident, and the baseline peak is that, not more:
    # otherwise an allocation during the calls could hide below an older, higher peak
    assert base >= 256 * MiB, report
    assert base - res["baseline_rss"] < 8 * MiB, report
    for step in steps:
        assert res[step] - base < 8 * MiB, f"{step}: an N x C temporary?\n{report}"


def test_peak_memory_allocating_gradient():
    steps = ["grad_alloc"]
    res = run_python(_MEMORY_SCRIPT.format(with_out=False, steps=steps), clean_maxrss=True)
    report = _memory_report(res, steps)
    base = res["baseline_peak"]
    assert base - res["baseline_rss"] < 8 * MiB, report
    grad_kib = res["grad_nbytes"] // 1024
    assert grad_kib == 128 * MiB
    assert res["grad_alloc"] - base <= grad_kib + 8 * MiB, f"more than the gradient\n{report}"


# --------------------------------------------------------------------------------------
# 3. the kernel that ran (csrc dispatch tables), and the threads that really ran a block
# --------------------------------------------------------------------------------------

from fastloss import _binary as _bin  # noqa: E402
from fastloss import _nll_loss as _nll  # noqa: E402
from fastloss import _regression as _reg  # noqa: E402
from fastloss import _softmax as _sm  # noqa: E402

_TS = {np.float32: "f32", np.float64: "f64"}


def _ce_layout_input(layout, dtype):
    rng = np.random.default_rng(3)
    if layout == "rows":
        x = rng.standard_normal((40, 50)).astype(dtype)
    elif layout == "cols":
        x = np.asfortranarray(rng.standard_normal((40, 50)).astype(dtype))
    else:  # neither axis contiguous
        x = rng.standard_normal((80, 100)).astype(dtype)[::2, ::2]
    return x, rng.integers(0, 50, 40)


@pytest.mark.parametrize("layout", ["rows", "cols", "strided"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("path", ALL_PATHS)
def test_stats_name_the_kernel_that_ran(path, dtype, layout, restore_simd):
    """stats["kernel"] names the dispatch-table entry that ran: <family>_<variant>_<dtype>_<path>
    (dtype-only scalar loops: <family>_<variant>_<dtype>), for every forced path."""
    if path not in SUPPORTED_PATHS:
        pytest.skip(f"this CPU does not run the {path} path")
    assert _runtime._use_simd(path) == path
    ts = _TS[dtype]
    suffix = f"_{ts}" if layout == "strided" else f"_{ts}_{path}"
    x, t = _ce_layout_input(layout, dtype)
    for want_grad in (True, False):
        _, st = ran(fastloss.cross_entropy_with_grad if want_grad else fastloss.cross_entropy, x, t)
        assert st["kernel"] == f"cross_entropy_{layout}{suffix}", st
    _, st = ran(fastloss.log_softmax, x, axis=1)
    assert st["kernel"] == f"softmax_{layout}{suffix}", st
    _, st = ran(fastloss.nll_loss_with_grad, x, t)
    assert st["kernel"] == f"nll_loss_backward_{ts}", st
    _, st = ran(fastloss.nll_loss, x, t)
    assert st["kernel"] == f"nll_loss_forward_{ts}", st
    y = np.random.default_rng(4).random(x.shape).astype(dtype)
    for name, kernel in [("mse_loss", "mse"), ("l1_loss", "l1"), ("smooth_l1_loss", "smooth_l1"),
                         ("huber_loss", "huber")]:
        _, st = ran(getattr(fastloss, name + "_with_grad"), x, y)
        assert st["kernel"] == f"regression_{kernel}_{ts}_{path}", st
    p = np.clip(y, 0.01, 0.99)
    _, st = ran(fastloss.binary_cross_entropy_with_grad, p, y)
    assert st["kernel"] == f"binary_bce_{ts}_{path}", st
    _, st = ran(fastloss.binary_cross_entropy_with_logits_with_grad, x, y)
    assert st["kernel"] == f"binary_bce_logits_{ts}_{path}", st
    _, st = ran(fastloss.kl_div_with_grad, x, y, log_target=False)
    assert st["kernel"] == f"binary_kl_{ts}_{path}", st
    _, st = ran(fastloss.kl_div_with_grad, x, y, log_target=True)
    assert st["kernel"] == f"binary_kl_log_{ts}_{path}", st
    # kernel_info lists the active path's table, which holds every kernel that ran above
    kernels = fastloss.kernel_info()["kernels"]
    assert f"cross_entropy_{layout}{suffix}" in kernels["cross_entropy"]
    assert all(n.endswith(f"_{path}") for n in kernels["binary"] + kernels["regression"])


def test_stats_kernel_is_none_when_nothing_ran():
    x = np.zeros((0, 5), np.float32)
    _, st = ran(fastloss.cross_entropy_with_grad, x, np.zeros(0, np.int64))
    assert st["kernel"] is None and st["threads_used"] == 1 and st["threads_active"] == 0


@needs_openmp
@pytest.mark.parametrize("family", ["cross_entropy", "nll_loss", "softmax", "regression", "binary"])
def test_two_threads_each_run_a_block(family, restore_threads):
    """With 2 threads and hundreds of blocks of real work, the team has 2 threads and both
    ran at least one block (counted inside the parallel region)."""
    fastloss.set_num_threads(2)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((8192, 1024)).astype(np.float32)  # 256 blocks of 32768 elements
    t = rng.integers(0, 1024, 8192)
    y = rng.random(x.shape).astype(np.float32)
    call = {"cross_entropy": lambda: ran(fastloss.cross_entropy_with_grad, x, t),
            "nll_loss": lambda: ran(fastloss.nll_loss_with_grad, x, t),
            "softmax": lambda: ran(fastloss.softmax, x),
            "regression": lambda: ran(fastloss.huber_loss_with_grad, x, y),
            "binary": lambda: ran(fastloss.binary_cross_entropy_with_logits_with_grad, x, y)}[family]
    _, st = call()
    assert st["threads_used"] == 2, st
    assert st["threads_active"] == 2, st
