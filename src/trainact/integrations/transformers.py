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
    a model that already has TrAct layers must have them with ``defer=True``.  With ``model_init`` every model it
    builds (at construction and at each ``train()``) is given TrAct the same way."""

    def __init__(self, *args: Any, tract_lam: float = 0.1, tract_layer: Union[None, str, list] = None,
                 tract_options: Optional[dict] = None, **kwargs: Any) -> None:
        self._tract = (tract_lam, tract_layer, dict(tract_options or {}))  # before the Trainer calls model_init
        super().__init__(*args, **kwargs)
        self._tract_apply(self.model)

    def call_model_init(self, trial=None):
        return self._tract_apply(super().call_model_init(trial))

    def _tract_apply(self, model):
        layers = [m for m in model.modules() if trainact.is_tract(m)]
        if not layers:
            lam, layer, options = self._tract
            trainact.apply(model, lam, layer=layer, defer=True, **options)
        elif not all(m.tract.defer for m in layers):
            raise ValueError("TrActTrainer: the model's TrAct layers must use defer=True (the Trainer clips "
                             "before any callback could precondition); or pass the plain model")
        return model

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        if self.accelerator.sync_gradients:  # the update's last micro-batch: before unscaling and clipping
            trainact.precondition_grads(model)
        return loss
