"""How many operations TrAct adds to one forward + backward of a first layer, on the accelerator code path.

    python -m benchmarks.bench_kernels                 # writes benchmarks/results/kernels-cpu.json
    python -m benchmarks.bench_kernels --cases stem --show

On a GPU every operation is at least one kernel launch (a few microseconds each, and a step of many small ones
is launch-bound), so the count is what the accelerator path keeps small. It is counted on the CPU, with the
accelerator path forced (trainact.patches.accelerator_path: 64 MiB blocks, one dense GEMM per block, no status
read in backward), by a TorchDispatchMode that sees every aten call: the plain layer's forward + backward is
counted, then the TrAct layer's, in the steady state (the second step; the optimizer-step status check, which
runs outside the step, between them). Views (`aten.view`, `t`, `permute`, `unfold`, ...) cost no kernel and are
not counted. Cases are bench_overhead.py's first layers, plus the ViT-CIFAR patch embedding (a Linear):

  cifar-stem  Conv2d(3, 64, 3, padding 1), batch 128, 32 px                    (CIFAR ResNet-18)
  stem        Conv2d(3, 64, 7, stride 2, padding 3), batch 32, 224 px          (ImageNet ResNets; 4 blocks)
  deit-s      Conv2d(3, 384, 16, stride 16), batch 64, 224 px                  (DeiT-S patch embedding)
  vit-cifar   Linear(192, 384) on (128, 16, 192): 8x8x3 patches                (ViT-CIFAR patch embedding)
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
from unittest import mock

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import trainact

from .common import RESULTS, chosen_cases, machine_info, write_result

CASES = {
    "cifar-stem": (lambda: nn.Conv2d(3, 64, 3, padding=1), (128, 3, 32, 32)),
    "stem": (lambda: nn.Conv2d(3, 64, 7, stride=2, padding=3), (32, 3, 224, 224)),
    "deit-s": (lambda: nn.Conv2d(3, 384, 16, stride=16), (64, 3, 224, 224)),
    "vit-cifar": (lambda: nn.Linear(192, 384), (128, 16, 192)),
}


class OpCounter(TorchDispatchMode):
    """Counts the non-view aten operations dispatched inside it."""

    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view:
            self.ops[str(func.overloadpacket.__name__)] += 1
        return func(*args, **(kwargs or {}))


def count(layer: nn.Module, x: torch.Tensor, grad_out: torch.Tensor) -> collections.Counter:
    """Operations of one forward + backward of `layer`, in the steady state (second step)."""
    for _ in range(2):
        layer.weight.grad = None
        trainact.check_numerics([layer])  # what the optimizer step does between steps (outside the count)
        with OpCounter() as counter:
            layer(x).backward(grad_out)
    return counter.ops


def measure(name: str) -> dict:
    make, shape = CASES[name]
    torch.manual_seed(0)
    plain = make()
    x = torch.randn(*shape)
    with torch.no_grad():
        grad_out = torch.randn_like(plain(x))
    with mock.patch.object(trainact.patches, "accelerator_path", lambda device: True):
        base = count(plain, x, grad_out)
        tract = count(trainact.TrAct(make().requires_grad_(True), 0.1), x, grad_out)
    added = tract - base
    return {"case": name, "plain_ops": sum(base.values()), "tract_ops": sum(tract.values()),
            "added": sum(tract.values()) - sum(base.values()), "added_ops": dict(sorted(added.items()))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of %(default)s")
    p.add_argument("--show", action="store_true", help="print the added operations of each case")
    p.add_argument("--out", default=os.path.join(RESULTS, "kernels-cpu.json"))
    a = p.parse_args(argv)
    chosen = chosen_cases(p, a.cases, CASES)
    results = []
    for name in chosen:
        r = measure(name)
        results.append(r)
        print(f"{name:11s} plain {r['plain_ops']:3d} ops, TrAct {r['tract_ops']:3d}: +{r['added']}"
              + (f"  {r['added_ops']}" if a.show else ""))
    write_result(a.out, {"benchmark": "kernels", "machine": machine_info("cpu"), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
