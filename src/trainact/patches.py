"""How each first-layer type turns its input into patch rows A (rows x n), and the Gram matrix AᵀA.

* ``nn.Linear``: a row is the last dimension of the input; every leading dimension is a row index
  (r = batch for (B, n) input, batch x tokens for (B, T, n)).
* ``nn.Conv1d/2d/3d``: a row is one receptive field (in_channels/groups x prod(kernel_size) values), one per
  (sample, output position): r = batch x prod(output size).  With groups > 1 the problem separates per group, so
  everything is laid out per group: gram (g, n_g, n_g), patches (g, r, n_g).

Patches are a strided *view* of the (padded) input: ``Tensor.unfold`` per spatial dimension, every
``dilation``-th element of the window.  Only a bounded block of rows (``block_bytes``, default 64 MiB) is ever
laid out contiguously for the GEMM, so memory stays bounded whatever the batch; for a Linear whose input is
already a row-major matrix in the solve dtype, nothing is copied at all.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Geometry", "geometry_of", "gram", "patch_matrix", "DEFAULT_BLOCK_BYTES"]

DEFAULT_BLOCK_BYTES = 64 * 2**20


@dataclass(frozen=True)
class Geometry:
    """Everything needed to cut a layer's input into patch rows."""

    kind: str  # "linear" or "conv"
    n: int  # features per row (per group)
    groups: int = 1
    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()  # F.pad order: last spatial dim first, (left, right) pairs
    pad_mode: str = "constant"  # F.pad mode: constant (zeros), reflect, replicate, circular

    @property
    def spatial(self) -> int:
        return len(self.kernel)


def _same_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> list[tuple[int, int]]:
    # PyTorch's 'same': total d(k-1), the extra element (odd total) goes to the right/bottom.
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out


def geometry_of(module: nn.Module) -> Geometry:
    if isinstance(module, nn.Linear):
        return Geometry(kind="linear", n=module.in_features)
    if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        kernel = tuple(module.kernel_size)
        dilation = tuple(module.dilation)
        if isinstance(module.padding, str):
            per_dim = [(0, 0)] * len(kernel) if module.padding == "valid" else _same_padding(kernel, dilation)
        else:
            per_dim = [(p, p) for p in module.padding]
        pad: list[int] = []
        for left, right in reversed(per_dim):
            pad += [left, right]
        mode = "constant" if module.padding_mode == "zeros" else module.padding_mode
        return Geometry(
            kind="conv",
            n=module.in_channels // module.groups * int(torch.Size(kernel).numel()),
            groups=module.groups,
            kernel=kernel,
            stride=tuple(module.stride),
            dilation=dilation,
            pad=tuple(pad),
            pad_mode=mode,
        )
    raise TypeError(f"no patch geometry for {type(module).__name__}")


# ----------------------------------------------------------------------------------------------------------------
# Row blocks: each yields a (g, rows_in_block, n) tensor (a view where possible, otherwise a bounded copy)


def _linear_blocks(x: torch.Tensor, n: int, dtype: torch.dtype, max_rows: int) -> Iterator[torch.Tensor]:
    if x.dim() == 1:
        yield x.reshape(1, 1, n).to(dtype)
        return
    try:
        flat = x.view(-1, n)  # (r, n) without a copy when the layout allows it
    except RuntimeError:
        flat = None
    if flat is not None:
        if flat.dtype == dtype:  # a view needs no blocking: nothing is materialised
            yield flat.unsqueeze(0)  # (1, r, n)
            return
        for start in range(0, flat.shape[0], max_rows):
            yield flat[start : start + max_rows].to(dtype).unsqueeze(0)  # (1, rows, n)
        return
    # Non-contiguous N-d input: walk the leading dimension, recursing while a single slice is still too large.
    per_index = x[0].numel() // n
    if per_index > max_rows and x.dim() > 2:
        for i in range(x.shape[0]):
            yield from _linear_blocks(x[i], n, dtype, max_rows)
        return
    step = max(1, max_rows // max(per_index, 1))
    for start in range(0, x.shape[0], step):
        yield x[start : start + step].reshape(-1, n).to(dtype).unsqueeze(0)  # (1, rows, n)


def _conv_view(x: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """Strided view of a (padded) conv input chunk: (B, C, *out, *kernel)."""
    if any(geo.pad):
        x = F.pad(x, geo.pad, mode=geo.pad_mode)  # (B, C, *padded)
    for i, (k, s, d) in enumerate(zip(geo.kernel, geo.stride, geo.dilation)):
        x = x.unfold(2 + i, d * (k - 1) + 1, s)  # appends the window as the last dim
    if any(d > 1 for d in geo.dilation):
        x = x[(Ellipsis, *(slice(None, None, d) for d in geo.dilation))]  # every d-th element of each window
    return x  # (B, C, *out, *kernel)


def _conv_blocks(x: torch.Tensor, geo: Geometry, dtype: torch.dtype, max_rows: int) -> Iterator[torch.Tensor]:
    if x.dim() == geo.spatial + 1:  # unbatched input (C, *spatial)
        x = x.unsqueeze(0)
    batch, channels = x.shape[:2]
    g, d = geo.groups, geo.spatial
    # output positions per sample, from a view of one sample (cheap: no data touched except padding of one sample)
    out_shape = _conv_view(x[:1], geo).shape[2 : 2 + d]
    per_sample = int(torch.Size(out_shape).numel())
    if per_sample == 0 or batch == 0:
        return
    step = max(1, max_rows // per_sample)
    for start in range(0, batch, step):
        view = _conv_view(x[start : start + step], geo)  # (b, C, *out, *k)
        b = view.shape[0]
        view = view.unflatten(1, (g, channels // g))  # (b, g, Cg, *out, *k)
        # rows = (b, *out), columns = (Cg, *k), groups first
        perm = (1, 0, *range(3, 3 + d), 2, *range(3 + d, 3 + 2 * d))
        view = view.permute(perm)  # (g, b, *out, Cg, *k)
        if b * per_sample <= max_rows:
            out = torch.empty(view.shape, dtype=dtype, device=x.device)
            out.copy_(view)  # one pass: layout + dtype cast
            yield out.view(g, b * per_sample, geo.n)  # (g, rows, n)
        else:  # a single sample exceeds the block: split its first output dimension
            rows_per_line = per_sample // out_shape[0]
            lines = max(1, max_rows // rows_per_line)
            for o in range(0, out_shape[0], lines):
                part = view.narrow(2, o, min(lines, out_shape[0] - o))  # (g, 1, o_part, ..., Cg, *k)
                out = torch.empty(part.shape, dtype=dtype, device=x.device)
                out.copy_(part)
                yield out.view(g, -1, geo.n)  # (g, rows, n)


def row_blocks(x: torch.Tensor, geo: Geometry, dtype: torch.dtype, block_bytes: int) -> Iterator[torch.Tensor]:
    """Iterate over (g, rows, n) blocks of the patch matrix, each at most ``block_bytes`` when materialised."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    max_rows = max(1, block_bytes // (geo.n * geo.groups * itemsize))
    if geo.kind == "linear":
        return _linear_blocks(x, geo.n, dtype, max_rows)
    return _conv_blocks(x, geo, dtype, max_rows)


def gram(
    x: torch.Tensor, geo: Geometry, *, dtype: torch.dtype = torch.float32, block_bytes: int = DEFAULT_BLOCK_BYTES
) -> tuple[torch.Tensor, int]:
    """Sum of aᵀa over all patch rows of ``x``, per group: (g, n, n) in ``dtype``, and the number of rows r."""
    total = torch.zeros(geo.groups, geo.n, geo.n, dtype=dtype, device=x.device)
    rows = 0
    for block in row_blocks(x, geo, dtype, block_bytes):  # (g, rows, n)
        total.baddbmm_(block.transpose(1, 2), block)  # (g, n, n) += Aᵀ A
        rows += block.shape[1]
    return total, rows


def patch_matrix(x: torch.Tensor, geo: Geometry, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All patch rows at once, (g, r, n): used by the Woodbury form (r < n, so this is smaller than AᵀA)."""
    blocks = list(row_blocks(x, geo, dtype, block_bytes=2**62))
    if not blocks:
        return torch.zeros(geo.groups, 0, geo.n, dtype=dtype, device=x.device)
    return torch.cat(blocks, dim=1) if len(blocks) > 1 else blocks[0]


def count_rows(x: torch.Tensor, geo: Geometry) -> int:
    """r without touching the data."""
    if geo.kind == "linear":
        return x.numel() // geo.n
    if x.dim() == geo.spatial + 1:
        x = x.unsqueeze(0)
    rows = x.shape[0]
    for i, (k, s, d) in enumerate(zip(geo.kernel, geo.stride, geo.dilation)):
        size = x.shape[2 + i] + geo.pad[2 * (geo.spatial - 1 - i)] + geo.pad[2 * (geo.spatial - 1 - i) + 1]
        rows *= max(0, (size - d * (k - 1) - 1) // s + 1)
    return rows
