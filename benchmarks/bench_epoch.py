"""Seconds per training epoch of the paper's CIFAR protocols in the harness, and what parallel runs add up to.

    python -m benchmarks.bench_epoch --device cuda                    # writes benchmarks/results/epoch-cuda.json
    python -m benchmarks.bench_epoch --device cuda --cases resnet18-authors --jobs 1,4 --variants compiled
    python -m benchmarks.bench_epoch --device cpu --tiny              # smoke test: tiny models and data

Each measurement is a real harness run (trainact.harness.train.run_one: the in-memory loader with its crop and
flip, the optimizer, the schedule) on a synthetic set of CIFAR-10's shape (50 000 training images of 3x32x32, 10
classes), for `--epochs` epochs; the first epoch (cuDNN autotuning, compilation) is reported apart, the steady
s/epoch is the median of the others. Cases, as benchmarks/experiments.py's paper-* protocols train them:

  resnet18-authors  the authors' CIFAR ResNet-18 (max-pool after the stem), width 64, SGD, batch 128
  vit-cifar         ViT-CIFAR: 8x8 patches, hidden 384, 7 layers, 12 heads, Adam, batch 128

Variants: `eager` (fp32, as the harness ran before), `bf16-cl` (bf16 autocast + channels-last), `compiled`
(bf16-cl + torch.compile). Methods: baseline and TrAct (λ 0.1). With --jobs N, N identical runs start at once as
separate processes (round-robin over the visible GPUs): the aggregate is N epochs over the slowest run's time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import torch

from .common import RESULTS, child_command, child_env, invocation, machine_info, write_result

CASES = {
    "resnet18-authors": dict(model="resnet18-maxpool", width=64, optimizer="sgd", lrs=(0.08,), weight_decay=0.0),
    "vit-cifar": dict(model="vit", dim=384, depth=7, heads=12, optimizer="adam", lrs=(1e-3,), weight_decay=5e-5,
                      label_smoothing=0.1),
}
TINY = {"resnet18-authors": dict(width=4), "vit-cifar": dict(dim=24, depth=1, heads=2)}
VARIANTS = {"eager": {}, "bf16-cl": dict(amp="bf16", channels_last=True),
            "compiled": dict(amp="bf16", channels_last=True, compile=True)}
METHODS = ("baseline", "tract")


def measure(case: str, variant: str, method: str, device: str, epochs: int, train_size: int, tiny: bool) -> dict:
    """One harness run of `epochs` epochs; its per-epoch training seconds."""
    from trainact.harness.config import CompareConfig
    from trainact.harness.data import load_dataset
    from trainact.harness.protocol import RunSpec
    from trainact.harness.train import run_one

    synthetic = {"train_size": train_size, "test_size": 256, "image_size": 32, "num_classes": 10}
    options = {**CASES[case], **(TINY[case] if tiny else {}), **VARIANTS[variant]}
    with tempfile.TemporaryDirectory() as out:
        cfg = CompareConfig(synthetic=synthetic, budgets=(epochs,), seeds=(0,), warmup_epochs=0.0,
                            eval_every=epochs, device=device, out=out, **options)
        dataset = load_dataset(None, synthetic=synthetic)
        run = RunSpec(epochs, method, cfg.lrs[0], 0, lam=0.1 if method == "tract" else None)
        run_one(run, cfg, dataset, out, torch.device(device), log=lambda m: None)
        with open(os.path.join(out, run.run_id, "metrics.jsonl")) as f:
            seconds = [json.loads(line)["seconds"] for line in f]
    return {"case": case, "variant": variant, "method": method, "device": device, "epoch_seconds": seconds,
            "first_epoch_seconds": seconds[0],
            "seconds_per_epoch": statistics.median(seconds[1:]) if len(seconds) > 1 else seconds[0]}


def parallel(args, case: str, variant: str, method: str, jobs: int) -> dict:
    """`jobs` copies of one measurement at once, each in its own process; devices round-robin."""
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    procs, outs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        for j in range(jobs):
            out = os.path.join(tmp, f"{j}.json")
            device = f"cuda:{j % gpus}" if gpus else args.device
            cmd = child_command(__spec__.name, "--worker", out, "--cases", case, "--variants", variant, "--methods",
                        method, "--device", device, "--epochs", str(args.epochs), "--train-size", str(args.train_size))
            env = child_env()
            if not gpus:  # split the CPU's threads between the jobs
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // jobs))
            procs.append(subprocess.Popen(cmd + (["--tiny"] if args.tiny else []), env=env))
            outs.append(out)
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        if any(codes):
            raise SystemExit(f"{case} {variant} {method}: a job failed (exit codes {codes})")
        runs = [json.load(open(o)) for o in outs]
    slowest = max(r["seconds_per_epoch"] for r in runs)
    return {**runs[0], "jobs": jobs, "seconds_per_epoch": slowest, "wall_seconds": wall,
            "per_job_seconds_per_epoch": [r["seconds_per_epoch"] for r in runs],
            "aggregate_epochs_per_second": jobs / slowest}


def _list(parser, value: str, choices, name: str) -> list:
    chosen = [v for v in value.split(",") if v]
    bad = [v for v in chosen if v not in choices]
    if bad or not chosen:
        parser.error(f"--{name}: unknown {bad or value!r}; choose from {list(choices)}")
    return chosen


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--jobs", default="1,2,4,8", help="parallel runs per measurement (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per run, the first reported apart (default: 3)")
    p.add_argument("--train-size", type=int, default=50000)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true", help="tiny models (a CPU smoke test; no meaningful figures)")
    p.add_argument("--out", default=None, help="result file (default: benchmarks/results/epoch-DEVICE.json)")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one measurement into this file
    a = p.parse_args(argv)
    cases, variants = _list(p, a.cases, CASES, "cases"), _list(p, a.variants, VARIANTS, "variants")
    methods = _list(p, a.methods, METHODS, "methods")
    try:
        jobs = [int(j) for j in a.jobs.split(",") if j]
    except ValueError:
        p.error(f"--jobs must be comma-separated counts, got {a.jobs!r}")
    if not jobs or min(jobs) < 1 or a.epochs < 1 or a.train_size < 1:
        p.error(f"--jobs, --epochs and --train-size must be at least 1, got {a.jobs!r}, {a.epochs}, {a.train_size}")
    if a.worker:
        result = measure(cases[0], variants[0], methods[0], a.device, a.epochs, a.train_size, a.tiny)
        with open(a.worker, "w") as f:
            json.dump(result, f)
        return 0
    from trainact.harness.env import resolve_device

    try:
        device = resolve_device(a.device)
    except (ValueError, RuntimeError) as e:
        p.error(str(e))
    results = []
    for case in cases:
        for variant in variants:
            for n in jobs:
                for method in methods:
                    r = parallel(a, case, variant, method, n)
                    results.append(r)
                    print(f"{case:16s} {variant:8s} {method:8s} jobs {n}: {r['seconds_per_epoch']:7.2f} s/epoch "
                          f"(first {r['first_epoch_seconds']:.1f} s), aggregate "
                          f"{r['aggregate_epochs_per_second']:.2f} epochs/s", flush=True)
    out = a.out or os.path.join(RESULTS, f"epoch-{device.type}.json")
    write_result(out, {"benchmark": "epoch", "command": invocation(__spec__.name), "epochs": a.epochs,
                       "train_size": a.train_size, "tiny": a.tiny, **machine_info(device), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
