"""Shared bits of the benchmark scripts: machine description and result files."""
from __future__ import annotations

import datetime
import json
import os
import platform

import torch

from trainact.harness.results import git_sha

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")  # the benchmarks' JSON and figures
from trainact.harness.train import cpu_name


def machine_info() -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "git": git_sha(),
    }


def write_result(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(payload, f, indent=1)
    os.replace(tmp, path)
    print(f"wrote {path}")
