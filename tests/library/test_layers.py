"""TrAct / apply / remove as a user meets them: identity of parameters, numerics, AMP, compile, errors."""
from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import trainact
from trainact import patches
from oracle import ridge_oracle


def tiny_cnn() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))


def tract_grad_of(model: nn.Module, x: torch.Tensor, y: torch.Tensor, name: str = "0") -> torch.Tensor:
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(x), y).backward()
    return model.get_submodule(name).weight.grad.clone()


# ------------------------------------------------------------------------------------------- identity of the layer


def test_wrapped_layer_keeps_class_parameters_state_and_forward():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    tract = trainact.TrAct(conv, 0.5)
    assert isinstance(tract, nn.Conv2d) and trainact.is_tract(tract) and not trainact.is_tract(conv)
    assert tract.weight is conv.weight and tract.bias is conv.bias
    assert list(tract.state_dict()) == list(conv.state_dict())
    assert "lam=0.5" in repr(tract)
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(tract(x), conv(x))
    assert type(conv) is nn.Conv2d  # the module passed in is not modified


def test_paper_usage_and_optimizer_built_before_wrapping():
    torch.manual_seed(1)
    model = tiny_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    before = model[0].weight.detach().clone()
    model[0] = trainact.TrAct(model[0])
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    grad = tract_grad_of(model, x, y)
    opt.step()
    assert_close(model[0].weight.detach(), before - 0.1 * grad)


def test_apply_and_remove_round_trip():
    torch.manual_seed(2)
    model = tiny_cnn()
    params = list(model.parameters())
    state = copy.deepcopy(model.state_dict())
    assert trainact.apply(model) == "0"
    assert trainact.is_tract(model[0]) and list(model.parameters()) == params
    assert trainact.remove(model) == ["0"]
    assert type(model[0]) is nn.Conv2d and list(model.parameters())[0] is params[0]
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


def test_state_dict_moves_between_plain_and_tract_models():
    torch.manual_seed(3)
    plain, tract_model = tiny_cnn(), tiny_cnn()
    trainact.apply(tract_model)
    tract_model.load_state_dict(plain.state_dict())
    plain2 = tiny_cnn()
    plain2.load_state_dict(tract_model.state_dict())
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(plain(x), tract_model(x)) and torch.equal(plain(x), plain2(x))


def test_deepcopy_and_pickle_keep_tract_behaviour():
    torch.manual_seed(4)
    model = tiny_cnn()
    trainact.apply(model, 0.3)
    x, y = torch.randn(8, 3, 6, 6), torch.randint(0, 4, (8,))
    ref = tract_grad_of(model, x, y)
    for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
        assert trainact.is_tract(clone[0]) and clone[0].tract.lam == 0.3
        assert clone[0].weight is not model[0].weight
        assert torch.equal(tract_grad_of(clone, x, y), ref)
    buf = io.BytesIO()
    torch.save(model, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert torch.equal(tract_grad_of(loaded, x, y), ref)


def test_no_grad_and_eval_forward_take_the_plain_path(monkeypatch):
    from trainact import backward

    model = tiny_cnn()
    trainact.apply(model)
    for node in (backward.Precondition, backward.Capture):
        monkeypatch.setattr(node, "apply", lambda *a: (_ for _ in ()).throw(AssertionError("called")))
    x = torch.randn(2, 3, 6, 6)
    with torch.no_grad():
        model(x)
    model[0].weight.requires_grad_(False)  # a frozen first layer costs nothing either
    model(x)


# ------------------------------------------------------------------------------------------------------- numerics


def test_float32_default_matches_float64_oracle():
    torch.manual_seed(5)
    conv = nn.Conv2d(3, 16, 3, padding=1)
    x = torch.randn(8, 3, 12, 12) * 2 + 0.5
    grad_out = torch.randn(8, 16, 12, 12)
    w = trainact.TrAct(conv)
    w(x).backward(grad_out)
    assert w.weight.grad.dtype == torch.float32
    ref = ridge_oracle(conv.double(), x.double(), grad_out.double(), 0.1)
    assert_close(w.weight.grad.double(), ref, rtol=1e-4, atol=1e-5 * ref.abs().max().item())


def test_solve_in_float64_and_small_blocks_give_the_same_result():
    torch.manual_seed(6)
    conv = nn.Conv2d(3, 8, 5, stride=2, padding=2)
    x = torch.randn(6, 3, 20, 20)
    grad_out = torch.randn(6, 8, 10, 10)
    results = []
    for opts in [dict(), dict(solve_dtype=torch.float64), dict(block_bytes=3 * 25 * 4 * 7)]:
        t = trainact.TrAct(conv, **opts)
        conv.weight.grad = None
        t(x).backward(grad_out)
        results.append(conv.weight.grad.clone())
    tol = dict(rtol=1e-4, atol=1e-5 * results[1].abs().max().item())
    assert_close(results[0], results[1], **tol)
    assert_close(results[0], results[2], **tol)


@pytest.mark.parametrize(
    "layer_dtype,solve_dtype,expected",
    [
        (torch.float32, "auto", torch.float32),
        (torch.bfloat16, "auto", torch.float32),
        (torch.float64, "auto", torch.float64),
        (torch.float64, torch.float32, torch.float32),  # an explicit choice is honoured
        (torch.float32, torch.float64, torch.float64),
    ],
)
@pytest.mark.parametrize("woodbury_rows", [False, True])
def test_auto_solve_dtype_follows_the_layer(layer_dtype, solve_dtype, expected, woodbury_rows, monkeypatch):
    """'auto' solves in float64 only for a float64 layer; the gradient keeps the layer's dtype either way."""
    seen = []
    for fn in ("gram", "patch_matrix"):
        real = getattr(patches, fn)
        monkeypatch.setattr(patches, fn, lambda *a, _real=real, **k: seen.append(k["dtype"]) or _real(*a, **k))
    conv = nn.Conv2d(3, 4, 3, stride=2).to(layer_dtype)
    x = torch.randn(1 if woodbury_rows else 4, 3, 5 if woodbury_rows else 9, 5 if woodbury_rows else 9, dtype=layer_dtype)
    tract = trainact.TrAct(conv, solve_dtype=solve_dtype)
    try:
        tract(x).sum().backward()
    except RuntimeError as err:  # some CPU builds lack bf16 convolutions
        pytest.skip(f"{layer_dtype} conv unavailable on this CPU build: {err}")
    assert seen == [expected] and conv.weight.grad.dtype == layer_dtype
    assert ("solve_dtype" in repr(tract)) == (solve_dtype != "auto")
    assert tract.tract.solve_dtype == solve_dtype


def test_auto_resolution_rule():
    from trainact.tract import resolve_solve_dtype

    assert resolve_solve_dtype("auto", torch.float32, torch.bfloat16) == torch.float32
    assert resolve_solve_dtype("auto", torch.float32, torch.float64) == torch.float64  # any float64 input wins
    assert resolve_solve_dtype(torch.float32, torch.float64) == torch.float32
    grad64, gram32 = torch.randn(1, 2, 3, dtype=torch.float64), torch.eye(3)[None] * 4
    out = trainact.precondition(grad64, gram32, 2, 0.5)  # float64 grad: solved (and returned) in float64
    assert out.dtype == torch.float64
    assert_close(out, grad64 / 2.5, rtol=1e-15, atol=0)


@pytest.mark.parametrize(
    "layer,shape",
    [
        (nn.Conv2d(3, 8, 7, stride=2, padding=3), (5, 3, 30, 30)),
        (nn.Conv3d(2, 4, 3, padding=1, padding_mode="reflect"), (2, 2, 9, 9, 9)),
        (nn.Linear(12, 5), (6, 50, 12)),
    ],
    ids=["stem", "conv3d", "linear"],
)
def test_memory_blocks_are_bounded(layer, shape, monkeypatch):
    """No block of materialised patches exceeds block_bytes; the Gram matrix equals the one-block result."""
    x = torch.randn(shape)
    if isinstance(layer, nn.Linear):
        x = x.transpose(0, 1)  # non-contiguous: forces copies, which must be bounded
    geo = patches.adapter_of(layer)
    budget = geo.n * 4 * 37  # 37 rows
    seen = []
    real = patches.row_blocks

    def spy(*args, **kwargs):
        for block in real(*args, **kwargs):
            seen.append(block.numel() * block.element_size() if not block._is_view() else 0)
            yield block

    monkeypatch.setattr(patches, "row_blocks", spy)
    small, rows_small = patches.gram(x, geo, block_bytes=budget)
    assert len(seen) > 2 and max(seen) <= budget
    big, rows_big = patches.gram(x, geo, block_bytes=2**40)
    assert rows_small == rows_big == geo.count_rows(x)
    assert_close(small, big, rtol=1e-5, atol=1e-4)


def test_band_algorithm_blocks_are_bounded(monkeypatch):
    """The band algorithm (a 7x7/2 stem on the CPU) lays out a few samples at a time, within block_bytes."""
    layer, x = nn.Conv2d(3, 8, 7, stride=2, padding=3), torch.randn(5, 3, 30, 30)
    geo = patches.adapter_of(layer)
    per_sample = 15 * (35 + 7) * 21 * 4  # output columns x (padded lines + k) x Cg·k x float32: 52 920 bytes
    budget = 2 * per_sample
    sizes = []
    real_zeros = torch.zeros

    def zeros(*shape, **kwargs):
        out = real_zeros(*shape, **kwargs)
        sizes.append(out.numel() * out.element_size())
        return out

    monkeypatch.setattr(patches.torch, "zeros", zeros)
    banded = geo.gram_band(x, torch.float32, budget)
    monkeypatch.setattr(patches.torch, "zeros", real_zeros)
    assert banded is not None and patches.band_applies(geo, x.device)
    blocks = [b for b in sizes if b == 2 * per_sample or b == per_sample]  # the laid-out samples of each block
    assert len(blocks) == 3 and max(blocks) <= budget  # 5 samples: 2 + 2 + 1
    from oracle import layer_patches

    a = layer_patches(copy.deepcopy(layer).double(), x.double())[0]  # (r, n) from the layer's own convolution
    assert_close(banded[0].double(), a.T @ a, rtol=1e-5, atol=1e-3)  # (g = 1, n, n)


def test_patch_embedding_uses_a_view_of_the_input():
    conv = nn.Conv2d(3, 8, 4, stride=4)
    x = torch.randn(2, 3, 16, 16)
    view = patches.adapter_of(conv).view(x)
    assert view.data_ptr() == x.data_ptr() and view._base is x  # no copy before the bounded block


def _record_plain(monkeypatch) -> dict:
    """Record the plain weight gradient Gᵀ A that a TrAct layer's backward preconditions (the layer's own, or formed
    from the output gradient G in the solve dtype), and the input."""
    seen, tract_gradient = {}, trainact.backward.tract_gradient

    def spy(spec, x, eye, *, plain=None, grad_out=None):
        if plain is None:
            plain = spec.adapter.weight_grad(x, grad_out, spec.dtype, spec.block_bytes)
        seen.update(plain=plain.reshape(-1, spec.adapter.n).clone(), x=x.clone(), grad_out=grad_out)  # (m, n)
        return tract_gradient(spec, x, eye, plain=plain, grad_out=grad_out)

    monkeypatch.setattr(trainact.backward, "tract_gradient", spy)
    return seen


def _formula(conv: nn.Conv2d, plain: torch.Tensor, x: torch.Tensor, lam: float) -> torch.Tensor:
    """plain · (AᵀA/r + λI)⁻¹ in float64, A from the layer's own convolution (tests/oracle.py)."""
    from oracle import layer_patches

    a = layer_patches(copy.deepcopy(conv).double(), x.double())[0]  # (r, n)
    mat = a.T @ a / a.shape[0] + lam * torch.eye(a.shape[1], dtype=torch.float64)
    return (plain.double().reshape(plain.shape[0], -1) @ torch.linalg.inv(mat)).reshape(plain.shape)


def test_autocast_bf16_cpu(monkeypatch):
    torch.manual_seed(7)
    model = tiny_cnn()
    trainact.apply(model)
    seen = _record_plain(monkeypatch)
    x, y = torch.randn(8, 3, 8, 8), torch.randint(0, 4, (8,))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
        assert out.dtype == torch.bfloat16
        loss = nn.functional.cross_entropy(out.float(), y)
    loss.backward()
    g = model[0].weight.grad
    assert g.dtype == torch.float32 and torch.isfinite(g).all()
    # the formula on the plain gradient TrAct formed (in fp32, from the bf16 G) times the fp32 input's (AᵀA/r + λI)⁻¹
    assert seen["x"].dtype == torch.float32 and seen["plain"].dtype == torch.float32
    assert_close(g.double(), _formula(model[0], seen["plain"], seen["x"], 0.1).reshape(g.shape), rtol=1e-5, atol=1e-7)
    # and the same step in fp32 without autocast agrees to bf16 accuracy
    fp32 = tract_grad_of(model, x, y)
    assert_close(g, fp32, rtol=0.05, atol=0.02 * fp32.abs().max().item())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_layer(dtype, monkeypatch):
    torch.manual_seed(8)
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(4, 3, 8, 8)
    grad_out = torch.randn(4, 8, 8, 8)
    low = trainact.TrAct(copy.deepcopy(conv).to(dtype))
    try:
        low(x.to(dtype)).backward(grad_out.to(dtype))
    except RuntimeError as err:  # some CPU builds lack half convolutions
        pytest.skip(f"{dtype} conv unavailable on this CPU build: {err}")
    assert low.weight.grad.dtype == dtype
    ref = ridge_oracle(conv.double(), x.to(dtype).double(), grad_out.to(dtype).double(), 0.1)
    assert_close(low.weight.grad.double(), ref, rtol=0.05, atol=0.03 * ref.abs().max().item())  # dtype's conv
    # exactly the formula on the plain gradient formed in fp32 from the 16-bit G, rounded once to the dtype
    seen = _record_plain(monkeypatch)
    low.weight.grad = None
    low(x.to(dtype)).backward(grad_out.to(dtype))
    expected = _formula(conv, seen["plain"], seen["x"], 0.1).reshape(low.weight.shape).to(dtype)
    assert_close(low.weight.grad, expected, rtol=2 * torch.finfo(dtype).eps, atol=1e-6 * ref.abs().max().item())


def test_nonfinite_output_gradient_propagates_without_raising():
    """A GradScaler overflow step: inf/NaN in G must reach weight.grad so the scaler skips the step."""
    conv = trainact.TrAct(nn.Conv2d(3, 4, 3))
    x = torch.randn(2, 3, 6, 6)
    grad_out = torch.randn(2, 4, 4, 4)
    grad_out[0, 0, 0, 0] = float("inf")
    conv(x).backward(grad_out)
    assert not torch.isfinite(conv.weight.grad).all()


def test_gradscaler_skips_overflow_step():
    model = tiny_cnn()
    trainact.apply(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=3e38)  # overflows fp32 at once
    before = model[0].weight.detach().clone()
    loss = nn.functional.cross_entropy(model(torch.randn(4, 3, 6, 6)), torch.tensor([0, 1, 2, 3]))
    scaler.scale(loss * 1e10).backward()  # scaled gradients overflow to inf
    assert not torch.isfinite(model[0].weight.grad).all()
    scaler.step(opt)
    scaler.update()
    assert torch.equal(model[0].weight, before) and scaler.get_scale() < 3e38


def test_relative_lambda_is_scale_invariant():
    """One SGD step changes the pre-activations identically for (x, W) and (c·x, W/c)."""
    torch.manual_seed(9)
    conv = nn.Conv2d(3, 6, 3, padding=1).double()
    x = torch.rand(8, 3, 8, 8, dtype=torch.float64)  # [0, 1] inputs
    target = torch.randn(8, 6, 8, 8, dtype=torch.float64)
    deltas = []
    for c in (1.0, 255.0):
        layer = copy.deepcopy(conv)
        with torch.no_grad():
            layer.weight /= c
        t = trainact.TrAct(layer, 0.1, relative=True, solve_dtype=torch.float64)
        z0 = t(c * x)
        (z0 - target).square().mean().backward()
        with torch.no_grad():
            t.weight -= 0.5 * t.weight.grad
            deltas.append(t(c * x) - z0)
    assert_close(deltas[0], deltas[1], rtol=1e-9, atol=1e-12)
    # ...which the absolute λ is not: with c = 255 the same λ barely regularises
    layer = copy.deepcopy(conv)
    with torch.no_grad():
        layer.weight /= 255.0
    t = trainact.TrAct(layer, 0.1, solve_dtype=torch.float64)
    z0 = t(255 * x)
    (z0 - target).square().mean().backward()
    with torch.no_grad():
        t.weight -= 0.5 * t.weight.grad
        assert not torch.allclose(t(255 * x) - z0, deltas[0], rtol=1e-3)


def test_relative_lambda_matches_oracle_with_effective_lambda():
    torch.manual_seed(10)
    lin = nn.Linear(5, 3).double()
    x = torch.rand(30, 5, dtype=torch.float64) * 255
    grad_out = torch.randn(30, 3, dtype=torch.float64)
    t = trainact.TrAct(lin, 0.1, relative=True, solve_dtype=torch.float64)
    t(x).backward(grad_out)
    lam_eff = 0.1 * (x.square().sum() / 30 / 5).item()
    assert_close(lin.weight.grad, ridge_oracle(lin, x, grad_out, lam_eff), rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("lam", [0, -1.0, float("nan"), float("inf"), True, "0.1", None])
def test_bad_lambda(lam):
    with pytest.raises((ValueError, TypeError), match="lam"):
        trainact.TrAct(nn.Linear(3, 2), lam)


@pytest.mark.parametrize("module", [nn.ConvTranspose2d(3, 4, 3), nn.ReLU(), nn.Embedding(10, 3)])
def test_unsupported_module_names_the_supported_ones(module):
    with pytest.raises(TypeError, match=r"unsupported module .*nn\.Linear, nn\.Conv1d, nn\.Conv2d, nn\.Conv3d"):
        trainact.TrAct(module)


def test_subclass_with_own_forward_keeps_it_and_gets_tract_on_its_call():
    class PaddedConv(nn.Conv2d):  # its forward pads, then the base forward makes the one conv call
        def forward(self, x):
            return super().forward(nn.functional.pad(x, (1, 2, 0, 1), mode="reflect"))

    torch.manual_seed(5)
    conv = PaddedConv(3, 4, 3).double()
    x = torch.randn(2, 3, 7, 6, dtype=torch.float64)
    tract = trainact.TrAct(copy.deepcopy(conv), 0.1)
    out = tract(x)
    assert torch.equal(out, conv(x))  # the subclass's forward is kept, not replaced
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    plain = nn.Conv2d(3, 4, 3).double()  # the call's geometry, on the input as padded by the forward
    expected = ridge_oracle(plain, nn.functional.pad(x, (1, 2, 0, 1), mode="reflect"), grad_out, 0.1)
    assert_close(tract.weight.grad, expected, rtol=1e-10, atol=1e-12)


def test_wrapping_twice_is_refused():
    t = trainact.TrAct(nn.Linear(3, 2))
    with pytest.raises(ValueError, match="already a TrAct layer"):
        trainact.TrAct(t)
    model = tiny_cnn()
    trainact.apply(model)
    with pytest.raises(ValueError, match="already has TrAct"):
        trainact.apply(model)


def test_bad_options():
    for bad in (torch.float16, torch.bfloat16, "float64", "AUTO", None, 64):
        with pytest.raises(ValueError, match=rf"solve_dtype must be 'auto', torch.float32 or torch.float64, got {bad!r}"):
            trainact.TrAct(nn.Linear(3, 2), solve_dtype=bad)
    with pytest.raises(ValueError, match="solve_dtype must be 'auto'.*got 'float32'"):
        trainact.precondition(torch.zeros(1, 2, 3), torch.zeros(1, 3, 3), 1, 0.1, solve_dtype="float32")
    with pytest.raises(ValueError, match="block_bytes"):
        trainact.TrAct(nn.Linear(3, 2), block_bytes=0)
    with pytest.raises(TypeError, match="relative"):
        trainact.TrAct(nn.Linear(3, 2), relative="yes")


def test_double_backward_names_the_layer():
    model = tiny_cnn()
    trainact.apply(model)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    loss = model(x).square().sum()
    with pytest.raises(RuntimeError, match=r"TrAct layer '0': double backward"):
        torch.autograd.grad(loss, model[0].weight, create_graph=True)


def test_input_gradient_penalty_does_not_touch_tract():
    """create_graph for an input gradient (gradient penalty) never runs the TrAct node."""
    torch.manual_seed(13)
    model, plain = tiny_cnn(), tiny_cnn()
    plain.load_state_dict(model.state_dict())
    trainact.apply(model)
    x = torch.randn(2, 3, 6, 6, requires_grad=True)
    (gx,) = torch.autograd.grad(model(x).square().sum(), x, create_graph=True)
    (gx_plain,) = torch.autograd.grad(plain(x).square().sum(), x, create_graph=True)
    assert torch.equal(gx, gx_plain)


def test_nonfinite_input_covariance_names_the_layer():
    model = tiny_cnn()
    trainact.apply(model)
    x = torch.randn(2, 3, 6, 6)
    x[0, 0, 0, 0] = float("nan")
    loss = model(x).sum()
    with pytest.raises(trainact.TrActNumericalError, match=r"TrAct layer '0'.*not finite"):
        loss.backward()


# -------------------------------------------------------------------------------------------------------- apply


class TwoStems(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3)
        self.b = nn.Conv2d(3, 4, 3)

    def forward(self, x):
        return self.a(x) + self.b(x)


class Unregistered(nn.Module):
    """The first layer in registration order is not the one that consumes the input."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(8, 2)
        self.stem = nn.Conv2d(3, 8, 3)

    def forward(self, x):
        return self.head(self.stem(x).mean((2, 3)))


def test_apply_detects_by_data_flow_not_registration_order():
    assert trainact.apply(Unregistered()) == "stem"


def test_apply_ambiguous_and_missing():
    with pytest.raises(ValueError, match=r"ambiguous first layer: \['a', 'b'\] .*pass layer='all'"):
        trainact.apply(TwoStems())
    assert trainact.apply(TwoStems(), layer="b") == "b"
    with pytest.raises(ValueError, match="no nn.Linear"):
        trainact.apply(nn.Sequential(nn.ReLU()))
    with pytest.raises(ValueError, match="no submodule 'nope'"):
        trainact.apply(tiny_cnn(), layer="nope")
    with pytest.raises(TypeError, match="unsupported module ReLU"):
        trainact.apply(tiny_cnn(), layer="1")


class CrossScale(nn.Module):
    """CrossViT-like: two patch embeddings read the image, one of them after a parameter-free resize."""

    def __init__(self):
        super().__init__()
        self.small = nn.ModuleDict({"proj": nn.Conv2d(3, 6, 4, stride=4)})
        self.large = nn.ModuleDict({"proj": nn.Conv2d(3, 6, 4, stride=4, bias=False)})
        self.mix = nn.Linear(6, 6)  # reads embedded tokens: not a first layer
        self.head = nn.Linear(12, 5)

    def forward(self, x):
        a = self.small["proj"](x).flatten(2).transpose(1, 2)  # (B, 16, 6)
        b = self.large["proj"](nn.functional.interpolate(x, scale_factor=0.5)).flatten(2).transpose(1, 2)  # (B, 4, 6)
        a = self.mix(a)
        return self.head(torch.cat([a.mean(1), b.mean(1)], dim=1))


class ReparamStem(nn.Module):
    """FastViT/MobileOne-like stem: parallel k x k and 1 x 1 conv branches (+ BN) all read the image."""

    def __init__(self):
        super().__init__()
        self.branches = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8)) for _ in range(2)]
        )
        self.scale = nn.Sequential(nn.Conv2d(3, 8, 1, stride=2, bias=False), nn.BatchNorm2d(8))
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)  # reads the stem's output: not a first layer
        self.head = nn.Linear(8, 5)

    def forward(self, x):
        y = sum(branch(x) for branch in self.branches) + self.scale(x)
        return self.head(self.dw(torch.relu(y)).mean((2, 3)))


def chained_convs() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 5))


@pytest.mark.parametrize(
    "make,expected",
    [
        (CrossScale, ["small.proj", "large.proj"]),
        (ReparamStem, ["branches.0.0", "branches.1.0", "scale.0"]),
        (chained_convs, ["0"]),  # a conv reading another conv's output is not wrapped
    ],
    ids=["two-patch-embeddings", "reparam-stem", "chained-convs"],
)
def test_apply_all_wraps_every_layer_reading_the_input(make, expected):
    """Each wrapped layer's gradient after a training step equals the ridge oracle on that layer's own rows."""
    torch.manual_seed(16)
    model = make().double().train()
    plain = {n: type(m) for n, m in model.named_modules()}
    params = list(model.parameters())
    seen = {}

    def keep(name):
        def hook(module, args, out):
            seen[name] = {"x": args[0].detach()}
            out.register_hook(lambda g: seen[name].setdefault("g", g))

        return hook

    for name in expected:
        model.get_submodule(name).register_forward_hook(keep(name))
    names = trainact.apply(model, 0.1, layer="all", example_input=torch.randn(2, 3, 16, 16, dtype=torch.float64))
    assert names == expected
    assert [n for n, m in model.named_modules() if trainact.is_tract(m)] == sorted(expected, key=list(plain).index)
    x, y = torch.randn(6, 3, 16, 16, dtype=torch.float64), torch.randint(0, 5, (6,))
    nn.functional.cross_entropy(model(x), y).backward()
    for name in expected:
        layer = model.get_submodule(name)
        assert torch.isfinite(layer.weight.grad).all()
        ref = ridge_oracle(layer, seen[name]["x"], seen[name]["g"], 0.1)
        assert_close(layer.weight.grad, ref, rtol=1e-9, atol=1e-12 * ref.abs().max().item())
    assert trainact.remove(model) == sorted(expected, key=list(plain).index)
    assert {n: type(m) for n, m in model.named_modules()} == plain and list(model.parameters()) == params


def test_apply_all_guesses_the_input_and_ambiguity_points_to_it():
    with pytest.raises(ValueError, match=r"ambiguous first layer: \['branches.0.0', 'branches.1.0', 'scale.0'\].*layer='all'"):
        trainact.apply(ReparamStem())
    assert trainact.apply(ReparamStem(), layer="all") == ["branches.0.0", "branches.1.0", "scale.0"]
    assert trainact.find_input_layers(TwoStems()) == ["a", "b"]
    assert trainact.apply(tiny_cnn(), layer="all") == ["0"]  # a list even for one layer


def test_apply_with_a_list_of_names():
    model = CrossScale()
    assert trainact.apply(model, 0.2, layer=("large.proj", "mix"), relative=True) == ["large.proj", "mix"]
    assert model.mix.tract.lam == 0.2 and model.mix.tract.relative and model.large["proj"]._tract_name == "large.proj"
    assert not trainact.is_tract(model.small["proj"])
    assert trainact.remove(model) == ["large.proj", "mix"]


def test_apply_with_bad_lists_changes_nothing():
    model = CrossScale()
    with pytest.raises(ValueError, match=r"no submodule\(s\) \['small.prj', 'nope'\].*'small.proj', 'large.proj'"):
        trainact.apply(model, layer=["small.prj", "large.proj", "nope"])
    with pytest.raises(ValueError, match="empty"):
        trainact.apply(model, layer=[])
    with pytest.raises(ValueError, match=r"\['mix'\] named more than once"):
        trainact.apply(model, layer=["mix", "large.proj", "mix"])
    with pytest.raises(TypeError, match=r"layer names must be qualified module names \(str\), got \[3\]"):
        trainact.apply(model, layer=["mix", 3])
    with pytest.raises(TypeError, match="unsupported module ModuleDict"):
        trainact.apply(model, layer=["mix", "small"])
    with pytest.raises(TypeError, match=r"layer must be None, 'all', .* got \{'mix'\}"):
        trainact.apply(model, layer={"mix"})
    with pytest.raises(ValueError, match="lam"):
        trainact.apply(model, -1.0, layer=["mix", "large.proj"])
    assert not any(trainact.is_tract(m) for m in model.modules())  # every check runs before the first replacement
    model.alias = model.mix
    with pytest.raises(ValueError, match=r"\['alias'\] name a module already named"):
        trainact.apply(model, layer=["mix", "alias"])


def test_apply_all_with_only_unsupported_consumers():
    model = nn.Sequential(nn.ConvTranspose2d(3, 4, 3), nn.Conv2d(4, 2, 3))
    with pytest.raises(ValueError, match=r"no nn.Linear / nn.Conv1d/2d/3d layer consumes the input .*unsupported \['0 \(ConvTranspose2d\)'\]"):
        trainact.apply(model, layer="all", example_input=torch.randn(1, 3, 8, 8))


def test_apply_restores_training_mode_and_leaves_batchnorm_alone():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.5))
    model.train()
    stats = model[1].running_mean.clone()
    trainact.apply(model)
    assert model.training and model[1].training and torch.equal(model[1].running_mean, stats)


def test_apply_with_example_input_on_an_mlp():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(12, 6), nn.ReLU(), nn.Linear(6, 2))
    assert trainact.apply(mlp, example_input=torch.randn(2, 3, 2, 2)) == "1"


@pytest.mark.vision
@pytest.mark.parametrize(
    "name,expected",
    [("resnet18", "conv1"), ("resnet50", "conv1"), ("vit_b_16", "conv_proj"), ("convnext_tiny", "features.0.0")],
)
def test_apply_finds_torchvision_first_layers(name, expected):
    tv = pytest.importorskip("torchvision")
    model = tv.models.get_model(name, weights=None, num_classes=10)
    assert trainact.apply(model) == expected
    assert trainact.is_tract(model.get_submodule(expected))


@pytest.mark.vision
@pytest.mark.parametrize(
    "name,expected",
    [
        ("vit_tiny_patch16_224", "patch_embed.proj"),
        ("deit_small_patch16_224", "patch_embed.proj"),
        ("resnet18", "conv1"),
        ("convnext_atto", "stem.0"),
    ],
)
def test_apply_finds_timm_first_layers(name, expected):
    timm = pytest.importorskip("timm")
    model = timm.create_model(name, pretrained=False, num_classes=10)
    assert trainact.apply(model) == expected


@pytest.mark.vision
def test_timm_vit_step_matches_oracle():
    """End to end on a real patch embedding: the TrAct grad of timm's patch_embed.proj equals the ridge oracle."""
    timm = pytest.importorskip("timm")
    torch.manual_seed(12)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=10, img_size=32, patch_size=8).double()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    captured = {}
    proj = model.patch_embed.proj

    def keep_output_grad(module, args, out):
        out.register_hook(lambda g: captured.setdefault("g", g))

    proj.register_forward_hook(keep_output_grad)
    name = trainact.apply(model, 0.1, solve_dtype=torch.float64)
    model(x).sum().backward()
    assert name == "patch_embed.proj"
    ref = ridge_oracle(proj, x, captured["g"], 0.1)
    assert_close(model.patch_embed.proj.weight.grad, ref, rtol=1e-8, atol=1e-10)


def test_apply_leaves_the_global_rng_alone():
    model = tiny_cnn()
    torch.manual_seed(14)
    expected = torch.rand(3)
    torch.manual_seed(14)
    trainact.apply(model)
    assert torch.equal(torch.rand(3), expected)


def test_factorisation_is_float64_whatever_the_statistics_dtype(monkeypatch):
    """float32 statistics are factorised in float64 (no fp32 attempt, no retry), solved in float32; a matrix the
    factorisation rejects makes that gradient NaN and raises, naming the layer."""
    torch.manual_seed(15)
    a = torch.randn(64, 6, dtype=torch.float64)
    gram = (a.T @ a)[None]  # (1, 6, 6)
    grad = torch.randn(1, 3, 6)
    dtypes = []
    real = torch.linalg.cholesky_ex

    def record(mat, *args, **kwargs):
        dtypes.append(mat.dtype)
        return real(mat, *args, **kwargs)

    monkeypatch.setattr(torch.linalg, "cholesky_ex", record)
    out = trainact.precondition(grad, gram.float(), 64, 0.1)
    assert dtypes == [torch.float64] and out.dtype == torch.float32
    expected = grad.double() @ torch.linalg.inv(gram.float().double()[0] / 64 + 0.1 * torch.eye(6, dtype=torch.float64))
    assert_close(out.double(), expected, rtol=1e-6, atol=1e-7)
    monkeypatch.setattr(torch.linalg, "cholesky_ex", lambda m, *a, **k: (real(m)[0], torch.ones(1, dtype=torch.int32)))
    out, status = trainact.tract.solve(grad, trainact.tract.system(gram.float(), 64, 0.1), torch.float32)
    assert out.isnan().all() and (status < 0).all()  # below 0: not positive definite (NaN, inf: not finite)
    with pytest.raises(trainact.TrActNumericalError, match="could not be factorised even in float64"):
        trainact.precondition(grad, gram.float(), 64, 0.1, name="TrAct layer 'stem'")


# --- subclasses whose forward transforms the weight (timm's StdConv2d, ScaledStdConv2d, *Same) ----------------


def _standardise(w: torch.Tensor, eps: float, gain=None) -> torch.Tensor:
    """Per output channel (w - mean) / sqrt(var + eps) over (in, *kernel), as timm's weight standardisation."""
    flat = w.reshape(w.shape[0], -1)
    out = (flat - flat.mean(1, keepdim=True)) / (flat.var(1, unbiased=False, keepdim=True) + eps).sqrt()
    out = out.reshape_as(w)
    return out if gain is None else out * gain


class StdConv(nn.Conv2d):
    """timm's StdConv2d in miniature: standardise the weight, then one F.conv2d."""

    def forward(self, x):
        return nn.functional.conv2d(x, _standardise(self.weight, 1e-6), self.bias, self.stride, self.padding,
                                    self.dilation, self.groups)


class ScaledStdConvSame(nn.Conv2d):
    """ScaledStdConv2dSame in miniature: a learned gain, and 'same' padding done by F.pad before a padding-0 call."""

    def __init__(self, *a, **k):
        super().__init__(*a, padding=0, **k)
        self.gain = nn.Parameter(torch.rand(self.out_channels, 1, 1, 1, dtype=self.weight.dtype) + 0.5)

    def pad(self, x):
        total = [max((-(-s // st) - 1) * st + (k - 1) * d + 1 - s, 0)
                 for s, st, k, d in zip(x.shape[-2:], self.stride, self.kernel_size, self.dilation)]
        return nn.functional.pad(x, [total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2])

    def forward(self, x):
        w = _standardise(self.weight, 1e-5, self.gain)
        return nn.functional.conv2d(self.pad(x), w, self.bias, self.stride, 0, self.dilation, self.groups)


@pytest.mark.parametrize("cls,kwargs", [(StdConv, dict(stride=2, padding=1)), (StdConv, dict(groups=2, padding=2)),
                                        (ScaledStdConvSame, dict(stride=2))], ids=["std", "std-groups", "scaled-same"])
def test_a_weight_transforming_conv_gets_tract_on_the_weight_its_call_uses(cls, kwargs):
    torch.manual_seed(11)
    layer = cls(4, 6, 3, **kwargs).double()
    x = torch.randn(2, 4, 9, 8, dtype=torch.float64)
    tract = trainact.TrAct(layer, 0.05)  # float64 in: a float64-exact solve by default
    out = tract(x)
    grad_out = torch.randn_like(out)
    out.backward(grad_out)

    # the oracle: the ridge problem of the call the forward makes (its weight, its input after padding, its
    # geometry), mapped back to the stored parameters by autograd
    weight = layer.weight.detach().clone().requires_grad_(True)
    if cls is StdConv:
        eff, x_call, call = _standardise(weight, 1e-6), x, nn.Conv2d(4, 6, 3, bias=False, **kwargs)
        params = (weight,)
    else:
        gain = layer.gain.detach().clone().requires_grad_(True)
        eff, x_call, call = _standardise(weight, 1e-5, gain), layer.pad(x), nn.Conv2d(4, 6, 3, stride=2, bias=False)
        params = (weight, gain)
    call = call.double()
    expected_eff = ridge_oracle(call, x_call, grad_out, 0.05)
    expected = torch.autograd.grad(eff, params, expected_eff)
    assert_close(tract.weight.grad, expected[0], rtol=1e-10, atol=1e-12)
    if cls is ScaledStdConvSame:
        assert_close(tract.gain.grad, expected[1], rtol=1e-10, atol=1e-12)  # the gain follows the chain rule too
    plain = copy.deepcopy(layer)
    plain(x).backward(grad_out)
    assert_close(tract.bias.grad, plain.bias.grad, rtol=0, atol=0)  # bias: untouched
    assert isinstance(tract, cls) and torch.equal(tract(x), plain(x))
    seq = nn.Sequential(tract)
    trainact.remove(seq)
    assert type(seq[0]) is cls


def test_a_forward_with_zero_or_several_calls_or_deferred_statistics_is_refused():
    class Twice(nn.Conv2d):
        def forward(self, x):
            return nn.functional.conv2d(x, self.weight, self.bias, padding=1) + nn.functional.conv2d(x, self.weight)[..., :1, :1]

    class Unfolded(nn.Conv2d):
        def forward(self, x):
            cols = nn.functional.unfold(x, self.kernel_size)  # (B, n, L): no conv call at all
            return (self.weight.flatten(1) @ cols).unflatten(-1, (x.shape[-2] - 2, x.shape[-1] - 2))

    x = torch.randn(1, 3, 6, 6)
    with pytest.raises(TypeError, match="Twice.forward makes more than one convolution/linear call"):
        trainact.TrAct(Twice(3, 4, 3))(x)
    with pytest.raises(TypeError, match="Unfolded.forward makes no convolution/linear call"):
        trainact.TrAct(Unfolded(3, 4, 3, bias=False))(x)
    with pytest.raises(ValueError, match="defer=True is not supported for StdConv"):
        trainact.TrAct(StdConv(3, 4, 3), defer=True)


def test_the_core_package_imports_torch_only():
    import ast
    import subprocess
    import sys

    code = ("import sys, torch; before = set(sys.modules); import trainact, trainact.integrations; "
            "print(sorted({m.split('.')[0] for m in set(sys.modules) - before} - {'trainact'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    new = [m for m in ast.literal_eval(out) if m not in sys.stdlib_module_names]
    assert new == [], f"importing trainact pulled in {new} beyond torch"
