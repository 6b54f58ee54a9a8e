"""STL-10, CelebA, CIFAR and image-folder data modules on tiny files in each real on-disk format.

torchvision's dataset classes check every file's md5 against the official archives when opened with
``download=False``, which tiny files cannot pass. The ``no_md5`` fixture replaces that check (in the
torchvision modules' namespaces) by "the file exists", so everything else (torchvision's readers,
the data modules' transforms, loaders and errors) runs as on real data.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision.datasets.celeba
import torchvision.datasets.cifar
import torchvision.datasets.stl10
from PIL import Image

from slimgan_pl.data import (
    CelebADataModule,
    CIFARDataModule,
    CorruptImageError,
    DataNotFoundError,
    ImageFolderDataModule,
    STL10DataModule,
)


@pytest.fixture
def no_md5(monkeypatch):
    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    for module in (torchvision.datasets.cifar, torchvision.datasets.stl10, torchvision.datasets.celeba):
        monkeypatch.setattr(module, "check_integrity", exists)


def first_batch(dm) -> tuple[torch.Tensor, torch.Tensor]:
    dm.check()
    return next(iter(dm.train_dataloader()))


def assert_model_range(x: torch.Tensor) -> None:
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


# ----------------------------------------------------------------------------- CIFAR (python pickles)
def write_cifar10(root: Path, n_per_batch: int = 4) -> np.ndarray:
    """cifar-10-batches-py/data_batch_1..5, test_batch, batches.meta as torchvision reads them
    (pickles of {"data": uint8 (N, 3072) channel-planar, "labels": [...]}); returns the train images NHWC."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
        if name != "test_batch":
            train.append(data)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return np.concatenate(train).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def test_cifar10_pickles(tmp_path, no_md5):
    train = write_cifar10(tmp_path)
    dm = CIFARDataModule(str(tmp_path), batch_size=4, n_dis=5)
    x, y = first_batch(dm)
    assert x.shape == (20, 3, 32, 32) and y.shape == (20,) and y.dtype == torch.long
    assert_model_range(x)
    images = dm.dataset.images  # in memory, in loader order: compare with the pickled pixels
    expected = torch.from_numpy(train).permute(0, 3, 1, 2).float() / 127.5 - 1
    torch.testing.assert_close(images, expected)


# ----------------------------------------------------------------------------- STL-10 (binary)
def write_stl10(root: Path, n_unlabeled: int = 6) -> np.ndarray:
    """stl10_binary/{train,test}_{X,y}.bin and unlabeled_X.bin: uint8 images (N, 3, 96, 96) stored
    column-major (torchvision transposes H and W when reading). Returns the unlabeled images NCHW."""
    folder = root / "stl10_binary"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)

    def images(n: int) -> np.ndarray:
        x = rng.integers(0, 128, (n, 3, 96, 96), dtype=np.uint8)
        x[:, :, :48] = 255  # top half white: an orientation check
        return x

    for split, n in (("train", 2), ("test", 2)):
        images(n).transpose(0, 1, 3, 2).tofile(folder / f"{split}_X.bin")
        np.array([1, 10], dtype=np.uint8).tofile(folder / f"{split}_y.bin")  # 1-based on disk
    unlabeled = images(n_unlabeled)
    unlabeled.transpose(0, 1, 3, 2).tofile(folder / "unlabeled_X.bin")
    return unlabeled


def test_stl10_unlabeled_binary(tmp_path, no_md5):
    write_stl10(tmp_path)
    x, y = first_batch(STL10DataModule(str(tmp_path), batch_size=3, n_dis=2))
    assert x.shape == (6, 3, 48, 48)
    assert_model_range(x)
    assert torch.all(y == -1)  # unlabeled
    assert torch.all(x[:, :, :23] == 1.0) and x[:, :, 25:].mean() < 0  # top half white, right way up
    labelled = STL10DataModule(str(tmp_path), split="train", num_classes=10, batch_size=2, image_size=32)
    x, y = first_batch(labelled)
    assert x.shape == (2, 3, 32, 32) and sorted(y.tolist()) == [0, 9]


# ----------------------------------------------------------------------------- CelebA (JPEG folder)
CELEBA_TEXT = (
    "list_eval_partition.txt",
    "identity_CelebA.txt",
    "list_bbox_celeba.txt",
    "list_landmarks_align_celeba.txt",
    "list_attr_celeba.txt",
)


def write_celeba(root: Path, partitions=(0, 0, 0, 1, 2)) -> list[str]:
    """celeba/img_align_celeba/00000k.jpg (178x218 faces: here black with white bands outside the
    central 178 rows) and the five annotation files in their real formats."""
    folder = root / "celeba"
    (folder / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partitions))]
    pixels = np.zeros((218, 178, 3), dtype=np.uint8)
    pixels[:20], pixels[198:] = 255, 255
    for name in names:
        Image.fromarray(pixels).save(folder / "img_align_celeba" / name, quality=95)
    attrs = [f"Attr{i}" for i in range(40)]
    n = len(names)
    (folder / "list_eval_partition.txt").write_text("".join(f"{m} {p}\n" for m, p in zip(names, partitions)))
    (folder / "identity_CelebA.txt").write_text("".join(f"{m} {i + 1}\n" for i, m in enumerate(names)))
    (folder / "list_bbox_celeba.txt").write_text(
        f"{n}\nimage_id x_1 y_1 width height\n" + "".join(f"{m} 95 71 226 313\n" for m in names)
    )
    (folder / "list_landmarks_align_celeba.txt").write_text(
        f"{n}\nlefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x "
        "rightmouth_y\n" + "".join(f"{m}  69 109 106 113 77 142 73 152 108 154\n" for m in names)
    )
    (folder / "list_attr_celeba.txt").write_text(
        f"{n}\n{' '.join(attrs)}\n" + "".join(f"{m} " + " ".join(["-1", "1"] * 20) + "\n" for m in names)
    )
    return names


def test_celeba_crop_resize(tmp_path, no_md5):
    write_celeba(tmp_path)
    dm = CelebADataModule(str(tmp_path), batch_size=3, n_dis=1)
    x, y = first_batch(dm)
    assert len(dm.dataset) == 3  # partition 0 only
    assert x.shape == (3, 3, 64, 64) and torch.all(y == -1)
    assert_model_range(x)
    assert x.max() < -0.9  # the white bands lie outside the central 178x178 crop
    # without the crop (shorter side to 64, central 64x64 of 64x78) the bands reach into the top row
    uncropped = CelebADataModule(str(tmp_path), batch_size=3, crop=None)
    assert first_batch(uncropped)[0][:, :, 0].mean() > -0.9


# ----------------------------------------------------------------------------- image folders
def write_images(folder: Path, names: list[str], size=(40, 30), color=(200, 10, 10)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        Image.new("RGB", size, color).save(folder / name)


def test_image_folder_with_classes_and_flat(tmp_path):
    write_images(tmp_path / "classes" / "cat", ["a.png", "b.jpg"])
    write_images(tmp_path / "classes" / "dog", ["c.png", "d.bmp"], color=(0, 0, 250))
    dm = ImageFolderDataModule(str(tmp_path / "classes"), num_classes=2, image_size=16, batch_size=4)
    x, y = first_batch(dm)
    assert x.shape == (4, 3, 16, 16) and dm.classes == ["cat", "dog"]
    assert_model_range(x)
    for image, label in zip(x, y):  # label = subfolder: red cats, blue dogs
        assert (image[0].mean() > 0) == (label.item() == 0) and (image[2].mean() > 0) == (label.item() == 1)

    gray = ImageFolderDataModule(str(tmp_path / "classes"), image_size=16, img_channels=1, batch_size=4)
    assert first_batch(gray)[0].shape == (4, 1, 16, 16)

    write_images(tmp_path / "flat", ["1.png", "2.jpeg", "3.webp"], size=(20, 50))
    (tmp_path / "flat" / "notes.txt").write_text("not an image")
    flat = ImageFolderDataModule(str(tmp_path / "flat"), image_size=16, batch_size=3)
    x, y = first_batch(flat)
    assert x.shape == (3, 3, 16, 16) and torch.all(y == -1)
    with pytest.raises(ValueError, match=r"data\.num_classes=2 but .* has a flat folder of images"):
        ImageFolderDataModule(str(tmp_path / "flat"), num_classes=2).check()
    with pytest.raises(ValueError, match=r"data\.num_classes=3 but .* has 2 class subfolders \(cat, dog\)"):
        ImageFolderDataModule(str(tmp_path / "classes"), num_classes=3).check()


@pytest.fixture(autouse=True)
def private_data_check_cache(tmp_path, monkeypatch):
    """The pre-flight check's cache (slimgan_pl/data/preflight.py) goes to the test's folder."""
    monkeypatch.setenv("SLIMGAN_DATA_CHECK_CACHE", str(tmp_path / "data_check_cache"))


def test_corrupt_image_names_the_file(tmp_path):
    write_images(tmp_path / "imgs", ["a.png", "b.png"])
    (tmp_path / "imgs" / "bad.jpg").write_bytes(b"this is not an image")
    dm = ImageFolderDataModule(str(tmp_path / "imgs"), image_size=16, batch_size=3)
    with pytest.raises(
        CorruptImageError,
        match=r"1 of 3 images cannot be decoded: .*imgs/bad\.jpg "
        r"\(UnidentifiedImageError\)",
    ):
        dm.setup()  # the pre-flight check, before any training
    # a file that breaks after the check is still named when the loader reaches it
    good_dm = ImageFolderDataModule(str(tmp_path / "imgs"), image_size=16, batch_size=2, on_corrupt="skip")
    good_dm.setup()
    (tmp_path / "imgs" / "a.png").write_bytes(b"broken later")
    with pytest.raises(CorruptImageError, match=r"cannot read .*imgs/a\.png: UnidentifiedImageError"):
        good_dm.dataset.dataset._decode(0)
    # truncated file: decodes lazily, still named
    good = tmp_path / "trunc"
    write_images(good, ["x.jpg"], size=(64, 64))
    data = (good / "x.jpg").read_bytes()
    (good / "x.jpg").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptImageError, match=r"cannot be decoded: .*trunc/x\.jpg \(OSError\)"):
        ImageFolderDataModule(str(good), image_size=16, batch_size=1).check()


# ----------------------------------------------------------------------------- missing data
@pytest.mark.parametrize(
    "make, missing",
    [
        (lambda root: STL10DataModule(root), "stl10_binary/train_X.bin"),
        (lambda root: CelebADataModule(root), "celeba/img_align_celeba"),
        (lambda root: CIFARDataModule(root), "cifar-10-batches-py"),
    ],
)
def test_missing_data_says_what_to_do(tmp_path, make, missing):
    with pytest.raises(DataNotFoundError, match=r"data\.download=true.*data\.root") as err:
        make(str(tmp_path)).check()
    assert missing in str(err.value) and len(str(err.value).splitlines()) == 1


def test_missing_image_folder(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"data\.root=.* is not a folder; expected root/<class>/<image>"):
        ImageFolderDataModule(str(tmp_path / "nope")).check()
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataNotFoundError, match="no images under data.root"):
        ImageFolderDataModule(str(tmp_path / "empty")).check()


def test_corrupt_torchvision_files_are_reported(tmp_path):
    """Files present but not the official ones (md5 mismatch): one clear error, not torchvision's."""
    write_stl10(tmp_path)
    with pytest.raises(DataNotFoundError, match=r"STL10 under data\.root=.* is incomplete or corrupt"):
        STL10DataModule(str(tmp_path)).check()


# ----------------------------------------------------------------------------- end to end
@pytest.mark.parametrize(
    "experiment, write, size", [("stl10_snresgan", write_stl10, 48), ("celeba_sndcgan", write_celeba, 64)]
)
def test_recipe_trains_on_its_data_format(make_cfg, tmp_path, no_md5, experiment, write, size):
    """One iteration of the 48/64px recipes (tiny channels, one D step) through slimgan-train's path."""
    from slimgan_pl import SlimGAN
    from slimgan_pl.train import train

    data = tmp_path / "data"
    write(data, *([(0,) * 6] if write is write_celeba else [10]))
    cfg = make_cfg(
        f"experiment={experiment}",
        f"data.root={data}",
        "data.batch_size=2",
        "data.num_workers=0",
        "optim.n_dis=1",
        "train.g_steps=1",
        "callbacks.sample_grid.every_n_iterations=1",
        "callbacks.sample_grid.n_samples=4",
        "callbacks.sample_grid.nrow=2",
    )
    summary = train(cfg)
    assert summary["iterations"] == 1
    assert (tmp_path / "run" / "samples" / "w0.25" / "iter_000001.png").is_file()
    model = SlimGAN.load_from_checkpoint(summary["last_checkpoint"], map_location="cpu", weights_only=True)
    assert model.sample(2, width=0.5, seed=0).shape == (2, 3, size, size)
