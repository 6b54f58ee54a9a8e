"""Hydra/OmegaConf helpers: resolvers and the location of the packaged configs."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf


def optimizer_steps(iterations: int, n_dis: int) -> int:
    """Lightning optimizer steps of ``iterations`` SlimGAN iterations (n_dis D steps + 1 G step each)."""
    iterations, n_dis = int(iterations), int(n_dis)
    if iterations < 1:
        raise ValueError(f"train.g_steps and train.checkpoint_every must be >= 1, got {iterations}")
    if n_dis < 1:
        raise ValueError(f"optim.n_dis must be >= 1, got {n_dis}")
    return iterations * (n_dis + 1)


def register_resolvers() -> None:
    if not OmegaConf.has_resolver("optimizer_steps"):
        OmegaConf.register_new_resolver("optimizer_steps", optimizer_steps)


def config_dir() -> str:
    """conf/ of a source checkout (editable install), else the copy shipped in the wheel."""
    source = Path(__file__).resolve().parents[1] / "conf"
    if (source / "config.yaml").is_file():
        return str(source)
    return str(Path(__file__).resolve().parent / "conf")
