"""Hydra/OmegaConf helpers: resolvers and the location of the packaged configs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # OmegaConf loads when resolvers are registered: config_dir() serves --help without it
    from omegaconf import ListConfig


def optimizer_steps(iterations: int, n_dis: int) -> int:
    """Lightning optimizer steps of ``iterations`` SlimGAN iterations (n_dis D steps + 1 G step each)."""
    iterations, n_dis = int(iterations), int(n_dis)
    if iterations < 1:
        raise ValueError(f"train.g_steps and train.checkpoint_every must be >= 1, got {iterations}")
    if n_dis < 1:
        raise ValueError(f"optim.n_dis must be >= 1, got {n_dis}")
    return iterations * (n_dis + 1)


LR_RULES = ("none", "linear", "sqrt")


def scale_lr(base_lr: float, batch_size: int, base_batch_size: int, rule: str) -> float:
    """Learning rate for ``batch_size`` from ``base_lr`` at ``base_batch_size``: ``linear`` multiplies
    by batch_size / base_batch_size, ``sqrt`` by its square root, ``none`` keeps base_lr."""
    if rule not in LR_RULES:
        raise ValueError(f"lr_scaling.rule must be one of {LR_RULES}, got {rule!r}")
    if int(batch_size) < 1 or int(base_batch_size) < 1:
        raise ValueError(
            f"data.batch_size and lr_scaling.base_batch_size must be >= 1, got {batch_size}, {base_batch_size}"
        )
    ratio = int(batch_size) / int(base_batch_size)
    return float(base_lr) * {"none": 1.0, "linear": ratio, "sqrt": ratio**0.5}[rule]


def launch_resource(kind: str, key: str, accelerator: Any, devices: Any, num_nodes: Any = 1) -> Any:
    """``nodes`` / ``tasks_per_node`` / ``gpus_per_node`` of a launched job (hydra/launcher=slurm|local),
    derived from the trainer config by :func:`slimgan_pl.launch.launch_resources`."""
    from slimgan_pl.launch import launch_resource as derive  # the launcher plugin only when used

    return derive(kind, key, accelerator, devices, num_nodes)


def run_tags(max_len: int = 64) -> ListConfig:
    """This run's command-line overrides (``key=value``), cut to wandb's 64-character tag limit;
    empty outside a Hydra run (e.g. the compose API in tests). A ListConfig, not a list: OmegaConf.resolve
    can put a container, but not a plain list, in place of the interpolation."""
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import ListConfig

    tags = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    return ListConfig([t if len(t) <= max_len else t[: max_len - 3] + "..." for t in tags])


def run_name() -> str | None:
    """This run's wandb name: Hydra's ``job.override_dirname`` (``slim.alpha=10,slim.stepwise=false``: the
    overrides minus the set-up keys in ``hydra.job.config.override_dirname.exclude_keys``); None (wandb picks
    one) when that is empty or outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    return (HydraConfig.get().job.override_dirname or None) if HydraConfig.initialized() else None


def run_group(output_dir: str) -> str | None:
    """This run's wandb group: for a job of a Hydra sweep (its folder's parent holds Hydra's ``multirun.yaml``,
    also when the job is continued with ``--resume``), the sweep folder's last two parts,
    ``multirun/distillation/2026-12-07_22-43-19/3`` -> ``distillation/2026-12-07_22-43-19``; else None."""
    sweep_dir = Path(output_dir).resolve().parent
    if not (sweep_dir / "multirun.yaml").is_file():
        return None
    return f"{sweep_dir.parent.name}/{sweep_dir.name}"


NAME_KEYS = ("task_name", "sweep_name", "logger.csv.name", "logger.csv.version", "hydra.job.name")


def check_name(key: str, value: Any) -> None:
    """ValueError (one line) for a name-like setting that would leave its parent folder: a path
    separator, ``..``, or nothing. Folders themselves are chosen with ``hydra.run.dir`` / ``paths.*``."""
    text = str(value)
    if text == "" and key.startswith("logger."):
        return  # logger.csv.version: "" = no version folder
    if text in ("", ".", "..") or "/" in text or "\\" in text or ".." in text or "\0" in text:
        raise ValueError(
            f"{key}={text!r}: it names a folder inside the output root, so it must be non-empty without '/', "
            "'\\' or '..' (to write elsewhere set hydra.run.dir=... or paths.output_dir=...)"
        )


def safe_name(key: str, value: Any) -> Any:
    """``${safe_name:task_name,${task_name}}``: the value, once :func:`check_name` accepts it (resolved
    when Hydra builds the run folder's path, before it creates anything)."""
    check_name(key, value)
    return value


def register_resolvers() -> None:
    from omegaconf import OmegaConf

    for name, fn in (
        ("safe_name", safe_name),
        ("optimizer_steps", optimizer_steps),
        ("scale_lr", scale_lr),
        ("launch_resource", launch_resource),
        ("run_tags", run_tags),
        ("run_name", run_name),
        ("run_group", run_group),
    ):
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def config_dir() -> str:
    """conf/ of a source checkout (editable install), else the copy shipped in the wheel."""
    source = Path(__file__).resolve().parents[1] / "conf"
    if (source / "config.yaml").is_file():
        return str(source)
    return str(Path(__file__).resolve().parent / "conf")
