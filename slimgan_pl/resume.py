"""Resuming and preemption: RNG state in checkpoints, ``resume=auto``, checkpoint-and-requeue on SLURM's signal.

Design (see docs/distributed.md, preemption and resume):

* Every checkpoint holds the RNG states (torch CPU, the rank's CUDA device, Python, NumPy) of every rank,
  written by :meth:`SlimGAN.on_save_checkpoint` and put back right before the first resumed batch,
  so a resumed run draws the same noise as an uninterrupted one. The data order comes back through
  the stateful loader (:mod:`slimgan_pl.data.resumable`).
* ``resume=auto``: a run whose ``paths.output_dir`` already holds checkpoints continues from the newest
  one that loads (an explicit ``ckpt_path`` wins); ``resume=never`` always starts fresh.
* :class:`FinalIterationCheckpoint`: Lightning's ``ModelCheckpoint`` whose ``last.ckpt`` also holds
  the final iteration when ``train.g_steps`` is not a multiple of ``train.checkpoint_every`` (Lightning
  leaves it at the last periodic save, so evaluation after training would read stale weights).
* :class:`PreemptionCheckpoint`: on SLURM's warning signal (``--signal=USR1@<s>``, set by
  ``hydra/launcher=slurm``) finish the current iteration, save ``last.ckpt`` and ``scontrol requeue``
  the job; on SIGTERM (scancel, SLURM preemption or requeue, ``kill``) or the warning signal outside
  SLURM, save and stop. The requeued job runs the same Hydra job in the same run directory, and
  ``resume=auto`` picks the checkpoint up.
  It replaces Lightning's own SLURM handler (which saves ``hpc_ckpt_*.ckpt`` from inside the signal
  handler, possibly between a D and a G step) and submitit's (USR2: resubmits without saving).
"""

from __future__ import annotations

import csv
import logging
import os
import random
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.distributed as dist
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.loggers.csv_logs import ExperimentWriter

log = logging.getLogger(__name__)

RESUME_MODES = ("auto", "never")
LAST_CHECKPOINT = Path("checkpoints") / "last.ckpt"


# ----------------------------------------------------------------------------- RNG state
def rng_state(noise: torch.Generator | None = None) -> dict[str, Any]:
    """This process's RNG states in a form ``torch.load(weights_only=True)`` accepts (tensors, ints, tuples);
    with ``noise``, also that generator's (a DDP rank's training-noise stream) and its device type.

    CUDA: only the current device's state (the one this rank draws on). One state per visible GPU
    would tie the checkpoint to the GPU count: a run continued on fewer GPUs could not restore it."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    if noise is not None:
        state["noise"] = noise.get_state()
        state["noise_device"] = noise.device.type
    return state


def set_rng_state(state: dict[str, Any], noise: torch.Generator | None = None) -> None:
    """Inverse of :func:`rng_state`. What cannot be carried over to this process is skipped with a
    one-line warning, never an error: a CUDA state on a machine without CUDA; a training-noise state
    of another device type (a CUDA generator's state is 16 bytes, a CPU one's 5056), in which case
    ``noise`` keeps the seed it has (:meth:`SlimGAN.on_train_start` seeds it from seed, rank and step,
    so the continued run is still deterministic, only not the uninterrupted run's noise)."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state:
        _set_cuda_rng_state(state["cuda"])
    if noise is not None and "noise" in state:
        saved, device = state["noise"], state.get("noise_device")
        if (device is not None and device != noise.device.type) or saved.numel() != noise.get_state().numel():
            log.warning(
                "the checkpoint's training-noise RNG state is for %s, this run draws noise on %s: "
                "the noise stream is reseeded from (seed, rank, step) instead of continued",
                device or "another device type",
                noise.device.type,
            )
        else:
            noise.set_state(saved)


def _set_cuda_rng_state(saved: torch.Tensor | list[torch.Tensor] | tuple[torch.Tensor, ...]) -> None:
    """Restore the current CUDA device's generator from a checkpoint's ``cuda`` entry: one state
    (this format) or, from older checkpoints, one per GPU of the saving machine (the current
    device's index is used when it exists there, else nothing is restored)."""
    if not torch.cuda.is_available():
        log.warning("the checkpoint holds a CUDA RNG state but this run has no GPU: not restored")
        return
    if isinstance(saved, (list, tuple)):
        index = torch.cuda.current_device()
        if index >= len(saved):
            log.warning(
                "the checkpoint holds CUDA RNG states of %d GPUs, this rank uses GPU %d: not restored",
                len(saved),
                index,
            )
            return
        saved = saved[index]
    torch.cuda.set_rng_state(saved)


def gather_rng_states(noise: torch.Generator | None = None) -> list[dict[str, Any]]:
    """Every rank's :func:`rng_state`, indexed by global rank (collective under DDP: call on all ranks,
    as Lightning's ``dump_checkpoint`` does)."""
    mine = rng_state(noise)
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        states: list[Any] = [None] * dist.get_world_size()
        dist.all_gather_object(states, {k: _to_cpu(v) for k, v in mine.items()})
        return states
    return [mine]


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.cpu()
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def pick_rng_state(states: list[dict[str, Any]], rank: int) -> dict[str, Any]:
    """This rank's saved state; rank 0's (with a warning) when the world size changed."""
    if rank < len(states):
        return states[rank]
    log.warning("checkpoint holds RNG states of %d ranks, this is rank %d: using rank 0's", len(states), rank)
    return states[0]


# ----------------------------------------------------------------------------- resume=auto
def check_resume_settings(resume: str, ckpt_path: str | None) -> None:
    """ValueError (one line) for a ``resume`` mode not in :data:`RESUME_MODES` or a ``ckpt_path`` that is
    not a file; cheap (reads nothing), so ``build`` checks it before anything else starts."""
    if resume not in RESUME_MODES:
        raise ValueError(f"resume must be one of {RESUME_MODES}, got {resume!r}")
    if ckpt_path is not None and not Path(ckpt_path).is_file():
        raise ValueError(f"ckpt_path={ckpt_path!r} is not a file")


def resume_checkpoint(resume: str, ckpt_path: str | None, output_dir: str | os.PathLike) -> str | None:
    """The checkpoint ``trainer.fit`` should start from: ``ckpt_path`` when given (it must load safely,
    else :class:`~slimgan_pl.checkpoint.CheckpointError`), else with ``resume=auto`` the newest checkpoint
    of the run directory that loads (damaged ones are reported and set aside, see
    :func:`~slimgan_pl.checkpoint_io.newest_loadable_checkpoint`), else None (fresh)."""
    from pytorch_lightning.utilities.rank_zero import rank_zero_only

    from slimgan_pl.checkpoint import read_checkpoint  # imports the model, which imports this module
    from slimgan_pl.checkpoint_io import newest_loadable_checkpoint

    check_resume_settings(resume, ckpt_path)
    if ckpt_path is not None:
        read_checkpoint(ckpt_path)  # one-line CheckpointError: truncated, foreign, or unsafe (pickled code)
        return str(ckpt_path)
    if resume != "auto":
        return None
    # Only rank 0 renames damaged files (other DDP ranks start later and follow its choice).
    chosen = newest_loadable_checkpoint(
        Path(output_dir) / LAST_CHECKPOINT.parent, rename=getattr(rank_zero_only, "rank", 0) == 0
    )
    return str(chosen) if chosen is not None else None


# Hyper-parameters that shape the networks (their weights, BN statistics or function): a checkpoint
# with other values cannot continue under this config. {hparam: config key}; generator.* and
# discriminator.* are compared key by key (model.generator.*), except the initialisation.
NETWORK_HPARAMS = {
    "widths": "slim.widths",
    "n_share": "slim.n_share",
    "mode": "slim.mode",
    "range": "slim.range",
    "baseline": "model.baseline",
}
_INIT_ONLY = ("init", "bias_init")  # only the starting weights, which the checkpoint replaces


def network_differences(saved: dict[str, Any], configured: dict[str, Any]) -> list[str]:
    """``key: <checkpoint value> in the checkpoint, <config value> now`` for every network setting that
    differs between a checkpoint's ``hyper_parameters`` and the model built from the config."""
    # A setting the checkpoint does not record (saved before it existed) is not compared.
    pairs: list[tuple[str, Any, Any]] = []
    for net in ("generator", "discriminator"):
        old, new = dict(saved.get(net) or {}), dict(configured.get(net) or {})
        for key in sorted(old.keys() - set(_INIT_ONLY)):
            pairs.append((f"model.{net}.{key}", old[key], new.get(key)))
    for hparam, key in NETWORK_HPARAMS.items():
        if hparam not in saved or (hparam == "range" and configured.get("mode") != "universal"):
            continue  # slim.range is read only by universal models
        pairs.append((key, saved[hparam], configured.get(hparam)))
    if "ema_decay" in saved:  # an EMA generator (ema=default) or none: its weights are in the checkpoint or not
        ema_old, ema_new = saved["ema_decay"] is not None, configured.get("ema_decay") is not None
        pairs.append(("ema", "default" if ema_old else "none", "default" if ema_new else "none"))
    return [f"{key}: {_plain(a)} in the checkpoint, {_plain(b)} now" for key, a, b in pairs if _plain(a) != _plain(b)]


def _plain(value: Any) -> Any:
    """Config containers and tuples compare (and print) as plain lists and dicts."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    return value


def check_checkpoint_fits(ckpt_path: str, model: pl.LightningModule, explicit: bool) -> dict[str, Any]:
    """ValueError (one line) when the checkpoint ``trainer.fit`` would load was trained with other network
    settings than ``model`` (built from the config): Lightning would stop with a long size-mismatch
    traceback, or load weights into a network they were not trained for. ``explicit``: the checkpoint
    came from ``ckpt_path=`` (else from the run folder, ``--resume`` / ``resume=auto``). The file is
    only read. Returns the checkpoint (read with ``weights_only=True``)."""
    from slimgan_pl.checkpoint import read_checkpoint

    checkpoint = read_checkpoint(ckpt_path)
    differences = network_differences(dict(checkpoint["hyper_parameters"]), dict(model.hparams))
    if differences:
        fresh = "drop ckpt_path=" if explicit else "a new run folder: no --resume, or another task_name / hydra.run.dir"
        raise ValueError(
            f"checkpoint {ckpt_path} was trained with other network settings: {'; '.join(differences)}. "
            f"Continue it with its own (drop these overrides), or train these from scratch ({fresh}); "
            "the checkpoint is unchanged"
        )
    return checkpoint


# ----------------------------------------------------------------------------- preemption
def in_slurm_job() -> bool:
    """True inside a SLURM batch job (not an interactive ``srun bash``), where requeueing makes sense."""
    return "SLURM_JOB_ID" in os.environ and os.environ.get("SLURM_JOB_NAME") not in ("bash", "interactive")


class FinalIterationCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` that writes ``last.ckpt`` when training ends unless that step was just saved.

    Lightning saves ``last`` only together with a periodic checkpoint, so with ``g_steps=1000`` and
    ``checkpoint_every=300`` its ``last.ckpt`` would hold iteration 900; ``slimgan-eval``,
    ``evaluate.after_training`` and ``resume=auto`` all read ``last.ckpt``.
    """

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if 0 < trainer.max_steps and trainer.global_step < trainer.max_steps:
            # Stopped early (PreemptionCheckpoint saved last.ckpt at the end of the last iteration). Any save
            # now, Lightning's own included (``ModelCheckpoint.on_train_end`` writes ``last.ckpt`` when this
            # process saved no periodic checkpoint yet), would record the epoch as ended after the loop
            # unwound: the resumed run would start a new epoch (another data order) instead of continuing.
            return
        super().on_train_end(trainer, pl_module)
        if self.save_last and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


class PreemptionCheckpoint(pl.Callback):
    """On ``signal`` (SLURM's warning signal, default SIGUSR1) or SIGTERM: save ``<dirpath>/last.ckpt``
    at the end of the current iteration, then, for ``signal`` inside a SLURM job with ``requeue: true``,
    requeue the job; then stop training. :attr:`preempted` tells the caller the run did not finish,
    :attr:`requeued` that SLURM will run it again; :attr:`start_iteration` is where this process began
    (> 0 after a resume).

    The handler only sets a flag: the checkpoint is written between iterations, like the periodic
    ones, so resuming from it is exact (same weights, optimizer, RNG and data order).

    One process reads the flag after every iteration (a Python attribute: no host sync). Under DDP the
    ranks must agree (the save is collective, and a signal may reach one rank only), which costs a
    collective and a host sync; they agree every ``poll_every`` iterations (all ranks poll at the same
    iterations, so the state saved is one iteration boundary of every rank), i.e. a signal is acted on
    up to ``poll_every - 1`` iterations after it arrives. Lightning's own per-iteration SIGTERM
    broadcast under DDP is switched off: this callback owns SIGTERM.
    """

    def __init__(self, dirpath: str, signal_name: str = "SIGUSR1", requeue: bool = True, poll_every: int = 10) -> None:
        super().__init__()
        sig = getattr(signal, signal_name, None) if signal_name.startswith("SIG") else None
        if not isinstance(sig, signal.Signals):
            raise ValueError(
                f"callbacks.preemption.signal_name must be a signal name such as SIGUSR1, got {signal_name!r}"
            )
        if isinstance(poll_every, bool) or not isinstance(poll_every, int) or poll_every < 1:
            raise ValueError(f"callbacks.preemption.poll_every must be an integer >= 1, got {poll_every!r}")
        self.dirpath, self.signal, self.requeue, self.poll_every = Path(dirpath), sig, requeue, poll_every
        self.received: int | None = None
        self.preempted = self.requeued = False
        self.start_iteration: int | None = None
        self._previous: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        self.received = signum
        previous = self._previous.get(signum)
        if signum == signal.SIGTERM and callable(previous):  # keep e.g. submitit's logging
            previous(signum, frame)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Registered before Lightning's signal connector runs (right after on_fit_start): Lightning then
        # skips its own SLURM requeue handler for this signal.
        if threading.current_thread() is threading.main_thread():
            for sig in {self.signal, signal.SIGTERM}:
                self._previous[sig] = signal.getsignal(sig)
                signal.signal(sig, self._handler)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.start_iteration = int(getattr(pl_module, "iteration", trainer.global_step))  # after any restore
        # Lightning has now put its own SIGTERM handler first; it would end training at the end of the
        # batch in which SIGTERM arrives, before this callback's next on_train_batch_end could save
        # (a SIGTERM after this batch's save is lost). Ours alone decides when to stop.
        if threading.current_thread() is threading.main_thread() and signal.SIGTERM in self._previous:
            signal.signal(signal.SIGTERM, self._handler)
            # Lightning broadcasts its SIGTERM flag from rank 0 before every DDP batch (a collective and a
            # host sync per iteration); with its handler replaced the flag stays down, and the poll below
            # covers it. Instance attribute: a Lightning without this method is unaffected.
            epoch_loop = trainer.fit_loop.epoch_loop
            if trainer.world_size > 1 and hasattr(epoch_loop, "_broadcast_sigterm_tensor"):
                epoch_loop._broadcast_sigterm_tensor = lambda: None

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self.preempted or 0 < trainer.max_steps <= trainer.global_step:
            return  # the last iteration: the run ends now and saves its final checkpoint anyway
        stop = self.received is not None or trainer.received_sigterm
        if trainer.world_size > 1:  # every rank must agree (the save below is collective)
            if int(getattr(pl_module, "iteration", trainer.global_step)) % self.poll_every != 0:
                return  # not a poll iteration: no collective, no host sync
            stop = bool(trainer.strategy.reduce_boolean_decision(stop, all=False))
        if not stop:
            return
        self.preempted = True
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        # Requeue only on the warning signal: a SIGTERM comes from scancel (the job must end) or from
        # SLURM's own preemption / `scontrol requeue` (SLURM requeues the job itself).
        requeue = self.requeue and in_slurm_job() and self.received == self.signal
        print(
            f"preemption signal: saved {path} at iteration {getattr(pl_module, 'iteration', '?')}; "
            f"{'requeueing SLURM job ' + os.environ['SLURM_JOB_ID'] if requeue else 'stopping'}",
            flush=True,
        )
        if requeue and trainer.is_global_zero:
            job = os.environ["SLURM_JOB_ID"]
            if os.environ.get("SLURM_ARRAY_JOB_ID"):
                job = f"{os.environ['SLURM_ARRAY_JOB_ID']}_{os.environ['SLURM_ARRAY_TASK_ID']}"
            result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
            if result.returncode != 0:
                print(f"scontrol requeue {job} failed: {result.stderr.strip()}", flush=True)
        self.requeued = requeue
        trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore_handlers()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        self._restore_handlers()

    def _restore_handlers(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous = {}


# ----------------------------------------------------------------------------- logs
class _AppendingExperimentWriter(ExperimentWriter):
    """Lightning's CSV writer deletes an existing ``metrics.csv`` when it starts; a resumed run keeps
    it and appends (rows logged after the checkpoint and before the interruption appear twice; the
    later one belongs to the weights that were kept)."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as f:
                header = next(csv.reader(f), [])
            self.metrics_keys = list(header)  # new keys rewrite the header and keep the old rows


class ResumableCSVLogger(CSVLogger):
    """``CSVLogger`` that appends to an existing ``metrics.csv`` instead of deleting it (resume=auto)."""

    @property
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingExperimentWriter(log_dir=self.log_dir)
        return self._experiment
