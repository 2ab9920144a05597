"""timm's training script with deferred TrAct: ``TrActScaler``, its ``NativeScaler`` with the step order fixed.

timm's ``NativeScaler.__call__`` runs backward → unscale → clip → step in one call, so there is no place for
``precondition_grads`` between unscaling and clipping.  ``TrActScaler(model)`` is a drop-in replacement that
puts it there (in timm's ``train.py``: ``loss_scaler = TrActScaler(model, device=device)``), so clipping sees the
TrAct gradient and gradient accumulation (``--grad-accum-steps``) gives the update of one large batch::

    trainact.apply(model, 0.1, defer=True)
    loss_scaler = TrActScaler(model, device="cuda")
    loss_scaler(loss, optimizer, clip_grad=1.0, parameters=model.parameters(), need_update=need_update)

Whenever timm's ``loss_scaler`` is None — no AMP, bf16 AMP and all AMP on the CPU, not only "without AMP" — call
``trainact.precondition_grads(model)`` inside ``if need_update:``, above the clip check (docs/frameworks.md).
"""
from __future__ import annotations

import torch

import trainact

try:
    from timm.utils import NativeScaler, dispatch_clip_grad
except ImportError as e:
    raise ImportError('trainact.integrations.timm needs timm: pip install "trainact[vision]"') from e

__all__ = ["TrActScaler"]


class TrActScaler(NativeScaler):
    """timm's NativeScaler, preconditioning the deferred TrAct layers of `model` after unscaling, before clipping."""

    def __init__(self, model: torch.nn.Module, device: str = "cuda"):
        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"TrActScaler: model must be an nn.Module, got {type(model).__name__}")
        super().__init__(device=device)
        self.model = model

    def __call__(self, loss, optimizer, clip_grad=None, clip_mode="norm", parameters=None, create_graph=False,
                 need_update=True):
        self._scaler.scale(loss).backward(create_graph=create_graph)
        if need_update:
            self._scaler.unscale_(optimizer)  # the step will not unscale again
            trainact.precondition_grads(self.model)
            if clip_grad is not None:
                if parameters is None:
                    raise ValueError("TrActScaler: clip_grad needs the parameters to clip")
                dispatch_clip_grad(parameters, clip_grad, mode=clip_mode)
            self._scaler.step(optimizer)
            self._scaler.update()
