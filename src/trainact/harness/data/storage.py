"""The files of a data source, one interface for both loaders: a directory, a zip archive or a tar archive.

A `Storage` lists its regular files (`files`: POSIX names relative to the source; hidden files and macOS junk
skipped) and folders (`dirs`), answers `is_file` / `is_dir` (what format detection asks), and reads bytes:
`read_all(names)` in the storage's cheap order (one pass through an archive: the in-memory path) and `read(name)`
one file at random in any process (the streaming path; handles are opened per process and never pickled, nor is
the listing). `random_access` gives a storage that can `read`: itself, or for a compressed tar the files extracted
once into a folder of the cache. Errors are DataErrors naming the file.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator

from .dataset import DataError, log

ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def skip(name: str) -> bool:
    """Hidden files and folders, and macOS archive junk."""
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def archive_stem(p: Path) -> str:
    """The archive's name without its archive suffix (mini.tar.gz -> mini)."""
    lower = p.name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix):
            return p.name[: -len(suffix)]
    return p.stem


def _with_parents(files: list[str], dirs: set[str]) -> set[str]:
    """`dirs` plus every folder a file name implies."""
    out = set(dirs)
    for name in files:
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            out.add("/".join(parts[:i]))
    return out


class Storage:
    """The listing and the reads of one source; see the module docstring."""

    PICKLED: tuple[str, ...] = ("root",)  # what a worker process needs in order to `read`

    def __init__(self, root: str, files: list[str], dirs: set[str]) -> None:
        self.root = root  # the directory or archive, as named in messages
        self.files = files  # in storage order (the cheap order to read them in)
        self.dirs = _with_parents(files, dirs)  # explicit and implied folders, no trailing slash
        self._file_set = set(files)
        self._handle, self._pid = None, None  # `read`'s handle, opened by the process that uses it

    def __getstate__(self) -> dict:
        return {k: self.__dict__[k] for k in self.PICKLED}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, files=[], dirs=set(), _file_set=set(), _handle=None, _pid=None)

    def is_file(self, name: str) -> bool:
        return name in self._file_set

    def is_dir(self, name: str) -> bool:
        return name in self.dirs

    def top_dirs(self) -> list[str]:
        return sorted(d for d in self.dirs if "/" not in d)

    def entries(self) -> list[str]:
        """What an unknown-layout message shows: the top entries, then the folders one level down."""
        top = {n.split("/")[0] + ("/" if "/" in n else "") for n in self.files} | {d + "/" for d in self.top_dirs()}
        top = sorted(top)
        return top + sorted(d + "/" for d in self.dirs if d.count("/") == 1)

    def handle(self, open_handle):
        """This process's handle (opened on first use here: a handle never crosses a fork)."""
        if self._handle is None or self._pid != os.getpid():
            self._handle, self._pid = open_handle(), os.getpid()
        return self._handle

    def read(self, name: str) -> bytes:
        raise NotImplementedError

    def read_all(self, names: list[str]) -> Iterator[tuple[str, bytes]]:
        """(name, bytes) for each of `names`, in any order."""
        for name in names:
            yield name, self.read(name)

    def random_access(self, names: list[str], dest: Path) -> Storage:
        """A storage whose `read` serves `names` (`dest`: where files may be extracted to)."""
        return self


class DirStorage(Storage):
    """A directory: `is_file` / `is_dir` ask the file system until `select` lists the files a format reads."""

    def __init__(self, root: str) -> None:
        super().__init__(root, [], set())
        self.meta: dict[str, tuple[int, int]] = {}  # listed name -> (size, mtime_ns), for the cache key

    def is_file(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.root, name))

    def is_dir(self, name: str) -> bool:
        return os.path.isdir(os.path.join(self.root, name))

    def top_dirs(self) -> list[str]:
        return sorted(e.name for e in os.scandir(self.root) if e.is_dir() and not skip(e.name))

    def entries(self) -> list[str]:
        out = sorted(e.name + ("/" if e.is_dir() else "") for e in os.scandir(self.root) if not skip(e.name))
        return out + sorted(f"{d}/{e.name}/" for d in self.top_dirs()
                            for e in os.scandir(os.path.join(self.root, d)) if e.is_dir())

    def select(self, files: list[str], folders: list[str]) -> DirStorage:
        """List `files` and everything under `folders` (only those: the cache key must not depend on unrelated
        neighbours); returns self."""
        listed, dirs = [], set()
        for name in files:
            listed.append(name)
            st = os.stat(os.path.join(self.root, name))
            self.meta[name] = (st.st_size, st.st_mtime_ns)
        for folder in folders:
            for dirpath, dirnames, filenames in os.walk(os.path.join(self.root, folder)):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                dirnames[:] = sorted(d for d in dirnames if not skip(d))
                dirs.add(rel)
                for fn in sorted(filenames):
                    if not skip(fn):
                        st = os.stat(os.path.join(dirpath, fn))
                        listed.append(f"{rel}/{fn}")
                        self.meta[f"{rel}/{fn}"] = (st.st_size, st.st_mtime_ns)
        Storage.__init__(self, self.root, listed, dirs)
        return self

    def read(self, name: str) -> bytes:
        path = os.path.join(self.root, name)
        try:
            with open(path, "rb") as f:
                return f.read()
        except OSError as e:
            raise DataError(f"cannot read {path}: {e}") from e


class ZipStorage(Storage):
    """A zip archive: members are addressable by name, through one ZipFile per process."""

    def __init__(self, root: str) -> None:
        try:
            with zipfile.ZipFile(root) as zf:
                infos = zf.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise DataError(f"cannot read zip archive {root}: {e}") from e
        files = [i.filename for i in infos if not i.is_dir() and not skip(i.filename)]
        super().__init__(root, files, {i.filename.rstrip("/") for i in infos if i.is_dir() and not skip(i.filename)})

    def read(self, name: str) -> bytes:
        zf = self.handle(lambda: zipfile.ZipFile(self.root))
        try:
            return zf.read(name)
        except (zipfile.BadZipFile, OSError, RuntimeError, KeyError) as e:  # bad CRC, truncated member
            raise DataError(f"cannot read {name} in {self.root}: {e}") from e


class TarStorage(Storage):
    """A tar archive. Uncompressed: a member is read at its offset (`os.pread` on one descriptor per process, no
    shared seek). Compressed (gzip, bz2, xz): only `read_all` in archive order, or the files extracted once."""

    PICKLED = ("root", "offsets")

    def __init__(self, root: str) -> None:
        try:
            with tarfile.open(root, "r:*") as tf:
                members = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"cannot read tar archive {root}: {e}") from e
        self._members = {}
        for m in members:
            name = m.name[2:] if m.name.startswith("./") else m.name
            if m.isfile() and not skip(name):
                self._members[name] = m
        dirs = {(m.name[2:] if m.name.startswith("./") else m.name).rstrip("/") for m in members if m.isdir()}
        super().__init__(root, list(self._members), {d for d in dirs if d and d != "." and not skip(d)})
        with open(root, "rb") as f:
            compressed = f.read(6).startswith((b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00"))
        # name -> (offset of the data, size); None when the archive cannot be read at random
        self.offsets = None if compressed else {n: (m.offset_data, m.size) for n, m in self._members.items()
                                                 if not m.issparse()}

    def read(self, name: str) -> bytes:
        fd = self.handle(lambda: os.open(self.root, os.O_RDONLY))
        offset, size = self.offsets[name]
        data = os.pread(fd, size, offset)
        if len(data) != size:
            raise DataError(f"cannot read {name} in {self.root}: the archive ends after {len(data)} of {size} bytes")
        return data

    def read_all(self, names: list[str]) -> Iterator[tuple[str, bytes]]:
        # archive order: a compressed stream can only seek forward cheaply
        wanted = sorted(names, key=lambda n: self._members[n].offset)
        with tarfile.open(self.root, "r:*") as tf:
            for name in wanted:
                try:
                    yield name, tf.extractfile(self._members[name]).read()
                except (tarfile.TarError, OSError, EOFError) as e:
                    raise DataError(f"cannot read {name} in {self.root}: {e}") from e

    def random_access(self, names: list[str], dest: Path) -> Storage:
        if self.offsets is not None:
            sparse = [n for n in names if n not in self.offsets]
            if sparse:
                raise DataError(f"{sparse[0]} in {self.root} is a sparse tar member, which cannot be read by offset; "
                                "repack the archive or use --loader memory")
            return self
        self._extract(names, dest)
        return DirStorage(str(dest))

    def _extract(self, names: list[str], dest: Path) -> None:
        """Write `names` into dest, once: into a temporary folder renamed when complete."""
        if (dest / ".complete").is_file():
            return
        for name in names:
            if name.startswith("/") or any(part in ("", "..") for part in name.split("/")):
                raise DataError(f"refusing to extract {name!r} from {self.root}: the path would leave {dest}")
        log.info("extracting the images of %s once into %s (a compressed tar cannot be read at random)",
                 self.root, dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=dest.name + ".tmp-"))
        try:
            for name, data in self.read_all(names):
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


def open_archive(p: Path) -> Storage:
    """The storage of a .zip or tar archive (listed now: the archive is read through once)."""
    return ZipStorage(str(p)) if p.name.lower().endswith(".zip") else TarStorage(str(p))
