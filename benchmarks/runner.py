"""The command line of `python -m benchmarks.experiments` (list, run, collect, status, plan): trains registered
experiments (resuming, reusing the finished runs they share), collects their small JSON into
benchmarks/results/experiments/, says what is left to train, and plans GPU windows. The registry, and each
experiment's `trainact compare` command, are experiments.py's, read from there when called."""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from trainact.harness.config import CompareConfig
from trainact.harness.env import write_json_atomic
from trainact.harness.results import load_config, summarize

from . import experiments
from .collected import runs
from .common import compare_config
from .experiments import check_data, command, launcher, runs_root, with_budgets, with_device


def reuse_runs(name: str, root: Path) -> int:
    """Copy into `root / name` the finished runs it shares with the experiments named in `reuse` (trained under
    `root` or collected), and its own runs already collected into the repository (an earlier session's or another
    machine's); returns how many.

    A source counts only if its settings match (`CompareConfig.differences`); a run already there is kept.
    From another experiment only the runs this one needs are taken; from the collected folder every run is, so
    what was collected stays collected when the experiment changes (a shifted lr grid keeps its old runs as data).
    """
    target = compare_config(command(name, root, out=str(root / name)))
    sources = [folder for source in experiments.EXPERIMENTS[name]["reuse"]
               for folder in (root / source, experiments.COLLECTED / source)]
    sources.append(experiments.COLLECTED / name)
    copied = 0
    for src in sources:
        if not (src / "config.json").is_file() or src.resolve() == (root / name).resolve():
            continue
        if target.differences(load_config(src)):
            raise SystemExit(f"{name} cannot reuse {src}: settings differ "
                             f"{target.differences(load_config(src))}")
        for summary in src.glob("b*/*/lr*/s*/summary.json"):
            with open(summary) as f:
                s = json.load(f)
            run = s["run"]
            needed = (run["budget"] in target.budgets and run["lr"] in target.lrs and run["seed"] in target.seeds
                      and run["method"] in target.methods and (run["lam"] is None or run["lam"] in target.lams))
            wanted = s.get("completed") and (needed or src == experiments.COLLECTED / name)
            dest = root / name / summary.parent.relative_to(src)
            if wanted and not (dest / "summary.json").exists():
                shutil.copytree(summary.parent, dest, ignore=shutil.ignore_patterns("checkpoint.pt"))
                copied += 1
    return copied


def compare(name: str, args: list, log) -> int:
    """`trainact compare ARGS` of experiment `name` in its own process(es) (a long run's memory and a crash stay
    there), output to `log`."""
    return subprocess.call([*launcher(name), *args], stdout=log, stderr=log)


def run(names: list, root: Path, budgets: Optional[str] = None, device: Optional[str] = None, jobs: int = 1) -> int:
    for name in names:
        with_budgets(name, command(name), budgets)  # unknown names and budgets fail before anything runs
        check_data(name)
    for name in names:
        copied = reuse_runs(name, root)
        args = with_device(with_budgets(name, command(name, root, out=str(root / name)), budgets), device)
        if jobs > 1:  # an execution setting, like the device: the runs are the same
            args = args + ["--jobs", str(jobs)]
        print(f"== {name}: trainact compare {shlex.join(args)}" + (f" ({copied} runs reused)" if copied else ""),
              flush=True)
        root.mkdir(parents=True, exist_ok=True)
        with open(root / f"{name}.log", "a") as log:
            rc = compare(name, args, log)
        if rc:
            print(f"{name} failed (exit {rc}); see {root / (name + '.log')}", file=sys.stderr)
            return rc
        collect([name], root)
    return 0


def collect(names: list, root: Path) -> None:
    """Copy the JSON of each experiment's finished runs into the repository; recompute summary and plots."""
    from trainact.harness.plots import make_plots
    from trainact.harness.results import load_runs

    for name in names:
        src = root / name
        if not (src / "config.json").is_file():
            print(f"{name}: nothing to collect in {src}")
            continue
        reuse_runs(name, root)  # what was collected before stays collected
        dest = experiments.COLLECTED / name
        if dest.exists():
            shutil.rmtree(dest)
        with open(src / "config.json") as f:
            top = json.load(f)
        args = command(name, root)
        # the experiment's whole configuration, even where `run --budgets` trained some of it so far
        top["config"] = compare_config(args).to_dict()
        dataset = top.get("environment", {}).get("dataset", {})
        if "source" in dataset:
            dataset["source"] = top["config"]["data"]
        top["command"] = "trainact compare " + shlex.join(args)
        write_json_atomic(dest / "config.json", top)
        n = 0
        for summary in sorted(src.glob("b*/*/lr*/s*/summary.json")):
            with open(summary) as f:
                if not json.load(f).get("completed"):
                    continue
            run_dir = dest / summary.parent.relative_to(src)
            run_dir.mkdir(parents=True)
            for file in ("summary.json", "metrics.jsonl"):
                if (summary.parent / file).is_file():
                    shutil.copy2(summary.parent / file, run_dir / file)
            n += 1
        result = summarize(dest)
        write_json_atomic(dest / "summary.json", result)
        make_plots(dest, result, load_runs(dest))
        for file in dest.rglob("*.json*"):  # nothing of this machine goes into the repository
            text = file.read_text()
            for local in {str(root), str(experiments.HERE.parent), str(Path(experiments.DATA).resolve())}:
                if local in text:
                    raise SystemExit(f"{file} contains the local path {local}; not collecting it")
        print(f"{name}: {n} finished runs collected into {os.path.relpath(dest)}"
              + ("" if result["complete"] else f" ({len(result['missing'])} missing)"))


def status(names: list, root: Path) -> None:
    """What each experiment has finished (trained under `root` or collected) and what is still to train."""
    for name in names:
        found = [f for f in (root / name, experiments.COLLECTED / name) if (f / "config.json").is_file()]
        if not found:
            print(f"{name}: not started")
            continue
        whole = compare_config(command(name, root))  # the experiment's whole configuration, not a `run --budgets` part
        best = max((summarize(f, whole) for f in found), key=lambda r: sum(x["top1"]["n"] for x in r["results"]))
        done = sum(r["top1"]["n"] for r in best["results"])
        missing = best["missing"]
        print(f"{name}: " + ("complete" if best["complete"] else
                             f"{done} runs at the selected lrs, missing {len(missing)}: " + ", ".join(missing[:6])
                             + (" ..." if len(missing) > 6 else "")))


EPOCH_TIMES = Path(__file__).resolve().parent / "results" / "epoch-cuda.json"  # bench_epoch.py's GPU measurement


def _bench_case(cfg: CompareConfig) -> Optional[str]:
    """The bench_epoch.py case and variant an experiment trains as, or None."""
    case = {"resnet18-maxpool": "resnet18-authors", "vit": "vit-cifar"}.get(cfg.model)
    variant = "compiled" if cfg.compile else "bf16-cl" if cfg.channels_last and cfg.amp == "bf16" else "eager"
    return None if case is None else f"{case}/{variant}"


def plan(names: list, root: Path, minutes: float, jobs: int = 1, times: Path = EPOCH_TIMES) -> list:
    """The whole units (one seed's runs of an experiment: baseline and TrAct together) that fit in `minutes`, in
    registry order, at the seconds per epoch bench_epoch.py measured with `jobs` runs side by side; units already
    collected or trained under `root` are left out. Returns [(name, seed, minutes)] and prints the plan."""
    if not times.is_file():
        raise SystemExit(f"plan: no GPU epoch times at {times}; measure them first on the GPU "
                         "(python -m benchmarks.bench_epoch --device cuda)")
    measured = {(f"{r['case']}/{r['variant']}", r["method"], r["jobs"]): r
                for r in json.loads(times.read_text())["results"]}
    chosen, used = [], 0.0
    for name in names:
        cfg = compare_config(command(name))
        key = _bench_case(cfg)
        if key is None:
            continue
        done = {(r["run"]["seed"], r["run"]["method"]) for folder in (root / name, experiments.COLLECTED / name)
                for r in runs(folder)}
        for seed in cfg.seeds:
            methods = [m for m in cfg.methods if (seed, m) not in done]
            rows = [measured.get((key, m, jobs)) for m in methods]
            if not methods:
                continue
            if None in rows:
                raise SystemExit(f"plan: {name} trains as {key}, which bench_epoch.py has not measured with "
                                 f"{jobs} job(s) ({times})")
            budget = max(cfg.budgets)
            # with `jobs` runs side by side, each run's epochs take the per-run time measured at that load
            unit = sum(r["first_epoch_seconds"] + (budget - 1) * r["seconds_per_epoch"] for r in rows) / 60 / jobs
            if used + unit > minutes:
                print(f"{name} seed {seed}: {unit:.1f} min, does not fit ({minutes - used:.1f} min left)")
                continue
            used += unit
            chosen.append((name, seed, unit))
            print(f"{name} seed {seed}: {' + '.join(methods)}, {budget} epochs: {unit:.1f} min (total {used:.1f})")
    print(f"{len(chosen)} whole unit(s) in {used:.1f} of {minutes:g} minutes with {jobs} job(s)")
    return chosen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=experiments.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("action", choices=("list", "run", "collect", "status", "plan"))
    p.add_argument("names", nargs="*", help="experiments (default for list/collect/status: all)")
    p.add_argument("--runs", help="where runs are trained (default: $TRAINACT_RUNS or ./runs)")
    p.add_argument("--budgets", help="run: only these of the experiments' budgets for now, e.g. 1,2 "
                                     "(the rest later; collect reports them as missing)")
    p.add_argument("--device", help="run: train on this device (cpu, cuda, cuda:N) instead of the experiment's own")
    p.add_argument("--minutes", type=float, help="plan: the GPU minutes to fill with whole runs")
    p.add_argument("--jobs", type=int, default=1,
                   help="run: train N runs of each experiment side by side (trainact compare --jobs); plan: runs side "
                        "by side on the GPU (default: 1)")
    a = p.parse_args(argv)
    for option, value in (("--budgets", a.budgets), ("--device", a.device)):
        if value is not None and a.action != "run":
            p.error(f"{option} {value!r} applies to run only, not to {a.action}")
    if (a.minutes is not None) != (a.action == "plan"):
        p.error("plan needs --minutes M (and --minutes applies to plan only)")
    if a.action == "plan" and (a.minutes <= 0 or a.jobs < 1):
        p.error(f"plan: --minutes must be > 0 and --jobs >= 1, got {a.minutes:g} and {a.jobs}")
    root = runs_root(a.runs)
    names = a.names or (list(experiments.EXPERIMENTS) if a.action != "run" else [])
    if a.action == "list":
        for name in names:
            e = experiments.EXPERIMENTS[name]
            launch = "trainact compare" if e["nproc_per_node"] == 1 else \
                f"torchrun --nproc_per_node {e['nproc_per_node']} -m trainact compare"
            extra = f"  wall time per epoch on one GPU: {e['epoch_time']}\n" if e["epoch_time"] else ""
            print(f"{name}: {e['title']}\n  {launch} {shlex.join(command(name))}\n{extra}")
        return 0
    if a.action == "collect":
        collect(names, root)
        return 0
    if a.action == "status":
        status(names, root)
        return 0
    if a.action == "plan":
        plan(a.names or [n for n in experiments.EXPERIMENTS if n.startswith("paper-")], root, a.minutes, a.jobs)
        return 0
    if not names:
        p.error("run: name at least one experiment")
    if a.jobs < 1:
        p.error(f"--jobs must be at least 1, got {a.jobs}")
    return run(names, root, a.budgets, a.device, a.jobs)
