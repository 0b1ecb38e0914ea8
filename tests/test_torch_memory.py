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

import pytest

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024  # /proc figures are in KiB

# A launcher interpreter in between gives the measured process a clean ru_maxrss (Linux
# carries the high-water mark across execve).
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.run([sys.executable, '-c', sys.argv[1]]).returncode)"

_PRELUDE = """
import json, resource
import numpy as np
import torch
import fastloss.torch as flt

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
"""

_SCRIPT = _PRELUDE + """
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


def _run(script):
    """Run `script` in a fresh process (through the launcher); its RESULT line, with the
    kept / forward / backward figures in MiB beside the KiB it reports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FASTLOSS_", "OMP_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, textwrap.dedent(script)], cwd=str(ROOT), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    res = json.loads(line[len("RESULT "):])
    res["kept_mib"] = (res["after_forward_rss"] - res["base_rss"]) / MiB
    res["forward_extra_mib"] = (res["forward_peak"] - res["base_peak"]) / MiB
    res["backward_extra_mib"] = (res["backward_peak"] - res["base_peak"]) / MiB
    return res


def _measure(fn, dtype="torch.float32"):
    return _run(_SCRIPT.format(fn=fn, dtype=dtype))


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


# ---- the margin heads ----------------------------------------------------------------------

_MARGIN_SCRIPT = _PRELUDE + """
from fastloss._report import seed_margin_loss
torch.set_num_threads(2)
N, C, D = 1024, 32768, 64       # the cosine: 128 MiB in float32; the class weights 8 MiB
torch.manual_seed(0)
head = flt.AAMSoftmax(C, 0.2, 30.0, embedding_dim=D).to({dtype})
x = torch.randn(N, D, dtype={dtype}, requires_grad=True)
t = torch.from_numpy(np.random.default_rng(1).integers(0, C, N))

def ours():
    return head(x, t)[0]

def seed():   # the seed's AAMsoftmax.forward, its accuracy() included
    F = torch.nn.functional
    cosine = F.linear(F.normalize(x), F.normalize(head.weight))
    loss, output = seed_margin_loss(torch, cosine, t)
    _, pred = output.detach().topk(1, 1, True, True)
    del output, cosine
    return loss

fn = {fn}
flt.AAMSoftmax(8, 0.2, 30.0, embedding_dim=D).to({dtype})(x[:4].detach(), t[:4] % 8)[0].backward()  # warm-up
rep = {{"nxc_kib": N * C * x.element_size() // 1024, "cxd_kib": C * D * x.element_size() // 1024}}
rep["base_peak"], rep["base_rss"] = peak(), rss()
loss = fn()
rep["after_forward_rss"], rep["forward_peak"] = rss(), peak()
loss.backward()
rep["backward_peak"] = peak()
rep["grad_kib"] = (x.grad.numel() + head.weight.grad.numel()) * x.element_size() // 1024
print("RESULT " + json.dumps(rep))
"""


@pytest.mark.rss  # peaks: ASan's quarantine holds freed memory (the backward's temporaries)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_margin_module_keeps_one_nxc_array_between_forward_and_backward(torch, dtype):
    """AAMSoftmax keeps at most one N×C array from forward to backward: the gradient of the
    cosine (float32) or the cosine (bfloat16), beside the normalized class weights that
    linear saves (C×D). The seed keeps the cosine, sine, phi, one-hot, output and softmax."""
    ours = _run(_MARGIN_SCRIPT.format(fn="ours", dtype=f"torch.{dtype}"))
    theirs = _run(_MARGIN_SCRIPT.format(fn="seed", dtype=f"torch.{dtype}"))
    nxc, cxd = ours["nxc_kib"] / MiB, ours["cxd_kib"] / MiB
    report = (f"{dtype}: N×C {nxc:.0f} MiB, C×D {cxd:.0f} MiB | AAMSoftmax: kept after forward "
              f"{ours['kept_mib']:+.1f} MiB, forward peak {ours['forward_extra_mib']:+.1f} MiB, backward peak "
              f"{ours['backward_extra_mib']:+.1f} MiB | seed: kept {theirs['kept_mib']:+.1f} MiB, backward peak "
              f"{theirs['backward_extra_mib']:+.1f} MiB")
    print(report)
    assert nxc * 0.9 < ours["kept_mib"] <= nxc + 2 * cxd + 8, report
    # float32: the kernel writes the gradient over the module's own cosine, so no second N×C
    # array exists at any time; bfloat16: the backward adds the gradient to the kept cosine.
    # Beyond those: C×D temporaries (the weight gradients, normalize's backward) and BLAS's
    # buffers, tens of MiB that vary from run to run.
    n_arrays = 1 if dtype == "float32" else 2
    assert ours["forward_extra_mib"] <= nxc + 3 * cxd + 8, report
    assert ours["backward_extra_mib"] < (n_arrays + 0.5) * nxc + 4 * cxd, report
    # the seed's own figures, for the record: at least three N×C arrays kept
    assert theirs["kept_mib"] > 3 * nxc, report
