"""One writer per run folder: ``<run>/.slimgan-train.lock`` while ``slimgan-train`` trains into it.

Two processes training into one folder (``slimgan-train --resume RUN`` started twice) would both write
the same checkpoints, logs and samples. The lock file names its holder (host, PID, the PID's start
time, start time of the run, SLURM job id) and is refreshed (its mtime) every :data:`HEARTBEAT_S`
seconds by a thread. Another process refuses to train into the folder in one line naming the holder,
unless the lock is stale, which it then takes over with a message:

* the holder is a SLURM job with this process's ``SLURM_JOB_ID`` (a requeued job: SLURM keeps the id);
* the holder ran on this host and its PID is gone (or is now another process, or a zombie);
* the holder ran on another host (a shared filesystem) and the lock was not refreshed for
  :data:`LEASE_S` seconds.

Under DDP only global rank 0 takes the lock (other ranks train into the folder as its helpers).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

LOCK_NAME = ".slimgan-train.lock"
HEARTBEAT_S = 30.0  # how often the holder refreshes the lock's mtime
LEASE_S = 300.0  # a lock of another host not refreshed for this long belongs to a run that died


class RunFolderInUseError(ValueError):
    """Another live process trains into this run folder."""


def _pid_start(pid: int) -> str | None:
    """The PID's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22): a PID reused by
    another process has another one. None where /proc is missing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _pid_running(pid: int, start: str | None) -> bool:
    """True when ``pid`` is a live (not zombie) process and, when ``start`` is known, the same one."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True  # no /proc: kill(0) is all we know
    if fields[0] in ("Z", "X"):
        return False
    return start is None or fields[19] == start


def describe(owner: dict[str, Any]) -> str:
    """``host h, PID p, started <UTC time>[, SLURM job j]``."""
    text = f"host {owner.get('host')}, PID {owner.get('pid')}, started {owner.get('started')}"
    return text + (f", SLURM job {owner['slurm_job_id']}" if owner.get("slurm_job_id") else "")


def read_lock(path: Path) -> tuple[dict[str, Any], float] | None:
    """(holder, mtime) of the lock file; None when there is none. An unreadable file reads as ``{}``
    (stale: locks are written whole, by rename)."""
    try:
        mtime = path.stat().st_mtime
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        owner = json.loads(text)
    except ValueError:
        owner = {}
    return (owner if isinstance(owner, dict) else {}), mtime


def stale_reason(owner: dict[str, Any], mtime: float, now: float | None = None) -> str | None:
    """Why the lock of ``owner`` may be taken over; None while its holder may still be training."""
    if not owner.get("host") or not isinstance(owner.get("pid"), int):
        return "the lock file is unreadable"
    job = os.environ.get("SLURM_JOB_ID")
    if owner["host"] != socket.gethostname() and job and owner.get("slurm_job_id") == job:
        # the job's earlier run, on another node: SLURM ended it before requeueing (on this node, the PID
        # check below decides, so two trainers inside one interactive allocation still exclude each other)
        return f"it is the same SLURM job {job}, requeued"
    if owner["host"] == socket.gethostname():
        if owner["pid"] == os.getpid():
            return "it is this process's own lock"
        if not _pid_running(owner["pid"], owner.get("pid_start")):
            return f"PID {owner['pid']} is no longer running"
        return None
    age = (time.time() if now is None else now) - mtime
    if age > LEASE_S:
        return f"it was last refreshed {age:.0f} s ago (lease {LEASE_S:.0f} s)"
    return None


def _in_use_message(run_dir: Path, owner: dict[str, Any]) -> str:
    return (
        f"run folder {run_dir} is in use by another slimgan-train ({describe(owner)}; lock {run_dir / LOCK_NAME}): "
        "wait for it to end or stop it; a lock left by a run that died is taken over automatically"
    )


def check_run_folder_free(run_dir: str | os.PathLike) -> None:
    """RunFolderInUseError (one line) when a live holder has the folder's lock; writes nothing (the check
    ``slimgan-train`` makes before Hydra writes ``.hydra/`` into an explicit run folder)."""
    run_dir = Path(run_dir)
    found = read_lock(run_dir / LOCK_NAME)
    if found is not None and stale_reason(*found) is None:
        raise RunFolderInUseError(_in_use_message(run_dir, found[0]))


class RunLock:
    """The lock of ``run_dir`` (``with RunLock(run_dir):`` around training): :meth:`acquire` takes it
    or raises :class:`RunFolderInUseError`; a thread refreshes it; :meth:`release` removes it if it is
    still this holder's."""

    def __init__(self, run_dir: str | os.PathLike, heartbeat_s: float = HEARTBEAT_S) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.heartbeat_s = heartbeat_s
        self.owner = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "pid_start": _pid_start(os.getpid()),
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
            "token": uuid.uuid4().hex,  # which holder wrote the file (PIDs repeat across hosts)
        }
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _is_mine(self) -> bool:
        found = read_lock(self.path)
        return found is not None and found[0].get("token") == self.owner["token"]

    def acquire(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.owner)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            found = read_lock(self.path)
            reason = stale_reason(*found) if found is not None else "it was just released"
            if reason is None:
                raise RunFolderInUseError(_in_use_message(self.run_dir, found[0])) from None
            if found is not None and reason != "it is this process's own lock":
                print(f"run folder lock {self.path}: taking it over from {describe(found[0])}: {reason}", flush=True)
            temp = self.path.with_name(f"{LOCK_NAME}.{self.owner['token']}")
            temp.write_text(text)
            os.replace(temp, self.path)
            time.sleep(0.05)  # two processes taking over at once: the last rename wins, the other sees it
            if not self._is_mine():
                found = read_lock(self.path)
                raise RunFolderInUseError(_in_use_message(self.run_dir, found[0] if found else {})) from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(text)
        self._stop.clear()
        self._thread = threading.Thread(target=self._heartbeat, name="slimgan-run-lock", daemon=True)
        self._thread.start()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.heartbeat_s):
            try:
                os.utime(self.path)
            except OSError:
                pass  # the folder went away or the filesystem hiccuped: the next beat tries again

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._is_mine():
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
