"""The paper's claims, checked against the collected runs with paired statistics.

Baseline and TrAct runs of one seed share the initial weights and the data order, so every comparison here is
*paired*: per seed, the difference of the two final test top-1 accuracies; then their mean, its standard error
(sample std / √n) and a two-sided 95 % t interval with n − 1 degrees of freedom.

A claim's verdict comes from its intervals alone:
  *reproduced*      every part's interval lies entirely on the claimed side of 0,
  *not reproduced*  some part's interval lies entirely on the other side,
  *inconclusive*    otherwise; a part with fewer than 2 seeds has no interval and is always inconclusive.
A "part" is one comparison a claim makes (one budget of "TrAct better at every budget", one λ of a sweep).

The paper column quotes ../shared/PAPER-NUMBERS.md (figure or table named). Everything else is computed from
the JSON under benchmarks/results/experiments/ by `Collected`, or from any object with the same two methods.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import dataclass
from typing import Optional, Protocol, Sequence

# two-sided 95 % critical values of Student's t, by degrees of freedom (larger df: the nearest smaller key)
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228,
       11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120, 17: 2.110, 18: 2.101, 19: 2.093,
       20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000, 120: 1.980}

REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE = "reproduced", "not reproduced", "inconclusive"


def t95(df: int) -> float:
    """The two-sided 95 % t critical value for `df` ≥ 1 degrees of freedom (conservative between table rows)."""
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"degrees of freedom must be an integer >= 1, got {df!r}")
    return T95[max(k for k in T95 if k <= df)]


@dataclass(frozen=True)
class Paired:
    """Per-seed differences a − b of two methods' final accuracies (points), for the seeds both have."""

    seeds: tuple
    diffs: tuple
    unpaired: tuple = ()  # seeds that only one of the two has (left out)

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> Optional[float]:
        return statistics.fmean(self.diffs) if self.diffs else None

    @property
    def se(self) -> Optional[float]:
        return statistics.stdev(self.diffs) / math.sqrt(self.n) if self.n >= 2 else None

    @property
    def interval(self) -> Optional[tuple[float, float]]:
        """The two-sided 95 % t interval of the mean difference (None below 2 seeds)."""
        if self.n < 2:
            return None
        half = t95(self.n - 1) * self.se
        return self.mean - half, self.mean + half

    def side(self) -> int:
        """+1: the interval lies entirely above 0; −1: entirely below; 0: it holds 0, or there is none."""
        ci = self.interval
        if ci is None:
            return 0
        return 1 if ci[0] > 0 else -1 if ci[1] < 0 else 0

    def text(self) -> str:
        """"+1.23 [+0.40, +2.06]": the mean difference and its 95 % interval (the seed count is said per row)."""
        if not self.n:
            return "no paired runs"
        ci = self.interval
        body = f"{self.mean:+.2f}" + (f" [{ci[0]:+.2f}, {ci[1]:+.2f}]" if ci else " (1 seed, no interval)")
        if self.unpaired:
            body += f" (seed{'s' if len(self.unpaired) > 1 else ''} {', '.join(map(str, self.unpaired))} unpaired, left out)"
        return body


def paired(a: dict, b: dict) -> Paired:
    """{seed: accuracy} of two methods -> their paired differences a − b."""
    common = sorted(set(a) & set(b))
    return Paired(tuple(common), tuple(float(a[s]) - float(b[s]) for s in common),
                  tuple(sorted(set(a) ^ set(b))))


def difference(a: Paired, b: Paired) -> Paired:
    """Per seed, (a's difference) − (b's difference): how a paired effect changes between two settings."""
    da, db = dict(zip(a.seeds, a.diffs)), dict(zip(b.seeds, b.diffs))
    return paired(da, db)


def verdict(parts: Sequence[Paired], sign: int = 1) -> str:
    """The three-way verdict of a claim that every part's difference has sign `sign` (+1 or −1)."""
    if sign not in (1, -1):
        raise ValueError(f"sign must be +1 or -1, got {sign!r}")
    sides = [p.side() * sign for p in parts]
    if sides and all(s == 1 for s in sides):
        return REPRODUCED
    if any(s == -1 for s in sides):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def trend(change: Paired) -> str:
    """A word for how a paired gain changes with the budget: grows, fades, or no clear change."""
    return {1: "grows", -1: "fades", 0: "no clear change"}[change.side()]


TREND_VERB = {"grows": "grows", "fades": "fades", "no clear change": "shows no clear change"}  # "the gain …"


# ---------------------------------------------------------------------------------------------- data
class Source(Protocol):
    def top1(self, name: str, budget: int, label: str, key: str = "final_top1") -> dict:
        """{seed: final test top-1 %} (or `key` of the run summary, e.g. final_top5) of one method (label:
        baseline, tract-l0.1, ...) at its selected lr."""

    def budgets(self, name: str) -> list:
        """The budgets of an experiment with results (sorted); [] if it was never collected."""

    def lr(self, name: str, budget: int, label: str) -> Optional[float]:
        """The lr a method's runs used at a budget (the selected one); None where it has no results."""


class Collected:
    """The collected experiments under `root` (benchmarks/results/experiments)."""

    def __init__(self, root: str):
        self.root = root
        self._summaries: dict = {}

    def summary(self, name: str) -> Optional[dict]:
        if name not in self._summaries:
            path = os.path.join(self.root, name, "summary.json")
            self._summaries[name] = None
            if os.path.exists(path):
                with open(path) as f:
                    self._summaries[name] = json.load(f)
        return self._summaries[name]

    def budgets(self, name: str) -> list:
        s = self.summary(name)
        return sorted({r["budget"] for r in s["results"]}) if s else []

    def _row(self, name: str, budget: int, label: str) -> Optional[dict]:
        """The summary's result row of one method at one budget (its selected lr); None if it has none."""
        s = self.summary(name)
        rows = [r for r in (s["results"] if s else []) if r["budget"] == budget and r["label"] == label]
        if not rows:
            return None
        (row,) = rows
        return row

    def lr(self, name: str, budget: int, label: str) -> Optional[float]:
        row = self._row(name, budget, label)
        return None if row is None else row["lr"]

    def top1(self, name: str, budget: int, label: str, key: str = "final_top1") -> dict:
        """{seed: the run summary's `key`} (final_top1, or final_top5 where the runs have it)."""
        from trainact.harness.protocol import RunSpec

        row = self._row(name, budget, label)
        if row is None:
            return {}
        out = {}
        for seed in row["seeds"]:
            run = RunSpec(budget, row["method"], row["lr"], seed, lam=row["lam"])
            with open(os.path.join(self.root, name, run.run_id, "summary.json")) as f:
                value = json.load(f).get(key)
            if value is not None:
                out[seed] = value
        return out


# ---------------------------------------------------------------------------------------------- claims
@dataclass(frozen=True)
class Claim:
    claim: str
    paper: str  # quoted from PAPER-NUMBERS.md, with its figure / table
    measured: str
    verdict: str
    parts: tuple = ()  # the Paired comparisons the verdict was taken from

    def row(self) -> list:
        sides = [p.side() for p in self.parts]
        seeds = sorted({p.n for p in self.parts})
        measured = self.measured + (f" ({'–'.join(map(str, (seeds[0], seeds[-1]) if len(seeds) > 1 else seeds))} "
                                    f"seeds)" if seeds else "")
        word = self.verdict
        if len(self.parts) > 1:
            word += f" ({sides.count(1)} of {len(sides)} intervals above 0, {sides.count(-1)} below)"
        return [self.claim, self.paper, measured, word]


def _claim(claim: str, paper: str, measured: str, parts: Sequence[Paired], sign: int = 1) -> Claim:
    return Claim(claim, paper, measured, verdict(parts, sign), tuple(parts))


PAPER_LAMS = (0.05, 0.1, 0.2)  # the paper's λ grid (Fig. 3, Fig. 4)
FIG3_SGD = ("Fig. 3 (ResNet-18 CIFAR-10, SGD, 100–800 ep, λ ∈ {0.05, 0.1, 0.2}): TrAct better in every setting; "
            "TrAct@100 better than baseline@800 (≥ 8×)")
FIG3_ADAM = "Fig. 3 (Adam): TrAct better in every setting; TrAct@100 ≈ baseline@400, TrAct@200 ≈ baseline@800 (4×)"
FIG3_SGD_LR = "Fig. 3 (SGD, lr 0.08, batch 128): TrAct better in every setting"
# The two CIFAR ResNet protocols run here differ in two things only: the authors' code puts a 3x3/2 max-pool after
# the stem and uses no weight decay; our variant has no max-pool and weight decay 5e-4.
OUR_VARIANT, AUTHORS_PROTOCOL = "our CIFAR variant", "authors' protocol"
OUR_VARIANT_LONG = f"{OUR_VARIANT}: no max-pool, weight decay 5e-4"
AUTHORS_PROTOCOL_LONG = f"{AUTHORS_PROTOCOL}: max-pool stem, no weight decay"


def _label(lam: float) -> str:
    from trainact.harness.protocol import fmt_num

    return f"tract-l{fmt_num(lam)}"


def _names(name) -> tuple:
    return (name,) if isinstance(name, str) else tuple(name)


def _top1(src: Source, names, budget: int, label: str) -> dict:
    """{seed: top-1} of `label` at `budget` from the first of the experiments `names` that has it."""
    for n in _names(names):
        got = src.top1(n, budget, label)
        if got:
            return got
    return {}


def _budgets(src: Source, names) -> list:
    return sorted({b for n in _names(names) for b in src.budgets(n)})


def tract_vs_baseline(src: Source, names, lam: float = 0.1) -> dict:
    """{budget: paired TrAct(λ) − baseline} over the budgets where both exist (`names`: one experiment, or several
    sharing one baseline, e.g. a λ grid run as its own experiment)."""
    out = {}
    for b in _budgets(src, names):
        base, tr = _top1(src, names, b, "baseline"), _top1(src, names, b, _label(lam))
        if base and tr:
            out[b] = paired(tr, base)
    return out


def longer_baseline(src: Source, names, lam: float = 0.1) -> list:
    """The paper's form of the speed-up: (B, k, TrAct@B − baseline@kB) for k = 2, 4 where both were run."""
    out = []
    for b in _budgets(src, names):
        tr = _top1(src, names, b, _label(lam))
        for k in (2, 4):
            base = _top1(src, names, k * b, "baseline")
            if tr and base:
                out.append((b, k, paired(tr, base)))
    return out


def _per_budget(parts: dict) -> str:
    return "; ".join(f"{b} ep: {p.text()}" for b, p in parts.items())


def curve_claim(src: Source, names, title: str, paper: str) -> Optional[Claim]:
    """TrAct better than the baseline at every budget and every λ of the paper's grid that was run; beside it,
    the paper's form of the speed-up (TrAct@B against the baseline at 2B and 4B), which has no verdict."""
    per_lam = {lam: tract_vs_baseline(src, names, lam) for lam in PAPER_LAMS}
    per_lam = {lam: parts for lam, parts in per_lam.items() if parts}
    if not per_lam:
        return None
    measured = " ".join(f"λ = {lam:g}: {_per_budget(parts)}." for lam, parts in per_lam.items())
    longer = longer_baseline(src, names)
    if longer:
        measured += " TrAct (λ = 0.1)@B − baseline@kB: " + "; ".join(
            f"{b}@{k * b} ep: {p.text()}" for b, k, p in longer) + "."
    return _claim(title, paper, "TrAct − baseline, points [95 % CI]: " + measured,
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


def lam_trend_claim(src: Source, names, what: str) -> Optional[Claim]:
    """The paper's "0.1 to start, 0.2 for long training": λ = 0.2's advantage over λ = 0.05 grows with the budget."""
    gains = {}
    for b in _budgets(src, names):
        small, large = _top1(src, names, b, _label(0.05)), _top1(src, names, b, _label(0.2))
        if small and large:
            gains[b] = paired(large, small)
    if len(gains) < 2:
        return None
    lo, hi = min(gains), max(gains)
    change = difference(gains[hi], gains[lo])
    return _claim(f"larger λ for longer training ({what}, {lo} → {hi} ep)",
                  "λ ∈ {0.05, 0.1, 0.2}; 0.1 to start, 0.2 for long training (§ hyperparameters)",
                  f"λ = 0.2 − λ = 0.05, points [95 % CI]: {_per_budget(gains)}; change from {lo} to {hi} ep: "
                  f"{change.text()}", [change])


def lam_sweep_claim(src: Source, name: str = "lam-sweep") -> Optional[Claim]:
    budgets = src.budgets(name)
    if not budgets:
        return None
    b = budgets[0]
    base = src.top1(name, b, "baseline")
    lams = sorted(lam for lam in (0.01, 0.03, 0.1, 0.3, 1, 3, 10) if src.top1(name, b, _label(lam)))
    parts = {lam: paired(src.top1(name, b, _label(lam)), base) for lam in lams}
    inside = {lam: p for lam, p in parts.items() if 0.00625 <= lam <= 1.6}  # the paper's range
    if not inside:
        return None
    each = "; ".join(f"λ = {lam:g}{'' if lam in inside else ' (outside the paper range)'}: {p.text()}"
                     for lam, p in parts.items())
    return _claim(f"λ sweep (ResNet, {OUR_VARIANT}, SGD, {b} ep)",
                  "Fig. 6 (ViT, 200 ep): TrAct above the baseline for every λ in [0.00625, 1.6]",
                  f"TrAct − baseline, points [95 % CI]: {each}; the verdict uses the λ inside the paper's range",
                  list(inside.values()))


def ablation_claims(src: Source, budget: int) -> list:
    out = []
    plain_b, plain_t = src.top1("fig4-vit", budget, "baseline"), src.top1("fig4-vit", budget, "tract-l0.1")
    for name, what in (("ablation-vit-patchnorm", "patch-wise normalisation"),
                       ("ablation-vit-dualpatchnorm", "DualPatchNorm")):
        other = src.top1(name, budget, "baseline")
        if plain_t and other:
            p = paired(plain_t, other)
            out.append(_claim(f"{what} vs TrAct (ViT, {budget} ep)",
                              f"Fig. 7: {what} helps up to 400 ep but less than TrAct"
                              + (" (insignificantly better at 200 ep only)" if what == "DualPatchNorm" else ""),
                              f"TrAct − {what}, points: {p.text()}", [p]))
    drops = {}
    for name, what in (("ablation-vit-unit", "[0,1]"), ("ablation-vit-byte", "[0,255]")):
        ub, ut = src.top1(name, budget, "baseline"), src.top1(name, budget, "tract-l0.1")
        if plain_b and plain_t and ub and ut:
            drop_b, drop_t = paired(plain_b, ub), paired(plain_t, ut)  # standardised − raw, per seed
            robust = difference(drop_b, drop_t)  # the baseline's drop − TrAct's drop
            drops[what] = ut
            out.append(_claim(f"{what} inputs, no standardisation (ViT, {budget} ep)",
                              "Fig. 8 (200 ep): TrAct more robust than the baseline, which degrades drastically",
                              f"drop from standardised inputs, points: baseline {drop_b.text()}, TrAct "
                              f"{drop_t.text()}; baseline's drop − TrAct's: {robust.text()}", [robust]))
    if len(drops) == 2:
        p = paired(drops["[0,255]"], drops["[0,1]"])
        out.append(_claim(f"TrAct at [0,255] vs [0,1] inputs (ViT, {budget} ep)",
                          "Fig. 8: TrAct better at [0,255] than at [0,1], nearly insensitive to λ at [0,255]",
                          f"TrAct [0,255] − TrAct [0,1], points: {p.text()}", [p]))
    return out


def first_layer_sgd_claim(src: Source, budget: int) -> Optional[Claim]:
    all_adam = src.top1("fig3-adam", budget, "tract-l0.1")
    mixed = src.top1("first-layer-sgd", budget, "tract-l0.1")
    if not (all_adam and mixed):
        return None
    p = paired(mixed, all_adam)
    return _claim(f"first layer SGD + TrAct, the rest Adam (ResNet, {OUR_VARIANT}, {budget} ep)",
                  "Fig. 9: small improvements over all-Adam TrAct",
                  f"vs all-Adam TrAct, points: {p.text()}", [p])


def lam_one_rows(src: Source) -> list:
    """λ = 1 at the longest budget: extra data, not the paper's λ."""
    out = []
    for name, opt in (("lam-long", "SGD"), ("lam-long-adam", "Adam")):
        for b in src.budgets(name):
            one, base = src.top1(name, b, "tract-l1"), src.top1(name, b, "baseline")
            ref = src.top1(name, b, "tract-l0.1")
            if one and base and ref:
                p, q = paired(one, ref), paired(one, base)
                out.append(Claim(f"λ = 1, not the paper's λ (ResNet, {OUR_VARIANT}, {opt}, {b} ep)",
                                 "not in the paper (its λ are 0.05, 0.1, 0.2)",
                                 f"λ = 1 − λ = 0.1: {p.text()}; λ = 1 − baseline: {q.text()}",
                                 f"not the paper's λ; against the baseline: {verdict([q])}", (q,)))
    return out


# The weight decay x max-pool ablation (experiments wd-pool-<pool>-wd<wd>): the two differences between the protocols,
# crossed, at SGD lr 0.08, λ = 0.1 and two budgets. Every cell trains the same seeds, so effects pair by seed.
WD_POOL_BUDGETS = (4, 16)
WD_POOL_CELLS = {("maxpool", "0"): f"max-pool stem, no weight decay ({AUTHORS_PROTOCOL})",
                 ("maxpool", "5e-4"): "max-pool stem, weight decay 5e-4",
                 ("nopool", "0"): "no max-pool, no weight decay",
                 ("nopool", "5e-4"): f"no max-pool, weight decay 5e-4 ({OUR_VARIANT})"}
WD_POOL_SETTING = "ResNet, SGD lr 0.08, λ = 0.1"
NOT_IN_PAPER_WD = "not in the paper (its code: max-pool stem, no weight decay)"


def _keyed(parts: dict) -> str:
    """"4 ep: …; 16 ep: …; change from 4 to 16 ep: …" of {budget or "change": Paired}."""
    lo, hi = WD_POOL_BUDGETS
    return "; ".join(f"{f'change from {lo} to {hi} ep' if k == 'change' else f'{k} ep'}: {p.text()}"
                     for k, p in parts.items())


def weight_decay_pool_gains(src: Source) -> dict:
    """{(pool, wd): {budget: paired TrAct − baseline, "change": its per-seed change from 4 to 16 ep}} of the cells
    with data (the change where both budgets have it)."""
    lo, hi = WD_POOL_BUDGETS
    out = {}
    for pool, wd in WD_POOL_CELLS:
        gains = {b: p for b, p in tract_vs_baseline(src, f"wd-pool-{pool}-wd{wd}").items() if b in WD_POOL_BUDGETS}
        if lo in gains and hi in gains:
            gains["change"] = difference(gains[hi], gains[lo])
        if gains:
            out[(pool, wd)] = gains
    return out


def weight_decay_pool_effects(src: Source) -> dict:
    """{(factor, setting): {budget or "change": Paired}}, per seed: ("weight decay", pool): the gain without weight
    decay − the gain with it; ("max-pool", wd): the gain with the max-pool − the gain without it."""
    gains = weight_decay_pool_gains(src)
    pairs = {("weight decay", pool): ((pool, "0"), (pool, "5e-4")) for pool in ("maxpool", "nopool")}
    pairs.update({("max-pool", wd): (("maxpool", wd), ("nopool", wd)) for wd in ("0", "5e-4")})
    out = {}
    for key, (a, b) in pairs.items():
        effect = {k: difference(p, gains[b][k]) for k, p in gains.get(a, {}).items() if k in gains.get(b, {})}
        if effect:
            out[key] = effect
    return out


def weight_decay_user_comparisons(src: Source) -> dict:
    """{(pool, a, b): {budget: paired a − b}}: for one who trains with weight decay, is TrAct without it better than
    the baseline with it, and does TrAct itself do better with or without it (same pool, paired by seed)?"""
    out = {}
    for pool in ("maxpool", "nopool"):
        runs = {"TrAct without weight decay": (f"wd-pool-{pool}-wd0", "tract-l0.1"),
                "TrAct with weight decay": (f"wd-pool-{pool}-wd5e-4", "tract-l0.1"),
                "baseline with weight decay": (f"wd-pool-{pool}-wd5e-4", "baseline")}
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


def weight_decay_pool_claims(src: Source) -> list:
    """The weight decay x max-pool ablation: TrAct − baseline per cell (the paper's "better in every setting"), then,
    paired by seed, how weight decay and the max-pool move that gain, and TrAct without weight decay against what
    one training with weight decay has (the baseline with it, TrAct with it)."""
    out = []
    for cell, parts in weight_decay_pool_gains(src).items():
        measured = "TrAct − baseline, points [95 % CI]: " + _keyed(parts)
        if "change" in parts:
            measured += f" (the gain {TREND_VERB[trend(parts['change'])]})"
        out.append(_claim(f"weight decay × max-pool: {WD_POOL_CELLS[cell]} ({WD_POOL_SETTING})", FIG3_SGD_LR,
                          measured, [p for k, p in parts.items() if k != "change"]))
    where = {"maxpool": "max-pool stem", "nopool": "no max-pool", "0": "no weight decay", "5e-4": "weight decay 5e-4"}
    for (factor, setting), parts in weight_decay_pool_effects(src).items():
        if factor == "weight decay":
            out.append(_worded(f"weight decay's effect on TrAct's gain, {where[setting]}",
                               "gain without − gain with weight decay", parts,
                               "larger without weight decay", "larger with weight decay"))
        else:
            out.append(_worded(f"the max-pool's effect on TrAct's gain, {where[setting]}",
                               "gain with − gain without the max-pool", parts,
                               "larger with the max-pool", "larger without the max-pool"))
    for (pool, a, b), parts in weight_decay_user_comparisons(src).items():
        out.append(_worded(f"{a} vs {b}, {where[pool]}", f"{a} − {b}", parts, f"{a} better", f"{b} better"))
    return out


WHITENING = (  # (label in the tables, experiment, method label): the whitening comparison's five variants
    ("baseline", "fig3-sgd", "baseline"),
    ("TrAct", "fig3-sgd", "tract-l0.1"),
    ("whitened, frozen", "whiten-frozen-sgd", "baseline"),
    ("whitened, trained", "whiten-sgd", "baseline"),
    ("whitened + TrAct", "whiten-sgd", "tract-l0.1"),
)


def whitening_comparisons(src: Source) -> dict:
    """{budget: {(a, b): paired a − b}} for the questions the whitening comparison asks, where both were run."""
    questions = (("TrAct", "whitened, frozen"), ("TrAct", "whitened, trained"), ("whitened + TrAct", "TrAct"),
                 ("whitened + TrAct", "whitened, trained"), ("whitened, frozen", "baseline"))
    out = {}
    for b in _budgets(src, [name for _, name, _ in WHITENING[2:]]):
        got = {label: src.top1(name, b, method) for label, name, method in WHITENING}
        pairs = {(x, y): paired(got[x], got[y]) for x, y in questions if got[x] and got[y]}
        if pairs:
            out[b] = pairs
    return out


def whitening_claims(src: Source) -> list:
    """Not in the paper: TrAct (whitened gradient) against airbench's whitened first layer, and both together."""
    out = []
    for b, pairs in whitening_comparisons(src).items():
        for (x, y), p in pairs.items():  # no claim to reproduce: the verdict names the better one, if any
            word = {1: f"{x} better", -1: f"{y} better", 0: "no clear difference"}[p.side()]
            out.append(Claim(f"not in the paper: {x} vs {y} (ResNet, {OUR_VARIANT}, SGD, {b} ep)",
                             "not in the paper (airbench's patch-whitened first layer)",
                             f"{x} − {y}, points: {p.text()}", word, (p,)))
    return out


def zoo_comparisons(src: Source, models) -> dict:
    """{model: {"top1": paired TrAct − baseline, "top5": the same (where stored), "short": TrAct at 2/3 of the
    budget − the baseline at the whole budget}} over the zoo's models that were run."""
    out = {}
    for m in models:
        name, short = f"zoo-{m}", f"zoo-{m}-two-thirds"
        budgets = src.budgets(name)
        if not budgets:
            continue
        b = budgets[-1]
        base, tr = src.top1(name, b, "baseline"), src.top1(name, b, "tract-l0.1")
        if not (base and tr):
            continue
        row = {"budget": b, "top1": paired(tr, base)}
        b5, t5 = (src.top1(name, b, label, "final_top5") for label in ("baseline", "tract-l0.1"))
        if b5 and t5:
            row["top5"] = paired(t5, b5)
        sb = src.budgets(short)
        if sb and src.top1(short, sb[-1], "tract-l0.1"):
            row["short"] = (sb[-1], paired(src.top1(short, sb[-1], "tract-l0.1"), base))
        out[m] = row
    return out


def zoo_claims(src: Source, models) -> list:
    rows = zoo_comparisons(src, models)
    if not rows:
        return []
    gains = [r["top1"].mean for r in rows.values()]
    wins = sum(g > 0 for g in gains)
    wins5 = [r["top5"].mean > 0 for r in rows.values() if "top5" in r]
    across, gain = across_models({m: r["top1"] for m, r in rows.items()})
    out = [Claim(f"architecture sweep: TrAct better per model ({len(rows)} model{'s' * (len(rows) != 1)}, CIFAR-10)",
                 "Table 1/6 (36 CIFAR-100 models, 200 ep): TrAct better on 33/36 (top-1), 34/36 (top-5); mean "
                 "top-1 +0.49",
                 f"TrAct better on {wins}/{len(rows)} (top-1)"
                 + (f", {sum(wins5)}/{len(wins5)} (top-5)" if wins5 else "")
                 + f"; mean top-1 gain {gain} points over the models",
                 verdict([across]), tuple(r["top1"] for r in rows.values()))]
    shorts = {m: r["short"][1] for m, r in rows.items() if "short" in r}
    if shorts:
        across, gain = across_models(shorts)
        out.append(Claim("architecture sweep: TrAct at 2/3 of the budget vs the baseline at the whole",
                         "Table 7: TrAct@133 ≈ baseline@200 (mean top-1 75.94 vs 75.90)",
                         f"TrAct@2/3 − baseline@whole, mean over {len(shorts)} model{'s' * (len(shorts) != 1)}: "
                         f"{gain} points", verdict([across]), tuple(shorts.values())))
    return out


def across_models(per_model: dict) -> tuple:
    """(Paired, its text) of the models' mean differences taken as a sample (one value per model, n − 1
    degrees of freedom): the sweep's verdicts answer "on average across architectures", and the per-model
    intervals are counted beside them."""
    across = Paired(tuple(per_model), tuple(p.mean for p in per_model.values()))
    return across, across.text() if across.n >= 2 else f"{across.mean:+.2f} (1 model, no interval)"


def all_claims(src: Source, *, titles: dict, ablation_budget: int, zoo_models=()) -> list:
    """Every claim row that the collected runs support, in the order of the paper."""
    rows = [
        curve_claim(src, "fig3-sgd", titles.get("fig3-sgd", "fig3-sgd"), FIG3_SGD),
        curve_claim(src, ("fig3-sgd-authors", "fig3-sgd-authors-32"),
                    titles.get("fig3-sgd-authors", "fig3-sgd-authors"), FIG3_SGD),
        curve_claim(src, "fig3-adam", titles.get("fig3-adam", "fig3-adam"), FIG3_ADAM),
        curve_claim(src, "fig3-adam-authors", titles.get("fig3-adam-authors", "fig3-adam-authors"), FIG3_ADAM),
        curve_claim(src, ("fig4-vit", "fig4-vit-lam"), titles.get("fig4-vit", "fig4-vit"),
                    "Fig. 4 (ViT CIFAR-10): TrAct better for all λ; TrAct@200 ≈ baseline@400 (2×)"),
        curve_claim(src, "gpu-resnet18", titles.get("gpu-resnet18", "gpu-resnet18"), FIG3_SGD_LR),
        curve_claim(src, "gpu-vit", titles.get("gpu-vit", "gpu-vit"),
                    "Fig. 4 (ViT CIFAR-10, hidden 384, 7 layers): TrAct better for all λ"),
        # the paper's own protocols on the GPU (TrAct@100 against the baseline at 100 and, for SGD, 200 epochs)
        curve_claim(src, ("paper-fig3-sgd", "paper-fig3-sgd-200"), titles.get("paper-fig3-sgd", "paper-fig3-sgd"),
                    FIG3_SGD),
        curve_claim(src, "paper-fig4-vit", titles.get("paper-fig4-vit", "paper-fig4-vit"),
                    "Fig. 4 (ViT CIFAR-10): TrAct better for all λ; TrAct@200 ≈ baseline@400 (2×)"),
        lam_sweep_claim(src),
        lam_trend_claim(src, "fig3-sgd", f"ResNet, SGD, {OUR_VARIANT}"),
        lam_trend_claim(src, ("fig4-vit", "fig4-vit-lam"), "ViT"),
        *lam_one_rows(src),
        *ablation_claims(src, ablation_budget),
        first_layer_sgd_claim(src, ablation_budget),
        *weight_decay_pool_claims(src),
        *whitening_claims(src),
        *zoo_claims(src, zoo_models),
    ]
    return [r for r in rows if r is not None]


def markdown(claims: Sequence[Claim]) -> list:
    if not claims:
        return []
    return (["| claim | the paper | measured here (paired per seed: mean [95 % t interval]) | verdict |",
             "|---|---|---|---|"] + [f"| {' | '.join(c.row())} |" for c in claims]
            + ["", "Verdict (from the 95 % t intervals of the per-seed paired differences, n − 1 degrees of freedom): "
                   "*reproduced* = every interval entirely on the claimed side of 0; *not reproduced* = some interval "
                   "entirely on the other side; *inconclusive* = otherwise, and always with fewer than 2 seeds. The "
                   "architecture sweep's verdict takes each model's mean difference as one value (n = models).", ""])
