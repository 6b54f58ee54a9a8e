"""Pieces shared by the deploy tools: which generator weights to use, CLI error reporting."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, NoReturn

from slimgan_pl.choices import WEIGHTS

if TYPE_CHECKING:
    from slimgan_pl.inference import prepare_sampling_generator, select_generator

__all__ = ["WEIGHTS", "fail", "prepare_sampling_generator", "select_generator"]


def __getattr__(name: str) -> Any:
    # The choice of weights and BN statistics is shared with slimgan-eval: see slimgan_pl.inference,
    # loaded (with torch) on first use, so that the tools' --help answers without it.
    if name in ("prepare_sampling_generator", "select_generator"):
        from slimgan_pl import inference

        return getattr(inference, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def fail(prog: str, error: BaseException | str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: the CLIs' way of reporting a user error."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    sys.exit(code)
