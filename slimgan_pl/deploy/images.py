"""Images from a SlimGAN checkpoint at one width: the library of ``slimgan-sample`` (its command line is
:mod:`slimgan_pl.deploy.sample`, which also exports every name of this module).

Outputs (any combination, at least one): ``--grid samples.png`` (torchvision grid), ``--folder DIR``
(one PNG per image), ``--npz samples.npz`` (``images`` uint8 (N, H, W, C), ``labels`` int64 (N,)
with -1 for unconditional models, ``width``, ``seed``, ``truncation`` (NaN if none), ``weights``,
``bn_statistics``). The generator normalises with the BN statistics ``slimgan-eval`` and
``slimgan-export`` use (standing statistics of the EMA generator when the run uses them; see
:mod:`slimgan_pl.inference`), so the same z gives the same images in all three tools.
The same checkpoint, seed, width, truncation and weights give the same images; the same seed gives
the same latents at every width, as :meth:`SlimGAN.sample`. Class-conditional models take
``--labels``/``--class-id``, or draw uniform labels from the seeded stream when neither is given.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.utils import save_image

from slimgan_pl import sampling
from slimgan_pl.checkpoint import load_slimgan
from slimgan_pl.deploy.common import prepare_sampling_generator
from slimgan_pl.models import SlimmableGenerator
from slimgan_pl.universal import calibrate_model, calibrated_record


# ----------------------------------------------------------------------------- labels
def parse_labels(labels: str | None, class_id: int | None, n: int) -> torch.Tensor | None:
    """``--labels 0,1,2`` (repeated cyclically to ``n`` images) or ``--class-id K`` (all images) -> (n,) int64."""
    if labels is not None and class_id is not None:
        raise ValueError("give either --labels or --class-id, not both")
    if class_id is not None:
        return torch.full((n,), class_id, dtype=torch.long)
    if labels is None:
        return None
    try:
        ids = [int(s) for s in labels.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--labels must be comma-separated class ids such as 0,1,2, got {labels!r}") from None
    if not ids:
        raise ValueError(f"--labels must list at least one class id, got {labels!r}")
    return torch.tensor(ids, dtype=torch.long).repeat(math.ceil(n / len(ids)))[:n]


def check_labels(generator: SlimmableGenerator, arch: str, labels: torch.Tensor | None) -> None:
    """Unconditional generators refuse labels; conditional ones need class ids in range (or none:
    then :func:`generate` draws them)."""
    k = sampling.num_classes(generator)
    if labels is None:
        return
    if not k:
        raise ValueError(f"--labels/--class-id given, but this {arch} generator is unconditional")
    bad = sorted({int(y) for y in labels if not 0 <= int(y) < k})
    if bad:
        raise ValueError(f"class ids must be in [0, {k - 1}], got {bad}")


# ----------------------------------------------------------------------------- generation
def generate(
    generator: SlimmableGenerator,
    n: int,
    width: float,
    labels: torch.Tensor | None = None,
    seed: int | None = None,
    truncation: float | None = None,
    batch_size: int = 500,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(images in [-1, 1], class labels or None) from ``generator`` (the live or the EMA one) at
    ``width``, eval mode, with the latents :meth:`SlimGAN.sample` draws for the same seed and
    truncation (:func:`slimgan_pl.sampling.latents`); a conditional model without ``labels`` gets
    uniform labels from the same seeded stream after z."""
    if n < 1:
        raise ValueError(f"-n must be >= 1, got {n}")
    if batch_size < 1:
        raise ValueError(f"--batch-size must be >= 1, got {batch_size}")
    generator.check_width(width)
    z, y = sampling.latents(generator, n, labels, seed, truncation)
    return sampling.generate(generator, z, width, y, batch_size), None if y is None else y.cpu()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float (N, C, H, W) -> uint8 (N, C, H, W), rounding to nearest."""
    return ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


# ----------------------------------------------------------------------------- outputs
def write_grid(images: torch.Tensor, path: Path, nrow: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nrow = nrow or math.ceil(math.sqrt(len(images)))
    save_image(images.float().cpu(), path, nrow=nrow, normalize=True, value_range=(-1, 1))
    return path


def write_folder(images_u8: torch.Tensor, folder: Path, labels: torch.Tensor | None = None) -> list[Path]:
    """One PNG per image: ``00000.png``, ... (``00000_c3.png`` with class labels)."""
    folder.mkdir(parents=True, exist_ok=True)
    arrays = images_u8.permute(0, 2, 3, 1).numpy()
    paths = []
    for i, arr in enumerate(arrays):
        suffix = f"_c{int(labels[i])}" if labels is not None else ""
        path = folder / f"{i:05d}{suffix}.png"
        Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr).save(path)
        paths.append(path)
    return paths


def write_npz(
    path: Path,
    images_u8: torch.Tensor,
    labels: torch.Tensor | None,
    width: float,
    seed: int | None,
    truncation: float | None,
    weights: str,
    bn_statistics: str = "running",
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(images_u8)
    np.savez_compressed(
        path,
        images=images_u8.permute(0, 2, 3, 1).numpy(),  # NHWC, the usual layout of sample archives
        labels=(labels.numpy() if labels is not None else np.full(n, -1)).astype(np.int64),
        width=np.float64(width),
        seed=np.int64(-1 if seed is None else seed),
        truncation=np.float64(np.nan if truncation is None else truncation),
        weights=np.str_(weights),
        bn_statistics=np.str_(bn_statistics),
    )
    return path


# ----------------------------------------------------------------------------- main entry
def sample_images(
    checkpoint: str | os.PathLike,
    n: int = 64,
    width: float | None = None,
    labels: torch.Tensor | None = None,
    seed: int | None = 0,
    truncation: float | None = None,
    weights: str = "auto",
    batch_size: int = 500,
    device: str = "cpu",
) -> tuple[torch.Tensor, torch.Tensor | None, float, dict[str, Any]]:
    """(images in [-1, 1], labels or None, width, statistics record) of a checkpoint, from the
    generator with the BN statistics that ``slimgan-eval`` and ``slimgan-export`` use
    (:func:`slimgan_pl.inference.prepare_sampling_generator`). ``width=None``: the widest."""
    model = load_slimgan(checkpoint, map_location=device)
    generator, statistics = prepare_sampling_generator(model, weights)
    width = float(model.widths[-1] if width is None else width)
    generator.check_width(width)  # refuses untrained widths with the list of trained ones
    # universal models (slim.mode=universal): this width's calibrated BN statistics
    statistics = {**calibrated_record(model, statistics), "notes": calibrate_model(model, [width], generator=generator)}
    check_labels(generator, model.hparams.generator["arch"], labels)
    images, labels = generate(generator, n, width, labels, seed, truncation, batch_size)
    return images, labels, width, statistics


def sample_checkpoint(
    checkpoint: str | os.PathLike,
    n: int = 64,
    width: float | None = None,
    labels: torch.Tensor | None = None,
    seed: int | None = 0,
    truncation: float | None = None,
    weights: str = "auto",
    grid: str | os.PathLike | None = None,
    folder: str | os.PathLike | None = None,
    npz: str | os.PathLike | None = None,
    nrow: int | None = None,
    batch_size: int = 500,
    device: str = "cpu",
) -> dict[str, Any]:
    """Load, generate, write the requested outputs; returns a summary (paths, width, weights, ...).
    ``width=None`` takes the widest trained width."""
    if grid is None and folder is None and npz is None:
        raise ValueError("give at least one output: --grid PATH.png, --folder DIR or --npz PATH.npz")
    images, labels, width, statistics = sample_images(
        checkpoint, n, width, labels, seed, truncation, weights, batch_size, device
    )
    used = statistics["weights"]
    images_u8 = to_uint8(images)
    summary: dict[str, Any] = {
        "n": n,
        "width": width,
        "seed": seed,
        "truncation": truncation,
        "weights": used,
        "bn_statistics": statistics["bn_statistics"],
        "shape": list(images.shape),
        "notes": statistics.get("notes", []),  # universal models: "same network as width ..."
        "outputs": [],
    }
    if grid is not None:
        summary["outputs"].append(str(write_grid(images, Path(grid), nrow)))
    if folder is not None:
        write_folder(images_u8, Path(folder), labels)
        summary["outputs"].append(str(folder))
    if npz is not None:
        summary["outputs"].append(
            str(write_npz(Path(npz), images_u8, labels, width, seed, truncation, used, statistics["bn_statistics"]))
        )
    return summary
