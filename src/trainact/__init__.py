"""trainact: TrAct — training first-layer activations (Petersen, Borgelt, Ermon, NeurIPS 2024) for PyTorch.

The weight gradient of a vision model's first layer becomes ``Gᵀ A (AᵀA/r + λI)⁻¹`` instead of ``Gᵀ A``; forward,
bias, all other layers and inference are unchanged::

    name = trainact.apply(model, lam=0.1)        # or: model.conv1 = trainact.TrAct(model.conv1)
    ...train as usual, any optimizer...
    trainact.remove(model)                        # back to plain layers, same Parameters

The backward never reads a device value on the host; a failed solve raises ``TrActNumericalError`` at the next
optimizer step.  Modules: ``tract`` (the formula), ``adapters`` (one class per supported layer family),
``patches`` (AᵀA), ``layers`` (wrapping; how a gradient flows), ``backward`` (the autograd node), ``parallel``
(statistics across ranks), ``steps`` (deferred statistics, the step check), ``detect``.  Imports torch only.
"""
from .detect import find_first_layer as find_first_layer
from .detect import find_input_layers as find_input_layers
from .layers import SUPPORTED as SUPPORTED
from .layers import TrAct as TrAct
from .layers import TrActConfig as TrActConfig
from .layers import TrActLayer as TrActLayer
from .layers import apply as apply
from .layers import is_tract as is_tract
from .layers import remove as remove
from .layers import untract as untract
from .steps import attach as attach
from .steps import check_numerics as check_numerics
from .steps import discard_pending as discard_pending
from .steps import precondition_grads as precondition_grads
from .tract import TrActNumericalError as TrActNumericalError
from .tract import precondition as precondition
from .tract import precondition_woodbury as precondition_woodbury

__version__ = "0.1.0"

__all__ = [
    "SUPPORTED",
    "TrAct",
    "TrActConfig",
    "TrActLayer",
    "TrActNumericalError",
    "apply",
    "attach",
    "check_numerics",
    "discard_pending",
    "find_first_layer",
    "find_input_layers",
    "is_tract",
    "precondition",
    "precondition_grads",
    "precondition_woodbury",
    "remove",
    "untract",
]
