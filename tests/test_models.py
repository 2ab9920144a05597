"""trainact.harness.models: CIFAR ResNets, ViT-CIFAR and its patch-norm variants, torchvision/timm by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from trainact.harness.models import ViT, available_models, build_model

SMALL_VIT = dict(patch_size=4, dim=32, depth=2, heads=4, mlp_dim=64)


def _first_layer(model: nn.Module) -> str:
    """Name of the first Linear/Conv module registered (what static first-layer detection would pick)."""
    return next(name for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)))


@pytest.mark.parametrize("name,expansion", [("resnet18", 1), ("resnet34", 1), ("resnet50", 4)])
def test_cifar_resnets(name, expansion):
    torch.manual_seed(0)
    net = build_model(name, num_classes=7, width=4)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert _first_layer(net) == "conv1"
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1) and net.conv1.out_channels == 4
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert net.fc.in_features == 8 * 4 * expansion
    strides = [stage[0].conv1.stride if expansion == 1 else stage[0].conv2.stride
               for stage in (net.layer1, net.layer2, net.layer3, net.layer4)]
    assert strides == [(1, 1), (2, 2), (2, 2), (2, 2)]
    blocks = {"resnet18": [2, 2, 2, 2], "resnet34": [3, 4, 6, 3], "resnet50": [3, 4, 6, 3]}[name]
    assert [len(s) for s in (net.layer1, net.layer2, net.layer3, net.layer4)] == blocks


@pytest.mark.parametrize("name,side,pool", [("resnet18", 32, None), ("resnet18-maxpool", 16, nn.MaxPool2d),
                                            ("resnet18-s2", 16, None), ("resnet18-avgpool", 16, nn.AvgPool2d)])
def test_cifar_resnet18_stems(name, side, pool):
    """The stems the stages see 32x32 or 16x16 maps after: the first layer is conv1 in each, and only the pool
    (or the stem's stride) differs."""
    import trainact

    torch.manual_seed(0)
    net = build_model(name, num_classes=10, width=4)
    seen = []
    net.layer1.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape))
    x = torch.randn(2, 3, 32, 32)
    assert net(x).shape == (2, 10) and seen == [(2, 4, side, side)]  # what the stages see after the stem
    assert net.conv1.stride == ((2, 2) if name == "resnet18-s2" else (1, 1)) and net.conv1.padding == (1, 1)
    pools = [type(m) for m in net.modules() if isinstance(m, (nn.MaxPool2d, nn.AvgPool2d))]
    assert pools == ([pool] if pool else [])
    if pool is nn.AvgPool2d:  # 2x2, stride 2: the mean of each 2x2 block of the stem's output
        stem = F.relu(net.bn1(net.conv1(x)))
        torch.testing.assert_close(net.stem_pool(stem), stem.unflatten(3, (16, 2)).unflatten(2, (16, 2)).mean((3, 5)))
    assert trainact.apply(net, lam=0.1) == "conv1"
    assert net(x).shape == (2, 10)


def test_resnet_default_width_and_grayscale():
    assert build_model("resnet18", num_classes=10).conv1.out_channels == 64
    net = build_model("resnet18", num_classes=3, in_channels=1, width=2)
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize("name", ["vit", "vit-patchnorm", "vit-dualpatchnorm"])
def test_vit_variants(name):
    torch.manual_seed(0)
    net = build_model(name, num_classes=10, image_size=16, **SMALL_VIT)
    assert net(torch.randn(3, 3, 16, 16)).shape == (3, 10)
    assert _first_layer(net) == "patch_embed"
    assert net.patch_embed.in_features == 3 * 4 * 4 and net.patch_embed.out_features == 32
    assert net.pos_embed.shape == (1, (16 // 4) ** 2 + 1, 32)
    assert len(net.blocks) == 2


def test_vit_defaults_are_vit_cifar():
    net = build_model("vit", num_classes=10)
    assert net.patch_size == 8 and net.patch_embed.in_features == 3 * 8 * 8 and net.patch_embed.out_features == 384
    assert len(net.blocks) == 7 and net.blocks[0].attn.heads == 12 and net.blocks[0].mlp[0].out_features == 1536
    assert net.pos_embed.shape == (1, 17, 384)


def test_patch_embedding_is_a_strided_convolution():
    """patchify flattens (C, p, p) like a Conv2d weight, so patch_embed == conv with kernel = stride = p."""
    torch.manual_seed(0)
    net = ViT(num_classes=10, image_size=12, in_channels=2, **SMALL_VIT)
    x = torch.randn(2, 2, 12, 12)
    tokens = net.patch_embed(net.patchify(x))  # (B, T, D)
    w = net.patch_embed.weight.view(32, 2, 4, 4)
    ref = F.conv2d(x, w, net.patch_embed.bias, stride=4).flatten(2).transpose(1, 2)  # (B, T, D)
    torch.testing.assert_close(tokens, ref)


def test_patch_norm_variants_differ_from_plain_vit_and_remove_contrast():
    torch.manual_seed(0)
    plain = build_model("vit", num_classes=10, image_size=16, **SMALL_VIT).eval()
    x = torch.rand(4, 3, 16, 16)
    # per-image contrast and brightness change: x -> a x + b
    a = torch.tensor([0.5, 1.0, 2.0, 4.0]).view(4, 1, 1, 1)
    b = torch.tensor([0.9, -0.2, 0.0, 3.0]).view(4, 1, 1, 1)
    for name in ("vit-patchnorm", "vit-dualpatchnorm"):
        net = build_model(name, num_classes=10, image_size=16, **SMALL_VIT).eval()
        net.load_state_dict(plain.state_dict(), strict=False)  # same weights where the models share them
        with torch.no_grad():
            assert not torch.allclose(net(x), plain(x), atol=1e-3)
            torch.testing.assert_close(net(a * x + b), net(x), atol=2e-3, rtol=1e-3)
    with torch.no_grad():
        assert not torch.allclose(plain(a * x + b), plain(x), atol=1e-2)


def test_dualpatchnorm_structure():
    net = build_model("vit-dualpatchnorm", num_classes=10, image_size=16, **SMALL_VIT)
    assert isinstance(net.pre_norm, nn.LayerNorm) and net.pre_norm.normalized_shape == (48,)
    assert isinstance(net.post_norm, nn.LayerNorm) and net.post_norm.normalized_shape == (32,)
    plain = build_model("vit", num_classes=10, image_size=16, **SMALL_VIT)
    assert isinstance(plain.pre_norm, nn.Identity) and isinstance(plain.post_norm, nn.Identity)


def test_unknown_names_and_options():
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'.*did you mean.*resnet18.*available"):
        build_model("resnet19", num_classes=10)
    with pytest.raises(ValueError, match=r"unknown option\(s\) \['depth'\].*accepted.*width"):
        build_model("resnet18", num_classes=10, depth=3)
    with pytest.raises(ValueError, match="width.*int >= 1"):
        build_model("resnet18", num_classes=10, width=0)
    with pytest.raises(ValueError, match="dropout.*\\[0, 1\\)"):
        build_model("vit", num_classes=10, dropout=1.5)
    with pytest.raises(ValueError, match=r"image_size \(30\) must be a multiple of patch_size \(8\)"):
        build_model("vit", num_classes=10, image_size=30)
    with pytest.raises(ValueError, match=r"dim \(384\) must be a multiple of heads \(5\)"):
        build_model("vit", num_classes=10, heads=5)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("vit", num_classes=0)
    names = available_models()
    assert {"resnet18", "resnet34", "resnet50", "vit", "vit-patchnorm", "vit-dualpatchnorm"} <= set(names)
    assert "tv:<name>" in names and "timm:<name>" in names


def test_vit_mlp_is_four_times_the_hidden_size_unless_given():
    """The ViT-CIFAR ratio (384 -> 1536) is kept when the hidden size is scaled down for CPU runs."""
    def mlp(net):
        return net.blocks[0].mlp[0].out_features

    assert mlp(build_model("vit", num_classes=10)) == 1536
    assert mlp(build_model("vit-dualpatchnorm", num_classes=10, dim=64, heads=4, depth=1)) == 256
    assert mlp(build_model("vit", num_classes=10, dim=64, heads=4, depth=1, mlp_dim=100)) == 100
    with pytest.raises(ValueError, match="option dim .* got -8"):
        build_model("vit", num_classes=10, dim=-8)


def test_vit_trains_on_a_batch():
    """A few steps on one batch reduce the loss to near zero: the graph is wired end to end."""
    torch.manual_seed(0)
    net = build_model("vit", num_classes=4, image_size=8, patch_size=4, dim=16, depth=1, heads=2, mlp_dim=32)
    x, y = torch.randn(8, 3, 8, 8), torch.arange(8) % 4
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(60):
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (net(x).argmax(1) == y).all()


# ----------------------------------------------------------------------------------------------------
# torchvision / timm


@pytest.mark.vision
def test_torchvision_models():
    pytest.importorskip("torchvision")
    net = build_model("tv:resnet18", num_classes=10)
    assert net.fc.out_features == 10 and _first_layer(net) == "conv1"
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="unknown torchvision model 'resnet181'.*did you mean"):
        build_model("tv:resnet181", num_classes=10)
    with pytest.raises(ValueError, match="invalid option"):
        build_model("tv:resnet18", num_classes=10, width=3)
    with pytest.raises(ValueError, match="3 input channels"):
        build_model("tv:resnet18", num_classes=10, in_channels=1)


@pytest.mark.vision
def test_torchvision_vit_gets_image_size():
    pytest.importorskip("torchvision")
    net = build_model("tv:vit_b_32", num_classes=10, image_size=64)
    assert net.image_size == 64
    assert net(torch.randn(1, 3, 64, 64)).shape == (1, 10)


@pytest.mark.vision
def test_timm_models():
    pytest.importorskip("timm")
    net = build_model("timm:resnet18", num_classes=10, in_channels=1)  # timm's ResNet has no img_size
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    vit = build_model("timm:vit_tiny_patch16_224", num_classes=10, image_size=32, patch_size=8)
    assert tuple(vit.patch_embed.img_size) == (32, 32)
    assert vit(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert _first_layer(vit) == "patch_embed.proj"
    with pytest.raises(ValueError, match="unknown timm model"):
        build_model("timm:no_such_model_xyz", num_classes=10)
