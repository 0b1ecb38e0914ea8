"""Margin-softmax cross-entropy benchmarks (AAM-softmax / ArcFace), float32, mean, 2 threads as
configured by bench/conftest.py, at VoxCeleb2's speaker count (256 x 5994) and at a large head
(1024 x 100000).

Run:  pytest bench/bench_margin_cross_entropy.py --benchmark-only --benchmark-group-by=group \
          --benchmark-columns=min,median,rounds

Groups, each comparing the sides at one shape:
  "<shape> from cosine, fwd+bwd"   fastloss.margin_cross_entropy_with_grad(cos, t, out=g); the plain
                                   fastloss.cross_entropy_with_grad(cos, t, out=g) on the same array
                                   (target: the margin costs <= 1.15x it); the seed's formulation in
                                   torch ops from the same cosine matrix (sqrt, where, one-hot,
                                   cross_entropy, backward; target: fastloss >= 10x faster);
  "<shape> module, fwd+bwd"        fastloss.torch.AAMSoftmax(x, label) and the seed's AAMsoftmax
                                   module (normalize + linear + margin + cross-entropy + prec1),
                                   forward and backward to x and the class weights, embedding dim
                                   256 (targets: >= 1.4x the seed at 256 x 5994, >= 4x at 1024 x 100000).
The sides are fastloss/_report.py's (one definition for ``python -m fastloss`` and this suite).
torch is required for the seed sides (skipped without it, never in CI).
"""
import pytest

from fastloss import _report

SIDES = {"from cosine": ["margin_cross_entropy_with_grad", "cross_entropy_with_grad", "seed"],
         "module": ["fastloss.torch.AAMSoftmax", "seed AAMsoftmax"]}


@pytest.fixture(scope="module", params=_report.MARGIN_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def case(request, peers):
    n, c = request.param
    return f"{n}x{c}", n * c, _report.margin_fns(peers.torch, *_report.margin_inputs(n, c))


@pytest.mark.parametrize("side", SIDES["from cosine"])
def test_from_cosine(benchmark, case, side):
    shape, size, fns = case
    if side not in fns["from cosine"]:
        pytest.skip(f"{side}: torch is not installed")
    benchmark.group = f"{shape} from cosine, fwd+bwd"
    if side == "seed":
        benchmark.pedantic(fns["from cosine"][side], rounds=3 if size > 1 << 24 else 10, warmup_rounds=1)
    else:
        benchmark(fns["from cosine"][side])


@pytest.mark.parametrize("side", SIDES["module"])
def test_module(benchmark, case, side):
    shape, size, fns = case
    if side not in fns["module"]:
        pytest.skip(f"{side}: torch is not installed")
    benchmark.group = f"{shape} module, fwd+bwd"
    benchmark.pedantic(fns["module"][side], rounds=3 if size > 1 << 24 else 10, warmup_rounds=1)
