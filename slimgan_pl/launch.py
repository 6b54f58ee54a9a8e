"""Job requests of ``hydra/launcher=slurm`` and ``hydra/launcher=local``, derived from the trainer config.

One place (:func:`launch_resources`) turns ``trainer.accelerator``, ``trainer.devices`` and
``trainer.num_nodes`` into the launcher's ``nodes``, ``tasks_per_node`` and ``gpus_per_node`` (the
launcher YAMLs interpolate them through the ``launch_resource`` resolver), or refuses in one line:

* SLURM: one task per device on every node (Lightning's ``SLURMEnvironment`` runs the ranks as SLURM
  tasks and checks ``--ntasks-per-node`` = ``trainer.devices``), GPUs per node = devices on a GPU run;
  ``trainer.devices=-1`` ("all visible") cannot size a request and is refused.
* local (submitit's local executor): one task, Lightning starts the ranks itself; GPUs = devices
  (all of this machine's for ``-1``), since the executor hides the GPUs it was not asked for.

:class:`hydra_plugins.slimgan_launchers.SlurmLauncher` (the ``_target_`` of ``conf/hydra/launcher/slurm.yaml``;
Hydra accepts launchers only from the ``hydra_plugins`` namespace) checks the request
against the partition's nodes (``sinfo``) before submitting anything: a job larger than every node
would otherwise wait forever (``Reason=PartitionConfig``) while ``slimgan-train -m`` polls it. With
``trainer.accelerator=auto`` it requests GPUs exactly when the partition has some.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf

LAUNCHER_KINDS = ("slurm", "local")
GPU_ACCELERATORS = ("gpu", "cuda")


class LaunchConfigError(ValueError):
    """The job request cannot be derived or cannot run; the message is one line saying what to change."""


@dataclass(frozen=True)
class LaunchResources:
    nodes: int
    tasks_per_node: int
    gpus_per_node: int | None  # None: no GPU request


def device_count(devices: Any, cuda_count: int | None = None) -> int | None:
    """Devices per node that ``trainer.devices`` asks for: an int > 0, a list of GPU ids 0..n-1 or
    a string of either; None for ``-1`` / ``"auto"`` (all visible) unless ``cuda_count`` is given."""
    if isinstance(devices, (ListConfig, list, tuple)):
        ids = [int(d) for d in devices]
    elif isinstance(devices, str) and "," in devices:
        ids = [int(d) for d in devices.split(",") if d.strip()]
    else:
        ids = None
    if ids is not None:
        if sorted(ids) != list(range(len(ids))):
            raise LaunchConfigError(
                f"trainer.devices={list(ids)} names GPU ids, but a launched job sees only the "
                f"GPUs it is given, numbered from 0: set trainer.devices={len(ids)}"
            )
        return len(ids)
    if str(devices) in ("-1", "auto"):
        return cuda_count
    try:
        count = int(devices)
    except (TypeError, ValueError):
        raise LaunchConfigError(f"trainer.devices must be a count, -1 or a list of GPU ids, got {devices!r}") from None
    if count < 1:
        raise LaunchConfigError(f"trainer.devices must be >= 1 or -1 (all visible), got {devices!r}")
    return count


def launch_resources(
    kind: str,
    accelerator: str,
    devices: Any,
    num_nodes: Any = 1,
    partition_has_gpus: bool | None = None,
    cuda_count: int | None = None,
) -> LaunchResources:
    """Nodes, tasks per node and GPUs per node of one job (see the module docstring).
    ``partition_has_gpus`` decides ``accelerator=auto`` on SLURM (None: not known, no GPU request);
    ``cuda_count``: this machine's GPUs (local launcher, ``devices=-1``)."""
    if kind not in LAUNCHER_KINDS:
        raise LaunchConfigError(f"launcher kind must be one of {LAUNCHER_KINDS}, got {kind!r}")
    accelerator = str(accelerator)
    if accelerator == "auto":
        gpu = bool(partition_has_gpus) if kind == "slurm" else bool(cuda_count)
    elif accelerator in GPU_ACCELERATORS:
        gpu = True
    elif accelerator == "cpu":
        gpu = False
    else:
        raise LaunchConfigError(
            f"trainer.accelerator must be one of cpu, gpu, auto for a launched job, got {accelerator!r}"
        )
    try:
        nodes = int(num_nodes)
    except (TypeError, ValueError):
        nodes = 0
    if nodes < 1:
        raise LaunchConfigError(f"trainer.num_nodes must be an integer >= 1, got {num_nodes!r}")
    if kind == "local":
        if nodes > 1:
            raise LaunchConfigError(
                f"hydra/launcher=local runs on this machine only: trainer.num_nodes={nodes} needs hydra/launcher=slurm"
            )
        count = device_count(devices, cuda_count if gpu else None)
        if gpu and (not count or (cuda_count is not None and count > cuda_count)):
            raise LaunchConfigError(
                f"trainer.devices asks for {count or 'all'} GPU(s) but this machine has "
                f"{cuda_count or 'none'}: lower trainer.devices, or run on CPU processes with "
                "trainer=ddp_cpu (one process: trainer.accelerator=cpu)"
            )
        return LaunchResources(nodes=1, tasks_per_node=1, gpus_per_node=count if gpu else 0)
    count = device_count(devices)
    if count is None:
        raise LaunchConfigError(
            f"trainer.devices={devices} (all visible) cannot size a SLURM request: set "
            "trainer.devices=<devices per node>, e.g. trainer.devices=4"
        )
    return LaunchResources(nodes=nodes, tasks_per_node=count, gpus_per_node=count if gpu else None)


def launch_resource(kind: str, key: str, accelerator: Any, devices: Any, num_nodes: Any = 1) -> Any:
    """Resolver for the launcher YAMLs: one field of :func:`launch_resources`. Never raises (the
    launcher re-derives the request and refuses bad ones in one line before submitting); an
    underivable request shows as 1 / no GPU."""
    try:
        cuda = local_cuda_count() if kind == "local" else None
        return getattr(launch_resources(kind, accelerator, devices, num_nodes, cuda_count=cuda), key)
    except LaunchConfigError:
        return None if key == "gpus_per_node" else 1


def local_cuda_count() -> int:
    import torch

    return torch.cuda.device_count()


# ----------------------------------------------------------------------------- partition check
@dataclass(frozen=True)
class NodeInfo:
    name: str
    cpus: int
    memory_mb: int
    gpus: int


def parse_gpus(gres: str) -> int:
    """GPUs in a ``sinfo %G`` field: ``gpu:4``, ``gpu:a100:8(S:0-1)``, ``(null)``, comma-separated."""
    total = 0
    for item in gres.split(","):
        match = re.match(r"gpu(?::[^:(]+)?:(\d+)", item.strip())
        if match:
            total += int(match.group(1))
    return total


def partition_nodes(partition: str | None) -> tuple[str, list[NodeInfo]]:
    """The partition's name (the default one for None) and its nodes, from ``sinfo``."""
    if partition is None:
        names = subprocess.run(["sinfo", "-h", "-o", "%P"], capture_output=True, text=True, check=True).stdout.split()
        defaults = [n[:-1] for n in names if n.endswith("*")]
        if not defaults:
            raise LaunchConfigError("this cluster has no default SLURM partition: set hydra.launcher.partition=<name>")
        partition = defaults[0]
    out = subprocess.run(
        ["sinfo", "-h", "-N", "-p", partition, "-o", "%N|%c|%m|%G"], capture_output=True, text=True, check=True
    ).stdout
    nodes = {}
    for line in out.splitlines():
        name, cpus, memory, gres = line.split("|")
        nodes[name] = NodeInfo(name, int(cpus.rstrip("+")), int(memory.rstrip("+")), parse_gpus(gres))
    if not nodes:
        raise LaunchConfigError(f"SLURM partition {partition!r} has no nodes (sinfo): set hydra.launcher.partition")
    return partition, list(nodes.values())


def check_request(params: Mapping[str, Any], partition: str, nodes: Sequence[NodeInfo]) -> None:
    """Refuse (one line) a request no ``params['nodes']`` nodes of the partition can hold together.
    ``params``: the launcher's (``tasks_per_node``, ``cpus_per_task``, ``mem_gb``, ``gpus_per_node``, ``nodes``)."""
    tasks = int(params.get("tasks_per_node") or 1)
    cpus = tasks * int(params.get("cpus_per_task") or 1)
    mem_mb = int(float(params.get("mem_gb") or 0) * 1024)
    gpus = int(params.get("gpus_per_node") or 0)
    wanted = int(params.get("nodes") or 1)
    where = f"partition {partition!r} ({len(nodes)} node{'s' if len(nodes) != 1 else ''})"
    if len(nodes) < wanted:
        raise LaunchConfigError(
            f"trainer.num_nodes={wanted} but {where}: lower trainer.num_nodes or pick another hydra.launcher.partition"
        )
    if gpus and not any(n.gpus for n in nodes):
        raise LaunchConfigError(
            f"the job asks {gpus} GPU(s) per node but {where} has no GPUs: use trainer=ddp_cpu "
            "or trainer.accelerator=cpu, or pick a GPU hydra.launcher.partition"
        )
    if max(n.gpus for n in nodes) < gpus:
        raise LaunchConfigError(
            f"trainer.devices={gpus} GPUs per node but {where} has at most "
            f"{max(n.gpus for n in nodes)}: lower trainer.devices"
        )
    if max(n.cpus for n in nodes) < cpus:
        best = max(n.cpus for n in nodes)
        raise LaunchConfigError(
            f"hydra.launcher.cpus_per_task={params.get('cpus_per_task')} x {tasks} task(s) per node "
            f"= {cpus} CPUs but {where} has at most {best} per node: set "
            f"hydra.launcher.cpus_per_task={max(1, best // tasks)}"
        )
    if max(n.memory_mb for n in nodes) < mem_mb:
        best = max(n.memory_mb for n in nodes) // 1024
        raise LaunchConfigError(
            f"hydra.launcher.mem_gb={params.get('mem_gb')} but {where} has at most "
            f"{max(n.memory_mb for n in nodes)} MB per node: set hydra.launcher.mem_gb={best}"
        )
    fitting = [n for n in nodes if n.cpus >= cpus and n.memory_mb >= mem_mb and n.gpus >= gpus]
    if len(fitting) < wanted:
        raise LaunchConfigError(
            f"{len(fitting)} node(s) of {where} hold {cpus} CPUs, {mem_mb} MB and {gpus} GPU(s) "
            f"together, the job needs {wanted}: lower hydra.launcher.cpus_per_task / mem_gb "
            "or trainer.devices / num_nodes"
        )


# ----------------------------------------------------------------------------- pending jobs that can never start
# squeue reasons of a pending job that waiting cannot change (the request exceeds what the partition,
# QOS or account allows); a job pending for Resources / Priority / Dependency will start eventually.
UNSCHEDULABLE_REASONS = (
    "PartitionConfig",
    "PartitionNodeLimit",
    "PartitionTimeLimit",
    "BadConstraints",
    "InvalidAccount",
    "InvalidQOS",
    "QOSMaxCpuPerJobLimit",
    "QOSMaxGRESPerJob",
    "QOSMaxMemoryPerJob",
    "QOSMaxNodePerJobLimit",
    "QOSMaxWallDurationPerJobLimit",
    "AssocMaxCpuPerJobLimit",
    "AssocMaxNodePerJobLimit",
    "AssocMaxWallDurationPerJobLimit",
)


def unschedulable_jobs(job_ids: Sequence[str]) -> dict[str, str]:
    """Of ``job_ids`` (SLURM job or array ids), the pending ones that can never start: {job: reason}."""
    if not job_ids:
        return {}
    out = subprocess.run(
        ["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i|%T|%r"], capture_output=True, text=True
    ).stdout
    found = {}
    for line in out.splitlines():
        job, state, reason = (line.split("|") + ["", ""])[:3]
        if state == "PENDING" and reason in UNSCHEDULABLE_REASONS:
            found[job] = reason
    return found


class PendingWatch:
    """Polls the jobs submitit has created under ``folder`` (one sub-folder per job id) every
    ``interval`` seconds; when one pends for a reason in :data:`UNSCHEDULABLE_REASONS` it cancels the
    submission's jobs and records why (:attr:`reason`), so the launcher can stop with one line
    instead of polling forever."""

    def __init__(self, folder: str, interval: float = 10.0) -> None:
        import threading

        self.folder, self.interval = folder, interval
        self.reason: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PendingWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()

    def job_ids(self) -> list[str]:
        from pathlib import Path

        folder = Path(self.folder)
        names = [p.name for p in folder.iterdir() if p.is_dir()] if folder.is_dir() else []
        return sorted({n.split("_")[0] for n in names if n.split("_")[0].isdigit()})

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            ids = self.job_ids()
            stuck = unschedulable_jobs(ids)
            if stuck:
                job, reason = next(iter(stuck.items()))
                self.reason = (
                    f"job {job} can never start (squeue: Reason={reason}): its request exceeds what "
                    "the partition/QOS/account allows; lower hydra.launcher.cpus_per_task, mem_gb, "
                    "timeout_min or trainer.devices / num_nodes, or pick another hydra.launcher.partition"
                )
                subprocess.run(["scancel", *ids], capture_output=True)
                return


# ----------------------------------------------------------------------------- used by the launchers
def refuse(launcher: str, error: LaunchConfigError) -> None:
    """Print the one-line reason and exit with status 2 (no traceback: Hydra passes SystemExit through)."""
    print(f"slimgan-train: hydra/launcher={launcher}: {error}", file=sys.stderr, flush=True)
    raise SystemExit(2)


def trainer_request(config: DictConfig) -> tuple[Any, Any, Any]:
    """``trainer.accelerator``, ``trainer.devices`` (plain) and ``trainer.num_nodes`` of a run config."""
    trainer = config.get("trainer", {})
    return (
        trainer.get("accelerator", "auto"),
        OmegaConf.to_object(trainer.devices)
        if OmegaConf.is_config(trainer.get("devices"))
        else trainer.get("devices", 1),
        trainer.get("num_nodes", 1),
    )
