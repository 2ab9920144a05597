"""The dataset objects and what every part of the data layer shares.

`Dataset` is the base of the in-memory `ImageDataset` (here) and the streamed `StreamDataset` (stream.py): labels,
classes, per-channel statistics, `image_size` (--image-size N: the train split is stored as S x S squares that the
loader crops to N x N, images.py; None: images are fed as stored) and a class-balanced `subset`.
Also here: `DataError`, `INPUT_RANGES`, `mix_seed` (every seeded draw of the data layer) and exact channel
statistics from level histograms.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, replace
from typing import Optional

import torch

log = logging.getLogger(__name__)

INPUT_RANGES = ("standardized", "unit", "byte")


class DataError(ValueError):
    """A dataset could not be found, recognised or decoded; the message says which file and why."""


def mix_seed(seed: int, *salt: object) -> int:
    """A 63-bit generator seed from (seed, salt...), stable across processes and platforms."""
    return int.from_bytes(hashlib.sha256(repr((int(seed), *salt)).encode()).digest()[:8], "little") >> 1


def channel_histograms(images: torch.Tensor) -> torch.Tensor:
    """Per-channel counts of each uint8 level, (C, 256) int64, of images (N, C, H, W) or one image (C, H, W)."""
    images = images if images.dim() == 4 else images.unsqueeze(0)
    return torch.stack([torch.bincount(images[:, c].reshape(-1), minlength=256) for c in range(images.shape[1])])


def stats_from_histograms(hist: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std (population) in [0, 1] units from (C, 256) level counts."""
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(hist.shape[0]):
        h = hist[c].to(torch.float64)  # (256,)
        n = h.sum()
        mean = (h * levels).sum() / n
        var = (h * (levels - mean) ** 2).sum() / n
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std (population) of uint8 images (N, C, H, W) in [0, 1] units, via histograms."""
    return stats_from_histograms(channel_histograms(images))


def balanced_subset(labels: torch.Tensor, num_classes: int, train_size: int, *, seed: int) -> torch.Tensor:
    """Sorted indices of a seeded random subset of `labels`, balanced across classes (counts differ by at most
    one while every class still has images left)."""
    n = labels.shape[0]
    if not isinstance(train_size, int) or not 1 <= train_size <= n:
        raise DataError(f"subset train_size must be an int in [1, {n}] (the train split's size), got {train_size!r}")
    g = torch.Generator().manual_seed(mix_seed(seed, "subset"))
    # each image's rank within its class in a random order; sorting by rank + U[0, 1) then takes one
    # image per class in turn (classes in random order), so the subset is balanced
    perm = torch.randperm(n, generator=g)
    rank = torch.empty(n, dtype=torch.float64)
    for c in range(num_classes):
        members = perm[labels[perm] == c]
        rank[members] = torch.arange(len(members), dtype=torch.float64)
    key = rank + torch.rand(n, generator=g, dtype=torch.float64)
    return torch.argsort(key)[:train_size].sort().values


@dataclass(kw_only=True)
class Dataset:
    """What both dataset kinds have; a subclass says how its train images are stored (`image_shape`) and how a
    subset of them is taken (`with_train`)."""

    train_labels: torch.Tensor  # int64 (N,)
    test_labels: torch.Tensor  # int64 (M,)
    classes: list[str]
    mean: tuple[float, ...]  # per-channel mean of the train split, [0, 1] units
    std: tuple[float, ...]  # per-channel std of the train split, [0, 1] units
    name: str
    source: str
    image_size: Optional[int] = None  # --image-size N, or None: the loader feeds the images at their stored size
    note: Optional[str] = None  # why loader="auto" chose to stream, for the log

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_train(self) -> int:
        return int(self.train_labels.shape[0])

    @property
    def num_test(self) -> int:
        return int(self.test_labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the stored train images."""
        raise NotImplementedError

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the loader feeds the model."""
        c, h, w = self.image_shape
        return (c, h, w) if self.image_size is None else (c, self.image_size, self.image_size)

    def subset(self, train_size: int, *, seed: int) -> "Dataset":
        """A seeded random subset of the train split, balanced across classes (`balanced_subset`: the same images
        for the same labels in either kind); the test split is unchanged; mean/std are recomputed."""
        chosen = balanced_subset(self.train_labels, len(self.classes), train_size, seed=seed)
        return self.with_train(chosen)

    def with_train(self, chosen: torch.Tensor) -> "Dataset":
        """A copy holding only the train images at the sorted indices `chosen`, with their statistics."""
        raise NotImplementedError


@dataclass(kw_only=True)
class ImageDataset(Dataset):
    """A classification set held in memory as uint8 (N, C, H, W) tensors; see `load_dataset`."""

    train_images: torch.Tensor  # uint8 (N, C, H, W), contiguous
    test_images: torch.Tensor  # uint8 (M, C, H, W)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        c, h, w = self.train_images.shape[1:]
        return (int(c), int(h), int(w))

    def with_train(self, chosen: torch.Tensor) -> ImageDataset:
        images = self.train_images[chosen].contiguous()
        mean, std = channel_stats(images)
        return replace(self, train_images=images, train_labels=self.train_labels[chosen].clone(), mean=mean, std=std)
