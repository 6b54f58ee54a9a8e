"""Training callbacks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.utilities import rank_zero_warn
from torchmetrics.image import FrechetInceptionDistance
from torchvision.utils import save_image

from slimgan_pl.metrics.backbones import BACKBONES, Backbone, FeatureSet, default_backbone, load_backbone
from slimgan_pl.metrics.evaluation import MIN_CLASSIFIER_ACCURACY
from slimgan_pl.metrics.reference import datamodule_config, dataset_kind, load_protocol, real_features
from slimgan_pl.metrics.scores import PrecomputedFeatures
from slimgan_pl.module import SlimGAN, width_tag
from slimgan_pl.sampling import grid_labels, num_classes, sample
from slimgan_pl.universal import calibrate_model


class SampleGridCallback(pl.Callback):
    """Every ``every_n_iterations`` SlimGAN iterations (and at the end of training) render one grid
    per width from the same fixed noise, G in eval mode (BN running statistics untouched); with an EMA
    generator, from it, with standing statistics (:meth:`SlimGAN.standing_statistics`).

    Files: ``<output_dir>/samples/<w0.25>/iter_000500.png`` and ``samples/widths_iter_000500.png``
    (one row per width, same z in every column). Loggers with ``log_image`` (wandb) get these files as
    ``samples/w0.25``, ... and ``samples/widths``.
    """

    def __init__(
        self, output_dir: str, every_n_iterations: int = 500, n_samples: int = 64, nrow: int = 8, seed: int = 1234
    ) -> None:
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
        if it == self._last_rendered:
            return []
        self._last_rendered = it
        paths, rows = [], []
        generator = pl_module.sampling_generator  # the EMA generator when there is one
        # conditional: one class per row
        labels = grid_labels(self.n_samples, self.nrow, num_classes(generator), pl_module.device)
        # EMA generator: standing BN statistics (restored afterwards), computed on every rank, since with
        # cross-replica BN their train-mode forwards are collective; only rank 0 samples and writes.
        with pl_module.standing_statistics():
            if not trainer.is_global_zero:
                return []
            calibrate_model(pl_module, pl_module.widths, generator=generator)  # universal models; else no-op
            grids = [sample(generator, self.n_samples, w, labels, self.seed).cpu() for w in pl_module.widths]
        for w, images in zip(pl_module.widths, grids):
            images = (images + 1) / 2
            path = self.output_dir / width_tag(w) / f"iter_{it:06d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            save_image(images, path, nrow=self.nrow, padding=2)
            paths.append(path)
            rows.append(images[: self.nrow])
            self._log_image(trainer, f"samples/{width_tag(w)}", path, it)
        overview = self.output_dir / f"widths_iter_{it:06d}.png"
        save_image(torch.cat(rows), overview, nrow=self.nrow, padding=2)
        paths.append(overview)
        self._log_image(trainer, "samples/widths", overview, it)
        return paths

    @staticmethod
    def _log_image(trainer: pl.Trainer, key: str, path: Path, iteration: int) -> None:
        """The PNG just written, as a file: wandb copies it byte for byte. (A float tensor in [0, 1] would
        be cast to uint8 by wandb.Image, which expects [0, 255]: an all-black image.)"""
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                # step: Lightning's 0-based batch counter, the step of the losses of this iteration
                logger.log_image(key=key, images=[str(path)], step=iteration - 1)


class IterationProgressBar(TQDMProgressBar):
    """TQDM bar over the whole run's SlimGAN iterations: ``iteration:  33%| 500/1500 [05:00<10:00, ...]``,
    so the ETA is the run's, not the epoch's.

    Lightning's own bar counts an epoch's batches and caps it with ``max_steps``, which counts optimizer
    steps (n_dis + 1 per iteration): a run shorter than an epoch ends at "4/8 50%". A resumed run starts
    the bar at the checkpoint's iteration.
    """

    DESCRIPTION = "iteration"

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        # Read (a host sync on GPU) only here, when the bar prints: the module logs them without prog_bar.
        items = super().get_metrics(trainer, pl_module)
        for key in getattr(pl_module, "PROGRESS_BAR_KEYS", ()):
            if key in trainer.callback_metrics:
                items[key] = float(trainer.callback_metrics[key])
        return items

    @staticmethod
    def total_iterations(trainer: pl.Trainer, pl_module: SlimGAN) -> int | None:
        """The run's SlimGAN iterations (``train.g_steps``); None when the run has no step limit."""
        if trainer.max_steps is None or trainer.max_steps < 0:
            return None
        return trainer.max_steps // (pl_module.hparams.n_dis + 1)

    def on_train_start(self, trainer: pl.Trainer, pl_module: SlimGAN) -> None:
        super().on_train_start(trainer, pl_module)
        bar, done = self.train_progress_bar, pl_module.iteration
        bar.reset(total=self.total_iterations(trainer, pl_module))
        bar.initial = bar.n = bar.last_print_n = done  # a resumed run: rate and ETA from here on
        bar.set_description(self.DESCRIPTION)
        bar.refresh()

    def on_train_epoch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        pass  # one bar for the whole run: Lightning would reset it to the epoch's batches

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: SlimGAN, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        bar, n = self.train_progress_bar, pl_module.iteration
        if bar is not None and self._should_update(n, bar.total):
            bar.n = n
            bar.set_postfix(self.get_metrics(trainer, pl_module))  # refreshes the bar


def rank_shard(n: int, rank: int, world_size: int) -> slice:
    """Rank ``rank``'s contiguous part of ``n`` items: the parts of all ranks cover ``range(n)``
    exactly once, and their sizes differ by at most one."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


class DataConfigInCheckpoint(pl.Callback):
    """Writes the training data module's config (``_target_`` + constructor arguments) into every
    checkpoint as ``data_config``, so that ``slimgan-eval CKPT`` knows the dataset, its root, split
    and image size without the run's Hydra config (``slimgan_pl.train.build`` adds it)."""

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is not None:
            checkpoint["data_config"] = datamodule_config(datamodule)


class PerWidthFIDCallback(pl.Callback):
    """FID of every width during training, every ``every_n_iterations`` SlimGAN iterations (G steps,
    not Lightning's optimizer steps), for any dataset: ``val/fid_w0.25``, ... with Inception-v3 (RGB
    data), ``val/fmnist_fid_w0.25``, ... with the project's classifier (Fashion-MNIST); ``backbone``
    overrides the choice. Written once to every configured logger (CSV, wandb) and put in
    ``trainer.callback_metrics`` via ``pl_module.log``.

    The numbers are slimgan-eval's (same backbone, same seeded subset of ``n_real`` real ``split``
    images, same real-feature cache) with fewer samples: ``n_fake`` fakes per width from G in eval
    mode (:func:`slimgan_pl.sampling.sample`, same z at every width and every evaluation); with an EMA generator,
    from it with standing BN statistics (:meth:`SlimGAN.standing_statistics`).

    Under DDP every rank draws its share of the fakes (``n_fake`` split exactly across ranks, rank
    ``r`` sampling with seed ``seed + r``) and feeds its shard of the real features; a torchmetrics
    FID accumulates locally (``dist_sync_on_step=False``) and sums its statistics over ranks when
    computed, so the result equals the FID of the union computed in one process. The backbone file
    (the classifier shipped with the package, or the Inception weights) is loaded by every rank in
    :meth:`check_config`, before training: a missing file stops every rank at once, nothing is
    trained. Rank 0 fills the real-feature cache first; the other ranks read it (shared disk).
    """

    def __init__(
        self,
        every_n_iterations: int = 500,
        n_fake: int = 1000,
        n_real: int = 1000,
        classifier: str | os.PathLike | None = None,
        split: str | None = None,
        seed: int = 0,
        batch_size: int = 500,
        data_root: str | None = None,
        backbone: str = "auto",
        inception_weights: str | os.PathLike | None = None,
    ) -> None:
        super().__init__()
        if every_n_iterations < 1:
            raise ValueError(f"callbacks.fid.every_n_iterations must be >= 1, got {every_n_iterations}")
        if n_fake < 2 or n_real < 2:
            raise ValueError(f"callbacks.fid needs n_fake >= 2 and n_real >= 2, got n_fake={n_fake}, n_real={n_real}")
        if batch_size < 1:
            raise ValueError(f"callbacks.fid.batch_size must be >= 1, got {batch_size}")
        if backbone not in ("auto", *BACKBONES):
            raise ValueError(f"callbacks.fid.backbone must be one of {['auto', *BACKBONES]}, got {backbone!r}")
        self.every, self.n_fake, self.n_real, self.split = every_n_iterations, n_fake, n_real, split
        self.classifier, self.seed, self.batch_size = classifier, seed, batch_size
        self.data_root = data_root  # None: the training data module's root
        self.backbone_kind, self.inception_weights = backbone, inception_weights
        self._backbone: Backbone | None = None
        self._data: dict[str, Any] | None = None
        self._fid: FrechetInceptionDistance | None = None
        self._last_evaluated = -1

    # ----------------------------------------------------------------- checks
    def check_config(self, pl_module: SlimGAN, datamodule: pl.LightningDataModule | None, trainer: pl.Trainer) -> None:
        """Raise ValueError (one line) when the FID cannot be computed; load the backbone (every
        rank, before training). ``slimgan_pl.train.build`` calls it; :meth:`setup` again (no-op)."""
        if self._backbone is not None:
            return
        if datamodule is None:
            raise ValueError(
                "callbacks.fid needs the training data module (trainer.fit(..., datamodule=...)) to "
                "know the real images; or set callbacks.fid=null"
            )
        world = trainer.world_size
        if self.n_fake < world or self.n_real < world:
            raise ValueError(
                f"callbacks.fid.n_fake ({self.n_fake}) and n_real ({self.n_real}) must be at least "
                f"the number of processes ({world})"
            )
        try:
            data = datamodule_config(datamodule)
            dataset = dataset_kind(data)
        except ValueError as e:
            raise ValueError(f"callbacks.fid: {e}; set callbacks.fid=null") from None
        if self.data_root is not None:
            data["root"] = self.data_root
        self.split = self.split or load_protocol(None, dataset).split
        g = pl_module.generator
        kind = default_backbone(dataset) if self.backbone_kind == "auto" else self.backbone_kind
        log = print if trainer.is_global_zero else None
        try:
            backbone = load_backbone(
                kind, (g.img_channels, g.img_size, g.img_size), self.classifier, self.inception_weights, log
            )
        except (FileNotFoundError, RuntimeError, ValueError) as e:  # missing/corrupt weights, wrong image shape
            raise ValueError(f"callbacks.fid: {e} (or set callbacks.fid=null)") from None
        if kind == "fmnist_classifier" and backbone.description["test_accuracy"] < MIN_CLASSIFIER_ACCURACY:
            rank_zero_warn(
                f"the FMNIST classifier {backbone.description['path']} has test accuracy "
                f"{backbone.description['test_accuracy']:.3f} < {MIN_CLASSIFIER_ACCURACY}: "
                "val/fmnist_fid_* values are not comparable with real runs"
            )
        self._data, self._backbone = data, backbone

    def setup(self, trainer: pl.Trainer, pl_module: SlimGAN, stage: str) -> None:
        if stage == "fit":
            self.check_config(pl_module, trainer.datamodule, trainer)

    def metric_name(self, width: float) -> str:
        """``val/fid_w<width>`` (Inception) or ``val/fmnist_fid_w<width>`` (the FMNIST classifier)."""
        assert self._backbone is not None
        return f"val/{self._backbone.key_prefix}fid_{width_tag(width)}"

    # ----------------------------------------------------------------- hooks
    def on_fit_start(self, trainer: pl.Trainer, pl_module: SlimGAN) -> None:
        # After the strategy moved the model to its device. Skip the real features for runs too
        # short to reach an evaluation.
        max_iterations = trainer.max_steps // (pl_module.hparams.n_dis + 1)
        if trainer.max_steps < 0 or max_iterations >= self.every:
            self._prepare(trainer, pl_module.device)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: SlimGAN, outputs, batch, batch_idx: int) -> None:
        it = pl_module.iteration
        if it > 0 and it % self.every == 0 and it != self._last_evaluated:
            self._last_evaluated = it
            metrics = {self.metric_name(w): fid for w, fid in self.evaluate(trainer, pl_module).items()}
            # Values are already reduced over ranks (identical everywhere: no sync_dist). They go to
            # the loggers directly: Lightning would re-send a step value logged through pl_module.log
            # at every later logging step of the epoch, and drop it between log_every_n_steps.
            pl_module.log_dict(metrics, on_step=True, on_epoch=False, logger=False)
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    # step: Lightning's 0-based batch counter, so the rows line up with the losses.
                    logger.log_metrics({**metrics, "iteration": float(it)}, step=it - 1)

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self, trainer: pl.Trainer, pl_module: SlimGAN) -> dict[float, float]:
        """FID per width over all ranks; every rank must call it (the FID sync is collective)."""
        if self._fid is None:
            self._prepare(trainer, pl_module.device)
        assert self._backbone is not None and self._fid is not None
        _broadcast_generator_buffers(pl_module)
        rank = trainer.global_rank
        share = rank_shard(self.n_fake, rank, trainer.world_size)
        n = share.stop - share.start
        results = {}
        generator = pl_module.sampling_generator  # the EMA generator when there is one
        with pl_module.standing_statistics():  # EMA generator: standing BN statistics (same seed on every rank)
            calibrate_model(pl_module, pl_module.widths, generator=generator)  # universal models; else no-op
            for w in pl_module.widths:
                self._fid.reset()  # fake statistics only: reset_real_features=False keeps the real ones
                images = sample(generator, n, w, seed=self.seed + rank, batch_size=self.batch_size)
                features = self._backbone.extract(images, self.batch_size).features
                self._fid.update(features.to(self._fid.device), real=False)
                results[w] = float(self._fid.compute())
        return results

    def _prepare(self, trainer: pl.Trainer, device: torch.device) -> None:
        """This rank's shard of the real features into a fresh FID metric. Rank 0 goes first: it
        fills the real-feature cache, so the other ranks only read it."""
        if self._backbone is None:
            self.check_config(trainer.lightning_module, trainer.datamodule, trainer)
        assert self._backbone is not None and self._data is not None
        self._backbone.to(device)
        if trainer.is_global_zero:
            real = self._real_features(log=print)
        trainer.strategy.barrier("fid_prepare")
        if not trainer.is_global_zero:
            real = self._real_features(log=None)
        shard = rank_shard(self.n_real, trainer.global_rank, trainer.world_size)
        fid = FrechetInceptionDistance(
            feature=PrecomputedFeatures(real.features.shape[1]), reset_real_features=False, dist_sync_on_step=False
        ).to(device)
        fid.update(real.features[shard].to(device, torch.float64), real=True)
        self._fid = fid

    def _real_features(self, log) -> FeatureSet:
        assert self._backbone is not None and self._data is not None
        return real_features(self._backbone, self._data, self.split, self.n_real, batch_size=self.batch_size, log=log)[
            0
        ]


def _broadcast_generator_buffers(pl_module: SlimGAN) -> None:
    """Give every rank rank 0's G buffers (BN running statistics, spectral-norm vectors).

    Parameters agree across DDP ranks, but each rank's last training step updated G's BN running
    statistics from its own noise batches (the ranks draw different z; without model.sync_bn they
    differ). Doing it now makes every rank sample the generator that rank 0 checkpoints."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        for buffer in pl_module.sampling_generator.buffers():  # the EMA generator when there is one
            dist.broadcast(buffer, src=0)
