import pytest
import torch
from torch import nn

from slimgan_pl import SlimGAN, sampling


def tiny_model(num_classes: int = 0) -> SlimGAN:
    g = dict(arch="sndcgan32", ngf=8, img_channels=1)
    d = dict(arch="sndcgan32", ndf=8)
    if num_classes:
        g = dict(arch="biggan32", ngf=8, img_channels=1, num_classes=num_classes)
        d = dict(arch="biggan32", ndf=8, num_classes=num_classes)
    return SlimGAN(generator=g, discriminator=d, widths=[0.5, 1.0], n_share=1, n_dis=1)


def test_eval_mode_restores_every_submodules_flag_even_after_an_error():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2), nn.Dropout())
    net.train()
    net[1].eval()  # mixed modes: a plain module.train(was_training) would lose this one
    with pytest.raises(RuntimeError, match="boom"), sampling.eval_mode(net):
        assert not any(m.training for m in net.modules())
        raise RuntimeError("boom")
    assert [m.training for m in net.modules()] == [True, True, False, True]


@pytest.mark.parametrize("num_classes", [0, 10])
def test_functions_draw_what_the_model_methods_draw(num_classes):
    model = tiny_model(num_classes)
    g = model.generator
    for w in model.widths:
        torch.testing.assert_close(sampling.sample(g, 4, w, seed=3), model.sample(4, w, seed=3), rtol=0, atol=0)
    # z first, then labels, from one seeded CPU stream
    rng = torch.Generator().manual_seed(3)
    z = torch.randn(4, g.nz, generator=rng)
    y = torch.randint(num_classes, (4,), generator=rng) if num_classes else None
    z_fn, y_fn = sampling.latents(g, 4, seed=3)
    torch.testing.assert_close(z_fn, z, rtol=0, atol=0)
    assert (y_fn is None and y is None) or torch.equal(y_fn, y)
    assert g.training  # sampling left the train flag as it was


def test_sample_refuses_bad_arguments_in_one_line():
    g = tiny_model().generator
    with pytest.raises(ValueError, match="n must be >= 1"):
        sampling.sample(g, 0, 1.0)
    with pytest.raises(ValueError, match="unconditional"):
        sampling.sample(g, 2, 1.0, labels=[0, 1])
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        sampling.sample(g, 2, 1.0, batch_size=0)
