"""Claims of the ablations: §4.5's normalisations and input ranges against TrAct, the first layer trained by SGD
under Adam, and (not in the paper) TrAct against a patch-whitened first layer."""
from __future__ import annotations

from ..evidence import Ablation, FirstLayerSgd, Whitening, entries
from .core import Claim, Source, budgets_of, difference, make_claim, paired

# the whitening comparison's columns, and the questions it asks of them (a − b)
WHITENING_COLUMNS = ("baseline", "TrAct", "whitened, frozen", "whitened, trained", "whitened + TrAct")
WHITENING_QUESTIONS = (("TrAct", "whitened, frozen"), ("TrAct", "whitened, trained"), ("whitened + TrAct", "TrAct"),
                       ("whitened + TrAct", "whitened, trained"), ("whitened, frozen", "baseline"))


def ablation_claims(src: Source, registry: dict, titles: dict = None) -> list:
    """Each normalisation against TrAct on the reference model; each input range's drop from standardised inputs,
    the baseline's against TrAct's; TrAct at one input range against another."""
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
                out.append(make_claim(f"{item.input_range} inputs, no standardisation (ViT, {budget} ep)", item.paper,
                                      f"drop from standardised inputs, points: baseline {drop_b.text()}, TrAct "
                                      f"{drop_t.text()}; baseline's drop − TrAct's: {robust.text()}", [robust]))
    for _name, item in rows:
        if item.versus and item.input_range in tract_at and item.versus[0] in tract_at:
            other, quote = item.versus
            p = paired(tract_at[item.input_range], tract_at[other])
            out.append(make_claim(f"TrAct at {item.input_range} vs {other} inputs (ViT, {budget} ep)", quote,
                                  f"TrAct {item.input_range} − TrAct {other}, points: {p.text()}", [p]))
    return out


def first_layer_sgd_claims(src: Source, registry: dict, titles: dict = None) -> list:
    out = []
    for name, item in entries(registry, FirstLayerSgd):
        all_adam = src.top1(item.reference, item.budget, "tract-l0.1")
        mixed = src.top1(name, item.budget, "tract-l0.1")
        if all_adam and mixed:
            p = paired(mixed, all_adam)
            out.append(make_claim(f"first layer SGD + TrAct, the rest Adam ({item.what}, {item.budget} ep)",
                                  item.paper, f"vs all-Adam TrAct, points: {p.text()}", [p]))
    return out


def whitening_variants(registry: dict) -> list:
    """[(column, experiment, method label)] of the whitening comparison, in WHITENING_COLUMNS order."""
    found = {column: (column, name, method) for name, item in entries(registry, Whitening)
             for column, method in item.columns}
    return [found[c] for c in WHITENING_COLUMNS if c in found]


def whitening_setting(registry: dict) -> str:
    """The protocol the whitening comparison runs (its reference's `setting`)."""
    return next((item.setting for _, item in entries(registry, Whitening) if item.reference), "")


def whitening_comparisons(src: Source, registry: dict) -> dict:
    """{budget: {(a, b): paired a − b}} for the questions the whitening comparison asks, where both were run."""
    variants = whitening_variants(registry)
    whitened = [name for name, item in entries(registry, Whitening) if not item.reference]
    out = {}
    for b in budgets_of(src, whitened):
        got = {column: src.top1(name, b, method) for column, name, method in variants}
        pairs = {(x, y): paired(got[x], got[y]) for x, y in WHITENING_QUESTIONS
                 if got.get(x) and got.get(y)}
        if pairs:
            out[b] = pairs
    return out


def whitening_claims(src: Source, registry: dict = None, titles: dict = None) -> list:
    """Not in the paper: TrAct (whitened gradient) against airbench's whitened first layer, and both together."""
    from .. import experiments

    registry = experiments.EXPERIMENTS if registry is None else registry
    setting = whitening_setting(registry)
    out = []
    for b, pairs in whitening_comparisons(src, registry).items():
        for (x, y), p in pairs.items():  # no claim to reproduce: the verdict names the better one, if any
            word = {1: f"{x} better", -1: f"{y} better", 0: "no clear difference"}[p.side()]
            out.append(Claim(f"not in the paper: {x} vs {y} ({setting}, {b} ep)",
                             "not in the paper (airbench's patch-whitened first layer)",
                             f"{x} − {y}, points: {p.text()}", word, (p,)))
    return out
