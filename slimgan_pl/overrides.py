"""Command-line overrides that would go wrong quietly: a key the config does not have, and a ``+key=value``
that adds a key nothing reads.

Hydra answers ``train.gsteps=10`` (a typo of ``train.g_steps``) with "To append to your config use
+train.gsteps=10", and that ``+`` form then trains with the key ignored. Here the first becomes one line
with the closest existing key (:func:`unknown_key_message`), and the second is refused before training
(:func:`check_added_keys`) unless something reads the added key: a constructor argument of the node's
``_target_`` (``+trainer.enable_checkpointing=false``: a ``pytorch_lightning.Trainer`` argument), of the
generator or discriminator class (``model.generator.*``), or of ``SlimGAN`` (``slim.*``, ``optim.*``,
``ema.*``). New top-level keys (``+note=...``, a tag in the saved config) and config-group additions
(``+experiment=NAME``) stay allowed. Everything here is cheap and imports no torch until a check needs
a class signature.
"""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# Hydra overrides that change no config key (sweeps are values of these keys; hydra.* is Hydra's own).
_SKIPPED_PREFIXES = ("hydra.", "hydra/", "~")


def config_keys(cfg: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Every dotted key of ``cfg`` (nodes and leaves), e.g. ``train``, ``train.g_steps``."""
    keys = []
    for name, value in cfg.items():
        key = f"{prefix}{name}"
        keys.append(key)
        if isinstance(value, Mapping):
            keys.extend(config_keys(value, key + "."))
    return keys


def closest_key(key: str, keys: Iterable[str]) -> str | None:
    """The existing key ``key`` most likely means (difflib): a sibling with a close name first, then
    any close key (never ``key`` itself or a section above it)."""
    parent, _, name = key.rpartition(".")
    keys = [k for k in keys if k != key and not key.startswith(k + ".")]
    siblings = {k.rpartition(".")[2]: k for k in keys if k.rpartition(".")[0] == parent}
    match = difflib.get_close_matches(name, list(siblings), n=1, cutoff=0.6)
    if match:
        return siblings[match[0]]
    match = difflib.get_close_matches(key, keys, n=1, cutoff=0.8)
    return match[0] if match else None


def _plain(cfg: Any) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(cfg, resolve=False) if OmegaConf.is_config(cfg) else cfg


def _composed_keys(overrides: Sequence[str], left_out: str) -> list[str]:
    """The keys of the config that ``overrides`` compose (without ``left_out`` and any sweep), or of the
    base config when they do not compose."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from slimgan_pl.config import config_dir, register_resolvers

    register_resolvers()
    usable = [
        o
        for o in overrides
        if "=" in o
        and not o.startswith(("-", *_SKIPPED_PREFIXES))
        and o.split("=", 1)[0].lstrip("+") != left_out
        and "," not in o.split("=", 1)[1]  # a -m sweep (a=1,2) does not compose
    ]
    for attempt in (usable, []):
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
                return config_keys(_plain(compose("config", overrides=attempt)))
        except Exception:  # noqa: BLE001 - a second bad override: suggest from the base config
            continue
        finally:
            GlobalHydra.instance().clear()
    return []


def unknown_key_message(key: str, value: str, overrides: Sequence[str], prog: str) -> str:
    """One line for ``key=value`` naming a key the composed config does not have, with the closest
    existing key; no advice to add it with ``+`` (nothing would read it)."""
    close = closest_key(key, _composed_keys(overrides, key))
    hint = f"did you mean {close}={value}? " if close else ""
    return f"{key} is not a config key: {hint}(every key: {prog} --cfg job)"


def _accepted(target: Any) -> tuple[set[str], bool]:
    """(constructor argument names, takes **kwargs) of a class or function."""
    signature = inspect.signature(target)
    params = signature.parameters
    return set(params) - {"self"}, any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _reader(cfg: Mapping[str, Any], parent: list[str]) -> tuple[set[str], bool] | None:
    """For the keys of the node at ``parent``: (the argument names of the constructor that receives
    them, whether it takes **kwargs), or None when no constructor receives that node's keys."""
    owner: Any = cfg
    for part in parent:
        owner = owner.get(part) if isinstance(owner, Mapping) else None
    if isinstance(owner, Mapping) and "_target_" in owner:  # instantiated: trainer, data, callbacks.*, logger.*
        from hydra.utils import get_object

        try:
            return _accepted(get_object(owner["_target_"]))
        except Exception:  # noqa: BLE001 - an unloadable target is reported when it is instantiated
            return None
    if parent in (["model", "generator"], ["model", "discriminator"]) and isinstance(owner, Mapping):
        from slimgan_pl.models import DISCRIMINATORS, GENERATORS

        table = GENERATORS if parent[1] == "generator" else DISCRIMINATORS
        entry = table.get(owner.get("arch"))
        return _accepted(entry[0]) if entry else None
    if parent in (["slim"], ["optim"], ["ema"]):  # keyword arguments of SlimGAN (ema.x -> ema_x)
        from slimgan_pl.module import SlimGAN

        names, var_kw = _accepted(SlimGAN.__init__)
        if parent == ["ema"]:
            names = {n.removeprefix("ema_") for n in names if n.startswith("ema_")}
        return names, var_kw
    return None


INSTANTIATED_SECTIONS = ("callbacks", "logger")  # train.build instantiates each of their nodes


def check_added_keys(cfg: Mapping[str, Any], overrides: Sequence[str]) -> None:
    """ValueError (one line) for a ``+a.b=value`` override (a key Hydra added, the config had none) that
    nothing reads: under a section whose keys are fixed, and not an argument of the constructor that
    receives that section. ``++key=value`` (force) and top-level keys are left alone."""
    cfg = _plain(cfg)
    keys = config_keys(cfg)
    for override in overrides:
        if not override.startswith("+") or override.startswith("++") or "=" not in override:
            continue
        key, value = override[1:].split("=", 1)
        if "." not in key or "@" in key or "/" in key or key.startswith(_SKIPPED_PREFIXES):
            continue  # a new top-level key (a tag), or a config group added (+experiment=NAME)
        path = key.split(".")
        if path[0] in INSTANTIATED_SECTIONS and len(path) == 3 and path[2] == "_target_":
            continue  # a new callback / logger: every node of these sections is instantiated by slimgan-train
        reader = _reader(cfg, path[:-1])
        if reader is not None and (path[-1] in reader[0] or reader[1]):
            continue
        close = closest_key(key, keys)
        hint = f"did you mean {close}={value} (no +)?" if close else f"{'.'.join(path[:-1])} has no {path[-1]}"
        raise ValueError(
            f"+{key}={value} adds a key that nothing reads, so it would be ignored: {hint} "
            f"(every key: slimgan-train --cfg job)"
        )
