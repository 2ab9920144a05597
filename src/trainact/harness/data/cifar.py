"""The CIFAR-10 / CIFAR-100 python formats (`CIFAR10`, `CIFAR100`): their batch pickles, unpickled safely.

A folder of batch files (cifar-10-batches-py/: data_batch_1..5, test_batch, batches.meta; cifar-100-python/: train,
test, meta) is decoded whole into (N, 3, 32, 32) uint8 arrays, labels in the meta file's class order. Only numpy
arrays, lists, dicts and strings are unpickled (the files come from the user). Held in memory, never streamed;
--image-size and --val-fraction do not apply.
"""

from __future__ import annotations

import io
import pickle

import torch

from .dataset import DataError
from .readers import Reader

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


class CifarReader(Reader):
    """A CIFAR python folder: `files` (train batches, test batches, meta) with labels under `label_key` and the
    class names under `names_key` of the meta file."""

    def __init__(self, key: str, title: str, folder: str, train: list[str], test: list[str], meta: str,
                 label_key: str, names_key: str) -> None:
        self.key, self.title, self.folder = key, title, folder
        self.train, self.test, self.meta = train, test, meta
        self.label_key, self.names_key = label_key, names_key
        self.summary = f"a {title} python folder ({folder}/: {', '.join(self.files)})"

    @property
    def files(self) -> list[str]:
        return self.train + self.test + [self.meta]

    def find(self, storage, base, train_only):
        for prefix in (base, f"{base}{self.folder}/"):
            if all(storage.is_file(prefix + f) for f in self.files):
                return prefix
        return None

    def select(self, storage, root):
        return [root + f for f in self.files], []

    def name(self, stem: str) -> str:
        return self.key

    def check(self, storage, root, request, where):
        kind = f"{self.title} python folder"
        if request.image_size is not None:
            raise DataError(f"--image-size {request.image_size} resizes image folders, but {where} is a {kind} "
                            "(32x32 images): drop --image-size")
        if request.val_fraction is not None:
            raise DataError(f"--val-fraction {request.val_fraction:g} holds out part of a train-only image folder, "
                            f"but {where} is a {kind} with its own test split: drop --val-fraction")
        if request.loader == "stream":
            raise DataError(f"--loader stream reads image folders and archives, but {where} is a {kind}, which is "
                            "held in memory (--loader memory or auto)")

    def decode(self, storage, root, where, request, budget):
        blobs = dict(storage.read_all([root + f for f in self.files]))
        meta = _unpickle(blobs[root + self.meta], root + self.meta, where)
        if self.names_key not in meta:
            raise DataError(f"{root + self.meta} in {where} has no {self.names_key!r} entry (keys: {sorted(meta)})")
        classes = [n.decode() if isinstance(n, bytes) else str(n) for n in meta[self.names_key]]
        train = self._split(blobs, root, self.train, len(classes), where)
        return (*train, *self._split(blobs, root, self.test, len(classes), where)), classes

    def _split(self, blobs: dict, root: str, files: list[str], num_classes: int, where: str):
        """(images uint8 (N, 3, 32, 32), labels int64 (N,)) of the batch `files`."""
        import numpy as np

        images, labels = [], []
        for f in files:
            d = _unpickle(blobs[root + f], root + f, where)
            if "data" not in d or self.label_key not in d:
                raise DataError(f"{root + f} in {where} lacks 'data' or {self.label_key!r} (keys: {sorted(d)})")
            data = np.asarray(d["data"])
            lab = np.asarray(d[self.label_key], dtype=np.int64)
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(lab) != len(data):
                raise DataError(
                    f"{root + f} in {where}: expected uint8 data (N, 3072) and N labels, got data {data.dtype} "
                    f"{data.shape} and {len(lab)} labels"
                )
            if len(lab) and (lab.min() < 0 or lab.max() >= num_classes):
                raise DataError(f"{root + f} in {where}: labels outside [0, {num_classes})")
            images.append(torch.from_numpy(np.ascontiguousarray(data)).view(-1, 3, 32, 32))  # (n, 3, 32, 32)
            labels.append(torch.from_numpy(lab))
        return torch.cat(images).contiguous(), torch.cat(labels)


CIFAR10 = CifarReader("cifar10", "CIFAR-10", "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                      ["test_batch"], "batches.meta", "labels", "label_names")
CIFAR100 = CifarReader("cifar100", "CIFAR-100", "cifar-100-python", ["train"], ["test"], "meta", "fine_labels",
                       "fine_label_names")
