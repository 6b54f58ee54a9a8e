"""Non-finite guard: a diverged run stops (or skips the step) instead of training on and saving NaN.

After every SlimGAN iteration :class:`NonFiniteGuard` checks, per width, the D and G losses, the
distillation loss, and the max-abs of G's and D's parameters (a NaN/Inf weight, even when the losses
computed before the step were finite) in ONE ``torch.isfinite(...).all()`` on the device. When the
host reads that flag (a host-device sync on a GPU; under DDP the flag is summed over ranks first, so
every rank decides alike) depends on the policy:

* ``stop``: the first non-finite iteration and its values are kept on the device, and the flag is
  read only when something would be written or printed anyway: every ``trainer.log_every_n_steps``
  iterations (when the loggers read their values), at every iteration after which a
  ``ModelCheckpoint`` saves (``train.checkpoint_every``), and at the last one. So a training step
  costs no extra sync, and still no checkpoint of a non-finite state is ever written; the message names the first
  non-finite iteration (and the one where it was read, when later).
* ``skip``: read after every iteration (the iteration must be undone before the next one).

``train.on_nonfinite``:

* ``stop`` (default): raise :class:`NonFiniteError` naming the iteration, the width and the loss. It is
  raised in ``on_train_batch_end`` before Lightning's checkpoint callback runs, so no checkpoint of this
  state is written (and :class:`~slimgan_pl.checkpoint_io.SafeCheckpointIO` refuses any non-finite save):
  ``last.ckpt`` stays the last finite state.
* ``skip``: undo the iteration (weights, buffers and optimizer state are put back as they were before it;
  the batch and noise are consumed), count it, and stop after ``train.max_nonfinite_skips`` in a row.
  Costs one device copy of the weights and optimizer state per iteration (memory and a memcpy).

Every event is logged to every logger (``train/nonfinite_skips``, ``train/nonfinite_iteration``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from torch.nn.utils import get_total_norm

POLICIES = ("stop", "skip")


class NonFiniteError(RuntimeError):
    """Training produced NaN/Inf; the message (one line) says where and how to continue."""


def _describe(name: str) -> str:
    """``train/d_loss_w0.25`` -> ``d_loss of width 0.25``."""
    key = name.removeprefix("train/")
    loss, _, tag = key.rpartition("_w")
    if loss and tag.replace(".", "", 1).isdigit():
        return f"{loss} of width {tag}"
    return key


class NonFiniteGuard(pl.Callback):
    """Stop (``policy="stop"``) or undo the iteration (``"skip"``, at most ``max_skips`` in a row) when
    a loss or a parameter becomes NaN/Inf. ``run_dir``: named in the message (how to resume)."""

    def __init__(self, policy: str = "stop", max_skips: int = 10, run_dir: str | None = None) -> None:
        super().__init__()
        if policy not in POLICIES:
            raise ValueError(f"train.on_nonfinite must be one of {list(POLICIES)}, got {policy!r}")
        if isinstance(max_skips, bool) or not isinstance(max_skips, int) or max_skips < 1:
            raise ValueError(f"train.max_nonfinite_skips must be an integer >= 1, got {max_skips!r}")
        self.policy, self.max_skips, self.run_dir = policy, max_skips, run_dir
        # stop policy: (any non-finite so far, first non-finite iteration, its values), all on the device
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.skipped = 0  # iterations undone in total
        self.skipped_in_a_row = 0
        self._model_copy: dict[str, torch.Tensor] = {}
        self._optim_copy: list[dict[int, dict[str, Any]]] = []

    # ----------------------------------------------------------------- skip: state before the iteration
    @torch.no_grad()
    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if self.policy != "skip":
            return
        for name, tensor in pl_module.state_dict(keep_vars=True).items():
            saved = self._model_copy.get(name)
            if saved is None or saved.shape != tensor.shape:
                self._model_copy[name] = tensor.detach().clone()
            else:
                saved.copy_(tensor)  # device copy, no host sync
        self._optim_copy = [
            {
                id(p): {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
                for p, state in optimizer.state.items()
            }
            for optimizer in trainer.optimizers
        ]

    @torch.no_grad()
    def _restore(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for name, tensor in pl_module.state_dict(keep_vars=True).items():
            tensor.data.copy_(self._model_copy[name])
        for optimizer, saved in zip(trainer.optimizers, self._optim_copy):
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if id(p) in saved:
                        for k, v in saved[id(p)].items():
                            current = optimizer.state[p].get(k)
                            if isinstance(v, torch.Tensor) and isinstance(current, torch.Tensor):
                                current.copy_(v)
                            else:
                                optimizer.state[p][k] = v
                    else:  # no state before this iteration (first step): back to a fresh optimizer
                        optimizer.state.pop(p, None)

    # ----------------------------------------------------------------- the check
    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        losses = {k: v for k, v in (outputs or {}).items() if isinstance(v, torch.Tensor) and v.numel() == 1}
        params = {
            "generator parameters": get_total_norm(list(pl_module.generator.parameters()), norm_type=math.inf),
            "discriminator parameters": get_total_norm(list(pl_module.discriminator.parameters()), norm_type=math.inf),
        }  # max |w|: NaN/Inf propagate, large finite weights cannot overflow
        names = [*losses, *params]
        values = torch.stack(
            [v.detach().reshape(()).float().to(pl_module.device) for v in (*losses.values(), *params.values())]
        )
        bad = (~torch.isfinite(values)).any().float()
        iteration = int(getattr(pl_module, "iteration", trainer.global_step))
        detected_at = iteration
        if self.policy == "stop":
            bad, values, iteration = self._remember_first(bad, values, iteration)
            if not self._read_due(trainer, detected_at):
                return  # no host sync in this step
        if trainer.world_size > 1:  # every rank must take the same decision (collective saves follow)
            bad = trainer.strategy.reduce(bad, reduce_op="sum")
        if not bad.item():  # the one host sync
            self.skipped_in_a_row = 0
            return
        if self.policy == "stop" and isinstance(iteration, torch.Tensor):
            iteration = int(iteration.item())
        finite = torch.isfinite(values).tolist()  # only on the rare bad iteration
        culprits = [f"{_describe(n)} = {values[i].item():g}" for i, n in enumerate(names) if not finite[i]]
        what = (
            ", ".join(culprits[:3]) + (f" and {len(culprits) - 3} more" if len(culprits) > 3 else "")
            if culprits
            else "on another rank"
        )
        if iteration != detected_at:
            what += f" (read at iteration {detected_at})"
        if self.policy == "skip":
            self._restore(trainer, pl_module)
            self.skipped += 1
            self.skipped_in_a_row += 1
        for logger in trainer.loggers:
            logger.log_metrics(
                {"train/nonfinite_skips": float(self.skipped), "train/nonfinite_iteration": float(iteration)},
                step=trainer.global_step,
            )
        if self.policy == "skip" and self.skipped_in_a_row < self.max_skips:
            print(
                f"non-finite at iteration {iteration} ({what}): iteration undone, "
                f"{self.skipped_in_a_row} in a row (train.max_nonfinite_skips={self.max_skips})",
                flush=True,
            )
            return
        why = (
            f"{self.skipped_in_a_row} non-finite iterations in a row, train.max_nonfinite_skips={self.max_skips}"
            if self.policy == "skip"
            else "train.on_nonfinite=stop"
        )
        raise NonFiniteError(
            f"non-finite values at iteration {iteration}: {what}; stopped ({why}), nothing of "
            f"this iteration was saved{self._how_to_continue()}"
        )

    def _remember_first(
        self, bad: torch.Tensor, values: torch.Tensor, iteration: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | int]:
        """Stop policy: fold this iteration into the device-side record of the first non-finite one
        (element-wise ops only: no host sync). Returns (any bad so far, its values, its iteration)."""
        pending = self._pending
        if pending is None or pending[1].shape != values.shape:
            here = torch.full((), iteration, dtype=torch.long, device=values.device)
            self._pending = (bad, values, here)
            return bad, values, iteration
        seen, first_values, first_iteration = pending
        new = (seen == 0) & (bad > 0)  # the first non-finite iteration: keep its values and number
        first_values = torch.where(new, values, first_values)
        first_iteration = torch.where(new, torch.full_like(first_iteration, iteration), first_iteration)
        seen = torch.maximum(seen, bad)
        self._pending = (seen, first_values, first_iteration)
        return seen, first_values, first_iteration

    def _read_due(self, trainer: pl.Trainer, iteration: int) -> bool:
        """Stop policy: read the flag when the loggers print, before a checkpoint is saved, at the end."""
        log_every = int(getattr(trainer, "log_every_n_steps", 1) or 1)
        if iteration % log_every == 0:
            return True
        for checkpoint in getattr(trainer, "checkpoint_callbacks", None) or []:  # it saves after this hook
            every = getattr(checkpoint, "_every_n_train_steps", 0)
            if every and trainer.global_step % every == 0:
                return True
        max_steps = getattr(trainer, "max_steps", -1)
        if max_steps is not None and max_steps > 0 and trainer.global_step >= max_steps:
            return True
        return bool(getattr(trainer, "should_stop", False))

    def _how_to_continue(self) -> str:
        if not self.run_dir:
            return ""
        last = Path(self.run_dir) / "checkpoints" / "last.ckpt"
        if not last.is_file():
            return "; no checkpoint was written before it (lower optim.g_lr/optim.d_lr and start again)"
        return f"; {last} is the last finite state, continue from it with: slimgan-train --resume {self.run_dir}"
