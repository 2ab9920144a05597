"""The stem ablation (not in the paper): what of the max-pool stem keeps TrAct's gain to 16 epochs. Without weight
decay the gain lasted with the authors' 3x3/2 max-pool after the stem and faded without it; two more stems give the
stages the max-pool's 16x16 maps without its max (a stride-2 stem; a 2x2 average pool). Each stem is a `StemCell`
registration; TrAct − baseline per stem, then, paired by seed (every cell trains the same seeds), each new stem's
gain against the two references' (the max-pool stem and no pool), and the rule the data support: if the new stems
keep the gain like the max-pool, the resolution after the stem is what matters; if they lose it like no pool, the
max's sparse gradient routing (each pooled value's gradient reaches one stem output)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..evidence import Kind, entries
from ..experiment_tables import accuracy_rows, half_width
from ..figures import across, bar_plot
from .core import Claim, Source, difference, make_claim, per_budget
from .wd_pool import WD_POOL_BUDGETS, cell_gains

MAXPOOL, NOPOOL = "maxpool", "nopool"  # the references: the stems the new ones are compared with
STEM_SETTING = "ResNet-18, no weight decay, SGD lr 0.08, λ = 0.1"
NOT_IN_PAPER_STEM = "not in the paper (its code: the max-pool stem)"
# how a new stem's gain at the longest budget stands against the references', by (side of its difference from the
# max-pool's gain, side of its difference from no pool's): see `stem_kind`
KEEPS, LOSES, BETWEEN, UNCLEAR, NEITHER = "keeps", "loses", "between", "unclear", "neither"

STEM_WORDS = {KEEPS: "keeps it as {max} does", LOSES: "loses it as with {none}",
              BETWEEN: "keeps part of it (clearly below {max}, clearly above {none})",
              UNCLEAR: "is not clearly different from either", NEITHER: "fits neither pattern"}


@dataclass(frozen=True)
class StemCell(Kind):
    """One stem of the stem ablation (not in the paper): the CIFAR ResNet-18 with one stem, no weight decay, SGD
    lr 0.08, λ 0.1, 4 and 16 epochs. `stem`: "maxpool" and "nopool" are the references (weight decay x max-pool
    cells, whose own gain rows are theirs), any other a stem compared with both, quoting `paper` on its gain;
    `label` names it in tables and sentences."""

    stem: str
    label: str
    paper: str = ""

    lasting = True

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        """Each new stem's TrAct − baseline (the paper's "better in every setting"), then its gain against each
        reference's, paired per seed (no claim to reproduce: the verdict says which is larger, where it is clear)."""
        cells = stem_cells(registry)
        gains = stem_gains(src, registry)
        out = []
        for stem in new_stems(registry):
            if stem in gains:
                item = cells[stem][1]
                out.append(make_claim(f"stem ablation: {item.label} ({STEM_SETTING})", item.paper,
                                      "TrAct − baseline, points [95 % CI]: " + per_budget(gains[stem]),
                                      list(gains[stem].values())))
        for (stem, ref), parts in stem_differences(src, registry).items():
            a, b = cells[stem][1].label, cells[ref][1].label
            word = {1: f"larger with {a}", -1: f"larger with {b}", 0: "no clear difference"}
            out.append(Claim(f"not in the paper: TrAct's gain with {a} vs with {b} ({STEM_SETTING})", NOT_IN_PAPER_STEM,
                             f"gain with {a} − gain with {b}, points [95 % CI]: {per_budget(parts)}",
                             ", ".join(f"{k} ep: {word[p.side()]}" for k, p in parts.items()), tuple(parts.values())))
        return out

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        """Each stem's accuracies and gain per budget (a stem not yet collected shows the command that trains it),
        each new stem's gain against the references', paired per seed, and their plot."""
        cells, new = stem_cells(registry), new_stems(registry)
        if not new or MAXPOOL not in cells or NOPOOL not in cells:
            return []
        gains = stem_gains(src, registry)
        label = {stem: item.label for stem, (_, item) in cells.items()}
        compared = "; ".join(f"{label[stem]}: `{_model(name, registry)}` (`{name}`)" for stem, (name, _) in cells.items())
        lines = ["### Not in the paper: what of the max-pool stem keeps TrAct's gain (ResNet-18, SGD, no weight "
                 "decay)", "",
                 f"The stems compared ({STEM_SETTING}, the weight decay × max-pool protocol): " + compared
                 + f". With {' and with '.join(label[stem] for stem in new)} the stages see the 16x16 maps they see after "
                 f"{label[MAXPOOL]}, without its max. If these keep TrAct's gain as "
                 f"{label[MAXPOOL]} does, the resolution after the stem is what matters; if they lose it as with "
                 f"{label[NOPOOL]}, the max's sparse gradient routing (each pooled value's gradient reaches one stem "
                 "output). Final test top-1 %, mean ± std over seeds; TrAct − baseline paired per seed, points [95 % t "
                 "interval]:", "",
                 "| stem | budget | seeds | baseline | TrAct | TrAct − baseline |", "|---|---:|---:|---:|---:|---:|"]
        for stem, (name, _) in cells.items():
            lines += accuracy_rows(src, name, sorted(gains.get(stem, {})), label[stem])
        diffs = stem_differences(src, registry)
        if diffs:
            lines += ["", "TrAct's gain with each new stem − with each reference, paired per seed, points [95 % t "
                      "interval]:", ""]
            lines += [f"- {label[stem]} − {label[ref]}: " + "; ".join(f"{b} ep {p.text()}" for b, p in parts.items())
                      for (stem, ref), parts in diffs.items()]
        if any(stem in gains for stem in new):
            budgets = sorted({b for g in gains.values() for b in g})
            values = {(label[stem], f"{b} epochs"): g[b].mean for stem, g in gains.items() for b in g}
            errors = {(label[stem], f"{b} epochs"): half_width(g[b]) for stem, g in gains.items() for b in g}
            path, image = across("stems.png", "stems")
            bar_plot(path, [label[s] for s in cells if s in gains], [f"{b} epochs" for b in budgets], values,
                     errors=errors, ylabel="TrAct − baseline (points), 95 % t CI",
                     title=f"What of the max-pool keeps TrAct's gain ({STEM_SETTING})")
            lines += ["", image]
        return lines + [""]

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        """The rule the data support at the longest budget, with the intervals that say so; nothing until every
        stem has 2 paired seeds at each budget."""
        rule, found = stem_rule(src, registry), stem_finding(src, registry)
        if rule is None:
            return []
        label = {stem: item.label for stem, (_, item) in stem_cells(registry).items()}
        ref = {"max": label[MAXPOOL], "none": label[NOPOOL]}
        hi = max(WD_POOL_BUDGETS)
        gains = stem_gains(src, registry)
        numbers = [f"{label[stem]} {gain.text()}, − {ref['max']} {vs_max.text()}, − {ref['none']} {vs_none.text()}"
                   for stem, (_, gain, vs_max, vs_none) in rule.items()]
        numbers += [f"{label[r]} {gains[r][hi].text()}" for r in (MAXPOOL, NOPOOL)]
        return [f"Not in the paper — what of the max-pool keeps TrAct's gain ({STEM_SETTING}; TrAct − baseline at "
                f"{hi} epochs, points [95 % t interval], paired per seed): {found} ({'; '.join(numbers)})."]


def stem_finding(src: Source, registry: dict) -> Optional[str]:
    """The rule the data support at the longest budget, in words ("the stride-2 stem and … keep it as the max-pool
    stem does (…), so the resolution after the stem is what keeps it, not the max"); None until `stem_rule` has it."""
    rule = stem_rule(src, registry)
    if rule is None:
        return None
    label = {stem: item.label for stem, (_, item) in stem_cells(registry).items()}
    ref = {"max": label[MAXPOOL], "none": label[NOPOOL]}
    kinds = {kind for kind, *_ in rule.values()}
    new = " and ".join(label[stem] for stem in rule)
    if kinds == {KEEPS}:
        return (f"{new} keep it as {ref['max']} does (clearly above {ref['none']}, not clearly below {ref['max']}), "
                "so the resolution after the stem is what keeps it, not the max")
    if kinds == {LOSES}:
        return (f"{new} lose it as with {ref['none']} (clearly below {ref['max']}, not clearly above {ref['none']}), "
                "so the max's sparse gradient routing is what keeps it, not the resolution")
    undecided = "the data do not decide between the resolution and the max's gradient routing: "
    if kinds == {UNCLEAR}:
        stems = [label[stem] for stem in rule]
        which = stems[0] if len(stems) == 1 else "neither " + " nor ".join(stems)
        return undecided + f"{which} is clearly different from {ref['max']} or from {ref['none']}"
    return (("neither rule fits alone: " if kinds <= {KEEPS, LOSES} else undecided)
            + ", ".join(f"{label[stem]} {STEM_WORDS[kind].format(**ref)}" for stem, (kind, *_) in rule.items()))


def stem_cells(registry: dict) -> dict:
    """{stem: (experiment, StemCell)} in registration order."""
    return {item.stem: (name, item) for name, item in entries(registry, StemCell)}


def new_stems(registry: dict) -> list:
    """The stems compared with the references, in registration order."""
    return [stem for stem in stem_cells(registry) if stem not in (MAXPOOL, NOPOOL)]


def stem_gains(src: Source, registry: dict) -> dict:
    """{stem: {budget: paired TrAct − baseline}} of the stems with data at the ablation's budgets."""
    return cell_gains(src, stem_cells(registry))


def stem_differences(src: Source, registry: dict) -> dict:
    """{(new stem, reference): {budget: paired gain with the new stem − gain with the reference}}, per seed, at the
    budgets both have."""
    gains = stem_gains(src, registry)
    out = {}
    for stem in new_stems(registry):
        for ref in (MAXPOOL, NOPOOL):
            parts = {b: difference(p, gains[ref][b]) for b, p in gains.get(stem, {}).items()
                     if b in gains.get(ref, {})}
            if parts:
                out[(stem, ref)] = parts
    return out


def stem_kind(vs_max: int, vs_none: int) -> str:
    """From the sides of a new stem's gain − the max-pool's and − no pool's (+1/−1: the interval above/below 0):
    KEEPS: clearly above no pool, not clearly below the max-pool; LOSES: clearly below the max-pool, not clearly
    above no pool; BETWEEN: clearly below the one and above the other; UNCLEAR: clearly different from neither;
    NEITHER: any other pattern (only possible where no pool's gain is not below the max-pool's)."""
    if vs_none > 0 and vs_max >= 0:
        return KEEPS
    if vs_max < 0 and vs_none <= 0:
        return LOSES
    if vs_max < 0 and vs_none > 0:
        return BETWEEN
    return UNCLEAR if vs_max == vs_none == 0 else NEITHER


def stem_rule(src: Source, registry: dict) -> Optional[dict]:
    """{stem: (kind, its gain, − the max-pool's gain, − no pool's gain)} at the longest budget, for every new stem;
    None until every stem (references included) has 2 paired seeds at each of the ablation's budgets."""
    gains = stem_gains(src, registry)
    cells = stem_cells(registry)
    if not new_stems(registry) or any(stem not in gains or any(b not in gains[stem] or gains[stem][b].n < 2
                                                                for b in WD_POOL_BUDGETS) for stem in cells):
        return None
    hi = max(WD_POOL_BUDGETS)
    diffs = stem_differences(src, registry)
    out = {}
    for stem in new_stems(registry):
        vs_max, vs_none = diffs[(stem, MAXPOOL)][hi], diffs[(stem, NOPOOL)][hi]
        out[stem] = (stem_kind(vs_max.side(), vs_none.side()), gains[stem][hi], vs_max, vs_none)
    return out


def _model(name: str, registry: dict) -> str:
    args = registry[name]["args"]
    return args[args.index("--model") + 1] if "--model" in args else "resnet18"
