"""The weight decay x max-pool ablation (not in the paper's form): the two differences between the CIFAR protocols,
crossed, each cell a `WdPoolCell` registration. TrAct − baseline per cell, then, paired by seed (every cell trains
the same seeds), how weight decay and the max-pool move that gain, and TrAct without weight decay against what one
training with weight decay has; the README says which factor moves the gain, once every cell has 2 seeds."""
from __future__ import annotations

from dataclasses import dataclass
from ..evidence import Kind, entries
from .core import TREND_VERB, Claim, Source, difference, make_claim, paired, trend
from .curves import tract_vs_baseline

WD_POOL_BUDGETS = (4, 16)


def cell_gains(src: Source, cells: dict) -> dict:
    """{key: {budget: paired TrAct − baseline}} of the cells ({key: (experiment, ...)}) with data at the budgets the
    cell ablations share (WD_POOL_BUDGETS)."""
    out = {}
    for key, (name, *_) in cells.items():
        gains = {b: p for b, p in tract_vs_baseline(src, name).items() if b in WD_POOL_BUDGETS}
        if gains:
            out[key] = gains
    return out
POOLS, WEIGHT_DECAYS = ("maxpool", "nopool"), ("0", "5e-4")  # (with, without) the max-pool; (without, with) wd
WD_POOL_SETTING = "ResNet, SGD lr 0.08, λ = 0.1"
NOT_IN_PAPER_WD = "not in the paper (its code: max-pool stem, no weight decay)"
WHERE = {"maxpool": "max-pool stem", "nopool": "no max-pool", "0": "no weight decay", "5e-4": "weight decay 5e-4"}


@dataclass(frozen=True)
class WdPoolCell(Kind):
    """One cell of the weight decay x max-pool ablation (`pool`: "maxpool"/"nopool", `wd`: "0"/"5e-4")."""

    pool: str
    wd: str
    label: str
    paper: str

    lasting = True

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        """TrAct − baseline per cell (the paper's "better in every setting"), then the factors' effects on that gain
        and the comparisons for one who trains with weight decay."""
        cells = wd_pool_cells(registry)
        out = []
        for cell, parts in weight_decay_pool_gains(src, registry).items():
            measured = "TrAct − baseline, points [95 % CI]: " + _keyed(parts)
            if "change" in parts:
                measured += f" (the gain {TREND_VERB[trend(parts['change'])]})"
            item = cells[cell][1]
            out.append(make_claim(f"weight decay × max-pool: {item.label} ({WD_POOL_SETTING})", item.paper,
                                  measured, [p for k, p in parts.items() if k != "change"]))
        for (factor, setting), parts in weight_decay_pool_effects(src, registry).items():
            if factor == "weight decay":
                out.append(_worded(f"weight decay's effect on TrAct's gain, {WHERE[setting]}",
                                   "gain without − gain with weight decay", parts,
                                   "larger without weight decay", "larger with weight decay"))
            else:
                out.append(_worded(f"the max-pool's effect on TrAct's gain, {WHERE[setting]}",
                                   "gain with − gain without the max-pool", parts,
                                   "larger with the max-pool", "larger without the max-pool"))
        for (pool, a, b), parts in weight_decay_user_comparisons(src, registry).items():
            out.append(_worded(f"{a} vs {b}, {WHERE[pool]}", f"{a} − {b}", parts, f"{a} better", f"{b} better"))
        return out

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        """Does each factor move TrAct's gain at 4 and 16 epochs and its change between them (paired per seed)?
        Nothing until every cell has 2 paired seeds at both budgets."""
        lo, hi = WD_POOL_BUDGETS
        gains = weight_decay_pool_gains(src, registry)
        if len(gains) < len(wd_pool_cells(registry)) or any(b not in g or g[b].n < 2
                                                         for g in gains.values() for b in (lo, hi)):
            return []
        effects = weight_decay_pool_effects(src, registry)
        clauses = []
        for factor, key, diff, settings in (
                ("weight decay", "weight decay", "without − with weight decay",
                 {"maxpool": "with the max-pool", "nopool": "without the max-pool"}),
                ("the max-pool", "max-pool", "with − without the max-pool",
                 {"0": "without weight decay", "5e-4": "with weight decay 5e-4"})):
            per = {label: effects[(key, s)] for s, label in settings.items()}
            off = (any(p[b].side() for p in per.values() for b in (lo, hi)),
                   any(p["change"].side() for p in per.values()))
            clauses.append(f"{factor} {_EFFECT_WORDS[off].format(lo=lo, hi=hi)} (TrAct's gain {diff}: " + "; ".join(
                f"{label} {lo} ep {p[lo].text()}, {hi} ep {p[hi].text()}, change {p['change'].text()}"
                for label, p in per.items()) + ")")
        return [f"Not in the paper — weight decay × max-pool ({WD_POOL_SETTING}; points [95 % t interval], "
                "paired per seed): " + "; ".join(clauses) + "."]


def wd_pool_cells(registry: dict) -> dict:
    """{(pool, wd): (experiment, WdPoolCell)} in registration order."""
    return {(item.pool, item.wd): (name, item) for name, item in entries(registry, WdPoolCell)}


def _keyed(parts: dict) -> str:
    """"4 ep: …; 16 ep: …; change from 4 to 16 ep: …" of {budget or "change": Paired}."""
    lo, hi = WD_POOL_BUDGETS
    return "; ".join(f"{f'change from {lo} to {hi} ep' if k == 'change' else f'{k} ep'}: {p.text()}"
                     for k, p in parts.items())


def weight_decay_pool_gains(src: Source, registry: dict) -> dict:
    """{(pool, wd): {budget: paired TrAct − baseline, "change": its per-seed change from 4 to 16 ep}} of the cells
    with data (the change where both budgets have it)."""
    lo, hi = WD_POOL_BUDGETS
    out = {}
    for cell, (name, _) in wd_pool_cells(registry).items():
        gains = {b: p for b, p in tract_vs_baseline(src, name).items() if b in WD_POOL_BUDGETS}
        if lo in gains and hi in gains:
            gains["change"] = difference(gains[hi], gains[lo])
        if gains:
            out[cell] = gains
    return out


def weight_decay_pool_effects(src: Source, registry: dict) -> dict:
    """{(factor, setting): {budget or "change": Paired}}, per seed: ("weight decay", pool): the gain without weight
    decay − the gain with it; ("max-pool", wd): the gain with the max-pool − the gain without it."""
    gains = weight_decay_pool_gains(src, registry)
    without_wd, with_wd = WEIGHT_DECAYS
    with_pool, without_pool = POOLS
    pairs = {("weight decay", pool): ((pool, without_wd), (pool, with_wd)) for pool in POOLS}
    pairs.update({("max-pool", wd): ((with_pool, wd), (without_pool, wd)) for wd in WEIGHT_DECAYS})
    out = {}
    for key, (a, b) in pairs.items():
        effect = {k: difference(p, gains[b][k]) for k, p in gains.get(a, {}).items() if k in gains.get(b, {})}
        if effect:
            out[key] = effect
    return out


def weight_decay_user_comparisons(src: Source, registry: dict) -> dict:
    """{(pool, a, b): {budget: paired a − b}}: for one who trains with weight decay, is TrAct without it better than
    the baseline with it, and does TrAct itself do better with or without it (same pool, paired by seed)?"""
    cells = wd_pool_cells(registry)
    without_wd, with_wd = WEIGHT_DECAYS
    out = {}
    for pool in POOLS:
        if (pool, without_wd) not in cells or (pool, with_wd) not in cells:
            continue
        runs = {"TrAct without weight decay": (cells[(pool, without_wd)][0], "tract-l0.1"),
                "TrAct with weight decay": (cells[(pool, with_wd)][0], "tract-l0.1"),
                "baseline with weight decay": (cells[(pool, with_wd)][0], "baseline")}
        for a, b in (("TrAct without weight decay", "baseline with weight decay"),
                     ("TrAct with weight decay", "TrAct without weight decay")):
            parts = {}
            for budget in WD_POOL_BUDGETS:
                x, y = (src.top1(runs[k][0], budget, runs[k][1]) for k in (a, b))
                if x and y:
                    parts[budget] = paired(x, y)
            if parts:
                out[(pool, a, b)] = parts
    return out


def _worded(claim: str, measured: str, parts: dict, up: str, down: str) -> Claim:
    """A row with no claim to reproduce: per budget (or change), which way the interval excludes 0, if it does."""
    word = {1: up, -1: down, 0: "no clear difference"}
    words = ", ".join(f"{'change' if k == 'change' else f'{k} ep'}: {word[p.side()]}" for k, p in parts.items())
    return Claim(f"not in the paper: {claim} ({WD_POOL_SETTING})", NOT_IN_PAPER_WD,
                 f"{measured}, points [95 % CI]: {_keyed(parts)}", words, tuple(parts.values()))


_EFFECT_WORDS = {  # (a gain interval off 0, a change interval off 0) -> what the factor does
    (True, True): "changes TrAct's gain and its change from {lo} to {hi} epochs",
    (True, False): "changes TrAct's gain, not clearly its change from {lo} to {hi} epochs",
    (False, True): "changes how TrAct's gain changes from {lo} to {hi} epochs, not clearly the gain at either budget",
    (False, False): "changes neither TrAct's gain nor its change from {lo} to {hi} epochs clearly"}
