"""fastloss.torch.AAMSoftmax / AMSoftmax against the seed's AAMsoftmax module (copied below as
the oracle, in torch ops), and the fused kernel's core cases against the seed formulation on
every SIMD path.

The seed (../shared/seeds/001): cosine = linear(normalize(x), normalize(W)); sine =
sqrt((1 - cos^2).clamp(0, 1)); phi = cos cos m - sine sin m; phi = where(cos - th > 0, phi,
cos - mm); one-hot on the target; times s; nn.CrossEntropyLoss; prec1 = accuracy(output,
label, topk=(1,))[0]. Tolerances: float32 losses to 2e-6 relative; gradients to 2e-5 of the
largest entry of their tensor (the normalize / linear backward runs in torch either way, so
only the margin cross-entropy's rounding differs); float64 to 1e-12.
"""
import math

import numpy as np
import pytest

import fastloss
from fastloss import reference


def accuracy(torch, output, target, topk=(1,)):
    maxk = max(topk)
    batch_size = target.size(0)
    _, pred = output.topk(maxk, 1, True, True)
    pred = pred.t()
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    return [correct[:k].reshape(-1).float().sum(0) * (100.0 / batch_size) for k in topk]


def seed_module(torch):
    nn, F = torch.nn, torch.nn.functional

    class AAMsoftmax(nn.Module):  # the seed, with the embedding size as an argument
        def __init__(self, n_class, m, s, dim, easy_margin=False, cosface=False):
            super().__init__()
            self.m, self.s, self.easy, self.cosface = m, s, easy_margin, cosface
            self.weight = torch.nn.Parameter(torch.FloatTensor(n_class, dim), requires_grad=True)
            self.ce = nn.CrossEntropyLoss()
            nn.init.xavier_normal_(self.weight, gain=1)

        def forward(self, x, label):
            cos_m, sin_m = math.cos(self.m), math.sin(self.m)
            th, mm = math.cos(math.pi - self.m), math.sin(math.pi - self.m) * self.m
            cosine = F.linear(F.normalize(x), F.normalize(self.weight))
            if self.cosface:
                phi = cosine - self.m
            else:
                sine = torch.sqrt((1.0 - torch.mul(cosine, cosine)).clamp(0, 1))
                phi = cosine * cos_m - sine * sin_m
                phi = torch.where(cosine > 0, phi, cosine) if self.easy else torch.where((cosine - th) > 0, phi, cosine - mm)
            one_hot = torch.zeros_like(cosine)
            one_hot.scatter_(1, label.view(-1, 1), 1)
            output = (one_hot * phi) + ((1.0 - one_hot) * cosine)
            output = output * self.s
            loss = self.ce(output, label)
            prec1 = accuracy(torch, output.detach(), label.detach(), topk=(1,))[0]
            return loss, prec1

    return AAMsoftmax


def _pair(torch, kind, n_class, m, s, dim, dtype, easy=False):
    import fastloss.torch as flt

    seed = seed_module(torch)(n_class, m, s, dim, easy_margin=easy, cosface=kind == "cos").to(dtype)
    ours = (flt.AMSoftmax(n_class, m, s, embedding_dim=dim) if kind == "cos"
            else flt.AAMSoftmax(n_class, m, s, embedding_dim=dim, easy_margin=easy)).to(dtype)
    with torch.no_grad():
        ours.weight.copy_(seed.weight)
    return seed, ours


def _batch(torch, seed, n, dtype, gen):
    """Embeddings, half of them near their class centre (so that prec1 is neither 0 nor 100),
    and labels; one row with theta + m > pi (x opposite its centre)."""
    n_class, dim = seed.weight.shape
    label = torch.randint(0, n_class, (n,), generator=gen)
    x = torch.randn(n, dim, generator=gen, dtype=dtype)
    with torch.no_grad():
        x[: n // 2] = 50 * seed.weight[label[: n // 2]] + 0.3 * x[: n // 2]
        x[-1] = -50 * seed.weight[label[-1]] + 0.3 * x[-1]  # cosine about -0.99, away from the clamp
    return x, label


@pytest.mark.parametrize("kind,easy", [("arc", False), ("arc", True), ("cos", False)])
@pytest.mark.parametrize("dtype_name", ["float32", "float64"])
def test_module_matches_the_seed(torch, simd, kind, easy, dtype_name):
    dtype = getattr(torch, dtype_name)
    gen = torch.Generator().manual_seed(7)
    torch.manual_seed(3)
    seed, ours = _pair(torch, kind, 300, 0.3 if kind == "arc" else 0.35, 30.0, 24, dtype, easy)
    x, label = _batch(torch, seed, 40, dtype, gen)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    l1, p1 = seed(x1, label)
    l1.backward()
    l2, p2 = ours(x2, label)
    l2.backward()
    rtol = 2e-6 if dtype == torch.float32 else 1e-12
    gtol = 2e-5 if dtype == torch.float32 else 1e-12
    assert l2.dtype == dtype and p2.dtype == torch.float32 and p2.shape == ()
    assert abs(l2.item() - l1.item()) <= rtol * abs(l1.item())
    assert p2.item() == p1.item() and 0 < p1.item() < 100
    for a, b in ((x2.grad, x1.grad), (ours.weight.grad, seed.weight.grad)):
        assert (a - b).abs().max().item() <= gtol * b.abs().max().item()


def test_module_reads_m_and_s_at_each_call(torch):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    seed, ours = _pair(torch, "arc", 50, 0.1, 10.0, 16, torch.float64)
    x, label = _batch(torch, seed, 12, torch.float64, gen)
    for m, s in ((0.1, 10.0), (0.4, 64.0), (0.0, 1.0)):
        seed.m, seed.s, ours.m, ours.s = m, s, m, s
        assert abs(ours(x, label)[0].item() - seed(x, label)[0].item()) <= 1e-12 * seed(x, label)[0].item()


def test_module_parameters_and_init(torch):
    import fastloss.torch as flt

    torch.manual_seed(0)
    head = flt.AAMSoftmax(5994, 0.2, 30)
    assert head.weight.shape == (5994, 256) and head.weight.requires_grad
    assert [n for n, _ in head.named_parameters()] == ["weight"]
    std = math.sqrt(2.0 / (5994 + 256))  # xavier-normal, gain 1
    assert abs(head.weight.std().item() / std - 1) < 0.01
    assert flt.AMSoftmax(10, 0.3, 30, embedding_dim=8).weight.shape == (10, 8)


def test_module_ignore_index_and_prec1_over_kept_rows(torch):
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(2)
    seed, ours = _pair(torch, "arc", 30, 0.2, 30.0, 8, torch.float64)
    x, label = _batch(torch, seed, 10, torch.float64, gen)
    ignored = label.clone()
    ignored[[1, 6]] = -100
    keep = ignored != -100
    loss, prec1 = ours(x, ignored)
    l_ref, p_ref = seed(x[keep], label[keep])
    assert abs(loss.item() - l_ref.item()) <= 1e-12 * l_ref.item()
    assert prec1.item() == p_ref.item()
    assert math.isnan(ours(x, torch.full_like(label, -100))[1].item())


def test_module_keeps_one_nxc_array(torch):
    """Between forward and backward the margin Function holds the gradient only."""
    import fastloss.torch as flt

    head = flt.AAMSoftmax(1000, 0.2, 30, embedding_dim=16)
    x = torch.randn(64, 16, requires_grad=True)
    loss, _ = head(x, torch.randint(0, 1000, (64,)))
    node = loss.grad_fn
    assert type(node).__name__.startswith("MarginCrossEntropy")
    assert node.saved_tensors == () and node.grad.shape == (64, 1000)
    loss.backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


# ---- the fused kernel against the seed formulation, every SIMD path -------------------------

def seed_loss_and_grad(torch, cos, label, m, s, kind, easy, **kw):
    F = torch.nn.functional
    c = torch.from_numpy(np.asarray(cos, np.float64)).requires_grad_()
    t = torch.from_numpy(label)
    if kind == "cos":
        phi = c - m
    else:
        sine = torch.sqrt((1.0 - c * c).clamp(0, 1))
        phi = c * math.cos(m) - sine * math.sin(m)
        th, mm = math.cos(math.pi - m), math.sin(math.pi - m) * m
        phi = torch.where(c > 0, phi, c) if easy else torch.where(c - th > 0, phi, c - mm)
    one_hot = torch.zeros_like(c, dtype=torch.bool).scatter_(1, t.clamp(min=0).view(-1, 1), (t >= 0).view(-1, 1))
    out = torch.where(one_hot, phi, c) * s
    loss = F.cross_entropy(out, t, **kw)
    go = torch.arange(1.0, 1 + loss.numel(), dtype=torch.float64).reshape(loss.shape)
    loss.backward(go)
    return loss.detach().numpy(), c.grad.numpy(), go.numpy()


CASES = [
    dict(kind="arc", easy=False, m=0.2, s=30.0, kw={}),
    dict(kind="arc", easy=False, m=0.5, s=64.0, kw=dict(reduction="sum")),
    dict(kind="arc", easy=True, m=0.3, s=16.0, kw=dict(label_smoothing=0.1)),
    dict(kind="cos", easy=False, m=0.35, s=30.0, kw=dict(reduction="none")),
    dict(kind="arc", easy=False, m=0.2, s=30.0, kw=dict(weight=True, label_smoothing=0.2, reduction="none")),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['kind']}-{c['easy']}-{c['m']}-{sorted(c['kw'])}")
@pytest.mark.parametrize("shape", [(1, 1), (3, 7), (17, 130), (64, 1000)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kernel_matches_the_seed(torch, simd, case, shape, dtype):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    n, c = shape
    cos = rng.uniform(-1, 1, shape).astype(dtype)
    label = rng.integers(0, c, n)
    cos[0, label[0]] = -0.999  # theta + m > pi
    if n > 2:
        label[2] = -100
    kw = dict(case["kw"])
    if kw.get("weight"):
        kw["weight"] = rng.uniform(0.5, 2.0, c)
    loss_ref, grad_ref, go = seed_loss_and_grad(torch, cos, label, case["m"], case["s"], case["kind"], case["easy"],
                                                **{k: (torch.from_numpy(v) if k == "weight" else v) for k, v in kw.items()})
    if "weight" in kw:
        kw["weight"] = kw["weight"].astype(dtype)
    go_arg = go if kw.get("reduction") == "none" else float(go)
    args = (cos, label, case["m"], case["s"], case["kind"], case["easy"])
    loss, grad = fastloss.margin_cross_entropy_with_grad(*args, grad_output=go_arg, **kw)
    loss_fwd = fastloss.margin_cross_entropy(*args, **kw)
    r_loss, r_grad = reference.margin_cross_entropy_with_grad(*args, grad_output=go_arg, **kw)
    rtol = 3e-6 if dtype == np.float32 else 1e-12
    scale = max(np.abs(loss_ref).max(), 1.0)  # the terms are of the logits' size (s |x|), at least 1
    with np.errstate(invalid="ignore"):
        for got in (loss, loss_fwd, r_loss):
            np.testing.assert_allclose(np.asarray(got, np.float64), loss_ref, rtol=0, atol=rtol * scale)
        gscale = np.abs(grad_ref).max()
        for got in (grad, r_grad):
            assert got.dtype == dtype and got.shape == cos.shape
            np.testing.assert_allclose(got.astype(np.float64), grad_ref, rtol=0, atol=(rtol * 10) * gscale + 1e-300)
    assert np.asarray(loss).dtype == dtype


def test_finite_at_plus_minus_one(torch):
    """Target cosines at and beyond +-1 give finite values, the formula's at the clamp."""
    eps = fastloss.MARGIN_COSINE_EPS
    assert eps == 1e-7
    cos = np.array([[1.0, 0.2, -0.5], [0.3, -1.0, 0.1], [1.0000001, 0.0, 0.5], [0.1, 0.2, np.inf]])
    label = np.array([0, 1, 0, 2])
    for dtype in (np.float32, np.float64):
        x = cos.astype(dtype)
        loss, grad = fastloss.margin_cross_entropy_with_grad(x, label, reduction="none")
        assert np.isfinite(loss).all() and np.isfinite(grad).all()
        clamped = np.clip(x.astype(np.float64), -1 + eps, 1 - eps)
        rows = np.arange(4)
        at = x.astype(np.float64)
        at[rows, label] = clamped[rows, label]
        r_loss, r_grad = reference.margin_cross_entropy_with_grad(at, label, reduction="none")
        tol = 1e-5 if dtype == np.float32 else 1e-9
        np.testing.assert_allclose(loss, r_loss, rtol=tol, atol=tol)
        np.testing.assert_allclose(grad, r_grad, rtol=tol, atol=tol * np.abs(r_grad).max())


def test_half_dtypes_within_rounding(torch):
    from conftest import BF16

    rng = np.random.default_rng(5)
    x = rng.uniform(-0.99, 0.99, (33, 200))
    label = rng.integers(0, 200, 33)
    for dt, ulp in ((np.float16, 2.0**-10), (BF16, 2.0**-7)):
        if dt is None:
            continue
        xh = x.astype(dt)
        loss, grad = fastloss.margin_cross_entropy_with_grad(xh, label, reduction="none")
        r_loss, r_grad = reference.margin_cross_entropy_with_grad(xh.astype(np.float64), label, reduction="none")
        assert loss.dtype == xh.dtype and grad.dtype == xh.dtype
        np.testing.assert_allclose(loss.astype(np.float64), r_loss, rtol=ulp, atol=0)
        np.testing.assert_allclose(grad.astype(np.float64), r_grad, rtol=ulp,
                                   atol=ulp * 1e-3 * np.abs(r_grad).max())


@pytest.mark.parametrize("bad,exc", [
    (dict(kind="sphere"), ValueError), (dict(scale=0.0), ValueError), (dict(scale=float("inf")), ValueError),
    (dict(margin=float("nan")), ValueError), (dict(kind="cos", easy_margin=True), ValueError),
    (dict(label_smoothing=1.5), ValueError), (dict(reduction="avg"), ValueError),
])
def test_bad_options(bad, exc):
    x = np.linspace(-0.9, 0.9, 12).reshape(3, 4)
    before = x.copy()
    for fn in (fastloss.margin_cross_entropy, reference.margin_cross_entropy):
        with pytest.raises(exc):
            fn(x, np.array([0, 1, 2]), **bad)
    assert np.array_equal(x, before)


def test_bad_inputs():
    x = np.linspace(-0.9, 0.9, 12).reshape(3, 4)
    for fn in (fastloss.margin_cross_entropy, reference.margin_cross_entropy):
        with pytest.raises(IndexError, match="Target 4 is out of bounds."):
            fn(x, np.array([0, 1, 4]))
        with pytest.raises(ValueError):
            fn(x, np.full((3, 4), 0.25))  # probability targets
        with pytest.raises(TypeError):
            fn(np.arange(12).reshape(3, 4), np.array([0, 1, 2]))
        with pytest.raises(ValueError):
            fn(x, np.array([0, 1]))
    g = np.zeros((3, 4), np.float32)
    with pytest.raises(TypeError):
        fastloss.margin_cross_entropy_with_grad(x, np.array([0, 1, 2]), out=g)
    assert not g.any()


def test_torch_function_upstream_and_reduction_none(torch):
    import fastloss.torch as flt

    rng = np.random.default_rng(9)
    cos = torch.from_numpy(rng.uniform(-1, 1, (9, 40)))
    label = torch.from_numpy(rng.integers(0, 40, 9))
    for reduction, go in (("mean", torch.tensor(3.0, dtype=torch.float64)),
                          ("none", torch.from_numpy(rng.uniform(-1, 2, 9)))):
        a, b = cos.clone().requires_grad_(), cos.clone().requires_grad_()
        flt.margin_cross_entropy(a, label, reduction=reduction).backward(go)
        flt.functional.margin_cross_entropy_torch(b, label, 0.2, 30.0, "arc", False, None, -100, reduction,
                                                  0.0).backward(go)
        assert (a.grad - b.grad).abs().max().item() <= 1e-12 * b.grad.abs().max().item()
    with pytest.raises(RuntimeError, match="double backward"):
        a = cos.clone().requires_grad_()
        torch.autograd.grad(flt.margin_cross_entropy(a, label), a, create_graph=True)
    b = cos[:3, :5].clone().requires_grad_()
    assert torch.autograd.gradgradcheck(lambda c: flt.functional.margin_cross_entropy_torch(
        c, label[:3] % 5, 0.2, 4.0, "arc", False, None, -100, "mean", 0.0), (b,))
