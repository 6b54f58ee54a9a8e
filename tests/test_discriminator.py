import pytest
import torch

from slimgan_pl.models import MultiWidthDiscriminator

WIDTHS = [0.25, 0.5, 0.75, 1.0]


def _n(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("arch", ["sndcgan32", "snresgan32"])
@pytest.mark.parametrize("n_share", [0, 2, 4])  # 4 = every block of the ResNet D
def test_sharing_and_no_dead_parameters(arch, n_share):
    torch.manual_seed(0)
    d = MultiWidthDiscriminator(arch, WIDTHS, n_share=n_share, ndf=16, img_channels=1)
    assert len(d.shared) == n_share
    assert all(len(p.blocks) == d.n_blocks - n_share for p in d.private)
    # private parts are distinct modules with distinct storage
    ptrs = [{q.data_ptr() for q in p.parameters()} for p in d.private]
    assert all(a.isdisjoint(b) for i, a in enumerate(ptrs) for b in ptrs[i + 1 :])
    assert _n(d) == _n(d.shared) + len(WIDTHS) * _n(d.private[0])
    # every parameter receives a gradient from the multi-width loss: nothing is dead
    real = torch.randn(3, 1, 32, 32)
    fakes = [torch.randn(3, 1, 32, 32) for _ in WIDTHS]
    fake_s, real_s = d.score_all(fakes, real)
    (torch.stack(fake_s).sum() + torch.stack(real_s).sum()).backward()
    dead = [name for name, p in d.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, dead


def test_score_all_matches_per_width_forward():
    torch.manual_seed(0)
    d = MultiWidthDiscriminator("sndcgan32", WIDTHS, n_share=2, ndf=16, img_channels=3).eval()
    real = torch.randn(2, 3, 32, 32)
    fakes = [torch.randn(2, 3, 32, 32) for _ in WIDTHS]
    fake_s, real_s = d.score_all(fakes, real)
    for w, f, r, fs, rs in zip(WIDTHS, fakes, [real] * 4, fake_s, real_s):
        torch.testing.assert_close(fs, d(f, w))
        torch.testing.assert_close(rs, d(r, w))


@pytest.mark.parametrize(
    "arch, size, n_blocks", [("sndcgan48", 48, 7), ("sndcgan64", 64, 9), ("snresgan48", 48, 5), ("snresgan64", 64, 5)]
)
def test_48_and_64px_plans(arch, size, n_blocks):
    """Block counts (the n_share range) and channel plans of the reference's 48/64px D's."""
    d = MultiWidthDiscriminator(arch, WIDTHS, n_share=n_blocks, ndf=64, img_channels=3)
    assert d.n_blocks == n_blocks and len(d.shared) == n_blocks
    assert d(torch.randn(2, 3, size, size), 0.5).shape == (2,)
    with pytest.raises(
        ValueError, match=rf"slim.n_share must be an integer in \[0, {n_blocks}\] for discriminator {arch}"
    ):
        MultiWidthDiscriminator(arch, WIDTHS, n_share=n_blocks + 1, ndf=64)
    convs = [m for m in d.shared.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1)]
    outs = [c.out_channels for c in convs]
    if arch.startswith("sndcgan"):  # ndf/8.. (48px, 3 stages) or ndf/16.. (64px, 4 stages), last conv to ndf
        stages = [8, 8, 4, 4, 2, 2] if size == 48 else [16, 16, 8, 8, 4, 4, 2, 2]
        assert outs == [64 // k for k in stages] + [64]
        assert d.private[0].head.linear.in_features == 64 * (6 if size == 48 else 4) ** 2
    else:  # two 3x3 convs per block: ndf/16, /8, /4, /2, ndf; the hidden width is the block's input (SNGAN)
        assert outs == [4, 4, 4, 8, 8, 16, 16, 32, 32, 64]
        assert [c.in_channels for c in convs] == [3, 4, 4, 4, 8, 8, 16, 16, 32, 32]
        h = d.shared(torch.randn(1, 3, size, size))
        assert h.shape[-1] == (3 if size == 48 else 2)  # the 5th block downsamples only at 64px


def test_n_share_beyond_blocks_is_rejected():
    with pytest.raises(ValueError, match=r"slim.n_share must be an integer in \[0, 7\]"):
        MultiWidthDiscriminator("sndcgan32", WIDTHS, n_share=8, ndf=16)  # 7 conv layers
    with pytest.raises(ValueError, match=r"slim.n_share must be an integer in \[0, 4\]"):
        MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=5, ndf=16)  # 4 residual blocks
    with pytest.raises(ValueError, match="model.discriminator.arch must be one of"):
        MultiWidthDiscriminator("vgg", WIDTHS, n_share=1, ndf=16)


def test_spectral_norm_is_a_parametrization():
    d = MultiWidthDiscriminator("sndcgan32", [1.0], n_share=1, ndf=16)
    conv = d.shared[0][0]
    assert torch.nn.utils.parametrize.is_parametrized(conv, "weight")
    d.train()
    for _ in range(30):  # power iterations converge; sigma of the normalised weight is ~1
        d(torch.randn(1, 3, 32, 32), 1.0)
    w = conv.weight.flatten(1)
    assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1.0) < 0.05
