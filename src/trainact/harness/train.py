"""Training one run (`run_one`), resumable and distributed; the comparison of many runs is `compare.py`.

One run trains one model for `budget` epochs with its own per-step schedule and writes, under
`OUT/<run id>/`:
- config.json: the full config, the run, the environment (git sha, torch version, device);
- metrics.jsonl: one line per epoch (epoch, train_loss, train_acc, test_top1, test_top5, lr, seconds =
  training time of the epoch without evaluation, eval_seconds); accuracies in %. Top-5 only with more than 5
  classes (with 5 or fewer it is 100 % by construction, so test_top5, final_top5 and best_top5 are left out);
- checkpoint.pt while the run is in progress: model, optimizer(s), GradScaler, epoch, step, RNG states and the
  metrics so far, written after every epoch to a temporary file and renamed over the old one. The lr schedule is
  a pure function of the step, so it needs no state of its own. The checkpoint is deleted when the run completes;
- summary.json, written last: final and best top-1/top-5, timing, `completed: true` (and, for a streamed data set,
  `test_images`: the number of test images every evaluation counted, each exactly once across ranks).

A run whose summary.json says completed is skipped. A run with a checkpoint continues from it, and on the CPU its
metrics equal those of an uninterrupted run: initial weights come from `torch.manual_seed(seed)` (so the baseline
and TrAct of a seed start from identical weights), data order and augmentation from (seed, epoch).
With `--loader stream` (harness/data/stream.py) the same holds: checkpoints are written once per epoch, so a
resumed run restarts its interrupted epoch from the beginning, and it sees the same batches there as an
uninterrupted run (DistributedSampler's order and each image's crop and flip are functions of (seed, epoch)).

Under `torchrun` every rank trains a DDP replica on its shard of each batch (`--batch-size` is the global batch),
evaluation is sharded and all-reduced, and rank 0 alone reads and writes files. TrAct's covariance AᵀA is that of
the global batch (the library's default sync="auto": one all-reduce of the statistics), so the DDP run takes the
update of the single-process run with the same global batch (BatchNorm statistics, by contrast, stay per rank).

The update itself is `optimizer_step` (backward of each micro-batch → unscale → TrAct's deferred preconditioning →
step), and an epoch of it `train_epoch`; neither touches a file, so their order is tested directly.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn

import trainact
from trainact.harness.config import CompareConfig
from trainact.harness.protocol import RunSpec
from trainact.harness.env import DistEnv, environment, save_atomic, write_json_atomic, write_jsonl_atomic

# ---------------------------------------------------------------------------------------------- pieces


def lr_factor(step: int, steps_per_epoch: int, budget: int, cfg: CompareConfig) -> float:
    """The lr multiplier at `step` (0-based, counted over the whole run).

    Linear warm-up over `warmup_epochs` (from 1/warmup_steps to 1), then cosine from 1 to 0 over the rest of
    the run (per step), or a step schedule: the lr is multiplied by gamma from each milestone epoch on, milestone
    f (a fraction of the B-epoch budget) being epoch max(1, round(f B)) (Python's round, half to even). multistep is
    the preset of pytorch-cifar100: ×0.2 at 0.3/0.6/0.8 (60/120/160 of 200); step takes `milestones` and `gamma`
    (the paper's ImageNet ResNet-50: ×0.1 at 0.333/0.667, epochs 10/20 of 30, 20/40 of 60, 30/60 of 90).
    """
    total = budget * steps_per_epoch
    warm = round(cfg.warmup_epochs * steps_per_epoch)
    if step < warm:
        return (step + 1) / warm
    if cfg.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    fractions, gamma = cfg.step_schedule()
    epoch = step // steps_per_epoch
    milestones = [max(1, round(f * budget)) for f in fractions]
    return gamma ** sum(epoch >= m for m in milestones)


def precision_context(amp: str, device: torch.device):
    """The one precision switch: nullcontext for fp32, autocast otherwise."""
    if amp == "off":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


def make_optimizers(model: nn.Module, first_layer: str, lr: float, cfg: CompareConfig) -> list:
    """The optimizer(s) of a run: one over all trainable parameters, or (first_layer_sgd) SGD for the first layer
    plus Adam/AdamW for the rest. Weight decay applies to every trainable parameter (as in pytorch-cifar100); a
    frozen one (requires_grad False, e.g. a whiten-frozen first layer's weight) is in no optimizer."""
    layer = list(model.get_submodule(first_layer).parameters())
    ids = {id(p) for p in layer}
    first = [p for p in layer if p.requires_grad]
    rest = [p for p in model.parameters() if id(p) not in ids and p.requires_grad]

    def make(name, params, lr_):
        if name == "sgd":
            return torch.optim.SGD(params, lr=lr_, momentum=cfg.momentum, nesterov=cfg.nesterov,
                                   weight_decay=cfg.weight_decay)
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        return cls(params, lr=lr_, weight_decay=cfg.weight_decay)

    if cfg.first_layer_sgd and first:
        return [make(cfg.optimizer, rest, lr), make("sgd", first, cfg.effective_first_layer_lr)]
    return [make(cfg.optimizer, first + rest, lr)]


def build_run_model(run: RunSpec, cfg: CompareConfig, dataset, device: torch.device, example: torch.Tensor):
    """The model of a run, seeded by the run's seed, with TrAct on its first layer for TrAct runs.

    Returns (model, first layer name). The first layer is found by tracing `example` (no RNG is used), so the
    baseline and TrAct of the same seed start from identical weights and identical RNG state. With
    `first_layer_init` whiten or whiten-frozen its weight is then replaced by patch-whitening filters of the
    training images (`whiten_first_layer`, no global RNG used either), and frozen for whiten-frozen.
    """
    from trainact.harness.models import build_model

    c, h, w = dataset.input_shape  # what the loader feeds: (C, H, W)
    torch.manual_seed(run.seed)
    model = build_model(cfg.model, num_classes=len(dataset.classes), image_size=h, in_channels=c,
                        **cfg.model_options())
    model.to(device)
    first = trainact.find_first_layer(model, example_input=example)
    if cfg.first_layer_init != "default":
        from trainact.harness.whiten import whiten_first_layer

        whiten_first_layer(model, first, cfg, dataset, seed=run.seed)
    if run.method == "tract":
        # with micro-batches, precondition once per step with the statistics of all of them (exact large batch)
        trainact.apply(model, run.lam, layer=first, relative=cfg.relative_lambda, defer=cfg.grad_accum > 1)
    return model, first


def stream_workers(cfg: CompareConfig) -> int:
    """Decoding processes per rank of the streaming loader: --workers, else min(8, CPUs / processes per node)."""
    if cfg.workers is not None:
        return cfg.workers
    per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // per_node))


def make_loaders(cfg: CompareConfig, dataset, device: torch.device, seed: int, dist: DistEnv = DistEnv()):
    """(train, test) loaders of a run: BatchLoader for an ImageDataset, StreamLoader for a StreamDataset; only the
    train loader scales contrast (--contrast-spread). `cfg.batch_size` divides among the processes (checked with
    the command line, where the number of processes is known)."""
    from trainact.harness.data import BatchLoader, StreamDataset, StreamLoader

    per_rank = cfg.batch_size // dist.world_size
    common = dict(mean=dataset.mean, std=dataset.std, input_range=cfg.input_range, device=device,
                  rank=dist.rank, world_size=dist.world_size)
    if isinstance(dataset, StreamDataset):
        common["workers"] = stream_workers(cfg)
        train = StreamLoader(dataset, split="train", batch_size=per_rank, train=True, augment=cfg.augment, seed=seed,
                             contrast_spread=cfg.contrast_spread, **common)
        test = StreamLoader(dataset, split="test", batch_size=max(per_rank, 256), train=False, augment=False,
                            seed=seed, **common)
        return train, test
    if dataset.image_size is not None:  # --image-size: random crops of the stored squares, no padding
        common["image_size"], common["crop_padding"] = dataset.image_size, 0
    train = BatchLoader(dataset.train_images, dataset.train_labels, batch_size=per_rank, train=True,
                        augment=cfg.augment, seed=seed, contrast_spread=cfg.contrast_spread, **common)
    common.pop("image_size", None)  # the test split is stored at its final size
    test = BatchLoader(dataset.test_images, dataset.test_labels, batch_size=max(per_rank, 256), train=False,
                       augment=False, seed=seed, **common)
    return train, test


TOP_K = 5
STREAM_THROUGHPUT_BATCHES = 20  # the streaming loader's rate in config.json: over this many batches


def has_top5(num_classes: int) -> bool:
    """Top-5 accuracy says something only with more than 5 classes (otherwise it is 100 %)."""
    return num_classes > TOP_K


@torch.no_grad()
def evaluation_counts(model: nn.Module, loader, ctx, device: torch.device,
                      dist: DistEnv = DistEnv()) -> tuple[list, int]:
    """([top-1 hits, top-5 hits, images] summed over ranks, number of classes): each rank counts its shard."""
    model.eval()
    counts = torch.zeros(3, dtype=torch.int64, device=device)  # top-1 hits, top-5 hits, images
    classes = 0
    for x, y in loader.epoch(0):
        with ctx:
            out = model(x)  # (B, classes)
        classes = out.shape[1]
        top = out.topk(min(5, out.shape[1]), dim=1).indices  # (B, k)
        hit = top == y[:, None]  # (B, k)
        counts[0] += hit[:, 0].sum()
        counts[1] += hit.any(dim=1).sum()
        counts[2] += y.shape[0]
    dist.all_reduce_(counts)
    return counts.tolist(), classes


def evaluate(model: nn.Module, loader, ctx, device: torch.device,
             dist: DistEnv = DistEnv(), *, expected: Optional[int] = None) -> tuple[float, Optional[float]]:
    """Test top-1 and top-5 (%) over the whole test set (each rank its shard, summed over ranks); top-5 is None
    with 5 classes or fewer. `expected`: the test set's size, which the ranks' counts must add up to."""
    (c1, c5, n), classes = evaluation_counts(model, loader, ctx, device, dist)
    if expected is not None and n != expected:
        raise RuntimeError(f"evaluation counted {n} images, but the test split has {expected}")
    return 100.0 * c1 / n, 100.0 * c5 / n if has_top5(classes) else None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def read_completed(path: Path) -> Optional[dict]:
    """The summary of a completed run, or None."""
    if not path.is_file():
        return None
    try:
        with open(path) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        return None
    return summary if summary.get("completed") is True else None


def log_line(msg: str) -> None:
    """One line of the harness's log, on stderr (the default `log` of run_one and the comparison)."""
    print(msg, file=sys.stderr, flush=True)


def _bar_log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- one run


@dataclass
class Training:
    """What one run trains with: the model (and its DDP wrapper), optimizers, schedule base lrs, scaler, loss."""

    model: nn.Module
    train_model: nn.Module  # the model, or its DistributedDataParallel wrapper
    first: str  # the first layer's name
    opts: list
    base_lrs: list
    scaler: torch.amp.GradScaler
    criterion: nn.Module
    ctx: object  # the precision context (autocast or nullcontext)


def optimizer_step(t: Training, x: torch.Tensor, y: torch.Tensor, lr_scale: float, grad_accum: int,
                   dist: DistEnv = DistEnv()) -> torch.Tensor:
    """One update on the batch (x, y) in `grad_accum` micro-batches; returns (loss sum, correct) of the batch.

    The order, which TrAct's exactness depends on: the lrs of this step → backward of every micro-batch (DDP
    all-reduces after the last only) → with micro-batches, unscale then TrAct's deferred preconditioning with the
    statistics of all of them (see trainact.distributed) → step → scaler update."""
    for o, lrs in zip(t.opts, t.base_lrs):
        for g, lr in zip(o.param_groups, lrs):
            g["lr"] = lr * lr_scale
    for o in t.opts:
        o.zero_grad(set_to_none=True)
    sums = torch.zeros(2, dtype=torch.float64, device=y.device)  # loss sum, correct
    for j, (xm, ym) in enumerate(zip(x.chunk(grad_accum), y.chunk(grad_accum))):
        no_sync = t.train_model.no_sync() if dist.enabled and j < grad_accum - 1 else contextlib.nullcontext()
        with no_sync:
            with t.ctx:
                out = t.train_model(xm)  # (b, classes)
                loss = t.criterion(out, ym)
            t.scaler.scale(loss * (ym.shape[0] / y.shape[0])).backward()
        sums[0] += loss.detach().double() * ym.shape[0]
        sums[1] += (out.detach().argmax(dim=1) == ym).sum()
    if grad_accum > 1:
        for o in t.opts:
            t.scaler.unscale_(o)
        trainact.precondition_grads(t.model)
    for o in t.opts:
        t.scaler.step(o)
    t.scaler.update()
    return sums


def train_epoch(t: Training, loader, epoch: int, run: RunSpec, cfg: CompareConfig, device: torch.device,
                dist: DistEnv = DistEnv(), on_step: Optional[Callable[[int, int, torch.Tensor, int], None]] = None) -> dict:
    """One epoch of updates (no files, no evaluation): {train_loss, train_acc, seconds, images} over all ranks.
    `on_step(epoch, i, sums, seen)` follows each step (the progress bar)."""
    t.train_model.train()
    steps_per_epoch = len(loader)
    sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct
    seen = 0
    _sync(device)
    start = time.perf_counter()
    for i, (x, y) in enumerate(loader.epoch(epoch)):
        if cfg.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        scale = lr_factor(epoch * steps_per_epoch + i, steps_per_epoch, run.budget, cfg)
        sums += optimizer_step(t, x, y, scale, cfg.grad_accum, dist)
        seen += y.shape[0]
        if on_step is not None:
            on_step(epoch, i, sums, seen)
    _sync(device)
    seconds = time.perf_counter() - start
    totals = dist.all_reduce_(torch.cat([sums, torch.tensor([seen], dtype=torch.float64, device=device)]))
    loss_sum, correct, count = totals.tolist()
    return {"train_loss": loss_sum / count, "train_acc": 100.0 * correct / count, "seconds": seconds,
            "images": int(count)}


def _read_run_dir(run_dir: Path, dist: DistEnv) -> tuple[Optional[dict], Optional[dict]]:
    """(summary, None) of a completed run, (None, checkpoint) of an interrupted one, (None, None) of a new one.
    Rank 0 reads; every rank gets the same answer (and the same checkpoint)."""
    ckpt_path = run_dir / "checkpoint.pt"
    done, state = None, None
    if dist.is_main:
        done = read_completed(run_dir / "summary.json")
        if done is not None:
            ckpt_path.unlink(missing_ok=True)
        elif ckpt_path.is_file():
            try:
                state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            except Exception as err:  # unreadable: say which file, and how to start the run over
                raise ValueError(f"cannot read checkpoint {ckpt_path} ({type(err).__name__}: {err}); "
                                 "delete it to restart this run") from err
    done, state = dist.broadcast((done, state))
    return done, state


def _start(run: RunSpec, cfg: CompareConfig, dataset, run_dir: Path, device: torch.device, dist: DistEnv,
           state: Optional[dict], env: Optional[dict], log: Callable[[str], None]) -> tuple[Training, list, int, tuple]:
    """A run ready to train from its first epoch, or from the checkpoint `state`: (Training, metrics rows so far,
    start epoch, (train loader, test loader)). Rank 0 writes the run's config.json and cuts metrics.jsonl back to
    the checkpoint."""
    loaders = make_loaders(cfg, dataset, device, run.seed, dist)
    model, first = build_run_model(run, cfg, dataset, device, loaders[1].example(2))
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)  # the same Parameter objects, new strides
    opts = make_optimizers(model, first, run.lr, cfg)
    t = Training(model, model, first, opts, [[g["lr"] for g in o.param_groups] for o in opts],
                 torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16"),
                 nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing), precision_context(cfg.amp, device))
    history, start_epoch = [], 0
    if state is not None:
        model.load_state_dict(state["model"])
        for o, s in zip(opts, state["optimizers"]):
            o.load_state_dict(s)
        t.scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        history, start_epoch = list(state["history"]), int(state["epoch"])
    if dist.enabled:
        t.train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        t.train_model = torch.compile(t.train_model)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "summary.json").unlink(missing_ok=True)
        write_json_atomic(run_dir / "config.json", {"config": cfg.to_dict(), "run": run.to_dict(),
                                                    "first_layer": first, "environment": env or environment(device, dist)})
        write_jsonl_atomic(run_dir / "metrics.jsonl", history)  # drops epochs after the checkpoint, if any
        log(f"[{run.run_id}] " + (f"resuming after epoch {start_epoch}" if start_epoch else "start")
            + f" ({cfg.model}, first layer {first!r}"
            + ("" if cfg.first_layer_init == "default" else f", {cfg.first_layer_init} init")
            + f"{', TrAct lam=' + format(run.lam, 'g') if run.lam else ''})")
    return t, history, start_epoch, loaders


def _evaluate_epoch(t: Training, test_loader, dataset, device: torch.device, dist: DistEnv) -> tuple:
    """(top-1, top-5, seconds) on the whole test split; rank 0's BatchNorm statistics on every rank."""
    start = time.perf_counter()
    if dist.enabled:  # BatchNorm running statistics drift apart per rank: evaluate rank 0's everywhere
        for b in t.model.buffers():
            torch.distributed.broadcast(b, src=0)
    top1, top5 = evaluate(t.model, test_loader, t.ctx, device, dist, expected=dataset.num_test)
    return top1, top5, time.perf_counter() - start


def _save_epoch(t: Training, run: RunSpec, run_dir: Path, row: dict, history: list, device: torch.device) -> None:
    """The epoch's metrics line, and (before the last epoch) the checkpoint to resume from."""
    with open(run_dir / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps(row) + "\n")
    if row["epoch"] < run.budget:
        save_atomic(run_dir / "checkpoint.pt", {
            "model": t.model.state_dict(), "optimizers": [o.state_dict() for o in t.opts],
            "scaler": t.scaler.state_dict(), "epoch": row["epoch"], "rng": _rng_state(device), "history": history,
            "run": run.to_dict()})


def run_one(run: RunSpec, cfg: CompareConfig, dataset, out_dir, device: torch.device, *,
            dist: DistEnv = DistEnv(), on_epoch_end: Optional[Callable[[int, dict], None]] = None,
            env: Optional[dict] = None, log: Callable[[str], None] = log_line, progress: bool = True) -> dict:
    """Train one run (or continue it from its checkpoint, or skip it if complete); returns its summary.
    `progress`: a progress bar on a terminal (runs side by side log their epochs only).

    `on_epoch_end(epoch, metrics_row)` is called after each epoch's checkpoint is written (tests use it to
    interrupt a run).
    """
    from tqdm import tqdm

    from trainact.harness.data import StreamDataset

    run_dir = Path(out_dir) / run.run_id
    done, state = _read_run_dir(run_dir, dist)
    if done is not None:
        if dist.is_main:
            log(f"[{run.run_id}] complete, skipped (final top-1 {done['final_top1']:.2f}%)")
        return done
    t, history, start_epoch, (train_loader, test_loader) = _start(
        run, cfg, dataset, run_dir, device, dist, state, env, log)
    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({dataset.num_train} images) is smaller than one batch "
                         f"per process ({cfg.batch_size // dist.world_size})")
    show_bar = progress and dist.is_main and sys.stderr.isatty()
    bar = tqdm(total=run.budget * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc=run.run_id,
               unit="step", leave=False, disable=not show_bar, file=sys.stderr, dynamic_ncols=True)

    def on_step(epoch: int, i: int, sums: torch.Tensor, seen: int) -> None:
        bar.update(1)
        if show_bar and (i % 10 == 0 or i == steps_per_epoch - 1):  # the only per-step sync, TTY only
            bar.set_postfix(epoch=f"{epoch + 1}/{run.budget}", loss=f"{sums[0].item() / seen:.3f}",
                            acc=f"{100 * sums[1].item() / seen:.1f}%")

    compiled_before = compile_counts() if cfg.compile else None
    for epoch in range(start_epoch, run.budget):
        stats = train_epoch(t, train_loader, epoch, run, cfg, device, dist, on_step)
        if compiled_before is not None and epoch == start_epoch and dist.is_main:
            graphs, breaks = (a - b for a, b in zip(compile_counts(), compiled_before))
            log(f"[{run.run_id}] torch.compile: {graphs} graph(s) compiled, {breaks} graph break(s)")
        evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == run.budget
        top1, top5, eval_seconds = _evaluate_epoch(t, test_loader, dataset, device, dist) if evaluated else (
            None, None, 0.0)
        row = {"epoch": epoch + 1, "train_loss": stats["train_loss"], "train_acc": stats["train_acc"],
               "test_top1": top1, "test_top5": top5, "lr": t.opts[0].param_groups[0]["lr"],
               "seconds": stats["seconds"], "eval_seconds": eval_seconds}
        if not has_top5(len(dataset.classes)):
            del row["test_top5"]  # 100 % by construction: not stored
        history.append(row)
        if dist.is_main:
            _save_epoch(t, run, run_dir, row, history, device)
            test = (f" | test top-1 {top1:.2f}%" + (f" top-5 {top5:.2f}%" if top5 is not None else "")
                    if evaluated else "")
            (_bar_log if show_bar else log)(
                f"[{run.run_id}] epoch {epoch + 1}/{run.budget} loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.2f}%{test} | {stats['seconds']:.1f}s (+{eval_seconds:.1f}s eval)")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    bar.close()

    summary = summarize_run(run, history, images_per_epoch=stats["images"], first_layer=t.first)
    if isinstance(dataset, StreamDataset):  # streamed: each evaluation counted every test image once (checked)
        summary["test_images"] = dataset.num_test
    if dist.is_main:
        write_json_atomic(run_dir / "summary.json", summary)
        (run_dir / "checkpoint.pt").unlink(missing_ok=True)
    dist.barrier()
    return summary


def compile_counts() -> tuple[int, int]:
    """(graphs compiled, graph breaks) so far in this process, from dynamo's counters."""
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"], sum(counters["graph_break"].values())


def summarize_run(run: RunSpec, history: list, *, images_per_epoch: int, first_layer: str) -> dict:
    """summary.json of a finished run. seconds_per_epoch leaves out the first epoch (one-time start-up costs)
    when there is more than one. final_top5 and best_top5 only where the metrics have top-5 (> 5 classes)."""
    evals = [r for r in history if r["test_top1"] is not None]
    best = max(evals, key=lambda r: (r["test_top1"], -r["epoch"]))
    secs = [r["seconds"] for r in history]
    steady = secs[1:] if len(secs) > 1 else secs
    train_seconds = sum(secs)
    top5 = [r["test_top5"] for r in evals if r.get("test_top5") is not None]  # none with 5 classes or fewer
    summary = {"run": run.to_dict(), "epochs": len(history), "first_layer": first_layer,
               "final_top1": history[-1]["test_top1"], "final_top5": history[-1].get("test_top5"),
               "best_top1": best["test_top1"], "best_top5": max(top5) if top5 else None,
               "best_epoch": best["epoch"], "train_seconds": train_seconds,
               "seconds_per_epoch": sum(steady) / len(steady), "eval_seconds": sum(r["eval_seconds"] for r in history),
               "train_images_per_second": images_per_epoch / (sum(steady) / len(steady)),
               "completed": True}
    if summary["final_top5"] is None:
        del summary["final_top5"], summary["best_top5"]
    return summary


# ---------------------------------------------------------------------------------------------- comparison
