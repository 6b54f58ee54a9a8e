import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, TensorDataset

from slimgan_pl import SlimGAN
from slimgan_pl.losses import distillation_loss

from helpers.tiny import fit_on_noise

WIDTHS = [0.25, 0.5, 0.75, 1.0]


def tiny_model(**kw) -> SlimGAN:
    args = dict(
        generator=dict(arch="sndcgan32", ngf=16, img_channels=1),
        discriminator=dict(arch="sndcgan32", ndf=16),
        widths=WIDTHS,
        n_share=2,
        alpha=20.0,
        n_dis=1,
    )
    args.update(kw)
    return SlimGAN(**args)


def fit(model: SlimGAN, iterations: int, batch: int = 8, **trainer_kw) -> pl.Trainer:
    return fit_on_noise(model, iterations, batch, **trainer_kw)


@pytest.mark.parametrize("stepwise", [True, False])
def test_distillation_gradient_reaches_students_not_widest(stepwise):
    torch.manual_seed(0)
    model = tiny_model()
    z = torch.randn(4, 128)
    outs = [model.generator(z, width=w) for w in WIDTHS]
    for o in outs:
        o.retain_grad()
    distillation_loss(outs, stepwise=stepwise).backward()
    assert all(o.grad.abs().sum() > 0 for o in outs[:-1])
    assert outs[-1].grad is None or outs[-1].grad.abs().sum() == 0
    # the widest width's private BN affine gets nothing; narrower ones do
    last_bn = model.generator.bns[-1]
    assert last_bn.bns[-1].weight.grad is None
    assert last_bn.bns[0].weight.grad.abs().sum() > 0


def test_stepwise_and_plain_pairs():
    a, b, c = torch.zeros(1), torch.ones(1), torch.full((1,), 3.0)
    assert distillation_loss([a, b, c], stepwise=True).item() == pytest.approx((1 + 4) / 2)
    assert distillation_loss([a, b, c], stepwise=False).item() == pytest.approx((9 + 4) / 2)
    assert distillation_loss([a]).item() == 0.0


class _Counter:
    def __init__(self):
        self.n = 0

    def __call__(self, *args):
        self.n += 1


def test_iteration_does_no_wasted_work():
    """Per iteration (n_dis=2): G weights get gradients once (G step only; no G graph in D steps),
    D weights get them n_dis times (no D weight gradients in the G step), the shared D trunk runs
    once per D step on real+fakes together and once in the G step, G runs once per width per step
    plus once per width for distillation."""
    torch.manual_seed(0)
    model = tiny_model(n_dis=2)
    g_grads, d_grads, trunk_calls, g_calls = _Counter(), _Counter(), _Counter(), _Counter()
    g_param = model.generator.fc.weight
    d_param = model.discriminator.private[0].head.linear.parametrizations.weight.original
    g_param.register_hook(g_grads)
    d_param.register_hook(d_grads)
    model.discriminator.shared.register_forward_hook(trunk_calls)
    model.generator.register_forward_hook(g_calls)
    trainer = fit(model, iterations=3)
    assert g_grads.n == 3
    assert d_grads.n == 3 * 2
    assert trunk_calls.n == 3 * (2 + 1)
    assert g_calls.n == 3 * (2 * len(WIDTHS) + 2 * len(WIDTHS))
    # Lightning counts optimizer steps: n_dis + 1 per iteration
    assert trainer.global_step == 3 * 3 and model.iteration == 3


def test_alpha_zero_trains_and_skips_distillation_forward():
    torch.manual_seed(0)
    model = tiny_model(alpha=0.0)
    g_calls = _Counter()
    model.generator.register_forward_hook(g_calls)
    before = {k: v.clone() for k, v in model.generator.state_dict().items()}
    trainer = fit(model, iterations=2)
    assert g_calls.n == 2 * (len(WIDTHS) + len(WIDTHS))  # D step + G step, no distillation forwards
    assert trainer.callback_metrics["train/distill_loss"] == 0
    assert any(not torch.equal(v, before[k]) for k, v in model.generator.state_dict().items())


def test_concat_distill_forward_runs_one_forward_per_width():
    torch.manual_seed(0)
    model = tiny_model(distill_forward="concat")
    g_calls = _Counter()
    model.generator.register_forward_hook(g_calls)
    trainer = fit(model, iterations=2)
    assert g_calls.n == 2 * (len(WIDTHS) + len(WIDTHS))
    assert torch.isfinite(trainer.callback_metrics["train/distill_loss"])
    assert trainer.callback_metrics["train/distill_loss"] > 0


def test_sample_is_eval_mode_deterministic_and_leaves_bn_alone():
    torch.manual_seed(0)
    model = tiny_model()
    fit(model, iterations=2)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    a = model.sample(5, width=0.5, seed=3)
    b = model.sample(5, width=0.5, seed=3)
    assert a.shape == (5, 1, 32, 32) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert model.generator.training  # mode restored
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="trained widths"):
        model.sample(2, width=0.6)


@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(widths=[0.5, 0.25]), "slim.widths"),
        (dict(widths=[0.5, 1.2]), "slim.widths"),
        (dict(n_share=8), "slim.n_share"),
        (dict(alpha=-1.0), "slim.alpha"),
        (dict(n_dis=0), "optim.n_dis"),
        (dict(distill_forward="both"), "slim.distill_forward"),
        (dict(g_betas=[0.5]), "optim.g_betas"),
        (dict(generator=dict(arch="nope")), "model.generator.arch"),
    ],
)
def test_invalid_settings_name_the_key(kw, match):
    with pytest.raises(ValueError, match=match):
        tiny_model(**kw)


def test_progress_bar_counts_iterations():
    from slimgan_pl.callbacks import IterationProgressBar

    bar = IterationProgressBar(refresh_rate=1)
    model = tiny_model(n_dis=2)
    n_dis = 2
    data = TensorDataset(torch.rand(8 * n_dis * 4, 1, 32, 32), torch.zeros(8 * n_dis * 4, dtype=torch.long))
    trainer = pl.Trainer(
        max_steps=6 * (n_dis + 1),
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        callbacks=[bar],
    )
    trainer.fit(model, DataLoader(data, batch_size=8 * n_dis, drop_last=True))
    # 4 batches per epoch, 6 iterations: one bar for the whole run, 6/6 (not 2 of an epoch's 4 batches, not 18 steps)
    assert model.iteration == 6
    assert bar.train_progress_bar.total == 6 and bar.train_progress_bar.n == 6


def test_resume_mid_epoch_keeps_the_bar_total_and_last_ckpt_holds_the_final_iteration(tmp_path):
    """Lightning calls no on_train_epoch_start on a mid-epoch resume (the bar showed "n/?"), and saves
    last.ckpt only with a periodic checkpoint (it held iteration 2 of 3 here)."""
    from slimgan_pl.callbacks import IterationProgressBar
    from slimgan_pl.resume import FinalIterationCheckpoint

    data = TensorDataset(torch.rand(8 * 16, 1, 32, 32), torch.zeros(8 * 16, dtype=torch.long))
    from slimgan_pl.data.resumable import resumable_loader

    # the data modules' stateful loader; 16 iterations per epoch: both fits stay in epoch 0
    loader = resumable_loader(data, batch_size=8, seed=0)

    def fit_to(iterations: int, folder, ckpt_path=None) -> IterationProgressBar:
        bar = IterationProgressBar(refresh_rate=1)
        checkpoint = FinalIterationCheckpoint(dirpath=folder, save_last=True, every_n_train_steps=4)  # every 2
        trainer = pl.Trainer(
            max_steps=iterations * 2,
            accelerator="cpu",
            logger=False,
            enable_model_summary=False,
            callbacks=[bar, checkpoint],
        )
        trainer.fit(tiny_model(), loader, ckpt_path=ckpt_path)
        return bar

    bar = fit_to(3, tmp_path / "a")
    assert (bar.train_progress_bar.n, bar.train_progress_bar.total) == (3, 3)
    last = torch.load(tmp_path / "a" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 3 * 2  # the final iteration, not the last periodic save (iteration 2)
    fit_to(4, tmp_path / "b")  # last.ckpt = the periodic save of iteration 4, mid-epoch
    bar = fit_to(6, tmp_path / "b", ckpt_path=tmp_path / "b" / "last.ckpt")
    assert (bar.train_progress_bar.n, bar.train_progress_bar.total) == (6, 6)
    assert bar.train_progress_bar.desc.startswith("iteration")


def test_sample_grid_callback_writes_every_width_and_leaves_model_alone(tmp_path):
    from slimgan_pl.callbacks import SampleGridCallback

    torch.manual_seed(0)
    model = tiny_model()
    trainer = fit(model, iterations=2)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    paths = SampleGridCallback(str(tmp_path), every_n_iterations=1, n_samples=4, nrow=2).render(trainer, model)
    assert [p.parent.name for p in paths[:-1]] == ["w0.25", "w0.5", "w0.75", "w1.0"]
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths)
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.generator.training


def test_truncation_keeps_every_latent_below_threshold():
    model = tiny_model()
    z = model.noise(2000, torch.Generator().manual_seed(0), truncation=0.5)
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # resampled, not clipped or scaled
    assert not torch.equal(model.sample(4, 1.0, seed=0, truncation=0.5), model.sample(4, 1.0, seed=0))
    with pytest.raises(ValueError, match="truncation"):
        model.noise(2, truncation=0.0)


# ----------------------------------------------------------------------------- optim.loss
# Hand-written reference formulas (the official code's: mimicry's losses.py through BCE-with-logits).
def _reference_losses(name: str, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    sig = torch.sigmoid
    bce_d = -torch.log(sig(real)).mean() - torch.log(1 - sig(fake)).mean()  # BCE(real, 1) + BCE(fake, 0)
    ref = {
        "hinge": (torch.clamp(1 - real, min=0).mean() + torch.clamp(1 + fake, min=0).mean(), -fake.mean()),
        "gan": (bce_d, -torch.log(sig(fake)).mean()),  # BCE(fake, 1)
        "ns": (bce_d, -torch.log(sig(fake) + 1e-8).mean()),
        "saturating": (bce_d, torch.log(1 - sig(fake)).mean()),
    }
    return ref[name]


@pytest.mark.parametrize("name", ["hinge", "gan", "ns", "saturating"])
def test_gan_losses_equal_the_reference_formulas(name):
    from slimgan_pl.losses import gan_losses

    real = torch.tensor([[-3.0], [-0.5], [0.0], [0.7], [2.5], [12.0]], dtype=torch.float64)
    fake = torch.tensor([[-9.0], [-1.2], [0.0], [0.3], [1.5], [4.0]], dtype=torch.float64)
    d_loss, g_loss = gan_losses(name)
    want_d, want_g = _reference_losses(name, real, fake)
    torch.testing.assert_close(d_loss(real, fake), want_d, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_loss(fake), want_g, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name", ["gan", "ns", "saturating"])
def test_loss_choice_reaches_every_width_of_both_networks(name, monkeypatch):
    """One D step and one G step: each width's logged loss is the chosen loss of that width's scores."""
    import slimgan_pl.models.discriminators as disc

    torch.manual_seed(0)
    model = tiny_model(loss=name, alpha=0.0)
    scores = []
    original = disc.MultiWidthDiscriminator.score_all
    monkeypatch.setattr(
        disc.MultiWidthDiscriminator,
        "score_all",
        lambda self, *a, **kw: scores.append(original(self, *a, **kw)) or scores[-1],
    )
    logged = {}
    monkeypatch.setattr(SlimGAN, "log_dict", lambda self, d, **kw: logged.update(d))
    monkeypatch.setattr(SlimGAN, "log", lambda self, *a, **kw: None)
    fit(model, iterations=1)
    (d_fake, d_real), (g_fake, _) = scores
    for i, w in enumerate(WIDTHS):
        want_d, _ = _reference_losses(name, d_real[i].detach(), d_fake[i].detach())
        _, want_g = _reference_losses(name, d_real[i].detach(), g_fake[i].detach())
        torch.testing.assert_close(logged[f"train/d_loss_w{w}"], want_d)
        torch.testing.assert_close(logged[f"train/g_loss_w{w}"], want_g)


def test_unknown_loss_or_lr_decay_is_one_line_error_naming_key_and_values():
    for kw, key, values in (
        (dict(loss="wgan"), "optim.loss", "'hinge', 'gan', 'ns', 'saturating'"),
        (dict(lr_decay="cosine"), "optim.lr_decay", "'none', 'linear'"),
    ):
        with pytest.raises(ValueError) as info:
            tiny_model(**kw)
        message = str(info.value)
        assert key in message and values in message and "\n" not in message


# ----------------------------------------------------------------------------- optim.lr_decay
class RecordLR(pl.Callback):
    def __init__(self) -> None:
        self.lrs = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        opt_g, opt_d = pl_module.optimizers()
        self.lrs.append((opt_g.param_groups[0]["lr"], opt_d.param_groups[0]["lr"]))


def _official_linear_decay(lr: float, global_step: int, num_steps: int) -> float:
    """mimicry's LRScheduler.linear_decay with value range (lr, 0) and step range (0, num_steps), set
    after the trainer's global_step += 1; so iteration k (0-based) runs with the value at step k."""
    if global_step <= 0:
        return lr
    if global_step >= num_steps:
        return 0.0
    return lr + (global_step - 0) / (num_steps - 0) * (0.0 - lr)


@pytest.mark.parametrize("n_dis", [1, 2])
def test_linear_lr_decay_follows_the_official_schedule(n_dis):
    torch.manual_seed(0)
    iterations = 5
    model = tiny_model(lr_decay="linear", g_lr=2e-4, d_lr=4e-4, n_dis=n_dis, alpha=0.0, widths=[0.5, 1.0])
    rec = RecordLR()
    fit(model, iterations=iterations, callbacks=[rec])
    want = [
        (_official_linear_decay(2e-4, k, iterations), _official_linear_decay(4e-4, k, iterations))
        for k in range(iterations)
    ]
    assert len(rec.lrs) == iterations
    for got, expected in zip(rec.lrs, want):
        assert got == pytest.approx(expected, rel=1e-12)
    assert rec.lrs[0] == (2e-4, 4e-4) and rec.lrs[-1] == pytest.approx((2e-4 / 5, 4e-4 / 5))
    flat = tiny_model(alpha=0.0, widths=[0.5, 1.0])
    rec = RecordLR()
    fit(flat, iterations=2, callbacks=[rec])
    assert rec.lrs == [(2e-4, 2e-4)] * 2  # lr_decay=none (default): constant


# ----------------------------------------------------------------------------- optim presets
SNGAN_SETTINGS = {  # SNGAN (Miyato et al. 2018) Table 1 A-F and the official code's G: lr, beta1, beta2, n_dis
    "a": (1e-4, 0.5, 0.9, 5),
    "b": (1e-4, 0.5, 0.999, 1),
    "c": (2e-4, 0.5, 0.999, 1),
    "d": (1e-3, 0.5, 0.9, 5),
    "e": (1e-3, 0.5, 0.999, 5),
    "f": (1e-3, 0.9, 0.999, 5),
    "g": (2e-4, 0.0, 0.9, 5),
}


@pytest.mark.parametrize(
    "preset, setting", [*((f"sngan_{k}", k) for k in SNGAN_SETTINGS), ("dcgan", "c"), ("resnet", "g")]
)
def test_sngan_optim_presets(make_cfg, preset, setting):
    lr, beta1, beta2, n_dis = SNGAN_SETTINGS[setting]
    optim = make_cfg(f"optim={preset}").optim
    assert (optim.g_lr, optim.d_lr, optim.n_dis) == (lr, lr, n_dis)
    assert list(optim.g_betas) == list(optim.d_betas) == [beta1, beta2]
    assert optim.loss == "hinge" and optim.lr_decay == "none" and optim.ortho_reg == 0.0


@pytest.mark.parametrize("override, key", [("optim.loss=wgan", "optim.loss"), ("optim.lr_decay=cos", "optim.lr_decay")])
def test_loss_and_lr_decay_config_errors_before_training(make_cfg, override, key):
    from slimgan_pl.train import ConfigError, build

    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(make_cfg(override))
