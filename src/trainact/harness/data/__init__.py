"""Datasets for the harness: a path in, an ImageDataset (in memory) or a StreamDataset (read per batch) out.

    ds = load_dataset("cifar10-jpeg.tar.gz", image_size=None)   # decoded once, then cached; or synthetic={...}
    train = BatchLoader(ds.train_images, ds.train_labels, batch_size=128, train=True, mean=ds.mean, std=ds.std,
                        image_size=ds.image_size, device="cuda", seed=0)   # StreamLoader(ds, ...) for a StreamDataset
    for x, y in train.epoch(epoch): ...                           # (B, C, H, W) float, (B,) int64

Modules: sources (load_dataset), formats (the registry of readers: cifar, imagefolder; readers.py is their
interface), storage (directories and archives), cache, dataset (the two datasets' base), loader, stream, images
(decoding and the --image-size geometry), synthetic. Pillow and numpy are imported only when needed.
"""

from __future__ import annotations
from .dataset import INPUT_RANGES as INPUT_RANGES
from .dataset import Dataset as Dataset
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
    "Dataset",
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
