"""The stem ablation (not in the paper): what of the max-pool stem keeps TrAct's gain to 16 epochs. Without weight
decay the gain lasted with the authors' 3x3/2 max-pool after the stem and faded without it; two more stems give the
stages the max-pool's 16x16 maps without its max (a stride-2 stem; a 2x2 average pool). Each stem is a `StemCell`
registration; TrAct − baseline per stem, then, paired by seed (every cell trains the same seeds), each new stem's
gain against the two references' (the max-pool stem and no pool), and the rule the data support: if the new stems
keep the gain like the max-pool, the resolution after the stem is what matters; if they lose it like no pool, the
max's sparse gradient routing (each pooled value's gradient reaches one stem output)."""
from __future__ import annotations

from typing import Optional

from ..evidence import StemCell, entries
from .core import Claim, Source, difference, make_claim, per_budget
from .wd_pool import WD_POOL_BUDGETS

MAXPOOL, NOPOOL = "maxpool", "nopool"  # the references: the stems the new ones are compared with
STEM_SETTING = "ResNet-18, no weight decay, SGD lr 0.08, λ = 0.1"
NOT_IN_PAPER_STEM = "not in the paper (its code: the max-pool stem)"
# how a new stem's gain at the longest budget stands against the references', by (side of its difference from the
# max-pool's gain, side of its difference from no pool's): see `stem_kind`
KEEPS, LOSES, BETWEEN, UNCLEAR, NEITHER = "keeps", "loses", "between", "unclear", "neither"


def stem_cells(registry: dict) -> dict:
    """{stem: (experiment, StemCell)} in registration order."""
    return {item.stem: (name, item) for name, item in entries(registry, StemCell)}


def new_stems(registry: dict) -> list:
    """The stems compared with the references, in registration order."""
    return [stem for stem in stem_cells(registry) if stem not in (MAXPOOL, NOPOOL)]


def stem_gains(src: Source, registry: dict) -> dict:
    """{stem: {budget: paired TrAct − baseline}} of the stems with data at the ablation's budgets."""
    from .curves import tract_vs_baseline

    out = {}
    for stem, (name, _) in stem_cells(registry).items():
        gains = {b: p for b, p in tract_vs_baseline(src, name).items() if b in WD_POOL_BUDGETS}
        if gains:
            out[stem] = gains
    return out


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


def stem_claims(src: Source, registry: dict = None, titles: dict = None) -> list:
    """Each new stem's TrAct − baseline (the paper's "better in every setting"), then its gain against each
    reference's, paired per seed (no claim to reproduce: the verdict says which is larger, where it is clear)."""
    from .. import experiments

    registry = experiments.EXPERIMENTS if registry is None else registry
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
