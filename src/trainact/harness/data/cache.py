"""The decoded-array cache: a dataset decoded once is stored as one torch file, keyed by its source's contents.

`write_cache` stores (arrays, classes, name, mean, std); `read_cache` returns them, or None (with a warning when the
file is unreadable or of another CACHE_VERSION) so that the caller decodes again. Change what is stored and the
version must change with it: the key of every cache file includes it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from trainact.harness.env import save_atomic

CACHE_VERSION = 2  # 2: image folders always decoded to RGB (an all-gray set was kept at one channel)


def read_cache(path: Path):
    if not path.is_file():
        return None
    try:
        d = torch.load(path, map_location="cpu", weights_only=True)
        arrays = tuple(d[k] for k in ("train_images", "train_labels", "test_images", "test_labels"))
        ok = (
            d.get("version") == CACHE_VERSION
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
        warnings.warn(f"ignoring unreadable dataset cache {path} ({type(e).__name__}: {e}); rebuilding it", stacklevel=2)
        return None
    mean = tuple(float(m) for m in d["mean"])
    std = tuple(float(v) for v in d["std"])
    return tuple(a.contiguous() for a in arrays), list(d["classes"]), d["name"], mean, std


def write_cache(path: Path, arrays, classes: list[str], name: str, mean, std) -> None:
    payload = dict(
        version=CACHE_VERSION,
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
        save_atomic(path, payload)
    except OSError as e:
        warnings.warn(f"could not write the dataset cache {path}: {e}; the next load decodes again", stacklevel=2)
