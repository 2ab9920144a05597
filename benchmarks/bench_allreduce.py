"""Extra time of TrAct's global-batch covariance under DDP (one all-reduce of n² + 1 numbers per step).

    python -m benchmarks.bench_allreduce         # 2 CPU processes (gloo); writes benchmarks/results/allreduce-cpu.json

A DDP training step of a CIFAR ResNet-18 (width 32, batch 64 per process) in three modes, interleaved step by
step: plain (no TrAct), TrAct with per-rank statistics (sync="local", the paper's code) and TrAct with the
global covariance (sync="auto", the default).  Median step time of rank 0.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from .common import invocation, machine_info, write_result

MODES = ("plain", "local", "global")


def worker(rank: int, world: int, init: str, steps: int, warmup: int, queue) -> None:
    import trainact
    from trainact.harness.models import build_model

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init}", rank=rank, world_size=world)
    models, opts = {}, {}
    for mode in MODES:
        torch.manual_seed(0)
        model = build_model("resnet18", num_classes=10, width=32)
        if mode != "plain":
            trainact.apply(model, 0.1, layer="conv1", sync="local" if mode == "local" else "auto")
        models[mode] = nn.parallel.DistributedDataParallel(model)
        opts[mode] = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(64, 3, 32, 32, generator=g), torch.randint(0, 10, (64,), generator=g)
    times = {m: [] for m in MODES}
    for step in range(warmup + steps):
        for mode in MODES[step % 3 :] + MODES[: step % 3]:
            dist.barrier()
            start = time.perf_counter()
            opts[mode].zero_grad(set_to_none=True)
            nn.functional.cross_entropy(models[mode](x), y).backward()
            opts[mode].step()
            elapsed = time.perf_counter() - start
            if step >= warmup:
                times[mode].append(elapsed)
    if rank == 0:
        queue.put({m: [1e3 * t for t in ts] for m, ts in times.items()})
    dist.destroy_process_group()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "allreduce-cpu.json"))
    args = parser.parse_args(argv)
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with tempfile.TemporaryDirectory() as tmp:
        procs = [ctx.Process(target=worker, args=(r, 2, os.path.join(tmp, "init"), args.steps, args.warmup, queue))
                 for r in range(2)]
        for p in procs:
            p.start()
        times = queue.get(timeout=1800)
        for p in procs:
            p.join()
    med = {m: statistics.median(t) for m, t in times.items()}
    for m in MODES:
        print(f"{m:7s} median step {med[m]:8.1f} ms  ({med[m] / med['local'] - 1:+.2%} vs local statistics)")
    info = machine_info()
    info["torch_threads"] = 1
    write_result(args.out, {"benchmark": "allreduce", "command": invocation(__spec__.name), **info, "steps": args.steps,
                            "case": "DDP step of a CIFAR ResNet-18 (width 32), batch 64 per process, 32 px",
                            "median_ms": med, "times_ms": times})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
