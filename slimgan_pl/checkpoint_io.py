"""Checkpoints that survive kills, full disks, divergence and damaged files.

* :func:`atomic_save`: write to a temporary file next to the target, fsync it, ``os.replace`` it over
  the target, fsync the folder. A kill at any moment leaves either the previous file or the new one,
  never a torn file; a failed write (ENOSPC, permission) removes the temporary file, keeps the
  previous checkpoint and raises :class:`CheckpointSaveError` (one line).
* :class:`SafeCheckpointIO`: Lightning's ``CheckpointIO`` for every save of a training run (periodic,
  ``last.ckpt``, preemption): :func:`atomic_save`, and it refuses to write a model state holding NaN/Inf
  (:class:`NonFiniteStateError`), so ``last.ckpt`` always stays the last finite state whatever the
  callbacks' order.
* :func:`newest_loadable_checkpoint`: ``resume=auto``'s choice: the newest checkpoint of a run folder
  that loads; each damaged one is reported in one line and renamed aside (``*.damaged``), never deleted.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.utilities.types import _PATH
from pytorch_lightning.plugins.io import TorchCheckpointIO

from slimgan_pl.checkpoint import CheckpointError, read_checkpoint

TEMP_SUFFIX = ".tmp"  # <name>.ckpt.tmp-<pid>: an unfinished write (ignored by resume selection)
DAMAGED_SUFFIX = ".damaged"  # <name>.ckpt.damaged[-N]: set aside by resume=auto because it does not load


class CheckpointSaveError(OSError):
    """A checkpoint could not be written (disk full, permission, ...); the previous file is intact."""


class NonFiniteStateError(ValueError):
    """Refused to save a checkpoint whose weights hold NaN or Inf."""


def atomic_save(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save(obj, path)`` that never leaves a partial ``path``: temp file + fsync + rename.

    Raises :class:`CheckpointSaveError` naming the file and the OS reason when writing fails; the
    previous ``path`` (if any) is untouched and the temporary file is removed.
    """
    path = Path(path)
    tmp = path.with_name(f"{path.name}{TEMP_SUFFIX}-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the rename makes it visible
        os.replace(tmp, path)  # atomic on POSIX: readers see the old or the new file
        _fsync_folder(path.parent)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        reason = errno.errorcode.get(e.errno, "") if e.errno else ""
        detail = f"{e.strerror or e}" + (f" ({reason})" if reason else "")
        error = CheckpointSaveError(f"cannot write checkpoint {path}: {detail}; existing checkpoints are intact")
        error.errno = e.errno
        raise error from e


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself (the folder entry); not possible on every OS/filesystem."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def nonfinite_tensors(state: dict[str, torch.Tensor]) -> list[str]:
    """Names of the floating tensors in ``state`` that hold a NaN or Inf (one device sync per call:
    only used at save time)."""
    names = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()]
    if not names:
        return []
    finite = torch.stack([torch.isfinite(state[k]).all().cpu() for k in names])
    return [k for k, ok in zip(names, finite.tolist()) if not ok]


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning ``CheckpointIO`` of training runs: atomic writes, and no checkpoint of a non-finite model."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        bad = nonfinite_tensors(checkpoint.get("state_dict", {}))
        if bad:
            raise NonFiniteStateError(
                f"refused to save {path}: {len(bad)} weight tensors hold NaN/Inf "
                f"({', '.join(bad[:3])}{', ...' if len(bad) > 3 else ''}); the previous "
                "checkpoint is kept"
            )
        atomic_save(checkpoint, path)


def _candidates(folder: Path) -> list[Path]:
    """The run's checkpoints, newest first (modification time; ``last.ckpt`` first among equals)."""
    files = [p for p in folder.glob("*.ckpt") if p.is_file()]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name == "last.ckpt"), reverse=True)


def set_aside(path: Path) -> Path:
    """Rename ``path`` to ``<path>.damaged`` (``.damaged-2``, ... if taken); returns the new path."""
    target, n = path.with_name(path.name + DAMAGED_SUFFIX), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}-{n}")
    os.replace(path, target)
    return target


def newest_loadable_checkpoint(folder: str | os.PathLike, rename: bool = True) -> Path | None:
    """The newest ``*.ckpt`` in ``folder`` that loads (``torch.load(weights_only=True)``, a Lightning
    checkpoint), or None. Each newer one that does not load is reported in one line (file, why) and,
    with ``rename``, set aside as ``<name>.damaged`` (kept for inspection, never deleted; pass
    ``rename=False`` on DDP ranks other than 0, which only follow rank 0's choice)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    for path in _candidates(folder):
        try:
            read_checkpoint(path)
        except CheckpointError as e:
            where = f"; kept aside as {set_aside(path).name}" if rename else ""
            print(f"resume: skipping {e}{where}", flush=True)
            continue
        return path
    return None
