"""The one configuration object of `trainact compare`, and the declaration of every harness option.

Each field of `CompareConfig` is declared once, with `options.option`: default, help text, command-line flag, text
parser and check, its --help section, and whether config.json may leave it out (`optional`) or two invocations
sharing an output folder may differ in it (`extensible`). The CLI builds its parser and the config from these
declarations alone. A config is validated when it is constructed (`ValueError` naming the option and the offending
value), before anything is loaded or trained, and it round-trips through JSON (`config.json` in the output
directory), so a result always carries the exact settings that produced it.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
from dataclasses import dataclass
from typing import Any, Optional

from trainact.harness.options import (boolean, declarations, each, integer, normalize_and_check, number, one_of,
                                      option, parse_bytes, parse_float, parse_int, parse_int_options, parse_list)

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

# --contrast-spread's default: no contrast scaling (harness/data/contrast.py)
CONTRAST_OFF = 1.0

# The paper's best SGD lr (ResNet-18 on CIFAR-10, momentum 0.9, cosine): the first layer's lr when
# `first_layer_sgd` is set and `first_layer_lr` is not.
DEFAULT_FIRST_LAYER_LR = 0.08

# The --help sections, in the order they are listed.
data_option = functools.partial(option, group="data")
model_option = functools.partial(option, group="model")
protocol_option = functools.partial(option, group="methods and protocol")
optimisation_option = functools.partial(option, group="optimisation")
execution_option = functools.partial(option, group="execution")

_positive = integer(1)


def _check_dict(subject: str, value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"{subject} must be a dict of options, got {value!r}")


def _check_model(subject: str, value: Any) -> None:
    """A name `build_model` knows; tv:<name> and timm:<name> are looked up when the model is built (their
    libraries are optional)."""
    if not value or not isinstance(value, str):
        raise ValueError(f"{subject} must be a non-empty name, got {value!r}")
    if value.startswith(("tv:", "timm:")):
        return
    from trainact.harness.models import available_models

    if value not in available_models():
        raise ValueError(f"unknown model {value!r}; available: {', '.join(available_models())}")


def _check_fraction(subject: str, value: Any) -> None:
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < 1):
        raise ValueError(f"{subject} must be a fraction in (0, 1) (--val-fraction), got {value!r}")


def _check_milestones(subject: str, values: tuple) -> None:
    for f in values:
        if not (isinstance(f, (int, float)) and not isinstance(f, bool) and 0 < f < 1):
            raise ValueError(f"{subject} must be fractions of the budget in (0, 1) (--milestones), got {f!r} in "
                             f"{list(values)}")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise ValueError(f"{subject} must increase (--milestones), got {list(values)}")


def _check_gamma(subject: str, value: Any) -> None:
    number(positive=True)(subject, value)
    if value > 1:
        raise ValueError(f"{subject} must be in (0, 1] (--gamma: the lr factor at each milestone), got {value!r}")


def check_contrast_spread(subject: str, value: Any) -> None:
    """A number in (0, 1] (the loaders check theirs with it too)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0 < value <= 1:
        raise ValueError(f"{subject} must be a number in (0, 1] (--contrast-spread: the lowest contrast factor of a "
                         f"training image; 1 turns it off), got {value!r}")


def _check_device(subject: str, value: Any) -> None:
    if not (value in ("auto", "cpu", "cuda") or (isinstance(value, str) and value.startswith("cuda:"))):
        raise ValueError(f"{subject} must be auto, cpu, cuda or cuda:N, got {value!r}")


def _check_out(subject: str, value: Any) -> None:
    if not value:
        raise ValueError(f"{subject} must be a directory path")


@dataclass(frozen=True)
class CompareConfig:
    """All options of `trainact compare` (see `trainact compare --help` for the meaning of each)."""

    # Fields marked optional were added after results were collected: config.json carries them only when they
    # differ from the default, so a run with the defaults writes the same bytes as before they existed (and an
    # older file loads with the defaults). Extensible fields may differ between two invocations writing into the
    # same output directory: more budgets, seeds, lrs or lambdas add runs; the rest only change how runs are
    # executed, not what they compute. A field missing from an older config.json (first_layer_init, and the
    # optional ones) loads with its default. The field order is config.json's key order.

    data: Optional[str] = data_option(
        None, "CIFAR-10/100 python folder, image-folder tree (train/<class>/..., test/ or val/), or a "
        ".tar/.tar.gz/.zip of one; default: the built-in synthetic data set", metavar="PATH")
    synthetic: Optional[dict] = data_option(
        None, "options of the built-in synthetic set, e.g. train_size=5000,test_size=1000,image_size=32,"
        "num_classes=10,seed=0 (without --data)", metavar="KEY=VALUE,...", parse=parse_int_options, check=_check_dict)
    cache_dir: Optional[str] = data_option(  # where, not what: a finished folder resumes with another cache
        None, "where decoded images are cached (default: $TRAINACT_CACHE or ~/.cache/trainact)", metavar="DIR",
        extensible=True)
    train_subset: Optional[int] = data_option(
        None, "train on a seeded, class-balanced subset of N training images (N above the set's size: all of it, "
        "said in one line)", metavar="N", parse=parse_int, check=_positive)
    input_range: str = data_option(
        "standardized", "standardized: per-channel mean 0 / std 1; unit: [0,1]; byte: [0,255] (paper §4.5 ablation)",
        choices=INPUT_RANGES)
    augment: bool = data_option(
        True, "no random crop / horizontal flip. The crop is a random window of the training image's size after "
        "zero padding by 4 pixels; with --image-size N a random N x N window of the training image resized to "
        "shorter side round(N / 0.875) and centre-cropped square (resize + random crop, not RandomResizedCrop); "
        "without augmentation, that square's centre N x N", check=boolean)
    # not in the paper: how TrAct's gain depends on the spread of the training images' contrast (data/contrast.py)
    contrast_spread: float = data_option(
        CONTRAST_OFF, "scale each training image's contrast around its mean brightness (over all channels and "
        "pixels) by a factor drawn log-uniformly from [C, 1], fixed per image and seed (the same in every epoch and "
        "for both methods), before the standardisation; test images unchanged; 1: off", metavar="C",
        parse=parse_float, check=check_contrast_spread, optional=True)
    image_size: Optional[int] = data_option(
        None, "image folders/archives of any image sizes: test images resized to shorter side round(N / 0.875) and "
        "centre-cropped to N x N (ImageNet's 0.875 crop ratio, 224 of 256); train images see --no-augment (default: "
        "images used as stored, all of one size)", metavar="N", parse=parse_int, check=_positive, optional=True)
    val_fraction: Optional[float] = data_option(
        None, "an image folder with train/ only: hold out a class-balanced fraction F of it as the test split (the "
        "same split in every run: fixed salt, independent of --seeds)", metavar="F", parse=parse_float,
        check=_check_fraction, optional=True)
    loader: str = data_option(
        "auto", "memory: decode the whole set once into memory (cached on disk); stream: decode every batch from the "
        "files with --workers processes (image folders/archives); auto: memory unless the decoded set (3 bytes a "
        f"pixel) exceeds --memory-budget, {DEFAULT_MEMORY_BUDGET >> 30} GiB unless given", choices=LOADERS,
        optional=True)
    # `workers` only sets how many processes decode a streamed data set: every image's augmentation is drawn from
    # (seed, epoch, index), so the batches do not depend on it
    workers: Optional[int] = data_option(
        None, "decoding processes per GPU/process of the streaming loader, 0: in the training process (default: "
        "min(8, CPUs per process))", metavar="N", parse=parse_int, check=integer(0), optional=True, extensible=True)
    memory_budget: Optional[int] = data_option(
        None, "--loader auto streams data whose decoded size exceeds SIZE, e.g. 256MiB, 8GiB (default: "
        f"{DEFAULT_MEMORY_BUDGET >> 30}GiB)", metavar="SIZE", parse=parse_bytes, check=_positive, optional=True)

    model: str = model_option(
        "resnet18", "resnet18|resnet34|resnet50 (CIFAR variant), resnet18-maxpool (the TrAct authors' CIFAR "
        "ResNet-18: a 3x3/2 max-pool after the stem), resnet18-s2 (a stride-2 stem, no pool), resnet18-avgpool (a "
        "2x2/2 average pool after the stem), vit, vit-patchnorm, vit-dualpatchnorm, tv:<torchvision name>, "
        "timm:<timm name>", check=_check_model)
    # 64 in the paper; 8 keeps the no-argument demo on a CPU
    width: Optional[int] = model_option(
        8, "ResNet base width (the paper's ResNet-18: 64; narrow by default for CPU runs)", parse=parse_int,
        check=_positive)
    patch_size: Optional[int] = model_option(
        None, "ViT patch size (default: 8)", parse=parse_int, check=_positive)
    dim: Optional[int] = model_option(None, "ViT hidden size (default: 384)", parse=parse_int, check=_positive)
    depth: Optional[int] = model_option(None, "ViT depth (default: 7)", parse=parse_int, check=_positive)
    heads: Optional[int] = model_option(None, "ViT heads (default: 12)", parse=parse_int, check=_positive)

    methods: tuple = protocol_option(
        METHODS, "comma-separated subset of baseline,tract", metavar="LIST", parse=parse_list(str, "a method name"),
        sequence="a list", check=each(one_of(METHODS, element="method")), extensible=True)
    lams: tuple = protocol_option(
        (0.1,), "TrAct's lambda, or a comma-separated list (the paper: 0.01,0.1,1)", flag="--lam", metavar="LIST",
        parse=parse_list(float, "a number"), sequence="a list",
        check=each(number(positive=True, element="lam"), empty_ok=True), extensible=True)
    relative_lambda: bool = protocol_option(
        False, "use lambda * tr(AᵀA/r)/n as the ridge term, invariant to the input scale (for --input-range "
        "unit/byte; not in the paper)", check=boolean)
    # the demo's budgets: on the built-in synthetic set both methods are well above chance by 4 epochs
    budgets: tuple = protocol_option(
        (4, 8), "epoch budgets, each its own run with its own schedule (the paper: 100,200,400,800)", metavar="LIST",
        parse=parse_list(int, "an integer"), sequence="a list", check=each(integer(1, element="budget")),
        extensible=True)
    seeds: tuple = protocol_option(
        (0,), "seeds (the paper: 5)", metavar="LIST", parse=parse_list(int, "an integer"), sequence="a list",
        check=each(integer(0, element="seed")), extensible=True)
    lrs: tuple = protocol_option(
        (0.08,), "learning rate or a comma-separated grid; the baseline's best per budget is TrAct's lr", flag="--lr",
        metavar="LIST", parse=parse_list(float, "a number"), sequence="a list",
        check=each(number(positive=True, element="lr")), extensible=True)
    lr_grid_seeds: Optional[int] = protocol_option(
        None, "run the lr grid with the first N seeds only (default: all seeds)", metavar="N", parse=parse_int,
        check=_positive, extensible=True)

    optimizer: str = optimisation_option("sgd", "optimizer", choices=OPTIMIZERS)
    momentum: float = optimisation_option(
        0.9, "SGD momentum", parse=parse_float, check=number(minimum=0.0, below=1))
    nesterov: bool = optimisation_option(False, "Nesterov momentum (SGD)", check=boolean)
    weight_decay: float = optimisation_option(
        5e-4, "weight decay (all parameters)", parse=parse_float, check=number(minimum=0.0))
    schedule: str = optimisation_option(
        "cosine", "cosine: per-step cosine to 0 over each run; multistep: pytorch-cifar100's x0.2 at 60/120/160 of "
        "200 epochs, i.e. at 30%%/60%%/80%% of the budget; step: x--gamma at each of --milestones",
        choices=SCHEDULES)
    milestones: Optional[tuple] = optimisation_option(
        None, "--schedule step: increasing fractions of the budget in (0, 1); the lr is multiplied by --gamma from "
        "epoch max(1, round(fraction x budget)) on, e.g. 0.333,0.667 (the paper's ImageNet: 10/20 of 30 epochs)",
        metavar="LIST", parse=parse_list(float, "a number"), sequence="a list of fractions of the budget",
        check=_check_milestones, optional=True)
    gamma: Optional[float] = optimisation_option(
        None, f"--schedule step: the lr factor at each milestone (default: {DEFAULT_STEP_GAMMA:g})",
        parse=parse_float, check=_check_gamma, optional=True)
    # the paper's: no warm-up (its CIFAR-100 recipe's one epoch is an option)
    warmup_epochs: float = optimisation_option(
        0.0, "linear warm-up (epochs, per step)", parse=parse_float, check=number(minimum=0.0))
    label_smoothing: float = optimisation_option(
        0.0, "label smoothing", parse=parse_float, check=number(minimum=0.0, below=1))
    batch_size: int = optimisation_option(
        128, "global batch size (divided among torchrun processes)", parse=parse_int, check=_positive)
    grad_accum: int = optimisation_option(
        1, "split each batch into N micro-batches, accumulating gradients; TrAct then pools the statistics of all "
        "micro-batches (and all processes) into the exact large-batch update", parse=parse_int, check=_positive)
    first_layer_sgd: bool = optimisation_option(
        False, "the paper's open question: train the first layer with SGD (momentum) while the rest uses "
        "--optimizer adam/adamw", check=boolean)
    first_layer_lr: Optional[float] = optimisation_option(
        None, "lr of the first layer with --first-layer-sgd (default: 0.08, the paper's SGD lr)", parse=parse_float,
        check=number(positive=True))
    first_layer_init: str = optimisation_option(
        "default", "default: the model's own init; whiten: airbench's patch-whitening filters (± eigenvectors of "
        "the first layer's patch covariance over 5000 training images, scaled by 1/sqrt(eigenvalue + 5e-4)), then "
        "trained as usual; whiten-frozen: the same, weight frozen (only with --methods baseline: TrAct would have "
        "nothing to train)", choices=FIRST_LAYER_INITS)

    amp: str = execution_option("off", "mixed precision (fp16 needs CUDA)", choices=AMP_MODES)
    channels_last: bool = execution_option(
        False, "model and image batches in channels-last memory format (faster convolutions on GPUs)",
        check=boolean, optional=True, extensible=True)
    compile: bool = execution_option(
        False, "train through torch.compile(model), TrAct's backward compiled with it; the first steps compile "
        "(tens of seconds on a CPU); evaluation stays eager. The log says how many graphs were compiled and how "
        "many graph breaks there were", check=boolean, optional=True, extensible=True)
    jobs: int = execution_option(
        1, "train N runs side by side, each in its own process: round-robin over the visible GPUs (several per GPU "
        "allowed), the CPU's threads split between them; a budget's TrAct runs start once its lr grid has "
        "finished. Not under torchrun", parse=parse_int, check=_positive, optional=True, extensible=True)
    device: str = execution_option(
        "auto", "auto (CUDA when present), cpu, cuda, cuda:N", check=_check_device, extensible=True)
    eval_every: int = execution_option(
        1, "evaluate every N epochs (and always after the last)", parse=parse_int, check=_positive)
    threads: Optional[int] = execution_option(
        None, "torch.set_num_threads (default: torch's choice)", parse=parse_int, check=_positive,
        extensible=True)
    out: str = execution_option(
        "runs/compare", "output directory; a fixed default so that rerunning resumes (it must hold the same "
        "configuration, except more budgets/seeds/lrs/lambdas)", metavar="DIR", check=_check_out, extensible=True)

    def __post_init__(self) -> None:
        normalize_and_check(self)  # each field on its own (lists become tuples: the config stays hashable)
        if self.synthetic is not None and self.data is not None:
            raise ValueError(f"synthetic options {self.synthetic} only apply without data (got data={self.data!r})")
        self._check_data_options()
        self._check_protocol()
        self._check_optimisation()
        self._check_first_layer()

    def _check_protocol(self) -> None:
        """Methods, λs, lrs and lr-grid seeds together (each list is checked on its own by its declaration)."""
        if "tract" in self.methods and not self.lams:
            raise ValueError("lams must not be empty when tract is among the methods")
        if self.relative_lambda and "tract" not in self.methods:
            raise ValueError("relative_lambda only applies to tract, which is not among the methods "
                             f"{list(self.methods)}")
        if len(self.lrs) > 1 and "baseline" not in self.methods:
            raise ValueError(f"several lrs {list(self.lrs)} need the baseline: TrAct uses the baseline's "
                             "best lr (the paper's rule); give one lr or add baseline to the methods")
        if self.lr_grid_seeds is not None and self.lr_grid_seeds > len(self.seeds):
            raise ValueError(f"lr_grid_seeds={self.lr_grid_seeds} exceeds the number of seeds ({len(self.seeds)})")

    def _check_optimisation(self) -> None:
        if self.nesterov and (self.optimizer != "sgd" and not self.first_layer_sgd):
            raise ValueError(f"nesterov applies to SGD, but the optimizer is {self.optimizer!r}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov needs momentum > 0, got momentum=0")
        self._check_schedule()
        if self.warmup_epochs >= min(self.budgets):
            raise ValueError(f"warmup_epochs={self.warmup_epochs} must be shorter than the shortest budget "
                             f"({min(self.budgets)} epochs); lower it (--warmup-epochs 0 turns it off)")
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size={self.batch_size} is not divisible into grad_accum={self.grad_accum} "
                             f"micro-batches")

    def _check_first_layer(self) -> None:
        if self.first_layer_sgd and self.optimizer == "sgd":
            raise ValueError("first_layer_sgd trains the first layer with SGD while the rest uses Adam/AdamW; "
                             "with optimizer 'sgd' everything is SGD already (choose adam or adamw)")
        if self.first_layer_lr is not None and not self.first_layer_sgd:
            raise ValueError(f"first_layer_lr={self.first_layer_lr!r} is only used with first_layer_sgd")
        if self.first_layer_init != "default" and self.contrast_spread != CONTRAST_OFF:
            raise ValueError(f"first_layer_init {self.first_layer_init!r} computes its filters from the training "
                             f"images as stored, without the contrast scaling of contrast_spread="
                             f"{self.contrast_spread!r} (--contrast-spread); use one of the two")
        if self.first_layer_init == "whiten-frozen":
            if "tract" in self.methods:
                raise ValueError("first_layer_init 'whiten-frozen' freezes the first layer's weight, so TrAct has "
                                 f"nothing to precondition (methods {list(self.methods)}); use --methods baseline")
            if self.first_layer_sgd:
                raise ValueError("first_layer_sgd trains the first layer's weight with SGD, but first_layer_init "
                                 "'whiten-frozen' freezes it")

    def _check_data_options(self) -> None:
        if self.data is None:
            for name, flag in (("image_size", "--image-size"), ("val_fraction", "--val-fraction")):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name}={getattr(self, name)!r} ({flag}) applies to an image folder or archive "
                                     "(--data); the built-in synthetic set takes --synthetic image_size=N")
            if self.loader == "stream":
                raise ValueError("loader 'stream' (--loader stream) reads an image folder or archive (--data); the "
                                 "built-in synthetic set is made in memory")
        if self.workers is not None and self.loader == "memory":
            raise ValueError(f"workers={self.workers} (--workers) applies to the streaming loader, but the loader "
                             "is 'memory' (use --loader stream or auto, or drop --workers)")
        if self.memory_budget is not None and self.loader != "auto":
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
        elif not self.milestones:
            raise ValueError("schedule 'step' needs milestones: fractions of the budget at which the lr is multiplied "
                             "by gamma, e.g. --milestones 0.333,0.667 --gamma 0.1")

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
        """The JSON form (lists as lists); the optional fields at their defaults are left out unless `full`."""
        d = dataclasses.asdict(self)
        for o in declarations(type(self)):
            if o.option.optional and not full and getattr(self, o.name) == o.default:
                del d[o.name]
            elif o.option.sequence and d[o.name] is not None:
                d[o.name] = list(d[o.name])
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

    def differences(self, other: "CompareConfig", ignore: Optional[tuple] = None) -> dict:
        """{field: (self's value, other's value)} for the fields that differ, except `ignore` (by default the
        EXTENSIBLE_FIELDS)."""
        ignore = EXTENSIBLE_FIELDS if ignore is None else ignore
        a, b = self.to_dict(full=True), other.to_dict(full=True)
        return {k: (a[k], b[k]) for k in a if k not in ignore and a[k] != b[k]}


# The fields declared optional (config.json leaves them out at their defaults) and extensible (they may differ
# between invocations sharing an output folder).
OPTIONAL_FIELDS = tuple(o.name for o in declarations(CompareConfig) if o.option.optional)
EXTENSIBLE_FIELDS = tuple(o.name for o in declarations(CompareConfig) if o.option.extensible)
