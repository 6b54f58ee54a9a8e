"""Real-image side of the evaluation: which dataset a checkpoint was trained on, the protocol
presets (``conf/eval/protocols.yaml``), the real images of a split, and their cached features /
statistics files.

* The data config travels in the checkpoint (``checkpoint["data_config"]``, written by
  :class:`slimgan_pl.callbacks.DataConfigInCheckpoint`); older checkpoints fall back to the run's
  ``config_resolved.yaml``, and a 1x32x32 generator without either to Fashion-MNIST.
* Real features are cached per (dataset, root, split, image size, count, backbone + its sha256):
  a ``.pt`` with the features and logits (FID, KID, sanity row) and a ``.npz`` with ``mu`` and
  ``sigma`` (float64, unbiased covariance), the format of torch-fidelity's and the TTUR reference
  statistics files, which ``--ref-stats FILE.npz`` reads back.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from slimgan_pl.choices import CACHE_ENV_VAR, DEFAULT_CACHE_DIR, protocol_names  # noqa: F401 - no torch: --help
from slimgan_pl.choices import protocols_file as _protocols_file
from slimgan_pl.metrics.backbones import Backbone, FeatureSet

SUBSET_SEED = 0  # which real images form a subset smaller than the split (fixed: part of the cache key)
DATASETS = ("fashion_mnist", "cifar10", "cifar100", "stl10", "celeba", "image_folder")
# Per data module: the eval split names it knows, and how a split becomes constructor arguments.
_SPLITS: dict[str, Callable[[str], dict[str, Any]] | None] = {
    "fashion_mnist": lambda s: {"split": s} if s in ("train", "test") else None,
    "cifar10": lambda s: {"train": s == "train"} if s in ("train", "test") else None,
    "cifar100": lambda s: {"train": s == "train"} if s in ("train", "test") else None,
    "stl10": lambda s: {"split": s} if s in ("train", "test", "unlabeled", "train+unlabeled") else None,
    "celeba": lambda s: {"split": s} if s in ("train", "valid", "test", "all") else None,
    "image_folder": lambda s: {} if s == "all" else None,
}
_SPLIT_NAMES = {
    "fashion_mnist": "train | test",
    "cifar10": "train | test",
    "cifar100": "train | test",
    "stl10": "train | test | unlabeled | train+unlabeled",
    "celeba": "train | valid | test | all",
    "image_folder": "all (the folder)",
}
Log = Callable[[str], None]


# ----------------------------------------------------------------------------- data config
def datamodule_config(datamodule: Any) -> dict[str, Any]:
    """A Hydra-instantiable config (``_target_`` + constructor arguments) of a data module
    instance, read from the attributes its constructor stored under the arguments' names."""
    import inspect

    cls = type(datamodule)
    config: dict[str, Any] = {"_target_": f"{cls.__module__}.{cls.__qualname__}"}
    for name in inspect.signature(cls.__init__).parameters:
        value = getattr(datamodule, name, None)
        if name != "self" and isinstance(value, (str, int, float, bool)):
            config[name] = value
    return config


def dataset_kind(data_config: Mapping[str, Any]) -> str:
    """fashion_mnist | cifar10 | cifar100 | stl10 | celeba | image_folder, from ``_target_``."""
    target = str(data_config.get("_target_", "")).rsplit(".", 1)[-1]
    kinds = {
        "FashionMNISTDataModule": "fashion_mnist",
        "STL10DataModule": "stl10",
        "CelebADataModule": "celeba",
        "ImageFolderDataModule": "image_folder",
    }
    if target == "CIFARDataModule":
        return "cifar100" if int(data_config.get("num_classes", 10)) == 100 else "cifar10"
    if target not in kinds:
        raise ValueError(
            f"data module {data_config.get('_target_')!r} has no evaluation support; known: {', '.join(DATASETS)}"
        )
    return kinds[target]


FASHION_MNIST_CONFIG = {
    "_target_": "slimgan_pl.data.FashionMNISTDataModule",
    "root": "/usr/share/datasets/fashion-mnist",
    "image_size": 32,
    "img_channels": 1,
}


def checkpoint_data_config(
    checkpoint: str | os.PathLike, payload: Mapping[str, Any], image_shape: tuple[int, int, int]
) -> tuple[dict[str, Any], str]:
    """(data config, where it came from) of a checkpoint: its ``data_config`` entry, else the run's
    ``config_resolved.yaml``, else Fashion-MNIST for a 1x32x32 generator; ValueError otherwise."""
    if isinstance(payload.get("data_config"), Mapping):
        return dict(payload["data_config"]), "checkpoint"
    from slimgan_pl.checkpoint import run_directory

    resolved = run_directory(checkpoint) / "config_resolved.yaml"
    if resolved.is_file():
        data = (yaml.safe_load(resolved.read_text()) or {}).get("data")
        if isinstance(data, Mapping) and "_target_" in data:
            return dict(data), str(resolved)
    if tuple(image_shape) == (1, 32, 32):
        return dict(FASHION_MNIST_CONFIG), "assumed (1x32x32 generator, no data config in the checkpoint)"
    raise ValueError(
        f"checkpoint {checkpoint} records no data config and {resolved} does not exist: evaluate it "
        "from its run directory, or retrain with this version (checkpoints now carry data_config)"
    )


# ----------------------------------------------------------------------------- protocols
@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    split: str
    n_real: int
    n_fake: int
    is_n_fake: int
    is_splits: int
    kid_subsets: int
    kid_subset_size: int

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _for_dataset(value: Any, dataset: str) -> Any:
    return value.get(dataset, value.get("default")) if isinstance(value, Mapping) else value


def default_protocol(dataset: str) -> str:
    return _for_dataset(_protocols_file()["default_protocol"], dataset)


def load_protocol(name: str | None, dataset: str) -> Protocol:
    """Preset ``name`` (default: the dataset's) with its per-dataset values resolved."""
    spec = _protocols_file()
    name = name or default_protocol(dataset)
    if name not in spec["protocols"]:
        raise ValueError(f"--protocol must be one of {sorted(spec['protocols'])}, got {name!r}")
    preset = {k: _for_dataset(v, dataset) for k, v in spec["protocols"][name].items()}
    preset["is_n_fake"] = preset.get("is_n_fake") or preset["n_fake"]
    return Protocol(name=name, **preset)


# ----------------------------------------------------------------------------- real images
def real_dataset(data_config: Mapping[str, Any], split: str) -> torch.utils.data.Dataset:
    """The dataset of ``split`` (images in [-1, 1] at the training size, as the generator's)."""
    from hydra.utils import get_class

    kind = dataset_kind(data_config)
    overrides = _SPLITS[kind](split)
    if overrides is None:
        raise ValueError(f"split {split!r} does not exist for {kind}; use one of {_SPLIT_NAMES[kind]}")
    config = {k: v for k, v in data_config.items() if k not in ("_target_", "limit", "split", "train", "n_dis")}
    # get_class + call, not instantiate: the data module's own one-line errors stay unwrapped
    datamodule = get_class(data_config["_target_"])(**{**config, **overrides, "limit": None, "num_workers": 0})
    datamodule.setup()
    return datamodule.dataset


def real_images(data_config: Mapping[str, Any], split: str, n: int | None) -> torch.Tensor:
    """``n`` real images of ``split`` (None: all): the split itself or a subset drawn with
    :data:`SUBSET_SEED`, float [-1, 1] (N, C, H, W)."""
    dataset = real_dataset(data_config, split)
    size = len(dataset)
    n = size if n is None else n
    if n > size:
        raise ValueError(
            f"{n} real images requested but {dataset_kind(data_config)} split {split!r} has {size}; "
            f"use --n-real {size} or less"
        )
    index = range(size) if n == size else torch.randperm(size, generator=torch.Generator().manual_seed(SUBSET_SEED))[:n]
    if hasattr(dataset, "images") and len(dataset.images) == size:  # in memory: one gather
        return dataset.images[torch.as_tensor(list(index))]
    return torch.stack([dataset[int(i)][0] for i in index])


# Sizes of the fixed datasets' splits (a look-up instead of loading 60k images to count them).
KNOWN_SPLIT_SIZES = {
    ("fashion_mnist", "train"): 60_000,
    ("fashion_mnist", "test"): 10_000,
    ("cifar10", "train"): 50_000,
    ("cifar10", "test"): 10_000,
    ("cifar100", "train"): 50_000,
    ("cifar100", "test"): 10_000,
    ("stl10", "train"): 5_000,
    ("stl10", "test"): 8_000,
    ("stl10", "unlabeled"): 100_000,
    ("celeba", "train"): 162_770,
    ("celeba", "valid"): 19_867,
    ("celeba", "test"): 19_962,
}


def split_size(data_config: Mapping[str, Any], split: str) -> int:
    known = KNOWN_SPLIT_SIZES.get((dataset_kind(data_config), split))
    return known if known is not None else len(real_dataset(data_config, split))


# ----------------------------------------------------------------------------- cache + stats files
def cache_dir(path: str | os.PathLike | None = None) -> Path:
    chosen = path if path is not None else os.environ.get(CACHE_ENV_VAR) or DEFAULT_CACHE_DIR
    return Path(chosen).expanduser()


def real_cache_key(data_config: Mapping[str, Any], split: str, n: int, backbone: Backbone) -> dict[str, Any]:
    kind = dataset_kind(data_config)
    root = str(Path(str(data_config.get("root", ""))).expanduser().resolve()) if data_config.get("root") else None
    return {
        "dataset": kind,
        "root": root,
        "split": split,
        "image_size": int(data_config.get("image_size", 32)),
        "n": n,
        "subset_seed": SUBSET_SEED,
        "backbone": backbone.name,
        "backbone_sha256": backbone.sha256,
    }


def cache_paths(key: Mapping[str, Any], directory: Path) -> tuple[Path, Path]:
    """(features .pt, statistics .npz) of a cache key."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    stem = f"{key['dataset']}-{key['split']}-{key['image_size']}px-n{key['n']}-{key['backbone']}-{digest}"
    return directory / f"{stem}.pt", directory / f"{stem}.npz"


def real_features(
    backbone: Backbone,
    data_config: Mapping[str, Any],
    split: str,
    n: int,
    directory: str | os.PathLike | None = None,
    batch_size: int = 500,
    log: Log | None = print,
) -> tuple[FeatureSet, Path]:
    """Features of ``n`` real images of ``split`` and the path of their statistics file; from the
    cache when the key matches, else computed and cached (features .pt + mu/sigma .npz)."""
    key = real_cache_key(data_config, split, n, backbone)
    features_path, stats_path = cache_paths(key, cache_dir(directory))
    cached = _read_cache(features_path, key)
    if cached is not None:
        if not stats_path.is_file():
            write_stats(stats_path, cached.features)
        return cached, stats_path
    if log:
        log(f"computing real features: {key['dataset']} {split}, {n} images, {backbone.name} -> {features_path}")
    feats = backbone.extract(real_images(data_config, split, n), batch_size)
    _write_cache(features_path, key, feats)
    write_stats(stats_path, feats.features)
    return feats, stats_path


def _read_cache(path: Path, key: Mapping[str, Any]) -> FeatureSet | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:
        return None  # unreadable cache: recompute and overwrite
    if not isinstance(payload, dict) or payload.get("key") != dict(key):
        return None
    return FeatureSet(payload["features"], payload["logits"])


def _write_cache(path: Path, key: Mapping[str, Any], feats: FeatureSet) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save({"key": dict(key), "features": feats.features, "logits": feats.logits}, tmp)
    os.replace(tmp, path)


def feature_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mu, sigma) in float64: the mean and the unbiased covariance (torch-fidelity's np.cov)."""
    f = features.double().cpu().numpy()
    return f.mean(axis=0), np.cov(f, rowvar=False)


def write_stats(path: str | os.PathLike, features: torch.Tensor) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mu, sigma = feature_statistics(features)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, mu=mu, sigma=sigma)
    os.replace(tmp, path)
    return path


def read_stats(path: str | os.PathLike, num_features: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``mu`` (D,) and ``sigma`` (D, D) of a statistics file, as float64 tensors; one-line
    ValueError naming the file when it is unreadable or not of the backbone's dimension D."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--ref-stats {path}: file does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in ("mu", "sigma") if k not in data.files]
            if not missing:
                mu, sigma = np.asarray(data["mu"], dtype=np.float64), np.asarray(data["sigma"], dtype=np.float64)
    except Exception as e:
        raise ValueError(f"--ref-stats {path}: not a readable .npz file ({type(e).__name__})") from None
    if missing:
        raise ValueError(
            f"--ref-stats {path}: no {' or '.join(repr(k) for k in missing)} array; expected an .npz "
            "with 'mu' (D,) and 'sigma' (D, D)"
        )
    d = num_features
    if mu.shape != (d,) or sigma.shape != (d, d):
        raise ValueError(
            f"--ref-stats {path}: mu {mu.shape} and sigma {sigma.shape} do not match the backbone's "
            f"{d}-d features (expected ({d},) and ({d}, {d}))"
        )
    return torch.from_numpy(mu), torch.from_numpy(sigma)
