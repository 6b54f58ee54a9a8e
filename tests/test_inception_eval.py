"""Inception FID / IS / KID / mIC for RGB datasets, without the real weights: a random-valued weights
file in torch-fidelity's exact format, a tiny generated image folder and a smoke-trained checkpoint.
Numbers computed here are not FID (random network); they prove the pipeline and its equality with
torch-fidelity, so that the real weights file is the only thing missing for real numbers.

Inception at 299px is slow on a CPU (0.3-4 s per image on this shared 2-core machine): every test
uses a handful of images, and the real-feature cache is shared between the callback and slimgan-eval."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torch.utils.data import Dataset

from slimgan_pl import SlimGAN
from slimgan_pl.callbacks import DataConfigInCheckpoint, PerWidthFIDCallback
from slimgan_pl.data import FashionMNISTDataModule, ImageFolderDataModule
from slimgan_pl.evaluate import main as eval_main
from slimgan_pl.metrics import fmnist_classifier as fc
from slimgan_pl.metrics import inception
from slimgan_pl.metrics.backbones import load_backbone
from slimgan_pl.metrics.reference import read_stats, real_features
from slimgan_pl.metrics.scores import frechet_distance, inception_score, kernel_distance

WIDTHS = [0.5, 1.0]


@pytest.fixture(scope="module", autouse=True)
def two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


def write_random_inception_weights(path: Path) -> Path:
    """torch-fidelity's FeatureExtractorInceptionV3 randomly initialised, saved as a plain state dict
    (the format of weights-inception-2015-12-05-6726825d.pth). Its constructor insists on loading
    weights, so loading is stubbed out while it is built."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        mp.undo()
        # Calibrate the BN statistics on one batch (like BigGAN's standing statistics): with their
        # initial values (mean 0, var 1) the random network's activations vanish to denormal floats,
        # which are both degenerate (all FIDs ~0) and 100x slower on a CPU.
        bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for bn in bns:
            bn.reset_running_stats()
            bn.momentum = None
        net.train()
        with torch.no_grad():
            net(torch.randint(0, 256, (6, 3, 64, 64), dtype=torch.uint8))
        net.eval()
    torch.save(net.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def weights(tmp_path_factory) -> Path:
    return write_random_inception_weights(tmp_path_factory.mktemp("inception") / "random-inception.pth")


def smooth_images(n: int, seed: int, tint: tuple[float, float, float]) -> torch.Tensor:
    """uint8 (n, 3, 32, 32): blurred colour noise with a tint (two tints = two distributions)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 8, 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=32, mode="bilinear", align_corners=False)
    x = (0.6 * x + 0.4 * torch.tensor(tint).view(1, 3, 1, 1)).clamp(0, 1)
    return (x * 255).round().to(torch.uint8)


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rgb")
    for i, img in enumerate(smooth_images(16, 0, (0.8, 0.3, 0.2))):
        Image.fromarray(img.permute(1, 2, 0).numpy()).save(root / f"{i:03d}.png")
    return root


N_REAL, N_FAKE = 4, 4


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The real-feature cache of this module (the callback's and slimgan-eval's), never the user's."""
    path = tmp_path_factory.mktemp("cache")
    before = os.environ.get("SLIMGAN_METRICS_CACHE")
    os.environ["SLIMGAN_METRICS_CACHE"] = str(path)
    yield path
    if before is None:
        del os.environ["SLIMGAN_METRICS_CACHE"]
    else:
        os.environ["SLIMGAN_METRICS_CACHE"] = before


@pytest.fixture(scope="module")
def trained(tmp_path_factory, image_folder, weights, cache):
    """Two SlimGAN iterations on the folder with the FID callback (Inception, at iteration 2) and the
    data config written into the checkpoint; (checkpoint, callback metrics, model, callback)."""
    torch.manual_seed(0)
    model = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=8, img_channels=3),
        discriminator=dict(arch="sndcgan32", ndf=8),
        widths=WIDTHS,
        n_share=1,
        n_dis=1,
    )
    callback = PerWidthFIDCallback(
        every_n_iterations=2, n_fake=N_FAKE, n_real=N_REAL, inception_weights=str(weights), batch_size=8
    )
    datamodule = ImageFolderDataModule(str(image_folder), image_size=32, batch_size=4, n_dis=1)
    trainer = pl.Trainer(
        max_steps=4,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback, DataConfigInCheckpoint()],
    )
    trainer.fit(model, datamodule=datamodule)
    ckpt = tmp_path_factory.mktemp("run") / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    trainer.save_checkpoint(ckpt)
    return ckpt, {k: float(v) for k, v in trainer.callback_metrics.items()}, model, callback


@pytest.fixture(scope="module")
def plain_checkpoint(tmp_path_factory, image_folder) -> Path:
    """One iteration, no FID callback (seconds): a checkpoint with its data config, for the error paths."""
    torch.manual_seed(0)
    model = SlimGAN(
        generator=dict(arch="sndcgan32", ngf=8, img_channels=3),
        discriminator=dict(arch="sndcgan32", ndf=8),
        widths=WIDTHS,
        n_share=1,
        n_dis=1,
    )
    trainer = pl.Trainer(
        max_steps=2,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[DataConfigInCheckpoint()],
    )
    trainer.fit(model, datamodule=ImageFolderDataModule(str(image_folder), image_size=32, batch_size=4, n_dis=1))
    ckpt = tmp_path_factory.mktemp("plain") / "checkpoints" / "last.ckpt"
    ckpt.parent.mkdir(parents=True)
    trainer.save_checkpoint(ckpt)
    return ckpt


# ----------------------------------------------------------------------------- the weights file
def test_random_weights_file_has_torch_fidelity_format(weights):
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    state = torch.load(weights, weights_only=True)  # plain tensors: loadable safely
    net = FeatureExtractorInceptionV3(
        "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(weights)
    )  # torch-fidelity's own loader
    assert list(state) == list(net.state_dict())  # exact key names and order
    assert all(state[k].shape == v.shape for k, v in net.state_dict().items())
    ours = inception.InceptionV3(weights)
    assert not ours.official_weights and ours.describe()["sha256"] == inception.file_sha256(weights)


# ----------------------------------------------------------------------------- cross-check
class _UInt8(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def test_fid_is_kid_equal_torch_fidelity(weights):
    """Same random weights, same 10 + 10 images: ours (torchmetrics on our Inception features) equals
    torch_fidelity.calculate_metrics within 1e-3 relative. KID subsets of the whole set and IS in
    one split make both sides independent of their (different) random subset draws."""
    import torch_fidelity

    real, fake = smooth_images(10, 1, (0.8, 0.3, 0.2)), smooth_images(10, 2, (0.2, 0.5, 0.8))
    reference = torch_fidelity.calculate_metrics(
        input1=_UInt8(fake),
        input2=_UInt8(real),
        fid=True,
        isc=True,
        kid=True,
        feature_extractor="inception-v3-compat",
        feature_extractor_weights_path=str(weights),
        kid_subsets=3,
        kid_subset_size=10,
        isc_splits=1,
        cuda=False,
        cache=False,
        verbose=False,
        batch_size=10,
        save_cpu_ram=True,
    )
    backbone = load_backbone("inception", (3, 32, 32), inception_weights=weights, log=None)
    r, f = backbone.extract(real, 10), backbone.extract(fake, 10)
    ours = {
        "frechet_inception_distance": frechet_distance(r.features, f.features),
        "kernel_inception_distance_mean": kernel_distance(r.features, f.features, 3, 10).mean,
        "inception_score_mean": inception_score(f.logits, 1).mean,
    }
    errors = {k: abs(v - reference[k]) / abs(reference[k]) for k, v in ours.items()}
    print(
        "relative error vs torch-fidelity:",
        {k: f"{e:.2e}" for k, e in errors.items()},
        "values:",
        {k: f"{v:.6g}" for k, v in ours.items()},
    )
    assert reference["frechet_inception_distance"] > 1e-3 and reference["inception_score_mean"] > 1.0
    assert all(e < 1e-3 for e in errors.values()), errors


# ----------------------------------------------------------------------------- callback + slimgan-eval
def test_callback_logs_inception_fid_per_width_for_rgb_data(trained, weights, image_folder):
    _, metrics, model, callback = trained
    assert set(metrics) >= {"val/fid_w0.5", "val/fid_w1.0"}
    assert not any(k.startswith("val/fmnist_") for k in metrics)  # never labelled as the classifier
    # the logged value is slimgan-eval's computation: reals of the folder ("all"), fakes seed 0
    backbone = load_backbone("inception", (3, 32, 32), inception_weights=weights, log=None)
    assert callback.split == "all"
    real, _ = real_features(backbone, callback._data, "all", N_REAL, log=None)  # from the cache
    fakes = backbone.extract(model.sample(N_FAKE, 1.0, seed=0), 8).features
    assert metrics["val/fid_w1.0"] == pytest.approx(frechet_distance(real.features, fakes), rel=1e-4)
    assert metrics["val/fid_w0.5"] != pytest.approx(metrics["val/fid_w1.0"], rel=1e-6)


def test_slimgan_eval_rgb_end_to_end_and_ref_stats(trained, weights, tmp_path, capsys, cache):
    ckpt, _, _, _ = trained
    run = ckpt.parent.parent
    common = [
        str(ckpt),
        "--inception-weights",
        str(weights),
        "--n-fake",
        str(N_FAKE),
        "--is-n-fake",
        str(N_FAKE),
        "--n-real",
        str(N_REAL),
        "--is-splits",
        "2",
        "--kid-subsets",
        "3",
        "--kid-subset-size",
        str(N_FAKE),
        "--latency-batches",
        "1",
        "--latency-repeats",
        "1",
        "--latency-warmup",
        "0",
        "--batch-size",
        "8",
        "--device",
        "cpu",
    ]
    eval_main([*common, "--truncation", "1.0"])
    assert not (run / "metrics.json").exists()  # reduced counts never take the full evaluation's name
    [path] = run.glob("metrics-slimgan-*.json")
    assert path.name == f"metrics-slimgan-fake{N_FAKE}-real{N_REAL}-is{N_FAKE}-splits2-kid3x{N_FAKE}.json"
    result = json.loads(path.read_text())
    assert result["dataset"]["name"] == "image_folder" and result["dataset"]["config_source"] == "checkpoint"
    assert result["backbone"] == {"kind": "inception", "metrics": ["FID", "IS", "KID", "mIC"], "key_prefix": ""}
    assert result["protocol"]["name"] == "slimgan" and result["extractor"]["sha256"] == inception.file_sha256(weights)
    assert [r["width"] for r in result["widths"]] == WIDTHS
    for row in result["widths"]:
        assert row["fid"] > 0 and row["is"] >= 1.0 and row["kid"] is not None and row["macs"] > 0
        assert not any(k.startswith("fmnist_") for k in row)
    assert result["consistency"]["mIC"] > 0  # Inception pool features, same z at both widths
    assert result["sanity"] is None  # an image folder has one split
    assert [(r["width"], r["truncation"]) for r in result["truncation"]["rows"]] == [(0.5, 1.0), (1.0, 1.0)]
    assert all(r["fid"] > 0 for r in result["truncation"]["rows"])
    assert (run / result["truncation"]["plot"]).is_file()
    table = path.with_suffix(".md").read_text()
    assert "| width | params | MACs | FID | IS | KID |" in table and "FMNIST" not in table
    assert "NOT the official file" in table

    # the statistics file written next to the cached features, read back: the same FID (FID only)
    stats = Path(result["reference"]["stats_file"])
    assert stats.parent == cache and "computing real features" not in capsys.readouterr().out  # the callback's
    assert stats.suffix == ".npz" and set(np.load(stats)) == {"mu", "sigma"}
    eval_main([*common, "--widths", "1.0", "--ref-stats", str(stats), "--out", str(tmp_path / "ref")])
    again = json.loads((tmp_path / "ref" / "metrics.json").read_text())
    assert again["reference"]["source"] == str(stats) and again["widths"][0]["kid"] is None
    assert again["widths"][0]["fid"] == pytest.approx(result["widths"][1]["fid"], rel=1e-6)


# ----------------------------------------------------------------------------- one-line errors
def _one_line_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as info:
        eval_main(args)
    err = capsys.readouterr().err
    assert info.value.code == 2 and len(err.strip().splitlines()) == 1, err
    return err


def test_missing_and_wrong_files_give_one_line_errors(plain_checkpoint, weights, tmp_path, capsys, monkeypatch):
    ckpt = plain_checkpoint
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # nothing in torch-fidelity's cache
    err = _one_line_error([str(ckpt)], capsys)
    assert inception.WEIGHTS_FILENAME in err and str(tmp_path / "torch_home" / "hub" / "checkpoints") in err
    assert inception.ENV_VAR in err and "--inception-weights" in err and "wget" in err

    err = _one_line_error([str(ckpt), "--inception-weights", str(tmp_path / "nope.pth")], capsys)
    assert str(tmp_path / "nope.pth") in err and "does not exist" in err

    state = torch.load(weights, weights_only=True)
    state["fc.weight"] = torch.zeros(10, 2048)  # wrong shape
    wrong = tmp_path / "wrong-shape.pth"
    torch.save(state, wrong)
    err = _one_line_error([str(ckpt), "--inception-weights", str(wrong)], capsys)
    assert str(wrong) in err and "does not fit" in err and "fc.weight" in err

    small = tmp_path / "stats64.npz"
    np.savez(small, mu=np.zeros(64), sigma=np.eye(64))
    err = _one_line_error([str(ckpt), "--inception-weights", str(weights), "--ref-stats", str(small)], capsys)
    assert str(small) in err and "2048" in err
    with pytest.raises(ValueError, match="no 'sigma' array"):
        np.savez(tmp_path / "mu_only.npz", mu=np.zeros(2048))
        read_stats(tmp_path / "mu_only.npz", 2048)

    err = _one_line_error([str(ckpt), "--backbone", "fmnist_classifier"], capsys)
    assert "1x32x32" in err and "3x32x32" in err


def test_fid_callback_fails_fast_on_every_rank_and_never_trains(monkeypatch, tmp_path, fmnist_root, image_folder):
    """Issue 19 item 6: the backbone file is loaded by check_config (every rank, before training);
    a missing file is one line, nothing is trained, and the default is the shipped classifier."""
    monkeypatch.setattr(fc, "train_classifier", lambda **kw: pytest.fail("the classifier must never be trained"))
    monkeypatch.delenv(fc.ENV_VAR, raising=False)
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    trainer = pl.Trainer(accelerator="cpu", logger=False)
    gray = SlimGAN(generator=dict(arch="sndcgan32", ngf=8, img_channels=1), discriminator=dict(arch="sndcgan32", ndf=8))
    fmnist = FashionMNISTDataModule(fmnist_root, batch_size=4)
    missing = tmp_path / "missing.pt"
    with pytest.raises(ValueError, match=rf"callbacks\.fid: FMNIST classifier file {missing} is unusable"):
        PerWidthFIDCallback(classifier=str(missing)).check_config(gray, fmnist, trainer)
    callback = PerWidthFIDCallback()
    callback.check_config(gray, fmnist, trainer)
    assert callback._backbone.sha256 == fc.SHIPPED_SHA256 and callback.metric_name(0.5) == "val/fmnist_fid_w0.5"

    rgb = SlimGAN(generator=dict(arch="sndcgan32", ngf=8, img_channels=3), discriminator=dict(arch="sndcgan32", ndf=8))
    folder = ImageFolderDataModule(str(image_folder), batch_size=4)
    with pytest.raises(
        ValueError, match=rf"callbacks\.fid: Inception-v3 weights not found.*{inception.WEIGHTS_FILENAME}"
    ):
        PerWidthFIDCallback().check_config(rgb, folder, trainer)


def test_pick_reads_the_full_evaluation_and_labels_inception_fid(tmp_path):
    from slimgan_pl.deploy import pick as pk

    full = {"backbone": {"key_prefix": ""}, "widths": [{"width": 0.5, "fid": 30.0}, {"width": 1.0, "fid": 20.0}]}
    quick = {"backbone": {"key_prefix": ""}, "widths": [{"width": 0.5, "fid": 99.0}, {"width": 1.0, "fid": 98.0}]}
    (tmp_path / "metrics.json").write_text(json.dumps(full))
    (tmp_path / "metrics-slimgan-fake100-real100-is100.json").write_text(json.dumps(quick))
    assert pk.fid_key(tmp_path / "metrics.json") == "fid"
    assert pk.read_fids(tmp_path / "metrics.json") == {0.5: 30.0, 1.0: 20.0}
    header = pk.table([pk.WidthCost(1.0, 1.0, 1, 20.0)], 5.0, 1, "FID").splitlines()[0]
    assert " FID " in header and "FMNIST" not in header
    old = {"widths": [{"width": 1.0, "fmnist_fid": 7.0}]}  # files before the backbone entry: FMNIST-FID
    (tmp_path / "old.json").write_text(json.dumps(old))
    assert pk.fid_key(tmp_path / "old.json") == "fmnist_fid" and pk.read_fids(tmp_path / "old.json") == {1.0: 7.0}
