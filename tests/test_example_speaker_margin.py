"""examples/speaker_margin.py: fastloss.torch's AAMSoftmax / AMSoftmax / CrossEntropyLoss as
the heads of a small speaker-embedding model, against their torch formulations (the seed's
AAMsoftmax with the embedding size generalised, torch.nn.CrossEntropyLoss), and the example's
claim that the margin head verifies unseen speakers better than a plain softmax head.

* float32, the example's data, model and optimizer, 20 steps driven by each fastloss head on
  each SIMD path: at every step the torch formulation is evaluated on copies of the same
  embeddings and head weights. Loss within 1e-6 relative (measured <= 1.4e-7, about 1 ulp),
  prec1 equal (measured: equal at every step; a row whose target logit is within 1e-4 of the
  best other logit could flip either way and is allowed to), the gradients with respect to
  the embeddings and to every head parameter within 5e-6 of their tensor's largest entry
  (measured <= 3.5e-7 on avx512, avx2 and generic).
* float64, 20 steps free-running with each implementation: per-step losses within 1e-13
  relative (measured <= 4.8e-16) and every final parameter tensor within 1e-11 of its largest
  entry (measured <= 8.9e-13: the softmax run's middle Linear, already after the first step.
  Adam's early update lr * g / (|g| + eps) turns a rounding difference in a gradient entry
  near eps = 1e-8 -- a sum that cancels -- into ~1e-12 of a weight; the losses show nothing).
* equal_error_rate against hand-computed cases (perfectly separated 0, reversed 1, all tied
  0.5, the same distribution ~0.5, two explicit small examples, one decided by a tie), its
  invariances and errors; cosine_eer on a tiny set.
* The command line in a subprocess on a reduced but honest configuration (400 training and
  100 held-out speakers, 10 epochs, both heads with the same data, initial model, batches and
  optimizer; about 2.5 s): per-epoch lines parsed, the margin head's EER on the unseen
  speakers at most 0.85 of softmax's (measured 3.89% vs 5.43% for seed 0, ratio 0.72; seeds
  1 and 2 give 0.75 and 0.70) and both in (0, 0.5); a bad argument exits with argparse's
  error. The defaults' numbers (seeds 0-2, ratio 0.53-0.62) are in the example's docstring.
* The example's helpers: deterministic data with disjoint held-out speakers, the batch order,
  identical initial weights for both implementations, --impl torch end to end.

torch comes from the session fixture ``torch`` (a missing torch fails under CI). The file
takes about 8 s of wall time on one core.
"""
import math
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fastloss

from conftest import imported_example

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "speaker_margin.py"
# The directory holding the fastloss this process imported: the CLI subprocess imports it too.
FASTLOSS_ROOT = Path(fastloss.__file__).resolve().parents[1]

STEPS = 20
SEED = 0
# float32 on shared embeddings and weights (see the module docstring for the measurements)
F32_LOSS_RTOL = 1e-6
F32_GRAD_RTOL = 5e-6
TIE_WINDOW = 1e-4  # |target logit - best other logit| below which a hit may flip
# float64 free-running
F64_LOSS_RTOL = 1e-13
F64_PARAM_RTOL = 1e-11
# the command line's reduced configuration and the margin head's required advantage there
CLI_ARGS = ["--train-speakers", "400", "--test-speakers", "100", "--epochs", "10",
            "--seed", str(SEED), "--threads", "1"]
CLI_EPOCHS = 10
CLI_MAX_RATIO = 0.85


# --------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def example(torch):
    """examples/speaker_margin.py imported as a module (it imports torch at the top)."""
    with imported_example(EXAMPLE, "speaker_margin_example") as module:
        yield module


@pytest.fixture(scope="module")
def data(example):
    """The example's default data set (seed 0)."""
    return example.make_data(seed=SEED)


class _Deterministic:
    """One torch thread and one fastloss thread, deterministic algorithms, torch's global RNG
    forked and seeded; everything restored on exit."""

    def __init__(self, torch):
        self.torch = torch

    def __enter__(self):
        t = self.torch
        self.saved = (t.get_num_threads(), fastloss.get_num_threads(),
                      t.are_deterministic_algorithms_enabled(),
                      t.is_deterministic_algorithms_warn_only_enabled())
        self.rng = t.random.fork_rng(devices=[])
        self.rng.__enter__()
        t.set_num_threads(1)
        fastloss.set_num_threads(1)
        t.use_deterministic_algorithms(True)
        t.manual_seed(SEED)
        return self

    def __exit__(self, *exc):
        threads, fl_threads, enabled, warn_only = self.saved
        self.torch.use_deterministic_algorithms(enabled, warn_only=warn_only)
        self.torch.set_num_threads(threads)
        fastloss.set_num_threads(fl_threads)
        self.rng.__exit__(*exc)
        return False


@pytest.fixture
def deterministic(torch):
    with _Deterministic(torch):
        yield


def _head_params(example, head):
    """(name, parameter) of a head: the softmax head's fc weight and bias, a margin head's
    class weights."""
    if isinstance(head, example.SoftmaxHead):
        return [("fc.weight", head.fc.weight), ("fc.bias", head.fc.bias)]
    return [("weight", head.weight)]


def _torch_formulation(torch, example, name, head):
    """The torch formulation of ``head`` (a fastloss head from make_head), holding copies of
    its current weights."""
    if name == "softmax":
        ref = example.SoftmaxHead(head.fc.out_features, head.fc.in_features, torch.nn.CrossEntropyLoss())
    else:
        n_class, dim = head.weight.shape
        ref = example.SeedAAMSoftmax(n_class, head.m, head.s, dim, cosface=name == "am")
    ref.to(_head_params(example, head)[0][1].dtype)
    with torch.no_grad():
        for (_, p), (_, q) in zip(_head_params(example, ref), _head_params(example, head)):
            p.copy_(q)
    return ref


class Shadow:
    """``on_step`` for example.train: at each step, after the backward pass through the
    fastloss head, evaluates the torch formulation on copies of the same embeddings, labels
    and head weights and records the differences."""

    def __init__(self, torch, example, name):
        self.torch, self.example, self.name = torch, example, name
        self.records = []

    def __call__(self, step, embeddings, labels, loss, prec1, head):
        torch = self.torch
        assert embeddings.grad is not None and embeddings.grad.shape == embeddings.shape
        assert loss.dtype == embeddings.dtype and loss.dim() == 0
        assert prec1.dtype == torch.float32 and prec1.dim() == 0
        labels_before = labels.clone()
        ref = _torch_formulation(torch, self.example, self.name, head)
        logits = []
        hook = ref.ce.register_forward_hook(lambda module, args, out: logits.append(args[0].detach()))
        x = embeddings.detach().clone().requires_grad_()
        ref_loss, ref_prec1 = ref(x, labels.clone())
        ref_loss.backward()
        hook.remove()
        assert torch.equal(labels, labels_before)

        z = logits[0]
        target = z.gather(1, labels.view(-1, 1)).squeeze(1)
        best_other = z.scatter(1, labels.view(-1, 1), -math.inf).max(1).values
        near_ties = int(((target - best_other).abs() <= TIE_WINDOW).sum())
        rows = len(labels)
        grads = {"embeddings": (embeddings.grad, x.grad)}
        for (pname, p), (_, q) in zip(_head_params(self.example, head), _head_params(self.example, ref)):
            assert p.grad is not None, pname
            grads[pname] = (p.grad, q.grad)
        self.records.append({
            "step": step,
            "loss": (loss.item(), ref_loss.item()),
            "hits": (float(prec1) * rows / 100.0, float(ref_prec1) * rows / 100.0),
            "near_ties": near_ties,
            "grad_rel": {k: ((a - b).abs().max() / b.abs().max()).item() for k, (a, b) in grads.items()},
        })


# --------------------------------------------------------------------------
# the heads against their torch formulations
# --------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["softmax", "aam", "am"])
def test_float32_every_step_matches_torch_formulation(torch, example, data, deterministic, simd, name):
    """20 training steps driven by the fastloss head; at each, the torch formulation on the
    same embeddings and weights: loss within 1e-6 relative, prec1 equal (up to near ties),
    gradients within 5e-6 of their largest entry."""
    shadow = Shadow(torch, example, name)
    head = example.make_head(name, data.n_train_speakers, seed=SEED)
    if name != "softmax":  # the example's m and s (the shadow reads them from the head)
        assert (head.m, head.s) == (0.2, 30.0)
    result = example.train(head, data, seed=SEED, max_steps=STEPS, on_step=shadow)
    assert len(shadow.records) == len(result.step_losses) == STEPS
    assert [r["step"] for r in shadow.records] == list(range(1, STEPS + 1))
    assert [r["loss"][0] for r in shadow.records] == result.step_losses
    for r in shadow.records:
        fast, ref = r["loss"]
        assert math.isfinite(ref) and abs(fast - ref) <= F32_LOSS_RTOL * abs(ref), r
        fast_hits, ref_hits = r["hits"]
        assert abs(fast_hits - round(fast_hits)) < 1e-3 and abs(ref_hits - round(ref_hits)) < 1e-3, r
        assert abs(round(fast_hits) - round(ref_hits)) <= r["near_ties"], r
        assert set(r["grad_rel"]) == {"embeddings"} | {n for n, _ in _head_params(example, head)}
        for what, rel in r["grad_rel"].items():
            assert rel <= F32_GRAD_RTOL, (name, r["step"], what, rel)
    # the steps train: the loss falls (from about ln 800 for softmax, higher with a margin)
    assert result.step_losses[-1] < result.step_losses[0] - 0.01, result.step_losses
    if name == "softmax":
        assert abs(result.step_losses[0] - math.log(data.n_train_speakers)) < 0.5


@pytest.mark.parametrize("name", ["softmax", "aam", "am"])
def test_float64_free_running_matches_torch_formulation(torch, example, data, deterministic, name):
    """20 steps with the fastloss head and 20 with its torch formulation, from the same
    initial weights on the same batches: the same losses to 1e-13 relative, the same final
    parameters to 1e-11 of each tensor's largest entry."""
    runs = {impl: example.train(example.make_head(name, data.n_train_speakers, impl=impl, seed=SEED),
                                data, seed=SEED, max_steps=STEPS, dtype=torch.float64)
            for impl in ("fastloss", "torch")}
    fast, ref = runs["fastloss"], runs["torch"]
    assert len(fast.step_losses) == len(ref.step_losses) == STEPS
    for step, (a, b) in enumerate(zip(fast.step_losses, ref.step_losses), 1):
        assert abs(a - b) <= F64_LOSS_RTOL * abs(b), (step, a, b)
    assert fast.step_losses[-1] < fast.step_losses[0] - 0.01

    def params(result):
        return ([("model." + n, p) for n, p in result.model.named_parameters()]
                + [("head." + n, p) for n, p in _head_params(example, result.head)])

    initial_model = dict(example.build_model(SEED).named_parameters())
    initial_head = dict(_head_params(example, example.make_head(name, data.n_train_speakers, seed=SEED)))
    fast_params, ref_params = params(fast), params(ref)
    assert [n for n, _ in fast_params] == [n for n, _ in ref_params]
    assert len(fast_params) == 6 + len(initial_head)
    for (pname, p), (_, q) in zip(fast_params, ref_params):
        assert p.dtype == q.dtype == torch.float64 and p.shape == q.shape
        diff = (p - q).abs().max().item()
        scale = q.abs().max().item()
        assert diff <= F64_PARAM_RTOL * scale, f"{pname}: max |fastloss - torch| {diff:.3g} (max |p| {scale:.3g})"
        where, short = pname.split(".", 1)
        start = (initial_model if where == "model" else initial_head)[short]
        assert not torch.equal(q.detach().float(), start.detach()), f"{pname} did not move"


def test_both_implementations_start_from_the_same_weights(torch, example):
    import fastloss.torch as flt

    for name, fast_type, ref_type in (("aam", flt.AAMSoftmax, example.SeedAAMSoftmax),
                                      ("am", flt.AMSoftmax, example.SeedAAMSoftmax)):
        fast = example.make_head(name, 50, 16, impl="fastloss", margin=0.3, scale=20.0, seed=4)
        ref = example.make_head(name, 50, 16, impl="torch", margin=0.3, scale=20.0, seed=4)
        assert type(fast) is fast_type and type(ref) is ref_type
        assert ref.cosface == (name == "am") and (fast.m, fast.s, ref.m, ref.s) == (0.3, 20.0, 0.3, 20.0)
        assert fast.weight.shape == (50, 16) and torch.equal(fast.weight, ref.weight)
        # xavier-normal, gain 1: std sqrt(2 / (fan_in + fan_out))
        assert abs(fast.weight.std().item() / math.sqrt(2 / 66) - 1) < 0.1
        assert not torch.equal(fast.weight, example.make_head(name, 50, 16, seed=5).weight)
    fast = example.make_head("softmax", 50, 16, impl="fastloss", seed=4)
    ref = example.make_head("softmax", 50, 16, impl="torch", seed=4)
    assert type(fast.ce) is flt.CrossEntropyLoss and type(ref.ce) is torch.nn.CrossEntropyLoss
    assert torch.equal(fast.fc.weight, ref.fc.weight) and torch.equal(fast.fc.bias, ref.fc.bias)
    # the model's initial weights depend on the seed only, and torch's global RNG is untouched
    state = torch.random.get_rng_state()
    a, b = example.build_model(3), example.build_model(3)
    assert torch.equal(state, torch.random.get_rng_state())
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="unknown head"):
        example.make_head("arcface", 10)
    with pytest.raises(ValueError, match="unknown impl"):
        example.make_head("aam", 10, impl="numpy")


# --------------------------------------------------------------------------
# the equal-error rate
# --------------------------------------------------------------------------

def test_eer_known_cases(example):
    eer = example.equal_error_rate
    # perfectly separated: a threshold between the two groups makes no error
    assert eer([0.9, 0.8, 0.7, 0.2, 0.1], [1, 1, 1, 0, 0]) == 0.0
    # perfectly reversed: every threshold errs on one side completely
    assert eer([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0]) == 1.0
    # all scores equal: accept all or nothing; the crossing is halfway
    assert eer([0.5] * 7, [1, 0, 0, 1, 0, 0, 0]) == 0.5
    # targets 0.9 0.8 0.4, non-targets 0.7 0.3 0.2 0.1: accepting down to 0.7 gives
    # FAR 1/4, FRR 1/3; down to 0.4, FAR 1/4, FRR 0 -> the curve crosses FAR = FRR at 1/4
    assert eer([0.9, 0.8, 0.4, 0.7, 0.3, 0.2, 0.1], [1, 1, 1, 0, 0, 0, 0]) == pytest.approx(0.25, abs=1e-15)
    # a tie between a target and a non-target at 0.5 (targets 0.9 0.5, non-targets 0.5 0.1
    # 0.0): accepting down to 0.9 gives (FAR, FRR) = (0, 1/2), down to 0.5 (1/3, 0); on that
    # segment FAR = FRR at 3/5 of the way: 1/5. (Splitting the tie would give 0.)
    assert eer([0.9, 0.5, 0.5, 0.1, 0.0], [1, 1, 0, 0, 0]) == pytest.approx(0.2, abs=1e-15)
    assert eer([0.5, 0.0, 0.9, 0.1, 0.5], [0, 0, 1, 0, 1]) == pytest.approx(0.2, abs=1e-15)


def test_eer_same_distribution_and_invariances(example):
    rng = np.random.default_rng(0)
    eer = example.equal_error_rate
    scores = rng.standard_normal(40000)
    labels = rng.random(40000) < 0.25
    same = eer(scores, labels)
    assert abs(same - 0.5) < 0.01, same  # standard deviation about 0.003
    # separated by one standard deviation (d' = 1): EER = Phi(-1/2) = 0.3085
    shifted = eer(scores + labels, labels)
    assert abs(shifted - 0.5 * math.erfc(0.5 / math.sqrt(2))) < 0.01, shifted
    # invariant under a permutation and a monotone map of the scores; swapping the roles of
    # targets and non-targets and negating the scores mirrors the curve across FAR = FRR
    coarse = np.round(scores + labels, 1)  # many ties
    base = eer(coarse, labels)
    perm = rng.permutation(len(coarse))
    assert eer(coarse[perm], labels[perm]) == pytest.approx(base, abs=1e-15)
    assert eer(np.exp(coarse), labels) == pytest.approx(base, abs=1e-15)
    assert eer(-coarse, ~labels) == pytest.approx(base, abs=1e-12)
    with pytest.raises(ValueError, match="both"):
        eer([0.1, 0.2], [1, 1])
    with pytest.raises(ValueError, match="labels"):
        eer([0.1, 0.2], [1, 0, 0])
    with pytest.raises(ValueError, match="NaN"):
        eer([0.1, math.nan], [1, 0])


def test_cosine_eer_and_trials(torch, example):
    speakers = torch.tensor([0, 0, 1, 1])
    i, j, same = example.trials(speakers)
    assert list(zip(i.tolist(), j.tolist())) == [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    assert same.tolist() == [True, False, False, False, False, True]
    # each speaker along its own axis, scaled: cosine 1 within, 0 across -> 0
    v = torch.tensor([[2.0, 0.0], [0.5, 0.0], [0.0, 3.0], [0.0, 1.0]])
    assert example.cosine_eer(v, speakers) == 0.0
    # swap the middle two: both target pairs score 0, the non-targets 1, 0, 0, 1; (FAR, FRR)
    # goes (0, 1) -> (1/2, 1) (accepting the 1s) -> (1, 0) (all), crossing FAR = FRR at 2/3
    w = v[[0, 2, 1, 3]]
    assert example.cosine_eer(w, speakers) == pytest.approx(2 / 3, abs=1e-15)


# --------------------------------------------------------------------------
# data, batches, training loop
# --------------------------------------------------------------------------

def test_data_is_deterministic_with_disjoint_held_out_speakers(torch, example):
    a = example.make_data(30, 10, 4, seed=5)
    b = example.make_data(30, 10, 4, seed=5)
    c = example.make_data(30, 10, 4, seed=6)
    assert a.train_x.shape == (120, 64) and a.test_x.shape == (40, 64)
    assert a.train_x.dtype == a.test_x.dtype == torch.float32
    assert a.train_y.dtype == a.test_y.dtype == torch.int64
    assert a.test_latent.shape == (40, 16)
    assert (a.n_train_speakers, a.n_test_speakers) == (30, 10)
    for field in ("train_x", "train_y", "test_x", "test_y", "test_latent"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert not torch.equal(a.train_x, c.train_x) and not torch.equal(a.test_x, c.test_x)
    assert torch.bincount(a.train_y).tolist() == [4] * 30
    assert torch.bincount(a.test_y).tolist() == [4] * 10
    # standardised on the training utterances
    assert a.train_x.mean(0).abs().max() < 1e-5
    assert (a.train_x.std(0, unbiased=False) - 1).abs().max() < 1e-4
    # no held-out utterance repeats a training one
    x = torch.nn.functional.normalize(a.train_x)
    t = torch.nn.functional.normalize(a.test_x)
    assert (t @ x.T).max() < 0.999
    assert "30 training x 4 utterances, 10 held-out x 4" in a.description
    with pytest.raises(ValueError, match="utterances"):
        example.make_data(30, 10, 1)
    with pytest.raises(ValueError, match="n_test_speakers"):
        example.make_data(30, 1, 4)


def test_default_data_is_hard_but_learnable(example, data):
    """The inputs alone verify badly (the nuisance channels dominate them); the latents
    would verify almost perfectly."""
    assert len(data.train_y) == 6400 and len(data.test_y) == 1600
    assert example.cosine_eer(data.test_x, data.test_y) > 0.3
    assert example.cosine_eer(data.test_latent, data.test_y) < 0.01


def test_batch_order(torch, example):
    order = example.batch_order(10, 3, 2, seed=1)
    assert [len(epoch) for epoch in order] == [3, 3]
    for epoch in order:
        flat = torch.cat(epoch).tolist()
        assert len(set(flat)) == 9 and set(flat) <= set(range(10))
    again = example.batch_order(10, 3, 2, seed=1)
    assert all(torch.equal(p, q) for e, f in zip(order, again) for p, q in zip(e, f))
    with pytest.raises(ValueError, match="batch size"):
        example.batch_order(10, 11, 1, seed=0)


def test_train_reports_epochs_and_stops_at_max_steps(torch, example, deterministic):
    data = example.make_data(40, 5, 4, seed=1)  # 160 utterances: 5 batches of 32 per epoch
    epochs = []
    head = example.make_head("aam", 40, seed=1)
    result = example.train(head, data, epochs=3, batch_size=32, seed=1, max_steps=12, report=epochs.append)
    assert len(result.step_losses) == 12 and result.head is head
    assert [e.epoch for e in epochs] == [1, 2, 3] and epochs == result.epochs
    assert epochs[0].loss == pytest.approx(sum(result.step_losses[:5]) / 5, rel=1e-12)
    assert epochs[2].loss == pytest.approx(sum(result.step_losses[10:]) / 2, rel=1e-12)
    assert all(0 <= e.accuracy <= 100 and e.seconds >= 0 for e in epochs)
    eer = example.held_out_eer(result.model, data)
    assert 0 <= eer <= 1


# --------------------------------------------------------------------------
# the command line
# --------------------------------------------------------------------------

EPOCH_LINE = re.compile(r"^(softmax|aam|am) epoch\s+(\d+)\s+loss (\S+)\s+accuracy\s+(\S+)%\s+\((\S+) s\)$")
EER_LINE = re.compile(r"^(softmax|aam|am) EER on unseen speakers: (\S+)%\s+\(training (\S+) s\)$")


def _parse(out):
    lines = out.splitlines()
    epochs = {}
    for m in map(EPOCH_LINE.match, lines):
        if m:
            epochs.setdefault(m[1], []).append((int(m[2]), float(m[3]), float(m[4])))
    eers = {m[1]: float(m[2]) / 100 for m in map(EER_LINE.match, lines) if m}
    return lines, epochs, eers


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(FASTLOSS_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


def test_command_line_margin_head_beats_softmax(tmp_path):
    """Both heads, the same data / initial model / batches / optimizer / steps, reduced to 400
    training speakers and 10 epochs: the margin head's EER on the unseen speakers is at most
    0.85 of softmax's (measured 0.72). A bad argument, run alongside, exits with status 2."""
    procs = {
        "run": subprocess.Popen([sys.executable, str(EXAMPLE)] + CLI_ARGS, cwd=str(tmp_path), env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True),
        "bad": subprocess.Popen([sys.executable, str(EXAMPLE), "--head", "arcface"], cwd=str(tmp_path),
                                env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True),
    }
    results = {}
    try:
        for key, proc in procs.items():
            try:
                results[key] = (*proc.communicate(timeout=180), proc.returncode)
            except subprocess.TimeoutExpired:
                pytest.fail(f"{key}: still running after 180 s")
    finally:
        for proc in procs.values():
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            proc.wait()
    out, err, rc = results["bad"]
    assert rc == 2 and out == "", (rc, out, err)
    assert "error: argument --head: invalid choice: 'arcface'" in err, err

    out, err, rc = results["run"]
    assert rc == 0, f"exit {rc}\n{out}\n{err}"
    lines, epochs, eers = _parse(out)
    assert lines[0].startswith("data: synthetic speakers (400 training x 8 utterances, 100 held-out x 8"), out
    assert lines[1] == "trials: 2800 target + 316800 non-target pairs of held-out utterances", out
    assert "10 epochs of 25 steps, seed 0, float32" in lines[2] and "1 torch threads" in lines[2], out
    heads = [line for line in lines if line.startswith("head ")]
    assert heads[0] == "head softmax: Linear(128, 400) + fastloss.torch.modules.CrossEntropyLoss", out
    assert heads[1] == "head aam: m 0.2, s 30.0, fastloss.torch.modules.AAMSoftmax", out
    assert set(epochs) == set(eers) == {"softmax", "aam"}, out
    for name, rows in epochs.items():
        assert [r[0] for r in rows] == list(range(1, CLI_EPOCHS + 1)), out
        assert all(math.isfinite(loss) and loss > 0 and 0 <= acc <= 100 for _, loss, acc in rows), out
        assert rows[-1][1] < 0.5 * rows[0][1] and rows[-1][2] > 50, (name, rows)  # it learns
    reference = re.match(r"^reference EER on held-out speakers: raw inputs (\S+)%, untrained model (\S+)%, "
                         r"true identity latents (\S+)%$", lines[3])
    assert reference, out
    raw, untrained, latents = (float(v) / 100 for v in reference.groups())
    soft, aam = eers["softmax"], eers["aam"]
    assert 0 < aam < soft < 0.5 and soft < min(raw, untrained) and latents < aam, out
    assert aam <= CLI_MAX_RATIO * soft, f"aam EER {aam:.4f} vs softmax {soft:.4f}\n{out}"
    assert lines[-2] == (f"comparison: EER on unseen speakers, softmax {100 * soft:.2f}% vs aam "
                         f"{100 * aam:.2f}%: the margin head's is lower (ratio {aam / soft:.2f})"), out
    assert re.match(r"^wall: [0-9.]+ s$", lines[-1]), out


def test_command_line_torch_formulation_in_process(torch, example, capsys, deterministic):
    """--impl torch --head am on a tiny set, through main(): the seed's formulation runs and
    prints the same kind of report."""
    assert example.main(["--impl", "torch", "--head", "am", "--train-speakers", "20", "--test-speakers", "5",
                         "--utterances", "4", "--epochs", "2", "--batch-size", "16", "--threads", "1"]) == 0
    lines, epochs, eers = _parse(capsys.readouterr().out)
    assert f"head am: m 0.2, s 30.0, {example.__name__}.SeedAAMSoftmax" in lines, lines
    assert [r[0] for r in epochs["am"]] == [1, 2] and set(eers) == {"am"}
    assert 0 <= eers["am"] <= 1
    assert not any(line.startswith("comparison:") for line in lines)


def test_command_line_rejects_bad_arguments(example, capsys):
    for argv in (["--head", "arcface"], ["--impl", "numpy"], ["--epochs", "0"], ["--utterances", "1"],
                 ["--train-speakers", "1"], ["--batch-size", "0"], ["--batch-size", "100000"],
                 ["--lr", "0"], ["--scale", "-1"], ["--margin", "-0.1"], ["--within", "-1"],
                 ["--threads", "0"], ["--dtype", "float16"]):
        with pytest.raises(SystemExit) as info:
            example.parse_args(argv)
        assert info.value.code == 2, argv
        assert "error" in capsys.readouterr().err, argv
    args = example.parse_args([])
    assert (args.head, args.impl, args.epochs, args.batch_size, args.lr, args.margin, args.scale) == \
        ("both", "fastloss", 15, 128, 3e-3, 0.2, 30.0)
    assert (args.train_speakers, args.test_speakers, args.utterances, args.seed) == (800, 200, 8, 0)
