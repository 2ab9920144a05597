"""The benchmark report's figures: grouped bar plots, the λ-sweep curve and paired gains (matplotlib, Agg backend).
A figure drawn across experiments goes to results/figures/ (`across`); one of a single experiment into its folder;
a benchmark's beside its JSON."""
from __future__ import annotations

import os

from trainact.harness.plots import pyplot

FIGURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "figures")


def across(file: str, alt: str) -> tuple[str, str]:
    """(where a figure drawn across experiments is written, its Markdown image as BENCHMARKS.md shows it)."""
    return os.path.join(FIGURES, file), f"![{alt}](benchmarks/results/figures/{file})"


def bar_plot(path: str, groups: list, series: list, values: dict, *, ylabel: str, title: str = "",
             errors: dict = None, percent: bool = False, zoom: bool = False) -> None:
    """Grouped bars: values[(group, series)] (missing pairs are left out), optional ± errors.

    `zoom`: the y axis spans the data (± errors) instead of starting at 0, so differences of a point or two show;
    the axis label says so."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) * max(1, len(series)) / 2 + 2), 3.8))
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        ys = [values.get((group, name)) for group in groups]
        keep = [(x, y, (errors or {}).get((group, name), 0)) for x, y, group in zip(xs, ys, groups) if y is not None]
        if not keep:
            continue
        ax.bar([k[0] for k in keep], [k[1] for k in keep], width, label=name,
               **({"yerr": [k[2] for k in keep], "capsize": 3} if errors else {}))
        for x, y, e in keep:  # above the error bar
            ax.annotate(f"{y:+.0%}" if percent else f"{y:.1f}", (x, y + (e if y >= 0 else 0)),
                        textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=7)
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    if zoom and values:
        lo = min(v - (errors or {}).get(k, 0) for k, v in values.items())
        hi = max(v + (errors or {}).get(k, 0) for k, v in values.items())
        pad = max(1.0, 0.4 * (hi - lo))
        ax.set_ylim(lo - pad, hi + pad)
        ylabel += " (axis cut)"
    ax.set_ylabel(ylabel)
    if percent:
        ax.yaxis.set_major_formatter(lambda v, _: f"{v:+.0%}")
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def lam_sweep_plot(summary: dict, path: str) -> None:
    plt = pyplot()
    rows = sorted((r for r in summary["results"] if r["method"] == "tract"), key=lambda r: r["lam"])
    base = next(r for r in summary["results"] if r["method"] == "baseline")
    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.errorbar([r["lam"] for r in rows], [r["top1"]["mean"] for r in rows],
                yerr=[r["top1"]["std"] or 0 for r in rows], marker="o", capsize=3, label="TrAct")
    m, sd = base["top1"]["mean"], base["top1"]["std"] or 0
    ax.axhline(m, color="gray", ls="--", label="baseline")
    ax.axhspan(m - sd, m + sd, color="gray", alpha=0.2, lw=0)
    ax.set_xscale("log")
    ax.set_xlabel("λ")
    ax.set_ylabel("final test top-1 (%), mean ± std")
    ax.set_title(f"budget {base['budget']} epochs, {base['top1']['n']} seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def paired_gain_plot(path: str, series: dict, *, title: str, xlabel: str = "TrAct's budget B (epochs)") -> None:
    """Paired TrAct − baseline differences against the budget (or another positive x: `xlabel` says which), one line
    per series, with 95 % t intervals, on a log axis.

    series: {label: [(x, claims.Paired), ...]}; a Paired without an interval (one seed) is drawn bare."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for i, (label, points) in enumerate(series.items()):
        points = sorted(points, key=lambda bp: bp[0])
        xs = [b * (1 + 0.03 * (i - (len(series) - 1) / 2)) for b, _ in points]  # side by side on the log axis
        ys = [p.mean for _, p in points]
        err = [[p.mean - p.interval[0] if p.interval else 0 for _, p in points],
               [p.interval[1] - p.mean if p.interval else 0 for _, p in points]]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=label)
    ax.axhline(0, color="gray", lw=1)
    ax.set_xscale("log", base=2)
    budgets = sorted({b for points in series.values() for b, _ in points})
    ax.set_xticks(budgets, [f"{b:g}" for b in budgets])
    ax.set_xlabel(xlabel)
    ax.set_ylabel("TrAct − baseline, points (95 % CI)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
