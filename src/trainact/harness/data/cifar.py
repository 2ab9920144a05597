"""CIFAR-10 / CIFAR-100 python pickles, unpickled safely (arrays, lists, dicts and strings only)."""

from __future__ import annotations

import io
import pickle

import torch

from .dataset import DataError
from .trees import _Tree

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
