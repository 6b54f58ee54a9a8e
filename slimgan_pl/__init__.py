"""slimgan-pl: slimmable GANs (SlimGAN) with PyTorch Lightning and Hydra."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from slimgan_pl.module import SlimGAN

__all__ = ["SlimGAN"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # SlimGAN is imported on first use: torch and Lightning take seconds to load, and torch-free parts of
    # the package (slimgan_pl.metrics.paired, used by the study's --plan and report) need neither
    if name == "SlimGAN":
        from slimgan_pl.module import SlimGAN

        return SlimGAN
    raise AttributeError(f"module 'slimgan_pl' has no attribute {name!r}")
