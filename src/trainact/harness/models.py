"""Models for the harness, built by name: the CIFAR ResNets and ViT-CIFAR here, torchvision/timm by prefix.

    from trainact.harness.models import build_model, available_models
    net = build_model("resnet18", num_classes=10)                       # CIFAR ResNet-18 (first layer: conv1)
    net = build_model("resnet18", num_classes=10, width=16)             # CPU-sized
    net = build_model("vit", num_classes=10, depth=7, heads=12)         # ViT-CIFAR (first layer: patch_embed)
    net = build_model("tv:resnet18", num_classes=10)                    # torchvision, random init
    net = build_model("timm:vit_tiny_patch16_224", num_classes=10, image_size=32, patch_size=8)

    net = build_model("cifar:tv:mobilenet_v2", num_classes=10)          # torchvision's, stem adapted to 32 px

No weights are ever downloaded: every model starts from a random initialisation.

CIFAR variants of torchvision/timm models (`cifar:<name>`, the zoo's) and the builders of `tv:`/`timm:` names
are in harness/library_models.py, with the table of what each variant changes and why.
"""

from __future__ import annotations

import difflib
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from trainact.harness.library_models import CIFAR_MODELS, timm_model, torchvision_model

__all__ = ["build_model", "available_models", "CifarResNet", "BasicBlock", "Bottleneck", "ViT"]

_RESNETS = {  # name -> (block, blocks per stage, the 3x3 stem's stride, the pool after the stem: None/"max"/"avg")
    "resnet18": ("basic", (2, 2, 2, 2), 1, None),
    "resnet34": ("basic", (3, 4, 6, 3), 1, None),
    "resnet50": ("bottleneck", (3, 4, 6, 3), 1, None),
    # the TrAct authors' CIFAR ResNet-18 (torch-tract's examples/resnet_cifar10.py): the 3x3 stride-1 stem is
    # followed by a 3x3 stride-2 max-pool (padding 1), so the stages see 16x16 maps: a quarter of the compute
    "resnet18-maxpool": ("basic", (2, 2, 2, 2), 1, "max"),
    # two stems that also give the stages 16x16 maps, to tell the halved resolution from the max-pool's sparse
    # gradient (each pooled value's gradient goes to one stem output): a stride-2 stem (padding 1) with no pool,
    # and the stride-1 stem followed by a 2x2 stride-2 average pool (every stem output gets a quarter)
    "resnet18-s2": ("basic", (2, 2, 2, 2), 2, None),
    "resnet18-avgpool": ("basic", (2, 2, 2, 2), 1, "avg"),
}
# the pools after the stem: each halves the stem's output maps (32x32 -> 16x16 on CIFAR)
_STEM_POOLS = {"max": lambda: nn.MaxPool2d(3, stride=2, padding=1), "avg": lambda: nn.AvgPool2d(2, stride=2)}
_VITS = {"vit": "none", "vit-patchnorm": "patch", "vit-dualpatchnorm": "dual"}
_RESNET_OPTIONS = {"width": 64}
_VIT_OPTIONS = {"patch_size": 8, "dim": 384, "depth": 7, "heads": 12, "mlp_dim": 1536, "dropout": 0.0}


def available_models() -> list[str]:
    """The names `build_model` understands (`tv:<name>` and `timm:<name>` take any torchvision/timm model)."""
    return [*_RESNETS, *_VITS, *CIFAR_MODELS, "tv:<name>", "timm:<name>"]


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
    """ResNet for small images: 3x3 stem `conv1` (the first layer; stride `stem_stride`, 1 by default), BN, ReLU,
    then `stem_pool`: None (no pool), "max" (3x3 stride-2 max-pool, padding 1: the TrAct authors' variant) or
    "avg" (2x2 stride-2 average pool); four stages of widths w, 2w, 4w, 8w with strides 1, 2, 2, 2; global average
    pool; `fc`."""

    def __init__(
        self, block: str, layers: tuple[int, ...], *, num_classes: int, in_channels: int = 3, width: int = 64,
        stem_stride: int = 1, stem_pool: Optional[str] = None,
    ) -> None:
        super().__init__()
        if stem_pool is not None and stem_pool not in _STEM_POOLS:
            raise ValueError(f"stem_pool must be None or one of {', '.join(_STEM_POOLS)}, got {stem_pool!r}")
        if stem_stride not in (1, 2):
            raise ValueError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        # parameter-free, so the state_dict keys are those of every stem
        self.stem_pool = nn.Identity() if stem_pool is None else _STEM_POOLS[stem_pool]()
        block_cls = {"basic": BasicBlock, "bottleneck": Bottleneck}[block]
        self.conv1 = nn.Conv2d(in_channels, width, 3, stride=stem_stride, padding=1, bias=False)
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
        x = self.stem_pool(F.relu(self.bn1(self.conv1(x))))  # (B, w, H, W), or H/2 x W/2 (stride 2 or a pool)
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


def build_model(name: str, *, num_classes: int, image_size: int = 32, in_channels: int = 3, **options) -> nn.Module:
    """A freshly initialised model (never pretrained weights). See `available_models()` for the names.

    The CIFAR ResNets (resnet18/34/50 and the resnet18 stems of `_RESNETS`) take `width` (base channels, default
    64); vit, vit-patchnorm and vit-dualpatchnorm take patch_size=8, dim=384, depth=7, heads=12, mlp_dim=4*dim
    (1536), dropout=0.0; `tv:<name>` passes options to torchvision.models.get_model, `timm:<name>` to
    timm.create_model, `cifar:<name>` (the CIFAR variants of the module docstring's table) to the library's
    builder.
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    if not isinstance(image_size, int) or image_size < 1:
        raise ValueError(f"image_size must be an int >= 1, got {image_size!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ValueError(f"in_channels must be an int >= 1, got {in_channels!r}")
    if name in _RESNETS:
        block, layers, stem_stride, stem_pool = _RESNETS[name]
        opts = _check_options(name, options, _RESNET_OPTIONS)
        return CifarResNet(block, layers, num_classes=num_classes, in_channels=in_channels, stem_stride=stem_stride,
                           stem_pool=stem_pool, **opts)
    if name in _VITS:
        opts = _check_options(name, {"mlp_dim": 4 * options.get("dim", _VIT_OPTIONS["dim"]), **options}, _VIT_OPTIONS)
        return ViT(num_classes=num_classes, image_size=image_size, in_channels=in_channels, patch_norm=_VITS[name], **opts)
    if name in CIFAR_MODELS:
        net = CIFAR_MODELS[name](num_classes, image_size, in_channels, options)
        net.input_size = (in_channels, image_size, image_size)  # what trainact.apply's trace tries first
        return net
    if name.startswith("tv:"):
        return torchvision_model(name[3:], num_classes, image_size, in_channels, options)
    if name.startswith("timm:"):
        return timm_model(name[5:], num_classes, image_size, in_channels, options)
    close = difflib.get_close_matches(name, available_models(), n=3)
    hint = f" (did you mean {close}?)" if close else ""
    raise ValueError(f"unknown model {name!r}{hint}; available: {available_models()}")
