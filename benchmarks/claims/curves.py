"""Claims about TrAct's gain over the budgets and λ: the curves (TrAct better at every budget and λ, and the
paper's form of the speed-up), the README's trend sentences, the λ sweep, λ's trend with the budget, and λ = 1."""
from __future__ import annotations

from typing import Optional

from ..evidence import Curve, LamOne, LamSweep, LamTrend, entries, members
from .core import (
    TREND_VERB, Claim, Source, budgets_of, difference, label, make_claim, paired, per_budget, PAPER_LAMS, top1_of,
    trend, verdict,
)


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


def curve_claims(src: Source, registry: dict, titles: dict) -> list:
    """The curve claim of every experiment whose `Curve` quotes the paper."""
    return [curve_claim(src, members(registry, name), titles.get(name, name), item.paper)
            for name, item in entries(registry, Curve) if item.paper]


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


def trend_sentences(src: Source, registry: dict) -> list:
    """The trend sentence of every experiment whose `Curve` names a `trend` setting (None where it has none)."""
    return [trend_sentence(src, members(registry, name), item.trend)
            for name, item in entries(registry, Curve) if item.trend]


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


def lam_trend_claims(src: Source, registry: dict, titles: dict) -> list:
    return [lam_trend_claim(src, members(registry, name), item.what, item.paper)
            for name, item in entries(registry, LamTrend)]


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


def lam_sweep_claims(src: Source, registry: dict, titles: dict) -> list:
    return [lam_sweep_claim(src, name, item) for name, item in entries(registry, LamSweep)]


def lam_one_claims(src: Source, registry: dict, titles: dict) -> list:
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
