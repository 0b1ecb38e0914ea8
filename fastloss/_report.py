"""The cross-entropy speed report of ``python -m fastloss``: fastloss against every installed
peer and against the memory limit, measured in one process.

Protocol (what every figure means)
----------------------------------
float32 logits, int64 class-index targets, reduction "mean". Each figure is the median over
``rounds`` rounds of the best of ``best_of`` calls (tiny calls are timed in batches); the
implementations take turns within a round, so a ratio compares figures taken side by side.
A ratio is the median of its per-round ratios. Every side runs on the same thread count,
set before anything is timed.

- fastloss: ``cross_entropy(x, t)`` (forward) and ``cross_entropy_with_grad(x, t, out=g)``
  with ``g`` preallocated (fwd+bwd).
- torch: ``F.cross_entropy`` under ``no_grad`` (forward); ``F.cross_entropy(x, t).backward()``
  with ``x.grad`` reset (fwd+bwd). torch.compile: the same through ``torch.compile``, warmed.
- JAX: ``jax.jit`` of optax's integer-label cross-entropy (mean) and ``jax.jit(jax.value_and_grad(...))``,
  on JAX arrays, with ``block_until_ready``.
- scikit-learn: ``HalfMultinomialLoss.loss`` / ``loss_gradient`` into preallocated outputs
  (``n_threads`` set; it returns per-sample values, which is the whole of its work).
- the NumPy reference (fastloss.reference), at the shapes where it takes under a second.
- the memory limit: "copy" is ``torch.Tensor.copy_`` between two preallocated arrays of the
  input's size, "read" is ``torch.sum`` of the input, both on the same thread count (without
  torch: ``np.copyto`` and ``x.max()``, one thread, said so in the output).

Half precision (``run_half``: the "half precision" section; bench/ times the same calls)
---------------------------------------------------------------------------------------
The same measure (median of ``rounds`` rounds of best-of-``best_of``, the sides taking turns
within a round, a ratio the median of its per-round ratios), each half-precision figure
against a float32 one taken in the same rounds, every side on the same thread count:

- cross_entropy: ``cross_entropy(x, t)`` and ``cross_entropy_with_grad(x, t, out=g)`` with x
  in bfloat16 (``ml_dtypes.bfloat16``) and float16, as a ratio to fastloss's own float32 time
  at the same shape (the same values, rounded). Targets: forward <= 0.75x, fwd+bwd <= 0.65x.
- fastloss.torch: ``fastloss.torch.cross_entropy(x, t).backward()`` with x a bfloat16 leaf
  (``x.grad`` reset each call) against torch's ``F.cross_entropy`` on the same tensor, as
  torch's time over ours. Targets: >= 10x at 2048x32000, >= 2x at 8192x1000.
- the elementwise losses: every ``*_with_grad`` (reduction "mean", ``out=`` preallocated)
  with bfloat16 input and target against its float32 run, as float32's time over
  bfloat16's. Target: >= 1.6x (fastloss computes these in float32 on the half operands).

Without ml_dtypes the NumPy bfloat16 figures are skipped, without torch the fastloss.torch
ones, each with one line saying so.
"""
import datetime
import json
import os
import platform
import statistics
import time

import numpy as np

import fastloss
from fastloss import reference

# (N, C): the 8.2M-element sweep over the class count, the two large vocabularies, in cache
SWEEP = [(65536, 125), (32768, 250), (8192, 1000), (2048, 4000), (2048, 32000), (512, 128256)]
IN_CACHE = [(64, 10), (64, 1000), (1024, 1000)]
QUICK = [(64, 10), (1024, 1000)]
ONE_THREAD = [(8192, 1000), (2048, 32000)]
LIMITS = ("copy", "read")


def best_seconds(fn, best_of, budget_s=1.5):
    """The best time of ``best_of`` calls of fn (batched when a call is under 1 ms; fewer
    calls, at least two, once ``budget_s`` is spent)."""
    fn()  # warm-up: page faults, thread pools, compiled code
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    inner = max(1, int(1e-3 / max(once, 1e-7))) if once < 1e-3 else 1
    best, start = float("inf"), time.perf_counter()
    for k in range(best_of):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - t0) / inner)
        if k >= 1 and time.perf_counter() - start > budget_s:
            break
    return best


def measure(fns, rounds, best_of):
    """{name: [best seconds of each round]}: the functions take turns within each round."""
    times = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            times[name].append(best_seconds(fn, best_of))
    return times


def median_ratio(num, den):
    return statistics.median(a / b for a, b in zip(num, den))


class Peers:
    """The installed peers, imported once, each set to ``threads`` threads."""

    def __init__(self, threads, use_torch=True, use_compile=True, use_jax=True, use_sklearn=True):
        self.threads, self.skipped = threads, []
        self.torch = self._import("torch", "torch") if use_torch else None
        if self.torch is not None:
            self.torch.set_num_threads(threads)
        self.compile = self.torch is not None and use_compile
        self.jax = self.optax = None
        if use_jax:
            if threads < (os.cpu_count() or threads) and "XLA_FLAGS" not in os.environ:
                # XLA's CPU thread pool is sized when jax is imported
                os.environ["XLA_FLAGS"] = ("--xla_cpu_multi_thread_eigen=false "
                                           f"intra_op_parallelism_threads={threads}")
            self.jax = self._import("jax", "JAX")
            self.optax = self._import("optax", "optax (JAX's losses)") if self.jax is not None else None
            if self.optax is None:
                self.jax = None
        self.sklearn = None
        if use_sklearn:
            loss = self._import("sklearn._loss.loss", "scikit-learn")
            self.sklearn = None if loss is None else loss.HalfMultinomialLoss

    def _import(self, module, label):
        import importlib

        try:
            return importlib.import_module(module)
        except ImportError:
            self.skipped.append(f"{label} is not installed: skipped")
            return None

    def versions(self):
        v = {"fastloss": fastloss.__version__, "numpy": np.__version__}
        if self.torch is not None:
            v["torch"] = self.torch.__version__
        if self.jax is not None:
            v["jax"] = self.jax.__version__
        if self.sklearn is not None:
            from importlib.metadata import version

            v["scikit-learn"] = version("scikit-learn")
        return v

    def limit_fns(self, x):
        """The memory limit's passes over an array like x: {"copy": fn, "read": fn}."""
        if self.torch is not None:
            src = self.torch.from_numpy(x)
            dst = self.torch.empty_like(src)
            return {"copy": lambda: dst.copy_(src), "read": lambda: self.torch.sum(src)}
        y = np.empty_like(x)
        return {"copy": lambda: np.copyto(y, x), "read": lambda: x.max()}

    def case_fns(self, x, t, reference_ok):
        """({name: forward fn}, {name: fwd+bwd fn}) for every installed peer at (x, t)."""
        g = np.empty_like(x)
        fwd = {"fastloss": lambda: fastloss.cross_entropy(x, t)}
        fb = {"fastloss": lambda: fastloss.cross_entropy_with_grad(x, t, out=g)}
        if reference_ok:
            fwd["numpy reference"] = lambda: reference.cross_entropy(x, t)
            fb["numpy reference"] = lambda: reference.cross_entropy_with_grad(x, t)
        if self.torch is not None:
            torch, F = self.torch, self.torch.nn.functional
            xt, tt = torch.from_numpy(x), torch.from_numpy(t)
            xg = xt.clone().requires_grad_()
            if self.compile:
                # compiled afresh for each shape, as a program with one shape would be (one
                # cache across shapes hits dynamo's recompile limit and falls back to eager)
                torch._dynamo.reset()
            for name, f in [("torch", F.cross_entropy)] + (
                    [("torch.compile", torch.compile(F.cross_entropy))] if self.compile else []):
                fwd[name] = _no_grad(torch, f, xt, tt)
                fb[name] = _backward(f, xg, tt)
        if self.jax is not None:
            jax, optax = self.jax, self.optax

            def mean_ce(z, labels):
                return optax.softmax_cross_entropy_with_integer_labels(z, labels).mean()

            xj, tj = jax.numpy.asarray(x), jax.numpy.asarray(t.astype(np.int32))
            jf, jfb = jax.jit(mean_ce), jax.jit(jax.value_and_grad(mean_ce))
            fwd["JAX"] = lambda: jf(xj, tj).block_until_ready()
            fb["JAX"] = lambda: jax.block_until_ready(jfb(xj, tj))
        if self.sklearn is not None:
            loss = self.sklearn(n_classes=x.shape[1])
            yt = t.astype(np.float32)
            lo, go = np.empty(x.shape[0], np.float32), np.empty_like(x)
            fwd["scikit-learn"] = lambda: loss.loss(yt, x, loss_out=lo, n_threads=self.threads)
            fb["scikit-learn"] = lambda: loss.loss_gradient(yt, x, loss_out=lo, gradient_out=go,
                                                            n_threads=self.threads)
        return fwd, fb


def _no_grad(torch, f, x, t):
    def run():
        with torch.no_grad():
            return f(x, t)
    return run


def _backward(f, x, t):
    def run():
        x.grad = None
        f(x, t).backward()
    return run


def measure_shape(peers, n, c, rounds, best_of, seed=0):
    """Every figure at one (N, C): {"fwd": {name: ms}, "fwd_bwd": {...}, "limits": {...},
    "ratios": {...}} (medians over the rounds; see the module docstring)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, n)
    fwd, fb = peers.case_fns(x, t, reference_ok=n * c <= 1 << 21)
    limits = peers.limit_fns(x)
    fns = {**{("fwd", k): f for k, f in fwd.items()}, **{("fwd_bwd", k): f for k, f in fb.items()},
           **{("limit", k): f for k, f in limits.items()}}
    raw = measure(fns, rounds, best_of)
    row = {"shape": f"{n}x{c}", "n": n, "c": c, "threads": peers.threads,
           "fwd": {}, "fwd_bwd": {}, "limits": {}, "ratios": {}}
    for (kind, name), secs in raw.items():
        row["limits" if kind == "limit" else kind][name] = statistics.median(secs) * 1e3
    ours_f, ours_fb = raw[("fwd", "fastloss")], raw[("fwd_bwd", "fastloss")]
    for lim in LIMITS:
        row["ratios"][f"fwd / {lim}"] = median_ratio(ours_f, raw[("limit", lim)])
        row["ratios"][f"fwd_bwd / {lim}"] = median_ratio(ours_fb, raw[("limit", lim)])
    for name in fwd:
        if name != "fastloss":
            row["ratios"][f"{name} fwd / fastloss"] = median_ratio(raw[("fwd", name)], ours_f)
            row["ratios"][f"{name} fwd_bwd / fastloss"] = median_ratio(raw[("fwd_bwd", name)], ours_fb)
    return row


def format_row(row):
    """One line: fastloss's times, its ratios to the copy pass, and how much slower each peer
    is (forward / fwd+bwd)."""
    r = row["ratios"]
    peers = ", ".join(f"{p} {r[p + ' fwd / fastloss']:.1f}x/{r[p + ' fwd_bwd / fastloss']:.1f}x"
                      for p in row["fwd"] if p != "fastloss")
    return (f"{row['shape']:>12} {row['threads']}t | fwd {row['fwd']['fastloss']:9.4f} ms, "
            f"fwd+bwd {row['fwd_bwd']['fastloss']:9.4f} ms | / copy: fwd {r['fwd / copy']:.2f}x, "
            f"fwd+bwd {r['fwd_bwd / copy']:.2f}x | peers' time / ours: {peers or '-'}")


def machine():
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    info = fastloss.kernel_info()
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": info["simd"], "python": platform.python_version(),
            "date": datetime.date.today().isoformat()}


def run(peers, shapes, rounds, best_of, one_thread_shapes=(), echo=print):
    """The whole report: a row per shape (echoed as it completes), then the one-thread rows
    (fastloss, torch eager and the limits)."""
    echo(f"cross_entropy float32, mean, index targets; median of {rounds} rounds of best-of-{best_of}; "
         f"{peers.threads} threads on every side")
    for line in peers.skipped:
        echo(f"  {line}")
    if peers.torch is None:
        echo("  memory limit without torch: np.copyto / x.max() on one thread")
    rows = []
    for n, c in shapes:
        rows.append(measure_shape(peers, n, c, rounds, best_of))
        echo(format_row(rows[-1]))
    one = []
    if one_thread_shapes:
        solo = Peers(1, use_torch=peers.torch is not None, use_compile=False, use_jax=False,
                     use_sklearn=False)
        echo("one thread on every side:")
        before = fastloss.get_num_threads()
        fastloss.set_num_threads(1)
        try:
            for n, c in one_thread_shapes:
                one.append(measure_shape(solo, n, c, rounds, best_of))
                echo(format_row(one[-1]))
        finally:
            fastloss.set_num_threads(before)
            if peers.torch is not None:
                peers.torch.set_num_threads(peers.threads)
    return {"machine": machine(), "versions": peers.versions(), "threads": peers.threads,
            "rounds": rounds, "best_of": best_of, "rows": rows, "one_thread": one,
            "skipped": peers.skipped, "protocol": __doc__}


def write_json(report, path):
    with open(path, "w") as f:
        json.dump(report, f, indent=1)


def plot(report, path):
    """Time per element against the class count, forward and fwd+bwd, one line per
    implementation and one for the memory limit (the copy pass), log axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    big = [r for r in report["rows"] if r["n"] * r["c"] >= 1 << 22]  # the sweep, not in cache
    rows = sorted(big or report["rows"], key=lambda r: r["c"])
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    for ax, kind, title in ((axes[0], "fwd", "forward"), (axes[1], "fwd_bwd", "forward + backward")):
        names = [n for n in rows[0][kind]] if rows else []
        for name in names:
            pts = [(r["c"], r[kind][name] * 1e6 / (r["n"] * r["c"])) for r in rows if name in r[kind]]
            ax.plot(*zip(*pts), marker="o", lw=2.2 if name == "fastloss" else 1.2, label=name)
        lim = [(r["c"], r["limits"]["copy"] * 1e6 / (r["n"] * r["c"])) for r in rows]
        if lim:
            ax.plot(*zip(*lim), "k--", lw=1.5, label="memory limit (copy pass)")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("classes C (N x C = 8.2M elements up to C = 4000, then 65.5M)")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel("ns per logit")
    axes[1].legend(fontsize=8)
    m, v = report["machine"], report["versions"]
    fig.suptitle(f"cross_entropy float32, mean: {m['cpu']} ({m['simd']}), {report['threads']} threads, "
                 + ", ".join(f"{k} {s}" for k, s in v.items()) + f", {m['date']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- half precision: bfloat16 and float16 against float32 (see the module docstring) ----

HALF_CE = [(8192, 1000), (2048, 32000), (512, 128256)]
HALF_TORCH = [(8192, 1000), (2048, 32000)]
HALF_ELEMENTWISE_N = 1 << 24
# --quick: in-cache and mid-size shapes, 1M elements
HALF_QUICK_CE = [(1024, 1000), (256, 32000)]
HALF_QUICK_TORCH = [(1024, 1000)]
HALF_QUICK_ELEMENTWISE_N = 1 << 20
ELEMENTWISE = ["mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss", "binary_cross_entropy",
               "binary_cross_entropy_with_logits", "kl_div"]
# the issue's targets, (comparison, bound) on the figure's ratio, at the issue's shapes and
# size (HALF_CE, HALF_TORCH, HALF_ELEMENTWISE_N; another shape's figure has none)
HALF_CE_TARGETS = {"fwd": ("<=", 0.75), "fwd_bwd": ("<=", 0.65)}
HALF_TORCH_TARGETS = {(2048, 32000): (">=", 10.0), (8192, 1000): (">=", 2.0)}
HALF_ELEMENTWISE_TARGET = (">=", 1.6)


def half_dtypes():
    """({"bfloat16": dtype, "float16": dtype} as available, [one line per skipped dtype]):
    bfloat16 is ml_dtypes' (NumPy has none), optional."""
    import importlib

    dtypes, skipped = {}, []
    try:
        dtypes["bfloat16"] = np.dtype(importlib.import_module("ml_dtypes").bfloat16)
    except ImportError:
        skipped.append('ml_dtypes is not installed: the NumPy bfloat16 figures skipped (pip install ".[bf16]")')
    dtypes["float16"] = np.dtype(np.float16)
    return dtypes, skipped


def half_case_fns(x, t, dtypes):
    """({dtype name: forward fn}, {dtype name: fwd+bwd fn}) of fastloss's cross_entropy at
    float32 x (key "float32") and at x rounded to each of ``dtypes`` ({name: dtype})."""
    fwd, fb = {}, {}
    for name, xh in [("float32", x)] + [(k, x.astype(dt)) for k, dt in dtypes.items()]:
        g = np.empty_like(xh)
        fwd[name] = lambda xh=xh: fastloss.cross_entropy(xh, t)
        fb[name] = lambda xh=xh, g=g: fastloss.cross_entropy_with_grad(xh, t, out=g)
    return fwd, fb


def half_torch_fns(torch, x, t):
    """{"fastloss.torch": fn, "torch": fn}: a bfloat16 fwd+bwd through autograd,
    ``cross_entropy(x, t).backward()`` with ``x.grad`` reset, on one bfloat16 leaf made from
    float32 x (NumPy)."""
    import fastloss.torch as flt

    xb = torch.from_numpy(x).to(torch.bfloat16).requires_grad_()
    tt = torch.from_numpy(t)
    return {"fastloss.torch": _backward(flt.cross_entropy, xb, tt),
            "torch": _backward(torch.nn.functional.cross_entropy, xb, tt)}


def elementwise_inputs(name, n, seed=0):
    """float32 (input, target) of n elements for the elementwise loss ``name``: logits or
    values for the regression losses and the logits form, probabilities for
    binary_cross_entropy, log-probabilities against probabilities for kl_div."""
    rng = np.random.default_rng(seed)
    if name == "binary_cross_entropy":
        return (rng.random(n, dtype=np.float32) * np.float32(0.98) + np.float32(0.01),
                (rng.random(n) < 0.5).astype(np.float32))
    if name == "binary_cross_entropy_with_logits":
        return rng.standard_normal(n, dtype=np.float32), (rng.random(n) < 0.5).astype(np.float32)
    if name == "kl_div":
        return (np.log(rng.random(n, dtype=np.float32) * np.float32(0.999) + np.float32(0.001)),
                rng.random(n, dtype=np.float32))
    return rng.standard_normal(n, dtype=np.float32), rng.standard_normal(n, dtype=np.float32)


def half_elementwise_fns(name, a, b, dtypes):
    """{dtype name: fn}: ``NAME_with_grad(a, b, reduction="mean", out=g)`` on the float32
    operands (key "float32") and on both rounded to each of ``dtypes``."""
    fn = getattr(fastloss, name + "_with_grad")
    fns = {}
    for key, (ah, bh) in [("float32", (a, b))] + [(k, (a.astype(dt), b.astype(dt))) for k, dt in dtypes.items()]:
        g = np.empty_like(ah)
        fns[key] = lambda ah=ah, bh=bh, g=g: fn(ah, bh, reduction="mean", out=g)
    return fns


def _figure(label, ms, base_label, base_ms, ratio, ratio_of, target):
    return {"figure": label, "ms": ms, "baseline": base_label, "baseline_ms": base_ms,
            "ratio": ratio, "ratio_of": ratio_of,
            "target": None if target is None else f"{target[0]} {target[1]:g}",
            "met": None if target is None else bool(ratio <= target[1] if target[0] == "<=" else ratio >= target[1])}


def format_figure(fig):
    """One line per figure: its time, its baseline's, the ratio and the target (met or not)."""
    if fig["target"] is None:
        verdict = "no target at this shape"
    else:
        verdict = f"target {fig['target']}x: {'met' if fig['met'] else 'NOT met'}"
    return (f"{fig['figure']:>58} | {fig['ms']:9.4f} ms, {fig['baseline']} {fig['baseline_ms']:9.4f} ms | "
            f"{fig['ratio_of']} {fig['ratio']:5.2f}x ({verdict})")


def measure_half_ce(threads, n, c, dtypes, rounds, best_of, seed=0):
    """The cross_entropy row at one (N, C): {"fwd": {dtype: ms}, "fwd_bwd": {...},
    "ratios": {"<dtype> fwd / float32": r, ...}, "figures": [...]}, float32 included."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c), dtype=np.float32)
    t = rng.integers(0, c, n)
    fwd, fb = half_case_fns(x, t, dtypes)
    del x
    raw = measure({**{("fwd", k): f for k, f in fwd.items()}, **{("fwd_bwd", k): f for k, f in fb.items()}},
                  rounds, best_of)
    del fwd, fb  # free the shape's arrays before the next
    shape = f"{n}x{c}"
    row = {"shape": shape, "n": n, "c": c, "threads": threads, "fwd": {}, "fwd_bwd": {}, "ratios": {}, "figures": []}
    for (kind, name), secs in raw.items():
        row[kind][name] = statistics.median(secs) * 1e3
    for name in dtypes:
        for kind, call in (("fwd", "cross_entropy"), ("fwd_bwd", "cross_entropy_with_grad")):
            r = median_ratio(raw[(kind, name)], raw[(kind, "float32")])
            row["ratios"][f"{name} {kind} / float32"] = r
            row["figures"].append(_figure(f"{call} {name} {shape} {threads}t", row[kind][name], "float32",
                                          row[kind]["float32"], r, "time / float32's",
                                          HALF_CE_TARGETS[kind] if (n, c) in HALF_CE else None))
    return row


def measure_half_torch(torch, threads, n, c, rounds, best_of, seed=0):
    """The fastloss.torch bfloat16 row at one (N, C): {"fwd_bwd": {"fastloss.torch": ms,
    "torch": ms}, "ratios": {"torch fwd_bwd / fastloss.torch": r}, "figures": [...]}."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c), dtype=np.float32)
    fns = half_torch_fns(torch, x, rng.integers(0, c, n))
    del x
    raw = measure(fns, rounds, best_of)
    del fns
    shape = f"{n}x{c}"
    ms = {k: statistics.median(v) * 1e3 for k, v in raw.items()}
    r = median_ratio(raw["torch"], raw["fastloss.torch"])
    fig = _figure(f"fastloss.torch.cross_entropy bf16 fwd+bwd {shape} {threads}t", ms["fastloss.torch"],
                  "torch", ms["torch"], r, "torch's time / ours", HALF_TORCH_TARGETS.get((n, c)))
    return {"shape": shape, "n": n, "c": c, "threads": threads, "dtype": "bfloat16", "fwd_bwd": ms,
            "ratios": {"torch fwd_bwd / fastloss.torch": r}, "figures": [fig]}


def measure_half_elementwise(threads, name, n, dtypes, rounds, best_of, seed=0):
    """One elementwise loss's row at n elements: {"fwd_bwd": {dtype: ms}, "ratios":
    {"float32 / <dtype>": r}, "figures": [...]}, float32 included."""
    a, b = elementwise_inputs(name, n, seed)
    fns = half_elementwise_fns(name, a, b, dtypes)
    del a, b
    raw = measure(fns, rounds, best_of)
    del fns
    ms = {k: statistics.median(v) * 1e3 for k, v in raw.items()}
    size = f"{n >> 20}M" if n >= 1 << 20 else str(n)
    row = {"name": name, "n": n, "threads": threads, "reduction": "mean", "fwd_bwd": ms, "ratios": {}, "figures": []}
    for dt in dtypes:
        r = median_ratio(raw["float32"], raw[dt])
        row["ratios"][f"float32 / {dt}"] = r
        row["figures"].append(_figure(f"{name}_with_grad {dt} {size} {threads}t", ms[dt], "float32",
                                      ms["float32"], r, "float32's time / its",
                                      HALF_ELEMENTWISE_TARGET if n == HALF_ELEMENTWISE_N else None))
    return row


def run_half(peers, rounds, best_of, ce_shapes=HALF_CE, torch_shapes=HALF_TORCH,
             elementwise_n=HALF_ELEMENTWISE_N, elementwise_rounds=None, elementwise_best_of=None,
             echo=print):
    """The half-precision section: a line per figure (echoed as its shape or loss completes),
    and {"cross_entropy": rows, "torch": rows, "elementwise": rows, "figures": [every
    figure], "skipped": [...], ...} (see the module docstring). ``elementwise_rounds`` /
    ``elementwise_best_of`` (default: ``rounds`` / ``best_of``) measure the elementwise
    losses; torch_shapes run only with torch (``peers.torch``), elementwise_n=0 leaves the
    elementwise losses out."""
    dtypes, skipped = half_dtypes()
    bf16 = {k: v for k, v in dtypes.items() if k == "bfloat16"}
    if peers.torch is None and torch_shapes:
        skipped.append("torch is not installed (or --no-torch): the fastloss.torch bfloat16 figures skipped")
    e_rounds = rounds if elementwise_rounds is None else elementwise_rounds
    e_best = best_of if elementwise_best_of is None else elementwise_best_of
    echo(f"half precision: bfloat16 and float16 against float32 in the same run; median of {rounds} rounds "
         f"of best-of-{best_of} (elementwise: {e_rounds} of best-of-{e_best}); {peers.threads} threads on every side")
    for line in skipped:
        echo(f"  {line}")
    out = {"threads": peers.threads, "rounds": rounds, "best_of": best_of, "elementwise_rounds": e_rounds,
           "elementwise_best_of": e_best, "dtypes": list(dtypes), "cross_entropy": [], "torch": [],
           "elementwise": [], "figures": [], "skipped": skipped}

    def emit(kind, row):
        out[kind].append(row)
        out["figures"] += row["figures"]
        for fig in row["figures"]:
            echo(format_figure(fig))

    for n, c in ce_shapes:
        emit("cross_entropy", measure_half_ce(peers.threads, n, c, dtypes, rounds, best_of))
    if peers.torch is not None:
        for n, c in torch_shapes:
            emit("torch", measure_half_torch(peers.torch, peers.threads, n, c, rounds, best_of))
    if elementwise_n and bf16:
        for name in ELEMENTWISE:
            emit("elementwise", measure_half_elementwise(peers.threads, name, elementwise_n, bf16,
                                                         e_rounds, e_best))
    met = [f["met"] for f in out["figures"] if f["met"] is not None]
    echo(f"half precision: {sum(met)} of {len(met)} targets met" if met else
         "half precision: no figure has a target (the targets are at the issue's shapes)")
    return out


# ---- margin-softmax cross-entropy (the "margin heads" section; bench/ times the same calls) ----
#
# AAM-softmax (ArcFace), m = 0.2, s = 30, float32, mean, every side on the same thread count:
# - from a cosine matrix: fastloss.margin_cross_entropy_with_grad(cos, t, out=g) against
#   fastloss.cross_entropy_with_grad(cos, t, out=g) on the same array (target <= 1.15x) and
#   against the seed code's formulation in torch ops (sqrt, where, one-hot, cross_entropy,
#   backward; target: the seed's time >= 10x ours);
# - the whole head, forward and backward to the embeddings and the class weights (dim 256):
#   fastloss.torch.AAMSoftmax against the seed's AAMsoftmax module with its accuracy()
#   (targets: >= 1.4x at 256x5994, >= 4x at 1024x100000).

MARGIN_SHAPES = [(256, 5994), (1024, 100000)]
MARGIN_QUICK = [(64, 1000)]
MARGIN_M, MARGIN_S, MARGIN_DIM = 0.2, 30.0, 256
MARGIN_TARGETS = {"margin / cross_entropy": ("<=", 1.15), "seed / margin": (">=", 10.0),
                  "module": {(256, 5994): (">=", 1.4), (1024, 100000): (">=", 4.0)}}


def seed_margin_loss(torch, cosine, label, m=MARGIN_M, s=MARGIN_S):
    """The seed's AAM-softmax from a cosine matrix, in torch ops: (loss, the modified logits)."""
    import math

    sine = torch.sqrt((1.0 - torch.mul(cosine, cosine)).clamp(0, 1))
    phi = cosine * math.cos(m) - sine * math.sin(m)
    phi = torch.where((cosine - math.cos(math.pi - m)) > 0, phi, cosine - math.sin(math.pi - m) * m)
    one_hot = torch.zeros_like(cosine)
    one_hot.scatter_(1, label.view(-1, 1), 1)
    output = ((one_hot * phi) + ((1.0 - one_hot) * cosine)) * s
    return torch.nn.functional.cross_entropy(output, label), output


def seed_module_step(torch, x, weight, label):
    """The seed's AAMsoftmax.forward (normalize, linear, margin, cross-entropy, its accuracy())
    and the backward pass: (loss, prec1)."""
    F = torch.nn.functional
    cosine = F.linear(F.normalize(x), F.normalize(weight))
    loss, output = seed_margin_loss(torch, cosine, label)
    _, pred = output.detach().topk(1, 1, True, True)
    prec1 = pred.t().eq(label.view(1, -1)).reshape(-1).float().sum(0) * (100.0 / label.size(0))
    loss.backward()
    return loss, prec1


def margin_inputs(n, c, dim=MARGIN_DIM, seed=0):
    """(cosine, label, embeddings, centres): unit vectors and their cosines, float32."""
    rng = np.random.default_rng(seed)
    emb = rng.standard_normal((n, dim)).astype(np.float32)
    centres = rng.standard_normal((c, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    return emb @ centres.T, rng.integers(0, c, n), emb, centres


def margin_fns(torch, cosine, label, emb, centres):
    """{"from cosine": {side: fn}, "module": {side: fn}} (torch None: fastloss's two sides)."""
    g = np.empty_like(cosine)
    cos_fns = {
        "margin_cross_entropy_with_grad": lambda: fastloss.margin_cross_entropy_with_grad(
            cosine, label, MARGIN_M, MARGIN_S, out=g),
        "cross_entropy_with_grad": lambda: fastloss.cross_entropy_with_grad(cosine, label, out=g),
    }
    module_fns = {}
    if torch is not None:
        import fastloss.torch as flt

        t = torch.from_numpy(label)

        def seed_from_cosine():
            c = torch.from_numpy(cosine).requires_grad_()
            seed_margin_loss(torch, c, t)[0].backward()

        cos_fns["seed"] = seed_from_cosine
        head = flt.AAMSoftmax(centres.shape[0], MARGIN_M, MARGIN_S, embedding_dim=centres.shape[1])
        with torch.no_grad():
            head.weight.copy_(torch.from_numpy(centres))
        weight = torch.from_numpy(centres.copy()).requires_grad_()

        def module_fastloss():
            x = torch.from_numpy(emb).requires_grad_()
            head.weight.grad = None
            head(x, t)[0].backward()

        def module_seed():
            x = torch.from_numpy(emb).requires_grad_()
            weight.grad = None
            seed_module_step(torch, x, weight, t)

        module_fns = {"fastloss.torch.AAMSoftmax": module_fastloss, "seed AAMsoftmax": module_seed}
    return {"from cosine": cos_fns, "module": module_fns}


def run_margin(peers, rounds, best_of, shapes=MARGIN_SHAPES, echo=print):
    """The margin-heads section: a line per figure, and {"rows": [...], "figures": [...]}."""
    echo(f"margin heads (AAM-softmax, m={MARGIN_M}, s={MARGIN_S:g}, float32, mean): median of {rounds} rounds of "
         f"best-of-{best_of}; {peers.threads} threads on every side")
    if peers.torch is None:
        echo("  torch is not installed (or --no-torch): the seed's sides skipped")
    out = {"threads": peers.threads, "rows": [], "figures": []}
    for n, c in shapes:
        fns = margin_fns(peers.torch, *margin_inputs(n, c))
        raw = measure({**fns["from cosine"], **fns["module"]}, rounds, best_of)
        del fns
        ms = {k: statistics.median(v) * 1e3 for k, v in raw.items()}
        shape, th = f"{n}x{c}", f"{peers.threads}t"
        mce = "margin_cross_entropy_with_grad"
        figs = [_figure(f"{mce} {shape} {th}", ms[mce], "cross_entropy_with_grad", ms["cross_entropy_with_grad"],
                        median_ratio(raw[mce], raw["cross_entropy_with_grad"]), "time / cross-entropy's",
                        MARGIN_TARGETS["margin / cross_entropy"] if (n, c) in MARGIN_SHAPES else None)]
        if "seed" in raw:
            figs.append(_figure(f"{mce} vs the seed's ops, {shape} {th}", ms[mce], "seed", ms["seed"],
                                median_ratio(raw["seed"], raw[mce]), "seed's time / ours",
                                MARGIN_TARGETS["seed / margin"] if (n, c) in MARGIN_SHAPES else None))
            figs.append(_figure(f"AAMSoftmax module fwd+bwd {shape} {th}", ms["fastloss.torch.AAMSoftmax"],
                                "seed module", ms["seed AAMsoftmax"],
                                median_ratio(raw["seed AAMsoftmax"], raw["fastloss.torch.AAMSoftmax"]),
                                "seed's time / ours", MARGIN_TARGETS["module"].get((n, c))))
        out["rows"].append({"shape": shape, "n": n, "c": c, "ms": ms, "figures": figs})
        out["figures"] += figs
        for fig in figs:
            echo(format_figure(fig))
    met = [f["met"] for f in out["figures"] if f["met"] is not None]
    echo(f"margin heads: {sum(met)} of {len(met)} targets met" if met else
         "margin heads: no figure has a target (the targets are at the issue's shapes)")
    return out
