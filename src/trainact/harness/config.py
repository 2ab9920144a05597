"""The one configuration object of `trainact compare`.

Every option of the harness lives in `CompareConfig`; the CLI only builds it. It is validated when it is
constructed (`ValueError` naming the offending value), before anything is loaded or trained, and it
round-trips through JSON (`config.json` in the output directory), so a result always carries the exact
settings that produced it.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

METHODS = ("baseline", "tract")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("cosine", "multistep", "step")
LOADERS = ("auto", "memory", "stream")
INPUT_RANGES = ("standardized", "unit", "byte")
AMP_MODES = ("off", "bf16", "fp16")
# How the first layer starts: the model's own init, or airbench's patch-whitening filters (trainact.harness.whiten)
# trained normally, or frozen (only its bias, if any, trains).
FIRST_LAYER_INITS = ("default", "whiten", "whiten-frozen")

# The pytorch-cifar100 recipe multiplies the lr by 0.2 at epochs 60/120/160 of 200. For another budget the
# milestones keep their place as fractions of it: epoch round(0.3 B), round(0.6 B), round(0.8 B).
MULTISTEP_FRACTIONS = (0.3, 0.6, 0.8)
MULTISTEP_GAMMA = 0.2
# `schedule="step"` is the same rule with its milestones (fractions of the budget) and factor given as data, e.g.
# the paper's ImageNet ResNet-50: milestones (0.333, 0.667), gamma 0.1 (x0.1 at 1/3 and 2/3 of training).
DEFAULT_STEP_GAMMA = 0.1

# `loader="auto"` keeps a data set in memory unless its decoded uint8 arrays (3 bytes per pixel) would take more
# than this, and streams it from disk otherwise; `memory_budget` replaces it.
DEFAULT_MEMORY_BUDGET = 8 * 2**30

# The paper's best SGD lr (ResNet-18 on CIFAR-10, momentum 0.9, cosine): the first layer's lr when
# `first_layer_sgd` is set and `first_layer_lr` is not.
DEFAULT_FIRST_LAYER_LR = 0.08

# Fields added after results were collected: config.json carries them only when they differ from the default, so a
# run with the defaults writes the same bytes as before they existed (and an older file loads with the defaults).
OPTIONAL_FIELDS = ("image_size", "val_fraction", "loader", "workers", "memory_budget", "milestones", "gamma",
                   "channels_last", "compile", "jobs")

# Fields that may differ between two invocations writing into the same output directory: adding budgets,
# seeds, lrs or lambdas adds runs; the rest only changes how runs are executed, not what they compute.
# `workers` only sets how many processes decode a streamed data set: every image's augmentation is drawn from
# (seed, epoch, index), so the batches do not depend on it.
EXTENSIBLE_FIELDS = ("methods", "lams", "budgets", "seeds", "lrs", "lr_grid_seeds", "out", "device", "threads",
                     "channels_last", "compile", "jobs",
                     "workers")


@dataclass(frozen=True)
class CompareConfig:
    """All options of `trainact compare` (see `trainact compare --help` for the meaning of each)."""

    # data
    data: Optional[str] = None  # None: the built-in synthetic data set
    synthetic: Optional[dict] = None  # options of the synthetic set (train_size, test_size, image_size, seed, ...)
    cache_dir: Optional[str] = None
    train_subset: Optional[int] = None
    input_range: str = "standardized"
    augment: bool = True
    # the fields below are absent from older config.json files: they load with these defaults (today's behaviour)
    image_size: Optional[int] = None  # resize image folders to N x N (ImageNet's 0.875 convention); None: as stored
    val_fraction: Optional[float] = None  # hold out this fraction of a train-only folder (per class) as the test split
    loader: str = "auto"  # memory | stream | auto (memory unless the decoded set exceeds the memory budget)
    workers: Optional[int] = None  # decoding processes of the streaming loader; None: min(8, CPUs per process)
    memory_budget: Optional[int] = None  # bytes; None: DEFAULT_MEMORY_BUDGET
    # model
    model: str = "resnet18"
    width: Optional[int] = 8  # ResNet base width (64 in the paper; 8 keeps the no-argument demo on a CPU)
    patch_size: Optional[int] = None  # ViT options; None: the model's default
    dim: Optional[int] = None
    depth: Optional[int] = None
    heads: Optional[int] = None
    # methods
    methods: tuple = ("baseline", "tract")
    lams: tuple = (0.1,)
    relative_lambda: bool = False
    # protocol
    budgets: tuple = (4, 8)  # the demo: at 3 epochs both methods are still in the synthetic set's initial plateau
    seeds: tuple = (0,)
    lrs: tuple = (0.08,)
    lr_grid_seeds: Optional[int] = None  # the lr grid uses the first N seeds; None: all seeds
    # optimisation
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: Optional[tuple] = None  # schedule "step": fractions of the budget in (0, 1), increasing
    gamma: Optional[float] = None  # schedule "step": the lr factor at each milestone; None: 0.1
    warmup_epochs: float = 0.0  # the paper's: no warm-up (its CIFAR-100 recipe's one epoch is an option)
    label_smoothing: float = 0.0
    batch_size: int = 128  # global batch (all ranks together)
    grad_accum: int = 1
    first_layer_sgd: bool = False
    first_layer_lr: Optional[float] = None
    first_layer_init: str = "default"  # absent from older config.json files: they load as "default"
    # execution
    amp: str = "off"
    channels_last: bool = False  # model and inputs in channels-last memory format (faster convolutions on GPUs)
    compile: bool = False  # train through torch.compile(model) (evaluation stays eager)
    jobs: int = 1  # runs trained side by side, each in its own process
    device: str = "auto"
    eval_every: int = 1
    threads: Optional[int] = None
    out: str = "runs/compare"

    def __post_init__(self) -> None:
        # lists arrive as lists from JSON / callers: store tuples so the config stays hashable and frozen
        for name in ("methods", "lams", "budgets", "seeds", "lrs"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
                raise ValueError(f"{name} must be a list, got {value!r}")
            object.__setattr__(self, name, tuple(value))
        if self.milestones is not None:
            if isinstance(self.milestones, (str, bytes)) or not hasattr(self.milestones, "__iter__"):
                raise ValueError(f"milestones must be a list of fractions of the budget, got {self.milestones!r}")
            object.__setattr__(self, "milestones", tuple(self.milestones))
        if self.synthetic is not None:
            if not isinstance(self.synthetic, dict):
                raise ValueError(f"synthetic must be a dict of options, got {self.synthetic!r}")
            if self.data is not None:
                raise ValueError(f"synthetic options {self.synthetic} only apply without data (got data={self.data!r})")
        _check_choice("input_range", self.input_range, INPUT_RANGES)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("schedule", self.schedule, SCHEDULES)
        _check_choice("amp", self.amp, AMP_MODES)
        _check_choice("loader", self.loader, LOADERS)
        self._check_data_options()
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if not self.model or not isinstance(self.model, str):
            raise ValueError(f"model must be a non-empty name, got {self.model!r}")
        self._check_protocol()
        if self.train_subset is not None:
            _check_int("train_subset", self.train_subset, minimum=1)
        for name in ("width", "patch_size", "dim", "depth", "heads"):
            if getattr(self, name) is not None:
                _check_int(name, getattr(self, name), minimum=1)
        self._check_optimisation()
        self._check_first_layer()
        _check_int("eval_every", self.eval_every, minimum=1)
        _check_int("jobs", self.jobs, minimum=1)
        for flag in ("channels_last", "compile"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{flag} must be true or false, got {getattr(self, flag)!r}")
        if self.threads is not None:
            _check_int("threads", self.threads, minimum=1)
        if not self.out:
            raise ValueError("out must be a directory path")

    def _check_protocol(self) -> None:
        """Methods, λs, budgets, seeds and lrs: each list non-empty, valid and without duplicates."""
        _check_list("methods", self.methods, lambda m: _check_choice("method", m, METHODS))
        if "tract" in self.methods and not self.lams:
            raise ValueError("lams must not be empty when tract is among the methods")
        _check_list("lams", self.lams, lambda lam: _check_number("lam", lam, positive=True), empty_ok=True)
        if self.relative_lambda and "tract" not in self.methods:
            raise ValueError("relative_lambda only applies to tract, which is not among the methods "
                             f"{list(self.methods)}")
        _check_list("budgets", self.budgets, lambda b: _check_int("budget", b, minimum=1))
        _check_list("seeds", self.seeds, lambda s: _check_int("seed", s, minimum=0))
        _check_list("lrs", self.lrs, lambda lr: _check_number("lr", lr, positive=True))
        if len(self.lrs) > 1 and "baseline" not in self.methods:
            raise ValueError(f"several lrs {list(self.lrs)} need the baseline: TrAct uses the baseline's "
                             "best lr (the paper's rule); give one lr or add baseline to the methods")
        if self.lr_grid_seeds is not None:
            _check_int("lr_grid_seeds", self.lr_grid_seeds, minimum=1)
            if self.lr_grid_seeds > len(self.seeds):
                raise ValueError(f"lr_grid_seeds={self.lr_grid_seeds} exceeds the number of seeds "
                                 f"({len(self.seeds)})")

    def _check_optimisation(self) -> None:
        _check_number("momentum", self.momentum, minimum=0.0)
        if self.momentum >= 1:
            raise ValueError(f"momentum must be < 1, got {self.momentum!r}")
        if self.nesterov and (self.optimizer != "sgd" and not self.first_layer_sgd):
            raise ValueError(f"nesterov applies to SGD, but the optimizer is {self.optimizer!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0, got momentum=0")
        _check_number("weight_decay", self.weight_decay, minimum=0.0)
        self._check_schedule()
        _check_number("warmup_epochs", self.warmup_epochs, minimum=0.0)
        if self.warmup_epochs >= min(self.budgets):
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be shorter than the shortest budget "
                             f"({min(self.budgets)} epochs); lower it (--warmup-epochs 0 turns it off)")
        _check_number("label_smoothing", self.label_smoothing, minimum=0.0)
        if self.label_smoothing >= 1:
            raise ValueError(f"label_smoothing must be < 1, got {self.label_smoothing!r}")
        _check_int("batch_size", self.batch_size, minimum=1)
        _check_int("grad_accum", self.grad_accum, minimum=1)
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} is not divisible into grad_accum={self.grad_accum} "
                             f"micro-batches")

    def _check_first_layer(self) -> None:
        if self.first_layer_sgd and self.optimizer == "sgd":
            raise ValueError("first_layer_sgd trains the first layer with SGD while the rest uses Adam/AdamW; "
                             "with optimizer 'sgd' everything is SGD already (choose adam or adamw)")
        if self.first_layer_lr is not None:
            if not self.first_layer_sgd:
                raise ValueError(f"first_layer_lr={self.first_layer_lr!r} is only used with first_layer_sgd")
            _check_number("first_layer_lr", self.first_layer_lr, positive=True)
        _check_choice("first_layer_init", self.first_layer_init, FIRST_LAYER_INITS)
        if self.first_layer_init == "whiten-frozen":
            if "tract" in self.methods:
                raise ValueError("first_layer_init 'whiten-frozen' freezes the first layer's weight, so TrAct has "
                                 f"nothing to precondition (methods {list(self.methods)}); use --methods baseline")
            if self.first_layer_sgd:
                raise ValueError("first_layer_sgd trains the first layer's weight with SGD, but first_layer_init "
                                 "'whiten-frozen' freezes it")

    def _check_data_options(self) -> None:
        if self.image_size is not None:
            _check_int("image_size", self.image_size, minimum=1)
        if self.val_fraction is not None:
            ok = (isinstance(self.val_fraction, (int, float)) and not isinstance(self.val_fraction, bool)
                  and 0 < self.val_fraction < 1)
            if not ok:
                raise ValueError(f"val_fraction must be a fraction in (0, 1) (--val-fraction), got {self.val_fraction!r}")
        if self.data is None:
            for name, flag in (("image_size", "--image-size"), ("val_fraction", "--val-fraction")):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)!r} ({flag}) applies to an image folder or archive "
                                     "(--data); the built-in synthetic set takes --synthetic image_size=N")
            if self.loader == "stream":
                raise ValueError("loader 'stream' (--loader stream) reads an image folder or archive (--data); the "
                                 "built-in synthetic set is made in memory")
        if self.workers is not None:
            _check_int("workers", self.workers, minimum=0)
            if self.loader == "memory":
                raise ValueError(f"workers={self.workers} (--workers) applies to the streaming loader, but the loader "
                                 "is 'memory' (use --loader stream or auto, or drop --workers)")
        if self.memory_budget is not None:
            _check_int("memory_budget", self.memory_budget, minimum=1)
            if self.loader != "auto":
                raise ValueError(f"memory_budget={self.memory_budget} (--memory-budget) decides --loader auto, but "
                                 f"the loader is {self.loader!r} (drop one of the two)")

    def _check_schedule(self) -> None:
        if self.schedule != "step":
            for name, value in (("milestones", self.milestones), ("gamma", self.gamma)):
                if value is not None:
                    raise ValueError(
                        f"{name}={list(value) if name == 'milestones' else value!r} (--{name}) applies to --schedule "
                        f"step, not {self.schedule!r} (multistep is the fixed preset: x{MULTISTEP_GAMMA:g} at "
                        f"{', '.join(format(f, 'g') for f in MULTISTEP_FRACTIONS)} of the budget)")
            return
        if not self.milestones:
            raise ValueError("schedule 'step' needs milestones: fractions of the budget at which the lr is multiplied "
                             "by gamma, e.g. --milestones 0.333,0.667 --gamma 0.1")
        for f in self.milestones:
            ok = isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1
            if not ok:
                raise ValueError(f"milestones must be fractions of the budget in (0, 1) (--milestones), got {f!r} in "
                                 f"{list(self.milestones)}")
        if any(b <= a for a, b in zip(self.milestones, self.milestones[1:])):
            raise ValueError(f"milestones must increase (--milestones), got {list(self.milestones)}")
        if self.gamma is not None:
            _check_number("gamma", self.gamma, positive=True)
            if self.gamma > 1:
                raise ValueError(f"gamma must be in (0, 1] (--gamma: the lr factor at each milestone), got {self.gamma!r}")

    # ------------------------------------------------------------------ derived values
    def step_schedule(self) -> tuple[tuple, float]:
        """(milestones as fractions of the budget, gamma) of the multistep preset or of `schedule="step"`."""
        if self.schedule == "multistep":
            return MULTISTEP_FRACTIONS, MULTISTEP_GAMMA
        if self.schedule == "step":
            return self.milestones, DEFAULT_STEP_GAMMA if self.gamma is None else float(self.gamma)
        raise ValueError(f"schedule {self.schedule!r} has no milestones")

    @property
    def effective_first_layer_lr(self) -> float:
        return DEFAULT_FIRST_LAYER_LR if self.first_layer_lr is None else float(self.first_layer_lr)

    @property
    def grid_seeds(self) -> tuple:
        """Seeds the baseline's lr grid is run with (all seeds unless `lr_grid_seeds` says fewer)."""
        return self.seeds if self.lr_grid_seeds is None else self.seeds[: self.lr_grid_seeds]

    def model_options(self) -> dict:
        """Keyword options for `build_model`; only those set (None keeps the model's default)."""
        if self.model.startswith("resnet"):
            names = ("width",)
        else:  # the ViTs, and tv:/timm: models that accept them
            names = ("patch_size", "dim", "depth", "heads")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    # ------------------------------------------------------------------ JSON
    def to_dict(self, *, full: bool = False) -> dict:
        """The JSON form; the OPTIONAL_FIELDS at their defaults are left out unless `full`."""
        d = dataclasses.asdict(self)
        for name in ("methods", "lams", "budgets", "seeds", "lrs"):
            d[name] = list(d[name])
        if d["milestones"] is not None:
            d["milestones"] = list(d["milestones"])
        if not full:
            defaults = {f.name: f.default for f in dataclasses.fields(self)}
            for name in OPTIONAL_FIELDS:
                if d[name] == defaults[name]:
                    del d[name]
        return d

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, d: dict) -> "CompareConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown config fields: {unknown}")
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> "CompareConfig":
        return cls.from_dict(json.loads(text))

    def differences(self, other: "CompareConfig", ignore=EXTENSIBLE_FIELDS) -> dict:
        """{field: (self's value, other's value)} for the fields that differ, except `ignore`."""
        a, b = self.to_dict(full=True), other.to_dict(full=True)
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


def _check_list(name: str, values: tuple, check, *, empty_ok: bool = False) -> None:
    """A protocol list: not empty (unless `empty_ok`), every element valid, no duplicates."""
    if not values and not empty_ok:
        raise ValueError(f"{name} must not be empty")
    for v in values:
        check(v)
    if len(set(values)) != len(values):
        raise ValueError(f"{name} has duplicates: {list(values)}")


def _check_choice(name: str, value: Any, choices: tuple) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")


def _check_number(name: str, value: Any, *, positive: bool = False, minimum: Optional[float] = None) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if ok and positive and not value > 0:
        ok = False
    if ok and minimum is not None and value < minimum:
        ok = False
    if not ok:
        what = "a positive number" if positive else f"a number >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
