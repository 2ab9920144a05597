"""Size the architecture sweep (the zoo-* experiments of experiments.py): time each model's training step, with and
without TrAct, its evaluation and its checkpoint, and estimate every experiment's CPU time at the registered subset
and budgets. Writes the measurements to benchmarks/results/zoo-sizing-cpu.json and the table to
benchmarks/zoo_sizing.md; prints the table.

    PYTHONPATH=src python -m benchmarks.size_zoo                      # every zoo model, 3 timed steps each
    PYTHONPATH=src python -m benchmarks.size_zoo deit-tiny --steps 5  # some models (prints only)
    PYTHONPATH=src python -m benchmarks.size_zoo --from-json          # the stored measurements, current settings

How: the model is built as `trainact compare` builds it from the experiment's own command (CIFAR-10 shapes: 10
classes, 3x32x32), batches come from the harness's BatchLoader (crop and flip included), the optimizer from
`make_optimizers`. Each step (forward, backward, SGD step, batch 128) runs once to warm up, then `--steps` times;
the median counts. Evaluation: batches of 256 in eval mode; the checkpoint: `torch.save` of the model and optimizer
state into memory (the harness writes one after every epoch but the last).

The clock is this process's CPU time, with the sweep's thread count (its --threads, 1). It was written next to a
long training job of two threads: with two threads of its own, the step of the width-16 ResNet-18 took 3.3 s of
wall time instead of 0.25 s on one thread (four threads on two cores wait for each other at every barrier), and its
CPU time, inflated by that waiting, 3.3 s too. One thread gets a core to itself and its CPU time counts only the
time it ran, so it is what the step costs on a quiet core (shared caches and memory bandwidth still make it a
little high: the estimate errs long). The wall / CPU column shows what the load did to the wall clock. One thread
per run is also how the sweep runs best here: two parts side by side, one per core, so its wall time on this 2-core
machine is about half its core-hours.
"""
from __future__ import annotations

import argparse
import io
import json
import math
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

import trainact

from . import common
from . import experiments

HERE = Path(__file__).resolve().parent
TEST_IMAGES, NUM_CLASSES, SHAPE = 10_000, 10, (3, 32, 32)  # CIFAR-10's test set and images
EVAL_BATCH = 256  # the harness's test batches: max(batch size, 256)
SIZING_MD = HERE / "zoo_sizing.md"
SIZING_JSON = os.path.join(common.RESULTS, "zoo-sizing-cpu.json")


def _cpu_and_wall(fn, steps: int) -> tuple[float, float]:
    """Median CPU and wall seconds of `fn()` over `steps` calls, after one warm-up call."""
    fn()
    cpu, wall = [], []
    for _ in range(steps):
        c0, w0 = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return statistics.median(cpu), statistics.median(wall)


def measure(key: str, steps: int) -> dict:
    """Per-step, per-evaluation and per-checkpoint CPU seconds of zoo model `key`, as its experiment trains it."""
    from trainact.harness.data import BatchLoader
    from trainact.harness.models import build_model
    from trainact.harness.train import make_optimizers

    cfg = config(f"zoo-{key}")
    gen = torch.Generator().manual_seed(0)
    n = cfg.batch_size * (steps + 1)
    images = torch.randint(0, 256, (n, *SHAPE), dtype=torch.uint8, generator=gen)
    labels = torch.arange(n) % NUM_CLASSES
    stats = dict(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26), input_range=cfg.input_range)
    train = BatchLoader(images, labels, batch_size=cfg.batch_size, train=True, seed=0, **stats)
    test = BatchLoader(images, labels, batch_size=max(cfg.batch_size, EVAL_BATCH), train=False, **stats)
    example = next(iter(test.epoch(0)))[0][:2]
    criterion = nn.CrossEntropyLoss()

    def build(lam):
        torch.manual_seed(0)
        model = build_model(cfg.model, num_classes=NUM_CLASSES, image_size=SHAPE[1], in_channels=SHAPE[0],
                            **cfg.model_options())
        first = trainact.find_first_layer(model, example_input=example)
        if lam is not None:
            trainact.apply(model, lam, layer=first)
        model.train()
        return model, first, make_optimizers(model, first, cfg.lrs[0], cfg)

    def stepper(model, opts):
        batches = iter(())

        def step():
            nonlocal batches
            try:
                x, y = next(batches)
            except StopIteration:
                batches = iter(train.epoch(0))
                x, y = next(batches)
            for o in opts:
                o.zero_grad(set_to_none=True)
            criterion(model(x), y).backward()
            for o in opts:
                o.step()
        return step

    row = {"experiment": f"zoo-{key}", "model": cfg.model, "options": cfg.model_options()}
    model, first, opts = build(None)
    row["first_layer"] = first
    row["params_m"] = sum(p.numel() for p in model.parameters()) / 1e6
    row["step_cpu"], row["step_wall"] = _cpu_and_wall(stepper(model, opts), steps)

    def save():
        torch.save({"model": model.state_dict(), "optimizers": [o.state_dict() for o in opts]}, io.BytesIO())
    row["checkpoint_cpu"], _ = _cpu_and_wall(save, 1)

    x = next(iter(test.epoch(0)))[0]

    @torch.no_grad()
    def evaluate():
        model.eval()
        model(x)
        model.train()
    cpu, _ = _cpu_and_wall(evaluate, steps)
    row["eval_cpu_per_image"] = cpu / x.shape[0]
    del model, opts
    model, _, opts = build(cfg.lams[0])
    row["tract_step_cpu"], row["tract_step_wall"] = _cpu_and_wall(stepper(model, opts), steps)
    return row


def config(name: str):
    """The CompareConfig of experiment `name`; an lr taken from another experiment's grid is any lr here (the runs
    it expands into do not depend on it)."""
    e = experiments.EXPERIMENTS[name]
    return common.compare_config(e["args"] + (["--lr", "0.1"] if e["lr_from"] else []) + ["--out", f"runs/{name}"])


def experiment_seconds(row: dict, cfg) -> dict:
    """CPU seconds of one experiment of this model: every run its configuration expands into (the baseline's lr
    grid, then the chosen lr), each `budget` epochs of steps, its evaluations and its checkpoints."""
    from trainact.harness.protocol import all_runs

    steps = math.ceil(cfg.train_subset / cfg.batch_size)
    evaluation = TEST_IMAGES * row["eval_cpu_per_image"]
    train = fixed = 0.0
    runs = all_runs(cfg, {b: cfg.lrs[0] for b in cfg.budgets})
    for run in runs:
        step = row["step_cpu"] if run.method == "baseline" else row["tract_step_cpu"]
        evals = sum(1 for e in range(1, run.budget + 1) if e % cfg.eval_every == 0 or e == run.budget)
        train += run.budget * steps * step
        fixed += evals * evaluation + (run.budget - 1) * row["checkpoint_cpu"]
    return {"runs": len(runs), "train": train, "fixed": fixed, "total": train + fixed}


def estimate(row: dict) -> dict:
    """Seconds of an epoch (baseline, TrAct) and of both experiments of zoo model row["key"]."""
    full, short = config(f"zoo-{row['key']}"), config(f"zoo-{row['key']}-two-thirds")
    steps = math.ceil(full.train_subset / full.batch_size)
    out = {"epoch_baseline": steps * row["step_cpu"], "epoch_tract": steps * row["tract_step_cpu"],
           "evaluation": TEST_IMAGES * row["eval_cpu_per_image"],
           "full": experiment_seconds(row, full), "two_thirds": experiment_seconds(row, short)}
    out["total"] = out["full"]["total"] + out["two_thirds"]["total"]
    return out


def split(rows: list, estimates: dict) -> list:
    """The models in two parts of nearly equal time (largest first, each to the lighter part)."""
    parts = [[], []]
    load = [0.0, 0.0]
    for row in sorted(rows, key=lambda r: -estimates[r["key"]]["total"]):
        i = load.index(min(load))
        parts[i].append(row["key"])
        load[i] += estimates[row["key"]]["total"]
    return [(p, t) for p, t in zip(parts, load)]


def sweep_settings(keys: list, target_hours: float) -> dict:
    """The registered sweep's settings that the estimates use (those of the first model's pair of experiments)."""
    from trainact.harness.protocol import all_runs

    cfg, short = config(f"zoo-{keys[0]}"), config(f"zoo-{keys[0]}-two-thirds")
    return {"subset": cfg.train_subset, "budget": cfg.budgets[0], "short": short.budgets[0], "lrs": list(cfg.lrs),
            "seeds": len(cfg.seeds), "batch": cfg.batch_size,
            "runs_full": len(all_runs(cfg, {b: cfg.lrs[0] for b in cfg.budgets})),
            "runs_short": len(all_runs(short, {b: short.lrs[0] for b in short.budgets})),
            "steps_per_epoch": math.ceil(cfg.train_subset / cfg.batch_size), "target_hours": target_hours}


def markdown(result: dict, sweep: dict, estimates: dict) -> str:
    """The sizing table of measured `result` under the registered `sweep`, with each model's `estimates`."""
    s, rows = sweep, result["models"]
    total = sum(estimates[r["key"]]["total"] for r in rows)
    lines = [
        "# Sizing the architecture sweep (zoo-*)", "",
        f"Generated by `PYTHONPATH=src python -m benchmarks.size_zoo` ({result['machine']['date']}, "
        f"{result['machine']['cpu']}, torch {result['machine']['torch']}, {result['threads']} thread, load average "
        f"{result['load_before']:.1f} before / {result['load_after']:.1f} after); the measurements are in "
        "`benchmarks/results/zoo-sizing-cpu.json` (`--from-json` recomputes this page from them for a changed subset "
        "or budget), the method in the script's docstring.", "",
        f"Each model as its experiment trains it: a class-balanced subset of {s['subset']} CIFAR-10 images, batch "
        f"{s['batch']}, {s['steps_per_epoch']} steps an epoch. zoo-<model> trains {s['runs_full']} runs of "
        f"{s['budget']} epochs: the baseline at lr {' and '.join(map(str, s['lrs']))} with seed 0, then the "
        f"baseline's other seeds and TrAct ({s['seeds']} seeds) at the lr it chose; zoo-<model>-two-thirds "
        f"{s['runs_short']} TrAct runs of {s['short']} epochs. Every run evaluates the {TEST_IMAGES} test images "
        "once, at its end, and saves a checkpoint after each epoch but the last. Seconds are CPU seconds of one "
        f"thread, the median of {result['timed_steps']} steps after a warm-up one; wall / CPU is the slow-down the "
        "machine's load caused.", "",
        "| model | `--model` | params (M) | first layer | s/step | TrAct s/step | wall / CPU | s/epoch | TrAct s/epoch "
        "| eval s | zoo-<model> min | two-thirds min |",
        "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        e = estimates[r["key"]]
        model = r["model"] + "".join(f" {k}={v}" for k, v in r["options"].items())
        lines.append(
            f"| {r['key']} | {model} | {r['params_m']:.1f} | {r['first_layer']} | {r['step_cpu']:.2f} | "
            f"{r['tract_step_cpu']:.2f} | {r['step_wall'] / r['step_cpu']:.1f} | {e['epoch_baseline']:.1f} | "
            f"{e['epoch_tract']:.1f} | {e['evaluation']:.1f} | {e['full']['total'] / 60:.0f} | "
            f"{e['two_thirds']['total'] / 60:.0f} |")
    whole = {r["key"] for r in rows} == set(experiments.ZOO_MODELS)
    fixed = sum(estimates[r["key"]][x]["fixed"] for r in rows for x in ("full", "two_thirds"))
    per_image = (total - fixed) / s["subset"]  # seconds per training image of the subset, all runs together
    fit = int((s["target_hours"] * 3600 - fixed) / per_image) // 10 * 10  # class-balanced: a multiple of 10
    lines += ["", f"**{'Whole sweep' if whole else 'These models'}: {total / 3600:.1f} CPU (core) hours**, i.e. "
                  f"{total / 7200:.1f} hours on this 2-core machine as two single-thread parts side by side (one "
                  f"part at a time: twice that). Each training image of the subset adds {per_image:.2f} s; "
                  f"evaluations and checkpoints {fixed / 3600:.1f} h"
              + (f"; the largest class-balanced subset within {s['target_hours']:g} core hours is {fit} images."
                 if whole else "."), ""]
    if whole:
        lines += ["Two parts of nearly equal time, one per shell (each model's TrAct at 2/3 takes its lr from its "
                  "grid, so it comes second):", ""]
        for i, (part, seconds) in enumerate(split(rows, estimates), 1):
            names = " ".join(f"zoo-{k} zoo-{k}-two-thirds" for k in part)
            lines += [f"    # part {i}: {seconds / 3600:.1f} h", f"    python -m benchmarks.experiments run {names}"]
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help=f"zoo models (default: all): {', '.join(experiments.ZOO_MODELS)}")
    p.add_argument("--steps", type=int, default=3, help="timed steps per model after one warm-up step")
    p.add_argument("--target-hours", type=float, default=6.0, help="the sweep's CPU budget, for the fitting subset")
    p.add_argument("--from-json", action="store_true",
                   help=f"measure nothing: recompute the estimates and {SIZING_MD.name} from {SIZING_JSON}")
    a = p.parse_args(argv)
    unknown = sorted(set(a.models) - set(experiments.ZOO_MODELS))
    if unknown:
        p.error(f"unknown zoo models {unknown}; known: {', '.join(experiments.ZOO_MODELS)}")
    if a.steps < 1:
        p.error(f"--steps must be >= 1, got {a.steps}")
    if a.from_json and a.models:
        p.error("--from-json recomputes the stored table of every model; name no models")
    keys = a.models or list(experiments.ZOO_MODELS)
    if a.from_json:
        with open(SIZING_JSON) as f:
            result = json.load(f)
    else:
        torch.set_num_threads(config(f"zoo-{keys[0]}").threads or torch.get_num_threads())
        load_before = os.getloadavg()[0]
        rows = []
        for key in keys:
            rows.append({"key": key, **measure(key, a.steps)})
            print(f"{key}: {rows[-1]['step_cpu']:.2f} s/step, TrAct {rows[-1]['tract_step_cpu']:.2f}",
                  file=sys.stderr, flush=True)
        result = {"machine": common.machine_info(), "threads": torch.get_num_threads(), "timed_steps": a.steps,
                  "load_before": load_before, "load_after": os.getloadavg()[0], "models": rows}
    sweep = sweep_settings(keys, a.target_hours)
    estimates = {r["key"]: estimate(r) for r in result["models"]}
    text = markdown(result, sweep, estimates)
    print(text)
    if not a.models:
        if not a.from_json:
            common.write_result(SIZING_JSON, result)
        SIZING_MD.write_text(text)
        print(f"wrote {SIZING_MD}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
