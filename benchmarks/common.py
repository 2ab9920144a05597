"""Shared bits of the benchmark scripts: where results go, what produced them (the harness's provenance format,
`trainact.harness.env.environment`), and how they are written."""
from __future__ import annotations

import datetime
import os
import statistics
import sys

import torch

from trainact.harness.env import environment, write_json_atomic

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")  # the benchmarks' JSON and figures
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the repository root, which holds the package


def invocation(module: str) -> str:
    """How this process was started, for a result's "command": `python -m MODULE ARGS`."""
    return " ".join(["python -m " + module, *sys.argv[1:]])


def child_command(module: str, *args: str) -> list:
    """The command line of a child process running `module` (a benchmark re-running itself in a fresh process)."""
    return [sys.executable, "-m", module, *args]


def child_env(env=None) -> dict:
    """`env` (default: this process's environment) with the repository root first on PYTHONPATH, so a child
    started by `child_command` imports this package wherever it runs."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def machine_info(device="cpu") -> dict:
    """The date and the harness's environment record (git sha, torch, Python, device name, threads, cores)."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **environment(torch.device(device))}


def describe(e: dict) -> str:
    """One line for a result's provenance (benchmark results and experiments' config.json alike)."""
    return (f"{e['device_name']} ({e['device']}; {e['cpu_count']} cores, {e['torch_threads']} torch threads), "
            f"torch {e['torch_version']}, Python {e['python']}, git {str(e.get('git_sha'))[:7]}"
            + (f", {e['date']}" if e.get("date") else ""))


def compare_config(args: list):
    """The CompareConfig that `trainact compare ARGS` would run."""
    from trainact.harness.cli import build_parser, config_from_args

    return config_from_args(build_parser().parse_args(["compare", *args]))


def write_result(path: str, payload: dict) -> None:
    write_json_atomic(path, payload)
    print(f"wrote {path}")


def iqr(values: list[float]) -> list[float]:
    """[first quartile, third quartile] of `values` (the value itself, twice, for a single one)."""
    q = statistics.quantiles(values, n=4) if len(values) >= 2 else [values[0]] * 3
    return [q[0], q[2]]


def case_arguments(parser, cases: tuple, *, reps: int, warmup: int, name: str) -> None:
    """The arguments the per-case benchmarks share: --cases, --reps, --warmup, --seed, --device, --out."""
    parser.add_argument("--cases", default=",".join(cases), help="comma-separated subset of %(default)s")
    parser.add_argument("--reps", type=int, default=reps)
    parser.add_argument("--warmup", type=int, default=warmup)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default: %(default)s)")
    parser.add_argument("--out", default=None, help=f"result file (default: benchmarks/results/{name}-DEVICE.json)")


def chosen_cases(parser, text: str, cases) -> list:
    """The cases a comma-separated `--cases` value names, or a usage error naming the unknown ones."""
    chosen = [c for c in text.split(",") if c]
    unknown = [c for c in chosen if c not in cases]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(cases)}")
    return chosen


def parse_cases(parser, args, cases: tuple, name: str) -> tuple:
    """(device, the chosen cases, the result file) of `case_arguments`, or a usage error naming what was wrong."""
    from trainact.harness.env import resolve_device

    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    chosen = chosen_cases(parser, args.cases, cases)
    if args.reps < 1:
        parser.error(f"--reps must be at least 1, got {args.reps}")
    return device, chosen, args.out or os.path.join(RESULTS, f"{name}-{device.type}.json")


def interleaved(fns: dict, reps: int, warmup: int, device) -> dict:
    """{name: [seconds of each timed repetition]}: every repetition runs each function once, in a rotating order (a
    machine's drifts hit all alike), bracketed by device synchronisations; the first `warmup` are not kept."""
    import time

    import torch

    names = list(fns)
    sync = (lambda: torch.cuda.synchronize(device)) if torch.device(device).type == "cuda" else (lambda: None)
    times: dict = {n: [] for n in names}
    for rep in range(warmup + reps):
        k = rep % len(names)
        for name in names[k:] + names[:k]:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            if rep >= warmup:
                times[name].append(time.perf_counter() - start)
    return times

