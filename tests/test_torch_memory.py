"""Memory of fastloss.torch's cross-entropy through autograd, in a fresh subprocess.

What the drop-in may hold: between forward and backward, a reference to the logits and one
float64 log-sum-exp per row (no tensor of the logits' size); during backward, the gradient
itself and nothing else of that size. torch, for comparison, keeps its log-softmax (the
logits' size) between the two; its figures are printed, not asserted.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024  # /proc figures are in KiB

# A launcher interpreter in between gives the measured process a clean ru_maxrss (Linux
# carries the high-water mark across execve).
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', sys.argv[1]]).returncode)"

_SCRIPT = """
import json, resource
import numpy as np
import torch
import fastloss.torch as flt

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))

torch.set_num_threads(2)
small = torch.randn(8, 16, requires_grad=True)
for fn in (flt.cross_entropy, torch.nn.functional.cross_entropy):   # warm-up of both paths
    fn(small, torch.arange(8) % 16).backward()
N, C = 4096, 8192
x = torch.from_numpy(np.random.default_rng(0).standard_normal((N, C), dtype=np.float32)).requires_grad_()
t = torch.from_numpy(np.random.default_rng(1).integers(0, C, N))
fn = {fn}
rep = {{"logits_kib": x.numel() * 4 // 1024}}
rep["base_peak"], rep["base_rss"] = peak(), rss()
loss = fn(x, t)
rep["after_forward_rss"], rep["forward_peak"] = rss(), peak()
loss.backward()
rep["backward_peak"] = peak()
rep["grad_kib"] = x.grad.numel() * x.grad.element_size() // 1024
print("RESULT " + json.dumps(rep))
"""


def _measure(fn):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTLOSS_", "OMP_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    code = textwrap.dedent(_SCRIPT.format(fn=fn))
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, code], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    res = json.loads(line[len("RESULT "):])
    res["kept_mib"] = (res["after_forward_rss"] - res["base_rss"]) / MiB
    res["forward_extra_mib"] = (res["forward_peak"] - res["base_peak"]) / MiB
    res["backward_extra_mib"] = (res["backward_peak"] - res["base_peak"]) / MiB
    return res


def test_cross_entropy_keeps_no_logit_sized_tensor_and_allocates_only_the_gradient(torch):
    ours = _measure("flt.cross_entropy")
    theirs = _measure("torch.nn.functional.cross_entropy")
    report = (f"logits {ours['logits_kib'] / MiB:.0f} MiB | fastloss.torch: kept after forward "
              f"{ours['kept_mib']:+.1f} MiB, forward peak {ours['forward_extra_mib']:+.1f} MiB, "
              f"backward peak {ours['backward_extra_mib']:+.1f} MiB | torch: kept {theirs['kept_mib']:+.1f} MiB, "
              f"backward peak {theirs['backward_extra_mib']:+.1f} MiB")
    print(report)
    assert ours["base_peak"] - ours["base_rss"] < 8 * MiB, report  # the baseline peak is the present
    assert ours["kept_mib"] < 8, report
    assert ours["forward_extra_mib"] < 8, report
    assert ours["backward_extra_mib"] <= ours["grad_kib"] / MiB + 8, report
    # torch's own figures, for the record: it keeps its log-softmax (the logits' size)
    assert theirs["kept_mib"] > ours["logits_kib"] / MiB / 2, report
