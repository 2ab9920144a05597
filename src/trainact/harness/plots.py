"""PNG plots of a comparison, made from the saved JSON only (so `trainact report DIR` can rebuild them).

- accuracy_vs_epoch.png: test top-1 vs epoch, one panel per budget, per method the mean over seeds with a
  min-max band.
- accuracy_vs_budget.png: final test top-1 vs budget, mean ± std over seeds, per method.
- speedup.png: for each TrAct budget, the baseline budget it matches (interpolated; "≥" points drawn as
  upward triangles at their lower bound, "<" points as downward triangles at their upper bound), with y = x.

matplotlib is imported lazily with the Agg backend: it is only needed when plots are written.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Sequence

from trainact.harness.results import RunResult

PLOT_FILES = ("accuracy_vs_epoch.png", "accuracy_vs_budget.png", "speedup.png")


def pyplot():
    """matplotlib.pyplot with the Agg backend (imported only when a plot is written)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colors(labels: Sequence[str]) -> dict:
    cycle = ["tab:gray", "tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    ordered = sorted(labels, key=lambda l: (l != "baseline", l))
    return {l: cycle[i % len(cycle)] for i, l in enumerate(ordered)}


def make_plots(out_dir, analysis: dict, runs: Sequence[RunResult]) -> list[Path]:
    """Write the three PNGs into `out_dir`; returns their paths."""
    plt = pyplot()
    out_dir = Path(out_dir)
    selected = {(r["label"], r["budget"]): r["lr"] for r in analysis["results"]}
    labels = sorted({l for l, _ in selected}, key=lambda l: (l != "baseline", l))
    colors = _colors(labels)
    budgets = sorted({b for _, b in selected})
    figures = (("accuracy_vs_epoch.png", _accuracy_vs_epoch(plt, runs, selected, labels, colors, budgets)),
               ("accuracy_vs_budget.png", _accuracy_vs_budget(plt, analysis, labels, colors, budgets)),
               ("speedup.png", _speedup(plt, analysis, labels, colors, budgets)))
    return [_save(fig, out_dir / name, plt) for name, fig in figures]


def _accuracy_vs_epoch(plt, runs, selected: dict, labels: list, colors: dict, budgets: list):
    """Test top-1 against the epoch, one panel per budget (mean over seeds, min-max band)."""
    from matplotlib.ticker import MaxNLocator

    ncols = max(1, len(budgets))
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.6), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], budgets):
        for label in labels:
            curves = [r.metrics for r in runs if r.spec.label == label and r.spec.budget == b
                      and r.spec.lr == selected.get((label, b))]
            series = defaultdict(list)  # epoch -> top-1 of each seed
            for m in curves:
                for row in m:
                    if row.get("test_top1") is not None:
                        series[row["epoch"]].append(row["test_top1"])
            if not series:
                continue
            ep = sorted(series)
            mean = [sum(series[e]) / len(series[e]) for e in ep]
            ax.plot(ep, mean, marker="o", ms=3, color=colors[label], label=f"{label} (n={len(curves)})")
            if len(curves) > 1:
                ax.fill_between(ep, [min(series[e]) for e in ep], [max(series[e]) for e in ep],
                                color=colors[label], alpha=0.2, lw=0)
        ax.set_title(f"budget {b:g} epoch{'' if b == 1 else 's'}")
        ax.set_xlabel("epoch")
        ax.set_xlim(0, b * 1.04 + 0.25)  # the whole budget, also where it is a single evaluated epoch
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test top-1 (%)")
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _accuracy_vs_budget(plt, analysis: dict, labels: list, colors: dict, budgets: list):
    """Final top-1 against the budget (mean ± std over seeds)."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for label in labels:
        rows = sorted((r for r in analysis["results"] if r["label"] == label), key=lambda r: r["budget"])
        if not rows:
            continue
        ax.errorbar([r["budget"] for r in rows], [r["top1"]["mean"] for r in rows],
                    yerr=[r["top1"]["std"] or 0.0 for r in rows], marker="o", capsize=3, color=colors[label],
                    label=label)
    ax.set_xscale("log", base=2)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.set_xlabel("budget (epochs)")
    ax.set_ylabel("final test top-1 (%), mean ± std")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _speedup(plt, analysis: dict, labels: list, colors: dict, budgets: list):
    """The matched baseline budget against the TrAct budget (▲ at least, ▼ less than)."""
    fig, ax = plt.subplots(figsize=(5, 3.8))
    lo, hi = (min(budgets), max(budgets)) if budgets else (1, 2)
    for s in analysis["speedups"]:
        t = s["tract_budget"]
        c = colors.get(s["label"], "k")
        if s["kind"] == "baseline_at_chance":  # no measurement to draw (the table's note says why)
            continue
        if s["kind"] == "interpolated":
            ax.plot(t, s["matched_baseline_epochs"], "o", color=c)
            ax.annotate(s["display"], (t, s["matched_baseline_epochs"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=8)
            hi = max(hi, s["matched_baseline_epochs"])
        else:
            y = s["bound"] * t
            ax.plot(t, y, "^" if s["kind"] == "at_least" else "v", color=c)
            ax.annotate(s["display"], (t, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
            hi, lo = max(hi, y), min(lo, y)
    for label in labels:
        if label != "baseline" and any(s["label"] == label for s in analysis["speedups"]):
            ax.plot([], [], "o", color=colors[label], label=label)
    ax.plot([lo, hi], [lo, hi], "--", color="gray", lw=1, label="y = x (no speed-up)")
    ax.margins(0.15)
    ax.set_xlabel("TrAct budget (epochs)")
    ax.set_ylabel("baseline epochs to the same accuracy")
    ax.set_title("speed-up (▲ at least, ▼ less than)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _save(fig, path: Path, plt) -> Path:
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    return path
