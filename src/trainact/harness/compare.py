"""A whole comparison (`run_compare`): the lr grid, TrAct at the baseline's best lr per budget, summary.json, the
table and the plots; resumable and distributed (each run is `train.run_one`).

The comparison's own summary.json is written before its plots are drawn (a plotting failure cannot lose results),
and its output folder is locked while it runs (`harness/lock.py`: a second comparison on it stops, naming the pid).
"""
from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import torch

from trainact.harness.config import CompareConfig
from trainact.harness.env import DistEnv, environment, resolve_device, write_json_atomic
from trainact.harness.protocol import RunSpec, best_lrs, final_runs, grid_runs
from trainact.harness.train import STREAM_THROUGHPUT_BATCHES, log_line, make_loaders, run_one, stream_workers


def load_data(cfg: CompareConfig, dist: DistEnv = DistEnv(), log: Callable[[str], None] = log_line):
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
    if cfg.train_subset is not None and cfg.train_subset < len(dataset.classes):
        raise ValueError(f"--train-subset {cfg.train_subset} is fewer images than the {len(dataset.classes)} classes: "
                         f"a class-balanced subset needs at least one image of each class")
    if cfg.train_subset is not None and cfg.train_subset < dataset.num_train:
        dataset = dataset.subset(cfg.train_subset, seed=0)
    elif cfg.train_subset is not None and cfg.train_subset > dataset.num_train and dist.is_main:
        log(f"trainact compare: --train-subset {cfg.train_subset} is more than the {dataset.num_train} training "
            f"images there are: training on all {dataset.num_train}")
    return dataset


class OutDirMismatch(ValueError):
    """The output directory holds results of another configuration or on other data."""


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
        raise OutDirMismatch(f"--out {cfg.out} holds results of a different configuration ({what}); "
                         f"choose another --out or delete it{hint}")


def check_same_data(out_dir: Path, data: dict) -> dict:
    """`data` (the data set's record), if it is the one recorded in the output directory (name, sizes, classes,
    image shape, channel mean and std) or none is: runs on other data (a changed folder or synthetic set) are
    refused."""
    try:
        with open(out_dir / "config.json") as f:
            old = json.load(f)["environment"]["dataset"]
    except (OSError, ValueError, KeyError, TypeError):
        return data  # nothing recorded (a new folder, or an older one): check_out_dir has vetted the config
    changed = [k for k in ("name", "train_size", "test_size", "classes", "image_shape") if old.get(k) != data[k]]
    changed += [k for k in ("mean", "std") if k in old and any(
        abs(a - b) > 1e-4 * max(1.0, abs(b)) for a, b in zip(old[k], data[k]))]
    if changed:
        what = "; ".join(f"{k}: {old.get(k)!r} there, {data[k]!r} now" for k in changed)
        raise OutDirMismatch(f"--out {out_dir} holds results on other data ({what}); choose another --out or delete it")
    return data


def job_devices(device: torch.device, jobs: int, requested: str) -> list[str]:
    """The device of each of `jobs` parallel runs: round-robin over the visible GPUs for --device auto/cuda, the
    one device otherwise (several runs may share a GPU)."""
    if device.type == "cuda" and requested in ("auto", "cuda"):
        count = torch.cuda.device_count()
        return [f"cuda:{j % count}" for j in range(jobs)]
    return [str(device)] * jobs


_JOB: dict = {}  # in a job process: its config, data set, device and output folder


def _job_start(cfg: CompareConfig, devices, threads: Optional[int]) -> None:
    if threads is not None:
        torch.set_num_threads(threads)
    _JOB.update(cfg=cfg, device=torch.device(devices.get()), dataset=load_data(cfg, log=lambda m: None))


def _job_run(spec: RunSpec, out_dir: str, env: dict) -> dict:
    env = {**env, "device": str(_JOB["device"]), "torch_threads": torch.get_num_threads(), "jobs": _JOB["cfg"].jobs}
    return run_one(spec, _JOB["cfg"], _JOB["dataset"], out_dir, _JOB["device"], env=env, progress=False)


def _run_jobs(cfg: CompareConfig, out_dir: Path, device: torch.device, env: dict, log) -> dict:
    """The comparison's runs, `cfg.jobs` at a time in separate processes (each loads the data once). A budget's
    TrAct runs start as soon as that budget's lr grid has finished (the baseline's best lr is TrAct's)."""
    import concurrent.futures as cf
    import dataclasses
    import multiprocessing as mp
    import os

    ctx = mp.get_context("spawn")
    devices = ctx.Queue()
    for d in job_devices(device, cfg.jobs, cfg.device):
        devices.put(d)
    threads = cfg.threads or (max(1, (os.cpu_count() or 1) // cfg.jobs) if device.type == "cpu" else None)
    log(f"trainact compare: {cfg.jobs} runs at a time on {', '.join(sorted(set(job_devices(device, cfg.jobs, cfg.device))))}"
        + (f", {threads} thread(s) each" if device.type == "cpu" else ""))
    results: dict = {}
    best: dict = {}
    with cf.ProcessPoolExecutor(cfg.jobs, mp_context=ctx, initializer=_job_start,
                                initargs=(cfg, devices, threads)) as pool:
        pending = {pool.submit(_job_run, spec, str(out_dir), env): spec for spec in grid_runs(cfg)}

        def release() -> None:  # the final runs of every budget whose grid is complete
            for b in cfg.budgets:
                one = dataclasses.replace(cfg, budgets=(b,))
                if b in best or any(spec not in results for spec in grid_runs(one)):
                    continue
                best[b] = best_lrs(one, results)[b]
                for spec in final_runs(one, best):
                    if spec not in results and spec not in pending.values():
                        pending[pool.submit(_job_run, spec, str(out_dir), env)] = spec

        release()
        while pending:
            done, _ = cf.wait(pending, return_when=cf.FIRST_EXCEPTION)
            for future in done:
                spec = pending.pop(future)
                results[spec] = future.result()["final_top1"]  # a failed run stops the comparison here
            release()
    return {b: best[b] for b in cfg.budgets}


class PlotError(ValueError):
    """The comparison finished and its summary.json is written, but drawing the plots failed."""


def run_compare(cfg: CompareConfig, *, dist: DistEnv = DistEnv(), device: Optional[torch.device] = None,
                log: Callable[[str], None] = log_line, out=None) -> dict:
    """The whole comparison: lr grid, TrAct at the baseline's best lr, summary.json, the table, plots.

    The output folder is locked for the duration (rank 0 holds the lock for a torchrun job): a second comparison
    on it raises :class:`~trainact.harness.lock.OutDirLocked` naming the holder's pid, on every rank.
    """
    from trainact.harness.lock import OutDirLock, OutDirLocked

    lock, answer = None, None  # rank 0's answer: None (locked), the holder, or _READ_ONLY
    if dist.is_main:
        try:
            lock = OutDirLock.acquire(cfg.out)
        except OutDirLocked as err:
            answer = str(err)
        except OSError as err:  # a folder this process may not write: its results can still be shown
            if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not (Path(cfg.out) / "config.json").is_file():
                raise
            answer = _READ_ONLY
    answer = dist.broadcast(answer)
    if answer == _READ_ONLY:
        return _read_only(cfg, (out or sys.stdout) if dist.is_main else open(os.devnull, "w"))
    if answer is not None:
        raise OutDirLocked(answer)
    try:
        return _run_compare(cfg, dist=dist, device=device, log=log, out=out)
    finally:
        if lock is not None:
            lock.release()


_READ_ONLY = "read-only"


def _read_only(cfg: CompareConfig, out) -> dict:
    """A folder this process cannot write: its results when they are complete, else an error (nothing written)."""
    from trainact.harness import results as R

    check_out_dir(cfg)
    summary = R.summarize(Path(cfg.out), cfg)
    if not summary["complete"]:
        raise ValueError(f"--out {cfg.out} is read-only and {len(summary['missing'])} run(s) are still to train "
                         f"({', '.join(summary['missing'][:3])}{' ...' if len(summary['missing']) > 3 else ''}): "
                         f"make it writable, or choose another --out")
    print(R.format_table(summary), file=out, flush=True)
    print(f"results: {cfg.out} is read-only: nothing was trained or written", file=out, flush=True)
    return summary


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
        env["dataset"] = check_same_data(out_dir, dict(
            name=dataset.name, source=dataset.source, train_size=n, test_size=dataset.num_test,
            classes=len(dataset.classes), image_shape=[c, h, w], mean=list(dataset.mean), std=list(dataset.std)))
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").unlink(missing_ok=True)  # only written again at the real end
        write_json_atomic(out_dir / "config.json", {"config": cfg.to_dict(), "environment": env})
        log(f"trainact compare: {dataset.name} ({n} train / {dataset.num_test} test, {c}x{h}x{w}, "
            f"{len(dataset.classes)} classes), model {cfg.model}, device {device}"
            + (f" x{dist.world_size}" if dist.enabled else "") + f", output {out_dir}")
    env = dist.broadcast(env)

    if cfg.jobs > 1:
        best = _run_jobs(cfg, out_dir, device, env, log)
    else:
        summaries = {}

        def run(spec: RunSpec):
            if spec not in summaries:
                summaries[spec] = run_one(spec, cfg, dataset, out_dir, device, dist=dist, env=env, log=log)

        for spec in grid_runs(cfg):
            run(spec)
        best = best_lrs(cfg, {s: v["final_top1"] for s, v in summaries.items()})
        for spec in final_runs(cfg, best):
            run(spec)
    if dist.is_main and len(cfg.lrs) > 1:
        log("baseline's best lr per budget (used for TrAct): "
            + ", ".join(f"{b} epochs: {lr:g}" for b, lr in best.items()))

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
