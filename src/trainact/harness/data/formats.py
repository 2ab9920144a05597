"""The data formats the harness reads, in detection order, and format detection.

READERS is the one registry: a new format is a `Reader` subclass (readers.py) added here. `detect` asks each
reader, at the top of the source and then in each top-level folder, whether it recognises its layout there; an
unrecognised source is a DataError naming the path, the formats known and what was found.
"""

from __future__ import annotations

from .cifar import CIFAR10, CIFAR100
from .dataset import DataError
from .imagefolder import IMAGE_FOLDER
from .readers import Reader
from .storage import Storage

READERS: tuple[Reader, ...] = (CIFAR10, CIFAR100, IMAGE_FOLDER)


def known_formats() -> str:
    return ("; ".join(r.summary for r in READERS)
            + "; each at the top of the directory/archive or under one top-level folder")


def detect(storage: Storage, where: str, train_only: bool = False) -> tuple[Reader, str]:
    """(reader, root prefix) of the first format recognised at the top of `storage` or one folder down;
    `train_only` (--val-fraction) admits an image folder with train/ alone."""
    top = storage.top_dirs()
    for base in [""] + [d + "/" for d in top]:
        for reader in READERS:
            root = reader.find(storage, base, train_only)
            if root is not None:
                return reader, root
    found = storage.entries()
    shown = ", ".join(found[:12]) + (f", ... ({len(found)} entries)" if len(found) > 12 else "")
    hint = "".join(r.hint(found) for r in READERS)
    raise DataError(f"unknown dataset layout in {where}{hint}: understood are {known_formats()}; "
                    f"found: [{shown or 'nothing'}]")
