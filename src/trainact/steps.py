"""Between backward and the optimizer step: deferred statistics, the step check, numerical errors.

* ``defer=True``: each backward leaves the plain gradient in ``weight.grad`` and files its patch statistics with
  the layer; :func:`precondition_grads` turns the accumulated gradient into the TrAct gradient of those backwards.
  Statistics follow the gradient: a backward whose gradient was cleared (``zero_grad``, set_to_none or not,
  ``p.grad = None``) before the next arrived loses its statistics too (not seen under FSDP2: all are kept there).
* Per-step mode warns once when gradients accumulate: each backward is preconditioned with its own statistics.
* While TrAct layers exist, each optimizer step first checks its TrAct layers: pending statistics raise unless the
  optimizer was attached (:func:`attach`: then they are preconditioned), and the solve status is read without
  waiting (:func:`check_numerics`).  Nothing here reads a device value on the step's path.
"""
from __future__ import annotations

import math
import warnings
import weakref
from typing import Iterable, Optional, Union

import torch
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook

from .parallel import local_rows
from .tract import raise_if_failed, solve, system

__all__ = ["precondition_grads", "attach", "discard_pending", "pending_layers", "check_numerics"]


def _task() -> int:
    return torch._C._current_graph_task_id()  # the backward pass running now


class State:
    """A TrAct layer's per-process state, never copied or pickled: its parallel strategy, its sinks (leaves whose
    gradients receive a backward's solve status and deferred statistics), the statistics filed per backward pass,
    and the hooks on its weight that see the gradient cleared or accumulated."""

    def __init__(self, defer: bool, strategy):
        self.defer, self.strategy = defer, strategy  # parallel.Local until a forward sees a process group
        self.status: Optional[torch.Tensor] = None  # (g,) float64 leaf: the per-step solve statuses, summed
        self.sinks: tuple = (None, None)  # deferred: (Σ aᵀa (g, n, n), rows ()) leaves
        self.eye: Optional[torch.Tensor] = None  # (n, n) identity in the solve dtype, for λI
        self.parts: dict = {}  # graph task -> [Σ aᵀa, rows] of that backward
        self.breaks: list = []  # (graph task, None or a device flag): the gradient held was cleared/changed before
        self.after: Optional[tuple] = None  # (id, version) of weight.grad after the last accumulation
        self.watched, self.handles, self.inflight, self.warned = None, [], [], False

    def make_sinks(self, adapter, device: torch.device, dtype: torch.dtype) -> None:
        """Sinks on ``device`` in ``dtype``; the status carries over a move, the filed statistics stay."""
        old, self.status = self.status, torch.zeros(adapter.groups, dtype=torch.float64, device=device,
                                                    requires_grad=True)
        if old is not None and old.grad is not None:
            self.status.grad = old.grad.to(device)
        self.eye = torch.eye(adapter.n, dtype=dtype, device=device)
        if self.defer:
            self.sinks = (torch.zeros(adapter.groups, adapter.n, adapter.n, dtype=dtype, device=device,
                                      requires_grad=True), torch.zeros((), dtype=torch.float64, device=device,
                                                                       requires_grad=True))
            for i, sink in enumerate(self.sinks):
                sink.register_post_accumulate_grad_hook(lambda s, i=i: self._file(i, s))

    def _file(self, i: int, sink: torch.Tensor) -> None:
        part = self.parts.setdefault(_task(), [None, None])
        grad, sink.grad = sink.grad, None
        part[i] = grad if part[i] is None else _add(part[i], grad)

    def watch(self, weight: torch.Tensor) -> None:
        """Hooks on ``weight`` (a leaf) that see, before each gradient is accumulated, whether the one held was
        cleared or changed since the last accumulation (deferred: that backward's statistics go) or is being added
        to (per step: a warning)."""
        if self.watched is not None and self.watched() is weight:
            return
        self.unwatch()
        if weight.is_leaf:  # a computed weight (parametrization) accumulates no gradient
            ref = weakref.ref(weight)
            self.handles = [weight.register_hook(lambda _: self._before(ref())),
                            weight.register_post_accumulate_grad_hook(self._accumulated)]
            self.watched = ref

    def unwatch(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.watched, self.handles = None, []

    def _accumulated(self, weight: torch.Tensor) -> None:
        self.after = (id(weight.grad), weight.grad._version)

    def _before(self, weight: torch.Tensor) -> None:
        held = weight.grad
        if held is None or (id(held), held._version) != self.after:  # cleared, or changed in place since
            if self.defer:  # changed in place: kept unless zeroed, a device flag that is multiplied in, never read
                self.breaks.append((_task(), None if held is None else held.ne(0).any()))
        elif not self.defer and not self.warned:
            self.warned = True
            warnings.warn("a TrAct layer in per-step mode (defer=False) received a second backward without its "
                          "gradient being cleared (gradient accumulation): each backward is preconditioned with its "
                          "own patch statistics, which is not the TrAct gradient of the large batch; for that, "
                          "apply TrAct with defer=True and call trainact.precondition_grads(model) before the step",
                          stacklevel=2)

    def pooled(self, follow: bool = True) -> tuple:
        """(Σ aᵀa, rows) of the backwards whose gradient weight.grad still holds (``follow``; else of all), or
        (None, None)."""
        total = None
        for task, part in sorted(self.parts.items()):
            later = [keep for t, keep in self.breaks if t > task] if follow else []
            if None not in later:  # None: its gradient was cleared before a later backward arrived
                part = [p * math.prod(later) for p in part] if later else part
                total = part if total is None else [_add(t, p) for t, p in zip(total, part)]
        return tuple(total) if total else (None, None)

    def take(self, follow: bool = True) -> tuple:
        """:meth:`pooled`, and forget them."""
        out, self.parts, self.breaks = self.pooled(follow), {}, []
        return out

    def report(self, status: torch.Tensor, label: str, lam: float) -> None:
        """A deferred solve's status: raised now on the CPU, else summed for :func:`check_numerics`."""
        if status.device.type == "cpu":
            raise_if_failed(status, label, lam)
        else:
            self.status.grad = status if self.status.grad is None else self.status.grad + status


def _add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b in the wider dtype, on a's device."""
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(dtype) + b.to(device=a.device, dtype=dtype)


def state_of(layer) -> State:
    return layer.__dict__["_tract_state"]


# -------------------------------------------------------------------------------------------------- deferred step


def _modules(target: Union[nn.Module, Iterable[nn.Module]]) -> list:
    return [m for m in (target.modules() if isinstance(target, nn.Module) else target) if "_tract_state" in m.__dict__]


def pending_layers(target: Union[nn.Module, Iterable[nn.Module]]) -> list:
    """The deferred TrAct layers among `target`'s modules that hold statistics of a gradient still held."""
    return [m for m in _modules(target) if state_of(m).parts and m.weight.grad is not None]


def precondition_grads(target: Union[nn.Module, Iterable[nn.Module]]) -> list[str]:
    """Turn the accumulated plain gradients of deferred TrAct layers into TrAct gradients, in place, with the
    statistics of every backward ``weight.grad`` holds and, under DDP/FSDP2 (sync != "local"), of every rank; returns
    the labels of the layers done.  Every rank calls it at the same point: after the last backward, before clipping
    and the step (with an fp16 GradScaler: after ``scaler.unscale_(opt)``).  Warns when there is nothing to do."""
    layers = _modules(target)
    deferred = [m for m in layers if m.tract.defer]
    if not deferred:
        warnings.warn("precondition_grads: " + (
            "no TrAct layer in the modules given (is it the model that trainact.apply wrapped?)" if not layers else
            f"{[m.tract_label for m in layers]} precondition in backward (defer=False): nothing to do here"),
            stacklevel=2)
    return [m.tract_label for m in deferred if _precondition(m)]


def _precondition(layer) -> bool:
    state, grad = state_of(layer), layer.weight.grad
    local = None if grad is None else local_rows(grad)
    gram, rows = state.take(follow=local is grad)  # FSDP2 (a sharded gradient): every backward's statistics
    if gram is None or grad is None:  # nothing pending, or the gradient it belonged to was cleared
        return False
    cfg, label, adapter = layer.tract, layer.tract_label, layer.tract_adapter
    gram, rows = state.strategy.reduce(gram, rows)
    g = adapter.groups
    if g > 1 and local.shape[0] != grad.shape[0]:
        raise NotImplementedError(f"{label}: defer=True with a sharded grouped first layer (groups={g}) is not "
                                  f"supported; use the default per-step mode")
    grad3 = local.reshape(g, local.shape[0] // g, adapter.n)  # (g, m_g, n_g); m_g = 0 for an empty shard
    new, status = solve(grad3, system(gram, rows, cfg.lam, relative=cfg.relative), gram.dtype)
    local.copy_(new.reshape(local.shape))  # in place: DDP bucket views and optimizer references stay valid
    state.report(status, label, cfg.lam)
    return True


def discard_pending(target: Union[nn.Module, Iterable[nn.Module]]) -> None:
    """Drop accumulated statistics (e.g. after a step the GradScaler skipped without preconditioning)."""
    for layer in _modules(target):
        state_of(layer).take()


def check_numerics(target: Union[nn.Module, Iterable[nn.Module]], *, wait: bool = True) -> None:
    """Raise :class:`~trainact.TrActNumericalError` naming the layer if a TrAct solve since the last check failed
    (that gradient was made NaN).  The one place the status is read: every optimizer step runs it with
    ``wait=False``, which on a GPU starts an asynchronous copy of the status and reads the copies already done (an
    error surfaces at the first step after the GPU finished that backward); ``wait=True`` reads everything now.  On
    the CPU the eager backward raises at once."""
    for layer in _modules(target):
        state = state_of(layer)
        if state.status is not None and state.status.grad is not None:
            status, state.status.grad, event = state.status.grad, None, None
            if status.device.type == "cuda":  # an asynchronous copy, read once its event has passed
                status = torch.empty(status.shape, dtype=status.dtype, pin_memory=True).copy_(status, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            state.inflight.append((status, event))
        while state.inflight:
            status, event = state.inflight[0]
            if event is not None and not (wait or event.query()):
                break
            if event is not None:
                event.synchronize()
            state.inflight.pop(0)
            raise_if_failed(status, layer.tract_label, layer.tract.lam)


# -------------------------------------------------------------------------------------------------- the step check

_LAYERS: "weakref.WeakSet" = weakref.WeakSet()  # every TrAct layer of this process
_ATTACHED: "weakref.WeakSet" = weakref.WeakSet()  # optimizers whose step preconditions by itself
_OF_OPTIMIZER: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # optimizer -> (key, its TrAct layers)
_HOOK: list = []  # the step pre-hook's handle while TrAct layers exist
_GENERATION = [0]  # bumped when layers come and go: the per-optimizer lists are then made again


def register(layer, add: bool = True) -> None:
    """Track a TrAct layer for the step check (installed with the first layer), or stop (it goes with the last)."""
    _LAYERS.add(layer) if add else _LAYERS.discard(layer)
    _GENERATION[0] += 1
    if add and not _HOOK:
        _HOOK.append(register_optimizer_step_pre_hook(_step_pre_hook))
    elif not add and not len(_LAYERS) and _HOOK:
        _HOOK.pop().remove()


def attach(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Let ``optimizer.step()`` precondition the deferred TrAct layers among its parameters first: for loops that
    step right after the last backward.  Where a framework clips gradients before the step (timm's train.py,
    Lightning, the HF Trainer), precondition before clipping instead (the README's recipes): a step that
    preconditions would clip the plain gradient."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(f"attach: expected a torch.optim.Optimizer, got {type(optimizer).__name__}")
    _ATTACHED.add(optimizer)
    return optimizer


def _layers_of(optimizer) -> list:
    """The TrAct layers whose weight ``optimizer`` updates: looked up again only when layers or the number of
    parameters changed, so a step costs O(its TrAct layers)."""
    key = (_GENERATION[0], sum(len(group["params"]) for group in optimizer.param_groups))
    cached = _OF_OPTIMIZER.get(optimizer)
    if cached is None or cached[0] != key:
        ids = {id(p) for group in optimizer.param_groups for p in group["params"]}
        cached = _OF_OPTIMIZER[optimizer] = (key, [m for m in list(_LAYERS) if id(m.weight) in ids])
    return cached[1]


def _step_pre_hook(optimizer, args, kwargs):
    """Before an update, its deferred layers must be preconditioned (attached: here; else an error) and their status
    is checked.  ``step(closure)`` (LBFGS, Lightning) runs the last backward inside step: the check follows it."""
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
    mine = _layers_of(optimizer)
    pending = pending_layers(mine)
    if pending and optimizer not in _ATTACHED:
        raise RuntimeError(f"optimizer step with un-preconditioned accumulated TrAct gradients in "
                           f"{[m.tract_label for m in pending]}: call trainact.precondition_grads(model) before "
                           f"the step, or trainact.attach(optimizer) once")
    for layer in pending:
        _precondition(layer)
    check_numerics(mine, wait=False)
