"""The statistics every report kind shares: paired per-seed differences with their 95 % t intervals, the three-way
verdict, a claim row (`Claim`) and the claims table; and what a kind reads of the collected runs (`Source`)."""
from __future__ import annotations

import math
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


class Source(Protocol):
    """What the report kinds read of the collected runs: collected.Collected, or any object with these methods."""

    def top1(self, name: str, budget: int, label: str, key: str = "final_top1") -> dict:
        """{seed: final test top-1 %} (or `key` of the run summary, e.g. final_top5) of one method (label:
        baseline, tract-l0.1, ...) at its selected lr."""

    def budgets(self, name: str) -> list:
        """The budgets of an experiment with results (sorted); [] if it was never collected."""

    def lr(self, name: str, budget: int, label: str) -> Optional[float]:
        """The lr a method's runs used at a budget (the selected one); None where it has no results."""

    def experiment(self, name: str) -> Optional[tuple]:
        """(config.json, summary.json) of a collected experiment, or None."""

    def runs(self, name: str) -> list:
        """Every collected run's summary.json."""

    def folder(self, name: str) -> str:
        """The experiment's collected folder (where its own plots go)."""


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


def make_claim(claim: str, paper: str, measured: str, parts: Sequence[Paired], sign: int = 1) -> Claim:
    return Claim(claim, paper, measured, verdict(parts, sign), tuple(parts))


PAPER_LAMS = (0.05, 0.1, 0.2)  # the paper's λ grid (Fig. 3, Fig. 4)


def label(lam: float) -> str:
    """The method label of TrAct at λ = `lam` (tract-l0.1)."""
    from trainact.harness.protocol import fmt_num

    return f"tract-l{fmt_num(lam)}"


def _names(name) -> tuple:
    return (name,) if isinstance(name, str) else tuple(name)


def top1_of(src: Source, names, budget: int, label: str) -> dict:
    """{seed: top-1} of `label` at `budget` over the experiments `names` (a seed two of them share is the same
    reused run: the first one's value is taken), so a joining experiment can add seeds to a budget."""
    out: dict = {}
    for n in reversed(_names(names)):
        out.update(src.top1(n, budget, label))
    return dict(sorted(out.items()))


def budgets_of(src: Source, names) -> list:
    """The budgets any of the experiments `names` has results for (sorted)."""
    return sorted({b for n in _names(names) for b in src.budgets(n)})


def per_budget(parts: dict) -> str:
    """"1 ep: …; 2 ep: …" of {budget: Paired}."""
    return "; ".join(f"{b} ep: {p.text()}" for b, p in parts.items())


def across_models(per_model: dict) -> tuple:
    """(Paired, its text) of the models' mean differences taken as a sample (one value per model, n − 1
    degrees of freedom): the sweep's verdicts answer "on average across architectures", and the per-model
    intervals are counted beside them."""
    across = Paired(tuple(per_model), tuple(p.mean for p in per_model.values()))
    return across, across.text() if across.n >= 2 else f"{across.mean:+.2f} (1 model, no interval)"



def markdown(claims: Sequence[Claim]) -> list:
    if not claims:
        return []
    return (["| claim | the paper | measured here (paired per seed: mean [95 % t interval]) | verdict |",
             "|---|---|---|---|"] + [f"| {' | '.join(c.row())} |" for c in claims]
            + ["", "Verdict (from the 95 % t intervals of the per-seed paired differences, n − 1 degrees of freedom): "
                   "*reproduced* = every interval entirely on the claimed side of 0; *not reproduced* = some interval "
                   "entirely on the other side; *inconclusive* = otherwise, and always with fewer than 2 seeds. The "
                   "architecture sweep's verdict takes each model's mean difference as one value (n = models).", ""])
