"""The paper's §4.5 ablations (`Ablation`): normalisations and input ranges against TrAct on the ViT, a table and its
plot; and the first layer trained by SGD (+TrAct) under Adam (`FirstLayerSgd`), against all-Adam TrAct."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from trainact.harness.results import pm

from ..evidence import Kind, entries
from ..experiment_tables import by_label, plots, run_machine
from ..figures import across, bar_plot
from .core import difference, make_claim, paired

ABLATION_SERIES = ("baseline", "TrAct λ=0.1", "TrAct, scale-invariant λ")


@dataclass(frozen=True)
class Ablation(Kind):
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

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        """Each normalisation against TrAct on the reference model; each input range's drop from standardised
        inputs, the baseline's against TrAct's; TrAct at one input range against another."""
        rows = entries(registry, Ablation)
        refs = [(name, item) for name, item in rows if item.reference]
        if not refs:
            return []
        ref, ref_item = refs[0]
        budget = ref_item.budget
        plain_b, plain_t = src.top1(ref, budget, "baseline"), src.top1(ref, budget, "tract-l0.1")
        out, tract_at = [], {}
        for name, item in rows:
            if item.normalisation:
                other = src.top1(name, budget, "baseline")
                if plain_t and other:
                    p = paired(plain_t, other)
                    out.append(make_claim(f"{item.normalisation} vs TrAct (ViT, {budget} ep)", item.paper,
                                          f"TrAct − {item.normalisation}, points: {p.text()}", [p]))
            elif item.input_range:
                ub, ut = src.top1(name, budget, "baseline"), src.top1(name, budget, "tract-l0.1")
                if plain_b and plain_t and ub and ut:
                    drop_b, drop_t = paired(plain_b, ub), paired(plain_t, ut)  # standardised − raw, per seed
                    robust = difference(drop_b, drop_t)  # the baseline's drop − TrAct's drop
                    tract_at[item.input_range] = ut
                    out.append(make_claim(f"{item.input_range} inputs, no standardisation (ViT, {budget} ep)",
                                          item.paper, f"drop from standardised inputs, points: baseline "
                                          f"{drop_b.text()}, TrAct {drop_t.text()}; baseline's drop − TrAct's: "
                                          f"{robust.text()}", [robust]))
        for _name, item in rows:
            if item.versus and item.input_range in tract_at and item.versus[0] in tract_at:
                other, quote = item.versus
                p = paired(tract_at[item.input_range], tract_at[other])
                out.append(make_claim(f"TrAct at {item.input_range} vs {other} inputs (ViT, {budget} ep)", quote,
                                      f"TrAct {item.input_range} − TrAct {other}, points: {p.text()}", [p]))
        return out

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        """The §4.5 ablation table and plot: one row per registration, at its budget."""
        rows = entries(registry, Ablation)
        refs = [name for name, item in rows if item.reference]
        if not refs:
            return []
        budget = rows[0][1].budget
        lines = [f"### §4.5 ablations (ViT-CIFAR, Adam, {budget} epochs, λ = 0.1)", "",
                 "Each row is its own comparison at the lr the ViT's baseline grid selected for this budget "
                 f"(`{refs[0]}`). The scale-invariant λ (`--relative-lambda`: λ · tr(AᵀA/r)/n) is not in the paper. "
                 "With it, an SGD step changes the first layer's pre-activations by the same amount whatever the "
                 "input scale; Adam, though, sets each weight's step size itself, so with [0,255] inputs the "
                 "pre-activations still move up to 255x more per step than with [0,1] inputs, with or without "
                 "TrAct.", "",
                 "| variant | seeds | baseline top-1 % | TrAct top-1 % | TrAct − baseline | TrAct, scale-invariant λ | "
                 "command |", "|---|---:|---:|---:|---:|---:|---|"]
        values, errors = {}, {}
        for name, item in rows:
            loaded = src.experiment(name)
            if loaded is None:
                continue
            found = by_label(loaded[1], budget)
            relative = src.experiment(item.relative) if item.relative else None
            cells = (found.get("baseline"), found.get("tract-l0.1"),
                     by_label(relative[1], budget).get("tract-l0.1") if relative else None)
            b, t, r = (c["top1"] if c else None for c in cells)
            n = sorted({x["n"] for x in (b, t, r) if x})
            gain = f"{t['mean'] - b['mean']:+.2f}" if b and t else "—"
            lines.append(f"| {item.row} | {'/'.join(map(str, n))} | {pm(b) if b else '—'} | {pm(t) if t else '—'} | "
                         f"{gain} | {pm(r) if r else '—'} | `{loaded[0]['command']}` |")
            for series, st in zip(ABLATION_SERIES, (b, t, r)):
                if st:
                    values[(item.short, series)], errors[(item.short, series)] = st["mean"], st["std"] or 0
        if not values:
            return []
        path, image = across("ablations.png", "ablations")
        bar_plot(path, list(dict.fromkeys(g for g, _ in values)), list(ABLATION_SERIES), values, errors=errors,
                 zoom=True, ylabel="final test top-1 (%), mean ± std", title=f"ViT-CIFAR, {budget} epochs")
        return lines + ["", image, ""]


@dataclass(frozen=True)
class FirstLayerSgd(Kind):
    """The first layer trained by SGD (+TrAct), the rest by Adam, against `reference`'s all-Adam runs."""

    reference: str
    budget: int
    what: str
    paper: str

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        out = []
        for name, item in entries(registry, FirstLayerSgd):
            all_adam = src.top1(item.reference, item.budget, "tract-l0.1")
            mixed = src.top1(name, item.budget, "tract-l0.1")
            if all_adam and mixed:
                p = paired(mixed, all_adam)
                out.append(make_claim(f"first layer SGD + TrAct, the rest Adam ({item.what}, {item.budget} ep)",
                                      item.paper, f"vs all-Adam TrAct, points: {p.text()}", [p]))
        return out

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        out = []
        for name, item in entries(registry, FirstLayerSgd):
            out += _first_layer_sgd(src, registry, name, item.reference, item.budget)
        return out


def _first_layer_sgd(src, registry: dict, name: str, reference: str, budget: int) -> list[str]:
    adam, mixed = src.experiment(reference), src.experiment(name)
    if mixed is None:
        return []
    top = mixed[0]
    shown = []  # (first layer's optimizer, top-1 stats)
    for loaded, names in ((adam, ("Adam", "Adam + TrAct")), (mixed, ("SGD", "SGD + TrAct"))):
        rows = by_label(loaded[1], budget) if loaded else {}
        shown += [(text, rows[label]["top1"]) for label, text in zip(("baseline", "tract-l0.1"), names)
                  if label in rows]
    lines = [f"### {registry[name]['title']}", "",
             f"Command: `{top['command']}`; {run_machine(top)}. The Adam rows are `{reference}` at the same budget.",
             "", "| first layer | rest | seeds | test top-1 % |", "|---|---|---:|---:|"]
    lines += [f"| {text} | Adam | {st['n']} | {pm(st)} |" for text, st in shown]
    bar_plot(os.path.join(src.folder(name), "first_layer_sgd.png"), [t for t, _ in shown],
             ["first layer"], {(t, "first layer"): st["mean"] for t, st in shown},
             errors={(t, "first layer"): st["std"] or 0 for t, st in shown}, zoom=True,
             ylabel="final test top-1 (%), mean ± std", title=f"CIFAR ResNet, the rest Adam, {budget} epochs")
    return lines + ["", plots(src, name, ("first_layer_sgd.png",)), ""]
