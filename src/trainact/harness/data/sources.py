"""Loading a data set (`load_dataset`): image folders decoded here, CIFAR pickles (cifar.py), from directories or
archives (trees.py), through the decoded-array cache (cache.py), or streamed (stream.py) when too large.

Pillow (image folders) and numpy (CIFAR pickles) are imported only when needed.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from pathlib import Path

import torch

from trainact.harness.config import DEFAULT_MEMORY_BUDGET, LOADERS

from .cache import _CACHE_VERSION, _read_cache, _write_cache
from .dataset import DataError, ImageDataset, _channel_stats, _mix_seed, log
from .images import decode, resize_size
from .synthetic import _SYNTHETIC_PARAMS, synthetic_dataset
from .trees import (
    _ARCHIVE_SUFFIXES, _IMAGE_SUFFIXES, _LAYOUTS_UNDERSTOOD, _Tree, _archive_tree, _detect_dir_layout, _detect_tree_layout,
    _dir_tree, _test_split,
)
from .cifar import _read_cifar

# ----------------------------------------------------------------------------------------------------
# loading


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

    path None: `synthetic_dataset(**synthetic)`. Otherwise a CIFAR-10/100 python folder, or an image-folder
    tree (train/<class>/* + test/<class>/* or val/<class>/*; test wins if both exist), as a directory or a
    .tar/.tar.gz/.tgz/.zip archive, at the top or under one top-level folder. Labels are the indices of the
    sorted class-folder names (CIFAR: the label order of its meta file).

    image_size N (image folders): test images resized and centre-cropped to N x N, train images to S x S squares,
    S = round(N / 0.875), which the loader crops to N x N (harness/data/images.py). val_fraction F: an image folder
    with train/ only gets a class-balanced hold-out of F of each class as its test split, the same for every call
    (a fixed salt, see `_hold_out`).

    loader "memory": an ImageDataset; "stream": a StreamDataset (files decoded per batch, stream.py); "auto": the
    former unless the decoded uint8 arrays (3 bytes a pixel) exceed `memory_budget` (default 8 GiB), then the
    latter with a `note` saying so. CIFAR folders and the synthetic set are always in memory. `workers`: processes
    computing a streamed set's channel statistics. Decoded arrays are cached in `cache_dir` (default
    $TRAINACT_CACHE or ~/.cache/trainact), keyed by the resolved path, size and mtime of the archive or of every
    file read, and by image_size and val_fraction when given.
    """
    _check_options(image_size, val_fraction, loader, memory_budget, workers)
    if path is None:
        return _synthetic(synthetic, image_size, val_fraction, loader)
    if synthetic:
        raise DataError("`synthetic` options only apply when path is None")
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset path does not exist: {p}")
    p = p.resolve()
    tree, layout, root, key, name = _locate(p, _key_options(image_size, val_fraction), val_fraction)
    cache_root = Path(cache_dir if cache_dir is not None else os.environ.get("TRAINACT_CACHE", "~/.cache/trainact"))
    cache_root, stem = cache_root.expanduser(), _safe(_archive_stem(p) if p.is_file() else p.name)
    cache_file = cache_root / f"{stem}-{key[:24]}.pt"
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget
    in_memory = functools.partial(_in_memory, str(p), image_size)
    cached, note = None, None
    if loader != "stream":
        cached = _read_cache(cache_file)
        if cached is not None:
            size = _decoded_bytes(cached[0])
            if loader == "memory" or size <= budget:
                return in_memory(*cached)
            note = _over_budget(size, budget, p)
    if tree is None:
        tree = _archive_tree(p)
        layout, root = _detect_tree_layout(tree, str(p), train_only=val_fraction is not None)
        name = _dataset_name(layout, _archive_stem(p))
    test_split = _test_split(tree, root) if layout == "imagefolder" else None
    _check_layout_options(layout, root, test_split, image_size, val_fraction, loader, str(p))
    if layout != "imagefolder":  # CIFAR pickles: always in memory
        if cached is None:
            log.info("decoding %s (%s layout); the result is cached in %s", p, layout, cache_file)
            arrays, classes = _read_cifar(tree, root, layout, str(p))
            cached = (arrays, classes, name, *_channel_stats(arrays[0]))
            _write_cache(cache_file, *cached)
        return in_memory(*cached)

    classes, train_items, test_items = _image_folder_items(tree, root, test_split, str(p), val_fraction)
    if loader != "stream" and note is None:
        arrays, note = _decode_within(tree, train_items, test_items, p, image_size, budget if loader == "auto" else None,
                                      cache_file)
        if arrays is not None:
            mean, std = _channel_stats(arrays[0])
            _write_cache(cache_file, arrays, classes, name, mean, std)
            return in_memory(arrays, classes, name, mean, std)

    from .stream import stream_dataset

    return stream_dataset(p, tree, name=name, classes=classes, train_items=train_items, test_items=test_items,
                          image_size=image_size, key=key, cache_root=cache_root, stem=stem, workers=workers, note=note)


def _decode_within(tree, train_items, test_items, p: Path, image_size, budget, cache_file):
    """(arrays, None) of an image folder decoded into memory, or (None, note) once it outgrows `budget` bytes."""
    log.info("decoding %s (imagefolder layout); the result is cached in %s", p, cache_file)
    try:
        return _read_image_folder(tree, train_items, test_items, str(p), image_size=image_size, budget=budget), None
    except _OverBudget as over:
        return None, _over_budget(over.size, budget, p)


def _in_memory(source: str, crop_size, arrays, classes, name, mean, std) -> ImageDataset:
    train_images, train_labels, test_images, test_labels = arrays
    return ImageDataset(train_images=train_images, train_labels=train_labels, test_images=test_images,
                        test_labels=test_labels, classes=classes, mean=mean, std=std, name=name, source=source,
                        crop_size=crop_size)


def _synthetic(synthetic: dict | None, image_size, val_fraction, loader: str):
    """The built-in synthetic set, refusing the options that apply to image folders only."""
    for value, flag in ((image_size, "--image-size"), (val_fraction, "--val-fraction")):
        if value is not None:
            raise DataError(f"{flag} {value:g} applies to an image folder or archive; the built-in synthetic set "
                            "takes its size from its own options (--synthetic image_size=N)")
    if loader == "stream":
        raise DataError("--loader stream reads an image folder or archive; the built-in synthetic set is made in "
                        "memory (--loader memory or auto)")
    params = dict(synthetic or {})
    unknown = sorted(set(params) - set(_SYNTHETIC_PARAMS))
    if unknown:
        raise DataError(f"unknown synthetic dataset option(s) {unknown}; accepted: {list(_SYNTHETIC_PARAMS)}")
    return synthetic_dataset(**params)


def _locate(p: Path, options: list, val_fraction):
    """(tree, layout, root, cache key, name) of a directory, or (None, None, None, key, None) of an archive, whose
    layout is read only if the cache does not answer first. `options` go into the key (none for the defaults, so
    their keys are unchanged)."""
    if p.is_dir():
        layout, root = _detect_dir_layout(p, train_only=val_fraction is not None)
        tree = _dir_tree(p, root, layout)
        st = [(name, *meta) for name, meta in sorted(tree.meta.items())]
        return tree, layout, root, _digest(["dir", str(p), root, layout, st, *options]), _dataset_name(layout, p.name)
    if p.is_file():
        if not p.name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise DataError(
                f"unknown dataset layout: {p} is a file but not a .tar/.tar.gz/.tgz/.zip archive; understood are "
                f"{_LAYOUTS_UNDERSTOOD}"
            )
        stat = p.stat()
        return None, None, None, _digest(["archive", str(p), stat.st_size, stat.st_mtime_ns, *options]), None
    raise DataError(f"dataset path is neither a file nor a directory: {p}")


def _check_options(image_size, val_fraction, loader, memory_budget, workers) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1):
        raise DataError(f"--image-size must be an integer >= 1, got {image_size!r}")
    if val_fraction is not None and (isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float))
                                     or not 0 < val_fraction < 1):
        raise DataError(f"--val-fraction must be a fraction in (0, 1), got {val_fraction!r}")
    if loader not in LOADERS:
        raise DataError(f"--loader must be one of {', '.join(LOADERS)}, got {loader!r}")
    if memory_budget is not None and (isinstance(memory_budget, bool) or not isinstance(memory_budget, int)
                                      or memory_budget < 1):
        raise DataError(f"--memory-budget must be a number of bytes >= 1, got {memory_budget!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise DataError(f"--workers must be an integer >= 0, got {workers!r}")


def _check_layout_options(layout: str, root: str, test_split, image_size, val_fraction, loader, where: str) -> None:
    if layout != "imagefolder":
        kind = "CIFAR-10" if layout == "cifar10" else "CIFAR-100"
        if image_size is not None:
            raise DataError(f"--image-size {image_size} resizes image folders, but {where} is a {kind} python folder "
                            "(32x32 images): drop --image-size")
        if val_fraction is not None:
            raise DataError(f"--val-fraction {val_fraction:g} holds out part of a train-only image folder, but {where} "
                            f"is a {kind} python folder with its own test split: drop --val-fraction")
        if loader == "stream":
            raise DataError(f"--loader stream reads image folders and archives, but {where} is a {kind} python folder, "
                            "which is held in memory (--loader memory or auto)")
    elif val_fraction is not None and test_split is not None:
        raise DataError(f"--val-fraction {val_fraction:g} holds out part of train/ when there is no test split, but "
                        f"{where} has its own {root}{test_split}/: drop --val-fraction")


def _key_options(image_size, val_fraction) -> list:
    out = []
    if image_size is not None:
        out.append(("image_size", image_size))
    if val_fraction is not None:
        out.append(("val_fraction", float(val_fraction)))
    return out


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


class _OverBudget(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _archive_stem(p: Path) -> str:
    lower = p.name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return p.name[: -len(suffix)]
    return p.stem


def _dataset_name(layout: str, stem: str) -> str:
    return {"cifar10": "cifar10", "cifar100": "cifar100"}.get(layout, stem)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:64] or "dataset"


def _digest(parts: list) -> str:
    return hashlib.sha256(repr([_CACHE_VERSION, *parts]).encode()).hexdigest()


# --- image folders ------------------------------------------------------------------------------------


def _image_folder_items(tree: _Tree, root: str, test_split: str | None, where: str, val_fraction: float | None):
    """(classes, train [(file, label)], test [(file, label)]), each split sorted by class, then file name; with
    test_split None the test split is `_hold_out(val_fraction)` of train/."""
    splits = {}
    for split in ("train",) + ((test_split,) if test_split else ()):
        base = f"{root}{split}/"
        classes = sorted(d[len(base):] for d in tree.dirs if d.startswith(base) and "/" not in d[len(base):])
        items = []  # (class name, file name)
        for f in tree.files:
            if f.startswith(base) and "/" in f[len(base):] and f.lower().endswith(_IMAGE_SUFFIXES):
                items.append((f[len(base):].split("/", 1)[0], f))
        splits[split] = (base, classes, sorted(items))
    train_base, classes, _ = splits["train"]
    if not classes:
        raise DataError(f"no class folders in {train_base} of {where}")
    if test_split:
        test_base, test_classes, _ = splits[test_split]
        if test_classes != classes:
            only_train = sorted(set(classes) - set(test_classes))
            only_test = sorted(set(test_classes) - set(classes))
            raise DataError(
                f"class folders differ between {train_base} and {test_base} in {where}: "
                f"only in {train_base}: {only_train}; only in {test_base}: {only_test}"
            )
    index = {c: i for i, c in enumerate(classes)}
    for split, (base, _, items) in splits.items():
        have = {c for c, _ in items}
        empty = [c for c in classes if c not in have]
        if empty:
            raise DataError(
                f"class folder(s) without images in {where}: {[base + c + '/' for c in empty]} "
                f"(image files end in {', '.join(_IMAGE_SUFFIXES)})"
            )
    train = [(f, index[c]) for c, f in splits["train"][2]]
    if test_split:
        return classes, train, [(f, index[c]) for c, f in splits[test_split][2]]
    return (classes, *_hold_out(train, classes, val_fraction, train_base, where))


def _hold_out(items: list, classes: list[str], fraction: float, base: str, where: str) -> tuple[list, list]:
    """(train, test): of each class's n images, k = round(fraction * n) (at least 1, at most n - 1) go to the test
    split, chosen by a permutation seeded by the class name alone (a fixed salt: the same split in every run of
    the folder, whatever the seeds; a larger fraction holds out a superset)."""
    by_class: list[list[str]] = [[] for _ in classes]
    for name, label in items:
        by_class[label].append(name)
    train, test = [], []
    for label, names in enumerate(by_class):
        n = len(names)
        if n < 2:
            raise DataError(f"--val-fraction {fraction:g} needs at least 2 images per class to hold one out, but "
                            f"{base}{classes[label]}/ has {n} (in {where})")
        k = min(max(round(fraction * n), 1), n - 1)
        g = torch.Generator().manual_seed(_mix_seed(0, "val-fraction", classes[label]))
        held = set(torch.randperm(n, generator=g)[:k].tolist())
        for j, name in enumerate(names):
            (test if j in held else train).append((name, label))
    return train, test


def _read_image_folder(tree: _Tree, train_items: list, test_items: list, where: str, *,
                       image_size: int | None = None, budget: int | None = None):
    """(train images, train labels, test images, test labels), uint8 (N, 3, H, W) and int64 (N,): always RGB, a
    gray file as 3 equal channels (as the streaming loader feeds it, so both loaders give one model). With
    image_size N: train S x S squares, test N x N (harness/data/images.py); without,
    every image must have one size. budget: raise _OverBudget as soon as the arrays are known to exceed it."""
    names = [f for f, _ in train_items] + [f for f, _ in test_items]
    n_train = len(train_items)
    slot = {name: i for i, name in enumerate(names)}
    bufs = None  # image_size: (train (n_train, S, S, 3), test (n_test, N, N, 3)) uint8
    out = None  # no image_size: (N, H, W, 3) uint8, allocated at the first image
    if image_size is not None:
        s = resize_size(image_size)
        size = 3 * (n_train * s * s + len(test_items) * image_size * image_size)
        if budget is not None and size > budget:
            raise _OverBudget(size)
        bufs = (torch.empty((n_train, s, s, 3), dtype=torch.uint8),
                torch.empty((len(test_items), image_size, image_size, 3), dtype=torch.uint8))
    first = None  # (name, w, h)
    for name, data in tree.read(names):
        i = slot[name]
        px, _ = decode(data, name, where, image_size=image_size, split="train" if i < n_train else "test")
        h, w = px.shape[:2]
        if bufs is not None:
            if i < n_train:
                bufs[0][i] = px  # a gray image broadcasts to 3 channels
            else:
                bufs[1][i - n_train] = px
        else:
            if first is None:
                first = (name, w, h)
                if budget is not None and 3 * len(names) * h * w > budget:
                    raise _OverBudget(3 * len(names) * h * w)
                out = torch.empty((len(names), h, w, 3), dtype=torch.uint8)
            elif (w, h) != first[1:]:
                raise DataError(
                    f"all images must share one size: {name} is {w}x{h} but {first[0]} is {first[1]}x{first[2]} "
                    f"(in {where}); --image-size N resizes them (test: shorter side to round(N / 0.875), centre "
                    "N x N crop; train: a random N x N crop of that)"
                )
            out[i] = px
    if bufs is not None:
        train_images, test_images = (b.permute(0, 3, 1, 2).contiguous() for b in bufs)  # (N, 3, H, W)
    else:
        images = out.permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
        train_images, test_images = images[:n_train].clone(), images[n_train:].clone()
    labels = torch.tensor([label for _, label in train_items + test_items], dtype=torch.int64)
    return train_images, labels[:n_train].clone(), test_images, labels[n_train:].clone()
