"""hydra/launcher=slurm against a real one-node SLURM (scripts/local_slurm.sh; .ci/run starts it):
a 2-run multirun sweep, a job requeued while it runs that resumes from its checkpoint, requests the
partition cannot hold refused before submission, and a never-starting pending job detected."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from helpers.user_path import check_installed, user_env

REPO = Path(__file__).parents[1]
# Jobs on 1 CPU each (2 cores shared), smoke-sized, CPU only (no GPU request: slimgan_pl.launch).
LAUNCH = [
    "hydra/launcher=slurm",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=15",
    "debug=smoke",
    "trainer.accelerator=cpu",
]


def slurm_up() -> str | None:
    """None when a SLURM node is idle/usable, else why not (tries scripts/local_slurm.sh once)."""
    if shutil.which("sinfo") is None and os.geteuid() != 0:
        return "SLURM is not installed and installing it needs root (run scripts/local_slurm.sh as root)"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "local_slurm.sh")], capture_output=True, text=True, timeout=600
    )
    if proc.returncode != 0:
        return f"scripts/local_slurm.sh could not start SLURM: {proc.stderr.strip()[-500:]}"
    return None


@pytest.fixture(scope="module")
def slurm() -> None:
    reason = slurm_up()
    if reason:
        pytest.skip(reason)


def env() -> dict[str, str]:
    # The user's path: the venv's installed slimgan-train, no PYTHONPATH to the checkout (jobs inherit this
    # environment, sbatch --export=ALL). Only tests/ is added, for the test-only SlowIterations callback.
    check_installed()
    return user_env({"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "tests")})


def multirun(sweep_dir: Path, *overrides: str, wait: bool = True) -> subprocess.Popen:
    cmd = ["slimgan-train", "-m", *LAUNCH, f"hydra.sweep.dir={sweep_dir}", *overrides]
    proc = subprocess.Popen(
        cmd, cwd=sweep_dir.parent, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    if wait:
        output, _ = proc.communicate(timeout=480)
        assert proc.returncode == 0, output[-4000:]
    return proc


def job_logs(sweep_dir: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in sorted((sweep_dir / ".submitit").rglob("*_log.*")))


@pytest.mark.slow
def test_two_run_sweep_through_slurm(slurm, tmp_path):
    sweep = tmp_path / "sweep"
    multirun(sweep, "slim.alpha=0,20")
    script = next((sweep / ".submitit").rglob("*_submission.sh")).read_text()
    assert "#SBATCH --signal=USR1@120" in script and "#SBATCH --requeue" in script
    assert "--gpus-per-node" not in script and "#SBATCH --ntasks-per-node=1" in script
    for job, alpha in (("0", 0.0), ("1", 20.0)):
        run = sweep / job
        summary = json.loads((run / "summary.json").read_text())
        assert summary["iterations"] == 4 and summary["resumed_from"] is None
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / "checkpoints" / "iter_000002.ckpt").is_file()
        assert yaml.safe_load((run / "config_resolved.yaml").read_text())["slim"]["alpha"] == alpha
        assert all(losses["d"] is not None for losses in summary["final_losses"].values())
    assert "Starting with JobEnvironment(job_id=" in job_logs(sweep)  # submitit ran them as SLURM jobs


@pytest.mark.slow
@pytest.mark.parametrize(
    "interrupt, message",
    [
        # an admin/scheduler requeue: SLURM sends SIGTERM, requeues the job itself
        (["scontrol", "requeue"], "stopping"),
        # SLURM's time-limit warning (--signal=USR1@120), sent now: the job saves and requeues itself
        (["scancel", "--signal=USR1"], "requeueing SLURM job"),
    ],
    ids=["scontrol-requeue", "usr1-warning"],
)
def test_requeued_job_resumes_from_its_checkpoint(slurm, tmp_path, interrupt, message):
    sweep = tmp_path / "sweep"
    proc = multirun(
        sweep,
        "train.g_steps=30",
        "train.checkpoint_every=5",
        "callbacks.sample_grid=null",
        "+callbacks.slow._target_=helpers.slow_iterations.SlowIterations",
        # two jobs of one seed (the sleep does not touch training): job 1 is job 0 uninterrupted
        "+callbacks.slow.seconds=0.3,0.31",
        "seed=1",
        wait=False,
    )
    try:
        first_ckpt = sweep / "0" / "checkpoints" / "iter_000005.ckpt"
        deadline = time.monotonic() + 300
        while not first_ckpt.exists():
            assert proc.poll() is None, proc.stdout.read()[-4000:]
            assert time.monotonic() < deadline, "no checkpoint within 300 s"
            time.sleep(0.2)
        job_dirs = [p.name for p in (sweep / ".submitit").iterdir() if p.name.endswith("_0")]
        assert len(job_dirs) == 1, job_dirs
        job_id = job_dirs[0]  # <array id>_0: the first run of the sweep
        subprocess.run([*interrupt, job_id], check=True, capture_output=True, text=True)
        output, _ = proc.communicate(timeout=480)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-4000:]

    summary = json.loads((sweep / "0" / "summary.json").read_text())
    assert summary["iterations"] == 30
    assert summary["resumed_at_iteration"] is not None and summary["resumed_at_iteration"] >= 5, summary
    assert summary["resumed_from"] == str(sweep / "0" / "checkpoints" / "last.ckpt")
    log = (sweep / ".submitit" / job_id / f"{job_id}_0_log.out").read_text()
    assert "preemption signal: saved" in log and message in log and "Resuming from" in log
    assert (sweep / "0" / "checkpoints" / "iter_000005.ckpt").is_file()  # kept across the requeue
    other = json.loads((sweep / "1" / "summary.json").read_text())  # the untouched job
    assert other["iterations"] == 30 and other["resumed_from"] is None
    # the requeued job ends bit for bit where the uninterrupted one does: weights, Adam states, RNG states
    resumed, uninterrupted = (
        torch.load(sweep / job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True) for job in "01"
    )
    for key in ("state_dict", "optimizer_states", "rng_states"):
        differ = [
            k for k, v in flat_tensors(resumed[key]).items() if not torch.equal(v, flat_tensors(uninterrupted[key])[k])
        ]
        assert not differ, f"{key}: {len(differ)} tensors differ from the uninterrupted job, e.g. {differ[:3]}"


def flat_tensors(value, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor of a nested checkpoint entry, keyed by its path."""
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else []
    return {k: v for key, item in items for k, v in flat_tensors(item, f"{prefix}.{key}").items()}


@pytest.mark.parametrize(
    "overrides, message",
    [
        # the launcher defaults (4 CPUs, 32 GB) on the 2-CPU node: used to pend forever (Reason=PartitionConfig)
        (["hydra.launcher.cpus_per_task=4", "hydra.launcher.mem_gb=1"], "set hydra.launcher.cpus_per_task=2"),
        (["hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=4096"], "set hydra.launcher.mem_gb="),
        # trainer=ddp on a partition without GPUs: used to fail in sbatch (gres) or on the node
        (
            ["trainer=ddp", "trainer.devices=2", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"],
            "use trainer=ddp_cpu",
        ),
        (["trainer=ddp", "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=1"], "set trainer.devices="),
    ],
    ids=["cpus", "memory", "gpus", "all-devices"],
)
def test_a_job_the_partition_cannot_hold_is_refused_before_submission(slurm, tmp_path, overrides, message):
    sweep = tmp_path / "sweep"
    cmd = [
        "slimgan-train",
        "-m",
        "hydra/launcher=slurm",
        "debug=smoke",
        f"hydra.sweep.dir={sweep}",
        *overrides,
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("slimgan-train:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert not (sweep / ".submitit").exists()  # nothing was submitted


def test_ddp_cpu_request_is_two_tasks_of_the_partition(slurm, tmp_path):
    """trainer=ddp_cpu through SLURM: 2 tasks per node (Lightning's SLURMEnvironment runs the ranks
    as SLURM tasks); checked and submitted as the sbatch script says, without running training."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from slimgan_pl.config import config_dir, register_resolvers
    from slimgan_pl.launch import check_request, partition_nodes

    register_resolvers()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "hydra/launcher=slurm",
                "trainer=ddp_cpu",
                "hydra.launcher.cpus_per_task=1",
                "hydra.launcher.mem_gb=1",
            ],
            return_hydra_config=True,
        )
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert (params["nodes"], params["tasks_per_node"], params["gpus_per_node"]) == (1, 2, None)
    partition, nodes = partition_nodes(None)
    check_request(params, partition, nodes)  # 2 tasks x 1 CPU fit the 2-CPU node


def test_a_pending_job_that_can_never_start_is_detected_and_cancelled(slurm, tmp_path):
    """The fallback for limits sinfo does not show: a job larger than the node pends with
    Reason=PartitionConfig; the launcher's watch cancels it and reports why (it used to poll forever)."""
    from slimgan_pl.launch import PendingWatch, unschedulable_jobs

    proc = subprocess.run(
        ["sbatch", "--parsable", "--cpus-per-task=4", "--mem=1G", "-o", "/dev/null", "--wrap", "sleep 1"],
        capture_output=True,
        text=True,
        check=True,
    )
    job = proc.stdout.strip().split(";")[0]
    try:
        (tmp_path / f"{job}_0").mkdir()  # as submitit names an array task's folder
        deadline = time.monotonic() + 60
        while not unschedulable_jobs([job]):
            assert time.monotonic() < deadline, "the job never showed an unschedulable reason"
            time.sleep(0.5)
        assert unschedulable_jobs([job]) == {job: "PartitionConfig"}
        with PendingWatch(str(tmp_path), interval=0.5) as watch:
            while watch.reason is None:
                assert time.monotonic() < deadline + 30, "the watch did not react"
                time.sleep(0.2)
        assert f"job {job} can never start (squeue: Reason=PartitionConfig)" in watch.reason
        state = subprocess.run(["squeue", "-h", "-j", job, "-o", "%T"], capture_output=True, text=True).stdout
        assert state.strip() in ("", "CANCELLED", "COMPLETING")  # cancelled by the watch
    finally:
        subprocess.run(["scancel", job], capture_output=True)
