"""The SlimGAN LightningModule: one slimmable generator, one multi-width discriminator, all widths
trained every iteration (Hou et al., AAAI 2021)."""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from torch import nn

from slimgan_pl import sampling
from slimgan_pl.distributed import rank_seed
from slimgan_pl.ema import converge_spectral_norms, ema_update, spectral_norms
from slimgan_pl.inference import STANDING_SEED, standing_statistics
from slimgan_pl.losses import GAN_LOSSES, distillation_loss, gan_losses, orthogonal_penalty
from slimgan_pl.models import MultiWidthDiscriminator, SlimmableGenerator
from slimgan_pl.models.baseline import build_model_generator, check_baseline, native_discriminator_kwargs
from slimgan_pl.nn import check_widths, convert_cross_replica_batchnorm
from slimgan_pl.nn.precision import use_float32_spectral_norm
from slimgan_pl.resume import gather_rng_states, pick_rng_state, set_rng_state
from slimgan_pl.universal import (
    calibrate_model,
    check_universal_settings,
    init_width_sampler,
    load_universal_state,
    make_universal,
    save_universal_state,
)
from slimgan_pl.universal import training_step as universal_training_step

DISTILL_FORWARDS = ("separate", "concat")
LR_DECAYS = ("none", "linear")


def width_tag(width: float) -> str:
    """Key suffix for per-width logs and files: ``w0.25``, ``w1.0``."""
    return f"w{float(width)}"


def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain Python, so checkpoints load with ``weights_only=True``."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


def linear_lr_factor(iteration: int, total_iterations: int) -> float:
    """The official trainer's ``lr_decay=linear`` (mimicry's LRScheduler, after SNGAN's chainer
    LinearShift from step 0): the lr of SlimGAN iteration ``iteration`` (0-based; its D steps and its G
    step) is ``lr * (1 - iteration / total_iterations)``: the full lr first, lr / T at the last
    iteration, 0 after the run."""
    return max(0.0, 1.0 - iteration / total_iterations)


def compile_training_forwards(
    generator: nn.Module, discriminator: MultiWidthDiscriminator, n_widths: int
) -> dict[str, Any]:
    """``torch.compile`` of G's forward and of D's ``score_all``, separately (never the
    LightningModule: Lightning's loop and hooks stay eager). Dynamo specialises on the width (a
    Python float) and on the grad mode, so G gets up to two graphs per width (D steps run it under
    no_grad, G steps with grad) and eval mode more: the recompile limit is raised to fit them."""
    import torch._dynamo.config as dynamo_config

    graphs_needed = 4 * n_widths + 4  # per width: grad / no_grad x train / eval, plus slack
    for name in ("recompile_limit", "cache_size_limit"):  # the name changed across torch versions
        if hasattr(dynamo_config, name) and getattr(dynamo_config, name) < graphs_needed:
            setattr(dynamo_config, name, graphs_needed)
    return {"generator": torch.compile(generator), "score_all": torch.compile(discriminator.score_all)}


def check_compile_settings(compile_networks: bool, sync_bn: bool, mode: str) -> None:
    """``model.compile=true`` has run training steps on a CPU only (tests/test_compile.py); with
    cross-replica BN (a collective inside the compiled forward) or universal mode (a new width every
    iteration: a recompile each time) it is refused until a GPU run shows it works and pays."""
    if not compile_networks:
        return
    for key, value, unverified in (("model.sync_bn", sync_bn, True), ("slim.mode", mode, "universal")):
        if value == unverified:
            shown = str(value).lower() if isinstance(value, bool) else value
            raise ValueError(
                f"model.compile=true with {key}={shown} is not verified (no GPU run yet, docs/speed.md): "
                f"set model.compile=false"
            )


def _betas(value: Sequence[float], key: str) -> tuple[float, float]:
    betas = tuple(float(b) for b in value)
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"{key} must be two numbers in [0, 1), got {list(value)}")
    return betas  # type: ignore[return-value]


class SlimGAN(pl.LightningModule):
    """Slimmable GAN trained with manual optimization.

    One ``training_step`` is one SlimGAN iteration: ``n_dis`` D steps, each on its own real batch
    (the loader yields ``n_dis`` batches at once) and on fresh fakes of every width, then one G step
    over all widths plus inplace distillation. Lightning's ``global_step`` counts optimizer steps,
    i.e. ``n_dis + 1`` per iteration; :attr:`iteration` counts G steps.

    Class-conditional models (cGAN-PD) have ``num_classes`` > 0 in both the generator and the
    discriminator kwargs (``conf/model/cgan_pd32.yaml`` wires ``${data.num_classes}`` into both).
    Then the D steps score real images with their batch labels and every width's fakes with fresh
    uniform labels (drawn like z, per width); the G step draws fresh labels per width, and the
    distillation batch uses one (z, y) shared by all widths.

    Args:
        generator: ``{"arch": ..., **constructor kwargs}`` of the slimmable generator.
        discriminator: ``{"arch": ..., **constructor kwargs}`` of the per-width discriminators.
        widths: trained widths, strictly increasing, in (0, 1].
        n_share: number of D blocks (from the input) shared by all widths.
        alpha: distillation weight (0 disables distillation and its forward passes).
        stepwise: stepwise (each width learns from the next wider) or plain (all from the widest).
        distill_forward: ``separate`` (reference: a second G forward per width on the shared
            distillation z, BN statistics over the adversarial batch alone) or ``concat`` (one
            forward over both batches; BN normalises over both).
        n_dis: D steps per G step. g_lr, d_lr, g_betas, d_betas: Adam settings per network.
        fused: ``optim.fused``: fused Adam (one kernel per parameter group, ``torch.optim.Adam(fused=True)``).
            Under ``16-mixed`` it also unscales and skips non-finite steps itself, on the device: the
            GradScaler's per-step inf check (one host sync per optimizer step) goes away. Results match the
            default (foreach) Adam to float rounding, not bit for bit (docs/speed.md).
        loss: GAN loss of every width, both networks (``optim.loss``): ``hinge`` | ``gan`` | ``ns`` |
            ``saturating`` (see :data:`slimgan_pl.losses.GAN_LOSSES`).
        lr_decay: ``none`` | ``linear`` (both lrs fall linearly to 0 over the run's iterations,
            :func:`linear_lr_factor`; the run length is the trainer's ``max_steps``).
        ortho_reg: beta of BigGAN's orthogonal regularization of G (0 = off), see :meth:`ortho_penalty`.
        ema_decay: decay of the EMA generator ``generator_ema`` (None = no EMA), see :meth:`update_ema`.
        ema_start: SlimGAN iterations during which the EMA generator is a plain copy of G.
        ema_standing_batches, ema_standing_batch_size: standing BN statistics of the EMA generator
            before evaluation (0 batches = use its EMA'd running statistics), see
            :meth:`standing_statistics`.
        sync_bn: cross-replica BN (``model.sync_bn``): under DDP, every BN of G and D (the per-width
            BNs of switchable and sliceable BNs included) normalises with the statistics of the
            global batch (:class:`~slimgan_pl.nn.CrossReplicaBatchNorm2d`); identical to plain BN
            in one process and in eval mode.
        baseline: ``model.baseline`` ``{"g_width", "d_width"}``: when ``g_width`` is set, train the
            official individually trained baseline instead of a slimmable G: a native G of
            ``ngf * g_width`` channels and a native D of ``ndf * d_width`` (null: 1.0), one width
            (``widths`` becomes ``[g_width]``), see :mod:`slimgan_pl.models.baseline`.
        channels_last: ``model.channels_last``: G's and D's 4-D weights and D's inputs in channels-last
            memory format during training (see docs/speed.md for when it pays).
        compile_networks: ``model.compile``: the training forwards of G and of D's ``score_all`` run
            through ``torch.compile`` (G and D separately, never the LightningModule; each width is
            its own graph). Sampling, evaluation and export use the eager modules.
        mode: ``slim.mode``: ``fixed`` (SlimGAN) or ``universal`` (any width in ``range`` =
            ``slim.range``; ``n_random``, ``calibration_batches``, ``calibration_batch_size``: the
            widths drawn per iteration and the BN calibration; ``widths`` are then the D's anchor
            widths), see :mod:`slimgan_pl.universal`.

    Precision (``trainer.precision``): under mixed precision Lightning runs :meth:`training_step`
    under autocast; the parameters, the optimizer state and every loss stay fp32 (D scores and G
    outputs are cast to fp32 before the losses and the distillation), fp16's GradScaler is
    Lightning's (``manual_backward`` scales, ``opt.step()`` unscales and skips non-finite steps),
    and :meth:`sample` always runs in fp32.

    Under DDP each rank draws its training noise (z and fake labels) from its own generator seeded
    from (global seed, rank), so the ranks' fakes differ; one process keeps the global RNG stream.
    """

    PROGRESS_BAR_KEYS = ("d_loss", "g_loss")  # logged values the progress bar shows when it refreshes

    def __init__(
        self,
        generator: Mapping[str, Any],
        discriminator: Mapping[str, Any],
        widths: Sequence[float] = (0.25, 0.5, 0.75, 1.0),
        n_share: int = 2,
        alpha: float = 20.0,
        stepwise: bool = True,
        distill_forward: str = "separate",
        n_dis: int = 5,
        g_lr: float = 2e-4,
        d_lr: float = 2e-4,
        g_betas: Sequence[float] = (0.0, 0.9),
        d_betas: Sequence[float] = (0.0, 0.9),
        ortho_reg: float = 0.0,
        loss: str = "hinge",
        lr_decay: str = "none",
        ema_decay: float | None = None,
        ema_start: int = 0,
        ema_standing_batches: int = 0,
        ema_standing_batch_size: int = 64,
        sync_bn: bool = False,
        baseline: Mapping[str, Any] | None = None,
        channels_last: bool = False,
        compile_networks: bool = False,
        fused: bool = False,
        mode: str = "fixed",
        range: Sequence[float] | None = None,  # noqa: A002 - the config key slim.range
        n_random: int = 2,
        calibration_batches: int = 8,
        calibration_batch_size: int = 64,
    ) -> None:
        super().__init__()
        generator, discriminator = dict(_plain(generator)), dict(_plain(discriminator))
        widths = check_widths(_plain(widths), "slim.widths")
        baseline = _plain(baseline)
        native = check_baseline(baseline)
        if native is not None:  # one native network: its width is the only width (saved so in hparams)
            widths = [native.g_width]
        g_betas, d_betas = _betas(_plain(g_betas), "optim.g_betas"), _betas(_plain(d_betas), "optim.d_betas")
        if not float(alpha) >= 0.0:
            raise ValueError(f"slim.alpha must be >= 0, got {alpha}")
        if distill_forward not in DISTILL_FORWARDS:
            raise ValueError(f"slim.distill_forward must be one of {DISTILL_FORWARDS}, got {distill_forward!r}")
        if not isinstance(n_dis, int) or n_dis < 1:
            raise ValueError(f"optim.n_dis must be an integer >= 1, got {n_dis!r}")
        for key, lr in (("optim.g_lr", g_lr), ("optim.d_lr", d_lr)):
            if not float(lr) > 0.0:
                raise ValueError(f"{key} must be > 0, got {lr}")
        for key, flag in (
            ("model.sync_bn", sync_bn),
            ("model.channels_last", channels_last),
            ("model.compile", compile_networks),
            ("optim.fused", fused),
        ):
            if not isinstance(flag, bool):
                raise ValueError(f"{key} must be true or false, got {flag!r}")
        for key, cfg in (("model.generator", generator), ("model.discriminator", discriminator)):
            if "arch" not in cfg:
                raise ValueError(f"{key}.arch is required")
        gan_losses(loss)  # one-line error for an unknown optim.loss
        if lr_decay not in LR_DECAYS:
            raise ValueError(f"optim.lr_decay must be one of {list(LR_DECAYS)}, got {lr_decay!r}")
        if not float(ortho_reg) >= 0.0:
            raise ValueError(f"optim.ortho_reg must be >= 0 (0 = off), got {ortho_reg}")
        if ema_decay is not None and not 0.0 <= float(ema_decay) < 1.0:
            raise ValueError(f"ema.decay must be in [0, 1) or null (no EMA generator), got {ema_decay}")
        for key, value, low in (
            ("ema.start", ema_start, 0),
            ("ema.standing_batches", ema_standing_batches, 0),
            ("ema.standing_batch_size", ema_standing_batch_size, 2),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{key} must be an integer >= {low}, got {value!r}")
        check_compile_settings(compile_networks, sync_bn=sync_bn, mode=mode)
        # slim.mode=universal (slimgan_pl.universal): any width in slim.range; widths = D's anchor widths
        range = _plain(range)  # noqa: A001 - a plain list in the saved hyper-parameters (weights_only loads)
        width_range = check_universal_settings(
            mode, range, n_random, calibration_batches, calibration_batch_size, widths, baseline=native,
            sync_bn=sync_bn, compile_networks=compile_networks, ema_standing_batches=ema_standing_batches,
        )  # fmt: skip
        self.save_hyperparameters()
        self.automatic_optimization = False

        self.generator = build_model_generator(generator, widths, native)
        if width_range is not None:
            make_universal(self.generator, width_range)
        disc_kwargs = {k: v for k, v in discriminator.items() if k != "arch"}
        if native is not None:
            disc_kwargs = native_discriminator_kwargs(disc_kwargs, native.d_width)
        self.discriminator = MultiWidthDiscriminator(
            discriminator["arch"], widths, n_share=n_share, img_channels=self.generator.img_channels, **disc_kwargs
        )
        # EMA of G's weights and buffers: a frozen copy, never given to an optimizer (see update_ema)
        self.generator_ema: SlimmableGenerator | None = None
        if ema_decay is not None:
            self.generator_ema = copy.deepcopy(self.generator).requires_grad_(False)
        if self.generator.num_classes != self.discriminator.num_classes:
            raise ValueError(
                f"model.generator.num_classes={self.generator.num_classes} and "
                f"model.discriminator.num_classes={self.discriminator.num_classes} must be equal "
                "(both the data's class count for a conditional model, 0 or null otherwise)"
            )
        if sync_bn:  # after every submodule exists: covers any architecture's nn.BatchNorm2d layers
            convert_cross_replica_batchnorm(self)
        use_float32_spectral_norm(self)  # power iterations in float32 under mixed precision
        # Training noise generator of this rank under DDP (set in on_train_start); None: global RNG.
        self._noise_rng: torch.Generator | None = None
        # torch.compile'd G forward and D score_all (model.compile, built in setup); a plain dict, not
        # registered as submodules, so the state dict is unchanged. None: the training step runs eager.
        self._compiled: dict[str, Any] | None = None

    # ----------------------------------------------------------------- public API
    @property
    def widths(self) -> list[float]:
        """The trained widths, narrowest first."""
        return list(self.generator.widths)

    @property
    def num_classes(self) -> int:
        """Number of classes of a class-conditional model; 0 when unconditional."""
        return self.generator.num_classes

    @property
    def sampling_generator(self) -> SlimmableGenerator:
        """The generator that samples and metrics use: the EMA generator when there is one, else G.
        (The one place that decides; :meth:`sample` and the callbacks go through it.)"""
        return self.generator_ema if self.generator_ema is not None else self.generator

    @property
    def bn_statistics(self) -> str:
        """How evaluation normalises: ``standing`` (EMA generator with standing statistics, see
        :meth:`standing_statistics`) or ``running`` (the sampling generator's running statistics)."""
        if self.generator_ema is not None and self.hparams.ema_standing_batches > 0:
            return "standing"
        return "running"

    @property
    def iteration(self) -> int:
        """Completed SlimGAN iterations (= G steps)."""
        return self.global_step // (self.hparams.n_dis + 1)

    def noise(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None) -> torch.Tensor:
        """z ~ N(0, I) of shape (n, nz) on the model's device (:func:`slimgan_pl.sampling.noise`)."""
        return sampling.noise(n, self.generator.nz, generator, truncation, self.device)

    def random_labels(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor | None:
        """``n`` uniform class ids, or None when unconditional (:func:`slimgan_pl.sampling.random_labels`)."""
        return sampling.random_labels(n, self.num_classes, generator, self.device)

    def grid_labels(self, n: int, nrow: int) -> torch.Tensor | None:
        """One class per grid row (:func:`slimgan_pl.sampling.grid_labels`); None when unconditional."""
        return sampling.grid_labels(n, nrow, self.num_classes, self.device)

    def sample(
        self,
        n: int,
        width: float,
        labels: torch.Tensor | Sequence[int] | None = None,
        seed: int | None = None,
        truncation: float | None = None,
        batch_size: int = 500,
    ) -> torch.Tensor:
        """``n`` images in [-1, 1] from :attr:`sampling_generator` (the EMA generator when there is one)
        at ``width``, eval mode, fp32 (:func:`slimgan_pl.sampling.sample`: same seed, same z at every
        width; conditional models draw labels after z unless ``labels`` are given). Nothing in the model
        changes: wrap in :meth:`standing_statistics` for standing BN statistics."""
        self.generator.check_width(width)
        calibrate_model(self, [width])  # universal models: this width's BN statistics (cached); else no-op
        return sampling.sample(self.sampling_generator, n, width, labels, seed, truncation, batch_size)

    # ----------------------------------------------------------------- BigGAN toolbox
    @contextmanager
    def standing_statistics(self, seed: int = STANDING_SEED) -> Iterator[str]:
        """Inside: the sampling generator normalises as :attr:`bn_statistics` says (standing statistics
        recomputed when that is ``standing``, :func:`slimgan_pl.inference.standing_statistics`); after:
        its buffers and modes are restored, so training (and the EMA) go on unchanged. Yields the mode
        used (``standing`` | ``running``). An EMA generator's spectral norms are converged inside (training
        only tracks them for a few device-side iterations per update, :mod:`slimgan_pl.ema`) and restored
        after, so evaluating never changes the EMA's course."""
        with self._converged_ema_spectral_norms():
            mode = self.bn_statistics
            if mode != "standing":
                yield mode
                return
            hp = self.hparams
            with standing_statistics(
                self.sampling_generator, self.widths, hp.ema_standing_batches, hp.ema_standing_batch_size, seed
            ):
                yield mode

    @contextmanager
    def _converged_ema_spectral_norms(self) -> Iterator[None]:
        if self.generator_ema is None:
            yield
            return
        vectors = [(sn._u.clone(), sn._v.clone()) for sn, _ in spectral_norms(self.generator_ema)]
        converge_spectral_norms(self.generator_ema)  # host-checked: an evaluation boundary may sync
        try:
            yield
        finally:
            with torch.no_grad():
                for (sn, _), (u, v) in zip(spectral_norms(self.generator_ema), vectors):
                    sn._u.copy_(u)
                    sn._v.copy_(v)

    @torch.no_grad()
    def update_ema(self) -> None:
        """After a G step: every floating parameter and buffer of the EMA generator moves
        ``t = decay * t + (1 - decay) * s`` (s: G's); a plain copy while :attr:`iteration` <
        ``ema_start`` and for integer buffers (BN batch counters). Spectral norm's power-iteration
        vectors are not averaged but recomputed on the EMA weights, so the EMA generator divides
        each weight by its own spectral norm (:func:`slimgan_pl.ema.ema_update`)."""
        if self.generator_ema is None:
            return
        decay = self.hparams.ema_decay if self.iteration >= self.hparams.ema_start else 0.0
        ema_update(self.generator_ema, self.generator, decay)

    def ortho_penalty(self) -> torch.Tensor:
        """BigGAN's orthogonal regularization of G at beta = ``ortho_reg``
        (:func:`slimgan_pl.losses.orthogonal_penalty`)."""
        return orthogonal_penalty(self.generator, float(self.hparams.ortho_reg))

    # ----------------------------------------------------------------- training
    def configure_optimizers(self):
        hp = self.hparams
        fused = bool(hp.get("fused", False)) or None  # None: torch's default (foreach where supported)
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp.g_lr, betas=tuple(hp.g_betas), fused=fused)
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.d_lr, betas=tuple(hp.d_betas), fused=fused)
        return [opt_g, opt_d]

    def setup(self, stage: str) -> None:
        # Before the optimizers exist (Module.to(memory_format) keeps the Parameter objects anyway).
        if self.hparams.get("channels_last"):
            self.generator.to(memory_format=torch.channels_last)
            self.discriminator.to(memory_format=torch.channels_last)
        if self.hparams.get("compile_networks") and stage == "fit":
            self._compiled = compile_training_forwards(self.generator, self.discriminator, len(self.widths))

    def _training_forwards(self) -> tuple[Any, Any]:
        """(G forward, D score_all) the training step runs: compiled ones under ``model.compile``."""
        if self._compiled is not None:
            return self._compiled["generator"], self._compiled["score_all"]
        return self.generator, self.discriminator.score_all

    def _as_d_input(self, images: torch.Tensor) -> torch.Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.hparams.get("channels_last") else images

    def on_fit_start(self) -> None:
        # A conditional model's embeddings must cover the data's classes (the config wires
        # ${data.num_classes}; this catches a Python-API mismatch before an index error deep in G).
        data_classes = getattr(getattr(self.trainer, "datamodule", None), "num_classes", None)
        if self.num_classes and data_classes is not None and data_classes != self.num_classes:
            raise ValueError(
                f"model.generator.num_classes={self.num_classes} but the data has "
                f"data.num_classes={data_classes} classes"
            )
        if self.hparams.lr_decay != "none":
            self.total_iterations()  # refuses a run without a fixed length before any step

    def on_train_start(self) -> None:
        # Different z and labels on every rank (same seed everywhere would make every rank draw the
        # same fakes: the global batch would hold world_size copies). Parameters are unaffected:
        # they were built before and the strategy broadcasts rank 0's. Here, not in on_fit_start:
        # a resumed run's global_step is restored by now (so an old checkpoint without a saved noise
        # state still continues with fresh noise).
        world, rank = self.trainer.world_size, self.trainer.global_rank
        self._noise_rng = None
        if world > 1:
            seed = rank_seed(torch.initial_seed(), rank, self.global_step)
            self._noise_rng = torch.Generator(device=self.device).manual_seed(seed)
        # Saved RNG states are restored as late as possible: hooks between loading and the first
        # batch (e.g. a callback training the FMNIST classifier in on_fit_start) must not shift the
        # training noise. The rank's noise stream continues where the checkpoint left it.
        states = getattr(self, "_rng_states_to_restore", None)
        if states:
            set_rng_state(pick_rng_state(states, rank), self._noise_rng)
            self._rng_states_to_restore = None
        if self.hparams.get("mode") == "universal":
            init_width_sampler(self)

    def total_iterations(self) -> int:
        """SlimGAN iterations of the whole run (the trainer's ``max_steps`` / (n_dis + 1))."""
        max_steps = self.trainer.max_steps if self._trainer is not None else -1
        if max_steps is None or max_steps < 1:
            raise ValueError(
                "optim.lr_decay=linear needs a fixed run length: set train.g_steps (the trainer's max_steps)"
            )
        return max(1, max_steps // (self.hparams.n_dis + 1))

    def learning_rates(self, iteration: int) -> tuple[float, float]:
        """(G lr, D lr) of SlimGAN iteration ``iteration`` (0-based) under ``optim.lr_decay``."""
        factor = 1.0
        if self.hparams.lr_decay == "linear":
            factor = linear_lr_factor(iteration, self.total_iterations())
        return self.hparams.g_lr * factor, self.hparams.d_lr * factor

    def _set_learning_rates(self, opt_g, opt_d) -> None:
        # A pure function of the completed iterations (restored from global_step on resume), as the
        # official scheduler computes it from its global step: nothing else to checkpoint.
        for opt, lr in zip((opt_g, opt_d), self.learning_rates(self.iteration)):
            for group in opt.param_groups:
                group["lr"] = lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> dict[str, torch.Tensor]:
        if self.hparams.get("mode") == "universal":  # sampled widths, routed D heads
            return universal_training_step(self, batch)
        images, labels = batch
        opt_g, opt_d = self.optimizers()
        if self.hparams.lr_decay != "none":
            self._set_learning_rates(opt_g, opt_d)
        reals = images.chunk(self.hparams.n_dis)
        real_labels = labels.chunk(self.hparams.n_dis) if self.num_classes else [None] * len(reals)
        for real, real_y in zip(reals, real_labels):
            d_losses = self._discriminator_step(real, real_y, opt_d)
        g_losses, kd_loss = self._generator_step(reals[-1].shape[0], opt_g)

        logs = {}
        for w, d, g in zip(self.widths, d_losses, g_losses):
            logs[f"train/d_loss_{width_tag(w)}"] = d
            logs[f"train/g_loss_{width_tag(w)}"] = g
        logs["train/distill_loss"] = kd_loss
        if self.hparams.ortho_reg > 0:
            logs["train/ortho_reg"] = self._last_ortho
        if self.hparams.lr_decay != "none":  # device tensors filled by a kernel, as "iteration" below
            logs["train/lr_g"], logs["train/lr_d"] = (
                torch.full((), float(g["lr"]), device=self.device)
                for g in (opt_g.param_groups[0], opt_d.param_groups[0])
            )
        self.log_dict(logs, on_step=True, on_epoch=False)
        # Not prog_bar=True: Lightning converts progress-bar values to Python numbers after every
        # batch (a host sync per value); the bar reads these when it prints (PROGRESS_BAR_KEYS).
        self.log("d_loss", torch.stack(d_losses).sum(), on_step=True, on_epoch=False)
        self.log("g_loss", torch.stack(g_losses).sum(), on_step=True, on_epoch=False)
        # G steps so far; checkpoint names use it (Lightning's global_step counts optimizer steps).
        # A device tensor filled by a kernel: a Python float would be copied host-to-device every step
        # (a host sync on GPU); logs are read (synced) only when a logger or the progress bar prints.
        self.log("iteration", torch.full((), float(self.iteration), device=self.device), on_step=True, on_epoch=False)
        return logs  # detached losses for callbacks (NonFiniteGuard checks them; no host sync here)

    def _discriminator_step(self, real: torch.Tensor, real_labels: torch.Tensor | None, opt_d) -> list[torch.Tensor]:
        n = real.shape[0]
        generate, score_all = self._training_forwards()
        fakes, fake_labels = [], []
        with torch.no_grad():  # no autograd graph for G in D steps
            for w in self.widths:  # fresh z (and class labels) per width
                z, y = self.noise(n, self._noise_rng), self.random_labels(n, self._noise_rng)
                fakes.append(self._as_d_input(generate(z, width=w, y=y)))
                fake_labels.append(y)
        fake_scores, real_scores = score_all(
            fakes,
            self._as_d_input(real),
            fake_labels=fake_labels if self.num_classes else None,
            real_labels=real_labels,
        )
        d_loss, _ = GAN_LOSSES[self.hparams.loss]
        # losses in fp32 whatever the autocast dtype of the scores
        losses = [d_loss(r.float(), f.float()) for r, f in zip(real_scores, fake_scores)]
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(torch.stack(losses).sum())
        opt_d.step()
        return [loss.detach() for loss in losses]

    def _generator_step(self, n: int, opt_g) -> tuple[list[torch.Tensor], torch.Tensor]:
        hp = self.hparams
        distil = hp.alpha > 0 and len(self.widths) > 1
        # D's parameters stop requiring grad here, so no D weight gradients are computed.
        with self.toggled_optimizer(opt_g):
            # one (z, y) shared by all widths for distillation
            rng = self._noise_rng
            generate, score_all = self._training_forwards()
            z_distil, y_distil = (self.noise(n, rng), self.random_labels(n, rng)) if distil else (None, None)
            fakes, fake_labels, students = [], [], []
            for w in self.widths:
                z, y = self.noise(n, rng), self.random_labels(n, rng)  # fresh per width
                if distil and hp.distill_forward == "concat":
                    y_both = None if y is None else torch.cat([y, y_distil])
                    fake, student = generate(torch.cat([z, z_distil]), width=w, y=y_both).split(n)
                else:
                    fake = generate(z, width=w, y=y)
                    student = None
                    if distil:  # the widest width only teaches (its output is detached): no graph
                        with torch.set_grad_enabled(w != self.widths[-1]):
                            student = generate(z_distil, width=w, y=y_distil)
                fakes.append(self._as_d_input(fake))
                fake_labels.append(y)
                students.append(None if student is None else student.float())  # distillation in fp32
            fake_scores, _ = score_all(fakes, fake_labels=fake_labels if self.num_classes else None)
            _, g_loss = GAN_LOSSES[self.hparams.loss]
            g_losses = [g_loss(s.float()) for s in fake_scores]  # each width's own loss, summed (as the reference)
            kd = (
                distillation_loss(students, hp.stepwise)
                if distil
                else fake_scores[0].new_zeros((), dtype=torch.float32)
            )
            loss = torch.stack(g_losses).sum() + hp.alpha * kd
            if hp.ortho_reg > 0:  # once per G step, on the full weights (not once per width)
                ortho = self.ortho_penalty()
                loss = loss + ortho
                self._last_ortho = ortho.detach()
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_g.step()
        self.update_ema()  # iteration already counts this G step
        return [g.detach() for g in g_losses], kd.detach()

    # ----------------------------------------------------------------- exact resume
    # Lightning does not checkpoint RNG state; without it a resumed run draws other noise.
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["rng_states"] = gather_rng_states(self._noise_rng)  # one per rank (collective under DDP)
        if self.hparams.get("mode") == "universal":
            save_universal_state(self, checkpoint)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_states_to_restore = checkpoint.get("rng_states")
        if self.hparams.get("mode") == "universal":
            load_universal_state(self, checkpoint)
