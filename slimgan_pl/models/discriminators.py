"""Multi-width discriminator: one full-width discriminator per generator width, the first
``n_share`` blocks (from the input) shared by all widths, the later blocks and the head private;
``n_share = -1`` (the SlimGAN reference's special value): every block private, only the head's final
linear layer shared (a projection head's class embedding stays private).

ResNet D blocks read their shortcut input as chosen by ``shortcut_input`` (``relu``: the SlimGAN
reference, whose blocks apply an in-place ReLU to the input before the shortcut reads it;
``identity``: the original SNGAN / BigGAN block), see :class:`ResDBlock`.

Class-conditional (``num_classes`` > 0): each width's head is a projection head (Miyato & Koyama
2018), ``linear(h) + <embed_w(y), h>`` with a private, spectrally normalised class embedding per
width; with the SNResGAN archs this is cGAN-PD-32's discriminator (SNDCGAN: the linear reads the
flattened features, the projection their global sum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from slimgan_pl.models.init import check_bias_init, init_biases, init_weight
from slimgan_pl.nn import check_widths, width_index

SN_EPS = 1e-6
SHORTCUT_INPUTS = ("relu", "identity")


def _sn(module: nn.Module, scheme: str, gain: float = 1.0) -> nn.Module:
    """Initialise, then spectrally normalise (1 power iteration, torch parametrization)."""
    init_weight(module, scheme, gain)
    return spectral_norm(module, n_power_iterations=1, eps=SN_EPS)


class DCGANDLayer(nn.Sequential):
    """One SN conv + LeakyReLU(0.1): the unit that ``n_share`` counts in SNDCGAN's D (as the reference)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, init: str) -> None:
        super().__init__(_sn(nn.Conv2d(in_channels, out_channels, kernel_size, stride, 1), init), nn.LeakyReLU(0.1))


def check_shortcut_input(shortcut_input: str) -> str:
    """``model.discriminator.shortcut_input``: one of :data:`SHORTCUT_INPUTS`."""
    if shortcut_input not in SHORTCUT_INPUTS:
        raise ValueError(
            f"model.discriminator.shortcut_input must be one of {list(SHORTCUT_INPUTS)}, got {shortcut_input!r}"
        )
    return shortcut_input


class ResDBlock(nn.Module):
    """Residual D block. ``optimized``: first block (conv-ReLU-conv, no pre-activation).

    The hidden channels (conv1's output) are the output channels in the optimized block and the
    input channels otherwise, as SNGAN's D blocks (the same when in == out, as at 32px).

    ``shortcut_input`` (pre-activation blocks only): ``relu``: ``residual(relu(x)) + shortcut(relu(x))``,
    also when the shortcut is the identity. That is what the SlimGAN reference computes: its blocks
    apply ``nn.ReLU(inplace=True)`` to their input, which the shortcut then reads. ``identity``:
    ``residual(relu(x)) + shortcut(x)``, the original SNGAN block and BigGAN's (which uses an
    out-of-place ReLU on purpose). The optimized first block has no pre-activation: its shortcut
    reads the image in both modes, as in both references."""

    def __init__(
        self, in_channels: int, out_channels: int, down: bool, optimized: bool, init: str, shortcut_input: str = "relu"
    ) -> None:
        super().__init__()
        self.down, self.optimized = down, optimized
        self.shortcut_input = check_shortcut_input(shortcut_input)
        hidden = out_channels if optimized else in_channels
        self.conv1 = _sn(nn.Conv2d(in_channels, hidden, 3, 1, 1), init, math.sqrt(2))
        self.conv2 = _sn(nn.Conv2d(hidden, out_channels, 3, 1, 1), init, math.sqrt(2))
        learnable = optimized or down or in_channels != out_channels
        self.shortcut = _sn(nn.Conv2d(in_channels, out_channels, 1), init) if learnable else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.optimized:
            h = self.conv2(F.relu(self.conv1(x)))
            # pool before the 1x1 conv: cheaper, as the reference
            return F.avg_pool2d(h, 2) + self.shortcut(F.avg_pool2d(x, 2))
        h = F.relu(x)
        sc = h if self.shortcut_input == "relu" else x
        h = self.conv2(F.relu(self.conv1(h)))
        sc = sc if self.shortcut is None else self.shortcut(sc)
        if self.down:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class FlattenLinearHead(nn.Module):
    def __init__(self, in_features: int, init: str, linear: nn.Module | None = None) -> None:
        super().__init__()
        self.linear = linear if linear is not None else _sn(nn.Linear(in_features, 1), init)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(h.flatten(1))


class SumPoolHead(nn.Module):
    """ReLU, global sum pooling, linear (SNGAN ResNet head)."""

    def __init__(self, channels: int, init: str, linear: nn.Module | None = None) -> None:
        super().__init__()
        self.linear = linear if linear is not None else _sn(nn.Linear(channels, 1), init)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.linear(F.relu(h).sum(dim=(2, 3)))


class ProjectionHead(nn.Module):
    """ReLU, global sum pooling, then ``linear(h) + <embed(y), h>`` (projection discriminator).

    The class embedding is spectrally normalised like every D weight (as the reference's SNEmbedding)
    and initialised with the D's scheme.
    """

    def __init__(self, channels: int, num_classes: int, init: str, linear: nn.Module | None = None) -> None:
        super().__init__()
        self.linear = linear if linear is not None else _sn(nn.Linear(channels, 1), init)
        self.embed = _sn(nn.Embedding(num_classes, channels), init)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = F.relu(h).sum(dim=(2, 3))
        return self.linear(h) + (self.embed(y) * h).sum(dim=1, keepdim=True)


class FlattenProjectionHead(nn.Module):
    """SNDCGAN's head made conditional: ``linear(flatten(h)) + <embed(y), sum_xy(h)>``. The features
    are already activated (the last conv layer's LeakyReLU); the embedding is spectrally normalised."""

    def __init__(
        self, channels: int, spatial: int, num_classes: int, init: str, linear: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.linear = linear if linear is not None else _sn(nn.Linear(channels * spatial, 1), init)
        self.embed = _sn(nn.Embedding(num_classes, channels), init)

    def forward(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.linear(h.flatten(1)) + (self.embed(y) * h.sum(dim=(2, 3))).sum(dim=1, keepdim=True)


def _check_num_classes(num_classes: int | None) -> int:
    """``model.discriminator.num_classes``: None or 0 = unconditional."""
    if num_classes is None:
        return 0
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
        raise ValueError(
            f"model.discriminator.num_classes must be an integer >= 0 (0 or null: unconditional), got {num_classes!r}"
        )
    return num_classes


class SNDCGANDiscriminatorPlan:
    """SNDCGAN D: per downsampling stage a conv3x3 and a conv4x4/s2 (channels ndf/8, ndf/4, ndf/2 at
    32px and 48px, ndf/16 ... ndf/2 at 64px), then a conv3x3 to ndf; flatten (bottom x bottom: 4, 6, 4);
    linear (a projection head when ``num_classes`` > 0). Each conv layer is one block for ``n_share``
    (7 at 32/48px, 9 at 64px), as in the reference implementation."""

    def __init__(
        self, ndf: int, img_channels: int, img_size: int, bottom: int, init: str, num_classes: int = 0
    ) -> None:
        self.num_classes = num_classes
        n_down = int(round(math.log2(img_size / bottom)))
        stages = [max(1, ndf // 2 ** (n_down - i)) for i in range(n_down)]
        self.layers: list[tuple[int, int, int, int]] = []  # (c_in, c_out, kernel, stride)
        c_in = img_channels
        for c in stages:
            self.layers += [(c_in, c, 3, 1), (c, c, 4, 2)]
            c_in = c
        self.layers.append((c_in, ndf, 3, 1))
        self.n_blocks, self.ndf, self.bottom, self.init = len(self.layers), ndf, bottom, init

    def block(self, i: int) -> nn.Module:
        c_in, c_out, k, s = self.layers[i]
        return DCGANDLayer(c_in, c_out, k, s, self.init)

    def head(self, linear: nn.Module | None = None) -> nn.Module:
        """A head; ``linear``: use this final linear layer (shared by every width's head) instead of a new one."""
        if self.num_classes:
            return FlattenProjectionHead(self.ndf, self.bottom * self.bottom, self.num_classes, self.init, linear)
        return FlattenLinearHead(self.ndf * self.bottom * self.bottom, self.init, linear)


class SNResGANDiscriminatorPlan:
    """SNResGAN D: an optimized down block (image -> first channels), then residual blocks; ReLU, global
    sum pool, linear (a projection head when ``num_classes`` > 0: cGAN-PD). Block i outputs
    ``ndf // channel_divs[i]`` channels and halves the resolution if ``downs[i]``. Each residual block
    is one block for ``n_share``. Plans (the reference's): SNResGAN-32 ndf x 4 blocks, down, down,
    -, -; SNResGAN-48/-64 ndf/16, /8, /4, /2, ndf (5 blocks), the last one downsampling only at 64px
    (48 -> 3x3, 64 -> 2x2 before the pool). ``shortcut_input``: see :class:`ResDBlock` (default
    ``relu``, the SlimGAN reference)."""

    def __init__(
        self,
        ndf: int,
        img_channels: int,
        img_size: int,
        init: str,
        num_classes: int = 0,
        channel_divs: Sequence[int] = (1, 1, 1, 1),
        downs: Sequence[bool] = (True, True, False, False),
        shortcut_input: str = "relu",
    ) -> None:
        self.shortcut_input = check_shortcut_input(shortcut_input)
        if len(channel_divs) != len(downs) or img_size % 2 ** sum(downs):
            raise ValueError(
                f"SNResGAN D plan: {len(channel_divs)} channel divisors and {len(downs)} down flags "
                f"for {img_size}px images do not fit"
            )
        channels = [max(1, ndf // div) for div in channel_divs]
        c_in = [img_channels] + channels[:-1]
        self.specs = [(c_in[i], channels[i], downs[i], i == 0) for i in range(len(channels))]
        self.n_blocks, self.ndf, self.init, self.num_classes = len(self.specs), channels[-1], init, num_classes

    def block(self, i: int) -> nn.Module:
        c_in, c_out, down, optimized = self.specs[i]
        return ResDBlock(c_in, c_out, down, optimized, self.init, self.shortcut_input)

    def head(self, linear: nn.Module | None = None) -> nn.Module:
        """A head; ``linear``: use this final linear layer (shared by every width's head) instead of a new one."""
        if self.num_classes:
            return ProjectionHead(self.ndf, self.num_classes, self.init, linear)
        return SumPoolHead(self.ndf, self.init, linear)


# arch name -> (plan class, plan kwargs the arch fixes); ndf is a config value (conf/model/<arch>.yaml).
DISCRIMINATORS = {
    "sndcgan32": (SNDCGANDiscriminatorPlan, {"img_size": 32, "bottom": 4}),
    "sndcgan48": (SNDCGANDiscriminatorPlan, {"img_size": 48, "bottom": 6}),
    "sndcgan64": (SNDCGANDiscriminatorPlan, {"img_size": 64, "bottom": 4}),
    "snresgan32": (
        SNResGANDiscriminatorPlan,
        {"img_size": 32, "channel_divs": (1, 1, 1, 1), "downs": (True, True, False, False)},
    ),
    "snresgan48": (
        SNResGANDiscriminatorPlan,
        {"img_size": 48, "channel_divs": (16, 8, 4, 2, 1), "downs": (True, True, True, True, False)},
    ),
    "snresgan64": (
        SNResGANDiscriminatorPlan,
        {"img_size": 64, "channel_divs": (16, 8, 4, 2, 1), "downs": (True, True, True, True, True)},
    ),
}


def discriminator_plan(
    arch: str, ndf: int, img_channels: int, init: str = "xavier", num_classes: int = 0, **plan_kwargs
):
    """``plan_kwargs``: arch-specific options (e.g. ``attn_resolution`` of the BigGAN archs)."""
    if arch not in DISCRIMINATORS:
        raise ValueError(f"model.discriminator.arch must be one of {sorted(DISCRIMINATORS)}, got {arch!r}")
    cls, fixed = DISCRIMINATORS[arch]
    try:
        return cls(ndf=ndf, img_channels=img_channels, init=init, num_classes=num_classes, **plan_kwargs, **fixed)
    except TypeError as e:
        if not plan_kwargs:
            raise
        raise ValueError(
            f"model.discriminator options {sorted(plan_kwargs)} are not all options of arch {arch} ({e})"
        ) from None


class PrivateDiscriminator(nn.Module):
    """The private part of one width's discriminator: its unshared blocks and its head."""

    def __init__(self, blocks: Sequence[nn.Module], head: nn.Module) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*blocks)
        self.head = head

    def forward(self, h: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.blocks(h)
        return (self.head(h) if y is None else self.head(h, y)).flatten()


class MultiWidthDiscriminator(nn.Module):
    """One discriminator per generator width (each full width), the first ``n_share`` blocks shared.

    ``n_share = 0``: independent discriminators; ``n_share = n_blocks``: only the heads are private.
    ``n_share = -1`` (the SlimGAN reference's meaning): every block private and the heads' final linear
    layer one module shared by all widths (registered under every width's head); a projection
    head's class embedding stays private, as the reference's cGAN-PD D.
    Only modules some width uses are allocated. ``num_classes`` > 0: projection heads (per width),
    and every call needs the class labels of its images. ``bias_init``
    (``model.discriminator.bias_init``): see :func:`slimgan_pl.models.init.init_biases`.
    """

    def __init__(
        self,
        arch: str,
        widths: Sequence[float],
        n_share: int = 2,
        ndf: int = 512,
        img_channels: int = 3,
        init: str = "xavier",
        num_classes: int | None = None,
        bias_init: str = "default",
        **plan_kwargs,
    ) -> None:
        super().__init__()
        self.widths = check_widths(widths)
        self.num_classes = _check_num_classes(num_classes)
        self.bias_init = check_bias_init(bias_init, "model.discriminator.bias_init")
        plan = discriminator_plan(arch, ndf, img_channels, init, self.num_classes, **plan_kwargs)
        if isinstance(n_share, bool) or not isinstance(n_share, int) or not -1 <= n_share <= plan.n_blocks:
            raise ValueError(
                f"slim.n_share must be an integer in [0, {plan.n_blocks}] for discriminator {arch} "
                f"({plan.n_blocks} blocks; the first n_share shared by all widths) or -1 (every block "
                f"private, only the head's final linear layer shared), got {n_share!r}"
            )
        self.n_share, self.n_blocks = n_share, plan.n_blocks
        first_private = max(n_share, 0)
        self.shared = nn.Sequential(*(plan.block(i) for i in range(first_private)))
        self.private = nn.ModuleList()
        shared_linear = None  # n_share = -1: the first width's head linear, reused by the others
        for _ in self.widths:
            blocks = [plan.block(i) for i in range(first_private, plan.n_blocks)]
            head = plan.head(linear=shared_linear)
            if n_share == -1:
                shared_linear = head.linear
            self.private.append(PrivateDiscriminator(blocks, head))
        init_biases(self, bias_init, "model.discriminator.bias_init")

    def check_labels(self, x: torch.Tensor, y: torch.Tensor | None, what: str = "y") -> None:
        """Conditional D's need labels (N,) for every batch; unconditional ones refuse them."""
        if self.num_classes and y is None:
            raise ValueError(
                f"this discriminator is class-conditional (model.discriminator.num_classes="
                f"{self.num_classes}): pass class labels {what}"
            )
        if not self.num_classes and y is not None:
            raise ValueError(
                f"class labels {what} given, but this discriminator is unconditional "
                "(model.discriminator.num_classes=0)"
            )
        if y is not None and y.shape != (x.shape[0],):
            raise ValueError(f"{what} must have shape ({x.shape[0]},), one class id per image, got {tuple(y.shape)}")

    def forward(self, x: torch.Tensor, width: float, y: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of one width's discriminator, shape (N,)."""
        self.check_labels(x, y)
        return self.private[width_index(self.widths, width)](self.shared(x), y)

    def score_all(
        self,
        fakes: Sequence[torch.Tensor],
        real: torch.Tensor | None = None,
        fake_labels: Sequence[torch.Tensor] | None = None,
        real_labels: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor] | None]:
        """Scores of every width's D on its own fake batch (``fakes[i]`` for width i) and, if given,
        on the one real batch they share. Conditional D's need ``fake_labels[i]`` for ``fakes[i]``
        and ``real_labels`` for ``real``.

        The shared trunk runs once, over real and all fakes concatenated; each private part then
        runs once, on its real and fake features together (and their labels, concatenated in the
        same order). Returns (fake scores, real scores).
        """
        if len(fakes) != len(self.widths):
            raise ValueError(f"expected {len(self.widths)} fake batches, one per width, got {len(fakes)}")
        if fake_labels is None:
            fake_labels = [None] * len(fakes)
        elif len(fake_labels) != len(fakes):
            raise ValueError(f"expected {len(fakes)} fake label batches, one per fake batch, got {len(fake_labels)}")
        for i, (fake, y) in enumerate(zip(fakes, fake_labels)):
            self.check_labels(fake, y, f"fake_labels[{i}]")
        if real is not None:
            self.check_labels(real, real_labels, "real_labels")
        elif real_labels is not None:
            raise ValueError("real_labels given without a real batch")
        inputs = ([real] if real is not None else []) + list(fakes)
        sizes = [t.shape[0] for t in inputs]
        feats = self.shared(torch.cat(inputs)).split(sizes)
        real_feat, fake_feats = (feats[0], feats[1:]) if real is not None else (None, feats)
        fake_scores, real_scores = [], []
        for private, fake_feat, fake_y in zip(self.private, fake_feats, fake_labels):
            if real_feat is None:
                fake_scores.append(private(fake_feat, fake_y))
            else:
                y = None if fake_y is None else torch.cat([real_labels, fake_y])
                r, f = private(torch.cat([real_feat, fake_feat]), y).split([real_feat.shape[0], fake_feat.shape[0]])
                real_scores.append(r)
                fake_scores.append(f)
        return fake_scores, (real_scores if real is not None else None)
