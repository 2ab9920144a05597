"""How far bf16 autocast moves the first layer's gradient from the float64 answer, plain and with TrAct.

    python -m benchmarks.bench_autocast                  # writes benchmarks/results/autocast-error-cpu.json
    python -m benchmarks.bench_autocast --data PATH      # another image set (the default: ../shared/data's CIFAR-10)

For real images (the first 128 training images of CIFAR-10, standardised) and a fixed output gradient G in bf16 (what
autocast's backward hands a bf16 layer), each case's weight gradient is computed under bf16 autocast, plain and with
TrAct (λ 0.1), and compared with the float64 answer for the same G and the same fp32 input: Gᵀ A for the plain
layer, Gᵀ A (AᵀA/r + λI)⁻¹ for TrAct (both from the layer in float64). The figure is the relative error
‖g − g₆₄‖ / ‖g₆₄‖; TrAct's target is at most 2x the plain gradient's. The fp32 rows (no autocast) show the floor.

  cifar-stem   Conv2d(3, 64, 3, padding 1)         (CIFAR ResNet-18)
  patch4       Conv2d(3, 192, 4, stride 4)         (a 4x4 patch embedding)
  vit-cifar    Linear(192, 384) on 8x8x3 patches   (ViT-CIFAR's patch embedding)
"""
from __future__ import annotations

import argparse
import copy
import os

import torch
from torch import nn

import trainact

from .common import RESULTS, ROOT, chosen_cases, invocation, machine_info, write_result

DATA = os.path.join(os.path.dirname(ROOT), "shared", "data", "cifar10-jpeg.tar.gz")


def _patches8(x: torch.Tensor) -> torch.Tensor:
    """(B, 16, 192) rows of 8x8x3 patches, the ViT-CIFAR layout."""
    return x.unfold(2, 8, 8).unfold(3, 8, 8).permute(0, 2, 3, 1, 4, 5).reshape(x.shape[0], 16, 192)


CASES = {
    "cifar-stem": (lambda: nn.Conv2d(3, 64, 3, padding=1), lambda x: x),
    "patch4": (lambda: nn.Conv2d(3, 192, 4, stride=4), lambda x: x),
    "vit-cifar": (lambda: nn.Linear(192, 384), _patches8),
}


def _float64(layer: nn.Module, x: torch.Tensor, grad_out: torch.Tensor, tract: bool) -> torch.Tensor:
    """The float64 answer for this x and G: the layer in float64, with TrAct solving in float64 (which the tests hold
    to the ridge oracle to 1e-10) or plain."""
    double = copy.deepcopy(layer).double()
    if tract:
        double = trainact.TrAct(double, 0.1, solve_dtype=torch.float64)
    double(x.double()).backward(grad_out.double())
    return double.weight.grad


def measure(name: str, images: torch.Tensor, seed: int) -> list[dict]:
    make, shape = CASES[name]
    torch.manual_seed(seed)
    layer, x = make(), shape(images)
    with torch.no_grad():
        grad_out = torch.randn_like(layer(x))
    rows = []
    for amp in ("bf16", "off"):
        g = grad_out.to(torch.bfloat16) if amp == "bf16" else grad_out
        for method in ("plain", "tract"):
            model = trainact.TrAct(copy.deepcopy(layer), 0.1) if method == "tract" else copy.deepcopy(layer)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp == "bf16"):
                out = model(x)
            out.backward(g.to(out.dtype))
            ref = _float64(layer, x, g.float(), method == "tract")
            err = ((model.weight.grad.double() - ref).norm() / ref.norm()).item()
            rows.append({"case": name, "amp": amp, "method": method, "relative_error": err})
            print(f"{name:10s} {amp:4s} {method:5s} relative error {err:.2e}", flush=True)
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help="comma-separated subset of %(default)s")
    p.add_argument("--data", default=DATA, help="an image set trainact compare reads (default: CIFAR-10 JPEGs)")
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=os.path.join(RESULTS, "autocast-error-cpu.json"))
    a = p.parse_args(argv)
    cases = chosen_cases(p, a.cases, CASES)
    if not os.path.exists(a.data):
        p.error(f"--data {a.data} does not exist")
    from trainact.harness.data import load_dataset

    data = load_dataset(a.data)
    raw = data.train_images[: a.images].float() / 255
    mean, std = torch.tensor(data.mean).view(1, -1, 1, 1), torch.tensor(data.std).view(1, -1, 1, 1)
    images = (raw - mean) / std
    results = [row for c in cases for row in measure(c, images, a.seed)]
    write_result(a.out, {"benchmark": "autocast-error", "command": invocation(__spec__.name), "seed": a.seed,
                         "images": f"the first {a.images} training images of {data.name}, standardised",
                         **machine_info("cpu"), "results": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
