"""Where a run happens: the torchrun process group, the device, the provenance written with every result, and
atomic file writes.

    dist, device = init_distributed("auto")        # rank 0 of 1 without torchrun; cuda:LOCAL_RANK under it
    environment(device, dist)                      # git sha, torch, Python, device name, threads, cores
    write_json_atomic(path, obj)                   # never a half-written file, even with two writers

One provenance format for the harness and the benchmark scripts (`environment`): keys git_sha, torch_version,
python, device, device_name, world_size, torch_threads, cpu_count.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

# ---------------------------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands in a `torchrun` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def broadcast(self, obj):
        """Rank 0's `obj` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def all_reduce_(self, t: torch.Tensor) -> torch.Tensor:
        if self.enabled:
            torch.distributed.all_reduce(t)
        return t


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(name: str, dist: DistEnv = DistEnv()) -> torch.device:
    """`auto` is CUDA when available, else the CPU; under torchrun each rank uses cuda:LOCAL_RANK."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available (use --device cpu or auto)")
        if name == "cuda":
            name = f"cuda:{dist.local_rank}" if dist.enabled else "cuda"
    return torch.device(name)


def init_distributed(device_name: str) -> tuple[DistEnv, torch.device]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl on CUDA)."""
    if not launched_by_torchrun():
        return DistEnv(), resolve_device(device_name)
    env = DistEnv(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ.get("LOCAL_RANK", 0)))
    device = resolve_device(device_name, env)
    if env.enabled and not torch.distributed.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return env, device


def peer_lost(err: BaseException) -> str:
    """What failed, when a collective failed because another process of the job went away (killed, crashed, node
    lost); "" otherwise."""
    text = str(err)
    for phrase in ("Connection reset by peer", "Connection closed by peer", "Broken pipe", "Connection refused"):
        if phrase in text:
            return phrase
    dist_error = getattr(torch.distributed, "DistError", ())
    return f"{type(err).__name__}: {text.strip().splitlines()[-1][:120]}" if isinstance(err, dist_error) else ""


def shutdown_distributed() -> None:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


# ---------------------------------------------------------------------------------------------- provenance


def environment(device: torch.device, dist: DistEnv = DistEnv()) -> dict:
    """What produced a result: written into every config.json and benchmark result."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    out = {"git_sha": git_sha(), "torch_version": torch.__version__, "python": platform.python_version(),
           "device": str(device), "device_name": name, "world_size": dist.world_size,
           "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    if os.environ.get(ONEDNN_ISA):  # a cap on oneDNN's kernels changes which CPU kernels ran
        out["onednn_max_cpu_isa"] = os.environ[ONEDNN_ISA]
    return out


ONEDNN_ISA = "ONEDNN_MAX_CPU_ISA"


def onednn_channels_last_guard(device: torch.device, channels_last_convs: bool) -> Optional[str]:
    """Cap oneDNN at AVX where its AVX2 kernels would crash, before the first convolution; returns what it did.

    oneDNN 3.x as bundled with torch (seen in 2.13 and 2.14) has an AVX2 1x1 backward-weights kernel that writes
    past its scratchpad for channels-last float32 1x1 stride-2 convolutions with fewer than 8 input channels: the
    process aborts ("double free or corruption") or, with several threads, hangs (uxlfoundation/oneDNN issue
    6035).  Channels-last convolutions on the CPU come from --channels-last and from torch.compile's layout
    optimisation.  On a CPU whose best vector unit is AVX2 (no AVX-512: AMD Zen 2/3, many desktop Intels) the cap
    ONEDNN_MAX_CPU_ISA=AVX avoids that kernel, gradients unchanged; elsewhere, or without channels-last
    convolutions, nothing is set.  oneDNN reads the variable once, at its first kernel: a later call has no
    effect, so the harness calls this at start-up.  A value the user set is kept."""
    if device.type != "cpu" or not channels_last_convs or os.environ.get(ONEDNN_ISA):
        return None
    if torch.backends.cpu.get_cpu_capability() != "AVX2":
        return None
    os.environ[ONEDNN_ISA] = "AVX"  # spawned job processes inherit it
    return (f"{ONEDNN_ISA}=AVX: oneDNN's AVX2 kernel for channels-last 1x1 stride-2 convolutions corrupts memory "
            f"(uxlfoundation/oneDNN issue 6035), and this CPU's best vector unit is AVX2")


def cpu_name() -> str:
    """The CPU's model name (for result files)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_sha() -> Optional[str]:
    """The commit of the working tree the harness runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None


# ---------------------------------------------------------------------------------------------- atomic files


@contextlib.contextmanager
def _atomic(path, binary: bool = False) -> Iterator:
    """A file object writing into a uniquely named temporary file beside `path`, renamed over `path` on success
    (two writers never share a temporary name; a crash leaves the old file, never half a new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            yield f
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are as readable as any file
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_json_atomic(path, obj) -> None:
    """JSON, indented, newline-terminated."""
    with _atomic(path) as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


def write_jsonl_atomic(path, rows: list) -> None:
    """One JSON object per line."""
    with _atomic(path) as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def save_atomic(path, obj, save: Callable = torch.save) -> None:
    """A torch.save (or another `save(obj, file)`) through a temporary file."""
    with _atomic(path, binary=True) as f:
        save(obj, f)
