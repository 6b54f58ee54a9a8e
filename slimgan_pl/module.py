"""The SlimGAN LightningModule: one slimmable generator, one multi-width discriminator, all widths
trained every iteration (Hou et al., AAAI 2021)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from slimgan_pl.losses import distillation_loss, hinge_d_loss, hinge_g_loss
from slimgan_pl.models import MultiWidthDiscriminator, build_generator
from slimgan_pl.nn import check_widths

DISTILL_FORWARDS = ("separate", "concat")


def width_tag(width: float) -> str:
    """Key suffix for per-width logs and files: ``w0.25``, ``w1.0``."""
    return f"w{float(width)}"


def _plain(value: Any) -> Any:
    """OmegaConf containers -> plain Python, so checkpoints load with ``weights_only=True``."""
    if isinstance(value, (DictConfig, ListConfig)):
        return OmegaConf.to_container(value, resolve=True)
    return value


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
    """

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
    ) -> None:
        super().__init__()
        generator, discriminator = dict(_plain(generator)), dict(_plain(discriminator))
        widths = check_widths(_plain(widths))
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
        for key, cfg in (("model.generator", generator), ("model.discriminator", discriminator)):
            if "arch" not in cfg:
                raise ValueError(f"{key}.arch is required")
        self.save_hyperparameters()
        self.automatic_optimization = False

        gen_kwargs = {k: v for k, v in generator.items() if k != "arch"}
        self.generator = build_generator(generator["arch"], widths, **gen_kwargs)
        disc_kwargs = {k: v for k, v in discriminator.items() if k != "arch"}
        self.discriminator = MultiWidthDiscriminator(
            discriminator["arch"], widths, n_share=n_share, img_channels=self.generator.img_channels, **disc_kwargs
        )

    # ----------------------------------------------------------------- public API
    @property
    def widths(self) -> list[float]:
        """The trained widths, narrowest first."""
        return list(self.generator.widths)

    @property
    def iteration(self) -> int:
        """Completed SlimGAN iterations (= G steps)."""
        return self.global_step // (self.hparams.n_dis + 1)

    def noise(self, n: int, generator: torch.Generator | None = None, truncation: float | None = None) -> torch.Tensor:
        """z ~ N(0, I) of shape (n, nz); with ``truncation`` every entry with |z| > truncation is
        redrawn until none is left (BigGAN's truncation trick, as the paper defines it)."""
        device = "cpu" if generator is not None else self.device
        z = torch.randn(n, self.generator.nz, generator=generator, device=device)
        if truncation is not None:
            if not truncation > 0:
                raise ValueError(f"truncation must be > 0, got {truncation}")
            outside = z.abs() > truncation
            while outside.any():
                z[outside] = torch.randn(int(outside.sum()), generator=generator, device=device)
                outside = z.abs() > truncation
        return z.to(self.device)

    @torch.no_grad()
    def sample(self, n: int, width: float, labels: torch.Tensor | None = None, seed: int | None = None,
               truncation: float | None = None, batch_size: int = 500) -> torch.Tensor:
        """``n`` images in [-1, 1], shape (n, C, H, W), from the generator at ``width`` in eval mode
        (that width's BN running statistics; nothing in the model changes). Same seed, same z.
        ``truncation``: resample latent entries with |z| above it (see :meth:`noise`)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.generator.check_width(width)
        rng = torch.Generator().manual_seed(seed) if seed is not None else None
        z = self.noise(n, rng, truncation)
        was_training = self.generator.training
        self.generator.eval()
        try:
            out = [self.generator(zb, width=width, y=None if labels is None else labels[i:i + batch_size])
                   for i, zb in zip(range(0, n, batch_size), z.split(batch_size))]
        finally:
            self.generator.train(was_training)
        return torch.cat(out)

    # ----------------------------------------------------------------- training
    def configure_optimizers(self):
        hp = self.hparams
        opt_g = torch.optim.Adam(self.generator.parameters(), lr=hp.g_lr, betas=tuple(hp.g_betas))
        opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=hp.d_lr, betas=tuple(hp.d_betas))
        return [opt_g, opt_d]

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        images, _ = batch
        opt_g, opt_d = self.optimizers()
        reals = images.chunk(self.hparams.n_dis)
        for real in reals:
            d_losses = self._discriminator_step(real, opt_d)
        g_losses, kd_loss = self._generator_step(reals[-1].shape[0], opt_g)

        logs = {}
        for w, d, g in zip(self.widths, d_losses, g_losses):
            logs[f"train/d_loss_{width_tag(w)}"] = d
            logs[f"train/g_loss_{width_tag(w)}"] = g
        logs["train/distill_loss"] = kd_loss
        self.log_dict(logs, on_step=True, on_epoch=False)
        self.log("d_loss", torch.stack(d_losses).sum(), prog_bar=True, on_step=True, on_epoch=False)
        self.log("g_loss", torch.stack(g_losses).sum(), prog_bar=True, on_step=True, on_epoch=False)
        # G steps so far; checkpoint names use it (Lightning's global_step counts optimizer steps).
        self.log("iteration", float(self.iteration), on_step=True, on_epoch=False)

    def _discriminator_step(self, real: torch.Tensor, opt_d) -> list[torch.Tensor]:
        n = real.shape[0]
        with torch.no_grad():  # no autograd graph for G in D steps
            fakes = [self.generator(self.noise(n), width=w) for w in self.widths]
        fake_scores, real_scores = self.discriminator.score_all(fakes, real)
        losses = [hinge_d_loss(r, f) for r, f in zip(real_scores, fake_scores)]
        opt_d.zero_grad(set_to_none=True)
        self.manual_backward(torch.stack(losses).sum())
        opt_d.step()
        return [loss.detach() for loss in losses]

    def _generator_step(self, n: int, opt_g) -> tuple[list[torch.Tensor], torch.Tensor]:
        hp = self.hparams
        distil = hp.alpha > 0 and len(self.widths) > 1
        # D's parameters stop requiring grad here, so no D weight gradients are computed.
        with self.toggled_optimizer(opt_g):
            z_distil = self.noise(n) if distil else None  # shared by all widths
            fakes, students = [], []
            for w in self.widths:
                z = self.noise(n)
                if distil and hp.distill_forward == "concat":
                    fake, student = self.generator(torch.cat([z, z_distil]), width=w).split(n)
                else:
                    fake = self.generator(z, width=w)
                    student = self.generator(z_distil, width=w) if distil else None
                fakes.append(fake)
                students.append(student)
            fake_scores, _ = self.discriminator.score_all(fakes)
            g_losses = [hinge_g_loss(s) for s in fake_scores]
            kd = distillation_loss(students, hp.stepwise) if distil else fakes[0].new_zeros(())
            loss = torch.stack(g_losses).sum() + hp.alpha * kd
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss)
            opt_g.step()
        return [g.detach() for g in g_losses], kd.detach()
