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
from typing import Callable, Iterator

import torch

from .cache import _CACHE_VERSION, _read_cache, _write_cache
from .dataset import DataError, ImageDataset, _channel_stats, log
from .synthetic import _SYNTHETIC_PARAMS, synthetic_dataset

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
