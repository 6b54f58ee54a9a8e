"""Universally slimmable SlimGAN (slim.mode=universal, issue 17): layers, nesting, granularity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import TensorDataset

from slimgan_pl import SlimGAN
from slimgan_pl.checkpoint import load_slimgan
from slimgan_pl.data.resumable import resumable_loader
from slimgan_pl.metrics import evaluation
from slimgan_pl.models import build_generator
from slimgan_pl.nn.universal import UniversalBatchNorm2d
from slimgan_pl.resume import FinalIterationCheckpoint
from slimgan_pl.universal import (
    calibrate,
    channel_signature,
    distinct_widths,
    make_universal,
    nearest_anchor,
    score_routed,
)
from slimgan_pl.universal import main as universal_main

from helpers.tiny import fit_and_save, perturb_beyond

ANCHORS = [0.25, 0.5, 0.75, 1.0]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (tests/conftest.py)


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
    perturb_beyond(g, width)
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


# ----------------------------------------------------------------------------- training
def universal_model(**kw) -> SlimGAN:
    args = dict(
        generator=dict(arch="sndcgan32", ngf=16, img_channels=1),
        discriminator=dict(arch="sndcgan32", ndf=16),
        widths=ANCHORS,
        n_share=2,
        alpha=20.0,
        n_dis=1,
        mode="universal",
        range=[0.25, 1.0],
        n_random=2,
        calibration_batches=2,
        calibration_batch_size=8,
    )
    args.update(kw)
    return SlimGAN(**args)


class WidthLog(pl.Callback):
    def __init__(self) -> None:
        self.widths: list[list[float]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.widths.append(list(pl_module._last_widths))


def fit_universal(iterations: int, folder: Path, ckpt_path: Path | None = None, **kw) -> tuple[SlimGAN, WidthLog]:
    pl.seed_everything(0, verbose=False)
    data = TensorDataset(torch.rand(8 * 16, 1, 32, 32) * 2 - 1, torch.zeros(8 * 16, dtype=torch.long))
    loader = resumable_loader(data, batch_size=8, seed=0)
    log = WidthLog()
    checkpoint = FinalIterationCheckpoint(dirpath=folder, save_last=True, every_n_train_steps=4)  # every 2 iters
    trainer = pl.Trainer(
        max_steps=iterations * 2,
        accelerator="cpu",
        logger=False,
        enable_model_summary=False,
        enable_progress_bar=False,
        callbacks=[log, checkpoint],
    )
    model = universal_model(**kw)
    trainer.fit(model, loader, ckpt_path=ckpt_path)
    return model, log


def test_universal_training_samples_the_sandwich_and_resumes_exactly(tmp_path):
    """Each iteration trains w_min, 1.0 and n_random widths in between; a run resumed from the
    checkpoint of iteration 2 draws the same widths and ends with the same weights as an
    uninterrupted run (width RNG state saved in the checkpoint)."""
    full, log_full = fit_universal(4, tmp_path / "a")
    assert len(log_full.widths) == 4
    for widths in log_full.widths:
        assert len(widths) == 4 and widths[0] == 0.25 and widths[-1] == 1.0 and widths == sorted(widths)
    randoms = {w for ws in log_full.widths for w in ws[1:-1]}
    assert len(randoms) == 8 and all(0.25 < w < 1.0 for w in randoms)  # fresh widths every iteration
    ckpt = torch.load(tmp_path / "a" / "last.ckpt", map_location="cpu", weights_only=True)
    assert len(ckpt["width_rng_states"]) == 1 and ckpt["hyper_parameters"]["mode"] == "universal"

    fit_universal(2, tmp_path / "b")
    resumed, log_resumed = fit_universal(4, tmp_path / "b", ckpt_path=tmp_path / "b" / "last.ckpt")
    assert log_resumed.widths == log_full.widths[2:]
    for key, value in full.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], value, rtol=0, atol=0, msg=key)


def test_routed_scores_equal_each_anchor_heads_own_scores():
    """score_routed (one trunk pass, one pass per used head) = D(x, anchor) per fake, by hand."""
    torch.manual_seed(0)
    model = universal_model()
    d = model.discriminator.eval()
    real = torch.randn(3, 1, 32, 32)
    fakes = [torch.randn(3, 1, 32, 32) for _ in range(3)]
    widths = [0.25, 0.3, 1.0]
    heads = [nearest_anchor(ANCHORS, w) for w in widths]
    fake_scores, real_scores = score_routed(d, fakes, heads, real)
    assert heads == [0, 0, 3]
    for h, f, fs, rs in zip(heads, fakes, fake_scores, real_scores):
        torch.testing.assert_close(fs, d(f, ANCHORS[h]), rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(rs, d(real, ANCHORS[h]), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        (dict(mode="elastic"), r"slim.mode must be one of \['fixed', 'universal'\]"),
        (dict(range=[0.3, 0.9]), r"slim.range must be \[w_min, 1.0\]"),
        (dict(range=[0.3, 1.0]), "must lie in slim.range"),
        (dict(n_random=-1), "slim.n_random must be an integer >= 0"),
        (dict(sync_bn=True), "does not support model.sync_bn"),
        (dict(calibration_batch_size=1), "slim.calibration_batch_size must be an integer >= 2"),
    ],
)
def test_universal_settings_are_checked(kw, match):
    with pytest.raises(ValueError, match=match):
        universal_model(**kw)


def test_model_sample_any_width_calibrates_once_and_keeps_fixed_models_strict():
    torch.manual_seed(0)
    model = universal_model().eval()
    a = model.sample(4, 0.4, seed=1)
    assert model.generator.bns[0].statistics.keys() == {"0.4"}
    torch.testing.assert_close(model.sample(4, 0.4, seed=1), a, rtol=0, atol=0)
    assert model.sample(2, 0.93, seed=1).shape == (2, 1, 32, 32)
    fixed = universal_model(mode="fixed")
    with pytest.raises(ValueError, match="not a trained width"):
        fixed.sample(2, 0.4)


# ----------------------------------------------------------------------------- checkpoints and CLIs
def save_universal(path: Path, **kw) -> Path:
    pl.seed_everything(0, verbose=False)
    return fit_and_save(universal_model(**kw), path, iterations=2)


@pytest.fixture(scope="module")
def universal_ckpt(tmp_path_factory) -> Path:
    """A 2-iteration universal checkpoint with an EMA generator, in <run>/checkpoints/last.ckpt."""
    return save_universal(tmp_path_factory.mktemp("uni") / "run" / "checkpoints" / "last.ckpt", ema_decay=0.5)


def test_calibrated_statistics_are_saved_with_the_checkpoint(universal_ckpt, tmp_path, capsys):
    out = tmp_path / "calibrated.ckpt"
    universal_main([str(universal_ckpt), "--widths", "0.3", "0.31", "0.4", "--out", str(out)])
    assert "width 0.31 gives the same channel counts as width 0.3" in capsys.readouterr().out
    payload = torch.load(out, map_location="cpu", weights_only=True)
    saved = payload["universal_bn_statistics"]["generator_ema"]
    assert set(saved["bns.0"]) == {"0.3", "0.31", "0.4"}
    loaded = load_slimgan(out)
    assert set(loaded.generator_ema.bns[0].statistics) == {"0.3", "0.31", "0.4"}
    fresh = load_slimgan(universal_ckpt)  # no statistics saved: calibrated on demand, the same numbers
    assert fresh.generator_ema.bns[0].statistics == {}
    fresh.sample(2, 0.4, seed=0)
    for a, b in zip(fresh.generator_ema.bns[1].statistics["0.4"], loaded.generator_ema.bns[1].statistics["0.4"]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert payload["global_step"] == torch.load(universal_ckpt, weights_only=True)["global_step"]


def test_sample_export_eval_and_model_sample_agree_at_an_untrained_width(
    universal_ckpt, tmp_path, monkeypatch, fmnist_root, capsys
):
    """Width 0.4 (no anchor, never sampled exactly): slimgan-export (calibrated statistics baked in),
    slimgan-sample, slimgan-eval and SlimGAN.sample give the same images for the same seed."""
    from slimgan_pl import evaluate as ev
    from slimgan_pl.deploy import export as ex
    from slimgan_pl.deploy import sample as sm
    from slimgan_pl.metrics import fmnist_classifier as fc

    n, width, seed = 10, 0.4, 0
    z = torch.randn(n, 128, generator=torch.Generator().manual_seed(seed))
    ex.main([str(universal_ckpt), "--width", "0.4", "--out", str(tmp_path / "export"), "--formats", "state_dict"])
    capsys.readouterr()
    exported = ex.load_dense(tmp_path / "export" / "sndcgan32_w0.4.pt")
    assert exported.meta["bn_statistics"] == "calibrated" and exported.meta["universal"] == {"range": [0.25, 1.0]}
    assert exported.meta["calibration"] == {"batches_per_width": 2, "batch_size": 8, "seed": 0}
    with torch.no_grad():
        from_export = exported(z)
    from_sample, _, _, statistics = sm.sample_images(universal_ckpt, n=n, width=width, seed=seed)
    assert statistics["bn_statistics"] == "calibrated"
    sm.main([str(universal_ckpt), "--width", "0.4", "-n", "2", "--npz", str(tmp_path / "s.npz")])
    assert "2 images at width 0.4" in capsys.readouterr().out
    from_model = load_slimgan(universal_ckpt).sample(n, width, seed=seed)

    sampled = {}
    original_sample = evaluation.sample  # what slimgan-eval samples with

    def recording_sample(generator, count, w, *args, **kwargs):
        out = original_sample(generator, count, w, *args, **kwargs)
        sampled.setdefault(float(w), out.clone())
        return out

    monkeypatch.setattr(evaluation, "sample", recording_sample)
    clf, acc, info = fc.train_classifier(root=fmnist_root, epochs=1, limit=300, test_limit=100, log=None)
    result = ev.evaluate_checkpoint(
        universal_ckpt,
        widths=[0.3, 0.4],
        n_fake=n,
        n_real=20,
        seed=seed,
        data_root=fmnist_root,
        classifier_path=fc.save_classifier(clf, tmp_path / "clf.pt", acc, info),
        cache_dir=tmp_path / "cache",
        kid_subsets=2,
        kid_subset_size=3,
        latency_batches=(1,),
        latency_repeats=1,
        latency_warmup=0,
        sanity=False,
        write=False,
        log=None,
    )
    monkeypatch.setattr(evaluation, "sample", original_sample)
    assert [row["width"] for row in result["widths"]] == [0.3, 0.4]
    assert result["generator"]["bn_statistics"] == "calibrated"
    for name, images in (("sample", from_sample), ("model", from_model), ("eval", sampled[width])):
        assert (images - from_export).abs().max() <= 1e-5, name
    # the test can tell: another width gives other images
    assert (sampled[0.3] - from_export).abs().max() > 1e-3


def test_fixed_width_models_still_refuse_untrained_widths(tmp_path, capsys):
    from slimgan_pl.deploy import export as ex
    from slimgan_pl.deploy import pick as pk
    from slimgan_pl.deploy import sample as sm

    ckpt = save_universal(tmp_path / "run" / "checkpoints" / "last.ckpt", mode="fixed")
    for main, extra in (
        (ex.main, ["--width", "0.4", "--out", str(tmp_path / "export")]),
        (sm.main, ["--width", "0.4", "--npz", str(tmp_path / "s.npz")]),
        (pk.main, ["--budget-ms", "1e6", "--widths", "0.4"]),
        (universal_main, ["--widths", "0.4"]),
    ):
        with pytest.raises(SystemExit) as info:
            main([str(ckpt), *extra])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and len(err.splitlines()) == 1, err
        assert "not a trained width" in err or "not a universal model" in err, err


def test_pick_chooses_among_any_widths_at_channel_granularity(universal_ckpt, tmp_path, capsys):
    from slimgan_pl.deploy import pick as pk
    from slimgan_pl.metrics.cost import generator_macs

    model = load_slimgan(universal_ckpt)
    widths, notes = pk.candidate_widths(model, [0.3, 0.31, 0.4, 0.6, 1.0])
    assert widths == [0.3, 0.4, 0.6, 1.0] and "width 0.31" in notes[0]
    grid, _ = pk.candidate_widths(model)  # default: every 0.05 of the range, one per channel configuration
    assert (
        grid[0] == 0.25 and grid[-1] == 1.0 and len(grid) == len({channel_signature(model.generator, w) for w in grid})
    )
    calibrate(model.generator, [0.6, 0.65], n_batches=1, batch_size=2)  # MACs are counted in eval mode
    budget = (generator_macs(model.generator, 0.6, 128) + generator_macs(model.generator, 0.65, 128)) / 2
    pk.main([str(universal_ckpt), "--budget-macs", str(budget), "--repeats", "1", "--warmup", "0"])
    out = capsys.readouterr().out
    assert "pick: width 0.6 " in out and "rule: widest width within the budget" in out  # 0.6: not a trained width
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps({"widths": [{"width": 0.3, "fmnist_fid": 20.0}, {"width": 0.41, "fmnist_fid": 15.0}]})
    )
    pk.main([str(universal_ckpt), "--budget-macs", str(budget), "--repeats", "1", "--warmup", "0",
             "--widths", "0.3", "0.4", "0.6", "--metrics", str(metrics)])  # fmt: skip
    out = capsys.readouterr().out
    # 0.41 was measured and gives 0.4's channels (16 * 0.41 = 6.56 -> 6): the same network, FID 15
    assert channel_signature(model.generator, 0.4) == channel_signature(model.generator, 0.41)
    assert "pick: width 0.4 " in out and "FMNIST-FID 15.00" in out and "rule: lowest measured" in out


def test_train_from_config_in_universal_mode(make_cfg, tmp_path, fmnist_root):
    from slimgan_pl.train import train

    out = tmp_path / "run"
    cfg = make_cfg(
        "slim.mode=universal",
        "slim.range=[0.25,1.0]",
        "slim.n_random=1",
        "slim.calibration_batches=1",
        "slim.calibration_batch_size=8",
        "train.g_steps=2",
        "train.checkpoint_every=2",
        "callbacks.sample_grid.every_n_iterations=2",
        "data.batch_size=8",
        f"data.root={fmnist_root}",
        output_dir=out,
    )
    summary = train(cfg)
    assert summary["iterations"] == 2
    assert all(v["d"] is not None for k, v in summary["final_losses"].items() if k in ("w0.25", "w1.0"))
    assert (out / "samples" / "w0.5" / "iter_000002.png").is_file()  # grids at the anchors, calibrated
    model = load_slimgan(out / "checkpoints" / "last.ckpt")
    assert model.hparams.mode == "universal" and model.sample(3, 0.43, seed=0).shape == (3, 1, 32, 32)


@pytest.mark.parametrize(
    ("arch", "kw"), [("sndcgan32", {}), ("snresgan32", dict(num_classes=10, cond_norm="scbn")), ("biggan32", {})]
)
def test_export_and_active_parameters_of_any_width(arch, kw):
    """A universal width exports (plain, scBN and BigGAN's projected BN; checked against the slimmable
    model inside dense_generator), and its active-parameter count = the dense model's parameters."""
    from slimgan_pl.deploy.export import dense_generator
    from slimgan_pl.metrics.cost import active_parameters

    g = universal_generator(arch, **kw)
    for w in (0.4, 0.85):
        calibrate(g, [w], n_batches=1, batch_size=4)
        dense = dense_generator(g, w)  # checked against the slimmable model (eval mode) inside
        assert active_parameters(g, w) == sum(p.numel() for p in dense.parameters())
    assert active_parameters(g, 0.4) < active_parameters(g, 0.85) < sum(p.numel() for p in g.parameters())


class RecordWidths(pl.Callback):
    """Each rank saves the widths it trained and its final parameters."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir, self.widths = out_dir, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.widths.append(list(pl_module._last_widths))

    def on_train_end(self, trainer, pl_module) -> None:
        params = {k: v.detach().clone() for k, v in pl_module.named_parameters()}
        torch.save({"widths": self.widths, "params": params}, self.out_dir / f"rank{trainer.global_rank}.pt")


@pytest.mark.skipif("fork" not in torch.multiprocessing.get_all_start_methods(), reason="needs fork")
def test_ddp_cpu_ranks_draw_the_same_widths_and_stay_identical(make_cfg, tmp_path, fmnist_root, one_thread):
    """Under trainer=ddp_cpu every rank draws the same widths (the gradient averaging needs the same D
    heads used everywhere), the ranks' weights stay identical, and the checkpoint holds one width-RNG
    state per rank (gathered)."""
    from slimgan_pl.train import build

    cfg = make_cfg(
        "trainer=ddp_cpu",
        "trainer.strategy.start_method=fork",
        "slim.mode=universal",
        "slim.calibration_batches=1",
        "slim.calibration_batch_size=4",
        "train.g_steps=3",
        "train.checkpoint_every=3",
        "data.batch_size=4",
        "data.limit=96",
        f"data.root={fmnist_root}",
        "callbacks.fid=null",
        "callbacks.sample_grid=null",
        "callbacks.progress_bar=null",
        "logger=none",
        output_dir=tmp_path / "run",
    )
    pl.seed_everything(cfg.seed)
    model, datamodule, trainer = build(cfg)
    assert trainer.world_size == 2
    trainer.callbacks.append(RecordWidths(tmp_path))
    trainer.fit(model, datamodule=datamodule)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    assert len(ranks[0]["widths"]) == 3 and ranks[0]["widths"] == ranks[1]["widths"]
    for name, value in ranks[0]["params"].items():
        assert torch.equal(value, ranks[1]["params"][name]), name
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    states = ckpt["width_rng_states"]
    assert len(states) == 2 and torch.equal(states[0], states[1])
