"""The architecture sweep's claims: TrAct against the baseline per model (`Zoo` registrations), and TrAct at 2/3
of the budget (`ZooShort`) against the baseline at the whole; the verdicts take each model's mean as one value."""
from __future__ import annotations

from ..evidence import Zoo, ZooShort, entries
from .core import Claim, Source, across_models, paired, verdict


def zoo_models(registry: dict) -> dict:
    """{model: (experiment, its 2/3-budget experiment or None, Zoo item)} in registration order."""
    shorts = {item.of: name for name, item in entries(registry, ZooShort)}
    return {item.model: (name, shorts.get(name), item) for name, item in entries(registry, Zoo)}


def zoo_comparisons(src: Source, registry: dict) -> dict:
    """{model: {"top1": paired TrAct − baseline, "top5": the same (where stored), "short": TrAct at 2/3 of the
    budget − the baseline at the whole budget}} over the zoo's models that were run."""
    out = {}
    for m, (name, short, _) in zoo_models(registry).items():
        budgets = src.budgets(name)
        if not budgets:
            continue
        b = budgets[-1]
        base, tr = src.top1(name, b, "baseline"), src.top1(name, b, "tract-l0.1")
        if not (base and tr):
            continue
        row = {"name": name, "budget": b, "top1": paired(tr, base)}
        b5, t5 = (src.top1(name, b, label, "final_top5") for label in ("baseline", "tract-l0.1"))
        if b5 and t5:
            row["top5"] = paired(t5, b5)
        sb = src.budgets(short) if short else []
        if sb and src.top1(short, sb[-1], "tract-l0.1"):
            row["short"] = (sb[-1], paired(src.top1(short, sb[-1], "tract-l0.1"), base))
        out[m] = row
    return out


def zoo_claims(src: Source, registry: dict = None, titles: dict = None) -> list:
    from .. import experiments

    registry = experiments.EXPERIMENTS if registry is None else registry
    rows = zoo_comparisons(src, registry)
    if not rows:
        return []
    item = zoo_models(registry)[next(iter(rows))][2]
    gains = [r["top1"].mean for r in rows.values()]
    wins = sum(g > 0 for g in gains)
    wins5 = [r["top5"].mean > 0 for r in rows.values() if "top5" in r]
    across, gain = across_models({m: r["top1"] for m, r in rows.items()})
    out = [Claim(f"architecture sweep: TrAct better per model ({len(rows)} model{'s' * (len(rows) != 1)}, CIFAR-10)",
                 item.paper,
                 f"TrAct better on {wins}/{len(rows)} (top-1)"
                 + (f", {sum(wins5)}/{len(wins5)} (top-5)" if wins5 else "")
                 + f"; mean top-1 gain {gain} points over the models",
                 verdict([across]), tuple(r["top1"] for r in rows.values()))]
    shorts = {m: r["short"][1] for m, r in rows.items() if "short" in r}
    if shorts:
        across, gain = across_models(shorts)
        out.append(Claim("architecture sweep: TrAct at 2/3 of the budget vs the baseline at the whole",
                         item.short_paper,
                         f"TrAct@2/3 − baseline@whole, mean over {len(shorts)} model{'s' * (len(shorts) != 1)}: "
                         f"{gain} points", verdict([across]), tuple(shorts.values())))
    return out
