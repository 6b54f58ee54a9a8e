"""One model, one set of BN statistics: the generator that every sampler of a trained SlimGAN uses.

``slimgan-eval``, ``slimgan-sample``, ``slimgan-export`` and (through :meth:`SlimGAN.standing_statistics`)
the sample grids and the FID callback all normalise with the statistics prepared here, so the same
checkpoint, width and z give the same images everywhere:

* the EMA generator of a run with ``ema.standing_batches`` > 0: standing statistics
  (:func:`recompute_standing_statistics` with the fixed seed :data:`STANDING_SEED`), baked into its
  BN buffers;
* otherwise (no EMA, ``ema.standing_batches=0``, or ``--weights live``): the generator's own running
  statistics, unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from slimgan_pl.choices import WEIGHTS  # defined without torch, for the tools' --help
from slimgan_pl.ema import converge_spectral_norms
from slimgan_pl.nn import local_batch_statistics
from slimgan_pl.sampling import eval_mode, noise, num_classes, parameter_device, random_labels

if TYPE_CHECKING:  # module.py imports this file
    from slimgan_pl.models import SlimmableGenerator
    from slimgan_pl.module import SlimGAN

STANDING_SEED = 0  # fixed: the statistics are part of the model, not of a sampling seed


@torch.no_grad()
def recompute_standing_statistics(
    generator: SlimmableGenerator, widths: list[float], n_batches: int, batch_size: int, seed: int = STANDING_SEED
) -> None:
    """Standing statistics (BigGAN), in place: reset every BN of ``generator``, then for each width in
    turn run ``n_batches`` batches of ``batch_size`` latents (and uniform labels when conditional),
    all drawn from one stream seeded with ``seed``, with the BNs in train mode and cumulative
    averaging (running stats = mean of the per-batch statistics); everything else stays in eval mode
    (spectral norm does no power iteration). Each width touches only its own BNs. The generator is
    left in eval mode. The same generator weights, widths and settings give the same statistics."""
    if n_batches < 1 or batch_size < 2:
        raise ValueError(f"standing statistics need >= 1 batch of >= 2 images, got {n_batches} x {batch_size}")
    bns = [m for m in generator.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in bns]
    device, classes = parameter_device(generator), num_classes(generator)
    rng = torch.Generator().manual_seed(seed)
    generator.eval()
    try:
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
            bn.train()
        # Local BN statistics (no collective even with cross-replica BN): the seeded batches give every
        # rank the same statistics anyway, and evaluation runs this on rank 0 alone.
        with local_batch_statistics():
            for w in widths:
                for _ in range(n_batches):
                    # drawn as every sampler draws them: z first, then labels, on the CPU stream
                    z = noise(batch_size, generator.nz, rng, device=device)
                    generator(z, width=w, y=random_labels(batch_size, classes, rng, device))
    finally:
        for bn, momentum in zip(bns, momenta):
            bn.momentum = momentum
        generator.eval()


@contextmanager
def standing_statistics(
    generator: SlimmableGenerator, widths: list[float], n_batches: int, batch_size: int, seed: int = STANDING_SEED
) -> Iterator[SlimmableGenerator]:
    """Inside: ``generator`` with standing statistics (:func:`recompute_standing_statistics`), in eval
    mode; after: its buffers and train/eval flags are restored (e.g. a model in training goes on
    unchanged)."""
    saved = {name: buf.clone() for name, buf in generator.named_buffers()}
    with eval_mode(generator):
        try:
            recompute_standing_statistics(generator, widths, n_batches, batch_size, seed)
            yield generator
        finally:
            with torch.no_grad():
                for name, buf in generator.named_buffers():
                    buf.copy_(saved[name])


def select_generator(model: SlimGAN, weights: str = "auto") -> tuple[SlimmableGenerator, str]:
    """(generator, "ema" | "live"): ``auto`` takes the EMA generator when the checkpoint has one."""
    if weights not in WEIGHTS:
        raise ValueError(f"--weights must be one of {list(WEIGHTS)}, got {weights!r}")
    ema = getattr(model, "generator_ema", None)
    if weights == "ema" and ema is None:
        raise ValueError("--weights ema: this checkpoint has no EMA generator (generator_ema); use --weights live")
    if weights == "live" or ema is None:
        return model.generator, "live"
    return ema, "ema"


def bn_statistics(model: SlimGAN, used_weights: str) -> dict[str, Any]:
    """Which BN statistics the ``used_weights`` generator samples with: ``{"weights", "bn_statistics":
    "standing" | "running"}``, plus ``standing`` (batches per width, batch size, seed) when standing."""
    hp = model.hparams
    if used_weights == "ema" and hp.get("ema_standing_batches", 0) > 0:
        return {
            "weights": used_weights,
            "bn_statistics": "standing",
            "standing": {
                "batches_per_width": int(hp.ema_standing_batches),
                "batch_size": int(hp.ema_standing_batch_size),
                "seed": STANDING_SEED,
            },
        }
    return {"weights": used_weights, "bn_statistics": "running"}


def prepare_sampling_generator(model: SlimGAN, weights: str = "auto") -> tuple[SlimmableGenerator, dict[str, Any]]:
    """The generator that samples, evaluates and exports ``model`` (EMA or live, see ``weights``), in
    eval mode with the BN statistics the run prescribes baked into its buffers (standing statistics
    for an EMA generator of a run with ``ema.standing_batches`` > 0, recomputed in place; else its
    running statistics; an EMA generator's spectral norms are converged first); and the record of
    what was used (:func:`bn_statistics`), for metrics.json and export metadata. Changes that
    generator's buffers: meant for a loaded checkpoint (during training use
    :meth:`SlimGAN.standing_statistics`, which restores them)."""
    generator, used = select_generator(model, weights)
    record = bn_statistics(model, used)
    if used == "ema":
        # Checkpoints written before the EMA kept spectral norm consistent hold averaged u/v (norm < 1):
        # recompute them for the EMA weights (already converged ones take a single iteration).
        converge_spectral_norms(generator)
    if record["bn_statistics"] == "standing":
        standing = record["standing"]
        recompute_standing_statistics(
            generator, list(generator.widths), standing["batches_per_width"], standing["batch_size"], standing["seed"]
        )
    return generator.eval(), record
