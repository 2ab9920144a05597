"""Models for the harness, built by name: the CIFAR ResNets and ViT-CIFAR here, torchvision/timm by prefix.

    from trainact.harness.models import build_model, available_models
    net = build_model("resnet18", num_classes=10)                       # CIFAR ResNet-18 (first layer: conv1)
    net = build_model("resnet18", num_classes=10, width=16)             # CPU-sized
    net = build_model("vit", num_classes=10, depth=7, heads=12)         # ViT-CIFAR (first layer: patch_embed)
    net = build_model("tv:resnet18", num_classes=10)                    # torchvision, random init
    net = build_model("timm:vit_tiny_patch16_224", num_classes=10, image_size=32, patch_size=8)

    net = build_model("cifar:tv:mobilenet_v2", num_classes=10)          # torchvision's, stem adapted to 32 px

No weights are ever downloaded: every model starts from a random initialisation.

CIFAR variants (`cifar:<tv-or-timm-name>`): the library's model as the library defines it (widths, depth, init,
dropout; a name suffix marks the two exceptions), changed only where its ImageNet design wastes a 32 px image. A
stride-2 conv plus a stride-2 max-pool (or a 4x4 patchify) leaves an 8x8 map before the first stage and 1x1 before
the last, where the CIFAR ports of these models (kuangliu/pytorch-cifar, weiaicunzai/pytorch-cifar100) keep 32x32
and end at 4x4 or 2x2. Replaced layers get the library's own init; options go to the library's builder. The first
layer is the one `trainact.find_first_layer` finds, so `trainact.apply(model)` needs no `layer=`:

| name | first layer | adaptation, and why |
|---|---|---|
| cifar:tv:vgg11_bn | features.0 | stem kept (3x3 stride 1 already); the 5 max-pools leave 1x1, which the ImageNet head copies 49x into a 7x7 pool and a 25088-wide Linear: pooled to 1x1 and read by a 512-wide Linear instead (pytorch-cifar100's head; 100M fewer multiply-adds per image) |
| cifar:tv:densenet121-k12 | features.conv0 | 7x7/2 conv -> 3x3/1, max-pool removed (blocks at 32/16/8/4 px); growth rate 32 -> 12 and 24 stem channels (DenseNet-BC's CIFAR k = 12), as k = 32 costs 7x the multiply-adds (888M per image; name says so) |
| cifar:tv:mobilenet_v2 | features.0.0 | 3x3 stem stride 2 -> 1 (ends at 2x2 instead of 1x1) |
| cifar:tv:shufflenet_v2_x1_0 | conv1.0 | 3x3 stem stride 2 -> 1, max-pool removed (stages at 16/8/4 px) |
| cifar:tv:squeezenet1_1-bn | features.0.0 | 3x3 stem stride 2 -> 1 (padding 1), so its 3 max-pools leave 4x4; BatchNorm after every conv but the classifier and no ReLU on the logits, as in pytorch-cifar100's (the paper's) SqueezeNet; without them, in a hand probe of the zoo recipe, the loss sat at chance (2.30) for 60 steps at lr 0.1 and at 0.01 (name says so) |
| cifar:tv:googlenet | conv1.conv | 7x7/2 conv -> 3x3/1, first max-pool kept (stem 32 -> 16 px; inception 3/4/5 at 8/4/2 px instead of 4/2/1); no auxiliary heads; removing that max-pool too would cost 4x the multiply-adds (452M per image instead of 114M) |
| cifar:timm:efficientnet_b0 | conv_stem | 3x3 stem stride 2 -> 1 (ends at 2x2) |
| cifar:timm:convnext_atto | stem.0 | 4x4/4 patchify -> 2x2/2 (timm's patch_size=2) and stage 0's extra downsample removed: stages at 16/8/4/2 px instead of 8/4/2/1 |
| cifar:timm:deit_tiny_patch16_224 | patch_embed.proj | img_size 32, 16x16 patches -> 4x4 (64 tokens instead of 4) |
| cifar:timm:swin_tiny_patch4_window7_224 | patch_embed.proj | img_size 32, 4x4 patches kept (8x8 tokens), window 7 -> 4, which divides the 8x8 grid (later stages' 4/2/1 grids take the whole grid as one window); 2x2 patches would cost 4x the multiply-adds |

The CIFAR ResNets above (`resnet18`, `resnet50`) are torchvision's with the same stem change (3x3/1, no max-pool).
"""

from __future__ import annotations

import difflib
import inspect

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["build_model", "available_models", "CifarResNet", "BasicBlock", "Bottleneck", "ViT"]

_RESNETS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
}
_VITS = {"vit": "none", "vit-patchnorm": "patch", "vit-dualpatchnorm": "dual"}
_RESNET_OPTIONS = {"width": 64}
_VIT_OPTIONS = {"patch_size": 8, "dim": 384, "depth": 7, "heads": 12, "mlp_dim": 1536, "dropout": 0.0}


def available_models() -> list[str]:
    """The names `build_model` understands (`tv:<name>` and `timm:<name>` take any torchvision/timm model)."""
    return [*_RESNETS, *_VITS, *_CIFAR, "tv:<name>", "timm:<name>"]


# ----------------------------------------------------------------------------------------------------
# CIFAR ResNet


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = _shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.conv3 = nn.Conv2d(channels, channels * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(channels * self.expansion)
        self.shortcut = _shortcut(in_channels, channels * self.expansion, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), nn.BatchNorm2d(out_channels))


class CifarResNet(nn.Module):
    """ResNet for small images: 3x3 stride-1 stem `conv1` (the first layer), BN, ReLU, no max-pool; four
    stages of widths w, 2w, 4w, 8w with strides 1, 2, 2, 2; global average pool; `fc`."""

    def __init__(
        self, block: str, layers: tuple[int, ...], *, num_classes: int, in_channels: int = 3, width: int = 64
    ) -> None:
        super().__init__()
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        stages, channels = [], width
        for i, (n_blocks, stride) in enumerate(zip(layers, (1, 2, 2, 2))):
            stage_width = width * 2**i
            blocks = []
            for j in range(n_blocks):
                blocks.append(block_cls(channels, stage_width, stride if j == 0 else 1))
                channels = stage_width * block_cls.expansion
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))  # (B, w, H, W)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))  # (B, 8w * expansion, H/8, W/8)
        x = self.avgpool(x).flatten(1)  # (B, 8w * expansion)
        return self.fc(x)


# ----------------------------------------------------------------------------------------------------
# ViT-CIFAR


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        qkv = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # (3, B, nh, T, hs)
        q, k, v = qkv.unbind(0)  # each (B, nh, T, hs)
        y = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)  # (B, nh, T, hs)
        y = y.transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        return self.proj_drop(self.proj(y))


class EncoderLayer(nn.Module):
    """Pre-norm transformer layer: x + MHSA(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mlp_dim, dim), nn.Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchStandardize(nn.Module):
    """Per flattened patch: subtract its mean, divide by its std + eps (the paper's patch-wise normalisation)."""

    def __init__(self, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        std = x.std(dim=-1, keepdim=True, correction=0)
        return (x - mean) / (std + self.eps)


class ViT(nn.Module):
    """ViT-CIFAR (omihub777/ViT-CIFAR): non-overlapping p x p patches flattened to C*p*p values (channel-major,
    the order of a Conv2d weight), a Linear `patch_embed` (the first layer), class token, learned position
    embedding, `depth` pre-norm encoder layers, final LayerNorm, Linear `head` on the class token.

    patch_norm: "none"; "patch" standardises each flattened patch before `patch_embed`; "dual" is DualPatchNorm
    (LayerNorm before and after `patch_embed`, Kumar et al. 2023).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        image_size: int = 32,
        in_channels: int = 3,
        patch_size: int = 8,
        dim: int = 384,
        depth: int = 7,
        heads: int = 12,
        mlp_dim: int = 1536,
        dropout: float = 0.0,
        patch_norm: str = "none",
    ) -> None:
        super().__init__()
        if image_size % patch_size:
            raise ValueError(f"image_size ({image_size}) must be a multiple of patch_size ({patch_size})")
        if dim % heads:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        if patch_norm not in ("none", "patch", "dual"):
            raise ValueError(f"patch_norm must be 'none', 'patch' or 'dual', got {patch_norm!r}")
        self.patch_size, self.patch_norm = patch_size, patch_norm
        self.input_size = (in_channels, image_size, image_size)  # lets trainact.apply trace a forward pass
        patch_dim = in_channels * patch_size * patch_size
        num_tokens = (image_size // patch_size) ** 2 + 1
        self.pre_norm = {"none": nn.Identity(), "patch": PatchStandardize(), "dual": nn.LayerNorm(patch_dim)}[patch_norm]
        self.patch_embed = nn.Linear(patch_dim, dim)  # the first Linear/Conv registered: TrAct's first layer
        self.post_norm = nn.LayerNorm(dim) if patch_norm == "dual" else nn.Identity()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_tokens, dim))
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(*(EncoderLayer(dim, heads, mlp_dim, dropout) for _ in range(depth)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, T, C*p*p)."""
        b, c, h, w = x.shape
        p = self.patch_size
        x = x.view(b, c, h // p, p, w // p, p)  # (B, C, H/p, p, W/p, p)
        x = x.permute(0, 2, 4, 1, 3, 5)  # (B, H/p, W/p, C, p, p)
        return x.reshape(b, (h // p) * (w // p), c * p * p)  # (B, T, C*p*p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.post_norm(self.patch_embed(self.pre_norm(self.patchify(x))))  # (B, T, D)
        cls = self.cls_token.expand(tokens.shape[0], -1, -1)  # (B, 1, D)
        x = self.drop(torch.cat([cls, tokens], dim=1) + self.pos_embed)  # (B, T + 1, D)
        x = self.norm(self.blocks(x))  # (B, T + 1, D)
        return self.head(x[:, 0])  # (B, num_classes)


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
    return _torchvision_model(name, num_classes, image_size, in_channels, {**defaults, **options})


def _timm(name: str, num_classes: int, image_size: int, in_channels: int, options: dict, **defaults) -> nn.Module:
    return _timm_model(name, num_classes, image_size, in_channels, {**defaults, **options})


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


def _cifar_efficientnet_b0(num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
    net = _timm("efficientnet_b0", num_classes, image_size, in_channels, options)
    _cifar_stride1(net, "conv_stem")
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


_CIFAR = {
    "cifar:tv:vgg11_bn": _cifar_vgg11_bn,
    "cifar:tv:densenet121-k12": _cifar_densenet121_k12,
    "cifar:tv:mobilenet_v2": _cifar_mobilenet_v2,
    "cifar:tv:shufflenet_v2_x1_0": _cifar_shufflenet_v2_x1_0,
    "cifar:tv:squeezenet1_1-bn": _cifar_squeezenet1_1_bn,
    "cifar:tv:googlenet": _cifar_googlenet,
    "cifar:timm:efficientnet_b0": _cifar_efficientnet_b0,
    "cifar:timm:convnext_atto": _cifar_convnext_atto,
    "cifar:timm:deit_tiny_patch16_224": _cifar_deit_tiny,
    "cifar:timm:swin_tiny_patch4_window7_224": _cifar_swin_tiny,
}


# ----------------------------------------------------------------------------------------------------
# building by name


def _check_options(name: str, options: dict, accepted: dict) -> dict:
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for model {name!r}; accepted: {accepted} (the defaults)")
    merged = {**accepted, **options}
    for key, value in merged.items():
        default = accepted[key]
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ValueError(f"option {key} of model {name!r} must be a number in [0, 1), got {value!r}")
        elif isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"option {key} of model {name!r} must be an int >= 1, got {value!r}")
    return merged


def _unknown_name(name: str, known: list[str], what: str, listing: str) -> ValueError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f" (did you mean {close}?)" if close else ""
    return ValueError(f"unknown {what} {name!r}{hint}; {listing} lists the {len(known)} available")


def build_model(name: str, *, num_classes: int, image_size: int = 32, in_channels: int = 3, **options) -> nn.Module:
    """A freshly initialised model (never pretrained weights). See `available_models()` for the names.

    resnet18/34/50 take `width` (base channels, default 64); vit, vit-patchnorm and vit-dualpatchnorm take
    patch_size=8, dim=384, depth=7, heads=12, mlp_dim=4*dim (1536), dropout=0.0; `tv:<name>` passes options to
    torchvision.models.get_model, `timm:<name>` to timm.create_model, `cifar:<name>` (the CIFAR variants of the
    module docstring's table) to the library's builder.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be an int >= 1, got {image_size!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
    if name in _RESNETS:
        block, layers = _RESNETS[name]
        opts = _check_options(name, options, _RESNET_OPTIONS)
        return CifarResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **opts)
    if name in _VITS:
        opts = _check_options(name, {"mlp_dim": 4 * options.get("dim", _VIT_OPTIONS["dim"]), **options}, _VIT_OPTIONS)
        return ViT(num_classes=num_classes, image_size=image_size, in_channels=in_channels, patch_norm=_VITS[name], **opts)
    if name in _CIFAR:
        net = _CIFAR[name](num_classes, image_size, in_channels, options)
        net.input_size = (in_channels, image_size, image_size)  # what trainact.apply's trace tries first
        return net
    if name.startswith("tv:"):
        return _torchvision_model(name[3:], num_classes, image_size, in_channels, options)
    if name.startswith("timm:"):
        return _timm_model(name[5:], num_classes, image_size, in_channels, options)
    close = difflib.get_close_matches(name, available_models(), n=3)
    hint = f" (did you mean {close}?)" if close else ""
    raise ValueError(f"unknown model {name!r}{hint}; available: {available_models()}")


def _torchvision_model(name: str, num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
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


def _timm_model(name: str, num_classes: int, image_size: int, in_channels: int, options: dict) -> nn.Module:
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
