"""Write BENCHMARKS.md from the JSON files in benchmarks/results/ (no number is typed by hand).

    python benchmarks/report.py            # rewrites BENCHMARKS.md at the repository root
"""
from __future__ import annotations

import glob
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
    "vit": "ViT-CIFAR training step (8x8 patches, hidden size 384, 7 layers; forward, backward, Adam), batch 128, 32 px",
}


def load(name: str):
    path = os.path.join(RESULTS, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def machine(r: dict) -> str:
    gpu = f"{r['cuda']} (CUDA), " if str(r.get("device", "cpu")).startswith("cuda") else ""
    return f"{gpu}{r['cpu']} ({r['cpu_count']} cores, {r['torch_threads']} torch threads), torch {r['torch']}, " \
           f"Python {r['python']}, git {r['git']}, {r['date']}"


def overhead_section(r: dict, *, png: str = "overhead.png", title: str = "Time overhead") -> list[str]:
    lines = [
        f"## {title}: plain layer vs `torch-tract` vs trainact (" + ", ".join(c["case"] for c in r["results"]) + ")",
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
    return lines + ["", overhead_plot(r, png), ""]


def overhead_plot(r: dict, png: str = "overhead.png") -> str:
    cases = [c["case"] for c in r["results"]]
    values = {(c["case"], v): c["extra_over_plain"][v] for c in r["results"] for v in ("torch-tract", "trainact")}
    bar_plot(os.path.join(RESULTS, png), cases, ["torch-tract", "trainact"], values, percent=True,
             ylabel="extra time over the plain layer", title="forward + backward, median of paired repetitions")
    return f"![overhead](benchmarks/results/{png})"


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
    variants = [v for v in extra if v != "plain"]
    bar_plot(os.path.join(RESULTS, "memory.png"), ["extra peak memory"], variants,
             {("extra peak memory", v): extra[v] for v in variants}, ylabel="MiB over the plain layer",
             title=r["case"])
    return lines + ["", "Target: trainact <= 64 MiB beyond the plain layer.", "",
                    "![memory](benchmarks/results/memory.png)", ""]


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


def scale_note() -> str:
    """How far the CPU-scale runs are from the paper's (read from the collected configurations)."""
    resnet, vit = load_experiment("fig3-sgd"), load_experiment("fig4-vit")
    if resnet is None:
        return ""
    c = resnet[0]["config"]
    text = (f"Scale: the paper trains for 100–800 epochs on all 50 000 CIFAR training images (ResNet-18 at width "
            f"64, ViT-CIFAR at hidden size 384); here the budgets are {', '.join(map(str, c['budgets']))} epochs on "
            f"{c['train_subset'] or 'all'} images, the ResNet at width {c['width']}")
    if vit is not None:
        text += f", the ViT at hidden size {vit[0]['config']['dim']}"
    return text + (". These runs test the direction and rough size of TrAct's effect in short training, not the "
                   "paper's numbers.")


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


def unused_runs(name: str, top: dict, summary: dict) -> str:
    """A sentence on collected runs this comparison does not use: an lr the grid no longer holds, or no longer
    selected (an earlier grid's runs, kept as data)."""
    from trainact.harness.config import CompareConfig
    from trainact.harness.protocol import RunSpec, grid_runs

    grid = set(grid_runs(CompareConfig.from_dict(top["config"])))
    used = {(r["label"], r["budget"], r["lr"]) for r in summary["results"]}
    found: dict = {}  # (label, lr) -> {budget: [final top-1 of each seed]}
    for path in glob.glob(os.path.join(COLLECTED, name, "b*", "*", "lr*", "s*", "summary.json")):
        with open(path) as f:
            s = json.load(f)
        run = s["run"]
        if RunSpec.from_dict(run) not in grid and (run["label"], run["budget"], run["lr"]) not in used:
            found.setdefault((run["label"], run["lr"]), {}).setdefault(run["budget"], []).append(s["final_top1"])
    if not found:
        return ""
    parts = [f"{label} at lr {lr:g} (" + ", ".join(f"{b:g} ep: {sum(a) / len(a):.2f}" for b, a in sorted(bs.items()))
             + ")" for (label, lr), bs in sorted(found.items())]
    return ("Also in the folder and not used by this comparison (runs of an earlier lr grid, kept as data; final "
            "test top-1 %, mean over their seeds): " + "; ".join(parts) + ".")


def curve_section(name: str, loaded) -> list[str]:
    from trainact.harness.results import format_markdown

    top, summary = loaded
    extra = unused_runs(name, top, summary)
    return [f"### {EXPERIMENT_TITLES.get(name, name)}", "",
            f"Command: `{top['command']}` (then `python benchmarks/experiments.py collect {name}`); "
            f"{run_machine(top)}.", "",
            format_markdown(summary), "", *([extra, ""] if extra else []),
            f"Speed-up of TrAct per budget: {speedup_line(summary)}.", "", plots(name), ""]


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


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


def lam_sweep_section(loaded, name: str = "lam-sweep") -> list[str]:
    """A table of TrAct's accuracy per λ against the baseline (and, for a sweep, its plot)."""
    top, summary = loaded
    sweep = len(top["config"]["lams"]) > 2
    if sweep:
        lam_sweep_plot(summary, os.path.join(COLLECTED, name, "lam_sweep.png"))
    base = by_label(summary)["baseline"]
    lines = [f"### {EXPERIMENT_TITLES[name]}", "",
             f"Command: `{top['command']}`; {run_machine(top)}.", "",
             "| λ | seeds | test top-1 % | vs baseline (points) |", "|---:|---:|---:|---:|",
             f"| baseline | {base['top1']['n']} | {pm(base['top1'])} | |"]
    for r in sorted((r for r in summary["results"] if r["method"] == "tract"), key=lambda r: r["lam"]):
        lines.append(f"| {r['lam']:g} | {r['top1']['n']} | {pm(r['top1'])} | "
                     f"{r['top1']['mean'] - base['top1']['mean']:+.2f} |")
    return lines + ["", plots(name, ("lam_sweep.png",) if sweep else ("accuracy_vs_epoch.png",)), ""]


ABLATION_ROWS = (  # (row label, short label for the plot, experiment, its scale-invariant-λ twin)
    ("ViT, standardised inputs", "standardised", "fig4-vit", None),
    ("ViT + patch-wise normalisation", "patch norm", "ablation-vit-patchnorm", None),
    ("ViT + DualPatchNorm", "DualPatchNorm", "ablation-vit-dualpatchnorm", None),
    ("ViT, [0,1] inputs", "[0,1] inputs", "ablation-vit-unit", "ablation-vit-unit-relative"),
    ("ViT, [0,255] inputs", "[0,255] inputs", "ablation-vit-byte", "ablation-vit-byte-relative"),
)
ABLATION_SERIES = ("baseline", "TrAct λ=0.1", "TrAct, scale-invariant λ")


def ablation_section(budget: int) -> list[str]:
    lines = [f"### §4.5 ablations (ViT-CIFAR, Adam, {budget} epochs, λ = 0.1)", "",
             "Each row is its own comparison at the lr the ViT's baseline grid selected for this budget "
             "(`fig4-vit`). The scale-invariant λ (`--relative-lambda`: λ · tr(AᵀA/r)/n) is not in the paper. "
             "With it, an SGD step changes the first layer's pre-activations by the same amount whatever the input "
             "scale; Adam, though, sets each weight's step size itself, so with [0,255] inputs the pre-activations "
             "still move up to 255x more per step than with [0,1] inputs, with or without TrAct.", "",
             "| variant | seeds | baseline top-1 % | TrAct top-1 % | TrAct − baseline | TrAct, scale-invariant λ | "
             "command |", "|---|---:|---:|---:|---:|---:|---|"]
    values, errors = {}, {}
    for label, short, name, rel in ABLATION_ROWS:
        loaded = load_experiment(name)
        if loaded is None:
            continue
        rows = by_label(loaded[1], budget)
        rel_loaded = load_experiment(rel) if rel else None
        cells = (rows.get("baseline"), rows.get("tract-l0.1"),
                 by_label(rel_loaded[1], budget).get("tract-l0.1") if rel_loaded else None)
        b, t, r = (c["top1"] if c else None for c in cells)
        n = sorted({x["n"] for x in (b, t, r) if x})
        gain = f"{t['mean'] - b['mean']:+.2f}" if b and t else "—"
        lines.append(f"| {label} | {'/'.join(map(str, n))} | {pm(b) if b else '—'} | {pm(t) if t else '—'} | {gain} | "
                     f"{pm(r) if r else '—'} | `{loaded[0]['command']}` |")
        for series, st in zip(ABLATION_SERIES, (b, t, r)):
            if st:
                values[(short, series)], errors[(short, series)] = st["mean"], st["std"] or 0
    if not values:
        return []
    groups = list(dict.fromkeys(g for g, _ in values))
    bar_plot(os.path.join(COLLECTED, "ablations.png"), groups, list(ABLATION_SERIES), values, errors=errors,
             zoom=True, ylabel="final test top-1 (%), mean ± std", title=f"ViT-CIFAR, {budget} epochs")
    return lines + ["", "![ablations](benchmarks/results/experiments/ablations.png)", ""]


def first_layer_sgd_section(budget: int) -> list[str]:
    adam, mixed = load_experiment("fig3-adam"), load_experiment("first-layer-sgd")
    if mixed is None:
        return []
    top = mixed[0]
    entries = []  # (first layer's optimizer, top-1 stats)
    for loaded, names in ((adam, ("Adam", "Adam + TrAct")), (mixed, ("SGD", "SGD + TrAct"))):
        rows = by_label(loaded[1], budget) if loaded else {}
        entries += [(text, rows[label]["top1"]) for label, text in zip(("baseline", "tract-l0.1"), names)
                    if label in rows]
    lines = [f"### {EXPERIMENT_TITLES['first-layer-sgd']}", "",
             f"Command: `{top['command']}`; {run_machine(top)}. The Adam rows are `fig3-adam` at the same budget.",
             "", "| first layer | rest | seeds | test top-1 % |", "|---|---|---:|---:|"]
    lines += [f"| {text} | Adam | {st['n']} | {pm(st)} |" for text, st in entries]
    bar_plot(os.path.join(COLLECTED, "first-layer-sgd", "first_layer_sgd.png"), [t for t, _ in entries],
             ["first layer"], {(t, "first layer"): st["mean"] for t, st in entries},
             errors={(t, "first layer"): st["std"] or 0 for t, st in entries}, zoom=True,
             ylabel="final test top-1 (%), mean ± std", title=f"CIFAR ResNet, the rest Adam, {budget} epochs")
    return lines + ["", plots("first-layer-sgd", ("first_layer_sgd.png",)), ""]


def claims_table() -> list[str]:
    import claims

    return claims.markdown(claims.all_claims(claims.Collected(COLLECTED), titles=EXPERIMENT_TITLES,
                                             ablation_budget=ABLATION_BUDGET))


TRENDS = (("fig3-sgd", "ResNet, SGD"), ("fig3-adam", "ResNet, Adam"), (("fig4-vit", "fig4-vit-lam"), "ViT"))


def trend_sentences() -> list[str]:
    """One sentence per curve experiment: does TrAct's gain grow, hold or fade with the budget."""
    import claims

    src = claims.Collected(COLLECTED)
    found = [claims.trend_sentence(src, names, what) for names, what in TRENDS]
    found = [s for s in found if s]
    if not found:
        return []
    return (["Does the gain last with longer training? (λ = 0.1; points [95 % t interval] over paired seeds; the "
             "change is per seed, the longest budget's gain minus the shortest's)", ""] + [f"- {s}" for s in found]
            + [""])


def reproducibility_section(src=None) -> list[str]:
    """The same seeds trained again on another machine of the same kind: what changes, and what does not."""
    import claims

    src = src or claims.Collected(COLLECTED)
    again = "repro-fig3-sgd"
    (budget,) = src.budgets(again) or [None]
    if budget is None:
        return []
    cols = {(run, label): src.top1(name, budget, label) for run, name in (("then", "fig3-sgd"), ("again", again))
            for label in ("baseline", "tract-l0.1")}
    seeds = sorted(set.intersection(*(set(v) for v in cols.values())))
    if not seeds:
        return []
    lines = ["### Reproducibility: the same seeds on another machine of the same kind", "",
             f"`{again}` trains fig3-sgd's {budget}-epoch baseline and TrAct (λ = 0.1) runs again from the same seeds "
             "(same initial weights, same data order), in a later session on another machine of the same kind. "
             + "".join(f"{which}: {run_machine(got[0])}. " for which, got in
                       (("Then", load_experiment("fig3-sgd")), ("Again", load_experiment(again))) if got)
             + "CPU kernels need not give bit-identical results across "
             "machines (and across thread scheduling), so accuracies of one seed differ; what should hold is the "
             "paired TrAct − baseline difference. Final test top-1 %:", "",
             "| seed | baseline then | baseline again | TrAct then | TrAct again | TrAct − baseline then | again |",
             "|---:|---:|---:|---:|---:|---:|---:|"]
    for s in seeds:
        v = {k: col[s] for k, col in cols.items()}
        lines.append(f"| {s} | {v[('then', 'baseline')]:.2f} | {v[('again', 'baseline')]:.2f} | "
                     f"{v[('then', 'tract-l0.1')]:.2f} | {v[('again', 'tract-l0.1')]:.2f} | "
                     f"{v[('then', 'tract-l0.1')] - v[('then', 'baseline')]:+.2f} | "
                     f"{v[('again', 'tract-l0.1')] - v[('again', 'baseline')]:+.2f} |")
    moved = {label: claims.paired(cols[("again", label)], cols[("then", label)]) for label in ("baseline", "tract-l0.1")}
    gain = {run: claims.paired(cols[(run, "tract-l0.1")], cols[(run, "baseline")]) for run in ("then", "again")}
    shift = max(abs(d) for p in moved.values() for d in p.diffs)
    lines += ["", f"Same seed, again − then (points [95 % t interval]): baseline {moved['baseline'].text()}, TrAct "
                  f"{moved['tract-l0.1'].text()}; the largest single change {shift:.2f} points. TrAct − baseline: "
                  f"then {gain['then'].text()}, again {gain['again'].text()}; its change "
                  f"{claims.difference(gain['again'], gain['then']).text()}. Expect run-to-run differences of this "
                  "size when re-training a collected run; they are not a bug.", ""]
    return lines


def wall_time_section() -> list[str]:
    """Training wall time per epoch of every collected run, TrAct against the baseline, per experiment."""
    lines = ["### Wall time per epoch of the runs above", "",
             "Mean over every finished run of an experiment (all budgets, lrs and seeds) of its training time / "
             "epochs, evaluation excluded. The runs shared two cores with whatever else ran on the machine, so "
             "differences of a few percent are noise; the controlled overhead measurement is the one above.", "",
             "| experiment | baseline runs | baseline s/epoch | TrAct runs | TrAct s/epoch | TrAct / baseline |",
             "|---|---:|---:|---:|---:|---:|"]
    found = False
    for name in EXPERIMENTS:
        folder = os.path.join(COLLECTED, name)
        times = {"baseline": [], "tract": []}
        for root, _, files in os.walk(folder):
            if "summary.json" in files and root != folder:
                with open(os.path.join(root, "summary.json")) as f:
                    s = json.load(f)
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


def gram_section(r: dict) -> list[str]:
    lines = [
        "## GPU: which Gram algorithm (band vs one dense GEMM per block)",
        "",
        f"Command: `{r['command']}` (seed {r['seed']}); {machine(r)}.",
        "The same TrAct layer with the band algorithm forced on and off, each repetition running plain, band and "
        "dense once in rotating order; extra = median of the paired ratios to plain − 1. The library uses the band "
        "algorithm on the CPU only (`patches._band_applies`).",
        "",
        "| case | reps | plain (ms, median) | band | dense | band / dense − 1 (IQR) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in r["results"]:
        iqr = c["band_over_dense_iqr"]
        lines.append(f"| {CASE_TEXT.get(c['case'], c['case'])} | {c['reps']} | {c['median_ms']['plain']:.2f} | "
                     f"{c['band_extra_over_plain']:+.1%} | {c['dense_extra_over_plain']:+.1%} | "
                     f"{c['band_over_dense']:+.1%} ({iqr[0]:+.1%}..{iqr[1]:+.1%}) |")
    return lines + [""]


def sync_section(r: dict) -> list[str]:
    lines = [
        "## GPU: the cost of the backward's host synchronisation",
        "",
        f"Command: `{r['command']}` (seed {r['seed']}); {machine(r)}.",
        "TrAct's backward reads two status flags on the host (finite covariance, Cholesky success) with one "
        "synchronisation. Each timing queues several whole training steps back to back (one synchronisation "
        "before and after), so the CPU's running ahead of the GPU, which that read stops, is part of the time. "
        "`without the read` replaces the read by \"all fine\" (measurement only); the synchronisation's cost is "
        "TrAct / TrAct-without-the-read − 1. Synchronising calls per step were counted with "
        "`torch.cuda.set_sync_debug_mode(\"warn\")` after a warm-up step. The paper reports +9.7 % training time "
        "for its CIFAR-10 ViT (1091 s → 1197 s per 100 epochs).",
        "",
        "| case | steps per timing × reps | plain (ms/step) | TrAct | TrAct without the read | the synchronisation (IQR) "
        "| synchronising calls per step: plain / TrAct / without the read |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in r["results"]:
        iqr, n = c["sync_cost_iqr"], c["syncs_per_step"]
        lines.append(f"| {CASE_TEXT.get(c['case'], c['case'])} | {c['steps_per_timing']} × {c['reps']} | "
                     f"{c['median_ms_per_step']['plain']:.2f} | {c['extra_over_plain']:+.1%} | "
                     f"{c['nosync_extra_over_plain']:+.1%} | {c['sync_cost']:+.1%} ({iqr[0]:+.1%}..{iqr[1]:+.1%}) | "
                     f"{n['plain']} / {n['trainact']} / {n['trainact-nosync']} |")
    return lines + [""]


def gpu_tests_line(r: dict) -> list[str]:
    note = f" Note: {r['note']}." if r.get("note") else ""
    return ["## GPU: tests", "",
            f"`{r['command']}`: {r['outcome']} ({r['cuda']}, torch {r['torch']}, {r['date']}).{note}", ""]


def gpu_section() -> list[str]:
    """The GPU evidence where a GPU session measured it, else what to run when a GPU is at hand."""
    out = []
    for name, fn in (("gpu-tests.json", gpu_tests_line), ("overhead-cuda.json", None), ("gram-cuda.json", gram_section),
                     ("sync-cuda.json", sync_section)):
        r = load(name)
        if r is not None:
            out += fn(r) if fn else overhead_section(r, png="overhead-cuda.png", title="GPU time overhead")
    loaded = load_experiment("gpu-resnet18")
    if loaded is not None:
        out += curve_section("gpu-resnet18", loaded)
    if out:
        return out
    return ["## GPU", "",
            "Nothing on this page was measured on a GPU, so the GPU part of the evidence and `tests/test_gpu.py` "
            "(CUDA autocast, GradScaler, CPU/GPU agreement) have not run. On a GPU machine, from the repository root "
            "with the data at `" + EXPERIMENTS["gpu-resnet18"]["args"][1] + "`:", "",
            "    python -m pytest tests/test_gpu.py",
            "    python benchmarks/bench_overhead.py --device cuda --cases stem,deit-s,resnet18,cifar-stem,vit",
            "    python benchmarks/bench_gram.py --device cuda && python benchmarks/bench_sync.py --device cuda",
            "    python benchmarks/experiments.py run gpu-resnet18   # " + EXPERIMENTS["gpu-resnet18"]["title"],
            "    python benchmarks/report.py", ""]


def experiments_sections() -> list[str]:
    out = ["## Training experiments: the paper's claims at CPU scale", "",
           "Every table is computed from the JSON in `benchmarks/results/experiments/` (copied from the run folders "
           "by `python benchmarks/experiments.py collect`); `python benchmarks/experiments.py list` prints every "
           "command. Accuracies are the final test top-1 after the last epoch, mean ± std over seeds; `s/epoch` is "
           "the training wall time per epoch (evaluation excluded).", "", scale_note(), "",
           "### The paper's claims, checked", ""] + claims_table()
    for name in CURVES:
        loaded = load_experiment(name)
        if loaded is not None:
            out += curve_section(name, loaded)
    for name in ("lam-sweep", "lam-long", "lam-long-adam"):
        loaded = load_experiment(name)
        if loaded is not None:
            out += lam_sweep_section(loaded, name)
    out += ablation_section(ABLATION_BUDGET)
    out += first_layer_sgd_section(ABLATION_BUDGET)
    out += reproducibility_section()
    out += wall_time_section()
    return out


def readme_block() -> list[str]:
    """The README's short results section: speed-ups per experiment, with plots."""
    lines = [README_START, "", "## Results at CPU scale", "",
             "Measured by this project (commands, seeds, hardware and every table in [BENCHMARKS.md](BENCHMARKS.md)); "
             "speed-up = baseline epochs needed for TrAct's accuracy / TrAct's epochs. " + scale_note(), "",
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
    lines += [""] + trend_sentences()
    lines += ["### The paper's claims, checked", ""] + claims_table()
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
    out += gpu_section()
    out += experiments_sections()
    path = os.path.join(os.path.dirname(HERE), "BENCHMARKS.md")
    with open(path, "w") as f:
        f.write("\n".join(out).rstrip() + "\n")
    print(f"wrote {path}")
    write_readme(readme_block())
    return 0


if __name__ == "__main__":
    sys.exit(main())
