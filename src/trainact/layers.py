"""TrAct layers: ``TrAct(module)``, ``apply(model)``, ``remove(model)``, and the options (``TrActConfig``).

A TrAct layer is an instance of a subclass of the original class (``isinstance`` holds) sharing its Parameters,
buffers and ``state_dict`` keys; only its weight's gradient changes.  What differs per layer type is asked of its
adapter (``adapters.py``).  How a gradient flows, one named hop each:

1. ``TrActLayer.forward`` → ``TrActLayer._tract_call``: the layer's own call, with TrAct's nodes (``backward.py``)
   attached and a ``Spec`` fixing what the backward needs;
2. ``backward.Precondition.backward`` receives the layer's own Gᵀ A (or ``backward.Capture.backward`` the output
   gradient G, when the layer computes in 16 bits or r < n);
3. ``backward.tract_gradient`` forms AᵀA (``patches.gram``), pools it over the ranks if the layer's ``parallel``
   strategy says so, and solves (``tract.solve``); autograd accumulates the result into ``W.grad``.
   Deferred (``defer=True``): hop 3 returns Gᵀ A and files AᵀA with the layer (``steps.State``), and
4. ``steps.precondition_grads`` (or an attached optimizer's step) solves with the statistics of the backwards that
   ``W.grad`` holds, in place (``steps._precondition`` → ``tract.solve``).
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
    """The options of a TrAct layer, validated when made (``TrAct``, ``apply`` and the Lightning callback take them
    as keyword arguments, or a ready ``config=``).

    lam: λ > 0; the paper uses 0.05, 0.1, 0.2 (0.1 to start, 0.2 for long training; smaller is more aggressive), for
        standardised inputs.  relative: the ridge term λ · tr(AᵀA/r)/n, invariant to the input scale (not in the
        paper).  solve_dtype: of the statistics and the triangular solves; "auto": float64 when the layer's input
        or weight is, else float32 (the factorisation is always float64).  block_bytes: the most bytes of patches
        laid out at once (default: 16 MiB on the CPU, 64 MiB on a GPU).  woodbury: the r x r form when a batch has
        fewer patch rows than features.  sync: with several ranks, "auto"/"global" use the global batch's
        covariance, "local" each rank's own (the paper's code); "global" needs a process group.  defer: backward
        files the statistics and :func:`trainact.precondition_grads` preconditions once per step (exact gradient
        accumulation, multi-crop pooling).
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
    weight *as passed to* its one functional convolution / linear call, with that call's input and adapter."""

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
        adapter = adapters.CALLS[func].of_call(weight, tuple(args), kwargs)

        def call(w: torch.Tensor) -> torch.Tensor:
            if key == 1:
                args[1] = w
            else:
                kwargs[key] = w
            return func(*args, **kwargs)

        return self.layer._tract_call(call, weight, x, adapter)


class TrActLayer:
    """Mixin for the TrAct version of a supported layer.  Concrete classes are made per original class; the
    per-process state (``steps.State``: strategy, sinks, pending statistics, hooks) is ``_tract_state``."""

    tract: TrActConfig
    _tract_type: type[adapters.Adapter]  # the adapter class of the layer's type (set per concrete class)
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
            return self._tract_type.forward(self, input, weight)
        return self._tract_call(lambda w: self._tract_type.forward(self, input, w), weight, input,
                                self.tract_adapter)

    @property
    def tract_label(self) -> str:
        """The layer's name in messages."""
        return f"TrAct layer {self._tract_name!r}" if self._tract_name else f"TrAct layer ({type(self).__name__})"

    @property
    def tract_adapter(self) -> adapters.Adapter:
        """The adapter of the layer's own call."""
        return self._tract_type.of_layer(self)

    def _tract_call(self, call, weight: torch.Tensor, x: torch.Tensor, adapter: adapters.Adapter) -> torch.Tensor:
        """``call(w)``, the layer's one convolution/linear call with input ``x`` and weight ``w``, run with TrAct's
        backward attached to ``weight`` (backward.py)."""
        if getattr(torch.compiler, "_is_exporting_flag", False):  # set by torch.export only (torch >= 2.7)
            raise RuntimeError(f"{self.tract_label}: torch.export keeps no custom backward, so an exported TrAct layer "
                               f"would train with the plain gradient; export for inference under torch.no_grad() or "
                               f"after trainact.remove(model), and train with eager PyTorch or torch.compile")
        cfg, state = self.tract, steps.state_of(self)
        # "auto": from the input's and the weight's dtype (the gradient has the weight's): the same on every rank
        dtype = resolve_solve_dtype(cfg.solve_dtype, x.dtype, weight.dtype)
        compiling, strategy = torch.compiler.is_compiling(), state.strategy
        if not strategy.final and (parallel.initialized() or cfg.sync == "global"):  # a process group came up
            strategy = parallel.choose(cfg, self.tract_label, weight.device, dtype, check=not compiling)
            if not compiling:  # chosen for good in eager mode, where the ranks' check may run
                state.strategy = strategy
        if state.status is None or state.status.device != weight.device or state.eye.dtype != dtype:
            state.make_sinks(self.tract_adapter, weight.device, dtype)
        capture = (_computes_in_16_bits(x, weight)
                   or cfg.woodbury and not strategy.all_reduce and 0 < adapter.count_rows(x) < adapter.n)
        spec = Spec(cfg.lam, cfg.relative, cfg.woodbury, cfg.defer,
                    cfg.block_bytes or patches.default_block_bytes(x.device), dtype, adapter, self.tract_label,
                    strategy.all_reduce, not patches.accelerator_path(x.device) and not compiling, capture)
        sinks, x = (state.status, *state.sinks, state.eye), x.detach()
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
        state, weight = self.__dict__.setdefault("_tract_state", steps.State(self.tract.defer, parallel.Local())), self.weight
        if weight.device.type != "meta":
            state.make_sinks(self.tract_adapter, weight.device, resolve_solve_dtype(self.tract.solve_dtype, weight.dtype))
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
        cfg, base = self.tract, super().extra_repr()  # type: ignore[misc]
        extra = ", ".join([f"lam={cfg.lam}"] + [f"{k}={v!r}" for k, v in (
            ("relative", cfg.relative), ("solve_dtype", cfg.solve_dtype), ("sync", cfg.sync), ("defer", cfg.defer))
            if v != TrActConfig.__dataclass_fields__[k].default])
        return f"{base}, {extra}" if base else extra

    def __reduce_ex__(self, protocol):
        # The concrete class is made at run time; pickle (and deepcopy) rebuild it from the original class.
        plain = _plain_class(type(self))
        state = {k: v for k, v in self.__dict__.items() if k not in _TRANSIENT}
        return (_rebuild, (plain,), state)


def _computes_in_16_bits(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the layer's own kernels run in a 16-bit dtype (autocast, or 16-bit weights or input)."""
    on = torch.is_autocast_enabled(x.device.type)
    return (torch.get_autocast_dtype(x.device.type).itemsize if on else min(x.dtype.itemsize, weight.dtype.itemsize)) < 4


_SMALL_LAM = 1e-4  # below this, float32 statistics give a noisy solve on ill-conditioned patches
_CLASSES: dict[type, type] = {}
_TRANSIENT = ("_tract_state",)  # per-process state, never copied or pickled


def _tract_class(cls: type) -> type:
    if cls not in _CLASSES:
        adapter = adapters.adapter_for(cls)
        _CLASSES[cls] = type(f"TrAct{cls.__name__}", (TrActLayer, cls),
                             {"__module__": __name__, "_tract_type": adapter,
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
        raise TypeError(f"{where}: unsupported module {type(module).__name__}; TrAct supports "
                        f"{adapters.SUPPORTED_NAMES} (and subclasses, also those whose forward transforms the weight "
                        f"before one functional call)")


def TrAct(module: nn.Module, lam: float = _UNSET, *, config: Optional[TrActConfig] = None,
          name: Optional[str] = None, **options: Any) -> nn.Module:
    """The TrAct version of a first layer (``nn.Linear``, ``nn.Conv1d/2d/3d``): an instance of the original class
    sharing its Parameters, buffers and hooks, with identical outputs; only the weight gradient becomes
    ``Gᵀ A (AᵀA/r + λI)⁻¹``.  The module passed in is not modified::

        model.conv1 = trainact.TrAct(model.conv1)                     # the paper's usage, λ = 0.1
        model.conv1 = trainact.TrAct(model.conv1, 0.2, defer=True)    # options: TrActConfig's fields, or config=

    ``name`` labels the layer in messages (``apply`` sets the qualified name)."""
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
    new = object.__new__(cls)  # own dicts, shared contents (Parameters, buffers, hooks)
    new.__dict__.update({k: copy.copy(v) if isinstance(v, dict) else v for k, v in module.__dict__.items()})
    new.tract, new._tract_name = cfg, name
    new._tract_refresh()
    steps.register(new)
    if cfg.lam < _SMALL_LAM and resolve_solve_dtype(cfg.solve_dtype, module.weight.dtype) == torch.float32:
        warnings.warn(f"TrAct: λ={cfg.lam:g} for {label} is below {_SMALL_LAM:g} with float32 statistics: the solve "
                      f"amplifies float32 rounding by up to 1/λ where the patches are ill-conditioned; pass "
                      f"solve_dtype=torch.float64 for an exact gradient at this λ", stacklevel=2)
    return new


def untract(module: TrActLayer) -> nn.Module:
    """The plain layer of a TrAct layer (same Parameters); :func:`remove` does it in place for a whole model."""
    steps.state_of(module).unwatch()
    steps.register(module, add=False)
    plain = object.__new__(_plain_class(type(module)))
    plain.__dict__.update({k: copy.copy(v) if isinstance(v, dict) else v for k, v in module.__dict__.items()
                           if k not in ("tract", "_tract_name") + _TRANSIENT})
    return plain


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def remove(model: nn.Module) -> list[str]:
    """Replace every TrAct layer in ``model`` by the plain layer (same Parameters, values untouched); returns their
    names.  A bare TrAct layer cannot be replaced in place: ``trainact.untract(layer)`` returns its plain layer."""
    if isinstance(model, TrActLayer):
        raise ValueError("remove(model): got a TrAct layer itself; call remove() on the model that contains it")
    names = [name for name, mod in model.named_modules() if isinstance(mod, TrActLayer)]
    for name in names:
        _set_submodule(model, name, untract(model.get_submodule(name)))
    return names


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


def apply(model: nn.Module, lam: float = _UNSET, *, layer: Union[None, str, list[str], tuple[str, ...]] = None,
          example_input: Optional[torch.Tensor] = None, **options: Any) -> Union[str, list[str]]:
    """Replace the model's first layer by its TrAct version and return its name (log it).  ``layer``: ``None``
    (default) the one Linear/Conv that reads the model input (one forward pass on ``example_input`` or a guessed
    input: :func:`find_first_layer`); ``"all"`` every such layer, in call order (CrossViT's patch embeddings,
    FastViT's stem branches: :func:`find_input_layers`); a name, or a list of names (``["all"]`` for a submodule
    called so), taken as given.  Every name is checked before any layer is replaced; ``options`` are
    :func:`TrAct`'s; :func:`remove` undoes it."""
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
