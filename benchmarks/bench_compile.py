"""TrAct's overhead under torch.compile against its overhead in eager mode, interleaved in one run.

    python -m benchmarks.bench_compile                         # writes benchmarks/results/compile-cpu.json
    python -m benchmarks.bench_compile --device cuda --mode max-autotune-no-cudagraphs
    python -m benchmarks.bench_compile --amp bf16 --out benchmarks/results/compile-cpu-bf16.json   # under autocast

Four variants of one training step (forward, backward, SGD step) per case: plain eager, TrAct eager, plain
compiled, TrAct compiled (`torch.compile(model, fullgraph=True, mode=--mode)`; compilation happens in the warm-up).
Every repetition runs each variant once in a rotating order; TrAct's extra time is the median over repetitions of
the paired ratio TrAct / plain - 1 within the same mode (and repetition), with its interquartile range. With
`--amp bf16` the forward runs under bf16 autocast, where TrAct forms Gᵀ A in fp32 from the output gradient.

  cnn   Conv2d(3, 32, 3, padding 1) + BN + ReLU, Conv2d(32, 64, 3, stride 2) + BN + ReLU, pool, Linear: batch 128, 32 px
  vit   ViT-CIFAR at hidden size 192, 2 layers (a Linear patch embedding of 8x8 patches): batch 128, 32 px
"""
from __future__ import annotations

import argparse
import copy
import statistics

import torch
from torch import nn

import trainact

from .common import case_arguments, interleaved, invocation, iqr, machine_info, parse_cases, write_result

VARIANTS = ("plain-eager", "trainact-eager", "plain-compiled", "trainact-compiled")


def cnn() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                         nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def vit() -> nn.Module:
    from trainact.harness.models import build_model

    return build_model("vit", num_classes=10, dim=192, depth=2, heads=3)


CASES = {"cnn": cnn, "vit": vit}


def run_case(name: str, reps: int, warmup: int, seed: int, device: torch.device, mode: str, amp: str = "off") -> dict:
    torch.manual_seed(seed)
    base = CASES[name]().to(device)
    x = torch.randn(128, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (128,), device=device)
    first = trainact.find_first_layer(base, example_input=x[:2])
    steps = {}
    for variant in VARIANTS:
        model = copy.deepcopy(base)
        if variant.startswith("trainact"):
            trainact.apply(model, 0.1, layer=first)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        run = torch.compile(model, fullgraph=True, mode=mode) if variant.endswith("compiled") else model

        def step(run=run, opt=opt):
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp == "bf16"):
                loss = nn.functional.cross_entropy(run(x), y)
            loss.backward()
            opt.step()

        steps[variant] = step
    times = interleaved(steps, reps, warmup, device)
    result = {"case": name, "device": str(device), "mode": mode, "amp": amp, "reps": reps, "warmup": warmup,
              "median_ms": {v: 1e3 * statistics.median(t) for v, t in times.items()}}
    for kind in ("eager", "compiled"):
        ratios = [a / b - 1 for a, b in zip(times[f"trainact-{kind}"], times[f"plain-{kind}"])]
        result[f"extra_{kind}"], result[f"extra_{kind}_iqr"] = statistics.median(ratios), iqr(ratios)
    ms = result["median_ms"]
    print(f"{name:4s} plain eager {ms['plain-eager']:7.2f} ms, compiled {ms['plain-compiled']:7.2f} ms | TrAct's "
          f"extra: eager {result['extra_eager']:+.1%}, compiled {result['extra_compiled']:+.1%}", flush=True)
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    case_arguments(p, tuple(CASES), reps=15, warmup=3, name="compile")  # the first warm-up repetition compiles
    p.add_argument("--threads", type=int, default=1, help="torch threads (default: %(default)s)")
    p.add_argument("--mode", default="default", help="torch.compile mode (default: %(default)s)")
    p.add_argument("--amp", default="off", choices=("off", "bf16"), help="autocast (default: %(default)s)")
    p.set_defaults(device="cpu")
    a = p.parse_args(argv)
    device, cases, out = parse_cases(p, a, tuple(CASES), "compile")
    if a.warmup < 1:
        p.error(f"--warmup must be at least 1 (the compiling repetition is not timed), got {a.warmup}")
    torch.set_num_threads(a.threads)
    results = [run_case(c, a.reps, a.warmup, a.seed, device, a.mode, a.amp) for c in cases]
    write_result(out, {"benchmark": "compile", "command": invocation(__spec__.name), "seed": a.seed,
                       **machine_info(device), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
