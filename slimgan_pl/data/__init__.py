"""Data modules: each yields (images in [-1, 1], labels), batch_size * n_dis images per step."""

from slimgan_pl.data.base import InMemoryImageDataModule, to_model_range
from slimgan_pl.data.cifar import CIFARDataModule
from slimgan_pl.data.fashion_mnist import DataNotFoundError, FashionMNISTDataModule, load_fashion_mnist

__all__ = ["CIFARDataModule", "DataNotFoundError", "FashionMNISTDataModule", "InMemoryImageDataModule",
           "load_fashion_mnist", "to_model_range"]
