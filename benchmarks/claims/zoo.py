"""The architecture sweep: TrAct against the baseline per model (`Zoo` registrations), and TrAct at 2/3 of the
budget (`ZooShort`) against the baseline at the whole; the verdicts take each model's mean as one value. Its table
and plot, and the README's sentence, name any model whose baseline stays under twice chance."""
from __future__ import annotations

import statistics
from dataclasses import dataclass

from trainact.harness.protocol import fmt_num
from trainact.harness.results import pm, stats

from ..evidence import Kind, entries
from ..experiment_tables import half_width
from ..figures import across, bar_plot
from .core import Claim, Source, across_models, paired, verdict


@dataclass(frozen=True)
class ZooShort:
    """TrAct alone at 2/3 of zoo experiment `of`'s budget."""

    of: str


@dataclass(frozen=True)
class Zoo(Kind):
    """One model of the architecture sweep (`subset` training images); the sweep's claims quote `paper` (TrAct
    per model) and `short_paper` (TrAct at 2/3 of the budget against the baseline at the whole)."""

    model: str
    subset: int
    paper: str
    short_paper: str

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        rows = zoo_comparisons(src, registry)
        if not rows:
            return []
        item = zoo_models(registry)[next(iter(rows))][2]
        gains = [r["top1"].mean for r in rows.values()]
        wins = sum(g > 0 for g in gains)
        wins5 = [r["top5"].mean > 0 for r in rows.values() if "top5" in r]
        sample, gain = across_models({m: r["top1"] for m, r in rows.items()})
        out = [Claim(f"architecture sweep: TrAct better per model ({len(rows)} model{'s' * (len(rows) != 1)}, "
                     "CIFAR-10)", item.paper,
                     f"TrAct better on {wins}/{len(rows)} (top-1)"
                     + (f", {sum(wins5)}/{len(wins5)} (top-5)" if wins5 else "")
                     + f"; mean top-1 gain {gain} points over the models",
                     verdict([sample]), tuple(r["top1"] for r in rows.values()))]
        shorts = {m: r["short"][1] for m, r in rows.items() if "short" in r}
        if shorts:
            sample, gain = across_models(shorts)
            out.append(Claim("architecture sweep: TrAct at 2/3 of the budget vs the baseline at the whole",
                             item.short_paper,
                             f"TrAct@2/3 − baseline@whole, mean over {len(shorts)} model{'s' * (len(shorts) != 1)}: "
                             f"{gain} points", verdict([sample]), tuple(shorts.values())))
        return out

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        """Not in the paper's form: the architecture sweep on CIFAR-10, per model, paired per seed."""
        rows = zoo_comparisons(src, registry)
        if not rows:
            return []
        lines = ["### Architecture sweep (CIFAR-10, the pytorch-cifar100 recipe scaled to the budget)", "",
                 "`zoo-<model>` (see `python -m benchmarks.experiments list`; the models' CIFAR adaptations are in "
                 "src/trainact/harness/library_models.py, the sizing in benchmarks/zoo_sizing.md). TrAct − baseline "
                 "per seed, points [95 % t interval]; TrAct@2/3: TrAct trained for 2/3 of the budget against the "
                 "baseline's whole budget (Table 7's comparison); lr: the one the baseline chose from 0.1 and 0.01 "
                 "(seed 0), which TrAct uses too.", "",
                 "| model | budget | lr | baseline top-1 % | TrAct top-1 % | TrAct − baseline, top-1 | top-5 | "
                 "TrAct@2/3 − baseline |",
                 "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for m, r in rows.items():
            name, b = r["name"], r["budget"]
            base, tr = (stats(list(src.top1(name, b, label).values())) for label in ("baseline", "tract-l0.1"))
            short = f"{r['short'][1].text()} ({r['short'][0]} ep)" if "short" in r else "—"
            lr = src.lr(name, b, "baseline")
            lines.append(f"| {m} | {b} | {'—' if lr is None else fmt_num(lr)} | {pm(base)} | {pm(tr)} | "
                         f"{r['top1'].text()} | {r['top5'].text() if 'top5' in r else '—'} | {short} |")
        values, errors = {}, {}
        for m, r in rows.items():
            short = r.get("short", (0, None))[1]
            for series, p in (("TrAct − baseline", r["top1"]), ("TrAct@2/3 − baseline", short)):
                if p is not None and p.n:
                    values[(m, series)], errors[(m, series)] = p.mean, half_width(p)
        path, image = across("zoo.png", "zoo")
        bar_plot(path, list(rows), ["TrAct − baseline", "TrAct@2/3 − baseline"], values, errors=errors,
                 ylabel="top-1 difference (points), 95 % t CI",
                 title="Architecture sweep (CIFAR-10): paired differences per model")
        return lines + ["", image, ""]

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        """The sweep's sentence (whichever way it falls), naming any model whose baseline stays under twice chance
        (20 % on CIFAR-10): its gain says little."""
        models = zoo_models(registry)
        rows = zoo_comparisons(src, registry)
        if not rows:
            return []
        gains = [r["top1"] for r in rows.values()]
        above, below = sum(p.side() > 0 for p in gains), sum(p.side() < 0 for p in gains)
        budgets = "/".join(str(b) for b in sorted({r["budget"] for r in rows.values()}))
        done = f"{len(rows)} models" if len(rows) == len(models) else f"{len(rows)} of the {len(models)} models so far"
        text = (f"Not in the paper's form — the architecture sweep ({done}, CIFAR-10, {budgets} epochs on "
                f"{models[next(iter(rows))][2].subset} training images, paired per seed): TrAct better on "
                f"{sum(p.mean > 0 for p in gains)}/{len(rows)} models (top-1; {above} with the 95 % t interval above "
                f"0, {below} below), mean top-1 gain {across_models(dict(zip(rows, gains)))[1]} points (the paper, 36 "
                "CIFAR-100 models at 200 epochs: 33/36, +0.49)")
        shorts = {m: r["short"][1] for m, r in rows.items() if "short" in r}
        if shorts:
            text += (f"; TrAct at 2/3 of the budget − the baseline at the whole: {across_models(shorts)[1]} "
                     f"points on average over {len(shorts)} model{'s' * (len(shorts) != 1)} (the paper: about 0)")
        weak = [m for m in rows
                if statistics.fmean(src.top1(rows[m]["name"], rows[m]["budget"], "baseline").values()) < 20]
        if weak:
            text += f"; under twice chance (20 %), so their gain says little: {', '.join(weak)}"
        return [text + "."]


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
