"""What an experiment's registration says it feeds in the report: its tables, plots, README sentences and claims.

`experiments.experiment(..., report=(Curve(...), Whitening(...)))` stores these items; claims/ and
experiment_tables.py find them with `entries(registry, Kind)` (registration order) and never name an
experiment. Each kind below is one table or claim the report knows how to build; a new experiment of an existing
kind needs only its registration. Texts quoted from the paper (`paper=`) name their figure or table.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Curve:
    """TrAct against the baseline over the budgets: a section with its plots (`section`: "experiments", "gpu", or
    None for none), the claim "TrAct better at every budget and λ" when `paper` quotes it, and the README's
    sentence on whether the gain grows or fades when `trend` names the setting."""

    section: Optional[str] = "experiments"
    paper: Optional[str] = None
    trend: Optional[str] = None


@dataclass(frozen=True)
class Joins:
    """This experiment's runs complete experiment `of`'s comparison (more λ, a longer baseline budget)."""

    of: str


@dataclass(frozen=True)
class ReadmeFigure:
    """One of the experiment's plots, shown in the README's results section."""

    alt: str
    file: str


@dataclass(frozen=True)
class Scale:
    """The collected configuration that the report's note on scale quotes: `role` "resnet" or "vit"."""

    role: str


@dataclass(frozen=True)
class LamTable:
    """A table of TrAct's accuracy per λ against the baseline (with a plot when it sweeps more than two λ)."""


@dataclass(frozen=True)
class LamSweep:
    """The claim that TrAct beats the baseline at every λ inside the paper's range `inside` (first budget)."""

    what: str
    paper: str
    lams: tuple
    inside: tuple


@dataclass(frozen=True)
class LamTrend:
    """The claim that λ = 0.2's advantage over λ = 0.05 grows with the budget."""

    what: str
    paper: str


@dataclass(frozen=True)
class LamOne:
    """Rows for λ = 1 at the experiment's budgets, against λ = 0.1 and the baseline (not the paper's λ)."""

    what: str


@dataclass(frozen=True)
class Ablation:
    """A row of the §4.5 ablation table (`row`, `short` in its plot) at `budget`. `reference`: the plain model the
    others are compared with; `normalisation`: the claim that TrAct beats that normalisation; `input_range`: the
    claim that TrAct is more robust to unstandardised inputs than the baseline; `relative`: the experiment with the
    scale-invariant λ; `versus` = (input range, quote): TrAct here against TrAct at that input range."""

    row: str
    short: str
    budget: int
    reference: bool = False
    normalisation: Optional[str] = None
    input_range: Optional[str] = None
    relative: Optional[str] = None
    paper: Optional[str] = None
    versus: Optional[tuple] = None


@dataclass(frozen=True)
class FirstLayerSgd:
    """The first layer trained by SGD (+TrAct), the rest by Adam, against `reference`'s all-Adam runs."""

    reference: str
    budget: int
    what: str
    paper: str


@dataclass(frozen=True)
class WdPoolCell:
    """One cell of the weight decay x max-pool ablation (`pool`: "maxpool"/"nopool", `wd`: "0"/"5e-4")."""

    pool: str
    wd: str
    label: str
    paper: str


@dataclass(frozen=True)
class StemCell:
    """One stem of the stem ablation (not in the paper): the CIFAR ResNet-18 with one stem, no weight decay, SGD
    lr 0.08, λ 0.1, 4 and 16 epochs. `stem`: "maxpool" and "nopool" are the references (weight decay x max-pool
    cells, whose own gain rows are theirs), any other a stem compared with both, quoting `paper` on its gain;
    `label` names it in tables and sentences."""

    stem: str
    label: str
    paper: str = ""


@dataclass(frozen=True)
class ContrastCell:
    """One point of the contrast sweep (not in the paper): the authors' model with each training image's contrast
    scaled by a log-uniform factor in [`spread`, 1] (--contrast-spread; 1: the images as they are, the reference)."""

    spread: float
    paper: str = ""


@dataclass(frozen=True)
class Whitening:
    """Columns of the whitening comparison this experiment's runs fill: ((column, method label), ...).
    `reference`: the plain runs the whitened ones are compared with; `setting` names the protocol."""

    columns: tuple
    reference: bool = False
    setting: str = ""


@dataclass(frozen=True)
class Repro:
    """The same seeds as experiment `of`, trained again on another machine of the same kind."""

    of: str


@dataclass(frozen=True)
class Zoo:
    """One model of the architecture sweep (`subset` training images); the sweep's claims quote `paper` (TrAct
    per model) and `short_paper` (TrAct at 2/3 of the budget against the baseline at the whole)."""

    model: str
    subset: int
    paper: str
    short_paper: str


@dataclass(frozen=True)
class ZooShort:
    """TrAct alone at 2/3 of zoo experiment `of`'s budget."""

    of: str


def entries(registry: dict, kind: type) -> list:
    """[(experiment name, item)] of every item of type `kind` in the registry, in registration order."""
    return [(name, item) for name, e in registry.items() for item in e.get("report", ()) if isinstance(item, kind)]


def members(registry: dict, name: str) -> tuple:
    """`name` and the experiments that join its comparison (`Joins(name)`), in registration order."""
    return (name,) + tuple(n for n, item in entries(registry, Joins) if item.of == name)
