"""Sampling a (slimmable) generator: latents, class labels, eval-mode forwards.

Plain functions over a generator, shared by :class:`~slimgan_pl.module.SlimGAN` (training noise,
:meth:`~slimgan_pl.module.SlimGAN.sample`), the callbacks (sample grids, FID), ``slimgan-eval``,
``slimgan-sample`` and ``slimgan-export``, so that one seed gives the same latents everywhere. The
random draws are part of the contract: z first, then labels, from one stream (``rng``, or the global
RNG of the drawing device), so changing their order changes every sample of every seed.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """``module`` in eval mode inside; on exit every submodule gets back the train/eval flag it had
    (also when the body raises)."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def parameter_device(module: nn.Module) -> torch.device:
    """The device of ``module``'s first parameter (the CPU for a module without parameters)."""
    return next(module.parameters(), torch.empty(0)).device


def num_classes(generator: nn.Module) -> int:
    """Classes of a class-conditional generator; 0 when unconditional."""
    return int(getattr(generator, "num_classes", 0) or 0)


def noise(
    n: int,
    nz: int,
    rng: torch.Generator | None = None,
    truncation: float | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """z ~ N(0, I) of shape (n, nz) on ``device``, drawn on ``rng``'s device from ``rng`` (else on
    ``device`` from its global RNG); with ``truncation`` every entry with |z| > truncation is redrawn
    until none is left (BigGAN's truncation trick, as the paper defines it)."""
    draw_device = rng.device if rng is not None else device
    z = torch.randn(n, nz, generator=rng, device=draw_device)
    if truncation is not None:
        if not truncation > 0:
            raise ValueError(f"truncation must be > 0, got {truncation}")
        outside = z.abs() > truncation
        while outside.any():
            z[outside] = torch.randn(int(outside.sum()), generator=rng, device=draw_device)
            outside = z.abs() > truncation
    return z.to(device)


def random_labels(
    n: int, num_classes: int, rng: torch.Generator | None = None, device: torch.device | str | None = None
) -> torch.Tensor | None:
    """``n`` class ids drawn uniformly from [0, num_classes) on ``device`` (drawn like :func:`noise`),
    or None when ``num_classes`` is 0 (unconditional)."""
    if not num_classes:
        return None
    draw_device = rng.device if rng is not None else device
    return torch.randint(num_classes, (n,), generator=rng, device=draw_device).to(device)


def grid_labels(n: int, nrow: int, num_classes: int, device: torch.device | str | None = None) -> torch.Tensor | None:
    """Labels for an ``n``-image grid of ``nrow`` images per row (torchvision's ``nrow``) in which
    row r shows class ``r mod num_classes``; None when unconditional."""
    if not num_classes:
        return None
    if n < 1 or nrow < 1:
        raise ValueError(f"n and nrow must be >= 1, got n={n}, nrow={nrow}")
    return (torch.arange(n, device=device) // nrow) % num_classes


def check_labels(
    labels: torch.Tensor | Sequence[int], n: int, num_classes: int, device: torch.device | str | None = None
) -> torch.Tensor:
    """``labels`` as ``n`` int64 class ids on ``device``; a one-line ValueError for an unconditional
    model, a wrong shape or type, or ids outside [0, num_classes)."""
    if not num_classes:
        raise ValueError("labels given, but this model is unconditional (model.generator.num_classes=0)")
    y = torch.as_tensor(labels, device=device)
    if y.shape != (n,) or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise ValueError(f"labels must be {n} integer class ids, shape ({n},), got {tuple(y.shape)} {y.dtype}")
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise ValueError(
            f"labels must be class ids in [0, {num_classes - 1}], got values in [{int(y.min())}, {int(y.max())}]"
        )
    return y.long()


def latents(
    generator: nn.Module,
    n: int,
    labels: torch.Tensor | Sequence[int] | None = None,
    seed: int | None = None,
    truncation: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(z, y) for ``n`` images of ``generator``, on its device. Same seed, same z (drawn on the CPU
    from a generator seeded with ``seed``; without a seed from the global RNG of the generator's
    device). ``y``: the checked ``labels``; for a conditional generator without labels, uniform
    labels drawn from the same stream after z (so the same seed gives the same z with or without
    labels; with ``truncation`` the drawn y also depends on the threshold, as z's redraws come
    first); None for an unconditional one."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    device, classes = parameter_device(generator), num_classes(generator)
    y = check_labels(labels, n, classes, device) if labels is not None else None
    rng = torch.Generator().manual_seed(seed) if seed is not None else None
    z = noise(n, generator.nz, rng, truncation, device)
    if y is None:
        y = random_labels(n, classes, rng, device)
    return z, y


@torch.no_grad()
def generate(
    generator: nn.Module, z: torch.Tensor, width: float, y: torch.Tensor | None = None, batch_size: int = 500
) -> torch.Tensor:
    """``generator(z, width, y)`` in eval mode (the width's BN statistics; the train/eval flags are
    restored after), in batches of ``batch_size``, in fp32 even inside a mixed-precision region (e.g.
    a training step's callbacks)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    with eval_mode(generator), torch.autocast(z.device.type, enabled=False):
        out = [
            generator(z[i : i + batch_size], width=width, y=None if y is None else y[i : i + batch_size])
            for i in range(0, len(z), batch_size)
        ]
    return torch.cat(out)


@torch.no_grad()
def sample(
    generator: nn.Module,
    n: int,
    width: float,
    labels: torch.Tensor | Sequence[int] | None = None,
    seed: int | None = None,
    truncation: float | None = None,
    batch_size: int = 500,
) -> torch.Tensor:
    """``n`` images in [-1, 1], shape (n, C, H, W), from ``generator`` at ``width`` (a trained width)
    in eval mode, from :func:`latents` (same seed, same z at every width); nothing in the generator
    changes. Unconditional generators refuse ``labels``."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    generator.check_width(width)
    z, y = latents(generator, n, labels, seed, truncation)
    return generate(generator, z, width, y, batch_size)
