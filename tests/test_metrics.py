"""Metrics: the FMNIST classifier file, FMNIST-FID/IS/KID (cross-checked with torch-fidelity), mIC,
per-width cost, slimgan-eval end to end, and the Inception weights loading path."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.data import Dataset
from torchmetrics.image import FrechetInceptionDistance, InceptionScore, KernelInceptionDistance

from slimgan_pl import SlimGAN
from slimgan_pl.data.base import to_model_range
from slimgan_pl.data.fashion_mnist import load_fashion_mnist
from slimgan_pl.evaluate import extract
from slimgan_pl.evaluate import main as eval_main
from slimgan_pl.metrics import fmnist_classifier as fc
from slimgan_pl.metrics import inception
from slimgan_pl.metrics.consistency import generator_consistency, mean_inconsistency
from slimgan_pl.metrics.cost import active_parameters, generator_macs, latency_ms
from slimgan_pl.metrics.scores import frechet_distance, inception_score, kernel_distance
from slimgan_pl.models import build_generator

from helpers.tiny import fit_and_save
from helpers.user_path import run_user

WIDTHS = [0.25, 0.5, 0.75, 1.0]


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These tensors are small: one thread is as fast, and immune to oversubscribed cores (two
    threads ran 10x slower while another job used the CPUs). Restored after this module."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def classifier_path(tmp_path_factory, fmnist_root) -> Path:
    """A classifier trained for two short epochs on 3000 images (~75% accuracy): enough to rank
    image sets, not the real one."""
    model, acc, info = fc.train_classifier(root=fmnist_root, epochs=2, limit=3000, test_limit=1000, log=None)
    return fc.save_classifier(model, tmp_path_factory.mktemp("clf") / "clf.pt", acc, info)


@pytest.fixture(scope="module")
def extractor(classifier_path) -> fc.FMNISTFeatureExtractor:
    loaded = fc.read_classifier(classifier_path)
    return fc.FMNISTFeatureExtractor(loaded.model, sha256=loaded.sha256)


@pytest.fixture(scope="module")
def real_uint8(fmnist_root) -> dict[str, torch.Tensor]:
    """uint8 (N, 1, 28, 28) slices of both splits."""
    return {split: load_fashion_mnist(fmnist_root, split)[0][:600].unsqueeze(1) for split in ("test", "train")}


def tiny_slimgan(**kw) -> SlimGAN:
    args = dict(
        generator=dict(arch="sndcgan32", ngf=16, img_channels=1),
        discriminator=dict(arch="sndcgan32", ndf=16),
        widths=WIDTHS,
        n_share=2,
        alpha=20.0,
        n_dis=1,
    )
    return SlimGAN(**{**args, **kw})


def tiny_checkpoint(path: Path, iterations: int = 2) -> Path:
    torch.manual_seed(0)
    return fit_and_save(tiny_slimgan(), path, iterations)


# ----------------------------------------------------------------------------- classifier file
def test_classifier_roundtrip_and_input_formats(classifier_path, extractor, real_uint8):
    loaded = fc.read_classifier(classifier_path)
    assert loaded.sha256 == fc.weights_sha256(loaded.model.state_dict())
    assert 0.5 < loaded.test_accuracy <= 1.0 and loaded.train_info["train_images"] == 3000
    payload = torch.load(classifier_path, weights_only=True)  # plain data, no pickled code
    assert payload["version"] == fc.VERSION and payload["sha256"] == loaded.sha256

    x28 = real_uint8["test"][:8]
    x32 = to_model_range(x28, 32)
    feats = extractor(x32)
    assert feats.shape == (8, extractor.num_features) and (feats >= 0).all()
    torch.testing.assert_close(extractor(x28), feats)  # uint8 28px, padded like training
    torch.testing.assert_close(extractor(x28.float() / 127.5 - 1), feats)  # float [-1, 1] 28px
    logits = fc.FMNISTFeatureExtractor(loaded.model, "logits")(x32)
    assert logits.shape == (8, 10)
    extractor.train()
    assert not extractor.training and not extractor.classifier.training  # never leaves eval mode


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("truncate", "cannot be read"),
        ("tamper", "checksum mismatch"),
        ("version", "version 0"),
        ("not_ours", "not a slimgan_pl.fmnist_classifier file"),
    ],
)
def test_classifier_file_problems_give_one_clear_error(classifier_path, tmp_path, damage, reason):
    bad = tmp_path / "bad.pt"
    payload = torch.load(classifier_path, weights_only=True)
    if damage == "truncate":
        bad.write_bytes(classifier_path.read_bytes()[:500])
    else:
        if damage == "tamper":
            payload["state_dict"]["head.bias"] += 0.01
        elif damage == "version":
            payload["version"] = 0
        else:
            payload = {"weights": payload["state_dict"]}
        torch.save(payload, bad)
    with pytest.raises(fc.ClassifierCacheError) as info:
        fc.load_classifier(bad)
    message = str(info.value)
    assert str(bad) in message and reason in message and "--train" in message


def test_classifier_path_resolution_defaults_to_the_shipped_file(monkeypatch, tmp_path):
    monkeypatch.setenv(fc.ENV_VAR, str(tmp_path / "env.pt"))
    assert fc.resolve_path() == tmp_path / "env.pt"
    assert fc.resolve_path(tmp_path / "arg.pt") == tmp_path / "arg.pt"
    monkeypatch.delenv(fc.ENV_VAR)
    assert fc.resolve_path() == fc.SHIPPED_PATH
    shipped = fc.load_classifier()  # the package's file, pinned weights hash, nothing trained
    assert shipped.path == fc.SHIPPED_PATH and shipped.sha256 == fc.SHIPPED_SHA256 and shipped.shipped
    assert shipped.test_accuracy > 0.9 and shipped.describe()["sha256"] == fc.SHIPPED_SHA256

    calls = []
    monkeypatch.setattr(fc, "train_classifier", lambda **kw: calls.append(kw))
    with pytest.raises(fc.ClassifierCacheError, match="does not exist"):
        fc.load_classifier(tmp_path / "missing.pt")  # a missing file is an error, never trained on first use
    assert calls == []


def test_shipped_classifier_is_package_data_and_tamper_checked(tmp_path, monkeypatch):
    """pyproject.toml ships the file; a replaced shipped file (valid, but other weights) is refused."""
    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["slimgan_pl.metrics"]
    rel = fc.SHIPPED_PATH.relative_to(Path(fc.__file__).parent)
    assert any(rel.match(pattern) for pattern in patterns), patterns
    other = fc.save_classifier(fc.FMNISTClassifier(), tmp_path / "weights" / fc.SHIPPED_PATH.name, 0.1)
    monkeypatch.setattr(fc, "SHIPPED_PATH", other.resolve())
    with pytest.raises(fc.ClassifierCacheError, match="shipped file was replaced"):
        fc.read_classifier(other)


def test_classifier_training_leaves_the_global_rng_alone(fmnist_root):
    """A training run's noise must not depend on whether the classifier was trained in its process."""
    torch.manual_seed(123)
    before = torch.get_rng_state()
    expected_next = torch.rand(3)
    torch.set_rng_state(before)
    model, _, _ = fc.train_classifier(root=fmnist_root, epochs=1, limit=256, test_limit=64, log=None)
    assert torch.equal(torch.get_rng_state(), before)
    assert torch.equal(torch.rand(3), expected_next)
    again, _, _ = fc.train_classifier(root=fmnist_root, epochs=1, limit=256, test_limit=64, log=None)
    assert fc.weights_sha256(model.state_dict()) == fc.weights_sha256(again.state_dict())  # seeded, reproducible


def test_classifier_cli_trains_and_prints_accuracy(tmp_path, capsys, fmnist_root, monkeypatch):
    path = tmp_path / "cli.pt"
    assert fc.main(["--train", "--path", str(path), "--epochs", "1", "--limit", "512", "--root", fmnist_root]) == 0
    assert "test accuracy" in capsys.readouterr().out and fc.read_classifier(path)
    first = path.read_bytes()
    # an existing file is never replaced without --overwrite (refused before training)
    assert fc.main(["--train", "--path", str(path), "--epochs", "1", "--limit", "256", "--root", fmnist_root]) == 1
    assert "already exists" in capsys.readouterr().err and path.read_bytes() == first
    with pytest.raises(FileExistsError, match="already exists"):
        fc.save_classifier(fc.FMNISTClassifier(), path, 0.1)
    # without --path: a new file named by its weights, in TRAINED_DIR (never the shipped file)
    monkeypatch.setattr(fc, "TRAINED_DIR", tmp_path / "trained")
    assert fc.main(["--train", "--epochs", "1", "--limit", "256", "--root", fmnist_root]) == 0
    [new] = (tmp_path / "trained").glob("fmnist_classifier_v1-*.pt")
    assert new.name == f"fmnist_classifier_v1-{fc.read_classifier(new).sha256[:12]}.pt"
    assert fc.read_classifier(fc.SHIPPED_PATH).sha256 == fc.SHIPPED_SHA256
    assert fc.main(["--path", str(path)]) == 0
    path.write_bytes(b"junk")
    assert fc.main(["--path", str(path)]) == 1
    assert "--train" in capsys.readouterr().err


# ----------------------------------------------------------------------------- FMNIST-FID/IS/KID
def test_extractor_is_accepted_by_torchmetrics_and_matches_precomputed_path(extractor, classifier_path, real_uint8):
    real, fake = real_uint8["test"][:300], real_uint8["train"][:300]
    fid = FrechetInceptionDistance(feature=extractor)
    kid = KernelInceptionDistance(feature=extractor, subsets=5, subset_size=100)
    logits_module = fc.FMNISTFeatureExtractor(fc.read_classifier(classifier_path).model, "logits")
    iscore = InceptionScore(feature=logits_module, splits=5)
    for batch in real.split(128):
        fid.update(batch, real=True)
        kid.update(batch, real=True)
    for batch in fake.split(128):
        fid.update(batch, real=False)
        kid.update(batch, real=False)
        iscore.update(batch)
    torch.manual_seed(0)
    kid_mean, _ = kid.compute()
    torch.manual_seed(0)
    is_mean, _ = iscore.compute()

    real_f, fake_f = extract(extractor, real), extract(extractor, fake)
    assert float(fid.compute()) == pytest.approx(frechet_distance(real_f.features, fake_f.features), rel=1e-5)
    assert float(kid_mean) == pytest.approx(
        kernel_distance(real_f.features, fake_f.features, 5, 100).mean, rel=1e-3, abs=1e-6
    )
    assert 1.0 <= float(is_mean) <= 10.0
    assert inception_score(fake_f.logits, splits=5).mean == pytest.approx(float(is_mean), rel=0.05)


class _UInt8Images(Dataset):
    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images[i]


def test_fmnist_fid_equals_torch_fidelity(extractor, classifier_path, real_uint8):
    """Same images, same extractor: torchmetrics' FID (ours) == torch-fidelity's calculate_metrics."""
    import torch_fidelity

    real = real_uint8["test"][:500]
    other = real_uint8["train"][:500].flip(-2)  # upside-down garments: a clearly different set
    name = fc.register_torch_fidelity_extractor()
    assert fc.register_torch_fidelity_extractor() == name  # idempotent
    reference = torch_fidelity.calculate_metrics(
        input1=_UInt8Images(other),
        input2=_UInt8Images(real),
        fid=True,
        feature_extractor=name,
        feature_extractor_weights_path=str(classifier_path),
        cuda=False,
        cache=False,
        verbose=False,
        save_cpu_ram=True,
        batch_size=100,
    )["frechet_inception_distance"]
    ours = frechet_distance(extract(extractor, real).features, extract(extractor, other).features)
    assert reference > 1.0
    assert ours == pytest.approx(reference, rel=1e-3)


def test_fmnist_fid_ranks_untrained_generator_worse_than_real_data(extractor, real_uint8):
    torch.manual_seed(0)
    fakes = tiny_slimgan().sample(500, width=1.0, seed=0)
    real = extract(extractor, real_uint8["test"][:500])
    fid_fake = frechet_distance(real.features, extract(extractor, fakes).features)
    fid_real = frechet_distance(real.features, extract(extractor, real_uint8["train"][:500]).features)
    assert fid_fake > 5 * fid_real


# ----------------------------------------------------------------------------- mIC
def test_mic_is_zero_for_identical_outputs_and_positive_otherwise(extractor):
    a, b = torch.zeros(4, 3), torch.ones(4, 3)
    hand = mean_inconsistency([1.0, 0.5, 0.25], [b * 2, b, a])
    assert hand.pairs == {(0.25, 0.5): 3.0, (0.25, 1.0): 12.0, (0.5, 1.0): 3.0}
    assert hand.adjacent == {(0.25, 0.5): 3.0, (0.5, 1.0): 3.0}
    assert hand.mic == pytest.approx(6.0)

    same = torch.rand(16, 1, 32, 32) * 2 - 1
    assert generator_consistency(lambda n, w, seed: same, extractor, WIDTHS, n=16).mic == 0.0
    torch.manual_seed(0)
    model = tiny_slimgan()
    result = generator_consistency(model.sample, extractor, WIDTHS, n=16, seed=3)
    assert result.mic > 0 and all(v > 0 for v in result.adjacent.values()) and len(result.pairs) == 6


# ----------------------------------------------------------------------------- cost
def test_cost_matches_reference_numbers():
    """Per-width params/MACs of the reference generators (slimgan-method.md)."""
    res = build_generator("snresgan32", WIDTHS, ngf=256, img_channels=3)
    assert [round(active_parameters(res, w) / 1e6, 2) for w in WIDTHS] == [0.37, 1.20, 2.51, 4.28]
    assert [round(generator_macs(res, w, 128) / 1e6) for w in WIDTHS] == [106, 422, 947, 1681]
    dc = build_generator("sndcgan32", WIDTHS, ngf=512, img_channels=3)
    assert [round(generator_macs(dc, w, 128) / 1e6, 1) for w in WIDTHS] == [7.0, 26.6, 58.7, 103.5]
    other_widths_bn = sum(p.numel() for bn in dc.bns for narrow in bn.bns[:-1] for p in narrow.parameters())
    assert active_parameters(dc, 1.0) == sum(p.numel() for p in dc.parameters()) - other_widths_bn
    assert dc.training and latency_ms(dc, 0.25, 128, batch=2, repeats=2, warmup=1) > 0 and dc.training


# ----------------------------------------------------------------------------- slimgan-eval
@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, classifier_path, fmnist_root):
    root = tmp_path_factory.mktemp("eval")
    ckpt = tiny_checkpoint(root / "run" / "checkpoints" / "last.ckpt")
    args = [
        str(ckpt),
        "--classifier",
        str(classifier_path),
        "--cache-dir",
        str(root / "cache"),
        "--data-root",
        fmnist_root,
        "--n-fake",
        "300",
        "--n-real",
        "400",
        "--kid-subsets",
        "5",
        "--kid-subset-size",
        "100",
        "--latency-repeats",
        "2",
        "--latency-warmup",
        "1",
    ]
    eval_main(args)
    return root, args


def reduced_metrics(root: Path) -> Path:
    """The reduced evaluation's file: named by its counts, never the full run's metrics.json."""
    assert not (root / "run" / "metrics.json").exists()
    [path] = (root / "run").glob("metrics-fmnist-*.json")
    assert path.name == "metrics-fmnist-fake300-real400-is300-splits10-kid5x100.json"
    return path


def test_slimgan_eval_writes_a_row_per_width(evaluated, capsys):
    root, _ = evaluated
    result = json.loads(reduced_metrics(root).read_text())
    assert result["protocol"]["name"] == "fmnist" and result["backbone"]["kind"] == "fmnist_classifier"
    assert result["backbone"]["metrics"] == ["FMNIST-FID", "FMNIST-IS", "FMNIST-KID", "FMNIST-mIC"]
    assert result["extractor"]["sha256"] == fc.read_classifier(result["extractor"]["path"]).sha256
    assert result["extractor"]["shipped_sha256"] == fc.SHIPPED_SHA256 and not result["extractor"]["shipped"]
    assert not any(k in row for row in result["widths"] for k in ("fid", "is", "kid"))  # never unprefixed
    assert [r["width"] for r in result["widths"]] == WIDTHS
    for row in result["widths"]:
        assert row["fmnist_fid"] > 0 and 1 <= row["fmnist_is"] <= 10 and row["params"] > 0 and row["macs"] > 0
        assert set(row["latency_ms"]) == {"1", "64"}
    assert [r["params"] for r in result["widths"]] == sorted(r["params"] for r in result["widths"])
    assert result["consistency"]["mIC"] > 0 and len(result["consistency"]["adjacent"]) == 3
    assert result["sanity"]["pair"] == "real train vs real test"
    assert all(r["fmnist_fid"] > result["sanity"]["fmnist_fid"] for r in result["widths"])
    table = reduced_metrics(root).with_suffix(".md").read_text()
    assert "| width | params | MACs | FMNIST-FID | FMNIST-IS | FMNIST-KID" in table
    assert table.count("\n| ") == 1 + len(WIDTHS) + 1  # header rows, one per width, sanity
    assert not any("Inception" in line for line in table.splitlines() if line.startswith("|"))
    assert "not comparable with Inception" in table
    assert len(list((root / "cache").glob("fashion_mnist-*.pt"))) == 2  # test and train features


def test_slimgan_eval_reuses_cache_and_subsets_widths(evaluated, capsys, tmp_path):
    root, args = evaluated
    capsys.readouterr()
    eval_main([*args, "--widths", "0.25", "1.0", "--out", str(tmp_path), "--no-sanity"])
    out = capsys.readouterr().out
    assert "computing real features" not in out and "FMNIST-FID" in out
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert [r["width"] for r in result["widths"]] == [0.25, 1.0] and result["sanity"] is None
    first = json.loads(reduced_metrics(root).read_text())
    assert result["widths"][0]["fmnist_fid"] == pytest.approx(first["widths"][0]["fmnist_fid"], rel=1e-9)


def test_slimgan_eval_console_script_and_errors(tmp_path, evaluated):
    _, args = evaluated
    script = Path(sys.executable).with_name("slimgan-eval")
    assert script.is_file(), "run pip install -e . to create the slimgan-eval script"
    proc = subprocess.run([str(script), str(tmp_path / "nope.ckpt")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    with pytest.raises(SystemExit) as info:
        eval_main([*args, "--widths", "0.3"])
    assert info.value.code == 2


def test_slimgan_eval_truncation_rows_and_plot(evaluated, tmp_path):
    _, args = evaluated
    eval_main(
        [
            *args,
            "--widths",
            "0.25",
            "1.0",
            "--n-fake",
            "100",
            "--no-sanity",
            "--out",
            str(tmp_path),
            "--truncation",
            "2.0",
            "0.5",
            "1.0",
        ]
    )
    result = json.loads((tmp_path / "metrics.json").read_text())
    trunc = result["truncation"]
    assert trunc["thresholds"] == [0.5, 1.0, 2.0]
    assert sorted((r["width"], r["truncation"]) for r in trunc["rows"]) == [
        (w, t) for w in (0.25, 1.0) for t in (0.5, 1.0, 2.0)
    ]
    for r in trunc["rows"]:
        assert r["fmnist_fid"] > 0 and 1 <= r["fmnist_is"] <= 10
    plot = tmp_path / trunc["plot"]
    assert plot == tmp_path / "truncation.png" and plot.stat().st_size > 1000
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| width | threshold | FMNIST-FID | FMNIST-IS |" in (tmp_path / "metrics.md").read_text()
    # a threshold of 2 leaves 95% of z untouched; 0.5 changes the images, hence the FID
    by_key = {(r["width"], r["truncation"]): r["fmnist_fid"] for r in trunc["rows"]}
    assert by_key[(1.0, 0.5)] != pytest.approx(by_key[(1.0, 2.0)], rel=1e-6)


def test_slimgan_eval_rejects_bad_truncation(evaluated, capsys):
    _, args = evaluated
    with pytest.raises(SystemExit) as info:
        eval_main([*args, "--truncation", "1.0", "0", "--no-sanity"])
    assert info.value.code == 2
    message = "slimgan-eval: error: --truncation thresholds must be finite and > 0, got [1.0, 0.0]\n"
    assert capsys.readouterr().err == message  # one line, before any evaluation work


# ----------------------------------------------------------------------------- Inception weights
@pytest.fixture(scope="module")
def random_inception_weights(tmp_path_factory) -> Path:
    """A file in the format of torch-fidelity's weights-inception-2015-12-05-6726825d.pth, with the
    network's random initial values (its constructor insists on loading weights, so loading is
    stubbed out while it is built). Numbers computed with it are NOT FID."""
    from torch_fidelity import feature_extractor_inceptionv3 as fe

    mp = pytest.MonkeyPatch()
    mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
    mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
    torch.manual_seed(0)
    net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    mp.undo()
    path = tmp_path_factory.mktemp("inception") / "random-inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_weights_missing_gives_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.delenv(inception.ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    with pytest.raises(inception.InceptionWeightsError) as info:
        inception.resolve_inception_weights(allow_download=False)
    message = str(info.value)
    assert inception.WEIGHTS_FILENAME in message and inception.ENV_VAR in message
    assert str(tmp_path / "torch_home" / "hub" / "checkpoints") in message
    with pytest.raises(inception.InceptionWeightsError, match="does not exist"):
        inception.resolve_inception_weights(tmp_path / "missing.pth")
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(inception.InceptionWeightsError, match="cannot be read"):
        inception.InceptionV3(bad)


def test_inception_loads_local_weights_and_plugs_into_torchmetrics(random_inception_weights, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # nothing cached there
    monkeypatch.setenv(inception.ENV_VAR, str(random_inception_weights))
    assert inception.resolve_inception_weights(allow_download=False) == random_inception_weights
    cached = inception.torch_fidelity_cache_path()
    cached.parent.mkdir(parents=True)
    cached.symlink_to(random_inception_weights)
    monkeypatch.delenv(inception.ENV_VAR)
    assert inception.resolve_inception_weights(allow_download=False) == cached  # torch-fidelity's cache

    metrics = inception.inception_metrics(random_inception_weights, kid_subset_size=2, is_splits=2)
    net = metrics["fid"].inception.inception
    assert not net.official_weights and net.weights_path == random_inception_weights
    images = torch.rand(4, 1, 32, 32) * 2 - 1  # gray [-1, 1] -> uint8 RGB inside
    feats, logits = net(images)
    assert feats.shape == (4, 2048) and logits.shape == (4, 1008)
    metrics["fid"].update(images[:2], real=True)
    metrics["fid"].update(images[2:], real=False)
    metrics["is"].update(images)
    assert metrics["fid"].real_features_num_samples == 2 and len(metrics["is"].features) == 1


# ----------------------------------------------------------------------------- slimgan-eval says what it costs
def test_slimgan_eval_prints_counts_estimate_progress_and_is_follows_n_fake(tmp_path, fmnist_root):
    """The user's path: a smoke run, then ``slimgan-eval --protocol slimgan --n-fake 40`` (the preset scores
    IS on 50k fakes per width; before, a reduced --n-fake still sampled those 50k, 400+ s on a CPU with no
    output). The counts, an estimate and a progress bar come first; IS follows --n-fake and says so, and
    metrics.json records the counts used; an explicit --is-n-fake wins."""
    run_user("slimgan-train debug=smoke trainer.accelerator=cpu hydra.run.dir=run", cwd=tmp_path, check=True)
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    small = (
        f"slimgan-eval {ckpt} --protocol slimgan --n-real 40 --is-splits 2 --kid-subsets 2 --kid-subset-size 20 "
        f"--latency-batches 1 --latency-repeats 3 --latency-warmup 0 --no-sanity --data-root {fmnist_root} "
        f"--cache-dir {tmp_path / 'cache'}"
    )
    reduced = run_user(f"{small} --n-fake 40", cwd=tmp_path, check=True)
    out = reduced.stdout
    assert "IS on 40 fakes per width, following --n-fake (protocol slimgan: 50000); --is-n-fake N sets it" in out
    assert (
        "evaluating 4 widths [0.25, 0.5, 0.75, 1.0]: 40 fakes per width for FID/KID/mIC, 40 for IS (2 splits), "
        "one sample of 40 per width; 40 real test images (to extract); KID 2 subsets of 20"
    ) in out
    assert re.search(r"^estimate: ~\d+ (s|min|h) for 160 fakes and 40 real images to extract \(generator ", out, re.M)
    assert out.index("estimate: ~") < out.index("width 0.25: FMNIST-FID")  # before the work, not after
    assert "160/160" in reduced.stderr and "img/s" in reduced.stderr  # tqdm over the widths' images
    [path] = (tmp_path / "run").glob("metrics-slimgan-*.json")
    assert path.name.startswith("metrics-slimgan-fake40-real40-is40-")
    settings = json.loads(path.read_text())["settings"]
    assert (settings["n_fake"], settings["is_n_fake"], settings["fakes_per_width"]) == (40, 40, 40)
    assert settings["is_n_fake_from"] == "--n-fake" and settings["reals"] == {"test": 40}
    assert settings["estimate_s"] >= 0 and settings["latency_timing"]["1"]["threads"] == 1

    explicit = run_user(f"{small} --n-fake 40 --is-n-fake 60 --widths 0.5", cwd=tmp_path, check=True).stdout
    assert "following --n-fake" not in explicit and "(cached)" in explicit
    assert "1 widths [0.5]: 40 fakes per width for FID/KID/mIC, 60 for IS (2 splits), one sample of 60" in explicit
    settings = json.loads(next((tmp_path / "run").glob("metrics-slimgan-fake40-real40-is60-*.json")).read_text())
    assert (settings["settings"]["is_n_fake"], settings["settings"]["fakes_per_width"]) == (60, 60)
    assert settings["settings"]["is_n_fake_from"] == "--is-n-fake"


def test_reduced_n_fake_reduces_is_count_to_the_smaller():
    from slimgan_pl.metrics.evaluation import is_count_note, resolve_protocol
    from slimgan_pl.metrics.reference import load_protocol

    def counts(name: str, **kw: int) -> tuple[int, int]:
        p = resolve_protocol(name, "cifar10", **kw)
        return p.n_fake, p.is_n_fake

    assert counts("slimgan") == (10000, 50000)
    assert counts("slimgan", n_fake=64) == (64, 64) and counts("slimgan", n_fake=20000) == (20000, 20000)
    assert counts("slimgan", n_fake=60000) == (60000, 50000)  # min(is_n_fake, n_fake)
    assert counts("slimgan", n_fake=64, is_n_fake=1000) == (64, 1000)  # --is-n-fake wins
    assert counts("fmnist", n_fake=20000) == (20000, 20000)  # IS on the FID fakes stays so
    preset = load_protocol("slimgan", "cifar10")
    assert is_count_note(resolve_protocol("slimgan", "cifar10", n_fake=64), preset, 64, None).startswith(
        "IS on 64 fakes per width, following --n-fake (protocol slimgan: 50000)"
    )
    assert is_count_note(resolve_protocol("slimgan", "cifar10", n_fake=64, is_n_fake=90), preset, 64, 90) is None
