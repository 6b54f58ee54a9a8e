"""Shared data-module machinery: one loader contract (batches of n_dis D steps, images in [-1, 1]) over
two kinds of datasets: small sets held in memory in model range (Fashion-MNIST, CIFAR) and
file-backed sets decoded on access (STL-10, CelebA, image folders)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms import v2

from slimgan_pl.data.preflight import ON_CORRUPT, corrupt_files_message, find_unreadable_images
from slimgan_pl.data.resumable import resumable_loader


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are missing; the message says how to get them."""


class CorruptImageError(ValueError):
    """An image file (or an image inside a container file) cannot be decoded; the message names it."""


def open_torchvision_dataset(
    cls: type, root: str, download: bool, required: Sequence[str], layout: str, **kwargs
) -> Dataset:
    """``cls(root, download=download, **kwargs)`` (a torchvision dataset class), with one clear
    :class:`DataNotFoundError` when files are missing or fail torchvision's checks. ``required``:
    paths relative to ``root`` that must exist when not downloading; ``layout``: what the user
    should put under ``root``."""
    missing = [name for name in required if not (Path(root) / name).exists()]
    if missing and not download:
        raise DataNotFoundError(
            f"{cls.__name__} not found under data.root={root!r}: missing {', '.join(missing)}. Set "
            f"data.download=true (needs network) or point data.root at a folder holding {layout}."
        )
    try:
        return cls(root, download=download, **kwargs)
    except RuntimeError as e:  # torchvision: md5 mismatch ("not found or corrupted"), failed download
        raise DataNotFoundError(
            f"{cls.__name__} under data.root={root!r} is incomplete or corrupt ({e}). Set data.download=true "
            f"(needs network) or replace the files ({layout})."
        ) from e


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
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True).clamp(
        -1, 1
    )


class TensorImageDataset(Dataset):
    """Images already in model range, kept in memory."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class DecodedImageDataset(Dataset):
    """Images decoded on access from ``source`` (a torchvision dataset yielding (PIL image, target);
    its target is ignored), converted to RGB or L, cropped/resized to ``image_size`` and scaled to
    [-1, 1], with ``labels[i]`` (-1: no label). An image that cannot be decoded raises
    :class:`CorruptImageError` naming it: ``names[i]`` (a file per image) or image i of ``names``
    (one container file). ``on_corrupt="skip"``: an image that fails anyway (changed after the
    pre-flight check) is replaced by the next readable one, with a warning, instead of ending the run."""

    def __init__(
        self,
        source: Dataset,
        labels: torch.Tensor,
        names: Sequence[str] | str,
        image_size: int,
        img_channels: int,
        crop: int | None = None,
        on_corrupt: str = "error",
    ) -> None:
        self.source, self.labels, self.names, self.on_corrupt = source, labels, names, on_corrupt
        self.mode = {1: "L", 3: "RGB"}[img_channels]
        # crop (CelebA: the central 178x178 face region), then shorter side -> image_size, central square
        self.transform = v2.Compose(
            ([v2.CenterCrop(crop)] if crop else [])
            + [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def name(self, i: int) -> str:
        return f"image {i} of {self.names}" if isinstance(self.names, str) else str(self.names[i])

    def _decode(self, i: int) -> torch.Tensor:
        try:  # decoding happens lazily, in the source's loader or in convert(): both inside the try
            image = self.source[i][0].convert(self.mode)
            return self.transform(image)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise CorruptImageError(
                f"cannot read {self.name(i)}: {type(e).__name__}: {e} (replace or delete the file)"
            ) from e

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        for attempt in range(min(len(self), 16)):
            j = (i + attempt) % len(self)
            try:
                return self._decode(j).float().div(127.5).sub(1.0), self.labels[j]
            except CorruptImageError as e:
                if self.on_corrupt != "skip":
                    raise
                warnings.warn(f"data.on_corrupt=skip: {e}; using the next image", stacklevel=2)
        raise CorruptImageError(f"cannot read {self.name(i)} nor the 15 images after it (data.on_corrupt=skip)")


def trains_on_cuda(trainer: pl.Trainer | None) -> bool:
    """Does ``trainer`` train on CUDA devices (then batches are pinned for asynchronous copies)?"""
    root = getattr(getattr(trainer, "strategy", None), "root_device", None) if trainer is not None else None
    return root is not None and root.type == "cuda"


class ImageDataModule(pl.LightningDataModule):
    """Base class of the data modules: subclasses implement ``build_dataset()``, a dataset of
    (float image [C, image_size, image_size] in [-1, 1], int64 label; -1 = unlabeled).

    ``batch_size`` is the batch of one D step; the loader yields ``batch_size * n_dis`` images per
    training step, because one training step of :class:`~slimgan_pl.SlimGAN` runs all ``n_dis`` D
    steps (each on its own real batch) and then one G step.

    ``shuffle_seed`` seeds the per-epoch shuffle (:mod:`slimgan_pl.data.resumable`: same order after a
    mid-epoch resume); None takes ``torch.initial_seed()`` at construction, i.e. the run's ``seed``.
    """

    num_classes: int | None = None

    def __init__(
        self,
        batch_size: int = 64,
        n_dis: int = 1,
        image_size: int = 32,
        img_channels: int = 3,
        num_workers: int = 0,
        limit: int | None = None,
        shuffle_seed: int | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if image_size < 8:
            raise ValueError(f"data.image_size must be >= 8, got {image_size}")
        if num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {num_workers}")
        self.batch_size, self.n_dis, self.image_size = batch_size, n_dis, image_size
        self.img_channels, self.num_workers, self.limit = img_channels, num_workers, limit
        self.dataset: Dataset | None = None
        self.shuffle_seed = torch.initial_seed() if shuffle_seed is None else int(shuffle_seed)

    def check(self) -> None:
        """Fail early (before training starts) when the data is missing. Default: set it up."""
        self.setup()

    def build_dataset(self) -> Dataset:
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is None:
            self.dataset = self.build_dataset()

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "call setup() first"
        per_step = self.batch_size * self.n_dis
        if len(self.dataset) < per_step:
            raise ValueError(
                f"dataset has {len(self.dataset)} images, fewer than one training step "
                f"needs (data.batch_size * optim.n_dis = {per_step})"
            )
        trainer = self.trainer  # under DDP every rank shuffles the same permutation and takes its shard
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return resumable_loader(
            self.dataset,
            per_step,
            seed=self.shuffle_seed,
            num_replicas=world,
            rank=rank,
            num_workers=self.num_workers,
            pin_memory=trains_on_cuda(trainer),
        )


class InMemoryImageDataModule(ImageDataModule):
    """Small datasets held in memory in model range: subclasses implement ``load()`` -> (uint8
    [N, C, H, W], int64 labels [N])."""

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def build_dataset(self) -> Dataset:
        images, labels = self.load()
        if self.limit:
            images, labels = images[: self.limit], labels[: self.limit]
        if images.shape[1] != self.img_channels:
            raise ValueError(f"data.img_channels={self.img_channels} but the images have {images.shape[1]} channels")
        return TensorImageDataset(to_model_range(images, self.image_size), labels)


class FileImageDataModule(ImageDataModule):
    """File-backed datasets decoded on access (CelebA's 200k JPEGs need not fit in memory):
    subclasses implement ``open_source()`` -> (torchvision dataset yielding PIL images, labels,
    names for error messages; see :class:`DecodedImageDataset`). ``crop``: central crop before
    resizing. ``check()`` also decodes the first image, so a wrong format fails before training."""

    def __init__(
        self,
        batch_size: int = 64,
        n_dis: int = 1,
        image_size: int = 32,
        img_channels: int = 3,
        num_workers: int = 0,
        limit: int | None = None,
        crop: int | None = None,
        on_corrupt: str = "error",
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            n_dis=n_dis,
            image_size=image_size,
            img_channels=img_channels,
            num_workers=num_workers,
            limit=limit,
        )
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(f"data.on_corrupt must be one of {list(ON_CORRUPT)}, got {on_corrupt!r}")
        self.on_corrupt = on_corrupt
        # (file, why) of the images left out by on_corrupt=skip; slimgan-train lists them in the run folder
        self.corrupt_files: list[tuple[str, str]] = []
        if img_channels not in (1, 3):
            raise ValueError(
                f"data.img_channels must be 1 (images converted to grayscale) or 3 (RGB), got {img_channels}"
            )
        if crop is not None and crop < image_size:
            raise ValueError(f"data.crop must be null or >= data.image_size={image_size}, got {crop}")
        self.crop = crop

    def open_source(self) -> tuple[Dataset, torch.Tensor, Sequence[str] | str]:
        raise NotImplementedError

    def build_dataset(self) -> Dataset:
        source, labels, names = self.open_source()
        dataset = DecodedImageDataset(
            source, labels, names, self.image_size, self.img_channels, self.crop, self.on_corrupt
        )
        used = list(range(min(self.limit, len(dataset)) if self.limit else len(dataset)))
        if not isinstance(names, str):  # one file per image: decode every used file before training
            bad = find_unreadable_images([names[i] for i in used], workers=max(self.num_workers, 4))
            if bad and self.on_corrupt == "error":
                raise CorruptImageError(corrupt_files_message(bad, len(used)))
            if bad:
                self.corrupt_files = bad
                left_out = {name for name, _ in bad}
                used = [i for i in used if names[i] not in left_out]
                warnings.warn(
                    f"data.on_corrupt=skip: {len(bad)} of {len(bad) + len(used)} images cannot be decoded "
                    f"and are left out (first: {bad[0][0]})",
                    stacklevel=2,
                )
        if len(used) < len(dataset):
            return Subset(dataset, used)
        return dataset

    def check(self) -> None:
        self.setup()
        if len(self.dataset):
            self.dataset[0]
