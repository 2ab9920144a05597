"""Peak extra memory of TrAct on a 7x7/2 ImageNet stem: plain layer vs `torch-tract` vs trainact.

    python -m benchmarks.bench_memory                # batch 128, 224 px; writes benchmarks/results/memory-cpu.json

Each variant runs in a fresh process: allocate the input (128x3x224x224), the output gradient and the layer, then
one forward + backward.  The figure is the growth of the process's peak resident set (ru_maxrss) during that
forward + backward; TrAct's extra memory is its growth minus the plain layer's.  On CUDA the same is measured
with torch.cuda.max_memory_allocated when --device cuda is given.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess

from .common import child_command, child_env, invocation, machine_info, write_result

VARIANTS = ("plain", "torch-tract", "trainact")


def child(variant: str, batch: int, size: int, device: str) -> None:
    import torch
    from torch import nn

    import trainact

    torch.manual_seed(0)
    conv = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False).to(device)
    if variant == "torch-tract":
        import torch_tract

        conv = torch_tract.TrAct(conv, 0.1)
    elif variant == "trainact":
        conv = trainact.TrAct(conv, 0.1)
    # warm-up on a tiny batch so one-time library allocations are not counted
    small = torch.randn(2, 3, size, size, device=device)
    conv(small).backward(torch.ones(2, 64, size // 2, size // 2, device=device))
    x = torch.randn(batch, 3, size, size, device=device)
    grad_out = torch.randn(batch, 64, size // 2, size // 2, device=device)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    conv.weight.grad = None
    conv(x).backward(grad_out)
    if device == "cuda":
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"variant": variant, "growth_bytes": peak - base}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=2, help="fresh processes per variant (the minimum is kept)")
    parser.add_argument("--out", default=None, help="result file (default: benchmarks/results/memory-DEVICE.json)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.out = args.out or os.path.join(os.path.dirname(__file__), "results", f"memory-{args.device}.json")
    if args.child:
        child(args.child, args.batch, args.size, args.device)
        return 0
    growth: dict[str, list[int]] = {v: [] for v in VARIANTS}
    for _ in range(args.repeats):
        for variant in VARIANTS:
            cmd = child_command(__spec__.name, "--child", variant, "--batch", str(args.batch), "--size", str(args.size),
                        "--device", args.device)
            out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=child_env())
            growth[variant].append(json.loads(out.stdout.strip().splitlines()[-1])["growth_bytes"])
    best = {v: min(g) for v, g in growth.items()}
    extra = {v: best[v] - best["plain"] for v in VARIANTS}
    mib = 2**20
    for v in VARIANTS:
        print(f"{v:12s} peak growth {best[v] / mib:8.1f} MiB   extra over plain {extra[v] / mib:8.1f} MiB")

    write_result(args.out, {
        "benchmark": "memory", "command": invocation(__spec__.name), "case": f"Conv2d(3,64,7,s2,p3) batch {args.batch} {args.size}px",
        **machine_info(args.device), "growth_bytes": growth, "extra_over_plain_MiB": {v: e / mib for v, e in extra.items()},
    })
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
