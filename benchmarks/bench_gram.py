"""Which Gram algorithm to use where: TrAct with the band algorithm forced on and forced off, interleaved.

    python -m benchmarks.bench_gram --device cuda      # writes benchmarks/results/gram-cuda.json
    python -m benchmarks.bench_gram --device cpu --cases cifar-stem --reps 5

`patches.gram` assembles AᵀA of a convolution with overlapping windows (a 7x7/2 stem, a 3x3/1 CIFAR stem) from
many small GEMMs (the band algorithm) on the CPU, and from one dense GEMM per row block on other devices. This
script checks that rule on the machine at hand: each repetition runs plain, TrAct-band and TrAct-dense once, in a
rotating order, and reports the median paired ratio to plain (and band / dense) per case of bench_overhead.py.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics

import torch

from trainact import patches

from .bench_overhead import CASES
from .common import case_arguments, interleaved, invocation, iqr, machine_info, parse_cases, write_result

GRAM_CASES = ("stem", "cifar-stem", "resnet18")  # the cases whose first layer has overlapping windows
VARIANTS = ("plain", "band", "dense")


@contextlib.contextmanager
def band(on: bool):
    original = patches.band_applies
    patches.band_applies = lambda geo, device: on and original(geo, torch.device("cpu"))
    try:
        yield
    finally:
        patches.band_applies = original


def run_case(name: str, reps: int, warmup: int, seed: int, device: torch.device) -> dict:
    make = CASES[name](seed, device)
    made = {"plain": make("plain"), "band": make("trainact"), "dense": make("trainact")}

    def step(variant: str):
        def run():
            with band(variant == "band"):
                made[variant]()
        return run

    times = interleaved({v: step(v) for v in VARIANTS}, reps, warmup, device)

    def paired(a: str, b: str) -> tuple[float, list[float]]:
        ratios = [x / y - 1 for x, y in zip(times[a], times[b])]
        return statistics.median(ratios), iqr(ratios)

    result = {"case": name, "device": str(device), "reps": reps, "warmup": warmup,
              "median_ms": {v: 1e3 * statistics.median(t) for v, t in times.items()},
              "times_ms": {v: [1e3 * t for t in ts] for v, ts in times.items()}}
    for v in ("band", "dense"):
        result[f"{v}_extra_over_plain"], result[f"{v}_extra_over_plain_iqr"] = paired(v, "plain")
    result["band_over_dense"], result["band_over_dense_iqr"] = paired("band", "dense")
    print(f"{name:10s} plain {result['median_ms']['plain']:8.2f} ms | band {result['band_extra_over_plain']:+8.2%} | "
          f"dense {result['dense_extra_over_plain']:+8.2%} | band / dense - 1 = {result['band_over_dense']:+.2%}",
          flush=True)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    case_arguments(parser, GRAM_CASES, reps=15, warmup=3, name="gram")
    args = parser.parse_args(argv)
    device, cases, out = parse_cases(parser, args, GRAM_CASES, "gram")
    results = [run_case(c, args.reps, args.warmup, args.seed, device) for c in cases]
    write_result(out, {"benchmark": "gram", "command": invocation(__spec__.name), "seed": args.seed,
                       **machine_info(device), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
