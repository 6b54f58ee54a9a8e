"""Fashion-MNIST read straight from idx files (Debian's ``dataset-fashion-mnist`` or torchvision's layout)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8}


class DataNotFoundError(FileNotFoundError):
    """Raised when a dataset's files are missing; the message says how to get them."""


def _find(root: Path, name: str) -> Path | None:
    # Debian ships gzipped files in the root; torchvision keeps raw files under FashionMNIST/raw.
    for folder in (root, root / "FashionMNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx(path: str | Path) -> np.ndarray:
    """Read an idx file (optionally gzipped) into a numpy array, checking its header."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise ValueError(f"cannot read idx file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an unsigned-byte idx file (bad magic {data[:4].hex()})")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(f"{path} is truncated or corrupt: header says {shape} "
                         f"({expected} bytes), file has {len(data) - header}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def load_fashion_mnist(root: str | Path = DEBIAN_ROOT, split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """Return (images uint8 [N, 28, 28], labels int64 [N]) of one split."""
    if split not in _FILES:
        raise ValueError(f"data.split must be one of {sorted(_FILES)}, got {split!r}")
    root = Path(root)
    paths = [_find(root, name) for name in _FILES[split]]
    if None in paths:
        missing = [n for n, p in zip(_FILES[split], paths) if p is None]
        raise DataNotFoundError(
            f"Fashion-MNIST {split} files {missing} not found under data.root={str(root)!r}. "
            "Install them with 'apt-get install dataset-fashion-mnist' (files land in "
            f"{DEBIAN_ROOT}) or set data.root to a folder holding the idx files (.gz or raw)."
        )
    images, labels = (read_idx(p) for p in paths)
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"Fashion-MNIST {split} files under {root} disagree: images {images.shape}, "
                         f"labels {labels.shape}")
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


def to_model_range(images_uint8: torch.Tensor, image_size: int = 32) -> torch.Tensor:
    """uint8 [N, H, W] -> float [N, 1, S, S] in [-1, 1]; 28px digits are padded (not stretched) to 32."""
    x = images_uint8.float().div(127.5).sub(1.0).unsqueeze(1)
    h = x.shape[-1]
    if image_size == h:
        return x
    if image_size > h and (image_size - h) % 2 == 0 and image_size - h <= 8:
        pad = (image_size - h) // 2
        return F.pad(x, (pad, pad, pad, pad), value=-1.0)  # background is black
    return F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False,
                         antialias=True).clamp(-1, 1)


class TensorImageDataset(Dataset):
    """Images already in model range, kept in memory (Fashion-MNIST at 32px is 245 MB as float)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[i], self.labels[i]


class FashionMNISTDataModule(pl.LightningDataModule):
    """Fashion-MNIST at ``image_size`` in [-1, 1] with labels.

    ``batch_size`` is the batch of one D step; the loader yields ``batch_size * n_dis`` images per
    training iteration, because one training step of :class:`SlimGAN` runs all ``n_dis`` D steps
    (each on its own real batch) and then one G step.
    """

    num_classes = 10

    def __init__(self, root: str = DEBIAN_ROOT, batch_size: int = 64, n_dis: int = 1,
                 image_size: int = 32, img_channels: int = 1, num_workers: int = 0, split: str = "train",
                 limit: int | None = None) -> None:
        super().__init__()
        if img_channels != 1:
            raise ValueError(f"data.img_channels must be 1 for Fashion-MNIST (grayscale), got {img_channels}")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        if image_size < 8:
            raise ValueError(f"data.image_size must be >= 8, got {image_size}")
        self.root, self.batch_size, self.n_dis = root, batch_size, n_dis
        self.image_size, self.num_workers, self.split, self.limit = image_size, num_workers, split, limit
        self.img_channels = 1
        self.dataset: TensorImageDataset | None = None

    def check(self) -> None:
        """Fail early (before training starts) when files are missing."""
        for name in _FILES[self.split]:
            if _find(Path(self.root), name) is None:
                load_fashion_mnist(self.root, self.split)  # raises the explanatory error

    def setup(self, stage: str | None = None) -> None:
        if self.dataset is not None:
            return
        images, labels = load_fashion_mnist(self.root, self.split)
        if self.limit:
            images, labels = images[: self.limit], labels[: self.limit]
        self.dataset = TensorImageDataset(to_model_range(images, self.image_size), labels)

    def train_dataloader(self) -> DataLoader:
        assert self.dataset is not None, "call setup() first"
        per_step = self.batch_size * self.n_dis
        if len(self.dataset) < per_step:
            raise ValueError(f"dataset has {len(self.dataset)} images, fewer than one training step "
                             f"needs (data.batch_size * optim.n_dis = {per_step})")
        return DataLoader(self.dataset, batch_size=per_step, shuffle=True, drop_last=True,
                          num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
