"""One image file to uint8 pixels, and the fixed-size geometry of `--image-size` (both loaders use these).

With `--image-size N` (ImageNet's convention: a centre crop of 0.875 of the resized image, 224 of 256):
- test images: the shorter side resized to S = round(N / 0.875), then the centre N x N;
- train images: the shorter side resized to S, then the centre S x S square. That square is what the in-memory
  cache holds and what the streaming loader decodes; the loader then takes a random N x N window of it (any
  offset in [0, S - N], uniform) and mirrors it with p = 0.5 when augmenting, or its centre N x N when not.
  This is "resize + random crop" (the CIFAR recipe's crop, scaled), not RandomResizedCrop: no scale or aspect jitter.
Resizing is Pillow's antialiased bilinear filter, which is what torchvision's Resize does to PIL images, with
torchvision's size arithmetic (the longer side becomes int(S * long / short)); centre crops use torchvision's
CenterCrop offsets (round((H - h) / 2)). Without `--image-size` images are kept as stored.
"""

from __future__ import annotations

import io
from typing import Optional

import torch

from .dataset import DataError

CROP_RATIO = 0.875  # test crop / resized shorter side: 224 / 256
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "F")


def resize_size(image_size: int) -> int:
    """S, the shorter side images are resized to before an image_size x image_size crop."""
    return round(image_size / CROP_RATIO)


def centre_offset(size: int, crop: int) -> int:
    """torchvision's CenterCrop offset of a `crop` window in `size` pixels."""
    return int(round((size - crop) / 2.0))


def import_pil():
    try:
        from PIL import Image
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("reading image folders needs Pillow: pip install 'trainact[harness]'") from e
    return Image


def open_image(data: bytes, name: str, where: str, *, rgb: bool = False):
    """(PIL image in mode L or RGB, whether the file is gray); `rgb` converts gray to RGB as well."""
    Image = import_pil()
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            is_gray = im.mode in GRAY_MODES
            return im.convert("L" if is_gray and not rgb else "RGB"), is_gray
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, ... for bad files
        raise DataError(f"cannot decode image {name} in {where}: {type(e).__name__}: {e}") from e


def fit(im, image_size: int, split: str):
    """`im` resized and centre-cropped for `split`: test N x N, train the S x S square (see the module docstring)."""
    Image = import_pil()
    s = resize_size(image_size)
    w, h = im.size
    if w <= h:
        size = (s, int(s * h / w))
    else:
        size = (int(s * w / h), s)
    if size != (w, h):
        im = im.resize(size, Image.BILINEAR)
    crop = image_size if split == "test" else s
    left, top = centre_offset(size[0], crop), centre_offset(size[1], crop)
    return im.crop((left, top, left + crop, top + crop))


def pixels(im) -> torch.Tensor:
    """uint8 (H, W, C) of a PIL image in mode L or RGB."""
    w, h = im.size
    return torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).view(h, w, -1)  # (H, W, 1|3)


def decode(data: bytes, name: str, where: str, *, image_size: Optional[int], split: str,
           rgb: bool = False) -> tuple[torch.Tensor, bool]:
    """(uint8 (H, W, 1|3) pixels of `split`'s geometry, whether the file is gray)."""
    im, is_gray = open_image(data, name, where, rgb=rgb)
    if image_size is not None:
        im = fit(im, image_size, split)
    return pixels(im), is_gray
