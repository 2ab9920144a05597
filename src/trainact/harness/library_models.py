"""torchvision and timm models by name (`tv:<name>`, `timm:<name>`), and CIFAR variants of some of them.

CIFAR variants (`cifar:<tv-or-timm-name>`): the library's model as the library defines it (widths, depth, init,
dropout; a name suffix marks the three exceptions), changed only where its ImageNet design wastes a 32 px image. A
stride-2 conv plus a stride-2 max-pool (or a 4x4 patchify) leaves an 8x8 map before the first stage and 1x1 before
the last, where the CIFAR ports of these models (kuangliu/pytorch-cifar, weiaicunzai/pytorch-cifar100) keep 32x32
and end at 4x4 or 2x2. Replaced layers get the library's own init; options go to the library's builder. The first
layer is the one `trainact.find_first_layer` finds, so `trainact.apply(model)` needs no `layer=`:

| name | first layer | adaptation, and why |
|---|---|---|
| cifar:tv:vgg11_bn | features.0 | stem kept (3x3 stride 1 already); the 5 max-pools leave 1x1, which the ImageNet head copies 49x into a 7x7 pool and a 25088-wide Linear: pooled to 1x1 and read by a 512-wide Linear instead (pytorch-cifar100's head) |
| cifar:tv:densenet121-k12 | features.conv0 | 7x7/2 conv -> 3x3/1, max-pool removed (blocks at 32/16/8/4 px); growth rate 32 -> 12 and 24 stem channels (DenseNet-BC's CIFAR k = 12), as k = 32 costs 7x the multiply-adds (name says so) |
| cifar:tv:mobilenet_v2 | features.0.0 | 3x3 stem stride 2 -> 1 (ends at 2x2 instead of 1x1) |
| cifar:tv:shufflenet_v2_x1_0 | conv1.0 | 3x3 stem stride 2 -> 1, max-pool removed (stages at 16/8/4 px) |
| cifar:tv:squeezenet1_1-bn | features.0.0 | 3x3 stem stride 2 -> 1 (padding 1), so its 3 max-pools leave 4x4; BatchNorm after every conv but the classifier and no ReLU on the logits, as in pytorch-cifar100's (the paper's) SqueezeNet, without which the loss stays at chance (name says so) |
| cifar:tv:googlenet | conv1.conv | 7x7/2 conv -> 3x3/1, first max-pool kept (stem 32 -> 16 px; inception 3/4/5 at 8/4/2 px instead of 4/2/1); no auxiliary heads; removing that max-pool too would cost 4x the multiply-adds |
| cifar:timm:efficientnet_b0-headinit | conv_stem | 3x3 stem stride 2 -> 1 (ends at 2x2); classifier drawn from U(±1/sqrt(1000)), timm's range at ImageNet's 1000 classes, as timm's U(±1/sqrt(classes)) gives ±0.32 at 10 classes and an initial loss of 4.4 instead of ln 10 = 2.3 (name says so) |
| cifar:timm:convnext_atto | stem.0 | 4x4/4 patchify -> 2x2/2 (timm's patch_size=2) and stage 0's extra downsample removed: stages at 16/8/4/2 px instead of 8/4/2/1 |
| cifar:timm:deit_tiny_patch16_224 | patch_embed.proj | img_size 32, 16x16 patches -> 4x4 (64 tokens instead of 4) |
| cifar:timm:swin_tiny_patch4_window7_224 | patch_embed.proj | img_size 32, 4x4 patches kept (8x8 tokens), window 7 -> 4, which divides the 8x8 grid (later stages' 4/2/1 grids take the whole grid as one window); 2x2 patches would cost 4x the multiply-adds |

The CIFAR ResNets above (`resnet18`, `resnet50`) are torchvision's with the same stem change (3x3/1, no max-pool).
"""

from __future__ import annotations

import difflib
import inspect
import math

import torch.nn as nn


# ----------------------------------------------------------------------------------------------------
# CIFAR variants of torchvision/timm models (the table in the module docstring says what and why)


def _cifar_stride1(net: nn.Module, path: str) -> None:
    """The stem convolution at `path` with stride 1 and padding k // 2: same weights, full-resolution output."""
    conv = net.get_submodule(path)
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"{path} is a {type(conv).__name__}, expected the stem's Conv2d")
    conv.stride = (1, 1)
    conv.padding = tuple(k // 2 for k in conv.kernel_size)


def _cifar_conv3x3(net: nn.Module, path: str, init) -> None:
    """Replace the stem convolution at `path` by a 3x3 stride-1 one with the same channels, initialised by
    `init` (the library's own initialisation of its convolutions)."""
    old = net.get_submodule(path)
    if not isinstance(old, nn.Conv2d):
        raise TypeError(f"{path} is a {type(old).__name__}, expected the stem's Conv2d")
    new = nn.Conv2d(old.in_channels, old.out_channels, 3, stride=1, padding=1, bias=old.bias is not None)
    init(new.weight)
    if new.bias is not None:
        nn.init.zeros_(new.bias)
    net.set_submodule(path, new, strict=True)


def _cifar_drop(net: nn.Module, path: str) -> None:
    """Remove the (pooling) module at `path`."""
    net.get_submodule(path)  # raises if absent
    net.set_submodule(path, nn.Identity(), strict=True)


def _tv(name: str, num_classes: int, image_size: int, in_channels: int, options: dict, **defaults) -> nn.Module:
    return torchvision_model(name, num_classes, image_size, in_channels, {**defaults, **options})


def _timm(name: str, num_classes: int, image_size: int, in_channels: int, options: dict, **defaults) -> nn.Module:
    return timm_model(name, num_classes, image_size, in_channels, {**defaults, **options})


def _cifar_vgg11_bn(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _tv("vgg11_bn", num_classes, image_size, in_channels, options)
    # 32 px leave a 1x1 map after the 5 max-pools: pool it (a no-op at 1x1) instead of copying it 49 times
    # into the ImageNet 7x7 adaptive pool, and read its 512 channels (pytorch-cifar100's VGG classifier)
    net.avgpool = nn.AdaptiveAvgPool2d(1)
    channels = [m for m in net.features if isinstance(m, nn.Conv2d)][-1].out_channels  # 512
    fc = nn.Linear(channels, net.classifier[0].out_features)
    nn.init.normal_(fc.weight, 0, 0.01)  # torchvision's VGG init of its Linear layers
    nn.init.zeros_(fc.bias)
    net.classifier[0] = fc
    return net


def _cifar_densenet121_k12(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    try:
        from torchvision.models import DenseNet
    except ImportError as e:
        raise ImportError("cifar:tv:<name> models need torchvision: pip install 'trainact[vision]'") from e
    if in_channels != 3:
        raise ValueError(f"torchvision models take 3 input channels, got in_channels={in_channels}; use timm:<name>")
    # DenseNet-121's blocks (6, 12, 24, 16) with the CIFAR growth rate 12 (DenseNet-BC k=12) and 2k stem channels
    net = DenseNet(**{"growth_rate": 12, "block_config": (6, 12, 24, 16), "num_init_features": 24,
                      "num_classes": num_classes, **options})
    _cifar_conv3x3(net, "features.conv0", nn.init.kaiming_normal_)  # torchvision's DenseNet init
    _cifar_drop(net, "features.pool0")
    return net


def _cifar_mobilenet_v2(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _tv("mobilenet_v2", num_classes, image_size, in_channels, options)
    _cifar_stride1(net, "features.0.0")
    return net


def _cifar_shufflenet_v2_x1_0(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _tv("shufflenet_v2_x1_0", num_classes, image_size, in_channels, options)
    _cifar_stride1(net, "conv1.0")
    _cifar_drop(net, "maxpool")
    return net


def _cifar_squeezenet1_1_bn(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _tv("squeezenet1_1", num_classes, image_size, in_channels, options)
    from torchvision.models.squeezenet import Fire  # torchvision is there: _tv has built the model

    _cifar_stride1(net, "features.0")
    # pytorch-cifar100's SqueezeNet (the paper's): BatchNorm after every convolution but the classifier's, whose
    # output (the logits) has no ReLU
    convs = ["features.0"] + [f"features.{i}.{part}" for i, m in enumerate(net.features) if isinstance(m, Fire)
                              for part in ("squeeze", "expand1x1", "expand3x3")]
    for path in convs:
        conv = net.get_submodule(path)
        net.set_submodule(path, nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels)), strict=True)
    _cifar_drop(net, "classifier.2")
    return net


def _cifar_googlenet(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _tv("googlenet", num_classes, image_size, in_channels, options, aux_logits=False, init_weights=True)
    # torchvision's GoogLeNet init: truncated normal, std 0.01
    _cifar_conv3x3(net, "conv1.conv", lambda w: nn.init.trunc_normal_(w, mean=0.0, std=0.01, a=-2, b=2))
    return net


def _cifar_efficientnet_b0_headinit(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _timm("efficientnet_b0", num_classes, image_size, in_channels, options)
    _cifar_stride1(net, "conv_stem")
    # timm draws the classifier from U(±1/sqrt(classes)): ±0.03 at ImageNet's 1000 classes, ±0.32 at 10, where the
    # initial loss is 4.4 instead of ln 10 = 2.3; keep the ImageNet range
    bound = 1 / math.sqrt(1000)
    nn.init.uniform_(net.classifier.weight, -bound, bound)
    return net


def _cifar_convnext_atto(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _timm("convnext_atto", num_classes, image_size, in_channels, options, patch_size=2)
    # timm keeps the total stride 32 with a 2x2 stem by downsampling again before stage 0: drop that, so the
    # stages see 16/8/4/2 px (with the 4x4 stem they would see 8/4/2/1)
    _cifar_drop(net, "stages.0.downsample")
    return net


def _cifar_deit_tiny(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    return _timm("deit_tiny_patch16_224", num_classes, image_size, in_channels, options, patch_size=4)


def _cifar_swin_tiny(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    return _timm("swin_tiny_patch4_window7_224", num_classes, image_size, in_channels, options, window_size=4)


CIFAR_MODELS = {
    "cifar:tv:vgg11_bn": _cifar_vgg11_bn,
    "cifar:tv:densenet121-k12": _cifar_densenet121_k12,
    "cifar:tv:mobilenet_v2": _cifar_mobilenet_v2,
    "cifar:tv:shufflenet_v2_x1_0": _cifar_shufflenet_v2_x1_0,
    "cifar:tv:squeezenet1_1-bn": _cifar_squeezenet1_1_bn,
    "cifar:tv:googlenet": _cifar_googlenet,
    "cifar:timm:efficientnet_b0-headinit": _cifar_efficientnet_b0_headinit,
    "cifar:timm:convnext_atto": _cifar_convnext_atto,
    "cifar:timm:deit_tiny_patch16_224": _cifar_deit_tiny,
    "cifar:timm:swin_tiny_patch4_window7_224": _cifar_swin_tiny,
}


def _unknown_name(name: str, known: list[str], what: str, listing: str) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {close}?)" if close else ""
    return ValueError(f"unknown {what} {name!r}{hint}; {listing} lists the {len(known)} available")


def torchvision_model(name: str, num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    try:
        import torchvision
    except ImportError as e:
        raise ImportError("tv:<name> models need torchvision: pip install 'trainact[vision]'") from e
    known = torchvision.models.list_models()
    if name not in known:
        raise _unknown_name(name, known, "torchvision model", "torchvision.models.list_models()")
    if in_channels != 3:
        raise ValueError(f"torchvision models take 3 input channels, got in_channels={in_channels}; use timm:<name>")
    builder = torchvision.models.get_model_builder(name)
    if builder.__module__.endswith("vision_transformer") and "image_size" not in options:
        options = {**options, "image_size": image_size}
    try:
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **options)
    except TypeError as e:
        raise ValueError(f"invalid option(s) {sorted(options)} for torchvision model {name!r}: {e}") from e


def timm_model(name: str, num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    try:
        import timm
    except ImportError as e:
        raise ImportError("timm:<name> models need timm: pip install 'trainact[vision]'") from e
    if not timm.is_model(name):
        raise _unknown_name(name, timm.list_models(), "timm model", "timm.list_models()")
    kwargs = dict(pretrained=False, num_classes=num_classes, in_chans=in_channels, **options)
    if "img_size" not in options and _accepts(timm.models.model_entrypoint(name), "img_size"):
        kwargs["img_size"] = image_size
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as e:
        if "img_size" in kwargs and "img_size" not in options and "img_size" in str(e):
            del kwargs["img_size"]  # the entry point forwards **kwargs to a model class that has no img_size
            try:
                return timm.create_model(name, **kwargs)
            except TypeError as e2:
                e = e2
        raise ValueError(f"invalid option(s) {sorted(options)} for timm model {name!r}: {e}") from e


def _accepts(fn, arg: str) -> bool:
    """Whether `fn` names `arg` or takes **kwargs (in which case the model class decides)."""
    params = inspect.signature(fn).parameters
    return arg in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
