"""Data modules."""

from slimgan_pl.data.fashion_mnist import DataNotFoundError, FashionMNISTDataModule, load_fashion_mnist

__all__ = ["DataNotFoundError", "FashionMNISTDataModule", "load_fashion_mnist"]
