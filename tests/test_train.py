"""End to end through the Hydra config on real Fashion-MNIST: a few steps, grids, checkpoints, reload."""

import csv
import math
import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from slimgan_pl import SlimGAN
from slimgan_pl.callbacks import PerWidthFIDCallback, rank_shard
from slimgan_pl.data.fashion_mnist import FashionMNISTDataModule
from slimgan_pl.evaluate import extract, real_features
from slimgan_pl.metrics import fmnist_classifier as fc
from slimgan_pl.metrics.scores import frechet_distance
from slimgan_pl.module import width_tag
from slimgan_pl.train import ConfigError, build, train

WIDTH_TAGS = ("w0.25", "w0.5", "w0.75", "w1.0")


def fmnist_fid(
    model: SlimGAN,
    width: float,
    classifier: Path,
    root: str,
    n_real: int,
    seeds_and_counts: list[tuple[int, int]],
    real_part: slice = slice(None),
) -> float:
    """Single-process FMNIST-FID (slimgan-eval's path) of the union of ``model.sample(count, seed=seed)``
    against ``real_part`` of the ``n_real`` real test features."""
    loaded = fc.read_classifier(classifier)
    extractor = fc.FMNISTFeatureExtractor(loaded.model, sha256=loaded.sha256)
    real = real_features(extractor, "test", n_real, root, log=None)
    fakes = torch.cat([model.sample(n, width, seed=seed) for seed, n in seeds_and_counts])
    return frechet_distance(real.features[real_part], extract(extractor, fakes).features)


def test_train_writes_grids_and_checkpoint_and_reloads(make_cfg, tmp_path, fmnist_root):
    out = tmp_path / "run"
    cfg = make_cfg(
        "train.g_steps=4",
        "train.checkpoint_every=2",
        "callbacks.sample_grid.every_n_iterations=2",
        "data.batch_size=16",
        f"data.root={fmnist_root}",
        "trainer.log_every_n_steps=1",
    )
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


@pytest.mark.parametrize(
    "override, key",
    [
        ("slim.widths=[0.5,0.25]", "slim.widths"),
        ("slim.widths=[0.25,1.5]", "slim.widths"),
        ("slim.n_share=8", "slim.n_share"),
        ("slim.alpha=-2", "slim.alpha"),
        ("optim.n_dis=0", "optim.n_dis"),
        ("model.generator.arch=unet", "model.generator.arch"),
        ("data.root=/nonexistent", "data.root"),
    ],
)
def test_invalid_config_fails_before_training(make_cfg, override, key):
    cfg = make_cfg(override)
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        build(cfg)


def test_cli_config_error_is_one_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "slimgan_pl.train", "slim.widths=[1.0,0.5]", f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(
        "slimgan-train: config error: slim.widths must be strictly increasing"
    )
    assert not (tmp_path / "checkpoints").exists()


EXPERIMENTS = sorted(p.stem for p in (Path(__file__).parents[1] / "conf" / "experiment").glob("*.yaml"))


def test_experiment_list_is_complete():
    assert {
        "fmnist_demo",
        "cifar10_snresgan",
        "stl10_snresgan",
        "stl10_sndcgan",
        "celeba_snresgan",
        "celeba_sndcgan",
    } <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiments_compose_and_build_models(make_cfg, experiment):
    """Every experiment YAML composes and builds its model (tiny channels); the generator's image size
    is the data's, and the model makes images the D accepts."""
    cfg = make_cfg(f"experiment={experiment}", "model.generator.ngf=16", "model.discriminator.ndf=16")
    model = SlimGAN(generator=cfg.model.generator, discriminator=cfg.model.discriminator, **cfg.slim, **cfg.optim)
    assert model.widths == [0.25, 0.5, 0.75, 1.0]
    assert cfg.trainer.max_steps == cfg.train.g_steps * (cfg.optim.n_dis + 1)
    assert model.generator.img_size == cfg.data.image_size
    x = model.sample(2, width=0.25, seed=0)
    assert x.shape == (2, cfg.data.img_channels, cfg.data.image_size, cfg.data.image_size)
    y = None if not model.num_classes else torch.zeros(2, dtype=torch.long)
    assert model.discriminator(x, 0.25, y).shape == (2,)


@pytest.mark.parametrize(
    "experiment, arch, size, n_share",
    [
        ("stl10_snresgan", "snresgan48", 48, 2),
        ("stl10_sndcgan", "sndcgan48", 48, 2),
        ("celeba_snresgan", "snresgan64", 64, 2),
        ("celeba_sndcgan", "sndcgan64", 64, 2),
    ],
)
def test_48_and_64px_recipes(make_cfg, experiment, arch, size, n_share):
    cfg = make_cfg(f"experiment={experiment}")
    assert (cfg.model.generator.arch, cfg.data.image_size, cfg.slim.n_share, cfg.slim.alpha) == (
        arch,
        size,
        n_share,
        20.0,
    )
    assert cfg.data.num_classes == 0 and cfg.callbacks.fid is None and cfg.slim.stepwise
    assert cfg.optim.n_dis == (5 if "snresgan" in arch else 1) and cfg.data.batch_size == 64


def test_data_size_must_fit_the_model(make_cfg, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"data\.image_size=48 but model\.generator\.arch=snresgan32 generates "
        r"32x32 images",
    ):
        build(make_cfg("data=stl10", "model=snresgan32", f"data.root={tmp_path}"))
    with pytest.raises(ConfigError, match=r"data\.img_channels=1 but model\.generator\.img_channels=3"):
        build(make_cfg("model.generator.img_channels=3"))
    with pytest.raises(ConfigError, match=r"^data\.root is required: set data\.root=\.\.\.$"):  # image_folder
        build(make_cfg("data=image_folder"))


def test_cifar_without_data_says_what_to_do(make_cfg, tmp_path):
    cfg = make_cfg("experiment=cifar10_sndcgan", f"data.root={tmp_path}")
    with pytest.raises(ConfigError, match=r"data\.download=true.*data\.root"):
        build(cfg)


def test_training_ends_with_per_width_evaluation(make_cfg, tmp_path, monkeypatch, tiny_classifier):
    monkeypatch.setenv("SLIMGAN_METRICS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    cfg = make_cfg(
        "train.g_steps=2",
        "data.batch_size=8",
        "evaluate.after_training=true",
        "evaluate.n_fake=40",
        "evaluate.n_real=40",
        "evaluate.latency_repeats=2",
        f"evaluate.classifier={tiny_classifier}",
    )
    summary = train(cfg)
    assert set(summary["fmnist_fid"]) == {"w0.25", "w0.5", "w0.75", "w1.0"}
    assert all(math.isfinite(v) and v > 0 for v in summary["fmnist_fid"].values())
    metrics = Path(summary["metrics"])  # 40 fakes: named by its counts, never the run's full metrics.json
    assert metrics.parent == out and metrics.name == "metrics-fmnist-fake40-real40-is40.json"
    assert "FMNIST-FID" in metrics.with_suffix(".md").read_text()


# ----------------------------------------------------------------------------- FMNIST-FID during training
def test_training_logs_per_width_fid_to_the_csv_logger(make_cfg, tmp_path, fmnist_root, tiny_classifier, monkeypatch):
    monkeypatch.setenv("SLIMGAN_METRICS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "run"
    cfg = make_cfg(
        "train.g_steps=4",
        "data.batch_size=8",
        "data.limit=64",
        "trainer.log_every_n_steps=1",
        "callbacks.sample_grid=null",
        "callbacks.fid.every_n_iterations=2",
        "callbacks.fid.n_fake=40",
        "callbacks.fid.n_real=50",
        f"callbacks.fid.classifier={tiny_classifier}",
    )
    train(cfg)
    with open(out / "csv" / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    fid_rows = [r for r in rows if r.get("val/fmnist_fid_w1.0")]
    assert [float(r["iteration"]) for r in fid_rows] == [2.0, 4.0]  # once per evaluation, nothing in between
    logged = {tag: [float(r[f"val/fmnist_fid_{tag}"]) for r in fid_rows] for tag in WIDTH_TAGS}
    for tag, values in logged.items():
        assert all(math.isfinite(v) and v > 0 for v in values), (tag, values)
    assert len(list((tmp_path / "cache").glob("fashion_mnist-test-32px-n50-*.pt"))) == 1  # slimgan-eval's cache

    # The value logged at the last iteration is slimgan-eval's FMNIST-FID of the final generator.
    model = SlimGAN.load_from_checkpoint(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    for w in model.widths:
        expected = fmnist_fid(model, w, tiny_classifier, fmnist_root, 50, [(0, 40)])
        assert logged[width_tag(w)][-1] == pytest.approx(expected, rel=1e-4)


def test_fid_callback_can_be_disabled_and_refuses_other_data(make_cfg, tmp_path):
    _, _, trainer = build(make_cfg("callbacks.fid=null"))
    assert not any(isinstance(c, PerWidthFIDCallback) for c in trainer.callbacks)
    assert make_cfg("experiment=cifar10_sndcgan").callbacks.fid is None
    with pytest.raises(ConfigError, match=r"callbacks\.fid\.every_n_iterations must be >= 1"):
        build(make_cfg("callbacks.fid.every_n_iterations=0"))

    def tiny(channels: int) -> SlimGAN:
        return SlimGAN(
            generator=dict(arch="sndcgan32", ngf=16, img_channels=channels),
            discriminator=dict(arch="sndcgan32", ndf=16),
        )

    trainer = pl.Trainer(accelerator="cpu", logger=False)
    with pytest.raises(ValueError, match=r"callbacks\.fid needs the training data module .*callbacks\.fid=null"):
        PerWidthFIDCallback().check_config(tiny(3), None, trainer)
    gray = tiny(1)
    with pytest.raises(ValueError, match=r"callbacks\.fid: data module .*LightningDataModule.* no evaluation support"):
        PerWidthFIDCallback().check_config(gray, pl.LightningDataModule(), trainer)
    with pytest.raises(ValueError, match=r"callbacks\.fid needs n_fake >= 2"):
        PerWidthFIDCallback(n_fake=1)


@pytest.mark.parametrize("n, world", [(41, 2), (37, 2), (10, 3), (3, 3)])
def test_rank_shards_cover_every_sample_once(n, world):
    shards = [rank_shard(n, r, world) for r in range(world)]
    assert [i for s in shards for i in range(n)[s]] == list(range(n))
    assert max(s.stop - s.start for s in shards) - min(s.stop - s.start for s in shards) <= 1


class SeedPerRank(pl.Callback):
    """Ranks draw different training noise, so their G's BN running statistics differ at evaluation."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: SlimGAN) -> None:
        torch.manual_seed(100 + trainer.global_rank)


@pytest.mark.slow
@pytest.mark.skipif("fork" not in mp.get_all_start_methods(), reason="needs fork (ddp_fork)")
def test_fid_callback_under_ddp_equals_single_process_fid_of_the_union(
    tmp_path, fmnist_root, tiny_classifier, monkeypatch, one_thread
):
    """Two CPU processes (gloo): each samples its share of the fakes and feeds its shard of the real
    features; the synchronised FID must equal the single-process FID of all samples.

    ddp_fork, not ddp_spawn: spawn pickles the model, which parametrized (spectral-norm) modules
    refuse. SlimGAN's D steps leave G's parameters unused, hence find_unused_parameters."""
    monkeypatch.setenv("SLIMGAN_METRICS_CACHE", str(tmp_path / "cache"))  # inherited by the forked ranks
    torch.manual_seed(0)
    model = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=16, img_channels=1), discriminator=dict(arch="sndcgan32", ndf=16), n_dis=1
    )
    n_fake, n_real, seed = 41, 37, 5  # odd: the ranks get 21 + 20 fakes and 19 + 18 real images
    callback = PerWidthFIDCallback(
        every_n_iterations=2, n_fake=n_fake, n_real=n_real, classifier=str(tiny_classifier), seed=seed
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp_fork_find_unused_parameters_true",
        max_steps=2 * 2,
        callbacks=[SeedPerRank(), callback],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=FashionMNISTDataModule(fmnist_root, batch_size=8, n_dis=1, limit=64))

    # The launcher hands rank 0's final weights and logged values back to this process.
    counts = [(seed + r, len(range(n_fake)[rank_shard(n_fake, r, 2)])) for r in range(2)]
    for w in model.widths:
        synced = float(trainer.callback_metrics[f"val/fmnist_fid_{width_tag(w)}"])
        union = fmnist_fid(model, w, tiny_classifier, fmnist_root, n_real, counts)
        assert synced == pytest.approx(union, rel=1e-6)  # float32 log of a float64 result
        # What rank 0 would report without synchronisation: clearly another number.
        unsynced = fmnist_fid(model, w, tiny_classifier, fmnist_root, n_real, counts[:1], rank_shard(n_real, 0, 2))
        assert abs(unsynced - union) > 1e-4 * union
