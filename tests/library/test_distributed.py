"""Exact large-batch TrAct: DDP (2 gloo processes), gradient accumulation, checkpointing, multi-crop."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.testing import assert_close
from torch.utils.checkpoint import checkpoint

import trainact
import multiproc

REL = dict(rtol=1e-10, atol=1e-13)


def model_f64(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(6 * 4 * 4, 5)
    ).double()


def data(n: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (n,), generator=g)


def sum_loss(model, x, y, scale: float):
    return nn.functional.cross_entropy(model(x), y, reduction="sum") * scale


def reference_grad(xs, ys, **opts) -> torch.Tensor:
    """One process, the whole (concatenated) batch, mean loss."""
    model = model_f64()
    trainact.apply(model, 0.1, layer="0", solve_dtype=torch.float64, **opts)
    x, y = torch.cat(xs), torch.cat(ys)
    sum_loss(model, x, y, 1 / len(x)).backward()
    return model[0].weight.grad


# --------------------------------------------------------------------------------------------------------- DDP


def _ddp_grad(rank, world, sizes, sync, steps, solve_dtype=torch.float64):
    model = model_f64()
    trainact.apply(model, 0.1, layer="0", solve_dtype=solve_dtype, sync=sync)
    ddp = DDP(model)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5, momentum=0.9)
    total = sum(sizes)
    grads = []
    for step in range(steps):
        xs, ys = zip(*(data(s, seed=10 * step + r) for r, s in enumerate(sizes)))
        opt.zero_grad()
        # DDP averages over ranks: scale each rank's sum so the average is the global mean loss's gradient
        sum_loss(ddp, xs[rank], ys[rank], world / total).backward()
        grads.append(model[0].weight.grad.clone())
        opt.step()
    params = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    gathered = [torch.zeros_like(params) for _ in range(world)]
    dist.all_gather(gathered, params)
    return {"grads": grads, "identical": all(torch.equal(gathered[0], p) for p in gathered)}


@pytest.mark.distributed
def test_ddp_global_covariance_equals_single_process_on_concatenated_batch():
    sizes = [5, 3]  # unequal per-rank batches: rows weight the covariance
    results = multiproc.run(_ddp_grad, sizes, "auto", 3)
    xs, ys = zip(*(data(s, seed=r) for r, s in enumerate(sizes)))
    ref = reference_grad(xs, ys)
    for res in results:
        assert_close(res["grads"][0], ref, **REL)
        assert res["identical"]  # parameters bitwise identical across ranks after 3 steps


@pytest.mark.distributed
def test_ddp_default_solve_dtype_all_reduces_float64_statistics_of_a_float64_model():
    sizes = [3, 4]
    results = multiproc.run(_ddp_grad, sizes, "auto", 1, "auto")
    xs, ys = zip(*(data(s, seed=r) for r, s in enumerate(sizes)))
    for res in results:
        assert_close(res["grads"][0], reference_grad(xs, ys), **REL)


def _mixed_dtypes(rank, world):
    model = model_f64()
    trainact.apply(model, layer="0", solve_dtype="auto" if rank == 0 else torch.float32)
    x, y = data(4, seed=rank)
    sum_loss(model, x, y, 1.0).backward()


@pytest.mark.distributed
def test_solve_dtypes_differing_across_ranks_raise():
    errors = multiproc.run_expect_errors(_mixed_dtypes)
    assert errors and "solve dtype differs across ranks ([torch.float64, torch.float32])" in errors[0]


@pytest.mark.distributed
def test_ddp_local_statistics_are_the_papers_per_rank_average():
    sizes = [4, 4]
    results = multiproc.run(_ddp_grad, sizes, "local", 1)
    xs, ys = zip(*(data(s, seed=r) for r, s in enumerate(sizes)))
    per_rank = [reference_grad([x], [y]) for x, y in zip(xs, ys)]  # each rank's own TrAct gradient
    assert_close(results[0]["grads"][0], (per_rank[0] + per_rank[1]) / 2, **REL)
    assert not torch.allclose(results[0]["grads"][0], reference_grad(xs, ys), rtol=1e-6)


def _ddp_accumulate(rank, world, micro, size):
    model = model_f64()
    trainact.apply(model, 0.1, layer="0", solve_dtype=torch.float64, defer=True)
    ddp = DDP(model)
    opt = trainact.attach(torch.optim.SGD(ddp.parameters(), lr=0.1))
    total = micro * size * world
    for k in range(micro):
        x, y = data(size, seed=100 + 10 * k + rank)
        if k < micro - 1:
            with ddp.no_sync():
                sum_loss(ddp, x, y, world / total).backward()
        else:
            sum_loss(ddp, x, y, world / total).backward()
    before = model[0].weight.detach().clone()
    opt.step()  # the attached optimizer preconditions first (all-reducing the statistics)
    return ((before - model[0].weight.detach()) / 0.1)


@pytest.mark.distributed
def test_ddp_with_accumulation_equals_one_process_on_everything():
    micro, size = 3, 2
    results = multiproc.run(_ddp_accumulate, micro, size)
    xs, ys = zip(*(data(size, seed=100 + 10 * k + r) for k in range(micro) for r in range(2)))
    ref = reference_grad(xs, ys)
    for grad in results:
        assert_close(grad, ref, **REL)


def _mixed_modes(rank, world):
    model = model_f64()
    trainact.apply(model, layer="0", sync="auto" if rank == 0 else "local")
    x, y = data(4, seed=rank)
    sum_loss(model, x, y, 1.0).backward()


@pytest.mark.distributed
def test_mixed_modes_across_ranks_raise():
    errors = multiproc.run_expect_errors(_mixed_modes)
    assert errors and "differ across ranks" in errors[0] and "('auto', False), ('local', False)" in errors[0]


def test_global_sync_without_process_group_raises():
    model = model_f64()
    trainact.apply(model, layer="0", sync="global")
    x, y = data(4)
    with pytest.raises(RuntimeError, match="sync='global' needs an initialised torch.distributed process group"):
        sum_loss(model, x, y, 1.0).backward()


def test_bad_sync_mode():
    with pytest.raises(ValueError, match="sync must be one of"):
        trainact.TrAct(nn.Linear(3, 2), sync="everywhere")


# -------------------------------------------------------------------------------------------- accumulation


def test_accumulated_micro_batches_equal_one_big_batch():
    micro = [data(3, seed=s) for s in range(4)]
    model = model_f64()
    trainact.apply(model, 0.1, layer="0", solve_dtype=torch.float64, defer=True)
    for x, y in micro:
        sum_loss(model, x, y, 1 / 12).backward()
    assert not torch.allclose(model[0].weight.grad, reference_grad(*zip(*micro)))  # still the plain gradient
    assert trainact.precondition_grads(model) == ["TrAct layer '0'"]
    assert_close(model[0].weight.grad, reference_grad(*zip(*micro)), **REL)
    assert trainact.precondition_grads(model) == []  # statistics consumed


def _pending(layer):
    """The deferred statistics a layer holds: (Σ aᵀa, rows)."""
    return trainact.steps.state_of(layer).pooled()


def test_accumulated_statistics_take_the_wider_dtype():
    """A float64 backward widens the pooled Gram to float64 (the layer converted between micro-batches), whatever
    the order; float32 alone stays float32."""
    for first, second, expected in [(torch.float32, torch.float64, torch.float64),
                                    (torch.float64, torch.float32, torch.float64),
                                    (torch.float32, torch.float32, torch.float32)]:
        layer = trainact.TrAct(nn.Linear(2, 1), defer=True)
        for dtype, value in ((first, 1.0), (second, 2.0)):
            layer.to(dtype)
            layer(torch.full((3, 2), value, dtype=dtype)).sum().backward()
        gram, rows = _pending(layer)
        assert gram.dtype == expected and rows == 6
        assert torch.equal(gram, torch.full((1, 2, 2), 3 * 1.0 + 3 * 4.0, dtype=expected))
        trainact.discard_pending([layer])
        assert not trainact.steps.pending_layers([layer])


def test_deferred_float64_model_with_default_options_is_exact():
    """Micro-batches of a float64 model: default solve_dtype pools and solves in float64 (the oracle to 1e-10)."""
    micro = [data(3, seed=s) for s in range(3)]
    model = model_f64()
    trainact.apply(model, 0.1, layer="0", defer=True)
    for x, y in micro:
        sum_loss(model, x, y, 1 / 9).backward()
    assert _pending(model[0])[0].dtype == torch.float64
    trainact.precondition_grads(model)
    assert_close(model[0].weight.grad, reference_grad(*zip(*micro)), **REL)


def test_step_with_pending_statistics_raises_and_attach_fixes_it():
    model = model_f64()
    trainact.apply(model, layer="0", defer=True)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = data(4)
    sum_loss(model, x, y, 0.25).backward()
    before = model[0].weight.detach().clone()
    with pytest.raises(RuntimeError, match="un-preconditioned accumulated TrAct gradients"):
        opt.step()
    assert torch.equal(model[0].weight, before)  # nothing was applied
    trainact.attach(opt)
    opt.step()
    assert not torch.equal(model[0].weight, before) and not trainact.steps.pending_layers(model)


def test_grad_scaler_clipping_order_matches_fp32():
    """backward -> unscale_ -> precondition_grads -> clip -> step equals the unscaled flow."""
    results = []
    for use_scaler in (False, True):
        model = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(96, 5))
        torch.manual_seed(0)
        for p in model.parameters():
            nn.init.normal_(p, std=0.1)
        trainact.apply(model, layer="0", defer=True)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=use_scaler)
        for k in range(2):
            x, y = data(4, seed=k)
            scaler.scale(nn.functional.cross_entropy(model(x.float()), y) / 2).backward()
        scaler.unscale_(opt)
        trainact.precondition_grads(model)
        nn.utils.clip_grad_norm_(model.parameters(), 0.05)
        scaler.step(opt)
        scaler.update()
        results.append(model[0].weight.detach().clone())
    assert_close(results[0], results[1], rtol=1e-5, atol=1e-7)


def test_deferred_layer_survives_deepcopy_without_pending_state():
    model = model_f64()
    trainact.apply(model, layer="0", defer=True)
    x, y = data(4)
    sum_loss(model, x, y, 1.0).backward()
    clone = copy.deepcopy(model)
    assert not trainact.steps.pending_layers(clone) and trainact.steps.pending_layers(model)
    trainact.discard_pending(model)
    assert not trainact.steps.pending_layers(model)


# ------------------------------------------------------------------------------------ checkpointing, multi-crop


class Checkpointed(nn.Module):
    def __init__(self, reentrant: bool):
        super().__init__()
        self.body = model_f64()
        self.reentrant = reentrant

    def forward(self, x):
        return checkpoint(self.body, x, use_reentrant=self.reentrant)


@pytest.mark.parametrize("reentrant", [False, True])
@pytest.mark.parametrize("defer", [False, True])
def test_activation_checkpointing_counts_each_row_once(reentrant, defer):
    x, y = data(6)
    if reentrant:
        x.requires_grad_(True)  # reentrant checkpointing needs an input that requires grad
    model = Checkpointed(reentrant)
    trainact.apply(model, 0.1, layer="body.0", solve_dtype=torch.float64, defer=defer)
    sum_loss(model, x, y, 1 / 6).backward()
    if defer:
        (layer,) = trainact.steps.pending_layers(model)
        assert _pending(layer)[1] == 6 * 4 * 4  # rows of one forward, not of the recomputation too
        trainact.precondition_grads(model)
    assert_close(model.body[0].weight.grad, reference_grad([x.detach()], [y]), **REL)


class MultiCrop(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1).double()
        self.head = nn.Linear(4, 5).double()

    def forward(self, crops):
        return [self.head(self.stem(c).mean((2, 3))) for c in crops]


def test_multi_crop_pooled_when_deferred_and_per_call_otherwise():
    from oracle import layer_patches, output_rows

    torch.manual_seed(3)
    crops = [torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.randn(3, 3, 5, 5, dtype=torch.float64)]
    y = [torch.randint(0, 5, (2,)), torch.randint(0, 5, (3,))]
    base = MultiCrop()
    captured = []

    def keep(module, args, out):
        out.register_hook(lambda g: captured.append(g))

    plain = copy.deepcopy(base)
    plain.stem.register_forward_hook(keep)
    sum(nn.functional.cross_entropy(o, t) for o, t in zip(plain(crops), y)).backward()
    g_rows = [output_rows(plain.stem, g) for g in reversed(captured)]  # backward visits crops in reverse
    a_rows = [layer_patches(plain.stem, c) for c in crops]
    n = a_rows[0].shape[-1]
    eye = torch.eye(n, dtype=torch.float64)

    def tract(parts):
        grad = sum(g.transpose(1, 2) @ a for g, a in parts)[0]
        a_all = torch.cat([a for _, a in parts], dim=1)[0]
        return grad @ torch.linalg.inv(a_all.T @ a_all / a_all.shape[0] + 0.1 * eye)

    pooled = tract(list(zip(g_rows, a_rows))).reshape(base.stem.weight.shape)
    per_call = sum(tract([p]) for p in zip(g_rows, a_rows)).reshape(base.stem.weight.shape)
    for defer, expected in ((True, pooled), (False, per_call)):
        model = copy.deepcopy(base)
        trainact.apply(model, 0.1, layer="stem", solve_dtype=torch.float64, defer=defer)
        sum(nn.functional.cross_entropy(o, t) for o, t in zip(model(crops), y)).backward()
        trainact.precondition_grads(model)
        assert_close(model.stem.weight.grad, expected, rtol=1e-9, atol=1e-12)


# ------------------------------------------------------------------------------------------------------ FSDP


def model_of_width(channels: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, channels, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                         nn.Linear(channels * 4 * 4, 5)).double()


def _fsdp_grad(rank, world, defer=False, channels=6, micro=1):
    from torch.distributed.fsdp import fully_shard

    model = model_of_width(channels)
    trainact.apply(model, 0.1, layer="0", solve_dtype=torch.float64, defer=defer)
    fully_shard(model[0])
    fully_shard(model)
    for k in range(micro):  # FSDP averages over ranks: each rank's share of the global mean loss
        x, y = data(4, seed=10 * rank + k)
        sum_loss(model, x, y, 1 / (4 * micro)).backward()
    if defer:
        assert trainact.precondition_grads(model) == ["TrAct layer '0'"]
    grad = model[0].weight.grad
    return grad.full_tensor() if hasattr(grad, "full_tensor") else grad


def _fsdp_reference(world, channels=6, micro=1):
    xs, ys = zip(*(data(4, seed=10 * r + k) for r in range(world) for k in range(micro)))
    model = model_of_width(channels)
    trainact.apply(model, 0.1, layer="0", solve_dtype=torch.float64)
    sum_loss(model, torch.cat(xs), torch.cat(ys), 1 / (4 * len(xs))).backward()
    return model[0].weight.grad


def _needs_fsdp2():
    pytest.importorskip("torch.distributed.fsdp", reason="FSDP unavailable")
    from torch.distributed import fsdp

    if not hasattr(fsdp, "fully_shard"):
        pytest.skip("torch.distributed.fsdp.fully_shard (FSDP2) not in this torch")


@pytest.mark.distributed
def test_fsdp2_fully_shard_gives_the_global_batch_gradient():
    """FSDP2 unshards the weight for forward/backward, so TrAct sees the whole weight and its full gradient."""
    _needs_fsdp2()
    ref = _fsdp_reference(2)
    for grad in multiproc.run(_fsdp_grad):
        assert_close(grad, ref, **REL)


@pytest.mark.distributed
@pytest.mark.parametrize("channels", [6, 1])  # 1 output channel on 2 ranks: one rank's shard is empty
def test_fsdp2_deferred_accumulation_is_exact(channels):
    """defer=True under fully_shard: each rank preconditions its dim-0 shard of the reduce-scattered gradient with
    the all-reduced statistics of every micro-batch of every rank: the one-process gradient of everything."""
    _needs_fsdp2()
    ref = _fsdp_reference(2, channels, micro=2)
    for grad in multiproc.run(_fsdp_grad, True, channels, 2):
        assert_close(grad, ref, **REL)


def _apply_after_fully_shard(rank, world):
    from torch.distributed.fsdp import fully_shard

    model = model_f64()
    fully_shard(model)
    try:
        trainact.apply(model, layer="0")
    except ValueError as err:
        return str(err)
    return "no error"


@pytest.mark.distributed
def test_fsdp2_apply_after_fully_shard_says_to_apply_first():
    _needs_fsdp2()
    for message in multiproc.run(_apply_after_fully_shard):
        assert "already sharded" in message and "apply TrAct before fully_shard" in message
