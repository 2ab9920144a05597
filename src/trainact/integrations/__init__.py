"""Integrations with training frameworks, each importing its framework only when imported itself:

* ``trainact.integrations.lightning.TrAct``: a Lightning callback (``pip install "trainact[lightning]"``).
* ``trainact.integrations.transformers.TrActTrainer``: the Hugging Face Trainer, preconditioning between the last
  micro-batch's backward and clipping (``pip install "trainact[transformers]"``).
* ``trainact.integrations.timm.TrActScaler``: timm's ``NativeScaler`` with the deferred TrAct step placed between
  unscaling and clipping (``pip install timm``).

Accelerate needs no helper; its recipe is in the README.
"""
