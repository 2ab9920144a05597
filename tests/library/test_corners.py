"""Everyday corners where a TrAct library could train with a wrong gradient without a word: each is exact (the
float64 answer) or loud (an error or a warning that says what to do)."""
from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.testing import assert_close

import trainact
from oracle import ridge_oracle

REL = dict(rtol=1e-10, atol=1e-13)


def model_f64(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(96, 5)).double()


def data(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)


def loss_of(model, x, y):
    return nn.functional.cross_entropy(model(x), y)


def reference_grad(x, y) -> torch.Tensor:
    """The TrAct gradient of one backward on (x, y), float64."""
    model = model_f64()
    trainact.apply(model, layer="0", solve_dtype=torch.float64)
    loss_of(model, x, y).backward()
    return model[0].weight.grad


# ------------------------------------------------------------------------------- deferred statistics follow the grad

CLEARS = {
    "optimizer": lambda model, opt: opt.zero_grad(),
    "optimizer-zeros": lambda model, opt: opt.zero_grad(set_to_none=False),
    "model": lambda model, opt: model.zero_grad(),
    "model-zeros": lambda model, opt: model.zero_grad(set_to_none=False),
    "grad-none": lambda model, opt: setattr(model[0].weight, "grad", None),
}


@pytest.mark.parametrize("clear", CLEARS)
def test_adversarial_backward_then_zero_grad_leaves_only_the_training_batch(clear):
    """FGSM: a backward for the input's gradient (its weight gradient is thrown away by zero_grad), then the
    training backward on the perturbed batch: the step's statistics are those of the batch that trained."""
    model = model_f64()
    trainact.apply(model, layer="0", solve_dtype=torch.float64, defer=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data(4)
    x_in = x.clone().requires_grad_(True)
    loss_of(model, x_in, y).backward()
    adv = (x + 0.1 * x_in.grad.sign()).detach()
    CLEARS[clear](model, opt)
    loss_of(model, adv, y).backward()
    assert trainact.precondition_grads(model) == ["TrAct layer '0'"]
    assert_close(model[0].weight.grad, reference_grad(adv, y), **REL)


@pytest.mark.parametrize("clear", CLEARS)
def test_zero_grad_between_forward_and_backward_drops_the_earlier_backward(clear):
    model = model_f64()
    trainact.apply(model, layer="0", solve_dtype=torch.float64, defer=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    (x1, y1), (x2, y2) = data(4, seed=1), data(6, seed=2)
    loss_of(model, x1, y1).backward()  # a step that was skipped (say the loss was not finite)
    loss = loss_of(model, x2, y2)
    CLEARS[clear](model, opt)
    loss.backward()
    trainact.precondition_grads(model)
    assert_close(model[0].weight.grad, reference_grad(x2, y2), **REL)


def test_a_cleared_window_with_no_new_backward_leaves_nothing_pending():
    model = model_f64()
    trainact.apply(model, layer="0", defer=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss_of(model, *data(4)).backward()
    opt.zero_grad()
    assert trainact.precondition_grads(model) == [] and not trainact.steps.pending_layers(model)
    opt.step()  # no "un-preconditioned" error: the statistics went with the gradient


def test_accumulation_without_clearing_still_pools_every_micro_batch():
    """The counterpart: nothing cleared between micro-batches, so all their statistics stay (the large batch)."""
    model = model_f64()
    trainact.apply(model, layer="0", solve_dtype=torch.float64, defer=True)
    (x1, y1), (x2, y2) = data(3, seed=1), data(5, seed=2)
    (loss_of(model, x1, y1) * 3 / 8).backward()
    (loss_of(model, x2, y2) * 5 / 8).backward()
    trainact.precondition_grads(model)
    assert_close(model[0].weight.grad, reference_grad(torch.cat([x1, x2]), torch.cat([y1, y2])), **REL)


def test_a_window_of_empty_micro_batches_gives_a_zero_gradient_not_an_error():
    model = model_f64()
    trainact.apply(model, layer="0", defer=True)
    model(data(0)[0]).sum().backward()
    assert trainact.precondition_grads(model) == ["TrAct layer '0'"]
    assert torch.equal(model[0].weight.grad, torch.zeros_like(model[0].weight))
    # and empty micro-batches beside real ones change nothing
    model = model_f64()
    trainact.apply(model, layer="0", solve_dtype=torch.float64, defer=True)
    (x, y), (e, _) = data(4), data(0)
    loss_of(model, x, y).backward()
    model(e).sum().backward()
    trainact.precondition_grads(model)
    assert_close(model[0].weight.grad, reference_grad(x, y), **REL)


# ----------------------------------------------------------------------------------- per-step mode and accumulation


def test_per_step_accumulation_warns_once_and_precondition_grads_says_it_does_nothing():
    model = model_f64()
    trainact.apply(model, layer="0")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for seed in (1, 2, 3):
            loss_of(model, *data(4, seed=seed)).backward()
    accumulation = [w for w in caught if "gradient accumulation" in str(w.message)]
    assert len(accumulation) == 1 and "defer=True" in str(accumulation[0].message)
    with pytest.warns(UserWarning, match=r"precondition in backward \(defer=False\): nothing to do here"):
        assert trainact.precondition_grads(model) == []
    with pytest.warns(UserWarning, match="no TrAct layer in the modules given"):
        trainact.precondition_grads(model_f64())


def test_per_step_with_zero_grad_between_backwards_does_not_warn():
    model = model_f64()
    trainact.apply(model, layer="0")
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for seed, zeros in ((1, False), (2, True), (3, False)):
            opt.zero_grad(set_to_none=not zeros)
            loss_of(model, *data(4, seed=seed)).backward()
            opt.step()


# ------------------------------------------------------------------------------------- detection never guesses


class _NoForward(nn.Module):
    """The LightningModule style: training code calls self.net; the head is defined before the stem."""

    def __init__(self, second_stem: bool = False):
        super().__init__()
        self.fc = nn.Linear(16, 10)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())
        if second_stem:
            self.aux = nn.Conv2d(3, 8, 5)


def test_a_module_without_forward_gets_its_one_image_reading_conv_never_the_head():
    model = _NoForward()
    with pytest.warns(UserWarning, match=r"could not run _NoForward \(it has no forward\(\)\); wrapping 'net.0'"):
        assert trainact.apply(model) == "net.0"
    assert trainact.is_tract(model.net[0]) and not trainact.is_tract(model.fc)


def test_a_module_without_forward_and_two_image_readers_asks_for_the_layer():
    with pytest.raises(ValueError, match=r"it has no forward\(\).*2 convolutions could read images "
                                         r"\(\['net.0', 'aux'\]\); pass layer='name'"):
        trainact.apply(_NoForward(second_stem=True))


def test_lightning_callback_on_a_module_without_forward_wraps_the_stem():
    L = pytest.importorskip("lightning")
    from trainact.integrations.lightning import TrAct

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 4)
            self.net = nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self.fc(self.net(x)), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    callback = TrAct(lam=0.1)
    trainer = L.Trainer(callbacks=[callback], max_steps=1, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    with pytest.warns(UserWarning, match="wrapping 'net.0'"):
        trainer.fit(Module(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4))
    assert callback.names == "net.0"


def test_lazy_first_layers_are_refused_until_initialised():
    model = nn.Sequential(nn.LazyConv2d(8, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    with pytest.raises(ValueError, match=r"uninitialised \(lazy\) parameters.*run one forward pass on a real batch"):
        trainact.apply(model)
    with pytest.raises(ValueError, match=r"'0' \(LazyConv2d\) is not initialised yet.*run one forward pass"):
        trainact.apply(model, layer="0")
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    model.double()(x)  # initialised: now plain Conv2d/Linear
    assert trainact.apply(model, solve_dtype=torch.float64, example_input=x) == "0"
    grad_out = torch.randn(2, 8, 4, 4, dtype=torch.float64)
    model[0](x).backward(grad_out)
    assert_close(model[0].weight.grad, ridge_oracle(model[0], x, grad_out, 0.1), **REL)


# -------------------------------------------------------------------------------------- computed (parametrized) weights


class _Scaled(nn.Module):
    def forward(self, w):
        return 2.0 * w.tanh()


PARAMETRIZATIONS = {
    "weight_norm": lambda conv: nn.utils.parametrizations.weight_norm(conv),
    "spectral_norm": lambda conv: nn.utils.parametrizations.spectral_norm(conv),
    "orthogonal": lambda conv: nn.utils.parametrizations.orthogonal(conv),
    "custom": lambda conv: parametrize.register_parametrization(conv, "weight", _Scaled()),
    "old-weight_norm": lambda conv: nn.utils.weight_norm(conv),
}


@pytest.mark.parametrize("kind", PARAMETRIZATIONS)
def test_a_computed_weight_gets_the_tract_gradient_through_its_parametrization(kind):
    """TrAct preconditions the gradient of the weight the convolution uses; the chain rule takes it on to the
    parameters behind it (as for weight-standardised stems)."""
    torch.manual_seed(0)
    conv = PARAMETRIZATIONS[kind](nn.Conv2d(3, 4, 3, bias=False).double())
    conv.eval()  # spectral_norm: no power iteration, so both passes see the same weight
    x = torch.randn(5, 3, 6, 6, dtype=torch.float64)
    grad_out = torch.randn(5, 4, 4, 4, dtype=torch.float64)
    params = [p for p in conv.parameters() if p.requires_grad]
    weight = conv.weight  # the computed weight, a function of params
    expected = torch.autograd.grad(weight, params, _oracle(weight, x, grad_out))
    tract = trainact.TrAct(conv, solve_dtype=torch.float64)
    got = torch.autograd.grad(tract(x), params, grad_out)
    for g, e in zip(got, expected):
        assert_close(g, e, **REL)
    with pytest.raises(ValueError, match=r"defer=True is not supported .* whose weight is computed"):
        trainact.TrAct(PARAMETRIZATIONS[kind](nn.Conv2d(3, 4, 3)), defer=True)


def _oracle(weight, x, grad_out):
    conv = nn.Conv2d(3, 4, 3, bias=False).double()
    with torch.no_grad():
        conv.weight.copy_(weight)
    return ridge_oracle(conv, x, grad_out, 0.1)


# ---------------------------------------------------------------------------------------------- options and λ


def test_apply_takes_a_config():
    model = model_f64()
    config = trainact.TrActConfig(lam=0.2, solve_dtype=torch.float64)
    assert trainact.apply(model, layer="0", config=config) == "0"
    assert model[0].tract is config
    with pytest.raises(TypeError, match="either config= or lam/options, not both"):
        trainact.apply(model_f64(), 0.2, layer="0", config=config)


@pytest.mark.parametrize("lam", [np.float32(0.25), np.int64(1), np.float64(0.5), torch.tensor(0.5)])
def test_lam_may_be_any_real_number_type(lam):
    assert trainact.TrActConfig(lam=lam).lam == float(lam)


def test_lam_that_is_not_a_real_number_is_refused():
    for bad in (True, "0.1", 1j, np.array([0.1, 0.2])):
        with pytest.raises(TypeError, match="lam must be a real number > 0"):
            trainact.TrActConfig(lam=bad)


def test_tiny_lam_in_float32_is_exact_with_few_rows_and_loud_otherwise():
    """r < n (Woodbury): r Gᵀ (AAᵀ + λrI)⁻¹ A has nothing for a tiny λ to amplify; r ≥ n at a tiny λ in float32
    warns, and a matrix float32 rounding leaves indefinite is an error that says so (not "inf or NaN")."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 4, stride=4)  # n = 48
    x = torch.randn(2, 3, 8, 8)  # r = 8 < n
    grad_out = torch.randn(2, 4, 2, 2)
    for lam in (1e-6, 1e-12):
        with pytest.warns(UserWarning, match="below 0.0001 with float32 statistics"):
            tract = trainact.TrAct(conv, lam)
        tract(x).backward(grad_out)
        ref = ridge_oracle(copy.deepcopy(conv).double(), x.double(), grad_out.double(), lam)
        assert (tract.weight.grad.double() - ref).norm() / ref.norm() < 1e-4
        conv.weight.grad = None
    with pytest.warns(UserWarning, match="below 0.0001"):
        direct = trainact.TrAct(nn.Conv2d(3, 4, 4, stride=4), 1e-12, woodbury=False)
    with pytest.raises(trainact.TrActNumericalError, match=r"could not be factorised even in float64 \(λ=1e-12\): λ is "
                                                           r"below the rounding error"):
        direct(x).backward(grad_out)


# ------------------------------------------------------------------------------------------------------ autocast


def _smooth_images(n: int, size: int = 32) -> torch.Tensor:
    """Images whose neighbouring pixels are correlated, like real ones: an ill-conditioned patch covariance."""
    low = torch.randn(n, 3, size // 4, size // 4)
    return nn.functional.interpolate(low, size=size, mode="bilinear", align_corners=False) + 0.05 * torch.randn(
        n, 3, size, size)


@pytest.mark.parametrize("conv", [nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 32, 4, stride=4)],
                         ids=["3x3-stem", "4x4-patch-embedding"])
def test_bf16_autocast_gradient_is_as_close_to_float64_as_the_plain_gradient_is(conv):
    """The layer's bf16 Gᵀ A is rounded to 16 bits; solved with an ill-conditioned covariance that rounding would
    grow 5-6x.  TrAct forms Gᵀ A in fp32 from the same G: against the float64 answer for that G it must be at
    least as close as the plain gradient is to its own float64 answer (here it is ~100x closer)."""
    from oracle import plain_grad

    torch.manual_seed(0)
    x = _smooth_images(16)
    with torch.no_grad():
        grad_out = torch.randn_like(conv(x)).to(torch.bfloat16)  # the G that autocast's backward sees
    errors = {}
    for name, layer in (("plain", copy.deepcopy(conv)), ("tract", trainact.TrAct(copy.deepcopy(conv)))):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x)
        assert out.dtype == torch.bfloat16
        out.backward(grad_out)
        oracle = ridge_oracle if name == "tract" else lambda c, x, g, lam: plain_grad(c, x, g)
        ref = oracle(copy.deepcopy(conv).double(), x.double(), grad_out.double(), 0.1)
        errors[name] = ((layer.weight.grad.double() - ref).norm() / ref.norm()).item()
    assert errors["tract"] <= 2 * errors["plain"], errors
    assert errors["tract"] < 1e-4, errors  # fp32 accuracy: nothing of bf16's rounding is left to amplify
