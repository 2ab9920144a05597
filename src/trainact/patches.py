"""How each first-layer type turns its input into patch rows A (rows x n), and the Gram matrix AᵀA.

* ``nn.Linear``: a row is the last dimension of the input; every leading dimension is a row index
  (r = batch for (B, n) input, batch x tokens for (B, T, n)).
* ``nn.Conv1d/2d/3d``: a row is one receptive field (in_channels/groups x prod(kernel_size) values), one per
  (sample, output position): r = batch x prod(output size).  With groups > 1 the problem separates per group, so
  everything is laid out per group: gram (g, n_g, n_g), patches (g, r, n_g).

Patches are a strided *view* of the (padded) input: ``Tensor.unfold`` per spatial dimension, every
``dilation``-th element of the window.  Only a bounded block of rows (``block_bytes``: by default 16 MiB on the
CPU, 64 MiB on a GPU) is ever laid out contiguously for the GEMM, so memory stays bounded whatever the batch; for a Linear whose input is
already a row-major matrix in the solve dtype, nothing is copied at all.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Geometry", "geometry_of", "gram", "patch_matrix", "default_block_bytes", "accelerator_path",
           "DEFAULT_BLOCK_BYTES", "SUPPORTED"]

SUPPORTED = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)  # the layer types TrAct knows the patches of
SUPPORTED_NAMES = ", ".join(f"nn.{c.__name__}" for c in SUPPORTED)

DEFAULT_BLOCK_BYTES = 16 * 2**20  # CPU: cache-friendly, the copy and GEMM of a block stay in L2/L3
ACCELERATOR_BLOCK_BYTES = 64 * 2**20  # GPU: fewer, larger GEMMs (a 7x7/2 stem at batch 32: 0.6x the time of 16 MiB)


def accelerator_path(device: torch.device) -> bool:
    """Whether TrAct runs its accelerator code path on ``device`` (every device but the CPU): 64 MiB blocks, one
    dense GEMM per block and nothing else, and no status read in backward.  On the CPU, where a small call or a
    host read costs next to nothing, the band algorithm and the upper-triangle GEMMs save work instead, and the
    eager backward checks its status at once."""
    return device.type != "cpu"


def default_block_bytes(device: torch.device) -> int:
    """The block size used when none is given: 16 MiB on the CPU, 64 MiB on other devices."""
    return ACCELERATOR_BLOCK_BYTES if accelerator_path(device) else DEFAULT_BLOCK_BYTES


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
        yield x.reshape(1, n, 1).to(dtype)
        return
    try:
        flat = x.view(-1, n)  # (r, n) without a copy when the layout allows it
    except RuntimeError:
        flat = None
    if flat is not None:
        if flat.dtype == dtype:  # a view needs no blocking: nothing is materialised
            yield flat.t().unsqueeze(0)  # (1, n, r): a transposed view
            return
        for start in range(0, flat.shape[0], max_rows):
            yield flat[start : start + max_rows].to(dtype).t().unsqueeze(0)  # (1, n, rows)
        return
    # Non-contiguous N-d input: walk the leading dimension, recursing while a single slice is still too large.
    per_index = x[0].numel() // n
    if per_index > max_rows and x.dim() > 2:
        for i in range(x.shape[0]):
            yield from _linear_blocks(x[i], n, dtype, max_rows)
        return
    step = max(1, max_rows // max(per_index, 1))
    for start in range(0, x.shape[0], step):
        yield x[start : start + step].reshape(-1, n).to(dtype).t().unsqueeze(0)  # (1, n, rows)


def _conv_view(x: torch.Tensor, geo: Geometry) -> torch.Tensor:
    """Strided view of a (padded) conv input chunk: (B, C, *out, *kernel)."""
    if any(geo.pad):
        x = F.pad(x, geo.pad, mode=geo.pad_mode)  # (B, C, *padded)
    for i, (k, s, d) in enumerate(zip(geo.kernel, geo.stride, geo.dilation)):
        x = x.unfold(2 + i, d * (k - 1) + 1, s)  # appends the window as the last dim
    if any(d > 1 for d in geo.dilation):
        x = x[(Ellipsis, *(slice(None, None, d) for d in geo.dilation))]  # every d-th element of each window
    return x  # (B, C, *out, *kernel)


def _contiguous(view: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous copy of a strided view in ``dtype``, in one op (a cast, or a plain copy)."""
    return view.contiguous() if view.dtype == dtype else view.to(dtype, memory_format=torch.contiguous_format)


def _conv_blocks(x: torch.Tensor, geo: Geometry, dtype: torch.dtype, max_rows: int) -> Iterator[torch.Tensor]:
    """Blocks of the transposed patch matrix, (g, n, rows): the layout whose copy and Aᵀ·A GEMM are fastest."""
    if x.dim() == geo.spatial + 1:  # unbatched input (C, *spatial)
        x = x.unsqueeze(0)
    batch, channels = x.shape[:2]
    g, d = geo.groups, geo.spatial
    out_shape = output_shape(x, geo)
    per_sample = int(torch.Size(out_shape).numel())
    if per_sample == 0 or batch == 0:
        return
    if any(geo.pad):
        x = F.pad(x, geo.pad, mode=geo.pad_mode)  # (B, C, *padded): once, not per block
    geo = replace(geo, pad=(0,) * len(geo.pad))
    step = max(1, max_rows // per_sample)
    for start in range(0, batch, step):
        view = _conv_view(x[start : start + step], geo)  # (b, C, *out, *k)
        b = view.shape[0]
        view = view.unflatten(1, (g, channels // g))  # (b, g, Cg, *out, *k)
        # columns = (Cg, *k), rows = (b, *out), groups first
        perm = (1, 2, *range(3 + d, 3 + 2 * d), 0, *range(3, 3 + d))
        view = view.permute(perm)  # (g, Cg, *k, b, *out)
        if b * per_sample <= max_rows:
            # one pass: layout + dtype cast
            yield _contiguous(view, dtype).view(g, geo.n, b * per_sample)  # (g, n, rows)
        else:  # a single sample exceeds the block: split its first output dimension
            lines = max(1, max_rows // (per_sample // out_shape[0]))
            for o in range(0, out_shape[0], lines):
                part = view.narrow(3 + d, o, min(lines, out_shape[0] - o))  # (g, Cg, *k, 1, o_part, ...)
                yield _contiguous(part, dtype).view(g, geo.n, -1)  # (g, n, rows)


def output_shape(x: torch.Tensor, geo: Geometry) -> tuple[int, ...]:
    """Output spatial size of a conv geometry for input ``x`` ((B, C, *S) or (C, *S))."""
    sizes = x.shape[-geo.spatial :]
    out = []
    for i, (k, s, d) in enumerate(zip(geo.kernel, geo.stride, geo.dilation)):
        j = 2 * (geo.spatial - 1 - i)
        size = sizes[i] + geo.pad[j] + geo.pad[j + 1]
        out.append(max(0, (size - d * (k - 1) - 1) // s + 1))
    return tuple(out)


def row_blocks(
    x: torch.Tensor, geo: Geometry, dtype: torch.dtype, block_bytes: Optional[int] = None
) -> Iterator[torch.Tensor]:
    """Iterate over blocks of the *transposed* patch matrix, (g, n, rows), each at most ``block_bytes`` (default:
    :func:`default_block_bytes`) when materialised (a view of the input costs nothing and is not split)."""
    block_bytes = block_bytes or default_block_bytes(x.device)
    itemsize = dtype.itemsize
    max_rows = max(1, block_bytes // (geo.n * geo.groups * itemsize))
    if geo.kind == "linear":
        return _linear_blocks(x, geo.n, dtype, max_rows)
    return _conv_blocks(x, geo, dtype, max_rows)


# ----------------------------------------------------------------------------------------------------------------
# Gram matrix AᵀA


_BAND_LINES = 2  # image lines per GEMM in the band algorithm
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


def _band_applies(geo: Geometry, device: torch.device) -> bool:
    """Overlapping windows along the first spatial dim (k > stride, no dilation there), on the CPU: the band algorithm.

    It trades GEMM work for many small GEMMs (two image lines each). A small BLAS call costs about a microsecond on
    the CPU, so the saved work wins there; on a GPU each is a kernel launch and one dense GEMM per block is faster
    (a 7x7/2 stem, batch 32 at 224 px, on an H200: see BENCHMARKS.md).
    """
    return (not accelerator_path(device) and geo.kind == "conv" and geo.spatial >= 2 and geo.dilation[0] == 1
            and geo.kernel[0] > geo.stride[0])


def _gram_band(x: torch.Tensor, geo: Geometry, dtype: torch.dtype, block_bytes: int) -> Optional[torch.Tensor]:
    """AᵀA for a convolution whose windows overlap along the first spatial dimension ("height").

    Unfold every dimension but height: Y_h = (rows of image line h) x (Cg · prod(k_rest)).  The Gram block between
    kernel rows i and i' = i + δ is  Σ_p Y_{s p + i}ᵀ Y_{s p + i + δ}: so one GEMM per image line h against the
    next k lines, P_h = Y_hᵀ [Y_h ... Y_{h+k-1}], summed over the lines each kernel row i visits, gives the
    whole matrix.  That is H_pad/(k · H_out) ≈ stride/k of the dense AᵀA work (0.29x for a 7x7/2 stem) and the
    unfolded copy is k/stride times smaller.  Returns None when one sample does not fit in ``block_bytes``.
    """
    if x.dim() == geo.spatial + 1:
        x = x.unsqueeze(0)
    batch, channels = x.shape[:2]
    g, d = geo.groups, geo.spatial
    k0, s0 = geo.kernel[0], geo.stride[0]
    out_shape = output_shape(x, geo)
    rows_per_sample = int(torch.Size(out_shape).numel())
    if rows_per_sample == 0 or batch == 0:
        return torch.zeros(g, geo.n, geo.n, dtype=dtype, device=x.device)
    lines = s0 * (out_shape[0] - 1) + k0  # padded image lines that any window touches
    cg = channels // g
    ck = cg * int(torch.Size(geo.kernel[1:]).numel())  # columns of Y_h
    k_rest = geo.kernel[1:]
    rest_rows = rows_per_sample // out_shape[0]  # output positions per line per sample
    itemsize = dtype.itemsize
    per_sample = rest_rows * (lines + k0) * g * ck * itemsize
    if per_sample > block_bytes:
        return None
    step = max(1, block_bytes // per_sample)
    band = torch.zeros(lines, g, ck, k0 * ck, dtype=dtype, device=x.device)  # P_h
    rest_geo = Geometry("conv", geo.n, g, (1, *k_rest), (1, *geo.stride[1:]), (1, *geo.dilation[1:]), geo.pad, geo.pad_mode)
    for start in range(0, batch, step):
        view = _conv_view(x[start : start + step], rest_geo)  # (b, C, H_pad, *out_rest, 1, *k_rest)
        view = view.squeeze(2 + d)[:, :, :lines]  # (b, C, lines, *out_rest, *k_rest)
        b = view.shape[0]
        view = view.unflatten(1, (g, cg))  # (b, g, Cg, lines, *out_rest, *k_rest)
        perm = (1, 0, *range(4, 4 + d - 1), 3, 2, *range(3 + d, 3 + 2 * d - 1))
        view = view.permute(perm)  # (g, b, *out_rest, lines, Cg, *k_rest)
        y = torch.zeros(g, b * rest_rows, lines + k0, ck, dtype=dtype, device=x.device)  # k0 zero lines at the end
        y[:, :, :lines].view(view.shape[:1] + (b, *view.shape[2:])).copy_(view)
        y = y.view(g, b * rest_rows, (lines + k0) * ck)  # (g, K, (lines + k0) * ck)
        for h in range(0, lines, _BAND_LINES):
            # _BAND_LINES lines per GEMM: a few wasted products, far fewer (thread-synchronising) BLAS calls
            t = min(_BAND_LINES, lines - h)
            left = y[:, :, h * ck : (h + t) * ck]  # (g, K, t*ck)             Y_h ... Y_{h+t-1}
            right = y[:, :, h * ck : (h + t + k0 - 1) * ck]  # (g, K, w)      Y_h ... Y_{h+t+k0-2}
            prod = torch.bmm(left.transpose(1, 2), right)  # (g, t*ck, w)
            w = prod.shape[-1]
            # line j of the group needs columns [j*ck, (j+k0)*ck) of its rows: a strided band of prod
            diag = prod.as_strided((t, g, ck, k0 * ck), (ck * w + ck, prod.stride(0), w, 1))  # (t, g, ck, k0*ck)
            band[h : h + t] += diag
    total = torch.zeros(g, cg, k0, ck // cg, cg, k0, ck // cg, dtype=dtype, device=x.device)  # (g, c, i, j, c', i', j')
    for i in range(k0):
        q = band[i : i + s0 * out_shape[0] : s0].sum(0)  # (g, ck, k0 * ck): lines visited by kernel row i
        q = q.view(g, cg, ck // cg, k0, cg, ck // cg)  # (g, c, j, δ, c', j')
        for delta in range(k0 - i):
            blk = q[:, :, :, delta]  # (g, c, j, c', j')
            total[:, :, i, :, :, i + delta, :] = blk
            if delta:
                total[:, :, i + delta, :, :, i, :] = blk.permute(0, 3, 4, 1, 2)
    return total.view(g, geo.n, geo.n)


def gram(
    x: torch.Tensor, geo: Geometry, *, dtype: torch.dtype = torch.float32, block_bytes: Optional[int] = None,
    ridge: Optional[tuple[float, torch.Tensor]] = None,
) -> tuple[torch.Tensor, int]:
    """Sum of aᵀa over all patch rows of ``x``, per group: (g, n, n) in ``dtype``, and the number of rows r.

    With ``ridge=(λ, eye)`` (eye: (n, n) identity in ``dtype``) the result is the system AᵀA/r + λI instead,
    formed inside the GEMMs on the dense path (a float dtype; see tract.system).  At most ``block_bytes``
    (default: :func:`default_block_bytes`) of patches are materialised at once."""
    block_bytes = block_bytes or default_block_bytes(x.device)
    rows = count_rows(x, geo)
    total = _gram_band(x, geo, dtype, block_bytes) if _band_applies(geo, x.device) else None
    if total is None and accelerator_path(x.device):
        scale = 1.0 if ridge is None else 1.0 / max(rows, 1)
        for block in row_blocks(x, geo, dtype, block_bytes):  # (g, n, rows)
            if total is not None:
                total.baddbmm_(block, block.transpose(1, 2), alpha=scale)
            elif ridge is not None:
                total = torch.baddbmm(ridge[1], block, block.transpose(1, 2), beta=ridge[0], alpha=scale)
            else:
                total = torch.bmm(block, block.transpose(1, 2))
        if total is not None:
            return total, rows
    if total is None:
        total = torch.zeros(geo.groups, geo.n, geo.n, dtype=dtype, device=x.device)
        edges = _edges(geo.n)
        for block in row_blocks(x, geo, dtype, block_bytes):  # (g, n, rows)
            _syrk_upper_(total, block, edges)
        _mirror_upper_(total, edges)
    if ridge is not None:
        from .tract import system

        return system(total, max(rows, 1), ridge[0]), rows
    return total, rows


def patch_matrix(x: torch.Tensor, geo: Geometry, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """All patch rows at once, (g, r, n): used by the Woodbury form (r < n, so this is smaller than AᵀA)."""
    blocks = list(row_blocks(x, geo, dtype, block_bytes=2**62))  # (g, n, rows) each
    if not blocks:
        return torch.zeros(geo.groups, 0, geo.n, dtype=dtype, device=x.device)
    return torch.cat(blocks, dim=2).transpose(1, 2)  # (g, r, n)


def count_rows(x: torch.Tensor, geo: Geometry) -> int:
    """r without touching the data."""
    if geo.kind == "linear":
        return x.numel() // geo.n
    batch = 1 if x.dim() == geo.spatial + 1 else x.shape[0]
    return batch * int(torch.Size(output_shape(x, geo)).numel())
