"""Slimmable building blocks."""

from slimgan_pl.nn.slimmable import (
    SlimmableConv2d,
    SlimmableConvTranspose2d,
    SlimmableLinear,
    SwitchableBatchNorm2d,
    check_widths,
    slim_channels,
    width_index,
)

__all__ = [
    "SlimmableConv2d",
    "SlimmableConvTranspose2d",
    "SlimmableLinear",
    "SwitchableBatchNorm2d",
    "check_widths",
    "slim_channels",
    "width_index",
]
