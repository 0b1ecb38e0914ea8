"""``python -m fastloss``: self-check and speed table on this machine.

Prints the version and kernel_info(), checks the fast path against fastloss.reference on a
few inputs (it exits non-zero on a mismatch), then times cross-entropy forward and
forward+backward at the benchmark shapes against the NumPy reference and, when it is
installed, torch (eager, as its users call it). Ratios are measured in this run.

Options: --quick (small shapes only), --repeat K (best of K, default 5), --no-torch.
"""
import argparse
import platform
import sys
import time

import numpy as np

import fastloss
from fastloss import reference

SHAPES = [(64, 10), (4096, 1000), (8192, 1000), (2048, 32000), (512, 128256)]


def _best_ms(fn, repeat, budget_s=2.0):
    fn()  # warm-up: page faults, thread pool
    times = []
    start = time.perf_counter()
    inner = 1
    t0 = time.perf_counter()
    fn()
    once = time.perf_counter() - t0
    if once < 1e-3:  # time batches of tiny calls
        inner = max(1, int(1e-3 / max(once, 1e-7)))
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner)
        if time.perf_counter() - start > budget_s and len(times) >= 2:
            break
    return min(times) * 1e3


def self_check():
    """fast vs reference on small inputs covering the options; returns the worst error."""
    rng = np.random.default_rng(0)
    worst = 0.0
    cases = [
        dict(),
        dict(weight=True),
        dict(label_smoothing=0.1),
        dict(ignore=True, reduction="sum"),
        dict(reduction="none"),
        dict(prob=True, weight=True, label_smoothing=0.2),
        dict(kdim=True, ignore=True),
    ]
    for dtype in (np.float32, np.float64):
        for case in cases:
            shape = (7, 33, 5) if case.get("kdim") else (37, 1003)
            x = rng.standard_normal(shape).astype(dtype) * 3
            n, c = shape[0], shape[1]
            if case.get("prob"):
                t = rng.random(shape).astype(dtype)
                t /= t.sum(axis=1, keepdims=True)
            else:
                t = rng.integers(0, c, (n,) + shape[2:])
                if case.get("ignore"):
                    t.flat[::4] = -100
            kw = dict(reduction=case.get("reduction", "mean"),
                      label_smoothing=case.get("label_smoothing", 0.0))
            if case.get("weight"):
                kw["weight"] = rng.random(c).astype(dtype) + 0.5
            lf, gf = fastloss.cross_entropy_with_grad(x, t, **kw)
            lr, gr = reference.cross_entropy_with_grad(x, t, **kw)
            scale = max(1.0, float(np.max(np.abs(lr))))
            worst = max(worst, float(np.max(np.abs(np.asarray(lf, np.float64) - lr))) / scale,
                        float(np.max(np.abs(gf.astype(np.float64) - gr))) / max(1e-30, float(np.max(np.abs(gr)))))
    return worst


def speed_table(shapes, repeat, use_torch):
    torch = F = None
    if use_torch:
        try:
            import torch
            import torch.nn.functional as F
        except ImportError:
            torch = None
    rng = np.random.default_rng(0)
    rows = []
    for n, c in shapes:
        x = rng.standard_normal((n, c), dtype=np.float32)
        t = rng.integers(0, c, n)
        g = np.empty_like(x)
        r = {"shape": f"{n}x{c}"}
        r["fl_fwd"] = _best_ms(lambda: fastloss.cross_entropy(x, t), repeat)
        r["fl_fb"] = _best_ms(lambda: fastloss.cross_entropy_with_grad(x, t, out=g), repeat)
        r["ref_fb"] = _best_ms(lambda: reference.cross_entropy_with_grad(x, t), 1 if n * c > 1e6 else repeat)
        if torch is not None:
            xt, tt = torch.from_numpy(x), torch.from_numpy(t)
            xr = xt.clone().requires_grad_()

            def torch_fb():
                xr.grad = None
                F.cross_entropy(xr, tt).backward()

            r["t_fwd"] = _best_ms(lambda: F.cross_entropy(xt, tt), repeat)
            r["t_fb"] = _best_ms(torch_fb, repeat)
        rows.append(r)
    return rows, torch


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fastloss", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes only")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args(argv)

    print(f"fastloss {fastloss.__version__} | numpy {np.__version__} | Python {platform.python_version()} "
          f"| {platform.machine()}")
    print("kernel_info:", fastloss.kernel_info())
    worst = self_check()
    ok = worst < 1e-4
    print(f"self-check vs fastloss.reference (float32+float64, 14 option sets): worst relative error "
          f"{worst:.2e} -> {'OK' if ok else 'MISMATCH'}")

    shapes = SHAPES[:3] if args.quick else SHAPES
    rows, torch = speed_table(shapes, args.repeat, not args.no_torch)
    threads = fastloss.get_num_threads()
    if torch is not None:
        torch.set_num_threads(threads)
    print(f"\ncross_entropy float32, mean, {threads} threads, best-of-{args.repeat} ms"
          + (f" (torch {torch.__version__}, eager)" if torch is not None else " (torch not installed)"))
    head = f"{'N x C':>12} | {'fwd':>8} {'fwd+bwd':>8} | {'ref fwd+bwd':>11} {'x ref':>6}"
    if torch is not None:
        head += f" | {'torch fwd':>9} {'x':>5} {'torch f+b':>9} {'x':>5}"
    print(head)
    print("-" * len(head))
    for r in rows:
        line = (f"{r['shape']:>12} | {r['fl_fwd']:8.3f} {r['fl_fb']:8.3f} | {r['ref_fb']:11.3f} "
                f"{r['ref_fb'] / r['fl_fb']:6.1f}")
        if torch is not None:
            line += (f" | {r['t_fwd']:9.3f} {r['t_fwd'] / r['fl_fwd']:5.1f} {r['t_fb']:9.3f} "
                     f"{r['t_fb'] / r['fl_fb']:5.1f}")
        print(line)
    print("\nfastloss fwd+bwd = cross_entropy_with_grad(x, t, out=g) with g preallocated; torch fwd+bwd ="
          " F.cross_entropy(x.requires_grad_(), t).backward() with x.grad reset each round.")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
