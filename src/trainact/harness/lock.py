"""One `trainact compare` per output folder: a lock file naming the process that holds it.

`OUT/.trainact.lock` holds JSON: the holder's pid, host, process start time (Linux) and command line. A second
comparison on the same folder stops with an error naming that pid. A lock whose process is gone (killed, crashed,
the machine rebooted) is detected and taken over: the pid no longer exists, or it now belongs to another process
(a different start time). A lock from another host cannot be checked and is refused, with the file to delete.

Under torchrun only rank 0 takes the lock (the other ranks of the job write nothing); it tells the others whether
it got it, so a second job on the same folder stops on every rank.

Checking and taking the lock happen under an ``fcntl.flock`` of the folder itself, so two processes that find the
same stale lock cannot both take it over.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Optional

LOCK_NAME = ".trainact.lock"


class OutDirLocked(ValueError):
    """The output folder is in use by another live `trainact compare`."""


def process_start_time(pid: int) -> Optional[str]:
    """The process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or None off Linux."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    return stat.rpartition(")")[2].split()[19]  # fields after the command name, which may contain spaces


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (owned by anyone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


def _holder_alive(info: dict) -> bool:
    pid = info["pid"]
    if not pid_alive(pid):
        return False
    recorded, now = info.get("start"), process_start_time(pid)
    return recorded is None or now is None or recorded == now  # a reused pid has another start time


@contextlib.contextmanager
def _guard(folder: Path):
    try:
        import fcntl
    except ImportError:  # not POSIX: no guard, the pid check alone
        yield
        return
    fd = os.open(folder, os.O_RDONLY)  # a directory can be flock()ed: no extra file in the folder
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def _read(path: Path) -> Optional[dict]:
    """The lock's content, None if there is no lock; ValueError if it is not a trainact lock."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
        if not isinstance(info, dict) or isinstance(info.get("pid"), bool) or not isinstance(info.get("pid"), int):
            raise ValueError
    except ValueError:
        raise OutDirLocked(f"{path} is not a trainact lock file (content {text[:80]!r}); delete it if no trainact "
                           "compare is using this folder") from None
    return info


class OutDirLock:
    """The lock of one output folder, held by this process until :meth:`release`."""

    def __init__(self, folder: Path, created: bool):
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._created = created  # the folder did not exist: remove it again if nothing was written into it

    @classmethod
    def acquire(cls, folder) -> "OutDirLock":
        """Take the lock of ``folder`` (created if missing), or raise :class:`OutDirLocked` naming the holder."""
        folder = Path(folder)
        created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        lock = cls(folder, created)
        host = socket.gethostname()
        with _guard(folder):
            info = _read(lock.path)
            if info is not None and info["pid"] != os.getpid():
                where = f"pid {info['pid']}" + (f" on {info['host']}" if info.get("host") else "")
                command = f" ({info['command']})" if info.get("command") else ""
                if info.get("host", host) != host:
                    raise OutDirLocked(
                        f"output folder {folder} is in use by {where}{command}; it cannot be checked from {host}: "
                        f"wait for it, choose another --out, or delete {lock.path} if that process is gone")
                if _holder_alive(info):
                    raise OutDirLocked(
                        f"output folder {folder} is in use by {where}{command}, since {info.get('since', '?')}; "
                        "wait for it to finish or choose another --out")
                print(f"trainact: taking over the lock of {folder}: {where} no longer runs", file=sys.stderr)
            content = {"pid": os.getpid(), "host": host, "start": process_start_time(os.getpid()),
                       "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)}
            tmp = lock.path.with_name(f"{LOCK_NAME}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(content) + "\n")
            os.replace(tmp, lock.path)  # a reader sees the old lock or the new one, never half of it
        return lock

    def release(self) -> None:
        """Remove the lock if it is still this process's (and the folder, if this lock created it and it is empty)."""
        with _guard(self.folder):
            try:
                info = _read(self.path)
            except OutDirLocked:
                info = None
            if info is not None and info["pid"] == os.getpid():
                self.path.unlink(missing_ok=True)
        if self._created:
            with contextlib.suppress(OSError):
                self.folder.rmdir()  # only if empty
