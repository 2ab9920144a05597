"""The files of a data set: directories and archives as one tree of names, and which layout they hold."""

from __future__ import annotations

import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional


from .dataset import DataError

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


