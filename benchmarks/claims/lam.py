"""λ: a table of TrAct's accuracy per λ (`LamTable`), the sweep's claim that TrAct beats the baseline at every λ in
the paper's range (`LamSweep`), λ = 0.2's advantage over λ = 0.05 growing with the budget (`LamTrend`), and λ = 1
against λ = 0.1 (`LamOne`, not the paper's λ)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

from trainact.harness.results import pm

from ..evidence import Kind, entries, members
from ..experiment_tables import by_label, plots, run_machine
from ..figures import lam_sweep_plot
from .core import Claim, Source, budgets_of, difference, label, make_claim, paired, per_budget, top1_of, verdict


@dataclass(frozen=True)
class LamTable(Kind):
    """A table of TrAct's accuracy per λ against the baseline (with a plot when it sweeps more than two λ)."""

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        out = []
        for name, _ in entries(registry, LamTable):
            loaded = src.experiment(name)
            if loaded is not None:
                out += _table(src, registry, name, loaded)
        return out


def _table(src, registry: dict, name: str, loaded) -> list[str]:
    top, summary = loaded
    sweep = len(top["config"]["lams"]) > 2
    if sweep:
        lam_sweep_plot(summary, os.path.join(src.folder(name), "lam_sweep.png"))
    base = by_label(summary)["baseline"]
    lines = [f"### {registry[name]['title']}", "",
             f"Command: `{top['command']}`; {run_machine(top)}.", "",
             "| λ | seeds | test top-1 % | vs baseline (points) |", "|---:|---:|---:|---:|",
             f"| baseline | {base['top1']['n']} | {pm(base['top1'])} | |"]
    for r in sorted((r for r in summary["results"] if r["method"] == "tract"), key=lambda r: r["lam"]):
        lines.append(f"| {r['lam']:g} | {r['top1']['n']} | {pm(r['top1'])} | "
                     f"{r['top1']['mean'] - base['top1']['mean']:+.2f} |")
    return lines + ["", plots(src, name, ("lam_sweep.png",) if sweep else ("accuracy_vs_epoch.png",)), ""]


@dataclass(frozen=True)
class LamSweep(Kind):
    """The claim that TrAct beats the baseline at every λ inside the paper's range `inside` (first budget)."""

    what: str
    paper: str
    lams: tuple
    inside: tuple

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        return [lam_sweep_claim(src, name, item) for name, item in entries(registry, LamSweep)]


def lam_sweep_claim(src: Source, name: str, item: LamSweep) -> Optional[Claim]:
    """TrAct above the baseline at every λ of the sweep inside the paper's range (at the first budget)."""
    budgets = src.budgets(name)
    if not budgets:
        return None
    b = budgets[0]
    base = src.top1(name, b, "baseline")
    lams = sorted(lam for lam in item.lams if src.top1(name, b, label(lam)))
    parts = {lam: paired(src.top1(name, b, label(lam)), base) for lam in lams}
    low, high = item.inside
    inside = {lam: p for lam, p in parts.items() if low <= lam <= high}
    if not inside:
        return None
    each = "; ".join(f"λ = {lam:g}{'' if lam in inside else ' (outside the paper range)'}: {p.text()}"
                     for lam, p in parts.items())
    return make_claim(f"λ sweep ({item.what}, {b} ep)", item.paper,
                      f"TrAct − baseline, points [95 % CI]: {each}; the verdict uses the λ inside the paper's range",
                      list(inside.values()))


@dataclass(frozen=True)
class LamTrend(Kind):
    """The claim that λ = 0.2's advantage over λ = 0.05 grows with the budget."""

    what: str
    paper: str

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        return [lam_trend_claim(src, members(registry, name), item.what, item.paper)
                for name, item in entries(registry, LamTrend)]


def lam_trend_claim(src: Source, names, what: str, paper: str) -> Optional[Claim]:
    """The paper's "0.1 to start, 0.2 for long training": λ = 0.2's advantage over λ = 0.05 grows with the budget."""
    gains = {}
    for b in budgets_of(src, names):
        small, large = top1_of(src, names, b, label(0.05)), top1_of(src, names, b, label(0.2))
        if small and large:
            gains[b] = paired(large, small)
    if len(gains) < 2:
        return None
    lo, hi = min(gains), max(gains)
    change = difference(gains[hi], gains[lo])
    return make_claim(f"larger λ for longer training ({what}, {lo} → {hi} ep)", paper,
                      f"λ = 0.2 − λ = 0.05, points [95 % CI]: {per_budget(gains)}; change from {lo} to {hi} ep: "
                      f"{change.text()}", [change])


@dataclass(frozen=True)
class LamOne(Kind):
    """Rows for λ = 1 at the experiment's budgets, against λ = 0.1 and the baseline (not the paper's λ)."""

    what: str

    @classmethod
    def claims(cls, src, registry: dict, titles: dict = None) -> list:
        """λ = 1 at the experiments' budgets: extra data, not the paper's λ."""
        out = []
        for name, item in entries(registry, LamOne):
            for b in src.budgets(name):
                one, base = src.top1(name, b, "tract-l1"), src.top1(name, b, "baseline")
                ref = src.top1(name, b, "tract-l0.1")
                if one and base and ref:
                    p, q = paired(one, ref), paired(one, base)
                    out.append(Claim(f"λ = 1, not the paper's λ ({item.what}, {b} ep)",
                                     "not in the paper (its λ are 0.05, 0.1, 0.2)",
                                     f"λ = 1 − λ = 0.1: {p.text()}; λ = 1 − baseline: {q.text()}",
                                     f"not the paper's λ; against the baseline: {verdict([q])}", (q,)))
        return out
