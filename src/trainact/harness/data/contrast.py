"""Per-image contrast scaling of the training images (`--contrast-spread C`), to measure how TrAct's gain depends
on how much the images' contrast varies: the first layer's plain weight gradient is proportional to the input
pixels, so a low-contrast image moves it less; TrAct steps the pre-activations instead, which the paper argues
takes that dependence away.

Training image i of a run with seed s is scaled by a factor f = C^u, u = `mix_seed(s, "contrast", i)` / 2^63 in
[0, 1): log-uniform on [C, 1], fixed per image and seed (the same in every epoch, and in the baseline and TrAct
runs of one seed) and drawn from no random generator, so every other random stream is what it is without it and
C = 1 (off) leaves a run bit for bit as it was. The scaling keeps the image's brightness, the mean m over all its
channels and pixels (as stored, before crop and flip): x' = m + f (x - m), in pixel units [0, 255], before the
standardisation. x' stays within the image's own [min, max] (nothing is clipped) and its mean is m (up to float32
rounding). Test images are never scaled; the standardisation keeps the unscaled training set's per-channel mean
and std, those the test images are standardised with.
"""

from __future__ import annotations

import math

import torch

from trainact.harness.config import check_contrast_spread

from .dataset import mix_seed


def contrast_factors(n: int, spread: float, seed: int) -> torch.Tensor:
    """float32 (n,): the contrast factor of training images 0 .. n-1 of a run with `seed` (module docstring)."""
    check_contrast_spread("contrast_spread", spread)
    u = torch.tensor([mix_seed(seed, "contrast", i) for i in range(n)], dtype=torch.float64) / 2.0**63
    return torch.exp(u * math.log(spread)).to(torch.float32)


def scale_contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    """float32 images (..., C, H, W) = m + f (x - m) of uint8 images (..., C, H, W) and their factors (...),
    m each image's mean over its channels and pixels (exact: an integer sum)."""
    c, h, w = images.shape[-3:]
    total = images.reshape(*images.shape[:-3], -1).sum(-1, dtype=torch.int64)  # (...)
    mean = (total.to(torch.float64) / (c * h * w)).to(torch.float32)[..., None, None, None]
    return mean + factors.to(images.device, torch.float32)[..., None, None, None] * (images.to(torch.float32) - mean)
