"""Shared data-module machinery: images held in memory in model range, batches of n_dis D steps."""

from __future__ import annotations

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from slimgan_pl.data.resumable import resumable_loader


def to_model_range(images_uint8: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 [N, C, H, W] (or [N, H, W]) -> float [N, C, S, S] in [-1, 1].

    Images a few pixels smaller than S (Fashion-MNIST's 28 -> 32) are padded with black, not
    stretched; other sizes are resized with antialiasing.
    """
    x = images_uint8.float().div(127.5).sub(1.0)
    if x.ndim == 3:
        x = x.unsqueeze(1)
    h, w = x.shape[-2:]
    if (h, w) == (image_size, image_size):
        return x
    if h == w and image_size > h and (image_size - h) % 2 == 0 and image_size - h <= 8:
        pad = (image_size - h) // 2
        return F.pad(x, (pad, pad, pad, pad), value=-1.0)
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(-1, 1)


class TensorImageDataset(Dataset):
    """Images already in model range, kept in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class InMemoryImageDataModule(pl.LightningDataModule):
    """Base class: subclasses implement ``load()`` -> (uint8 [N, C, H, W], int64 labels [N]).

    ``batch_size`` is the batch of one D step; the loader yields ``batch_size * n_dis`` images per
    training step, because one training step of :class:`~slimgan_pl.SlimGAN` runs all ``n_dis`` D
    steps (each on its own real batch) and then one G step.

    ``shuffle_seed`` seeds the per-epoch shuffle (:mod:`slimgan_pl.data.resumable`: same order after a
    mid-epoch resume); None takes ``torch.initial_seed()`` at construction, i.e. the run's ``seed``.
    """

    num_classes: int | None = None

    def __init__(self, batch_size: int = 64, n_dis: int = 1, image_size: int = 32, img_channels: int = 3,
                 num_workers: int = 0, limit: int | None = None, shuffle_seed: int | None = None) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if image_size < 8:
            raise ValueError(f"data.image_size must be >= 8, got {image_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size, self.n_dis, self.image_size = batch_size, n_dis, image_size
        self.img_channels, self.num_workers, self.limit = img_channels, num_workers, limit
        self.dataset: TensorImageDataset | None = None
        self.shuffle_seed = torch.initial_seed() if shuffle_seed is None else int(shuffle_seed)

    def check(self) -> None:
        """Fail early (before training starts) when the data is missing. Default: load it."""
        self.setup()

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        images, labels = self.load()
        if self.limit:
            images, labels = images[: self.limit], labels[: self.limit]
        if images.shape[1] != self.img_channels:
            raise ValueError(f"data.img_channels={self.img_channels} but the images have {images.shape[1]} channels")
        self.dataset = TensorImageDataset(to_model_range(images, self.image_size), labels)

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "call setup() first"
        per_step = self.batch_size * self.n_dis
        if len(self.dataset) < per_step:
            raise ValueError(f"dataset has {len(self.dataset)} images, fewer than one training step "
                             f"needs (data.batch_size * optim.n_dis = {per_step})")
        trainer = self.trainer  # under DDP every rank shuffles the same permutation and takes its shard
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return resumable_loader(self.dataset, per_step, seed=self.shuffle_seed, num_replicas=world, rank=rank,
                                num_workers=self.num_workers)
