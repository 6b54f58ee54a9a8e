"""Test-only callback (importable from a run via ``PYTHONPATH=<repo>/tests``): the run sends a signal to
itself at a chosen point of a chosen iteration, so preemption tests hit that point exactly (no timing).

Points (``point``), all in SlimGAN iteration ``iteration`` (1-based: the iteration that ends with
``pl_module.iteration == iteration``):

* ``batch_start``: before its first D step.
* ``d_step``: inside its ``d_step``-th D step (1-based), after that step's backward, before ``opt_d.step()``.
* ``between``: after its last D step's update, before the G step's update (sent at the G step's backward).
* ``g_step``: inside its G step, after the backward, before ``opt_g.step()``.
* ``batch_end``: in its ``on_train_batch_end`` (appended after PreemptionCheckpoint: handled next iteration).
* ``checkpoint``: inside the periodic checkpoint save of this iteration (``on_save_checkpoint``).
* ``sample_grid``: inside the sample grid's rendering of this iteration.
* ``fid``: inside the in-training FID evaluation of this iteration.
"""

from __future__ import annotations

import os
import signal
from typing import Any

import pytorch_lightning as pl
import torch

POINTS = ("batch_start", "d_step", "between", "g_step", "batch_end", "checkpoint", "sample_grid", "fid")


class SignalAt(pl.Callback):
    def __init__(self, iteration: int, point: str, signal_name: str = "SIGTERM", d_step: int = 1) -> None:
        if point not in POINTS:
            raise ValueError(f"point must be one of {POINTS}, got {point!r}")
        self.iteration, self.point, self.d_step = iteration, point, d_step
        self.signal = getattr(signal, signal_name)
        self.sent = self._armed = False
        self._d_steps = 0

    def send(self) -> None:
        if not self.sent:
            self.sent = True
            os.kill(os.getpid(), self.signal)

    def _in_iteration(self, pl_module: Any, done: int) -> bool:
        """True while iteration ``self.iteration`` runs (``done``: G steps completed before this point)."""
        return done == self.iteration - 1

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self._d_steps = 0
        if self.point == "batch_start" and self._in_iteration(pl_module, pl_module.iteration):
            self.send()

    def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: Any, optimizer: torch.optim.Optimizer) -> None:
        if not self._in_iteration(pl_module, pl_module.iteration):
            return
        is_d = optimizer is trainer.optimizers[1] or getattr(optimizer, "optimizer", None) is trainer.optimizers[1]
        if is_d:
            self._d_steps += 1
            if self.point == "d_step" and self._d_steps == self.d_step:
                self.send()
            elif self.point == "between" and self._d_steps == pl_module.hparams.n_dis:
                self._armed = True  # the last D update has not run yet: send at the G step's backward
        elif self.point == "g_step":
            self.send()

    def on_before_backward(self, trainer: pl.Trainer, pl_module: Any, loss: torch.Tensor) -> None:
        # the G step's backward: every D step of this iteration is done, the G update is not
        if self._armed and self._d_steps == pl_module.hparams.n_dis:
            self._armed = False
            self.send()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.point == "batch_end" and pl_module.iteration == self.iteration:
            self.send()

    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        if self.point == "checkpoint" and pl_module.iteration == self.iteration:
            self.send()

    def setup(self, trainer: pl.Trainer, pl_module: Any, stage: str) -> None:
        # Wrap the sample grid's and the FID callback's work so the signal arrives inside it.
        for callback in trainer.callbacks:
            name = type(callback).__name__
            method = {"SampleGridCallback": "render", "PerWidthFIDCallback": "evaluate"}.get(name)
            point = {"SampleGridCallback": "sample_grid", "PerWidthFIDCallback": "fid"}.get(name)
            if method is None or point != self.point:
                continue
            real = getattr(callback, method)

            def inside(trainer: pl.Trainer, pl_module: Any, _real=real) -> Any:
                if pl_module.iteration == self.iteration:
                    self.send()
                return _real(trainer, pl_module)

            setattr(callback, method, inside)
