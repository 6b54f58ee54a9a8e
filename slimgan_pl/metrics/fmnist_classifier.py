"""A small Fashion-MNIST CNN, trained by this project, as the feature network of FMNIST-FID/IS/KID.

Inception-v3 features of 28px grayscale clothing are a poor fit (and Inception weights need a
download); a classifier trained on the data itself is the usual domain-specific replacement. Its
numbers are called FMNIST-FID, FMNIST-IS and FMNIST-KID and are not comparable with Inception ones.

Input format: Fashion-MNIST padded to 32x32 (``slimgan_pl.data.to_model_range``),
float in [-1, 1], or uint8 in [0, 255] (28px inputs are padded the same way).

The trained network is cached as a plain dict (``torch.load(..., weights_only=True)``)::

    {"format": FORMAT, "version": VERSION, "arch": {...}, "state_dict": {...},
     "sha256": <hash of the weights>, "test_accuracy": float, "train": {...}}

Path: argument > ``$SLIMGAN_FMNIST_CLASSIFIER`` > the file shipped inside the package
(``slimgan_pl/metrics/weights/fmnist_classifier_v1.pt``, weights sha256 pinned in
:data:`SHIPPED_SHA256`). Every machine therefore scores with the same network (FMNIST-FID from two
machines is comparable, and no rank of a multi-node run ever trains it). A missing, corrupt,
tampered or outdated file raises :class:`ClassifierCacheError`; nothing is trained on first use.

Rebuild it with ``python -m slimgan_pl.metrics.fmnist_classifier --train``: that writes a *new* file
(named by its weights hash) and never replaces an existing one unless ``--overwrite`` is given.
Training runs on its own RNG (the caller's global RNG state is left as it was).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

from slimgan_pl.data.base import to_model_range
from slimgan_pl.data.fashion_mnist import DEBIAN_ROOT, load_fashion_mnist
from slimgan_pl.sampling import eval_mode

FORMAT = "slimgan_pl.fmnist_classifier"
VERSION = 1
ENV_VAR = "SLIMGAN_FMNIST_CLASSIFIER"
SHIPPED_PATH = Path(__file__).resolve().parent / "weights" / f"fmnist_classifier_v{VERSION}.pt"
# Weights hash (weights_sha256) of the shipped file: trained with the default recipe (4 epochs, seed 0),
# test accuracy 0.9103. Written into every metrics.json; a file with another hash is not "the" backbone.
SHIPPED_SHA256 = "d272af809ced508943183d68af65ce943112d4b8456149d83977d2edd84f7964"
DEFAULT_PATH = SHIPPED_PATH
TRAINED_DIR = Path("~/.cache/slimgan_pl")  # where --train writes new files by default
IMAGE_SIZE = 32
DEFAULT_CHANNELS = (16, 32, 64, 128)
OUTPUTS = ("features", "logits")


class ClassifierCacheError(RuntimeError):
    """The cached classifier file cannot be used; the message names the file and how to retrain."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(
            f"FMNIST classifier file {path} is unusable: {reason}. Use the file shipped with the package "
            f"(unset ${ENV_VAR} and pass no path; reinstall slimgan-pl if it is damaged) or build one with "
            f"'python -m slimgan_pl.metrics.fmnist_classifier --train --path {path}'."
        )
        self.path = path


# ----------------------------------------------------------------------------- network
class FMNISTClassifier(nn.Module):
    """Four conv3x3-BN-ReLU stages (max-pool between them), global average pool, linear head.

    About 3.7M MACs per image: small enough to train in a few CPU minutes and to featurise 10k
    images in seconds. ``features`` (the pooled last stage, ``channels[-1]``-d, non-negative like
    Inception's pool3) is the penultimate layer used by FMNIST-FID/KID; ``forward`` gives logits.
    """

    def __init__(self, channels: tuple[int, ...] = DEFAULT_CHANNELS, num_classes: int = 10) -> None:
        super().__init__()
        self.channels, self.num_classes = tuple(int(c) for c in channels), int(num_classes)
        layers: list[nn.Module] = []
        c_in = 1
        for i, c in enumerate(self.channels):
            if i > 0:
                layers.append(nn.MaxPool2d(2))
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            c_in = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    @property
    def num_features(self) -> int:
        return self.channels[-1]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def arch(self) -> dict[str, Any]:
        return {"channels": list(self.channels), "num_classes": self.num_classes}


def to_classifier_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images, (N, 1, 28|32, 28|32) or (N, 28|32, 28|32) -> float
    (N, 1, 32, 32) in [-1, 1], padded like the training data."""
    if images.dim() == 3:
        images = images.unsqueeze(1)
    if images.dim() != 4 or images.shape[1] != 1:
        raise ValueError(f"expected grayscale images (N, 1, H, W), got shape {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return to_model_range(images, IMAGE_SIZE)
    if not images.is_floating_point():
        raise ValueError(f"expected uint8 or float images, got {images.dtype}")
    images = images.float()
    if images.shape[-1] != IMAGE_SIZE:
        # to_model_range pads 28 -> 32 with the black background; reuse it via the [0, 255] scale.
        return to_model_range((images + 1) * 127.5, IMAGE_SIZE)
    return images


# ----------------------------------------------------------------------------- checksum & file
def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Hash of names, dtypes, shapes and values of every tensor, in sorted key order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())  # raw bytes, any dtype
    return h.hexdigest()


def resolve_path(path: str | os.PathLike | None = None) -> Path:
    """Argument > $SLIMGAN_FMNIST_CLASSIFIER > the file shipped with the package."""
    chosen = path if path is not None else os.environ.get(ENV_VAR) or SHIPPED_PATH
    return Path(chosen).expanduser()


def save_classifier(
    model: FMNISTClassifier,
    path: str | os.PathLike,
    test_accuracy: float,
    train_info: Mapping[str, Any] | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the classifier file atomically (a half-written file never replaces a good one). An
    existing file is never replaced unless ``overwrite`` (FileExistsError naming it)."""
    path = Path(path).expanduser()
    if path.exists() and not overwrite:
        raise FileExistsError(
            f"FMNIST classifier file {path} already exists; not overwriting it "
            "(choose another path, or pass --overwrite / overwrite=True)"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "arch": model.arch(),
        "state_dict": state,
        "sha256": weights_sha256(state),
        "test_accuracy": float(test_accuracy),
        "train": dict(train_info or {}),
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(payload, tmp)
    try:
        read_classifier(tmp)  # never install a file that the loader would reject
    except ClassifierCacheError:
        tmp.unlink()
        raise
    os.replace(tmp, path)
    return path


@dataclass
class LoadedClassifier:
    model: FMNISTClassifier
    path: Path
    sha256: str
    test_accuracy: float
    train_info: dict[str, Any] = field(default_factory=dict)

    @property
    def shipped(self) -> bool:
        """True when these are the weights shipped with the package (comparable across machines)."""
        return self.sha256 == SHIPPED_SHA256

    def describe(self) -> dict[str, Any]:
        """The ``extractor`` entry of metrics.json."""
        return {
            "name": f"fmnist_classifier_v{VERSION}",
            "path": str(self.path),
            "sha256": self.sha256,
            "shipped": self.shipped,
            "shipped_sha256": SHIPPED_SHA256,
            "test_accuracy": self.test_accuracy,
        }


def read_classifier(path: str | os.PathLike) -> LoadedClassifier:
    """Load and verify a classifier file; any problem raises :class:`ClassifierCacheError`."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ClassifierCacheError(path, "file does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, not a torch file, unpickling refused ...
        raise ClassifierCacheError(path, f"cannot be read ({type(e).__name__}: {e})") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ClassifierCacheError(path, f"not a {FORMAT} file")
    if payload.get("version") != VERSION:
        raise ClassifierCacheError(path, f"version {payload.get('version')!r}, this code needs {VERSION}")
    state = payload.get("state_dict")
    if not isinstance(state, dict) or weights_sha256(state) != payload.get("sha256"):
        raise ClassifierCacheError(path, "weights checksum mismatch (file modified or corrupt)")
    if path.resolve() == SHIPPED_PATH and payload.get("sha256") != SHIPPED_SHA256:
        raise ClassifierCacheError(
            path, f"the shipped file was replaced (weights sha256 {payload.get('sha256')}, pinned {SHIPPED_SHA256})"
        )
    try:
        model = FMNISTClassifier(**payload["arch"])
        model.load_state_dict(state)
    except (KeyError, TypeError, RuntimeError) as e:
        raise ClassifierCacheError(path, f"weights do not fit the network ({e})") from e
    model.eval().requires_grad_(False)
    return LoadedClassifier(
        model, path, payload["sha256"], float(payload["test_accuracy"]), dict(payload.get("train", {}))
    )


def load_classifier(
    path: str | os.PathLike | None = None,
    train_if_missing: bool = False,
    root: str = DEBIAN_ROOT,
    log: Callable[[str], None] | None = print,
) -> LoadedClassifier:
    """The classifier (default: the shipped file). ``train_if_missing`` (explicit opt-in, off by
    default) trains the full recipe into a missing file first, on an isolated RNG."""
    path = resolve_path(path)
    if not path.exists() and train_if_missing:
        if log:
            log(f"FMNIST classifier not found at {path}; training it once (a few CPU minutes).")
        model, accuracy, info = train_classifier(root=root, log=log)
        save_classifier(model, path, accuracy, info)
    return read_classifier(path)


# ----------------------------------------------------------------------------- training
@torch.no_grad()
def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1000) -> float:
    with eval_mode(model):
        correct = sum(
            int((model(x).argmax(1) == y).sum()) for x, y in zip(images.split(batch_size), labels.split(batch_size))
        )
    return correct / len(labels)


def train_classifier(
    root: str = DEBIAN_ROOT,
    epochs: int = 4,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 5e-4,
    seed: int = 0,
    limit: int | None = None,
    channels: tuple[int, ...] = DEFAULT_CHANNELS,
    test_limit: int | None = None,
    log: Callable[[str], None] | None = print,
) -> tuple[FMNISTClassifier, float, dict[str, Any]]:
    """Train on the train split (optionally its first ``limit`` images); return the network in
    eval mode, its test-split accuracy and a record of the recipe.

    AdamW with one-cycle LR and random horizontal flips (garments are roughly left-right symmetric).
    Runs on its own RNG: the caller's global RNG state is the same afterwards (a training run's noise
    must not depend on whether a classifier was trained in its process).
    """
    with torch.random.fork_rng(devices=[]):  # CPU training: the CPU RNG is the only one touched
        torch.manual_seed(seed)  # the network's initial weights
        return _train_classifier(root, epochs, batch_size, lr, weight_decay, seed, limit, channels, test_limit, log)


def _train_classifier(
    root: str,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    limit: int | None,
    channels: tuple[int, ...],
    test_limit: int | None,
    log: Callable[[str], None] | None,
) -> tuple[FMNISTClassifier, float, dict[str, Any]]:
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    train_x, train_y = _split(root, "train", limit)
    test_x, test_y = _split(root, "test", test_limit)
    model = FMNISTClassifier(channels)
    steps_per_epoch = max(1, len(train_x) // batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(train_x), generator=gen)
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            x, y = _flip_half(train_x[idx], gen), train_y[idx]
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if log:
            log(f"  epoch {epoch + 1}/{epochs}: loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)")
    model.eval().requires_grad_(False)
    test_acc = accuracy(model, test_x, test_y)
    info = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "seed": seed,
        "train_images": len(train_x),
        "test_images": len(test_x),
        "seconds": round(time.perf_counter() - start, 1),
        "threads": torch.get_num_threads(),
        "torch": str(torch.__version__),
    }  # str: TorchVersion is not loadable with weights_only
    return model, test_acc, info


def _split(root: str, split: str, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_fashion_mnist(root, split)
    if limit:
        images, labels = images[:limit], labels[:limit]
    return to_model_range(images.unsqueeze(1), IMAGE_SIZE), labels


def _flip_half(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


# ----------------------------------------------------------------------------- metric feature module
class FMNISTFeatureExtractor(nn.Module):
    """The classifier as a ``feature=`` module for torchmetrics' FrechetInceptionDistance,
    KernelInceptionDistance (``output="features"``) and InceptionScore (``output="logits"``).

    torchmetrics (1.9) hands custom modules the images untouched (its ``normalize`` flag only picks
    the dtype of a dummy input used when ``num_features`` is missing, and for InceptionScore it
    rescales floats to uint8, so leave ``normalize=False`` there). This module therefore accepts
    both uint8 [0, 255] and float [-1, 1] images and exposes ``num_features``. It never leaves eval
    mode, so BN statistics cannot drift while metrics are computed.
    """

    def __init__(self, classifier: FMNISTClassifier, output: str = "features", sha256: str | None = None) -> None:
        super().__init__()
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        self.classifier, self.output = classifier, output
        self.sha256 = sha256 or weights_sha256(classifier.state_dict())
        self.num_features = classifier.num_features if output == "features" else classifier.num_classes
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> FMNISTFeatureExtractor:
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        device = next(self.classifier.parameters()).device
        x = to_classifier_input(images).to(device)
        return self.classifier.features(x) if self.output == "features" else self.classifier(x)

    @torch.no_grad()
    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both outputs from one forward pass."""
        device = next(self.classifier.parameters()).device
        feats = self.classifier.features(to_classifier_input(images).to(device))
        return feats, self.classifier.head(feats)


def fmnist_feature_extractor(
    output: str = "features", path: str | os.PathLike | None = None, train_if_missing: bool = False
) -> FMNISTFeatureExtractor:
    """The classifier (default: the shipped file) wrapped for torchmetrics."""
    loaded = load_classifier(path, train_if_missing=train_if_missing)
    return FMNISTFeatureExtractor(loaded.model, output=output, sha256=loaded.sha256)


# ----------------------------------------------------------------------------- torch-fidelity
TORCH_FIDELITY_NAME = "slimgan-fmnist-classifier"


class TorchFidelityFMNISTExtractor(FeatureExtractorBase):
    """The classifier as a torch-fidelity feature extractor (uint8 inputs, like its Inception)::

        register_torch_fidelity_extractor()
        torch_fidelity.calculate_metrics(input1=..., input2=..., fid=True,
            feature_extractor=TORCH_FIDELITY_NAME, feature_extractor_weights_path=<classifier file>)

    Provides ``features`` (FID, KID, PRC) and ``logits`` (IS). An existing classifier file is
    required (it is not trained here).
    """

    def __init__(
        self, name: str, features_list: list[str], feature_extractor_weights_path: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(name, features_list)
        self.extractor = FMNISTFeatureExtractor(read_classifier(resolve_path(feature_extractor_weights_path)).model)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return OUTPUTS

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        return "logits" if metric == "isc" else "features"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 1, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if images.dtype != torch.uint8:
            raise ValueError(f"torch-fidelity feeds uint8 images, got {images.dtype}")
        feats, logits = self.extractor.features_and_logits(images)
        outputs = {"features": feats, "logits": logits}
        return tuple(outputs[name] for name in self.features_list)


def register_torch_fidelity_extractor() -> str:
    """Register :class:`TorchFidelityFMNISTExtractor` with torch-fidelity (idempotent); returns its name."""
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY, register_feature_extractor

    if TORCH_FIDELITY_NAME not in FEATURE_EXTRACTORS_REGISTRY:
        register_feature_extractor(TORCH_FIDELITY_NAME, TorchFidelityFMNISTExtractor)
    return TORCH_FIDELITY_NAME


# ----------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m slimgan_pl.metrics.fmnist_classifier",
        description="Train or inspect the FMNIST-FID/IS/KID classifier.",
    )
    parser.add_argument(
        "--train",
        action="store_true",
        help=f"train a new file and print its test accuracy (default output: "
        f"{TRAINED_DIR}/fmnist_classifier_v{VERSION}-<weights sha256[:12]>.pt)",
    )
    parser.add_argument(
        "--path",
        default=None,
        help=f"classifier file (default ${ENV_VAR} or the shipped "
        f"{SHIPPED_PATH.name}); with --train, where to write it",
    )
    parser.add_argument("--overwrite", action="store_true", help="with --train: replace an existing file")
    parser.add_argument("--root", default=DEBIAN_ROOT, help="Fashion-MNIST folder")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="train on the first N images only (smoke tests)")
    args = parser.parse_args(argv)
    if args.train:
        return _train_cli(args)
    path = resolve_path(args.path)
    try:
        loaded = read_classifier(path)
    except ClassifierCacheError as e:
        print(e, file=sys.stderr)
        return 1
    print(
        f"{path}: test accuracy {loaded.test_accuracy:.4f}, sha256 {loaded.sha256[:16]}..., "
        f"trained {loaded.train_info.get('epochs')} epochs in {loaded.train_info.get('seconds')} s"
    )
    return 0


def _train_cli(args: argparse.Namespace) -> int:
    target = Path(args.path).expanduser() if args.path else None
    if target is not None and target.exists() and not args.overwrite:  # before minutes of training
        print(
            f"FMNIST classifier file {target} already exists; not overwriting it (choose another --path "
            "or add --overwrite)",
            file=sys.stderr,
        )
        return 1
    print(f"Training the FMNIST classifier ({args.epochs} epochs, {torch.get_num_threads()} threads) ...")
    model, acc, info = train_classifier(root=args.root, epochs=args.epochs, seed=args.seed, limit=args.limit)
    if target is None:  # a new file named by its weights: never replaces a different network
        digest = weights_sha256(model.state_dict())
        target = TRAINED_DIR.expanduser() / f"fmnist_classifier_v{VERSION}-{digest[:12]}.pt"
    try:
        save_classifier(model, target, acc, info, overwrite=args.overwrite)
    except FileExistsError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"test accuracy {acc:.4f} ({acc * 100:.2f}%), trained in {info['seconds']:.0f} s; saved {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
