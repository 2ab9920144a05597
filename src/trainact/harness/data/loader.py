"""The in-memory loader: batches of a uint8 split on the device, seeded per (seed, epoch), batched augmentation.

`BatchLoader` and the streaming loader (stream.py) share their argument checks (`check_loader_args`,
`check_train_contrast`) and the uint8-to-input arithmetic (`input_affine`); `measure_loader_throughput` times
either.
"""

from __future__ import annotations

import time
from typing import Iterator, Optional, Sequence

import torch
import torch.nn.functional as F

from trainact.harness.config import CONTRAST_OFF, check_contrast_spread

from .contrast import contrast_factors, scale_contrast
from .dataset import INPUT_RANGES, mix_seed
from .images import centre_offset

def input_affine(mean: Sequence[float], std: Sequence[float], input_range: str,
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift), each (1, C, 1, 1) float32: a uint8 image x becomes the input x * scale + shift.

    standardized: (x / 255 - mean) / std per channel; unit: x / 255; byte: x."""
    c = len(mean)
    std_t = torch.tensor([float(s) for s in std], dtype=torch.float32)
    mean_t = torch.tensor([float(m) for m in mean], dtype=torch.float32)
    if input_range == "standardized":  # x * scale + shift == (x / 255 - mean) / std
        scale, shift = 1.0 / (255.0 * std_t), -mean_t / std_t
    elif input_range == "unit":
        scale, shift = torch.full((c,), 1.0 / 255.0), torch.zeros(c)
    else:
        scale, shift = torch.ones(c), torch.zeros(c)
    return scale.view(1, c, 1, 1).to(device), shift.view(1, c, 1, 1).to(device)


def check_train_contrast(contrast_spread, train: bool) -> None:
    """Raise ValueError for a contrast spread out of (0, 1], or one set on an evaluation loader."""
    check_contrast_spread("contrast_spread", contrast_spread)
    if not train and contrast_spread != CONTRAST_OFF:
        raise ValueError(f"contrast_spread={contrast_spread!r} applies to training images; an evaluation loader "
                         "(train=False) feeds the images as they are")


def check_loader_args(*, batch_size, input_range, mean, std, channels: int, crop_padding, dtype, rank,
                      world_size) -> None:
    """Raise ValueError, naming the argument, for a loader argument out of range (both loaders' checks)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if input_range not in INPUT_RANGES:
        raise ValueError(f"input_range must be one of {INPUT_RANGES}, got {input_range!r}")
    if len(mean) != channels or len(std) != channels:
        raise ValueError(f"mean and std need one value per channel ({channels}), got {len(mean)} and {len(std)}")
    if not all(float(s) > 0 for s in std):
        raise ValueError(f"std must be > 0 for every channel, got {tuple(std)}")
    if not isinstance(crop_padding, int) or crop_padding < 0:
        raise ValueError(f"crop_padding must be an int >= 0, got {crop_padding!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point dtype, got {dtype}")
    if not isinstance(world_size, int) or world_size < 1 or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank!r}, world_size={world_size!r}")


class BatchLoader:
    """In-memory batches in the airbench style: the split lives on `device` as uint8, an epoch is one seeded
    permutation plus slicing, and random crop (zero padding `crop_padding`, like torchvision's
    RandomCrop(size, padding=4)) and horizontal flip (p = 0.5) are batched tensor ops.
    With `image_size` N (`--image-size`: the train split stored as S x S squares, harness/data/images.py) the output
    is N x N: a random window of the square (no padding) when augmenting, its centre (torchvision's CenterCrop
    offset) when not.

        loader = BatchLoader(ds.train_images, ds.train_labels, batch_size=128, train=True,
                             mean=ds.mean, std=ds.std, device=device, seed=seed)
        for x, y in loader.epoch(epoch):  # the same batches for the same (seed, epoch), e.g. after a resume
            ...

    The permutation and the augmentation draws come from a CPU generator seeded by (seed, epoch), drawn for the
    whole epoch, so they do not depend on the device, on world_size, or on how far a previous run got.
    input_range: "standardized" (x/255 - mean)/std per channel, "unit" x/255, "byte" x in [0, 255].
    contrast_spread C < 1 (training only): each image's contrast scaled by its own factor in [C, 1], fixed per
    (seed, image index), before crop and flip (harness/data/contrast.py).

    Distributed: every rank builds the same permutation; a global batch is batch_size * world_size consecutive
    entries of it, and rank r takes entries [r*batch_size, (r+1)*batch_size). A final partial global batch is
    split into world_size near-equal parts (dropped if it has fewer than world_size images, or if drop_last).
    Evaluation (train=False: no shuffling, no augmentation) gives rank r the images r, r + world_size, ...,
    so every image is seen exactly once across ranks (ranks may differ by one batch).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        batch_size: int,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        input_range: str = "standardized",
        augment: bool = True,
        crop_padding: int = 4,
        image_size: Optional[int] = None,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        contrast_spread: float = CONTRAST_OFF,
    ) -> None:
        if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.dim() != 4:
            got = f"{images.dtype} {tuple(images.shape)}" if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"images must be a uint8 tensor (N, C, H, W), got {got}")
        if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != images.shape[0]:
            got = tuple(labels.shape) if isinstance(labels, torch.Tensor) else type(labels).__name__
            raise ValueError(f"labels must be a 1-d tensor with one entry per image ({images.shape[0]}), got {got}")
        if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        check_loader_args(batch_size=batch_size, input_range=input_range, mean=mean, std=std, channels=images.shape[1],
                          crop_padding=crop_padding, dtype=dtype, rank=rank, world_size=world_size)
        check_train_contrast(contrast_spread, train)
        if image_size is not None:
            side = min(images.shape[2:]) + 2 * crop_padding
            if not isinstance(image_size, int) or not 1 <= image_size <= side:
                raise ValueError(f"image_size must be an int in [1, {side}] (the padded image side), "
                                 f"got {image_size!r}")
        self.batch_size, self.train, self.augment = batch_size, bool(train), bool(augment)
        self.input_range, self.crop_padding, self.image_size, self.dtype = input_range, crop_padding, image_size, dtype
        self.seed, self.drop_last, self.rank, self.world_size = int(seed), bool(drop_last), rank, world_size
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()  # uint8 (N, C, H, W), moved once
        self.labels = labels.to(device=self.device, dtype=torch.int64)
        self._scale, self._shift = input_affine(mean, std, input_range, self.device)
        # each image's contrast factor (None: off, the images as they are)
        self._contrast = (None if contrast_spread == CONTRAST_OFF else
                          contrast_factors(self.num_images, contrast_spread, self.seed).to(self.device))
        if self.train and len(self) == 0:
            raise ValueError(
                f"no batches: {images.shape[0]} images, batch_size {batch_size} x world_size {world_size}"
                + (" with drop_last" if drop_last else "")
            )

    @property
    def num_images(self) -> int:
        return int(self.images.shape[0])

    def __len__(self) -> int:
        n, bs, ws = self.num_images, self.batch_size, self.world_size
        if self.train:
            full, rem = divmod(n, bs * ws)
            return full + int(not self.drop_last and rem >= ws)
        shard = len(range(self.rank, n, ws))
        return shard // bs if self.drop_last else -(-shard // bs)

    def example(self, n: int = 2) -> torch.Tensor:
        """The first n inputs of epoch 0 (to trace a model with)."""
        return next(iter(self.epoch(0)))[0][:n]

    def _positions(self) -> Iterator[slice | torch.Tensor]:
        """This rank's batches as positions into the epoch's order (a permutation, or the identity for eval)."""
        n, bs, ws, r = self.num_images, self.batch_size, self.world_size, self.rank
        if self.train:
            full, rem = divmod(n, bs * ws)
            for b in range(full):
                start = b * bs * ws + r * bs
                yield slice(start, start + bs)
            if not self.drop_last and rem >= ws:
                yield torch.tensor_split(torch.arange(full * bs * ws, n), ws)[r]
        else:
            shard = torch.arange(r, n, ws)
            for b in range(len(self)):
                yield shard[b * bs : (b + 1) * bs]

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (inputs (B, C, H, W) `dtype`, labels (B,) int64) on `device` for this rank."""
        n, dev = self.num_images, self.device
        augment = self.train and self.augment
        if self.train:
            g = torch.Generator().manual_seed(mix_seed(self.seed, "epoch", int(epoch)))
            order = torch.randperm(n, generator=g)
            if augment:
                h, w = self.images.shape[2:]
                out_h, out_w = self._out_size()
                dy = torch.randint(0, h + 2 * self.crop_padding - out_h + 1, (n,), generator=g).to(dev)
                dx = torch.randint(0, w + 2 * self.crop_padding - out_w + 1, (n,), generator=g).to(dev)
                flip = (torch.rand(n, generator=g) < 0.5).to(dev)
            order = order.to(dev)
        else:
            order = None
        for pos in self._positions():
            if isinstance(pos, torch.Tensor):
                pos = pos.to(dev)
            idx = order[pos] if order is not None else pos
            x = self.images[idx]  # uint8 (B, C, H, W)
            if self._contrast is not None:
                x = scale_contrast(x, self._contrast[idx])  # float32 (B, C, H, W), in pixel units
            if augment:
                x = self._crop_flip(x, dy[pos], dx[pos], flip[pos])
            elif self.image_size is not None:
                x = self._centre(x)
            x = (x.to(torch.float32) * self._scale + self._shift).to(self.dtype)
            yield x, self.labels[idx]

    def _out_size(self) -> tuple[int, int]:
        h, w = self.images.shape[2:]
        return (h, w) if self.image_size is None else (self.image_size, self.image_size)

    def _centre(self, x: torch.Tensor) -> torch.Tensor:
        """The centre image_size x image_size window of (B, C, H, W)."""
        n = self.image_size
        top, left = centre_offset(x.shape[2], n), centre_offset(x.shape[3], n)
        return x[:, :, top : top + n, left : left + n]  # (B, C, n, n)

    def _crop_flip(self, x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Per image: zero-pad by p, take the output-size window at (dy, dx), mirror it if flip. One gather."""
        b, c = x.shape[:2]
        h, w = self._out_size()
        p = self.crop_padding
        if p:
            x = F.pad(x, (p, p, p, p))  # (B, C, H + 2p, W + 2p)
        ar_h = torch.arange(h, device=x.device)
        ar_w = torch.arange(w, device=x.device)
        rows = dy.view(b, 1) + ar_h  # (B, H)
        cols = dx.view(b, 1) + torch.where(flip.view(b, 1), w - 1 - ar_w, ar_w)  # (B, W)
        bi = torch.arange(b, device=x.device).view(b, 1, 1, 1)
        ci = torch.arange(c, device=x.device).view(1, c, 1, 1)
        return x[bi, ci, rows.view(b, 1, h, 1), cols.view(b, 1, 1, w)]  # (B, C, H, W)


def measure_loader_throughput(loader, epochs: int = 1, max_batches: Optional[int] = None) -> float:
    """Images per second that `loader` (a BatchLoader or a StreamLoader) delivers (epochs 0 .. epochs-1, or only
    the first `max_batches` batches, nothing else done with the batches)."""
    if epochs < 1:
        raise ValueError(f"epochs must be >= 1, got {epochs}")
    if max_batches is not None and max_batches < 1:
        raise ValueError(f"max_batches must be >= 1, got {max_batches}")
    sync = torch.cuda.synchronize if loader.device.type == "cuda" else (lambda: None)
    sync()
    count, start = 0, time.perf_counter()
    last = None
    batches = 0
    for e in range(epochs):
        for x, _ in loader.epoch(e):
            count += x.shape[0]
            last = x
            batches += 1
            if batches == max_batches:
                break
        if batches == max_batches:
            break
    if last is not None and loader.device.type not in ("cpu", "cuda"):
        last.sum().item()  # other devices: force the queued work
    sync()
    return count / max(time.perf_counter() - start, 1e-9)
