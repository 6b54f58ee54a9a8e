"""Training callbacks."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import TQDMProgressBar
import torch
from torchvision.utils import make_grid, save_image

from slimgan_pl.module import SlimGAN, width_tag


class SampleGridCallback(pl.Callback):
    """Every ``every_n_iterations`` SlimGAN iterations (and at the end of training) render one grid
    per width from the same fixed noise, G in eval mode (BN running statistics untouched).

    Files: ``<output_dir>/samples/<w0.25>/iter_000500.png`` and ``samples/widths_iter_000500.png``
    (one row per width, same z in every column). Loggers with ``log_image`` (wandb) get them too.
    """

    def __init__(self, output_dir: str, every_n_iterations: int = 500, n_samples: int = 64,
                 nrow: int = 8, seed: int = 1234) -> None:
        super().__init__()
        if every_n_iterations < 1:
            raise ValueError(f"callbacks.sample_grid.every_n_iterations must be >= 1, got {every_n_iterations}")
        self.output_dir = Path(output_dir) / "samples"
        self.every, self.n_samples, self.nrow, self.seed = every_n_iterations, n_samples, nrow, seed
        self._last_rendered = -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: SlimGAN, outputs, batch, batch_idx: int) -> None:
        it = pl_module.iteration
        if it > 0 and it % self.every == 0:
            self.render(trainer, pl_module)

    def on_train_end(self, trainer: pl.Trainer, pl_module: SlimGAN) -> None:
        self.render(trainer, pl_module)

    @torch.no_grad()
    def render(self, trainer: pl.Trainer, pl_module: SlimGAN) -> list[Path]:
        it = pl_module.iteration
        if it == self._last_rendered or not trainer.is_global_zero:
            return []
        self._last_rendered = it
        paths, rows = [], []
        for w in pl_module.widths:
            images = (pl_module.sample(self.n_samples, width=w, seed=self.seed).cpu() + 1) / 2
            path = self.output_dir / width_tag(w) / f"iter_{it:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(images, path, nrow=self.nrow, padding=2)
            paths.append(path)
            rows.append(images[: self.nrow])
            for logger in trainer.loggers:
                if hasattr(logger, "log_image"):
                    logger.log_image(key=f"samples/{width_tag(w)}", images=[make_grid(images, nrow=self.nrow)],
                                     step=trainer.global_step)
        overview = self.output_dir / f"widths_iter_{it:06d}.png"
        save_image(torch.cat(rows), overview, nrow=self.nrow, padding=2)
        paths.append(overview)
        return paths


class IterationProgressBar(TQDMProgressBar):
    """TQDM bar counting SlimGAN iterations: Lightning's own total is capped by ``max_steps``, which
    counts optimizer steps (n_dis + 1 per iteration) and would show a wrong total."""

    @property
    def total_train_batches(self) -> int | float:
        total = super().total_train_batches
        trainer = self.trainer
        if trainer.max_steps and trainer.max_steps > 0:
            steps_per_iteration = trainer.lightning_module.hparams.n_dis + 1
            remaining = -(-(trainer.max_steps - trainer.global_step) // steps_per_iteration)
            done_this_epoch = trainer.fit_loop.epoch_loop.batch_progress.current.ready
            total = min(total, done_this_epoch + remaining)
        return total
