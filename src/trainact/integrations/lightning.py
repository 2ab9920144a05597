"""TrAct as a Lightning callback: one line in the Trainer, exact under gradient accumulation.

    import lightning as L
    from trainact.integrations.lightning import TrAct

    trainer = L.Trainer(callbacks=[TrAct(lam=0.1)], accumulate_grad_batches=4, gradient_clip_val=1.0)

``setup`` wraps the model's first layer(s) (``trainact.apply``; ``layer``, ``example_input`` and the TrAct
options are passed through).  With gradient accumulation (``defer`` "auto": whenever the Trainer accumulates)
every micro-batch's backward only collects the patch statistics, and ``on_before_optimizer_step`` — after
Lightning unscales AMP gradients, before it clips them — preconditions the accumulated gradient with the
statistics of all micro-batches: the update of one large batch, exactly.  Lightning calls
``optimizer.step(closure)`` *before* the closure runs the last micro-batch's backward; trainact's step check
runs after the closure (see ``trainact.distributed``), so no step is ever taken on half-preconditioned gradients.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import torch

import trainact
from trainact.layers import TrActConfig, TrActLayer

try:
    from lightning.pytorch.callbacks import Callback
except ImportError:  # the standalone package
    try:
        from pytorch_lightning.callbacks import Callback  # type: ignore[no-redef]
    except ImportError as e:
        raise ImportError('trainact.integrations.lightning needs Lightning: pip install "trainact[lightning]"') from e

__all__ = ["TrAct"]


class TrAct(Callback):
    """Apply TrAct to a LightningModule's first layer(s) and place the deferred step where Lightning wants it.

    Args:
        lam: λ (see :func:`trainact.TrAct`).
        layer: which layer(s), as in :func:`trainact.apply` (None: the one first layer; "all"; names).
        example_input: an input for first-layer detection (default: the module's ``example_input_array``).
        defer: "auto" (default): defer whenever the Trainer accumulates gradients; True / False to force it.
        **options: further :func:`trainact.TrAct` options (relative, solve_dtype, block_bytes, sync, ...).
    """

    def __init__(self, lam: float = 0.1, *, layer: Union[None, str, list] = None,
                 example_input: Optional[torch.Tensor] = None, defer: Union[str, bool] = "auto", **options: Any):
        if defer not in ("auto", True, False):
            raise ValueError(f"TrAct callback: defer must be 'auto', True or False, got {defer!r}")
        if "defer" in options:
            raise TypeError("TrAct callback: pass defer once")
        TrActConfig.of(lam, **options)  # bad options fail now, not in setup
        self.lam, self.layer, self.example_input, self.defer, self.options = lam, layer, example_input, defer, options
        self.names: Union[None, str, list] = None

    def setup(self, trainer, pl_module, stage: str) -> None:
        if any(isinstance(m, TrActLayer) for m in pl_module.modules()):
            return  # setup runs once per stage (fit, validate, test): wrap once
        if self.defer == "auto":
            self.defer = trainer.accumulate_grad_batches > 1
        example = self.example_input if self.example_input is not None else getattr(pl_module, "example_input_array", None)
        self.names = trainact.apply(pl_module, self.lam, layer=self.layer, example_input=example, defer=self.defer,
                                    **self.options)

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self.defer:  # after unscaling, before clipping: the exact large-batch TrAct gradient
            trainact.precondition_grads(pl_module)
