"""CelebA (aligned and cropped faces) through torchvision: center-crop 178, resize to 64, unconditional."""

from __future__ import annotations

import os

import torch
from torchvision.datasets import CelebA

from slimgan_pl.data.base import FileImageDataModule, open_torchvision_dataset

SPLITS = ("train", "valid", "test", "all")
_TEXT_FILES = [name for _, _, name in CelebA.file_list if name.endswith(".txt")]


class CelebADataModule(FileImageDataModule):
    """CelebA ``split`` (train: 162,770 images) decoded from ``img_align_celeba/*.jpg`` on access,
    center-cropped to ``crop`` (178, the reference recipe) and resized to ``image_size``; no labels.

    torchvision needs ``celeba/img_align_celeba/`` and the five annotation text files (md5-checked;
    ``target_type=[]``: none of them is returned). ``on_corrupt``: every used JPEG is decoded once before
    training (cached); unreadable ones fail the run then (``error``) or are left out (``skip``).
    """

    num_classes = 0

    def __init__(
        self,
        root: str = "data/celeba",
        split: str = "train",
        download: bool = False,
        num_classes: int = 0,
        crop: int | None = 178,
        batch_size: int = 64,
        n_dis: int = 1,
        image_size: int = 64,
        img_channels: int = 3,
        num_workers: int = 0,
        limit: int | None = None,
        on_corrupt: str = "error",
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"data.split must be one of {list(SPLITS)} for CelebA, got {split!r}")
        if num_classes != 0:
            raise ValueError(f"data.num_classes must be 0 for CelebA (unconditional), got {num_classes}")
        super().__init__(
            batch_size=batch_size,
            n_dis=n_dis,
            image_size=image_size,
            img_channels=img_channels,
            num_workers=num_workers,
            limit=limit,
            crop=crop,
            on_corrupt=on_corrupt,
        )
        self.root, self.split, self.download = root, split, download

    def open_source(self) -> tuple[CelebA, torch.Tensor, list[str]]:
        folder = CelebA.base_folder
        required = [f"{folder}/img_align_celeba"] + [f"{folder}/{name}" for name in _TEXT_FILES]
        ds = open_torchvision_dataset(
            CelebA,
            self.root,
            self.download,
            required,
            f"{folder}/img_align_celeba/*.jpg and {folder}/{{{', '.join(_TEXT_FILES)}}}",
            split=self.split,
            target_type=[],
        )
        images = os.path.join(self.root, folder, "img_align_celeba")
        names = [os.path.join(images, name) for name in ds.filename]
        return ds, torch.full((len(names),), -1, dtype=torch.long), names
