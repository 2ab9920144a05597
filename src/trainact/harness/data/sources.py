"""Reading datasets: CIFAR python pickles, image folders (directories or archives), and the decoded-array cache.

Pillow (image folders) and numpy (CIFAR pickles) are imported only when needed.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from trainact.harness.config import DEFAULT_MEMORY_BUDGET, LOADERS

from .cache import _CACHE_VERSION, _read_cache, _write_cache
from .dataset import DataError, ImageDataset, _channel_stats, _mix_seed, log
from .images import decode, resize_size
from .synthetic import _SYNTHETIC_PARAMS, synthetic_dataset

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp", ".gif")
_CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")
_LAYOUTS_UNDERSTOOD = (
    "a CIFAR-10 python folder (cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta); "
    "a CIFAR-100 python folder (cifar-100-python/: train, test, meta); "
    "an image-folder tree train/<class>/* with test/<class>/* or val/<class>/*; "
    "each at the top of the directory/archive or under one top-level folder"
)

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

    loader "memory" returns an ImageDataset; "stream" a StreamDataset (an index of the files, decoded per batch by
    StreamLoader, harness/data/stream.py); "auto" the former unless the decoded uint8 arrays (counted at 3 bytes a
    pixel) would exceed `memory_budget` bytes (default 8 GiB), and then a StreamDataset whose `note` says so.
    CIFAR python folders and the synthetic set are always in memory. `workers`: processes that compute a streamed
    set's channel statistics.

    The decoded uint8 arrays are cached in `cache_dir` (default $TRAINACT_CACHE or ~/.cache/trainact), keyed by
    the resolved path, size and mtime of the archive or of every file read from a directory, and by image_size and
    val_fraction when they are given.
    """
    _check_options(image_size, val_fraction, loader, memory_budget, workers)
    if path is None:
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
    if synthetic:
        raise DataError("`synthetic` options only apply when path is None")

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset path does not exist: {p}")
    p = p.resolve()
    options = _key_options(image_size, val_fraction)  # nothing for the defaults: their cache keys are unchanged

    if p.is_dir():
        layout, root = _detect_dir_layout(p, train_only=val_fraction is not None)
        tree = _dir_tree(p, root, layout)
        st = [(name, *meta) for name, meta in sorted(tree.meta.items())]
        key = _digest(["dir", str(p), root, layout, st, *options])
        name = _dataset_name(layout, p.name)
    elif p.is_file():
        if not p.name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise DataError(
                f"unknown dataset layout: {p} is a file but not a .tar/.tar.gz/.tgz/.zip archive; understood are "
                f"{_LAYOUTS_UNDERSTOOD}"
            )
        stat = p.stat()
        key = _digest(["archive", str(p), stat.st_size, stat.st_mtime_ns, *options])
        tree, layout, root = None, None, None
        name = None  # known after the layout is read, unless the cache answers first
    else:
        raise DataError(f"dataset path is neither a file nor a directory: {p}")

    cache_root = Path(cache_dir if cache_dir is not None else os.environ.get("TRAINACT_CACHE", "~/.cache/trainact"))
    cache_root = cache_root.expanduser()
    stem = _safe(_archive_stem(p) if p.is_file() else p.name)
    cache_file = cache_root / f"{stem}-{key[:24]}.pt"
    budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else memory_budget

    def in_memory(arrays, classes, name, mean, std) -> ImageDataset:
        train_images, train_labels, test_images, test_labels = arrays
        return ImageDataset(train_images=train_images, train_labels=train_labels, test_images=test_images,
                            test_labels=test_labels, classes=classes, mean=mean, std=std, name=name, source=str(p),
                            crop_size=image_size)

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
        if cached is not None:
            return in_memory(*cached)
        log.info("decoding %s (%s layout); the result is cached in %s", p, layout, cache_file)
        arrays, classes = _read_cifar(tree, root, layout, str(p))
        mean, std = _channel_stats(arrays[0])
        _write_cache(cache_file, arrays, classes, name, mean, std)
        return in_memory(arrays, classes, name, mean, std)

    classes, train_items, test_items = _image_folder_items(tree, root, test_split, str(p), val_fraction)
    if loader != "stream" and note is None:
        log.info("decoding %s (%s layout); the result is cached in %s", p, layout, cache_file)
        try:
            arrays = _read_image_folder(tree, train_items, test_items, str(p), image_size=image_size,
                                        budget=budget if loader == "auto" else None)
        except _OverBudget as over:
            note = _over_budget(over.size, budget, p)
        else:
            mean, std = _channel_stats(arrays[0])
            _write_cache(cache_file, arrays, classes, name, mean, std)
            return in_memory(arrays, classes, name, mean, std)

    from .stream import stream_dataset

    return stream_dataset(p, tree, name=name, classes=classes, train_items=train_items, test_items=test_items,
                          image_size=image_size, key=key, cache_root=cache_root, stem=stem, workers=workers, note=note)


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
    """The size of a set's uint8 arrays counted at 3 channels (gray sets are 3x smaller): `loader="auto"`'s measure."""
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


# --- the file trees of directories and archives -------------------------------------------------------


@dataclass
class _Tree:
    """The regular files (POSIX names relative to the source) and directories of a directory or archive."""

    files: list[str]  # in storage order (the cheap order to read them in)
    dirs: set[str]  # explicit and implied directories, no trailing slash
    read: Callable[[list[str]], Iterator[tuple[str, bytes]]]  # yields (name, bytes) for the names, any order
    meta: dict[str, tuple[int, int]]  # name -> (size, mtime_ns); directories only, for the cache key
    kind: str = "dir"  # dir | zip | tar (uncompressed) | tar-compressed (gzip, bz2, xz)
    offsets: Optional[dict] = None  # tar: name -> (offset of the data, size), for reading a member by itself


def _skip(name: str) -> bool:
    """Hidden files and folders, and macOS archive junk."""
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _implied_dirs(files: list[str], dirs: set[str]) -> set[str]:
    out = set(dirs)
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


def _tar_compressed(p: Path) -> bool:
    with open(p, "rb") as f:
        magic = f.read(6)
    return magic.startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))


def _archive_tree(p: Path) -> _Tree:
    """Each `read` call opens the archive afresh (so a listing can be read from more than once)."""
    if p.name.lower().endswith(".zip"):
        try:
            with zipfile.ZipFile(p) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"cannot read zip archive {p}: {e}") from e
        files = [i.filename for i in infos if not i.is_dir() and not _skip(i.filename)]
        dirs = {i.filename.rstrip("/") for i in infos if i.is_dir() and not _skip(i.filename)}

        def read(names: list[str]) -> Iterator[tuple[str, bytes]]:
            with zipfile.ZipFile(p) as zf:
                for name in names:
                    try:
                        yield name, zf.read(name)
                    except (zipfile.BadZipFile, OSError, RuntimeError) as e:  # bad CRC, truncated member
                        raise DataError(f"cannot read {name} in {p}: {e}") from e

        return _Tree(files, _implied_dirs(files, dirs), read, {}, kind="zip")

    try:
        with tarfile.open(p, "r:*") as tf:
            members = tf.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot read tar archive {p}: {e}") from e
    by_name = {}
    for m in members:
        name = m.name[2:] if m.name.startswith("./") else m.name
        if m.isfile() and not _skip(name):
            by_name[name] = m
    files = list(by_name)
    dirs = {(m.name[2:] if m.name.startswith("./") else m.name).rstrip("/") for m in members if m.isdir()}
    dirs = {d for d in dirs if d and d != "." and not _skip(d)}

    def read(names: list[str]) -> Iterator[tuple[str, bytes]]:
        # Archive order: a gzip stream can only seek forward cheaply.
        wanted = sorted(names, key=lambda n: by_name[n].offset)
        with tarfile.open(p, "r:*") as tf:
            for name in wanted:
                try:
                    yield name, tf.extractfile(by_name[name]).read()
                except (tarfile.TarError, OSError, EOFError) as e:
                    raise DataError(f"cannot read {name} in {p}: {e}") from e

    offsets = {n: (m.offset_data, m.size) for n, m in by_name.items() if not m.issparse()}
    kind = "tar-compressed" if _tar_compressed(p) else "tar"
    return _Tree(files, _implied_dirs(files, dirs), read, {}, kind=kind, offsets=offsets)


def _detect(is_file: Callable[[str], bool], is_dir: Callable[[str], bool], top_dirs: list[str],
            train_only: bool = False) -> tuple[str, str] | None:
    """(layout, root prefix ending in '/' or '') of the first understood layout at the top or one folder down;
    `train_only` (--val-fraction) accepts an image folder with train/ alone."""
    for base in [""] + [d + "/" for d in sorted(top_dirs)]:
        for prefix in (base, base + "cifar-10-batches-py/"):
            if all(is_file(prefix + f) for f in _CIFAR10_FILES):
                return "cifar10", prefix
        for prefix in (base, base + "cifar-100-python/"):
            if all(is_file(prefix + f) for f in _CIFAR100_FILES):
                return "cifar100", prefix
        if is_dir(base + "train") and (is_dir(base + "test") or is_dir(base + "val") or train_only):
            return "imagefolder", base
    return None


def _unknown_layout(where: str, found: list[str]) -> DataError:
    shown = ", ".join(found[:12]) + (f", ... ({len(found)} entries)" if len(found) > 12 else "")
    hint = ""
    if any(f.rstrip("/").split("/")[-1] == "train" for f in found):
        hint = (" (there is a train/ folder but neither test/ nor val/ beside it: --val-fraction F holds out a "
                "class-balanced fraction F of train/ as the test split)")
    return DataError(
        f"unknown dataset layout in {where}{hint}: understood are {_LAYOUTS_UNDERSTOOD}; found: [{shown or 'nothing'}]"
    )


def _detect_tree_layout(tree: _Tree, where: str, train_only: bool = False) -> tuple[str, str]:
    files = set(tree.files)
    top = sorted({d for d in tree.dirs if "/" not in d})
    found = _detect(files.__contains__, tree.dirs.__contains__, top, train_only)
    if found is None:
        entries = sorted({n.split("/")[0] + ("/" if "/" in n else "") for n in tree.files} | {d + "/" for d in top})
        entries += sorted(d + "/" for d in tree.dirs if d.count("/") == 1)
        raise _unknown_layout(where, entries)
    return found


def _detect_dir_layout(p: Path, train_only: bool = False) -> tuple[str, str]:
    top = [e.name for e in os.scandir(p) if e.is_dir() and not _skip(e.name)]
    found = _detect(lambda n: (p / n).is_file(), lambda n: (p / n).is_dir(), top, train_only)
    if found is None:
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(p) if not _skip(e.name))
        entries += sorted(f"{d}/{e.name}/" for d in top for e in os.scandir(p / d) if e.is_dir())
        raise _unknown_layout(str(p), entries)
    return found


def _test_split(tree: _Tree, root: str) -> str | None:
    """The image folder's test split: test/ if there is one, else val/, else None (train only)."""
    for split in ("test", "val"):
        if root + split in tree.dirs:
            return split
    return None


def _dir_tree(p: Path, root: str, layout: str) -> _Tree:
    """The files the layout reads (only those: the cache key must not depend on unrelated neighbours)."""
    if layout == "imagefolder":
        subtrees = [root + "train"] + [root + s for s in ("test", "val") if (p / root / s).is_dir()][:1]
    else:
        subtrees = []
    files, dirs, meta = [], set(), {}
    if layout != "imagefolder":
        wanted = _CIFAR10_FILES if layout == "cifar10" else _CIFAR100_FILES
        for f in wanted:
            st = (p / (root + f)).stat()
            files.append(root + f)
            meta[root + f] = (st.st_size, st.st_mtime_ns)
    for sub in subtrees:
        for dirpath, dirnames, filenames in os.walk(p / sub):
            rel = Path(dirpath).relative_to(p).as_posix()
            dirnames[:] = sorted(d for d in dirnames if not _skip(d))
            dirs.add(rel)
            for fn in sorted(filenames):
                if _skip(fn):
                    continue
                name = f"{rel}/{fn}"
                st = os.stat(os.path.join(dirpath, fn))
                files.append(name)
                meta[name] = (st.st_size, st.st_mtime_ns)

    def read(names: list[str]) -> Iterator[tuple[str, bytes]]:
        for name in names:
            try:
                yield name, (p / name).read_bytes()
            except OSError as e:
                raise DataError(f"cannot read {p / name}: {e}") from e

    return _Tree(files, _implied_dirs(files, dirs), read, meta)


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
    """(train images, train labels, test images, test labels), uint8 (N, C, H, W) and int64 (N,): C = 1 if every
    image is gray, else 3. With image_size N: train S x S squares, test N x N (harness/data/images.py); without,
    every image must have one size. budget: raise _OverBudget as soon as the arrays are known to exceed it."""
    names = [f for f, _ in train_items] + [f for f, _ in test_items]
    n_train = len(train_items)
    slot = {name: i for i, name in enumerate(names)}
    gray = torch.zeros(len(names), dtype=torch.bool)
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
        px, is_gray = decode(data, name, where, image_size=image_size, split="train" if i < n_train else "test")
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
        gray[i] = is_gray
    keep = 1 if bool(gray.all()) else 3
    if bufs is not None:
        train_images, test_images = (b[..., :keep].permute(0, 3, 1, 2).contiguous() for b in bufs)  # (N, C, H, W)
    else:
        images = out[..., :keep].permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
        train_images, test_images = images[:n_train].clone(), images[n_train:].clone()
    labels = torch.tensor([label for _, label in train_items + test_items], dtype=torch.int64)
    return train_images, labels[:n_train].clone(), test_images, labels[n_train:].clone()


# --- CIFAR python pickles -----------------------------------------------------------------------------

_PICKLE_ALLOWED = {
    ("_codecs", "encode"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays, lists, dicts and strings, nothing else: the files come from the user."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _PICKLE_ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} (a CIFAR file holds only arrays)")
        return super().find_class(module, name)


def _unpickle(data: bytes, name: str, where: str) -> dict:
    try:
        import numpy  # noqa: F401  (the pickles hold numpy arrays)
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading CIFAR python pickles needs numpy: pip install numpy") from e
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:
        raise DataError(f"cannot unpickle {name} in {where}: {type(e).__name__}: {e}") from e
    if not isinstance(obj, dict):
        raise DataError(f"{name} in {where} does not hold a dict (got {type(obj).__name__})")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar(tree: _Tree, root: str, layout: str, where: str):
    import numpy as np

    if layout == "cifar10":
        train_files, test_files, meta_file, label_key, names_key = (
            [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "batches.meta", "labels", "label_names")
    else:
        train_files, test_files, meta_file, label_key, names_key = (
            ["train"], ["test"], "meta", "fine_labels", "fine_label_names")
    blobs = dict(tree.read([root + f for f in train_files + test_files + [meta_file]]))
    meta = _unpickle(blobs[root + meta_file], root + meta_file, where)
    if names_key not in meta:
        raise DataError(f"{root + meta_file} in {where} has no {names_key!r} entry (keys: {sorted(meta)})")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[names_key]]

    def split(files: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = [], []
        for f in files:
            d = _unpickle(blobs[root + f], root + f, where)
            if "data" not in d or label_key not in d:
                raise DataError(f"{root + f} in {where} lacks 'data' or {label_key!r} (keys: {sorted(d)})")
            data = np.asarray(d["data"])
            lab = np.asarray(d[label_key], dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(lab) != len(data):
                raise DataError(
                    f"{root + f} in {where}: expected uint8 data (N, 3072) and N labels, got data {data.dtype} "
                    f"{data.shape} and {len(lab)} labels"
                )
            if len(lab) and (lab.min() < 0 or lab.max() >= len(classes)):
                raise DataError(f"{root + f} in {where}: labels outside [0, {len(classes)})")
            images.append(torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32))  # (n, 3, 32, 32)
            labels.append(torch.from_numpy(lab))
        return torch.cat(images).contiguous(), torch.cat(labels)

    return (*split(train_files), *split(test_files)), classes
