"""Inception-v3 (torch-fidelity's port of the TF FID network) from a local weights file.

Offline machines and clusters cannot download the weights, so the file is found, in order, at:
the ``weights_path`` argument (``--inception-weights``), ``$SLIMGAN_INCEPTION_WEIGHTS``, or
torch-fidelity's own download cache (``<torch hub dir>/checkpoints/weights-inception-2015-12-05-6726825d.pth``).
When none exists, :class:`InceptionWeightsError` says (in one line) where to put which file and how
to fetch it on a connected machine; a download is tried only with ``allow_download=True``.

Images reach the network as uint8 RGB and are resized to 299px inside torch-fidelity's module by its
TF1-compatible bilinear interpolation (no antialiasing), so the numbers are torch-fidelity's and
the TF reference's (``tests/test_inception_eval.py`` checks them against ``calculate_metrics``).

The modules returned here plug into torchmetrics as ``feature=``: ``FrechetInceptionDistance`` /
``KernelInceptionDistance`` take the 2048-d pool3 features, ``InceptionScore`` the 1008 unbiased
logits (the FID/IS convention of torch-fidelity and the TF reference). Numbers are Inception-FID/IS
only with the official weights (``official_weights``); any other file (e.g. the random-valued one
in the tests) gives numbers that must not be reported as FID.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn
from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

ENV_VAR = "SLIMGAN_INCEPTION_WEIGHTS"
WEIGHTS_FILENAME = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{WEIGHTS_FILENAME}"
# torch.hub names downloaded files <name>-<first hex digits of their sha256>.<ext>.
OFFICIAL_SHA256_PREFIX = "6726825d"
FEATURE_LAYERS = ("2048", "logits_unbiased")


class InceptionWeightsError(FileNotFoundError):
    """The Inception-v3 weights file is missing or unreadable; the message says where to put it."""


def torch_fidelity_cache_path() -> Path:
    """Where torch-fidelity's download (``torch.hub.load_state_dict_from_url``) stores the weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def _where_to_put_it() -> str:
    return (
        f"Put {WEIGHTS_FILENAME} at {torch_fidelity_cache_path()} (torch-fidelity's cache), or anywhere with "
        f"--inception-weights PATH / ${ENV_VAR}=PATH; get it on a machine with network access with "
        f"'wget {WEIGHTS_URL}' (or python -c \"import torch; torch.hub.download_url_to_file('{WEIGHTS_URL}', "
        f"'{WEIGHTS_FILENAME}')\") and copy it over."
    )


def resolve_inception_weights(weights_path: str | os.PathLike | None = None, allow_download: bool = False) -> Path:
    """Path of a local Inception weights file (see the module docstring for the search order)."""
    explicit = weights_path if weights_path is not None else os.environ.get(ENV_VAR) or None
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            source = "--inception-weights" if weights_path is not None else f"${ENV_VAR}"
            raise InceptionWeightsError(
                f"Inception-v3 weights file {path} (from {source}) does not exist. " + _where_to_put_it()
            )
        return path
    cached = torch_fidelity_cache_path()
    if cached.is_file():
        return cached
    if allow_download:
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            torch.hub.download_url_to_file(WEIGHTS_URL, str(cached), hash_prefix=OFFICIAL_SHA256_PREFIX, progress=False)
            return cached
        except Exception as e:  # no network, proxy, hash mismatch ...
            raise InceptionWeightsError(
                f"Inception-v3 weights not found and the download failed "
                f"({type(e).__name__}: {e}). " + _where_to_put_it()
            ) from e
    raise InceptionWeightsError(
        "Inception-v3 weights not found (no --inception-weights, no "
        f"${ENV_VAR}, nothing at {cached}). " + _where_to_put_it()
    )


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _check_state_dict(path: Path) -> None:
    """Read the file with ``weights_only=True`` first: a clear error for corrupt files, and no
    arbitrary unpickling (torch-fidelity itself loads with ``weights_only=False``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InceptionWeightsError(
            f"Inception-v3 weights file {path} cannot be read "
            f"({type(e).__name__}: {_one_line(e)}). " + _where_to_put_it()
        ) from e
    if not isinstance(state, dict) or "fc.weight" not in state:
        raise InceptionWeightsError(
            f"{path} is not a torch-fidelity Inception-v3 state dict "
            f"(format of {WEIGHTS_FILENAME}). " + _where_to_put_it()
        )


def _one_line(error: Exception, limit: int = 300) -> str:
    return " ".join(str(error).split())[:limit]


class InceptionV3(nn.Module):
    """torch-fidelity's ``FeatureExtractorInceptionV3`` (TF1-compatible resize to 299, uint8 input)
    loaded from a local file, computing pool3 features and unbiased logits in one pass."""

    num_features = 2048  # pool3
    num_classes = 1008  # unbiased logits (IS)

    def __init__(self, weights_path: str | os.PathLike | None = None, allow_download: bool = False) -> None:
        super().__init__()
        path = resolve_inception_weights(weights_path, allow_download)
        _check_state_dict(path)
        try:
            self.net = FeatureExtractorInceptionV3(
                "inception-v3-compat", list(FEATURE_LAYERS), feature_extractor_weights_path=str(path)
            )
        except RuntimeError as e:  # wrong keys or shapes
            raise InceptionWeightsError(
                f"Inception-v3 weights file {path} does not fit the network ({_one_line(e)}). " + _where_to_put_it()
            ) from e
        self.weights_path = path
        self.sha256 = file_sha256(path)
        self.official_weights = self.sha256.startswith(OFFICIAL_SHA256_PREFIX)

    def train(self, mode: bool = True) -> InceptionV3:
        return super().train(False)  # a metric network never trains (BN statistics stay fixed)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(pool3 features [N, 2048], unbiased logits [N, 1008])."""
        device = next(self.net.parameters()).device
        feats, logits = self.net(to_inception_input(images).to(device))
        return feats, logits

    def features_and_logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Same as calling the module: the interface the evaluation's backbones share."""
        return self(images)

    def describe(self) -> dict[str, object]:
        """The ``extractor`` entry of metrics.json."""
        return {
            "name": "inception_v3_torch_fidelity",
            "path": str(self.weights_path),
            "sha256": self.sha256,
            "official_weights": self.official_weights,
            "resize": "TF1-compatible bilinear to 299 (no antialias)",
        }


def to_inception_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [-1, 1] images with 1 or 3 channels -> uint8 RGB (gray is repeated)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"expected images (N, 1|3, H, W), got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        images = ((images.float() + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8)  # round, like save_image
    return images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images


class InceptionOutput(nn.Module):
    """One output of a shared :class:`InceptionV3`, as a torchmetrics ``feature=`` module."""

    def __init__(self, inception: InceptionV3, output: str) -> None:
        super().__init__()
        if output not in FEATURE_LAYERS:
            raise ValueError(f"output must be one of {FEATURE_LAYERS}, got {output!r}")
        self.inception, self.index = inception, FEATURE_LAYERS.index(output)
        self.num_features = 2048 if output == "2048" else 1008

    def train(self, mode: bool = True) -> InceptionOutput:
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.inception(images)[self.index]


def inception_feature_modules(
    weights_path: str | os.PathLike | None = None, allow_download: bool = False
) -> tuple[InceptionOutput, InceptionOutput]:
    """(pool3 module for FID/KID, logits module for IS), sharing one network."""
    net = InceptionV3(weights_path, allow_download)
    return InceptionOutput(net, "2048"), InceptionOutput(net, "logits_unbiased")


def inception_metrics(
    weights_path: str | os.PathLike | None = None,
    allow_download: bool = False,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
) -> dict[str, nn.Module]:
    """torchmetrics FID, KID and IS on the local Inception weights. Feed uint8 [0, 255] or float
    [-1, 1] images (``normalize`` stays False: the modules convert inputs themselves)."""
    from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance

    pool3, logits = inception_feature_modules(weights_path, allow_download)
    return {
        "fid": FrechetInceptionDistance(feature=pool3),
        "kid": KernelInceptionDistance(feature=pool3, subset_size=kid_subset_size),
        "is": InceptionScore(feature=logits, splits=is_splits),
    }
