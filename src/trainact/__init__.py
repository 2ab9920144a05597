"""trainact: TrAct — training first-layer activations (Petersen, Borgelt, Ermon, NeurIPS 2024) for PyTorch.

The weight gradient of a vision model's first layer becomes ``Gᵀ A (AᵀA/r + λI)⁻¹`` instead of ``Gᵀ A``; forward,
bias, all other layers and inference are unchanged::

    name = trainact.apply(model, lam=0.1)        # or: model.conv1 = trainact.TrAct(model.conv1)
    ...train as usual, any optimizer...
    trainact.remove(model)                        # back to plain layers, same Parameters

Modules: ``tract`` (the formula), ``adapters`` (one class per supported layer type), ``patches`` (AᵀA), ``layers``
(wrapping; how a gradient flows), ``backward`` (the autograd nodes), ``parallel`` (statistics across ranks), ``steps``
(deferred statistics, the step check, numerical errors), ``detect``.  Imports torch only.
"""
from .detect import find_first_layer, find_input_layers
from .layers import SUPPORTED, TrAct, TrActConfig, TrActLayer, apply, is_tract, remove, untract
from .steps import attach, check_numerics, discard_pending, precondition_grads
from .tract import TrActNumericalError, precondition

__version__ = "0.1.0"

__all__ = ["SUPPORTED", "TrAct", "TrActConfig", "TrActLayer", "TrActNumericalError", "apply", "attach",
           "check_numerics", "discard_pending", "find_first_layer", "find_input_layers", "is_tract", "precondition",
           "precondition_grads", "remove", "untract"]
