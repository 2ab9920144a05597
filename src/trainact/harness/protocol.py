"""The paper's protocol: which runs a `CompareConfig` expands into.

- Every budget (number of epochs) is its own run with its own schedule.
- The baseline is run for every lr of the grid; per budget, the lr with the highest mean final test top-1 over
  the grid seeds is the baseline's best lr (ties: the smaller lr).
- TrAct is run with that lr only, for each lambda: no re-tuning for TrAct.

With a single lr there is no grid stage. Run ids are paths below the output directory:
`b{budget}/baseline/lr{lr}/s{seed}` and `b{budget}/tract-l{lam}/lr{lr}/s{seed}`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, Optional

from trainact.harness.config import CompareConfig


def fmt_num(x: float) -> str:
    """Shortest exact-enough text for an lr or a lambda in run ids and tables (0.08, 1, 0.001, 1e-05)."""
    return format(float(x), ".6g")


@dataclass(frozen=True)
class RunSpec:
    """One training run: a method (baseline or TrAct with `lam`) for `budget` epochs at `lr` from `seed`."""

    budget: int
    method: str  # "baseline" | "tract"
    lr: float
    seed: int
    lam: Optional[float] = None  # TrAct's λ, None for the baseline

    @property
    def label(self) -> str:
        """The method label used in tables and plots: `baseline` or `tract-l0.1`."""
        return "baseline" if self.method == "baseline" else f"tract-l{fmt_num(self.lam)}"

    @property
    def run_id(self) -> str:
        return f"b{self.budget}/{self.label}/lr{fmt_num(self.lr)}/s{self.seed}"

    def to_dict(self) -> dict:
        return {"budget": self.budget, "method": self.method, "lam": self.lam, "lr": self.lr, "seed": self.seed,
                "label": self.label, "run_id": self.run_id}

    @classmethod
    def from_dict(cls, d: Mapping) -> "RunSpec":
        return cls(budget=int(d["budget"]), method=d["method"], lr=float(d["lr"]), seed=int(d["seed"]),
                   lam=None if d.get("lam") is None else float(d["lam"]))


def needs_grid(cfg: CompareConfig) -> bool:
    return len(cfg.lrs) > 1


def grid_runs(cfg: CompareConfig) -> list[RunSpec]:
    """Stage 1: the baseline at every lr of the grid, with the grid seeds (empty when there is one lr)."""
    if not needs_grid(cfg):
        return []
    return [RunSpec(b, "baseline", lr, s) for b in cfg.budgets for lr in cfg.lrs for s in cfg.grid_seeds]


def select_best_lr(final_top1: Mapping[float, Iterable[float]]) -> float:
    """The paper's rule for one budget: {lr: final top-1 of each seed} -> the lr with the highest mean.

    Ties go to the smaller lr. Every lr must have at least one result.
    """
    if not final_top1:
        raise ValueError("no baseline results to select an lr from")
    best_lr, best_mean = None, None
    for lr in sorted(final_top1):
        accs = list(final_top1[lr])
        if not accs:
            raise ValueError(f"no baseline results for lr={lr!r}")
        mean = sum(accs) / len(accs)
        if best_mean is None or mean > best_mean:  # strictly better: ties keep the smaller lr
            best_lr, best_mean = lr, mean
    return best_lr


def best_lrs(cfg: CompareConfig, results: Mapping[RunSpec, float]) -> dict[int, float]:
    """{budget: the baseline's best lr}, from {RunSpec: final top-1} of (at least) the grid runs."""
    if not needs_grid(cfg):
        return {b: cfg.lrs[0] for b in cfg.budgets}
    out = {}
    for b in cfg.budgets:
        per_lr = {lr: [results[RunSpec(b, "baseline", lr, s)] for s in cfg.grid_seeds] for lr in cfg.lrs}
        out[b] = select_best_lr(per_lr)
    return out


def final_runs(cfg: CompareConfig, best: Mapping[int, float]) -> list[RunSpec]:
    """Stage 2: at each budget's best lr, the baseline for all seeds and TrAct for every lambda and seed.

    Baseline runs of the grid are included again (they are skipped as complete when they are run).
    """
    runs = []
    for b in cfg.budgets:
        lr = best[b]
        for s in cfg.seeds:
            if "baseline" in cfg.methods:
                runs.append(RunSpec(b, "baseline", lr, s))
            if "tract" in cfg.methods:
                runs.extend(RunSpec(b, "tract", lr, s, lam=lam) for lam in cfg.lams)
    return runs


def all_runs(cfg: CompareConfig, best: Mapping[int, float]) -> list[RunSpec]:
    """Every run of the experiment once the best lrs are known, grid first, without duplicates."""
    seen, out = set(), []
    for r in grid_runs(cfg) + final_runs(cfg, best):
        if r not in seen:
            seen.add(r)
            out.append(r)
    return out
