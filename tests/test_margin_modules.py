"""fastloss.torch.AAMSoftmax / AMSoftmax against the seed's AAMsoftmax module (copied below as
the oracle, in torch ops), on every SIMD path, and against finite differences. The fused
kernel itself (NumPy layer, reference, fastloss.torch.margin_cross_entropy, edge values, bad
input) is tested in test_margin_cross_entropy.py.

The seed (../shared/seeds/001): cosine = linear(normalize(x), normalize(W)); sine =
sqrt((1 - cos^2).clamp(0, 1)); phi = cos cos m - sine sin m; phi = where(cos - th > 0, phi,
cos - mm); one-hot on the target; times s; nn.CrossEntropyLoss; prec1 = accuracy(output,
label, topk=(1,))[0]. Tolerances: float32 losses to 2e-6 relative; gradients to 2e-5 of the
largest entry of their tensor (the normalize / linear backward runs in torch either way, so
only the margin cross-entropy's rounding differs); float64 to 1e-12.
"""
import math

import pytest


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


@pytest.mark.parametrize("kind,easy", [("arc", False), ("arc", True), ("cos", False)])
def test_module_gradients_match_finite_differences(torch, simd, kind, easy):
    """float64: the module's gradients with respect to x and the class weights (normalize,
    linear, the fused kernel's backward) against central finite differences (gradcheck).
    Embeddings away from the branch points of phi, so that the loss is smooth there."""
    import fastloss.torch as flt
    torch.manual_seed(5)
    head = (flt.AMSoftmax(11, 0.3, 4.0, embedding_dim=6) if kind == "cos"
            else flt.AAMSoftmax(11, 0.3, 4.0, embedding_dim=6, easy_margin=easy)).double()
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(9, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    label = torch.randint(0, 11, (9,), generator=gen)
    w = head.weight.detach().clone().requires_grad_()

    def f(x, w):
        # the module's own forward, its weight swapped for the differentiated leaf
        return torch.func.functional_call(head, {"weight": w}, (x, label))[0]

    assert torch.autograd.gradcheck(f, (x, w), eps=1e-6, atol=1e-8, rtol=1e-6)


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
    """Between forward and backward the margin Function holds one array of the cosine's size:
    the gradient (float32, float64) or the cosine (float16, bfloat16, whose backward runs the
    kernel with the upstream gradient so that each entry is rounded once)."""
    import fastloss.torch as flt

    for dtype in (torch.float32, torch.float64, torch.bfloat16, torch.float16):
        head = flt.AAMSoftmax(1000, 0.2, 30, embedding_dim=16).to(dtype)
        x = torch.randn(64, 16, requires_grad=True, dtype=dtype)
        label = torch.randint(0, 1000, (64,))
        loss, _ = head(x, label)
        node = loss.grad_fn
        assert type(node).__name__.startswith("MarginCrossEntropy")
        big = [t for t in node.saved_tensors if t is not None and t.numel() >= 64 * 1000]
        if dtype in (torch.float32, torch.float64):
            assert big == [] and node.grad.shape == (64, 1000) and node.grad.dtype == dtype
        else:
            assert node.grad is None and len(big) == 1 and big[0].shape == (64, 1000) and big[0].dtype == dtype
        (loss * 2).backward()
        assert x.grad.dtype == dtype and torch.isfinite(x.grad).all()


def test_only_the_module_overwrites_its_own_cosine(torch):
    """The module lets the kernel write the gradient over the cosine it made (its linear
    output, referred to by nothing else); fastloss.torch.margin_cross_entropy never writes
    over a cosine its caller passed. Both give the same gradients."""
    import fastloss.torch as flt

    F = torch.nn.functional
    g = torch.Generator().manual_seed(5)
    head = flt.AAMSoftmax(300, 0.2, 30, embedding_dim=16)
    x = torch.randn(40, 16, generator=g, requires_grad=True)
    label = torch.randint(0, 300, (40,), generator=g)
    cosine = F.linear(F.normalize(x), F.normalize(head.weight))
    kept = cosine.detach().clone()
    loss = flt.margin_cross_entropy(cosine, label, 0.2, 30.0)
    assert torch.equal(cosine.detach(), kept)
    loss.backward()
    assert torch.equal(cosine.detach(), kept)
    expected = (x.grad.clone(), head.weight.grad.clone())
    x.grad = head.weight.grad = None
    loss2, _ = head(x, label)
    assert loss2.item() == loss.item()
    loss2.backward()
    assert torch.equal(x.grad, expected[0]) and torch.equal(head.weight.grad, expected[1])
