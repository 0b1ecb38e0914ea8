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


def test_missing_peer_is_one_line(monkeypatch):
    import importlib

    real = importlib.import_module

    def without_sklearn(name, *args):
        if name.startswith("sklearn"):
            raise ImportError(name)
        return real(name, *args)

    monkeypatch.setattr(importlib, "import_module", without_sklearn)
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
