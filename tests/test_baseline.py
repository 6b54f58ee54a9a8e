"""The official individually trained baseline (model.baseline.g_width / d_width): native networks of one
width, built and initialised at that size, and seen by the rest of the pipeline as that width."""

from __future__ import annotations

import math

import pytest
import pytorch_lightning as pl
import torch

from slimgan_pl import SlimGAN
from slimgan_pl.checkpoint import load_slimgan
from slimgan_pl.deploy import export as ex
from slimgan_pl.metrics.cost import active_parameters, generator_macs
from slimgan_pl.models import MultiWidthDiscriminator, build_generator
from slimgan_pl.models.baseline import NativeGenerator, check_baseline

from helpers.tiny import fit_on_noise

NGF = NDF = 64

ARCHS = {  # arch -> extra generator/discriminator kwargs
    "sndcgan32": {},
    "snresgan32": {},
    "sndcgan32_cond": {"num_classes": 10},
}


def baseline_model(arch: str = "sndcgan32", g_width: float = 0.25, d_width: float | None = 1.0, **kw) -> SlimGAN:
    extra = ARCHS[arch]
    name = arch.removesuffix("_cond")
    return SlimGAN(
        generator=dict(arch=name, ngf=NGF, img_channels=1, **extra),
        discriminator=dict(arch=name, ndf=NDF, **extra),
        n_share=2,
        n_dis=1,
        baseline=dict(g_width=g_width, d_width=d_width),
        **kw,
    )


def shapes(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(p.shape) for name, p in module.state_dict().items()}


@pytest.mark.parametrize("arch", sorted(ARCHS))
@pytest.mark.parametrize("g_width,d_width", [(0.25, 1.0), (0.75, 0.5)])
def test_baseline_networks_are_the_native_ones(arch, g_width, d_width):
    """Same parameter shapes, and at the same seed the very same initial weights, as building the
    architecture directly with ngf*w / ndf*w channels (what the official baseline.py does)."""
    extra, name = ARCHS[arch], arch.removesuffix("_cond")
    torch.manual_seed(0)
    model = baseline_model(arch, g_width, d_width)
    torch.manual_seed(0)  # SlimGAN builds G first, then D
    native_g = build_generator(name, [1.0], ngf=int(NGF * g_width), img_channels=1, **extra)
    native_d = MultiWidthDiscriminator(name, [g_width], n_share=2, ndf=int(NDF * d_width), img_channels=1, **extra)
    assert isinstance(model.generator, NativeGenerator)
    assert shapes(model.generator.net) == shapes(native_g)
    assert all(
        torch.equal(a, b) for a, b in zip(model.generator.net.state_dict().values(), native_g.state_dict().values())
    )
    assert shapes(model.discriminator) == shapes(native_d)
    assert model.widths == [g_width] and model.hparams.widths == [g_width]
    # one network: every parameter of G is used at its width
    assert active_parameters(model.generator, g_width) == sum(p.numel() for p in native_g.parameters())


def xavier_std(weight: torch.Tensor, gain: float = 1.0) -> float:
    """Hand-written: Xavier-uniform's std gain * sqrt(2 / (fan_in + fan_out)), fan = dim 1 (resp. 0)
    times the kernel's elements (torch's convention, also for transposed convs)."""
    receptive = math.prod(weight.shape[2:])
    return gain * math.sqrt(2.0 / (weight.shape[1] * receptive + weight.shape[0] * receptive))


def test_baseline_init_std_is_the_native_networks_not_the_full_tensors():
    """The native G's weights have the Xavier std of their own (small) shapes; slicing a full-size
    tensor (slim.widths=[0.25], the old baseline) gives about 1/sqrt(0.25) = 2x smaller weights."""
    torch.manual_seed(0)
    g = baseline_model(g_width=0.25).generator.net
    torch.manual_seed(0)
    sliced = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=NGF, img_channels=1),
        discriminator=dict(arch="sndcgan32", ndf=NDF),
        widths=[0.25],
        n_dis=1,
    ).generator
    layers = {
        "fc": (g.fc.weight, sliced.fc.weight[: g.fc.out_features]),
        "ups.0": (g.ups[0].weight, sliced.ups[0].weight[: g.ups[0].in_channels, : g.ups[0].out_channels]),
    }
    for name, (native, cut) in layers.items():
        expected = xavier_std(native)
        assert native.std().item() == pytest.approx(expected, rel=0.08), name
        assert cut.shape == native.shape  # same active shape, but initialised for the full tensor
        assert cut.std().item() < 0.75 * expected, name


def fit(model: SlimGAN, iterations: int = 2, batch: int = 8) -> pl.Trainer:
    return fit_on_noise(model, iterations, batch)


def test_baseline_trains_and_the_pipeline_sees_its_width(tmp_path):
    """Training logs per-width keys of g_width; the checkpoint reloads as the native baseline; sample,
    cost and export answer to g_width, and the exported dense model (and its file) equal it."""
    torch.manual_seed(0)
    model = baseline_model(g_width=0.5, d_width=0.5)
    trainer = fit(model)
    assert "train/g_loss_w0.5" in trainer.callback_metrics and "train/g_loss_w1.0" not in trainer.callback_metrics
    path = tmp_path / "last.ckpt"
    trainer.save_checkpoint(path)
    loaded = load_slimgan(path)
    assert isinstance(loaded.generator, NativeGenerator) and loaded.widths == [0.5]
    assert loaded.hparams.baseline == {"g_width": 0.5, "d_width": 0.5}
    images = loaded.sample(4, 0.5, seed=1)
    assert images.shape == (4, 1, 32, 32)
    with pytest.raises(ValueError, match=r"trained widths are \[0.5\]"):
        loaded.sample(4, 1.0)
    torch.manual_seed(0)
    native = build_generator("sndcgan32", [1.0], ngf=NGF // 2, img_channels=1)
    assert generator_macs(loaded.generator, 0.5, 128) == generator_macs(native, 1.0, 128)

    dense = ex.export_model(loaded, 0.5, source=str(path))  # checks itself against the model (verify)
    assert dense.meta["width"] == 0.5 and dense.meta["baseline"] == {"g_width": 0.5}
    z = torch.randn(3, 128, generator=torch.Generator().manual_seed(2))
    loaded.generator.eval()
    assert torch.allclose(dense(z), loaded.generator(z, width=0.5), atol=1e-5)
    written = ex.export_files(dense, tmp_path / "export", "baseline", formats=["state_dict"])
    again = ex.load_dense(written["state_dict"][0])
    assert torch.allclose(again(z), dense(z), atol=1e-6)


@pytest.mark.parametrize(
    "baseline,message",
    [
        ({"g_width": 0}, r"model.baseline.g_width must be a number in \(0, 1\] or null \(off\), got 0"),
        ({"g_width": 1.5}, r"model.baseline.g_width must be a number in \(0, 1\] or null \(off\), got 1.5"),
        ({"g_width": "half"}, r"model.baseline.g_width must be a number in \(0, 1\]"),
        ({"g_width": True}, r"model.baseline.g_width must be a number in \(0, 1\]"),
        ({"g_width": 0.5, "d_width": -1}, r"model.baseline.d_width must be a number in \(0, 1\] or null"),
        ({"g_width": None, "d_width": 0.5}, r"model.baseline.d_width=0.5 needs model.baseline.g_width"),
        (
            {"g_width": 0.5, "width": 1},
            r"model.baseline has unknown keys \['width'\]; allowed: \['g_width', 'd_width'\]",
        ),
    ],
)
def test_bad_baseline_values_are_one_line_errors(baseline, message):
    with pytest.raises(ValueError, match=message) as info:
        SlimGAN(
            generator=dict(arch="sndcgan32", ngf=16, img_channels=1),
            discriminator=dict(arch="sndcgan32", ndf=16),
            baseline=baseline,
        )
    assert "\n" not in str(info.value)


def test_baseline_off_by_default_and_d_width_defaults_to_full_size():
    assert check_baseline(None) is None and check_baseline({"g_width": None, "d_width": None}) is None
    assert check_baseline({"g_width": 0.25}).d_width == 1.0


def test_baseline_from_the_config(make_cfg):
    from slimgan_pl.train import ConfigError, build

    cfg = make_cfg("model.baseline.g_width=0.25", "callbacks.fid=null")
    model, _, _ = build(cfg)
    assert isinstance(model.generator, NativeGenerator) and model.widths == [0.25]
    assert model.generator.native_ngf == 4 and model.discriminator.private[0].head.linear.in_features == 16 * 16
    assert not isinstance(build(make_cfg("callbacks.fid=null"))[0].generator, NativeGenerator)  # off by default
    with pytest.raises(ConfigError, match=r"model.baseline.g_width must be a number in \(0, 1\]"):
        build(make_cfg("model.baseline.g_width=2", "callbacks.fid=null"))
