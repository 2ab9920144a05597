"""GPU checks: float64 against the oracle, autocast fp16/bf16 with a GradScaler, a skipped overflow step, and
CPU/GPU agreement. Skipped where the device is not there.

On a GPU machine: `python -m pytest -m gpu tests/library/test_gpu.py` (the device is $TRAINACT_TEST_DEVICE, default
"cuda"; e.g. TRAINACT_TEST_DEVICE=cuda:1).
"""
from __future__ import annotations

import copy
import os

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import trainact
from oracle import ridge_oracle

DEVICE = torch.device(os.environ.get("TRAINACT_TEST_DEVICE", "cuda"))


def _available(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()
    return device.type == "cpu"


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _available(DEVICE), reason=f"needs {DEVICE}")]


def stem_model() -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(3, 16, 7, stride=2, padding=3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(16, 10))


def test_cuda_float64_matches_oracle():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 8, 7, stride=2, padding=3).double()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    grad_out = torch.randn(4, 8, 16, 16, dtype=torch.float64)
    layer = trainact.TrAct(copy.deepcopy(conv).to(DEVICE), solve_dtype=torch.float64)
    layer(x.to(DEVICE)).backward(grad_out.to(DEVICE))
    assert_close(layer.weight.grad.cpu(), ridge_oracle(conv, x, grad_out, 0.1), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_cuda_autocast_and_gradscaler(dtype):
    torch.manual_seed(1)
    model = stem_model().to(DEVICE)
    trainact.apply(model)
    x, y = torch.randn(32, 3, 64, 64, device=DEVICE), torch.randint(0, 10, (32,), device=DEVICE)
    ref = copy.deepcopy(model)  # the same step in fp32
    nn.functional.cross_entropy(ref(x), y).backward()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(DEVICE.type, enabled=dtype == torch.float16)
    with torch.autocast(DEVICE.type, dtype=dtype):
        loss = nn.functional.cross_entropy(model(x), y)
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    grad = model[0].weight.grad
    assert grad.dtype == torch.float32 and torch.isfinite(grad).all()
    expected = ref[0].weight.grad
    assert_close(grad, expected, rtol=0.05, atol=0.05 * expected.abs().max().item())
    scaler.step(opt)
    scaler.update()


def test_cuda_overflow_step_is_skipped():
    model = stem_model().to(DEVICE)
    trainact.apply(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler(DEVICE.type, init_scale=2.0**24)
    before = model[0].weight.detach().clone()
    with torch.autocast(DEVICE.type, dtype=torch.float16):
        loss = nn.functional.cross_entropy(model(torch.randn(8, 3, 32, 32, device=DEVICE)),
                                           torch.zeros(8, dtype=torch.long, device=DEVICE))
    scaler.scale(loss * 1e6).backward()
    scaler.step(opt)
    scaler.update()
    assert torch.equal(model[0].weight, before) and scaler.get_scale() < 2.0**24


def test_cpu_and_cuda_agree():
    if DEVICE.type == "cpu":
        pytest.skip("compares the CPU with the GPU: there is no GPU here")
    torch.manual_seed(2)
    model = stem_model()
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    grads = []
    for device in ("cpu", DEVICE):
        m = copy.deepcopy(model).to(device)
        trainact.apply(m)
        nn.functional.cross_entropy(m(x.to(device)), y.to(device)).backward()
        grads.append(m[0].weight.grad.cpu())
    assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-5 * grads[0].abs().max().item())


@pytest.mark.parametrize("defer", [False, True])
def test_training_step_never_synchronises(defer):
    """Forward, backward, (deferred preconditioning,) optimizer step: no synchronising CUDA call anywhere."""
    if DEVICE.type != "cuda":
        pytest.skip("synchronisations are counted by CUDA's sync debug mode")
    torch.manual_seed(3)
    model = stem_model().to(DEVICE)
    trainact.apply(model, defer=defer)
    opt = trainact.attach(torch.optim.SGD(model.parameters(), lr=0.1, foreach=True))
    x, y = torch.randn(16, 3, 64, 64, device=DEVICE), torch.randint(0, 10, (16,), device=DEVICE)

    def step():
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # first-call initialisation (cuBLAS/cuSOLVER handles, the status's pinned buffer) is not the step's
    torch.cuda.synchronize(DEVICE)
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(3):
            step()
    finally:
        torch.cuda.set_sync_debug_mode("default")
    trainact.check_numerics(model)  # the statuses the steps left: all solved


def test_cuda_nonfinite_input_raises_at_a_later_step():
    """On the GPU the backward reads nothing: the gradient is NaN at once, and the status check names the layer."""
    if DEVICE.type == "cpu":
        pytest.skip("on the CPU the eager backward raises at once (tests/library/test_layers.py)")
    model = stem_model().to(DEVICE)
    trainact.apply(model)
    x = torch.randn(4, 3, 32, 32, device=DEVICE)
    x[0, 0, 0, 0] = float("nan")
    nn.functional.cross_entropy(model(x), torch.zeros(4, dtype=torch.long, device=DEVICE)).backward()
    assert model[0].weight.grad.isnan().any()
    with pytest.raises(trainact.TrActNumericalError, match="not finite"):
        trainact.check_numerics(model)
