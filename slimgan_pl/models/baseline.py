"""The official "individually trained GAN" baseline (the official ``examples/baseline.py``): ordinary,
native networks of ONE width, G with ``ngf * g_width`` channels and D with ``ndf * d_width``, each
built and initialised at that size (``model.baseline.g_width`` / ``model.baseline.d_width``).

Why not train ``slim.widths=[w]``: that slices full-size tensors, whose initialisation was scaled
for the full fan-in/fan-out, so width w starts with weights about 1/sqrt(w) times a native
network's (2x at 0.25); that changes the output scale and Adam's relative steps.

The native generator answers to width ``g_width`` (:class:`NativeGenerator`), so sample grids,
FID logs, ``slimgan-eval`` and ``slimgan-export`` name it by that width, exactly like a SlimGAN width.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from slimgan_pl.models.generators import SlimmableGenerator, build_generator
from slimgan_pl.nn import slim_channels

BASELINE_KEYS = ("g_width", "d_width")


@dataclass(frozen=True)
class BaselineWidths:
    """Width multipliers of the native baseline: G has ``slim_channels(ngf, g_width)`` channels, D
    ``slim_channels(ndf, d_width)``."""

    g_width: float
    d_width: float


def _width(value: Any, key: str) -> float | None:
    if value is None:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or not 0.0 < float(value) <= 1.0:
        raise ValueError(f"model.baseline.{key} must be a number in (0, 1] or null (off), got {value!r}")
    return float(value)


def check_baseline(baseline: Mapping[str, Any] | None) -> BaselineWidths | None:
    """``model.baseline`` -> :class:`BaselineWidths`, or None when off (``g_width`` null). ``d_width``
    null means a full-size D (1.0, the official script's default ``width_mult_d``)."""
    if baseline is None:
        return None
    if not isinstance(baseline, Mapping):
        raise ValueError(f"model.baseline must be a mapping with keys {list(BASELINE_KEYS)}, got {baseline!r}")
    unknown = sorted(set(baseline) - set(BASELINE_KEYS))
    if unknown:
        raise ValueError(f"model.baseline has unknown keys {unknown}; allowed: {list(BASELINE_KEYS)}")
    g_width, d_width = _width(baseline.get("g_width"), "g_width"), _width(baseline.get("d_width"), "d_width")
    if g_width is None:
        if d_width is not None:
            raise ValueError(
                f"model.baseline.d_width={d_width} needs model.baseline.g_width (a number in (0, 1]); "
                "g_width null turns the baseline off"
            )
        return None
    return BaselineWidths(g_width, 1.0 if d_width is None else d_width)


def _channels(kwargs: Mapping[str, Any], key: str, section: str) -> int:
    value = kwargs.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"model.{section}.{key} must be an integer >= 1 to build the native baseline, got {value!r}")
    return value


def native_discriminator_kwargs(kwargs: Mapping[str, Any], d_width: float) -> dict[str, Any]:
    """The discriminator's constructor kwargs with ``ndf`` cut to the native baseline's D width."""
    return {**kwargs, "ndf": slim_channels(_channels(kwargs, "ndf", "discriminator"), d_width)}


class NativeGenerator(SlimmableGenerator):
    """A native (not sliced) generator of one width: architecture ``arch`` built with
    ``ngf' = slim_channels(ngf, width)`` (= ``int(ngf * width)``, as the official baseline) and
    initialised by the architecture's own rule at that size.

    It answers to ``width`` (its only trained width): ``forward(z, width)`` runs the inner network
    ``net`` at its full size. Anything that walks the modules with a width (cost, export) must use
    :meth:`network_at` to get (``net``, 1.0).
    """

    def __init__(self, arch: str, width: float, **kwargs: Any) -> None:
        native_ngf = slim_channels(_channels(kwargs, "ngf", "generator"), width)
        net = build_generator(arch, [1.0], **{**kwargs, "ngf": native_ngf})
        super().__init__([width], net.nz, net.img_channels, net.img_size, net.num_classes)
        self.width, self.native_ngf = float(width), native_ngf
        self.net = net

    def network_at(self, width: float) -> tuple[SlimmableGenerator, float]:
        """(the native network, the width to run it at) for this generator's ``width``."""
        self.check_width(width)
        return self.net, 1.0

    def forward(self, z: torch.Tensor, width: float, y: torch.Tensor | None = None) -> torch.Tensor:
        net, inner_width = self.network_at(width)
        return net(z, width=inner_width, y=y)


def build_model_generator(
    generator: Mapping[str, Any], widths: list[float], baseline: BaselineWidths | None
) -> SlimmableGenerator:
    """The generator a SlimGAN run trains: the slimmable ``generator["arch"]`` at ``widths``, or the
    native baseline generator of width ``baseline.g_width``."""
    kwargs = {k: v for k, v in generator.items() if k != "arch"}
    if baseline is None:
        return build_generator(generator["arch"], widths, **kwargs)
    return NativeGenerator(generator["arch"], baseline.g_width, **kwargs)
