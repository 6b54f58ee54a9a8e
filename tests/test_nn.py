import pytest
import torch
from torch import nn

from slimgan_pl.models import build_generator
from slimgan_pl.nn import (
    SlimmableConv2d,
    SlimmableConvTranspose2d,
    SlimmableLinear,
    check_widths,
    slim_channels,
)

from helpers.tiny import perturb_beyond

WIDTHS = [0.25, 0.5, 0.75, 1.0]


def test_slim_channels_rounding():
    assert slim_channels(100, 0.29) == 29  # float error must not round down to 28
    assert slim_channels(64, 0.25) == 16
    assert slim_channels(3, 0.1) == 1  # never zero channels
    counts = [slim_channels(37, w / 100) for w in range(1, 101)]
    assert counts == sorted(counts) and counts[-1] == 37


@pytest.mark.parametrize(
    "widths, match",
    [
        ([0.5, 0.25], "strictly increasing"),
        ([0.5, 0.5], "strictly increasing"),
        ([0.0, 1.0], r"\(0, 1\]"),
        ([0.5, 1.5], r"\(0, 1\]"),
        ([], "at least one"),
    ],
)
def test_check_widths_rejects(widths, match):
    with pytest.raises(ValueError, match=match):
        check_widths(widths)


def test_layers_equal_dense_layers_with_sliced_weights():
    torch.manual_seed(0)
    conv = SlimmableConv2d(8, 12, 3, padding=1)
    x = torch.randn(2, 4, 5, 5)  # width 0.5 -> 4 inputs, 6 outputs
    dense = nn.Conv2d(4, 6, 3, padding=1)
    dense.weight.data, dense.bias.data = conv.weight[:6, :4].clone(), conv.bias[:6].clone()
    torch.testing.assert_close(conv(x, 0.5), dense(x))

    convt = SlimmableConvTranspose2d(8, 12, 4, stride=2, padding=1)
    dense_t = nn.ConvTranspose2d(4, 6, 4, stride=2, padding=1)
    dense_t.weight.data, dense_t.bias.data = convt.weight[:4, :6].clone(), convt.bias[:6].clone()
    torch.testing.assert_close(convt(x, 0.5), dense_t(x))

    lin = SlimmableLinear(10, 4 * 16, slice_in=False, out_unit=16)
    assert lin(torch.randn(3, 10), 0.5).shape == (3, 2 * 16)  # whole channels of 4x4


@pytest.mark.parametrize("arch", ["sndcgan32", "snresgan32", "sndcgan48", "snresgan64"])
@pytest.mark.parametrize("width", [0.25, 0.5, 0.75])
def test_generator_nesting(arch, width):
    """A width's output depends only on its own channels: changing the rest leaves it unchanged."""
    torch.manual_seed(0)
    g = build_generator(arch, WIDTHS, ngf=32, img_channels=3).eval()
    z = torch.randn(4, 128)
    before = g(z, width=width)
    wide_before = g(z, width=1.0)
    perturb_beyond(g, width)
    torch.testing.assert_close(g(z, width=width), before, rtol=0, atol=0)
    assert (g(z, width=1.0) - wide_before).abs().max() > 1e-3  # the perturbation did something


def test_switchable_bn_isolation():
    torch.manual_seed(0)
    g = build_generator("sndcgan32", WIDTHS, ngf=32, img_channels=1).train()
    state = {k: v.clone() for k, v in g.state_dict().items()}
    g(torch.randn(8, 128), width=0.5)
    changed = {k for k, v in g.state_dict().items() if not torch.equal(v, state[k])}
    assert changed, "a train-mode forward must update width 0.5's BN statistics"
    assert all(".bns.1." in k for k in changed), changed  # width index 1 == 0.5, nothing else


def test_arbitrary_width_list():
    g = build_generator("snresgan32", [0.3, 0.7, 1.0], ngf=20, img_channels=1).eval()
    for w in (0.3, 0.7, 1.0):
        assert g(torch.randn(2, 128), width=w).shape == (2, 1, 32, 32)
    with pytest.raises(ValueError, match=r"trained widths are \[0.3, 0.7, 1.0\]"):
        g(torch.randn(2, 128), width=0.5)


@pytest.mark.parametrize(
    "arch, bottom, size, convs",
    [
        ("sndcgan48", 6, 48, [256, 128, 64]),
        ("sndcgan64", 4, 64, [512, 256, 128, 64]),
        ("snresgan48", 6, 48, [256, 128, 64]),
        ("snresgan64", 4, 64, [512, 256, 128, 64]),
    ],
)
def test_48_and_64px_generator_plans(arch, bottom, size, convs):
    """The reference's plans at width 1.0 (ngf 512 at 48px, 1024 at 64px): every stage halves the
    channels; at width 0.5 every hidden layer has half of them, the image stays 3 channels."""
    ngf = 512 if size == 48 else 1024
    g = build_generator(arch, WIDTHS, ngf=ngf, img_channels=3).eval()
    assert g.fc.weight.shape == (bottom * bottom * ngf, 128)
    stages = g.ups if arch.startswith("sndcgan") else [b.conv2 for b in g.blocks]
    assert [s.weight.shape[1 if arch.startswith("sndcgan") else 0] for s in stages] == convs
    assert [s.active(0.5)[1] for s in stages] == [c // 2 for c in convs]
    with torch.no_grad():
        assert g(torch.randn(2, 128), width=0.5).shape == (2, 3, size, size)
