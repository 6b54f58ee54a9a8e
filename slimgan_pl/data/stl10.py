"""STL-10 through torchvision (binary layout ``stl10_binary/*.bin``), resized to 48x48 by default."""

from __future__ import annotations

import torch
from torchvision.datasets import STL10

from slimgan_pl.data.base import FileImageDataModule, open_torchvision_dataset

SPLITS = ("unlabeled", "train", "test", "train+unlabeled")
_CONTAINER = {
    "unlabeled": "unlabeled_X.bin",
    "train": "train_X.bin",
    "test": "test_X.bin",
    "train+unlabeled": "train_X.bin + unlabeled_X.bin",
}


class STL10DataModule(FileImageDataModule):
    """STL-10 (default: the 100k-image ``unlabeled`` split, unconditional) at ``image_size`` in [-1, 1].

    torchvision checks the md5 of every ``stl10_binary`` file (train, test, unlabeled) when the
    dataset is opened, and reads the split into memory as uint8 (unlabeled: 2.8 GB); images are
    resized per access. Labelled splits (``train``, ``test``) have 10 classes.
    """

    def __init__(
        self,
        root: str = "data/stl10",
        split: str = "unlabeled",
        download: bool = False,
        num_classes: int = 0,
        batch_size: int = 64,
        n_dis: int = 1,
        image_size: int = 48,
        img_channels: int = 3,
        num_workers: int = 0,
        limit: int | None = None,
    ) -> None:
        if split not in SPLITS:
            raise ValueError(f"data.split must be one of {list(SPLITS)} for STL-10, got {split!r}")
        allowed = (0,) if "unlabeled" in split else (0, 10)
        if num_classes not in allowed:
            raise ValueError(
                f"data.num_classes must be one of {list(allowed)} for STL-10 split {split!r} "
                f"(0: unconditional), got {num_classes}"
            )
        super().__init__(
            batch_size=batch_size,
            n_dis=n_dis,
            image_size=image_size,
            img_channels=img_channels,
            num_workers=num_workers,
            limit=limit,
        )
        self.root, self.split, self.download, self.num_classes = root, split, download, num_classes

    def open_source(self) -> tuple[STL10, torch.Tensor, str]:
        required = [f"{STL10.base_folder}/{name}" for name, _ in STL10.train_list + STL10.test_list]
        ds = open_torchvision_dataset(
            STL10,
            self.root,
            self.download,
            required,
            f"{STL10.base_folder}/ (train_X/y, test_X/y, unlabeled_X .bin files of the official stl10_binary.tar.gz)",
            split=self.split,
        )
        labels = torch.as_tensor(ds.labels, dtype=torch.long)
        return ds, labels, f"{self.root}/{STL10.base_folder}/{_CONTAINER[self.split]}"
