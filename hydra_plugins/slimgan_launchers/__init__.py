"""slimgan-pl's Hydra launchers: hydra-submitit-launcher's SLURM and local launchers with the job request
derived from the trainer config and, for SLURM, checked against the partition before submission
(the logic: :mod:`slimgan_pl.launch`). Hydra loads launchers only from the ``hydra_plugins`` namespace."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher as SubmititLocalLauncher
from hydra_plugins.hydra_submitit_launcher.submitit_launcher import SlurmLauncher as SubmititSlurmLauncher

from slimgan_pl.launch import (
    LaunchConfigError,
    PendingWatch,
    check_request,
    launch_resources,
    local_cuda_count,
    partition_nodes,
    refuse,
    trainer_request,
)


class SlurmLauncher(SubmititSlurmLauncher):
    """hydra-submitit-launcher's SLURM launcher that derives nodes, tasks and GPUs per node from the
    trainer config (:func:`launch_resources`) and checks them against the partition (:func:`check_request`)
    before submitting: a request no node can hold stops with one line instead of pending forever."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        assert self.config is not None
        try:
            if shutil.which("sinfo") is None:
                raise LaunchConfigError("sinfo not found: hydra/launcher=slurm must run on a SLURM login node")
            partition, nodes = partition_nodes(self.params.get("partition"))
            accelerator, devices, num_nodes = trainer_request(self.config)
            resources = launch_resources(
                "slurm", accelerator, devices, num_nodes, partition_has_gpus=any(n.gpus for n in nodes)
            )
            self.params.update(
                nodes=resources.nodes, tasks_per_node=resources.tasks_per_node, gpus_per_node=resources.gpus_per_node
            )
            check_request(self.params, partition, nodes)
        except LaunchConfigError as e:
            refuse("slurm", e)
        except subprocess.CalledProcessError as e:
            refuse("slurm", LaunchConfigError(f"sinfo failed: {(e.stderr or '').strip() or e}"))
        # A request within the nodes can still exceed a QOS/account/partition limit: watch the pending reason.
        folder = str(self.params["submitit_folder"]).replace("%j", "")
        with PendingWatch(folder) as watch:
            try:
                return super().launch(job_overrides, initial_job_idx)
            except Exception:
                if watch.reason:
                    refuse("slurm", LaunchConfigError(watch.reason))
                raise


class LocalLauncher(SubmititLocalLauncher):
    """hydra-submitit-launcher's local launcher with the request derived by :func:`launch_resources`
    (one task: Lightning starts the DDP ranks itself)."""

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Any:
        assert self.config is not None
        try:
            accelerator, devices, num_nodes = trainer_request(self.config)
            resources = launch_resources("local", accelerator, devices, num_nodes, cuda_count=local_cuda_count())
        except LaunchConfigError as e:
            refuse("local", e)
        self.params.update(
            nodes=resources.nodes, tasks_per_node=resources.tasks_per_node, gpus_per_node=resources.gpus_per_node
        )
        return super().launch(job_overrides, initial_job_idx)
