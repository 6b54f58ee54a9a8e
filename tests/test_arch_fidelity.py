"""Architecture fidelity (issue 12): each block computes what the reference code computes, checked
against hand-written reference computations with the same weights (no reference code is imported).

References: the official SlimGAN code (liang-hou/slimgan, torch_mimicry based) for the SNGAN/SlimGAN
presets, BigGAN-PyTorch (ajbrock) for the BigGAN presets.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from slimgan_pl.models import MultiWidthDiscriminator, build_generator
from slimgan_pl.models.biggan import BigGANDeepDBlock
from slimgan_pl.models.discriminators import ResDBlock
from slimgan_pl.models.generators import SlimmableGBlock
from slimgan_pl.nn import SlimmableSelfAttention
from slimgan_pl.train import ConfigError, build

WIDTHS = [0.25, 0.5, 0.75, 1.0]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


# ----------------------------------------------------------------------------- hand-written references
def bilinear_matrix(n: int) -> torch.Tensor:
    """(2n, n) matrix of bilinear x2 upsampling with align_corners=False: output pixel i samples the
    input at (i + 0.5) / 2 - 0.5, clamped at 0, between its two neighbours (the last one repeated)."""
    u = torch.zeros(2 * n, n)
    for i in range(2 * n):
        src = max((i + 0.5) / 2 - 0.5, 0.0)
        i0 = int(math.floor(src))
        i1 = min(i0 + 1, n - 1)
        frac = src - i0
        u[i, i0] += 1 - frac
        u[i, i1] += frac
    return u


def bilinear_up(x: torch.Tensor) -> torch.Tensor:
    uh, uw = bilinear_matrix(x.shape[2]), bilinear_matrix(x.shape[3])
    return torch.einsum("ih,nchw,jw->ncij", uh, x, uw)


def bn_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    c = lambda v: v[None, :, None, None]  # noqa: E731
    return (x - c(bn.running_mean)) / torch.sqrt(c(bn.running_var) + bn.eps) * c(bn.weight) + c(bn.bias)


def conv(x: torch.Tensor, layer: nn.Module, out_w: int | None = None, padding: int | None = None) -> torch.Tensor:
    """A conv with the layer's (spectrally normalised, in eval mode fixed) weight, first ``out_w`` outputs."""
    w, b = layer.weight, layer.bias
    out_w = out_w or w.shape[0]
    pad = layer.padding if padding is None else padding
    return F.conv2d(x, w[:out_w, : x.shape[1]], None if b is None else b[:out_w], padding=pad)


def _randomise_bn(module: nn.Module) -> None:
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.normal_()
                m.running_var.uniform_(0.5, 2.0)
                if m.affine:
                    m.weight.normal_(1.0, 0.3)
                    m.bias.normal_()


# ----------------------------------------------------------------------------- defect 2: G upsampling
def test_gblock_bilinear_upsample_matches_hand_written_reference():
    """SlimGAN's GBlock: BN-ReLU-bilinear up (align_corners=False)-conv3-BN-ReLU-conv3 + conv1x1(bilinear up(x))."""
    torch.manual_seed(0)
    block = SlimmableGBlock(8, 8, WIDTHS, upsample="bilinear").eval()
    _randomise_bn(block)
    x = torch.randn(2, 4, 5, 5)  # width 0.5: 4 of 8 channels; odd size exercises the border clamp
    with torch.no_grad():
        bn1, bn2 = block.bn1.for_width(0.5), block.bn2.for_width(0.5)
        h = conv(bilinear_up(F.relu(bn_eval(x, bn1))), block.conv1, 4)
        h = conv(F.relu(bn_eval(h, bn2)), block.conv2, 4)
        expected = h + conv(bilinear_up(x), block.shortcut, 4)
        torch.testing.assert_close(block(x, 0.5), expected, rtol=1e-5, atol=1e-5)
        nearest = SlimmableGBlock(8, 8, WIDTHS, upsample="nearest").eval()
        nearest.load_state_dict(block.state_dict())
        assert (nearest(x, 0.5) - expected).abs().max() > 1e-2  # the mode matters: nearest is not the reference


@pytest.mark.parametrize(
    "model, mode",
    [
        ("snresgan32", "bilinear"),
        ("snresgan48", "bilinear"),
        ("snresgan64", "bilinear"),
        ("cgan_pd32", "bilinear"),
        ("biggan32", "nearest"),
        ("biggan_deep32", "nearest"),
    ],
)
def test_presets_upsample_modes(make_cfg, model, mode):
    size = {"snresgan48": 48, "snresgan64": 64}.get(model, 32)
    cfg = make_cfg(f"model={model}", f"data.image_size={size}", "callbacks.fid=null")
    assert cfg.model.generator.upsample == mode
    slimgan, _, _ = build(cfg)
    modes = {
        getattr(m, "upsample_mode", getattr(m, "upsample", None))
        for m in slimgan.generator.modules()
        if type(m).__name__.endswith("GBlock")
    }
    assert modes == {mode}


def test_upsample_mode_reaches_every_block_and_bad_values_are_refused(make_cfg):
    g = build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1, upsample="nearest")
    assert {b.upsample for b in g.blocks} == {"nearest"}
    assert {b.upsample for b in build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1).blocks} == {"bilinear"}
    with pytest.raises(
        ValueError,
        match=r"^model\.generator\.upsample must be one of \['bilinear', 'nearest'\], "
        r"got 'bicubic'$",
    ):
        build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1, upsample="bicubic")
    with pytest.raises(ConfigError, match=r"model\.generator\.upsample must be one of"):
        build(make_cfg("model=snresgan32", "model.generator.upsample=area"))


# ----------------------------------------------------------------------------- defect 5: D shortcut input
def _residual(block: ResDBlock, a: torch.Tensor) -> torch.Tensor:
    """conv1-ReLU-conv2-[pool] of an already activated input ``a``."""
    h = conv(F.relu(conv(a, block.conv1)), block.conv2)
    return F.avg_pool2d(h, 2) if block.down else h


def _shortcut(block: ResDBlock, s: torch.Tensor) -> torch.Tensor:
    s = s if block.shortcut is None else conv(s, block.shortcut)
    return F.avg_pool2d(s, 2) if block.down else s


@pytest.mark.parametrize("c_in, c_out, down", [(8, 8, False), (8, 8, True), (4, 8, False)])
def test_d_block_shortcut_reads_relu_of_input_by_default(c_in, c_out, down):
    """Official DBlock: an in-place ReLU on x before the shortcut reads it: residual(relu(x)) + shortcut(relu(x))."""
    torch.manual_seed(0)
    block = ResDBlock(c_in, c_out, down=down, optimized=False, init="xavier").eval()
    assert block.shortcut_input == "relu"
    x = torch.randn(2, c_in, 8, 8)
    with torch.no_grad():
        a = F.relu(x)
        torch.testing.assert_close(block(x), _residual(block, a) + _shortcut(block, a), rtol=1e-5, atol=1e-5)
        sngan = ResDBlock(c_in, c_out, down=down, optimized=False, init="xavier", shortcut_input="identity").eval()
        sngan.load_state_dict(block.state_dict())
        torch.testing.assert_close(sngan(x), _residual(block, a) + _shortcut(block, x), rtol=1e-5, atol=1e-5)
        assert (sngan(x) - block(x)).abs().max() > 1e-2


def test_optimized_d_block_has_no_preactivation_in_either_mode():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 8)
    for mode in ("relu", "identity"):
        block = ResDBlock(3, 8, down=True, optimized=True, init="xavier", shortcut_input=mode).eval()
        with torch.no_grad():
            h = F.avg_pool2d(conv(F.relu(conv(x, block.conv1)), block.conv2), 2)
            torch.testing.assert_close(block(x), h + conv(F.avg_pool2d(x, 2), block.shortcut), rtol=1e-5, atol=1e-5)


def official_resnet_d(d: MultiWidthDiscriminator, width: float, x: torch.Tensor, y: torch.Tensor | None = None):
    """Hand-written forward of the official SNGAN-32 / cGAN-PD-32 D of one width, block by block as
    the reference's code runs it: DBlockOptimized, then DBlocks whose in-place ReLU also feeds the
    shortcut, ReLU, global sum pool, linear (+ <embed(y), h>)."""
    i = WIDTHS.index(width)
    blocks = list(d.shared) + list(d.private[i].blocks)
    first, rest = blocks[0], blocks[1:]
    h = F.avg_pool2d(conv(F.relu(conv(x, first.conv1)), first.conv2), 2) + conv(F.avg_pool2d(x, 2), first.shortcut)
    for block in rest:
        h = F.relu(h)  # nn.ReLU(inplace=True) on the block's input: both paths read it
        h = _residual(block, h) + _shortcut(block, h)
    h = F.relu(h).sum(dim=(2, 3))
    head = d.private[i].head
    out = F.linear(h, head.linear.weight, head.linear.bias)
    if y is not None:
        out = out + (head.embed.weight[y] * h).sum(1, keepdim=True)
    return out.flatten()


@pytest.mark.parametrize("num_classes", [0, 10])
def test_whole_resnet_d_matches_hand_written_official_forward(num_classes):
    torch.manual_seed(0)
    d = MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=2, ndf=16, img_channels=3, num_classes=num_classes).eval()
    x = torch.randn(3, 3, 32, 32)
    y = torch.tensor([0, 4, 9]) if num_classes else None
    with torch.no_grad():
        for w in WIDTHS:
            torch.testing.assert_close(d(x, w, y), official_resnet_d(d, w, x, y), rtol=1e-5, atol=1e-5)


def test_shortcut_input_option_in_config(make_cfg):
    for model, mode in (
        ("snresgan32", "relu"),
        ("cgan_pd32", "relu"),
        ("snresgan64", "relu"),
        ("biggan32", "identity"),
    ):
        assert make_cfg(f"model={model}").model.discriminator.shortcut_input == mode
    model, _, _ = build(make_cfg("model=snresgan32", "model.discriminator.shortcut_input=identity"))
    blocks = [m for m in model.discriminator.modules() if isinstance(m, ResDBlock)]
    assert blocks and {b.shortcut_input for b in blocks} == {"identity"}
    with pytest.raises(
        ConfigError, match=r"model\.discriminator\.shortcut_input must be one of \['relu', 'identity'\]"
    ):
        build(make_cfg("model=snresgan32", "model.discriminator.shortcut_input=leaky"))


# ----------------------------------------------------------------------------- defect 6: BigGAN-deep-32 D
def reference_deep_d_arch(ndf: int, img_channels: int, attn: int) -> dict:
    """BigGAN-PyTorch's BigGAN-deep D at 32px (``D_arch[32]`` with 4 * ch = ndf, D_depth 2): stem conv
    img -> in_channels[0]; per stage, two DBlocks (in_channels -> out_channels for the first,
    out -> out for the second; only the first of a downsampling stage pools); attention appended to
    the stage's block list, i.e. after both blocks. Stages output 16, 8, 8."""
    in_ch, out_ch, downs = [ndf] * 3, [ndf] * 3, [True, True, False]
    blocks, attention_after, size = [], None, 32
    for s in range(3):
        for d in range(2):
            blocks.append((in_ch[s] if d == 0 else out_ch[s], out_ch[s], downs[s] and d == 0))
        size //= 2 if downs[s] else 1
        if attention_after is None and size == attn:
            attention_after = len(blocks) - 1
    return {"stem": (img_channels, in_ch[0]), "blocks": blocks, "attention_after": attention_after}


@pytest.mark.parametrize("attn", [16, 8])
def test_biggan_deep_d_channel_plan_and_attention_position(attn):
    ndf = 16
    ref = reference_deep_d_arch(ndf, 3, attn)
    d = MultiWidthDiscriminator("biggan_deep32", WIDTHS, n_share=0, ndf=ndf, img_channels=3, attn_resolution=attn)
    blocks = list(d.private[0].blocks)
    assert len(blocks) == len(ref["blocks"]) == d.n_blocks
    stem = blocks[0][0]
    assert (stem.in_channels, stem.out_channels, stem.kernel_size) == (*ref["stem"], (3, 3))
    plan, attention_at = [], []
    for i, b in enumerate(blocks):
        parts = list(b) if isinstance(b, nn.Sequential) else [b]
        deep = [p for p in parts if isinstance(p, BigGANDeepDBlock)]
        assert len(deep) == 1
        plan.append((deep[0].conv1.in_channels, deep[0].conv4.out_channels, deep[0].down))
        assert deep[0].shortcut is None  # in == out everywhere: the skip is the (pooled) input
        if any(isinstance(p, SlimmableSelfAttention) for p in parts):
            assert isinstance(parts[-1], SlimmableSelfAttention)  # after the block, not inside it
            attention_at.append(i)
    assert plan == ref["blocks"]
    assert attention_at == [ref["attention_after"]]
    seen = []
    next(m for m in d.modules() if isinstance(m, SlimmableSelfAttention)).register_forward_hook(
        lambda m, args, out: seen.append(args[0].shape[-1])
    )
    d(torch.randn(2, 3, 32, 32), WIDTHS[0])  # the hook sits in the first width's private D
    assert seen == [attn]


# ----------------------------------------------------------------------------- defect 7: bias init
def _biased_layers(module: nn.Module):
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.bias is not None:
            yield name, m


def _default_bound(m: nn.Module) -> float:
    """PyTorch's default bias init U(-1/sqrt(fan_in), 1/sqrt(fan_in)); fan_in from the weight's dim 1
    (for a transposed conv that is its OUTPUT channels, as torch computes it)."""
    w = m.parametrizations.weight.original if parametrize.is_parametrized(m) else m.weight
    receptive = w[0][0].numel()
    return 1.0 / math.sqrt(w.shape[1] * receptive)


@pytest.mark.parametrize("model", ["sndcgan32", "snresgan32", "cgan_pd32", "biggan32", "biggan_deep32"])
def test_bias_init_default_is_pytorch_default_per_preset(make_cfg, model):
    torch.manual_seed(0)
    cfg = make_cfg(f"model={model}", "model.generator.ngf=64", "model.discriminator.ndf=64")
    assert cfg.model.generator.bias_init == cfg.model.discriminator.bias_init == "default"
    slimgan, _, _ = build(cfg)
    checked = 0
    for net in (slimgan.generator, slimgan.discriminator):
        for name, m in _biased_layers(net):
            b, bound = m.bias.detach(), _default_bound(m)
            assert b.abs().max() <= bound * (1 + 1e-6), name
            if b.numel() >= 64:  # uniform on [-bound, bound]: std bound / sqrt(3)
                assert abs(b.std().item() - bound / math.sqrt(3)) < 0.25 * bound / math.sqrt(3), name
                checked += 1
    assert checked >= 3
    zeros, _, _ = build(
        make_cfg(f"model={model}", "model.generator.bias_init=zeros", "model.discriminator.bias_init=zeros")
    )
    for net in (zeros.generator, zeros.discriminator):
        assert all(m.bias.abs().max() == 0 for _, m in _biased_layers(net))


def test_bias_init_errors_name_the_key(make_cfg):
    with pytest.raises(
        ConfigError, match=r"model\.generator\.bias_init must be one of \['default', 'zeros'\], got 'ones'"
    ):
        build(make_cfg("model.generator.bias_init=ones"))
    with pytest.raises(ConfigError, match=r"model\.discriminator\.bias_init must be one of \['default', 'zeros'\]"):
        build(make_cfg("model=biggan32", "model.discriminator.bias_init=normal"))


# ----------------------------------------------------------------------------- slim.n_share = -1
@pytest.mark.parametrize(
    "arch, num_classes", [("snresgan32", 0), ("snresgan32", 10), ("sndcgan32", 0), ("sndcgan32", 10)]
)
def test_n_share_minus_one_shares_only_the_final_linear(arch, num_classes):
    """The reference: ``n_share == -1`` -> every block of every width private, the final linear layer
    (l5s[-1]) used by all widths; cGAN-PD's class embedding (l_ys[idx]) stays private."""
    torch.manual_seed(0)
    d = MultiWidthDiscriminator(arch, WIDTHS, n_share=-1, ndf=16, img_channels=1, num_classes=num_classes)
    assert len(d.shared) == 0 and all(len(p.blocks) == d.n_blocks for p in d.private)
    linears = [p.head.linear for p in d.private]
    assert all(lin is linears[0] for lin in linears)
    block_params = [{q.data_ptr() for q in p.blocks.parameters()} for p in d.private]
    assert all(a.isdisjoint(b) for i, a in enumerate(block_params) for b in block_params[i + 1 :])
    if num_classes:
        embeds = [p.head.embed for p in d.private]
        assert len({id(e) for e in embeds}) == len(WIDTHS)
    n = lambda m: sum(q.numel() for q in m.parameters())  # noqa: E731
    per_width = n(d.private[0]) - n(linears[0])
    assert n(d) == len(WIDTHS) * per_width + n(linears[0])  # the shared linear counted once
    # every width's loss reaches the one linear; each width's blocks get gradient only from that width
    x = torch.randn(2, 1, 32, 32)
    y = torch.tensor([1, 2]) if num_classes else None
    d(x, 0.25, y).sum().backward()
    assert linears[0].parametrizations.weight.original.grad.abs().sum() > 0
    assert all(q.grad is None for p in d.private[1:] for q in p.blocks.parameters())
    # the state dict round-trips (the shared linear appears under every head, always the same tensors)
    d2 = MultiWidthDiscriminator(arch, WIDTHS, n_share=-1, ndf=16, img_channels=1, num_classes=num_classes)
    d2.load_state_dict(d.state_dict())
    d.eval(), d2.eval()
    with torch.no_grad():
        for w in WIDTHS:
            torch.testing.assert_close(d2(x, w, y), d(x, w, y))
    assert all(p.head.linear is d2.private[0].head.linear for p in d2.private)


def test_n_share_minus_one_scores_equal_hand_written_forward():
    torch.manual_seed(0)
    d = MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=-1, ndf=16, img_channels=3, num_classes=10).eval()
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 4, 9])
    with torch.no_grad():
        fakes, reals = d.score_all([x] * 4, x, [y] * 4, y)
        for i, w in enumerate(WIDTHS):
            torch.testing.assert_close(d(x, w, y), official_resnet_d(d, w, x, y), rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(fakes[i], reals[i])
            torch.testing.assert_close(fakes[i], d(x, w, y), rtol=1e-5, atol=1e-5)


def test_n_share_error_lists_minus_one(make_cfg):
    with pytest.raises(
        ValueError,
        match=r"slim\.n_share must be an integer in \[0, 4\] for discriminator snresgan32 "
        r"\(4 blocks; .*\) or -1 \(every block private, only the head's final "
        r"linear layer shared\), got -2",
    ):
        MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=-2, ndf=16)
    with pytest.raises(ConfigError, match=r"or -1"):
        build(make_cfg("slim.n_share=8"))
    model, _, _ = build(make_cfg("slim.n_share=-1"))
    assert model.discriminator.n_share == -1 and len(model.discriminator.shared) == 0
