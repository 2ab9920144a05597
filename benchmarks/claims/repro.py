"""Reproducibility (`Repro`): the same seeds trained again on another machine of the same kind, against the
collected runs; what changes per seed, and whether TrAct's paired gain holds."""
from __future__ import annotations

from dataclasses import dataclass

from ..evidence import Kind, entries
from ..experiment_tables import run_machine
from .core import difference, paired


@dataclass(frozen=True)
class Repro(Kind):
    """The same seeds as experiment `of`, trained again on another machine of the same kind."""

    of: str

    @classmethod
    def section(cls, src, registry: dict) -> list[str]:
        out = []
        for again, item in entries(registry, Repro):
            out += _reproducibility(src, item.of, again)
        return out


def _reproducibility(src, then: str, again: str) -> list[str]:
    (budget,) = src.budgets(again) or [None]
    if budget is None:
        return []
    cols = {(run, label): src.top1(name, budget, label) for run, name in (("then", then), ("again", again))
            for label in ("baseline", "tract-l0.1")}
    seeds = sorted(set.intersection(*(set(v) for v in cols.values())))
    if not seeds:
        return []
    lines = ["### Reproducibility: the same seeds on another machine of the same kind", "",
             f"`{again}` trains {then}'s {budget}-epoch baseline and TrAct (λ = 0.1) runs again from the same seeds "
             "(same initial weights, same data order), later and on another machine of the same kind. "
             + "".join(f"{which}: {run_machine(got[0])}. " for which, got in
                       (("Then", src.experiment(then)), ("Again", src.experiment(again))) if got)
             + "CPU kernels need not give bit-identical results across machines (another CPU type, torch build or "
             "thread count changes the order of floating-point sums), so the accuracy of one seed may differ; what "
             "should hold is the paired TrAct − baseline difference. Final test top-1 %:", "",
             "| seed | baseline then | baseline again | TrAct then | TrAct again | TrAct − baseline then | again |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in seeds:
        v = {k: col[s] for k, col in cols.items()}
        lines.append(f"| {s} | {v[('then', 'baseline')]:.2f} | {v[('again', 'baseline')]:.2f} | "
                     f"{v[('then', 'tract-l0.1')]:.2f} | {v[('again', 'tract-l0.1')]:.2f} | "
                     f"{v[('then', 'tract-l0.1')] - v[('then', 'baseline')]:+.2f} | "
                     f"{v[('again', 'tract-l0.1')] - v[('again', 'baseline')]:+.2f} |")
    moved = {label: paired(cols[("again", label)], cols[("then", label)]) for label in ("baseline", "tract-l0.1")}
    gain = {run: paired(cols[(run, "tract-l0.1")], cols[(run, "baseline")]) for run in ("then", "again")}
    shift = max(abs(d) for p in moved.values() for d in p.diffs)
    verdict = ("Here the re-trained runs reproduced the collected ones bit for bit (same CPU type, torch build and "
               "thread count; the epoch times differ, the losses do not): a different result on such a machine would "
               "be a bug. On another CPU type, torch build or thread count the accuracy of a seed may differ (not a "
               "bug, and not measured here): compare paired differences, not single runs." if shift == 0 else
               "Expect run-to-run differences of this size when re-training a collected run elsewhere; they are not "
               "a bug.")
    lines += ["", f"Same seed, again − then (points [95 % t interval]): baseline {moved['baseline'].text()}, TrAct "
                  f"{moved['tract-l0.1'].text()}; the largest single change {shift:.2f} points. TrAct − baseline: "
                  f"then {gain['then'].text()}, again {gain['again'].text()}; its change "
                  f"{difference(gain['again'], gain['then']).text()}. " + verdict, ""]
    return lines
