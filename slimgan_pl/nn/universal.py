"""Batch norm of a universally slimmable generator: runs at ANY width in (0, 1].

Switchable BN (:class:`~slimgan_pl.nn.SwitchableBatchNorm2d`) keeps one private BN per trained width,
so it can only run those widths. :class:`UniversalBatchNorm2d` instead has ONE affine (gamma, beta)
of the full channel count, sliced to the first ``C_w`` channels like the convolutions (nested), and
no running statistics while training: a train-mode forward normalises with the batch's statistics
(universally slimmable networks, Yu & Huang 2019, Sec. 3.1). Statistics for eval-mode forwards are
calibrated after training, per width, from generated batches
(:func:`slimgan_pl.universal.calibrate`), and cached in :attr:`statistics` (keyed by
:func:`width_key`; saved with the checkpoint by the LightningModule).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from slimgan_pl.nn.slimmable import slim_channels


def width_key(width: float) -> str:
    """Key of a width's calibrated statistics: ``"0.4"`` (6 significant digits)."""
    return f"{float(width):.6g}"


class UniversalBatchNorm2d(nn.Module):
    """BN with a sliced full-size affine; batch statistics in train mode, calibrated per-width
    statistics in eval mode (a width without them is refused with the way to get them).

    During calibration :attr:`calibrating` holds a plain ``nn.BatchNorm2d`` of the width's channel
    count (no affine), which the standing-statistics code
    (:func:`slimgan_pl.inference.recompute_standing_statistics`) finds and fills like any BN.
    """

    def __init__(self, num_features: int, affine: bool = True, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features, self.affine, self.eps = num_features, affine, eps
        if affine:
            self.weight = nn.Parameter(torch.ones(num_features))
            self.bias = nn.Parameter(torch.zeros(num_features))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        # width_key -> (running mean, running var) of that width's channels; not buffers: the set of
        # calibrated widths varies, and they are stale after any weight update (the module clears them).
        self.statistics: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.calibrating: nn.BatchNorm2d | None = None

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        c = slim_channels(self.num_features, width)
        if x.shape[1] != c:
            raise ValueError(f"expected {c} channels at width {width}, got {x.shape[1]}")
        if self.calibrating is not None:
            x_hat = self.calibrating(x)
        elif self.training:
            x_hat = F.batch_norm(x, None, None, training=True, eps=self.eps)
        else:
            stats = self.statistics.get(width_key(width))
            if stats is None:
                raise ValueError(
                    f"width {width} has no calibrated BN statistics in this universal generator: calibrate it "
                    "first (slimgan_pl.universal.calibrate; SlimGAN.sample and the CLIs do it for you)"
                )
            mean, var = (s.to(x.device) for s in stats)
            x_hat = F.batch_norm(x, mean, var, training=False, eps=self.eps)
        if not self.affine:
            return x_hat
        return x_hat * self.weight[:c, None, None] + self.bias[:c, None, None]

    def extra_repr(self) -> str:
        return f"{self.num_features}, affine={self.affine}, calibrated={sorted(self.statistics)}"
