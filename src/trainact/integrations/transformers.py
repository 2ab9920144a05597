"""TrAct with the Hugging Face ``transformers.Trainer``: exact under ``gradient_accumulation_steps`` and clipping.

    from trainact.integrations.transformers import TrActTrainer

    trainer = TrActTrainer(model=model, args=args, train_dataset=train, tract_lam=0.1)   # instead of Trainer
    trainer.train()

The Trainer clips the accumulated gradient right after the last micro-batch's backward and only then calls its
callbacks (``on_pre_optimizer_step``), so no callback can precondition before clipping. ``TrActTrainer``
wraps the model's first layer with ``defer=True`` (each backward only collects AᵀA) and preconditions in its
``training_step`` once the last micro-batch of an update is done (the Trainer's ``sync_gradients``), before
the Trainer unscales (AMP), clips and steps: the update of one large batch, exactly. Everything else is the
Trainer's own.  ``pip install "trainact[transformers]"``.
"""
from __future__ import annotations

from typing import Any, Optional, Union

try:
    from transformers import Trainer
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise ImportError("trainact.integrations.transformers needs transformers: "
                      'pip install "trainact[transformers]"') from e

import trainact

__all__ = ["TrActTrainer"]


class TrActTrainer(Trainer):
    """``transformers.Trainer`` training its model's first layer with TrAct (λ ``tract_lam``).

    ``tract_layer`` and ``tract_options`` go to :func:`trainact.apply` (``layer=``, and e.g. ``relative=True``);
    a model that already has TrAct layers must have them with ``defer=True``."""

    def __init__(self, *args: Any, tract_lam: float = 0.1, tract_layer: Union[None, str, list] = None,
                 tract_options: Optional[dict] = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        layers = [m for m in self.model.modules() if trainact.is_tract(m)]
        if not layers:
            trainact.apply(self.model, tract_lam, layer=tract_layer, defer=True, **(tract_options or {}))
        elif not all(m.tract.defer for m in layers):
            raise ValueError("TrActTrainer: the model's TrAct layers must use defer=True (the Trainer clips "
                             "before any callback could precondition); or pass the plain model")

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:  # the update's last micro-batch: before unscaling and clipping
            trainact.precondition_grads(model)
        return loss
