"""First-layer types as adapters: one class per type of layer TrAct can wrap, all listed in ``ADAPTERS``.

An adapter *instance* describes the patches of one layer (``of_layer``) or of one functional call made by a
subclass whose forward transforms the weight first, e.g. a weight-standardised conv (``of_call``); it is frozen and
hashable, so torch.compile takes it as a constant.  Adding a first-layer type is one subclass of :class:`Adapter`,
appended to ``ADAPTERS``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar, Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Adapter", "LinearAdapter", "ConvAdapter", "ADAPTERS", "SUPPORTED", "SUPPORTED_NAMES", "CALLS",
           "adapter_for", "adapter_of"]


@dataclass(frozen=True)
class Adapter:
    """The patches of one layer or call: ``n`` features per row, in ``groups`` groups.  A subclass (one layer type)
    sets ``layers`` (the nn classes it serves, subclasses included), ``calls`` (the functional calls their forward
    makes) and ``name``, and implements:

    * ``of_layer(module)``, ``of_call(weight, args, kwargs)``: the adapter of a layer / of one call in ``calls``;
    * ``forward(layer, x, weight)``: the layer's own forward with ``weight`` in place of ``layer.weight``;
    * ``example_shapes(modules, sizes)``: input shapes (no batch dimension) detection may try;
    * ``blocks(x, dtype, max_rows)``: the transposed patch matrix (g, n, rows) in ``dtype``, block by block, each a
      view or at most ``max_rows`` rows when copied; ``count_rows(x)``: r, without touching the data;
    * ``weight_grad(x, grad_out, dtype, block_bytes)``: the plain gradient Gᵀ A (g, m_g, n) formed in ``dtype``;
      ``output_rows(grad_out, dtype)``: G as rows (g, r, m_g), in the order of ``blocks``;
    * optionally ``has_band``/``gram_band(x, dtype, block_bytes)``: AᵀA by a cheaper algorithm (on the CPU)."""

    n: int
    groups: int = 1

    layers: ClassVar[tuple[type, ...]] = ()
    calls: ClassVar[tuple] = ()
    name: ClassVar[str] = ""
    has_band: ClassVar[bool] = False

    @staticmethod
    def example_shapes(modules: list, sizes: list[int]) -> list[tuple[int, ...]]:
        return []

    @classmethod
    def transforms_weight(cls, layer_cls: type) -> bool:
        """Whether ``layer_cls`` overrides its type's forward (it transforms the weight first): then its one
        functional call (in ``calls``) is intercepted and given TrAct."""
        base = next(c for c in cls.layers if issubclass(layer_cls, c))
        return layer_cls.forward is not base.forward

    def gram_band(self, x: torch.Tensor, dtype: torch.dtype, block_bytes: int) -> Optional[torch.Tensor]:
        return None


@dataclass(frozen=True)
class LinearAdapter(Adapter):
    """``nn.Linear``: a row is the last dimension of the input; every leading dimension is a row index (r = batch
    for (B, n) input, batch x tokens for (B, T, n)).  A row-major input in the solve dtype is used as a view."""

    layers: ClassVar[tuple[type, ...]] = (nn.Linear,)
    calls: ClassVar[tuple] = (F.linear,)
    name: ClassVar[str] = "nn.Linear"

    @classmethod
    def of_layer(cls, module: nn.Module) -> "LinearAdapter":
        return cls(n=module.in_features)

    @classmethod
    def of_call(cls, weight: torch.Tensor, args: tuple, kwargs: dict) -> "LinearAdapter":
        return cls(n=weight.shape[1])

    @staticmethod
    def forward(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return F.linear(x, weight, layer.bias)

    @staticmethod
    def example_shapes(modules: list, sizes: list[int]) -> list[tuple[int, ...]]:
        return [(modules[0].in_features,)]  # a batch of rows for the first Linear

    def blocks(self, x: torch.Tensor, dtype: torch.dtype, max_rows: int) -> Iterator[torch.Tensor]:
        n = self.n
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
                yield from self.blocks(x[i], dtype, max_rows)
            return
        step = max(1, max_rows // max(per_index, 1))
        for start in range(0, x.shape[0], step):
            yield x[start : start + step].reshape(-1, n).to(dtype).t().unsqueeze(0)  # (1, n, rows)

    def count_rows(self, x: torch.Tensor) -> int:
        return x.numel() // self.n

    def weight_grad(self, x: torch.Tensor, grad_out: torch.Tensor, dtype: torch.dtype,
                    block_bytes: int) -> torch.Tensor:
        rows, m = self.count_rows(x), grad_out.shape[-1]
        g, a = grad_out.reshape(rows, m), x.reshape(rows, self.n)
        step = rows if g.dtype == a.dtype == dtype else max(1, block_bytes // ((m + self.n) * dtype.itemsize))
        out = g.new_zeros(m, self.n, dtype=dtype)
        for start in range(0, rows, step):
            out.addmm_(g[start : start + step].to(dtype).t(), a[start : start + step].to(dtype))
        return out.unsqueeze(0)

    def output_rows(self, grad_out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        return grad_out.reshape(1, -1, grad_out.shape[-1]).to(dtype)


_BAND_LINES = 2  # image lines per GEMM in the band algorithm


def _contiguous(view: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous copy of a strided view in ``dtype``, in one op (a cast, or a plain copy)."""
    return view.contiguous() if view.dtype == dtype else view.to(dtype, memory_format=torch.contiguous_format)


@dataclass(frozen=True)
class ConvAdapter(Adapter):
    """``nn.Conv1d/2d/3d``: a row is one receptive field (in_channels/groups x prod(kernel_size) values), one per
    (sample, output position): r = batch x prod(output size).  With groups > 1 the problem separates per group,
    so everything is laid out per group.  Patches are a strided view of the (padded) input: ``Tensor.unfold`` per
    spatial dimension, every ``dilation``-th element of the window."""

    kernel: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    pad: tuple[int, ...] = ()  # F.pad order: last spatial dim first, (left, right) pairs
    pad_mode: str = "constant"  # F.pad mode: constant (zeros), reflect, replicate, circular

    layers: ClassVar[tuple[type, ...]] = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
    calls: ClassVar[tuple] = (F.conv1d, F.conv2d, F.conv3d)
    name: ClassVar[str] = "nn.Conv1d/2d/3d"

    @classmethod
    def _make(cls, per_group: int, kernel: tuple, stride: Any, padding: Any, dilation: Any, groups: int,
              padding_mode: str = "zeros") -> "ConvAdapter":
        d = len(kernel)
        per_dim = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * d  # noqa: E731
        dilation = per_dim(dilation)
        if padding == "valid":
            per = [(0, 0)] * d
        elif padding == "same":  # PyTorch's: total d(k-1), the extra element (odd total) to the right/bottom
            per = [(t // 2, t - t // 2) for t in (dd * (k - 1) for k, dd in zip(kernel, dilation))]
        else:
            per = [(p, p) for p in per_dim(padding)]
        pad = tuple(v for left, right in reversed(per) for v in (left, right))
        return cls(n=per_group * math.prod(kernel), groups=int(groups), kernel=kernel, stride=per_dim(stride),
                   dilation=dilation, pad=pad, pad_mode="constant" if padding_mode == "zeros" else padding_mode)

    @classmethod
    def of_layer(cls, module: nn.Module) -> "ConvAdapter":
        return cls._make(module.in_channels // module.groups, tuple(module.kernel_size), module.stride,
                         module.padding, module.dilation, module.groups, module.padding_mode)

    @classmethod
    def of_call(cls, weight: torch.Tensor, args: tuple, kwargs: dict) -> "ConvAdapter":
        names = ("stride", "padding", "dilation", "groups")  # F.conv*d(input, weight, bias, *names)
        given = dict(zip(names, args[3:]), **{k: v for k, v in kwargs.items() if k in names})
        return cls._make(weight.shape[1], tuple(weight.shape[2:]), given.get("stride", 1), given.get("padding", 0),
                         given.get("dilation", 1), given.get("groups", 1))

    @staticmethod
    def forward(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return layer._conv_forward(x, weight, layer.bias)

    @staticmethod
    def example_shapes(modules: list, sizes: list[int]) -> list[tuple[int, ...]]:
        # images for the first two convolutions in registration order
        return [(conv.in_channels, *([s] * (conv.weight.dim() - 2))) for conv in modules[:2] for s in sizes]

    @property
    def spatial(self) -> int:
        return len(self.kernel)

    def output_shape(self, x: torch.Tensor) -> tuple[int, ...]:
        """Output spatial size for input ``x`` ((B, C, *S) or (C, *S))."""
        padded = [size + sum(self.pad[2 * j : 2 * j + 2]) for size, j in
                  zip(x.shape[-self.spatial :], reversed(range(self.spatial)))]  # F.pad order: last dim first
        return tuple(max(0, (p - d * (k - 1) - 1) // s + 1)
                     for p, k, s, d in zip(padded, self.kernel, self.stride, self.dilation))

    def count_rows(self, x: torch.Tensor) -> int:
        batch = 1 if x.dim() == self.spatial + 1 else x.shape[0]
        return batch * math.prod(self.output_shape(x))

    def weight_grad(self, x: torch.Tensor, grad_out: torch.Tensor, dtype: torch.dtype,
                    block_bytes: int) -> torch.Tensor:
        """The convolution's own weight-gradient kernel (cuDNN, oneDNN), run in ``dtype``."""
        if x.dim() == self.spatial + 1:  # unbatched
            x, grad_out = x.unsqueeze(0), grad_out.unsqueeze(0)
        left, right = self.pad[0::2], self.pad[1::2]
        if self.pad_mode == "constant" and left == right:
            padding = tuple(reversed(left))  # F.pad order (last dim first) -> the conv's
        else:  # reflect/replicate/circular, or 'same' with an odd total: pad as the layer does
            x, padding = F.pad(x, self.pad, mode=self.pad_mode), (0,) * self.spatial
        m = grad_out.shape[1]
        shape = (m, x.shape[1] // self.groups, *self.kernel)
        weight = grad_out.new_empty(1, dtype=dtype).expand(shape)
        cast = grad_out.dtype != dtype or x.dtype != dtype
        step = max(1, block_bytes // ((grad_out[0].numel() + x[0].numel()) * dtype.itemsize)) if cast else len(x)
        out = grad_out.new_zeros(shape, dtype=dtype)
        for start in range(0, len(x), step):
            out += torch.ops.aten.convolution_backward(
                grad_out[start : start + step].to(dtype), x[start : start + step].to(dtype), weight, None,
                self.stride, padding, self.dilation, False, (0,) * self.spatial, self.groups, (False, True, False))[1]
        return out.reshape(self.groups, m // self.groups, self.n)

    def output_rows(self, grad_out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if grad_out.dim() == self.spatial + 1:
            grad_out = grad_out.unsqueeze(0)
        g = self.groups
        rows = grad_out.flatten(2).unflatten(1, (g, -1)).permute(1, 0, 3, 2)  # (g, B, L, m_g)
        return rows.reshape(g, -1, rows.shape[-1]).to(dtype)

    def view(self, x: torch.Tensor) -> torch.Tensor:
        """Strided view of a (padded) input chunk: (B, C, *out, *kernel)."""
        if any(self.pad):
            x = F.pad(x, self.pad, mode=self.pad_mode)  # (B, C, *padded)
        return _windows(x, self.kernel, self.stride, self.dilation)

    def blocks(self, x: torch.Tensor, dtype: torch.dtype, max_rows: int) -> Iterator[torch.Tensor]:
        """(g, n, rows) blocks: the layout whose copy and Aᵀ·A GEMM are fastest."""
        if x.dim() == self.spatial + 1:  # unbatched input (C, *spatial)
            x = x.unsqueeze(0)
        batch, channels = x.shape[:2]
        g, d = self.groups, self.spatial
        out_shape = self.output_shape(x)
        per_sample = math.prod(out_shape)
        if per_sample == 0 or batch == 0:
            return
        if any(self.pad):
            x = F.pad(x, self.pad, mode=self.pad_mode)  # (B, C, *padded): once, not per block
        step = max(1, max_rows // per_sample)
        for start in range(0, batch, step):
            view = _windows(x[start : start + step], self.kernel, self.stride, self.dilation)  # (b, C, *out, *k)
            b = view.shape[0]  # columns (Cg, *k), rows (b, *out), groups first: (g, Cg, *k, b, *out)
            view = view.unflatten(1, (g, channels // g)).permute(1, 2, *range(3 + d, 3 + 2 * d), 0, *range(3, 3 + d))
            if b * per_sample <= max_rows:  # one pass: layout and dtype cast
                yield _contiguous(view, dtype).view(g, self.n, b * per_sample)  # (g, n, rows)
            else:  # a single sample exceeds the block: split its first output dimension
                lines = max(1, max_rows // (per_sample // out_shape[0]))
                for o in range(0, out_shape[0], lines):
                    part = view.narrow(3 + d, o, min(lines, out_shape[0] - o))  # (g, Cg, *k, 1, o_part, ...)
                    yield _contiguous(part, dtype).view(g, self.n, -1)  # (g, n, rows)

    @property
    def has_band(self) -> bool:  # type: ignore[override]
        """Windows overlap along the first spatial dim (k > stride, no dilation there), in 2 or more dims."""
        return self.spatial >= 2 and self.dilation[0] == 1 and self.kernel[0] > self.stride[0]

    def gram_band(self, x: torch.Tensor, dtype: torch.dtype, block_bytes: int) -> Optional[torch.Tensor]:
        """AᵀA when the windows overlap along the first spatial dimension ("height").

        Unfold every dimension but height: Y_h = (rows of image line h) x (Cg · prod(k_rest)).  The Gram block
        between kernel rows i and i' = i + δ is  Σ_p Y_{s p + i}ᵀ Y_{s p + i + δ}: so one GEMM per image line h
        against the next k lines, P_h = Y_hᵀ [Y_h ... Y_{h+k-1}], summed over the lines each kernel row i visits,
        gives the whole matrix, with about stride/k of the dense work.  None when one sample exceeds
        ``block_bytes``."""
        if x.dim() == self.spatial + 1:
            x = x.unsqueeze(0)
        batch, channels = x.shape[:2]
        g, d = self.groups, self.spatial
        k0, s0 = self.kernel[0], self.stride[0]
        out_shape = self.output_shape(x)
        rows_per_sample = math.prod(out_shape)
        if rows_per_sample == 0 or batch == 0:
            return torch.zeros(g, self.n, self.n, dtype=dtype, device=x.device)
        lines = s0 * (out_shape[0] - 1) + k0  # padded image lines that any window touches
        cg = channels // g
        ck = cg * math.prod(self.kernel[1:])  # columns of Y_h
        rest_rows = rows_per_sample // out_shape[0]  # output positions per line per sample
        per_sample = rest_rows * (lines + k0) * g * ck * dtype.itemsize
        if per_sample > block_bytes:
            return None
        step = max(1, block_bytes // per_sample)
        band = torch.zeros(lines, g, ck, k0 * ck, dtype=dtype, device=x.device)  # P_h
        if any(self.pad):
            x = F.pad(x, self.pad, mode=self.pad_mode)  # (B, C, *padded): once, not per block
        for start in range(0, batch, step):
            view = _windows(x[start : start + step], (1, *self.kernel[1:]), (1, *self.stride[1:]),
                            (1, *self.dilation[1:]))  # (b, C, H_pad, *out_rest, 1, *k_rest)
            view = view.squeeze(2 + d)[:, :, :lines]  # (b, C, lines, *out_rest, *k_rest)
            b = view.shape[0]
            view = view.unflatten(1, (g, cg))  # (b, g, Cg, lines, *out_rest, *k_rest)
            perm = (1, 0, *range(4, 4 + d - 1), 3, 2, *range(3 + d, 3 + 2 * d - 1))
            view = view.permute(perm)  # (g, b, *out_rest, lines, Cg, *k_rest)
            y = torch.zeros(g, b * rest_rows, lines + k0, ck, dtype=dtype, device=x.device)  # k0 zero lines at the end
            y.view(*view.shape[: d + 1], lines + k0, *view.shape[d + 2 :]).narrow(d + 1, 0, lines).copy_(view)
            y = y.view(g, b * rest_rows, (lines + k0) * ck)  # (g, K, (lines + k0) * ck)
            for h in range(0, lines, _BAND_LINES):
                # _BAND_LINES lines per GEMM: a few wasted products, far fewer (thread-synchronising) BLAS calls
                t = min(_BAND_LINES, lines - h)
                left = y[:, :, h * ck : (h + t) * ck]  # (g, K, t*ck)             Y_h ... Y_{h+t-1}
                right = y[:, :, h * ck : (h + t + k0 - 1) * ck]  # (g, K, w)      Y_h ... Y_{h+t+k0-2}
                prod = torch.bmm(left.transpose(1, 2), right)  # (g, t*ck, w)
                w = prod.shape[-1]
                # line j of the group needs columns [j*ck, (j+k0)*ck) of its rows: a strided band of prod
                diag = prod.as_strided((t, g, ck, k0 * ck), (ck * w + ck, t * ck * w, w, 1))  # (t, g, ck, k0*ck)
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
        return total.view(g, self.n, self.n)


def _windows(x: torch.Tensor, kernel: tuple, stride: tuple, dilation: tuple) -> torch.Tensor:
    """The strided view (B, C, *out, *kernel) of an already padded input: ``Tensor.unfold`` per spatial dimension,
    every ``dilation``-th element of each window."""
    for i, (k, s, d) in enumerate(zip(kernel, stride, dilation)):
        x = x.unfold(2 + i, d * (k - 1) + 1, s)  # appends the window as the last dim
    if any(d > 1 for d in dilation):
        x = x[(Ellipsis, *(slice(None, None, d) for d in dilation))]
    return x


ADAPTERS: tuple[type[Adapter], ...] = (LinearAdapter, ConvAdapter)  # the one table of first-layer types

SUPPORTED = tuple(cls for adapter in ADAPTERS for cls in adapter.layers)  # the layer types TrAct wraps
SUPPORTED_NAMES = ", ".join(f"nn.{c.__name__}" for c in SUPPORTED)
TYPE_NAMES = " / ".join(adapter.name for adapter in ADAPTERS)
CALLS = {func: adapter for adapter in ADAPTERS for func in adapter.calls}  # functional call -> its adapter


def adapter_for(layer: Any) -> Optional[type[Adapter]]:
    """The adapter class serving a module or module class, or None when TrAct does not support it."""
    cls = layer if isinstance(layer, type) else type(layer)
    return next((adapter for adapter in ADAPTERS if issubclass(cls, adapter.layers)), None)


def adapter_of(module: nn.Module) -> Adapter:
    """The adapter of a supported layer."""
    adapter = adapter_for(module)
    if adapter is None:
        raise TypeError(f"TrAct has no patch geometry for {type(module).__name__}: no adapter serves it")
    return adapter.of_layer(module)
