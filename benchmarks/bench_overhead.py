"""Time overhead of TrAct: plain layer vs the authors' `torch-tract` vs trainact, interleaved in one run.

    python -m benchmarks.bench_overhead                      # all cases, writes benchmarks/results/overhead-cpu.json
    python -m benchmarks.bench_overhead --cases stem --reps 9
    python -m benchmarks.bench_overhead --device cuda --cases resnet18,vit   # GPU: writes overhead-cuda.json

Cases (the project's speed targets are shown beside them in BENCHMARKS.md):
  stem        Conv2d(3, 64, 7, stride 2, padding 3), batch 32, 224 px: forward + backward of the layer
  deit-s      Conv2d(3, 384, 16, stride 16) (DeiT-S patch embedding), batch 64, 224 px: forward + backward
  resnet18    a whole CIFAR ResNet-18 training step (forward, backward, SGD step), batch 128, 32 px
  cifar-stem  that step's first layer alone, Conv2d(3, 64, 3, padding 1), batch 128, 32 px: forward + backward
  vit         a whole ViT-CIFAR training step (the paper's: 8x8 patches, hidden size 384, 7 layers, 12 heads;
              forward, backward, Adam step), batch 128, 32 px

Every repetition runs each variant once, in a rotating order, so drifts in machine load hit all variants alike;
the overhead reported is the median over repetitions (after warm-up) of the paired ratio variant / plain within
the same repetition, with its interquartile range; on CUDA each timed step is bracketed by synchronisations.
Needs the `test` extra (torch-tract) and, for resnet18 and vit, the harness models.
"""
from __future__ import annotations

import argparse
import copy
import os
import statistics
import time

import torch
from torch import nn

import trainact
from trainact.harness.env import resolve_device

from .common import invocation, iqr, machine_info, write_result


def layer_case(conv: nn.Conv2d, batch: int, size: int, seed: int, device: torch.device):
    torch.manual_seed(seed)
    conv = conv.to(device)
    x = torch.randn(batch, conv.in_channels, size, size, device=device)
    with torch.no_grad():
        grad_out = torch.randn_like(conv(x))

    def make(variant: str):
        layer = copy.deepcopy(conv)
        if variant == "torch-tract":
            import torch_tract

            layer = torch_tract.TrAct(layer, 0.1)
        elif variant == "trainact":
            layer = trainact.TrAct(layer, 0.1)

        def step():
            layer.weight.grad = None
            layer(x).backward(grad_out)

        return step

    return make


def step_case(model_name: str, batch: int, seed: int, device: torch.device):
    """A whole training step of a harness model: the ResNet-18 with SGD, the ViT with Adam (as in the paper)."""
    from trainact.harness.models import build_model

    torch.manual_seed(seed)
    base = build_model(model_name, num_classes=10).to(device)
    x = torch.randn(batch, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    first = trainact.find_first_layer(base, example_input=x[:2])

    def make(variant: str):
        model = copy.deepcopy(base)
        if variant == "torch-tract":
            import torch_tract

            parent, _, child = first.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            setattr(owner, child, torch_tract.TrAct(getattr(owner, child), 0.1))
        elif variant == "trainact":
            trainact.apply(model, 0.1, layer=first)
        opt = (torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9) if model_name.startswith("resnet")
               else torch.optim.Adam(model.parameters(), lr=1e-4))

        def step():
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        return step

    return make


CASES = {
    "stem": lambda seed, dev: layer_case(nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False), 32, 224, seed, dev),
    "deit-s": lambda seed, dev: layer_case(nn.Conv2d(3, 384, 16, stride=16), 64, 224, seed, dev),
    "resnet18": lambda seed, dev: step_case("resnet18", 128, seed, dev),
    # the first layer of the ResNet-18 step alone: its extra time divided by the step's time is the step's
    # overhead with far less noise than timing whole 3-second steps on a shared machine
    "cifar-stem": lambda seed, dev: layer_case(nn.Conv2d(3, 64, 3, padding=1, bias=False), 128, 32, seed, dev),
    "vit": lambda seed, dev: step_case("vit", 128, seed, dev),
}
DEFAULT_CASES = ("stem", "deit-s", "resnet18", "cifar-stem")  # the cases with a speed target
VARIANTS = ("plain", "torch-tract", "trainact")


def run_case(name: str, reps: int, warmup: int, seed: int, device: torch.device = torch.device("cpu")) -> dict:
    make = CASES[name](seed, device)
    steps = {v: make(v) for v in VARIANTS}
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for rep in range(warmup + reps):
        order = VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]
        for variant in order:
            sync()
            start = time.perf_counter()
            steps[variant]()
            sync()
            elapsed = time.perf_counter() - start
            if rep >= warmup:
                times[variant].append(elapsed)
    med = {v: statistics.median(t) for v, t in times.items()}
    # paired: each repetition's time over the plain time of the same repetition, then the median;
    # this cancels the slow drifts of a shared machine far better than a ratio of medians
    extra = {v: statistics.median(a / b for a, b in zip(times[v], times["plain"])) - 1 for v in VARIANTS}
    spread = {v: iqr([a / b - 1 for a, b in zip(times[v], times["plain"])]) for v in VARIANTS}
    result = {
        "case": name,
        "device": str(device),
        "reps": reps,
        "warmup": warmup,
        "median_ms": {v: 1e3 * m for v, m in med.items()},
        "times_ms": {v: [1e3 * t for t in ts] for v, ts in times.items()},
        "extra_over_plain": extra,
        "extra_over_plain_iqr": spread,
        "trainact_extra_over_reference_extra": extra["trainact"] / extra["torch-tract"] if extra["torch-tract"] > 0 else None,
    }
    print(
        f"{name:9s} plain {med['plain'] * 1e3:8.1f} ms | torch-tract {extra['torch-tract']:+7.2%} | "
        f"trainact {extra['trainact']:+7.2%} (IQR {spread['trainact'][0]:+.2%}..{spread['trainact'][1]:+.2%}) | trainact extra / reference extra = "
        f"{result['trainact_extra_over_reference_extra'] if result['trainact_extra_over_reference_extra'] is None else round(result['trainact_extra_over_reference_extra'], 3)}",
        flush=True,
    )
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(DEFAULT_CASES),
                        help=f"comma-separated subset of {','.join(CASES)} (default: %(default)s)")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: %(default)s)")
    parser.add_argument("--out", default=None,
                        help="result file (default: benchmarks/results/overhead-DEVICE.json)")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device)
    except (ValueError, RuntimeError) as e:
        parser.error(str(e))
    if args.out is None:
        args.out = os.path.join(os.path.dirname(__file__), "results", f"overhead-{device.type}.json")
    if args.threads:
        torch.set_num_threads(args.threads)
    cases = [c for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")
    results = [run_case(c, args.reps * (5 if c == "cifar-stem" else 1), args.warmup, args.seed, device)
               for c in cases]
    by_case = {r["case"]: r for r in results}
    if "resnet18" in by_case and "cifar-stem" in by_case:
        step, layer = by_case["resnet18"], by_case["cifar-stem"]
        estimate = {v: (layer["median_ms"][v] - layer["median_ms"]["plain"]) / step["median_ms"]["plain"]
                    for v in VARIANTS}
        step["extra_estimated_from_first_layer"] = estimate
        print(f"resnet18 step overhead estimated from its first layer: torch-tract {estimate['torch-tract']:+.2%}, "
              f"trainact {estimate['trainact']:+.2%}")
    write_result(args.out, {"benchmark": "overhead", "command": invocation(__spec__.name), "seed": args.seed,
                            **machine_info(device), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
