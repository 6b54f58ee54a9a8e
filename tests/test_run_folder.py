"""The run folder (issue 31): one trainer at a time (a lock file naming its holder; stale locks taken over),
and name-like settings that cannot leave the output root. User-facing cases run the installed script."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from slimgan_pl import run_lock
from slimgan_pl.run_lock import LOCK_NAME, RunFolderInUseError, RunLock, stale_reason

from helpers.user_path import REPO, run_user, user_env

SMOKE = "debug=smoke trainer.accelerator=cpu callbacks.progress_bar=null callbacks.sample_grid=null"
ENV = {"OMP_NUM_THREADS": "1"}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def stderr_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


# ----------------------------------------------------------------------------- one writer per run folder
@pytest.mark.slow
def test_a_second_trainer_into_a_running_folder_is_refused_in_one_line(tmp_path):
    run, signals = tmp_path / "run", tmp_path / "signals"
    signals.mkdir()
    first = subprocess.Popen(
        [
            "bash",
            "-c",
            f"slimgan-train {SMOKE} train.g_steps=4 hydra.run.dir={run} "
            f"+callbacks.hold._target_=helpers.slow_iterations.HoldAt +callbacks.hold.iteration=2 "
            f"+callbacks.hold.folder={signals}",
        ],
        cwd=tmp_path,
        env=user_env({**ENV, "PYTHONPATH": str(REPO / "tests")}),  # tests/ only, for HoldAt
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while not (signals / "held").exists():  # the first run holds after iteration 2 until released
            assert first.poll() is None, first.stdout.read()[-3000:]
            assert time.monotonic() < deadline, "the first run did not reach iteration 2 within 180 s"
            time.sleep(0.2)
        holder = json.loads((run / LOCK_NAME).read_text())
        hydra_files = snapshot(run / ".hydra")

        for second in (f"slimgan-train --resume {run}", f"slimgan-train {SMOKE} hydra.run.dir={run}"):
            proc = run_user(second, cwd=tmp_path, env=ENV, timeout=120)
            assert proc.returncode == 2, proc.stderr[-2000:]
            lines = stderr_lines(proc)
            assert len(lines) == 1, proc.stderr[-2000:]
            assert lines[0].startswith(f"slimgan-train: error: run folder {run} is in use by another slimgan-train ")
            assert f"host {socket.gethostname()}, PID {holder['pid']}, started {holder['started']}" in lines[0]
            assert proc.stdout == ""  # nothing started: no "Resuming from", no training
            assert snapshot(run / ".hydra") == hydra_files  # Hydra did not rewrite the run's config

        (signals / "release").write_text("")
        output, _ = first.communicate(timeout=240)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, output[-3000:]
    assert json.loads((run / "summary.json").read_text())["iterations"] == 4
    assert not (run / LOCK_NAME).exists()  # released at the end


@pytest.mark.slow
def test_a_lock_left_by_a_dead_run_is_taken_over_with_a_message(tmp_path):
    run = tmp_path / "run"
    run_user(f"slimgan-train {SMOKE} hydra.run.dir={run}", cwd=tmp_path, env=ENV, check=True, timeout=300)
    gone = subprocess.Popen(["true"])
    gone.wait()  # a PID of this host that no longer runs: the run was killed (SIGKILL, OOM, power)
    dead = {"host": socket.gethostname(), "pid": gone.pid, "started": "2026-12-07T20:00:00Z", "slurm_job_id": None}
    (run / LOCK_NAME).write_text(json.dumps(dead))

    proc = run_user(f"slimgan-train --resume {run} train.g_steps=6", cwd=tmp_path, env=ENV, check=True, timeout=300)
    assert (
        f"run folder lock {run / LOCK_NAME}: taking it over from host {socket.gethostname()}, PID {gone.pid}, "
        f"started 2026-12-07T20:00:00Z: PID {gone.pid} is no longer running"
    ) in proc.stdout
    assert json.loads((run / "summary.json").read_text())["iterations"] == 6
    assert not (run / LOCK_NAME).exists()


def test_stale_rules_live_pid_requeued_slurm_job_and_expired_lease(tmp_path, monkeypatch):
    here, now = socket.gethostname(), time.time()
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        live = {"host": here, "pid": sleeper.pid, "pid_start": run_lock._pid_start(sleeper.pid), "started": "t"}
        assert stale_reason(live, now) is None
        assert stale_reason({**live, "pid_start": "1"}, now) == f"PID {sleeper.pid} is no longer running"  # reused
        # the same SLURM job on this node: still the PID that decides (two trainers in one allocation)
        monkeypatch.setenv("SLURM_JOB_ID", "77")
        assert stale_reason({**live, "slurm_job_id": "77"}, now) is None
    finally:
        sleeper.kill()
        sleeper.wait()
    other = {"host": "node-b", "pid": 4242, "started": "t", "slurm_job_id": "77"}
    assert stale_reason(other, now - 10) == "it is the same SLURM job 77, requeued"  # the requeued job
    monkeypatch.setenv("SLURM_JOB_ID", "78")
    assert stale_reason(other, now - 10) is None  # another host, refreshed 10 s ago: alive
    assert stale_reason(other, now - run_lock.LEASE_S - 5, now=now).startswith("it was last refreshed 305 s ago")
    assert stale_reason({}, now) == "the lock file is unreadable"


def test_lock_is_exclusive_refreshed_and_released(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    lock = RunLock(tmp_path, heartbeat_s=0.05)
    with lock:
        os.utime(lock.path, (0, 0))
        time.sleep(0.3)
        assert lock.path.stat().st_mtime > time.time() - 5  # the heartbeat refreshed it
        holder = json.loads(lock.path.read_text())
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        sleeper = subprocess.Popen(["sleep", "30"])
        try:  # a lock file held by another live process of this host
            lock.path.write_text(json.dumps({**holder, "pid": sleeper.pid, "pid_start": None, "token": "x"}))
            with pytest.raises(RunFolderInUseError, match=rf"PID {sleeper.pid}, started "):
                RunLock(tmp_path).acquire()
        finally:
            sleeper.kill()
            sleeper.wait()
        lock.path.write_text(json.dumps(holder))
    assert not lock.path.exists()


# ----------------------------------------------------------------------------- names stay inside the output root
@pytest.mark.parametrize(
    "override, key",
    [
        ("task_name=../../../x", "task_name"),
        ("-m sweep=n_share sweep_name=ok,../../y", "sweep_name"),
    ],
    ids=["task-name", "sweep-name-in-a-multirun"],
)
def test_names_with_a_path_are_refused_before_anything_is_created(tmp_path, override, key):
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    proc = run_user(f"slimgan-train {SMOKE} {override}", cwd=work, env=ENV, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = stderr_lines(proc)
    assert len(lines) == 1, proc.stderr[-2000:]
    assert lines[0].startswith(f"slimgan-train: error: {key}='") and "must be non-empty without '/'" in lines[0]
    assert [p for p in tmp_path.rglob("*") if p != work and not work.is_relative_to(p)] == []  # nothing created


def test_an_explicit_run_dir_still_goes_where_the_user_points(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    run_user(
        f"slimgan-train {SMOKE} train.g_steps=1 train.checkpoint_every=1 task_name=mine hydra.run.dir=../elsewhere",
        cwd=work,
        env=ENV,
        check=True,
        timeout=300,
    )
    assert (tmp_path / "elsewhere" / "checkpoints" / "last.ckpt").is_file() and not (work / "outputs").exists()


def test_every_name_key_is_checked_in_every_override_form():
    from slimgan_pl.train import check_name_overrides

    for bad in ("task_name=a/b", "+task_name=..", "++sweep_name=x/../y", "logger.csv.name=../z", "hydra.job.name=a\\b"):
        with pytest.raises(ValueError, match=r"it names a folder inside the output root"):
            check_name_overrides(["debug=smoke", bad])
    check_name_overrides(["task_name=my_run-2", "logger.csv.version=", "hydra.run.dir=../x/y", "paths.output_dir=/a/b"])
