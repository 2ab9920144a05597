"""The contrast sweep (not in the paper's experiments): TrAct's gain when each training image's contrast is scaled by
its own log-uniform factor in [c, 1] (`--contrast-spread c`; `ContrastCell` registrations, c = 1 the images as they
are). The paper's argument (the first layer's plain weight gradient is proportional to the pixel values, so a
low-contrast image moves it less; TrAct steps the pre-activations instead) predicts a gain that grows as c falls.
TrAct − baseline per c, and, paired by seed (every point trains the same seeds, with the same initial weights and
data order), its change from c = 1 to each smaller c."""
from __future__ import annotations

from ..evidence import ContrastCell, entries
from .core import Claim, Source, difference, make_claim, per_budget
from .wd_pool import WD_POOL_BUDGETS

CONTRAST_SETTING = "the authors' ResNet-18, no weight decay, SGD lr 0.08, λ = 0.1"
CONTRAST_PREDICTION = ("not in the paper's experiments; its argument (the first layer's weight gradient is "
                       "proportional to the pixel values) predicts a larger gain at smaller c")
PREDICTED = {1: "larger at c = {c:g}, as predicted", -1: "smaller at c = {c:g}, against the prediction",
             0: "no clear change"}


def contrast_cells(registry: dict) -> dict:
    """{spread: (experiment, ContrastCell)}, the largest spread (1, the reference) first."""
    cells = {item.spread: (name, item) for name, item in entries(registry, ContrastCell)}
    return dict(sorted(cells.items(), reverse=True))


def contrast_gains(src: Source, registry: dict) -> dict:
    """{spread: {budget: paired TrAct − baseline}} of the points with data at the sweep's budgets."""
    from .curves import tract_vs_baseline

    out = {}
    for spread, (name, _) in contrast_cells(registry).items():
        gains = {b: p for b, p in tract_vs_baseline(src, name).items() if b in WD_POOL_BUDGETS}
        if gains:
            out[spread] = gains
    return out


def contrast_changes(src: Source, registry: dict) -> dict:
    """{spread < 1: {budget: paired gain at that spread − gain at spread 1}}, per seed, at the budgets both have."""
    gains = contrast_gains(src, registry)
    reference = gains.get(1.0, {})
    out = {}
    for spread, parts in gains.items():
        change = {b: difference(p, reference[b]) for b, p in parts.items() if spread < 1 and b in reference}
        if change:
            out[spread] = change
    return out


def contrast_claims(src: Source, registry: dict = None, titles: dict = None) -> list:
    """TrAct − baseline at each c < 1 (the paper's "better in every setting"; c = 1's row is its weight decay x
    max-pool cell's), then the per-seed change of that gain from c = 1 (the verdict: as the argument predicts or
    not, where the interval is clear)."""
    from .. import experiments

    registry = experiments.EXPERIMENTS if registry is None else registry
    cells = contrast_cells(registry)
    out = []
    for spread, parts in contrast_gains(src, registry).items():
        if spread < 1:
            out.append(make_claim(f"contrast spread c = {spread:g} ({CONTRAST_SETTING})", cells[spread][1].paper,
                                  "TrAct − baseline, points [95 % CI]: " + per_budget(parts), list(parts.values())))
    for spread, parts in contrast_changes(src, registry).items():
        words = ", ".join(f"{b} ep: {PREDICTED[p.side()].format(c=spread)}" for b, p in parts.items())
        out.append(Claim(f"not in the paper: TrAct's gain at contrast spread c = {spread:g} vs c = 1 "
                         f"({CONTRAST_SETTING})", CONTRAST_PREDICTION,
                         f"gain at c = {spread:g} − gain at c = 1, points [95 % CI]: {per_budget(parts)}", words,
                         tuple(parts.values())))
    return out
