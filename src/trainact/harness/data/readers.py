"""What a data format implements: `Reader`, the options it is asked to honour (`Request`) and its results.

A reader recognises its layout in a `Storage` (storage.py: a directory or an archive, at the top or one folder
down), names the files whose size and mtime key the cache, refuses options that do not apply to it, decodes the
whole set into uint8 arrays (the in-memory path) and, if it `streams`, lists (file, label) per image (the
streaming path). Readers are stateless; the known ones, in detection order, are `formats.READERS`.
`Request` validates the options of `load_dataset` once, where they enter the data layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from trainact.harness.config import DEFAULT_MEMORY_BUDGET, LOADERS

from .dataset import DataError
from .storage import Storage

Arrays = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]  # train images, labels, test images, labels


def _is_int(value, low: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


@dataclass(frozen=True)
class Request:
    """The options of `load_dataset`, checked on construction (the flag names are the CLI's)."""

    image_size: Optional[int] = None  # --image-size N: resize to S = round(N / 0.875) squares, feed N x N crops
    val_fraction: Optional[float] = None  # --val-fraction F: hold out F of a train-only image folder
    loader: str = "memory"  # memory | stream | auto
    memory_budget: Optional[int] = None  # bytes of decoded arrays over which "auto" streams
    workers: int = 0  # processes computing a streamed set's channel statistics

    def __post_init__(self) -> None:
        if self.image_size is not None and not _is_int(self.image_size, 1):
            raise DataError(f"--image-size must be an integer >= 1, got {self.image_size!r}")
        f = self.val_fraction
        if f is not None and (isinstance(f, bool) or not isinstance(f, (int, float)) or not 0 < f < 1):
            raise DataError(f"--val-fraction must be a fraction in (0, 1), got {f!r}")
        if self.loader not in LOADERS:
            raise DataError(f"--loader must be one of {', '.join(LOADERS)}, got {self.loader!r}")
        if self.memory_budget is not None and not _is_int(self.memory_budget, 1):
            raise DataError(f"--memory-budget must be a number of bytes >= 1, got {self.memory_budget!r}")
        if not _is_int(self.workers, 0):
            raise DataError(f"--workers must be an integer >= 0, got {self.workers!r}")

    @property
    def budget(self) -> int:
        return DEFAULT_MEMORY_BUDGET if self.memory_budget is None else self.memory_budget

    def key_options(self) -> list:
        """The options that change the decoded arrays, for the cache key (none for the defaults, so that their
        keys stay what they were before the options existed)."""
        out = []
        if self.image_size is not None:
            out.append(("image_size", self.image_size))
        if self.val_fraction is not None:
            out.append(("val_fraction", float(self.val_fraction)))
        return out


@dataclass
class Index:
    """A streamable set as files: (file name, label) per image, each split sorted by class, then name."""

    classes: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]


class OverBudget(Exception):
    """Raised by `Reader.decode` as soon as the arrays are known to exceed the budget it was given."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


class Reader:
    """One data format; subclasses override `find`, `select` and `decode`, and `index` if they stream."""

    key = ""  # in the cache key of a directory and the dataset's default name: never change an existing one
    summary = ""  # the layout in a few words, for the message about an unrecognised source
    streams = False  # whether `index` lists one file per image (--loader stream / auto)

    def find(self, storage: Storage, base: str, train_only: bool) -> Optional[str]:
        """The root of this layout (a prefix ending in '/', or '') if it is at `base` of the storage, else None;
        `train_only` (--val-fraction) admits a layout without a test split."""
        raise NotImplementedError

    def select(self, storage: Storage, root: str) -> tuple[list[str], list[str]]:
        """(files, folders) this reader reads under `root` of a directory: they alone key its cache."""
        raise NotImplementedError

    def hint(self, entries: list[str]) -> str:
        """A parenthesised hint for an unrecognised source whose top entries are `entries`, or ''."""
        return ""

    def name(self, stem: str) -> str:
        """The dataset's name, given the directory's or archive's name."""
        return stem

    def check(self, storage: Storage, root: str, request: Request, where: str) -> None:
        """Raise a DataError naming the flag for an option that does not apply to this source."""

    def decode(self, storage: Storage, root: str, where: str, request: Request,
               budget: Optional[int]) -> tuple[Arrays, list[str]]:
        """(arrays, classes): uint8 (N, 3, H, W) images and int64 (N,) labels per split; with `budget`, raise
        OverBudget as soon as the arrays are known to take more bytes."""
        raise NotImplementedError

    def index(self, storage: Storage, root: str, where: str, request: Request) -> Index:
        """The files and labels of a streamable set (`streams` readers only)."""
        raise NotImplementedError(f"{type(self).__name__} does not stream")
