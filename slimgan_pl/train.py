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
from omegaconf.errors import MissingMandatoryValue

from slimgan_pl._warnings import silence_third_party_noise
from slimgan_pl.config import config_dir, register_resolvers
from slimgan_pl.data.fashion_mnist import DataNotFoundError, FashionMNISTDataModule
from slimgan_pl.module import SlimGAN, width_tag
from slimgan_pl.resume import PreemptionCheckpoint, in_slurm_job, resume_checkpoint

log = logging.getLogger(__name__)
register_resolvers()


class ConfigError(ValueError):
    """A config value is invalid; raised before training starts."""


def _check_data_fits_model(datamodule: pl.LightningDataModule, model: SlimGAN) -> None:
    """The real images must have the generator's size and channels (a ResNet D would otherwise
    score 48px reals against 32px fakes without complaint)."""
    g = model.generator
    arch = model.hparams.generator["arch"]
    size, channels = getattr(datamodule, "image_size", None), getattr(datamodule, "img_channels", None)
    if size is not None and size != g.img_size:
        raise ValueError(f"data.image_size={size} but model.generator.arch={arch} generates {g.img_size}x{g.img_size} "
                         f"images: pick a model of that size or set data.image_size={g.img_size}")
    if channels is not None and channels != g.img_channels:
        raise ValueError(f"data.img_channels={channels} but model.generator.img_channels={g.img_channels}")


def build(cfg: DictConfig) -> tuple[SlimGAN, pl.LightningDataModule, pl.Trainer]:
    """Compose model, data and trainer from the config, validating everything before training."""
    try:
        OmegaConf.resolve(cfg)
        ema = {f"ema_{key}": value for key, value in cfg.get("ema", {}).items()}  # ema.decay -> ema_decay
        model = SlimGAN(generator=cfg.model.generator, discriminator=cfg.model.discriminator,
                        sync_bn=cfg.model.sync_bn, **cfg.slim, **cfg.optim, **ema)
        datamodule = instantiate(cfg.data)
        _check_data_fits_model(datamodule, model)
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
    except MissingMandatoryValue as e:  # a ??? in the config (e.g. data=image_folder's root)
        raise ConfigError(f"{e.full_key} is required: set {e.full_key}=...") from e
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
    if trainer.is_global_zero:  # DDP: every rank runs this function (popen launcher: the whole script)
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
            # No losses when this fit ran no step (e.g. resumed from the final checkpoint).
            d, g = (f"{v:.3f}" if v is not None else "-" for v in summary["final_losses"][width_tag(w)].values())
            print(f"  width {w:<5}  d_loss {d}  g_loss {g}  samples {out / 'samples' / width_tag(w)}")
    return summary


@hydra.main(version_base="1.3", config_path=config_dir(), config_name="config")
def _hydra_main(cfg: DictConfig) -> None:
    silence_third_party_noise()  # here, not in main(): submitit jobs and DDP ranks run this function
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
