"""Run a function in several CPU processes joined by a gloo process group (the kfac-pytorch pattern)."""
from __future__ import annotations

import os
import tempfile
import time
import traceback

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def _entry(rank: int, world: int, init_file: str, out_dir: str, fn, args) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        result = fn(rank, world, *args)
        dist.barrier()  # no rank tears gloo down while another is still in a collective
        torch.save({"ok": True, "result": result}, os.path.join(out_dir, f"{rank}.pt"))
    except BaseException as err:  # report to the parent instead of a bare non-zero exit
        torch.save({"ok": False, "error": f"{type(err).__name__}: {err}", "trace": traceback.format_exc()},
                   os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def run(fn, *args, world: int = 2, timeout: float = 120.0) -> list:
    """fn(rank, world, *args) in ``world`` processes; returns each rank's result, raising any rank's error."""
    with tempfile.TemporaryDirectory() as tmp:
        init_file = os.path.join(tmp, "init")
        ctx = mp.spawn(_entry, args=(world, init_file, tmp, fn, args), nprocs=world, join=False)
        deadline = time.monotonic() + timeout
        saved = lambda: all(os.path.exists(os.path.join(tmp, f"{rank}.pt")) for rank in range(world))  # noqa: E731
        try:
            while not ctx.join(1.0):
                if saved():  # every rank reported: a teardown that hangs (seen with torch 2.4's gloo) is not the
                    deadline = min(deadline, time.monotonic() + 10)  # test's subject, so it gets 10 s
                if time.monotonic() > deadline:
                    for proc in ctx.processes:
                        proc.kill()
                    if saved():
                        break
                    raise TimeoutError(f"{fn.__name__} did not finish within {timeout} s in {world} processes")
        except mp.ProcessExitedException:
            # A crash in gloo's teardown (`terminate called without an active exception`, seen rarely on
            # 2 cores) after every rank saved its result and passed the final barrier is not the test's subject;
            # a crash before that leaves a rank without a result and still fails.
            if not saved():
                raise
        results = []
        for rank in range(world):
            payload = torch.load(os.path.join(tmp, f"{rank}.pt"), weights_only=False)
            results.append(payload)
    errors = [r for r in results if not r["ok"]]
    if errors:
        raise RuntimeError("\n".join(e["error"] + "\n" + e["trace"] for e in errors))
    return [r["result"] for r in results]


def run_expect_errors(fn, *args, world: int = 2) -> list[str]:
    """Like :func:`run`, but returns every rank's error message (empty string where a rank succeeded)."""
    try:
        run(fn, *args, world=world)
    except RuntimeError as err:
        return [str(err)]
    return []
