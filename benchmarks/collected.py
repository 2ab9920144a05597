"""The one reader of collected runs: a comparison folder as `python -m benchmarks.experiments collect` writes it
(benchmarks/results/experiments/NAME/: config.json, summary.json, and b*/METHOD/lr*/s*/summary.json per run).
The claims, the tables and the runner's plan read runs only through here."""
from __future__ import annotations

import glob
import json
import os
from typing import Optional


def runs(folder) -> list[dict]:
    """The summary.json of every finished run under a comparison folder, in path order."""
    out = []
    for path in sorted(glob.glob(os.path.join(str(folder), "b*", "*", "lr*", "s*", "summary.json"))):
        with open(path) as f:
            s = json.load(f)
        if s.get("completed"):
            out.append(s)
    return out


class Collected:
    """The collected experiments under `root` (benchmarks/results/experiments), each file read once."""

    def __init__(self, root):
        self.root = str(root)
        self._files: dict = {}

    def folder(self, name: str) -> str:
        return os.path.join(self.root, name)

    def _json(self, name: str, file: str) -> Optional[dict]:
        if (name, file) not in self._files:
            path = os.path.join(self.root, name, file)
            self._files[(name, file)] = None
            if os.path.exists(path):
                with open(path) as f:
                    self._files[(name, file)] = json.load(f)
        return self._files[(name, file)]

    def summary(self, name: str) -> Optional[dict]:
        return self._json(name, "summary.json")

    def experiment(self, name: str) -> Optional[tuple]:
        """(config.json, summary.json) of a collected experiment, or None before it is collected."""
        summary = self.summary(name)
        return None if summary is None else (self._json(name, "config.json"), summary)

    def runs(self, name: str) -> list[dict]:
        """Every collected run's summary.json, the comparison's selected lrs or not."""
        return runs(self.folder(name))

    def budgets(self, name: str) -> list:
        """The budgets of an experiment with results (sorted); [] if it was never collected."""
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
        """The lr a method's runs used at a budget (the selected one); None where it has no results."""
        row = self._row(name, budget, label)
        return None if row is None else row["lr"]

    def top1(self, name: str, budget: int, label: str, key: str = "final_top1") -> dict:
        """{seed: the run summary's `key`} (final test top-1 %, or final_top5 where the runs have it) of one method
        (label: baseline, tract-l0.1, ...) at its selected lr."""
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
