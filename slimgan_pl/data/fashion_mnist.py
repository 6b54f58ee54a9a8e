"""Fashion-MNIST read straight from idx files (Debian's ``dataset-fashion-mnist`` or torchvision's layout)."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from slimgan_pl.data.base import DataNotFoundError, InMemoryImageDataModule, to_model_range  # noqa: F401 (re-export)

DEBIAN_ROOT = "/usr/share/datasets/fashion-mnist"
CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_IDX_DTYPES = {0x08: np.uint8}


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
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(data) - header != expected:
        raise ValueError(
            f"{path} is truncated or corrupt: header says {shape} ({expected} bytes), file has {len(data) - header}"
        )
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
        raise ValueError(
            f"Fashion-MNIST {split} files under {root} disagree: images {images.shape}, labels {labels.shape}"
        )
    return torch.from_numpy(images.copy()), torch.from_numpy(labels.astype(np.int64))


class FashionMNISTDataModule(InMemoryImageDataModule):
    """Fashion-MNIST (Debian's idx files by default) at ``image_size`` in [-1, 1], with labels."""

    num_classes = 10
    name = "fashion_mnist"

    def __init__(
        self,
        root: str = DEBIAN_ROOT,
        batch_size: int = 64,
        n_dis: int = 1,
        image_size: int = 32,
        img_channels: int = 1,
        num_workers: int = 0,
        split: str = "train",
        limit: int | None = None,
        num_classes: int = 10,
    ) -> None:
        if img_channels != 1:
            raise ValueError(f"data.img_channels must be 1 for Fashion-MNIST (grayscale), got {img_channels}")
        # Accepted so that configs can read ${data.num_classes} (conditional models); always 10.
        if num_classes != 10:
            raise ValueError(f"data.num_classes must be 10 for Fashion-MNIST, got {num_classes}")
        super().__init__(
            batch_size=batch_size,
            n_dis=n_dis,
            image_size=image_size,
            img_channels=1,
            num_workers=num_workers,
            limit=limit,
        )
        self.root, self.split = root, split

    def check(self) -> None:
        """Fail before training when files are missing (without reading them)."""
        if self.split not in _FILES:
            raise ValueError(f"data.split must be one of {sorted(_FILES)}, got {self.split!r}")
        if any(_find(Path(self.root), name) is None for name in _FILES[self.split]):
            load_fashion_mnist(self.root, self.split)  # raises the explanatory error

    def load(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = load_fashion_mnist(self.root, self.split)
        return images.unsqueeze(1), labels
