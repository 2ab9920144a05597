"""Exact large-batch TrAct under DDP and gradient accumulation.

TrAct's preconditioner is linear in the gradient, so the update of one big batch can be rebuilt from pieces:

* **DDP** (``sync="auto"``, the default): each rank computes its patch Gram matrix Σ aᵀa and row count, one
  all-reduce sums them (n² + 1 numbers: 86 KB for a 7x7x3 stem), and every rank preconditions its local gradient
  with the *global* (AᵀA/r + λI)⁻¹.  DDP's average of the preconditioned gradients is then exactly the TrAct
  gradient of the concatenated batch; unequal per-rank batches are weighted by their rows.  ``sync="local"`` keeps
  per-rank statistics (what the paper's code does); ``sync="global"`` demands a process group.
* **Gradient accumulation** (``defer=True``): backward leaves the *plain* gradient in ``weight.grad`` and adds the
  Gram matrix and rows to the layer; :func:`precondition_grads` (all-reducing the statistics under DDP) turns the
  accumulated gradient into the TrAct gradient of all micro-batches at once.  Call it after the last backward,
  before gradient clipping and the optimizer step, or let ``attach(optimizer)`` call it from the optimizer's step.
  Several calls of the first layer in one step (multi-crop) are pooled the same way into one ridge problem.

With an AMP GradScaler the order is: backward (k times) -> ``scaler.unscale_(opt)`` -> ``precondition_grads(model)``
-> clipping -> ``scaler.step(opt)``.  Preconditioning is linear, so inf/NaN from an overflow step propagate and the
scaler still skips the step; calling ``precondition_grads`` explicitly every window (rather than relying on
``attach``) also clears the statistics of a window whose step the scaler skipped.

FSDP2 (``fully_shard``, applied after TrAct): the per-step mode sees the unsharded weight and its full gradient;
``defer=True`` preconditions each rank's dim-0 shard of the reduce-scattered gradient with the all-reduced
statistics (rows are independent, so this is exact).  Verified on 2 gloo processes (tests/test_distributed.py);
not verified: FSDP1, CUDA/NCCL, DeepSpeed.

Nothing here reads a device value on the host on the step's path: the statistics and the solve status leave the
backward as the gradients of per-layer leaf tensors (layers.py's ``_Sinks``), the row count is written on the
device, and the status is checked at the optimizer step without waiting (:func:`check_numerics`).

Dtype of the statistics (``solve_dtype="auto"``, the default): float64 when the layer's input or weight is float64,
float32 otherwise — decided per forward from dtypes that are the same on every rank of a job (the same model, the
same data pipeline), so the all-reduced tensors have the same dtype everywhere; the first eager forward of each
layer checks that the ranks agree (with the sync mode and ``defer``) and raises rather than all-reducing mismatched
buffers (under torch.compile the check is not traced).  Deferred statistics of several backwards are summed in the
wider dtype: float64 if any contribution is.

An optimizer step taken while a deferred layer in that optimizer still holds un-preconditioned statistics
raises, unless the optimizer was attached: a silently different update is never taken.
"""
from __future__ import annotations

import sys
import weakref
from typing import Iterable, Union

import torch
import torch.distributed as dist
from torch.optim.optimizer import register_optimizer_step_pre_hook
from torch import nn

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


def check_ranks_agree(layer, device: torch.device, dtype: torch.dtype = torch.float32) -> None:
    """Once per layer, all ranks compare their TrAct modes and solve dtype: a mismatch would hang or silently differ."""
    if getattr(layer, "_tract_agreed", False):
        return
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        cfg = layer.tract
        code = torch.tensor([SYNC_MODES.index(cfg.sync), int(cfg.defer), _DTYPES.index(dtype)], device=device)
        gathered = [torch.zeros_like(code) for _ in range(dist.get_world_size())]
        dist.all_gather(gathered, code)
        modes = [(SYNC_MODES[int(c[0])], bool(c[1])) for c in gathered]
        if len(set(modes)) > 1:
            raise RuntimeError(
                f"{layer._tract_label()}: TrAct settings differ across ranks (sync, defer) = {modes}; "
                f"every rank must use the same"
            )
        dtypes = [_DTYPES[int(c[2])] for c in gathered]
        if len(set(dtypes)) > 1 and cfg.sync != "local":  # statistics that are all-reduced must match
            raise RuntimeError(
                f"{layer._tract_label()}: the solve dtype differs across ranks ({dtypes}): solve_dtype='auto' takes "
                f"float64 where the layer's input or weight is float64; give every rank the same model and input "
                f"dtypes, or pass solve_dtype explicitly"
            )
    layer._tract_agreed = True


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
    return [m for m in _modules(target) if hasattr(m, "_tract_pending")]


def pending_layers(target: Union[nn.Module, Iterable[nn.Module]]) -> list:
    """The deferred TrAct layers among `target`'s modules that hold statistics not yet consumed."""
    return [m for m in _tract_layers(target) if m._tract_pending()]


def precondition_grads(target: Union[nn.Module, Iterable[nn.Module]]) -> list[str]:
    """Turn the accumulated plain gradients of deferred TrAct layers into TrAct gradients, in place.

    Pools the Gram matrices of every backward since the last call (all micro-batches, all calls of the layer)
    and, under DDP with sync != "local", of every rank.  Returns the labels of the layers it preconditioned.
    Every rank must call it at the same point.  Reads nothing on the host (a failure: see check_numerics).
    """
    done = []
    for layer in pending_layers(target):
        layer._tract_precondition_pending()
        done.append(layer._tract_label())
    return done


def discard_pending(target: Union[nn.Module, Iterable[nn.Module]]) -> None:
    """Drop accumulated statistics (e.g. after a step the GradScaler skipped without preconditioning)."""
    for layer in pending_layers(target):
        layer._tract_discard()


def check_numerics(target: Union[nn.Module, Iterable[nn.Module]], *, wait: bool = True) -> None:
    """Raise :class:`~trainact.TrActNumericalError` naming the layer if a TrAct solve since the last check failed
    (a non-finite input covariance, or a matrix that could not be factorised; that gradient was made NaN).

    The backward never reads its status on the host; every optimizer step runs this check with ``wait=False``:
    on a GPU it starts an asynchronous copy of the status and reads the copies whose copy has finished, so an
    error surfaces at the first optimizer step after the GPU finished that backward (usually the next one).
    ``wait=True`` (the default here) reads every status now, synchronising with the device.  On the CPU the
    eager backward raises at once.
    """
    from .tract import raise_if_failed

    for layer in _tract_layers(target):
        sinks = layer.__dict__.get("_tract_sinks")
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
            raise_if_failed(host, layer._tract_label(), layer.tract.lam)


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
    pending = [layer for layer in mine if layer._tract_pending()]
    if pending and optimizer not in _ATTACHED:
        names = [layer._tract_label() for layer in pending]
        raise RuntimeError(
            f"optimizer step with un-preconditioned accumulated TrAct gradients in {names}: call "
            f"trainact.precondition_grads(model) before the step, or trainact.attach(optimizer) once"
        )
    precondition_grads(pending)
    check_numerics(mine, wait=False)
