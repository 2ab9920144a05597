"""Results of a comparison: loading run JSON, mean ± std over seeds, the speed-up, the table, summary.json.

Everything here works from the files in the output directory alone (`config.json`, each run's
`summary.json` and `metrics.jsonl`), so `trainact report DIR` rebuilds exactly what `trainact compare` printed.

Speed-up (the paper's "TrAct@100 epochs matches the baseline@800"): the baseline's mean final top-1 at its
best lr is a function of the budget, known at the measured budgets and joined piecewise linearly between
them. For a TrAct budget t with mean final top-1 `acc`, the matched baseline budget is the first budget
where that curve reaches `acc`; the speed-up is matched / t. Nothing is extrapolated:
- `acc` above every baseline point: the baseline never got there; reported as "≥ X" with
  X = longest baseline budget / t (a lower bound).
- `acc` below the shortest baseline budget's accuracy: reported as "< X" with X = shortest budget / t (an upper
  bound, assuming the baseline does not get worse with more epochs below its shortest measured budget); the
  ratio is None.
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from trainact.harness.config import CompareConfig
from trainact.harness.protocol import RunSpec, fmt_num, needs_grid, select_best_lr


@dataclass
class RunResult:
    spec: RunSpec
    summary: dict
    metrics: list = field(default_factory=list)  # one dict per epoch, from metrics.jsonl


# ---------------------------------------------------------------------------------------------- files
def read_jsonl(path: Path) -> list:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def load_config(out_dir) -> CompareConfig:
    path = Path(out_dir) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: is {out_dir} the output directory of `trainact compare`?")
    with open(path) as f:
        return CompareConfig.from_dict(json.load(f)["config"])


def load_runs(out_dir) -> list[RunResult]:
    """Every completed run below `out_dir` (a summary.json saying completed), with its per-epoch metrics."""
    out_dir = Path(out_dir)
    runs = []
    for path in sorted(out_dir.glob("b*/*/lr*/s*/summary.json")):
        with open(path) as f:
            summary = json.load(f)
        if not summary.get("completed"):
            continue
        metrics_path = path.parent / "metrics.jsonl"
        metrics = read_jsonl(metrics_path) if metrics_path.is_file() else []
        runs.append(RunResult(RunSpec.from_dict(summary["run"]), summary, metrics))
    return runs


# ---------------------------------------------------------------------------------------------- statistics
def stats(values: Sequence[float]) -> dict:
    """mean and sample standard deviation (None for a single value: one seed says nothing about spread)."""
    values = [float(v) for v in values]
    return {"n": len(values), "mean": statistics.fmean(values),
            "std": statistics.stdev(values) if len(values) > 1 else None}


def match_budget(curve: Sequence[tuple[float, float]], acc: float, budget: float) -> dict:
    """Which baseline budget reaches `acc`, and the speed-up of a TrAct run of `budget` epochs.

    `curve`: (baseline budget, baseline mean final accuracy) at the measured budgets. Returns a dict with
    `kind` ("interpolated" | "at_least" | "below"), `matched_baseline_epochs` (None unless interpolated),
    `ratio` (matched / budget, None unless interpolated), `bound` (the "≥"/"<" bound otherwise) and `display`.
    """
    if not curve:
        raise ValueError("no baseline budgets to match against")
    pts = sorted((float(b), float(a)) for b, a in curve)
    out = {"tract_budget": budget, "tract_top1": acc, "kind": None, "matched_baseline_epochs": None,
           "ratio": None, "bound": None, "display": None, "note": None}
    b0, a0 = pts[0]
    if acc < a0:
        out.update(kind="below", bound=b0 / budget, display=f"< {b0 / budget:.2f}x",
                   note=f"TrAct@{_fmt_b(budget)} ({acc:.2f}%) is below the baseline@{_fmt_b(b0)} ({a0:.2f}%), "
                        "the shortest measured baseline budget")
        return out
    matched = b0 if acc == a0 else None
    if matched is None:
        for (bl, al), (bh, ah) in zip(pts, pts[1:]):
            if al < acc <= ah:  # the first segment where the baseline curve rises through acc
                matched = bl + (acc - al) / (ah - al) * (bh - bl)
                break
    if matched is None:  # acc above every measured baseline point
        bl = pts[-1][0]
        out.update(kind="at_least", bound=bl / budget, display=f"≥ {bl / budget:.2f}x",
                   note=f"TrAct@{_fmt_b(budget)} ({acc:.2f}%) beats every measured baseline budget, "
                        f"the longest being {_fmt_b(bl)} epochs ({pts[-1][1]:.2f}%)")
        return out
    out.update(kind="interpolated", matched_baseline_epochs=matched, ratio=matched / budget,
               display=f"{matched / budget:.2f}x")
    return out


def _fmt_b(b: float) -> str:
    return str(int(b)) if float(b).is_integer() else f"{b:.3g}"


# ---------------------------------------------------------------------------------------------- analysis
CHANCE_FACTOR = 1.5  # a baseline below 1.5x chance has not started learning: no speed-up is measured against it


def analyse(cfg: CompareConfig, runs: Sequence[RunResult], *, classes: Optional[int] = None) -> dict:
    """Aggregate completed runs: best lr per budget, mean ± std per method and budget, speed-ups, and the closing
    sentence.  `classes` (the data set's): chance is 100/classes %; a speed-up interpolated from a baseline budget
    at chance (below CHANCE_FACTOR x chance) is not reported, and the note says why.

    Works on partial results too (report on an interrupted comparison): what is missing is listed.
    """
    by_spec = {r.spec: r for r in runs}

    # the baseline's lr grid and the best lr per budget (paper's rule, on the grid seeds)
    lr_grid, best = [], {}
    for b in cfg.budgets:
        per_lr = {}
        for lr in cfg.lrs:
            accs = [by_spec[RunSpec(b, "baseline", lr, s)].summary["final_top1"]
                    for s in cfg.grid_seeds if RunSpec(b, "baseline", lr, s) in by_spec]
            if accs:
                per_lr[lr] = accs
        if not needs_grid(cfg):
            best[b] = cfg.lrs[0]
        elif per_lr and len(per_lr) == len(cfg.lrs):
            best[b] = select_best_lr(per_lr)
        for lr, accs in sorted(per_lr.items()):
            lr_grid.append({"budget": b, "lr": lr, "seeds": list(cfg.grid_seeds[: len(accs)]),
                            "top1": stats(accs), "selected": best.get(b) == lr})

    # mean ± std over seeds at the selected lr
    methods = ([("baseline", None)] if "baseline" in cfg.methods else []) + (
        [("tract", lam) for lam in cfg.lams] if "tract" in cfg.methods else [])  # λ as configured, never re-parsed
    rows, missing = [], []
    for b in cfg.budgets:
        if b not in best:
            continue
        for method, lam in methods:
            label = RunSpec(b, method, best[b], 0, lam=lam).label
            specs = [RunSpec(b, method, best[b], s, lam=lam) for s in cfg.seeds]
            done = [by_spec[s] for s in specs if s in by_spec]
            missing += [s.run_id for s in specs if s not in by_spec]
            if not done:
                continue
            top5 = [r.summary.get("final_top5") for r in done]  # absent with 5 classes or fewer
            rows.append({
                "method": method, "label": label, "lam": lam, "budget": b, "lr": best[b],
                "seeds": [r.spec.seed for r in done],
                "top1": stats([r.summary["final_top1"] for r in done]),
                **({"top5": stats(top5)} if None not in top5 else {}),
                "best_top1": stats([r.summary["best_top1"] for r in done]),
                "seconds_per_epoch": stats([r.summary["seconds_per_epoch"] for r in done]),
                "train_images_per_second": stats([r.summary["train_images_per_second"] for r in done]),
            })
    missing += [f"b{b}/baseline (lr grid incomplete)" for b in cfg.budgets if b not in best]

    # speed-up of every TrAct budget against the baseline's curve
    curve = [(r["budget"], r["top1"]["mean"]) for r in rows if r["method"] == "baseline"]
    chance = 100.0 / classes if classes else None
    speedups = []
    if curve:
        for r in rows:
            if r["method"] == "tract":
                s = _at_chance(match_budget(curve, r["top1"]["mean"], r["budget"]), curve, chance)
                s["label"] = r["label"]
                r["speedup"] = s["display"]
                speedups.append(s)
    return {"best_lr": [{"budget": b, "lr": lr} for b, lr in sorted(best.items())], "lr_grid": lr_grid,
            "results": rows, "speedups": speedups, "missing": missing, "complete": not missing,
            "conclusion": conclusion(rows, chance)}


def _at_chance(s: dict, curve: list, chance: Optional[float]) -> dict:
    """A speed-up whose baseline bracket starts at chance is no measurement: withdrawn, with the reason."""
    if chance is None or s["kind"] not in ("interpolated", "below"):
        return s
    below = [(b, a) for b, a in sorted(curve) if s["kind"] == "below" or b <= s["matched_baseline_epochs"]]
    b, a = below[-1] if s["kind"] == "interpolated" else below[0]
    if a >= CHANCE_FACTOR * chance:
        return s
    return {**s, "kind": "baseline_at_chance", "ratio": None, "bound": None, "display": "n/a",
            "note": f"no speed-up for TrAct@{_fmt_b(s['tract_budget'])}: the baseline@{_fmt_b(b)} is at chance "
                    f"({a:.2f}% with chance {chance:.1f}%), it had not started learning; compare the accuracies"}


def conclusion(rows: list, chance: Optional[float] = None) -> Optional[str]:
    """One plain sentence: the accuracy TrAct (first λ) reached at its shortest budget, and at which budget the
    baseline reached it, if it did; how many seeds support it."""
    tract = sorted((r for r in rows if r["method"] == "tract"), key=lambda r: r["budget"])
    base = sorted((r for r in rows if r["method"] == "baseline"), key=lambda r: r["budget"])
    if not tract or not base:
        return None
    first = tract[0]
    acc, b, n = first["top1"]["mean"], first["budget"], first["top1"]["n"]
    reached = [r for r in base if r["top1"]["mean"] >= acc]
    text = f"TrAct ({first['label']}) reached {acc:.1f}% in {b} epochs; " + (
        f"the baseline needed {reached[0]['budget']} epochs ({reached[0]['top1']['mean']:.1f}%)" if reached else
        f"the baseline did not reach it in {base[-1]['budget']} epochs ({base[-1]['top1']['mean']:.1f}%)")
    if chance is not None:
        low = [f"{r['label']}@{r['budget']}" for r in rows if r["top1"]["mean"] < 3 * chance]
        if low:
            text += f" (below 3x chance, {3 * chance:.0f}%: {', '.join(low)})"
    return text + (f" — {n} seeds." if n > 1 else " — 1 seed: indicative only, run more seeds (--seeds 0,1,2).")


def grid_edge_notes(analysis: dict) -> list[str]:
    """A note for every budget whose selected lr is the grid's smallest or largest: the baseline might do better
    outside the grid, so the comparison may flatter TrAct (or not); a wider grid settles it."""
    per_budget: dict = {}
    for g in analysis["lr_grid"]:
        per_budget.setdefault(g["budget"], []).append(g)
    notes = []
    for b, grid in per_budget.items():
        lrs = sorted(g["lr"] for g in grid)
        chosen = [g["lr"] for g in grid if g["selected"]]
        if len(lrs) >= 2 and chosen and chosen[0] in (lrs[0], lrs[-1]):
            side = "smallest" if chosen[0] == lrs[0] else "largest"
            notes.append(f"{_fmt_b(b)} epoch{'' if b == 1 else 's'}: the selected lr {fmt_num(chosen[0])} is the "
                         f"{side} of the grid; the baseline's best lr may lie outside it")
    return notes


def _first_few(items: Sequence[str], n: int = 8) -> str:
    return ", ".join(items[:n]) + (" ..." if len(items) > n else "")


def _footer(analysis: dict, note_prefix: str, missing_line: str) -> list[str]:
    """The lines under a results table: what the speed-up means, its notes, missing runs."""
    lines = []
    if analysis["speedups"]:
        lines += ["", "speed-up = baseline epochs reaching TrAct's final top-1 (linear interpolation between "
                      "measured baseline budgets, never extrapolated) / TrAct epochs"]
    lines += [note_prefix + s["note"] for s in analysis["speedups"] if s["note"]]
    lines += [note_prefix + n for n in grid_edge_notes(analysis)]
    if analysis.get("conclusion"):
        lines += ["", analysis["conclusion"]]
    if analysis["missing"]:
        lines += ["", missing_line]
    return lines


def _has_top5(analysis: dict) -> bool:
    """Whether the table has a top-5 column: only where runs stored top-5 (more than 5 classes)."""
    return any("top5" in r for r in analysis["results"])


def pm(s: dict, *, aligned: bool = False) -> str:
    """'mean ± std' of a stats dict (just the mean for one seed); `aligned`: fixed widths for a text table."""
    if aligned:
        return f"{s['mean']:6.2f} ± {s['std']:5.2f}" if s.get("std") is not None else f"{s['mean']:6.2f}        "
    return f"{s['mean']:.2f} ± {s['std']:.2f}" if s.get("std") is not None else f"{s['mean']:.2f}"


def format_table(analysis: dict) -> str:
    """The final terminal table: mean ± std over seeds of the final test accuracy, and the speed-up."""
    lines = []
    top5 = _has_top5(analysis)
    if any(not g["selected"] for g in analysis["lr_grid"]):
        lines.append("baseline lr grid (final test top-1 %, mean over the grid seeds; * = selected):")
        for g in analysis["lr_grid"]:
            lines.append(f"  budget {g['budget']:>4}  lr {fmt_num(g['lr']):>8}  {pm(g['top1'], aligned=True)}  (n={g['top1']['n']})"
                         + ("  *" if g["selected"] else ""))
        lines.append("")
    header = (f"{'budget':>6}  {'method':<14} {'lr':>8} {'n':>2}  {'top-1 %':>15}  "
              + (f"{'top-5 %':>15}  " if top5 else "") + f"{'s/epoch':>8}  speed-up")
    lines += [header, "-" * len(header)]
    absent = "-".rjust(14)  # as wide as pm()
    for r in analysis["results"]:
        cell5 = f"{pm(r['top5'], aligned=True) if 'top5' in r else absent}  " if top5 else ""
        lines.append(f"{r['budget']:>6}  {r['label']:<14} {fmt_num(r['lr']):>8} {r['top1']['n']:>2}  "
                     f"{pm(r['top1'], aligned=True)}  {cell5}{r['seconds_per_epoch']['mean']:8.2f}  "
                     f"{r.get('speedup', '')}")
    missing_line = f"missing runs ({len(analysis['missing'])}): " + _first_few(analysis["missing"])
    return "\n".join(lines + _footer(analysis, "  note: ", missing_line))


def format_markdown(analysis: dict, *, title: str = "") -> str:
    """The same results as :func:`format_table`, as a Markdown table (for README/BENCHMARKS sections)."""
    lines = [f"**{title}**", ""] if title else []
    grid = analysis["lr_grid"]
    if any(not g["selected"] for g in grid):
        per_budget = {}
        for g in grid:
            text = f"{fmt_num(g['lr'])} → {g['top1']['mean']:.2f}"
            per_budget.setdefault(g["budget"], []).append(f"**{text}**" if g["selected"] else text)
        lines += ["Baseline lr grid (final test top-1 %, grid seeds; bold = selected, TrAct uses it): "
                  + "; ".join(f"{b} epochs: " + ", ".join(v) for b, v in per_budget.items()), ""]
    top5 = _has_top5(analysis)
    lines += ["| budget (epochs) | method | lr | seeds | test top-1 % | " + ("test top-5 % | " if top5 else "")
              + "s/epoch | speed-up |",
              "|---:|---|---:|---:|---:|" + ("---:|" if top5 else "") + "---:|---|"]
    for r in analysis["results"]:
        cell5 = f"{pm(r['top5']) if 'top5' in r else '-'} | " if top5 else ""
        lines.append(f"| {r['budget']} | {r['label']} | {fmt_num(r['lr'])} | {r['top1']['n']} | {pm(r['top1'])} | "
                     f"{cell5}{r['seconds_per_epoch']['mean']:.1f} | {r.get('speedup', '')} |")
    missing_line = (f"Missing runs ({len(analysis['missing'])}, comparison unfinished): "
                    + _first_few(analysis["missing"]))
    return "\n".join(lines + _footer(analysis, "- ", missing_line))


def summarize(out_dir, cfg: Optional[CompareConfig] = None) -> dict:
    """Load everything from `out_dir` and return the top-level summary (without writing it)."""
    out_dir = Path(out_dir)
    cfg = cfg or load_config(out_dir)
    with open(out_dir / "config.json") as f:
        env = json.load(f).get("environment", {})
    runs = load_runs(out_dir)
    classes = env.get("dataset", {}).get("classes")
    analysis = analyse(cfg, runs, classes=classes if isinstance(classes, int) and classes > 0 else None)
    return {"config": cfg.to_dict(), "environment": env, **analysis, "runs": sorted(r.spec.run_id for r in runs)}
