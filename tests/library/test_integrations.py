"""Framework integrations, each checked for exactness: accumulated micro-batches give the one-large-batch update.

* Lightning: the callback (``trainact.integrations.lightning.TrAct``) with ``accumulate_grad_batches`` and
  gradient clipping, which must see the preconditioned gradient.
* ``optimizer.step(closure)``: the deferred check runs after the closure (LBFGS-style callers).
* Accelerate: the README recipe (``accelerator.accumulate`` + ``precondition_grads`` before clipping).
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.testing import assert_close

import trainact

@pytest.fixture(autouse=True)
def _float64():
    """Exactness checks: float64 end to end (this module's tests only)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 4))


def _data(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 4, (n,), generator=g)


def _reference(clip: float, lr: float = 0.5) -> nn.Module:
    """One SGD step on all 8 images at once with TrAct, gradients clipped to norm `clip`."""
    net = _net()
    trainact.apply(net, 0.1, layer="0")
    x, y = _data()
    nn.functional.cross_entropy(net(x), y).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), clip)
    torch.optim.SGD(net.parameters(), lr=lr).step()
    return net


def test_lightning_callback_accumulation_equals_one_large_batch_with_clipping():
    L = pytest.importorskip("lightning")
    from trainact.integrations.lightning import TrAct

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = _net()

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, _):
            x, y = batch
            return nn.functional.cross_entropy(self(x), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.5)

    clip = 0.05  # small enough that clipping is active: it must see the preconditioned gradient
    module = Module()
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)  # 4 micro-batches
    callback = TrAct(lam=0.1, layer="net.0")
    trainer = L.Trainer(callbacks=[callback], accumulate_grad_batches=4, gradient_clip_val=clip, max_steps=1,
                        accelerator="cpu", devices=1, precision="64-true", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, loader)
    assert callback.names == "net.0" and callback.defer is True and trainact.is_tract(module.net[0])
    ref = _reference(clip)
    for (name, p), q in zip(module.net.named_parameters(), ref.parameters()):
        assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)


def test_lightning_callback_refuses_bad_options_at_once():
    pytest.importorskip("lightning")
    from trainact.integrations.lightning import TrAct

    with pytest.raises(ValueError, match="lam must be a finite number > 0, got -1.0"):
        TrAct(lam=-1)
    with pytest.raises(ValueError, match="defer must be 'auto', True or False, got 'yes'"):
        TrAct(defer="yes")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \[.lamda.\]"):
        TrAct(lamda=0.1)


@pytest.mark.parametrize("attached", [True, False])
def test_a_step_with_a_closure_checks_after_the_closure_ran(attached):
    """Like Lightning: step(closure) is entered before the last micro-batch's backward, which the closure runs."""
    net = _net()
    trainact.apply(net, 0.1, layer="0", defer=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    if attached:
        trainact.attach(opt)
    x, y = _data()
    for i in range(3):  # three micro-batches outside the step
        (nn.functional.cross_entropy(net(x[2 * i:2 * i + 2]), y[2 * i:2 * i + 2]) / 4).backward()

    def closure():  # the last one inside it
        loss = nn.functional.cross_entropy(net(x[6:]), y[6:]) / 4
        loss.backward()
        if not attached:
            trainact.precondition_grads(net)  # the caller's own placement (e.g. a Lightning hook)
        return loss

    opt.step(closure)
    ref = _reference(clip=1e9)
    for p, q in zip(net.parameters(), ref.parameters()):
        assert_close(p, q, rtol=1e-10, atol=1e-12)


def test_a_closure_that_leaves_statistics_pending_still_fails_the_step():
    net = _net()
    trainact.apply(net, 0.1, layer="0", defer=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = _data()
    before = copy.deepcopy(net.state_dict())

    def closure():
        loss = nn.functional.cross_entropy(net(x), y)
        loss.backward()
        return loss

    with pytest.raises(RuntimeError, match="un-preconditioned accumulated TrAct gradients"):
        opt.step(closure)
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k  # no update was taken
    trainact.discard_pending(net)


def test_accelerate_recipe_accumulation_equals_one_large_batch_with_clipping():
    accelerate = pytest.importorskip("accelerate")
    clip = 0.05
    accelerator = accelerate.Accelerator(gradient_accumulation_steps=4, cpu=True)
    net = _net()
    trainact.apply(net, 0.1, layer="0", defer=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.5)
    x, y = _data()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=2)
    net, opt, loader = accelerator.prepare(net, opt, loader)
    for xb, yb in loader:  # the README recipe
        with accelerator.accumulate(net):
            accelerator.backward(nn.functional.cross_entropy(net(xb), yb))
            if accelerator.sync_gradients:
                trainact.precondition_grads(net)  # after the last micro-batch, before clipping
                accelerator.clip_grad_norm_(net.parameters(), clip)
            opt.step()
            opt.zero_grad()
    ref = _reference(clip)
    for p, q in zip(accelerator.unwrap_model(net).parameters(), ref.parameters()):
        assert_close(p, q, rtol=1e-10, atol=1e-12)


class _HFNet(nn.Module):  # the Trainer's interface: keyword inputs, a dict with the loss
    def __init__(self):
        super().__init__()
        self.net = _net()

    def forward(self, pixel_values, labels):
        logits = self.net(pixel_values)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def _hf_setup(tmp_path, clip: float):
    """The Trainer's arguments (4 micro-batches of 2, SGD, clipping) and its data set."""
    from transformers import TrainingArguments

    x, y = _data()
    train = [{"pixel_values": xi, "labels": yi} for xi, yi in zip(x, y)]
    args = TrainingArguments(output_dir=str(tmp_path), per_device_train_batch_size=2, gradient_accumulation_steps=4,
                             max_steps=1, learning_rate=0.5, max_grad_norm=clip, optim="sgd",
                             lr_scheduler_type="constant", weight_decay=0.0, report_to="none", use_cpu=True,
                             save_strategy="no", logging_strategy="no", seed=0)
    return args, train


def test_transformers_trainer_accumulation_equals_one_large_batch_with_clipping(tmp_path):
    pytest.importorskip("transformers")
    from trainact.integrations.transformers import TrActTrainer

    clip = 0.05  # small enough that clipping is active: it must see the preconditioned gradient
    args, train = _hf_setup(tmp_path, clip)
    model = _HFNet()
    trainer = TrActTrainer(model=model, args=args, train_dataset=train, tract_lam=0.1, tract_layer="net.0")
    assert trainact.is_tract(model.net[0]) and model.net[0].tract.defer
    trainer.train()
    ref = _reference(clip)
    for (name, p), q in zip(model.net.named_parameters(), ref.parameters()):
        assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)
    with pytest.raises(ValueError, match="must use defer=True"):
        plain = _HFNet()
        trainact.apply(plain, layer="net.0")
        TrActTrainer(model=plain, args=args, train_dataset=train)


def test_transformers_trainer_with_model_init_trains_the_model_it_builds_with_tract(tmp_path):
    """train() builds a fresh model from model_init: that model, not the one built at construction, trains with
    TrAct (the old failure: it trained plain, silently)."""
    pytest.importorskip("transformers")
    from trainact.integrations.transformers import TrActTrainer

    clip = 0.05
    args, train = _hf_setup(tmp_path, clip)
    built = []
    trainer = TrActTrainer(model_init=lambda: built.append(_HFNet()) or built[-1], args=args, train_dataset=train,
                           tract_lam=0.1, tract_layer="net.0")
    trainer.train()
    assert len(built) == 2 and trainer.model is built[-1]  # one at construction, a fresh one at train()
    assert all(trainact.is_tract(m.net[0]) and m.net[0].tract.defer for m in built)
    ref = _reference(clip)
    for (name, p), q in zip(trainer.model.net.named_parameters(), ref.parameters()):
        assert_close(p, q, rtol=1e-10, atol=1e-12, msg=name)
