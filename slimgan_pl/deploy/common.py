"""Pieces shared by the deploy tools: which generator weights to use, CLI error reporting."""

from __future__ import annotations

import sys
from typing import NoReturn

# The choice of weights and BN statistics is shared with slimgan-eval: see slimgan_pl.inference.
from slimgan_pl.inference import WEIGHTS, prepare_sampling_generator, select_generator

__all__ = ["WEIGHTS", "fail", "prepare_sampling_generator", "select_generator"]


def fail(prog: str, error: BaseException | str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: the CLIs' way of reporting a user error."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    sys.exit(code)
