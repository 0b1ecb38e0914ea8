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
small = torch.randn(8, 16).to({dtype}).requires_grad_()
for fn in (flt.cross_entropy, torch.nn.functional.cross_entropy):   # warm-up of both paths
    fn(small, torch.arange(8) % 16).backward()
N, C = 4096, 8192
torch.manual_seed(0)
x = torch.randn(N, C, dtype={dtype}, requires_grad=True)  # no float32 temporary
t = torch.from_numpy(np.random.default_rng(1).integers(0, C, N))
fn = {fn}
rep = {{"logits_kib": x.numel() * x.element_size() // 1024}}
rep["base_peak"], rep["base_rss"] = peak(), rss()
loss = fn(x, t)
rep["after_forward_rss"], rep["forward_peak"] = rss(), peak()
loss.backward()
rep["backward_peak"] = peak()
rep["grad_kib"] = x.grad.numel() * x.grad.element_size() // 1024
print("RESULT " + json.dumps(rep))
"""


def _measure(fn, dtype="torch.float32"):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTLOSS_", "OMP_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    code = textwrap.dedent(_SCRIPT.format(fn=fn, dtype=dtype))
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


# ---- the spare output buffer ---------------------------------------------------------------

def _grad_of_big_loss(torch, flt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(512, 8192, generator=g).requires_grad_()  # 16 MiB: large enough to reuse
    t = torch.randint(0, 8192, (512,), generator=g)
    (grad,) = torch.autograd.grad(flt.cross_entropy(x, t), x)
    (expected,) = torch.autograd.grad(torch.nn.functional.cross_entropy(x, t), x)
    return grad, expected


def test_spare_buffer_is_reused_only_when_nothing_refers_to_it(torch):
    import fastloss.torch as flt

    flt.empty_cache()
    g1, e1 = _grad_of_big_loss(torch, flt, 0)
    ptr1, kept1 = g1.data_ptr(), g1.clone()
    # g1 alive: the next gradient gets other memory, and g1 stays as it was
    g2, e2 = _grad_of_big_loss(torch, flt, 1)
    assert g2.data_ptr() != ptr1
    assert torch.equal(g1, kept1)
    torch.testing.assert_close(g2, e2)
    # a view of g2 keeps its memory in use too
    row = g2[3]
    ptr2 = g2.data_ptr()
    del g2
    g3, e3 = _grad_of_big_loss(torch, flt, 2)
    assert g3.data_ptr() != ptr2
    torch.testing.assert_close(row, e2[3])
    # a NumPy view as well
    arr = g3.numpy()
    ptr3 = g3.data_ptr()
    del g3
    g4, _ = _grad_of_big_loss(torch, flt, 3)
    assert g4.data_ptr() != ptr3 and arr.ctypes.data == ptr3
    # once nothing refers to the last buffer, the next gradient takes its memory back
    ptr4 = g4.data_ptr()
    del g4
    g5, e5 = _grad_of_big_loss(torch, flt, 4)
    assert g5.data_ptr() == ptr4
    torch.testing.assert_close(g5, e5)
    del g5
    flt.empty_cache()
    g6, _ = _grad_of_big_loss(torch, flt, 5)   # after empty_cache: fresh memory, still right
    torch.testing.assert_close(g6, _grad_of_big_loss(torch, flt, 5)[1])


def test_bfloat16_fwd_bwd_raises_the_peak_by_the_bf16_gradient_alone(torch):
    """bfloat16 logits reach the kernels as they are: no float32 copy, no float32 gradient;
    the backward's peak grows by the bf16 gradient (<= 1.1x its size), nothing more."""
    ours = _measure("flt.cross_entropy", "torch.bfloat16")
    theirs = _measure("torch.nn.functional.cross_entropy", "torch.bfloat16")
    grad_mib = ours["grad_kib"] / MiB
    report = (f"bf16 logits {ours['logits_kib'] / MiB:.0f} MiB, gradient {grad_mib:.0f} MiB | fastloss.torch: "
              f"kept {ours['kept_mib']:+.1f} MiB, forward peak {ours['forward_extra_mib']:+.1f} MiB, backward peak "
              f"{ours['backward_extra_mib']:+.1f} MiB | torch: backward peak {theirs['backward_extra_mib']:+.1f} MiB")
    print(report)
    assert ours["kept_mib"] < 4, report
    assert ours["forward_extra_mib"] < 4, report
    assert ours["backward_extra_mib"] <= 1.1 * grad_mib, report
