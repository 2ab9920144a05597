"""Find a model's first layer: the supported layer whose input is the model input (up to parameter-free ops).

One forward pass in eval mode (training flags restored) with hooks on every candidate layer walks the autograd
graph of each layer's input back towards the model input, stopping at the outputs of layers already seen.  The
input is ``example_input``, or guessed (a model's ``input_size``, timm's ``pretrained_cfg``, torchvision's
``image_size``, then each adapter's example shapes).  If no forward runs (no ``forward()``, no guess fits),
:func:`find_first_layer` takes the one convolution that reads 1-4 channels, with a warning, and otherwise asks for
``layer=``: it never picks a layer by the order the layers were defined in.
"""
from __future__ import annotations

import warnings
from typing import Optional

import torch
from torch import nn

from .adapters import ADAPTERS, TYPE_NAMES, SUPPORTED

# layer types TrAct cannot wrap but that would be the first layer if they consume the input
_OTHER_LAYERS = (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d, nn.Embedding, nn.Bilinear)
_CONVS = tuple(c for c in SUPPORTED if issubclass(c, nn.modules.conv._ConvNd))
_IMAGE_CHANNELS = 4  # grey, RGB, RGBA: a convolution reading this few channels reads the image


def _candidates(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, SUPPORTED + _OTHER_LAYERS) and n]


def _guess_inputs(model: nn.Module, cands: list[nn.Module]) -> list[torch.Tensor]:
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    dtype = param.dtype if param is not None and param.dtype.is_floating_point else torch.float32
    shapes: list[tuple[int, ...]] = []
    hint = getattr(model, "input_size", None)  # (C, H, W) without the batch dimension
    if isinstance(hint, (tuple, list)) and all(isinstance(v, int) for v in hint):
        shapes.append(tuple(hint))
    for attr in ("pretrained_cfg", "default_cfg"):
        cfg = getattr(model, attr, None)
        if isinstance(cfg, dict) and isinstance(cfg.get("input_size"), (tuple, list)):
            shapes.append(tuple(int(s) for s in cfg["input_size"]))
    size = getattr(model, "image_size", None)
    sizes = ([int(size)] if isinstance(size, int) else []) + [32, 224]
    guesses = [a.example_shapes(mine, sizes) for a in ADAPTERS
               if (mine := [m for m in cands if isinstance(m, a.layers)])]
    for group in sorted(guesses, key=lambda g: -max(map(len, g), default=0)):  # images before rows
        shapes += group
    gen = torch.Generator()  # never touch the caller's RNG streams
    return [torch.randn(2, *shape, generator=gen.manual_seed(0), dtype=dtype).to(device)
            for shape in dict.fromkeys(shapes)]


def _reaches_input(tensor: torch.Tensor, source: torch.Tensor, stops: set) -> bool:
    if tensor is source:
        return True
    todo, visited = [tensor.grad_fn], set()
    while todo:
        node = todo.pop()
        if node is None or node in visited or node in stops:
            continue
        visited.add(node)
        if getattr(node, "variable", None) is source:
            return True
        todo.extend(next_fn for next_fn, _ in node.next_functions)
    return False


def _trace(model: nn.Module, x: torch.Tensor) -> list[str]:
    """Names of the candidate layers that consume ``x`` directly, in call order."""
    stops: set = set()
    direct: list[str] = []

    def pre_hook(name):
        def hook(module, args):
            if args and isinstance(args[0], torch.Tensor) and _reaches_input(args[0], x, stops) and name not in direct:
                direct.append(name)
        return hook

    def post_hook(module, args, output):
        if isinstance(output, torch.Tensor) and output.grad_fn is not None:
            stops.add(output.grad_fn)

    handles = [h for name, m in _candidates(model)
               for h in (m.register_forward_pre_hook(pre_hook(name)), m.register_forward_hook(post_hook))]
    modes = {m: m.training for m in model.modules()}
    try:
        model.eval()
        with torch.enable_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, mode in modes.items():
            m.training = mode
    return direct


def _run_first(model: nn.Module, example_input: Optional[torch.Tensor], cands) -> tuple[Optional[list[str]], tuple, list[str]]:
    """Trace the first input that runs: (direct consumers, input shape, errors of the inputs that did not run)."""
    lazy = [n for n, p in model.named_parameters() if nn.parameter.is_lazy(p)]
    if lazy:  # a forward on a guessed input would fix their sizes wrongly
        raise ValueError(f"apply: {type(model).__name__} has uninitialised (lazy) parameters {lazy[:3]}: run one "
                         f"forward pass on a real batch first (lazy modules learn their sizes from it), then apply")
    if type(model).forward is nn.Module.forward:  # e.g. a LightningModule whose training_step calls self.net(x)
        return None, (), ["it has no forward()"]
    inputs = [example_input] if example_input is not None else _guess_inputs(model, [m for _, m in cands])
    errors = []
    for x in inputs:
        x = x.detach().clone().requires_grad_(x.is_floating_point())
        try:
            return _trace(model, x), tuple(x.shape), errors
        except Exception as err:  # a guessed shape that does not fit the model
            if example_input is not None:
                raise
            errors.append(f"{tuple(x.shape)}: {type(err).__name__}")
    return None, (), errors


def _supported_names(model: nn.Module, cands) -> list[str]:
    supported = [n for n, m in cands if isinstance(m, SUPPORTED)]
    if not supported:
        names = [n for n, _ in cands]
        raise ValueError(f"apply: no {TYPE_NAMES} layer found in {type(model).__name__}"
                         + (f" (found unsupported {names})" if names else ""))
    return supported


def find_first_layer(model: nn.Module, *, example_input: Optional[torch.Tensor] = None) -> str:
    """Qualified name of the layer TrAct should wrap (see the module docstring)."""
    cands = _candidates(model)
    supported = _supported_names(model, cands)
    direct, shape, errors = _run_first(model, example_input, cands)
    if direct is not None:
        if len(direct) == 1:
            return direct[0]
        if not direct:
            raise ValueError(f"apply: no {TYPE_NAMES} layer consumes the input {shape} directly; candidates: "
                             f"{supported}. Pass layer='name'")
        raise ValueError(f"apply: ambiguous first layer: {direct} all consume the model input; pass layer='all' to "
                         f"wrap every one of them, or layer='name' to choose one")
    # No forward ran (no forward() at all, or no guessed input fits): only an unambiguous image reader will do
    readers = [n for n, m in cands if isinstance(m, _CONVS) and m.in_channels <= _IMAGE_CHANNELS]
    if len(readers) == 1:
        warnings.warn(f"apply: could not run {type(model).__name__} ({'; '.join(errors)}); wrapping {readers[0]!r}, "
                      f"its only convolution that reads 1-4 channels (pass layer='name' to choose)", stacklevel=3)
        return readers[0]
    raise ValueError(f"apply: could not run {type(model).__name__} to see which layer reads its input "
                     f"({'; '.join(errors)}), and " + (f"{len(readers)} convolutions could read images ({readers})"
                                                       if readers else "no convolution reads 1-4 channels")
                     + f"; pass layer='name' (candidates: {supported}), or example_input= if the model has a forward()")


def find_input_layers(model: nn.Module, *, example_input: Optional[torch.Tensor] = None) -> list[str]:
    """Qualified names of every supported layer whose input is the model input, in call order: what
    ``apply(model, layer="all")`` wraps (other layer types reading it, like ConvTranspose or Embedding, are left
    out; if only such layers read it, or no forward runs, a ValueError says so)."""
    cands = _candidates(model)
    supported = _supported_names(model, cands)
    direct, shape, errors = _run_first(model, example_input, cands)
    if direct is None:
        raise ValueError(f"apply(layer='all'): could not run {type(model).__name__} on a guessed input "
                         f"({'; '.join(errors)}); pass example_input= or the names as layer=[...]. "
                         f"Candidates: {supported}")
    kinds = dict(cands)
    found = [n for n in direct if isinstance(kinds[n], SUPPORTED)]
    if not found:
        others = [f"{n} ({type(kinds[n]).__name__})" for n in direct]
        raise ValueError(f"apply(layer='all'): no {TYPE_NAMES} layer consumes the input {shape} directly"
                         + (f"; it goes to unsupported {others}" if others else "") + f". Candidates: {supported}")
    return found
