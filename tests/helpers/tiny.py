"""Training a tiny SlimGAN for a few iterations on random images, and the nesting check's perturbation:
the set-up that many test modules share."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from slimgan_pl.nn import (
    SliceableConditionalBatchNorm2d,
    SlimmableConv2d,
    SlimmableConvTranspose2d,
    SlimmableLinear,
    SwitchableBatchNorm2d,
    SwitchableConditionalBatchNorm2d,
    slim_channels,
)
from slimgan_pl.nn.universal import UniversalBatchNorm2d


def quiet_trainer(iterations: int, n_dis: int = 1, **trainer_kw) -> pl.Trainer:
    """A CPU Trainer for ``iterations`` SlimGAN iterations (n_dis D steps + one G step each) without logger,
    checkpoints, progress bar or model summary, unless ``trainer_kw`` says otherwise."""
    kw = dict(
        max_steps=iterations * (n_dis + 1),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return pl.Trainer(**{**kw, **trainer_kw})


def fit_on_noise(
    model: pl.LightningModule,
    iterations: int,
    batch: int = 8,
    labels: torch.Tensor | None = None,
    num_classes: int = 0,
    images_seed: int | None = None,
    callbacks: Sequence[pl.Callback] = (),
    **trainer_kw,
) -> pl.Trainer:
    """Train ``model`` (a SlimGAN) for ``iterations`` on uniform noise images in [-1, 1] (1x32x32, drawn
    from the global RNG unless ``images_seed``), in order; labels ``labels``, else ``arange % num_classes``,
    else zeros."""
    n_dis = model.hparams.n_dis
    n = batch * n_dis * iterations
    generator = None if images_seed is None else torch.Generator().manual_seed(images_seed)
    images = torch.rand(n, 1, 32, 32, generator=generator) * 2 - 1
    if labels is None:
        labels = torch.arange(n) % num_classes if num_classes else torch.zeros(n, dtype=torch.long)
    trainer = quiet_trainer(iterations, n_dis, callbacks=list(callbacks), **trainer_kw)
    trainer.fit(model, DataLoader(TensorDataset(images, labels), batch_size=batch * n_dis, drop_last=True))
    return trainer


def fit_and_save(model: pl.LightningModule, path: Path, iterations: int = 2, **kw) -> Path:
    """:func:`fit_on_noise`, then save the checkpoint at ``path`` (parents created)."""
    trainer = fit_on_noise(model, iterations, **kw)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


def perturb_beyond(module: torch.nn.Module, width: float) -> None:
    """Change every parameter entry and BN statistic that width ``width`` must not read: slimmable
    weights outside the active block and biases beyond the active outputs, the other widths' private
    (conditional) BNs, sliced BN affine entries and scBN embedding columns beyond the width's channels.
    A nesting test then checks that the output at ``width`` did not change."""
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, (SlimmableLinear, SlimmableConv2d, SlimmableConvTranspose2d)):
                in_w, out_w = m.active(width)
                mask = torch.ones_like(m.weight, dtype=torch.bool)
                if isinstance(m, SlimmableConvTranspose2d):  # weight is (in, out, k, k)
                    mask[:in_w, :out_w] = False
                else:
                    mask[:out_w, :in_w] = False
                m.weight[mask] += torch.randn_like(m.weight)[mask]
                if m.bias is not None:
                    m.bias[out_w:] += 1.0
            if isinstance(m, SwitchableBatchNorm2d):
                for w, bn in zip(m.widths, m.bns):
                    if w != width:
                        bn.weight.add_(1.0)
                        bn.running_mean.add_(3.0)
            if isinstance(m, UniversalBatchNorm2d):
                c = slim_channels(m.num_features, width)
                m.weight[c:] += 1.0
                m.bias[c:] -= 1.0
            if isinstance(m, SliceableConditionalBatchNorm2d):  # embedding columns: [gains | biases]
                c, c_max = slim_channels(m.num_features, width), m.num_features
                m.embed.weight[:, c:c_max] += 1.0
                m.embed.weight[:, c_max + c :] += 1.0
            if isinstance(m, SwitchableConditionalBatchNorm2d):
                for w, cbn in zip(m.widths, m.cbns):
                    if w != width:
                        cbn.embed.weight.add_(1.0)
