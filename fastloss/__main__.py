"""``python -m fastloss``: self-check and speed report on this machine.

Prints the version and kernel_info(), checks the fast path against fastloss.reference on a
few inputs (it exits non-zero on a mismatch), then the cross-entropy speed report
(fastloss/_report.py: fastloss against every installed peer -- the NumPy reference, torch
eager and torch.compile, JAX, scikit-learn -- and against the memory limit, in one run, a
line per shape as it completes), the fastloss.torch drop-in against torch.nn, the rest
of the family in a compact table, and the half-precision section (fastloss/_report.py's
run_half: bfloat16 and float16 against float32 in the same run, a line per figure with its
ratio and the issue's target).

Options: --quick (small shapes only), --repeat K (best of K, default 7), --rounds R (median
of R rounds, default 3), --no-torch, --no-compile, --no-half (leave the half-precision
section out), --half-only (the self-check and the half-precision section only), --json PATH
(every figure), --plot PATH.png (the chart; needs matplotlib: pip install ".[plot]").
"""
import argparse
import platform
import sys
import time

import numpy as np

import fastloss
from fastloss import _report, reference

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


def _fwd_bwd_ms(loss_fn, x, args, repeat, **kwargs):
    """_best_ms of ``loss_fn(x, *args, **kwargs).backward()`` through autograd, x.grad reset
    each round: a loss as a training loop calls it (x: a leaf that requires grad)."""
    def step():
        x.grad = None
        loss_fn(x, *args, **kwargs).backward()

    return _best_ms(step, repeat)


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


def family_table(repeat, torch, quick):
    """The rest of the family: fastloss with a preallocated out= against torch as its users
    run it (autograd fwd+bwd for the losses; the out= variants for softmax)."""
    rng = np.random.default_rng(1)
    n = 1 << (20 if quick else 24)  # 16M float32 elements (1M with --quick)
    x = rng.standard_normal(n, dtype=np.float32)
    y = rng.standard_normal(n, dtype=np.float32)
    p = rng.random(n, dtype=np.float32) * np.float32(0.98) + np.float32(0.01)
    yb = (rng.random(n) < 0.5).astype(np.float32)
    yk = rng.random(n, dtype=np.float32)
    g = np.empty_like(x)
    size = f"{n >> 20}M"
    cases = [
        ("mse_loss", (x, y), {}), ("l1_loss", (x, y), {}), ("smooth_l1_loss", (x, y), {}),
        ("huber_loss", (x, y), {}), ("binary_cross_entropy", (p, yb), {}),
        ("binary_cross_entropy_with_logits", (x, yb), {}), ("kl_div", (x, yk), {"reduction": "batchmean"}),
    ]
    rows = [{"name": f"read 2 + write 1 pass {size} (np.add)", "fl": _best_ms(lambda: np.add(x, y, out=g), repeat)}]
    for name, args, kw in cases:
        fn = getattr(fastloss, name + "_with_grad")
        r = {"name": f"{name} fwd+bwd {size}", "fl": _best_ms(lambda: fn(*args, out=g, **kw), repeat)}
        if torch is not None:
            a0 = torch.from_numpy(args[0].copy()).requires_grad_()
            r["torch"] = _fwd_bwd_ms(getattr(torch.nn.functional, name), a0, (torch.from_numpy(args[1]),), repeat,
                                     **kw)
        rows.append(r)

    shape = (256, 32000) if quick else (2048, 32000)
    z = rng.standard_normal(shape, dtype=np.float32)
    go = rng.standard_normal(shape, dtype=np.float32)
    o, gi = np.empty_like(z), np.empty_like(z)
    label = f"{shape[0]}x{shape[1]}"
    for name in ("log_softmax", "softmax"):
        fwd, bwd = getattr(fastloss, name), getattr(fastloss, name + "_backward")
        out = fwd(z)
        r_f = {"name": f"{name} fwd {label}", "fl": _best_ms(lambda: fwd(z, out=o), repeat)}
        r_b = {"name": f"{name}_backward {label}", "fl": _best_ms(lambda: bwd(go, out, out=gi), repeat)}
        if torch is not None:
            zt, ot, gt, git = (torch.from_numpy(a) for a in (z, o, go, gi))
            outt = torch.from_numpy(out)
            tfwd = getattr(torch, name)
            r_f["torch"] = _best_ms(lambda: tfwd(zt, -1, out=ot), repeat)
            if name == "log_softmax":
                r_b["torch"] = _best_ms(lambda: torch.ops.aten._log_softmax_backward_data.out(
                    gt, outt, -1, torch.float32, out=git), repeat)
            else:
                r_b["torch"] = _best_ms(lambda: torch.ops.aten._softmax_backward_data.out(
                    gt, outt, -1, torch.float32, grad_input=git), repeat)
        rows += [r_f, r_b]
    r = {"name": f"copy pass {label} (np.copyto)", "fl": _best_ms(lambda: np.copyto(o, z), repeat)}
    rows.append(r)

    for nn, c in (SHAPES[:3] if quick else SHAPES):
        lp = rng.standard_normal((nn, c), dtype=np.float32)
        t = rng.integers(0, c, nn)
        gl = np.empty_like(lp)
        r = {"name": f"nll_loss fwd+bwd {nn}x{c}", "fl": _best_ms(lambda: fastloss.nll_loss_with_grad(lp, t, out=gl), repeat)}
        r2 = {"name": f"nll_loss fwd {nn}x{c}", "fl": _best_ms(lambda: fastloss.nll_loss(lp, t), repeat)}
        if torch is not None:
            lt, tt = torch.from_numpy(lp), torch.from_numpy(t)
            r["torch"] = _fwd_bwd_ms(torch.nn.functional.nll_loss, lt.clone().requires_grad_(), (tt,), repeat)
            r2["torch"] = _best_ms(lambda: torch.nn.functional.nll_loss(lt, tt), repeat)
        rows += [r2, r]
    return rows


def dropin_table(shapes, repeat, torch):
    """fastloss.torch.CrossEntropyLoss against torch.nn.CrossEntropyLoss, both through
    autograd as a training loop calls them: loss(x, t).backward() with x.grad reset."""
    import fastloss.torch as flt

    rng = np.random.default_rng(0)
    rows = []
    for n, c in shapes:
        x = torch.from_numpy(rng.standard_normal((n, c), dtype=np.float32)).requires_grad_()
        t = torch.from_numpy(rng.integers(0, c, n))
        r = {"shape": f"{n}x{c}"}
        for key, crit in (("fl", flt.CrossEntropyLoss()), ("torch", torch.nn.CrossEntropyLoss())):
            r[key] = _fwd_bwd_ms(crit, x, (t,), repeat)
        rows.append(r)
    return rows


def float32_sections(args, peers):
    """The float32 sections: the cross-entropy report, the drop-in table and the family table
    (printed as they go); returns the report's dict with "dropin" and "family" added."""
    threads, torch = peers.threads, peers.torch
    shapes = _report.QUICK if args.quick else _report.IN_CACHE + _report.SWEEP
    print()
    report = _report.run(peers, shapes, args.rounds, args.repeat,
                         () if args.quick else _report.ONE_THREAD)

    if torch is not None:
        dropin_shapes = [(64, 10), (8192, 1000)] + ([] if args.quick else [(2048, 32000)])
        print(f"\nfastloss.torch.CrossEntropyLoss vs torch.nn.CrossEntropyLoss, float32, {threads} threads, "
              f"best-of-{args.repeat} ms: loss(x, t).backward() through autograd, x.grad reset each round")
        report["dropin"] = dropin_table(dropin_shapes, args.repeat, torch)
        for r in report["dropin"]:
            print(f"{r['shape']:>12} | fastloss.torch {r['fl']:9.4f} | torch {r['torch']:9.4f} "
                  f"| x {r['torch'] / r['fl']:5.1f}")

    rows = family_table(args.repeat, torch, args.quick)
    report["family"] = rows
    print(f"\nthe rest of the family, float32, {threads} threads, best-of-{args.repeat} ms "
          "(fastloss with out=; torch: autograd fwd+bwd, or out= for softmax)")
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        line = f"{r['name']:>{width}} | {r['fl']:9.4f}"
        if "torch" in r:
            line += f" | torch {r['torch']:9.4f} | x {r['torch'] / r['fl']:5.1f}"
        print(line)
    return report


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m fastloss", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small shapes only")
    p.add_argument("--repeat", type=int, default=7, help="best of K calls per figure (default 7)")
    p.add_argument("--rounds", type=int, default=3, help="median of R rounds per figure (default 3)")
    p.add_argument("--no-torch", action="store_true", help="leave torch out (and torch.compile)")
    p.add_argument("--no-compile", action="store_true", help="leave torch.compile out")
    half = p.add_mutually_exclusive_group()
    half.add_argument("--no-half", action="store_true", help="leave the half-precision section out")
    half.add_argument("--half-only", action="store_true",
                      help="the self-check and the half-precision section only")
    half.add_argument("--margin-only", action="store_true",
                      help="the self-check and the margin-heads section only")
    p.add_argument("--no-margin", action="store_true", help="leave the margin-heads section out")
    p.add_argument("--json", metavar="PATH", help="write every figure to PATH")
    p.add_argument("--plot", metavar="PATH.png", help="draw the chart (needs matplotlib)")
    args = p.parse_args(argv)

    print(f"fastloss {fastloss.__version__} | numpy {np.__version__} | Python {platform.python_version()} "
          f"| {platform.machine()}")
    print("kernel_info:", fastloss.kernel_info())
    worst = self_check()
    ok = worst < 1e-4
    print(f"self-check vs fastloss.reference (float32+float64, 14 option sets): worst relative error "
          f"{worst:.2e} -> {'OK' if ok else 'MISMATCH'}")

    # every side runs on fastloss's thread count, set before anything is timed
    threads = fastloss.get_num_threads()
    if args.half_only or args.margin_only:
        peers = _report.Peers(threads, use_torch=not args.no_torch, use_compile=False, use_jax=False,
                              use_sklearn=False)
        report = {"machine": _report.machine(), "versions": peers.versions(), "threads": threads,
                  "rounds": args.rounds, "best_of": args.repeat, "skipped": peers.skipped,
                  "protocol": _report.__doc__}
    else:
        peers = _report.Peers(threads, use_torch=not args.no_torch, use_compile=not args.no_compile)
        report = float32_sections(args, peers)
    if not args.no_half and not args.margin_only:
        print()
        report["half"] = _report.run_half(
            peers, args.rounds, args.repeat,
            _report.HALF_QUICK_CE if args.quick else _report.HALF_CE,
            _report.HALF_QUICK_TORCH if args.quick else _report.HALF_TORCH,
            _report.HALF_QUICK_ELEMENTWISE_N if args.quick else _report.HALF_ELEMENTWISE_N,
            elementwise_best_of=args.repeat)
    if not args.no_margin and not args.half_only:
        print()
        report["margin"] = _report.run_margin(peers, args.rounds, args.repeat,
                                              _report.MARGIN_QUICK if args.quick else _report.MARGIN_SHAPES)
    if args.json:
        _report.write_json(report, args.json)
        print(f"\nfigures written to {args.json}")
    if args.plot:
        if "rows" in report:
            _report.plot(report, args.plot)
            print(f"chart written to {args.plot}")
        else:
            print(f"no chart written to {args.plot}: it is of the float32 sweep, which --half-only and "
                  "--margin-only leave out")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
