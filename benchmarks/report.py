"""Write BENCHMARKS.md from the JSON files in benchmarks/results/ (no number is typed by hand).

    python benchmarks/report.py            # rewrites BENCHMARKS.md at the repository root
"""
from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from experiments import ABLATION_BUDGET, EXPERIMENTS  # noqa: E402

EXPERIMENT_TITLES = {name: e["title"] for name, e in EXPERIMENTS.items()}

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
TARGETS = {  # the core issue's targets, shown beside the measurements
    "stem": "trainact extra <= 1/2 of torch-tract's extra",
    "deit-s": "trainact extra <= 1/2 of torch-tract's extra",
    "resnet18": "trainact <= +0.5 % per training step",
}
CASE_TEXT = {
    "stem": "7x7/2 stem, Conv2d(3, 64, padding 3), batch 32, 224 px, forward + backward",
    "deit-s": "DeiT-S patch embedding, Conv2d(3, 384, 16, stride 16), batch 64, 224 px, forward + backward",
    "resnet18": "CIFAR ResNet-18 training step (forward, backward, SGD), batch 128, 32 px",
    "cifar-stem": "its first layer alone, Conv2d(3, 64, 3, padding 1), batch 128, 32 px, forward + backward",
}


def load(name: str):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine(r: dict) -> str:
    return f"{r['cpu']} ({r['cpu_count']} cores, {r['torch_threads']} torch threads), torch {r['torch']}, " \
           f"Python {r['python']}, git {r['git']}, {r['date']}"


def overhead_section(r: dict) -> list[str]:
    lines = [
        "## Time overhead: plain layer vs `torch-tract` vs trainact (" + ", ".join(c["case"] for c in r["results"]) + ")",
        "",
        f"Command: `{r['command']}` (seed {r['seed']}); {machine(r)}.",
        "Each repetition runs every variant once in rotating order; overhead = median over the repetitions of "
        "(variant time / plain time of the same repetition) − 1, with its interquartile range.",
        "",
        "| case | reps | plain (ms, median) | torch-tract | trainact (IQR) | trainact extra / torch-tract extra | target |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for c in r["results"]:
        e = c["extra_over_plain"]
        ratio = c["trainact_extra_over_reference_extra"]
        iqr = c["extra_over_plain_iqr"]["trainact"]
        lines.append(
            f"| {CASE_TEXT.get(c['case'], c['case'])} | {c['reps']} | {c['median_ms']['plain']:.1f} | "
            f"{e['torch-tract']:+.2%} | {e['trainact']:+.2%} ({iqr[0]:+.2%}..{iqr[1]:+.2%}) | "
            f"{'—' if ratio is None else f'{ratio:.2f}'} | {TARGETS.get(c['case'], '')} |"
        )
        est = c.get("extra_estimated_from_first_layer")
        if est:
            lines.append(
                f"| ↳ the same step, overhead estimated as (first layer's extra time) / (step time) | | | "
                f"{est['torch-tract']:+.2%} | {est['trainact']:+.2%} | "
                f"{est['trainact'] / est['torch-tract'] if est['torch-tract'] > 0 else float('nan'):.2f} | "
                f"{TARGETS['resnet18']} |"
            )
    return lines + [""]


def memory_section(r: dict) -> list[str]:
    extra = r["extra_over_plain_MiB"]
    lines = [
        "## Peak extra memory",
        "",
        f"Command: `{r['command']}`; {r['case']}, device {r['device']}; {machine(r)}.",
        "Growth of the peak resident set during one forward + backward, each variant in fresh processes "
        "(minimum over repeats), minus the plain layer's growth.",
        "",
        "| variant | extra peak memory over the plain layer (MiB) |",
        "|---|---:|",
    ]
    for v, mib in extra.items():
        if v != "plain":
            lines.append(f"| {v} | {mib:.1f} |")
    return lines + ["", "Target: trainact <= 64 MiB beyond the plain layer.", ""]


def allreduce_section(r: dict) -> list[str]:
    lines = [
        "## DDP: the cost of the global covariance",
        "",
        f"Command: `{r['command']}`; {machine(r)}.",
        f"{r['case']}. Median step time over {r['steps']} steps after warm-up, 2 processes (gloo), "
        "each process 1 thread.",
        "",
        "| mode | median step (ms) | vs local statistics |",
        "|---|---:|---:|",
    ]
    base = r["median_ms"]["local"]
    for mode, ms in r["median_ms"].items():
        lines.append(f"| {mode} | {ms:.1f} | {ms / base - 1:+.1%} |")
    return lines + [""]


# ---------------------------------------------------------------------------------------------- experiments
COLLECTED = os.path.join(RESULTS, "experiments")
CURVES = ("fig3-sgd", "fig3-adam", "fig4-vit")  # budgets 1:2:4:8, with a speed-up per TrAct budget
README_START, README_END = "<!-- results:start (written by benchmarks/report.py) -->", "<!-- results:end -->"


def load_experiment(name: str):
    """(config.json, summary.json) of a collected experiment, or None."""
    folder = os.path.join(COLLECTED, name)
    if not os.path.exists(os.path.join(folder, "summary.json")):
        return None
    with open(os.path.join(folder, "config.json")) as f:
        top = json.load(f)
    with open(os.path.join(folder, "summary.json")) as f:
        return top, json.load(f)


def run_machine(top: dict) -> str:
    e, c = top["environment"], top["config"]
    d = e.get("dataset", {})
    return (f"{e['device_name']} ({e['cpu_count']} cores, {e['torch_threads']} torch threads), torch "
            f"{e['torch_version']}, Python {e['python']}, git {str(e.get('git_sha'))[:7]}; data: {d.get('name')}, "
            f"{d.get('train_size')} training images" + (" (class-balanced subset)" if c.get("train_subset") else "")
            + f", {d.get('test_size')} test images")


def plots(name: str, files=("accuracy_vs_budget.png", "speedup.png", "accuracy_vs_epoch.png")) -> str:
    """Markdown images of an experiment's plots (paths relative to the repository root: README, BENCHMARKS)."""
    return " ".join(f"![{name} {f[:-4]}](benchmarks/results/experiments/{name}/{f})" for f in files
                    if os.path.exists(os.path.join(COLLECTED, name, f)))


def by_label(summary: dict, budget=None) -> dict:
    return {r["label"]: r for r in summary["results"] if budget is None or r["budget"] == budget}


def pm(s: dict) -> str:
    return f"{s['mean']:.2f} ± {s['std']:.2f}" if s.get("std") is not None else f"{s['mean']:.2f}"


def speedup_line(summary: dict) -> str:
    return ", ".join(f"{s['tract_budget']:g} ep: {s['display']}" for s in summary["speedups"]) or "—"


def curve_section(name: str, loaded) -> list[str]:
    from trainact.harness.results import format_markdown

    top, summary = loaded
    return [f"### {EXPERIMENT_TITLES.get(name, name)}", "",
            f"Command: `{top['command']}` (then `python benchmarks/experiments.py collect {name}`); "
            f"{run_machine(top)}.", "",
            format_markdown(summary), "",
            f"Speed-up of TrAct per budget: {speedup_line(summary)}.", "", plots(name), ""]


def lam_sweep_plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

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


def lam_sweep_section(loaded) -> list[str]:
    top, summary = loaded
    path = os.path.join(COLLECTED, "lam-sweep", "lam_sweep.png")
    lam_sweep_plot(summary, path)
    base = by_label(summary)["baseline"]
    lines = [f"### {EXPERIMENT_TITLES['lam-sweep']}", "",
             f"Command: `{top['command']}`; {run_machine(top)}.", "",
             "| λ | seeds | test top-1 % | vs baseline (points) |", "|---:|---:|---:|---:|",
             f"| baseline | {base['top1']['n']} | {pm(base['top1'])} | |"]
    for r in sorted((r for r in summary["results"] if r["method"] == "tract"), key=lambda r: r["lam"]):
        lines.append(f"| {r['lam']:g} | {r['top1']['n']} | {pm(r['top1'])} | "
                     f"{r['top1']['mean'] - base['top1']['mean']:+.2f} |")
    return lines + ["", plots("lam-sweep", ("lam_sweep.png",)), ""]


ABLATION_ROWS = (  # (row label, experiment, TrAct-relative experiment)
    ("ViT, standardised inputs", "fig4-vit", None),
    ("ViT + patch-wise normalisation", "ablation-vit-patchnorm", None),
    ("ViT + DualPatchNorm", "ablation-vit-dualpatchnorm", None),
    ("ViT, [0,1] inputs", "ablation-vit-unit", "ablation-vit-unit-relative"),
    ("ViT, [0,255] inputs", "ablation-vit-byte", "ablation-vit-byte-relative"),
)


def ablation_section(budget: int) -> list[str]:
    lines = [f"### §4.5 ablations (ViT-CIFAR, Adam, {budget} epochs, λ = 0.1)", "",
             "Each row is its own comparison at the lr the ViT's baseline grid selected for this budget "
             "(`fig4-vit`). The scale-invariant λ (`--relative-lambda`: λ · tr(AᵀA/r)/n) is not in the paper.", "",
             "| variant | baseline top-1 % | TrAct top-1 % | TrAct − baseline | TrAct, scale-invariant λ | command |",
             "|---|---:|---:|---:|---:|---|"]
    found = False
    for label, name, rel in ABLATION_ROWS:
        loaded = load_experiment(name)
        if loaded is None:
            continue
        found = True
        rows = by_label(loaded[1], budget)
        b, t = rows.get("baseline"), rows.get("tract-l0.1")
        r_loaded = load_experiment(rel) if rel else None
        r = by_label(r_loaded[1], budget).get("tract-l0.1") if r_loaded else None
        lines.append(f"| {label} | {pm(b['top1']) if b else '—'} | {pm(t['top1']) if t else '—'} | "
                     f"{t['top1']['mean'] - b['top1']['mean']:+.2f} |" if b and t else f"| {label} | — | — | — |")
        lines[-1] += f" {pm(r['top1']) if r else '—'} | `{loaded[0]['command']}` |"
    return lines + [""] if found else []


def first_layer_sgd_section(budget: int) -> list[str]:
    adam, mixed = load_experiment("fig3-adam"), load_experiment("first-layer-sgd")
    if mixed is None:
        return []
    top = mixed[0]
    lines = [f"### {EXPERIMENT_TITLES['first-layer-sgd']}", "",
             f"Command: `{top['command']}`; {run_machine(top)}.", "",
             "| first layer | rest | seeds | test top-1 % |", "|---|---|---:|---:|"]
    if adam is not None:
        rows = by_label(adam[1], budget)
        for label, text in (("baseline", "Adam"), ("tract-l0.1", "Adam + TrAct")):
            if label in rows:
                lines.append(f"| {text} | Adam | {rows[label]['top1']['n']} | {pm(rows[label]['top1'])} |")
    rows = by_label(mixed[1], budget)
    for label, text in (("baseline", "SGD"), ("tract-l0.1", "SGD + TrAct")):
        if label in rows:
            lines.append(f"| {text} | Adam | {rows[label]['top1']['n']} | {pm(rows[label]['top1'])} |")
    return lines + [""]


def experiments_sections() -> list[str]:
    out = ["## Training experiments: the paper's claims at CPU scale", "",
           "Every table is computed from the JSON in `benchmarks/results/experiments/` (copied from the run folders "
           "by `python benchmarks/experiments.py collect`); `python benchmarks/experiments.py list` prints every "
           "command. Accuracies are the final test top-1 after the last epoch, mean ± std over seeds; `s/epoch` is "
           "the training wall time per epoch (evaluation excluded).", ""]
    for name in CURVES:
        loaded = load_experiment(name)
        if loaded is not None:
            out += curve_section(name, loaded)
    loaded = load_experiment("lam-sweep")
    if loaded is not None:
        out += lam_sweep_section(loaded)
    out += ablation_section(ABLATION_BUDGET)
    out += first_layer_sgd_section(ABLATION_BUDGET)
    return out


def readme_block() -> list[str]:
    """The README's short results section: speed-ups per experiment, with plots."""
    lines = [README_START, "", "## Results at CPU scale", "",
             "Measured by this project (commands, seeds, hardware and every table in [BENCHMARKS.md](BENCHMARKS.md)); "
             "speed-up = baseline epochs needed for TrAct's accuracy / TrAct's epochs.", "",
             "| experiment | seeds | TrAct vs baseline, final test top-1 % per budget | speed-up per TrAct budget |",
             "|---|---:|---|---|"]
    shown = []
    for name in CURVES:
        loaded = load_experiment(name)
        if loaded is None:
            continue
        summary = loaded[1]
        per_budget = []
        for b in sorted({r["budget"] for r in summary["results"]}):
            r = by_label(summary, b)
            if "baseline" in r and "tract-l0.1" in r:
                per_budget.append(f"{b}: {r['tract-l0.1']['top1']['mean']:.1f} vs {r['baseline']['top1']['mean']:.1f}")
        n = sorted({r["top1"]["n"] for r in summary["results"]})
        seeds = f"{n[0]}" if len(n) == 1 else f"{n[0]}–{n[-1]}"
        lines.append(f"| {EXPERIMENT_TITLES[name]}{'' if summary['complete'] else ' (unfinished)'} | {seeds} | "
                     f"{'; '.join(per_budget)} | {speedup_line(summary)} |")
        shown.append(name)
    lines.append("")
    lines += [plots(name, ("accuracy_vs_budget.png",)) for name in shown]
    return lines + ["", README_END]


def write_readme(block: list[str]) -> None:
    path = os.path.join(os.path.dirname(HERE), "README.md")
    with open(path) as f:
        text = f.read()
    new = "\n".join(block)
    if README_START in text:
        head, _, rest = text.partition(README_START)
        _, _, tail = rest.partition(README_END)
        text = head + new + tail
    else:
        anchor = "## Usage"
        if anchor not in text:
            raise SystemExit(f"README.md has neither the results markers nor a {anchor!r} heading to place them before")
        text = text.replace(anchor, new + "\n\n" + anchor, 1)
    with open(path, "w") as f:
        f.write(text)
    print(f"wrote the results section of {path}")


def main() -> int:
    out = ["# Benchmarks", "",
           "Generated by `python benchmarks/report.py` from `benchmarks/results/*.json`; every figure below comes "
           "from the command printed beside it. Timings are from a shared 2-core VM: ratios measured in one "
           "interleaved run are what to compare, absolute milliseconds drift between runs.", ""]
    sections = [("overhead.json", overhead_section),
                ("memory.json", memory_section), ("allreduce.json", allreduce_section)]
    for name, fn in sections:
        r = load(name)
        if r is not None:
            out += fn(r)
    extra = os.path.join(HERE, "NOTES.md")
    if os.path.exists(extra):
        with open(extra) as f:
            out += [f.read()]
    out += experiments_sections()
    path = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(f"wrote {path}")
    write_readme(readme_block())
    return 0


if __name__ == "__main__":
    sys.exit(main())
