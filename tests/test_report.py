"""The speed report of ``python -m fastloss`` (fastloss/_report.py): what it measures, its
JSON and its chart. Timings are not asserted (they belong to benchmarks); the structure, the
ratios' arithmetic and the peers' results are."""
import json
import os

import numpy as np
import pytest

import fastloss
from fastloss import _report


def test_median_ratio_pairs_rounds():
    assert _report.median_ratio([2.0, 9.0, 4.0], [1.0, 3.0, 1.0]) == 3.0


def test_every_peer_computes_the_same_loss():
    """The callables the report times compute cross_entropy itself (the report would
    otherwise compare different work)."""
    peers = _report.Peers(fastloss.get_num_threads(), use_compile=False)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((33, 17), dtype=np.float32)
    t = rng.integers(0, 17, 33)
    fwd, fb = peers.case_fns(x, t, reference_ok=True)
    want = float(fastloss.reference.cross_entropy(x, t))
    for name, f in fwd.items():
        got = f()
        if name == "scikit-learn":  # per-sample losses, written into loss_out
            got = np.mean(got)
        assert abs(float(got) - want) < 2e-6 * abs(want), name
    assert set(fb) == set(fwd)


def test_report_rows_and_json(tmp_path):
    peers = _report.Peers(1, use_compile=False, use_jax=False, use_sklearn=False)
    lines = []
    report = _report.run(peers, [(16, 7)], rounds=2, best_of=1, echo=lines.append)
    (row,) = report["rows"]
    assert row["shape"] == "16x7" and row["threads"] == 1
    assert set(row["limits"]) == set(_report.LIMITS)
    assert {"fastloss", "numpy reference"} <= set(row["fwd"]) == set(row["fwd_bwd"])
    for key in ("fwd / copy", "fwd_bwd / copy", "fwd / read", "fwd_bwd / read",
                "numpy reference fwd / fastloss"):
        assert row["ratios"][key] > 0, key
    assert any(line.strip().startswith("16x7 1t") for line in lines)  # progress, a line per shape
    path = tmp_path / "r.json"
    _report.write_json(report, path)
    back = json.loads(path.read_text())
    assert back["rows"][0]["fwd"]["fastloss"] == row["fwd"]["fastloss"]
    assert back["machine"]["cores"] >= 1 and "numpy" in back["versions"]


def _without(monkeypatch, package):
    """importlib.import_module as if `package` were not installed."""
    import importlib

    real = importlib.import_module

    def fake(name, *args):
        if name.startswith(package):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", fake)


def test_missing_peer_is_one_line(monkeypatch):
    _without(monkeypatch, "sklearn")
    peers = _report.Peers(1, use_torch=False, use_jax=False)
    assert peers.sklearn is None and peers.skipped == ["scikit-learn is not installed: skipped"]


def test_plot_writes_a_png(tmp_path):
    if os.environ.get("CI"):
        import matplotlib  # noqa: F401  (.ci/run installs the plot extra: a failure, not a skip)
    else:
        pytest.importorskip("matplotlib")
    peers = _report.Peers(1, use_torch=False, use_jax=False, use_sklearn=False)
    report = _report.run(peers, [(16, 7), (8, 50)], rounds=1, best_of=1, echo=lambda s: None)
    path = tmp_path / "chart.png"
    _report.plot(report, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _tiny_half(monkeypatch, lines):
    """The half-precision section on a tiny configuration: two small shapes (one of them
    given the issue's targets), one round of best-of-1, 4096 elements."""
    monkeypatch.setattr(_report, "HALF_CE", [(16, 7)])
    monkeypatch.setattr(_report, "HALF_TORCH_TARGETS", {(8, 5): (">=", 2.0)})
    monkeypatch.setattr(_report, "HALF_ELEMENTWISE_N", 1 << 12)
    peers = _report.Peers(1, use_compile=False, use_jax=False, use_sklearn=False)
    return _report.run_half(peers, rounds=1, best_of=1, ce_shapes=[(16, 7), (4, 33)], torch_shapes=[(8, 5)],
                            elementwise_n=1 << 12, echo=lines.append)


def test_half_section_lines_and_json(monkeypatch, tmp_path):
    pytest.importorskip("ml_dtypes")
    pytest.importorskip("torch")
    lines = []
    half = _tiny_half(monkeypatch, lines)
    assert half["dtypes"] == ["bfloat16", "float16"] and half["skipped"] == []
    assert lines[0].startswith("half precision: bfloat16 and float16 against float32")
    ce = {r["shape"]: r for r in half["cross_entropy"]}
    assert set(ce) == {"16x7", "4x33"}
    for row in ce.values():
        assert set(row["fwd"]) == set(row["fwd_bwd"]) == {"float32", "bfloat16", "float16"}
        for dt in ("bfloat16", "float16"):
            assert row["ratios"][f"{dt} fwd / float32"] > 0 and row["ratios"][f"{dt} fwd_bwd / float32"] > 0
    (tr,) = half["torch"]
    assert tr["shape"] == "8x5" and set(tr["fwd_bwd"]) == {"fastloss.torch", "torch"}
    assert tr["ratios"]["torch fwd_bwd / fastloss.torch"] > 0
    assert [r["name"] for r in half["elementwise"]] == _report.ELEMENTWISE
    assert all(set(r["fwd_bwd"]) == {"float32", "bfloat16"} and r["n"] == 1 << 12 for r in half["elementwise"])
    # a line per figure, in order, each with its ratio and its target (only the shapes have one)
    figs = half["figures"]
    assert len(figs) == 2 * 4 + 1 + len(_report.ELEMENTWISE)
    assert lines[1:-1] == [_report.format_figure(f) for f in figs]
    by_name = {f["figure"]: f for f in figs}
    assert by_name["cross_entropy_with_grad bfloat16 16x7 1t"]["target"] == "<= 0.65"
    assert by_name["cross_entropy float16 16x7 1t"]["target"] == "<= 0.75"
    assert by_name["cross_entropy float16 4x33 1t"]["target"] is None
    assert "no target at this shape" in _report.format_figure(by_name["cross_entropy float16 4x33 1t"])
    assert by_name["fastloss.torch.cross_entropy bf16 fwd+bwd 8x5 1t"]["target"] == ">= 2"
    assert by_name["kl_div_with_grad bfloat16 4096 1t"]["target"] == ">= 1.6"
    for f in figs:
        if f["target"] is not None:
            bound = float(f["target"].split()[1])
            assert f["met"] == (f["ratio"] <= bound if f["target"][0] == "<" else f["ratio"] >= bound)
            assert ("target " + f["target"] + "x: " + ("met" if f["met"] else "NOT met")) in _report.format_figure(f)
    met = [f["met"] for f in figs if f["met"] is not None]
    assert lines[-1] == f"half precision: {sum(met)} of {len(met)} targets met"
    path = tmp_path / "h.json"
    _report.write_json({"half": half}, path)
    back = json.loads(path.read_text())["half"]
    assert back["figures"][0] == figs[0] and back["elementwise"][0]["fwd_bwd"] == half["elementwise"][0]["fwd_bwd"]


def test_half_callables_compute_the_loss():
    """The half-precision callables compute the float32 call on the rounded values."""
    ml_dtypes = pytest.importorskip("ml_dtypes")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((33, 17), dtype=np.float32)
    t = rng.integers(0, 17, 33)
    dtypes = {"bfloat16": np.dtype(ml_dtypes.bfloat16), "float16": np.dtype(np.float16)}
    fwd, fb = _report.half_case_fns(x, t, dtypes)
    assert set(fwd) == set(fb) == {"float32", "bfloat16", "float16"}
    for name, dt in [("float32", np.dtype(np.float32))] + list(dtypes.items()):
        want = float(fastloss.reference.cross_entropy(x.astype(dt).astype(np.float32), t))
        assert abs(float(fwd[name]()) - want) < 1e-2 * abs(want), name
        loss, grad = fb[name]()
        assert grad.dtype == dt and abs(float(loss) - want) < 1e-2 * abs(want), name
    for name in _report.ELEMENTWISE:
        a, b = _report.elementwise_inputs(name, 1000)
        fns = _report.half_elementwise_fns(name, a, b, {"bfloat16": dtypes["bfloat16"]})
        want = float(getattr(fastloss, name)(a, b, reduction="mean"))
        (l32, g32), (l16, g16) = fns["float32"](), fns["bfloat16"]()
        assert float(l32) == pytest.approx(want) and g32.dtype == np.float32, name
        assert float(l16) == pytest.approx(want, rel=5e-2, abs=1e-3) and g16.dtype == dtypes["bfloat16"], name


def test_half_without_ml_dtypes_is_one_line(monkeypatch):
    """Without ml_dtypes the NumPy bfloat16 figures are skipped, said in one line; float16
    and torch's bfloat16 (which needs no ml_dtypes) still run."""
    _without(monkeypatch, "ml_dtypes")
    lines = []
    half = _tiny_half(monkeypatch, lines)
    assert half["dtypes"] == ["float16"]
    skip = [line for line in lines if "ml_dtypes" in line]
    assert len(skip) == 1 and "bfloat16 figures skipped" in skip[0] and skip[0] in ["  " + s for s in half["skipped"]]
    assert all(set(r["fwd"]) == {"float32", "float16"} for r in half["cross_entropy"])
    assert half["elementwise"] == []
    assert not any("bfloat16" in f["figure"] for f in half["figures"])


def test_cli_half_only_json(monkeypatch, tmp_path, capsys):
    """python -m fastloss --half-only: the self-check and the half-precision section, its
    figures under "half" in --json; --no-half and --half-only exclude each other."""
    from fastloss import __main__ as cli

    monkeypatch.setattr(_report, "HALF_QUICK_CE", [(16, 7)])
    monkeypatch.setattr(_report, "HALF_QUICK_TORCH", [(8, 5)])
    monkeypatch.setattr(_report, "HALF_QUICK_ELEMENTWISE_N", 1 << 10)
    path = tmp_path / "r.json"
    assert cli.main(["--half-only", "--quick", "--rounds", "1", "--repeat", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "half precision: bfloat16 and float16 against float32" in out
    assert "cross_entropy_with_grad float16 16x7" in out and "one thread on every side" not in out
    back = json.loads(path.read_text())
    assert "rows" not in back and back["half"]["figures"]
    assert {f["figure"].split()[0] for f in back["half"]["figures"]} >= {"cross_entropy", "cross_entropy_with_grad"}
    with pytest.raises(SystemExit):
        cli.main(["--half-only", "--no-half"])
