"""Float32 islands under mixed precision: spectral norm's power iteration.

Under ``torch.autocast`` (Lightning's ``bf16-mixed`` / ``16-mixed``) the matrix-vector products of
torch's spectral-norm parametrization run in half precision: the estimate of sigma, and the
``u``/``v`` vectors that carry over from step to step, lose 8 (fp16: 5) bits of mantissa per
iteration. :class:`Float32SpectralNorm` runs the parametrization with autocast off (the weight and
the vectors are float32 there: autocast never changes parameters or buffers), so the normalised
weight is the full-precision one; the layer that uses it is still autocast as before.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import _SpectralNorm


class Float32SpectralNorm(_SpectralNorm):
    """torch's spectral-norm parametrization with autocast disabled inside (same buffers, same
    state-dict keys, same result in float32)."""

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        with torch.autocast(device_type=weight.device.type, enabled=False):
            return super().forward(weight)


def use_float32_spectral_norm(module: nn.Module) -> nn.Module:
    """Make every spectral-norm parametrization inside ``module`` a :class:`Float32SpectralNorm`
    (in place: the class changes, the module object, its buffers and its registration stay)."""
    for m in module.modules():
        if type(m) is _SpectralNorm:
            m.__class__ = Float32SpectralNorm
    return module
