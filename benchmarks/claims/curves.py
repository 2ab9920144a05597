"""The curves: TrAct against the baseline over the budgets. Claim: TrAct better at every budget and λ of the paper's
grid (beside it the paper's form of the speed-up, TrAct@B against the baseline at 2B and 4B); section: per
experiment its table, speed-ups and plots; README: whether the gain grows, holds or fades with the budget."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from ..evidence import Kind, entries, members
from ..experiment_tables import plots, run_machine
from ..figures import paired_gain_plot
from .core import (
    TREND_VERB, Claim, Source, budgets_of, difference, label, make_claim, paired, per_budget, PAPER_LAMS, top1_of,
    trend,
)


@dataclass(frozen=True)
class Curve(Kind):
    """TrAct against the baseline over the budgets: a section with its plots (`part` of BENCHMARKS.md:
    "experiments", "gpu", or None for none), the claim "TrAct better at every budget and λ" when `paper` quotes it,
    and the README's sentence on whether the gain grows or fades when `trend` names the setting."""

    part: Optional[str] = "experiments"
    paper: Optional[str] = None
    trend: Optional[str] = None

    lasting = True

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        return [curve_claim(src, members(registry, name), (titles or {}).get(name, name), item.paper)
                for name, item in entries(registry, Curve) if item.paper]

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        return sections(src, registry, "experiments")

    @classmethod
    def sentences(cls, src, registry: dict) -> list[str]:
        found = (trend_sentence(src, members(registry, name), item.trend)
                 for name, item in entries(registry, Curve) if item.trend)
        return [s for s in found if s]


def tract_vs_baseline(src: Source, names, lam: float = 0.1) -> dict:
    """{budget: paired TrAct(λ) − baseline} over the budgets where both exist (`names`: one experiment, or several
    sharing one baseline, e.g. a λ grid run as its own experiment)."""
    out = {}
    for b in budgets_of(src, names):
        base, tr = top1_of(src, names, b, "baseline"), top1_of(src, names, b, label(lam))
        if base and tr:
            out[b] = paired(tr, base)
    return out


def longer_baseline(src: Source, names, lam: float = 0.1) -> list:
    """The paper's form of the speed-up: (B, k, TrAct@B − baseline@kB) for k = 2, 4 where both were run."""
    out = []
    for b in budgets_of(src, names):
        tr = top1_of(src, names, b, label(lam))
        for k in (2, 4):
            base = top1_of(src, names, k * b, "baseline")
            if tr and base:
                out.append((b, k, paired(tr, base)))
    return out


def curve_claim(src: Source, names, title: str, paper: str) -> Optional[Claim]:
    """TrAct better than the baseline at every budget and every λ of the paper's grid that was run; beside it,
    the paper's form of the speed-up (TrAct@B against the baseline at 2B and 4B), which has no verdict."""
    per_lam = {lam: tract_vs_baseline(src, names, lam) for lam in PAPER_LAMS}
    per_lam = {lam: parts for lam, parts in per_lam.items() if parts}
    if not per_lam:
        return None
    measured = " ".join(f"λ = {lam:g}: {per_budget(parts)}." for lam, parts in per_lam.items())
    longer = longer_baseline(src, names)
    if longer:
        measured += " TrAct (λ = 0.1)@B − baseline@kB: " + "; ".join(
            f"{b}@{k * b} ep: {p.text()}" for b, k, p in longer) + "."
    return make_claim(title, paper, "TrAct − baseline, points [95 % CI]: " + measured,
                      [p for parts in per_lam.values() for p in parts.values()])


def _change(parts: dict, a: int, b: int) -> str:
    """How the gain changes from budget a to budget b, with both gains and the per-seed change."""
    change = difference(parts[b], parts[a])
    verb = TREND_VERB[trend(change)]
    return f"{verb} between {a} and {b} epochs ({parts[a].text()} → {parts[b].text()} points; change {change.text()})"


def trend_sentence(src: Source, names, what: str, lam: float = 0.1) -> Optional[str]:
    """One sentence: does TrAct's gain grow, hold or fade between the shortest and the longest budget (with the
    interval that says so); where the gain is largest at a budget in between, also how it changes from there on.
    Only budgets with at least 2 paired seeds carry the trend; a budget still short of them is named as such."""
    every = tract_vs_baseline(src, names, lam)
    parts = {b: p for b, p in every.items() if p.n >= 2}
    if len(parts) < 2:
        return None
    lo, hi = min(parts), max(parts)
    text = f"{what}: TrAct's gain {_change(parts, lo, hi)}"
    peak = max(parts, key=lambda b: parts[b].mean)
    if peak not in (lo, hi):
        text += f"; it is largest at {peak} epochs and {_change(parts, peak, hi)}"
    for b in sorted(set(every) - set(parts)):
        text += f"; at {b} epochs {every[b].n} paired seed{'' if every[b].n == 1 else 's'} so far ({every[b].text()})"
    return text + "."


def curves(registry: dict, part: str) -> list:
    """The experiments whose `Curve` section goes in `part` ("experiments", "gpu"), in registration order."""
    return [name for name, item in entries(registry, Curve) if item.part == part]


def sections(src, registry: dict, part: str) -> list[str]:
    """The section of every collected experiment whose `Curve` goes in `part` of BENCHMARKS.md."""
    out = []
    for name in curves(registry, part):
        loaded = src.experiment(name)
        if loaded is not None:
            out += curve_section(src, registry, name, loaded)
    return out


def speedup_line(summary: dict, label: str = None) -> str:
    """The speed-up per TrAct budget: of one method label, or of all (named when there are several λ)."""
    shown = [s for s in summary["speedups"] if label is None or s["label"] == label]
    named = label is None and len({s["label"] for s in shown}) > 1
    return ", ".join((f"{s['label']} " if named else "") + f"{s['tract_budget']:g} ep: {s['display']}"
                     for s in shown) or "—"


def unused_runs(src, name: str, top: dict, summary: dict) -> str:
    """A sentence on collected runs this comparison does not use: an lr the grid no longer holds, or no longer
    selected (an earlier grid's runs, kept as data)."""
    from trainact.harness.config import CompareConfig
    from trainact.harness.protocol import RunSpec, grid_runs

    grid = set(grid_runs(CompareConfig.from_dict(top["config"])))
    used = {(r["label"], r["budget"], r["lr"]) for r in summary["results"]}
    found: dict = {}  # (label, lr) -> {budget: [final top-1 of each seed]}
    for s in src.runs(name):
        run = s["run"]
        if RunSpec.from_dict(run) not in grid and (run["label"], run["budget"], run["lr"]) not in used:
            found.setdefault((run["label"], run["lr"]), {}).setdefault(run["budget"], []).append(s["final_top1"])
    if not found:
        return ""
    parts = [f"{label} at lr {lr:g} (" + ", ".join(f"{b:g} ep: {sum(a) / len(a):.2f}" for b, a in sorted(bs.items()))
             + ")" for (label, lr), bs in sorted(found.items())]
    return ("Also in the folder and not used by this comparison (runs of an earlier lr grid, kept as data; final "
            "test top-1 %, mean over their seeds): " + "; ".join(parts) + ".")


def paired_gains(src, registry: dict, name: str) -> dict:
    """{series label: [(B, paired TrAct@B − baseline@kB)]}: k = 1 for each of the paper's λ, and the paper's form
    of the speed-up (λ = 0.1 against the baseline at 2B and 4B) where those budgets were run."""
    names = members(registry, name)
    series = {f"λ = {lam:g}, baseline@B": sorted(tract_vs_baseline(src, names, lam).items()) for lam in PAPER_LAMS}
    for k in (2, 4):
        series[f"λ = 0.1, baseline@{k}B"] = [(b, p) for b, kk, p in longer_baseline(src, names) if kk == k]
    return {label: points for label, points in series.items() if points}


def curve_section(src, registry: dict, name: str, loaded) -> list[str]:
    from trainact.harness.results import format_markdown

    top, summary = loaded
    extra = unused_runs(src, name, top, summary)
    gains = paired_gains(src, registry, name)
    if gains:
        paired_gain_plot(os.path.join(src.folder(name), "paired_gain.png"), gains,
                         title=f"{name}: TrAct − baseline, paired per seed")
    return [f"### {registry[name]['title']}", "",
            f"Command: `{top['command']}` (then `python -m benchmarks.experiments collect {name}`); "
            f"{run_machine(top)}.", "",
            format_markdown(summary), "", *([extra, ""] if extra else []),
            f"Speed-up of TrAct per budget: {speedup_line(summary)}.", "",
            "The paired gain plot shows TrAct − baseline per seed (mean, 95 % t interval) at the same budget for "
            "each of the paper's λ, and, in the paper's form of the speed-up, TrAct@B against the baseline at 2B "
            "and 4B: a point at or above 0 there means TrAct needs half (a quarter) of the baseline's epochs.", "",
            plots(src, name, ("accuracy_vs_budget.png", "paired_gain.png", "speedup.png", "accuracy_vs_epoch.png")),
            ""]
