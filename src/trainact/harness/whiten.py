"""Patch-whitening initialisation of a first convolution, as in the CIFAR-10 speed-run code airbench.

TrAct whitens the first layer's *gradient* with the patch covariance; airbench instead builds the first layer's
*filters* from it (and freezes them). This module does the latter, so the two can be compared:

    sigma, rows = patch_covariance(conv, train_images)     # Σ = AᵀA / r over the layer's own patches
    e = whiten_(conv, train_images)                        # filters ± v_i / sqrt(e_i + eps), bias 0

* Σ = AᵀA / r is the uncentred second moment of the patch rows A (r rows, n = in_channels · prod(kernel)
  columns), cut with exactly the layer's geometry (kernel, stride, padding and padding mode, dilation) by
  `trainact.patches`: the matrix TrAct inverts, with λ = 0. It is accumulated in float64 over a seeded random
  sample of `num_images` images (all of them when there are fewer), drawn with a local generator.
* Σ = V diag(e) Vᵀ with e descending; the whitening filters are w_i = v_i / sqrt(e_i + eps), so that the
  outputs of the n filters on the sampled patches have covariance Wᵀ Σ W = diag(e / (e + eps)): the identity
  wherever e_i ≫ eps, and the directions of (almost) no variance are damped instead of blown up.
  Each v_i's sign is fixed (its largest-magnitude entry positive), so the result does not depend on the
  eigensolver's sign convention.
* eps = 5e-4 by default, in the units of Σ: for standardised inputs (per-channel mean 0, std 1) that is
  airbench's value on the same scale (its patches are standardised CIFAR-10 pixels too). Σ's trace is about n
  then, its eigenvalues range from about n/3 down to ~1e-4 for natural images.
* Filling `out_channels` filters from n eigen-filters: channel 2k holds w_k and channel 2k + 1 holds −w_k
  (airbench's ± pairs, so that a following ReLU keeps both signs of every whitened component), leading
  eigen-filters (largest eigenvalue) first. With out_channels < 2n only the first out_channels are used (the
  out_channels/2 leading pairs); with out_channels > 2n the sequence cycles: after all 2n come w_0, −w_0,
  w_1, ... again (a 64-channel 3x3 RGB stem: the 27 pairs, then the 5 leading pairs a second time). airbench
  itself uses exactly 2n channels laid out as [W; −W]: the same filters, in another channel order.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Optional

import torch
from torch import nn

from trainact.patches import adapter_of, gram

if TYPE_CHECKING:
    from trainact.harness.config import CompareConfig

__all__ = ["DEFAULT_EPS", "DEFAULT_NUM_IMAGES", "patch_covariance", "whitening_filters", "whiten_", "whiten_first_layer"]

DEFAULT_EPS = 5e-4  # airbench's eps, in the units of Σ (standardised inputs)
DEFAULT_NUM_IMAGES = 5000  # airbench's sample size
_CHUNK = 256  # images cut into patches at a time (memory stays bounded whatever num_images)


def _check_conv(conv: nn.Module) -> None:
    if not isinstance(conv, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        raise TypeError(f"patch whitening needs a Conv1d/Conv2d/Conv3d layer, got {type(conv).__name__}")
    if conv.groups != 1:
        raise ValueError(f"patch whitening needs groups=1, got groups={conv.groups} ({conv})")


def patch_covariance(
    conv: nn.Module,
    images: torch.Tensor,
    *,
    num_images: int = DEFAULT_NUM_IMAGES,
    seed: int = 0,
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> tuple[torch.Tensor, int]:
    """Σ = AᵀA / r (n, n) in float64 over the patches `conv` cuts from a sample of `images`, and r.

    images: (N, C, *spatial), any dtype. The sample is `num_images` of them, drawn without replacement by a
    `torch.Generator` seeded with `seed` (all N, in order, when num_images >= N); the global RNG is not used.
    Each chunk of the sample is moved to the layer's device and passed through `transform` (e.g. uint8 ->
    standardised float) before its patches are cut, then cast to float64.
    """
    _check_conv(conv)
    if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
        raise ValueError(f"num_images must be an integer >= 1, got {num_images!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    adapter = adapter_of(conv)
    if not isinstance(images, torch.Tensor) or images.dim() != adapter.spatial + 2:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise ValueError(f"images must be a batch (N, C, {', '.join('*' * adapter.spatial)}) for {conv}, got {got}")
    n_images = images.shape[0]
    if n_images == 0:
        raise ValueError(f"no images to whiten from: images has shape {tuple(images.shape)}")
    if num_images >= n_images:
        index = torch.arange(n_images)
    else:
        g = torch.Generator().manual_seed(seed)
        index = torch.randperm(n_images, generator=g)[:num_images].sort().values  # sorted: contiguous reads
    device = conv.weight.device
    total = torch.zeros(adapter.n, adapter.n, dtype=torch.float64, device=device)
    rows = 0
    for start in range(0, index.numel(), _CHUNK):
        x = images[index[start : start + _CHUNK].to(images.device)].to(device)  # (b, C, *spatial)
        if transform is not None:
            x = transform(x)
        if x.shape[1] != conv.in_channels:
            raise ValueError(f"images have {x.shape[1]} channels, {conv} takes {conv.in_channels}")
        part, r = gram(x.to(torch.float64), adapter, dtype=torch.float64)  # (1, n, n)
        total += part[0]
        rows += r
    if rows == 0:
        raise ValueError(f"images of size {tuple(images.shape[2:])} give no patches for {conv}")
    return total / rows, rows


def whitening_filters(sigma: torch.Tensor, eps: float = DEFAULT_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """(e, W): Σ's eigenvalues, descending (n,), and the eigen-filters w_i = v_i / sqrt(e_i + eps) as rows
    (n, n), in float64. Eigenvalues below 0 (rounding, for a singular Σ) count as 0 in the scaling."""
    _check_eps(eps)
    e, v = torch.linalg.eigh(sigma.to(torch.float64))  # ascending; columns of v are the eigenvectors
    e, v = e.flip(0), v.flip(1)  # largest first
    lead = v.abs().argmax(dim=0)  # (n,) the largest-magnitude entry of each eigenvector
    v = v * torch.sign(v[lead, torch.arange(v.shape[1], device=v.device)])  # ... made positive
    w = v.t() / (e.clamp_min(0) + eps).sqrt()[:, None]  # (n, n): row i is w_i
    return e, w


def _check_eps(eps) -> None:
    ok = isinstance(eps, (int, float)) and not isinstance(eps, bool) and math.isfinite(eps) and eps > 0
    if not ok:
        raise ValueError(f"eps must be a positive number, got {eps!r}")


def pair_layout(out_channels: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(eigen-filter index, sign) of each output channel: w_0, −w_0, w_1, −w_1, ..., cycling after 2n."""
    j = torch.arange(out_channels)
    return (j // 2) % n, 1.0 - 2.0 * (j % 2)


@torch.no_grad()
def whiten_(
    conv: nn.Module,
    images: torch.Tensor,
    *,
    eps: float = DEFAULT_EPS,
    num_images: int = DEFAULT_NUM_IMAGES,
    seed: int = 0,
    transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
) -> torch.Tensor:
    """Overwrite `conv`'s weight with ± patch-whitening filters of `images` and its bias (if any) with zeros.

    Channel 2k is w_k = v_k / sqrt(e_k + eps), channel 2k + 1 is −w_k, eigenvalues descending; fewer channels
    than 2n take the leading pairs, more cycle through the 2n again (see the module docstring). The sample,
    the device and `transform` are those of :func:`patch_covariance`; the global RNG state is untouched.
    Returns Σ's eigenvalues, descending, (n,) float64.
    """
    _check_conv(conv)
    _check_eps(eps)
    sigma, _ = patch_covariance(conv, images, num_images=num_images, seed=seed, transform=transform)
    e, w = whitening_filters(sigma, eps)  # (n,), (n, n)
    index, sign = pair_layout(conv.out_channels, w.shape[0])
    filters = w[index.to(w.device)] * sign.to(w)[:, None]  # (out, n)
    conv.weight.copy_(filters.view(conv.weight.shape))  # (out, C, *kernel): the patch column order
    if conv.bias is not None:
        conv.bias.zero_()
    return e


def whiten_first_layer(model: nn.Module, first: str, cfg: CompareConfig, dataset, *, seed: int) -> None:
    """airbench's first layer: patch-whitening filters (`trainact.harness.whiten.whiten_`) of a sample of the
    training images as the loader feeds them (`cfg.input_range`, no augmentation), sampled by `seed` (so the
    baseline and TrAct of a seed get the same filters); whiten-frozen then stops the weight's gradient."""
    from trainact.harness.data import ImageDataset, input_affine
    from trainact.harness.data.images import centre_offset

    if not isinstance(dataset, ImageDataset):
        raise ValueError(f"first_layer_init {cfg.first_layer_init!r} samples the training images in memory, but "
                         f"{dataset.source} is streamed from disk: use --loader memory")
    layer = model.get_submodule(first)
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) or layer.groups != 1:
        raise ValueError(f"first_layer_init {cfg.first_layer_init!r} needs a convolution (groups=1) as the first "
                         f"layer; {cfg.model}'s first layer {first!r} is {layer}")
    scale, shift = input_affine(dataset.mean, dataset.std, cfg.input_range, layer.weight.device)
    n = dataset.image_size

    def transform(x: torch.Tensor) -> torch.Tensor:  # the loader's arithmetic, in float32
        if n is not None:  # --image-size: the unaugmented loader's centre crop of the stored square
            top, left = centre_offset(x.shape[-2], n), centre_offset(x.shape[-1], n)
            x = x[..., top : top + n, left : left + n]
        return x.to(torch.float32) * scale + shift

    whiten_(layer, dataset.train_images, seed=seed, transform=transform)
    if cfg.first_layer_init == "whiten-frozen":
        layer.weight.requires_grad_(False)
