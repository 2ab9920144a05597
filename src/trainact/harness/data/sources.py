"""`load_dataset`, the data layer's entry point: from a path to an ImageDataset or a StreamDataset.

It validates the options once (`readers.Request`), finds the format (`formats.detect`) in a directory or an
archive (storage.py), answers from the decoded-array cache (cache.py) when it can, else decodes with the format's
reader, or hands the reader's file index to the streaming loader (stream.py) when asked to or when the decoded
set would exceed the memory budget. Cache keys: a directory's by the size and mtime of every file its reader
reads, an archive's by its own, both with the options that change the arrays.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Optional

from .cache import CACHE_VERSION, read_cache, write_cache
from .dataset import DataError, ImageDataset, channel_stats, log
from .formats import detect, known_formats
from .readers import OverBudget, Reader, Request
from .storage import ARCHIVE_SUFFIXES, DirStorage, Storage, archive_stem, open_archive
from .synthetic import SYNTHETIC_PARAMS, synthetic_dataset


def load_dataset(
    path: str | os.PathLike | None,
    *,
    cache_dir: str | os.PathLike | None = None,
    synthetic: dict | None = None,
    image_size: int | None = None,
    val_fraction: float | None = None,
    loader: str = "memory",
    memory_budget: int | None = None,
    workers: int = 0,
):
    """Read a dataset from a directory or archive (decoded once, then cached), or build the synthetic set.

    path None: `synthetic_dataset(**synthetic)`. Otherwise a directory or a .tar/.tar.gz/.tgz/.zip archive
    holding one of the formats of formats.READERS (a CIFAR-10/100 python folder, an image-folder tree
    train/<class>/* + test/<class>/* or val/<class>/*), at the top or under one top-level folder. Labels are the
    indices of the sorted class-folder names (CIFAR: the label order of its meta file).

    image_size N (image folders): test images resized and centre-cropped to N x N, train images to S x S squares,
    S = round(N / 0.875), which the loader crops to N x N (harness/data/images.py). val_fraction F: an image folder
    with train/ only gets a class-balanced hold-out of F of each class as its test split, the same for every call
    (a fixed salt, see imagefolder.py).

    loader "memory": an ImageDataset; "stream": a StreamDataset (files decoded per batch, stream.py); "auto": the
    former unless the decoded uint8 arrays (3 bytes a pixel) exceed `memory_budget` (default 8 GiB), then the
    latter with a `note` saying so. CIFAR folders and the synthetic set are always in memory. `workers`: processes
    computing a streamed set's channel statistics. Decoded arrays are cached in `cache_dir` (default
    $TRAINACT_CACHE or ~/.cache/trainact), keyed by the resolved path, size and mtime of the archive or of every
    file read, and by image_size and val_fraction when given.
    """
    request = Request(image_size=image_size, val_fraction=val_fraction, loader=loader, memory_budget=memory_budget,
                      workers=workers)
    if path is None:
        return _synthetic(synthetic, request)
    if synthetic:
        raise DataError("`synthetic` options only apply when path is None")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset path does not exist: {p}")
    p = p.resolve()
    where = str(p)
    storage, reader, root, key = _locate(p, request)
    cache_root = Path(cache_dir if cache_dir is not None else os.environ.get("TRAINACT_CACHE", "~/.cache/trainact"))
    cache_root, stem = cache_root.expanduser(), archive_stem(p) if p.is_file() else p.name
    cache_file = cache_root / f"{_safe(stem)}-{key[:24]}.pt"
    cached, note = None, None
    if loader != "stream":
        cached = read_cache(cache_file)
        if cached is not None:
            size = _decoded_bytes(cached[0])
            if loader == "memory" or size <= request.budget:
                return _in_memory(where, image_size, *cached)
            note = _over_budget(size, request.budget, p)
    if storage is None:  # an archive the cache did not answer for: listed now
        storage = open_archive(p)
        reader, root = detect(storage, where, train_only=val_fraction is not None)
    reader.check(storage, root, request, where)
    name = reader.name(stem)
    if not reader.streams and cached is not None:  # always in memory, whatever the budget
        return _in_memory(where, image_size, *cached)
    if not reader.streams or (loader != "stream" and note is None):
        log.info("decoding %s (%s layout); the result is cached in %s", p, reader.key, cache_file)
        try:
            arrays, classes = reader.decode(storage, root, where, request,
                                            request.budget if loader == "auto" and reader.streams else None)
        except OverBudget as over:
            note = _over_budget(over.size, request.budget, p)
        else:
            cached = (arrays, classes, name, *channel_stats(arrays[0]))
            write_cache(cache_file, *cached)
            return _in_memory(where, image_size, *cached)

    from .stream import stream_dataset

    return stream_dataset(storage, reader.index(storage, root, where, request), where=where, name=name,
                          image_size=image_size, key=key, cache_root=cache_root, stem=_safe(stem), workers=workers,
                          note=note)


def _in_memory(source: str, image_size, arrays, classes, name, mean, std) -> ImageDataset:
    train_images, train_labels, test_images, test_labels = arrays
    return ImageDataset(train_images=train_images, train_labels=train_labels, test_images=test_images,
                        test_labels=test_labels, classes=classes, mean=mean, std=std, name=name, source=source,
                        image_size=image_size)


def _synthetic(synthetic: dict | None, request: Request) -> ImageDataset:
    """The built-in synthetic set, refusing the options that apply to image folders only."""
    for value, flag in ((request.image_size, "--image-size"), (request.val_fraction, "--val-fraction")):
        if value is not None:
            raise DataError(f"{flag} {value:g} applies to an image folder or archive; the built-in synthetic set "
                            "takes its size from its own options (--synthetic image_size=N)")
    if request.loader == "stream":
        raise DataError("--loader stream reads an image folder or archive; the built-in synthetic set is made in "
                        "memory (--loader memory or auto)")
    params = dict(synthetic or {})
    unknown = sorted(set(params) - set(SYNTHETIC_PARAMS))
    if unknown:
        raise DataError(f"unknown synthetic dataset option(s) {unknown}; accepted: {list(SYNTHETIC_PARAMS)}")
    return synthetic_dataset(**params)


def _locate(p: Path, request: Request) -> tuple[Optional[Storage], Optional[Reader], Optional[str], str]:
    """(storage, reader, root, cache key) of a directory, detected and listed now; (None, None, None, key) of an
    archive, which is opened only if the cache does not answer first."""
    options = request.key_options()
    if p.is_dir():
        storage = DirStorage(str(p))
        reader, root = detect(storage, str(p), train_only=request.val_fraction is not None)
        storage.select(*reader.select(storage, root))
        st = [(name, *meta) for name, meta in sorted(storage.meta.items())]
        return storage, reader, root, _digest(["dir", str(p), root, reader.key, st, *options])
    if p.is_file():
        if not p.name.lower().endswith(ARCHIVE_SUFFIXES):
            raise DataError(f"unknown dataset layout: {p} is a file but not a .tar/.tar.gz/.tgz/.zip archive; "
                            f"understood are {known_formats()}")
        stat = p.stat()
        return None, None, None, _digest(["archive", str(p), stat.st_size, stat.st_mtime_ns, *options])
    raise DataError(f"dataset path is neither a file nor a directory: {p}")


def _decoded_bytes(arrays) -> int:
    """The size of a set's uint8 arrays (3 channels): `loader="auto"`'s measure."""
    return sum(3 * a.shape[0] * a.shape[2] * a.shape[3] for a in (arrays[0], arrays[2]))


def _gib(n: int) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _over_budget(size: int, budget: int, p: Path) -> str:
    return (f"the decoded images of {p} would take {_gib(size)}, over the {_gib(budget)} memory budget "
            "(--memory-budget): streaming them from disk instead (--loader memory keeps them in memory)")


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:64] or "dataset"


def _digest(parts: list) -> str:
    return hashlib.sha256(repr([CACHE_VERSION, *parts]).encode()).hexdigest()
