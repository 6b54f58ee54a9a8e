"""Universally slimmable SlimGAN (slim.mode=universal, issue 17): layers, nesting, granularity."""

from __future__ import annotations

import pytest
import torch

from slimgan_pl.models import build_generator
from slimgan_pl.nn import SlimmableConv2d, SlimmableConvTranspose2d, SlimmableLinear, slim_channels
from slimgan_pl.nn.universal import UniversalBatchNorm2d
from slimgan_pl.universal import (
    calibrate,
    channel_signature,
    distinct_widths,
    make_universal,
    nearest_anchor,
)

ANCHORS = [0.25, 0.5, 0.75, 1.0]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def universal_generator(arch: str = "sndcgan32", **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    g = build_generator(arch, ANCHORS, ngf=16, img_channels=1, **kwargs)
    return make_universal(g, (0.25, 1.0))


def test_universal_bn_is_batch_norm_with_sliced_affine():
    torch.manual_seed(0)
    bn = UniversalBatchNorm2d(8)
    with torch.no_grad():
        bn.weight.normal_(1, 0.3), bn.bias.normal_(0, 0.3)
    x = torch.randn(6, 3, 4, 4)  # width 0.4 of 8 channels: 3
    mean, var = x.mean((0, 2, 3)), x.var((0, 2, 3), unbiased=False)
    expected = (x - mean[:, None, None]) / torch.sqrt(var[:, None, None] + 1e-5)
    expected = expected * bn.weight[:3, None, None] + bn.bias[:3, None, None]
    torch.testing.assert_close(bn.train()(x, 0.4), expected)
    with pytest.raises(ValueError, match="width 0.4 has no calibrated BN statistics"):
        bn.eval()(x, 0.4)
    with pytest.raises(ValueError, match="expected 3 channels at width 0.4"):
        bn.train()(torch.randn(2, 4, 2, 2), 0.4)


def _perturb_beyond(g: torch.nn.Module, width: float) -> None:
    """Change every weight, bias and BN affine entry that width ``width`` does not use."""
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, (SlimmableLinear, SlimmableConv2d, SlimmableConvTranspose2d)):
                in_w, out_w = m.active(width)
                mask = torch.ones_like(m.weight, dtype=torch.bool)
                if isinstance(m, SlimmableConvTranspose2d):
                    mask[:in_w, :out_w] = False
                else:
                    mask[:out_w, :in_w] = False
                m.weight[mask] += torch.randn_like(m.weight)[mask]
                if m.bias is not None:
                    m.bias[out_w:] += 1.0
            if isinstance(m, UniversalBatchNorm2d):
                c = slim_channels(m.num_features, width)
                m.weight[c:] += 1.0
                m.bias[c:] -= 1.0


@pytest.mark.parametrize("arch", ["sndcgan32", "snresgan32"])
@pytest.mark.parametrize("width", [0.3, 0.55, 0.8])  # none is an anchor width
def test_universal_generator_nesting(arch, width):
    """The output at any width depends only on the first channels of every layer, in train mode
    (batch statistics) and in eval mode (calibrated statistics, recalibrated after the change)."""
    g = universal_generator(arch)
    z = torch.randn(8, 128)
    train_before = g.train()(z, width=width)
    calibrate(g, [width, 1.0], n_batches=2, batch_size=8)
    eval_before, wide_before = g(z, width=width), g(z, width=1.0)
    _perturb_beyond(g, width)
    torch.testing.assert_close(g.train()(z, width=width), train_before, rtol=0, atol=0)
    calibrate(g, [width, 1.0], n_batches=2, batch_size=8, force=True)
    torch.testing.assert_close(g(z, width=width), eval_before, rtol=0, atol=0)
    assert (g(z, width=1.0) - wide_before).abs().max() > 1e-3  # the perturbation did something


def test_universal_generator_range_and_conditional_scbn():
    g = universal_generator("snresgan32", num_classes=10, cond_norm="scbn")
    y = torch.arange(4)
    assert g.train()(torch.randn(4, 128), width=0.37, y=y).shape == (4, 1, 32, 32)
    with pytest.raises(ValueError, match=r"outside this universal generator's range \[0.25, 1.0\]"):
        g(torch.randn(4, 128), width=0.2, y=y)
    with pytest.raises(ValueError, match="cond_norm=scbn"):
        universal_generator("snresgan32", num_classes=10, cond_norm="switchable")
    fixed = build_generator("sndcgan32", ANCHORS, ngf=16, img_channels=1)
    with pytest.raises(ValueError, match="not a trained width"):  # fixed-width models refuse untrained widths
        fixed(torch.randn(2, 128), width=0.4)


def test_same_channels_same_network():
    g = universal_generator()
    # ngf=16: 0.3 and 0.31 both give 4 / 2 / 1 channels (floor), 0.35 gives 5
    assert channel_signature(g, 0.3) == channel_signature(g, 0.31) != channel_signature(g, 0.35)
    kept, notes = distinct_widths(g, [0.3, 0.31, 0.35])
    assert kept == [0.3, 0.35] and "width 0.31 gives the same channel counts as width 0.3" in notes[0]
    notes = calibrate(g, [0.3, 0.31], n_batches=2, batch_size=8)
    assert notes and "same network" in notes[0]
    z = torch.randn(4, 128)
    torch.testing.assert_close(g(z, width=0.3), g(z, width=0.31), rtol=0, atol=0)


def test_calibration_is_the_standing_statistics_of_the_width():
    """Calibrated statistics = mean over the generated batches of the per-batch statistics (the
    standing-statistics rule), computed here by hand for the first BN."""
    g = universal_generator()
    calibrate(g, [0.4], n_batches=3, batch_size=8, seed=5)
    rng = torch.Generator().manual_seed(5)
    feats = []
    with torch.no_grad():
        for _ in range(3):
            z = torch.randn(8, 128, generator=rng)
            h = g.fc(z, 0.4).view(8, -1, 4, 4)
            feats.append(g.ups[0](h, 0.4))
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.var((0, 2, 3), unbiased=True) for f in feats]).mean(0)
    got_mean, got_var = g.bns[0].statistics["0.4"]
    torch.testing.assert_close(got_mean, mean, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_var, var, rtol=1e-4, atol=1e-5)
    # each width on its own seeded stream: calibrating another width first changes nothing
    other = universal_generator()
    calibrate(other, [0.7, 0.4], n_batches=3, batch_size=8, seed=5)
    torch.testing.assert_close(other.bns[0].statistics["0.4"][0], got_mean, rtol=0, atol=0)
    assert got_mean.shape == (3,)  # the first BN has 8 channels; 8 * 0.4 = 3.2 -> 3


def test_nearest_anchor_routing():
    assert [nearest_anchor(ANCHORS, w) for w in (0.25, 0.3, 0.375, 0.6, 0.9, 1.0)] == [0, 0, 1, 1, 3, 3]
