"""Slimmable layers: one set of weights, run at a width w in (0, 1] by using the first channels.

Every layer takes the width as an explicit ``forward`` argument; there is no global width flag.
The channel count at width w is :func:`slim_channels`: ``max(1, floor(C * w))`` (with a 1e-9
tolerance so that e.g. 0.29 * 100 gives 29, not 28). It is monotone in w, so a narrow width's
channels are always a prefix of a wider width's channels (the nesting property).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def slim_channels(channels: int, width: float) -> int:
    """Active channels of a layer with ``channels`` at width ``width``: max(1, floor(channels * width))."""
    if not 0.0 < width <= 1.0:
        raise ValueError(f"width must be in (0, 1], got {width}")
    return max(1, int(math.floor(channels * width + 1e-9)))


def check_widths(widths: Sequence[float], key: str = "widths") -> list[float]:
    """Validate a width list: non-empty, strictly increasing, every value in (0, 1]. ``key``: the name the
    message uses (the config boundary passes its key path, e.g. ``slim.widths``; layers know none)."""
    try:
        widths = [float(w) for w in widths]
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a list of numbers in (0, 1], got {widths!r}") from None
    if not widths:
        raise ValueError(f"{key} must list at least one width in (0, 1]")
    bad = [w for w in widths if not 0.0 < w <= 1.0]
    if bad:
        raise ValueError(f"{key} values must be in (0, 1], got {bad} in {widths}")
    if any(b <= a for a, b in zip(widths, widths[1:])):
        raise ValueError(f"{key} must be strictly increasing without duplicates, got {widths}")
    return widths


def width_index(widths: Sequence[float], width: float) -> int:
    """Position of ``width`` in the trained ``widths`` (float tolerance 1e-6)."""
    for i, w in enumerate(widths):
        if abs(w - width) < 1e-6:
            return i
    raise ValueError(f"width {width} is not a trained width; trained widths are {list(widths)}")


class SlimmableLinear(nn.Linear):
    """Linear layer using ``weight[:out_w, :in_w]`` at width w.

    ``out_unit`` groups output features: a linear layer that is reshaped to (C, 4, 4) has
    ``out_unit=16`` so that the active outputs are whole channels.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        slice_in: bool = True,
        slice_out: bool = True,
        out_unit: int = 1,
    ) -> None:
        super().__init__(in_features, out_features, bias=bias)
        if out_features % out_unit:
            raise ValueError(f"out_features {out_features} is not a multiple of out_unit {out_unit}")
        self.slice_in, self.slice_out, self.out_unit = slice_in, slice_out, out_unit

    def active(self, width: float) -> tuple[int, int]:
        in_w = slim_channels(self.in_features, width) if self.slice_in else self.in_features
        out_w = (
            slim_channels(self.out_features // self.out_unit, width) * self.out_unit
            if self.slice_out
            else self.out_features
        )
        return in_w, out_w

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        in_w, out_w = self.active(width)
        bias = self.bias[:out_w] if self.bias is not None else None
        return F.linear(x, self.weight[:out_w, :in_w], bias)


class _SlimmableConvMixin:
    """(in, out) channels a conv layer uses at a width."""

    in_channels: int
    out_channels: int
    slice_in: bool
    slice_out: bool

    def active(self, width: float) -> tuple[int, int]:
        in_w = slim_channels(self.in_channels, width) if self.slice_in else self.in_channels
        out_w = slim_channels(self.out_channels, width) if self.slice_out else self.out_channels
        return in_w, out_w


class SlimmableConv2d(_SlimmableConvMixin, nn.Conv2d):
    """Conv2d using ``weight[:out_w, :in_w]`` at width w (groups=1)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        slice_in: bool = True,
        slice_out: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.slice_in, self.slice_out = slice_in, slice_out

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        in_w, out_w = self.active(width)
        bias = self.bias[:out_w] if self.bias is not None else None
        return F.conv2d(x, self.weight[:out_w, :in_w], bias, self.stride, self.padding)


class SlimmableConvTranspose2d(_SlimmableConvMixin, nn.ConvTranspose2d):
    """ConvTranspose2d at width w; its weight is (in, out, k, k), so it uses ``weight[:in_w, :out_w]``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        slice_in: bool = True,
        slice_out: bool = True,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.slice_in, self.slice_out = slice_in, slice_out

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:  # type: ignore[override]
        in_w, out_w = self.active(width)
        bias = self.bias[:out_w] if self.bias is not None else None
        return F.conv_transpose2d(x, self.weight[:in_w, :out_w], bias, self.stride, self.padding)


class SwitchableBatchNorm2d(nn.Module):
    """One private BatchNorm2d per width ("switchable BN"): own running statistics and own affine.

    The per-width layers are plain ``nn.BatchNorm2d`` so that tools that know BatchNorm (e.g.
    ``SyncBatchNorm.convert_sync_batchnorm``, exporters) handle them.
    """

    def __init__(
        self, num_features: int, widths: Sequence[float], affine: bool = True, momentum: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.widths = check_widths(widths)
        self.num_features = num_features
        self.bns = nn.ModuleList(
            nn.BatchNorm2d(slim_channels(num_features, w), affine=affine, momentum=momentum, eps=eps)
            for w in self.widths
        )

    def for_width(self, width: float) -> nn.BatchNorm2d:
        return self.bns[width_index(self.widths, width)]

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        return self.for_width(width)(x)
