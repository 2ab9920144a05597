"""The streaming loader: an image folder or archive decoded per batch by DataLoader workers, never held in memory.

`StreamDataset` is the file index of a set (from its reader, readers.py) plus a `Storage` that reads any file in
any process (storage.py); `StreamLoader` yields what BatchLoader yields from the same pixels: the same decoding
(images.py), crop and flip as uint8, then BatchLoader's normalisation on the device, so evaluation inputs match
the in-memory loader's bit for bit. Training shards with DistributedSampler (seeded, drop_last); evaluation gives
rank r the images r, r + world_size, ... (each counted once). Augmentation draws come from (seed, epoch, image
index), so batches do not depend on the number of workers or on a resume. Channel statistics are exact over a
seeded sample of at most STATS_SAMPLE train images (all of them in smaller sets), cached as JSON in the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from torch.utils.data import Dataset as TorchDataset

from trainact.harness.config import CONTRAST_OFF

from .contrast import contrast_factors, scale_contrast
from .dataset import DataError, Dataset, channel_histograms, log, mix_seed, stats_from_histograms
from .images import centre_offset, decode, open_image, resize_size
from .loader import check_loader_args, check_train_contrast, input_affine
from .readers import Index
from .storage import Storage

STATS_SAMPLE = 50_000  # train images the streamed set's channel statistics are computed from (all, if fewer)
STATS_VERSION = 1


@dataclass(kw_only=True)
class StreamDataset(Dataset):
    """An image folder or archive as an index (file names and labels) plus a storage to read them from; see
    `load_dataset` and StreamLoader."""

    train_files: list[str]
    test_files: list[str]
    storage: Storage  # picklable: opens its handles per process
    stored_size: tuple[int, int]  # (H, W) of a decoded train image: (S, S) with image_size
    stats_key: str  # identifies the source's contents, for the statistics cache
    cache_root: str
    workers: int = 0  # processes for the statistics of a subset

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, *self.stored_size)  # always RGB

    def with_train(self, chosen: torch.Tensor) -> StreamDataset:
        files = [self.train_files[i] for i in chosen.tolist()]
        mean, std = _stream_stats(files, self.storage, self.image_size, self.stored_size, self.source,
                                  self.stats_key, Path(self.cache_root), self.workers)
        return replace(self, train_files=files, train_labels=self.train_labels[chosen].clone(), mean=mean, std=std)


def stream_dataset(storage: Storage, index: Index, *, where: str, name: str, image_size: Optional[int], key: str,
                   cache_root: Path, stem: str, workers: int, note: Optional[str]) -> StreamDataset:
    """The StreamDataset of the files `index` lists in `storage` (called by `load_dataset`)."""
    train_files, test_files = [f for f, _ in index.train], [f for f, _ in index.test]
    storage = storage.random_access(train_files + test_files, cache_root / f"{stem}-{key[:24]}.files")
    if image_size is not None:
        stored = (resize_size(image_size),) * 2
    else:
        im, _ = open_image(storage.read(train_files[0]), train_files[0], where, rgb=True)
        stored = (im.size[1], im.size[0])
    mean, std = _stream_stats(train_files, storage, image_size, stored, where, key, cache_root, workers)
    return StreamDataset(
        train_files=train_files, train_labels=torch.tensor([lab for _, lab in index.train], dtype=torch.int64),
        test_files=test_files, test_labels=torch.tensor([lab for _, lab in index.test], dtype=torch.int64),
        classes=index.classes, mean=mean, std=std, name=name, source=where, storage=storage, image_size=image_size,
        stored_size=stored, stats_key=key, cache_root=str(cache_root), workers=workers, note=note)


def _decode(storage, name: str, where: str, image_size: Optional[int], stored: tuple[int, int], split: str):
    """uint8 (3, H, W) of one file in `split`'s geometry."""
    px, _ = decode(storage.read(name), name, where, image_size=image_size, split=split, rgb=True)  # (H, W, 3)
    if image_size is None and tuple(px.shape[:2]) != tuple(stored):
        raise DataError(f"all images must share one size: {name} is {px.shape[1]}x{px.shape[0]} but the first "
                        f"train image is {stored[1]}x{stored[0]} (in {where}); --image-size N resizes them")
    return px.permute(2, 0, 1).contiguous()  # (3, H, W)


class _Images(TorchDataset):
    """Item (index, epoch) -> (uint8 (3, H, W), label): decoded, then (train) cropped and flipped; with contrast
    factors (one per file), float32 (3, H, W) in pixel units, its contrast scaled before the crop."""

    def __init__(self, files: list[str], labels: torch.Tensor, storage, *, where: str, image_size: Optional[int],
                 stored: tuple[int, int], split: str, train: bool, augment: bool, crop_padding: int, seed: int,
                 contrast: Optional[torch.Tensor] = None) -> None:
        self.files, self.labels, self.storage, self.where = files, labels.tolist(), storage, where
        self.image_size, self.stored, self.split = image_size, stored, split
        self.train, self.augment, self.crop_padding, self.seed = train, augment, crop_padding, seed
        self.contrast = contrast

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, epoch = key
        x = _decode(self.storage, self.files[i], self.where, self.image_size, self.stored, self.split)
        if self.contrast is not None:
            x = scale_contrast(x, self.contrast[i])  # float32 (3, H, W), in pixel units
        if self.train:
            x = self._transform(x, i, epoch)
        return x, self.labels[i]

    def _transform(self, x: torch.Tensor, i: int, epoch: int) -> torch.Tensor:
        """BatchLoader's crop and flip for one image, drawn from (seed, epoch, index)."""
        c, h, w = x.shape
        out = self.image_size or h
        out_w = self.image_size or w
        if not self.augment:
            if self.image_size is None:
                return x
            top, left = centre_offset(h, out), centre_offset(w, out_w)
            return x[:, top : top + out, left : left + out_w].contiguous()
        g = torch.Generator().manual_seed(mix_seed(self.seed, "stream", int(epoch), int(i)))
        p = self.crop_padding
        dy = int(torch.randint(0, h + 2 * p - out + 1, (1,), generator=g))
        dx = int(torch.randint(0, w + 2 * p - out_w + 1, (1,), generator=g))
        flip = bool(torch.rand(1, generator=g) < 0.5)
        if p:
            x = F.pad(x, (p, p, p, p))  # (3, H + 2p, W + 2p)
        x = x[:, dy : dy + out, dx : dx + out_w]  # (3, out, out_w)
        return (x.flip(2) if flip else x).contiguous()


class _Keyed(Sampler):
    """Yields (index, epoch) for the indices of `base`, so that workers know the epoch without shared state."""

    def __init__(self, base) -> None:
        self.base, self.epoch = base, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if hasattr(self.base, "set_epoch"):
            self.base.set_epoch(self.epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch
        return ((int(i), epoch) for i in self.base)

    def __len__(self) -> int:
        return len(self.base)


class StreamLoader:
    """Batches of a StreamDataset split, decoded by `workers` DataLoader processes (0: in this process); the
    interface of BatchLoader (`epoch(e)`, `len`, `num_images`, `example`). See the module docstring for the
    sampling and the augmentation.

    batch_size is per rank. train=True: DistributedSampler(shuffle, seed=seed, drop_last), augmentation as
    BatchLoader's (crop_padding without image_size, a crop of the stored square with it). train=False: images
    rank, rank + world_size, ... in file order, unaugmented (each test image on exactly one rank).
    contrast_spread C < 1 (training only): each image's contrast scaled as BatchLoader does, by the same factors
    (per seed and index into the split's files), before the crop.
    """

    def __init__(
        self,
        dataset: StreamDataset,
        *,
        split: str,
        batch_size: int,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        input_range: str = "standardized",
        augment: bool = True,
        crop_padding: int = 4,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        workers: int = 0,
        rank: int = 0,
        world_size: int = 1,
        contrast_spread: float = CONTRAST_OFF,
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        check_loader_args(batch_size=batch_size, input_range=input_range, mean=mean, std=std, channels=3,
                          crop_padding=crop_padding, dtype=dtype, rank=rank, world_size=world_size)
        check_train_contrast(contrast_spread, train)
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0 (--workers), got {workers!r}")
        files, labels = ((dataset.train_files, dataset.train_labels) if split == "train"
                         else (dataset.test_files, dataset.test_labels))
        if len(files) < (world_size if train else 1):
            raise ValueError(f"the {split} split of {dataset.source} has {len(files)} images, fewer than the "
                             f"{world_size} processes")
        self.train, self.batch_size, self.dtype = bool(train), batch_size, dtype
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.device = torch.device(device)
        self._images = _Images(files, labels, dataset.storage, where=dataset.source, image_size=dataset.image_size,
                               stored=dataset.stored_size, split=split, train=self.train, augment=augment,
                               crop_padding=0 if dataset.image_size is not None else crop_padding, seed=seed,
                               contrast=None if contrast_spread == CONTRAST_OFF else
                               contrast_factors(len(files), contrast_spread, seed))
        if self.train:
            base = DistributedSampler(self._images, num_replicas=world_size, rank=rank, shuffle=True, seed=seed,
                                      drop_last=True)
        else:
            base = range(rank, len(files), world_size)  # unpadded: every image on exactly one rank
        self._sampler = _Keyed(base)
        self._loader = DataLoader(self._images, batch_size=batch_size, sampler=self._sampler, num_workers=workers,
                                  pin_memory=self.device.type == "cuda", drop_last=False)
        self._scale, self._shift = input_affine(mean, std, input_range, self.device)

    @property
    def num_images(self) -> int:
        return len(self._images)

    def __len__(self) -> int:
        return len(self._loader)

    def _to_input(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, non_blocking=True)  # uint8 (B, 3, H, W)
        return (x.to(torch.float32) * self._scale + self._shift).to(self.dtype)

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs (B, 3, H, W) `dtype`, labels (B,) int64) on `device` for this rank."""
        self._sampler.set_epoch(epoch)
        for x, y in _worker_batches(self._loader):
            yield self._to_input(x), y.to(self.device, non_blocking=True)

    def example(self, n: int = 2) -> torch.Tensor:
        """The first n inputs of epoch 0, decoded in this process (to trace a model with, no workers started)."""
        self._sampler.set_epoch(0)
        keys = [k for k, _ in zip(self._sampler, range(n))]
        return self._to_input(torch.stack([self._images[k][0] for k in keys]))


def _worker_batches(loader: DataLoader) -> Iterator:
    """A DataLoader's batches; a DataError raised in a worker process arrives as its own one-line message, as with
    no workers (DataLoader re-raises it with the worker's whole traceback in the message)."""
    try:
        yield from loader
    except DataError as err:
        text = str(err).rstrip()
        if "Original Traceback" not in text:
            raise
        raise DataError(text.splitlines()[-1].split("DataError: ", 1)[-1]) from None


# ----------------------------------------------------------------------------------------------------
# channel statistics


class _Histograms(TorchDataset):
    def __init__(self, files, storage, where, image_size, stored) -> None:
        self.files, self.storage, self.where, self.image_size, self.stored = files, storage, where, image_size, stored

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        x = _decode(self.storage, self.files[i], self.where, self.image_size, self.stored, "train")
        return channel_histograms(x)  # (3, 256)


def _sum_histograms(batch: list) -> torch.Tensor:
    return torch.stack(batch).sum(0)  # (3, 256)


def _stream_stats(files: list[str], storage, image_size, stored, where: str, key: str, cache_root: Path,
                  workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std of the stored train images of a seeded sample (all of them up to STATS_SAMPLE),
    cached in cache_root by the source's key, the geometry and the sample's file names."""
    n = len(files)
    if n > STATS_SAMPLE:
        g = torch.Generator().manual_seed(mix_seed(0, "stream-stats"))
        sample = [files[i] for i in torch.randperm(n, generator=g)[:STATS_SAMPLE].sort().values.tolist()]
    else:
        sample = list(files)
    digest = hashlib.sha256(repr([STATS_VERSION, key, image_size, tuple(stored), sample]).encode()).hexdigest()
    path = Path(cache_root) / f"stats-{digest[:24]}.json"
    try:
        d = json.loads(path.read_text())
        return tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.info("channel statistics of %d train images of %s (cached in %s)", len(sample), where, path)
    loader = DataLoader(_Histograms(sample, storage, where, image_size, stored), batch_size=64, num_workers=workers,
                        collate_fn=_sum_histograms)
    hist = torch.zeros(3, 256, dtype=torch.int64)
    for h in _worker_batches(loader):
        hist += h
    mean, std = stats_from_histograms(hist)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump({"mean": list(mean), "std": list(std), "images": len(sample), "source": where}, f)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not write the statistics cache %s: %s", path, e)
    return mean, std
