"""Class-conditional SlimGAN (cGAN-PD and conditional SNDCGAN): scBN, switchable CBN, projection D,
training with labels."""

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from torch.utils.data import DataLoader, TensorDataset

from slimgan_pl import SlimGAN
from slimgan_pl.models import MultiWidthDiscriminator, build_generator
from slimgan_pl.nn import (
    ConditionalBatchNorm2d,
    SliceableConditionalBatchNorm2d,
    SwitchableBatchNorm2d,
    SwitchableConditionalBatchNorm2d,
    slim_channels,
)

from helpers.tiny import fit_on_noise, perturb_beyond

WIDTHS = [0.25, 0.5, 0.75, 1.0]
K = 10


def cond_model(**kw) -> SlimGAN:
    cond_norm, arch = kw.pop("cond_norm", "scbn"), kw.pop("arch", "snresgan32")
    args = dict(
        generator=dict(arch=arch, ngf=16, img_channels=1, num_classes=K, cond_norm=cond_norm),
        discriminator=dict(arch=arch, ndf=16, num_classes=K),
        widths=WIDTHS,
        n_share=2,
        alpha=10.0,
        n_dis=1,
    )
    args.update(kw)
    return SlimGAN(**args)


def fit(model: SlimGAN, iterations: int, batch: int = 8, labels: torch.Tensor | None = None) -> pl.Trainer:
    n_dis = model.hparams.n_dis
    n = batch * n_dis * iterations
    labels = torch.randint(K, (n,), generator=torch.Generator().manual_seed(0)) if labels is None else labels
    return fit_on_noise(model, iterations, batch, labels=labels)


# ----------------------------------------------------------------------------- scBN
def test_scbn_embedding_init_and_shapes():
    torch.manual_seed(0)
    bn = SliceableConditionalBatchNorm2d(64, K, WIDTHS)
    w = bn.embed.weight
    assert w.shape == (K, 2 * 64)  # ONE embedding for all widths, sized for the widest
    gamma, beta = w[:, :64], w[:, 64:]
    assert abs(gamma.mean().item() - 1.0) < 0.01 and 0.01 < gamma.std().item() < 0.03
    assert torch.all(beta == 0)
    assert all(b.affine for b in bn.norm.bns)  # private per-width affine on by default, as the reference
    assert not any(b.affine for b in SliceableConditionalBatchNorm2d(8, K, WIDTHS, affine=False).norm.bns)


@pytest.mark.parametrize("width", [0.25, 0.5, 0.75])
def test_scbn_width_reads_only_its_slice_of_the_shared_embedding(width):
    torch.manual_seed(0)
    c_max = 16
    bn = SliceableConditionalBatchNorm2d(c_max, K, WIDTHS).eval()
    with torch.no_grad():
        bn.embed.weight.normal_()  # break the identity init so every entry matters
    c = slim_channels(c_max, width)
    x, y = torch.randn(4, c, 3, 3), torch.tensor([0, 3, 3, 9])
    before, wide_before = bn(x, width, y), bn(torch.randn(4, c_max, 3, 3), 1.0, y)
    gamma, beta = bn.class_affine(y, width)
    torch.testing.assert_close(gamma, bn.embed.weight[y, :c])
    torch.testing.assert_close(beta, bn.embed.weight[y, c_max : c_max + c])
    with torch.no_grad():  # change every embedding entry outside this width's gamma/beta slices
        bn.embed.weight[:, c:c_max] += 5.0
        bn.embed.weight[:, c_max + c :] += 5.0
    torch.testing.assert_close(bn(x, width, y), before, rtol=0, atol=0)
    assert (bn(torch.randn(4, c_max, 3, 3), 1.0, y) - wide_before).abs().max() > 1e-3


def test_scbn_equals_bn_then_class_affine():
    torch.manual_seed(0)
    bn = SliceableConditionalBatchNorm2d(8, K, WIDTHS).train()
    with torch.no_grad():
        bn.embed.weight.normal_()
    x, y = torch.randn(6, 4, 5, 5), torch.randint(K, (6,))
    ref_bn = torch.nn.BatchNorm2d(4)
    ref_bn.load_state_dict(bn.norm.for_width(0.5).state_dict())
    e = bn.embed.weight[y]
    expected = e[:, :4, None, None] * ref_bn(x) + e[:, 8:12, None, None]
    torch.testing.assert_close(bn(x, 0.5, y), expected)


def test_scbn_per_width_bn_isolation_and_shared_embedding_gradient():
    torch.manual_seed(0)
    bn = SliceableConditionalBatchNorm2d(16, K, WIDTHS).train()
    state = {k: v.clone() for k, v in bn.state_dict().items()}
    out = bn(torch.randn(8, 8, 4, 4), 0.5, torch.randint(K, (8,)))
    changed = {k for k, v in bn.state_dict().items() if not torch.equal(v, state[k])}
    assert changed and all(k.startswith("norm.bns.1.") for k in changed), changed  # width 0.5 only
    (out * torch.randn_like(out)).sum().backward()
    grad = bn.embed.weight.grad
    assert grad[:, :8].abs().sum() > 0 and grad[:, 16:24].abs().sum() > 0  # its gamma and beta slices
    assert torch.all(grad[:, 8:16] == 0) and torch.all(grad[:, 24:] == 0)  # nothing beyond them
    for i, b in enumerate(bn.norm.bns):  # private affine: only width 0.5's
        assert (b.weight.grad is not None) == (i == 1)


# ----------------------------------------------------------------------------- switchable CBN
def test_switchable_cbn_has_one_embedding_per_width():
    torch.manual_seed(0)
    bn = SwitchableConditionalBatchNorm2d(16, K, WIDTHS).train()
    assert len(bn.cbns) == len(WIDTHS) and all(isinstance(c, ConditionalBatchNorm2d) for c in bn.cbns)
    assert [c.embed.weight.shape for c in bn.cbns] == [(K, 2 * slim_channels(16, w)) for w in WIDTHS]
    assert len({c.embed.weight.data_ptr() for c in bn.cbns}) == len(WIDTHS)
    assert not any(c.bn.affine for c in bn.cbns)  # a full CBN: the class affine replaces BN's own
    out = bn(torch.randn(8, 8, 4, 4), 0.5, torch.randint(K, (8,)))
    (out * torch.randn_like(out)).sum().backward()
    assert [c.embed.weight.grad is not None for c in bn.cbns] == [False, True, False, False]
    assert all(torch.all(c.embed.weight[:, c.num_features :] == 0) for c in bn.cbns)  # beta starts at 0


# ----------------------------------------------------------------------------- generator
@pytest.mark.parametrize("arch", ["snresgan32", "sndcgan32"])
@pytest.mark.parametrize("cond_norm", ["scbn", "switchable"])
@pytest.mark.parametrize("width", [0.25, 0.75])
def test_conditional_generator_nesting(arch, cond_norm, width):
    torch.manual_seed(0)
    g = build_generator(arch, WIDTHS, ngf=16, img_channels=1, num_classes=K, cond_norm=cond_norm).eval()
    z, y = torch.randn(4, 128), torch.tensor([1, 2, 3, 4])
    before, wide_before = g(z, width=width, y=y), g(z, width=1.0, y=y)
    perturb_beyond(g, width)
    torch.testing.assert_close(g(z, width=width, y=y), before, rtol=0, atol=0)
    assert (g(z, width=1.0, y=y) - wide_before).abs().max() > 1e-3


def test_conditional_generator_layout():
    g = build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1, num_classes=K)
    assert g.num_classes == K and g.cond_norm == "scbn"
    for block in g.blocks:
        assert isinstance(block.bn1, SliceableConditionalBatchNorm2d)
        assert isinstance(block.bn2, SliceableConditionalBatchNorm2d)
    assert type(g.bn) is SwitchableBatchNorm2d  # the last BN before the output conv is unconditional
    g2 = build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1, num_classes=K, cond_norm="switchable")
    assert all(isinstance(b.bn1, SwitchableConditionalBatchNorm2d) for b in g2.blocks)
    assert build_generator("snresgan32", WIDTHS, ngf=16, num_classes=None).num_classes == 0


def test_conditional_sndcgan_layout_and_labels_matter():
    """Conditional SNDCGAN: every stage's BN is conditional, and the class changes the image."""
    torch.manual_seed(0)
    g = build_generator("sndcgan32", WIDTHS, ngf=16, img_channels=1, num_classes=K).eval()
    assert g.cond_norm == "scbn" and len(g.bns) == 3
    assert all(isinstance(bn, SliceableConditionalBatchNorm2d) for bn in g.bns)
    with torch.no_grad():  # gamma/beta init at 1/0: give the classes different affines
        for bn in g.bns:
            bn.embed.weight.normal_(1.0, 0.5)
    z = torch.randn(2, 128)
    for w in (0.25, 1.0):
        assert (g(z, w, torch.tensor([0, 0])) - g(z, w, torch.tensor([3, 7]))).abs().amax() > 1e-3
    g2 = build_generator("sndcgan32", WIDTHS, ngf=16, img_channels=1, num_classes=K, cond_norm="switchable")
    assert all(isinstance(bn, SwitchableConditionalBatchNorm2d) for bn in g2.bns)
    assert all(type(bn) is SwitchableBatchNorm2d for bn in build_generator("sndcgan32", WIDTHS, ngf=16).bns)


def test_generator_label_errors():
    z = torch.randn(2, 128)
    cond = build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1, num_classes=K)
    with pytest.raises(ValueError, match=r"class-conditional \(model.generator.num_classes=10\): pass class labels"):
        cond(z, width=0.5)
    with pytest.raises(ValueError, match=r"y must be integer class ids of shape \(2,\)"):
        cond(z, width=0.5, y=torch.zeros(3, dtype=torch.long))
    for arch in ("snresgan32", "sndcgan32"):
        with pytest.raises(ValueError, match=r"class-conditional \(model.generator.num_classes=10\)"):
            build_generator(arch, WIDTHS, ngf=16, img_channels=1, num_classes=K)(z, width=0.5)
        uncond = build_generator(arch, WIDTHS, ngf=16, img_channels=1)
        with pytest.raises(ValueError, match=r"unconditional \(model.generator.num_classes=0\)"):
            uncond(z, width=0.5, y=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize(
    "kw, match",
    [
        (
            dict(arch="snresgan32", num_classes=K, cond_norm="cbn"),
            r"model.generator.cond_norm must be one of \['scbn', 'switchable'\], got 'cbn'",
        ),
        (
            dict(arch="sndcgan32", num_classes=K, cond_norm="cbn"),
            r"model.generator.cond_norm must be one of \['scbn', 'switchable'\], got 'cbn'",
        ),
        (dict(arch="snresgan32", num_classes=-1), "model.generator.num_classes must be an integer >= 0"),
        (dict(arch="sndcgan32", num_classes=-1), "model.generator.num_classes must be an integer >= 0"),
    ],
)
def test_generator_config_errors_name_the_key(kw, match):
    arch = kw.pop("arch")
    with pytest.raises(ValueError, match=match):
        build_generator(arch, WIDTHS, ngf=16, **kw)


# ----------------------------------------------------------------------------- projection discriminator
def _embed_weight(d: MultiWidthDiscriminator, i: int) -> torch.Tensor:
    return d.private[i].head.embed.parametrizations.weight.original


def test_projection_d_gradient_reaches_only_its_width_embedding():
    torch.manual_seed(0)
    d = MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=2, ndf=16, img_channels=1, num_classes=K)
    assert len({_embed_weight(d, i).data_ptr() for i in range(len(WIDTHS))}) == len(WIDTHS)  # private per width
    assert torch.nn.utils.parametrize.is_parametrized(d.private[0].head.embed, "weight")  # SN on the embedding
    d(torch.randn(3, 1, 32, 32), 0.5, torch.tensor([0, 1, 2])).sum().backward()
    grads = [_embed_weight(d, i).grad for i in range(len(WIDTHS))]
    assert grads[1] is not None and grads[1].abs().sum() > 0
    assert all(g is None for i, g in enumerate(grads) if i != 1)


def test_projection_d_is_linear_plus_inner_product_and_depends_on_labels():
    torch.manual_seed(0)
    d = MultiWidthDiscriminator("snresgan32", [1.0], n_share=4, ndf=16, img_channels=1, num_classes=K).eval()
    x = torch.randn(2, 1, 32, 32)
    head = d.private[0].head
    h = torch.relu(d.shared(x)).sum(dim=(2, 3))
    for y in (torch.tensor([0, 1]), torch.tensor([5, 5])):
        expected = head.linear(h).flatten() + (head.embed(y) * h).sum(1)
        torch.testing.assert_close(d(x, 1.0, y), expected)
    assert not torch.allclose(d(x, 1.0, torch.tensor([0, 1])), d(x, 1.0, torch.tensor([2, 3])))


def test_sndcgan_projection_d_is_flatten_linear_plus_inner_product_with_pooled_features():
    torch.manual_seed(0)
    d = MultiWidthDiscriminator("sndcgan32", WIDTHS, n_share=7, ndf=16, img_channels=1, num_classes=K).eval()
    x = torch.randn(2, 1, 32, 32)
    h = d.shared(x)  # all 7 layers shared: the heads see the same (already activated) features
    for i, w in enumerate(WIDTHS):
        head = d.private[i].head
        assert torch.nn.utils.parametrize.is_parametrized(head.embed, "weight")
        for y in (torch.tensor([0, 1]), torch.tensor([5, 5])):
            expected = head.linear(h.flatten(1)).flatten() + (head.embed(y) * h.sum(dim=(2, 3))).sum(1)
            torch.testing.assert_close(d(x, w, y), expected)
    assert not torch.allclose(d(x, 1.0, torch.tensor([0, 1])), d(x, 1.0, torch.tensor([2, 3])))
    with pytest.raises(ValueError, match=r"class-conditional \(model.discriminator.num_classes=10\)"):
        d(x, 0.5)


def test_score_all_concatenates_labels_like_images():
    torch.manual_seed(0)
    d = MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=2, ndf=16, img_channels=1, num_classes=K).eval()
    real, real_y = torch.randn(3, 1, 32, 32), torch.tensor([0, 1, 2])
    fakes = [torch.randn(2, 1, 32, 32) for _ in WIDTHS]
    fake_ys = [torch.randint(K, (2,)) for _ in WIDTHS]
    fake_s, real_s = d.score_all(fakes, real, fake_labels=fake_ys, real_labels=real_y)
    for w, f, fy, fs, rs in zip(WIDTHS, fakes, fake_ys, fake_s, real_s):
        torch.testing.assert_close(fs, d(f, w, fy))
        torch.testing.assert_close(rs, d(real, w, real_y))
    only_fake, none = d.score_all(fakes, fake_labels=fake_ys)
    assert none is None and all(torch.allclose(a, b) for a, b in zip(only_fake, fake_s))


def test_discriminator_label_errors():
    x = torch.randn(2, 1, 32, 32)
    fakes = [x] * len(WIDTHS)
    cond = MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=2, ndf=16, img_channels=1, num_classes=K)
    with pytest.raises(ValueError, match=r"class-conditional \(model.discriminator.num_classes=10\)"):
        cond(x, 0.5)
    with pytest.raises(ValueError, match="real_labels"):
        cond.score_all(fakes, x, fake_labels=[torch.zeros(2, dtype=torch.long)] * 4)
    uncond = MultiWidthDiscriminator("snresgan32", WIDTHS, n_share=2, ndf=16, img_channels=1)
    with pytest.raises(ValueError, match=r"unconditional \(model.discriminator.num_classes=0\)"):
        uncond(x, 0.5, torch.zeros(2, dtype=torch.long))


# ----------------------------------------------------------------------------- SlimGAN with labels
@pytest.mark.parametrize(
    "arch, cond_norm, distill_forward",
    [("snresgan32", "scbn", "separate"), ("snresgan32", "switchable", "concat"), ("sndcgan32", "scbn", "separate")],
)
def test_conditional_training_runs_and_updates_g_embeddings_and_d_projections(arch, cond_norm, distill_forward):
    torch.manual_seed(0)
    model = cond_model(arch=arch, cond_norm=cond_norm, distill_forward=distill_forward, n_dis=2)
    g_before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    d_embed_before = [_embed_weight(model.discriminator, i).detach().clone() for i in range(len(WIDTHS))]
    trainer = fit(model, iterations=2)
    assert model.iteration == 2
    changed = {k for k, v in model.generator.state_dict().items() if not torch.equal(v, g_before[k])}
    assert any(k.endswith("fc.weight") for k in changed)
    assert any("embed" in k for k in changed)  # class embeddings of the conditional BNs learn
    assert all(not torch.equal(_embed_weight(model.discriminator, i), b) for i, b in enumerate(d_embed_before))
    assert all(torch.isfinite(v) for k, v in trainer.callback_metrics.items() if k.startswith("train/"))
    assert trainer.callback_metrics["train/distill_loss"] > 0


class _Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, module, args, kwargs, output):
        z = args[0] if args else kwargs["z"]
        self.calls.append((z.detach().clone(), kwargs.get("width"), kwargs.get("y")))


def test_label_flow_real_from_batch_fakes_fresh_per_width_distillation_shared():
    torch.manual_seed(0)
    model = cond_model(n_dis=2)
    seen_real = []
    score_all = model.discriminator.score_all

    def spy(fakes, real=None, fake_labels=None, real_labels=None):
        if real is not None:
            seen_real.append(real_labels.clone())
        return score_all(fakes, real, fake_labels=fake_labels, real_labels=real_labels)

    model.discriminator.score_all = spy
    rec = _Recorder()
    model.generator.register_forward_hook(rec, with_kwargs=True)
    labels = torch.arange(16) % K
    fit(model, iterations=1, batch=8, labels=labels)
    torch.testing.assert_close(torch.cat(seen_real), labels)  # each D step: its own chunk of batch labels
    n_w = len(WIDTHS)
    assert len(rec.calls) == 2 * n_w + 2 * n_w  # D steps (n_dis=2) + G step (adversarial + distillation)
    d_step = rec.calls[:n_w]
    assert all(y is not None and y.shape == (8,) for _, _, y in d_step)
    assert len({tuple(y.tolist()) for _, _, y in d_step}) == n_w  # fresh labels per width
    g_step = rec.calls[2 * n_w :]
    adversarial, distil = g_step[0::2], g_step[1::2]
    assert [w for _, w, _ in distil] == WIDTHS
    assert all(torch.equal(z, distil[0][0]) and torch.equal(y, distil[0][2]) for z, _, y in distil)  # one (z, y)
    assert len({tuple(y.tolist()) for _, _, y in adversarial}) == n_w


def test_sample_with_labels_is_deterministic_and_labels_matter():
    torch.manual_seed(0)
    model = cond_model()
    fit(model, iterations=1)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    y = torch.tensor([0, 1, 2, 3])
    a, b = model.sample(4, 0.5, labels=y, seed=3), model.sample(4, 0.5, labels=y, seed=3)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = model.sample(4, 0.5, labels=torch.tensor([4, 5, 6, 7]), seed=3)
    assert (other - a).flatten(1).abs().amax(1).min() > 1e-4  # every image changes with its class
    assert not torch.equal(model.sample(4, 0.5, labels=y, seed=4), a)
    # labels=None: drawn uniformly from the seeded stream; the same seed gives the same (z, y)
    torch.testing.assert_close(model.sample(6, 1.0, seed=1), model.sample(6, 1.0, seed=1), rtol=0, atol=0)
    assert model.sample(3, 0.5, labels=[1, 1, 1]).shape == (3, 1, 32, 32)  # lists are fine
    assert model.generator.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())


def test_sample_same_z_with_or_without_labels():
    """z comes first from the seeded stream: passing labels does not change the latents."""
    model = cond_model()
    z = model.noise(4, torch.Generator().manual_seed(7))
    rng = torch.Generator().manual_seed(7)
    torch.testing.assert_close(model.noise(4, rng), z)
    y_drawn = model.random_labels(4, rng)
    assert y_drawn.shape == (4,) and 0 <= int(y_drawn.min()) and int(y_drawn.max()) < K
    torch.testing.assert_close(model.sample(4, 1.0, seed=7), model.sample(4, 1.0, labels=y_drawn, seed=7))


def test_grid_labels_rows_are_classes():
    model = cond_model()
    labels = model.grid_labels(24, nrow=4)
    assert labels.view(6, 4).tolist() == [[r] * 4 for r in range(6)]
    assert model.grid_labels(100, nrow=10).view(10, 10)[:, 0].tolist() == list(range(10))
    assert model.grid_labels(48, nrow=4).view(12, 4)[10:, 0].tolist() == [0, 1]  # wraps after K rows
    unconditional = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=16, img_channels=1), discriminator=dict(arch="sndcgan32", ndf=16)
    )
    assert unconditional.grid_labels(16, 4) is None and unconditional.num_classes == 0


def test_sample_label_errors():
    model = cond_model()
    with pytest.raises(ValueError, match=r"class ids in \[0, 9\]"):
        model.sample(2, 0.5, labels=torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"labels must be 2 integer class ids"):
        model.sample(2, 0.5, labels=torch.tensor([0, 1, 2]))
    unconditional = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=16, img_channels=1), discriminator=dict(arch="sndcgan32", ndf=16)
    )
    with pytest.raises(ValueError, match="labels given, but this model is unconditional"):
        unconditional.sample(2, 0.5, labels=torch.tensor([0, 1]))


def test_generator_and_discriminator_classes_must_agree():
    with pytest.raises(ValueError, match=r"model.generator.num_classes=10 and model.discriminator.num_classes=0"):
        cond_model(discriminator=dict(arch="snresgan32", ndf=16))


def test_data_with_other_class_count_is_refused_at_fit_start():
    model = cond_model()

    class Data(pl.LightningDataModule):
        num_classes = 100

        def train_dataloader(self):
            return DataLoader(TensorDataset(torch.zeros(8, 1, 32, 32), torch.zeros(8, dtype=torch.long)), batch_size=8)

    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    with pytest.raises(ValueError, match=r"num_classes=10 but the data has data.num_classes=100"):
        trainer.fit(model, datamodule=Data())


# ----------------------------------------------------------------------------- configs
@pytest.mark.parametrize(
    "experiment, classes, channels",
    [
        ("fmnist_cond", 10, 1),
        ("cifar10_cgan_pd", 10, 3),
        ("cifar100_cgan_pd", 100, 3),
    ],
)
def test_conditional_experiments_compose_and_build(make_cfg, experiment, classes, channels):
    cfg = make_cfg(f"experiment={experiment}", "model.generator.ngf=16", "model.discriminator.ndf=16")
    model = SlimGAN(generator=cfg.model.generator, discriminator=cfg.model.discriminator, **cfg.slim, **cfg.optim)
    assert model.num_classes == classes and model.generator.img_channels == channels
    assert model.generator.cond_norm == "scbn"
    assert cfg.data.num_classes == classes
    assert cfg.trainer.max_steps == cfg.train.g_steps * (cfg.optim.n_dis + 1)
    if experiment != "fmnist_cond":  # the reference recipe
        assert (cfg.slim.alpha, cfg.slim.stepwise, cfg.slim.n_share, cfg.optim.n_dis) == (10.0, True, 2, 5)
        assert (cfg.model.generator.ngf, cfg.model.discriminator.ndf) == (16, 16)  # overridden here
    assert instantiate(cfg.data).num_classes == classes


def test_cond_norm_override_and_invalid_value_from_config(make_cfg):
    cfg = make_cfg("experiment=fmnist_cond", "model.generator.cond_norm=switchable")
    model = SlimGAN(generator=cfg.model.generator, discriminator=cfg.model.discriminator, **cfg.slim, **cfg.optim)
    assert all(isinstance(bn, SwitchableConditionalBatchNorm2d) for bn in model.generator.bns)
    cfg = make_cfg("experiment=fmnist_cond", "model.generator.cond_norm=nope")
    with pytest.raises(ValueError, match="model.generator.cond_norm must be one of"):
        SlimGAN(generator=cfg.model.generator, discriminator=cfg.model.discriminator, **cfg.slim, **cfg.optim)


# ----------------------------------------------------------------------------- cost
@pytest.mark.parametrize("cond_norm", ["scbn", "switchable"])
def test_cost_of_conditional_generator(cond_norm):
    """Active parameters = the entries a forward at that width uses (nonzero gradient with every
    class in the batch); MACs and latency run with labels and equal the unconditional G's MACs."""
    from slimgan_pl.metrics.cost import active_parameters, generator_macs, latency_ms

    torch.manual_seed(0)
    g = build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1, num_classes=K, cond_norm=cond_norm)
    plain = build_generator("snresgan32", WIDTHS, ngf=16, img_channels=1)
    for w in (0.25, 1.0):
        touched = {n: torch.zeros_like(p, dtype=torch.bool) for n, p in g.named_parameters()}
        for _ in range(3):  # a union over passes: one pass can leave an entry's gradient 0 by chance
            g.zero_grad()
            out = g(torch.randn(2 * K, 128), width=w, y=torch.arange(2 * K) % K)
            (out * torch.randn_like(out)).sum().backward()
            for n, p in g.named_parameters():
                if p.grad is not None:
                    touched[n] |= p.grad != 0
        assert active_parameters(g, w) == sum(int(t.sum()) for t in touched.values())
        assert generator_macs(g, w, 128) == generator_macs(plain, w, 128)
    assert latency_ms(g, 0.5, 128, batch=2, repeats=1, warmup=0) > 0
