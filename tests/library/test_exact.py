"""The TrAct gradient is exact: every layer type and option against float64 oracles."""
from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.testing import assert_close

import trainact
from oracle import plain_grad, ridge_oracle, substitution_grad

F64 = dict(rtol=1e-9, atol=1e-11)


def grads(layer: nn.Module, x: torch.Tensor, grad_out: torch.Tensor):
    """(weight grad, bias grad, input grad) of one backward with the given output gradient."""
    x = x.detach().clone().requires_grad_(True)
    for p in layer.parameters():
        p.grad = None
    out = layer(x)
    out.backward(grad_out)
    return layer.weight.grad, None if layer.bias is None else layer.bias.grad, x.grad


def check_against_oracle(layer: nn.Module, x: torch.Tensor, lam: float = 0.1, **options):
    """Float64 layer: TrAct weight grad == ridge oracle; bias and input grads == plain layer's."""
    layer = layer.double()
    x = x.double()
    with torch.no_grad():
        grad_out = torch.randn_like(layer(x))
    w_plain, b_plain, x_plain = grads(layer, x, grad_out)
    tract = trainact.TrAct(layer, lam, solve_dtype=torch.float64, **options)
    w_tract, b_tract, x_tract = grads(tract, x, grad_out)
    assert_close(w_tract, ridge_oracle(layer, x, grad_out, lam), **F64)
    assert_close(w_plain, plain_grad(layer, x, grad_out), **F64)  # the oracle's patches are the layer's
    if b_plain is not None:
        assert torch.equal(b_tract, b_plain)
    assert torch.equal(x_tract, x_plain)
    assert torch.equal(tract(x), layer(x))
    return w_tract


# ---------------------------------------------------------------------------------------------------------- Linear


@pytest.mark.parametrize(
    "shape",
    [(64, 12), (5, 12), (12,), (4, 9, 12), (2, 3, 5, 12), (1, 12)],
    ids=["2d", "r<n(woodbury)", "1d", "3d-tokens", "4d", "single-row"],
)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_ridge_oracle(shape, bias):
    torch.manual_seed(0)
    check_against_oracle(nn.Linear(12, 7, bias=bias), torch.randn(shape))


def test_linear_non_contiguous_input():
    torch.manual_seed(1)
    x = torch.randn(12, 6, 10).transpose(0, 2)  # (10, 6, 12) non-contiguous
    assert not x.is_contiguous()
    check_against_oracle(nn.Linear(12, 4), x)
    check_against_oracle(nn.Linear(6, 4), torch.randn(6, 40)[:, ::2].T)  # strided rows


@pytest.mark.parametrize("rows", [3, 40])
def test_linear_matches_input_substitution_form(rows):
    torch.manual_seed(2)
    layer = nn.Linear(10, 6).double()
    x = torch.randn(rows, 10, dtype=torch.float64)
    grad_out = torch.randn(rows, 6, dtype=torch.float64)
    w, _, _ = grads(trainact.TrAct(layer, 0.3, solve_dtype=torch.float64), x, grad_out)
    assert_close(w, substitution_grad(layer, x, grad_out, 0.3), **F64)


@pytest.mark.parametrize("relative", [False, True])
def test_woodbury_equals_direct_form_for_conv_groups(relative):
    torch.manual_seed(11)
    conv = nn.Conv2d(4, 6, 3, stride=2, groups=2).double()
    x = torch.randn(1, 4, 5, 5, dtype=torch.float64) * 3  # r = 4 < n = 18
    grad_out = torch.randn(1, 6, 2, 2, dtype=torch.float64)
    opts = dict(solve_dtype=torch.float64, relative=relative)
    w_wood, _, _ = grads(trainact.TrAct(conv, **opts), x, grad_out)
    w_direct, _, _ = grads(trainact.TrAct(conv, woodbury=False, **opts), x, grad_out)
    assert_close(w_wood, w_direct, **F64)


def test_woodbury_equals_direct_form():
    torch.manual_seed(3)
    layer = nn.Linear(50, 8).double()
    x = torch.randn(7, 50, dtype=torch.float64)  # r = 7 < n = 50
    grad_out = torch.randn(7, 8, dtype=torch.float64)
    w_wood, _, _ = grads(trainact.TrAct(layer, solve_dtype=torch.float64), x, grad_out)
    w_direct, _, _ = grads(trainact.TrAct(layer, solve_dtype=torch.float64, woodbury=False), x, grad_out)
    assert_close(w_wood, w_direct, **F64)
    assert_close(w_wood, ridge_oracle(layer, x, grad_out, 0.1), **F64)


# ------------------------------------------------------------------------------------------------------------ Conv

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize(
    "opts",
    [
        dict(kernel_size=3),
        dict(kernel_size=3, stride=2, padding=1),
        dict(kernel_size=2, padding="same"),
        dict(kernel_size=3, padding="same", dilation=2),
        dict(kernel_size=3, padding="valid", stride=1),
        dict(kernel_size=3, dilation=2, stride=2, padding=2),
        dict(kernel_size=3, padding=1, groups=2),
        dict(kernel_size=3, padding=2, padding_mode="reflect"),
        dict(kernel_size=3, padding=1, padding_mode="replicate", stride=2),
        dict(kernel_size=3, padding=1, padding_mode="circular"),
        dict(kernel_size=4, padding="same", padding_mode="circular"),
        dict(kernel_size=2, stride=2, bias=False),  # patch embedding
    ],
    ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()),
)
def test_conv_matches_ridge_oracle(dims, opts):
    torch.manual_seed(dims)
    size = {1: (3, 4, 13), 2: (3, 4, 9, 8), 3: (2, 4, 6, 5, 7)}[dims]
    check_against_oracle(CONV[dims](4, 6, **opts), torch.randn(size))


def test_conv_tuple_options_and_depthwise():
    torch.manual_seed(4)
    check_against_oracle(nn.Conv2d(4, 8, (3, 2), stride=(2, 1), padding=(1, 0), dilation=(1, 2)), torch.randn(3, 4, 9, 10))
    check_against_oracle(nn.Conv2d(4, 8, 3, padding=1, groups=4), torch.randn(3, 4, 7, 7))  # depthwise


def test_conv_unbatched_and_channels_last():
    torch.manual_seed(5)
    check_against_oracle(nn.Conv2d(3, 5, 3, padding=1), torch.randn(3, 8, 8))  # (C, H, W)
    x = torch.randn(4, 3, 8, 8).to(memory_format=torch.channels_last)
    layer = nn.Conv2d(3, 5, 3, padding=1).to(memory_format=torch.channels_last)
    check_against_oracle(layer, x)


def test_conv_woodbury_branch():
    torch.manual_seed(6)
    # r = 2 * 2 * 2 = 8 rows < n = 4 * 9 = 36
    check_against_oracle(nn.Conv2d(4, 6, 3, stride=2), torch.randn(2, 4, 5, 5))


@settings(max_examples=40, deadline=None)
@given(
    dims=st.integers(1, 3),
    cin_per_group=st.integers(1, 3),
    groups=st.integers(1, 3),
    cout_per_group=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 3),
    dilation=st.integers(1, 2),
    pad=st.sampled_from([0, 1, 2, "same", "valid"]),
    mode=st.sampled_from(["zeros", "reflect", "replicate", "circular"]),
    bias=st.booleans(),
    batch=st.integers(1, 3),
    extra=st.integers(0, 4),
    lam=st.sampled_from([0.01, 0.1, 1.0, 10.0]),
    seed=st.integers(0, 2**16),
)
def test_conv_property(dims, cin_per_group, groups, cout_per_group, kernel, stride, dilation, pad, mode, bias, batch, extra, lam, seed):
    if pad == "same" and stride != 1:
        stride = 1  # PyTorch forbids 'same' with stride > 1
    torch.manual_seed(seed)
    span = dilation * (kernel - 1) + 1
    size = span + extra
    if mode != "zeros":
        size = max(size, 2 * (pad if isinstance(pad, int) else span) + 1)  # reflect needs pad < size
    layer = CONV[dims](
        cin_per_group * groups, cout_per_group * groups, kernel, stride=stride, padding=pad, dilation=dilation,
        groups=groups, bias=bias, padding_mode=mode,
    )
    x = torch.randn(batch, cin_per_group * groups, *([size] * dims))
    check_against_oracle(layer, x, lam)


# ------------------------------------------------------------------------------- default options on a float64 layer


DEFAULT_CASES = [
    (nn.Conv1d(4, 6, 3, dilation=2, padding="same", padding_mode="reflect"), (3, 4, 13)),
    (nn.Conv1d(4, 6, 2, stride=2, groups=2, bias=False), (2, 4, 12)),
    (nn.Conv2d(4, 6, 3, stride=2, padding=1, groups=2, padding_mode="circular"), (3, 4, 9, 8)),
    (nn.Conv2d(3, 8, 7, stride=2, padding=3), (3, 3, 20, 18)),  # a stem: the band Gram algorithm
    (nn.Conv2d(4, 6, (3, 2), padding="same", dilation=(1, 2), padding_mode="replicate"), (2, 4, 7, 9)),
    (nn.Conv2d(4, 6, 3, stride=2), (1, 4, 5, 5)),  # r = 4 < n = 36: Woodbury
    (nn.Conv3d(4, 6, 3, padding=2, dilation=2, groups=2), (2, 4, 6, 5, 7)),
    (nn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1, padding_mode="reflect"), (2, 2, 6, 9, 7)),
    (nn.Linear(12, 7), (64, 12)),
    (nn.Linear(12, 7, bias=False), (4, 9, 12)),  # (B, T, n) tokens
    (nn.Linear(12, 7), (2, 3, 5, 12)),
    (nn.Linear(50, 8), (7, 50)),  # r < n: Woodbury
]


@pytest.mark.parametrize("case", range(len(DEFAULT_CASES)), ids=lambda i: f"{type(DEFAULT_CASES[i][0]).__name__}-{i}")
def test_float64_layer_with_default_options_matches_the_float64_oracle(case):
    """solve_dtype='auto' solves a float64 layer in float64: the ridge oracle to 1e-10, no option needed."""
    layer, shape = DEFAULT_CASES[case]
    torch.manual_seed(20 + case)
    layer = copy.deepcopy(layer).double()
    x = torch.randn(shape, dtype=torch.float64)
    with torch.no_grad():
        grad_out = torch.randn_like(layer(x))
    w, _, _ = grads(trainact.TrAct(layer, 0.1), x, grad_out)
    ref = ridge_oracle(layer, x, grad_out, 0.1)
    assert w.dtype == torch.float64
    assert_close(w, ref, rtol=1e-10, atol=1e-13 * ref.abs().max().item())


# -------------------------------------------------------------------------------------------------- reference code


def test_matches_reference_package():
    torch_tract = pytest.importorskip("torch_tract")
    torch.manual_seed(7)
    cases = [
        (nn.Linear(9, 4), torch.randn(32, 9)),
        (nn.Linear(40, 4), torch.randn(6, 40)),  # the reference's Woodbury branch
        (nn.Conv2d(3, 8, 3, stride=1, padding=1), torch.randn(4, 3, 8, 8)),
        (nn.Conv2d(3, 8, 4, stride=4, padding=0), torch.randn(4, 3, 16, 16)),
        (nn.Conv2d(3, 8, 5, stride=2, padding=2), torch.randn(1, 3, 6, 6)),  # r < n
    ]
    for layer, x in cases:
        layer = layer.double()
        x = x.double()
        grad_out = torch.randn_like(layer(x))
        ref = torch_tract.TrAct(copy.deepcopy(layer), 0.1)
        w_ref, b_ref, _ = grads(ref, x, grad_out)
        w, b, _ = grads(trainact.TrAct(layer, 0.1, solve_dtype=torch.float64), x, grad_out)
        assert_close(w, w_ref, rtol=1e-8, atol=1e-10)
        assert_close(b, b_ref.reshape(b.shape), rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------------ the lemma


def test_lemma_zero_iff_zero():
    torch.manual_seed(8)
    layer = nn.Linear(6, 3).double()
    x = torch.randn(20, 6, dtype=torch.float64)
    # output gradients orthogonal to every column of A: the plain gradient Gᵀ A is exactly zero
    q, _ = torch.linalg.qr(x, mode="complete")  # (20, 20)
    null = q[:, 6:]  # basis of the complement of range(A)
    grad_out = null @ torch.randn(14, 3, dtype=torch.float64)
    assert grad_out.abs().max() > 0.1
    tract = trainact.TrAct(layer, solve_dtype=torch.float64)
    w_plain, _, _ = grads(layer, x, grad_out)
    w_tract, _, _ = grads(tract, x, grad_out)
    assert w_plain.abs().max() < 1e-12 and w_tract.abs().max() < 1e-12
    # and a non-zero plain gradient never becomes zero (the matrix is positive definite)
    for seed in range(5):
        torch.manual_seed(seed)
        grad_out = torch.randn(20, 3, dtype=torch.float64)
        w_plain, _, _ = grads(layer, x, grad_out)
        w_tract, _, _ = grads(tract, x, grad_out)
        # ‖tract‖ ≥ ‖plain‖ / λ_max(AᵀA/r + λI)
        lam_max = torch.linalg.eigvalsh(x.T @ x / 20 + 0.1 * torch.eye(6, dtype=torch.float64)).max()
        assert w_tract.norm() >= w_plain.norm() / lam_max * (1 - 1e-9)


# ------------------------------------------------------------------------------------------ Gram matrix algorithms


@pytest.mark.parametrize(
    "layer,shape,block_bytes",
    [
        (nn.Conv2d(3, 8, 7, stride=2, padding=3), (3, 3, 30, 26), None),  # band algorithm (stem)
        (nn.Conv2d(4, 8, (5, 3), stride=(2, 1), padding=(2, 1), groups=2, padding_mode="reflect"), (2, 4, 13, 11), None),
        (nn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1, dilation=(1, 2, 1)), (2, 2, 6, 9, 7), None),  # band, 3-d
        (nn.Conv2d(3, 8, 7, stride=2, padding=3), (3, 3, 30, 26), 4096),  # band refused (block too small): dense
        (nn.Conv2d(8, 4, 7, stride=7), (3, 8, 28, 21), None),  # n = 392: upper-triangle GEMM blocks
        (nn.Linear(400, 5), (3, 500, 400), None),  # n = 400, view, triangle
        (nn.Conv2d(8, 4, 7, stride=2, padding=3), (2, 8, 20, 20), 30000),  # n = 392, dense blocks + triangle
    ],
    ids=["band-stem", "band-groups-reflect", "band-3d", "band-fallback", "patchify-triangle", "linear-triangle", "blocks-triangle"],
)
def test_gram_algorithms_match_explicit_patches(layer, shape, block_bytes, request):
    from trainact import patches
    from oracle import layer_patches

    torch.manual_seed(9)
    x = torch.randn(shape, dtype=torch.float64)
    geo = patches.adapter_of(layer)
    case = request.node.callspec.id  # each case takes the path it is named after
    budget = block_bytes or patches.DEFAULT_BLOCK_BYTES
    uses_band = patches.band_applies(geo, x.device) and geo.gram_band(x, torch.float64, budget) is not None
    assert uses_band == (case.startswith("band") and case != "band-fallback")
    assert (len(patches._edges(geo.n)) > 2) == case.endswith("triangle")
    kwargs = {} if block_bytes is None else {"block_bytes": block_bytes}
    total, rows = patches.gram(x, geo, dtype=torch.float64, **kwargs)
    a = layer_patches(layer.double(), x)  # (g, r, n) from the layer's own convolution
    assert rows == a.shape[1] == geo.count_rows(x)
    assert_close(total, a.transpose(1, 2) @ a, rtol=1e-12, atol=1e-9)


def test_the_band_algorithm_and_small_blocks_are_for_the_cpu_only():
    from trainact import patches

    stem = patches.adapter_of(nn.Conv2d(3, 8, 7, stride=2, padding=3))
    assert patches.band_applies(stem, torch.device("cpu"))
    assert not patches.band_applies(stem, torch.device("cuda"))  # kernel launches: one dense GEMM per block
    assert patches.default_block_bytes(torch.device("cpu")) == patches.DEFAULT_BLOCK_BYTES == 16 * 2**20
    assert patches.default_block_bytes(torch.device("cuda", 1)) == 64 * 2**20
    x = torch.randn(2, 3, 20, 18, dtype=torch.float64)  # gram without block_bytes = with the CPU default
    assert torch.equal(patches.gram(x, stem, dtype=torch.float64)[0],
                       patches.gram(x, stem, dtype=torch.float64, block_bytes=patches.DEFAULT_BLOCK_BYTES)[0])


# ------------------------------------------------------------------------ the accelerator code path, on the CPU


@pytest.fixture
def accelerator_path(monkeypatch):
    """The GPU's code path on the CPU: one dense GEMM per block with the ridge formed in it, no band algorithm,
    no triangle blocks, and no status read in backward."""
    from trainact import patches

    monkeypatch.setattr(patches, "accelerator_path", lambda device: True)


@pytest.mark.parametrize("case", ["stem", "stem-4-blocks", "patchify", "groups-reflect", "linear", "relative",
                                  "woodbury", "3d"])
def test_accelerator_path_matches_the_oracle(case, accelerator_path):
    torch.manual_seed(21)
    layer, x, opts = {
        "stem": (nn.Conv2d(3, 8, 7, stride=2, padding=3), torch.randn(3, 3, 22, 20), {}),
        # 3 samples of 11 x 10 rows of 147 float64: a block of 30 000 bytes holds 2 images' rows: several blocks
        "stem-4-blocks": (nn.Conv2d(3, 8, 7, stride=2, padding=3), torch.randn(5, 3, 22, 20), {"block_bytes": 30000}),
        "patchify": (nn.Conv2d(8, 4, 7, stride=7), torch.randn(3, 8, 28, 21), {}),
        "groups-reflect": (nn.Conv2d(4, 8, (5, 3), stride=(2, 1), padding=(2, 1), groups=2, padding_mode="reflect"),
                           torch.randn(2, 4, 13, 11), {}),
        "linear": (nn.Linear(12, 5), torch.randn(4, 9, 12), {}),
        "relative": (nn.Conv2d(3, 6, 3, padding=1), torch.rand(2, 3, 8, 8) * 255, {"relative": True}),
        "woodbury": (nn.Conv2d(3, 6, 4, stride=4), torch.randn(1, 3, 8, 8), {}),  # 4 rows < 48 features
        "3d": (nn.Conv3d(2, 4, 3, stride=(1, 2, 2), padding=1), torch.randn(2, 2, 5, 7, 6), {}),
    }[case]
    if opts.get("relative"):
        layer = layer.double()
        x = x.double()
        with torch.no_grad():
            grad_out = torch.randn_like(layer(x))
        tract = trainact.TrAct(layer, 0.1, solve_dtype=torch.float64, relative=True)
        w, _, _ = grads(tract, x, grad_out)
        lam_eff = 0.1 * (ridge_patches_second_moment(layer, x))
        assert_close(w, ridge_oracle(layer, x, grad_out, lam_eff), **F64)
        return
    check_against_oracle(layer, x, **opts)


def ridge_patches_second_moment(layer, x) -> float:
    """tr(AᵀA/r)/n: the mean per-feature second moment of the layer's patches (relative λ's scale)."""
    from oracle import layer_patches

    a = layer_patches(copy.deepcopy(layer), x)[0]  # (r, n)
    return float(a.square().sum() / a.shape[0] / a.shape[1])


def test_accelerator_path_deferred_and_float32(accelerator_path):
    """Deferred statistics (bmm per block, no ridge) and float32 statistics on the accelerator path."""
    torch.manual_seed(22)
    conv = nn.Conv2d(3, 6, 3, stride=2, padding=1).double()
    xs = [torch.randn(3, 3, 9, 9, dtype=torch.float64) for _ in range(2)]
    outs = [torch.randn_like(conv(x)) for x in xs]
    tract = trainact.TrAct(copy.deepcopy(conv), 0.1, solve_dtype=torch.float64, defer=True)
    for x, g in zip(xs, outs):
        tract(x).backward(g)
    trainact.precondition_grads([tract])
    assert_close(tract.weight.grad, ridge_oracle(conv, torch.cat(xs), torch.cat(outs), 0.1), **F64)
    f32 = trainact.TrAct(copy.deepcopy(conv).float(), 0.1)
    f32(xs[0].float()).backward(outs[0].float())
    ref = ridge_oracle(conv, xs[0], outs[0], 0.1)
    assert_close(f32.weight.grad.double(), ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_accelerator_path_nonfinite_input_poisons_without_raising(accelerator_path):
    """No status read in backward on this path: the gradient is NaN, and the check names the layer."""
    tract = trainact.TrAct(nn.Conv2d(3, 4, 3), 0.1, name="stem")
    x = torch.randn(2, 3, 6, 6)
    x[0, 0, 0, 0] = float("inf")
    tract(x).sum().backward()  # no error here
    assert tract.weight.grad.isnan().all()
    with pytest.raises(trainact.TrActNumericalError, match="TrAct layer 'stem'"):
        trainact.check_numerics([tract])
    trainact.check_numerics([tract])  # reported once
