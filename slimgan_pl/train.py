"""Training entry point: ``slimgan-train [overrides]`` (same as ``python -m slimgan_pl.train``)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from slimgan_pl.config import config_dir, register_resolvers
from slimgan_pl.data.fashion_mnist import DataNotFoundError, FashionMNISTDataModule
from slimgan_pl.module import SlimGAN, width_tag
from slimgan_pl.resume import PreemptionCheckpoint, in_slurm_job, resume_checkpoint

log = logging.getLogger(__name__)
register_resolvers()


class ConfigError(ValueError):
    """A config value is invalid; raised before training starts."""


def build(cfg: DictConfig) -> tuple[SlimGAN, pl.LightningDataModule, pl.Trainer]:
    """Compose model, data and trainer from the config, validating everything before training."""
    try:
        OmegaConf.resolve(cfg)
        model = SlimGAN(generator=cfg.model.generator, discriminator=cfg.model.discriminator,
                        **cfg.slim, **cfg.optim)
        datamodule = instantiate(cfg.data)
        if hasattr(datamodule, "check"):
            datamodule.check()
        callbacks = [instantiate(c) for c in cfg.get("callbacks", {}).values() if c is not None]
        loggers = [instantiate(lg) for lg in cfg.get("logger", {}).values() if lg is not None]
        trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
        for callback in callbacks:  # callbacks that depend on the model, data or trainer check them now
            if hasattr(callback, "check_config"):
                callback.check_config(model, datamodule, trainer)
    except (ValueError, TypeError, DataNotFoundError) as e:
        raise ConfigError(str(e)) from e
    except InstantiationException as e:  # Hydra wraps a constructor's error; report the error itself
        raise ConfigError(str(e.__cause__ or e)) from e
    try:
        resume_checkpoint(cfg.get("resume", "never"), cfg.ckpt_path, cfg.paths.output_dir)
    except ValueError as e:
        raise ConfigError(str(e)) from e
    return model, datamodule, trainer


def train(cfg: DictConfig) -> dict[str, Any]:
    """Train, then write ``summary.json`` (per-width final losses, checkpoint and sample paths)."""
    pl.seed_everything(cfg.seed, workers=True)
    model, datamodule, trainer = build(cfg)
    out = Path(cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg))
    for logger in trainer.loggers:  # the whole resolved config (wandb config, CSV hparams.yaml)
        logger.log_hyperparams(OmegaConf.to_container(cfg))
    ckpt_path = resume_checkpoint(cfg.get("resume", "never"), cfg.ckpt_path, out)
    if ckpt_path is not None:
        print(f"Resuming from {ckpt_path}", flush=True)
    preemption = next((c for c in trainer.callbacks if isinstance(c, PreemptionCheckpoint)), None)
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    except SystemExit:  # Lightning's SIGTERMException after our checkpoint (SLURM kills a requeued job)
        if preemption is None or not preemption.preempted:
            raise
    if preemption is not None and preemption.preempted:
        if preemption.requeued or in_slurm_job():
            # No result for submitit/Hydra: the requeued job (ours, or SLURM's after its SIGTERM) resumes
            # and finishes this run; a cancelled job just ends.
            raise SystemExit(0)
        print(f"\nStopped by a signal after {model.iteration} iterations; resume with resume=auto "
              f"(same run directory) or ckpt_path={out / 'checkpoints' / 'last.ckpt'}")
        return {"output_dir": str(out), "iterations": model.iteration, "preempted": True,
                "last_checkpoint": str(out / "checkpoints" / "last.ckpt")}

    metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if v.numel() == 1}
    summary = {
        "output_dir": str(out),
        "iterations": model.iteration,
        "resumed_from": ckpt_path,
        "resumed_at_iteration": preemption.start_iteration if preemption is not None and ckpt_path else None,
        "widths": model.widths,
        "last_checkpoint": str(out / "checkpoints" / "last.ckpt"),
        "final_losses": {
            width_tag(w): {"d": metrics.get(f"train/d_loss_{width_tag(w)}"),
                           "g": metrics.get(f"train/g_loss_{width_tag(w)}")}
            for w in model.widths
        },
        "distill_loss": metrics.get("train/distill_loss"),
    }
    if trainer.is_global_zero:
        if cfg.evaluate.after_training and isinstance(datamodule, FashionMNISTDataModule):
            from slimgan_pl.evaluate import evaluate_checkpoint  # metrics stack only when needed

            ev = cfg.evaluate
            result = evaluate_checkpoint(summary["last_checkpoint"], n_fake=ev.n_fake, n_real=ev.n_real,
                                         split=ev.split, data_root=datamodule.root,
                                         latency_repeats=ev.latency_repeats, classifier_path=ev.classifier,
                                         out_dir=out)
            summary["metrics"] = str(out / "metrics.json")
            summary["fmnist_fid"] = {width_tag(r["width"]): r["fmnist_fid"] for r in result["widths"]}
            for logger in trainer.loggers:  # e.g. wandb's summary gets the final per-width FMNIST-FID
                logger.log_metrics({f"eval/fmnist_fid_{tag}": fid for tag, fid in summary["fmnist_fid"].items()},
                                   step=trainer.global_step)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        print(f"\nTrained {model.iteration} iterations; outputs in {out}")
        for w in model.widths:
            loss = summary["final_losses"][width_tag(w)]
            print(f"  width {w:<5}  d_loss {loss['d']:.3f}  g_loss {loss['g']:.3f}  "
                  f"samples {out / 'samples' / width_tag(w)}")
    return summary


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    try:
        train(cfg)
    except ConfigError as e:
        print(f"slimgan-train: config error: {e}", file=sys.stderr)
        sys.exit(2)
    finally:
        finish_wandb()  # the next job of a multirun in this process must get its own wandb run


def finish_wandb() -> None:
    """End the active wandb run, if any (Lightning's WandbLogger leaves it open)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def main() -> None:
    _hydra_main()


if __name__ == "__main__":
    main()
