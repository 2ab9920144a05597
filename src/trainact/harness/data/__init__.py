"""Datasets for the harness: readers, a decoded-array cache, a synthetic set, and an in-memory loader.

    from trainact.harness.data import load_dataset, BatchLoader
    ds = load_dataset("../shared/data/cifar10-jpeg.tar.gz")        # decoded once, then cached
    ds = load_dataset(None, synthetic={"seed": 0})                 # built-in synthetic set, no files
    train = BatchLoader(ds.train_images, ds.train_labels, batch_size=128, train=True,
                        mean=ds.mean, std=ds.std, device="cuda", seed=0)
    for epoch in range(epochs):
        for x, y in train.epoch(epoch):                            # (B, C, H, W) float, (B,) int64
            ...

Understood sources: a CIFAR-10 / CIFAR-100 python folder (`cifar-10-batches-py/`, `cifar-100-python/`),
an image-folder tree `train/<class>/*` + `test/<class>/*` (or `val/<class>/*`), either as a directory or
inside a .tar / .tar.gz / .tgz / .zip archive (at its top or under one top-level folder).

`--image-size N` resizes image folders (images.py: the ImageNet convention), `--val-fraction F` holds out part of a
train-only folder, and a set too large for memory is streamed from disk by `StreamLoader` (stream.py):
    ds = load_dataset("imagenet/", image_size=224, loader="auto")  # a StreamDataset over 8 GiB decoded

Pillow (image folders) and numpy (CIFAR pickles) are imported only when needed.
"""

from __future__ import annotations
from .dataset import INPUT_RANGES as INPUT_RANGES
from .dataset import DataError as DataError
from .dataset import ImageDataset as ImageDataset
from .loader import BatchLoader as BatchLoader
from .loader import input_affine as input_affine
from .loader import measure_loader_throughput as measure_loader_throughput
from .sources import load_dataset as load_dataset
from .stream import StreamDataset as StreamDataset
from .stream import StreamLoader as StreamLoader
from .synthetic import synthetic_dataset as synthetic_dataset

__all__ = [
    "DataError",
    "ImageDataset",
    "load_dataset",
    "synthetic_dataset",
    "BatchLoader",
    "StreamDataset",
    "StreamLoader",
    "measure_loader_throughput",
    "input_affine",
    "INPUT_RANGES",
]
