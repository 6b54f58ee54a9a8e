"""Universally slimmable SlimGAN (``slim.mode=universal``): one generator that runs at ANY width in
``slim.range = [w_min, 1.0]``, not only at the trained list (issue 17).

* Generator: the usual slimmable generator with every switchable BN replaced by a
  :class:`~slimgan_pl.nn.universal.UniversalBatchNorm2d` (one sliced affine, batch statistics while
  training) and its width check opened to the range (:func:`make_universal`).
* Training (the sandwich rule of universally slimmable networks): every iteration draws its widths,
  ``w_min``, ``1.0`` and ``slim.n_random`` uniform ones in between (:class:`WidthSampler`, its own
  seeded stream per rank, saved in checkpoints); the G step distils stepwise between consecutive
  sampled widths.
* Discriminator: the SlimGAN multi-width D over the anchor widths ``slim.widths``; a sampled width
  is scored by the head of the nearest anchor (:func:`nearest_anchor`, :func:`score_routed`).
* Inference: BN statistics per requested width, calibrated from generated batches with the
  standing-statistics code (:func:`calibrate`), cached in the BN layers and saved with the checkpoint.
* Granularity: a width is realised as whole channels (:func:`slimgan_pl.nn.slim_channels`); widths
  with the same channel counts in every layer are the same network (:func:`channel_signature`).

``python -m slimgan_pl.universal CKPT --widths 0.3 0.4`` calibrates widths and saves the checkpoint
with their statistics (``--out`` to write a copy).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from slimgan_pl.cli import cli_main
from slimgan_pl.inference import STANDING_SEED, recompute_standing_statistics
from slimgan_pl.nn.conditional import SwitchableConditionalBatchNorm2d
from slimgan_pl.nn.slimmable import SwitchableBatchNorm2d, slim_channels
from slimgan_pl.nn.universal import UniversalBatchNorm2d, width_key

SLIM_MODES = ("fixed", "universal")
CHECKPOINT_KEY_STATS = "universal_bn_statistics"  # {generator attr: {bn name: {width key: (mean, var)}}}
CHECKPOINT_KEY_RNG = "width_rng_states"  # one torch.Generator state (uint8 tensor) per rank


# ----------------------------------------------------------------------------- settings
def check_mode(mode: str) -> str:
    if mode not in SLIM_MODES:
        raise ValueError(f"slim.mode must be one of {list(SLIM_MODES)}, got {mode!r}")
    return mode


def check_range(width_range: Sequence[float] | None, anchors: Sequence[float]) -> tuple[float, float]:
    """``slim.range`` = [w_min, 1.0] with 0 < w_min < 1, holding every anchor width (``slim.widths``)."""
    try:
        w_min, w_max = (float(w) for w in width_range)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise ValueError(f"slim.range must be two numbers [w_min, 1.0], got {width_range!r}") from None
    if not 0.0 < w_min < 1.0 or w_max != 1.0:
        raise ValueError(f"slim.range must be [w_min, 1.0] with 0 < w_min < 1, got {[w_min, w_max]}")
    outside = [w for w in anchors if not w_min - 1e-9 <= w <= 1.0]
    if outside or abs(anchors[-1] - 1.0) > 1e-9:
        raise ValueError(
            f"slim.widths (the discriminator's anchor widths in universal mode) must lie in slim.range "
            f"{[w_min, w_max]} and end at 1.0, got {list(anchors)}"
        )
    return w_min, w_max


def check_n_random(n_random: Any) -> int:
    if isinstance(n_random, bool) or not isinstance(n_random, int) or n_random < 0:
        raise ValueError(f"slim.n_random must be an integer >= 0, got {n_random!r}")
    return n_random


def check_universal_settings(
    mode: str,
    width_range: Sequence[float] | None,
    n_random: Any,
    calibration_batches: Any,
    calibration_batch_size: Any,
    anchors: Sequence[float],
    **others: Any,
) -> tuple[float, float] | None:
    """One-line errors for the universal-mode settings (``slim.*``), and the settings universal mode
    does not support (``others``: baseline, sync_bn, compile_networks, ema_standing_batches); returns
    (w_min, 1.0), or None in fixed mode."""
    if check_mode(mode) == "fixed":
        return None
    width_range = check_range(width_range, anchors)
    check_n_random(n_random)
    for key, value, low in (
        ("slim.calibration_batches", calibration_batches, 1),
        ("slim.calibration_batch_size", calibration_batch_size, 2),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
    unsupported = {
        "model.baseline.g_width": others.get("baseline"),
        "model.sync_bn": others.get("sync_bn"),
        "model.compile": others.get("compile_networks"),
        "ema.standing_batches": others.get("ema_standing_batches"),
    }
    for key, value in unsupported.items():
        if value:
            raise ValueError(
                f"slim.mode=universal does not support {key}={value!r} (universal BN uses batch statistics in "
                "training and calibrated ones after it: slim.calibration_batches)"
            )
    return width_range


# ----------------------------------------------------------------------------- generator
def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, attr, module)


def make_universal(generator: nn.Module, width_range: tuple[float, float]) -> nn.Module:
    """In place: every switchable BN (also inside sliceable / projected conditional BNs) becomes a
    :class:`UniversalBatchNorm2d` of the full channel count (same affine setting), and the generator
    accepts any width in ``width_range``. Returns ``generator``."""
    if any(isinstance(m, SwitchableConditionalBatchNorm2d) for m in generator.modules()):
        raise ValueError(
            "slim.mode=universal needs model.generator.cond_norm=scbn (switchable conditional BN keeps a "
            "private class embedding per trained width)"
        )
    for name, module in list(generator.named_modules()):
        if isinstance(module, SwitchableBatchNorm2d):
            affine = module.bns[0].affine
            _set_submodule(generator, name, UniversalBatchNorm2d(module.num_features, affine=affine))
    leftover = [n for n, m in generator.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if leftover:
        raise ValueError(f"slim.mode=universal: generator BN layers {leftover} are not slimmable")
    if not hasattr(generator, "width_range"):
        raise ValueError("slim.mode=universal needs a slimmable generator (not model.baseline)")
    generator.width_range = (float(width_range[0]), float(width_range[1]))
    return generator


def is_universal(generator: nn.Module) -> bool:
    return getattr(generator, "width_range", None) is not None


def universal_norms(generator: nn.Module) -> list[tuple[str, UniversalBatchNorm2d]]:
    return [(n, m) for n, m in generator.named_modules() if isinstance(m, UniversalBatchNorm2d)]


def channel_signature(generator: nn.Module, width: float) -> tuple[int, ...]:
    """Active channel counts of every slimmable layer and BN at ``width``: equal signatures = the same
    network (same weights, same channels; their calibrated statistics are shared)."""
    counts: list[int] = []
    for m in generator.modules():
        if isinstance(m, UniversalBatchNorm2d):
            counts.append(slim_channels(m.num_features, width))
        elif hasattr(m, "active") and callable(m.active):
            counts.extend(m.active(width))
    return tuple(counts)


def distinct_widths(generator: nn.Module, widths: Sequence[float]) -> tuple[list[float], list[str]]:
    """(widths with distinct channel signatures, in the given order; one note per width that is the
    same network as an earlier one)."""
    seen: dict[tuple[int, ...], float] = {}
    kept, notes = [], []
    for w in widths:
        sig = channel_signature(generator, w)
        if sig in seen:
            notes.append(
                f"width {w} gives the same channel counts as width {seen[sig]}: the same network (same outputs)"
            )
        else:
            seen[sig] = w
            kept.append(w)
    return kept, notes


def channel_grid(generator: nn.Module, step: float = 0.05) -> list[float]:
    """Candidate widths of a universal generator for ``slimgan-pick``: ``w_min``, then every ``step``
    up to 1.0, one per distinct channel signature (the narrowest width giving it)."""
    w_min, w_max = generator.width_range
    grid = sorted({round(w, 6) for w in np.arange(w_min, w_max + 1e-9, step)} | {w_min, w_max})
    return distinct_widths(generator, grid)[0]


# ----------------------------------------------------------------------------- calibration
def clear_statistics(generator: nn.Module) -> None:
    """Forget every calibrated width (after a weight update they no longer match the weights)."""
    for _, bn in universal_norms(generator):
        bn.statistics.clear()


def calibrated_widths(generator: nn.Module) -> list[str]:
    norms = universal_norms(generator)
    return sorted(norms[0][1].statistics) if norms else []


@torch.no_grad()
def calibrate(
    generator: nn.Module,
    widths: Sequence[float],
    n_batches: int,
    batch_size: int,
    seed: int = STANDING_SEED,
    force: bool = False,
) -> list[str]:
    """Eval-mode BN statistics of ``generator`` (universal) at each of ``widths``, cached in its BN
    layers: the standing statistics of :func:`slimgan_pl.inference.recompute_standing_statistics`
    (cumulative average over ``n_batches`` generated batches), each width on its own stream seeded
    with ``seed`` (a width's statistics do not depend on which other widths are calibrated). A width
    already cached is kept unless ``force``; one with the channel counts of a calibrated width shares
    its statistics (same network). Returns the notes on such shared widths. Leaves eval mode."""
    for w in widths:
        generator.check_width(w)
    norms = [bn for _, bn in universal_norms(generator)]
    notes: list[str] = []
    by_signature = {channel_signature(generator, float(k)): k for k in calibrated_widths(generator)}
    try:
        for w in widths:
            key = width_key(w)
            if key in norms[0].statistics and not force:
                continue
            sig = channel_signature(generator, w)
            twin = by_signature.get(sig)
            if twin is not None and twin != key and not force:
                notes.append(f"width {w} gives the same channel counts as width {twin}: the same network")
                for bn in norms:
                    bn.statistics[key] = bn.statistics[twin]
                continue
            for bn in norms:
                c = slim_channels(bn.num_features, w)
                bn.calibrating = nn.BatchNorm2d(c, affine=False, eps=bn.eps).to(bn_device(generator))
            recompute_standing_statistics(generator, [w], n_batches, batch_size, seed)
            for bn in norms:
                bn.statistics[key] = (bn.calibrating.running_mean.clone(), bn.calibrating.running_var.clone())
            by_signature[sig] = key
    finally:
        for bn in norms:
            bn.calibrating = None
    return notes


def bn_device(generator: nn.Module) -> torch.device:
    return next(generator.parameters()).device


def statistics_state(generator: nn.Module) -> dict[str, dict[str, tuple[torch.Tensor, torch.Tensor]]]:
    """{BN name: {width key: (mean, var)}} on the CPU (checkpoint content; ``weights_only`` loads it)."""
    return {
        name: {k: (m.detach().cpu(), v.detach().cpu()) for k, (m, v) in bn.statistics.items()}
        for name, bn in universal_norms(generator)
    }


def model_statistics_state(model: nn.Module) -> dict[str, Any]:
    """Checkpoint entry :data:`CHECKPOINT_KEY_STATS` of a SlimGAN: the live and (if any) EMA generator's."""
    return {
        attr: statistics_state(getattr(model, attr))
        for attr in ("generator", "generator_ema")
        if getattr(model, attr, None) is not None
    }


def load_model_statistics_state(model: nn.Module, state: dict[str, Any] | None) -> None:
    for attr, generator_state in (state or {}).items():
        if getattr(model, attr, None) is not None:
            load_statistics_state(getattr(model, attr), generator_state)


def load_statistics_state(generator: nn.Module, state: dict[str, dict[str, Any]]) -> None:
    for name, bn in universal_norms(generator):
        bn.statistics = {k: (mv[0], mv[1]) for k, mv in state.get(name, {}).items()}


# ----------------------------------------------------------------------------- training
def width_seed(seed: int, step: int) -> int:
    """Seed of the width stream of a run seeded with ``seed`` starting at optimizer step ``step``
    (independent of the noise streams: its own entropy word). The same on every rank: the gradient
    averaging of :class:`~slimgan_pl.distributed.GANDDPStrategy` needs every rank to use the same D
    heads, so all ranks draw the same widths (their z and labels still differ per rank)."""
    entropy = [int(seed) % 2**64, int(step), 17]
    return int(np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0] >> 1)


class WidthSampler:
    """The widths of one training iteration (sandwich rule): ``w_min``, ``n_random`` widths uniform in
    (w_min, 1.0) and ``1.0``, narrowest first, drawn from this process's own CPU generator (the
    global RNG streams are not touched, so the training noise is the same as without it)."""

    def __init__(self, width_range: tuple[float, float], n_random: int, seed: int) -> None:
        self.w_min, self.w_max = width_range
        self.n_random = n_random
        self.rng = torch.Generator().manual_seed(seed)

    def __call__(self) -> list[float]:
        draws = torch.rand(self.n_random, generator=self.rng, dtype=torch.float64)
        randoms = (self.w_min + draws * (self.w_max - self.w_min)).tolist()
        return [self.w_min, *sorted(randoms), self.w_max]

    def state(self) -> torch.Tensor:
        return self.rng.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        self.rng.set_state(state)


def gather_width_states(sampler: WidthSampler) -> list[torch.Tensor]:
    """Every rank's sampler state, indexed by global rank (collective under DDP)."""
    mine = sampler.state()
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, mine)
        return [torch.as_tensor(s) for s in states]
    return [mine]


def nearest_anchor(anchors: Sequence[float], width: float) -> int:
    """Index of the anchor width closest to ``width`` (a tie goes to the wider anchor)."""
    return min(range(len(anchors)), key=lambda i: (abs(anchors[i] - width), -anchors[i]))


def score_routed(
    discriminator: nn.Module,
    fakes: Sequence[torch.Tensor],
    heads: Sequence[int],
    real: torch.Tensor | None = None,
    fake_labels: Sequence[torch.Tensor | None] | None = None,
    real_labels: torch.Tensor | None = None,
) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
    """Scores of ``fakes[i]`` by the head ``heads[i]`` of a :class:`MultiWidthDiscriminator` and, if
    given, of ``real`` by the head of each fake (real_scores[i]: the real batch under heads[i]). The
    shared trunk runs once over everything; each used head runs once over the real features and all
    fakes routed to it (as ``score_all`` does with one fake per head)."""
    fake_labels = list(fake_labels) if fake_labels is not None else [None] * len(fakes)
    inputs = ([real] if real is not None else []) + list(fakes)
    sizes = [t.shape[0] for t in inputs]
    feats = list(discriminator.shared(torch.cat(inputs)).split(sizes))
    real_feat = feats.pop(0) if real is not None else None
    fake_scores: list[torch.Tensor | None] = [None] * len(fakes)
    real_by_head: dict[int, torch.Tensor] = {}
    for head in sorted(set(heads)):
        members = [i for i, h in enumerate(heads) if h == head]
        parts = ([real_feat] if real_feat is not None else []) + [feats[i] for i in members]
        labels = ([real_labels] if real_feat is not None else []) + [fake_labels[i] for i in members]
        y = None if labels[0] is None else torch.cat(labels)
        scores = discriminator.private[head](torch.cat(parts), y).split([p.shape[0] for p in parts])
        if real_feat is not None:
            real_by_head[head], scores = scores[0], scores[1:]
        for i, s in zip(members, scores):
            fake_scores[i] = s
    real_scores = [real_by_head[h] for h in heads] if real is not None else None
    return fake_scores, real_scores  # type: ignore[return-value]


def init_width_sampler(module: Any) -> None:
    """``on_train_start`` of a universal SlimGAN: a fresh seeded sampler, or the checkpoint's state of
    this rank (restored as late as possible, like the noise RNG)."""
    hp = module.hparams
    seed = width_seed(torch.initial_seed(), module.global_step)
    module._width_sampler = WidthSampler(module.generator.width_range, hp.n_random, seed)
    states = getattr(module, "_width_states_to_restore", None)
    if states:
        rank = module.trainer.global_rank
        module._width_sampler.set_state(states[rank] if rank < len(states) else states[0])
        module._width_states_to_restore = None


def save_universal_state(module: Any, checkpoint: dict[str, Any]) -> None:
    """``on_save_checkpoint``: the width sampler's state (per rank) and the calibrated statistics."""
    sampler = getattr(module, "_width_sampler", None)
    if sampler is not None:
        checkpoint[CHECKPOINT_KEY_RNG] = gather_width_states(sampler)
    checkpoint[CHECKPOINT_KEY_STATS] = model_statistics_state(module)


def load_universal_state(module: Any, checkpoint: dict[str, Any]) -> None:
    """``on_load_checkpoint``: statistics now, the sampler state at train start."""
    module._width_states_to_restore = checkpoint.get(CHECKPOINT_KEY_RNG)
    load_model_statistics_state(module, checkpoint.get(CHECKPOINT_KEY_STATS))


def calibrate_model(
    model: Any, widths: Sequence[float], force: bool = False, generator: nn.Module | None = None
) -> list[str]:
    """Calibrate ``generator`` (default: the sampling generator, EMA when there is one) of a
    universal SlimGAN at ``widths`` with ``slim.calibration_batches`` x ``slim.calibration_batch_size``
    (no-op for a fixed-width model); its train/eval mode is kept. Returns the same-network notes."""
    generator = model.sampling_generator if generator is None else generator
    if not is_universal(generator):
        return []
    hp = model.hparams
    was_training = generator.training
    try:
        return calibrate(generator, widths, hp.calibration_batches, hp.calibration_batch_size, force=force)
    finally:
        generator.train(was_training)


def calibrate_universal(model: Any, widths: Sequence[float]) -> list[str]:
    """``slimgan-eval``: calibrate the live generator at ``widths`` (its cost measurements run it in
    eval mode; the sampling generator is calibrated by ``SlimGAN.sample``); returns the notes on
    widths that are the same network."""
    if not is_universal(model.generator):
        return []
    _, notes = distinct_widths(model.generator, widths)
    calibrate_model(model, widths, generator=model.generator)
    return notes


def calibrated_record(model: Any, record: dict[str, Any]) -> dict[str, Any]:
    """The BN-statistics record (:func:`slimgan_pl.inference.bn_statistics`) of a universal model:
    ``calibrated`` and how; a fixed-width model's record unchanged."""
    if not is_universal(model.generator):
        return record
    hp = model.hparams
    return {
        "weights": record["weights"],
        "bn_statistics": "calibrated",
        "calibration": {
            "batches_per_width": int(hp.calibration_batches),
            "batch_size": int(hp.calibration_batch_size),
            "seed": STANDING_SEED,
        },
    }


def training_step(module: Any, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    """One universal SlimGAN iteration: ``n_dis`` D steps and one G step over this iteration's
    sampled widths (:class:`WidthSampler`), each width scored by the nearest anchor's D head."""
    from slimgan_pl.losses import GAN_LOSSES, distillation_loss

    hp = module.hparams
    images, labels = batch
    opt_g, opt_d = module.optimizers()
    if hp.lr_decay != "none":
        module._set_learning_rates(opt_g, opt_d)
    widths = module._width_sampler()
    heads = [nearest_anchor(module.widths, w) for w in widths]
    rng, generator = module._noise_rng, module.generator
    d_loss_fn, g_loss_fn = GAN_LOSSES[hp.loss]
    reals = images.chunk(hp.n_dis)
    real_labels = labels.chunk(hp.n_dis) if module.num_classes else [None] * len(reals)
    for real, real_y in zip(reals, real_labels):
        n = real.shape[0]
        fakes, fake_labels = [], []
        with torch.no_grad():
            for w in widths:
                z, y = module.noise(n, rng), module.random_labels(n, rng)
                fakes.append(module._as_d_input(generator(z, width=w, y=y)))
                fake_labels.append(y)
        fake_scores, real_scores = score_routed(
            module.discriminator, fakes, heads, module._as_d_input(real), fake_labels, real_y
        )
        d_losses = [d_loss_fn(r.float(), f.float()) for r, f in zip(real_scores, fake_scores)]
        opt_d.zero_grad(set_to_none=True)
        module.manual_backward(torch.stack(d_losses).sum())
        opt_d.step()
    n = reals[-1].shape[0]
    with module.toggled_optimizer(opt_g):
        distil = hp.alpha > 0
        z_distil, y_distil = (module.noise(n, rng), module.random_labels(n, rng)) if distil else (None, None)
        fakes, fake_labels, students = [], [], []
        for w in widths:
            z, y = module.noise(n, rng), module.random_labels(n, rng)
            if distil and hp.distill_forward == "concat":
                y_both = None if y is None else torch.cat([y, y_distil])
                fake, student = generator(torch.cat([z, z_distil]), width=w, y=y_both).split(n)
            else:
                fake, student = generator(z, width=w, y=y), None
                if distil:  # the widest width only teaches (detached in the loss): no graph
                    with torch.set_grad_enabled(w != widths[-1]):
                        student = generator(z_distil, width=w, y=y_distil)
            fakes.append(module._as_d_input(fake))
            fake_labels.append(y)
            students.append(None if student is None else student.float())
        fake_scores, _ = score_routed(module.discriminator, fakes, heads, fake_labels=fake_labels)
        g_losses = [g_loss_fn(s.float()) for s in fake_scores]
        # stepwise: each sampled width learns from the next wider sampled width (consecutive pairs)
        kd = distillation_loss(students, hp.stepwise) if distil else g_losses[0].new_zeros(())
        loss = torch.stack(g_losses).sum() + hp.alpha * kd
        if hp.ortho_reg > 0:
            ortho = module.ortho_penalty()
            loss = loss + ortho
            module._last_ortho = ortho.detach()
        opt_g.zero_grad(set_to_none=True)
        module.manual_backward(loss)
        opt_g.step()
    module.update_ema()
    # calibrated statistics belong to the weights they were measured with
    for attr in ("generator", "generator_ema"):
        if getattr(module, attr, None) is not None:
            clear_statistics(getattr(module, attr))
    module._last_widths = widths  # for tests and callbacks
    logs = {}
    for head in sorted(set(heads)):  # per anchor head (the keys of the fixed mode): mean over its widths
        members = [i for i, h in enumerate(heads) if h == head]
        tag = f"w{float(module.widths[head])}"
        logs[f"train/d_loss_{tag}"] = torch.stack([d_losses[i] for i in members]).detach().mean()
        logs[f"train/g_loss_{tag}"] = torch.stack([g_losses[i] for i in members]).detach().mean()
    logs |= {
        "train/d_loss_wmin": d_losses[0].detach(),
        "train/d_loss_wmax": d_losses[-1].detach(),
        "train/g_loss_wmin": g_losses[0].detach(),
        "train/g_loss_wmax": g_losses[-1].detach(),
        "train/distill_loss": kd.detach(),
    }
    if hp.ortho_reg > 0:
        logs["train/ortho_reg"] = module._last_ortho
    module.log_dict(logs, on_step=True, on_epoch=False)
    module.log("d_loss", torch.stack(d_losses).detach().sum(), on_step=True, on_epoch=False)
    module.log("g_loss", torch.stack(g_losses).detach().sum(), on_step=True, on_epoch=False)
    iteration = torch.full((), float(module.iteration), device=module.device)
    module.log("iteration", iteration, on_step=True, on_epoch=False)
    return logs


# ----------------------------------------------------------------------------- CLI
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m slimgan_pl.universal",
        description="Calibrate BN statistics of a universal SlimGAN checkpoint at the given widths and save them.",
    )
    p.add_argument("checkpoint")
    p.add_argument("--widths", type=float, nargs="+", required=True, help="widths in slim.range")
    p.add_argument("--out", default=None, help="write here instead of replacing the checkpoint")
    return p.parse_args(argv)


@cli_main("python -m slimgan_pl.universal")  # one-line errors, --debug for the traceback
def main(argv: Sequence[str] | None = None) -> None:
    from slimgan_pl.checkpoint import load_slimgan  # the module imports this file

    args = parse_args(argv)
    model = load_slimgan(args.checkpoint)
    if not is_universal(model.generator):
        raise ValueError(f"{args.checkpoint}: not a universal model (slim.mode=universal); nothing to calibrate")
    for note in calibrate_model(model, args.widths):
        print(note)
    payload = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    payload[CHECKPOINT_KEY_STATS] = model_statistics_state(model)  # everything else as it was
    out = Path(args.out or args.checkpoint)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, out)  # atomic: the checkpoint is never half written
    print(f"calibrated widths {[width_key(w) for w in args.widths]} saved in {out}")


if __name__ == "__main__":
    main()
