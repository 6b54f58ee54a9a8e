"""Self-attention (SA-GAN's non-local block, Zhang et al. 2019), slimmable.

``x + gamma * o(g(x) . softmax(theta(x)^T phi(x)))`` with 1x1 convs theta, phi (C -> C/8),
g (C -> C/2), o (C/2 -> C), max-pooling by 2 on phi's and g's outputs (keys and values at a quarter
of the positions) and a learnable scalar ``gamma`` initialised to 0, so the block starts as the
identity. As in BigGAN, the convs have no bias.

The slimmable version slices every conv like the rest of the network: at width w it reads the first
``C_w`` input channels, theta/phi produce ``slim_channels(C/8, w)`` channels, g ``slim_channels(C/2, w)``
and o maps those back to ``C_w``; ``gamma`` is shared by all widths.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from slimgan_pl.nn.slimmable import SlimmableConv2d


def non_local(
    x: torch.Tensor,
    theta: torch.Tensor,
    phi: torch.Tensor,
    g: torch.Tensor,
    out: Callable[[torch.Tensor], torch.Tensor],
    gamma: torch.Tensor,
) -> torch.Tensor:
    """The attention arithmetic, given the 1x1-conv outputs ``theta``, ``phi``, ``g`` of ``x`` (full
    resolution; phi and g are max-pooled here) and the output conv ``out``. Shared by the slimmable
    block and its dense export, so both compute exactly the same thing."""
    n, _, h, w = x.shape
    phi, g = F.max_pool2d(phi, 2), F.max_pool2d(g, 2)
    theta = theta.flatten(2)  # (N, C/8, HW)
    attn = torch.softmax(theta.transpose(1, 2) @ phi.flatten(2), dim=-1)  # (N, HW, HW/4)
    o = g.flatten(2) @ attn.transpose(1, 2)  # (N, C/2, HW)
    return x + gamma * out(o.view(n, -1, h, w))


class SlimmableSelfAttention(nn.Module):
    """SA-GAN non-local block whose channels scale with the width (see the module docstring).

    Needs an even spatial size (phi and g are max-pooled by 2) and ``channels`` >= 8.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels < 8:
            raise ValueError(f"self-attention needs at least 8 channels (C/8 >= 1), got {channels}")
        self.channels = channels
        self.theta = SlimmableConv2d(channels, channels // 8, 1, bias=False)
        self.phi = SlimmableConv2d(channels, channels // 8, 1, bias=False)
        self.g = SlimmableConv2d(channels, channels // 2, 1, bias=False)
        self.o = SlimmableConv2d(channels // 2, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(()))

    def convs(self) -> tuple[SlimmableConv2d, ...]:
        """The four 1x1 convs (for initialisation and spectral norm)."""
        return self.theta, self.phi, self.g, self.o

    def forward(self, x: torch.Tensor, width: float = 1.0) -> torch.Tensor:
        return non_local(
            x, self.theta(x, width), self.phi(x, width), self.g(x, width), lambda o: self.o(o, width), self.gamma
        )
