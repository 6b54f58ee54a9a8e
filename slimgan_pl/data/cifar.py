"""CIFAR-10/100 through torchvision's dataset classes (download configurable, local root)."""

from __future__ import annotations

import torch
from torchvision.datasets import CIFAR10, CIFAR100

from slimgan_pl.data.base import DataNotFoundError, InMemoryImageDataModule


class CIFARDataModule(InMemoryImageDataModule):
    """CIFAR-10 (``num_classes=10``) or CIFAR-100 (100) train split at 32x32 in [-1, 1], no augmentation."""

    def __init__(
        self,
        root: str = "data/cifar",
        num_classes: int = 10,
        download: bool = False,
        batch_size: int = 64,
        n_dis: int = 1,
        image_size: int = 32,
        img_channels: int = 3,
        num_workers: int = 0,
        train: bool = True,
        limit: int | None = None,
    ) -> None:
        if num_classes not in (10, 100):
            raise ValueError(f"data.num_classes must be 10 or 100 for CIFAR, got {num_classes}")
        super().__init__(
            batch_size=batch_size,
            n_dis=n_dis,
            image_size=image_size,
            img_channels=img_channels,
            num_workers=num_workers,
            limit=limit,
        )
        self.root, self.download, self.train, self.num_classes = root, download, train, num_classes

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        cls = CIFAR10 if self.num_classes == 10 else CIFAR100
        try:
            ds = cls(self.root, train=self.train, download=self.download)
        except RuntimeError as e:
            raise DataNotFoundError(
                f"{cls.__name__} not found or corrupt under data.root={self.root!r} ({e}). Set "
                f"data.download=true (needs network) or point data.root at a folder holding "
                f"{cls.base_folder}/ (torchvision's python-pickle layout)."
            ) from e
        images = torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous()
        return images, torch.as_tensor(ds.targets, dtype=torch.long)
