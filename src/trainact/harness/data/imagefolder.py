"""The image-folder format (`IMAGE_FOLDER`): train/<class>/* with test/<class>/* or val/<class>/* (test wins).

Labels are the indices of the sorted class-folder names; each split is sorted by class, then file name. With
--val-fraction F a folder with train/ alone gets a fixed class-balanced hold-out as its test split. Decoded whole
(the in-memory path: always RGB, --image-size geometry from images.py, one size for all images without it) or
listed file by file for the streaming loader.
"""

from __future__ import annotations

from typing import Optional

import torch

from .dataset import DataError, mix_seed
from .images import decode, resize_size
from .readers import Index, OverBudget, Reader

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm", ".pbm", ".tif", ".tiff", ".webp", ".gif")
TEST_SPLITS = ("test", "val")  # the first one present is the test split


class ImageFolderReader(Reader):
    key = "imagefolder"
    summary = "an image-folder tree train/<class>/* with test/<class>/* or val/<class>/*"
    streams = True

    def find(self, storage, base, train_only):
        if storage.is_dir(base + "train") and (train_only or any(storage.is_dir(base + s) for s in TEST_SPLITS)):
            return base
        return None

    def select(self, storage, root):
        return [], [root + "train"] + [root + s for s in TEST_SPLITS if storage.is_dir(root + s)][:1]

    def hint(self, entries):
        if any(e.rstrip("/").split("/")[-1] == "train" for e in entries):
            return (" (there is a train/ folder but neither test/ nor val/ beside it: --val-fraction F holds out a "
                    "class-balanced fraction F of train/ as the test split)")
        return ""

    def check(self, storage, root, request, where):
        split = test_split(storage, root)
        if request.val_fraction is not None and split is not None:
            raise DataError(f"--val-fraction {request.val_fraction:g} holds out part of train/ when there is no test "
                            f"split, but {where} has its own {root}{split}/: drop --val-fraction")

    def index(self, storage, root, where, request) -> Index:
        split = test_split(storage, root)
        splits = {s: _class_items(storage, f"{root}{s}/") for s in ("train",) + ((split,) if split else ())}
        train_base, classes, _ = splits["train"]
        if not classes:
            raise DataError(f"no class folders in {train_base} of {where}")
        if split:
            test_base, test_classes, _ = splits[split]
            if test_classes != classes:
                raise DataError(
                    f"class folders differ between {train_base} and {test_base} in {where}: "
                    f"only in {train_base}: {sorted(set(classes) - set(test_classes))}; "
                    f"only in {test_base}: {sorted(set(test_classes) - set(classes))}"
                )
        label = {c: i for i, c in enumerate(classes)}
        for base, _, items in splits.values():
            have = {c for c, _ in items}
            empty = [c for c in classes if c not in have]
            if empty:
                raise DataError(f"class folder(s) without images in {where}: {[base + c + '/' for c in empty]} "
                                f"(image files end in {', '.join(IMAGE_SUFFIXES)})")
        train = [(f, label[c]) for c, f in splits["train"][2]]
        if split:
            return Index(classes, train, [(f, label[c]) for c, f in splits[split][2]])
        return Index(classes, *_hold_out(train, classes, request.val_fraction, train_base, where))

    def decode(self, storage, root, where, request, budget):
        index = self.index(storage, root, where, request)
        return decode_items(storage, index, where, image_size=request.image_size, budget=budget), index.classes


def test_split(storage, root: str) -> Optional[str]:
    """The image folder's test split: test/ if there is one, else val/, else None (train only)."""
    return next((s for s in TEST_SPLITS if storage.is_dir(root + s)), None)


def _class_items(storage, base: str) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(base, sorted class folders under base, sorted (class, file) of the image files in them)."""
    classes = sorted(d[len(base):] for d in storage.dirs if d.startswith(base) and "/" not in d[len(base):])
    items = [(f[len(base):].split("/", 1)[0], f) for f in storage.files
             if f.startswith(base) and "/" in f[len(base):] and f.lower().endswith(IMAGE_SUFFIXES)]
    return base, classes, sorted(items)


def _hold_out(items: list, classes: list[str], fraction: float, base: str, where: str) -> tuple[list, list]:
    """(train, test): of each class's n images, k = round(fraction * n) (at least 1, at most n - 1) go to the test
    split, chosen by a permutation seeded by the class name alone (a fixed salt: the same split in every run of
    the folder, whatever the seeds; a larger fraction holds out a superset)."""
    by_class: list[list[str]] = [[] for _ in classes]
    for name, label in items:
        by_class[label].append(name)
    train, test = [], []
    for label, names in enumerate(by_class):
        n = len(names)
        if n < 2:
            raise DataError(f"--val-fraction {fraction:g} needs at least 2 images per class to hold one out, but "
                            f"{base}{classes[label]}/ has {n} (in {where})")
        k = min(max(round(fraction * n), 1), n - 1)
        g = torch.Generator().manual_seed(mix_seed(0, "val-fraction", classes[label]))
        held = set(torch.randperm(n, generator=g)[:k].tolist())
        for j, name in enumerate(names):
            (test if j in held else train).append((name, label))
    return train, test


def decode_items(storage, index: Index, where: str, *, image_size: Optional[int] = None,
                 budget: Optional[int] = None):
    """(train images, train labels, test images, test labels), uint8 (N, 3, H, W) and int64 (N,): always RGB, a
    gray file as 3 equal channels (as the streaming loader feeds it, so both loaders give one model). With
    image_size N: train S x S squares, test N x N (harness/data/images.py); without,
    every image must have one size. budget: raise OverBudget as soon as the arrays are known to exceed it."""
    train_items, test_items = index.train, index.test
    names = [f for f, _ in train_items] + [f for f, _ in test_items]
    n_train = len(train_items)
    slot = {name: i for i, name in enumerate(names)}
    bufs = None  # image_size: (train (n_train, S, S, 3), test (n_test, N, N, 3)) uint8
    out = None  # no image_size: (N, H, W, 3) uint8, allocated at the first image
    if image_size is not None:
        s = resize_size(image_size)
        size = 3 * (n_train * s * s + len(test_items) * image_size * image_size)
        if budget is not None and size > budget:
            raise OverBudget(size)
        bufs = (torch.empty((n_train, s, s, 3), dtype=torch.uint8),
                torch.empty((len(test_items), image_size, image_size, 3), dtype=torch.uint8))
    first = None  # (name, w, h)
    for name, data in storage.read_all(names):
        i = slot[name]
        px, _ = decode(data, name, where, image_size=image_size, split="train" if i < n_train else "test")
        h, w = px.shape[:2]
        if bufs is not None:
            if i < n_train:
                bufs[0][i] = px  # a gray image broadcasts to 3 channels
            else:
                bufs[1][i - n_train] = px
        else:
            if first is None:
                first = (name, w, h)
                if budget is not None and 3 * len(names) * h * w > budget:
                    raise OverBudget(3 * len(names) * h * w)
                out = torch.empty((len(names), h, w, 3), dtype=torch.uint8)
            elif (w, h) != first[1:]:
                raise DataError(
                    f"all images must share one size: {name} is {w}x{h} but {first[0]} is {first[1]}x{first[2]} "
                    f"(in {where}); --image-size N resizes them (test: shorter side to round(N / 0.875), centre "
                    "N x N crop; train: a random N x N crop of that)"
                )
            out[i] = px
    if bufs is not None:
        train_images, test_images = (b.permute(0, 3, 1, 2).contiguous() for b in bufs)  # (N, 3, H, W)
    else:
        images = out.permute(0, 3, 1, 2).contiguous()  # (N, 3, H, W)
        train_images, test_images = images[:n_train].clone(), images[n_train:].clone()
    labels = torch.tensor([label for _, label in train_items + test_items], dtype=torch.int64)
    return train_images, labels[:n_train].clone(), test_images, labels[n_train:].clone()


IMAGE_FOLDER = ImageFolderReader()
