"""experiments/model_zoo.py: one row per conf/model preset and width, figures from slimgan_pl.metrics.cost."""

from __future__ import annotations

import json

import pytest

from slimgan_pl.metrics.cost import active_parameters, generator_macs
from slimgan_pl.models import GENERATORS, SNDCGANGenerator, build_generator

from helpers.scripts import load_script

WIDTHS = [0.25, 0.5, 0.75, 1.0]


@pytest.fixture(scope="module")
def zoo():
    return load_script("experiments/model_zoo.py")


def test_zoo_numbers_equal_cost_module(zoo, tmp_path, capsys):
    rows = zoo.main(["--models", "snresgan32", "--out", str(tmp_path / "zoo")])
    g = build_generator("snresgan32", WIDTHS, ngf=256, nz=128, img_channels=3)  # conf/model/snresgan32.yaml
    assert [(r["width"], r["params"], r["macs"]) for r in rows] == [
        (w, active_parameters(g, w), generator_macs(g, w, 128)) for w in WIDTHS
    ]
    # the method doc's per-width cost of SNResGAN-32's generator
    assert [round(r["params"] / 1e6, 2) for r in rows] == [0.37, 1.20, 2.51, 4.28]
    assert [round(r["macs"] / 1e6) for r in rows] == [106, 422, 947, 1681]
    saved = json.loads((tmp_path / "zoo.json").read_text())
    assert saved["rows"] == rows and saved["widths"] == WIDTHS
    table = (tmp_path / "zoo.md").read_text()
    assert (
        "| snresgan32 | snresgan32 | 32x32 | 256 | 0.37 | 1.20 | 2.51 | 4.28 | 106.5 | 422.2 | 947.1 | 1681.1 |"
        in table
    )
    assert "| snresgan32 |" in capsys.readouterr().out


def test_zoo_covers_every_registered_arch(zoo, monkeypatch):
    presets = zoo.model_presets(num_classes=10)
    assert {p["arch"] for p in presets.values()} == set(GENERATORS)
    assert presets["cgan_pd32"]["num_classes"] == 10 and presets["snresgan64"]["ngf"] == 1024
    # an arch that no conf/model preset uses still gets a row, built with its constructor defaults
    monkeypatch.setitem(GENERATORS, "dcgan16", (SNDCGANGenerator, {"img_size": 16, "bottom": 4}))
    presets = zoo.model_presets(num_classes=10)
    assert presets["dcgan16"] == {"arch": "dcgan16", "img_channels": 3, "defaults": True}
    rows = zoo.zoo_rows({"dcgan16": presets["dcgan16"]}, [0.5, 1.0])
    assert [r["img_size"] for r in rows] == [16, 16] and rows[-1]["macs_vs_widest"] == 1.0
    assert "(no preset: constructor defaults)" in zoo.markdown(rows, [0.5, 1.0])


def test_zoo_rejects_unknown_models(zoo, capsys):
    with pytest.raises(SystemExit):
        zoo.main(["--models", "vgg"])
    assert "unknown ['vgg']" in capsys.readouterr().err
