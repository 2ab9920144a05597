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

Pillow (image folders) and numpy (CIFAR pickles) are imported only when needed.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import os
import pickle
import re
import tarfile
import tempfile
import time
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "DataError",
    "ImageDataset",
    "load_dataset",
    "synthetic_dataset",
    "BatchLoader",
    "measure_loader_throughput",
    "INPUT_RANGES",
]

log = logging.getLogger(__name__)

INPUT_RANGES = ("standardized", "unit", "byte")
_CACHE_VERSION = 1
_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp", ".gif")
_GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")
_CIFAR10_FILES = tuple(f"data_batch_{i}" for i in range(1, 6)) + ("test_batch", "batches.meta")
_CIFAR100_FILES = ("train", "test", "meta")
_LAYOUTS_UNDERSTOOD = (
    "a CIFAR-10 python folder (cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta); "
    "a CIFAR-100 python folder (cifar-100-python/: train, test, meta); "
    "an image-folder tree train/<class>/* with test/<class>/* or val/<class>/*; "
    "each at the top of the directory/archive or under one top-level folder"
)


class DataError(ValueError):
    """A dataset could not be found, recognised or decoded; the message says which file and why."""


# ----------------------------------------------------------------------------------------------------
# the dataset object


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean/std (population) of uint8 images (N, C, H, W) in [0, 1] units, via histograms."""
    levels = torch.arange(256, dtype=torch.float64) / 255.0
    means, stds = [], []
    for c in range(images.shape[1]):
        hist = torch.bincount(images[:, c].reshape(-1), minlength=256).to(torch.float64)  # (256,)
        n = hist.sum()
        mean = (hist * levels).sum() / n
        var = (hist * (levels - mean) ** 2).sum() / n
        means.append(float(mean))
        stds.append(float(var.sqrt()))
    return tuple(means), tuple(stds)


@dataclass
class ImageDataset:
    """A classification set held in memory as uint8 (N, C, H, W) tensors; see `load_dataset`."""

    train_images: torch.Tensor  # uint8 (N, C, H, W), contiguous
    train_labels: torch.Tensor  # int64 (N,)
    test_images: torch.Tensor  # uint8 (M, C, H, W)
    test_labels: torch.Tensor  # int64 (M,)
    classes: list[str]
    mean: tuple[float, ...]  # per-channel mean of the train split, [0, 1] units
    std: tuple[float, ...]  # per-channel std of the train split, [0, 1] units
    name: str
    source: str

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W)."""
        c, h, w = self.train_images.shape[1:]
        return (int(c), int(h), int(w))

    def subset(self, train_size: int, *, seed: int) -> ImageDataset:
        """A seeded random subset of the train split, balanced across classes (counts differ by at most one
        while every class still has images left); the test split is unchanged; mean/std are recomputed."""
        n = self.train_images.shape[0]
        if not isinstance(train_size, int) or not 1 <= train_size <= n:
            raise DataError(f"subset train_size must be an int in [1, {n}] (the train split's size), got {train_size!r}")
        g = torch.Generator().manual_seed(_mix_seed(seed, "subset"))
        labels = self.train_labels
        # each image's rank within its class in a random order; sorting by rank + U[0, 1) then takes one
        # image per class in turn (classes in random order), so the subset is balanced
        perm = torch.randperm(n, generator=g)
        rank = torch.empty(n, dtype=torch.float64)
        for c in range(len(self.classes)):
            members = perm[labels[perm] == c]
            rank[members] = torch.arange(len(members), dtype=torch.float64)
        key = rank + torch.rand(n, generator=g, dtype=torch.float64)
        chosen = torch.argsort(key)[:train_size].sort().values
        images = self.train_images[chosen].contiguous()
        mean, std = _channel_stats(images)
        return replace(self, train_images=images, train_labels=labels[chosen].clone(), mean=mean, std=std)


# ----------------------------------------------------------------------------------------------------
# loading


def load_dataset(
    path: str | os.PathLike | None,
    *,
    cache_dir: str | os.PathLike | None = None,
    synthetic: dict | None = None,
) -> ImageDataset:
    """Read a dataset from a directory or archive (decoded once, then cached), or build the synthetic set.

    path None: `synthetic_dataset(**synthetic)`. Otherwise a CIFAR-10/100 python folder, or an image-folder
    tree (train/<class>/* + test/<class>/* or val/<class>/*; test wins if both exist), as a directory or a
    .tar/.tar.gz/.tgz/.zip archive, at the top or under one top-level folder. Labels are the indices of the
    sorted class-folder names (CIFAR: the label order of its meta file).

    The decoded uint8 arrays are cached in `cache_dir` (default $TRAINACT_CACHE or ~/.cache/trainact), keyed by
    the resolved path, size and mtime of the archive or of every file read from a directory.
    """
    if path is None:
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

    if p.is_dir():
        layout, root = _detect_dir_layout(p)
        tree = _dir_tree(p, root, layout)
        st = [(name, *meta) for name, meta in sorted(tree.meta.items())]
        key = _digest(["dir", str(p), root, layout, st])
        name = _dataset_name(layout, p.name)
    elif p.is_file():
        if not p.name.lower().endswith(_ARCHIVE_SUFFIXES):
            raise DataError(
                f"unknown dataset layout: {p} is a file but not a .tar/.tar.gz/.tgz/.zip archive; understood are "
                f"{_LAYOUTS_UNDERSTOOD}"
            )
        stat = p.stat()
        key = _digest(["archive", str(p), stat.st_size, stat.st_mtime_ns])
        tree, layout, root = None, None, None
        name = None  # known after the layout is read, unless the cache answers first
    else:
        raise DataError(f"dataset path is neither a file nor a directory: {p}")

    cache_root = Path(cache_dir if cache_dir is not None else os.environ.get("TRAINACT_CACHE", "~/.cache/trainact"))
    cache_file = cache_root.expanduser() / f"{_safe(_archive_stem(p) if p.is_file() else p.name)}-{key[:24]}.pt"
    cached = _read_cache(cache_file)
    if cached is not None:
        arrays, classes, name, mean, std = cached
    else:
        if tree is None:
            tree = _archive_tree(p)
            layout, root = _detect_tree_layout(tree, str(p))
            name = _dataset_name(layout, _archive_stem(p))
        log.info("decoding %s (%s layout); the result is cached in %s", p, layout, cache_file)
        if layout == "imagefolder":
            arrays, classes = _read_image_folder(tree, root, str(p))
        else:
            arrays, classes = _read_cifar(tree, root, layout, str(p))
        mean, std = _channel_stats(arrays[0])
        _write_cache(cache_file, arrays, classes, name, mean, std)
    train_images, train_labels, test_images, test_labels = arrays
    return ImageDataset(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
        mean=mean,
        std=std,
        name=name,
        source=str(p),
    )


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


def _mix_seed(seed: int, *salt: object) -> int:
    """A 63-bit generator seed from (seed, salt...), stable across processes and platforms."""
    return int.from_bytes(hashlib.sha256(repr((int(seed), *salt)).encode()).digest()[:8], "little") >> 1


# --- the file trees of directories and archives -------------------------------------------------------


@dataclass
class _Tree:
    """The regular files (POSIX names relative to the source) and directories of a directory or archive."""

    files: list[str]  # in storage order (the cheap order to read them in)
    dirs: set[str]  # explicit and implied directories, no trailing slash
    read: Callable[[list[str]], Iterator[tuple[str, bytes]]]  # yields (name, bytes) for the names, any order
    meta: dict[str, tuple[int, int]]  # name -> (size, mtime_ns); directories only, for the cache key


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


def _archive_tree(p: Path) -> _Tree:
    if p.name.lower().endswith(".zip"):
        try:
            zf = zipfile.ZipFile(p)
            infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"cannot read zip archive {p}: {e}") from e
        files = [i.filename for i in infos if not i.is_dir() and not _skip(i.filename)]
        dirs = {i.filename.rstrip("/") for i in infos if i.is_dir() and not _skip(i.filename)}

        def read(names: list[str]) -> Iterator[tuple[str, bytes]]:
            with zf:
                for name in names:
                    try:
                        yield name, zf.read(name)
                    except (zipfile.BadZipFile, OSError, RuntimeError) as e:  # bad CRC, truncated member
                        raise DataError(f"cannot read {name} in {p}: {e}") from e

        return _Tree(files, _implied_dirs(files, dirs), read, {})

    try:
        tf = tarfile.open(p, "r:*")
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
        with tf:
            for name in wanted:
                try:
                    yield name, tf.extractfile(by_name[name]).read()
                except (tarfile.TarError, OSError, EOFError) as e:
                    raise DataError(f"cannot read {name} in {p}: {e}") from e

    return _Tree(files, _implied_dirs(files, dirs), read, {})


def _detect(is_file: Callable[[str], bool], is_dir: Callable[[str], bool], top_dirs: list[str]) -> tuple[str, str] | None:
    """(layout, root prefix ending in '/' or '') of the first understood layout at the top or one folder down."""
    for base in [""] + [d + "/" for d in sorted(top_dirs)]:
        for prefix in (base, base + "cifar-10-batches-py/"):
            if all(is_file(prefix + f) for f in _CIFAR10_FILES):
                return "cifar10", prefix
        for prefix in (base, base + "cifar-100-python/"):
            if all(is_file(prefix + f) for f in _CIFAR100_FILES):
                return "cifar100", prefix
        if is_dir(base + "train") and (is_dir(base + "test") or is_dir(base + "val")):
            return "imagefolder", base
    return None


def _unknown_layout(where: str, found: list[str]) -> DataError:
    shown = ", ".join(found[:12]) + (f", ... ({len(found)} entries)" if len(found) > 12 else "")
    hint = ""
    if any(f.rstrip("/").split("/")[-1] == "train" for f in found):
        hint = " (there is a train/ folder but neither test/ nor val/ beside it)"
    return DataError(
        f"unknown dataset layout in {where}{hint}: understood are {_LAYOUTS_UNDERSTOOD}; found: [{shown or 'nothing'}]"
    )


def _detect_tree_layout(tree: _Tree, where: str) -> tuple[str, str]:
    files = set(tree.files)
    top = sorted({d for d in tree.dirs if "/" not in d})
    found = _detect(files.__contains__, tree.dirs.__contains__, top)
    if found is None:
        entries = sorted({n.split("/")[0] + ("/" if "/" in n else "") for n in tree.files} | {d + "/" for d in top})
        entries += sorted(d + "/" for d in tree.dirs if d.count("/") == 1)
        raise _unknown_layout(where, entries)
    return found


def _detect_dir_layout(p: Path) -> tuple[str, str]:
    top = [e.name for e in os.scandir(p) if e.is_dir() and not _skip(e.name)]
    found = _detect(lambda n: (p / n).is_file(), lambda n: (p / n).is_dir(), top)
    if found is None:
        entries = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(p) if not _skip(e.name))
        entries += sorted(f"{d}/{e.name}/" for d in top for e in os.scandir(p / d) if e.is_dir())
        raise _unknown_layout(str(p), entries)
    return found


def _dir_tree(p: Path, root: str, layout: str) -> _Tree:
    """The files the layout reads (only those: the cache key must not depend on unrelated neighbours)."""
    if layout == "imagefolder":
        split = "test" if (p / root / "test").is_dir() else "val"
        subtrees = [root + "train", root + split]
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


def _import_pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "reading image folders needs Pillow: pip install 'trainact[harness]'"
        ) from e
    return Image


def _read_image_folder(tree: _Tree, root: str, where: str):
    Image = _import_pil()
    test_split = "test" if root + "test" in tree.dirs else "val"
    splits = {}
    for split in ("train", test_split):
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

    names = [f for _, f in splits["train"][2]] + [f for _, f in splits[test_split][2]]
    labels = [index[c] for c, _ in splits["train"][2]] + [index[c] for c, _ in splits[test_split][2]]
    slot = {name: i for i, name in enumerate(names)}
    out = None  # (N, H, W, 3) uint8
    gray = torch.zeros(len(names), dtype=torch.bool)
    first = None  # (name, w, h)
    for name, data in tree.read(names):
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                is_gray = im.mode in _GRAY_MODES
                im = im.convert("L" if is_gray else "RGB")
        except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad files
            raise DataError(f"cannot decode image {name} in {where}: {type(e).__name__}: {e}") from e
        w, h = im.size
        if first is None:
            first = (name, w, h)
            out = torch.empty((len(names), h, w, 3), dtype=torch.uint8)
        elif (w, h) != first[1:]:
            raise DataError(
                f"all images must share one size: {name} is {w}x{h} but {first[0]} is {first[1]}x{first[2]} "
                f"(in {where})"
            )
        pixels = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(h, w, -1)  # (H, W, 1|3)
        i = slot[name]
        out[i] = pixels  # a gray image broadcasts to 3 channels
        gray[i] = is_gray
    if bool(gray.all()):
        out = out[..., :1]
    images = out.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    labels_t = torch.tensor(labels, dtype=torch.int64)
    n_train = len(splits["train"][2])
    train = (images[:n_train].clone(), labels_t[:n_train].clone())
    return (*train, images[n_train:].clone(), labels_t[n_train:].clone()), classes


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


# --- the cache ----------------------------------------------------------------------------------------


def _read_cache(path: Path):
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        arrays = tuple(d[k] for k in ("train_images", "train_labels", "test_images", "test_labels"))
        ok = (
            d.get("version") == _CACHE_VERSION
            and all(isinstance(a, torch.Tensor) for a in arrays)
            and arrays[0].dtype == arrays[2].dtype == torch.uint8
            and arrays[1].dtype == arrays[3].dtype == torch.int64
            and arrays[0].dim() == arrays[2].dim() == 4
            and arrays[0].shape[0] == arrays[1].shape[0]
            and arrays[2].shape[0] == arrays[3].shape[0]
            and all(isinstance(c, str) for c in d["classes"])
            and isinstance(d["name"], str)
            and len(d["mean"]) == len(d["std"]) == arrays[0].shape[1]
        )
        if not ok:
            raise ValueError("unexpected contents")
    except Exception as e:
        warnings.warn(f"ignoring unreadable dataset cache {path} ({type(e).__name__}: {e}); rebuilding it")
        return None
    mean = tuple(float(m) for m in d["mean"])
    std = tuple(float(v) for v in d["std"])
    return tuple(a.contiguous() for a in arrays), list(d["classes"]), d["name"], mean, std


def _write_cache(path: Path, arrays, classes: list[str], name: str, mean, std) -> None:
    payload = dict(
        version=_CACHE_VERSION,
        train_images=arrays[0],
        train_labels=arrays[1],
        test_images=arrays[2],
        test_labels=arrays[3],
        classes=list(classes),
        name=name,
        mean=list(mean),
        std=list(std),
    )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(payload, f)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is as readable as the data it holds
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as e:
        warnings.warn(f"could not write the dataset cache {path}: {e}; the next load decodes again")


# ----------------------------------------------------------------------------------------------------
# the synthetic set

_SYNTHETIC_PARAMS = ("seed", "num_classes", "train_size", "test_size", "image_size", "channels")
_PATTERNS = ("grating", "plaid", "checker", "rings")
# the knobs that set how hard the synthetic set is (tuned so a width-16 CIFAR ResNet-18 is far from 100 %)
_DIFFICULTY = dict(theta_jitter=0.08, freq_jitter=0.10, window=(0.25, 0.6), clutter=0.3, noise=(0.05, 0.25))


def _class_prototypes(num_classes: int) -> dict[str, torch.Tensor]:
    """Fixed per-class structure (independent of the seed): pattern kind, orientation, frequency, angle."""
    c = torch.arange(num_classes, dtype=torch.float64)
    golden = (math.sqrt(5) - 1) / 2
    return dict(
        kind=torch.arange(num_classes) % len(_PATTERNS),
        theta=math.pi * ((c * golden) % 1.0),  # well spread orientations for any K
        freq=3.5 + 4.5 * ((c * golden * 3.7 + 0.31) % 1.0),  # cycles per image, 3.5 .. 8
        delta=math.pi * (0.25 + 0.25 * ((c * golden * 1.9) % 1.0)),  # second grating at +45 .. 90 degrees
    )


def _synthetic_images(n: int, g: torch.Generator, num_classes: int, size: int, channels: int, difficulty: dict):
    """n images (n, C, S, S) uint8 and labels (n,) int64; every random draw comes from `g`, in a fixed order."""
    proto = _class_prototypes(num_classes)
    labels = torch.arange(n) % num_classes
    labels = labels[torch.randperm(n, generator=g)]
    two_pi = 2 * math.pi

    def u(lo: float, hi: float, *shape: int) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(n, *shape, generator=g)

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size - 0.5  # pixel centres in [-0.5, 0.5)
    xx = coords.view(1, 1, 1, size)
    yy = coords.view(1, 1, size, 1)

    def wave(freq: torch.Tensor, theta: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        """sin(2 pi f (x cos t + y sin t) + phase) for m parameter sets (m,) -> (m, 1, S, S)."""
        m = freq.shape[0]
        ax = (two_pi * freq * torch.cos(theta)).view(m, 1, 1, 1) * xx + phase.view(m, 1, 1, 1)  # (m, 1, 1, S)
        ay = (two_pi * freq * torch.sin(theta)).view(m, 1, 1, 1) * yy  # (m, 1, S, 1)
        return torch.sin(ax + ay)  # (m, 1, S, S)

    # every draw is made for all n images, so the stream does not depend on the class mix
    kind = proto["kind"][labels]
    theta = proto["theta"][labels].float() + difficulty["theta_jitter"] * torch.randn(n, generator=g)
    freq = proto["freq"][labels].float() * torch.exp(difficulty["freq_jitter"] * torch.randn(n, generator=g))
    theta2 = theta + proto["delta"][labels].float()
    phase1, phase2 = u(0, two_pi), u(0, two_pi)
    cy, cx = u(-0.3, 0.3), u(-0.3, 0.3)
    sigma = u(*difficulty["window"])
    d_freq, d_theta, d_phase, d_amp = u(1.5, 7.5), u(0, math.pi), u(0, two_pi), u(0.0, difficulty["clutter"])
    e_theta, e_offset, e_sharp, e_amp = u(0, two_pi), u(-0.3, 0.3), u(5, 40), u(0.0, difficulty["clutter"])
    noise_std = u(*difficulty["noise"])
    tint1, tint2 = u(0.3, 1.0, channels), u(0.3, 1.0, channels)  # (n, C) random colours
    contrast = torch.exp(u(math.log(0.05), 0.0))  # log-uniform 0.05 .. 1
    room = 0.5 * 0.7 * contrast  # brightness keeps most of the pattern inside [0, 1]; some clipping stays
    brightness = room + (1 - 2 * room) * torch.rand(n, generator=g)
    colour_shift = u(-0.1, 0.1, channels) * contrast.view(n, 1)  # (n, C)
    noise = torch.randn(n, channels, size, size, generator=g)

    # the class structure: one texture per class, computed only for the images of each kind; every kind has
    # about the RMS of a sinusoid, so the pixel statistics do not give the class away
    pattern = torch.empty(n, 1, size, size)
    r2 = (yy - cy.view(n, 1, 1, 1)) ** 2 + (xx - cx.view(n, 1, 1, 1)) ** 2  # (n, 1, S, S) distance² to the window centre
    for k, name in enumerate(_PATTERNS):
        i = (kind == k).nonzero().squeeze(1)
        if i.numel() == 0:
            continue
        if name == "grating":
            p = wave(freq[i], theta[i], phase1[i])
        elif name == "plaid":
            p = (wave(freq[i], theta[i], phase1[i]) + wave(freq[i], theta2[i], phase2[i])) / math.sqrt(2)
        elif name == "checker":
            p = torch.tanh(3 * wave(freq[i], theta[i], phase1[i]) * wave(freq[i], theta2[i], phase2[i]))
        else:  # rings around the window centre
            p = torch.sin(two_pi * freq[i].view(-1, 1, 1, 1) * r2[i].sqrt() + phase1[i].view(-1, 1, 1, 1))
        pattern[i] = p
    pattern *= torch.exp(r2 * (-0.5 / sigma**2).view(n, 1, 1, 1))  # in a random Gaussian window
    # class-independent clutter: a random grating and a random soft edge
    edge = torch.tanh(
        (xx * torch.cos(e_theta).view(n, 1, 1, 1) + yy * torch.sin(e_theta).view(n, 1, 1, 1) - e_offset.view(n, 1, 1, 1))
        * e_sharp.view(n, 1, 1, 1)
    )  # (n, 1, S, S)
    clutter = wave(d_freq, d_theta, d_phase) * d_amp.view(n, 1, 1, 1) + edge * e_amp.view(n, 1, 1, 1)

    # colour, noise, then contrast and brightness; the amplitude bound keeps the signal within [-1, 1] mostly
    bound = 1.0 + d_amp + e_amp + 2.0 * noise_std  # (n,)
    gain = (0.5 * 255.0 * contrast / bound).view(n, 1, 1, 1)
    images = pattern * tint1.view(n, channels, 1, 1)  # (n, C, S, S)
    images.addcmul_(clutter, tint2.view(n, channels, 1, 1))
    images.addcmul_(noise, noise_std.view(n, 1, 1, 1))
    images.mul_(gain).add_((255.0 * (brightness.view(n, 1) + colour_shift)).view(n, channels, 1, 1))
    images = images.round_().clamp_(0, 255).to(torch.uint8)
    return images.contiguous(), labels.to(torch.int64)


def synthetic_dataset(
    *,
    seed: int = 0,
    num_classes: int = 10,
    train_size: int = 5000,
    test_size: int = 1000,
    image_size: int = 32,
    channels: int = 3,
) -> ImageDataset:
    """A seeded, procedurally generated classification set (no files; deterministic given the arguments).

    Each class is a fixed texture (an oriented grating, a plaid, a checkerboard-like product of two gratings,
    or concentric rings, each with its own orientation and spatial frequency), shown in a random Gaussian
    window at a random position and phase, with orientation/frequency jitter, class-independent clutter
    (a random grating and a random edge), random colours and pixel noise. Class identity is in the structure
    only: every image gets a log-uniform random contrast in 0.05..1 and a random brightness, so dim, faint and
    bright images are common, which is the situation TrAct is about. Labels are balanced (i mod K, shuffled).
    """
    for key, value, lo in (
        ("num_classes", num_classes, 2),
        ("train_size", train_size, 1),
        ("test_size", test_size, 1),
        ("image_size", image_size, 4),
        ("channels", channels, 1),
    ):
        if not isinstance(value, int) or value < lo:
            raise DataError(f"synthetic dataset {key} must be an int >= {lo}, got {value!r}")
    g = torch.Generator().manual_seed(_mix_seed(seed, "synthetic"))
    train_images, train_labels = _synthetic_images(train_size, g, num_classes, image_size, channels, _DIFFICULTY)
    test_images, test_labels = _synthetic_images(test_size, g, num_classes, image_size, channels, _DIFFICULTY)
    mean, std = _channel_stats(train_images)
    proto = _class_prototypes(num_classes)
    classes = [f"{_PATTERNS[int(k)]}-{i}" for i, k in enumerate(proto["kind"])]
    return ImageDataset(
        train_images=train_images,
        train_labels=train_labels,
        test_images=test_images,
        test_labels=test_labels,
        classes=classes,
        mean=mean,
        std=std,
        name="synthetic",
        source=(
            f"synthetic(seed={seed}, num_classes={num_classes}, train_size={train_size}, test_size={test_size}, "
            f"image_size={image_size}, channels={channels})"
        ),
    )


# ----------------------------------------------------------------------------------------------------
# the loader


def input_affine(mean: Sequence[float], std: Sequence[float], input_range: str,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (1, C, 1, 1) float32: a uint8 image x becomes the input x * scale + shift.

    standardized: (x / 255 - mean) / std per channel; unit: x / 255; byte: x."""
    c = len(mean)
    std_t = torch.tensor([float(s) for s in std], dtype=torch.float32)
    mean_t = torch.tensor([float(m) for m in mean], dtype=torch.float32)
    if input_range == "standardized":  # x * scale + shift == (x / 255 - mean) / std
        scale, shift = 1.0 / (255.0 * std_t), -mean_t / std_t
    elif input_range == "unit":
        scale, shift = torch.full((c,), 1.0 / 255.0), torch.zeros(c)
    else:
        scale, shift = torch.ones(c), torch.zeros(c)
    return scale.view(1, c, 1, 1).to(device), shift.view(1, c, 1, 1).to(device)


class BatchLoader:
    """In-memory batches in the airbench style: the split lives on `device` as uint8, an epoch is one seeded
    permutation plus slicing, and random crop (zero padding `crop_padding`, like torchvision's
    RandomCrop(size, padding=4)) and horizontal flip (p = 0.5) are batched tensor ops.

        loader = BatchLoader(ds.train_images, ds.train_labels, batch_size=128, train=True,
                             mean=ds.mean, std=ds.std, device=device, seed=seed)
        for x, y in loader.epoch(epoch):  # the same batches for the same (seed, epoch), e.g. after a resume
            ...

    The permutation and the augmentation draws come from a CPU generator seeded by (seed, epoch), drawn for the
    whole epoch, so they do not depend on the device, on world_size, or on how far a previous run got.
    input_range: "standardized" (x/255 - mean)/std per channel, "unit" x/255, "byte" x in [0, 255].

    Distributed: every rank builds the same permutation; a global batch is batch_size * world_size consecutive
    entries of it, and rank r takes entries [r*batch_size, (r+1)*batch_size). A final partial global batch is
    split into world_size near-equal parts (dropped if it has fewer than world_size images, or if drop_last).
    Evaluation (train=False: no shuffling, no augmentation) gives rank r the images r, r + world_size, ...,
    so every image is seen exactly once across ranks (ranks may differ by one batch).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
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
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {got}")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must be a 1-d tensor with one entry per image ({images.shape[0]}), got {got}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
        if input_range not in INPUT_RANGES:
            raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
        c = images.shape[1]
        if len(mean) != c or len(std) != c:
            raise ValueError(f"mean and std need one value per channel ({c}), got {len(mean)} and {len(std)}")
        if not all(float(s) > 0 for s in std):
            raise ValueError(f"std must be > 0 for every channel, got {tuple(std)}")
        if not isinstance(crop_padding, int) or crop_padding < 0:
            raise ValueError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
        if not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
        if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
            raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")
        self.batch_size, self.train, self.augment = batch_size, bool(train), bool(augment)
        self.input_range, self.crop_padding, self.dtype = input_range, crop_padding, dtype
        self.seed, self.drop_last, self.rank, self.world_size = int(seed), bool(drop_last), rank, world_size
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()  # uint8 (N, C, H, W), moved once
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self._scale, self._shift = input_affine(mean, std, input_range, self.device)
        if self.train and len(self) == 0:
            raise ValueError(
                f"no batches: {images.shape[0]} images, batch_size {batch_size} x world_size {world_size}"
                + (" with drop_last" if drop_last else "")
            )

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        n, bs, ws = self.num_images, self.batch_size, self.world_size
        if self.train:
            full, rem = divmod(n, bs * ws)
            return full + int(not self.drop_last and rem >= ws)
        shard = len(range(self.rank, n, ws))
        return shard // bs if self.drop_last else -(-shard // bs)

    def _positions(self) -> Iterator[slice | torch.Tensor]:
        """This rank's batches as positions into the epoch's order (a permutation, or the identity for eval)."""
        n, bs, ws, r = self.num_images, self.batch_size, self.world_size, self.rank
        if self.train:
            full, rem = divmod(n, bs * ws)
            for b in range(full):
                start = b * bs * ws + r * bs
                yield slice(start, start + bs)
            if not self.drop_last and rem >= ws:
                yield torch.tensor_split(torch.arange(full * bs * ws, n), ws)[r]
        else:
            shard = torch.arange(r, n, ws)
            for b in range(len(self)):
                yield shard[b * bs : (b + 1) * bs]

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs (B, C, H, W) `dtype`, labels (B,) int64) on `device` for this rank."""
        n, dev = self.num_images, self.device
        augment = self.train and self.augment
        if self.train:
            g = torch.Generator().manual_seed(_mix_seed(self.seed, "epoch", int(epoch)))
            order = torch.randperm(n, generator=g)
            if augment:
                span = 2 * self.crop_padding + 1
                dy = torch.randint(0, span, (n,), generator=g).to(dev)
                dx = torch.randint(0, span, (n,), generator=g).to(dev)
                flip = (torch.rand(n, generator=g) < 0.5).to(dev)
            order = order.to(dev)
        else:
            order = None
        for pos in self._positions():
            if isinstance(pos, torch.Tensor):
                pos = pos.to(dev)
            idx = order[pos] if order is not None else pos
            x = self.images[idx]  # uint8 (B, C, H, W)
            if augment:
                x = self._crop_flip(x, dy[pos], dx[pos], flip[pos])
            x = (x.to(torch.float32) * self._scale + self._shift).to(self.dtype)
            yield x, self.labels[idx]

    def _crop_flip(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Per image: zero-pad by p, take the H x W window at (dy, dx), mirror it if flip. One gather."""
        b, c, h, w = x.shape
        p = self.crop_padding
        if p:
            x = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = dy.view(b, 1) + ar_h  # (B, H)
        cols = dx.view(b, 1) + torch.where(flip.view(b, 1), w - 1 - ar_w, ar_w)  # (B, W)
        bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
        return x[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]  # (B, C, H, W)


def measure_loader_throughput(loader: BatchLoader, epochs: int = 1) -> float:
    """Images per second that `loader` delivers (epochs 0 .. epochs-1, nothing else done with the batches)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    sync = torch.cuda.synchronize if loader.device.type == "cuda" else (lambda: None)
    sync()
    count, start = 0, time.perf_counter()
    last = None
    for e in range(epochs):
        for x, _ in loader.epoch(e):
            count += x.shape[0]
            last = x
    if last is not None and loader.device.type not in ("cpu", "cuda"):
        last.sum().item()  # other devices: force the queued work
    sync()
    return count / max(time.perf_counter() - start, 1e-9)
