"""Slimmable generators. Every hidden channel count scales with the width; the latent input and the
image output channels do not (the output conv reads the first in_w channels at every width).

Class-conditional generation is a constructor option (``num_classes`` > 0), not a separate
architecture: SNResGAN-32 with ``num_classes`` is cGAN-PD-32's generator (conditional BN in the
residual blocks, ``cond_norm`` = ``scbn`` or ``switchable``; ``conf/model/cgan_pd32.yaml``), and
SNDCGAN with ``num_classes`` has a conditional BN after each up-convolution
(``conf/model/sndcgan32_cond.yaml``, the CPU-sized conditional model of ``experiment=fmnist_cond``).
Checkpoints keep ``num_classes``/``cond_norm`` in the generator's kwargs, so anything that rebuilds a
generator from them (``build_generator(arch, widths, **kwargs)``) gets the same model.

Every generator takes ``bias_init`` (``model.generator.bias_init``: ``default``, PyTorch's layer
default as both references, or ``zeros``); the ResNet generators take ``upsample``
(``model.generator.upsample``: ``bilinear``, align_corners=False, as the SlimGAN reference's
SNResGAN/cGAN-PD blocks; or ``nearest``, as BigGAN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from slimgan_pl.models.init import check_bias_init, init_biases, init_weight
from slimgan_pl.nn import (
    COND_NORMS,
    SlimmableConv2d,
    SlimmableConvTranspose2d,
    SlimmableLinear,
    SwitchableBatchNorm2d,
    check_widths,
    conditional_norm,
    width_index,
)


def _check_num_classes(num_classes: int | None) -> int:
    """``model.generator.num_classes``: None or 0 = unconditional, else the number of classes."""
    if num_classes is None:
        return 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(
            f"model.generator.num_classes must be an integer >= 0 (0 or null: unconditional), got {num_classes!r}"
        )
    return num_classes


class SlimmableGenerator(nn.Module):
    """Common interface: ``forward(z, width, y=None)`` returns images in [-1, 1].

    ``num_classes`` > 0: class-conditional, ``y`` (int64 class ids, shape (N,)) is required;
    0: unconditional, ``y`` must be None.
    """

    def __init__(
        self, widths: Sequence[float], nz: int, img_channels: int, img_size: int, num_classes: int | None = None
    ) -> None:
        super().__init__()
        self.widths = check_widths(widths)
        if nz < 1:
            raise ValueError(f"model.generator.nz must be >= 1, got {nz}")
        if img_channels not in (1, 3):
            raise ValueError(f"model.generator.img_channels must be 1 or 3, got {img_channels}")
        self.nz, self.img_channels, self.img_size = nz, img_channels, img_size
        self.num_classes = _check_num_classes(num_classes)
        # (w_min, 1.0) once made universally slimmable (slimgan_pl.universal): any width in it runs
        self.width_range: tuple[float, float] | None = None

    @property
    def n_classes(self) -> int:
        """Alias of :attr:`num_classes` (read by ``slimgan_pl.deploy``)."""
        return self.num_classes

    def check_width(self, width: float) -> None:
        if self.width_range is not None:  # universally slimmable: any width in the trained range
            w_min, w_max = self.width_range
            if not w_min - 1e-9 <= float(width) <= w_max + 1e-9:
                raise ValueError(f"width {width} is outside this universal generator's range [{w_min}, {w_max}]")
            return
        width_index(self.widths, width)  # raises with the list of trained widths

    def check_labels(self, z: torch.Tensor, y: torch.Tensor | None) -> None:
        """Conditional generators need ``y`` (N,) integer class ids; unconditional ones refuse it.
        (Class ids are not range-checked here: that would synchronise with the GPU every forward.)"""
        if self.num_classes and y is None:
            raise ValueError(
                f"this generator is class-conditional (model.generator.num_classes="
                f"{self.num_classes}): pass class labels y"
            )
        if not self.num_classes and y is not None:
            raise ValueError(
                "class labels y given, but this generator is unconditional (model.generator.num_classes=0)"
            )
        if y is not None and (y.shape != (z.shape[0],) or y.dtype.is_floating_point or y.dtype == torch.bool):
            raise ValueError(f"y must be integer class ids of shape ({z.shape[0]},), got {tuple(y.shape)} {y.dtype}")


UPSAMPLE_MODES = ("bilinear", "nearest")


def check_upsample(mode: str) -> str:
    """``model.generator.upsample``: one of :data:`UPSAMPLE_MODES`."""
    if mode not in UPSAMPLE_MODES:
        raise ValueError(f"model.generator.upsample must be one of {list(UPSAMPLE_MODES)}, got {mode!r}")
    return mode


def upsample2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Double the spatial size. ``bilinear`` uses align_corners=False (torchvision's and the SlimGAN
    reference's choice); ``nearest`` repeats every pixel 2x2 (BigGAN)."""
    if mode == "bilinear":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return F.interpolate(x, scale_factor=2, mode="nearest")


def _n_upsamplings(img_size: int, bottom: int) -> int:
    n = math.log2(img_size / bottom)
    if n != int(n) or n < 1:
        raise ValueError(f"img_size {img_size} is not bottom {bottom} times a power of two")
    return int(n)


class SNDCGANGenerator(SlimmableGenerator):
    """DCGAN generator of the SNGAN/SlimGAN recipes ("setting C").

    linear nz -> bottom^2 * ngf (no BN after); ``log2(img_size / bottom)`` stages of
    ConvTranspose 4x4/s2 halving channels, each followed by switchable BN and ReLU; conv 3x3 to
    image channels; tanh. ngf=512, bottom=4 gives SNDCGAN-32 (512 -> 256 -> 128 -> 64); ngf=512,
    bottom=6, 48px gives SNDCGAN-48 (same channels, 6 -> 48); ngf=1024, bottom=4, 64px gives
    SNDCGAN-64 (1024 -> 512 -> 256 -> 128 -> 64), as the reference.

    ``num_classes`` > 0 makes every stage's BN conditional (``cond_norm``: ``scbn`` or
    ``switchable``, as in cGAN-PD's blocks); ``cond_norm`` is validated, and ignored, when the
    generator is unconditional.
    """

    def __init__(
        self,
        widths: Sequence[float],
        nz: int = 128,
        ngf: int = 512,
        img_channels: int = 3,
        img_size: int = 32,
        bottom: int = 4,
        init: str = "xavier",
        num_classes: int | None = None,
        cond_norm: str = "scbn",
        bias_init: str = "default",
    ) -> None:
        super().__init__(widths, nz, img_channels, img_size, num_classes)
        self.bias_init = check_bias_init(bias_init, "model.generator.bias_init")
        if cond_norm not in COND_NORMS:
            raise ValueError(f"model.generator.cond_norm must be one of {sorted(COND_NORMS)}, got {cond_norm!r}")
        self.cond_norm = cond_norm
        n_up = _n_upsamplings(img_size, bottom)
        channels = [max(1, ngf // 2**i) for i in range(n_up + 1)]
        self.bottom = bottom
        self.fc = SlimmableLinear(nz, bottom * bottom * channels[0], slice_in=False, out_unit=bottom * bottom)
        self.ups = nn.ModuleList(
            SlimmableConvTranspose2d(c_in, c_out, 4, stride=2, padding=1) for c_in, c_out in zip(channels, channels[1:])
        )
        self.bns = nn.ModuleList(
            conditional_norm(cond_norm, c, self.num_classes, self.widths)
            if self.num_classes
            else SwitchableBatchNorm2d(c, self.widths)
            for c in channels[1:]
        )
        self.to_image = SlimmableConv2d(channels[-1], img_channels, 3, padding=1, slice_out=False)
        for m in (self.fc, *self.ups, self.to_image):
            init_weight(m, init)
        init_biases(self, bias_init, "model.generator.bias_init")

    def forward(self, z: torch.Tensor, width: float, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_width(width)
        self.check_labels(z, y)
        h = self.fc(z, width)
        h = h.view(z.shape[0], -1, self.bottom, self.bottom)
        for up, bn in zip(self.ups, self.bns):
            h = up(h, width)
            h = F.relu(bn(h, width, y) if self.num_classes else bn(h, width))
        return torch.tanh(self.to_image(h, width))


class SlimmableGBlock(nn.Module):
    """Residual up-block: BN-ReLU-up-conv3-BN-ReLU-conv3, plus up + 1x1 conv shortcut.

    With ``num_classes`` > 0 both BNs are conditional (``cond_norm``: ``scbn`` or ``switchable``,
    see :mod:`slimgan_pl.nn.conditional`) and ``forward`` needs ``y``. ``upsample``: ``bilinear``
    (align_corners=False, the SlimGAN reference's GBlock) or ``nearest``, on both paths.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[float],
        init: str = "xavier",
        num_classes: int = 0,
        cond_norm: str = "scbn",
        upsample: str = "bilinear",
    ) -> None:
        super().__init__()
        self.conditional = num_classes > 0
        self.upsample = check_upsample(upsample)

        def norm(channels: int) -> nn.Module:
            if self.conditional:
                return conditional_norm(cond_norm, channels, num_classes, widths)
            return SwitchableBatchNorm2d(channels, widths)

        self.bn1 = norm(in_channels)
        self.conv1 = SlimmableConv2d(in_channels, out_channels, 3, padding=1)
        self.bn2 = norm(out_channels)
        self.conv2 = SlimmableConv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = SlimmableConv2d(in_channels, out_channels, 1)
        init_weight(self.conv1, init, gain=math.sqrt(2))
        init_weight(self.conv2, init, gain=math.sqrt(2))
        init_weight(self.shortcut, init)

    def _norm(self, bn: nn.Module, x: torch.Tensor, width: float, y: torch.Tensor | None) -> torch.Tensor:
        return bn(x, width, y) if self.conditional else bn(x, width)

    def forward(self, x: torch.Tensor, width: float, y: torch.Tensor | None = None) -> torch.Tensor:
        h = upsample2x(F.relu(self._norm(self.bn1, x, width, y)), self.upsample)
        h = self.conv1(h, width)
        h = self.conv2(F.relu(self._norm(self.bn2, h, width, y)), width)
        return h + self.shortcut(upsample2x(x, self.upsample), width)


class SNResGANGenerator(SlimmableGenerator):
    """ResNet generator of the SNGAN/SlimGAN recipes.

    linear nz -> bottom^2 * ngf; ``log2(img_size / bottom)`` residual up-blocks; switchable BN; ReLU;
    conv 3x3 to image channels; tanh. ``halve_channels``: each up-block halves the channels
    (SNResGAN-48: 512 -> 256 -> 128 -> 64 from 6x6; SNResGAN-64: 1024 -> ... -> 64 from 4x4), else
    every block keeps ngf (SNResGAN-32: 256 -> 256), as the reference's plans.

    ``num_classes`` > 0 makes it class-conditional (cGAN-PD's generator): the residual blocks' BNs
    become conditional (``cond_norm``: ``scbn``, one class embedding shared by all widths and sliced,
    as SlimGAN; or ``switchable``, a private conditional BN per width, the ablation). The last BN
    before the output conv stays unconditional switchable BN, as the reference. ``cond_norm`` is
    validated, and ignored, when the generator is unconditional.

    ``upsample``: ``bilinear`` (default, the reference's blocks) or ``nearest``.
    """

    def __init__(
        self,
        widths: Sequence[float],
        nz: int = 128,
        ngf: int = 256,
        img_channels: int = 3,
        img_size: int = 32,
        bottom: int = 4,
        init: str = "xavier",
        num_classes: int | None = None,
        cond_norm: str = "scbn",
        halve_channels: bool = False,
        upsample: str = "bilinear",
        bias_init: str = "default",
    ) -> None:
        super().__init__(widths, nz, img_channels, img_size, num_classes)
        self.upsample = check_upsample(upsample)
        self.bias_init = check_bias_init(bias_init, "model.generator.bias_init")
        if cond_norm not in COND_NORMS:
            raise ValueError(f"model.generator.cond_norm must be one of {sorted(COND_NORMS)}, got {cond_norm!r}")
        self.cond_norm, self.halve_channels = cond_norm, halve_channels
        n_up = _n_upsamplings(img_size, bottom)
        channels = [max(1, ngf // 2**i) if halve_channels else ngf for i in range(n_up + 1)]
        self.bottom = bottom
        self.fc = SlimmableLinear(nz, bottom * bottom * ngf, slice_in=False, out_unit=bottom * bottom)
        self.blocks = nn.ModuleList(
            SlimmableGBlock(c_in, c_out, self.widths, init, self.num_classes, cond_norm, upsample)
            for c_in, c_out in zip(channels, channels[1:])
        )
        self.bn = SwitchableBatchNorm2d(channels[-1], self.widths)
        self.to_image = SlimmableConv2d(channels[-1], img_channels, 3, padding=1, slice_out=False)
        init_weight(self.fc, init)
        init_weight(self.to_image, init)
        init_biases(self, bias_init, "model.generator.bias_init")

    def forward(self, z: torch.Tensor, width: float, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_width(width)
        self.check_labels(z, y)
        h = self.fc(z, width).view(z.shape[0], -1, self.bottom, self.bottom)
        for block in self.blocks:
            h = block(h, width, y)
        return torch.tanh(self.to_image(F.relu(self.bn(h, width)), width))


# arch name -> (class, constructor kwargs the arch fixes). Channel widths (ngf) are config values
# (conf/model/<arch>.yaml holds the reference's).
GENERATORS = {
    "sndcgan32": (SNDCGANGenerator, {"img_size": 32, "bottom": 4}),
    "sndcgan48": (SNDCGANGenerator, {"img_size": 48, "bottom": 6}),
    "sndcgan64": (SNDCGANGenerator, {"img_size": 64, "bottom": 4}),
    "snresgan32": (SNResGANGenerator, {"img_size": 32, "bottom": 4, "halve_channels": False}),
    "snresgan48": (SNResGANGenerator, {"img_size": 48, "bottom": 6, "halve_channels": True}),
    "snresgan64": (SNResGANGenerator, {"img_size": 64, "bottom": 4, "halve_channels": True}),
}


def build_generator(arch: str, widths: Sequence[float], **kwargs) -> SlimmableGenerator:
    """Build a slimmable generator by architecture name (``model.generator.arch``)."""
    if arch not in GENERATORS:
        raise ValueError(f"model.generator.arch must be one of {sorted(GENERATORS)}, got {arch!r}")
    cls, fixed = GENERATORS[arch]
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"model.generator.{key}={kwargs[key]} does not fit arch {arch} ({key}={value})")
        kwargs[key] = value
    return cls(widths=widths, **kwargs)
