"""TrAct on the first layers of real timm models: several input-reading layers (CrossViT, FastViT), weight-
standardised stems (NFNet, the hybrid ViT-R), and timm's StdConv2d / ScaledStdConv2d against the float64 oracle."""
from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import trainact
from oracle import ridge_oracle

timm = pytest.importorskip("timm")
pytestmark = pytest.mark.vision


def _step(model: nn.Module, x: torch.Tensor) -> None:
    out = model(x)
    out = out[0] if isinstance(out, (tuple, list)) else out
    nn.functional.cross_entropy(out, torch.arange(x.shape[0]) % out.shape[1]).backward()


@pytest.mark.parametrize("name,size,expected", [
    # CrossViT: one patch embedding per scale, the second on the image resized to 224
    ("crossvit_tiny_240", 240, ["patch_embed.0.proj", "patch_embed.1.proj"]),
    # FastViT's re-parameterisable stem: the first MobileOne block's parallel branches all read the image
    ("fastvit_t8", 64, ["stem.0.conv_scale.conv", "stem.0.conv_kxk.0.conv"]),
])
def test_every_input_reading_layer_of_a_timm_model(name, size, expected):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=5)
    x = torch.randn(2, 3, size, size)
    with pytest.raises(ValueError, match="layer='all'"):  # several first layers: the error names the fix
        trainact.apply(model, 0.1, example_input=x)
    names = trainact.apply(model, 0.1, layer="all", example_input=x)
    assert names == expected
    model.train()
    _step(model, x)
    for n in names:
        layer = model.get_submodule(n)
        assert trainact.is_tract(layer) and torch.isfinite(layer.weight.grad).all() and layer.weight.grad.abs().sum() > 0
    trainact.remove(model)
    assert not any(trainact.is_tract(m) for m in model.modules())


@pytest.mark.parametrize("name,size,first", [
    ("nfnet_f0", 64, "stem.conv1"),  # ScaledStdConv2d
    ("vit_tiny_r_s16_p8_224", 64, "patch_embed.backbone.conv"),  # StdConv2dSame, the hybrid stem
])
def test_weight_standardised_stems_apply_with_the_default_layer(name, size, first):
    torch.manual_seed(0)
    kwargs = {"img_size": size} if name.startswith("vit") else {}
    model = timm.create_model(name, num_classes=5, **kwargs)
    x = torch.randn(2, 3, size, size)
    assert trainact.apply(model, 0.1, example_input=x) == first
    _step(model, x)
    grad = model.get_submodule(first).weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


class _Capture(torch.overrides.TorchFunctionMode):
    """Records the input and the (differentiable) weight of the conv call a layer's forward makes."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func is nn.functional.conv2d:
            self.call = (args[0], args[1], args[3:], kwargs or {})
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("cls", ["StdConv2d", "StdConv2dSame", "ScaledStdConv2d", "ScaledStdConv2dSame"])
def test_timm_weight_standardised_convs_match_the_oracle(cls):
    torch.manual_seed(3)
    layer = getattr(timm.layers, cls)(3, 8, 3, stride=2).double()
    x = torch.randn(2, 3, 11, 10, dtype=torch.float64)
    # the oracle: the effective weight and the input of the call the plain layer makes, captured, then the ridge
    # problem of that call, mapped back to the stored parameters by autograd
    with _Capture() as cap:
        out = layer(x)
    grad_out = torch.randn_like(out)
    x_call, w_eff, (stride, padding, dilation, groups), _ = cap.call
    call = nn.Conv2d(3, 8, 3, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False).double()
    params = [p for n, p in layer.named_parameters() if n != "bias"]  # weight (and gain)
    expected = torch.autograd.grad(w_eff, params, ridge_oracle(call, x_call, grad_out, 0.1))

    tract = trainact.TrAct(layer, 0.1)
    tract(x).backward(grad_out)
    for p, e in zip(params, expected):
        assert_close(p.grad, e, rtol=1e-10, atol=1e-12)


def test_timm_native_scaler_recipe_accumulation_equals_one_large_batch_with_clipping():
    from trainact.integrations.timm import TrActScaler

    def net():
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(96, 4))

    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(8, 3, 8, 8, generator=g), torch.randint(0, 4, (8,), generator=g)
    clip = 0.05  # active: it must see the TrAct gradient
    ref = net()
    trainact.apply(ref, 0.1, layer="0")
    nn.functional.cross_entropy(ref(x), y).backward()
    torch.nn.utils.clip_grad_norm_(ref.parameters(), clip)
    torch.optim.SGD(ref.parameters(), lr=0.5).step()

    model = net()
    trainact.apply(model, 0.1, layer="0", defer=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    scaler = TrActScaler(model, device="cpu")
    for i in range(4):  # timm's train.py: loss / accum steps, need_update on the last micro-batch
        loss = nn.functional.cross_entropy(model(x[2 * i:2 * i + 2]), y[2 * i:2 * i + 2]) / 4
        scaler(loss, opt, clip_grad=clip, parameters=model.parameters(), need_update=i == 3)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert_close(p, q, rtol=1e-5, atol=1e-6)  # float32, through the GradScaler's scale and unscale
    with pytest.raises(TypeError, match="model must be an nn.Module, got list"):
        TrActScaler([model], device="cpu")
