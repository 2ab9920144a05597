"""Shared test helpers: tiny datasets written to disk (image-folder trees, CIFAR python folders, archives).

Each writer returns the tensors a correct reader must produce, built independently of the code under test.
Pillow and numpy are imported when a writer runs (the test modules skip without them).
"""
from __future__ import annotations

import pickle
import tarfile
import zipfile
from pathlib import Path

import torch


def save_image(path: Path, img: torch.Tensor, **kw) -> None:
    """Save a (C, H, W) uint8 tensor with Pillow (format from the suffix)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    arr = img.permute(1, 2, 0).numpy()  # (H, W, C)
    Image.fromarray(arr[..., 0] if img.shape[0] == 1 else arr).save(path, **kw)


def make_tree(root: Path, *, classes=("cat", "dog", "frog"), counts=(("train", 3), ("test", 2)), hw=(6, 8),
              channels=3, seed=0, ext=".png") -> dict:
    """Write root/<split>/<class>/imgNN<ext>; return the expected tensors (sorted by class, then file)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for split, n in counts:
        images, labels = [], []
        for ci, cls in enumerate(sorted(classes)):
            for i in range(n):
                img = torch.randint(0, 256, (channels, *hw), generator=g, dtype=torch.uint8)
                save_image(root / split / cls / f"img{i:02d}{ext}", img)
                images.append(img)
                labels.append(ci)
        out[split] = (torch.stack(images), torch.tensor(labels))
    return out


def make_archive(src: Path, dest: Path, top: str | None) -> Path:
    """Pack src/{train,test} into dest (.tar/.tar.gz/.tgz/.zip), under folder `top` or at the root."""
    names = sorted(p for p in src.rglob("*"))
    arc = lambda p: (f"{top}/" if top else "") + p.relative_to(src).as_posix()  # noqa: E731
    if dest.name.endswith(".zip"):
        with zipfile.ZipFile(dest, "w") as zf:  # files only: directories are implied
            for p in names:
                if p.is_file():
                    zf.write(p, arc(p))
    else:
        mode = "w:gz" if dest.name.endswith(("gz", "tgz")) else "w"
        with tarfile.open(dest, mode) as tf:
            for p in names:  # directories become members too
                tf.add(p, arc(p), recursive=False)
    return dest


def _cifar_rows(images: torch.Tensor):
    """CIFAR's row format, built independently: per image R plane, G plane, B plane, each row-major."""
    import numpy as np

    return np.stack([np.concatenate([img[c].numpy().ravel() for c in range(3)]) for img in images]).astype(np.uint8)


def make_cifar(root: Path, kind: str, *, protocol: int, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    if kind == "cifar10":
        folder, names = root / "cifar-10-batches-py", [f"class{i}" for i in range(10)]
        files = [(f"data_batch_{i}", 2) for i in range(1, 6)] + [("test_batch", 3)]
        label_key, meta_file, meta = b"labels", "batches.meta", {b"label_names": [n.encode() for n in names]}
    else:
        folder, names = root / "cifar-100-python", [f"fine{i}" for i in range(7)]
        files = [("train", 6), ("test", 4)]
        label_key, meta_file = b"fine_labels", "meta"
        meta = {b"fine_label_names": [n.encode() for n in names], b"coarse_label_names": [b"a", b"b"]}
    folder.mkdir(parents=True)
    out = {"train": ([], []), "test": ([], [])}
    for fname, n in files:
        images = torch.randint(0, 256, (n, 3, 32, 32), generator=g, dtype=torch.uint8)
        labels = torch.randint(0, len(names), (n,), generator=g).tolist()
        blob = {b"batch_label": fname.encode(), b"data": _cifar_rows(images), label_key: labels, b"filenames": []}
        if kind == "cifar100":
            blob[b"coarse_labels"] = [0] * n
        (folder / fname).write_bytes(pickle.dumps(blob, protocol=protocol))
        split = "test" if "test" in fname else "train"
        out[split][0].append(images)
        out[split][1].append(torch.tensor(labels))
    (folder / meta_file).write_bytes(pickle.dumps(meta, protocol=protocol))
    return {k: (torch.cat(v[0]), torch.cat(v[1])) for k, v in out.items()} | {"classes": names}
