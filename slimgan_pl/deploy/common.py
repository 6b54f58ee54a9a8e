"""Pieces shared by the deploy tools: which generator weights to use, CLI error reporting."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

from slimgan_pl.choices import WEIGHTS

if TYPE_CHECKING:
    from slimgan_pl.inference import prepare_sampling_generator, select_generator

__all__ = ["WEIGHTS", "fail", "prepare_sampling_generator", "select_generator"]


def library_attribute(module: str, library: str, name: str, names: tuple[str, ...] | None = None) -> Any:
    """``name`` of the module ``library``, imported (with torch) on first use: a command-line module's
    ``__getattr__`` re-exports its library this way, so that its ``--help`` answers before torch loads.
    ``names``: only these are forwarded (default: every public name)."""
    import importlib

    if name.startswith("__") or (names is not None and name not in names):  # __path__ etc.: not a library name
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    try:
        return getattr(importlib.import_module(library), name)
    except AttributeError:
        raise AttributeError(f"module {module!r} has no attribute {name!r}") from None


def __getattr__(name: str) -> Any:
    # The choice of weights and BN statistics is shared with slimgan-eval (slimgan_pl.inference).
    return library_attribute(__name__, "slimgan_pl.inference", name, ("prepare_sampling_generator", "select_generator"))


def fail(prog: str, error: BaseException | str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: the CLIs' way of reporting a user error."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    sys.exit(code)
