"""Exact large-batch TrAct under DDP, FSDP2 and gradient accumulation, and the optimizer-step check.

* ``sync="auto"``/``"global"`` with several ranks: the ranks' Gram matrices and row counts are summed in one
  all-reduce (:func:`all_reduce_stats`) and every rank preconditions with the global (AᵀA/r + λI)⁻¹, so DDP's
  average is exactly the TrAct gradient of the concatenated batch; ``"local"`` keeps per-rank statistics.
* ``defer=True``: backward leaves the plain gradient and adds the statistics to the layer;
  :func:`precondition_grads` (or the step of an optimizer passed to :func:`attach`) turns the accumulated gradient
  into the TrAct gradient of all micro-batches and calls at once.  With FSDP2, each rank's dim-0 shard.
* Every optimizer step first checks its TrAct layers: pending statistics raise unless attached, and the solve
  status is read without waiting (:func:`check_numerics`).  Nothing here reads a device value on the step's path.

Layers are used through the protocol documented on ``layers.TrActLayer`` (``tract_pending()``, ...).
"""
from __future__ import annotations

import sys
import weakref
from typing import Iterable, Union

import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch import nn

from .tract import raise_if_failed

__all__ = ["SYNC_MODES", "precondition_grads", "attach", "discard_pending", "pending_layers", "check_numerics"]

SYNC_MODES = ("auto", "global", "local")

_LAYERS: "weakref.WeakSet" = weakref.WeakSet()  # every TrAct layer, for the optimizer-step check
_ATTACHED: "weakref.WeakSet" = weakref.WeakSet()  # optimizers whose step preconditions by itself
_HOOK = None



def sync_group(sync: str, label: str):
    """The process group whose statistics a layer pools, or None for local statistics."""
    initialized = dist.is_available() and dist.is_initialized()
    if sync == "local":
        return None
    if not initialized:
        if sync == "global":
            raise RuntimeError(
                f"{label}: sync='global' needs an initialised torch.distributed process group "
                f"(dist.init_process_group), and none is initialised"
            )
        return None
    return dist.group.WORLD if dist.get_world_size() > 1 else None


_DTYPES = (torch.float32, torch.float64)


def check_ranks_agree(cfg, label: str, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
    """All ranks compare a layer's TrAct modes (``cfg``: its TrActConfig) and solve dtype, and raise on a mismatch,
    which would hang or silently differ.  A collective with several ranks: layers call it once each."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        code = torch.tensor([SYNC_MODES.index(cfg.sync), int(cfg.defer), _DTYPES.index(dtype)], device=device)
        gathered = [torch.zeros_like(code) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, code)
        modes = [(SYNC_MODES[int(c[0])], bool(c[1])) for c in gathered]
        if len(set(modes)) > 1:
            raise RuntimeError(
                f"{label}: TrAct settings differ across ranks (sync, defer) = {modes}; "
                f"every rank must use the same"
            )
        dtypes = [_DTYPES[int(c[2])] for c in gathered]
        if len(set(dtypes)) > 1 and cfg.sync != "local":  # statistics that are all-reduced must match
            raise RuntimeError(
                f"{label}: the solve dtype differs across ranks ({dtypes}): solve_dtype='auto' takes "
                f"float64 where the layer's input or weight is float64; give every rank the same model and input "
                f"dtypes, or pass solve_dtype explicitly"
            )


def all_reduce_stats(gram: torch.Tensor, rows: Union[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum the Gram matrices and row counts of all ranks in one collective (no host→device copy: a Python row
    count is written by a fill kernel)."""
    rows_t = gram.new_full((1,), rows) if not isinstance(rows, torch.Tensor) else rows.reshape(1).to(gram.dtype)
    buf = torch.cat([gram.reshape(-1), rows_t])  # (g*n*n + 1,)
    dist.all_reduce(buf)
    return buf[:-1].view_as(gram), buf[-1]


def local_tensor(t: torch.Tensor) -> torch.Tensor:
    """A DTensor's local shard (FSDP2's sharded gradients), or ``t`` itself."""
    dtensor = sys.modules.get("torch.distributed.tensor")  # not imported: no DTensor exists (and none is imported)
    return t.to_local() if dtensor is not None and isinstance(t, dtensor.DTensor) else t


def register(layer) -> None:
    """Track a TrAct layer for the optimizer-step check (deferred statistics, numerical status)."""
    _LAYERS.add(layer)
    global _HOOK
    if _HOOK is None:
        _HOOK = register_optimizer_step_pre_hook(_step_pre_hook)


def _modules(target: Union[nn.Module, Iterable[nn.Module]]) -> Iterable[nn.Module]:
    return target.modules() if isinstance(target, nn.Module) else target


def _tract_layers(target) -> list:
    return [m for m in _modules(target) if hasattr(m, "tract_pending")]


def pending_layers(target: Union[nn.Module, Iterable[nn.Module]]) -> list:
    """The deferred TrAct layers among `target`'s modules that hold statistics not yet consumed."""
    return [m for m in _tract_layers(target) if m.tract_pending()]


def precondition_grads(target: Union[nn.Module, Iterable[nn.Module]]) -> list[str]:
    """Turn the accumulated plain gradients of deferred TrAct layers into TrAct gradients, in place.

    Pools the Gram matrices of every backward since the last call (all micro-batches, all calls of the layer)
    and, under DDP with sync != "local", of every rank.  Returns the labels of the layers it preconditioned.
    Every rank must call it at the same point: after the last backward, before gradient clipping and the step
    (with an AMP GradScaler: after ``scaler.unscale_(opt)``).  Reads nothing on the host (a failure: see
    check_numerics).
    """
    done = []
    for layer in pending_layers(target):
        layer.tract_precondition()
        done.append(layer.tract_label)
    return done


def discard_pending(target: Union[nn.Module, Iterable[nn.Module]]) -> None:
    """Drop accumulated statistics (e.g. after a step the GradScaler skipped without preconditioning)."""
    for layer in pending_layers(target):
        layer.tract_discard()


def check_numerics(target: Union[nn.Module, Iterable[nn.Module]], *, wait: bool = True) -> None:
    """Raise :class:`~trainact.TrActNumericalError` naming the layer if a TrAct solve since the last check failed
    (a non-finite input covariance, or a matrix that could not be factorised; that gradient was made NaN).

    The backward never reads its status on the host; every optimizer step runs this check with ``wait=False``:
    on a GPU it starts an asynchronous copy of the status and reads the copies whose copy has finished, so an
    error surfaces at the first optimizer step after the GPU finished that backward (usually the next one).
    ``wait=True`` (the default here) reads every status now, synchronising with the device.  On the CPU the
    eager backward raises at once.
    """
    for layer in _tract_layers(target):
        sinks = layer.tract_sinks
        if sinks is None:
            continue
        status, sinks.status.grad = sinks.status.grad, None
        if status is not None:
            if status.device.type == "cuda":
                host = torch.empty(status.shape, dtype=status.dtype, pin_memory=True)
                host.copy_(status, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
                sinks.inflight.append((host, event))
            else:
                sinks.inflight.append((status, None))
        while sinks.inflight:
            host, event = sinks.inflight[0]
            if event is not None and not wait and not event.query():
                break
            if event is not None:
                event.synchronize()
            sinks.inflight.pop(0)
            raise_if_failed(host, layer.tract_label, layer.tract.lam)


def attach(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Let ``optimizer.step()`` precondition the deferred TrAct layers among its parameters first."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"attach: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    _ATTACHED.add(optimizer)
    return optimizer


def _step_pre_hook(optimizer, args, kwargs):
    """Before an optimizer's update its deferred layers must be preconditioned (attached: here; else an error),
    and the numerical status of its TrAct layers is checked (check_numerics, without waiting).

    ``step(closure)`` (LBFGS, Lightning) runs the closure, and with it the last micro-batch's backward and the
    caller's own preconditioning, *inside* step: the check then runs after the closure, not before it."""
    # args as step() got them, self first: (optimizer, closure?)
    closure = kwargs["closure"] if "closure" in kwargs else (args[1] if len(args) > 1 else None)
    if closure is None:
        _settle(optimizer)
        return None

    def settled():
        result = closure()
        _settle(optimizer)
        return result

    if "closure" in kwargs:
        return args, {**kwargs, "closure": settled}
    return (args[0], settled, *args[2:]), kwargs


def _settle(optimizer) -> None:
    if not len(_LAYERS):
        return
    params = {id(p) for group in optimizer.param_groups for p in group["params"]}
    mine = [layer for layer in list(_LAYERS) if id(layer.weight) in params]
    if not mine:
        return
    pending = [layer for layer in mine if layer.tract_pending()]
    if pending and optimizer not in _ATTACHED:
        names = [layer.tract_label for layer in pending]
        raise RuntimeError(
            f"optimizer step with un-preconditioned accumulated TrAct gradients in {names}: call "
            f"trainact.precondition_grads(model) before the step, or trainact.attach(optimizer) once"
        )
    precondition_grads(pending)
    check_numerics(mine, wait=False)
