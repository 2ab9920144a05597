"""The architecture sweep's models (the zoo-* experiments): each builds for CIFAR-10, keeps a 32 px image's
resolution through its adapted stem, and `trainact.apply` with the default layer finds the first layer listed here,
whose TrAct gradient in a training step is the paper's ridge solution (the float64 oracle)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import trainact
from oracle import ridge_oracle
from trainact.harness.models import available_models, build_model

pytest.importorskip("torchvision")
pytest.importorskip("timm")
pytestmark = pytest.mark.vision


# (--model, its options, the first layer TrAct wraps, the side of that layer's output map): a stride-1 stem keeps
# 32 px, ConvNeXt's 2x2/2 stem gives 16, 4x4 patches 8x8 tokens.
ZOO = [
    ("cifar:tv:vgg11_bn", {}, "features.0", 32),
    ("resnet18", {"width": 16}, "conv1", 32),
    ("resnet50", {"width": 16}, "conv1", 32),
    ("cifar:tv:densenet121-k12", {}, "features.conv0", 32),
    ("cifar:tv:mobilenet_v2", {}, "features.0.0", 32),
    ("cifar:tv:shufflenet_v2_x1_0", {}, "conv1.0", 32),
    ("cifar:tv:squeezenet1_1-bn", {}, "features.0.0", 32),
    ("cifar:tv:googlenet", {}, "conv1.conv", 32),
    ("cifar:timm:efficientnet_b0-headinit", {}, "conv_stem", 32),
    ("cifar:timm:convnext_atto", {}, "stem.0", 16),
    ("cifar:timm:deit_tiny_patch16_224", {}, "patch_embed.proj", 8),
    ("cifar:timm:swin_tiny_patch4_window7_224", {}, "patch_embed.proj", 8),
]


def test_the_sweep_trains_exactly_the_models_tested_here():
    from benchmarks import experiments
    from benchmarks.common import compare_config

    registered = set()
    for key in experiments.ZOO_MODELS:
        for name in (f"zoo-{key}", f"zoo-{key}-two-thirds"):
            e = experiments.EXPERIMENTS[name]
            cfg = compare_config([*e["args"], *(["--lr", "0.1"] if e["lr_from"] else [])])  # any lr
            registered.add((cfg.model, tuple(sorted(cfg.model_options().items()))))
    assert registered == {(name, tuple(sorted(options.items()))) for name, options, _, _ in ZOO}


@pytest.mark.parametrize("name,options,first,size", ZOO, ids=[z[0] for z in ZOO])
def test_zoo_model_builds_finds_its_first_layer_and_takes_a_tract_step(name, options, first, size):
    assert name in available_models()  # what the CLI checks a --model against
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, image_size=32, in_channels=3, **options)
    assert model.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with torch.no_grad():  # it starts at about chance: timm's EfficientNet head init started 2 points above ln 10
        loss = nn.functional.cross_entropy(model.train()(torch.randn(16, 3, 32, 32)), torch.arange(16) % 10)
    assert abs(loss.item() - math.log(10)) < 0.5, f"initial loss {loss.item():.3f}, chance is ln 10 = 2.303"
    assert trainact.apply(model, 0.1) == first  # layer=None: found by tracing the model's own forward pass
    layer = model.get_submodule(first)
    assert trainact.is_tract(layer) and isinstance(layer, nn.Conv2d)

    seen = {}

    def keep(module, args, out):
        seen["x"] = args[0].detach()
        out.register_hook(lambda g: seen.__setitem__("g", g.detach()))
    layer.register_forward_hook(keep)
    model.train()
    x, y = torch.randn(4, 3, 32, 32), torch.arange(4)
    nn.functional.cross_entropy(model(x), y).backward()
    assert seen["g"].shape[-2:] == (size, size)  # the stem's output map
    expected = ridge_oracle(layer, seen["x"], seen["g"], 0.1)
    grad = layer.weight.grad
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert_close(grad.double(), expected, rtol=1e-3, atol=1e-4 * expected.abs().max().item())
