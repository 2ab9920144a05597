"""TrAct layers: ``TrAct(module)``, ``apply(model)``, ``remove(model)``, and the options (``TrActConfig``).

A TrAct layer is the original layer with one change: its weight's gradient is the TrAct gradient.  The wrapped
module is an instance of a subclass of the original class (``isinstance`` holds), shares the original Parameter
objects (an optimizer built before wrapping keeps working) and has the same ``state_dict`` keys.  What differs per
layer family (geometry, forward call, patches, weight gradient) is asked of its adapter (``adapters.py``).

How a gradient flows (each hop names the function that does it):

1. ``TrActLayer.forward`` (here) runs the layer's own forward with ``W.detach()`` and passes the output, W and the
   input to ``TrActLayer._tract_output``, which fixes the backward's options in a ``Spec``;
2. ``backward.TrActFunction.backward`` receives the output gradient G and hands it on to the layer's own backward
   (input and bias gradients);
3. ``backward.tract_gradient`` forms Gᵀ A (``Adapter.weight_grad``) and AᵀA (``patches.gram``), pools AᵀA over the
   ranks when the layer's ``parallel`` strategy says so, and solves (``tract.solve``); autograd accumulates the
   result into ``W.grad``.
   Deferred (``defer=True``): step 3 returns Gᵀ A and files AᵀA with the layer (``steps.State``);
4. ``steps.precondition_grads`` (or an attached optimizer's step) takes the statistics of the backwards that
   ``W.grad`` holds and solves in place (``steps._precondition`` → ``tract.solve``).
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass, fields
from typing import Any, Optional, Union

import torch
from torch import nn

from . import adapters, parallel, patches, steps
from .backward import Capture, Precondition, Spec
from .tract import check_lam, resolve_solve_dtype, solve_dtype_of

__all__ = ["TrAct", "TrActConfig", "TrActLayer", "apply", "remove", "is_tract", "SUPPORTED"]

SUPPORTED = adapters.SUPPORTED


_UNSET: Any = object()  # "lam not given" (None is a bad λ, not a default)


@dataclass(frozen=True)
class TrActConfig:
    """The options of a TrAct layer, validated when made (one place: ``TrAct``, ``apply`` and the Lightning
    callback take these names as keyword arguments, or a ready ``config=``).

    lam: λ > 0.  The paper uses 0.05, 0.1 and 0.2 and recommends 0.1 to start, 0.2 for long training; smaller is
        more aggressive.  Assumes standardised inputs (mean 0, std 1 per channel).
    relative: use λ · tr(AᵀA/r)/n as the ridge term, which makes the update invariant to the input scale (for
        [0, 1] or [0, 255] inputs).  Not in the paper.
    solve_dtype: the dtype of the covariance and the triangular solves.  "auto" (default): float64 when the layer
        input or the weight (and so its gradient) is float64, float32 otherwise (fp32, bf16, fp16 layers,
        autocast); torch.float32 or torch.float64 to fix it.  The n x n factorisation is always float64.
        Under DDP every rank resolves "auto" from the same dtypes, so the all-reduced statistics agree.
    block_bytes: the most bytes of unfolded patches materialised at once (default None: 16 MiB on the CPU, where a
        block's copy and GEMM stay in cache, 64 MiB on a GPU, where fewer, larger GEMMs are faster).
    woodbury: use the Woodbury form when the batch has fewer patch rows than features (r < n).
    sync: under an initialised process group with several ranks, "auto" (default) and "global" precondition with
        the covariance of the global batch (one all-reduce of n² + 1 numbers), "local" with each rank's own (the
        paper's code).  "global" raises if no process group is initialised.
    defer: accumulate statistics in backward and precondition once per optimizer step with
        :func:`trainact.precondition_grads` (exact gradient accumulation, multi-crop pooling).
    """

    lam: float = 0.1
    relative: bool = False
    solve_dtype: Union[str, torch.dtype] = "auto"
    block_bytes: Optional[int] = None
    woodbury: bool = True
    sync: str = "auto"
    defer: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam", check_lam(self.lam))
        for flag in ("relative", "woodbury", "defer"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"TrAct: {flag} must be True or False, got {getattr(self, flag)!r}")
        b = self.block_bytes
        if b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 1):
            raise ValueError(f"TrAct: block_bytes must be a positive integer number of bytes or None, got {b!r}")
        if self.sync not in parallel.SYNC_MODES:
            raise ValueError(f"TrAct: sync must be one of {parallel.SYNC_MODES}, got {self.sync!r}")
        object.__setattr__(self, "solve_dtype", solve_dtype_of(self.solve_dtype))

    @classmethod
    def of(cls, lam: Any = _UNSET, config: Optional["TrActConfig"] = None, **options: Any) -> "TrActConfig":
        """A config from ``config=`` or from ``lam`` and keyword options (not both); unknown names are an error.
        ``lam`` left out (``_UNSET``) means the default, 0.1."""
        if config is not None:
            if lam is not _UNSET or options:
                raise TypeError(f"TrAct: pass either config= or lam/options, not both (got lam={lam!r}, "
                                f"options {sorted(options)})")
            if not isinstance(config, cls):
                raise TypeError(f"TrAct: config must be a TrActConfig, got {type(config).__name__}")
            return config
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise TypeError(f"TrAct: unknown option(s) {unknown}; the options are {names}")
        return cls(**({} if lam is _UNSET else {"lam": lam}), **options)


class _Intercept(torch.overrides.TorchFunctionMode):
    """Runs the forward of a weight-transforming subclass (timm's StdConv2d, ...) and gives TrAct's backward to the
    weight *as passed to* its one functional convolution / linear call, with that call's input and geometry."""

    def __init__(self, layer: "TrActLayer"):
        super().__init__()
        self.layer, self.calls = layer, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        if func not in adapters.CALLS:
            return func(*args, **kwargs)
        self.calls += 1
        if self.calls > 1:
            raise TypeError(f"{self.layer.tract_label}: {_plain_class(type(self.layer)).__name__}.forward makes "
                            f"more than one convolution/linear call; TrAct needs exactly one")
        args = list(args)
        x = args[0] if args else kwargs["input"]
        key = 1 if len(args) > 1 else "weight"
        weight = args[key] if key == 1 else kwargs[key]
        if not (torch.is_grad_enabled() and weight.requires_grad):
            return func(*args, **kwargs)
        geo = adapters.CALLS[func].of_call(weight, tuple(args), kwargs)

        def call(w: torch.Tensor) -> torch.Tensor:
            if key == 1:
                args[1] = w
            else:
                kwargs[key] = w
            return func(*args, **kwargs)

        return self.layer._tract_call(call, weight, x, geo)


class TrActLayer:
    """Mixin for the TrAct version of a supported layer.  Concrete classes are made per original class; the
    per-process state (``steps.State``: strategy, sinks, pending statistics, hooks) is ``_tract_state``."""

    tract: TrActConfig
    tract_adapter: type[adapters.Adapter]  # the layer's family (set per concrete class)
    _tract_name: Optional[str]
    _tract_transforms_weight: bool = False  # the original class overrides forward (e.g. weight standardisation)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if self._tract_transforms_weight:
            mode = _Intercept(self)
            with mode:
                out = super().forward(input)  # type: ignore[misc]
            if mode.calls == 0:
                raise TypeError(f"{self.tract_label}: {_plain_class(type(self)).__name__}.forward makes no "
                                f"convolution/linear call TrAct can see (torch.nn.functional: "
                                f"{', '.join(f.__name__ for f in adapters.CALLS)})")
            return out
        weight = self.weight
        if not (torch.is_grad_enabled() and weight.requires_grad):
            return self.tract_adapter.forward(self, input, weight)
        return self._tract_call(lambda w: self.tract_adapter.forward(self, input, w), weight, input,
                                self.tract_geometry)

    @property
    def tract_label(self) -> str:
        """The layer's name in messages."""
        return f"TrAct layer {self._tract_name!r}" if self._tract_name else f"TrAct layer ({type(self).__name__})"

    @property
    def tract_geometry(self) -> adapters.Adapter:
        """The patch geometry of the layer's own call."""
        return self.tract_adapter.of_layer(self)

    def _tract_call(self, call, weight: torch.Tensor, x: torch.Tensor, geo: adapters.Adapter) -> torch.Tensor:
        """``call(w)``, the layer's one convolution/linear call with input ``x`` and weight ``w``, run with TrAct's
        backward attached to ``weight`` (backward.py)."""
        if getattr(torch.compiler, "_is_exporting_flag", False):  # set by torch.export only (torch >= 2.7)
            raise RuntimeError(
                f"{self.tract_label}: torch.export keeps no custom backward, so an exported TrAct layer would train "
                f"with the plain gradient; export for inference under torch.no_grad() or after trainact.remove(model), "
                f"and train with eager PyTorch or torch.compile")
        cfg, state = self.tract, steps.state_of(self)
        # "auto": from the input's and the weight's dtype (the gradient has the weight's): the same on every rank
        dtype = resolve_solve_dtype(cfg.solve_dtype, x.dtype, weight.dtype)
        compiling, strategy = torch.compiler.is_compiling(), state.strategy
        if not strategy.final and (parallel.initialized() or cfg.sync == "global"):  # a process group came up
            strategy = parallel.choose(cfg, self.tract_label, weight.device, dtype, check=not compiling)
            if not compiling:  # chosen for good in eager mode, where the ranks' check may run
                state.strategy = strategy
        if state.status is None or state.status.device != weight.device or state.sinks[2].dtype != dtype:
            state.make_sinks(self.tract_geometry, weight.device, dtype)  # pending statistics stay filed
        gram, rows, eye = state.sinks
        all_reduce = strategy.all_reduce
        capture = (_computes_in_16_bits(x, weight) or cfg.woodbury and not all_reduce and 0 < geo.count_rows(x) < geo.n)
        spec = Spec(cfg.lam, cfg.relative, cfg.woodbury, cfg.defer,
                    cfg.block_bytes or patches.default_block_bytes(x.device), dtype, geo, self.tract_label,
                    all_reduce, check_now=not patches.accelerator_path(x.device) and not compiling, capture=capture)
        sinks = (state.status, gram, rows, eye)
        x = x.detach()
        if not capture:
            return call(Precondition.apply(weight, x, *sinks, spec))
        w, carrier = Precondition.apply(weight, None, None, None, None, None, spec)
        return Capture.apply(call(w), carrier, x, *sinks, spec)

    def _apply(self, fn, recurse=True):  # .to(), .cuda(), .double(), to_empty(): the sinks follow the weight
        out = super()._apply(fn, recurse)  # type: ignore[misc]
        self._tract_refresh()
        return out

    def _tract_refresh(self) -> None:
        """Sinks on the weight's device, and hooks on the weight (at wrapping, unpickling and moves)."""
        state = self.__dict__.setdefault("_tract_state", steps.State(self.tract.defer, parallel.Local()))
        weight = self.weight
        if weight.device.type != "meta":
            state.make_sinks(self.tract_geometry, weight.device, resolve_solve_dtype(self.tract.solve_dtype,
                                                                                      weight.dtype))
        state.watch(weight)

    def __setstate__(self, state):
        super().__setstate__(state)  # type: ignore[misc]
        self._tract_refresh()
        steps.register(self)

    def __prepare_scriptable__(self):
        raise RuntimeError(f"{self.tract_label}: torch.jit.script does not support TrAct layers (a custom autograd "
                           f"Function); use torch.compile to compile a model with TrAct, or script after "
                           f"trainact.remove(model)")

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        extra = f"lam={self.tract.lam}"
        if self.tract.relative:
            extra += ", relative=True"
        if self.tract.solve_dtype != "auto":
            extra += f", solve_dtype={self.tract.solve_dtype}"
        if self.tract.sync != "auto":
            extra += f", sync={self.tract.sync!r}"
        if self.tract.defer:
            extra += ", defer=True"
        return f"{base}, {extra}" if base else extra

    def __reduce_ex__(self, protocol):
        # The concrete class is made at run time; pickle (and deepcopy) rebuild it from the original class.
        plain = _plain_class(type(self))
        state = {k: v for k, v in self.__dict__.items() if k not in _TRANSIENT}
        return (_rebuild, (plain,), state)


def _computes_in_16_bits(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the layer's own kernels run in a 16-bit dtype (autocast, or 16-bit weights or input)."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device).itemsize < 4
    return min(x.dtype.itemsize, weight.dtype.itemsize) < 4


_SMALL_LAM = 1e-4  # below this, float32 statistics give a noisy solve on ill-conditioned patches
_CLASSES: dict[type, type] = {}
_TRANSIENT = ("_tract_state",)  # per-process state, never copied or pickled


def _tract_class(cls: type) -> type:
    if cls not in _CLASSES:
        adapter = adapters.adapter_for(cls)
        _CLASSES[cls] = type(f"TrAct{cls.__name__}", (TrActLayer, cls),
                             {"__module__": __name__, "tract_adapter": adapter,
                              "_tract_transforms_weight": adapter.transforms_weight(cls)})
    return _CLASSES[cls]


def _plain_class(cls: type) -> type:
    for plain, tract_cls in _CLASSES.items():
        if tract_cls is cls:
            return plain
    raise TypeError(f"{cls.__name__} is not a TrAct class")


def _rebuild(plain: type) -> nn.Module:
    return object.__new__(_tract_class(plain))


def is_tract(module: nn.Module) -> bool:
    """True for a layer wrapped by :func:`TrAct`."""
    return isinstance(module, TrActLayer)


def _check_supported(module: Any, where: str) -> None:
    if isinstance(module, TrActLayer):
        raise ValueError(f"{where}: {module.tract_label} is already a TrAct layer; wrapping twice is not allowed")
    if not isinstance(module, SUPPORTED):
        raise TypeError(
            f"{where}: unsupported module {type(module).__name__}; TrAct supports {adapters.SUPPORTED_NAMES} "
            f"(and subclasses, also those whose forward transforms the weight before one functional call)"
        )


def TrAct(
    module: nn.Module,
    lam: float = _UNSET,
    *,
    config: Optional[TrActConfig] = None,
    name: Optional[str] = None,
    **options: Any,
) -> nn.Module:
    """Return the TrAct version of a first layer (``nn.Linear`` or ``nn.Conv1d/2d/3d``).

    The result is an instance of the original class sharing its Parameter objects, buffers and hooks; its
    forward output is identical; only the weight gradient changes to ``Gᵀ A (AᵀA/r + λI)⁻¹``.  The module passed
    in is not modified::

        model.conv1 = trainact.TrAct(model.conv1)                     # the paper's usage, λ = 0.1
        model.conv1 = trainact.TrAct(model.conv1, 0.2, defer=True)    # options: see TrActConfig
        model.conv1 = trainact.TrAct(model.conv1, config=TrActConfig(lam=0.2))

    ``lam`` and ``options`` are the fields of :class:`TrActConfig` (documented there), or ``config`` one made
    before; ``name`` is the label used in error messages (``apply`` sets the qualified name).
    """
    _check_supported(module, "TrAct")
    label = repr(name) if name else type(module).__name__
    if any(nn.parameter.is_lazy(p) for p in module.parameters(recurse=False)):
        raise ValueError(f"TrAct: {label} ({type(module).__name__}) is not initialised yet (a lazy module learns its "
                         f"input size at its first forward); run one forward pass on a real batch, then wrap it")
    if hasattr(module.weight, "to_local"):
        raise ValueError(f"TrAct: {label}'s weight is already sharded (a DTensor: fully_shard was applied first); "
                         f"apply TrAct before fully_shard")
    cfg = TrActConfig.of(lam, config, **options)
    cls = _tract_class(type(module))
    if cfg.defer and (cls._tract_transforms_weight or not isinstance(module._parameters.get("weight"), nn.Parameter)):
        how = ("whose forward transforms the weight" if cls._tract_transforms_weight else
               "whose weight is computed (a parametrization or weight_norm)")
        raise ValueError(f"TrAct: defer=True is not supported for {label} ({type(module).__name__}), {how}: TrAct "
                         f"preconditions the computed weight's gradient, which only exists inside backward; use the "
                         f"default per-step mode (defer=False)")
    new = object.__new__(cls)
    new.__dict__.update(module.__dict__)
    for key, value in module.__dict__.items():  # own dicts, shared contents (Parameters, buffers, hooks)
        if isinstance(value, dict):
            new.__dict__[key] = copy.copy(value)
    new.tract = cfg
    new._tract_name = name
    new._tract_refresh()
    steps.register(new)
    if cfg.lam < _SMALL_LAM and resolve_solve_dtype(cfg.solve_dtype, module.weight.dtype) == torch.float32:
        warnings.warn(f"TrAct: λ={cfg.lam:g} for {label} is below {_SMALL_LAM:g} with float32 statistics: the solve "
                      f"amplifies float32 rounding by up to 1/λ where the patches are ill-conditioned; pass "
                      f"solve_dtype=torch.float64 for an exact gradient at this λ", stacklevel=2)
    return new


def _untract(module: TrActLayer) -> nn.Module:
    steps.state_of(module).unwatch()
    steps.unregister(module)
    plain = object.__new__(_plain_class(type(module)))
    for key, value in module.__dict__.items():
        if key in ("tract", "_tract_name") + _TRANSIENT:
            continue
        plain.__dict__[key] = copy.copy(value) if isinstance(value, dict) else value
    return plain


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def remove(model: nn.Module) -> list[str]:
    """Replace every TrAct layer in ``model`` by the plain layer (same Parameters, values untouched).

    Returns the qualified names of the restored layers.  A bare TrAct layer passed as ``model`` cannot be
    replaced in place: use ``trainact.layers.untract(layer)`` for that.
    """
    if isinstance(model, TrActLayer):
        raise ValueError("remove(model): got a TrAct layer itself; call remove() on the model that contains it")
    names = [name for name, mod in model.named_modules() if isinstance(mod, TrActLayer)]
    for name in names:
        _set_submodule(model, name, _untract(model.get_submodule(name)))
    return names


untract = _untract


def _which_layers(model: nn.Module, layer: Any, example_input: Optional[torch.Tensor]) -> tuple[list, Optional[str], bool]:
    """apply's `layer` argument -> (qualified names, the call as errors name it, whether one name is returned)."""
    from .detect import find_first_layer, find_input_layers

    if isinstance(layer, (list, tuple)):
        names = list(layer)
        where = f"apply(layer={names!r})"
        if not names:
            raise ValueError(f"{where}: the list of layer names is empty; name at least one layer")
        bad = [n for n in names if not isinstance(n, str)]
        if bad:
            raise TypeError(f"{where}: layer names must be qualified module names (str), got {bad!r}")
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ValueError(f"{where}: {repeated} named more than once")
        return names, where, False
    if layer is None:
        return [find_first_layer(model, example_input=example_input)], None, True
    if layer == "all":
        return find_input_layers(model, example_input=example_input), "apply(layer='all')", False
    if isinstance(layer, str):
        return [layer], None, True
    raise TypeError(f"apply: layer must be None, 'all', a qualified module name (str) or a list of names, got {layer!r}")


def apply(
    model: nn.Module,
    lam: float = _UNSET,
    *,
    layer: Union[None, str, list[str], tuple[str, ...]] = None,
    example_input: Optional[torch.Tensor] = None,
    **options: Any,
) -> Union[str, list[str]]:
    """Replace the model's first layer (the Linear/Conv that consumes the model input) by its TrAct version.

    ``layer`` says which:

    * ``None`` (default): the one layer that consumes the model input; returns its qualified name (``str``).
      Detection runs one forward pass in eval mode on ``example_input`` (or on a small input inferred from the
      model) and picks the Linear/Conv layer whose input is computed from the model input by parameter-free
      operations only; see :func:`find_first_layer`.  Several such layers are an error that suggests ``"all"``.
    * ``"all"``: every such layer (several patch embeddings as in CrossViT, the parallel branches of a
      re-parameterisable stem as in FastViT/MobileOne); returns their names in call order (``list``).
      See :func:`find_input_layers`.
    * ``"name"``: that layer, no detection; returns the name.
    * a list or tuple of names: exactly those layers; returns them as a list.  (A submodule literally called
      ``all`` is wrapped with ``layer=["all"]``.)

    Every name is checked before any layer is replaced.  ``options`` are those of :func:`TrAct`;
    :func:`remove` undoes any of these.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"apply: model must be an nn.Module, got {type(model).__name__}")
    existing = [n for n, m in model.named_modules() if isinstance(m, TrActLayer)]
    if existing:
        raise ValueError(f"apply: the model already has TrAct layer(s) {existing}; call trainact.remove(model) first")
    names, where, single = _which_layers(model, layer, example_input)
    targets = []
    unknown = []
    for name in names:
        try:
            targets.append(model.get_submodule(name))
        except AttributeError as err:
            unknown.append((name, str(err)))
    if unknown:
        if single:
            name, err = unknown[0]
            raise ValueError(f"apply: the model has no submodule {name!r} ({err})") from None
        raise ValueError(
            f"{where}: the model has no submodule(s) {[n for n, _ in unknown]}; "
            f"Linear/Conv layers it has: {[n for n, m in model.named_modules() if isinstance(m, SUPPORTED) and n]}"
        ) from None
    shared = [n for i, (n, t) in enumerate(zip(names, targets)) if any(t is u for u in targets[:i])]
    if shared:
        raise ValueError(f"{where}: {shared} name a module already named earlier in the list (one module, two names)")
    for name, target in zip(names, targets):
        if target is model:
            raise ValueError(f"apply: layer={name!r} names the model itself; wrap it with trainact.TrAct(model) instead")
        _check_supported(target, f"apply(layer={name!r})")
    wrapped = [TrAct(target, lam, name=name, **options) for name, target in zip(names, targets)]  # validates options
    for name, new in zip(names, wrapped):
        _set_submodule(model, name, new)
    return names[0] if single else names
