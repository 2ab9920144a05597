"""How a TrAct layer shares its statistics across processes, chosen once per layer (``choose``):

* ``Local``: this process's batch only: one process, ``sync="local"`` (the paper's code), or no process group;
* ``AllReduce``: the global batch under DDP or FSDP2 (``sync="auto"``/``"global"``, several ranks): one all-reduce of
  the Gram matrices and row counts, so every rank preconditions with the global (AᵀA/r + λI)⁻¹ and DDP's average is
  the TrAct gradient of the concatenated batch.  FSDP2's deferred gradients are DTensors: each rank preconditions
  its own rows of the weight (:func:`local_rows`; rows of a weight gradient are independent).

A layer starts ``Local``; the first forward that sees a process group makes the choice for good, and all ranks
check once that their TrAct settings agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

import torch
import torch.distributed as dist

__all__ = ["SYNC_MODES", "Local", "AllReduce", "choose", "all_reduce_stats", "local_rows"]

SYNC_MODES = ("auto", "global", "local")
_DTYPES = (torch.float32, torch.float64)


@dataclass(frozen=True)
class Local:
    """Statistics of this process only."""

    final: bool = False  # chosen for good (sync="local", or a process group exists); else looked at again
    all_reduce: ClassVar[bool] = False

    def reduce(self, gram: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return gram, rows


@dataclass(frozen=True)
class AllReduce(Local):
    """The statistics of every rank of the default process group, summed."""

    final: bool = True
    all_reduce: ClassVar[bool] = True

    def reduce(self, gram: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return all_reduce_stats(gram, rows)


def initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def choose(cfg, label: str, device: torch.device, dtype: torch.dtype, check: bool = True) -> Local:
    """The strategy of a layer with options ``cfg`` (its TrActConfig); with several ranks and ``check``, a
    collective that checks the ranks agree on (sync, defer, solve dtype)."""
    if not initialized():
        if cfg.sync == "global":
            raise RuntimeError(f"{label}: sync='global' needs an initialised torch.distributed process group "
                               f"(dist.init_process_group), and none is initialised")
        return Local(final=cfg.sync == "local")
    if dist.get_world_size() == 1:
        return Local(final=True)
    if check:
        _check_ranks_agree(cfg, label, device, dtype)
    return Local(final=True) if cfg.sync == "local" else AllReduce()


def _check_ranks_agree(cfg, label: str, device: torch.device, dtype: torch.dtype) -> None:
    """All ranks compare a layer's (sync, defer) and, where statistics are all-reduced, its solve dtype, and raise on
    a mismatch, which would hang or silently differ."""
    code = torch.tensor([SYNC_MODES.index(cfg.sync), int(cfg.defer), _DTYPES.index(dtype)], device=device)
    gathered = [torch.zeros_like(code) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, code)
    modes, dtypes = [(SYNC_MODES[int(c[0])], bool(c[1])) for c in gathered], [_DTYPES[int(c[2])] for c in gathered]
    if len(set(modes)) > 1:
        raise RuntimeError(f"{label}: TrAct settings differ across ranks (sync, defer) = {modes}; every rank must "
                           f"use the same")
    if len(set(dtypes)) > 1 and cfg.sync != "local":
        raise RuntimeError(f"{label}: the solve dtype differs across ranks ({dtypes}): solve_dtype='auto' takes "
                           f"float64 where the layer's input or weight is float64; give every rank the same model and "
                           f"input dtypes, or pass solve_dtype explicitly")


def all_reduce_stats(gram: torch.Tensor, rows: Union[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the Gram matrices and row counts of all ranks in one collective (no host→device copy: a Python row
    count is written by a fill kernel)."""
    rows_t = gram.new_full((1,), rows) if not isinstance(rows, torch.Tensor) else rows.reshape(1).to(gram.dtype)
    buf = torch.cat([gram.reshape(-1), rows_t])  # (g*n*n + 1,)
    dist.all_reduce(buf)
    return buf[:-1].view_as(gram), buf[-1]


def local_rows(grad: torch.Tensor) -> torch.Tensor:
    """This rank's rows of a weight gradient: FSDP2's DTensor gradient's local shard, or ``grad`` itself."""
    return grad.to_local() if hasattr(grad, "to_local") else grad
