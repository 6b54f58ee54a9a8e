"""BigGAN-32 and BigGAN-deep-32 (Brock et al., ICLR 2019), slimmable generators and multi-width
discriminator plans. Importing this module registers ``biggan32`` and ``biggan_deep32`` in
``GENERATORS`` / ``DISCRIMINATORS`` (``slimgan_pl.models`` imports it).

Generator switches (``model.generator.*``), all constructor arguments:

- ``num_classes`` > 0: class-conditional through ONE shared class embedding (``shared_dim``), not
  spectrally normalised, projected per conditional BN to gain and bias
  (:class:`~slimgan_pl.nn.SlimmableProjectedBatchNorm2d`: private BN per width, projection outputs
  sliced to the width's channels). The last BN before the output conv is unconditional.
- ``skip_z`` (BigGAN-32 only): hierarchical latent. z is split into n_blocks + 1 equal chunks; chunk 0
  feeds the first linear layer, block i's conditional BNs get ``cat(embedding, chunk i+1)`` (the
  chunk alone when unconditional). ``nz`` must be a multiple of n_blocks + 1 (refused otherwise, no
  rounding). Without skip_z and without classes the block BNs are plain switchable BNs.
  BigGAN-deep instead concatenates the FULL z with the embedding, for the first linear layer and
  every conditional BN (no chunking; unconditional: z alone).
- ``attn_resolution``: one slimmable SA-GAN self-attention block after the (first) block whose
  output has this resolution; null = none.
- ``init``: ``ortho`` | ``normal`` (N(0, 0.02)) | ``xavier``, applied to EVERY conv, linear and
  embedding weight of the network (including the attention convs, the BN projections and the
  shared embedding), as BigGAN's init loop. ``bias_init``: ``default`` (PyTorch's, as BigGAN's init
  loop leaves biases alone) | ``zeros``.
- ``upsample``: ``nearest`` (BigGAN's ``F.interpolate`` default) | ``bilinear`` (align_corners=False).
- ``spectral_norm``: spectral norm (torch parametrization, 1 power iteration, eps 1e-6) on every
  linear and conv layer of G, the BN gain/bias projections and the attention convs included, the
  shared embedding excluded. Sigma is that of the FULL weight; a width uses a slice of the
  normalised weight (so a narrow width's slice has spectral norm <= 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from slimgan_pl.models.discriminators import (
    DISCRIMINATORS,
    SN_EPS,
    ProjectionHead,
    ResDBlock,
    SumPoolHead,
    _sn,
    check_shortcut_input,
)
from slimgan_pl.models.generators import (
    GENERATORS,
    SlimmableGenerator,
    _n_upsamplings,
    check_upsample,
    upsample2x,
)
from slimgan_pl.models.init import check_bias_init, init_biases, init_weight
from slimgan_pl.nn import (
    SlimmableConv2d,
    SlimmableLinear,
    SlimmableProjectedBatchNorm2d,
    SlimmableSelfAttention,
    SwitchableBatchNorm2d,
    slim_channels,
)


# ----------------------------------------------------------------------------- shared helpers
def check_attn_resolution(resolution: int | None, allowed: Sequence[int], key: str) -> int | None:
    """None (off) or one of the resolutions the network has (``allowed``); else a ValueError naming ``key``."""
    if resolution is None:
        return None
    allowed = sorted(set(allowed))
    if isinstance(resolution, bool) or resolution not in allowed:
        raise ValueError(
            f"{key} must be one of {allowed} (resolutions this network has) or null (off), got {resolution!r}"
        )
    return int(resolution)


def _check_bool(value: bool, key: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def init_all(module: nn.Module, scheme: str) -> None:
    """``scheme`` on every conv, linear and embedding weight under ``module`` (BigGAN's init loop);
    call before spectral norm is applied."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            init_weight(m, scheme)


def spectral_norm_all(module: nn.Module) -> None:
    """Spectral norm on every slimmable linear/conv layer under ``module`` (not on embeddings)."""
    for m in list(module.modules()):
        if isinstance(m, (SlimmableLinear, SlimmableConv2d)):
            _spectral_norm(m, n_power_iterations=1, eps=SN_EPS)


def _block_norm(channels: int, cond_dim: int, widths: Sequence[float]) -> nn.Module:
    """Conditional (projected) BN when there is something to condition on, else switchable BN."""
    if cond_dim:
        return SlimmableProjectedBatchNorm2d(channels, cond_dim, widths)
    return SwitchableBatchNorm2d(channels, widths)


def _norm(bn: nn.Module, x: torch.Tensor, width: float, c: torch.Tensor | None) -> torch.Tensor:
    return bn(x, width) if c is None else bn(x, width, c)


def _cat(*parts: torch.Tensor | None) -> torch.Tensor | None:
    parts = [p for p in parts if p is not None]
    return torch.cat(parts, dim=1) if parts else None


# ----------------------------------------------------------------------------- generators
class BigGANGBlock(nn.Module):
    """BigGAN residual up-block: CBN-ReLU-up-conv3-CBN-ReLU-conv3, shortcut up + conv1x1.
    ``upsample``: ``nearest`` (BigGAN) or ``bilinear``."""

    def __init__(
        self, in_channels: int, out_channels: int, widths: Sequence[float], cond_dim: int, upsample: str = "nearest"
    ) -> None:
        super().__init__()
        self.upsample = check_upsample(upsample)
        self.bn1 = _block_norm(in_channels, cond_dim, widths)
        self.conv1 = SlimmableConv2d(in_channels, out_channels, 3, padding=1)
        self.bn2 = _block_norm(out_channels, cond_dim, widths)
        self.conv2 = SlimmableConv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = SlimmableConv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, width: float, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(upsample2x(F.relu(_norm(self.bn1, x, width, c)), self.upsample), width)
        h = self.conv2(F.relu(_norm(self.bn2, h, width, c)), width)
        return h + self.shortcut(upsample2x(x, self.upsample), width)


class BigGANDeepGBlock(nn.Module):
    """BigGAN-deep bottleneck up-block: four CBN-ReLU-conv (1x1 in -> in/4, 3x3, 3x3, 1x1 -> out),
    upsampling (optional) after the second; skip: drop channels to ``out`` (first ``out_w`` at width
    w), upsample. No learnable shortcut. ``upsample_mode``: ``nearest`` (BigGAN) or ``bilinear``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        widths: Sequence[float],
        cond_dim: int,
        upsample: bool,
        channel_ratio: int = 4,
        upsample_mode: str = "nearest",
    ) -> None:
        super().__init__()
        self.upsample_mode = check_upsample(upsample_mode)
        if out_channels > in_channels:
            raise ValueError(
                f"a BigGAN-deep G block drops channels, it cannot add them ({in_channels} -> {out_channels})"
            )
        hidden = max(1, in_channels // channel_ratio)
        self.in_channels, self.out_channels, self.upsample = in_channels, out_channels, upsample
        self.bn1 = _block_norm(in_channels, cond_dim, widths)
        self.conv1 = SlimmableConv2d(in_channels, hidden, 1)
        self.bn2 = _block_norm(hidden, cond_dim, widths)
        self.conv2 = SlimmableConv2d(hidden, hidden, 3, padding=1)
        self.bn3 = _block_norm(hidden, cond_dim, widths)
        self.conv3 = SlimmableConv2d(hidden, hidden, 3, padding=1)
        self.bn4 = _block_norm(hidden, cond_dim, widths)
        self.conv4 = SlimmableConv2d(hidden, out_channels, 1)

    def forward(self, x: torch.Tensor, width: float, c: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.relu(_norm(self.bn1, x, width, c)), width)
        h = F.relu(_norm(self.bn2, h, width, c))
        if self.out_channels != self.in_channels:  # drop the last channels (the width's prefix stays nested)
            x = x[:, : slim_channels(self.out_channels, width)]
        if self.upsample:
            h, x = upsample2x(h, self.upsample_mode), upsample2x(x, self.upsample_mode)
        h = self.conv2(h, width)
        h = self.conv3(F.relu(_norm(self.bn3, h, width, c)), width)
        h = self.conv4(F.relu(_norm(self.bn4, h, width, c)), width)
        return h + x


class _BigGANGeneratorBase(SlimmableGenerator):
    """Shared parts: class embedding, attention placement, output layers, init and spectral norm."""

    def _setup_common(self, ngf: int, shared_dim: int, attn_resolution: int | None, resolutions: Sequence[int]) -> None:
        if self.num_classes and (isinstance(shared_dim, bool) or not isinstance(shared_dim, int) or shared_dim < 1):
            raise ValueError(f"model.generator.shared_dim must be an integer >= 1, got {shared_dim!r}")
        self.shared_dim = shared_dim if self.num_classes else 0
        self.shared = nn.Embedding(self.num_classes, shared_dim) if self.num_classes else None
        self.attn_resolution = check_attn_resolution(attn_resolution, resolutions, "model.generator.attn_resolution")
        self.attn_after = list(resolutions).index(self.attn_resolution) if self.attn_resolution else None
        self.attn = SlimmableSelfAttention(ngf) if self.attn_resolution else None
        self.bn = SwitchableBatchNorm2d(ngf, self.widths)  # last BN: unconditional
        self.to_image = SlimmableConv2d(ngf, self.img_channels, 3, padding=1, slice_out=False)

    def _finish(self, init: str, spectral_norm: bool, bias_init: str) -> None:
        init_all(self, init)
        init_biases(self, bias_init, "model.generator.bias_init")
        self.init_scheme, self.bias_init = init, bias_init
        self.spectral_norm = _check_bool(spectral_norm, "model.generator.spectral_norm")
        if self.spectral_norm:
            spectral_norm_all(self)

    def ortho_exclude(self) -> set[str]:
        """Parameter names left out of orthogonal regularization (the shared class embedding)."""
        return {"shared.weight"} if self.shared is not None else set()

    def _embed(self, y: torch.Tensor | None) -> torch.Tensor | None:
        return self.shared(y) if self.shared is not None else None

    def _output(self, h: torch.Tensor, width: float) -> torch.Tensor:
        return torch.tanh(self.to_image(F.relu(self.bn(h, width)), width))


class BigGANGenerator(_BigGANGeneratorBase):
    """BigGAN-32 generator, slimmable (BigGAN-PyTorch's CIFAR architecture): linear -> 4x4x ngf;
    ``log2(img_size / 4)`` residual up-blocks ngf -> ngf with conditional BNs; self-attention after
    the block at ``attn_resolution``; BN; ReLU; conv3x3 -> image; tanh. Switches: module docstring."""

    def __init__(
        self,
        widths: Sequence[float],
        nz: int = 128,
        ngf: int = 256,
        img_channels: int = 3,
        img_size: int = 32,
        bottom: int = 4,
        num_classes: int | None = None,
        shared_dim: int = 128,
        skip_z: bool = True,
        attn_resolution: int | None = 16,
        spectral_norm: bool = True,
        init: str = "ortho",
        upsample: str = "nearest",
        bias_init: str = "default",
    ) -> None:
        super().__init__(widths, nz, img_channels, img_size, num_classes)
        self.upsample = check_upsample(upsample)
        check_bias_init(bias_init, "model.generator.bias_init")
        n_up = _n_upsamplings(img_size, bottom)
        self.skip_z, self.bottom, self.n_blocks = _check_bool(skip_z, "model.generator.skip_z"), bottom, n_up
        if self.skip_z and nz % (n_up + 1):
            slots = n_up + 1
            raise ValueError(
                f"model.generator.nz={nz} must be a multiple of {slots} with model.generator.skip_z=true "
                f"(z is split into n_blocks + 1 = {slots} equal chunks), e.g. {nz - nz % slots or slots} "
                f"or {nz - nz % slots + slots}"
            )
        self.z_chunk = nz // (n_up + 1) if self.skip_z else 0
        resolutions = [bottom * 2 ** (i + 1) for i in range(n_up)]
        self._setup_common(ngf, shared_dim, attn_resolution, resolutions)
        cond_dim = self.shared_dim + self.z_chunk
        self.fc = SlimmableLinear(self.z_chunk or nz, bottom * bottom * ngf, slice_in=False, out_unit=bottom * bottom)
        self.blocks = nn.ModuleList(BigGANGBlock(ngf, ngf, self.widths, cond_dim, upsample) for _ in range(n_up))
        self._finish(init, spectral_norm, bias_init)

    def split_latent(self, z: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor | None]]:
        """(input of the first linear layer, per-block latent chunk or None) of ``z``."""
        if not self.skip_z:
            return z, [None] * self.n_blocks
        first, *rest = z.split(self.z_chunk, dim=1)
        return first, rest

    def forward(self, z: torch.Tensor, width: float, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_width(width)
        self.check_labels(z, y)
        e = self._embed(y)
        z0, chunks = self.split_latent(z)
        h = self.fc(z0, width).view(z.shape[0], -1, self.bottom, self.bottom)
        for i, (block, chunk) in enumerate(zip(self.blocks, chunks)):
            h = block(h, width, _cat(e, chunk))
            if i == self.attn_after:
                h = self.attn(h, width)
        return self._output(h, width)


class BigGANDeepGenerator(_BigGANGeneratorBase):
    """BigGAN-deep-32 generator, slimmable: linear(cat(embedding, z)) -> 4x4x ngf; per resolution two
    bottleneck blocks (the second upsamples); self-attention after the resolution's blocks at
    ``attn_resolution``; BN; ReLU; conv3x3 -> image; tanh. Every block BN is conditional on
    ``cat(embedding, z)`` (z alone when unconditional)."""

    def __init__(
        self,
        widths: Sequence[float],
        nz: int = 128,
        ngf: int = 256,
        img_channels: int = 3,
        img_size: int = 32,
        bottom: int = 4,
        num_classes: int | None = None,
        shared_dim: int = 128,
        attn_resolution: int | None = 16,
        spectral_norm: bool = True,
        init: str = "ortho",
        depth: int = 2,
        channel_ratio: int = 4,
        upsample: str = "nearest",
        bias_init: str = "default",
    ) -> None:
        super().__init__(widths, nz, img_channels, img_size, num_classes)
        self.upsample = check_upsample(upsample)
        check_bias_init(bias_init, "model.generator.bias_init")
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"model.generator.depth must be an integer >= 1, got {depth!r}")
        n_up = _n_upsamplings(img_size, bottom)
        self.bottom = bottom
        resolutions = [bottom * 2 ** (i + 1) for i in range(n_up)]
        self._setup_common(ngf, shared_dim, attn_resolution, resolutions)
        cond_dim = self.shared_dim + nz
        self.fc = SlimmableLinear(cond_dim, bottom * bottom * ngf, slice_in=False, out_unit=bottom * bottom)
        self.stages = nn.ModuleList(
            nn.ModuleList(
                BigGANDeepGBlock(
                    ngf,
                    ngf,
                    self.widths,
                    cond_dim,
                    upsample=(d == depth - 1),
                    channel_ratio=channel_ratio,
                    upsample_mode=upsample,
                )
                for d in range(depth)
            )
            for _ in range(n_up)
        )
        self._finish(init, spectral_norm, bias_init)

    def forward(self, z: torch.Tensor, width: float, y: torch.Tensor | None = None) -> torch.Tensor:
        self.check_width(width)
        self.check_labels(z, y)
        c = _cat(self._embed(y), z)
        h = self.fc(c, width).view(z.shape[0], -1, self.bottom, self.bottom)
        for i, stage in enumerate(self.stages):
            for block in stage:
                h = block(h, width, c)
            if i == self.attn_after:
                h = self.attn(h, width)
        return self._output(h, width)


# ----------------------------------------------------------------------------- discriminators
def _attention_d(channels: int, init: str) -> SlimmableSelfAttention:
    """Full-width self-attention for a D (called without width = 1.0), initialised, SN convs."""
    attn = SlimmableSelfAttention(channels)
    for conv in attn.convs():
        _sn(conv, init)
    return attn


class BigGANDeepDBlock(nn.Module):
    """BigGAN-deep bottleneck D block (pre-activation): ReLU-conv1x1 (in -> out/4)-ReLU-conv3-ReLU-
    conv3-ReLU-[avgpool]-conv1x1 (-> out); skip: [avgpool], then concatenate a learnable 1x1 conv
    (in -> out - in channels) when the block adds channels."""

    def __init__(self, in_channels: int, out_channels: int, down: bool, init: str, channel_ratio: int = 4) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(
                f"a BigGAN-deep D block adds channels, it cannot drop them ({in_channels} -> {out_channels})"
            )
        hidden = max(1, out_channels // channel_ratio)
        self.down = down
        self.conv1 = _sn(nn.Conv2d(in_channels, hidden, 1), init)
        self.conv2 = _sn(nn.Conv2d(hidden, hidden, 3, 1, 1), init)
        self.conv3 = _sn(nn.Conv2d(hidden, hidden, 3, 1, 1), init)
        self.conv4 = _sn(nn.Conv2d(hidden, out_channels, 1), init)
        self.shortcut = (
            _sn(nn.Conv2d(in_channels, out_channels - in_channels, 1), init) if out_channels > in_channels else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.relu(x))
        h = self.conv3(F.relu(self.conv2(F.relu(h))))
        h = F.relu(h)
        if self.down:
            h, x = F.avg_pool2d(h, 2), F.avg_pool2d(x, 2)
        h = self.conv4(h)
        if self.shortcut is not None:
            x = torch.cat([x, self.shortcut(x)], dim=1)
        return h + x


class _AttentionPlan:
    """Common plan logic: blocks grouped into stages (BigGAN: one block per stage; BigGAN-deep:
    ``depth`` blocks per stage, as BigGAN-PyTorch's ``self.blocks`` lists), self-attention after the
    LAST block of the first stage whose output has ``attn_resolution`` (the true output resolution),
    a projection head when conditional. ``n_share`` counts blocks; the attention belongs to the block
    it follows."""

    specs: list
    resolutions: list[int]  # output resolution of every block
    stage_ends: list[int]  # index of the last block of every stage

    def _setup(self, ndf: int, init: str, num_classes: int, attn_resolution: int | None) -> None:
        self.ndf, self.init, self.num_classes, self.n_blocks = ndf, init, num_classes, len(self.specs)
        ends = {self.resolutions[i]: i for i in reversed(self.stage_ends)}  # first stage per resolution
        self.attn_resolution = check_attn_resolution(attn_resolution, list(ends), "model.discriminator.attn_resolution")
        self.attn_after = ends[self.attn_resolution] if self.attn_resolution else None

    def _make_block(self, i: int) -> nn.Module:
        raise NotImplementedError

    def block(self, i: int) -> nn.Module:
        block = self._make_block(i)
        if i == self.attn_after:  # attention counts as part of its block (for n_share)
            channels = self.specs[i][1]
            return nn.Sequential(block, _attention_d(channels, self.init))
        return block

    def head(self, linear: nn.Module | None = None) -> nn.Module:
        """A head; ``linear``: use this final linear layer (shared by every width's head) instead of a new one."""
        if self.num_classes:
            return ProjectionHead(self.ndf, self.num_classes, self.init, linear)
        return SumPoolHead(self.ndf, self.init, linear)


class BigGANDiscriminatorPlan(_AttentionPlan):
    """BigGAN-32 D: optimized down block img -> ndf (32 -> 16), down block (16 -> 8), two plain
    blocks; self-attention after the block at ``attn_resolution`` (16 or 8); ReLU, sum pooling,
    SN linear (+ projection of the class embedding when ``num_classes`` > 0). ``n_share`` counts
    the 4 residual blocks. ``shortcut_input`` (:class:`ResDBlock`): ``identity`` by default, as
    BigGAN-PyTorch's block (out-of-place pre-activation ReLU)."""

    def __init__(
        self,
        ndf: int,
        img_channels: int,
        img_size: int,
        bottom: int,
        init: str = "ortho",
        num_classes: int = 0,
        attn_resolution: int | None = 16,
        shortcut_input: str = "identity",
    ) -> None:
        self.shortcut_input = check_shortcut_input(shortcut_input)
        n_down = int(round(math.log2(img_size / bottom))) - 1
        self.specs = (
            [(img_channels, ndf, True, True)]
            + [(ndf, ndf, True, False)] * (n_down - 1)
            + [(ndf, ndf, False, False)] * 2
        )
        self.resolutions, size = [], img_size
        for _, _, down, _ in self.specs:
            size //= 2 if down else 1
            self.resolutions.append(size)
        self.stage_ends = list(range(len(self.specs)))
        self._setup(ndf, init, num_classes, attn_resolution)

    def _make_block(self, i: int) -> nn.Module:
        c_in, c_out, down, optimized = self.specs[i]
        return ResDBlock(c_in, c_out, down, optimized, self.init, self.shortcut_input)


class BigGANDeepDiscriminatorPlan(_AttentionPlan):
    """BigGAN-deep-32 D, BigGAN-PyTorch's ``D_arch[32]``: a conv3x3 stem img -> ndf (part of block 0),
    then three stages of ``depth`` (2) bottleneck blocks, all ndf -> ndf; the first block of stages
    1 and 2 downsamples (32 -> 16 -> 8), stage 3 stays at 8; self-attention after the whole stage
    at ``attn_resolution`` (16: after stage 1, 8: after stage 2); sum-pool (projection) head.
    ``n_share`` counts the 6 bottleneck blocks."""

    def __init__(
        self,
        ndf: int,
        img_channels: int,
        img_size: int,
        bottom: int,
        init: str = "ortho",
        num_classes: int = 0,
        attn_resolution: int | None = 16,
        depth: int = 2,
    ) -> None:
        if ndf < 8:
            raise ValueError(f"model.discriminator.ndf must be >= 8 for arch biggan_deep32, got {ndf}")
        n_down = int(round(math.log2(img_size / bottom))) - 1
        stages = [(ndf, ndf, True)] * n_down + [(ndf, ndf, False)]
        self.specs, self.resolutions, self.stage_ends, size = [], [], [], img_size
        for c_in, c_out, down in stages:
            for d in range(depth):
                first = d == 0
                self.specs.append((c_in if first else c_out, c_out, down and first))
                size //= 2 if down and first else 1
                self.resolutions.append(size)
            self.stage_ends.append(len(self.specs) - 1)
        self.img_channels = img_channels
        self._setup(ndf, init, num_classes, attn_resolution)

    def _make_block(self, i: int) -> nn.Module:
        c_in, c_out, down = self.specs[i]
        block = BigGANDeepDBlock(c_in, c_out, down, self.init)
        if i == 0:  # the stem conv belongs to the first block
            return nn.Sequential(_sn(nn.Conv2d(self.img_channels, c_in, 3, 1, 1), self.init), block)
        return block


GENERATORS["biggan32"] = (BigGANGenerator, {"img_size": 32, "bottom": 4})
GENERATORS["biggan_deep32"] = (BigGANDeepGenerator, {"img_size": 32, "bottom": 4})
DISCRIMINATORS["biggan32"] = (BigGANDiscriminatorPlan, {"img_size": 32, "bottom": 4})
DISCRIMINATORS["biggan_deep32"] = (BigGANDeepDiscriminatorPlan, {"img_size": 32, "bottom": 4})
