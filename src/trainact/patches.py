"""The Gram matrix AᵀA of a first layer's patch rows, for every layer type (see ``adapters.py``).

:func:`gram` sums aᵀa over all rows, per group, and counts r; :func:`patch_matrix` lays out all rows (for the
Woodbury form).  Only a bounded block of rows (``block_bytes``: by default 16 MiB on the CPU, 64 MiB elsewhere) is
ever laid out contiguously, so memory stays bounded whatever the batch; a view of the input is not copied at all.
On the CPU large matrices take only the upper block triangle of GEMMs, and overlapping conv windows the adapter's
band algorithm; elsewhere (:func:`accelerator_path`) one dense GEMM per block does it all.
"""
from __future__ import annotations

from typing import Iterator, Optional

import torch

from .adapters import Adapter, adapter_of
from .tract import system

__all__ = ["gram", "patch_matrix", "row_blocks", "band_applies", "default_block_bytes", "accelerator_path",
           "adapter_of", "DEFAULT_BLOCK_BYTES"]  # adapter_of: re-exported, for the harness's whitening

DEFAULT_BLOCK_BYTES = 16 * 2**20  # CPU: cache-friendly, the copy and GEMM of a block stay in L2/L3
ACCELERATOR_BLOCK_BYTES = 64 * 2**20  # GPU: fewer, larger GEMMs


def accelerator_path(device: torch.device) -> bool:
    """Whether TrAct runs its accelerator code path on ``device`` (every device but the CPU): 64 MiB blocks, one
    dense GEMM per block and nothing else, and no status read in backward.  On the CPU, where a small call or a
    host read costs next to nothing, the band algorithm and the upper-triangle GEMMs save work instead, and the
    eager backward checks its status at once."""
    return device.type != "cpu"


def default_block_bytes(device: torch.device) -> int:
    """The block size used when none is given: 16 MiB on the CPU, 64 MiB on other devices."""
    return ACCELERATOR_BLOCK_BYTES if accelerator_path(device) else DEFAULT_BLOCK_BYTES


def row_blocks(x: torch.Tensor, adapter: Adapter, dtype: torch.dtype,
               block_bytes: Optional[int] = None) -> Iterator[torch.Tensor]:
    """Blocks of the *transposed* patch matrix, (g, n, rows), each at most ``block_bytes`` (default:
    :func:`default_block_bytes`) when materialised (a view of the input costs nothing and is not split)."""
    block_bytes = block_bytes or default_block_bytes(x.device)
    return adapter.blocks(x, dtype, max(1, block_bytes // (adapter.n * adapter.groups * dtype.itemsize)))


_TRI_MIN = 320  # n from which only the upper block triangle of AᵀA is computed (half the GEMM work)
_TRI_BLOCK = 192


def _edges(n: int) -> list[int]:
    parts = 1 if n < _TRI_MIN else -(-n // _TRI_BLOCK)
    return [round(i * n / parts) for i in range(parts + 1)]


def _syrk_upper_(total: torch.Tensor, at: torch.Tensor, edges: list[int]) -> None:
    """total (g, n, n) += at @ atᵀ on the upper block triangle only; at is (g, n, rows)."""
    if len(edges) == 2:
        total.baddbmm_(at, at.transpose(1, 2))
        return
    for i in range(len(edges) - 1):
        rows_i = at[:, edges[i] : edges[i + 1]]  # (g, n_i, rows)
        right = at[:, edges[i] :]  # (g, n - e_i, rows): this block row, diagonal block onwards
        total[:, edges[i] : edges[i + 1], edges[i] :].baddbmm_(rows_i, right.transpose(1, 2))


def _mirror_upper_(total: torch.Tensor, edges: list[int]) -> None:
    for i in range(len(edges) - 1):
        for j in range(i + 1, len(edges) - 1):
            upper = total[:, edges[i] : edges[i + 1], edges[j] : edges[j + 1]]
            total[:, edges[j] : edges[j + 1], edges[i] : edges[i + 1]] = upper.transpose(1, 2)


def band_applies(adapter: Adapter, device: torch.device) -> bool:
    """Whether :func:`gram` tries the adapter's band algorithm (``adapter.gram_band``): on the CPU only.  It trades GEMM
    work for many small GEMMs; a small BLAS call costs about a microsecond on the CPU, while on a GPU each is a
    kernel launch and one dense GEMM per block is faster."""
    return not accelerator_path(device) and adapter.has_band


def gram(
    x: torch.Tensor, adapter: Adapter, *, dtype: torch.dtype = torch.float32, block_bytes: Optional[int] = None,
    ridge: Optional[tuple[float, torch.Tensor]] = None,
) -> tuple[torch.Tensor, int]:
    """Sum of aᵀa over all patch rows of ``x``, per group: (g, n, n) in ``dtype``, and the number of rows r.

    With ``ridge=(λ, eye)`` (eye: (n, n) identity in ``dtype``) the result is the system AᵀA/r + λI instead,
    formed inside the GEMMs on the dense path (a float dtype; see tract.system).  At most ``block_bytes``
    (default: :func:`default_block_bytes`) of patches are materialised at once."""
    block_bytes = block_bytes or default_block_bytes(x.device)
    rows = adapter.count_rows(x)
    total = adapter.gram_band(x, dtype, block_bytes) if band_applies(adapter, x.device) else None
    if total is None and accelerator_path(x.device):
        scale = 1.0 if ridge is None else 1.0 / max(rows, 1)
        for block in row_blocks(x, adapter, dtype, block_bytes):  # (g, n, rows)
            if total is not None:
                total.baddbmm_(block, block.transpose(1, 2), alpha=scale)
            elif ridge is not None:
                total = torch.baddbmm(ridge[1], block, block.transpose(1, 2), beta=ridge[0], alpha=scale)
            else:
                total = torch.bmm(block, block.transpose(1, 2))
        if total is not None:
            return total, rows
    if total is None:
        total = torch.zeros(adapter.groups, adapter.n, adapter.n, dtype=dtype, device=x.device)
        edges = _edges(adapter.n)
        for block in row_blocks(x, adapter, dtype, block_bytes):  # (g, n, rows)
            _syrk_upper_(total, block, edges)
        _mirror_upper_(total, edges)
    if ridge is not None:
        return system(total, max(rows, 1), ridge[0]), rows
    return total, rows


def patch_matrix(x: torch.Tensor, adapter: Adapter, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All patch rows at once, (g, r, n): used by the Woodbury form (r < n, so this is smaller than AᵀA)."""
    blocks = list(row_blocks(x, adapter, dtype, block_bytes=2**62))  # (g, n, rows) each
    if not blocks:
        return torch.zeros(adapter.groups, 0, adapter.n, dtype=dtype, device=x.device)
    return torch.cat(blocks, dim=2).transpose(1, 2)  # (g, r, n)
