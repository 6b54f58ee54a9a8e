import gzip
import shutil

import numpy as np
import pytest
import torch

from slimgan_pl.data import DataNotFoundError, FashionMNISTDataModule, load_fashion_mnist
from slimgan_pl.data.fashion_mnist import read_idx


def test_real_fashion_mnist(fmnist_root):
    images, labels = load_fashion_mnist(fmnist_root, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == torch.uint8
    assert sorted(labels.unique().tolist()) == list(range(10))
    dm = FashionMNISTDataModule(fmnist_root, batch_size=16, n_dis=2, split="test")
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 32, 32) and y.shape == (32,)  # batch_size * n_dis
    assert x.min() >= -1 and x.max() <= 1
    assert torch.all(x[:, :, :2, :] == -1) and torch.all(x[:, :, :, -2:] == -1)  # padded border is black


def test_torchvision_layout_uncompressed(tmp_path, fmnist_root):
    raw = tmp_path / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        with gzip.open(f"{fmnist_root}/{name}.gz") as src, open(raw / name, "wb") as dst:
            shutil.copyfileobj(src, dst)
    images, labels = load_fashion_mnist(tmp_path, "test")
    ref_images, ref_labels = load_fashion_mnist(fmnist_root, "test")
    assert torch.equal(images, ref_images) and torch.equal(labels, ref_labels)


def test_missing_data_names_package_and_key(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"apt-get install dataset-fashion-mnist.*data.root"):
        load_fashion_mnist(tmp_path, "train")
    with pytest.raises(DataNotFoundError, match="data.root"):
        FashionMNISTDataModule(str(tmp_path)).check()


def test_corrupt_idx_names_the_file(tmp_path):
    header = np.array([0, 0, 8, 3], dtype=np.uint8).tobytes() + np.array([5, 28, 28], ">i4").tobytes()
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(header + b"\0" * 100)  # truncated
    with pytest.raises(ValueError, match="train-images-idx3-ubyte is truncated"):
        read_idx(bad)
    bad.write_bytes(b"garbage!")
    with pytest.raises(ValueError, match="not an unsigned-byte idx file"):
        read_idx(bad)
