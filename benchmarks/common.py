"""Shared bits of the benchmark scripts: where results go, what produced them (the harness's provenance format,
`trainact.harness.env.environment`), and how they are written."""
from __future__ import annotations

import datetime
import os

import torch

from trainact.harness.env import environment, write_json_atomic

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")  # the benchmarks' JSON and figures


def machine_info(device="cpu") -> dict:
    """The date and the harness's environment record (git sha, torch, Python, device name, threads, cores)."""
    return {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            **environment(torch.device(device))}


def describe(e: dict) -> str:
    """One line for a result's provenance (benchmark results and experiments' config.json alike)."""
    return (f"{e['device_name']} ({e['device']}; {e['cpu_count']} cores, {e['torch_threads']} torch threads), "
            f"torch {e['torch_version']}, Python {e['python']}, git {str(e.get('git_sha'))[:7]}"
            + (f", {e['date']}" if e.get("date") else ""))


def write_result(path: str, payload: dict) -> None:
    write_json_atomic(path, payload)
    print(f"wrote {path}")
