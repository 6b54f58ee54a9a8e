"""Pieces shared by the deploy tools: which generator weights to use, CLI error reporting."""

from __future__ import annotations

import sys
from typing import NoReturn

from slimgan_pl.models import SlimmableGenerator
from slimgan_pl.module import SlimGAN

WEIGHTS = ("auto", "ema", "live")


def select_generator(model: SlimGAN, weights: str = "auto") -> tuple[SlimmableGenerator, str]:
    """(generator, "ema" | "live"): ``auto`` takes the EMA generator when the checkpoint has one."""
    if weights not in WEIGHTS:
        raise ValueError(f"--weights must be one of {list(WEIGHTS)}, got {weights!r}")
    ema = getattr(model, "generator_ema", None)
    if weights == "ema" and ema is None:
        raise ValueError("--weights ema: this checkpoint has no EMA generator (generator_ema); use --weights live")
    if weights == "live" or ema is None:
        return model.generator, "live"
    return ema, "ema"


def fail(prog: str, error: BaseException | str, code: int = 2) -> NoReturn:
    """One line on stderr, then exit: the CLIs' way of reporting a user error."""
    print(f"{prog}: error: {error}", file=sys.stderr)
    sys.exit(code)

