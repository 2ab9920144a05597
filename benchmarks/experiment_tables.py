"""Markdown pieces the report kinds (claims/) share, and the two BENCHMARKS.md parts that belong to no kind: the note
on scale and the wall time of every collected run. Everything is read from the collected runs (`src`,
collected.Collected) and the registry passed in."""
from __future__ import annotations

import os

from trainact.harness.results import pm, stats

from .claims.core import paired
from .common import describe
from .evidence import Scale, entries


def run_machine(top: dict) -> str:
    """Where and on what data a collected experiment ran (its config.json)."""
    e, c = top["environment"], top["config"]
    d = e.get("dataset", {})
    return (f"{describe(e)}; data: {d.get('name')}, "
            f"{d.get('train_size')} training images" + (" (class-balanced subset)" if c.get("train_subset") else "")
            + f", {d.get('test_size')} test images")


def plots(src, name: str, files=("accuracy_vs_budget.png", "speedup.png", "accuracy_vs_epoch.png")) -> str:
    """Markdown images of an experiment's plots (paths relative to the repository root: README, BENCHMARKS)."""
    return " ".join(f"![{name} {f[:-4]}](benchmarks/results/experiments/{name}/{f})" for f in files
                    if os.path.exists(os.path.join(src.folder(name), f)))


def by_label(summary: dict, budget=None) -> dict:
    """A summary's result rows by method label (at one budget, or all)."""
    return {r["label"]: r for r in summary["results"] if budget is None or r["budget"] == budget}


def not_yet_run(name: str) -> str:
    return f"not yet run: `python -m benchmarks.experiments run {name}`"


def half_width(p) -> float:
    """A paired difference's 95 % interval half-width (0 without an interval): its error bar."""
    return (p.interval[1] - p.interval[0]) / 2 if p.interval else 0


def accuracy_rows(src, name: str, budgets, first: str) -> list[str]:
    """Table rows `| first | budget | seeds | baseline | TrAct | TrAct − baseline |` of one experiment, or one row
    saying it has not run yet."""
    rows = []
    for b in budgets:
        base, tr = src.top1(name, b, "baseline"), src.top1(name, b, "tract-l0.1")
        if base and tr:
            rows.append(f"| {first} | {b} | {len(paired(tr, base).seeds)} | {pm(stats(list(base.values())))} | "
                        f"{pm(stats(list(tr.values())))} | {paired(tr, base).text()} |")
    return rows or [f"| {first} | — | 0 | {not_yet_run(name)} | | |"]


def scale_note(src, registry: dict) -> str:
    """How far the CPU-scale runs are from the paper's (read from the collected configurations of the experiments
    registered with `Scale("resnet")` and `Scale("vit")`)."""
    roles = {item.role: name for name, item in reversed(entries(registry, Scale))}
    resnet, vit = (src.experiment(roles[r]) if r in roles else None for r in ("resnet", "vit"))
    if resnet is None:
        return ""
    c = resnet[0]["config"]
    text = (f"Scale: the paper trains for 100–800 epochs on all 50 000 CIFAR training images (ResNet-18 at width "
            f"64, ViT-CIFAR at hidden size 384); here the budgets are {', '.join(map(str, c['budgets']))} epochs on "
            f"{c['train_subset'] or 'all'} images, the ResNet at width {c['width']}")
    if vit is not None:
        text += f", the ViT at hidden size {vit[0]['config']['dim']}"
        longer = [b for b in vit[0]["config"]["budgets"] if b > max(c["budgets"])]
        if longer:
            text += f" (the ViT also at {', '.join(map(str, longer))} epochs)"
    return text + (". These runs test the direction and rough size of TrAct's effect in short training, not the "
                   "paper's numbers.")


def wall_time_section(src, registry: dict) -> list[str]:
    """Training wall time per epoch of every collected run, TrAct against the baseline, per experiment."""
    lines = ["### Wall time per epoch of the runs above", "",
             "Mean over every finished run of an experiment (all budgets, lrs and seeds) of its training time / "
             "epochs, evaluation excluded. The runs shared two cores with whatever else ran on the machine, so "
             "differences of a few percent are noise; the controlled overhead measurement is the one above.", "",
             "| experiment | baseline runs | baseline s/epoch | TrAct runs | TrAct s/epoch | TrAct / baseline |",
             "|---|---:|---:|---:|---:|---:|"]
    found = False
    for name in registry:
        times = {"baseline": [], "tract": []}
        for s in src.runs(name):
            times[s["run"]["method"]].append(s["seconds_per_epoch"])
        if not times["baseline"] and not times["tract"]:
            continue
        found = True
        mean = {k: sum(v) / len(v) if v else None for k, v in times.items()}
        ratio = f"{mean['tract'] / mean['baseline']:.3f}" if mean["baseline"] and mean["tract"] else "—"
        lines.append(f"| {name} | {len(times['baseline'])} | "
                     f"{'—' if mean['baseline'] is None else format(mean['baseline'], '.1f')} | {len(times['tract'])} | "
                     f"{'—' if mean['tract'] is None else format(mean['tract'], '.1f')} | {ratio} |")
    return lines + [""] if found else []
