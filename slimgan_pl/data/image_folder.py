"""A folder of images: one subfolder per class (torchvision's ImageFolder layout) or a flat folder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import Dataset
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS, default_loader, has_file_allowed_extension

from slimgan_pl.data.base import DataNotFoundError, FileImageDataModule

LAYOUT = (
    "root/<class>/<image> (one subfolder per class) or root/<image> (flat, unconditional); "
    f"extensions {', '.join(IMG_EXTENSIONS)}"
)


def _is_image(path: Path) -> bool:
    return path.is_file() and has_file_allowed_extension(path.name, IMG_EXTENSIONS)


class FlatImageFiles(Dataset):
    """The images directly in one folder, sorted by name: (PIL image, -1)."""

    def __init__(self, files: list[Path]) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[object, int]:
        return default_loader(str(self.files[i])), -1


class ImageFolderDataModule(FileImageDataModule):
    """Images under ``root`` resized (shorter side, then central square; ``crop`` first if set) to
    ``image_size`` and converted to RGB (``img_channels=3``) or grayscale (1).

    Layouts: ``root/<class>/*.png|jpg|...`` (classes = sorted subfolder names, labels their index)
    or a flat ``root/*.png|jpg|...`` (unconditional, labels -1). ``num_classes``: 0 trains an
    unconditional model on either layout; K > 0 (class-conditional models) needs exactly K class
    subfolders. ``on_corrupt``: unreadable files fail before training (``error``) or are left out
    (``skip``), see :mod:`slimgan_pl.data.preflight`.
    """

    def __init__(
        self,
        root: str,
        num_classes: int = 0,
        image_size: int = 32,
        img_channels: int = 3,
        crop: int | None = None,
        batch_size: int = 64,
        n_dis: int = 1,
        num_workers: int = 0,
        limit: int | None = None,
        on_corrupt: str = "error",
    ) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ValueError(f"data.num_classes must be an integer >= 0 (0: unconditional), got {num_classes!r}")
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
        self.root, self.num_classes = root, num_classes
        self.classes: list[str] = []

    def open_source(self) -> tuple[Dataset, torch.Tensor, list[str]]:
        root = Path(self.root)
        if not root.is_dir():
            raise DataNotFoundError(f"data.root={self.root!r} is not a folder; expected {LAYOUT}")
        subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        flat = sorted(p for p in root.iterdir() if _is_image(p))
        if subfolders and flat:
            raise ValueError(
                f"data.root={self.root!r} holds both images and subfolders "
                f"({flat[0].name}, {subfolders[0].name}/, ...): use one layout, {LAYOUT}"
            )
        if subfolders:
            try:
                source = ImageFolder(str(root), loader=default_loader)
            except FileNotFoundError as e:  # a class subfolder without images
                raise DataNotFoundError(f"data.root={self.root!r}: {e}; expected {LAYOUT}") from e
            self.classes = list(source.classes)
            labels, names = torch.as_tensor(source.targets, dtype=torch.long), [p for p, _ in source.samples]
        elif flat:
            source, labels, names = FlatImageFiles(flat), torch.full((len(flat),), -1, dtype=torch.long), flat
        else:
            raise DataNotFoundError(f"no images under data.root={self.root!r}; expected {LAYOUT}")
        if self.num_classes and self.num_classes != len(self.classes):
            found = (
                f"{len(self.classes)} class subfolders ({', '.join(self.classes)})"
                if self.classes
                else "a flat folder of images (no classes)"
            )
            raise ValueError(
                f"data.num_classes={self.num_classes} but data.root={self.root!r} has {found}; set "
                f"data.num_classes to the number of class subfolders, or 0 for an unconditional model"
            )
        return source, labels, [str(n) for n in names]
