"""Host synchronisations per training step, and TrAct's overhead on a pipelined GPU step.

    python -m benchmarks.bench_sync --device cuda                 # writes benchmarks/results/sync-cuda.json
    python -m benchmarks.bench_sync --device cuda --cases vit --steps 20 --reps 9

A step that reads a device value on the host stops the CPU from queueing the next kernels while the GPU is busy;
`bench_overhead.py` synchronises after every step and so cannot see that cost. Here each repetition queues
`--steps` whole training steps back to back (one synchronisation before and after them all) for the plain model
and the model with TrAct, in a rotating order; trainact / plain - 1 is TrAct's overhead on a pipelined step. The
synchronising calls of one step (forward, backward and the optimizer step, whose pre-hook checks TrAct's status)
are counted with `torch.cuda.set_sync_debug_mode("warn")` after a warm-up step: TrAct's backward reads nothing on
the host, so both counts should be equal. Cases are those of bench_overhead.py whose unit is a training step.
"""
from __future__ import annotations

import argparse
import statistics
import warnings

import torch

from .bench_overhead import CASES
from .common import case_arguments, interleaved, invocation, iqr, machine_info, parse_cases, write_result

STEP_CASES = ("resnet18", "vit")
VARIANTS = ("plain", "trainact")


def count_syncs(step, device: torch.device) -> int:
    """Synchronising CUDA calls made by one step (0 on CPU, where there is nothing to count)."""
    if device.type != "cuda":
        return 0
    step()  # first-call initialisation (cuDNN/cuBLAS handles, lazy modules) is not the step's
    torch.cuda.synchronize(device)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            step()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def run_case(name: str, steps: int, reps: int, warmup: int, seed: int, device: torch.device) -> dict:
    make = CASES[name](seed, device)
    fns = {v: make(v) for v in VARIANTS}
    syncs = {v: count_syncs(fns[v], device) for v in VARIANTS}

    def queued(fn):  # `steps` steps queued back to back: one timing
        return lambda: [fn() for _ in range(steps)]

    per_step = {v: [t / steps for t in ts]
                for v, ts in interleaved({v: queued(f) for v, f in fns.items()}, reps, warmup, device).items()}
    ratios = [x / y - 1 for x, y in zip(per_step["trainact"], per_step["plain"])]
    result = {"case": name, "device": str(device), "steps_per_timing": steps, "reps": reps, "warmup": warmup,
              "syncs_per_step": syncs,
              "median_ms_per_step": {v: 1e3 * statistics.median(t) for v, t in per_step.items()},
              "ms_per_step": {v: [1e3 * t for t in ts] for v, ts in per_step.items()}}
    result["extra_over_plain"], result["extra_over_plain_iqr"] = statistics.median(ratios), iqr(ratios)
    ms, spread = result["median_ms_per_step"], result["extra_over_plain_iqr"]
    print(f"{name:9s} plain {ms['plain']:7.2f} ms/step | trainact {result['extra_over_plain']:+.2%} "
          f"(IQR {spread[0]:+.2%}..{spread[1]:+.2%}) | syncs/step {syncs}", flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    case_arguments(parser, STEP_CASES, reps=9, warmup=2, name="sync")
    parser.add_argument("--steps", type=int, default=20, help="training steps queued per timing (default: 20)")
    args = parser.parse_args(argv)
    device, cases, out = parse_cases(parser, args, STEP_CASES, "sync")
    if args.steps < 1:
        parser.error(f"--steps must be at least 1, got {args.steps}")
    results = [run_case(c, args.steps, args.reps, args.warmup, args.seed, device) for c in cases]
    write_result(out, {"benchmark": "sync", "command": invocation(__spec__.name), "seed": args.seed,
                       **machine_info(device), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
