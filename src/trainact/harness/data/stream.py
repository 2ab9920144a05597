"""The streaming loader: an image folder or archive decoded per batch by DataLoader workers, never held in memory.

    ds = load_dataset("imagenet/", image_size=224, loader="stream", workers=8)   # a StreamDataset: files + labels
    train = StreamLoader(ds, split="train", batch_size=256, train=True, mean=ds.mean, std=ds.std,
                         device="cuda", seed=0, workers=8, rank=rank, world_size=world_size)
    for epoch in range(epochs):
        for x, y in train.epoch(epoch):   # (B, C, N, N) float on the device, (B,) int64; calls set_epoch itself
            ...

It yields what BatchLoader yields, from the same pixels: each file is decoded with Pillow by the same function as
the in-memory path (harness/data/images.py: `--image-size` resizing and centre crops), then cropped and flipped
as uint8, moved to the device (pinned memory and non_blocking copies on CUDA) and normalised there with
BatchLoader's arithmetic. So evaluation gives the in-memory loader's inputs bit for bit, and a model's test
accuracy is the same with either loader.

Order and sharding. Training uses torch's DistributedSampler (every rank a disjoint shard of one permutation,
seeded by the run seed, `set_epoch` every epoch, drop_last: the permutation's last n mod world_size images sit out
the epoch, a different few each epoch, so that the shards are disjoint and every rank takes the same number of
steps, as DDP needs; one process drops nothing). Evaluation uses an unpadded sharding (rank r takes images r,
r + world_size, ...), so every test image is counted exactly once when the counts are all-reduced.

Augmentation. Per image: a random crop (zero padding `crop_padding` without --image-size, like BatchLoader; a
random N x N window of the stored S x S square with it) and a horizontal flip with p = 0.5, drawn from a generator
seeded by (seed, epoch, image index). The draws therefore do not depend on the number of workers, on which worker
decodes an image or on how far an interrupted run got: a resumed run restarts its interrupted epoch from the
beginning (checkpoints are written once per epoch) and sees the same batches as an uninterrupted one. That is why
the crop and flip are a few lines of torch here rather than torchvision.transforms.v2: v2's RandomCrop and
RandomHorizontalFlip draw from each worker's global RNG (seeded by DataLoader per worker and per epoch), which
would tie the augmentation to --workers; the operations themselves are integer slicing and a flip, exact in any
library, so torchvision would add an optional dependency and no accuracy. Resizing happens in Pillow, as
torchvision does for PIL images.

Files. A directory is read file by file. A zip archive is opened once per process (each worker its own handle:
zip members are addressable by name). An uncompressed tar is read by offset (`os.pread` on a handle each process
opens itself, at the member offsets listed once in the main process). A compressed tar (.tar.gz, .tgz, bz2, xz)
cannot be read at random, so on first use its image files are extracted once into the cache directory
(`<cache>/<name>-<key>.files/`, written under a temporary name and renamed when complete) and read from there;
its listing still costs one decompression pass per process and run, so for ImageNet-sized data prefer a directory
or an uncompressed tar.

Channel statistics (for standardisation) are computed over the stored train images (the S x S squares with
--image-size, the images as stored without) of a seeded sample of at most STATS_SAMPLE of them (all of them in
smaller sets, which then have exactly the in-memory loader's statistics) and cached in the cache directory.
Images are always fed as RGB (a gray file becomes 3 equal channels), as by the in-memory loader. Without --image-size every image must have the first one's size, checked as it is decoded.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from .dataset import INPUT_RANGES, DataError, _mix_seed, _stats_from_histograms, balanced_subset, log
from .images import centre_offset, decode, open_image, resize_size
from .loader import input_affine

STATS_SAMPLE = 50_000  # train images the streamed set's channel statistics are computed from (all, if fewer)
_STATS_VERSION = 1

# ----------------------------------------------------------------------------------------------------
# reading files, in any process


class _DirReader:
    def __init__(self, root: str) -> None:
        self.root = root

    def read(self, name: str) -> bytes:
        path = os.path.join(self.root, name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise DataError(f"cannot read {path}: {e}") from e


class _ZipReader:
    """One ZipFile per process, opened on first use (a handle never crosses a fork)."""

    def __init__(self, path: str) -> None:
        self.path, self._zf, self._pid = path, None, None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_zf": None, "_pid": None}

    def read(self, name: str) -> bytes:
        if self._zf is None or self._pid != os.getpid():
            self._zf, self._pid = zipfile.ZipFile(self.path), os.getpid()
        try:
            return self._zf.read(name)
        except (zipfile.BadZipFile, OSError, RuntimeError, KeyError) as e:
            raise DataError(f"cannot read {name} in {self.path}: {e}") from e


class _TarReader:
    """An uncompressed tar read by member offset: one file descriptor per process, `os.pread` (no shared seek)."""

    def __init__(self, path: str, offsets: dict) -> None:
        self.path, self.offsets, self._fd, self._pid = path, offsets, None, None

    def __getstate__(self) -> dict:
        return {"path": self.path, "offsets": self.offsets, "_fd": None, "_pid": None}

    def read(self, name: str) -> bytes:
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        offset, size = self.offsets[name]
        data = os.pread(self._fd, size, offset)
        if len(data) != size:
            raise DataError(f"cannot read {name} in {self.path}: the archive ends after {len(data)} of {size} bytes")
        return data


def _extract(tree, names: list[str], dest: Path, where: str) -> None:
    """Write `names` of a compressed tar into dest (once: a temporary folder renamed when complete)."""
    if (dest / ".complete").is_file():
        return
    for name in names:
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", "..") for part in parts):
            raise DataError(f"refusing to extract {name!r} from {where}: the path would leave {dest}")
    log.info("extracting the images of %s once into %s (a compressed tar cannot be read at random)", where, dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".tmp-"))
    try:
        for name, data in tree.read(names):
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        (tmp / ".complete").write_text("")
        try:
            os.rename(tmp, dest)
        except OSError:  # another process finished first
            if not (dest / ".complete").is_file():
                raise
            shutil.rmtree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------------------
# the dataset object


@dataclass
class StreamDataset:
    """An image folder or archive as an index (file names and labels) plus a reader; see `load_dataset` and
    StreamLoader. Attributes mirror ImageDataset's where they make sense (classes, mean, std, name, source)."""

    train_files: list[str]
    train_labels: torch.Tensor  # int64 (N,)
    test_files: list[str]
    test_labels: torch.Tensor  # int64 (M,)
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    name: str
    source: str
    reader: object  # _DirReader | _ZipReader | _TarReader: picklable, opens its handles per process
    image_size: Optional[int]  # --image-size N, or None: every image has stored_size
    stored_size: tuple[int, int]  # (H, W) of a decoded train image: (S, S) with image_size
    stats_key: str  # identifies the source's contents, for the statistics cache
    cache_root: str
    workers: int = 0  # processes for the statistics of a subset
    note: Optional[str] = None  # why loader="auto" chose to stream, for the log

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_train(self) -> int:
        return len(self.train_files)

    @property
    def num_test(self) -> int:
        return len(self.test_files)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of what the loader feeds the model (always RGB)."""
        if self.image_size is not None:
            return (3, self.image_size, self.image_size)
        return (3, *self.stored_size)

    def subset(self, train_size: int, *, seed: int) -> StreamDataset:
        """ImageDataset.subset's choice of images (the same for the same labels); statistics recomputed."""
        chosen = balanced_subset(self.train_labels, len(self.classes), train_size, seed=seed)
        files = [self.train_files[i] for i in chosen.tolist()]
        mean, std = _stream_stats(files, self.reader, self.image_size, self.stored_size, self.source,
                                  self.stats_key, Path(self.cache_root), self.workers)
        return replace(self, train_files=files, train_labels=self.train_labels[chosen].clone(), mean=mean, std=std)


def stream_dataset(p: Path, tree, *, name: str, classes: list[str], train_items: list, test_items: list,
                   image_size: Optional[int], key: str, cache_root: Path, stem: str, workers: int,
                   note: Optional[str]) -> StreamDataset:
    """The StreamDataset of an image folder listed by `tree` (called by `load_dataset`)."""
    where = str(p)
    if tree.kind == "dir":
        reader = _DirReader(where)
    elif tree.kind == "zip":
        reader = _ZipReader(where)
    elif tree.kind == "tar":
        sparse = [f for f, _ in train_items + test_items if f not in tree.offsets]
        if sparse:
            raise DataError(f"{sparse[0]} in {where} is a sparse tar member, which cannot be read by offset; "
                            "repack the archive or use --loader memory")
        reader = _TarReader(where, tree.offsets)
    else:
        dest = cache_root / f"{stem}-{key[:24]}.files"
        _extract(tree, [f for f, _ in train_items + test_items], dest, where)
        reader = _DirReader(str(dest))
    train_files = [f for f, _ in train_items]
    if image_size is not None:
        stored = (resize_size(image_size),) * 2
    else:
        im, _ = open_image(reader.read(train_files[0]), train_files[0], where, rgb=True)
        stored = (im.size[1], im.size[0])
    mean, std = _stream_stats(train_files, reader, image_size, stored, where, key, cache_root, workers)
    return StreamDataset(
        train_files=train_files, train_labels=torch.tensor([lab for _, lab in train_items], dtype=torch.int64),
        test_files=[f for f, _ in test_items], test_labels=torch.tensor([lab for _, lab in test_items], dtype=torch.int64),
        classes=classes, mean=mean, std=std, name=name, source=where, reader=reader, image_size=image_size,
        stored_size=stored, stats_key=key, cache_root=str(cache_root), workers=workers, note=note)


# ----------------------------------------------------------------------------------------------------
# per-image work (in DataLoader workers)


def _decode(reader, name: str, where: str, image_size: Optional[int], stored: tuple[int, int], split: str):
    """uint8 (3, H, W) of one file in `split`'s geometry."""
    px, _ = decode(reader.read(name), name, where, image_size=image_size, split=split, rgb=True)  # (H, W, 3)
    if image_size is None and tuple(px.shape[:2]) != tuple(stored):
        raise DataError(f"all images must share one size: {name} is {px.shape[1]}x{px.shape[0]} but the first "
                        f"train image is {stored[1]}x{stored[0]} (in {where}); --image-size N resizes them")
    return px.permute(2, 0, 1).contiguous()  # (3, H, W)


class _Images(Dataset):
    """Item (index, epoch) -> (uint8 (3, H, W), label): decoded, then (train) cropped and flipped."""

    def __init__(self, files: list[str], labels: torch.Tensor, reader, *, where: str, image_size: Optional[int],
                 stored: tuple[int, int], split: str, train: bool, augment: bool, crop_padding: int, seed: int) -> None:
        self.files, self.labels, self.reader, self.where = files, labels.tolist(), reader, where
        self.image_size, self.stored, self.split = image_size, stored, split
        self.train, self.augment, self.crop_padding, self.seed = train, augment, crop_padding, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, int]:
        i, epoch = key
        x = _decode(self.reader, self.files[i], self.where, self.image_size, self.stored, self.split)
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
        g = torch.Generator().manual_seed(_mix_seed(self.seed, "stream", int(epoch), int(i)))
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


# ----------------------------------------------------------------------------------------------------
# the loader


class StreamLoader:
    """Batches of a StreamDataset split, decoded by `workers` DataLoader processes (0: in this process); the
    interface of BatchLoader (`epoch(e)`, `len`, `num_images`, `example`). See the module docstring for the
    sampling, the augmentation and how archives are read.

    batch_size is per rank. train=True: DistributedSampler(shuffle, seed=seed, drop_last), augmentation as
    BatchLoader's (crop_padding without image_size, a crop of the stored square with it). train=False: images
    rank, rank + world_size, ... in file order, unaugmented (each test image on exactly one rank).
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
    ) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"mean and std need one value per channel (3), got {len(mean)} and {len(std)}")
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"workers must be an int >= 0 (--workers), got {workers!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        files, labels = ((dataset.train_files, dataset.train_labels) if split == "train"
                         else (dataset.test_files, dataset.test_labels))
        if len(files) < (world_size if train else 1):
            raise ValueError(f"the {split} split of {dataset.source} has {len(files)} images, fewer than the "
                             f"{world_size} processes")
        self.train, self.batch_size, self.dtype = bool(train), batch_size, dtype
        self.rank, self.world_size, self.workers = rank, world_size, workers
        self.device = torch.device(device)
        self._images = _Images(files, labels, dataset.reader, where=dataset.source, image_size=dataset.image_size,
                               stored=dataset.stored_size, split=split, train=self.train, augment=augment,
                               crop_padding=0 if dataset.image_size is not None else crop_padding, seed=seed)
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


def _histogram(x: torch.Tensor) -> torch.Tensor:
    """(3, 256) int64 level counts of a uint8 (3, H, W) image."""
    return torch.stack([torch.bincount(x[c].reshape(-1), minlength=256) for c in range(x.shape[0])])


class _Histograms(Dataset):
    def __init__(self, files, reader, where, image_size, stored) -> None:
        self.files, self.reader, self.where, self.image_size, self.stored = files, reader, where, image_size, stored

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> torch.Tensor:
        return _histogram(_decode(self.reader, self.files[i], self.where, self.image_size, self.stored, "train"))


def _sum_histograms(batch: list) -> torch.Tensor:
    return torch.stack(batch).sum(0)  # (3, 256)


def _stream_stats(files: list[str], reader, image_size, stored, where: str, key: str, cache_root: Path,
                  workers: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std of the stored train images of a seeded sample (all of them up to STATS_SAMPLE),
    cached in cache_root by the source's key, the geometry and the sample's file names."""
    n = len(files)
    if n > STATS_SAMPLE:
        g = torch.Generator().manual_seed(_mix_seed(0, "stream-stats"))
        sample = [files[i] for i in torch.randperm(n, generator=g)[:STATS_SAMPLE].sort().values.tolist()]
    else:
        sample = list(files)
    digest = hashlib.sha256(repr([_STATS_VERSION, key, image_size, tuple(stored), sample]).encode()).hexdigest()
    path = Path(cache_root) / f"stats-{digest[:24]}.json"
    try:
        d = json.loads(path.read_text())
        return tuple(float(m) for m in d["mean"]), tuple(float(s) for s in d["std"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    log.info("channel statistics of %d train images of %s (cached in %s)", len(sample), where, path)
    loader = DataLoader(_Histograms(sample, reader, where, image_size, stored), batch_size=64, num_workers=workers,
                        collate_fn=_sum_histograms)
    hist = torch.zeros(3, 256, dtype=torch.int64)
    for h in _worker_batches(loader):
        hist += h
    mean, std = _stats_from_histograms(hist)
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
