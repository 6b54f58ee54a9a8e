"""Class-conditional batch norms for slimmable generators.

Argument order, as everywhere in the project: ``forward(x, width, y)``: input, width, class labels.
(The generators' ``forward(z, width, y=None)`` and the discriminator's ``forward(x, width, y=None)``
use the same order, so a conditional layer is called like an unconditional one plus ``y``.)

- :class:`ConditionalBatchNorm2d`: one width; BN then ``gamma_y * x_hat + beta_y`` from a class
  embedding (K, 2C) whose gamma half starts at N(1, 0.02) and beta half at 0 (SNGAN-projection's CBN).
- :class:`SliceableConditionalBatchNorm2d` (scBN, SlimGAN): private BN per width, then ONE class
  embedding shared by all widths and sliced to the width's channels, so narrow widths use a prefix
  of the wide widths' class gains and biases (nesting, as for the slimmable convs).
- :class:`SwitchableConditionalBatchNorm2d`: one full :class:`ConditionalBatchNorm2d` per width,
  each with its own embedding (the ablation of scBN: nothing is shared between widths).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from slimgan_pl.nn.slimmable import SlimmableLinear, SwitchableBatchNorm2d, check_widths, slim_channels, width_index

GAMMA_INIT_STD = 0.02


def _init_class_affine(weight: torch.Tensor, num_features: int) -> None:
    """(K, 2C) class embedding: gamma half N(1, 0.02), beta half 0 (identity affine at the start)."""
    with torch.no_grad():
        weight[:, :num_features].normal_(1.0, GAMMA_INIT_STD)
        weight[:, num_features:].zero_()


def _check_num_classes(num_classes: int) -> int:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes of a conditional batch norm must be an integer >= 1, got {num_classes!r}")
    return num_classes


def _per_channel(v: torch.Tensor) -> torch.Tensor:
    return v[:, :, None, None]


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm2d followed by a class-dependent affine ``gamma_y * x_hat + beta_y``.

    ``affine``: whether the BN keeps its own (class-independent) affine too. Off by default, as the
    usual CBN (torch_mimicry's, which the SlimGAN reference builds on); the class affine replaces it.
    """

    def __init__(
        self, num_features: int, num_classes: int, affine: bool = False, momentum: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        self.num_features, self.num_classes = num_features, _check_num_classes(num_classes)
        self.bn = nn.BatchNorm2d(num_features, affine=affine, momentum=momentum, eps=eps)
        self.embed = nn.Embedding(num_classes, 2 * num_features)
        _init_class_affine(self.embed.weight, num_features)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.embed(y).chunk(2, dim=1)
        return _per_channel(gamma) * self.bn(x) + _per_channel(beta)


class SliceableConditionalBatchNorm2d(nn.Module):
    """Sliceable conditional BN (scBN): ``BN_w(x)`` with private per-width statistics (and, with
    ``affine``, private per-width affine), then ``gamma_y[:C_w] * x_hat + beta_y[:C_w]`` from ONE
    class embedding (K x 2*C_max) shared by all widths.

    ``affine`` defaults to True as the SlimGAN reference (its per-width BNs are plain
    ``nn.BatchNorm2d``); whether the paper's scBN has it is unverified.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        widths: Sequence[float],
        affine: bool = True,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_features, self.num_classes = num_features, _check_num_classes(num_classes)
        self.norm = SwitchableBatchNorm2d(num_features, widths, affine=affine, momentum=momentum, eps=eps)
        self.widths = self.norm.widths
        # gamma = embed[:, :C_max], beta = embed[:, C_max:]; width w reads the first C_w of each half.
        self.embed = nn.Embedding(num_classes, 2 * num_features)
        _init_class_affine(self.embed.weight, num_features)

    def class_affine(self, y: torch.Tensor, width: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(gamma, beta) of shape (N, C_w) for labels ``y`` at ``width``."""
        c, c_max = slim_channels(self.num_features, width), self.num_features
        e = self.embed(y)
        return e[:, :c], e[:, c_max : c_max + c]

    def forward(self, x: torch.Tensor, width: float, y: torch.Tensor) -> torch.Tensor:
        x_hat = self.norm(x, width)  # checks the width (a trained one)
        gamma, beta = self.class_affine(y, width)
        return _per_channel(gamma) * x_hat + _per_channel(beta)


class SwitchableConditionalBatchNorm2d(nn.Module):
    """One full :class:`ConditionalBatchNorm2d` per width ("switchable CBN"): private statistics and
    a private class embedding (K x 2*C_w) per width. The ablation of scBN.

    ``affine`` (the per-width BN's own affine) defaults to False, as the reference's switchable
    CBN, whose per-width layers are torch_mimicry's CBN.
    """

    def __init__(
        self,
        num_features: int,
        num_classes: int,
        widths: Sequence[float],
        affine: bool = False,
        momentum: float = 0.1,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.widths = check_widths(widths)
        self.num_features, self.num_classes = num_features, _check_num_classes(num_classes)
        self.cbns = nn.ModuleList(
            ConditionalBatchNorm2d(
                slim_channels(num_features, w), num_classes, affine=affine, momentum=momentum, eps=eps
            )
            for w in self.widths
        )

    def for_width(self, width: float) -> ConditionalBatchNorm2d:
        return self.cbns[width_index(self.widths, width)]

    def forward(self, x: torch.Tensor, width: float, y: torch.Tensor) -> torch.Tensor:
        return self.for_width(width)(x, y)


COND_NORMS = {
    "scbn": SliceableConditionalBatchNorm2d,
    "switchable": SwitchableConditionalBatchNorm2d,
}


def conditional_norm(kind: str, num_features: int, num_classes: int, widths: Sequence[float]) -> nn.Module:
    """Conditional BN of a generator block by name (``scbn`` | ``switchable``), with its defaults."""
    if kind not in COND_NORMS:
        raise ValueError(f"cond_norm must be one of {sorted(COND_NORMS)}, got {kind!r}")
    return COND_NORMS[kind](num_features, num_classes, widths)


class SlimmableProjectedBatchNorm2d(nn.Module):
    """BigGAN's conditional BN, slimmable: ``BN_w(x) * (1 + gain(c)) + bias(c)``.

    ``BN_w`` is private per width and has no affine of its own (the class/latent affine replaces it);
    ``gain`` and ``bias`` are bias-free linear projections of the conditioning vector ``c`` (BigGAN:
    the shared class embedding, with skip-z concatenated with this block's latent chunk), shared by
    all widths: their OUTPUT is sliced to the width's channels (the input ``c`` is never sliced).
    "1 +" makes zero projections the identity affine (the BigGAN formulation).
    """

    def __init__(
        self, num_features: int, cond_dim: int, widths: Sequence[float], momentum: float = 0.1, eps: float = 1e-5
    ) -> None:
        super().__init__()
        if not isinstance(cond_dim, int) or cond_dim < 1:
            raise ValueError(f"cond_dim of a projected conditional BN must be an integer >= 1, got {cond_dim!r}")
        self.num_features, self.cond_dim = num_features, cond_dim
        self.norm = SwitchableBatchNorm2d(num_features, widths, affine=False, momentum=momentum, eps=eps)
        self.widths = self.norm.widths
        self.gain = SlimmableLinear(cond_dim, num_features, bias=False, slice_in=False)
        self.bias = SlimmableLinear(cond_dim, num_features, bias=False, slice_in=False)

    def forward(self, x: torch.Tensor, width: float, c: torch.Tensor) -> torch.Tensor:
        return modulate(self.norm(x, width), self.gain(c, width), self.bias(c, width))


def modulate(x_hat: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``x_hat * (1 + gain) + bias`` with per-sample, per-channel (N, C) gain and bias."""
    return x_hat * (1 + _per_channel(gain)) + _per_channel(bias)
