"""One safe way to open a SlimGAN checkpoint, shared by the deploy tools (and meant for ``slimgan-eval``).

:func:`load_slimgan` reads the file once with ``torch.load(weights_only=True)`` (no arbitrary
pickled code runs), checks that it is a Lightning checkpoint of a :class:`SlimGAN` whose
hyper-parameters name a known generator architecture, rebuilds the model from those
hyper-parameters and loads the weights strictly. Every problem becomes one
:class:`CheckpointError` whose one-line message names the file and what is wrong.
"""

from __future__ import annotations

import copy
import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from slimgan_pl.models import GENERATORS
from slimgan_pl.module import SlimGAN
from slimgan_pl.universal import CHECKPOINT_KEY_STATS, load_model_statistics_state

EMA_PREFIX = "generator_ema."  # state-dict prefix of the EMA generator (SlimGAN.generator_ema, ema=default)
_ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default format is a zip archive


class CheckpointError(Exception):
    """A file that cannot be used as a SlimGAN checkpoint; the message names the file and why."""


def run_directory(checkpoint: str | os.PathLike) -> Path:
    """``<run>/checkpoints/last.ckpt`` -> ``<run>``; any other checkpoint -> its folder."""
    path = Path(checkpoint)
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, read with ``weights_only=True``; :class:`CheckpointError` if the file
    is missing, unreadable, truncated, not a torch file, or not a Lightning checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path}: file does not exist")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path}: not a file")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... depending on the damage
        raise CheckpointError(f"checkpoint {path}: {_unreadable_reason(path, e)}") from None
    if not isinstance(payload, Mapping):
        raise CheckpointError(
            f"checkpoint {path}: holds a {type(payload).__name__}, not a Lightning checkpoint "
            "(a dict with 'state_dict' and 'hyper_parameters')"
        )
    for key in ("state_dict", "hyper_parameters"):
        if key not in payload:
            raise CheckpointError(
                f"checkpoint {path}: no '{key}' entry; not a checkpoint saved by a SlimGAN Lightning run"
            )
    return dict(payload)


def _unreadable_reason(path: Path, error: Exception) -> str:
    with path.open("rb") as f:
        head = f.read(4)
    if not head:
        return "file is empty"
    message = str(error)
    refused = re.search(r"GLOBAL (\S+) was not an allowed global|whose module (\S+) is blocked", message)
    if refused:
        name = refused.group(1) or refused.group(2)
        return (
            f"contains a pickled {name} that safe loading (weights_only=True) refuses; "
            "load it unsafely only if you trust its source"
        )
    if head == _ZIP_MAGIC:
        first_line = message.strip().splitlines()[0][:200] if message.strip() else type(error).__name__
        return f"torch archive is truncated or corrupted ({first_line})"
    return "not a torch checkpoint file (no torch.save archive inside)"


def _model_kwargs(path: Path, hparams: Mapping[str, Any]) -> dict[str, Any]:
    """The SlimGAN constructor arguments in ``hparams``, after checking the generator architecture."""
    if not isinstance(hparams, Mapping):
        raise CheckpointError(f"checkpoint {path}: 'hyper_parameters' is a {type(hparams).__name__}, not a dict")
    missing = [k for k in ("generator", "discriminator", "widths") if k not in hparams]
    if missing:
        raise CheckpointError(f"checkpoint {path}: hyper-parameters lack {missing}; not a SlimGAN checkpoint")
    gen = hparams["generator"]
    arch = gen.get("arch") if isinstance(gen, Mapping) else None
    if arch not in GENERATORS:
        raise CheckpointError(f"checkpoint {path}: generator architecture {arch!r} is not one of {sorted(GENERATORS)}")
    # Like Lightning, pass only the arguments SlimGAN takes (a newer checkpoint may carry more).
    accepted = set(inspect.signature(SlimGAN.__init__).parameters) - {"self"}
    return {k: v for k, v in hparams.items() if k in accepted}


def _split_ema(state: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    live = {k: v for k, v in state.items() if not k.startswith(EMA_PREFIX)}
    ema = {k[len(EMA_PREFIX) :]: v for k, v in state.items() if k.startswith(EMA_PREFIX)}
    return live, ema


def _load_weights(path: Path, model: SlimGAN, state: Mapping[str, torch.Tensor]) -> None:
    live, ema = _split_ema(state)
    if getattr(model, "generator_ema", None) is not None:
        live, ema = dict(state), {}  # the model knows generator_ema: load everything in one go
    try:
        model.load_state_dict(live, strict=True)
        if ema:
            # Checkpoint with EMA weights, model class without them (yet): keep them in a copy of
            # the generator so that the deploy tools can use them.
            model.generator_ema = copy.deepcopy(model.generator)
            model.generator_ema.load_state_dict(ema, strict=True)
    except RuntimeError as e:
        lines = str(e).strip().splitlines()  # "Error(s) in loading state_dict ...", then one line per problem
        detail = " ".join(line.strip() for line in lines[1:3])[:300]
        raise CheckpointError(
            f"checkpoint {path}: weights do not fit the architecture in its hyper-parameters ({detail})"
        ) from None


def load_slimgan(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> SlimGAN:
    """The :class:`SlimGAN` of a Lightning checkpoint, in eval mode on ``map_location``.

    Raises :class:`CheckpointError` (one line naming the file) for a missing, truncated or foreign
    file, a plain tensor, missing hyper-parameters, an unknown architecture or weights that do not
    fit the hyper-parameters. If the checkpoint holds EMA weights (``generator_ema.*``) they are
    available as ``model.generator_ema``.
    """
    path = Path(path)
    payload = read_checkpoint(path, map_location)
    kwargs = _model_kwargs(path, payload["hyper_parameters"])
    try:
        model = SlimGAN(**kwargs)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {path}: its hyper-parameters do not build a SlimGAN ({e})") from None
    _load_weights(path, model, payload["state_dict"])
    # universal models (slim.mode=universal): the BN statistics calibrated for the widths saved
    load_model_statistics_state(model, payload.get(CHECKPOINT_KEY_STATS))
    model.checkpoint_global_step = int(payload.get("global_step", 0))  # Lightning's count, for reports
    return model.to(map_location).eval()
