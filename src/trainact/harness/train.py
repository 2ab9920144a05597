"""Training: one run (`run_one`) and a whole comparison (`run_compare`), resumable and distributed.

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

The comparison's own summary.json is written before its plots are drawn (a plotting failure cannot lose results),
and its output folder is locked while it runs (`harness/lock.py`: a second comparison on it stops, naming the pid).

A run whose summary.json says completed is skipped. A run with a checkpoint continues from it, and on the CPU its
metrics equal those of an uninterrupted run: initial weights come from `torch.manual_seed(seed)` (so the baseline
and TrAct of a seed start from identical weights), data order and augmentation from (seed, epoch).
With `--loader stream` (harness/data/stream.py) the same holds: checkpoints are written once per epoch, so a
resumed run restarts its interrupted epoch from the beginning, and it sees the same batches there as an
uninterrupted run (DistributedSampler's order and each image's crop and flip are functions of (seed, epoch)).

Under `torchrun` every rank trains a DDP replica on its shard of each batch (`--batch-size` is the global batch),
evaluation is sharded and all-reduced, and rank 0 alone reads and writes files. Note that TrAct's covariance
AᵀA is then that of the rank's own shard (as BatchNorm statistics are), not of the global batch.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn as nn

import trainact
from trainact.harness.config import CompareConfig
from trainact.harness.protocol import RunSpec, best_lrs, final_runs, grid_runs
from trainact.harness.env import (
    DistEnv, environment, resolve_device, save_atomic, write_json_atomic, write_jsonl_atomic,
)

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
        whiten_first_layer(model, first, cfg, dataset, seed=run.seed)
    if run.method == "tract":
        # with micro-batches, precondition once per step with the statistics of all of them (exact large batch)
        trainact.apply(model, run.lam, layer=first, relative=cfg.relative_lambda, defer=cfg.grad_accum > 1)
    return model, first


def whiten_first_layer(model: nn.Module, first: str, cfg: CompareConfig, dataset, *, seed: int) -> None:
    """airbench's first layer: patch-whitening filters (`trainact.harness.whiten.whiten_`) of a sample of the
    training images as the loader feeds them (`cfg.input_range`, no augmentation), sampled by `seed` (so the
    baseline and TrAct of a seed get the same filters); whiten-frozen then stops the weight's gradient."""
    from trainact.harness.data import ImageDataset, input_affine
    from trainact.harness.data.images import centre_offset
    from trainact.harness.whiten import whiten_

    if not isinstance(dataset, ImageDataset):
        raise ValueError(f"first_layer_init {cfg.first_layer_init!r} samples the training images in memory, but "
                         f"{dataset.source} is streamed from disk: use --loader memory")
    layer = model.get_submodule(first)
    if not isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) or layer.groups != 1:
        raise ValueError(f"first_layer_init {cfg.first_layer_init!r} needs a convolution (groups=1) as the first "
                         f"layer; {cfg.model}'s first layer {first!r} is {layer}")
    scale, shift = input_affine(dataset.mean, dataset.std, cfg.input_range, layer.weight.device)
    n = dataset.crop_size

    def transform(x: torch.Tensor) -> torch.Tensor:  # the loader's arithmetic, in float32
        if n is not None:  # --image-size: the unaugmented loader's centre crop of the stored square
            top, left = centre_offset(x.shape[-2], n), centre_offset(x.shape[-1], n)
            x = x[..., top : top + n, left : left + n]
        return x.to(torch.float32) * scale + shift

    whiten_(layer, dataset.train_images, seed=seed, transform=transform)
    if cfg.first_layer_init == "whiten-frozen":
        layer.weight.requires_grad_(False)


def stream_workers(cfg: CompareConfig) -> int:
    """Decoding processes per rank of the streaming loader: --workers, else min(8, CPUs / processes per node)."""
    if cfg.workers is not None:
        return cfg.workers
    per_node = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(1, min(8, (os.cpu_count() or 1) // per_node))


def make_loaders(cfg: CompareConfig, dataset, device: torch.device, seed: int, dist: DistEnv = DistEnv()):
    """(train, test) loaders of a run: BatchLoader for an ImageDataset, StreamLoader for a StreamDataset."""
    from trainact.harness.data import BatchLoader, StreamDataset, StreamLoader

    if cfg.batch_size % dist.world_size:
        raise ValueError(f"batch_size={cfg.batch_size} (the global batch) is not divisible by the "
                         f"{dist.world_size} processes")
    per_rank = cfg.batch_size // dist.world_size
    common = dict(mean=dataset.mean, std=dataset.std, input_range=cfg.input_range, device=device,
                  rank=dist.rank, world_size=dist.world_size)
    if isinstance(dataset, StreamDataset):
        common["workers"] = stream_workers(cfg)
        train = StreamLoader(dataset, split="train", batch_size=per_rank, train=True, augment=cfg.augment, seed=seed,
                             **common)
        test = StreamLoader(dataset, split="test", batch_size=max(per_rank, 256), train=False, augment=False,
                            seed=seed, **common)
        return train, test
    if dataset.crop_size is not None:  # --image-size: random crops of the stored squares, no padding
        common["crop_size"], common["crop_padding"] = dataset.crop_size, 0
    train = BatchLoader(dataset.train_images, dataset.train_labels, batch_size=per_rank, train=True,
                        augment=cfg.augment, seed=seed, **common)
    common.pop("crop_size", None)  # the test split is stored at its final size
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


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bar_log(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg, file=sys.stderr)


# ---------------------------------------------------------------------------------------------- one run


def run_one(run: RunSpec, cfg: CompareConfig, dataset, out_dir, device: torch.device, *,
            dist: DistEnv = DistEnv(), on_epoch_end: Optional[Callable[[int, dict], None]] = None,
            env: Optional[dict] = None, log: Callable[[str], None] = _log) -> dict:
    """Train one run (or continue it from its checkpoint, or skip it if complete); returns its summary.

    `on_epoch_end(epoch, metrics_row)` is called after each epoch's checkpoint is written (tests use it to
    interrupt a run).
    """
    from tqdm import tqdm

    from trainact.harness.data import StreamDataset

    run_dir = Path(out_dir) / run.run_id
    summary_path, ckpt_path, metrics_path = run_dir / "summary.json", run_dir / "checkpoint.pt", run_dir / "metrics.jsonl"

    # rank 0 decides: skip, resume or start; every rank gets the same answer (and the same checkpoint)
    done, state = None, None
    if dist.is_main:
        done = read_completed(summary_path)
        if done is not None:
            ckpt_path.unlink(missing_ok=True)
        elif ckpt_path.is_file():
            try:
                state = torch.load(ckpt_path, map_location="cpu", weights_only=True)
            except Exception as err:  # unreadable: say which file, and how to start the run over
                raise ValueError(f"cannot read checkpoint {ckpt_path} ({type(err).__name__}: {err}); "
                                 "delete it to restart this run") from err
    done, state = dist.broadcast((done, state))
    if done is not None:
        if dist.is_main:
            log(f"[{run.run_id}] complete, skipped (final top-1 {done['final_top1']:.2f}%)")
        return done

    train_loader, test_loader = make_loaders(cfg, dataset, device, run.seed, dist)
    example = test_loader.example(2)
    model, first = build_run_model(run, cfg, dataset, device, example)
    opts = make_optimizers(model, first, run.lr, cfg)
    base_lrs = [[g["lr"] for g in o.param_groups] for o in opts]
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.amp == "fp16")
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    ctx = precision_context(cfg.amp, device)
    history, start_epoch = [], 0
    if state is not None:
        model.load_state_dict(state["model"])
        for o, s in zip(opts, state["optimizers"]):
            o.load_state_dict(s)
        scaler.load_state_dict(state["scaler"])
        _set_rng_state(state["rng"], device)
        history, start_epoch = list(state["history"]), int(state["epoch"])
    train_model = model
    if dist.enabled:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        summary_path.unlink(missing_ok=True)
        write_json_atomic(run_dir / "config.json", {"config": cfg.to_dict(), "run": run.to_dict(),
                                                    "first_layer": first, "environment": env or environment(device, dist)})
        write_jsonl_atomic(metrics_path, history)  # drops epochs after the checkpoint, if any
        log(f"[{run.run_id}] " + (f"resuming after epoch {start_epoch}" if start_epoch else "start")
            + f" ({cfg.model}, first layer {first!r}"
            + ("" if cfg.first_layer_init == "default" else f", {cfg.first_layer_init} init")
            + f"{', TrAct lam=' + format(run.lam, 'g') if run.lam else ''})")

    steps_per_epoch = len(train_loader)
    if steps_per_epoch == 0:
        raise ValueError(f"the training set ({dataset.num_train} images) is smaller than one batch "
                         f"per process ({cfg.batch_size // dist.world_size})")
    show_bar = dist.is_main and sys.stderr.isatty()
    bar = tqdm(total=run.budget * steps_per_epoch, initial=start_epoch * steps_per_epoch, desc=run.run_id,
               unit="step", leave=False, disable=not show_bar, file=sys.stderr, dynamic_ncols=True)
    for epoch in range(start_epoch, run.budget):
        train_model.train()
        sums = torch.zeros(2, dtype=torch.float64, device=device)  # loss sum, correct
        seen = 0
        _sync(device)
        t0 = time.perf_counter()
        for i, (x, y) in enumerate(train_loader.epoch(epoch)):
            step = epoch * steps_per_epoch + i
            f = lr_factor(step, steps_per_epoch, run.budget, cfg)
            for o, lrs in zip(opts, base_lrs):
                for g, lr in zip(o.param_groups, lrs):
                    g["lr"] = lr * f
            for o in opts:
                o.zero_grad(set_to_none=True)
            k = cfg.grad_accum
            for j, (xm, ym) in enumerate(zip(x.chunk(k), y.chunk(k))):
                # DDP all-reduces gradients only after the last micro-batch
                no_sync = train_model.no_sync() if dist.enabled and j < k - 1 else contextlib.nullcontext()
                with no_sync:
                    with ctx:
                        out = train_model(xm)  # (b, classes)
                        loss = criterion(out, ym)
                    scaler.scale(loss * (ym.shape[0] / y.shape[0])).backward()
                sums[0] += loss.detach().double() * ym.shape[0]
                sums[1] += (out.detach().argmax(dim=1) == ym).sum()
            if k > 1:  # unscale, then TrAct's deferred preconditioning, then the step (see trainact.distributed)
                for o in opts:
                    scaler.unscale_(o)
                trainact.precondition_grads(model)
            for o in opts:
                scaler.step(o)
            scaler.update()
            seen += y.shape[0]
            bar.update(1)
            if show_bar and (i % 10 == 0 or i == steps_per_epoch - 1):  # the only per-step sync, TTY only
                bar.set_postfix(epoch=f"{epoch + 1}/{run.budget}", loss=f"{sums[0].item() / seen:.3f}",
                                acc=f"{100 * sums[1].item() / seen:.1f}%")
        _sync(device)
        seconds = time.perf_counter() - t0
        totals = dist.all_reduce_(torch.cat([sums, torch.tensor([seen], dtype=torch.float64, device=device)]))
        loss_sum, correct, count = totals.tolist()

        evaluated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == run.budget
        top1 = top5 = None
        t1 = time.perf_counter()
        if evaluated:
            if dist.enabled:  # BatchNorm running statistics drift apart per rank: evaluate rank 0's everywhere
                for b in model.buffers():
                    torch.distributed.broadcast(b, src=0)
            top1, top5 = evaluate(model, test_loader, ctx, device, dist, expected=dataset.num_test)
        eval_seconds = time.perf_counter() - t1
        row = {"epoch": epoch + 1, "train_loss": loss_sum / count, "train_acc": 100.0 * correct / count,
               "test_top1": top1, "test_top5": top5, "lr": opts[0].param_groups[0]["lr"], "seconds": seconds,
               "eval_seconds": eval_seconds}
        if not has_top5(len(dataset.classes)):
            del row["test_top5"]  # 100 % by construction: not stored
        history.append(row)
        if dist.is_main:
            with open(metrics_path, "a") as fh:
                fh.write(json.dumps(row) + "\n")
            if epoch + 1 < run.budget:
                save_atomic(ckpt_path, {"model": model.state_dict(), "optimizers": [o.state_dict() for o in opts],
                                        "scaler": scaler.state_dict(), "epoch": epoch + 1, "rng": _rng_state(device),
                                        "history": history, "run": run.to_dict()})
            test = (f" | test top-1 {top1:.2f}%" + (f" top-5 {top5:.2f}%" if top5 is not None else "")
                    if evaluated else "")
            (_bar_log if show_bar else log)(f"[{run.run_id}] epoch {epoch + 1}/{run.budget} loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.2f}%{test} | {seconds:.1f}s (+{eval_seconds:.1f}s eval)")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, row)
    bar.close()

    summary = summarize_run(run, history, images_per_epoch=int(count), first_layer=first)
    if isinstance(dataset, StreamDataset):  # streamed: each evaluation counted every test image once (checked)
        summary["test_images"] = dataset.num_test
    if dist.is_main:
        write_json_atomic(summary_path, summary)
        ckpt_path.unlink(missing_ok=True)
    dist.barrier()
    return summary


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


def load_data(cfg: CompareConfig, dist: DistEnv = DistEnv(), log: Callable[[str], None] = _log):
    """The data set of a comparison (rank 0 first, so that it alone fills the caches), subset if asked: an
    ImageDataset, or a StreamDataset with --loader stream (or auto, over the memory budget: said in one line)."""
    from trainact.harness.data import load_dataset

    def load():
        return load_dataset(cfg.data, cache_dir=cfg.cache_dir, synthetic=cfg.synthetic, image_size=cfg.image_size,
                            val_fraction=cfg.val_fraction, loader=cfg.loader, memory_budget=cfg.memory_budget,
                            workers=stream_workers(cfg) if cfg.loader != "memory" else 0)

    dataset = None
    if dist.is_main:
        dataset = load()
        if getattr(dataset, "note", None):
            log(f"trainact compare: {dataset.note}")
    dist.barrier()
    if not dist.is_main:
        dataset = load()
    if cfg.train_subset is not None and cfg.train_subset < dataset.num_train:
        dataset = dataset.subset(cfg.train_subset, seed=0)
    return dataset


def check_out_dir(cfg: CompareConfig) -> None:
    """Refuse to mix results of different configurations in one output directory."""
    path = Path(cfg.out) / "config.json"
    if not path.is_file():
        return
    try:
        with open(path) as f:
            old = CompareConfig.from_dict(json.load(f)["config"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a trainact compare config ({err}); choose another --out") from None
    diff = old.differences(cfg)
    if diff:
        what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, a, b in ((k, *v) for k, v in diff.items()))
        hint = ""
        if diff.get("warmup_epochs", (None, None))[1] == 0.0:  # the default was 1 epoch before it became 0
            hint = f" (to resume it, pass --warmup-epochs {diff['warmup_epochs'][0]:g} as it was run with)"
        raise ValueError(f"--out {cfg.out} holds results of a different configuration ({what}); "
                         f"choose another --out or delete it{hint}")


class PlotError(ValueError):
    """The comparison finished and its summary.json is written, but drawing the plots failed."""


def run_compare(cfg: CompareConfig, *, dist: DistEnv = DistEnv(), device: Optional[torch.device] = None,
                log: Callable[[str], None] = _log, out=None) -> dict:
    """The whole comparison: lr grid, TrAct at the baseline's best lr, summary.json, the table, plots.

    The output folder is locked for the duration (rank 0 holds the lock for a torchrun job): a second comparison
    on it raises :class:`~trainact.harness.lock.OutDirLocked` naming the holder's pid, on every rank.
    """
    from trainact.harness.lock import OutDirLock, OutDirLocked

    lock, busy = None, None
    if dist.is_main:
        try:
            lock = OutDirLock.acquire(cfg.out)
        except OutDirLocked as err:
            busy = str(err)
    busy = dist.broadcast(busy)
    if busy is not None:
        raise OutDirLocked(busy)
    try:
        return _run_compare(cfg, dist=dist, device=device, log=log, out=out)
    finally:
        if lock is not None:
            lock.release()


def _run_compare(cfg: CompareConfig, *, dist: DistEnv, device: Optional[torch.device],
                 log: Callable[[str], None], out) -> dict:
    from trainact.harness import results as R
    from trainact.harness.data import StreamDataset, measure_loader_throughput

    device = device or resolve_device(cfg.device, dist)
    out = out or sys.stdout
    out_dir = Path(cfg.out)
    if dist.is_main:
        check_out_dir(cfg)
    dist.barrier()
    dataset = load_data(cfg, dist, log)
    n, (c, h, w) = dataset.num_train, dataset.input_shape  # what the model is fed: (C, H, W)
    streamed = isinstance(dataset, StreamDataset)

    env = environment(device, dist)
    if dist.is_main:
        train_loader, _ = make_loaders(cfg, dataset, device, 0, dist)
        # a streamed epoch can take an hour: its rate is that of the first batches (workers started, files cold)
        env["loader_images_per_second"] = measure_loader_throughput(
            train_loader, epochs=1, max_batches=STREAM_THROUGHPUT_BATCHES if streamed else None)
        if streamed:
            env["loader"] = {"kind": "stream", "workers": stream_workers(cfg)}
        env["dataset"] = {"name": dataset.name, "source": dataset.source, "train_size": n,
                          "test_size": dataset.num_test, "classes": len(dataset.classes),
                          "image_shape": [c, h, w], "mean": list(dataset.mean), "std": list(dataset.std)}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").unlink(missing_ok=True)  # only written again at the real end
        write_json_atomic(out_dir / "config.json", {"config": cfg.to_dict(), "environment": env})
        log(f"trainact compare: {dataset.name} ({n} train / {dataset.num_test} test, {c}x{h}x{w}, "
            f"{len(dataset.classes)} classes), model {cfg.model}, device {device}"
            + (f" x{dist.world_size}" if dist.enabled else "") + f", output {out_dir}")
    env = dist.broadcast(env)

    summaries = {}

    def run(spec: RunSpec):
        if spec not in summaries:
            summaries[spec] = run_one(spec, cfg, dataset, out_dir, device, dist=dist, env=env, log=log)

    for spec in grid_runs(cfg):
        run(spec)
    best = best_lrs(cfg, {s: v["final_top1"] for s, v in summaries.items()})
    if dist.is_main and len(cfg.lrs) > 1:
        log("baseline's best lr per budget (used for TrAct): "
            + ", ".join(f"{b} epochs: {lr:g}" for b, lr in best.items()))
    for spec in final_runs(cfg, best):
        run(spec)

    summary, plot_error = None, None
    if dist.is_main:
        summary = R.summarize(out_dir, cfg)
        runs = R.load_runs(out_dir)
        summary["throughput"] = {
            "loader_images_per_second": env["loader_images_per_second"],
            "train_images_per_second": {r["label"] + f"@{r['budget']}": r["train_images_per_second"]["mean"]
                                        for r in summary["results"]}}
        summary["completed"] = summary["complete"]
        write_json_atomic(out_dir / "summary.json", summary)  # before the plots: they cannot lose the results
        print(R.format_table(summary), file=out, flush=True)
        print(f"\nloader {env['loader_images_per_second']:.0f} images/s vs training "
              + ", ".join(f"{k} {v:.0f}" for k, v in summary["throughput"]["train_images_per_second"].items())
              + " images/s", file=out)
        try:
            from trainact.harness.plots import make_plots

            make_plots(out_dir, summary, runs)
        except Exception as err:  # noqa: BLE001  (any plotting failure: the results are safe, say how to redo it)
            plot_error = err
        else:
            print(f"results: {out_dir}/summary.json, plots: {out_dir}/*.png", file=out, flush=True)
    dist.barrier()
    if plot_error is not None:
        raise PlotError(f"the results are complete in {out_dir}/summary.json, but drawing the plots failed "
                        f"({type(plot_error).__name__}: {plot_error}); `trainact report {out_dir}` draws them "
                        "again") from plot_error
    return summary
