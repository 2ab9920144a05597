"""The contrast sweep (not in the paper's experiments): TrAct's gain when each training image's contrast is scaled by
its own log-uniform factor in [c, 1] (`--contrast-spread c`; `ContrastCell` registrations, c = 1 the images as they
are). The paper's argument (the first layer's plain weight gradient is proportional to the pixel values, so a
low-contrast image moves it less; TrAct steps the pre-activations instead) predicts a gain that grows as c falls.
TrAct − baseline per c, and, paired by seed (every point trains the same seeds, with the same initial weights and
data order), its change from c = 1 to each smaller c."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..evidence import Kind, entries
from ..experiment_tables import accuracy_rows
from ..figures import across, paired_gain_plot
from .core import TREND_VERB, Claim, Source, difference, make_claim, per_budget, trend
from .wd_pool import WD_POOL_BUDGETS, cell_gains

CONTRAST_SETTING = "the authors' ResNet-18, no weight decay, SGD lr 0.08, λ = 0.1"
CONTRAST_PREDICTION = ("not in the paper's experiments; its argument (the first layer's weight gradient is "
                       "proportional to the pixel values) predicts a larger gain at smaller c")
PREDICTED = {1: "larger at c = {c:g}, as predicted", -1: "smaller at c = {c:g}, against the prediction",
             0: "no clear change"}


@dataclass(frozen=True)
class ContrastCell(Kind):
    """One point of the contrast sweep (not in the paper): the authors' model with each training image's contrast
    scaled by a log-uniform factor in [`spread`, 1] (--contrast-spread; 1: the images as they are, the reference)."""

    spread: float
    paper: str = ""

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        """TrAct − baseline at each c < 1 (the paper's "better in every setting"; c = 1's row is its weight decay x
        max-pool cell's), then the per-seed change of that gain from c = 1 (the verdict: as the argument predicts or
        not, where the interval is clear)."""
        cells = contrast_cells(registry)
        out = []
        for spread, parts in contrast_gains(src, registry).items():
            if spread < 1:
                out.append(make_claim(f"contrast spread c = {spread:g} ({CONTRAST_SETTING})", cells[spread][1].paper,
                                      "TrAct − baseline, points [95 % CI]: " + per_budget(parts),
                                      list(parts.values())))
        for spread, parts in contrast_changes(src, registry).items():
            words = ", ".join(f"{b} ep: {PREDICTED[p.side()].format(c=spread)}" for b, p in parts.items())
            out.append(Claim(f"not in the paper: TrAct's gain at contrast spread c = {spread:g} vs c = 1 "
                             f"({CONTRAST_SETTING})", CONTRAST_PREDICTION,
                             f"gain at c = {spread:g} − gain at c = 1, points [95 % CI]: {per_budget(parts)}", words,
                             tuple(parts.values())))
        return out

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        """Per c and budget the accuracies, the gain and its change from c = 1 (a point not yet collected shows the
        command that trains it), and the gain against c, one line per budget."""
        cells = contrast_cells(registry)
        if len(cells) < 2 or 1.0 not in cells:
            return []
        gains, changes = contrast_gains(src, registry), contrast_changes(src, registry)
        lines = ["### Not in the paper: TrAct's gain when the training images' contrast varies (ResNet-18, SGD)", "",
                 f"{CONTRAST_SETTING[0].upper() + CONTRAST_SETTING[1:]}; each training image's contrast "
                 "scaled around its mean brightness (over all channels and pixels) by its own factor, log-uniform in [c, "
                 "1] and fixed per seed and image (`--contrast-spread c`, src/trainact/harness/data/contrast.py); test "
                 "images unchanged. " + "; ".join(f"c = {c:g}: `{name}`" for c, (name, _) in cells.items())
                 + f". {CONTRAST_PREDICTION[0].upper() + CONTRAST_PREDICTION[1:]}. Final test top-1 %, mean "
                 "± std over seeds; differences paired per seed, points [95 % t interval]:", "",
                 "| c | budget | seeds | baseline | TrAct | TrAct − baseline |", "|---:|---:|---:|---:|---:|---:|"]
        for c, (name, _) in cells.items():
            lines += accuracy_rows(src, name, sorted(gains.get(c, {})), f"{c:g}")
        if changes:
            lines += ["", "TrAct's gain at c − at c = 1, paired per seed, points [95 % t interval]:", ""]
            lines += [f"- c = {c:g}: " + "; ".join(f"{b} ep {p.text()}" for b, p in parts.items())
                      for c, parts in changes.items()]
            budgets = sorted({b for g in gains.values() for b in g})
            series = {f"{b} epochs": [(c, g[b]) for c, g in gains.items() if b in g] for b in budgets}
            path, image = across("contrast.png", "contrast")
            paired_gain_plot(path, series,
                             title=f"TrAct − baseline against the contrast spread ({CONTRAST_SETTING})",
                             xlabel="contrast spread c (each training image's factor log-uniform in [c, 1])")
            lines += ["", image]
        return lines + [""]

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        """The README's sentence on the sweep (whichever way it falls), once every c has 2 paired seeds at each
        budget."""
        found = contrast_finding(src, registry)
        if found is None:
            return []
        low, change, verdict = found
        cells, gains = contrast_cells(registry), contrast_gains(src, registry)
        at = "; ".join(f"at {b} epochs " + ", ".join(f"c = {c:g} {gains[c][b].text()}" for c in cells)
                       for b in WD_POOL_BUDGETS)
        return [f"Not in the paper — training images of varied contrast ({CONTRAST_SETTING}; each training "
                "image's contrast scaled around its mean brightness by its own log-uniform factor in [c, 1]; points [95 % "
                f"t interval], paired per seed): TrAct's gain {at}; from c = 1 to c = {low:g} it {change}: {verdict}."]


def contrast_finding(src: Source, registry: dict) -> Optional[tuple]:
    """(the smallest c; how TrAct's gain changes from c = 1 to it at each budget, with the per-seed intervals;
    whether that is as the paper's argument predicts), or None until every c has 2 paired seeds at each budget."""
    cells = contrast_cells(registry)
    gains, changes = contrast_gains(src, registry), contrast_changes(src, registry)
    budgets = WD_POOL_BUDGETS
    if len(cells) < 2 or any(c not in gains or any(b not in gains[c] or gains[c][b].n < 2 for b in budgets)
                             for c in cells):
        return None
    low = min(cells)
    sides = [p.side() for parts in changes.values() for p in parts.values()]
    verdict = ("as the paper's argument predicts" if all(s > 0 for s in sides) else
               "against the paper's argument, which predicts it to grow" if any(s < 0 for s in sides) else
               "partly as the paper's argument predicts (it predicts growth at every c and budget)"
               if any(sides) else
               "the paper's argument predicts growth, which these runs do not show clearly")
    change = " and ".join(f"{TREND_VERB[trend(changes[low][b])]} at {b} epochs (change {changes[low][b].text()})"
                          for b in budgets)
    return low, change, verdict


def contrast_cells(registry: dict) -> dict:
    """{spread: (experiment, ContrastCell)}, the largest spread (1, the reference) first."""
    cells = {item.spread: (name, item) for name, item in entries(registry, ContrastCell)}
    return dict(sorted(cells.items(), reverse=True))


def contrast_gains(src: Source, registry: dict) -> dict:
    """{spread: {budget: paired TrAct − baseline}} of the points with data at the sweep's budgets."""
    return cell_gains(src, contrast_cells(registry))


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
