"""Data modules: each yields (images in [-1, 1], labels), batch_size * n_dis images per step."""

from slimgan_pl.data.base import (
    CorruptImageError,
    DataNotFoundError,
    FileImageDataModule,
    ImageDataModule,
    InMemoryImageDataModule,
    to_model_range,
)
from slimgan_pl.data.celeba import CelebADataModule
from slimgan_pl.data.cifar import CIFARDataModule
from slimgan_pl.data.fashion_mnist import FashionMNISTDataModule, load_fashion_mnist
from slimgan_pl.data.image_folder import ImageFolderDataModule
from slimgan_pl.data.stl10 import STL10DataModule

__all__ = [
    "CIFARDataModule",
    "CelebADataModule",
    "CorruptImageError",
    "DataNotFoundError",
    "FashionMNISTDataModule",
    "FileImageDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "InMemoryImageDataModule",
    "STL10DataModule",
    "load_fashion_mnist",
    "to_model_range",
]
