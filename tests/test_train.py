"""End to end through the Hydra config on real Fashion-MNIST: a few steps, grids, checkpoints, reload."""

import math
import subprocess
import sys

import pytest
import torch

from slimgan_pl import SlimGAN
from slimgan_pl.train import ConfigError, build, train


def test_train_writes_grids_and_checkpoint_and_reloads(make_cfg, tmp_path, fmnist_root):
    out = tmp_path / "run"
    cfg = make_cfg("train.g_steps=4", "train.checkpoint_every=2", "callbacks.sample_grid.every_n_iterations=2",
                   "data.batch_size=16", f"data.root={fmnist_root}", "trainer.log_every_n_steps=1")
    summary = train(cfg)
    assert summary["iterations"] == 4
    for w, losses in summary["final_losses"].items():
        assert math.isfinite(losses["d"]) and math.isfinite(losses["g"]), (w, losses)
    for tag in ("w0.25", "w0.5", "w0.75", "w1.0"):
        assert (out / "samples" / tag / "iter_000002.png").is_file()
        assert (out / "samples" / tag / "iter_000004.png").is_file()
    assert (out / "checkpoints" / "iter_000002.ckpt").is_file()
    assert (out / "checkpoints" / "last.ckpt").is_file()
    metrics = (out / "csv" / "metrics.csv").read_text().splitlines()[0]
    assert "train/d_loss_w0.25" in metrics and "train/distill_loss" in metrics

    model = SlimGAN.load_from_checkpoint(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert model.widths == [0.25, 0.5, 0.75, 1.0]
    bn_stats = [bn.running_mean for bn in model.generator.bns[-1].bns]
    assert not torch.equal(bn_stats[0], bn_stats[1][: bn_stats[0].numel()])  # per-width statistics
    for w in model.widths:
        x = model.sample(6, width=w, seed=0)
        assert x.shape == (6, 1, 32, 32) and torch.isfinite(x).all()
        assert x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(model.sample(3, 0.5, seed=1), model.sample(3, 0.5, seed=1))


@pytest.mark.parametrize("override, key", [
    ("slim.widths=[0.5,0.25]", "slim.widths"),
    ("slim.widths=[0.25,1.5]", "slim.widths"),
    ("slim.n_share=7", "slim.n_share"),
    ("slim.alpha=-2", "slim.alpha"),
    ("optim.n_dis=0", "optim.n_dis"),
    ("model.generator.arch=unet", "model.generator.arch"),
    ("data.root=/nonexistent", "data.root"),
])
def test_invalid_config_fails_before_training(make_cfg, override, key):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(cfg)


def test_cli_config_error_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "slimgan_pl.train", "slim.widths=[1.0,0.5]",
                           f"hydra.run.dir={tmp_path}"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("slimgan-train: config error: slim.widths must be strictly increasing")
    assert not (tmp_path / "checkpoints").exists()


@pytest.mark.parametrize("experiment", ["fmnist_demo", "fmnist_resnet", "cifar10_sndcgan", "cifar10_snresgan"])
def test_experiments_compose_and_build_models(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "model.generator.ngf=16", "model.discriminator.ndf=16")
    model = SlimGAN(generator=cfg.model.generator, discriminator=cfg.model.discriminator, **cfg.slim, **cfg.optim)
    assert model.widths == [0.25, 0.5, 0.75, 1.0]
    assert cfg.trainer.max_steps == cfg.train.g_steps * (cfg.optim.n_dis + 1)


def test_cifar_without_data_says_what_to_do(make_cfg, tmp_path):
    cfg = make_cfg("experiment=cifar10_sndcgan", f"data.root={tmp_path}")
    with pytest.raises(ConfigError, match=r"data\.download=true.*data\.root"):
        build(cfg)


def test_training_ends_with_per_width_evaluation(make_cfg, tmp_path, fmnist_root, monkeypatch):
    from slimgan_pl.metrics import fmnist_classifier as fc

    monkeypatch.setenv("SLIMGAN_METRICS_CACHE", str(tmp_path / "cache"))
    model, acc, info = fc.train_classifier(root=fmnist_root, epochs=1, limit=500, test_limit=200, log=None)
    clf = fc.save_classifier(model, tmp_path / "clf.pt", acc, info)
    out = tmp_path / "run"
    cfg = make_cfg("train.g_steps=2", "data.batch_size=8", "evaluate.after_training=true", "evaluate.n_fake=40",
                   "evaluate.n_real=40", "evaluate.latency_repeats=2", f"evaluate.classifier={clf}")
    summary = train(cfg)
    assert set(summary["fmnist_fid"]) == {"w0.25", "w0.5", "w0.75", "w1.0"}
    assert all(math.isfinite(v) and v > 0 for v in summary["fmnist_fid"].values())
    assert (out / "metrics.json").is_file() and "FMNIST-FID" in (out / "metrics.md").read_text()
