"""BENCHMARKS.md and README sections for the training experiments (benchmarks/results/experiments/): the tables
per experiment, the ablations, reproducibility, wall time, and the claims table from claims/.

Which experiment appears where comes from its registration (`report=` items, benchmarks/evidence.py): each
function here takes the registry (default: experiments.EXPERIMENTS, read when called) and names no experiment."""
from __future__ import annotations

import glob
import json
import os
import statistics
from typing import Optional

from trainact.harness.protocol import fmt_num
from trainact.harness.results import pm, stats

from . import claims, experiments
from .common import describe
from .evidence import Ablation, Curve, FirstLayerSgd, LamTable, Repro, Scale, Whitening, entries, members
from .experiments import EXPERIMENTS
from .figures import bar_plot, lam_sweep_plot, paired_gain_plot

EXPERIMENT_TITLES = {name: e["title"] for name, e in EXPERIMENTS.items()}


def _registry(registry):
    return experiments.EXPERIMENTS if registry is None else registry


def curves(section: str, registry=None) -> list:
    """The experiments whose `Curve` section goes in `section` ("experiments", "gpu"), in registration order."""
    return [name for name, item in entries(_registry(registry), Curve) if item.section == section]


def load_experiment(name: str):
    """(config.json, summary.json) of a collected experiment, or None."""
    folder = os.path.join(experiments.COLLECTED, name)
    if not os.path.exists(os.path.join(folder, "summary.json")):
        return None
    with open(os.path.join(folder, "config.json")) as f:
        top = json.load(f)
    with open(os.path.join(folder, "summary.json")) as f:
        return top, json.load(f)


def run_machine(top: dict) -> str:
    e, c = top["environment"], top["config"]
    d = e.get("dataset", {})
    return (f"{describe(e)}; data: {d.get('name')}, "
            f"{d.get('train_size')} training images" + (" (class-balanced subset)" if c.get("train_subset") else "")
            + f", {d.get('test_size')} test images")


def scale_note(registry=None) -> str:
    """How far the CPU-scale runs are from the paper's (read from the collected configurations of the experiments
    registered with `Scale("resnet")` and `Scale("vit")`)."""
    roles = {item.role: name for name, item in reversed(entries(_registry(registry), Scale))}
    resnet, vit = (load_experiment(roles[r]) if r in roles else None for r in ("resnet", "vit"))
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


def plots(name: str, files=("accuracy_vs_budget.png", "speedup.png", "accuracy_vs_epoch.png")) -> str:
    """Markdown images of an experiment's plots (paths relative to the repository root: README, BENCHMARKS)."""
    return " ".join(f"![{name} {f[:-4]}](benchmarks/results/experiments/{name}/{f})" for f in files
                    if os.path.exists(os.path.join(experiments.COLLECTED, name, f)))


def by_label(summary: dict, budget=None) -> dict:
    return {r["label"]: r for r in summary["results"] if budget is None or r["budget"] == budget}


def speedup_line(summary: dict, label: str = None) -> str:
    """The speed-up per TrAct budget: of one method label, or of all (named when there are several λ)."""
    shown = [s for s in summary["speedups"] if label is None or s["label"] == label]
    named = label is None and len({s["label"] for s in shown}) > 1
    return ", ".join((f"{s['label']} " if named else "") + f"{s['tract_budget']:g} ep: {s['display']}"
                     for s in shown) or "—"


def unused_runs(name: str, top: dict, summary: dict) -> str:
    """A sentence on collected runs this comparison does not use: an lr the grid no longer holds, or no longer
    selected (an earlier grid's runs, kept as data)."""
    from trainact.harness.config import CompareConfig
    from trainact.harness.protocol import RunSpec, grid_runs

    grid = set(grid_runs(CompareConfig.from_dict(top["config"])))
    used = {(r["label"], r["budget"], r["lr"]) for r in summary["results"]}
    found: dict = {}  # (label, lr) -> {budget: [final top-1 of each seed]}
    for path in glob.glob(os.path.join(experiments.COLLECTED, name, "b*", "*", "lr*", "s*", "summary.json")):
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


def paired_gains(name: str, registry=None) -> dict:
    """{series label: [(B, paired TrAct@B − baseline@kB)]}: k = 1 for each of the paper's λ, and the paper's form
    of the speed-up (λ = 0.1 against the baseline at 2B and 4B) where those budgets were run."""
    src = claims.Collected(experiments.COLLECTED)
    names = members(_registry(registry), name)
    series = {f"λ = {lam:g}, baseline@B": sorted(claims.tract_vs_baseline(src, names, lam).items())
              for lam in claims.PAPER_LAMS}
    for k in (2, 4):
        series[f"λ = 0.1, baseline@{k}B"] = [(b, p) for b, kk, p in claims.longer_baseline(src, names) if kk == k]
    return {label: points for label, points in series.items() if points}


def curve_section(name: str, loaded) -> list[str]:
    from trainact.harness.results import format_markdown

    top, summary = loaded
    extra = unused_runs(name, top, summary)
    gains = paired_gains(name)
    if gains:
        paired_gain_plot(os.path.join(experiments.COLLECTED, name, "paired_gain.png"), gains,
                         title=f"{name}: TrAct − baseline, paired per seed")
    return [f"### {EXPERIMENT_TITLES.get(name, name)}", "",
            f"Command: `{top['command']}` (then `python -m benchmarks.experiments collect {name}`); "
            f"{run_machine(top)}.", "",
            format_markdown(summary), "", *([extra, ""] if extra else []),
            f"Speed-up of TrAct per budget: {speedup_line(summary)}.", "",
            "The paired gain plot shows TrAct − baseline per seed (mean, 95 % t interval) at the same budget for "
            "each of the paper's λ, and, in the paper's form of the speed-up, TrAct@B against the baseline at 2B "
            "and 4B: a point at or above 0 there means TrAct needs half (a quarter) of the baseline's epochs.", "",
            plots(name, ("accuracy_vs_budget.png", "paired_gain.png", "speedup.png", "accuracy_vs_epoch.png")), ""]


def lam_sweep_section(loaded, name: str) -> list[str]:
    """A table of TrAct's accuracy per λ against the baseline (and, for a sweep, its plot)."""
    top, summary = loaded
    sweep = len(top["config"]["lams"]) > 2
    if sweep:
        lam_sweep_plot(summary, os.path.join(experiments.COLLECTED, name, "lam_sweep.png"))
    base = by_label(summary)["baseline"]
    lines = [f"### {EXPERIMENT_TITLES[name]}", "",
             f"Command: `{top['command']}`; {run_machine(top)}.", "",
             "| λ | seeds | test top-1 % | vs baseline (points) |", "|---:|---:|---:|---:|",
             f"| baseline | {base['top1']['n']} | {pm(base['top1'])} | |"]
    for r in sorted((r for r in summary["results"] if r["method"] == "tract"), key=lambda r: r["lam"]):
        lines.append(f"| {r['lam']:g} | {r['top1']['n']} | {pm(r['top1'])} | "
                     f"{r['top1']['mean'] - base['top1']['mean']:+.2f} |")
    return lines + ["", plots(name, ("lam_sweep.png",) if sweep else ("accuracy_vs_epoch.png",)), ""]


def lam_sections(registry=None) -> list[str]:
    """The λ table of every experiment registered with `LamTable`."""
    out = []
    for name, _ in entries(_registry(registry), LamTable):
        loaded = load_experiment(name)
        if loaded is not None:
            out += lam_sweep_section(loaded, name)
    return out


ABLATION_SERIES = ("baseline", "TrAct λ=0.1", "TrAct, scale-invariant λ")


def ablation_section(registry=None) -> list[str]:
    """The §4.5 ablation table and plot: one row per `Ablation` registration, at its budget."""
    rows = entries(_registry(registry), Ablation)
    refs = [name for name, item in rows if item.reference]
    if not refs:
        return []
    budget = rows[0][1].budget
    lines = [f"### §4.5 ablations (ViT-CIFAR, Adam, {budget} epochs, λ = 0.1)", "",
             "Each row is its own comparison at the lr the ViT's baseline grid selected for this budget "
             f"(`{refs[0]}`). The scale-invariant λ (`--relative-lambda`: λ · tr(AᵀA/r)/n) is not in the paper. "
             "With it, an SGD step changes the first layer's pre-activations by the same amount whatever the input "
             "scale; Adam, though, sets each weight's step size itself, so with [0,255] inputs the pre-activations "
             "still move up to 255x more per step than with [0,1] inputs, with or without TrAct.", "",
             "| variant | seeds | baseline top-1 % | TrAct top-1 % | TrAct − baseline | TrAct, scale-invariant λ | "
             "command |", "|---|---:|---:|---:|---:|---:|---|"]
    values, errors = {}, {}
    for name, item in rows:
        label, short, rel = item.row, item.short, item.relative
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
    bar_plot(os.path.join(experiments.COLLECTED, "ablations.png"), groups, list(ABLATION_SERIES), values, errors=errors,
             zoom=True, ylabel="final test top-1 (%), mean ± std", title=f"ViT-CIFAR, {budget} epochs")
    return lines + ["", "![ablations](benchmarks/results/experiments/ablations.png)", ""]


def first_layer_sgd_section(registry=None) -> list[str]:
    """The first layer trained by SGD under Adam, against the reference's all-Adam runs (`FirstLayerSgd`)."""
    out = []
    for name, item in entries(_registry(registry), FirstLayerSgd):
        out += _first_layer_sgd(name, item.reference, item.budget)
    return out


def _first_layer_sgd(name: str, reference: str, budget: int) -> list[str]:
    adam, mixed = load_experiment(reference), load_experiment(name)
    if mixed is None:
        return []
    top = mixed[0]
    entries = []  # (first layer's optimizer, top-1 stats)
    for loaded, names in ((adam, ("Adam", "Adam + TrAct")), (mixed, ("SGD", "SGD + TrAct"))):
        rows = by_label(loaded[1], budget) if loaded else {}
        entries += [(text, rows[label]["top1"]) for label, text in zip(("baseline", "tract-l0.1"), names)
                    if label in rows]
    lines = [f"### {EXPERIMENT_TITLES[name]}", "",
             f"Command: `{top['command']}`; {run_machine(top)}. The Adam rows are `{reference}` at the same budget.",
             "", "| first layer | rest | seeds | test top-1 % |", "|---|---|---:|---:|"]
    lines += [f"| {text} | Adam | {st['n']} | {pm(st)} |" for text, st in entries]
    bar_plot(os.path.join(experiments.COLLECTED, name, "first_layer_sgd.png"), [t for t, _ in entries],
             ["first layer"], {(t, "first layer"): st["mean"] for t, st in entries},
             errors={(t, "first layer"): st["std"] or 0 for t, st in entries}, zoom=True,
             ylabel="final test top-1 (%), mean ± std", title=f"CIFAR ResNet, the rest Adam, {budget} epochs")
    return lines + ["", plots(name, ("first_layer_sgd.png",)), ""]


def whitening_section(src=None, registry=None) -> list[str]:
    """TrAct against airbench's patch-whitened first layer (frozen, trained, trained with TrAct), per seed."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    comparisons = claims.whitening_comparisons(src, registry)
    if not comparisons:
        return []
    variants = claims.whitening_variants(registry)
    reference = next(name for name, item in entries(registry, Whitening) if item.reference)
    lines = ["### Not in the paper: TrAct vs a patch-whitened first layer (CIFAR ResNet, SGD)", "",
             "airbench initialises its first convolution with patch-whitening filters (eigenvectors of the same patch "
             "covariance AᵀA/r that TrAct uses, scaled by (e + ε)^-1/2, ε = 5e-4, in ± pairs, leading first) and "
             "freezes it; TrAct whitens the first layer's gradient instead. Same protocol, lr and seeds as "
             f"`{reference}` (whose baseline and TrAct runs these are); the whitening is computed from each run's "
             "standardised training images (`--first-layer-init whiten` / `whiten-frozen`, "
             "`src/trainact/harness/whiten.py`). The width-16 ResNet's stem has 16 channels for 27 patch features, "
             "so it keeps the 8 leading eigen-filter pairs.", "",
             "| budget | " + " | ".join(label for label, _, _ in variants) + " |",
             "|---:|" + "---:|" * len(variants)]
    values, errors = {}, {}
    for b in comparisons:
        cells = []
        for label, name, method in variants:
            acc = list(src.top1(name, b, method).values())
            if acc:
                st = stats(acc)
                cells.append(f"{pm(st)} (n = {st['n']})")
                values[(f"{b} ep", label)], errors[(f"{b} ep", label)] = st["mean"], st["std"] or 0
            else:
                cells.append("—")
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    lines += ["", "Paired per seed, points [95 % t interval]:", ""]
    for b, pairs in comparisons.items():
        lines.append(f"- {b} epochs: " + "; ".join(f"{x} − {y}: {p.text()}" for (x, y), p in pairs.items()))
    bar_plot(os.path.join(experiments.COLLECTED, "whitening.png"), list(dict.fromkeys(g for g, _ in values)),
             [label for label, _, _ in variants], values, errors=errors, zoom=True,
             ylabel="final test top-1 (%), mean ± std", title="CIFAR ResNet, SGD: whitened first layer vs TrAct")
    return lines + ["", "![whitening](benchmarks/results/experiments/whitening.png)", ""]


def whitening_sentence(src=None, registry=None) -> list[str]:
    """The README's one sentence on TrAct vs a whitened first layer (whichever way it falls)."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    comparisons = claims.whitening_comparisons(src, registry)
    if not comparisons:
        return []
    parts = []
    for b, pairs in comparisons.items():
        shown = {(x, y): p for (x, y), p in pairs.items()
                 if (x, y) in (("TrAct", "whitened, frozen"), ("TrAct", "whitened, trained"), ("whitened + TrAct", "TrAct"))}
        clear = [f"{x} over {y}" if p.side() > 0 else f"{y} over {x}" for (x, y), p in shown.items() if p.side()]
        parts.append(f"at {b} epochs " + ", ".join(f"{x} − {y} {p.text()}" for (x, y), p in shown.items())
                     + (f" (clear: {', '.join(clear)})" if clear else " (no clear difference)"))
    return ["Not in the paper — TrAct against airbench's patch-whitened first layer "
            f"(CIFAR {claims.whitening_setting(registry)}; points [95 % t interval], paired per seed): " + "; ".join(parts) + ".", ""]


def zoo_section(src=None, registry=None) -> list[str]:
    """Not in the paper's form: the architecture sweep on CIFAR-10, per model, paired per seed."""
    src = src or claims.Collected(experiments.COLLECTED)
    rows = claims.zoo_comparisons(src, _registry(registry))
    if not rows:
        return []
    lines = ["### Architecture sweep (CIFAR-10, the pytorch-cifar100 recipe scaled to the budget)", "",
             "`zoo-<model>` (see `python -m benchmarks.experiments list`; the models' CIFAR adaptations are in "
             "src/trainact/harness/library_models.py, the sizing in benchmarks/zoo_sizing.md). TrAct − baseline per seed, "
             "points [95 % t interval]; TrAct@2/3: TrAct trained for 2/3 of the budget against the baseline's whole "
             "budget (Table 7's comparison); lr: the one the baseline chose from 0.1 and 0.01 (seed 0), which TrAct "
             "uses too.", "",
             "| model | budget | lr | baseline top-1 % | TrAct top-1 % | TrAct − baseline, top-1 | top-5 | "
             "TrAct@2/3 − baseline |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for m, r in rows.items():
        name, b = r["name"], r["budget"]
        base, tr = (stats(list(src.top1(name, b, label).values())) for label in ("baseline", "tract-l0.1"))
        short = f"{r['short'][1].text()} ({r['short'][0]} ep)" if "short" in r else "—"
        lr = src.lr(name, b, "baseline")
        lines.append(f"| {m} | {b} | {'—' if lr is None else fmt_num(lr)} | {pm(base)} | {pm(tr)} | {r['top1'].text()} | "
                     f"{r['top5'].text() if 'top5' in r else '—'} | {short} |")
    values, errors = {}, {}
    for m, r in rows.items():
        for series, p in (("TrAct − baseline", r["top1"]), ("TrAct@2/3 − baseline", r.get("short", (0, None))[1])):
            if p is not None and p.n:
                values[(m, series)] = p.mean
                errors[(m, series)] = (p.interval[1] - p.interval[0]) / 2 if p.interval else 0
    bar_plot(os.path.join(experiments.COLLECTED, "zoo.png"), list(rows), ["TrAct − baseline", "TrAct@2/3 − baseline"],
             values, errors=errors, ylabel="top-1 difference (points), 95 % t CI",
             title="Architecture sweep (CIFAR-10): paired differences per model")
    return lines + ["", "![zoo](benchmarks/results/experiments/zoo.png)", ""]


def zoo_sentence(src=None, registry=None) -> list[str]:
    """The README's one sentence on the architecture sweep (whichever way it falls), naming any model whose
    baseline stays under twice chance (20 % on CIFAR-10): its gain says little."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    models = claims.zoo_models(registry)
    rows = claims.zoo_comparisons(src, registry)
    if not rows:
        return []
    gains = [r["top1"] for r in rows.values()]
    above, below = sum(p.side() > 0 for p in gains), sum(p.side() < 0 for p in gains)
    budgets = "/".join(str(b) for b in sorted({r["budget"] for r in rows.values()}))
    done = f"{len(rows)} models" if len(rows) == len(models) else f"{len(rows)} of the {len(models)} models so far"
    text = (f"Not in the paper's form — the architecture sweep ({done}, CIFAR-10, {budgets} epochs on "
            f"{models[next(iter(rows))][2].subset} training images, paired per seed): TrAct better on "
            f"{sum(p.mean > 0 for p in gains)}/{len(rows)} models (top-1; {above} with the 95 % t interval above 0, "
            f"{below} below), mean top-1 gain {claims.across_models(dict(zip(rows, gains)))[1]} points (the paper, 36 "
            "CIFAR-100 models at 200 epochs: 33/36, +0.49)")
    shorts = {m: r["short"][1] for m, r in rows.items() if "short" in r}
    if shorts:
        text += (f"; TrAct at 2/3 of the budget − the baseline at the whole: {claims.across_models(shorts)[1]} "
                 f"points on average over {len(shorts)} model{'s' * (len(shorts) != 1)} (the paper: about 0)")
    weak = [m for m in rows if statistics.fmean(src.top1(rows[m]["name"], rows[m]["budget"], "baseline").values()) < 20]
    if weak:
        text += f"; under twice chance (20 %), so their gain says little: {', '.join(weak)}"
    return [text + ".", ""]


def claims_table(registry=None) -> list[str]:
    return claims.markdown(claims.all_claims(claims.Collected(experiments.COLLECTED), titles=EXPERIMENT_TITLES,
                                             registry=_registry(registry)))


def trend_sentences(src=None, registry=None) -> list[str]:
    """One sentence per curve experiment: does TrAct's gain grow, hold or fade with the budget; then whether weight
    decay or the max-pool (the two differences between the CIFAR protocols) move that gain, and what of the max-pool
    keeps it (the stem ablation)."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    found = claims.trend_sentences(src, registry) + [weight_decay_pool_sentence(src, registry),
                                                     stem_sentence(src, registry)]
    found = [s for s in found if s]
    if not found:
        return []
    return (["Does the gain last with longer training? (λ = 0.1; points [95 % t interval] over paired seeds; the "
             "change is per seed, the later budget's gain minus the earlier's)", ""] + [f"- {s}" for s in found]
            + [""])


_EFFECT_WORDS = {  # (a gain interval off 0, a change interval off 0) -> what the factor does
    (True, True): "changes TrAct's gain and its change from {lo} to {hi} epochs",
    (True, False): "changes TrAct's gain, not clearly its change from {lo} to {hi} epochs",
    (False, True): "changes how TrAct's gain changes from {lo} to {hi} epochs, not clearly the gain at either budget",
    (False, False): "changes neither TrAct's gain nor its change from {lo} to {hi} epochs clearly"}


def weight_decay_pool_sentence(src=None, registry=None) -> Optional[str]:
    """One sentence on the weight decay x max-pool ablation: does each factor move TrAct's gain at 4 and 16 epochs
    and its change between them (paired per seed)? None until every cell has 2 paired seeds at both budgets."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    lo, hi = claims.WD_POOL_BUDGETS
    gains = claims.weight_decay_pool_gains(src, registry)
    if len(gains) < len(claims.wd_pool_cells(registry)) or any(b not in g or g[b].n < 2
                                                     for g in gains.values() for b in (lo, hi)):
        return None
    effects = claims.weight_decay_pool_effects(src, registry)
    clauses = []
    for factor, key, diff, settings in (
            ("weight decay", "weight decay", "without − with weight decay",
             {"maxpool": "with the max-pool", "nopool": "without the max-pool"}),
            ("the max-pool", "max-pool", "with − without the max-pool",
             {"0": "without weight decay", "5e-4": "with weight decay 5e-4"})):
        per = {label: effects[(key, s)] for s, label in settings.items()}
        off = (any(p[b].side() for p in per.values() for b in (lo, hi)), any(p["change"].side() for p in per.values()))
        clauses.append(f"{factor} {_EFFECT_WORDS[off].format(lo=lo, hi=hi)} (TrAct's gain {diff}: " + "; ".join(
            f"{label} {lo} ep {p[lo].text()}, {hi} ep {p[hi].text()}, change {p['change'].text()}"
            for label, p in per.items()) + ")")
    return (f"Not in the paper — weight decay × max-pool ({claims.WD_POOL_SETTING}; points [95 % t interval], "
            "paired per seed): " + "; ".join(clauses) + ".")


def _not_yet_run(name: str) -> str:
    return f"not yet run: `python -m benchmarks.experiments run {name}`"


def _half_width(p) -> float:
    """A paired difference's 95 % interval half-width (0 without an interval): its error bar."""
    return (p.interval[1] - p.interval[0]) / 2 if p.interval else 0


def _accuracy_rows(src, name: str, budgets, first: str) -> list[str]:
    """Table rows `| first | budget | seeds | baseline | TrAct | TrAct − baseline |` of one experiment, or one row
    saying it has not run yet."""
    from .claims.wd_pool import WD_POOL_BUDGETS

    rows = []
    for b in budgets or WD_POOL_BUDGETS:
        base, tr = src.top1(name, b, "baseline"), src.top1(name, b, "tract-l0.1")
        if base and tr:
            rows.append(f"| {first} | {b} | {len(claims.paired(tr, base).seeds)} | {pm(stats(list(base.values())))} | "
                        f"{pm(stats(list(tr.values())))} | {claims.paired(tr, base).text()} |")
    return rows or [f"| {first} | — | 0 | {_not_yet_run(name)} | | |"]


def _model(name: str, registry: dict) -> str:
    args = registry[name]["args"]
    return args[args.index("--model") + 1] if "--model" in args else "resnet18"


def stem_section(src=None, registry=None) -> list[str]:
    """Not in the paper: what of the max-pool stem keeps TrAct's gain (`StemCell` registrations): each stem's
    accuracies and gain per budget (a stem not yet collected shows the command that trains it), each new stem's gain
    against the references', paired per seed, and their plot."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    cells, new = claims.stem_cells(registry), claims.new_stems(registry)
    if not new or claims.MAXPOOL not in cells or claims.NOPOOL not in cells:
        return []
    gains = claims.stem_gains(src, registry)
    label = {stem: item.label for stem, (_, item) in cells.items()}
    lines = ["### Not in the paper: what of the max-pool stem keeps TrAct's gain (ResNet-18, SGD, no weight decay)", "",
             f"The stems compared ({claims.STEM_SETTING}, the weight decay × max-pool protocol): "
             + "; ".join(f"{label[stem]}: `{_model(name, registry)}` (`{name}`)" for stem, (name, _) in cells.items())
             + f". With {' and with '.join(label[stem] for stem in new)} the stages see the 16x16 maps they see after "
             f"{label[claims.MAXPOOL]}, without its max. If these keep TrAct's gain as "
             f"{label[claims.MAXPOOL]} does, the resolution after the stem is what matters; if they lose it as with "
             f"{label[claims.NOPOOL]}, the max's sparse gradient routing (each pooled value's gradient reaches one stem "
             "output). Final test top-1 %, mean ± std over seeds; TrAct − baseline paired per seed, points [95 % t "
             "interval]:", "",
             "| stem | budget | seeds | baseline | TrAct | TrAct − baseline |", "|---|---:|---:|---:|---:|---:|"]
    for stem, (name, _) in cells.items():
        lines += _accuracy_rows(src, name, sorted(gains.get(stem, {})), label[stem])
    diffs = claims.stem_differences(src, registry)
    if diffs:
        lines += ["", "TrAct's gain with each new stem − with each reference, paired per seed, points [95 % t interval]:",
                  ""] + [f"- {label[stem]} − {label[ref]}: " + "; ".join(f"{b} ep {p.text()}" for b, p in parts.items())
                         for (stem, ref), parts in diffs.items()]
    if any(stem in gains for stem in new):
        budgets = sorted({b for g in gains.values() for b in g})
        values = {(label[stem], f"{b} epochs"): g[b].mean for stem, g in gains.items() for b in g}
        errors = {(label[stem], f"{b} epochs"): _half_width(g[b]) for stem, g in gains.items() for b in g}
        bar_plot(os.path.join(experiments.COLLECTED, "stems.png"), [label[s] for s in cells if s in gains],
                 [f"{b} epochs" for b in budgets], values, errors=errors, ylabel="TrAct − baseline (points), 95 % t CI",
                 title=f"What of the max-pool keeps TrAct's gain ({claims.STEM_SETTING})")
        lines += ["", "![stems](benchmarks/results/experiments/stems.png)"]
    return lines + [""]


STEM_WORDS = {claims.KEEPS: "keeps it as {max} does", claims.LOSES: "loses it as with {none}",
              claims.BETWEEN: "keeps part of it (clearly below {max}, clearly above {none})",
              claims.UNCLEAR: "is not clearly different from either", claims.NEITHER: "fits neither pattern"}


def stem_sentence(src=None, registry=None) -> Optional[str]:
    """One sentence on the stem ablation: the rule the data support at the longest budget, with the intervals that
    say so. None until every stem has 2 paired seeds at each budget."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    rule = claims.stem_rule(src, registry)
    if rule is None:
        return None
    cells = claims.stem_cells(registry)
    label = {stem: item.label for stem, (_, item) in cells.items()}
    ref = {"max": label[claims.MAXPOOL], "none": label[claims.NOPOOL]}
    hi = max(claims.WD_POOL_BUDGETS)
    kinds = {kind for kind, *_ in rule.values()}
    new = " and ".join(label[stem] for stem in rule)
    if kinds == {claims.KEEPS}:
        found = (f"{new} keep it as {ref['max']} does (clearly above {ref['none']}, not clearly below {ref['max']}), "
                 "so the resolution after the stem is what keeps it, not the max")
    elif kinds == {claims.LOSES}:
        found = (f"{new} lose it as with {ref['none']} (clearly below {ref['max']}, not clearly above {ref['none']}), "
                 "so the max's sparse gradient routing is what keeps it, not the resolution")
    else:
        found = (("neither rule fits alone: " if kinds <= {claims.KEEPS, claims.LOSES} else
                  "the data do not decide between the resolution and the max's gradient routing: ")
                 + ", ".join(f"{label[stem]} {STEM_WORDS[kind].format(**ref)}" for stem, (kind, *_) in rule.items()))
    gains = claims.stem_gains(src, registry)
    numbers = [f"{label[stem]} {gain.text()}, − {ref['max']} {vs_max.text()}, − {ref['none']} {vs_none.text()}"
               for stem, (_, gain, vs_max, vs_none) in rule.items()]
    numbers += [f"{label[r]} {gains[r][hi].text()}" for r in (claims.MAXPOOL, claims.NOPOOL)]
    return (f"Not in the paper — what of the max-pool keeps TrAct's gain ({claims.STEM_SETTING}; TrAct − baseline at "
            f"{hi} epochs, points [95 % t interval], paired per seed): {found} ({'; '.join(numbers)}).")


def contrast_section(src=None, registry=None) -> list[str]:
    """Not in the paper's experiments: TrAct's gain against the spread of the training images' contrast
    (`ContrastCell` registrations): per c and budget the accuracies, the gain and its change from c = 1 (a point not
    yet collected shows the command that trains it), and the gain against c, one line per budget."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    cells = claims.contrast_cells(registry)
    if len(cells) < 2 or 1.0 not in cells:
        return []
    gains, changes = claims.contrast_gains(src, registry), claims.contrast_changes(src, registry)
    lines = ["### Not in the paper: TrAct's gain when the training images' contrast varies (ResNet-18, SGD)", "",
             f"{claims.CONTRAST_SETTING[0].upper() + claims.CONTRAST_SETTING[1:]}; each training image's contrast "
             "scaled around its mean brightness (over all channels and pixels) by its own factor, log-uniform in [c, "
             "1] and fixed per seed and image (`--contrast-spread c`, src/trainact/harness/data/contrast.py); test "
             "images unchanged. " + "; ".join(f"c = {c:g}: `{name}`" for c, (name, _) in cells.items())
             + f". {claims.CONTRAST_PREDICTION[0].upper() + claims.CONTRAST_PREDICTION[1:]}. Final test top-1 %, mean "
             "± std over seeds; differences paired per seed, points [95 % t interval]:", "",
             "| c | budget | seeds | baseline | TrAct | TrAct − baseline |", "|---:|---:|---:|---:|---:|---:|"]
    for c, (name, _) in cells.items():
        lines += _accuracy_rows(src, name, sorted(gains.get(c, {})), f"{c:g}")
    if changes:
        lines += ["", "TrAct's gain at c − at c = 1, paired per seed, points [95 % t interval]:", ""]
        lines += [f"- c = {c:g}: " + "; ".join(f"{b} ep {p.text()}" for b, p in parts.items())
                  for c, parts in changes.items()]
        budgets = sorted({b for g in gains.values() for b in g})
        series = {f"{b} epochs": [(c, g[b]) for c, g in gains.items() if b in g] for b in budgets}
        paired_gain_plot(os.path.join(experiments.COLLECTED, "contrast.png"), series,
                         title=f"TrAct − baseline against the contrast spread ({claims.CONTRAST_SETTING})",
                         xlabel="contrast spread c (each training image's factor log-uniform in [c, 1])")
        lines += ["", "![contrast](benchmarks/results/experiments/contrast.png)"]
    return lines + [""]


def contrast_sentence(src=None, registry=None) -> list[str]:
    """The README's one sentence on the contrast sweep (whichever way it falls), once every c has 2 paired seeds
    at each budget; [] before."""
    src, registry = src or claims.Collected(experiments.COLLECTED), _registry(registry)
    cells = claims.contrast_cells(registry)
    gains, changes = claims.contrast_gains(src, registry), claims.contrast_changes(src, registry)
    budgets = claims.WD_POOL_BUDGETS
    if len(cells) < 2 or any(c not in gains or any(b not in gains[c] or gains[c][b].n < 2 for b in budgets)
                             for c in cells):
        return []
    low = min(cells)
    sides = [p.side() for parts in changes.values() for p in parts.values()]
    verdict = ("as the paper's argument predicts" if all(s > 0 for s in sides) else
               "against the paper's argument, which predicts it to grow" if any(s < 0 for s in sides) else
               "partly as the paper's argument predicts (it predicts growth at every c and budget)" if any(sides) else
               "the paper's argument predicts growth, which these runs do not show clearly")
    at = "; ".join(f"at {b} epochs " + ", ".join(f"c = {c:g} {gains[c][b].text()}" for c in cells) for b in budgets)
    change = " and ".join(f"{claims.TREND_VERB[claims.trend(changes[low][b])]} at {b} epochs (change "
                          f"{changes[low][b].text()})" for b in budgets)
    return [f"Not in the paper — training images of varied contrast ({claims.CONTRAST_SETTING}; each training "
            "image's contrast scaled around its mean brightness by its own log-uniform factor in [c, 1]; points [95 % "
            f"t interval], paired per seed): TrAct's gain {at}; from c = 1 to c = {low:g} it {change}: {verdict}.", ""]


def reproducibility_section(src=None, registry=None) -> list[str]:
    """The same seeds trained again on another machine of the same kind (`Repro`): what changes, and what not."""
    src = src or claims.Collected(experiments.COLLECTED)
    out = []
    for again, item in entries(_registry(registry), Repro):
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
                       (("Then", load_experiment(then)), ("Again", load_experiment(again))) if got)
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
    moved = {label: claims.paired(cols[("again", label)], cols[("then", label)]) for label in ("baseline", "tract-l0.1")}
    gain = {run: claims.paired(cols[(run, "tract-l0.1")], cols[(run, "baseline")]) for run in ("then", "again")}
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
                  f"{claims.difference(gain['again'], gain['then']).text()}. " + verdict, ""]
    return lines


def wall_time_section(registry=None) -> list[str]:
    """Training wall time per epoch of every collected run, TrAct against the baseline, per experiment."""
    lines = ["### Wall time per epoch of the runs above", "",
             "Mean over every finished run of an experiment (all budgets, lrs and seeds) of its training time / "
             "epochs, evaluation excluded. The runs shared two cores with whatever else ran on the machine, so "
             "differences of a few percent are noise; the controlled overhead measurement is the one above.", "",
             "| experiment | baseline runs | baseline s/epoch | TrAct runs | TrAct s/epoch | TrAct / baseline |",
             "|---|---:|---:|---:|---:|---:|"]
    found = False
    for name in _registry(registry):
        folder = os.path.join(experiments.COLLECTED, name)
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
