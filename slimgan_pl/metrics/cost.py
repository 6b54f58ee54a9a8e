"""Per-width cost of a slimmable generator: active parameters, MACs, CPU latency."""

from __future__ import annotations

import math
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from slimgan_pl.nn import (
    SliceableConditionalBatchNorm2d,
    SwitchableBatchNorm2d,
    SwitchableConditionalBatchNorm2d,
    slim_channels,
)
from slimgan_pl.nn.universal import UniversalBatchNorm2d
from slimgan_pl.sampling import eval_mode

_SLICED = (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)


def _label_kwargs(generator: nn.Module, n: int) -> dict[str, torch.Tensor]:
    """``{"y": class ids 0, 1, ...}`` for a conditional generator (the cost does not depend on the
    classes), else ``{}`` so that wrappers taking only ``(z, width)`` keep working."""
    num_classes = int(getattr(generator, "num_classes", 0) or 0)
    return {"y": torch.arange(n) % num_classes} if num_classes else {}


def active_parameters(generator: nn.Module, width: float) -> int:
    """Parameters a forward pass at ``width`` uses: weight/bias slices of slimmable layers, the
    width's own switchable (conditional) BN, the width's gamma/beta columns of a sliceable
    conditional BN's shared class embedding (all classes), and every other parameter in full."""
    if hasattr(generator, "network_at"):  # the native baseline (models/baseline.py): its network at full size
        generator, width = generator.network_at(width)
    total, handled = 0, set()
    for module in generator.modules():
        if isinstance(module, (SwitchableBatchNorm2d, SwitchableConditionalBatchNorm2d)):
            handled.update(id(p) for p in module.parameters())
            total += sum(p.numel() for p in module.for_width(width).parameters())
        elif isinstance(module, UniversalBatchNorm2d):  # universal models: the sliced affine
            handled.update(id(p) for p in module.parameters())
            total += 2 * slim_channels(module.num_features, width) if module.affine else 0
        elif isinstance(module, SliceableConditionalBatchNorm2d):
            handled.add(id(module.embed.weight))  # its per-width BNs are counted by the branch above
            total += module.num_classes * 2 * slim_channels(module.num_features, width)
        elif isinstance(module, _SLICED) and hasattr(module, "active"):
            handled.update(id(p) for p in module.parameters())  # incl. a spectral-norm parametrization's original
            in_w, out_w = module.active(width)
            total += in_w * out_w * math.prod(module.weight.shape[2:])
            total += out_w if module.bias is not None else 0
    return total + sum(p.numel() for p in generator.parameters() if id(p) not in handled)


@torch.no_grad()
def generator_macs(generator: nn.Module, width: float, nz: int) -> int:
    """Multiply-accumulates of one image at ``width``: FLOPs counted by torch's FlopCounterMode
    (conv, transposed conv, matmul; normalisation and activations are not counted) divided by 2."""
    with eval_mode(generator), FlopCounterMode(display=False) as counter:
        generator(torch.zeros(1, nz), width=width, **_label_kwargs(generator, 1))
    return counter.get_total_flops() // 2


@torch.inference_mode()
def latency_ms(
    generator: nn.Module, width: float, nz: int, batch: int, repeats: int = 20, warmup: int = 3, seed: int = 0
) -> float:
    """Median wall time (ms) of one eval-mode forward of ``batch`` images on the CPU, after warm-up
    runs (allocator and kernel selection settle). Uses torch's current thread count."""
    z = torch.randn(batch, nz, generator=torch.Generator().manual_seed(seed))
    labels = _label_kwargs(generator, batch)
    with eval_mode(generator):
        for _ in range(warmup):
            generator(z, width=width, **labels)
        times = []
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            generator(z, width=width, **labels)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3
