"""fastloss.torch under torch.compile, and its custom ops under torch.library.opcheck.

Every loss module (and the cross_entropy functional) in a tiny model, Linear + loss,
compiled with ``fullgraph=True`` (a graph break fails): forward and backward match the
eager torch.nn model (same initial parameters), and the traced graph calls fastloss's ops.
Per module the compile uses the ``aot_eager`` backend (AOTAutograd traces forward and
backward through the ops' fake implementations and registered autograd, without Inductor's
C++ code generation: about a second each); one model holding all nine losses is compiled
once with the default backend (Inductor). Measured: the whole file takes about 25 s on 2
cores with a cold Inductor cache, most of it that one Inductor compile.
"""

import pytest

TOL = dict(rtol=1e-5, atol=1e-6)  # float32, compiled vs eager


@pytest.fixture(scope="module")
def flt(torch):
    import fastloss.torch
    return fastloss.torch


@pytest.fixture(autouse=True)
def fresh_dynamo(torch):
    """Every test compiles from a clean Dynamo cache (the models share one forward code
    object, whose recompile limit would otherwise be reached)."""
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


# name -> (constructor kwargs (callable of torch), input shape maker, target maker)
def _specs(torch):
    g = torch.Generator().manual_seed(0)

    def randn(*s):
        return torch.randn(*s, generator=g)

    def rand(*s):
        return torch.rand(*s, generator=g)

    idx = torch.randint(0, 3, (6,), generator=g)
    idx[0] = -100
    return {
        "CrossEntropyLoss": (dict(weight=rand(3) + 0.5, label_smoothing=0.1), None, idx),
        "CrossEntropyLoss-prob": (dict(), None, rand(6, 3).softmax(1)),
        "NLLLoss": (dict(weight=rand(3) + 0.5, reduction="sum"), "log_softmax", idx),
        "BCELoss": (dict(weight=rand(6, 3) + 0.5), "sigmoid", rand(6, 3)),
        "BCEWithLogitsLoss": (dict(pos_weight=rand(3) + 0.5, reduction="sum"), None, rand(6, 3)),
        "MSELoss": (dict(), None, randn(6, 3)),
        "L1Loss": (dict(reduction="sum"), None, randn(6, 3)),
        "SmoothL1Loss": (dict(beta=0.5), None, randn(6, 3)),
        "HuberLoss": (dict(delta=0.5, reduction="sum"), None, randn(6, 3)),
        "KLDivLoss": (dict(reduction="batchmean", log_target=True), "log_softmax", randn(6, 3).log_softmax(1)),
    }


SPEC_NAMES = ["CrossEntropyLoss", "CrossEntropyLoss-prob", "NLLLoss", "BCELoss", "BCEWithLogitsLoss", "MSELoss",
              "L1Loss", "SmoothL1Loss", "HuberLoss", "KLDivLoss"]


def _model(torch, loss, activation):
    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)
            self.loss = loss

        def forward(self, x, target):
            y = self.lin(x)
            if activation == "sigmoid":
                y = torch.sigmoid(y)
            elif activation == "log_softmax":
                y = torch.log_softmax(y, dim=1)
            return self.loss(y, target)

    torch.manual_seed(1)
    return Model()


def _recording_backend(torch, seen):
    """aot_eager, after noting every fastloss op of the graph Dynamo traced."""
    aot_eager = torch._dynamo.lookup_backend("aot_eager")

    def backend(gm, example_inputs):
        seen.extend(str(n.target) for n in gm.graph.nodes if "fastloss" in str(n.target))
        return aot_eager(gm, example_inputs)
    return backend


def _run(torch, model, x, target):
    model.zero_grad()
    out = model(x, target)
    out.backward()
    return out.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_compiled_module_matches_eager_torch(torch, flt, name):
    kwargs, activation, target = _specs(torch)[name]
    cls = name.split("-")[0]
    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(2))
    eager = _model(torch, getattr(torch.nn, cls)(**kwargs), activation)
    ours = _model(torch, getattr(flt, cls)(**kwargs), activation)
    seen = []
    compiled = torch.compile(ours, fullgraph=True, backend=_recording_backend(torch, seen))
    expected, expected_grads = _run(torch, eager, x, target)
    for _ in range(2):  # the second call runs the cached graph
        got, got_grads = _run(torch, compiled, x, target)
        torch.testing.assert_close(got, expected, **TOL)
        for g, e in zip(got_grads, expected_grads):
            torch.testing.assert_close(g, e, **TOL)
    op = "fastloss.cross_entropy" if cls == "CrossEntropyLoss" else "fastloss.loss"
    assert any(op in s for s in seen), seen


def test_compiled_cross_entropy_functional(torch, flt):
    x = torch.randn(6, 4, 2, generator=torch.Generator().manual_seed(3), requires_grad=True)
    t = torch.randint(0, 4, (6, 2), generator=torch.Generator().manual_seed(4))
    w = torch.rand(4) + 0.5
    seen = []

    def f(x, t):
        return flt.cross_entropy(x * 2.0, t, weight=w, ignore_index=1, reduction="none", label_smoothing=0.2)

    compiled = torch.compile(f, fullgraph=True, backend=_recording_backend(torch, seen))
    xe = x.detach().clone().requires_grad_()
    expected = torch.nn.functional.cross_entropy(xe * 2.0, t, weight=w, ignore_index=1, reduction="none",
                                                 label_smoothing=0.2)
    got = compiled(x, t)
    torch.testing.assert_close(got, expected, **TOL)
    v = torch.randn(expected.shape)
    torch.testing.assert_close(torch.autograd.grad(got, x, v)[0], torch.autograd.grad(expected, xe, v)[0], **TOL)
    assert any("fastloss.cross_entropy" in s for s in seen), seen


def test_all_modules_compile_with_inductor(torch, flt):
    """One model summing all nine losses, compiled once with the default backend."""
    specs = _specs(torch)
    names = [n for n in SPEC_NAMES if "-" not in n]

    def build(ns):
        class All(torch.nn.Module):
            def __init__(self):
                super().__init__()
                self.lin = torch.nn.Linear(4, 3)
                self.losses = torch.nn.ModuleList(getattr(ns, n)(**specs[n][0]) for n in names)

            def forward(self, x):
                y = self.lin(x)
                total = 0.0
                for n, loss in zip(names, self.losses):
                    activation, target = specs[n][1], specs[n][2]
                    z = torch.sigmoid(y) if activation == "sigmoid" else (
                        torch.log_softmax(y, dim=1) if activation == "log_softmax" else y)
                    total = total + loss(z, target)
                return total
        torch.manual_seed(5)
        return All()

    x = torch.randn(6, 4, generator=torch.Generator().manual_seed(6))
    eager, ours = build(torch.nn), build(flt)
    compiled = torch.compile(ours, fullgraph=True)
    expected, expected_grads = eager(x), None
    expected.backward()
    expected_grads = [p.grad for p in eager.parameters()]
    got = compiled(x)
    got.backward()
    torch.testing.assert_close(got, expected.detach(), **TOL)
    for g, e in zip([p.grad for p in ours.parameters()], expected_grads):
        torch.testing.assert_close(g, e, **TOL)


def test_compiled_target_requiring_grad_runs_torch(torch, flt):
    """Under compile, a target that requires grad runs torch's function (its gradient is torch's)."""
    x = torch.randn(5, 3, requires_grad=True)
    y = torch.randn(5, 3, requires_grad=True)
    compiled = torch.compile(lambda a, b: flt.mse_loss(a, b), fullgraph=True, backend="aot_eager")
    got = compiled(x, y)
    gx, gy = torch.autograd.grad(got, (x, y))
    xe, ye = x.detach().requires_grad_(), y.detach().requires_grad_()
    expected = torch.nn.functional.mse_loss(xe, ye)
    ex, ey = torch.autograd.grad(expected, (xe, ye))
    torch.testing.assert_close(got, expected, **TOL)
    torch.testing.assert_close(gx, ex, **TOL)
    torch.testing.assert_close(gy, ey, **TOL)


# --------------------------------------------------------------------------
# opcheck
# --------------------------------------------------------------------------

def _ce_args(torch):
    x = torch.randn(5, 4, requires_grad=True)
    t = torch.tensor([0, 3, -100, 1, 2])
    return {
        "mean": (x, t, None, -100, "mean", 0.0),
        "none-weight-smoothing": (x, t, torch.rand(4) + 0.5, -100, "none", 0.2),
        "sum-kdim": (torch.randn(2, 4, 3, requires_grad=True), torch.randint(0, 4, (2, 3)), None, 1, "sum", 0.0),
        "prob-target": (x, torch.rand(5, 4).softmax(1), None, -100, "mean", 0.1),
        "float64": (x.detach().double().requires_grad_(), t, None, -100, "mean", 0.0),
    }


@pytest.mark.parametrize("case", ["mean", "none-weight-smoothing", "sum-kdim", "prob-target", "float64"])
def test_opcheck_cross_entropy(torch, flt, case):
    args = _ce_args(torch)[case]
    result = torch.library.opcheck(torch.ops.fastloss.cross_entropy.default, args)
    assert set(result.values()) == {"SUCCESS"}, result
    # the backward op, with the log-sum-exp of the forward
    loss, lse = torch.ops.fastloss.cross_entropy(*[a.detach() if hasattr(a, "detach") else a for a in args])
    grad = torch.randn(loss.shape, dtype=loss.dtype)
    x, t, w, ignore_index, reduction, smoothing = args
    result = torch.library.opcheck(torch.ops.fastloss.cross_entropy_backward.default,
                                   (grad, x.detach(), t, w, lse, ignore_index, reduction, smoothing))
    assert set(result.values()) == {"SUCCESS"}, result


def _loss_args(torch):
    x = torch.randn(5, 4, requires_grad=True)
    y = torch.randn(5, 4)
    p = torch.rand(5, 4)
    return {
        "nll_loss": (x, torch.tensor([0, 3, 2, 2, 1]), torch.rand(4) + 0.5, None, "mean", 2, 0.0, False),
        "binary_cross_entropy": (torch.rand(5, 4, requires_grad=True), p, p + 0.5, None, "none", -100, 0.0, False),
        "binary_cross_entropy_with_logits": (x, p, None, torch.rand(4) + 0.5, "sum", -100, 0.0, False),
        "mse_loss": (x, y, None, None, "mean", -100, 0.0, False),
        "l1_loss": (x, y, None, None, "none", -100, 0.0, False),
        "smooth_l1_loss": (x, y, None, None, "mean", -100, 0.5, False),
        "huber_loss": (x, y, None, None, "sum", -100, 2.0, False),
        "kl_div": (x, y.log_softmax(1), None, None, "batchmean", -100, 0.0, True),
    }


LOSS_NAMES = ["nll_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits", "mse_loss", "l1_loss",
              "smooth_l1_loss", "huber_loss", "kl_div"]


@pytest.mark.parametrize("name", LOSS_NAMES)
def test_opcheck_loss(torch, flt, name):
    args = _loss_args(torch)[name]
    result = torch.library.opcheck(torch.ops.fastloss.loss.default, (name, *args))
    assert set(result.values()) == {"SUCCESS"}, result
    out = torch.ops.fastloss.loss(name, *[a.detach() if hasattr(a, "detach") else a for a in args])
    grad = torch.randn(out.shape)
    x, target, *rest = args
    result = torch.library.opcheck(torch.ops.fastloss.loss_backward.default,
                                   (name, grad, x.detach(), target, *rest))
    assert set(result.values()) == {"SUCCESS"}, result
